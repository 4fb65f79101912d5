"""``remove-background batch IN... OUT_DIR``: many images on Ray Data (batch.ray_job), resumable.

``batch.run_batch`` imports Ray only when a job runs, so ``--help`` works without the ``ray`` extra.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from ..errors import RemoveBackgroundError
from ..model_files import DEFAULT_FOLDER_TEXT
from ..options import add_command_line, parse_command_line
from .messages import CANNOT_START, describe, fail

PROG = "remove-background batch"


def batch_parser() -> argparse.ArgumentParser:
    from ..batch.outputs import MANIFEST_NAME
    from ..batch.ray_job import DEFAULT_BATCH_SIZE, PNG_LEVEL

    p = argparse.ArgumentParser(
        prog=PROG,
        description="Remove the backgrounds of many images on Ray Data (local or a Ray cluster). Writes NAME.png "
                    "(cut-out) and NAME.mask.png per input into OUT_DIR, atomically; a re-run skips complete outputs; "
                    f"failed files are listed in OUT_DIR/{MANIFEST_NAME}. Exit code 0: all written; 1: some files "
                    "failed; 2: the job did not run or stopped (bad option, missing model or provider, no inputs, "
                    "an output folder that cannot be written); 130: interrupted.",
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
    add_command_line(p, f"where model files live (default: {DEFAULT_FOLDER_TEXT}); on a cluster, a folder every "
                        "node reads at the same path")
    return p


def _summary(report) -> int:
    n = report.done + report.skipped + len(report.failed)
    if n == 0:
        return fail(PROG, "no input images found", CANNOT_START)
    rate = report.done / report.seconds if report.seconds else 0.0
    print(f"{report.done} written, {report.skipped} already complete, {len(report.failed)} failed of {n} "
          f"in {report.seconds:.1f} s ({rate:.2f} images/s, {report.workers} worker{'s' * (report.workers != 1)}) "
          f"-> {report.output}",
          file=sys.stderr)
    if report.manifest:
        print(f"failures listed in {report.manifest}", file=sys.stderr)
    return 1 if report.failed else 0


def batch_main(argv: Optional[list] = None) -> int:
    """``remove-background batch ...`` (argv without the word ``batch``). Exit 0: all written; 1: some files failed
    (see the manifest); 2: the job did not run or stopped (bad options, missing model, unavailable provider, no
    inputs, an output folder that cannot be written)."""
    from ..batch.outputs import OutputFolderError
    from ..batch.ray_job import run_batch

    args, options = parse_command_line(batch_parser(), argv)
    try:
        report = run_batch(args.inputs, args.output, options, workers=args.workers, models_dir=args.models_dir,
                           allow_download=not args.no_download, recursive=args.recursive,
                           ort_threads=args.ort_threads, gpus_per_worker=args.gpus_per_worker, address=args.address,
                           batch_size=args.batch_size, progress=not args.no_progress, png_level=args.png_level,
                           calls_per_worker=args.calls_per_worker)
    except OutputFolderError as e:
        done = getattr(e, "report", None)
        fail(PROG, str(e))
        if done is not None and (done.done or done.skipped):
            print(f"stopped: {done.done} written in this run and {done.skipped} from before are whole and kept; "
                  "once the folder can be written, run the same command again to carry on", file=sys.stderr)
        return CANNOT_START
    except (RemoveBackgroundError, OSError) as e:
        return fail(PROG, describe(e), CANNOT_START)
    return _summary(report)
