"""What the browser tests need: Debian's chromium, node, and playwright-core (tests/browser/package-lock.json)."""

from __future__ import annotations

import shutil

from . import ROOT

BROWSER_DIR = ROOT / "tests" / "browser"


def missing_tools() -> list[str]:
    missing = []
    if not shutil.which("chromium"):
        missing.append("chromium (apt-get install chromium)")
    if not shutil.which("node"):
        missing.append("node")
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        missing.append("playwright-core (cd tests/browser && npm ci)")
    return missing
