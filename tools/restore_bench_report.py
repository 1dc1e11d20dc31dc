#!/usr/bin/env python3
"""Table of tools/restore_bench.sh's results (stdlib only): each model's held-out
`tuna eval` scores as a percentage of the reference's, its probe loss, steps and
seconds; and recovery.png (understanding and generation recovery against minutes)
when Pillow is present.

    python3 tools/restore_bench_report.py OUT_DIR > OUT_DIR/results.md
"""
import json
import os
import sys

out = sys.argv[1]


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


ref = load(os.path.join(out, "ref.eval.json"))
if not ref:
    sys.exit("no reference scores in %s" % out)
names = sorted(n[:-len(".eval.json")] for n in os.listdir(out) if n.endswith(".eval.json"))
order = ["ref"] + [n for n in names if n.startswith("damaged")] + [n for n in names if n[0] == "k"]

def pct(model, key):
    if key not in ref or key not in model:
        return float("nan")
    r = ref[key]["overall"]
    return 100.0 * model[key]["overall"] / r if r else float("nan")

print("| model | CPU min | steps | trained params | peak RSS | probe loss | understanding | generation | editing | recon. PSNR |")
print("|---|---|---|---|---|---|---|---|---|---|")
points = []
for name in order:
    ev = load(os.path.join(out, name + ".eval.json"))
    if not ev:
        continue
    rep = load(os.path.join(out, name, "restore_report.json")) or {}
    minutes = rep.get("cpu_seconds", 0) / 60 if name[0] == "k" else 0
    loss = rep.get("probe_loss_restored", rep.get("probe_loss_damaged", float("nan"))) if rep else float("nan")
    steps = rep.get("steps", "-") if name[0] == "k" else "-"
    und, gen, edit = pct(ev, "understand"), pct(ev, "generate"), pct(ev, "edit")
    trained = "%.2fM" % (rep["trainable_parameters"] / 1e6) if name[0] == "k" else "-"
    rss = "%.0f MiB" % rep["peak_rss_mib"] if name[0] == "k" else "-"
    print("| %s | %s | %s | %s | %s | %.4f | %.1f%% | %.1f%% | %.1f%% | %.2f dB |" % (
        name, "%.1f" % minutes if minutes else "-", steps, trained, rss, loss, und, gen, edit,
        ev.get("reconstruct", {}).get("psnr", float("nan"))))
    if "restore-" in name:
        points.append((minutes, und, gen))

try:
    from PIL import Image, ImageDraw
except ImportError:
    sys.exit(0)
points.sort()
W, H, M = 480, 320, 40
img = Image.new("RGB", (W, H), "white")
d = ImageDraw.Draw(img)
tmax = max([p[0] for p in points] + [1.0])
def xy(t, v):
    return M + (W - 2 * M) * t / tmax, H - M - (H - 2 * M) * min(v, 120) / 120
d.line([xy(0, 0), xy(tmax, 0)], fill="black")
d.line([xy(0, 0), xy(0, 120)], fill="black")
d.line([xy(0, 100), xy(tmax, 100)], fill=(180, 180, 180))
for idx, colour in ((1, (200, 40, 40)), (2, (40, 40, 200))):
    pts = [xy(p[0], p[idx]) for p in points]
    if len(pts) > 1:
        d.line(pts, fill=colour, width=2)
    for x, y in pts:
        d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
d.text((M, 8), "recovery vs CPU minutes (red: understanding, blue: generation; % of reference)", fill="black")
img.save(os.path.join(out, "recovery.png"))
