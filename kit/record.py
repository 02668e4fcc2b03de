"""The settings record of a result: what made a layer, kept on the layer so "Again" can make it again.

Why here: GIMP keeps it in a parasite, Krita in a document annotation, but both hosts must write and read the same
JSON, so a .xcf made in GIMP and a .kra made in Krita describe their results alike and a newer plug-in can still
read an older record. The record holds the engine's own settings (what was sent), not the dialog's words, so
"Again" sends exactly the same request.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .errors import UserError
from .targets import split_targets

RECORD_VERSION = 1
RECORD_KEY = "luciddream-record"    # the GIMP parasite's name; Krita: annotation RECORD_KEY + "/" + the layer's id
SEED_RANGE = (0, 2 ** 31 - 1)       # seeds every host can hold in an int control (GIMP's ints are 32-bit signed)
_NAME_WHAT = 40                     # characters of the targets a layer name shows


@dataclass(frozen=True)
class Record:
    """One result's full settings.

    `targets`: (name, weight) pairs in the engine's grammar ("goldfish", "layer:block10"); empty = the model's
    classic look. `settings`: the engine settings sent (model, octaves, octave_scale, steps, step_size, tile,
    look, instance, class_strength, device, ...), without the seed, which is `seed` (always a number: a random
    seed is drawn by the host before sending, so the record can repeat it). `engine`: the engine's version from
    the hello. `preset`, `source`, `guide`: what the user picked, for the layer name and for people reading it.
    """

    targets: Tuple[Tuple[str, float], ...]
    settings: Dict[str, Any]
    seed: int
    engine: str = ""
    preset: Optional[str] = None
    source: str = ""
    guide: Optional[str] = None
    extra: Dict[str, Any] = field(default_factory=dict)   # keys a newer plug-in wrote: kept on a round trip

    @property
    def target_text(self) -> Optional[str]:
        """The engine's target string ("goldfish, peacock=0.5"); None for the classic look."""
        parts = [name if weight == 1.0 else f"{name}={weight:g}" for name, weight in self.targets]
        return ", ".join(parts) or None

    @property
    def look(self) -> str:
        """"layer" when any target is a layer (or none is given), else the class look ("grow" or "object")."""
        if not self.targets or any(name.startswith("layer:") for name, _ in self.targets):
            return "layer"
        return str(self.settings.get("look", "grow"))

    def engine_settings(self, seed: Optional[int] = None) -> Dict[str, Any]:
        """The settings to send for this record again: the same ones, with `seed` (default: the record's)."""
        return {**self.settings, "seed": self.seed if seed is None else seed}

    def with_seed(self, seed: int) -> "Record":
        return Record(self.targets, dict(self.settings), seed, self.engine, self.preset, self.source, self.guide,
                      dict(self.extra))

    def to_json(self) -> str:
        """The record as stored on a layer: one JSON object with a "version" key."""
        data = {**self.extra, "version": RECORD_VERSION, "targets": [[n, w] for n, w in self.targets],
                "settings": self.settings, "seed": self.seed, "engine": self.engine, "preset": self.preset,
                "source": self.source, "guide": self.guide}
        return json.dumps(data, sort_keys=True, separators=(",", ":"))


def parse_targets(text: Optional[str]) -> Tuple[Tuple[str, float], ...]:
    """(name, weight) pairs of a target string ("goldfish, peacock=0.5" → (("goldfish", 1.0), ("peacock", 0.5)))."""
    pairs: List[Tuple[str, float]] = []
    for item in split_targets(text or ""):
        name, _, weight = item.partition("=")
        try:
            value = float(weight) if weight.strip() else 1.0
        except ValueError:
            raise UserError(f'Target "{item}": the weight must be a number, e.g. {name.strip()}=0.5.') from None
        pairs.append((name.strip(), value))
    return tuple(pairs)


def make_record(targets: Optional[str], settings: Mapping[str, Any], seed: int, engine: str = "",
                preset: Optional[str] = None, source: str = "", guide: Optional[str] = None) -> Record:
    """The record of a dream about to be sent: `settings` as sent (any "seed" in it is replaced by `seed`)."""
    kept = {key: value for key, value in settings.items() if key != "seed"}
    return Record(parse_targets(targets), kept, int(seed), engine, preset or None, source, guide)


def parse_record(text: Any, where: str = "this layer") -> Record:
    """The record in `text` (what to_json wrote, str or bytes); a UserError sentence naming `where` when it is
    missing, damaged or from a newer plug-in."""
    if text is None or text == "" or text == b"":
        raise UserError(f"{where} holds no Lucid Dream settings: select a layer that Lucid Dream made.")
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise UserError(f"The Lucid Dream settings on {where} are damaged (not UTF-8 text): dream it "
                            f"anew.") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise UserError(f"The Lucid Dream settings on {where} are damaged (not JSON): dream it anew.") from None
    if not isinstance(data, dict) or "version" not in data:
        raise UserError(f"The Lucid Dream settings on {where} are damaged (no version): dream it anew.")
    version = data["version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise UserError(f"The Lucid Dream settings on {where} are damaged (version {version!r}): dream it anew.")
    if version > RECORD_VERSION:
        raise UserError(f"The Lucid Dream settings on {where} are of version {version}, newer than this plug-in "
                        f"reads ({RECORD_VERSION}): update the plug-in.")
    try:
        targets = tuple((str(name), float(weight)) for name, weight in data.get("targets") or ())
        settings = dict(data.get("settings") or {})
        seed = data["seed"]
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed {seed!r}")
        known = {"version", "targets", "settings", "seed", "engine", "preset", "source", "guide"}
        extra = {key: value for key, value in data.items() if key not in known}
        return Record(targets, settings, seed, str(data.get("engine") or ""), data.get("preset") or None,
                      str(data.get("source") or ""), data.get("guide") or None, extra)
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"The Lucid Dream settings on {where} are damaged ({exc}): dream it anew.") from None


def new_seed(rng: Optional[random.Random] = None) -> int:
    """A fresh seed every host can show and store."""
    return (rng or random).randint(*SEED_RANGE)


def again(record: Record, new: bool = False, rng: Optional[random.Random] = None) -> Record:
    """The record of "Again" (same seed: the same pixels on the same machine) or "Again, new seed"."""
    if not new:
        return record
    seed = new_seed(rng)
    while seed == record.seed:
        seed = new_seed(rng)
    return record.with_seed(seed)


def what(record: Record) -> str:
    """The targets as a person reads them, short: "goldfish + peacock 0.5", "layer:block10", "classic"."""
    if record.preset and record.targets and record.targets[0][0].startswith("layer:"):
        head = record.preset
        rest = record.targets[1:]
    else:
        head, rest = "", record.targets
    parts = [head] if head else []
    parts += [name if weight == 1.0 else f"{name} {weight:g}" for name, weight in rest]
    text = " + ".join(parts) or "classic"
    if record.guide:
        text += " guided"
    return text if len(text) <= _NAME_WHAT else text[:_NAME_WHAT - 1] + "…"


def layer_name(source: str, record: Record, differs: Optional[str] = None) -> str:
    """The result layer's name: the source, what was dreamed, the look for class dreams, and the seed (what tells
    variations apart), e.g. 'photo (dream: goldfish, grow, seed 12)'. `differs` replaces the seed part."""
    parts = [what(record)]
    if record.look in ("grow", "object"):
        parts.append(record.look)
    parts.append(differs if differs is not None else f"seed {record.seed}")
    return f"{source} (dream: {', '.join(parts)})"
