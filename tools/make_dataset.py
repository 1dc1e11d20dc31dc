#!/usr/bin/env python3
"""Deterministic training and evaluation data for a small Tuna-2 (docs/dataset.md).

Writes OUT (default out/dataset/, git-ignored):

  images/train/*.png, images/eval/*.png    RGB PNGs, SIZE x SIZE (default 32)
  t2i.jsonl          {"image", "caption"}                          (SPEC section 7)
  understanding.jsonl {"image", "conversations":[human, gpt], "type"}
  edit.jsonl         {"raw_image", "out_image", "instruction", "kind"}
  text.jsonl         {"conversations": [human, gpt]}
  eval/understand.jsonl eval/generate.jsonl eval/edit.jsonl eval/reconstruct.jsonl
                     task files of `tuna eval` (docs/eval.md); paths relative to OUT
  eval/all.jsonl     the four concatenated
  manifest.json      counts, palette, shapes, flags

Two image sources:
  * synthetic scenes: 1-4 flat coloured shapes (circle, square, triangle, star; 8 colours)
    on a grey background, or one/two characters of text (DejaVu Sans Bold);
  * Fashion-MNIST (Debian package dataset-fashion-mnist): the real 28x28 items, padded
    to SIZE, in grey (as they are) or recoloured with a palette colour.
Training uses the Fashion-MNIST training split, evaluation the test split, and the
synthetic evaluation scenes come from a separate random stream: the held-out split is
fixed by --seed.

Every random choice comes from numpy's PCG64 seeded with --seed: the same flags give
byte-identical files. The shape geometry (and the palette) is mirrored by the C judges
in src/eval/eval_judge.c: change both together.
"""
import argparse
import gzip
import json
import os
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageFont

PALETTE = [  # name, RGB. Background grey is far from all of them.
    ("red", (220, 40, 40)),
    ("green", (40, 170, 60)),
    ("blue", (40, 80, 220)),
    ("yellow", (240, 210, 40)),
    ("purple", (150, 60, 190)),
    ("orange", (250, 140, 20)),
    ("white", (245, 245, 245)),
    ("black", (20, 20, 20)),
]
COLOURS = [n for n, _ in PALETTE]
RGB = dict(PALETTE)
BACKGROUND = (128, 128, 128)
SHAPES = ["circle", "square", "triangle", "star"]
PLURAL = {"circle": "circles", "square": "squares", "triangle": "triangles", "star": "stars"}
NUMBER_WORDS = ["zero", "one", "two", "three", "four"]
FASHION = ["t-shirt", "trousers", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]
FASHION_DIR = "/usr/share/datasets/fashion-mnist"
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
# Text scenes: one digit, two digits, or one of these short words (two letters: legible at 32x32).
WORDS = ["OK", "HI", "GO", "NO", "UP", "ON", "AB", "XY"]
TEXT_COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black"]
RECOLOURS = ["red", "green", "blue", "yellow", "purple", "orange"]  # on black: not white/black

NULL_CAPTION = "an image"  # the unconditional text (see build_train)
SUPERSAMPLE = 4
STAR_INNER = 0.5  # inner radius / outer radius of the 5-point star


# ---------------------------------------------------------------- geometry
def star_polygon():
    """10 vertices of an upright 5-point star, outer radius 1, centred at 0."""
    pts = []
    for k in range(10):
        r = 1.0 if k % 2 == 0 else STAR_INNER
        a = -np.pi / 2 + k * np.pi / 5
        pts.append((r * np.cos(a), r * np.sin(a)))
    return np.array(pts)


def inside_polygon(x, y, poly):
    """Even-odd rule, vectorised over arrays x, y."""
    res = np.zeros(x.shape, bool)
    n = len(poly)
    for i in range(n):
        x0, y0 = poly[i]
        x1, y1 = poly[(i + 1) % n]
        cross = (y0 > y) != (y1 > y)
        xint = x0 + (y - y0) * (x1 - x0) / ((y1 - y0) if y1 != y0 else 1e-12)
        res ^= cross & (x < xint)
    return res


