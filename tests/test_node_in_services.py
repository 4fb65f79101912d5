"""The node inside real InvokeAI services (in-memory sqlite, temporary image store), on real u2netp weights."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from support.images import horse_scene
from support.invokeai_services import build_services, run_node

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def invokeai(tmp_path_factory, u2netp_file):
    root = tmp_path_factory.mktemp("invokeai_root")
    services = build_services(root)
    from remove_background.invokeai_adapter import node as invocation  # registers the node (InvokeAI is imported now)
    from support import fetch_weights

    fetch_weights.place(services.configuration.models_path / "rembg")
    return services, invocation


def upload(services, image: Image.Image) -> str:
    from invokeai.app.services.image_records.image_records_common import ImageCategory, ResourceOrigin

    dto = services.images.create(image=image, image_origin=ResourceOrigin.EXTERNAL, image_category=ImageCategory.USER)
    return dto.image_name


def test_models_live_in_invokeai_models_dir_rembg(invokeai):
    services, invocation = invokeai
    assert (services.configuration.models_path / "rembg" / "u2netp.onnx").is_file()


def test_node_saves_cutout_and_mask_with_board_and_metadata(invokeai):
    services, invocation = invokeai
    from invokeai.invocation_api import BoardField, ImageField, MetadataField

    board = services.boards.create(board_name="cut-outs", user_id="system")
    image, truth = horse_scene()
    name = upload(services, image)
    before = services.image_files.get(name).tobytes()
    node = invocation.RemoveBackgroundInvocation(
        id="rb",
        image=ImageField(image_name=name),
        model="u2netp",
        board=BoardField(board_id=board.board_id),
        metadata=MetadataField.model_validate({"positive_prompt": "a horse"}),
    )
    out = run_node(services, node)
    assert type(out).__name__ == "RemoveBackgroundOutput"
    assert (out.width, out.height) == image.size
    cut = services.image_files.get(out.image.image_name)
    mask = services.image_files.get(out.mask.image_name)
    assert cut.mode == "RGBA" and mask.mode == "L" and cut.size == mask.size == image.size
    alpha = np.asarray(mask) > 127
    assert (alpha & truth).sum() / (alpha | truth).sum() >= 0.95
    assert np.array_equal(np.asarray(cut)[:, :, 3], np.asarray(mask))
    cut_dto = services.images.get_dto(out.image.image_name)
    mask_dto = services.images.get_dto(out.mask.image_name)
    assert cut_dto.board_id == board.board_id and mask_dto.board_id == board.board_id
    assert mask_dto.image_category == "mask" and cut_dto.image_category == "general"
    assert services.images.get_metadata(out.image.image_name).root["positive_prompt"] == "a horse"
    assert services.image_files.get(name).tobytes() == before  # the input in the store is untouched


@pytest.mark.parametrize("options", [{}, {"mask_threshold": 128}, {"output_mode": "mask_only"}])
def test_mask_tensor_agrees_with_the_mask_image(invokeai, options):
    """InvokeAI's own mask type: a bool tensor [1, H, W], true exactly where the mask image is above 0."""
    services, invocation = invokeai
    from invokeai.invocation_api import ImageField

    image, _ = horse_scene()
    node = invocation.RemoveBackgroundInvocation(id="rb", image=ImageField(image_name=upload(services, image)),
                                                 model="u2netp", use_cache=False, **options)
    out = run_node(services, node)
    tensor = services.tensors.load(out.mask_tensor.tensor_name)
    mask = np.asarray(services.image_files.get(out.mask.image_name))
    assert tuple(tensor.shape) == (1, image.height, image.width) and str(tensor.dtype) == "torch.bool"
    assert np.array_equal(tensor[0].numpy(), mask > 0)
    assert 0.1 < tensor.float().mean() < 0.9


