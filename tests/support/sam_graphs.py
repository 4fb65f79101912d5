"""Small ONNX graphs with Segment Anything's input and output names (an encoder and a decoder), for the tests of the
SAM family on ONNX Runtime and on the torch route: the encoder averages the image into a tiny embedding, the decoder
draws a disc of radius 150 around the first prompt point, in the 1024×684 frame SAM works in."""

from __future__ import annotations

import numpy as np

from remove_background.families import sam


DECODER_INPUTS = ["image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input", "orig_im_size"]


def disc_nodes(out: str) -> list:
    """Nodes that compute ``r2 - d2``, d the distance of each frame pixel to the first prompt point, as ``out``
    (1×1×FRAME_H×FRAME_W: positive inside the disc of radius √r2); their constants are ``disc_constants``."""
    from onnx import helper

    return [
        helper.make_node("Slice", ["point_coords", "s0", "s1", "ax"], ["p"]),  # the first point: [1, 1, 2]
        helper.make_node("Split", ["p"], ["px", "py"], axis=2),
        helper.make_node("Sub", ["gx", "px"], ["dx"]), helper.make_node("Sub", ["gy", "py"], ["dy"]),
        helper.make_node("Mul", ["dx", "dx"], ["dx2"]), helper.make_node("Mul", ["dy", "dy"], ["dy2"]),
        helper.make_node("Add", ["dx2", "dy2"], ["d2"]),
        helper.make_node("Sub", ["r2", "d2"], [out]),
    ]


def disc_constants(radius: float) -> list:
    """The initializers ``disc_nodes`` reads: the frame's pixel grid, the squared radius, the first point's slice."""
    from onnx import numpy_helper

    gy, gx = np.mgrid[0:sam.FRAME_H, 0:sam.FRAME_W].astype(np.float32)
    return [numpy_helper.from_array(a, n) for a, n in [
        (gx[None, None], "gx"), (gy[None, None], "gy"), (np.array(radius**2, np.float32), "r2"),
        (np.array([0, 0], np.int64), "s0"), (np.array([1, 1], np.int64), "s1"), (np.array([0, 1], np.int64), "ax")]]


def graph_models():
    """(encoder, decoder) ONNX models with SAM's input and output names."""
    from onnx import TensorProto, helper, numpy_helper

    f = TensorProto.FLOAT
    enc = helper.make_graph(
        [helper.make_node("ReduceMean", ["x"], ["m"], axes=[0, 1], keepdims=1),
         helper.make_node("Reshape", ["m", "shape"], ["image_embeddings"])],
        "encoder", [helper.make_tensor_value_info("x", f, [sam.FRAME_H, sam.FRAME_W, 3])],
        [helper.make_tensor_value_info("image_embeddings", f, [1, 3, 1, 1])],
        [numpy_helper.from_array(np.array([1, 3, 1, 1], np.int64), "shape")])
    inputs = [helper.make_tensor_value_info(n, f, None) for n in DECODER_INPUTS]
    nodes = [
        *disc_nodes("disc"),
        helper.make_node("ReduceSum", ["image_embeddings"], ["e"], keepdims=0),
        helper.make_node("Mul", ["e", "zero"], ["e0"]),
        helper.make_node("Add", ["disc", "e0"], ["masks"]),
        helper.make_node("Identity", ["e"], ["iou_predictions"]),
        helper.make_node("Identity", ["e"], ["low_res_masks"]),
    ]
    consts = disc_constants(150.0) + [numpy_helper.from_array(np.array(0.0, np.float32), "zero")]
    dec = helper.make_graph(nodes, "decoder", inputs,
                            [helper.make_tensor_value_info(n, f, None) for n in ("masks", "iou_predictions",
                                                                                 "low_res_masks")], consts)
    opset = [helper.make_opsetid("", 13)]
    models = helper.make_model(enc, opset_imports=opset), helper.make_model(dec, opset_imports=opset)
    for m in models:
        m.ir_version = 8
    return models
