"""`luciddream serve`: the worker's jobs over HTTP(S), for a host whose engine runs elsewhere (another venv, a GPU box).

Bodies are protocol frames, so a plug-in uses one parser for pipes and HTTP (docs/protocol.md):

    GET  /v1/hello               -> one "hello" frame
    POST /v1/dream               body: one "dream" frame -> 200 with a chunked stream of frames:
                                 "queued", "progress"..., then "result" or "error"
    POST /v1/jobs/<job>/cancel   -> 200 (empty) if that job was still running or waiting

The HTTP side is aiohttp's low-level server (chosen by measuring it against uvicorn+starlette, docs/robustness.md):
one event loop holds every connection, so idle or trickling clients cost a few kilobytes, not a thread each. The
jobs themselves run in one thread per device (`Runner`), fed from a bounded queue whose payloads wait on disk.

What holds against a hostile or broken client, in the order a request meets it: a connection that has not sent a
whole request head within HEADER_S is closed (aiohttp's keep-alive timer runs from the connection's start); past
--max-connections a request is answered 503 "busy", past twice that the connection is closed at once; a request
from a web page (Origin, Sec-Fetch-Site) or, on a server without a token, naming a Host that is not loopback (DNS
rebinding) is refused; the token is checked before any body is read, and wrong tokens from one address are
answered ever more slowly and logged; the body's size is checked against the limits before it is read, a queue
slot is taken before the payload is, and the whole body must arrive within BODY_S (+ 1 s per MiB).
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import hmac
import ipaddress
import logging
import os
import re
import secrets
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from typing import IO, Any, Deque, Dict, List, Optional, Tuple

from . import jobs
from . import protocol as P
from .protocol.transports import is_loopback

CONTENT_TYPE = "application/x-luciddream"
HEARTBEAT_S = 10.0     # resend the latest frame after this long without news, so clients can use socket timeouts
HEADER_S = 10.0        # a connection must have sent its whole request head (and so its token) within this
BODY_S = 30.0          # a request body must arrive whole within this, plus one second per MiB
BODY_RATE = 1 << 20
MAX_CONNECTIONS = 256  # served at once (an idle one costs a few kB); as many more are told "busy", then dropped
FREE_WRONG_TOKENS = 3  # wrong tokens from one address in a minute answered at once; later ones wait longer and longer
MOST_WRONG_TOKEN_WAIT_S = 5.0
CHUNK = 1 << 20
NO_DOWNLOADS_ENV = "LUCIDDREAM_NO_DOWNLOADS"   # read by the nets' download code: serve sets it unless told not to
LOG = "luciddream serve:"


def log(text: str) -> None:
    print(f"{LOG} {text}", file=sys.stderr, flush=True)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def clean(text: Any, most: int = 120) -> str:
    """Text a client chose, safe for a log line: control characters escaped (no forged lines, no terminal codes)."""
    text = str(text)
    text = text if len(text) <= most else text[:most] + "..."
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256 else f"\\u{ord(m.group()):04x}",
                        text)


_PATH = re.compile(r"(?<![\w/.:])~?(?:/[\w.+@-]+){2,}/?")


def without_paths(text: str) -> str:
    """A job's error sentence with the server's file paths taken out: a client learns what is wrong, not where the
    server keeps its files (its cache folder, its home)."""
    return _PATH.sub("(a path on the server)", text)


def size_words(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n / 1024:.0f} KiB"


class Busy(Exception):
    pass


class ServerJob:
    """A job between its request and its last frame. Its payload waits in a temporary file (no memory while it is
    queued); `events` carries (header, payload parts) from the runner's thread to the request's handler."""

    def __init__(self, req: P.JobRequest, spool: Optional[IO[bytes]] = None, size: int = 0, client: str = "?",
                 number: int = 0, loop: Optional[asyncio.AbstractEventLoop] = None) -> None:
        self.name = secrets.token_hex(8)   # the capability to cancel it: never logged
        self.number = number               # what the log calls it
        self.req = req
        self.spool = spool
        self.size = size
        self.client = client
        self.cancel = threading.Event()
        self.hung_up = False
        self.looks = not isinstance(req, P.JobRequest)   # a "looks" request: the look atlas's pictures
        self.preempted_by: Any = None                     # the dream a running looks job made way for
        self._loop = loop
        self.events: "asyncio.Queue[Tuple[Dict[str, Any], Tuple[Any, ...]]]" = asyncio.Queue() if loop else None

    def post(self, header: Dict[str, Any], *payload: Any) -> None:
        """Thread-safe: the runner's thread hands a frame to the handler's loop."""
        if self._loop is None:
            return
        try:
            self._loop.call_soon_threadsafe(self.events.put_nowait, (header, payload))
        except RuntimeError:  # the loop has closed: the server is stopping
            pass

    def queued(self, position: int) -> None:
        self.post({"kind": P.QUEUED, "id": self.req.id, "job": self.name, "position": position})

    def fail(self, code: str, message: str) -> None:
        self.post(jobs.error_header(self.req.id, code, message))

    def load(self) -> bytes:
        """The payload, read back from disk when the job starts; the file is gone once read."""
        if self.spool is None:
            return b""
        try:
            self.spool.seek(0)
            return self.spool.read()
        finally:
            self.drop()

    def drop(self) -> None:
        spool, self.spool = self.spool, None
        if spool is not None:
            try:
                spool.close()
            except OSError:
                pass


class Runner:
    """One device: runs its jobs one after another from a bounded queue, in its own thread.

    A client takes a slot (`reserve`) before its payload is read, so uploads in flight count against --queue too:
    a burst of large uploads cannot fill the disk or memory past what the queue allows."""

    def __init__(self, device: str, max_waiting: int) -> None:
        self.device = device
        self.max_waiting = max_waiting
        self._cond = threading.Condition()
        self._waiting: Deque[ServerJob] = collections.deque()
        self._running: Optional[ServerJob] = None
        self._uploading = 0
        threading.Thread(target=self._loop, name=f"luciddream-runner-{device}", daemon=True).start()

    def _busy(self) -> Busy:
        return Busy(f"The engine is busy: {len(self._waiting) + self._uploading} job(s) already wait for "
                    f"{self.device}; try again when one finishes.")

    def reserve(self) -> None:
        with self._cond:
            if len(self._waiting) + self._uploading + (self._running is not None) > self.max_waiting:
                raise self._busy()
            self._uploading += 1

    def release(self) -> None:
        with self._cond:
            self._uploading -= 1

    def submit(self, job: ServerJob, reserved: bool = False) -> None:
        with self._cond:
            if reserved:
                self._uploading -= 1
            elif len(self._waiting) + self._uploading + (self._running is not None) > self.max_waiting:
                raise self._busy()
            running = self._running
            if running is not None and running.looks and not job.looks and not running.cancel.is_set():
                # a dream goes first: the looks job stops within a step (its cache keeps what it drew) and its
                # client hears `busy`, asks again, and waits in the queue behind the dream
                running.preempted_by = job.req.id
                running.cancel.set()
            self._waiting.append(job)
            job.queued(len(self._waiting) - 1 + (self._running is not None))
            self._cond.notify()

    def cancel(self, job: ServerJob) -> None:
        """A waiting job leaves the queue at once; a running one stops within a step."""
        job.cancel.set()
        with self._cond:
            if job in self._waiting:
                self._waiting.remove(job)
                self._renumber()
            else:
                return
        from .errors import Cancelled

        job.drop()
        job.fail(P.CANCELLED, str(Cancelled()))
        log(f"{job.client} job {job.number}: cancelled while waiting"
            + (" (the client hung up)" if job.hung_up else ""))

    def _renumber(self) -> None:
        ahead = 1 if self._running is not None else 0
        for i, waiting in enumerate(self._waiting):
            waiting.queued(i + ahead)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._waiting:
                    self._cond.wait()
                job = self._running = self._waiting.popleft()
                self._renumber()
            start = time.monotonic()
            payload = b""
            try:
                payload = job.load()
            except OSError as exc:
                outcome = jobs.Outcome(jobs.error_header(job.req.id, P.INTERNAL, f"The server could not read the "
                                                         f"job back from its spool file ({exc.strerror})."),
                                       (), P.INTERNAL)
            else:
                outcome = (jobs.run_looks(job.req, job.cancel, job.post) if job.looks
                           else jobs.run(job.req, payload, job.cancel, job.post))
                if not job.hung_up:
                    outcome = jobs.paused(outcome, job.req.id, job.preempted_by)
            del payload
            header = outcome.header
            if header.get("kind") == P.ERROR:
                header = dict(header, message=without_paths(str(header.get("message", ""))))
            job.post(header, *outcome.payload)
            with self._cond:
                self._running = None
            req = job.req
            status = outcome.status + (" (the client hung up)" if job.hung_up else "")
            what = "looks" if job.looks else (f"{req.width}×{req.height}×{req.channels} {req.sample} "
                                              f"({size_words(job.size)})")
            log(f"{job.client} job {job.number}: {what} on {self.device}: {status} in "
                f"{time.monotonic() - start:.2f} s")


class Engine:
    """What the handlers share: limits, token, the runners (one per device) and the jobs by name."""

    def __init__(self, token: Optional[str], limits: P.Limits, max_waiting: int, spool_dir: Optional[str] = None,
                 loopback: bool = True, header_s: float = HEADER_S, body_s: float = BODY_S) -> None:
        self.token = token
        self.header_s = header_s
        self.body_s = body_s
        self.limits = limits
        self.max_waiting = max_waiting
        self.spool_dir = spool_dir
        self.loopback = loopback
        self._lock = threading.Lock()
        self._runners: Dict[str, Runner] = {}
        self.jobs: Dict[str, Tuple[ServerJob, Runner]] = {}
        self._wrong: Dict[str, Deque[float]] = {}
        self._numbers = 0

    def authorized(self, header: Optional[str]) -> bool:
        if self.token is None:
            return True
        given = (header or "")[len("Bearer "):] if (header or "").startswith("Bearer ") else ""
        return hmac.compare_digest(given.encode("utf-8"), self.token.encode("utf-8"))

    def wrong_token(self, address: str) -> Tuple[int, float]:
        """(wrong tokens from `address` in the last minute, seconds to wait before answering)."""
        now = time.monotonic()
        times = self._wrong.setdefault(address, collections.deque())
        times.append(now)
        while times and times[0] < now - 60:
            times.popleft()
        if len(self._wrong) > 10000:  # forget the quiet ones, so a spray of addresses cannot grow this for ever
            for key in [k for k, v in self._wrong.items() if not v or v[-1] < now - 60]:
                del self._wrong[key]
        n = len(times)
        return n, 0.0 if n <= FREE_WRONG_TOKENS else min(MOST_WRONG_TOKEN_WAIT_S,
                                                         0.25 * 2 ** (n - FREE_WRONG_TOKENS - 1))

    def next_number(self) -> int:
        self._numbers += 1
        return self._numbers

    def runner_for(self, req: Any) -> Runner:
        """One runner per device the job resolves to ("auto" and "cuda" on a GPU box share one; a looks request
        is drawn on the CPU, atlas.build's device)."""
        from .errors import DreamError
        from .nets import resolve_device

        name = (getattr(req, "settings", None) or {}).get("device", "auto" if isinstance(req, P.JobRequest) else
                                                           "cpu")
        if not isinstance(name, str):
            raise DreamError(f'The setting device must be a name such as "cpu", not {name!r}.')
        key = str(resolve_device(name))
        with self._lock:
            runner = self._runners.get(key)
            if runner is None:
                runner = self._runners[key] = Runner(key, self.max_waiting)
        return runner


# ------------------------------------------------------------------------------------------------ HTTP side

def _web() -> Any:
    from aiohttp import web

    return web


def _frame_response(status: int, header: Optional[Dict[str, Any]] = None) -> Any:
    web = _web()
    response = web.Response(status=status, body=P.frame_bytes(header) if header is not None else b"",
                            headers={"Content-Type": CONTENT_TYPE, "Server": "luciddream"})
    response.force_close()
    return response


def _refusal(status: int, code: str, message: str, job_id: Any = None) -> Any:
    return _frame_response(status, jobs.error_header(job_id, code, message))


def _host_is_loopback(host_header: str) -> bool:
    host = host_header.strip()
    if host.startswith("["):
        host = host[1:].split("]")[0]
    elif host.count(":") == 1:
        host = host.split(":")[0]
    return is_loopback(host)


class App:
    """The request handler: one coroutine per request, on the server's event loop."""

    def __init__(self, engine: Engine, max_connections: int) -> None:
        self.engine = engine
        self.max_connections = max_connections
        self.web_server: Any = None
        self.loop: Optional[asyncio.AbstractEventLoop] = None

    async def __call__(self, request: Any) -> Any:
        client = clean(request.remote or "?", 60)
        engine = self.engine
        if len(self.web_server.connections) > self.max_connections:
            log(f"{client} {request.method} refused: more than {self.max_connections} open connections")
            return _refusal(503, P.BUSY, f"The server already has {self.max_connections} open connections, its "
                                         f"most: try again in a moment.")
        foreign = self._foreign(request)
        if foreign is not None:
            log(f"{client} {request.method} {clean(request.raw_path)} refused: {foreign}")
            return _refusal(403, P.UNAUTHORIZED, "This server answers the luciddream plug-ins, not web pages or "
                                                 f"other sites: the request {foreign}.")
        if not engine.authorized(request.headers.get("Authorization")):
            count, wait = engine.wrong_token(client)
            if count in (1, FREE_WRONG_TOKENS + 1) or count % 50 == 0:
                log(f"{client} sent a missing or wrong token ({count} in the last minute"
                    + (f"; answers now wait {wait:g} s)" if wait else ")"))
            if wait:
                await asyncio.sleep(wait)
            return _refusal(401, P.UNAUTHORIZED, "The server needs the right token: set it in the plug-in's settings "
                                                 "(it is the --token or LUCIDDREAM_TOKEN the server was started "
                                                 "with).")
        path = request.rel_url.path
        if request.method == "GET" and path == "/v1/hello":
            info = await asyncio.get_running_loop().run_in_executor(
                None, lambda: jobs.engine_info(engine.limits, HEARTBEAT_S))
            info.update({"kind": P.HELLO, "id": None, "queue": engine.max_waiting})
            return _frame_response(200, info)
        if request.method == "POST" and path == "/v1/dream":
            return await self._dream(request, client)
        parts = path.strip("/").split("/")
        if request.method == "POST" and len(parts) == 4 and parts[:2] == ["v1", "jobs"] and parts[3] == "cancel":
            entry = engine.jobs.get(parts[2])
            if entry is None:
                return _refusal(404, P.NOT_FOUND, "No such job: it has finished already or never existed.")
            entry[1].cancel(entry[0])
            return _frame_response(200)
        log(f"{client} {request.method} {clean(request.raw_path)}: 404")
        return _refusal(404, P.NOT_FOUND, f"There is nothing at {clean(path, 100)}: use GET /v1/hello or POST "
                                          f"/v1/dream.")

    def _foreign(self, request: Any) -> Optional[str]:
        """Why a request looks like it comes from a web page (None when it does not). The plug-ins' http.client
        sends neither Origin nor Sec-Fetch-*; browsers send them with every cross-site POST. Without a token the
        Host header is what tells a DNS-rebound page apart, so it must then name a loopback address."""
        headers = request.headers
        if "Origin" in headers:
            return f"came from the web page {clean(headers['Origin'], 80)}"
        if headers.get("Sec-Fetch-Site", "none") not in ("none", "same-origin"):
            return "came from a web page"
        if self.engine.token is None and self.engine.loopback and not _host_is_loopback(headers.get("Host", "")):
            return f"names the host {clean(headers.get('Host', ''), 80)}, not this computer"
        return None

    async def _dream(self, request: Any, client: str) -> Any:
        engine = self.engine
        limits = engine.limits
        if request.headers.get("Transfer-Encoding"):
            return _refusal(411, P.BAD_REQUEST, "Send the job with a Content-Length, not a chunked body.")
        text = request.headers.get("Content-Length")
        if text is None or not text.strip().isdigit():
            return _refusal(411, P.BAD_REQUEST, "The request needs a Content-Length header with the frame's size.")
        length = int(text)
        if length > limits.max_frame:
            return _refusal(413, P.TOO_LARGE, f"The request is {length} bytes, more than the {limits.max_frame} this "
                                              f"server accepts: dream a smaller selection.")
        allowed = engine.body_s + length / BODY_RATE
        deadline = time.monotonic() + allowed
        try:
            return await self._read_job(request, client, request.content, length, deadline)
        except asyncio.TimeoutError:
            log(f"{client} POST /v1/dream: the body did not arrive in time ({length} bytes, {allowed:.0f} s); "
                f"dropped")
            return _refusal(408, P.BAD_REQUEST, f"The request body did not arrive within {allowed:.0f} seconds.")

    async def _read_job(self, request: Any, client: str, content: Any, length: int, deadline: float) -> Any:
        engine = self.engine
        limits = engine.limits

        async def exactly(n: int, what: str) -> bytes:
            try:
                return await asyncio.wait_for(content.readexactly(n), max(0.0, deadline - time.monotonic()))
            except asyncio.IncompleteReadError as exc:
                raise P.FrameError(P.BAD_FRAME, f"The message was cut off: its {what} ended after "
                                                f"{len(exc.partial)} of {n} bytes.") from None

        if length == 0:
            return _refusal(400, P.BAD_FRAME, "The request body is empty: POST one dream frame.")
        try:
            if length < P.PREFIX_SIZE:
                await exactly(length, "prefix")
                raise P.FrameError(P.BAD_FRAME, f"The message was cut off: its prefix ended after {length} of "
                                                f"{P.PREFIX_SIZE} bytes.")
            header_len, payload_len = P.check_prefix(await exactly(P.PREFIX_SIZE, "prefix"), limits)
            raw = await exactly(header_len, "header")
            header = P.parse_header(raw)
        except P.WorkerError as exc:   # FrameError is one too
            return _refusal(413 if exc.code == P.TOO_LARGE else 400, exc.code, exc.message)
        try:
            P.check_request(header, payload_len, limits)
        except P.WorkerError as exc:
            return _refusal(413 if exc.code == P.TOO_LARGE else 400, exc.code, exc.message,
                            P.valid_id(header.get("id")))
        job_id = P.valid_id(header.get("id"))
        extra = length - P.PREFIX_SIZE - header_len - payload_len
        if extra > 0:
            return _refusal(400, P.BAD_FRAME, f"The request body has {extra} bytes after its frame: send exactly "
                                              f"one frame.", job_id)
        if header["kind"] not in (P.DREAM, P.LOOKS):
            return _refusal(400, P.BAD_REQUEST, f'POST /v1/dream takes a "dream" or "looks" message, not '
                                                f'"{clean(header["kind"], 40)}".', job_id)
        if header["kind"] == P.LOOKS:
            from .protocol.looks import LooksRequest

            req = LooksRequest.from_header(header)
        else:
            req = P.JobRequest.from_header(header, limits)
        loop = asyncio.get_running_loop()
        try:
            runner = await loop.run_in_executor(None, engine.runner_for, req)
        except Exception as exc:  # a DreamError about the device
            code, message = jobs.failure(exc)
            return _refusal(422 if code == P.BAD_INPUT else 500, code, message, req.id)
        try:
            runner.reserve()
        except Busy as exc:
            log(f"{client} POST /v1/dream refused: the queue for {runner.device} is full")
            return _refusal(503, P.BUSY, str(exc), req.id)
        job = ServerJob(req, None, payload_len, client, engine.next_number(), loop)
        submitted = False
        try:
            job.spool = tempfile.TemporaryFile(prefix="luciddream-job-", dir=engine.spool_dir)
            left = payload_len
            while left > 0:
                chunk = await asyncio.wait_for(content.read(min(left, CHUNK)), max(0.0, deadline - time.monotonic()))
                if not chunk:
                    return _refusal(400, P.BAD_FRAME, f"The message was cut off: its payload ended after "
                                                      f"{payload_len - left} of {payload_len} bytes.", req.id)
                job.spool.write(chunk)
                left -= len(chunk)
            job.spool.flush()
            runner.submit(job, reserved=True)
            submitted = True
        except OSError as exc:
            log(f"{client} job {job.number}: cannot spool its {payload_len} bytes ({exc.strerror or exc})")
            return _refusal(503, P.BUSY, "The server has no room to keep the job (its temporary folder is full "
                                         "or not writable): try again later.", req.id)
        finally:
            if not submitted:
                runner.release()
                job.drop()
        engine.jobs[job.name] = (job, runner)
        request.protocol.streaming = True
        try:
            return await self._stream(request, job, runner)
        finally:
            engine.jobs.pop(job.name, None)

    async def _stream(self, request: Any, job: ServerJob, runner: Runner) -> Any:
        """Relay the job's frames as chunks until its last one; cancel it if the client goes away."""
        web = _web()
        response = web.StreamResponse(status=200, headers={"Content-Type": CONTENT_TYPE, "Server": "luciddream"})
        response.enable_chunked_encoding()
        response.force_close()
        last: Optional[Tuple[Dict[str, Any], Tuple[Any, ...]]] = None
        delivered = False
        try:
            if request.protocol.eof_seen:   # it hung up while its job was being taken in
                raise ConnectionResetError("the client hung up")
            await response.prepare(request)
            while True:
                try:
                    header, payload = await asyncio.wait_for(job.events.get(), HEARTBEAT_S)
                except asyncio.TimeoutError:
                    if last is not None:
                        await self._write(response, P.encode(*last))   # a heartbeat: the same news again
                    continue
                await self._write(response, P.encode(header, *payload))
                if header["kind"] in (P.RESULT, P.ERROR, P.LOOKS):
                    delivered = True   # a client may close as soon as it has its last frame
                    await response.write_eof()
                    return response
                last = (header,)
        except (asyncio.CancelledError, ConnectionError, asyncio.TimeoutError) as exc:
            if delivered:
                if isinstance(exc, asyncio.CancelledError):
                    raise
                return response
            # the client hung up (aiohttp cancels the handler) or stopped reading: one line, no traceback
            job.hung_up = True
            log(f"{job.client} job {job.number}: the client "
                + ("stopped reading" if isinstance(exc, asyncio.TimeoutError) else "hung up") + "; job cancelled")
            runner.cancel(job)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return response

    async def _write(self, response: Any, parts: List[Any]) -> None:
        """One frame, in slices of at most CHUNK (never a copy of a large result), within one deadline for all."""
        views = [memoryview(p).cast("B") for p in parts]
        size = sum(v.nbytes for v in views)

        async def write_all() -> None:
            if size <= CHUNK:
                await response.write(b"".join(views))
                return
            for view in views:
                for at in range(0, view.nbytes, CHUNK):
                    await response.write(view[at:at + CHUNK])

        await asyncio.wait_for(write_all(), self.engine.body_s + size / BODY_RATE)


def _protocol_class(max_connections: int) -> Any:
    from aiohttp.web_protocol import RequestHandler

    class _Protocol(RequestHandler):
        """aiohttp's connection, with two changes: a connection past twice the limit is closed at once, and a
        client that half-closes while its body is being read gets its answer (a "cut off" error) instead of a
        closed socket; a half-close at any other time still means the client has gone."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.bodies: List[Any] = []   # the request bodies of this connection (one: we close after each)
            self.eof_seen = False         # the client has half-closed
            self.streaming = False        # a job's frames are being streamed to it
            make_request = self._request_factory

            def remember(message: Any, payload: Any, *rest: Any) -> Any:
                self.bodies.append(payload)
                return make_request(message, payload, *rest)

            self._request_factory = remember

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            if self._manager is not None and len(self._manager.connections) > 2 * max_connections:
                transport.close()

        def eof_received(self) -> Any:
            # Until a job's stream starts, a half-close only means "that was all I send": bodies still arriving end
            # there (also one parsed but not yet handed to its handler: data and the half-close can come in one
            # read) and the answer still goes out. Once a job streams, it means the client has gone.
            self.eof_seen = True
            if self.streaming:
                return None   # asyncio closes the connection, and aiohttp cancels the handler
            for body in self.bodies + [payload for _, payload in getattr(self, "_messages", ())]:
                if not body.is_eof():
                    body.feed_eof()
            return True

    return _Protocol


class _OneLine(logging.Formatter):
    """aiohttp's own messages (a request its parser refused, an error in a handler) as one clean line each: the
    exception's type and first line, never a traceback or raw bytes from the client."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            first = (str(exc).strip().splitlines() or [""])[0]
            text += f" ({type(exc).__name__}{': ' + first if first else ''})"
        return f"{LOG} {clean(text, 200)}"


def _http_logger() -> logging.Logger:
    logger = logging.getLogger("luciddream.serve.http")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_OneLine())
        logger.addHandler(handler)
        logger.propagate = False
        logger.setLevel(logging.WARNING)
    return logger


