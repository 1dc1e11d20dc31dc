"""The model benchmark of bench/bench_model.c, run on our PyTorch reference
(tools/reference/tuna2_ref.py) with the same weights and thread count.

    python3 tools/bench_reference.py MODEL_DIR --threads 2 [--prompt 512]
        [--decode 64] [--full-decode 4] [--gen-size 256] [--gen-steps 2]

Prints one JSON object on stdout (progress on stderr). The weights are read
from MODEL_DIR (safetensors, bf16 or f32) and held in f32: torch's CPU bf16
matmul is slow, so f32 is the reference's best case.

Figures (all with torch.no_grad, torch.set_num_threads(--threads)):
  prefill_module_tok_s  the module as written: Tuna2.forward(ids, run_head=False)
                        on a P-token text prompt (it computes logits for every row)
  prefill_tok_s         the same layers through llm_cached() below, logits of the
                        last row only (what the engine's TUNA_LOGITS_LAST computes)
  decode_full_tok_s     one new token by full recompute of the whole sequence, as
                        tuna2_ref.greedy_generate and Meta's code do
  decode_kv_tok_s       one new token with a KV cache: llm_cached() over the
                        Tuna2 module's weights, preallocated cache, one row per step
  gen_step_s            seconds per Euler step of tuna2_ref.euler_sample at
                        gen-size^2 with CFG: two full forwards (cond, uncond)

The token ids follow the same formulas as bench_model.c (prompt_ids(), gen_ids())
so both sides compute the same sequences.
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
    print(f"[bench_reference] {msg}", file=sys.stderr, flush=True)


def load_model(model_dir: str) -> ref.Tuna2:
    """Tuna2 in f32 with the checkpoint's weights (bf16 values upcast exactly)."""
    from safetensors.torch import load_file

    cfg = ref.load_config(os.path.join(model_dir, "config.json"))
    with torch.device("meta"):
        model = ref.Tuna2(cfg)
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    state = {}
    for name in files:
        for k, v in load_file(os.path.join(model_dir, name)).items():
            state[k] = v.float()
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


# ---- token ids: the same formulas as bench/bench_model.c -------------------

def text_id(i: int, salt: int) -> int:
    """Deterministic ordinary token ids (below 150000, away from the special ids)."""
    return (i * 7919 + salt * 104729 + 13) % 150000


def prompt_ids(n: int):
    return [text_id(i, 1) for i in range(n)]


