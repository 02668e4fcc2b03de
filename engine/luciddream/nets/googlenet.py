"""GoogLeNet (Inception v1), the network the original DeepDream dreamed with, and its downloadable weights.

The modules carry torchvision's names (`conv1.conv.weight`, `inception4c.branch2.1.bn.running_var`, `fc.bias`, …)
so torchvision's published ImageNet file loads as it is; torchvision itself is not needed (its wheels do not import
against every torch build). Like torchvision's copy, branch3 uses a 3×3 convolution where the paper has 5×5: the
weights were trained that way. The auxiliary classifiers only help training, so they are left out and their
entries in the file are skipped.

The weights (≈50 MB) are fetched on first use into the user's cache, checked against their SHA-256 and written
atomically (temporary file, then rename), so a broken download is never mistaken for the real file. Nothing is
downloaded at import time. `--weights PATH` (API: `weights=`) uses a file fetched by hand instead.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Collection

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DreamError
from .base import (DreamNet, ModelSpec, always_available, deepest_stage, fold_batch_norm, load_matching,
                   read_state_dict, refuse_download)

# torchvision's file: its name carries the first 8 hex digits of the SHA-256 below. The full digest is the one a
# public project records for this very file (torchvision GoogLeNet_Weights.IMAGENET1K_V1); it agrees with that prefix.
WEIGHTS_URL = "https://download.pytorch.org/models/googlenet-1378be20.pth"
WEIGHTS_SHA256 = "1378be20a8e875cf1568b8a71654e704449655e34711a959a38b04fb34905cef"
URL_ENV = "LUCIDDREAM_GOOGLENET_URL"        # a mirror (and the tests' local server)
SHA_ENV = "LUCIDDREAM_GOOGLENET_SHA256"     # the digest that mirror's file must have
TIMEOUT_S = 60.0

STAGES = ["conv1", "conv2", "conv3", "inception3a", "inception3b", "inception4a", "inception4b", "inception4c",
          "inception4d", "inception4e", "inception5a", "inception5b", "logits"]


class BasicConv2d(nn.Module):
    """Convolution without bias, batch norm (eps 0.001, as the TensorFlow original), ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class Inception(nn.Module):
    """Four parallel branches (1×1; 1×1→3×3; 1×1→3×3; 3×3 max pool→1×1) concatenated along channels."""

    def __init__(self, cin: int, c1: int, c3red: int, c3: int, c5red: int, c5: int, pool: int) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(cin, c1, 1)
        self.branch2 = nn.Sequential(BasicConv2d(cin, c3red, 1), BasicConv2d(c3red, c3, 3, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(cin, c5red, 1), BasicConv2d(c5red, c5, 3, padding=1))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True), BasicConv2d(cin, pool, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class GoogLeNetBody(nn.Module):
    """The classifier itself, with torchvision's module names; expects pixels scaled to [-1, 1]."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = BasicConv2d(3, 64, 7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, 1)
        self.conv3 = BasicConv2d(64, 192, 3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32)
        self.inception3b = Inception(256, 128, 128, 192, 32, 96, 64)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64)
        self.inception4b = Inception(512, 160, 112, 224, 24, 64, 64)
        self.inception4c = Inception(512, 128, 128, 256, 24, 64, 64)
        self.inception4d = Inception(512, 112, 144, 288, 32, 64, 64)
        self.inception4e = Inception(528, 256, 160, 320, 32, 128, 128)
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.inception5a = Inception(832, 256, 160, 320, 32, 128, 128)
        self.inception5b = Inception(832, 384, 192, 384, 48, 128, 128)
        self.fc = nn.Linear(1024, num_classes)

    # the pool that runs before each stage (None: the stage follows its predecessor directly)
    _POOL_BEFORE = {"conv2": "maxpool1", "inception3a": "maxpool2", "inception4a": "maxpool3",
                    "inception5a": "maxpool4"}


def fuse(body: GoogLeNetBody) -> GoogLeNetBody:
    """Fold every batch norm into its convolution: one op instead of two, forward and backward."""
    with torch.no_grad():
        for module in body.modules():
            if isinstance(module, BasicConv2d) and isinstance(module.bn, nn.BatchNorm2d):
                fold_batch_norm(module.conv, module.bn)
                module.bn = nn.Identity()
    return body


def run(body: GoogLeNetBody, x: torch.Tensor, layers: Collection[str]) -> dict[str, torch.Tensor]:
    """Activations of `layers` for x already scaled to [-1, 1]; stops after the deepest one asked for."""
    wanted, deepest = deepest_stage(layers, STAGES)
    out: dict[str, torch.Tensor] = {}
    for name in STAGES[:deepest + 1]:
        if name == "logits":
            out[name] = body.fc(x.mean(dim=(2, 3)))
            break
        pool = GoogLeNetBody._POOL_BEFORE.get(name)
        if pool is not None:
            x = getattr(body, pool)(x)
        x = getattr(body, name)(x)
        if name in wanted:
            out[name] = x
    return out


# ---------------------------------------------------------------------------------------------------------------
# Weights: cache, download, check, load.

def cache_dir() -> Path:
    """Where downloaded weights live: $XDG_CACHE_HOME/luciddream, else ~/.cache/luciddream."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "luciddream"


def expected() -> tuple[str, str]:
    """(url, sha256) of the weights file, from the environment where a mirror (or a test) overrides them."""
    return os.environ.get(URL_ENV) or WEIGHTS_URL, (os.environ.get(SHA_ENV) or WEIGHTS_SHA256).strip().lower()


def cached_path(sha256: str | None = None) -> Path:
    """The cache file for weights with this digest: named by its prefix, like torchvision's, so another digest
    (a mirror, a newer file) never reuses a file it does not match."""
    digest = sha256 or expected()[1]
    return cache_dir() / f"googlenet-{digest[:8]}.pth"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _by_hand(url: str, dest: Path) -> str:
    return (f"download {url} by hand and pass it with --weights PATH (Python: weights=PATH), or save it as {dest}")


def download(url: str, sha256: str, dest: Path, timeout: float = TIMEOUT_S) -> Path:
    """Fetch `url` into `dest` only if its SHA-256 is `sha256`; a broken or wrong file is deleted, never cached.

    The bytes go to a temporary file beside `dest` while they are hashed, and are renamed onto `dest` only after
    the length and the digest are right, so no reader ever sees a half-written or corrupt weights file.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=timeout) as response:
                length = response.headers.get("Content-Length")
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    f.write(chunk)
                    h.update(chunk)
                    size += len(chunk)
        except http.client.IncompleteRead as exc:
            raise DreamError(f"The download of {url} stopped after {size + len(exc.partial)} bytes, so it was not "
                             f"kept; try again, or {_by_hand(url, dest)}.") from exc
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise DreamError(f"The GoogLeNet weights could not be downloaded from {url} ({reason}); "
                             f"{_by_hand(url, dest)}.") from exc
        if length is not None and length.isdigit() and int(length) != size:
            raise DreamError(f"The download of {url} stopped after {size} of {length} bytes, so it was not kept; "
                             f"try again, or {_by_hand(url, dest)}.")
        if h.hexdigest() != sha256:
            raise DreamError(f"The file downloaded from {url} is damaged or not the expected one (SHA-256 "
                             f"{h.hexdigest()[:12]}… instead of {sha256[:12]}…), so it was not kept; try again, "
                             f"or {_by_hand(url, dest)}.")
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest


def weights_file(url: str | None = None, sha256: str | None = None) -> Path:
    """The checked weights file, downloading it on first use; a cached file that no longer matches is fetched again."""
    env_url, env_sha = expected()
    url, sha256 = url or env_url, (sha256 or env_sha).lower()
    dest = cached_path(sha256)
    if dest.exists() and file_sha256(dest) == sha256:
        return dest
    refuse_download("googlenet")
    return download(url, sha256, dest)


def load_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict in `path`, without the auxiliary heads; a DreamError if it is not GoogLeNet's."""
    state = read_state_dict(path, "googlenet-1378be20.pth")
    return {k: v for k, v in state.items() if k.split(".")[0] not in ("aux1", "aux2")}


def build_body(weights: str | os.PathLike | None = None, fused: bool = True) -> GoogLeNetBody:
    """GoogLeNet with its ImageNet weights: from `weights` when given, else from the cache (downloaded once)."""
    path = Path(weights) if weights is not None else weights_file()
    state = load_state(path)
    body = GoogLeNetBody()
    own = body.state_dict()
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked") or k in own}
    load_matching(body, state, path, "torchvision's GoogLeNet")
    body.eval()
    return fuse(body) if fused else body


class GoogLeNet(DreamNet):
    """GoogLeNet as a DreamNet: RGB in [0, 1] in, torchvision's `transform_input` scaling, named stages out.

    torchvision's pretrained GoogLeNet (ported from TensorFlow) undoes the ImageNet mean/std normalisation and
    feeds (x - 0.5) / 0.5 to the network; starting from [0, 1] pixels that is the whole preprocessing.
    """

    def __init__(self, body: GoogLeNetBody, spec: ModelSpec) -> None:
        super().__init__()
        self.body = body
        self.spec = spec
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1))

    def layer_names(self) -> list[str]:
        return STAGES[:-1]

    def forward(self, x: torch.Tensor, layers: Collection[str]) -> dict[str, torch.Tensor]:
        return run(self.body, (x - self.mean) / self.std, layers)


def build(fused: bool = True, weights: str | os.PathLike | None = None) -> GoogLeNet:
    """The `googlenet` entry of the model zoo."""
    return GoogLeNet(build_body(weights, fused), SPECS["googlenet"])


def _describe(spec: ModelSpec) -> str:
    path = cached_path()
    return f"downloaded to {path}" if path.exists() else f"not downloaded yet (it will go to {path})"


# torchvision's pretrained GoogLeNet feeds (x - 0.5) / 0.5 to the network (its transform_input).
SPECS: dict[str, ModelSpec] = {"googlenet": ModelSpec(
    "googlenet", "GoogLeNet / Inception v1 (ImageNet-1k, 6.6M parameters), the classic DeepDream network", 224,
    (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "inception4c",
    "torchvision's googlenet-1378be20.pth, downloaded on first use (about 50 MB, SHA-256 checked) or given with "
    "--weights PATH", "", build, check=always_available, describe=_describe)}
