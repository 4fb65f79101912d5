"""Which InvokeAI releases the node runs in, and one clear line in InvokeAI's log on an older one.

Older releases fail in ways that say nothing about their age: InvokeAI 4.x imports the pack but registers no node
(or, through install.py's shim, registers one whose every run fails on ``context.util.signal_progress``), and 3.x
has no ``invokeai.invocation_api``. So the package refuses them when InvokeAI loads it, before any of that.

Standard library only, and loadable by path (as install.py loads install/safe_install.py).
"""

from __future__ import annotations

import re
from typing import Optional

try:
    from ..errors import RemoveBackgroundError as _Base
except ImportError:  # loaded by path, outside the package
    _Base = RuntimeError

# The oldest release the node is verified on; tests/test_invokeai_releases.py installs it (and the newest) into a
# pristine environment with install.py and runs the node there over REST.
MIN_INVOKEAI = "5.15.0"


class UnsupportedInvokeAIError(_Base):
    """The InvokeAI that loads the node pack is older than MIN_INVOKEAI. Not an ImportError on purpose: install.py's
    shim takes an ImportError for "package not installed" and would retry from the clone, doubling the traceback."""


def invokeai_version() -> Optional[str]:
    """The installed InvokeAI's version, or None where it cannot be told."""
    try:
        from importlib.metadata import version

        return version("invokeai")
    except Exception:
        pass
    try:
        from invokeai.version import __version__

        return str(__version__)
    except Exception:
        return None


def release(text: str) -> tuple[int, int, int]:
    """``"6.0.0rc1"`` -> ``(6, 0, 0)``: the release numbers, padded to three; ``()`` if there are none."""
    m = re.match(r"\s*v?(\d+(?:\.\d+)*)", text or "")
    if not m:
        return ()  # type: ignore[return-value]
    parts = [int(p) for p in m.group(1).split(".")][:3]
    return tuple(parts + [0] * (3 - len(parts)))  # type: ignore[return-value]


def require_supported_invokeai(found: Optional[str] = None) -> None:
    """Raise UnsupportedInvokeAIError, with a one-line message, if InvokeAI is older than MIN_INVOKEAI."""
    found = found if found is not None else invokeai_version()
    if not found or not release(found) or release(found) >= release(MIN_INVOKEAI):
        return  # unknown versions (a source checkout without metadata) are let through
    raise UnsupportedInvokeAIError(
        f"remove-background needs InvokeAI >= {MIN_INVOKEAI} (this is {found}); the Remove Background node is not "
        f"loaded. Update InvokeAI (its launcher installs the latest release), then restart it."
    )
