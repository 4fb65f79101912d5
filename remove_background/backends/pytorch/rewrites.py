"""ONNX graph rewrites before conversion to torch: what onnx2torch 1.5.15 cannot convert, or converts with host syncs.

``rewrite(model)`` takes a *folded* ``onnx.ModelProto`` (``torch_convert.fold``: fixed input shapes, ONNX Runtime's
basic optimisation) and rewrites, in place, the node patterns below into nodes of our own domain (``DOMAIN``), which
``torch_converters`` converts. Every rewritten node keeps its output names, so the rest of the graph is untouched.

Why a domain of our own: onnx2torch's public ``add_converter`` refuses an (operator, version, domain) that it has
already registered, so where its converter is wrong or reads a tensor back to the host on every run, the node is
renamed into our domain, with what the folded graph knows as constants turned into attributes.

- **Weights through Identity** (``Identity`` of an initializer, from the exporter's deduplication of equal weights):
  consumers read the initializer directly, since onnx2torch's Conv/Gemm/LayerNorm converters look weights up among
  the initializers. ``Constant`` nodes become initializers for the same reason.
- **Deformable convolution** (the deform-conv2d-onnx-exporter's subgraph: Pad, Reshape, Transpose, Floor, Cast,
  Clip on int64, four GatherND with batch_dims=2, bilinear weights, Sum, mask Mul, Reshape/Transpose/Reshape, Conv
  with stride = kernel): one ``DeformConv2d`` node (``torchvision.ops.deform_conv2d``); the dead subgraph is removed.
- **Static shapes**: ``Resize`` with constant scales or sizes (and a known input shape), ``Reshape``, ``Slice``,
  ``Expand``, ``Tile``, ``Pad``, ``Split`` and ``Squeeze`` with constant shape inputs: the constants become
  attributes, so the module never calls ``.tolist()``/``.numpy()`` on them.
- **Wrong or missing converters**: ``Clip`` on integers (onnx2torch clamps with floats, which makes a float tensor),
  ``GatherND`` with ``batch_dims`` > 0, ``LayerNormalization`` (onnx2torch needs the input's shape in value_info),
  ``OneHot`` (none), ``Flatten`` (onnx2torch's is wrong for axis 0 and axis = rank; ONNX always gives 2-D).
"""

from __future__ import annotations

import math
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

DOMAIN = "remove_background"  # our operators' domain; torch_converters registers a converter for each
DOMAIN_VERSION = 1

# element types (onnx.TensorProto) that are integers; Clip on these must stay integer
_INTEGER_TYPES = {2, 3, 4, 5, 6, 7, 12, 13}  # uint8, int8, uint16, int16, int32, int64, uint32, uint64
_SMALL_CONSTANT = 4096  # initializers up to this many elements are kept for shape inference (shape values)


def rewrite(model, *, deform_conv: bool = True):
    """``model`` (a folded ``onnx.ModelProto``) with every pattern above rewritten (in place; also returned).

    ``deform_conv=False`` leaves the exporter's deformable-convolution subgraphs as they are (GatherNDs), for
    measuring what the ``DeformConv2d`` rewrite gains.
    """
    graph = _Graph(model)
    graph.constants_to_initializers()
    graph.bypass_constant_identities()
    graph.infer_types()
    if deform_conv:
        for node in list(graph.nodes):
            if node.domain in ("", "ai.onnx") and node.op_type == "Conv":
                _deform_conv(graph, node)
        graph.remove_dead()
    for index, node in enumerate(graph.nodes):
        if node.domain not in ("", "ai.onnx"):
            continue
        rule = _RULES.get(node.op_type)
        if rule is None:
            continue
        new = rule(graph, node)
        if new is not None:
            graph.nodes[index] = new
    graph.remove_dead()
    graph.commit()
    return model


def freeze_inputs(model, values) -> None:
    """Turn the graph inputs named in ``values`` into initializers holding those values (in place).

    For an input that is always fed the same value, such as SAM's ``orig_im_size``: frozen before folding, ONNX
    Runtime folds what depends on it (the decoder's last Resize then gets constant sizes, so the module has static
    shapes), and the converted module no longer takes that input.
    """
    from onnx import helper, numpy_helper

    wanted = dict(values)
    for i in reversed(range(len(model.graph.input))):
        value = model.graph.input[i]
        if value.name not in wanted:
            continue
        elem = value.type.tensor_type.elem_type
        array = np.asarray(wanted.pop(value.name))
        array = array.astype(helper.tensor_dtype_to_np_dtype(elem)) if elem else array
        del model.graph.input[i]
        existing = [j for j, t in enumerate(model.graph.initializer) if t.name == value.name]
        for j in reversed(existing):
            del model.graph.initializer[j]
        model.graph.initializer.append(numpy_helper.from_array(array, name=value.name))
    if wanted:
        raise ValueError(f"no graph input named {', '.join(sorted(wanted))}")


