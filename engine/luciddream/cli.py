"""`luciddream` on the command line: dream an image file, list classes, layers and models.

User errors print one line and exit with status 2; the output file is written atomically or not at all.
"""
from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
import time
from pathlib import Path
from typing import Sequence

from . import labels, nets, server, worker
from .errors import Cancelled, DreamError, is_out_of_memory
from .protocol import Limits

PROG = "luciddream"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (which argument, what is wrong), not a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{PROG}: error: {message} (see `{self.prog} --help`)\n")


def _dream_args(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dream", help="dream into an image file", description="Dream into INPUT (inside the "
                       "white part of --mask, or everywhere) and write OUTPUT.")
    p.add_argument("input", metavar="INPUT", help="image to dream on (PNG, JPEG, TIFF, WebP…)")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                   help="file to write; the format follows the extension, 16-bit PNG stays 16-bit")
    p.add_argument("--mask", metavar="MASK", help="gray image of the same size: white = dream, black = keep")
    p.add_argument("-t", "--target", action="append", metavar="T", help="what to dream, repeatable: a class "
                   "name (goldfish), class:NAME|INDEX, layer:NAME, layer:NAME:C1,C2, weights as NAME=W; "
                   "default: the model's classic DeepDream layer")
    p.add_argument("--model", default=nets.DEFAULT_MODEL, help="network (see `luciddream models`)")
    p.add_argument("--weights", metavar="PATH", help="weights file for the model instead of its own, e.g. "
                   "googlenet-1378be20.pth downloaded by hand")
    p.add_argument("--guide", metavar="IMAGE", help="dream toward the features of this picture (alone, or with "
                   "--target: at the first layer target's layer)")
    p.add_argument("--octaves", type=int, default=4, help="number of scales (default 4)")
    p.add_argument("--octave-scale", type=float, default=1.4, help="ratio between scales (default 1.4)")
    p.add_argument("--steps", type=int, default=None,
                   help="optimiser steps per octave (default 0: each look's own, layers 10, grow 60, object 30)")
    p.add_argument("--step-size", type=float, default=1.5,
                   help="mean change per step in 8-bit levels (default 1.5)")
    p.add_argument("--look", default="grow", choices=["grow", "object"],
                   help="class targets alone: grow instances out of the photo, or one picture (default grow)")
    p.add_argument("--instance", type=_pixels_or_auto, default=0, metavar="PX|auto",
                   help="grow look: size of one instance in image px (default auto: 224, larger on selections "
                        "over about 890 px square, so their instances grow with them)")
    p.add_argument("--class-strength", type=float, default=1.0,
                   help="grow look: how far the photo under each instance may change, 0 = untouched … 1 = replaced "
                        "(default 1)")
    p.add_argument("--tile", type=_pixels_or_auto, default=0, metavar="PX|auto",
                   help="largest window the network sees, px (default auto: from the free memory, 640 when ample)")
    p.add_argument("--max-memory", type=_megabytes, default=0, metavar="SIZE",
                   help="memory the dream may use, e.g. 1500M or 2G (caps the tile; default: what is free)")
    p.add_argument("--feather", type=float, default=0.0,
                   help="fade the dream in over this many px inside the mask's edge (default 0)")
    p.add_argument("--seed", type=int, help="repeatable result (default: random, printed)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"], help="default auto")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    p.add_argument("--max-pixels", type=int, default=Limits().max_pixels, metavar="N",
                   help=f"refuse larger images before reading them (default {Limits().max_pixels}, 8192×8192 "
                        f"like the worker)")


def _pixels_or_auto(text: str) -> int:
    """A number of pixels, or "auto" (0)."""
    if text.strip().lower() == "auto":
        return 0
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of pixels or auto, not {text!r}") from None


