"""The classic DeepDream loop: octaves of gradient ascent on tiled windows, inside the selection.

Used for layer targets, guides and mixes of classes with either. The image is dreamed small first and the detail
carried up (octaves.py); each step the gradient comes from windows of at most one tile, blended with weights that sum
to one and re-cut at random (tiles.py), after a random jitter that moves the network's stride grid.
"""
from __future__ import annotations

import threading
from typing import Optional, Sequence

import numpy as np
import torch

from .. import memory, octaves, tiles, transforms
from ..errors import Cancelled, is_out_of_memory
from ..nets import DreamNet
from ..objectives import Guide, Target, guide_score, needed_layers, score
from ..settings import Settings
from . import Extras, Progress, ProgressCallback, steps_per_octave

JITTER = 32          # the network's total stride: random offsets up to this hide its alignment grid
MIN_OCTAVE_SIDE = 32  # smaller octaves hold too little for the network to see anything


def window_size(tile: int, targets: Sequence[Target], net: DreamNet) -> int:
    """Class logits only mean something on windows near the training size; layer targets can use any tile."""
    if any(t.kind == "class" for t in targets):
        return min(tile, net.spec.input_size)
    return tile


def dream(rgb: np.ndarray, selected: Optional[np.ndarray], net: DreamNet, targets: Sequence[Target],
          settings: Settings, rng: np.random.Generator, progress: Optional[ProgressCallback],
          cancel: Optional[threading.Event], extras: Extras) -> np.ndarray:
    """Dream an (h, w, 3) float RGB region where `selected` is 1 (everywhere when None); returns the dreamed RGB.

    Memory matters for big images, so the loop works in place: the (h, w, 3) array is viewed, not copied, as a
    channels-last tensor, each octave holds one working image besides the original, and the gradient is
    normalised and applied without temporaries.
    """
    device = next(net.parameters()).device
    h, w = rgb.shape[:2]
    budget = memory.device_budget(device, settings.max_memory)
    chosen = memory.choose_tile(settings.tile, h, w, budget, capped=settings.max_memory > 0,
                                hand_written=net.spec.name.startswith("lite"))
    note = ""
    if settings.tile and chosen < settings.tile:
        note = f"tile {chosen} instead of {settings.tile}, to stay within {budget.reason}"
    entry_state = rng.bit_generator.state
    while True:
        try:
            return _dream_at(window_size(chosen, targets, net), note, rgb, selected, net, targets, settings, rng,
                             progress, cancel, extras)
        except _Restart as again:
            chosen, note = again.tile, again.note
            rng.bit_generator.state = entry_state  # a run started at the smaller tile draws the same numbers


class _Restart(Exception):
    """Out of memory after steps whose windows the smaller tile would have cut differently: dream again from the
    start at `tile`, so the picture is the one a run started at that tile makes."""

    def __init__(self, tile: int, note: str) -> None:
        super().__init__(note)
        self.tile, self.note = tile, note


