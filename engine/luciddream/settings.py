"""The settings of a dream besides the image, the mask and the targets, with the ranges every front end shows.

A module of its own so that render.py (which validates them) and every method (which reads them) can import it
without importing each other.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Optional

from .errors import DreamError
from .nets import DEFAULT_MODEL


# The values each number may take: Settings.check refuses others, and the offer shows these to every front end.
RANGES = {
    "octaves": (1, 12), "octave_scale": (1.05, 4.0), "steps": (0, 1000), "step_size": (0.01, 64.0),
    "tile": (0, 4096), "seed": (0, 2 ** 32 - 1), "feather": (0.0, 2000.0),
    "instance": (0, 4096), "class_strength": (0.0, 1.0), "max_memory": (0, 1 << 20),
}
MIN_EXPLICIT_TILE = 64  # tile 0 means auto; a tile given by hand is at least this
MIN_EXPLICIT_INSTANCE = 32  # instance 0 means auto; an instance size given by hand is at least this
LOOKS = ("grow", "object")  # class targets alone: grown out of the photo, or one picture of the class
UNSET = ("seed", "steps")   # None is a value here: no seed, or the method's own number of steps (as steps 0)


@dataclass(frozen=True)
class Settings:
    """Everything that shapes a dream besides the image, the mask and the targets."""

    model: str = DEFAULT_MODEL
    octaves: int = 4              # scales to dream at, each `octave_scale` times the previous
    octave_scale: float = 1.4
    steps: Optional[int] = None   # optimiser steps per octave; None or 0: the method's own (tiled 10, grow 60,
                                  # object 30), so a front end's one Steps control suits every look
    step_size: float = 1.5        # mean change per step, in 8-bit levels (0–255)
    tile: int = 0                 # largest window the network sees at once (memory vs. speed); 0: auto, from
                                  # the memory that is free (memory.py), 640 where memory is ample
    seed: Optional[int] = None    # same seed, same machine, same result
    device: str = "auto"          # auto | cpu | cuda | mps
    feather: float = 0.0          # fade the dream in over this many pixels inside the selection's edge
    max_memory: int = 0           # MB the engine may use while dreaming (caps the tile); 0: what is free
    look: str = "grow"            # class targets alone: "grow" (out of the photo) or "object" (one picture)
    instance: int = 0             # grow look: size of one instance, in image pixels; 0: auto, from the selection's
                                  # size (methods/grow.py: auto_instance), 224 on selections up to about 890 px square
    class_strength: float = 1.0   # grow look: how far the photo under each instance may change (0 = untouched)

    def check(self) -> "Settings":
        """These settings, or a DreamError naming the first one that is of the wrong kind or out of range."""
        if self.look not in LOOKS:
            raise DreamError(f"look must be one of {', '.join(LOOKS)}, not {self.look!r}.")
        for name in ("model", "device"):
            if not isinstance(getattr(self, name), str):
                raise DreamError(f"{name} must be a name such as {getattr(Settings, name)!r}, "
                                 f"not {getattr(self, name)!r}.")
        for f in fields(self):
            value = getattr(self, f.name)
            limits = RANGES.get(f.name)
            if limits is None or (value is None and f.name in UNSET):
                continue
            if value is None:
                raise DreamError(f"{f.name.replace('_', ' ')} needs a value (default {getattr(Settings, f.name)}).")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                    isinstance(limits[0], int) and not isinstance(value, int)):
                kind = "a whole number" if isinstance(limits[0], int) else "a number"
                raise DreamError(f"{f.name.replace('_', ' ')} must be {kind}, not {value!r}.")
            if not (math.isfinite(value) and limits[0] <= value <= limits[1]):
                raise DreamError(f"{f.name.replace('_', ' ')} must be between {limits[0]} and {limits[1]}; "
                                 f"got {value}.")
        if 0 < self.tile < MIN_EXPLICIT_TILE:
            raise DreamError(f"tile must be 0 (auto: chosen from the free memory) or between {MIN_EXPLICIT_TILE} "
                             f"and {RANGES['tile'][1]}; got {self.tile}.")
        if 0 < self.instance < MIN_EXPLICIT_INSTANCE:
            raise DreamError(f"instance must be 0 (auto: chosen from the selection's size) or between "
                             f"{MIN_EXPLICIT_INSTANCE} and {RANGES['instance'][1]} pixels; got {self.instance}.")
        return self
