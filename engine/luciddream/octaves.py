"""The octave schedule: dream small first, then carry the detail up to each larger scale.

Large features (a whole fish, a dog's head) can only form where the network's receptive field covers them, so the
first octaves work on shrunken copies; each later octave adds the detail dreamed so far onto a sharper copy of the
original.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def octave_sizes(height: int, width: int, octaves: int, scale: float, min_side: int = 32) -> list[tuple[int, int]]:
    """Sizes from smallest to the full (height, width); octaves that would be smaller than `min_side` are skipped."""
    sizes = []
    for k in range(octaves - 1, 0, -1):
        h, w = round(height / scale ** k), round(width / scale ** k)
        if min(h, w) >= min_side:
            sizes.append((h, w))
    sizes.append((height, width))
    return sizes


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of an NCHW tensor; antialiased when shrinking so small octaves do not alias."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)
