"""What an ONNX file takes and gives: its graph's inputs and outputs (name, element type, dims), read without
loading it.

A user's own file must fit its family before anything runs (families/), and a family whose input size may vary
(BiRefNet: 1024² or 2048² exports, or dynamic axes) reads that size here. The file is read as protobuf wire format
from a memory map, skipping the weights by their length, so a 1 GB file costs milliseconds and no memory; neither
``onnx`` nor ONNX Runtime is needed. Field numbers are onnx.proto's (ModelProto.graph = 7; GraphProto.initializer
= 5, input = 11, output = 12; ValueInfoProto.name = 1, type = 2; TypeProto.tensor_type = 1; Tensor.elem_type = 1,
shape = 2; TensorShapeProto.dim = 1; Dimension.dim_value = 1, dim_param = 2; TensorProto.name = 8).
"""

from __future__ import annotations

import functools
import mmap
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Union

from .errors import ModelFileError

ELEMENT_TYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "bool", 10: "float16",
                 11: "float64", 16: "bfloat16"}

Dim = Union[int, str, None]  # a fixed size, a named free axis, or an unnamed one


@dataclass(frozen=True)
class Tensor:
    """One graph input or output: its name, element type ("float32", "float16"...) and dims."""

    name: str
    element_type: str
    dims: tuple

    @property
    def described(self) -> str:
        """``float32 [1, 3, 1024, 1024]`` (free axes by their names, or ``?``)."""
        return f"{self.element_type} [{', '.join('?' if d is None else str(d) for d in self.dims)}]"


@dataclass(frozen=True)
class GraphIO:
    inputs: tuple  # the graph's inputs that are fed (not weights listed as inputs, as IR < 4 files do)
    outputs: tuple


def _varint(buf, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise ValueError("varint too long")


def _fields(buf, start: int, end: int) -> Iterator[tuple[int, int, object]]:
    """(field number, wire type, value) of one message: an int, or a (start, end) span for length-delimited."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = None, pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = (pos, pos + length), pos + length
        elif wire == 5:
            value, pos = None, pos + 4
        else:
            raise ValueError(f"wire type {wire}")
        if pos > end:
            raise ValueError("field runs past its message")
        yield number, wire, value


def _text(buf, span) -> str:
    return bytes(buf[span[0]:span[1]]).decode("utf-8", "replace")


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _dims(buf, span) -> tuple:
    dims = []
    for number, _, dim in _fields(buf, *span):
        if number != 1:
            continue
        value: Dim = None
        for field, wire, v in _fields(buf, *dim):
            if field == 1 and wire == 0:
                value = _signed(v)
            elif field == 2 and wire == 2:
                value = _text(buf, v) or None
        dims.append(value)
    return tuple(dims)


def _value_info(buf, span) -> Tensor:
    name, element, dims = "", "unknown", ()
    for number, wire, value in _fields(buf, *span):
        if number == 1 and wire == 2:
            name = _text(buf, value)
        elif number == 2 and wire == 2:
            for field, w, tensor in _fields(buf, *value):
                if field != 1 or w != 2:
                    continue  # not a tensor (a sequence, a map): left "unknown"
                for f, w2, v in _fields(buf, *tensor):
                    if f == 1 and w2 == 0:
                        element = ELEMENT_TYPES.get(v, f"type {v}")
                    elif f == 2 and w2 == 2:
                        dims = _dims(buf, v)
    return Tensor(name, element, dims)


def _graph(buf, span) -> GraphIO:
    inputs, outputs, weights = [], [], set()
    for number, wire, value in _fields(buf, *span):
        if wire != 2:
            continue
        if number == 11:
            inputs.append(_value_info(buf, value))
        elif number == 12:
            outputs.append(_value_info(buf, value))
        elif number == 5:
            weights.update(_text(buf, v) for f, w, v in _fields(buf, *value) if f == 8 and w == 2)
    return GraphIO(tuple(t for t in inputs if t.name not in weights), tuple(outputs))


@functools.lru_cache(maxsize=32)
def _read(path: str, size: int, mtime_ns: int) -> GraphIO:
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        view = memoryview(buf)
        try:
            graph = next((v for n, w, v in _fields(view, 0, len(view)) if n == 7 and w == 2), None)
            if graph is None:
                raise ValueError("no graph")
            return _graph(view, graph)
        finally:
            view.release()


def read_io(path: Path) -> GraphIO:
    """The inputs and outputs of the ONNX file ``path`` (remembered per size and mtime); a ModelFileError when it is
    not an ONNX model."""
    path = Path(path)
    st = path.stat()
    try:
        io = _read(str(path), st.st_size, st.st_mtime_ns) if st.st_size else None
    except (ValueError, IndexError, OSError) as e:
        raise ModelFileError(f"{path} is not an ONNX model file (or it is truncated): {e}.") from None
    if io is None or not io.inputs or not io.outputs:
        raise ModelFileError(f"{path} is not an ONNX model file (or it is truncated): it declares no graph inputs "
                             "and outputs.")
    return io
