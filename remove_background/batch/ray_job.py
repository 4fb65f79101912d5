"""Batch removal on Ray Data: ``run_batch()`` (the ``remove-background batch`` command is in ``cli``).

The third front door beside the node and the CLI; like them it calls the one core (``pipeline.remove``). Only this
module imports Ray (the optional ``ray`` extra), and only when a job runs.

Flow::

    driver: the job built once (job.BatchJob); options, model files and provider checked, no session (preflight)
        -> inputs listed, complete outputs skipped (outputs)
    ray.data.read_binary_files(pending) -> map_batches(_Remover, compute=ActorPoolStrategy(size=N)) (job.plan_workers)
        each actor: one cached session (its own process), decode -> remove() -> PNG encode, per file (worker)
    driver: iter_rows -> atomic writes, progress bar, failure manifest (outputs); Ray's own output goes to a log
        file in the output folder, not the terminal (terminal)

The pixels are exactly the single-image API's (same ``remove()``); the PNGs are written at zlib level 1 by default,
3x faster than the CLI's level 6 (``png_level=6`` gives the CLI's very bytes). The driver does all the writing, so
on a cluster only the inputs and the models folder need to be readable by every node.

Faults: a worker that dies (killed, out of memory) is restarted and its call retried, up to ``TASK_RETRIES`` times;
after that its images are listed as failed and the job goes on. Workers that cannot load the model stop the job with
``WorkerSetupError``; an output folder that cannot be written stops it with ``OutputFolderError``. A killed driver
leaves only whole outputs: the same job run again carries on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Union

from ..errors import DependencyMissingError, RemoveBackgroundError
from .job import (DEFAULT_BATCH_SIZE, DEFAULT_WORKERS, PNG_LEVEL, BatchJob, WorkerPlan, build_options,  # noqa: F401
                  check_route, options_record, plan_workers, preflight)
from .outputs import OutputFolder, OutputFolderError, collect_inputs
from .terminal import log_header, progress_bar, ray_output_to
from .worker import _Remover, encode_png, remove_one  # noqa: F401  (the workers' side, also used from here)

log = logging.getLogger(__name__)

TASK_RETRIES = 3  # a call whose worker died is retried this often on a restarted worker (Ray's default: forever,
# so one input that kills its worker every time would stall the job for good)


class WorkerSetupError(RemoveBackgroundError):
    """The workers could not load the model (the driver checks the files and the route, not a session)."""


class ClusterUnreachableError(RemoveBackgroundError):
    """The Ray cluster at ``address`` cannot be reached."""


def import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise DependencyMissingError(
            f"The batch path needs Ray Data ({e}). Install it with: pip install 'remove-background[ray]'"
        ) from None
    return ray


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
    ray_log: Optional[Path] = None  # where Ray's own output went (quiet jobs that ran Ray)

    @property
    def ok(self) -> bool:
        return not self.failed


def run_batch(
    inputs: Union[str, Path, Iterable[Union[str, Path]]],
    output: Union[str, Path],
    options: Union[dict, Any, None] = None,
    *,
    workers: int = DEFAULT_WORKERS,
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
    quiet: bool = True,
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
    the overlap restarts at each call). ``progress``: a progress bar on standard error. ``quiet``: Ray's own output
    goes to ``output/remove-background-ray.log`` instead of standard error (``report.ray_log``).
    ``on_result(input path, error or "")`` is called on the driver once per input, after its outputs are written.
    Raises the model/provider errors before any work (no session is created on the driver: the workers load the
    model, and ``WorkerSetupError`` stops the job if they cannot), and ``OutputFolderError`` (its ``report`` says
    what was written) when the output folder cannot be written; per-file errors go to the failure manifest instead.
    """
    return run_job(BatchJob.build(
        inputs, output, options, workers=workers, models_dir=models_dir, allow_download=allow_download,
        recursive=recursive, ort_threads=ort_threads, gpus_per_worker=gpus_per_worker, address=address,
        batch_size=batch_size, progress=progress, png_level=png_level, calls_per_worker=calls_per_worker,
        on_result=on_result, quiet=quiet))


def run_job(job: BatchJob) -> BatchReport:
    """``run_batch`` for a job built with ``BatchJob.build``."""
    t_start = time.perf_counter()
    found = collect_inputs(list(job.inputs), job.recursive, exclude=job.output)
    ray = import_ray()  # a missing extra is an error before any work, like a missing model
    preflight(job)
    folder = OutputFolder(job.output, options_record(job.options), job.options.output_mode == "mask_only")
    plan = folder.plan(found)
    report = BatchReport(output=job.output, workers=job.workers, skipped=plan.skipped, failed=list(plan.failed))
    try:
        folder.start(plan)
        with _terminal(job, folder, report, ray_runs=bool(plan.pending)) as terminal:
            bar = progress_bar(len(found), terminal, report.skipped + len(report.failed)) if job.progress else None
            try:
                if plan.pending:
                    with ray_session(ray, job.address):
                        _run_on_ray(ray, job, plan.pending, folder, report, bar)
            finally:
                if bar is not None:
                    bar.close()
        report.manifest = folder.finish(report.failed, report.done, report.skipped)
    except OutputFolderError as e:
        e.report = report
        raise
    finally:
        report.seconds = time.perf_counter() - t_start
    return report


