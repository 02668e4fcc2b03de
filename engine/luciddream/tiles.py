"""Overlapping tiles whose blend weights sum to exactly one, laid out afresh (at random) every step.

Along each axis the image is cut at points spaced `W - overlap` apart, starting at a random offset; around each
cut the left tile fades out while the right one fades in over `overlap` pixels (sin²/cos², so the pair sums to one).
A 2-D tile's weight is the product of its two 1-D weights, so the weights of all tiles sum to one at every pixel.
Because the cuts move every step, no tile border stays in one place long enough to leave a seam.

All windows along an axis have one size W that depends only on the axis length, so every step of an octave feeds
the network the same shape: on the CPU, oneDNN compiles kernels for each new input shape, and a new shape every step
made a step markedly slower (docs/performance.md).
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


PLAY = 64  # how far (px) the cuts wander between steps, at most: two strides of the network's coarsest grid


def overlap_for(tile: int) -> int:
    """32 px (an eighth of the tile for tiles under 256). What hides a border is that the cuts move every step; the
    blend only has to cover the few pixels where a window's own edge bends its gradient, which is a fixed distance,
    not a share of the tile, so larger tiles need no wider blend (measured in docs/performance.md)."""
    return max(2, min(32, (tile // 8) // 2 * 2))


def spans(length: int, tile: int, overlap: int, rng: np.random.Generator) -> list[Span]:
    """1-D windows covering [0, length): as few as fit in `tile`, all of one size W fixed by `length`.

    With n windows, the cuts are W - overlap apart and only their common offset is random; W is chosen so that
    the offset can wander by at least PLAY px (an eighth of small tiles) while every tile's blend stays inside
    its window. Edge windows keep the full size and reach inwards; the pixels they see beyond their blend get
    weight zero.
    """
    if length <= tile:
        return [Span(0, length, np.ones(length, np.float32))]
    overlap = min(overlap, tile // 2) // 2 * 2
    half = overlap // 2
    play = max(overlap, min(PLAY, tile // 8), 2)             # how far the cuts can wander between steps
    n = max(2, math.ceil((length + play - overlap) / (tile - overlap)))
    size = min(tile, math.ceil((length + (n - 1) * overlap + play) / n))
    stride = size - overlap
    lo = max(half, length + half - size - (n - 2) * stride)  # the last tile's blend must fit in its window
    hi = min(size - half, length - half - (n - 2) * stride)  # and the first tile's in its own
    first = int(rng.integers(lo, max(lo, hi) + 1))
    bounds = [0] + [first + k * stride for k in range(n - 1)] + [length]
    t = (np.arange(overlap, dtype=np.float64) + 0.5) / max(overlap, 1)
    rise = np.sin(0.5 * math.pi * t) ** 2
    result = []
    for i in range(n):
        lo_w = bounds[i] - half if i > 0 else 0               # where this tile's weight is non-zero
        hi_w = bounds[i + 1] + half if i + 1 < n else length
        start = min(lo_w, length - size)                      # its window: `size` long, inside the image
        w = np.zeros(size, np.float64)
        w[lo_w - start:hi_w - start] = 1.0
        if i > 0 and overlap:
            w[lo_w - start:lo_w - start + overlap] *= rise
        if i + 1 < n and overlap:
            w[hi_w - start - overlap:hi_w - start] *= 1.0 - rise
        result.append(Span(start, start + size, w.astype(np.float32)))
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
