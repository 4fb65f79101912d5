"""Weights held once (backends/pytorch/weights.py): a converted module holds its ONNX file's weights once, however
many nodes use an initializer, and keeps holding them once through ``.to()``, ``state_dict()`` and InvokeAI's
model cache (which counts, moves and evicts the module by its parameters, buffers and state dict).

onnx2torch 1.5.15 alone copies an initializer into every node that uses it: the tests show that ratio first.
"""

from __future__ import annotations

import copy

import numpy as np
import onnx
import onnx2torch
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from support import fetch_weights, torch_nets
from remove_background.backends.pytorch import convert as torch_convert
from remove_background.backends.pytorch import expansions, rewrites
from remove_background.backends.pytorch.host_reads import count_host_reads
from remove_background.backends.pytorch.weights import held_bytes, held_values

LIMIT = 1.05  # held values / the file's initializer values


def file_values(path) -> int:
    return sum(int(np.prod(t.dims)) for t in onnx.load(str(path), load_external_data=False).graph.initializer)


def state_dict_values(module) -> int:
    return sum(v.numel() for v in module.state_dict().values())


def run(module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = module(torch.from_numpy(x))
    return (out[0] if isinstance(out, (list, tuple)) else out).numpy()


def ort_run(path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def assert_held_once(module, path):
    """At most LIMIT x the file's values, in parameters/buffers and in the state dict, each tensor under one key."""
    values = file_values(path)
    assert held_values(module) <= LIMIT * values, (held_values(module), values)
    state = module.state_dict()
    assert state_dict_values(module) <= LIMIT * values, (state_dict_values(module), values)
    assert len({id(v) for v in state.values()}) == len(state)  # no tensor under two keys


def shared_initializer_graph(path):
    """One Conv weight in two Convs (once through Identity, as exporters write tied weights), one MatMul weight in
    two MatMuls, one constant in an Add and a Mul, one table in two Gathers."""
    rng = np.random.RandomState(0)
    inits = {"w": rng.randn(4, 4, 3, 3), "b": rng.randn(4), "k": rng.randn(1, 4, 1, 1), "p": rng.randn(16, 16),
             "table": rng.randn(5, 16), "shape": np.array([1, 4, 16], np.int64),
             "rows": np.array([1, 3, 0, 4], np.int64)}
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Identity", ["w"], ["w_tied"]),
        helper.make_node("Conv", ["r1", "w_tied", "b"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),  # (ONNX Runtime would fuse an Add or Mul right after a Conv)
        helper.make_node("Add", ["r2", "k"], ["a"]),
        helper.make_node("Mul", ["a", "k"], ["m"]),
        helper.make_node("Reshape", ["m", "shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "p"], ["mm1"]),
        helper.make_node("Tanh", ["mm1"], ["t1"]),
        helper.make_node("MatMul", ["t1", "p"], ["mm2"]),
        helper.make_node("Gather", ["table", "rows"], ["g1"]),
        helper.make_node("Gather", ["table", "rows"], ["g2"]),
        helper.make_node("Add", ["mm2", "g1"], ["s"]),
        helper.make_node("Sub", ["s", "g2"], ["y"]),
    ]
    arrays = [numpy_helper.from_array(v.astype(np.float32) if v.dtype == np.float64 else v, name=k)
              for k, v in inits.items()]
    graph = helper.make_graph(nodes, "shared", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=arrays)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def twice_net(tmp_path_factory):
    torch.manual_seed(0)
    x = torch.randn(1, 3, 16, 16)
    path = tmp_path_factory.mktemp("twice") / "twice.onnx"
    return torch_nets.export(torch_nets.TwiceNet(), (x,), path, ["input"], ["out"]), x.numpy()


def test_onnx2torch_alone_holds_a_shared_initializer_once_per_use(tmp_path, twice_net):
    """The defect this module removes, as it stands in onnx2torch 1.5.15 (if this fails, onnx2torch changed)."""
    path, _ = twice_net
    folded = torch_convert.fold(path, {"input": [1, 3, 16, 16]})
    plain = onnx2torch.convert(folded)
    assert held_values(plain) > 1.9 * file_values(path)


def test_initializer_used_by_several_nodes_is_held_once(tmp_path):
    path = shared_initializer_graph(tmp_path / "shared.onnx")
    module = torch_convert.convert(path, "test", {"x": [1, 4, 4, 4]})
    assert_held_once(module, path)
    assert held_values(module) <= file_values(path)
    assert len([m for m in module.modules() if isinstance(m, torch.nn.Conv2d)]) == 1  # called twice
    x = np.random.RandomState(1).randn(1, 4, 4, 4).astype(np.float32)
    np.testing.assert_allclose(run(module, x), ort_run(path, x), rtol=1e-5, atol=1e-5)


def test_a_sub_network_run_twice_is_held_once(twice_net):
    """The second run of the backbone calls the first run's modules: one Conv2d per Conv of the backbone."""
    path, x = twice_net
    module = torch_convert.convert(path, "test", {"input": [1, 3, 16, 16]})
    assert_held_once(module, path)
    convs = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 3, convs  # the backbone's two and the head (each called where the ONNX graph calls it)
    np.testing.assert_allclose(run(module, x), ort_run(path, x), rtol=1e-5, atol=1e-5)


def test_weights_stay_held_once_through_to_and_the_state_dict(twice_net):
    """InvokeAI moves modules with ``.to()`` and partial loading reloads a state dict with ``assign=True``."""
    path, x = twice_net
    module = torch_convert.convert(path, "test", {"input": [1, 3, 16, 16]})
    expected = run(module, x)
    before = held_values(module)
    module.to(torch.float64).float()  # every tensor replaced, twice
    assert held_values(module) == before
    np.testing.assert_allclose(run(module, x), expected, rtol=1e-6, atol=1e-6)
    moved = copy.deepcopy(module).to("meta")  # another device: every tensor moved once
    assert sum(t.numel() for t in set(moved.parameters()) | set(moved.buffers())) == before
    state = {k: torch.from_numpy(v.numpy().copy()) for k, v in copy.deepcopy(module).eval().state_dict().items()}
    reloaded = torch_convert.convert(path, "test", {"input": [1, 3, 16, 16]})
    reloaded.load_state_dict(state, assign=True)  # what CachedModelWithPartialLoad does, key by key
    assert held_values(reloaded) == before
    np.testing.assert_allclose(run(reloaded, x), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.slow
def test_invokeai_model_cache_counts_and_moves_the_true_size(twice_net):
    """InvokeAI's own cache wrapper (as ModelCache.put builds it, its custom layers applied): total bytes are the
    module's true bytes, and a full load moves each once. The "meta" device stands in for a GPU (mocked: none here)."""
    pytest.importorskip("invokeai")
    from invokeai.backend.model_manager.load.model_cache.cached_model.cached_model_with_partial_load import (
        CachedModelWithPartialLoad,
    )
    from invokeai.backend.model_manager.load.model_cache.torch_module_autocast.torch_module_autocast import (
        apply_custom_layers_to_model,
    )
    from invokeai.backend.model_manager.load.model_util import calc_model_size_by_data

    path, x = twice_net
    module = torch_convert.convert(path, "test", {"input": [1, 3, 16, 16]})
    expected, true_bytes = run(module, x), held_bytes(module)
    apply_custom_layers_to_model(module)
    assert calc_model_size_by_data(None, module) == true_bytes
    cached = CachedModelWithPartialLoad(module, torch.device("meta"), keep_ram_copy=True)
    assert cached.total_bytes() == true_bytes
    assert cached.full_load_to_vram() == true_bytes
    assert all(t.device.type == "meta" for t in module.state_dict().values())
    cached.full_unload_from_vram()
    assert held_bytes(module) == true_bytes
    np.testing.assert_allclose(run(module, x), expected, rtol=1e-6, atol=1e-6)


def test_a_large_constant_made_of_small_ones_is_computed_not_stored(tmp_path, monkeypatch):
    """A relative-position bias gathered from its table, and a bias expanded to the activation's shape: the fold would
    store both (15x the file's values); they are computed in each forward instead, on the device."""
    rng = np.random.RandomState(0)
    inits = {"table": rng.randn(169, 16).astype(np.float32), "index": rng.randint(0, 169, 2401).astype(np.int64),
             "to_grid": np.array([49, 49, 16], np.int64), "zero": np.array([0], np.int64),
             "c": rng.randn(1, 16, 1, 1).astype(np.float32), "full": np.array([1, 16, 49, 49], np.int64)}
    nodes = [
        helper.make_node("Gather", ["table", "index"], ["rows"], axis=0),
        helper.make_node("Reshape", ["rows", "to_grid"], ["grid"]),
        helper.make_node("Transpose", ["grid"], ["heads"], perm=[2, 0, 1]),
        helper.make_node("Unsqueeze", ["heads", "zero"], ["bias"]),
        helper.make_node("Expand", ["c", "full"], ["wide"]),
        helper.make_node("Add", ["x", "bias"], ["a"]),
        helper.make_node("Add", ["a", "wide"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "expansions", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                  [1, 16, 49, 49])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "expansions.onnx"
    onnx.save(model, str(path))
    with monkeypatch.context() as patch:  # ONNX Runtime's fold alone stores them
        patch.setattr(expansions, "keep_out", lambda model, workdir: {})
        patch.setattr(rewrites, "store_distinct_rows", lambda graph: None)
        stored = torch_convert.convert(path, "test", {"x": [1, 16, 49, 49]})
    assert held_values(stored) > 14 * file_values(path)
    module = torch_convert.convert(path, "test", {"x": [1, 16, 49, 49]})
    assert_held_once(module, path)
    x = rng.randn(1, 16, 49, 49).astype(np.float32)
    np.testing.assert_allclose(run(module, x), ort_run(path, x), rtol=1e-6, atol=1e-6)
    assert count_host_reads(module, torch.from_numpy(x)).total == 0


def family_network(name: str, tmp_path):
    """(ONNX file, input shapes) of the family networks of torch_nets.py, exported as the real files were."""
    torch.manual_seed(0)
    if name == "swin":  # the fold would store its shifted-window attention mask: kept computed (expansions.py)
        return torch_nets.export(torch_nets.SwinNet(), (torch.randn(1, 3, 20, 20),), tmp_path / "swin.onnx",
                                 ["input"], ["out"]), {"input": [1, 3, 20, 20]}
    if name == "deform":
        torch_nets.register_deform_conv2d_exporter()
        return torch_nets.export(torch_nets.DeformNet(4, 8), (torch.randn(1, 4, 16, 16),), tmp_path / "dcn.onnx",
                                 ["input"], ["out"]), {"input": [1, 4, 16, 16]}
    args = (torch.randn(1, 16, 8, 8), torch.tensor([[[10.0, 20.0], [40.0, 5.0]]]), torch.tensor([[1.0, 0.0]]),
            torch.tensor([45.0, 70.0]))
    path = torch_nets.export(torch_nets.SamLikeDecoder(), args, tmp_path / "sam.onnx",
                             ["image_embeddings", "point_coords", "point_labels", "orig_im_size"], ["masks", "iou"])
    return path, {"point_coords": [1, 2, 2], "point_labels": [1, 2]}


def relative_position_graph(path):
    """ViTDet's relative positions: a table chosen by an If on a constant (``get_rel_pos`` resizes it when the
    input's size differs from training), gathered for every (query, key) pair and read by an Einsum. The If hides the
    Gather from ``keep_out``; ONNX Runtime's fold stores its [16, 16, 16] result. A Conv whose weight repeats its rows
    must stay a Conv."""
    rng = np.random.RandomState(0)
    queries = np.arange(16)
    inits = {"table": rng.randn(31, 16).astype(np.float32), "same_size": np.array(True),
             "index": (queries[:, None] - queries[None, :] + 15).astype(np.int64),
             "zero": np.array([0], np.int64), "w": np.tile(rng.randn(1, 1, 1, 16).astype(np.float32), (64, 1, 1, 1))}
    as_trained = helper.make_graph([helper.make_node("Identity", ["table"], ["kept"])], "then", [],
                                   [helper.make_tensor_value_info("kept", TensorProto.FLOAT, [31, 16])])
    resized = helper.make_graph([helper.make_node("Mul", ["table", "table"], ["scaled"])], "else", [],
                                [helper.make_tensor_value_info("scaled", TensorProto.FLOAT, [31, 16])])
    nodes = [
        helper.make_node("If", ["same_size"], ["chosen"], then_branch=as_trained, else_branch=resized),
        helper.make_node("Gather", ["chosen", "index"], ["relative"], axis=0),
        helper.make_node("Einsum", ["x", "relative"], ["scores"], equation="bqc,qkc->bqk"),
        helper.make_node("Unsqueeze", ["scores", "zero"], ["image"]),
        helper.make_node("Conv", ["image", "w"], ["y"]),  # 64 equal 1x16 filters
    ]
    graph = helper.make_graph(nodes, "relative", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_a_constant_of_few_distinct_rows_is_stored_as_its_rows(tmp_path, monkeypatch):
    """What the fold gathered behind an If stays the size of its table (rewrites/tables.py), bit for bit."""
    path = relative_position_graph(tmp_path / "relative.onnx")
    with monkeypatch.context() as patch:  # without the rewrite: the fold's [16, 16, 16] tensor is held
        patch.setattr(rewrites, "store_distinct_rows", lambda graph: None)
        stored = torch_convert.convert(path, "test", {"x": [1, 16, 16]})
    assert held_values(stored) > 2.5 * file_values(path)
    module = torch_convert.convert(path, "test", {"x": [1, 16, 16]})
    assert_held_once(module, path)
    assert any(isinstance(m, torch.nn.Conv2d) for m in module.modules())
    x = np.random.RandomState(1).randn(1, 16, 16).astype(np.float32)
    np.testing.assert_array_equal(run(module, x), run(stored, x))
    np.testing.assert_allclose(run(module, x), ort_run(path, x), rtol=1e-5, atol=1e-5)
    assert count_host_reads(module, torch.from_numpy(x)).total == 0


@pytest.mark.parametrize("name", ["swin", "deform", "sam"])
def test_family_networks_hold_their_weights_once(name, tmp_path):
    path, shapes = family_network(name, tmp_path)
    assert_held_once(torch_convert.convert(path, "test", shapes), path)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["u2netp", "u2net"])
def test_real_rembg_models_hold_their_weights_once(model):
    path = fetch_weights.cached(model)
    module = torch_convert.convert(path, model, {0: [1, 3, 320, 320]})
    assert_held_once(module, path)
