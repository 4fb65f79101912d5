"""Scenes whose true alpha is known exactly, the edge metrics, and the pipeline's single mask pass: shared by
the edge-detail benchmark (benchmarks/bench_detail.py, which describes the scenes and metrics), its tests
(tests/test_detail.py) and the README's edge picture (support.make_edge_detail_picture).

Each scene composites a foreground over another real photo: skimage's horse silhouette (drawn at the target size
with a soft 2-pixel edge) filled with a photo texture, or skimage's astronaut cut out with the model's own mask
of it (that mask, scaled, *is* the true alpha of the composite).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

BAND = 5  # boundary error: pixels within this distance of the true 0.5 contour
TOL = 3  # boundary F-measure: contour pixels match within this distance
SMALL, LARGE = 0.10, 0.80  # subject side / frame side


# ------------------------------------------------------------------------------------------------ ground truth


def _photo(name: str) -> np.ndarray:
    from skimage import data

    img = getattr(data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, -1)
    return np.ascontiguousarray(img[..., :3])


def resize(img: np.ndarray, w: int, h: int) -> np.ndarray:
    import cv2

    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if w < img.shape[1] else cv2.INTER_CUBIC)


def horse_alpha(height: int) -> np.ndarray:
    """skimage's horse silhouette drawn ``height`` px tall (float32 0..1), with a soft edge about 2 px wide."""
    import cv2
    from skimage import data

    sil = (~data.horse()).astype(np.float32)
    sil = cv2.GaussianBlur(sil, (0, 0), 1.0)
    scale = height / sil.shape[0]
    width = int(round(sil.shape[1] * scale))
    if scale < 1:  # drawn at the silhouette's own size, then reduced (an area average keeps the edge soft)
        sharp = np.clip((sil - 0.5) * 1.25 + 0.5, 0.0, 1.0)
        return np.clip(cv2.resize(sharp, (width, height), interpolation=cv2.INTER_AREA), 0.0, 1.0)
    v = cv2.resize(sil, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip((v - 0.5) * (1.25 * scale) + 0.5, 0.0, 1.0).astype(np.float32)


def foreground(scene: str, height: int, model_mask=None) -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8, true alpha float32) of a foreground ``height`` px tall."""
    if scene.startswith("horse-"):
        alpha = horse_alpha(height)
        texture = {"cat": "chelsea", "coffee": "coffee"}[scene.split("-", 1)[1]]
        return resize(_photo(texture), alpha.shape[1], height), alpha
    if scene == "astronaut":
        rgb = _photo("astronaut")
        alpha = model_mask(Image.fromarray(rgb)).astype(np.float32) / 255
        w = int(round(rgb.shape[1] * height / rgb.shape[0]))
        return resize(rgb, w, height), np.clip(resize(alpha, w, height), 0, 1)
    raise ValueError(scene)


def background(scene: str, frame: int) -> np.ndarray:
    """A real photo with no object of its own (the subject must be the only salient thing), frame² float32:
    skimage's grass or brick texture, tinted, or the wooden table of skimage's coffee."""
    if scene == "horse-cat":
        img = _photo("grass").astype(np.float32) * np.float32([0.55, 0.85, 0.45])
    elif scene == "horse-coffee":
        img = _photo("brick").astype(np.float32) * np.float32([0.9, 0.6, 0.5])
    else:
        img = _photo("coffee")[250:400, 0:150].astype(np.float32)
    return resize(img, frame, frame)


def make_scene(scene: str, frame: int, subject: float, model_mask=None, at=(0.62, 0.58)):
    """Composite the scene's foreground (``subject`` × frame tall) over its background photo in a frame² image,
    centred at ``at`` (fractions of the frame). Returns (RGB PIL image, true alpha float32 frame×frame)."""
    fg, a = foreground(scene, int(round(subject * frame)), model_mask)
    bg = background(scene, frame)
    alpha = np.zeros((frame, frame), np.float32)
    h, w = a.shape
    y0 = int(np.clip(at[1] * frame - h / 2, 0, frame - h))
    x0 = int(np.clip(at[0] * frame - w / 2, 0, frame - w))
    alpha[y0 : y0 + h, x0 : x0 + w] = a[:, : min(w, frame - x0)]
    region = bg[y0 : y0 + h, x0 : x0 + w]
    region += a[..., None] * (fg.astype(np.float32) - region)
    return Image.fromarray(np.clip(bg + 0.5, 0, 255).astype(np.uint8)), alpha


# ------------------------------------------------------------------------------------------------ metrics


def _contour(binary: np.ndarray) -> np.ndarray:
    import cv2

    b = binary.astype(np.uint8)
    return (b - cv2.erode(b, np.ones((3, 3), np.uint8))).astype(bool)


def _distance_to(points: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.distanceTransform((~points).astype(np.uint8), cv2.DIST_L2, 3)


def metrics(mask: np.ndarray, alpha: np.ndarray) -> dict[str, float]:
    """MAE, IoU@0.5, boundary error (band MAE) and boundary F-measure of uint8 ``mask`` against true ``alpha``."""
    pred = mask.astype(np.float32) * np.float32(1 / 255)
    err = np.abs(pred - alpha)
    pb, tb = pred >= 0.5, alpha >= 0.5
    union = np.count_nonzero(pb | tb)
    iou = np.count_nonzero(pb & tb) / union if union else 1.0
    tc, pc = _contour(tb), _contour(pb)
    dist_true = _distance_to(tc)
    band = dist_true <= BAND
    band_mae = float(err[band].mean()) if band.any() else 0.0
    if tc.any() and pc.any():
        precision = np.count_nonzero(dist_true[pc] <= TOL) / np.count_nonzero(pc)
        recall = np.count_nonzero(_distance_to(pc)[tc] <= TOL) / np.count_nonzero(tc)
        bf = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    else:
        bf = float(tc.any() == pc.any())
    return {"mae": float(err.mean()), "iou": iou, "berr": band_mae, "bf": bf}


# ------------------------------------------------------------------------------------------------ the single pass


def crop_run(loaded):
    """The family's model run for a crop, as the detail pass makes it: crop -> model-size mask."""
    from remove_background.options import RemovalOptions

    return lambda crop: loaded.family.crop_mask(loaded, crop, RemovalOptions())


def single_pass(loaded, rgb: Image.Image):
    """The pipeline's single pass: (model-size mask, full-size mask)."""
    from remove_background.imaging.resample import upscale_mask

    low = crop_run(loaded)(rgb)
    return low, upscale_mask(low, *rgb.size)
