"""luciddream's wire protocol and its client, in one file that only needs Python's standard library (3.8+).

Why one file: GIMP's and Krita's bundled Pythons cannot import torch (often not even numpy), and GIMP kills a
plug-in's process when the user presses Cancel. So the engine runs in its own process (`luciddream worker` on
pipes, or `luciddream serve` over HTTP) and the plug-ins talk to it through this module, which an installer copies
beside them. It must therefore never import anything from luciddream.

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
chunks, so a frame that lies about its size costs at most what actually arrives. docs/protocol.md has the
message kinds, fields, error codes and HTTP endpoints.

Typical use in a plug-in:

    client = Client.spawn("/path/to/engine/python")          # or Client.connect("http://127.0.0.1:8765")
    job = client.dream(pixels, width, height, 4, "u8", mask, "goldfish", {"steps": 10, "seed": 1})
    for p in job.events():
        show(p.fraction, p.message)                             # call job.cancel() to stop
    new_pixels = job.result()                                   # raises WorkerError with a sentence to show
"""
from __future__ import annotations

import array
import http.client
import itertools
import json
import os
import queue
import re
import socket
import struct
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from typing import IO, Any, Callable, Dict, Iterator, List, Optional, Sequence, Union
from urllib.parse import quote, urlsplit

PROTOCOL_VERSION = 1
MAGIC = b"LDRM"
_PREFIX = struct.Struct(">4sB3sIQ")
PREFIX_SIZE = _PREFIX.size  # 20

# Message kinds. Requests go to the engine, replies come back.
HELLO = "hello"          # request and reply: ping, versions, what the engine offers
DREAM = "dream"          # request: one job; payload = pixels, then the mask when "mask" is true
CANCEL = "cancel"        # request: stop the job with this id (no reply of its own; the job ends "cancelled")
QUEUED = "queued"        # reply (HTTP only): the job waits behind `position` others; `job` names it for cancel
PROGRESS = "progress"    # reply: fraction done, octave, a short message
RESULT = "result"        # reply: payload = the new pixels, same layout as the request
ERROR = "error"          # reply: `code` and a `message` sentence meant for the user
REQUEST_KINDS = (HELLO, DREAM, CANCEL)
REPLY_KINDS = (HELLO, QUEUED, PROGRESS, RESULT, ERROR)

# Error codes: what went wrong, so a plug-in can react without parsing the sentence.
BAD_FRAME = "bad_frame"                      # the byte stream is not protocol frames; the connection ends
UNSUPPORTED_VERSION = "unsupported_version"  # plug-in and engine speak different protocol versions
BAD_REQUEST = "bad_request"                  # well framed, but the header is wrong (JSON, fields, lengths)
TOO_LARGE = "too_large"                      # the image or header is over the limits
BAD_INPUT = "bad_input"                      # the engine refused the job: target, setting or mask (a DreamError)
CANCELLED = "cancelled"                      # the job was cancelled; the image is unchanged
BUSY = "busy"                                # a job is already running (worker) or the queue is full (serve)
UNAUTHORIZED = "unauthorized"                # missing or wrong token
NOT_FOUND = "not_found"                      # unknown HTTP path or job
OUT_OF_MEMORY = "out_of_memory"              # the device ran out of memory
INTERNAL = "internal"                        # a bug in the engine; its log has the traceback
WORKER_GONE = "worker_gone"                  # client side: the engine process exited or the connection dropped
UNREACHABLE = "unreachable"                  # client side: nothing answers at the server's address
TIMEOUT = "timeout"                          # client side: no word from the engine in time

SAMPLE_BYTES = {"u8": 1, "u16": 2, "f32": 4}  # samples are little-endian on the wire
MAX_CHANNELS = 4                              # gray, gray+alpha, RGB, RGBA
_SETTING_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")
_ID_MAX = 128
PARENT_ENV = "LUCIDDREAM_PARENT_PID"  # Client.spawn's pid: the worker exits when that process is gone


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


