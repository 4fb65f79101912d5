"""Segment Anything: our prompts, pre- and post-processing equal rembg 2.0.69's SamSession on the same ONNX graphs.

rembg publishes no checksummed SAM weights we can fetch here, so the graphs are tiny ones of our own with SAM's
input and output names: the encoder's embedding carries the frame's mean colour, and the decoder's mask is a disc
around the first prompt point in the encoder's frame, so a wrong scale, offset or mapping back shows.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from remove_background import sam
from remove_background.options import RemovalOptions, sam_prompt as options_prompt


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


def graph_models():
    """(encoder, decoder) ONNX models with SAM's input and output names (see the module's docstring)."""
    from onnx import TensorProto, helper, numpy_helper

    f = TensorProto.FLOAT
    enc = helper.make_graph(
        [helper.make_node("ReduceMean", ["x"], ["m"], axes=[0, 1], keepdims=1),
         helper.make_node("Reshape", ["m", "shape"], ["image_embeddings"])],
        "encoder", [helper.make_tensor_value_info("x", f, [sam.FRAME_H, sam.FRAME_W, 3])],
        [helper.make_tensor_value_info("image_embeddings", f, [1, 3, 1, 1])],
        [numpy_helper.from_array(np.array([1, 3, 1, 1], np.int64), "shape")])
    gy, gx = np.mgrid[0:sam.FRAME_H, 0:sam.FRAME_W].astype(np.float32)
    names = ["image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input", "orig_im_size"]
    inputs = [helper.make_tensor_value_info(n, f, None) for n in names]
    nodes = [
        helper.make_node("Slice", ["point_coords", "s0", "s1", "ax"], ["p"]),  # the first point: [1, 1, 2]
        helper.make_node("Split", ["p"], ["px", "py"], axis=2),
        helper.make_node("Sub", ["gx", "px"], ["dx"]), helper.make_node("Sub", ["gy", "py"], ["dy"]),
        helper.make_node("Mul", ["dx", "dx"], ["dx2"]), helper.make_node("Mul", ["dy", "dy"], ["dy2"]),
        helper.make_node("Add", ["dx2", "dy2"], ["d2"]),
        helper.make_node("Sub", ["r2", "d2"], ["disc"]),
        helper.make_node("ReduceSum", ["image_embeddings"], ["e"], keepdims=0),
        helper.make_node("Mul", ["e", "zero"], ["e0"]),
        helper.make_node("Add", ["disc", "e0"], ["masks"]),
        helper.make_node("Identity", ["e"], ["iou_predictions"]),
        helper.make_node("Identity", ["e"], ["low_res_masks"]),
    ]
    consts = [numpy_helper.from_array(a, n) for a, n in [
        (gx[None, None], "gx"), (gy[None, None], "gy"), (np.array(150.0**2, np.float32), "r2"),
        (np.array(0.0, np.float32), "zero"), (np.array([0, 0], np.int64), "s0"), (np.array([1, 1], np.int64), "s1"),
        (np.array([0, 1], np.int64), "ax")]]
    dec = helper.make_graph(nodes, "decoder", inputs,
                            [helper.make_tensor_value_info(n, f, None) for n in ("masks", "iou_predictions",
                                                                                 "low_res_masks")], consts)
    opset = [helper.make_opsetid("", 13)]
    models = helper.make_model(enc, opset_imports=opset), helper.make_model(dec, opset_imports=opset)
    for m in models:
        m.ir_version = 8
    return models


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
