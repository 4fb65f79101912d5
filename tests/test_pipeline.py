"""The plain Python API on the real u2netp weights: every input mode, odd sizes, fidelity and quality."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from support import ROOT
from support.images import horse_scene, scene_in_mode
from remove_background import InvalidImageError, ModelNotAvailableError, remove


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "P+transparency", "PA", "RGB", "RGBA", "CMYK", "I;16", "I", "F"])
def test_every_pil_mode_gives_rgba_and_mask_of_the_same_size(mode, models_dir):
    image = scene_in_mode(mode)
    before = image.tobytes()
    result = remove(image, model="u2netp", models_dir=models_dir)
    assert result.image.mode == "RGBA" and result.mask.mode == "L"
    assert result.image.size == result.mask.size == image.size
    assert image.tobytes() == before and image.mode == mode.split("+")[0]  # the input is never modified
    assert np.array_equal(np.asarray(result.image)[:, :, 3], np.asarray(result.mask))
    if mode not in ("1",):  # a 1-bit horse is still a horse, but its texture is gone: only check the others
        _, truth = horse_scene()
        alpha = np.asarray(result.mask) > 127
        assert (alpha & truth).sum() / (alpha | truth).sum() > 0.8


def test_existing_transparency_is_kept(models_dir):
    image, truth = horse_scene()
    rgba = image.convert("RGBA")
    a = np.asarray(rgba).copy()
    a[:, : a.shape[1] // 2, 3] = 0  # left half already transparent
    result = remove(Image.fromarray(a, "RGBA"), models_dir=models_dir)
    alpha = np.asarray(result.mask)
    assert alpha[:, : a.shape[1] // 2].max() == 0
    assert alpha[:, a.shape[1] // 2 :][truth[:, a.shape[1] // 2 :]].mean() > 200


@pytest.mark.parametrize("size", [(1, 1), (1, 3000), (3000, 1), (2, 2), (7, 5)])
def test_tiny_and_extreme_sizes(size, models_dir):
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    result = remove(image, models_dir=models_dir)
    assert result.image.size == result.mask.size == size


def test_exif_rotated_image_is_cut_out_as_displayed(models_dir):
    image, truth = horse_scene()
    stored = image.transpose(Image.Transpose.ROTATE_90)  # the camera stored it sideways...
    exif = Image.Exif()
    exif[0x0112] = 6  # ...and says "rotate 90° clockwise to display"
    buf = io.BytesIO()
    stored.save(buf, "JPEG", exif=exif.tobytes(), quality=95)
    loaded = Image.open(io.BytesIO(buf.getvalue()))
    result = remove(loaded, models_dir=models_dir)
    assert result.mask.size == image.size  # the displayed size
    alpha = np.asarray(result.mask) > 127
    assert (alpha & truth).sum() / (alpha | truth).sum() > 0.9


@pytest.mark.parametrize("colour", [(0, 0, 0), (255, 255, 255), (30, 140, 220)])
def test_flat_image_gives_uniform_mask(colour, models_dir):
    result = remove(Image.new("RGB", (300, 200), colour), models_dir=models_dir)
    assert result.mask.getextrema() == (0, 0)


def test_empty_image_is_a_clear_error(models_dir):
    with pytest.raises(InvalidImageError, match="empty"):
        remove(Image.new("RGB", (0, 5)), models_dir=models_dir)


def test_not_an_image_is_a_clear_error(models_dir):
    with pytest.raises(InvalidImageError, match="PIL image"):
        remove(np.zeros((4, 4, 3)), models_dir=models_dir)


def test_missing_model_offline_is_clear(tmp_path):
    with pytest.raises(ModelNotAvailableError) as e:
        remove(Image.new("RGB", (8, 8), (1, 2, 3)), model="silueta", models_dir=tmp_path / "m")
    text = str(e.value)
    assert "silueta.onnx" in text and str(tmp_path / "m") in text and "releases/download" in text
    assert list((tmp_path / "m").iterdir()) == []


@pytest.mark.parametrize("texture, background", [("coffee", (235, 235, 235)), ("chelsea", (40, 90, 200))])
def test_quality_iou_on_exact_truth(texture, background, models_dir):
    image, truth = horse_scene(texture, background)
    alpha = np.asarray(remove(image, model="u2netp", models_dir=models_dir).image)[:, :, 3] > 127
    iou = (alpha & truth).sum() / (alpha | truth).sum()
    assert iou >= 0.95, iou


@pytest.mark.parametrize("size", [(512, 512), (1024, 1024), (2048, 2048), (4096, 4096), (3000, 4500), (5000, 2000)])
def test_mask_is_faithful_to_rembg(size, models_dir, monkeypatch, astronaut):
    """Same model, same input: our fast path matches rembg's own mask (mean diff ≤ 0.5, ≥ 99.9 % same side)."""
    monkeypatch.setenv("U2NET_HOME", str(models_dir))
    import rembg

    image = astronaut.resize(size, Image.Resampling.BICUBIC)
    theirs = np.asarray(rembg.remove(image, session=rembg.new_session("u2netp"), only_mask=True)).astype(np.int16)
    ours = np.asarray(remove(image, model="u2netp", models_dir=models_dir).mask).astype(np.int16)
    assert np.abs(theirs - ours).mean() <= 0.5
    assert ((theirs > 127) == (ours > 127)).mean() >= 0.999


def test_import_and_remove_without_invokeai(models_dir):
    code = (
        "import sys; sys.modules['invokeai'] = None\n"  # any import of invokeai now fails
        "from PIL import Image\n"
        "from remove_background import remove\n"
        f"r = remove(Image.new('RGB', (40, 30), (9, 9, 9)), models_dir={str(models_dir)!r})\n"
        "assert r.image.size == (40, 30)\n"
        "assert not [m for m in sys.modules if m.startswith('invokeai.')]\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=os.environ)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


def test_lazily_opened_file_is_read_safely(models_dir, tmp_path):
    """Image.open() decodes lazily; the downscale and the cut-out read the image from two threads at once."""
    image, truth = horse_scene()
    image.save(tmp_path / "horse.png")
    for _ in range(3):
        with Image.open(tmp_path / "horse.png") as lazy:
            result = remove(lazy, models_dir=models_dir)
        cut = np.asarray(result.image)
        visible = cut[..., 3] > 0
        assert np.array_equal(cut[visible][:, :3], np.asarray(image)[visible])
        assert visible.mean() > 0.2 and not cut[~visible].any()


def test_truncated_file_is_a_clear_error(models_dir, tmp_path):
    horse_scene()[0].save(tmp_path / "horse.png")
    data = (tmp_path / "horse.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with Image.open(tmp_path / "cut.png") as lazy:
        with pytest.raises(InvalidImageError, match="Cannot read the image"):
            remove(lazy, models_dir=models_dir)
