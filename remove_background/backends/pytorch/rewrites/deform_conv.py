"""Deformable convolution: deform-conv2d-onnx-exporter 1.2.0's subgraph (use_gathernd=True) back to one node.

The exporter writes BiRefNet's ``torchvision.ops.deform_conv2d`` as Pad, Reshape, Transpose, Floor, Cast, Clip on
int64, four GatherND with batch_dims=2, bilinear weights, Sum, mask Mul, Reshape/Transpose/Reshape and a Conv with
stride = kernel. ``rewrite_deform_convs`` replaces each such subgraph by one ``DeformConv2d`` node of our domain
(``torchvision.ops.deform_conv2d``), with the parameters read back from the constants of the subgraph.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .graph import Graph, ints_attr, is_op, make_node, node_attrs, trim_optional
from .layouts import chain_up, moves_like, reshape, sources_up, transpose


def rewrite_deform_convs(g: Graph) -> int:
    """Replace every exporter subgraph in ``g`` by a DeformConv2d node; the number replaced (dead nodes stay)."""
    return sum(_deform_conv(g, node) for node in list(g.nodes) if is_op(node, "Conv"))


def _deform_conv(g: Graph, conv) -> bool:
    """Replace the exporter's subgraph ending in ``conv`` by one DeformConv2d node; True if it matched."""
    match = _match_deform_conv(g, conv)
    if match is None:
        return False
    inputs = [match["input"], match["offset"], conv.input[1], conv.input[2] if len(conv.input) > 2 else "",
              match["mask"] or ""]
    g.replace(conv, make_node("DeformConv2d", trim_optional(inputs), conv.output, conv.name or "DeformConv2d", [
        ints_attr("stride", match["stride"]), ints_attr("padding", match["padding"]),
        ints_attr("dilation", match["dilation"]),
    ], groups=match["groups"], offset_groups=match["offset_groups"]))
    return True


def _match_deform_conv(g: Graph, conv) -> Optional[dict]:
    """Parameters of the deform conv whose final Conv is ``conv``, or None if ``conv`` is an ordinary Conv."""
    kernel = _kernel(g, conv)
    columns = kernel and _columns(g, conv, kernel)
    gathers = columns and _gathers(g, columns["sum"])
    data = gathers and _padded_input(g, [gather for gather, _ in gathers])
    sampling = data and _sampling(g, [gather for gather, _ in gathers])
    if not sampling:
        return None
    b, og, k_area, out_h, out_w = columns["batch"], data["groups"], sampling["k_area"], columns["h"], columns["w"]
    if k_area != kernel["kh"] * kernel["kw"] or (out_h, out_w) != sampling["hw"]:
        return None
    if data["channels"] * og != kernel["channels"]:
        return None
    # every Reshape/Transpose chain moves the data as the exporter's does (ONNX Runtime may reorder them)
    gathered = [transpose(0, 1, 3, 2), reshape(b, og, data["channels"], k_area, out_h, out_w)]
    if not all(moves_like(g.shape(gather.output[0]), steps, gathered) for gather, steps in gathers):
        return None
    offset = _source(g, sampling["offset"], (b, og, k_area, 2, out_h, out_w), (b, 2 * og * k_area, out_h, out_w))
    mask = None
    if columns["mask"] is not None:
        mask = _source(g, columns["mask"], (b, og, 1, k_area, out_h, out_w), (b, og * k_area, out_h, out_w))
        if mask is None:
            return None
    geometry = offset and _geometry(sampling["grid"], data["pads"], kernel, g.shape(data["input"]))
    if not geometry:
        return None
    return dict(geometry, input=data["input"], offset=offset, mask=mask, groups=kernel["groups"], offset_groups=og)


def _kernel(g: Graph, conv) -> Optional[dict]:
    """The final Conv's kernel, if it is the exporter's: stride = kernel, no padding, no dilation."""
    attrs = node_attrs(conv)
    weight = g.initializers.get(conv.input[1]) if len(conv.input) > 1 else None
    if weight is None or len(weight.dims) != 4:  # (the weights' shape only: no copy of the big tensors)
        return None
    kh, kw = int(weight.dims[2]), int(weight.dims[3])
    if list(attrs.get("strides", [1, 1])) != [kh, kw] or any(attrs.get("pads", [0, 0, 0, 0])):
        return None
    if any(d != 1 for d in attrs.get("dilations", [1, 1])) or attrs.get("auto_pad", "NOTSET") not in ("NOTSET", ""):
        return None
    groups = int(attrs.get("group", 1))
    return {"kh": kh, "kw": kw, "groups": groups, "channels": int(weight.dims[1]) * groups}


def _columns(g: Graph, conv, kernel: dict) -> Optional[dict]:
    """Conv <- [b, C, h*kh, w*kw] <- (Reshape, Transpose [0,1,4,2,5,3], Reshape) <- Sum, or Mul(Sum, mask)."""
    shape = g.shape(conv.input[0])
    kh, kw, channels = kernel["kh"], kernel["kw"], kernel["channels"]
    if shape is None or len(shape) != 4 or shape[1] != channels or shape[2] % kh or shape[3] % kw:
        return None
    b, h, w = shape[0], shape[2] // kh, shape[3] // kw
    found = chain_up(g, conv.input[0], lambda n: is_op(n, "Mul") or is_op(n, "Sum"))
    if found is None:
        return None
    top, source, steps = found
    expected = [reshape(b, channels, kh, kw, h, w), transpose(0, 1, 4, 2, 5, 3), reshape(b, channels, h * kh, w * kw)]
    if not moves_like(g.shape(source), steps, expected):
        return None
    producers = g.producer_map()
    total, mask = (top, None) if is_op(top, "Sum") else (None, None)
    if is_op(top, "Mul"):
        for a, other in ((0, 1), (1, 0)):
            if is_op(producers.get(top.input[a]), "Sum"):
                total, mask = producers[top.input[a]], top.input[other]
    if total is None or len(total.input) != 4:
        return None
    return {"sum": total, "mask": mask, "batch": b, "h": h, "w": w}


