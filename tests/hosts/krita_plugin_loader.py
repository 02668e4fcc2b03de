"""Import the Krita plug-in's modules outside Krita, for tests.

The plug-in package is called `luciddream`, like the engine, and its __init__ registers with Krita; so tests load
its folder as a package named `krita_luciddream` with an empty __init__, and hand it the engine's protocol.py as
its `protocol` submodule (install.py copies that same file into the installed plug-in).
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[2]
PLUGIN_DIR = ROOT / "krita_plugin" / "luciddream"
PACKAGE = "krita_luciddream"


def load(module: str, plugin_dir: Optional[Path] = None, protocol_file: Optional[Path] = None) -> types.ModuleType:
    """`krita_luciddream.<module>` from the plug-in folder (default: the repository's)."""
    folder = Path(plugin_dir or PLUGIN_DIR)
    if PACKAGE not in sys.modules:
        pkg = types.ModuleType(PACKAGE)
        pkg.__path__ = [str(folder)]  # type: ignore[attr-defined]
        sys.modules[PACKAGE] = pkg
        proto_path = Path(protocol_file or (folder / "protocol.py"))
        if not proto_path.exists():
            proto_path = ROOT / "engine" / "luciddream" / "protocol.py"
        spec = importlib.util.spec_from_file_location(PACKAGE + ".protocol", proto_path)
        proto = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE + ".protocol"] = proto
        spec.loader.exec_module(proto)  # type: ignore[union-attr]
        pkg.protocol = proto  # type: ignore[attr-defined]
    return importlib.import_module(f"{PACKAGE}.{module}")