def _free_cached(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
    else:
        memory.release_after_out_of_memory()


def _dream_at(tile: int, note: str, rgb: np.ndarray, selected: Optional[np.ndarray], net: DreamNet,
              targets: Sequence[Target], settings: Settings, rng: np.random.Generator,
              progress: Optional[ProgressCallback], cancel: Optional[threading.Event], extras: Extras) -> np.ndarray:
    """The octaves at one tile. Out of memory in a step retries that step at half the tile (down to
    memory.MIN_TILE) with the random numbers it drew, when every earlier step fitted one window at the smaller
    tile too (so nothing done so far depended on the tile); otherwise the whole dream starts again (_Restart)."""
    device = next(net.parameters()).device
    guide = extras.guide
    base = torch.from_numpy(rgb).permute(2, 0, 1)[None].to(device)
    selected_full = None if selected is None else torch.from_numpy(selected)[None, None].to(device)
    h, w = rgb.shape[:2]
    sizes = octaves.octave_sizes(h, w, settings.octaves, settings.octave_scale, MIN_OCTAVE_SIDE)
    steps = steps_per_octave("tiled", settings)
    total = sum(a * b for a, b in sizes) * steps
    done = 0
    widest = 0  # the longest side any finished step has dreamed at: below the tile, the tile changed nothing
    layers = needed_layers(targets) | ({guide.layer} if guide is not None else set())
    step_size = settings.step_size / 255.0
    detail: torch.Tensor | None = None
    img = base
    for k, size in enumerate(sizes):
        original = octaves.resize(base, size)
        sel = None if selected_full is None else (octaves.resize(selected_full, size) > 1e-3).to(original.dtype)
        values = 3.0 * (size[0] * size[1] if sel is None else float(sel.sum()))  # the values a step may change
        if detail is None:
            img = original.clone()
        else:
            img = octaves.resize(detail, size)
            detail = None
            img.add_(original).clamp_(0.0, 1.0)
        if values > 0:  # else a selection too thin to survive this octave's shrinking: it dreams larger up
            for s in range(steps):
                check_cancel(cancel)
                drawn_from = rng.bit_generator.state
                while True:
                    failed = None
                    try:
                        g = gradient(img, sel, net, targets, layers, tile, tiles.overlap_for(tile), rng, cancel,
                                     guide)
                    except (MemoryError, RuntimeError) as exc:
                        if not is_out_of_memory(exc) or tile <= memory.MIN_TILE:
                            raise
                        failed = type(exc).__name__
                    if failed is None:
                        break
                    _free_cached(device)  # the failed step's tensors went with the exception
                    smaller = max(memory.MIN_TILE, tile // 2)
                    rng.bit_generator.state = drawn_from
                    if widest > smaller:
                        raise _Restart(smaller, f"out of memory at tile {tile}: dreaming again from the start at "
                                                f"tile {smaller}")
                    note = f"out of memory at tile {tile}: continuing at tile {smaller}"
                    tile = smaller
                if sel is not None:
                    g.mul_(sel)
                mean = float(torch.linalg.vector_norm(g, 1)) / values
                img.add_(g, alpha=step_size / (mean + 1e-12)).clamp_(0.0, 1.0)
                del g
                widest = max(widest, *size)
                done += size[0] * size[1]
                if progress is not None:
                    progress(Progress(done / total, k + 1, len(sizes), s + 1, steps, tile, note))
        else:
            done += size[0] * size[1] * steps
        if k + 1 < len(sizes):
            detail = img.sub_(original)
    return img[0].permute(1, 2, 0).cpu().numpy()


def check_cancel(cancel: Optional[threading.Event]) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled()


def gradient(img: torch.Tensor, selected: Optional[torch.Tensor], net: DreamNet, targets: Sequence[Target],
             layers: set[str], tile: int, overlap: int, rng: np.random.Generator,
             cancel: Optional[threading.Event], guide: Optional[Guide] = None) -> torch.Tensor:
    """d score / d image, computed tile by tile and blended with weights that sum to one.

    The image is first jittered (reflect-padded on the sides it moves away from), so the network's stride-32 grid
    lands somewhere new every step, even when one tile covers everything; tiles that touch no selected pixel are
    skipped, so cost follows the selection.
    """
    _, _, h, w = img.shape
    shift = transforms.jitter(h, w, JITTER, rng)
    padded = shift.pad(img)
    selected_padded = None if selected is None else shift.pad(selected, mode="constant")
    grad = torch.zeros_like(padded)
    ref = net.spec.input_size ** 2
    # The jitter margin rides along: an image of exactly one tile stays one tile.
    for t in tiles.layout(padded.shape[2], padded.shape[3], tile + shift.margin, overlap, rng, padded.device):
        if selected_padded is not None and not bool((selected_padded[:, :, t.ys, t.xs] * t.weight).any()):
            continue
        check_cancel(cancel)
        window = padded[:, :, t.ys, t.xs].detach().requires_grad_(True)
        with torch.enable_grad():
            acts = net(window, layers)
            area = window.shape[2] * window.shape[3]
            value = score(acts, targets, area, ref) if targets else None
            if guide is not None:
                pull = guide_score(acts, guide, area, ref)
                value = pull if value is None else value + pull
            (g,) = torch.autograd.grad(value, window)
        grad[:, :, t.ys, t.xs].addcmul_(g, t.weight)
    return shift.crop(grad, h, w)
