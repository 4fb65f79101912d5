"""The command-line tool (no InvokeAI involved) and `doctor`."""

from __future__ import annotations

import http.server
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from support.images import horse_scene
from remove_background.cli import doctor, files
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
    assert [p.name for p, _ in files.collect_inputs([tmp_path], False)] == ["a.png"]


# --- every command's expected errors, through the real console script: one line on stderr, no traceback, an exit
# code (messages.py: 1 failed, 2 could not start, 130 interrupted). Model downloads come from a real HTTP server on
# 127.0.0.1; the catalog's URLs are pointed at it by a sitecustomize module in the child process.

CATALOG_AT = """
import dataclasses, os
from remove_background import catalog
for name, info in list(catalog.MODELS.items()):
    files = tuple(dataclasses.replace(f, url=os.environ["TEST_MODELS_URL"] + f.filename) for f in info.files)
    catalog.MODELS[name] = dataclasses.replace(info, files=files)
"""


class ModelServer(http.server.BaseHTTPRequestHandler):
    """/good/F: the real file; /broken/F: half of it, then hangs up; /slow/F: a trickle until the client goes;
    /corrupt/F: the right length, wrong bytes."""

    files: dict = {}

    def log_message(self, *args):
        pass

    def do_GET(self):
        kind, _, name = self.path.strip("/").partition("/")
        data = self.files.get(name)
        if data is None or kind not in ("good", "corrupt", "broken", "slow"):
            return self.send_error(404)
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            if kind == "good":
                self.wfile.write(data)
            elif kind == "corrupt":
                self.wfile.write(bytes(len(data)))
            elif kind == "broken":
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
            elif kind == "slow":
                for i in range(0, len(data), 1 << 16):
                    self.wfile.write(data[i:i + (1 << 16)])
                    self.wfile.flush()
                    time.sleep(0.2)
        except OSError:  # the client went away (interrupted): what a real server sees
            pass


@pytest.fixture(scope="module")
def model_server(u2netp_file):
    ModelServer.files = {"u2netp.onnx": u2netp_file.read_bytes()}
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ModelServer)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def closed_port_url() -> str:
    with socket.socket() as s:  # a port nobody listens on: what "offline" looks like to urllib
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/"


@pytest.fixture
def catalog_at(tmp_path):
    """``catalog_at(url)``: the environment of a child process whose catalog downloads from ``url`` + file name."""
    hook = tmp_path / "catalog_hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(CATALOG_AT)

    def env(url: str) -> dict:
        path = os.pathsep.join([str(hook), *filter(None, [os.environ.get("PYTHONPATH")])])
        return {"PYTHONPATH": path, "TEST_MODELS_URL": url}

    return env


def one_clear_line(r, code: int, *words) -> str:
    """The run ended with ``code`` and said why in its last stderr line, which holds ``words``; no traceback."""
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr and "Exception ignored" not in r.stderr, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    for word in words:
        assert str(word) in last, r.stderr
    return last


def leftovers(folder: Path) -> list:
    return sorted(p.name for p in folder.iterdir() if p.name != ".verified.json") if folder.exists() else []