def gen_ids(cfg: dict, text: int, salt: int, size: int):
    p = cfg["patch_size"]
    n = (size // p) * (size // p)
    tok = cfg["tokens"]
    return [text_id(i, salt) for i in range(text)] + [tok["boi"]] + [tok["image_pad"]] * (n + 1) + [tok["eoi"]]


# ---- a KV-cached LLM forward over the module's weights ---------------------

class KVCache:
    def __init__(self, cfg: dict, capacity: int):
        lc = cfg["llm"]
        shape = (lc["num_layers"], lc["num_kv_heads"], capacity, lc["head_dim"])
        self.k = torch.empty(shape)
        self.v = torch.empty(shape)
        self.length = 0


@torch.no_grad()
def llm_cached(model: ref.Tuna2, ids, cache: KVCache) -> torch.Tensor:
    """Rows [cache.length, cache.length + len(ids)) of a text-only sequence on
    top of the cache (causal attention, 1D RoPE at the global positions);
    returns the logits of the last row [V]. The same arithmetic as
    QwenLayer.forward, one layer at a time."""
    lc = model.cfg["llm"]
    hd = lc["head_dim"]
    n = len(ids)
    start = cache.length
    end = start + n
    x = model.tuna.model.embed_tokens(torch.as_tensor(ids, dtype=torch.long))
    cos, sin = ref.rope_1d_cos_sin(ref.default_inv_freq(hd, lc["rope_theta"]), torch.arange(start, end))
    allowed = torch.ones(n, end, dtype=torch.bool).tril(start)
    for li, layer in enumerate(model.tuna.model.layers):
        at = layer.self_attn
        a = layer.input_layernorm(x)
        q = ref.apply_rope_1d(at.q_proj(a).view(n, -1, hd).transpose(0, 1), cos, sin)
        k = ref.apply_rope_1d(at.k_proj(a).view(n, -1, hd).transpose(0, 1), cos, sin)
        v = at.v_proj(a).view(n, -1, hd).transpose(0, 1)
        cache.k[li, :, start:end] = k
        cache.v[li, :, start:end] = v
        o = ref.attention(q, cache.k[li, :, :end], cache.v[li, :, :end], allowed)
        x = x + at.o_proj(o.transpose(0, 1).reshape(n, -1))
        x = x + ref.swiglu_mlp(layer.mlp, layer.post_attention_layernorm(x))
    cache.length = end
    hidden = model.tuna.model.norm(x[-1:])
    return model.tuna.lm_head(hidden)[0]


@torch.no_grad()
def check_llm_cached(model: ref.Tuna2, n: int = 24) -> float:
    """Max |logits| difference between llm_cached (prefill of 2n/3 rows, then
    one row at a time) and the module's full forward, relative to max |logits|."""
    ids = prompt_ids(n)
    full = model(ids, run_head=False)["logits"]
    cache = KVCache(model.cfg, n)
    split = 2 * n // 3
    worst = float((llm_cached(model, ids[:split], cache) - full[split - 1]).abs().max())
    for i in range(split, n):
        worst = max(worst, float((llm_cached(model, [ids[i]], cache) - full[i]).abs().max()))
    return worst / float(full.abs().max())


class Timer:
    """Wall seconds and the share of the requested cores the process got:
    CPU time of all its threads / (wall time * threads)."""

    def __init__(self, threads: int):
        self.threads = threads

    def __enter__(self):
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.wall0
        self.cpu = (time.process_time() - self.cpu0) / (self.seconds * self.threads)


def best_of(reps: int, threads: int, fn) -> Timer:
    best = None
    for _ in range(reps):
        with Timer(threads) as t:
            fn()
        if best is None or t.seconds < best.seconds:
            best = t
    return best


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--decode", type=int, default=64)
    ap.add_argument("--full-decode", type=int, default=4, help="tokens decoded by full recompute")
    ap.add_argument("--gen-size", type=int, default=256)
    ap.add_argument("--gen-steps", type=int, default=2)
    ap.add_argument("--gen-text", type=int, default=32, help="conditional caption tokens")
    ap.add_argument("--gen-uncond-text", type=int, default=8)
    ap.add_argument("--check", action="store_true",
                    help="first check llm_cached against Tuna2.forward on 24 tokens (exit 1 if they differ)")
    ap.add_argument("--skip", default="", help="comma list of figures to skip: prefill,decode,full,gen")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model = load_model(args.model_dir)
    cfg = model.cfg
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "dtype": "f32",
           "load_s": round(time.perf_counter() - t0, 2), "prompt": args.prompt}
    log(f"loaded {args.model_dir} in {out['load_s']} s, threads={out['threads']}")

    if args.check:
        rel = check_llm_cached(model)
        log(f"llm_cached vs Tuna2.forward: max relative logits difference {rel:.2e}")
        if rel > 1e-4:
            sys.exit(1)
        out["check_rel_diff"] = rel

    ids = prompt_ids(args.prompt)
    if "prefill" not in skip:
        llm_cached(model, ids[:16], KVCache(cfg, 16))  # warm-up
        t = best_of(2, args.threads, lambda: llm_cached(model, ids, KVCache(cfg, len(ids))))
        out["prefill_tok_s"], out["prefill_cpu"] = args.prompt / t.seconds, t.cpu
        log(f"prefill (last-row logits): {out['prefill_tok_s']:.1f} tokens/s")
        t = best_of(1, args.threads, lambda: model(ids, run_head=False))
        out["prefill_module_tok_s"], out["prefill_module_cpu"] = args.prompt / t.seconds, t.cpu
        log(f"prefill (Tuna2.forward, all logits): {out['prefill_module_tok_s']:.1f} tokens/s")

    if "decode" not in skip:
        cache = KVCache(cfg, args.prompt + args.decode)
        logits = llm_cached(model, ids, cache)
        with Timer(args.threads) as t:
            for _ in range(args.decode):
                logits = llm_cached(model, [int(torch.argmax(logits))], cache)
        out["decode_kv_tok_s"], out["decode_kv_cpu"] = args.decode / t.seconds, t.cpu
        out["decode_steps"] = args.decode
        log(f"decode with a KV cache: {out['decode_kv_tok_s']:.2f} tokens/s")

    if "full" not in skip and args.full_decode > 0:
        with Timer(args.threads) as t:
            ref.greedy_generate(model, ids, [], [], args.full_decode)
        out["decode_full_tok_s"], out["decode_full_cpu"] = args.full_decode / t.seconds, t.cpu
        out["decode_full_steps"] = args.full_decode
        log(f"decode by full recompute: {out['decode_full_tok_s']:.3f} tokens/s")

    if "gen" not in skip:
        cond = gen_ids(cfg, args.gen_text, 2, args.gen_size)
        uncond = gen_ids(cfg, args.gen_uncond_text, 3, args.gen_size)
        g = torch.Generator().manual_seed(0)
        noise = cfg["noise_scale"] * torch.randn(cfg["image_channels"], args.gen_size, args.gen_size, generator=g)
        with Timer(args.threads) as t:
            ref.euler_sample(model, cond, uncond, noise, args.gen_steps, 4.0)
        out["gen_step_s"], out["gen_cpu"] = t.seconds / args.gen_steps, t.cpu
        out["gen_steps"] = args.gen_steps
        log(f"generation: {out['gen_step_s']:.3f} s per step")

    print(json.dumps(out))


if __name__ == "__main__":
    main()
