"""Turn an `xwd -root` dump of an Xvfb screen (24-bit TrueColor, 4 bytes a pixel) into a PNG, for screenshots of
the real GIMP dialog and Krita docker (this machine has no ImageMagick). Usage: xwd_to_png.py IN.xwd OUT.png
[x y w h] (an optional crop)."""
from __future__ import annotations

import struct
import sys

import numpy as np
from PIL import Image


def read_xwd(data: bytes) -> Image.Image:
    fields = struct.unpack(">25I", data[:100])
    header_size, _, _, depth, width, height = fields[:6]
    byte_order, bytes_per_line = fields[7], fields[12]
    red_mask, green_mask, blue_mask = fields[14:17]
    colours = fields[19]
    if depth != 24 or bytes_per_line < 4 * width:   # Xvfb's 24-bit screens store 4 bytes a pixel
        raise SystemExit(f"xwd_to_png: only 24-bit screens with 4 bytes a pixel, not depth {depth}")
    start = header_size + 12 * colours
    rows = np.frombuffer(data[start:start + bytes_per_line * height], np.uint8).reshape(height, bytes_per_line)
    pixels = rows[:, :width * 4].copy().view(">u4" if byte_order else "<u4").reshape(height, width)
    rgb = [((pixels & mask) >> (mask & -mask).bit_length() - 1).astype(np.uint8)
           for mask in (red_mask, green_mask, blue_mask)]
    return Image.fromarray(np.dstack(rgb), "RGB")


if __name__ == "__main__":
    image = read_xwd(open(sys.argv[1], "rb").read())
    if len(sys.argv) == 7:
        x, y, w, h = map(int, sys.argv[3:7])
        image = image.crop((x, y, x + w, y + h))
    image.save(sys.argv[2], optimize=True)
