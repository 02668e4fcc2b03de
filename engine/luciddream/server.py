"""`luciddream serve`: the worker's jobs over HTTP, for a host whose engine runs elsewhere (another venv, a GPU box).

Bodies are protocol frames, so a plug-in uses one parser for pipes and HTTP (docs/protocol.md):

    GET  /v1/hello               -> one "hello" frame
    POST /v1/dream               body: one "dream" frame -> 200 with a chunked stream of frames:
                                 "queued", "progress"..., then "result" or "error"
    POST /v1/jobs/<job>/cancel   -> 200 (empty) if that job was still running or waiting

Refusals before a stream starts (bad token, too large, bad frame, queue full) are a 4xx/5xx response whose body is
one "error" frame. A job is also cancelled when its client hangs up.

Safety: loopback by default; any other address needs a token (compared with hmac.compare_digest); the body's
Content-Length is checked against the limits before anything is read; each device runs one job at a time and a
bounded queue holds the rest; the number of open connections is bounded too.
"""
from __future__ import annotations

import argparse
import collections
import hmac
import ipaddress
import os
import queue
import secrets
import select
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Deque, Dict, List, Optional, Sequence, Tuple

from . import jobs
from . import protocol as P

CONTENT_TYPE = "application/x-luciddream"
HEARTBEAT_S = 10.0     # resend the latest frame after this long without news, so clients can use socket timeouts
POLL_S = 0.25          # how often a streaming handler checks whether its client has hung up
READ_TIMEOUT_S = 30.0  # a request body that trickles slower than this is dropped
MAX_CONNECTIONS = 32   # served at once; as many more are answered 503 "busy", any beyond that are dropped


class Busy(Exception):
    pass


class ServerJob:
    """A job between its request and its last frame; `events` carries (header, payload parts) to the handler."""

    def __init__(self, req: P.JobRequest, payload: Any) -> None:
        self.name = secrets.token_hex(8)
        self.req = req
        self.payload = payload
        self.cancel = threading.Event()
        self.events: "queue.Queue[Tuple[Dict[str, Any], Tuple[Any, ...]]]" = queue.Queue()

    def post(self, header: Dict[str, Any], *payload: Any) -> None:
        self.events.put((header, payload))

    def queued(self, position: int) -> None:
        self.post({"kind": P.QUEUED, "id": self.req.id, "job": self.name, "position": position})

    def fail(self, code: str, message: str) -> None:
        self.post(jobs.error_header(self.req.id, code, message))


class Runner:
    """One device: runs its jobs one after another from a bounded queue, in its own thread."""

    def __init__(self, device: str, max_waiting: int) -> None:
        self.device = device
        self.max_waiting = max_waiting
        self._cond = threading.Condition()
        self._waiting: Deque[ServerJob] = collections.deque()
        self._running: Optional[ServerJob] = None
        threading.Thread(target=self._loop, name=f"luciddream-runner-{device}", daemon=True).start()

    def submit(self, job: ServerJob) -> None:
        with self._cond:
            if len(self._waiting) + (self._running is not None) > self.max_waiting:
                raise Busy(f"The engine is busy: {len(self._waiting)} job(s) already wait for {self.device}; try "
                           f"again when one finishes.")
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

        job.fail(P.CANCELLED, str(Cancelled()))

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
            outcome = jobs.run(job.req, job.payload, job.cancel, job.post)
            job.post(outcome.header, *outcome.payload)
            job.payload = None
            with self._cond:
                self._running = None
            print(f"luciddream serve: job {job.name} {job.req.width}×{job.req.height} on {self.device} "
                  f"{outcome.status} in {time.monotonic() - start:.2f} s", file=sys.stderr, flush=True)


