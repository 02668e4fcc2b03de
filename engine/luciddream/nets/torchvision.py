"""torchvision's ImageNet classifiers as dreamers: inception_v3, vgg16, vgg19 and resnet50.

They are offered only where `import torchvision` succeeds. That is not the same as "installed": torchvision's
wheels carry compiled operators built against one torch build, and against another (say PyPI's CUDA-linked
torchvision beside a CPU torch) the import itself fails. The check imports it once per process and keeps the
answer, with the reason and the command that fixes it, for `luciddream models` and for the one-sentence error of
`--model vgg16`.

The networks are torchvision's own modules, weights included: `torchvision.models.vgg16(weights=DEFAULT)` downloads
its file into torch's hub cache on first use (`~/.cache/torch/hub/checkpoints`, or under $TORCH_HOME) and checks the
hash in its name. `TorchvisionNet` runs their children in torchvision's order and stops after the deepest layer a
target needs; it needs only the child names, so it works on any module laid out like torchvision's.

Layers: vgg16/vgg19 `conv1_1` … `conv5_3`/`conv5_4` (the ReLU output of each convolution, the names of the original
Caffe VGG; the pool before a block runs at the start of its first layer); resnet50 `stem` (conv1, bn1, relu, maxpool),
`layer1` … `layer4`; inception_v3 torchvision's children `Conv2d_1a_3x3` … `Mixed_7c`. All of them also give `logits`.
"""
from __future__ import annotations

import functools
import os
import re
import threading
import warnings
from pathlib import Path
from types import ModuleType
from typing import Collection
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DreamError
from .base import (LOGITS, DreamNet, ModelSpec, deepest_stage, fold_batch_norm, load_matching, read_state_dict,
                   refuse_download)

FLATTEN = "<flatten>"    # a step of a plan that is torch.flatten(x, 1), not a child module

# ---------------------------------------------------------------------------------------------------------------
# Does torchvision import here?

_lock = threading.Lock()
_checked = False
_module: ModuleType | None = None
_problem: str | None = None


def _fix() -> str:
    """The pip command that installs the torchvision built for this torch (same version pairing, same index)."""
    version, _, local = torch.__version__.partition("+")
    parts = version.split(".")
    if len(parts) >= 2 and parts[0] == "2" and parts[1].isdigit():
        req = f"torchvision==0.{int(parts[1]) + 15}.*"   # torch 2.N pairs with torchvision 0.(N+15)
    else:
        req = "torchvision"
    if re.fullmatch(r"cpu|cu\d+|rocm[\d.]+|xpu", local):
        # a build from PyTorch's own index: PyPI's torchvision is built for PyPI's torch, not for this one
        return f"pip install {req} --index-url https://download.pytorch.org/whl/{local}"
    return f"pip install {req}"


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "no message"
    return f"{type(exc).__name__}: {text[:117] + '...' if len(text) > 120 else text}"


def check() -> str | None:
    """None when torchvision imports and is new enough; else one phrase: what is wrong and how to fix it."""
    global _checked, _module, _problem
    with _lock:
        if _checked:
            return _problem
        import importlib.util

        module = None
        if importlib.util.find_spec("torchvision") is None:
            problem = (f"torchvision is not installed: run `{_fix()}` in the engine's environment (the build "
                       f"for torch {torch.__version__})")
        else:
            try:
                with warnings.catch_warnings():  # e.g. its image-decoding extension: not needed here
                    warnings.simplefilter("ignore")
                    # absolute: the real top-level package, not this module of the same name
                    import torchvision as module  # noqa: F811
                problem = None
                if not hasattr(module.models, "get_model_weights"):
                    problem = (f"torchvision {getattr(module, '__version__', '?')} is too old (0.14 or newer is "
                               f"needed): run `{_fix()}` in the engine's environment")
                    module = None
            except Exception as exc:  # RuntimeError for a build mismatch, ImportError/OSError for missing libraries
                module = None
                problem = (f"torchvision does not import here ({_reason(exc)}), usually because it was built for "
                           f"another build of torch than this {torch.__version__}: run `{_fix()}` in the engine's "
                           f"environment")
        _module, _problem, _checked = module, problem, True
        return problem


def forget() -> None:
    """Check again next time (after installing torchvision in a running process; tests)."""
    global _checked, _module, _problem
    with _lock:
        _checked, _module, _problem = False, None, None


def require(name: str) -> ModuleType:
    """The torchvision module; the zoo checks first (with a better sentence), so this is a last guard."""
    problem = check()
    if problem is not None or _module is None:
        raise DreamError(f'Model "{name}" needs torchvision, but {problem}.')
    return _module


# ---------------------------------------------------------------------------------------------------------------
# Weights: where torchvision keeps them, and errors a person can act on.

