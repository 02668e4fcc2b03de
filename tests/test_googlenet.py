"""GoogLeNet: torchvision-compatible names, weights downloaded once from a real (local) HTTP server, hash checked.

Nothing here reaches the internet: a `http.server` on 127.0.0.1 serves a state dict generated from a randomly
initialised GoogLeNet in torchvision's layout (auxiliary heads included, as in the published file).
"""
from __future__ import annotations

import hashlib
import http.server
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from luciddream.nets import googlenet, zoo
from luciddream.errors import DreamError
from luciddream.render import dream


def _torchvision_like_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """What torchvision's googlenet-1378be20.pth holds, with random values: the body, batch-norm statistics that
    are not the identity (so folding them is really tested) and the auxiliary heads the engine must skip."""
    g = torch.Generator().manual_seed(seed)
    state = googlenet.GoogLeNetBody().state_dict()
    for k, v in state.items():
        if k.endswith("running_var"):
            state[k] = torch.rand(v.shape, generator=g) + 0.5
        elif k.endswith(("running_mean", "bn.bias")):
            state[k] = torch.randn(v.shape, generator=g) * 0.1
        elif k.endswith("bn.weight"):
            state[k] = torch.rand(v.shape, generator=g) + 0.5
    state["aux1.conv.conv.weight"] = torch.zeros(128, 512, 1, 1)
    state["aux1.fc2.bias"] = torch.zeros(1000)
    state["aux2.fc1.weight"] = torch.zeros(1024, 2048)
    return state


class _Server:
    """A local HTTP server: /good.pth, /corrupt.pth (one byte changed) and /short.pth (cut off mid-transfer)."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.hits: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                outer.hits.append(self.path)
                body = outer.payload
                if self.path == "/corrupt.pth":
                    body = body[:1000] + bytes([body[1000] ^ 0xFF]) + body[1001:]
                elif self.path not in ("/good.pth", "/short.pth"):
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body if self.path != "/short.pth" else body[: len(body) // 2])

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("weights") / "googlenet-test.pth"
    torch.save(_torchvision_like_state(), path)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def server(weights):
    s = _Server(weights[0].read_bytes())
    yield s
    s.close()


@pytest.fixture
def cache(tmp_path, monkeypatch, weights) -> Path:
    """An empty user cache and the test file's digest as the expected one; the model cache is cleared after."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv(googlenet.SHA_ENV, weights[1])
    yield tmp_path / "cache" / "luciddream"
    for key in [k for k in zoo._cache if k[0] == "googlenet"]:
        del zoo._cache[key]


def test_names_match_torchvision_and_the_file_loads_with_aux_heads_skipped(weights):
    state = torch.load(weights[0], weights_only=True)
    body = googlenet.build_body(weights[0], fused=False)
    own = body.state_dict()
    assert set(own) == {k for k in state if not k.startswith("aux")}
    assert "inception4c.branch3.1.conv.weight" in own and own["inception4c.branch3.1.conv.weight"].shape[-1] == 3
    assert sum(v.numel() for k, v in own.items() if "running" not in k and "num_batches" not in k) == 6624904
    assert torch.equal(own["inception5b.branch4.1.bn.running_var"], state["inception5b.branch4.1.bn.running_var"])


def test_fused_network_computes_what_the_plain_one_does(weights):
    plain = googlenet.build(fused=False, weights=weights[0]).eval()
    fused = googlenet.build(fused=True, weights=weights[0]).eval()
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    layers = ["conv1", "inception3b", "inception4c", "logits"]
    with torch.no_grad():
        a, b = plain(x, layers), fused(x, layers)
    assert a["inception4c"].shape == (1, 512, 14, 14) and a["logits"].shape == (1, 1000)
    for name in layers:
        assert torch.allclose(a[name], b[name], rtol=1e-4, atol=1e-4 * float(a[name].abs().max())), name
    # torchvision's transform_input: ImageNet-normalised input is turned back into (x - 0.5) / 0.5
    assert fused.spec.mean == (0.5, 0.5, 0.5) and fused.spec.std == (0.5, 0.5, 0.5)


def test_first_use_downloads_once_into_the_cache_then_reuses_it(server, cache, monkeypatch):
    monkeypatch.setenv(googlenet.URL_ENV, server.url + "/good.pth")
    net = zoo.load_model("googlenet", "cpu")
    assert net.spec.default_layer == "inception4c"
    assert server.hits == ["/good.pth"]
    files = sorted(p.name for p in cache.iterdir())
    assert files == [googlenet.cached_path().name]          # no temporary file left behind
    assert googlenet.weights_file() == googlenet.cached_path() and server.hits == ["/good.pth"]
    # a cached file that went bad is fetched again rather than trusted
    googlenet.cached_path().write_bytes(b"rot")
    googlenet.weights_file()
    assert server.hits == ["/good.pth", "/good.pth"]


@pytest.mark.parametrize("path, words", [("/corrupt.pth", "damaged"), ("/short.pth", "stopped after")])
def test_a_corrupt_or_truncated_download_is_refused_and_not_cached(server, cache, monkeypatch, path, words):
    monkeypatch.setenv(googlenet.URL_ENV, server.url + path)
    with pytest.raises(DreamError) as err:
        zoo.load_model("googlenet", "cpu")
    message = str(err.value)
    assert words in message and "not kept" in message and "--weights" in message
    assert message.count(". ") == 0 and "\n" not in message
    assert not cache.exists() or list(cache.iterdir()) == []


def test_an_unreachable_server_says_how_to_download_by_hand(cache, monkeypatch):
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(googlenet.URL_ENV, f"http://127.0.0.1:{port}/googlenet.pth")
    with pytest.raises(DreamError) as err:
        googlenet.weights_file()
    message = str(err.value)
    assert "could not be downloaded" in message and "by hand" in message and "--weights PATH" in message
    assert not cache.exists() or list(cache.iterdir()) == []


def test_weights_path_dreams_and_a_wrong_file_is_a_one_line_cli_error(weights, tmp_path, cache):
    image = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    out = dream(image, None, "layer:inception3b", model="googlenet", weights=weights[0], octaves=1, steps=2,
                seed=1)
    assert out.shape == image.shape and (out != image).any()
    bad = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(3, 3)}, bad)
    src = tmp_path / "in.png"
    from PIL import Image

    Image.fromarray(image).save(src)
    r = subprocess.run([sys.executable, "-m", "luciddream", "dream", str(src), "-o", str(tmp_path / "o.png"),
                        "--model", "googlenet", "--weights", str(bad), "-q"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not torchvision's GoogLeNet" in r.stderr
    assert not (tmp_path / "o.png").exists()
    r = subprocess.run([sys.executable, "-m", "luciddream", "models"], capture_output=True, text=True)
    assert r.returncode == 0 and "googlenet" in r.stdout and "downloaded on first use" in r.stdout
