"""Our own PyTorch reference of the Tuna-2 model (SPEC.md), for fixtures.

Written from SPEC.md and from reading Meta's `facebookresearch/tuna-2` (see
docs/reference-notes.md for every point checked against it). Plain torch, no
transformers: the Qwen2 decoder, the flow head, RoPE, the omni mask, the losses
and the samplers are all spelled out here, one readable function each.

Everything runs on one sequence (no batch dimension) and in the dtype of the
parameters (the fixtures use fp32). The C engine is tested number for number
against what this file writes, so it follows the reference's arithmetic order
where that matters (fp32 RoPE tables, RMSNorm upcast, time-embedding formula).

Run `python3 tools/reference/tuna2_ref.py` for the self-checks.
"""

from __future__ import annotations

import copy
import json
import math
import os
import sys
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

# --------------------------------------------------------------------------
# Configuration (SPEC section 8)
# --------------------------------------------------------------------------

OFFICIAL_7B_CONFIG = {
    "architecture": "tuna2",
    "vocab_size": 151669,
    "hidden_size": 3584,
    "llm": {"num_layers": 28, "num_heads": 28, "num_kv_heads": 4, "head_dim": 128,
            "intermediate_size": 18944, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
            "tie_word_embeddings": False},
    "head": {"num_layers": 16, "num_heads": 56, "num_kv_heads": 14, "head_dim": 64,
             "intermediate_size": 18944, "rms_norm_eps": 1e-5, "qk_norm_eps": 1e-6,
             "final_norm_eps": 1e-6, "text_rope_theta": 500000.0,
             "text_rope_scaling": {"factor": 32.0, "low_freq_factor": 1.0,
                                   "high_freq_factor": 4.0,
                                   "original_max_position_embeddings": 8192},
             "image_rope_theta": 10000.0},
    "patch_size": 16, "image_channels": 3, "time_freq_dim": 256,
    "patch_norm_eps": None,
    "noise_scale": 2.0, "t_eps": 0.05,
    "tokens": {"bos": 151644, "eos": 151645, "boi": 151652, "eoi": 151653,
               "image_pad": 151655, "pad": 151665},
}


def _check_keys(given: dict, allowed: dict, where: str) -> None:
    """Unknown keys are an error (SPEC section 8); missing ones take the 7B default."""
    for key in given:
        if key not in allowed:
            raise ValueError(f"config: unknown key '{where}{key}'")


def normalize_config(cfg: dict) -> dict:
    """Fill missing keys from the 7B defaults, reject unknown keys, check shapes."""
    out = copy.deepcopy(OFFICIAL_7B_CONFIG)
    _check_keys(cfg, OFFICIAL_7B_CONFIG, "")
    for key, value in cfg.items():
        if key in ("llm", "head", "tokens"):
            _check_keys(value, OFFICIAL_7B_CONFIG[key], key + ".")
            for k2, v2 in value.items():
                if k2 == "text_rope_scaling" and v2 is not None:
                    _check_keys(v2, OFFICIAL_7B_CONFIG["head"]["text_rope_scaling"],
                                "head.text_rope_scaling.")
                out[key][k2] = copy.deepcopy(v2)
        else:
            out[key] = copy.deepcopy(value)
    if out["architecture"] != "tuna2":
        raise ValueError("config: architecture must be 'tuna2'")
    for part in ("llm", "head"):
        c = out[part]
        if c["num_heads"] % c["num_kv_heads"] != 0:
            raise ValueError(f"config: {part}.num_heads must be a multiple of num_kv_heads")
        if c["head_dim"] % 2 != 0:
            raise ValueError(f"config: {part}.head_dim must be even")
    if out["head"]["head_dim"] % 16 != 0:
        # the 3D RoPE sections hd/4, 3hd/8, 3hd/8 must each hold whole pairs
        raise ValueError("config: head.head_dim must be a multiple of 16")
    for tok, tid in out["tokens"].items():
        if not 0 <= int(tid) < out["vocab_size"]:
            raise ValueError(f"config: tokens.{tok} = {tid} is outside the vocabulary")
    if out["llm"]["tie_word_embeddings"]:
        raise ValueError("config: tied word embeddings are not supported (Tuna-2 unties them)")
    return out


def load_config(path: str) -> dict:
    with open(path, "r", encoding="utf-8") as f:
        return normalize_config(json.load(f))


def save_config(cfg: dict, path: str) -> None:
    cfg = normalize_config(cfg)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")


# --------------------------------------------------------------------------
# Small building blocks
# --------------------------------------------------------------------------