# --------------------------------------------------------------------------------------------------------------
# graph bookkeeping


class _Graph:
    """The model's main graph as a plain node list, with producers, constants and inferred types."""

    def __init__(self, model):
        self.model = model
        self.graph = model.graph
        self.nodes = list(self.graph.node)
        self.initializers = {t.name: t for t in self.graph.initializer}
        self.outputs = {v.name for v in self.graph.output}
        self.inputs = {v.name for v in self.graph.input} - set(self.initializers)
        self.types: Dict[str, Tuple[int, Optional[List[Optional[int]]]]] = {}
        self._arrays: Dict[str, np.ndarray] = {}
        self._new_initializers: List = []
        self._counter = 0
        self._producers = None
        self.opset = 1
        for entry in model.opset_import:
            if entry.domain in ("", "ai.onnx"):
                self.opset = entry.version

    # constants -------------------------------------------------------------------------------------------
    def const(self, name: str) -> Optional[np.ndarray]:
        """The value of ``name`` if it is an initializer, else None."""
        if not name or name not in self.initializers:
            return None
        if name not in self._arrays:
            from onnx import numpy_helper

            self._arrays[name] = numpy_helper.to_array(self.initializers[name])
        return self._arrays[name]

    def is_const(self, name: str) -> bool:
        return bool(name) and name in self.initializers

    def add_initializer(self, array: np.ndarray, hint: str) -> str:
        from onnx import numpy_helper

        name = self.fresh(hint)
        tensor = numpy_helper.from_array(np.asarray(array), name=name)
        self.initializers[name] = tensor
        self._arrays[name] = np.asarray(array)
        self._new_initializers.append(tensor)
        return name

    def fresh(self, hint: str) -> str:
        self._counter += 1
        return f"{DOMAIN}/{hint}/{self._counter}"

    def constants_to_initializers(self) -> None:
        """``Constant`` nodes (not graph outputs) become initializers, where onnx2torch looks weights up."""
        from onnx import helper, numpy_helper

        kept = []
        for node in self.nodes:
            if node.op_type != "Constant" or node.domain not in ("", "ai.onnx") or node.output[0] in self.outputs:
                kept.append(node)
                continue
            attrs = {a.name: a for a in node.attribute}
            array = None
            if "value" in attrs:
                array = numpy_helper.to_array(attrs["value"].t)
            elif "value_float" in attrs or "value_floats" in attrs or "value_int" in attrs or "value_ints" in attrs:
                key = next(k for k in ("value_float", "value_floats", "value_int", "value_ints") if k in attrs)
                value = helper.get_attribute_value(attrs[key])
                dtype = np.float32 if key.startswith("value_float") else np.int64
                array = np.asarray(value, dtype=dtype)
            if array is None:
                kept.append(node)
                continue
            tensor = numpy_helper.from_array(array, name=node.output[0])
            self.initializers[tensor.name] = tensor
            self._arrays[tensor.name] = array
            self._new_initializers.append(tensor)
        self.nodes = kept

    def bypass_constant_identities(self) -> None:
        """Consumers of ``Identity(initializer)`` read the initializer itself (the Identity dies unless an output)."""
        alias: Dict[str, str] = {}
        for node in self.nodes:
            if node.op_type == "Identity" and node.domain in ("", "ai.onnx"):
                source = alias.get(node.input[0], node.input[0])
                if source in self.initializers:
                    alias[node.output[0]] = source
        if not alias:
            return
        for node in self.nodes:
            if node.op_type == "Identity" and node.output[0] in self.outputs:
                continue
            for i, name in enumerate(node.input):
                if name in alias:
                    node.input[i] = alias[name]

    # types -----------------------------------------------------------------------------------------------
    def infer_types(self) -> None:
        """Element type and shape of every tensor, by ONNX shape inference on a copy without the large weights."""
        import onnx
        from onnx import helper

        small = []
        big_inputs = []
        for name, tensor in self.initializers.items():
            if int(np.prod(tensor.dims, dtype=np.int64)) <= _SMALL_CONSTANT:
                small.append(tensor)
            else:
                big_inputs.append(helper.make_tensor_value_info(name, tensor.data_type, list(tensor.dims)))
        real_inputs = [v for v in self.graph.input if v.name not in self.initializers]
        skeleton = helper.make_graph(self.nodes, self.graph.name or "graph", real_inputs + big_inputs,
                                     list(self.graph.output), initializer=small)
        model = helper.make_model(skeleton, opset_imports=list(self.model.opset_import))
        model.ir_version = self.model.ir_version
        try:
            inferred = onnx.shape_inference.infer_shapes(model)
        except Exception:  # an operator shape inference cannot handle: keep what the model says
            inferred = model
            inferred.graph.value_info.extend(self.graph.value_info)
        for value in list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output):
            self.types[value.name] = _type_of(value)
        for name, tensor in self.initializers.items():
            self.types[name] = (tensor.data_type, list(tensor.dims))

    def shape(self, name: str) -> Optional[List[int]]:
        """The full static shape of ``name``, or None if any dimension is unknown."""
        entry = self.types.get(name)
        if entry is None or entry[1] is None or any(d is None for d in entry[1]):
            return None
        return list(entry[1])

    def rank(self, name: str) -> Optional[int]:
        entry = self.types.get(name)
        return None if entry is None or entry[1] is None else len(entry[1])

    def elem_type(self, name: str) -> Optional[int]:
        entry = self.types.get(name)
        return None if entry is None else entry[0]

    # structure -------------------------------------------------------------------------------------------
    def producer_map(self) -> Dict[str, object]:
        """Output name -> node (cached; callers that replace a node keep its outputs' names)."""
        if self._producers is None:
            self._producers = {out: node for node in self.nodes for out in node.output if out}
        return self._producers

    def replace(self, old, new) -> None:
        index = next(i for i, n in enumerate(self.nodes) if n is old)
        self.nodes[index] = new
        if self._producers is not None:
            for out in new.output:
                self._producers[out] = new

    def remove_dead(self) -> None:
        """Drop the nodes no graph output depends on, then the initializers nothing reads."""
        live = set(self.outputs)
        kept = []
        for node in reversed(self.nodes):
            if any(out in live for out in node.output):
                kept.append(node)
                live.update(_inputs_of(node))
        kept.reverse()
        self.nodes = kept
        self._producers = None
        used = set(live)
        for name in [n for n in self.initializers if n not in used]:
            del self.initializers[name]
            self._arrays.pop(name, None)

    def commit(self) -> None:
        """Write nodes, initializers, value_info and our opset import back into the model."""
        from onnx import helper

        graph = self.graph
        del graph.node[:]
        graph.node.extend(self.nodes)
        # drop unused initializers in place (no copy of the large ones), then add the new ones
        existing = {t.name for t in self._new_initializers}
        for i in reversed(range(len(graph.initializer))):
            name = graph.initializer[i].name
            if name not in self.initializers or name in existing:
                del graph.initializer[i]
        graph.initializer.extend(t for t in self._new_initializers if t.name in self.initializers)
        for i in reversed(range(len(graph.input))):
            name = graph.input[i].name
            if name not in self.inputs and name not in self.initializers:
                del graph.input[i]
        # every node output's type as inferred before the rewrite: our nodes keep their outputs' names, so
        # onnx2torch's own shape inference (which skips our domain) still knows the shapes after them
        produced = {out for node in self.nodes for out in node.output if out} - self.outputs
        del graph.value_info[:]
        for name in sorted(produced):
            entry = self.types.get(name)
            if entry is None or entry[0] == 0:
                continue
            dims = None if entry[1] is None else [d if d is not None else "?" for d in entry[1]]
            graph.value_info.append(helper.make_tensor_value_info(name, entry[0], dims))
        if not any(entry.domain == DOMAIN for entry in self.model.opset_import):
            self.model.opset_import.append(helper.make_opsetid(DOMAIN, DOMAIN_VERSION))


