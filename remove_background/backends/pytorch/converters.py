"""onnx2torch converters for the operators of our domain (``rewrites.DOMAIN``).

``rewrites`` renames the nodes onnx2torch 1.5.15 converts wrongly, not at all, or with a host read-back per run into
our domain, with their constant inputs as attributes; the converters here turn them into small torch modules whose
shapes are Python ints fixed at conversion, so ``torch.export`` sees no data-dependent guard. ``register()`` adds
them through onnx2torch's public ``add_converter`` (once per process).

Only ``convert.convert`` imports this module, once it has found onnx2torch: importing ``remove_background`` or
running the ONNX Runtime route never imports torch.
"""

from __future__ import annotations

import math
import threading
from typing import List, Optional, Sequence

import numpy as np
import torch
from onnx2torch.utils.common import OnnxMapping, OnnxToTorchModule, OperationConverterResult
from torch import nn

from .rewrites import DOMAIN, DOMAIN_VERSION

_registered = False
_lock = threading.Lock()
_CONVERTERS = {}


def register() -> None:
    """Register our converters with onnx2torch's public registry (idempotent, thread-safe)."""
    global _registered
    with _lock:
        if _registered:
            return
        from onnx2torch.node_converters.registry import add_converter

        for op_type, converter in _CONVERTERS.items():
            try:
                add_converter(operation_type=op_type, version=DOMAIN_VERSION, domain=DOMAIN)(converter)
            except ValueError:  # already there (this module was reloaded): the registered one is equivalent
                pass
        _registered = True


def _converter(op_type: str):
    def deco(fn):
        _CONVERTERS[op_type] = fn
        return fn

    return deco


def _unsupported(op_type: str, why: str) -> NotImplementedError:
    # worded like onnx2torch's own error, so torch_convert names the operator
    return NotImplementedError(
        f"Converter is not implemented (OperationDescription(domain='{DOMAIN}', operation_type='{op_type}', "
        f"version={DOMAIN_VERSION})): {why}"
    )


def _attr(node, name, default=None):
    return node.attributes.get(name, default)


def _attr_list(node, name, default=None) -> Optional[List]:
    value = node.attributes.get(name)
    if value is None:
        return default
    if hasattr(value, "to_numpy"):
        return value.to_numpy().tolist()
    return list(value)


def _attr_scalar(node, name):
    value = node.attributes.get(name)
    if value is None:
        return None
    return value.to_numpy().reshape(()).item()


def _result(module, inputs: Sequence[str], outputs: Sequence[str]):
    return OperationConverterResult(torch_module=module, onnx_mapping=OnnxMapping(
        inputs=tuple(inputs), outputs=tuple(outputs)))


# --------------------------------------------------------------------------------------------------------------
# torch modules


