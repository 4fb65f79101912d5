"""The README's model table, made from the catalog (the one source of model facts): ``table()``.

``PYTHONPATH=tests python -m support.models_table`` prints it; ``--write`` puts it into README.md between the two
markers (tests/test_catalog.py checks the README's copy is current).
"""

import sys

from support import ROOT

BEGIN = "<!-- models table: PYTHONPATH=tests python -m support.models_table --write -->"
END = "<!-- end of models table -->"
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


def write_readme() -> None:
    text = README.read_text()
    head, rest = text.split(BEGIN)
    README.write_text(f"{head}{BEGIN}\n{table()}\n{END}{rest.split(END, 1)[1]}")


if __name__ == "__main__":
    write_readme() if "--write" in sys.argv[1:] else print(table())