def _type_of(value) -> Tuple[int, Optional[List[Optional[int]]]]:
    tensor_type = value.type.tensor_type
    if not tensor_type.HasField("shape"):
        return tensor_type.elem_type, None
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim]
    return tensor_type.elem_type, dims


def _inputs_of(node) -> List[str]:
    """The node's inputs, plus the outer names its subgraphs (If/Loop/Scan bodies) read."""
    names = [name for name in node.input if name]
    for attr in node.attribute:
        subgraphs = list(attr.graphs) + ([attr.g] if attr.HasField("g") else [])
        for sub in subgraphs:
            for inner in sub.node:
                names.extend(_inputs_of(inner))
    return names


def _attrs(node) -> dict:
    from onnx import helper

    out = {}
    for attr in node.attribute:
        value = helper.get_attribute_value(attr)
        out[attr.name] = value.decode() if isinstance(value, bytes) else value
    return out


def _ints(name: str, values: Iterable[int]):
    """An int list as a tensor attribute (a plain ``ints`` attribute cannot be empty for onnx2torch)."""
    from onnx import helper, numpy_helper

    return helper.make_attribute(name, numpy_helper.from_array(np.asarray(list(values), dtype=np.int64)))


def _floats(name: str, values: Iterable[float]):
    from onnx import helper, numpy_helper

    return helper.make_attribute(name, numpy_helper.from_array(np.asarray(list(values), dtype=np.float64)))


