"""Chains of Reshape and Transpose compared by what they do, not by how they are written.

An exporter writes "Transpose, then Reshape"; ONNX Runtime's transpose optimiser (from 1.29.0) may fold the same
data movement into "Reshape, then Transpose" with other shapes and permutations. A matcher that walks up such a
chain with ``chain_up`` and checks it with ``moves_like`` against the chain the exporter wrote accepts every order
that moves each element to the same place, and nothing else.
"""

from __future__ import annotations

from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .graph import Graph, is_op, node_attrs

Step = Tuple[str, Tuple[int, ...]]  # ("reshape", shape) or ("transpose", perm)
_EXACT_LIMIT = 1 << 20  # chains over tensors up to this many elements are compared on every element
_SAMPLES = 1 << 16


def reshape(*shape: int) -> Step:
    return ("reshape", tuple(int(v) for v in shape))


def transpose(*perm: int) -> Step:
    return ("transpose", tuple(int(v) for v in perm))


def sources_up(g: Graph, name: str, limit: int = 6) -> Iterator[Tuple[str, List[Step]]]:
    """``(value, steps)`` for ``name`` itself (no steps), then for each value above it through Reshape (constant
    shape) and Transpose nodes, with the steps that lead from that value down to ``name``, in the order they run."""
    producers = g.producer_map()
    steps: List[Step] = []
    yield name, []
    for _ in range(limit):
        step = _layout_step(g, producers.get(name))
        if step is None:
            return
        steps.insert(0, step)
        name = producers[name].input[0]
        yield name, list(steps)


def chain_up(g: Graph, name: str, stop: Callable[[object], bool], limit: int = 6):
    """From ``name`` up through Reshape (constant shape) and Transpose nodes to the first node ``stop`` accepts.

    Returns ``(that node, the value the chain starts from, the steps in the order they run)``, or None when the
    walk meets anything else first (a Reshape with a computed shape, another operator, a graph input).
    """
    producers = g.producer_map()
    for value, steps in sources_up(g, name, limit):
        node = producers.get(value)
        if node is not None and stop(node):
            return node, value, steps
    return None


def _layout_step(g: Graph, node) -> Optional[Step]:
    """The step a Transpose or a Reshape with a constant shape takes; None for any other node."""
    if is_op(node, "Transpose"):
        perm = node_attrs(node).get("perm")
        return None if perm is None else transpose(*perm)
    if is_op(node, "Reshape") and not node_attrs(node).get("allowzero", 0):
        shape = g.const(node.input[1])
        return None if shape is None else reshape(*shape.tolist())
    return None


def moves_like(shape: Optional[Sequence[int]], steps: Sequence[Step], expected: Sequence[Step]) -> bool:
    """Whether ``steps`` and ``expected``, applied to a tensor of ``shape``, give the same result.

    Exact up to 2^20 elements; above that, on 65,536 elements drawn with a fixed seed plus the first and the last
    (a different data movement differs almost everywhere).
    """
    if shape is None:
        return False
    shapes_a, shapes_b = _shapes(shape, steps), _shapes(shape, expected)
    if shapes_a is None or shapes_b is None or shapes_a[-1] != shapes_b[-1]:
        return False
    total = int(np.prod(shape, dtype=np.int64))
    if total <= _EXACT_LIMIT:
        flat = np.arange(total, dtype=np.int64)
    else:
        flat = np.random.default_rng(0).integers(0, total, _SAMPLES, dtype=np.int64)
        flat = np.concatenate([flat, np.asarray([0, total - 1], dtype=np.int64)])
    return bool(np.array_equal(_source_index(shapes_a, steps, flat), _source_index(shapes_b, expected, flat)))


def _shapes(shape: Sequence[int], steps: Sequence[Step]) -> Optional[List[Tuple[int, ...]]]:
    """The shape before the first step and after each (ONNX Reshape's 0 and -1 resolved), or None if invalid."""
    shapes = [tuple(int(d) for d in shape)]
    for kind, values in steps:
        current = shapes[-1]
        if kind == "transpose":
            if sorted(values) != list(range(len(current))):
                return None
            shapes.append(tuple(current[p] for p in values))
            continue
        out = [current[i] if v == 0 and i < len(current) else v for i, v in enumerate(values)]
        total = int(np.prod(current, dtype=np.int64))
        if out.count(-1) == 1:
            known = int(np.prod([d for d in out if d != -1], dtype=np.int64))
            if known == 0 or total % known:
                return None
            out[out.index(-1)] = total // known
        if any(d < 0 for d in out) or int(np.prod(out, dtype=np.int64)) != total:
            return None
        shapes.append(tuple(out))
    return shapes


def _source_index(shapes: List[Tuple[int, ...]], steps: Sequence[Step], flat: np.ndarray) -> np.ndarray:
    """For each flat index of the chain's result, the flat index of the input element that lands there."""
    for (kind, values), before, after in reversed(list(zip(steps, shapes[:-1], shapes[1:]))):
        if kind == "transpose" and len(after):
            coords = np.unravel_index(flat, after)
            source = [None] * len(before)
            for axis, p in enumerate(values):
                source[p] = coords[axis]
            flat = np.ravel_multi_index(source, before)
    return flat
