#!/usr/bin/env python3
"""ViTMatte on big images: time per megapixel of unknown band, and peak memory, side by side.

Ours above 1024²: the model at the image's own resolution, in 1024² windows over the trimap's unknown band only
(families/vitmatte.py, imaging/windows.py). Against rembg's way on the same image: the whole image and trimap squeezed
to 1024², one run, the alpha resized back (which our family does up to 1024²: ``squeezed``). The graph is ViTMatte-S
(transformers' VitMatteForImageMatting, hustvl's small configuration, random weights, exported at 1024² as rembg's
checkpoints were: tests/support/vitmatte_graphs.py); the time of a window is the real architecture's, the alpha is not
meaningful. Each row runs in a fresh process on ONNX Runtime's CPU provider: a photo scaled to the size, a soft-edged
subject (skimage's horse, blurred in proportion to the image) filling the frame or small in one corner.

Memory: the process's peak resident memory is reset (``/proc/self/clear_refs``) once the image, its mask and the model
are loaded, and read after the refiner ran: "refiner peak" is what the refiner itself added at its highest (windows,
the blend's strip, its trimap and output), "process peak" the whole process's peak including the image. Ours should
stay near the same refiner peak at 6000×4000 as at 3000×2000 (bounded by the windows and one strip, not the image).

    bash benchmarks/run.sh bench_vitmatte          # needs transformers and torch (to export the graph once)
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROWS = [  # (label, width, height, subject, how)
    ("6000×4000, subject fills the frame", 6000, 4000, "full", "windows"),
    ("6000×4000, small subject in a corner", 6000, 4000, "corner", "windows"),
    ("3000×2000, subject fills the frame", 3000, 2000, "full", "windows"),
    ("6000×4000, rembg's way (squeezed to 1024²)", 6000, 4000, "full", "squeezed"),
]


def graph() -> Path:
    from support import vitmatte_graphs

    return vitmatte_graphs.exported("small")


def scene(width: int, height: int, subject: str):
    """(RGB PIL image, uint8 mask): a photo scaled to the size, a blurred horse filling it or in its top-left third."""
    import cv2
    import numpy as np
    from PIL import Image
    from skimage import data

    image = Image.fromarray(data.astronaut()).resize((width, height), Image.Resampling.BILINEAR)
    horse = (~data.horse()).astype(np.uint8) * 255
    mask = np.zeros((height, width), np.uint8)
    w, h = (width, height) if subject == "full" else (width // 3, height // 3)
    mask[:h, :w] = cv2.resize(horse, (w, h), interpolation=cv2.INTER_AREA)
    return image, cv2.GaussianBlur(mask, (0, 0), max(width, height) / 300)


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def one(width: int, height: int, subject: str, how: str, path: str) -> dict:
    """In this (fresh) process: the refiner on one scene; seconds, windows, band and memory."""
    import numpy as np

    from remove_background import RemovalOptions, catalog
    from remove_background.backends import models, routes
    from remove_background.imaging.matting import trimap
    from remove_background.imaging.windows import Windows

    image, mask = scene(width, height, subject)
    pixels = np.asarray(image)
    info = catalog.REFINERS[catalog.VITMATTE_PREFIX + catalog.DEFAULT_VITMATTE]
    model = models.create_model(info, [Path(path)], routes.plan_providers("cpu"))
    matting = RemovalOptions().matting
    band = trimap(mask, matting) == 128
    grid = Windows(height, width, info.input_size, 256)
    before = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts again from here
    t0 = time.perf_counter()
    if how == "windows":
        alpha = model.family.refine(model, image, pixels, mask, matting)
    else:
        alpha = model.family.squeezed(model, image, trimap(mask, matting))
    seconds = time.perf_counter() - t0
    assert alpha.shape == mask.shape
    return dict(seconds=seconds, band_mp=band.sum() / 1e6, windows=len(grid.wanted(band)) if how == "windows" else 1,
                grid=len(grid.tops) * len(grid.lefts), refiner_peak=_status("VmHWM") - before,
                process_peak=_status("VmHWM"))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        width, height, subject, how, path = sys.argv[2:7]
        print(json.dumps(one(int(width), int(height), subject, how, path)))
        return
    path = graph()
    print(f"ViTMatte-S graph: {path.name} ({path.stat().st_size / 1e6:.0f} MB), ONNX Runtime CPU, one process per row")
    results = []
    for label, width, height, subject, how in ROWS:
        done = subprocess.run([sys.executable, __file__, "--one", str(width), str(height), subject, how, str(path)],
                              capture_output=True, text=True, check=True)
        results.append((label, json.loads(done.stdout.strip().splitlines()[-1])))
    base = results[0][1]
    print(f"{'':44} {'band MP':>8} {'windows':>9} {'seconds':>8} {'s/MP band':>10} {'refiner peak':>13} "
          f"{'process peak':>13} {'time vs first':>14}")
    for label, r in results:
        per_mp = r["seconds"] / r["band_mp"] if r["band_mp"] else float("nan")
        print(f"{label:44} {r['band_mp']:8.2f} {r['windows']:>4}/{r['grid']:<4} {r['seconds']:8.1f} {per_mp:10.1f} "
              f"{r['refiner_peak'] / 2**20:10.0f} MB {r['process_peak'] / 2**20:10.0f} MB "
              f"{r['seconds'] / base['seconds']:13.2f}x")
    ours, small = results[0][1], results[2][1]
    print(f"refiner peak, 6000×4000 over 3000×2000 (4x the pixels): {ours['refiner_peak'] / small['refiner_peak']:.2f}x")


if __name__ == "__main__":
    main()