class Resize(nn.Module, OnnxToTorchModule):
    """ONNX Resize with the output shape fixed at conversion.

    linear/cubic in half_pixel, pytorch_half_pixel or align_corners over the spatial dims run ATen's upsample
    kernels with ONNX's scales; nearest (every coordinate mode and rounding) gathers precomputed indices;
    linear in the other coordinate modes interpolates separably with precomputed taps.
    """

    def __init__(self, in_shape, out_shape, scales, mode, ctm, nearest_mode, cubic_a, exclude_outside, antialias):
        super().__init__()
        self.out_shape = [int(v) for v in out_shape]
        changed = [d for d in range(len(in_shape)) if in_shape[d] != out_shape[d] or scales[d] != 1.0]
        self.kind = "identity"
        self.narrow = []
        self.spatial = None
        self.taps = []
        if not changed:
            return
        if ctm == "tf_crop_and_resize":
            raise _unsupported("Resize", "coordinate_transformation_mode='tf_crop_and_resize' is not supported")
        if antialias and any(out_shape[d] < in_shape[d] for d in changed) and mode != "nearest":
            raise _unsupported("Resize", "antialias=1 when downscaling is not supported")
        spatial_only = len(in_shape) >= 3 and all(d >= 2 for d in changed)
        aten_modes = {"half_pixel", "pytorch_half_pixel", "align_corners"}
        if mode == "nearest":
            self.kind = "gather"
            for d in changed:
                src = _source_coordinates(ctm, in_shape[d], out_shape[d], scales[d])
                index = _nearest_index(src, nearest_mode, in_shape[d])
                self.taps.append((d,))
                self.register_buffer(f"index_{d}", torch.from_numpy(index), persistent=False)
            return
        if mode == "cubic":
            if not (spatial_only and len(in_shape) == 4 and ctm in aten_modes and cubic_a == -0.75
                    and not exclude_outside):
                raise _unsupported("Resize", f"mode='cubic' with coordinate_transformation_mode='{ctm}', "
                                   f"cubic_coeff_a={cubic_a}, exclude_outside={exclude_outside} on a "
                                   f"{len(in_shape)}-D input is not supported (bicubic over H, W in half_pixel, "
                                   f"pytorch_half_pixel or align_corners with a=-0.75 is)")
        elif mode != "linear":
            raise _unsupported("Resize", f"mode='{mode}' is not supported")
        if spatial_only and ctm in aten_modes and len(in_shape) - 2 in (1, 2, 3):
            self.kind = "aten"
            self.align_corners = ctm == "align_corners"
            self.cubic = mode == "cubic"
            sizes, factors = [], []
            for d in range(2, len(in_shape)):
                if ctm == "pytorch_half_pixel" and out_shape[d] == 1:
                    self.narrow.append(d)  # ONNX samples index 0 here; half_pixel would sample the middle
                    sizes.append(1)
                    factors.append(None)
                else:
                    sizes.append(int(out_shape[d]))
                    factors.append(None if self.align_corners else float(scales[d]))
            self.spatial = sizes
            self.factors = factors
            return
        if mode != "linear":
            raise _unsupported("Resize", f"mode='{mode}' with coordinate_transformation_mode='{ctm}'")
        self.kind = "taps"
        rank = len(in_shape)
        for d in changed:
            src = _source_coordinates(ctm, in_shape[d], out_shape[d], scales[d])
            src = np.clip(src, 0, in_shape[d] - 1)
            low = np.floor(src).astype(np.int64)
            high = np.minimum(low + 1, in_shape[d] - 1)
            frac = (src - low).astype(np.float32)
            view = [1] * rank
            view[d] = out_shape[d]
            self.taps.append((d,))
            self.register_buffer(f"low_{d}", torch.from_numpy(low), persistent=False)
            self.register_buffer(f"high_{d}", torch.from_numpy(high), persistent=False)
            self.register_buffer(f"frac_{d}", torch.from_numpy(frac).reshape(view), persistent=False)

    def forward(self, x):
        if self.kind == "identity":
            return x
        if self.kind == "gather":
            for (d,) in self.taps:
                x = x.index_select(d, getattr(self, f"index_{d}"))
            return x
        if self.kind == "taps":
            for (d,) in self.taps:
                frac = getattr(self, f"frac_{d}").to(x.dtype)
                lo = x.index_select(d, getattr(self, f"low_{d}"))
                hi = x.index_select(d, getattr(self, f"high_{d}"))
                x = lo + (hi - lo) * frac
            return x
        for d in self.narrow:
            x = x.narrow(d, 0, 1)
        aten = torch.ops.aten
        if self.cubic:
            return aten.upsample_bicubic2d.default(x, self.spatial, self.align_corners, *self.factors)
        if len(self.spatial) == 1:
            return aten.upsample_linear1d.default(x, self.spatial, self.align_corners, *self.factors)
        if len(self.spatial) == 2:
            return aten.upsample_bilinear2d.default(x, self.spatial, self.align_corners, *self.factors)
        return aten.upsample_trilinear3d.default(x, self.spatial, self.align_corners, *self.factors)


