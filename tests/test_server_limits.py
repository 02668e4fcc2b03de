"""`luciddream serve` against hostile and broken clients, with real sockets: slow headers and bodies, web pages,
wrong tokens, a server that must not download, log lines an operator can trust, and payloads that wait on disk.

Timeouts are shortened on the command line (--header-timeout, --body-timeout), so every case takes seconds.
"""
from __future__ import annotations

import http.client
import http.server
import io
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import stop_process
from luciddream import protocol as P

W, H = 64, 48
FAST = {"steps": 2, "octaves": 1, "tile": 128, "seed": 3}
SLOW = {"steps": 1000, "octaves": 1, "tile": 64, "seed": 3}
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
TOKEN = "limits-token"


class Serve:
    """A `luciddream serve` process whose log goes to a file the test reads."""

    def __init__(self, tmp: Path, *args: str, env: dict | None = None) -> None:
        self.log_path = tmp / f"serve-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "luciddream", "serve", "--port", "0", *args],
                                     stdout=subprocess.PIPE, stderr=self._log, text=True, env=env or ENV)
        line = self.proc.stdout.readline()
        assert "listening on" in line, self.log()
        self.url = line.split("listening on ")[1].split()[0]
        self.host, port = self.url.split("//")[1].strip("/").rsplit(":", 1)
        self.port = int(port)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def raw(self, data: bytes, timeout: float = 30) -> bytes:
        """Send bytes, half-close, return everything the server answers before it closes."""
        with socket.create_connection((self.host, self.port), timeout=timeout) as s:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            return _read_all(s)

    def close(self) -> None:
        stop_process(self.proc)
        self._log.close()


