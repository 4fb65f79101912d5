"""Start a real ``invokeai-web`` on 127.0.0.1 with this node pack installed, and talk to it over REST.

Shared by the end-to-end tests and the demo. Standard library only; the REST calls are those of the README's
example client (``.readme/examples/rest_batch.py``, loaded from its file), so the tests drive the very client that
users copy.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

from . import ROOT

PACK = ROOT / "remove_background"
EXAMPLE_CLIENT = ROOT / ".readme" / "examples" / "rest_batch.py"


def _load_example_client():
    """The README's example (one self-contained file for users to copy), imported from its path."""
    spec = importlib.util.spec_from_file_location("remove_background_rest_example", EXAMPLE_CLIENT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_client = _load_example_client()
NODE_TYPE, InvokeAIClient, outputs_of, removal_graph = (
    _client.NODE_TYPE, _client.InvokeAIClient, _client.outputs_of, _client.removal_graph)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare_root(root: Path, link_pack: bool = True) -> Path:
    """Create an InvokeAI root with our pack in ``nodes/`` (a symlink) and ``invokeai.yaml``."""
    (root / "nodes").mkdir(parents=True, exist_ok=True)
    target = root / "nodes" / "remove_background"
    if link_pack and not target.exists():
        target.symlink_to(PACK, target_is_directory=True)
    config = root / "invokeai.yaml"
    if not config.exists():
        config.write_text('# Internal metadata - do not edit:\nschema_version: 4.0.2\n\n# User settings:\nhost: 127.0.0.1\n')
    return root


class InvokeAIServer(InvokeAIClient):
    """``with InvokeAIServer(root) as server: server.url``: starts invokeai-web, waits until it answers."""

    def __init__(self, root: Path, port: Optional[int] = None, env: Optional[dict] = None,
                 log_path: Optional[Path] = None, python: Optional[Path] = None):
        self.python = python  # another environment's interpreter; default: invokeai-web beside this one
        self.root = Path(root)
        self.port = port or free_port()
        self.env = env or {}
        self.log_path = log_path or self.root / "server.log"
        self.url = ""
        self.process: Optional[subprocess.Popen] = None
        self.lines: list[str] = []

    def start(self, timeout: float = 240.0) -> "InvokeAIServer":
        if self.python:
            command = [str(self.python), "-c", "import sys; from invokeai.app.run_app import run_app; sys.exit(run_app())"]
        else:
            command = [shutil.which("invokeai-web", path=str(Path(sys.executable).parent)) or "invokeai-web"]
        env = {**os.environ, "INVOKEAI_ROOT": str(self.root), "INVOKEAI_HOST": "127.0.0.1",
               "INVOKEAI_PORT": str(self.port), "PYTHONUNBUFFERED": "1", **self.env}
        self.process = subprocess.Popen(
            [*command, "--root", str(self.root)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )
        found = threading.Event()
        log = open(self.log_path, "w")

        def pump():
            for line in self.process.stdout:
                log.write(line)
                log.flush()
                self.lines.append(line)
                m = re.search(r"Invoke running on (http://[\d.]+:\d+)", line)
                if m:  # the port may differ from the one asked for if it was busy
                    self.url = m.group(1)
                    found.set()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.time() + timeout
        while time.time() < deadline and not found.is_set():
            if self.process.poll() is not None:
                raise RuntimeError("invokeai-web exited:\n" + "".join(self.lines[-40:]))
            found.wait(0.5)
        if not found.is_set():
            self.stop()
            raise RuntimeError("invokeai-web did not start in time:\n" + "".join(self.lines[-40:]))
        while time.time() < deadline:  # the log line comes just before the socket answers
            try:
                self.get("/api/v1/app/version")
                return self
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("invokeai-web never answered")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

