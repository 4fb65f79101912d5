"""Edge detail "high" (remove_background.detail) with the real u2netp, against scenes whose true alpha is exact.

The scenes and metrics are the benchmark's (tests/support/detail_scenes.py, shared with benchmarks/detail_scenes.py):
skimage's horse silhouette, drawn with a soft edge and filled with a photo, composited over another real photo.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from support import detail_scenes
from remove_background.imaging import detail

from remove_background.imaging import resample as inference


@pytest.fixture
def loaded(models_dir):
    from remove_background.pipeline import load_model

    return load_model("u2netp", "cpu", models_dir, allow_download=False)


def single(loaded, rgb: Image.Image):
    low, full = detail_scenes.single_pass(loaded, rgb)
    return low, full.copy()  # the pipeline's buffers are reused: keep our own copy


def detailed(loaded, rgb, *args, run=None, **keywords):
    """The detail pass with ``loaded``'s own model run for its crops (or ``run``)."""
    return detail.detailed_mask(rgb, *args, run=run or detail_scenes.crop_run(loaded), **keywords)


class Counting:
    """Counts the detail pass's extra model runs."""

    def __init__(self, loaded):
        self.loaded, self.crops = loaded, []

    def __call__(self, crop: Image.Image) -> np.ndarray:
        self.crops.append(crop.size)
        return detail_scenes.crop_run(self.loaded)(crop)


def two_horses(frame: int, places) -> tuple[Image.Image, np.ndarray]:
    """Several small horses (10 % of the frame) over one background; exact alpha."""
    bg = detail_scenes.background("horse-cat", frame)
    alpha = np.zeros((frame, frame), np.float32)
    fg_rgb, a = detail_scenes.foreground("horse-cat", int(frame * 0.1))
    h, w = a.shape
    for fx, fy in places:
        x0, y0 = int(fx * frame - w / 2), int(fy * frame - h / 2)
        region = bg[y0 : y0 + h, x0 : x0 + w]
        region += a[..., None] * (fg_rgb.astype(np.float32) - region)
        alpha[y0 : y0 + h, x0 : x0 + w] = np.maximum(alpha[y0 : y0 + h, x0 : x0 + w], a)
    return Image.fromarray(np.clip(bg + 0.5, 0, 255).astype(np.uint8)), alpha


def test_small_subject_in_big_frame_has_much_better_edges(loaded):
    rgb, alpha = detail_scenes.make_scene("horse-cat", 2048, 0.10)
    low, full = single(loaded, rgb)
    before = detail_scenes.metrics(full, alpha)
    counting = Counting(loaded)
    mask = detailed(loaded, rgb, low, full, run=counting)
    after = detail_scenes.metrics(mask, alpha)
    assert len(counting.crops) == 1 and max(counting.crops[0]) < 2048 / detail.MIN_GAIN
    assert after["berr"] <= 0.6 * before["berr"], (before, after)  # boundary error at least 40 % lower
    assert after["bf"] > before["bf"] + 0.2
    assert after["iou"] > before["iou"] and after["mae"] < before["mae"]
    assert mask.dtype == np.uint8 and mask.shape == (2048, 2048)


def test_frame_filling_subject_gets_no_second_pass(loaded):
    rgb, alpha = detail_scenes.make_scene("horse-cat", 1024, 0.80)
    low, full = single(loaded, rgb)
    assert detail.subject_boxes(low, *rgb.size) == []
    counting = Counting(loaded)
    mask = detailed(loaded, rgb, low, full, run=counting)
    assert counting.crops == []
    before, after = detail_scenes.metrics(full, alpha), detail_scenes.metrics(mask, alpha)
    for key in ("mae", "berr"):  # lower is better
        assert after[key] <= before[key] * 1.02, (key, before, after)
    for key in ("iou", "bf"):
        assert after[key] >= before[key] * 0.98, (key, before, after)


def test_several_subjects(loaded):
    places = [(0.2, 0.25), (0.75, 0.7)]
    rgb, alpha = two_horses(2048, places)
    low, full = single(loaded, rgb)
    boxes = detail.subject_boxes(low, *rgb.size)
    assert len(boxes) == 2  # far apart: one pass each
    by_top = sorted(boxes, key=lambda b: b[1])
    for (fx, fy), (left, top, right, bottom) in zip(sorted(places, key=lambda p: p[1]), by_top):
        assert left < fx * 2048 < right and top < fy * 2048 < bottom
    mask = detailed(loaded, rgb, low, full)
    before, after = detail_scenes.metrics(full, alpha), detail_scenes.metrics(mask, alpha)
    assert after["berr"] <= 0.6 * before["berr"], (before, after)
    # more subjects than MAX_CROPS, too far apart to share a box: the biggest get a pass each, the rest keep the
    # first pass; nothing gets worse
    four = [(0.2, 0.2), (0.8, 0.2), (0.2, 0.8), (0.8, 0.8)]
    rgb4, alpha4 = two_horses(2048, four)
    low4, full4 = single(loaded, rgb4)
    boxes4 = detail.subject_boxes(low4, *rgb4.size)
    assert len(boxes4) == detail.MAX_CROPS
    for left, top, right, bottom in boxes4:  # each box holds one horse
        assert sum(left < fx * 2048 < right and top < fy * 2048 < bottom for fx, fy in four) == 1
    counting = Counting(loaded)
    mask4 = detailed(loaded, rgb4, low4, full4, run=counting)
    assert len(counting.crops) == detail.MAX_CROPS
    before, after = detail_scenes.metrics(full4, alpha4), detail_scenes.metrics(mask4, alpha4)
    assert after["berr"] < before["berr"] and after["iou"] > before["iou"], (before, after)


