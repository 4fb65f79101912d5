"""The torch route's graph rewrites (backends/pytorch/rewrites) and converters (backends/pytorch/converters), against
ONNX Runtime.

Each converter of our domain has a test on a small hand-made graph; each model family has a small network with the
same operators, exported the way the real files were made (tests/support/torch_nets.py), converted through
backends.pytorch.convert.convert and compared with ONNX Runtime on the same file; the real u2netp is converted,
compared and exported with torch.export (no data-dependent guard: no host round trip per run). Every forward counts
what it reads back to the host (backends.pytorch.host_reads.HostReads): none, except in graphs whose shapes are
input values.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnx2torch
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from support import torch_nets
from remove_background.backends.pytorch import rewrites as onnx_rewrites
from remove_background.backends.pytorch import convert as torch_convert
from remove_background.backends.pytorch import converters as torch_converters
from remove_background.backends.pytorch.host_reads import HostReads
from remove_background.backends.pytorch.rewrites import DOMAIN, DOMAIN_VERSION

# onnx2torch modules that read a tensor back to the host on every run (tolist/numpy/item, torch.Size(tensor))
HOST_SYNC = {"OnnxResize", "OnnxReshape", "OnnxSlice", "OnnxExpand", "OnnxTile", "OnnxPadDynamic", "OnnxSplit13",
             "OnnxSqueezeDynamicAxes", "OnnxUnsqueezeDynamicAxes", "OnnxReduceSumDynamicAxes",
             "OnnxConstantOfShape", "OnnxRange"}


# --------------------------------------------------------------------------------------------------------------
# helpers


def _model(nodes, inputs, outputs, initializers=None, opset=17):
    inits = [numpy_helper.from_array(np.asarray(v), name=k) for k, v in (initializers or {}).items()]
    graph = helper.make_graph(nodes, "test", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _info(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def _ort(model, feeds):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _convert(model, deform_conv=True):
    """Our rewrite, then onnx2torch (on a copy: the caller keeps the original for ONNX Runtime)."""
    torch_converters.register()
    rewritten = onnx_rewrites.rewrite(copy.deepcopy(model), deform_conv=deform_conv)
    return onnx2torch.convert(rewritten).eval()


def _run(module, feeds, host_reads=0):
    """The module's outputs on ``feeds``; it reads nothing back to the host in that forward (``host_reads=None``:
    a graph whose shapes depend on input values, which must read them)."""
    with torch.no_grad(), HostReads() as reads:
        out = module(*[torch.from_numpy(np.asarray(v)) for v in feeds.values()])
    if host_reads is not None:
        assert reads.total == host_reads, dict(reads.counts)
    return [o.numpy() for o in (out if isinstance(out, (list, tuple)) else [out])]


def _ours(module):
    """The class names of our converters' modules in ``module``."""
    return [type(m).__name__ for m in module.modules() if type(m).__module__ == torch_converters.__name__]


def _names(module):
    return {type(m).__name__ for m in module.modules()}


def _assert_same(got, ref, rtol=1e-5, atol=1e-5):
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        assert g.dtype == r.dtype, (g.dtype, r.dtype)
        assert g.shape == r.shape, (g.shape, r.shape)
        np.testing.assert_allclose(g, r, rtol=rtol, atol=atol)


def _check(model, feeds, ours, rtol=1e-5, atol=1e-5, export=False, host_reads=0):
    """Converted ``model`` equals ONNX Runtime on ``feeds``, contains our modules ``ours`` and reads nothing back to
    the host in a forward (see ``_run``); returns it."""
    module = _convert(model)
    _assert_same(_run(module, feeds, host_reads), _ort(model, feeds), rtol, atol)
    present = _ours(module)
    for name in ours:
        assert name in present, (name, present)
    assert not (_names(module) & HOST_SYNC), _names(module) & HOST_SYNC
    if export:
        torch.export.export(module, tuple(torch.from_numpy(np.asarray(v)) for v in feeds.values()))
    return module


def _rand(*shape, seed=0):
    return np.random.RandomState(seed).randn(*shape).astype(np.float32)


# --------------------------------------------------------------------------------------------------------------
# registration


