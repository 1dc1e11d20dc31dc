"""Writes the model fixtures under tests/fixtures/model/ (see the README there).

    python3 tools/reference/make_model_fixtures.py [--out tests/fixtures/model]

A tiny random Tuna-2 (tiny/, tiny_pt/, tiny_bf16/), forward+backward cases in
the `tuna forward` format of SPEC section 9, a greedy decode, and two 10-step
CFG generations (text-to-image and editing). Everything in fp32, deterministic
(fixed seeds); takes a few seconds on CPU.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tuna2_ref as ref  # noqa: E402

# Special tokens remapped into the small vocabulary.
BOS, EOS, BOI, EOI, IMG, PAD = 150, 151, 152, 153, 154, 155
NL = 13  # stands for "\n" in the fake chat template

TINY_CONFIG = {
    "architecture": "tuna2",
    "vocab_size": 160,
    "hidden_size": 32,
    "llm": {"num_layers": 2, "num_heads": 4, "num_kv_heads": 2, "head_dim": 8,
            "intermediate_size": 40, "rope_theta": 10000.0, "rms_norm_eps": 1e-6,
            "tie_word_embeddings": False},
    # 4 query heads x 16 = 64 != hidden 32 on purpose: q/o widths come from
    # num_heads*head_dim, not hidden_size. head_dim 16 -> 3D RoPE split 4/6/6.
    "head": {"num_layers": 2, "num_heads": 4, "num_kv_heads": 2, "head_dim": 16,
             "intermediate_size": 40, "rms_norm_eps": 1e-5, "qk_norm_eps": 1e-6,
             "final_norm_eps": 1e-6, "text_rope_theta": 500000.0,
             "text_rope_scaling": {"factor": 32.0, "low_freq_factor": 1.0,
                                   "high_freq_factor": 4.0,
                                   "original_max_position_embeddings": 8192},
             "image_rope_theta": 10000.0},
    "patch_size": 8, "image_channels": 3, "time_freq_dim": 256,
    "patch_norm_eps": None,
    "noise_scale": 2.0, "t_eps": 0.05,
    "tokens": {"bos": BOS, "eos": EOS, "boi": BOI, "eoi": EOI, "image_pad": IMG, "pad": PAD},
}

P = TINY_CONFIG["patch_size"]


def segment(h: int, w: int) -> list:
    """[BOI] [t] [N patches] [EOI] for an h x w image."""
    return [BOI] + [IMG] * ((h // P) * (w // P) + 1) + [EOI]


def chat_prefix(system, user_before, user_after, image_hw=None):
    """A fake ChatML prompt: <im_start> sys <im_end> \\n <im_start> user [image] ... <im_end>
    \\n <im_start> assistant \\n  (ids stand for the real tokens)."""
    ids = [BOS] + system + [EOS, NL, BOS] + user_before
    if image_hw is not None:
        ids += segment(*image_hw) + [NL]
    ids += user_after + [EOS, NL, BOS, 18, NL]
    return ids


def labels_for(ids, start):
    """-100 before `start`, the ids themselves from `start` on."""
    return [-100] * start + ids[start:]


def i32(x):
    return torch.tensor(x, dtype=torch.int32)


def put_images(d: dict, key: str, imgs):
    """Stacked [K,3,H,W] when all images share a size, else `key.k` per image."""
    if not imgs:
        return
    if all(im.shape == imgs[0].shape for im in imgs):
        d[key] = torch.stack([im.float() for im in imgs]).clone().contiguous()
    else:
        for k, im in enumerate(imgs):
            d[f"{key}.{k}"] = im.float().clone().contiguous()


def run_case(model, name, out_dir, ids, images, t, labels=None, targets=None,
             flow_images=None, masks=None):
    batch = {"input_ids": i32(ids)}
    put_images(batch, "images", images)
    if images:
        batch["t"] = torch.tensor(t, dtype=torch.float32)
    if masks is not None:
        batch["mask"] = torch.stack([torch.as_tensor(m, dtype=torch.uint8) for m in masks])
    if labels is not None:
        batch["labels"] = i32(labels)
    if targets is not None:
        put_images(batch, "targets", targets)
        batch["flow_images"] = torch.tensor(flow_images, dtype=torch.uint8)
    save_file(batch, os.path.join(out_dir, f"batch_{name}.safetensors"))

    model.zero_grad(set_to_none=True)
    out = model(ids, images, torch.tensor(t, dtype=torch.float32) if images else None,
                masks=[torch.as_tensor(m, dtype=torch.bool) for m in masks] if masks else None)
    res = {"hidden": out["hidden"], "logits": out["logits"]}
    put_images(res, "x_pred", out["x_pred"])
    if "head_out" in out:
        res["debug.head_out"] = out["head_out"]
    loss = None
    if labels is not None or targets is not None:
        loss_ce = ref.ce_loss(out["logits"], labels) if labels is not None else torch.zeros(())
        loss_flow = (ref.flow_loss(out["x_pred"], targets, t, flow_images, TINY_CONFIG["t_eps"])
                     if targets is not None else torch.zeros(()))
        loss = loss_ce + loss_flow
        res["loss_ce"] = loss_ce.reshape(1)
        res["loss_flow"] = loss_flow.reshape(1)
        res["loss"] = loss.reshape(1)
        if loss.requires_grad:
            loss.backward()
        for pname, prm in model.named_parameters():
            g = prm.grad if prm.grad is not None else torch.zeros_like(prm)
            res[f"grad.{pname}"] = g
    res = {k: v.detach().float().contiguous() for k, v in res.items()}
    save_file(res, os.path.join(out_dir, f"result_{name}.safetensors"))
    msg = f"{name}: L={len(ids)} images={[tuple(im.shape) for im in images]}"
    if loss is not None:
        msg += (f" loss_ce={float(res['loss_ce']):.6f} loss_flow={float(res['loss_flow']):.6f}"
                f" loss={float(res['loss']):.6f}")
    print(msg)
    return out


def clean_image(g, h, w):
    """A smooth-ish image in [-1, 1]: a random low-frequency pattern plus texture."""
    yy = torch.linspace(0, 1, h)[:, None]
    xx = torch.linspace(0, 1, w)[None, :]
    chans = []
    for _ in range(3):
        a, b, c = (torch.rand(3, generator=g) * 6).tolist()
        base = torch.sin(a * xx + b * yy + c)
        chans.append(0.7 * base + 0.3 * (torch.rand(h, w, generator=g) * 2 - 1))
    return torch.stack(chans).clamp(-1, 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..",
                                                  "tests", "fixtures", "model"))
    args = ap.parse_args()
    out_dir = os.path.abspath(args.out)
    torch.manual_seed(0)
    torch.set_num_threads(1)  # deterministic reductions
    g = torch.Generator().manual_seed(1234)

    model = ref.Tuna2(TINY_CONFIG)
    ref.init_random(model, seed=20240601)
    sd = ref.state_dict_f32(model)

    # ---- checkpoints ------------------------------------------------------
    for sub in ("tiny", "tiny_pt", "tiny_bf16"):
        os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
        ref.save_config(TINY_CONFIG, os.path.join(out_dir, sub, "config.json"))
    save_file(sd, os.path.join(out_dir, "tiny", "model.safetensors"), metadata={"format": "pt"})
    torch.save(sd, os.path.join(out_dir, "tiny_pt", "model.pt"))
    save_file({k: v.to(torch.bfloat16) for k, v in sd.items()},
              os.path.join(out_dir, "tiny_bf16", "model.safetensors"), metadata={"format": "pt"})

    # ---- (a) understanding: chat with one clean 16x24 image, CE on the reply ----
    img_a = clean_image(g, 16, 24)
    prompt_a = chat_prefix([10, 11, 12], [14], [15, 16, 17], image_hw=(16, 24))
    reply_a = [40, 41, 42, 43, 44, EOS]
    ids_a = prompt_a + reply_a
    run_case(model, "und", out_dir, ids_a, [img_a], [1.0], labels=labels_for(ids_a, len(prompt_a)))

    # ---- (b) text-to-image: 24x32 noisy image at t=0.3, 4 masked patches ----
    x_b = clean_image(g, 24, 32)
    noise_b = torch.randn(3, 24, 32, generator=g) * TINY_CONFIG["noise_scale"]
    t_b = 0.3
    z_b = t_b * x_b + (1 - t_b) * noise_b
    ids_b = [BOS, 60, 61, 62, 63, 64, 65] + segment(24, 32) + [EOS]
    mask_b = [0] * 12
    for j in (1, 4, 5, 10):
        mask_b[j] = 1
    run_case(model, "t2i", out_dir, ids_b, [z_b], [t_b], labels=[-100] * len(ids_b),
             targets=[x_b], flow_images=[1], masks=[mask_b])

    # ---- (c) editing: clean 16x16 source (t=1) + 16x24 target at t=0.6 ----
    src_c = clean_image(g, 16, 16)
    x_c = clean_image(g, 16, 24)
    t_c = 0.6
    z_c = t_c * x_c + (1 - t_c) * torch.randn(3, 16, 24, generator=g) * TINY_CONFIG["noise_scale"]
    instr = [70, 71, 72, 73, 74]
    ids_c = [BOS] + segment(16, 16) + instr + segment(16, 24) + [EOS]
    lab_c = [-100] * len(ids_c)
    first_instr = 1 + len(segment(16, 16))
    for i in range(first_instr, first_instr + len(instr)):
        lab_c[i] = ids_c[i]
    lab_c[-1] = EOS
    run_case(model, "edit", out_dir, ids_c, [src_c, z_c], [1.0, t_c], labels=lab_c,
             targets=[src_c, x_c], flow_images=[0, 1])

    # ---- (d) text only ----
    prompt_d = chat_prefix([10, 11], [20, 21, 22], [])
    ids_d = prompt_d + [50, 51, 52, 53, EOS]
    run_case(model, "text", out_dir, ids_d, [], [], labels=labels_for(ids_d, len(prompt_d)))

    # ---- greedy decode: understanding prompt -> 32 tokens ----
    img_dec = clean_image(g, 16, 16)
    prompt_dec = chat_prefix([10, 11, 12], [14], [30, 31], image_hw=(16, 16))
    gen = ref.greedy_generate(model, prompt_dec, [img_dec], [1.0], 32)
    with torch.no_grad():
        first = model(prompt_dec, [img_dec], torch.tensor([1.0]), run_head=False)["logits"][-1]
    save_file({"input_ids": i32(prompt_dec), "images": img_dec[None].contiguous(),
               "t": torch.tensor([1.0]), "generated": i32(gen),
               "first_logits": first.float().contiguous()},
              os.path.join(out_dir, "decode.safetensors"))
    print(f"decode: prompt L={len(prompt_dec)} -> {gen} ({len(set(gen))} distinct)")

    # ---- 10-step text-to-image with CFG 3 (24x16 image) ----
    steps = 10
    caption = [90, 91, 92, 93]
    negative = [95, 96]
    cond = [BOS] + caption + segment(24, 16) + [EOS]
    uncond = [BOS] + negative + segment(24, 16) + [EOS]
    noise = torch.randn(1, 3, 24, 16, generator=g) * TINY_CONFIG["noise_scale"]
    traj = []
    img = ref.euler_sample(model, cond, uncond, noise[0], steps, 3.0, record=traj)
    save_file({"cond_ids": i32(cond), "uncond_ids": i32(uncond), "noise": noise.contiguous(),
               "cfg_scale": torch.tensor([3.0]), "steps": i32([steps]),
               "timesteps": torch.linspace(0, 1, steps + 1, dtype=torch.float32),
               "trajectory": torch.stack(traj).contiguous(), "image": img[None].contiguous()},
              os.path.join(out_dir, "gen_t2i.safetensors"))
    print(f"gen_t2i: image mean {float(img.mean()):.4f} std {float(img.std()):.4f}")

    # ---- 10-step edit with CFG 2: 16x24 source kept clean at t=1 in both branches ----
    source = clean_image(g, 16, 24)
    instr = [100, 101, 102]
    neg = [105, 106, 107, 108]
    cond = [BOS] + segment(16, 24) + instr + segment(16, 24) + [EOS]
    uncond = [BOS] + segment(16, 24) + neg + segment(16, 24) + [EOS]
    noise = torch.randn(1, 3, 16, 24, generator=g) * TINY_CONFIG["noise_scale"]
    traj = []
    img = ref.euler_sample(model, cond, uncond, noise[0], steps, 2.0, source=source, record=traj)
    save_file({"cond_ids": i32(cond), "uncond_ids": i32(uncond), "noise": noise.contiguous(),
               "source": source[None].contiguous(), "cfg_scale": torch.tensor([2.0]),
               "steps": i32([steps]),
               "timesteps": torch.linspace(0, 1, steps + 1, dtype=torch.float32),
               "trajectory": torch.stack(traj).contiguous(), "image": img[None].contiguous()},
              os.path.join(out_dir, "gen_edit.safetensors"))
    print(f"gen_edit: image mean {float(img.mean()):.4f} std {float(img.std()):.4f}")

    total = 0
    for root, _, files in os.walk(out_dir):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    print(f"fixtures: {total / 1e6:.2f} MB in {out_dir}")


if __name__ == "__main__":
    main()
