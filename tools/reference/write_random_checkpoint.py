"""Writes a random Tuna-2 checkpoint of any size, for benchmarks and load tests.

    python3 tools/reference/write_random_checkpoint.py --out DIR --preset qwen0.5b [--dtype bf16]
    python3 tools/reference/write_random_checkpoint.py --out DIR --hidden 896 --llm-layers 24 ...

Writes DIR/config.json (SPEC section 8) and the weights under their official
names (SPEC section 7) as safetensors: one `model.safetensors`, or, when the total
exceeds --shard-mb, `model-0000i-of-0000n.safetensors` + `model.safetensors.index.json`
(the Hugging Face layout). Tensors are generated and written one at a time, in
row chunks, so memory stays small whatever the model size. Values follow
tuna2_ref.init_rule (non-trivial everywhere); each tensor has its own seed
derived from --seed and its name, so the output does not depend on sharding.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import zlib

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tuna2_ref as ref  # noqa: E402

PRESETS = {
    # Qwen2.5-0.5B-shaped LLM + a small 4-layer head (head_dim 64).
    "qwen0.5b": {"vocab_size": 151669, "hidden_size": 896,
                 "llm": {"num_layers": 24, "num_heads": 14, "num_kv_heads": 2, "head_dim": 64,
                         "intermediate_size": 4864, "rope_theta": 1000000.0},
                 "head": {"num_layers": 4, "num_heads": 14, "num_kv_heads": 2, "head_dim": 64,
                          "intermediate_size": 4864}},
    # A few-MB model with the official token ids, for quick end-to-end runs.
    "small": {"vocab_size": 151669, "hidden_size": 128,
              "llm": {"num_layers": 2, "num_heads": 4, "num_kv_heads": 2, "head_dim": 32,
                      "intermediate_size": 256},
              "head": {"num_layers": 2, "num_heads": 2, "num_kv_heads": 1, "head_dim": 64,
                       "intermediate_size": 256}},
    "official7b": {},
}

DTYPES = {"bf16": (torch.bfloat16, "BF16", 2), "f32": (torch.float32, "F32", 4)}


def build_config(args) -> dict:
    cfg = json.loads(json.dumps(PRESETS[args.preset])) if args.preset else {}
    cfg.setdefault("llm", {})
    cfg.setdefault("head", {})
    top = {"vocab_size": args.vocab, "hidden_size": args.hidden, "patch_size": args.patch}
    llm = {"num_layers": args.llm_layers, "num_heads": args.llm_heads,
           "num_kv_heads": args.llm_kv_heads, "head_dim": args.llm_head_dim,
           "intermediate_size": args.intermediate}
    head = {"num_layers": args.head_layers, "num_heads": args.head_heads,
            "num_kv_heads": args.head_kv_heads, "head_dim": args.head_head_dim,
            "intermediate_size": args.head_intermediate}
    for k, v in top.items():
        if v is not None:
            cfg[k] = v
    for k, v in llm.items():
        if v is not None:
            cfg["llm"][k] = v
    for k, v in head.items():
        if v is not None:
            cfg["head"][k] = v
    vocab = cfg.get("vocab_size", ref.OFFICIAL_7B_CONFIG["vocab_size"])
    if "tokens" not in cfg and vocab < ref.OFFICIAL_7B_CONFIG["vocab_size"]:
        # a small vocabulary: put bos, eos, boi, eoi, image_pad, pad in its last 6 ids
        cfg["tokens"] = {k: vocab - 6 + i for i, k in
                         enumerate(("bos", "eos", "boi", "eoi", "image_pad", "pad"))}
    return ref.normalize_config(cfg)


def tensor_chunks(name, shape, dtype, seed, gain, rows_per_chunk):
    """Yield the tensor's bytes in row chunks (row-major)."""
    mean, std = ref.init_rule(name, shape, gain)
    g = torch.Generator().manual_seed((seed * 1000003 + zlib.crc32(name.encode())) & 0x7FFFFFFF)
    rows = shape[0] if shape else 1
    row_shape = tuple(shape[1:])
    done = 0
    while done < rows:
        n = min(rows_per_chunk, rows - done)
        x = mean + torch.randn((n,) + row_shape, generator=g) * std
        x = x.to(dtype).contiguous()
        if dtype == torch.bfloat16:
            yield x.view(torch.int16).numpy().tobytes()
        else:
            yield x.numpy().tobytes()
        done += n


def write_shard(path, names, shapes, dtype, args):
    torch_dtype, st_dtype, size = DTYPES[dtype]
    header = {}
    offset = 0
    for name in names:
        nbytes = size
        for n in shapes[name]:
            nbytes *= n
        header[name] = {"dtype": st_dtype, "shape": list(shapes[name]),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    header["__metadata__"] = {"format": "pt"}
    hbytes = json.dumps(header, separators=(",", ":")).encode()
    hbytes += b" " * ((8 - len(hbytes) % 8) % 8)  # keep the data 8-byte aligned
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(len(hbytes).to_bytes(8, "little"))
        f.write(hbytes)
        for name in names:
            shape = shapes[name]
            row_elems = 1
            for n in shape[1:]:
                row_elems *= n
            rows_per_chunk = max(1, (16 << 20) // max(1, row_elems))
            for chunk in tensor_chunks(name, shape, torch_dtype, args.seed, args.gain,
                                       rows_per_chunk):
                f.write(chunk)
    os.replace(tmp, path)
    return offset


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--preset", choices=sorted(PRESETS), default=None)
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    ap.add_argument("--shard-mb", type=float, default=4000.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gain", type=float, default=1.0)
    for flag in ("vocab", "hidden", "patch", "llm-layers", "llm-heads", "llm-kv-heads",
                 "llm-head-dim", "intermediate", "head-layers", "head-heads", "head-kv-heads",
                 "head-head-dim", "head-intermediate"):
        ap.add_argument("--" + flag, type=int, default=None)
    args = ap.parse_args()

    cfg = build_config(args)
    shapes = ref.param_shapes(cfg)
    os.makedirs(args.out, exist_ok=True)
    ref.save_config(cfg, os.path.join(args.out, "config.json"))

    size = DTYPES[args.dtype][2]
    names = list(shapes)
    limit = int(args.shard_mb * (1 << 20))
    shards, cur, cur_bytes = [], [], 0
    for name in names:
        nbytes = size
        for n in shapes[name]:
            nbytes *= n
        if cur and cur_bytes + nbytes > limit:
            shards.append(cur)
            cur, cur_bytes = [], 0
        cur.append(name)
        cur_bytes += nbytes
    shards.append(cur)

    total = 0
    nparams = sum(int(torch.Size(s).numel()) for s in shapes.values())
    if len(shards) == 1:
        total = write_shard(os.path.join(args.out, "model.safetensors"), shards[0], shapes,
                            args.dtype, args)
    else:
        weight_map = {}
        for i, part in enumerate(shards):
            fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            total += write_shard(os.path.join(args.out, fname), part, shapes, args.dtype, args)
            for name in part:
                weight_map[name] = fname
        with open(os.path.join(args.out, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    print(f"wrote {len(shapes)} tensors, {nparams / 1e6:.1f}M parameters, {total / 1e6:.1f} MB "
          f"({args.dtype}) in {len(shards)} file(s) under {args.out}")


if __name__ == "__main__":
    main()
