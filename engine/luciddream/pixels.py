"""Arrays in, arrays out: uint8 / uint16 / float32 (or float64), gray / gray+alpha / RGB / RGBA.

The network always sees RGB in [0, 1]; the result goes back into the caller's dtype and channel layout, alpha is
copied untouched and pixels outside the mask are never written.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import DreamError
from .masks import Box

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # Rec. 601: how a gray image's dream becomes gray again
# The networks shrink an image 32 times before their deepest layers; below this side their kernels no longer fit
# (measured: Lite0 fails under 17 px), and an octave this small holds nothing to dream about anyway.
MIN_SIDE = 32


@dataclass(frozen=True)
class Layout:
    height: int
    width: int
    color: int          # 1 (gray) or 3 (RGB)
    alpha: bool
    scale: float        # 255, 65535, or 1 for floats


def describe(image: np.ndarray, min_side: int = MIN_SIDE) -> Layout:
    if not isinstance(image, np.ndarray):
        raise DreamError(f"The image must be a NumPy array, not {type(image).__name__}.")
    if image.ndim == 2:
        channels = 1
    elif image.ndim == 3 and 1 <= image.shape[2] <= 4:
        channels = image.shape[2]
    else:
        raise DreamError(f"The image must be height × width × 1–4 channels (gray, gray+alpha, RGB, RGBA); "
                         f"it has shape {image.shape}.")
    h, w = image.shape[:2]
    if h < 1 or w < 1:
        raise DreamError(f"The image is empty ({w}×{h} pixels).")
    if image.dtype == np.uint8:
        scale = 255.0
    elif image.dtype == np.uint16:
        scale = 65535.0
    elif image.dtype in (np.float32, np.float64):
        scale = 1.0
        if not np.isfinite(image).all():
            raise DreamError("The image contains NaN or infinite values: replace them before dreaming.")
    else:
        raise DreamError(f"Images of type {image.dtype} are not supported: use uint8, uint16 or float32.")
    if h < min_side or w < min_side:
        raise DreamError(f"An image of {w}×{h} pixels is too small to dream with: it needs at least {min_side} "
                         f"pixels on each side; use a larger image or canvas.")
    color = 1 if channels <= 2 else 3
    return Layout(h, w, color, channels in (2, 4), scale)


def _channels(image: np.ndarray) -> np.ndarray:
    """A (h, w, c) view of the image, also for 2-D gray arrays."""
    return image[:, :, None] if image.ndim == 2 else image


def color_region(image: np.ndarray, layout: Layout, box: Box) -> np.ndarray:
    """The colour channels inside the box as float32 in the [0, 1] scale (not clipped: float images may exceed it)."""
    region = _channels(image)[box.y0:box.y1, box.x0:box.x1, :layout.color]
    return region.astype(np.float32) / np.float32(layout.scale)


def network_rgb(color: np.ndarray) -> np.ndarray:
    """RGB in [0, 1] for the network (clipped in place: `color` is the fresh array from color_region)."""
    np.clip(color, 0.0, 1.0, out=color)
    return np.repeat(color, 3, axis=2) if color.shape[2] == 1 else color


def merge(image: np.ndarray, layout: Layout, box: Box, dream_rgb: np.ndarray,
          mask: np.ndarray | None) -> np.ndarray:
    """A new array: the dream blended in through the mask; untouched where the mask is 0, alpha always untouched."""
    out = image.copy()
    old = color_region(image, layout, box)
    new = dream_rgb if layout.color == 3 else (dream_rgb @ _LUMA)[:, :, None]
    m = np.ones(old.shape[:2], np.float32) if mask is None else mask[box.y0:box.y1, box.x0:box.x1]
    # Add the change to the original rather than replacing it, so float values outside [0, 1] (HDR) survive
    # wherever the dream did not move them.
    value = old + m[:, :, None] * (new - np.clip(old, 0.0, 1.0))
    if layout.scale != 1.0:
        value = np.rint(np.clip(value, 0.0, 1.0) * layout.scale)
    value = value.astype(image.dtype)
    target = _channels(out)[box.y0:box.y1, box.x0:box.x1, :layout.color]
    selected = m > 0
    target[selected] = value[selected]
    return out
