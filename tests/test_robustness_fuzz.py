"""Fuzzing for a bounded time in every test run (hypothesis): CLI arguments, damaged image files, the worker's
request loop in this process, and a real worker process fed with well-framed nonsense.

The properties are the promises of docs/robustness.md: the CLI exits 0 with a readable output or 2 with one line
and no traceback, and never touches the input or leaves a temporary file; reading any file gives pixels or a
DreamError; the worker answers every request with frames (an error sentence where it must refuse) and stays
in step. benchmarks/fuzz.py runs the same properties for longer.
"""
from __future__ import annotations

import io
import os
import queue
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from luciddream import DreamError, files
from luciddream import protocol as P
from luciddream.cli import main
from luciddream.worker import Worker

from conftest import fixture_image

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
EXAMPLES = int(os.environ.get("LUCIDDREAM_FUZZ_EXAMPLES", "1"))  # benchmarks/fuzz.py raises this
FUZZ = dict(deadline=None, suppress_health_check=list(HealthCheck), derandomize=EXAMPLES == 1)


def fuzz(examples: int):
    return settings(max_examples=examples * EXAMPLES, **FUZZ)


# ------------------------------------------------------------------------------------------- CLI arguments

TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=8)  # what a shell can pass
NUMBERS = st.one_of(st.integers(-3, 3).map(str), st.sampled_from(["0", "64", "1e308", "-1e308", "nan", "inf", "-inf",
                                                                   "99999999999999999999", "0x10", "1_0", "", " ",
                                                                   "½", "1,5", "--", "-q"]),
                    st.floats(allow_nan=True, allow_infinity=True).map(repr), TEXT)


def _slow_steps(value: str) -> bool:
    try:
        return 4 <= int(value) <= 1000
    except ValueError:
        return False


TARGETS = st.one_of(st.sampled_from(["goldfish", "layer:block3", "layer:block3:1,2", "class:5000", "class:-1",
                                     "layer:nope", "goldfish=nan", ",", "=", "goldfish=1e400", "layer:block3:",
                                     "peacock=0.5, layer:block2=-1", "layer:block3:99999", "class:", ":", "\0"]),
                    TEXT)
FLAGS = {"--octaves": NUMBERS, "--octave-scale": NUMBERS, "--steps": NUMBERS.filter(lambda v: not _slow_steps(v)),
         "--step-size": NUMBERS, "--tile": NUMBERS, "--feather": NUMBERS, "--seed": NUMBERS, "--max-pixels": NUMBERS,
         "-t": TARGETS,
         "--model": st.sampled_from(["lite0", "LITE0", "vgg", "", "lite0 "]),
         "--device": st.sampled_from(["cpu", "auto", "cuda", "gpu", ""])}
PATHS = ["in.png", "mask.png", "small-mask.png", "missing.png", "folder", "notes.txt", "out.png", "out.jpg",
         "out.xyz", "folder/out.png", "nowhere/out.png", "out", ""]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("fuzz-cli")
    Image.fromarray(fixture_image("coffee", (40, 36))).save(d / "in.png")
    mask = np.zeros((36, 40), np.uint8)
    mask[10:20, 5:30] = 255
    Image.fromarray(mask).save(d / "mask.png")
    Image.fromarray(mask[:10, :10]).save(d / "small-mask.png")
    (d / "notes.txt").write_text("not an image")
    (d / "folder").mkdir()
    return d


def _snapshot(d: Path) -> dict:
    return {p.relative_to(d): p.read_bytes() for p in d.rglob("*") if p.is_file()}


@fuzz(60)
@given(st.lists(st.one_of(st.tuples(st.sampled_from(sorted(FLAGS)), st.data()),
                          st.tuples(st.sampled_from(["--mask", "--guide", "-o", "--weights"]),
                                    st.sampled_from(PATHS)),
                          st.sampled_from(["-q", "--bogus", "-", "--steps=2", "-o"])), max_size=6),
       st.sampled_from(PATHS), st.sampled_from(PATHS))
