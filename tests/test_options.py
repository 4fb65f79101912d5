"""Every option, measured against a truth we construct (issue: mask refinement and compositing)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from support.images import horse_scene
from remove_background import remove
from remove_background.imaging import compositing
from remove_background.imaging import matting
from remove_background.imaging import refine
from remove_background.families.sam import options_prompt as sam_prompt
from remove_background.options import RemovalOptions


def disc(size=200, radius=60, soft=0.0):
    yy, xx = np.mgrid[:size, :size]
    d = np.sqrt((yy - size / 2) ** 2 + (xx - size / 2) ** 2)
    if soft:
        return (np.clip((radius - d) / soft + 0.5, 0, 1) * 255).round().astype(np.uint8)
    return np.where(d <= radius, 255, 0).astype(np.uint8)


# --- mask refinement ------------------------------------------------------------------------------------------
def test_threshold_is_exact():
    ramp = np.tile(np.arange(256, dtype=np.uint8), (4, 1))
    out = refine.threshold(ramp, 100)
    assert (out[:, :100] == 0).all() and (out[:, 100:] == 255).all()


def test_invert_is_exact():
    m = disc(soft=10)
    assert np.array_equal(refine.refine(m, RemovalOptions(mask_invert=True).mask), 255 - m)


@pytest.mark.parametrize("pixels", [5, 12, -5, -12])
def test_grow_and_shrink_change_the_area_as_expected(pixels):
    r = 60
    m = disc(radius=r)
    out = refine.grow(m, pixels)
    expected = np.pi * ((r + pixels) ** 2 - r ** 2)
    change = (out > 127).sum() - (m > 127).sum()
    assert abs(change - expected) <= 0.05 * abs(expected) + 2 * np.pi * r * 0.5, (change, expected)


def test_blur_is_monotone_across_an_edge():
    m = np.zeros((40, 200), np.uint8)
    m[:, 100:] = 255
    out = refine.blur(m, 8).astype(int)
    row = out[20]
    assert (np.diff(row) >= 0).all()
    assert row[90] > 0 and row[110] < 255  # actually feathered
    assert row[0] == 0 and row[-1] == 255


def test_post_process_removes_specks_and_binarises():
    m = disc(radius=40).copy()
    m[5, 5] = 255  # an isolated speck
    out = refine.post_process(m)
    assert out[5, 5] == 0 and set(np.unique(out)) <= {0, 255}
    assert out[100, 100] == 255


def test_refinement_order_is_threshold_then_grow_then_blur_then_invert():
    m = disc(soft=20)
    opts = RemovalOptions(mask_threshold=128, mask_grow=3, mask_blur=2, mask_invert=True).mask
    expected = 255 - refine.blur(refine.grow(refine.threshold(m, 128), 3), 2)
    assert np.array_equal(refine.refine(m, opts), expected)


@pytest.mark.parametrize("kwargs, name", [
    ({"mask_threshold": 300}, "mask_threshold"),
    ({"mask_grow": -1000}, "mask_grow"),
    ({"mask_blur": -1}, "mask_blur"),
    ({"alpha_matting_erode_size": 99}, "alpha_matting_erode_size"),
    ({"alpha_matting_foreground_threshold": 256}, "alpha_matting_foreground_threshold"),
    ({"output_mode": "both"}, "output_mode"),
    ({"cloth_category": "hat"}, "cloth_category"),
    ({"background_color": (0, 0, 300)}, "background_color"),
    ({"sam_box": (10, 10, 5, 5)}, "sam_box"),
])
def test_out_of_range_options_name_the_option_and_range(kwargs, name, models_dir):
    with pytest.raises(ValueError, match=name):
        remove(Image.new("RGB", (4, 4)), models_dir=models_dir, **kwargs)


# --- compositing ----------------------------------------------------------------------------------------------
def test_background_colour_is_exact_where_alpha_is_zero_and_mask_is_unchanged(models_dir):
    image, truth = horse_scene()
    plain = remove(image, models_dir=models_dir)
    coloured = remove(image, models_dir=models_dir, background_color=(10, 200, 30))
    alpha = np.asarray(plain.mask)
    out = np.asarray(coloured.image)
    assert np.array_equal(np.asarray(coloured.mask), alpha)
    assert (out[alpha == 0][:, :3] == (10, 200, 30)).all()
    assert (out[..., 3] == 255).all()
    opaque = alpha == 255
    assert np.array_equal(out[opaque][:, :3], np.asarray(image)[opaque])


def test_background_colour_alpha_is_respected():
    rgb = np.full((2, 2, 3), 200, np.uint8)
    alpha = np.array([[0, 255], [128, 0]], np.uint8)
    out = compositing.over_background(rgb, alpha, (0, 0, 255, 128))
    assert tuple(out[0, 0]) == (0, 0, 255, 128)
    assert tuple(out[0, 1]) == (200, 200, 200, 255)
    assert 128 < out[1, 0, 3] < 255


def test_mask_only_returns_the_matte(models_dir):
    image, _ = horse_scene()
    r = remove(image, models_dir=models_dir, output_mode="mask_only")
    assert r.image is r.mask and r.mask.mode == "L"


# --- decontamination and matting on soft-edged truth -------------------------------------------------------------
def soft_scene(size=512, radius=180, ramp=14.0, bg=(0, 255, 0)):
    from skimage import data

    alpha = disc(size, radius, soft=ramp)
    fg = np.asarray(Image.fromarray(data.coffee()).resize((size, size))).astype(np.float64)
    a = alpha[..., None] / 255.0
    img = (fg * a + np.asarray(bg, np.float64) * (1 - a)).round().astype(np.uint8)
    return img, alpha, fg


def test_decontamination_halves_the_edge_colour_error():
    img, alpha, fg = soft_scene()
    band = (alpha > 0) & (alpha < 255)
    naive = np.abs(img[band].astype(float) - fg[band]).mean()
    cleaned = matting.decontaminate(img, alpha)
    error = np.abs(cleaned[band].astype(float) - fg[band]).mean()
    print(f"edge-band colour error: naive {naive:.1f}, decontaminated {error:.1f} ({error / naive:.0%})")
    assert error <= 0.5 * naive
    assert np.array_equal(cleaned[alpha == 255], img[alpha == 255])  # opaque pixels untouched


def test_alpha_matting_beats_the_thresholded_mask_on_soft_edges():
    import cv2

    img, alpha, _ = soft_scene()
    coarse = cv2.GaussianBlur(np.where(alpha > 127, 255, 0).astype(np.uint8), (0, 0), 4)
    edge = (alpha > 0) & (alpha < 255)
    thresholded = np.where(coarse > 127, 255, 0)
    matted = matting.alpha_matte(img, coarse, RemovalOptions(alpha_matting=True).matting)
    mae_threshold = np.abs(thresholded[edge] - alpha[edge].astype(float)).mean()
    mae_matting = np.abs(matted[edge].astype(float) - alpha[edge]).mean()
    assert mae_matting < 0.5 * mae_threshold, (mae_matting, mae_threshold)


@pytest.mark.parametrize("erode", [0, 1, 2, 5, 10])
def test_trimap_is_rembgs_scipy_erosion(erode):
    """rembg builds its trimap (alpha matting and ViTMatte alike) with scipy's binary_erosion: a square of the erode
    size, scipy's 3×3 cross at size 0 (one pixel still goes), the foreground eroded from the image border, the
    background not. Ours does it with OpenCV: equal, even sizes included."""
    from scipy.ndimage import binary_erosion

    rng = np.random.default_rng(erode)
    mask = cv2_blur(rng.integers(0, 256, (121, 163)).astype(np.uint8))
    options = RemovalOptions(alpha_matting_erode_size=erode, alpha_matting_foreground_threshold=150,
                             alpha_matting_background_threshold=100).matting
    structure = np.ones((erode, erode), np.uint8) if erode else None
    expected = np.full(mask.shape, 128, np.uint8)
    expected[binary_erosion(mask > 150, structure=structure)] = 255
    expected[binary_erosion(mask < 100, structure=structure, border_value=1)] = 0
    assert np.array_equal(matting.trimap(mask, options), expected)
    assert (expected == 128).any() and (expected == 255).any() and (expected == 0).any()


def cv2_blur(noise: np.ndarray) -> np.ndarray:
    import cv2

    smooth = cv2.GaussianBlur(noise, (0, 0), 9).astype(np.float32)
    return ((smooth - smooth.min()) * 255 / (smooth.max() - smooth.min())).astype(np.uint8)


def test_alpha_matting_without_foreground_falls_back_with_a_warning(caplog):
    mask = np.full((50, 50), 100, np.uint8)
    out = matting.alpha_matte(np.zeros((50, 50, 3), np.uint8), mask, RemovalOptions(alpha_matting=True).matting)
    assert np.array_equal(out, mask) and "alpha matting skipped" in caplog.text


@pytest.mark.slow
def test_alpha_matting_on_2048_is_bounded(models_dir):
    """Bounded time on a 2048² image (the issue asks ≤ 10 s on 2 cores; asserted loosely, measured in benchmarks)."""
    image, _ = horse_scene()
    big = image.resize((2048, 2048), Image.Resampling.BICUBIC)
    remove(big, models_dir=models_dir)  # warm the session
    t = time.perf_counter()
    r = remove(big, models_dir=models_dir, alpha_matting=True, decontaminate=True)
    elapsed = time.perf_counter() - t
    print(f"2048² with alpha matting and decontamination: {elapsed:.1f} s")
    assert r.image.size == (2048, 2048) and elapsed < 60


# --- model-specific prompts -----------------------------------------------------------------------------------
def test_sam_prompt_shapes():
    assert sam_prompt(RemovalOptions()) is None
    assert sam_prompt(RemovalOptions(sam_point=(3, 4))) == [{"type": "point", "data": [3.0, 4.0], "label": 1}]
    both = sam_prompt(RemovalOptions(sam_point=(3, 4), sam_box=(1, 2, 30, 40)))
    assert both[1] == {"type": "rectangle", "data": [1.0, 2.0, 30.0, 40.0], "label": 1}


def test_cloth_categories_give_one_mask_each():
    from remove_background import families

    cloth = families.by_key("cloth")

    logits = np.zeros((1, 4, 6, 6), np.float32)
    logits[0, 1, :2] = 5  # upper rows
    logits[0, 2, 2:4] = 5  # lower rows
    logits[0, 3, 4:] = 5  # full rows
    upper = cloth.small_mask([logits], RemovalOptions(cloth_category="upper"))
    assert upper.shape == (6, 6) and (upper[:2] == 255).all() and (upper[2:] == 0).all()
    assert (cloth.small_mask([logits], RemovalOptions(cloth_category="all")) == 255).all()
    assert (cloth.small_mask([logits], RemovalOptions(cloth_category="full"))[4:] == 255).all()


# --- every option on awkward inputs ---------------------------------------------------------------------------
ALL_OPTIONS = [
    {},
    {"mask_threshold": 128},
    {"mask_blur": 3.5},
    {"mask_grow": 4},
    {"mask_grow": -4},
    {"mask_invert": True},
    {"post_process_mask": True},
    {"alpha_matting": True},
    {"decontaminate": True},
    {"background_color": (255, 0, 0, 255)},
    {"background_color": "navy"},
    {"output_mode": "mask_only"},
    {"alpha_matting": True, "decontaminate": True, "mask_blur": 2, "mask_grow": 2, "background_color": (0, 0, 0)},
]


@pytest.mark.parametrize("options", ALL_OPTIONS, ids=lambda o: ",".join(o) or "defaults")
@pytest.mark.parametrize("kind", ["1x1", "flat", "rgba_transparent", "horse"])
def test_every_option_on_awkward_inputs(options, kind, models_dir):
    if kind == "1x1":
        image = Image.new("RGB", (1, 1), (10, 20, 30))
    elif kind == "flat":
        image = Image.new("RGB", (64, 40), (90, 90, 90))
    elif kind == "rgba_transparent":
        a = np.asarray(horse_scene()[0].convert("RGBA")).copy()
        a[:, :100, 3] = 0
        image = Image.fromarray(a, "RGBA")
    else:
        image = horse_scene()[0]
    r = remove(image, models_dir=models_dir, **options)
    assert r.mask.size == r.image.size == image.size and r.mask.mode == "L"
    alpha = np.asarray(r.mask)
    if kind == "flat":
        assert alpha.min() == alpha.max()  # uniform, whatever the options
    if kind == "rgba_transparent" and not options.get("mask_invert"):
        assert alpha[:, :100].max() == 0  # existing transparency survives every option
