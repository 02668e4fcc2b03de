"""Where the engine keeps what it can compute again: the hello cache (jobs.model_info) and the look atlas (atlas.py).

Standard library only, so a hello never imports torch to find it.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path


def cache_folder() -> Path:
    """$LUCIDDREAM_CACHE, else the engine's own virtual environment (removing it removes the caches), else the
    user's cache folder."""
    if os.environ.get("LUCIDDREAM_CACHE"):
        return Path(os.environ["LUCIDDREAM_CACHE"])
    if sys.prefix != sys.base_prefix:  # a virtual environment: its own folder
        return Path(sys.prefix) / "var" / "luciddream"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "luciddream"
