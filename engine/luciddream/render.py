"""The dreaming loop: octaves of gradient ascent on tiled windows, inside a mask, with a context margin."""
from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass, fields
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import classdream, masks, octaves, pixels, tiles
from .methods import Progress as Step
from .filters import gaussian_blur
from .errors import Cancelled, DreamError
from .models import DEFAULT_MODEL, LOGITS, DreamNet, load_model, resolve_device
from .objectives import Guide, Target, TargetSpec, guide_features, guide_score, needed_layers, parse_targets, score

Progress = Callable[[Step], None]

JITTER = 32          # the network's total stride: random offsets up to this hide its alignment grid
MIN_OCTAVE_SIDE = 32  # smaller octaves hold too little for the network to see anything


@dataclass(frozen=True)
class ClassRecipe:
    """How class targets mixed with layer targets or a guide are dreamed in the tiled loop (class targets alone go
    to classdream.py, the whole-selection Lucid method).

    Plain logit ascent finds adversarial texture: pixel patterns that fool the network at exactly one position,
    scale and angle. Features that survive small random turns and zooms of every window (transformation
    robustness, as in Lucid) and a gradient stripped of its finest frequencies early on (as in deepdraw's
    decaying blur) should have to be real shapes. Layer targets keep the classic DeepDream loop.

    Measured (benchmarks/class_quality.py, chelsea, goldfish/peacock/jellyfish/daisy/ostrich, Lite2 judge, median
    robust): plain octave ascent 0.39; zoom 0.9–1.1 + ±10° 0.32; plus gradient blur σ 2→0.5 0.29; plus step 4
    0.37 (saturated colours); blur σ 3→1 and step 2.5 0.33. None beat the plain loop in number and picture, so
    every switch is off by default; they stay for the experiments still to do.
    """

    scale: tuple[float, float] = (1.0, 1.0)   # random zoom of each window before the network (Lucid: 0.9–1.1)
    degrees: float = 0.0                      # random rotation, ± (Lucid: 10)
    blur: tuple[float, float] = (0.0, 0.0)    # gradient blur σ in px, from the first step of an octave to the last
    others: float = 0.0                       # weight of the penalty on the other classes' mean logit


CLASS_RECIPE = ClassRecipe()


@dataclass(frozen=True)
class Settings:
    """Everything that shapes a dream besides the image, the mask and the targets."""

    model: str = DEFAULT_MODEL
    octaves: int = 4              # scales to dream at, each `octave_scale` times the previous
    octave_scale: float = 1.4
    steps: int = 10               # gradient steps per octave
    step_size: float = 1.5        # mean change per step, in 8-bit levels (0–255)
    tile: int = 640               # largest window the network sees at once (memory vs. speed)
    seed: Optional[int] = None    # same seed, same machine, same result
    device: str = "auto"          # auto | cpu | cuda | mps
    feather: float = 0.0          # fade the dream in over this many pixels inside the selection's edge

    _RANGES = {
        "octaves": (1, 12), "octave_scale": (1.05, 4.0), "steps": (1, 1000), "step_size": (0.01, 64.0),
        "tile": (64, 4096), "seed": (0, 2 ** 32 - 1), "feather": (0.0, 2000.0),
    }

    def check(self) -> "Settings":
        for name in ("model", "device"):
            if not isinstance(getattr(self, name), str):
                raise DreamError(f"{name} must be a name such as {getattr(Settings, name)!r}, "
                                 f"not {getattr(self, name)!r}.")
        for f in fields(self):
            value = getattr(self, f.name)
            rng = self._RANGES.get(f.name)
            if rng is None or (value is None and f.name == "seed"):
                continue
            if value is None:
                raise DreamError(f"{f.name.replace('_', ' ')} needs a value (default {getattr(Settings, f.name)}).")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                    isinstance(rng[0], int) and not isinstance(value, int)):
                kind = "a whole number" if isinstance(rng[0], int) else "a number"
                raise DreamError(f"{f.name.replace('_', ' ')} must be {kind}, not {value!r}.")
            if not (math.isfinite(value) and rng[0] <= value <= rng[1]):
                raise DreamError(f"{f.name.replace('_', ' ')} must be between {rng[0]} and {rng[1]}; got {value}.")
        return self


