"""Writes tests/fixtures/overfit/: a tiny byte-level BPE tokenizer (trained with
the PyPI `tokenizers` package on the overfit captions and answers, Qwen2 split
regex, NFC, ByteLevel) with Tuna-2's special tokens, and the model config the
overfitting test trains from scratch.

    python3 tools/make_overfit_fixture.py
"""
import json
import os

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "overfit")
QWEN = os.path.join(HERE, "..", "..", "shared", "tokenizer", "tuna2", "tokenizer.json")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
            "<|image_pad|>", "[PAD]", "<image>"]
TEXT = [
    "a red square on the left", "a green stripe at the top", "a blue cross", "a yellow ring",
    "What colour is it?", "red", "green", "blue", "yellow", "What is it?", "a square", "a stripe",
    "a cross", "a ring", "You are a helpful assistant.", "user", "assistant", "system",
]


def split_regex():
    with open(QWEN, encoding="utf-8") as f:
        qwen = json.load(f)
    for p in qwen["pre_tokenizer"]["pretokenizers"]:
        if p["type"] == "Split":
            return p["pattern"]["Regex"]
    raise SystemExit("no Split pre-tokenizer in " + QWEN)


def main():
    os.makedirs(OUT, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(split_regex()), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, min_frequency=1, special_tokens=[],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(TEXT * 4, trainer)
    tok.add_special_tokens(SPECIALS)
    tok.save(os.path.join(OUT, "tokenizer.json"))
    ids = {s: tok.token_to_id(s) for s in SPECIALS}
    vocab = tok.get_vocab_size()
    config = {
        "architecture": "tuna2", "vocab_size": vocab, "hidden_size": 64,
        "llm": {"num_layers": 2, "num_heads": 4, "num_kv_heads": 2, "head_dim": 16, "intermediate_size": 128,
                "rope_theta": 10000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": False},
        "head": {"num_layers": 2, "num_heads": 4, "num_kv_heads": 2, "head_dim": 16, "intermediate_size": 128,
                 "rms_norm_eps": 1e-5, "qk_norm_eps": 1e-6, "final_norm_eps": 1e-6,
                 "text_rope_theta": 500000.0,
                 "text_rope_scaling": {"factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                       "original_max_position_embeddings": 8192},
                 "image_rope_theta": 10000.0},
        "patch_size": 4, "image_channels": 3, "time_freq_dim": 256, "patch_norm_eps": None,
        "noise_scale": 2.0, "t_eps": 0.05,
        "tokens": {"bos": ids["<|im_start|>"], "eos": ids["<|im_end|>"], "boi": ids["<|vision_start|>"],
                   "eoi": ids["<|vision_end|>"], "image_pad": ids["<|image_pad|>"], "pad": ids["[PAD]"]},
    }
    with open(os.path.join(OUT, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    print("vocab", vocab, "specials", ids)


if __name__ == "__main__":
    main()