def test_register_is_idempotent_and_goes_through_the_public_registry():
    from onnx2torch.node_converters.registry import get_converter

    torch_converters.register()
    torch_converters.register()  # a second call (another thread, another model) must not raise
    for op_type, converter in torch_converters._CONVERTERS.items():
        assert get_converter(operation_type=op_type, version=DOMAIN_VERSION, domain=DOMAIN) is converter
    model = _model([helper.make_node("Flatten", ["x"], ["y"], axis=0)], [_info("x", TensorProto.FLOAT, [2, 3])],
                   [_info("y", TensorProto.FLOAT, None)])
    rewritten = onnx_rewrites.rewrite(copy.deepcopy(model))
    assert [(n.domain, n.op_type) for n in rewritten.graph.node] == [(DOMAIN, "Flatten")]
    assert {(o.domain, o.version) for o in rewritten.opset_import} >= {(DOMAIN, DOMAIN_VERSION)}


def test_the_onnx_runtime_route_never_imports_torch(models_dir):
    """converters.py imports torch at the top: only the torch route may import it."""
    code = ("import sys\n"
            "from PIL import Image\n"
            "from remove_background import remove\n"
            f"result = remove(Image.new('RGB', (64, 48), (10, 200, 30)), model='u2netp', provider='cpu', "
            f"models_dir={str(models_dir)!r})\n"
            "assert result.providers == ['CPUExecutionProvider']\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'onnx2torch', 'torchvision', 'onnx'}))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent)))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


# --------------------------------------------------------------------------------------------------------------
# Resize: constant sizes / scales become a fixed output size, with ONNX's modes and coordinate transformations

RESIZE_CASES = [
    # (mode, coordinate_transformation_mode, nearest_mode, input shape, sizes or None, scales or None)
    ("linear", "pytorch_half_pixel", "floor", [1, 2, 4, 5], [1, 2, 7, 9], None),  # u2net's
    ("linear", "pytorch_half_pixel", "floor", [1, 2, 4, 5], [1, 2, 1, 9], None),  # length 1: ONNX samples index 0
    ("linear", "half_pixel", "floor", [1, 2, 4, 5], None, [1, 1, 2, 2]),
    ("linear", "half_pixel", "floor", [1, 2, 5, 7], None, [1, 1, 1.7, 0.6]),  # ONNX's scale, not out/in
    ("linear", "half_pixel", "floor", [1, 2, 8, 8], [1, 2, 3, 5], None),  # downscale
    ("linear", "align_corners", "floor", [1, 2, 4, 5], [1, 2, 7, 3], None),
    ("linear", "asymmetric", "floor", [1, 2, 4, 5], None, [1, 1, 2, 1.5]),  # separable taps
    ("linear", "half_pixel", "floor", [1, 3, 6], [1, 3, 11], None),  # 1-D
    ("linear", "half_pixel", "floor", [1, 1, 3, 4, 5], [1, 1, 5, 6, 7], None),  # 3-D
    ("nearest", "asymmetric", "floor", [1, 2, 4, 5], None, [1, 1, 2, 2]),
    ("nearest", "half_pixel", "round_prefer_floor", [1, 2, 8, 8], None, [1, 1, 0.5, 0.5]),
    ("nearest", "align_corners", "round_prefer_ceil", [1, 2, 4, 5], [1, 2, 7, 8], None),
    ("nearest", "tf_half_pixel_for_nn", "ceil", [1, 2, 4, 5], [1, 2, 6, 13], None),
    ("cubic", "half_pixel", "floor", [1, 2, 4, 5], [1, 2, 9, 7], None),
    ("cubic", "align_corners", "floor", [1, 2, 4, 5], [1, 2, 6, 11], None),
]


def _resize_model(mode, ctm, nearest_mode, shape, sizes, scales):
    inits = {"roi": np.zeros(0, np.float32)}
    if sizes is not None:
        inits["scales"] = np.zeros(0, np.float32)
        inits["sizes"] = np.asarray(sizes, np.int64)
        ins = ["x", "roi", "scales", "sizes"]
    else:
        inits["scales"] = np.asarray(scales, np.float32)
        ins = ["x", "roi", "scales"]
    node = helper.make_node("Resize", ins, ["y"], mode=mode, coordinate_transformation_mode=ctm,
                            nearest_mode=nearest_mode)
    return _model([node], [_info("x", TensorProto.FLOAT, shape)], [_info("y", TensorProto.FLOAT, None)], inits)


@pytest.mark.parametrize("mode,ctm,nearest_mode,shape,sizes,scales", RESIZE_CASES)
def test_resize_matches_onnx_runtime(mode, ctm, nearest_mode, shape, sizes, scales):
    model = _resize_model(mode, ctm, nearest_mode, shape, sizes, scales)
    _check(model, {"x": _rand(*shape)}, ["Resize"], atol=2e-5, export=mode == "linear" and ctm == "pytorch_half_pixel")


def test_resize_mode_we_do_not_support_is_a_clear_error():
    model = _resize_model("cubic", "asymmetric", "floor", [1, 2, 4, 5], [1, 2, 8, 10], None)
    with pytest.raises(NotImplementedError) as info:
        _convert(model)
    assert "mode='cubic'" in str(info.value) and "asymmetric" in str(info.value)
    assert torch_convert._operator_of(info.value) == "Resize"


def test_resize_with_run_time_sizes_is_left_to_onnx2torch():
    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="linear")
    model = _model([node], [_info("x", TensorProto.FLOAT, [1, 1, 4, 4]), _info("sizes", TensorProto.INT64, [4])],
                   [_info("y", TensorProto.FLOAT, None)])
    feeds = {"x": _rand(1, 1, 4, 4), "sizes": np.array([1, 1, 6, 3], np.int64)}
    module = _convert(model)
    assert "OnnxResize" in _names(module) and not _ours(module)
    _assert_same(_run(module, feeds, host_reads=None), _ort(model, feeds))  # the sizes are data


