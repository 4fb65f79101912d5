"""References for the models rembg 2.0.69 does not have (issue 25), for tests/test_newer_models.py.

- rembg 2.0.86's own session classes (u2net_custom, dis_custom, ben_custom, birefnet-general-fp16) run in a small
  separate environment, because rembg >= 2.0.70 needs numpy >= 2.3 and this venv has InvokeAI's numpy 1.26. uv
  builds it once (``rembg[cpu,fp16]==2.0.86``) under ~/.cache/remove-background, outside the clone; ``rembg_masks``
  runs a session there in a subprocess on the same ONNX files and images and returns its masks.
- The authors' own inference steps, read from their code and written again here (nothing copied): BiRefNet's
  (README and tutorials/BiRefNet_inference.ipynb: torchvision Resize to the model's side on the PIL image, i.e. PIL
  bilinear; ToTensor; ImageNet Normalize; sigmoid of the last output; ToPILImage, i.e. x*255 truncated to uint8; PIL
  ``resize(image.size)``, i.e. bicubic) and BEN2's for its ONNX file (onnx_run.py as rembg's first ben_custom
  carried it, 2025-06: Resize to 1024² (PIL bilinear), ToTensor without mean or std; bilinear interpolation of the
  output to the image's size, min-max stretch, x*255 truncated to uint8).
- ``onnxconverter_common`` for this venv: installed with ``--target`` beside it, when the venv lacks it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CACHE = Path(os.environ.get("REMOVE_BACKGROUND_TEST_CACHE", Path.home() / ".cache" / "remove-background"))
REMBG_ENV = CACHE / "rembg-2.0.86"
CONVERTER = CACHE / "onnxconverter-common-1.16.0"

_RUN = """
import json, sys
from PIL import Image
from rembg import new_session
spec = json.loads(sys.argv[1])
kwargs = {"providers": ["CPUExecutionProvider"]}
if spec["model_path"]:
    kwargs["model_path"] = spec["model_path"]
session = new_session(spec["session"], **kwargs)
for source, target in spec["images"]:
    session.predict(Image.open(source))[0].save(target)
"""


def _uv() -> str:
    uv = Path(sys.executable).with_name("uv")
    return str(uv) if uv.exists() else "uv"


def _install(args: list) -> None:
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull}
    done = subprocess.run([_uv(), *args], env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        pytest.skip(f"could not build a reference environment ({' '.join(args[:3])}...): {done.stderr[-300:]}")


def rembg_python() -> Path:
    """The Python of the rembg 2.0.86 environment, built on first use."""
    python = REMBG_ENV / "bin" / "python"
    ready = REMBG_ENV / ".ready-fp16"
    if not ready.exists():
        if not python.exists():
            _install(["venv", "-q", "-p", sys.executable, str(REMBG_ENV)])
        _install(["pip", "install", "-q", "-p", str(python), "rembg[cpu,fp16]==2.0.86"])
        ready.touch()
    return python


def rembg_masks(session: str, home: Path, images: list, model_path: Path = None) -> list:
    """rembg 2.0.86's masks (uint8 arrays) for ``images`` from its session ``session``, its files under ``home``
    (U2NET_HOME; checksums off, so pooch uses the file present and downloads nothing)."""
    with tempfile.TemporaryDirectory() as work:
        pairs = []
        for i, image in enumerate(images):
            source, target = Path(work) / f"in{i}.png", Path(work) / f"out{i}.png"
            image.save(source)
            pairs.append((str(source), str(target)))
        spec = {"session": session, "model_path": str(model_path) if model_path else None, "images": pairs}
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XDG_DATA_HOME", "REMBG_HOME")}
        env.update(U2NET_HOME=str(home), MODEL_CHECKSUM_DISABLED="1", OMP_NUM_THREADS="2")
        done = subprocess.run([str(rembg_python()), "-c", _RUN, json.dumps(spec)], env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        return [np.asarray(Image.open(t), dtype=np.int16) for _, t in pairs]


def converter_on_path() -> None:
    """Make ``onnxconverter_common`` importable here (it is a pure-Python package)."""
    try:
        import onnxconverter_common  # noqa: F401
        return
    except ImportError:
        pass
    if not (CONVERTER / "onnxconverter_common").is_dir():
        _install(["pip", "install", "-q", "-p", sys.executable, "--target", str(CONVERTER), "--no-deps",
                  "onnxconverter-common==1.16.0"])
    sys.path.append(str(CONVERTER))


def birefnet_official(session, image: Image.Image, side: int, stretch: bool = True) -> np.ndarray:
    """BiRefNet's own inference steps on an ONNX session (see the module docstring). ``stretch``: with the one step
    of rembg's BiRefNet recipe the authors do not take, the min-max stretch of the sigmoid at the model's size, which
    our BiRefNet family keeps for every BiRefNet (rembg's eight and the authors' newer ones alike)."""
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    small = np.asarray(image.convert("RGB").resize((side, side), Image.Resampling.BILINEAR), np.float32) / 255
    x = ((small - mean) / std).transpose(2, 0, 1)[None].astype(np.float32)
    logits = np.asarray(session.run(None, {session.get_inputs()[0].name: x})[0], np.float32)[0, 0]
    pred = 1.0 / (1.0 + np.exp(-logits))
    if stretch:
        pred = (pred - pred.min()) / (pred.max() - pred.min())
    return np.asarray(Image.fromarray((pred * 255).astype(np.uint8)).resize(image.size), dtype=np.int16)


def ben2_official(session, image: Image.Image, side: int = 1024) -> np.ndarray:
    """BEN2's inference steps for its ONNX file (see the module docstring)."""
    import torch

    small = np.asarray(image.convert("RGB").resize((side, side), Image.Resampling.BILINEAR), np.float32) / 255
    out = session.run(None, {session.get_inputs()[0].name: small.transpose(2, 0, 1)[None].copy()})[0]
    big = torch.nn.functional.interpolate(torch.from_numpy(np.asarray(out, np.float32)),
                                          size=(image.height, image.width), mode="bilinear")[0, 0]
    big = (big - big.min()) / (big.max() - big.min())
    return (big * 255).numpy().astype(np.uint8).astype(np.int16)


# The catalog's newer models that rembg has no session for, and their authors' own steps (re-implemented above):
# tests/test_newer_models.py compares each with ours, tests/test_model_families.py checks none is left out.
OFFICIAL = {"birefnet-hr": birefnet_official, "birefnet-hr-matting": birefnet_official,
            "birefnet-matting": birefnet_official, "ben2-base": ben2_official}
