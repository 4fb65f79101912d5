"""ViTMatte graphs for the tests (issue 26), and rembg 2.0.86's own ViTMatte run on them.

rembg's four checkpoints (110-380 MB, GitHub releases) cannot be fetched here. What is known of how they were made
(rembg/matting.py and its pull request #846): hustvl's ViTMatte checkpoints in transformers' ``VitMatteForImageMatting``,
exported at a fixed 1024² (an export with dynamic height and width returns wrong alphas: VitDet builds its relative
positions from the input size), fed by name as ``pixel_values`` (1×4×1024×1024: RGB and trimap, 0-1), read as output
0 (``alphas``, 1×1×1024×1024). So ``exported`` builds the same architecture (``ARCHITECTURES``: the configurations of
hustvl/vitmatte-small-* and -base-*, 25.8 M and 96.7 M parameters) with random weights and exports it the same way,
with ``torch.onnx.export`` (TorchScript exporter, opset 17: our choice, not known of rembg's files). The weights are
re-initialised so that a signal passes (batch norms at 1 and 0, convolutions He-initialised: transformers' own init
draws batch-norm scales from N(0, 0.02) and gives an alpha of 0.5 everywhere) and the last convolution scaled so the
alpha splits a reference photo with soft edges (logits of median 0 and spread 4): an alpha that depends on the image
and the trimap, so a wrong input shows. Files are cached outside the clone, keyed by the recipe and the versions.

``pointwise`` is a graph with the same input and output whose alpha at a pixel is a known function of the input at
that pixel (``pointwise_alpha``): what proves the windows' blend exact.

``rembg_alphas`` runs rembg 2.0.86's ``vitmatte_alpha`` (and ``rembg_cutouts`` its whole ``remove``) in the small
environment tests/newer_references.py builds, on the same files, images and masks, in a subprocess.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from support.newer_references import CACHE, rembg_python

GRAPHS = CACHE / "vitmatte-graphs"
SIDE = 1024
RECIPE = 1  # bump when the way the graphs are made changes (part of the cache key)
VITDET = dict(num_channels=4, image_size=512, patch_size=16, out_features=["stage12"], window_size=14,
              window_block_indices=[0, 1, 3, 4, 6, 7, 9, 10], residual_block_indices=[2, 5, 8, 11],
              use_relative_position_embeddings=True)
ARCHITECTURES = {  # hustvl's configurations (config.json of vitmatte-small-* and vitmatte-base-*)
    "small": dict(hidden_size=384, num_attention_heads=6),
    "base": dict(hidden_size=768, num_attention_heads=12),
}


def reference_input() -> np.ndarray:
    """A 1×4×1024×1024 input: a photo, and a trimap with a sure foreground, a sure background and an unknown band."""
    from skimage import data

    image = np.asarray(Image.fromarray(data.astronaut()).resize((SIDE, SIDE)), np.float32) / 255
    tri = np.full((SIDE, SIDE), 0.5, np.float32)
    tri[300:700, 300:700], tri[:150] = 1.0, 0.0
    return np.concatenate([image.transpose(2, 0, 1), tri[None]])[None]


def build(architecture: str, seed: int):
    """``VitMatteForImageMatting`` of ``architecture`` with random weights that pass a signal (module docstring)."""
    import torch
    from transformers import VitDetConfig, VitMatteConfig, VitMatteForImageMatting

    sizes = ARCHITECTURES[architecture]
    config = VitMatteConfig(backbone_config=VitDetConfig(**VITDET, **sizes), hidden_size=sizes["hidden_size"],
                            convstream_hidden_sizes=[48, 96, 192], fusion_hidden_sizes=[256, 128, 64, 32])
    torch.manual_seed(seed)
    model = VitMatteForImageMatting(config).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            torch.nn.init.ones_(module.weight)
            torch.nn.init.zeros_(module.bias)
        elif isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
    last = model.decoder.matting_head.matting_convs[-1]
    seen = {}
    hook = last.register_forward_hook(lambda _m, _i, out: seen.setdefault("logits", out))
    with torch.no_grad():
        model(pixel_values=torch.from_numpy(reference_input()))
        hook.remove()
        logits = seen["logits"]
        gain = 4.0 / float(logits.std())
        last.weight *= gain
        last.bias.copy_((last.bias - logits.median()) * gain)
    return model


def _key(*parts) -> str:
    import torch
    import transformers

    text = json.dumps([RECIPE, VITDET, *parts, torch.__version__, transformers.__version__])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def exported(architecture: str = "small", seed: int = 0) -> Path:
    """The ONNX file of ``build(architecture, seed)``, exported as rembg's were (cached)."""
    import torch

    path = GRAPHS / f"vitmatte-{architecture}-{seed}-{_key(ARCHITECTURES[architecture], seed)}.onnx"
    if path.is_file():
        return path
    model = build(architecture, seed)

    class Alphas(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, pixel_values):
            return self.model(pixel_values=pixel_values).alphas

    GRAPHS.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=GRAPHS, suffix=".onnx.part")
    os.close(fd)
    try:
        with torch.no_grad():
            torch.onnx.export(Alphas().eval(), (torch.from_numpy(reference_input()),), tmp, input_names=["pixel_values"],
                              output_names=["alphas"], opset_version=17, dynamo=False)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