def shape_mask(shape, u, v):
    """Inside test in normalised shape coordinates: u, v in [-1, 1] span the shape's
    bounding box (the C judge uses the same definitions)."""
    if shape == "square":
        return (np.abs(u) <= 1) & (np.abs(v) <= 1)
    if shape == "circle":
        return u * u + v * v <= 1
    if shape == "triangle":  # apex at the top centre, base at the bottom
        return (v <= 1) & (np.abs(u) <= (v + 1) / 2)
    if shape == "star":
        poly = star_polygon()
        lo, hi = poly.min(0), poly.max(0)
        # map [-1, 1] box coordinates into the polygon's own bounding box
        px = lo[0] + (u + 1) / 2 * (hi[0] - lo[0])
        py = lo[1] + (v + 1) / 2 * (hi[1] - lo[1])
        return inside_polygon(px, py, poly)
    raise ValueError(shape)


def draw_shape(img, shape, colour, cx, cy, size):
    """Fill a shape whose bounding box is size x size centred at (cx, cy) (pixel units),
    hard edged: a pixel is set when at least half of its 4x4 subsamples are inside."""
    h, w, _ = img.shape
    half = size / 2
    x0, x1 = int(np.floor(cx - half)), int(np.ceil(cx + half))
    y0, y1 = int(np.floor(cy - half)), int(np.ceil(cy + half))
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0:
        return
    s = SUPERSAMPLE
    ys = (np.arange(y0 * s, y1 * s) + 0.5) / s
    xs = (np.arange(x0 * s, x1 * s) + 0.5) / s
    X, Y = np.meshgrid(xs, ys)
    inside = shape_mask(shape, (X - cx) / half, (Y - cy) / half).astype(np.float32)
    cover = inside.reshape(y1 - y0, s, x1 - x0, s).mean(axis=(1, 3))
    img[y0:y1, x0:x1][cover >= 0.5] = RGB[colour]


# ---------------------------------------------------------------- scenes
def new_canvas(size, colour=BACKGROUND):
    img = np.empty((size, size, 3), np.uint8)
    img[:] = colour
    return img


def render_objects(size, objects):
    img = new_canvas(size)
    for o in objects:
        draw_shape(img, o["shape"], o["colour"], o["x"], o["y"], o["size"])
    return img


