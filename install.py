#!/usr/bin/env python3
"""Install remove-background into the InvokeAI you run this with, changing nothing that is already installed.

Run it with InvokeAI's own Python: in the launcher's Dev Console (or with InvokeAI's venv activated):

    python install.py [--root INVOKEAI_ROOT] [--extra ray] [--no-torch] [--dry-run]

It works with pip, or with uv where the environment has no pip (the launcher's ``uv venv``; its Dev Console puts
uv on PATH). It plans the whole install first, with every installed package pinned to the version it has, checks
that no new package would write over another's files (opencv-python-headless over InvokeAI's
opencv-contrib-python), and only then installs; if any of that fails, it says which package, which versions and
why, and changes nothing. Afterwards every package that was there has its version and files, and ``pip check`` /
``uv pip check`` is clean.

It adds the ``torch`` extra (onnx2torch, pure Python: it uses the torch, torchvision and onnx InvokeAI already has),
so the node can run the models on InvokeAI's own GPU; ``--no-torch`` leaves it out.

- From a clone anywhere: installs the package and writes the node-pack shim
  ``<root>/nodes/remove_background_node/`` that loads it.
- From the clone InvokeAI's Custom Node Manager made in ``<root>/nodes/``: installs only the dependencies (that
  clone is the node pack).

Upgrade: ``git pull`` and run it again. Uninstall: ``python install.py --uninstall`` removes the package, the shim
and what the install added (recorded in ``<environment>/remove-background-install.json``), and nothing else.
Standard library only.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent
NAME = "remove-background"
SHIM = "remove_background_node"  # must differ from the package name, or the shim would import itself


def _load(module: str):
    """A stdlib-only module of the package (``folder/name``), loaded by path: the package is not installed yet."""
    spec = importlib.util.spec_from_file_location(f"_rb_{module.replace('/', '_')}",
                                                  REPO / "remove_background" / f"{module}.py")
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = loaded  # dataclasses look their module up while the class is created
    spec.loader.exec_module(loaded)
    return loaded


invokeai_config = _load("invokeai_adapter/config")
config_folder = invokeai_config.config_folder
safe = _load("install/safe_install")
support = _load("invokeai_adapter/releases")

SHIM_INIT = '''"""Node-pack shim written by remove-background's install.py: loads the installed package.