def _gathers(g: Graph, total) -> Optional[list]:
    """Each Sum input: Mul(bilinear weight, layout chain <- GatherND(batch_dims=2)); the GatherNDs and chains."""
    producers = g.producer_map()
    gathers = []
    for name in total.input:
        mul = producers.get(name)
        if not is_op(mul, "Mul"):
            return None
        found = None
        for side in mul.input:
            chain = chain_up(g, side, lambda n: is_op(n, "GatherND") and int(node_attrs(n).get("batch_dims", 0)) == 2)
            if chain is not None and chain[2]:
                found = (chain[0], chain[2])
        if found is None:
            return None
        gathers.append(found)
    return gathers


def _padded_input(g: Graph, gathers) -> Optional[dict]:
    """The GatherNDs' data: Pad(x, [0,0,ph,pw,0,0,ph,pw]) -> [b, og, c, H', W'] -> transposed to [b, og, H', W', c]."""
    chains = [chain_up(g, gather.input[0], lambda n: is_op(n, "Pad")) for gather in gathers]
    if any(c is None for c in chains) or len({id(c[0]) for c in chains}) != 1:
        return None
    pad = chains[0][0]
    if node_attrs(pad).get("mode", "constant") != "constant" or len(pad.input) < 2:
        return None
    if len(pad.input) > 2 and pad.input[2] and not _zero(g.const(pad.input[2])):
        return None
    pads = g.const(pad.input[1])
    data = g.shape(gathers[0].input[0])
    padded = g.shape(pad.output[0])
    if pads is None or pads.size != 8 or data is None or len(data) != 5 or padded is None:
        return None
    pads = pads.tolist()
    if pads[0] or pads[1] or pads[4] or pads[5] or pads[2] != pads[6] or pads[3] != pads[7]:
        return None
    b, og, height, width, c = data
    expected = [reshape(b, og, c, height, width), transpose(0, 1, 3, 4, 2)]
    if not all(moves_like(padded, steps, expected) for _, _, steps in chains):
        return None
    return {"input": pad.input[0], "pads": pads, "groups": og, "channels": c}


def _sampling(g: Graph, gathers) -> Optional[dict]:
    """Sampling points: GatherND indices <- ... <- Floor(p), p = Add(p_0 + p_k constant, offset laid out)."""
    producers = g.producer_map()
    floors = [_find_up(producers, gather.input[1], "Floor") for gather in gathers]
    if any(f is None for f in floors) or len({id(f) for f in floors}) != 1:
        return None
    p_add = producers.get(floors[0].input[0])
    if not is_op(p_add, "Add"):
        return None
    for a, b in ((0, 1), (1, 0)):
        grid = g.const(p_add.input[a])
        if grid is not None and grid.ndim == 6 and grid.shape[:2] == (1, 1) and grid.shape[3] == 2:
            return {"grid": grid, "offset": p_add.input[b], "k_area": int(grid.shape[2]),
                    "hw": (int(grid.shape[4]), int(grid.shape[5]))}
    return None


def _source(g: Graph, name: str, laid_out: tuple, wanted: tuple) -> Optional[str]:
    """The value of shape ``wanted`` above ``name`` whose layout chain down to ``name`` is one Reshape to
    ``laid_out`` (the offsets and the mask, as deform_conv2d takes them), or None."""
    for value, steps in sources_up(g, name):
        shape = g.shape(value)
        if shape is not None and tuple(shape) == wanted and moves_like(shape, steps, [reshape(*laid_out)]):
            return value
    return None


def _geometry(grid: np.ndarray, pads: list, kernel: dict, x_shape) -> Optional[dict]:
    """Stride, dilation and padding from the constant grid of sampling points (and the exporter's extra padding)."""
    kh, kw = kernel["kh"], kernel["kw"]
    out_h, out_w = grid.shape[4], grid.shape[5]
    extra = [int(grid[0, 0, 0, 0, 0, 0]), int(grid[0, 0, 0, 1, 0, 0])]
    padding = [int(pads[2]) - extra[0], int(pads[3]) - extra[1]]
    if any(p < 0 for p in padding) or any((e == 1) != (p == 0) for e, p in zip(extra, padding)):
        return None
    dilation = [int(grid[0, 0, kw, 0, 0, 0] - grid[0, 0, 0, 0, 0, 0]) if kh > 1 else 1,
                int(grid[0, 0, 1, 1, 0, 0] - grid[0, 0, 0, 1, 0, 0]) if kw > 1 else 1]
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
    if not np.array_equal(_exporter_grid(out_h, out_w, stride, dilation, extra, kh, kw), grid):
        return None
    return {"stride": stride, "padding": padding, "dilation": dilation}


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
            if is_op(node, op_type):
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
