#!/usr/bin/env python3
"""Print the README's model table from the catalog (the one source of model facts)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from remove_background.catalog import MODELS  # noqa: E402


def table() -> str:
    rows = [
        "| model | file(s) in `<models>/rembg/` | checksum | size | input | licence |",
        "|---|---|---|---|---|---|",
    ]
    for info in MODELS.values():
        for i, f in enumerate(info.files):
            name = f"`{info.name}`" if i == 0 else ""
            licence = info.licence + ("" if info.commercial_use else " (**non-commercial**)") if i == 0 else ""
            size = f"{info.input_size}²" if i == 0 else ""
            rows.append(
                f"| {name} | [`{f.filename}`]({f.url}) | `{f.checksum or 'none published'}` | ~{f.approx_mb} MB "
                f"| {size} | {licence} |"
            )
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
