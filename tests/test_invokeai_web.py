"""End to end: a real invokeai-web on 127.0.0.1 with the pack in its nodes folder, driven over REST."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from support import fetch_weights
from support.images import horse_scene, png
from support.invokeai_server import InvokeAIServer, outputs_of, prepare_root, removal_graph  # noqa: F401

pytestmark = [pytest.mark.server, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory, u2netp_file):
    root = prepare_root(tmp_path_factory.mktemp("invokeai_web_root"))
    fetch_weights.place(root / "models" / "rembg")  # pre-placed offline, where the node looks
    with InvokeAIServer(root) as s:
        yield s



def test_pack_loads_and_node_is_in_openapi(server):
    assert "Loading node pack remove_background" in "".join(server.lines)
    assert not any("Failed to load node pack" in line for line in server.lines)
    schema = server.get("/openapi.json")
    node = schema["components"]["schemas"]["RemoveBackgroundInvocation"]
    assert node["properties"]["type"]["default"] == "remove_background_rembg"
    assert "u2netp" in node["properties"]["model"]["enum"]
    assert "RemoveBackgroundOutput" in schema["components"]["schemas"]
    props = node["properties"]
    assert props["mask_threshold"]["minimum"] == 0 and props["mask_threshold"]["maximum"] == 255
    assert props["mask_grow"]["minimum"] == -256 and props["mask_grow"]["maximum"] == 256
    for field in ("mask_blur", "alpha_matting", "decontaminate", "background_color", "output_mode", "cloth_category"):
        assert props[field]["description"], field
    packs = server.get("/api/v2/custom_nodes/")
    assert "remove_background" in str(packs)


def test_single_image_round_trip(server):
    image, truth = horse_scene()
    name = server.upload(png(image))
    [item_id] = server.enqueue(removal_graph(name, model="u2netp"))
    item = server.wait(item_id)
    assert item["status"] == "completed", item.get("error_message")
    [out] = outputs_of(item)
    assert (out["width"], out["height"]) == image.size
    cut = Image.open(io.BytesIO(server.download(out["image"]["image_name"])))
    mask = Image.open(io.BytesIO(server.download(out["mask"]["image_name"])))
    assert cut.mode == "RGBA" and mask.mode == "L" and cut.size == mask.size == image.size
    alpha = np.asarray(mask) > 127
    assert (alpha & truth).sum() / (alpha | truth).sum() >= 0.95


def test_batch_over_several_images(server):
    images = [horse_scene("coffee")[0], horse_scene("chelsea", (40, 90, 200))[0], Image.new("RGB", (50, 70), "red")]
    names = [server.upload(png(im), f"in{i}.png") for i, im in enumerate(images)]
    data = [[{"node_path": "remove_bg", "field_name": "image", "items": [{"image_name": n} for n in names]}]]
    item_ids = server.enqueue(removal_graph(model="u2netp"), data)
    assert len(item_ids) == 3
    sizes = []
    for item_id in item_ids:
        item = server.wait(item_id)
        assert item["status"] == "completed", item.get("error_message")
        [out] = outputs_of(item)
        sizes.append((out["width"], out["height"]))
        assert Image.open(io.BytesIO(server.download(out["mask"]["image_name"]))).mode == "L"
    assert sorted(sizes) == sorted(im.size for im in images)


def test_missing_model_offline_fails_the_item_clearly(server):
    name = server.upload(png(Image.new("RGB", (16, 16), "blue")))
    item = server.run_one(removal_graph(name, model="silueta"))
    assert item["status"] == "failed"
    assert item["error_type"] == "ModelNotAvailableError"
    message = item["error_message"]
    assert "silueta.onnx" in message and str(server.root / "models" / "rembg") in message
    assert "releases/download/v0.0.0/silueta.onnx" in message


def test_bad_model_name_is_rejected_at_enqueue(server):
    import urllib.error

    with pytest.raises(urllib.error.HTTPError) as e:
        server.enqueue(removal_graph("x.png", model="no-such-model"))
    assert e.value.code == 422


def test_example_rest_batch_client(server, tmp_path):
    """The README's example, copied alone into another folder (one self-contained file), sends a folder as a batch."""
    import shutil
    import subprocess
    import sys

    from support.invokeai_server import EXAMPLE_CLIENT

    example = shutil.copy(EXAMPLE_CLIENT, tmp_path / "rest_batch.py")
    folder = tmp_path / "photos"
    folder.mkdir()
    horse_scene()[0].save(folder / "horse.png")
    horse_scene("chelsea")[0].save(folder / "cat.jpg")
    Image.new("RGB", (30, 20), "white").save(folder / "flat.png")
    out = tmp_path / "cutouts"
    r = subprocess.run([sys.executable, "-I", example, str(folder), "-o", str(out),
                        "--url", server.url, "--options", '{"mask_blur": 1.5}'], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert "enqueued 3 images as one batch" in r.stderr and "[3/3] 3 done, 0 failed" in r.stderr
    for stem in ("horse", "cat", "flat"):
        assert Image.open(out / f"{stem}.png").mode == "RGBA"
        assert Image.open(out / f"{stem}.mask.png").mode == "L"
    assert Image.open(out / "horse.png").size == Image.open(folder / "horse.png").size


def test_example_rest_batch_client_reports_failures(server, tmp_path):
    import subprocess
    import sys

    from support.invokeai_server import EXAMPLE_CLIENT

    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (30, 20), "white").save(folder / "a.png")
    r = subprocess.run([sys.executable, str(EXAMPLE_CLIENT), str(folder), "-o",
                        str(tmp_path / "o"), "--url", server.url, "--model", "silueta"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1
    assert "FAILED a.png: ModelNotAvailableError" in r.stderr


def test_mask_tensor_feeds_invokeais_own_mask_nodes(server):
    """Our mask tensor into Apply Tensor Mask to Image, and (through Tensor Mask to Image) into Get Image Mask
    Bounding Box: both run, and agree with our mask image (true where it is above 0)."""
    image, _ = horse_scene()
    name = server.upload(png(image))
    graph = removal_graph(name, model="u2netp")
    rb = next(iter(graph["nodes"]))
    graph["nodes"].update({
        "apply": {"id": "apply", "type": "apply_tensor_mask_to_image", "use_cache": False, "image": {"image_name": name}},
        "to_image": {"id": "to_image", "type": "tensor_mask_to_image", "use_cache": False},
        "bbox": {"id": "bbox", "type": "get_image_mask_bounding_box", "use_cache": False},
    })
    graph["edges"] += [
        {"source": {"node_id": rb, "field": "mask_tensor"}, "destination": {"node_id": "apply", "field": "mask"}},
        {"source": {"node_id": rb, "field": "mask_tensor"}, "destination": {"node_id": "to_image", "field": "mask"}},
        {"source": {"node_id": "to_image", "field": "image"}, "destination": {"node_id": "bbox", "field": "mask"}},
    ]
    item = server.run_one(graph)
    assert item["status"] == "completed", item.get("error_message")
    source = item["session"]["prepared_source_mapping"]
    results = {source[k]: r for k, r in item["session"]["results"].items()}  # by node id in our graph
    mask = np.asarray(Image.open(io.BytesIO(server.download(results[rb]["mask"]["image_name"])))) > 0
    applied = np.asarray(Image.open(io.BytesIO(server.download(results["apply"]["image"]["image_name"]))))
    assert np.array_equal(applied[..., 3] > 0, mask)  # the tensor is the mask image, above 0
    ys, xs = np.nonzero(mask)
    box = results["bbox"]["bounding_box"]
    assert (box["x_min"], box["y_min"], box["x_max"], box["y_max"]) == (xs.min(), ys.min(), xs.max(), ys.max())
