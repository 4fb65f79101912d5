"""The model tables, made from the catalog (the one source of model facts), on two pages: the front page
(README.md) holds compact ones (``compact_table()``, ``compact_refiner_table()``), the models page
(.readme/models.md) the full ones with files, URLs and checksums (``table()``, ``refiner_table()``).

``PYTHONPATH=tests python -m support.models_table`` prints them; ``--write`` puts each into its page between its
two markers (``PLACES``; tests/test_readme.py checks every copy is current).
"""

import re
import sys

from support import ROOT

COMMAND = "PYTHONPATH=tests python -m support.models_table --write"
BEGIN = f"<!-- models table: {COMMAND} -->"
END = "<!-- end of models table -->"
REFINERS_BEGIN = f"<!-- refiners table: {COMMAND} -->"
REFINERS_END = "<!-- end of refiners table -->"
README = ROOT / "README.md"
MODELS_PAGE = ROOT / ".readme" / "models.md"


def default_route(info, short: bool = False) -> str:
    """Where execution provider ``auto`` runs a model (ORT: ONNX Runtime)."""
    if info.half:
        return "GPU, in float16" if short else "GPU in float16 (CPU: slower than float32)"
    return "CPU or GPU" if short else "CPU: ORT · GPU: ORT GPU or torch"


def licence(info) -> str:
    """The catalog's licence, with non-commercial use marked."""
    return info.licence if info.commercial_use else f"**non-commercial**: {info.licence}"


def purpose(info) -> str:
    """What a model is for: the first clause of its catalog description, without asides that hold a comma."""
    first = re.split(r"[:;]|\.\s", info.description)[0].rstrip(".")
    return re.sub(r" \([^()]*,[^()]*\)", "", first)


def size(info) -> str:
    half = " + its float16 copy" if info.half else ""
    return f"~{sum(f.approx_mb for f in info.files)} MB{half}"


def compact_table() -> str:
    """The front page's: one row per model, with what it is for, its input size, download size, licence and where
    ``auto`` runs it."""
    from remove_background.catalog import MODELS

    rows = ["| model | for | input | size | licence | `auto` runs it on |", "|---|---|---|---|---|---|"]
    for info in MODELS.values():
        rows.append(f"| `{info.name}` | {purpose(info)} | {info.input_size}² | {size(info)} | {licence(info)} "
                    f"| {default_route(info, short=True)} |")
    return "\n".join(rows)


def table() -> str:
    """The models page's: one row per model file: name, file and where it comes from, checksum, size, input,
    licence, and where execution provider ``auto`` runs it."""
    from remove_background.catalog import MODELS

    rows = [
        "| model | file(s) in `<models>/rembg/` | checksum | size | input | licence | runs by default (auto) |",
        "|---|---|---|---|---|---|---|",
    ]
    for info in MODELS.values():
        for i, f in enumerate(info.files):
            first = i == 0
            half = " (converted to float16 once, beside it)" if info.half else ""
            rows.append(
                f"| {f'`{info.name}`' if first else ''} | [`{f.filename}`]({f.url}){half if first else ''} "
                f"| `{f.checksum or 'none published'}` | ~{f.approx_mb} MB | {f'{info.input_size}²' if first else ''} "
                f"| {licence(info) if first else ''} | {default_route(info) if first else ''} |"
            )
    return "\n".join(rows)


def compact_refiner_table() -> str:
    """The front page's ViTMatte checkpoints: the ``vitmatte_model`` value, what it is, its size and licence."""
    from remove_background.catalog import REFINERS, VITMATTE_PREFIX

    rows = ["| `vitmatte_model` | what | size | licence |", "|---|---|---|---|"]
    for info in REFINERS.values():
        rows.append(f"| `{info.name.removeprefix(VITMATTE_PREFIX)}` | {purpose(info)} | {size(info)} "
                    f"| {licence(info)} |")
    return "\n".join(rows)


def refiner_table() -> str:
    """One row per ViTMatte checkpoint: the ``vitmatte_model`` value, its file, checksum, size and licence."""
    from remove_background.catalog import REFINERS, VITMATTE_PREFIX

    rows = ["| `vitmatte_model` | file in `<models>/rembg/` | checksum | size | licence |", "|---|---|---|---|---|"]
    for info in REFINERS.values():
        f = info.primary_file
        rows.append(f"| `{info.name.removeprefix(VITMATTE_PREFIX)}` | [`{f.filename}`]({f.url}) | `{f.checksum}` "
                    f"| ~{f.approx_mb} MB | {licence(info)} |")
    return "\n".join(rows)


PLACES = (  # (page, begin marker, end marker, the table it holds)
    (README, BEGIN, END, compact_table),
    (README, REFINERS_BEGIN, REFINERS_END, compact_refiner_table),
    (MODELS_PAGE, BEGIN, END, table),
    (MODELS_PAGE, REFINERS_BEGIN, REFINERS_END, refiner_table),
)


def between(text: str, begin: str, end: str) -> str:
    """What a page holds between two markers (each must be there once)."""
    if text.count(begin) != 1 or text.count(end) != 1:
        raise ValueError(f"expected each of {begin!r} and {end!r} once")
    return text.split(begin)[1].split(end)[0].strip()


def write_pages() -> None:
    for page, begin, end, made in PLACES:
        text = page.read_text()
        between(text, begin, end)
        head, rest = text.split(begin)
        page.write_text(f"{head}{begin}\n{made()}\n{end}{rest.split(end, 1)[1]}")


if __name__ == "__main__":
    if "--write" in sys.argv[1:]:
        write_pages()
    else:
        print("\n\n".join(made() for _, _, _, made in PLACES))