def test_cli_arguments(workdir, capsys, parts, source, output):
    argv = [source, "-o", output]
    for part in parts:
        if isinstance(part, str):
            argv.append(part)
        elif isinstance(part[1], str):
            argv += list(part)
        else:
            argv += [part[0], part[1].draw(FLAGS[part[0]])]
    argv += ["--octaves", "1", "--steps", "1", "-q"] if not any(a.startswith("--steps") for a in argv) else ["-q"]
    before = _snapshot(workdir)
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        try:
            code = main(["dream", *argv])
        except SystemExit as exc:
            code = exc.code
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    after = _snapshot(workdir)
    written = {p for p in after if after[p] != before.get(p)}
    assert not any(".part" in str(p) for p in after), "a temporary file was left behind"
    assert not any(p.name.startswith(".") for p in after)
    if code == 0:
        (path,) = written   # the output, and nothing else
        assert files.read_image(workdir / path).shape[:2] == (36, 40)
        if path in before:  # the next example starts from the same files
            (workdir / path).write_bytes(before[path])
        else:
            (workdir / path).unlink()
    else:
        assert code == 2, (argv, err)
        assert err.startswith("luciddream: error: ") and err.count("\n") == 1, (argv, err)
        assert not written, (argv, written)


# ------------------------------------------------------------------------------------------- image files

def _samples(tmp: Path) -> list[bytes]:
    rgb = Image.fromarray(fixture_image("chelsea", (24, 20)))
    out = []
    for fmt, im, kw in [("PNG", rgb, {}), ("JPEG", rgb, {"quality": 80}), ("TIFF", rgb, {}), ("GIF", rgb, {}),
                        ("PNG", rgb.convert("P"), {"transparency": 3}), ("TIFF", rgb.convert("CMYK"), {}),
                        ("WEBP", rgb, {}), ("BMP", rgb, {}),
                        ("PNG", Image.fromarray(np.arange(480, dtype=np.uint16).reshape(20, 24) * 100), {})]:
        buf = io.BytesIO()
        im.save(buf, format=fmt, **kw)
        out.append(buf.getvalue())
    return out


SAMPLES = _samples(Path("."))


@fuzz(150)
@given(st.sampled_from(range(len(SAMPLES))), st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255),
                                                                st.sampled_from(["set", "cut", "insert"])),
                                                      min_size=1, max_size=5))
def test_damaged_image_files(tmp_path_factory, index, edits):
    data = bytearray(SAMPLES[index])
    for where, value, how in edits:
        i = min(int(where * len(data)), max(0, len(data) - 1))
        if how == "set" and data:
            data[i] = value
        elif how == "cut":
            del data[i:i + value + 1]
        else:
            data[i:i] = bytes([value]) * 3
    path = tmp_path_factory.getbasetemp() / "fuzzed.img"
    path.write_bytes(bytes(data))
    for read in (files.read_image, files.read_mask):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")   # a warning would be a second line on the CLI's stderr
                a = read(path)
        except DreamError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc)
        else:
            assert isinstance(a, np.ndarray) and a.dtype in (np.uint8, np.uint16, np.float32) and a.size > 0


# ------------------------------------------------------------------------------------------- the worker's loop

LIMITS = P.Limits(max_header=4096, max_pixels=48 * 48)
FLOATS = st.floats(allow_nan=False, allow_infinity=False)   # what JSON can carry
JSON = st.recursive(st.none() | st.booleans() | st.integers() | FLOATS | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                max_size=3), max_leaves=8)
SETTING_VALUES = st.one_of(st.integers(-2, 2000), FLOATS, st.sampled_from(["lite0", "cpu", "x"]),
                           st.booleans(), st.none())


