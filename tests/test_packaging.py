"""Packaging: the test venv is consistent, and the declared dependencies can never replace InvokeAI's OpenCV.

Installing into pristine InvokeAI environments is tested in test_install_pristine.py."""

from __future__ import annotations

import subprocess
import sys

from support import ROOT


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


def test_the_wheel_ships_every_module_of_every_subpackage(tmp_path):
    """Package discovery, not a list: a module added in a new subpackage cannot be left out of the wheel."""
    import shutil
    import zipfile

    source = tmp_path / "source"  # a copy, so the build leaves nothing in the clone
    shutil.copytree(ROOT / "remove_background", source / "remove_background",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                        str(tmp_path / "dist"), str(source)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    (wheel,) = (tmp_path / "dist").glob("remove_background-*.whl")
    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".py")}
    expected = {str(p.relative_to(ROOT)) for p in (ROOT / "remove_background").rglob("*.py")}
    assert expected <= shipped, sorted(expected - shipped)
    assert any(n.startswith("remove_background/families/") for n in shipped)
