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
    attrs = node_attrs(conv)
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
        return node if is_op(node, op_type) else None

    # Conv <- Reshape [b, ch, h*kh, w*kw] <- Transpose [0,1,4,2,5,3] <- Reshape [b, ch, kh, kw, h, w] <- Mul/Sum
    r_conv = up(conv.input[0], "Reshape")
    transpose = r_conv and up(r_conv.input[0], "Transpose")
    if transpose is None or list(node_attrs(transpose).get("perm", [])) != [0, 1, 4, 2, 5, 3]:
        return None
    r_kernel = up(transpose.input[0], "Reshape")
    if r_kernel is None:
        return None
    top = producers.get(r_kernel.input[0])
    mask = None
    total = None
    if is_op(top, "Mul"):
        for a, b in ((0, 1), (1, 0)):
            summed, reshaped = producers.get(top.input[a]), producers.get(top.input[b])
            if is_op(summed, "Sum") and is_op(reshaped, "Reshape"):
                total, mask = summed, reshaped.input[0]
                mask_shape = g.const(reshaped.input[1])
                break
        if total is None:
            return None
    elif is_op(top, "Sum"):
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
            if gather is not None and int(node_attrs(gather).get("batch_dims", 0)) == 2:
                found = gather
        if found is None:
            return None
        gathers.append(found)
    # data: Transpose [0,1,3,4,2] <- Reshape [b, g, ch, H', W'] <- Pad(x, [0,0,ph,pw,0,0,ph,pw])
    data = {gather.input[0] for gather in gathers}
    if len(data) != 1:
        datas = [producers.get(name) for name in data]
        if not all(is_op(t, "Transpose") for t in datas) or len({t.input[0] for t in datas}) != 1:
            return None
    t_data = up(gathers[0].input[0], "Transpose")
    if t_data is None or list(node_attrs(t_data).get("perm", [])) != [0, 1, 3, 4, 2]:
        return None
    r_data = up(t_data.input[0], "Reshape")
    pad = r_data and up(r_data.input[0], "Pad")
    if pad is None or node_attrs(pad).get("mode", "constant") != "constant" or len(pad.input) < 2:
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
        if g.is_const(p_add.input[a]) and is_op(producers.get(p_add.input[b]), "Reshape"):
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
