"""Nothing of the removed background hides under transparency: every RGBA output has RGB 0 wherever alpha is 0, and
the input's own colour (straight, not premultiplied) wherever alpha > 0. Checked pixel by pixel on a real photo
(the astronaut: the flag and the shuttle behind her must be gone) with the real u2netp, for every output path: the
API (plain, decontaminated, an input with its own alpha, a fully transparent background colour), the CLI and the
node in real InvokeAI services."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from remove_background import remove


def assert_nothing_hidden(cutout: Image.Image, source_rgb: np.ndarray, straight: bool = True) -> None:
    px = np.asarray(cutout)
    assert px.shape[2] == 4
    alpha = px[..., 3]
    transparent = alpha == 0
    assert 0.05 < transparent.mean() < 0.95  # a real cut-out: some of each
    assert not px[transparent].any(), "RGB under alpha 0 must be 0"
    if straight:
        assert np.array_equal(px[~transparent][:, :3], source_rgb[~transparent])


def test_api_cutout(astronaut, models_dir):
    result = remove(astronaut, model="u2netp", models_dir=models_dir)
    assert_nothing_hidden(result.image, np.asarray(astronaut))


def test_api_decontaminated(astronaut, models_dir):
    result = remove(astronaut, model="u2netp", decontaminate=True, mask_blur=3, models_dir=models_dir)
    assert_nothing_hidden(result.image, np.asarray(astronaut), straight=False)


def test_api_input_with_its_own_alpha(astronaut, models_dir):
    rgba = astronaut.convert("RGBA")
    own = np.full(astronaut.size[::-1], 255, np.uint8)
    own[200:320, 150:350] = 0  # a hole of the input's own, over the subject
    rgba.putalpha(Image.fromarray(own))
    result = remove(rgba, model="u2netp", models_dir=models_dir)
    assert not np.asarray(result.image)[200:320, 150:350].any()
    assert_nothing_hidden(result.image, np.asarray(astronaut))


def test_api_fully_transparent_background_colour(astronaut, models_dir):
    result = remove(astronaut, model="u2netp", background_color=(255, 0, 0, 0), models_dir=models_dir)
    assert_nothing_hidden(result.image, np.asarray(astronaut), straight=False)


def test_transparent_pixels_make_a_smaller_png(astronaut, models_dir):
    result = remove(astronaut, model="u2netp", models_dir=models_dir)
    leaky = np.asarray(astronaut.convert("RGBA")).copy()
    leaky[..., 3] = np.asarray(result.mask)  # what a cut-out that keeps the background under alpha 0 would hold

    def size(image):
        buf = io.BytesIO()
        image.save(buf, "PNG")
        return buf.tell()

    ours, theirs = size(result.image), size(Image.fromarray(leaky, "RGBA"))
    print(f"astronaut cut-out PNG: {ours:,} bytes; with the background kept under alpha 0: {theirs:,} bytes")
    assert ours < 0.8 * theirs


def test_cli(astronaut, models_dir, tmp_path):
    astronaut.save(tmp_path / "astronaut.png")
    exe = Path(sys.executable).with_name("remove-background")
    r = subprocess.run([str(exe), str(tmp_path / "astronaut.png"), "-o", str(tmp_path / "out"), "--models-dir",
                        str(models_dir)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert_nothing_hidden(Image.open(tmp_path / "out" / "astronaut.png"), np.asarray(astronaut))


@pytest.mark.slow
def test_node_in_real_invokeai_services(astronaut, tmp_path_factory, u2netp_file):
    from support.invokeai_services import build_services, run_node

    services = build_services(tmp_path_factory.mktemp("root"))
    from invokeai.app.services.image_records.image_records_common import ImageCategory, ResourceOrigin
    from invokeai.invocation_api import ImageField

    from support import fetch_weights
    from remove_background.invokeai_adapter import node as invocation

    fetch_weights.place(services.configuration.models_path / "rembg")
    name = services.images.create(image=astronaut, image_origin=ResourceOrigin.EXTERNAL,
                                  image_category=ImageCategory.USER).image_name
    for extra in ({}, {"decontaminate": True}):
        out = run_node(services, invocation.RemoveBackgroundInvocation(
            id="rb", image=ImageField(image_name=name), model="u2netp", use_cache=False, **extra))
        assert_nothing_hidden(services.image_files.get(out.image.image_name), np.asarray(astronaut),
                              straight=not extra)
