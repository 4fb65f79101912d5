"""Command line: ``remove-background IN... -o OUTDIR``, ``doctor``, ``download`` and ``batch`` (Ray Data).

Runs the Python API without InvokeAI. Inputs are never overwritten; each file's
failure is reported and the others go on. ``batch`` runs ``batch.run_batch``, which imports Ray only when a job
runs, so every ``--help`` works without the ``ray`` extra.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Iterable, Optional

from .. import catalog
from ..batch.outputs import IMAGE_SUFFIXES  # one list of the image files both commands read
from ..errors import ModelChecksumError, ModelNotAvailableError, RemoveBackgroundError
from ..options import RemovalOptions, add_command_line, from_arguments

MODEL_ERRORS = (ModelNotAvailableError, ModelChecksumError)


def _add_options(p: argparse.ArgumentParser) -> None:
    """Every removal option (options.RemovalOptions), plus where models live and whether to download them."""
    add_command_line(p, "where model files live (default: $REMOVE_BACKGROUND_MODELS or "
                        "~/.cache/remove-background/models)")


def collect_inputs(paths: Iterable[Path], recursive: bool) -> list[tuple[Path, Path]]:
    """(file, path relative to the folder it was found in) for every image among ``paths``."""
    found = []
    for path in paths:
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            for f in sorted(path.glob(pattern)):
                if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                    found.append((f, f.relative_to(path)))
        else:
            found.append((path, Path(path.name)))
    return found


def _progress(items, total):
    try:
        from tqdm import tqdm

        return tqdm(items, total=total, unit="image", file=sys.stderr)
    except ImportError:
        return items


def remove_files(args: argparse.Namespace, options: RemovalOptions) -> int:
    from PIL import Image

    from ..pipeline import remove

    inputs = collect_inputs(args.inputs, args.recursive)
    if not inputs:
        print("remove-background: no input images found", file=sys.stderr)
        return 2
    input_set = {p.resolve() for p, _ in inputs}
    mask_only = options.output_mode == "mask_only"
    failures: list[tuple[Path, str]] = []
    done = 0
    for src, rel in _progress(inputs, len(inputs)):
        stem = args.output / rel.parent / rel.stem
        cut_path, mask_path = stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".mask.png")
        targets = [mask_path] if mask_only else [cut_path, mask_path]
        try:
            if any(t.resolve() in input_set for t in targets):
                raise RemoveBackgroundError(f"its output {cut_path} would overwrite an input; choose another -o")
            with Image.open(src) as image:
                image.load()
                result = remove(image, options, models_dir=args.models_dir, allow_download=not args.no_download)
            cut_path.parent.mkdir(parents=True, exist_ok=True)
            if not mask_only:
                result.image.save(cut_path)
            result.mask.save(mask_path)
            done += 1
        except (RemoveBackgroundError, ValueError, OSError) as e:
            failures.append((src, f"{type(e).__name__}: {e}"))
            print(f"FAILED {src}: {type(e).__name__}: {e}", file=sys.stderr)
            if isinstance(e, MODEL_ERRORS):
                break  # the model itself is missing or broken: every other file would fail the same way
    skipped = len(inputs) - done - len(failures)
    print(f"{done} done, {len(failures)} failed" + (f", {skipped} not attempted" if skipped else "")
          + f" -> {args.output}", file=sys.stderr)
    return 1 if failures else 0


def batch_parser() -> argparse.ArgumentParser:
    from ..batch.ray_job import DEFAULT_BATCH_SIZE, PNG_LEVEL
    from ..batch.outputs import MANIFEST_NAME

    p = argparse.ArgumentParser(
        prog="remove-background batch",
        description="Remove the backgrounds of many images on Ray Data (local or a Ray cluster). Writes NAME.png "
                    "(cut-out) and NAME.mask.png per input into OUT_DIR, atomically; a re-run skips complete outputs; "
                    f"failed files are listed in OUT_DIR/{MANIFEST_NAME}. Exit code 0: all written; 1: some files "
                    "failed; 2: the job did not run or stopped (bad option, missing model or provider, no inputs, "
                    "an output folder that cannot be written).",
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


def batch_main(argv: Optional[list] = None) -> int:
    """``remove-background batch ...`` (argv without the word ``batch``). Exit 0: all written; 1: some files failed
    (see the manifest); 2: the job did not run or stopped (bad options, missing model, unavailable provider, no
    inputs, an output folder that cannot be written)."""
    from ..batch.ray_job import run_batch
    from ..batch.outputs import OutputFolderError

    p = batch_parser()
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
    except OutputFolderError as e:
        done = getattr(e, "report", None)
        print(f"remove-background batch: {e}", file=sys.stderr)
        if done is not None and (done.done or done.skipped):
            print(f"stopped: {done.done} written in this run and {done.skipped} from before are whole and kept; "
                  "once the folder can be written, run the same command again to carry on", file=sys.stderr)
        return 2
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


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["doctor"]:
        p = argparse.ArgumentParser(prog="remove-background doctor",
                                    description="Report installs, providers and model files, with fixes.")
        p.add_argument("--root", type=Path, help="InvokeAI root (default: $INVOKEAI_ROOT or ~/invokeai)")
        p.add_argument("--models-dir", type=Path, help="model folder (default: <InvokeAI models dir>/rembg)")
        a = p.parse_args(argv[1:])
        from . import doctor

        return doctor.run(a.root, a.models_dir)
    if argv[:1] == ["batch"]:
        return batch_main(argv[1:])
    if argv[:1] == ["download"]:
        p = argparse.ArgumentParser(prog="remove-background download", description="Download model files now.")
        p.add_argument("models", nargs="+", choices=catalog.MODEL_NAMES)
        p.add_argument("--models-dir", type=Path, required=True)
        a = p.parse_args(argv[1:])
        from .. import model_files

        for name in a.models:
            for path in model_files.ensure_model(catalog.get_model(name), a.models_dir,
                                                 progress=lambda f, d, t: print(f"\r{f}: {d / 1e6:.1f} MB",
                                                                                end="", file=sys.stderr)):
                print(f"\n{name}: {path}")
        return 0
    p = argparse.ArgumentParser(
        prog="remove-background",
        description="Remove image backgrounds with rembg's ONNX models. Writes NAME.png (RGBA cut-out) and "
                    "NAME.mask.png into OUTDIR. Other commands: 'remove-background doctor', "
                    "'remove-background download MODEL --models-dir DIR', "
                    "'remove-background batch IN... OUT_DIR --workers N' (Ray Data).",
    )
    p.add_argument("inputs", nargs="+", type=Path, help="image files and folders")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder (created if needed)")
    p.add_argument("-r", "--recursive", action="store_true", help="look into sub-folders, keeping their layout")
    _add_options(p)
    args = p.parse_args(argv)
    try:
        options = from_arguments(args)
    except ValueError as e:
        p.error(str(e))
    return remove_files(args, options)


if __name__ == "__main__":
    sys.exit(main())
