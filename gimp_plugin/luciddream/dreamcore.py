"""The GIMP plug-in's decisions that need no GIMP: settings, targets, the region to read, formats, the mask.

Why a separate module: GIMP only loads a plug-in inside a running GIMP, so anything testable without one lives here
(pure Python, standard library only, no numpy: GIMP's Python has neither numpy nor torch). luciddream.py does the
GObject calls and asks this module what to do.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

# --------------------------------------------------------------------------------------------- dialog choices

# Layer presets: the look of a network depth (EfficientNet-Lite0 names; the engine says so if a model lacks one).
PRESETS: Dict[str, Tuple[str, Optional[str]]] = {
    "none": ("None: only the targets above", None),
    "classic": ("Classic DeepDream (block10)", "layer:block10"),
    "textures": ("Fine textures (block3)", "layer:block3"),
    "patterns": ("Patterns and swirls (block6)", "layer:block6"),
    "eyes": ("Eyes and fur (block9)", "layer:block9"),
    "parts": ("Object parts (block13)", "layer:block13"),
}
MODELS: Dict[str, str] = {
    "lite0": "EfficientNet-Lite0 (fast, works offline)",
    "lite1": "EfficientNet-Lite1",
    "lite2": "EfficientNet-Lite2",
}
DEVICES: Dict[str, str] = {"auto": "Automatic", "cpu": "CPU", "cuda": "CUDA (NVIDIA GPU)", "mps": "MPS (Apple GPU)"}
OUTPUTS: Dict[str, str] = {"new-layer": "A new layer above", "this-layer": "This layer (one undo step)"}

# Ranges the engine accepts (luciddream.Settings); the dialog uses the same ones so nothing is refused later.
RANGES: Dict[str, Tuple[float, float]] = {
    "octaves": (1, 12), "steps": (1, 1000), "strength": (0.01, 64.0), "detail_size": (1.05, 4.0),
    "tile": (64, 4096), "seed": (-1, 2 ** 31 - 1),
}
RANDOM_SEED = -1
_TARGET_ITEM = re.compile(r"[,;\n]")


class BadInput(Exception):
    """Something the user can fix; str() is the one sentence GIMP shows."""


@dataclass(frozen=True)
class Options:
    """The dialog's values, named as the user sees them (not as the engine calls them)."""

    targets: str = ""
    preset: str = "none"
    model: str = "lite0"
    octaves: int = 4
    steps: int = 10
    strength: float = 1.5       # the engine's step_size: mean change per step in 8-bit levels
    detail_size: float = 1.4    # the engine's octave_scale: larger values grow larger dreamed shapes
    tile: int = 640
    seed: int = RANDOM_SEED     # -1: a new random seed every run
    device: str = "auto"
    output: str = "new-layer"


def options_from(values: Mapping[str, Any]) -> Options:
    """Options from a property dict (GIMP's config uses dashes: "detail-size"); missing keys keep their defaults."""
    known = {name: values[key] for key in values
             for name in [key.replace("-", "_")] if name in Options.__dataclass_fields__}
    return Options(**known)


def targets_for(preset: str, text: str) -> Optional[str]:
    """The engine's target string: the preset's layer first, then the typed items; None = the model's classic look.

    Only whitespace is tidied here: the engine knows the class and layer names and refuses unknown ones with a
    sentence, so checking them twice would only let the two lists drift apart.
    """
    if preset not in PRESETS:
        raise BadInput(f'Unknown layer preset "{preset}": choose one of {", ".join(PRESETS)}.')
    items = [t.strip() for t in _TARGET_ITEM.split(text or "") if t.strip()]
    for item in items:
        if item.startswith("=") or item.endswith("="):
            raise BadInput(f'Target "{item}": write a name and then a weight, e.g. goldfish=0.5.')
    layer = PRESETS[preset][1]
    if layer is not None:
        items.insert(0, layer)
    return ", ".join(items) or None


