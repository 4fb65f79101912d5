"""Every option of a background removal, declared once: name, type, default, bounds, choices, help, validation.

``remove(image, options)`` takes a ``RemovalOptions``; the node (invokeai_adapter/node.py), the command line (cli/)
and the batch path build one. The node's fields and the CLI's flags take their defaults, bounds, choices and help
text from here (``node_input`` and ``add_arguments``), and a test keeps all three in agreement.

A help text is written once, with the few words that differ between where it is shown (inside InvokeAI, or the
standalone command line) as ``{placeholders}`` that ``CONTEXTS`` fills in: ``help_text(name, "node" | "cli")``.

Most options are one value everywhere. Three have a shape of their own on the node, where InvokeAI's UI has
better widgets: ``background_color`` (a Background dropdown plus a colour picker), ``sam_point`` (two integer
fields, -1 = centre) and ``sam_box`` (a bounding-box field). Their conversions are in invokeai_adapter/node.py.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from .catalog import CUSTOM, DEFAULT_MODEL, DEFAULT_VITMATTE, MODELS, REFINERS, VITMATTE_PREFIX
from .families import custom_families
from .errors import check_range
from .model_files import DEFAULT_FOLDER_TEXT, REMBG_FOLDERS_TEXT
from .backends.routes import PROVIDER_CHOICES

GROUPS = {
    "model": "model",
    "mask": "mask (applied in this order, as in rembg: post-process, then ViTMatte or alpha matting, then threshold, "
            "grow/shrink, blur, invert)",
    "output": "output",
    "prompt": "model-specific prompts",
}


CONTEXTS = {  # the words of a help text that depend on where it is shown
    "node": {"models_folder": "<InvokeAI models dir>/rembg",
             "gpu": "InvokeAI's GPU",
             "device": "InvokeAI's device"},
    "cli": {"models_folder": f"the models folder (--models-dir; default {DEFAULT_FOLDER_TEXT}; rembg's own "
                             f"downloads in {REMBG_FOLDERS_TEXT} are used too)",
            "gpu": "this machine's GPU",
            "device": "torch's own device (its GPU, else the CPU)"},
}


def option(default: Any, help: str, group: str, *, ge=None, le=None, labels: Optional[dict] = None,
           node: Optional[str] = None, short: Optional[str] = None, node_shape: bool = False, metavar=None,
           title: Optional[str] = None):
    """One option's declaration. ``labels``: the allowed values with their labels (a dropdown on the node);
    ``node``: the node field's name when it differs; ``node_shape``: the node shows it in a shape of its own;
    ``title``: the node field's title where InvokeAI's (the name in title case) misspells it."""
    meta = dict(help=help, group=group, ge=ge, le=le, labels=labels, node=node, short=short, node_shape=node_shape,
                metavar=metavar, title=title)
    return field(default=default, metadata=meta)


MODEL_LABELS = {**{name: info.label for name, info in MODELS.items()},
                CUSTOM: "Your own file (Model File and Model Family below)"}
FAMILY_LABELS = custom_families()  # the families that run your own file, with how each feeds it
VITMATTE_LABELS = {name.removeprefix(VITMATTE_PREFIX): info.label for name, info in REFINERS.items()}
CLOTH_LABELS = {"all": "All clothes", "upper": "Upper body", "lower": "Lower body", "full": "Full body"}
OUTPUT_LABELS = {"cutout_and_mask": "Cut-out + mask", "mask_only": "Mask only"}
EDGE_DETAIL_LABELS = {"standard": "Standard (one pass, like rembg)",
                      "high": "High (second pass on the subject, edge-aware upsampling)"}
MAX_GROW = 256
MAX_BLUR = 64.0
MAX_ERODE = 64


@dataclass(frozen=True)
class RemovalOptions:
    """What to remove and how. Build it with keywords; every value is checked, with errors that name the option."""

    model: str = option(DEFAULT_MODEL, "The model: rembg's, BiRefNet HR (2048²) and matting, BEN2, or custom, your "
                        "own .onnx file. Files live in {models_folder}; a missing one is downloaded. The README's "
                        "model table gives each one's size, input and licence; bria-rmbg is licensed for "
                        "NON-COMMERCIAL use only.", "model", labels=MODEL_LABELS, short="-m")
    model_path: Optional[str] = option(None, "Your own model file (an .onnx file of a family below); sets the "
                                       "model to custom", "model", node_shape=True, metavar="FILE")
    model_family: Optional[str] = option(None, "The family of your own model file: how it is fed and read (its input "
                                   "size, normalisation, output)", "model", labels=FAMILY_LABELS, node_shape=True)
    provider: str = option("auto", "Where the model runs. Auto: on {gpu} (ONNX Runtime's GPU provider if "
                           "installed, else PyTorch on that device), on the CPU with ONNX Runtime otherwise; each "
                           "fallback says why in the log. Torch: PyTorch on {device}. An explicit choice "
                           "fails clearly if it cannot run.",
                           "model", labels=PROVIDER_CHOICES, node="execution_provider", short="-p")
    edge_detail: str = option("standard", "Standard: the model sees the whole image once at its own input size "
                              "(320² or 1024²), like rembg. High: a second pass on each subject's bounding box, and "
                              "a mask upsampled along the photo's own edges: sharper, more accurate edges on big "
                              "photos and small subjects, for about twice the model time (subjects that fill the "
                              "frame skip the second pass). Models with a plain mask only (not cloth, not sam).",
                              "model", labels=EDGE_DETAIL_LABELS)
    alpha_matting: bool = option(False, "Closed-form alpha matting on the uncertain edge band (hair, fur), after "
                                 "post-process and before the other refine steps", "mask")
    alpha_matting_foreground_threshold: int = option(240, "Alpha matting and ViTMatte: mask values above this are "
                                                     "sure foreground", "mask", ge=0, le=255)
    alpha_matting_background_threshold: int = option(10, "Alpha matting and ViTMatte: mask values below this are "
                                                     "sure background", "mask", ge=0, le=255)
    alpha_matting_erode_size: int = option(10, "Alpha matting and ViTMatte: erode the sure regions by this size in "
                                           "pixels (0 still erodes 1 pixel, as rembg's scipy erosion does)",
                                           "mask", ge=0, le=MAX_ERODE)
    vitmatte: bool = option(False, "ViTMatte, rembg 2.0.86's learned edge refinement: a second network turns the "
                            "mask's uncertain band (its trimap built with the three alpha matting settings above, "
                            "whether alpha matting is on or not) into a soft alpha for hair and fur. Takes precedence "
                            "over alpha matting; the cut-out's colours are unmixed as with decontaminate; the mask "
                            "output is the refined alpha. Images up to 1024² are refined as rembg does it, larger ones "
                            "at their own resolution in 1024² windows over the band only. Its checkpoint (110 or 380 "
                            "MB) is downloaded on first use. Post-process runs before it (as in rembg); the other mask "
                            "steps act on its alpha: threshold makes it binary again (the soft edge is lost), "
                            "grow/shrink moves the soft edge out or in, blur softens it further, invert keeps the "
                            "background with the same soft edge", "mask", title="ViTMatte")
    vitmatte_model: str = option(DEFAULT_VITMATTE, "Which ViTMatte checkpoint (rembg's four): small (110 MB) or base "
                                 "(380 MB, about 2.5x the time); Distinctions-646 was trained on real photographs "
                                 "(rembg's default), Composition-1k on Adobe's composites, whose data is licensed for "
                                 "NON-COMMERCIAL research only", "mask", labels=VITMATTE_LABELS,
                                 title="ViTMatte Model")
    post_process_mask: bool = option(False, "Refine step 1: rembg's morphological clean-up (removes specks, makes it "
                                     "binary)", "mask")
    mask_threshold: int = option(0, "Refine step 2: 0 keeps the soft mask; otherwise binary, 255 where mask ≥ this "
                                 "(after alpha matting or ViTMatte, their soft edge is lost)",
                                 "mask", ge=0, le=255)
    mask_grow: int = option(0, "Refine step 3: grow the mask by this many pixels (negative shrinks)", "mask",
                            ge=-MAX_GROW, le=MAX_GROW)
    mask_blur: float = option(0.0, "Refine step 4: feather the mask edge by this radius in pixels", "mask",
                              ge=0.0, le=MAX_BLUR)
    mask_invert: bool = option(False, "Refine step 5: invert the mask (keep the background)", "mask")
    decontaminate: bool = option(False, "Estimate the true foreground colour at soft edges, so no fringe of the old "
                                 "background shows", "output")
    background_color: Optional[tuple] = option(None, "Composite the cut-out over this colour (its alpha respected) "
                                               "instead of transparency; the mask is unchanged. A name, #rrggbb or "
                                               "R,G,B[,A]", "output", node_shape=True, metavar="COLOUR")
    output_mode: str = option("cutout_and_mask", "Save the cut-out and the mask, or only the mask (then the image "
                              "output is the mask too)", "output", labels=OUTPUT_LABELS)
    cloth_category: str = option("all", "u2net_cloth_seg only: which garments make the mask (all = their union)",
                                 "prompt", labels=CLOTH_LABELS)
    sam_point: Optional[tuple] = option(None, "sam only: a point prompt (x, y); default the image centre", "prompt",
                                        node_shape=True, metavar=("X", "Y"))
    sam_box: Optional[tuple] = option(None, "sam only: a box prompt (x0, y0, x1, y1)", "prompt", node_shape=True,
                                      metavar=("X0", "Y0", "X1", "Y1"))

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            meta = f.metadata
            if isinstance(f.default, bool):
                if isinstance(value, str) or value not in (True, False):
                    raise ValueError(f"{f.name} must be true or false, got {value!r}.")
                value = bool(value)
            elif isinstance(f.default, (int, float)):
                kind = float if isinstance(f.default, float) else int
                try:
                    value = kind(value)
                except (TypeError, ValueError):
                    raise ValueError(f"{f.name} must be a number, got {value!r}.") from None
                if meta["ge"] is not None:
                    check_range(f.name, value, meta["ge"], meta["le"], " pixels" if "pixels" in meta["help"] else "")
            elif meta["labels"] is not None and value not in meta["labels"] and not (value is None is f.default):
                raise ValueError(f"{f.name} must be one of {', '.join(meta['labels'])}, got {value!r}.")
            object.__setattr__(self, f.name, value)
        _own_file(self)
        object.__setattr__(self, "background_color", colour(self.background_color))
        object.__setattr__(self, "sam_point", _point(self.sam_point))
        object.__setattr__(self, "sam_box", _box(self.sam_box))

    @property
    def mask(self):
        """The refine steps' parameters (imaging/refine.py)."""
        from .imaging.refine import MaskOptions

        return MaskOptions(self.post_process_mask, self.mask_threshold, self.mask_grow, self.mask_blur, self.mask_invert)

    @property
    def matting(self):
        """The alpha matting parameters (imaging/matting.py)."""
        from .imaging.matting import MattingOptions

        return MattingOptions(self.alpha_matting, self.alpha_matting_foreground_threshold,
                              self.alpha_matting_background_threshold, self.alpha_matting_erode_size)

    @property
    def refiner(self) -> Optional[str]:
        """The catalog name of the refiner these options ask for (a ViTMatte checkpoint), or None."""
        return VITMATTE_PREFIX + self.vitmatte_model if self.vitmatte else None

    @property
    def unmix_colours(self) -> bool:
        """Whether the cut-out's colours are unmixed at soft edges: decontaminate, or ViTMatte (as rembg does)."""
        return self.decontaminate or self.vitmatte

    def replace(self, **changes) -> "RemovalOptions":
        return dataclasses.replace(self, **changes)

    @classmethod
    def build(cls, options: Optional["RemovalOptions"] = None, **keywords) -> "RemovalOptions":
        """``options`` with ``keywords`` applied (unknown names are a TypeError that lists the valid ones)."""
        unknown = set(keywords) - set(NAMES)
        if unknown:
            raise TypeError(f"Unknown option(s) {', '.join(sorted(unknown))}. Options: {', '.join(NAMES)}.")
        base = options if options is not None else cls()
        return base.replace(**keywords) if keywords else base


