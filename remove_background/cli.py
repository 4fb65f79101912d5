"""Command line: ``remove-background IN... -o OUTDIR``, ``remove-background doctor``, ``remove-background download``.

Runs the Python API without InvokeAI. Inputs are never overwritten; each file's
failure is reported and the others go on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Iterable, Optional

from . import catalog
from .errors import ModelChecksumError, ModelNotAvailableError, RemoveBackgroundError
from .options import RemovalOptions, add_command_line, from_arguments

MODEL_ERRORS = (ModelNotAvailableError, ModelChecksumError)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


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

    from .pipeline import remove

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
    if argv[:1] == ["batch"]:  # Ray Data: imported only when asked for (the optional "ray" extra)
        from . import batch

        return batch.main(argv[1:])
    if argv[:1] == ["download"]:
        p = argparse.ArgumentParser(prog="remove-background download", description="Download model files now.")
        p.add_argument("models", nargs="+", choices=catalog.MODEL_NAMES)
        p.add_argument("--models-dir", type=Path, required=True)
        a = p.parse_args(argv[1:])
        from . import model_files

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
