"""Model families: one class per architecture, owning everything that differs between families (base.py).

Each module of this package holds one family (``u2net.py``, ``isnet.py``...) or a base they share
(``image_mask.py``). A new family is one new module here plus its rows in the catalog: the modules are found and
imported on first use, and each family class registers itself under its ``key``.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading

from .base import REGISTRY, Family

_loaded = False
_lock = threading.Lock()


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    with _lock:
        if not _loaded:
            for module in pkgutil.iter_modules(__path__):
                importlib.import_module(f"{__name__}.{module.name}")
            _loaded = True


def by_key(key: str) -> Family:
    """The family registered under ``key``; a ValueError naming the known ones otherwise."""
    _load_all()
    try:
        return REGISTRY[key]
    except KeyError:
        raise ValueError(f"Unknown model family {key!r}. Known: {', '.join(sorted(REGISTRY))}.") from None


def of(info) -> Family:
    """The family of a catalog entry."""
    return by_key(info.family)


def members(family: Family) -> list:
    """The catalog entries of ``family`` (models and refiners)."""
    from ..catalog import every_model

    return [m for m in every_model().values() if m.family == family.key]


def custom_families() -> dict[str, str]:
    """The families that run your own file, key -> a label saying how it is fed (the model-family choices)."""
    _load_all()
    return {key: f"{f.title} ({f.custom.label})" for key, f in sorted(REGISTRY.items(), key=_custom_order)
            if f.custom is not None}


def _custom_order(item) -> int:
    return item[1].custom.size if item[1].custom is not None else 0


def all_families() -> list[Family]:
    """Every registered family, in the order the catalog first names them (then any others)."""
    from ..catalog import every_model

    _load_all()
    order = list(dict.fromkeys(m.family for m in every_model().values()))
    return [REGISTRY[k] for k in order if k in REGISTRY] + [f for k, f in REGISTRY.items() if k not in order]


__all__ = ["Family", "by_key", "of", "members", "all_families", "custom_families"]
