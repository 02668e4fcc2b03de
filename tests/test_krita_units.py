"""The Krita plug-in's pure-Python parts, without Krita: pixel formats, selections, targets, the document logic,
the settings and the session (against small fakes of Krita's API) and the engine connection (against a real
worker)."""
from __future__ import annotations

import json
import logging
import os
import queue
import random
import struct
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, List, Optional

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "hosts"))
import krita_plugin_loader  # noqa: E402

px = krita_plugin_loader.load("pixels")
kit = krita_plugin_loader.load("kit")
targets = krita_plugin_loader.load("targets")
engine = krita_plugin_loader.load("engine")
document = krita_plugin_loader.load("document")
settings = krita_plugin_loader.load("settings")
session = krita_plugin_loader.load("session")

ROOT = Path(__file__).resolve().parents[1]
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"


def engine_offer() -> dict:
    """What the engine offers (the hello's "offer", engine.json's cached copy)."""
    from luciddream.offer import describe
    return describe()


OFFER = kit.Offer.from_dict(engine_offer())
CONTEXT = OFFER.context


# ---------------------------------------------------------------------------------------------------- pixels

def test_u8_is_bgra_in_krita_and_rgba_on_the_wire():
    fmt = px.pixel_format("RGBA", "U8")
    krita = bytes([10, 20, 30, 40, 1, 2, 3, 4])          # B,G,R,A twice
    wire = px.to_engine(krita, fmt, 2)
    assert wire == bytes([30, 20, 10, 40, 3, 2, 1, 4])
    assert px.from_engine(wire, fmt, 2) == krita
    assert (fmt.channels, fmt.sample) == (4, "u8")


def test_u16_swaps_whole_samples():
    fmt = px.pixel_format("RGBA", "U16")
    b, g, r, a = 0x0102, 0x0304, 0xA0B0, 0xFFFF
    krita = struct.pack("=4H", b, g, r, a)
    wire = px.to_engine(krita, fmt, 1)
    assert struct.unpack("=4H", wire) == (r, g, b, a)
    assert px.from_engine(wire, fmt, 1) == krita


def test_f16_widens_to_f32_and_back_bit_exact():
    fmt = px.pixel_format("RGBA", "F16")
    rng = random.Random(1)
    halves = [struct.pack("=e", v) for v in (0.0, 1.0, 0.5, 2.75, -0.25, 65504.0, 6.1e-05)]
    halves += [struct.pack("=H", rng.randrange(0, 0x7C00)) for _ in range(4 * 300 - len(halves))]  # finite ≥ 0
    krita = b"".join(halves)
    wire = px.to_engine(krita, fmt, 300)
    assert len(wire) == 300 * 16 and fmt.sample == "f32"
    assert struct.unpack("=3f", wire[:12]) == (0.0, 1.0, 0.5)
    assert px.from_engine(wire, fmt, 300) == krita


def test_f16_result_out_of_half_range_is_clamped_not_an_error():
    fmt = px.pixel_format("RGBA", "F16")
    back = px.from_engine(struct.pack("=4f", 1e6, 0.5, -1e6, 1.0), fmt, 1)
    assert struct.unpack("=4e", back) == (65504.0, 0.5, -65504.0, 1.0)


@pytest.mark.parametrize("model,depth,channels,sample", [
    ("RGBA", "F32", 4, "f32"), ("GRAYA", "U8", 2, "u8"), ("GRAYA", "U16", 2, "u16"), ("GRAYA", "F32", 2, "f32")])
def test_formats_that_pass_through(model, depth, channels, sample):
    fmt = px.pixel_format(model, depth)
    data = bytes(range(256))[:fmt.pixel_bytes] * 3
    assert (fmt.channels, fmt.sample) == (channels, sample)
    assert px.to_engine(data, fmt, 3) == data == px.from_engine(data, fmt, 3)


@pytest.mark.parametrize("model,word", [("CMYKA", "CMYK"), ("LABA", "L*a*b*"), ("XYZA", "XYZ"), ("", "unknown")])
def test_other_colour_models_get_one_sentence(model, word):
    with pytest.raises(kit.UserError) as err:
        px.pixel_format(model, "U8")
    text = str(err.value)
    assert word in text and "Convert Image Color Space" in text and text.count(".") <= 2


def test_unknown_depth_and_wrong_length_are_refused():
    with pytest.raises(kit.UserError, match="cannot read"):
        px.pixel_format("RGBA", "U32")
    with pytest.raises(kit.UserError, match="bytes"):
        px.to_engine(b"\0" * 7, px.pixel_format("RGBA", "U8"), 2)


def test_clear_unselected_makes_only_unselected_pixels_transparent():
    data = bytes(range(1, 4 * 5 + 1))
    mask = bytes([0, 255, 0, 0, 7])
    out = px.clear_unselected(data, mask, 4)
    assert out[0:4] == b"\0" * 4 and out[8:16] == b"\0" * 8
    assert out[4:8] == data[4:8] and out[16:20] == data[16:20]
    assert px.clear_unselected(data, None, 4) == data


