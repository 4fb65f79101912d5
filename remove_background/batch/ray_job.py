"""Batch removal on Ray Data: ``run_batch()`` (the ``remove-background batch`` command is in ``cli``).

The third front door beside the node and the CLI; like them it calls the one core (``pipeline.remove``). Only this
module imports Ray (the optional ``ray`` extra), and only when a job runs.

Flow::

    driver: options + model + provider checked once -> inputs listed, complete outputs skipped (batch_outputs)
    ray.data.read_binary_files(pending) -> map_batches(_Remover, compute=ActorPoolStrategy(size=N))
        each actor: one cached session (its own process), decode -> remove() -> PNG encode, per file
    driver: iter_rows -> atomic writes, progress, failure manifest (batch_outputs)

The pixels are exactly the single-image API's (same ``remove()``); the PNGs are written at zlib level 1 by default,
3x faster than the CLI's level 6 (``png_level=6`` gives the CLI's very bytes). The driver does all the writing, so
on a cluster only the inputs and the models folder need to be readable by every node.

Faults: a worker that dies (killed, out of memory) is restarted and its call retried, up to ``TASK_RETRIES`` times;
after that its images are listed as failed and the job goes on. An output folder that cannot be written stops the
job with ``OutputFolderError``. A killed driver leaves only whole outputs: the same job run again carries on.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Union

from .outputs import OutputFolder, OutputFolderError, collect_inputs
from ..errors import DependencyMissingError, ProviderUnavailableError

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 4  # images per map_batches call; the overlap of two images restarts at each call
PNG_LEVEL = 1  # zlib level: at 1 MP the cut-out encodes in 45 ms at level 1, 150 ms at Pillow's default 6 (the
# CLI's), for files about 16 % larger; the pixels are the same at every level
TASK_RETRIES = 3  # a call whose worker died is retried this often on a restarted worker (Ray's default: forever,
# so one input that kills its worker every time would stall the job for good)


# --- options and the one image: what the workers run --------------------------------------------------------------


def build_options(options: Union[dict, Any, None] = None):
    """A ``RemovalOptions`` from a dict of option keywords (or a ``RemovalOptions``, or None for the defaults).
    ValueError/TypeError name the bad option."""
    from ..options import RemovalOptions

    if isinstance(options, RemovalOptions):
        return options
    return RemovalOptions.build(None, **dict(options or {}))


def options_record(options) -> dict:
    """JSON-able options: how they travel to the workers, and what the job file compares between runs."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(options).items()}


def remove_one(image, options, models_dir, device, allow_download):
    """The single-image API, exactly as the CLI calls it."""
    from ..pipeline import remove

    return remove(image, options, models_dir=models_dir, device=device, allow_download=allow_download)


def encode_png(image, level: int = PNG_LEVEL) -> bytes:
    """PNG bytes of ``image`` at zlib ``level`` (``image.save(path)``'s bytes when ``level`` is 6)."""
    buf = io.BytesIO()
    image.save(buf, "PNG", compress_level=level)
    return buf.getvalue()


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
            os.environ["OMP_NUM_THREADS"] = str(ort_threads)  # backends/run_gate.ort_threads reads it
        if cpu_runs:
            from ..backends.run_gate import CPU_GATE

            CPU_GATE.reset(cpu_runs)
        self.options = build_options(options)
        self.models_dir, self.device, self.allow_download = models_dir, device, allow_download
        self.mask_only = self.options.output_mode == "mask_only"
        self.png_level = png_level
        self.pool = None
        if images_at_once > 1:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(images_at_once, thread_name_prefix="remove-background-image")
        from ..pipeline import load_models

        load_models(self.options, models_dir, device, allow_download)  # the model, and its refiner when asked for

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
        from ..backends.run_gate import CPU_GATE

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


