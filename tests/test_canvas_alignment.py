"""Run Workflow on Canvas in a real browser: where the accepted cut-out lands, and the steps that land it exactly
over its source layer.

Debian's chromium (playwright-core, tests/browser/canvas_run_workflow.mjs) against a real invokeai-web with the
pack and the real u2netp weights. Each case writes the canvas (a raster layer named "source" at an offset, and the
bounding box) into InvokeAI's own client-state store, as if the user had arranged it earlier, then does in the
browser what a user does: optionally "Fit Bbox To Layers" / "Crop Layer to Bbox", right-click the layer,
Run Workflow, pick "Remove Background (canvas)", Execute, Accept. The result is read back from InvokeAI's canvas
state (the new layer's position and image) and compared pixel by pixel with the source layer.

What InvokeAI 6.14.2 does (StagingArea onAccept): the accepted image becomes a new layer positioned from the
bounding box, not from the source layer: at bbox.x + round((bbox.w - round(w * s)) / 2) (same for y), with
s = min(bbox.w / w, bbox.h / h), drawn at its own size. The workflow gets the layer's visible pixels (its rect with
transparent margins trimmed). So the cut-out lands exactly over its source if and only if the bbox equals that
rect, which "Fit Bbox To Layers" does when the rect lies on the bbox grid; off the grid, Fit Bbox shrinks to the
grid inside the rect and "Crop Layer to Bbox" then makes them equal.

UPDATE_SCREENSHOT=1 writes the README's canvas pictures to .readme/.
"""

from __future__ import annotations

import io
import json
import math
import os
import subprocess

import numpy as np
import pytest
from PIL import Image

from support import ROOT, fetch_weights
from support.browser import BROWSER_DIR, missing_tools
from support.images import png
from support.invokeai_server import InvokeAIServer, prepare_root

pytestmark = [pytest.mark.server, pytest.mark.browser, pytest.mark.slow]

WORKFLOW = "Remove Background (canvas)"


def canvas_state(layers: list[dict], bbox: tuple[int, int, int, int]) -> dict:
    """InvokeAI 6.14.2's persisted canvas slice (version 3) with these raster layers (the first selected)."""
    x, y, w, h = bbox
    empty = {"isHidden": False, "entities": []}
    return {
        "_version": 3, "selectedEntityIdentifier": {"id": layers[0]["id"], "type": "raster_layer"},
        "bookmarkedEntityIdentifier": None, "inpaintMasks": dict(empty), "controlLayers": dict(empty),
        "regionalGuidance": dict(empty), "rasterLayers": {"isHidden": False, "entities": layers},
        "bbox": {"rect": {"x": x, "y": y, "width": w, "height": h},
                 "aspectRatio": {"id": "Free", "value": w / h, "isLocked": False},
                 "scaleMethod": "none", "scaledSize": {"width": w, "height": h}, "modelBase": "sd-1"},
    }


def raster_layer(image_name: str, size: tuple[int, int], position: tuple[int, int], name: str = "source",
                 enabled: bool = True) -> dict:
    return {"id": f"raster_layer:{name}", "name": name, "type": "raster_layer", "isEnabled": enabled,
            "isLocked": False, "isTransparencyLocked": False, "opacity": 1,
            "position": {"x": position[0], "y": position[1]},
            "objects": [{"id": f"image:{name}", "type": "image",
                         "image": {"image_name": image_name, "width": size[0], "height": size[1]}}]}


def readme_picture(shot: str, name: str) -> None:
    """The middle of a canvas screenshot (where the fitted box is shown) as .readme/NAME."""
    image = Image.open(shot)
    middle = image.height // 2
    image.crop((0, max(0, middle - 260), image.width, min(image.height, middle + 260))).save(
        ROOT / ".readme" / name, optimize=True)


def astronaut() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut())


def invokeai_accept_position(bbox, size) -> tuple[int, int]:
    """Where InvokeAI 6.14.2 puts an accepted staging image of ``size`` (JavaScript's Math.round)."""
    bx, by, bw, bh = bbox
    s = min(bw / size[0], bh / size[1])
    js_round = lambda v: math.floor(v + 0.5)  # noqa: E731
    return bx + js_round((bw - js_round(size[0] * s)) / 2), by + js_round((bh - js_round(size[1] * s)) / 2)


