"""The engine as a separate process: `luciddream worker` on pipes and `luciddream serve` over HTTP, driven through
the protocol package exactly as the plug-ins drive it. Real subprocesses and sockets throughout; every wait has a
timeout.

Jobs are tiny (64×48, one octave, two steps) and the engine processes run with one thread each, so this file stays
well under two minutes on two cores.
"""
from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import queue
import shutil
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import stop_process
from luciddream import protocol as P
from luciddream.worker import Worker

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL_DIR = ROOT / "engine" / "luciddream"        # on sys.path, `import protocol` finds the package as a host does
PROTOCOL_FILES = sorted((PROTOCOL_DIR / "protocol").glob("*.py"))
W, H = 64, 48
FAST = {"steps": 2, "octaves": 1, "tile": 128, "seed": 3}
SLOW = {"steps": 1000, "octaves": 1, "tile": 64, "seed": 3}  # minutes of work: only ever cancelled
TARGET = "layer:block3"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
WORKER = [sys.executable, "-m", "luciddream.worker"]


def image(channels: int = 3, sample: str = "u8", seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.random((H, W, channels), dtype=np.float32)
    if sample == "u8":
        return (x * 255).astype(np.uint8)
    if sample == "u16":
        return (x * 65535).astype(np.uint16)
    return x


def box_mask() -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    m[10:34, 12:50] = 255
    m[20:24, 30:34] = 128
    return m


def dream(client: P.Client, img: np.ndarray, mask: np.ndarray | None = None, targets: str = TARGET,
          settings: dict | None = None) -> P.Job:
    sample = {np.dtype(np.uint8): "u8", np.dtype(np.uint16): "u16", np.dtype(np.float32): "f32"}[img.dtype]
    return client.dream(img.tobytes(), W, H, img.shape[2], sample, None if mask is None else mask.tobytes(),
                        targets, FAST if settings is None else settings)


def check_round_trip(job: P.Job, img: np.ndarray, mask: np.ndarray) -> list[P.Progress]:
    events = list(job.events(timeout=60))
    out = np.frombuffer(job.result(), img.dtype).reshape(img.shape)
    fractions = [e.fraction for e in events if e.position is None]
    assert fractions and fractions[-1] == 1.0
    assert fractions == sorted(fractions)
    keep = mask == 0
    assert np.array_equal(out[keep], img[keep]), "pixels outside the mask must come back bit for bit"
    color = 1 if img.shape[2] <= 2 else 3
    assert not np.array_equal(out[~keep][:, :color], img[~keep][:, :color]), "nothing was dreamed"
    if img.shape[2] in (2, 4):
        assert np.array_equal(out[:, :, -1], img[:, :, -1]), "alpha must stay untouched"
    return events


# ------------------------------------------------------------------------------------------- raw frames

class Raw:
    """A worker driven with hand-made bytes; replies arrive on a queue so that every read has a timeout."""

    def __init__(self, env: dict | None = None) -> None:
        self.proc = subprocess.Popen(WORKER, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env or ENV)
        self.replies: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            while True:
                msg = P.read_message(self.proc.stdout, P.Limits(), P.check_reply)
                if msg is None:
                    break
                self.replies.put(msg)
        except P.WorkerError as exc:  # stray bytes on stdout would land here
            self.replies.put(exc)
        self.replies.put(None)

    def send(self, data: bytes, close: bool = False) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()
        if close:
            self.proc.stdin.close()

    def reply(self, timeout: float = 30) -> P.Message | None:
        item = self.replies.get(timeout=timeout)
        assert not isinstance(item, Exception), f"the worker wrote something that is not a frame: {item}"
        return item

    def error(self, data: bytes, code: str, close: bool = False) -> P.Message:
        self.send(data, close)
        msg = self.reply()
        assert msg is not None and msg.kind == P.ERROR, msg
        assert msg.header["code"] == code, msg.header
        sentence = msg.header["message"]
        assert sentence.endswith((".", ")")) and "Traceback" not in sentence and "\n" not in sentence
        return msg

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()


def prefix(header_len: int, payload_len: int, magic: bytes = P.MAGIC, version: int = 1,
           reserved: bytes = b"\0\0\0") -> bytes:
    return struct.pack(">4sB3sIQ", magic, version, reserved, header_len, payload_len)


def raw_frame(header: bytes, payload: bytes = b"", declared: int | None = None) -> bytes:
    return prefix(len(header), len(payload) if declared is None else declared) + header + payload


def dream_header(**changes) -> dict:
    h = {"kind": "dream", "id": "j", "width": W, "height": H, "channels": 3, "sample": "u8", "mask": False,
         "targets": TARGET, "settings": FAST}
    h.update(changes)
    return h


# ------------------------------------------------------------------------------------------- pipes

@pytest.fixture(scope="module")
def client():
    c = P.Client.spawn(sys.executable, env=ENV)
    yield c
    c.close()


@pytest.mark.parametrize("channels,sample", [(3, "u8"), (4, "f32"), (2, "u16"), (1, "u8")])
def test_worker_round_trip(client, channels, sample):
    img, mask = image(channels, sample), box_mask()
    events = check_round_trip(dream(client, img, mask), img, mask)
    assert events[-1].octave == 1 and events[-1].octaves == 1 and "step" in events[-1].message


def test_worker_hello_and_model_stays_loaded(client):
    info = client.hello()
    assert info["protocol"] == P.PROTOCOL_VERSION and "lite0" in info["models"]
    img = image()
    dream(client, img).result(timeout=60)  # loads the model, if no test did yet
    start = time.monotonic()
    dream(client, img).result(timeout=60)
    assert time.monotonic() - start < 10
    assert client.hello()["pid"] == info["pid"]


def test_worker_cancel_then_next_job(client):
    pid = client.hello()["pid"]
    job = dream(client, image(), box_mask(), settings=SLOW)
    first = next(job.events(timeout=60))
    assert 0 < first.fraction < 0.01
    asked = time.monotonic()
    job.cancel()
    with pytest.raises(P.JobCancelled) as info:
        job.result(timeout=30)
    assert time.monotonic() - asked < 10
    assert info.value.code == P.CANCELLED and "not changed" in info.value.message
    img, mask = image(seed=5), box_mask()
    check_round_trip(dream(client, img, mask), img, mask)
    assert client.hello()["pid"] == pid


def test_worker_refuses_a_second_job_while_busy(client):
    slow = dream(client, image(), settings=SLOW)
    next(slow.events(timeout=60))
    with pytest.raises(P.WorkerError) as info:
        dream(client, image()).result(timeout=30)
    assert info.value.code == P.BUSY and "cancel" in info.value.message
    slow.cancel()
    with pytest.raises(P.JobCancelled):
        slow.result(timeout=30)


@pytest.mark.parametrize("targets,settings,mask,words", [
    ("nonsense_class_xyz", FAST, None, "Unknown class"),
    (TARGET, {**FAST, "stepz": 2}, None, "Unknown setting stepz"),
    (TARGET, {**FAST, "steps": -1}, None, "steps must be between"),
    (TARGET, {**FAST, "model": 5}, None, "model must be a name"),
    (TARGET, {**FAST, "device": "tpu"}, None, 'Unknown device "tpu"'),
    (TARGET, {**FAST, "weights": "/etc/passwd"}, None, "Unknown setting weights"),  # no server-side paths
    (TARGET, FAST, np.zeros((H, W), np.uint8), "selects nothing"),
])
def test_worker_user_errors_are_one_sentence(client, targets, settings, mask, words):
    with pytest.raises(P.WorkerError) as info:
        dream(client, image(), mask, targets, settings).result(timeout=60)
    assert info.value.code == P.BAD_INPUT
    assert words in info.value.message and "Traceback" not in info.value.message


def test_client_checks_buffers_before_sending(client):
    with pytest.raises(P.WorkerError) as info:
        client.dream(b"\0" * 10, W, H, 3, "u8")
    assert info.value.code == P.BAD_REQUEST and "9216 bytes" in info.value.message
    with pytest.raises(P.WorkerError) as info:
        client.dream(bytes(W * H * 3), W, H, 3, "u8", mask=b"\xff")
    assert "one byte per pixel" in info.value.message
    with pytest.raises(P.WorkerError) as info:
        client.dream(bytes(W * H * 3), W, H, 3, "f64")
    assert '"sample" must be one of' in info.value.message
    with pytest.raises(P.WorkerError) as info:
        client.dream(b"", 100000, 100000, 3, "u8")
    assert info.value.code == P.TOO_LARGE


def test_client_adopts_the_engines_smaller_limit():
    with P.Client.spawn(sys.executable, "-m", "luciddream", "worker", "--max-pixels", "1000", env=ENV) as small:
        assert small.hello()["max_pixels"] == 1000
        with pytest.raises(P.WorkerError) as info:
            dream(small, image())
        assert info.value.code == P.TOO_LARGE and "more than the 1,000 this engine accepts" in info.value.message
        assert small.hello()["max_pixels"] == 1000  # refused on this side: the worker is still there


def test_spawn_with_a_python_that_lacks_the_engine_says_so():
    with pytest.raises(P.WorkerError) as info:
        P.Client.spawn(sys.executable, "-c", "import sys; sys.exit('No module named luciddream')",
                       startup_timeout=30)
    assert info.value.code == P.WORKER_GONE
    assert "exited with status 1" in info.value.message and "No module named luciddream" in info.value.message
    log = Path(info.value.message.rsplit("(log: ", 1)[1].rstrip(")"))
    assert log.read_text().strip() == "No module named luciddream"  # a failed worker's log is kept
    log.unlink()
    with pytest.raises(P.WorkerError) as info:
        P.Client.spawn("/nonexistent/python3")
    assert info.value.code == P.WORKER_GONE and "Cannot start the engine" in info.value.message


def test_worker_survives_malformed_requests():
    """Each bad request gets an error reply with its id where it had a valid one; the worker carries on."""
    raw = Raw()
    try:
        raw.error(raw_frame(b'{"kind": "dream",'), P.BAD_REQUEST)
        raw.error(raw_frame(b"[1, 2]"), P.BAD_REQUEST)
        raw.error(raw_frame(b'{"kind": 7}'), P.BAD_REQUEST)
        raw.error(raw_frame(b"\xff\xfe{}"), P.BAD_REQUEST)
        raw.error(raw_frame(b'{"kind": "hello", "id": NaN}'), P.BAD_REQUEST)
        raw.error(raw_frame(b"[" * 30000 + b"]" * 30000), P.BAD_REQUEST)
        raw.error(raw_frame(b'{"a":' * 10000 + b"1" + b"}" * 10000), P.BAD_REQUEST)
        raw.error(raw_frame(b'{"kind": "hello", "id": "' + b"9" * 5000 + b'"}'), P.BAD_REQUEST)
        msg = raw.error(raw_frame(b'{"kind": "hello", "colour": 1, "id": "h1"}'), P.BAD_REQUEST)
        assert "'colour'" in msg.header["message"] and msg.header["id"] == "h1"
        msg = raw.error(raw_frame(b'{"kind": "sing", "id": 4}'), P.BAD_REQUEST)
        assert "Unknown message kind" in msg.header["message"] and msg.header["id"] == 4
        raw.error(raw_frame(b'{"kind": "cancel"}', b"xyz"), P.BAD_REQUEST)
        pixels = bytes(W * H * 3)
        # lengths that do not match: the payload is skipped, the stream stays in step
        msg = raw.error(raw_frame(json.dumps(dream_header()).encode(), pixels[:100]), P.BAD_REQUEST)
        assert "9216 bytes" in msg.header["message"] and "carries 100" in msg.header["message"]
        raw.error(raw_frame(json.dumps(dream_header(mask=True)).encode(), pixels), P.BAD_REQUEST)
        # absurd declared sizes: refused from the header alone
        msg = raw.error(raw_frame(json.dumps(dream_header(width=60000, height=60000)).encode()), P.TOO_LARGE)
        assert "more than the 67,108,864 this engine accepts" in msg.header["message"]
        raw.error(raw_frame(json.dumps(dream_header(width=10 ** 30)).encode()), P.TOO_LARGE)
        raw.error(raw_frame(json.dumps(dream_header(width="64")).encode(), pixels), P.BAD_REQUEST)
        raw.error(raw_frame(json.dumps(dream_header(width=True)).encode(), pixels), P.BAD_REQUEST)
        raw.error(raw_frame(json.dumps(dream_header(channels=5)).encode(), pixels), P.BAD_REQUEST)
        raw.error(raw_frame(json.dumps(dream_header(sample="f64")).encode(), pixels), P.BAD_REQUEST)
        raw.error(raw_frame(json.dumps(dream_header(targets=["goldfish"])).encode(), pixels), P.BAD_REQUEST)
        raw.error(raw_frame(json.dumps(dream_header(settings={"steps": [2]})).encode(), pixels), P.BAD_REQUEST)
        raw.error(raw_frame(json.dumps(dream_header(settings=[1])).encode(), pixels), P.BAD_REQUEST)
        raw.error(raw_frame(json.dumps(dream_header(id=[1])).encode(), pixels), P.BAD_REQUEST)
        raw.error(raw_frame(json.dumps(dream_header(extra=1)).encode(), pixels), P.BAD_REQUEST)
        # still in step, still working
        raw.send(raw_frame(json.dumps(dream_header(id="ok")).encode(), image().tobytes()))
        kinds = []
        while not kinds or kinds[-1] not in (P.RESULT, P.ERROR):
            msg = raw.reply(60)
            assert msg is not None
            kinds.append(msg.kind)
        assert kinds[-1] == P.RESULT and msg.id == "ok" and len(msg.payload) == W * H * 3
        raw.send(P.frame_bytes({"kind": "cancel", "id": "nothing-runs"}))  # harmless, no reply
        raw.send(P.frame_bytes({"kind": "hello", "id": 9}))
        assert raw.reply().header["id"] == 9
        assert raw.peak_rss_mb() < 2000
        raw.proc.stdin.close()
        assert raw.proc.wait(timeout=5) == 0  # stdin closed: a clean exit
    finally:
        raw.close()


BROKEN_STREAMS = {
    "bad magic": (prefix(2, 0, magic=b"GIMP") + b"{}", P.BAD_FRAME, "wrong magic"),
    "newer version": (prefix(2, 0, version=2) + b"{}", P.UNSUPPORTED_VERSION, "version 2"),
    "reserved bytes": (prefix(2, 0, reserved=b"\0\1\0") + b"{}", P.BAD_FRAME, "reserved"),
    "absurd header": (prefix(2 ** 32 - 1, 0), P.TOO_LARGE, "header claims"),
    "absurd payload": (prefix(2, 2 ** 63), P.TOO_LARGE, "payload of"),
    "empty header": (prefix(0, 0), P.BAD_FRAME, "between 2 and"),
    "truncated header": (prefix(100, 0) + b'{"kind":', P.BAD_FRAME, "cut off"),
    "truncated payload": (raw_frame(json.dumps(dream_header()).encode(), b"\0" * 50, W * H * 3), P.BAD_FRAME,
                          "cut off"),
    "truncated prefix": (P.MAGIC + b"\1", P.BAD_FRAME, "cut off"),
}


@pytest.mark.parametrize("name", sorted(BROKEN_STREAMS))
def test_worker_loop_reports_broken_streams(name):
    """The worker's own loop on byte streams: one error frame, then status 2 (nothing after it can be trusted)."""
    data, code, words = BROKEN_STREAMS[name]
    out = io.BytesIO()
    status = Worker(out, P.Limits()).serve(io.BytesIO(P.frame_bytes({"kind": "hello"}) + data))
    assert status == 2
    out.seek(0)
    assert P.read_message(out, P.Limits(), P.check_reply).kind == P.HELLO
    msg = P.read_message(out, P.Limits(), P.check_reply)
    assert msg.kind == P.ERROR and msg.header["code"] == code and words in msg.header["message"], msg.header
    assert P.read_message(out, P.Limits(), P.check_reply) is None


def test_worker_process_reports_broken_streams_and_exits():
    """The same in real processes, for the nastiest cases: one error frame, then a prompt exit; never a hang or
    a big allocation. The workers start at once, so their torch imports overlap."""
    chosen = ["absurd payload", "truncated payload", "bad magic"]
    raws = {name: Raw() for name in chosen}
    try:
        for name in chosen:
            data, code, words = BROKEN_STREAMS[name]
            raw = raws[name]
            raw.send(P.frame_bytes({"kind": "hello"}))
            assert raw.reply(60).kind == P.HELLO, name
            msg = raw.error(data, code, close=True)   # closing stdin makes every truncation final
            assert words in msg.header["message"], (name, msg.header)
            assert raw.peak_rss_mb() < 2000, name
            assert raw.proc.wait(timeout=5) in (0, 2), name
            assert b"Traceback" not in raw.proc.stderr.read(), name
    finally:
        for raw in raws.values():
            raw.close()


def test_nothing_but_frames_on_stdout():
    """Whatever the engine's libraries print after the worker claims stdout ends up on stderr."""
    code = ("import os, sys; from luciddream import worker; out = worker.claim_stdout(); print('noise'); "
            "os.write(1, b'more noise\\n'); from luciddream import protocol as P; "
            "P.write_frame(out, {'kind': 'hello'})")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, env=ENV)
    assert r.returncode == 0, r.stderr
    assert r.stdout == P.frame_bytes({"kind": "hello"})
    assert b"noise" in r.stderr and b"more noise" in r.stderr


