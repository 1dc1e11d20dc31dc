#!/usr/bin/env python3
"""Pin the C tokenizer's Unicode behaviour to Hugging Face's.

HF `tokenizers` normalises with old Unicode tables (unicode-normalization-
alignments) and splits with Oniguruma's (newer) tables; our engine uses
utf8proc for NFC and PCRE2 for the split regex, each with its own Unicode
version. This script asks all four, code point by code point, and writes
src/text/unicode_hf_tables.h with the differences:

  tuna_hf_nfc_barriers   code points utf8proc would reorder or compose but HF
                         treats as plain starters (unknown to its tables);
  tuna_hf_{L,N}_add     code points HF's regex sees in \\p{L}, \\p{N} and PCRE2
                         (UTF+UCP) does not (the reverse must be empty: checked);
  tuna_hf_S              all of HF's \\s (PCRE2's adds U+180E).

Usage: python3 tools/make_unicode_hf_tables.py [--tokenizer PATH]
Needs the `tokenizers` package and the shared libraries libutf8proc.so.2 and
libpcre2-8.so.0 (ctypes).
"""
import argparse
import ctypes
import gzip
import os

from tokenizers import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALL = [cp for cp in range(0x110000) if not 0xD800 <= cp < 0xE000]


class Utf8proc:
    def __init__(self):
        self.lib = ctypes.CDLL("libutf8proc.so.2")
        self.lib.utf8proc_get_property.restype = ctypes.POINTER(ctypes.c_int16)
        self.lib.utf8proc_NFC.restype = ctypes.c_void_p
        self.lib.utf8proc_NFC.argtypes = [ctypes.c_char_p]
        self.libc = ctypes.CDLL("libc.so.6")
        self.libc.free.argtypes = [ctypes.c_void_p]

    def ccc(self, cp):
        return self.lib.utf8proc_get_property(cp)[1]

    def nfc(self, s):
        p = self.lib.utf8proc_NFC(s.encode())
        out = ctypes.string_at(p).decode()
        self.libc.free(p)
        return out


class Pcre2:
    UTF, UCP, ANCHORED = 0x00080000, 0x00020000, 0x80000000

    def __init__(self):
        self.lib = ctypes.CDLL("libpcre2-8.so.0")
        self.lib.pcre2_compile_8.restype = ctypes.c_void_p
        self.lib.pcre2_compile_8.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint32,
                                             ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_size_t),
                                             ctypes.c_void_p]
        self.lib.pcre2_match_data_create_8.restype = ctypes.c_void_p
        self.lib.pcre2_match_8.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_size_t,
                                           ctypes.c_uint32, ctypes.c_void_p, ctypes.c_void_p]
        self.md = self.lib.pcre2_match_data_create_8(4, None)

    def compile(self, pattern):
        err, off = ctypes.c_int(), ctypes.c_size_t()
        p = pattern.encode()
        return self.lib.pcre2_compile_8(p, len(p), self.UTF | self.UCP | self.ANCHORED, ctypes.byref(err),
                                        ctypes.byref(off), None)

    def matches(self, code, s):
        b = s.encode()
        return self.lib.pcre2_match_8(code, b, len(b), 0, 0, self.md, None) >= 0


def hf_classes(tok):
    """The code points HF's split regex treats as \\p{L}, \\p{N}, \\s (see the probes)."""
    pre = tok.pre_tokenizer
    L, N, S = set(), set(), set()
    for cp in ALL:
        c = chr(cp)
        if len(pre.pre_tokenize_str("a" + c)) == 1:
            L.add(cp)
        elif len(pre.pre_tokenize_str(c + c)) == 2:
            N.add(cp)
        elif cp in (0x0A, 0x0D, 0x20) or len(pre.pre_tokenize_str("!" + c + "!")) == 3:
            S.add(cp)  # (the probe cannot see these three, which every engine calls \s)
    return L, N, S


def hf_nfc_barriers(tok, u):
    """Code points where utf8proc's NFC and HF's disagree next to a combining mark."""
    norm = tok.normalizer
    out = []
    for cp in ALL:
        c = chr(cp)
        probes = [c + "\u0334", "\u0301" + c, "a" + c, "\u0915" + c, "\U00011935" + c]
        if u.ccc(cp) == 0 and all(norm.normalize_str(p) == u.nfc(p) for p in probes[2:]):
            continue
        if any(norm.normalize_str(p) != u.nfc(p) for p in probes):
            out.append(cp)
    return out


def ranges(cps):
    out = []
    for cp in sorted(cps):
        if out and out[-1][1] == cp - 1:
            out[-1][1] = cp
        else:
            out.append([cp, cp])
    return out


def c_ranges(name, cps):
    rs = ranges(cps)
    body = ",\n".join("    {0x%X, 0x%X}" % (a, b) for a, b in rs) or "    {0xFFFFFFFF, 0}"
    return f"static const uint32_t {name}[][2] = {{\n{body}\n}};\n#define {name.upper()}_COUNT {len(rs)}\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", default=os.path.join(ROOT, "models", "tokenizer", "tuna2-tokenizer.json.gz"))
    args = ap.parse_args()
    data = gzip.open(args.tokenizer).read() if args.tokenizer.endswith(".gz") else open(args.tokenizer, "rb").read()
    tok = Tokenizer.from_str(data.decode())
    u, p = Utf8proc(), Pcre2()
    L, N, S = hf_classes(tok)
    reL, reN, reS = p.compile(r"\p{L}"), p.compile(r"\p{N}"), p.compile(r"\s")
    pL = {cp for cp in ALL if p.matches(reL, chr(cp))}
    pN = {cp for cp in ALL if p.matches(reN, chr(cp))}
    pS = {cp for cp in ALL if p.matches(reS, chr(cp))}
    barriers = hf_nfc_barriers(tok, u)
    # The C side appends code points to PCRE2's \p{L} / \p{N} and spells \s out in full;
    # it has no way to take code points away from \p{L} / \p{N}.
    for name, hf, pc in (("L", L, pL), ("N", N, pN)):
        if pc - hf:
            raise SystemExit(f"PCRE2's \\p{{{name}}} has code points HF's lacks: {sorted(pc - hf)[:20]}")
    sets = {"tuna_hf_L_add": L - pL, "tuna_hf_N_add": N - pN, "tuna_hf_S": S}
    for k, v in sets.items():
        print(f"{k}: {len(v)} code points, {len(ranges(v))} ranges")
    print(f"PCRE2 \\s minus HF's: {sorted(pS - S)}; HF's minus PCRE2's: {sorted(S - pS)}")
    print(f"nfc barriers: {len(barriers)}")
    with open(os.path.join(ROOT, "src", "text", "unicode_hf_tables.h"), "w") as f:
        f.write("/* Generated by tools/make_unicode_hf_tables.py: where utf8proc's NFC and PCRE2's\n"
                " * Unicode classes differ from Hugging Face tokenizers'. Do not edit. */\n"
                "#ifndef TUNA_TEXT_UNICODE_HF_TABLES_H\n#define TUNA_TEXT_UNICODE_HF_TABLES_H\n\n"
                "#include <stdint.h>\n\n")
        f.write("static const uint32_t tuna_hf_nfc_barriers[] = {\n")
        for i in range(0, len(barriers), 8):
            f.write("    " + ", ".join("0x%X" % c for c in barriers[i:i + 8]) + ",\n")
        f.write("};\n\n")
        for k, v in sets.items():
            f.write(c_ranges(k, v) + "\n")
        f.write("#endif\n")


if __name__ == "__main__":
    main()
