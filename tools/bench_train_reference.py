"""The training benchmark of bench/bench_train.c, run on our PyTorch reference
(tools/reference/tuna2_ref.py) with the same config, sequence layout and
thread count.

    python3 tools/bench_train_reference.py --threads 2 [--steps 10] [--warmup 2]
        [--image 64] [--patch 4] [--text 32]

Prints one JSON object on stdout (progress on stderr): tok_s (sequence length
* steps / seconds), cpu (CPU time / (wall x threads)), length, seconds,
first_loss, last_loss, torch.

One step: optimizer.zero_grad(); forward (tuna2_ref.Tuna2, f32, random init
tuna2_ref.init_random); loss = ce_loss + flow_loss; backward;
clip_grad_norm_(1.0); torch.optim.AdamW(lr 1e-4, betas 0.9/0.95, eps 1e-8,
weight decay 0.01), torch's default implementation for CPU tensors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference"))
import tuna2_ref as ref  # noqa: E402


def log(msg: str) -> None:
    print(f"[bench_train_reference] {msg}", file=sys.stderr, flush=True)


def small_config(patch: int) -> dict:
    """The config of small_config() in bench/bench_train.c."""
    return {
        "vocab_size": 2048, "hidden_size": 256,
        "llm": {"num_layers": 4, "num_heads": 8, "num_kv_heads": 2, "head_dim": 32, "intermediate_size": 704},
        "head": {"num_layers": 2, "num_heads": 4, "num_kv_heads": 2, "head_dim": 64, "intermediate_size": 704},
        "patch_size": patch,
        "tokens": {"bos": 2040, "eos": 2041, "boi": 2042, "eoi": 2043, "image_pad": 2044, "pad": 2045},
    }


def text_id(i: int) -> int:
    return (i * 7919 + 13) % 2000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--image", type=int, default=64)
    ap.add_argument("--patch", type=int, default=4)
    ap.add_argument("--text", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    cfg = ref.normalize_config(small_config(args.patch))
    model = ref.Tuna2(cfg)
    ref.init_random(model, 1234)
    model.train()
    tok = cfg["tokens"]
    n = (args.image // args.patch) ** 2
    ids = [tok["bos"]] + [text_id(i) for i in range(args.text)] + [tok["boi"]] + [tok["image_pad"]] * (n + 1) \
        + [tok["eoi"], tok["eos"]]
    labels = [x if 1 <= i <= args.text else -100 for i, x in enumerate(ids)]
    g = torch.Generator().manual_seed(7)
    target = 0.5 * torch.randn(cfg["image_channels"], args.image, args.image, generator=g)
    image = torch.randn(cfg["image_channels"], args.image, args.image, generator=g)
    t = [0.4]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.01)

    def step() -> float:
        opt.zero_grad()
        out = model(ids, [image], t=t)
        loss = ref.ce_loss(out["logits"], labels) + ref.flow_loss(out["x_pred"], [target], t, [1], cfg["t_eps"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return float(loss.detach())

    first = last = 0.0
    for i in range(args.warmup):
        last = step()
        if i == 0:
            first = last
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for i in range(args.steps):
        last = step()
        if i == 0 and args.warmup == 0:
            first = last
    seconds = time.perf_counter() - wall0
    cpu = (time.process_time() - cpu0) / (seconds * args.threads)
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "length": len(ids), "steps": args.steps,
           "seconds": seconds, "tok_s": len(ids) * args.steps / seconds, "cpu": cpu,
           "first_loss": first, "last_loss": last}
    log(f"{args.steps} steps in {seconds:.3f} s = {out['tok_s']:.1f} tokens/s (CPU use {100 * cpu:.0f}%);"
        f" loss {first:.4f} -> {last:.4f}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
