"""The frame parser and the request checks against arbitrary and mutated bytes (hypothesis, bounded).

Whatever arrives, reading must end in a Message, a clean end (None) or a WorkerError with a sentence, never any
other exception, and never read past the frame it was given.
"""
from __future__ import annotations

import io
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from luciddream import protocol as P

LIMITS = P.Limits(max_header=4096, max_pixels=64 * 64)
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Counting(io.BytesIO):
    """A stream that remembers the largest read it was asked for: no read may ask for more than the limits."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.largest = 0

    def read(self, n: int = -1) -> bytes:  # type: ignore[override]
        assert n is not None and 0 <= n <= max(P.PREFIX_SIZE, LIMITS.max_header, 1 << 20), n
        self.largest = max(self.largest, n)
        return super().read(n)


def read_all(data: bytes, validate=P.check_request) -> list:
    """Read frames until the end or the first broken one, as a peer does."""
    stream = Counting(data)
    seen = []
    while True:
        try:
            msg = P.read_message(stream, LIMITS, validate)
        except P.FrameError as exc:
            assert exc.code in (P.BAD_FRAME, P.TOO_LARGE, P.UNSUPPORTED_VERSION)
            assert exc.message.endswith(".") and "\n" not in exc.message
            seen.append(exc)
            return seen
        if msg is None:
            return seen
        if msg.error is not None:
            assert msg.error.code in (P.BAD_REQUEST, P.TOO_LARGE) and msg.error.message.endswith((".", ")"))
            assert msg.payload == b""
        seen.append(msg)


def valid_frame(width: int, height: int, channels: int, sample: str, mask: bool, payload_byte: int) -> bytes:
    req = P.JobRequest("j", width, height, channels, sample, mask, "layer:block3", {"steps": 2, "seed": 1})
    return P.frame_bytes(req.header(), bytes([payload_byte]) * req.payload_bytes)


frames = st.builds(valid_frame, st.integers(1, 12), st.integers(1, 12), st.integers(1, 4),
                   st.sampled_from(sorted(P.SAMPLE_BYTES)), st.booleans(), st.integers(0, 255))


@FUZZ
@given(st.binary(max_size=600))
def test_arbitrary_bytes(data):
    read_all(data)
    read_all(data, P.check_reply)


@FUZZ
@given(frames, st.data())
def test_mutated_frames(frame, data):
    edits = data.draw(st.lists(st.tuples(st.integers(0, len(frame) - 1), st.sampled_from(["flip", "cut", "dup"]),
                                         st.integers(1, 255)), min_size=1, max_size=4))
    b = bytearray(frame)
    for pos, how, value in edits:
        pos = min(pos, len(b) - 1)
        if how == "flip":
            b[pos] ^= value
        elif how == "cut":
            del b[pos:pos + value]
        else:
            b[pos:pos] = b[pos:pos + value]
        if not b:
            break
    read_all(bytes(b) + frame)


@FUZZ
@given(frames)
def test_valid_frames_round_trip(frame):
    (msg,) = read_all(frame)
    assert msg.error is None and msg.kind == P.DREAM
    req = P.JobRequest.from_header(msg.header, LIMITS)
    assert len(msg.payload) == req.payload_bytes
    assert P.frame_bytes(msg.header, msg.payload) == frame


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20)
FIELDS = ["id", "width", "height", "channels", "sample", "mask", "targets", "settings", "protocol", "client", "x"]


@FUZZ
@given(st.sampled_from(["dream", "hello", "cancel", "progress", "??"]),
       st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=9), st.integers(0, 70000))
def test_request_checks_only_raise_worker_errors(kind, fields, payload_len):
    header = dict(fields, kind=kind)
    raw = json.dumps(header).encode()
    try:
        P.check_request(P.parse_header(raw), payload_len, LIMITS)
    except P.WorkerError as exc:
        assert exc.code in (P.BAD_REQUEST, P.TOO_LARGE) and exc.message.endswith((".", ")"))
