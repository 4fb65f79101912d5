"""A small InvokeAI REST client (standard library only): upload, enqueue a batch, wait, download."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from typing import Optional

NODE_TYPE = "remove_background_rembg"


class InvokeAIClient:
    def __init__(self, url: str = "http://127.0.0.1:9090"):
        self.url = url.rstrip("/")

    def request(self, method: str, path: str, body: Optional[bytes] = None, headers: Optional[dict] = None) -> bytes:
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.read()

    def get(self, path: str):
        return json.loads(self.request("GET", path))

    def post_json(self, path: str, payload) -> dict:
        return json.loads(self.request("POST", path, json.dumps(payload).encode(), {"Content-Type": "application/json"}))

    def upload(self, data: bytes, filename: str = "input.png", content_type: str = "image/png") -> str:
        boundary = uuid.uuid4().hex
        body = (
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
        result = json.loads(self.request(
            "POST", "/api/v1/images/upload?image_category=user&is_intermediate=false", body,
            {"Content-Type": f"multipart/form-data; boundary={boundary}"},
        ))
        return result["image_name"]

    def enqueue(self, graph: dict, data: Optional[list] = None) -> list[int]:
        batch = {"graph": graph, "runs": 1}
        if data:
            batch["data"] = data
        result = self.post_json("/api/v1/queue/default/enqueue_batch", {"batch": batch, "prepend": False})
        if "item_ids" in result:
            return result["item_ids"]
        # InvokeAI 5.x answers without item_ids: find the batch's items in the queue (oldest first)
        batch_id, wanted = result["batch"]["batch_id"], result.get("enqueued", 0)
        listed = self.get(f"/api/v1/queue/default/list?limit={max(100, 2 * wanted)}")["items"]
        return sorted(i["item_id"] for i in listed if i["batch_id"] == batch_id)

    def item(self, item_id: int) -> dict:
        return self.get(f"/api/v1/queue/default/i/{item_id}")

    def wait(self, item_id: int, timeout: float = 300.0) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            item = self.item(item_id)
            if item["status"] in ("completed", "failed", "canceled"):
                return item
            time.sleep(0.25)
        raise TimeoutError(f"queue item {item_id} did not finish in {timeout} s")

    def run_one(self, graph: dict, timeout: float = 300.0) -> dict:
        """Enqueue one graph and return its finished queue item."""
        [item_id] = self.enqueue(graph)
        return self.wait(item_id, timeout)

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
