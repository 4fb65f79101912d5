"""Make the README's before/after pictures with the real u2netp model.

    PYTHONPATH=tests python -m support.make_readme_pictures     # in the project venv
writes .readme/refinements.png and .readme/decontamination.png, and prints the
decontamination figure quoted in .readme/options.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from remove_background import remove
from remove_background.imaging import matting
from support import ROOT, fetch_weights

TILE = 256


def checker(size, step=16):
    yy, xx = np.mgrid[: size[1], : size[0]]
    c = np.where(((yy // step) + (xx // step)) % 2 == 0, 200, 150).astype(np.uint8)
    return Image.fromarray(np.dstack([c, c, c]), "RGB")


def over(image: Image.Image, background: Image.Image) -> Image.Image:
    out = background.convert("RGBA")
    out.alpha_composite(image.convert("RGBA"))
    return out.convert("RGB")


def labelled(image: Image.Image, text: str) -> Image.Image:
    tile = image.convert("RGB").resize((TILE, TILE), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (TILE, TILE + 22), "white")
    canvas.paste(tile, (0, 22))
    ImageDraw.Draw(canvas).text((6, 5), text, fill="black")
    return canvas


def grid(tiles, columns):
    rows = (len(tiles) + columns - 1) // columns
    out = Image.new("RGB", (columns * (TILE + 6), rows * (TILE + 28)), "white")
    for i, t in enumerate(tiles):
        out.paste(t, ((i % columns) * (TILE + 6), (i // columns) * (TILE + 28)))
    return out


def refinements(models: Path) -> Image.Image:
    from skimage import data

    photo = Image.fromarray(data.astronaut()).resize((384, 384), Image.Resampling.LANCZOS)
    variants = [
        ("soft mask (default)", {}),
        ("threshold 128", {"mask_threshold": 128}),
        ("grow +8 px", {"mask_grow": 8}),
        ("shrink -8 px", {"mask_grow": -8}),
        ("blur 6 px", {"mask_blur": 6}),
        ("post-process", {"post_process_mask": True}),
        ("alpha matting", {"alpha_matting": True}),
        ("invert", {"mask_invert": True}),
    ]
    tiles = [labelled(photo, "input")]
    for text, kwargs in variants:
        tiles.append(labelled(remove(photo, model="u2netp", models_dir=models, **kwargs).mask, text))
    tiles.append(labelled(over(remove(photo, models_dir=models).image, checker(photo.size)), "cut-out"))
    return grid(tiles, 5)


def decontamination() -> tuple[Image.Image, float, float]:
    """A soft-edged subject shot on green, moved onto magenta: naive vs decontaminated edge."""
    from skimage import data

    size, radius, ramp = 512, 180, 14.0
    yy, xx = np.mgrid[:size, :size]
    d = np.sqrt((yy - size / 2) ** 2 + (xx - size / 2) ** 2)
    alpha = (np.clip((radius - d) / ramp + 0.5, 0, 1) * 255).round().astype(np.uint8)
    fg = np.asarray(Image.fromarray(data.coffee()).resize((size, size))).astype(np.float64)
    a = alpha[..., None] / 255.0
    shot = (fg * a + np.array([0, 255, 0]) * (1 - a)).round().astype(np.uint8)
    band = (alpha > 0) & (alpha < 255)
    clean = matting.decontaminate(shot, alpha)
    naive_err = np.abs(shot[band].astype(float) - fg[band]).mean()
    clean_err = np.abs(clean[band].astype(float) - fg[band]).mean()
    magenta = Image.new("RGB", (size, size), (255, 0, 255))
    crop = (size // 2 + radius - 60, size // 2 - 60, size // 2 + radius + 60, size // 2 + 60)
    naive_img = over(Image.fromarray(np.dstack([shot, alpha]), "RGBA"), magenta).crop(crop)
    clean_img = over(Image.fromarray(np.dstack([clean, alpha]), "RGBA"), magenta).crop(crop)
    tiles = [labelled(Image.fromarray(shot).crop(crop), "shot on green"),
             labelled(naive_img, f"naive: error {naive_err:.1f}"),
             labelled(clean_img, f"decontaminated: {clean_err:.1f}")]
    return grid(tiles, 3), naive_err, clean_err


def main() -> None:
    models = ROOT / ".readme" / ".models"
    fetch_weights.place(models)
    out = ROOT / ".readme"
    refinements(models).save(out / "refinements.png", optimize=True)
    picture, naive_err, clean_err = decontamination()
    picture.save(out / "decontamination.png", optimize=True)
    print(f"edge-band mean colour error vs the true foreground: naive {naive_err:.1f}, "
          f"decontaminated {clean_err:.1f} ({clean_err / naive_err:.0%} of naive)")


if __name__ == "__main__":
    main()
