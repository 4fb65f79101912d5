"""Every model in the catalog against rembg 2.0.69's own session class, on the same ONNX file.

Each model's file is a small graph of its family's input and output (tests/support/family_graphs.py says how it
is made, and why rembg's real weights are not used).

The file is written as ``<U2NET_HOME>/<name>.onnx``, where rembg looks for it, and ours reads it from the same
folder. Neither side downloads. rembg runs unchanged, with its own switch ``MODEL_CHECKSUM_DISABLED``: pooch then
uses the file that is present without its md5 (it downloads only a missing file or one whose hash differs; the test
checks the file is untouched). Our catalog entry gets ``checksum=None``, the state of a file rembg publishes no
checksum for (sam's), so model_files uses it unverified; everything else in the entry is the catalog's own. Ours
runs through the public ``remove()``. Segment Anything has its own test (tests/test_sam.py).

"Faithful", per image: where our mask resize is rembg's own (the image is the model's size, or smaller than it on one
side: both resize with PIL's LANCZOS), the masks are equal up to float rounding (ROUNDING: on ONNX Runtime at most
1 grey level apart, on at most 0.1 % of the pixels). Where we upscale with our bilinear filter and rembg with
LANCZOS: mean difference ≤ 0.5 and ≥ 99.9 % of pixels on the same side of 127 (.readme/development.md).
u2net_cloth_seg is compared class map against class map instead (see the cloth tests), and a test plants wrong
constants in the catalog to show that these comparisons catch them.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from remove_background import catalog, families

from remove_background.pipeline import remove
from support.family_graphs import (HIDDEN, POOL, PROVIDERS, cases, family_graph, mask_departures, photo,  # noqa: F401
                                   resized_like_rembg, use)

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("rembg")


REMBG_CLASSES = {  # our model name -> rembg 2.0.69's session class (module in rembg.sessions, class name)
    "u2net": ("u2net", "U2netSession"),
    "u2netp": ("u2netp", "U2netpSession"),
    "u2net_human_seg": ("u2net_human_seg", "U2netHumanSegSession"),
    "u2net_cloth_seg": ("u2net_cloth_seg", "Unet2ClothSession"),
    "silueta": ("silueta", "SiluetaSession"),
    "isnet-general-use": ("dis_general_use", "DisSession"),
    "isnet-anime": ("dis_anime", "DisSession"),
    "birefnet-general": ("birefnet_general", "BiRefNetSessionGeneral"),
    "birefnet-general-lite": ("birefnet_general_lite", "BiRefNetSessionGeneralLite"),
    "birefnet-portrait": ("birefnet_portrait", "BiRefNetSessionPortrait"),
    "birefnet-dis": ("birefnet_dis", "BiRefNetSessionDIS"),
    "birefnet-hrsod": ("birefnet_hrsod", "BiRefNetSessionHRSOD"),
    "birefnet-cod": ("birefnet_cod", "BiRefNetSessionCOD"),
    "birefnet-massive": ("birefnet_massive", "BiRefNetSessionMassive"),
    "bria-rmbg": ("bria_rmbg", "BriaRmBgSession"),
}
MASK_MODELS = [name for name in REMBG_CLASSES if catalog.MODELS[name].family != "cloth"]
CLOTH = "u2net_cloth_seg"
# --- the two sides ----------------------------------------------------------------------------------------------

def rembg_session(name: str, folder: Path):
    """rembg 2.0.69's own session class for ``name``, built as rembg builds it, on the file in ``folder``."""
    module, class_name = REMBG_CLASSES[name]
    cls = getattr(importlib.import_module(f"rembg.sessions.{module}"), class_name)
    assert cls.name() == name
    session = cls(name, ort.SessionOptions(), providers=["CPUExecutionProvider"])
    assert (folder / f"{name}.onnx").read_bytes() == family_graph(name)  # pooch neither downloaded nor replaced it
    return session


def ours(image: Image.Image, name: str, provider: str, folder: Path, **options) -> np.ndarray:
    provider = "torch" if provider == "torch-device" else provider
    mask = remove(image, model=name, provider=provider, models_dir=folder, allow_download=False, **options).mask
    return np.array(mask, dtype=np.int16)