@pytest.mark.parametrize("provider, key_suffix", [("auto", ""), ("torch", "#torch")])
def test_the_model_lives_in_invokeai_model_cache(invokeai, provider, key_suffix):
    """The node loads its model through context.models.load_local_model: InvokeAI's own cache holds it (an ONNX
    Runtime session counted by its file's size, a torch module by its weights), our cache holds nothing, and the
    second run finds it there."""
    services, invocation = invokeai
    from invokeai.invocation_api import ImageField
    from remove_background.backends import cache

    cache.clear_sessions()
    ram_cache = services.model_manager.load.ram_cache
    path = services.configuration.models_path / "rembg" / "u2netp.onnx"
    key = f"{path}{key_suffix}"
    name = upload(services, horse_scene()[0])
    outs = [run_node(services, invocation.RemoveBackgroundInvocation(
        id=f"c{i}", image=ImageField(image_name=name), execution_provider=provider)) for i in range(2)]
    assert len(cache.CACHE) == 0
    record = ram_cache.get(key)  # raises IndexError when InvokeAI's cache does not hold it
    size = record.cached_model.total_bytes()
    if provider == "auto":  # CPU here: ONNX Runtime, sized by the file
        assert type(record.cached_model.model).__name__ == "InferenceSession" and size == path.stat().st_size
    else:  # the converted module, sized by its parameters and buffers: the file's weights, about the file's size
        assert isinstance(record.cached_model.model, __import__("torch").nn.Module)
        assert 0.8 * path.stat().st_size < size < 1.2 * path.stat().st_size
    masks = [np.asarray(services.image_files.get(o.mask.image_name)) for o in outs]
    assert np.array_equal(masks[0], masks[1])


def test_torch_and_onnx_runtime_in_invokeai_give_the_same_mask(invokeai):
    services, invocation = invokeai
    from invokeai.invocation_api import ImageField

    image, truth = horse_scene()
    name = upload(services, image)
    masks = {}
    for provider in ("cpu", "torch"):
        out = run_node(services, invocation.RemoveBackgroundInvocation(
            id=f"p-{provider}", image=ImageField(image_name=name), execution_provider=provider))
        masks[provider] = np.asarray(services.image_files.get(out.mask.image_name)).astype(int)
    difference = np.abs(masks["cpu"] - masks["torch"])
    assert difference.mean() <= 0.5 and ((masks["cpu"] > 127) == (masks["torch"] > 127)).mean() >= 0.999


def test_missing_model_offline_fails_with_a_clear_message(invokeai):
    services, invocation = invokeai
    from invokeai.invocation_api import ImageField
    from remove_background import ModelNotAvailableError

    name = upload(services, Image.new("RGB", (32, 32), (1, 2, 3)))
    node = invocation.RemoveBackgroundInvocation(id="m", image=ImageField(image_name=name), model="isnet-anime")
    with pytest.raises(ModelNotAvailableError) as e:
        run_node(services, node)
    folder = services.configuration.models_path / "rembg"
    assert "isnet-anime.onnx" in str(e.value) and str(folder) in str(e.value)
    assert "https://github.com/danielgatis/rembg/releases" in str(e.value)
    assert not any(p.name.endswith(".part") for p in folder.iterdir())


def test_canceling_during_a_download_stops_it_and_leaves_no_file(invokeai, monkeypatch):
    """The queue item is canceled while the model downloads (from a local HTTP server): no partial file remains."""
    import dataclasses
    import http.server
    import threading

    from invokeai.app.services.session_processor.session_processor_common import CanceledException
    from invokeai.invocation_api import ImageField
    from remove_background import catalog

    class Slow(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(64 << 20))
            self.end_headers()
            for _ in range(64):
                self.wfile.write(b"\0" * (1 << 20))

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        info = catalog.MODELS["silueta"]
        url = f"http://127.0.0.1:{httpd.server_address[1]}/silueta.onnx"
        fake = dataclasses.replace(info, files=(dataclasses.replace(info.primary_file, url=url),))
        monkeypatch.setitem(catalog.MODELS, "silueta", fake)
        services, invocation = invokeai
        name = upload(services, Image.new("RGB", (8, 8), "red"))
        canceled = iter([False] * 3 + [True] * 1000)  # cancel after a few megabytes
        node = invocation.RemoveBackgroundInvocation(id="c", image=ImageField(image_name=name), model="silueta")
        with pytest.raises(CanceledException):
            run_node(services, node, is_canceled=lambda: next(canceled))
        folder = services.configuration.models_path / "rembg"
        assert not (folder / "silueta.onnx").exists()
        assert not [p for p in folder.iterdir() if p.name.endswith(".part")]
    finally:
        httpd.shutdown()