def _tensor(name: str, array: np.ndarray):
    from onnx import helper, numpy_helper

    return helper.make_attribute(name, numpy_helper.from_array(np.asarray(array)))


def _node(op_type: str, inputs: Sequence[str], outputs: Sequence[str], name: str, attributes=(), **plain):
    """A node of our domain; ``attributes`` are ready AttributeProtos, ``plain`` go through make_attribute."""
    from onnx import helper

    node = helper.make_node(op_type, list(inputs), list(outputs), name=name, domain=DOMAIN, **plain)
    node.attribute.extend(attributes)
    return node


def _trim_optional(inputs: List[str]) -> List[str]:
    while inputs and not inputs[-1]:
        inputs.pop()
    return inputs


# --------------------------------------------------------------------------------------------------------------
# static shape operators


def _resize(g: _Graph, node):
    """Resize with constant scales/sizes and a known input shape -> our Resize with the output size fixed."""
    attrs = _attrs(node)
    if g.opset < 11:
        return None  # opset 10 Resize (scales only, asymmetric): left to onnx2torch
    x = node.input[0]
    inputs = list(node.input) + [""] * (4 - len(node.input))
    scales_name, sizes_name = inputs[2], inputs[3]
    in_shape = g.shape(x)
    if in_shape is None:
        return None
    rank = len(in_shape)
    axes = attrs.get("axes")
    axes = [a + rank if a < 0 else a for a in axes] if axes else list(range(rank))
    sizes = g.const(sizes_name) if sizes_name else None
    scales = g.const(scales_name) if scales_name else None
    if sizes_name and sizes is None:
        return None  # sizes computed at run time (SAM's orig_im_size): onnx2torch's Resize
    if scales_name and scales is None and (sizes is None or not sizes.size):
        return None  # scales computed at run time
    out_shape = list(in_shape)
    full_scales = [1.0] * rank
    if sizes is not None and sizes.size:
        if attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch":
            return None
        for axis, size in zip(axes, sizes.tolist()):
            out_shape[axis] = int(size)
            full_scales[axis] = float(np.float32(size) / np.float32(in_shape[axis]))
    elif scales is not None and scales.size:
        for axis, scale in zip(axes, scales.astype(np.float32).tolist()):
            out_shape[axis] = int(math.floor(np.float32(in_shape[axis]) * np.float32(scale)))
            full_scales[axis] = float(scale)
    else:
        return None
    roi = g.const(inputs[1]) if inputs[1] else None
    ctm = attrs.get("coordinate_transformation_mode", "half_pixel")
    if ctm == "tf_crop_and_resize" and (roi is None or roi.size == 0):
        return None
    new_attrs = [
        _ints("input_shape", in_shape),
        _ints("output_shape", out_shape),
        _floats("scales", full_scales),
        _floats("roi", roi.astype(np.float64).ravel().tolist() if roi is not None and roi.size else []),
    ]
    plain = {
        "mode": attrs.get("mode", "nearest"),
        "coordinate_transformation_mode": ctm,
        "nearest_mode": attrs.get("nearest_mode", "round_prefer_floor"),
        "cubic_coeff_a": float(attrs.get("cubic_coeff_a", -0.75)),
        "exclude_outside": int(attrs.get("exclude_outside", 0)),
        "extrapolation_value": float(attrs.get("extrapolation_value", 0.0)),
        "antialias": int(attrs.get("antialias", 0)),
        "keep_aspect_ratio_policy": attrs.get("keep_aspect_ratio_policy", "stretch"),
    }
    return _node("Resize", [x], node.output, node.name, new_attrs, **plain)


