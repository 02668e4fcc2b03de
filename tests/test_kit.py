"""The adapter kit (kit/): the rules both plug-ins share, tested once, without GIMP or Krita.

The kit runs inside each host's own Python (GIMP's, Krita's bundled one: 3.8 and newer, standard library only), so
besides its rules these tests check what it may import and which syntax it may use.
"""
from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KIT_DIR = ROOT / "kit"
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))
import kit  # noqa: E402
from kit import Rect, UserError  # noqa: E402


def described() -> dict:
    from luciddream.offer import describe
    return json.loads(json.dumps(describe()))   # as engine.json and the hello carry it


# --------------------------------------------------------------------------------------------- region

def test_rect_arithmetic() -> None:
    r = Rect(10, 20, 30, 40)
    assert (r.right, r.bottom, r.area, r.empty) == (40, 60, 1200, False)
    assert r.intersect(Rect(0, 0, 15, 25)) == Rect(10, 20, 5, 5)
    assert r.intersect(Rect(100, 100, 5, 5)).empty and Rect(0, 0, 0, 5).area == 0
    assert r.grow(5) == Rect(5, 15, 40, 50) and r.shift(-10, 2) == Rect(0, 22, 30, 40)


def test_no_selection_is_the_whole_layer() -> None:
    plan = kit.plan_region(300, 200, 7, 9, None, 64)
    assert plan.region == Rect(0, 0, 300, 200) and plan.selected is None and plan.mask_rect == Rect(7, 9, 300, 200)


def test_selection_grows_by_the_context_and_is_clipped() -> None:
    plan = kit.plan_region(1000, 800, 0, 0, Rect(400, 300, 64, 48), 64, "the image")
    assert plan.region == Rect(336, 236, 64 + 128, 48 + 128)
    edge = kit.plan_region(1000, 800, 0, 0, Rect(10, 5, 64, 48), 64).region
    assert (edge.x, edge.y, edge.right, edge.bottom) == (0, 0, 10 + 64 + 64, 5 + 48 + 64)
    partly_off = kit.plan_region(100, 100, 0, 0, Rect(-50, 90, 80, 80), 16)
    assert partly_off.selected == Rect(0, 90, 30, 10) and partly_off.region == Rect(0, 74, 46, 26)


def test_layer_offsets_move_the_selection_onto_the_layer() -> None:
    plan = kit.plan_region(90, 70, 25, 20, Rect(40, 30, 64, 48), 10)
    assert plan.selected == Rect(15, 10, 64, 48) and plan.region == Rect(5, 0, 84, 68)
    assert plan.mask_rect == Rect(30, 20, 84, 68)


@pytest.mark.parametrize("width,height,selection,words", [
    (0, 10, None, "The image has no pixels"),
    (100, 100, Rect(5, 5, 0, 10), "empty"),
    (100, 100, Rect(500, 5, 10, 10), "outside and does not touch the image"),
])
def test_bad_regions_get_one_sentence(width, height, selection, words) -> None:
    with pytest.raises(UserError, match=words) as info:
        kit.plan_region(width, height, 0, 0, selection, 64, "the image")
    assert "\n" not in str(info.value) and str(info.value).endswith(".")


def test_masks_that_select_nothing_are_refused() -> None:
    rect = Rect(0, 0, 4, 2)
    with pytest.raises(UserError, match="Nothing is selected on the image"):
        kit.check_mask(bytes(8), rect, "the image")
    with pytest.raises(UserError, match="8 mask values|7 mask values"):
        kit.check_mask(bytes(7), rect)
    kit.check_mask(bytes([0] * 7 + [1]), rect)
    kit.check_mask(None, rect)
    assert kit.selected_fraction(None) == 1.0 and kit.selected_fraction(bytes([255, 0])) == 0.5


def test_sample_sizes() -> None:
    assert kit.SAMPLE_BYTES == {"u8": 1, "u16": 2, "f32": 4}
    assert kit.pixel_bytes(4, "u16") == 8 and kit.pixel_bytes(1, "f32") == 4
    with pytest.raises(UserError, match="sample type"):
        kit.pixel_bytes(3, "f16")