class Engine:
    """What the handlers share: limits, token, the runners (one per device) and the jobs by name."""

    def __init__(self, token: Optional[str], limits: P.Limits, max_waiting: int) -> None:
        self.token = token
        self.limits = limits
        self.max_waiting = max_waiting
        self._lock = threading.Lock()
        self._runners: Dict[str, Runner] = {}
        self.jobs: Dict[str, Tuple[ServerJob, Runner]] = {}

    def authorized(self, header: Optional[str]) -> bool:
        if self.token is None:
            return True
        given = (header or "")[len("Bearer "):] if (header or "").startswith("Bearer ") else ""
        return hmac.compare_digest(given.encode("utf-8"), self.token.encode("utf-8"))

    def runner_for(self, req: P.JobRequest) -> Runner:
        """One runner per device the job resolves to ("auto" and "cuda" on a GPU box share one)."""
        from .errors import DreamError
        from .nets import resolve_device

        name = (req.settings or {}).get("device", "auto")
        if not isinstance(name, str):
            raise DreamError(f'The setting device must be a name such as "cpu", not {name!r}.')
        key = str(resolve_device(name))
        with self._lock:
            runner = self._runners.get(key)
            if runner is None:
                runner = self._runners[key] = Runner(key, self.max_waiting)
        return runner


