"""The front page (README.md) and the pages under .readme/, kept true by a test: the front page's size, every
relative link and anchor, the model tables against the catalog, the module map against the package, the two
commands, and every code block a page marks to run (in a scratch folder with the real u2netp weights)."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from remove_background import catalog
from support import ROOT
from support.models_table import PLACES, between, compact_table, refiner_table, table

README = ROOT / "README.md"
PAGES = sorted((ROOT / ".readme").glob("*.md"))
DOCS = [README, *PAGES]
FRONT_PAGE_LIMIT = 15_000  # bytes
RUNS = "<!-- runs in CI: tests/test_readme.py -->"
ILLUSTRATION = "<!-- illustration: not run -->"
MAP_BEGIN = "<!-- module map: one row per module; tests/test_readme.py checks it -->"
MAP_END = "<!-- end of module map -->"
DEVELOPMENT = ROOT / ".readme" / "development.md"


# --- reading markdown ---------------------------------------------------------------------------------------------

def blocks(text: str) -> list[tuple[str, str, str]]:
    """(marker line before the fence or "", language, code) for each fenced code block."""
    found, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        fence = re.match(r"^(```+)\s*(\S*)", lines[i])
        if not fence:
            i += 1
            continue
        before = next((line.strip() for line in reversed(lines[:i]) if line.strip()), "")
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith(fence.group(1)))
        found.append((before if before.startswith("<!--") else "", fence.group(2), "\n".join(lines[i + 1:end])))
        i = end + 1
    return found


def prose(text: str, inline_code: bool = False) -> str:
    """The text outside fenced blocks, and outside inline code unless ``inline_code``."""
    text = re.sub(r"^(```+).*?^\1\s*$", "", text, flags=re.S | re.M)
    return text if inline_code else re.sub(r"`[^`\n]*`", "", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text as shown, lower case, without punctuation, spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"[^\w\- ]", "", text.replace("`", "").strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set:
    seen: dict = {}
    out = set()
    for line in prose(page.read_text(), inline_code=True).splitlines():
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            base = slug(heading.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(page: Path) -> list[str]:
    text = prose(page.read_text())
    found = re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text)
    found += re.findall(r"<(?:img|a)\b[^>]*?\b(?:src|href)=\"([^\"]+)\"", text)
    return [link for link in found if not re.match(r"^[a-z][a-z0-9+.-]*:", link)]


# --- the front page and the pages ---------------------------------------------------------------------------------

def test_the_front_page_is_at_most_15_kb():
    size = len(README.read_bytes())
    assert size <= FRONT_PAGE_LIMIT, f"README.md is {size:,} bytes; move detail to a page under .readme/"


def test_every_page_is_linked_from_the_front_page():
    linked = {(README.parent / link.split("#")[0]).resolve() for link in links(README)}
    assert PAGES and not [p.name for p in PAGES if p.resolve() not in linked]


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_and_anchor_resolves(page):
    broken = []
    for link in links(page):
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            broken.append(f"{link}: no {target.relative_to(ROOT) if ROOT in target.parents else target}")
        elif anchor and target.suffix == ".md" and anchor not in anchors(target):
            broken.append(f"{link}: no heading with anchor #{anchor} in {target.name}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def test_the_slug_rules():
    assert slug("ONNX Runtime's own GPU build (optional)") == "onnx-runtimes-own-gpu-build-optional"
    assert slug("Beyond rembg 2.0.69's models") == "beyond-rembg-2069s-models"
    assert slug("The `torch` route, [linked](x.md)") == "the-torch-route-linked"
    assert {"two-commands-on-a-fresh-machine", "python-api", "licence"} <= anchors(README)


def test_the_two_commands_are_on_the_front_page_and_ci_runs_the_tests_one():
    bash = "\n".join(code for _, lang, code in blocks(README.read_text()) if lang == "bash")
    for command in ("bash tests/demo.sh", "bash tests/run.sh"):
        assert re.search(rf"^{re.escape(command)}\b", bash, re.M), f"README.md lost '{command}'"
        assert (ROOT / command.split()[1]).is_file()
    assert "bash tests/run.sh" in (ROOT / ".ci" / "run").read_text()
    assert "<this repository>" not in README.read_text()


# --- model tables -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("place", PLACES, ids=lambda p: f"{p[0].name}:{p[3].__name__}")
def test_model_tables_are_generated_from_the_catalog(place):
    """Each table between its markers equals what tests/support/models_table.py makes of the catalog now
    (regenerate: PYTHONPATH=tests python -m support.models_table --write)."""
    page, begin, end, made = place
    assert between(page.read_text(), begin, end) == made()


def test_the_models_page_has_a_row_per_file_and_says_what_each_needs():
    lines = table().splitlines()
    assert len(lines) == 2 + sum(len(m.files) for m in catalog.MODELS.values())
    for name, info in catalog.MODELS.items():
        row = next(line for line in lines if line.startswith(f"| `{name}` |"))
        assert f"{info.input_size}²" in row and info.licence in row
        assert ("none published" in row) == (info.primary_file.checksum is None)
        assert ("non-commercial" in row) == (not info.commercial_use)


def test_the_front_page_has_a_row_per_model_with_its_input_size_and_licence():
    lines = compact_table().splitlines()
    assert len(lines) == 2 + len(catalog.MODELS)
    for name, info in catalog.MODELS.items():
        row = next(line for line in lines if line.startswith(f"| `{name}` |"))
        assert f"{info.input_size}²" in row and info.licence in row
        assert ("non-commercial" in row) == (not info.commercial_use)
        assert "http" not in row and "md5:" not in row and "sha256:" not in row


def test_the_refiner_tables_have_a_row_per_checkpoint_with_its_licence():
    for made in (refiner_table, *(m for _, begin, _, m in PLACES if "refiners" in begin)):
        lines = made().splitlines()
        assert len(lines) == 2 + len(catalog.REFINERS)
        for info in catalog.REFINERS.values():
            row = next(line for line in lines if f"`{info.name.removeprefix(catalog.VITMATTE_PREFIX)}`" in line)
            assert info.licence in row and ("non-commercial" in row) == (not info.commercial_use)


# --- the module map -----------------------------------------------------------------------------------------------

def only_reexports(path: Path) -> bool:
    """An ``__init__.py`` of a docstring, imports and ``__all__`` only."""
    for statement in ast.parse(path.read_text()).body:
        if isinstance(statement, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(statement, ast.Expr) and isinstance(getattr(statement.value, "value", None), str):
            continue
        if isinstance(statement, ast.Assign) and [getattr(t, "id", "") for t in statement.targets] == ["__all__"]:
            continue
        return False
    return True


def package_modules() -> set:
    return {p.relative_to(ROOT).as_posix() for p in (ROOT / "remove_background").rglob("*.py")
            if not (p.name == "__init__.py" and only_reexports(p))}


def module_map() -> dict:
    """{module path: [test files]} from the development page's table."""
    rows = [line for line in between(DEVELOPMENT.read_text(), MAP_BEGIN, MAP_END).splitlines()
            if line.startswith("| `remove_background/")]
    found: dict = {}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        module = cells[0].strip("`")
        assert module not in found, f"{module} is in the module map twice"
        found[module] = re.findall(r"`(tests/[\w/]+\.py)`", cells[-1])
    return found


