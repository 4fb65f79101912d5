"""``remove-background download MODEL... [--models-dir DIR]``: fetch model files now, into the folder the other
commands read (the rule: model_files), or into the one given (an InvokeAI's ``<models dir>/rembg``, a shared one)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import catalog, model_files
from ..errors import ModelChecksumError, ModelNotAvailableError
from .messages import FAILED, ProgressLine, describe, fail

PROG = "remove-background download"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Download model files now (they are also downloaded on first use), checked against the "
                    "catalog's checksums; a file already there is checked, not downloaded again. Exit code 0: all "
                    "there; 1: a download failed (nothing partial is left); 2: a bad option; 130: interrupted.")
    p.add_argument("models", nargs="+", choices=list(catalog.every_model()), metavar="MODEL",
                   help=f"one or more of: {', '.join(catalog.every_model())} (the vitmatte-* files are the "
                        "ViTMatte refiner's checkpoints, option --vitmatte-model)")
    p.add_argument("--models-dir", type=Path,
                   help=f"where to put them (default: {model_files.DEFAULT_FOLDER_TEXT}, the folder the "
                        "command line reads; for InvokeAI's node: <InvokeAI models dir>/rembg)")
    return p


def download_main(argv: list) -> int:
    """Fetch each model's files; stop at the first that fails, naming those not attempted."""
    args = parser().parse_args(argv)
    folder = model_files.models_dir_or_default(args.models_dir)
    for i, name in enumerate(args.models):
        line = ProgressLine()
        try:
            paths = model_files.ensure_model(catalog.get_model(name), folder, progress=line.update)
            fetched = line.started
        except (ModelNotAvailableError, ModelChecksumError, OSError) as e:
            rest = args.models[i + 1:]
            line.end()
            where = "" if isinstance(e, (ModelNotAvailableError, ModelChecksumError)) else f" into {folder}"
            return fail(PROG, f"{name}{where}: {describe(e)}" + (f" Not attempted: {', '.join(rest)}." if rest else ""),
                        FAILED)
        finally:
            line.end()
        for path in paths:
            print(f"{name}: {path}" + ("" if fetched else " (already there)"))
    return 0
