"""Large constants that the fold would make out of small ones stay computed in each forward, not stored.

ONNX Runtime's fold stores the result of every computation on constants. Most are shapes and small tensors, but a
Swin backbone's shifted-window attention mask, built at export from a small image of window labels, becomes a stored
``[windows, N, N]`` tensor: a third of the weights of the Swin test network (tests/support/torch_nets.py), and for
BiRefNet at 1024², counting its windows, some 17 M values besides 242 M weights (not measured here). ``keep_out``
finds the nodes whose inputs are all constants and whose output holds at least ``EXPANSION`` times their inputs'
values and a share ``SHARE`` of the file's weights; each such node then reads its inputs from new graph inputs
during the fold, so ONNX Runtime cannot fold it, and ``put_back`` makes those inputs initializers again. The node
and what follows it run in each forward (elementwise work on the device, no host read); everything before it folds
as before.

Nodes whose inputs are sizes (ConstantOfShape, Range...) are never cut, and a node with a data input and shape or
index inputs (Expand, Tile, Gather...) reads only its data from a new input: shapes stay constants.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional

import numpy as np

EXPANSION = 4  # an output this many times its inputs' values...
SHARE = 0.005  # ...and at least this share of the file's weights (and MINIMUM values) is not stored
MINIMUM = 1024
_SUFFIX = "/kept_out_of_fold"
_SIZES_ONLY = {"ConstantOfShape", "Range", "EyeLike", "OneHot", "TopK"}  # inputs are sizes: never cut
_DATA_FIRST = {"Expand", "Tile", "Reshape", "Resize", "Upsample", "Slice", "Pad", "Gather", "Split", "Squeeze",
               "Unsqueeze"}  # only input 0 is data: the others (shapes, indices) stay constants
_RANDOM = {"RandomUniform", "RandomNormal", "RandomUniformLike", "RandomNormalLike", "Multinomial", "Bernoulli"}


def keep_out(model, workdir: str) -> Dict[str, np.ndarray]:
    """Rewire ``model`` (fixed input shapes, in place) so that ONNX Runtime does not fold its large expansions;
    returns the values of the new inputs those nodes now read (name -> array), for ``put_back``."""
    from .rewrites.graph import Graph

    graph = Graph(model)
    graph.infer_types()
    weights = sum(int(np.prod(t.dims, dtype=np.int64)) for t in model.graph.initializer)
    cuts = _expansions(graph, _topological(list(model.graph.node), _available(model)), weights)
    if not cuts:
        return {}
    data = {id(node): [i for i, name in enumerate(node.input) if name and (i == 0 or node.op_type not in _DATA_FIRST)]
            for node in cuts}
    needed = sorted({node.input[i] for node in cuts for i in data[id(node)]} - set(graph.initializers))
    computed = _values(model, needed, graph, workdir)
    if computed is None:
        return {}
    kept: Dict[str, np.ndarray] = {}
    for node in cuts:
        for index in data[id(node)]:
            name = node.input[index]
            kept[name + _SUFFIX] = graph.const(name) if name in graph.initializers else computed[name]
            node.input[index] = name + _SUFFIX
    from onnx import helper

    model.graph.input.extend(helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype),
                                                           list(value.shape)) for name, value in kept.items())
    return kept


def put_back(folded, kept: Dict[str, np.ndarray]) -> None:
    """The inputs ``keep_out`` added become initializers of the folded model again (in place)."""
    from onnx import numpy_helper

    for i in reversed(range(len(folded.graph.input))):
        name = folded.graph.input[i].name
        if name in kept:
            del folded.graph.input[i]
            folded.graph.initializer.append(numpy_helper.from_array(kept[name], name=name))


def _expansions(graph, nodes: List, weights: int) -> List:
    """The nodes to keep out of the fold, in order; what follows a kept-out node is not constant any more."""
    constant = set(graph.initializers)
    cuts = []
    for node in nodes:
        if node.op_type == "Constant":
            constant.update(node.output)
            continue
        if node.op_type in ("Shape", "Size") and graph.shape(node.input[0]) is not None:
            constant.update(node.output)
            continue
        inputs = [name for name in node.input if name]
        if not inputs or node.op_type in _RANDOM or any(name not in constant for name in inputs) or \
                any(a.type in (5, 10) for a in node.attribute):  # GRAPH, GRAPHS: If, Loop, Scan
            continue
        if _expands(graph, node, inputs, weights):
            cuts.append(node)
        else:
            constant.update(node.output)
    return cuts


def _expands(graph, node, inputs: List[str], weights: int) -> bool:
    if node.op_type in _SIZES_ONLY:
        return False
    out = [graph.shape(name) for name in node.output if name]
    ins = [graph.shape(name) for name in inputs]
    if any(s is None for s in out + ins):
        return False
    out_values = max(int(np.prod(s, dtype=np.int64)) for s in out)
    in_values = sum(int(np.prod(s, dtype=np.int64)) for s in ins)
    return out_values >= max(MINIMUM, SHARE * weights, EXPANSION * max(1, in_values))


def _available(model) -> set:
    return {t.name for t in model.graph.initializer} | {v.name for v in model.graph.input} | {""}


def _topological(nodes: List, available: set) -> List:
    """``nodes`` in an order where each comes after the producers of its inputs (published files may not be)."""
    producers = {out for node in nodes for out in node.output if out}
    consumers: Dict[str, List[int]] = {}
    waiting = []
    for index, node in enumerate(nodes):
        needs = {name for name in node.input if name in producers and name not in available}
        waiting.append(len(needs))
        for name in needs:
            consumers.setdefault(name, []).append(index)
    ready = [index for index, count in enumerate(waiting) if count == 0]
    for index in ready:  # grows while it is read
        for out in nodes[index].output:
            for consumer in consumers.get(out, ()):
                waiting[consumer] -= 1
                if waiting[consumer] == 0:
                    ready.append(consumer)
    return [nodes[index] for index in ready]  # a cycle leaves its nodes out: they are not looked at


def _values(model, names: List[str], graph, workdir: str) -> Optional[Dict[str, np.ndarray]]:
    """The values of constant ``names``, computed by ONNX Runtime on the model with those as its outputs."""
    if not names:
        return {}
    import onnx
    import onnxruntime as ort
    from onnx import helper

    outputs = list(model.graph.output)
    del model.graph.output[:]
    model.graph.output.extend(helper.make_tensor_value_info(name, graph.elem_type(name), graph.shape(name))
                              for name in names)
    path = os.path.join(workdir, "constants.onnx")
    try:
        onnx.save(model, path)
    finally:
        del model.graph.output[:]
        model.graph.output.extend(outputs)
    try:
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        feeds = {i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], _numpy_type(i.type))
                 for i in session.get_inputs()}
        return dict(zip(names, session.run(names, feeds)))
    except Exception:  # anything ONNX Runtime cannot compute here: fold as before
        return None
    finally:
        os.remove(path)


def _numpy_type(ort_type: str):
    return {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64,
            "tensor(int32)": np.int32, "tensor(bool)": np.bool_, "tensor(uint8)": np.uint8,
            "tensor(int8)": np.int8}.get(ort_type, np.float32)