def test_the_module_map_names_every_module_of_the_package_and_only_those():
    mapped, modules = set(module_map()), package_modules()
    assert not modules - mapped, f"modules missing from .readme/development.md's map: {sorted(modules - mapped)}"
    assert not mapped - modules, f"the map names modules that do not exist: {sorted(mapped - modules)}"


def test_every_module_in_the_map_names_test_files_that_exist():
    for module, tests in module_map().items():
        assert tests, f"{module}: no test file named"
        missing = [t for t in tests if not (ROOT / t).is_file()]
        assert not missing, f"{module}: {missing} do not exist"


def test_only_reexports_tells_the_init_files_apart():
    assert only_reexports(ROOT / "remove_background" / "batch" / "__init__.py")
    assert not only_reexports(ROOT / "remove_background" / "__init__.py")  # __version__, the node's registration


# --- code blocks --------------------------------------------------------------------------------------------------

def runnable() -> list:
    found = []
    for page in DOCS:
        for i, (marker, lang, code) in enumerate(blocks(page.read_text())):
            if marker == RUNS:
                slow = [pytest.mark.slow] if "batch" in code else []
                found.append(pytest.param(lang, code, id=f"{page.name}-{i}-{lang}", marks=slow))
    return found


def test_every_python_block_runs_or_is_marked_an_illustration():
    unmarked = [f"{page.name}: block {i}" for page in DOCS
                for i, (marker, lang, _) in enumerate(blocks(page.read_text()))
                if lang == "python" and marker not in (RUNS, ILLUSTRATION)]
    assert not unmarked, f"Python blocks neither marked to run nor as an illustration: {unmarked}"