def interrupt_when_downloading(args, folder: Path, env: dict):
    """Start the console script, press Ctrl-C once its download has begun in ``folder``, return the result."""
    p = subprocess.Popen([str(EXE), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, **env})
    deadline = time.monotonic() + 120
    while not any(n.endswith(".part") for n in leftovers(folder)):
        assert p.poll() is None and time.monotonic() < deadline, p.communicate()
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def test_download_fetches_into_the_command_lines_folder_then_finds_it_there(model_server, catalog_at, tmp_path,
                                                                           inputs):
    """No --models-dir: the folder the other commands read ($REMOVE_BACKGROUND_MODELS here). Run again: already
    there, said on one line each, no empty line first."""
    folder = tmp_path / "default"
    env = {**catalog_at(f"{model_server}/good/"), "REMOVE_BACKGROUND_MODELS": str(folder)}
    r = run_cli("download", "u2netp", env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"u2netp: {folder / 'u2netp.onnx'}\n" and "u2netp.onnx: 4.6 / 4.6 MB" in r.stderr
    again = run_cli("download", "u2netp", env=env)
    assert again.returncode == 0, again.stderr
    assert again.stdout == f"u2netp: {folder / 'u2netp.onnx'} (already there)\n" and again.stderr == ""
    r = run_cli(inputs / "horse.png", "-o", tmp_path / "out", "-m", "u2netp", "--no-download", env=env)
    assert r.returncode == 0, r.stderr  # the files command reads the very folder download wrote


def test_download_errors(model_server, catalog_at, tmp_path):
    folder = tmp_path / "fetched"
    r = run_cli("download", "u2netp", "u2net", "--models-dir", folder, env=catalog_at(closed_port_url()))
    one_clear_line(r, 1, "u2netp.onnx", folder, "offline or unreachable", "Not attempted: u2net")
    r = run_cli("download", "u2netp", "--models-dir", folder, env=catalog_at(f"{model_server}/broken/"))
    one_clear_line(r, 1, "ModelNotAvailableError", "broke off")
    r = run_cli("download", "u2netp", "--models-dir", folder, env=catalog_at(f"{model_server}/corrupt/"))
    one_clear_line(r, 1, "ModelChecksumError", "Nothing was saved")
    assert leftovers(folder) == []
    r = run_cli("download", "u2netp", "--models-dir", folder, env=catalog_at(f"{model_server}/missing/"))
    one_clear_line(r, 1, "HTTP 404")
    (tmp_path / "a-file").write_text("x")
    r = run_cli("download", "u2netp", "--models-dir", tmp_path / "a-file" / "models")
    one_clear_line(r, 1, "u2netp into", "NotADirectoryError", "a-file")
    one_clear_line(run_cli("download", "nope"), 2, "invalid choice: 'nope'")
    one_clear_line(run_cli("download"), 2, "required")


def test_download_interrupted_by_ctrl_c_leaves_nothing(model_server, catalog_at, tmp_path):
    folder = tmp_path / "fetched"
    r = interrupt_when_downloading(["download", "u2netp", "--models-dir", folder], folder,
                                   catalog_at(f"{model_server}/slow/"))
    one_clear_line(r, 130, "remove-background download: interrupted")
    assert leftovers(folder) == []


def test_files_command_errors(inputs, model_server, catalog_at, tmp_path, models_dir):
    image = inputs / "horse.png"
    one_clear_line(run_cli(tmp_path / "nothere.png", "-o", tmp_path / "o"), 2, "nothere.png does not exist")
    one_clear_line(run_cli(image, "-o", tmp_path / "o", "--mask-grow", "999"), 2, "mask_grow must be between")
    one_clear_line(run_cli(image, "-o", tmp_path / "o", "-m", "nope"), 2, "invalid choice")
    (tmp_path / "a-file").write_text("x")
    r = run_cli(image, "-o", tmp_path / "a-file" / "out", "--models-dir", models_dir)
    one_clear_line(r, 2, "cannot write to the output folder", "a-file")
    folder = tmp_path / "fetched"
    r = run_cli(image, inputs / "sub" / "cat.jpg", "-o", tmp_path / "o", "-m", "u2netp", "--models-dir", folder,
                env=catalog_at(closed_port_url()))
    one_clear_line(r, 1, "0 done, 1 failed, 1 not attempted")  # the model is missing for every file: said once
    assert r.stderr.count("FAILED") == 1 and "offline or unreachable" in r.stderr
    r = run_cli(image, "-o", tmp_path / "o", "-m", "u2netp", "--models-dir", folder,
                env=catalog_at(f"{model_server}/broken/"))
    one_clear_line(r, 1, "0 done, 1 failed")
    assert "broke off" in r.stderr and leftovers(folder) == []


def test_files_command_interrupted_by_ctrl_c(inputs, model_server, catalog_at, tmp_path):
    folder = tmp_path / "fetched"
    r = interrupt_when_downloading([inputs / "horse.png", "-o", tmp_path / "o", "-m", "u2netp", "--models-dir",
                                    folder], folder, catalog_at(f"{model_server}/slow/"))
    one_clear_line(r, 130, "0 done, 0 failed, 1 not attempted (interrupted)")
    assert leftovers(folder) == []


def test_batch_command_errors(inputs, catalog_at, tmp_path, models_dir):
    """What fails before Ray starts: one line and exit 2 (the batch's own faults are tested in test_batch_*)."""
    image = inputs / "horse.png"
    one_clear_line(run_cli("batch", tmp_path / "nothere", tmp_path / "o"), 2, "nothere does not exist")
    one_clear_line(run_cli("batch", image, tmp_path / "o", "--mask-grow", "999"), 2, "mask_grow must be between")
    one_clear_line(run_cli("batch", image, tmp_path / "o", "--png-level", "12"), 2, "invalid choice")
    r = run_cli("batch", image, tmp_path / "o", "-m", "u2netp", "--models-dir", tmp_path / "fetched", "--no-progress",
                env=catalog_at(closed_port_url()))
    one_clear_line(r, 2, "ModelNotAvailableError", "offline or unreachable")
    (tmp_path / "a-file").write_text("x")
    r = run_cli("batch", image, tmp_path / "a-file", "--models-dir", models_dir, "--no-progress")
    one_clear_line(r, 2, f"cannot write to {tmp_path / 'a-file'}")


def test_batch_command_interrupted_by_ctrl_c_while_fetching_its_model(inputs, model_server, catalog_at, tmp_path):
    folder = tmp_path / "fetched"
    r = interrupt_when_downloading(["batch", inputs / "horse.png", tmp_path / "o", "-m", "u2netp", "--models-dir",
                                    folder, "--no-progress"], folder, catalog_at(f"{model_server}/slow/"))
    one_clear_line(r, 130, "remove-background batch: interrupted")
    assert leftovers(folder) == []


STOP_WHEN_PROBING = """
import os, signal, time
from remove_background.cli import doctor
def probe(available):
    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, while doctor creates its test sessions
    time.sleep(30)
doctor.loadable_providers = probe
"""


def test_doctor_command_errors(tmp_path):
    one_clear_line(run_cli("doctor", "--bogus"), 2, "unrecognized arguments: --bogus")
    r = run_cli("doctor", "--root", tmp_path / "nowhere")  # a finding, not an error: the report says it, on stdout
    assert r.returncode == 1 and r.stderr == "", r.stderr
    assert r.stdout.strip().splitlines()[-1].startswith("not all good: 1 thing to fix")
    assert f"1. the InvokeAI root {tmp_path / 'nowhere'} does not exist" in r.stdout
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(STOP_WHEN_PROBING)
    r = run_cli("doctor", env={"PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")])})
    one_clear_line(r, 130, "remove-background doctor: interrupted")
    r = subprocess.run(f'"{EXE}" doctor | head -1', shell=True, capture_output=True, text=True)
    assert r.stdout.startswith("remove-background ") and r.stderr == ""  # its reader went away: nothing to say