# ---------------------------------------------------------------------------------------------------- region

def dream_rect(selection, width: int, height: int):
    """The rectangle the Krita plug-in reads: the kit's rule, with the engine's context margin."""
    return kit.plan_region(width, height, 0, 0, selection, CONTEXT, "the image").region


def test_no_selection_dreams_the_whole_canvas():
    assert dream_rect(None, 300, 200) == kit.Rect(0, 0, 300, 200)


def test_selection_gets_half_a_tile_of_context_clipped_to_the_canvas():
    rect = dream_rect(kit.Rect(400, 300, 64, 48), 1000, 800)
    assert rect == kit.Rect(336, 236, 64 + 128, 48 + 128)
    edge = dream_rect(kit.Rect(10, 5, 64, 48), 1000, 800)
    assert (edge.x, edge.y) == (0, 0) and edge.right == 10 + 64 + 64 and edge.bottom == 5 + 48 + 64
    from luciddream import masks

    assert CONTEXT == masks.CONTEXT      # the offer carries the engine's margin


@pytest.mark.parametrize("sel,word", [(kit.Rect(5, 5, 0, 10), "empty"), (kit.Rect(500, 5, 10, 10), "outside")])
def test_bad_selections_get_one_sentence(sel, word):
    with pytest.raises(kit.UserError, match=word):
        dream_rect(sel, 100, 100)


def test_a_fully_transparent_selection_is_refused():
    rect = kit.Rect(0, 0, 4, 2)
    with pytest.raises(kit.UserError, match="Nothing is selected"):
        kit.check_mask(bytes(8), rect)
    kit.check_mask(bytes([0] * 7 + [1]), rect)
    kit.check_mask(None, rect)


# ---------------------------------------------------------------------------------------------------- targets

def test_class_list_is_generated_from_the_engine_labels():
    from luciddream.labels import class_names
    shipped = json.loads((ROOT / "krita_plugin" / "luciddream" / "classes.json").read_text(encoding="utf-8"))
    assert [row[0] for row in shipped] == list(class_names()), \
        "classes.json is out of date: run .venv/bin/python tests/hosts/make_krita_classes.py"


def test_search_finds_names_synonyms_and_numbers():
    assert targets.search("goldfish")[0].index == 1
    assert targets.search("peacock")[0].name == "peafowl"             # a WordNet synonym
    sharks = [c.name for c in targets.search("shark")]
    assert "great white shark" in sharks and "tiger shark" in sharks
    assert targets.search("84")[0].name == "peafowl"
    assert targets.search("") == [] and targets.search("zzzqqq") == []


def test_twice_used_imagenet_names_get_distinct_labels():
    missiles = [c for c in targets.classes() if c.name == "missile"]
    assert len(missiles) == 2 and missiles[0].label != missiles[1].label


def test_targets_text_uses_class_indices_and_weights():
    gold = targets.class_choice(targets.classes()[1])
    slug = targets.layer_choice("block10", 0.5)
    assert targets.targets_text([gold, slug]) == "class:1, layer:block10=0.5"
    assert targets.targets_text([]) == ""                               # the model's classic layer
    with pytest.raises(kit.UserError, match="weight 0"):
        targets.targets_text([targets.layer_choice("block3", 0.0)])
    with pytest.raises(kit.UserError, match="layer name"):
        targets.layer_choice("block 3; rm")


def test_layer_name_says_what_was_dreamed_and_the_seed():
    gold = targets.class_choice(targets.classes()[1])
    assert targets.layer_name([gold, targets.layer_choice("block10", 0.5)], 7) == \
        "Dream: goldfish, block10 ×0.5 (seed 7)"
    assert targets.layer_name([], None) == "Dream: block10"
    assert len(targets.layer_name([gold] * 40, 1)) < 80


# ---------------------------------------------------------------------------------------------------- document

class FakeSelection:
    def __init__(self, w: int, h: int, rect: tuple, value: int = 255) -> None:
        self.w, self.h, self.rect = w, h, rect
        self.mask = bytearray(w * h)
        x, y, rw, rh = rect
        for yy in range(y, y + rh):
            self.mask[yy * w + x:yy * w + x + rw] = bytes([value]) * rw

    def x(self): return self.rect[0]
    def y(self): return self.rect[1]
    def width(self): return self.rect[2]
    def height(self): return self.rect[3]

    def pixelData(self, x, y, w, h):
        out = bytearray()
        for yy in range(y, y + h):
            for xx in range(x, x + w):
                inside = 0 <= xx < self.w and 0 <= yy < self.h
                out.append(self.mask[yy * self.w + xx] if inside else 0)
        return bytes(out)


