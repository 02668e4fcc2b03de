"""How a client reaches an engine: a child process on pipes (`luciddream worker`) or `luciddream serve` over HTTP.

Both speak the same frames; they differ in how a job's replies find its Job (one reader thread sorting by id for
the pipe, one streamed response per job for HTTP) and in how a cancel travels (a "cancel" frame, or a second POST
and, failing that, hanging up).
"""
from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import os
import queue
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
from typing import Any, Dict, List, Optional
from urllib.parse import quote, urlsplit

from .errors import (BAD_FRAME, TIMEOUT, UNAUTHORIZED, UNREACHABLE, WORKER_GONE, FrameError, JobCancelled,
                     WorkerError, error_for)
from .framing import PROTOCOL_VERSION, Limits, Message, _short, encode, read_message, write_frame
from .job import Job
from .messages import CANCEL, ERROR, HELLO, LOOKS, RESULT, JobRequest, check_reply


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
                                           f"run `python3 install.py` again (or with --venv PATH) so engine.json "
                                           f"names the engine's Python.") from None
        self._write_lock = threading.Lock()
        self._lock = threading.Lock()
        self._jobs: Dict[Any, Job] = {}
        self._hellos: "queue.Queue[Any]" = queue.Queue()
        self._gone: Optional[WorkerError] = None
        self._stopped_why: Optional[str] = None   # set when _hung stopped the worker: it was silent too long
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
        if self._stopped_why is not None:   # this client stopped it (_hung): its exit status says nothing more
            return f"The luciddream engine {self._stopped_why} (log: {self.log_path})."
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
        client says the engine is gone (and why) instead of waiting again."""
        silent = job._stall if job is not None else None
        self._stopped_why = (f"did not answer for {silent:g} s, so it was stopped" if silent else
                             "did not answer in time, so it was stopped")
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


# The line the worker logs when a job ends ("luciddream worker: job 6 192×192 done in 14.55 s", worker.py): quoted
# after a crash it would read as if the job that was running had finished.
_FINISHED_JOB = re.compile(r"^luciddream worker: job \S+ .+ in \d+(\.\d+)? s$")


def _log_tail(path: str, lines: int = 1) -> str:
    """The last line of the worker's log: usually the one that says what went wrong. Nothing when it is an
    earlier job's summary line, which says nothing about this failure."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    kept = [t.strip() for t in text.splitlines() if t.strip()]
    if kept and _FINISHED_JOB.match(kept[-1]):
        return ""
    return " ".join(kept[-lines:])


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address, IPv6 in brackets or not) is this machine: where a token may travel
    over plain HTTP, and where `serve` may listen without TLS."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _pin(text: str) -> str:
    """A SHA-256 fingerprint as 64 upper-case hex digits; `luciddream serve` prints it as AB:CD:... ."""
    digits = "".join(ch for ch in str(text) if ch not in ": ").upper()
    if digits.startswith("SHA256"):
        digits = digits[len("SHA256"):].lstrip("=")
    if len(digits) != 64 or any(ch not in "0123456789ABCDEF" for ch in digits):
        raise WorkerError(UNREACHABLE, f"{str(text)[:120]!r} is not a SHA-256 fingerprint: copy the 32 pairs of hex "
                                       f"digits (AB:CD:...) that `luciddream serve` prints at start.")
    return digits


def _colons(digits: str) -> str:
    return ":".join(digits[i:i + 2] for i in range(0, len(digits), 2))


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a server whose self-signed certificate is known by its SHA-256 fingerprint: the certificate is
    compared right after the handshake, before a byte of the request (and so the token) is sent."""

    def __init__(self, host: str, port: int, timeout: float, pin: str, url: str) -> None:
        context = ssl.create_default_context()
        context.check_hostname = False      # the fingerprint names the certificate exactly; no name or CA needed
        context.verify_mode = ssl.CERT_NONE
        super().__init__(host, port, timeout=timeout, context=context)
        self.pin = pin
        self.url = url

    def connect(self) -> None:
        super().connect()
        der = self.sock.getpeercert(binary_form=True) or b""
        shown = hashlib.sha256(der).hexdigest().upper()
        if not hmac.compare_digest(shown, self.pin):
            self.close()
            raise WorkerError(UNREACHABLE, f"The server at {self.url} shows a certificate with SHA-256 fingerprint "
                                           f"{_colons(shown)}, not the pinned {_colons(self.pin)}, so nothing was "
                                           f"sent: if its certificate was renewed, run install.py --fingerprint "
                                           f"again with the one `luciddream serve` prints; if not, someone may be "
                                           f"in between.")


class _HttpTransport(_Transport):
    """`luciddream serve`: each job is one POST whose response streams frames; cancel is a second small POST.

    https:// verifies the server's certificate against the system's authorities, or, given a `fingerprint`,
    compares it with that pin instead. A token is never sent over plain HTTP to anything but this computer."""

    def __init__(self, url: str, token: Optional[str], timeout: float, limits: Limits,
                 fingerprint: Optional[str] = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise WorkerError(UNREACHABLE, f'"{url}" is not a server address: use http://HOST:PORT or '
                                           f'https://HOST:PORT.')
        self.limits = limits
        self.url = url
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.base = parts.path.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.pin = _pin(fingerprint) if fingerprint else None
        if self.pin is not None and not self.https:
            raise WorkerError(UNREACHABLE, f"A certificate fingerprint is set but {url} is plain HTTP: use "
                                           f"https:// (a server started with --certfile), or drop the fingerprint.")
        if token and not self.https and not is_loopback(self.host):
            raise WorkerError(UNAUTHORIZED, f"The token is not sent to {url}: over plain HTTP anyone on the network "
                                            f"could read it; use https:// (luciddream serve --certfile/--keyfile) "
                                            f"or an SSH tunnel to 127.0.0.1.")

    def _connection(self) -> http.client.HTTPConnection:
        if self.pin is not None:
            return _PinnedHTTPSConnection(self.host, self.port, self.timeout, self.pin, self.url)
        if self.https:
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                               context=ssl.create_default_context())
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

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
        except ssl.SSLCertVerificationError as exc:
            conn.close()
            raise WorkerError(UNREACHABLE, f"The certificate of the server at {self.url} cannot be verified "
                                           f"({exc.verify_message or _short(exc)}): pin it with install.py "
                                           f"--fingerprint (`luciddream serve` prints it at start), or give the "
                                           f"server a certificate from an authority this computer trusts.") from None
        except ssl.SSLError as exc:
            conn.close()
            raise WorkerError(UNREACHABLE, f"No TLS connection to {self.url} ({_short(exc)}): if that server was "
                                           f"started without --certfile, its address begins with http://.") from None
        except OSError as exc:
            conn.close()
            hint = "" if self.https else ": if that server was started with --certfile, use https://"
            raise WorkerError(WORKER_GONE, f"The connection to {self.url} failed ({_short(exc)}){hint}.") from None

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
                if msg.kind in (RESULT, ERROR, LOOKS) or msg.error is not None:
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
