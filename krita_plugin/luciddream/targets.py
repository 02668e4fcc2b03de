"""What to dream, as the docker lists it: ImageNet classes found by name, layer presets, weights. Pure Python.

The class names ship in classes.json (generated from the engine's labels by tests/hosts/make_krita_classes.py)
because Krita's Python cannot import the engine. Classes travel to the engine as `class:INDEX`, never by name, so
the two ImageNet names that occur twice ("missile", "sunglasses") cannot be confused.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, List, Optional, Sequence, Tuple

from .kit import Preset, UserError

CLASSES_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "classes.json")

# What a new layer's name says when nothing was listed: the engine then dreams the model's classic layer.
DEFAULT_LAYER = "block10"


@dataclass(frozen=True)
class ImageClass:
    """One of the 1000 ImageNet classes."""

    index: int
    name: str
    synonyms: Tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """The name shown in lists; names that ImageNet uses twice get their first synonym or index added."""
        if self.name in _duplicate_names():
            return f"{self.name} ({self.synonyms[0] if self.synonyms else '#' + str(self.index)})"
        return self.name


@dataclass(frozen=True)
class Choice:
    """One target in the docker's list: an ImageNet class or a network layer, with its weight."""

    kind: str                  # "class" or "layer"
    key: str                   # class index as text, or the layer name
    label: str                 # what the list and the new layer's name show
    weight: float = 1.0

    @property
    def spec(self) -> str:
        """This target in the engine's grammar: class:84=0.5, layer:block10."""
        text = f"{self.kind}:{self.key}"
        return text if self.weight == 1.0 else f"{text}={self.weight:g}"


@lru_cache(maxsize=None)
def classes(path: str = CLASSES_FILE) -> Tuple[ImageClass, ...]:
    """The 1000 classes by index. A missing or damaged file leaves layer targets working, so it only raises here."""
    try:
        with open(path, encoding="utf-8") as f:
            rows = json.load(f)
        result = tuple(ImageClass(i, str(row[0]), tuple(str(s) for s in row[1])) for i, row in enumerate(rows))
    except (OSError, ValueError, TypeError, IndexError) as exc:
        raise UserError(f"The list of ImageNet classes ({path}) cannot be read ({exc}): reinstall the "
                          f"plug-in.") from None
    if len(result) != 1000:
        raise UserError(f"The list of ImageNet classes has {len(result)} entries instead of 1000: reinstall "
                          f"the plug-in.")
    return result


@lru_cache(maxsize=None)
def _duplicate_names() -> frozenset:
    seen: set = set()
    dupes: set = set()
    for c in classes():
        (dupes if c.name in seen else seen).add(c.name)
    return frozenset(dupes)


def _norm(text: str) -> str:
    return " ".join(text.lower().replace("_", " ").replace("-", " ").split())


def search(query: str, limit: int = 50, table: Optional[Sequence[ImageClass]] = None) -> List[ImageClass]:
    """Classes matching what the user typed, best first: exact name, name prefix, word prefix, anywhere; then the
    same for synonyms. A number finds that class index. An empty query lists nothing (1000 rows help nobody)."""
    table = classes() if table is None else table
    q = _norm(query)
    if not q:
        return []
    if q.isdigit():
        i = int(q)
        return [table[i]] if 0 <= i < len(table) else []
    ranked = []
    for c in table:
        rank = _rank(q, _norm(c.name))
        if rank is None:
            ranks = [r for r in (_rank(q, _norm(s)) for s in c.synonyms) if r is not None]
            rank = 4 + min(ranks) if ranks else None
        if rank is not None:
            ranked.append((rank, c.index, c))
    ranked.sort(key=lambda t: (t[0], t[1]))
    return [c for _, _, c in ranked[:limit]]


def _rank(q: str, name: str) -> Optional[int]:
    if name == q:
        return 0
    if name.startswith(q):
        return 1
    if any(word.startswith(q) for word in name.split()) or (" " + q) in (" " + name):
        return 2
    if q in name:
        return 3
    return None


def class_choice(c: ImageClass, weight: float = 1.0) -> Choice:
    return Choice("class", str(c.index), c.label, weight)


def layer_choice(layer: str, weight: float = 1.0) -> Choice:
    layer = layer.strip()
    if not layer or not all(ch.isalnum() or ch in "_.:," for ch in layer):
        raise UserError(f'"{layer}" is not a layer name: use one such as block10 (see `luciddream layers`).')
    return Choice("layer", layer, layer, weight)


def preset_choice(preset: Preset, weight: float = 1.0) -> Choice:
    """A preset of the engine's offer as one row of the list ("layer:block10" -> the layer block10), so the docker
    lists exactly the presets, with the targets, that the engine (and GIMP) offer."""
    kind, _, key = preset.targets.partition(":")
    if kind not in ("layer", "class") or not key or any(ch in key for ch in ",;="):
        raise UserError(f'The preset "{preset.label}" ({preset.targets}) is not one target the list can hold: '
                        f'update the plug-in and the engine together.')
    return Choice(kind, key, key, weight)


def targets_text(choices: Sequence[Choice]) -> str:
    """The engine's target string; empty (the model's classic layer) when nothing is listed."""
    for c in choices:
        if not (c.weight == c.weight) or c.weight in (float("inf"), float("-inf")):
            raise UserError(f'The weight of "{c.label}" must be a finite number.')
    if choices and all(c.weight == 0 for c in choices):
        raise UserError("Every target has weight 0, so there is nothing to dream: give one a weight.")
    return ", ".join(c.spec for c in choices if c.weight != 0)


def layer_name(choices: Sequence[Choice], seed: Optional[int] = None, limit: int = 60,
               guide: Optional[str] = None) -> str:
    """Name of the new layer: what was dreamed, the guide (a guide alone pulls by itself), and the seed, so the
    user can dream it again."""
    parts = []
    for c in choices:
        if c.weight == 0:
            continue
        parts.append(c.label if c.weight == 1.0 else f"{c.label} ×{c.weight:g}")
    if guide:
        parts.append(f"guided by {guide}")
    text = ", ".join(parts) or DEFAULT_LAYER
    if len(text) > limit:
        text = text[:limit - 1].rstrip(", ") + "…"
    return f"Dream: {text}" + (f" (seed {seed})" if seed is not None else "")


def choices_from_record(record: Any, listed: Any = None) -> List[Choice]:
    """The list rows of a settings record: Krita's own rows when it wrote them (`listed`: [kind, key, label,
    weight]), else rebuilt from the record's targets ("class:84", "layer:block10", or a class name GIMP wrote)."""
    if isinstance(listed, list):
        try:
            return [Choice(str(kind), str(key), str(label), float(weight)) for kind, key, label, weight in listed]
        except (TypeError, ValueError):
            pass   # damaged rows: the targets below say the same
    rows: List[Choice] = []
    for name, weight in record.targets:
        kind, _, key = name.partition(":")
        if kind == "layer":
            rows.append(layer_choice(key, weight))
        elif kind == "class" and key.isdigit() and int(key) < len(classes()):
            rows.append(class_choice(classes()[int(key)], weight))
        else:
            found = search(name, limit=1)
            if not found or _norm(found[0].name) != _norm(name):
                raise UserError(f'The recorded target "{name}" is not an ImageNet class this plug-in knows.')
            rows.append(class_choice(found[0], weight))
    return rows
