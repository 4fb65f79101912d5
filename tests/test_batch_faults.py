"""Faults in a batch job, with the real u2netp weights, each ending with every good input written once and whole,
nothing partial under an output's name, and the failure manifest listing only the corrupt inputs:

- a worker killed (SIGKILL) mid-job: Ray restarts it, retries its call, and the job completes;
- an input whose worker dies on every try: listed as failed after the retries, never retried forever;
- the driver killed (SIGKILL) mid-job: the same command run again carries on and completes;
- the output folder made unwritable, or taken away, mid-job: one clear error naming the folder (never a manifest
  of every later file as failed), the workers stopped, and a re-run once it is back completes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the batch path needs the 'ray' extra")

from support import ROOT
from support.batch import (
    CORRUPT,
    OPTIONS,
    alive,
    assert_manifest_lists_only_corrupt,
    assert_nothing_partial,
    assert_whole_and_equal,
    descendants,
    expected_outputs,
    make_inputs,
    private_ray_tmp,
    worker_processes,
)
from remove_background.batch import ray_job as batch  # noqa: E402
from remove_background.batch import outputs as bo  # noqa: E402

pytestmark = pytest.mark.slow

GOOD = 8


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fault_in")
    make_inputs(folder, GOOD)
    return folder


@pytest.fixture(scope="module")
def expected(inputs, weights) -> dict:
    return expected_outputs(sorted(p for p in inputs.iterdir() if p.name not in CORRUPT), weights)


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray (2 CPUs) for the in-process tests; run_batch uses it and leaves it running."""
    with private_ray_tmp():
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
        try:
            yield
        finally:
            ray.shutdown()


def run(inputs, out, weights, **kw):
    return batch.run_batch(inputs, out, OPTIONS, **{"workers": 2, "models_dir": weights, "allow_download": False,
                                                    "progress": False, **kw})


def wait_for_no_workers(timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while worker_processes():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_a_killed_worker_is_restarted_and_the_job_completes(local_ray, inputs, weights, expected, tmp_path):
    out = tmp_path / "out"
    results, killed, before, after = [], [], set(), set()

    def on_result(path, error):
        results.append(path)
        if len(results) == 2:
            workers = worker_processes()
            busy = [pid for pid, (_, title) in workers.items() if ".submit" in title]
            victim = (busy or list(workers))[0]  # one in the middle of a call, if any
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)
            before.update(workers)
        elif killed:
            after.update(worker_processes())

    report = run(inputs, out, weights, batch_size=2, on_result=on_result)
    assert killed and not alive(killed[0])
    assert after - before, "no worker came back after the kill"
    assert report.done == GOOD and sorted(results) == sorted(str(p) for p in inputs.iterdir())  # each once
    assert sorted(Path(p).name for p, _ in report.failed) == sorted(CORRUPT)
    assert_whole_and_equal(out, expected)
    assert_manifest_lists_only_corrupt(out)


def test_an_input_that_kills_its_worker_every_time_is_not_retried_forever(local_ray, inputs, weights, tmp_path):
    """Ray's default retries a dead worker's call forever, so one input that kills its worker every time (a native
    crash, the kernel's OOM killer) would stall the job for good: here every worker dies in every call, and the
    job still ends, after ``TASK_RETRIES`` retries, with the input listed as failed."""
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(sorted(inputs.glob("img*.jpg"))[0], one / "poison.jpg")
    stop = threading.Event()
    kills = []

    def killer():
        while not stop.is_set() and len(kills) < 3 * (batch.TASK_RETRIES + 1):  # then let it finish, not hang
            for pid, (_, title) in worker_processes().items():
                if ".submit" in title and pid not in kills:
                    try:
                        os.kill(pid, signal.SIGKILL)
                        kills.append(pid)
                    except ProcessLookupError:
                        pass
            time.sleep(0.01)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        report = run(one, tmp_path / "out", weights, workers=1)
    finally:
        stop.set()
        thread.join()
    assert report.done == 0 and len(kills) == batch.TASK_RETRIES + 1, kills
    assert [(Path(p).name, e.split(":")[0]) for p, e in report.failed] == [("poison.jpg", "NotProcessed")]
    assert report.manifest is not None and not list((tmp_path / "out").glob("*.png"))


