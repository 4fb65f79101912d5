"""Install path (a): `python install.py` run inside an InvokeAI environment, then a real invokeai-web loads the node.

The environment is a fresh venv that sees this test venv's InvokeAI 6.14.2 through a .pth file, so the
real resolver decides what to install beside a real InvokeAI, without a second 7 GB install.
"""

from __future__ import annotations

import io
import site
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import fetch_weights
from conftest import ROOT
from invokeai_server import InvokeAIServer, outputs_of, prepare_root, removal_graph

pytestmark = [pytest.mark.server, pytest.mark.slow]


@pytest.fixture(scope="module")
def invokeai_env(tmp_path_factory):
    env = tmp_path_factory.mktemp("env") / "venv"
    # without its own pip and setuptools: those of the InvokeAI environment are the ones seen, as in a real one
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    python = env / "bin" / "python"
    own_site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
    with open(f"{own_site}/invokeai-env.pth", "w") as f:
        f.write(site.getsitepackages()[0] + "\n")
    return python, own_site


def test_one_command_install_then_invokeai_loads_and_runs_the_node(invokeai_env, tmp_path, u2netp_file):
    python, own_site = invokeai_env
    root = prepare_root(tmp_path / "root", link_pack=False)
    before = set(p.name for p in Path(own_site).iterdir())
    r = subprocess.run([str(python), str(ROOT / "install.py"), "--root", str(root)], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "No broken requirements found" in r.stdout
    added = set(p.name for p in Path(own_site).iterdir()) - before
    assert "remove_background" in added
    assert not [n for n in added if n.lower().startswith(("numpy", "onnxruntime", "rembg"))], added  # pins kept
    shim = root / "nodes" / "remove_background_node" / "__init__.py"
    assert shim.is_file()

    fetch_weights.place(root / "models" / "rembg")
    with InvokeAIServer(root, python=python) as server:
        assert "Loading node pack remove_background_node" in "".join(server.lines)
        assert not any("Failed to load node pack" in line for line in server.lines)
        buf = io.BytesIO()
        Image.new("RGB", (40, 30), "orange").save(buf, "PNG")
        [item_id] = server.enqueue(removal_graph(server.upload(buf.getvalue()), model="u2netp"))
        item = server.wait(item_id)
        assert item["status"] == "completed", item.get("error_message")
        assert outputs_of(item)[0]["width"] == 40

    r = subprocess.run([str(python), str(ROOT / "install.py"), "--root", str(root), "--uninstall"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not shim.exists()
    assert not (Path(own_site) / "remove_background").exists()


def test_install_refuses_outside_invokeai(tmp_path):
    env = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    r = subprocess.run([str(env / "bin" / "python"), str(ROOT / "install.py"), "--root", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "InvokeAI is not installed" in r.stderr
