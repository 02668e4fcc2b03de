"""What to dream: targets parsed from short strings and the score whose gradient paints them.

Grammar (items separated by commas, semicolons or newlines; a weight `=W` may end any item):
    goldfish                 a bare word is an ImageNet class name
    class:peacock, class:84  a class by name or index (its pre-softmax logit)
    layer:block6             a layer (mean of squared activations: the classic DeepDream)
    layer:block6:3,17        chosen channels of a layer
    goldfish=1, peacock=0.5  a weighted mix (the hybrids of the lucid-dreams seed)
Numbers right after a channel list continue it, so `layer:block6:3,17=0.5` is one target with weight 0.5.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable, Sequence, Union

import numpy as np
import torch

from . import labels
from .errors import DreamError
from .nets import LOGITS, DreamNet

_CHANNEL = re.compile(r"^\d+$")


@dataclass(frozen=True)
class Target:
    kind: str                       # "layer" or "class"
    name: str                       # layer name, or the class's short name
    index: int = -1                 # class index (class targets only)
    channels: tuple[int, ...] = ()  # empty: all channels (layer targets only)
    weight: float = 1.0

    @property
    def layer(self) -> str:
        return LOGITS if self.kind == "class" else self.name

    def __str__(self) -> str:
        if self.kind == "class":
            text = f"class:{self.index}"
        else:
            text = f"layer:{self.name}" + (":" + ",".join(map(str, self.channels)) if self.channels else "")
        return text if self.weight == 1.0 else f"{text}={self.weight:g}"

    @property
    def label(self) -> str:
        """Short name for layer names in a host ("goldfish", "block6 ch 3,17")."""
        if self.kind == "class":
            return self.name
        return self.name + (" ch " + ",".join(map(str, self.channels)) if self.channels else "")


TargetSpec = Union[str, Target]


def _split(text: str) -> list[str]:
    return [t.strip() for t in re.split(r"[,;\n]", text) if t.strip()]


def _weight(token: str) -> tuple[str, float | None]:
    if "=" not in token:
        return token, None
    body, _, text = token.rpartition("=")
    try:
        w = float(text)
    except ValueError:
        raise DreamError(f'Target "{token}": the weight after "=" must be a number, e.g. goldfish=0.5.') from None
    if not math.isfinite(w):
        raise DreamError(f'Target "{token}": the weight must be a finite number.')
    return body.strip(), w


def parse_targets(specs: str | Sequence[TargetSpec] | None, net: DreamNet) -> list[Target]:
    """Targets checked against the network: unknown classes and layers raise a DreamError that says what exists."""
    if specs is None or (isinstance(specs, str) and not specs.strip()) or (not isinstance(specs, str) and not specs):
        return [Target("layer", net.spec.default_layer)]
    items: Iterable[TargetSpec] = [specs] if isinstance(specs, str) else specs
    tokens: list[str | Target] = []
    for item in items:
        if isinstance(item, Target):
            tokens.append(item)
        elif isinstance(item, str):
            tokens.extend(_split(item))
        else:
            raise DreamError(f"A target must be a string such as \"goldfish\" or \"layer:block6\", not {item!r}.")

    targets: list[Target] = []
    open_channels = False  # the previous token was a layer target with a channel list
    for token in tokens:
        if isinstance(token, Target):
            targets.append(_check(token, net))
            open_channels = False
            continue
        body, weight = _weight(token)
        if open_channels and _CHANNEL.match(body):
            prev = targets[-1]
            targets[-1] = _check(Target("layer", prev.name, channels=prev.channels + (int(body),),
                                        weight=prev.weight if weight is None else weight), net)
            continue
        w = 1.0 if weight is None else weight
        kind, _, rest = body.partition(":")
        kind = kind.strip().lower()
        open_channels = False
        if ":" not in body:
            index = labels.find_class(body)
            targets.append(Target("class", labels.class_names()[index], index=index, weight=w))
        elif kind == "layer" and rest.strip():
            name, _, chans = rest.partition(":")
            channels: tuple[int, ...] = ()
            if chans.strip():
                if not all(_CHANNEL.match(c.strip()) for c in chans.split(",")):
                    raise DreamError(f'Target "{token}": channels must be numbers, e.g. layer:block6:3,17.')
                channels = tuple(int(c) for c in chans.split(","))
            targets.append(_check(Target("layer", name.strip(), channels=channels, weight=w), net))
            open_channels = bool(channels)
        elif kind == "class" and rest.strip():
            index = labels.find_class(rest)
            targets.append(Target("class", labels.class_names()[index], index=index, weight=w))
        elif kind in ("layer", "class"):
            raise DreamError(f'Target "{token}" names no {kind}: write e.g. class:goldfish or layer:block6.')
        else:
            raise DreamError(f'Target "{token}": write class:NAME, layer:NAME or a bare class name.')
    if not any(t.weight != 0 for t in targets):
        raise DreamError("Every target has weight 0, so there is nothing to dream: give one a non-zero weight.")
    return targets


def _check(target: Target, net: DreamNet) -> Target:
    names = net.layer_names()
    if target.name not in names:
        raise DreamError(f'Unknown layer "{target.name}" for {net.spec.name}: choose one of {", ".join(names)}.')
    if target.channels:
        count = layer_channels(net, target.name)
        bad = [c for c in target.channels if c >= count]
        if bad:
            raise DreamError(f"Layer {target.name} of {net.spec.name} has channels 0 to {count - 1}; "
                             f"{', '.join(map(str, bad))} do not exist.")
    return target


_channel_counts: dict[tuple[str, str], int] = {}


def layer_channels(net: DreamNet, layer: str) -> int:
    key = (net.spec.name, layer)
    if key not in _channel_counts:
        param = next(net.parameters())
        with torch.no_grad():
            acts = net(torch.zeros(1, 3, 64, 64, device=param.device, dtype=param.dtype), [layer])
        _channel_counts[key] = int(acts[layer].shape[1])
    return _channel_counts[key]


def needed_layers(targets: Sequence[Target]) -> set[str]:
    return {t.layer for t in targets}


def score(acts: dict[str, torch.Tensor], targets: Sequence[Target], pixels: int, ref_pixels: int) -> torch.Tensor:
    """The quantity to maximise on one window of `pixels` pixels (summed over a batch).

    Layer terms are means of squared activations scaled by window area over the training window's area: a window
    half the size contributes half, so the gradient per pixel does not depend on how the image was cut into tiles,
    and a layer term still reads like a mean on a training-size window next to class logits.
    """
    total = None
    for t in targets:
        if t.weight == 0:
            continue
        a = acts[t.layer]
        if t.kind == "class":
            term = a[:, t.index].sum()
        else:
            if t.channels:
                a = a[:, list(t.channels)]
            term = a.pow(2).mean(dim=(1, 2, 3)).sum() * (pixels / ref_pixels)
        total = t.weight * term if total is None else total + t.weight * term
    assert total is not None
    return total


@dataclass(frozen=True, eq=False)
class Guide:
    """Features of a guide picture at one layer: (C, N), one column per position of the guide's feature map."""

    layer: str
    features: torch.Tensor


