"""Do class dreams show the class to a person, or only fool the network? Prints a table; asserts nothing.

    .venv/bin/python benchmarks/class_quality.py [--classes goldfish,daisy] [--photos chelsea] [--out DIR]
                                                 [--look grow|object] [--from DIR] [--pairs 10] [--time512]
                                                 [--time1mp] [--sharpness]

Each class is dreamed into a central selection of half the area of each fixture photo with default settings
(seed 1). The judge is EfficientNet-Lite2 — never the dreaming network — reading the selection's bounding box under
views the dream was not optimised for: Gaussian blur σ=2, 2× down/up-sampling, rotation by 20°, a central 70% crop.
"robust" is the mean of those four probabilities; "top5" says whether the class is among the judge's five best on
the mean of the views. Adversarial texture scores high on the plain view and collapses under the others.

Instance scale (the grow look grows several instances, so a whole-box judge misreads it): the judge also reads
every window of one instance's size (`--instance`, the default setting) across the selection, half a window apart,
under the four views and in grayscale; "inst top5" is the share of windows with the class in the top 5 of the mean
of those five, "inst med" the median probability. "layout" is quality.layout_similarity: SSIM of photo and dream
shrunk to 32 px on the longer side — how much of the photo's low-resolution structure survives.
`--from DIR` judges the dreams docs/make_gallery.py --keep DIR wrote (PHOTO_CLASS_LOOK.png) instead of dreaming.

The judge's number is necessary, never sufficient (networks of one family share blind spots): `--out` writes each
dream and a sheet (input | dream per row) as PNGs to look at.

`--pairs N` also dreams N two-class hybrids ("a=1, b=1", photos taken in turn) and counts the pairs where both
classes are in the judge's top 5 on the mean of the views; `--time512` times one default class dream of a 512×512
selection (the astronaut photo scaled to 724×724, central half of the area), `--time1mp` one of a 1000×1000
selection (scaled to 1414×1414); `--sharpness` dreams a 2048×2048
astronaut with a centred 1400×1400 selection and compares the Laplacian variance inside it with the photo's outside
(goal ≥ 0.8×: as sharp as the photo around it) and prints `quality.mesh_share`, the share of the change's power
in a fine regular mesh (sharpness alone rewards it).
"""
from __future__ import annotations

import argparse
import statistics
import time
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import luciddream
from luciddream.labels import find_class
from luciddream.methods import grow
from luciddream.nets import load_model

import quality  # benchmarks/quality.py

FIXTURES = Path(os.environ.get("LUCIDDREAM_FIXTURES", Path(__file__).resolve().parents[2] / "shared" / "fixtures"))
CLASSES = ["goldfish", "great white shark", "stingray", "peacock", "tree frog", "ostrich", "jellyfish", "daisy",
           "monarch butterfly", "volcano"]
PAIRS = [("ostrich", "jellyfish"), ("goldfish", "peacock"), ("daisy", "monarch butterfly"), ("volcano", "stingray"),
         ("great white shark", "tree frog"), ("jellyfish", "daisy"), ("peacock", "volcano"), ("goldfish", "tree frog"),
         ("monarch butterfly", "great white shark"), ("ostrich", "stingray")]
PHOTOS = ["chelsea", "astronaut", "coffee"]


def central_mask(h: int, w: int) -> tuple[np.ndarray, tuple[slice, slice]]:
    """A centred rectangle of half the image's area (each side × 1/√2), with the photo's aspect."""
    sh, sw = round(h / 2 ** 0.5), round(w / 2 ** 0.5)
    y0, x0 = (h - sh) // 2, (w - sw) // 2
    box = (slice(y0, y0 + sh), slice(x0, x0 + sw))
    mask = np.zeros((h, w), np.float32)
    mask[box] = 1.0
    return mask, box