class Reshape(nn.Module, OnnxToTorchModule):
    def __init__(self, shape, allowzero):
        super().__init__()
        self.shape = [int(v) for v in shape]
        self.allowzero = bool(allowzero)

    def forward(self, x):
        if self.allowzero:
            return x.reshape(self.shape)
        return x.reshape([x.shape[i] if s == 0 else s for i, s in enumerate(self.shape)])


class Slice(nn.Module, OnnxToTorchModule):
    def __init__(self, starts, ends, axes, steps):
        super().__init__()
        self.items = [(int(a), int(s), int(e), int(t)) for s, e, a, t in zip(starts, ends, axes, steps)]

    def forward(self, x):
        for axis, start, end, step in self.items:
            axis = axis + x.dim() if axis < 0 else axis
            x = _slice_axis(x, axis, start, end, step)
        return x


class Expand(nn.Module, OnnxToTorchModule):
    def __init__(self, shape):
        super().__init__()
        self.shape = [int(v) for v in shape]

    def forward(self, x):
        return x.expand(_broadcast(list(x.shape), self.shape))


class Tile(nn.Module, OnnxToTorchModule):
    def __init__(self, repeats):
        super().__init__()
        self.repeats = [int(v) for v in repeats]

    def forward(self, x):
        return x.repeat(self.repeats)


class Pad(nn.Module, OnnxToTorchModule):
    _MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}

    def __init__(self, pads, mode, value):
        super().__init__()
        if mode not in self._MODES:
            raise _unsupported("Pad", f"mode='{mode}' is not supported")
        rank = len(pads) // 2
        torch_pads = []
        for d in reversed(range(rank)):
            torch_pads.extend([int(pads[d]), int(pads[d + rank])])
        while torch_pads and torch_pads[-1] == 0 and torch_pads[-2] == 0:
            torch_pads = torch_pads[:-2]
        self.pads = torch_pads
        self.mode = self._MODES[mode]
        self.value = value

    def forward(self, x):
        if not self.pads:
            return x
        if self.mode == "constant":
            return torch.nn.functional.pad(x, self.pads, mode="constant", value=self.value)
        return torch.nn.functional.pad(x, self.pads, mode=self.mode)


class Split(nn.Module, OnnxToTorchModule):
    def __init__(self, split, axis, outputs):
        super().__init__()
        self.split = [int(v) for v in split]
        self.axis = int(axis)
        self.single = outputs == 1

    def forward(self, x):
        parts = torch.split(x, self.split, dim=self.axis)
        return parts[0] if self.single else tuple(parts)


class Squeeze(nn.Module, OnnxToTorchModule):
    def __init__(self, axes):
        super().__init__()
        self.axes = [int(v) for v in axes]  # descending

    def forward(self, x):
        for axis in self.axes:
            x = x.squeeze(axis)
        return x


class Clip(nn.Module, OnnxToTorchModule):
    """Clip that keeps the input's dtype (integer bounds stay integers)."""

    def __init__(self, low, high):
        super().__init__()
        self.low = low
        self.high = high

    def forward(self, x, low=None, high=None):
        low = self.low if low is None else low
        high = self.high if high is None else high
        if low is None and high is None:
            return x
        return torch.clamp(x, low, high)


class Gather(nn.Module, OnnxToTorchModule):
    """ONNX Gather with a 0-dim index, which drops the axis. onnx2torch indexes with the 0-dim tensor, which torch
    reads back to the host (``.item()``) on every run; here a constant index is a Python int (``select``) and a
    computed one stays on the device (``index_select``)."""

    def __init__(self, axis, index=None):
        super().__init__()
        self.axis = int(axis)
        self.index = None if index is None else int(index)

    def forward(self, x, indices=None):
        axis = self.axis + x.dim() if self.axis < 0 else self.axis
        if self.index is not None:
            return x.select(axis, self.index)
        index = indices.reshape(1).long()
        index = torch.where(index < 0, index + x.shape[axis], index)
        return x.index_select(axis, index).squeeze(axis)


