#!/usr/bin/env python3
"""Regenerates tests/fixtures/io/ (checkpoint-reading fixtures for the C tests).

    python3 tools/make_io_fixtures.py

Writes, with PyTorch and the `safetensors` package:
  state.pt              torch.save of a flat state dict: every dtype, a 0-d tensor,
                        an empty tensor, contiguous views sharing one storage
  state_deflated.pt     the same archive rewritten with ZIP_DEFLATED members
  wrapped.pt            {"model": {"tuna_model.*": ...}, "step": 7, "optimizer": AdamW state,
                        "lr_scheduler": ...} as the reference's trainer writes it
  noncontig.pt          a transposed (non-contiguous) tensor: must be refused
  evil_*.pt             hand-written pickles naming os.system / builtins.eval, an unknown opcode
  state.safetensors     the flat state dict (contiguous copies) with metadata
  sharded/              model.safetensors.index.json + two shards
  expected.json         name -> {dtype, shape, hex of the raw little-endian bytes}
  tiny/                 a tiny Tuna-2 model (config.json + model.safetensors) for config tests
"""
import io
import json
import os
import struct
import zipfile

import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "io")
DTYPE_NAMES = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16", torch.int8: "I8",
               torch.uint8: "U8", torch.int32: "I32", torch.int64: "I64", torch.bool: "BOOL",
               torch.float64: "F64", torch.int16: "I16"}


def flat_state_dict():
    g = torch.Generator().manual_seed(1234)
    big = torch.arange(20, dtype=torch.float32) * 0.5 - 3.0
    return {
        "f32": torch.randn(2, 3, generator=g),
        "bf16": torch.randn(4, generator=g).to(torch.bfloat16),
        "f16": torch.randn(2, 2, generator=g).to(torch.float16),
        "i8": torch.tensor([-128, 0, 127], dtype=torch.int8),
        "u8": torch.tensor([0, 1, 255], dtype=torch.uint8),
        "i16": torch.tensor([-32768, 7], dtype=torch.int16),
        "i32": torch.tensor([-2147483648, 2147483647], dtype=torch.int32),
        "i64": torch.tensor([-(2**63), 2**62 + 3], dtype=torch.int64),
        "bool": torch.tensor([True, False, True]),
        "f64": torch.tensor([3.141592653589793, -1e300], dtype=torch.float64),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
        "layer.0.weight": torch.randn(3, 4, 2, generator=g),
        # views into one storage of 20 floats, saved once with the whole storage
        "view_middle": big[5:11].view(2, 3),
        "view_head": big[0:5],
        "view_tail": big[10:20],
    }


def expected(sd):
    out = {}
    for name, t in sd.items():
        c = t.contiguous()
        out[name] = {"dtype": DTYPE_NAMES[c.dtype], "shape": list(c.shape),
                     "hex": c.reshape(-1).view(torch.uint8).numpy().tobytes().hex() if c.numel() else ""}
    return out


def deflate_copy(src, dst):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename), compress_type=zipfile.ZIP_DEFLATED)


