"""The Krita plug-in's pure-Python parts, without Krita: pixel formats, selections, targets, the document logic
(against small fakes of Krita's API) and the engine connection (against a real worker)."""
from __future__ import annotations

import json
import os
import random
import struct
import sys
import threading
from pathlib import Path
from typing import Any, List, Optional

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "hosts"))
import krita_plugin_loader  # noqa: E402

px = krita_plugin_loader.load("pixels")
region = krita_plugin_loader.load("region")
targets = krita_plugin_loader.load("targets")
engine = krita_plugin_loader.load("engine")
document = krita_plugin_loader.load("document")

ROOT = Path(__file__).resolve().parents[1]
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"


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
    with pytest.raises(px.PixelError) as err:
        px.pixel_format(model, "U8")
    text = str(err.value)
    assert word in text and "Convert Image Color Space" in text and text.count(".") <= 2


def test_unknown_depth_and_wrong_length_are_refused():
    with pytest.raises(px.PixelError, match="cannot read"):
        px.pixel_format("RGBA", "U32")
    with pytest.raises(px.PixelError, match="bytes"):
        px.to_engine(b"\0" * 7, px.pixel_format("RGBA", "U8"), 2)


def test_clear_unselected_makes_only_unselected_pixels_transparent():
    data = bytes(range(1, 4 * 5 + 1))
    mask = bytes([0, 255, 0, 0, 7])
    out = px.clear_unselected(data, mask, 4)
    assert out[0:4] == b"\0" * 4 and out[8:16] == b"\0" * 8
    assert out[4:8] == data[4:8] and out[16:20] == data[16:20]
    assert px.clear_unselected(data, None, 4) == data


# ---------------------------------------------------------------------------------------------------- region

def test_no_selection_dreams_the_whole_canvas():
    canvas = region.Rect(0, 0, 300, 200)
    assert region.dream_rect(None, canvas) == canvas


def test_selection_gets_half_a_tile_of_context_clipped_to_the_canvas():
    canvas = region.Rect(0, 0, 1000, 800)
    rect = region.dream_rect(region.Rect(400, 300, 64, 48), canvas)
    assert rect == region.Rect(336, 236, 64 + 128, 48 + 128)
    edge = region.dream_rect(region.Rect(10, 5, 64, 48), canvas)
    assert (edge.x, edge.y) == (0, 0) and edge.right == 10 + 64 + 64 and edge.bottom == 5 + 48 + 64
    from luciddream import masks

    assert region.CONTEXT == masks.CONTEXT


@pytest.mark.parametrize("sel,word", [(region.Rect(5, 5, 0, 10), "empty"), (region.Rect(500, 5, 10, 10), "outside")])
def test_bad_selections_get_one_sentence(sel, word):
    with pytest.raises(region.RegionError, match=word):
        region.dream_rect(sel, region.Rect(0, 0, 100, 100))


def test_a_fully_transparent_selection_is_refused():
    rect = region.Rect(0, 0, 4, 2)
    with pytest.raises(region.RegionError, match="Nothing is selected"):
        region.check_mask(bytes(8), rect)
    region.check_mask(bytes([0] * 7 + [1]), rect)
    region.check_mask(None, rect)


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
    with pytest.raises(targets.TargetError, match="weight 0"):
        targets.targets_text([targets.layer_choice("block3", 0.0)])
    with pytest.raises(targets.TargetError, match="layer name"):
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
        return True


class FakeDoc:
    def __init__(self, w: int = 40, h: int = 30, model: str = "RGBA", depth: str = "U8") -> None:
        self.w, self.h, self.model, self.depth = w, h, model, depth
        self.root = FakeRoot(self)
        self.nodes: List[FakeNode] = []
        self.sel: Optional[FakeSelection] = None
        self.active = None

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
    def pixelData(self, x, y, w, h): return self.nodes[0].pixelData(x, y, w, h)


def painted_doc(**kw) -> tuple:
    doc = FakeDoc(**kw)
    layer = FakeNode(doc, "Background", model=doc.model, depth=doc.depth)
    rng = random.Random(3)
    layer.data = bytearray(rng.randrange(256) for _ in range(len(layer.data)))
    doc.nodes.append(layer)
    return doc, layer