FIELDS = {f.name: f for f in dataclasses.fields(RemovalOptions)}
NAMES = tuple(FIELDS)


def colour(value) -> Optional[tuple[int, int, int, int]]:
    """None, a colour name, ``#rrggbb[aa]``, ``"R,G,B[,A]"`` or an RGB(A) sequence -> an RGBA tuple (0-255)."""
    if value is None:
        return None
    if isinstance(value, str):
        if "," in value:
            try:
                value = tuple(int(v) for v in value.split(","))
            except ValueError:
                raise ValueError(f"background_color must be a colour name, #rrggbb or R,G,B[,A], got {value!r}.") from None
        else:
            from PIL import ImageColor

            try:
                value = ImageColor.getrgb(value)
            except ValueError:
                raise ValueError(f"background_color: unknown colour {value!r}.") from None
    value = tuple(int(v) for v in value)
    if len(value) == 3:
        value = (*value, 255)
    if len(value) != 4 or not all(0 <= v <= 255 for v in value):
        raise ValueError(f"background_color must be RGB or RGBA with values 0-255, got {value!r}.")
    return value


def _own_file(options: RemovalOptions) -> None:
    """model_path sets the model to custom (a file and a model from the catalog cannot both be meant); custom needs
    both a file and its family."""
    if options.model_path is not None:
        if options.model not in (DEFAULT_MODEL, CUSTOM):
            raise ValueError(f"model_path runs your own file: leave model unset (or {CUSTOM!r}), not "
                             f"{options.model!r}.")
        object.__setattr__(options, "model", CUSTOM)
        object.__setattr__(options, "model_path", str(options.model_path))
    if options.model == CUSTOM and (not options.model_path or options.model_family is None):
        raise ValueError(f"Model {CUSTOM!r} needs model_path (your .onnx file) and model_family (one of "
                         f"{', '.join(FAMILY_LABELS)}).")
    if options.model_family is not None and options.model != CUSTOM:
        raise ValueError("model_family is for your own model file (model_path); a catalog model knows its family.")


