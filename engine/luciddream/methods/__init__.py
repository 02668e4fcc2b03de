"""Dream methods: each turns a cropped region, its mask and the targets into a dreamed region.

Every method reports progress as a `Progress` record (structured, never parsed from text), so the CLI, the worker
and the plug-ins show the same octave and step.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """Where a dream stands: `fraction` of the work done, octave `octave` of `octaves`, step `step` of `steps`."""

    fraction: float
    octave: int
    octaves: int
    step: int
    steps: int

    @property
    def message(self) -> str:
        return f"octave {self.octave}/{self.octaves}, step {self.step}/{self.steps}"