PARENT = textwrap.dedent("""
    import subprocess, sys
    sys.path.insert(0, sys.argv[1])
    import protocol as P
    if sys.argv[2] == "client":            # the plug-in's way: pipes, stdin closes when we die
        c = P.Client.spawn(sys.executable, env=None)
        print(c.hello()["pid"], c.log_path, flush=True)
    else:                                  # stdin held open by the grandparent: only the parent watch can tell
        w = subprocess.Popen([sys.executable, "-m", "luciddream.worker"], stdin=sys.stdin, stdout=subprocess.PIPE)
        msg = P.read_message(w.stdout, P.Limits())
        print(msg.header["pid"], flush=True)
    sys.stdin.read() if sys.argv[2] == "client" else __import__("time").sleep(600)
""")


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with contextlib.suppress(OSError):  # a zombie child of someone else still counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    return False


@pytest.mark.skipif(sys.platform == "win32", reason="kill -9 and getppid are POSIX")
@pytest.mark.parametrize("how", ["client", "held-stdin"])
def test_worker_dies_with_its_parent(tmp_path, how):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script), str(PROTOCOL_DIR), how], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, env=ENV)
    try:
        if how == "held-stdin":  # the worker reads this hello from the stdin it shares with its parent
            parent.stdin.write(P.frame_bytes({"kind": "hello"}))
            parent.stdin.flush()
        words = _readline(parent.stdout, 60).split()
        pid = int(words[0])
        assert not _gone(pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=5)
        deadline = time.monotonic() + 2.0
        while not _gone(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(pid), "the worker outlived its parent by more than 2 s"
        for log in words[1:]:  # the dead parent could not clean up after its worker
            Path(os.fsdecode(log)).unlink()
    finally:
        parent.kill()
        parent.wait()
        with contextlib.suppress(OSError):
            parent.stdin.close()
        parent.stdout.close()


def _readline(stream, timeout: float) -> bytes:
    box: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: box.put(stream.readline()), daemon=True).start()
    line = box.get(timeout=timeout)
    assert line.strip(), "the parent printed nothing"
    return line


