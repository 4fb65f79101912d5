"""Test images: a scene whose true alpha is exact (skimage's horse), the same scene in every PIL mode, PNG bytes."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def horse_scene(texture: str = "coffee", background=(235, 235, 235)):
    """A known silhouette (skimage's horse) filled with a photo texture over a flat background.

    Returns (RGB PIL image, boolean truth mask). The true alpha is exact.
    """
    from skimage import data

    truth = ~data.horse()
    h, w = truth.shape
    tex = np.asarray(Image.fromarray(getattr(data, texture)()).resize((w, h)))
    img = np.empty((h, w, 3), np.uint8)
    img[:] = background
    img[truth] = tex[truth]
    return Image.fromarray(img), truth


def scene_in_mode(mode: str) -> Image.Image:
    """The horse scene in PIL ``mode`` (and "P+transparency": a palette image that declares a transparent index)."""
    rgb, _ = horse_scene()
    if mode == "P":
        return rgb.convert("P", palette=Image.Palette.ADAPTIVE)
    if mode == "P+transparency":
        p = rgb.convert("P", palette=Image.Palette.ADAPTIVE)
        p.info["transparency"] = 255  # an unused index: transparency declared, nothing actually transparent
        return p
    if mode == "PA":
        return rgb.convert("RGBA").convert("PA")
    if mode == "I;16":
        return Image.fromarray(np.asarray(rgb.convert("L")).astype(np.uint16) * 257)  # mode I;16
    if mode == "I":
        return Image.fromarray(np.asarray(rgb.convert("L")).astype(np.int32) * 1000, "I")
    if mode == "F":
        return Image.fromarray(np.asarray(rgb.convert("L")).astype(np.float32) / 255.0, "F")
    return rgb.convert(mode)


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()