def test_a_killed_driver_leaves_whole_outputs_and_the_same_command_finishes(inputs, weights, expected, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "remove_background.cli", "batch", str(inputs), str(out), "--workers", "2",
           "--batch-size", "1", "--models-dir", str(weights), "--no-download", "--model", "u2netp", "--no-progress"]
    with private_ray_tmp() as ray_tmp:
        env = {**os.environ, "RAY_TMPDIR": ray_tmp}
        driver = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        ours: list = []
        try:
            deadline = time.monotonic() + 240
            while len(list(out.glob("*.mask.png"))) < 3:
                assert driver.poll() is None, "the job ended before it could be killed"
                assert time.monotonic() < deadline, "no outputs after 240 s"
                time.sleep(0.05)
            ours = descendants(driver.pid)  # the local Ray it started, and its workers
            os.kill(driver.pid, signal.SIGKILL)
            driver.wait()
        finally:
            for pid in ours:  # whatever of its Ray outlived it (its own processes only)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        assert_nothing_partial(out)
        done_before = {p: p.stat().st_mtime_ns for name in expected
                       for p in bo.output_paths(out, Path(name), False) if p.exists()}
        complete_before = sum(all(p in done_before for p in bo.output_paths(out, Path(n), False)) for n in expected)
        assert 0 < complete_before < GOOD, "the driver was not killed mid-job"

        again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert again.returncode == 1, again.stderr[-3000:]  # 1: the corrupt inputs failed, the rest is written
    assert f"already complete, {len(CORRUPT)} failed" in again.stderr
    assert f"{complete_before} already complete" in again.stderr
    assert_whole_and_equal(out, expected)
    assert_manifest_lists_only_corrupt(out)
    pairs = [bo.output_paths(out, Path(n), False) for n in expected]
    kept = [p for pair in pairs if all(p in done_before for p in pair) for p in pair]
    assert all(p.stat().st_mtime_ns == done_before[p] for p in kept), "a complete output was redone"


def lock_folder(folder: Path):
    """Make ``folder`` unwritable; returns the function that undoes it, or None when this machine can't.

    As a normal user that is chmod 0o500. As root (CI containers), chmod does not stop writes (CAP_DAC_OVERRIDE),
    so the folder gets the immutable attribute (chattr +i), which stops root too, as a read-only remount would;
    it needs a file system that has the attribute (ext4, xfs, btrfs) and CAP_LINUX_IMMUTABLE. Either way a probe
    write must fail before the test trusts it."""
    def probe_fails() -> bool:
        try:
            (folder / ".probe").write_bytes(b"x")
        except OSError:
            return True
        (folder / ".probe").unlink()
        return False

    if os.geteuid() != 0:
        folder.chmod(0o500)
        if probe_fails():
            return lambda: folder.chmod(0o755)
        folder.chmod(0o755)
    chattr = shutil.which("chattr")
    if chattr and subprocess.run([chattr, "+i", str(folder)], capture_output=True).returncode == 0:
        if probe_fails():
            return lambda: subprocess.run([chattr, "-i", str(folder)], check=True)
        subprocess.run([chattr, "-i", str(folder)], check=True)
    return None


def test_an_output_folder_that_becomes_unwritable_stops_the_job_once(local_ray, inputs, weights, expected,
                                                                     tmp_path):
    """What a user of a long job expects when the output folder cannot be written any more (permissions changed,
    disk full, read-only remount): the job stops at the first output it cannot write, with one error naming the
    folder and the OSError; it does not run on computing images it cannot save, nor lists every later input as
    failed. What was written stays whole, and the same job run again, once the folder is writable, completes."""
    scratch = tmp_path / "probe"
    scratch.mkdir()
    unlock = lock_folder(scratch)
    if unlock is None:
        pytest.skip("no way to make a folder unwritable here (root without chattr +i on this file system)")
    unlock()

    out = tmp_path / "out"
    results, undo = [], []

    def on_result(path, error):
        results.append((path, error))
        if len(results) == 3:
            undo.append(lock_folder(out))

    try:
        with pytest.raises(bo.OutputFolderError) as stopped:
            run(inputs, out, weights, batch_size=1, on_result=on_result)
        error = stopped.value
        assert error.folder == out and isinstance(error.error, OSError)
        assert str(error).startswith(f"cannot write to {out}: ") and "[Errno" in str(error)
        assert all(e for _, e in results[3:]), "an output was reported written after the folder was locked"
        assert error.report.done + len(error.report.failed) == len(results)
        assert not (out / bo.MANIFEST_NAME).exists()
        assert wait_for_no_workers(), "the workers went on after the job stopped"
    finally:
        if undo and undo[0]:
            undo[0]()
    assert_nothing_partial(out)
    assert not list(out.rglob("*" + bo.TEMP_MARK + "*"))

    again = run(inputs, out, weights)
    assert again.skipped == error.report.done and again.done == GOOD - error.report.done
    assert_whole_and_equal(out, expected)
    assert_manifest_lists_only_corrupt(out)


def test_an_output_folder_taken_away_mid_job_is_not_recreated(local_ray, inputs, weights, expected, tmp_path):
    """The output folder moved away (or unmounted) mid-job: the job stops with one error saying it is gone, and
    does not quietly make a new, empty folder at its name; moved back, the same job completes."""
    out, moved = tmp_path / "out", tmp_path / "moved"
    results = []

    def on_result(path, error):
        results.append((path, error))
        if len(results) == 3:
            out.rename(moved)

    with pytest.raises(bo.OutputFolderError, match=f"cannot write to {out}: FileNotFoundError: .*gone") as stopped:
        run(inputs, out, weights, batch_size=1, on_result=on_result)
    assert not out.exists() and all(e for _, e in results[3:])
    moved.rename(out)
    again = run(inputs, out, weights)
    assert again.skipped == stopped.value.report.done and again.done == GOOD - again.skipped
    assert_whole_and_equal(out, expected)
    assert_manifest_lists_only_corrupt(out)