class _Bounded:
    """A reader that never reads past the request body, so a frame that claims more than was sent cannot hang us."""

    def __init__(self, stream: Any, length: int) -> None:
        self.stream = stream
        self.left = length

    def read(self, n: int) -> bytes:
        n = min(n, self.left)
        if n <= 0:
            return b""
        data = self.stream.read(n)
        self.left -= len(data)
        return data


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "luciddream"
    sys_version = ""
    timeout = READ_TIMEOUT_S
    server: "Server"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (the base class's name)
        sys.stderr.write(f"luciddream serve: {self.address_string()} {format % args}\n")

    # --- replies

    def _reply(self, status: int, header: Optional[Dict[str, Any]] = None) -> None:
        body = P.frame_bytes(header) if header is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def _refuse(self, status: int, code: str, message: str, job_id: Any = None) -> None:
        self._reply(status, jobs.error_header(job_id, code, message))

    def _chunk(self, parts: Sequence[Any]) -> None:
        size = sum(memoryview(p).nbytes for p in parts)
        self.wfile.write(b"%x\r\n" % size)
        for p in parts:
            self.wfile.write(p)
        self.wfile.write(b"\r\n")

    # --- routes

    def _allowed(self) -> bool:
        if self.server.engine.authorized(self.headers.get("Authorization")):
            return True
        self._refuse(401, P.UNAUTHORIZED, "The server needs the right token: set it in the plug-in's settings "
                                          "(it is the --token or LUCIDDREAM_TOKEN the server was started with).")
        return False

    def do_GET(self) -> None:  # noqa: N802  (http.server's naming)
        if not self._allowed():
            return
        if self.path.split("?")[0] != "/v1/hello":
            self._refuse(404, P.NOT_FOUND, f"There is nothing at {self.path[:100]}: use GET /v1/hello or "
                                           f"POST /v1/dream.")
            return
        info = jobs.engine_info(self.server.engine.limits, HEARTBEAT_S)
        info.update({"kind": P.HELLO, "id": None, "queue": self.server.engine.max_waiting})
        self._reply(200, info)

    def do_POST(self) -> None:  # noqa: N802
        if not self._allowed():
            return
        path = self.path.split("?")[0]
        if path == "/v1/dream":
            self._dream()
            return
        parts = path.strip("/").split("/")
        if len(parts) == 4 and parts[:2] == ["v1", "jobs"] and parts[3] == "cancel":
            self._discard_body(64 * 1024)
            entry = self.server.engine.jobs.get(parts[2])
            if entry is None:
                self._refuse(404, P.NOT_FOUND, "No such job: it has finished already or never existed.")
                return
            entry[1].cancel(entry[0])
            self._reply(200)
            return
        self._refuse(404, P.NOT_FOUND, f"There is nothing at {self.path[:100]}: use GET /v1/hello or "
                                       f"POST /v1/dream.")

    def _discard_body(self, most: int) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if 0 < length <= most:
            self.rfile.read(length)

    def _body_length(self) -> Optional[int]:
        """The declared body size, refused (with a reply) when missing, malformed or over the limits."""
        limits = self.server.engine.limits
        if self.headers.get("Transfer-Encoding"):
            self._refuse(411, P.BAD_REQUEST, "Send the job with a Content-Length, not a chunked body.")
            return None
        text = self.headers.get("Content-Length")
        if text is None or not text.strip().isdigit():
            self._refuse(411, P.BAD_REQUEST, "The request needs a Content-Length header with the frame's size.")
            return None
        length = int(text)
        if length > limits.max_frame:
            self._refuse(413, P.TOO_LARGE, f"The request is {length} bytes, more than the {limits.max_frame} this "
                                           f"server accepts: dream a smaller selection.")
            return None
        return length

    def _dream(self) -> None:
        engine = self.server.engine
        length = self._body_length()
        if length is None:
            return
        body = _Bounded(self.rfile, length)
        try:
            msg = P.read_message(body, engine.limits, P.check_request)
        except P.FrameError as exc:
            self._refuse(413 if exc.code == P.TOO_LARGE else 400, exc.code, exc.message)
            return
        except socket.timeout:
            self._refuse(408, P.BAD_REQUEST, f"The request body did not arrive within {READ_TIMEOUT_S:g} seconds.")
            return
        if msg is None:
            self._refuse(400, P.BAD_FRAME, "The request body is empty: POST one dream frame.")
            return
        if msg.error is not None:
            self._refuse(413 if msg.error.code == P.TOO_LARGE else 400, msg.error.code, msg.error.message, msg.id)
            return
        if body.left:
            self._refuse(400, P.BAD_FRAME, f"The request body has {body.left} bytes after its frame: send exactly "
                                           f"one frame.", msg.id)
            return
        if msg.kind != P.DREAM:
            self._refuse(400, P.BAD_REQUEST, f'POST /v1/dream takes a "dream" message, not "{msg.kind}".', msg.id)
            return
        req = P.JobRequest.from_header(msg.header, engine.limits)
        try:
            runner = engine.runner_for(req)
        except Exception as exc:  # a DreamError about the device
            code, message = jobs.failure(exc)
            self._refuse(422 if code == P.BAD_INPUT else 500, code, message, req.id)
            return
        job = ServerJob(req, msg.payload)
        try:
            runner.submit(job)
        except Busy as exc:
            self._refuse(503, P.BUSY, str(exc), req.id)
            return
        engine.jobs[job.name] = (job, runner)
        try:
            self._stream(job, runner)
        finally:
            engine.jobs.pop(job.name, None)

    def _stream(self, job: ServerJob, runner: Runner) -> None:
        """Relay the job's frames as chunks until its last one; cancel it if the client goes away."""
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        last: Optional[Tuple[Dict[str, Any], Tuple[Any, ...]]] = None
        quiet_since = next_check = time.monotonic()
        try:
            while True:
                try:
                    item = job.events.get(timeout=max(0.0, next_check - time.monotonic()))
                except queue.Empty:
                    item = None
                now = time.monotonic()
                if now >= next_check:  # checked on a clock, not only when quiet: progress may never pause
                    next_check = now + POLL_S
                    if _gone(self.connection):
                        runner.cancel(job)
                        return
                    if item is None and last is not None and now - quiet_since > HEARTBEAT_S:
                        self._chunk(P.encode(*last))  # a heartbeat: the same news again
                        quiet_since = now
                if item is None:
                    continue
                header, payload = item
                self._chunk(P.encode(header, *payload))
                quiet_since = now
                if header["kind"] in (P.RESULT, P.ERROR):
                    self.wfile.write(b"0\r\n\r\n")
                    return
                last = (header,)
        except OSError:  # the client hung up mid-write
            runner.cancel(job)


class Refusal(Handler):
    """A connection over the server's limit: read what the client sends, then answer 503 "busy" in a sentence.

    Reading the request first matters: a server that closes a socket with unread bytes resets the connection, and
    the client would see "connection reset" instead of the answer.
    """

    timeout = 5.0

    def _busy(self) -> None:
        try:
            left = min(int(self.headers.get("Content-Length") or 0), self.server.engine.limits.max_frame)
        except ValueError:
            left = 0
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 20))
            if not chunk:
                break
            left -= len(chunk)
        self._refuse(503, P.BUSY, f"The server already has {self.server.max_connections} open connections, its "
                                  f"most: try again in a moment.")

    def do_GET(self) -> None:  # noqa: N802
        self._busy()

    def do_POST(self) -> None:  # noqa: N802
        self._busy()


