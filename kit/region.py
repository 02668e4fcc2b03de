"""Which rectangle of a layer to send to the engine, and what the selection says about it.

The engine dreams inside the mask but looks at the pixels around it: without context the dream at the selection's
edge is made up from nothing. So the rectangle sent is the selection's bounds grown by the engine's context margin
(the offer's "context"), clipped to the layer; both hosts follow these rules, so a selection dreams the same in each.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

from .errors import UserError

Bytes = Union[bytes, bytearray, memoryview]


@dataclass(frozen=True)
class Rect:
    """A pixel rectangle; whose coordinates (image or layer) is said where it is used."""

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

    def shift(self, dx: int, dy: int) -> "Rect":
        return Rect(self.x + dx, self.y + dy, self.width, self.height)


@dataclass(frozen=True)
class Plan:
    """What to read and send: `region` in layer coordinates; the selection is read at `region` + layer offsets."""

    region: Rect
    selected: Optional[Rect]   # the selection's bounds on the layer (layer coordinates); None = no selection
    offset_x: int
    offset_y: int

    @property
    def mask_rect(self) -> Rect:
        """Where the selection mask is read: the same pixels, in image coordinates."""
        return self.region.shift(self.offset_x, self.offset_y)


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def plan_region(width: int, height: int, offset_x: int, offset_y: int, selection: Optional[Rect], context: int,
                where: str = "the layer") -> Plan:
    """The layer rectangle to read: the selection's bounds (image coordinates) moved onto the layer, grown by
    `context` and clipped to the layer; the whole layer when nothing is selected. `where` names the layer in the
    sentences ('the layer "Background"', "the image")."""
    layer = Rect(0, 0, width, height)
    if layer.empty:
        raise UserError(f"{_capital(where)} has no pixels to dream.")
    if selection is None:
        return Plan(layer, None, offset_x, offset_y)
    if selection.empty:
        raise UserError("The selection is empty: select the area to dream, or select nothing to dream all of "
                        f"{where}.")
    on_layer = selection.shift(-offset_x, -offset_y).intersect(layer)
    if on_layer.empty:
        raise UserError(f"The selection lies outside and does not touch {where}: select a part of it, or select "
                        f"nothing to dream all of it.")
    return Plan(on_layer.grow(context).intersect(layer), on_layer, offset_x, offset_y)


def check_mask(mask: Optional[Bytes], rect: Rect, where: str = "the layer") -> None:
    """A mask that selects nothing would dream nothing: say so before the engine is asked."""
    if mask is None:
        return
    if len(mask) != rect.area:
        raise UserError(f"The selection gave {len(mask)} mask values for a {rect.width}×{rect.height} area.")
    if bytes(mask).count(0) == len(mask):
        raise UserError(f"Nothing is selected on {where} (the selection is fully transparent there): select the "
                        f"area to dream.")


def selected_fraction(mask: Optional[Bytes]) -> float:
    """How much of the rectangle is selected (0–1), for status lines."""
    if mask is None:
        return 1.0
    data = bytes(mask)
    return (sum(data) / 255.0 / len(data)) if data else 0.0
