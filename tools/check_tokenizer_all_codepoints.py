#!/usr/bin/env python3
"""Exhaustive check of `tuna tokenize` against Hugging Face `tokenizers`: every
Unicode scalar value c (1.1M of them) in the context "a c U+0301 c c  1c'S\\n c"
(letters, numbers, spaces, combining marks, contractions, NFC around c).
Takes about 2 minutes; not part of `make test`. Run from the repository root
after `make`; prints the first mismatches and "N checked, M bad".

Usage: python3 tools/check_tokenizer_all_codepoints.py [build/tuna]
"""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tokenizer_corpus as corpus  # noqa: E402


def main():
    tuna = sys.argv[1] if len(sys.argv) > 1 else "build/tuna"
    tok = corpus.load_tokenizer(os.path.join(corpus.ROOT, "models", "tokenizer", "tuna2-tokenizer.json.gz"))
    texts = []
    for cp in range(1, 0x110000):
        if 0xD800 <= cp < 0xE000:
            continue
        c = chr(cp)
        texts.append("a" + c + "\u0301" + c + c + " 1" + c + "'S\n" + c)
    inp = "".join(json.dumps({"text": t}) + "\n" for t in texts).encode()
    out = subprocess.run([tuna, "tokenize"], input=inp, capture_output=True, check=False).stdout.decode().splitlines()
    want = tok.encode_batch(texts, add_special_tokens=False)
    bad = 0
    for t, o, w in zip(texts, out, want):
        if json.loads(o).get("ids") != w.ids:
            bad += 1
            if bad <= 8:
                print(f"U+{ord(t[1]):04X}: HF {w.ids} tuna {o}")
    print(f"{len(texts)} checked, {bad} bad")
    sys.exit(1 if bad or len(out) != len(texts) else 0)


if __name__ == "__main__":
    main()
