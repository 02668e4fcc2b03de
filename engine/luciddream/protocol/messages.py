"""Messages: the kinds, what each header must hold, and the checks both sides run before trusting one.

The engine checks every request strictly (check_request: unknown fields, wrong types, a payload of the wrong
length are refused with a sentence); the client checks replies leniently (check_reply: a newer engine may add
fields) but strictly about sizes. make_request runs the same checks on the plug-in's side before anything is sent.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple, Union

from .errors import BAD_REQUEST, TOO_LARGE, WorkerError
from .framing import _ID_MAX, DEFAULT_LIMITS, MAX_CHANNELS, SAMPLE_BYTES, Limits, valid_id

# Message kinds. Requests go to the engine, replies come back.
HELLO = "hello"          # request and reply: ping, versions, what the engine offers
DREAM = "dream"          # request: one job; payload = pixels, then the mask when "mask" is true
CANCEL = "cancel"        # request: stop the job with this id (no reply of its own; the job ends "cancelled")
QUEUED = "queued"        # reply (HTTP only): the job waits behind `position` others; `job` names it for cancel
PROGRESS = "progress"    # reply: fraction done, octave, a short message
RESULT = "result"        # reply: payload = the new pixels, same layout as the request
ERROR = "error"          # reply: `code` and a `message` sentence meant for the user
LOOKS = "looks"          # request and reply: the look atlas's pictures (looks.py); the reply's payload is them
REQUEST_KINDS = (HELLO, DREAM, CANCEL, LOOKS)
REPLY_KINDS = (HELLO, QUEUED, PROGRESS, RESULT, ERROR, LOOKS)

_SETTING_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")


def _fields(header: Dict[str, Any], required: Sequence[str], optional: Sequence[str]) -> None:
    kind = header["kind"]
    known = set(required) | set(optional) | {"kind"}
    unknown = sorted(str(k) for k in header if k not in known)
    if unknown:
        raise WorkerError(BAD_REQUEST, f'Unknown field {", ".join(repr(k) for k in unknown)} in a "{kind}" '
                                       f'message: its fields are {", ".join(sorted(known))}.')
    missing = [k for k in required if k not in header]
    if missing:
        raise WorkerError(BAD_REQUEST, f'A "{kind}" message needs the field {", ".join(repr(k) for k in missing)}.')
    if "id" in header and valid_id(header["id"]) is None:
        raise WorkerError(BAD_REQUEST, f'The "id" of a "{kind}" message must be a string of at most {_ID_MAX} '
                                       f"characters or a whole number.")


def _whole(header: Dict[str, Any], name: str, low: int, high: int, size: bool = False) -> int:
    """A whole-number field; `size`: a value over the top is TOO_LARGE (a limit) rather than a BAD_REQUEST."""
    value = header[name]
    if type(value) is not int:
        raise WorkerError(BAD_REQUEST, f'"{name}" must be a whole number, not {_show(value)}.')
    if not low <= value <= high:
        raise WorkerError(TOO_LARGE if size and value > high else BAD_REQUEST,
                          f'"{name}" must be between {low} and {high}; got {value}.')
    return value


def _show(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(frozen=True)
class JobRequest:
    """What a "dream" message asks for. The payload is width*height*channels samples, then width*height mask bytes,
    then the guide's pixels when `guide` ({width, height, channels, sample}) is set: a picture to dream toward."""

    id: Union[str, int]
    width: int
    height: int
    channels: int
    sample: str
    mask: bool = False
    targets: Optional[str] = None
    settings: Optional[Dict[str, Any]] = None
    guide: Optional[Dict[str, Any]] = None

    @property
    def image_bytes(self) -> int:
        return self.width * self.height * self.channels * SAMPLE_BYTES[self.sample]

    @property
    def mask_bytes(self) -> int:
        return self.width * self.height if self.mask else 0

    @property
    def guide_bytes(self) -> int:
        g = self.guide
        return g["width"] * g["height"] * g["channels"] * SAMPLE_BYTES[g["sample"]] if g else 0

    @property
    def payload_bytes(self) -> int:
        return self.image_bytes + self.mask_bytes + self.guide_bytes

    def header(self) -> Dict[str, Any]:
        header = {"kind": DREAM, "id": self.id, "width": self.width, "height": self.height,
                  "channels": self.channels, "sample": self.sample, "mask": self.mask, "targets": self.targets,
                  "settings": dict(self.settings or {})}
        if self.guide:   # only then: an engine from before guides still accepts every other request
            header["guide"] = dict(self.guide)
        return header

    @classmethod
    def from_header(cls, header: Dict[str, Any], limits: Limits) -> "JobRequest":
        """Check every field of a dream header and say which one is wrong and how."""
        _fields(header, ("id", "width", "height", "channels", "sample"), ("mask", "targets", "settings", "guide"))
        width = _whole(header, "width", 1, limits.max_side, size=True)
        height = _whole(header, "height", 1, limits.max_side, size=True)
        if width * height > limits.max_pixels:
            raise WorkerError(TOO_LARGE, f"The image is {width}×{height} pixels, more than the "
                                         f"{limits.max_pixels:,} this engine accepts: dream a smaller selection, "
                                         f"or start the engine with a larger --max-pixels.")
        channels = _whole(header, "channels", 1, MAX_CHANNELS)
        sample = header["sample"]
        if not isinstance(sample, str) or sample not in SAMPLE_BYTES:  # a list or object is not hashable
            raise WorkerError(BAD_REQUEST, f'"sample" must be one of {", ".join(SAMPLE_BYTES)}, not {_show(sample)}.')
        mask = header.get("mask", False)
        if not isinstance(mask, bool):
            raise WorkerError(BAD_REQUEST, f'"mask" must be true or false, not {_show(mask)}.')
        targets = header.get("targets")
        if targets is not None and not isinstance(targets, str):
            raise WorkerError(BAD_REQUEST, f'"targets" must be a string such as "goldfish, layer:block6", not '
                                           f"{_show(targets)}.")
        settings = header.get("settings")
        settings = {} if settings is None else settings
        if not isinstance(settings, dict):
            raise WorkerError(BAD_REQUEST, f'"settings" must be a JSON object, not {_show(settings)}.')
        for key, value in settings.items():
            if not _SETTING_NAME.match(key):
                raise WorkerError(BAD_REQUEST, f"{_show(key)} is not a setting name.")
            if value is not None and not isinstance(value, (str, int, float, bool)):
                raise WorkerError(BAD_REQUEST, f'The setting "{key}" must be a number or a string, not '
                                               f"{_show(value)}.")
        guide = header.get("guide")
        if guide is not None:
            guide = _guide(guide, limits)
        return cls(header["id"], width, height, channels, sample, mask, targets, dict(settings), guide)


