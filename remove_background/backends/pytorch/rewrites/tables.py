"""Large constants that repeat a few rows are stored as their distinct rows and an index, gathered in each forward.

ONNX Runtime's fold stores what a graph computes from constants. ViTDet's attention (ViTMatte's backbone) gathers
a relative-position table of ``2·size − 1`` rows for every pair of query and key positions, so the fold stores a
``[size, size, channels]`` tensor per block where the file holds a ``[2·size − 1, channels]`` table: 9 MB more
than the ViTMatte-S file's values (its converted module held 1.09× them). Such a constant, of at least ``MINIMUM``
values, becomes its distinct rows (last axis) and an index into them when that takes at most ``1 / SAVING`` of
its values; an ONNX ``Gather`` (advanced indexing on the device, no host read) rebuilds it, bit for bit, in each
forward. Only constants that every reader takes as plain data (``READERS``) are touched: a Conv's weight, a
shape or an index stays an initializer, as the converters expect.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from .graph import Graph

MINIMUM = 1024
SAVING = 4
READERS = frozenset({"Einsum", "MatMul", "Add", "Sub", "Mul", "Div", "Where"})


def store_distinct_rows(g: Graph) -> None:
    """Replace each large constant of few distinct rows by ``Gather(rows, index)`` (in place)."""
    from onnx import helper, numpy_helper

    readers = defaultdict(list)
    for node in g.nodes:
        for name in node.input:
            readers[name].append(node)
    for name in list(g.initializers):
        if name in g.outputs or not _plain_data(readers.get(name, ())):
            continue
        tensor = g.initializers[name]
        if int(np.prod(tensor.dims, dtype=np.int64)) < MINIMUM:
            continue
        split = _distinct_rows(numpy_helper.to_array(tensor))  # one at a time, not kept: weights may be large
        if split is not None:
            rows, index = g.add_initializer(split[0], f"{name}/rows"), g.add_initializer(split[1], f"{name}/row_index")
            g.compute_constant(name, helper.make_node("Gather", [rows, index], [name], name=f"{name}/gather", axis=0))


def _plain_data(nodes) -> bool:
    return bool(nodes) and all(n.domain in ("", "ai.onnx") and n.op_type in READERS for n in nodes)


def _distinct_rows(array: np.ndarray):
    """(distinct rows, index of each row) of a floating-point ``array`` when they save enough, else None."""
    if array.ndim < 2 or array.size < MINIMUM or array.dtype.kind != "f":
        return None
    rows = np.ascontiguousarray(array.reshape(-1, array.shape[-1]))
    keys = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()  # a row's bytes
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    if len(first) * rows.shape[1] + inverse.size > array.size / SAVING:
        return None
    return rows[first], inverse.reshape(array.shape[:-1]).astype(np.int64)