def _make_web_server(app: App, max_connections: int, header_s: float) -> Any:
    web = _web()
    protocol = _protocol_class(max_connections)

    class _WebServer(web.Server):
        def __call__(self) -> Any:
            return protocol(self, loop=self._loop, **self._kwargs)

    server = _WebServer(app, handler_cancellation=True, keepalive_timeout=header_s, access_log=None,
                        logger=_http_logger(),
                        max_line_size=8190, max_field_size=8190, lingering_time=5.0)
    app.web_server = server
    return server


# ------------------------------------------------------------------------------------------------ TLS

def fingerprint(pem_path: str) -> str:
    """The SHA-256 fingerprint of the first certificate in a PEM file, as AB:CD:… (what clients pin)."""
    with open(pem_path, encoding="ascii", errors="replace") as f:
        text = f.read()
    start = text.find("-----BEGIN CERTIFICATE-----")
    end = text.find("-----END CERTIFICATE-----", start)
    if start < 0 or end < 0:
        raise ValueError("no PEM certificate in it")
    der = ssl.PEM_cert_to_DER_cert(text[start:end + len("-----END CERTIFICATE-----")])
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, 64, 2))


def tls_context(certfile: str, keyfile: Optional[str]) -> ssl.SSLContext:
    from .errors import DreamError

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile, keyfile)
    except FileNotFoundError as exc:
        raise DreamError(f"The TLS file {exc.filename or certfile} does not exist: check --certfile and --keyfile "
                         f"(make a pair with `luciddream serve --make-cert`).") from None
    except (OSError, ssl.SSLError) as exc:
        raise DreamError(f"The certificate {certfile} and key {keyfile or certfile} cannot be used together "
                         f"({getattr(exc, 'reason', None) or exc}): give the matching PEM files, or make a new pair "
                         f"with `luciddream serve --make-cert`.") from None
    return context


