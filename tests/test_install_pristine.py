"""Installing into the InvokeAI users really have: pristine InvokeAI 6.14.2 environments
(tests/support/pristine.py), one a pip venv and one a ``uv venv`` without pip, by both routes:

- install.py run with that environment's python (the launcher's Dev Console);
- InvokeAI's Custom Node Manager (a real invokeai-web installs the pack from a git URL), then the command that the
  node's missing-dependency error prints.

After each: every distribution that was there keeps its version, ``pip check`` / ``uv pip check`` is clean,
InvokeAI's own ControlNet resize (opencv-contrib's ``cv2.ximgproc``) still works, InvokeAI starts and the node
runs on the real u2netp. Upgrade (run again) and uninstall change nothing else. An install that would change an
installed package, or overwrite its files, stops with the names and versions and leaves the environment as it was.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from PIL import Image

from support import ROOT, fetch_weights, pristine
from support.images import png
from support.invokeai_server import InvokeAIServer, outputs_of, prepare_root, removal_graph
from support.pristine import OURS, assert_only_added

pytestmark = [pytest.mark.server, pytest.mark.slow]


def run_node(server) -> dict:
    name = server.upload(png(Image.new("RGB", (40, 30), "orange")))
    return server.run_one(removal_graph(name, model="u2netp"))


def assert_invokeai_intact(python, kind):
    r = pristine.check(python, kind)
    assert r.returncode == 0, r.stdout + r.stderr
    r = pristine.controlnet_resize_works(python)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr


@pytest.mark.parametrize("kind", ["pip", "uv"])
def test_install_py_then_invokeai_runs_the_node_then_upgrade_and_uninstall(kind, tmp_path, u2netp_file):
    python = pristine.make(kind, tmp_path / "venv")
    before = pristine.distributions(python)
    root = prepare_root(tmp_path / "root", link_pack=False)
    install = [str(python), str(ROOT / "install.py"), "--root", str(root)]
    r = subprocess.run(install, capture_output=True, text=True, env=pristine.tool_env(), timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"$ {python} -m pip install" in r.stdout if kind == "pip" else "uv pip install --python" in r.stdout
    after = pristine.distributions(python)
    assert "remove-background" in assert_only_added(before, after, OURS)
    assert "opencv-python-headless" not in after and "rembg" not in after
    assert_invokeai_intact(python, kind)
    shim = root / "nodes" / "remove_background_node" / "__init__.py"
    assert shim.is_file()

    fetch_weights.place(root / "models" / "rembg")
    with InvokeAIServer(root, python=python, env=pristine.tool_env()) as server:
        assert "Loading node pack remove_background_node" in "".join(server.lines)
        assert not any("Failed to load node pack" in line for line in server.lines)
        item = run_node(server)
        assert item["status"] == "completed", item.get("error_message")
        assert outputs_of(item)[0]["width"] == 40

    again = subprocess.run(install, capture_output=True, text=True, env=pristine.tool_env(), timeout=600)  # upgrade
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Added: nothing" in again.stdout
    assert pristine.distributions(python) == after

    r = subprocess.run(install + ["--uninstall"], capture_output=True, text=True, env=pristine.tool_env(), timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert pristine.distributions(python) == before  # only what the install added is gone
    assert not shim.exists()
    assert_invokeai_intact(python, kind)


@pytest.mark.parametrize("kind", ["uv", "pip"])
def test_custom_node_manager_then_the_printed_command(kind, tmp_path, u2netp_file):
    python = pristine.make(kind, tmp_path / "venv")
    before = pristine.distributions(python)
    repo = pristine.working_tree_copy(tmp_path / "src" / "remove-background", git=True)
    root = prepare_root(tmp_path / "root", link_pack=False)
    fetch_weights.place(root / "models" / "rembg")
    with InvokeAIServer(root, python=python, env=pristine.tool_env()) as server:
        result = server.post_json("/api/v2/custom_nodes/install", {"source": repo.as_uri()})
        assert result["success"], result
        item = run_node(server)
        assert item["status"] == "failed" and item["error_type"] == "DependencyMissingError", item
        command = pristine.printed_command(item["error_message"])
        pack = root / "nodes" / "remove-background"
        assert command[:2] == [str(python), str(pack / "install.py")], command
        assert pristine.distributions(python) == before  # the manager installed nothing

        r = subprocess.run(command, capture_output=True, text=True, env=pristine.tool_env(), timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "Dependencies installed for the node pack" in r.stdout
        after = pristine.distributions(python)
        assert_only_added(before, after, OURS - {"remove-background"})  # the clone is the pack: deps only
        assert_invokeai_intact(python, kind)

        item = run_node(server)  # the same server, no restart
        assert item["status"] == "completed", item.get("error_message")

    r = subprocess.run(command + ["--uninstall"], capture_output=True, text=True, env=pristine.tool_env(), timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Custom Node Manager" in r.stdout
    assert pristine.distributions(python) == before


@pytest.fixture(scope="module")
def uv_env(tmp_path_factory):
    return pristine.make("uv", tmp_path_factory.mktemp("refuse") / "venv")


def pack_with_extra_dependency(dest, requirement: str):
    """This working tree as a later release of the pack that needs ``requirement`` (an upgrade after git pull)."""
    repo = pristine.working_tree_copy(dest)
    pyproject = repo / "pyproject.toml"
    text = pyproject.read_text()
    pyproject.write_text(text.replace('dependencies = [\n', f'dependencies = [\n    "{requirement}",\n', 1))
    return repo


@pytest.mark.parametrize("requirement,expected", [
    ("numpy>=2", ["numpy 1.26.4 would become 2.", "InvokeAI 6.14.2 (numpy<2", "nothing was changed"]),
    ("opencv-python-headless", ["opencv-python-headless", "opencv-contrib-python 4.11.0.86", "cv2/cv2.abi3.so",
                                "nothing was changed"]),
])
def test_an_install_that_would_change_invokeai_stops_and_changes_nothing(uv_env, tmp_path, requirement, expected):
    python = uv_env
    before, files = pristine.distributions(python), pristine.tree(python.parent.parent)
    repo = pack_with_extra_dependency(tmp_path / "pack", requirement)
    root = prepare_root(tmp_path / "root", link_pack=False)
    r = subprocess.run([str(python), str(repo / "install.py"), "--root", str(root)], capture_output=True, text=True,
                       env=pristine.tool_env(), timeout=600)
    assert r.returncode == 1, r.stdout + r.stderr
    for text in expected:
        assert text in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert pristine.distributions(python) == before
    assert pristine.tree(python.parent.parent) == files  # byte for byte: no file added, removed or rewritten
    assert not (root / "nodes" / "remove_background_node").exists()


def test_no_pip_and_no_uv_says_where_to_run_it(uv_env, tmp_path):
    root = prepare_root(tmp_path / "root", link_pack=False)
    env = {**pristine.tool_env(), "PATH": "/usr/bin:/bin"}
    r = subprocess.run([str(uv_env), str(ROOT / "install.py"), "--root", str(root)], capture_output=True, text=True,
                       env=env)
    assert r.returncode == 1 and "neither pip nor uv" in r.stderr and "Dev Console" in r.stderr, r.stderr


def test_install_refuses_outside_invokeai(tmp_path):
    env = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    r = subprocess.run([str(env / "bin" / "python"), str(ROOT / "install.py"), "--root", str(tmp_path)],
                       capture_output=True, text=True, env=pristine.tool_env())
    assert r.returncode == 2 and "InvokeAI is not installed" in r.stderr
