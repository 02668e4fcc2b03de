"""One dream job from protocol request to protocol reply, the same for `luciddream worker` (pipes) and
`luciddream serve` (HTTP).

The two front ends differ only in transport and queueing (one job per pipe, a queue per device over HTTP); what a
job means — which settings travel over the wire, how the payload becomes arrays, which exception becomes which
error code, what the progress, result and error frames hold — lives here once, so both answer alike.
"""
from __future__ import annotations

import os
import sys
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

from . import protocol as P
from .cache import cache_folder

_DTYPES = {"u8": "<u1", "u16": "<u2", "f32": "<f4"}  # the wire's sample types, little-endian
_TEXT_SETTINGS = ("model", "device", "look")


def engine_info(limits: P.Limits, heartbeat: float = 0.0, cached: bool = False) -> Dict[str, Any]:
    """The body of a hello reply: versions, what can be dreamed with, the largest image accepted, and how often a
    running job sends news at least (0: no promise). `cached`: the models and offer may come from the last
    worker's answer on this installation (see model_info), so the hello needs no torch."""
    from . import __version__

    return {"protocol": P.PROTOCOL_VERSION, "engine": __version__, "pid": os.getpid(),
            "python": ".".join(map(str, sys.version_info[:3])), **model_info(cached),
            "max_pixels": limits.max_pixels, "heartbeat": heartbeat}


def model_info(cached: bool = False) -> Dict[str, Any]:
    """default_model, models and offer: what needs the networks' modules, and so torch (about 1 s to import).

    Why a cache: a plug-in waits for the hello before it shows anything, and importing torch was most of that
    wait. The answer only changes when the engine's code or the installed packages change, so it is kept under a
    key made of the engine's version, this Python, and the modification times of the engine's sources and of every
    folder on sys.path (pip installing or removing a package touches its folder). It lives in the engine's own
    virtual environment, so removing that removes it too (else the user's cache folder; $LUCIDDREAM_CACHE wins).
    """
    import hashlib
    import json

    here = Path(__file__).resolve().parent
    stamps = [__file__, sys.executable, sys.version]
    for folder in [here, here / "nets", *sys.path[1:]]:  # [0] is the script's folder or the current one
        try:
            stamps.append(f"{folder}:{os.stat(folder or '.').st_mtime_ns}")
            if folder in (here, here / "nets"):
                stamps += [f"{p.name}:{p.stat().st_mtime_ns}" for p in sorted(Path(folder).glob("*.py"))]
        except OSError:
            stamps.append(f"{folder}:-")
    key = hashlib.sha256("\n".join(map(str, stamps)).encode("utf-8")).hexdigest()[:20]
    cache = cache_folder() / f"hello-{key}.json"
    if cached:
        try:
            return json.loads(cache.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass
    from . import offer
    from .nets import DEFAULT_MODEL, SPECS

    info = {"default_model": DEFAULT_MODEL, "models": [name for name, spec in SPECS.items() if spec.available()],
            "offer": offer.describe(), "device": auto_device_name()}
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps(info), encoding="utf-8")
        os.replace(partial, cache)
    except OSError:  # a read-only home: the hello is just slower
        pass
    return info


def auto_device_name() -> str:
    """What device "auto" computes on, as a person reads it: "cpu", "mps" or the GPU's name ("Test engine")."""
    import torch

    from .nets import resolve_device

    device = resolve_device("auto")
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


def warm_up() -> None:
    """Import the dream's modules and load the default model, in the background after a hello, so that the first
    dream does not pay for them (the model stays cached in nets.load_model)."""
    def load() -> None:
        try:
            from . import render  # noqa: F401  (torch and every module a dream needs)
            from .nets import DEFAULT_MODEL, load_model, resolve_device

            load_model(DEFAULT_MODEL, resolve_device("auto"))
        except Exception:  # the job itself will say what is wrong
            pass

    threading.Thread(target=load, name="luciddream-warm-up", daemon=True).start()


def progress_header(job_id: Any, progress: Any = None) -> Dict[str, Any]:
    """A progress frame for a `luciddream.methods.Progress` (None: the job is being prepared)."""
    if progress is None:
        return {"kind": P.PROGRESS, "id": job_id, "fraction": 0.0, "octave": None, "octaves": None,
                "message": "preparing"}
    return {"kind": P.PROGRESS, "id": job_id, "fraction": round(float(progress.fraction), 6),
            "octave": progress.octave, "octaves": progress.octaves, "message": progress.message}


