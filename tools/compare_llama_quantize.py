#!/usr/bin/env python3
"""Our quantised tensors against llama.cpp's llama-quantize on the same weights, byte for byte.

    out/venv-gguf/bin/python tools/compare_llama_quantize.py OURS.gguf LLAMA.gguf

OURS.gguf: `tuna quantize` of a Tuna-2 checkpoint; LLAMA.gguf: `llama-quantize --pure` of
tools/llama_bench_model.py's qwen2 GGUF of the same checkpoint (tools/bench_llama_cpp.sh builds
llama.cpp). For every LLM matrix present in both, prints per (our type, their type) how many are
byte-identical; exits 1 when two tensors of the same type differ.
"""
import sys

import numpy as np
import gguf

NAMES = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
         "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
         "mlp.down_proj": "ffn_down"}


def theirs(name):
    if name == "tuna.model.embed_tokens.weight":
        return "token_embd.weight"
    if name == "tuna.lm_head.weight":
        return "output.weight"
    p = name.split(".")
    if p[:3] == ["tuna", "model", "layers"] and p[-1] == "weight" and ".".join(p[4:-1]) in NAMES:
        return f"blk.{p[3]}.{NAMES['.'.join(p[4:-1])]}.weight"
    return None


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    a = {t.name: t for t in gguf.GGUFReader(sys.argv[1]).tensors}
    b = {t.name: t for t in gguf.GGUFReader(sys.argv[2]).tensors}
    stats, bad = {}, 0
    for name, t in sorted(a.items()):
        m = theirs(name)
        if not m or m not in b:
            continue
        u = b[m]
        key = f"{t.tensor_type.name} vs {u.tensor_type.name}"
        same = t.tensor_type == u.tensor_type and np.array_equal(np.asarray(t.data).reshape(-1), np.asarray(u.data).reshape(-1))
        if t.tensor_type == u.tensor_type and not same:
            bad += 1
            print("differs:", name, t.tensor_type.name, file=sys.stderr)
        s = stats.setdefault(key, [0, 0])
        s[0] += 1
        s[1] += same
    for key, (n, same) in stats.items():
        print(f"{key}: {same}/{n} byte-identical")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
