"""Start a real ``invokeai-web`` on 127.0.0.1 with this node pack installed, and talk to it over REST.

Shared by the end-to-end tests and the demo. Standard library only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parent.parent
PACK = REPO / "remove_background"
NODE_TYPE = "remove_background_rembg"


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


class InvokeAIServer:
    """``with InvokeAIServer(root) as server: server.url``: starts invokeai-web, waits until it answers."""

    def __init__(self, root: Path, port: Optional[int] = None, env: Optional[dict] = None, log_path: Optional[Path] = None):
        self.root = Path(root)
        self.port = port or free_port()
        self.env = env or {}
        self.log_path = log_path or self.root / "server.log"
        self.url = ""
        self.process: Optional[subprocess.Popen] = None
        self.lines: list[str] = []

    def start(self, timeout: float = 240.0) -> "InvokeAIServer":
        exe = shutil.which("invokeai-web", path=str(Path(sys.executable).parent)) or "invokeai-web"
        env = {**os.environ, "INVOKEAI_ROOT": str(self.root), "INVOKEAI_HOST": "127.0.0.1",
               "INVOKEAI_PORT": str(self.port), "PYTHONUNBUFFERED": "1", **self.env}
        self.process = subprocess.Popen(
            [exe, "--root", str(self.root)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
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

    # --- REST -------------------------------------------------------------------------------------------------
    def request(self, method: str, path: str, body: Optional[bytes] = None, headers: Optional[dict] = None) -> bytes:
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.read()

    def get(self, path: str):
        return json.loads(self.request("GET", path))

    def post_json(self, path: str, payload) -> dict:
        return json.loads(self.request("POST", path, json.dumps(payload).encode(), {"Content-Type": "application/json"}))

    def upload(self, png: bytes, filename: str = "input.png") -> str:
        boundary = uuid.uuid4().hex
        body = (
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
            f"Content-Type: image/png\r\n\r\n"
        ).encode() + png + f"\r\n--{boundary}--\r\n".encode()
        result = json.loads(self.request(
            "POST", "/api/v1/images/upload?image_category=user&is_intermediate=false", body,
            {"Content-Type": f"multipart/form-data; boundary={boundary}"},
        ))
        return result["image_name"]

    def enqueue(self, graph: dict, data: Optional[list] = None) -> list[int]:
        batch = {"graph": graph, "runs": 1}
        if data:
            batch["data"] = data
        return self.post_json("/api/v1/queue/default/enqueue_batch", {"batch": batch, "prepend": False})["item_ids"]

    def wait(self, item_id: int, timeout: float = 300.0) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            item = self.get(f"/api/v1/queue/default/i/{item_id}")
            if item["status"] in ("completed", "failed", "canceled"):
                return item
            time.sleep(0.25)
        raise TimeoutError(f"queue item {item_id} did not finish in {timeout} s")

    def download(self, image_name: str) -> bytes:
        return self.request("GET", f"/api/v1/images/i/{image_name}/full")


def removal_graph(image_name: Optional[str] = None, **fields) -> dict:
    """A one-node graph: our node on ``image_name``, never served from the invocation cache."""
    node = {"id": "remove_bg", "type": NODE_TYPE, "use_cache": False, "is_intermediate": False, **fields}
    if image_name:
        node["image"] = {"image_name": image_name}
    return {"id": uuid.uuid4().hex, "nodes": {"remove_bg": node}, "edges": []}


def outputs_of(item: dict) -> list[dict]:
    """Our node's outputs in a finished queue item."""
    results = (item.get("session") or {}).get("results") or {}
    return [r for r in results.values() if r.get("type") == NODE_TYPE + "_output"]