class GatherND(nn.Module, OnnxToTorchModule):
    """ONNX GatherND with batch_dims >= 0 (negative indices count from the end, as in ONNX)."""

    def __init__(self, batch_dims):
        super().__init__()
        self.batch_dims = int(batch_dims)

    def forward(self, data, indices):
        b = self.batch_dims
        m = indices.shape[-1]
        batch_shape = list(data.shape[:b])
        batches = math.prod(batch_shape)
        tail = list(data.shape[b + m:])
        flat = data.reshape([batches] + list(data.shape[b:]))
        index = indices.reshape(batches, -1, m).long()
        rows = torch.arange(batches, device=data.device).reshape(batches, 1).expand(batches, index.shape[1])
        picked = flat[(rows,) + tuple(index[..., i] for i in range(m))]
        return picked.reshape(list(indices.shape[:-1]) + tail)


class OneHot(nn.Module, OnnxToTorchModule):
    def __init__(self, axis, depth):
        super().__init__()
        self.axis = int(axis)
        self.depth = depth

    def forward(self, indices, *rest):
        if self.depth is None:
            depth_tensor, values = rest
            depth = int(depth_tensor.reshape(-1)[0])  # a run-time depth: one host read per run
        else:
            (values,) = rest
            depth = self.depth
        index = indices.long()
        index = torch.where(index < 0, index + depth, index)
        rank = index.dim() + 1
        axis = self.axis + rank if self.axis < 0 else self.axis
        view = [1] * rank
        view[axis] = depth
        classes = torch.arange(depth, device=index.device).reshape(view)
        hot = index.unsqueeze(axis) == classes
        values = values.reshape(-1)
        return torch.where(hot, values[1], values[0])


class Flatten(nn.Module, OnnxToTorchModule):
    """ONNX Flatten: always 2-D, [prod(shape[:axis]), prod(shape[axis:])] (axis 0 gives [1, N])."""

    def __init__(self, axis):
        super().__init__()
        self.axis = int(axis)

    def forward(self, x):
        axis = self.axis + x.dim() if self.axis < 0 else self.axis
        shape = list(x.shape)
        return x.reshape(math.prod(shape[:axis]), math.prod(shape[axis:]))


class LayerNorm(nn.Module, OnnxToTorchModule):
    """LayerNormalization over ``shape[axis:]`` read from the input (known at trace time, so static)."""

    def __init__(self, axis, epsilon, weight=None, bias=None):
        super().__init__()
        self.axis = int(axis)
        self.epsilon = float(epsilon)
        self.weight = None if weight is None else nn.Parameter(weight, requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)

    def forward(self, x, scale=None, bias=None):
        scale = self.weight if scale is None else scale
        bias = self.bias if bias is None else bias
        axis = self.axis + x.dim() if self.axis < 0 else self.axis
        shape = list(x.shape[axis:])
        exact = (scale is None or list(scale.shape) == shape) and (bias is None or list(bias.shape) == shape)
        if exact:
            return torch.nn.functional.layer_norm(x, shape, scale, bias, self.epsilon)
        y = torch.nn.functional.layer_norm(x, shape, None, None, self.epsilon)  # broadcast scale / bias
        if scale is not None:
            y = y * scale
        if bias is not None:
            y = y + bias
        return y


class DeformConv2d(nn.Module, OnnxToTorchModule):
    """``torchvision.ops.deform_conv2d`` (DCNv2 when a mask is given) with the exporter's parameters."""

    def __init__(self, weight, bias, stride, padding, dilation):
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)
        self.stride = tuple(int(v) for v in stride)
        self.padding = tuple(int(v) for v in padding)
        self.dilation = tuple(int(v) for v in dilation)

    def forward(self, x, offset, mask=None):
        from torchvision.ops import deform_conv2d

        return deform_conv2d(x, offset, self.weight, self.bias, stride=self.stride, padding=self.padding,
                             dilation=self.dilation, mask=mask)


