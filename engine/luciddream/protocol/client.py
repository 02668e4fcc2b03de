"""The plug-in's entry point: a Client connects to one engine and starts dreams on it.

    client = Client.spawn("/path/to/engine/python")          # or Client.connect("http://127.0.0.1:8765")
    job = client.dream(pixels, width, height, 4, "u8", mask, "goldfish", {"steps": 10, "seed": 1})
    for p in job.events():
        show(p.fraction, p.message)                             # call job.cancel() to stop
    new_pixels = job.result()                                   # raises WorkerError with a sentence to show
"""
from __future__ import annotations

import itertools
import os
import sys
from typing import Any, Dict, Optional, Sequence, Tuple

from .errors import TIMEOUT, UNSUPPORTED_VERSION, WorkerError
from .framing import DEFAULT_LIMITS, PROTOCOL_VERSION, Limits
from .job import Job, _to_little
from .messages import make_request
from .transports import _HttpTransport, _PipeTransport, _Transport

PARENT_ENV = "LUCIDDREAM_PARENT_PID"  # Client.spawn's pid: the worker exits when that process is gone


class Client:
    """A connection to one engine: a child process on pipes (`spawn`) or a `luciddream serve` (`connect`)."""

    def __init__(self, transport: "_Transport", stall_timeout: float = 60.0) -> None:
        self._t = transport
        self.stall_timeout = stall_timeout  # an engine with a heartbeat that is silent this long counts as hung
        self._ids = itertools.count(1)
        self._greeted = False

    @classmethod
    def spawn(cls, python_exe: Optional[str] = None, *args: str, env: Optional[Dict[str, str]] = None,
              cwd: Optional[str] = None, startup_timeout: float = 120.0, limits: Limits = DEFAULT_LIMITS,
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
                limits: Limits = DEFAULT_LIMITS, fingerprint: Optional[str] = None) -> "Client":
        """Talk to `luciddream serve` at `url` (http://host:port or https://host:port). Nothing is sent until the
        first call. `fingerprint`: the SHA-256 of a self-signed certificate, which then stands in for the usual
        verification. A token is only sent over HTTPS or to this computer (WorkerError otherwise)."""
        return cls(_HttpTransport(url, token, timeout, limits, fingerprint))

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
              targets: Optional[str] = "", settings: Optional[Dict[str, Any]] = None,
              guide: Optional[Tuple[Any, int, int, int, str]] = None) -> Job:
        """Start a dream and return its Job at once.

        `pixels`: width*height*channels samples, row by row, interleaved (gray, gray+alpha, RGB, RGBA); `u16` and
        `f32` in the machine's byte order. `mask`: one byte per pixel (0 keeps, 255 dreams) or None for all.
        `targets`: e.g. "goldfish, layer:block6=0.5" ("" for the model's classic look). `settings`: model, octaves,
        octave_scale, steps, step_size, tile, seed, device, feather. `guide`: (pixels, width, height, channels,
        sample) of a picture to dream toward (any size; an engine from before guides refuses the field).
        """
        if not self._greeted:
            self.hello()
        req = make_request(str(next(self._ids)), pixels, width, height, channels, sample_type, mask, targets,
                           settings, self._t.limits, guide)
        parts = [_to_little(pixels, sample_type)] + ([mask] if mask is not None else [])
        if guide is not None:
            parts.append(_to_little(guide[0], guide[4]))
        return self._t.start(req, parts)

    def looks(self, model: Optional[str] = None, layers: Optional[Sequence[str]] = None,
              channels: Optional[int] = None, search: Optional[str] = None) -> Job:
        """Ask for the look atlas's pictures (drawn the first time, then cached by the engine); read the finished
        job with looks.read(job). Over a pipe or from `serve`."""
        from .looks import LooksRequest

        if not self._greeted:
            self.hello()
        req = LooksRequest(str(next(self._ids)), model, None if layers is None else tuple(layers), channels, search)
        LooksRequest.from_header(req.header())
        return self._t.start(req, [])  # type: ignore[arg-type]

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
