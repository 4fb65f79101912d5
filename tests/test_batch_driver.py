"""The batch job's driver, with the real u2netp weights: its checks before any work create no session; the worker
plan; and what the ``batch`` command shows on the terminal (a real process on a private local Ray): a progress bar
(done/total, rate, ETA), each failed file and a one-line summary, with Ray's own output in the output folder's log
file; an error before any work, and workers that cannot load the model, as one clear line each."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from remove_background.backends import cache as sessions
from remove_background.batch import outputs as bo
from remove_background.batch import terminal
from remove_background.batch.job import BatchJob, plan_workers, preflight
from remove_background.errors import ProviderUnavailableError
from support.batch import CORRUPT, make_inputs, private_ray_tmp

EXE = Path(sys.executable).with_name("remove-background")
GOOD = 3


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("driver_in")
    make_inputs(folder, GOOD)
    return folder


def batch_command(*args) -> subprocess.CompletedProcess:
    pytest.importorskip("ray", reason="the batch path needs the 'ray' extra")
    with private_ray_tmp():
        return subprocess.run([str(EXE), "batch", *map(str, args)], capture_output=True, text=True, timeout=400,
                              env=os.environ)


def terminal_lines(stderr: str) -> list[str]:
    """What a person sees: the progress bar redraws itself with a carriage return."""
    return [line.strip() for line in re.split(r"[\r\n]", stderr) if line.strip()]


def test_checks_before_any_work_create_no_session(weights, tmp_path):
    created, held = sessions.CACHE.created, len(sessions.CACHE)
    preflight(BatchJob.build(tmp_path, tmp_path / "out", {"model": "u2netp"}, models_dir=weights))
    preflight(BatchJob.build(tmp_path, tmp_path / "out", {"model": "u2netp", "provider": "cpu"}, models_dir=weights,
                             gpus_per_worker=0))
    assert (sessions.CACHE.created, len(sessions.CACHE)) == (created, held)


def test_worker_plan_fits_the_cluster():
    job = BatchJob.build(".", "out", {"model": "u2netp"}, workers=4)
    cpu = plan_workers(job, pending=10, resources={"CPU": 8.0})
    assert (cpu.workers, cpu.ort_threads, cpu.gpus_per_worker, cpu.device, cpu.cpu_runs) == (4, 2, 0.0, "cpu", 1)
    assert plan_workers(job, pending=1, resources={"CPU": 8.0}).workers == 1  # never more workers than images
    gpu = plan_workers(job, pending=10, resources={"CPU": 8.0, "GPU": 2.0})
    assert (gpu.gpus_per_worker, gpu.device, gpu.ort_threads, gpu.cpu_runs) == (0.5, "cuda:0", None, None)
    with pytest.raises(ProviderUnavailableError, match="1 GPU, but the Ray cluster has 0"):
        plan_workers(BatchJob.build(".", "out", None, gpus_per_worker=1), pending=3, resources={"CPU": 2.0})


def test_plain_bar_without_tqdm_shows_done_total_rate_and_eta(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    out = io.StringIO()
    bar = terminal.progress_bar(4, out, initial=1)
    assert isinstance(bar, terminal.PlainBar)
    bar.update(2)
    bar.write("FAILED x.jpg: broken", file=bar.fp)
    bar.update(1)
    bar.close()
    lines = terminal_lines(out.getvalue())
    assert "FAILED x.jpg: broken" in lines
    assert re.fullmatch(r"remove-background batch: 4/4 \[[\d.]+ image/s, ETA (\d+ s|\?)\]", lines[-1]), lines
    assert any(re.fullmatch(r"remove-background batch: 3/4 \[[\d.]+ image/s, ETA (\d+ s|\?)\]", x) for x in lines)


@pytest.mark.slow
def test_the_terminal_shows_a_bar_failures_and_a_summary_and_ray_writes_to_its_log(inputs, weights, tmp_path):
    out = tmp_path / "out"
    r = batch_command(inputs, out, "--models-dir", weights, "--no-download", "--model", "u2netp")
    assert r.returncode == 1, r.stderr  # the corrupt inputs failed
    lines = terminal_lines(r.stderr)
    bar = [line for line in lines if line.startswith("remove-background batch:")]
    failed = [line for line in lines if line.startswith("FAILED ")]
    summary = [line for line in lines if " written, " in line]
    listed = [line for line in lines if line == f"failures listed in {out / bo.MANIFEST_NAME}"]
    assert not [line for line in lines if line not in bar + failed + summary + listed], "more than ours: " + r.stderr
    total = GOOD + len(CORRUPT)
    assert re.search(rf"{total}/{total} \[\d\d:\d\d<\d\d:\d\d, +[\d.]+ ?(s/image|image/s)\]", bar[-1]), bar[-1]
    assert sorted(Path(line[len("FAILED "):].split(": ")[0]).name for line in failed) == sorted(CORRUPT)
    assert len(summary) == 1 and summary[0].startswith(f"{GOOD} written, 0 already complete, 3 failed of {total} in")
    assert len(listed) == 1 and r.stdout == ""
    log = (out / bo.RAY_LOG_NAME).read_text().splitlines()
    assert "Ray's output" in log[0] and len(log) > 1  # what Ray printed went here


@pytest.mark.slow
def test_an_error_before_any_work_is_one_line(inputs, tmp_path):
    out = tmp_path / "out"
    r = batch_command(inputs, out, "--models-dir", tmp_path / "empty", "--no-download", "--model", "u2netp")
    assert r.returncode == 2
    assert terminal_lines(r.stderr) == [line for line in terminal_lines(r.stderr)
                                        if line.startswith("remove-background batch: ModelNotAvailableError: ")]
    assert len(terminal_lines(r.stderr)) == 1 and not out.exists()


@pytest.mark.slow
def test_workers_that_cannot_load_the_model_stop_the_job_with_one_line(inputs, tmp_path):
    """SAM's files have no published checksum: corrupt ones pass the driver's checks, and the workers' sessions
    fail. The job stops with their error (never a worker restarted forever, never a manifest of every file)."""
    models = tmp_path / "models"
    models.mkdir()
    for name in ("sam_vit_b_01ec64.encoder.onnx", "sam_vit_b_01ec64.decoder.onnx"):
        (models / name).write_bytes(b"not an ONNX file")
    out = tmp_path / "out"
    r = batch_command(inputs, out, "--models-dir", models, "--no-download", "--model", "sam")
    assert r.returncode == 2, r.stderr
    lines = [line for line in terminal_lines(r.stderr) if not line.startswith("remove-background batch: ")
             or "WorkerSetupError" in line]
    assert len(lines) == 1 and "WorkerSetupError: the workers could not load model 'sam'" in lines[0], r.stderr
    assert "could not be loaded by ONNX Runtime" in lines[0] and "Traceback" not in r.stderr
    assert not list(out.glob("*.png")) and not (out / bo.MANIFEST_NAME).exists()