# --------------------------------------------------------------------------------------------------------------
# shape arithmetic (Python ints only)


def _source_coordinates(ctm: str, in_len: int, out_len: int, scale: float) -> np.ndarray:
    """ONNX Resize's x_original for each output index along one axis (float64)."""
    x = np.arange(out_len, dtype=np.float64)
    scale = float(np.float32(scale))
    if ctm == "half_pixel":
        return (x + 0.5) / scale - 0.5
    if ctm == "pytorch_half_pixel":
        return (x + 0.5) / scale - 0.5 if out_len > 1 else np.zeros_like(x)
    if ctm == "align_corners":
        return x * (in_len - 1) / (out_len - 1) if out_len > 1 else np.zeros_like(x)
    if ctm == "asymmetric":
        return x / scale
    if ctm == "tf_half_pixel_for_nn":
        return (x + 0.5) / scale
    if ctm == "half_pixel_symmetric":
        adjustment = out_len / (scale * in_len)
        center = in_len / 2
        return center * (1 - adjustment) + (x + 0.5) / scale - 0.5
    raise _unsupported("Resize", f"coordinate_transformation_mode='{ctm}' is not supported")


def _nearest_index(src: np.ndarray, nearest_mode: str, in_len: int) -> np.ndarray:
    if nearest_mode == "round_prefer_floor":
        index = np.ceil(src - 0.5)
    elif nearest_mode == "round_prefer_ceil":
        index = np.floor(src + 0.5)
    elif nearest_mode == "floor":
        index = np.floor(src)
    elif nearest_mode == "ceil":
        index = np.ceil(src)
    else:
        raise _unsupported("Resize", f"nearest_mode='{nearest_mode}' is not supported")
    return np.clip(index, 0, in_len - 1).astype(np.int64)


