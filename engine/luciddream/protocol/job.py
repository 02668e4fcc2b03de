"""The client's side of one running dream: its progress events, its result, its cancel.

A transport (transports.py) feeds a Job's inbox with the frames and errors that concern it; the Job turns them
into Progress events and, at the end, the new pixels or the WorkerError to show.
"""
from __future__ import annotations

import array
import queue
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Union

from .errors import BAD_FRAME, INTERNAL, TIMEOUT, WorkerError, error_for
from .framing import Message
from .messages import ERROR, LOOKS, PROGRESS, QUEUED, RESULT, JobRequest


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
        self.reply: dict = {}   # the last frame's header (a "looks" reply's index size)

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
        if msg.kind == LOOKS:  # the look atlas's answer (looks.py reads it from reply and result())
            self.reply = dict(h)
            self._result = msg.payload
            self.last = Progress(1.0, "done")
            return self._end()
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
