"""Write krita_plugin/luciddream/classes.json: the 1000 ImageNet class names the Krita docker searches.

Why a generated file: the docker runs in Krita's own Python, which cannot import the engine (torch), yet it must
offer class names while the engine is not even started. The names come from the engine's `luciddream.labels`, so the
two never disagree; tests/test_krita_units.py fails when the file is out of date. Run with the engine's Python:

    .venv/bin/python tests/hosts/make_krita_classes.py
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[2] / "krita_plugin" / "luciddream" / "classes.json"


def build() -> str:
    """The file's text: [[short name, [WordNet synonyms other than the name]], ...] in class-index order."""
    from luciddream.labels import class_names, synonyms
    rows = []
    for name, words in zip(class_names(), synonyms()):
        rows.append([name, [w for w in words if w.lower() != name.lower()]])
    return json.dumps(rows, ensure_ascii=False, separators=(",", ":")).replace('],["', '],\n["') + "\n"


def main() -> int:
    OUT.write_text(build(), encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
