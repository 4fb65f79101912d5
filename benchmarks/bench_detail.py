"""Edge detail "high" against the single pass, on scenes whose true alpha is known exactly.

Each scene (tests/support/detail_scenes.py) composites a foreground over another real photo: skimage's horse
silhouette (drawn at the target size with a soft 2-pixel edge) filled with a photo texture, or skimage's astronaut
cut out with the model's own mask of it (that mask, scaled, *is* the true alpha of the composite). Subjects are
small (about 10 % of the frame's side, in 2048² and 4096² frames) or large (about 80 %, at 1024², 2048², 4096²).
Nothing is downloaded but the model (``support.fetch_weights``).

Metrics (true alpha in 0..1, the mask /255): MAE of alpha; IoU of the masks at 0.5; boundary error: MAE of alpha
in the band within BAND px of the true edge; boundary F-measure: F of the 0.5 contours' pixels matched within TOL
px (pysodmetrics has no boundary F-measure, and its MAE and IoU binarise the truth, so these are computed here in
NumPy). Times are medians of --repeats interleaved runs of the whole mask step (model input, model, mask at full
size; plus the detail pass for "high").

    bash benchmarks/run.sh bench_detail --models-dir DIR [--models u2netp,u2net] [--sizes 1024,2048,4096]
        [--repeats 3] [--scenes horse-cat,horse-coffee,astronaut]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from PIL import Image

from support.detail_scenes import LARGE, SMALL, crop_run, make_scene, metrics, single_pass


# ------------------------------------------------------------------------------------------------ the two modes


def high(loaded, rgb: Image.Image) -> np.ndarray:
    from remove_background.imaging.detail import detailed_mask

    low, full = single_pass(loaded, rgb)
    return detailed_mask(rgb, low, full, run=crop_run(loaded))


def load(model: str, models_dir: str):
    from remove_background.pipeline import load_model

    return load_model(model, "cpu", models_dir, allow_download=False)


def cases(sizes: list[int]) -> list[tuple[str, int, float]]:
    out = [("small", s, SMALL) for s in sizes if s >= 2048]
    out += [("large", s, LARGE) for s in sizes]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models-dir", required=True)
    ap.add_argument("--models", default="u2netp,u2net")
    ap.add_argument("--sizes", default="1024,2048,4096")
    ap.add_argument("--scenes", default="horse-cat,horse-coffee,astronaut")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per case and mode (median)")
    ap.add_argument("--per-scene", action="store_true", help="a row per scene as well (no times)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    scenes = args.scenes.split(",")

    header = (
        f"{'model':7} {'subject':16} {'size':>5} | {'MAE std':>8} {'high':>8} | {'IoU std':>7} {'high':>7} | "
        f"{'B-err std':>9} {'high':>7} {'Δ':>5} | {'BF std':>6} {'high':>6} | {'ms std':>6} {'high':>6} {'x':>5}"
    )
    print(header)
    print("-" * len(header))
    truth_loaded = load("u2net", args.models_dir) if "astronaut" in scenes else None

    def truth_mask(img):  # the astronaut's true alpha: u2net's mask of the original photo
        return single_pass(truth_loaded, img)[1].copy()

    for model in args.models.split(","):
        loaded = load(model, args.models_dir)

        for kind, size, subject in cases(sizes):
            scores = {"std": [], "high": []}
            times = {"std": [], "high": []}
            for scene in scenes:
                rgb, alpha = make_scene(scene, size, subject, truth_mask)
                masks = {"std": single_pass(loaded, rgb)[1], "high": high(loaded, rgb)}
                for mode in masks:
                    scores[mode].append(metrics(masks[mode], alpha))
                if scene == scenes[0]:  # time on the first scene, modes interleaved
                    for _ in range(args.repeats):
                        for mode, fn in (("std", single_pass), ("high", high)):
                            t = time.perf_counter()
                            fn(loaded, rgb)
                            times[mode].append(time.perf_counter() - t)
            avg = {m: {k: float(np.mean([s[k] for s in scores[m]])) for k in scores[m][0]} for m in scores}
            ms = {m: statistics.median(times[m]) * 1000 for m in times}
            if args.per_scene:
                for i, scene in enumerate(scenes):
                    print(row(model, f"{kind[0]}:{scene}", size, scores["std"][i], scores["high"][i]))
            print(row(model, kind, size, avg["std"], avg["high"], ms), flush=True)


def row(model: str, kind: str, size: int, s: dict, h: dict, ms=None) -> str:
    gain = 1 - h["berr"] / s["berr"] if s["berr"] else 0.0
    line = (
        f"{model:7} {kind:16} {size:>4}² | {s['mae']:8.5f} {h['mae']:8.5f} | {s['iou']:7.4f} {h['iou']:7.4f} | "
        f"{s['berr']:9.4f} {h['berr']:7.4f} {-gain * 100:+4.0f}% | {s['bf']:6.3f} {h['bf']:6.3f} |"
    )
    if ms:
        line += f" {ms['std']:6.0f} {ms['high']:6.0f} {ms['high'] / ms['std']:4.2f}x"
    return line


if __name__ == "__main__":
    main()
