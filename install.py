#!/usr/bin/env python3
"""Install remove-background into the InvokeAI you run this with: one command.

Run it with InvokeAI's own Python (the launcher's Dev Console, or an activated venv):

    python install.py [--root INVOKEAI_ROOT] [--editable]

It pip-installs this package with dependencies that keep InvokeAI's pins (rembg<2.0.70, so numpy stays <2),
checks `pip check`, and writes the node-pack shim <root>/nodes/remove_background_node/ that loads the
installed package. Upgrading later is `git pull && python install.py` again; uninstalling is
`python install.py --uninstall`. Standard library only.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent
SHIM = "remove_background_node"  # must differ from the package name, or the shim would import itself
SHIM_INIT = '''"""Node-pack shim written by remove-background's install.py: loads the pip-installed package."""

try:
    import remove_background.invocation  # noqa: F401  registers the Remove Background node
except ImportError as e:  # the package was uninstalled from this environment
    raise ImportError(f"remove-background is not installed in this Python ({e}); run its install.py again") from e
'''


def _load_config_reader():
    """``remove_background/invokeai_config.py``, loaded by path: the package is not installed yet."""
    spec = importlib.util.spec_from_file_location("_rb_invokeai_config", REPO / "remove_background" / "invokeai_config.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.config_folder


config_path = _load_config_reader()


def find_root(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit).expanduser().resolve()
    if os.environ.get("INVOKEAI_ROOT"):
        return Path(os.environ["INVOKEAI_ROOT"]).expanduser().resolve()
    return (Path.home() / "invokeai").resolve()


def pip(*args: str) -> int:
    print(f"$ {Path(sys.executable).name} -m pip {' '.join(args)}", flush=True)
    return subprocess.call([sys.executable, "-m", "pip", *args])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", help="InvokeAI root (default: $INVOKEAI_ROOT, else ~/invokeai)")
    p.add_argument("--editable", action="store_true", help="install in editable mode (for development)")
    p.add_argument("--uninstall", action="store_true", help="remove the package and the node-pack shim")
    a = p.parse_args(argv)

    root = find_root(a.root)
    nodes = config_path(root, "custom_nodes_dir", "nodes")
    shim = nodes / SHIM
    if a.uninstall:
        if shim.exists():
            shutil.rmtree(shim)
            print(f"removed {shim}")
        return pip("uninstall", "-y", "remove-background")
    if not root.is_dir():
        print(f"InvokeAI root {root} does not exist: pass --root or set INVOKEAI_ROOT", file=sys.stderr)
        return 2
    try:
        import invokeai  # noqa: F401
    except ImportError:
        print(f"InvokeAI is not installed in this Python ({sys.executable}). Run this from InvokeAI's environment "
              f"(launcher > Dev Console, or activate its venv).", file=sys.stderr)
        return 2

    target = ["-e", str(REPO)] if a.editable else [str(REPO)]
    if pip("install", "--upgrade", *target) != 0:
        print("pip install failed; nothing was changed in the InvokeAI root.", file=sys.stderr)
        return 1
    if pip("check") != 0:
        print("pip check reports a conflict (see above); `remove-background doctor` explains and fixes it.",
              file=sys.stderr)
        return 1
    if (nodes / "remove_background").exists():
        print(f"note: {nodes / 'remove_background'} also holds this node pack (an older copy?); remove it, so the "
              f"node is not registered twice.")
    shim.mkdir(parents=True, exist_ok=True)
    (shim / "__init__.py").write_text(SHIM_INIT)
    print(f"\nInstalled. Node pack shim: {shim}\nModels will live in {config_path(root, 'models_dir', 'models')}"
          f"/rembg. Restart InvokeAI; check the set-up any time with: remove-background doctor --root \"{root}\"")
    return 0


if __name__ == "__main__":
    sys.exit(main())
