"""Small differentiable image transforms: the jitter of the tiled loop, the random view of the class method and the
fixed views the class judge looks through.

A network fooled at exactly one position, scale and angle paints texture, not shapes; moving the image a little
every step (and judging it under views it was not optimised for) is what keeps a dream honest. Every random number
is drawn from the dream's own generator, in a fixed order, so one seed gives one picture.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Jitter:
    """A shift of the image by (dy, dx) pixels, made by padding `margin` pixels in all: dy on top and margin - dy
    below, dx on the left and margin - dx on the right. Padding instead of rolling keeps the far edge from
    wrapping round into the near one."""

    margin: int
    dy: int
    dx: int

    def pad(self, x: torch.Tensor, mode: str = "reflect") -> torch.Tensor:
        """The NCHW tensor shifted, `margin` pixels larger on each axis ("constant": zeros, for masks)."""
        if self.margin == 0:
            return x
        return F.pad(x, (self.dx, self.margin - self.dx, self.dy, self.margin - self.dy), mode=mode)

    def crop(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """The (height, width) part of a padded tensor that lies over the original image."""
        return x[:, :, self.dy:self.dy + height, self.dx:self.dx + width]


def jitter(height: int, width: int, limit: int, rng: np.random.Generator) -> Jitter:
    """A random shift of up to `limit` pixels on each axis (less on an image too small to reflect that far)."""
    margin = min(limit, height - 1, width - 1)
    if margin <= 0:
        return Jitter(0, 0, 0)
    dy, dx = (int(v) for v in rng.integers(0, margin + 1, size=2))
    return Jitter(margin, dy, dx)


def square_view(x: torch.Tensor, cy: float, cx: float, half: float, angle: float, out: int,
                padding: str = "reflection") -> torch.Tensor:
    """An (N, C, out, out) view of the square of half-side `half` pixels around (cy, cx), turned by `angle`
    radians; where it leaves the picture, the picture continues by `padding` ("reflection" or "border")."""
    _, _, h, w = x.shape
    # On a picture much (16×) larger than the view, sample a crop around it: the backward pass then writes a
    # gradient the size of the crop, not of the whole picture (for each of a step's windows, on a 2048 px picture).
    # Where the view leaves the picture the crop ends at the picture's edge, so the padding is the same.
    reach = half * (abs(math.cos(angle)) + abs(math.sin(angle))) + 2
    y0, y1 = max(0, math.floor(cy - reach)), min(h, math.ceil(cy + reach))
    x0, x1 = max(0, math.floor(cx - reach)), min(w, math.ceil(cx + reach))
    if (y1 - y0) * (x1 - x0) * 16 <= h * w and y1 - y0 >= 2 and x1 - x0 >= 2:
        x, cy, cx = x[:, :, y0:y1, x0:x1], cy - y0, cx - x0
        h, w = y1 - y0, x1 - x0
    c, s = math.cos(angle) * half, math.sin(angle) * half
    theta = torch.tensor([[[c / (w / 2), -s / (w / 2), cx / (w / 2) - 1],
                           [s / (h / 2), c / (h / 2), cy / (h / 2) - 1]]], dtype=x.dtype, device=x.device)
    grid = F.affine_grid(theta.expand(x.shape[0], 2, 3), [x.shape[0], x.shape[1], out, out], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False)


@dataclass(frozen=True)
class RandomView:
    """A square around a selection, zoomed (log-uniformly), turned and shifted by a random amount each call."""

    zoom: tuple[float, float]   # the square spans 1/zoom of the view (>1 zooms in)
    degrees: float              # turn, ± this
    shift: float                # shift, ± this fraction of the square's side

    def __call__(self, x: torch.Tensor, cy: float, cx: float, side: float, out: int,
                 rng: np.random.Generator) -> torch.Tensor:
        """An (N, C, out, out) view of the `side`-pixel square centred on (cy, cx)."""
        zoom = math.exp(rng.uniform(math.log(self.zoom[0]), math.log(self.zoom[1])))
        angle = math.radians(rng.uniform(-self.degrees, self.degrees))
        dy, dx = rng.uniform(-self.shift, self.shift, size=2) * side
        return square_view(x, cy + dy, cx + dx, side / (2 * zoom), angle, out)


def rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """A square NCHW image turned about its centre; the corners repeat the border pixels."""
    side = x.shape[-1]
    return square_view(x, side / 2, side / 2, side / 2, math.radians(degrees), side, padding="border")


def down_up(x: torch.Tensor, factor: float) -> torch.Tensor:
    """The image shrunk by `factor` (antialiased) and scaled back up: what survives a lower resolution."""
    size = tuple(x.shape[-2:])
    small = F.interpolate(x, scale_factor=1 / factor, mode="bilinear", antialias=True, align_corners=False)
    return F.interpolate(small, size=size, mode="bilinear", align_corners=False)


def central_crop(x: torch.Tensor, border: float) -> torch.Tensor:
    """A square image with `border` of its side cut off each edge, scaled back up to the full size."""
    side = x.shape[-1]
    margin = round(side * border)
    crop = x[:, :, margin:side - margin, margin:side - margin]
    return F.interpolate(crop, size=(side, side), mode="bilinear", align_corners=False)