def cell_centre(size, cell, rng, jitter):
    """Centre of cell 0..3 of a 2x2 grid (reading order), jittered."""
    half = size / 2
    cx = (cell % 2 + 0.5) * half + rng.uniform(-jitter, jitter)
    cy = (cell // 2 + 0.5) * half + rng.uniform(-jitter, jitter)
    return cx, cy


def obj(shape, colour, x, y, s):
    return {"shape": shape, "colour": colour, "x": round(float(x), 2), "y": round(float(y), 2),
            "size": round(float(s), 2)}


def article(word):
    return "an" if word[0] in "aeiou" else "a"


def describe(o):
    return f"{article(o['colour'])} {o['colour']} {o['shape']}"


def relation(a, b):
    """Where a is relative to b: the axis of the larger separation decides."""
    dx, dy = a["x"] - b["x"], a["y"] - b["y"]
    if abs(dx) >= abs(dy):
        return "left" if dx < 0 else "right"
    return "above" if dy < 0 else "below"


REL_PHRASE = {"left": "left of", "right": "right of", "above": "above", "below": "below"}
OPPOSITE = {"left": "right", "right": "left", "above": "below", "below": "above"}


def scene_single(size, rng):
    k = size / 32
    s = rng.uniform(12, 18) * k
    m = s / 2 + 2 * k
    o = obj(rng.choice(SHAPES), rng.choice(COLOURS), rng.uniform(m, size - m), rng.uniform(m, size - m), s)
    return {"kind": "single", "objects": [o], "caption": describe(o)}


def distinct_pair(rng):
    while True:
        a = (rng.choice(SHAPES), rng.choice(COLOURS))
        b = (rng.choice(SHAPES), rng.choice(COLOURS))
        if a[0] != b[0] and a[1] != b[1]:  # either is named unambiguously by shape or by colour
            return a, b


def scene_pair(size, rng):
    k = size / 32
    (sa, ca), (sb, cb) = distinct_pair(rng)
    s1, s2 = rng.uniform(10, 13, 2) * k
    horizontal = rng.random() < 0.5
    along = [size * 0.27 + rng.uniform(-2, 2) * k, size * 0.73 + rng.uniform(-2, 2) * k]
    across = size / 2 + rng.uniform(-6, 6) * k
    across2 = across + rng.uniform(-2, 2) * k
    if horizontal:
        a, b = obj(sa, ca, along[0], across, s1), obj(sb, cb, along[1], across2, s2)
    else:
        a, b = obj(sa, ca, across, along[0], s1), obj(sb, cb, across2, along[1], s2)
    if rng.random() < 0.5:  # a is not always the left/top one
        a, b = b, a
    rel = relation(a, b)
    return {"kind": "pair", "objects": [a, b], "caption": f"{describe(a)} {REL_PHRASE[rel]} {describe(b)}",
            "relation": [rel, 0, 1]}


def scene_count(size, rng):
    k = size / 32
    n = int(rng.integers(1, 5))
    shape, colour = rng.choice(SHAPES), rng.choice(COLOURS)
    cells = sorted(rng.choice(4, n, replace=False).tolist())
    objs = []
    for c in cells:
        x, y = cell_centre(size, c, rng, 1.5 * k)
        objs.append(obj(shape, colour, x, y, rng.uniform(9, 12) * k))
    noun = shape if n == 1 else PLURAL[shape]
    return {"kind": "count", "objects": objs, "caption": f"{NUMBER_WORDS[n]} {colour} {noun}"}


def scene_multi(size, rng):
    k = size / 32
    n = int(rng.integers(2, 5))
    shapes = rng.permutation(SHAPES)[:n]
    colours = rng.permutation(COLOURS)[:n]
    cells = sorted(rng.choice(4, n, replace=False).tolist())
    objs = []
    for c, sh, co in zip(cells, shapes, colours):
        x, y = cell_centre(size, c, rng, 1.5 * k)
        objs.append(obj(sh, co, x, y, rng.uniform(9, 12) * k))
    names = [describe(o) for o in objs]  # reading order
    caption = names[0] if n == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return {"kind": "multi", "objects": objs, "caption": caption}


def text_string(rng):
    r = rng.random()
    if r < 0.4:
        return str(int(rng.integers(0, 10)))
    if r < 0.8:
        return str(int(rng.integers(10, 100)))
    return str(rng.choice(WORDS))


_font_cache = {}


def render_text(size, text, colour):
    """Centred bold text, as large as fits (one character ~70% of the height)."""
    img = Image.new("RGB", (size, size), BACKGROUND)
    d = ImageDraw.Draw(img)
    pt = int(size * (0.8 if len(text) == 1 else 0.6))
    while True:
        font = _font_cache.get(pt) or _font_cache.setdefault(pt, ImageFont.truetype(FONT, pt))
        l, t, r, b = d.textbbox((0, 0), text, font=font)
        if (r - l) <= size - 4 and (b - t) <= size - 4 or pt <= 6:
            break
        pt -= 1
    x = (size - (r - l)) / 2 - l
    y = (size - (b - t)) / 2 - t
    d.text((round(x), round(y)), text, fill=RGB[colour], font=font)
    # hard edges: every pixel is the background or the text colour
    a = np.asarray(img).astype(np.int32)
    bg = np.array(BACKGROUND)
    fg = np.array(RGB[colour])
    t_fg = ((a - bg) * (fg - bg)).sum(-1) / max(1, ((fg - bg) ** 2).sum())
    out = new_canvas(size)
    out[t_fg >= 0.5] = fg
    return out


def scene_text(size, rng):
    text = text_string(rng)
    colour = str(rng.choice(TEXT_COLOURS))
    return {"kind": "text", "objects": [], "text": text, "text_colour": colour,
            "caption": f'the text "{text}" in {colour}'}


# ---------------------------------------------------------------- Fashion-MNIST
def load_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(magic & 0xFF)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * len(dims)).reshape(dims)


