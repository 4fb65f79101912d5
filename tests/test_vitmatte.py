"""ViTMatte, rembg 2.0.86's learned edge refinement (issue 26), against rembg's own code on the same files.

The graphs (tests/support/vitmatte_graphs.py): ViTMatte's real architecture (transformers' ``VitMatteForImageMatting``, hustvl's
small and base configurations) with random weights, exported at 1024² as rembg's files were; and a pointwise graph
with the same input and output whose alpha is a known function of each pixel's input, for the windows. rembg 2.0.86
runs in its own small environment (tests/newer_references.py), its checkpoint read from U2NET_HOME, where ours finds
it too (rembg's folders are searched).

"Faithful" is the bound the other models meet (.readme/development.md): mean difference ≤ 0.5 on 0-255 and ≥ 99.9 %
of pixels on the same side of 127. Real checkpoints cannot be fetched here: the quality of the alpha on real hair is
not measured; what is tested is that rembg's method, on graphs of the same architecture, gives the same alpha.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from remove_background import ModelChecksumError, ModelNotAvailableError, RemovalOptions, catalog, families, remove
from remove_background.backends import cache, models
from remove_background.imaging import refine
from remove_background.imaging.matting import decontaminate, trimap
from remove_background.imaging.windows import Windows
from remove_background.pipeline import load_model

pytest.importorskip("onnxruntime")
from support import vitmatte_graphs  # noqa: E402

DEFAULT = catalog.DEFAULT_VITMATTE
ARCHITECTURE_OF, COMPARED = vitmatte_graphs.ARCHITECTURE_OF, vitmatte_graphs.COMPARED
SETTINGS = [  # the trimap's settings, as remove() and rembg's vitmatte_alpha name them
    dict(foreground_threshold=240, background_threshold=10, erode_size=10),  # rembg's defaults
    dict(foreground_threshold=200, background_threshold=50, erode_size=0),  # scipy still erodes 1 px at size 0
    dict(foreground_threshold=230, background_threshold=20, erode_size=4),  # an even size: scipy's own anchor
]


def matting_options(settings: dict):
    return RemovalOptions(alpha_matting_foreground_threshold=settings["foreground_threshold"],
                          alpha_matting_background_threshold=settings["background_threshold"],
                          alpha_matting_erode_size=settings["erode_size"]).matting


@pytest.fixture(scope="session")
def small_graph() -> Path:
    pytest.importorskip("transformers")
    return vitmatte_graphs.exported("small")


@pytest.fixture
def place(monkeypatch, tmp_path):
    """``place(graph, variant=DEFAULT)``: the file as that checkpoint in U2NET_HOME (where rembg and we look), our
    catalog row's checksum set to None (the state of a file with no published checksum). Returns the folder."""
    home = Path(os.environ["U2NET_HOME"])

    def place(graph: Path, variant: str = DEFAULT) -> Path:
        name = catalog.VITMATTE_PREFIX + variant
        target = home / f"{name}.onnx"
        target.unlink(missing_ok=True)
        target.symlink_to(graph)
        info = catalog.REFINERS[name]
        unverified = dataclasses.replace(info, files=(dataclasses.replace(info.primary_file, checksum=None),))
        monkeypatch.setitem(catalog.REFINERS, name, unverified)
        return home

    yield place
    cache.clear_sessions()


def photo(name: str, size: tuple[int, int]) -> Image.Image:
    from skimage import data

    return Image.fromarray(getattr(data, name)()).resize(size, Image.Resampling.BICUBIC)


def u2netp_mask(image: Image.Image, models_dir: Path, **options) -> np.ndarray:
    return np.asarray(remove(image, model="u2netp", models_dir=models_dir, **options).mask)


def refined(image: Image.Image, mask: np.ndarray, provider: str = "cpu", variant: str = DEFAULT,
            settings: dict = SETTINGS[0]) -> np.ndarray:
    """Our refiner's alpha for ``mask`` (the family's step, as Work runs it)."""
    model = load_model(catalog.VITMATTE_PREFIX + variant, provider, allow_download=False)
    return model.family.refine(model, image, np.asarray(image), mask, matting_options(settings))


def departures(mine: np.ndarray, theirs: np.ndarray) -> list[str]:
    mine, theirs = mine.astype(np.int16), theirs.astype(np.int16)
    diff = np.abs(mine - theirs)
    same = ((mine > 127) == (theirs > 127)).mean()
    line = f"mean {diff.mean():.3f}, max {diff.max()}, {same:.3%} same side"
    return [line] if diff.mean() > 0.5 or same < 0.999 else []


