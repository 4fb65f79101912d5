"""The same module on every onnxruntime we allow: the fold (ONNX Runtime's basic optimisation) is the only step of
the conversion that depends on onnxruntime, and from 1.29.0 it writes the deform-conv exporter's
GatherND -> Transpose -> Reshape as GatherND -> Reshape -> Transpose. The matcher compares such chains by the data
movement they make (rewrites/layouts.py), so both orders give ``deform_conv2d``.

- On this venv's onnxruntime, the newer order made by hand from the older one converts the same way.
- The oldest onnxruntime pyproject allows and the newest on PyPI (``OLDEST``, ``NEWEST``) fold the test network in
  small environments built with uv (cached outside the clone, keyed by their spec); the rest of the conversion runs
  here and gives the module this venv gives.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import helper

from support import ROOT, torch_nets
from remove_background.backends.pytorch import convert as torch_convert
from remove_background.backends.pytorch.rewrites.layouts import moves_like, reshape, transpose

OLDEST = "1.17.0"  # pyproject: onnxruntime>=1.17
NEWEST = "1.32.0"  # the newest on PyPI when last checked (pip index versions onnxruntime); pyproject: <1.33
SHAPE = [1, 4, 16, 16]


@pytest.fixture(scope="module")
def deform_net(tmp_path_factory):
    torch_nets.register_deform_conv2d_exporter()
    torch.manual_seed(0)
    x = torch.randn(*SHAPE)
    path = tmp_path_factory.mktemp("dcn") / "dcn.onnx"
    torch_nets.export(torch_nets.DeformNet(4, 8), (x,), path, ["input"], ["out"])
    return path, x


def deform_convs(module) -> int:
    return [type(m).__name__ for m in module.modules()].count("DeformConv2d")


def run(module, x):
    with torch.no_grad():
        return module(x).numpy()


def reference(path, x):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]


def test_a_chain_is_compared_by_where_it_moves_the_data():
    shape = (1, 2, 9 * 4 * 5, 3)  # GatherND's output: [b, groups, K*h*w, channels]
    exporter = [transpose(0, 1, 3, 2), reshape(1, 2, 3, 9, 4, 5)]
    assert moves_like(shape, [reshape(1, 2, 9, 4, 5, 3), transpose(0, 1, 5, 2, 3, 4)], exporter)
    assert moves_like(shape, [reshape(0, 0, 9, 4, -1, 3), transpose(0, 1, 5, 2, 3, 4)], exporter)  # 0 and -1
    assert not moves_like(shape, [reshape(1, 2, 9, 4, 5, 3), transpose(0, 1, 5, 2, 4, 3)], exporter)  # h, w swapped
    assert not moves_like(shape, [reshape(1, 2, 3, 9, 4, 5)], exporter)  # same shape, other places
    big = (1, 1, 49 * 64 * 64, 64)  # sampled, not every element
    assert moves_like(big, [reshape(1, 1, 49, 64, 64, 64), transpose(0, 1, 5, 2, 3, 4)],
                      [transpose(0, 1, 3, 2), reshape(1, 1, 64, 49, 64, 64)])


def newer_order(model, perm=(0, 1, 5, 2, 3, 4)):
    """``model`` with each GatherND -> Transpose [0,1,3,2] -> Reshape [b,g,c,K,h,w] written as onnxruntime >= 1.29
    writes it: GatherND -> Reshape [b,g,K,h,w,c] -> Transpose ``perm``."""
    model = copy.deepcopy(model)
    inits = {t.name: t for t in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    changed = 0
    for node in model.graph.node:
        first = producers.get(node.input[0])
        if node.op_type != "Reshape" or first is None or first.op_type != "Transpose":
            continue
        gather = producers.get(first.input[0])
        if gather is None or gather.op_type != "GatherND":
            continue
        b, g, c, k, h, w = onnx.numpy_helper.to_array(inits[node.input[1]]).tolist()
        new_shape = onnx.numpy_helper.from_array(np.array([b, g, k, h, w, c], np.int64), f"reordered_{changed}")
        model.graph.initializer.append(new_shape)
        first.CopyFrom(helper.make_node("Reshape", [gather.output[0], new_shape.name], [first.output[0]]))
        node.CopyFrom(helper.make_node("Transpose", [first.output[0]], list(node.output), perm=list(perm)))
        changed += 1
    assert changed == 12  # four per deform conv
    return model


def test_the_newer_order_converts_to_deform_conv2d(deform_net):
    path, x = deform_net
    older = torch_convert.fold(path, {"input": SHAPE})
    newer = newer_order(older)
    module = torch_convert.convert_graph(copy.deepcopy(newer), "test")
    assert deform_convs(module) == 3
    np.testing.assert_allclose(run(module, x), reference(path, x), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(run(module, x), run(torch_convert.convert_graph(older, "test"), x), rtol=1e-6,
                               atol=1e-6)


def test_a_chain_that_moves_the_data_elsewhere_is_no_deform_conv(deform_net, tmp_path):
    """Swapping h and w in the last Transpose computes something else: the GatherNDs stay, and stay right."""
    path, x = deform_net
    wrong = newer_order(torch_convert.fold(path, {"input": SHAPE}), perm=(0, 1, 5, 2, 4, 3))
    module = torch_convert.convert_graph(copy.deepcopy(wrong), "test")
    assert deform_convs(module) == 0
    onnx.save(wrong, str(tmp_path / "wrong.onnx"))
    np.testing.assert_allclose(run(module, x), reference(tmp_path / "wrong.onnx", x), rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------------------------------------------
# the real onnxruntime releases, each in a small environment of its own


def onnxruntime_env(release: str) -> Path:
    """A venv with onnxruntime==release beside this venv's onnx, numpy and pillow (what importing the package and
    folding need), made once by uv and cached outside the clone under a key of its spec."""
    spec = [f"onnxruntime=={release}"] + [f"{name}=={version(name)}" for name in ("onnx", "numpy", "pillow")]
    key = hashlib.sha256(json.dumps([sys.version, spec]).encode()).hexdigest()[:16]
    cache = Path(os.environ.get("REMOVE_BACKGROUND_CACHE", Path.home() / ".cache" / "remove-background"))
    env = cache / f"onnxruntime-{release}-{key}"
    if (env / ".complete").is_file():
        return env
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not installed here (.ci/requirements-test.txt has it)")
    shutil.rmtree(env, ignore_errors=True)
    quiet = dict(capture_output=True, text=True, timeout=600, env=dict(os.environ, UV_PYTHON_DOWNLOADS="never"))
    made = subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(env)], **quiet)
    if made.returncode == 0:
        made = subprocess.run([uv, "pip", "install", "-q", "--python", str(env / "bin" / "python"), *spec], **quiet)
    if made.returncode != 0:
        shutil.rmtree(env, ignore_errors=True)
        pytest.skip(f"could not build an environment with {spec[0]} (no package registry?): {made.stderr[-500:]}")
    (env / ".complete").touch()
    return env


FOLD_THERE = """
import json, sys
import onnx, onnxruntime
from pathlib import Path
from remove_background.backends.pytorch.fold import fold
source, target, shapes = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
onnx.save(fold(Path(source), shapes), target)
print(onnxruntime.__version__)
"""


@pytest.mark.slow
@pytest.mark.parametrize("release", [OLDEST, NEWEST])
def test_oldest_and_newest_onnxruntime_give_the_same_module(release, deform_net, tmp_path):
    path, x = deform_net
    env = onnxruntime_env(release)
    folded = tmp_path / f"folded-{release}.onnx"
    done = subprocess.run([str(env / "bin" / "python"), "-c", FOLD_THERE, str(path), str(folded),
                           json.dumps({"input": SHAPE})], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == release
    graph = onnx.load(str(folded))
    perms = {tuple(a.ints) for n in graph.graph.node if n.op_type == "Transpose"
             for a in n.attribute if a.name == "perm"}
    if release == NEWEST:
        assert (0, 1, 5, 2, 3, 4) in perms  # the fold wrote the newer order: this test sees it
    module = torch_convert.convert_graph(graph, "test")
    here = torch_convert.convert(path, "test", {"input": SHAPE})
    assert deform_convs(module) == deform_convs(here) == 3
    np.testing.assert_allclose(run(module, x), run(here, x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(run(module, x), reference(path, x), rtol=1e-4, atol=1e-4)
