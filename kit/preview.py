"""The quick preview and the variations: settings derived from the user's, the same in both hosts.

Why the host scales, not the engine: a preview is the selection read at a small working size (GEGL's
Buffer.get takes a scale, Krita's QImage scales), so fewer bytes travel and the engine needs no setting of its
own; the class look's instance size shrinks with the picture, down to a floor (see preview_settings). Figures
in docs/performance.md: in real GIMP and Krita on a loaded 2-core CPU, a layer preview in about 1.5-2.5 s and a
class preview in about 7-11 s with a warm worker.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .record import SEED_RANGE, Record

PREVIEW_SIDE = 192          # the working size's longer side, in pixels (a smaller region is not enlarged)
PREVIEW_OCTAVES = 2         # layer looks: at most this many octaves
PREVIEW_STEPS = {"layer": 6, "grow": 8, "object": 8}   # steps per octave, by look (Record.look's words)
CLASS_OCTAVES = 1           # class looks: one octave at the working size
MIN_INSTANCE = 32           # the engine's smallest instance size (settings.RANGES)
NET_INPUT = 224             # the class looks work where one instance is the network's input size...
CLASS_WORK = 224            # ...so a preview caps that working picture's longer side here (its instances grow)
MAX_VARIATIONS = 16
LAYER_STEPS = 10            # the engine's own steps per octave for layer looks (steps 0)
MAX_BOOST = 4.0             # a layer preview's strength at most this many times the user's


@dataclass(frozen=True)
class PreviewPlan:
    """What a preview sends: the region read at `scale` into `width`×`height` pixels, with `settings`."""

    scale: float
    width: int
    height: int
    settings: Dict[str, Any]


def working_size(width: int, height: int, side: int = PREVIEW_SIDE) -> Tuple[float, int, int]:
    """(scale, width, height): the region shrunk so its longer side is at most `side`, never enlarged."""
    longest = max(width, height, 1)
    scale = min(1.0, side / longest)
    return scale, max(1, int(round(width * scale))), max(1, int(round(height * scale)))


def look_of(targets: Optional[str], settings: Mapping[str, Any]) -> str:
    """"layer" when the dream is a layer look (a layer target, or no targets: the classic look), else the class
    look from the settings ("grow" or "object")."""
    items = [t.strip() for t in (targets or "").replace(";", ",").split(",") if t.strip()]
    if not items or any(t.startswith("layer:") for t in items):
        return "layer"
    return str(settings.get("look") or "grow")


def preview_settings(settings: Mapping[str, Any], targets: Optional[str], scale: float,
                     side: int = PREVIEW_SIDE) -> Dict[str, Any]:
    """The user's settings made quick: fewer octaves and steps, the instance size shrunk with the picture, the
    same seed, model and strength (so the preview looks like the full dream will).

    Why the instance has a floor: a class look dreams at the scale where one instance fills the network's input,
    so an instance shrunk with the picture would make the engine enlarge it back to the full dream's size (and
    cost). The floor keeps that working picture within CLASS_WORK pixels: fewer, larger instances than the full
    dream, but in the same places and colours."""
    look = look_of(targets, settings)
    quick = dict(settings)
    octaves = int(settings.get("octaves") or 1)
    quick["octaves"] = max(1, min(octaves, CLASS_OCTAVES if look != "layer" else PREVIEW_OCTAVES))
    steps = settings.get("steps") or 0
    quick["steps"] = PREVIEW_STEPS[look] if not steps else max(1, min(int(steps), PREVIEW_STEPS[look]))
    if settings.get("instance"):  # 0 (auto) stays auto: the engine sizes it from the preview's own selection
        floor = int(math.ceil(side * NET_INPUT / CLASS_WORK))
        quick["instance"] = max(MIN_INSTANCE, floor, int(round(int(settings["instance"]) * scale)))
    quick["tile"] = 0    # the working size fits any automatic tile
    if look == "layer" and "step_size" in settings:
        # Fewer steps change the picture less, so a layer preview pushes harder per step: by the square root of
        # the steps it leaves out, which looked like the full result shrunk (chelsea.png, classic preset; the
        # full ratio looked overdone). Class looks keep theirs: class strength already bounds their change.
        full = octaves * (int(steps) if steps else LAYER_STEPS)
        boost = min(MAX_BOOST, max(1.0, (full / (quick["octaves"] * quick["steps"])) ** 0.5))
        quick["step_size"] = round(float(settings["step_size"]) * boost, 3)
    return quick


def plan_preview(width: int, height: int, settings: Mapping[str, Any], targets: Optional[str],
                 side: int = PREVIEW_SIDE) -> PreviewPlan:
    """The preview of a `width`×`height` region (the plan's region, context included)."""
    scale, w, h = working_size(width, height, side)
    return PreviewPlan(scale, w, h, preview_settings(settings, targets, scale, max(w, h)))


def variation_seeds(first: int, count: int) -> List[int]:
    """`count` seeds from `first` on (wrapping inside SEED_RANGE), so variation k of seed s is always s + k."""
    low, high = SEED_RANGE
    span = high - low + 1
    return [low + (first - low + k) % span for k in range(max(0, count))]


def variations(record: Record, count: int) -> List[Record]:
    """The records of `count` variations of `record`: the same settings, seeds record.seed, +1, +2, ..."""
    return [record.with_seed(seed) for seed in variation_seeds(record.seed, count)]


def variation_label(record: Record, index: int, count: int) -> str:
    """What differs between variations, for the layer name: 'seed 12, 2/4' (just the seed when count is 1)."""
    return f"seed {record.seed}" + (f", {index + 1}/{count}" if count > 1 else "")


def scale_rect(x: int, y: int, width: int, height: int, scale: float) -> Tuple[int, int, int, int]:
    """A rectangle in scaled coordinates (what GEGL's Buffer.get at `scale` wants), covering at least one pixel."""
    sx, sy = int(math.floor(x * scale)), int(math.floor(y * scale))
    return sx, sy, max(1, int(round(width * scale))), max(1, int(round(height * scale)))