class WorkerError(Exception):
    """Something the engine (or the way to it) refused or could not do: `code` for programs, `message` for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return self.message


class FrameError(WorkerError):
    """The byte stream itself is broken (bad magic, truncated, impossible length): nothing after it can be trusted."""


class JobCancelled(WorkerError):
    """The job was cancelled; the image is unchanged."""

    def __init__(self, message: str = "Cancelled: the image was not changed.") -> None:
        super().__init__(CANCELLED, message)


def error_for(code: str, message: str) -> WorkerError:
    """The exception a client raises for an error reply."""
    return JobCancelled(message) if code == CANCELLED else WorkerError(code, message)


# ---------------------------------------------------------------------------------------------------- frames

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


# ---------------------------------------------------------------------------------------------------- headers

def valid_id(value: Any) -> Optional[Union[str, int]]:
    """A job id worth echoing back: a short string or a whole number; anything else is None."""
    if isinstance(value, str) and len(value) <= _ID_MAX:
        return value
    if type(value) is int and -2 ** 63 <= value < 2 ** 63:
        return value
    return None


def _fields(header: Dict[str, Any], required: Sequence[str], optional: Sequence[str]) -> None:
    kind = header["kind"]
    known = set(required) | set(optional) | {"kind"}
    unknown = sorted(str(k) for k in header if k not in known)
    if unknown:
        raise WorkerError(BAD_REQUEST, f'Unknown field {", ".join(repr(k) for k in unknown)} in a "{kind}" '
                                       f'message: its fields are {", ".join(sorted(known))}.')
    missing = [k for k in required if k not in header]
    if missing:
        raise WorkerError(BAD_REQUEST, f'A "{kind}" message needs the field {", ".join(repr(k) for k in missing)}.')
    if "id" in header and valid_id(header["id"]) is None:
        raise WorkerError(BAD_REQUEST, f'The "id" of a "{kind}" message must be a string of at most {_ID_MAX} '
                                       f"characters or a whole number.")


def _whole(header: Dict[str, Any], name: str, low: int, high: int, size: bool = False) -> int:
    """A whole-number field; `size`: a value over the top is TOO_LARGE (a limit) rather than a BAD_REQUEST."""
    value = header[name]
    if type(value) is not int:
        raise WorkerError(BAD_REQUEST, f'"{name}" must be a whole number, not {_show(value)}.')
    if not low <= value <= high:
        raise WorkerError(TOO_LARGE if size and value > high else BAD_REQUEST,
                          f'"{name}" must be between {low} and {high}; got {value}.')
    return value


def _show(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(frozen=True)
class JobRequest:
    """What a "dream" message asks for. The payload is width*height*channels samples, then width*height mask bytes."""

    id: Union[str, int]
    width: int
    height: int
    channels: int
    sample: str
    mask: bool = False
    targets: Optional[str] = None
    settings: Optional[Dict[str, Any]] = None

    @property
    def image_bytes(self) -> int:
        return self.width * self.height * self.channels * SAMPLE_BYTES[self.sample]

    @property
    def mask_bytes(self) -> int:
        return self.width * self.height if self.mask else 0

    @property
    def payload_bytes(self) -> int:
        return self.image_bytes + self.mask_bytes

    def header(self) -> Dict[str, Any]:
        return {"kind": DREAM, "id": self.id, "width": self.width, "height": self.height,
                "channels": self.channels, "sample": self.sample, "mask": self.mask, "targets": self.targets,
                "settings": dict(self.settings or {})}

    @classmethod
    def from_header(cls, header: Dict[str, Any], limits: Limits) -> "JobRequest":
        """Check every field of a dream header and say which one is wrong and how."""
        _fields(header, ("id", "width", "height", "channels", "sample"), ("mask", "targets", "settings"))
        width = _whole(header, "width", 1, limits.max_side, size=True)
        height = _whole(header, "height", 1, limits.max_side, size=True)
        if width * height > limits.max_pixels:
            raise WorkerError(TOO_LARGE, f"The image is {width}×{height} pixels, more than the "
                                         f"{limits.max_pixels:,} this engine accepts: dream a smaller selection, "
                                         f"or start the engine with a larger --max-pixels.")
        channels = _whole(header, "channels", 1, MAX_CHANNELS)
        sample = header["sample"]
        if not isinstance(sample, str) or sample not in SAMPLE_BYTES:  # a list or object is not hashable
            raise WorkerError(BAD_REQUEST, f'"sample" must be one of {", ".join(SAMPLE_BYTES)}, not {_show(sample)}.')
        mask = header.get("mask", False)
        if not isinstance(mask, bool):
            raise WorkerError(BAD_REQUEST, f'"mask" must be true or false, not {_show(mask)}.')
        targets = header.get("targets")
        if targets is not None and not isinstance(targets, str):
            raise WorkerError(BAD_REQUEST, f'"targets" must be a string such as "goldfish, layer:block6", not '
                                           f"{_show(targets)}.")
        settings = header.get("settings")
        settings = {} if settings is None else settings
        if not isinstance(settings, dict):
            raise WorkerError(BAD_REQUEST, f'"settings" must be a JSON object, not {_show(settings)}.')
        for key, value in settings.items():
            if not _SETTING_NAME.match(key):
                raise WorkerError(BAD_REQUEST, f"{_show(key)} is not a setting name.")
            if value is not None and not isinstance(value, (str, int, float, bool)):
                raise WorkerError(BAD_REQUEST, f'The setting "{key}" must be a number or a string, not '
                                               f"{_show(value)}.")
        return cls(header["id"], width, height, channels, sample, mask, targets, dict(settings))


def check_request(header: Dict[str, Any], payload_len: int, limits: Limits) -> None:
    """Validator for the engine side: every request kind, its fields and its exact payload length."""
    kind = header["kind"]
    if kind == DREAM:
        job = JobRequest.from_header(header, limits)
        if payload_len != job.payload_bytes:
            mask = f" plus a {job.mask_bytes}-byte mask" if job.mask else ""
            raise WorkerError(BAD_REQUEST, f"A {job.width}×{job.height} image with {job.channels} {job.sample} "
                                           f"channel(s) is {job.image_bytes} bytes{mask}, but the message carries "
                                           f"{payload_len}.")
        return
    if kind == HELLO:
        _fields(header, (), ("id", "protocol", "client"))
    elif kind == CANCEL:
        _fields(header, (), ("id",))
    else:
        raise WorkerError(BAD_REQUEST, f'Unknown message kind {_show(kind)}: requests are '
                                       f'{", ".join(REQUEST_KINDS)}.')
    if payload_len:
        raise WorkerError(BAD_REQUEST, f'A "{kind}" message carries no payload, but this one has {payload_len} '
                                       f"bytes.")


def check_reply(header: Dict[str, Any], payload_len: int, limits: Limits) -> None:
    """Validator for the client side: lenient about extra fields (newer engines may add some), strict about sizes."""
    kind = header["kind"]
    if kind not in REPLY_KINDS:
        raise WorkerError(BAD_REQUEST, f"The engine sent an unknown message kind {_show(kind)}.")
    if kind != RESULT and payload_len:
        raise WorkerError(BAD_REQUEST, f'The engine sent a "{kind}" message with a payload.')


# ---------------------------------------------------------------------------------------------------- client

@dataclass(frozen=True)
class Progress:
    """One progress event. `position` > 0 means the job is still waiting behind that many others (HTTP only)."""

    fraction: float
    message: str = ""
    octave: Optional[int] = None
    octaves: Optional[int] = None
    position: Optional[int] = None



class Job:
    """A running dream: iterate `events()` for progress, then `result()`; `cancel()` from any thread."""

    def __init__(self, request: JobRequest, inbox: "queue.Queue[Any]", cancel: Callable[["Job"], None],
                 finished: Optional[Callable[["Job"], None]] = None, stall: Optional[float] = None,
                 stalled: Optional[Callable[["Job"], None]] = None) -> None:
        self.request = request
        self.id = request.id
        self.server_job: Optional[str] = None   # the server's name for it (HTTP), for the cancel endpoint
        self._inbox = inbox
        self._cancel = cancel
        self._finished = finished
        self._stall = stall        # seconds without any frame after which the engine counts as hung (None: never)
        self._stalled = stalled    # what to do with a hung engine (the pipe transport stops the worker)
        self._result: Optional[Union[bytes, bytearray]] = None
        self._error: Optional[WorkerError] = None
        self._done = False
        self.last: Progress = Progress(0.0)

    @property
    def done(self) -> bool:
        return self._done

    def cancel(self) -> None:
        """Ask the engine to stop; the job then ends with JobCancelled (or its result, if it had just finished)."""
        if not self._done:
            self._cancel(self)

    def events(self, timeout: Optional[float] = None) -> Iterator[Progress]:
        """Progress events until the job ends. `timeout`: most seconds to wait for the next one; the job goes on.

        Without a timeout, an engine that promised news every few seconds (its hello's "heartbeat") and then falls
        silent for the client's stall_timeout is taken for hung: the job ends with a TIMEOUT error (result() raises
        it) and a spawned worker is stopped, so a host never waits for ever.
        """
        while not self._done:
            wait = timeout if timeout is not None else self._stall
            try:
                item = self._inbox.get(timeout=wait)
            except queue.Empty:
                if timeout is None and wait is not None:
                    if self._stalled is not None:
                        self._stalled(self)
                    self._end(error=WorkerError(TIMEOUT, f"The engine sent no news for {wait:g} seconds: it has "
                                                         f"hung or its machine is overloaded, so the job was "
                                                         f"stopped; try again, perhaps with a smaller selection."))
                    return
                raise WorkerError(TIMEOUT, f"The engine sent no news for {timeout:g} seconds: it may be stuck or "
                                           f"overloaded; cancel and try a smaller image or tile.") from None
            event = self._take(item)
            if event is not None:
                yield event

    def result(self, timeout: Optional[float] = None) -> bytes:
        """The new pixels, in the request's layout; raises WorkerError (JobCancelled when cancelled)."""
        for _ in self.events(timeout):
            pass
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return bytes(_from_little(self._result, self.request.sample))

    def _take(self, item: Any) -> Optional[Progress]:
        if isinstance(item, WorkerError):
            return self._end(error=item)
        msg: Message = item
        h = msg.header
        if msg.error is not None:
            return self._end(error=msg.error)
        if msg.kind == PROGRESS:
            self.last = Progress(_number(h.get("fraction"), 0.0), str(h.get("message", "")),
                                 _opt_int(h.get("octave")), _opt_int(h.get("octaves")))
            return self.last
        if msg.kind == QUEUED:
            if isinstance(h.get("job"), str):
                self.server_job = h["job"]
            position = _opt_int(h.get("position")) or 0
            text = "waiting for the engine" if position <= 0 else f"waiting behind {position} other job(s)"
            return Progress(self.last.fraction, text, position=position)
        if msg.kind == ERROR:
            return self._end(error=error_for(str(h.get("code", INTERNAL)), str(h.get("message", "Engine error."))))
        if msg.kind == RESULT:
            r = self.request
            same = (h.get("width"), h.get("height"), h.get("channels"), h.get("sample")) == (
                r.width, r.height, r.channels, r.sample)
            if not same or len(msg.payload) != r.image_bytes:
                return self._end(error=WorkerError(BAD_FRAME, "The engine's result does not have the size of the "
                                                              "image it was sent; update the engine."))
            self._result = msg.payload
            self.last = Progress(1.0, "done")
            return self._end()
        return None

    def _end(self, error: Optional[WorkerError] = None) -> None:
        self._error = error
        self._done = True
        if self._finished is not None:
            self._finished(self)
        return None