def engine_settings(opts: Options) -> Dict[str, Any]:
    """The engine's settings dict, after checking every value, so a script's typo gets one clear sentence."""
    if opts.model not in MODELS:
        raise BadInput(f'Unknown model "{opts.model}": choose one of {", ".join(MODELS)}.')
    if opts.device not in DEVICES:
        raise BadInput(f'Unknown device "{opts.device}": choose one of {", ".join(DEVICES)}.')
    if opts.output not in OUTPUTS:
        raise BadInput(f'Unknown output "{opts.output}": choose one of {", ".join(OUTPUTS)}.')
    for name, (low, high) in RANGES.items():
        value = getattr(opts, name)
        whole = isinstance(low, int)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (whole and not isinstance(value, int)):
            raise BadInput(f"{_label(name)} must be {'a whole number' if whole else 'a number'}, not {value!r}.")
        if not low <= value <= high:
            raise BadInput(f"{_label(name)} must be between {low:g} and {high:g}; got {value:g}.")
    settings: Dict[str, Any] = {"model": opts.model, "octaves": opts.octaves, "steps": opts.steps,
                                "step_size": float(opts.strength), "octave_scale": float(opts.detail_size),
                                "tile": opts.tile, "device": opts.device}
    if opts.seed != RANDOM_SEED:
        settings["seed"] = opts.seed
    return settings


def _label(name: str) -> str:
    return name.replace("_", " ").capitalize()


def layer_name(source: str, targets: Optional[str]) -> str:
    """The new layer's name says what was dreamed, so several attempts can be told apart in the Layers dock."""
    what = targets if targets else "classic"
    if len(what) > 40:
        what = what[:39] + "…"
    return f"{source} (dream: {what})"


# --------------------------------------------------------------------------------------------- region

@dataclass(frozen=True)
class Rect:
    x: int
    y: int
    width: int
    height: int

    @property
    def empty(self) -> bool:
        return self.width <= 0 or self.height <= 0

    def intersect(self, other: "Rect") -> "Rect":
        x1, y1 = max(self.x, other.x), max(self.y, other.y)
        x2 = min(self.x + self.width, other.x + other.width)
        y2 = min(self.y + self.height, other.y + other.height)
        return Rect(x1, y1, max(0, x2 - x1), max(0, y2 - y1))

    def grow(self, margin: int) -> "Rect":
        return Rect(self.x - margin, self.y - margin, self.width + 2 * margin, self.height + 2 * margin)

    def shift(self, dx: int, dy: int) -> "Rect":
        return Rect(self.x + dx, self.y + dy, self.width, self.height)


@dataclass(frozen=True)
class Plan:
    """What to read and send: `region` in layer coordinates; the selection is read at `region` + layer offsets."""

    region: Rect
    selected: Optional[Rect]   # the selection's bounds on the layer (layer coordinates); None = no selection
    offset_x: int
    offset_y: int

    @property
    def mask_rect(self) -> Rect:
        """Where the selection mask is read: the same pixels, in image coordinates."""
        return self.region.shift(self.offset_x, self.offset_y)


# Pixels read around the selection: the engine lets the network see this much of the surroundings (its
# masks.CONTEXT; a test keeps the two equal). Reading more would only cost time; reading less, context.
CONTEXT = 64


def plan_region(layer_width: int, layer_height: int, offset_x: int, offset_y: int,
                selection: Optional[Rect], margin: int, layer_label: str = "the layer") -> Plan:
    """The layer rectangle to read: the selection's bounds (image coordinates) moved onto the layer, grown by
    `margin` for context and clipped to the layer; the whole layer when nothing is selected."""
    layer = Rect(0, 0, layer_width, layer_height)
    if layer.empty:
        raise BadInput(f"{layer_label} has no pixels.")
    if selection is None:
        return Plan(layer, None, offset_x, offset_y)
    on_layer = selection.shift(-offset_x, -offset_y).intersect(layer)
    if on_layer.empty:
        raise BadInput(f"The selection does not touch {layer_label}: select a part of it, or select nothing "
                       f"to dream the whole layer.")
    return Plan(on_layer.grow(margin).intersect(layer), on_layer, offset_x, offset_y)


# --------------------------------------------------------------------------------------------- pixels

@dataclass(frozen=True)
class PixelFormat:
    babl: str       # the format GEGL converts to and from, e.g. "R'G'B'A u16"
    channels: int   # 1..4, as the protocol counts them
    sample: str     # the protocol's sample type: u8, u16 or f32

    @property
    def bytes_per_pixel(self) -> int:
        return self.channels * {"u8": 1, "u16": 2, "f32": 4}[self.sample]


