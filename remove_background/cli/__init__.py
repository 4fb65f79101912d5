"""The command line: ``remove-background`` (files), ``download``, ``batch`` (Ray Data) and ``doctor``, one module
each; commands.py picks one and turns expected errors into one line (messages.py)."""

from .commands import batch_parser, main

__all__ = ["main", "batch_parser"]
