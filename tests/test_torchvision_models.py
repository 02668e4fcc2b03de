"""torchvision's inception_v3, vgg16, vgg19 and resnet50: offered only where `import torchvision` succeeds.

On the development machine torchvision's wheel does not import (its compiled operators are linked against CUDA
torch, the engine has a CPU torch: "RuntimeError: operator torchvision::nms does not exist"). The tests put a
`torchvision` package that fails in exactly that way first on the path, and check what a user sees.

The wrapper (`TorchvisionNet`, the layer plans, batch-norm folding) needs only torchvision's child names, so it is
tested on small networks built from torch.nn with the same layout. The download path is tested with a stand-in
torchvision whose builder loads its weights as torchvision's does, through torch.hub (the real download code,
cache and hash check), from a local HTTP server on 127.0.0.1; nothing reaches the internet.
"""
from __future__ import annotations

import hashlib
import http.server
import io
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from luciddream.nets import torchvision as tvmodels
from luciddream.nets import zoo
from luciddream.cli import main
from luciddream.errors import DreamError
from luciddream.nets import LOGITS
from luciddream.render import dream

ENGINE = Path(__file__).resolve().parents[1] / "engine"
TV = ["inception_v3", "vgg16", "vgg19", "resnet50"]
BROKEN = "operator torchvision::nms does not exist"  # what the real wheel says here


def _one_sentence(text: str) -> None:
    assert "\n" not in text and "Traceback" not in text and text.endswith("."), text


def _pairing() -> str:
    minor = int(torch.__version__.split(".")[1])
    return f"torchvision==0.{minor + 15}.*"