POINTWISE_WEIGHTS = np.array([1.5, -2.0, 1.0, 3.0], np.float32)  # R, G, B, trimap
POINTWISE_BIAS = np.float32(-1.2)


def pointwise(folder: Path, name: str) -> Path:
    """A graph with ViTMatte's input and output whose alpha is ``pointwise_alpha`` of each pixel's input."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = {"w": POINTWISE_WEIGHTS.reshape(1, 4, 1, 1), "b": np.array([POINTWISE_BIAS], np.float32)}
    graph = helper.make_graph(
        [helper.make_node("Conv", ["pixel_values", "w", "b"], ["logits"]),
         helper.make_node("Sigmoid", ["logits"], ["alphas"])],
        "pointwise", [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, [1, 4, SIDE, SIDE])],
        [helper.make_tensor_value_info("alphas", TensorProto.FLOAT, [1, 1, SIDE, SIDE])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def pointwise_alpha(rgb: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """The pointwise graph's alpha for an H×W×3 image and H×W trimap (uint8), as 8 bits truncated (float64 maths)."""
    x = np.concatenate([rgb, tri[..., None]], axis=-1).astype(np.float64) / 255.0
    alpha = 1.0 / (1.0 + np.exp(-(x @ POINTWISE_WEIGHTS.astype(np.float64) + float(POINTWISE_BIAS))))
    return (alpha * 255).astype(np.uint8)


_ALPHAS = """
import json, sys
from PIL import Image
from rembg.matting import vitmatte_alpha
spec = json.loads(sys.argv[1])
for image, mask, target, settings in spec["cases"]:
    vitmatte_alpha(Image.open(image), Image.open(mask), variant=spec["variant"], **settings).save(target)
"""

_REMOVES = """
import json, sys
from PIL import Image
from rembg import new_session, remove
spec = json.loads(sys.argv[1])
session = new_session(spec["session"], providers=["CPUExecutionProvider"])
for image, target, settings in spec["cases"]:
    remove(Image.open(image), session=session, vitmatte=True, vitmatte_model=spec["variant"], **settings).save(target)
"""


def _run(script: str, home: Path, spec: dict) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XDG_DATA_HOME", "REMBG_HOME")}
    env.update(U2NET_HOME=str(home), MODEL_CHECKSUM_DISABLED="1", OMP_NUM_THREADS="2")
    done = subprocess.run([str(rembg_python()), "-c", script, json.dumps(spec)], env=env, capture_output=True,
                          text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]


def rembg_alphas(home: Path, variant: str, cases: list) -> list[np.ndarray]:
    """rembg 2.0.86's ``vitmatte_alpha`` for each (image, mask, {foreground_threshold, background_threshold,
    erode_size}), its checkpoint ``variant`` read from ``home`` (U2NET_HOME, as vitmatte-<variant>.onnx)."""
    with tempfile.TemporaryDirectory() as work:
        rows = []
        for i, (image, mask, settings) in enumerate(cases):
            paths = [str(Path(work) / f"{kind}{i}.png") for kind in ("image", "mask", "alpha")]
            image.save(paths[0])
            Image.fromarray(mask).save(paths[1])
            rows.append([*paths, settings])
        _run(_ALPHAS, home, {"variant": variant, "cases": rows})
        return [np.asarray(Image.open(row[2]), dtype=np.int16) for row in rows]


def rembg_cutouts(home: Path, session: str, variant: str, cases: list) -> list[np.ndarray]:
    """The RGBA cut-outs of rembg 2.0.86's ``remove(image, session=new_session(session), vitmatte=True, ...)`` for
    each (image, {other remove() keywords}), the files read from ``home``."""
    with tempfile.TemporaryDirectory() as work:
        rows = []
        for i, (image, settings) in enumerate(cases):
            paths = [str(Path(work) / f"{kind}{i}.png") for kind in ("image", "cutout")]
            image.save(paths[0])
            rows.append([*paths, settings])
        _run(_REMOVES, home, {"session": session, "variant": variant, "cases": rows})
        return [np.asarray(Image.open(row[1]).convert("RGBA")) for row in rows]


ARCHITECTURE_OF = {  # every refiner row, and the architecture its graph here has (the checkpoints differ in weights)
    "vitmatte-small-distinctions-646": "small", "vitmatte-small-composition-1k": "small",
    "vitmatte-base-distinctions-646": "base", "vitmatte-base-composition-1k": "base",
}
COMPARED = set(ARCHITECTURE_OF)  # compared in test_vitmatte.py; test_model_families.py checks there is no other refiner
