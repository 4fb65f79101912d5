"""README picture: one edge of a small subject (10 % of a 2048² frame) with edge detail standard and high, real
u2netp, over a checkerboard, next to the exact truth. Writes .readme/edge-detail.png.

    PYTHONPATH=tests python -m support.make_edge_detail_picture MODELS_DIR     # in the project venv
"""

from __future__ import annotations

import sys

import numpy as np
from PIL import Image, ImageDraw

from remove_background import remove
from support import ROOT
from support.detail_scenes import make_scene


def on_checkerboard(rgba: np.ndarray) -> Image.Image:
    h, w = rgba.shape[:2]
    yy, xx = np.mgrid[:h, :w]
    board = np.where(((yy // 8) + (xx // 8)) % 2, 200, 255).astype(np.float32)[..., None]
    a = rgba[..., 3:4].astype(np.float32) / 255
    return Image.fromarray((rgba[..., :3] * a + board * (1 - a)).astype(np.uint8))


def main(models_dir: str) -> None:
    frame = 2048
    image, truth = make_scene("horse-cat", frame, 0.1)
    ys, xs = np.nonzero(truth > 0.5)
    cy, cx, half = int(ys.min() + 30), int(xs.mean()), 60  # a window on the top edge of the subject
    box = (cx - half, cy - half, cx + half, cy + half)
    panels = []
    for label, alpha in [
        ("standard", np.asarray(remove(image, model="u2netp", models_dir=models_dir).mask)),
        ("high", np.asarray(remove(image, model="u2netp", edge_detail="high", models_dir=models_dir).mask)),
        ("true alpha", (truth * 255 + 0.5).astype(np.uint8)),
    ]:
        rgba = np.dstack([np.asarray(image), alpha])[box[1]:box[3], box[0]:box[2]]
        panel = on_checkerboard(rgba).resize((360, 360), Image.Resampling.NEAREST)
        ImageDraw.Draw(panel).text((8, 8), label, fill=(0, 0, 0))
        panels.append(panel)
    out = Image.new("RGB", (360 * 3 + 20, 360), "white")
    for i, panel in enumerate(panels):
        out.paste(panel, (i * 370, 0))
    out.save(ROOT / ".readme" / "edge-detail.png")
    print(ROOT / ".readme" / "edge-detail.png")


if __name__ == "__main__":
    main(sys.argv[1])