def result_header(req: P.JobRequest) -> Dict[str, Any]:
    """The "result" frame's header: the layout of the pixels that follow, which is always the request's."""
    return {"kind": P.RESULT, "id": req.id, "width": req.width, "height": req.height, "channels": req.channels,
            "sample": req.sample}


def error_header(job_id: Any, code: str, message: str) -> Dict[str, Any]:
    """An "error" frame; an id not worth echoing (too long, not a string or whole number) goes back as null."""
    return {"kind": P.ERROR, "id": P.valid_id(job_id), "code": code, "message": message}


def dream_settings(req: P.JobRequest) -> Dict[str, Any]:
    """The request's settings as keywords for dream(), or a DreamError naming the one that may not travel."""
    from dataclasses import fields

    from .errors import DreamError
    from .render import Settings

    # JSON null means "the default", as leaving the setting out does (Settings would pass None on to the loop).
    settings = {key: value for key, value in (req.settings or {}).items() if value is not None}
    # Only the dream's settings travel over the wire: `weights` (a path on the engine's machine) and `guide` are
    # keywords of dream() too, and a remote client must not choose files on the server.
    allowed = {f.name for f in fields(Settings)}
    unknown = sorted(set(settings) - allowed)
    if unknown:
        raise DreamError(f"Unknown setting {', '.join(unknown)}: the settings are {', '.join(sorted(allowed))}.")
    for key in _TEXT_SETTINGS:
        if key in settings and not isinstance(settings[key], str):
            raise DreamError(f"The setting {key} must be a name such as \"{'lite0' if key == 'model' else 'cpu'}\", "
                             f"not {settings[key]!r}.")
    return settings


def decode_guide(req: P.JobRequest, payload: Any) -> Optional[Any]:
    """The guide picture after the image and the mask, as a height×width×channels array (None without one)."""
    import numpy as np

    g = req.guide
    if not g:
        return None
    wire = np.dtype(_DTYPES[g["sample"]])
    guide = np.frombuffer(payload, dtype=wire, count=g["width"] * g["height"] * g["channels"],
                          offset=req.image_bytes + req.mask_bytes).reshape(g["height"], g["width"], g["channels"])
    return guide.astype(wire.newbyteorder("="), copy=False)


def decode_payload(req: P.JobRequest, payload: Any) -> Tuple[Any, Optional[Any]]:
    """(image, mask) as arrays over the payload's bytes: height×width×channels samples and height×width bytes."""
    import numpy as np

    wire = np.dtype(_DTYPES[req.sample])
    count = req.width * req.height * req.channels
    image = np.frombuffer(payload, dtype=wire, count=count).reshape(req.height, req.width, req.channels)
    image = image.astype(wire.newbyteorder("="), copy=False)  # a no-op on little-endian machines
    mask = None
    if req.mask:
        mask = np.frombuffer(payload, dtype=np.uint8, count=req.width * req.height,
                             offset=req.image_bytes).reshape(req.height, req.width)
    return image, mask


def encode_pixels(req: P.JobRequest, pixels: Any) -> bytes:
    """The dream's array as the result payload: the request's sample type, little-endian, row by row."""
    import numpy as np

    return np.ascontiguousarray(pixels).astype(np.dtype(_DTYPES[req.sample]), copy=False).tobytes()


def run_job(req: P.JobRequest, payload: Any, cancel: threading.Event,
            progress: Callable[[Any], None]) -> bytes:
    """Turn the payload into arrays, dream, and return the new pixels in the request's layout."""
    from . import threads
    from .render import dream

    threads.configure()  # the physical cores, less one for the editor when a plug-in spawned us (threads.py)
    settings = dream_settings(req)
    image, mask = decode_payload(req, payload)
    out = dream(image, mask, req.targets or None, progress=progress, cancel=cancel, guide=decode_guide(req, payload),
                **settings)
    return encode_pixels(req, out)


