"""The engine's offer as a plug-in reads it: presets, value ranges, defaults, the context margin and the models.

The engine describes these (`luciddream offer`, the hello reply's "offer"); install.py caches a copy in engine.json
so a host can build its controls before any worker runs. Plug-ins never restate them: a preset, a range or a
margin exists once, in the engine, and both hosts show what it says.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from . import controls
from .config import REINSTALL, EngineConfig
from .errors import UserError

# Class looks as menus show them.
LOOK_LABELS: Dict[str, str] = {"grow": "Grow out of the photo", "object": "One picture of the class"}
# What a range sentence calls each setting: the words the controls show (kit/controls.py), so a refusal names the
# knob the user sees ("Intensity must be between ..."), in every host.
LABELS: Dict[str, str] = {**controls.LABELS, "max_memory": "Memory limit (MB)"}
# The class-look defaults an offer from an engine older than the class looks lacks; from_dict fills them in, so
# both hosts read every default through Offer.default and keep no copies of their own. tests/test_kit.py checks
# they are today's engine's defaults, so they cannot drift.
CLASS_LOOK_DEFAULTS: Dict[str, Any] = {"look": "grow", "instance": 0, "class_strength": 1.0}


@dataclass(frozen=True)
class Preset:
    """A named look: `targets` in the engine's grammar (e.g. "layer:block10"), `label` for menus and lists."""

    name: str
    label: str
    targets: str


@dataclass(frozen=True)
class Offer:
    """What the engine offers; built by from_dict, which checks the shape."""

    presets: Tuple[Preset, ...]
    ranges: Dict[str, Tuple[Any, Any]]
    defaults: Dict[str, Any]
    context: int
    models: Tuple[str, ...]
    default_model: str
    model_titles: Dict[str, str] = field(default_factory=dict)
    looks: Tuple[str, ...] = ("grow", "object")  # class looks (Settings.look); an older engine offers none

    @classmethod
    def from_dict(cls, data: Any, source: str = "the engine") -> "Offer":
        """The offer in `data` (a describe() dict); a damaged one is a UserError naming `source`."""
        def bad(what: str) -> UserError:
            return UserError(f"The engine's offer from {source} is damaged ({what}): {REINSTALL}.")

        if not isinstance(data, Mapping):
            raise bad("not a JSON object")
        try:
            presets = tuple(Preset(str(p["name"]), str(p["label"]), str(p["targets"])) for p in data["presets"])
            ranges = {str(k): (v[0], v[1]) for k, v in dict(data["ranges"]).items()}
            defaults = {**CLASS_LOOK_DEFAULTS, **dict(data["defaults"])}
            context = data["context"]
            models = tuple(str(m) for m in data["models"])
            default_model = str(data["default_model"])
            titles = {str(k): str(v) for k, v in dict(data.get("model_titles") or {}).items()}
            looks = tuple(str(v) for v in data.get("looks") or ())
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise bad(f"{type(exc).__name__}: {exc}") from None
        if isinstance(context, bool) or not isinstance(context, int) or context < 0:
            raise bad(f"context {context!r}")
        for name, (low, high) in ranges.items():
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)) or low > high:
                raise bad(f"range of {name}")
        return cls(presets, ranges, defaults, context, models, default_model, titles, looks)

    def preset(self, name: str) -> Preset:
        """The preset called `name`, or a sentence listing those the engine offers."""
        for preset in self.presets:
            if preset.name == name:
                return preset
        names = ", ".join(p.name for p in self.presets) or "none"
        raise UserError(f'Unknown preset "{name}": the engine offers {names}.')

    def range(self, name: str) -> Tuple[Any, Any]:
        """(low, high) of an engine setting, both inclusive; ints for whole-number settings."""
        if name not in self.ranges:
            raise UserError(f'The engine offers no range for "{name}": update the engine and the plug-in together.')
        return self.ranges[name]

    def default(self, name: str) -> Any:
        """The engine's default for a setting ("model" included)."""
        if name == "model":
            return self.defaults.get("model", self.default_model)
        if name not in self.defaults:
            raise UserError(f'The engine offers no default for "{name}": update the engine and the plug-in '
                            f'together.')
        return self.defaults[name]

    def check(self, name: str, value: Any, label: Optional[str] = None) -> None:
        """One sentence when `value` is outside what the engine accepts for `name`, so nothing is refused later."""
        low, high = self.range(name)
        check_value(label or LABELS.get(name, name.replace("_", " ").capitalize()), value, low, high)

    def check_settings(self, settings: Mapping[str, Any]) -> None:
        """check() for every setting the engine gives a range, and the model against the offered models."""
        model = settings.get("model")
        if model is not None and model not in self.models:
            raise UserError(f'Unknown model "{model}": choose one of {", ".join(self.models)}.')
        look = settings.get("look")
        if look is not None and look not in self.looks:
            raise UserError(f'Unknown class look "{look}": choose one of {", ".join(self.looks) or "none"} '
                            f'(update the engine for class looks).')
        for name, value in settings.items():
            if name in self.ranges and value is not None:
                self.check(name, value)

    def targets(self, preset: Optional[str], items: Sequence[str]) -> Optional[str]:
        """The engine's target string: the preset's targets first, then `items`; None (the model's classic look)
        when both are empty. `preset` None or "" means no preset."""
        parts = list(items)
        if preset:
            parts.insert(0, self.preset(preset).targets)
        return ", ".join(parts) or None


def check_value(label: str, value: Any, low: Any, high: Any) -> None:
    """One sentence when `value` is not a number in [low, high]; whole numbers only when both bounds are ints."""
    whole = isinstance(low, int) and isinstance(high, int)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (whole and not isinstance(value, int)):
        raise UserError(f"{label} must be {'a whole number' if whole else 'a number'}, not {value!r}.")
    if not (math.isfinite(value) and low <= value <= high):
        raise UserError(f"{label} must be between {low:g} and {high:g}; got {value:g}.")


def offer_from_config(config: EngineConfig, path: str = "engine.json") -> Offer:
    """The offer install.py cached in engine.json, for building controls before any worker runs."""
    if config.offer is None:
        raise UserError(f"{path} holds no offer from the engine (presets, ranges): {REINSTALL}.")
    return Offer.from_dict(config.offer, path)


def offer_from_hello(info: Mapping[str, Any], fallback: Optional[Offer] = None) -> Offer:
    """The live offer of a hello reply; `fallback` (the cached one) when the engine sends none."""
    data = info.get("offer") if isinstance(info, Mapping) else None
    if data is None:
        if fallback is None:
            raise UserError("The engine sent no offer (presets, ranges): update the engine and the plug-in "
                            "together.")
        return fallback
    return Offer.from_dict(data, "the engine's hello")
