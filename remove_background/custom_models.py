"""Your own model file: found (for the node, only inside its models folder), read, and checked against its family.

``custom_model(path, family)`` gives the catalog entry a family makes for the file (families' ``custom_info``):
its input size (read from the file where the family lets it vary), mean, std, and a revision (size and mtime) that
makes a changed file a new model in every cache. A file that is not an ONNX model, or whose inputs do not fit the
family, is a ``ModelFileError`` before anything runs.

``file_in_folder(folder, name)`` is the node's rule: the name of a file inside ``<InvokeAI models dir>/rembg``, never
a path that leaves it (``..``, an absolute path, a symbolic link that points outside: rembg fixed exactly this hole,
GHSA-3wqj-33cg-xc48). The Python API and the command line take any path the user gives.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Union

from . import families, model_graph
from .catalog import ModelInfo
from .errors import ModelFileError, ModelNotAvailableError


def custom_model(path: Union[str, Path], family: str) -> tuple[ModelInfo, list[Path]]:
    """(the entry for your own file ``path`` run as ``family``, [its path]); clear errors when it cannot be."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelNotAvailableError(f"Your model file {path} does not exist (or is not a file).")
    graph = model_graph.read_io(path)
    return families.by_key(family).custom_info(path, graph), [path]


def file_in_folder(folder: Union[str, Path], name: str) -> Path:
    """The file ``name`` inside ``folder`` (its real path), refusing any name that leads out of the folder."""
    folder = Path(folder)
    if not name or not name.strip():
        raise ModelFileError(f"Model 'custom' needs the name of your model file inside {folder}.")
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or ".." in posix.parts or ".." in windows.parts:
        raise ModelFileError(f"Model file {name!r}: give the name of a file inside {folder} (no absolute path, "
                             "no '..').")
    root = folder.resolve()
    target = (folder / name).resolve()
    if not target.is_relative_to(root):
        raise ModelFileError(f"Model file {name!r} leads outside {folder} (to {target}, through a symbolic link): "
                             f"only files inside that folder can be used; copy the file there.")
    if not target.is_file():
        raise ModelNotAvailableError(f"There is no model file {name!r} in {folder}: put your .onnx file there and "
                                     "give its name.")
    return target
