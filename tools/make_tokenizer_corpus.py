#!/usr/bin/env python3
"""Build the tokenizer test corpus from Hugging Face's reference tokenizer.

Writes, under tests/fixtures/tokenizer/:
  corpus.jsonl  {"text": ..., "ids": [...]} (+ "nfc": HF's normalised text when it
                differs from the text), from: every text file of the repository
                (split into chunks), long random Unicode (all planes, combining
                marks, CJK, emoji ZWJ sequences, RTL, decomposed forms), whitespace
                runs, numbers, contractions, and every added token in context.
  bytes.jsonl   {"hex": ..., "ids": [...]}: raw byte strings (invalid UTF-8, NUL)
                with the ids HF gives for bytes.decode('utf-8', 'replace').
  golden.jsonl  a copy of ../shared/tokenizer/golden.jsonl (when present).

Usage: python3 tools/make_tokenizer_corpus.py [--tokenizer PATH] [--max-bytes N]
The default tokenizer is the bundled models/tokenizer/tuna2-tokenizer.json.gz.
Deterministic: the random parts are seeded.
"""
import argparse
import gzip
import json
import os
import random
import shutil
import subprocess
import unicodedata

from tokenizers import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizer")


def load_tokenizer(path):
    data = gzip.open(path, "rb").read() if path.endswith(".gz") else open(path, "rb").read()
    return Tokenizer.from_str(data.decode("utf-8"))


