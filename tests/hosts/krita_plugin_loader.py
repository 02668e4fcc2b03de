"""Import the Krita plug-in's modules outside Krita, for tests.

The plug-in package is called `luciddream`, like the engine, and its __init__ registers with Krita; so tests load
its folder as a package named `krita_luciddream` with an empty __init__, and hand it the engine's protocol package
as its `protocol` subpackage and the adapter kit (kit/) as its `kit` subpackage (install.py copies those same
folders into the installed plug-in).
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


def _subpackage(name: str, folder: Path) -> types.ModuleType:
    """`krita_luciddream.<name>` executed from `folder`, as if install.py had copied it into the plug-in."""
    spec = importlib.util.spec_from_file_location(f"{PACKAGE}.{name}", folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[f"{PACKAGE}.{name}"] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def load(module: str, plugin_dir: Optional[Path] = None, protocol_dir: Optional[Path] = None,
         kit_dir: Optional[Path] = None) -> types.ModuleType:
    """`krita_luciddream.<module>` from the plug-in folder (default: the repository's)."""
    folder = Path(plugin_dir or PLUGIN_DIR)
    if PACKAGE not in sys.modules:
        pkg = types.ModuleType(PACKAGE)
        pkg.__path__ = [str(folder)]  # type: ignore[attr-defined]
        sys.modules[PACKAGE] = pkg
        proto_dir = Path(protocol_dir or (folder / "protocol"))
        if not (proto_dir / "__init__.py").exists():
            proto_dir = ROOT / "engine" / "luciddream" / "protocol"
        spec = importlib.util.spec_from_file_location(PACKAGE + ".protocol", proto_dir / "__init__.py",
                                                      submodule_search_locations=[str(proto_dir)])
        proto = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE + ".protocol"] = proto
        spec.loader.exec_module(proto)  # type: ignore[union-attr]
        pkg.protocol = proto  # type: ignore[attr-defined]
        kit = Path(kit_dir or (folder / "kit"))
        pkg.kit = _subpackage("kit", kit if (kit / "__init__.py").exists() else ROOT / "kit")  # type: ignore
    return importlib.import_module(f"{PACKAGE}.{module}")
