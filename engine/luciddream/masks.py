"""Selections as float masks in [0, 1]: validation, the region worth computing, and inward feathering.

A mask of None means the whole image. Pixels whose mask is 0 are never written, so they come back bit-identical;
partially selected pixels blend between the original and the dream.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .errors import DreamError
from .filters import gaussian_blur


@dataclass(frozen=True)
class Box:
    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def width(self) -> int:
        return self.x1 - self.x0


def prepare(mask: np.ndarray | None, height: int, width: int) -> np.ndarray | None:
    """The mask as float32 (height, width) in [0, 1], or a DreamError that says what is wrong with it."""
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[2] == 1:
        m = m[:, :, 0]
    if m.ndim != 2:
        raise DreamError(f"The mask must be one gray channel (height × width); it has shape {m.shape}.")
    if m.shape != (height, width):
        raise DreamError(f"The mask is {m.shape[1]}×{m.shape[0]} pixels but the image is {width}×{height}: "
                         f"use a mask of the same size.")
    if m.dtype == np.bool_:
        out = m.astype(np.float32)
    elif m.dtype == np.uint8:
        out = m.astype(np.float32) / 255.0
    elif m.dtype == np.uint16:
        out = m.astype(np.float32) / 65535.0
    elif np.issubdtype(m.dtype, np.floating):
        out = m.astype(np.float32)
        if not np.isfinite(out).all():
            raise DreamError("The mask contains NaN or infinite values: use values between 0 and 1.")
        if out.min() < -1e-6 or out.max() > 1 + 1e-6:
            raise DreamError(f"Mask values must lie between 0 and 1; these run from {out.min():g} to {out.max():g}.")
        out = np.clip(out, 0.0, 1.0)
    else:
        raise DreamError(f"A mask of type {m.dtype} is not supported: use bool, uint8, uint16 or float values.")
    if not (out > 0).any():
        raise DreamError("The mask selects nothing (it is 0 everywhere): select or paint white the area to dream.")
    return out


def selection_box(mask: np.ndarray | None, height: int, width: int) -> Box:
    """The smallest box holding every non-zero pixel of the mask (the whole image for None)."""
    if mask is None:
        return Box(0, height, 0, width)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return Box(int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)


# Pixels of surroundings the network sees around a selection. Its gradient at a selected pixel comes mostly from
# features within a few strides (Lite0's deepest default layer: stride 16), and the jitter already reflects up to
# 32 px at any border; 64 px keeps the dream at the selection's edge looking like the dream inside (compared by eye
# against a 256 px margin, docs/performance.md) without making a small selection pay for a tile-sized frame.
CONTEXT = 64


def grow(box: Box, margin: int, height: int, width: int) -> Box:
    """The box plus a margin of context, clipped to the image."""
    return Box(max(0, box.y0 - margin), min(height, box.y1 + margin),
               max(0, box.x0 - margin), min(width, box.x1 + margin))


def inward_ramp(inside: torch.Tensor, radius: float) -> torch.Tensor:
    """For an NCHW 0/1 mask: a ramp in [0, 1] from 0 at the mask's edge to 1 about `radius` pixels inside (multiply
    it by the mask: at a concave corner it reaches a little outside). The picture's own border is not an edge."""
    return (gaussian_blur(inside, radius / 2.0, edges="replicate") * 2.0 - 1.0).clamp(0.0, 1.0)


def feather(mask: np.ndarray, radius: float) -> np.ndarray:
    """Soften the selection's edge inwards over about `radius` pixels; outside it stays exactly 0.

    Feathering outwards would change pixels the artist did not select, so the fade happens inside: at the edge the
    dream starts at 0 and reaches full strength about `radius` pixels in.
    """
    if radius <= 0:
        return mask
    h, w = mask.shape
    pad = int(2 * radius) + 2  # beyond the blur's reach, so cropping to the box changes nothing
    box = grow(selection_box(mask, h, w), pad, h, w)
    region = mask[box.slices]
    inside = torch.from_numpy((region > 0).astype(np.float32))[None, None]
    out = mask.copy()
    out[box.slices] = region * inward_ramp(inside, radius)[0, 0].numpy()
    if not (out > 0).any():  # a selection thinner than the feather: keep it rather than select nothing
        return mask
    return out