def _number(value: Any, default: float) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def _opt_int(value: Any) -> Optional[int]:
    return value if type(value) is int else None


def _to_little(data: Any, sample: str) -> Any:
    """Samples travel little-endian; only a big-endian host has to swap them (array is in every Python)."""
    if sys.byteorder == "little" or sample == "u8":
        return data
    a = array.array("H" if sample == "u16" else "f")
    a.frombytes(bytes(data))
    a.byteswap()
    return a.tobytes()


_from_little = _to_little  # swapping is its own inverse


def make_request(job_id: Union[str, int], pixels: Any, width: int, height: int, channels: int, sample_type: str,
                 mask: Any = None, targets: Optional[str] = "", settings: Optional[Dict[str, Any]] = None,
                 limits: Limits = Limits()) -> JobRequest:
    """Check a job on the plug-in's side, so a wrong buffer size is reported before anything is sent."""
    header = {"kind": DREAM, "id": job_id, "width": width, "height": height, "channels": channels,
              "sample": sample_type, "mask": mask is not None, "targets": targets or None,
              "settings": dict(settings or {})}
    req = JobRequest.from_header(header, limits)
    got = memoryview(pixels).nbytes
    if got != req.image_bytes:
        raise WorkerError(BAD_REQUEST, f"A {width}×{height} image with {channels} {sample_type} channel(s) needs "
                                       f"{req.image_bytes} bytes of pixels, but {got} were given.")
    if mask is not None and memoryview(mask).nbytes != req.mask_bytes:
        raise WorkerError(BAD_REQUEST, f"The mask must have one byte per pixel ({req.mask_bytes} bytes), but "
                                       f"{memoryview(mask).nbytes} were given.")
    return req


