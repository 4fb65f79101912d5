"""The speed-ups around the model: two-thread downscale, the cut-out canvas, the buffer pool, the halves helper.

Each one must give exactly what its plain one-piece version gives; speed itself is measured in benchmarks/.
"""

from __future__ import annotations

import gc
import threading

import numpy as np
import pytest
from PIL import Image

from remove_background.imaging import buffers

from remove_background.imaging import compositing

from remove_background.imaging import halves

from remove_background.imaging import resample as inference

LANCZOS = Image.Resampling.LANCZOS


def photo(width: int, height: int) -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut()).resize((width, height), Image.Resampling.BICUBIC)


def one_piece_downscale(image: Image.Image, side: int) -> np.ndarray:
    """The same maths in one thread: box reduction, horizontal LANCZOS pass, vertical LANCZOS pass."""
    w, h = image.size
    factor = max(1, int(min(w / side, h / side) / inference.REDUCING_GAP))
    if factor == 1:  # no reduction: PIL's own resize, in the pass order the installed Pillow picks
        return np.asarray(image.resize((side, side), LANCZOS))
    reduced = image.reduce(factor)
    narrow = reduced.resize((side, reduced.height), LANCZOS, box=(0, 0, w / factor, reduced.height))
    return np.asarray(narrow.resize((side, side), LANCZOS, box=(0, 0, side, h / factor)))


@pytest.mark.parametrize("size, side", [((4096, 4096), 320), ((2048, 2048), 320), ((4097, 3001), 320),
                                        ((1283, 5000), 320), ((5000, 1283), 320), ((3421, 5488), 320),
                                        ((2076, 3352), 512), ((4100, 4100), 1024), ((1000, 700), 320),
                                        ((641, 641), 320), ((1024, 1024), 320), ((512, 512), 320),
                                        ((300, 2000), 320), ((200, 150), 320), ((1, 1), 320)])
def test_two_thread_downscale_equals_one_piece(size, side):
    image = photo(*size)
    ours = inference.downscale(image, side)
    assert ours.shape == (side, side, 3) and ours.dtype == np.uint8
    assert np.array_equal(ours, one_piece_downscale(image, side))


def test_model_input_normalises_like_rembg():
    """rembg: divide by the image maximum, subtract mean, divide by std, NCHW float32."""
    from remove_background import catalog, families

    info = catalog.get_model("u2netp")
    x, small = families.of(info).model_input(photo(900, 700), info)
    expected = (small / max(small.max(), 1e-6) - np.array(info.mean)) / np.array(info.std)
    assert x.shape == (1, 3, 320, 320) and x.dtype == np.float32 and x.flags.c_contiguous
    assert np.abs(x[0].transpose(1, 2, 0) - expected).max() < 1e-5


@pytest.mark.parametrize("size", [(1, 1), (3, 700), (700, 3), (513, 301), (1500, 1100)])
def test_cutout_equals_pil_convert_and_putalpha_with_rgb_cleared_under_alpha_0(size):
    rng = np.random.default_rng(1)
    rgb = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    before = rgb.tobytes()
    alpha = rng.integers(0, 256, (size[1], size[0]), dtype=np.uint8)
    expected = np.asarray(rgb.convert("RGBA")).copy()
    expected[..., 3] = alpha
    expected[alpha == 0] = 0  # nothing hides under transparency
    out = compositing.cutout(rgb, alpha)
    assert out.mode == "RGBA" and out.size == size and out.tobytes() == expected.tobytes()
    assert rgb.tobytes() == before


def test_cutout_takes_any_mode_as_colour():
    grey = Image.fromarray(np.arange(50 * 40, dtype=np.uint32).reshape(40, 50).astype(np.uint8), "L")
    alpha = np.full((40, 50), 9, np.uint8)
    out = compositing.cutout(grey, alpha)
    assert out.getpixel((7, 3)) == (*grey.convert("RGB").getpixel((7, 3)), 9)


def test_cutout_without_pils_internal_paste_gives_the_same(monkeypatch):
    """A Pillow without ``Image.im.paste`` (internal API) takes the public path, same pixels."""
    rgb = photo(600, 400)
    alpha = np.random.default_rng(2).integers(0, 256, (400, 600), dtype=np.uint8)
    fast = compositing.cutout(rgb, alpha).tobytes()

    def missing(*args):
        raise AttributeError("'ImagingCore' object has no attribute 'paste'")

    monkeypatch.setattr(compositing, "_copy_rows", missing)
    assert compositing.cutout(rgb, alpha).tobytes() == fast


