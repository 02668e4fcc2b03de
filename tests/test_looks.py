"""The look atlas (engine/luciddream/atlas.py): a tiny slice built, cached, reused, rebuilt when damaged; search;
the sentences for an unknown layer or channel and for a model without weights; `luciddream looks`."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

from luciddream import atlas, cli
from luciddream.errors import Cancelled, DreamError
from luciddream.nets import googlenet, zoo

# A slice small enough for a test: one early layer, two channels, a few steps (the real recipe is atlas.RECIPE).
TINY = atlas.Recipe(side=48, steps=4, label_views=1, thumb_side=64, thumb_octaves=1, thumb_steps=2, channels=2)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LUCIDDREAM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_slice_is_built_cached_and_reused_without_recomputation(cache, monkeypatch):
    said: list[str] = []
    progress: list[float] = []
    first = atlas.build("lite0", ["block1"], recipe=TINY, note=said.append, progress=lambda f, m: progress.append(f))
    assert first.drawn == 3 and first.reused == 0 and not said
    assert progress and progress[-1] == 1.0 and progress == sorted(progress)
    layer = first.layers[0]
    assert layer.layer == "block1" and layer.channels_total == 24 and sorted(layer.ranking) == list(range(24))
    assert [c.channel for c in layer.channels] == list(layer.ranking[:2])
    assert str(first.folder).startswith(str(cache)) and "lite0-" in first.folder.name
    pictures = [layer.thumbnail, *(c.picture for c in layer.channels)]
    for path in pictures:
        with Image.open(path) as im:
            assert im.size in ((64, 64), (48, 48))
    a, b = (np.asarray(Image.open(c.picture), dtype=np.float32) for c in layer.channels)
    assert np.abs(a - b).mean() > 5, "two channels drew the same picture"
    for c in layer.channels:
        assert len(c.classes) == TINY.classes and all(0 < p <= 1 for _, p in c.classes)
        assert c.target == f"layer:block1:{c.channel}"
    stamps = [p.stat().st_mtime_ns for p in pictures]

    def no_drawing(*args, **kwargs):
        raise AssertionError("the cached atlas was drawn again")

    monkeypatch.setattr(atlas, "_visualise", no_drawing)
    monkeypatch.setattr(atlas, "_thumbnail", no_drawing)
    again = atlas.build("lite0", ["block1"], recipe=TINY, note=said.append)
    assert again.drawn == 0 and again.reused == 3 and not said
    assert again.layers[0].channels == layer.channels
    assert [p.stat().st_mtime_ns for p in pictures] == stamps


def test_a_damaged_cache_file_is_drawn_again_and_said_in_one_line(cache):
    first = atlas.build("lite0", ["block1"], recipe=TINY)
    broken = first.layers[0].channels[1].picture
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    said: list[str] = []
    again = atlas.build("lite0", ["block1"], recipe=TINY, note=said.append)
    assert again.drawn == 1 and again.reused == 2
    assert len(said) == 1 and str(broken) in said[0] and "\n" not in said[0]
    with Image.open(broken) as im:
        im.load()
    (first.folder / "block1.json").write_text("{ half a record", encoding="utf-8")
    said.clear()
    third = atlas.build("lite0", ["block1"], recipe=TINY, note=said.append)
    assert len(said) == 1 and "block1.json" in said[0]
    assert third.drawn == 2 and third.layers[0].channels[0].classes  # the channels again; the thumbnail was fine


def test_cancel_keeps_what_is_finished(cache):
    cancel = threading.Event()

    def progress(fraction: float, message: str) -> None:
        if "channels" in message:  # the thumbnail is done, the channels are being drawn
            cancel.set()

    with pytest.raises(Cancelled):
        atlas.build("lite0", ["block1"], recipe=TINY, progress=progress, cancel=cancel)
    again = atlas.build("lite0", ["block1"], recipe=TINY)
    assert again.reused == 1 and again.drawn == 2


def test_search_finds_a_channel_by_its_class_and_by_a_word(cache):
    found = atlas.build("lite0", ["block1:3,5"], recipe=TINY)
    assert [c.channel for c in found.layers[0].channels] == [3, 5]
    look = found.layers[0].channels[0]
    name = look.classes[0][0]
    assert look in atlas.search(found, name)
    assert atlas.search(found, "no such thing at all") == []
    dog = atlas.ChannelLook("block9", 1, look.picture, (("Border Terrier", 0.4), ("wool", 0.1)))
    bird = atlas.ChannelLook("block9", 2, look.picture, (("peafowl", 0.3), ("goldfish", 0.2)))
    assert atlas.matches(dog, "dog") == pytest.approx(0.4) and atlas.matches(dog, "feathers") == 0
    assert atlas.matches(bird, "feathers") == pytest.approx(0.3)
    assert atlas.matches(bird, "scales") == pytest.approx(0.2)
    assert atlas.matches(dog, "eye") > 0 and atlas.matches(bird, "terrier") == 0
    assert atlas.matches(dog, "terrier") == pytest.approx(0.4)
    assert atlas.matches(bird, "peacock") == pytest.approx(0.3)  # WordNet's synonym of peafowl


def test_unknown_layer_channel_or_weights_is_one_sentence(cache, tmp_path, monkeypatch):
    with pytest.raises(DreamError, match=r'Unknown layer "block99" for lite0: choose one of stem, block0'):
        atlas.build("lite0", ["block99"], recipe=TINY)
    with pytest.raises(DreamError, match=r"Layer block1 of lite0 has channels 0 to 23; 99 do not exist"):
        atlas.build("lite0", ["block1:2,99"], recipe=TINY)
    with pytest.raises(DreamError, match=r"The weights file .*missing.pth does not exist"):
        atlas.build("lite0", ["block1"], recipe=TINY, weights=tmp_path / "missing.pth")
    # GoogLeNet without its weights and nowhere to download them from
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv(googlenet.URL_ENV, "http://127.0.0.1:9/googlenet.pth")
    for key in [k for k in zoo._cache if k[0] == "googlenet"]:
        monkeypatch.delitem(zoo._cache, key)
    with pytest.raises(DreamError) as info:
        atlas.build("googlenet", ["inception3a"], recipe=TINY)
    assert "\n" not in str(info.value) and "--weights" in str(info.value)
    assert not (cache / "atlas").exists() or not any((cache / "atlas").iterdir())


def test_cli_looks_lists_targets_and_writes_a_sheet(cache, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(atlas, "RECIPE", TINY)
    sheet = tmp_path / "sheet.png"
    assert cli.main(["looks", "--layer", "block1", "-o", str(sheet), "-q"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("layer:block1 ") and len(out) == 3 and out[1].startswith("layer:block1:")
    with Image.open(sheet) as im:
        assert im.width > 3 * 100 and im.height > 100
    name = out[1].split(None, 1)[1].rsplit(" ", 1)[0].split(",")[0].rsplit(" ", 1)[0]
    assert cli.main(["looks", "--layer", "block1", "--search", name, "-q"]) == 0
    assert any(name in line for line in capsys.readouterr().out.splitlines()[1:])
    assert cli.main(["looks", "--layer", "block1", "--search", "zzzz", "-q"]) == 1
    assert "no channel" in capsys.readouterr().err
    assert cli.main(["looks", "--layer", "nope", "-q"]) == 2
    assert 'Unknown layer "nope"' in capsys.readouterr().err


def test_the_worker_serves_looks_with_progress_cancel_and_one_sentence(tmp_path):
    """A plug-in's view: the "looks" message over a spawned worker's pipes (the real recipe, one small slice)."""
    import io
    import os
    import sys

    from luciddream import protocol as P
    from luciddream.protocol.looks import LooksRequest, read

    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["LUCIDDREAM_CACHE"] = str(tmp_path / "cache")
    with P.Client.spawn(sys.executable, env=env) as client:
        job = client.looks(layers=["block1:0"])
        events = list(job.events())
        model, pages = read(job)
        assert model == "lite0" and len(pages) == 1 and [look.target for look in pages[0]] == [
            "layer:block1", "layer:block1:0"]
        assert any(0 < e.fraction < 1 and "block1" in e.message for e in events)
        for look in pages[0]:
            with Image.open(io.BytesIO(look.png)) as im:
                assert im.size[0] >= 96
        assert pages[0][1].classes and pages[0][1].label.startswith("block1 channel 0: ")
        again = client.looks(layers=["block1:0"], search=pages[0][1].classes[0][0])
        assert [look.target for look in read(again)[1][0]] == [
            "layer:block1", "layer:block1:0"]
        nothing = client.looks(layers=["block1:0"], search="zzzz")
        assert read(nothing)[1] == []
        with pytest.raises(P.WorkerError, match=r'Unknown layer "block77" for lite0') as info:
            client.looks(layers=["block77"]).result()
        assert info.value.code == P.BAD_INPUT
        with pytest.raises(P.WorkerError, match=r'"channels" must be a whole number'):
            LooksRequest.from_header({"kind": "looks", "id": "1", "channels": "all"})


def test_head_channels_are_drawn_below_their_clamp_and_labelled_by_the_classifier(cache, monkeypatch):
    """Lite's head ends in a ReLU6, zero for most channels on the flat grey start: the picture is optimised for
    the value before the clamp, and its labels are the classes the classifier's weights say it pushes. A net
    without that hook (the plain activations) is drawn again from a picture with contrast instead."""
    import torch

    from luciddream.nets import load_model

    net = load_model("lite0", "cpu")
    drawn = atlas._visualise(net, "head", [81], TINY, None, lambda f, m: None)[0]
    assert drawn.std() > 5 * atlas.FLAT
    weight, _ = net.readout("head")
    assert weight.shape == (1000, 1280) and net.readout("block15") is None
    pushed = atlas._pushed(weight, [81], TINY)[0]
    assert pushed[0][1] == pytest.approx(float(weight[:, 81].max()), abs=1e-4)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():  # the readout is exact: the classifier of the head's spatial mean
        logits = net(x, ["logits"])["logits"]
        assert torch.allclose(net(x, ["head"])["head"].mean(dim=(2, 3)) @ weight.T + net.readout("head")[1],
                              logits, atol=1e-4)
    found = atlas.build("lite0", ["head:81"], recipe=TINY)
    look = found.layers[0].channels[0]
    assert look.basis == atlas.WEIGHTS and look.classes == tuple(pushed) and look.summary().startswith("pushes ")
    assert atlas.search(found, pushed[0][0]) == [look]   # found by the name of a class it pushes
    monkeypatch.setattr(net, "unclamped", lambda x, layer: None)
    flat = atlas._optimise(net, "head", [81], TINY, None, lambda f, m: None, 0.01)[0]
    assert flat.std() < atlas.FLAT
    assert atlas._visualise(net, "head", [81], TINY, None, lambda f, m: None)[0].std() > 5 * atlas.FLAT


def test_a_dream_pre_empts_a_looks_build_which_goes_on_after_it(tmp_path):
    """The atlas builds in the background while the user works: a dream sent while the worker draws looks runs at
    once; the looks job ends with `busy` (a sentence saying it was paused), keeping what it drew, and looks asked for
    again afterwards come from where it stopped."""
    import os
    import sys

    from luciddream import protocol as P
    from luciddream.protocol.looks import read

    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(LUCIDDREAM_CACHE=str(tmp_path / "cache"), LUCIDDREAM_THREADS="1", OMP_NUM_THREADS="1")
    picture = np.full((48, 48, 3), 128, np.uint8)
    with P.Client.spawn(sys.executable, env=env) as client:
        looks = client.looks(layers=["block1"], channels=24)   # three batches: still busy when the dream comes
        for event in looks.events(timeout=120):
            if "channels" in event.message:   # the thumbnail is drawn, the channels are being optimised
                break
        dream = client.dream(picture.tobytes(), 48, 48, 3, "u8", None, "layer:block1",
                             {"octaves": 1, "steps": 2, "seed": 1})
        assert len(dream.result(timeout=120)) == picture.size
        with pytest.raises(P.WorkerError, match=r"The looks were paused so that dream .* could run") as info:
            read(looks, timeout=60)
        assert info.value.code == P.BUSY
        drawn = sorted(p.name for p in (tmp_path / "cache").glob("atlas/*/block1*.png"))
        assert "block1.png" in drawn   # the thumbnail finished before the dream stays in the cache
        model, pages = read(client.looks(layers=["block1:0,1"]), timeout=300)
        assert [look.target for look in pages[0]] == ["layer:block1", "layer:block1:0", "layer:block1:1"]
