"""The registry: every family's networks in one table, and loading one ready to dream.

Adding a network is one new family module beside the others (its specs in a `SPECS` dict) and one entry in
FAMILIES. Nothing in the families imports this module.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import torch

from ..errors import DreamError
from . import googlenet, lite, torchvision
from .base import DreamNet, ModelSpec

FAMILIES = (lite, googlenet, torchvision)   # the order `luciddream models` lists them in

SPECS: dict[str, ModelSpec] = {name: spec for family in FAMILIES for name, spec in family.SPECS.items()}
DEFAULT_MODEL = "lite0"


def get_spec(name: str) -> ModelSpec:
    """The spec of a network that can run here, else a DreamError saying what to do."""
    spec = SPECS.get(name.strip().lower())
    if spec is None:
        raise DreamError(f'Unknown model "{name}": choose one of {", ".join(SPECS)} (`luciddream models` lists them).')
    problem = spec.problem()
    if problem is not None:
        needs = f"needs {spec.requirement}, but" if spec.requirement else "cannot run here:"
        raise DreamError(f'Model "{spec.name}" {needs} {problem}; or use --model {DEFAULT_MODEL}.')
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
            if fused:  # channels_last: the depthwise-heavy Lite nets run faster in it (docs/performance.md)
                net = net.to(memory_format=torch.channels_last)
            _cache[key] = net
    return net