def compare_masks(name: str, provider: str, folder: Path, how_many: int = 4) -> tuple[list[str], list[str]]:
    """Ours against rembg's session on the first ``how_many`` cases: (departures, measurements), a line each."""
    theirs_session = rembg_session(name, folder)
    side = catalog.MODELS[name].input_size
    departures, measured = [], []
    for picture, size in cases(side)[:how_many]:
        image = photo(picture, size)
        theirs = np.asarray(theirs_session.predict(image)[0], dtype=np.int16)
        assert 0.05 < (theirs > 127).mean() < 0.97  # a real split into foreground and background
        mine = ours(image, name, provider, folder)
        exact = resized_like_rembg(size, side)
        diff = np.abs(mine - theirs)
        measured.append(f"{name} {size}: mean {diff.mean():.3f}, max {diff.max()}, "
                        f"{((mine > 127) == (theirs > 127)).mean():.3%} same side")
        departures += [f"{name} {picture} {size}: {d}" for d in mask_departures(mine, theirs, exact, provider)]
    return departures, measured


# --- u2net_cloth_seg: class maps --------------------------------------------------------------------------------

CLOTH_CATEGORIES = {"upper": 1, "lower": 2, "full": 3}  # rembg's masks, in its order, and their class index


def lanczos_windows(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray]:
    """For each output pixel of a PIL LANCZOS resize from ``n_in`` to ``n_out``: the first and last+1 input pixel it
    reads (PIL's own support: 3 input pixels each side, widened by the scale when shrinking)."""
    scale = n_in / n_out
    support = 3.0 * max(scale, 1.0)
    centre = (np.arange(n_out) + 0.5) * scale
    first = np.clip((centre - support + 0.5).astype(int), 0, n_in)
    last = np.clip((centre + support + 0.5).astype(int), 0, n_in)
    return first, last