GUIDE_SIDE = 448  # the guide is seen at most this large: enough positions to match, few enough to stay cheap


def guide_features(net: DreamNet, rgb: np.ndarray, layer: str) -> Guide:
    """The guide's activations at `layer`, computed once per dream (the guide never changes).

    The guide is scaled so its longer side is at most GUIDE_SIDE (and at least the network's training size, so a
    small guide still has several positions to offer).
    """
    import torch.nn.functional as F

    param = next(net.parameters())
    x = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)[None]
    h, w = x.shape[-2:]
    side = min(max(h, w, net.spec.input_size), GUIDE_SIDE)
    scale = side / max(h, w)
    size = (max(32, round(h * scale)), max(32, round(w * scale)))
    x = F.interpolate(x, size=size, mode="bilinear", antialias=scale < 1, align_corners=False).clamp(0, 1)
    with torch.no_grad():
        a = net(x.to(device=param.device, dtype=param.dtype), [layer])[layer]
    return Guide(layer, a[0].flatten(1).contiguous())


def guide_score(acts: dict[str, torch.Tensor], guide: Guide, pixels: int, ref_pixels: int) -> torch.Tensor:
    """Google's guided DeepDream: every position of the dream is pulled toward the guide feature it already matches
    best (the maximum dot product), so the dream grows the guide's motifs out of what is already there instead of
    copying the guide. Scaled like a layer term (per channel, by window area) so it mixes with other targets."""
    a = acts[guide.layer]
    x = a.flatten(2)                                             # (B, C, M)
    dots = torch.einsum("bcm,cn->bmn", x, guide.features.to(x.dtype))
    best = dots.max(dim=2).values                                # (B, M)
    return best.mean(dim=1).sum() / a.shape[1] * (pixels / ref_pixels)
