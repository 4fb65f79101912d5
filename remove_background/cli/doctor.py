"""``remove-background doctor``: what is installed, what loads, where the models are, and how to fix it.

Every finding is one of three kinds: information; a note that says why it is harmless; or a fix (what is wrong and
the command that fixes it). The verdict follows the fixes alone: "all good" only when there is none, otherwise the
fixes, most urgent first, and which one to do first.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Optional, Sequence, TextIO

from .. import catalog, families, model_files
from ..backends.routes import (CPU, GPU_DEVICE_KINDS, ORT_NAMES, installed_ort_distributions, plan_providers,
                               torch_gpu_device, torch_route_installed)
from ..install import dependencies
from ..install.safe_install import package_command, reinstall_command, tool_or_none
from ..invokeai_adapter.config import HOME_ROOT, config_folder, config_value, find_root

PROG = "remove-background doctor"
OPENCV_DISTRIBUTIONS = ("opencv-contrib-python", "opencv-python", "opencv-contrib-python-headless",
                        "opencv-python-headless")
NOT_ACCELERATED = (CPU, "AzureExecutionProvider")  # providers every onnxruntime build offers

# how urgent a fix is; the verdict lists fixes in this order
BREAKS_INVOKEAI, BREAKS_REMOVAL, UNCHECKED, SLOWER = range(4)


@dataclass
class Findings:
    """What doctor prints as it goes, and the fixes it collects for the verdict."""

    out: TextIO = sys.stdout
    fixes: list = field(default_factory=list)  # (urgency, text)

    def say(self, line: str = "") -> None:
        print(line, file=self.out)

    def fix(self, urgency: int, text: str) -> None:
        self.fixes.append((urgency, text))

    def note(self, text: str) -> None:
        """A warning-looking fact that needs no action: says so, and why."""
        self.say(f"  note (harmless): {text}")

    def verdict(self) -> int:
        """The fixes, most urgent first, and which to do first; "all good" only when there is none. 0 or 1."""
        self.say()
        if not self.fixes:
            self.say("all good")
            return 0
        self.say("to fix:")
        ordered = [text for _, text in sorted(self.fixes, key=lambda f: f[0])]  # stable: same urgency, found first
        for i, text in enumerate(ordered, 1):
            self.say(f"  {i}. {text}")
        many = f"{len(ordered)} things to fix; fix 1 first" if len(ordered) > 1 else "1 thing to fix"
        self.say(f"not all good: {many}, then run 'remove-background doctor' again")
        return 1


def _version(dist: str) -> Optional[str]:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def invokeai_root(f: Findings, explicit: Optional[Path], invokeai: Optional[str]) -> Optional[Path]:
    """The root doctor checks (``--root``, ``$INVOKEAI_ROOT``, the one this clone sits in; ``~/invokeai`` only
    where InvokeAI is installed and that folder exists), with its line; None when unknown or missing."""
    root = find_root(explicit, clone=dependencies.source_checkout(), assume_home="if_present" if invokeai else "never")
    where = f", root {root}" if root else ""
    if root is not None and not root.is_dir():
        f.fix(UNCHECKED, f"the InvokeAI root {root} does not exist, so its model folder and device were not "
                         f"checked: pass --root with the folder that holds invokeai.yaml (or set INVOKEAI_ROOT)")
        where, root = f", root {root} (DOES NOT EXIST)", None
    elif root is None and invokeai:
        where = f", root not found at {HOME_ROOT}: pass --root to check the node's model folder and device too"
    f.say(f"InvokeAI: {invokeai or 'not installed in this environment'}{where}")
    return root


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


def opencv_report(f: Findings, in_invokeai: bool) -> None:
    """Which OpenCV wheels are installed; when several share ``cv2``, whether InvokeAI's contrib build still owns it."""
    dists = [f"{d}=={_version(d)}" for d in OPENCV_DISTRIBUTIONS if _version(d)]
    f.say(f"OpenCV packages: {', '.join(dists) or 'none'}")
    if len(dists) < 2:
        return
    try:
        import cv2

        contrib = hasattr(getattr(cv2, "ximgproc", None), "thinning")  # the stubs folder may outlive the module
    except ImportError as e:
        f.fix(BREAKS_REMOVAL, f"several OpenCV packages share one 'cv2' module and it does not import ({e}): "
                              f"{reinstall_command(dists[0])} puts one build's files back")
        return
    contrib_dist = next((d for d in dists if d.startswith("opencv-contrib-python==")), None)
    if in_invokeai and contrib_dist and not contrib:
        extra = [d.split("==")[0] for d in dists if d != contrib_dist]
        f.fix(BREAKS_INVOKEAI, f"{', '.join(extra)} overwrote InvokeAI's {contrib_dist} (cv2.ximgproc is gone; "
                               f"ControlNet preprocessing fails): {reinstall_command(contrib_dist)} puts its files back")
        return
    owner = (f"cv2 is {contrib_dist.split('==')[0]}'s build (cv2.ximgproc works)" if contrib_dist and contrib
             else "cv2 imports (the package installed last provides it)")
    f.note(f"several OpenCV packages share one 'cv2' module; {owner}. Uninstalling any one of them would delete "
           f"cv2 for all, so leave them installed")


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


