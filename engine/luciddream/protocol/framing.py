"""Frames: how messages are cut out of a byte stream, and the sizes a peer refuses before allocating anything.

A frame is a fixed 20-byte prefix, a UTF-8 JSON header and raw payload bytes:

    offset  size  field
    0       4     magic b"LDRM"
    4       1     protocol version (1)
    5       3     reserved, zero
    8       4     header length, big-endian unsigned
    12      8     payload length, big-endian unsigned
    20      H     header: one JSON object, always with a "kind"
    20+H    P     payload: pixels (+ mask), or nothing

Every length is checked against `Limits` before anything of that size is allocated, and a payload is read in
chunks, so a frame that lies about its size costs at most what actually arrives.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import IO, Any, Callable, Dict, List, Optional, Union

from .errors import BAD_FRAME, BAD_REQUEST, TOO_LARGE, UNSUPPORTED_VERSION, FrameError, WorkerError

PROTOCOL_VERSION = 1
MAGIC = b"LDRM"
_PREFIX = struct.Struct(">4sB3sIQ")
PREFIX_SIZE = _PREFIX.size  # 20

# The image layouts a payload may hold; Limits sizes the largest payload from them.
SAMPLE_BYTES = {"u8": 1, "u16": 2, "f32": 4}  # samples are little-endian on the wire
MAX_CHANNELS = 4                              # gray, gray+alpha, RGB, RGBA
_ID_MAX = 128


@dataclass(frozen=True)
class Limits:
    """Sizes a peer refuses before allocating anything: a bad or hostile frame cannot make it swallow gigabytes."""

    max_header: int = 64 * 1024
    max_side: int = 65535
    max_pixels: int = 64 * 1024 * 1024  # 8192 × 8192

    @property
    def max_payload(self) -> int:
        """The largest payload any message may carry: RGBA f32 pixels plus a one-byte mask at max_pixels."""
        return self.max_pixels * (MAX_CHANNELS * SAMPLE_BYTES["f32"] + 1)

    @property
    def max_frame(self) -> int:
        return PREFIX_SIZE + self.max_header + self.max_payload


DEFAULT_LIMITS = Limits()  # what both sides accept unless told otherwise (`--max-pixels`, a hello's "max_pixels")


def valid_id(value: Any) -> Optional[Union[str, int]]:
    """A job id worth echoing back: a short string or a whole number; anything else is None."""
    if isinstance(value, str) and len(value) <= _ID_MAX:
        return value
    if type(value) is int and -2 ** 63 <= value < 2 ** 63:
        return value
    return None


# ---------------------------------------------------------------------------------------------------- writing

def encode(header: Dict[str, Any], *payload: Any) -> List[Any]:
    """A frame as a list of byte strings to write in order; payload parts (bytes-like) are not copied."""
    raw = json.dumps(header, separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode("utf-8")
    views = [memoryview(p).cast("B") for p in payload]
    size = sum(v.nbytes for v in views)
    return [_PREFIX.pack(MAGIC, PROTOCOL_VERSION, b"\0\0\0", len(raw), size) + raw] + views


def frame_bytes(header: Dict[str, Any], *payload: Any) -> bytes:
    """A whole frame as one bytes object (for tests and small messages)."""
    return b"".join(bytes(p) for p in encode(header, *payload))


def write_frame(stream: IO[bytes], header: Dict[str, Any], *payload: Any) -> None:
    for part in encode(header, *payload):
        stream.write(part)
    stream.flush()


# ---------------------------------------------------------------------------------------------------- reading

def _read_exact(stream: Any, n: int, what: str, started: bool = True) -> bytes:
    """Exactly n bytes; an early end is a FrameError (or b"" when nothing at all came and `started` is False)."""
    chunks = []
    got = 0
    while got < n:
        chunk = stream.read(n - got)
        if not chunk:
            if got == 0 and not started:
                return b""
            raise FrameError(BAD_FRAME, f"The message was cut off: its {what} ended after {got} of {n} bytes.")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _read_payload(stream: Any, n: int, keep: bool) -> bytearray:
    """Read n payload bytes in chunks, so memory grows only with what actually arrives; discard them unless `keep`."""
    out = bytearray()
    left = n
    while left > 0:
        chunk = stream.read(min(left, 1 << 20))
        if not chunk:
            raise FrameError(BAD_FRAME, f"The message was cut off: its payload ended after {n - left} of {n} bytes.")
        if keep:
            out += chunk
        left -= len(chunk)
    return out


def check_prefix(prefix: bytes, limits: Limits) -> tuple:
    """(header length, payload length) of a frame prefix, or a FrameError saying what is wrong with it."""
    magic, version, reserved, header_len, payload_len = _PREFIX.unpack(prefix)
    if magic != MAGIC:
        raise FrameError(BAD_FRAME, "This is not a luciddream message (wrong magic bytes): check that the plug-in "
                                    "talks to `luciddream worker` or `luciddream serve`.")
    if version != PROTOCOL_VERSION:
        raise FrameError(UNSUPPORTED_VERSION, f"The plug-in speaks protocol version {version} but the engine speaks "
                                              f"{PROTOCOL_VERSION}: install matching versions of both.")
    if reserved != b"\0\0\0":
        raise FrameError(BAD_FRAME, "The message's reserved bytes are not zero: it comes from a newer or broken "
                                    "sender.")
    if header_len < 2 or header_len > limits.max_header:
        raise FrameError(TOO_LARGE if header_len > limits.max_header else BAD_FRAME,
                         f"The message header claims {header_len} bytes; it must be between 2 and "
                         f"{limits.max_header}.")
    if payload_len > limits.max_payload:
        raise FrameError(TOO_LARGE, f"The message claims a payload of {payload_len} bytes, more than the "
                                    f"{limits.max_payload} this engine accepts.")
    return header_len, payload_len


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def parse_header(raw: bytes) -> Dict[str, Any]:
    """The header as a dict with a string "kind", or a WorkerError(BAD_REQUEST) with a sentence."""
    try:
        header = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise WorkerError(BAD_REQUEST, f"The message header is not valid UTF-8 JSON ({_short(exc)}).") from None
    if not isinstance(header, dict):
        raise WorkerError(BAD_REQUEST, "The message header must be a JSON object.")
    if not isinstance(header.get("kind"), str):
        raise WorkerError(BAD_REQUEST, 'The message header needs a "kind" (a string such as "dream").')
    return header


@dataclass
class Message:
    """One frame that arrived intact. `error` is set when its header was not acceptable (its payload was skipped)."""

    kind: str
    header: Dict[str, Any]
    payload: Union[bytes, bytearray] = b""
    error: Optional[WorkerError] = None

    @property
    def id(self) -> Optional[Union[str, int]]:
        return valid_id(self.header.get("id"))


Validator = Callable[[Dict[str, Any], int, Limits], None]


def read_message(stream: Any, limits: Limits, validate: Optional[Validator] = None) -> Optional[Message]:
    """The next frame from a blocking binary stream, or None at a clean end of stream.

    Raises FrameError when the stream is broken: the caller should report it and close, since nothing after it
    can be trusted. A header that `validate` rejects does not break the stream: the payload is read and dropped
    and the Message comes back with `error` set, so the peer can answer and carry on.
    """
    prefix = _read_exact(stream, PREFIX_SIZE, "prefix", started=False)
    if not prefix:
        return None
    header_len, payload_len = check_prefix(prefix, limits)
    raw = _read_exact(stream, header_len, "header")
    try:
        header = parse_header(raw)
        if validate is not None:
            validate(header, payload_len, limits)
    except FrameError:
        raise
    except WorkerError as exc:
        _read_payload(stream, payload_len, keep=False)
        header = _loads_quietly(raw)
        return Message(str(header.get("kind", "")), header, b"", exc)
    return Message(header["kind"], header, _read_payload(stream, payload_len, keep=True))


def _loads_quietly(raw: bytes) -> Dict[str, Any]:
    try:
        header = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return {}
    return header if isinstance(header, dict) else {}


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."
