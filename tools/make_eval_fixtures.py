#!/usr/bin/env python3
"""Fixtures of tests/test_eval.c (tests/fixtures/eval/, ~100 KB), from the dataset's own code:

  images/*.png     32x32 ground truth: rendered scenes of every kind, edit targets, and
                   Fashion-MNIST test items (grey and recoloured; Debian dataset-fashion-mnist)
  tasks.jsonl      generate/edit/understand/reconstruct/reference tasks over them, with
                   the expected attributes (the judges must pass every scene on these)
  plumbing.jsonl   one task of each kind, for running a random model through `tuna eval`
  tokenizer.json   a 320-token byte-level BPE trained on the fixtures' text (tools/train_bpe_tokenizer.py),
                   small enough for a test model
"""
import json
import os
import sys

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_dataset as ds  # noqa: E402
import train_bpe_tokenizer as tb  # noqa: E402

OUT = os.path.join(os.path.dirname(HERE), "tests", "fixtures", "eval")


def main():
    rng = np.random.Generator(np.random.PCG64([2024, 7]))
    os.makedirs(os.path.join(OUT, "images"), exist_ok=True)
    for f in os.listdir(os.path.join(OUT, "images")):
        os.remove(os.path.join(OUT, "images", f))
    fashion = ds.load_fashion("test")
    tasks, n = [], [0]

    def save(arr, tag):
        name = f"images/{tag}_{n[0]:03d}.png"
        n[0] += 1
        Image.fromarray(arr, "RGB").save(os.path.join(OUT, name), optimize=True)
        return name

    plan = [("single", 8), ("pair", 8), ("count", 10), ("multi", 10), ("text", 10), ("fashion", 30)]
    category = {"single": "single", "pair": "position", "count": "count", "multi": "attribution", "text": "text"}
    for kind, count in plan:
        for i in range(count):
            scene = ds.make_scene(32, rng, fashion, kind)
            path = save(ds.render_any(32, scene, fashion), kind)
            cat = category.get(kind) or ("fashion_colour" if scene.get("colour") else "fashion")
            tasks.append({"task": "generate", "id": f"gen-{kind}-{i}", "prompt": scene["caption"], "category": cat,
                          "expect": ds.expect_of(scene), "image": path})
            for q, a, typ in ds.questions(scene, rng)[:1]:
                tasks.append({"task": "understand", "id": f"und-{kind}-{i}", "image": path, "question": q,
                              "answer": a, "type": typ})
            if kind in ("single", "pair", "count", "multi"):
                e = ds.edit_of(scene, 32, rng)
                if e:
                    instr, ekind, objs, _ = e
                    tasks.append({"task": "edit", "id": f"edit-{ekind}-{kind}-{i}", "image": path,
                                  "instruction": instr, "kind": ekind,
                                  "expect": {"objects": ds.public_objects(objs)},
                                  "target": save(ds.render_objects(32, objs), "edit")})
            if kind == "fashion" and not scene.get("colour"):
                tasks.append({"task": "reference", "id": f"real-{i}", "image": path})
            if i == 0:
                tasks.append({"task": "reconstruct", "id": f"rec-{kind}", "image": path})
    with open(os.path.join(OUT, "tasks.jsonl"), "w") as f:
        for t in tasks:
            f.write(json.dumps(t) + "\n")
    # one of each kind (two fashion generations and references, so the FD has two a side)
    pick, seen = [], {}
    for t in tasks:
        key = (t["task"], t.get("category", "")[:7])
        limit = 2 if key in (("generate", "fashion"), ("reference", "")) else 1
        if t["task"] == "generate" and not t["category"].startswith("fashion") and \
                ("generate", "scene") in seen:
            continue
        if seen.get(key, 0) < limit:
            seen[key] = seen.get(key, 0) + 1
            if t["task"] == "generate" and not t["category"].startswith("fashion"):
                seen[("generate", "scene")] = 1
            pick.append(t)
    with open(os.path.join(OUT, "plumbing.jsonl"), "w") as f:
        for t in pick:
            f.write(json.dumps(t) + "\n")
    texts = [t.get("prompt") or t.get("question") or t.get("instruction") or "" for t in tasks]
    texts += [t["answer"] for t in tasks if "answer" in t] + [f"system\n{tb.SYSTEM}\nuser\nassistant\n"] * 20
    tok = tb.build(320, texts)
    tok.save(os.path.join(OUT, "tokenizer.json"))
    # golden ids of the committed small tokenizer (models/tokenizer/tuna2-small) on the fixtures' text
    small = os.path.join(os.path.dirname(HERE), "models", "tokenizer", "tuna2-small", "tokenizer.json.gz")
    if os.path.exists(small):
        import gzip
        from tokenizers import Tokenizer
        with gzip.open(small, "rt", encoding="utf-8") as f:
            hf = Tokenizer.from_str(f.read())
        chat = (f"<|im_start|>system\n{tb.SYSTEM}<|im_end|>\n<|im_start|>user\n<image>\nWhat is this?<|im_end|>\n"
                "<|im_start|>assistant\ncircle<|im_end|>\n")
        with open(os.path.join(OUT, "small_tokenizer_golden.jsonl"), "w") as f:
            for text in sorted(set(texts)) + [chat, "Ünïcödé café 東京 🙂", ""]:
                f.write(json.dumps({"text": text, "ids": hf.encode(text).ids}) + "\n")
    print(f"wrote {len(tasks)} tasks, {len(pick)} plumbing tasks, {n[0]} images, "
          f"tokenizer of {tok.get_vocab_size()} tokens to {OUT}")


if __name__ == "__main__":
    main()
