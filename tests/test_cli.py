"""The command-line tool (no InvokeAI involved) and `doctor`."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import horse_scene
from remove_background.cli import commands as cli
from remove_background.cli import doctor
from remove_background import families

EXE = Path(sys.executable).with_name("remove-background")


def run_cli(*args, env=None):
    return subprocess.run([str(EXE), *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


@pytest.fixture
def inputs(tmp_path):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    horse_scene()[0].save(folder / "horse.png")
    horse_scene("chelsea", (40, 90, 200))[0].save(folder / "sub" / "cat.jpg", quality=95)
    (folder / "broken.png").write_bytes(b"this is not an image")
    return folder


def test_files_and_folders_with_progress_and_per_file_failures(inputs, tmp_path, models_dir):
    before = {p: p.read_bytes() for p in inputs.rglob("*") if p.is_file()}
    out = tmp_path / "out"
    r = run_cli(inputs, inputs / "sub" / "cat.jpg", "-o", out, "--models-dir", models_dir, "--mask-blur", "2")
    assert r.returncode == 1  # one input is broken
    assert "FAILED" in r.stderr and "broken.png" in r.stderr
    assert "2 done, 1 failed" in r.stderr
    assert "image/s" in r.stderr or "it/s" in r.stderr  # the progress bar
    cut = Image.open(out / "horse.png")
    assert cut.mode == "RGBA" and Image.open(out / "horse.mask.png").mode == "L"
    assert (out / "cat.png").is_file()
    assert {p: p.read_bytes() for p in inputs.rglob("*") if p.is_file()} == before  # inputs untouched


def test_recursive_keeps_the_layout(inputs, tmp_path, models_dir):
    (inputs / "broken.png").unlink()
    out = tmp_path / "out"
    r = run_cli(inputs, "-o", out, "-r", "--models-dir", models_dir, "--mask-only")
    assert r.returncode == 0, r.stderr
    assert (out / "sub" / "cat.mask.png").is_file() and not (out / "sub" / "cat.png").exists()


def test_never_overwrites_inputs(tmp_path, models_dir):
    folder = tmp_path / "pics"
    folder.mkdir()
    horse_scene()[0].save(folder / "horse.png")
    original = (folder / "horse.png").read_bytes()
    r = run_cli(folder / "horse.png", "-o", folder, "--models-dir", models_dir)
    assert r.returncode == 1 and "would overwrite an input" in r.stderr
    assert (folder / "horse.png").read_bytes() == original


def test_missing_model_offline_fails_once_with_a_clear_message(inputs, tmp_path):
    r = run_cli(inputs / "horse.png", "-o", tmp_path / "o", "--models-dir", tmp_path / "empty", "-m", "silueta")
    assert r.returncode == 1
    assert "silueta.onnx" in r.stderr and "Traceback" not in r.stderr


def test_options_reach_the_api(inputs, tmp_path, models_dir):
    out = tmp_path / "out"
    r = run_cli(inputs / "horse.png", "-o", out, "--models-dir", models_dir, "--background-color", "255,0,0",
                "--mask-threshold", "128")
    assert r.returncode == 0, r.stderr
    cut = np.asarray(Image.open(out / "horse.png"))
    mask = np.asarray(Image.open(out / "horse.mask.png"))
    assert set(np.unique(mask)) <= {0, 255}
    assert (cut[mask == 0][:, :3] == (255, 0, 0)).all()


def test_bad_option_is_a_usage_error(tmp_path):
    r = run_cli(tmp_path, "-o", tmp_path / "o", "--model", "nope")
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_doctor_reports_everything_with_fixes(tmp_path, models_dir):
    out = io.StringIO()
    code = doctor.run(root=tmp_path, models_dir=models_dir, out=out)
    text = out.getvalue()
    assert code == 0, text
    assert "InvokeAI: 6.14.2" in text and str(tmp_path) in text
    assert "onnxruntime packages: onnxruntime==" in text
    assert "CPUExecutionProvider" in text and "loads" in text
    assert "u2netp" in text and "verified" in text and "4.6 MB" in text
    assert "silueta" in text and "missing" in text
    assert "non-commercial" in text


def test_doctor_flags_a_provider_that_does_not_load_mocked_cuda_provider(tmp_path, models_dir):
    out = io.StringIO()
    code = doctor.run(root=tmp_path, models_dir=models_dir, out=out,
                      available=["CUDAExecutionProvider", "CPUExecutionProvider"])
    text = out.getvalue()
    assert code == 1
    assert "DOES NOT LOAD" in text and "to fix:" in text


@pytest.mark.parametrize("torch_route", [True, False])
def test_doctor_says_where_each_family_runs_on_a_gpu_mocked_gpu(tmp_path, models_dir, monkeypatch, torch_route):
    """InvokeAI set to cuda:1 (invokeai.yaml), the CPU onnxruntime: every family runs on torch on cuda:1, with ONNX
    Runtime on the CPU as the fallback; without onnx2torch, the CPU, and the fix names the install command."""
    (tmp_path / "invokeai.yaml").write_text("schema_version: 4.0.2\ndevice: cuda:1\n")
    monkeypatch.setattr(doctor, "torch_route_installed", lambda: torch_route)
    out = io.StringIO()
    code = doctor.run(root=tmp_path, models_dir=models_dir, out=out, available=["CPUExecutionProvider"])
    text = out.getvalue()
    assert "InvokeAI's device here: cuda:1" in text
    for family in ("u2net", "isnet", "birefnet", "bria", "sam"):
        assert f"  {family} " in text
    if torch_route:
        assert code == 0, text
        assert text.count("-> PyTorch on cuda:1") == len(families.all_families()) and "deform_conv2d" in text
        assert "if that does not load or convert: ONNX Runtime (CPUExecutionProvider)" in text
    else:
        assert code == 1 and text.count("-> ONNX Runtime (CPUExecutionProvider)") == len(families.all_families())
        assert "install onnx2torch" in text and "to fix:" in text


def test_doctor_command_runs(tmp_path, models_dir):
    r = run_cli("doctor", "--root", tmp_path, "--models-dir", models_dir)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "model folder" in r.stdout


def test_collect_inputs_skips_non_images(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p, _ in cli.collect_inputs([tmp_path], False)] == ["a.png"]


def test_batch_subcommand_is_dispatched(monkeypatch):
    seen = []
    monkeypatch.setattr(cli, "batch_main", lambda argv: seen.append(argv) or 0)
    assert cli.main(["batch", "in", "out", "--workers", "3"]) == 0
    assert seen == [["in", "out", "--workers", "3"]]