# --------------------------------------------------------------------------------------------------------------
# shape operators with constant shape inputs: attributes, no host read-back


def _unary(op, shape, inputs, extra_inputs=(), elem=TensorProto.FLOAT, **attrs):
    names = ["x"] + list(inputs)
    node = helper.make_node(op, names + list(extra_inputs), ["y"], **attrs)
    return _model([node], [_info("x", elem, shape)], [_info("y", elem, None)], inputs)


SHAPE_CASES = {
    "Reshape 0 and -1": (_unary("Reshape", [2, 3, 4], {"s": np.array([0, -1, 2], np.int64)}), "Reshape"),
    "Slice negative steps": (_unary("Slice", [5, 6, 7], {
        "st": np.array([-1, 4, 1], np.int64), "en": np.array([-100, 0, 100], np.int64),
        "ax": np.array([0, -2, 2], np.int64), "sp": np.array([-2, -1, 3], np.int64)}), "Slice"),
    "Slice clamped": (_unary("Slice", [5, 6], {
        "st": np.array([-10, 2], np.int64), "en": np.array([2 ** 62, -1], np.int64)}), "Slice"),
    "Expand bidirectional": (_unary("Expand", [3, 1], {"s": np.array([2, 1, 4], np.int64)}), "Expand"),
    "Tile": (_unary("Tile", [2, 3], {"r": np.array([2, 3], np.int64)}), "Tile"),
    "Pad constant value": (_unary("Pad", [1, 2, 3, 3], {
        "p": np.array([0, 1, 2, 0, 0, 0, 1, 3], np.int64), "v": np.array(1.5, np.float32)}), "Pad"),
    "Pad reflect": (_unary("Pad", [1, 2, 4, 4], {"p": np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64)},
                           mode="reflect"), "Pad"),
    "Pad edge": (_unary("Pad", [1, 2, 4, 4], {"p": np.array([0, 0, 0, 2, 0, 0, 3, 0], np.int64)},
                        mode="edge"), "Pad"),
    "Squeeze": (_unary("Squeeze", [1, 3, 1, 2], {"a": np.array([0, -2], np.int64)}), "Squeeze"),
}


@pytest.mark.parametrize("case", sorted(SHAPE_CASES))
def test_shape_operator_with_constant_inputs_is_static(case):
    model, ours = SHAPE_CASES[case]
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    _check(model, {"x": _rand(*shape)}, [ours], export=True)


def test_split_with_constant_or_equal_parts_is_static():
    nodes = [
        helper.make_node("Split", ["x", "parts"], ["a", "b", "c"], axis=1),
        helper.make_node("Split", ["x"], ["d", "e"], axis=-1),
        helper.make_node("Concat", ["c", "a", "b"], ["y"], axis=1),  # the parts, in another order
        helper.make_node("Concat", ["e", "d"], ["z"], axis=-1),
    ]
    outs = [_info(n, TensorProto.FLOAT, None) for n in "yz"]
    model = _model(nodes, [_info("x", TensorProto.FLOAT, [2, 6, 4])], outs, {"parts": np.array([1, 3, 2], np.int64)})
    module = _check(model, {"x": _rand(2, 6, 4)}, ["Split"], export=True)
    assert _ours(module).count("Split") == 2