def onnxruntime_report(f: Findings, available: Optional[Sequence[str]]) -> Sequence[str]:
    """The onnxruntime packages, and which of the providers they offer really load. Returns the providers offered."""
    dists = installed_ort_distributions()
    f.say(f"onnxruntime packages: {', '.join(dists) or 'none'}")
    if available is None:
        import onnxruntime as ort

        available = list(ort.get_available_providers())
    loadable = loadable_providers(available)
    f.say("execution providers (available -> loads):")
    for name in available:
        state = {True: "loads", False: "DOES NOT LOAD"}.get(loadable.get(name), "not probed (no onnx package)")
        choice = next((k for k, v in ORT_NAMES.items() if v == name), "-")
        f.say(f"  {name:32} {choice:10} {state}")
        if loadable.get(name) is False and name != CPU:
            f.fix(SLOWER, f"{name} is offered but cannot load its libraries (CUDA 12 / cuDNN 9 for CUDA), so the "
                          f"models run elsewhere: check the GPU driver and libraries, or reinstall onnxruntime-gpu")
    accelerated = [d for d in dists if not d.startswith("onnxruntime==")]
    if len(dists) > 1 and accelerated:
        offered = [n for n in available if n not in NOT_ACCELERATED]
        if offered:
            f.note(f"several onnxruntime packages share one 'onnxruntime' module; {accelerated[0].split('==')[0]}'s "
                   f"files are the ones in place ({', '.join(offered)} offered). Uninstalling any one of them would "
                   f"delete the module for all, so leave them installed")
        else:
            f.fix(SLOWER, f"several onnxruntime packages share one 'onnxruntime' module and the CPU build's files won "
                          f"(no GPU provider offered): {reinstall_command(accelerated[0])} puts the GPU build's back")
    return available


def _cell(folder: Path, path: Optional[Path], state: str) -> str:
    size = f"{path.stat().st_size / 1e6:6.1f} MB" if path else ""
    return f"{state}{'*' if path is not None and path.parent != folder else ''} {size}"


def models_report(f: Findings, models_dir: Optional[Path], root: Optional[Path]) -> None:
    """Every catalog model in each folder that the rule (model_files) gives here: the command line's, and the
    node's when an InvokeAI root is known; how to fetch one into each."""
    folders = {"command line": model_files.models_dir_or_default(models_dir)}
    fetch = {"command line": "remove-background download MODEL" + (f' --models-dir "{models_dir}"' if models_dir
                                                                     else "")}
    if root is not None:
        folders["node"] = model_files.invokeai_models_dir(config_folder(root, "models_dir", "models"))
        fetch["node"] = f'remove-background download MODEL --models-dir "{folders["node"]}"'
    f.say("model folders (a missing file downloads on first use):")
    f.say(f"  command line (remove-background, download, batch, Python API): {folders['command line']}")
    if root is not None:
        f.say(f"  node (InvokeAI at {root}): {folders['node']}")
    f.say(f"  and rembg's own downloads, used where they lie, never written: {model_files.REMBG_FOLDERS_TEXT}")
    width = max(len(name) for name in catalog.every_model())
    file_width = max(len(spec.filename) for info in catalog.every_model().values() for spec in info.files)
    f.say((f"  {'model':{width}} {'file':{file_width}} " + "".join(f"{name:22}" for name in folders)).rstrip())
    for info in catalog.every_model().values():  # the models, then the refiners (ViTMatte)
        columns = [model_files.model_status(info, folder) for folder in folders.values()]
        for row, spec in enumerate(info.files):
            cells = "".join(f"{_cell(folder, *status[row][1:]):22}" for folder, status in zip(folders.values(), columns))
            note = "" if info.commercial_use else "non-commercial licence"
            f.say(f"  {info.name:{width}} {spec.filename:{file_width}} {cells}{note}".rstrip())
    f.say("  present = found, not yet checksum-verified (verified on first use); * = in rembg's own folder")
    for name, command in fetch.items():
        f.say(f"  fetch one now for the {name}: {command}")


def run(root: Optional[Path] = None, models_dir: Optional[Path] = None, available: Optional[Sequence[str]] = None,
        out=sys.stdout) -> int:
    """Print the report; return 0 when nothing needs fixing, 1 otherwise."""
    from .. import __version__

    f = Findings(out)
    f.say(f"remove-background {__version__} (Python {sys.version.split()[0]}, {sys.executable})")
    invokeai = _version("invokeai")
    root = invokeai_root(f, root, invokeai)
    tool = tool_or_none()
    f.say(f"installs with: {tool.shown('install', '...') if tool else 'neither pip nor uv found (use the launcher Dev Console)'}")
    numpy_version = _version("numpy") or "missing"
    f.say(f"numpy {numpy_version}, pymatting {_version('pymatting') or 'missing'}")
    if invokeai and numpy_version.split(".")[0] not in ("1", "missing"):
        f.fix(BREAKS_INVOKEAI, f"numpy {numpy_version} breaks InvokeAI {invokeai} (it needs numpy<2): "
                               f"{package_command('numpy<2')}")
    opencv_report(f, bool(invokeai))
    absent = dependencies.missing()
    if absent:
        f.fix(BREAKS_REMOVAL, f"missing {', '.join(absent)}: {dependencies.install_command(absent)}")
    if "onnxruntime" not in absent:
        f.say()
        available = onnxruntime_report(f, available)
        for text in routes_report(f.say, root, available):
            f.fix(SLOWER, text)
    f.say()
    models_report(f, models_dir, root)
    return f.verdict()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description="Report what is installed, what loads, where the model files are, and what to fix "
                               "first. Exit code 0: all good; 1: something to fix (listed last); 2: a bad option.")
    p.add_argument("--root", type=Path, help="InvokeAI root (default: $INVOKEAI_ROOT, the root this clone sits in, "
                                             f"or {HOME_ROOT} where InvokeAI is installed)")
    p.add_argument("--models-dir", type=Path, help="the folder you pass to the other commands as --models-dir "
                                                   f"(default: {model_files.DEFAULT_FOLDER_TEXT})")
    return p


def doctor_main(argv: list) -> int:
    """``remove-background doctor [--root ROOT] [--models-dir DIR]``."""
    args = parser().parse_args(argv)
    return run(args.root, args.models_dir)
