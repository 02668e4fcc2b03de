"""The "looks" message: a plug-in asks the engine for the look atlas's pictures (what each layer and channel
dreams) and gets back their list and their PNGs, to show as a grid the artist picks targets from.

Request header: {"kind": "looks", "id", "model"?, "layers"?: ["block6", "block6:3,17"], "channels"?: N,
"search"?: "dog"}. While pictures are drawn (the first time only; then they come from the engine's cache) the
engine sends "progress" frames like a dream's, and "cancel" stops it, keeping what is finished. The reply is
{"kind": "looks", "id", "index": N}: its payload is N bytes of UTF-8 JSON (the index, below), then the PNGs the
index points into. The index travels in the payload, not the header, so a long atlas never meets the header's
size limit:

    {"model": "lite0", "layers": [{"layer", "target", "channels", "picture": [offset, length],
                                   "looks": [{"channel", "target", "classes": [[name, score], ...],
                                              "basis"?, "picture": [offset, length]}]}]}

Offsets count from the end of the index. A channel's "basis" says what its classes' scores are: "picture" (the
default) the mean probability the network gives the channel's picture, "weights" the classifier's weight from the
channel to the class (where that path is linear: the classes the channel pushes). Standard library only (this
package runs in GIMP's and Krita's Pythons).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from .errors import BAD_FRAME, WorkerError
from .messages import LOOKS, check_looks


@dataclass(frozen=True)
class LooksRequest:
    """What a "looks" message asks for (None: the engine's default model, every layer, 8 channels, no search)."""

    id: Union[str, int]
    model: Optional[str] = None
    layers: Optional[Tuple[str, ...]] = None
    channels: Optional[int] = None
    search: Optional[str] = None
    sample: str = "u8"   # the payload is bytes: Job.result passes it through unchanged

    def header(self) -> Dict[str, Any]:
        header: Dict[str, Any] = {"kind": LOOKS, "id": self.id}
        for key in ("model", "channels", "search"):
            if getattr(self, key) is not None:
                header[key] = getattr(self, key)
        if self.layers is not None:
            header["layers"] = list(self.layers)
        return header

    @classmethod
    def from_header(cls, header: Dict[str, Any]) -> "LooksRequest":
        """Check every field of a looks header (messages.check_looks) and say which one is wrong and how."""
        check_looks(header)
        layers = header.get("layers")
        return cls(header["id"], header.get("model"), None if layers is None else tuple(layers),
                   header.get("channels"), header.get("search"))


@dataclass(frozen=True)
class Look:
    """One picture of the atlas as a plug-in shows it: the target it stands for and its PNG."""

    target: str                  # "layer:block6" (the layer's classic look) or "layer:block6:17"
    layer: str
    channel: Optional[int]       # None for the layer's own thumbnail
    classes: Tuple[Tuple[str, float], ...]
    png: bytes
    basis: str = "picture"       # "picture": probabilities the network gives the picture; "weights": the
                                 # classifier's weights from the channel (the classes it pushes)

    @property
    def label(self) -> str:
        """Short text for a tooltip: the layer (and channel) and its classes."""
        what = f"{self.layer} (classic look)" if self.channel is None else f"{self.layer} channel {self.channel}"
        if self.basis == "weights":
            classes = "pushes " + ", ".join(f"{name} {w:+.2f}" for name, w in self.classes[:3])
        else:
            classes = ", ".join(f"{name} {p:.0%}" for name, p in self.classes[:3])
        return f"{what}: {classes}" if self.classes else what


def reply_payload(index: Dict[str, Any], pictures: Sequence[bytes]) -> Tuple[Dict[str, Any], bytes]:
    """The engine's side: (the reply's header fields, its payload) for an index whose offsets already count from
    the end of the index."""
    body = json.dumps(index, separators=(",", ":")).encode("utf-8")
    return {"index": len(body)}, body + b"".join(pictures)


def read(job: Any, timeout: Optional[float] = None) -> Tuple[str, List[List[Look]]]:
    """Wait for a Client.looks job and read its reply (raises WorkerError, JobCancelled when cancelled)."""
    payload = job.result(timeout)
    return read_reply(job.reply, payload)


def read_reply(header: Dict[str, Any], payload: bytes) -> Tuple[str, List[List[Look]]]:
    """The plug-in's side: (model, one list per layer: its thumbnail first, then its channels)."""
    size = header.get("index")
    if type(size) is not int or not 0 < size <= len(payload):
        raise WorkerError(BAD_FRAME, "The engine's looks reply has no readable index; update the engine.")
    try:
        index = json.loads(payload[:size].decode("utf-8"))
        pictures = payload[size:]

        def png(span: Any) -> bytes:
            offset, length = int(span[0]), int(span[1])
            if offset < 0 or length <= 0 or offset + length > len(pictures):
                raise ValueError("a picture outside the payload")
            return bytes(pictures[offset:offset + length])

        pages = []
        for layer in index["layers"]:
            page = [Look(str(layer["target"]), str(layer["layer"]), None, (), png(layer["picture"]))]
            for item in layer["looks"]:
                classes = tuple((str(name), float(p)) for name, p in item["classes"])
                page.append(Look(str(item["target"]), str(layer["layer"]), int(item["channel"]), classes,
                                 png(item["picture"]), str(item.get("basis", "picture"))))
            pages.append(page)
        return str(index["model"]), pages
    except (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError):
        raise WorkerError(BAD_FRAME, "The engine's looks reply is malformed; update the engine.") from None
