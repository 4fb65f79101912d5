"""Packaging: the test venv is consistent, and the declared dependencies can never replace InvokeAI's OpenCV.

Installing into pristine InvokeAI environments is tested in test_install_pristine.py."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def test_pip_check_is_clean_in_the_invokeai_venv():
    out = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_dependencies_never_bring_a_second_opencv_or_rembg():
    """rembg requires opencv-python-headless, whose cv2 files replace InvokeAI's opencv-contrib-python."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {d.split(">")[0].split("=")[0].split("<")[0].strip().lower() for d in project["dependencies"]}
    assert names == {"onnxruntime", "numpy", "pillow", "pymatting"}
    assert project["optional-dependencies"]["opencv"] == ["opencv-python-headless>=4.8"]  # outside InvokeAI only


def test_licence_is_mit():
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
