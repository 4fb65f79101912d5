"""Model files: find, verify once, download atomically, fail clearly. Against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.server
import os
import socket
import threading
from pathlib import Path

import pytest

from remove_background import model_files
from remove_background.catalog import ModelFile, ModelInfo
from remove_background.errors import ModelChecksumError, ModelNotAvailableError

PAYLOAD = os.urandom(3 * 1024 * 1024 + 123)
MD5 = "md5:" + hashlib.md5(PAYLOAD).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.startswith("/good"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)
        elif self.path.startswith("/broken"):  # promise everything, send half, hang up
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        else:
            self.send_error(404)


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def spec(url: str, checksum=MD5, name="tiny.onnx") -> ModelFile:
    return ModelFile(name, url, checksum, 3)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != model_files.VERIFIED_INDEX) if folder.exists() else []


def test_download_succeeds_with_progress_and_is_atomic(server, tmp_path):
    seen = []
    path = model_files.ensure_file(spec(f"{server}/good"), tmp_path, progress=lambda n, d, t: seen.append((d, t)))
    assert path == tmp_path / "tiny.onnx"
    assert path.read_bytes() == PAYLOAD
    assert leftovers(tmp_path) == ["tiny.onnx"]
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD)) and len(seen) >= 3
    assert model_files.is_verified(path, MD5)


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    bad = "md5:" + "0" * 32
    with pytest.raises(ModelChecksumError, match="checksum") as e:
        model_files.ensure_file(spec(f"{server}/good", checksum=bad), tmp_path)
    assert "corrupt" in str(e.value)
    assert leftovers(tmp_path) == []


def test_interrupted_transfer_leaves_nothing(server, tmp_path):
    with pytest.raises(ModelNotAvailableError, match="broke off"):
        model_files.ensure_file(spec(f"{server}/broken"), tmp_path)
    assert leftovers(tmp_path) == []


def test_cancel_during_download_leaves_nothing(server, tmp_path):
    class Canceled(Exception):
        pass

    def cancel(name, done, total):
        if done > 1024 * 1024:
            raise Canceled()

    with pytest.raises(Canceled):
        model_files.ensure_file(spec(f"{server}/good"), tmp_path, progress=cancel)
    assert leftovers(tmp_path) == []


def test_http_error_is_clear(server, tmp_path):
    with pytest.raises(ModelNotAvailableError, match="tiny.onnx"):
        model_files.ensure_file(spec(f"{server}/missing"), tmp_path)
    assert leftovers(tmp_path) == []


def test_offline_names_file_folder_and_url(tmp_path):
    with socket.socket() as s:  # a port nobody listens on: what "offline" looks like to urllib
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/u2net.onnx"
    with pytest.raises(ModelNotAvailableError) as e:
        model_files.ensure_file(spec(url, name="u2net.onnx"), tmp_path / "rembg")
    message = str(e.value)
    assert "u2net.onnx" in message and str(tmp_path / "rembg") in message and url in message
    assert "ConnectionRefusedError" not in message.split("(")[0]
    assert leftovers(tmp_path / "rembg") == []


def test_corrupt_local_file_fails_with_checksum_message(tmp_path):
    (tmp_path / "tiny.onnx").write_bytes(PAYLOAD[:1000])
    with pytest.raises(ModelChecksumError, match="corrupt or truncated"):
        model_files.ensure_file(spec("http://127.0.0.1:9/none"), tmp_path)


def test_file_is_hashed_once_then_again_when_it_changes(tmp_path, monkeypatch):
    path = tmp_path / "tiny.onnx"
    path.write_bytes(PAYLOAD)
    calls = []
    real = model_files.file_checksum
    monkeypatch.setattr(model_files, "file_checksum", lambda p, a: calls.append(p) or real(p, a))
    for _ in range(3):
        model_files.ensure_file(spec("http://127.0.0.1:9/none"), tmp_path)
    assert len(calls) == 1
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: must be hashed again
    model_files.ensure_file(spec("http://127.0.0.1:9/none"), tmp_path)
    assert len(calls) == 2
    path.write_bytes(PAYLOAD[:-1] + b"\0")  # same size, new content and mtime
    with pytest.raises(ModelChecksumError):
        model_files.ensure_file(spec("http://127.0.0.1:9/none"), tmp_path)


def test_rembg_download_is_reused_in_place(tmp_path, monkeypatch):
    rembg_home = tmp_path / "u2net"
    rembg_home.mkdir()
    (rembg_home / "tiny.onnx").write_bytes(PAYLOAD)
    monkeypatch.setenv("U2NET_HOME", str(rembg_home))
    ours = tmp_path / "models" / "rembg"
    path = model_files.ensure_file(spec("http://127.0.0.1:9/none"), ours)
    assert path == rembg_home / "tiny.onnx"
    assert not (ours / "tiny.onnx").exists()  # not copied twice


@pytest.mark.parametrize("env", ["REMBG_HOME", "XDG_DATA_HOME", "U2NET_HOME"])
def test_newer_rembgs_per_model_folders_are_searched_and_never_written(tmp_path, monkeypatch, env):
    """rembg 2.0.86 keeps files in <home>/models/<model>/ (home: $U2NET_HOME, $REMBG_HOME, $XDG_DATA_HOME/rembg,
    ~/.rembg): found there, verified once (the record in our folder), nothing written into rembg's folders."""
    for name in ("U2NET_HOME", "REMBG_HOME", "XDG_DATA_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    home = tmp_path / "data" / "rembg" if env == "XDG_DATA_HOME" else tmp_path / "rembg-home"
    monkeypatch.setenv(env, str(home.parent if env == "XDG_DATA_HOME" else home))
    folder = home / "models" / "tiny"
    folder.mkdir(parents=True)
    (folder / "tiny.onnx").write_bytes(PAYLOAD)
    before = sorted(p.relative_to(home) for p in home.rglob("*"))
    ours = tmp_path / "models"
    hashed = []
    real = model_files.file_checksum
    monkeypatch.setattr(model_files, "file_checksum", lambda *a: hashed.append(1) or real(*a))
    for _ in range(2):
        assert model_files.ensure_file(spec("http://127.0.0.1:9/none"), ours) == folder / "tiny.onnx"
    assert len(hashed) == 1  # remembered, in our folder
    assert sorted(p.relative_to(home) for p in home.rglob("*")) == before
    assert leftovers(ours) == [] and (ours / model_files.VERIFIED_INDEX).is_file()
    info = ModelInfo("tiny", "Tiny", (spec("http://x/none"),), 320, (0, 0, 0), (1, 1, 1), "minmax", "MIT", True, "t")
    assert model_files.model_status(info, ours)[0][1:] == (folder / "tiny.onnx", "verified")
    (folder / "tiny.onnx").write_bytes(PAYLOAD[:-1] + b"\0")  # rembg's copy changed: checked again, and refused
    with pytest.raises(ModelChecksumError):
        model_files.ensure_file(spec("http://127.0.0.1:9/none"), ours)


def test_concurrent_requests_download_once(server, tmp_path, monkeypatch):
    calls = []
    real = model_files.download
    monkeypatch.setattr(model_files, "download", lambda *a, **k: calls.append(1) or real(*a, **k))
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(model_files.ensure_file(spec(f"{server}/good"), tmp_path)))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(set(results)) == 1