def weights_url(tv: ModuleType, name: str) -> str:
    return tv.models.get_model_weights(name).DEFAULT.url


def hub_file(url: str) -> Path:
    """Where torch.hub (and so torchvision) keeps a downloaded file: <torch hub dir>/checkpoints/<file name>."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def _describe(spec: ModelSpec) -> str:
    """The phrase for `luciddream models`: downloaded, where it will go, or why it cannot be used."""
    problem = check()
    if problem is not None or _module is None:
        return f"not available: {problem}"
    path = hub_file(weights_url(_module, spec.name))
    return f"downloaded to {path}" if path.exists() else f"not downloaded yet (it will go to {path})"


_ARCH = {"inception_v3": {"init_weights": False}, "vgg16": {}, "vgg19": {}, "resnet50": {}}


def _pretrained(tv: ModuleType, name: str) -> nn.Module:
    """torchvision's network with its default ImageNet weights, downloaded by torchvision on first use."""
    url = weights_url(tv, name)
    path = hub_file(url)
    had = path.exists()
    by_hand = (f"download {url} by hand and place it at {path}, or pass it with --weights PATH (Python: "
               f"weights=PATH)")
    if not had:
        refuse_download(name)
    try:
        return getattr(tv.models, name)(weights="DEFAULT")
    except Exception as exc:
        if had:
            raise DreamError(f"The cached {name} weights {path} cannot be loaded ({type(exc).__name__}): delete "
                             f"the file so that it is downloaded again, or {by_hand}.") from exc
        if isinstance(exc, RuntimeError) and "hash" in str(exc).lower():
            raise DreamError(f"The file downloaded from {url} is damaged or not the expected one (its SHA-256 does "
                             f"not match), so it was not kept; try again, or {by_hand}.") from exc
        reason = getattr(exc, "reason", None) or _reason(exc)
        raise DreamError(f"The {name} weights could not be downloaded from {url} to {path} ({reason}); connect "
                         f"to the internet and try again, or {by_hand}.") from exc


def _from_file(tv: ModuleType, name: str, weights: str | os.PathLike) -> nn.Module:
    """torchvision's architecture with the weights in a file (a state dict, e.g. the file fetched by hand)."""
    sd = read_state_dict(weights, f"torchvision's {name} file")
    kwargs = dict(_ARCH[name])
    if name == "inception_v3":
        kwargs["aux_logits"] = any(k.startswith("AuxLogits.") for k in sd)
    body = getattr(tv.models, name)(weights=None, **kwargs)
    load_matching(body, sd, weights, f"torchvision's {name}")
    return body


# ---------------------------------------------------------------------------------------------------------------
# Plans: which children run for each named layer, in torchvision's order.

Plan = list[tuple[str, tuple[str, ...]]]


def vgg_plan(body: nn.Module) -> Plan:
    """conv{block}_{n} = the ReLU after the n-th convolution of a block; a max pool opens the next block."""
    plan: Plan = []
    steps: list[str] = []
    block, conv = 1, 0
    for index, module in body.features.named_children():
        steps.append(f"features.{index}")
        if isinstance(module, nn.Conv2d):
            conv += 1
        elif isinstance(module, nn.ReLU):
            plan.append((f"conv{block}_{conv}", tuple(steps)))
            steps = []
        elif isinstance(module, nn.MaxPool2d):
            block, conv = block + 1, 0
    plan.append((LOGITS, tuple(steps) + ("avgpool", FLATTEN, "classifier")))
    return plan


def resnet_plan(body: nn.Module) -> Plan:
    return [("stem", ("conv1", "bn1", "relu", "maxpool")), ("layer1", ("layer1",)), ("layer2", ("layer2",)),
            ("layer3", ("layer3",)), ("layer4", ("layer4",)), (LOGITS, ("avgpool", FLATTEN, "fc"))]


def inception_plan(body: nn.Module) -> Plan:
    """torchvision's Inception3 children, each pool joined to the layer after it; AuxLogits only helps training."""
    plan: Plan = []
    steps: list[str] = []
    for child, _ in body.named_children():
        if child in ("AuxLogits", "avgpool", "dropout", "fc"):
            continue
        steps.append(child)
        if not child.startswith("maxpool"):
            plan.append((child, tuple(steps)))
            steps = []
    plan.append((LOGITS, tuple(steps) + ("avgpool", "dropout", FLATTEN, "fc")))
    return plan


PLANS = {"vgg16": vgg_plan, "vgg19": vgg_plan, "resnet50": resnet_plan, "inception_v3": inception_plan}
MIN_SIDE = {"inception_v3": 75, "vgg16": 32, "vgg19": 32, "resnet50": 1}  # smallest input each network accepts