def pickle_archive(path, pkl):
    """A torch-style archive around a hand-written pickle."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\n")


class Inner(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3, 2)
        self.norm = torch.nn.RMSNorm(2)


class Wrapper(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.tuna_model = Inner()


def tiny_model(dirname):
    """A tiny Tuna-2 (same tensor names as the 7B, small sizes) + config.json."""
    d, V, I, p, C, tf = 16, 32, 24, 2, 3, 8
    llm = dict(num_layers=2, num_heads=2, num_kv_heads=1, head_dim=8, intermediate_size=I,
               rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=False)
    head = dict(num_layers=2, num_heads=1, num_kv_heads=1, head_dim=16, intermediate_size=I,
                rms_norm_eps=1e-5, qk_norm_eps=1e-6, final_norm_eps=1e-6, text_rope_theta=500000.0,
                text_rope_scaling=dict(factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                       original_max_position_embeddings=8192),
                image_rope_theta=10000.0)
    cfg = dict(architecture="tuna2", vocab_size=V, hidden_size=d, llm=llm, head=head, patch_size=p,
               image_channels=C, time_freq_dim=tf, patch_norm_eps=None, noise_scale=2.0, t_eps=0.05,
               tokens=dict(bos=1, eos=2, boi=3, eoi=4, image_pad=5, pad=6))
    g = torch.Generator().manual_seed(7)
    shapes = {"tuna.model.embed_tokens.weight": [V, d], "tuna.model.norm.weight": [d], "tuna.lm_head.weight": [V, d],
              "vision_encoder.patch_embedding.weight": [d, C, p, p], "vision_encoder.patch_embedding.bias": [d],
              "vision_encoder.norm.weight": [d], "time_embed.mlp.0.weight": [d, tf], "time_embed.mlp.0.bias": [d],
              "time_embed.mlp.2.weight": [d, d], "time_embed.mlp.2.bias": [d], "mask_token": [1, 1, d],
              "diffusion_head_b.norm_final.weight": [d], "diffusion_head_b.linear.weight": [p * p * C, d],
              "diffusion_head_b.linear.bias": [p * p * C], "diffusion_head_b.adaLN_modulation.1.weight": [2 * d, d],
              "diffusion_head_b.adaLN_modulation.1.bias": [2 * d]}
    q, kv = llm["num_heads"] * llm["head_dim"], llm["num_kv_heads"] * llm["head_dim"]
    for i in range(llm["num_layers"]):
        pre = f"tuna.model.layers.{i}."
        shapes.update({pre + "self_attn.q_proj.weight": [q, d], pre + "self_attn.q_proj.bias": [q],
                       pre + "self_attn.k_proj.weight": [kv, d], pre + "self_attn.k_proj.bias": [kv],
                       pre + "self_attn.v_proj.weight": [kv, d], pre + "self_attn.v_proj.bias": [kv],
                       pre + "self_attn.o_proj.weight": [d, q], pre + "mlp.gate_proj.weight": [I, d],
                       pre + "mlp.up_proj.weight": [I, d], pre + "mlp.down_proj.weight": [d, I],
                       pre + "input_layernorm.weight": [d], pre + "post_attention_layernorm.weight": [d]})
    q, kv, hd = head["num_heads"] * head["head_dim"], head["num_kv_heads"] * head["head_dim"], head["head_dim"]
    for i in range(head["num_layers"]):
        pre = f"diffusion_head_a.{i}."
        shapes.update({pre + "self_attn.q_proj.weight": [q, d], pre + "self_attn.k_proj.weight": [kv, d],
                       pre + "self_attn.v_proj.weight": [kv, d], pre + "self_attn.o_proj.weight": [d, q],
                       pre + "self_attn.q_norm.weight": [hd], pre + "self_attn.k_norm.weight": [hd],
                       pre + "mlp.gate_proj.weight": [I, d], pre + "mlp.up_proj.weight": [I, d],
                       pre + "mlp.down_proj.weight": [d, I], pre + "input_layernorm.weight": [d],
                       pre + "post_attention_layernorm.weight": [d],
                       pre + "adaLN_modulation.1.weight": [6 * d, d], pre + "adaLN_modulation.1.bias": [6 * d]})
    tensors = {k: (torch.randn(*s, generator=g) * 0.02).to(torch.bfloat16) for k, s in sorted(shapes.items())}
    os.makedirs(dirname, exist_ok=True)
    save_file(tensors, os.path.join(dirname, "model.safetensors"))
    with open(os.path.join(dirname, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)


def main():
    os.makedirs(OUT, exist_ok=True)
    sd = flat_state_dict()
    torch.save(sd, os.path.join(OUT, "state.pt"))
    deflate_copy(os.path.join(OUT, "state.pt"), os.path.join(OUT, "state_deflated.pt"))

    contiguous = {k: v.contiguous().clone() for k, v in sd.items()}
    save_file(contiguous, os.path.join(OUT, "state.safetensors"), metadata={"format": "pt", "note": "fixture"})

    shard_dir = os.path.join(OUT, "sharded")
    os.makedirs(shard_dir, exist_ok=True)
    names = sorted(contiguous)
    shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    weight_map = {}
    for fname, keys in shards.items():
        save_file({k: contiguous[k] for k in keys}, os.path.join(shard_dir, fname))
        weight_map.update({k: fname for k in keys})
    with open(os.path.join(shard_dir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": sum(v.numel() * v.element_size() for v in contiguous.values())},
                   "weight_map": weight_map}, f, indent=2)

    # the reference trainer's checkpoint: wrapper keys inside {"model", "step", "optimizer", ...}
    torch.manual_seed(0)
    w = Wrapper()
    opt = torch.optim.AdamW(w.parameters(), lr=1e-3, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    loss = w.tuna_model.norm(w.tuna_model.proj(torch.ones(1, 3))).sum()
    loss.backward()
    opt.step()
    sched.step()
    model_sd = w.state_dict()
    torch.save({"model": model_sd, "step": 7, "optimizer": opt.state_dict(), "lr_scheduler": sched.state_dict()},
               os.path.join(OUT, "wrapped.pt"))
    exp = expected(sd)
    exp_wrapped = expected({k[len("tuna_model."):]: v for k, v in model_sd.items()})

    torch.save({"t": torch.arange(6, dtype=torch.float32).view(2, 3).t()}, os.path.join(OUT, "noncontig.pt"))

    # hostile pickles (never unpickled by Python here: just bytes)
    pickle_archive(os.path.join(OUT, "evil_os_system.pt"),
                   b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03.")
    pickle_archive(os.path.join(OUT, "evil_eval.pt"),
                   b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x8c\x04eval\x93\x8c\x011\x85R.")
    pickle_archive(os.path.join(OUT, "evil_opcode.pt"), b"\x80\x02}q\x00(X\x01\x00\x00\x00a\x81u.")

    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump({"flat": exp, "wrapped": exp_wrapped}, f, indent=1, sort_keys=True)

    tiny_model(os.path.join(OUT, "tiny"))


if __name__ == "__main__":
    main()