def test_split_targets() -> None:
    assert kit.split_targets("  goldfish ,peacock=0.5;\n\n layer:block6 ") == ["goldfish", "peacock=0.5",
                                                                               "layer:block6"]
    assert kit.split_targets("") == [] and kit.split_targets(None) == []
    for bad in ("goldfish, =0.5", "goldfish="):
        with pytest.raises(UserError, match="weight"):
            kit.split_targets(bad)


# --------------------------------------------------------------------------------------------- engine.json

def write(tmp_path: Path, data) -> str:
    path = tmp_path / "engine.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return str(path)


def test_engine_json_spawn_connect_and_offer(tmp_path: Path) -> None:
    offer = described()
    config = kit.read_config(write(tmp_path, {"python": "/v/bin/python", "url": None, "token": None,
                                               "offer": offer}))
    assert (config.how, config.python, config.url, config.offer) == ("spawn", "/v/bin/python", None, offer)
    served = kit.read_config(write(tmp_path, {"python": "/p", "url": "https://h:1", "token": ""}))
    assert (served.how, served.url, served.token, served.offer) == ("connect", "https://h:1", None, None)


@pytest.mark.parametrize("content,words", [
    (None, r"is missing\): run `python install.py`"),
    ("{", "cannot be read"),
    ("[1, 2]", "must hold a JSON object"),
    ({"python": 3}, '"python" in .* must be a string'),
    ({"url": "ftp://x"}, "http:// or https://"),
    ({"python": None, "url": None}, "names neither an engine Python nor a server url"),
    ({"python": "/p", "offer": [1]}, '"offer" in .* must be a JSON object'),
])
def test_engine_json_problems_are_one_sentence(tmp_path: Path, content, words: str) -> None:
    path = str(tmp_path / "missing.json") if content is None else write(tmp_path, content)
    with pytest.raises(UserError, match=words) as info:
        kit.read_config(path)
    assert "\n" not in str(info.value) and str(info.value).endswith(".")


def test_worker_env_is_the_same_for_both_hosts() -> None:
    base = {"PYTHONPATH": "/krita", "PYTHONHOME": "/k", "PYTHONSTARTUP": "s", "PYTHONEXECUTABLE": "e",
            "HOME": "/h", "PATH": "/bin"}
    assert kit.worker_env(base) == {"HOME": "/h", "PATH": "/bin", "LUCIDDREAM_LEAVE_CORES": "1"}
    assert base["PYTHONPATH"] == "/krita"   # the host's own environment is left alone
    os.environ["LUCIDDREAM_KIT_TEST"] = "1"
    try:
        assert kit.worker_env()["LUCIDDREAM_KIT_TEST"] == "1"
    finally:
        del os.environ["LUCIDDREAM_KIT_TEST"]


# --------------------------------------------------------------------------------------------- the offer

def test_offer_is_the_engines() -> None:
    from luciddream import masks
    from luciddream.settings import RANGES, Settings

    data = described()
    offer = kit.Offer.from_dict(data)
    assert offer.context == masks.CONTEXT
    assert [p.name for p in offer.presets] == [p["name"] for p in data["presets"]]
    assert offer.range("step_size") == tuple(RANGES["step_size"])
    assert offer.default("octave_scale") == Settings().octave_scale and offer.default("model") == Settings().model
    assert offer.default_model in offer.models
    assert set(kit.LABELS) >= set(offer.ranges) and kit.LABELS["octave_scale"] == "Size step"
    assert all(kit.LABELS[name] == kit.controls.LABELS[name] for name in kit.controls.LABELS)   # one vocabulary


def test_an_older_engines_offer_gets_the_class_look_defaults_from_the_kit_alone() -> None:
    """An offer without the class-look defaults (an engine from before them) reads as if it had the kit's, which
    are today's engine's, so the plug-ins need no fallback values of their own."""
    data = described()
    assert kit.offer.CLASS_LOOK_DEFAULTS == {k: data["defaults"][k] for k in kit.offer.CLASS_LOOK_DEFAULTS}
    older = dict(data, defaults={k: v for k, v in data["defaults"].items() if k not in ("look", "instance",
                                                                                       "class_strength")})
    offer = kit.Offer.from_dict(older)
    assert {k: offer.default(k) for k in ("look", "instance", "class_strength")} == kit.offer.CLASS_LOOK_DEFAULTS