def _point(value) -> Optional[tuple[float, float]]:
    if value is None:
        return None
    if len(value) != 2:
        raise ValueError(f"sam_point must be (x, y), got {value!r}.")
    return (float(value[0]), float(value[1]))


def _box(value) -> Optional[tuple[float, float, float, float]]:
    if value is None:
        return None
    if len(value) != 4 or value[2] <= value[0] or value[3] <= value[1]:
        raise ValueError(f"sam_box must be (x0, y0, x1, y1) with x1 > x0 and y1 > y0, got {value!r}.")
    return tuple(float(v) for v in value)


# --- front doors --------------------------------------------------------------------------------------------------


def help_text(name: str, context: str) -> str:
    """Option ``name``'s help as shown in ``context``: ``"node"`` (inside InvokeAI) or ``"cli"`` (the command line)."""
    return FIELDS[name].metadata["help"].format(**CONTEXTS[context])


def node_input(name: str) -> dict:
    """Keyword arguments for InvokeAI's ``InputField`` of option ``name``: default, bounds, description, labels."""
    meta = FIELDS[name].metadata
    out: dict[str, Any] = {"default": FIELDS[name].default, "description": help_text(name, "node")}
    if meta["ge"] is not None:
        out.update(ge=meta["ge"], le=meta["le"])
    if meta["labels"] is not None:
        out["ui_choice_labels"] = dict(meta["labels"])
    if meta["title"] is not None:
        out["title"] = meta["title"]
    return out