class RMSNorm(nn.Module):
    """y = weight * (x / sqrt(mean(x^2) + eps)).

    Qwen2RMSNorm / the head's RMSNorm order: upcast to fp32, normalise, cast
    back to the input dtype, THEN multiply by the weight (in the input dtype).
    eps=None means the machine epsilon of the input dtype (torch.nn.RMSNorm
    with eps=None, used by the patch-embedding norm)."""

    def __init__(self, dim: int, eps: Optional[float]):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        eps = torch.finfo(x.dtype).eps if self.eps is None else self.eps
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
        return self.weight * normed.to(x.dtype)


def swiglu_mlp(mlp: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """down(silu(gate(x)) * up(x))."""
    return mlp.down_proj(F.silu(mlp.gate_proj(x)) * mlp.up_proj(x))


def make_mlp(d: int, inter: int) -> nn.Module:
    m = nn.Module()
    m.gate_proj = nn.Linear(d, inter, bias=False)
    m.up_proj = nn.Linear(d, inter, bias=False)
    m.down_proj = nn.Linear(inter, d, bias=False)
    return m


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """[x1, x2] -> [-x2, x1] over the last dim split in halves."""
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def default_inv_freq(head_dim: int, theta: float) -> torch.Tensor:
    """inv_freq[i] = 1 / theta^(2i/head_dim), computed in fp32 as HF does."""
    exponent = torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim
    return 1.0 / (theta ** exponent)


def llama3_inv_freq(head_dim: int, theta: float, scaling: dict) -> torch.Tensor:
    """HF 'llama3' rope scaling of the default frequencies (fp32).

    wavelen = 2*pi / f.  wavelen < old/high: f kept;  wavelen > old/low: f/factor;
    otherwise s = (old/wavelen - low)/(high - low),  f' = (1-s)*f/factor + s*f."""
    inv_freq = default_inv_freq(head_dim, theta)
    factor = scaling["factor"]
    low = scaling["low_freq_factor"]
    high = scaling["high_freq_factor"]
    old = scaling["original_max_position_embeddings"]
    low_freq_wavelen = old / low
    high_freq_wavelen = old / high
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    is_medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium, smoothed, scaled)


def rope_1d_cos_sin(inv_freq: torch.Tensor, positions: torch.Tensor):
    """cos/sin tables [L, head_dim] for rotate-half RoPE: angle = pos * f (fp32),
    duplicated as [angles, angles]."""
    angles = positions.float()[:, None] * inv_freq[None, :]
    emb = torch.cat((angles, angles), dim=-1)
    return emb.cos(), emb.sin()


def apply_rope_1d(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [heads, L, hd]; y = x*cos + rotate_half(x)*sin."""
    return x * cos.to(x.dtype) + rotate_half(x) * sin.to(x.dtype)


def rope_3d_cos_sin(grid_h: int, grid_w: int, head_dim: int, theta: float):
    """Per-pair angles [N, head_dim/2] for the 3D RoPE of one image (fp32).

    Patch k sits at (frame 0, row k // grid_w, col k % grid_w). Pairs
    0 .. hd/8-1 use the frame section (width hd/4), the next 3hd/16 pairs the
    row section (width 3hd/8), the last 3hd/16 pairs the column section; in a
    section of width s, pair j has frequency theta^(-2j/s)."""
    widths = (head_dim // 4, head_dim // 8 * 3, head_dim // 8 * 3)
    n = grid_h * grid_w
    k = torch.arange(n)
    coords = (torch.zeros(n), (k // grid_w).float(), (k % grid_w).float())
    parts = []
    for width, pos in zip(widths, coords):
        exponent = torch.arange(0, width, 2, dtype=torch.float32) / width
        omega = 1.0 / (theta ** exponent)
        parts.append(pos[:, None] * omega[None, :])
    angles = torch.cat(parts, dim=1)
    return angles.cos(), angles.sin()


def apply_rope_3d(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [heads, N, hd]; interleaved pairs (x[2i], x[2i+1]) rotated by MINUS the
    angle, as the reference's row-vector product [x0 x1] @ [[c,-s],[s,c]]:
    y0 = x0*c + x1*s,  y1 = -x0*s + x1*c."""
    x0 = x[..., 0::2]
    x1 = x[..., 1::2]
    c = cos.to(x.dtype)
    s = sin.to(x.dtype)
    y0 = x0 * c + x1 * s
    y1 = -x0 * s + x1 * c
    return torch.stack((y0, y1), dim=-1).flatten(-2)


def omni_mask(seq_len: int, segments: Sequence[tuple]) -> torch.Tensor:
    """Boolean [L, L], True = query i may attend key j: causal (j <= i), plus
    every pair inside the same segment [offset, offset+length)."""
    allowed = torch.ones(seq_len, seq_len, dtype=torch.bool).tril()
    for offset, length in segments:
        allowed[offset:offset + length, offset:offset + length] = True
    return allowed


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
              allowed: torch.Tensor) -> torch.Tensor:
    """q: [Hq, L, hd], k/v: [Hkv, L, hd]; GQA: query head h reads kv head
    h // (Hq/Hkv). softmax(q k^T / sqrt(hd) + mask) v, masked scores -inf."""
    group = q.shape[0] // k.shape[0]
    k = k.repeat_interleave(group, dim=0)
    v = v.repeat_interleave(group, dim=0)
    scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~allowed, float("-inf"))
    probs = torch.softmax(scores.float(), dim=-1).to(q.dtype)
    return torch.matmul(probs, v)