def _guide(guide: Any, limits: Limits) -> Dict[str, Any]:
    """The guide picture's layout ({width, height, channels, sample}), checked like the image's."""
    if not isinstance(guide, dict):
        raise WorkerError(BAD_REQUEST, f'"guide" must be an object {{width, height, channels, sample}}, not '
                                       f"{_show(guide)}.")
    unknown = sorted(str(k) for k in guide if k not in ("width", "height", "channels", "sample"))
    missing = [k for k in ("width", "height", "channels", "sample") if k not in guide]
    if unknown or missing:
        wrong = f"unknown {', '.join(unknown)}" if unknown else f"missing {', '.join(missing)}"
        raise WorkerError(BAD_REQUEST, f'"guide" needs exactly width, height, channels and sample; {wrong}.')
    width = _whole(guide, "width", 1, limits.max_side, size=True)
    height = _whole(guide, "height", 1, limits.max_side, size=True)
    if width * height > limits.max_pixels:
        raise WorkerError(TOO_LARGE, f"The guide is {width}×{height} pixels, more than the {limits.max_pixels:,} "
                                     f"this engine accepts: use a smaller guide picture.")
    channels = _whole(guide, "channels", 1, MAX_CHANNELS)
    sample = guide["sample"]
    if not isinstance(sample, str) or sample not in SAMPLE_BYTES:
        raise WorkerError(BAD_REQUEST, f'The guide\'s "sample" must be one of {", ".join(SAMPLE_BYTES)}, not '
                                       f"{_show(sample)}.")
    return {"width": width, "height": height, "channels": channels, "sample": sample}


MAX_LOOKS_CHANNELS = 4096