class FakeNode:
    def __init__(self, doc: "FakeDoc", name: str, kind: str = "paintlayer", model: str = "RGBA",
                 depth: str = "U8") -> None:
        self.doc, self._name, self.kind, self.model, self.depth = doc, name, kind, model, depth
        self.profile = "sRGB-elle-V2-srgbtrc.icc"
        self.bpp = px.pixel_format(model, depth).pixel_bytes if model in ("RGBA", "GRAYA") else 5
        self.data = bytearray(doc.w * doc.h * self.bpp)
        self.uid = object()
        self.children: List[FakeNode] = []

    def name(self): return self._name
    def type(self): return self.kind
    def colorModel(self): return self.model
    def colorDepth(self): return self.depth
    def colorProfile(self): return self.profile
    def uniqueId(self): return self.uid
    def childNodes(self): return list(self.children)
    def parentNode(self): return self.doc.root

    def setColorSpace(self, model, depth, profile):
        self.model, self.depth, self.profile = model, depth, profile
        self.bpp = px.pixel_format(model, depth).pixel_bytes
        self.data = bytearray(self.doc.w * self.doc.h * self.bpp)
        return True

    def pixelData(self, x, y, w, h):
        out = bytearray()
        for yy in range(y, y + h):
            start = (yy * self.doc.w + x) * self.bpp
            out += self.data[start:start + w * self.bpp]
        return bytes(out)

    def setPixelData(self, data, x, y, w, h):
        for row in range(h):
            start = ((y + row) * self.doc.w + x) * self.bpp
            self.data[start:start + w * self.bpp] = data[row * w * self.bpp:(row + 1) * w * self.bpp]


class FakeRoot:
    def __init__(self, doc: "FakeDoc") -> None:
        self.doc = doc

    def addChildNode(self, node, above):
        i = self.doc.nodes.index(above) + 1 if above is not None else len(self.doc.nodes)
        self.doc.nodes.insert(i, node)
        self.doc.active = node   # as Krita does once the handler that added it returns
        return True


class FakeDoc:
    def __init__(self, w: int = 40, h: int = 30, model: str = "RGBA", depth: str = "U8") -> None:
        self.w, self.h, self.model, self.depth = w, h, model, depth
        self.root = FakeRoot(self)
        self.nodes: List[FakeNode] = []
        self.sel: Optional[FakeSelection] = None
        self.active = None
        self.annotations: dict = {}

    def width(self): return self.w
    def height(self): return self.h
    def colorModel(self): return self.model
    def colorDepth(self): return self.depth
    def colorProfile(self): return "sRGB-elle-V2-srgbtrc.icc"
    def selection(self): return self.sel
    def topLevelNodes(self): return list(self.nodes)
    def rootNode(self): return self.root
    def createNode(self, name, kind): return FakeNode(self, name, kind, self.model, self.depth)
    def refreshProjection(self): pass
    def waitForDone(self): pass
    def setActiveNode(self, node): self.active = node
    def activeNode(self): return self.active
    def pixelData(self, x, y, w, h): return self.nodes[0].pixelData(x, y, w, h)
    # annotations, kept as bytes as a .kra keeps them (the loop's settings records)
    def annotationTypes(self): return list(self.annotations)
    def annotation(self, key): return self.annotations.get(key, b"")
    def setAnnotation(self, key, description, data): self.annotations[key] = bytes(data)


def painted_doc(**kw) -> tuple:
    doc = FakeDoc(**kw)
    layer = FakeNode(doc, "Background", model=doc.model, depth=doc.depth)
    rng = random.Random(3)
    layer.data = bytearray(rng.randrange(256) for _ in range(len(layer.data)))
    doc.nodes.append(layer)
    return doc, layer


def test_snapshot_without_selection_is_the_whole_layer_in_engine_order():
    doc, layer = painted_doc()
    snap = document.read_snapshot(doc, layer, False, CONTEXT)
    assert snap.rect == kit.Rect(0, 0, 40, 30) and snap.mask is None and snap.dreamed == snap.rect
    assert snap.pixels[:4] == bytes([layer.data[2], layer.data[1], layer.data[0], layer.data[3]])
    job = snap.job("class:1", {"steps": 2})
    assert (job.width, job.height, job.channels, job.sample) == (40, 30, 4, "u8")


def test_snapshot_reads_the_soft_mask_with_context():
    doc, layer = painted_doc(w=300, h=200)
    doc.sel = FakeSelection(300, 200, (150, 100, 20, 10), value=128)
    snap = document.read_snapshot(doc, layer, False, CONTEXT)
    assert snap.rect == kit.Rect(150 - 64, 100 - 64, 20 + 128, 10 + 128)
    assert snap.dreamed == kit.Rect(150, 100, 20, 10)    # what messages name: the selection, not the context
    assert snap.mask.count(128) == 200 and snap.mask.count(0) == snap.rect.area - 200


@pytest.mark.parametrize("setup,word", [
    (lambda d, n: (None, n), "Open an image"),
    (lambda d, n: (d, None), "Choose the layer"),
    (lambda d, n: (d, FakeNode(d, "Shapes", "vectorlayer")), "vector layer"),
])
def test_bad_sources_get_one_sentence(setup, word):
    doc, layer = painted_doc()
    d, n = setup(doc, layer)
    with pytest.raises(kit.UserError, match=word):
        document.read_snapshot(d, n, False, CONTEXT)


