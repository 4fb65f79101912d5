"""The batch job's output bookkeeping alone (remove_background.batch.outputs, no Ray): which inputs are done, atomic
writes, the job file, the failure manifest, temp files, and what stops a job; and the ``batch`` command line, which
must parse and answer --help without Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from remove_background.batch import outputs as bo
from remove_background.cli import commands as cli

OPTIONS = {"model": "u2netp", "mask_blur": 1.5}


def png_bytes(size=(8, 8)) -> bytes:
    import io

    buf = io.BytesIO()
    Image.new("L", size, 7).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def inputs(tmp_path) -> Path:
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    for name in ("a.jpg", "b.png", "sub/c.jpg"):
        Image.new("RGB", (8, 8)).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    (folder / (".a.png" + bo.TEMP_MARK + "x1")).write_bytes(b"a killed run's temp file")
    return folder


def test_png_completeness_check(tmp_path):
    good = tmp_path / "a.png"
    Image.new("RGBA", (64, 64), (1, 2, 3, 4)).save(good)
    data = good.read_bytes()
    assert bo.png_is_complete(good)
    for broken in (data[:-1], data[:-12], data[:40], data[:30] + b"x" + data[31:], b"", data + b"x"):
        bad = tmp_path / "b.png"
        bad.write_bytes(broken)
        assert not bo.png_is_complete(bad)
    assert not bo.png_is_complete(tmp_path / "missing.png")


def test_atomic_write_leaves_no_temp_and_replaces(tmp_path):
    target = tmp_path / "a.png"
    bo.write_atomic(target, b"one")
    bo.write_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    assert os.listdir(tmp_path) == ["a.png"]
    long_name = tmp_path / ("n" * 250 + ".png")  # near the 255-byte limit: the temp name must still fit
    bo.write_atomic(long_name, b"x")
    assert long_name.read_bytes() == b"x" and len(os.listdir(tmp_path)) == 2


def test_collect_inputs_and_output_names(inputs, tmp_path):
    found = bo.collect_inputs([inputs], recursive=True)
    assert [str(rel) for _, rel in found] == ["a.jpg", "b.png", "sub/c.jpg"]  # no text file, no temp file
    assert [str(rel) for _, rel in bo.collect_inputs([inputs], recursive=False)] == ["a.jpg", "b.png"]
    out = inputs / "cut"  # an output folder inside the input folder is never read as input
    bo.write_atomic((out.mkdir() or out) / "a.png", png_bytes())
    assert len(bo.collect_inputs([inputs], True, exclude=out)) == 3
    assert bo.output_paths(out, Path("sub/c.jpg"), False) == [out / "sub/c.png", out / "sub/c.mask.png"]
    assert bo.output_paths(out, Path("sub/c.jpg"), True) == [out / "sub/c.mask.png"]
    with pytest.raises(FileNotFoundError, match="nothing.jpg"):
        bo.collect_inputs([tmp_path / "nothing.jpg"], False)


def test_outputs_older_than_the_jobs_options_are_not_complete(tmp_path):
    """An interrupted run with new options leaves the job file saying 'new options since T': outputs written before
    T (with the old options) must be redone, outputs written after it are complete."""
    src = tmp_path / "a.jpg"
    Image.new("RGB", (8, 8)).save(src)
    targets = bo.output_paths(tmp_path, Path("a.jpg"), mask_only=False)
    for t in targets:
        bo.write_atomic(t, png_bytes())
    item = bo.Item(src, Path("a.jpg"), targets)
    written = min(t.stat().st_mtime_ns for t in targets)
    assert bo.is_done(item, since_ns=0) and bo.is_done(item, since_ns=written)
    assert not bo.is_done(item, since_ns=written + 1)
    time.sleep(0.01)
    src.touch()  # the input changed after its outputs were written
    assert not bo.is_done(item)


def test_plan_start_and_resume(inputs, tmp_path):
    """A plan reads only; start writes the job file and removes temp files; the same options keep the job's start
    time (so the first run's outputs count as done), other options redo everything; clashing outputs are failures
    before any work."""
    out = tmp_path / "out"
    (inputs / "a.png").write_bytes((inputs / "b.png").read_bytes())  # a.jpg and a.png: the same output names
    found = bo.collect_inputs([inputs], recursive=True)
    folder = bo.OutputFolder(out, OPTIONS, mask_only=False)
    plan = folder.plan(found)
    assert not out.exists()
    assert [str(i.rel) for i in plan.pending] == ["a.jpg", "b.png", "sub/c.jpg"] and plan.skipped == 0
    assert len(plan.failed) == 1 and "OutputClash" in plan.failed[0][1] and plan.failed[0][0].endswith("a.png")
    folder.start(plan)
    (out / "sub").mkdir()
    (out / "sub" / (".c.png" + bo.TEMP_MARK + "zz")).write_bytes(b"half")
    for item in plan.pending[:2]:
        folder.write(item, [png_bytes(), png_bytes()])
    job = json.loads((out / bo.JOB_NAME).read_text())
    assert job["options"] == OPTIONS and job["since_ns"] == plan.record["since_ns"]

    again = folder.plan(found)  # a killed run, run again: the two written are done, the third is to do
    assert again.record["since_ns"] == plan.record["since_ns"]
    assert (again.skipped, [str(i.rel) for i in again.pending]) == (2, ["sub/c.jpg"])
    folder.start(again)
    assert not list(out.rglob("*" + bo.TEMP_MARK + "*"))

    other = bo.OutputFolder(out, {**OPTIONS, "mask_blur": 0.0}, mask_only=False).plan(found)
    assert other.skipped == 0 and len(other.pending) == 3 and other.record["since_ns"] > plan.record["since_ns"]


def test_manifest_written_then_removed(tmp_path):
    folder = bo.OutputFolder(tmp_path, OPTIONS, mask_only=True)
    path = folder.finish([("/in/x.jpg", "UnidentifiedImageError: no")], written=3, skipped=1)
    body = json.loads(path.read_text())
    assert path == tmp_path / bo.MANIFEST_NAME
    assert body["failed"] == [{"input": "/in/x.jpg", "error": "UnidentifiedImageError: no"}]
    assert (body["count"], body["written"], body["skipped"], body["options"]) == (1, 3, 1, OPTIONS)
    assert folder.finish([], written=4, skipped=0) is None and not path.exists()


def test_write_errors_a_name_fails_one_input_a_folder_stops_the_job(tmp_path):
    """A folder where an output should go is that input's failure (OSError); an output folder that is gone, or a
    sub-folder that cannot be made, is OutputFolderError naming the folder, and nothing is recreated."""
    out = tmp_path / "out"
    folder = bo.OutputFolder(out, OPTIONS, mask_only=False)
    folder.start(bo.Plan(record={"options": OPTIONS}))
    item = bo.Item(tmp_path / "a.jpg", Path("a.jpg"), bo.output_paths(out, Path("a.jpg"), False))
    (out / "a.png").mkdir()
    (out / "a.png" / "keep").write_text("a folder with the output's name")
    with pytest.raises(OSError) as name_error:
        folder.write(item, [png_bytes(), png_bytes()])
    assert not isinstance(name_error.value, bo.OutputFolderError)

    sub = bo.Item(tmp_path / "s/b.jpg", Path("s/b.jpg"), bo.output_paths(out, Path("s/b.jpg"), False))
    (out / "s").write_text("a file where the sub-folder goes")
    with pytest.raises(bo.OutputFolderError, match=r"cannot write to .*out/s: \w+Error: \[Errno \d+\]"):
        folder.write(sub, [png_bytes(), png_bytes()])

    (out / "s").unlink()
    (out / "a.png" / "keep").unlink()
    (out / "a.png").rmdir()
    out.rename(tmp_path / "moved")
    with pytest.raises(bo.OutputFolderError, match=r"cannot write to .*out: FileNotFoundError: .*gone") as gone:
        folder.write(item, [png_bytes(), png_bytes()])
    assert gone.value.folder == out and not out.exists()  # never quietly recreated mid-job
    with pytest.raises(bo.OutputFolderError):  # the manifest cannot be written either
        out.write_text("a file where the output folder was")
        folder.finish([("x", "y")], 0, 0)


def test_batch_command_parses_and_answers_help_without_ray(tmp_path):
    """``remove-background --help`` and ``batch --help`` never import Ray (the optional extra)."""
    code = ("import sys; sys.modules['ray'] = None\n"
            "from remove_background.cli import commands as cli\n"
            "for argv in (['--help'], ['batch', '--help']):\n"
            "    try:\n"
            "        cli.main(argv)\n"
            "    except SystemExit as e:\n"
            "        assert e.code == 0, e.code\n"
            "p = cli.batch_parser().parse_args(['in', 'out', '--workers', '3', '--address', 'auto', '-r'])\n"
            "assert (p.workers, p.address, p.recursive, p.png_level, p.batch_size) == (3, 'auto', True, 1, 4)\n"
            "print('ray' in sys.modules and sys.modules['ray'] is not None)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "remove-background batch" in r.stdout and "--gpus-per-worker" in r.stdout
    assert r.stdout.strip().endswith("False")


def test_batch_subcommand_is_dispatched(monkeypatch):
    seen = []
    monkeypatch.setattr(cli, "batch_main", lambda argv: seen.append(argv) or 0)
    assert cli.main(["batch", "in", "out", "--workers", "3"]) == 0
    assert seen == [["in", "out", "--workers", "3"]]


def test_batch_command_without_ray_is_exit_2(tmp_path, monkeypatch, capsys):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.jpg")
    monkeypatch.setitem(sys.modules, "ray", None)
    assert cli.main(["batch", str(tmp_path / "a.jpg"), str(tmp_path / "out"), "--no-progress"]) == 2
    assert "DependencyMissingError" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_batch_command_reports_an_unwritable_folder_in_one_message(tmp_path, monkeypatch, capsys):
    """An output folder that cannot be written is one message naming the folder and the OSError (no traceback, no
    line per file), what stays written, and exit code 2; the same at the start as mid-job."""
    from remove_background.batch import ray_job as batch

    def stopped(*args, **kwargs):
        error = bo.OutputFolderError(tmp_path / "out", PermissionError(13, "Permission denied", "/x/.a.png.rb-tmp-1"))
        error.report = batch.BatchReport(output=tmp_path / "out", done=5, skipped=2)
        raise error

    monkeypatch.setattr(batch, "run_batch", stopped)
    assert cli.main(["batch", str(tmp_path), str(tmp_path / "out"), "--no-progress"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0] == f"remove-background batch: cannot write to {tmp_path / 'out'}: PermissionError: [Errno 13] " \
                       "Permission denied"
    assert len(lines) == 2 and "5 written in this run and 2 from before" in lines[1] and "run the same" in lines[1]

    out = tmp_path / "a-file"
    out.write_text("not a folder")
    with pytest.raises(bo.OutputFolderError, match=f"cannot write to {out}: FileExistsError"):
        bo.OutputFolder(out, OPTIONS, False).start(bo.Plan(record={}))