def test_snapshot_without_selection_is_the_whole_layer_in_engine_order():
    doc, layer = painted_doc()
    snap = document.read_snapshot(doc, layer, False)
    assert snap.rect == region.Rect(0, 0, 40, 30) and snap.mask is None
    assert snap.pixels[:4] == bytes([layer.data[2], layer.data[1], layer.data[0], layer.data[3]])
    job = snap.job("class:1", {"steps": 2})
    assert (job.width, job.height, job.channels, job.sample) == (40, 30, 4, "u8")


def test_snapshot_reads_the_soft_mask_with_context():
    doc, layer = painted_doc(w=300, h=200)
    doc.sel = FakeSelection(300, 200, (150, 100, 20, 10), value=128)
    snap = document.read_snapshot(doc, layer, False)
    assert snap.rect == region.Rect(150 - 64, 100 - 64, 20 + 128, 10 + 128)
    assert snap.mask.count(128) == 200 and snap.mask.count(0) == snap.rect.area - 200


@pytest.mark.parametrize("setup,word", [
    (lambda d, n: (None, n), "Open an image"),
    (lambda d, n: (d, None), "Choose the layer"),
    (lambda d, n: (d, FakeNode(d, "Shapes", "vectorlayer")), "vector layer"),
])
def test_bad_sources_get_one_sentence(setup, word):
    doc, layer = painted_doc()
    d, n = setup(doc, layer)
    with pytest.raises(document.DocumentError, match=word):
        document.read_snapshot(d, n, False)


def test_cmyk_is_refused_before_anything_is_read():
    doc, layer = painted_doc()
    layer.model = "CMYKA"
    with pytest.raises(document.DocumentError, match="CMYK"):
        document.read_snapshot(doc, layer, False)


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
    snap = document.read_snapshot(doc, layer, False)
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
    snap = document.read_snapshot(doc, None, True)
    document.write_result(snap, engine_result(snap), "Dream: x")
    assert [n.name() for n in doc.nodes] == ["Background", "Top", "Dream: x"]


def test_a_layer_in_another_colour_space_gets_a_result_layer_in_that_space():
    doc, layer = painted_doc()
    layer.setColorSpace("RGBA", "U16", "g10.icc")
    snap = document.read_snapshot(doc, layer, False)
    new = document.write_result(snap, snap.pixels, "Dream: y")
    assert (new.colorDepth(), new.colorProfile()) == ("U16", "g10.icc")


@pytest.mark.parametrize("change,word", [("resize", "resized"), ("delete", "deleted"), ("convert", "colour space")])
def test_a_document_changed_while_dreaming_is_left_alone(change, word):
    doc, layer = painted_doc()
    snap = document.read_snapshot(doc, layer, False)
    if change == "resize":
        doc.w += 1
    elif change == "delete":
        doc.nodes.remove(layer)
    else:
        layer.depth = "F32"
    names = [n.name() for n in doc.nodes]
    with pytest.raises(document.DocumentError, match=word):
        document.write_result(snap, snap.pixels, "Dream: z")
    assert [n.name() for n in doc.nodes] == names


# ---------------------------------------------------------------------------------------------------- engine

def write_config(tmp_path: Path, **values) -> str:
    path = tmp_path / "engine.json"
    path.write_text(json.dumps({"python": None, "url": None, "token": None, **values}))
    return str(path)


def test_config_problems_are_sentences(tmp_path):
    with pytest.raises(engine.EngineError, match="install.py"):
        engine.load_config(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(engine.EngineError, match="cannot be read"):
        engine.load_config(str(tmp_path / "bad.json"))
    with pytest.raises(engine.EngineError, match="neither"):
        engine.load_config(write_config(tmp_path))
    assert engine.load_config(write_config(tmp_path, url="http://127.0.0.1:1")).url == "http://127.0.0.1:1"


def test_worker_env_drops_krita_python_variables():
    env = engine.worker_env({"PYTHONPATH": "/krita", "PYTHONHOME": "/k", "HOME": "/h"})
    assert env == {"HOME": "/h"}


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
        with pytest.raises(engine.EngineError, match="already running"):
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