# --------------------------------------------------------------------------------------------------------------
# converters onnx2torch gets wrong or lacks


def test_clip_on_int64_keeps_integers():
    nodes = [
        helper.make_node("Floor", ["x"], ["f"]),
        helper.make_node("Cast", ["f"], ["i"], to=TensorProto.INT64),
        helper.make_node("Clip", ["i", "lo", "hi"], ["y"]),  # the deform-conv exporter's index clipping
        helper.make_node("Clip", ["i", "", "dyn_hi"], ["z"]),  # a run-time bound
    ]
    model = _model(nodes, [_info("x", TensorProto.FLOAT, [3, 4]), _info("dyn_hi", TensorProto.INT64, [])],
                   [_info("y", TensorProto.INT64, None), _info("z", TensorProto.INT64, None)],
                   {"lo": np.array(0, np.int64), "hi": np.array(3, np.int64)})
    feeds = {"x": _rand(3, 4) * 4, "dyn_hi": np.array(1, np.int64)}
    module = _check(model, feeds, ["Clip"])
    assert _ours(module).count("Clip") == 2


def test_weights_shared_through_identity_nodes():
    weight = _rand(4, 2, 3, 3, seed=1)
    nodes = [
        helper.make_node("Identity", ["w"], ["w_shared"]),
        helper.make_node("Identity", ["w_shared"], ["w_twice"]),
        helper.make_node("Conv", ["x", "w", "b"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["x", "w_twice", "b"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c1", "c2"], ["sum"]),
        helper.make_node("Flatten", ["sum"], ["flat"], axis=1),
        helper.make_node("Identity", ["m"], ["m_shared"]),
        helper.make_node("Gemm", ["flat", "m_shared"], ["y"], transB=1),
    ]
    model = _model(nodes, [_info("x", TensorProto.FLOAT, [1, 2, 5, 5])], [_info("y", TensorProto.FLOAT, None)],
                   {"w": weight, "b": _rand(4, seed=2), "m": _rand(3, 100, seed=3)})
    module = _check(model, {"x": _rand(1, 2, 5, 5)}, [], atol=1e-4)
    assert "Identity" not in _names(module)


def test_shapes_survive_our_nodes_for_converters_that_read_value_info():
    """onnx2torch's BatchNorm and GlobalAveragePool read the input shape from value_info, after our Resize too."""
    inits = {"roi": np.zeros(0, np.float32), "scales": np.array([1, 1, 2, 2], np.float32)}
    inits.update({k: np.random.RandomState(i).rand(2).astype(np.float32) + 0.5 for i, k in enumerate("gbmv")})
    nodes = [
        helper.make_node("Resize", ["x", "roi", "scales"], ["r"], mode="linear"),
        helper.make_node("BatchNormalization", ["r", "g", "b", "m", "v"], ["n"]),
        helper.make_node("GlobalAveragePool", ["n"], ["y"]),
    ]
    model = _model(nodes, [_info("x", TensorProto.FLOAT, [1, 2, 4, 4])], [_info("y", TensorProto.FLOAT, None)], inits)
    _check(model, {"x": _rand(1, 2, 4, 4)}, ["Resize"], export=True)


def test_layer_normalization_with_unknown_input_shape():
    nodes = [  # a run-time shape: neither the rank nor the dimensions are known at conversion
        helper.make_node("Reshape", ["x", "shape"], ["r"]),
        helper.make_node("LayerNormalization", ["r", "scale", "bias"], ["y"], axis=-1, epsilon=1e-5),
        helper.make_node("LayerNormalization", ["r", "scale2"], ["z"], axis=-2, epsilon=1e-3),
    ]
    model = _model(nodes, [_info("x", TensorProto.FLOAT, ["n"]), _info("shape", TensorProto.INT64, [None])],
                   [_info("y", TensorProto.FLOAT, None), _info("z", TensorProto.FLOAT, None)],
                   {"scale": _rand(4, seed=1), "bias": _rand(4, seed=2), "scale2": _rand(3, 4, seed=3)})
    module = _convert(model)
    assert _ours(module).count("LayerNorm") == 2
    for shape in ([2, 3, 4], [5, 3, 4], [3, 4]):
        feeds = {"x": _rand(int(np.prod(shape))), "shape": np.array(shape, np.int64)}
        _assert_same(_run(module, feeds, host_reads=None), _ort(model, feeds), atol=1e-5)  # the shape is data


@pytest.mark.parametrize("batch_dims,data_shape,index_shape", [
    (1, [2, 5, 3], [2, 4, 1]),
    (2, [2, 3, 6, 5, 4], [2, 3, 7, 2]),  # the deform-conv exporter's: [b, group, H, W, ch], [b, group, K*h*w, 2]
    (0, [4, 5], [3, 2]),  # batch_dims 0 stays onnx2torch's
])
def test_gather_nd_with_batch_dims(batch_dims, data_shape, index_shape):
    node = helper.make_node("GatherND", ["data", "indices"], ["y"], batch_dims=batch_dims)
    model = _model([node], [_info("data", TensorProto.FLOAT, data_shape),
                            _info("indices", TensorProto.INT64, index_shape)], [_info("y", TensorProto.FLOAT, None)])
    rng = np.random.RandomState(0)
    m = index_shape[-1]
    bounds = data_shape[batch_dims:batch_dims + m]
    indices = np.stack([rng.randint(-b, b, size=index_shape[:-1]) for b in bounds], -1).astype(np.int64)
    feeds = {"data": _rand(*data_shape), "indices": indices}
    module = _check(model, feeds, ["GatherND"] if batch_dims else [], export=True)
    if not batch_dims:
        assert "OnnxGatherND" in _names(module)


@pytest.mark.parametrize("axis", [-1, 1, 0])
@pytest.mark.parametrize("constant_depth", [True, False])
def test_one_hot(axis, constant_depth):
    node = helper.make_node("OneHot", ["indices", "depth", "values"], ["y"], axis=axis)
    inputs = [_info("indices", TensorProto.INT64, [2, 5])]
    inits = {"values": np.array([0.25, 3.0], np.float32)}
    feeds = {"indices": np.array([[0, 3, -1, -4, 4], [2, 1, 7, -9, 0]], np.int64)}  # negative, out of range
    if constant_depth:
        inits["depth"] = np.array([4], np.int64)
    else:
        inputs.append(_info("depth", TensorProto.INT64, [1]))
        feeds["depth"] = np.array([4], np.int64)
    model = _model([node], inputs, [_info("y", TensorProto.FLOAT, None)], inits)
    _check(model, feeds, ["OneHot"], export=constant_depth, host_reads=0 if constant_depth else None)


@pytest.mark.parametrize("shape,axis", [([3, 4], 0), ([3, 4], 2), ([2, 3, 4, 5], 0), ([2, 3, 4, 5], 2),
                                        ([2, 3, 4, 5], -1), ([2, 3, 4, 5], 4)])
def test_flatten_is_always_two_dimensional(shape, axis):
    model = _unary("Flatten", shape, {}, axis=axis)
    _check(model, {"x": _rand(*shape)}, ["Flatten"], export=True)


# --------------------------------------------------------------------------------------------------------------
# BiRefNet: deformable convolutions back to torchvision.ops.deform_conv2d


@pytest.fixture(scope="module")
def deform_exporter():
    torch_nets.register_deform_conv2d_exporter()


def _export_deform(tmp_path, net, shape, name="dcn.onnx"):
    torch.manual_seed(0)
    x = torch.randn(*shape)
    return torch_nets.export(net, (x,), tmp_path / name, ["input"], ["out"]), x.numpy()


def _assert_deform_module(module, count):
    names = [type(m).__name__ for m in module.modules()]
    assert names.count("DeformConv2d") == count, names
    assert "OnnxGatherND" not in names and "GatherND" not in names


def test_deform_net_family_converts_to_deform_conv2d(tmp_path, deform_exporter):
    torch.manual_seed(0)
    path, x = _export_deform(tmp_path, torch_nets.DeformNet(4, 8), (1, 4, 16, 16))
    file_ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"GatherND", "Floor", "Clip", "Sum", "Pad"} <= file_ops  # the exporter's subgraph, as in BiRefNet
    module = torch_convert.convert(path, "test", {"input": [1, 4, 16, 16]})
    _assert_deform_module(module, 3)
    (ref,) = _ort(onnx.load(str(path)), {"input": x})
    (got,) = _run(module, {"input": x})
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    exported = torch.export.export(module, (torch.from_numpy(x),))
    targets = {str(n.target) for n in exported.graph.nodes if n.op == "call_function"}
    assert "torchvision.deform_conv2d.default" in targets


def test_deform_conv_is_found_before_folding_too(tmp_path, deform_exporter):
    """Unfolded, the bias Add stays after the Conv (ORT's folding fuses it into the Conv): both forms match."""
    path, x = _export_deform(tmp_path, torch_nets.DeformNet(4, 8), (1, 4, 10, 10))
    raw = onnx.load(str(path))
    module = _convert(raw)
    _assert_deform_module(module, 3)
    np.testing.assert_allclose(_run(module, {"input": x})[0], _ort(raw, {"input": x})[0], rtol=1e-4, atol=1e-4)


def test_deform_net_without_the_rewrite_runs_the_gathers(tmp_path, deform_exporter):
    """The exporter's subgraph as such (GatherND batch_dims=2, Clip on int64) also converts and is right."""
    path, x = _export_deform(tmp_path, torch_nets.DeformNet(4, 8), (1, 4, 12, 12))
    folded = torch_convert.fold(path, {"input": [1, 4, 12, 12]})
    module = _convert(folded, deform_conv=False)
    assert _ours(module).count("GatherND") == 12 and "Clip" in _ours(module)
    np.testing.assert_allclose(_run(module, {"input": x})[0], _ort(onnx.load(str(path)), {"input": x})[0],
                               rtol=1e-4, atol=1e-4)


DEFORM_CASES = {
    "k3 stride 2": dict(kernel_size=3, stride=2, padding=1),
    "k3 padding 0": dict(kernel_size=3, padding=0),  # the exporter pads 1 more when padding is 0
    "k3 dilation 2": dict(kernel_size=3, padding=2, dilation=2),
    "k5 padding 1 no mask": dict(kernel_size=5, padding=1, use_mask=False, bias=True),
    "offset groups 2": dict(kernel_size=3, padding=1, offset_groups=2),
    "weight groups 2": dict(kernel_size=3, padding=1, groups=2, bias=True),
    "k1 stride 2": dict(kernel_size=1, stride=2, padding=0),
}


@pytest.mark.parametrize("case", sorted(DEFORM_CASES))
def test_deform_conv_parameters_are_recovered(tmp_path, deform_exporter, case):
    torch.manual_seed(1)
    net = torch_nets.DeformableConv2d(4, 6, **DEFORM_CASES[case])
    path, x = _export_deform(tmp_path, net, (1, 4, 11, 9))
    module = torch_convert.convert(path, "test", {"input": [1, 4, 11, 9]})
    _assert_deform_module(module, 1)
    np.testing.assert_allclose(_run(module, {"input": x})[0], _ort(onnx.load(str(path)), {"input": x})[0],
                               rtol=1e-4, atol=1e-4)


def test_a_gather_nd_that_is_no_deform_conv_is_left_alone(tmp_path):
    """A Conv with stride = kernel after Reshape/Transpose that is not the exporter's: an ordinary Conv."""
    nodes = [
        helper.make_node("Reshape", ["x", "s1"], ["r1"]),
        helper.make_node("Transpose", ["r1"], ["t"], perm=[0, 1, 4, 2, 5, 3]),
        helper.make_node("Reshape", ["t", "s2"], ["r2"]),
        helper.make_node("Conv", ["r2", "w"], ["y"], kernel_shape=[2, 2], strides=[2, 2]),
    ]
    model = _model(nodes, [_info("x", TensorProto.FLOAT, [1, 3, 2, 2, 4, 4])], [_info("y", TensorProto.FLOAT, None)],
                   {"s1": np.array([1, 3, 2, 2, 4, 4], np.int64), "s2": np.array([1, 3, 8, 8], np.int64),
                    "w": _rand(2, 3, 2, 2)})
    module = _check(model, {"x": _rand(1, 3, 2, 2, 4, 4)}, ["Reshape"])
    assert "DeformConv2d" not in _ours(module) and "Conv2d" in _names(module)


# --------------------------------------------------------------------------------------------------------------
# BiRefNet's Swin backbone, SAM's decoder, u2netp


def test_swin_family_converts_static(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(1, 3, 20, 20)
    path = torch_nets.export(torch_nets.SwinNet(), (x,), tmp_path / "swin.onnx", ["input"], ["out"])
    file_ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"LayerNormalization", "Softmax", "Erf", "Pad", "Gather", "Slice", "Concat"} <= file_ops
    module = torch_convert.convert(path, "test", {"input": [1, 3, 20, 20]})
    assert "LayerNorm" in _ours(module) and not (_names(module) & HOST_SYNC)
    feeds = {"input": x.numpy()}
    _assert_same(_run(module, feeds), _ort(onnx.load(str(path)), feeds), rtol=1e-4, atol=1e-4)
    torch.export.export(module, (x,))


def _sam_like(tmp_path):
    torch.manual_seed(0)
    net = torch_nets.SamLikeDecoder()
    args = (torch.randn(1, 16, 8, 8), torch.tensor([[[10.0, 20.0], [40.0, 5.0], [0.0, 0.0]]]),
            torch.tensor([[1.0, 0.0, -1.0]]), torch.tensor([45.0, 70.0]))
    names = ["image_embeddings", "point_coords", "point_labels", "orig_im_size"]
    path = torch_nets.export(net, args, tmp_path / "sam.onnx", names, ["masks", "iou"],
                             {"point_coords": {1: "points"}, "point_labels": {1: "points"}})
    return path, dict(zip(names, (a.numpy() for a in args)))


def test_sam_decoder_family_converts(tmp_path):
    path, feeds = _sam_like(tmp_path)
    file_ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"OneHot", "Flatten", "Clip", "Where", "Equal", "Sin", "Cos", "MatMul", "Resize", "ArgMax"} <= file_ops
    module = torch_convert.convert(path, "test", {"point_coords": [1, 3, 2], "point_labels": [1, 3]})
    ours = _ours(module)
    assert {"OneHot", "Flatten", "Clip", "Resize", "LayerNorm"} <= set(ours)
    assert "OnnxResize" in _names(module)  # the resize to orig_im_size: its size is data
    reference = onnx.load(str(path))
    _assert_same(_run(module, feeds, host_reads=None), _ort(reference, feeds), rtol=1e-4, atol=1e-4)  # size: data
    other = dict(feeds, orig_im_size=np.array([30.0, 50.0], np.float32))  # same module, another output size
    _assert_same(_run(module, other, host_reads=None), _ort(reference, other), rtol=1e-4, atol=1e-4)


def test_sam_decoder_with_frozen_orig_im_size_is_static(tmp_path):
    path, feeds = _sam_like(tmp_path)
    model = onnx.load(str(path))
    onnx_rewrites.freeze_inputs(model, {"orig_im_size": feeds["orig_im_size"]})
    frozen = tmp_path / "sam_frozen.onnx"
    onnx.save(model, str(frozen))
    module = torch_convert.convert(frozen, "test", {"point_coords": [1, 3, 2], "point_labels": [1, 3]})
    assert not (_names(module) & HOST_SYNC), _names(module) & HOST_SYNC
    feeds.pop("orig_im_size")
    _assert_same(_run(module, feeds), _ort(onnx.load(str(path)), dict(feeds, orig_im_size=np.array(
        [45.0, 70.0], np.float32))), rtol=1e-4, atol=1e-4)
    torch.export.export(module, tuple(torch.from_numpy(v) for v in feeds.values()))


def test_real_u2netp_converts_static_and_matches_onnx_runtime(u2netp_file):
    module = torch_convert.convert(Path(u2netp_file), "u2netp", {"input.1": [1, 3, 320, 320]})
    assert _ours(module).count("Resize") == 38 and not (_names(module) & HOST_SYNC)
    x = np.random.RandomState(0).rand(1, 3, 320, 320).astype(np.float32) * 4 - 2
    ref = _ort(onnx.load(str(u2netp_file)), {"input.1": x})
    got = _run(module, {"input.1": x})
    assert len(got) == len(ref) == 7
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, rtol=0, atol=5e-5)
    exported = torch.export.export(module, (torch.from_numpy(x),))  # raises on any data-dependent guard
    targets = {str(n.target) for n in exported.graph.nodes if n.op == "call_function"}
    assert "aten.upsample_bilinear2d.default" in targets and not any("item" in t or "_local_scalar" in t
                                                                     for t in targets)