@pytest.fixture
def broken_torchvision(tmp_path, monkeypatch) -> Path:
    """A torchvision that is installed but fails to import, as the real wheel does against this torch."""
    pkg = tmp_path / "site" / "torchvision"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(f"raise RuntimeError({BROKEN!r})\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "torchvision", raising=False)
    tvmodels.forget()
    yield tmp_path / "site"
    tvmodels.forget()


def test_models_lists_them_in_one_line_with_reason_and_fix(broken_torchvision, capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "lite0" in out and "googlenet" in out
    lines = [line for line in out.splitlines() if any(name in line for name in TV)]
    assert len(lines) == 1, out
    line = lines[0]
    assert line.startswith("inception_v3, vgg16, vgg19, resnet50: not available")
    assert BROKEN in line and _pairing() in line and torch.__version__ in line and line.endswith(".")


@pytest.mark.parametrize("argv", [["layers", "--model", "vgg16"], ["dream", "IN.png", "-o", "OUT.png", "--model",
                                                                    "Inception_V3"]])
def test_choosing_one_on_the_command_line_is_one_line(broken_torchvision, tmp_path, capsys, argv):
    src = tmp_path / "in.png"
    from PIL import Image

    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(src)
    argv = [str(src) if a == "IN.png" else str(tmp_path / "out.png") if a == "OUT.png" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("luciddream: error: Model ") and "needs torchvision" in err and BROKEN in err
    _one_sentence(err)
    assert not (tmp_path / "out.png").exists()


def test_choosing_one_from_python_is_a_dream_error(broken_torchvision):
    for name in TV:
        assert not zoo.SPECS[name].available()
        with pytest.raises(DreamError) as info:
            zoo.load_model(name)
        _one_sentence(str(info.value))
        assert f'"{name}" needs torchvision' in str(info.value) and "--model lite0" in str(info.value)
    with pytest.raises(DreamError, match="needs torchvision"):
        dream(np.zeros((40, 40, 3), np.uint8), model="resnet50", steps=1, octaves=1)
    assert zoo.get_spec("lite0").name == "lite0"  # the others are untouched


def test_worker_does_not_offer_them(broken_torchvision):
    from luciddream import protocol, worker

    offered = worker.engine_info(protocol.Limits())["models"]
    assert "lite0" in offered and not set(TV) & set(offered)


def test_not_installed_says_what_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "torchvision" else real(n, *a))
    tvmodels.forget()
    try:
        with pytest.raises(DreamError) as info:
            zoo.get_spec("vgg19")
    finally:
        tvmodels.forget()
    _one_sentence(str(info.value))
    assert "torchvision is not installed" in str(info.value) and f"pip install {_pairing()}" in str(info.value)


@pytest.mark.parametrize("version, command", [
    ("2.13.0+cpu", "pip install torchvision==0.28.* --index-url https://download.pytorch.org/whl/cpu"),
    ("2.5.1+cu124", "pip install torchvision==0.20.* --index-url https://download.pytorch.org/whl/cu124"),
    ("2.9.0", "pip install torchvision==0.24.*"),
])
def test_the_fix_names_the_torchvision_built_for_this_torch(monkeypatch, version, command):
    monkeypatch.setattr(torch, "__version__", version)
    assert tvmodels._fix() == command


def test_a_real_process_prints_no_traceback(broken_torchvision):
    env = {"PYTHONPATH": f"{broken_torchvision}:{ENGINE}", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-m", "luciddream", "models"], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert "resnet50: not available" in r.stdout and BROKEN in r.stdout
    r = subprocess.run([sys.executable, "-m", "luciddream", "layers", "--model", "resnet50"], capture_output=True,
                       text=True, env=env, timeout=120)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and BROKEN in r.stderr


# ---------------------------------------------------------------------------------------------------------------
# The wrapper, on small networks with torchvision's layouts.

def _randomise_bn(net: nn.Module, seed: int = 0) -> nn.Module:
    """Batch-norm statistics that are not the identity, so that folding them is really tested."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return net.eval()


class MiniVGG(nn.Module):
    """torchvision's VGG layout: features (conv, ReLU, …, max pool), avgpool, classifier; 3 blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(8, 8, 3, padding=1),
            nn.ReLU(inplace=True), nn.MaxPool2d(2, 2),
            nn.Conv2d(8, 12, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2, 2),
            nn.Conv2d(12, 16, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2, 2))
        self.avgpool = nn.AdaptiveAvgPool2d((2, 2))
        self.classifier = nn.Sequential(nn.Linear(64, 20), nn.ReLU(True), nn.Dropout(), nn.Linear(20, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class Bottleneck(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.downsample(x))


class MiniResNet(nn.Module):
    """torchvision's ResNet layout: conv1, bn1, relu, maxpool, layer1..layer4, avgpool, fc."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 7, 2, 3, bias=False), nn.BatchNorm2d(8)
        self.relu, self.maxpool = nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(Bottleneck(8, 8, 1))
        self.layer2 = nn.Sequential(Bottleneck(8, 12, 2))
        self.layer3 = nn.Sequential(Bottleneck(12, 16, 2), Bottleneck(16, 16, 1))
        self.layer4 = nn.Sequential(Bottleneck(16, 20, 2))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(20, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class BasicConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(cin, cout, kernel, stride, bias=False), nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)))


class MiniInception(nn.Module):
    """torchvision's Inception3 child order, unpadded 3×3 stride-2 convolutions (so it needs a minimum input)."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 8, 3, 2)
        self.Conv2d_2a_3x3 = BasicConv2d(8, 8, 3)
        self.maxpool1 = nn.MaxPool2d(3, 2)
        self.Conv2d_3b_1x1 = BasicConv2d(8, 12, 1)
        self.maxpool2 = nn.MaxPool2d(3, 2)
        self.Mixed_5b = BasicConv2d(12, 16, 3)
        self.AuxLogits = nn.Linear(16, 10)
        self.Mixed_7a = BasicConv2d(16, 16, 3, 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout()
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv2d_3b_1x1(self.maxpool1(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x))))
        x = self.Mixed_7a(self.Mixed_5b(self.maxpool2(x)))
        return self.fc(torch.flatten(self.dropout(self.avgpool(x)), 1))


def _wrap(name: str, body: nn.Module, fused: bool) -> tvmodels.TorchvisionNet:
    import copy

    return tvmodels.wrap(name, copy.deepcopy(body), zoo.SPECS[name], fused)


def _normalised(name: str, x: torch.Tensor) -> torch.Tensor:
    spec = zoo.SPECS[name]
    return (x - torch.tensor(spec.mean).view(1, 3, 1, 1)) / torch.tensor(spec.std).view(1, 3, 1, 1)


@pytest.mark.parametrize("name, body, layers", [
    ("vgg16", MiniVGG, ["conv1_1", "conv1_2", "conv2_1", "conv3_1"]),
    ("resnet50", MiniResNet, ["stem", "layer1", "layer2", "layer3", "layer4"]),
    ("inception_v3", MiniInception, ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_3b_1x1", "Mixed_5b", "Mixed_7a"]),
])
def test_wrapper_names_layers_and_computes_the_networks_logits(name, body, layers):
    torch.manual_seed(0)
    net = _randomise_bn(body())
    x = torch.rand(2, 3, 96, 112)
    with torch.no_grad():
        ref = net(_normalised(name, x))
        for fused in (False, True):
            wrapped = _wrap(name, net, fused)
            assert wrapped.layer_names() == layers
            out = wrapped(x, [LOGITS, layers[1]])
            assert set(out) == {LOGITS, layers[1]}
            torch.testing.assert_close(out[LOGITS], ref, rtol=1e-4, atol=1e-5)
            if fused:
                assert not any(isinstance(m, nn.BatchNorm2d) for m in wrapped.modules())
    assert getattr(_wrap(name, net, True).body, "AuxLogits", None) is None  # inception's training-only head


def test_vgg_layers_are_relu_outputs_and_the_deepest_layer_ends_the_pass():
    torch.manual_seed(1)
    net = MiniVGG().eval()
    wrapped = _wrap("vgg16", net, True)
    ran: list[str] = []
    for path, module in wrapped.body.named_modules():
        if not list(module.children()):
            module.register_forward_hook(lambda m, i, o, path=path: ran.append(path))
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        out = wrapped(x, ["conv2_1", "conv1_2"])
        torch.testing.assert_close(out["conv2_1"], net.features[:7](_normalised("vgg16", x)))
        torch.testing.assert_close(out["conv1_2"], net.features[:4](_normalised("vgg16", x)))
    assert ran == [f"features.{i}" for i in range(7)]  # nothing after conv2_1's ReLU ran
    with pytest.raises(KeyError):
        wrapped(x, ["features.22"])


def test_small_inputs_are_padded_to_what_the_network_accepts_and_the_gradient_reaches_them():
    torch.manual_seed(2)
    net = _randomise_bn(MiniInception())
    with pytest.raises(RuntimeError):  # the bare network cannot take 20 px
        net(torch.rand(1, 3, 20, 20))
    wrapped = _wrap("inception_v3", net, True)
    x = torch.rand(1, 3, 20, 33, requires_grad=True)
    value = wrapped(x, ["Mixed_7a"])["Mixed_7a"].square().mean()
    (g,) = torch.autograd.grad(value, x)
    assert g.shape == x.shape and float(g.abs().sum()) > 0


def test_layer_targets_and_channels_work_on_the_wrapper():
    from luciddream.objectives import layer_channels, parse_targets

    wrapped = _wrap("resnet50", _randomise_bn(MiniResNet()), True)
    targets = parse_targets("layer:layer3:2,5=0.5", wrapped)
    assert targets[0].name == "layer3" and targets[0].channels == (2, 5)
    assert layer_channels(wrapped, "layer4") == 20
    assert parse_targets(None, wrapped)[0].name == "layer3"  # resnet50's classic default layer


# ---------------------------------------------------------------------------------------------------------------
# Downloads through torch.hub, as torchvision's builders do.

STAND_IN = """
\"\"\"A stand-in torchvision: its builder loads weights as torchvision's does (get_state_dict, then torch.hub).\"\"\"
import types

import torch

NET = None   # the test sets the network class and the weights' address after importing this
URL = ""


class _Weights:
    def get_state_dict(self, progress=True, check_hash=False):
        return torch.hub.load_state_dict_from_url(URL, progress=progress, check_hash=check_hash)

    @property
    def url(self):
        return URL


class _Enum:
    DEFAULT = _Weights()


def resnet50(weights=None, **kwargs):
    model = NET()
    if weights is not None:
        model.load_state_dict(_Enum.DEFAULT.get_state_dict(progress=False, check_hash=True))
    return model


models = types.SimpleNamespace(get_model_weights=lambda name: _Enum, resnet50=resnet50)
"""


class _Server:
    def __init__(self, payload: bytes) -> None:
        outer = self
        self.payload = payload

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Length", str(len(outer.payload)))
                self.end_headers()
                self.wfile.write(outer.payload)

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def stand_in(tmp_path, monkeypatch):
    buf = io.BytesIO()
    torch.save(_randomise_bn(MiniResNet()).state_dict(), buf)
    payload = buf.getvalue()
    digest = hashlib.sha256(payload).hexdigest()
    server = _Server(payload)
    site = tmp_path / "site"
    site.mkdir()
    (site / "torchvision.py").write_text(STAND_IN)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "torchvision", raising=False)
    import torchvision

    torchvision.NET = MiniResNet
    tvmodels.forget()
    zoo._cache.clear()
    yield server, digest, tmp_path / "torch" / "hub" / "checkpoints", torchvision
    server.close()
    tvmodels.forget()
    zoo._cache.clear()
    sys.modules.pop("torchvision", None)


def test_unreachable_download_is_one_sentence_naming_the_cache_file(stand_in):
    server, digest, checkpoints, tv = stand_in
    with socket_closed() as port:
        tv.URL = f"http://127.0.0.1:{port}/resnet50-{digest[:8]}.pth"
        assert zoo.SPECS["resnet50"].state() == (f"not downloaded yet (it will go to "
                                                 f"{checkpoints / f'resnet50-{digest[:8]}.pth'})")
        with pytest.raises(DreamError) as info:
            zoo.load_model("resnet50")
    text = str(info.value)
    _one_sentence(text)
    assert "could not be downloaded" in text and "connect to the internet" in text
    assert f"place it at {checkpoints / f'resnet50-{digest[:8]}.pth'}" in text and "--weights PATH" in text


def test_damaged_download_is_refused_and_not_kept_then_a_good_one_dreams(stand_in):
    server, digest, checkpoints, tv = stand_in
    tv.URL = f"{server.url}/resnet50-{'0' * 8}.pth"  # the hash prefix in the file's name does not match
    with pytest.raises(DreamError) as info:
        zoo.load_model("resnet50")
    _one_sentence(str(info.value))
    assert "damaged or not the expected one" in str(info.value)
    assert not list(checkpoints.glob("*.pth"))
    tv.URL = f"{server.url}/resnet50-{digest[:8]}.pth"
    net = zoo.load_model("resnet50")
    assert isinstance(net, tvmodels.TorchvisionNet) and net.layer_names()[-1] == "layer4"
    assert zoo.SPECS["resnet50"].state().startswith("downloaded to ")
    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    out = dream(image, None, "layer:layer2", model="resnet50", octaves=1, steps=2, seed=3)
    assert out.shape == image.shape and np.abs(out.astype(int) - image).max() > 0


class socket_closed:
    """A local port with nothing listening on it."""

    def __enter__(self) -> int:
        import socket

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        return self.port

    def __exit__(self, *exc) -> None:
        pass
