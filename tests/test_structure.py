"""The package's shape, kept by a test: who imports InvokeAI and Ray, where family knowledge lives, how long functions
are. Read from the source with ``ast`` (nothing is imported)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "remove_background"
MAX_FUNCTION_LINES = 80


def modules() -> dict[str, ast.Module]:
    """Every module of the package, by its path relative to the package folder."""
    return {str(p.relative_to(PACKAGE)): ast.parse(p.read_text(), str(p)) for p in sorted(PACKAGE.rglob("*.py"))}


def imported(tree: ast.Module) -> set[str]:
    """The absolute modules a module imports anywhere (relative imports are the package's own)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def importers(top: str) -> set[str]:
    return {name for name, tree in modules().items() if any(m == top or m.startswith(top + ".") for m in imported(tree))}


def test_only_the_invokeai_adapter_imports_invokeai():
    outside = {m for m in importers("invokeai") if not m.startswith("invokeai_adapter/")}
    assert not outside, f"InvokeAI imported outside remove_background/invokeai_adapter/: {sorted(outside)}"
    assert importers("invokeai"), "the adapter imports InvokeAI: this test reads imports correctly"


def test_only_the_batch_path_imports_ray():
    outside = {m for m in importers("ray") if not m.startswith("batch/")}
    assert not outside and importers("ray"), sorted(importers("ray"))


def family_words() -> set[str]:
    """Family keys, and the output kinds rows named before families were classes: words no comparison outside
    families/ may use."""
    from remove_background import catalog

    return {m.family for m in catalog.every_model().values()} | {"minmax", "sigmoid_minmax", "clip_minmax"}


def _family_terms(node: ast.AST, words: set[str]) -> list[str]:
    found = []
    for sub in ast.walk(node):
        if isinstance(sub, ast.Attribute) and sub.attr == "family":
            found.append(".family")
        elif isinstance(sub, ast.Constant) and isinstance(sub.value, str) and sub.value in words:
            found.append(repr(sub.value))
    return found


def test_family_knowledge_stays_in_the_families():
    """No comparison outside families/ looks at a model's family or output kind: what differs between families is
    asked of the family class (families.of(info)), never decided by comparing strings elsewhere."""
    words = family_words()
    departures = []
    for name, tree in modules().items():
        if name.startswith("families/"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Compare, ast.Match)):
                terms = _family_terms(node, words)
                if terms:
                    departures.append(f"{name}:{node.lineno} compares {', '.join(terms)}")
    assert not departures, "\n".join(departures)


def test_the_family_knowledge_check_sees_a_comparison():
    tree = ast.parse('if info.family == "birefnet" or output in ("sigmoid_minmax",):\n    pass')
    compares = [n for n in ast.walk(tree) if isinstance(n, ast.Compare)]
    assert [_family_terms(c, family_words()) for c in compares] == [[".family", "'birefnet'"], ["'sigmoid_minmax'"]]


def functions(tree: ast.Module):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


@pytest.mark.parametrize("name", sorted(modules()))
def test_no_function_over_80_lines(name):
    long = [f"{f.name} ({f.end_lineno - f.lineno + 1} lines, from line {f.lineno})"
            for f in functions(modules()[name]) if f.end_lineno - f.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{name}: {', '.join(long)}"
