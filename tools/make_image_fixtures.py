#!/usr/bin/env python3
"""Writes tests/fixtures/image/: small PNG/JPEG files of every colour type and,
for each, what the reference's loader makes of it (PIL Image.open(f).convert("RGB"),
as tuna/data/datasets/*.py and tuna/inference/runner.py do), saved as RGB PNG
`<name>.expected.png`; resize+crop expectations; tensor conversion tables; and
PSNR/SSIM values from skimage.

Needs: numpy, Pillow, scikit-image, torch (for the ToTensor/Normalize and denorm
tables). Run from the repository root:  python3 tools/make_image_fixtures.py

Exotic PNGs (2/4-bit gray, 16-bit, gray+alpha 16, Adam7 interlace) are written
by the small encoder below, since PIL cannot write them; PIL still decodes them
to produce the expectations.
"""
import io
import math
import os
import struct
import zlib

import numpy as np
from PIL import Image
from skimage.metrics import structural_similarity
import torch

OUT = "tests/fixtures/image"
rng = np.random.default_rng(1234)


def photo(h, w):
    """A smooth, textured RGB test picture (gradients, waves, a disc, mild noise)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 128 + 100 * np.sin(x / 5.0) * np.cos(y / 7.0)
    g = 255 * x / max(w - 1, 1)
    b = 255 * y / max(h - 1, 1)
    disc = (x - w * 0.6) ** 2 + (y - h * 0.4) ** 2 < (min(h, w) * 0.25) ** 2
    img = np.stack([r, g, b], -1)
    img[disc] = [250, 20, 60]
    img += rng.normal(0, 3, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# ---- a minimal PNG encoder for what PIL cannot write ----------------------------
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def pack_rows(samples, bit_depth):
    """samples: [h, w, c] integer array -> list of raw row bytes (no filter byte)."""
    h, w, c = samples.shape
    rows = []
    for yy in range(h):
        flat = samples[yy].reshape(-1)
        if bit_depth == 16:
            rows.append(flat.astype(">u2").tobytes())
        elif bit_depth == 8:
            rows.append(flat.astype(np.uint8).tobytes())
        else:
            per = 8 // bit_depth
            out = bytearray((len(flat) * bit_depth + 7) // 8)
            for i, v in enumerate(flat):
                out[i // per] |= int(v) << (8 - bit_depth * (i % per + 1))
            rows.append(bytes(out))
    return rows


def write_png(path, samples, bit_depth, color_type, interlace=False, extra=b""):
    h, w, _ = samples.shape
    if interlace:
        raw = b""
        for xs, ys, dx, dy in [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
                               (0, 1, 1, 2)]:
            sub = samples[ys::dy, xs::dx]
            if sub.shape[0] and sub.shape[1]:
                raw += b"".join(b"\0" + r for r in pack_rows(sub, bit_depth))
    else:
        raw = b"".join(b"\0" + r for r in pack_rows(samples, bit_depth))
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 1 if interlace else 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(data)


def expect(name):
    """What the reference loader produces: PIL open + convert("RGB")."""
    with Image.open(os.path.join(OUT, name)) as im:
        im.load()
        rgb = im.convert("RGB")
    base = name.rsplit(".", 1)[0]
    rgb.save(os.path.join(OUT, base + ".expected.png"))
    return np.asarray(rgb)


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))
    H, W = 29, 37
    base = photo(H, W)
    gray = (base.astype(np.float64) @ [0.299, 0.587, 0.114]).round().astype(np.uint8)
    alpha = (np.arange(H * W).reshape(H, W) * 7 % 256).astype(np.uint8)

    Image.fromarray(base).save(f"{OUT}/rgb8.png")
    Image.fromarray(gray).save(f"{OUT}/gray8.png")
    Image.fromarray(gray).convert("1").save(f"{OUT}/gray1.png")
    write_png(f"{OUT}/gray4.png", (gray >> 4)[..., None], 4, 0)
    write_png(f"{OUT}/gray2.png", (gray >> 6)[..., None], 2, 0)
    write_png(f"{OUT}/gray16.png", (gray.astype(np.uint16) * 257 + 3)[..., None], 16, 0)
    Image.fromarray(np.dstack([gray, alpha]), "LA").save(f"{OUT}/graya8.png")
    write_png(f"{OUT}/graya16.png", np.dstack([gray.astype(np.uint16) * 257, alpha.astype(np.uint16) * 257]), 16, 4)
    Image.fromarray(np.dstack([base, alpha]), "RGBA").save(f"{OUT}/rgba8.png")
    write_png(f"{OUT}/rgb16.png", base.astype(np.uint16) * 256 + 200, 16, 2)
    write_png(f"{OUT}/rgba16.png", np.dstack([base, alpha]).astype(np.uint16) * 257, 16, 6)
    write_png(f"{OUT}/rgb8_interlaced.png", base, 8, 2, interlace=True)
    write_png(f"{OUT}/gray8_trns.png", gray[..., None], 8, 0, extra=chunk(b"tRNS", struct.pack(">H", int(gray[0, 0]))))
    pal = Image.fromarray(base).quantize(colors=64, dither=Image.Dither.NONE)
    pal.save(f"{OUT}/pal8.png")
    pal_t = pal.copy()
    pal_t.info["transparency"] = bytes([0, 128] + [255] * 10)
    pal_t.save(f"{OUT}/pal8_trns.png", transparency=bytes([0, 128] + [255] * 10))
    Image.fromarray(base).quantize(colors=16, dither=Image.Dither.NONE).save(f"{OUT}/pal4.png", bits=4)

    # JPEGs: PIL writes them (libjpeg-turbo); the expectation is PIL's decode.
    Image.fromarray(base).save(f"{OUT}/rgb420.jpg", quality=90)
    Image.fromarray(base).save(f"{OUT}/rgb444.jpg", quality=90, subsampling=0)
    Image.fromarray(base).save(f"{OUT}/progressive.jpg", quality=85, progressive=True)
    Image.fromarray(gray).save(f"{OUT}/gray.jpg", quality=90)
    Image.fromarray(base).convert("CMYK").save(f"{OUT}/cmyk.jpg", quality=90)

    names = sorted(n for n in os.listdir(OUT) if not n.endswith(".expected.png"))
    for n in names:
        expect(n)
    with open(f"{OUT}/decode_cases.txt", "w") as f:
        for n in names:
            f.write(n + "\n")

    # ---- resize + crop: the reference recipes, on a larger source ------------------
    src = photo(61, 97)
    Image.fromarray(src).save(f"{OUT}/resize_src.png")
    src_t = np.ascontiguousarray(src.transpose(1, 0, 2))  # 97 x 61, portrait
    Image.fromarray(src_t).save(f"{OUT}/resize_src_tall.png")
    cases = []

    def cover(im, th, tw):  # runner.py _resize_center_crop, restated
        sw, sh = im.size
        s = max(tw / sw, th / sh)
        nw, nh = int(round(sw * s)), int(round(sh * s))
        im = im.resize((nw, nh), Image.BICUBIC)
        l, t = (nw - tw) // 2, (nh - th) // 2
        return im.crop((l, t, l + tw, t + th))

    def short_side(im, th, tw):  # torchvision Resize(min(H,W)) + CenterCrop((H,W)), restated
        sw, sh = im.size
        size = min(th, tw)
        short, long = (sw, sh) if sw <= sh else (sh, sw)
        ns, nl = size, int(size * long / short)
        nw, nh = (ns, nl) if sw <= sh else (nl, ns)
        if (nw, nh) != (sw, sh):
            im = im.resize((nw, nh), Image.BICUBIC)
        arr = np.asarray(im)
        pl = (tw - nw) // 2 if tw > nw else 0
        pt = (th - nh) // 2 if th > nh else 0
        pr = (tw - nw + 1) // 2 if tw > nw else 0
        pb = (th - nh + 1) // 2 if th > nh else 0
        arr = np.pad(arr, ((pt, pb), (pl, pr), (0, 0)))
        ph, pw = arr.shape[:2]
        top, left = int(round((ph - th) / 2.0)), int(round((pw - tw) / 2.0))
        return Image.fromarray(arr[top:top + th, left:left + tw])

    def plain(im, th, tw):
        return im.resize((tw, th), Image.BICUBIC)

    for srcname in ["resize_src.png", "resize_src_tall.png"]:
        im = Image.open(f"{OUT}/{srcname}").convert("RGB")
        for mode, fn in [("cover", cover), ("short", short_side), ("none", plain)]:
            for th, tw in [(32, 48), (48, 32), (40, 40), (24, 72), (72, 90), (61, 60), (7, 5)]:
                out = fn(im, th, tw)
                assert out.size == (tw, th)
                name = f"resize_{srcname[:-4]}_{mode}_{th}x{tw}.png"
                out.save(f"{OUT}/{name}")
                cases.append(f"{srcname} {mode} {th} {tw} {name}")
    with open(f"{OUT}/resize_cases.txt", "w") as f:
        f.write("\n".join(cases) + "\n")

    # ---- tensors: torchvision ToTensor + Normalize(0.5, 0.5) and pipelines denorm --------
    v = torch.arange(256, dtype=torch.uint8).float().div(255)
    v = (v - torch.tensor(0.5)) / torch.tensor(0.5)
    v.numpy().astype("<f4").tofile(f"{OUT}/to_tensor_table.f32")
    xs = np.concatenate([rng.uniform(-1.3, 1.3, 2000), np.linspace(-1, 1, 511),
                         [-1, 1, 0, -1.0000001, 1.0000001, 0.99999, -0.99999]]).astype(np.float32)
    t = torch.from_numpy(xs)
    u8 = (torch.clamp((t + 1.0) / 2.0, min=0.0, max=1.0).to(torch.float32) * 255.0).numpy().astype(np.uint8)
    xs.astype("<f4").tofile(f"{OUT}/from_tensor_in.f32")
    u8.tofile(f"{OUT}/from_tensor_out.u8")

    # ---- metrics: skimage on a pair -----------------------------------------------------
    a = photo(45, 53)
    b = np.clip(a.astype(np.int16) + rng.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
    b[10:20, 10:30] = 0
    Image.fromarray(a).save(f"{OUT}/metric_a.png")
    Image.fromarray(b).save(f"{OUT}/metric_b.png")
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    psnr = 10 * math.log10(255.0 ** 2 / mse)
    ssim = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                 data_range=255, channel_axis=2)
    with open(f"{OUT}/metrics.txt", "w") as f:
        f.write(f"psnr {psnr:.17g}\nssim {ssim:.17g}\n")

    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f"wrote {len(os.listdir(OUT))} files, {total} bytes, psnr {psnr:.6f} ssim {ssim:.9f}")


if __name__ == "__main__":
    main()