def timestep_sinusoid(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """[K] -> [K, dim]: freqs_i = exp(-ln(max_period) * i / (dim/2)), i < dim/2 (fp32);
    emb = [cos(t*freqs), sin(t*freqs)] (cos half first). t in [0,1], unscaled."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(0, half, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None, :]
    emb = torch.cat((torch.cos(args), torch.sin(args)), dim=-1)
    if dim % 2:
        emb = torch.cat((emb, torch.zeros_like(emb[:, :1])), dim=-1)
    return emb


# --------------------------------------------------------------------------
# Sequence layout helpers (SPEC sections 3, 4, 9)
# --------------------------------------------------------------------------


def find_segments(input_ids: Sequence[int], boi: int, image_pad: int) -> List[tuple]:
    """Image segments (offset, length): each `boi` followed by a run of
    `image_pad`; offset = index of the first pad (the t slot), length = the run."""
    ids = [int(x) for x in input_ids]
    segs = []
    i = 0
    while i < len(ids):
        if ids[i] == boi and i + 1 < len(ids) and ids[i + 1] == image_pad:
            start = i + 1
            end = start
            while end < len(ids) and ids[end] == image_pad:
                end += 1
            segs.append((start, end - start))
            i = end
        else:
            i += 1
    return segs


def image_to_slots(img: torch.Tensor, p: int) -> torch.Tensor:
    """[C,H,W] -> [N, p*p*C] as the reference's label reshape: the image in
    raster order (H*W, C), RGB interleaved, cut into consecutive runs of p*p
    pixels. Slot k is NOT patch k's cell (SPEC section 4)."""
    c, h, w = img.shape
    return img.permute(1, 2, 0).reshape((h * w) // (p * p), p * p * c)


def slots_to_image(slots: torch.Tensor, c: int, h: int, w: int) -> torch.Tensor:
    """Inverse of image_to_slots: [N, p*p*C] -> (H*W, C) -> (H, W, C) -> [C,H,W]."""
    return slots.reshape(h * w, c).reshape(h, w, c).permute(2, 0, 1)


# --------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------


class QwenLayer(nn.Module):
    def __init__(self, d: int, c: dict):
        super().__init__()
        hd = c["head_dim"]
        self.self_attn = nn.Module()
        self.self_attn.q_proj = nn.Linear(d, c["num_heads"] * hd, bias=True)
        self.self_attn.k_proj = nn.Linear(d, c["num_kv_heads"] * hd, bias=True)
        self.self_attn.v_proj = nn.Linear(d, c["num_kv_heads"] * hd, bias=True)
        self.self_attn.o_proj = nn.Linear(c["num_heads"] * hd, d, bias=False)
        self.mlp = make_mlp(d, c["intermediate_size"])
        self.input_layernorm = RMSNorm(d, c["rms_norm_eps"])
        self.post_attention_layernorm = RMSNorm(d, c["rms_norm_eps"])
        self.hd = hd

    def forward(self, h, cos, sin, allowed):
        L = h.shape[0]
        a = self.input_layernorm(h)
        q = self.self_attn.q_proj(a).view(L, -1, self.hd).transpose(0, 1)
        k = self.self_attn.k_proj(a).view(L, -1, self.hd).transpose(0, 1)
        v = self.self_attn.v_proj(a).view(L, -1, self.hd).transpose(0, 1)
        q = apply_rope_1d(q, cos, sin)
        k = apply_rope_1d(k, cos, sin)
        o = attention(q, k, v, allowed).transpose(0, 1).reshape(L, -1)
        h = h + self.self_attn.o_proj(o)
        h = h + swiglu_mlp(self.mlp, self.post_attention_layernorm(h))
        return h


class HeadBlock(nn.Module):
    """ModulatedAttentionBlock (SPEC section 2)."""

    def __init__(self, d: int, c: dict):
        super().__init__()
        hd = c["head_dim"]
        self.self_attn = nn.Module()
        self.self_attn.q_proj = nn.Linear(d, c["num_heads"] * hd, bias=False)
        self.self_attn.k_proj = nn.Linear(d, c["num_kv_heads"] * hd, bias=False)
        self.self_attn.v_proj = nn.Linear(d, c["num_kv_heads"] * hd, bias=False)
        self.self_attn.o_proj = nn.Linear(c["num_heads"] * hd, d, bias=False)
        self.self_attn.q_norm = RMSNorm(hd, c["qk_norm_eps"])
        self.self_attn.k_norm = RMSNorm(hd, c["qk_norm_eps"])
        self.mlp = make_mlp(d, c["intermediate_size"])
        self.input_layernorm = RMSNorm(d, c["rms_norm_eps"])
        self.post_attention_layernorm = RMSNorm(d, c["rms_norm_eps"])
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d, bias=True))
        self.hd = hd

    def forward(self, h, mod, pos):
        """mod: [L, 6d] per-position modulation (shift=scale=0, gate=1 outside
        the segments); pos: the per-position RoPE tables of HeadPositions."""
        L = h.shape[0]
        shift1, scale1, gate1, shift2, scale2, gate2 = mod.chunk(6, dim=-1)
        a = modulate(self.input_layernorm(h), shift1, scale1)
        q = self.self_attn.q_proj(a).view(L, -1, self.hd).transpose(0, 1)
        k = self.self_attn.k_proj(a).view(L, -1, self.hd).transpose(0, 1)
        v = self.self_attn.v_proj(a).view(L, -1, self.hd).transpose(0, 1)
        q = self.self_attn.q_norm(q)
        k = self.self_attn.k_norm(k)
        q = pos.rotate(q)
        k = pos.rotate(k)
        o = attention(q, k, v, pos.allowed).transpose(0, 1).reshape(L, -1)
        h = h + gate1 * self.self_attn.o_proj(o)
        b = modulate(self.post_attention_layernorm(h), shift2, scale2)
        h = h + gate2 * swiglu_mlp(self.mlp, b)
        return h


