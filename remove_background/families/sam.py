"""Segment Anything (ViT-B, the ONNX export rembg publishes): prompts in, one mask out.

The encoder takes the image scaled (aspect kept, zero padding) into a 1024×684 frame, as raw 0-255 float32 HWC;
the decoder takes the image embedding and the prompt points in that frame (a box is two points labelled 2 and 3,
and a padding point labelled -1 always follows). Its masks are mapped back to the image and united where they are
above 0. That is what rembg 2.0.69's SamSession does (a test compares the two on the same ONNX graphs); done here
so that rembg, and the opencv-python-headless it requires, need not be installed beside InvokeAI.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from PIL import Image

from .base import Family

FRAME_H, FRAME_W = 684, 1024
ORIG_IM_SIZE = np.array([FRAME_H, FRAME_W], np.float32)  # the decoder's masks come back at the frame's size


def centre_prompt(width: int, height: int) -> list:
    """rembg's default prompt: one foreground point at the image centre."""
    return [{"type": "point", "data": [int(width / 2), int(height / 2)], "label": 1}]


def prompt_points(prompt: list) -> tuple[np.ndarray, np.ndarray]:
    """(N×2 coordinates, N labels) from rembg-style marks: points keep their label, a box becomes two corners."""
    points, labels = [], []
    for mark in prompt:
        data = [float(v) for v in mark["data"]]
        if mark["type"] == "point":
            points.append(data[:2])
            labels.append(int(mark["label"]))
        elif mark["type"] == "rectangle":
            points += [data[0:2], data[2:4]]
            labels += [2, 3]
        else:
            raise ValueError(f"Unknown SAM prompt type {mark['type']!r}: use 'point' or 'rectangle'.")
    return np.asarray(points, np.float64).reshape(-1, 2), np.asarray(labels, np.float64)


def predict(encoder, decoder, rgb: Image.Image, prompt: Optional[list] = None) -> np.ndarray:
    """The H×W uint8 mask (0 or 255) that SAM gives for ``prompt`` (default: the centre point)."""
    import cv2

    width, height = rgb.size
    scale = min(FRAME_W / width, FRAME_H / height)
    to_frame = np.array([[scale, 0.0, 0.0], [0.0, scale, 0.0]])
    frame = cv2.warpAffine(np.asarray(rgb.convert("RGB")), to_frame, (FRAME_W, FRAME_H), flags=cv2.INTER_LINEAR)
    embedding = encoder.run(None, {encoder.get_inputs()[0].name: frame.astype(np.float32)})[0]

    points, labels = prompt_points(prompt or centre_prompt(width, height))
    coords = np.concatenate([points, [[0.0, 0.0]]]) * scale  # the padding point, then into the frame
    masks = decoder.run(None, {
        "image_embeddings": embedding,
        "point_coords": coords[None].astype(np.float32),
        "point_labels": np.concatenate([labels, [-1.0]])[None].astype(np.float32),
        "mask_input": np.zeros((1, 1, 256, 256), np.float32),
        "has_mask_input": np.zeros(1, np.float32),
        "orig_im_size": ORIG_IM_SIZE,
    })[0]
    to_image = np.array([[1.0 / scale, 0.0, 0.0], [0.0, 1.0 / scale, 0.0]])
    out = np.zeros((height, width), bool)
    for m in masks[0]:
        out |= cv2.warpAffine(m, to_image, (width, height), flags=cv2.INTER_LINEAR) > 0.0
    return out.astype(np.uint8) * 255


def options_prompt(options) -> Optional[list]:
    """rembg's SAM prompt from the options' point and/or box; None = rembg's centre point."""
    prompt = []
    if options.sam_point is not None:
        prompt.append({"type": "point", "data": list(options.sam_point), "label": 1})
    if options.sam_box is not None:
        prompt.append({"type": "rectangle", "data": list(options.sam_box), "label": 1})
    return prompt or None


class SAM(Family):
    """Segment Anything: an encoder file and a decoder file; prompts from the options (default: the centre)."""

    key = "sam"
    title = "Segment Anything"
    torch_note = "encoder and decoder; the decoder once more for each new prompt size"

    def mask(self, model, rgb, options) -> np.ndarray:
        return predict(*model.sessions, rgb, options_prompt(options))

    def torch_input_shapes(self, info, file_index: int) -> dict:
        """The shapes ``predict`` feeds the encoder (0) and, for the default one-point prompt, the decoder (1): what
        the torch backend converts each graph for first (another prompt size gets its own conversion on first use)."""
        if file_index == 0:
            return {0: (FRAME_H, FRAME_W, 3)}
        return {"image_embeddings": (1, 256, 64, 64), "point_coords": (1, 2, 2), "point_labels": (1, 2),
                "mask_input": (1, 1, 256, 256), "has_mask_input": (1,)}

    def torch_frozen_inputs(self, info, file_index: int) -> dict:
        """Decoder inputs ``predict`` always feeds the same value: the torch backend folds them into the graph (the
        decoder's last Resize then has a constant size)."""
        return {"orig_im_size": ORIG_IM_SIZE} if file_index == 1 else {}
