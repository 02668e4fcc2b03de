"""Krita's pixel bytes to the engine's wire layout and back: the only place that knows how Krita stores pixels.

Pure Python on purpose: Krita's bundled Python has no numpy, and keeping this free of Krita and Qt lets the tests
check every format without starting Krita.

What Krita hands out (`Node.pixelData`, `Document.pixelData`), in the machine's byte order:
    RGBA U8 / U16    B, G, R, A        (Krita's integer RGB spaces are stored BGR)
    RGBA F16 / F32   R, G, B, A        (half / single floats)
    GRAYA any depth  gray, alpha
The engine takes gray, gray+alpha, RGB or RGBA as u8, u16 or f32 in the same machine order (the protocol package
swaps on big-endian hosts), so U8/U16 only need B and R swapped, F16 is widened to f32 and narrowed back, and F32
and gray pass through untouched. Every conversion here is exact in both directions, so pixels the engine leaves alone
come back bit for bit.
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Optional, Union

from .kit import SAMPLE_BYTES, UserError

Bytes = Union[bytes, bytearray, memoryview]


@dataclass(frozen=True)
class PixelFormat:
    """How one Krita colour space is laid out, and what it travels as."""

    model: str          # Krita's colour model id: "RGBA" or "GRAYA"
    depth: str          # Krita's depth id: "U8", "U16", "F16", "F32"
    channels: int       # 4 (RGBA) or 2 (gray + alpha)
    sample_bytes: int   # bytes of one channel in Krita
    sample: str         # what the engine receives: "u8", "u16" or "f32"
    bgr: bool           # Krita stores B before R (integer RGB spaces)

    @property
    def pixel_bytes(self) -> int:
        """Bytes of one pixel as Krita stores it."""
        return self.channels * self.sample_bytes

    @property
    def wire_bytes(self) -> int:
        """Bytes of one pixel as the engine receives it (F16 travels as f32)."""
        return self.channels * SAMPLE_BYTES[self.sample]


_DEPTHS = {"U8": (1, "u8"), "U16": (2, "u16"), "F16": (2, "f32"), "F32": (4, "f32")}
_MODEL_NAMES = {"CMYKA": "CMYK", "LABA": "L*a*b*", "XYZA": "XYZ", "YCbCrA": "YCbCr"}


def pixel_format(model: str, depth: str) -> PixelFormat:
    """The format of a Krita colour space, or a UserError saying what to convert to."""
    if model not in ("RGBA", "GRAYA"):
        name = _MODEL_NAMES.get(model, model or "an unknown colour model")
        raise UserError(f"Lucid Dream works on RGB and grayscale images, not {name}: convert it with "
                         f"Image › Convert Image Color Space… (or Layer › Convert Layer Color Space…) first.")
    if depth not in _DEPTHS:
        raise UserError(f"Lucid Dream cannot read {depth or 'this'} pixels: convert the image to 8-bit, "
                         f"16-bit or floating-point channels first.")
    size, sample = _DEPTHS[depth]
    channels = 4 if model == "RGBA" else 2
    return PixelFormat(model, depth, channels, size, sample, bgr=(model == "RGBA" and depth in ("U8", "U16")))


def _swap_red_blue(data: Bytes, size: int) -> bytearray:
    """B,G,R,A <-> R,G,B,A for `size`-byte channels: its own inverse."""
    out = bytearray(data)
    step = 4 * size
    for k in range(size):
        out[k::step] = data[2 * size + k::step]
        out[2 * size + k::step] = data[k::step]
    return out


_CHUNK = 1 << 16  # half floats converted this many at a time: bounded memory for the tuple struct builds


def _half_to_float(data: Bytes) -> bytearray:
    """IEEE half floats to single floats (exact: every half is a float)."""
    src = memoryview(data).cast("B")
    out = bytearray()
    for start in range(0, len(src), 2 * _CHUNK):
        part = src[start:start + 2 * _CHUNK]
        n = len(part) // 2
        out += struct.pack(f"={n}f", *struct.unpack(f"={n}e", part))
    return out


def _float_to_half(data: Bytes) -> bytearray:
    """Single floats to the nearest half float; values beyond the half range become ±65504 rather than failing."""
    src = memoryview(data).cast("B")
    out = bytearray()
    for start in range(0, len(src), 4 * _CHUNK):
        part = src[start:start + 4 * _CHUNK]
        n = len(part) // 4
        values = struct.unpack(f"={n}f", part)
        try:
            out += struct.pack(f"={n}e", *values)
        except (OverflowError, struct.error):
            out += struct.pack(f"={n}e", *(max(-65504.0, min(65504.0, v)) for v in values))
    return out


def _check_length(data: Bytes, fmt: PixelFormat, pixels: int, per_pixel: int, what: str) -> None:
    got = memoryview(data).nbytes
    if got != pixels * per_pixel:
        raise UserError(f"{what} has {got} bytes, not the {pixels * per_pixel} that {pixels} {fmt.model} "
                         f"{fmt.depth} pixels need.")


def to_engine(data: Bytes, fmt: PixelFormat, pixels: int) -> bytes:
    """Krita's bytes of `pixels` pixels in the engine's layout (`fmt.channels` channels of `fmt.sample`)."""
    _check_length(data, fmt, pixels, fmt.pixel_bytes, "The layer's pixel data")
    if fmt.bgr:
        return bytes(_swap_red_blue(data, fmt.sample_bytes))
    if fmt.depth == "F16":
        return bytes(_half_to_float(data))
    return bytes(data)


def from_engine(data: Bytes, fmt: PixelFormat, pixels: int) -> bytes:
    """The engine's result back in Krita's layout: the exact inverse of to_engine."""
    _check_length(data, fmt, pixels, fmt.wire_bytes, "The engine's result")
    if fmt.bgr:
        return bytes(_swap_red_blue(data, fmt.sample_bytes))
    if fmt.depth == "F16":
        return bytes(_float_to_half(data))
    return bytes(data)


def clear_unselected(data: Bytes, mask: Optional[Bytes], pixel_bytes: int) -> bytes:
    """Make every pixel whose mask byte is 0 fully transparent (all bytes zero: alpha 0 in every format).

    Why: the result goes to a new layer above the original. Pixels outside the selection come back unchanged from
    the engine, but copying them would make the new layer a full duplicate of that rectangle; clearing them leaves
    a layer that holds only the dream, which the user can move, mask or fade on its own.
    """
    out = bytearray(data)
    if mask is None:
        return bytes(out)
    mask = bytes(mask)
    if len(mask) * pixel_bytes != len(out):
        raise UserError(f"The selection has {len(mask)} pixels but the result has {len(out) // pixel_bytes}.")
    for run in re.finditer(b"\x00+", mask):
        start, end = run.start() * pixel_bytes, run.end() * pixel_bytes
        out[start:end] = bytes(end - start)
    return bytes(out)


def shrink(data: Bytes, width: int, height: int, pixel_bytes: int, new_width: int, new_height: int) -> bytes:
    """Nearest-neighbour resize of interleaved pixels (any layout): the quick preview's small working picture.

    Why nearest: the preview only has to look like the dream to come, and this runs in Krita's Python (no numpy)
    on every preview; picking whole pixels keeps every format's bytes valid."""
    view = memoryview(bytes(data))
    columns = [(x * width // new_width) * pixel_bytes for x in range(new_width)]
    out = bytearray()
    row_bytes = width * pixel_bytes
    for y in range(new_height):
        row = view[(y * height // new_height) * row_bytes:][:row_bytes]
        out += b"".join(row[c:c + pixel_bytes] for c in columns)
    return bytes(out)


def display_rgba8(data: Bytes, channels: int, sample: str, pixels: int) -> bytes:
    """Engine-layout pixels (RGBA or gray+alpha; u8, u16 or f32) as 8-bit R,G,B,A for showing on screen."""
    if sample == "u8":
        values = bytes(data)
    elif sample == "u16":
        values = bytes(v >> 8 for v in struct.unpack(f"={pixels * channels}H", bytes(data)))
    else:
        values = bytes(min(255, max(0, int(v * 255.0 + 0.5))) if v == v else 0
                       for v in struct.unpack(f"={pixels * channels}f", bytes(data)))
    if channels == 4:
        return values
    out = bytearray(pixels * 4)
    out[0::4] = values[0::2]
    out[1::4] = values[0::2]
    out[2::4] = values[0::2]
    out[3::4] = values[1::2]
    return bytes(out)
