"""The docker's settings as one value, kept in Krita's settings (kritarc) between sessions.

Why one JSON value in one group: Krita's readSetting/writeSetting store strings, and one record is read and written
whole, so a half-written set of keys cannot happen. Every value is checked against the engine's offer when it is
read: a stored value the engine no longer accepts (a model that went away, a range that shrank, a hand-edited
kritarc) falls back to the engine's default for that field alone, with a line in the log, never an error dialog.
No Qt and no Krita here: `store` is anything with Krita's readSetting(group, key, default) and
writeSetting(group, key, value).
"""
from __future__ import annotations

import json
import logging
import random
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Dict, Mapping

from . import kit

GROUP = "luciddream"
KEY = "settings"
log = logging.getLogger("luciddream")

# The engine settings the docker shows (the engine names them; kit.LABELS says what the user sees).
ENGINE_FIELDS = ("model", "octaves", "octave_scale", "steps", "step_size", "tile", "feather", "seed", "look",
                 "instance", "class_strength")
# A new seed is picked from this many, as before: short enough to read back and type in again.
FIRST_SEEDS = 100000


@dataclass(frozen=True)
class DreamSettings:
    """Everything the docker's controls hold besides the target list."""

    model: str
    octaves: int
    octave_scale: float     # "Size step": growth between octaves (kit/controls.py names every control)
    steps: int
    step_size: float        # "Intensity": mean change per step in 8-bit levels
    tile: int               # "Memory tile": the largest window the network sees at once (0 = auto)
    feather: float
    seed: int
    look: str               # "Class look": class targets alone grown out of the photo, or one picture
    instance: int           # "Object size": one instance of a class, in image pixels
    class_strength: float   # "Change allowed": how far the photo may change (0 = untouched … 1 = replaced)
    visible: bool = False   # dream the visible image instead of the active layer
    preset: str = ""        # the look chosen in the preset list (what "Add look" adds)
    variations: int = 4     # how many seeds "Variations" dreams
    full_after_preview: bool = False   # a finished quick preview starts the full dream by itself
    advanced: bool = False  # the docker's Advanced fold is open

    def engine_settings(self) -> Dict[str, Any]:
        """The engine's settings dict for one job."""
        values = asdict(self)
        return {name: values[name] for name in ENGINE_FIELDS}


def defaults(offer: kit.Offer) -> DreamSettings:
    """The engine's defaults, a fresh seed, the active layer and the first preset."""
    return DreamSettings(
        model=str(offer.default("model")), octaves=int(offer.default("octaves")),
        octave_scale=float(offer.default("octave_scale")), steps=int(offer.default("steps")),
        step_size=float(offer.default("step_size")), tile=int(offer.default("tile")),
        feather=float(offer.default("feather")), seed=random.randrange(FIRST_SEEDS),
        look=str(offer.default("look")), instance=int(offer.default("instance")),
        class_strength=float(offer.default("class_strength")),   # an older engine's offer: the kit's
        visible=False, preset=offer.presets[0].name if offer.presets else "")


def checked(values: Mapping[str, Any], offer: kit.Offer) -> DreamSettings:
    """Settings from stored values: each value the offer does not accept becomes its default, and is logged."""
    return with_changes(defaults(offer), values, offer)


def with_changes(settings: DreamSettings, changes: Mapping[str, Any], offer: kit.Offer) -> DreamSettings:
    """`settings` with those `changes` the offer accepts; each refused one keeps its old value and is logged.
    Names that are no setting are ignored (a newer plug-in's kritarc read by an older one)."""
    kept: Dict[str, Any] = {}
    for f in fields(DreamSettings):
        if f.name not in changes:
            continue
        value = changes[f.name]
        reason = problem(f.name, value, offer)
        if reason is None:
            kept[f.name] = float(value) if isinstance(getattr(settings, f.name), float) else value
        else:
            log.warning("Lucid Dream: setting %s=%r ignored (%s); keeping %r.", f.name, value, reason,
                        getattr(settings, f.name))
    return replace(settings, **kept)


def problem(name: str, value: Any, offer: kit.Offer) -> Any:
    """Why `value` cannot be used for the setting `name`, or None when it can."""
    if name == "model":
        return None if isinstance(value, str) and value in offer.models else "not a model the engine offers"
    if name == "look":
        return None if isinstance(value, str) and value in offer.looks else "not a class look the engine offers"
    if name in ("visible", "full_after_preview", "advanced"):
        return None if isinstance(value, bool) else "not true or false"
    if name == "variations":
        ok = isinstance(value, int) and not isinstance(value, bool) and 2 <= value <= kit.MAX_VARIATIONS
        return None if ok else f"not a whole number from 2 to {kit.MAX_VARIATIONS}"
    if name == "preset":
        names = [p.name for p in offer.presets]
        return None if isinstance(value, str) and value in names else "not a preset the engine offers"
    try:
        low, high = offer.range(name)
        kit.check_value(kit.LABELS.get(name, name), value, low, high)
    except kit.UserError as exc:
        return str(exc)
    return None


def load(store: Any, offer: kit.Offer) -> DreamSettings:
    """The settings stored in Krita, or the defaults when there are none or they cannot be read."""
    try:
        text = store.readSetting(GROUP, KEY, "")
    except Exception as exc:  # Krita's settings must never stop the docker from opening
        log.warning("Lucid Dream: cannot read the stored settings (%s); using the defaults.", exc)
        return defaults(offer)
    if not text:
        return defaults(offer)
    try:
        values = json.loads(text)
    except ValueError as exc:
        log.warning("Lucid Dream: the stored settings are not JSON (%s); using the defaults.", exc)
        return defaults(offer)
    if not isinstance(values, dict):
        log.warning("Lucid Dream: the stored settings are not a JSON object; using the defaults.")
        return defaults(offer)
    return checked(values, offer)


def save(store: Any, settings: DreamSettings) -> None:
    """Write the settings to Krita (kritarc keeps them when Krita quits)."""
    try:
        store.writeSetting(GROUP, KEY, json.dumps(asdict(settings), sort_keys=True))
    except Exception as exc:  # losing a setting is not worth an error in the middle of painting
        log.warning("Lucid Dream: cannot store the settings (%s).", exc)