def test_the_front_page_runs_its_api_and_command_line_blocks():
    langs = [lang for marker, lang, _ in blocks(README.read_text()) if marker == RUNS]
    assert "python" in langs and "bash" in langs


@pytest.fixture
def workspace(tmp_path, models_dir):
    """A scratch folder with the files the pages' blocks name (photo.jpg, photos/), and an environment where the
    command line is on PATH, this checkout is imported, and the models folder holds the real u2netp."""
    from skimage import data

    Image.fromarray(data.astronaut()).save(tmp_path / "photo.jpg", quality=90)
    (tmp_path / "photos").mkdir()
    Image.fromarray(data.chelsea()).save(tmp_path / "photos" / "cat.jpg", quality=90)
    Image.fromarray(data.coffee()).resize((200, 150)).save(tmp_path / "photos" / "coffee.png")
    env = {**os.environ, "REMOVE_BACKGROUND_MODELS": str(models_dir),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return tmp_path, env


@pytest.mark.parametrize("lang,code", runnable())
def test_marked_blocks_run(lang, code, workspace):
    from support.batch import private_ray_tmp

    folder, env = workspace
    if lang == "python":
        command = [sys.executable, "-c", code]
    else:
        assert lang in ("bash", "sh"), f"a block marked to run in an unknown language: {lang}"
        command = ["bash", "-c", f"set -euo pipefail\n{code}"]
    with private_ray_tmp():  # a block that starts Ray starts its own
        r = subprocess.run(command, cwd=folder, env={**env, "RAY_TMPDIR": os.environ["RAY_TMPDIR"]},
                           capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "Traceback" not in r.stderr, f"{code}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"
    for saved in re.findall(r"\.save\(\"([^\"]+)\"\)", code):
        assert (folder / saved).is_file(), f"{saved} was not written"
    for out in re.findall(r"(?:-o |run_batch\(\"[^\"]+\", \")([\w./-]+)", code):
        assert list((folder / out).rglob("*.png")), f"nothing written into {out}"


def test_every_name_the_pages_document_is_importable():
    """What the pages tell users to import, and every error they name, is there: each error from the package's top
    level or, for the batch path's own, from ``remove_background.batch`` (in its ``__all__``); the rest from the
    module the page imports it from."""
    import builtins
    import importlib

    import remove_background
    import remove_background.batch as batch

    for doc in DOCS:
        text = doc.read_text()
        for module, names in re.findall(r"^from (remove_background[\w.]*) import ([\w, ]+)$", text, re.M):
            for name in (n.strip() for n in names.split(",")):
                assert hasattr(importlib.import_module(module), name), (doc.name, module, name)
        for error in set(re.findall(r"`(\w+Error)`", text)) - set(dir(builtins)):
            home = next((m for m in (remove_background, batch) if error in m.__all__), None)
            assert home is not None and issubclass(getattr(home, error), Exception), (doc.name, error)