def make_certificate(certfile: str, keyfile: str, host: str, days: int = 825) -> str:
    """A self-signed certificate and key for `host` (and localhost), made by the openssl command; its fingerprint.

    Why openssl: neither the standard library nor aiohttp can make a certificate, and this one-time step does not
    justify a dependency (the cryptography wheel) on every engine install; openssl is on every Linux and macOS."""
    from .errors import DreamError

    names = ["DNS:localhost", "IP:127.0.0.1", "IP:::1"]
    try:
        ipaddress.ip_address(host.strip("[]"))
        names.append(f"IP:{host.strip('[]')}")
    except ValueError:
        names.append(f"DNS:{host}")
    names = list(dict.fromkeys(names))
    command = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
               "-keyout", keyfile, "-out", certfile, "-days", str(days), "-subj", f"/CN={host}",
               "-addext", "subjectAltName=" + ",".join(names)]
    old = os.umask(0o077)   # the key is readable by its owner only
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise DreamError("Making a certificate needs the openssl command, which is not installed: install it "
                         "(e.g. apt install openssl), or give a certificate you have with --certfile and "
                         "--keyfile.") from None
    finally:
        os.umask(old)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise DreamError(f"openssl could not make the certificate ({clean(last, 160)}): check that the folders of "
                         f"{certfile} and {keyfile} exist and are writable.")
    return fingerprint(certfile)