def test_cutout_is_safe_to_edit_and_outlives_everything():
    rgb = photo(300, 300)
    alpha = np.full((300, 300), 200, np.uint8)
    out = compositing.cutout(rgb, alpha)
    out.putpixel((0, 0), (1, 2, 3, 4))  # a read-only-backed image copies on write, like Image.frombuffer
    assert out.getpixel((0, 0)) == (1, 2, 3, 4) and out.getpixel((1, 0))[3] == 200
    del rgb, alpha
    gc.collect()
    assert out.copy().getpixel((5, 5))[3] == 200


def address(array: np.ndarray) -> int:
    return array.__array_interface__["data"][0]


def test_pool_reuses_a_block_only_when_nothing_refers_to_it():
    pool = buffers.BufferPool(64 << 20)
    shape = (2048, 2048, 4)  # 16 MiB
    first = pool.empty(shape)
    block = address(first)
    other = pool.empty(shape)  # held to the end
    assert address(other) != block
    view = first[100:200]
    del first
    assert pool.idle_bytes() == 0  # a derived view keeps the block in use
    image = Image.frombuffer("RGBA", (2048, 100), view, "raw", "RGBA", 0, 1)
    del view
    assert pool.idle_bytes() == 0  # so does a PIL image on it
    del image
    assert pool.idle_bytes() == 16 << 20  # nothing refers to it any more: given back
    again = pool.empty(shape)
    assert address(again) == block and pool.idle_bytes() == 0
    assert other.shape == shape


def test_pool_keeps_results_that_callers_hold_intact(models_dir):
    """Two results held at once never share memory; dropping one lets the next call reuse its buffers."""
    from remove_background import remove

    image = photo(1200, 1000)
    a = remove(image, model="u2netp", models_dir=models_dir)
    a_image, a_mask = a.image.tobytes(), a.mask.tobytes()
    b = remove(image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), model="u2netp", models_dir=models_dir)
    assert a.image.tobytes() == a_image and a.mask.tobytes() == a_mask
    assert b.image.tobytes() != a_image
    del b
    gc.collect()
    c = remove(image.transpose(Image.Transpose.FLIP_TOP_BOTTOM), model="u2netp", models_dir=models_dir)
    assert a.image.tobytes() == a_image and a.mask.tobytes() == a_mask and c.image.size == (1200, 1000)


def test_pool_keeps_at_most_its_limit_idle_and_clear_frees_it():
    pool = buffers.BufferPool(40 << 20)
    held = [pool.empty((4096, 4096)) for _ in range(3)]  # 3 × 16 MiB in use: not counted against the limit
    assert pool.idle_bytes() == 0
    addresses = [address(a) for a in held]
    del held  # all three come back; only two fit in 40 MiB, the oldest is dropped
    assert pool.idle_bytes() == 32 << 20
    taken = pool.empty((4096, 4096))
    assert address(taken) in addresses[1:]
    assert pool.clear() == 16 << 20 and pool.idle_bytes() == 0
    small = pool.empty((10, 10))
    del small
    assert pool.idle_bytes() == 0  # small arrays are never pooled
    off = buffers.BufferPool(0)
    big = off.empty((4096, 4096))
    del big
    assert off.idle_bytes() == 0


def test_pool_gives_back_from_other_threads():
    pool = buffers.BufferPool(64 << 20)
    arrays = [pool.empty((2048, 2048)) for _ in range(4)]
    threads = [threading.Thread(target=arrays.pop) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert pool.idle_bytes() == 16 << 20


def test_pool_size_from_environment(monkeypatch):
    monkeypatch.setenv("REMOVE_BACKGROUND_BUFFER_MB", "0")
    assert buffers._limit_bytes() == 0
    monkeypatch.setenv("REMOVE_BACKGROUND_BUFFER_MB", "not a number")
    assert buffers._limit_bytes() == 384 << 20


def test_halves_cover_every_row_once_and_raise_after_both_finish():
    rows = []
    lock = threading.Lock()

    def record(top, bottom):
        with lock:
            rows.extend(range(top, bottom))
        return top, bottom

    assert halves.on_two_halves(record, 1000, step=7) == [(0, 497), (497, 1000)]
    assert sorted(rows) == list(range(1000))
    assert halves.on_two_halves(record, 100) == [(0, 100)]  # too small to split

    finished = []

    def fail_top(top, bottom):
        if top == 0:
            raise ValueError("top failed")
        finished.append(bottom)

    with pytest.raises(ValueError, match="top failed"):
        halves.on_two_halves(fail_top, 1000)
    assert finished == [1000]

    def fail_bottom(top, bottom):
        if top:
            raise ValueError("bottom failed")
        threading.Event().wait(0.05)
        finished.append(bottom)

    with pytest.raises(ValueError, match="bottom failed"):
        halves.on_two_halves(fail_bottom, 1000)
    assert finished == [1000, 500]  # the top half had finished before the error came out
