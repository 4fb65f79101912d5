"""An InvokeAI older than the node supports gets one clear line in its log, by every install route.

Without an old InvokeAI installed: a subprocess of this environment runs InvokeAI's own node-pack loader
(``load_custom_nodes``, with InvokeAI's logger format) with ``importlib.metadata`` reporting an older InvokeAI.
Only ``invokeai.app.invocations`` is imported first, as InvokeAI 4.x does when it loads node packs (it loads them
before ``baseinvocation``; there, without the check, the pack folder route registered no node and said nothing,
and install.py's shim registered a node whose every run failed on ``context.util.signal_progress``).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from support import ROOT
from remove_background.invokeai_adapter.releases import (
    MIN_INVOKEAI,
    UnsupportedInvokeAIError,
    release,
    require_supported_invokeai,
)

LOADER = r"""
import importlib.metadata as metadata, logging, sys
from pathlib import Path
real = metadata.version
metadata.version = lambda name: {version!r} if name.lower() == "invokeai" else real(name)
from invokeai.app.invocations.load_custom_nodes import load_custom_nodes   # imports invokeai.app.invocations
handler = logging.StreamHandler(sys.stdout)
handler.setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))
logger = logging.getLogger("InvokeAI-test")
logger.addHandler(handler)
logger.setLevel(logging.INFO)
load_custom_nodes(Path({nodes!r}), logger)
"""


def shim_text(root) -> str:
    """The node-pack shim that install.py writes, loading the package installed in this environment."""
    spec = importlib.util.spec_from_file_location("_install_for_test", ROOT / "install.py")
    install = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(install)
    return install.SHIM_INIT.format(source=str(ROOT), root=str(root))


def nodes_folder(tmp_path, route: str):
    nodes = tmp_path / "nodes"
    nodes.mkdir()
    if route == "install.py shim":
        (nodes / "remove_background_node").mkdir()
        (nodes / "remove_background_node" / "__init__.py").write_text(shim_text(tmp_path))
    elif route == "pack folder":
        (nodes / "remove_background").symlink_to(ROOT / "remove_background", target_is_directory=True)
    else:  # the clone InvokeAI's Custom Node Manager makes: the repository root is the pack
        (nodes / "remove-background").symlink_to(ROOT, target_is_directory=True)
    return nodes


def load(nodes, version: str) -> str:
    r = subprocess.run([sys.executable, "-c", LOADER.format(version=version, nodes=str(nodes))], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout + r.stderr


@pytest.mark.parametrize("found,refused", [
    ("3.7.0", True), ("4.2.9", True), ("5.0.2", True), ("5.14.0", True), ("5.15", False), (MIN_INVOKEAI, False),
    ("6.0.0rc1", False), ("6.0.2", False), ("6.14.2", False), ("7.0.0.dev3", False), (None, False), ("", False),
])
def test_the_version_check(found, refused, monkeypatch):
    if found is None:  # InvokeAI's version cannot be told: let it through
        monkeypatch.setattr("remove_background.invokeai_adapter.releases.invokeai_version", lambda: None)
    if refused:
        with pytest.raises(UnsupportedInvokeAIError) as e:
            require_supported_invokeai(found)
        message = str(e.value)
        assert message == (f"remove-background needs InvokeAI >= {MIN_INVOKEAI} (this is {found}); the Remove "
                           f"Background node is not loaded. Update InvokeAI (its launcher installs the latest "
                           f"release), then restart it.")
        assert "\n" not in message and not isinstance(e.value, ImportError)
    else:
        require_supported_invokeai(found)
    assert release("6.0.0rc1") == (6, 0, 0) and release("5.15") == (5, 15, 0)


@pytest.mark.parametrize("route", ["install.py shim", "pack folder", "Custom Node Manager clone"])
def test_an_older_invokeai_logs_one_clear_line(route, tmp_path):
    log = load(nodes_folder(tmp_path, route), "4.2.9")
    assert "Failed to load node pack" in log, log
    message = f"remove-background needs InvokeAI >= {MIN_INVOKEAI} (this is 4.2.9); the Remove Background node is not"
    assert log.count(message) == 1, log
    assert log.rstrip().splitlines()[-1].endswith("then restart it."), log  # the traceback ends with it
    assert "During handling of the above exception" not in log, log  # one short traceback, not a chain
    assert "ModuleNotFoundError" not in log and "AttributeError" not in log, log


def test_the_oldest_supported_invokeai_is_let_through(tmp_path):
    log = load(nodes_folder(tmp_path, "pack folder"), MIN_INVOKEAI)
    assert "Failed to load node pack" not in log and "Loaded 1 node pack" in log, log


def test_install_py_refuses_an_older_invokeai_and_changes_nothing(tmp_path):
    """install.py, run with an environment whose InvokeAI is too old, says so in one line before planning."""
    runner = ("import importlib.metadata as m, runpy, sys; real = m.version; "
              "m.version = lambda n: '4.2.9' if n.lower() == 'invokeai' else real(n); "
              f"sys.argv = ['install.py', '--root', {str(tmp_path)!r}, '--dry-run']; "
              f"runpy.run_path({str(ROOT / 'install.py')!r}, run_name='__main__')")
    r = subprocess.run([sys.executable, "-c", runner], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"needs InvokeAI >= {MIN_INVOKEAI} (this is 4.2.9)" in r.stderr and "Nothing was changed." in r.stderr
    assert "Traceback" not in r.stderr and "$ " not in r.stdout  # no command was run
