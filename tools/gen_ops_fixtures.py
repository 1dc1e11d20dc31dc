#!/usr/bin/env python3
"""Regenerates tests/fixtures/ops_rope_time.txt: RoPE tables and time
embeddings computed with torch in f32 the way the reference does (HF Qwen2
default RoPE, HF llama3 rescaling, tuna-2 build_rope, TimestepEmbedder), for
tests/test_ops_fixtures.c. Written from the formulas, not copied code.

Format: blocks of "name count" then count floats, one per line (%.9g)."""
import math
import torch

OUT = "tests/fixtures/ops_rope_time.txt"
POS = [0, 1, 7, 100, 1000, 4095]


def inv_freq_default(dim, theta):
    return 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))


def inv_freq_llama3(dim, theta, factor=32.0, low=1.0, high=4.0, orig=8192):
    f = inv_freq_default(dim, theta)
    wavelen = 2 * math.pi / f
    low_wl, high_wl = orig / low, orig / high
    scaled = torch.where(wavelen > low_wl, f / factor, f)
    smooth = (orig / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < high_wl) * ~(wavelen > low_wl)
    return torch.where(medium, smoothed, scaled)


def angles(inv, pos):
    p = torch.tensor(pos, dtype=torch.float32)
    return p[:, None] * inv[None, :]          # f32 product, as (inv @ pos) with K=1


def rope3d_angles(rows_cols, head_dim, theta=10000):
    out = []
    for (r, c) in rows_cols:
        parts = []
        for pos, dim in ((0.0, head_dim // 4), (float(r), head_dim // 8 * 3), (float(c), head_dim // 8 * 3)):
            scale = torch.arange(0, dim, 2, dtype=torch.float32) / dim
            omega = 1.0 / (theta ** scale)
            parts.append(torch.tensor([pos], dtype=torch.float32)[:, None] * omega[None, :])
        out.append(torch.cat(parts, dim=-1))
    return torch.cat(out, dim=0)


def timestep(t, dim=256, max_period=10000):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(0, half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def main():
    blocks = []
    a = angles(inv_freq_default(128, 1e6), POS)
    blocks += [("qwen2_cos", a.cos()), ("qwen2_sin", a.sin())]
    a = angles(inv_freq_llama3(64, 5e5), POS)
    blocks += [("llama3_inv_freq", inv_freq_llama3(64, 5e5)), ("llama3_cos", a.cos()), ("llama3_sin", a.sin())]
    rc = [(0, 0), (0, 5), (3, 1), (31, 31), (63, 40)]
    a = rope3d_angles(rc, 64)
    blocks += [("rope3d_cos", a.cos()), ("rope3d_sin", a.sin())]
    blocks += [("time_emb", timestep(torch.tensor([0.0, 0.25, 0.7311, 1.0])))]
    with open(OUT, "w") as f:
        for name, t in blocks:
            flat = t.reshape(-1).tolist()
            f.write(f"{name} {len(flat)}\n")
            f.writelines(f"{v:.9g}\n" for v in flat)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
