"""Make the README's gallery: real before/after pictures from the shared test photos, selection outlined.

    .venv/bin/python docs/make_gallery.py [--only classes,hybrid]   # writes docs/gallery/*.jpg, prints seconds

`classes.jpg` is the class sheet: each benchmark class (benchmarks/class_quality.py) dreamed into a central
selection of half the area of one of the photos (taken in turn), default settings, input | dream.

Every picture is the engine's real output with the settings printed under it; nothing is retouched.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

import luciddream

HERE = Path(__file__).resolve().parent
FIXTURES = Path(os.environ.get("LUCIDDREAM_FIXTURES", HERE.parents[1] / "shared" / "fixtures"))
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


CLASSES = ["goldfish", "great white shark", "stingray", "peacock", "tree frog", "ostrich", "jellyfish", "daisy",
           "monarch butterfly", "volcano"]
PHOTOS = ["chelsea", "astronaut", "coffee"]
SHEET_WIDTH = 300  # width of each picture on the class sheet


def selection(kind: str, h: int, w: int) -> np.ndarray | None:
    if kind == "all":
        return None
    if kind == "half":  # a centred rectangle of half the area, as in benchmarks/class_quality.py
        sh, sw = round(h / 2 ** 0.5), round(w / 2 ** 0.5)
        m = np.zeros((h, w), np.float32)
        m[(h - sh) // 2:(h - sh) // 2 + sh, (w - sw) // 2:(w - sw) // 2 + sw] = 1.0
        return m
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


def class_sheet() -> None:
    """Input | dream for every class, two pairs per row, each picture SHEET_WIDTH wide, the class named below."""
    cells = []
    for i, name in enumerate(CLASSES):
        photo = np.array(Image.open(FIXTURES / f"{PHOTOS[i % len(PHOTOS)]}.png").convert("RGB"))
        h, w = photo.shape[:2]
        mask = selection("half", h, w)
        start = time.perf_counter()
        dream = luciddream.dream(photo, mask, name, seed=1)
        print(f"classes/{name}: {time.perf_counter() - start:.1f} s", file=sys.stderr)
        ch = round(h * SHEET_WIDTH / w)
        cell = Image.new("RGB", (2 * SHEET_WIDTH + 4, 300 + 20), "white")
        for k, im in enumerate((outline(photo, mask), Image.fromarray(dream))):
            cell.paste(im.resize((SHEET_WIDTH, ch), Image.LANCZOS), (k * (SHEET_WIDTH + 4), (300 - ch) // 2))
        ImageDraw.Draw(cell).text((4, 303), name, fill="black")
        cells.append(cell)
    cols = 2
    rows = (len(cells) + cols - 1) // cols
    cw, chh = cells[0].size
    sheet = Image.new("RGB", (cols * cw + (cols - 1) * 12, rows * chh), "white")
    for i, cell in enumerate(cells):
        sheet.paste(cell, ((i % cols) * (cw + 12), (i // cols) * chh))
    sheet.save(OUT / "classes.jpg", quality=88)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="comma-separated pictures to make (classic, peacock, ..., classes)")
    only = {n.strip() for n in ap.parse_args().only.split(",") if n.strip()}
    OUT.mkdir(exist_ok=True)
    if not only or "classes" in only:
        class_sheet()
    for shot in SHOTS:
        if only and shot.name not in only:
            continue
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