def load_fashion(split):
    pre = "train" if split == "train" else "t10k"
    x = load_idx(os.path.join(FASHION_DIR, f"{pre}-images-idx3-ubyte.gz"))
    y = load_idx(os.path.join(FASHION_DIR, f"{pre}-labels-idx1-ubyte.gz"))
    return x, y


def fashion_box(size):
    """Side of the square the 28x28 item is scaled to (28 at size 32): the C judge
    crops the same centred square."""
    return max(8, round(size * 28 / 32))


def render_fashion(size, item, colour):
    """The item (uint8 28x28, white on black) centred on black, scaled to fashion_box(size);
    colour None keeps it grey, else pixel = colour * intensity / 255."""
    box = fashion_box(size)
    g = item if box == 28 else np.asarray(Image.fromarray(item).resize((box, box), Image.BICUBIC))
    a = g.astype(np.float32) / 255.0
    rgb = (np.array(RGB[colour] if colour else (255, 255, 255), np.float32) * a[..., None])
    out = np.zeros((size, size, 3), np.uint8)
    o = (size - box) // 2
    out[o:o + box, o:o + box] = np.round(rgb).astype(np.uint8)
    return out


def fashion_caption(name, colour):
    if name == "trousers":
        return f"a pair of {colour + ' ' if colour else ''}trousers"
    word = f"{colour} {name}" if colour else name
    return f"{article(word)} {word}"


# ---------------------------------------------------------------- questions
def questions(scene, rng):
    """(question, answer, type) for a scene; every answer is one or two words."""
    qs = []
    kind, objs = scene["kind"], scene["objects"]
    if kind == "fashion":
        name = scene["class"]
        qs.append(("What is this?", name, "class"))
        if scene.get("colour"):
            noun = "trousers" if name == "trousers" else name
            verb = "are" if name == "trousers" else "is"
            qs.append((f"What colour {verb} the {noun}?", scene["colour"], "colour"))
        return qs
    if kind == "text":
        qs.append(("What does the text say?", scene["text"], "text"))
        qs.append(("What colour is the text?", scene["text_colour"], "colour"))
        return qs
    if kind == "single":
        o = objs[0]
        qs.append(("What is this?", o["shape"], "class"))
        qs.append((f"What colour is the {o['shape']}?", o["colour"], "colour"))
        return qs
    n = len(objs)
    if kind == "count":
        shape = objs[0]["shape"]
        qs.append((f"How many {PLURAL[shape]} are there?", NUMBER_WORDS[n], "count"))
        qs.append(("How many objects are there?", NUMBER_WORDS[n], "count"))
        if n == 1:
            qs.append((f"What colour is the {shape}?", objs[0]["colour"], "colour"))
        else:
            qs.append((f"What colour are the {PLURAL[shape]}?", objs[0]["colour"], "colour"))
        return qs
    # pair / multi: shapes and colours are distinct, so "the star" names one object
    qs.append(("How many objects are there?", NUMBER_WORDS[n], "count"))
    o = objs[int(rng.integers(n))]
    qs.append((f"What colour is the {o['shape']}?", o["colour"], "colour"))
    o = objs[int(rng.integers(n))]
    qs.append((f"What shape is the {o['colour']} object?", o["shape"], "class"))
    i, j = rng.choice(n, 2, replace=False)
    a, b = objs[int(i)], objs[int(j)]
    qs.append((f"Where is the {a['colour']} {a['shape']} relative to the {b['colour']} {b['shape']}?",
               relation(a, b), "position"))
    return qs