def node_name(name: str) -> str:
    return FIELDS[name].metadata["node"] or name


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One command-line flag per option, in groups, with the option's default, choices, range and help."""
    groups = {key: parser.add_argument_group(title) for key, title in GROUPS.items()}
    for name, f in FIELDS.items():
        meta = f.metadata
        names = [meta["short"], flag(name)] if meta["short"] else [flag(name)]
        text = help_text(name, "cli").replace("%", "%%")
        if meta["ge"] is not None:
            text += f" [{meta['ge']:g} to {meta['le']:g}; default {f.default:g}]"
        group = groups[meta["group"]]
        if isinstance(f.default, bool):
            group.add_argument(*names, dest=name, action="store_true", help=text)
        elif meta["labels"] is not None:
            group.add_argument(*names, dest=name, default=f.default, choices=list(meta["labels"]),
                               help=f"{text} (default: {f.default})")
        elif isinstance(f.default, (int, float)):
            group.add_argument(*names, dest=name, type=type(f.default), default=f.default, help=text)
        elif isinstance(meta["metavar"], tuple):
            group.add_argument(*names, dest=name, type=float, nargs=len(meta["metavar"]), metavar=meta["metavar"],
                               help=text)
        else:
            group.add_argument(*names, dest=name, metavar=meta["metavar"], help=text)


def add_command_line(parser: argparse.ArgumentParser, models_dir_help: str) -> None:
    """Every option's flag, plus where model files live, whether to download them, and ``--mask-only``: what the
    CLI and the batch command share."""
    from pathlib import Path

    add_arguments(parser)
    files = parser.add_argument_group("model files")
    files.add_argument("--models-dir", type=Path, help=models_dir_help)
    files.add_argument("--no-download", action="store_true", help="fail instead of downloading a missing model")
    parser.add_argument("--mask-only", dest="output_mode", action="store_const", const="mask_only",
                        help="the same as --output-mode mask_only: write only NAME.mask.png")


def from_arguments(args: argparse.Namespace) -> RemovalOptions:
    """The options a parsed command line asked for (ValueError naming the option when one is out of range)."""
    return RemovalOptions(**{name: getattr(args, name) for name in NAMES})


def parse_command_line(parser: argparse.ArgumentParser, argv) -> tuple[argparse.Namespace, RemovalOptions]:
    """``argv`` parsed, and the options it asked for; a value out of range is a usage error naming the option."""
    args = parser.parse_args(argv)
    try:
        return args, from_arguments(args)
    except ValueError as e:
        parser.error(str(e))
        raise  # not reached: parser.error exits
