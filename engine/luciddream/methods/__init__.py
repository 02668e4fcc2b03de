"""Dream methods: each turns a cropped region, its selection and the targets into a dreamed region.

Every method is a module here with one function `dream(rgb, selected, net, targets, settings, rng, progress,
cancel, extras)`; adding a method is a new module plus its name in METHODS. `choose` is the one place that says
which method a dream uses. Methods report progress as a `Progress` record (structured, never parsed from text), so
the CLI, the worker and the plug-ins show the same octave and step.

This package imports no torch itself, so the worker can use `Progress` before the networks are loaded.
"""
from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional, Sequence

if TYPE_CHECKING:
    import numpy as np

    from ..nets import DreamNet
    from ..objectives import Guide, Target
    from ..settings import Settings

METHODS = ("tiled", "lucid", "grow")  # module names in this package
LOOK_METHODS = {"grow": "grow", "object": "lucid"}  # the class looks (Settings.look) and their methods
STEPS = {"tiled": 10, "lucid": 30, "grow": 60}  # each method's steps per octave when Settings.steps is None or 0


def steps_per_octave(method: str, settings: "Settings") -> int:
    """The optimiser steps per octave a method takes: the settings' own, or the method's when they say 0 or None."""
    return settings.steps or STEPS[method]


@dataclass(frozen=True)
class Progress:
    """Where a dream stands: `fraction` of the work done, octave `octave` of `octaves`, step `step` of `steps`."""

    fraction: float
    octave: int
    octaves: int
    step: int
    steps: int
    tile: int = 0    # the tile the dream runs at (chosen from memory when the settings say auto), 0: none
    note: str = ""   # one line the user should see, e.g. that running out of memory made the tile smaller

    @property
    def message(self) -> str:
        where = f"octave {self.octave}/{self.octaves}, step {self.step}/{self.steps}"
        return f"{where} ({self.note})" if self.note else where


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True, eq=False)
class Extras:
    """What a method may need besides the region, the network, the targets and the settings; only some read it."""

    guide: Optional["Guide"] = None  # features of a guide picture to dream toward


# The signature every method's `dream` has: (rgb, selected, net, targets, settings, rng, progress, cancel, extras)
# -> the dreamed (h, w, 3) float32 RGB. `rgb` is the selection's box plus context, in [0, 1]; `selected` is 1 where
# the method may change pixels and 0 elsewhere (None: everywhere).
Method = Callable[["np.ndarray", Optional["np.ndarray"], "DreamNet", Sequence["Target"], "Settings",
                   "np.random.Generator", Optional[ProgressCallback], Optional[threading.Event], Extras],
                  "np.ndarray"]


def choose(targets: Sequence["Target"], extras: Extras, look: str = "grow") -> str:
    """Class targets alone are dreamed in the chosen look (`grow`: out of the photo; `object`: one picture of the
    class, the lucid method); layers, mixes and guides are tiled."""
    if extras.guide is None and targets and all(t.kind == "class" for t in targets):
        return LOOK_METHODS[look]
    return "tiled"


def method(name: str) -> Method:
    """The `dream` function of the named method (its module is imported on first use)."""
    if name not in METHODS:
        raise ValueError(f"Unknown dream method {name!r}: the methods are {', '.join(METHODS)}.")
    return importlib.import_module(f".{name}", __name__).dream
