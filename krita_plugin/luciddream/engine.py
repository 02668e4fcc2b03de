"""The way to the engine: engine.json, one worker process per Krita, and jobs that run in a thread.

No Qt and no Krita here, so it is testable on its own; the docker turns the callbacks into Qt signals. The engine
never runs in Krita's Python (no torch there): `Client.spawn` starts `python -m luciddream.worker` with the Python
that install.py wrote into engine.json (in kit.worker_env, as GIMP starts it), or `Client.connect` talks to a
`luciddream serve` when a url is set. Reading engine.json and the engine's offer is the kit's, shared with GIMP.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

from . import protocol
from .kit import (CANCELLED, TINY_SETTINGS, TINY_TARGETS, Offer, UserError, offer_from_config, offer_from_hello,
                  read_config, tiny_image, worker_env)

CONFIG_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "engine.json")


@dataclass(frozen=True)
class JobSpec:
    """Everything one dream sends to the engine."""

    pixels: bytes
    width: int
    height: int
    channels: int
    sample: str
    mask: Optional[bytes]
    targets: str
    settings: Dict[str, Any]
    guide: Optional[tuple] = None   # (pixels, width, height, channels, sample) of a guide picture, or None


@dataclass
class Callbacks:
    """Called from the job's thread: the docker re-emits them as Qt signals, so widgets are only touched in the
    GUI thread."""

    progress: Callable[[float, str], None]
    done: Callable[[Optional[bytes], Optional[str], str], None]   # (pixels or None, error code or None, message)
    hello: Optional[Callable[[Dict[str, Any]], None]] = None


class Engine:
    """One engine connection shared by every docker; at most one job at a time.

    The worker is started on the first dream (in the job's thread, so Krita never waits for torch to load) and kept
    for the next ones, since loading the model is the slow part. When it dies the next dream starts a new one.
    """

    def __init__(self, config_path: str = CONFIG_FILE, spawn_env: Optional[Dict[str, str]] = None) -> None:
        self.config_path = config_path
        self.spawn_env = spawn_env
        self._client: Optional[protocol.Client] = None
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._job: Optional[protocol.Job] = None
        self._cancelled = False
        self._running = False
        self.info: Dict[str, Any] = {}
        self._live_offer: Optional[Offer] = None

    def cached_offer(self) -> Offer:
        """The offer install.py cached in engine.json: what the docker shows before any worker has started."""
        return offer_from_config(read_config(self.config_path), self.config_path)

    @property
    def offer(self) -> Offer:
        """The running engine's offer once a worker said hello, else the cached one (UserError when neither)."""
        return self._live_offer if self._live_offer is not None else self.cached_offer()

    @property
    def busy(self) -> bool:
        """A job is running (cleared just before its done callback, so the docker can start the next at once)."""
        return self._running

    def start(self, spec: JobSpec, callbacks: Callbacks) -> None:
        """Run one dream in a background thread; `callbacks.done` is called exactly once at the end."""
        with self._lock:
            if self.busy:
                raise UserError("A dream is already running: wait for it or press Cancel.")
            self._cancelled = False
            self._job = None
            self._running = True
            self._thread = threading.Thread(target=self._run, args=(spec, callbacks), name="luciddream-job",
                                            daemon=True)
            self._thread.start()

    def check(self, done: Callable[[Optional[Dict[str, Any]], float, Optional[str]], None]) -> None:
        """"Test engine" in a background thread: start (or reuse) the worker, then a tiny dream, timed.
        `done(hello, seconds, None)` when it worked, `done(None, 0, sentence)` when not; called exactly once."""
        with self._lock:
            if self.busy:
                raise UserError("A dream is running: test the engine when it has finished (or press Cancel).")
            self._cancelled = False
            self._running = True
            self._thread = threading.Thread(target=self._check, args=(done,), name="luciddream-check", daemon=True)
            self._thread.start()

    def _check(self, done: Callable[[Optional[Dict[str, Any]], float, Optional[str]], None]) -> None:
        info: Optional[Dict[str, Any]] = None
        seconds, problem = 0.0, None
        try:
            client = self._connect(Callbacks(lambda fraction, message: None, lambda *a: None))
            info = dict(self.info)
            pixels, width, height, channels, sample = tiny_image()
            started = time.monotonic()
            job = client.dream(pixels, width, height, channels, sample, None, TINY_TARGETS, dict(TINY_SETTINGS))
            with self._lock:
                self._job = job
            job.result()
            seconds = time.monotonic() - started
        except protocol.JobCancelled:
            problem = CANCELLED
        except protocol.WorkerError as exc:
            problem = exc.message
            if exc.code in (protocol.WORKER_GONE, protocol.TIMEOUT, protocol.BAD_FRAME,
                            protocol.UNSUPPORTED_VERSION):
                self.restart()
        except UserError as exc:
            problem = str(exc)
        except Exception as exc:  # the check exists to say what is wrong: never let it die silently
            problem = f"Unexpected error in the plug-in: {type(exc).__name__}: {exc}"
        finally:
            with self._lock:
                self._job = None
        self._running = False
        done(None if problem else info, seconds, problem)

    def cancel(self) -> None:
        """Stop the running dream from any thread; it ends with done(None, "cancelled", ...)."""
        with self._lock:
            self._cancelled = True
            job = self._job
        if job is not None:
            job.cancel()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait for the running job's thread (tests, shutdown); True when none is running any more."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return thread is None or not thread.is_alive()

    def close(self) -> None:
        """End the worker (Krita is closing): cancel what runs, close stdin so the worker exits."""
        self.cancel()
        self.wait(10)
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # closing must never stop Krita from quitting
                pass

    def restart(self) -> None:
        """Forget the current worker; the next dream starts a fresh one."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:
                pass

    # ------------------------------------------------------------------------------------------- the job thread

    def _connect(self, callbacks: Callbacks) -> protocol.Client:
        with self._lock:
            if self._client is not None:
                return self._client
        config = read_config(self.config_path)
        if config.how == "connect":
            client = protocol.Client.connect(config.url, config.token, fingerprint=config.fingerprint)
        else:
            if not os.path.isfile(config.python or ""):
                raise UserError(f"The engine's Python {config.python} does not exist: install the engine again "
                                f"(python install.py) or fix {self.config_path}.")
            callbacks.progress(0.0, "Starting the engine (loading the model)…")
            client = protocol.Client.spawn(config.python, env=worker_env(self.spawn_env))
        self.info = client.hello()
        try:
            self._live_offer = offer_from_hello(self.info)
        except UserError:   # an engine that sends no offer: the docker keeps showing the cached one
            self._live_offer = None
        if callbacks.hello is not None:
            callbacks.hello(dict(self.info))
        with self._lock:
            self._client = client
        return client

    def _run(self, spec: JobSpec, callbacks: Callbacks) -> None:
        pixels: Optional[bytes] = None
        code: Optional[str] = None
        message = ""
        try:
            client = self._connect(callbacks)
            if self._cancelled:
                raise protocol.JobCancelled()
            extra = {} if spec.guide is None else {"guide": spec.guide}   # older clients take no guide
            job = client.dream(spec.pixels, spec.width, spec.height, spec.channels, spec.sample, spec.mask,
                               spec.targets, spec.settings, **extra)
            with self._lock:
                self._job = job
                cancelled = self._cancelled
            if cancelled:   # Cancel came while the pixels were being sent
                job.cancel()
            for event in job.events():
                callbacks.progress(event.fraction, event.message)
            pixels = job.result()
            message = "done"
        except protocol.JobCancelled:
            code, message = protocol.CANCELLED, CANCELLED
        except protocol.WorkerError as exc:
            code, message = exc.code, exc.message
            if exc.code in (protocol.WORKER_GONE, protocol.TIMEOUT, protocol.BAD_FRAME,
                            protocol.UNSUPPORTED_VERSION):
                self.restart()
                message += " Press Dream to start the engine again."
        except UserError as exc:
            code, message = "config", str(exc)
        except Exception as exc:  # a bug here must still end the job with a sentence, never hang the docker
            code, message = protocol.INTERNAL, f"Unexpected error in the plug-in: {type(exc).__name__}: {exc}"
        finally:
            with self._lock:
                self._job = None
        if self._cancelled and code is None:   # a result that raced the Cancel is dropped: Cancel means unchanged
            pixels, code, message = None, protocol.CANCELLED, CANCELLED
        self._running = False
        callbacks.done(pixels, code, message)