def test_offer_preset_targets() -> None:
    offer = kit.Offer.from_dict(described())
    assert offer.targets("eyes", []) == offer.preset("eyes").targets
    assert offer.targets("classic", ["goldfish"]) == "layer:block10, goldfish"
    assert offer.targets(None, []) is None and offer.targets("", ["a", "b=2"]) == "a, b=2"
    with pytest.raises(UserError, match='Unknown preset "bogus": the engine offers classic'):
        offer.targets("bogus", [])


def test_offer_checks_values_in_the_users_words() -> None:
    offer = kit.Offer.from_dict(described())
    offer.check_settings({"model": offer.default_model, "tile": 640, "step_size": 1.5, "seed": None})
    for settings, words in [({"tile": 5000}, "Memory tile must be between 0 and 4096; got 5000."),  # 0: auto
                            ({"step_size": 100.0}, "Intensity must be between"),
                            ({"octave_scale": 1.0}, "Size step must be between"),
                            ({"octaves": 2.5}, "Pattern sizes must be a whole number"),
                            ({"steps": True}, "Steps per size must be a whole number"),
                            ({"model": "resnet"}, 'Unknown model "resnet"')]:
        with pytest.raises(UserError, match=words):
            offer.check_settings(settings)
    with pytest.raises(UserError, match="Seed must be between -1 and 9"):
        kit.check_value("Seed", 10, -1, 9)


def test_offer_from_engine_json_and_hello(tmp_path: Path) -> None:
    data = described()
    cached = kit.offer_from_config(kit.config_from({"python": "/p", "offer": data}))
    assert kit.offer_from_hello({"offer": data}) == cached
    assert kit.offer_from_hello({"protocol": 1}, cached) is cached
    with pytest.raises(UserError, match="holds no offer"):
        kit.offer_from_config(kit.config_from({"python": "/p"}))
    with pytest.raises(UserError, match="sent no offer"):
        kit.offer_from_hello({"protocol": 1})


@pytest.mark.parametrize("damage", [
    lambda d: d.pop("presets"),
    lambda d: d.update(context="64"),
    lambda d: d.update(ranges={"tile": [4096, 64]}),
    lambda d: d["presets"].append({"name": "x"}),
])
def test_a_damaged_offer_is_one_sentence(damage) -> None:
    data = described()
    damage(data)
    with pytest.raises(UserError, match="damaged.*install.py") as info:
        kit.Offer.from_dict(data, "engine.json")
    assert "\n" not in str(info.value)


