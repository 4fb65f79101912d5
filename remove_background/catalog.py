"""The one table of model facts: names, files, URLs, checksums, input sizes, licences, families.

Everything else (the node's dropdown, the downloader, the docs, the tests)
reads from ``MODELS``. The values mirror rembg 2.0.69's session classes. Each row names its family (the key of a
class in ``families/``), which owns how the model's input is made and its output read. ``REFINERS`` holds the models
that refine a mask rather than make one (rembg 2.0.86's four ViTMatte checkpoints, option ``vitmatte_model``); they
are not choices of the ``model`` option. ``every_model()`` is both tables, as they are now.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

RELEASES = "https://github.com/danielgatis/rembg/releases/download/v0.0.0/"
BIREFNET_RELEASES = "https://github.com/ZhengPeng7/BiRefNet/releases/download/v1/"  # the authors' release v1
BEN2_FILES = "https://huggingface.co/PramaLLC/BEN2/resolve/main/"  # the authors' model repository

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF_MEAN = (0.5, 0.5, 0.5)
UNIT_STD = (1.0, 1.0, 1.0)


@dataclass(frozen=True)
class ModelFile:
    """One file a model needs: its local name, where to fetch it, its checksum."""

    filename: str
    url: str
    checksum: Optional[str]  # "md5:<hex>" or "sha256:<hex>" as published; None when none is (the first download's
    # sha256 is then recorded beside the file and checked from then on: model_files)
    approx_mb: int


@dataclass(frozen=True)
class ModelInfo:
    """Facts about one model: a catalog row, or your own file (families' ``custom_info``)."""

    name: str  # rembg's session name
    label: str  # shown in the workflow editor
    files: tuple[ModelFile, ...]
    input_size: int  # square side the model runs at
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    family: str  # the key of its family class (families/): "u2net", "cloth", "isnet", "birefnet", "bria", "sam",
    # "ben", "vitmatte"
    licence: str
    commercial_use: bool
    description: str
    source: str = "rembg 2.0.69 (github.com/danielgatis/rembg)"  # where the file and its facts come from
    half: bool = False  # runs in half precision: ONNX Runtime on the file converted once (backends/half_precision.py),
    # torch on its float32 module in half precision
    max_scaled: bool = True  # pixels divided by the image's maximum, as rembg does; False: by 255, as the authors of
    # the newer models do (BiRefNet's and BEN2's code: ToTensor)
    revision: str = ""  # your own file: its size and mtime, so a changed file is a new model in every cache

    @property
    def primary_file(self) -> ModelFile:
        return self.files[0]


def _file(filename: str, remote: str, checksum: Optional[str], approx_mb: int) -> tuple[ModelFile, ...]:
    """One file, from rembg's releases unless ``remote`` is a whole URL."""
    return (ModelFile(filename, remote if "://" in remote else RELEASES + remote, checksum, approx_mb),)


def _single(
    name: str,
    label: str,
    remote: str,
    checksum: Optional[str],
    approx_mb: int,
    size: int,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    family: str,
    licence: str,
    description: str,
    commercial_use: bool = True,
    source: Optional[str] = None,
    max_scaled: bool = True,
) -> ModelInfo:
    return ModelInfo(
        name=name,
        label=label,
        files=_file(f"{name}.onnx", remote, checksum, approx_mb),
        input_size=size,
        mean=mean,
        std=std,
        family=family,
        licence=licence,
        commercial_use=commercial_use,
        description=description,
        max_scaled=max_scaled,
        **({"source": source} if source else {}),
    )


_BIREFNET = dict(size=1024, mean=IMAGENET_MEAN, std=IMAGENET_STD, family="birefnet", licence="MIT")
_AUTHORS = dict(size=1024, mean=IMAGENET_MEAN, std=IMAGENET_STD, family="birefnet", licence="MIT", max_scaled=False)
_BIREFNET_HR = dict(_AUTHORS, size=2048)
_BIREFNET_SOURCE = ("BiRefNet's authors: github.com/ZhengPeng7/BiRefNet (MIT; ONNX files in release v1, README "
                    "model zoo), model card huggingface.co/ZhengPeng7/{card}; no checksum published")

_GENERAL = _single("birefnet-general", "BiRefNet general", "BiRefNet-general-epoch_244.onnx",
                   "md5:7a35a0141cbbc80de11d9c9a28f52697", 928, description="BiRefNet general-purpose model.",
                   **_BIREFNET)

MODELS: dict[str, ModelInfo] = {
    m.name: m
    for m in (
        _single("u2net", "U²-Net (general, 176 MB)", "u2net.onnx", "md5:60024c5c889badc19c04ad937298a77b",
                168, 320, IMAGENET_MEAN, IMAGENET_STD, "u2net", "Apache-2.0",
                "General-purpose salient object model; rembg's default."),
        _single("u2netp", "U²-Net-p (general, small & fast, 4.4 MB)", "u2netp.onnx",
                "md5:8e83ca70e441ab06c318d82300c84806", 5, 320, IMAGENET_MEAN, IMAGENET_STD, "u2net",
                "Apache-2.0", "A lightweight U²-Net: fastest, good for previews and batches."),
        _single("u2net_human_seg", "U²-Net human segmentation", "u2net_human_seg.onnx",
                "md5:c09ddc2e0104f800e3e1bb4652583d1f", 168, 320, IMAGENET_MEAN, IMAGENET_STD, "u2net",
                "Apache-2.0", "U²-Net trained for people."),
        _single("u2net_cloth_seg", "U²-Net cloth segmentation", "u2net_cloth_seg.onnx",
                "md5:2434d1f3cb744e0e49386c906e5a08bb", 168, 768, IMAGENET_MEAN, IMAGENET_STD, "cloth",
                "MIT", "Clothes on people: upper body, lower body and full-body garments."),
        _single("silueta", "Silueta (U²-Net, 43 MB)", "silueta.onnx", "md5:55e59e0d8062d2f5d013f4725ee84782",
                42, 320, IMAGENET_MEAN, IMAGENET_STD, "u2net", "Apache-2.0",
                "U²-Net reduced to 43 MB with similar quality."),
        _single("isnet-general-use", "IS-Net general use", "isnet-general-use.onnx",
                "md5:fc16ebd8b0c10d971d3513d564d01e29", 170, 1024, HALF_MEAN, UNIT_STD, "isnet", "Apache-2.0",
                "DIS (IS-Net) general-purpose model; crisp edges."),
        _single("isnet-anime", "IS-Net anime", "isnet-anime.onnx", "md5:6f184e756bb3bd901c8849220a83e38e",
                168, 1024, IMAGENET_MEAN, UNIT_STD, "isnet", "Apache-2.0",
                "High-accuracy segmentation of anime characters."),
        _GENERAL,
        _single("birefnet-general-lite", "BiRefNet general (lite)",
                "BiRefNet-general-bb_swin_v1_tiny-epoch_232.onnx", "md5:4fab47adc4ff364be1713e97b7e66334", 214,
                description="BiRefNet with a tiny Swin backbone: lighter and faster.", **_BIREFNET),
        _single("birefnet-portrait", "BiRefNet portrait", "BiRefNet-portrait-epoch_150.onnx",
                "md5:c3a64a6abf20250d090cd055f12a3b67", 928, description="BiRefNet for human portraits.",
                **_BIREFNET),
        _single("birefnet-dis", "BiRefNet DIS", "BiRefNet-DIS-epoch_590.onnx",
                "md5:2d4d44102b446f33a4ebb2e56c051f2b", 928,
                description="BiRefNet for dichotomous image segmentation (fine structures).", **_BIREFNET),
        _single("birefnet-hrsod", "BiRefNet HRSOD", "BiRefNet-HRSOD_DHU-epoch_115.onnx",
                "md5:c017ade5de8a50ff0fd74d790d268dda", 928,
                description="BiRefNet for high-resolution salient object detection.", **_BIREFNET),
        _single("birefnet-cod", "BiRefNet COD", "BiRefNet-COD-epoch_125.onnx",
                "md5:f6d0d21ca89d287f17e7afe9f5fd3b45", 928,
                description="BiRefNet for concealed (camouflaged) object detection.", **_BIREFNET),
        _single("birefnet-massive", "BiRefNet massive", "BiRefNet-massive-TR_DIS5K_TR_TEs-epoch_420.onnx",
                "md5:33e726a2136a3d59eb0fdf613e31e3e9", 928,
                description="BiRefNet trained on a massive dataset: best general quality, slowest.", **_BIREFNET),
        _single("bria-rmbg", "BRIA RMBG 2.0 (NON-COMMERCIAL licence)", "bria-rmbg-2.0.onnx",
                "sha256:5b486f08200f513f460da46dd701db5fbb47d79b4be4b708a19444bcd4e79958", 977, 1024,
                IMAGENET_MEAN, IMAGENET_STD, "bria", "CC BY-NC 4.0",
                "BRIA RMBG 2.0. Non-commercial use only (CC BY-NC 4.0); commercial use needs a licence from BRIA.",
                commercial_use=False),
        replace(_GENERAL, name="birefnet-general-fp16", label="BiRefNet general, half precision (GPU)", half=True,
                description="birefnet-general with its weights and activations in float16 (its own file, converted "
                            "once beside it): about 30% faster on a CUDA GPU, masks equal to an IoU of ~0.9996 "
                            "(rembg's figures); slower on a CPU.",
                source="rembg 2.0.86 (its birefnet_general_fp16 session: the birefnet-general file converted with "
                       "onnxconverter-common, keep_io_types)"),
        _single("birefnet-hr", "BiRefNet HR (general, 2048²)",
                BIREFNET_RELEASES + "BiRefNet_HR-general-epoch_130.onnx", None, 1099,
                description="BiRefNet trained at 2048×2048 for general use: better on images larger than 1024² (its "
                "authors' advice); needs several times the memory of the 1024² models.",
                source=_BIREFNET_SOURCE.format(card="BiRefNet_HR"), **_BIREFNET_HR),
        _single("birefnet-hr-matting", "BiRefNet HR matting (2048²)",
                BIREFNET_RELEASES + "BiRefNet_HR-matting-epoch_135.onnx", None, 1099,
                description="BiRefNet trained at 2048×2048 for matting: soft alpha for hair, fur and "
                            "semi-transparent edges on large images.",
                source=_BIREFNET_SOURCE.format(card="BiRefNet_HR-matting"), **_BIREFNET_HR),
        _single("birefnet-matting", "BiRefNet matting", BIREFNET_RELEASES + "BiRefNet-matting-epoch_100.onnx",
                None, 928, description="BiRefNet trained for trimap-free general matting (soft alpha).",
                source=_BIREFNET_SOURCE.format(card="BiRefNet-matting"), **_AUTHORS),
        _single("ben2-base", "BEN2 base", BEN2_FILES + "BEN2_Base.onnx",
                "sha256:22cea62108ff53b7ccc20f7a008bf30494228d84b1687f29ecbe76936a998101", 223, 1024,
                (0.0, 0.0, 0.0), UNIT_STD, "ben", "MIT",
                "BEN2 base (Background Erase Network): strong on hair and fine edges; its file computes in half "
                "precision.",
                source="BEN2's authors (Prama LLC): github.com/PramaLLC/BEN2 (MIT), model card and file "
                       "huggingface.co/PramaLLC/BEN2 (BEN2_Base.onnx, sha256 from its LFS file page; fed as its "
                       "onnx_run.py feeds it: 0-1 RGB, no mean or std)", max_scaled=False),
        ModelInfo(
            name="sam",
            label="Segment Anything (ViT-B, prompted)",
            files=(
                ModelFile("sam_vit_b_01ec64.encoder.onnx", RELEASES + "sam_vit_b_01ec64.encoder.onnx", None, 343),
                ModelFile("sam_vit_b_01ec64.decoder.onnx", RELEASES + "sam_vit_b_01ec64.decoder.onnx", None, 16),
            ),
            input_size=1024,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            family="sam",
            licence="Apache-2.0",
            commercial_use=True,
            description="Segment Anything ViT-B: segments the object under a point prompt (default: the centre).",
            source="rembg 2.0.69 (github.com/danielgatis/rembg); no checksum published",
        ),
    )
}

MODEL_NAMES: tuple[str, ...] = tuple(MODELS)
DEFAULT_MODEL = "u2netp"
CUSTOM = "custom"  # the model choice for your own file (options: model_path and family)

# rembg 2.0.86's ViTMatte checkpoints (rembg/matting.py: VARIANTS, sha256 each; its release v0.0.0). Exported from
# hustvl's checkpoints at a fixed 1024² (VitDet builds its relative positions from the input size). The weights'
# model cards (huggingface.co/hustvl/vitmatte-*) say Apache-2.0, the authors' code (github.com/hustvl/ViTMatte) MIT;
# the data differ: Composition-1k is Adobe's Deep Image Matting dataset, given out under a signed agreement for
# non-commercial research only (its users' own reports: they may not share it), so weights trained on it are
# reported non-commercial; Distinctions-646 (HAttMatting's authors) is shared publicly for research, with no
# licence of its own published.
VITMATTE_PREFIX = "vitmatte-"  # a checkpoint's row name is this plus rembg's variant name (vitmatte_model)
DEFAULT_VITMATTE = "small-distinctions-646"  # rembg's DEFAULT_VARIANT
_VITMATTE_SOURCE = ("rembg 2.0.86 (rembg/matting.py; github.com/danielgatis/rembg, release v0.0.0), exported from "
                    "ViTMatte's checkpoints (github.com/hustvl/ViTMatte, huggingface.co/hustvl/vitmatte-{card})")
_VITMATTE = dict(size=1024, mean=(0.0, 0.0, 0.0), std=UNIT_STD, family="vitmatte", max_scaled=False)
_DISTINCTIONS = ("Apache-2.0 (weights' model card; code MIT); trained on Distinctions-646, shared by its authors for "
                 "research with no licence of its own published")
_COMPOSITION = ("Apache-2.0 (weights' model card; code MIT), but trained on Adobe's Composition-1k, licensed for "
                "non-commercial research only: reported NON-COMMERCIAL")


def _vitmatte(variant: str, label: str, checksum: str, approx_mb: int, licence: str, description: str,
              commercial_use: bool = True) -> ModelInfo:
    return _single(VITMATTE_PREFIX + variant, label, f"{VITMATTE_PREFIX}{variant}.onnx", "sha256:" + checksum,
                   approx_mb, licence=licence, description=description, commercial_use=commercial_use,
                   source=_VITMATTE_SOURCE.format(card=variant), **_VITMATTE)


REFINERS: dict[str, ModelInfo] = {
    m.name: m
    for m in (
        _vitmatte("small-distinctions-646", "Small, Distinctions-646 (default, 110 MB)",
                  "d232841ac9d9657df3e62f6c92ed425ee25df18d337245cd8b903fc1ba183631", 110, _DISTINCTIONS,
                  "ViTMatte-S trained on Distinctions-646 (real photographs): rembg's default."),
        _vitmatte("small-composition-1k", "Small, Composition-1k (NON-COMMERCIAL data, 110 MB)",
                  "659b9bb2870f80cffbe20dae4c7f18417fbdf68c0195861d24e9082c28373a24", 110, _COMPOSITION,
                  "ViTMatte-S trained on Composition-1k (synthetic composites).", commercial_use=False),
        _vitmatte("base-distinctions-646", "Base, Distinctions-646 (380 MB, ~2.5x the time)",
                  "d30190833269c1bec3e37319fe67af151028d3be32f6f60f6663a51b209cc8c1", 380, _DISTINCTIONS,
                  "ViTMatte-B trained on Distinctions-646: about 3.5x the download and 2.5x the time of small."),
        _vitmatte("base-composition-1k", "Base, Composition-1k (NON-COMMERCIAL data, 380 MB)",
                  "87bb10979f816061497ba6867b338c65a05cebd7d1507f6dde92a86382dec1f2", 380, _COMPOSITION,
                  "ViTMatte-B trained on Composition-1k.", commercial_use=False),
    )
}
VITMATTE_VARIANTS: tuple[str, ...] = tuple(name.removeprefix(VITMATTE_PREFIX) for name in REFINERS)


def every_model() -> dict[str, ModelInfo]:
    """The models, then the refiners: both tables as they are now (tests replace rows in either)."""
    return {**MODELS, **REFINERS}


def get_model(name: str) -> ModelInfo:
    """Return the catalog entry for ``name`` (a model or a refiner) or raise a ValueError listing the valid names."""
    try:
        return MODELS[name] if name in MODELS else REFINERS[name]
    except KeyError:
        raise ValueError(f"Unknown model {name!r}. Choose one of: {', '.join(MODEL_NAMES)}.") from None
