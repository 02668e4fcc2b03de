"""`luciddream serve` over TLS, driven through the protocol package as the plug-ins drive it: a certificate made by
`serve --make-cert`, a client that pins its fingerprint, and every way of getting it wrong refused in one sentence.
Real processes, sockets and handshakes; tiny jobs (64×48, one octave, two steps, one thread).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import stop_process
from luciddream import protocol as P
from luciddream import server as S

ROOT = Path(__file__).resolve().parents[1]
W, H = 64, 48
FAST = {"steps": 2, "octaves": 1, "tile": 128, "seed": 3}
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
TOKEN = "tls-test-token"
SERVE = [sys.executable, "-m", "luciddream", "serve"]


def one_sentence(text: str) -> bool:
    return "Traceback" not in text and "\n" not in text.strip() and text.rstrip().endswith((".", ")"))


def image() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    img = (rng.random((H, W, 3)) * 255).astype(np.uint8)
    mask = np.zeros((H, W), np.uint8)
    mask[10:34, 12:50] = 255
    return img, mask


def dream_round_trip(client: P.Client) -> None:
    img, mask = image()
    job = client.dream(img.tobytes(), W, H, 3, "u8", mask.tobytes(), "layer:block3", FAST)
    list(job.events(timeout=120))
    out = np.frombuffer(job.result(), np.uint8).reshape(img.shape)
    assert np.array_equal(out[mask == 0], img[mask == 0]), "pixels outside the selection must come back as they were"
    assert not np.array_equal(out[mask > 0], img[mask > 0]), "nothing was dreamed"


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    r = subprocess.run(SERVE + ["--make-cert", "--certfile", str(cert), "--keyfile", str(key)],
                       capture_output=True, text=True, timeout=120, env=ENV)
    assert r.returncode == 0, r.stderr
    digest = S.fingerprint(str(cert))
    assert digest in r.stdout and "--fingerprint" in r.stdout
    assert oct(key.stat().st_mode & 0o777) == "0o600", "the private key must be readable by its owner only"
    again = subprocess.run(SERVE + ["--make-cert", "--certfile", str(cert), "--keyfile", str(key)],
                           capture_output=True, text=True, timeout=120, env=ENV)
    assert again.returncode == 2 and "never overwrites" in again.stderr and one_sentence(again.stderr)
    assert S.fingerprint(str(cert)) == digest
    return cert, key, digest


@pytest.fixture(scope="module")
def tls_server(pair):
    cert, key, digest = pair
    proc = subprocess.Popen(SERVE + ["--port", "0", "--token", TOKEN, "--certfile", str(cert), "--keyfile", str(key)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        line = proc.stdout.readline()
        assert "listening on https://127.0.0.1:" in line, line + proc.stderr.read() if not line else line
        assert f"TLS on, certificate SHA-256 {digest}" in line and "token required" in line and "device " in line
        yield line.split("listening on ")[1].split()[0], digest
    finally:
        stop_process(proc)


def test_a_client_that_pins_the_fingerprint_dreams(tls_server):
    url, digest = tls_server
    client = P.Client.connect(url, token=TOKEN, timeout=60, fingerprint=digest)
    assert client.hello()["protocol"] == P.PROTOCOL_VERSION
    dream_round_trip(client)
    # the pin may be written without colons, in lower case, or as sha256=…
    assert P.Client.connect(url, TOKEN, fingerprint="sha256=" + digest.replace(":", "").lower()).hello()


def test_a_wrong_fingerprint_is_refused_before_anything_is_sent(tls_server):
    url, digest = tls_server
    wrong = ("00:" + digest[3:]) if not digest.startswith("00") else ("11:" + digest[3:])
    with pytest.raises(P.WorkerError) as info:
        P.Client.connect(url, token=TOKEN, fingerprint=wrong).hello()
    assert info.value.code == P.UNREACHABLE and "nothing was sent" in info.value.message
    assert digest in info.value.message and one_sentence(info.value.message)
    with pytest.raises(P.WorkerError) as info:
        P.Client.connect(url, token=TOKEN, fingerprint="AB:CD").hello()
    assert "not a SHA-256 fingerprint" in info.value.message and one_sentence(info.value.message)


def test_an_unpinned_self_signed_certificate_is_not_trusted(tls_server):
    url, _ = tls_server
    with pytest.raises(P.WorkerError) as info:
        P.Client.connect(url, token=TOKEN, timeout=30).hello()
    assert "cannot be verified" in info.value.message and "--fingerprint" in info.value.message
    assert one_sentence(info.value.message)


def test_plain_http_to_a_tls_server_and_tls_to_a_plain_one_say_which_to_use(tls_server):
    url, digest = tls_server
    with pytest.raises(P.WorkerError) as info:
        P.Client.connect(url.replace("https://", "http://"), token=TOKEN, timeout=30).hello()
    assert "https://" in info.value.message and one_sentence(info.value.message)
    with pytest.raises(P.WorkerError) as info:   # a fingerprint on a plain-HTTP address makes no sense
        P.Client.connect(url.replace("https://", "http://"), token=TOKEN, fingerprint=digest)
    assert "plain HTTP" in info.value.message
    plain = subprocess.Popen(SERVE + ["--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                             env=ENV)
    try:
        plain_url = plain.stdout.readline().split("listening on ")[1].split()[0]
        assert "TLS off" not in plain_url
        with pytest.raises(P.WorkerError) as info:
            P.Client.connect(plain_url.replace("http://", "https://"), fingerprint=digest, timeout=30).hello()
        assert "http://" in info.value.message and one_sentence(info.value.message)
    finally:
        stop_process(plain)


def test_the_token_never_goes_to_a_plain_http_address_off_this_computer():
    with socket.socket() as listener:   # a "server" on loopback that records what arrives, for the allowed case
        listener.bind(("127.0.0.1", 0))
        for url in ("http://192.0.2.7:8765", "http://example.invalid:8765", "http://[2001:db8::1]:8765"):
            with pytest.raises(P.WorkerError) as info:
                P.Client.connect(url, token="secret")
            assert info.value.code == P.UNAUTHORIZED and "not sent" in info.value.message
            assert "secret" not in info.value.message and one_sentence(info.value.message)
        # loopback, or no token, is allowed (nothing is sent until the first call)
        P.Client.connect(f"http://127.0.0.1:{listener.getsockname()[1]}", token="secret")
        P.Client.connect("http://192.0.2.7:8765")


def test_a_network_address_needs_tls_or_insecure():
    r = subprocess.run(SERVE + ["--host", "0.0.0.0", "--port", "0", "--token", TOKEN], capture_output=True,
                       text=True, timeout=120, env=ENV)
    assert r.returncode == 2 and r.stdout == ""
    assert "--certfile" in r.stderr and "--insecure" in r.stderr and one_sentence(r.stderr)
    assert r.stderr.count("\n") == 1
    proc = subprocess.Popen(SERVE + ["--host", "0.0.0.0", "--port", "0", "--token", TOKEN, "--insecure"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        line = proc.stdout.readline()
        assert "listening on http://0.0.0.0:" in line and "TLS off" in line
    finally:
        stop_process(proc)
    r = subprocess.run(SERVE + ["--certfile", "/nonexistent/cert.pem", "--port", "0"], capture_output=True,
                       text=True, timeout=120, env=ENV)
    assert r.returncode == 2 and "does not exist" in r.stderr and one_sentence(r.stderr)


def test_install_pins_the_fingerprint_in_engine_json_and_the_plug_ins_use_it(tls_server, tmp_path):
    url, digest = tls_server
    sys.path.insert(0, str(ROOT))
    import kit

    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_")}
    env.update(HOME=str(home), PATH=str(home / "no-bin"))
    gimp = tmp_path / "plug-ins"

    def install(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(ROOT / "install.py"), "--venv", sys.prefix, "--only", "gimp",
                               "--gimp-dir", str(gimp), *args], env=env, capture_output=True, text=True, timeout=600)

    r = install("--server", url, "--token", TOKEN, "--fingerprint", digest.replace(":", "").lower())
    assert r.returncode == 0, r.stderr
    config = kit.read_config(str(gimp / "luciddream" / "engine.json"))
    assert (config.url, config.token, config.fingerprint) == (url, TOKEN, digest)
    client = P.Client.connect(config.url, config.token, fingerprint=config.fingerprint)
    assert client.hello()["protocol"] == P.PROTOCOL_VERSION
    before = (gimp / "luciddream" / "engine.json").read_bytes()
    for args, words in [(["--server", "http://192.0.2.7:8765", "--token", TOKEN], "plain HTTP"),
                        (["--server", url.replace("https", "http"), "--fingerprint", digest], "plain HTTP"),
                        (["--server", url, "--fingerprint", "12:34"], "not a SHA-256 fingerprint"),
                        (["--fingerprint", digest], "belongs to --server")]:
        r = install(*args)
        assert r.returncode == 2 and words in r.stderr and r.stderr.count("\n") == 1, (args, r.stderr)
    assert (gimp / "luciddream" / "engine.json").read_bytes() == before
    assert json.loads(before)["fingerprint"] == digest
