"""The node in the InvokeAI releases it supports, oldest to newest, installed as users install it.

For each release: a pristine ``uv venv`` with only that InvokeAI (tests/support/pristine.py, from uv's cache), then
install.py with that environment's python, as in the launcher's Dev Console. Only the packages of ``OURS`` (the
one list of what an install may add) appear, every distribution keeps its version, ``uv pip check`` is clean, and
a real ``invokeai-web`` from that environment runs the node over REST on the real u2netp: the cut-out and the mask
it stores are downloaded and checked against an exact silhouette and against the same removal run here.

CI's own release (tests/support/pristine.py's ``INVOKEAI``) also has the more thorough tests of
test_install_pristine.py.
"""

from __future__ import annotations

import io
import subprocess

import numpy as np
import pytest
from PIL import Image

from support import ROOT, fetch_weights, pristine
from support.images import horse_scene, png
from support.invokeai_server import InvokeAIServer, outputs_of, prepare_root, removal_graph
from support.pristine import OURS, assert_only_added
from remove_background import remove
from remove_background.invokeai_adapter.releases import MIN_INVOKEAI, release

pytestmark = [pytest.mark.server, pytest.mark.slow]

NEWEST = pristine.INVOKEAI.split("==", 1)[1]  # the test environment's InvokeAI (.ci/requirements-test.txt)
# The oldest release the node supports (MIN_INVOKEAI, below which it refuses to load), the first 6.x, and the
# newest. 5.15.0 and 6.0.2 resolve to the same packages but InvokeAI itself (torch 2.7.1), so 5.15.0 costs about
# 120 MB and a minute more; 6.0.2's torch costs 5.3 GB of uv's cache beside 6.14.2's.
RELEASES = sorted({MIN_INVOKEAI, "6.0.2", NEWEST}, key=release)
# What the node's dependencies (and onnx2torch's: onnx, torch, torchvision) need InvokeAI to bring already.
INVOKEAI_BRINGS = {"onnx", "onnxruntime", "torch", "torchvision", "numpy", "pillow", "opencv-contrib-python"}


@pytest.mark.parametrize("invokeai", RELEASES)
def test_install_py_then_that_invokeai_runs_the_node(invokeai, tmp_path, models_dir):
    python = pristine.make("uv", tmp_path / "venv", f"invokeai=={invokeai}")
    before = pristine.distributions(python)
    assert before["invokeai"] == invokeai
    assert INVOKEAI_BRINGS <= set(before), INVOKEAI_BRINGS - set(before)
    root = prepare_root(tmp_path / "root", link_pack=False)
    r = subprocess.run([str(python), str(ROOT / "install.py"), "--root", str(root)], capture_output=True, text=True,
                       env=pristine.tool_env(), timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    after = pristine.distributions(python)
    assert "remove-background" in assert_only_added(before, after, OURS)
    check = pristine.check(python, "uv")
    assert check.returncode == 0, check.stdout + check.stderr

    fetch_weights.place(root / "models" / "rembg")
    image, truth = horse_scene()
    with InvokeAIServer(root, python=python, env=pristine.tool_env()) as server:
        assert server.get("/api/v1/app/version")["version"] == invokeai
        log = "".join(server.lines)
        assert "Loading node pack remove_background_node" in log and "Failed to load node pack" not in log, log[-3000:]
        [item_id] = server.enqueue(removal_graph(server.upload(png(image)), model="u2netp"))
        item = server.wait(item_id)
        assert item["status"] == "completed", (item.get("error_type"), item.get("error_message"))
        [out] = outputs_of(item)
        cut = Image.open(io.BytesIO(server.download(out["image"]["image_name"])))
        mask = Image.open(io.BytesIO(server.download(out["mask"]["image_name"])))
        assert out["mask_tensor"]["tensor_name"]

    assert cut.mode == "RGBA" and mask.mode == "L"
    assert cut.size == mask.size == image.size == (out["width"], out["height"])
    cut, mask = np.asarray(cut), np.asarray(mask)
    assert np.array_equal(cut[..., 3], mask)
    assert not cut[mask == 0][:, :3].any()  # nothing of the background under full transparency
    here = np.asarray(remove(image, model="u2netp", models_dir=models_dir).mask)  # this environment, same model
    assert np.abs(mask.astype(int) - here).mean() <= 0.5 and ((mask > 127) == (here > 127)).mean() >= 0.999
    subject = mask > 127
    assert (subject & truth).sum() / (subject | truth).sum() >= 0.95
