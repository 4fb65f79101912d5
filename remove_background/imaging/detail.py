"""Edge detail: a second look at the subject, and edge-aware upsampling of the mask.

Every rembg model sees the image at its own small input size (320² for u2net/u2netp, 1024² for isnet/birefnet),
so on a big photo, or on a subject that fills a small part of the frame, the mask is computed from a few dozen
pixels across the subject and then stretched. ``detailed_mask`` (edge detail "high") adds two steps to the
single pass:

1. **Crop and refine.** The first pass's mask gives the subjects' bounding boxes (connected components, small
   specks dropped, nearby boxes merged, at most ``MAX_CROPS`` boxes). Each box, with a margin, is cropped from the
   full-size image and run through the model again at the model's own input size; the crop's mask replaces the
   first pass's inside the box, feathered into it near the box's edges (unless the two masks hardly overlap:
   then the second look found something else, and the first pass stays). A box where the model would not see at
   least ``MIN_GAIN``× more of the image's own pixels (on both axes) gets no second pass: it would see nearly
   the same pixels again (a subject that fills the frame, or an image no bigger than the model's input, costs
   only the upsampling below).
2. **Guided upsampling.** Each model-size mask is lifted to its full size by a guided filter whose guide is the
   full-resolution image, so the mask's edges move onto the photo's real edges instead of staying where a
   bilinear stretch puts them (it decides only where the bilinear mask is between 4 % and 96 %, so the photo's
   own texture cannot leak into solid parts of the mask). The filter only runs on tiles where the mask has an
   edge (elsewhere it would return the bilinear mask unchanged), which keeps it cheap at 4096² and beyond. It uses
   OpenCV's ``cv2.ximgproc.guidedFilter`` when opencv-contrib is installed (InvokeAI ships it) and otherwise an
   equivalent guided filter built from ``cv2.boxFilter`` (plain opencv-python-headless has no ximgproc).

3. **Haze.** Values up to ``HAZE`` (10 %) become 0 and those from there to 50 % are stretched back over
   0..50 %: the faint background haze that the models leave goes; the 50 % contour does not move.

Only families whose model gives one plain mask take this path (``Family.edge_detail``: not cloth's class map, not
Segment Anything); the family passes the model run for a crop.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
from PIL import Image

Box = tuple[int, int, int, int]  # left, top, right, bottom (exclusive), full-size pixels

MARGIN = 0.25  # the crop around a subject's box, as a fraction of the box's longer side, on each side
MIN_GAIN = 1.6  # a second pass only where the model sees at least this many times more pixels across the crop
MIN_AGREEMENT = 0.5  # a second pass whose mask (at 50 %) has less than this of the smaller of the two masks in
#                     common with the first's is not used (it found something else)
NEAR = 0.25  # boxes closer than this fraction of the larger box's side are merged (a subject's detached parts)
MIN_CROP = 0.5  # a crop is at least this fraction of the model's input size (full-size pixels) on each side
MAX_CROPS = 2  # at most this many second passes: more subjects are merged into fewer boxes, or the biggest chosen
MIN_COMPONENT = 0.02  # components smaller than this fraction of the largest one are specks, not subjects
FOREGROUND = 96  # a model-size mask value above this counts towards a subject's box
RADIUS_FACTOR = 1.0  # guided filter radius, in full-size pixels per model-size pixel
MIN_RADIUS = 2
EPS = 1e-4  # guided filter regulariser, on a 0..1 guide: smaller follows the photo's edges more closely, larger blurs
HAZE = 0.10  # the faint haze the models leave in the background: values up to this go to 0 (up to 50 % stretched)
UNSURE = (10, 245)  # the guided filter replaces the bilinear mask only where that is strictly between these
TILE = 128  # the guided filter runs on TILE×TILE full-size tiles that hold an edge


# ---------------------------------------------------------------------------------------------------------------
# The guided filter: OpenCV contrib's where installed, else the same maths on cv2.boxFilter


def _has_ximgproc() -> bool:
    import cv2

    return hasattr(cv2, "ximgproc") and hasattr(cv2.ximgproc, "guidedFilter")


def guided_filter_box(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter with a one-channel guide (float32 H×W, values 0..1), built from cv2.boxFilter:
    the fallback where cv2.ximgproc is missing. Equal to ``cv2.ximgproc.guidedFilter`` with a grey guide within
    float rounding (tested)."""
    import cv2

    k = (2 * radius + 1, 2 * radius + 1)

    def mean(a: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(a, cv2.CV_32F, k, normalize=True, borderType=cv2.BORDER_REFLECT)

    mean_i, mean_p = mean(guide), mean(src)
    cov_ip = mean(guide * src) - mean_i * mean_p
    var_i = mean(guide * guide) - mean_i * mean_i
    a = cov_ip / (var_i + np.float32(eps))
    b = mean_p - a * mean_i
    return mean(a) * guide + mean(b)


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float, use_ximgproc: Optional[bool] = None):
    """Guided filter of ``src`` (float32 H×W) by ``guide`` (float32 H×W, 0..1): cv2.ximgproc's where installed
    (or forced with ``use_ximgproc=True``), else ``guided_filter_box``."""
    if use_ximgproc is None:
        use_ximgproc = _has_ximgproc()
    if use_ximgproc:
        import cv2

        return cv2.ximgproc.guidedFilter(guide, src, radius, eps)
    return guided_filter_box(guide, src, radius, eps)