def modulate(x, shift, scale):
    """x*(1+scale)+shift in fp32, cast back (the reference's `modulate`)."""
    return (x.float() * (1 + scale.float()) + shift.float()).to(x.dtype)


class FinalLayer(nn.Module):
    def __init__(self, d: int, out_dim: int, eps: float):
        super().__init__()
        self.norm_final = RMSNorm(d, eps)
        self.linear = nn.Linear(d, out_dim, bias=True)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d, bias=True))


class HeadPositions:
    """Which RoPE each position of the head gets (SPEC section 2):
    outside every segment (text, BOI, EOI, EOS...): 1D rotate-half, llama3-scaled,
    at the global index; the t slot (offset): none; patch j of a segment: 3D
    interleaved minus-angle at (0, j // grid_w, j % grid_w) of that image."""

    def __init__(self, cfg: dict, L: int, segments, grids, dtype):
        hc = cfg["head"]
        hd = hc["head_dim"]
        if hc.get("text_rope_scaling"):
            inv = llama3_inv_freq(hd, hc["text_rope_theta"], hc["text_rope_scaling"])
        else:
            inv = default_inv_freq(hd, hc["text_rope_theta"])
        cos, sin = rope_1d_cos_sin(inv, torch.arange(L))
        self.cos1d = cos.to(dtype)
        self.sin1d = sin.to(dtype)
        text = torch.ones(L, dtype=torch.bool)
        self.images = []
        for (offset, length), (gh, gw) in zip(segments, grids):
            text[offset:offset + length] = False
            c3, s3 = rope_3d_cos_sin(gh, gw, hd, hc["image_rope_theta"])
            self.images.append((offset + 1, length - 1, c3.to(dtype), s3.to(dtype)))
        self.text_idx = torch.nonzero(text).flatten()
        self.allowed = omni_mask(L, segments)

    def rotate(self, x):
        """x: [heads, L, hd] -> rotated copy (the t slot keeps its values)."""
        out = x.clone()
        ti = self.text_idx
        out[:, ti] = apply_rope_1d(x[:, ti], self.cos1d[ti], self.sin1d[ti])
        for start, n, c3, s3 in self.images:
            out[:, start:start + n] = apply_rope_3d(x[:, start:start + n], c3, s3)
        return out


