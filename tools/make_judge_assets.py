#!/usr/bin/env python3
"""Text templates of the `tuna eval` text reader: the foreground mask of every string
tools/make_dataset.py writes on a text scene (0-99 and its short words), rendered by
the dataset's own code at 32x32, saved as models/judge/text_templates.safetensors:
  masks  U8 [K, 32, 32] (0/1);  metadata "strings": the K strings joined by "\\n".
The Fashion-MNIST judge is trained by the engine itself: `build/tuna eval --train-judge`.
"""
import argparse
import os
import sys

import numpy as np
from safetensors.numpy import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_dataset as ds  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="models/judge/text_templates.safetensors")
    ap.add_argument("--size", type=int, default=32)
    args = ap.parse_args()
    strings = [str(i) for i in range(100)] + ds.WORDS
    masks = np.zeros((len(strings), args.size, args.size), np.uint8)
    bg = np.array(ds.BACKGROUND)
    for k, s in enumerate(strings):
        img = ds.render_text(args.size, s, "white")
        masks[k] = (np.abs(img.astype(int) - bg).sum(-1) > 0).astype(np.uint8)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    save_file({"masks": masks}, args.out, metadata={"strings": "\n".join(strings), "size": str(args.size)})
    print(f"wrote {args.out}: {len(strings)} templates of {args.size}x{args.size}")


if __name__ == "__main__":
    main()
