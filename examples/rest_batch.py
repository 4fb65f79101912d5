#!/usr/bin/env python3
"""Send a folder of images to a running InvokeAI as ONE batch through the REST queue, and download the results.

    python examples/rest_batch.py photos/ -o cutouts/ --url http://127.0.0.1:9090 --model u2netp

Needs only the Python standard library. InvokeAI must have the remove-background node pack installed.
Writes NAME.png (RGBA cut-out) and NAME.mask.png for each input; failures are reported per image.
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from invokeai_client import InvokeAIClient, outputs_of, removal_graph  # noqa: E402

SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


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
