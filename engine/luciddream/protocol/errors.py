"""Error codes and the exceptions that carry them: `code` for programs, `message` (one sentence) for people.

Their own module because every other part raises them: framing (a broken stream), messages (a wrong header), the
client (an engine that is gone). docs/protocol.md lists the codes.
"""
from __future__ import annotations

# What went wrong, so a plug-in can react without parsing the sentence.
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
