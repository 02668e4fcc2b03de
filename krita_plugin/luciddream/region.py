"""Which rectangle to send to the engine, and what the selection says about it. Pure Python, no Krita.

The engine dreams inside the mask but looks at the pixels around it: a tile needs context, or the dream at the
selection's edge is made up from nothing. So the rectangle sent is the selection's bounds grown by the engine's
context margin, clipped to the canvas; the mask is 0 in that margin.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

Bytes = Union[bytes, bytearray, memoryview]


class RegionError(Exception):
    """A selection that cannot be dreamed; the message is one sentence for the status line."""


@dataclass(frozen=True)
class Rect:
    """A pixel rectangle in image coordinates."""

    x: int
    y: int
    width: int
    height: int

    @property
    def right(self) -> int:
        return self.x + self.width

    @property
    def bottom(self) -> int:
        return self.y + self.height

    @property
    def empty(self) -> bool:
        return self.width <= 0 or self.height <= 0

    @property
    def area(self) -> int:
        return 0 if self.empty else self.width * self.height

    def intersect(self, other: "Rect") -> "Rect":
        x, y = max(self.x, other.x), max(self.y, other.y)
        return Rect(x, y, max(0, min(self.right, other.right) - x), max(0, min(self.bottom, other.bottom) - y))

    def grow(self, margin: int) -> "Rect":
        return Rect(self.x - margin, self.y - margin, self.width + 2 * margin, self.height + 2 * margin)


# Pixels of context around the selection: the engine's masks.CONTEXT (a test keeps the two equal).
CONTEXT = 64


def dream_rect(selection: Optional[Rect], canvas: Rect) -> Rect:
    """The rectangle to read and dream: the whole canvas without a selection, else its bounds plus context."""
    if canvas.empty:
        raise RegionError("The image has no pixels to dream.")
    if selection is None:
        return canvas
    if selection.empty:
        raise RegionError("The selection is empty: select the area to dream, or select nothing to dream the "
                          "whole layer.")
    inside = selection.intersect(canvas)
    if inside.empty:
        raise RegionError("The selection lies outside the image: select an area on the canvas.")
    return selection.grow(CONTEXT).intersect(canvas)


def check_mask(mask: Optional[Bytes], rect: Rect) -> None:
    """A mask that selects nothing would dream nothing: say so before the engine is asked."""
    if mask is None:
        return
    if len(mask) != rect.area:
        raise RegionError(f"The selection gave {len(mask)} mask values for a {rect.width}×{rect.height} area.")
    if bytes(mask).count(0) == len(mask):
        raise RegionError("Nothing is selected inside the image (the selection is fully transparent): select "
                          "the area to dream.")


def selected_fraction(mask: Optional[Bytes]) -> float:
    """How much of the rectangle is selected (0–1), for the status line."""
    if mask is None:
        return 1.0
    data = bytes(mask)
    return (sum(data) / 255.0 / len(data)) if data else 0.0
