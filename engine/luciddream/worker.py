"""`luciddream worker`: the engine as a long-lived child process that speaks protocol frames on stdin/stdout.

Host plug-ins cannot import torch, and GIMP kills a plug-in's process on Cancel, so the plug-in starts this worker
(protocol.Client.spawn) and sends it jobs. What a job means (its settings, pixels, error codes and frames) is
jobs.py's, shared with `luciddream serve`; this module is the pipe and its one job slot. Rules that keep the pipe
sane:

- stdout carries frames and nothing else: before any heavy import the real stdout is kept aside and file
  descriptor 1 is pointed at stderr, so a stray print (ours, a library's, or C code's) lands in the log.
- one job at a time; it runs in a thread so that a "cancel" frame can be read meanwhile and stops it within a
  step. The model stays loaded between jobs (nets.load_model caches it).
- a dream pre-empts a running "looks" job (the look atlas drawn in the background while the user works): the
  looks job is cancelled (every picture it finished stays in the cache), its client hears `busy` with a sentence
  saying so and asks again later, and the dream starts as soon as the looks job's step ends.
- the worker exits by itself when its stdin closes or its parent process dies, so a killed plug-in never leaves
  an engine behind holding gigabytes of memory.
- while a job runs, its latest progress frame is sent again after `heartbeat` seconds without news (a slow first
  step, the model loading), so a client can tell a slow engine from a hung one: the hello reply says how often.
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, BinaryIO, Dict, Optional, Sequence

from . import jobs
from . import protocol as P
from .jobs import engine_info

_PARENT_POLL_S = 0.2
HEARTBEAT_S = 5.0   # a running job is never quiet for longer than this (announced in the hello reply)
PREEMPT_WAIT_S = 30.0  # how long a dream waits for a pre-empted looks job to stop (it stops within a step)


@dataclass
class _Running:
    """The job in the worker's one slot."""

    id: Any
    cancel: threading.Event
    done: threading.Event
    looks: bool
    preempted_by: Any = None   # the dream that asked a looks job to make way


def claim_stdout() -> BinaryIO:
    """Keep the real stdout for frames and send everything else written to fd 1 (or sys.stdout) to stderr."""
    sys.stdout.flush()
    frames = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return frames


