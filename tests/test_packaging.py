"""Packaging keeps an InvokeAI venv healthy: pip check stays clean, and the resolver picks a compatible rembg."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT


def test_pip_check_is_clean_in_the_invokeai_venv():
    out = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.slow
def test_installing_the_project_into_invokeai_changes_nothing_it_pins():
    """A real resolver run (dry run) of `pip install .` in the InvokeAI venv: no numpy or onnxruntime upgrade."""
    out = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--report", "-", str(ROOT)],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    planned = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in report["install"]}
    assert set(planned) <= {"remove-background"}, planned  # everything else is already satisfied


def test_pyproject_caps_rembg_below_the_numpy2_releases():
    text = (ROOT / "pyproject.toml").read_text()
    assert '"rembg>=2.0.57,<2.0.70"' in text
    assert "onnxruntime-gpu" in text  # the gpu extra


def test_licence_is_mit():
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
