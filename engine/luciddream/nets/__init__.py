"""The model zoo: which networks can dream, how they want their pixels, and which layers they expose.

base.py holds what every network shares, one module per family defines its networks (lite.py with trunk.py,
googlenet.py, torchvision.py), and zoo.py collects them and loads one.
"""
from __future__ import annotations

from .base import LOGITS, DreamNet, ModelSpec
from .zoo import DEFAULT_MODEL, SPECS, get_spec, load_model, resolve_device

__all__ = ["LOGITS", "DreamNet", "ModelSpec", "DEFAULT_MODEL", "SPECS", "get_spec", "load_model", "resolve_device"]
