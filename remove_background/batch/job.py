"""One batch job: what ``run_batch`` was asked (``BatchJob``, checked once), the driver's checks before any work
(``preflight``), and how many workers of what kind run it (``plan_workers``). No Ray here."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Union

from ..errors import ProviderUnavailableError
from ..options import RemovalOptions

DEFAULT_WORKERS = 2
DEFAULT_BATCH_SIZE = 4  # images per map_batches call; the overlap of two images restarts at each call
PNG_LEVEL = 1  # zlib level: at 1 MP the cut-out encodes in 45 ms at level 1, 150 ms at Pillow's default 6 (the
# CLI's), for files about 16 % larger; the pixels are the same at every level
IMAGES_AT_ONCE = 2  # per worker: one image's decoding and encoding overlap the other's model run


def build_options(options: Union[dict, RemovalOptions, None] = None) -> RemovalOptions:
    """A ``RemovalOptions`` from a dict of option keywords (or a ``RemovalOptions``, or None for the defaults).
    ValueError/TypeError name the bad option."""
    if isinstance(options, RemovalOptions):
        return options
    return RemovalOptions.build(None, **dict(options or {}))


def options_record(options: RemovalOptions) -> dict:
    """JSON-able options: how they travel to the workers, and what the job file compares between runs."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(options).items()}


@dataclass(frozen=True)
class BatchJob:
    """A batch job as ``run_batch`` takes it (its docstring says what each field does), built once by ``build``
    with paths resolved and options checked, then handed to every step."""

    inputs: tuple  # absolute paths of the input files and folders
    output: Path  # absolute
    options: RemovalOptions
    workers: int = DEFAULT_WORKERS
    models_dir: Optional[str] = None  # absolute
    allow_download: bool = True
    recursive: bool = False
    ort_threads: Optional[int] = None
    gpus_per_worker: Optional[float] = None
    address: Optional[str] = None
    batch_size: int = DEFAULT_BATCH_SIZE
    progress: bool = True
    png_level: int = PNG_LEVEL
    calls_per_worker: Optional[int] = None
    on_result: Optional[Callable[[str, str], None]] = None
    quiet: bool = True  # Ray's own output into the output folder's log file, not the terminal

    @classmethod
    def build(cls, inputs: Union[str, Path, Iterable[Union[str, Path]]], output: Union[str, Path],
              options: Union[dict, RemovalOptions, None] = None, **keywords: Any) -> "BatchJob":
        """Resolve the paths and check the options (ValueError/TypeError name a bad one) before anything runs."""
        if isinstance(inputs, (str, Path)):
            inputs = [inputs]
        models_dir = keywords.pop("models_dir", None)
        job = cls(inputs=tuple(Path(p).expanduser().resolve() for p in inputs),
                  output=Path(output).expanduser().resolve(), options=build_options(options),
                  models_dir=str(Path(models_dir).expanduser().resolve()) if models_dir else None, **keywords)
        if not 0 <= job.png_level <= 9:
            raise ValueError(f"png_level must be between 0 and 9, got {job.png_level}.")
        return job


def worker_device(provider: str, gpus_per_worker: float) -> Optional[str]:
    """The torch-style device a worker passes to ``remove()``: its GPU, the CPU for ``auto`` on CPU workers
    (never a GPU Ray did not give it), else None (the provider decides)."""
    if gpus_per_worker:
        return "cuda:0"
    return "cpu" if provider == "auto" else None


def check_route(job: BatchJob, device: Optional[str]) -> None:
    """The provider can be planned for ``device`` (ProviderUnavailableError, DependencyMissingError otherwise);
    plans only, creates nothing. None stands for a provider's own choice: planned as on the CPU, which is where
    an explicit choice can fail (torch's GPU is only looked up, and only in the workers)."""
    from ..backends.routes import plan_providers

    plan_providers(job.options.provider, device or "cpu")


def preflight(job: BatchJob) -> None:
    """Before any work, on the driver: the model's files (and the refiner's, when the options ask for one) are
    here and verified, or downloaded once here (ModelNotAvailableError, ModelChecksumError), and the provider can be
    planned for the workers. No session is created: only the workers run the model (a session here would be thrown
    away, and with ``auto`` on a GPU machine it would be a whole torch conversion)."""
    from ..pipeline import model_request, refiner_request

    opts = job.options
    device = worker_device(opts.provider, job.gpus_per_worker or 0.0) or "cpu"
    model_request(opts.model, opts.provider, job.models_dir, device, allow_download=job.allow_download,
                  model_path=opts.model_path, model_family=opts.model_family)
    refiner_request(opts, job.models_dir, device, allow_download=job.allow_download)  # ViTMatte's, when asked for


@dataclass(frozen=True)
class WorkerPlan:
    """How the pending images are run: Ray actors, what each asks Ray for, and its device."""

    workers: int
    gpus_per_worker: float
    ort_threads: Optional[int]  # ONNX Runtime threads per CPU worker (None: ORT's own choice, on GPU workers)
    worker_cpus: float  # CPUs each actor asks Ray for
    device: Optional[str]
    read_tasks: int  # concurrent file reads
    images_at_once: int  # per worker

    @property
    def cpu_runs(self) -> Optional[int]:
        """CPU workers with two images at once keep their model runs one at a time (their ORT threads are their
        share of the cores); None: no gate of ours."""
        return 1 if not self.gpus_per_worker and self.images_at_once > 1 else None


def plan_workers(job: BatchJob, pending: int, resources: dict) -> WorkerPlan:
    """Size the job to the cluster (``ray.cluster_resources()``). ProviderUnavailableError when the workers ask
    for more GPUs than the cluster has: none could ever start, and the job would wait forever."""
    workers = max(1, min(job.workers, pending))
    cpus = float(resources.get("CPU", os.cpu_count() or 1))
    gpus = float(resources.get("GPU", 0))
    gpus_per_worker = job.gpus_per_worker
    if gpus_per_worker is None:
        gpus_per_worker = min(1.0, gpus / workers) if gpus and job.options.provider != "cpu" else 0.0
    if gpus_per_worker > gpus:
        raise ProviderUnavailableError(f"each worker asks for {gpus_per_worker:g} GPU, but the Ray cluster has "
                                       f"{gpus:g}; use --gpus-per-worker 0 (CPU workers) or add GPU nodes")
    ort_threads = job.ort_threads
    if ort_threads is None and not gpus_per_worker:
        ort_threads = max(1, int(cpus // workers))
    # a CPU worker asks Ray for its ORT threads in CPUs, a little less so the (I/O only) read tasks always fit, and
    # never more than its share, so N workers fit however many cores there are
    worker_cpus = 0.5 if gpus_per_worker else min(float(ort_threads or 1), max(0.05, cpus / workers - 0.05))
    # Two images at once per worker, inside each call: one's decoding and encoding overlap the other's model run.
    # (Ray's own max_concurrent_calls_per_actor gave no overlap here: measured, the calls still ran one by one.)
    # Reading is I/O; each concurrent read task is a worker process that imports Ray Data (2 s of CPU here).
    return WorkerPlan(workers=workers, gpus_per_worker=gpus_per_worker, ort_threads=ort_threads,
                      worker_cpus=worker_cpus, device=worker_device(job.options.provider, gpus_per_worker),
                      read_tasks=max(1, min(4, workers // 2)), images_at_once=job.calls_per_worker or IMAGES_AT_ONCE)