def test_the_cli_prints_the_offer() -> None:
    out = subprocess.run([sys.executable, "-m", "luciddream", "offer"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == described()


# --------------------------------------------------------------------------------------------- source rules

def kit_sources():
    return sorted(KIT_DIR.glob("*.py"))


def test_kit_needs_only_the_standard_library_and_imports_itself_relatively() -> None:
    """Hosts have neither numpy nor the engine; the kit is copied under other package names (kit,
    luciddream.kit), so it may only reach its own modules relatively, and never the protocol."""
    for path in kit_sources():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top in sys.stdlib_module_names, f"{path.name} imports {name}"
        assert "protocol" not in {getattr(n, "module", None) for n in ast.walk(tree)}, path.name


def test_kit_syntax_is_python_3_8() -> None:
    """Every module parses as Python 3.8 and defers its annotations (no `X | Y` evaluated at run time)."""
    for path in kit_sources():
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source, feature_version=(3, 8))
        assert "from __future__ import annotations" in source, path.name
        for bad in (".removeprefix(", ".removesuffix("):   # str methods from 3.9 on
            assert bad not in source, f"{path.name} uses {bad!r}"
        assert tree is not None


def python_3_8():
    """A working Python 3.8 (on PATH, or one pyenv keeps), or None."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    for candidate in [shutil.which("python3.8"), *map(str, sorted(pyenv.glob("versions/3.8*/bin/python3.8")))]:
        if candidate and subprocess.run([candidate, "-c", "import sys; assert sys.version_info[:2] == (3, 8)"],
                                        capture_output=True).returncode == 0:
            return candidate
    return None


def test_kit_runs_on_python_3_8(tmp_path: Path) -> None:
    """The real thing where it is installed: the kit imported by a Python 3.8 and its rules run."""
    python = python_3_8()
    if python is None:
        pytest.skip("no Python 3.8 on this machine")
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import kit; "
            "o = kit.Offer.from_dict(json.loads(sys.argv[2])); "
            "p = kit.plan_region(100, 80, 0, 0, kit.Rect(10, 10, 5, 5), o.context); "
            "print(p.region.width, o.targets('classic', kit.split_targets('goldfish')))")
    out = subprocess.run([python, "-c", code, str(ROOT), json.dumps(described())], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["79", "layer:block10,", "goldfish"]   # 10 + 5 + 64 from the left edge


# --------------------------------------------------------------------------------------------- the artist's loop

def test_record_round_trip_keeps_every_setting_and_unknown_keys() -> None:
    settings = {"model": "lite0", "octaves": 3, "octave_scale": 1.4, "steps": 0, "step_size": 1.5, "tile": 0,
                "look": "grow", "instance": 224, "class_strength": 0.7, "device": "auto", "seed": 99}
    record = kit.make_record("goldfish, peacock=0.5", settings, 12, "0.1.0", source="photo")
    assert record.targets == (("goldfish", 1.0), ("peacock", 0.5)) and record.seed == 12
    assert "seed" not in record.settings and record.engine_settings()["seed"] == 12
    text = record.to_json()
    assert json.loads(text)["version"] == kit.RECORD_VERSION
    back = kit.parse_record(text.encode("utf-8"))
    assert back == record and back.target_text == "goldfish, peacock=0.5"
    newer = json.loads(text)
    newer["painted_by"] = "a newer plug-in"
    kept = kit.parse_record(json.dumps(newer))
    assert json.loads(kept.to_json())["painted_by"] == "a newer plug-in"


@pytest.mark.parametrize("text,words", [
    (None, "holds no Lucid Dream settings"), ("", "holds no Lucid Dream settings"),
    ("{not json", "not JSON"), ('{"targets": []}', "no version"), (b"\xff\xfe", "not UTF-8"),
    ('{"version": 99, "seed": 1}', "update the plug-in"), ('{"version": 1}', "damaged"),
    ('{"version": 1, "seed": -3}', "damaged"), ('{"version": "1", "seed": 3}', "damaged"),
])
def test_record_parse_errors_are_one_sentence(text, words: str) -> None:
    with pytest.raises(UserError) as info:
        kit.parse_record(text, 'the layer "dream"')
    message = str(info.value)
    assert words in message and "\n" not in message and message.endswith("."), message


def test_again_keeps_or_changes_only_the_seed() -> None:
    import random
    record = kit.make_record("layer:block10", {"octaves": 2, "step_size": 3.0}, 7, "0.1.0", preset="classic")
    assert kit.again(record) == record
    fresh = kit.again(record, new=True, rng=random.Random(7))
    assert fresh.seed != 7 and fresh.settings == record.settings and fresh.targets == record.targets
    assert 0 <= fresh.seed <= 2 ** 31 - 1


def test_layer_names_say_what_and_what_differs() -> None:
    grow = kit.make_record("goldfish", {"look": "grow"}, 12)
    assert kit.layer_name("photo", grow) == "photo (dream: goldfish, grow, seed 12)"
    classic = kit.make_record("layer:block10", {"look": "grow"}, 3, preset="classic")
    assert kit.layer_name("photo", classic) == "photo (dream: classic, seed 3)"
    assert kit.layer_name("photo", kit.make_record(None, {}, 1)) == "photo (dream: classic, seed 1)"
    mixed = kit.make_record("classic-ish=0.5, layer:block6", {}, 1)
    assert "classic-ish 0.5 + layer:block6" in kit.layer_name("p", mixed)
    names = [kit.layer_name("photo", r, kit.variation_label(r, i, 3))
             for i, r in enumerate(kit.variations(grow, 3))]
    assert names == ["photo (dream: goldfish, grow, seed 12, 1/3)", "photo (dream: goldfish, grow, seed 13, 2/3)",
                     "photo (dream: goldfish, grow, seed 14, 3/3)"]
    assert len(kit.layer_name("photo", kit.make_record(", ".join(["goldfish"] * 30), {}, 1))) < 80


def test_variation_seeds_wrap_inside_what_hosts_hold() -> None:
    assert kit.variation_seeds(5, 3) == [5, 6, 7]
    assert kit.variation_seeds(2 ** 31 - 2, 3) == [2 ** 31 - 2, 2 ** 31 - 1, 0]
    assert kit.variation_seeds(1, 0) == []


def test_preview_is_small_quick_and_keeps_the_look() -> None:
    settings = {"model": "lite0", "octaves": 4, "steps": 0, "step_size": 1.5, "tile": 640, "seed": 4,
                "look": "grow", "instance": 224, "class_strength": 0.7}
    layer = kit.plan_preview(640, 640, settings, "layer:block10")
    assert (layer.width, layer.height) == (kit.PREVIEW_SIDE, kit.PREVIEW_SIDE) and layer.scale == 0.3
    assert layer.settings["octaves"] == 2 and layer.settings["steps"] == 6 and layer.settings["tile"] == 0
    assert layer.settings["seed"] == 4 and layer.settings["model"] == "lite0"
    assert layer.settings["step_size"] == 2.739   # 12 steps instead of 40 push harder: sqrt(40 / 12) × 1.5
    grow = kit.plan_preview(640, 320, settings, "goldfish")
    assert (grow.width, grow.height) == (192, 96) and grow.settings["octaves"] == 1
    assert grow.settings["steps"] == 8
    assert 192 * 224 / grow.settings["instance"] <= 224          # the class look's working picture stays small
    auto = kit.plan_preview(640, 320, dict(settings, instance=0), "goldfish")
    assert auto.settings["instance"] == 0    # auto stays auto: the engine sizes it from the preview's selection
    few = kit.plan_preview(100, 50, dict(settings, steps=3, octaves=1), None)
    assert (few.width, few.height, few.scale) == (100, 50, 1.0)          # never enlarged
    assert few.settings["steps"] == 3 and few.settings["octaves"] == 1  # never more than the user asked
    assert few.settings["step_size"] == 1.5 and grow.settings["step_size"] == 1.5   # nothing to make up for
    assert kit.look_of("goldfish; peacock=0.5", {"look": "object"}) == "object"
    assert kit.look_of("", {"look": "object"}) == "layer"


def test_checkup_lines() -> None:
    pixels, w, h, channels, sample = kit.tiny_image()
    assert len(pixels) == w * h * channels and sample == "u8"
    info = {"engine": "0.1.0", "protocol": 1, "python": "3.11.7", "models": ["lite0", "lite1"], "device": "cpu"}
    lines = kit.report_lines(info, 0.734)
    assert lines[1] == "Device: cpu" and lines[2] == "Models: lite0, lite1" and "0.73 s" in lines[3]
    assert "install.py" in kit.report_lines({**info, "models": []}, 1.0)[-1]
    assert kit.failure_line("The engine's Python /x is missing:\n run install.py.") == (
        "Engine test failed: The engine's Python /x is missing: run install.py.")


def test_control_words_cover_every_setting_the_hosts_show() -> None:
    for name in ("step_size", "octaves", "look", "instance", "class_strength", "seed", "steps", "octave_scale",
                 "tile", "model", "variations", "targets", "preset"):
        label, tip = kit.controls.LABELS[name], kit.controls.TIPS[name]
        assert label and tip.endswith(".") and "\n" not in tip, name
    assert set(kit.controls.ADVANCED) <= set(kit.controls.LABELS)
    assert kit.controls.with_mnemonic("Intensity", "n") == "I_ntensity"
    assert kit.controls.with_mnemonic("Pattern sizes", "T") == "Pa_ttern sizes"
    assert kit.controls.with_mnemonic("Network", "q") == "Network"