def fuse(body: nn.Module) -> nn.Module:
    """Fold every eval-mode batch norm into the convolution that feeds it (conv/bn, convN/bnN, or consecutive
    entries of a Sequential, as in torchvision's ResNet and Inception), leaving an Identity in its place."""
    with torch.no_grad():
        for owner in list(body.modules()):
            kids = dict(owner.named_children())
            for cname, conv in kids.items():
                if not isinstance(conv, nn.Conv2d):
                    continue
                if isinstance(owner, nn.Sequential) and cname.isdigit():
                    bname = str(int(cname) + 1)
                else:
                    bname = "bn" + cname[4:] if cname.startswith("conv") else ""
                bn = kids.get(bname)
                if isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats and bn.running_var is not None:
                    fold_batch_norm(conv, bn)
                    setattr(owner, bname, nn.Identity())
    return body


class TorchvisionNet(DreamNet):
    """A torchvision classifier as a DreamNet: RGB in [0, 1], the spec's normalisation, named layers out.

    `plan` lists each layer with the child modules (dotted paths) that run to produce it from the layer before;
    the forward pass stops after the deepest layer asked for. Inputs smaller than `min_side` (small octaves, thin
    tiles) are padded by repeating their edge pixels up to it, so every layer still has at least one pixel.
    """

    def __init__(self, body: nn.Module, plan: Plan, spec: ModelSpec, min_side: int = 1) -> None:
        super().__init__()
        self.body = body
        self.spec = spec
        self.plan = plan
        self.min_side = min_side
        self._order = [name for name, _ in plan]
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1))

    def layer_names(self) -> list[str]:
        return [name for name in self._order if name != LOGITS]

    def forward(self, x: torch.Tensor, layers: Collection[str]) -> dict[str, torch.Tensor]:
        wanted, deepest = deepest_stage(layers, self._order)
        h, w = x.shape[-2:]
        if min(h, w) < self.min_side:
            dh, dw = max(0, self.min_side - h), max(0, self.min_side - w)
            x = F.pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2), mode="replicate")
        x = (x - self.mean) / self.std
        out: dict[str, torch.Tensor] = {}
        for name, steps in self.plan[:deepest + 1]:
            for step in steps:
                x = torch.flatten(x, 1) if step == FLATTEN else self.body.get_submodule(step)(x)
            if name in wanted:
                out[name] = x
        return out


def wrap(name: str, body: nn.Module, spec: ModelSpec, fused: bool = True) -> TorchvisionNet:
    """Any module laid out like torchvision's `name` (same child names) as a DreamNet; eval mode, BN folded when
    `fused`."""
    body.eval()
    if getattr(body, "AuxLogits", None) is not None:
        body.AuxLogits = None  # the auxiliary head only helps training; 3M parameters less to hold
    if fused:
        fuse(body)
    return TorchvisionNet(body, PLANS[name](body), spec, MIN_SIDE[name])


def build(name: str, fused: bool = True, weights: str | os.PathLike | None = None) -> TorchvisionNet:
    """The zoo entry `name`: torchvision's network with its ImageNet weights (downloaded once) or `weights`."""
    tv = require(name)
    body = _pretrained(tv, name) if weights is None else _from_file(tv, name, weights)
    return wrap(name, body, SPECS[name], fused)


def _check(spec: ModelSpec) -> str | None:
    return check()


def _spec(name: str, title: str, input_size: int, mean: tuple[float, float, float], std: tuple[float, float, float],
          default_layer: str, size: str) -> ModelSpec:
    return ModelSpec(name, title, input_size, mean, std, default_layer,
                     f"torchvision's default ImageNet file ({size}), downloaded by torchvision on first use into "
                     f"torch's hub cache, or given with --weights PATH", "torchvision",
                     functools.partial(build, name), check=_check, describe=_describe)


_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SPECS: dict[str, ModelSpec] = {spec.name: spec for spec in (
    # torchvision's pretrained Inception v3 (ported from TensorFlow) sees (x - 0.5) / 0.5, as GoogLeNet does.
    _spec("inception_v3", "Inception v3 (ImageNet-1k, 27M parameters), torchvision", 299, (0.5, 0.5, 0.5),
          (0.5, 0.5, 0.5), "Mixed_6c", "about 104 MB"),
    _spec("vgg16", "VGG-16 (ImageNet-1k, 138M parameters), torchvision", 224, _IMAGENET_MEAN, _IMAGENET_STD,
          "conv4_3", "about 528 MB"),
    _spec("vgg19", "VGG-19 (ImageNet-1k, 144M parameters), torchvision", 224, _IMAGENET_MEAN, _IMAGENET_STD,
          "conv4_4", "about 548 MB"),
    _spec("resnet50", "ResNet-50 (ImageNet-1k, 26M parameters), torchvision", 224, _IMAGENET_MEAN, _IMAGENET_STD,
          "layer3", "about 98 MB"),
)}
