"""The node's models live in InvokeAI's own model cache, seen from outside: a real invokeai-web on 127.0.0.1 whose
RAM model cache is made too small for two copies of rembg's real u2net (176 MB each: ONNX Runtime's session, keyed
by the file, and the torch module converted from it, keyed by the file + "#torch").

- After a run, ``GET /api/v2/models/stats`` lists the model file with its size, for ``auto`` and for ``torch``.
- A run of the other route evicts ours; the next run reloads it (a cache miss in that run's statistics) and gives
  the same pixels.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from support import fetch_weights
from support.images import horse_scene, png
from support.invokeai_server import InvokeAIServer, outputs_of, prepare_root, removal_graph

pytestmark = [pytest.mark.server, pytest.mark.slow]

CACHE_GB = 0.25  # room for one u2net (176 MB), not for two


@pytest.fixture(scope="module")
def server(tmp_path_factory, u2netp_file):
    root = prepare_root(tmp_path_factory.mktemp("invokeai_cache_root"))
    fetch_weights.place(root / "models" / "rembg", "u2net")
    with InvokeAIServer(root, env={"INVOKEAI_MAX_CACHE_RAM_GB": str(CACHE_GB)}) as s:
        yield s


def run(server, name: str, provider: str) -> tuple[np.ndarray, dict]:
    item = server.run_one(removal_graph(name, model="u2net", execution_provider=provider))
    assert item["status"] == "completed", item.get("error_message")
    [out] = outputs_of(item)
    mask = np.asarray(Image.open(io.BytesIO(server.download(out["mask"]["image_name"]))))
    return mask, server.get("/api/v2/models/stats")


def test_invokeai_counts_evicts_and_reloads_our_model(server):
    assert any(f"{CACHE_GB} GB" in line for line in server.lines), "InvokeAI did not take the small RAM cache"
    file = server.root / "models" / "rembg" / "u2net.onnx"
    size = file.stat().st_size
    name = server.upload(png(horse_scene()[0]))

    first, stats = run(server, name, "auto")  # on this CPU machine: ONNX Runtime, keyed by the file
    assert stats["loaded_model_sizes"].get(str(file)) == size, stats
    assert stats["misses"] >= 1

    torch_mask, stats = run(server, name, "torch")  # the torch module, keyed by the file + "#torch"
    module_size = stats["loaded_model_sizes"].get(f"{file}#torch")
    assert module_size is not None and 0.8 * size < module_size < 1.2 * size, stats
    difference = np.abs(first.astype(int) - torch_mask.astype(int))
    assert difference.mean() <= 0.5 and ((first > 127) == (torch_mask > 127)).mean() >= 0.999

    again, stats = run(server, name, "auto")  # the session was evicted to make room: reloaded, same pixels
    assert stats["misses"] >= 1 and stats["loaded_model_sizes"].get(str(file)) == size, stats
    assert np.array_equal(again, first)

    cached, stats = run(server, name, "auto")  # and now it stays: a hit, no miss
    assert stats["misses"] == 0 and stats["hits"] >= 1, stats
    assert np.array_equal(cached, first)
    assert not any("Traceback" in line for line in server.lines[-200:])
