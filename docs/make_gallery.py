"""Make the README's gallery: real before/after pictures from the shared test photos, selection outlined.

    .venv/bin/python docs/make_gallery.py [--only classes,hybrid]   # writes docs/gallery/*.jpg, prints seconds

`class_<name>.jpg` is one sheet per benchmark class (benchmarks/class_quality.py): the class dreamed into a central
selection of half the area of each fixture photo with default settings, one row per photo: photo | grow | object.
`--keep DIR` also writes every class dream as a PNG there (benchmarks/class_quality.py --from DIR judges them),
and every other shot's dream too (PNG, to look at at full size).
`large_<name>.jpg` is a dream on a photo scaled to 2048 px on its longer side (a ~1400 px selection), kept at full
size, and `large_<name>_1to1.jpg` a 768 px piece of photo | dream at 1:1, where the sharpness can be judged.

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
import torch
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
    selection: str          # "all", "ellipse", "box" or "large" (a centred square of 0.68 × the shorter side)
    settings: dict
    long_side: int = 0      # the photo scaled so its longer side is this many pixels (0: as it is)


SHOTS = [
    Shot("classic", "astronaut", None, "all", {}),
    Shot("peacock", "chelsea", "peacock", "ellipse", {"feather": 12}),
    Shot("goldfish", "coffee", "goldfish", "box", {"feather": 8}),
    Shot("hybrid", "coffee", "ostrich=1, jellyfish=1", "ellipse", {"feather": 12}),
    Shot("hybrid2", "astronaut", "goldfish=1, daisy=1", "ellipse", {"feather": 12}),
    Shot("texture", "chelsea", "layer:block3", "box", {"feather": 8}),
    Shot("large_goldfish", "astronaut", "goldfish", "large", {}, 2048),
    Shot("large_daisy", "coffee", "daisy", "large", {"instance": 448}, 2048),
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
    if kind == "large":
        side = round(0.68 * min(h, w))
        m = np.zeros((h, w), np.float32)
        m[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side] = 1.0
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


def slug(name: str) -> str:
    return name.replace(" ", "_").replace("'", "")


def class_sheet(name: str, photos: list[str], keep: Path | None, reuse: bool) -> None:
    """photo | grow | object for one class on each of `photos`, each picture SHEET_WIDTH wide."""
    rows = []
    for photo_name in photos:
        photo = np.array(Image.open(FIXTURES / f"{photo_name}.png").convert("RGB"))
        h, w = photo.shape[:2]
        mask = selection("half", h, w)
        pictures = [outline(photo, mask)]
        for look in ("grow", "object"):
            saved = None if keep is None else keep / f"{photo_name}_{slug(name)}_{look}.png"
            if reuse and saved is not None and saved.exists():
                dream = np.array(Image.open(saved).convert("RGB"))
            else:
                start = time.perf_counter()
                dream = luciddream.dream(photo, mask, name, seed=1, look=look)
                print(f"{name}/{photo_name}/{look}: {time.perf_counter() - start:.1f} s", file=sys.stderr,
                      flush=True)
                if saved is not None:
                    Image.fromarray(dream).save(saved)
            pictures.append(Image.fromarray(dream))
        ch = round(h * SHEET_WIDTH / w)
        row = Image.new("RGB", (3 * SHEET_WIDTH + 8, ch), "white")
        for k, im in enumerate(pictures):
            row.paste(im.resize((SHEET_WIDTH, ch), Image.LANCZOS), (k * (SHEET_WIDTH + 4), 0))
        rows.append(row)
    sheet = Image.new("RGB", (rows[0].width, sum(r.height + 4 for r in rows) + 18), "white")
    y = 18
    ImageDraw.Draw(sheet).text((4, 3), f"{name}: photo | grow (default) | object   seed=1", fill="black")
    for row in rows:
        sheet.paste(row, (0, y))
        y += row.height + 4
    sheet.save(OUT / f"class_{slug(name)}.jpg", quality=85)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="comma-separated pictures to make (classic, peacock, ..., classes)")
    ap.add_argument("--classes", default=",".join(CLASSES), help="comma-separated classes for the class sheets")
    ap.add_argument("--keep", type=Path, help="also write every class dream as a PNG in this folder")
    ap.add_argument("--reuse", action="store_true", help="take class dreams already in --keep instead of dreaming")
    ap.add_argument("--photos", type=int, default=len(PHOTOS),
                    help="photos per class sheet: all three, or fewer, taken in turn from the class's place")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    only = {n.strip() for n in args.only.split(",") if n.strip()}
    OUT.mkdir(exist_ok=True)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    if not only or "classes" in only:
        for name in (c.strip() for c in args.classes.split(",") if c.strip()):
            first = CLASSES.index(name) if name in CLASSES else 0
            photos = [PHOTOS[(first + k) % len(PHOTOS)] for k in range(args.photos)]
            class_sheet(name, photos, args.keep, args.reuse)
    for shot in SHOTS:
        if only and shot.name not in only:
            continue
        source = Image.open(FIXTURES / f"{shot.photo}.png").convert("RGB")
        if shot.long_side:
            k = shot.long_side / max(source.size)
            source = source.resize((round(source.width * k), round(source.height * k)), Image.LANCZOS)
        photo = np.array(source)
        h, w = photo.shape[:2]
        mask = selection(shot.selection, h, w)
        start = time.perf_counter()
        dream = luciddream.dream(photo, mask, shot.targets, seed=1, **shot.settings)
        seconds = time.perf_counter() - start
        if args.keep:
            Image.fromarray(dream).save(args.keep / f"{shot.name}.png")
        if shot.long_side:
            large(shot, photo, mask, dream)
            print(f"{shot.name}: {seconds:.1f} s", file=sys.stderr)
            continue
        before, after = outline(photo, mask), Image.fromarray(dream)
        sheet = Image.new("RGB", (2 * w + 8, h + 22), "white")
        sheet.paste(before, (0, 0))
        sheet.paste(after, (w + 8, 0))
        label = f"{shot.targets or 'default (classic layer)'}  " + " ".join(
            f"{k}={v}" for k, v in {"seed": 1, **shot.settings}.items())
        ImageDraw.Draw(sheet).text((4, h + 5), label, fill="black")
        sheet.save(OUT / f"{shot.name}.jpg", quality=88)
        print(f"{shot.name}: {seconds:.1f} s", file=sys.stderr)


def large(shot: Shot, photo: np.ndarray, mask: np.ndarray, dream: np.ndarray) -> None:
    """A large dream at full size, and a 1:1 piece (photo | dream) from the selection's centre."""
    Image.fromarray(dream).save(OUT / f"{shot.name}.jpg", quality=85)
    h, w = photo.shape[:2]
    piece = 768
    y0, x0 = (h - piece) // 2, (w - piece) // 2
    crops = [outline(photo, mask).crop((x0, y0, x0 + piece, y0 + piece)),
             Image.fromarray(dream).crop((x0, y0, x0 + piece, y0 + piece))]
    sheet = Image.new("RGB", (2 * piece + 8, piece + 22), "white")
    sheet.paste(crops[0], (0, 0))
    sheet.paste(crops[1], (piece + 8, 0))
    label = f"{shot.targets}  {w}x{h}, 1:1 centre  " + " ".join(
        f"{k}={v}" for k, v in {"seed": 1, **shot.settings}.items())
    ImageDraw.Draw(sheet).text((4, piece + 5), label, fill="black")
    sheet.save(OUT / f"{shot.name}_1to1.jpg", quality=88)


if __name__ == "__main__":
    main()
