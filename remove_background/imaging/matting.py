"""Bounded alpha matting and foreground colour decontamination (pymatting), for any image size.

rembg runs closed-form matting on the whole image at full resolution, which
users report taking minutes and tens of GB on 4K images. Here both steps work
only on the bounding box of the uncertain edge band, at a capped working
resolution, and paste the result back: known pixels stay exact, and time and
memory stay bounded whatever the image size.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

MATTING_MAX_PIXELS = 600_000  # working-resolution budget of the closed-form solve
FOREGROUND_MAX_PIXELS = 2_000_000
MARGIN = 16


@dataclass(frozen=True)
class MattingOptions:
    """Alpha matting parameters, taken from ``options.RemovalOptions`` (where defaults and bounds live)."""

    enabled: bool
    foreground_threshold: int
    background_threshold: int
    erode_size: int


def trimap(mask: np.ndarray, options: MattingOptions) -> np.ndarray:
    """255 = sure foreground, 0 = sure background, 128 = unknown: rembg's construction (its alpha matting and its
    ViTMatte alike), scipy's ``binary_erosion`` done with OpenCV (equal, tested). As in scipy, erode size 0 is not "no
    erosion" but scipy's default structure, a 3×3 cross: the sure regions still shrink by one pixel. The foreground
    erodes from the image's border too; the background does not (``border_value=1``)."""
    import cv2

    fg = (mask > options.foreground_threshold).astype(np.uint8)
    bg = (mask < options.background_threshold).astype(np.uint8)
    size = options.erode_size
    kernel = np.ones((size, size), np.uint8) if size > 0 else cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    fg = cv2.erode(fg, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    bg = cv2.erode(bg, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=1)
    out = np.full(mask.shape, 128, np.uint8)
    out[fg.astype(bool)] = 255
    out[bg.astype(bool)] = 0
    return out


def _band_box(band: np.ndarray, margin: int) -> tuple[slice, slice]:
    ys, xs = np.nonzero(band.any(axis=1))[0], np.nonzero(band.any(axis=0))[0]
    h, w = band.shape
    return (slice(max(ys[0] - margin, 0), min(ys[-1] + margin + 1, h)),
            slice(max(xs[0] - margin, 0), min(xs[-1] + margin + 1, w)))


def _work_size(shape: tuple[int, int], max_pixels: int) -> tuple[int, int]:
    """(width, height) to solve at: the crop's own size, scaled down to at most ``max_pixels``."""
    area = shape[0] * shape[1]
    scale = 1.0 if area <= max_pixels else (max_pixels / area) ** 0.5
    return max(int(round(shape[1] * scale)), 1), max(int(round(shape[0] * scale)), 1)


def _resize(a: np.ndarray, size_wh: tuple[int, int], nearest: bool = False) -> np.ndarray:
    import cv2

    if (a.shape[1], a.shape[0]) == size_wh:
        return a
    interp = cv2.INTER_NEAREST if nearest else (cv2.INTER_AREA if size_wh[0] < a.shape[1] else cv2.INTER_LINEAR)
    return cv2.resize(a, size_wh, interpolation=interp)


def alpha_matte(rgb: np.ndarray, mask: np.ndarray, options: MattingOptions,
                max_pixels: int = MATTING_MAX_PIXELS) -> np.ndarray:
    """Closed-form alpha on the unknown band; falls back to ``mask`` (with a warning) if pymatting fails."""
    tri = trimap(mask, options)
    unknown = tri == 128
    if not unknown.any():
        return tri
    if not (tri == 255).any() or not (tri == 0).any():
        log.warning("remove-background: alpha matting skipped: the trimap has no %s; using the plain mask.",
                    "foreground" if not (tri == 255).any() else "background")
        return mask
    ys, xs = _band_box(unknown, MARGIN)
    crop_rgb, crop_tri = rgb[ys, xs], tri[ys, xs]
    size = _work_size(crop_tri.shape, max_pixels)
    work_rgb = _resize(crop_rgb, size).astype(np.float64) / 255.0
    work_tri = _resize(crop_tri, size, nearest=True).astype(np.float64) / 255.0
    try:
        from pymatting.alpha.estimate_alpha_cf import estimate_alpha_cf

        work_alpha = estimate_alpha_cf(work_rgb, work_tri)
    except Exception as e:  # pymatting raises plain ValueErrors and linear-algebra errors
        log.warning("remove-background: alpha matting failed (%s: %s); using the plain mask.", type(e).__name__, e)
        return mask
    alpha = _resize(np.clip(work_alpha * 255.0 + 0.5, 0, 255).astype(np.uint8), (crop_tri.shape[1], crop_tri.shape[0]))
    out = tri.copy()
    region = out[ys, xs]
    band = crop_tri == 128
    region[band] = alpha[band]
    return out


def decontaminate(rgb: np.ndarray, alpha: np.ndarray, max_pixels: int = FOREGROUND_MAX_PIXELS) -> np.ndarray:
    """Estimate the true foreground colour where 0 < alpha < 255 (pymatting's multilevel method).

    Opaque pixels keep their colour exactly; only the soft edge band changes.
    """
    band = (alpha > 0) & (alpha < 255)
    if not band.any():
        return rgb
    ys, xs = _band_box(band, MARGIN)
    crop_rgb, crop_alpha = rgb[ys, xs], alpha[ys, xs]
    size = _work_size(crop_alpha.shape, max_pixels)
    try:
        from pymatting.foreground.estimate_foreground_ml import estimate_foreground_ml

        fg = estimate_foreground_ml(_resize(crop_rgb, size).astype(np.float64) / 255.0,
                                    _resize(crop_alpha, size).astype(np.float64) / 255.0)
    except Exception as e:
        log.warning("remove-background: colour decontamination failed (%s: %s); keeping the original colours.",
                    type(e).__name__, e)
        return rgb
    fg8 = _resize(np.clip(fg * 255.0 + 0.5, 0, 255).astype(np.uint8), (crop_alpha.shape[1], crop_alpha.shape[0]))
    out = rgb.copy()
    region = out[ys, xs]
    crop_band = band[ys, xs]
    region[crop_band] = fg8[crop_band]
    return out
