"""The GIMP plug-in's decisions that need no GIMP: its arguments, the settings it sends, formats, the mask.

Why a separate module: GIMP only loads a plug-in inside a running GIMP, so anything testable without one lives here
(pure Python, standard library only: GIMP's Python has neither numpy nor torch). luciddream.py does the GObject
calls and asks this module what to do. What both plug-ins decide alike (the region, engine.json, the worker's
environment, the engine's offer) is in the kit, copied beside this file by install.py; presets, ranges, defaults
and the context margin are the engine's offer, never constants here.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Dict, List, Mapping, Optional, Tuple

import kit
from kit import Offer, Plan, UserError

# The choices GIMP adds to the engine's offer: what only a GIMP user picks (where the dream goes, no preset).
NO_PRESET = "none"
NO_PRESET_LABEL = "None: only the targets above"
DEVICES: Dict[str, str] = {"auto": "Automatic", "cpu": "CPU", "cuda": "CUDA (NVIDIA GPU)", "mps": "MPS (Apple GPU)"}
OUTPUTS: Dict[str, str] = {"new-layer": "A new layer above", "this-layer": "This layer (one undo step)"}
RANDOM_SEED = -1
GIMP_INT_MAX = 2 ** 31 - 1   # GIMP's int arguments are signed 32-bit; the engine's seeds go to 2**32-1

# The dialog's numeric arguments: (GIMP's name for scripts, the engine's setting); the dialog shows kit.LABELS.
NUMBERS: Tuple[Tuple[str, str], ...] = (
    ("octaves", "octaves"), ("steps", "steps"), ("strength", "step_size"), ("detail_size", "octave_scale"),
    ("tile", "tile"), ("instance", "instance"), ("class_strength", "class_strength"),
)


@dataclass(frozen=True)
class Options:
    """The dialog's values, named as the user sees them (not as the engine calls them); default_options fills in
    the engine's defaults."""

    octaves: int
    steps: int
    strength: float             # the engine's step_size: mean change per step in 8-bit levels
    detail_size: float          # the engine's octave_scale: larger values grow larger dreamed shapes
    tile: int
    instance: int               # class looks: size of one instance in image pixels
    class_strength: float       # grow look: how far the photo may change (0 = untouched … 1 = replaced)
    model: str
    look: str = "grow"          # class targets alone: "grow" out of the photo or one picture ("object")
    targets: str = ""
    preset: str = NO_PRESET
    seed: int = RANDOM_SEED     # -1: a new random seed every run
    device: str = "auto"
    output: str = "new-layer"
    variations: int = 1         # seeds seed, seed+1, ... each into a new layer


# The dialog's order: what changes the picture first, the technical knobs behind the "Advanced" fold
# (kit.controls.ADVANCED, plus where the dream goes). Names are GIMP's argument names.
ARTISTIC = ["targets", "preset", "strength", "octaves", "look", "class-strength", "instance", "variations",
            "seed", "guide-layer", "guide-file", "dream-after-preview"]
ADVANCED = ["steps", "detail-size", "tile", "model", "device", "output"]


def default_options(offer: Offer) -> Options:
    """The dialog's first values: the engine's defaults."""
    return Options(**{ours: offer.default(theirs) for ours, theirs in NUMBERS}, model=offer.default("model"),
                   look=str(offer.default("look")))


def options_from(values: Mapping[str, Any], offer: Offer) -> Options:
    """Options from a property dict (GIMP's config uses dashes: "detail-size"); missing keys keep the defaults."""
    names = {f.name for f in fields(Options)}
    known = {name: values[key] for key in values for name in [key.replace("-", "_")] if name in names}
    return replace(default_options(offer), **known)


def ranges(offer: Offer) -> Dict[str, Tuple[Any, Any]]:
    """The dialog's bounds, by GIMP name: the engine's ranges (so nothing is refused later), and the seed's from
    -1 (a new one each run) to what a GIMP int holds."""
    bounds = {ours: offer.range(theirs) for ours, theirs in NUMBERS}
    bounds["seed"] = (RANDOM_SEED, min(int(offer.range("seed")[1]), GIMP_INT_MAX))
    bounds["variations"] = (1, kit.MAX_VARIATIONS)
    return bounds


def preset_choices(offer: Offer) -> Dict[str, str]:
    """The preset argument's choices (nick: label): no preset, then the engine's presets in its order."""
    return {NO_PRESET: NO_PRESET_LABEL, **{p.name: p.label for p in offer.presets}}


def look_choices(offer: Offer) -> Dict[str, str]:
    """The class look argument's choices (nick: label), in the engine's order."""
    return {name: kit.LOOK_LABELS.get(name, name) for name in offer.looks}


def model_choices(offer: Offer) -> Dict[str, str]:
    return {name: offer.model_titles.get(name, name) for name in offer.models}


