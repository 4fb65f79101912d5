"""The command line: ``remove-background`` (files), ``doctor``, ``download`` and ``batch``."""

from .commands import main

__all__ = ["main"]