# --- doctor: the folders the commands really use, fixes that put files there, and a verdict that follows the findings


def test_doctor_reports_the_folders_the_commands_use_and_its_fetch_commands_fill_them(model_server, catalog_at,
                                                                                      tmp_path):
    """No --models-dir: the command line's folder ($REMOVE_BACKGROUND_MODELS here); with a root, the node's
    <models dir>/rembg as invokeai.yaml sets it. Each printed fetch command, run as printed, fills its column."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "invokeai.yaml").write_text("schema_version: 4.0.2\nmodels_dir: /elsewhere/m  # moved\n".replace(
        "/elsewhere/m", str(tmp_path / "invokeai-models")))
    env = {**catalog_at(f"{model_server}/good/"), "REMOVE_BACKGROUND_MODELS": str(tmp_path / "cli-models")}

    def report() -> str:
        r = run_cli("doctor", "--root", root, env=env)
        assert "Traceback" not in r.stderr, r.stderr
        return r.stdout

    text = report()
    assert f"command line (remove-background, download, batch, Python API): {tmp_path / 'cli-models'}" in text
    assert f"node (InvokeAI at {root}): {tmp_path / 'invokeai-models' / 'rembg'}" in text
    fetch = [line.split(": ", 1)[1] for line in text.splitlines() if "fetch one now" in line]
    assert fetch == ["remove-background download MODEL",
                     f'remove-background download MODEL --models-dir "{tmp_path / "invokeai-models" / "rembg"}"']
    [u2netp_row] = [line for line in text.splitlines() if line.startswith("  u2netp ")]
    assert u2netp_row.split()[2:] == ["missing", "missing"]
    for column, command in enumerate(fetch):
        r = subprocess.run(command.replace("remove-background", f'"{EXE}"').replace("MODEL", "u2netp"), shell=True,
                           capture_output=True, text=True, env={**os.environ, **env})
        assert r.returncode == 0, r.stderr
        [u2netp_row] = [line for line in report().splitlines() if line.startswith("  u2netp ")]
        assert u2netp_row.split()[2:] == [["verified", "4.6", "MB", "missing"],
                                          ["verified", "4.6", "MB", "verified", "4.6", "MB"]][column]


def test_doctor_marks_a_file_used_from_rembgs_folder(tmp_path, models_dir, monkeypatch):
    monkeypatch.setenv("U2NET_HOME", str(models_dir))
    out = io.StringIO()
    doctor.run(models_dir=tmp_path / "empty", out=out, available=["CPUExecutionProvider"])
    [u2netp_row] = [line for line in out.getvalue().splitlines() if line.startswith("  u2netp ")]
    assert "present*" in u2netp_row and "* = in rembg's own folder" in out.getvalue()


def doctor_text(monkeypatch, tmp_path, versions=None, **run) -> tuple[int, list]:
    """doctor's exit code and lines, with ``versions`` standing in for what is installed (None: not installed)."""
    real = doctor._version
    versions = versions or {}
    monkeypatch.setattr(doctor, "_version", lambda d: versions[d] if d in versions else real(d))
    out = io.StringIO()
    code = doctor.run(root=tmp_path, models_dir=tmp_path, out=out, **{"available": ["CPUExecutionProvider"], **run})
    return code, out.getvalue().splitlines()