@pytest.fixture(scope="module")
def server(tmp_path_factory, u2netp_file):
    missing = missing_tools()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"browser test tools missing in CI: {missing} (tests/browser/deps.sh installs them)")
        pytest.skip(f"missing: {', '.join(missing)}; run tests/browser/deps.sh as root")
    root = prepare_root(tmp_path_factory.mktemp("canvas_root"))
    # InvokeAI 6.14.2 with starlette 1.x answers socket.io's long-polling with HTTP 500 when the response is
    # gzipped (its ContentTypeAwareGZipMiddleware), so a browser never gets queue events and the staging area
    # never shows a result. Compression off is InvokeAI's own setting for that.
    with open(root / "invokeai.yaml", "a") as config:
        config.write("http_compression_level: 0\n")
    fetch_weights.place(root / "models" / "rembg")
    with InvokeAIServer(root) as s:
        workflow = json.loads((ROOT / "workflows" / "remove-background-canvas.json").read_text())
        s.post_json("/api/v1/workflows/", {"workflow": workflow})
        s.models_dir = root / "models" / "rembg"
        yield s


def fetch_image(server, name: str) -> Image.Image:
    return Image.open(io.BytesIO(server.request("GET", f"/api/v1/images/i/{name}/full")))


def set_canvas(server, state: dict) -> None:
    server.post_json("/api/v1/client_state/default/set_by_key?key=canvas", json.dumps(state))


def run_in_browser(server, tmp_path, source: Image.Image, position, bbox, fit=False, crop=False, shots=None,
                   others=()):
    """Put ``source`` on the canvas at ``position`` with ``bbox`` (and the ``others`` layers), run the workflow on
    it in the browser, accept. Returns (new layer's position, its image, the image the workflow got, the state)."""
    name = server.upload(png(source), "source.png")
    layers = [raster_layer(name, source.size, position), *others]
    set_canvas(server, canvas_state(layers, bbox))
    job = {"url": server.url, "layer": "source", "workflow": WORKFLOW, "fit": fit, "crop": crop,
           "layers": len(layers) + 1,
           "debug": str(tmp_path / "failed.png"), **(shots or {})}
    r = subprocess.run(["node", str(BROWSER_DIR / "canvas_run_workflow.mjs"), json.dumps(job)],
                       capture_output=True, text=True, timeout=500, cwd=BROWSER_DIR)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    state = result["state"]
    print(f"canvas case at {position}: staging needed a page reload: {result['reloaded']}")
    [new] = [e for e in state["rasterLayers"]["entities"] if e["id"] not in {layer["id"] for layer in layers}]
    [obj] = new["objects"]
    accepted = fetch_image(server, obj["image"]["image_name"])
    items = server.get("/api/v1/queue/default/list_all")
    item = server.item(max(i["item_id"] for i in items))
    assert item["status"] == "completed" and item["origin"] == "canvas_workflow_integration"
    workflow_input = fetch_image(server, item["session"]["graph"]["nodes"]["remove_bg"]["image"]["image_name"])
    return (new["position"]["x"], new["position"]["y"]), accepted, workflow_input, state


def assert_is_our_cutout(server, accepted: Image.Image, workflow_input: Image.Image) -> None:
    """The accepted layer is the node's cut-out of what the workflow got, bit for bit (not the mask)."""
    from remove_background import remove

    expected = remove(workflow_input, model="u2netp", models_dir=server.models_dir, allow_download=False).image
    assert accepted.mode == "RGBA" and accepted.size == workflow_input.size
    assert np.array_equal(np.asarray(accepted), np.asarray(expected))


def assert_lands_over_source(accepted: Image.Image, at, source: Image.Image, source_at) -> None:
    """Every visible pixel of the accepted layer has the source layer's colour at the same canvas position (exact
    where the source is opaque), and nothing is visible where the source was transparent."""
    new = np.asarray(accepted)
    src = np.asarray(source.convert("RGBA"))
    dx, dy = at[0] - source_at[0], at[1] - source_at[1]
    h, w = new.shape[:2]
    assert 0 <= dx and 0 <= dy and dx + w <= src.shape[1] and dy + h <= src.shape[0], "outside the source layer"
    under = src[dy:dy + h, dx:dx + w]
    visible = new[..., 3] > 0
    assert visible.mean() > 0.2
    opaque = visible & (under[..., 3] == 255)
    assert np.array_equal(new[opaque][:, :3], under[opaque][:, :3])
    assert (new[..., 3].astype(int) <= under[..., 3].astype(int) + 1).all()  # the layer's own transparency kept


