"""Overlapping tiles whose blend weights sum to exactly one, laid out afresh (at random) every step.

Along each axis the image is cut at points spaced `tile - overlap` apart, starting at a random offset; around each
cut the left tile fades out while the right one fades in over `overlap` pixels (sin²/cos², so the pair sums to one).
A 2-D tile's weight is the product of its two 1-D weights, so the weights of all tiles sum to one at every pixel.
Because the cuts move every step, no tile border stays in one place long enough to leave a seam.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Span:
    start: int
    stop: int
    weight: np.ndarray  # float32, one value per pixel of [start, stop)


@dataclass(frozen=True)
class Tile:
    ys: slice
    xs: slice
    weight: torch.Tensor  # (h, w) float32

    @property
    def shape(self) -> tuple[int, int]:
        return self.ys.stop - self.ys.start, self.xs.stop - self.xs.start


def overlap_for(tile: int) -> int:
    """An eighth of the tile, even. The cuts move every step, so a narrow blend already hides the borders
    (the seam test checks it) while the overlap costs only about (8/7)² ≈ 1.3× the bare image, not 1.8× as a
    quarter would."""
    return max(2, (tile // 8) // 2 * 2)


def spans(length: int, tile: int, overlap: int, rng: np.random.Generator) -> list[Span]:
    """1-D tiles covering [0, length): interior ones `tile` long, edge ones between ~0.5 and ~1.4 tiles."""
    if length <= tile:
        return [Span(0, length, np.ones(length, np.float32))]
    overlap = min(overlap, tile // 2) // 2 * 2
    half = overlap // 2
    stride = tile - overlap
    low, high = stride // 2, min(stride + stride // 2, length - stride // 2)
    first = int(rng.integers(low, high + 1)) if high >= low else length // 2
    cuts = list(range(first, length - stride // 2 + 1, stride)) or [length // 2]
    bounds = [0] + cuts + [length]
    t = (np.arange(overlap, dtype=np.float64) + 0.5) / max(overlap, 1)
    rise = np.sin(0.5 * math.pi * t) ** 2
    result = []
    for i in range(len(bounds) - 1):
        start = bounds[i] - half if i > 0 else 0
        stop = bounds[i + 1] + half if i + 1 < len(bounds) - 1 else length
        w = np.ones(stop - start, np.float64)
        if i > 0:
            w[:overlap] *= rise
        if i + 1 < len(bounds) - 1:
            w[-overlap:] *= 1.0 - rise
        result.append(Span(start, stop, w.astype(np.float32)))
    return result


def layout(height: int, width: int, tile: int, overlap: int, rng: np.random.Generator,
           device: torch.device | str = "cpu") -> list[Tile]:
    rows = spans(height, tile, overlap, rng)
    cols = spans(width, tile, overlap, rng)
    tiles = []
    for r in rows:
        wy = torch.from_numpy(r.weight).to(device)
        for c in cols:
            wx = torch.from_numpy(c.weight).to(device)
            tiles.append(Tile(slice(r.start, r.stop), slice(c.start, c.stop), wy[:, None] * wx[None, :]))
    return tiles