def outline(image: np.ndarray, box: tuple[slice, slice]) -> np.ndarray:
    out = image.copy()
    ys, xs = box
    for y in (ys.start, ys.stop - 1):
        out[max(0, y - 1):y + 1, xs] = (255, 255, 0)
    for x in (xs.start, xs.stop - 1):
        out[ys, max(0, x - 1):x + 1] = (255, 255, 0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", default=",".join(CLASSES), help="comma-separated class names")
    ap.add_argument("--photos", default=",".join(PHOTOS))
    ap.add_argument("--model", default=luciddream.DEFAULT_MODEL)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    ap.add_argument("--out", type=Path, help="folder for the dreams and the sheet (PNG)")
    ap.add_argument("--sheet-width", type=int, default=320, help="width of each picture on the sheet")
    ap.add_argument("--pairs", type=int, default=0, help="also dream this many two-class hybrids")
    ap.add_argument("--time512", action="store_true", help="also time a default class dream of a 512x512 selection")
    ap.add_argument("--time1mp", action="store_true", help="also time one of a 1000x1000 selection")
    ap.add_argument("--look", default="grow", choices=["grow", "object"])
    ap.add_argument("--instance", type=int, default=0,
                    help="judge windows, px (default 0: the grow look's auto instance for each selection)")
    ap.add_argument("--from", dest="source", type=Path, help="judge dreams saved by make_gallery.py --keep")
    ap.add_argument("--sharpness", action="store_true", help="also measure sharpness on a 2048x2048 image")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    photos = [p.strip() for p in args.photos.split(",") if p.strip()]
    judge = load_model("lite2", "cpu")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)

    rows: list[tuple[str, str, dict[str, float], float]] = []
    sheet_rows: list[np.ndarray] = []
    for photo in photos:
        image = np.array(Image.open(FIXTURES / f"{photo}.png").convert("RGB"))
        mask, box = central_mask(*image.shape[:2])
        for name in classes:
            index = find_class(name)
            before = quality.judge_class(judge, image[box], index)
            t = time.perf_counter()
            saved = None if args.source is None else args.source / f"{photo}_{name.replace(' ', '_')}_{args.look}.png"
            if saved is not None and not saved.exists():
                continue
            out = np.array(Image.open(saved).convert("RGB")) if saved is not None else \
                luciddream.dream(image, mask, name, model=args.model, seed=args.seed, look=args.look)
            seconds = time.perf_counter() - t if saved is None else float("nan")
            scores = quality.judge_class(judge, out[box], index)
            scores["before"] = before["robust"]
            windows = args.instance or grow.auto_instance(float(mask.sum()), 224, luciddream.Settings().octave_scale)
            inst = quality.instance_scores(judge, out[box], index, windows)
            scores["inst_top5"], scores["inst_median"] = inst["top5"], inst["median"]
            scores["inst_before"] = quality.instance_scores(judge, image[box], index, windows)["median"]
            scores["layout"] = quality.layout_similarity(image[box], out[box])
            rows.append((photo, name, scores, seconds))
            print(f"{photo:10s} {name:20s} plain {scores['plain']:.2f}  blur {scores['blur']:.2f}  half "
                  f"{scores['half']:.2f}  rot {scores['rotate']:.2f}  crop {scores['crop']:.2f}  robust "
                  f"{scores['robust']:.2f} (photo {before['robust']:.3f})  rank {scores['rank_robust'] + 1:3d}  "
                  f"inst top5 {scores['inst_top5']:.2f} med {scores['inst_median']:.2f} "
                  f"(photo {scores['inst_before']:.3f})  layout {scores['layout']:.2f}  {seconds:5.1f} s", flush=True)
            if args.out:
                slug = name.replace(" ", "_").replace("'", "")
                Image.fromarray(out).save(args.out / f"{photo}_{slug}.png")
                w = args.sheet_width
                h = round(image.shape[0] * w / image.shape[1])
                pair = [np.array(Image.fromarray(a).resize((w, h), Image.LANCZOS))
                        for a in (outline(image, box), out)]
                sheet_rows.append(np.concatenate([pair[0], np.full((h, 4, 3), 255, np.uint8), pair[1]], axis=1))

    if rows:
        summary(rows, classes)
    if args.pairs:
        hybrids(judge, photos, args)
    for side, asked in ((724, args.time512), (1414, args.time1mp)):
        if not asked:
            continue
        image = np.array(Image.open(FIXTURES / "astronaut.png").convert("RGB").resize((side, side), Image.LANCZOS))
        mask, box = central_mask(side, side)
        t = time.perf_counter()
        luciddream.dream(image, mask, "goldfish", model=args.model, seed=args.seed, look=args.look)
        print(f"{box[0].stop - box[0].start}x{box[1].stop - box[1].start} selection, default {args.look} "
              f"dream: {time.perf_counter() - t:.1f} s with {args.threads} thread(s)")
    if args.sharpness:
        sharpness(args)
    if args.out and sheet_rows:
        width = max(r.shape[1] for r in sheet_rows)
        padded = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in sheet_rows]
        Image.fromarray(np.concatenate(padded, axis=0)).save(args.out / "sheet.png")
        print(f"wrote {args.out}/sheet.png")