def fake_cv2(monkeypatch, contrib: bool):
    """Mocked: the state of the cv2 module (InvokeAI's contrib build intact or overwritten) that cannot be made in
    the shared test environment without breaking it."""
    import importlib.machinery
    import types

    module = types.ModuleType("cv2")
    module.__spec__ = importlib.machinery.ModuleSpec("cv2", None)  # installed, as far as find_spec can tell
    if contrib:
        module.ximgproc = types.SimpleNamespace(thinning=lambda *a: None)
    monkeypatch.setitem(sys.modules, "cv2", module)


TWO_OPENCVS = {"opencv-contrib-python": "4.11.0.86", "opencv-python-headless": "4.11.0.86", "opencv-python": None,
               "opencv-contrib-python-headless": None}


def test_doctor_says_all_good_only_without_a_warning(monkeypatch, tmp_path):
    """Two OpenCV packages with InvokeAI's contrib build in place (issue 27: it warned, then said "all good"): a
    note that says why it is harmless, and all good. The same two with the contrib build overwritten: a fix."""
    fake_cv2(monkeypatch, contrib=True)
    code, lines = doctor_text(monkeypatch, tmp_path, TWO_OPENCVS)
    assert code == 0 and lines[-1] == "all good"
    [note] = [line for line in lines if "share one 'cv2'" in line]
    assert note.startswith("  note (harmless): ") and "cv2.ximgproc works" in note
    fake_cv2(monkeypatch, contrib=False)
    code, lines = doctor_text(monkeypatch, tmp_path, TWO_OPENCVS)
    assert code == 1 and "all good" not in lines
    assert lines[-3:] == ["to fix:", lines[-2], "not all good: 1 thing to fix, then run 'remove-background doctor' again"]
    assert "opencv-python-headless overwrote InvokeAI's opencv-contrib-python==4.11.0.86" in lines[-2]
    assert "--force-reinstall opencv-contrib-python==4.11.0.86" in lines[-2]


def test_doctor_lists_fixes_most_urgent_first(monkeypatch, tmp_path):
    """A provider that does not load (mocked CUDA provider: the run is slower), a missing package (our node cannot
    run) and numpy 2 (InvokeAI itself breaks), found in that order: fixed in the reverse one."""
    monkeypatch.setattr(doctor.dependencies, "missing", lambda: ["pymatting"])
    code, lines = doctor_text(monkeypatch, tmp_path, {"numpy": "2.1.0"},
                              available=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert code == 1
    at = lines.index("to fix:")
    assert lines[at + 1].startswith("  1. numpy 2.1.0 breaks InvokeAI")
    assert lines[at + 2].startswith("  2. missing pymatting: ")
    assert lines[at + 3].startswith("  3. CUDAExecutionProvider is offered but cannot load")
    assert lines[-1] == "not all good: 3 things to fix; fix 1 first, then run 'remove-background doctor' again"


@pytest.mark.parametrize("gpu_files_in_place", [True, False])
def test_doctor_on_two_onnxruntime_packages_mocked_gpu_build(monkeypatch, tmp_path, gpu_files_in_place):
    """onnxruntime and onnxruntime-gpu both installed (mocked: the GPU build cannot be installed here): harmless
    when the GPU build's files won (its providers are offered and load), a fix when the CPU build's did."""
    monkeypatch.setattr(doctor, "installed_ort_distributions",
                        lambda: ["onnxruntime==1.19.2", "onnxruntime-gpu==1.19.2"])
    available = ["CUDAExecutionProvider", "CPUExecutionProvider"] if gpu_files_in_place else ["CPUExecutionProvider"]
    monkeypatch.setattr(doctor, "loadable_providers", lambda names: {n: True for n in names})
    monkeypatch.setattr(doctor, "torch_route_installed", lambda: True)
    code, lines = doctor_text(monkeypatch, tmp_path, available=available)
    [clash] = [line for line in lines if "share one 'onnxruntime'" in line]
    if gpu_files_in_place:
        assert code == 0 and lines[-1] == "all good"
        assert clash.startswith("  note (harmless): ") and "onnxruntime-gpu's files are the ones in place" in clash
    else:
        assert code == 1 and clash.startswith("  1. ") and "--force-reinstall onnxruntime-gpu==1.19.2" in clash
