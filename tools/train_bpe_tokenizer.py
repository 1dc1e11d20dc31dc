#!/usr/bin/env python3
"""A small byte-level BPE tokenizer for the small Tuna-2 (docs/dataset.md).

Same pipeline as Qwen2.5's tokenizer.json (../shared/tokenizer/tuna2/tokenizer.json):
NFC normalizer, the Qwen2 split regex (copied from that file, so the engine's loader runs
its usual path), ByteLevel without prefix space, ByteLevel decoder. The BPE is trained
with the PyPI `tokenizers` package on every text of the dataset (captions, questions,
answers, instructions, chat), the chat template's fixed text, and a frozen copy of the
repository's Markdown docs (tools/tokenizer_corpus_extra.txt.gz, so that ordinary English
still encodes in few tokens and the result does not drift as the docs change).

The special tokens Tuna-2 needs are appended after the BPE vocabulary, in this order:
<|endoftext|> <|im_start|> <|im_end|> <|vision_start|> <|vision_end|> <|image_pad|> [PAD] <image>
and written into OUT_DIR/tokens.json as the "tokens" snippet of config.json (SPEC section 8).

  python3 tools/train_bpe_tokenizer.py --dataset out/dataset --out models/tokenizer-small
  python3 tools/train_bpe_tokenizer.py --check out/dataset   # HF vs `build/tuna tokenize`
"""
import argparse
import glob
import gzip
import json
import os
import subprocess
import sys

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
QWEN_TOKENIZER = os.path.join(ROOT, "..", "shared", "tokenizer", "tuna2", "tokenizer.json")
# The Qwen2 split regex, used when the shared file is not at hand (it is the same string).
QWEN_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
              r"\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
            "<|image_pad|>", "[PAD]", "<image>"]
SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


def split_regex():
    try:
        with open(QWEN_TOKENIZER, encoding="utf-8") as f:
            pre = json.load(f)["pre_tokenizer"]
        for p in pre["pretokenizers"]:
            if p["type"] == "Split":
                return p["pattern"]["Regex"]
    except (OSError, KeyError, ValueError):
        pass
    return QWEN_SPLIT


def dataset_texts(root):
    """Every string a model trained on the dataset sees, in file order (deterministic)."""
    out = []
    for name in ["t2i.jsonl", "understanding.jsonl", "edit.jsonl", "text.jsonl"] + \
            sorted(glob.glob(os.path.join(root, "eval", "*.jsonl"))):
        path = name if os.path.isabs(name) else os.path.join(root, name)
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as f:
            for line in f:
                r = json.loads(line)
                for key in ("caption", "instruction", "prompt", "question", "answer"):
                    if isinstance(r.get(key), str):
                        out.append(r[key])
                for turn in r.get("conversations", []):
                    out.append(turn["value"].replace("<image>\n", ""))
    return out


def corpus(root):
    texts = dataset_texts(root)
    chat = f"system\n{SYSTEM}\nuser\nassistant\n"
    texts += [chat] * 100
    with gzip.open(os.path.join(HERE, "tokenizer_corpus_extra.txt.gz"), "rt", encoding="utf-8") as f:
        texts += f.read().split("\n\n")  # paragraphs
    return texts


def build(vocab_size, texts):
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(split_regex()), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    from tokenizers import processors
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(SPECIALS), min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    tok.add_special_tokens(SPECIALS)
    return tok


def tokens_snippet(tok):
    ids = {s: tok.token_to_id(s) for s in SPECIALS}
    return {"vocab_size": tok.get_vocab_size(with_added_tokens=True),
            "tokens": {"bos": ids["<|im_start|>"], "eos": ids["<|im_end|>"], "boi": ids["<|vision_start|>"],
                       "eoi": ids["<|vision_end|>"], "image_pad": ids["<|image_pad|>"], "pad": ids["[PAD]"]},
            "special_ids": ids}


def check(tokenizer_path, texts, tuna):
    """Encode every distinct text with HF and with the engine; return the mismatches."""
    tok = Tokenizer.from_file(tokenizer_path)
    uniq = sorted(set(texts))
    # the chat template text as the engine renders it, specials included
    uniq.append(f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n<image>\nWhat is this?<|im_end|>\n"
                "<|im_start|>assistant\n")
    inp = "".join(json.dumps({"text": t}) + "\n" for t in uniq)
    p = subprocess.run([tuna, "tokenize", "-t", tokenizer_path], input=inp, capture_output=True, text=True)
    lines = p.stdout.splitlines()
    if p.returncode != 0 or len(lines) != len(uniq):
        sys.exit(f"tuna tokenize failed (rc {p.returncode}): {p.stderr[:500]}")
    bad = []
    for t, line in zip(uniq, lines):
        want = tok.encode(t).ids
        got = json.loads(line).get("ids")
        if got != want:
            bad.append((t, want, got))
    return len(uniq), bad


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="out/dataset", help="directory written by tools/make_dataset.py")
    ap.add_argument("--out", default="out/tokenizer", help="directory for tokenizer.json and tokens.json")
    ap.add_argument("--vocab-size", type=int, default=2048, help="total, special tokens included")
    ap.add_argument("--check", action="store_true", help="only compare HF and the engine on the dataset's text")
    ap.add_argument("--tuna", default=os.path.join(ROOT, "build", "tuna"))
    args = ap.parse_args()
    path = os.path.join(args.out, "tokenizer.json")
    texts = dataset_texts(args.dataset)
    if not texts:
        sys.exit(f"no dataset text under {args.dataset} (run tools/make_dataset.py first)")
    if not args.check:
        os.makedirs(args.out, exist_ok=True)
        tok = build(args.vocab_size, corpus(args.dataset))
        tok.save(path)
        snip = tokens_snippet(tok)
        with open(os.path.join(args.out, "tokens.json"), "w") as f:
            json.dump(snip, f, indent=1)
        lens = [len(tok.encode(t).ids) for t in texts]
        print(json.dumps({"tokenizer": path, **snip,
                          "dataset_texts": len(texts), "mean_tokens": round(sum(lens) / len(lens), 2),
                          "max_tokens": max(lens)}))
    if os.path.exists(args.tuna):
        n, bad = check(path, texts, args.tuna)
        print(f"engine vs HF: {n - len(bad)}/{n} distinct texts encode to the same ids")
        for t, want, got in bad[:5]:
            print(f"  MISMATCH {t!r}: HF {want} engine {got}")
        if bad:
            sys.exit(1)
    else:
        print(f"(no {args.tuna}: run `make` to check against the engine)")


if __name__ == "__main__":
    main()