def test_cmyk_is_refused_before_anything_is_read():
    doc, layer = painted_doc()
    layer.model = "CMYKA"
    with pytest.raises(kit.UserError, match="CMYK"):
        document.read_snapshot(doc, layer, False, CONTEXT)


def engine_result(snap, change: int = 50) -> bytes:
    """What the engine would send: pixels changed where the mask is > 0, bit-identical elsewhere."""
    out = bytearray(snap.pixels)
    for i in range(snap.rect.area):
        if snap.mask is None or snap.mask[i]:
            for c in range(3):
                out[i * 4 + c] = (out[i * 4 + c] + change) % 256
    return bytes(out)


def test_result_goes_to_a_new_layer_above_and_the_source_is_untouched():
    doc, layer = painted_doc(w=200, h=150)
    doc.sel = FakeSelection(200, 150, (80, 60, 16, 12))
    before = bytes(layer.data)
    snap = document.read_snapshot(doc, layer, False, CONTEXT)
    new = document.write_result(snap, engine_result(snap), "Dream: goldfish")
    assert layer.data == before
    assert [n.name() for n in doc.nodes] == ["Background", "Dream: goldfish"] and doc.active is new
    for y in range(150):
        for x in range(200):
            o = (y * 200 + x) * 4
            inside = 80 <= x < 96 and 60 <= y < 72
            if inside:
                assert new.data[o + 3] == before[o + 3] and new.data[o:o + 3] != before[o:o + 3]
            else:
                assert new.data[o:o + 4] == b"\0\0\0\0"


def test_visible_image_result_goes_on_top():
    doc, layer = painted_doc()
    doc.nodes.append(FakeNode(doc, "Top"))
    snap = document.read_snapshot(doc, None, True, CONTEXT)
    document.write_result(snap, engine_result(snap), "Dream: x")
    assert [n.name() for n in doc.nodes] == ["Background", "Top", "Dream: x"]


def test_a_layer_in_another_colour_space_gets_a_result_layer_in_that_space():
    doc, layer = painted_doc()
    layer.setColorSpace("RGBA", "U16", "g10.icc")
    snap = document.read_snapshot(doc, layer, False, CONTEXT)
    new = document.write_result(snap, snap.pixels, "Dream: y")
    assert (new.colorDepth(), new.colorProfile()) == ("U16", "g10.icc")


@pytest.mark.parametrize("change,word", [("resize", "resized"), ("delete", "deleted"), ("convert", "colour space")])
def test_a_document_changed_while_dreaming_is_left_alone(change, word):
    doc, layer = painted_doc()
    snap = document.read_snapshot(doc, layer, False, CONTEXT)
    if change == "resize":
        doc.w += 1
    elif change == "delete":
        doc.nodes.remove(layer)
    else:
        layer.depth = "F32"
    names = [n.name() for n in doc.nodes]
    with pytest.raises(kit.UserError, match=word):
        document.write_result(snap, snap.pixels, "Dream: z")
    assert [n.name() for n in doc.nodes] == names


# ---------------------------------------------------------------------------------------------------- engine

def write_config(tmp_path: Path, **values) -> str:
    """engine.json as install.py writes it, with the engine's offer cached (values override any key)."""
    path = tmp_path / "engine.json"
    path.write_text(json.dumps({"python": None, "url": None, "token": None, "offer": engine_offer(), **values}))
    return str(path)