def _reshape(g: _Graph, node):
    shape = g.const(node.input[1])
    if shape is None:
        return None
    allowzero = int(_attrs(node).get("allowzero", 0))
    return _node("Reshape", [node.input[0]], node.output, node.name, [_ints("shape", shape.tolist())],
                 allowzero=allowzero)


def _slice(g: _Graph, node):
    if g.opset < 10:
        return None  # opset 1-9 Slice has attributes already: onnx2torch's converter is static
    inputs = list(node.input) + [""] * (5 - len(node.input))
    starts, ends = g.const(inputs[1]), g.const(inputs[2])
    if starts is None or ends is None:
        return None
    axes = g.const(inputs[3]) if inputs[3] else np.arange(len(starts))
    steps = g.const(inputs[4]) if inputs[4] else np.ones(len(starts), dtype=np.int64)
    if axes is None or steps is None:
        return None
    rank = g.rank(node.input[0])
    axes = axes.astype(np.int64).tolist()
    if any(a < 0 for a in axes):
        if rank is None:
            return None
        axes = [a + rank if a < 0 else a for a in axes]
    return _node("Slice", [node.input[0]], node.output, node.name, [
        _ints("starts", starts.tolist()), _ints("ends", ends.tolist()), _ints("axes", axes),
        _ints("steps", steps.tolist()),
    ])


def _expand(g: _Graph, node):
    shape = g.const(node.input[1])
    if shape is None:
        return None
    return _node("Expand", [node.input[0]], node.output, node.name, [_ints("shape", shape.tolist())])


def _tile(g: _Graph, node):
    repeats = g.const(node.input[1])
    if repeats is None:
        return None
    return _node("Tile", [node.input[0]], node.output, node.name, [_ints("repeats", repeats.tolist())])


def _pad(g: _Graph, node):
    if g.opset < 11:
        return None  # Pad-2: pads are attributes, onnx2torch's converter is static
    attrs = _attrs(node)
    inputs = list(node.input) + [""] * (4 - len(node.input))
    pads = g.const(inputs[1])
    if pads is None:
        return None
    value = g.const(inputs[2]) if inputs[2] else np.zeros((), dtype=np.float32)
    if value is None:
        return None
    rank = g.rank(node.input[0])
    if inputs[3]:
        axes = g.const(inputs[3])
        if axes is None or rank is None:
            return None
        full = [0] * (2 * rank)
        count = len(axes)
        for i, axis in enumerate(axes.tolist()):
            axis = axis + rank if axis < 0 else axis
            full[axis] = int(pads[i])
            full[axis + rank] = int(pads[i + count])
        pads = np.asarray(full, dtype=np.int64)
    return _node("Pad", [node.input[0]], node.output, node.name,
                 [_ints("pads", pads.tolist()), _tensor("value", np.asarray(value).reshape(()))],
                 mode=attrs.get("mode", "constant"))


