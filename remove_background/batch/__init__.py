"""Batches on Ray Data: ``run_batch()`` (the ``remove-background batch`` command is in ``cli``).

``job`` (what was asked, the checks before any work, the worker plan), ``ray_job`` (the run on Ray Data),
``worker`` (what each Ray actor runs), ``outputs`` (the output folder: resume, atomic writes, manifest), ``terminal``
(progress bar; Ray's own output into a log file)."""

from .job import BatchJob
from .outputs import OutputFolderError
from .ray_job import BatchReport, WorkerSetupError, run_batch, run_job

__all__ = ["run_batch", "run_job", "BatchJob", "BatchReport", "OutputFolderError", "WorkerSetupError"]