def sample_for_precision(nick: str) -> str:
    """The protocol sample type for a GIMP precision nick ("u8-non-linear", "half-linear", "double-perceptual")."""
    head = nick.split("-", 1)[0].lower()
    if head == "u8":
        return "u8"
    if head == "u16":
        return "u16"
    if head in ("u32", "half", "float", "double"):
        return "f32"   # 32-bit integers and 16/64-bit floats travel as float: no precision the engine can use is lost
    raise BadInput(f'The image precision "{nick}" is not supported: convert it with Image › Precision.')


def pixel_format(gray: bool, alpha: bool, sample: str) -> PixelFormat:
    """Perceptual (gamma) channels: the network learned from sRGB photos, so it must see what the user sees."""
    babl_type = {"u8": "u8", "u16": "u16", "f32": "float"}[sample]
    model = ("Y'" if gray else "R'G'B'") + ("A" if alpha else "")
    return PixelFormat(f"{model} {babl_type}", (1 if gray else 3) + (1 if alpha else 0), sample)


_HARD = bytes([0] + [255] * 255)


def engine_mask(selection: bytes, plan: Plan) -> Optional[bytes]:
    """The mask for the engine: 255 wherever anything is selected, None when the whole layer dreams.

    Why hard: GIMP blends the written pixels through the (soft) selection when the shadow is merged, so if the
    engine faded the edges too, a feathered edge would be faded twice. The engine only needs to know where to dream.
    """
    if plan.selected is None:
        return None
    expected = plan.region.width * plan.region.height
    if len(selection) != expected:
        raise ValueError(f"selection mask has {len(selection)} bytes, expected {expected}")
    mask = bytes(selection).translate(_HARD)
    if mask.count(0) == len(mask):
        raise BadInput("Nothing is selected on this layer (the selection is fully transparent here).")
    return mask


def check_result(result: bytes, plan: Plan, fmt: PixelFormat) -> bytes:
    """The engine's pixels, only if they have exactly the size that was sent: never write a wrong-sized buffer."""
    expected = plan.region.width * plan.region.height * fmt.bytes_per_pixel
    if len(result) != expected:
        raise BadInput(f"The engine sent {len(result)} bytes for a region of {expected}; the image was not "
                       f"changed (update the engine and the plug-in together).")
    return result


# --------------------------------------------------------------------------------------------- layers

LAYER_PROBLEMS: Dict[str, str] = {
    "text": 'is a text layer: dream on a copy made into pixels (Layer › Discard Text Information) or on another '
            'layer.',
    "vector": "is a vector layer: rasterize it first (Layer › Rasterize) or dream on another layer.",
    "link": "is a link layer: rasterize it first (Layer › Rasterize) or dream on another layer.",
    "group": "is a layer group: select one of its layers instead.",
    "channel": "is a channel or a layer mask: select the layer itself in the Layers dock.",
    "locked": "has its pixels locked: unlock them in the Layers dock first.",
    "indexed": "belongs to an indexed image: convert it with Image › Mode › RGB first.",
}


def layer_problem(kind: str, name: str) -> str:
    return f'"{name}" {LAYER_PROBLEMS[kind]}'


def engine_config(data: Mapping[str, Any]) -> Tuple[str, Optional[str], Optional[str]]:
    """("spawn", python, None) or ("connect", url, token) from engine.json, which the installer writes."""
    if not isinstance(data, Mapping):
        raise BadInput("engine.json must hold a JSON object: run install.py again.")
    url, token, python = data.get("url"), data.get("token"), data.get("python")
    if url:
        if not isinstance(url, str) or not re.match(r"^https?://", url):
            raise BadInput(f'engine.json: "url" must be an http:// address, not {url!r}.')
        return "connect", url, token if isinstance(token, str) and token else None
    if not python or not isinstance(python, str):
        raise BadInput('engine.json names no engine: set "python" to the luciddream environment\'s Python '
                       '(run install.py --venv VENV again) or "url" to a luciddream serve address.')
    return "spawn", python, None


def progress_text(message: str, octave: Optional[int], octaves: Optional[int]) -> str:
    """What the progress bar says: short, with the engine's own words when it has any."""
    if message:
        return f"Lucid Dream: {message}"
    if octave is not None and octaves:
        return f"Lucid Dream: octave {octave}/{octaves}"
    return "Lucid Dream"


def split_rows(data: bytes, width: int, height: int, bpp: int) -> List[bytes]:
    """Rows of a packed buffer (for tests and for comparing regions without numpy)."""
    stride = width * bpp
    return [data[y * stride:(y + 1) * stride] for y in range(height)]