def sharpness(args: argparse.Namespace) -> None:
    """Laplacian variance of the dream inside a 1400 px selection of a 2048 px image against the photo's outside."""
    image = np.array(Image.open(FIXTURES / "astronaut.png").convert("RGB").resize((2048, 2048), Image.LANCZOS))
    mask = np.zeros((2048, 2048), np.float32)
    mask[324:1724, 324:1724] = 1.0
    t = time.perf_counter()
    out = luciddream.dream(image, mask, "goldfish", model=args.model, seed=args.seed, look=args.look)
    seconds = time.perf_counter() - t
    if args.out:
        Image.fromarray(out).save(args.out / f"sharpness_{args.look}.png")
    inside = quality.laplacian_variance(out[324:1724, 324:1724])
    photo_inside = quality.laplacian_variance(image[324:1724, 324:1724])
    outside = np.median([quality.laplacian_variance(b) for b in (out[:324], out[1724:], out[:, :324], out[:, 1724:])])
    mesh = quality.mesh_share(image[324:1724, 324:1724], out[324:1724, 324:1724])
    print(f"sharpness 2048x2048, 1400 px selection ({args.look}): Laplacian variance inside {inside:.2e}, photo "
          f"there {photo_inside:.2e}, outside (median of the 4 borders) {outside:.2e}: {inside / outside:.2f}x; "
          f"mesh share {mesh:.4f}; {seconds:.0f} s")


def summary(rows: list, classes: list[str]) -> None:
    print("\nper class (median over photos): robust, top-5 share, instance windows top-5 share and median, layout")
    for name in classes:
        mine = [r for r in rows if r[1] == name]
        if not mine:
            continue
        print(f"  {name:20s} robust {statistics.median(r[2]['robust'] for r in mine):.2f}  top-5 "
              f"{sum(r[2]['rank_robust'] < 5 for r in mine)}/{len(mine)}  inst top5 "
              f"{statistics.median(r[2]['inst_top5'] for r in mine):.2f} med "
              f"{statistics.median(r[2]['inst_median'] for r in mine):.2f}  layout "
              f"{statistics.median(r[2]['layout'] for r in mine):.2f}")
    print(f"median inst top5 {statistics.median(r[2]['inst_top5'] for r in rows):.2f}, inst median "
          f"{statistics.median(r[2]['inst_median'] for r in rows):.3f}, layout "
          f"{statistics.median(r[2]['layout'] for r in rows):.3f}")
    print(f"median robust {statistics.median(r[2]['robust'] for r in rows):.3f}; median plain "
          f"{statistics.median(r[2]['plain'] for r in rows):.3f}; median blur "
          f"{statistics.median(r[2]['blur'] for r in rows):.3f}; seconds per dream: median "
          f"{statistics.median(r[3] for r in rows):.1f}, max {max(r[3] for r in rows):.1f}")


def hybrids(judge: torch.nn.Module, photos: list[str], args: argparse.Namespace) -> None:
    """Two-class hybrids: both classes should be among the judge's five best on the mean of the views."""
    both = 0
    pairs = PAIRS[:args.pairs]
    for i, (a, b) in enumerate(pairs):
        photo = photos[i % len(photos)]
        image = np.array(Image.open(FIXTURES / f"{photo}.png").convert("RGB"))
        mask, box = central_mask(*image.shape[:2])
        t = time.perf_counter()
        out = luciddream.dream(image, mask, f"{a}=1, {b}=1", model=args.model, seed=args.seed, look=args.look)
        seconds = time.perf_counter() - t
        sa, sb = (quality.judge_class(judge, out[box], find_class(n)) for n in (a, b))
        ok = sa["rank_robust"] < 5 and sb["rank_robust"] < 5
        both += ok
        print(f"hybrid {photo:10s} {a} + {b}: robust {sa['robust']:.2f} / {sb['robust']:.2f}, rank "
              f"{sa['rank_robust'] + 1} / {sb['rank_robust'] + 1}  {'both top-5' if ok else ''}  {seconds:5.1f} s",
              flush=True)
        if args.out:
            Image.fromarray(out).save(args.out / f"hybrid_{photo}_{a}+{b}.png".replace(" ", "_"))
    print(f"hybrids with both classes in the top 5: {both}/{len(pairs)}")


if __name__ == "__main__":
    main()
