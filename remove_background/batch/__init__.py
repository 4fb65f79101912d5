"""Batches on Ray Data: ``run_batch()`` (the ``remove-background batch`` command is in ``cli``)."""

from .ray_job import BatchReport, run_batch

__all__ = ["run_batch", "BatchReport"]
