"""Batch removal on Ray Data: ``remove-background batch IN... OUT_DIR --workers N`` and ``run_batch()``.

The third front door beside the node and the CLI; like them it calls the one core (``pipeline.remove``) and
imports neither of them. Only this module imports Ray (the optional ``ray`` extra).

Flow::

    driver: options + model + provider checked once  ->  inputs listed, complete outputs skipped
    ray.data.read_binary_files(pending)  ->  map_batches(_Remover, compute=ActorPoolStrategy(size=N))
        each actor: one cached session (its own process), decode -> remove() -> PNG encode, per file
    driver: iter_rows -> atomic writes (temp file in the same folder + os.replace), progress, failure manifest

Outputs mirror the CLI: ``NAME.png`` (cut-out) and ``NAME.mask.png`` per input, sub-folders kept with ``-r``.
The pixels are exactly the single-image API's (same ``remove()``); the PNGs are written at zlib level 1 by
default, 3x faster than the CLI's level 6 (``--png-level 6`` gives the CLI's very bytes). The driver does
all the writing, so on a cluster only the inputs and the models folder need to be readable by every node; the
output folder is the driver's.

Resumable: an input is skipped when every output it needs exists, reads back as a whole PNG (every chunk's CRC
checked, up to IEND), is newer than the input, and was written since the folder's job file took these options
(other options, or files from before the first batch run into the folder, are redone). Anything else is redone.
Temp files are never at an output's name, so a crash cannot leave a half-written output.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Union

from .errors import (
    DependencyMissingError,
    ModelChecksumError,
    ModelNotAvailableError,
    ProviderUnavailableError,
    RemoveBackgroundError,
)

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
MANIFEST_NAME = "remove-background-failures.json"
JOB_NAME = ".remove-background-batch.json"
TEMP_MARK = ".rb-tmp-"
PREFLIGHT_ERRORS = (ModelNotAvailableError, ModelChecksumError, ProviderUnavailableError, DependencyMissingError)


# --- options: the one place that knows how the batch path hands options to the core ------------------------------


def build_options(options: Union[dict, Any, None] = None):
    """A ``RemovalOptions`` from a dict of option keywords (or a ``RemovalOptions``, or None for the defaults).
    ValueError/TypeError name the bad option."""
    from .options import RemovalOptions

    if isinstance(options, RemovalOptions):
        return options
    return RemovalOptions.build(None, **dict(options or {}))


def options_record(options) -> dict:
    """JSON-able description of the options (the job file compares it between runs)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(options).items()}


def remove_one(image, options, models_dir, device, allow_download):
    """The single-image API, exactly as the CLI calls it."""
    from .pipeline import remove

    return remove(image, options, models_dir=models_dir, device=device, allow_download=allow_download)


DEFAULT_BATCH_SIZE = 4  # images per map_batches call; the overlap of two images restarts at each call
PNG_LEVEL = 1  # zlib level: at 1 MP the cut-out encodes in 45 ms at level 1, 150 ms at Pillow's default 6 (the
# CLI's), for files about 16 % larger; the pixels are the same at every level


def encode_png(image, level: int = PNG_LEVEL) -> bytes:
    """PNG bytes of ``image`` at zlib ``level`` (``image.save(path)``'s bytes when ``level`` is 6)."""
    buf = io.BytesIO()
    image.save(buf, "PNG", compress_level=level)
    return buf.getvalue()


# --- files: listing, output names, completeness, atomic writes -----------------------------------------------------


@dataclass
class Item:
    src: Path  # absolute input path
    rel: Path  # path relative to the input folder (its output layout)
    targets: list  # output paths: [cut-out, mask] or [mask]


def collect_inputs(paths: Iterable[Path], recursive: bool) -> list[tuple[Path, Path]]:
    """(file, path relative to the folder it was found in) for every image among ``paths``."""
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
    return found


def output_paths(output: Path, rel: Path, mask_only: bool) -> list[Path]:
    stem = output / rel.parent / rel.stem
    mask = stem.with_name(stem.name + ".mask.png")
    return [mask] if mask_only else [stem.with_name(stem.name + ".png"), mask]


