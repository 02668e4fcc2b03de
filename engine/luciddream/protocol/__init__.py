"""luciddream's wire protocol and its client: a small package that needs only Python's standard library (3.8+).

Why a package of its own: GIMP's and Krita's bundled Pythons cannot import torch (often not even numpy), and GIMP
kills a plug-in's process when the user presses Cancel. So the engine runs in its own process (`luciddream worker`
on pipes, or `luciddream serve` over HTTP) and the plug-ins talk to it through this package, which install.py
copies beside them as a folder. It must therefore never import anything from luciddream, and inside it every
import of its own parts is relative (it is `protocol` in GIMP and `luciddream.protocol` in Krita).

    errors.py      error codes, WorkerError and the exceptions built on it
    framing.py     the 20-byte prefix, Limits, reading and writing frames
    messages.py    message kinds, what each header holds and the checks on it, JobRequest, make_request
    looks.py       the "looks" message: the look atlas's pictures for a plug-in's browser
    job.py         a running job as the client sees it: progress events, result, cancel
    transports.py  the pipe (spawned worker) and HTTP (`luciddream serve`) transports
    client.py      Client: spawn or connect, hello, dream

docs/protocol.md has the message kinds, fields, error codes and HTTP endpoints.
"""
from __future__ import annotations

from .client import PARENT_ENV, Client
from .errors import (BAD_FRAME, BAD_INPUT, BAD_REQUEST, BUSY, CANCELLED, INTERNAL, NOT_FOUND, OUT_OF_MEMORY, TIMEOUT,
                     TOO_LARGE, UNAUTHORIZED, UNREACHABLE, UNSUPPORTED_VERSION, WORKER_GONE, FrameError,
                     JobCancelled, WorkerError, error_for)
from .framing import (DEFAULT_LIMITS, MAGIC, MAX_CHANNELS, PREFIX_SIZE, PROTOCOL_VERSION, SAMPLE_BYTES, Limits,
                      Message, Validator, check_prefix, encode, frame_bytes, parse_header, read_message, valid_id,
                      write_frame)
from .job import Job, Progress
from .messages import (CANCEL, DREAM, ERROR, HELLO, LOOKS, PROGRESS, QUEUED, REPLY_KINDS, REQUEST_KINDS, RESULT,
                       JobRequest, check_reply, check_request, make_request)

__all__ = [
    "BAD_FRAME", "BAD_INPUT", "BAD_REQUEST", "BUSY", "CANCEL", "CANCELLED", "Client", "DEFAULT_LIMITS", "DREAM",
    "ERROR", "FrameError", "HELLO", "INTERNAL", "Job", "JobCancelled", "JobRequest", "LOOKS", "Limits", "MAGIC",
    "MAX_CHANNELS", "Message", "NOT_FOUND", "OUT_OF_MEMORY", "PARENT_ENV", "PREFIX_SIZE", "PROGRESS",
    "PROTOCOL_VERSION", "Progress", "QUEUED", "REPLY_KINDS", "REQUEST_KINDS", "RESULT", "SAMPLE_BYTES", "TIMEOUT",
    "TOO_LARGE", "UNAUTHORIZED", "UNREACHABLE", "UNSUPPORTED_VERSION", "Validator", "WORKER_GONE", "WorkerError",
    "check_prefix", "check_reply", "check_request", "encode", "error_for", "frame_bytes", "make_request",
    "parse_header", "read_message", "valid_id", "write_frame",
]