def _gone(sock: socket.socket) -> bool:
    """Has the peer closed its end? (readable with nothing to read; sockets that error count as gone)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: Tuple[str, int], engine: Engine, max_connections: int = MAX_CONNECTIONS) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.engine = engine
        self.max_connections = max_connections
        self._active = 0
        self._refusing: set = set()   # connections over the limit, answered "busy" by a Refusal handler
        self._active_lock = threading.Lock()
        super().__init__(address, Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Up to max_connections are served; as many again are told "busy" (503); past that they are dropped, so
        a flood never grows threads without bound."""
        with self._active_lock:
            if self._active < self.max_connections:
                self._active += 1
            elif len(self._refusing) < self.max_connections:
                self._refusing.add(request)
            else:
                self.shutdown_request(request)
                return
        super().process_request(request, client_address)

    def finish_request(self, request: Any, client_address: Any) -> None:
        with self._active_lock:
            refused = request in self._refusing
        (Refusal if refused else Handler)(request, client_address, self)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._active_lock:
                if request in self._refusing:
                    self._refusing.discard(request)
                else:
                    self._active -= 1


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def make_server(host: str = "127.0.0.1", port: int = 0, token: Optional[str] = None,
                limits: P.Limits = P.DEFAULT_LIMITS, max_waiting: int = 4,
                max_connections: int = MAX_CONNECTIONS) -> Server:
    """A ready (bound, not yet serving) server; refuses a non-loopback address without a token."""
    from .errors import DreamError

    if token is not None and not token:
        token = None
    if not is_loopback(host) and token is None:
        raise DreamError(f"Listening on {host} would let anyone on the network use this engine: give a --token "
                         f"(or LUCIDDREAM_TOKEN), or listen on 127.0.0.1.")
    try:
        return Server((host.strip("[]"), port), Engine(token, limits, max_waiting), max(1, max_connections))
    except OSError as exc:
        raise DreamError(f"Cannot listen on {host}:{port} ({exc.strerror or exc}): pick another --port or "
                         f"--host.") from None


def add_command(sub: Any) -> None:
    """The `serve` subcommand for cli.py's subparsers."""
    p = sub.add_parser("serve", help="serve jobs over HTTP (docs/protocol.md)",
                       description="Run the engine as an HTTP server for plug-ins on this or another machine.")
    add_arguments(p)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; any other "
                                                       "needs a token)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    p.add_argument("--token", default=None, help="shared secret clients must send (default: $LUCIDDREAM_TOKEN)")
    p.add_argument("--queue", type=int, default=4, help="jobs that may wait per device (default 4)")
    p.add_argument("--max-connections", type=int, default=MAX_CONNECTIONS,
                   help=f"connections served at once; more are told the server is busy (default {MAX_CONNECTIONS})")
    p.add_argument("--max-pixels", type=int, default=P.Limits().max_pixels,
                   help=f"largest image accepted, in pixels (default {P.Limits().max_pixels})")


def run(args: argparse.Namespace) -> int:
    """Entry point after argument parsing; prints the address on stdout once it listens."""
    token = args.token if args.token is not None else os.environ.get("LUCIDDREAM_TOKEN")
    server = make_server(args.host, args.port, token, P.Limits(max_pixels=max(1, args.max_pixels)),
                         max(0, args.queue), args.max_connections)
    host, port = server.server_address[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"luciddream serve: listening on http://{shown}:{port}/ "
          f"({'token required' if server.engine.token else 'no token'})", flush=True)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
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
