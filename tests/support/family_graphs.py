"""The small graphs that stand in for each catalog model's real file, and how our masks are held against a
reference's: what tests/test_model_families.py (rembg 2.0.69's sessions) and tests/test_newer_models.py (rembg 2.0.86's,
and the authors' own steps) share.

rembg's real weights are 5 MB to 1 GB each and cannot be fetched here, so each model gets a small graph of our own
(onnx.helper) with that family's input and output: NCHW float input of any size, a seeded random 3×3 convolution,
ReLU, a 16× average pool, a second random convolution and a linear Resize back up. The mask it gives is smooth and
depends on the image's colours, texture and position, so a wrong mean, std, input size or output step shows. U²-Net,
IS-Net and BRIA graphs end in a Sigmoid, as the real ones do; BiRefNet's return logits (the sigmoid is ours and
rembg's to apply); u2net_cloth_seg's return 4 class channels. A second output (the first negated) stands for the real
models' side outputs: both sides must read output 0. The ``place`` fixture (conftest.py) writes a graph where rembg
and we look for it.
"""

from __future__ import annotations

import functools
import importlib.util

import numpy as np
from PIL import Image

from remove_background import catalog
from remove_background.backends import models


def _providers() -> list[str]:
    """Where ours runs: ONNX Runtime's CPU, and PyTorch where that backend exists; on the CPU a torch model runs
    with the host's pre- and post-processing, so "torch-device" also runs the device pipeline a GPU would use
    (backends/pytorch/device_work.py), here on the CPU."""
    from remove_background.backends.routes import PROVIDER_CHOICES

    found = ["cpu"]
    if "torch" in PROVIDER_CHOICES and importlib.util.find_spec("onnx2torch") is not None:
        found.append("torch")
        if hasattr(models, "DEVICE_WORK_ON_CPU"):
            found.append("torch-device")
    return found


PROVIDERS = _providers()


def use(provider: str, monkeypatch) -> None:
    if provider == "torch-device":
        monkeypatch.setattr(models, "DEVICE_WORK_ON_CPU", True)

POOL = 16  # the graph's pooling factor: every input size used here is a multiple of it
HIDDEN = 4  # channels after the first convolution


@functools.lru_cache(maxsize=None)
def photo(name: str, size: tuple[int, int]) -> Image.Image:
    from skimage import data

    return Image.fromarray(getattr(data, name)()).resize(size, Image.Resampling.BICUBIC)


def cases(side: int) -> list[tuple[str, tuple[int, int]]]:
    """Images for a model of input ``side``: its own size, two non-square ones smaller than it on one side, and one
    larger on both sides (there our upscale is bilinear, rembg's LANCZOS)."""
    return [("astronaut", (side, side)), ("chelsea", (side * 3 // 2, side * 3 // 5)),
            ("coffee", (side * 7 // 10, side * 13 // 10)), ("astronaut", (side * 3 // 2, side * 5 // 4))]


# --- the graphs -------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def family_graph(name: str) -> bytes:
    """The ONNX graph standing in for ``name``'s real model (see the module docstring)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    info = catalog.MODELS[name]
    channels = 4 if info.family == "cloth" else 1
    ends_in_sigmoid = info.family not in ("birefnet", "cloth")  # BiRefNet's files give logits, cloth's classes
    rng = np.random.default_rng(sum(map(ord, name)))
    w1 = rng.normal(0, 27 ** -0.5, (HIDDEN, 3, 3, 3)).astype(np.float32)
    b1 = rng.normal(0, 0.3, HIDDEN).astype(np.float32)
    w2 = rng.normal(0, (9 * HIDDEN) ** -0.5, (channels, HIDDEN, 3, 3)).astype(np.float32)

    def build(w2: np.ndarray, b2: np.ndarray):
        out = "mask" if ends_in_sigmoid else "logits"
        nodes = [
            helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c1"], ["r1"]),
            helper.make_node("AveragePool", ["r1"], ["p1"], kernel_shape=[POOL, POOL], strides=[POOL, POOL]),
            helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
            helper.make_node("Resize", ["c2", "", "scales"], ["logits"], mode="linear"),
            *([helper.make_node("Sigmoid", ["logits"], ["mask"])] if ends_in_sigmoid else []),
            helper.make_node("Neg", [out], ["side_output"]),
        ]
        weights = {"w1": w1, "b1": b1, "w2": w2, "b2": b2, "scales": np.array([1, 1, POOL, POOL], np.float32)}
        f = TensorProto.FLOAT
        graph = helper.make_graph(
            nodes, name, [helper.make_tensor_value_info("input", f, [1, 3, "height", "width"])],
            [helper.make_tensor_value_info(n, f, [1, channels, "height", "width"]) for n in (out, "side_output")],
            [numpy_helper.from_array(v, k) for k, v in weights.items()])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model

    # Scale the last convolution so that, on a reference photo, each channel's logits have median 0 and spread 4:
    # the mask then splits an image into foreground and background with soft edges, like a real one. These
    # constants only shape the graph; the comparisons below do not depend on them.
    side = info.input_size
    ref = np.asarray(photo("astronaut", (side, side)), np.float32) / 255
    x = ((ref - info.mean) / info.std).transpose(2, 0, 1)[None].astype(np.float32)
    raw = ort_session(build(w2, np.zeros(channels, np.float32)).SerializeToString()).run(None, {"input": x})[0]
    if ends_in_sigmoid:
        raw = np.log(raw / (1 - raw))
    gain = 4.0 / raw.std(axis=(0, 2, 3))
    return build(w2 * gain[:, None, None, None].astype(np.float32),
                 (-np.median(raw, axis=(0, 2, 3)) * gain).astype(np.float32)).SerializeToString()


def ort_session(model: bytes):
    import onnxruntime as ort

    return ort.InferenceSession(model, providers=["CPUExecutionProvider"])


def resized_like_rembg(size: tuple[int, int], side: int) -> bool:
    """True where our mask resize is rembg's own LANCZOS: the model's size, or smaller than it on one side."""
    return size == (side, side) or min(size) < side


# Where the resizes are rembg's own: how many grey levels apart, on what share of the pixels, float rounding may put
# the masks. On "cpu" and "torch" PIL itself resizes, and only the float32 normalisation (and torch's own float
# sums in the model) differ from rembg's, in the last bit; the device pipeline ("torch-device") resizes with
# LANCZOS as float matrix products, rounded to 8 bits after each pass as PIL does but not with PIL's fixed-point
# sums, so each of its two passes can be a level off.
ROUNDING = {"cpu": (1, 1e-3), "torch": (1, 1e-3), "torch-device": (2, 1e-2)}


def mask_departures(mine: np.ndarray, theirs: np.ndarray, exact: bool, provider: str) -> list[str]:
    """How ``mine`` departs from rembg's mask ``theirs`` beyond our fidelity bounds (empty: faithful)."""
    diff = np.abs(mine - theirs)
    same_side = ((mine > 127) == (theirs > 127)).mean()
    found = []
    levels, share = ROUNDING[provider]
    if exact and (diff.max() > levels or (diff > 0).mean() > share):
        found.append(f"not equal: max diff {diff.max()}, {(diff > 0).mean():.4%} of pixels differ")
    if not exact and (diff.mean() > 0.5 or same_side < 0.999):
        found.append(f"mean diff {diff.mean():.3f} > 0.5 or only {same_side:.3%} on the same side of 127")
    return found
