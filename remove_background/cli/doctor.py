"""``remove-background doctor``: what is installed, what loads, where the models are, and how to fix it."""

from __future__ import annotations

import os
import sys
from importlib import metadata
from pathlib import Path
from typing import Optional, Sequence

from .. import catalog, families

from ..install import dependencies

from .. import model_files
from ..invokeai_adapter.config import config_folder, config_value
from ..backends.routes import (GPU_DEVICE_KINDS, ORT_NAMES, installed_ort_distributions, plan_providers, torch_gpu_device,
                        torch_route_installed)
from ..install.safe_install import package_command, reinstall_command, tool_or_none

OPENCV_DISTRIBUTIONS = ("opencv-contrib-python", "opencv-python", "opencv-contrib-python-headless",
                        "opencv-python-headless")


def _version(dist: str) -> Optional[str]:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def invokeai_root(explicit: Optional[Path] = None) -> Optional[Path]:
    if explicit:
        return explicit.expanduser()
    if os.environ.get("INVOKEAI_ROOT"):
        return Path(os.environ["INVOKEAI_ROOT"]).expanduser()
    if _version("invokeai"):
        return Path("~/invokeai").expanduser()
    return None


def _tiny_model_bytes() -> Optional[bytes]:
    """A one-operator ONNX model (Identity), to see which providers really load."""
    try:
        from onnx import TensorProto, helper
    except ImportError:
        return None
    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph([node], "probe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def loadable_providers(available: Sequence[str]) -> dict[str, bool]:
    """Create a tiny session on each available provider and report which one actually loaded."""
    import onnxruntime as ort

    probe = _tiny_model_bytes()
    if probe is None:
        return {}
    result = {}
    for name in available:
        try:
            opts = ort.SessionOptions()
            opts.log_severity_level = 4
            chain = [name] if name == "CPUExecutionProvider" else [name, "CPUExecutionProvider"]
            session = ort.InferenceSession(probe, sess_options=opts, providers=chain)
            result[name] = name in session.get_providers()
        except Exception:
            result[name] = False
    return result


def opencv_report(say, in_invokeai: bool) -> list[str]:
    """Which OpenCV wheels are installed, and whether InvokeAI's contrib build still owns ``cv2``."""
    dists = [f"{d}=={_version(d)}" for d in OPENCV_DISTRIBUTIONS if _version(d)]
    say(f"OpenCV packages: {', '.join(dists) or 'none'}")
    if len(dists) < 2:
        return []
    try:
        import cv2

        contrib = hasattr(getattr(cv2, "ximgproc", None), "thinning")  # the stubs folder may outlive the module
    except ImportError:
        contrib = False
    say("  several OpenCV packages share one 'cv2' module: the one installed last wins, and uninstalling either "
        "deletes it")
    contrib_dist = next((d for d in dists if d.startswith("opencv-contrib-python==")), None)
    if in_invokeai and contrib_dist and not contrib:
        extra = [d.split("==")[0] for d in dists if d != contrib_dist]
        return [f"{', '.join(extra)} overwrote InvokeAI's {contrib_dist} (cv2.ximgproc is gone; ControlNet "
                f"preprocessing fails): {reinstall_command(contrib_dist)} puts its files back"]
    return []


def invokeai_device(root: Optional[Path]) -> str:
    """The torch device InvokeAI picks here: its ``device`` setting, or for ``auto`` torch's own GPU, else cpu."""
    setting = config_value(root, "device", "auto") if root else "auto"
    if setting != "auto":
        return setting
    return torch_gpu_device() or "cpu"


def routes_report(say, root: Optional[Path], available: Sequence[str]) -> list[str]:
    """Where each model family runs with execution provider ``auto`` on this machine, and what would improve it."""
    device = invokeai_device(root)
    torch_route = torch_route_installed()
    say()
    say(f"InvokeAI's device here: {device}; torch route (onnx2torch): {'installed' if torch_route else 'not installed'}")
    say("where each model family runs with execution provider 'auto':")
    plan = plan_providers("auto", device, available, torch_route)  # the same route for every family
    for family in families.all_families():
        names = [m.name for m in families.members(family)]
        route = plan.description
        if plan.backend == "torch":
            note = f"; {family.torch_note}" if family.torch_note else ""
            route += f" (converted from its ONNX file on first use{note})"
        elif device == "cpu":
            route += " (on the CPU ONNX Runtime is faster than torch; 'torch' can still be chosen)"
        if plan.fallback is not None:
            route += f"; if that does not load or convert: {plan.fallback.description}"
        say(f"  {family.key:9} {', '.join(names)}")
        say(f"            -> {route}")
    if device.split(":")[0] in GPU_DEVICE_KINDS and plan.backend != "torch" and plan.accelerator is None:
        from ..install.dependencies import torch_route_command

        return [f"InvokeAI runs on {device} but the models run on the CPU: install onnx2torch so they run on "
                f"{device} with PyTorch: {torch_route_command()}"]
    return []


def run(root: Optional[Path] = None, models_dir: Optional[Path] = None, available: Optional[Sequence[str]] = None,
        out=sys.stdout) -> int:
    """Print the report; return 0 when nothing needs fixing, 1 otherwise."""
    fixes: list[str] = []

    def say(line: str = "") -> None:
        print(line, file=out)

    from .. import __version__

    say(f"remove-background {__version__} (Python {sys.version.split()[0]}, {sys.executable})")
    root = invokeai_root(root)
    invokeai = _version("invokeai")
    say(f"InvokeAI: {invokeai or 'not installed in this environment'}" + (f", root {root}" if root else ""))
    tool = tool_or_none()
    say(f"installs with: {tool.shown('install', '...') if tool else 'neither pip nor uv found (use the launcher Dev Console)'}")
    numpy_version = _version("numpy") or "missing"
    say(f"numpy {numpy_version}, pymatting {_version('pymatting') or 'missing'}")
    if invokeai and numpy_version.split(".")[0] not in ("1", "missing"):
        fixes.append(f"numpy {numpy_version} breaks InvokeAI {invokeai} (it needs numpy<2): {package_command('numpy<2')}")
    fixes += opencv_report(say, bool(invokeai))
    absent = dependencies.missing()
    if absent:
        fixes.append(f"missing {', '.join(absent)}: {dependencies.install_command(absent)}")

    say()
    dists = installed_ort_distributions()
    say(f"onnxruntime packages: {', '.join(dists) or 'none'}")
    if len(dists) > 1:
        gpu = next((d for d in dists if d.startswith("onnxruntime-gpu")), None)
        say("  several onnxruntime packages share one 'onnxruntime' module: the one installed last wins")
        if gpu:
            fixes.append(f"make sure the GPU build's files are the ones in place: {reinstall_command(gpu)}")
    if "onnxruntime" not in absent:
        if available is None:
            import onnxruntime as ort

            available = list(ort.get_available_providers())
        loadable = loadable_providers(available)
        say("execution providers (available -> loads):")
        for name in available:
            state = {True: "loads", False: "DOES NOT LOAD"}.get(loadable.get(name), "not probed (no onnx package)")
            choice = next((k for k, v in ORT_NAMES.items() if v == name), "-")
            say(f"  {name:32} {choice:10} {state}")
            if loadable.get(name) is False and name != "CPUExecutionProvider":
                fixes.append(f"{name} is offered but cannot load its libraries (CUDA 12 / cuDNN 9 for CUDA): "
                             f"check the GPU driver and libraries, or reinstall onnxruntime-gpu as above")

    if "onnxruntime" not in absent:
        fixes += routes_report(say, root, available)

    say()
    if models_dir is None:
        models_dir = config_folder(root, "models_dir", "models") / "rembg" if root else model_files.default_models_dir()
    say(f"model folder: {models_dir}")
    for info in catalog.MODELS.values():
        for spec, path, state in model_files.model_status(info, models_dir):
            size = f"{path.stat().st_size / 1e6:8.1f} MB" if path else " " * 11
            where = "" if path is None or path.parent == models_dir else f"  (at {path})"
            note = "" if info.commercial_use else "  non-commercial licence"
            say(f"  {info.name:22} {spec.filename:34} {state:8} {size}{where}{note}")
    say("  present = found, not yet checksum-verified (verified on first use); missing models download on first use,")
    say(f"  or fetch one now: remove-background download MODEL --models-dir \"{models_dir}\"")

    say()
    if fixes:
        say("to fix:")
        for f in fixes:
            say(f"  - {f}")
        return 1
    say("all good")
    return 0