def repo_texts(budget):
    """Every git-tracked (and untracked, not ignored) text file, cut into chunks of lines."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split("\n")
    out, used = [], 0
    for f in sorted(files):
        if not f or f.startswith("tests/fixtures/tokenizer/") or f.endswith((".gz", ".png", ".jpg", ".safetensors")):
            continue
        try:
            text = open(os.path.join(ROOT, f), "rb").read().decode("utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        text = text.replace("\0", "")
        lines = text.splitlines(keepends=True)
        chunk = ""
        for line in lines:
            chunk += line
            if len(chunk) > 300:
                out.append(chunk)
                used += len(chunk.encode())
                chunk = ""
        if chunk:
            out.append(chunk)
            used += len(chunk.encode())
        if used > budget:
            break
    return out


RANGES = {
    "any": [(0x1, 0xD7FF), (0xE000, 0x10FFFF)],
    "bmp": [(0x20, 0xD7FF), (0xE000, 0xFFFD)],
    "marks": [(0x300, 0x36F), (0x483, 0x489), (0x591, 0x5BD), (0x610, 0x61A), (0x64B, 0x65F), (0x900, 0x903),
              (0x93C, 0x94D), (0x1AB0, 0x1ACE), (0x1DC0, 0x1DFF), (0x20D0, 0x20F0), (0xFE20, 0xFE2F),
              (0x898, 0x89F), (0x8CA, 0x8E1), (0x10F46, 0x10F50), (0x11930, 0x11943), (0x1E8D0, 0x1E8D6)],
    "cjk": [(0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x3040, 0x30FF), (0xAC00, 0xD7A3),
            (0x1100, 0x11FF), (0xFF00, 0xFFEF), (0x3000, 0x303F)],
    "rtl": [(0x590, 0x5FF), (0x600, 0x6FF), (0x700, 0x74F), (0x200E, 0x200F), (0x202A, 0x202E), (0xFB50, 0xFDFF)],
    "space": [(0x9, 0xD), (0x20, 0x20), (0x85, 0x85), (0xA0, 0xA0), (0x1680, 0x1680), (0x180E, 0x180E),
              (0x2000, 0x200B), (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000),
              (0x1C, 0x1F), (0xFEFF, 0xFEFF)],
    "digits": [(0x30, 0x39), (0x660, 0x669), (0x6F0, 0x6F9), (0x966, 0x96F), (0xFF10, 0xFF19), (0x2160, 0x2188),
               (0xB2, 0xB3), (0xBC, 0xBE), (0x1D7CE, 0x1D7FF), (0x1F100, 0x1F10C)],
    "ascii": [(0x20, 0x7E)],
    "latin": [(0xC0, 0x24F), (0x1E00, 0x1EFF), (0x370, 0x3FF), (0x400, 0x4FF)],
}
EMOJI = ["\U0001F468\u200D\U0001F469\u200D\U0001F467\u200D\U0001F466", "\U0001F3F3\uFE0F\u200D\U0001F308",
         "\U0001F44D\U0001F3FD", "\u2764\uFE0F", "\U0001F1FA\U0001F1F8", "\U0001F9D1\u200D\U0001F4BB",
         "\U0001F62E\u200D\U0001F4A8", "\U0001F636\u200D\U0001F32B\uFE0F", "1\uFE0F\u20E3", "\U0001F984",
         "\U0001F469\U0001F3FE\u200D\U0001F91D\u200D\U0001F468\U0001F3FB", "\U0001F999"]


def rand_char(rng, kind):
    lo, hi = rng.choice(RANGES[kind])
    return chr(rng.randint(lo, hi))


def rand_decomposed(rng):
    """A character NFC composes back: NFD of a precomposed letter, or Hangul jamo."""
    while True:
        c = chr(rng.choice([rng.randint(0xC0, 0x24F), rng.randint(0x1E00, 0x1EFF), rng.randint(0xAC00, 0xD7A3),
                            rng.randint(0x386, 0x3CE), rng.randint(0x400, 0x4FF), rng.randint(0x304C, 0x30F4)]))
        d = unicodedata.normalize("NFD", c)
        if d != c:
            return d


def rand_text(rng, n):
    kinds = ["any", "bmp", "marks", "cjk", "rtl", "space", "digits", "ascii", "ascii", "ascii", "latin"]
    out = []
    while len(out) < n:
        r = rng.random()
        if r < 0.05:
            out.append(rng.choice(EMOJI))
        elif r < 0.12:
            out.append(rand_decomposed(rng))
        elif r < 0.16:
            out.append(rng.choice(["'s", "'T", "'re", "'VE", "'m", "'LL", "'d", "'\u017F", "'K"]))
        else:
            out.append(rand_char(rng, rng.choice(kinds)))
    return "".join(out)


def whitespace_cases(rng):
    atoms = [" ", "  ", "\t", "\n", "\r", "\r\n", "\n\n", " \t", "\u00a0", "\u3000", "\x0b", "\x0c"]
    cases = []
    for _ in range(150):
        ws = "".join(rng.choice(atoms) for _ in range(rng.randint(1, 8)))
        word = rng.choice(["", "a", "Hello", "x1", "!", "世界", "ab cd"])
        shape = rng.randint(0, 3)
        cases.append([ws, ws + word, word + ws, ws + word + ws + word + ws][shape if shape < 3 else 3])
    cases += [" " * k for k in range(1, 40)] + ["\n" * k for k in range(1, 12)] + ["word" + " " * k for k in range(1, 12)]
    return cases


def number_cases(rng):
    cases = ["0", "12", "123", "1234", "12345678901234567890", "3.14159", "-42", "1,000,000", "1e-10", "0x1F",
             "v1.2.3", "2024-01-31", "+33 6 12 34 56 78", "١٢٣٤", "１２３", "Ⅻ", "½ ¾", "10%", "$5.99"]
    for _ in range(60):
        cases.append("".join(rng.choice("0123456789 .,-+e") for _ in range(rng.randint(1, 30))))
    return cases


def contraction_cases():
    words = ["I'm", "you're", "he's", "it'll", "we've", "they'd", "can't", "don't", "O'Neil", "'s", "'S"]
    cases = []
    for w in words:
        cases += [w, w.upper(), w.lower(), " " + w, w + ".", "x" + w, w.title()]
    cases += ["I'M YOU'RE HE'S IT'LL WE'VE THEY'D", "'sS 'Ss 'tT 'rE 'Re 'vE 'mM 'lL 'Ll 'dD", "'\u017F '\u212A",
              "''s '''t", "rock'n'roll", "l'été", "’s ’re (curly)"]
    return cases


def added_token_cases(tok, rng):
    specials = [t.content for t in tok.get_added_tokens_decoder().values()]
    cases = []
    for s in specials:
        cases += [s, s + s, s + " " + s, " " + s + " ", "x" + s + "y", s + "hello", "hello" + s, "\n" + s + "\n",
                  s[:-1], s[1:], "<" + s + ">", s * 3 + "text"]
    for _ in range(40):
        parts = [rng.choice(specials) if rng.random() < 0.5 else rand_text(rng, rng.randint(0, 6)) for _ in range(6)]
        cases.append("".join(parts))
    cases.append("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
                 "<|im_start|>user\n<image>\nDescribe this image.<|im_end|>\n<|im_start|>assistant\n")
    return cases


def byte_cases(rng):
    cases = [b"\xff", b"\xc0\x80", b"\xe2\x82", b"\xe2\x82\xac", b"\xed\xa0\x80", b"\xf0\x9f\x98", b"\xf4\x90\x80\x80",
             b"a\x00b", b"\x00", b"abc\x80def", b"\xc3\x28", b"\xf8\x88\x80\x80\x80", b"\xe0\x80\xaf", b"\xc2",
             b"caf\xe9", b"\xef\xbb\xbfBOM", b"x\xe2\x82y\xf0\x9f\x98z", "<|im_start|>\xff".encode("latin-1")]
    for _ in range(150):
        n = rng.randint(1, 40)
        cases.append(bytes(rng.choice([rng.randint(0, 255), rng.randint(0x80, 0xBF), rng.randint(0xC0, 0xF7),
                                       rng.randint(0x20, 0x7E)]) for _ in range(n)))
    return cases


def tiny_tokenizer():
    """A small tokenizer exercising what Qwen's file does not: merges as ["a","b"]
    pairs, added tokens with lstrip / rstrip / single_word / normalized."""
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    byte_char = dict(zip(bs, cs))

    def bl(text):  # ByteLevel spelling
        return "".join(chr(byte_char[b]) for b in text.encode())

    vocab = {}
    for b in range(256):
        vocab[chr(byte_char[b])] = len(vocab)
    merges = [["h", "e"], ["l", "l"], ["he", "ll"], ["hell", "o"], [bl(" "), "w"], ["o", "r"], [bl(" ") + "w", "or"],
              ["l", "d"], [bl(" ") + "wor", "ld"], ["a", "a"], ["aa", "aa"], ["é", "t"]]
    for a, b in merges:
        vocab.setdefault(a, len(vocab))
        vocab.setdefault(b, len(vocab))
        vocab.setdefault(a + b, len(vocab))
    n = len(vocab)
    added = [
        {"id": n, "content": "<L>", "single_word": False, "lstrip": True, "rstrip": False, "normalized": False, "special": True},
        {"id": n + 1, "content": "<R>", "single_word": False, "lstrip": False, "rstrip": True, "normalized": False, "special": True},
        {"id": n + 2, "content": "word", "single_word": True, "lstrip": False, "rstrip": False, "normalized": False, "special": False},
        {"id": n + 3, "content": "caf\u00e9", "single_word": False, "lstrip": False, "rstrip": False, "normalized": True, "special": False},
        {"id": n + 4, "content": "<R>>", "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True},
    ]
    merges_as_strings = [" ".join(m) for m in merges]  # Qwen's file uses the ["a", "b"] form
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
             "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": merges_as_strings},
    }


TINY_CASES = ["hello world", "x <L>y", "x   <L>   y", "x<R>   y", "<R>\n\n z", "a word here", "awordb", "word",
              "(word)", "_word", "word_", "café", "cafe\u0301", "cafe\u0301s", "<R>>", "<R>>>", " <L><L> ",
              "aaaaaaa", "été", "e\u0301te\u0301", "hello<L>world", "\u00a0<L>x"]


QWEN_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


def render_chat(messages, add_generation_prompt):
    """Qwen2.5's chat_template (no tools), written out."""
    out = ""
    if not messages or messages[0]["role"] != "system":
        out += "<|im_start|>system\n" + QWEN_SYSTEM + "<|im_end|>\n"
    for m in messages:
        out += "<|im_start|>" + m["role"] + "\n" + m["content"] + "<|im_end|>\n"
    if add_generation_prompt:
        out += "<|im_start|>assistant\n"
    return out


