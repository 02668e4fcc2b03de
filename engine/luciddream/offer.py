"""What the engine offers a front end: presets, value ranges, defaults, the context margin and the models.

Why one place: the plug-ins used to restate these (and drifted: two meanings of "detail size", two layers for "eyes
and fur"). Now the engine describes them once; `luciddream offer` prints it, the worker's hello carries it, and
install.py caches it in each plug-in's engine.json so a host can build its controls before any worker runs.
"""
from __future__ import annotations

from dataclasses import fields
from typing import Any, Dict, List

from . import masks
from .methods import LOOK_METHODS, STEPS
from .settings import LOOKS, RANGES, Settings


# The looks both plug-ins offer, by EfficientNet-Lite layer (the engine says so if another model lacks one). The
# layers follow the README's map of Lite0: early blocks fine textures, block8–block12 eyes and fur (block9 sits in
# the middle of that span, apart from the classic block10), later ones object parts; the gallery shows classic and
# texture.
PRESETS: List[Dict[str, str]] = [
    {"name": "classic", "label": "Classic puppyslugs (block10)", "targets": "layer:block10"},
    {"name": "textures", "label": "Fine textures (block3)", "targets": "layer:block3"},
    {"name": "patterns", "label": "Patterns and swirls (block6)", "targets": "layer:block6"},
    {"name": "eyes", "label": "Eyes and fur (block9)", "targets": "layer:block9"},
    {"name": "parts", "label": "Object parts (block13)", "targets": "layer:block13"},
]

# Settings a front end shows; model, device and seed are offered in their own ways (models list, seed range).
_DEFAULTS = ("model", "octaves", "octave_scale", "steps", "step_size", "tile", "feather", "look", "instance",
             "class_strength")  # tile 0: auto (from free memory); max_memory (MB, 0: no cap) is in the ranges


def describe() -> Dict[str, Any]:
    """The offer as a JSON-able dict (the shape is docs/protocol.md's hello "offer")."""
    from .nets import DEFAULT_MODEL, SPECS

    defaults = Settings()
    available = [name for name, spec in SPECS.items() if spec.available()]
    return {
        "presets": [dict(p) for p in PRESETS],
        "ranges": {name: [low, high] for name, (low, high) in RANGES.items()},
        "defaults": {**{f.name: getattr(defaults, f.name) for f in fields(Settings) if f.name in _DEFAULTS},
                     "steps": 0},  # 0: each look's own (layer dreams STEPS["tiled"], class looks look_steps)
        "looks": list(LOOKS),  # class targets alone: grown out of the photo, or one picture of the class
        "look_steps": {look: STEPS[LOOK_METHODS[look]] for look in LOOKS},
        "context": masks.CONTEXT,
        "models": available,
        "default_model": DEFAULT_MODEL,
        "model_titles": {name: SPECS[name].title for name in available},
    }