# ------------------------------------------------------------------------------------------------ serving

class Server:
    """A bound socket and everything needed to serve it; `serve_forever` runs the event loop in this thread."""

    def __init__(self, sock: socket.socket, engine: Engine, max_connections: int,
                 context: Optional[ssl.SSLContext], certificate: Optional[str] = None) -> None:
        self.socket = sock
        self.engine = engine
        self.max_connections = max_connections
        self.context = context
        self.fingerprint = fingerprint(certificate) if certificate else None
        self.server_address = sock.getsockname()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stopped: Optional[asyncio.Event] = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        shown = f"[{host}]" if ":" in host else host
        return f"{'https' if self.context else 'http'}://{shown}:{port}/"

    def serve_forever(self, ready: Optional[threading.Event] = None) -> None:
        asyncio.run(self._serve(ready))

    async def _serve(self, ready: Optional[threading.Event]) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        app = App(self.engine, self.max_connections)
        app.loop = loop
        web_server = _make_web_server(app, self.max_connections, self.engine.header_s)
        server = await loop.create_server(web_server, sock=self.socket, ssl=self.context,
                                          ssl_handshake_timeout=self.engine.header_s if self.context else None,
                                          backlog=1024)
        if ready is not None:
            ready.set()
        try:
            await self._stopped.wait()
        finally:
            server.close()
            await web_server.shutdown(1.0)

    def shutdown(self) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)