class Tuna2(nn.Module):
    """Parameter names are the official state-dict names (SPEC section 7)."""

    def __init__(self, cfg: dict):
        super().__init__()
        cfg = normalize_config(cfg)
        self.cfg = cfg
        d = cfg["hidden_size"]
        lc, hc = cfg["llm"], cfg["head"]
        p, ch = cfg["patch_size"], cfg["image_channels"]

        self.tuna = nn.Module()
        self.tuna.model = nn.Module()
        self.tuna.model.embed_tokens = nn.Embedding(cfg["vocab_size"], d)
        self.tuna.model.layers = nn.ModuleList(QwenLayer(d, lc) for _ in range(lc["num_layers"]))
        self.tuna.model.norm = RMSNorm(d, lc["rms_norm_eps"])
        self.tuna.lm_head = nn.Linear(d, cfg["vocab_size"], bias=False)

        self.vision_encoder = nn.Module()
        self.vision_encoder.patch_embedding = nn.Conv2d(ch, d, kernel_size=p, stride=p, bias=True)
        self.vision_encoder.norm = RMSNorm(d, cfg["patch_norm_eps"])

        self.time_embed = nn.Module()
        self.time_embed.mlp = nn.Sequential(nn.Linear(cfg["time_freq_dim"], d), nn.SiLU(),
                                            nn.Linear(d, d))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        self.diffusion_head_a = nn.ModuleList(HeadBlock(d, hc) for _ in range(hc["num_layers"]))
        self.diffusion_head_b = FinalLayer(d, p * p * ch, hc["final_norm_eps"])

    # ---- pieces -----------------------------------------------------------

    def patch_embed(self, img: torch.Tensor) -> torch.Tensor:
        """[C,H,W] -> [N, d]: conv, flatten row-major over the grid, RMSNorm."""
        e = self.vision_encoder.patch_embedding(img[None].to(self.dtype))[0]  # [d, gh, gw]
        e = e.flatten(1).transpose(0, 1)
        return self.vision_encoder.norm(e)

    def time_embedding(self, t: torch.Tensor) -> torch.Tensor:
        """[K] -> [K, d]: sinusoid(256) -> Linear -> SiLU -> Linear."""
        freq = timestep_sinusoid(t, self.cfg["time_freq_dim"]).to(self.dtype)
        return self.time_embed.mlp(freq)

    @property
    def dtype(self):
        return self.tuna.lm_head.weight.dtype

    def llm(self, embeds: torch.Tensor, allowed: torch.Tensor):
        """Qwen2 decoder over [L, d] input embeddings -> (post-norm hidden, logits)."""
        lc = self.cfg["llm"]
        L = embeds.shape[0]
        cos, sin = rope_1d_cos_sin(default_inv_freq(lc["head_dim"], lc["rope_theta"]),
                                   torch.arange(L))
        h = embeds
        for layer in self.tuna.model.layers:
            h = layer(h, cos, sin, allowed)
        hidden = self.tuna.model.norm(h)
        return hidden, self.tuna.lm_head(hidden)

    # ---- full forward -----------------------------------------------------

    def forward(self, input_ids, images: Sequence[torch.Tensor] = (), t=None,
                masks: Optional[Sequence[Optional[torch.Tensor]]] = None,
                run_head: bool = True) -> Dict[str, object]:
        """One sequence. input_ids [L] int; images: K tensors [C,H_k,W_k];
        t: [K]; masks: K bool tensors [N_k] (True = replace by mask_token).
        Returns hidden [L,d], logits [L,V], head_out [L, p*p*C] and x_pred
        (K images [C,H_k,W_k])."""
        cfg = self.cfg
        p = cfg["patch_size"]
        ids = torch.as_tensor(input_ids, dtype=torch.long)
        L = ids.shape[0]
        segments = find_segments(ids.tolist(), cfg["tokens"]["boi"], cfg["tokens"]["image_pad"])
        if len(segments) != len(images):
            raise ValueError(f"{len(segments)} image segments in the ids but {len(images)} images")
        grids = []
        for (offset, length), img in zip(segments, images):
            gh, gw = img.shape[1] // p, img.shape[2] // p
            if img.shape[1] % p or img.shape[2] % p or length != gh * gw + 1:
                raise ValueError(f"segment at {offset} has {length} slots, image {tuple(img.shape)}")
            grids.append((gh, gw))

        embeds = self.tuna.model.embed_tokens(ids)
        t_emb = None
        if images:
            t = torch.as_tensor(t, dtype=torch.float32)
            t_emb = self.time_embedding(t)  # [K, d]
            rows = []
            cursor = 0
            for k, ((offset, length), img) in enumerate(zip(segments, images)):
                e = self.patch_embed(img)
                if masks is not None and masks[k] is not None:
                    m = torch.as_tensor(masks[k], dtype=torch.bool)[:, None]
                    e = torch.where(m, self.mask_token[0].to(e.dtype), e)
                rows.append(embeds[cursor:offset])
                rows.append(t_emb[k:k + 1])
                rows.append(e)
                cursor = offset + length
            rows.append(embeds[cursor:])
            embeds = torch.cat(rows, dim=0)

        allowed = omni_mask(L, segments)
        hidden, logits = self.llm(embeds, allowed)
        out = {"hidden": hidden, "logits": logits, "segments": segments}
        if not run_head or not images:
            out["x_pred"] = []
            return out

        # ---- flow head on the LLM's final post-norm hidden states -----------
        d = cfg["hidden_size"]
        pos = HeadPositions(cfg, L, segments, grids, self.dtype)
        h = hidden
        for block in self.diffusion_head_a:
            mod_k = block.adaLN_modulation(t_emb)  # [K, 6d]
            mod = self._spread(mod_k, segments, L, 6)
            h = block(h, mod, pos)
        fin = self.diffusion_head_b
        mod = self._spread(fin.adaLN_modulation(t_emb), segments, L, 2)
        shift, scale = mod.chunk(2, dim=-1)
        head_out = fin.linear(modulate(fin.norm_final(h), shift, scale))
        out["head_out"] = head_out
        x_pred = []
        for (offset, length), img in zip(segments, images):
            slots = head_out[offset + 1:offset + length]
            x_pred.append(slots_to_image(slots, img.shape[0], img.shape[1], img.shape[2]))
        out["x_pred"] = x_pred
        return out

    @staticmethod
    def _spread(mod_k: torch.Tensor, segments, L: int, parts: int) -> torch.Tensor:
        """Per-image modulation [K, parts*d] -> per-position [L, parts*d]:
        inside segment k (t slot and patches) image k's values, elsewhere
        shift = scale = 0 and gate = 1 (chunks are shift,scale,gate,...)."""
        d = mod_k.shape[1] // parts
        rows = []
        neutral = torch.zeros(parts * d, dtype=mod_k.dtype)
        if parts == 6:
            neutral[2 * d:3 * d] = 1.0
            neutral[5 * d:6 * d] = 1.0
        cursor = 0
        for k, (offset, length) in enumerate(segments):
            rows.append(neutral.expand(offset - cursor, -1))
            rows.append(mod_k[k:k + 1].expand(length, -1))
            cursor = offset + length
        rows.append(neutral.expand(L - cursor, -1))
        return torch.cat(rows, dim=0)