def png_is_complete(path: Path) -> bool:
    """True when ``path`` is a whole PNG: signature, every chunk present with a good CRC, and IEND at the end."""
    import struct
    import zlib

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
    """Write ``data`` to a temp file in ``path``'s folder, flush it to disk, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + TEMP_MARK)
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


def _clean_temp_files(output: Path) -> None:
    """Temp files a killed run left behind (never at an output's name, so never mistaken for one)."""
    if output.is_dir():
        for f in output.rglob("*" + TEMP_MARK + "*"):
            try:
                f.unlink()
            except OSError:
                pass


# --- the Ray side --------------------------------------------------------------------------------------------------


def import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise DependencyMissingError(
            f"The batch path needs Ray Data ({e}). Install it with: pip install 'remove-background[ray]'"
        ) from None
    return ray


class _Remover:
    """One per Ray actor: builds the options once, creates its session once (the process's session cache), then
    decodes, removes and encodes each file. A file that fails is returned with its error; the job goes on.

    ``images_at_once`` threads share each call's images, so one image's decoding and PNG encoding overlap another's
    model run. On CPUs (``cpu_runs``) the model runs stay one at a time in the actor, so its ORT threads (its share
    of the cores) are never oversubscribed; only the decoding and encoding go beside them."""

    def __init__(self, options: dict, models_dir, device, allow_download, ort_threads, png_level=PNG_LEVEL,
                 images_at_once: int = 1, cpu_runs: Optional[int] = None):
        if ort_threads:
            os.environ["OMP_NUM_THREADS"] = str(ort_threads)  # sessions.session_options reads it
        if cpu_runs:
            from . import sessions

            sessions.CPU_GATE.reset(cpu_runs)
        self.options = build_options(options)
        self.models_dir, self.device, self.allow_download = models_dir, device, allow_download
        self.mask_only = self.options.output_mode == "mask_only"
        self.png_level = png_level
        self.pool = None
        if images_at_once > 1:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(images_at_once, thread_name_prefix="remove-background-image")
        from .pipeline import load_model

        load_model(self.options.model, self.options.provider, models_dir, device, allow_download=allow_download)

    def _one(self, data: bytes) -> tuple[bytes, bytes, str, float]:
        from PIL import Image

        t0 = time.perf_counter()
        cut = mask = b""
        error = ""
        try:
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                result = remove_one(image, self.options, self.models_dir, self.device, self.allow_download)
            if not self.mask_only:
                cut = encode_png(result.image, self.png_level)
            mask = encode_png(result.mask, self.png_level)
        except Image.UnidentifiedImageError:
            error = "UnidentifiedImageError: not an image file that Pillow can read"
        except Exception as e:  # one bad file never stops the job: it goes to the failure manifest
            error = f"{type(e).__name__}: {e}"
        return cut, mask, error, time.perf_counter() - t0

    def __call__(self, batch: dict) -> dict:
        from .sessions import CPU_GATE

        started = time.time()
        data = list(batch["bytes"])
        model_before = CPU_GATE.run_seconds
        results = list(self.pool.map(self._one, data) if self.pool and len(data) > 1 else map(self._one, data))
        model_share = (CPU_GATE.run_seconds - model_before) / max(1, len(data))  # CPU model runs (0 on a GPU)
        out: dict[str, list] = {"path": [str(p) for p in batch["path"]], "cutout": [], "mask": [], "error": [],
                                "seconds": [], "model_seconds": [], "started": []}
        for cut, mask, error, seconds in results:
            out["cutout"].append(cut)
            out["mask"].append(mask)
            out["error"].append(error)
            out["seconds"].append(seconds)
            out["model_seconds"].append(model_share)
            out["started"].append(started)
        return out


@dataclass
class BatchReport:
    output: Path
    done: int = 0  # written in this run
    skipped: int = 0  # complete from an earlier run
    failed: list = field(default_factory=list)  # [(input path, "ErrorType: message")]
    manifest: Optional[Path] = None  # the failure manifest, when anything failed
    seconds: float = 0.0
    model_seconds: float = 0.0  # the workers' CPU model runs (session.run) for this run's images, in total
    first_started: Optional[float] = None  # time.time() when a worker began its first images (startup is before)
    workers: int = 0
    ort_threads: Optional[int] = None

    @property
    def ok(self) -> bool:
        return not self.failed


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm

        return tqdm(total=total, unit="image", file=sys.stderr, desc="remove-background batch")
    except ImportError:
        return None


def preflight(options, models_dir, allow_download: bool, device: Optional[str] = None) -> None:
    """Check the model files and the provider once, before any work: raises ModelNotAvailableError,
    ModelChecksumError or ProviderUnavailableError with the usual messages."""
    from .pipeline import load_model
    from .sessions import clear_sessions

    load_model(options.model, options.provider, models_dir, device, allow_download=allow_download)
    clear_sessions()  # the driver does not run the model; the actors have their own sessions


def run_batch(
    inputs: Union[str, Path, Iterable[Union[str, Path]]],
    output: Union[str, Path],
    options: Union[dict, Any, None] = None,
    *,
    workers: int = 2,
    models_dir: Union[str, Path, None] = None,
    allow_download: bool = True,
    recursive: bool = False,
    ort_threads: Optional[int] = None,
    gpus_per_worker: Optional[float] = None,
    address: Optional[str] = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = True,
    png_level: int = PNG_LEVEL,
    calls_per_worker: Optional[int] = None,
    on_result: Optional[Callable[[str, str], None]] = None,
) -> BatchReport:
    """Remove the background of every image in ``inputs`` (files and folders) into ``output`` on Ray Data.

    ``options``: a dict of option keywords (``{"model": "u2netp", "mask_blur": 2}``) or a ``RemovalOptions``.
    ``workers``: Ray actors, each with its own cached session. ``ort_threads``: ONNX Runtime threads per actor
    (default: the node's CPUs divided by ``workers``, at least 1). ``gpus_per_worker``: default 1 per actor when
    the cluster has GPUs (shared fractionally when there are more workers than GPUs) and the provider is not
    ``cpu``, else 0. ``address``: a running Ray cluster (``ray://host:10001`` or ``auto``); default a local Ray.
    ``png_level``: zlib level of the PNG files (0-9; 6 gives the CLI's bytes). ``calls_per_worker``: images one
    actor works on at once (default 2: one's decoding and encoding overlap the other's model run; on CPUs the
    model runs themselves stay one at a time per actor). ``batch_size``: images per ``map_batches`` call (default 4;
    the overlap restarts at each call).
    ``on_result(input path, error or "")`` is called on the driver as each file's result is written.
    Raises the model/provider errors before any work; per-file errors go to the failure manifest instead.
    """
    t_start = time.perf_counter()
    opts = build_options(options)
    output = Path(output).expanduser().resolve()
    models_dir = str(Path(models_dir).expanduser().resolve()) if models_dir else None
    if not 0 <= png_level <= 9:
        raise ValueError(f"png_level must be between 0 and 9, got {png_level}.")
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    found = [(src, rel) for src, rel in collect_inputs([Path(p).expanduser().resolve() for p in inputs], recursive)
             if output not in src.parents]  # never our own outputs, when the output folder is inside an input
    mask_only = opts.output_mode == "mask_only"
    report = BatchReport(output=output, workers=workers)

    ray = import_ray()  # a missing extra is an error before any work, like a missing model
    preflight(opts, models_dir, allow_download)

    # plan: output names, clashes, outputs that would overwrite an input, what is complete already
    input_set = {src for src, _ in found}
    job_file = output / JOB_NAME
    # the job file: the options, and since when outputs were made with them (the PNG level changes no pixel). An
    # output older than that was made by another run with other options (or by something else): it is redone.
    record = {"options": options_record(opts), "format": 1, "since_ns": time.time_ns()}
    try:
        old = json.loads(job_file.read_text())
        if {k: v for k, v in old.items() if k != "since_ns"} == {k: v for k, v in record.items() if k != "since_ns"}:
            record["since_ns"] = int(old["since_ns"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    claimed: dict[Path, Path] = {}
    pending: list[Item] = []
    for src, rel in found:
        item = Item(src, rel, output_paths(output, rel, mask_only))
        clash = next((claimed[t] for t in item.targets if t in claimed), None)
        if clash is not None:
            report.failed.append((str(src), f"OutputClash: its output {item.targets[-1]} is also {clash}'s; "
                                            "rename one of them"))
            continue
        if any(t in input_set for t in item.targets):
            report.failed.append((str(src), f"OutputClash: its output {item.targets[0]} would overwrite an input; "
                                            "choose another output folder"))
            continue
        for t in item.targets:
            claimed[t] = src
        if is_done(item, record["since_ns"]):
            report.skipped += 1
        else:
            pending.append(item)

    output.mkdir(parents=True, exist_ok=True)
    _clean_temp_files(output)
    write_atomic(job_file, json.dumps(record, indent=1).encode())
    by_path = {os.path.normpath(str(i.src)): i for i in pending}
    bar = _progress_bar(len(found), progress)
    if bar is not None:
        bar.update(report.skipped + len(report.failed))

    started_ray = False
    if pending:
        if not ray.is_initialized():
            init: dict[str, Any] = dict(include_dashboard=False, logging_level=logging.WARNING)
            if address:
                init["address"] = address
            ray.init(**init)
            started_ray = True
        try:
            _run_on_ray(ray, opts, pending, by_path, report, models_dir, allow_download, workers, ort_threads,
                        gpus_per_worker, batch_size, bar, on_result, png_level, calls_per_worker)
        finally:
            if started_ray:
                ray.shutdown()
    if bar is not None:
        bar.close()

    manifest = output / MANIFEST_NAME
    if report.failed:
        body = {"failed": [{"input": p, "error": e} for p, e in report.failed], "count": len(report.failed),
                "written": report.done, "skipped": report.skipped, "options": record["options"]}
        write_atomic(manifest, json.dumps(body, indent=1).encode())
        report.manifest = manifest
    elif manifest.exists():
        manifest.unlink()  # an earlier run's failures are all fixed now
    report.seconds = time.perf_counter() - t_start
    return report


def _run_on_ray(ray, opts, pending, by_path, report, models_dir, allow_download, workers, ort_threads,
                gpus_per_worker, batch_size, bar, on_result, png_level, calls_per_worker) -> None:
    from ray.data import ActorPoolStrategy, DataContext

    workers = max(1, min(workers, len(pending)))
    resources = ray.cluster_resources()
    cpus = float(resources.get("CPU", os.cpu_count() or 1))
    gpus = float(resources.get("GPU", 0))
    if gpus_per_worker is None:
        gpus_per_worker = min(1.0, gpus / workers) if gpus and opts.provider != "cpu" else 0.0
    if ort_threads is None and not gpus_per_worker:
        ort_threads = max(1, int(cpus // workers))
    report.workers, report.ort_threads = workers, ort_threads
    device = "cuda:0" if gpus_per_worker else ("cpu" if opts.provider == "auto" else None)
    # a CPU worker asks Ray for its ORT threads in CPUs, a little less so the (I/O only) read tasks always fit
    worker_cpus = min(float(ort_threads or 1), max(0.5, cpus / workers - 0.05)) if not gpus_per_worker else 0.5

    # reading is I/O; each concurrent read task is a worker process that imports Ray Data (2 s of CPU here)
    read_tasks = max(1, min(4, workers // 2))
    # Two images at once per worker, inside each call: one's decoding and encoding overlap the other's model run.
    # (Ray's own max_concurrent_calls_per_actor gave no overlap here: measured, the calls still ran one by one.)
    images_at_once = calls_per_worker or 2
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False  # ours counts images, skipped and failed ones included
    ds = ray.data.read_binary_files([str(i.src) for i in pending], include_paths=True,
                                    override_num_blocks=len(pending), num_cpus=0.01,
                                    concurrency=read_tasks)
    ds = ds.map_batches(
        _Remover,
        fn_constructor_kwargs=dict(options=options_record(opts), models_dir=models_dir, device=device,
                                   allow_download=allow_download, ort_threads=ort_threads, png_level=png_level,
                                   images_at_once=images_at_once,
                                   cpu_runs=1 if not gpus_per_worker and images_at_once > 1 else None),
        batch_size=batch_size,
        compute=ActorPoolStrategy(size=workers),
        num_cpus=worker_cpus,
        num_gpus=gpus_per_worker or None,
    )
    seen = set()
    for row in ds.iter_rows():
        item = by_path.get(os.path.normpath(row["path"])) or by_path.get(os.path.normpath("/" + row["path"]))
        if item is None:
            log.warning("remove-background batch: a result for an unknown path %s", row["path"])
            continue
        seen.add(id(item))
        report.model_seconds += row["model_seconds"]
        report.first_started = min(report.first_started or row["started"], row["started"])
        if row["error"]:
            report.failed.append((str(item.src), row["error"]))
            if bar is not None:
                bar.write(f"FAILED {item.src}: {row['error']}")
        else:
            try:
                if len(item.targets) == 2:
                    write_atomic(item.targets[0], row["cutout"])
                write_atomic(item.targets[-1], row["mask"])  # the mask last: with both present, both are whole
                report.done += 1
            except OSError as e:
                report.failed.append((str(item.src), f"{type(e).__name__}: {e}"))
        if on_result is not None:
            on_result(str(item.src), row["error"])
        if bar is not None:
            bar.update(1)
    for item in pending:
        if id(item) not in seen:
            report.failed.append((str(item.src), "NotProcessed: no result came back from the workers"))


# --- command line --------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from .options import add_command_line

    p = argparse.ArgumentParser(
        prog="remove-background batch",
        description="Remove the backgrounds of many images on Ray Data (local or a Ray cluster). Writes NAME.png "
                    "(cut-out) and NAME.mask.png per input into OUT_DIR, atomically; a re-run skips complete outputs; "
                    f"failed files are listed in OUT_DIR/{MANIFEST_NAME}.",
    )
    p.add_argument("inputs", nargs="+", type=Path, help="image files and folders")
    p.add_argument("output", type=Path, metavar="OUT_DIR", help="output folder (created if needed)")
    p.add_argument("-r", "--recursive", action="store_true", help="look into sub-folders, keeping their layout")
    g = p.add_argument_group("ray")
    g.add_argument("--workers", "-w", type=int, default=2, help="Ray actors, one cached session each (default 2)")
    g.add_argument("--ort-threads", type=int, help="ONNX Runtime threads per worker (default: CPUs / workers)")
    g.add_argument("--gpus-per-worker", type=float, help="GPUs per worker (default: 1 when the cluster has GPUs, "
                                                         "shared when workers outnumber them; 0 without)")
    g.add_argument("--address", help="a running Ray cluster (e.g. ray://head:10001 or auto); default: local Ray")
    g.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                   help=f"images per map_batches call (default {DEFAULT_BATCH_SIZE})")
    g.add_argument("--calls-per-worker", type=int, help="images one worker works on at once (default 2: decoding "
                                                        "and encoding overlap the model run)")
    g.add_argument("--png-level", type=int, default=PNG_LEVEL, choices=range(10), metavar="0-9",
                   help=f"zlib level of the PNG files (default {PNG_LEVEL}: 3x faster to write than the CLI's 6, "
                        "files about 16%% larger, same pixels)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_command_line(p, "where model files live; on a cluster, a folder every node reads at the same path")
    return p


def main(argv: Optional[list] = None) -> int:
    """``remove-background batch ...`` (argv without the word ``batch``). Exit 0: all done; 1: some files failed
    (see the manifest); 2: nothing ran (bad options, missing model, unavailable provider, no inputs)."""
    from .options import from_arguments

    p = build_parser()
    args = p.parse_args(argv)
    try:
        options = from_arguments(args)
    except ValueError as e:
        p.error(str(e))
    try:
        report = run_batch(args.inputs, args.output, options, workers=args.workers, models_dir=args.models_dir,
                           allow_download=not args.no_download, recursive=args.recursive,
                           ort_threads=args.ort_threads, gpus_per_worker=args.gpus_per_worker, address=args.address,
                           batch_size=args.batch_size, progress=not args.no_progress, png_level=args.png_level,
                           calls_per_worker=args.calls_per_worker)
    except (RemoveBackgroundError, FileNotFoundError) as e:
        print(f"remove-background batch: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    n = report.done + report.skipped + len(report.failed)
    if n == 0:
        print("remove-background batch: no input images found", file=sys.stderr)
        return 2
    rate = report.done / report.seconds if report.seconds else 0.0
    print(f"{report.done} written, {report.skipped} already complete, {len(report.failed)} failed of {n} "
          f"in {report.seconds:.1f} s ({rate:.2f} images/s, {report.workers} worker{'s' * (report.workers != 1)}) "
          f"-> {report.output}",
          file=sys.stderr)
    if report.manifest:
        print(f"failures listed in {report.manifest}", file=sys.stderr)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