def test_model_status_reports_without_hashing(tmp_path):
    info = ModelInfo("tiny", "Tiny", (spec("http://x/none"),), 320, (0, 0, 0), (1, 1, 1), "minmax", "MIT", True, "t")
    assert model_files.model_status(info, tmp_path)[0][2] == "missing"
    (tmp_path / "tiny.onnx").write_bytes(PAYLOAD)
    assert model_files.model_status(info, tmp_path)[0][2] == "present"
    model_files.ensure_model(info, tmp_path, allow_download=False)
    assert model_files.model_status(info, tmp_path)[0][2] == "verified"


def test_the_models_folder_rule(tmp_path, monkeypatch):
    """model_files' one rule: the node's <InvokeAI models dir>/rembg; elsewhere the folder given, else
    $REMOVE_BACKGROUND_MODELS, else ~/.cache/remove-background/models (under $XDG_CACHE_HOME when set)."""
    assert model_files.invokeai_models_dir(tmp_path / "models") == tmp_path / "models" / "rembg"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert model_files.models_dir_or_default("~/given") == tmp_path / "home" / "given"
    monkeypatch.setenv("REMOVE_BACKGROUND_MODELS", "~/env")
    assert model_files.models_dir_or_default() == tmp_path / "home" / "env"
    monkeypatch.delenv("REMOVE_BACKGROUND_MODELS")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert model_files.models_dir_or_default() == tmp_path / "home" / ".cache" / "remove-background" / "models"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert model_files.models_dir_or_default(None) == tmp_path / "xdg" / "remove-background" / "models"


def test_no_published_checksum_records_the_first_downloads_sha256(server, tmp_path):
    """A file with no published checksum (BiRefNet's release files, rembg's SAM files): the first download's
    sha256 is recorded beside it, and the file is checked against it from then on."""
    folder = tmp_path / "models"
    unpublished = spec(f"{server}/good", checksum=None)
    path = model_files.ensure_file(unpublished, folder, search_rembg_dirs=False)
    record = model_files.record_path(path)
    assert record.read_text() == f"{hashlib.sha256(PAYLOAD).hexdigest()}  tiny.onnx\n"  # sha256sum's format
    assert model_files.recorded_checksum(path) == "sha256:" + hashlib.sha256(PAYLOAD).hexdigest()
    assert leftovers(folder) == ["tiny.onnx", "tiny.onnx.sha256"]
    assert model_files.ensure_file(unpublished, folder, search_rembg_dirs=False) == path  # checked, not fetched
    path.write_bytes(PAYLOAD[:-1] + b"!")  # changed since its download
    with pytest.raises(ModelChecksumError, match="changed since it was downloaded.*Delete both"):
        model_files.ensure_file(unpublished, folder, search_rembg_dirs=False)
    placed = tmp_path / "placed"
    placed.mkdir()
    (placed / "tiny.onnx").write_bytes(b"placed by hand")  # no record: used as it is
    assert model_files.ensure_file(unpublished, placed, search_rembg_dirs=False) == placed / "tiny.onnx"