def _read_all(s: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        out += chunk
    return out


@pytest.fixture()
def serve(tmp_path):
    started: list[Serve] = []

    def start(*args: str, env: dict | None = None) -> Serve:
        started.append(Serve(tmp_path, *args, env=env))
        return started[-1]

    yield start
    for s in started:
        s.close()


def image(seed: int = 0, channels: int = 3) -> np.ndarray:
    return (np.random.default_rng(seed).random((H, W, channels)) * 255).astype(np.uint8)


def dream(client: P.Client, settings: dict | None = None, seed: int = 0) -> P.Job:
    img = image(seed)
    return client.dream(img.tobytes(), W, H, 3, "u8", None, "layer:block3", FAST if settings is None else settings)


def dream_frame(**extra) -> bytes:
    header = {"kind": "dream", "id": "f1", "width": W, "height": H, "channels": 3, "sample": "u8",
              "targets": "layer:block3", "settings": FAST, **extra}
    return P.frame_bytes(header, image().tobytes())


def post(s: Serve, path: str, body: bytes, headers: dict, method: str = "POST"):
    conn = http.client.HTTPConnection(s.host, s.port, timeout=30)
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, data


def error_of(data: bytes) -> dict:
    msg = P.read_message(io.BytesIO(data), P.Limits(), P.check_reply)
    assert msg is not None and msg.kind == P.ERROR, data[:200]
    assert "Traceback" not in msg.header["message"] and "\n" not in msg.header["message"]
    return msg.header


def test_slow_headers_and_bodies_are_dropped_on_time_and_starve_nobody(serve):
    s = serve("--token", TOKEN, "--header-timeout", "6", "--body-timeout", "3", "--max-connections", "40")
    assert P.Client.connect(s.url, TOKEN, timeout=60).hello()   # the first hello loads the engine's modules
    # 30 clients trickle their headers a byte at a time (the probe's attack: 50 of them starved everyone before)
    trickling = [socket.create_connection((s.host, s.port), timeout=10) for _ in range(30)]
    start = time.monotonic()
    stop = threading.Event()

    def trickle() -> None:
        head = b"POST /v1/dream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode() + b"\r\n" * 50
        for i in range(len(head)):
            if stop.is_set():
                return
            for c in trickling:
                try:
                    c.send(head[i:i + 1])
                except OSError:
                    pass
            time.sleep(0.3)

    threading.Thread(target=trickle, daemon=True).start()
    try:
        time.sleep(0.5)
        client = P.Client.connect(s.url, TOKEN, timeout=30)   # a real client is served meanwhile, at once
        t = time.monotonic()
        assert client.hello()["protocol"] == 1
        assert time.monotonic() - t < 3, "a client waited for the trickling ones (they live 6 s)"
        result = dream(client).result(timeout=60)
        assert len(result) == W * H * 3
        closed_after = []
        for c in trickling:
            c.settimeout(max(0.1, start + 6 + 3 - time.monotonic()))
            try:
                assert _read_all(c) == b""   # closed without an answer: the head never came whole
                closed_after.append(time.monotonic() - start)
            except socket.timeout:
                pytest.fail("a client trickling its headers was still connected 3 s after the header timeout")
        assert max(closed_after) < 6 + 3
    finally:
        stop.set()
        for c in trickling:
            c.close()
    # a body that trickles (a byte every 0.5 s) is answered 408 when its whole-body deadline passes, whatever the
    # pace of single reads
    body = dream_frame()
    with socket.create_connection((s.host, s.port), timeout=30) as c:
        c.sendall(b"POST /v1/dream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode() +
                  b"\r\nContent-Length: %d\r\n\r\n" % len(body))
        t = time.monotonic()
        answer = b""
        c.settimeout(0.5)
        for byte in body:
            try:
                c.send(bytes([byte]))
                answer = c.recv(65536)
                if answer:
                    break
            except socket.timeout:
                continue
            except OSError:
                break
            if time.monotonic() - t > 20:
                break
        waited = time.monotonic() - t
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert 3 <= waited < 3 + 4, waited
    assert "did not arrive in time" in s.log()


def test_web_pages_cannot_drive_a_local_serve(serve):
    s = serve()   # the loopback default: no token, so Origin and Host are what keep web pages out
    body = dream_frame()
    cases = [
        {"Origin": "http://evil.example", "Content-Type": "text/plain"},          # a browser's no-cors POST
        {"Host": f"evil.example:{s.port}"},                                        # DNS rebinding
        {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"},
        {"Origin": "null"},
    ]
    for headers in cases:
        status, data = post(s, "/v1/dream", body, headers)
        assert status == 403 and error_of(data)["code"] == P.UNAUTHORIZED, headers
        assert "web pages" in error_of(data)["message"]
        status, data = post(s, "/v1/hello", b"", headers, "GET")
        assert status == 403, headers
    assert "job 1:" not in s.log(), "a refused request must never be queued"
    for host in (f"127.0.0.1:{s.port}", f"localhost:{s.port}", "localhost"):
        status, data = post(s, "/v1/hello", b"", {"Host": host}, "GET")
        assert status == 200, host
    assert len(dream(P.Client.connect(s.url)).result(timeout=60)) == W * H * 3


def test_wrong_tokens_are_slowed_down_and_logged_and_the_right_one_is_not(serve):
    s = serve("--token", TOKEN)
    assert P.Client.connect(s.url, TOKEN, timeout=60).hello()   # the first hello loads the engine's modules
    waits = []
    for i in range(7):
        t = time.monotonic()
        with pytest.raises(P.WorkerError) as info:
            P.Client.connect(s.url, f"guess-{i}", timeout=30).hello()
        waits.append(time.monotonic() - t)
        assert info.value.code == P.UNAUTHORIZED
    assert max(waits[:3]) < 2.0, waits          # a few mistakes are answered at once
    assert waits[5] >= 0.45 and waits[6] >= 0.9, waits   # then each waits longer (0.25, 0.5, 1 s, … at most 5)
    t = time.monotonic()
    assert P.Client.connect(s.url, TOKEN, timeout=30).hello()["protocol"] == 1
    assert time.monotonic() - t < 2.0
    log = s.log()
    assert "sent a missing or wrong token (1 in the last minute)" in log
    assert "(4 in the last minute; answers now wait 0.25 s)" in log
    assert "guess-" not in log, "a guessed token is never written to the log"


def test_the_log_has_one_line_per_job_and_hang_up_no_job_names_and_no_raw_control_characters(serve):
    s = serve("--token", TOKEN)
    client = P.Client.connect(s.url, TOKEN, timeout=30)
    job = dream(client)
    events = list(job.events(timeout=60))
    job.result()
    name = job.server_job
    assert name and events[0].position == 0
    slow = dream(client, SLOW)
    next(slow.events(timeout=60))
    slow_name = slow.server_job
    slow._sock.shutdown(socket.SHUT_RDWR)   # hang up mid-job
    deadline = time.monotonic() + 10
    while "hung up" not in s.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    cancelled_in = time.monotonic() - (deadline - 10)
    assert cancelled_in < 3
    # a request line full of control characters (log injection, terminal escapes)
    answer = s.raw(b"GET /v1/\x1b[31mred\x1b[0m\rfake line\x07 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                   TOKEN.encode() + b"\r\n\r\n")
    assert answer.startswith((b"HTTP/1.1 400", b"HTTP/1.0 400"))   # aiohttp's parser refuses them outright
    answer = s.raw(b"GET /v1/%1b[31mred%1b[0m%0d%0aluciddream%20serve:%20fake%07 HTTP/1.1\r\nHost: x\r\n"
                   b"Authorization: Bearer " + TOKEN.encode() + b"\r\n\r\n")   # escaped, they reach the log line
    assert answer.startswith(b"HTTP/1.1 404") and b"\x1b" not in answer
    deadline = time.monotonic() + 30
    while "job 2: 64×48×3" not in s.log() and time.monotonic() < deadline:   # the runner's line for the cancelled job
        time.sleep(0.1)
    log = s.log()
    lines = log.splitlines()
    assert name not in log and slow_name not in log, "job names are what a token holder needs to cancel a job"
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", log), "raw control characters reached the log"
    assert "Traceback" not in log
    job_lines = [line for line in lines if re.search(r"job \d+: \d+×\d+×\d+ u8", line)]
    assert len(job_lines) == 2, log
    assert "64×48×3 u8 (9 KiB) on cpu: done in" in job_lines[0] and job_lines[0].startswith("luciddream serve: 127.")
    assert "cancelled" in job_lines[1] and "hung up" in job_lines[1]
    assert len([line for line in lines if "the client hung up; job cancelled" in line]) == 1


class _CountingServer:
    """A local HTTP server standing in for the weights' host: it counts requests and serves nothing useful."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                outer.hits.append(self.path)
                self.send_error(404)

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/googlenet.pth"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_serve_never_downloads_at_a_clients_request_and_shows_no_paths(serve, tmp_path):
    weights = _CountingServer()
    cache = tmp_path / "a-private-cache-folder"
    env = {**ENV, "LUCIDDREAM_GOOGLENET_URL": weights.url, "XDG_CACHE_HOME": str(cache)}
    try:
        s = serve(env=env)
        client = P.Client.connect(s.url, timeout=60)
        for _ in range(2):
            with pytest.raises(P.WorkerError) as info:
                dream(client, {**FAST, "model": "googlenet"}).result(timeout=60)
            assert info.value.code == P.BAD_INPUT and "--allow-downloads" in info.value.message
            assert str(cache) not in info.value.message and str(Path.home()) not in info.value.message
        assert weights.hits == [], "the server fetched weights because a client asked"
        allowed = serve("--allow-downloads", env=env)
        with pytest.raises(P.WorkerError) as info:   # allowed: it tries (and the stand-in host has nothing)
            dream(P.Client.connect(allowed.url, timeout=60), {**FAST, "model": "googlenet"}).result(timeout=60)
        assert weights.hits, "with --allow-downloads the server fetches the weights"
        assert info.value.code == P.BAD_INPUT and str(cache) not in info.value.message
    finally:
        weights.close()


def test_queued_payloads_wait_on_disk_not_in_memory(serve, tmp_path):
    """Four queued 1536×1536 RGBA float jobs (36 MiB each) behind a running one: the server's memory grows by less
    than one payload, and its spool folder holds them."""
    spool = tmp_path / "spool"
    spool.mkdir()
    s = serve("--queue", "4", "--spool-dir", str(spool))
    client = P.Client.connect(s.url, timeout=60)
    running = dream(client, SLOW)
    for event in running.events(timeout=60):   # past loading the model: its memory is not the queue's
        if event.position is None and event.fraction > 0.002:
            break
    side = 1536
    pixels = np.zeros((side, side, 4), np.float32).tobytes()
    before = s.rss_mb()
    waiting = [client.dream(pixels, side, side, 4, "f32", None, "layer:block3", FAST) for _ in range(4)]
    for job in waiting:
        assert next(job.events(timeout=60)).position >= 1
    grown = s.rss_mb() - before
    spooled = [os.readlink(f) for f in Path(f"/proc/{s.proc.pid}/fd").iterdir()
               if str(spool) in os.readlink(f)]
    assert len(spooled) == 4, spooled
    assert grown < len(pixels) / 2 ** 20, f"RSS grew {grown:.0f} MB while 4 × {len(pixels) / 2 ** 20:.0f} MiB waited"
    for job in waiting:
        job.cancel()
    running.cancel()
    for job in waiting + [running]:
        with pytest.raises(P.JobCancelled):
            job.result(timeout=60)
    deadline = time.monotonic() + 10
    while any(str(spool) in os.readlink(f) for f in Path(f"/proc/{s.proc.pid}/fd").iterdir()):
        assert time.monotonic() < deadline, "cancelled jobs' spool files were not closed"
        time.sleep(0.1)