# ---------------------------------------------------------------- edits
def edit_of(scene, size, rng):
    """(instruction, kind, target objects) for a shape scene, or None."""
    objs = [dict(o) for o in scene["objects"]]
    kind = str(rng.choice(["recolour", "mirror", "add", "remove", "move"]))
    k = size / 32
    if kind == "recolour":
        i = int(rng.integers(len(objs)))
        used = {o["colour"] for o in objs}
        new = str(rng.choice([c for c in COLOURS if c not in used]))
        name = f"the {objs[i]['shape']}" if scene["kind"] != "count" else f"the {PLURAL[objs[i]['shape']]}"
        idx = range(len(objs)) if scene["kind"] == "count" else [i]
        old = objs[i]["colour"]
        for t in idx:
            objs[t]["colour"] = new
        return f"make {name} {new}", kind, objs, {"from": old, "to": new}
    if kind == "mirror":
        for o in objs:
            o["x"] = round(size - o["x"], 2)
        # the triangle and star are symmetric, so the image is exactly the flipped source
        return "mirror the image", kind, objs, {}
    if kind == "remove" and len(objs) >= 2 and scene["kind"] != "count":
        i = int(rng.integers(len(objs)))
        gone = objs.pop(i)
        return f"remove the {gone['shape']}", kind, objs, {"removed": gone["shape"]}
    if kind in ("add", "remove"):
        # add an object in a free cell of the 2x2 grid
        taken = {(int(o["x"] * 2 // size), int(o["y"] * 2 // size)) for o in objs}
        def clear(c):  # the new 11k box at the cell centre, 2k apart from every object's box
            cx, cy = (c % 2 + .5) * size / 2, (c // 2 + .5) * size / 2
            return all(abs(o["x"] - cx) > (o["size"] + 11 * k) / 2 + 2 * k or
                       abs(o["y"] - cy) > (o["size"] + 11 * k) / 2 + 2 * k for o in objs)
        free = [c for c in range(4) if (c % 2, c // 2) not in taken and clear(c)]
        if not free or len(objs) >= 4:
            return None
        used_s, used_c = {o["shape"] for o in objs}, {o["colour"] for o in objs}
        shapes = [s for s in SHAPES if s not in used_s] or SHAPES
        colours = [c for c in COLOURS if c not in used_c] or COLOURS
        sh, co = str(rng.choice(shapes)), str(rng.choice(colours))
        x, y = cell_centre(size, int(rng.choice(free)), rng, 0)
        new = obj(sh, co, x, y, 11 * k)
        objs.append(new)
        return f"add {article(co)} {co} {sh}", "add", objs, {"added": f"{co} {sh}"}
    # move: only single-object scenes, by a third of the image
    if len(objs) != 1:
        return None
    o = objs[0]
    step = size / 3
    options = []
    if o["x"] - step >= o["size"] / 2:
        options.append(("left", -step, 0))
    if o["x"] + step <= size - o["size"] / 2:
        options.append(("right", step, 0))
    if o["y"] - step >= o["size"] / 2:
        options.append(("up", 0, -step))
    if o["y"] + step <= size - o["size"] / 2:
        options.append(("down", 0, step))
    if not options:
        return None
    d, dx, dy = options[int(rng.integers(len(options)))]
    o["x"], o["y"] = round(o["x"] + dx, 2), round(o["y"] + dy, 2)
    return f"move the {o['shape']} {d}", "move", objs, {"direction": d}


def fashion_edit(scene, rng):
    colours = [c for c in RECOLOURS if c != scene.get("colour")]
    new = str(rng.choice(colours))
    name = scene["class"]
    noun = "the trousers" if name == "trousers" else f"the {name}"
    return f"make {noun} {new}", new


# ---------------------------------------------------------------- text chat
CHAT_FIXED = [
    ("Hello", "Hello! Ask me about an image."),
    ("Hi", "Hello! Ask me about an image."),
    ("Who are you?", "I am a small Tuna-2 model."),
    ("What can you do?", "I can describe images, answer questions about them, draw and edit them."),
    ("What shapes do you know?", "circle, square, triangle and star"),
    ("What colours do you know?", "red, green, blue, yellow, purple, orange, white and black"),
    ("What clothes do you know?", ", ".join(FASHION[:-1]) + " and " + FASHION[-1]),
    ("Thank you", "You are welcome."),
]


def text_chat(rng):
    r = rng.random()
    if r < 0.2:
        return CHAT_FIXED[int(rng.integers(len(CHAT_FIXED)))]
    if r < 0.5:
        a, b = int(rng.integers(0, 10)), int(rng.integers(0, 10))
        return f"What is {a} plus {b}?", str(a + b)
    if r < 0.7:
        a, b = int(rng.integers(1, 5)), int(rng.integers(1, 5))
        lo, hi = min(a, b), max(a, b) + 1
        return f"Count from {lo} to {hi}.", " ".join(str(i) for i in range(lo, hi + 1))
    if r < 0.85:
        s = str(rng.choice(SHAPES))
        return f"What is the plural of {s}?", PLURAL[s]
    c = str(rng.choice(COLOURS))
    return f"Spell {c}.", " ".join(c.upper())


# ---------------------------------------------------------------- writer
class Writer:
    def __init__(self, out, split):
        self.out = out
        self.split = split
        self.dir = os.path.join(out, "images", split)
        os.makedirs(self.dir, exist_ok=True)
        self.n = 0

    def save(self, arr, tag):
        name = f"{tag}_{self.n:06d}.png"
        self.n += 1
        Image.fromarray(arr, "RGB").save(os.path.join(self.dir, name), optimize=False, compress_level=6)
        return f"images/{self.split}/{name}"


SCENE_MAKERS = {"single": scene_single, "pair": scene_pair, "count": scene_count, "multi": scene_multi,
                "text": scene_text}
SCENE_MIX = [("single", 0.2), ("pair", 0.25), ("count", 0.2), ("multi", 0.2), ("text", 0.15)]


def pick_kind(rng):
    r, acc = rng.random(), 0.0
    for k, p in SCENE_MIX:
        acc += p
        if r < acc:
            return k
    return SCENE_MIX[-1][0]


def render_scene(size, scene):
    if scene["kind"] == "text":
        return render_text(size, scene["text"], scene["text_colour"])
    return render_objects(size, scene["objects"])


def public_objects(objs):
    return [{"shape": o["shape"], "colour": o["colour"], "x": o["x"], "y": o["y"]} for o in objs]


def expect_of(scene):
    """What the judge checks for a generated image of this scene's caption."""
    kind = scene["kind"]
    if kind == "fashion":
        e = {"class": scene["class"]}
        if scene.get("colour"):
            e["colour"] = scene["colour"]
        return e
    if kind == "text":
        return {"text": scene["text"], "text_colour": scene["text_colour"]}
    e = {"objects": [{"shape": o["shape"], "colour": o["colour"]} for o in scene["objects"]]}
    if "relation" in scene:
        e["relation"] = scene["relation"]
    return e


def make_scene(size, rng, fashion, kind=None):
    kind = kind or pick_kind(rng)
    if kind == "fashion":
        x, y = fashion
        i = int(rng.integers(len(y)))
        colour = str(rng.choice(RECOLOURS)) if rng.random() < 0.5 else None
        name = FASHION[int(y[i])]
        return {"kind": "fashion", "objects": [], "class": name, "colour": colour, "index": i,
                "caption": fashion_caption(name, colour)}
    return SCENE_MAKERS[kind](size, rng)


def render_any(size, scene, fashion):
    if scene["kind"] == "fashion":
        return render_fashion(size, fashion[0][scene["index"]], scene["colour"])
    return render_scene(size, scene)


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False, sort_keys=False) + "\n")


def conv(question, answer):
    return [{"from": "human", "value": "<image>\n" + question}, {"from": "gpt", "value": answer}]


def build_train(args, rng, out, fashion):
    w = Writer(out, "train")
    t2i, und, edits, text = [], [], [], []
    total = args.scenes + args.fashion
    kinds = ["fashion"] * args.fashion + [None] * args.scenes
    order = rng.permutation(total)
    for n, k in enumerate(order):
        scene = make_scene(args.size, rng, fashion, kinds[k])
        img = render_any(args.size, scene, fashion)
        path = w.save(img, scene["kind"])
        t2i.append({"image": path, "caption": scene["caption"]})
        for q, a, typ in questions(scene, rng):
            und.append({"image": path, "conversations": conv(q, a), "type": typ})
        if rng.random() < args.edit_fraction:
            if scene["kind"] == "fashion":
                instr, new = fashion_edit(scene, rng)
                target = render_fashion(args.size, fashion[0][scene["index"]], new)
                edits.append({"raw_image": path, "out_image": w.save(target, "edit"), "instruction": instr,
                              "kind": "recolour"})
            elif scene["kind"] != "text":
                e = edit_of(scene, args.size, rng)
                if e:
                    instr, kind, objs, _ = e
                    target = render_objects(args.size, objs)
                    edits.append({"raw_image": path, "out_image": w.save(target, "edit"), "instruction": instr,
                                  "kind": kind})
        if (n + 1) % 5000 == 0:
            print(f"  train {n + 1}/{total}", file=sys.stderr)
    for _ in range(args.text):
        q, a = text_chat(rng)
        text.append({"conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}]})
    # Caption / instruction dropout for classifier-free guidance, done in the data (the trainer
    # skips empty captions): a copy of a --null-fraction share of the t2i and edit records
    # with the null text, so the model learns the unconditional branch that `tuna eval
    # --negative "an image"` (and tuna generate/edit --negative) asks for. Own random stream.
    null_rng = np.random.Generator(np.random.PCG64([args.seed, 2]))
    t2i += [dict(r, caption=NULL_CAPTION) for r in t2i if null_rng.random() < args.null_fraction]
    edits += [dict(r, instruction=NULL_CAPTION) for r in edits if null_rng.random() < args.null_fraction]
    write_jsonl(os.path.join(out, "t2i.jsonl"), t2i)
    write_jsonl(os.path.join(out, "understanding.jsonl"), und)
    write_jsonl(os.path.join(out, "edit.jsonl"), edits)
    write_jsonl(os.path.join(out, "text.jsonl"), text)
    return {"t2i": len(t2i), "understanding": len(und), "edit": len(edits), "text": len(text), "images": w.n}


def build_eval(args, rng, out, fashion):
    """Held-out task files; each line carries its ground truth so `tuna eval --ground-truth`
    can check the judges on it."""
    w = Writer(out, "eval")
    und, gen, edits, rec = [], [], [], []
    kinds = ["single", "pair", "count", "multi", "text", "fashion"]
    per = max(1, args.eval_per_kind)
    for kind in kinds:
        for i in range(per):
            scene = make_scene(args.size, rng, fashion, kind)
            img = render_any(args.size, scene, fashion)
            path = w.save(img, scene["kind"])
            category = {"single": "single", "pair": "position", "count": "count", "multi": "attribution",
                        "text": "text", "fashion": "fashion"}[kind]
            if kind == "fashion" and scene.get("colour"):
                category = "fashion_colour"
            gen.append({"task": "generate", "id": f"gen-{kind}-{i}", "prompt": scene["caption"],
                        "category": category, "expect": expect_of(scene), "image": path})
            qs = questions(scene, rng)
            q, a, typ = qs[int(rng.integers(len(qs)))]
            und.append({"task": "understand", "id": f"und-{kind}-{i}", "image": path, "question": q,
                        "answer": a, "type": typ})
            if i < per // 2:
                rec.append({"task": "reconstruct", "id": f"rec-{kind}-{i}", "image": path})
            if kind in ("single", "pair", "count", "multi"):
                e = edit_of(scene, args.size, rng)
                if e:
                    instr, ekind, objs, _ = e
                    target = render_objects(args.size, objs)
                    edits.append({"task": "edit", "id": f"edit-{ekind}-{len(edits)}", "image": path,
                                  "instruction": instr, "kind": ekind,
                                  "expect": {"objects": public_objects(objs)},
                                  "target": w.save(target, "edit")})
            elif kind == "fashion" and i % 2 == 0:
                instr, new = fashion_edit(scene, rng)
                target = render_fashion(args.size, fashion[0][scene["index"]], new)
                edits.append({"task": "edit", "id": f"edit-recolour-{len(edits)}", "image": path,
                              "instruction": instr, "kind": "recolour",
                              "expect": {"class": scene["class"], "colour": new},
                              "target": w.save(target, "edit")})
    # real test images: the real side of the Frechet distance
    x, y = fashion
    idx = rng.choice(len(y), min(args.eval_reference, len(y)), replace=False)
    refs = []
    for i in sorted(idx.tolist()):
        path = w.save(render_fashion(args.size, x[i], None), "real")
        refs.append({"task": "reference", "id": f"real-{i}", "image": path, "class": FASHION[int(y[i])]})
    ed = os.path.join(out, "eval")
    os.makedirs(ed, exist_ok=True)
    # task files live in eval/: paths are relative to the dataset root, given by "root"
    files = {"understand.jsonl": und, "generate.jsonl": gen + refs, "edit.jsonl": edits,
             "reconstruct.jsonl": rec}
    for name, rows in files.items():
        write_jsonl(os.path.join(ed, name), [dict(r, image=os.path.join("..", r["image"]),
                                                   **({"target": os.path.join("..", r["target"])}
                                                      if "target" in r else {})) for r in rows])
    write_jsonl(os.path.join(ed, "all.jsonl"),
                [dict(r, image=os.path.join("..", r["image"]),
                      **({"target": os.path.join("..", r["target"])} if "target" in r else {}))
                 for rows in files.values() for r in rows])
    return {"understand": len(und), "generate": len(gen), "reference": len(refs), "edit": len(edits),
            "reconstruct": len(rec), "images": w.n}


def main():
    global FASHION_DIR
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="out/dataset")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=32, help="image side in pixels (default 32)")
    ap.add_argument("--scenes", type=int, default=30000, help="synthetic training scenes")
    ap.add_argument("--fashion", type=int, default=20000, help="Fashion-MNIST training items (of 60000)")
    ap.add_argument("--text", type=int, default=3000, help="text-only chat samples")
    ap.add_argument("--null-fraction", type=float, default=0.1,
                    help='share of t2i/edit records copied with the null text "an image" (guidance)')
    ap.add_argument("--edit-fraction", type=float, default=0.4, help="share of training images with an edit")
    ap.add_argument("--eval-per-kind", type=int, default=50, help="held-out items per scene kind")
    ap.add_argument("--eval-reference", type=int, default=1000, help="real test images for the FD")
    ap.add_argument("--fashion-dir", default="/usr/share/datasets/fashion-mnist")
    args = ap.parse_args()
    if args.size < 16:
        sys.exit("--size must be >= 16")
    FASHION_DIR = args.fashion_dir
    out = args.out
    os.makedirs(out, exist_ok=True)
    # two independent streams: the held-out split does not depend on the training flags
    train_rng = np.random.Generator(np.random.PCG64([args.seed, 0]))
    eval_rng = np.random.Generator(np.random.PCG64([args.seed, 1]))
    train = build_train(args, train_rng, out, load_fashion("train"))
    held = build_eval(args, eval_rng, out, load_fashion("test"))
    manifest = {"seed": args.seed, "size": args.size, "palette": dict(PALETTE), "background": BACKGROUND,
                "shapes": SHAPES, "fashion_classes": FASHION, "train": train, "eval": held,
                "flags": {k: v for k, v in vars(args).items() if k != "out"}}
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(json.dumps({"train": train, "eval": held}))


if __name__ == "__main__":
    main()