# ------------------------------------------------------------------------------------------- HTTP

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def server():
    proc = subprocess.Popen([sys.executable, "-m", "luciddream", "serve", "--port", "0", "--token", TOKEN,
                             "--queue", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        line = _readline(proc.stdout, 60)
        assert "listening on http://127.0.0.1:" in line and "token required" in line
        url = line.split("listening on ")[1].split()[0]
        yield url
    finally:
        stop_process(proc)


@pytest.fixture()
def http_client(server):
    return P.Client.connect(server, token=TOKEN, timeout=30)


def test_serve_round_trip(http_client):
    assert http_client.hello()["queue"] == 1
    img, mask = image(4, "u8", seed=2), box_mask()
    events = check_round_trip(dream(http_client, img, mask), img, mask)
    assert events[0].position == 0


def test_serve_refuses_wrong_or_missing_token(server):
    for token in ("wrong", None, TOKEN + "x", ""):
        with pytest.raises(P.WorkerError) as info:
            P.Client.connect(server, token=token).hello()
        assert info.value.code == P.UNAUTHORIZED and "token" in info.value.message
    with pytest.raises(P.WorkerError) as info:
        dream(P.Client.connect(server, token="wrong"), image())
    assert info.value.code == P.UNAUTHORIZED


def test_serve_cancel_queue_and_hang_up(http_client):
    slow = dream(http_client, image(), settings=SLOW)
    events = slow.events(timeout=60)
    assert next(events).position == 0
    assert next(events).fraction > 0
    waiting = dream(http_client, image(seed=1))
    first = next(waiting.events(timeout=30))
    assert first.position == 1 and "behind 1" in first.message
    with pytest.raises(P.WorkerError) as info:  # running + 1 waiting = the queue is full
        dream(http_client, image())
    assert info.value.code == P.BUSY and "try again" in info.value.message
    slow.cancel()
    with pytest.raises(P.JobCancelled):
        slow.result(timeout=30)
    assert len(waiting.result(timeout=60)) == W * H * 3  # the queue moved on
    # a client that hangs up cancels its job: the next one does not wait behind 1000 steps
    hung = dream(http_client, image(), settings=SLOW)
    next(hung.events(timeout=60))
    hung._sock.shutdown(socket.SHUT_RDWR)
    start = time.monotonic()
    img, mask = image(seed=7), box_mask()
    check_round_trip(dream(http_client, img, mask), img, mask)
    assert time.monotonic() - start < 20


def _post(url: str, path: str, body: bytes, headers: dict | None = None, method: str = "POST"):
    host, port = url.split("//")[1].strip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request(method, path, body=body, headers={"Authorization": "Bearer " + TOKEN, **(headers or {})})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, data


def _error_of(data: bytes) -> dict:
    msg = P.read_message(io.BytesIO(data), P.Limits(), P.check_reply)
    assert msg is not None and msg.kind == P.ERROR
    assert "Traceback" not in msg.header["message"]
    return msg.header


def test_serve_refuses_malformed_requests(server):
    pixels = image().tobytes()
    good = P.frame_bytes(dream_header(), pixels)
    cases = [
        (b"hello world, not a frame at all", 400, P.BAD_FRAME),
        (raw_frame(b"{nope"), 400, P.BAD_REQUEST),
        (raw_frame(json.dumps(dream_header()).encode(), pixels[:10]), 400, P.BAD_REQUEST),
        (raw_frame(json.dumps(dream_header(width=60000, height=60000)).encode()), 413, P.TOO_LARGE),
        (prefix(2, 2 ** 62) + b"{}", 413, P.TOO_LARGE),
        (raw_frame(json.dumps(dream_header(extra=1)).encode(), pixels), 400, P.BAD_REQUEST),
        (P.frame_bytes({"kind": "hello"}), 400, P.BAD_REQUEST),
        (good + b"trailing", 400, P.BAD_FRAME),
        (P.frame_bytes(dream_header(settings={**FAST, "device": "tpu"}), pixels), 422, P.BAD_INPUT),
    ]
    for body, status, code in cases:
        got, data = _post(server, "/v1/dream", body)
        assert (got, _error_of(data)["code"]) == (status, code), body[:40]
    got, data = _post(server, "/v1/dream", b"", {"Content-Length": str(10 ** 12)})
    assert got == 413 and _error_of(data)["code"] == P.TOO_LARGE
    got, data = _post(server, "/v1/nowhere", b"")
    assert got == 404 and _error_of(data)["code"] == P.NOT_FOUND
    got, data = _post(server, "/v1/jobs/0123/cancel", b"")
    assert got == 404 and _error_of(data)["code"] == P.NOT_FOUND
    got, data = _post(server, "/v1/dream", b"", {"Authorization": "Bearer nope"})
    assert got == 401
    # a body shorter than its Content-Length, then a hang-up: answered, not waited on for ever
    host, port = server.split("//")[1].strip("/").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(b"POST /v1/dream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode() +
                  b"\r\nContent-Length: %d\r\n\r\n" % len(good) + good[:500])
        s.shutdown(socket.SHUT_WR)
        answer = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400") and b"cut off" in answer
    # and the server still dreams
    img, mask = image(seed=9), box_mask()
    check_round_trip(dream(P.Client.connect(server, token=TOKEN), img, mask), img, mask)


def test_serve_refuses_open_address_without_token():
    r = subprocess.run([sys.executable, "-m", "luciddream", "serve", "--host", "0.0.0.0", "--port", "0"],
                       capture_output=True, text=True, timeout=60, env={**ENV, "LUCIDDREAM_TOKEN": ""})
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "--token" in r.stderr and "Traceback" not in r.stderr
    assert r.stdout == ""


def test_unreachable_server_is_one_sentence():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(P.WorkerError) as info:
        P.Client.connect(f"http://127.0.0.1:{port}").hello()
    assert info.value.code == P.UNREACHABLE and "luciddream serve" in info.value.message


# ------------------------------------------------------------------------------------------- host Pythons

def _pythons() -> dict[str, str]:
    """The oldest and newest Python 3 the plug-ins may run under (3.8 … 3.14) that exist on this machine."""
    found = {}
    for minor in range(8, 15):
        name = f"3.{minor}"
        candidates = sorted(Path("/root/.pyenv/versions").glob(f"{name}.*/bin/python3")) + [
            Path(p) for p in [shutil.which(f"python{name}")] if p]
        for c in candidates:
            if c.exists():
                found[name] = str(c)
                break
    return found


PYTHONS = _pythons()
HOST_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    import protocol as P
    assert "numpy" not in sys.modules and "luciddream" not in sys.modules
    w, h = 64, 48
    pixels = bytes((x * 7 + y * 13) % 256 for y in range(h) for x in range(w) for c in range(3))
    mask = bytes(255 if 10 <= y < 30 and 10 <= x < 40 else 0 for y in range(h) for x in range(w))
    if sys.argv[2] == "spawn":
        client = P.Client.spawn(sys.argv[3])
    else:
        client = P.Client.connect(sys.argv[2], token=sys.argv[3])
    assert client.hello()["protocol"] == 1
    job = client.dream(pixels, w, h, 3, "u8", mask, "layer:block3", {"steps": 2, "octaves": 1, "tile": 128})
    last = [p.fraction for p in job.events(timeout=60)][-1]
    out = job.result()
    kept = all(out[i * 3:i * 3 + 3] == pixels[i * 3:i * 3 + 3] for i in range(w * h) if not mask[i])
    changed = out != pixels
    client.close()
    print("ok", last, kept, changed)
""")


def _by_age(versions) -> list[str]:
    return sorted(versions, key=lambda v: int(v.split(".")[1]))


HOST_PYTHONS = sorted({_by_age(PYTHONS)[0], _by_age(PYTHONS)[-1]}) if PYTHONS else []


@pytest.mark.skipif(not HOST_PYTHONS, reason="no Python 3.8–3.14 interpreter found")
@pytest.mark.parametrize("version", HOST_PYTHONS or ["none"])
def test_client_under_oldest_and_newest_python(server, tmp_path, version):
    """The copied protocol package, under a host-like Python without numpy: HTTP for both, pipes for the oldest."""
    script = tmp_path / "host.py"
    script.write_text(HOST_SCRIPT)
    runs = [[server, TOKEN]] + ([["spawn", sys.executable]] if version == _by_age(PYTHONS)[0] else [])
    for args in runs:
        r = subprocess.run([PYTHONS[version], "-I", str(script), str(PROTOCOL_DIR), *args], capture_output=True,
                           text=True, timeout=120, env=ENV)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["ok", "1.0", "True", "True"], (version, args[0], r.stdout, r.stderr)


def test_protocol_package_compiles_everywhere_and_uses_only_the_stdlib():
    """Hosts copy the folder beside their plug-in and import it as `protocol` (GIMP) or `luciddream.protocol`
    (Krita): every file must parse as Python 3.8, import nothing but the standard library and, relatively, itself."""
    import ast

    own = {path.stem for path in PROTOCOL_FILES}
    assert {"__init__", "framing", "messages", "client"} <= own
    for path in PROTOCOL_FILES:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path), feature_version=(3, 8))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                assert node.level == 1 and (node.module or "").split(".")[0] in own | {""}, (path.name, node.module)
                if not node.module:
                    assert {a.name for a in node.names} <= own, (path.name, [a.name for a in node.names])
                continue
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                top = name.split(".")[0]
                assert top != "luciddream", (path.name, name)
                if hasattr(sys, "stdlib_module_names"):
                    assert top in set(sys.stdlib_module_names) | {"__future__"}, (path.name, name)
    for version, exe in sorted(PYTHONS.items()):
        check = ("import ast, sys; [ast.parse(open(f, encoding='utf-8').read()) for f in sys.argv[2:]]; "
                 "sys.path.insert(0, sys.argv[1]); import protocol; "
                 "assert not [m for m in sys.modules if m.startswith('luciddream')]")
        r = subprocess.run([exe, "-I", "-c", check, str(PROTOCOL_DIR), *map(str, PROTOCOL_FILES)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, (version, r.stderr)
