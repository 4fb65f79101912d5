"""Segment Anything: our prompts, pre- and post-processing equal rembg 2.0.69's SamSession on the same ONNX graphs.

rembg publishes no checksummed SAM weights we can fetch here, so the graphs are tiny ones of our own with SAM's
input and output names: the encoder's embedding carries the frame's mean colour, and the decoder's mask is a disc
around the first prompt point in the encoder's frame, so a wrong scale, offset or mapping back shows.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from remove_background.families import sam
from support.sam_graphs import DECODER_INPUTS, disc_constants, disc_nodes, graph_models
from remove_background.families.sam import options_prompt
from remove_background.options import RemovalOptions


def sam_prompt(point=None, box=None):
    return options_prompt(RemovalOptions(sam_point=point, sam_box=box))

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _session(model):
    model.ir_version = 8
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def graphs():
    return tuple(_session(m) for m in graph_models())


def rembg_mask(graphs, image, prompt):
    from rembg.sessions.sam import SamSession

    session = SamSession.__new__(SamSession)  # rembg's own pre/post-processing around the same graphs
    session.model_name = "sam"
    session.encoder, session.decoder = graphs
    kwargs = {"sam_prompt": prompt} if prompt else {}
    return np.asarray(session.predict(image, **kwargs)[0])


@pytest.mark.parametrize("size,prompt", [
    ((640, 480), None),
    ((300, 900), None),
    ((2000, 1100), sam_prompt((1500, 300))),
    ((800, 800), sam_prompt((100, 700), (50, 600, 300, 790))),
    ((1024, 684), sam_prompt(None, (10, 10, 500, 400))),
])
def test_sam_equals_rembgs_sam_session(graphs, size, prompt):
    pytest.importorskip("rembg")
    rng = np.random.default_rng(size[0])
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    ours = sam.predict(*graphs, image, prompt)
    theirs = rembg_mask(graphs, image, prompt)
    assert ours.shape == (size[1], size[0]) and ours.dtype == np.uint8
    assert 0 < (ours > 0).mean() < 1  # the disc is inside the image
    assert np.array_equal(ours, theirs)


def test_sam_prompt_types_and_errors():
    points, labels = sam.prompt_points(sam_prompt((3, 4), (1, 2, 30, 40)))
    assert points.tolist() == [[3, 4], [1, 2], [30, 40]] and labels.tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match="point"):
        sam.prompt_points([{"type": "scribble", "data": [1, 2], "label": 1}])


# The graphs above ignore the image (the decoder multiplies the embedding by 0), so they check prompts, scales and the
# mapping back, but not what reaches the encoder. These ones make the mask depend on the picture: the encoder pools
# the frame 16× and projects it to SAM's 256×64×64 embedding with a seeded random 1×1 convolution; the decoder
# projects that back to one channel, upsamples it to the frame and keeps the disc around the first prompt point
# where that image term is positive (Min). They run through the public remove() on each execution provider, from
# files named as rembg names them, against rembg's SamSession built the usual way on the same files (rembg
# publishes no checksum for them, so pooch uses them as they are, and so do we).


def _content_providers() -> list[str]:
    import importlib.util

    from remove_background.backends.routes import PROVIDER_CHOICES

    torch = "torch" in PROVIDER_CHOICES and importlib.util.find_spec("onnx2torch") is not None
    return ["cpu", "torch"] if torch else ["cpu"]


CONTENT_PROVIDERS = _content_providers()


def _content_graphs() -> tuple[bytes, bytes]:
    from onnx import TensorProto, helper, numpy_helper
    from skimage import data

    f = TensorProto.FLOAT
    rng = np.random.default_rng(7)
    w1 = rng.normal(0, 1 / 255, (256, 3, 1, 1)).astype(np.float32)
    w2 = rng.normal(0, 1 / 16, (1, 256, 1, 1)).astype(np.float32)
    # the image term's threshold: its median over a photo's frame, so the disc is cut across
    photo = np.asarray(Image.fromarray(data.astronaut()).resize((sam.FRAME_W, sam.FRAME_H)), np.float32)
    pooled = photo[: 42 * 16].reshape(42, 16, 64, 16, 3).mean(axis=(1, 3))
    term = pooled @ (w1[:, :, 0, 0].T @ w2[0, :, 0, 0])
    median = np.float32(np.median(term))
    pad_rows = np.array([0, 0, 0, 0, 0, 0, 64 - 42, 0], np.int64)
    enc = helper.make_graph(
        [helper.make_node("Reshape", ["x", "nhwc"], ["b"]),
         helper.make_node("Transpose", ["b"], ["nchw"], perm=[0, 3, 1, 2]),
         helper.make_node("AveragePool", ["nchw"], ["p"], kernel_shape=[16, 16], strides=[16, 16]),
         helper.make_node("Pad", ["p", "pads"], ["padded"]),
         helper.make_node("Conv", ["padded", "w1"], ["image_embeddings"])],
        "encoder", [helper.make_tensor_value_info("x", f, [sam.FRAME_H, sam.FRAME_W, 3])],
        [helper.make_tensor_value_info("image_embeddings", f, [1, 256, 64, 64])],
        [numpy_helper.from_array(np.array([1, sam.FRAME_H, sam.FRAME_W, 3], np.int64), "nhwc"),
         numpy_helper.from_array(pad_rows, "pads"), numpy_helper.from_array(w1, "w1")])
    nodes = [
        *disc_nodes("disc_px"),
        helper.make_node("Div", ["disc_px", "r2"], ["disc"]),  # 1 at the point, 0 on the circle, < 0 outside
        helper.make_node("Conv", ["image_embeddings", "w2"], ["c"]),
        helper.make_node("Resize", ["c", "", "up"], ["c_up"], mode="linear"),
        helper.make_node("Slice", ["c_up", "r0", "r1", "axr"], ["c_frame"]),  # the frame's rows of the padded map
        helper.make_node("Sub", ["c_frame", "median"], ["term"]),
        helper.make_node("Min", ["disc", "term"], ["masks"]),
        helper.make_node("ReduceMean", ["term"], ["iou_predictions"], keepdims=0),
        helper.make_node("Identity", ["c"], ["low_res_masks"]),
    ]
    consts = disc_constants(260.0) + [numpy_helper.from_array(a, n) for a, n in [
        (w2, "w2"), (np.array([1, 1, 16, 16], np.float32), "up"), (np.array([0], np.int64), "r0"),
        (np.array([sam.FRAME_H], np.int64), "r1"), (np.array([2], np.int64), "axr"), (median, "median")]]
    dec = helper.make_graph(
        nodes, "decoder", [helper.make_tensor_value_info(n, f, None) for n in DECODER_INPUTS],
        [helper.make_tensor_value_info("masks", f, [1, 1, sam.FRAME_H, sam.FRAME_W]),
         helper.make_tensor_value_info("iou_predictions", f, None),
         helper.make_tensor_value_info("low_res_masks", f, None)], consts)
    opset = [helper.make_opsetid("", 13)]
    out = []
    for g in (enc, dec):
        m = helper.make_model(g, opset_imports=opset)
        m.ir_version = 8
        out.append(m.SerializeToString())
    return out[0], out[1]


@pytest.mark.parametrize("provider", CONTENT_PROVIDERS)
def test_sam_mask_follows_the_image_as_rembgs_does(provider):
    pytest.importorskip("rembg")
    import os
    from pathlib import Path

    from rembg.sessions.sam import SamSession
    from skimage import data

    from remove_background import catalog, remove

    from remove_background.backends import cache


    folder = Path(os.environ["U2NET_HOME"])  # per test (conftest.py); rembg and we both look here
    for spec, graph in zip(catalog.MODELS["sam"].files, _content_graphs()):
        (folder / spec.filename).write_bytes(graph)
    theirs_session = SamSession("sam", ort.SessionOptions())
    try:
        for picture, size, point in [("astronaut", (900, 700), None), ("coffee", (600, 1000), (250, 600)),
                                     ("chelsea", (1500, 900), (700, 400))]:
            image = Image.fromarray(getattr(data, picture)()).resize(size, Image.Resampling.BICUBIC)
            kwargs = {"sam_prompt": sam_prompt(point)} if point else {}
            theirs = np.asarray(theirs_session.predict(image, **kwargs)[0]) > 127
            ours = np.asarray(remove(image, model="sam", provider=provider, models_dir=folder, sam_point=point,
                                     allow_download=False).mask) > 127
            centre = point or (size[0] // 2, size[1] // 2)
            scale = min(sam.FRAME_W / size[0], sam.FRAME_H / size[1])
            gy, gx = np.mgrid[0:size[1], 0:size[0]]
            d2 = (gx - centre[0]) ** 2 + (gy - centre[1]) ** 2
            assert 0.2 < theirs[d2 < (260 / scale) ** 2].mean() < 0.8  # the picture cuts the disc: it reaches the mask
            assert not theirs[d2 > (260 / scale + 3) ** 2].any()  # and the prompt still places it
            assert (ours != theirs).mean() <= (0 if provider == "cpu" else 1e-3), (picture, size)
    finally:
        cache.clear_sessions()
