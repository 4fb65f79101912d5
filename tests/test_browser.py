"""Shown in a real browser: Debian's chromium, driven by playwright-core, against a real invokeai-web.

Loads workflows/remove-background.json in the workflow editor and checks that our node renders with its
dropdown of every catalog model (and your own file). UPDATE_SCREENSHOT=1 writes the node's picture to
.readme/node.png (the README's screenshot).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from remove_background.options import MODEL_LABELS
from support import ROOT
from support.browser import BROWSER_DIR, missing_tools
from support.invokeai_server import InvokeAIServer, prepare_root

pytestmark = [pytest.mark.server, pytest.mark.browser, pytest.mark.slow]

def test_node_renders_in_the_workflow_editor(tmp_path):
    missing = missing_tools()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"browser test tools missing in CI: {missing} (tests/browser/deps.sh installs them)")
        pytest.skip(f"missing: {', '.join(missing)}; run tests/browser/deps.sh as root")
    root = prepare_root(tmp_path / "root")
    shot = tmp_path / "node.png"
    with InvokeAIServer(root) as server:
        r = subprocess.run(["node", str(BROWSER_DIR / "node_in_editor.mjs"), server.url,
                            str(ROOT / "workflows" / "remove-background.json"), str(shot), str(len(MODEL_LABELS))],
                           capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["ok"] and result["options"] == len(MODEL_LABELS) and result["selected"].startswith("U²-Net-p")
    assert shot.stat().st_size > 10_000
    if os.environ.get("UPDATE_SCREENSHOT"):
        shutil.copyfile(shot, ROOT / ".readme" / "node.png")