def _slice_axis(x, axis: int, start: int, end: int, step: int):
    """``x`` sliced along ``axis`` with ONNX Slice's clamping rules (negative steps too)."""
    dim = x.shape[axis]
    if step == 0:
        raise ValueError("Slice step cannot be 0")
    start = start + dim if start < 0 else start
    end = end + dim if end < 0 else end
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
        if start == 0 and end == dim and step == 1:
            return x
        index = [slice(None)] * axis + [slice(start, max(start, end), step)]
        return x[tuple(index)]
    start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
    count = max(0, -(-(start - end) // -step))
    if count == 0:
        return x.narrow(axis, 0, 0)
    lowest = start + (count - 1) * step
    index = [slice(None)] * axis + [slice(lowest, start + 1, -step)]
    return x[tuple(index)].flip(axis)


def _broadcast(a: List[int], b: List[int]) -> List[int]:
    rank = max(len(a), len(b))
    a = [1] * (rank - len(a)) + list(a)
    b = [1] * (rank - len(b)) + list(b)
    out = []
    for x, y in zip(a, b):
        if x != y and x != 1 and y != 1:
            raise ValueError(f"Expand: shapes {a} and {b} do not broadcast")
        out.append(y if x == 1 else x)
    return out


# --------------------------------------------------------------------------------------------------------------
# converters


@_converter("Resize")
def _resize(node, graph):
    module = Resize(
        _attr_list(node, "input_shape"), _attr_list(node, "output_shape"), _attr_list(node, "scales"),
        _attr(node, "mode", "nearest"), _attr(node, "coordinate_transformation_mode", "half_pixel"),
        _attr(node, "nearest_mode", "round_prefer_floor"), float(_attr(node, "cubic_coeff_a", -0.75)),
        int(_attr(node, "exclude_outside", 0)), int(_attr(node, "antialias", 0)),
    )
    return _result(module, node.input_values[:1], node.output_values)


@_converter("Reshape")
def _reshape(node, graph):
    module = Reshape(_attr_list(node, "shape"), int(_attr(node, "allowzero", 0)))
    return _result(module, node.input_values[:1], node.output_values)


@_converter("Slice")
def _slice(node, graph):
    module = Slice(_attr_list(node, "starts"), _attr_list(node, "ends"), _attr_list(node, "axes"),
                                 _attr_list(node, "steps"))
    return _result(module, node.input_values[:1], node.output_values)


@_converter("Expand")
def _expand(node, graph):
    return _result(Expand(_attr_list(node, "shape")), node.input_values[:1], node.output_values)


@_converter("Tile")
def _tile(node, graph):
    return _result(Tile(_attr_list(node, "repeats")), node.input_values[:1], node.output_values)


@_converter("Pad")
def _pad(node, graph):
    value = _attr_scalar(node, "value")
    module = Pad(_attr_list(node, "pads"), _attr(node, "mode", "constant"), value or 0)
    return _result(module, node.input_values[:1], node.output_values)


@_converter("Split")
def _split(node, graph):
    module = Split(_attr_list(node, "split"), int(_attr(node, "axis", 0)), len(node.output_values))
    return _result(module, node.input_values[:1], node.output_values)


@_converter("Squeeze")
def _squeeze(node, graph):
    return _result(Squeeze(_attr_list(node, "axes")), node.input_values[:1], node.output_values)


@_converter("Clip")
def _clip(node, graph):
    integer = bool(_attr(node, "integer", 0))

    def bound(name):
        value = _attr_scalar(node, name)
        if value is None:
            return None
        return int(value) if integer else float(value)

    module = Clip(bound("min"), bound("max"))
    return _result(module, node.input_values, node.output_values)


@_converter("Gather")
def _gather(node, graph):
    index = _attr_scalar(node, "index")
    module = Gather(int(_attr(node, "axis", 0)), index)
    return _result(module, node.input_values[:1] if index is not None else node.input_values, node.output_values)


@_converter("GatherND")
def _gather_nd(node, graph):
    return _result(GatherND(int(_attr(node, "batch_dims", 0))), node.input_values, node.output_values)


@_converter("OneHot")
def _one_hot(node, graph):
    depth = _attr_list(node, "depth")
    module = OneHot(int(_attr(node, "axis", -1)), None if depth is None else int(depth[0]))
    return _result(module, node.input_values, node.output_values)


@_converter("Flatten")
def _flatten(node, graph):
    return _result(Flatten(int(_attr(node, "axis", 1))), node.input_values, node.output_values)


@_converter("LayerNormalization")
def _layer_norm(node, graph):
    names = list(node.input_values) + [""] * (3 - len(node.input_values))
    scale_name, bias_name = names[1], names[2]
    constant = all(not n or n in graph.initializers for n in (scale_name, bias_name))
    axis, epsilon = int(_attr(node, "axis", -1)), float(_attr(node, "epsilon", 1e-5))
    if constant:
        weight = graph.initializers[scale_name].to_torch() if scale_name else None
        bias = graph.initializers[bias_name].to_torch() if bias_name else None
        module = LayerNorm(axis, epsilon, weight, bias)
        return _result(module, node.input_values[:1], node.output_values)
    return _result(LayerNorm(axis, epsilon), names, node.output_values)


@_converter("DeformConv2d")
def _deform_conv(node, graph):
    names = list(node.input_values) + [""] * (5 - len(node.input_values))
    x, offset, weight_name, bias_name, mask = names[:5]
    if weight_name not in graph.initializers or (bias_name and bias_name not in graph.initializers):
        raise _unsupported("DeformConv2d", "weights computed at run time are not supported")
    weight = graph.initializers[weight_name].to_torch()
    bias = graph.initializers[bias_name].to_torch() if bias_name else None
    module = DeformConv2d(weight, bias, _attr_list(node, "stride"), _attr_list(node, "padding"),
                                        _attr_list(node, "dilation"))
    inputs = [x, offset] + ([mask] if mask else [])
    return _result(module, inputs, node.output_values)