def watch_parent(interval: float = _PARENT_POLL_S) -> None:
    """Exit when the parent dies: it is re-parented (getppid changes), which this thread notices within `interval`.

    Client.spawn also passes its pid in LUCIDDREAM_PARENT_PID, which covers a parent that died while this
    process was still importing torch (getppid would already be the new parent when the watch starts).
    prctl(PR_SET_PDEATHSIG) is not used: it fires when the parent's *thread* that spawned us ends, and hosts may
    spawn the worker from a short-lived thread. On Windows, where neither check works (os.kill would terminate
    the process), stdin closing ends us.
    """
    parent = os.getppid()
    claimed = os.environ.get(P.PARENT_ENV, "")
    spawner = int(claimed) if claimed.isdigit() and sys.platform != "win32" else None

    def watch() -> None:
        while True:
            if os.getppid() != parent or (spawner is not None and not _alive(spawner)):
                _quit(3)
            time.sleep(interval)

    threading.Thread(target=watch, name="luciddream-parent-watch", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but not ours to signal
        return True
    return True


def _quit(status: int) -> None:
    """Leave at once: nobody is listening any more, and torch's teardown with a job mid-step can take long."""
    try:
        sys.stderr.flush()
    finally:
        os._exit(status)


class Worker:
    """Reads requests from one stream and writes replies to another; at most one job runs at a time."""

    def __init__(self, out: BinaryIO, limits: P.Limits, heartbeat: float = HEARTBEAT_S) -> None:
        self.out = out
        self.limits = limits
        self.heartbeat = heartbeat
        self._write_lock = threading.Lock()
        self._lock = threading.Lock()
        self._job: Optional[_Running] = None
        self._news: Dict[str, Any] = {}     # the running job's latest progress frame, sent again when quiet
        self._sent_at = time.monotonic()
        self._warmed = False

    def send(self, header: Dict[str, Any], *payload: Any) -> None:
        with self._write_lock:
            try:
                P.write_frame(self.out, header, *payload)
            except (OSError, ValueError):  # the reader is gone: so is the point of going on
                _quit(0)
            self._sent_at = time.monotonic()

    def _beat(self, done: threading.Event) -> None:
        """While a job runs: repeat its latest news whenever `heartbeat` seconds passed without any frame."""
        while not done.wait(min(1.0, self.heartbeat / 4)):
            with self._lock:  # held while sending, so no beat can follow the job's last frame
                if not done.is_set() and time.monotonic() - self._sent_at >= self.heartbeat:
                    self.send(self._news)

    def send_error(self, job_id: Any, code: str, message: str) -> None:
        self.send(jobs.error_header(job_id, code, message))

    def serve(self, stream: Any) -> int:
        """Answer requests until the stream ends (status 0) or breaks (status 2, after saying why)."""
        while True:
            try:
                msg = P.read_message(stream, self.limits, P.check_request)
            except P.FrameError as exc:
                self.send_error(None, exc.code, exc.message)
                self._stop_job()
                return 2
            except OSError:
                msg = None
            if msg is None:
                self._stop_job()
                return 0
            if msg.error is not None:
                self.send_error(msg.id, msg.error.code, msg.error.message)
            elif msg.kind == P.HELLO:
                reply = engine_info(self.limits, self.heartbeat, cached=True)
                reply.update({"kind": P.HELLO, "id": msg.id})
                self.send(reply)
                if not self._warmed:  # torch and the default model load while the user picks what to dream
                    self._warmed = True
                    jobs.warm_up()
            elif msg.kind == P.CANCEL:
                self._cancel(msg.id)
            elif msg.kind == P.DREAM:
                self._start(P.JobRequest.from_header(msg.header, self.limits), msg.payload)
            elif msg.kind == P.LOOKS:  # the look atlas's pictures: a job like a dream (progress, cancel, busy)
                from .protocol.looks import LooksRequest

                self._start(LooksRequest.from_header(msg.header), b"")

    def _cancel(self, job_id: Any) -> None:
        with self._lock:
            if self._job is not None and (job_id is None or job_id == self._job.id):
                self._job.cancel.set()

    def _stop_job(self) -> None:
        with self._lock:
            if self._job is not None:
                self._job.cancel.set()

    def _claim(self, req: Any) -> tuple:
        """(the new job's slot, None) or (None, the job in the way)."""
        with self._lock:
            if self._job is not None:
                return None, self._job
            self._job = _Running(req.id, threading.Event(), threading.Event(), not isinstance(req, P.JobRequest))
            return self._job, None

    def _start(self, req: Any, payload: Any) -> None:
        mine, running = self._claim(req)
        if running is not None and running.looks and isinstance(req, P.JobRequest):
            # A dream goes first: the looks job stops within a step, keeping what it drew; its client asks again.
            running.preempted_by = req.id
            running.cancel.set()
            if running.done.wait(PREEMPT_WAIT_S):
                mine, running = self._claim(req)
        if running is not None:
            self.send_error(req.id, P.BUSY, f"The engine is still working on job {running.id}: wait for it to "
                                            f"finish or cancel it first.")
            return
        done = mine.done
        self._news = jobs.progress_header(req.id)
        if self.heartbeat > 0:
            threading.Thread(target=self._beat, args=(done,), name=f"luciddream-beat-{req.id}", daemon=True).start()
        threading.Thread(target=self._run, args=(req, payload, mine), name=f"luciddream-job-{req.id}",
                         daemon=True).start()

    def _run(self, req: Any, payload: Any, mine: _Running) -> None:
        def news(header: Dict[str, Any]) -> None:
            self._news = header
            self.send(header)

        start = time.monotonic()
        looks = not isinstance(req, P.JobRequest)
        outcome = jobs.run_looks(req, mine.cancel, news) if looks else jobs.run(req, payload, mine.cancel, news)
        outcome = jobs.paused(outcome, req.id, mine.preempted_by)
        # Free the slot before answering, so a client that sends its next job right after the reply is not "busy".
        with self._lock:
            self._job = None
            mine.done.set()
        self.send(outcome.header, *outcome.payload)
        what = "looks" if looks else f"{req.width}×{req.height}"
        print(f"luciddream worker: job {req.id} {what} {outcome.status} in "
              f"{time.monotonic() - start:.2f} s", file=sys.stderr, flush=True)


def add_command(sub: Any) -> None:
    """The `worker` subcommand for cli.py's subparsers."""
    p = sub.add_parser("worker", help="serve jobs on stdin/stdout for the GIMP and Krita plug-ins",
                       description="Run the engine as a child process that reads protocol frames on stdin and "
                                   "writes them on stdout (docs/protocol.md). Exits when stdin closes or the "
                                   "parent process dies.")
    add_arguments(p)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-pixels", type=int, default=P.Limits().max_pixels,
                   help=f"largest image accepted, in pixels (default {P.Limits().max_pixels})")
    p.add_argument("--heartbeat", type=float, default=HEARTBEAT_S, metavar="S",
                   help=f"while a job runs, send news at least every S seconds (default {HEARTBEAT_S:g}; 0: never)")


def run(args: argparse.Namespace) -> int:
    """Entry point after argument parsing: claim stdout first, then serve stdin."""
    out = claim_stdout()
    watch_parent()
    limits = P.Limits(max_pixels=max(1, args.max_pixels))
    try:
        heartbeat = args.heartbeat if args.heartbeat > 0 and args.heartbeat == args.heartbeat else 0.0
        status = Worker(out, limits, min(heartbeat, 3600.0)).serve(sys.stdin.buffer)
    except KeyboardInterrupt:  # Ctrl-C in the terminal that started the host reaches us too: leave quietly
        status = 130
    _quit(status)
    return status  # not reached


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="luciddream worker")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