def make_server(host: str = "127.0.0.1", port: int = 0, token: Optional[str] = None,
                limits: P.Limits = P.DEFAULT_LIMITS, max_waiting: int = 4,
                max_connections: int = MAX_CONNECTIONS, certfile: Optional[str] = None,
                keyfile: Optional[str] = None, insecure: bool = False, spool_dir: Optional[str] = None,
                header_s: float = HEADER_S, body_s: float = BODY_S) -> Server:
    """A ready (bound, not yet serving) server; refuses a non-loopback address without a token, and without TLS
    unless `insecure`."""
    from .errors import DreamError

    if token is not None and not token:
        token = None
    loopback = is_loopback(host)
    if not loopback and token is None:
        raise DreamError(f"Listening on {host} would let anyone on the network use this engine: give a --token "
                         f"(or LUCIDDREAM_TOKEN), or listen on 127.0.0.1.")
    if keyfile and not certfile:
        raise DreamError("--keyfile needs --certfile too: give both PEM files (make a pair with "
                         "`luciddream serve --make-cert`).")
    if not loopback and certfile is None and not insecure:
        raise DreamError(f"Plain HTTP on {host} would show the token and every picture to anyone on the network: "
                         f"give --certfile and --keyfile (`luciddream serve --make-cert` makes a pair), or "
                         f"--insecure when a TLS proxy or an SSH tunnel stands in front.")
    context = tls_context(certfile, keyfile) if certfile else None
    if spool_dir is not None and not os.path.isdir(spool_dir):
        raise DreamError(f"The spool folder {spool_dir} does not exist: create it or leave --spool-dir out.")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host.strip("[]"), port), family=family, backlog=1024, reuse_port=False)
    except OSError as exc:
        raise DreamError(f"Cannot listen on {host}:{port} ({exc.strerror or exc}): pick another --port or "
                         f"--host.") from None
    if not (0 < header_s <= 3600 and 0 < body_s <= 3600):
        raise DreamError(f"--header-timeout and --body-timeout must be seconds between 0 and 3600, not {header_s:g} "
                         f"and {body_s:g}.")
    engine = Engine(token, limits, max_waiting, spool_dir, loopback, header_s, body_s)
    return Server(sock, engine, max(1, max_connections), context, certfile)


