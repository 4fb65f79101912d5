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
from .inference import CLOTH_CLASSES
from .matting import MattingOptions
from .providers import PROVIDER_CHOICES

MODEL_ERRORS = (ModelNotAvailableError, ModelChecksumError)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


def _add_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("-m", "--model", default=catalog.DEFAULT_MODEL, choices=catalog.MODEL_NAMES)
    g.add_argument("-p", "--provider", default="auto", choices=list(PROVIDER_CHOICES))
    g.add_argument("--models-dir", type=Path, help="where model files live (default: $REMOVE_BACKGROUND_MODELS "
                                                   "or ~/.cache/remove-background/models)")
    g.add_argument("--no-download", action="store_true", help="fail instead of downloading a missing model")
    r = p.add_argument_group("mask (applied in this order)")
    matting = MattingOptions()
    r.add_argument("--alpha-matting", action="store_true")
    r.add_argument("--alpha-matting-foreground-threshold", type=int, default=matting.foreground_threshold)
    r.add_argument("--alpha-matting-background-threshold", type=int, default=matting.background_threshold)
    r.add_argument("--alpha-matting-erode-size", type=int, default=matting.erode_size)
    r.add_argument("--post-process-mask", action="store_true")
    r.add_argument("--mask-threshold", type=int, default=0)
    r.add_argument("--mask-grow", type=int, default=0)
    r.add_argument("--mask-blur", type=float, default=0.0)
    r.add_argument("--mask-invert", action="store_true")
    o = p.add_argument_group("output")
    o.add_argument("--decontaminate", action="store_true")
    o.add_argument("--background-color", help="e.g. white, '#00ff00' or 255,0,0,128 (default: transparent)")
    o.add_argument("--mask-only", action="store_true")
    o.add_argument("--cloth-category", default="all", choices=list(CLOTH_CLASSES))
    o.add_argument("--sam-point", type=float, nargs=2, metavar=("X", "Y"))
    o.add_argument("--sam-box", type=float, nargs=4, metavar=("X0", "Y0", "X1", "Y1"))


def _colour(text: Optional[str]):
    if text is None:
        return None
    if "," in text:
        return tuple(int(v) for v in text.split(","))
    return text


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


def remove_files(args: argparse.Namespace) -> int:
    from PIL import Image

    from .pipeline import remove

    inputs = collect_inputs(args.inputs, args.recursive)
    if not inputs:
        print("remove-background: no input images found", file=sys.stderr)
        return 2
    input_set = {p.resolve() for p, _ in inputs}
    kwargs = dict(
        model=args.model, provider=args.provider, models_dir=args.models_dir, allow_download=not args.no_download,
        post_process_mask=args.post_process_mask, mask_threshold=args.mask_threshold, mask_grow=args.mask_grow,
        mask_blur=args.mask_blur, mask_invert=args.mask_invert, alpha_matting=args.alpha_matting,
        alpha_matting_foreground_threshold=args.alpha_matting_foreground_threshold,
        alpha_matting_background_threshold=args.alpha_matting_background_threshold,
        alpha_matting_erode_size=args.alpha_matting_erode_size, decontaminate=args.decontaminate,
        background_color=_colour(args.background_color),
        output_mode="mask_only" if args.mask_only else "cutout_and_mask", cloth_category=args.cloth_category,
        sam_point=args.sam_point, sam_box=args.sam_box,
    )
    failures: list[tuple[Path, str]] = []
    done = 0
    for src, rel in _progress(inputs, len(inputs)):
        stem = args.output / rel.parent / rel.stem
        cut_path, mask_path = stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".mask.png")
        targets = [mask_path] if args.mask_only else [cut_path, mask_path]
        try:
            if any(t.resolve() in input_set for t in targets):
                raise RemoveBackgroundError(f"its output {cut_path} would overwrite an input; choose another -o")
            with Image.open(src) as image:
                image.load()
                result = remove(image, **kwargs)
            cut_path.parent.mkdir(parents=True, exist_ok=True)
            if not args.mask_only:
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
                    "'remove-background download MODEL --models-dir DIR'.",
    )
    p.add_argument("inputs", nargs="+", type=Path, help="image files and folders")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder (created if needed)")
    p.add_argument("-r", "--recursive", action="store_true", help="look into sub-folders, keeping their layout")
    _add_options(p)
    return remove_files(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
