"""Model files: where they live, finding them, verifying them once, downloading them atomically.

Where model files live, the one rule (the node, the Python API, the command line, ``download``, ``doctor`` and the
batch path all follow it; ``doctor`` shows the folders it gives on this machine):

- Inside InvokeAI (the node): ``<InvokeAI models dir>/rembg`` (``invokeai_models_dir``).
- Everywhere else: the folder given (``--models-dir``, ``models_dir=``), else ``$REMOVE_BACKGROUND_MODELS``, else
  ``~/.cache/remove-background/models`` (under ``$XDG_CACHE_HOME`` when set) (``models_dir_or_default``).
- In both, rembg's own downloads are searched too and used where they lie, never written (``rembg_dirs``): older
  rembg's flat ``$U2NET_HOME`` or ``~/.u2net``, and newer rembg's ``<home>/models/<model>/`` (home: ``$U2NET_HOME``,
  else ``$REMBG_HOME``, else ``$XDG_DATA_HOME/rembg`` or ``~/.rembg``, as in rembg 2.0.86). A missing file is
  downloaded into the first folder.

Layout: ``<folder>/<file name from the catalog>``. A file is hashed once; the result is remembered in
``.verified.json`` in our folder (beside the file, or keyed by its full path for a file of rembg's), keyed by size
and mtime, so a 1 GB file is not re-hashed on every run. Where no checksum is published, the sha256 of the first
download is recorded beside the file (``NAME.sha256``) and the file is checked against it from then on (a file
placed by hand, with no record, is used as it is).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterable, Optional

from .catalog import ModelFile, ModelInfo
from .errors import ModelChecksumError, ModelNotAvailableError

log = logging.getLogger(__name__)

VERIFIED_INDEX = ".verified.json"
CHUNK = 1 << 20

Progress = Callable[[str, int, Optional[int]], None]  # (file name, bytes done, total or None)

_index_lock = threading.Lock()
_download_locks: dict[Path, threading.Lock] = {}


INVOKEAI_SUBFOLDER = "rembg"
DEFAULT_FOLDER_TEXT = "$REMOVE_BACKGROUND_MODELS or ~/.cache/remove-background/models"  # for help texts
REMBG_FOLDERS_TEXT = "$U2NET_HOME, ~/.u2net, ~/.rembg/models"


def invokeai_models_dir(invokeai_models_path) -> Path:
    """The node's folder: ``<InvokeAI models dir>/rembg``."""
    return Path(invokeai_models_path) / INVOKEAI_SUBFOLDER


def default_models_dir() -> Path:
    """Where models go outside InvokeAI: ``$REMOVE_BACKGROUND_MODELS`` or ``~/.cache/remove-background/models``."""
    env = os.environ.get("REMOVE_BACKGROUND_MODELS")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "remove-background" / "models"


def models_dir_or_default(models_dir=None) -> Path:
    """The folder given (a ``str`` or ``Path``, ``~`` expanded), else ``default_models_dir()``."""
    return Path(models_dir).expanduser() if models_dir else default_models_dir()


def rembg_home() -> Path:
    """Newer rembg's home, as its ``BaseSession.rembg_home`` finds it; its files lie in ``<home>/models/<model>/``."""
    if os.environ.get("U2NET_HOME"):
        return Path(os.environ["U2NET_HOME"]).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    default = os.path.join(xdg, "rembg") if xdg else os.path.join("~", ".rembg")
    return Path(os.environ.get("REMBG_HOME", default)).expanduser()


def rembg_dirs() -> list[Path]:
    """Folders where rembg keeps its own downloads (searched, never written): the flat folder of older rembg, then
    each model's folder of newer rembg's layout."""
    dirs = []
    if os.environ.get("U2NET_HOME"):
        dirs.append(Path(os.environ["U2NET_HOME"]).expanduser())
    dirs.append(Path(os.environ.get("XDG_DATA_HOME", "~")).expanduser() / ".u2net")
    dirs.append(Path("~/.u2net").expanduser())
    try:
        dirs.extend(sorted(d for d in (rembg_home() / "models").iterdir() if d.is_dir()))
    except OSError:  # no such folder, or unreadable
        pass
    unique: list[Path] = []
    for d in dirs:
        if d not in unique:
            unique.append(d)
    return unique