def failure(exc: BaseException) -> Tuple[str, str]:
    """(error code, sentence) for an exception from a job; unexpected ones leave their traceback on stderr."""
    from .errors import Cancelled, DreamError, is_out_of_memory

    if isinstance(exc, Cancelled):
        return P.CANCELLED, str(exc)
    if isinstance(exc, DreamError):
        return P.BAD_INPUT, str(exc)
    if is_out_of_memory(exc):
        return P.OUT_OF_MEMORY, ("The engine ran out of memory: use a smaller tile setting, fewer octaves or a "
                                 "smaller selection.")
    traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    text = str(exc).splitlines()[0] if str(exc) else ""
    text = text if len(text) <= 160 else text[:157] + "..."
    return P.INTERNAL, (f"The engine failed unexpectedly ({type(exc).__name__}{': ' + text if text else ''}); "
                        f"its log has the details.")


def run_looks(req: Any, cancel: threading.Event, send_progress: Callable[[Dict[str, Any]], None]) -> "Outcome":
    """A "looks" request (protocol/looks.py): the atlas's pictures, drawn where the cache lacks them (progress
    frames meanwhile, Cancel keeps what is finished), as one "looks" reply; failures become an error frame."""
    from .protocol.looks import reply_payload

    try:
        from . import atlas, threads
        from .nets import DEFAULT_MODEL

        threads.configure()

        def progress(fraction: float, message: str) -> None:
            send_progress({"kind": P.PROGRESS, "id": req.id, "fraction": round(fraction, 6), "octave": None,
                           "octaves": None, "message": message})

        found = atlas.build(req.model or DEFAULT_MODEL, list(req.layers) if req.layers else None, req.channels,
                            progress=progress, cancel=cancel,
                            note=lambda line: print(f"luciddream worker: {line}", file=sys.stderr, flush=True))
        wanted = None if not req.search else {(c.layer, c.channel) for c in atlas.search(found, req.search)}
        pictures: list = []

        def picture(path: Path) -> list:
            data = path.read_bytes()
            pictures.append(data)
            return [sum(map(len, pictures[:-1])), len(data)]

        layers = []
        for layer in found.layers:
            looks = [{"channel": c.channel, "target": c.target, "classes": [[n, p] for n, p in c.classes[:3]],
                      "basis": c.basis, "picture": picture(c.picture)}
                     for c in layer.channels if wanted is None or (c.layer, c.channel) in wanted]
            if wanted is not None and not looks:
                continue
            layers.append({"layer": layer.layer, "target": layer.target, "channels": layer.channels_total,
                           "picture": picture(layer.thumbnail), "looks": looks})
        fields, payload = reply_payload({"model": found.model, "layers": layers}, pictures)
        return Outcome({"kind": P.LOOKS, "id": req.id, **fields}, (payload,), "done")
    except BaseException as exc:  # like a dream: every failure becomes a reply
        code, message = failure(exc)
        return Outcome(error_header(req.id, code, message), (), code)


def paused(outcome: "Outcome", req_id: Any, dream_id: Any) -> "Outcome":
    """A looks job's reply after a dream (`dream_id`, None when none) asked it to make way: when that stopped it,
    `busy` with a sentence saying so, so the plug-in asks again later (the atlas's cache keeps what it drew);
    otherwise `outcome` itself. The worker and serve both answer through this."""
    if dream_id is None or outcome.status != P.CANCELLED:
        return outcome
    return Outcome(error_header(req_id, P.BUSY, f"The looks were paused so that dream {dream_id} could run; every "
                                                f"picture finished so far is kept: ask again when it ends."),
                   (), "paused")


@dataclass(frozen=True)
class Outcome:
    """A finished job: its last frame (a "result" with the pixels, or an "error") and a word for the log line."""

    header: Dict[str, Any]
    payload: Tuple[Any, ...]
    status: str   # "done", or the error code


def run(req: P.JobRequest, payload: Any, cancel: threading.Event,
        send_progress: Callable[[Dict[str, Any]], None]) -> Outcome:
    """Run one job to its last frame; every failure becomes an error frame, so the caller can carry on.

    `send_progress` gets each progress frame's header. A job cancelled before it started (while it waited in a
    queue) ends as one cancelled at its first step would, without loading a model.
    """
    try:
        if cancel.is_set():
            from .errors import Cancelled

            raise Cancelled()
        pixels = run_job(req, payload, cancel, lambda p: send_progress(progress_header(req.id, p)))
        return Outcome(result_header(req), (pixels,), "done")
    except BaseException as exc:  # every failure becomes a reply; the worker or the server carries on
        code, message = failure(exc)
        return Outcome(error_header(req.id, code, message), (), code)