def check_looks(header: Dict[str, Any]) -> None:
    """The fields of a "looks" request (looks.py): model, layers, channels, search, each optional."""
    _fields(header, ("id",), ("model", "layers", "channels", "search"))
    for key in ("model", "search"):
        value = header.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > 200):
            raise WorkerError(BAD_REQUEST, f'"{key}" must be a short string, not {_show(value)}.')
    layers = header.get("layers")
    if layers is not None and (not isinstance(layers, list) or len(layers) > 1000 or
                               not all(isinstance(name, str) and len(name) <= 4000 for name in layers)):
        raise WorkerError(BAD_REQUEST, f'"layers" must be a list of layer names such as ["block6", '
                                       f'"block6:3,17"], not {_show(layers)}.')
    channels = header.get("channels")
    if channels is not None and (type(channels) is not int or not 1 <= channels <= MAX_LOOKS_CHANNELS):
        raise WorkerError(BAD_REQUEST, f'"channels" must be a whole number from 1 to {MAX_LOOKS_CHANNELS}, '
                                       f"not {_show(channels)}.")


def check_request(header: Dict[str, Any], payload_len: int, limits: Limits) -> None:
    """Validator for the engine side: every request kind, its fields and its exact payload length."""
    kind = header["kind"]
    if kind == DREAM:
        job = JobRequest.from_header(header, limits)
        if payload_len != job.payload_bytes:
            mask = f" plus a {job.mask_bytes}-byte mask" if job.mask else ""
            raise WorkerError(BAD_REQUEST, f"A {job.width}×{job.height} image with {job.channels} {job.sample} "
                                           f"channel(s) is {job.image_bytes} bytes{mask}, but the message carries "
                                           f"{payload_len}.")
        return
    if kind == HELLO:
        _fields(header, (), ("id", "protocol", "client"))
    elif kind == CANCEL:
        _fields(header, (), ("id",))
    elif kind == LOOKS:
        check_looks(header)
    else:
        raise WorkerError(BAD_REQUEST, f'Unknown message kind {_show(kind)}: requests are '
                                       f'{", ".join(REQUEST_KINDS)}.')
    if payload_len:
        raise WorkerError(BAD_REQUEST, f'A "{kind}" message carries no payload, but this one has {payload_len} '
                                       f"bytes.")


def check_reply(header: Dict[str, Any], payload_len: int, limits: Limits) -> None:
    """Validator for the client side: lenient about extra fields (newer engines may add some), strict about sizes."""
    kind = header["kind"]
    if kind not in REPLY_KINDS:
        raise WorkerError(BAD_REQUEST, f"The engine sent an unknown message kind {_show(kind)}.")
    if kind not in (RESULT, LOOKS) and payload_len:
        raise WorkerError(BAD_REQUEST, f'The engine sent a "{kind}" message with a payload.')


def make_request(job_id: Union[str, int], pixels: Any, width: int, height: int, channels: int, sample_type: str,
                 mask: Any = None, targets: Optional[str] = "", settings: Optional[Dict[str, Any]] = None,
                 limits: Limits = DEFAULT_LIMITS, guide: Optional[Tuple[Any, int, int, int, str]] = None
                 ) -> JobRequest:
    """Check a job on the plug-in's side, so a wrong buffer size is reported before anything is sent. `guide`:
    (pixels, width, height, channels, sample) of a picture to dream toward, or None."""
    header = {"kind": DREAM, "id": job_id, "width": width, "height": height, "channels": channels,
              "sample": sample_type, "mask": mask is not None, "targets": targets or None,
              "settings": dict(settings or {})}
    if guide is not None:
        header["guide"] = {"width": guide[1], "height": guide[2], "channels": guide[3], "sample": guide[4]}
    req = JobRequest.from_header(header, limits)
    got = memoryview(pixels).nbytes
    if got != req.image_bytes:
        raise WorkerError(BAD_REQUEST, f"A {width}×{height} image with {channels} {sample_type} channel(s) needs "
                                       f"{req.image_bytes} bytes of pixels, but {got} were given.")
    if mask is not None and memoryview(mask).nbytes != req.mask_bytes:
        raise WorkerError(BAD_REQUEST, f"The mask must have one byte per pixel ({req.mask_bytes} bytes), but "
                                       f"{memoryview(mask).nbytes} were given.")
    if guide is not None and memoryview(guide[0]).nbytes != req.guide_bytes:
        raise WorkerError(BAD_REQUEST, f"A {guide[1]}×{guide[2]} guide with {guide[3]} {guide[4]} channel(s) needs "
                                       f"{req.guide_bytes} bytes, but {memoryview(guide[0]).nbytes} were given.")
    return req