def measured(mine: np.ndarray, theirs: np.ndarray) -> str:
    diff = np.abs(mine.astype(np.int16) - theirs.astype(np.int16))
    return f"mean {diff.mean():.3f}, max {diff.max()}, {((mine > 127) == (theirs > 127)).mean():.3%} same side"


# --- the catalog ----------------------------------------------------------------------------------------------------

def test_the_four_rows_are_rembgs_checkpoints():
    """Names, URLs, sha256s, input size and default read from rembg 2.0.86's own matting.py."""
    script = ("import json; from rembg import matting as m; print(json.dumps(dict(url=m.BASE_URL, size=m.INPUT_SIZE, "
              "default=m.DEFAULT_VARIANT, variants=m.VARIANTS)))")
    done = subprocess.run([str(vitmatte_graphs.rembg_python()), "-c", script], capture_output=True, text=True,
                          timeout=600, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    theirs = json.loads(done.stdout.strip().splitlines()[-1])
    assert catalog.DEFAULT_VITMATTE == theirs["default"]
    assert list(catalog.VITMATTE_VARIANTS) == list(theirs["variants"])
    for variant, spec in theirs["variants"].items():
        info = catalog.REFINERS[catalog.VITMATTE_PREFIX + variant]
        assert info.primary_file.filename == spec["fname"] and info.input_size == theirs["size"]
        assert info.primary_file.url == f"{theirs['url']}/{spec['fname']}"
        assert info.primary_file.checksum == f"sha256:{spec['sha256']}"
        assert families.of(info).key == "vitmatte"
        assert info.primary_file.approx_mb == {"small": 110, "base": 380}[ARCHITECTURE_OF[info.name]]
        assert info.commercial_use == ("composition-1k" not in variant)  # Adobe's data: non-commercial research
        assert ("NON-COMMERCIAL" in info.licence) == ("composition-1k" in variant) and "Apache-2.0" in info.licence
    assert set(catalog.REFINERS) == COMPARED and not set(catalog.REFINERS) & set(catalog.MODEL_NAMES)


# --- faithful to rembg ----------------------------------------------------------------------------------------------

FIDELITY_CASES = [("astronaut", (1024, 1024)), ("chelsea", (800, 600)), ("coffee", (600, 900)),
                  ("astronaut", (333, 500))]


@pytest.mark.slow
def test_alpha_equals_rembgs_vitmatte_alpha(small_graph, place, models_dir):
    """The same image, mask (u2netp's) and ONNX file: our family's alpha against rembg's ``vitmatte_alpha``, images up
    to 1024², with rembg's default trimap settings, erode size 0 and an even erode size."""
    home = place(small_graph)
    cases = []
    for i, (name, size) in enumerate(FIDELITY_CASES):
        image = photo(name, size)
        cases.append((image, u2netp_mask(image, models_dir), SETTINGS[i % len(SETTINGS)]))
    theirs = vitmatte_graphs.rembg_alphas(home, DEFAULT, cases)
    found, lines = [], []
    for (image, mask, settings), alpha in zip(cases, theirs):
        assert ((trimap(mask, matting_options(settings)) == 128).mean()) > 0.01  # a real band to refine
        assert 0.05 < (alpha > 127).mean() < 0.95 and alpha.std() > 30  # a real, soft split
        mine = refined(image, mask, settings=settings)
        lines.append(f"{image.size} {settings}: {measured(mine, alpha)}")
        found += [f"{image.size}: {d}" for d in departures(mine, alpha)]
    print("\n".join(lines))
    assert not found, "\n".join(found + lines)


@pytest.mark.slow
def test_remove_with_vitmatte_equals_rembgs_remove(small_graph, place, models_dir):
    """rembg's whole ``remove(image, session=u2netp, vitmatte=True)`` against ours: the model's mask, then ViTMatte
    on it, its alpha the cut-out's. Images at u2netp's size or smaller than it on one side, where our u2netp mask is
    rembg's own (tests/test_model_families.py). With post_process_mask the two differ before ViTMatte runs: rembg
    2.0.86 rewrote post_process (skimage's opening, scipy's untruncated Gaussian) and ours stays 2.0.69's (OpenCV,
    5×5); that post-process comes first and ViTMatte after it: test_order_thresholds_precedence_and_colours."""
    home = place(small_graph)
    (home / "u2netp.onnx").symlink_to(models_dir / "u2netp.onnx")
    images = [photo("astronaut", (320, 320)), photo("chelsea", (480, 300))]
    settings = {"alpha_matting_erode_size": 6}
    theirs = vitmatte_graphs.rembg_cutouts(home, "u2netp", DEFAULT, [(image, settings) for image in images])
    found, lines = [], []
    for image, cut in zip(images, theirs):
        mine = remove(image, model="u2netp", vitmatte=True, models_dir=models_dir, **settings)
        assert np.array_equal(np.asarray(mine.image)[..., 3], np.asarray(mine.mask))
        alpha = np.asarray(mine.mask)
        lines.append(f"{image.size}: {measured(alpha, cut[..., 3])}")
        found += departures(alpha, cut[..., 3])
    print("\n".join(lines))
    assert not found, "\n".join(lines)


@pytest.mark.slow
def test_base_architecture_equals_rembgs(place, models_dir):
    """ViTMatte-B (96.7 M parameters, rembg's base-* checkpoints' architecture), one image."""
    pytest.importorskip("transformers")
    home = place(vitmatte_graphs.exported("base"), "base-distinctions-646")
    image = photo("coffee", (700, 520))
    mask = u2netp_mask(image, models_dir)
    theirs = vitmatte_graphs.rembg_alphas(home, "base-distinctions-646", [(image, mask, SETTINGS[0])])[0]
    mine = refined(image, mask, variant="base-distinctions-646")
    print(measured(mine, theirs))
    assert not departures(mine, theirs), measured(mine, theirs)


# --- beyond rembg: windows at the image's own resolution -------------------------------------------------------------

def band_mask(size: tuple[int, int], corner: bool = False) -> np.ndarray:
    """A soft-edged subject: skimage's horse over the whole image (or in its top-left corner only)."""
    import cv2
    from skimage import data

    width, height = size
    horse = (~data.horse()).astype(np.uint8) * 255
    if corner:
        mask = np.zeros((height, width), np.uint8)
        mask[:300, :400] = cv2.resize(horse, (400, 300), interpolation=cv2.INTER_AREA)
    else:
        mask = cv2.resize(horse, (width, height), interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(mask, (0, 0), 6)


class Counting:
    """A session that counts its runs (what windows cost)."""

    def __init__(self, inner):
        self.inner, self.runs = inner, 0

    def get_inputs(self):
        return self.inner.get_inputs()

    def run(self, names, feeds):
        self.runs += 1
        return self.inner.run(names, feeds)


def counted(provider: str = "cpu"):
    model = load_model(catalog.VITMATTE_PREFIX + DEFAULT, provider, allow_download=False)
    counter = Counting(model.main)
    return dataclasses.replace(model, sessions=[counter]), counter


@pytest.mark.parametrize("provider", ["cpu", "torch"])
@pytest.mark.parametrize("size", [(2600, 1800), (1300, 600), (700, 1500)])
def test_windows_blend_exactly(size, provider, place, tmp_path):
    """A graph whose alpha is a known function of each pixel's input: every pixel of the band equals that function of
    the full-resolution image and trimap (within the last bit of float32, at most 1 level on a few pixels), the sure
    pixels keep the trimap's 0 and 255, and only windows that hold a band pixel ran. Sizes: a 3×2 grid of windows,
    one narrower than a window (padded), one taller."""
    if provider == "torch":
        pytest.importorskip("onnx2torch")
    place(vitmatte_graphs.pointwise(tmp_path, "pointwise.onnx"))
    image, mask = photo("astronaut", size), band_mask(size)
    model, counter = counted(provider)
    settings = matting_options(SETTINGS[0])
    mine = model.family.refine(model, image, np.asarray(image), mask, settings)
    tri = trimap(mask, settings)
    band = tri == 128
    expected = np.where(band, vitmatte_graphs.pointwise_alpha(np.asarray(image), tri), tri)
    diff = np.abs(mine.astype(np.int16) - expected)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-4, (diff.max(), (diff > 0).sum())
    grid = Windows(size[1], size[0], 1024, 256)
    assert counter.runs == len(grid.wanted(band)) > 1


def test_windows_without_band_cost_nothing(place, tmp_path):
    """A 3000² image whose band lies in one corner runs the one window there; a mask with no band runs nothing and
    returns its trimap at once."""
    place(vitmatte_graphs.pointwise(tmp_path, "pointwise.onnx"))
    image = photo("astronaut", (3000, 3000))
    model, counter = counted()
    settings = matting_options(SETTINGS[0])
    model.family.refine(model, image, np.asarray(image), band_mask((3000, 3000), corner=True), settings)
    assert counter.runs == 1 and len(Windows(3000, 3000, 1024, 256).tops) ** 2 == 16
    counter.runs = 0
    sure = np.zeros((3000, 3000), np.uint8)  # nothing at all; a sure square with erode size 1 (a 1×1 structure)
    square = sure.copy()
    square[1000:2000, 1000:2000] = 255
    for mask, erode in ((sure, 10), (square, 1)):
        options = matting_options(dict(SETTINGS[0], erode_size=erode))
        t0 = time.perf_counter()
        out = model.family.refine(model, image, np.asarray(image), mask, options)
        assert counter.runs == 0 and time.perf_counter() - t0 < 5.0
        assert np.array_equal(out, trimap(mask, options)) and not (out == 128).any()


def test_the_blend_weights_are_a_partition_of_unity():
    from remove_background.imaging.windows import origins, partition

    for length in (700, 1024, 1025, 1300, 2600, 6000):
        starts = origins(length, 1024, 256)
        assert starts[0] == 0 and starts[-1] + min(1024, length) == length
        assert all(b - a <= 1024 - 256 for a, b in zip(starts, starts[1:]))  # neighbours overlap by ≥ 256
        total = np.zeros(length)
        for start, weight in zip(starts, partition(length, starts, 1024, 256)):
            assert (weight > 0).all()
            total[start:start + len(weight)] += weight
        assert np.allclose(total, 1.0)


# --- the torch route ----------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("size", [(640, 480), (1300, 700)])
def test_torch_route_equals_onnx_runtime(size, small_graph, place, models_dir):
    """The ViTMatte graph converts (backends/pytorch/convert.py, no converter of its own) and its alpha is ONNX
    Runtime's within the same bounds, rembg's way (≤ 1024²) and in windows."""
    pytest.importorskip("onnx2torch")
    place(small_graph)
    image = photo("chelsea", size)
    mask = u2netp_mask(image, models_dir)
    cpu, torch_alpha = refined(image, mask, "cpu"), refined(image, mask, "torch")
    print(measured(torch_alpha, cpu))
    assert not departures(torch_alpha, cpu), measured(torch_alpha, cpu)


@pytest.mark.slow
def test_converted_vitmatte_holds_its_file_once_and_reads_nothing_back(small_graph):
    """ViTDet's relative-position tables, which the fold gathers into a [64, 64, 64] tensor per global block, stay
    the file's size (rewrites/tables.py; the module held 1.09x the file's values before), bit for bit what ONNX
    Runtime computes, and a forward reads nothing back to the host."""
    pytest.importorskip("onnx2torch")
    import onnx
    import onnxruntime as ort
    import torch

    from remove_background.backends.pytorch.convert import convert
    from remove_background.backends.pytorch.host_reads import count_host_reads
    from remove_background.backends.pytorch.weights import held_values

    module = convert(small_graph, "vitmatte", {"pixel_values": [1, 4, 1024, 1024]})
    values = sum(int(np.prod(t.dims)) for t in onnx.load(str(small_graph), load_external_data=False).graph.initializer)
    assert held_values(module) <= 1.05 * values, held_values(module) / values
    x = vitmatte_graphs.reference_input()
    reads = count_host_reads(module, torch.from_numpy(x))
    assert reads.total == 0, reads.counts
    with torch.no_grad():
        alpha = module(torch.from_numpy(x))
    session = ort.InferenceSession(str(small_graph), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"pixel_values": x})[0]
    assert np.abs(alpha.numpy() - expected).max() < 1e-3


@pytest.mark.slow
def test_torch_route_with_the_device_steps(small_graph, place, models_dir, monkeypatch):
    """Where the model's steps run on its device (DeviceWork: here forced onto the CPU), the mask comes home for
    ViTMatte and the result is the host route's within the bounds."""
    pytest.importorskip("onnx2torch")
    place(small_graph)
    image = photo("astronaut", (500, 400))
    host = remove(image, model="u2netp", provider="torch", vitmatte=True, models_dir=models_dir)
    monkeypatch.setattr(models, "DEVICE_WORK_ON_CPU", True)
    device = remove(image, model="u2netp", provider="torch", vitmatte=True, models_dir=models_dir)
    assert not departures(np.asarray(device.mask), np.asarray(host.mask))
    assert np.array_equal(np.asarray(device.image)[..., 3], np.asarray(device.mask))


# --- the options ----------------------------------------------------------------------------------------------------

@pytest.fixture
def pointwise_refiner(place, tmp_path):
    return place(vitmatte_graphs.pointwise(tmp_path / "graphs", "pointwise.onnx"))


def test_order_thresholds_precedence_and_colours(pointwise_refiner, models_dir):
    """rembg's order: the model's mask, post-process, ViTMatte with the alpha matting thresholds (alpha matting off
    or on: ViTMatte takes precedence); then our steps; the cut-out's colours unmixed as with decontaminate."""
    image = photo("astronaut", (480, 360))
    settings = SETTINGS[1]
    keywords = dict(alpha_matting_foreground_threshold=200, alpha_matting_background_threshold=50,
                    alpha_matting_erode_size=0)
    plain = u2netp_mask(image, models_dir)
    first = remove(image, model="u2netp", vitmatte=True, models_dir=models_dir, **keywords)
    assert np.array_equal(np.asarray(first.mask), refined(image, plain, settings=settings))
    both = remove(image, model="u2netp", vitmatte=True, alpha_matting=True, models_dir=models_dir, **keywords)
    assert np.array_equal(np.asarray(both.mask), np.asarray(first.mask))
    processed = remove(image, model="u2netp", vitmatte=True, post_process_mask=True, models_dir=models_dir)
    assert np.array_equal(np.asarray(processed.mask), refined(image, refine.post_process(plain)))
    after = remove(image, model="u2netp", vitmatte=True, mask_blur=2, mask_invert=True, models_dir=models_dir)
    steps = RemovalOptions(mask_blur=2, mask_invert=True).mask
    assert np.array_equal(np.asarray(after.mask), refine.refine(refined(image, plain), steps))
    alpha = np.asarray(first.mask)
    unmixed = decontaminate(np.asarray(image), alpha)
    cut = np.asarray(first.image)
    assert np.array_equal(cut[alpha > 0, :3], unmixed[alpha > 0]) and not cut[alpha == 0].any()
    soft = (alpha > 0) & (alpha < 255)
    assert soft.mean() > 0.01 and not np.array_equal(unmixed[soft], np.asarray(image)[soft])


def test_mask_only_is_the_refined_alpha(pointwise_refiner, models_dir):
    """rembg skips the refiner for only_mask; ours does not: the mask output is the refined alpha."""
    image = photo("chelsea", (400, 300))
    out = remove(image, model="u2netp", vitmatte=True, output_mode="mask_only", models_dir=models_dir)
    assert out.image is out.mask or out.image.tobytes() == out.mask.tobytes()
    assert np.array_equal(np.asarray(out.mask), refined(image, u2netp_mask(image, models_dir)))


def test_a_threshold_after_vitmatte_says_so(pointwise_refiner, models_dir, caplog, monkeypatch):
    from remove_background import work

    monkeypatch.setattr(work, "_warned_threshold", False)
    out = remove(photo("chelsea", (300, 200)), model="u2netp", vitmatte=True, mask_threshold=128,
                 models_dir=models_dir)
    assert set(np.unique(np.asarray(out.mask))) <= {0, 255}
    assert "makes ViTMatte's soft alpha binary" in caplog.text


def test_vitmatte_model_names_rembgs_variants_and_checks_them(pointwise_refiner):
    assert RemovalOptions(vitmatte=True).refiner == "vitmatte-small-distinctions-646"
    assert RemovalOptions(vitmatte=True, vitmatte_model="base-composition-1k").refiner == "vitmatte-base-composition-1k"
    assert RemovalOptions(vitmatte_model="base-composition-1k").refiner is None  # only with vitmatte on
    with pytest.raises(ValueError, match="vitmatte_model must be one of small-distinctions-646"):
        RemovalOptions(vitmatte=True, vitmatte_model="large")
    with pytest.raises(ValueError, match="model must be one of"):  # a refiner is not a choice of model
        remove(Image.new("RGB", (8, 8)), model="vitmatte-small-distinctions-646")
    refiner = load_model("vitmatte-small-distinctions-646", "cpu", allow_download=False)
    with pytest.raises(ValueError, match="refines a mask, it does not make one"):
        refiner.start(Image.new("RGB", (8, 8)), None).predict(RemovalOptions())


def test_the_command_line_takes_the_flags(pointwise_refiner, models_dir, tmp_path):
    from remove_background.cli import commands

    image = photo("astronaut", (300, 240))
    image.save(tmp_path / "in.png")
    code = commands.main([str(tmp_path / "in.png"), "-o", str(tmp_path / "out"), "--models-dir", str(models_dir),
                          "--vitmatte", "--vitmatte-model", DEFAULT, "--no-download"])
    assert code == 0
    expected = remove(image, model="u2netp", vitmatte=True, models_dir=models_dir).mask
    assert np.asarray(Image.open(tmp_path / "out" / "in.mask.png")).tobytes() == expected.tobytes()


# --- bad cases ------------------------------------------------------------------------------------------------------

def test_a_missing_checkpoint_offline_fails_clearly_before_any_work(models_dir, monkeypatch):
    """The same message as any other model's: the file, the folder, the URL; raised before the segmentation model
    runs (its files are found first, the refiner's next, then anything runs)."""
    from remove_background.families.u2net import U2Net

    monkeypatch.setattr(U2Net, "mask", lambda *a: pytest.fail("the model ran before the refiner's file was found"))
    with pytest.raises(ModelNotAvailableError) as e:
        remove(photo("astronaut", (64, 64)), model="u2netp", vitmatte=True, models_dir=models_dir,
               allow_download=False)
    message = str(e.value)
    info = catalog.REFINERS["vitmatte-small-distinctions-646"]
    assert info.primary_file.filename in message and str(models_dir) in message and info.primary_file.url in message
    assert "sha256:d232841a" in message


def test_download_through_the_same_code_as_every_model(models_dir, monkeypatch, tmp_path):
    """From a local HTTP server: a right checksum downloads, atomically, and runs; a wrong one leaves nothing."""
    import functools
    import http.server
    import threading

    graph = vitmatte_graphs.pointwise(tmp_path / "served", "vitmatte-small-composition-1k.onnx")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(graph.parent))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        name = "vitmatte-small-composition-1k"
        info = catalog.REFINERS[name]
        url = f"http://127.0.0.1:{httpd.server_address[1]}/{graph.name}"
        for digest, fails in (("0" * 64, True), (hashlib.sha256(graph.read_bytes()).hexdigest(), False)):
            served = dataclasses.replace(info, files=(dataclasses.replace(info.primary_file, url=url,
                                                                          checksum=f"sha256:{digest}"),))
            monkeypatch.setitem(catalog.REFINERS, name, served)
            run = functools.partial(remove, photo("chelsea", (200, 150)), model="u2netp", vitmatte=True,
                                    vitmatte_model="small-composition-1k", models_dir=models_dir)
            if fails:
                with pytest.raises(ModelChecksumError):
                    run()
                assert sorted(p.name for p in models_dir.iterdir() if "vitmatte" in p.name) == []
            else:
                assert run().mask.size == (200, 150)
                assert (models_dir / graph.name).read_bytes() == graph.read_bytes()
    finally:
        httpd.shutdown()
        cache.clear_sessions()


