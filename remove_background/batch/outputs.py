"""A batch job's output folder, kept so that the job can be stopped anywhere and run again.

- inputs: every image among the given files and folders, each with its output names (``NAME.png`` and
  ``NAME.mask.png``, or the mask alone; sub-folders kept), never a file of the output folder itself;
- done or not: every output a whole PNG (each chunk's CRC, IEND last), newer than its input and than the job file's
  options; anything else is redone;
- writes: a temp file in the same folder, flushed to disk, renamed over the name, so no partial file is ever under an
  output's name; temp files a killed run left are removed at the next start;
- the job file (``.remove-background-batch.json``): the options, and since when outputs were made with them;
- the failure manifest (``remove-background-failures.json``): the inputs that failed, with their errors;
- Ray's log (``remove-background-ray.log``): what Ray itself printed while it ran the job, appended run by run.

A folder that cannot be written (permissions, a read-only or full disk, a folder gone) raises
``OutputFolderError``, once: every later output would fail the same way. Only an error that belongs to one output's
own name (too long, a folder in its place) is that input's failure. No Ray here: ``batch`` drives it.
"""

from __future__ import annotations

import errno
import json
import os
import struct
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

from ..errors import RemoveBackgroundError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
MANIFEST_NAME = "remove-background-failures.json"
RAY_LOG_NAME = "remove-background-ray.log"
JOB_NAME = ".remove-background-batch.json"
TEMP_MARK = ".rb-tmp-"
JOB_FORMAT = 1
NAME_ERRNOS = {errno.ENAMETOOLONG, errno.EISDIR}  # the output's own name is the problem, not its folder


class OutputFolderError(RemoveBackgroundError):
    """An output folder cannot be written: the job stops, what it wrote stays whole, and a re-run carries on."""

    def __init__(self, folder: Path, error: OSError):
        self.folder, self.error = Path(folder), error
        why = f"[Errno {error.errno}] {error.strerror}" if error.strerror else str(error)
        super().__init__(f"cannot write to {self.folder}: {type(error).__name__}: {why}")


@dataclass
class Item:
    src: Path  # absolute input path
    rel: Path  # path relative to the input folder (its output layout)
    targets: list  # output paths: [cut-out, mask] or [mask]


@dataclass
class Plan:
    pending: list = field(default_factory=list)  # [Item] to do
    skipped: int = 0  # complete from an earlier run
    failed: list = field(default_factory=list)  # [(input, error)]: outputs that clash, known before any work
    record: dict = field(default_factory=dict)  # the job file's content


def collect_inputs(paths: Iterable[Path], recursive: bool, exclude: Optional[Path] = None) -> list:
    """(file, path relative to the folder it was found in) for every image among ``paths``; files under ``exclude``
    (the output folder, when it is inside an input folder) and temp files are left out. FileNotFoundError names a
    missing input."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            for f in sorted(path.glob("**/*" if recursive else "*")):
                if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and TEMP_MARK not in f.name:
                    found.append((f, f.relative_to(path)))
        elif path.exists():
            found.append((path, Path(path.name)))
        else:
            raise FileNotFoundError(f"input {path} does not exist")
    return [(f, rel) for f, rel in found if exclude is None or exclude not in f.parents]


def output_paths(output: Path, rel: Path, mask_only: bool) -> list:
    """``[OUT/rel/NAME.png, OUT/rel/NAME.mask.png]``, or the mask alone."""
    stem = output / rel.parent / rel.stem
    mask = stem.with_name(stem.name + ".mask.png")
    return [mask] if mask_only else [stem.with_name(stem.name + ".png"), mask]


def png_is_complete(path: Path) -> bool:
    """True when ``path`` is a whole PNG: signature, every chunk present with a good CRC, and IEND at the end."""
    try:
        with open(path, "rb") as f:
            if f.read(8) != b"\x89PNG\r\n\x1a\n":
                return False
            while True:
                head = f.read(8)
                if len(head) != 8:
                    return False
                length, kind = struct.unpack(">I4s", head)
                data = f.read(length)
                crc = f.read(4)
                if len(data) != length or len(crc) != 4:
                    return False
                if zlib.crc32(data, zlib.crc32(kind)) != struct.unpack(">I", crc)[0]:
                    return False
                if kind == b"IEND":
                    return f.read(1) == b""
    except OSError:
        return False


def is_done(item: Item, since_ns: int = 0) -> bool:
    """Every output whole, newer than the input and written since the job's options were set."""
    try:
        newer = max(os.stat(item.src).st_mtime_ns, since_ns)
        return all(t.stat().st_mtime_ns >= newer and png_is_complete(t) for t in item.targets)
    except OSError:
        return False


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temp file in ``path``'s (existing) folder, flush it to disk, then rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name[:64] + TEMP_MARK)  # short: a name near
    # the file system's limit must not fail for its temp name
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def clean_temp_files(output: Path) -> None:
    """Remove the temp files a killed run left (never at an output's name, so never mistaken for one)."""
    if output.is_dir():
        for f in output.rglob("*" + TEMP_MARK + "*"):
            try:
                f.unlink()
            except OSError:
                pass