def file_checksum(path: Path, algorithm: str) -> str:
    """Hash a file in chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _split(checksum: str) -> tuple[str, str]:
    algorithm, _, digest = checksum.partition(":")
    return algorithm.lower(), digest.lower()


def _stamp(path: Path) -> dict:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _index_place(path: Path, index_dir: Optional[Path]) -> tuple[Path, str]:
    """(folder of the index, key) for ``path``: beside it, or in our folder keyed by its full path when it lies
    elsewhere (rembg's folders are never written)."""
    if index_dir is None or path.parent == index_dir:
        return path.parent, path.name
    return index_dir, str(path.absolute())


def _read_index(folder: Path) -> dict:
    try:
        return json.loads((folder / VERIFIED_INDEX).read_text())
    except (OSError, ValueError):
        return {}


def _write_text(target: Path, text: str) -> None:
    """Write ``text`` to ``target`` atomically: a temporary file beside it, renamed into place, removed on failure."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _remember_verified(path: Path, checksum: str, index_dir: Optional[Path] = None) -> None:
    """Record that ``path`` matched ``checksum`` at its current size and mtime (best effort), in the index of
    ``index_dir`` (default: the file's folder)."""
    folder, key = _index_place(path, index_dir)
    with _index_lock:
        index = _read_index(folder)
        index[key] = {**_stamp(path), "checksum": checksum}
        try:
            folder.mkdir(parents=True, exist_ok=True)
            _write_text(folder / VERIFIED_INDEX, json.dumps(index, indent=1, sort_keys=True))
        except OSError:  # a read-only folder just means we hash again next time
            log.debug("could not write %s in %s", VERIFIED_INDEX, folder)


RECORD_SUFFIX = ".sha256"


def record_path(path: Path) -> Path:
    """Where the sha256 of a first download is recorded: ``NAME.sha256`` beside the file."""
    return path.with_name(path.name + RECORD_SUFFIX)


def recorded_checksum(path: Path) -> Optional[str]:
    """``sha256:<hex>`` recorded at the first download of ``path`` (a file with no published checksum), or None."""
    try:
        digest = record_path(path).read_text().split()[0].lower()
    except (OSError, IndexError):
        return None
    return f"sha256:{digest}" if len(digest) == 64 and all(c in "0123456789abcdef" for c in digest) else None


def _record_first_download(tmp: Path, target: Path) -> str:
    """Hash a finished download that has no published checksum and record it beside ``target`` (atomically)."""
    digest = file_checksum(tmp, "sha256")
    _write_text(record_path(target), f"{digest}  {target.name}\n")  # sha256sum's format
    return f"sha256:{digest}"


def expected_checksum(path: Path, spec: ModelFile) -> Optional[str]:
    """The checksum ``path`` must match: the published one, else the one recorded at its first download."""
    return spec.checksum or recorded_checksum(path)


def is_verified(path: Path, checksum: Optional[str], index_dir: Optional[Path] = None) -> bool:
    """True when ``path`` was hashed before at its current size and mtime and matched (the index as in
    ``_remember_verified``)."""
    if checksum is None:
        return path.is_file()
    folder, key = _index_place(path, index_dir)
    entry = _read_index(folder).get(key)
    try:
        return bool(entry) and entry.get("checksum") == checksum and entry == {**_stamp(path), "checksum": checksum}
    except OSError:
        return False


def verify(path: Path, spec: ModelFile, index_dir: Optional[Path] = None) -> None:
    """Raise ModelChecksumError unless ``path`` matches the catalog checksum, or where none is published the one
    recorded at its first download (hashing only when needed; the index as in ``_remember_verified``)."""
    checksum = expected_checksum(path, spec)
    if checksum is None or is_verified(path, checksum, index_dir):
        return
    algorithm, expected = _split(checksum)
    actual = file_checksum(path, algorithm)
    if actual != expected and spec.checksum is None:
        raise ModelChecksumError(
            f"Model file {path} changed since it was downloaded: its sha256 {actual} is not the {expected} recorded "
            f"then in {record_path(path)} (no checksum is published for it). Delete both files to download it "
            f"again from {spec.url}")
    if actual != expected:
        size = path.stat().st_size
        raise ModelChecksumError(
            f"Model file {path} is corrupt or truncated: {algorithm} checksum {actual} does not match the "
            f"expected {expected} ({size:,} bytes on disk, about {spec.approx_mb} MB expected). Delete it and "
            f"download it again from {spec.url}"
        )
    _remember_verified(path, checksum, index_dir)


def find_file(spec: ModelFile, models_dir: Path, extra_dirs: Iterable[Path] = ()) -> Optional[Path]:
    """Return the first existing copy of ``spec``: our folder first, then rembg's folders."""
    for folder in (models_dir, *extra_dirs):
        candidate = folder / spec.filename
        if candidate.is_file():
            return candidate
    return None


def _missing_message(spec: ModelFile, models_dir: Path, reason: str) -> str:
    return (
        f"Model file '{spec.filename}' is not in {models_dir} and could not be downloaded ({reason}). "
        f"Download it from {spec.url} and place it at {models_dir / spec.filename} "
        f"(checksum {spec.checksum or 'not published'})."
    )


def download(spec: ModelFile, models_dir: Path, progress: Optional[Progress] = None, timeout: float = 30.0) -> Path:
    """Download ``spec`` into ``models_dir`` atomically, verify it, and return its path.

    The bytes go to a temporary file in the same folder, renamed into place only
    when complete and verified. On any failure nothing is left behind.
    """
    models_dir.mkdir(parents=True, exist_ok=True)
    target = models_dir / spec.filename
    fd, tmp_name = tempfile.mkstemp(dir=models_dir, prefix=f".{spec.filename}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                response = urllib.request.urlopen(spec.url, timeout=timeout)
            except urllib.error.HTTPError as e:
                raise ModelNotAvailableError(_missing_message(spec, models_dir, f"HTTP {e.code} {e.reason}")) from None
            except (urllib.error.URLError, OSError, ValueError) as e:
                reason = getattr(e, "reason", None) or e
                raise ModelNotAvailableError(
                    _missing_message(spec, models_dir, f"offline or unreachable: {reason}")
                ) from None
            with response:
                total = response.headers.get("Content-Length")
                total_bytes = int(total) if total and total.isdigit() else None
                done = 0
                while True:
                    try:
                        chunk = response.read(CHUNK)
                    except (OSError, ValueError, http.client.HTTPException) as e:  # reset, timeout, IncompleteRead
                        raise ModelNotAvailableError(
                            _missing_message(spec, models_dir, f"the transfer broke off after {done:,} bytes: {e}")
                        ) from None
                    if not chunk:
                        break
                    out.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(spec.filename, done, total_bytes)
                if total_bytes is not None and done != total_bytes:
                    raise ModelNotAvailableError(
                        _missing_message(spec, models_dir, f"the transfer broke off at {done:,} of {total_bytes:,} bytes")
                    )
        if spec.checksum:
            algorithm, expected = _split(spec.checksum)
            actual = file_checksum(tmp, algorithm)
            if actual != expected:
                raise ModelChecksumError(
                    f"Downloaded '{spec.filename}' from {spec.url} is corrupt: {algorithm} checksum {actual} does "
                    f"not match the expected {expected}. Nothing was saved; try again, or place a good copy at "
                    f"{target}."
                )
        checksum = spec.checksum or _record_first_download(tmp, target)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _remember_verified(target, checksum)
    return target


def ensure_file(
    spec: ModelFile,
    models_dir: Path,
    progress: Optional[Progress] = None,
    allow_download: bool = True,
    search_rembg_dirs: bool = True,
) -> Path:
    """Return a verified local path for ``spec``, downloading it if missing."""
    extra = rembg_dirs() if search_rembg_dirs else []
    found = find_file(spec, models_dir, extra)
    if found is not None:
        verify(found, spec, models_dir)
        return found
    if not allow_download:
        raise ModelNotAvailableError(_missing_message(spec, models_dir, "downloads are disabled"))
    lock = _download_locks.setdefault(models_dir / spec.filename, threading.Lock())
    with lock:  # two threads asking for the same missing file download it once
        found = find_file(spec, models_dir)
        if found is not None:
            verify(found, spec, models_dir)
            return found
        log.info("Downloading %s from %s into %s", spec.filename, spec.url, models_dir)
        return download(spec, models_dir, progress)


def ensure_model(
    model: ModelInfo,
    models_dir: Path,
    progress: Optional[Progress] = None,
    allow_download: bool = True,
    search_rembg_dirs: bool = True,
) -> list[Path]:
    """Return verified local paths for every file ``model`` needs."""
    return [ensure_file(f, models_dir, progress, allow_download, search_rembg_dirs) for f in model.files]


def model_status(model: ModelInfo, models_dir: Path) -> list[tuple[ModelFile, Optional[Path], str]]:
    """For each file: (spec, path or None, 'verified' | 'present' | 'missing'), without hashing."""
    rows = []
    for spec in model.files:
        path = find_file(spec, models_dir, rembg_dirs())
        if path is None:
            rows.append((spec, None, "missing"))
        else:
            rows.append((spec, path, "verified" if is_verified(path, expected_checksum(path, spec), models_dir) else "present"))
    return rows
