"""What every network of the zoo shares: the DreamNet interface, the ModelSpec that describes one, and the helpers
the families use to cut a network into layers and to load and fold its weights.

Families (lite.py, googlenet.py, torchvision.py) import this module and nothing of each other; the registry
(zoo.py) imports the families. So this module imports no family and no registry.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Collection, Optional

import torch
from torch import nn

from ..errors import DreamError

LOGITS = "logits"


@dataclass(frozen=True)
class ModelSpec:
    """One network of the zoo. The family that defines it supplies how to build it and how to tell whether it can
    run here, so code that lists or loads models asks the spec and never tests a model's name."""

    name: str
    title: str
    input_size: int               # training resolution: class logits mean most on windows near this size
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    default_layer: str            # the classic DeepDream look for this network
    weights: str                  # where the weights come from, for `luciddream models`
    requirement: str              # the pip package that must import for it ("" when torch suffices)
    build: Callable[..., DreamNet]   # build(fused=True, weights=None): fused is the fast path, False the reference
    # None when the network can run here, else what stops it, as a phrase that completes "Model "x" needs
    # <requirement>, but ..." (e.g. "torchvision does not import here (...): run `...`"); networks kept out by the
    # same problem share one line in `luciddream models`.
    check: Callable[[ModelSpec], str | None]
    # the phrase for `luciddream models`: installed, downloaded to where, or what to do
    describe: Callable[[ModelSpec], str]

    def problem(self) -> str | None:
        return self.check(self)

    def available(self) -> bool:
        return self.problem() is None

    def state(self) -> str:
        """One phrase for `luciddream models`: installed, downloaded, or what to do."""
        return self.describe(self)


NO_DOWNLOADS_ENV = "LUCIDDREAM_NO_DOWNLOADS"  # set by `luciddream serve` unless it runs with --allow-downloads


def refuse_download(model: str) -> None:
    """Where weights would be downloaded: a DreamError instead when this process may not download (a server whose
    client asked for a model it lacks). The sentence names no path: it goes to a remote client."""
    if os.environ.get(NO_DOWNLOADS_ENV):
        raise DreamError(f"The {model} weights are not on this server, and it downloads nothing at a client's "
                         f"request: run `luciddream dream --model {model}` on the server once, or start "
                         f"`luciddream serve` with --allow-downloads.")


def always_available(spec: ModelSpec) -> str | None:
    """The `check` of a network that needs nothing beyond torch."""
    return None


class DreamNet(nn.Module):
    """A classifier cut into named stages; `forward` returns the activations that were asked for.

    It takes RGB in [0, 1] (NCHW), normalises it itself, and runs only as deep as the requested layers need, so a
    dream of an early layer never pays for the rest of the network."""

    spec: ModelSpec

    def layer_names(self) -> list[str]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, layers: Collection[str]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def readout(self, layer: str) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
        """(weight: classes × channels, bias) when the logits are exactly weight @ (the layer's spatial mean) +
        bias, so its channels' classes can be read off the classifier; None where the path is not linear."""
        return None

    def unclamped(self, x: torch.Tensor, layer: str) -> Optional[torch.Tensor]:
        """The layer's activations before a final clamp that stops gradients (ReLU6 at 6), for pictures that
        maximise a channel; None when the layer has none (then the activations themselves are maximised)."""
        return None


def deepest_stage(layers: Collection[str], stages: list[str]) -> tuple[set[str], int]:
    """The requested layers as a set, and the index in `stages` of the deepest: the forward pass stops there."""
    wanted = set(layers)
    unknown = wanted.difference(stages)
    if unknown:
        raise KeyError(f"unknown layers {sorted(unknown)}")
    return wanted, max(stages.index(name) for name in wanted)


def read_state_dict(path: str | os.PathLike, name: str) -> dict:
    """The state dict saved in a weights file the user gave (`name` says which file it should be), with any
    "module." prefix (nn.DataParallel) removed; a DreamError naming the file when it is missing or not weights."""
    p = Path(path)
    if not p.is_file():
        raise DreamError(f"The weights file {p} does not exist: give the path of {name}.")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DreamError(f"The weights file {p} cannot be read as PyTorch weights ({type(exc).__name__}): "
                         f"download {name} again.") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise DreamError(f"The weights file {p} holds no state dict: use {name}.")
    return {str(k).removeprefix("module."): v for k, v in state.items()}


def load_matching(body: nn.Module, state: dict, path: str | os.PathLike, what: str) -> None:
    """Load `state` into `body` when every entry fits, else a DreamError that says how far off the file is."""
    own = body.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    extra = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or extra or wrong:
        example = (missing or extra or wrong)[0]
        raise DreamError(f"The weights file {path} is not {what} ({len(missing)} missing, {len(extra)} unexpected, "
                         f"{len(wrong)} misshapen entries, e.g. {example}).")
    body.load_state_dict(state, strict=False)


def fold_batch_norm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold an eval-mode batch norm into the convolution before it (one op instead of two, forward and backward).
    The caller replaces the batch norm by an Identity."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = bn.bias - bn.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    conv.weight = nn.Parameter(conv.weight * scale.view(-1, 1, 1, 1))
    conv.bias = nn.Parameter(bias)
