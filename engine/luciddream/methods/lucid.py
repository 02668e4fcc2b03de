"""Class targets alone: the whole selection is dreamed as one picture of the class, Lucid-style.

Logit ascent on tiles finds adversarial texture and, on windows smaller than the selection, many copies of the
class's motifs. So here the network sees the whole selection each step, under random zooms, turns and shifts
(transforms.RandomView), and the change is a smooth picture (param.Spectrum) whose frequencies are let in from coarse
to fine, added to a softened copy of the photo and faded in inside the selection's edge. Lite0 dreams together with
Lite1 when it is installed. The optimiser takes octaves × steps Adam steps (steps per octave, default 30: the
frequencies rise over the octaves) at a rate proportional to the step size. Why each number is what it is:
docs/quality.md.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .. import masks, param
from ..errors import Cancelled
from ..filters import gaussian_blur
from ..nets import LOGITS, DreamNet, get_spec, load_model
from ..objectives import Target
from ..octaves import resize
from ..settings import Settings
from ..transforms import RandomView
from . import Extras, Progress, ProgressCallback, steps_per_octave


@dataclass(frozen=True)
class Recipe:
    """The numbers of the class method (measured in benchmarks/class_quality.py; see docs/quality.md)."""

    learning_rate: float = 0.05      # Adam, at the default step size 1.5 (scales with it)
    amplitude: float = 4.4           # size of the change: RMS (in logit units) of a unit-variance spectrum
    decay: float = 1.5               # spectrum falls as 1/f^decay: steeper than 1/f favours large shapes
    coarse: float = 4.0              # the first cut-off, in cycles across the selection's longer side
    ramp: float = 0.7                # fraction of the steps over which the cut-off rises to full resolution
    views: int = 2                   # random views of the whole selection per step
    view: RandomView = RandomView(zoom=(0.7, 1.5), degrees=10.0, shift=0.05)  # zoom > 1 zooms in
    feather: float = 0.08            # the dream fades in over this fraction of the selection's side
    soften: float = 0.03             # blur σ (fraction of the side) of the photo the dream starts from
    work_side: int = 320             # the selection's longer side while optimising (≈ 1.4 × 224)
    companions: dict = field(default_factory=lambda: {"lite0": ("lite1",)})  # ensemble partners, if installed
    eps: float = 0.02                # the photo is clipped to [eps, 1 − eps] before the logit
    balance_hybrids: bool = True     # several classes: raise their log-probabilities instead of their logits


RECIPE = Recipe()


def dreamers(net: DreamNet, recipe: Recipe = RECIPE) -> list[DreamNet]:
    """The network and its installed ensemble partners, on the same device."""
    device = next(net.parameters()).device
    nets = [net]
    for name in recipe.companions.get(net.spec.name, ()):
        try:
            if get_spec(name).available():
                nets.append(load_model(name, device))
        except Exception:  # a missing or damaged partner only means dreaming alone
            continue
    return nets


def dream(rgb: np.ndarray, selected: Optional[np.ndarray], net: DreamNet, targets: Sequence[Target],
          settings: Settings, rng: np.random.Generator, progress: Optional[ProgressCallback],
          cancel: Optional[threading.Event], extras: Extras) -> np.ndarray:
    """Dream the class targets into the (h, w, 3) float RGB region where `selected` > 0 (everywhere when None);
    returns the region's new RGB (the photo itself outside the selection)."""
    recipe = RECIPE
    device = next(net.parameters()).device
    nets = dreamers(net, recipe)
    photo = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)[None].to(device)
    h, w = rgb.shape[:2]
    inside = torch.ones(1, 1, h, w, device=device) if selected is None else \
        torch.from_numpy((selected > 0).astype(np.float32))[None, None].to(device)
    box = masks.selection_box(selected, h, w)
    side = max(box.height, box.width)

    # Working size: the selection's longer side about work_side (never enlarged).
    k = min(1.0, recipe.work_side / side)
    size = (max(8, round(h * k)), max(8, round(w * k)))
    sy, sx = size[0] / h, size[1] / w
    work_side = side * k

    def logit_start(p: torch.Tensor, softened: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
        """The photo softened where `soft` is 1, in logit space (where the change is added)."""
        s = p * (1 - soft) + softened * soft
        return torch.logit(s.clamp(recipe.eps, 1 - recipe.eps))

    # Blurs are done at the working size only (a full-size blur of a big selection would cost more than the dream).
    photo_small = resize(photo, size).clamp(0, 1)
    inside_small = (resize(inside, size) > 0.5).to(photo.dtype)
    fade = recipe.feather * work_side
    fade_small = inside_small if fade < 1 else masks.inward_ramp(inside_small, fade) * inside_small
    blurred_small = gaussian_blur(photo_small, max(0.5, recipe.soften * work_side))
    start_small = logit_start(photo_small, blurred_small, fade_small)

    generator = torch.Generator().manual_seed(int(rng.integers(2 ** 31)))
    spectrum = param.spectrum(size, recipe.decay, generator, device=device)
    total = max(1, settings.octaves * (steps_per_octave("lucid", settings)))
    opt = torch.optim.Adam([spectrum.coefficients], lr=recipe.learning_rate * settings.step_size / 1.5)

    def change(step: int) -> torch.Tensor:
        """The change in logit space at the working size, frequencies above this step's cut-off held back."""
        first_cut = recipe.coarse / work_side
        frac = min(1.0, step / max(1.0, recipe.ramp * total))
        cut = first_cut * (0.5 / first_cut) ** frac
        return spectrum.picture(spectrum.lowpass(cut)) * recipe.amplitude

    cy, cx = (box.y0 + box.y1) / 2 * sy, (box.x0 + box.x1) / 2 * sx
    view_size = max(n.spec.input_size for n in nets)
    classes = [(t.index, t.weight) for t in targets if t.kind == "class" and t.weight != 0]
    balance = recipe.balance_hybrids and len(classes) > 1
    per_octave = max(1, total // max(1, settings.octaves))
    for step in range(total):
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        x = photo_small * (1 - fade_small) + torch.sigmoid(start_small + change(step)) * fade_small
        batch = torch.cat([recipe.view(x, cy, cx, work_side, view_size, rng) for _ in range(recipe.views)])
        value = x.new_zeros(())
        for n in nets:
            s = n.spec.input_size
            seen = batch if s == view_size else F.interpolate(batch, size=(s, s), mode="bilinear",
                                                              antialias=True, align_corners=False)
            logits = n(seen, [LOGITS])[LOGITS]
            if balance:  # log-probabilities: the gradient goes to whichever class is behind
                logits = logits.log_softmax(dim=1)
            for index, weight in classes:
                value = value + weight * logits[:, index].mean()
        opt.zero_grad(set_to_none=True)
        (-value).backward()
        opt.step()
        if progress is not None:
            progress(Progress((step + 1) / total, min(settings.octaves, step // per_octave + 1), settings.octaves,
                              step % per_octave + 1, per_octave))

    with torch.no_grad():
        t = resize(change(total), (h, w))
        fade_full = resize(fade_small, (h, w)).clamp(0, 1) * inside
        start = logit_start(photo.clamp(0, 1), resize(blurred_small, (h, w)), fade_full)
        out = photo * (1 - fade_full) + torch.sigmoid(start + t) * fade_full
    return out[0].permute(1, 2, 0).cpu().numpy()
