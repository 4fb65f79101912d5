"""Many callers in one process: 8 threads pinned to simulated devices (as InvokeAI's generation_devices runs the
node) get the serial results, create each (model, provider, device) session once, never share a pooled buffer,
and run at most the allowed number of CPU model runs at once."""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from remove_background import remove

from remove_background.imaging import buffers

from remove_background.imaging import halves

from remove_background.backends import cache

from remove_background.backends import run_gate

WITH_CUDA = ["CUDAExecutionProvider", "CPUExecutionProvider"]
DEVICES = ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]


def digest(result) -> tuple[str, str]:
    """Hashes of the cut-out and the mask, so no result keeps its pooled buffers alive."""
    return (hashlib.sha256(result.image.tobytes()).hexdigest(), hashlib.sha256(result.mask.tobytes()).hexdigest())


@pytest.fixture
def photos():
    from skimage import data

    sources = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    return [Image.fromarray(s).resize((1024 + 64 * i, 1024)) for i, s in enumerate(sources)]


@pytest.fixture
def simulated_gpus(monkeypatch):
    """onnxruntime says CUDA is there; sessions ask for it per device and (on this CPU) run on the CPU."""
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: WITH_CUDA)
    cache.clear_sessions()
    yield
    cache.clear_sessions()


def test_eight_threads_on_simulated_devices_equal_serial(models_dir, photos, simulated_gpus):
    serial = [digest(remove(p, model="u2netp", models_dir=models_dir, device="cpu")) for p in photos]
    # the serial peak of pooled memory, for one caller
    buffers.BUFFERS.peak_lent_bytes = buffers.BUFFERS.lent_bytes
    for p in photos:
        digest(remove(p, model="u2netp", models_dir=models_dir, device="cpu"))
    one_caller_peak = buffers.BUFFERS.peak_lent_bytes
    assert one_caller_peak > 0  # the pool is in use at this size

    created_before = cache.CACHE.created
    run_gate.CPU_GATE.reset()
    buffers.BUFFERS.peak_lent_bytes = buffers.BUFFERS.lent_bytes
    doubles_before = buffers.BUFFERS.double_lends
    barrier = threading.Barrier(8)
    devices_seen = {}

    def worker(index: int):
        device = DEVICES[index % len(DEVICES)]  # this thread's device, as TorchDevice.set_session_device pins it
        barrier.wait()
        out = []
        for k in range(len(photos)):
            j = (index + k) % len(photos)
            result = remove(photos[j], model="u2netp", models_dir=models_dir, device=device)
            devices_seen[(index, j)] = result.providers
            out.append((j, digest(result)))
            del result  # as the serial loop did: nothing holds a result's buffers into the next call
        return out

    with ThreadPoolExecutor(8) as pool:
        results = [r for rs in pool.map(worker, range(8)) for r in rs]

    assert len(results) == 8 * len(photos)
    for j, d in results:
        assert d == serial[j], f"photo {j} differs from the serial result"
    # one session per simulated device (plus the serial CPU one, created before), none evicted and re-created
    assert cache.CACHE.created - created_before == len(DEVICES)
    device_keys = {k[1] for k in cache.CACHE.keys()}
    assert len(device_keys) == len(DEVICES) + 1
    assert all(providers == ["CPUExecutionProvider"] for providers in devices_seen.values())
    # CPU runs were queued, not piled onto the cores at once
    assert run_gate.CPU_GATE.peak <= run_gate.cpu_run_slots()
    # memory: no block handed to two callers; at most one caller's peak per thread at once
    assert buffers.BUFFERS.double_lends == doubles_before
    assert buffers.BUFFERS.peak_lent_bytes <= 8 * one_caller_peak


def test_cache_bound_is_per_device():
    sessions = cache.SessionCache(max_size=1)
    for device in ("cuda:0", "cuda:1", "cuda:0", "cuda:1"):
        sessions.get(("u2netp", (("CUDA", (("device_id", device),)),), ()), object)
    assert sessions.created == 2 and len(sessions) == 2
    sessions.get(("u2net", (("CUDA", (("device_id", "cuda:0"),)),), ()), object)  # evicts u2netp on cuda:0 only
    assert [k[0] for k in sessions.keys()] == ["u2netp", "u2net"]