# --------------------------------------------------------------------------
# Losses (SPEC sections 5 and 9)
# --------------------------------------------------------------------------


def ce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """mean over i with labels[i+1] != -100 of CE(logits[i], labels[i+1]); 0 if none."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    shifted = labels[1:]
    if not bool((shifted != -100).any()):
        return torch.zeros((), dtype=torch.float32)
    return F.cross_entropy(logits[:-1].float(), shifted, ignore_index=-100)


def flow_loss(x_pred: Sequence[torch.Tensor], targets: Sequence[torch.Tensor], t,
              flow_images, t_eps: float) -> torch.Tensor:
    """Mean over every element of the flow images of (x_pred-target)^2 / max(1-t_k, t_eps)^2
    (one pooled mean over all their elements); 0 when no image is in the loss."""
    total = None
    count = 0
    for k, (xp, tg) in enumerate(zip(x_pred, targets)):
        if not int(flow_images[k]):
            continue
        denom = max(1.0 - float(t[k]), t_eps)
        term = ((xp.float() - tg.float()) ** 2 / (denom * denom)).sum()
        total = term if total is None else total + term
        count += xp.numel()
    if total is None:
        return torch.zeros(())
    return total / count


# --------------------------------------------------------------------------
# Inference: Euler sampler with CFG (SPEC section 6), greedy text
# --------------------------------------------------------------------------


@torch.no_grad()
def predict_last_image(model: Tuna2, ids, images, t_values):
    """x_pred of the last image of the sequence (the one being generated)."""
    out = model(ids, images, torch.tensor(t_values, dtype=torch.float32))
    return out["x_pred"][-1]


@torch.no_grad()
def euler_sample(model: Tuna2, cond_ids, uncond_ids, noise: torch.Tensor, steps: int,
                 cfg_scale: float, source: Optional[torch.Tensor] = None,
                 record: Optional[list] = None) -> torch.Tensor:
    """noise: [C,H,W] initial z (= noise_scale * N(0,I)). Time grid linspace(0,1,steps+1)
    in fp32. Each step: x = x_u + s*(x_c - x_u) (x_c alone when uncond_ids is None),
    v = (x - z) / max(1 - t, t_eps), z += (t_next - t) * v. For editing, `source` is
    the clean source image, fed at t=1 in both branches before the target."""
    t_eps = model.cfg["t_eps"]
    grid = torch.linspace(0, 1, steps + 1, dtype=torch.float32)
    z = noise.clone().float()
    if record is not None:
        record.append(z.clone())
    for i in range(steps):
        t_cur = grid[i]
        t_next = grid[i + 1]
        t_val = float(t_cur)
        imgs = [z] if source is None else [source, z]
        ts = [t_val] if source is None else [1.0, t_val]
        x = predict_last_image(model, cond_ids, imgs, ts)
        if uncond_ids is not None:
            x_u = predict_last_image(model, uncond_ids, imgs, ts)
            x = x_u + cfg_scale * (x - x_u)
        v = (x - z) / max(1.0 - t_val, t_eps)
        z = z + (t_next - t_cur) * v
        if record is not None:
            record.append(z.clone())
    return z


@torch.no_grad()
def greedy_generate(model: Tuna2, ids, images, t_values, max_new: int,
                    eos: Optional[int] = None) -> List[int]:
    """Greedy decoding by full recompute (equal to a KV-cached decode: the new
    tokens lie after every segment, so the omni mask is causal for them)."""
    ids = list(int(x) for x in ids)
    new = []
    t = torch.tensor(t_values, dtype=torch.float32) if images else None
    for _ in range(max_new):
        out = model(ids, images, t, run_head=False)
        nxt = int(torch.argmax(out["logits"][-1]))
        new.append(nxt)
        ids.append(nxt)
        if eos is not None and nxt == eos:
            break
    return new


# --------------------------------------------------------------------------
# Random initialisation with non-trivial values everywhere
# --------------------------------------------------------------------------


def init_rule(name: str, shape, gain: float = 1.0):
    """(mean, std) of the random init of one parameter: every tensor random
    (adaLN and the final linear too, unlike the reference's zero init, so tests
    are sensitive to every weight). Linear/conv weights N(0, gain/sqrt(fan_in));
    adaLN weights half that; lm_head 3x (peaky logits, varied greedy text);
    biases N(0, 0.1); norm weights 1 + N(0, 0.1); embeddings, mask token N(0, 1)."""
    if name.endswith("norm.weight") or "layernorm" in name or name.endswith("norm_final.weight"):
        return 1.0, 0.1
    if name.endswith(".bias"):
        return 0.0, 0.1
    if name in ("tuna.model.embed_tokens.weight", "mask_token"):
        return 0.0, 1.0
    if name == "tuna.lm_head.weight":
        return 0.0, 3.0 * gain / math.sqrt(shape[1])
    if "adaLN_modulation" in name:
        return 0.0, 0.5 * gain / math.sqrt(shape[1])
    fan_in = 1
    for n in shape[1:]:
        fan_in *= int(n)
    return 0.0, gain / math.sqrt(fan_in)


@torch.no_grad()
def init_random(model: Tuna2, seed: int, gain: float = 1.0) -> None:
    """Fill every parameter by init_rule, from one generator in parameter order."""
    g = torch.Generator().manual_seed(seed)
    for name, prm in model.named_parameters():
        mean, std = init_rule(name, prm.shape, gain)
        prm.copy_(mean + torch.randn(prm.shape, generator=g) * std)


def param_shapes(cfg: dict) -> Dict[str, tuple]:
    """Official name -> shape for a config, without allocating (meta device).
    torch < 2.0 has no device context: the model is built on the CPU there
    (memory and time, same shapes)."""
    if not hasattr(torch.device("meta"), "__enter__"):
        m = Tuna2(cfg)
        return {k: tuple(v.shape) for k, v in m.state_dict().items()}
    with torch.device("meta"):
        m = Tuna2(cfg)
    return {k: tuple(v.shape) for k, v in m.state_dict().items()}


def state_dict_f32(model: Tuna2) -> Dict[str, torch.Tensor]:
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def load_state_dict_file(model: Tuna2, path: str) -> None:
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file
        sd = load_file(path)
    else:
        sd = torch.load(path, map_location="cpu")
    model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)


# --------------------------------------------------------------------------
# Self-checks
# --------------------------------------------------------------------------


def _reference_label_reshape(img: torch.Tensor, p: int) -> torch.Tensor:
    """The reference's label path, step by step: (c,1,h,w) -> 'c (t h w) -> (t h w) c'
    -> reshape (1, h_, w_, p, p, c) -> reshape (h_*w_, p*p*c)."""
    c, H, W = img.shape
    x = img[:, None].reshape(c, H * W).transpose(0, 1)  # b c t h w -> b (t h w) c
    x = x.reshape(1, H // p, W // p, p, p, c)
    return x.reshape((H // p) * (W // p), p * p * c)


def _reference_unpatchify(slots: torch.Tensor, c: int, H: int, W: int, p: int) -> torch.Tensor:
    """The reference's unpatchify with T=1, then permute(0,3,1,2) and reshape to (c,1,H,W)."""
    h_, w_ = H // p, W // p
    x = slots[None].reshape(1, 1, h_, w_, p, p, c)
    x = x.reshape(1, 1, h_ * p * w_ * p, c)
    x = x.permute(0, 3, 1, 2)
    return x.reshape(1, c, 1, h_ * p, w_ * p)[0, :, 0]


