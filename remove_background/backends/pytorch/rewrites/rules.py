"""Per-operator rules: one ONNX node in, a node of our domain out (or None: onnx2torch's converter is right).

Each rule sees the folded graph, so shape inputs that are constants become attributes of our node.
"""

from __future__ import annotations

import math

import numpy as np

from .graph import INTEGER_TYPES, Graph, floats_attr, ints_attr, make_node, node_attrs, tensor_attr, trim_optional


def _resize(g: Graph, node):
    """Resize with constant scales/sizes and a known input shape -> our Resize with the output size fixed."""
    attrs = node_attrs(node)
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
        ints_attr("input_shape", in_shape),
        ints_attr("output_shape", out_shape),
        floats_attr("scales", full_scales),
        floats_attr("roi", roi.astype(np.float64).ravel().tolist() if roi is not None and roi.size else []),
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
    return make_node("Resize", [x], node.output, node.name, new_attrs, **plain)


def _reshape(g: Graph, node):
    shape = g.const(node.input[1])
    if shape is None:
        return None
    allowzero = int(node_attrs(node).get("allowzero", 0))
    return make_node("Reshape", [node.input[0]], node.output, node.name, [ints_attr("shape", shape.tolist())],
                 allowzero=allowzero)


def _slice(g: Graph, node):
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
    return make_node("Slice", [node.input[0]], node.output, node.name, [
        ints_attr("starts", starts.tolist()), ints_attr("ends", ends.tolist()), ints_attr("axes", axes),
        ints_attr("steps", steps.tolist()),
    ])


def _expand(g: Graph, node):
    shape = g.const(node.input[1])
    if shape is None:
        return None
    return make_node("Expand", [node.input[0]], node.output, node.name, [ints_attr("shape", shape.tolist())])


def _tile(g: Graph, node):
    repeats = g.const(node.input[1])
    if repeats is None:
        return None
    return make_node("Tile", [node.input[0]], node.output, node.name, [ints_attr("repeats", repeats.tolist())])


def _pad(g: Graph, node):
    if g.opset < 11:
        return None  # Pad-2: pads are attributes, onnx2torch's converter is static
    attrs = node_attrs(node)
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
    return make_node("Pad", [node.input[0]], node.output, node.name,
                 [ints_attr("pads", pads.tolist()), tensor_attr("value", np.asarray(value).reshape(()))],
                 mode=attrs.get("mode", "constant"))


def _split(g: Graph, node):
    attrs = node_attrs(node)
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
    return make_node("Split", [node.input[0]], node.output, node.name, [ints_attr("split", split)], axis=axis)


def _squeeze(g: Graph, node):
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
    axes = sorted(axes, reverse=True)
    return make_node("Squeeze", [node.input[0]], node.output, node.name, [ints_attr("axes", axes)])


# --------------------------------------------------------------------------------------------------------------
# operators onnx2torch converts wrongly or not at all


def _clip(g: Graph, node):
    """Clip on integers (onnx2torch clamps with floats -> a float tensor), or with run-time bounds."""
    if g.opset < 11:
        return None
    inputs = list(node.input) + [""] * (3 - len(node.input))
    bounds = [g.const(name) if name else None for name in inputs[1:3]]
    dynamic = [bool(name) and value is None for name, value in zip(inputs[1:3], bounds)]
    elem = g.elem_type(node.input[0])
    known = next((b for b in bounds if b is not None), None)
    integer = elem in INTEGER_TYPES or (known is not None and np.issubdtype(known.dtype, np.integer))
    if not integer and not any(dynamic):
        return None  # float Clip with constant bounds: onnx2torch's (ReLU / ReLU6 / clamp) is right
    attributes = []
    for key, value in zip(("min", "max"), bounds):
        if value is not None and value.size:
            attributes.append(tensor_attr(key, np.asarray(value).reshape(())))
    ins = [node.input[0], inputs[1] if dynamic[0] else "", inputs[2] if dynamic[1] else ""]
    return make_node("Clip", trim_optional(ins), node.output, node.name, attributes, integer=int(integer))


def _gather(g: Graph, node):
    """Gather with a 0-dim index (a constant one becomes an attribute): no host read of the index per run."""
    index = g.const(node.input[1])
    if index is not None and index.ndim == 0:
        return make_node("Gather", node.input[:1], node.output, node.name, [tensor_attr("index", index)],
                         axis=int(node_attrs(node).get("axis", 0)))
    if index is None and g.rank(node.input[1]) == 0:
        return make_node("Gather", node.input, node.output, node.name, axis=int(node_attrs(node).get("axis", 0)))
    return None  # indices with dimensions: onnx2torch's advanced indexing stays on the device


def _gather_nd(g: Graph, node):
    batch_dims = int(node_attrs(node).get("batch_dims", 0))
    if batch_dims == 0:
        return None  # onnx2torch's GatherND is right for batch_dims = 0
    return make_node("GatherND", node.input, node.output, node.name, batch_dims=batch_dims)


def _layer_norm(g: Graph, node):
    """All LayerNormalization: ours reads the normalised shape from the input at run time (static in export)."""
    if len([o for o in node.output if o]) > 1:
        return None  # Mean / InvStdDev outputs requested: not supported, onnx2torch reports it
    attrs = node_attrs(node)
    return make_node("LayerNormalization", node.input, node.output[:1], node.name,
                 axis=int(attrs.get("axis", -1)), epsilon=float(attrs.get("epsilon", 1e-5)))


def _one_hot(g: Graph, node):
    axis = int(node_attrs(node).get("axis", -1))
    depth = g.const(node.input[1])
    if depth is not None:  # inputs: indices, values
        return make_node("OneHot", [node.input[0], node.input[2]], node.output, node.name,
                     [ints_attr("depth", [int(np.asarray(depth).reshape(-1)[0])])], axis=axis)
    return make_node("OneHot", node.input, node.output, node.name, axis=axis)  # indices, depth (read per run), values


def _flatten(g: Graph, node):
    axis = int(node_attrs(node).get("axis", 1))
    return make_node("Flatten", node.input, node.output, node.name, axis=axis)


RULES = {
    "Resize": _resize,
    "Reshape": _reshape,
    "Slice": _slice,
    "Expand": _expand,
    "Tile": _tile,
    "Pad": _pad,
    "Split": _split,
    "Squeeze": _squeeze,
    "Clip": _clip,
    "Gather": _gather,
    "GatherND": _gather_nd,
    "LayerNormalization": _layer_norm,
    "OneHot": _one_hot,
    "Flatten": _flatten,
}