def test_a_second_pass_that_disagrees_is_not_used(loaded, monkeypatch):
    rgb, _ = detail_scenes.make_scene("horse-cat", 2048, 0.10)
    low, full = single(loaded, rgb)

    def elsewhere(crop: Image.Image) -> np.ndarray:  # a "subject" in the crop's corner, away from the horse
        m = np.zeros((320, 320), np.uint8)
        m[:40, :40] = 255
        return m

    mask = detailed(loaded, rgb, low, full, run=elsewhere)
    monkeypatch.setattr(detail, "MIN_GAIN", 1e9)  # no second pass at all
    assert np.array_equal(mask, detailed(loaded, rgb, low, full))


def test_fallback_guided_filter_matches_ximgproc(monkeypatch):
    cv2 = pytest.importorskip("cv2")
    if not hasattr(cv2, "ximgproc"):
        pytest.skip("opencv-contrib (cv2.ximgproc) is not installed here")
    from skimage import data

    grey = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
    src = (cv2.GaussianBlur(grey, (0, 0), 3) > 0.5).astype(np.float32)
    for radius, eps in ((2, 1e-4), (9, 1e-4), (9, 1e-2)):
        ours = detail.guided_filter_box(grey, src, radius, eps)
        theirs = cv2.ximgproc.guidedFilter(grey, src, radius, eps)
        assert np.abs(ours - theirs).max() < 1e-3
    # the whole upsampling, with and without ximgproc
    rgb, _ = detail_scenes.make_scene("horse-coffee", 1024, 0.8)
    low = np.asarray(Image.fromarray(inference.downscale(rgb, 320)).convert("L"))
    low = np.where(low > 128, 255, 0).astype(np.uint8)
    with_contrib = detail.guided_upsample(low, rgb, use_ximgproc=True)
    monkeypatch.setattr(detail, "_has_ximgproc", lambda: False)
    fallback = detail.guided_upsample(low, rgb)
    assert np.abs(with_contrib.astype(int) - fallback).max() <= 1


@pytest.mark.parametrize("size", [(1000, 700), (700, 1000), (200, 150), (321, 320)])
def test_uint8_mask_of_the_input_size(loaded, size):
    rgb = Image.fromarray(np.asarray(detail_scenes.make_scene("horse-coffee", 512, 0.3)[0].resize(size)))
    low, full = single(loaded, rgb)
    for with_array in (False, True):
        mask = detailed(loaded, rgb, low, full, rgb_array=np.asarray(rgb) if with_array else None)
        assert mask.dtype == np.uint8 and mask.shape == (size[1], size[0])
    assert detailed(loaded, rgb, low).shape == (size[1], size[0])  # no bilinear base given


def test_flat_image_and_no_subject(loaded):
    flat = Image.new("RGB", (1500, 900), (120, 130, 140))
    zeros = np.zeros((320, 320), np.uint8)
    mask = detailed(loaded, flat, zeros, np.zeros((900, 1500), np.uint8))
    assert mask.shape == (900, 1500) and mask.dtype == np.uint8 and mask.max() == 0
    full_white = np.full((320, 320), 255, np.uint8)
    assert detailed(loaded, flat, full_white).min() == 255
    # a real photo whose first pass found nothing: no second pass, no crash
    rgb, _ = detail_scenes.make_scene("horse-cat", 1024, 0.1)
    counting = Counting(loaded)
    assert detailed(loaded, rgb, zeros, run=counting).max() == 0 and counting.crops == []


def test_only_plain_mask_models():
    from remove_background import families
    from remove_background.catalog import MODELS

    assert families.of(MODELS["u2netp"]).edge_detail and families.of(MODELS["u2net"]).edge_detail
    assert not families.by_key("cloth").edge_detail and not families.by_key("sam").edge_detail


def test_edge_detail_option_through_the_api(models_dir):
    """The option reaches the pipeline: "high" changes the mask of a small subject in a big frame, "standard" is the
    single pass, and models without a plain mask ignore it."""
    from remove_background import remove

    rgb, _ = detail_scenes.make_scene("horse-cat", 1024, 0.1)
    standard = remove(rgb, model="u2netp", models_dir=models_dir)
    high = remove(rgb, model="u2netp", edge_detail="high", models_dir=models_dir)
    assert high.mask.size == standard.mask.size == rgb.size
    assert high.mask.tobytes() != standard.mask.tobytes()
    assert np.array_equal(np.asarray(high.image)[..., 3], np.asarray(high.mask))
