"""Cross-check tuna2_ref.py against Meta's own code, run (not copied) from a checkout.

Meta's `Tuna2Pixel` is built with small random sizes it can express (its
`build_rope` hard-codes patch 16 and head_dim 64, and its head has
head_dim = hidden / heads), our weights are loaded into it, and both models
run the same sequences: logits, x_pred, losses and every gradient must agree.

Needs an environment with Meta's dependencies; a throwaway one is enough:
    python3 -m venv --system-site-packages /tmp/refvenv
    /tmp/refvenv/bin/pip install --no-deps transformers==4.52.4 einops diffusers==0.35.1 \
        "tokenizers>=0.21,<0.22" "huggingface_hub>=0.30,<1.0" omegaconf \
        antlr4-python3-runtime==4.9.3 pillow importlib_metadata zipp regex pyyaml
    git archive of facebookresearch/tuna-2 (its `tuna/` dir) unpacked under REF
    /tmp/refvenv/bin/python tools/reference/check_against_reference.py --ref REF
(timm is stubbed: the code only takes `to_2tuple` from it.)
"""

from __future__ import annotations

import argparse
import importlib.machinery
import json
import os
import sys
import tempfile
import types

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tuna2_ref as ours  # noqa: E402

BOS, EOS, BOI, EOI, IMG, PAD = 150, 151, 152, 153, 154, 155

CFG = {
    "architecture": "tuna2", "vocab_size": 160, "hidden_size": 128,
    "llm": {"num_layers": 2, "num_heads": 4, "num_kv_heads": 2, "head_dim": 32,
            "intermediate_size": 96, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
            "tie_word_embeddings": False},
    "head": {"num_layers": 2, "num_heads": 2, "num_kv_heads": 1, "head_dim": 64,
             "intermediate_size": 96},
    "patch_size": 16,
    "tokens": {"bos": BOS, "eos": EOS, "boi": BOI, "eoi": EOI, "image_pad": IMG, "pad": PAD},
}


def stub_module(name):
    mod = types.ModuleType(name)
    mod.__spec__ = importlib.machinery.ModuleSpec(name, None)
    sys.modules[name] = mod
    return mod


def build_meta_model(ref_dir: str, cfg: dict):
    sys.path.insert(0, ref_dir)
    stub_module("timm")
    stub_module("timm.layers")
    stub_module("timm.layers.helpers").to_2tuple = lambda x: (x, x)
    from tuna.models.tuna_2_pixel import Tuna2Pixel

    tmp = tempfile.mkdtemp()
    lc = cfg["llm"]
    with open(os.path.join(tmp, "config.json"), "w") as f:
        json.dump({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
                   "hidden_size": cfg["hidden_size"], "intermediate_size": lc["intermediate_size"],
                   "num_hidden_layers": lc["num_layers"], "num_attention_heads": lc["num_heads"],
                   "num_key_value_heads": lc["num_kv_heads"], "rms_norm_eps": lc["rms_norm_eps"],
                   "rope_theta": lc["rope_theta"], "vocab_size": cfg["vocab_size"],
                   "max_position_embeddings": 32768, "tie_word_embeddings": False,
                   "hidden_act": "silu", "use_sliding_window": False,
                   "torch_dtype": "float32"}, f)
    hc = cfg["head"]
    model = Tuna2Pixel(llm_vocab_size=cfg["vocab_size"], llm_model_path=tmp,
                       init_llm_from_config=True, image_latent_dim=3, patch_size=cfg["patch_size"],
                       hidden_size=cfg["hidden_size"], num_attention_heads=hc["num_heads"],
                       num_key_value_heads=hc["num_kv_heads"], num_diffusion_layers=hc["num_layers"],
                       add_aspect_ratio_embeds=False, add_time_embeds=True, enable_mask_token=True)
    return model.float()


def compare(name, a, b, tol=2e-5):
    a = a.detach().float()
    b = b.detach().float()
    if a.shape != b.shape:
        raise AssertionError(f"{name}: shape {tuple(a.shape)} vs {tuple(b.shape)}")
    err = float((a - b).abs().max())
    scale = float(b.abs().max()) + 1e-12
    ok = err <= tol * max(1.0, scale)
    print(f"  {'ok ' if ok else 'BAD'} {name:60s} max|diff| {err:.3e} (max|ref| {scale:.3e})")
    return ok


def meta_forward(meta, ids, images, t, segments, labels=None, train_mask=None):
    """Meta's forward on one sequence (batch 1); images all the same size."""
    from tuna.models.omni_attention import omni_attn_mask_naive
    L = len(ids)
    text_tokens = torch.tensor([ids])
    mpos = torch.tensor([[list(s) for s in segments]])
    attn = omni_attn_mask_naive(1, L, mpos, "cpu").to(torch.float32)
    latents = torch.stack(images)[:, :, None]  # (K, 3, 1, H, W)
    kwargs = dict(text_tokens=text_tokens, image_latents=latents, t=torch.tensor(t),
                  attention_mask=attn, modality_positions=mpos, max_seq_len=L, device="cpu")
    if labels is None:
        return meta(**kwargs)
    image_masks = torch.zeros(1, L)
    for off, ln in segments:
        image_masks[0, off:off + ln] = 1
    kwargs.update(text_labels=torch.tensor([labels]), image_labels=labels_images(images, train_mask),
                  image_masks=image_masks)
    return meta(**kwargs)


