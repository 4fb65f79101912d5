"""No host read in a forward: a converted module never reads a tensor back to the host while it runs (on a GPU each
read is a wait for the device). host_reads.HostReads counts them; every converted test graph (here and in
test_torch_converters.py) and the real u2netp and u2net make none.

onnx2torch's Gather indexes with the 0-dim index tensor, which torch reads back with ``.item()``: BiRefNet's export
has 73 of them per forward (``qkv[0]``, ``x.shape[i]``...). Ours selects with a Python int, or on the device.
"""

from __future__ import annotations

import copy

import numpy as np
import onnx2torch
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from support import fetch_weights, torch_nets
from remove_background.backends.pytorch import converters as torch_converters
from remove_background.backends.pytorch import convert as torch_convert
from remove_background.backends.pytorch import rewrites
from remove_background.backends.pytorch.host_reads import HostReads, count_host_reads


def test_the_counter_sees_every_kind_of_host_read():
    x = torch.arange(6.0).reshape(2, 3)
    with HostReads() as reads:
        x.tolist(), x.numpy(), x.cpu(), x.to("cpu"), x[0, 0].item(), int(x[0, 1]), bool(x[1, 1] > 0)
        x[:, torch.tensor(1)]  # a 0-dim index tensor: read back to index
        torch.nonzero(x), x.repeat_interleave(torch.tensor([1, 2]), dim=0)  # output sizes from values
    assert reads.counts["Tensor.tolist"] == 1 and reads.counts["Tensor.numpy"] == 1
    assert reads.counts["Tensor.cpu"] == 1 and reads.counts["Tensor.to"] == 1
    assert reads.counts["aten._local_scalar_dense"] == 4 and reads.counts["aten.nonzero"] == 1
    assert reads.counts["aten.repeat_interleave"] == 1
    with HostReads() as reads:  # what a folded module does: none of it
        (x * 2).sum(0).to(torch.float64), x.reshape(3, 2), x.select(1, 2), x.index_select(0, torch.tensor([1]))
    assert reads.total == 0, reads.counts


def _gather_graph(constant_index: bool):
    """BiRefNet's pattern: Gather with a 0-dim index on axis 0 (``qkv[0]``) and a negative one on axis 1."""
    nodes = [
        helper.make_node("Gather", ["x", "i0"], ["first"], axis=0),
        helper.make_node("Gather", ["first", "i1"], ["y"], axis=1),
        helper.make_node("ReduceMax", ["x"], ["peak"], axes=[0, 1, 2], keepdims=0),
        helper.make_node("ArgMax", ["peak"], ["best"], axis=0, keepdims=0),  # a computed 0-dim index
        helper.make_node("Gather", ["x", "best"], ["z"], axis=3),
    ]
    inits = [numpy_helper.from_array(np.array(2, np.int64), "i0"),
             numpy_helper.from_array(np.array(-1, np.int64), "i1")]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4, 5, 6])]
    if not constant_index:
        inits = inits[1:]
        inputs.append(helper.make_tensor_value_info("i0", TensorProto.INT64, []))
    graph = helper.make_graph(nodes, "gather", inputs, [helper.make_tensor_value_info(n, TensorProto.FLOAT, None)
                                                        for n in ("y", "z")], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("constant_index", [True, False])
def test_gather_with_a_0_dim_index_reads_nothing_back(constant_index):
    model = _gather_graph(constant_index)
    feeds = {"x": np.random.RandomState(0).randn(3, 4, 5, 6).astype(np.float32)}
    if not constant_index:
        feeds["i0"] = np.array(-2, np.int64)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    reference = session.run(None, feeds)
    tensors = [torch.from_numpy(v) for v in feeds.values()]

    plain = onnx2torch.convert(copy.deepcopy(model))  # onnx2torch alone: one .item() per 0-dim index
    assert count_host_reads(plain, *tensors).counts["aten._local_scalar_dense"] == 3

    torch_converters.register()
    module = onnx2torch.convert(rewrites.rewrite(copy.deepcopy(model)))
    assert [type(m).__name__ for m in module.modules()].count("Gather") == 3
    reads = count_host_reads(module, *tensors)
    assert reads.total == 0, reads.counts
    with torch.no_grad():
        got = module(*tensors)
    for g, r in zip(got, reference):
        np.testing.assert_array_equal(g.numpy(), r)
    if constant_index:
        torch.export.export(module, tuple(tensors))  # a Python int index: no data-dependent guard


def test_swin_family_reads_nothing_back(tmp_path):
    """The Swin stage's qkv[0], qkv[1], qkv[2] are 0-dim Gathers after the fold."""
    torch.manual_seed(0)
    x = torch.randn(1, 3, 20, 20)
    path = torch_nets.export(torch_nets.SwinNet(), (x,), tmp_path / "swin.onnx", ["input"], ["out"])
    module = torch_convert.convert(path, "test", {"input": [1, 3, 20, 20]})
    assert [type(m).__name__ for m in module.modules()].count("Gather") == 6
    reads = count_host_reads(module, x)
    assert reads.total == 0, reads.counts


@pytest.mark.slow
@pytest.mark.parametrize("model", ["u2netp", "u2net"])
def test_real_rembg_models_read_nothing_back(model):
    module = torch_convert.convert(fetch_weights.cached(model), model, {0: [1, 3, 320, 320]})
    reads = count_host_reads(module, torch.rand(1, 3, 320, 320))
    assert reads.total == 0, reads.counts