def _split(g: _Graph, node):
    attrs = _attrs(node)
    axis = int(attrs.get("axis", 0))
    rank = g.rank(node.input[0])
    if axis < 0:
        if rank is None:
            return None
        axis += rank
    count = len(node.output)
    split = None
    if g.opset >= 13:
        if len(node.input) > 1 and node.input[1]:
            split = g.const(node.input[1])
            if split is None:
                return None
            split = split.tolist()
    elif "split" in attrs:
        split = list(attrs["split"])
    if split is None:
        shape = g.shape(node.input[0])
        if shape is None:
            return None
        length = shape[axis]
        if "num_outputs" in attrs:  # opset 18: ceil(length / n) each, the last one smaller
            chunk = -(-length // count)
            split = [min(chunk, length - i * chunk) for i in range(count)]
        else:
            if length % count:
                return None
            split = [length // count] * count
    return _node("Split", [node.input[0]], node.output, node.name, [_ints("split", split)], axis=axis)


def _squeeze(g: _Graph, node):
    if g.opset < 13 or len(node.input) < 2 or not node.input[1]:
        return None  # axes as attribute (static in onnx2torch) or absent (torch.squeeze, static)
    axes = g.const(node.input[1])
    if axes is None:
        return None
    rank = g.rank(node.input[0])
    axes = axes.tolist()
    if any(a < 0 for a in axes):
        if rank is None:
            return None
        axes = [a + rank if a < 0 else a for a in axes]
    return _node("Squeeze", [node.input[0]], node.output, node.name, [_ints("axes", sorted(axes, reverse=True))])


# --------------------------------------------------------------------------------------------------------------
# operators onnx2torch converts wrongly or not at all


def _clip(g: _Graph, node):
    """Clip on integers (onnx2torch clamps with floats -> a float tensor), or with run-time bounds."""
    if g.opset < 11:
        return None
    inputs = list(node.input) + [""] * (3 - len(node.input))
    bounds = [g.const(name) if name else None for name in inputs[1:3]]
    dynamic = [bool(name) and value is None for name, value in zip(inputs[1:3], bounds)]
    elem = g.elem_type(node.input[0])
    known = next((b for b in bounds if b is not None), None)
    integer = elem in _INTEGER_TYPES or (known is not None and np.issubdtype(known.dtype, np.integer))
    if not integer and not any(dynamic):
        return None  # float Clip with constant bounds: onnx2torch's (ReLU / ReLU6 / clamp) is right
    attributes = []
    for key, value in zip(("min", "max"), bounds):
        if value is not None and value.size:
            attributes.append(_tensor(key, np.asarray(value).reshape(())))
    ins = [node.input[0], inputs[1] if dynamic[0] else "", inputs[2] if dynamic[1] else ""]
    return _node("Clip", _trim_optional(ins), node.output, node.name, attributes, integer=int(integer))


def _gather_nd(g: _Graph, node):
    batch_dims = int(_attrs(node).get("batch_dims", 0))
    if batch_dims == 0:
        return None  # onnx2torch's GatherND is right for batch_dims = 0
    return _node("GatherND", node.input, node.output, node.name, batch_dims=batch_dims)


def _layer_norm(g: _Graph, node):
    """All LayerNormalization: ours reads the normalised shape from the input at run time (static in export)."""
    if len([o for o in node.output if o]) > 1:
        return None  # Mean / InvStdDev outputs requested: not supported, onnx2torch reports it
    attrs = _attrs(node)
    return _node("LayerNormalization", node.input, node.output[:1], node.name,
                 axis=int(attrs.get("axis", -1)), epsilon=float(attrs.get("epsilon", 1e-5)))


def _one_hot(g: _Graph, node):
    axis = int(_attrs(node).get("axis", -1))
    depth = g.const(node.input[1])
    if depth is not None:  # inputs: indices, values
        return _node("OneHot", [node.input[0], node.input[2]], node.output, node.name,
                     [_ints("depth", [int(np.asarray(depth).reshape(-1)[0])])], axis=axis)
    return _node("OneHot", node.input, node.output, node.name, axis=axis)  # indices, depth (read per run), values


def _flatten(g: _Graph, node):
    axis = int(_attrs(node).get("axis", 1))
    return _node("Flatten", node.input, node.output, node.name, axis=axis)


_RULES = {
    "Resize": _resize,
    "Reshape": _reshape,
    "Slice": _slice,
    "Expand": _expand,
    "Tile": _tile,
    "Pad": _pad,
    "Split": _split,
    "Squeeze": _squeeze,
    "Clip": _clip,
    "GatherND": _gather_nd,
    "LayerNormalization": _layer_norm,
    "OneHot": _one_hot,
    "Flatten": _flatten,
}


# --------------------------------------------------------------------------------------------------------------
# deformable convolution (deform-conv2d-onnx-exporter 1.2.0, use_gathernd=True)


def _deform_conv(g: _Graph, conv) -> bool:
    """Replace the exporter's subgraph ending in ``conv`` by one DeformConv2d node; True if it matched."""
    match = _match_deform_conv(g, conv)
    if match is None:
        return False
    inputs = [match["input"], match["offset"], conv.input[1], conv.input[2] if len(conv.input) > 2 else "",
              match["mask"] or ""]
    g.replace(conv, _node("DeformConv2d", _trim_optional(inputs), conv.output, conv.name or "DeformConv2d", [
        _ints("stride", match["stride"]), _ints("padding", match["padding"]),
        _ints("dilation", match["dilation"]),
    ], groups=match["groups"], offset_groups=match["offset_groups"]))
    return True


def _is(node, op_type: str) -> bool:
    return node is not None and node.op_type == op_type and node.domain in ("", "ai.onnx")


def _match_deform_conv(g: _Graph, conv) -> Optional[dict]:
    """Parameters of the deform conv whose final Conv is ``conv``, or None if ``conv`` is an ordinary Conv."""
    attrs = _attrs(conv)
    weight = g.initializers.get(conv.input[1]) if len(conv.input) > 1 else None
    if weight is None or len(weight.dims) != 4:  # (the weights' shape only: no copy of the big tensors)
        return None
    kh, kw = int(weight.dims[2]), int(weight.dims[3])
    if list(attrs.get("strides", [1, 1])) != [kh, kw] or any(attrs.get("pads", [0, 0, 0, 0])):
        return None
    if any(d != 1 for d in attrs.get("dilations", [1, 1])) or attrs.get("auto_pad", "NOTSET") not in ("NOTSET", ""):
        return None
    producers = g.producer_map()

    def up(name, op_type):
        node = producers.get(name)
        return node if _is(node, op_type) else None

    # Conv <- Reshape [b, ch, h*kh, w*kw] <- Transpose [0,1,4,2,5,3] <- Reshape [b, ch, kh, kw, h, w] <- Mul/Sum
    r_conv = up(conv.input[0], "Reshape")
    transpose = r_conv and up(r_conv.input[0], "Transpose")
    if transpose is None or list(_attrs(transpose).get("perm", [])) != [0, 1, 4, 2, 5, 3]:
        return None
    r_kernel = up(transpose.input[0], "Reshape")
    if r_kernel is None:
        return None
    top = producers.get(r_kernel.input[0])
    mask = None
    total = None
    if _is(top, "Mul"):
        for a, b in ((0, 1), (1, 0)):
            summed, reshaped = producers.get(top.input[a]), producers.get(top.input[b])
            if _is(summed, "Sum") and _is(reshaped, "Reshape"):
                total, mask = summed, reshaped.input[0]
                mask_shape = g.const(reshaped.input[1])
                break
        if total is None:
            return None
    elif _is(top, "Sum"):
        total = top
    else:
        return None
    if len(total.input) != 4:
        return None
    # each Sum input: Mul(bilinear weight, Reshape(Transpose(GatherND(batch_dims=2))))
    gathers = []
    for name in total.input:
        mul = up(name, "Mul")
        if mul is None:
            return None
        found = None
        for side in mul.input:
            r = up(side, "Reshape")
            t = r and up(r.input[0], "Transpose")
            gather = t and up(t.input[0], "GatherND")
            if gather is not None and int(_attrs(gather).get("batch_dims", 0)) == 2:
                found = gather
        if found is None:
            return None
        gathers.append(found)
    # data: Transpose [0,1,3,4,2] <- Reshape [b, g, ch, H', W'] <- Pad(x, [0,0,ph,pw,0,0,ph,pw])
    data = {gather.input[0] for gather in gathers}
    if len(data) != 1:
        datas = [producers.get(name) for name in data]
        if not all(_is(t, "Transpose") for t in datas) or len({t.input[0] for t in datas}) != 1:
            return None
    t_data = up(gathers[0].input[0], "Transpose")
    if t_data is None or list(_attrs(t_data).get("perm", [])) != [0, 1, 3, 4, 2]:
        return None
    r_data = up(t_data.input[0], "Reshape")
    pad = r_data and up(r_data.input[0], "Pad")
    if pad is None or _attrs(pad).get("mode", "constant") != "constant" or len(pad.input) < 2:
        return None
    if len(pad.input) > 2 and pad.input[2] and not _zero(g.const(pad.input[2])):
        return None
    pads = g.const(pad.input[1])
    group_shape = g.const(r_data.input[1])
    if pads is None or pads.size != 8 or group_shape is None or group_shape.size != 5:
        return None
    pads = pads.tolist()
    if pads[0] or pads[1] or pads[4] or pads[5] or pads[2] != pads[6] or pads[3] != pads[7]:
        return None
    # sampling points: GatherND indices <- ... <- Floor(p), p = Add(p_0 + p_k constant, Reshape(offset))
    floors = [_find_up(producers, gather.input[1], "Floor") for gather in gathers]
    if any(f is None for f in floors) or len({id(f) for f in floors}) != 1:
        return None
    floor = floors[0]
    p_add = up(floor.input[0], "Add")
    if p_add is None:
        return None
    grid = offset_reshape = None
    for a, b in ((0, 1), (1, 0)):
        if g.is_const(p_add.input[a]) and _is(producers.get(p_add.input[b]), "Reshape"):
            grid, offset_reshape = g.const(p_add.input[a]), producers[p_add.input[b]]
    if grid is None or grid.ndim != 6:
        return None
    offset_shape = g.const(offset_reshape.input[1])
    if offset_shape is None or offset_shape.size != 6:
        return None
    _, offset_groups, k_area, two, out_h, out_w = [int(v) for v in offset_shape.tolist()]
    if k_area != kh * kw or two != 2 or tuple(grid.shape) != (1, 1, k_area, 2, out_h, out_w):
        return None
    if int(group_shape[1]) != offset_groups:
        return None
    if mask is not None and (mask_shape is None or [int(v) for v in mask_shape.tolist()][1:] !=
                             [offset_groups, 1, k_area, out_h, out_w]):
        return None
    # stride, dilation and the exporter's extra padding from the constant grid of sampling points
    extra = [int(grid[0, 0, 0, 0, 0, 0]), int(grid[0, 0, 0, 1, 0, 0])]
    padding = [int(pads[2]) - extra[0], int(pads[3]) - extra[1]]
    if any(p < 0 for p in padding) or any((e == 1) != (p == 0) for e, p in zip(extra, padding)):
        return None
    dilation = [int(grid[0, 0, kw, 0, 0, 0] - grid[0, 0, 0, 0, 0, 0]) if kh > 1 else 1,
                int(grid[0, 0, 1, 1, 0, 0] - grid[0, 0, 0, 1, 0, 0]) if kw > 1 else 1]
    x = pad.input[0]
    x_shape = g.shape(x)
    stride = []
    for axis, (size, k, d, p) in enumerate(zip((out_h, out_w), (kh, kw), dilation, padding)):
        if size > 1:
            step = grid[0, 0, 0, axis, 1, 0] - grid[0, 0, 0, axis, 0, 0] if axis == 0 else \
                grid[0, 0, 0, 1, 0, 1] - grid[0, 0, 0, 1, 0, 0]
            stride.append(int(step))
        else:  # one output position: any stride past the input's end; the smallest such
            if x_shape is None:
                return None
            stride.append(max(1, x_shape[2 + axis] + 2 * p - d * (k - 1)))
    if any(s < 1 for s in stride) or any(d < 1 for d in dilation):
        return None
    expected = _exporter_grid(out_h, out_w, stride, dilation, extra, kh, kw)
    if not np.array_equal(expected, grid):
        return None
    channels = int(weight.dims[1]) * int(attrs.get("group", 1))
    if int(group_shape[2]) * offset_groups != channels:
        return None
    return {
        "input": x, "offset": offset_reshape.input[0], "mask": mask, "stride": stride, "padding": padding,
        "dilation": dilation, "groups": int(attrs.get("group", 1)), "offset_groups": offset_groups,
    }


def _zero(value) -> bool:
    return value is not None and not np.any(value)


def _find_up(producers, name: str, op_type: str, limit: int = 12):
    """The nearest ``op_type`` node above ``name`` through the exporter's index arithmetic, or None."""
    passable = {"Concat", "Reshape", "Clip", "Slice", "Cast", "Add", "Unsqueeze", "Squeeze", "Identity", "Mul"}
    frontier = [name]
    seen = set()
    for _ in range(limit):
        following = []
        for value in frontier:
            node = producers.get(value)
            if node is None or id(node) in seen:
                continue
            seen.add(id(node))
            if _is(node, op_type):
                return node
            if node.op_type in passable and node.domain in ("", "ai.onnx"):
                following.extend(i for i in node.input if i)
        if not following:
            return None
        frontier = following
    return None


def _exporter_grid(out_h, out_w, stride, dilation, extra, kh, kw) -> np.ndarray:
    """p_0 + p_k as deform-conv2d-onnx-exporter computes it (shape [1, 1, kh*kw, 2, out_h, out_w])."""
    y0 = np.arange(out_h)[:, None] * stride[0] + extra[0]
    x0 = np.arange(out_w)[None, :] * stride[1] + extra[1]
    ky, kx = np.meshgrid(np.arange(kh) * dilation[0], np.arange(kw) * dilation[1], indexing="ij")
    grid = np.empty((1, 1, kh * kw, 2, out_h, out_w), dtype=np.float64)
    grid[0, 0, :, 0] = ky.reshape(-1, 1, 1) + y0[None]
    grid[0, 0, :, 1] = kx.reshape(-1, 1, 1) + x0[None]
    return grid