def test_default_bbox_shifts_the_cutout_as_invokeai_places_it(server, tmp_path):
    """Without fitting the bbox, InvokeAI 6.14.2 puts the result by the bbox: here 136 px left, 8 px up."""
    source = astronaut().resize((320, 240))
    bbox = (0, 0, 512, 512)
    shots = {"after": str(tmp_path / "shifted.png")}
    at, accepted, workflow_input, _ = run_in_browser(server, tmp_path, source, (136, 72), bbox, shots=shots)
    assert np.array_equal(np.asarray(workflow_input.convert("RGB")), np.asarray(source))  # the layer, whole
    assert_is_our_cutout(server, accepted, workflow_input)
    assert at == invokeai_accept_position(bbox, source.size) == (0, 64) != (136, 72)
    if os.environ.get("UPDATE_SCREENSHOT"):
        readme_picture(shots["after"], "canvas-default-bbox.png")


def test_fit_bbox_to_layers_lands_a_smaller_layer_exactly(server, tmp_path):
    source = astronaut().resize((320, 240))
    shots = {"before": str(tmp_path / "before.png"), "after": str(tmp_path / "after.png"), "hide": True}
    at, accepted, workflow_input, state = run_in_browser(server, tmp_path, source, (136, 72), (0, 0, 512, 512),
                                                         fit=True, shots=shots)
    assert state["bbox"]["rect"] == {"x": 136, "y": 72, "width": 320, "height": 240}
    assert_is_our_cutout(server, accepted, workflow_input)
    assert at == (136, 72)
    assert_lands_over_source(accepted, at, source, (136, 72))
    if os.environ.get("UPDATE_SCREENSHOT"):
        readme_picture(shots["before"], "canvas-before.png")
        readme_picture(shots["after"], "canvas-after.png")


def test_fit_bbox_to_layers_lands_a_larger_layer_exactly(server, tmp_path):
    """With another layer on the canvas, turned off: Fit Bbox To Layers leaves it out."""
    source = astronaut().resize((768, 576))
    other_name = server.upload(png(Image.new("RGB", (64, 64), "red")), "other.png")
    other = raster_layer(other_name, (64, 64), (1000, 800), name="other", enabled=False)
    at, accepted, workflow_input, state = run_in_browser(server, tmp_path, source, (-64, 32), (0, 0, 512, 512),
                                                         fit=True, others=[other])
    assert state["bbox"]["rect"] == {"x": -64, "y": 32, "width": 768, "height": 576}
    assert_is_our_cutout(server, accepted, workflow_input)
    assert at == (-64, 32)
    assert_lands_over_source(accepted, at, source, (-64, 32))


def test_layer_with_transparency_lands_exactly_and_keeps_it(server, tmp_path):
    """Transparent margins are trimmed from what the workflow gets; the bbox fits the visible rect, so the cut-out
    lands over the visible pixels, and stays transparent wherever the layer was."""
    rgba = np.asarray(astronaut().resize((320, 240)).convert("RGBA")).copy()
    rgba[:, :40, 3] = 0      # a fully transparent margin (trimmed by InvokeAI)
    rgba[:24, 40:, 3] = 128  # a half-transparent band
    rgba[100:140, 150:200, 3] = 0  # a hole inside
    source = Image.fromarray(rgba)
    at, accepted, workflow_input, state = run_in_browser(server, tmp_path, source, (200, 96), (0, 0, 512, 512),
                                                         fit=True)
    assert accepted.size == workflow_input.size == (280, 240)
    assert state["bbox"]["rect"] == {"x": 240, "y": 96, "width": 280, "height": 240}
    assert_is_our_cutout(server, accepted, workflow_input)
    assert at == (240, 96)
    assert_lands_over_source(accepted, at, source, (200, 96))
    assert (np.asarray(accepted)[100:140, 110:160, 3] == 0).all()  # the hole stays a hole


def test_off_grid_layer_lands_exactly_after_crop_layer_to_bbox(server, tmp_path):
    """333 x 250 at (101, 57) is off the 8 px bbox grid: Fit Bbox To Layers shrinks the bbox to the grid inside
    the layer (104, 64, 328, 240), where no bbox equals the layer; Crop Layer to Bbox makes them equal."""
    source = astronaut().resize((333, 250))
    at, accepted, workflow_input, state = run_in_browser(server, tmp_path, source, (101, 57), (0, 0, 512, 512),
                                                         fit=True, crop=True)
    assert state["bbox"]["rect"] == {"x": 104, "y": 64, "width": 328, "height": 240}
    assert invokeai_accept_position((104, 64, 328, 240), source.size) != (101, 57)  # uncropped: off by pixels
    assert accepted.size == (328, 240)
    assert_is_our_cutout(server, accepted, workflow_input)
    assert at == (104, 64)
    assert_lands_over_source(accepted, at, source, (101, 57))
