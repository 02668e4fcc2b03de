"""luciddream: DeepDream inside a selection, with class and layer targets, octaves and seamless tiles.

    import luciddream
    out = luciddream.dream(image, mask, targets="goldfish, peacock=0.5", seed=1)

Names are imported on first use, so `luciddream.protocol` and the worker can start (and claim stdout) before
torch is loaded.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "dream": "render", "Settings": "render", "Cancelled": "errors", "DreamError": "errors", "Target": "objectives",
    "parse_targets": "objectives", "class_names": "labels", "find_class": "labels", "search_classes": "labels",
    "load_model": "nets", "SPECS": "nets", "DEFAULT_MODEL": "nets",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'luciddream' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
