"""Class targets alone, the `grow` look: several instances of the class grown out of the photo, at full resolution.

Why this way (measurements in docs/quality.md): one view of the whole selection rewards one object that fills it,
so here the network sees many windows of one instance's size, each with one class to find, centred on anchors
placed where the photo already looks most like the class (the dreaming network's evidence on instance-sized
windows), about one instance apart. For one class, each window raises its logit plus a steered value on the
features the classifier reads (the class's direction, weighted by a power of the cosine at each position): the
logit alone is raised most cheaply by the class's colour and texture everywhere, the steered value only by
positions that look wholly like the class, so its parts take shape (a fish's head and body instead of an orange
glow); the logit beside it keeps the whole animal together where the steered value alone left a blob. For a hybrid
the classes take turns at the anchors, so each gets places of its own, and each class's windows change only its
own region, so the classes never blend into one blob. The change stays inside a soft disc around each anchor: there
the class replaces the photo as far as `class_strength` allows, and between the discs the photo is untouched, so it
stays readable. The class forms at the scale where one instance is the network's input size; octaves then carry
the change up to the image's own resolution (or down, for instances smaller than the input), adding detail at each
scale, so a large selection is as sharp as the photo around it. The instance size is the user's, or by default
`auto_instance`: larger on large selections, so their instances fill them instead of dotting them.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .. import masks, param
from ..errors import Cancelled
from ..filters import gaussian_blur, wide_blur
from ..param import COLOR_CORRELATION
from ..nets import LOGITS, DreamNet
from ..objectives import Target
from ..octaves import resize
from ..settings import Settings
from ..transforms import square_view
from . import Extras, Progress, ProgressCallback, steps_per_octave
from .lucid import dreamers



@dataclass(frozen=True)
class Recipe:
    """The numbers of the grow look (measured in benchmarks/class_quality.py; see docs/quality.md)."""

    coverage: float = 1.5            # windows per step ≈ this × instances (at least 3)...
    max_windows: int = 12            # ...but at most this many (cost follows the selection up to here)
    batch: int = 4                   # windows through the network at once
    zoom: tuple = (0.7, 1.5)         # a window spans the instance size × 1/zoom (log-uniform)
    degrees: float = 15.0            # windows turn ± this
    spread: float = 0.25             # window centres ~ N(anchor, spread × instance)
    fade: float = 0.12               # the change fades in over this fraction of an instance inside the edge
    ensemble: bool = True            # Lite1 dreams with Lite0 when installed (as in the object look)
    steer: float = 3.0               # one class: each window's class steered on the classifier's features,
                                     # cosine to this power (`steered`); 0: the class's logit alone
    steer_weight: float = 300.0      # ...added to the logit × this (the steered value is ~0.05 where the logit is
                                     # ~7, so the two pull about equally)
    soften: float = 0.03             # under an instance, the first octave starts from the photo blurred by σ = this
                                     # × instance, so its fine detail does not pin the new shapes
    # The first octave: the change as a 1/f spectrum in decorrelated colour, optimised by Adam (as the object look)
    learning_rate: float = 0.05
    amplitude: float = 4.4           # RMS (logit units) of a unit-variance spectrum
    decay: float = 1.5               # the spectrum falls as 1/f^decay: large shapes first
    coarse: float = 2.0              # the first cut-off, in cycles across one instance...
    ramp: float = 0.7                # ...rising to full resolution over this share of the steps
    # Later octaves (instances larger than the input): detail added by normalised gradient steps on the pixels
    step_first: float = 6.0 / 255    # mean change per step at an octave's first step (on 0–1)...
    step_last: float = 2.0 / 255     # ...and at its last (deepdraw: 11 → 3 on 0–255)
    sigma_first: float = 1.0         # blur σ of the change (pixels at the octave's scale), first step...
    sigma_last: float = 0.3          # ...and last: the change is blurred, never the photo
    grad_sigma_first: float = 1.5    # blur σ of the gradient (in the network's pixels), first step...
    grad_sigma_last: float = 0.3     # ...and last
    keep_low: float = 8.0            # the change's content below σ = instance / keep_low...
    keep: float = 0.5                # ...loses this share × (1 − strength) each step: the photo's layout stays
    # Where instances go and what they may cover
    density: float = 1.0             # instances ≈ this × selection area / instance² (at least one per class)...
    max_instances: int = 8           # ...but at most this many, so each gets enough views (the photo between them)
    apart: float = 0.9               # anchors at least this × instance apart
    tie: float = 0.01                # log-probabilities within this of the best place are taken as equal
    disc: float = 0.55               # the change stays inside soft discs of this × instance radius
    split: float = 0.05              # hybrids: where two classes' discs meet, each pixel belongs to the nearer
                                     # anchor's class, the border soft over this × instance


RECIPE = Recipe()


def decay(first: float, last: float, t: float) -> float:
    """From `first` at t = 0 to `last` at t = 1, geometrically."""
    return first * (last / first) ** t


def octave_scales(instance: float, input_size: int, octave_scale: float) -> list[float]:
    """Scales (work size / image size) from where one instance is the network's input size up to the image's own
    resolution; a single scale when the instance is no larger than the input (the class forms there and the change
    is then resized down to the image, losing nothing)."""
    first = input_size / instance
    if first >= 1.0:
        return [first]
    # (an excess of under 1 % of a step is rounding, e.g. of an auto instance, not a reason for another octave)
    count = max(1, math.ceil(math.log(1.0 / first) / math.log(octave_scale) - 0.01)) + 1
    return [first * (1.0 / first) ** (i / (count - 1)) for i in range(count)]


def auto_instance(area: float, input_size: int, octave_scale: float) -> int:
    """The instance size `instance` 0 asks for, in image pixels: the largest of input × octave_scale^k (k ≥ 0)
    at which the selection of `area` pixels still holds `max_instances` instances. A fixed size left a large
    selection with a sprinkle of small instances (at most `max_instances`, most of it bare); growing them keeps
    their number and fills the selection. Whole octave steps give the octaves whole steps too, none spent on a
    slight change of scale. (By eye on a 1393 px selection: 439 px, eight fish, beat 224 px's eight small blobs and
    560–700 px's two to four fish.)"""
    recipe = RECIPE
    instance = float(input_size)
    while recipe.density * area / (instance * octave_scale) ** 2 >= recipe.max_instances:
        instance *= octave_scale
    return int(round(instance))


def evidence_anchors(base: torch.Tensor, sel: torch.Tensor, instance: float, nets: list, slots: list,
                     count: int) -> np.ndarray:
    """(n, 3) rows of y, x, class slot where the photo already looks most like each class: the dreaming network's
    log-probability of the class on instance-sized windows a third of an instance apart, peaks taken greedily at
    least `apart` × instance from each other, the classes taking turns (deepdraw's chosen centres, chosen by the
    photo); where the evidence is flat, the place nearest the selection's middle."""
    recipe = RECIPE
    ys, xs = torch.nonzero(sel[0, 0] > 0.5, as_tuple=True)
    if len(ys) == 0:
        return np.zeros((0, 3))
    y0, y1, x0, x1 = float(ys.min()), float(ys.max()) + 1, float(xs.min()), float(xs.max()) + 1
    # Centres far enough inside that most of an instance lies in the selection.
    my, mx = min(0.35 * instance, (y1 - y0) / 2), min(0.35 * instance, (x1 - x0) / 2)
    step = instance / 3
    gy = np.arange(y0 + my, y1 - my + 1e-6, step) if y1 - y0 > 2 * my else np.array([(y0 + y1) / 2])
    gx = np.arange(x0 + mx, x1 - mx + 1e-6, step) if x1 - x0 > 2 * mx else np.array([(x0 + x1) / 2])
    h, w = sel.shape[-2:]

    def inside(y: float, x: float) -> bool:
        return bool(sel[0, 0, min(int(y), h - 1), min(int(x), w - 1)] > 0.5)

    centres = [(y, x) for y in gy for x in gx if inside(y, x)]
    # Where one instance is placed, the selection's middle is a candidate too: the grid starts at its top-left
    # corner, so all its points can lie a third of an instance off the middle. (With several to place, a middle
    # anchor could leave no room for the others.)
    middle = (float(ys.float().mean()), float(xs.float().mean()))
    if (max(len(slots), count) == 1 and inside(*middle)) or not centres:
        centres.append(middle)
    net = nets[0]
    side = net.spec.input_size
    scores = []
    with torch.no_grad():
        for first in range(0, len(centres), 16):
            views = [square_view(base, y, x, instance / 2, 0.0, side) for y, x in centres[first:first + 16]]
            scores.append(net(torch.cat(views), [LOGITS])[LOGITS].log_softmax(dim=1)[:, [i for i, _ in slots]])
    score = torch.cat(scores).cpu().numpy()  # (candidates, slots)
    where = np.array(centres)
    taken: list[tuple[float, float, int]] = []
    free = np.ones(len(centres), bool)
    for k in range(max(len(slots), count)):
        slot = k % len(slots)
        if not free.any():
            if k >= len(slots):
                break
            # A selection too small for every class at full spacing: the next class goes farthest from the others.
            far = np.min([np.hypot(*(where - (y, x)).T) for y, x, _ in taken], axis=0)
            free = far >= far.max() - 1e-6
        # Evidence within `tie` of the best is no evidence (a flat sky or wall scores the same everywhere, up to
        # rounding): among those the candidate nearest the selection's middle wins, not the grid's first corner.
        chosen = np.where(free, score[:, slot], -np.inf)
        level = chosen >= chosen.max() - recipe.tie
        best = int(np.argmin(np.where(level, np.hypot(*(where - middle).T), np.inf)))
        taken.append((where[best, 0], where[best, 1], slot))
        free &= np.hypot(*(where - where[best]).T) >= recipe.apart * instance
    return np.array(taken, dtype=float)


def nearest_anchor(shape: tuple, points: np.ndarray, device) -> torch.Tensor:
    """(h, w): each pixel's distance to the nearest of the anchors (rows y, x, ...)."""
    h, w = shape
    yy = torch.arange(h, device=device, dtype=torch.float32)[:, None]
    xx = torch.arange(w, device=device, dtype=torch.float32)[None, :]
    nearest = torch.full((h, w), float("inf"), device=device)
    for y, x, _ in points:
        nearest = torch.minimum(nearest, torch.sqrt((yy - float(y)) ** 2 + (xx - float(x)) ** 2))
    return nearest


def disc_falloff(distance: torch.Tensor, radius: float) -> torch.Tensor:
    """1 within `radius`, falling smoothly to 0 over its outer 40 %."""
    t = ((1.0 - distance / radius) / 0.4).clamp(0, 1)
    return t * t * (3 - 2 * t)


def discs(shape: tuple, points: np.ndarray, radius: float, device) -> torch.Tensor:
    """(1, 1, h, w): 1 within `radius` of any anchor, falling smoothly to 0 over the outer 40 % of it."""
    return disc_falloff(nearest_anchor(shape, points, device), radius)[None, None]


def class_regions(shape: tuple, points: np.ndarray, classes: int, radius: float, soft: float,
                  device) -> torch.Tensor:
    """(classes, 1, h, w): where each class of a hybrid may change the picture: its own discs, less where another
    class's anchor is nearer (a soft border of `soft` pixels), so two classes never share pixels and blend."""
    nearest = [nearest_anchor(shape, points[points[:, 2] == c], device) for c in range(classes)]
    regions = []
    for c in range(classes):
        others = torch.stack(nearest[:c] + nearest[c + 1:]).amin(0)
        border = torch.sigmoid((others - nearest[c]) / max(soft, 1e-6))
        regions.append(disc_falloff(nearest[c], radius) * border)
    return torch.stack(regions)[:, None]


@dataclass
class Octave:
    """One scale of the dream: the photo and the soft selection there, the anchors and the windows a step."""

    base: torch.Tensor      # (1, 3, h, w) photo at this scale
    sel: torch.Tensor       # (1, 1, h, w) selection, faded in at its edge
    area: float             # selected pixels
    instance: float         # one instance's side at this scale, in pixels
    points: np.ndarray      # anchors (y, x, class slot)
    count: int              # windows a step
    against: tuple = ()     # (index, weight < 0): classes every window pushes down, beside its own class
    regions: Optional[torch.Tensor] = None  # hybrids: (classes, 1, h, w) where each class's windows may change


def steered(features: torch.Tensor, direction: torch.Tensor, power: float) -> torch.Tensor:
    """How strongly and how purely the (channels, h, w) features at each position point along the class's
    classifier direction: mean over positions of relu(w·h) · max(0.1, cos(h, w))^power. Raising the logit (the
    positions' mean of w·h) is met most cheaply by texture that nudges many channels a little everywhere; the
    cosine power rewards only positions whose whole feature vector is the class's, which draws the class's own
    parts (a fish's head, eye and body) instead of its colour and texture."""
    dot = torch.einsum("c,chw->hw", direction, features)
    cos = dot / (features.norm(dim=0) * direction.norm() + 1e-6)
    return (F.relu(dot) * cos.clamp(min=0.1) ** power).mean()


def class_value(x: torch.Tensor, octave: Octave, nets: list, slots: list, balance: bool,
                rng: np.random.Generator) -> torch.Tensor:
    """Σ over this step's windows of each window's own class: its logit plus `steer_weight` × its steered value
    (`steered`) on the features the classifier reads, when the network has such a layer; else its logit alone.
    Hybrids raise each window's log-probability instead, so the gradient goes to whichever class is behind (steered,
    both hybrids of the gallery lost one class); their classes take turns over the windows, and a window changes
    only its own class's region (`class_regions`), so neither class falls behind by chance or paints over the other.
    Windows are instance-sized squares around random anchors, zoomed and turned."""
    recipe = RECIPE
    picks = rng.integers(0, len(octave.points), size=octave.count)
    if octave.regions is not None:
        first_class = int(rng.integers(len(octave.regions)))
        picks = np.array([rng.choice(np.flatnonzero(octave.points[:, 2] == (first_class + k) % len(octave.regions)))
                          for k in range(octave.count)])
    side = max(net.spec.input_size for net in nets)
    # A hybrid's windows see the whole picture, but the gradient of each reaches only its own class's region.
    sources = [x] if octave.regions is None else \
        [x.detach() + (x - x.detach()) * region[None] for region in octave.regions]
    # Steered only for one class to grow: lowering a steered value stops at zero (its ReLU), so a class to keep
    # away (a negative weight) is pushed down through its logit.
    steer = recipe.steer > 0 and not balance and all(weight > 0 for _, weight in slots)
    value = x.new_zeros(())
    for first in range(0, octave.count, recipe.batch):
        group = picks[first:first + recipe.batch]
        views = []
        for p in group:
            cy, cx = octave.points[p, :2] + rng.normal(0, recipe.spread * octave.instance, size=2)
            zoom = math.exp(rng.uniform(math.log(recipe.zoom[0]), math.log(recipe.zoom[1])))
            angle = math.radians(rng.uniform(-recipe.degrees, recipe.degrees))
            source = sources[0] if octave.regions is None else sources[int(octave.points[p, 2])]
            views.append(square_view(source, float(cy), float(cx), octave.instance / (2 * zoom), angle, side))
        batch = torch.cat(views)
        for net in nets:
            s = net.spec.input_size
            seen = batch if s == side else F.interpolate(batch, size=(s, s), mode="bilinear", antialias=True,
                                                         align_corners=False)
            layer = net.layer_names()[-1] if steer else None
            readout = net.readout(layer) if layer is not None else None
            if readout is not None:
                features = net(seen, [layer])[layer]
                classifier, bias = readout
                logits = features.mean(dim=(2, 3)) @ classifier.T + bias
                for row, p in enumerate(group):
                    index, weight = slots[int(octave.points[p, 2])]
                    pull = steered(features[row], classifier[index], recipe.steer)
                    value = value + weight * (logits[row, index] + recipe.steer_weight * pull)
                continue
            logits = net(seen, [LOGITS])[LOGITS]
            if balance:
                logits = logits.log_softmax(dim=1)
            for row, p in enumerate(group):
                index, weight = slots[int(octave.points[p, 2])]
                value = value + weight * logits[row, index]
                for other, other_weight in octave.against:
                    value = value + other_weight * logits[row, other]
    return value


def form(octave: Octave, strength: float, steps: int, nets: list, slots: list, balance: bool,
         rng: np.random.Generator, tick) -> torch.Tensor:
    """The first octave: the class forms as a 1/f spectrum in decorrelated colour (large shapes first, no speckle),
    added in logit space to the photo and mixed in by `strength`; returns the change."""
    recipe = RECIPE
    generator = torch.Generator().manual_seed(int(rng.integers(2 ** 31)))
    spectrum = param.spectrum(tuple(octave.base.shape[-2:]), recipe.decay, generator, device=octave.base.device)
    opt = torch.optim.Adam([spectrum.coefficients], lr=recipe.learning_rate)
    soft = octave.base if recipe.soften <= 0 else gaussian_blur(octave.base, recipe.soften * octave.instance)
    soft = octave.base + (soft - octave.base) * octave.sel
    start = torch.logit(soft.clamp(0.02, 0.98))
    first_cut = recipe.coarse / octave.instance

    def change(step: int) -> torch.Tensor:
        cut = first_cut * (0.5 / first_cut) ** min(1.0, step / max(1.0, recipe.ramp * steps))
        picture = spectrum.picture(spectrum.lowpass(cut)) * recipe.amplitude
        return strength * (torch.sigmoid(start + picture) - octave.base) * octave.sel

    for step in range(steps):
        tick(step)
        value = class_value(octave.base + change(step), octave, nets, slots, balance, rng)
        opt.zero_grad(set_to_none=True)
        (-value).backward()
        opt.step()
    with torch.no_grad():
        return change(steps)


def refine(octave: Octave, change: torch.Tensor, strength: float, steps: int, nets: list, slots: list,
           balance: bool, rng: np.random.Generator, tick) -> torch.Tensor:
    """A later octave: detail added by normalised gradient steps on the change (blurred, colour-decorrelated),
    its lowest frequencies pulled back toward the photo and its size bounded by `strength`."""
    recipe = RECIPE
    color = COLOR_CORRELATION.to(change)
    low_sigma = octave.instance / recipe.keep_low
    # A window shows the network a whole instance, so one of its pixels spans this many of the octave's. The
    # gradient is blurred in its pixels: finer, it carries the network's own pixel pattern, which piled up into a
    # regular mesh at 1:1; the change itself is blurred in the octave's pixels (in the network's, the fish went soft).
    pixel = max(1.0, octave.instance / max(n.spec.input_size for n in nets))
    pull = recipe.keep * (1 - strength)
    for step in range(steps):
        tick(step)
        t = step / max(1, steps - 1)
        change = change.detach().requires_grad_(True)
        value = class_value((octave.base + change * octave.sel).clamp(0, 1), octave, nets, slots, balance, rng)
        (grad,) = torch.autograd.grad(value, change)
        with torch.no_grad():
            grad = gaussian_blur(grad * octave.sel, pixel * decay(recipe.grad_sigma_first, recipe.grad_sigma_last, t))
            grad = torch.einsum("ij,jk,bkhw->bihw", color, color.T, grad * octave.sel)
            mean = float(grad.abs().sum()) / (3 * octave.area)
            change = change.detach() + grad * (decay(recipe.step_first, recipe.step_last, t) / (mean + 1e-12))
            change = gaussian_blur(change, decay(recipe.sigma_first, recipe.sigma_last, t))
            if pull > 0:  # (a wide blur of a large picture: only when strength leaves any of the layout to keep)
                change = change - pull * wide_blur(change, low_sigma)
            change = change.clamp(-strength, strength)
            change = ((octave.base + change).clamp(0, 1) - octave.base) * octave.sel
    return change.detach()


def dream(rgb: np.ndarray, selected: Optional[np.ndarray], net: DreamNet, targets: Sequence[Target],
          settings: Settings, rng: np.random.Generator, progress: Optional[ProgressCallback],
          cancel: Optional[threading.Event], extras: Extras) -> np.ndarray:
    """Grow the class targets out of the (h, w, 3) float RGB region where `selected` > 0 (everywhere when None);
    returns the region's new RGB (the photo itself outside the selection; the photo unchanged at strength 0)."""
    recipe = RECIPE
    strength = settings.class_strength
    if strength <= 0:
        return rgb
    device = next(net.parameters()).device
    nets = dreamers(net) if recipe.ensemble else [net]
    h, w = rgb.shape[:2]
    photo = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)[None].to(device)
    inside = torch.ones(1, 1, h, w, device=device) if selected is None else \
        torch.from_numpy((selected > 0).astype(np.float32))[None, None].to(device)
    classes = [(t.index, t.weight) for t in targets if t.kind == "class" and t.weight != 0]
    # Windows are shared out among the classes to grow; a negative weight is a class to keep away, in every
    # window (with no positive class at all, the slots themselves push down).
    slots = [c for c in classes if c[1] > 0] or classes
    against = tuple(c for c in classes if c[1] < 0) if any(w > 0 for _, w in classes) else ()
    balance = len(classes) > 1
    steps = steps_per_octave("grow", settings)
    instance_size = settings.instance or auto_instance(float(inside.sum()), net.spec.input_size,
                                                       settings.octave_scale)
    scales = octave_scales(float(instance_size), net.spec.input_size, settings.octave_scale)
    sizes = [(max(16, round(h * k)), max(16, round(w * k))) for k in scales]
    total = sum(a * b for a, b in sizes) * steps
    done = 0
    change: Optional[torch.Tensor] = None
    placed: Optional[np.ndarray] = None  # evidence anchors in image pixels, found at the first scale
    for number, (k, size) in enumerate(zip(scales, sizes)):
        base = resize(photo, size).clamp(0, 1)
        sel = (resize(inside, size) > 0.5).to(base.dtype)
        radius = recipe.fade * instance_size * k
        if radius >= 1:
            sel = masks.inward_ramp(sel, radius) * sel
        area = float(sel.sum())
        if area == 0:  # a selection too thin for this scale: it grows at the larger ones
            done += size[0] * size[1] * steps
            continue
        instance = instance_size * k
        if placed is None:  # anchors are chosen once, at the scale where the class forms
            wanted = min(recipe.max_instances, max(1, round(recipe.density * area / instance ** 2)))
            placed = evidence_anchors(base, sel, instance, nets, slots, wanted)
            placed[:, :2] /= k
        points = placed.copy()
        points[:, :2] *= k
        count = int(min(recipe.max_windows, max(3, math.ceil(recipe.coverage * len(points)))))
        sel = sel * discs(size, points, recipe.disc * instance, device)
        area = float(sel.sum())
        regions = class_regions(size, points, len(slots), recipe.disc * instance, recipe.split * instance, device) \
            if len(slots) > 1 else None
        octave = Octave(base, sel, area, instance, points, count, against, regions)

        def finished(step: int, number: int = number, size: tuple = size) -> None:
            """Step `step` (1-based) of this octave is done: report it."""
            nonlocal done
            done += size[0] * size[1]
            if progress is not None:
                progress(Progress(done / total, number + 1, len(scales), step, steps))

        def tick(step: int, finished=finished) -> None:
            """Called before each step (0-based): stop on cancel, report the step before."""
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            if step > 0:
                finished(step)

        if change is None:
            change = form(octave, strength, steps, nets, slots, balance, rng, tick)
        else:
            change = refine(octave, resize(change, size) * sel, strength, steps, nets, slots, balance, rng, tick)
        finished(steps)
    if change is None:
        return rgb
    with torch.no_grad():
        full = change if change.shape[-2:] == (h, w) else resize(change, (h, w))
        out = (photo + full * inside).clamp(0, 1)
    return out[0].permute(1, 2, 0).cpu().numpy()
