"""The session cache (LRU, thread-safe, clearable) and honest execution providers."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from remove_background import catalog

from remove_background.backends.cache import SessionCache, clear_sessions, get_session

from remove_background.backends import models
from remove_background.errors import ProviderUnavailableError
from remove_background.backends.routes import check_loaded, plan_providers

CPU_ONLY = ["CPUExecutionProvider"]
WITH_CUDA = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


def test_cache_creates_once_and_reuses():
    cache = SessionCache(max_size=2)
    made = []
    factory = lambda: made.append(1) or object()  # noqa: E731
    a = cache.get(("a",), factory)
    assert cache.get(("a",), factory) is a
    assert len(made) == 1 and cache.created == 1


def test_cache_is_lru_bounded():
    cache = SessionCache(max_size=2)
    cache.get(("a",), object)
    cache.get(("b",), object)
    cache.get(("a",), object)  # a is now most recent
    cache.get(("c",), object)  # evicts b
    assert cache.keys() == [("a",), ("c",)]


def test_cache_is_thread_safe_one_creation_per_key():
    cache = SessionCache(max_size=4)
    made = []

    def slow():
        made.append(1)
        time.sleep(0.2)
        return object()

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get(("k",), slow))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1 and len({id(r) for r in results}) == 1


def test_cache_can_be_emptied():
    cache = SessionCache()
    cache.get(("a",), object)
    assert cache.clear() == 1 and len(cache) == 0


def test_real_session_is_cached_per_model_and_provider(models_dir):
    info = catalog.MODELS["u2netp"]
    path = models_dir / "u2netp.onnx"
    cache = SessionCache()
    a = get_session(info, [path], plan_providers("cpu", available=CPU_ONLY), cache)
    b = get_session(info, [path], plan_providers("auto", "cpu", available=CPU_ONLY), cache)
    assert a.providers == ["CPUExecutionProvider"]
    assert b is a and cache.created == 1  # "cpu" and "auto" on a CPU device run the same providers: one session
    c = get_session(info, [path], plan_providers("cpu", available=CPU_ONLY), cache)
    assert c is a and cache.created == 1


@pytest.mark.parametrize(
    "device, expected",
    [("cuda", 0), ("cuda:1", 1), ("cuda:3", 3)],
)
def test_auto_follows_invokeai_cuda_device_mocked_cuda_provider(device, expected):
    plan = plan_providers("auto", device, available=WITH_CUDA, torch_route=True)
    assert plan.providers[0] == ("CUDAExecutionProvider", {"device_id": expected})
    assert plan.providers[-1] == "CPUExecutionProvider" and not plan.explicit
    # if ONNX Runtime's CUDA does not load: torch on the same device, then ONNX Runtime on the CPU
    assert plan.fallback.backend == "torch" and plan.fallback.torch_device == f"cuda:{expected}"
    assert plan.fallback.fallback.providers == ("CPUExecutionProvider",)


def test_cuda_devices_are_different_cache_keys_mocked_cuda_provider():
    for route in (True, False):
        available = WITH_CUDA if route else CPU_ONLY
        assert plan_providers("auto", "cuda:0", available=available, torch_route=True).key != plan_providers(
            "auto", "cuda:1", available=available, torch_route=True).key


@pytest.mark.parametrize("device", ["cuda", "cuda:2", "mps", "xpu:1"])
def test_auto_on_a_gpu_without_ort_gpu_runs_torch_on_that_device(device):
    """InvokeAI's launcher installs the CPU onnxruntime with a GPU torch (NVIDIA, AMD, Apple, Intel): torch."""
    plan = plan_providers("auto", device, available=CPU_ONLY + ["CoreMLExecutionProvider"], torch_route=True)
    assert plan.backend == "torch" and plan.torch_device == (device + ":0" if device == "cuda" else device)
    assert plan.fallback.providers == ("CPUExecutionProvider",) and plan.fallback.backend == "ort"


def test_auto_on_cpu_runs_onnx_runtime_on_the_cpu():
    plan = plan_providers("auto", "cpu", available=WITH_CUDA, torch_route=True)
    assert plan.backend == "ort" and plan.providers == ("CPUExecutionProvider",)


def test_auto_on_a_gpu_without_any_gpu_route_warns_once_and_uses_cpu(caplog):
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            plan = plan_providers("auto", "cuda:7", available=CPU_ONLY, torch_route=False)
    assert plan.providers == ("CPUExecutionProvider",)
    assert "onnx2torch" in caplog.text and "runs on the CPU instead" in caplog.text
    assert caplog.text.count("runs on the CPU instead") == 1