def _megabytes(text: str) -> int:
    """'1500', '1500M', '2G', '2GB' → MB."""
    value = text.strip().upper()
    value = value[:-1] if value.endswith("B") else value
    scale = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}.get(value[-1:], None)
    number = value[:-1] if scale is not None else value
    try:
        mb = float(number) * (scale or 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a size such as 1500M or 2G, not {text!r}") from None
    if not mb > 0 or mb != mb:
        raise argparse.ArgumentTypeError(f"must be a positive size such as 1500M or 2G, not {text!r}")
    return max(1, round(mb))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Lucid DeepDream inside a selection.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    _dream_args(sub)
    c = sub.add_parser("classes", help="list or search the ImageNet classes")
    c.add_argument("query", nargs="?", default="", help="part of a name, e.g. shark")
    ly = sub.add_parser("layers", help="list a model's dreamable layers")
    ly.add_argument("--model", default=nets.DEFAULT_MODEL)
    sub.add_parser("models", help="list the models")
    lk = sub.add_parser("looks", help="show what each layer and channel dreams (a contact sheet) and list targets",
                        description="Draw (once; then from the cache) the look atlas: each layer's classic look "
                                    "and its most characteristic channels, labelled with the ImageNet classes the "
                                    "network sees in them, and list them as targets.")
    lk.add_argument("--model", default=nets.DEFAULT_MODEL)
    lk.add_argument("--weights", metavar="PATH", help="weights file for the model instead of its own")
    lk.add_argument("--layer", action="append", metavar="L",
                    help="layer (block6) or chosen channels (block6:3,17), repeatable; default every layer")
    lk.add_argument("--channels", type=int, default=None, metavar="N",
                    help="channels per layer, the most characteristic first (default 8)")
    lk.add_argument("--search", metavar="WORD", help="only channels labelled with this word (dog, feathers, eye)")
    lk.add_argument("-o", "--output", metavar="SHEET.png", help="write a labelled contact sheet")
    lk.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    sub.add_parser("offer", help="print the presets, ranges, defaults and models a plug-in offers (JSON)")
    worker.add_command(sub)
    server.add_command(sub)
    return parser


def _run_dream(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from . import files, pixels, threads
    from .render import dream

    threads.configure()
    src, dst = Path(args.input), Path(args.output)
    if args.max_pixels < 1:
        raise DreamError(f"--max-pixels must be a positive number of pixels, not {args.max_pixels}.")
    _refuse_overwriting(dst, [(src, "input image"), (args.mask, "mask"), (args.guide, "guide")])
    if args.weights and not Path(args.weights).expanduser().is_file():
        raise DreamError(f"The weights file {args.weights} does not exist: check the path (or leave --weights out "
                         f"to use the model's own).")
    image = files.read_image(src, max_pixels=args.max_pixels)
    if min(image.shape[:2]) < pixels.MIN_SIDE:
        raise DreamError(f"{src} is {image.shape[1]}×{image.shape[0]} pixels, too small to dream: it needs at least "
                         f"{pixels.MIN_SIDE} pixels on each side.")
    mask = files.read_mask(args.mask, max_pixels=args.max_pixels) if args.mask else None
    guide = files.read_image(args.guide, max_pixels=args.max_pixels) if args.guide else None
    if mask is not None and mask.shape != image.shape[:2]:
        raise DreamError(f"{args.mask} is {mask.shape[1]}×{mask.shape[0]} pixels but {src} is "
                         f"{image.shape[1]}×{image.shape[0]}: the mask must have the image's size.")
    files.check_output(dst)  # refuse a path that cannot work before spending minutes dreaming
    seed = args.seed if args.seed is not None else secrets.randbelow(2 ** 31)
    start = time.monotonic()
    bar = tqdm(total=1000, file=sys.stderr, disable=args.quiet, delay=0.5, leave=False, unit="‰",
               bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed}<{remaining}")

    said = {"note": "", "tile": 0}

    def progress(p) -> None:  # a luciddream.methods.Progress
        if p.note and p.note != said["note"]:  # a change of plan (a smaller tile, the CPU): one line, once
            said["note"] = p.note
            tqdm.write(f"{PROG}: {p.note}", file=sys.stderr)
        said["tile"] = p.tile
        bar.set_description_str(p.message.replace(f" ({p.note})", "") if p.note else p.message, refresh=False)
        bar.update(max(0, round(p.fraction * 1000) - bar.n))

    try:
        out = dream(image, mask, args.target, progress=progress, model=args.model, octaves=args.octaves,
                    octave_scale=args.octave_scale, steps=args.steps, step_size=args.step_size, tile=args.tile,
                    max_memory=args.max_memory,
                    seed=seed, device=args.device, feather=args.feather, guide=guide, weights=args.weights,
                    look=args.look, instance=args.instance, class_strength=args.class_strength)
    finally:
        bar.close()
    files.write_image(dst, out)
    if not args.quiet:
        tile = f", tile {said['tile']}" if said["tile"] else ""
        print(f"wrote {dst} ({out.shape[1]}×{out.shape[0]}, seed {seed}{tile}, {time.monotonic() - start:.1f} s)",
              file=sys.stderr)
    return 0


def _refuse_overwriting(dst: Path, sources: Sequence[tuple]) -> None:
    """The output must not be one of the files the dream reads: the input is never overwritten."""
    for path, what in sources:
        if not path:
            continue
        source = Path(path)
        same = dst.resolve() == source.resolve()
        if not same and dst.exists() and source.exists():
            same = os.path.samefile(dst, source)
        if same:
            raise DreamError(f"{dst} is the {what}: write the dream to another file, the {what} is never "
                             f"overwritten.")


def _run_classes(args: argparse.Namespace) -> int:
    found = labels.search_classes(args.query)
    if not found:
        print(f'{PROG}: no class matches "{args.query}"', file=sys.stderr)
        return 1
    for index, name in found:
        print(f"{index:4d}  {name}")
    return 0


def _run_layers(args: argparse.Namespace) -> int:
    from .objectives import layer_channels

    net = nets.load_model(args.model, "cpu")
    for name in net.layer_names():
        mark = "  (default)" if name == net.spec.default_layer else ""
        print(f"{name:8s} {layer_channels(net, name):5d} channels{mark}")
    return 0


def _run_models(args: argparse.Namespace) -> int:
    problems = {name: spec.problem() for name, spec in nets.SPECS.items()}
    # networks kept out by the same problem (torchvision's, where it does not import) get one line for all
    shared = [p for p in dict.fromkeys(problems.values()) if p is not None and list(problems.values()).count(p) > 1]
    for spec in nets.SPECS.values():
        if problems[spec.name] in shared:
            continue
        mark = " (default)" if spec.name == nets.DEFAULT_MODEL else ""
        print(f"{spec.name:6s} {spec.title}{mark}\n       weights: {spec.weights}; {spec.state()}")
    for problem in shared:
        print(f"{', '.join(name for name, p in problems.items() if p == problem)}: not available, {problem}.")
    return 0


def _run_looks(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from tqdm import tqdm

    from . import atlas, files, threads

    threads.configure()
    if args.output:
        files.check_output(args.output)
    bar = tqdm(total=1000, file=sys.stderr, disable=args.quiet, delay=0.5, leave=False, unit="‰",
               bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed}<{remaining}")

    def progress(fraction: float, message: str) -> None:
        bar.set_description_str(message, refresh=False)
        bar.update(max(0, round(fraction * 1000) - bar.n))

    try:
        found = atlas.build(args.model, args.layer, args.channels, progress=progress,
                            note=lambda line: tqdm.write(f"{PROG}: {line}", file=sys.stderr), weights=args.weights)
    except KeyboardInterrupt:
        bar.close()
        print(f"{PROG}: interrupted; the looks finished so far stay cached.", file=sys.stderr)
        return 130
    bar.close()
    if args.search:
        hits = {(c.layer, c.channel) for c in atlas.search(found, args.search)}
        if not hits:
            print(f'{PROG}: no channel of these layers is labelled "{args.search}" (try a class name, or more '
                  f"layers or --channels).", file=sys.stderr)
            return 1
        found.layers = [replace(layer, channels=tuple(c for c in layer.channels if (c.layer, c.channel) in hits))
                        for layer in found.layers if any(c.layer == layer.layer for c in layer.channels
                                                         if (c.layer, c.channel) in hits)]
    for layer in found.layers:
        print(f"{layer.target:22s} classic look of {layer.channels_total} channels")
        for c in layer.channels:
            print(f"{c.target:22s} {c.summary()}")
    if args.output:
        atlas.contact_sheet(found, args.output, title=f"{found.model}: classic look and most characteristic "
                                                      f"channels per layer" + (f', "{args.search}"' if args.search
                                                                               else ""))
        print(f"wrote {args.output}", file=sys.stderr)
    if not args.quiet:
        print(f"{found.drawn} pictures drawn, {found.reused} from the cache ({found.folder}), "
              f"{found.seconds:.1f} s ({found.cpu_seconds:.0f} CPU s)", file=sys.stderr)
    return 0


def _run_offer(args: argparse.Namespace) -> int:
    import json

    from . import jobs

    print(json.dumps(jobs.model_info(cached=False)["offer"], indent=1))  # fills the worker's hello cache too
    return 0


COMMANDS = {"dream": _run_dream, "classes": _run_classes, "layers": _run_layers, "models": _run_models,
            "looks": _run_looks, "offer": _run_offer, "worker": worker.run, "serve": server.run}


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # `kill` or a closed terminal: clean up like Ctrl-C (no temporary file left behind)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "dream" and argv is None:  # the real command line, not a call from Python code or tests
        for name in ("SIGTERM", "SIGHUP"):
            signum = getattr(signal, name, None)
            if signum is not None and signal.getsignal(signum) is signal.SIG_DFL:  # leave nohup's SIG_IGN alone
                signal.signal(signum, _terminated)
    try:
        return COMMANDS[args.command](args)
    except DreamError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as exc:
        if not is_out_of_memory(exc):
            raise
        print(f"{PROG}: error: out of memory ({type(exc).__name__}); nothing was written: use a smaller --tile, "
              f"fewer --octaves, a smaller --mask selection or a smaller image.", file=sys.stderr)
        return 1
    except Cancelled as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `luciddream classes | head`
        sys.stdout = open(os.devnull, "w")
        return 0
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; nothing was written.", file=sys.stderr)
        return 130
