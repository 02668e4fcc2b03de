"""Make the README's gallery: real before/after pictures from the shared test photos, selection outlined.

    .venv/bin/python docs/make_gallery.py      # writes docs/gallery/*.jpg and prints the seconds each dream took

Every picture is the engine's real output with the settings printed under it; nothing is retouched.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

import luciddream

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parents[1] / "shared" / "fixtures"
OUT = HERE / "gallery"


@dataclass(frozen=True)
class Shot:
    name: str
    photo: str
    targets: str | None
    selection: str          # "all", "ellipse" or "box"
    settings: dict


SHOTS = [
    Shot("classic", "astronaut", None, "all", {}),
    Shot("peacock", "chelsea", "peacock", "ellipse", {"feather": 12}),
    Shot("goldfish", "coffee", "goldfish", "box", {"feather": 8}),
    Shot("hybrid", "coffee", "ostrich=1, jellyfish=1", "ellipse", {"feather": 12}),
    Shot("texture", "chelsea", "layer:block3", "box", {"feather": 8}),
]


def selection(kind: str, h: int, w: int) -> np.ndarray | None:
    if kind == "all":
        return None
    yy, xx = np.mgrid[0:h, 0:w]
    if kind == "ellipse":
        inside = ((yy - h / 2) / (h * 0.32)) ** 2 + ((xx - w / 2) / (w * 0.3)) ** 2 <= 1
    else:
        inside = (abs(yy - h / 2) <= h * 0.3) & (abs(xx - w / 2) <= w * 0.3)
    return inside.astype(np.float32)


def outline(image: np.ndarray, mask: np.ndarray | None) -> Image.Image:
    """The photo with the selection's edge drawn as marching ants, as an editor shows it."""
    im = Image.fromarray(image).convert("RGB")
    if mask is None:
        return im
    inside = mask > 0.5
    edge = inside & ~(np.roll(inside, 1, 0) & np.roll(inside, -1, 0) & np.roll(inside, 1, 1) & np.roll(inside, -1, 1))
    ys, xs = np.nonzero(edge)
    a = np.array(im)
    dark = ((xs + ys) // 4) % 2 == 0
    a[ys[dark], xs[dark]] = 0
    a[ys[~dark], xs[~dark]] = 255
    return Image.fromarray(a)


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for shot in SHOTS:
        photo = np.array(Image.open(FIXTURES / f"{shot.photo}.png").convert("RGB"))
        h, w = photo.shape[:2]
        mask = selection(shot.selection, h, w)
        start = time.perf_counter()
        dream = luciddream.dream(photo, mask, shot.targets, seed=1, **shot.settings)
        seconds = time.perf_counter() - start
        before, after = outline(photo, mask), Image.fromarray(dream)
        sheet = Image.new("RGB", (2 * w + 8, h + 22), "white")
        sheet.paste(before, (0, 0))
        sheet.paste(after, (w + 8, 0))
        label = f"{shot.targets or 'default (classic layer)'}  " + " ".join(
            f"{k}={v}" for k, v in {"seed": 1, **shot.settings}.items())
        ImageDraw.Draw(sheet).text((4, h + 5), label, fill="black")
        sheet.save(OUT / f"{shot.name}.jpg", quality=88)
        print(f"{shot.name}: {seconds:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
