#!/usr/bin/env python3
"""Hugging Face `tokenizers` encode speed, single thread, for bench/bench_tokenizer.c.

Usage: python3 tools/bench_hf_tokenizer.py TOKENIZER(.json|.json.gz) TEXTFILE [REPEATS]
Prints two lines: "hf_big_mbps X" (one encode of the whole file) and
"hf_lines_mbps Y" (encode_batch of its lines). Exit status 3 when the package is missing.
"""
import gzip
import os
import sys
import time

os.environ["RAYON_NUM_THREADS"] = "1"      # before the import: single-threaded, like ours
os.environ["TOKENIZERS_PARALLELISM"] = "false"
try:
    from tokenizers import Tokenizer
except ImportError:
    print("tokenizers package not installed", file=sys.stderr)
    sys.exit(3)


def main():
    path, text_path = sys.argv[1], sys.argv[2]
    repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    data = gzip.open(path).read() if path.endswith(".gz") else open(path, "rb").read()
    tok = Tokenizer.from_str(data.decode())
    raw = open(text_path, "rb").read()
    text = raw.decode("utf-8", errors="replace")
    lines = text.split("\n")
    mb = len(raw) / 1e6
    best_big = best_lines = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        tok.encode(text, add_special_tokens=False)
        best_big = min(best_big, time.perf_counter() - t)
        t = time.perf_counter()
        tok.encode_batch(lines, add_special_tokens=False)
        best_lines = min(best_lines, time.perf_counter() - t)
    print(f"hf_big_mbps {mb / best_big:.2f}")
    print(f"hf_lines_mbps {mb / best_lines:.2f}")


if __name__ == "__main__":
    main()