def test_run_gate_limits_runs_at_once():
    gate = run_gate.RunGate(2)
    started = threading.Barrier(6)

    def run():
        started.wait()
        with gate:
            threading.Event().wait(0.05)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert gate.peak == 2 and gate.waited >= 1 and gate.running == 0


def test_halves_run_whole_when_the_helper_is_busy():
    seen = []
    lock = threading.Lock()
    inside = threading.Event()
    release = threading.Event()

    def slow(top, bottom):
        with lock:
            seen.append((top, bottom))
        inside.set()
        release.wait(5)
        return np.arange(top, bottom)

    first = ThreadPoolExecutor(1).submit(halves.on_two_halves, slow, 1000)
    inside.wait(5)
    # the first caller holds the helper: a second caller does its work whole, here, without waiting
    assert np.array_equal(np.concatenate(halves.on_two_halves(lambda a, b: np.arange(a, b), 1000)), np.arange(1000))
    release.set()
    assert np.array_equal(np.concatenate(first.result(5)), np.arange(1000))
    assert sorted(seen) == [(0, 500), (500, 1000)]


def test_buffer_pool_never_lends_a_block_twice_under_threads():
    pool = buffers.BufferPool(64 << 20)
    size = (1024, 1024, 4)

    def use(i):
        for _ in range(20):
            a = pool.empty(size)
            a[...] = i  # our value, unless someone else shares the block
            assert (a == i).all()
            del a

    with ThreadPoolExecutor(8) as ex:
        list(ex.map(use, range(8)))
    assert pool.double_lends == 0
    assert pool.peak_lent_bytes <= 8 * 1024 * 1024 * 4


@pytest.mark.server
def test_rest_load_twenty_mixed_items_all_complete_and_server_answers(tmp_path_factory, u2netp_file):
    """A real invokeai-web: 20 queue items of mixed sizes (one batch of 12 and 8 single enqueues), all complete with
    the right sizes, none lost, and the server answers a status request quickly while it works."""
    import io
    import time

    from support import fetch_weights
    from support.images import png
    from support.invokeai_server import InvokeAIServer, outputs_of, prepare_root, removal_graph

    root = prepare_root(tmp_path_factory.mktemp("invokeai_load_root"))
    fetch_weights.place(root / "models" / "rembg")
    from skimage import data

    photo = Image.fromarray(data.astronaut())
    sizes = [(64, 48), (1400, 1000), (320, 320), (900, 1200), (1024, 1024), (33, 500)] * 4
    sizes = sizes[:20]
    with InvokeAIServer(root) as server:
        names = [server.upload(png(photo.resize(s)), f"load{i}.png") for i, s in enumerate(sizes)]
        batch_data = [[{"node_path": "remove_bg", "field_name": "image",
                        "items": [{"image_name": n} for n in names[:12]]}]]
        ids = server.enqueue(removal_graph(model="u2netp"), batch_data)
        ids += [i for n in names[12:] for i in server.enqueue(removal_graph(n, model="u2netp"))]
        assert len(ids) == len(set(ids)) == 20
        slowest = 0.0
        deadline = time.time() + 400
        pending = set(ids)
        while pending and time.time() < deadline:
            t0 = time.perf_counter()
            server.get("/api/v1/queue/default/status")
            slowest = max(slowest, time.perf_counter() - t0)
            pending = {i for i in pending if server.item(i)["status"] not in ("completed", "failed", "canceled")}
            time.sleep(0.5)
        assert not pending, f"items still pending: {sorted(pending)}"
        got = []
        for item_id in ids:
            item = server.item(item_id)
            assert item["status"] == "completed", item.get("error_message")
            [out] = outputs_of(item)
            got.append((out["width"], out["height"]))
        assert sorted(got) == sorted(sizes)  # every size came back once: none lost, none doubled
        assert got[12:] == sizes[12:]
        big = outputs_of(server.item(ids[got.index((1400, 1000))]))[0]
        mask = Image.open(io.BytesIO(server.download(big["mask"]["image_name"])))
        assert mask.size == (1400, 1000) and mask.mode == "L"
        assert slowest < 5.0, f"the server took {slowest:.1f} s to answer a status request under load"