def labels_images(images, _):
    return torch.stack(CLEAN)[:, :, None]


CLEAN = []


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref", required=True, help="directory holding Meta's tuna/ package")
    args = ap.parse_args()
    torch.manual_seed(0)
    meta = build_meta_model(args.ref, CFG)
    mine = ours.Tuna2(CFG)
    ours.init_random(mine, seed=7)
    sd = ours.state_dict_f32(mine)
    meta_keys = set(meta.state_dict().keys())
    if meta_keys != set(sd.keys()):
        print("key mismatch:", sorted(meta_keys ^ set(sd.keys())))
        sys.exit(1)
    meta.load_state_dict(sd, strict=True)
    print(f"state dict: {len(sd)} tensors, names identical to Meta's Tuna2Pixel")

    g = torch.Generator().manual_seed(3)
    H, W, p = 32, 48, 16
    n = (H // p) * (W // p)
    seg = [BOI] + [IMG] * (n + 1) + [EOI]
    all_ok = True

    # 1. understanding-style, inference path: logits and x_pred
    img = torch.rand(3, H, W, generator=g) * 2 - 1
    ids = [BOS, 10, 11, EOS, 13, BOS, 14] + seg + [15, 16, EOS, 13, BOS, 18, 13, 40, 41]
    segs = ours.find_segments(ids, BOI, IMG)
    meta.eval()
    with torch.no_grad():
        logits_m, x_m = meta_forward(meta, ids, [img], [1.0], segs)
        out = mine(ids, [img], torch.tensor([1.0]))
    print("understanding (inference path):")
    all_ok &= compare("logits", out["logits"], logits_m[0])
    all_ok &= compare("x_pred", out["x_pred"][0], x_m[0, :, 0])

    # 2. editing-style, two images (same size: Meta stacks them), inference path
    src = torch.rand(3, H, W, generator=g) * 2 - 1
    z = torch.randn(3, H, W, generator=g) * 2
    ids = [BOS] + seg + [70, 71, 72] + seg + [EOS, PAD, PAD]
    segs = ours.find_segments(ids, BOI, IMG)
    with torch.no_grad():
        logits_m, x_m = meta_forward(meta, ids, [src, z], [1.0, 0.6], segs)
        out = mine(ids, [src, z], torch.tensor([1.0, 0.6]))
    print("editing (inference path, two segments):")
    all_ok &= compare("logits", out["logits"], logits_m[0])
    all_ok &= compare("x_pred[0]", out["x_pred"][0], x_m[0, :, 0])
    all_ok &= compare("x_pred[1]", out["x_pred"][1], x_m[1, :, 0])

    # 3. text-to-image training path: CE + flow loss + every gradient, with a masked patch
    x = torch.rand(3, H, W, generator=g) * 2 - 1
    t = 0.3
    zt = t * x + (1 - t) * torch.randn(3, H, W, generator=g) * 2
    ids = [BOS, 60, 61, 62] + seg + [EOS]
    labels = [-100, 60, 61, 62, -100] + [-100] * (n + 1) + [EOI, EOS]
    segs = ours.find_segments(ids, BOI, IMG)
    CLEAN[:] = [x]
    masked = [1, 4]
    import random
    import numpy as np
    saved = (random.uniform, np.random.choice)
    random.uniform = lambda a, b: len(masked) / n + 1e-6
    np.random.choice = lambda N, k, replace=False: np.array(masked)
    meta.train()
    try:
        logits_m, ce_m, flow_m, _ = meta_forward(meta, ids, [zt], [t], segs, labels=labels)
    finally:
        random.uniform, np.random.choice = saved
    meta.zero_grad()
    (ce_m + flow_m).backward()
    mask = torch.zeros(n, dtype=torch.bool)
    mask[masked] = True
    mine.zero_grad()
    out = mine(ids, [zt], torch.tensor([t]), masks=[mask])
    ce = ours.ce_loss(out["logits"], labels)
    fl = ours.flow_loss(out["x_pred"], [x], [t], [1], 0.05)
    (ce + fl).backward()
    print("text-to-image (training path, masked patches 1 and 4):")
    all_ok &= compare("logits", out["logits"], logits_m[0])
    all_ok &= compare("loss_ce", ce, ce_m)
    all_ok &= compare("loss_flow", fl, flow_m)
    meta_params = dict(meta.named_parameters())
    for name, prm in mine.named_parameters():
        gm = meta_params[name].grad
        gm = torch.zeros_like(prm) if gm is None else gm
        gg = torch.zeros_like(prm) if prm.grad is None else prm.grad
        all_ok &= compare("grad." + name, gg, gm, tol=1e-4)
    print("ALL MATCH" if all_ok else "MISMATCHES FOUND")
    sys.exit(0 if all_ok else 1)


if __name__ == "__main__":
    main()