@st.composite
def requests(draw) -> bytes:
    """One frame: a hello, a cancel, or a dream whose header and payload length are partly wrong."""
    kind = draw(st.sampled_from(["hello", "cancel", "dream", "dream", "dream", "result", "x"]))
    header: dict = {"kind": kind, "id": draw(st.one_of(st.text(max_size=5), st.integers(-9, 9), JSON))}
    payload = b""
    if kind == "dream":
        side = st.one_of(st.integers(0, 48), st.sampled_from([32, 40]))   # often big enough to dream
        w, h, c = draw(side), draw(side), draw(st.integers(0, 5))
        sample = draw(st.sampled_from(["u8", "u16", "f32", "f64"]))
        mask = draw(st.booleans())
        header.update(width=w, height=h, channels=c, sample=sample, mask=mask,
                      targets=draw(st.one_of(st.none(), st.sampled_from(["layer:block3", "goldfish", "nope"]))),
                      settings=draw(st.dictionaries(st.sampled_from(["steps", "octaves", "tile", "seed", "model",
                                                                     "device", "feather", "weights", "x"]),
                                                    SETTING_VALUES, max_size=4)))
        size = w * h * max(c, 0) * P.SAMPLE_BYTES.get(sample, 1) + (w * h if mask else 0)
        size += draw(st.sampled_from([0, 0, 0, -1, 1]))
        payload = draw(st.sampled_from([b"\0", b"\xff", b"\x7f"])) * max(size, 0)
        if sample == "f32" and payload[:1] == b"\xff":
            payload = b"\0" * len(payload)   # NaN floats are refused elsewhere; here the point is the framing
    for key in draw(st.lists(st.sampled_from(["width", "sample", "settings", "extra"]), max_size=1)):
        header[key] = draw(JSON)
    return P.frame_bytes(header, payload)


def _replies(data: bytes) -> list[P.Message]:
    out = io.BytesIO()
    worker = Worker(out, LIMITS, heartbeat=0.0)
    status = worker.serve(io.BytesIO(data))
    for t in threading.enumerate():   # jobs still running when the stream ended were told to stop
        if t.name.startswith("luciddream-job-"):
            t.join(60)
            assert not t.is_alive(), "a cancelled job did not stop"
    out.seek(0)
    replies = []
    while True:
        msg = P.read_message(out, P.Limits(), P.check_reply)
        if msg is None:
            break
        assert msg.error is None, msg.error
        replies.append(msg)
    assert status in (0, 2)
    return replies


@fuzz(40)
@given(st.lists(requests(), min_size=1, max_size=4))
def test_worker_loop_answers_every_request(frames):
    replies = _replies(b"".join(frames) + P.frame_bytes({"kind": "hello", "id": "last"}))
    assert any(m.kind == P.HELLO and m.id == "last" for m in replies)   # still in step at the end
    for msg in replies:
        if msg.kind == P.ERROR:
            text = msg.header["message"]
            assert text and "\n" not in text and "Traceback" not in text
            assert msg.header["code"] != P.INTERNAL, text


# ------------------------------------------------------------------------------------------- a real worker

@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    log_path = tmp_path_factory.mktemp("fuzz-worker") / "worker.log"
    log_file = open(log_path, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "luciddream", "worker", "--max-pixels", str(48 * 48)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_file, env=ENV)
    replies: queue.Queue = queue.Queue()

    def read() -> None:
        try:
            while True:
                msg = P.read_message(proc.stdout, P.Limits(), P.check_reply)
                replies.put(msg)
                if msg is None:
                    return
        except P.WorkerError as exc:
            replies.put(exc)

    threading.Thread(target=read, daemon=True).start()
    yield proc, replies
    proc.stdin.close()
    try:
        proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.wait()
        log_file.close()
        log = log_path.read_text(errors="replace")
        proc.stdout.close()
    assert "Traceback" not in log, log[-3000:]


