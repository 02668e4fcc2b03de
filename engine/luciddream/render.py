"""The way into a dream: validate the inputs, cut out the selection with a context margin, seed, run one of the
methods (methods/) on that region and merge its result back through the mask.

Everything a method gets is already checked and cropped, so methods only dream; everything the caller gets back is
the input's own dtype and layout, untouched outside the mask.
"""
from __future__ import annotations

import dataclasses
import os
import threading
import warnings
from dataclasses import fields
from typing import Optional, Sequence

import numpy as np
import torch

from . import masks, methods, pixels
from .errors import Cancelled, DreamError, is_out_of_memory
from .methods import Extras, ProgressCallback
from .nets import load_model, resolve_device
from .objectives import TargetSpec, guide_features, parse_targets
from .settings import Settings

__all__ = ["Settings", "dream"]


def dream(image: np.ndarray, mask: np.ndarray | None = None, targets: str | Sequence[TargetSpec] | None = None,
          *, progress: Optional[ProgressCallback] = None, cancel: threading.Event | None = None,
          guide: np.ndarray | None = None, weights: str | os.PathLike | None = None, **settings) -> np.ndarray:
    """Dream inside the mask and return a new array of the input's dtype and shape; the input is never modified.

    `targets`: "goldfish", "layer:block6", "goldfish=1, peacock=0.5" or a list of such (None: the classic look).
    `mask`: float in [0, 1] (or uint8 / uint16 / bool), same height and width; None dreams the whole image.
    `progress(Progress)` is called after every step (fraction, octave, step); setting `cancel` raises `Cancelled`
    within a step.
    `guide`: a picture (array like `image`, any size) to dream toward: its features at the layer of the first layer
    target (else the model's classic layer) pull the dream; alone when no targets are given, added to them otherwise.
    `weights`: a weights file for the model instead of its own (GoogLeNet: a copy downloaded by hand).
    Other keywords are the fields of `Settings`.
    """
    unknown = set(settings) - {f.name for f in fields(Settings)}
    if unknown:
        raise DreamError(f"Unknown setting {', '.join(sorted(unknown))}: the settings are "
                         f"{', '.join(f.name for f in fields(Settings))}.")
    cfg = Settings(**settings).check()
    layout = pixels.describe(image)
    mask_values = masks.prepare(mask, layout.height, layout.width)
    guide_rgb = None
    if guide is not None:
        if not isinstance(guide, np.ndarray):
            raise DreamError(f"The guide must be an image array like the input, not {type(guide).__name__}.")
        guide_layout = pixels.describe(guide, min_side=1)  # a guide only lends its features: any size will do
        guide_rgb = pixels.network_rgb(pixels.color_region(
            guide, guide_layout, masks.Box(0, guide_layout.height, 0, guide_layout.width)))
    net = load_model(cfg.model, resolve_device(cfg.device), weights=weights)
    no_targets = targets is None or (isinstance(targets, str) and not targets.strip()) or (
        not isinstance(targets, str) and not targets)
    # A guide alone pulls by itself; otherwise no targets mean the model's classic layer (parse_targets' default).
    parsed = [] if guide_rgb is not None and no_targets else parse_targets(targets, net)
    extras = Extras()
    if guide_rgb is not None:
        layer = next((t.name for t in parsed if t.kind == "layer"), net.spec.default_layer)
        extras = Extras(guide=guide_features(net, guide_rgb, layer))
    if mask_values is not None and cfg.feather > 0:
        mask_values = masks.feather(mask_values, cfg.feather)

    box = masks.grow(masks.selection_box(mask_values, layout.height, layout.width), masks.CONTEXT,
                     layout.height, layout.width)
    rgb = pixels.network_rgb(pixels.color_region(image, layout, box))
    selected = None if mask_values is None else (mask_values[box.slices] > 0).astype(np.float32)
    run = methods.method(methods.choose(parsed, extras, cfg.look))
    seed = np.random.SeedSequence(cfg.seed)  # drawn once when None, so a rerun on the CPU is the same dream
    try:
        result = _seeded_run(run, rgb, selected, net, parsed, cfg, seed, progress, cancel, extras)
    except (MemoryError, RuntimeError) as exc:
        if next(net.parameters()).device.type == "cpu" or not is_out_of_memory(exc):
            raise
        failed_on = next(net.parameters()).device.type
    else:
        failed_on = None
    if failed_on is not None:  # the GPU ran out even at the smallest tile: the same dream on the CPU
        if failed_on == "cuda":
            torch.cuda.empty_cache()
        note = f"out of {failed_on.upper()} memory: dreaming on the CPU instead"
        if progress is not None:
            inner = progress

            def progress(p: methods.Progress) -> None:  # noqa: F811 (the same callback, with the note added)
                inner(dataclasses.replace(p, note=p.note or note))
        else:
            warnings.warn(note, RuntimeWarning, stacklevel=2)
        cpu_net = load_model(cfg.model, "cpu", weights=weights)
        if extras.guide is not None:
            extras = Extras(guide=dataclasses.replace(extras.guide, features=extras.guide.features.cpu()))
        result = _seeded_run(run, rgb, selected, cpu_net, parsed, cfg, seed, progress, cancel, extras)
    if cancel is not None and cancel.is_set():
        raise Cancelled()
    return pixels.merge(image, layout, box, result, mask_values)


def _seeded_run(run: methods.Method, rgb: np.ndarray, selected: Optional[np.ndarray], net, parsed, cfg: Settings,
                seed: np.random.SeedSequence, progress: Optional[ProgressCallback], cancel: threading.Event | None,
                extras: Extras) -> np.ndarray:
    """One run of the method from the dream's seed: torch's generator seeded from the dream's first draw, the rest
    of the draws left to the method (so a rerun, on another device, draws the same numbers)."""
    rng = np.random.default_rng(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(rng.integers(2 ** 31)))
        return run(rgb, selected, net, parsed, cfg, rng, progress, cancel, extras)