def classes_nearby(model_map: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """[4, H, W] bool: whether each class occurs in the model-size pixels a LANCZOS resize to ``size`` reads for
    each image pixel. A class rembg gives a pixel that is not there was made up by the filter."""
    width, height = size
    r0, r1 = lanczos_windows(height, model_map.shape[0])
    c0, c1 = lanczos_windows(width, model_map.shape[1])
    out = []
    for k in range(4):
        integral = np.pad((model_map == k).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        count = (integral[r1][:, c1] - integral[r0][:, c1] - integral[r1][:, c0] + integral[r0][:, c0])
        out.append(count > 0)
    return np.stack(out)


def cloth_case(image: Image.Image, session, provider: str, folder: Path) -> dict:
    """rembg's and our masks per category, and the model-size class map they both come from."""
    side = catalog.MODELS[CLOTH].input_size
    # rembg's class map at model size: its own predict on the image already resized as it resizes it (its resize
    # to the model's size is then the identity, and so is its resize of the map back to that image)
    at_model_size = session.predict(image.convert("RGB").resize((side, side), Image.Resampling.LANCZOS))
    model_map = np.zeros((side, side), np.uint8)
    for mask, k in zip(at_model_size, CLOTH_CATEGORIES.values()):
        model_map[np.asarray(mask) > 127] = k
    theirs = dict(zip(CLOTH_CATEGORIES, (np.asarray(m, dtype=np.int16) for m in session.predict(image))))
    theirs["all"] = np.max([theirs[c] for c in CLOTH_CATEGORIES], axis=0)
    mine = {c: ours(image, CLOTH, provider, folder, cloth_category=c) for c in theirs}
    return {"theirs": theirs, "ours": mine, "nearby": classes_nearby(model_map, image.size)}


def made_up(mask: np.ndarray, nearby: np.ndarray, category: str) -> np.ndarray:
    """Pixels a category's mask claims (> 127) although none of its classes is nearby at model size."""
    classes = list(CLOTH_CATEGORIES.values()) if category == "all" else [CLOTH_CATEGORIES[category]]
    return (mask > 127) & ~nearby[classes].any(axis=0)


def compare_cloth(provider: str, folder: Path, how_many: int = 4) -> tuple[list[str], list[str]]:
    """Ours against rembg's Unet2ClothSession: equal wherever the model saw one class only (rembg's LANCZOS of a
    uniform class map is that class, our bilinear of a uniform mask is that mask), and never a made-up class."""
    session = rembg_session(CLOTH, folder)
    departures, measured = [], []
    for picture, size in cases(catalog.MODELS[CLOTH].input_size)[:how_many]:
        case = cloth_case(photo(picture, size), session, provider, folder)
        uniform = case["nearby"].sum(axis=0) == 1
        if uniform.mean() < 0.7:
            departures.append(f"{picture} {size}: only {uniform.mean():.1%} of pixels away from class borders")
        for category, theirs in case["theirs"].items():
            mine = case["ours"][category]
            diff = np.abs(mine - theirs)
            measured.append(f"{CLOTH} {category} {size}: mean {diff.mean():.3f}, "
                            f"{((mine > 127) == (theirs > 127)).mean():.3%} same side, "
                            f"made up: rembg {made_up(theirs, case['nearby'], category).sum()} px, "
                            f"ours {made_up(mine, case['nearby'], category).sum()} px")
            if (diff[uniform] > 0).any():
                departures.append(f"{category} {picture} {size}: {(diff[uniform] > 0).sum()} pixels differ where "
                                  f"the model saw one class only")
            if made_up(mine, case["nearby"], category).any():
                departures.append(f"{category} {picture} {size}: ours has a class the model did not see nearby")
    return departures, measured


# --- the tests --------------------------------------------------------------------------------------------------

def test_every_catalog_model_but_sam_is_compared_here():
    """rembg 2.0.69's models here; sam in test_sam.py; the newer ones in test_newer_models.py (rembg 2.0.86's
    fp16 session, and the authors' own inference for the models rembg does not have)."""
    from support.newer_references import OFFICIAL

    assert set(REMBG_CLASSES) | {"sam", "birefnet-general-fp16"} | set(OFFICIAL) == set(catalog.MODEL_NAMES)


def test_every_refiner_is_compared_in_test_vitmatte():
    """rembg 2.0.86's ViTMatte checkpoints (catalog.REFINERS): against its own vitmatte_alpha and remove() on
    exported graphs of each checkpoint's architecture, in tests/test_vitmatte.py."""
    from support.vitmatte_graphs import COMPARED

    assert set(catalog.REFINERS) == COMPARED
    assert {families.of(info).key for info in catalog.REFINERS.values()} == {"vitmatte"}


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("name", MASK_MODELS)
def test_mask_equals_rembgs_session_on_the_same_file(name, provider, place, monkeypatch):
    use(provider, monkeypatch)
    departures, measured = compare_masks(name, provider, place(name))
    assert not departures, "\n".join(departures + measured)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_cloth_masks_equal_rembgs_away_from_class_borders(provider, place, monkeypatch):
    use(provider, monkeypatch)
    departures, measured = compare_cloth(provider, place(CLOTH))
    assert not departures, "\n".join(departures + measured)


def test_cloth_rembg_makes_up_classes_along_borders_ours_does_not(place):
    """rembg resizes the class-index map (0 background, 1 upper, 2 lower, 3 full) with LANCZOS, so between class 0
    and class 3 it interpolates 1 and 2: thin strips of "upper" and "lower" garment where the model saw neither.
    We pick the category's pixels at model size and resize that mask, which cannot invent a class."""
    folder = place(CLOTH)
    session = rembg_session(CLOTH, folder)
    case = cloth_case(photo(*cases(catalog.MODELS[CLOTH].input_size)[-1]), session, "cpu", folder)
    for category in CLOTH_CATEGORIES:
        assert not made_up(case["ours"][category], case["nearby"], category).any()
    rembg_made_up = {c: int(made_up(case["theirs"][c], case["nearby"], c).sum()) for c in CLOTH_CATEGORIES}
    assert sum(rembg_made_up.values()) > 1000, rembg_made_up


WRONG_CONSTANTS = [  # (model, catalog fields changed): each must make the comparison above fail
    ("isnet-general-use", {"mean": catalog.IMAGENET_MEAN}),  # IS-Net's mean is 0.5, not ImageNet's
    ("isnet-anime", {"std": catalog.IMAGENET_STD}),  # the anime model divides by 1
    ("birefnet-general", {"family": "u2net"}),  # BiRefNet's sigmoid forgotten
    ("birefnet-massive", {"mean": catalog.HALF_MEAN, "std": catalog.UNIT_STD}),  # IS-Net's normalisation
    ("bria-rmbg", {"family": "birefnet"}),  # a sigmoid on an output that has one already
    ("birefnet-portrait", {"input_size": 768}),
    ("u2netp", {"input_size": 288}),
    ("u2net", {"mean": catalog.IMAGENET_MEAN[::-1]}),  # the mean in BGR order
    ("u2net_human_seg", {"std": catalog.UNIT_STD}),
    ("silueta", {"mean": catalog.HALF_MEAN}),
    (CLOTH, {"input_size": 640}),
    (CLOTH, {"mean": catalog.HALF_MEAN}),
]


@pytest.mark.parametrize("name, changes", WRONG_CONSTANTS, ids=lambda v: str(v) if isinstance(v, str) else
                         ",".join(v))
def test_a_wrong_constant_in_the_catalog_fails_the_comparison(name, changes, place):
    """The comparison above, on its first two cases (the model's own size and a non-square image), with one wrong
    constant planted in our catalog entry: it must report a departure."""
    folder = place(name, **changes)
    compare = compare_cloth if name == CLOTH else functools.partial(compare_masks, name)
    departures, measured = compare("cpu", folder, how_many=2)
    assert departures, "\n".join(measured)
