"""Gaussian blur, the one image filter the engine needs: the inward feather of a mask, the softened photo a class dream
starts from, and the judge's blurred view of a class dream (benchmarks/quality.py)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def gaussian_blur(x: torch.Tensor, sigma: float, edges: str = "reflect") -> torch.Tensor:
    """Separable Gaussian blur of an NCHW tensor, channel by channel.

    `edges` is how the border continues ("reflect" or "replicate"): a picture's edge is not black, so zero padding
    would darken it. The radius is clipped so reflection works on small tensors too.
    """
    radius = max(1, int(3 * sigma + 0.5))
    if edges == "reflect":
        radius = max(1, min(radius, x.shape[-1] - 1, x.shape[-2] - 1))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (radius, radius, radius, radius), mode=edges)
    x = F.conv2d(x, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