class OutputFolder:
    """One job's output folder: ``plan`` (reads only), ``start``, ``write`` per input, ``finish``."""

    def __init__(self, root: Path, options: dict, mask_only: bool):
        self.root, self.options, self.mask_only = Path(root), options, mask_only
        self.job_file, self.manifest = self.root / JOB_NAME, self.root / MANIFEST_NAME
        self.ray_log = self.root / RAY_LOG_NAME

    def plan(self, found: list) -> Plan:
        """What is complete already, what is to do, and which outputs clash (two inputs, or an input's own name).
        The job keeps the job file's start time while the options stay the same (the PNG level changes no pixel)."""
        plan = Plan(record={"options": self.options, "format": JOB_FORMAT, "since_ns": time.time_ns()})
        try:
            old = json.loads(self.job_file.read_text())
            if old.get("options") == self.options and old.get("format") == JOB_FORMAT:
                plan.record["since_ns"] = int(old["since_ns"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
        inputs = {src for src, _ in found}
        claimed: dict = {}
        for src, rel in found:
            item = Item(src, rel, output_paths(self.root, rel, self.mask_only))
            clash = next((claimed[t] for t in item.targets if t in claimed), None)
            if clash is not None:
                plan.failed.append((str(src), f"OutputClash: its output {item.targets[-1]} is also {clash}'s; "
                                              "rename one of them"))
            elif any(t in inputs for t in item.targets):
                plan.failed.append((str(src), f"OutputClash: its output {item.targets[0]} would overwrite an "
                                              "input; choose another output folder"))
            else:
                claimed.update((t, src) for t in item.targets)
                if is_done(item, plan.record["since_ns"]):
                    plan.skipped += 1
                else:
                    plan.pending.append(item)
        return plan

    def start(self, plan: Plan) -> None:
        """Create the folder, remove a killed run's temp files, write the job file (OutputFolderError if it can't)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            clean_temp_files(self.root)
            write_atomic(self.job_file, json.dumps(plan.record, indent=1).encode())
        except OSError as e:
            raise OutputFolderError(self.root, e) from None

    def open_ray_log(self):
        """Ray's log, opened to append (binary); OutputFolderError if it cannot be."""
        try:
            return open(self.ray_log, "ab")
        except OSError as e:
            raise OutputFolderError(self.root, e) from None

    def write(self, item: Item, files: list) -> None:
        """Write ``files`` (bytes, one per target; the mask last, so both present means both whole). OSError: this
        output's own name cannot be written; OutputFolderError: its folder cannot (the job must stop)."""
        folder = item.targets[0].parent
        try:
            if not self.root.is_dir():  # gone (or replaced): never quietly recreate the output folder mid-job
                raise FileNotFoundError(errno.ENOENT, "the output folder is gone", str(self.root))
            folder.mkdir(parents=True, exist_ok=True)
            for target, data in zip(item.targets, files):
                write_atomic(target, data)
        except OSError as e:
            if e.errno in NAME_ERRNOS:
                raise
            raise OutputFolderError(self.root if not self.root.is_dir() else folder, e) from None

    def finish(self, failed: list, written: int, skipped: int) -> Optional[Path]:
        """Write the failure manifest when anything failed (returns its path), else remove an earlier run's."""
        try:
            if failed:
                body = {"failed": [{"input": p, "error": e} for p, e in failed], "count": len(failed),
                        "written": written, "skipped": skipped, "options": self.options}
                write_atomic(self.manifest, json.dumps(body, indent=1).encode())
                return self.manifest
            if self.manifest.exists():
                self.manifest.unlink()  # an earlier run's failures are all fixed now
        except OSError as e:
            raise OutputFolderError(self.root, e) from None
        return None
