#!/usr/bin/env python3
"""GGUF interoperability with ggml's own Python package (PyPI `gguf`).

    out/venv-gguf/bin/python tools/gguf_interop.py --tuna build/tuna [--model models/tuna2-small]

Needs the venv of tools/setup_gguf_venv.sh (gguf + numpy). Runs `tuna quantize`
on the model and checks, failing with a non-zero exit on any difference:

 1. ggml's GGUFReader reads our files: general.architecture is "tuna2", the
    configuration (tuna2.config) and tokenizer (tokenizer.huggingface.json)
    are there and parse as JSON, every tensor has the official name, the
    shape (ggml order) and the type we wrote.
 2. Bytes: our Q8_0, Q4_0 and Q5_0 tensors equal gguf.quants.quantize of the
    same f32 weights (ggml's reference quantisers, ported to numpy by ggml).
 3. Values: gguf.quants.dequantize of our Q8_0, Q4_0, Q5_0, Q4_K and Q6_K
    tensors equals our own dequantisation (`tuna quantize --type f32` of the
    quantised file), bit for bit.
 4. ggml's GGUFWriter writes a model (its own Q8_0 quantisation, bf16 and f32
    tensors, our metadata) that `tuna inspect` and `tuna understand` load,
    answering exactly as our own Q8_0 file does (the bytes are the same).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL", what, file=sys.stderr)


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        print(" ".join(cmd), "\n", p.stdout[-2000:], p.stderr[-2000:], file=sys.stderr)
        raise SystemExit(f"command failed: {' '.join(cmd)}")
    return p.stdout


def field_string(reader, key):
    f = reader.fields.get(key)
    if f is None:
        return None
    return bytes(f.parts[f.data[0]]).decode("utf-8")


def tensors(reader):
    return {t.name: t for t in reader.tensors}


def to_f32(t):
    """A tensor of a GGUFReader as float32 in our order (outermost first)."""
    shape = tuple(int(d) for d in reversed(t.shape))
    if t.tensor_type == T.F32:
        return np.asarray(t.data, dtype=np.float32).reshape(shape)
    if t.tensor_type == T.BF16:
        raw = np.asarray(t.data).view(np.uint16).astype(np.uint32) << 16
        return raw.view(np.float32).reshape(shape)
    return gguf.quants.dequantize(np.asarray(t.data), t.tensor_type).reshape(shape).astype(np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tuna", default="build/tuna")
    ap.add_argument("--model", default="models/tuna2-small")
    args = ap.parse_args()
    tuna = os.path.abspath(args.tuna)
    work = tempfile.mkdtemp(prefix="tuna-gguf-interop-")
    prompt = "What color is the circle?"

    # our files: f32 reference, q8_0, q4_k (with its fallbacks), all-q4_0, all-q5_0, q6_k
    files = {}
    for name, extra in [("f32", ["--type", "f32"]), ("q8_0", ["--type", "q8_0"]), ("q4_k", ["--type", "q4_k"]),
                        ("q6_k", ["--type", "q6_k"]), ("q4_0", ["--type", "q4_0", "--rule", "tuna.lm_head.weight=q4_0"]),
                        ("q5_0", ["--type", "q5_0", "--rule", "tuna.lm_head.weight=q5_0"])]:
        out = os.path.join(work, name)
        run([tuna, "quantize", "-m", args.model, "-o", out, "--quiet"] + extra)
        files[name] = os.path.join(out, "model.gguf")
    ref = gguf.GGUFReader(files["f32"])
    ref_t = tensors(ref)

    # 1. ggml reads our files
    for name, path in files.items():
        r = gguf.GGUFReader(path)
        check(field_string(r, "general.architecture") == "tuna2", f"{name}: architecture")
        cfg = json.loads(field_string(r, "tuna2.config"))
        check(cfg.get("architecture") == "tuna2" and cfg["hidden_size"] > 0, f"{name}: config")
        tok = json.loads(field_string(r, "tokenizer.huggingface.json"))
        check("model" in tok and "added_tokens" in tok, f"{name}: tokenizer")
        check(r.fields["general.alignment"].parts[-1][0] == 32, f"{name}: alignment")
        ts = tensors(r)
        check(set(ts) == set(ref_t), f"{name}: tensor names")
        check("tuna.model.embed_tokens.weight" in ts, f"{name}: official names")
        for tn, t in ts.items():
            check(list(t.shape) == list(ref_t[tn].shape), f"{name}: {tn} shape")

    # 2 + 3. bytes against ggml's quantisers, values against ggml's dequantisers
    counts = {}
    for name in ["q8_0", "q4_0", "q5_0", "q4_k", "q6_k"]:
        r = gguf.GGUFReader(files[name])
        ours_f32 = os.path.join(work, name + "-as-f32")
        run([tuna, "quantize", "-m", files[name], "-o", ours_f32, "--type", "f32", "--quiet"])
        deq = tensors(gguf.GGUFReader(os.path.join(ours_f32, "model.gguf")))
        for tn, t in tensors(r).items():
            qt = t.tensor_type
            if qt not in (T.Q8_0, T.Q4_0, T.Q5_0, T.Q4_K, T.Q6_K):
                continue
            counts[qt.name] = counts.get(qt.name, 0) + 1
            mine = np.asarray(t.data).reshape(-1)
            if qt in (T.Q8_0, T.Q4_0, T.Q5_0):
                theirs = gguf.quants.quantize(to_f32(ref_t[tn]), qt).reshape(-1)
                diff = int(np.count_nonzero(mine != theirs))
                check(diff == 0, f"{name}: {tn} {qt.name}: {diff} bytes differ from gguf.quants.quantize")
            d_theirs = to_f32(t)
            d_ours = to_f32(deq[tn])
            check(np.array_equal(d_theirs, d_ours), f"{name}: {tn} {qt.name}: dequantised values differ "
                  f"(max {float(np.max(np.abs(d_theirs - d_ours)))})")
    print("checked tensors per type:", counts)
    for q in ["Q8_0", "Q4_0", "Q5_0", "Q4_K", "Q6_K"]:
        check(counts.get(q, 0) > 0, f"no {q} tensor was checked")

    # 4. ggml writes, we load: its own Q8_0 quantisation where ours would put Q8_0
    q8 = gguf.GGUFReader(files["q8_0"])
    out = os.path.join(work, "from-ggml.gguf")
    w = gguf.GGUFWriter(out, arch="tuna2")
    w.add_string("tuna2.config", field_string(q8, "tuna2.config"))
    w.add_string("tokenizer.huggingface.json", field_string(q8, "tokenizer.huggingface.json"))
    for tn, t in tensors(q8).items():
        x = to_f32(ref_t[tn])
        if t.tensor_type == T.Q8_0:
            w.add_tensor(tn, gguf.quants.quantize(x, T.Q8_0), raw_dtype=T.Q8_0)
        elif t.tensor_type == T.BF16:
            w.add_tensor(tn, np.asarray(t.data).view(np.uint16).reshape(x.shape), raw_dtype=T.BF16)
        else:
            w.add_tensor(tn, x)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    inspect = run([tuna, "inspect", out, "--quiet"])
    check("every required tensor present" in inspect, "tuna inspect of ggml's file")
    answer_theirs = run([tuna, "understand", "-m", out, "--prompt", prompt, "--max-tokens", "16"])
    answer_ours = run([tuna, "understand", "-m", files["q8_0"], "--prompt", prompt, "--max-tokens", "16"])
    check(answer_theirs == answer_ours and answer_theirs.strip(), f"answers differ: {answer_theirs!r} {answer_ours!r}")
    print(f"ggml-written model loads and answers {answer_theirs.strip()!r} (same as ours)")

    if failures:
        print(f"{len(failures)} interop checks failed (files kept in {work})", file=sys.stderr)
        return 1
    shutil.rmtree(work, ignore_errors=True)
    print("gguf interop: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