def add_command(sub: Any) -> None:
    """The `serve` subcommand for cli.py's subparsers."""
    p = sub.add_parser("serve", help="serve jobs over HTTP or HTTPS (docs/protocol.md)",
                       description="Run the engine as an HTTP(S) server for plug-ins on this or another machine.")
    add_arguments(p)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; any other "
                                                       "needs a token and TLS, or --insecure)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    p.add_argument("--token", default=None, help="shared secret clients must send (default: $LUCIDDREAM_TOKEN)")
    p.add_argument("--certfile", help="TLS certificate (PEM): serve HTTPS; clients verify it or pin its SHA-256")
    p.add_argument("--keyfile", help="TLS private key (PEM), if not in --certfile")
    p.add_argument("--make-cert", action="store_true",
                   help="write a self-signed --certfile/--keyfile pair for --host with openssl, print its "
                        "fingerprint and exit")
    p.add_argument("--insecure", action="store_true",
                   help="allow plain HTTP on a non-loopback address (token and pictures travel in clear text)")
    p.add_argument("--allow-downloads", action="store_true",
                   help="let a client's job download model weights the server lacks (default: refused)")
    p.add_argument("--queue", type=int, default=4, help="jobs that may wait per device (default 4)")
    p.add_argument("--max-connections", type=int, default=MAX_CONNECTIONS,
                   help=f"connections served at once; more are told the server is busy (default {MAX_CONNECTIONS})")
    p.add_argument("--max-pixels", type=int, default=P.Limits().max_pixels,
                   help=f"largest image accepted, in pixels (default {P.Limits().max_pixels})")
    p.add_argument("--spool-dir", help="folder for queued jobs' pixels (default: the system's temporary folder)")
    p.add_argument("--header-timeout", type=float, default=HEADER_S,
                   help=f"seconds a connection has to send its whole request head, token included (default "
                        f"{HEADER_S:g}); slower ones are closed")
    p.add_argument("--body-timeout", type=float, default=BODY_S,
                   help=f"seconds a request body has to arrive whole, plus one per MiB (default {BODY_S:g}); slower "
                        f"ones are answered 408")