@contextlib.contextmanager
def _terminal(job: BatchJob, folder: OutputFolder, report: BatchReport, ray_runs: bool):
    """The stream the bar writes to; while a quiet job runs Ray, Ray's own output goes to the folder's log."""
    if not (job.quiet and ray_runs):
        yield sys.stderr
        return
    with folder.open_ray_log() as ray_log:
        log_header(ray_log)
        report.ray_log = folder.ray_log
        with ray_output_to(ray_log) as terminal:
            yield terminal


@contextlib.contextmanager
def ray_session(ray, address: Optional[str]):
    """The Ray this process already runs, or one started here (or connected to at ``address``) and shut down
    after the block."""
    if ray.is_initialized():
        yield
        return
    init: dict[str, Any] = dict(include_dashboard=False, logging_level=logging.WARNING)
    if address:
        init["address"] = address
    try:
        ray.init(**init)
    except ConnectionError as e:
        raise ClusterUnreachableError(f"cannot reach the Ray cluster at {address or 'this machine'}: {e}") from None
    try:
        yield
    finally:
        ray.shutdown()


def _run_on_ray(ray, job: BatchJob, pending: list, folder: OutputFolder, report: BatchReport, bar) -> None:
    """Run ``pending`` on Ray Data and take each result on the driver as it comes."""
    from ray.data import DataContext

    plan = plan_workers(job, len(pending), ray.cluster_resources())
    check_route(job, plan.device)  # the provider, planned for the device the workers will really use
    report.workers, report.ort_threads = plan.workers, plan.ort_threads
    results = _Results(job, pending, folder, report, bar)
    ctx = DataContext.get_current()
    saved = ctx.enable_progress_bars, ctx.max_errored_blocks
    ctx.enable_progress_bars = False  # ours counts images, skipped and failed ones included
    ctx.max_errored_blocks = -1  # a call that failed all its retries (or a file that can't be read) loses only its
    # own images (listed as not processed), not the job
    try:
        rows = iter(_dataset(ray, job, plan, pending).iter_rows())
        try:
            for row in rows:
                results.take(row)
        finally:
            rows.close()  # stops the workers at once when the driver stops early (OutputFolderError)
    finally:
        ctx.enable_progress_bars, ctx.max_errored_blocks = saved
    results.list_not_processed()


def _dataset(ray, job: BatchJob, plan: WorkerPlan, pending: list):
    """The pending files read by Ray Data and mapped through ``plan.workers`` actors of ``_Remover``."""
    from ray.data import ActorPoolStrategy

    ds = ray.data.read_binary_files([str(i.src) for i in pending], include_paths=True,
                                    override_num_blocks=len(pending), num_cpus=0.01, concurrency=plan.read_tasks)
    worker = dict(options=options_record(job.options), models_dir=job.models_dir, device=plan.device,
                  allow_download=job.allow_download, ort_threads=plan.ort_threads, png_level=job.png_level,
                  images_at_once=plan.images_at_once, cpu_runs=plan.cpu_runs)
    return _map_with_retries(ds, _Remover, dict(
        fn_constructor_kwargs=worker, batch_size=job.batch_size, compute=ActorPoolStrategy(size=plan.workers),
        num_cpus=plan.worker_cpus, num_gpus=plan.gpus_per_worker or None))


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


class _Results:
    """The driver's side of the results: each input's outputs written once (a retried call may send them again),
    counted, shown on the bar, passed to ``on_result``; what never came back is listed at the end."""

    def __init__(self, job: BatchJob, pending: list, folder: OutputFolder, report: BatchReport, bar):
        self.job, self.pending, self.folder, self.report, self.bar = job, pending, folder, report, bar
        self.by_path = {os.path.normpath(str(i.src)): i for i in pending}
        self.seen: set = set()

    def take(self, row) -> None:
        if row.get("fatal"):
            raise WorkerSetupError(f"the workers could not load model '{self.job.options.model}', so no image was "
                                   f"done: {row['error']}")
        item = self.by_path.get(os.path.normpath(row["path"])) or self.by_path.get(os.path.normpath("/" + row["path"]))
        if item is None:
            log.warning("remove-background batch: a result for an unknown path %s", row["path"])
            return
        if id(item) in self.seen:
            return
        self.seen.add(id(item))
        self.report.model_seconds += row["model_seconds"]
        self.report.first_started = min(self.report.first_started or row["started"], row["started"])
        error = row["error"] or self._write(item, row)
        if error:
            self.report.failed.append((str(item.src), error))
            if self.bar is not None:
                self.bar.write(f"FAILED {item.src}: {error}", file=self.bar.fp)
        if self.job.on_result is not None:
            self.job.on_result(str(item.src), error)
        if self.bar is not None:
            self.bar.update(1)

    def _write(self, item, row) -> str:
        """Write the outputs; "" or the error of this output's own name (OutputFolderError, about the folder,
        goes up)."""
        try:
            self.folder.write(item, [row["cutout"], row["mask"]][-len(item.targets):])
        except OSError as e:
            return f"{type(e).__name__}: {e}"
        self.report.done += 1
        return ""

    def list_not_processed(self) -> None:
        where = f"Ray's log, {self.report.ray_log}," if self.report.ray_log else "Ray's log"
        for item in self.pending:
            if id(item) not in self.seen:
                self.report.failed.append((str(item.src), f"NotProcessed: no result came back (the file could not "
                                                          f"be read, or its worker died {TASK_RETRIES + 1} times "
                                                          f"on it; {where} says which)"))
