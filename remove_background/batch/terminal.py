"""What the terminal shows during a batch job: a progress bar, failed files and this package's warnings; Ray's own
output (its C++ core's log lines, its Python loggers, what its workers print) goes to a log file instead.

Ray writes to standard error at the file-descriptor level (its C++ core does not go through Python), so while Ray
runs, descriptor 2 itself points at the log file, and the bar writes to a copy of the terminal's descriptor (or to
``sys.stderr`` itself where that is not descriptor 2: a notebook, a test's capture). Standard output is left alone:
Ray writes nothing there, and a caller's ``on_result`` may.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from typing import IO, Iterator, Optional

DESCRIPTION = "remove-background batch"


def _stderr_is_descriptor_2() -> bool:
    """True when ``sys.stderr`` writes to descriptor 2 (a terminal, a pipe, a file)."""
    try:
        return sys.stderr is not None and sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):
        return False


@contextlib.contextmanager
def ray_output_to(log: IO[bytes]) -> Iterator[Optional[IO[str]]]:
    """For the block, standard error (descriptor 2) goes to ``log``, an open binary file; yields the stream that
    still reaches the terminal (None where there is none), where this package's warnings go as well."""
    try:
        saved = os.dup(2)
    except OSError:  # no descriptor 2 at all: nothing of Ray's can reach a terminal
        yield sys.stderr
        return
    if _stderr_is_descriptor_2():
        sys.stderr.flush()
        terminal = os.fdopen(os.dup(saved), "w", buffering=1, encoding=getattr(sys.stderr, "encoding", None),
                             errors="backslashreplace")
    else:
        terminal = sys.stderr
    ours = logging.getLogger("remove_background")
    handler = logging.StreamHandler(terminal) if terminal is not None else logging.NullHandler()
    handler.setLevel(logging.WARNING)
    log.flush()
    os.dup2(log.fileno(), 2)
    ours.addHandler(handler)
    try:
        yield terminal
    finally:
        ours.removeHandler(handler)
        if _stderr_is_descriptor_2():
            sys.stderr.flush()  # what Python wrote during the block belongs to the log
        os.dup2(saved, 2)
        os.close(saved)
        if terminal is not sys.stderr:
            terminal.close()


def log_header(log: IO[bytes]) -> None:
    log.write(f"--- {DESCRIPTION}, {time.strftime('%Y-%m-%d %H:%M:%S')}, pid {os.getpid()}: Ray's output ---\n"
              .encode())


class PlainBar:
    """The bar where tqdm is not installed: ``done/total [rate, ETA]`` on one line, redrawn at most 4 times a
    second. Counts from ``initial`` (images already complete), so the rate is this run's."""

    def __init__(self, total: int, stream: IO[str], initial: int = 0):
        self.total, self.fp, self.n = total, stream, initial
        self.start_n, self.t0, self.drawn, self.width = initial, time.monotonic(), 0.0, 0
        self._draw()

    def _draw(self) -> None:
        self.drawn = now = time.monotonic()
        rate = (self.n - self.start_n) / (now - self.t0) if now > self.t0 else 0.0
        eta = f"{(self.total - self.n) / rate:.0f} s" if rate else "?"
        line = f"{DESCRIPTION}: {self.n}/{self.total} [{rate:.2f} image/s, ETA {eta}]"
        self.fp.write("\r" + line.ljust(self.width))
        self.width = len(line)
        self.fp.flush()

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self.drawn >= 0.25 or self.n >= self.total:
            self._draw()

    def write(self, line: str, file: Optional[IO[str]] = None) -> None:
        """``line`` above the bar (tqdm's signature; the bar's own stream whatever ``file`` is)."""
        self.fp.write("\r" + line.ljust(self.width) + "\n")
        self._draw()

    def close(self) -> None:
        self._draw()
        self.fp.write("\n")
        self.fp.flush()


def progress_bar(total: int, stream: Optional[IO[str]], initial: int = 0):
    """tqdm's bar on ``stream`` (images done of ``total``, rate, ETA), or ``PlainBar`` without tqdm; None
    without a stream. Lines above it: ``bar.write(line, file=bar.fp)`` (tqdm's own default is standard output)."""
    if stream is None:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return PlainBar(total, stream, initial)
    return tqdm(total=total, initial=initial, unit="image", file=stream, desc=DESCRIPTION)

