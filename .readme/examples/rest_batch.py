#!/usr/bin/env python3
"""Send a folder of images to a running InvokeAI as ONE batch through the REST queue, and download the results.

    python rest_batch.py photos/ -o cutouts/ --url http://127.0.0.1:9090 --model u2netp

One file, Python's standard library only: copy it anywhere. InvokeAI must have the remove-background node pack
installed. Writes NAME.png (RGBA cut-out) and NAME.mask.png for each input; failures are reported per image.
``InvokeAIClient`` (upload, enqueue a batch, wait, download) is a small REST client you can reuse; the project's
tests drive InvokeAI with it.
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Optional

NODE_TYPE = "remove_background_rembg"
SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


class InvokeAIClient:
    """The REST calls this node needs: upload an image, enqueue a graph (or a batch), wait, download."""

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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--url", default="http://127.0.0.1:9090")
    p.add_argument("--model", default="u2netp")
    p.add_argument("--options", default="{}", help='extra node fields as JSON, e.g. \'{"mask_blur": 2}\'')
    a = p.parse_args(argv)

    files = sorted(f for f in a.folder.iterdir() if f.is_file() and f.suffix.lower() in SUFFIXES)
    if not files:
        print(f"no images in {a.folder}", file=sys.stderr)
        return 2
    client = InvokeAIClient(a.url)
    names = {}
    for f in files:
        names[client.upload(f.read_bytes(), f.name, mimetypes.guess_type(f.name)[0] or "image/png")] = f
    graph = removal_graph(model=a.model, **json.loads(a.options))
    data = [[{"node_path": "remove_bg", "field_name": "image", "items": [{"image_name": n} for n in names]}]]
    item_ids = client.enqueue(graph, data)
    print(f"enqueued {len(item_ids)} images as one batch", file=sys.stderr)

    a.output.mkdir(parents=True, exist_ok=True)
    pending, done, failed = set(item_ids), 0, 0
    while pending:
        for item_id in sorted(pending):
            item = client.item(item_id)
            if item["status"] not in ("completed", "failed", "canceled"):
                continue
            pending.discard(item_id)
            source_name = item["field_values"][0]["value"]["image_name"] if item.get("field_values") else None
            src = names.get(source_name, Path(f"item-{item_id}"))
            if item["status"] == "completed":
                out = outputs_of(item)[0]
                (a.output / f"{src.stem}.png").write_bytes(client.download(out["image"]["image_name"]))
                (a.output / f"{src.stem}.mask.png").write_bytes(client.download(out["mask"]["image_name"]))
                done += 1
            else:
                failed += 1
                print(f"\nFAILED {src.name}: {item.get('error_type')}: {item.get('error_message')}", file=sys.stderr)
            print(f"\r[{done + failed}/{len(item_ids)}] {done} done, {failed} failed", end="", file=sys.stderr)
        time.sleep(0.3)
    print(file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