def dream(image: np.ndarray, mask: np.ndarray | None = None, targets: str | Sequence[TargetSpec] | None = None,
          *, progress: Progress | None = None, cancel: threading.Event | None = None,
          guide: np.ndarray | None = None, weights: str | os.PathLike | None = None, **settings) -> np.ndarray:
    """Dream inside the mask and return a new array of the input's dtype and shape; the input is never modified.

    `targets`: "goldfish", "layer:block6", "goldfish=1, peacock=0.5" or a list of such (None: the classic look).
    `mask`: float in [0, 1] (or uint8 / uint16 / bool), same height and width; None dreams the whole image.
    `progress(Progress)` is called after every step (fraction, octave, step); setting `cancel` raises `Cancelled` within a step.
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
    m = masks.prepare(mask, layout.height, layout.width)
    guide_rgb = None
    if guide is not None:
        if not isinstance(guide, np.ndarray):
            raise DreamError(f"The guide must be an image array like the input, not {type(guide).__name__}.")
        glayout = pixels.describe(guide, min_side=1)  # a guide only lends its features: any size will do
        guide_rgb = pixels.network_rgb(pixels.color_region(
            guide, glayout, masks.Box(0, glayout.height, 0, glayout.width)))
    net = load_model(cfg.model, resolve_device(cfg.device), weights=weights)
    no_targets = targets is None or (isinstance(targets, str) and not targets.strip()) or (
        not isinstance(targets, str) and not targets)
    goal = [] if guide_rgb is not None and no_targets else parse_targets(targets, net)
    guided = None
    if guide_rgb is not None:
        layer = next((t.name for t in goal if t.kind == "layer"), net.spec.default_layer)
        guided = guide_features(net, guide_rgb, layer)
    if m is not None and cfg.feather > 0:
        m = masks.feather(m, cfg.feather)

    tile = window_size(cfg.tile, goal, net)
    box = masks.grow(masks.selection_box(m, layout.height, layout.width), masks.CONTEXT, layout.height, layout.width)
    rgb = pixels.network_rgb(pixels.color_region(image, layout, box))
    freedom = None if m is None else (m[box.slices] > 0).astype(np.float32)
    rng = np.random.default_rng(cfg.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(rng.integers(2 ** 31)))
        if classdream.applies(goal, guided):
            result = classdream.dream_classes(rgb, freedom, net, goal, cfg.octaves, cfg.steps, cfg.step_size, rng,
                                              progress, cancel)
        else:
            result = dream_rgb(rgb, freedom, net, goal, cfg, tile, rng, progress, cancel, guided)
    if cancel is not None and cancel.is_set():
        raise Cancelled()
    return pixels.merge(image, layout, box, result, m)


def window_size(tile: int, targets: Sequence[Target], net: DreamNet) -> int:
    """Class logits only mean something on windows near the training size; layer targets can use any tile."""
    if any(t.kind == "class" for t in targets):
        return min(tile, net.spec.input_size)
    return tile


def dream_rgb(rgb: np.ndarray, freedom: np.ndarray | None, net: DreamNet, targets: Sequence[Target], cfg: Settings,
              tile: int, rng: np.random.Generator, progress: Progress | None = None,
              cancel: threading.Event | None = None, guide: Guide | None = None) -> np.ndarray:
    """Dream an (h, w, 3) float RGB region where `freedom` is 1 (everywhere when None); returns the dreamed RGB.

    Memory matters for big images, so the loop works in place: the (h, w, 3) array is viewed, not copied, as a
    channels-last tensor, each octave holds one working image besides the original, and the gradient is
    normalised and applied without temporaries.
    """
    device = next(net.parameters()).device
    base = torch.from_numpy(rgb).permute(2, 0, 1)[None].to(device)
    free_full = None if freedom is None else torch.from_numpy(freedom)[None, None].to(device)
    h, w = rgb.shape[:2]
    sizes = octaves.octave_sizes(h, w, cfg.octaves, cfg.octave_scale, MIN_OCTAVE_SIDE)
    total = sum(a * b for a, b in sizes) * cfg.steps
    done = 0
    layers = needed_layers(targets) | ({guide.layer} if guide is not None else set())
    classy = any(t.kind == "class" for t in targets)
    overlap = tiles.overlap_for(tile)
    step = cfg.step_size / 255.0
    detail: torch.Tensor | None = None
    img = base
    for k, size in enumerate(sizes):
        orig = octaves.resize(base, size)
        free = None if free_full is None else (octaves.resize(free_full, size) > 1e-3).to(orig.dtype)
        count = 3.0 * (size[0] * size[1] if free is None else float(free.sum()))
        if detail is None:
            img = orig.clone()
        else:
            img = octaves.resize(detail, size)
            detail = None
            img.add_(orig).clamp_(0.0, 1.0)
        if count > 0:  # else a selection too thin to survive this octave's shrinking: it dreams larger up
            for s in range(cfg.steps):
                _check(cancel)
                g = gradient(img, free, net, targets, layers, tile, overlap, rng, cancel, guide)
                if classy and (CLASS_RECIPE.blur[0] > 0 or CLASS_RECIPE.blur[1] > 0):
                    f = s / max(1, cfg.steps - 1)
                    sigma = CLASS_RECIPE.blur[0] * (1 - f) + CLASS_RECIPE.blur[1] * f
                    if sigma > 0.2:
                        g = gaussian_blur(g, sigma)
                if free is not None:
                    g.mul_(free)
                mean = float(torch.linalg.vector_norm(g, 1)) / count
                img.add_(g, alpha=step / (mean + 1e-12)).clamp_(0.0, 1.0)
                del g
                done += size[0] * size[1]
                if progress is not None:
                    progress(Step(done / total, k + 1, len(sizes), s + 1, cfg.steps))
        else:
            done += size[0] * size[1] * cfg.steps
        if k + 1 < len(sizes):
            detail = img.sub_(orig)
    return img[0].permute(1, 2, 0).cpu().numpy()


def _check(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled()


def gradient(img: torch.Tensor, free: torch.Tensor | None, net: DreamNet, targets: Sequence[Target], layers: set[str],
             tile: int, overlap: int, rng: np.random.Generator, cancel: threading.Event | None,
             guide: Guide | None = None) -> torch.Tensor:
    """d score / d image, computed tile by tile and blended with weights that sum to one.

    The image is first shifted by a random amount (reflect-padded on the sides it moves away from), so the
    network's stride-32 grid lands somewhere new every step, even when one tile covers everything; tiles that
    touch no selected pixel are skipped, so cost follows the selection.
    """
    _, _, h, w = img.shape
    jit = min(JITTER, h - 1, w - 1)
    jy, jx = (int(v) for v in rng.integers(0, jit + 1, size=2)) if jit > 0 else (0, 0)
    pad = (jx, jit - jx, jy, jit - jy)
    padded = F.pad(img, pad, mode="reflect") if jit > 0 else img
    free_p = None if free is None else (F.pad(free, pad) if jit > 0 else free)
    grad = torch.zeros_like(padded)
    ref = net.spec.input_size ** 2
    # The jitter margin rides along: an image of exactly one tile stays one tile.
    for t in tiles.layout(padded.shape[2], padded.shape[3], tile + jit, overlap, rng, padded.device):
        if free_p is not None and not bool((free_p[:, :, t.ys, t.xs] * t.weight).any()):
            continue
        _check(cancel)
        window = padded[:, :, t.ys, t.xs].detach().requires_grad_(True)
        with torch.enable_grad():
            seen = window
            if any(x.kind == "class" for x in targets):
                seen = random_view(window, rng, CLASS_RECIPE)
            acts = net(seen, layers)
            area = window.shape[2] * window.shape[3]
            value = score(acts, targets, area, ref) if targets else None
            if CLASS_RECIPE.others > 0 and LOGITS in acts:
                mass = sum(x.weight for x in targets if x.kind == "class")
                value = value - CLASS_RECIPE.others * mass * acts[LOGITS].mean(dim=1).sum()
            if guide is not None:
                pull = guide_score(acts, guide, area, ref)
                value = pull if value is None else value + pull
            (g,) = torch.autograd.grad(value, window)
        grad[:, :, t.ys, t.xs].addcmul_(g, t.weight)
    return grad[:, :, jy:jy + h, jx:jx + w]


def random_view(window: torch.Tensor, rng: np.random.Generator, recipe: ClassRecipe) -> torch.Tensor:
    """The window turned and zoomed by a small random amount (differentiably, so the gradient flows back to the
    pixels); edges are filled by reflection so no artificial border appears for the network to paint."""
    if recipe.degrees <= 0 and recipe.scale == (1.0, 1.0):
        return window
    angle = math.radians(float(rng.uniform(-recipe.degrees, recipe.degrees)))
    zoom = float(rng.uniform(*recipe.scale))
    c, s_ = math.cos(angle) / zoom, math.sin(angle) / zoom
    theta = torch.tensor([[[c, -s_, 0.0], [s_, c, 0.0]]], dtype=window.dtype, device=window.device)
    grid = F.affine_grid(theta, list(window.shape), align_corners=False)
    return F.grid_sample(window, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