class Client:
    """A connection to one engine: a child process on pipes (`spawn`) or a `luciddream serve` (`connect`)."""

    def __init__(self, transport: "_Transport", stall_timeout: float = 60.0) -> None:
        self._t = transport
        self.stall_timeout = stall_timeout  # an engine with a heartbeat that is silent this long counts as hung
        self._ids = itertools.count(1)
        self._greeted = False

    @classmethod
    def spawn(cls, python_exe: Optional[str] = None, *args: str, env: Optional[Dict[str, str]] = None,
              cwd: Optional[str] = None, startup_timeout: float = 120.0, limits: Limits = Limits(),
              stall_timeout: float = 60.0) -> "Client":
        """Start `python -m luciddream.worker` (or `python_exe *args` when args are given) and say hello.

        `python_exe` is the engine's Python (the one with torch), not the host's. The worker's stderr goes to a
        temporary log whose last lines are quoted when it fails; it exits by itself when this process dies. A worker
        that falls silent mid-job for `stall_timeout` seconds is taken for hung and stopped (see Job.events).
        """
        command = [python_exe or sys.executable] + (list(args) or ["-m", "luciddream.worker"])
        child_env = dict(os.environ if env is None else env)
        child_env[PARENT_ENV] = str(os.getpid())
        client = cls(_PipeTransport(command, child_env, cwd, limits), stall_timeout)
        try:
            client.hello(timeout=startup_timeout)
        except BaseException as exc:
            if isinstance(exc, WorkerError) and exc.code == TIMEOUT:
                client._t._hung(None)  # silent all along: waiting for it to exit politely would be more of the same
            client.close()
            raise
        return client

    @classmethod
    def connect(cls, url: str, token: Optional[str] = None, timeout: float = 60.0,
                limits: Limits = Limits()) -> "Client":
        """Talk to `luciddream serve` at `url` (http://host:port). Nothing is sent until the first call."""
        return cls(_HttpTransport(url, token, timeout, limits))

    def hello(self, timeout: float = 30.0) -> Dict[str, Any]:
        """Ping the engine: protocol and engine versions, available models, default model."""
        reply = self._t.hello(timeout)
        if reply.get("protocol") != PROTOCOL_VERSION:
            raise WorkerError(UNSUPPORTED_VERSION, f"The engine speaks protocol version {reply.get('protocol')} but "
                                                   f"this plug-in speaks {PROTOCOL_VERSION}: install matching "
                                                   f"versions of both.")
        beat = reply.get("heartbeat")
        if isinstance(beat, (int, float)) and not isinstance(beat, bool) and 0 < beat <= 3600:
            self._t.stall = max(self.stall_timeout, 4.0 * beat)
        most = reply.get("max_pixels")
        if type(most) is int and 0 < most < self._t.limits.max_pixels:
            # Refuse a too large image here: an engine that refuses it mid-upload can only hang up on us.
            self._t.limits = Limits(self._t.limits.max_header, self._t.limits.max_side, most)
        self._greeted = True
        return reply

    def dream(self, pixels: Any, width: int, height: int, channels: int, sample_type: str, mask: Any = None,
              targets: Optional[str] = "", settings: Optional[Dict[str, Any]] = None) -> Job:
        """Start a dream and return its Job at once.

        `pixels`: width*height*channels samples, row by row, interleaved (gray, gray+alpha, RGB, RGBA); `u16` and
        `f32` in the machine's byte order. `mask`: one byte per pixel (0 keeps, 255 dreams) or None for all.
        `targets`: e.g. "goldfish, layer:block6=0.5" ("" for the model's classic look). `settings`: model, octaves,
        octave_scale, steps, step_size, tile, seed, device, feather.
        """
        if not self._greeted:
            self.hello()
        req = make_request(str(next(self._ids)), pixels, width, height, channels, sample_type, mask, targets,
                           settings, self._t.limits)
        parts = [_to_little(pixels, sample_type)] + ([mask] if mask is not None else [])
        return self._t.start(req, parts)

    def close(self) -> None:
        """Stop the worker (pipes) or forget the server; running jobs end with WORKER_GONE."""
        self._t.close()

    @property
    def log_path(self) -> Optional[str]:
        """Where a spawned worker's stderr goes (None for HTTP)."""
        return getattr(self._t, "log_path", None)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _Transport:
    limits: Limits
    stall: Optional[float] = None   # set once the engine's hello promises a heartbeat (see Job.events)

    def hello(self, timeout: float) -> Dict[str, Any]:
        raise NotImplementedError

    def start(self, req: JobRequest, parts: List[Any]) -> Job:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _PipeTransport(_Transport):
    """One worker process; frames on its stdin/stdout; one reader thread hands replies to jobs by id."""

    def __init__(self, command: List[str], env: Optional[Dict[str, str]], cwd: Optional[str],
                 limits: Limits) -> None:
        self.limits = limits
        self.command = command
        self._log = tempfile.NamedTemporaryFile(prefix="luciddream-worker-", suffix=".log", delete=False)
        self.log_path = self._log.name
        flags = getattr(subprocess, "CREATE_NO_WINDOW", 0) if sys.platform == "win32" else 0
        try:
            self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                         env=env, cwd=cwd, creationflags=flags)
        except OSError as exc:
            self._log.close()
            os.unlink(self.log_path)
            raise WorkerError(WORKER_GONE, f"Cannot start the engine with {command[0]} ({exc.strerror or exc}): "
                                           f"run `python3 install.py` again (or with --venv PATH) so engine.json names the engine's Python.")
        self._write_lock = threading.Lock()
        self._lock = threading.Lock()
        self._jobs: Dict[Any, Job] = {}
        self._hellos: "queue.Queue[Any]" = queue.Queue()
        self._gone: Optional[WorkerError] = None
        self._reader = threading.Thread(target=self._read, name="luciddream-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        error: Optional[WorkerError] = None
        try:
            while True:
                msg = read_message(self.proc.stdout, self.limits, check_reply)
                if msg is None:
                    break
                self._dispatch(msg)
        except FrameError as exc:
            error = exc
        except (OSError, ValueError):
            pass
        self._fail(error)

    def _dispatch(self, msg: Message) -> None:
        if msg.kind == HELLO and msg.error is None:
            self._hellos.put(msg)
            return
        with self._lock:
            job = self._jobs.get(msg.id)
            targets = [job] if job is not None else (list(self._jobs.values()) if msg.id is None else [])
        for j in targets:
            j._inbox.put(msg)
        if not targets and msg.kind == ERROR:
            self._hellos.put(msg)   # an error that answers no job answers the hello that is waiting, if any

    def _fail(self, error: Optional[WorkerError]) -> None:
        """The stream ended: every waiting job and hello learns why, in a sentence."""
        if error is None or error.code == BAD_FRAME:
            error = WorkerError(WORKER_GONE, self._gone_sentence(error))
        with self._lock:
            self._gone = error
            jobs = list(self._jobs.values())
        for j in jobs:
            j._inbox.put(error)
        self._hellos.put(error)

    def _gone_sentence(self, cause: Optional[WorkerError]) -> str:
        try:
            code = self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            code = None
        tail = _log_tail(self.log_path)
        what = "garbled its output" if cause is not None else (
            "stopped" if code is None else f"exited with status {code}")
        text = f"The luciddream engine {what}"
        return text + (f": {tail}" if tail else ".") + f" (log: {self.log_path})"

    def _send(self, header: Dict[str, Any], *payload: Any) -> None:
        with self._write_lock:
            if self._gone is not None:
                raise self._gone
            try:
                write_frame(self.proc.stdin, header, *payload)
            except (OSError, ValueError):
                self._reader.join(5)
                raise self._gone or WorkerError(WORKER_GONE, self._gone_sentence(None)) from None

    def hello(self, timeout: float) -> Dict[str, Any]:
        self._send({"kind": HELLO, "protocol": PROTOCOL_VERSION})
        try:
            item = self._hellos.get(timeout=timeout)
        except queue.Empty:
            raise WorkerError(TIMEOUT, f"The engine did not answer within {timeout:g} seconds (log: "
                                       f"{self.log_path}).") from None
        if isinstance(item, WorkerError):
            raise item
        if item.kind == ERROR:
            raise error_for(str(item.header.get("code")), str(item.header.get("message")))
        return dict(item.header)

    def start(self, req: JobRequest, parts: List[Any]) -> Job:
        job = Job(req, queue.Queue(), self._cancel, self._forget, self.stall, self._hung)
        with self._lock:
            self._jobs[req.id] = job
        try:
            self._send(req.header(), *parts)
        except WorkerError:
            self._forget(job)
            raise
        return job

    def _cancel(self, job: Job) -> None:
        try:
            self._send({"kind": CANCEL, "id": job.id})
        except WorkerError:
            pass  # the worker is gone: the job already has its error

    def _forget(self, job: Job) -> None:
        with self._lock:
            self._jobs.pop(job.id, None)

    def _hung(self, job: Optional[Job]) -> None:
        """The worker promised news and fell silent: stop it, so that it frees its memory and the next use of this
        client says the engine is gone instead of waiting again."""
        try:
            self.proc.kill()
        except OSError:
            pass

    def close(self) -> None:
        try:
            self.proc.stdin.close()   # the worker exits when its stdin closes
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(5)
        self.proc.stdout.close()
        self._log.close()
        if self.proc.returncode == 0:  # a clean exit leaves nothing worth reading; failures keep their log
            try:
                os.unlink(self.log_path)
            except OSError:
                pass


def _log_tail(path: str, lines: int = 1) -> str:
    """The last line of the worker's log: usually the one that says what went wrong."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    kept = [t.strip() for t in text.splitlines() if t.strip()]
    return " ".join(kept[-lines:])


class _HttpTransport(_Transport):
    """`luciddream serve`: each job is one POST whose response streams frames; cancel is a second small POST."""

    def __init__(self, url: str, token: Optional[str], timeout: float, limits: Limits) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise WorkerError(UNREACHABLE, f'"{url}" is not a server address: use http://HOST:PORT.')
        self.limits = limits
        self.url = url
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.base = parts.path.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _connection(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        return cls(self.host, self.port, timeout=self.timeout)

    def _headers(self, length: Optional[int] = None) -> Dict[str, str]:
        headers = {"Content-Type": "application/x-luciddream", "Accept": "application/x-luciddream"}
        if self.token is not None:
            headers["Authorization"] = "Bearer " + self.token
        if length is not None:
            headers["Content-Length"] = str(length)
        return headers

    def _open(self, method: str, path: str, body: Any = None, length: Optional[int] = None) -> Any:
        conn = self._connection()
        try:
            conn.request(method, self.base + path, body=body, headers=self._headers(length))
            conn.raw_socket = conn.sock  # kept: after a "Connection: close" response, conn.sock is None
            return conn, conn.getresponse()
        except (ConnectionRefusedError, socket.gaierror) as exc:
            conn.close()
            raise WorkerError(UNREACHABLE, f"Nothing answers at {self.url} ({_short(exc)}): start "
                                           f"`luciddream serve` there or fix the address.") from None
        except socket.timeout:
            conn.close()
            raise WorkerError(TIMEOUT, f"The server at {self.url} did not answer within {self.timeout:g} "
                                       f"seconds.") from None
        except OSError as exc:
            conn.close()
            raise WorkerError(WORKER_GONE, f"The connection to {self.url} failed ({_short(exc)}).") from None

    def _first(self, response: Any) -> Message:
        """The first frame of a response; an error frame (or none at all) becomes a WorkerError."""
        try:
            msg = read_message(response, self.limits, check_reply)
        except FrameError:
            msg = None
        except (OSError, http.client.HTTPException) as exc:
            raise WorkerError(WORKER_GONE, f"The connection to {self.url} broke ({_short(exc)}).") from None
        if msg is None:
            raise WorkerError(WORKER_GONE, f"The server at {self.url} answered HTTP {response.status} without a "
                                           f"luciddream message: is this really `luciddream serve`?")
        if msg.error is not None:
            raise msg.error
        if msg.kind == ERROR:
            raise error_for(str(msg.header.get("code")), str(msg.header.get("message")))
        return msg

    def hello(self, timeout: float) -> Dict[str, Any]:
        conn, response = self._open("GET", "/v1/hello")
        try:
            return dict(self._first(response).header)
        finally:
            conn.close()

    def start(self, req: JobRequest, parts: List[Any]) -> Job:
        body = encode(req.header(), *parts)
        conn, response = self._open("POST", "/v1/dream", body, sum(memoryview(p).nbytes for p in body))
        inbox: "queue.Queue[Any]" = queue.Queue()
        job = Job(req, inbox, self._cancel)
        job._sock = conn.raw_socket  # type: ignore[attr-defined]
        job._aborted = False  # type: ignore[attr-defined]
        try:
            first = self._first(response)
        except WorkerError:
            conn.close()
            raise
        if isinstance(first.header.get("job"), str):
            job.server_job = first.header["job"]
        inbox.put(first)
        threading.Thread(target=self._read, args=(job, conn, response), name="luciddream-http", daemon=True).start()
        return job

    def _read(self, job: Job, conn: Any, response: Any) -> None:
        error: WorkerError
        try:
            while True:
                msg = read_message(response, self.limits, check_reply)
                if msg is None:
                    error = WorkerError(WORKER_GONE, f"The server at {self.url} closed the job's stream before it "
                                                     f"finished.")
                    break
                job._inbox.put(msg)
                if msg.kind in (RESULT, ERROR) or msg.error is not None:
                    return
        except FrameError as exc:
            error = WorkerError(WORKER_GONE, f"The server at {self.url} sent a broken message: {exc}")
        except socket.timeout:
            error = WorkerError(TIMEOUT, f"The server at {self.url} sent nothing for {self.timeout:g} seconds.")
        except (OSError, ValueError, http.client.HTTPException) as exc:
            error = WorkerError(WORKER_GONE, f"The connection to {self.url} broke ({_short(exc)}).")
        finally:
            response.close()
            conn.close()
        job._inbox.put(JobCancelled() if job._aborted else error)  # type: ignore[attr-defined]

    def _cancel(self, job: Job) -> None:
        if job.server_job is not None:
            try:
                conn, response = self._open("POST", "/v1/jobs/" + quote(job.server_job, safe="") + "/cancel",
                                            b"", 0)
                response.read()
                conn.close()
                if response.status == 200:
                    return
            except WorkerError:
                pass
        # No way to ask politely: hang up. The server cancels a job whose client has gone.
        job._aborted = True  # type: ignore[attr-defined]
        try:
            job._sock.shutdown(socket.SHUT_RDWR)  # type: ignore[attr-defined]
        except (OSError, AttributeError):
            pass

    def close(self) -> None:
        pass