CHATS = [
    ([{"role": "user", "content": "Hello!"}], True),
    ([{"role": "user", "content": "<image>\nDescribe this image."}], True),
    ([{"role": "system", "content": "Be terse."}, {"role": "user", "content": "2+2?"},
      {"role": "assistant", "content": "4"}, {"role": "user", "content": "And 3+3?"}], True),
    ([{"role": "user", "content": "<image>\n<image>\nCompare the two pictures."},
      {"role": "assistant", "content": "\n\nThe first is brighter.  "}], False),
    ([{"role": "user", "content": "  leading spaces\n\n"}, {"role": "assistant", "content": "x<image>y"}], False),
    ([], True),
    ([{"role": "user", "content": "Ünïcödé 中文 🦙 'S"}, {"role": "assistant", "content": "OK"},
      {"role": "system", "content": "late system"}], True),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", default=os.path.join(ROOT, "models", "tokenizer", "tuna2-tokenizer.json.gz"))
    ap.add_argument("--repo-bytes", type=int, default=260_000, help="budget of repository text")
    args = ap.parse_args()
    tok = load_tokenizer(args.tokenizer)
    norm = tok.normalizer
    rng = random.Random(20240531)

    texts = repo_texts(args.repo_bytes)
    texts += [rand_text(rng, rng.randint(1, 80)) for _ in range(1100)]
    texts += [rand_text(rng, rng.randint(300, 700)) for _ in range(12)]  # long random Unicode
    texts += whitespace_cases(rng) + number_cases(rng) + contraction_cases() + added_token_cases(tok, rng)
    texts = [t for t in texts if t and "\0" not in t]

    os.makedirs(OUT, exist_ok=True)
    size = 0
    with open(os.path.join(OUT, "corpus.jsonl"), "w", encoding="utf-8") as f:
        for t in texts:
            rec = {"text": t, "ids": tok.encode(t, add_special_tokens=False).ids}
            n = norm.normalize_str(t)
            if n != t:
                rec["nfc"] = n
            line = json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n"
            size += len(line.encode())
            f.write(line)
    with open(os.path.join(OUT, "bytes.jsonl"), "w") as f:
        for b in byte_cases(rng):
            ids = tok.encode(b.decode("utf-8", errors="replace"), add_special_tokens=False).ids
            f.write(json.dumps({"hex": b.hex(), "ids": ids}, separators=(",", ":")) + "\n")
    with open(os.path.join(OUT, "chat.jsonl"), "w") as f:
        for msgs, gen in CHATS:
            text = render_chat(msgs, gen)
            ids = tok.encode(text, add_special_tokens=False).ids
            f.write(json.dumps({"messages": msgs, "generation_prompt": gen, "text": text, "ids": ids},
                               ensure_ascii=False) + "\n")
    tiny = tiny_tokenizer()
    with open(os.path.join(OUT, "tiny.json"), "w") as f:
        json.dump(tiny, f, ensure_ascii=False)
    ttok = Tokenizer.from_file(os.path.join(OUT, "tiny.json"))
    with open(os.path.join(OUT, "tiny_cases.jsonl"), "w") as f:
        for t in TINY_CASES:
            f.write(json.dumps({"text": t, "ids": ttok.encode(t, add_special_tokens=False).ids}, ensure_ascii=False) + "\n")
    golden = os.path.join(ROOT, "..", "shared", "tokenizer", "golden.jsonl")
    if os.path.exists(golden):
        shutil.copyfile(golden, os.path.join(OUT, "golden.jsonl"))
    print(f"corpus.jsonl: {len(texts)} lines, {size} bytes")


if __name__ == "__main__":
    main()