def test_node_schema_has_labelled_dropdowns_and_version(invokeai):
    _, invocation = invokeai
    from remove_background import MODEL_NAMES, __version__

    cls = invocation.RemoveBackgroundInvocation
    schema = cls.model_json_schema()
    assert schema["properties"]["model"]["enum"] == [*MODEL_NAMES, "custom"]  # custom: your own file
    assert set(schema["properties"]["model"]["ui_choice_labels"]) == {*MODEL_NAMES, "custom"}
    assert "NON-COMMERCIAL" in schema["properties"]["model"]["ui_choice_labels"]["bria-rmbg"]
    assert schema["properties"]["execution_provider"]["enum"] == [
        "auto", "torch", "cpu", "cuda", "tensorrt", "rocm", "directml", "openvino", "coreml"
    ]
    assert cls.UIConfig.title == "Remove Background" and cls.UIConfig.category == "image"
    assert {"background", "remove", "rembg", "mask", "cutout"} <= set(cls.UIConfig.tags)
    assert cls.UIConfig.version == __version__
    assert cls.model_fields["type"].default == "remove_background_rembg"


NODE_OPTIONS = [
    {"post_process_mask": True},
    {"mask_threshold": 128},
    {"mask_grow": 5},
    {"mask_grow": -5},
    {"mask_blur": 3.0},
    {"mask_invert": True},
    {"alpha_matting": True},
    {"decontaminate": True},
    {"background": "color", "background_color": {"r": 0, "g": 0, "b": 255, "a": 255}},
    {"output_mode": "mask_only"},
    {"sam_point_x": 10, "sam_point_y": 20},  # ignored by u2netp, accepted by the node
    {"alpha_matting": True, "decontaminate": True, "mask_grow": 2, "mask_blur": 1.5,
     "background": "color", "background_color": {"r": 255, "g": 255, "b": 255, "a": 128}},
]


@pytest.mark.parametrize("options", NODE_OPTIONS, ids=lambda o: ",".join(o))
def test_option_matrix_through_the_node(invokeai, options):
    services, invocation = invokeai
    from invokeai.invocation_api import ImageField
    from remove_background import remove

    image, _ = horse_scene()
    name = upload(services, image)
    node = invocation.RemoveBackgroundInvocation(id="opt", image=ImageField(image_name=name), **options)
    out = run_node(services, node)
    mask = services.image_files.get(out.mask.image_name)
    cut = services.image_files.get(out.image.image_name)
    assert mask.size == cut.size == image.size
    api_kwargs = {k: v for k, v in options.items() if k not in ("background", "background_color", "sam_point_x",
                                                                   "sam_point_y")}
    if options.get("background") == "color":
        c = options["background_color"]
        api_kwargs["background_color"] = (c["r"], c["g"], c["b"], c["a"])
    expected = remove(image, model="u2netp", models_dir=services.configuration.models_path / "rembg", **api_kwargs)
    assert np.array_equal(np.asarray(mask), np.asarray(expected.mask))  # the node is a thin wrapper over the API
    if options.get("output_mode") == "mask_only":
        assert out.image.image_name == out.mask.image_name
    else:
        assert cut.mode == "RGBA"


@pytest.mark.parametrize("field, bad", [("mask_threshold", 256), ("mask_grow", 999), ("mask_blur", -1.0),
                                        ("alpha_matting_erode_size", 65), ("sam_point_x", -5)])
def test_node_fields_are_bounded(invokeai, field, bad):
    _, invocation = invokeai
    from invokeai.invocation_api import ImageField
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=field):
        invocation.RemoveBackgroundInvocation(id="x", image=ImageField(image_name="x.png"), **{field: bad})