If InvokeAI's environment was rebuilt (the launcher does that on updates) and the package is gone, the node is
loaded from the clone instead, and its first run names the command that installs what is missing.
"""

import os
import sys

SOURCE = {source!r}
os.environ.setdefault("REMOVE_BACKGROUND_SOURCE", SOURCE)
os.environ.setdefault("REMOVE_BACKGROUND_INVOKEAI_ROOT", {root!r})
try:
    import remove_background.invocation  # noqa: F401  registers the Remove Background node
except ImportError as e:
    if not os.path.isdir(os.path.join(SOURCE, "remove_background")):
        raise ImportError(f"remove-background is not installed in this Python environment and its clone {{SOURCE}} is "
                          f"gone ({{e}}); clone it again and run its install.py with {{sys.executable}}") from e
    sys.path.append(SOURCE)
    for name in [m for m in sys.modules if m == "remove_background" or m.startswith("remove_background.")]:
        del sys.modules[name]
    import remove_background.invocation  # noqa: F401,E402
'''


def build_wheel(tool, out: Path) -> Path:
    """Our package as a wheel, built once (so planning and installing see the very same files) from a copy of its
    sources: an in-tree build would leave build/ and *.egg-info in the clone, and a stale build/ can ship old files."""
    source = out / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "remove_background", source / "remove_background",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    if tool.name == "uv":  # prefix: `uv pip` or `python -m uv pip`
        command = [*tool.prefix[:-1], "build", "--quiet", "--wheel", "--python", tool.python, "--out-dir", str(out),
                   str(source)]
    else:
        command = [*tool.prefix, "wheel", "--quiet", "--disable-pip-version-check", "--no-deps", "-w", str(out),
                   str(source)]
    r = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(out.glob("remove_background-*.whl"))
    if r.returncode != 0 or not wheels:
        raise safe.InstallError(f"Could not build the package from {REPO}:\n{(r.stdout + r.stderr)[-2000:]}")
    return wheels[-1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", help="InvokeAI root (default: $INVOKEAI_ROOT, the root this clone sits in, or ~/invokeai)")
    p.add_argument("--extra", action="append", default=[], help="an optional extra to install too, e.g. ray")
    p.add_argument("--no-torch", action="store_true",
                   help="leave out onnx2torch, the converter of the 'torch' execution provider (added by default: it "
                        "runs the models on InvokeAI's own GPU through the torch InvokeAI already has)")
    p.add_argument("--editable", action="store_true", help="install in editable mode (for development)")
    p.add_argument("--uninstall", action="store_true", help="remove the package, the shim and what the install added")
    p.add_argument("--dry-run", action="store_true", help="plan and check only; change nothing")
    p.add_argument("--tool", choices=("pip", "uv"), help="force pip or uv (default: pip if this Python has it, else uv)")
    a = p.parse_args(argv)

    root = invokeai_config.find_root(a.root, clone=REPO, assume_home="always")
    nodes = config_folder(root, "custom_nodes_dir", "nodes")
    pack_is_node_folder = REPO.parent.resolve() == nodes.resolve()
    shim = nodes / SHIM
    try:
        tool = safe.find_tool(a.tool)
        if a.uninstall:
            removed = safe.uninstall(NAME, tool)
            if shim.exists():
                shutil.rmtree(shim)
                print(f"removed {shim}")
            print(f"Uninstalled: {', '.join(removed) or 'nothing was installed'}." + (
                f" This clone is a node pack in {nodes}: remove it with InvokeAI's Custom Node Manager."
                if pack_is_node_folder else ""))
            return 0
        if not root.is_dir():
            print(f"InvokeAI root {root} does not exist: pass --root or set INVOKEAI_ROOT", file=sys.stderr)
            return 2
        if importlib.util.find_spec("invokeai") is None:
            print(f"InvokeAI is not installed in this Python ({sys.executable}). Run this from InvokeAI's environment "
                  f"(launcher > Dev Console, or activate its venv).", file=sys.stderr)
            return 2
        try:
            support.require_supported_invokeai()
        except support.UnsupportedInvokeAIError as e:
            print(f"{e} Nothing was changed.", file=sys.stderr)
            return 2
        extras_wanted = list(dict.fromkeys(a.extra + ([] if a.no_torch else ["torch"])))
        extras = f"[{','.join(extras_wanted)}]" if extras_wanted else ""
        with tempfile.TemporaryDirectory(prefix="remove-background-wheel-") as tmp:
            if a.editable:
                own_args = ["-e", f"{REPO}{extras}"]
            else:
                own_args = [f"{NAME}{extras} @ {build_wheel(tool, Path(tmp)).as_uri()}"]
            outcome = safe.install(NAME, own_args, tool, deps_only=pack_is_node_folder, dry_run=a.dry_run)
    except safe.InstallError as e:
        print(f"\n{e}", file=sys.stderr)
        return 1
    if a.dry_run:
        print("Dry run: nothing was changed.")
        return 0
    print(f"{tool.name} check: clean. Added: {', '.join(f'{n} {v}' for n, v in outcome.added.items()) or 'nothing'}.")
    if pack_is_node_folder:
        print(f"\nDependencies installed for the node pack {REPO}. The node works now (no restart needed).")
        return 0
    if (nodes / "remove_background").exists():
        print(f"note: {nodes / 'remove_background'} also holds this node pack (an older copy?); remove it, so the "
              f"node is not registered twice.")
    shim.mkdir(parents=True, exist_ok=True)
    (shim / "__init__.py").write_text(SHIM_INIT.format(source=str(REPO), root=str(root)))
    print(f"\nInstalled. Node pack shim: {shim}\nModels will live in {config_folder(root, 'models_dir', 'models')}"
          f"/rembg. Restart InvokeAI; check the set-up any time with: remove-background doctor --root \"{root}\"")
    return 0


if __name__ == "__main__":
    sys.exit(main())