def targets_for(preset: str, text: str, offer: Offer) -> Optional[str]:
    """The engine's target string: the preset's targets first, then the typed items; None = the model's classic
    look."""
    return offer.targets(None if preset == NO_PRESET else preset, kit.split_targets(text))


def engine_settings(opts: Options, offer: Offer) -> Dict[str, Any]:
    """The engine's settings dict, after checking every value, so a script's typo gets one clear sentence."""
    if opts.model not in offer.models:
        raise UserError(f'Unknown model "{opts.model}": choose one of {", ".join(offer.models)}.')
    if opts.device not in DEVICES:
        raise UserError(f'Unknown device "{opts.device}": choose one of {", ".join(DEVICES)}.')
    if opts.output not in OUTPUTS:
        raise UserError(f'Unknown output "{opts.output}": choose one of {", ".join(OUTPUTS)}.')
    engine_names = dict(NUMBERS)
    for ours, (low, high) in ranges(offer).items():   # named as the dialog shows them (kit.LABELS)
        kit.check_value(kit.LABELS.get(engine_names.get(ours, ours), ours), getattr(opts, ours), low, high)
    if opts.look not in offer.looks:
        raise UserError(f'Unknown class look "{opts.look}": choose one of {", ".join(offer.looks)}.')
    settings: Dict[str, Any] = {"model": opts.model, "device": opts.device, "look": opts.look}
    for ours, theirs in NUMBERS:
        value = getattr(opts, ours)
        settings[theirs] = float(value) if isinstance(offer.range(theirs)[0], float) else value
    if opts.seed != RANDOM_SEED:
        settings["seed"] = opts.seed
    return settings


def records_for(opts: Options, settings: Dict[str, Any], targets: Optional[str], engine: str, source: str,
                guide: Optional[str] = None, first_seed: Optional[int] = None) -> List["kit.Record"]:
    """The records of the dreams one click makes: one, or `opts.variations` with consecutive seeds. A random seed
    (-1) is drawn here, before anything is sent, so every result can be made again."""
    seed = opts.seed if opts.seed != RANDOM_SEED else (first_seed if first_seed is not None else kit.new_seed())
    preset = None if opts.preset == NO_PRESET else opts.preset
    record = kit.make_record(targets, settings, seed, engine, preset, source, guide)
    return kit.variations(record, max(1, opts.variations))


def result_name(source: str, record: "kit.Record", index: int = 0, count: int = 1) -> str:
    """A result layer's name: what was dreamed and what tells it from its sibling variations."""
    return kit.layer_name(source, record, kit.variation_label(record, index, count))


def check_guide_mode(guide_gray: bool, image_gray: bool, guide_name: str) -> None:
    """A guide must have the image's colour model: the engine would read a gray guide's one channel as colour."""
    if guide_gray != image_gray:
        kind, other = ("grayscale", "RGB") if guide_gray else ("RGB", "grayscale")
        raise UserError(f'The guide "{guide_name}" is {kind} but this image is {other}: convert one of them '
                        f'(Image › Mode) or choose another guide.')


def layer_name(source: str, targets: Optional[str]) -> str:
    """The new layer's name says what was dreamed, so several attempts can be told apart in the Layers dock."""
    what = targets if targets else "classic"
    if len(what) > 40:
        what = what[:39] + "…"
    return f"{source} (dream: {what})"


# --------------------------------------------------------------------------------------------- pixels

@dataclass(frozen=True)
class PixelFormat:
    babl: str       # the format GEGL converts to and from, e.g. "R'G'B'A u16"
    channels: int   # 1..4, as the protocol counts them
    sample: str     # the protocol's sample type: u8, u16 or f32

    @property
    def bytes_per_pixel(self) -> int:
        return kit.pixel_bytes(self.channels, self.sample)


def sample_for_precision(nick: str) -> str:
    """The protocol sample type for a GIMP precision nick ("u8-non-linear", "half-linear", "double-perceptual")."""
    head = nick.split("-", 1)[0].lower()
    if head == "u8":
        return "u8"
    if head == "u16":
        return "u16"
    if head in ("u32", "half", "float", "double"):
        return "f32"   # 32-bit integers and 16/64-bit floats travel as float: no precision the engine can use is lost
    raise UserError(f'The image precision "{nick}" is not supported: convert it with Image › Precision.')


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
    if len(selection) != expected:   # GEGL handed out another size: a bug here, not the user's doing
        raise ValueError(f"selection mask has {len(selection)} bytes, expected {expected}")
    kit.check_mask(selection, plan.region, "this layer")
    return bytes(selection).translate(_HARD)


def check_result(result: bytes, plan: Plan, fmt: PixelFormat) -> bytes:
    """The engine's pixels, only if they have exactly the size that was sent: never write a wrong-sized buffer."""
    expected = plan.region.width * plan.region.height * fmt.bytes_per_pixel
    if len(result) != expected:
        raise UserError(f"The engine sent {len(result)} bytes for a region of {expected}; the image was not "
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