def device_words() -> str:
    """What "auto" computes on, for the start-up line: "cpu", "mps" or the GPU's name."""
    try:
        import torch

        from .nets import resolve_device

        device = resolve_device("auto")
        if device.type == "cuda":
            return f"cuda ({torch.cuda.get_device_name(device)})"
        return device.type
    except Exception as exc:  # the jobs will say what is wrong
        return f"unknown ({type(exc).__name__})"


def run(args: argparse.Namespace) -> int:
    """Entry point after argument parsing; prints the address on stdout once it listens."""
    from .errors import DreamError

    if args.make_cert:
        if not args.certfile or not args.keyfile:
            raise DreamError("--make-cert needs --certfile and --keyfile: the files to write, e.g. "
                             "--certfile luciddream-cert.pem --keyfile luciddream-key.pem.")
        for path in (args.certfile, args.keyfile):
            if os.path.exists(path):
                raise DreamError(f"{path} exists already: --make-cert never overwrites a certificate or key; "
                                 f"choose other names or remove it.")
        digest = make_certificate(args.certfile, args.keyfile, args.host)
        print(f"luciddream serve: wrote {args.certfile} and {args.keyfile} for {args.host} "
              f"(SHA-256 fingerprint {digest}); plug-ins: python3 install.py --server https://{args.host}:"
              f"{args.port} --token TOKEN --fingerprint {digest}", flush=True)
        return 0
    token = args.token if args.token is not None else os.environ.get("LUCIDDREAM_TOKEN")
    if not args.allow_downloads:
        os.environ[NO_DOWNLOADS_ENV] = "1"
    server = make_server(args.host, args.port, token, P.Limits(max_pixels=max(1, args.max_pixels)),
                         max(0, args.queue), args.max_connections, args.certfile, args.keyfile, args.insecure,
                         args.spool_dir, args.header_timeout, args.body_timeout)
    tls = f"TLS on, certificate SHA-256 {server.fingerprint}" if server.context else "TLS off"
    if not server.context and not server.engine.loopback:
        log(f"warning: plain HTTP on {args.host} (--insecure): the token and the pictures travel in clear text; "
            f"the plug-ins send a token only over HTTPS or to loopback, so put a TLS proxy or an SSH tunnel in front")
    print(f"luciddream serve: listening on {server.url} ({'token required' if server.engine.token else 'no token'}, "
          f"{tls}, device {device_words()}, queue {server.engine.max_waiting}, at most {server.max_connections} "
          f"connections, downloads {'allowed' if args.allow_downloads else 'refused'})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.socket.close()
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="luciddream serve")
    add_arguments(parser)
    args = parser.parse_args(argv)
    from .errors import DreamError

    try:
        return run(args)
    except DreamError as exc:
        print(f"luciddream serve: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