def self_test() -> None:
    # omni mask on a hand example: L=7, one segment [2, 5)
    m = omni_mask(7, [(2, 3)]).int()
    expect = torch.tensor([
        [1, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0],
        [1, 1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 1, 0],
        [1, 1, 1, 1, 1, 1, 1]])
    assert torch.equal(m, expect), m

    # 3D RoPE sign: pair (1, 0) at angle a goes to (cos a, -sin a)
    x = torch.zeros(1, 1, 16)
    x[..., 4] = 1.0  # pair 2 = first pair of the row section (hd 16: frame pairs 0,1; row 2,3,4)
    c, s = rope_3d_cos_sin(2, 2, 16, 10000.0)
    # patch 2 is at row 1, col 0; row-section pair 0 has frequency 1
    y = apply_rope_3d(x, c[2:3], s[2:3])
    assert abs(float(y[0, 0, 4]) - math.cos(1.0)) < 1e-6
    assert abs(float(y[0, 0, 5]) + math.sin(1.0)) < 1e-6
    # frame section never rotates (frame 0); column section of patch 2 is 0
    assert torch.equal(c[:, :2], torch.ones(4, 2))
    # section order: pairs [0, hd/8) frame, [hd/8, hd/8+3hd/16) row, rest column
    assert float(s[1, 2]) == 0.0 and abs(float(s[1, 5]) - math.sin(1.0)) < 1e-6

    # 1D rotate-half sign: x = e_0 at angle a -> (cos a) e_0 + (sin a) e_{hd/2}
    inv = default_inv_freq(8, 10000.0)
    c1, s1 = rope_1d_cos_sin(inv, torch.tensor([3]))
    x = torch.zeros(1, 1, 8)
    x[..., 0] = 1.0
    y = apply_rope_1d(x, c1, s1)
    assert abs(float(y[0, 0, 0]) - math.cos(3.0)) < 1e-6
    assert abs(float(y[0, 0, 4]) - math.sin(3.0)) < 1e-6

    # llama3 scaling: the three regimes at head_dim 64, theta 5e5
    f = default_inv_freq(64, 500000.0)
    fl = llama3_inv_freq(64, 500000.0, OFFICIAL_7B_CONFIG["head"]["text_rope_scaling"])
    wl = 2 * math.pi / f
    assert torch.equal(fl[wl < 2048], f[wl < 2048])
    assert torch.allclose(fl[wl > 8192], f[wl > 8192] / 32)
    mid = (wl >= 2048) & (wl <= 8192)
    assert bool(mid.any()) and bool(((fl[mid] < f[mid]) & (fl[mid] > f[mid] / 32)).all())

    # unpatchify / label reshape round trip, square and non-square
    g = torch.Generator().manual_seed(0)
    for (H, W, p) in ((16, 16, 8), (16, 24, 8), (24, 16, 8), (32, 48, 16)):
        img = torch.randn(3, H, W, generator=g)
        slots = image_to_slots(img, p)
        assert torch.equal(slots, _reference_label_reshape(img, p))
        assert torch.equal(slots_to_image(slots, 3, H, W), img)
        assert torch.equal(_reference_unpatchify(slots, 3, H, W, p), img)
        # slot 0 is the first p*p raster pixels (row 0, columns 0..p*p-1 wrap), RGB interleaved
        assert torch.equal(slots[0, :3], img[:, 0, 0]) and torch.equal(slots[0, 3:6], img[:, 0, 1])

    # time embedding: t=0 gives cos=1, sin=0
    e = timestep_sinusoid(torch.tensor([0.0, 1.0]), 256)
    assert torch.equal(e[0, :128], torch.ones(128)) and torch.equal(e[0, 128:], torch.zeros(128))
    assert abs(float(e[1, 128]) - math.sin(1.0)) < 1e-7

    # find_segments
    assert find_segments([5, 9, 7, 7, 7, 8, 5, 9, 7, 7, 8], 9, 7) == [(2, 3), (8, 2)]
    print("tuna2_ref self-test: all checks passed")


if __name__ == "__main__":
    self_test()
