"""``remove-background IN... -o OUTDIR``: the backgrounds of image files and folders, removed one by one.

Runs the Python API without InvokeAI. Inputs are never overwritten; each file's failure is reported and the others
go on, except when the model or the provider itself fails (every other file would fail the same way).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from ..batch.outputs import collect_inputs, output_paths  # the same inputs and output names as the batch command
from ..errors import (DependencyMissingError, ModelChecksumError, ModelNotAvailableError, ProviderUnavailableError,
                      RemoveBackgroundError)
from ..model_files import DEFAULT_FOLDER_TEXT
from ..options import RemovalOptions, add_command_line, parse_command_line
from .messages import CANNOT_START, FAILED, INTERRUPTED, ProgressLine, describe, fail

PROG = "remove-background"
SETUP_ERRORS = (ModelNotAvailableError, ModelChecksumError, ProviderUnavailableError, DependencyMissingError)


def add_options(p: argparse.ArgumentParser) -> None:
    """Every removal option (options.RemovalOptions), plus where models live and whether to download them."""
    add_command_line(p, f"where model files live (default: {DEFAULT_FOLDER_TEXT})")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Remove image backgrounds with rembg's ONNX models. Writes NAME.png (RGBA cut-out) and "
                    "NAME.mask.png into OUTDIR. Other commands: 'remove-background doctor' (what is installed, "
                    "where the models are, what to fix), 'remove-background download MODEL...', "
                    "'remove-background batch IN... OUT_DIR --workers N' (Ray Data). Exit code 0: all written; "
                    "1: some files failed; 2: nothing was done (bad option, no inputs, an output folder that "
                    "cannot be written); 130: interrupted.",
    )
    p.add_argument("inputs", nargs="+", type=Path, help="image files and folders")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder (created if needed)")
    p.add_argument("-r", "--recursive", action="store_true", help="look into sub-folders, keeping their layout")
    add_options(p)
    return p


def writable_folder(folder: Path) -> None:
    """Create ``folder`` if needed and check that a file can be written in it (OSError otherwise)."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=folder):
        pass


def _progress(items, total):
    try:
        from tqdm import tqdm

        return tqdm(items, total=total, unit="image", file=sys.stderr)
    except ImportError:
        return items


def _say(bar, line: str) -> None:
    """A line on stderr that does not break the progress bar."""
    (bar.write if hasattr(bar, "write") else print)(line, file=sys.stderr)


def remove_one(src: Path, targets: list, inputs: set, options: RemovalOptions, args) -> None:
    """One file's cut-out and mask, written to ``targets`` ([cut-out, mask] or [mask])."""
    from PIL import Image

    from ..pipeline import remove

    if any(t.resolve() in inputs for t in targets):
        raise RemoveBackgroundError(f"its output {targets[0]} would overwrite an input; choose another -o")
    download = ProgressLine()  # a missing model downloads with the first file
    with Image.open(src) as image:
        image.load()
        try:
            result = remove(image, options, models_dir=args.models_dir, allow_download=not args.no_download,
                            progress=download.update)
        finally:
            download.end()
    targets[0].parent.mkdir(parents=True, exist_ok=True)
    if len(targets) == 2:
        result.image.save(targets[0])
    result.mask.save(targets[-1])


def remove_files(args: argparse.Namespace, options: RemovalOptions) -> int:
    from PIL import Image

    output = args.output.expanduser()
    inputs = collect_inputs(args.inputs, args.recursive)
    if not inputs:
        return fail(PROG, "no input images found", CANNOT_START)
    try:
        writable_folder(output)
    except OSError as e:
        return fail(PROG, f"cannot write to the output folder {output}: {describe(e)}", CANNOT_START)
    input_set = {p.resolve() for p, _ in inputs}
    failures, done, interrupted = 0, 0, False
    bar = _progress(inputs, len(inputs))
    try:
        for src, rel in bar:
            try:
                remove_one(src, output_paths(output, rel, options.output_mode == "mask_only"), input_set, options,
                           args)
                done += 1
            except (RemoveBackgroundError, ValueError, OSError, Image.DecompressionBombError) as e:
                failures += 1
                _say(bar, f"FAILED {src}: {describe(e)}")
                if isinstance(e, SETUP_ERRORS):
                    break  # the model or the provider itself: every other file would fail the same way
    except KeyboardInterrupt:
        interrupted = True
    skipped = len(inputs) - done - failures
    print(f"{done} done, {failures} failed" + (f", {skipped} not attempted" if skipped else "")
          + (" (interrupted)" if interrupted else "") + f" -> {output}", file=sys.stderr)
    return INTERRUPTED if interrupted else FAILED if failures else 0


def files_main(argv: list) -> int:
    """``remove-background IN... -o OUTDIR [options]``."""
    args, options = parse_command_line(parser(), argv)
    try:
        return remove_files(args, options)
    except FileNotFoundError as e:  # an input that does not exist: nothing was done
        return fail(PROG, describe(e), CANNOT_START)