def test_config_problems_are_sentences(tmp_path):
    with pytest.raises(kit.UserError, match="install.py"):
        kit.read_config(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(kit.UserError, match="cannot be read"):
        kit.read_config(str(tmp_path / "bad.json"))
    with pytest.raises(kit.UserError, match="neither"):
        kit.read_config(write_config(tmp_path))
    assert kit.read_config(write_config(tmp_path, url="http://127.0.0.1:1")).url == "http://127.0.0.1:1"


def test_worker_env_drops_krita_python_variables():
    env = kit.worker_env({"PYTHONPATH": "/krita", "PYTHONHOME": "/k", "HOME": "/h"})
    assert env == {"HOME": "/h", "LUCIDDREAM_LEAVE_CORES": "1"}  # one core left to the editor


class Recorder:
    """Callbacks that remember what arrived, and an event set when the job ended."""

    def __init__(self) -> None:
        self.events: List[tuple] = []
        self.done: List[tuple] = []
        self.ended = threading.Event()
        self.on_progress = None

    def callbacks(self):
        def progress(fraction, message):
            self.events.append((fraction, message))
            if self.on_progress is not None:
                self.on_progress(fraction)

        def done(pixels, code, message):
            self.done.append((pixels, code, message))
            self.ended.set()
        return engine.Callbacks(progress, done)


def tiny_job(steps: int = 2) -> Any:
    w, h = 48, 40
    pixels = bytes((x * 5 + y * 3 + c * 40) % 256 for y in range(h) for x in range(w) for c in range(4))
    mask = bytearray(w * h)
    for y in range(10, 30):
        mask[y * w + 12:y * w + 36] = b"\xff" * 24
    return engine.JobSpec(pixels, w, h, 4, "u8", bytes(mask), "layer:block3",
                          {"steps": steps, "octaves": 1, "tile": 128, "seed": 1})


@pytest.fixture()
def quiet_env():
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def test_a_missing_engine_python_is_a_sentence(tmp_path):
    eng = engine.Engine(write_config(tmp_path, python=str(tmp_path / "nope" / "python")))
    rec = Recorder()
    eng.start(tiny_job(), rec.callbacks())
    assert rec.ended.wait(30)
    pixels, code, message = rec.done[0]
    assert pixels is None and code == "config" and "does not exist" in message


def test_real_worker_dreams_then_cancels_then_recovers_from_a_killed_worker(tmp_path, quiet_env):
    """One worker for three jobs: a dream, a cancelled dream, and a dream whose worker is killed midway."""
    eng = engine.Engine(write_config(tmp_path, python=str(VENV_PYTHON)), spawn_env=quiet_env)
    try:
        job = tiny_job()
        rec = Recorder()
        eng.start(job, rec.callbacks())
        with pytest.raises(kit.UserError, match="already running"):
            eng.start(job, Recorder().callbacks())
        assert rec.ended.wait(120), "the dream did not finish"
        pixels, code, message = rec.done[0]
        assert code is None, message
        assert len(pixels) == len(job.pixels) and pixels != job.pixels
        for i, m in enumerate(job.mask):             # outside the mask bit for bit
            if not m:
                assert pixels[i * 4:i * 4 + 4] == job.pixels[i * 4:i * 4 + 4]
        assert rec.events and not eng.busy

        rec = Recorder()
        rec.on_progress = lambda fraction: fraction > 0 and eng.cancel()
        eng.start(tiny_job(steps=500), rec.callbacks())
        assert rec.ended.wait(60), "cancel did not end the job"
        assert rec.done[0][0] is None and rec.done[0][1] == "cancelled"

        rec = Recorder()
        pid = eng._client._t.proc.pid

        def kill(fraction):
            if fraction > 0:
                os.kill(pid, 9)
        rec.on_progress = kill
        eng.start(tiny_job(steps=500), rec.callbacks())
        assert rec.ended.wait(60)
        pixels, code, message = rec.done[0]
        assert pixels is None and code == "worker_gone" and "Press Dream to start the engine again" in message

        rec = Recorder()                               # the next dream starts a fresh worker
        eng.start(tiny_job(), rec.callbacks())
        assert rec.ended.wait(120)
        assert rec.done[0][1] is None, rec.done[0][2]
        assert eng._client._t.proc.pid != pid
    finally:
        eng.close()
    assert eng._client is None


# ---------------------------------------------------------------------------------------------------- settings

class FakeSettings:
    """Krita's readSetting/writeSetting: strings by (group, key), as kritarc keeps them."""

    def __init__(self) -> None:
        self.values: dict = {}

    def readSetting(self, group, key, default):
        return self.values.get((group, key), default)

    def writeSetting(self, group, key, value):
        self.values[(group, key)] = str(value)


class FakeApp(FakeSettings):
    """The part of Krita.instance() the session uses: settings, the active document, the open documents."""

    def __init__(self, doc=None) -> None:
        super().__init__()
        self.doc = doc

    def activeDocument(self):
        return self.doc

    def documents(self):
        return [self.doc] if self.doc is not None else []


class GuiLoop:
    """Qt's event loop as the session sees it: calls posted from the job thread run here, in the test's thread."""

    def __init__(self) -> None:
        self.calls: "queue.Queue" = queue.Queue()

    def post(self, call) -> None:
        self.calls.put(call)

    def run_until(self, done, timeout: float = 120.0) -> bool:
        deadline = time.time() + timeout
        while not done():
            if time.time() > deadline:
                return False
            try:
                self.calls.get(timeout=0.2)()
            except queue.Empty:
                pass
        return True


ENGINE_FIELDS = ("model", "octaves", "octave_scale", "steps", "step_size", "tile", "feather", "look", "instance",
                 "class_strength")


def test_settings_start_from_the_engines_offer():
    values = settings.defaults(OFFER)
    assert tuple(getattr(values, k) for k in ENGINE_FIELDS) == tuple(engine_offer()["defaults"][k]
                                                                      for k in ENGINE_FIELDS)
    assert values.preset == engine_offer()["presets"][0]["name"] and values.visible is False
    assert 0 <= values.seed < settings.FIRST_SEEDS
    assert set(values.engine_settings()) == set(ENGINE_FIELDS) | {"seed"}
    assert values.engine_settings()["octave_scale"] == values.octave_scale      # "Detail size" is octave_scale
    older = engine_offer()        # an engine from before the class looks: the kit supplies their defaults
    older["defaults"] = {k: v for k, v in older["defaults"].items() if k not in ("look", "instance", "class_strength")}
    values = settings.defaults(kit.Offer.from_dict(older))
    assert (values.look, values.instance, values.class_strength) == tuple(
        engine_offer()["defaults"][k] for k in ("look", "instance", "class_strength"))


def test_settings_round_trip_through_kritas_settings():
    store = FakeSettings()
    chosen = replace(settings.defaults(OFFER), octaves=6, octave_scale=2.0, tile=256, steps=33, step_size=0.75,
                     feather=12.0, seed=42, visible=True, preset=OFFER.presets[-1].name, model=OFFER.models[-1])
    settings.save(store, chosen)
    assert list(store.values) == [("luciddream", "settings")]
    assert isinstance(json.loads(store.values[("luciddream", "settings")]), dict)
    assert settings.load(store, OFFER) == chosen
    fresh = settings.load(FakeSettings(), OFFER)                    # nothing stored: the engine's defaults
    assert replace(fresh, seed=0) == replace(settings.defaults(OFFER), seed=0)


def test_bad_stored_values_fall_back_to_defaults_and_are_logged(caplog):
    caplog.set_level(logging.WARNING, logger="luciddream")
    default = replace(settings.defaults(OFFER), seed=0)
    for text in ("{", "[1, 2]", "null"):
        store = FakeSettings()
        store.writeSetting("luciddream", "settings", text)
        assert replace(settings.load(store, OFFER), seed=0) == default
    assert "not JSON" in caplog.text and "not a JSON object" in caplog.text
    caplog.clear()
    store = FakeSettings()
    store.writeSetting("luciddream", "settings", json.dumps({
        "octaves": 99, "tile": "big", "model": "gone", "visible": "yes", "preset": "nope", "step_size": True,
        "steps": 7, "octave_scale": 2.5, "seed": 5, "from_a_newer_plugin": 1}))
    loaded = settings.load(store, OFFER)
    assert (loaded.steps, loaded.octave_scale, loaded.seed) == (7, 2.5, 5)
    assert replace(loaded, steps=default.steps, octave_scale=default.octave_scale, seed=0) == default
    for name in ("octaves", "tile", "model", "visible", "preset", "step_size"):
        assert f"setting {name}=" in caplog.text
    assert "steps=" not in caplog.text.replace("step_size", "")

    class Broken(FakeSettings):
        def readSetting(self, group, key, default):
            raise RuntimeError("kritarc is gone")
    assert replace(settings.load(Broken(), OFFER), seed=0) == default


# ---------------------------------------------------------------------------------------------------- session

def test_session_keeps_only_values_the_engine_accepts_and_stores_them(tmp_path):
    app = FakeApp()
    eng = engine.Engine(write_config(tmp_path, python=str(VENV_PYTHON)))
    ses = session.Session(app, eng, GuiLoop().post)
    assert ses.offer == OFFER and ses.problem is None
    changed = []
    ses.settings_changed.connect(lambda: changed.append(ses.settings))
    ses.update(steps=20, octave_scale=1.8, tile=256)
    assert (ses.settings.steps, ses.settings.octave_scale, ses.settings.tile) == (20, 1.8, 256) and len(changed) == 1
    assert settings.load(app, OFFER) == ses.settings
    ses.update(steps=-1, tile=10 ** 6, model="gone")                 # outside the offer: refused, nothing changes
    assert (ses.settings.steps, ses.settings.tile, ses.settings.model) == (20, 256, OFFER.default("model"))
    assert len(changed) == 1
    for _ in range(20):
        assert 0 <= ses.roll_seed() <= session.WIDGET_SEED_MAX
    assert session.Session(app, eng).settings == ses.settings     # Krita restarted: the stored settings come back


def test_session_targets_are_listed_once_with_their_weights(tmp_path):
    ses = session.Session(FakeApp(), engine.Engine(write_config(tmp_path, python=str(VENV_PYTHON))))
    assert [(p.name, p.label, p.targets) for p in ses.presets()] == \
        [(p["name"], p["label"], p["targets"]) for p in engine_offer()["presets"]]
    for preset in ses.presets():                                    # each preset adds exactly its targets
        assert ses.preset_target(preset.name).spec == preset.targets
    changes = []
    ses.targets_changed.connect(lambda: changes.append([c.spec for c in ses.targets]))
    assert ses.add_preset("classic") == 0 and ses.add_preset("classic") == 0
    assert ses.add_target(targets.class_choice(targets.classes()[1])) == 1
    ses.set_weight(("layer", "block10"), 0.5)
    assert [c.spec for c in ses.targets] == ["layer:block10=0.5", "class:1"]
    ses.remove_targets([])                                          # nothing selected: the last row goes
    assert [c.spec for c in ses.targets] == ["layer:block10=0.5"]
    ses.clear_targets()
    assert ses.targets == [] and len(changes) == 5
    with pytest.raises(kit.UserError, match="Unknown preset"):
        ses.add_preset("nope")


def test_session_without_a_usable_engine_json_opens_and_says_why(tmp_path):
    ses = session.Session(FakeApp(painted_doc()[0]), engine.Engine(str(tmp_path / "missing.json")))
    assert ses.offer is None and ses.settings is None and "install.py" in ses.problem
    ended = []
    ses.finished.connect(lambda outcome, message: ended.append((outcome, message)))
    assert ses.dream() is False
    assert ended == [("error", ses.problem)] and ses.status == ses.problem


def test_session_refuses_with_one_sentence_before_the_engine_starts(tmp_path):
    ses = session.Session(FakeApp(None), engine.Engine(write_config(tmp_path, python=str(VENV_PYTHON))))
    assert ses.dream() is False and ses.status == "Open an image first." and not ses.running
    doc, layer = painted_doc()
    layer.model = "CMYKA"
    doc.active = layer
    assert ses.dream(doc) is False and "CMYK" in ses.status and not ses.engine.busy


def test_session_dreams_through_a_real_worker_then_cancels(tmp_path, quiet_env):
    """The menu action's and the docker's path without Qt: targets and settings from the session, the job in a
    real worker, its calls back in the 'GUI' thread, the live offer replacing the cached one, then a cancel."""
    cached = engine_offer()
    cached["presets"] = cached["presets"][:2]                       # an engine.json from an older install
    eng = engine.Engine(write_config(tmp_path, python=str(VENV_PYTHON), offer=cached), spawn_env=quiet_env)
    doc, layer = painted_doc(w=64, h=48)
    doc.sel = FakeSelection(64, 48, (16, 12, 24, 16))
    doc.active = layer
    loop = GuiLoop()
    ses = session.Session(FakeApp(doc), eng, loop.post)
    assert len(ses.presets()) == 2
    offers, ended, fractions = [], [], []
    ses.offer_changed.connect(lambda: offers.append(ses.offer))
    ses.finished.connect(lambda outcome, message: ended.append((outcome, message)))
    ses.progress_changed.connect(fractions.append)
    ses.update(steps=2, octaves=1, tile=128, seed=3)
    ses.add_preset("textures")
    try:
        assert ses.dream(), ses.status
        assert ses.running and ses.status.startswith("Dreaming")
        assert ses.dream() is False and "already running" in ses.status
        ended.clear()
        assert loop.run_until(lambda: ended), "the dream did not finish"
        outcome, message = ended[0]
        assert outcome == "done", message
        assert message.endswith("(24×16 px).")   # the selection's size; the region read was 64×48 with context
        assert [n.name() for n in doc.nodes] == ["Background", "Dream: block3 (seed 3)"]
        assert ses.last_layer is doc.nodes[1] and not ses.running and fractions[-1] == 1.0
        from luciddream import __version__                             # the record names the engine, although
        assert document.read_record(doc, ses.last_layer).engine == __version__   # made before its hello
        assert offers == [OFFER] and ses.offer == OFFER                 # the worker's offer replaced the cache

        names = [n.name() for n in doc.nodes]
        ses.update(steps=500)
        ended.clear()
        ses.progress_changed.connect(lambda fraction: fraction > 0 and ses.cancel())
        assert ses.dream(), ses.status
        assert loop.run_until(lambda: ended), "cancel did not end the dream"
        assert ended[0] == ("cancelled", kit.CANCELLED) and "not changed" in ses.status
        assert [n.name() for n in doc.nodes] == names and not ses.running
    finally:
        ses.close()


# ------------------------------------------------------------------------------------------ the artist's loop

class FakeGroup(FakeNode):
    def __init__(self, doc: "FakeDoc", name: str) -> None:
        super().__init__(doc, name, "grouplayer")

    def addChildNode(self, node, above):
        i = self.children.index(above) + 1 if above is not None else len(self.children)
        self.children.insert(i, node)
        self.doc.active = node
        return True


class LoopDoc(FakeDoc):
    """A FakeDoc with group layers."""

    def createGroupLayer(self, name): return FakeGroup(self, name)


def loop_doc(w: int = 64, h: int = 48):
    doc = LoopDoc(w=w, h=h)
    layer = FakeNode(doc, "Background")
    rng = random.Random(5)
    layer.data = bytearray(rng.randrange(256) for _ in range(len(layer.data)))
    doc.nodes.append(layer)
    doc.sel = FakeSelection(w, h, (16, 12, 24, 16))
    doc.active = layer
    return doc, layer


def test_shrink_picks_whole_pixels_and_display_makes_8_bit_rgba():
    data = bytes(range(4 * 4 * 2))                    # 4×4 pixels of 2 bytes
    small = px.shrink(data, 4, 4, 2, 2, 2)
    assert small == bytes([0, 1, 4, 5, 16, 17, 20, 21])
    assert px.display_rgba8(bytes([1, 2, 3, 4]), 4, "u8", 1) == bytes([1, 2, 3, 4])
    assert px.display_rgba8(struct.pack("=2H", 0xFF00, 0x8000), 2, "u16", 1) == bytes([255, 255, 255, 128])
    assert px.display_rgba8(struct.pack("=4f", 0.5, 2.0, -1.0, 1.0), 4, "f32", 1) == bytes([128, 255, 0, 255])


def test_records_are_annotations_keyed_by_the_layer_and_refusals_are_sentences():
    doc, layer = loop_doc()
    record = kit.make_record("class:1, layer:block10=0.5", {"octaves": 2, "seed": 9}, 9, "0.1.0")
    document.write_record(doc, layer, record.to_json())
    assert list(doc.annotations) == [f"{kit.RECORD_KEY}/{document.uid_text(layer)}"]
    assert document.read_record(doc, layer) == record
    other = FakeNode(doc, "Painted by hand")
    with pytest.raises(kit.UserError, match='"Painted by hand" holds no Lucid Dream settings'):
        document.read_record(doc, other)
    with pytest.raises(kit.UserError, match="Select a layer that Lucid Dream made"):
        document.read_record(doc, None)


def test_choices_come_back_from_krita_rows_or_from_the_targets():
    record = kit.make_record("class:1, layer:block10=0.5", {}, 1)
    rows = targets.choices_from_record(record)
    assert [c.spec for c in rows] == ["class:1", "layer:block10=0.5"] and rows[0].label == "goldfish"
    listed = [["class", "1", "my fish", 2.0]]
    assert targets.choices_from_record(record, listed) == [targets.Choice("class", "1", "my fish", 2.0)]
    from_gimp = kit.make_record("goldfish=0.5", {}, 1)               # GIMP records class names
    assert [c.spec for c in targets.choices_from_record(from_gimp)] == ["class:1=0.5"]
    with pytest.raises(kit.UserError, match="not an ImageNet class"):
        targets.choices_from_record(kit.make_record("no such thing", {}, 1))


def test_loop_settings_are_checked_and_kept():
    store = FakeSettings()
    chosen = replace(settings.defaults(OFFER), variations=7, full_after_preview=True, advanced=True)
    settings.save(store, chosen)
    assert settings.load(store, OFFER) == chosen
    bad = settings.with_changes(chosen, {"variations": 99, "advanced": "yes"}, OFFER)
    assert (bad.variations, bad.advanced) == (7, True)


def test_session_preview_variations_and_again_through_a_real_worker(tmp_path, quiet_env):
    """Preview adds no layer; two variations go into one group with their records; Again on the first one makes
    the same pixels; a closed document drops the result with a sentence."""
    eng = engine.Engine(write_config(tmp_path, python=str(VENV_PYTHON)), spawn_env=quiet_env)
    doc, layer = loop_doc()
    loop = GuiLoop()
    ses = session.Session(FakeApp(doc), eng, loop.post)
    ended, shown = [], []
    ses.finished.connect(lambda outcome, message: ended.append((outcome, message)))
    ses.preview_ready.connect(shown.append)
    ses.update(steps=2, octaves=1, tile=0, seed=3)
    ses.add_preset("textures")
    try:
        assert ses.preview(), ses.status
        assert ses.preview()                                            # supersedes the first
        assert loop.run_until(lambda: ended), "the preview did not finish"
        assert ended == [("preview", ended[0][1])] and ses.superseded_previews == 1, ended
        assert len(shown) == 1 and len(shown[0].rgba) == shown[0].width * shown[0].height * 4
        assert [n.name() for n in doc.nodes] == ["Background"]          # a preview never touches the document

        ended.clear()
        assert ses.variations(2), ses.status
        assert loop.run_until(lambda: ended), "the variations did not finish"
        assert ended[0][0] == "done", ended
        group = doc.nodes[1]
        assert group.name() == "Dream: block3 (2 variations)"
        assert [c.name() for c in group.children] == ["Dream: block3 (seed 3, 1/2)", "Dream: block3 (seed 4, 2/2)"]
        first = group.children[0]
        assert document.read_record(doc, first).seed == 3 and document.read_record(doc, group.children[1]).seed == 4

        ended.clear()
        ses.update(seed=77)
        ses.clear_targets()
        doc.active = first
        assert ses.again(), ses.status
        assert loop.run_until(lambda: ended) and ended[0][0] == "done", ended
        again = ses.last_layer
        assert again.name() == "Dream: block3 (seed 3)" and bytes(again.data) == bytes(first.data)
        assert ses.settings.seed == 3 and [c.spec for c in ses.targets] == ["layer:block3"]

        ended.clear()                                                   # preview, then the full dream by itself
        ses.update(full_after_preview=True)
        doc.active = layer
        count = len(doc.nodes)
        assert ses.preview(), ses.status
        assert loop.run_until(lambda: len(ended) >= 2), ended
        assert [e[0] for e in ended] == ["preview", "done"] and len(doc.nodes) == count + 1
        ses.update(full_after_preview=False)

        ended.clear()
        doc.active = layer
        app_docs = ses.app
        assert ses.dream(), ses.status
        app_docs.doc = None                                             # the document is closed meanwhile
        assert loop.run_until(lambda: ended)
        assert ended[0] == ("error", "The document was closed while dreaming, so the dream was not added.")
    finally:
        ses.close()