def _grey(rgb: np.ndarray) -> np.ndarray:
    """A float32 0..1 luma plane of an H×W×3 uint8 image."""
    import cv2

    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) * np.float32(1 / 255)


def _edge_cells(low: np.ndarray) -> np.ndarray:
    """Model-size cells where the mask changes within one cell (its 3×3 max minus min over 8 grey levels)."""
    import cv2

    kernel = np.ones((3, 3), np.uint8)
    return (cv2.dilate(low, kernel).astype(np.int16) - cv2.erode(low, kernel)) > 8


def _pixels(rgb, box: Box) -> np.ndarray:
    """The H×W×3 uint8 pixels of ``rgb`` (a PIL image or an array) inside ``box`` (left, top, right, bottom)."""
    left, top, right, bottom = box
    if isinstance(rgb, Image.Image):  # a crop is cheaper than converting the whole image to an array
        return np.asarray(rgb.crop(box))
    return np.ascontiguousarray(rgb[top:bottom, left:right])


def guided_upsample(
    low: np.ndarray,
    rgb,
    base: Optional[np.ndarray] = None,
    radius: Optional[int] = None,
    eps: Optional[float] = None,
    use_ximgproc: Optional[bool] = None,
) -> np.ndarray:
    """Lift the model-size uint8 mask ``low`` to the size of ``rgb`` (an RGB PIL image, or H×W×3 uint8), guided by
    ``rgb``.

    ``base``: ``low`` already resized to H×W bilinearly (the single pass's mask), reused if given. The radius is
    the number of full-size pixels per model-size pixel (at least ``MIN_RADIUS``), so an edge can move by up to
    one model pixel onto the photo's edge. Only TILE×TILE tiles that hold an edge of ``low`` are filtered, and the
    filter's value is taken only where the bilinear mask is unsure (strictly inside UNSURE): where the stretch is
    already 0 or 1, the photo's texture must not leak into the mask.
    Returns a new uint8 H×W array (``base`` is not modified)."""
    import cv2

    w, h = rgb.size if isinstance(rgb, Image.Image) else (rgb.shape[1], rgb.shape[0])
    if base is None:
        base = cv2.resize(low, (w, h), interpolation=cv2.INTER_LINEAR if w >= low.shape[1] else cv2.INTER_AREA)
    out = base.copy()
    factor = max(w / low.shape[1], h / low.shape[0])
    r = radius if radius is not None else max(MIN_RADIUS, int(round(factor * RADIUS_FACTOR)))
    eps = EPS if eps is None else eps
    cells = _edge_cells(low)
    if not cells.any():
        return out
    # which tiles hold an edge cell: map each edge cell's full-size extent onto the tile grid
    ty, tx = -(-h // TILE), -(-w // TILE)
    tiles = np.zeros((ty, tx), bool)
    cy, cx = np.nonzero(cells)
    sy, sx = h / low.shape[0], w / low.shape[1]
    y0 = np.clip(((cy - 1) * sy) // TILE, 0, ty - 1).astype(int)
    y1 = np.clip(((cy + 2) * sy) // TILE, 0, ty - 1).astype(int)
    x0 = np.clip(((cx - 1) * sx) // TILE, 0, tx - 1).astype(int)
    x1 = np.clip(((cx + 2) * sx) // TILE, 0, tx - 1).astype(int)
    for a, b, c, d in set(zip(y0, y1, x0, x1)):
        tiles[a : b + 1, c : d + 1] = True
    # filter each run of edge tiles along a tile row in one call, padded by the radius
    for row in range(ty):
        cols = np.flatnonzero(tiles[row])
        if cols.size == 0:
            continue
        runs = np.split(cols, np.flatnonzero(np.diff(cols) > 1) + 1)
        top, bottom = row * TILE, min(h, (row + 1) * TILE)
        for run in runs:
            left, right = run[0] * TILE, min(w, (run[-1] + 1) * TILE)
            pt, pb, pl, pr = max(0, top - r), min(h, bottom + r), max(0, left - r), min(w, right + r)
            guide = _grey(_pixels(rgb, (pl, pt, pr, pb)))
            src = base[pt:pb, pl:pr].astype(np.float32) * np.float32(1 / 255)
            q = guided_filter(guide, src, r, eps, use_ximgproc)
            q = np.clip(q[top - pt : bottom - pt, left - pl : right - pl] * 255 + 0.5, 0, 255).astype(np.uint8)
            tile = out[top:bottom, left:right]
            unsure = (tile > UNSURE[0]) & (tile < UNSURE[1])  # the filter decides only where the stretch is unsure
            np.copyto(tile, q, where=unsure)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Where the subjects are


def _merge(a: Box, b: Box) -> Box:
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def _area(b: Box) -> int:
    return max(0, b[2] - b[0]) * max(0, b[3] - b[1])


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _near(a: Box, b: Box) -> bool:
    """The boxes overlap once grown by NEAR of the larger one's longer side."""
    g = int(NEAR * max(a[2] - a[0], a[3] - a[1], b[2] - b[0], b[3] - b[1]))
    return _overlap((a[0] - g, a[1] - g, a[2] + g, a[3] + g), b)


def _with_margin(box: Box, width: int, height: int, min_side: int = 1) -> Box:
    """The box grown by MARGIN of its longer side on each side (and to at least ``min_side``), made square where
    the frame allows (the model sees a square), clipped to the frame."""
    left, top, right, bottom = box
    side = max(right - left, bottom - top)
    side = max(min_side, int(round(side * (1 + 2 * MARGIN))))
    cx, cy = (left + right) / 2, (top + bottom) / 2
    sw, sh = min(side, width), min(side, height)
    x0 = int(round(min(max(cx - sw / 2, 0), width - sw)))
    y0 = int(round(min(max(cy - sh / 2, 0), height - sh)))
    return x0, y0, x0 + sw, y0 + sh


def subject_boxes(low: np.ndarray, width: int, height: int) -> list[Box]:
    """Crop boxes (full-size pixels, margin included) around the subjects in the model-size mask ``low``, biggest
    subject first, at most MAX_CROPS. Boxes that overlap or nearly touch are merged; while there are more than
    MAX_CROPS, the two closest are merged as long as the union still helps. Only boxes that a second pass can
    help are returned: where the model would see at least MIN_GAIN times more of the image's pixels across the
    box on both axes (so never on an image no bigger than the model's input); past MAX_CROPS the biggest
    subjects win, and the others keep the (guided) first pass. Empty when there is no subject."""
    import cv2

    fg = (low > FOREGROUND).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    if n <= 1:
        return []
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.flatnonzero(areas >= max(2, MIN_COMPONENT * areas.max())) + 1
    sx, sy = width / low.shape[1], height / low.shape[0]
    boxes: list[tuple[Box, int]] = []  # (box, subject area in model pixels)
    for i in keep:
        x, y, bw, bh = stats[i, :4]
        full = (int(x * sx), int(y * sy), int(np.ceil((x + bw) * sx)), int(np.ceil((y + bh) * sy)))
        boxes.append((_with_margin(full, width, height, int(MIN_CROP * min(low.shape))), int(stats[i, 4])))

    def helps(box: Box) -> bool:
        return _gain(box, width, height, low.shape) >= MIN_GAIN

    merged = True
    while merged:
        merged = False
        pairs = [(i, j) for i in range(len(boxes)) for j in range(i + 1, len(boxes))]
        near = [p for p in pairs if _near(boxes[p[0]][0], boxes[p[1]][0])]
        if not near and len(boxes) > MAX_CROPS:  # too many: merge the closest two if the union still helps
            closest = min(pairs, key=lambda p: _area(_merge(boxes[p[0]][0], boxes[p[1]][0])))
            near = [closest] if helps(_merge(boxes[closest[0]][0], boxes[closest[1]][0])) else []
        if near:
            i, j = near[0]
            (a, area_a), (b, area_b) = boxes[i], boxes.pop(j)
            boxes[i] = (_merge(a, b), area_a + area_b)
            merged = True
    boxes.sort(key=lambda ba: -ba[1])  # still too many: the biggest subjects that a pass helps get one
    return [b for b, _ in boxes if helps(b)][:MAX_CROPS]


def _gain(box: Box, width: int, height: int, model_shape: tuple[int, int]) -> float:
    """How many times more of the image's own pixels the model sees across ``box`` in a second pass than it saw
    in the first (the lesser of the two axes; the model never sees more than the image's own pixels)."""
    sh, sw = model_shape
    bw, bh = box[2] - box[0], box[3] - box[1]
    gx = min(1.0, sw / bw) / min(1.0, sw / width)
    gy = min(1.0, sh / bh) / min(1.0, sh / height)
    return min(gx, gy)


def _feather(box: Box, width: int, height: int) -> np.ndarray:
    """Weights (float32, box-sized) for the crop's mask: 1 inside, falling to 0 towards the box's sides that are
    inside the frame (the crop's mask there saw a cut context), over a quarter of the margin."""
    left, top, right, bottom = box
    bw, bh = right - left, bottom - top
    ramp = max(1, int(min(bw, bh) * MARGIN / (1 + 2 * MARGIN) / 2))

    def axis(n: int, at_start: bool, at_end: bool) -> np.ndarray:
        i = np.arange(n, dtype=np.float32)
        wgt = np.ones(n, np.float32)
        if not at_start:
            wgt = np.minimum(wgt, (i + 0.5) / ramp)
        if not at_end:
            wgt = np.minimum(wgt, (n - i - 0.5) / ramp)
        return np.clip(wgt, 0.0, 1.0)

    wx = axis(bw, left == 0, right == width)
    wy = axis(bh, top == 0, bottom == height)
    return wy[:, None] * wx[None, :]


# ---------------------------------------------------------------------------------------------------------------
# The detail pass


def detailed_mask(
    rgb: Image.Image,
    first_small: np.ndarray,
    first_full: Optional[np.ndarray] = None,
    *,
    run: Callable[[Image.Image], np.ndarray],
    rgb_array: Optional[np.ndarray] = None,
) -> np.ndarray:
    """The "high" edge-detail mask of ``rgb`` (uint8 H×W, the image's size; a new array).

    ``first_small``: the single pass's model-size uint8 mask; ``first_full``: the same upscaled to the image's size
    (``resample.upscale_mask``), reused as the bilinear base if given (not modified). ``run(crop)``: the model's
    model-size mask of a crop (the family's model run). ``rgb_array``: ``np.asarray(rgb)`` if the caller already
    has it.
    """
    width, height = rgb.size
    source = rgb if rgb_array is None else rgb_array
    out = guided_upsample(first_small, source, first_full)
    for box in subject_boxes(first_small, width, height):
        left, top, right, bottom = box
        crop_small = run(rgb.crop(box))
        refined = guided_upsample(crop_small, _pixels(source, box))
        region = out[top:bottom, left:right]
        if _agreement(refined, region) < MIN_AGREEMENT:  # the second look found something else: keep the first
            continue
        weight = _feather(box, width, height)
        region = region.astype(np.float32)
        region += weight * (refined.astype(np.float32) - region)
        out[top:bottom, left:right] = np.clip(region + 0.5, 0, 255).astype(np.uint8)
    return clear_haze(out)


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    """The share of the smaller of the two masks (at 50 %) that the other one covers (1 when both are empty)."""
    fa, fb = a > 127, b > 127
    smaller = min(np.count_nonzero(fa), np.count_nonzero(fb))
    if smaller == 0:
        return float(np.count_nonzero(fa) == np.count_nonzero(fb))
    return np.count_nonzero(fa & fb) / smaller


def clear_haze(mask: np.ndarray, haze: float = HAZE) -> np.ndarray:
    """``mask`` (uint8) with values up to ``haze`` × 255 set to 0 and those from there to 50 % stretched linearly
    over 0..50 %, in place: the models' faint background haze goes, and the 50 % contour, the opaque parts and
    the upper half of soft edges stay where they are."""
    import cv2

    lo = haze * 255
    v = np.arange(256, dtype=np.float32)
    lut = np.where(v < 127.5, np.maximum(v - lo, 0) * (127.5 / (127.5 - lo)), v)
    return cv2.LUT(mask, np.clip(lut + 0.5, 0, 255).astype(np.uint8), dst=mask)