def test_every_refiner_is_reported_by_doctor():
    """doctor lists each family with its members and where auto runs them: ViTMatte's rows come with it."""
    from remove_background.cli import doctor

    lines: list[str] = []
    doctor.routes_report(lambda line="": lines.append(line), None, ["CPUExecutionProvider"])
    row = next(line for line in lines if line.strip().startswith("vitmatte "))
    assert all(name in row for name in COMPARED)


def test_onnx_runtime_gives_the_refiners_memory_back(pointwise_refiner, models_dir):
    """ViTMatte's sessions run without ONNX Runtime's CPU arena (same peak and speed, nothing held between images:
    benchmarks/bench_vitmatte.py); the segmentation models keep it."""
    from remove_background.backends import onnx_runtime
    from remove_background.backends.routes import plan_providers

    plan = plan_providers("cpu")
    refiner = catalog.get_model("vitmatte-small-distinctions-646")
    path = pointwise_refiner / "vitmatte-small-distinctions-646.onnx"
    assert not onnx_runtime.create_sessions(refiner, [path], plan)[0].get_session_options().enable_cpu_mem_arena
    u2netp = onnx_runtime.create_sessions(catalog.get_model("u2netp"), [models_dir / "u2netp.onnx"], plan)[0]
    assert u2netp.get_session_options().enable_cpu_mem_arena