def test_your_own_file_through_the_node_and_invokeais_cache(invokeai):
    """Model custom: a file named inside <models>/rembg, run as its family, held in InvokeAI's cache under its path
    and revision; a name that leads out of the folder fails the node with a clear message."""
    import shutil

    services, invocation = invokeai
    from invokeai.invocation_api import ImageField
    from remove_background import ModelFileError

    folder = services.configuration.models_path / "rembg"
    mine = folder / "mine" / "my-u2net.onnx"
    mine.parent.mkdir(exist_ok=True)
    shutil.copy(folder / "u2netp.onnx", mine)
    name = upload(services, horse_scene()[0])
    outs = [run_node(services, invocation.RemoveBackgroundInvocation(
        id=f"own-{m}", image=ImageField(image_name=name), use_cache=False, **fields))
        for m, fields in (("custom", dict(model="custom", model_file="mine/my-u2net.onnx", model_family="u2net")),
                          ("u2netp", dict(model="u2netp")))]
    masks = [np.asarray(services.image_files.get(o.mask.image_name)) for o in outs]
    assert np.array_equal(masks[0], masks[1])
    st = mine.stat()
    services.model_manager.load.ram_cache.get(f"{mine.resolve()}@{st.st_size}-{st.st_mtime_ns}")  # held there
    outside = folder.parent / "elsewhere.onnx"
    shutil.copy(mine, outside)
    (folder / "link.onnx").symlink_to(outside)
    for bad in ("../elsewhere.onnx", str(outside), "link.onnx"):
        node = invocation.RemoveBackgroundInvocation(id="bad", image=ImageField(image_name=name), model="custom",
                                                     model_file=bad, model_family="u2net")
        with pytest.raises(ModelFileError, match="inside|outside"):
            run_node(services, node)


@pytest.mark.parametrize("provider, key_suffix", [("auto", ""), ("torch", "#torch")])
def test_vitmatte_runs_beside_the_model_in_invokeais_cache(invokeai, provider, key_suffix, monkeypatch):
    """vitmatte through the node: the refiner's file (a ViTMatte-S graph, tests/support/vitmatte_graphs.py) loads through
    InvokeAI's model cache like the model's, on the same route (ONNX Runtime on the CPU here; the torch route
    converts it), and both are held there beside each other; the mask is the API's."""
    import dataclasses

    from support import vitmatte_graphs
    pytest.importorskip("transformers")
    services, invocation = invokeai
    from invokeai.invocation_api import ImageField
    from remove_background import catalog, remove
    from remove_background.backends import cache

    folder = services.configuration.models_path / "rembg"
    name = catalog.VITMATTE_PREFIX + catalog.DEFAULT_VITMATTE
    target = folder / f"{name}.onnx"
    if not target.exists():
        target.symlink_to(vitmatte_graphs.exported("small"))
    info = catalog.REFINERS[name]
    unverified = dataclasses.replace(info, files=(dataclasses.replace(info.primary_file, checksum=None),))
    monkeypatch.setitem(catalog.REFINERS, name, unverified)
    cache.clear_sessions()
    image = horse_scene()[0]
    out = run_node(services, invocation.RemoveBackgroundInvocation(
        id=f"vm-{provider}", image=ImageField(image_name=upload(services, image)), execution_provider=provider,
        vitmatte=True, use_cache=False))
    assert len(cache.CACHE) == 0
    ram_cache = services.model_manager.load.ram_cache
    for path in (folder / "u2netp.onnx", target):
        record = ram_cache.get(f"{path}{key_suffix}")  # raises IndexError when InvokeAI's cache does not hold it
        assert 0.8 * path.stat().st_size < record.cached_model.total_bytes() < 1.2 * path.stat().st_size
    mask = np.asarray(services.image_files.get(out.mask.image_name))
    expected = remove(image, model="u2netp", provider=provider, vitmatte=True, models_dir=folder).mask
    assert np.array_equal(mask, np.asarray(expected))
    plain = remove(image, model="u2netp", provider=provider, models_dir=folder).mask
    assert not np.array_equal(mask, np.asarray(plain))  # the refiner ran
    cache.clear_sessions()