# --- the driver ---------------------------------------------------------------------------------------------------


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
    """Check the model files (the refiner's too, when the options ask for one) and the provider once, before any
    work: raises ModelNotAvailableError, ModelChecksumError or ProviderUnavailableError with the usual messages."""
    from ..pipeline import load_models
    from ..backends.cache import clear_sessions

    load_models(options, models_dir, device, allow_download)
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
    (default: the cluster's CPUs divided by ``workers``, at least 1). ``gpus_per_worker``: default 1 per actor when
    the cluster has GPUs (shared fractionally when there are more workers than GPUs) and the provider is not
    ``cpu``, else 0. ``address``: a running Ray cluster (``ray://host:10001`` or ``auto``); default a local Ray.
    ``png_level``: zlib level of the PNG files (0-9; 6 gives the CLI's bytes). ``calls_per_worker``: images one
    actor works on at once (default 2: one's decoding and encoding overlap the other's model run; on CPUs the
    model runs themselves stay one at a time per actor). ``batch_size``: images per ``map_batches`` call (default 4;
    the overlap restarts at each call).
    ``on_result(input path, error or "")`` is called on the driver once per input, after its outputs are written.
    Raises the model/provider errors before any work, and ``OutputFolderError`` (its ``report`` says what was
    written) when the output folder cannot be written; per-file errors go to the failure manifest instead.
    """
    t_start = time.perf_counter()
    opts = build_options(options)
    output = Path(output).expanduser().resolve()
    models_dir = str(Path(models_dir).expanduser().resolve()) if models_dir else None
    if not 0 <= png_level <= 9:
        raise ValueError(f"png_level must be between 0 and 9, got {png_level}.")
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    found = collect_inputs([Path(p).expanduser().resolve() for p in inputs], recursive, exclude=output)
    report = BatchReport(output=output, workers=workers)

    ray = import_ray()  # a missing extra is an error before any work, like a missing model
    preflight(opts, models_dir, allow_download)

    folder = OutputFolder(output, options_record(opts), opts.output_mode == "mask_only")
    plan = folder.plan(found)
    report.skipped, report.failed = plan.skipped, list(plan.failed)
    bar, started_ray = None, False
    try:
        folder.start(plan)
        bar = _progress_bar(len(found), progress)
        if bar is not None:
            bar.update(report.skipped + len(report.failed))
        if plan.pending:
            if not ray.is_initialized():
                init: dict[str, Any] = dict(include_dashboard=False, logging_level=logging.WARNING)
                if address:
                    init["address"] = address
                ray.init(**init)
                started_ray = True
            _run_on_ray(ray, opts, plan.pending, folder, report, models_dir, allow_download, workers, ort_threads,
                        gpus_per_worker, batch_size, bar, on_result, png_level, calls_per_worker)
        report.manifest = folder.finish(report.failed, report.done, report.skipped)
    except OutputFolderError as e:
        e.report = report
        raise
    finally:
        if started_ray:
            ray.shutdown()
        if bar is not None:
            bar.close()
        report.seconds = time.perf_counter() - t_start
    return report


def _run_on_ray(ray, opts, pending, folder, report, models_dir, allow_download, workers, ort_threads,
                gpus_per_worker, batch_size, bar, on_result, png_level, calls_per_worker) -> None:
    from ray.data import ActorPoolStrategy, DataContext

    workers = max(1, min(workers, len(pending)))
    resources = ray.cluster_resources()
    cpus = float(resources.get("CPU", os.cpu_count() or 1))
    gpus = float(resources.get("GPU", 0))
    if gpus_per_worker is None:
        gpus_per_worker = min(1.0, gpus / workers) if gpus and opts.provider != "cpu" else 0.0
    if gpus_per_worker > gpus:  # no worker could ever start: say so instead of waiting for a GPU forever
        raise ProviderUnavailableError(f"each worker asks for {gpus_per_worker:g} GPU, but the Ray cluster has "
                                       f"{gpus:g}; use --gpus-per-worker 0 (CPU workers) or add GPU nodes")
    if ort_threads is None and not gpus_per_worker:
        ort_threads = max(1, int(cpus // workers))
    report.workers, report.ort_threads = workers, ort_threads
    device = "cuda:0" if gpus_per_worker else ("cpu" if opts.provider == "auto" else None)
    # a CPU worker asks Ray for its ORT threads in CPUs, a little less so the (I/O only) read tasks always fit, and
    # never more than its share, so N workers fit however many cores there are
    worker_cpus = min(float(ort_threads or 1), max(0.05, cpus / workers - 0.05)) if not gpus_per_worker else 0.5

    # reading is I/O; each concurrent read task is a worker process that imports Ray Data (2 s of CPU here)
    read_tasks = max(1, min(4, workers // 2))
    # Two images at once per worker, inside each call: one's decoding and encoding overlap the other's model run.
    # (Ray's own max_concurrent_calls_per_actor gave no overlap here: measured, the calls still ran one by one.)
    images_at_once = calls_per_worker or 2
    by_path = {os.path.normpath(str(i.src)): i for i in pending}
    ctx = DataContext.get_current()
    saved = ctx.enable_progress_bars, ctx.max_errored_blocks
    ctx.enable_progress_bars = False  # ours counts images, skipped and failed ones included
    ctx.max_errored_blocks = -1  # a call that failed all its retries (or a file that can't be read) loses only its
    # own images (listed below as not processed), not the job
    try:
        ds = ray.data.read_binary_files([str(i.src) for i in pending], include_paths=True,
                                        override_num_blocks=len(pending), num_cpus=0.01,
                                        concurrency=read_tasks)
        ds = _map_with_retries(ds, _Remover, dict(
            fn_constructor_kwargs=dict(options=options_record(opts), models_dir=models_dir, device=device,
                                       allow_download=allow_download, ort_threads=ort_threads,
                                       png_level=png_level, images_at_once=images_at_once,
                                       cpu_runs=1 if not gpus_per_worker and images_at_once > 1 else None),
            batch_size=batch_size,
            compute=ActorPoolStrategy(size=workers),
            num_cpus=worker_cpus,
            num_gpus=gpus_per_worker or None,
        ))
        seen: set = set()
        rows = iter(ds.iter_rows())
        try:
            for row in rows:
                _take(row, by_path, seen, folder, report, bar, on_result)
        finally:
            rows.close()  # stops the workers at once when the driver stops early (OutputFolderError)
    finally:
        ctx.enable_progress_bars, ctx.max_errored_blocks = saved
    for item in pending:
        if id(item) not in seen:
            report.failed.append((str(item.src), f"NotProcessed: no result came back (the file could not be read, "
                                                 f"or its worker died {TASK_RETRIES + 1} times on it; Ray's log "
                                                 "says which)"))


def _map_with_retries(ds, fn, kwargs: dict):
    """``ds.map_batches(fn, **kwargs)`` whose dead workers are replaced and whose calls are retried
    ``TASK_RETRIES`` times. Ray Data takes these only as ``ray_remote_args`` (deprecated in 2.60, with no named
    replacement yet); a Ray that no longer takes them gets its own default, which retries forever."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ray_remote_args.* is deprecated")
        try:
            return ds.map_batches(fn, **kwargs, max_restarts=-1, max_task_retries=TASK_RETRIES)
        except TypeError:
            return ds.map_batches(fn, **kwargs)


def _take(row, by_path, seen, folder, report, bar, on_result) -> None:
    """One result on the driver: write its outputs (once, even if a retried call sends it again), count it."""
    item = by_path.get(os.path.normpath(row["path"])) or by_path.get(os.path.normpath("/" + row["path"]))
    if item is None:
        log.warning("remove-background batch: a result for an unknown path %s", row["path"])
        return
    if id(item) in seen:
        return
    seen.add(id(item))
    report.model_seconds += row["model_seconds"]
    report.first_started = min(report.first_started or row["started"], row["started"])
    error = row["error"]
    if not error:
        try:
            folder.write(item, [row["cutout"], row["mask"]][-len(item.targets):])
            report.done += 1
        except OSError as e:  # this output's own name (OutputFolderError, about the folder, goes up)
            error = f"{type(e).__name__}: {e}"
    if error:
        report.failed.append((str(item.src), error))
        if bar is not None:
            bar.write(f"FAILED {item.src}: {error}")
    if on_result is not None:
        on_result(str(item.src), error)
    if bar is not None:
        bar.update(1)