def test_explicit_torch_outside_invokeai_uses_torchs_own_device(monkeypatch):
    from remove_background.backends import routes as providers

    monkeypatch.setattr(providers, "torch_gpu_device", lambda: None)
    plan = plan_providers("torch", available=CPU_ONLY, torch_route=True)
    assert (plan.backend, plan.torch_device, plan.explicit, plan.fallback) == ("torch", "cpu", True, None)
    assert plan_providers("torch", "cuda:1", available=CPU_ONLY, torch_route=True).torch_device == "cuda:1"


def test_explicit_torch_without_onnx2torch_names_the_install_command():
    from remove_background.errors import DependencyMissingError

    with pytest.raises(DependencyMissingError) as e:
        plan_providers("torch", "cuda:0", available=CPU_ONLY, torch_route=False)
    assert "onnx2torch" in str(e.value) and "install" in str(e.value)


def test_explicit_unavailable_provider_fails_with_fix():
    with pytest.raises(ProviderUnavailableError) as e:
        plan_providers("cuda", available=CPU_ONLY)
    text = str(e.value)
    assert "'cuda'" in text and "CUDAExecutionProvider" in text and "Available: CPUExecutionProvider" in text
    assert "pip" in text


def test_tensorrt_chains_cuda_then_cpu_mocked_providers():
    plan = plan_providers("tensorrt", "cuda:1", available=WITH_CUDA)
    assert [p[0] if isinstance(p, tuple) else p for p in plan.providers] == [
        "TensorrtExecutionProvider",
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]


def test_explicit_provider_that_fails_to_load_raises_mocked_cuda_provider():
    plan = plan_providers("cuda", available=WITH_CUDA)  # the provider list lies: CUDA is "available"...
    with pytest.raises(ProviderUnavailableError, match="loaded only CPUExecutionProvider"):
        check_loaded(plan, ["CPUExecutionProvider"], "u2netp")  # ...but only the CPU loaded


def test_auto_provider_that_fails_to_load_runs_the_next_route_with_one_warning_mocked_cuda_provider(
        models_dir, monkeypatch, caplog):
    """ONNX Runtime offers CUDA but it does not load: auto on cuda:0 runs the next route (torch is not installed in
    this mock, so ONNX Runtime on the CPU), warns once, and keeps that route for the next runs."""
    import onnxruntime as ort
    from PIL import Image

    from remove_background import remove

    from remove_background.backends import routes as providers

    monkeypatch.setattr(ort, "get_available_providers", lambda: WITH_CUDA)
    monkeypatch.setattr(providers, "torch_route_installed", lambda: False)
    clear_sessions()
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            result = remove(Image.new("RGB", (8, 8), "red"), provider="auto", device="cuda:0", models_dir=models_dir)
    assert result.providers == ["CPUExecutionProvider"]
    assert caplog.text.count("loaded only CPUExecutionProvider") == 1
    assert "instead" in caplog.text
    clear_sessions()


def test_real_session_with_lying_provider_list_fails_clearly_mocked_cuda_provider(models_dir, monkeypatch):
    """onnxruntime claims CUDA is available (as when both ORT wheels are installed), but it cannot load here."""
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: WITH_CUDA)
    from remove_background import remove
    from PIL import Image

    with pytest.raises(ProviderUnavailableError) as e:
        remove(Image.new("RGB", (8, 8)), provider="cuda", models_dir=models_dir)
    assert "CUDAExecutionProvider" in str(e.value)


def test_unknown_provider_is_rejected():
    with pytest.raises(ValueError, match="Choose one of"):
        plan_providers("vulkan")


def test_both_onnxruntime_packages_installed_is_named_in_the_fix_mocked_cuda_provider(monkeypatch):
    from remove_background.backends import routes as providers

    monkeypatch.setattr(providers, "installed_ort_distributions",
                        lambda: ["onnxruntime==1.19.2", "onnxruntime-gpu==1.19.2"])
    plan = plan_providers("cuda", "cuda:0", available=WITH_CUDA)
    with pytest.raises(ProviderUnavailableError) as e:
        check_loaded(plan, ["CPUExecutionProvider"], "u2net")
    text = str(e.value)
    assert "'cuda'" in text and "loaded only CPUExecutionProvider" in text  # what was asked, what loaded
    assert "onnxruntime==1.19.2, onnxruntime-gpu==1.19.2" in text  # the likely cause
    assert "-m pip install --no-deps --force-reinstall onnxruntime-gpu==" in text  # the fix, for this (pip) venv


def test_unreadable_model_file_is_reported_as_corrupt(tmp_path):
    from remove_background.errors import ModelChecksumError

    bad = tmp_path / "sam_vit_b_01ec64.encoder.onnx"  # sam publishes no checksum: only ORT can tell
    bad.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(ModelChecksumError, match="corrupt or truncated"):
        models.create_model(catalog.MODELS["u2netp"], [bad], plan_providers("cpu", available=CPU_ONLY))