@fuzz(25)
@given(st.lists(requests(), min_size=1, max_size=3), st.integers(0, 10 ** 9))
def test_real_worker_stays_in_step(worker, frames, tag):
    proc, replies = worker
    proc.stdin.write(b"".join(frames) + P.frame_bytes({"kind": "cancel"}) +
                     P.frame_bytes({"kind": "hello", "id": f"h{tag}"}))
    proc.stdin.flush()
    while True:
        msg = replies.get(timeout=120)   # every wait bounded: a hang fails here
        assert isinstance(msg, P.Message), f"the worker broke the stream: {msg}"
        if msg.kind == P.ERROR:
            assert msg.header["code"] != P.INTERNAL and "\n" not in msg.header["message"], msg.header
        if msg.kind == P.HELLO and msg.id == f"h{tag}":
            break
    assert proc.poll() is None


# ------------------------------------------------------------------------------------------- a real server

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log_path = tmp_path_factory.mktemp("fuzz-serve") / "serve.log"
    log_file = open(log_path, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "luciddream", "serve", "--port", "0", "--queue", "2",
                             "--max-pixels", str(48 * 48), "--body-timeout", "5"], stdout=subprocess.PIPE,
                            stderr=log_file, env=ENV, text=True)
    try:
        url = proc.stdout.readline().split("listening on ")[1].split()[0]
        yield url.split("//")[1].strip("/").rsplit(":", 1)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        log_file.close()
    log = log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]


BODY_CUTS = st.sampled_from([None, None, None, 0, 1, 19, 21, -1, +1])   # Content-Length that lies, sometimes


@fuzz(25)
@given(requests(), BODY_CUTS, st.sampled_from(["/v1/dream", "/v1/dream", "/v1/hello", "/v1/jobs/x/cancel", "/"]))
def test_real_server_answers_every_request(server, frame, cut, path):
    """Well-framed nonsense over HTTP, sometimes with a Content-Length that lies: every request gets a status and an
    error frame with a sentence (never `internal`), every stream ends with one result or error, and the server
    keeps answering."""
    import http.client

    host, port = server
    body = frame
    length = len(body)
    if cut is not None:   # an absolute length, or one off the real one; the body sent is cut to it when shorter
        length = max(0, len(body) + cut) if cut in (-1, 1) else cut
        body = body[:length]
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.putrequest("POST", path)
    conn.putheader("Content-Length", str(length))
    conn.endheaders()
    try:
        conn.send(body)
        response = conn.getresponse()
        if response.status != 200 or path != "/v1/dream":
            data = response.read()
            assert response.status in (200, 400, 404, 408, 411, 413, 422, 503), response.status
            if data:
                msg = P.read_message(io.BytesIO(data), P.Limits(), P.check_reply)
                assert msg is not None and (msg.kind == P.ERROR or path == "/v1/hello"), data[:100]
                if msg.kind == P.ERROR:
                    assert msg.header["code"] != P.INTERNAL and "\n" not in msg.header["message"], msg.header
        else:
            _finish_stream(host, port, response)
    finally:
        conn.close()
    check = http.client.HTTPConnection(host, int(port), timeout=60)
    check.request("GET", "/v1/hello")
    assert check.getresponse().status == 200
    check.close()


def _finish_stream(host: str, port: str, response) -> None:
    """Read a job's stream to its end, cancelling the job first (it may have asked for thousands of steps)."""
    import http.client

    first = P.read_message(response, P.Limits(), P.check_reply)
    assert first is not None and first.kind == P.QUEUED, first
    cancel = http.client.HTTPConnection(host, int(port), timeout=60)   # do not wait for 2000 steps
    cancel.request("POST", f"/v1/jobs/{first.header['job']}/cancel", body=b"")
    cancel.getresponse().read()
    cancel.close()
    while True:
        msg = P.read_message(response, P.Limits(), P.check_reply)
        assert msg is not None, "the stream ended without a result or an error"
        if msg.kind in (P.RESULT, P.ERROR):
            if msg.kind == P.ERROR:
                assert msg.header["code"] != P.INTERNAL, msg.header
            break
