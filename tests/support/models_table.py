"""The README's model tables, made from the catalog (the one source of model facts): ``table()`` for the models,
``refiner_table()`` for ViTMatte's checkpoints.

``PYTHONPATH=tests python -m support.models_table`` prints them; ``--write`` puts each into README.md between its
two markers (tests/test_catalog.py checks the README's copies are current).
"""

import sys

from support import ROOT

BEGIN = "<!-- models table: PYTHONPATH=tests python -m support.models_table --write -->"
END = "<!-- end of models table -->"
REFINERS_BEGIN = "<!-- refiners table: PYTHONPATH=tests python -m support.models_table --write -->"
REFINERS_END = "<!-- end of refiners table -->"
README = ROOT / "README.md"


def table() -> str:
    """One row per model file: name, file and where it comes from, checksum, size, input, licence, and where
    execution provider ``auto`` runs it."""
    from remove_background.catalog import MODELS

    rows = [
        "| model | file(s) in `<models>/rembg/` | checksum | size | input | licence | runs by default (auto) |",
        "|---|---|---|---|---|---|---|",
    ]
    for info in MODELS.values():
        for i, f in enumerate(info.files):
            first = i == 0
            licence = info.licence + ("" if info.commercial_use else " (**non-commercial**)")
            where = "GPU in float16 (CPU: slower than float32)" if info.half else "CPU: ORT · GPU: ORT GPU or torch"
            half = " (converted to float16 once, beside it)" if info.half else ""
            rows.append(
                f"| {f'`{info.name}`' if first else ''} | [`{f.filename}`]({f.url}){half if first else ''} "
                f"| `{f.checksum or 'none published'}` | ~{f.approx_mb} MB | {f'{info.input_size}²' if first else ''} "
                f"| {licence if first else ''} | {where if first else ''} |"
            )
    return "\n".join(rows)


def refiner_table() -> str:
    """One row per ViTMatte checkpoint: the ``vitmatte_model`` value, its file, checksum, size and licence."""
    from remove_background.catalog import REFINERS, VITMATTE_PREFIX

    rows = ["| `vitmatte_model` | file in `<models>/rembg/` | checksum | size | licence |", "|---|---|---|---|---|"]
    for info in REFINERS.values():
        f = info.primary_file
        licence = info.licence if info.commercial_use else f"**non-commercial**: {info.licence}"
        rows.append(f"| `{info.name.removeprefix(VITMATTE_PREFIX)}` | [`{f.filename}`]({f.url}) | `{f.checksum}` "
                    f"| ~{f.approx_mb} MB | {licence} |")
    return "\n".join(rows)


def write_readme() -> None:
    text = README.read_text()
    for begin, end, made in ((BEGIN, END, table()), (REFINERS_BEGIN, REFINERS_END, refiner_table())):
        head, rest = text.split(begin)
        text = f"{head}{begin}\n{made}\n{end}{rest.split(end, 1)[1]}"
    README.write_text(text)


if __name__ == "__main__":
    write_readme() if "--write" in sys.argv[1:] else print(f"{table()}\n\n{refiner_table()}")
