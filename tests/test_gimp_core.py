"""The GIMP plug-in's pure-Python half (gimp_plugin/luciddream/dreamcore.py): no GIMP needed, runs in milliseconds.

dreamcore is loaded from its file, not through sys.path: its folder also holds luciddream.py, which would shadow the
engine package of the same name for every other test in the session. The kit it imports (copied beside it by
install.py) is the checkout's kit/, found through the repository root on sys.path.
"""
from __future__ import annotations

import ast
import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_DIR = ROOT / "gimp_plugin" / "luciddream"
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))   # `import kit`, as the installed plug-in finds its copy beside it
import kit  # noqa: E402


def _load():
    spec = importlib.util.spec_from_file_location("luciddream_gimp_dreamcore", PLUGIN_DIR / "dreamcore.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module   # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


core = _load()
Rect, Plan, BadInput = kit.Rect, kit.Plan, kit.UserError


def _described() -> dict:
    """The engine's offer as JSON carries it (engine.json's cached copy, the worker's hello)."""
    from luciddream.offer import describe
    return json.loads(json.dumps(describe()))


@pytest.fixture(scope="module")
def offer() -> kit.Offer:
    return kit.Offer.from_dict(_described())


def options(offer: kit.Offer, **change) -> "core.Options":
    return dataclasses.replace(core.default_options(offer), **change)


# --------------------------------------------------------------------------------------------- arguments

def test_defaults_match_the_engine_settings(offer) -> None:
    from luciddream import Settings
    s = core.engine_settings(core.default_options(offer), offer)
    assert "seed" not in s   # -1: the engine picks a new seed
    engine = Settings(**s).check()
    # steps 0: each look's own; tile 0: auto, chosen by the engine from the free memory
    assert (engine.octaves, engine.steps, engine.step_size, engine.octave_scale, engine.tile) == (4, 0, 1.5, 1.4, 0)


def test_dialog_ranges_come_from_the_offer(offer) -> None:
    """The dialog must never offer a value the engine refuses (seed aside: GIMP ints stop at 2**31-1); the bounds
    are the offer's, so a changed engine range changes the dialog with nothing to keep equal."""
    from luciddream.settings import RANGES
    ranges = core.ranges(offer)
    names = {"octaves": "octaves", "steps": "steps", "strength": "step_size", "detail_size": "octave_scale",
             "tile": "tile"}
    for ours, theirs in names.items():
        assert tuple(ranges[ours]) == tuple(RANGES[theirs]), ours
    assert ranges["seed"][0] == core.RANDOM_SEED and ranges["seed"][1] < RANGES["seed"][1]
    raw = _described()
    narrow = kit.Offer.from_dict({**raw, "ranges": {**raw["ranges"], "tile": [128, 256]}})
    assert core.ranges(narrow)["tile"] == (128, 256)
    with pytest.raises(BadInput, match="Memory tile must be between 128 and 256"):
        core.engine_settings(options(narrow, tile=640), narrow)


def test_dialog_choices_come_from_the_offer(offer) -> None:
    assert list(core.preset_choices(offer)) == ["none"] + [p.name for p in offer.presets]
    assert list(core.model_choices(offer)) == list(offer.models)
    assert core.default_options(offer).model == offer.default_model


def test_options_from_gimp_property_names(offer) -> None:
    opts = core.options_from({"detail-size": 2.0, "targets": "goldfish", "run-mode": 1, "seed": 7}, offer)
    assert opts.detail_size == 2.0 and opts.targets == "goldfish" and opts.seed == 7 and opts.steps == 0
    s = core.engine_settings(opts, offer)
    assert s["octave_scale"] == 2.0 and s["seed"] == 7 and s["step_size"] == 1.5


@pytest.mark.parametrize("preset,text,expected", [
    ("none", "", None),
    ("none", "  goldfish ,peacock=0.5 ", "goldfish, peacock=0.5"),
    ("classic", "", "layer:block10"),
    ("eyes", "goldfish\n\njellyfish=2;", "layer:block9, goldfish, jellyfish=2"),
    ("none", "layer:block6:3,17=0.5", "layer:block6:3, 17=0.5"),
])
def test_targets_for(offer, preset: str, text: str, expected) -> None:
    assert core.targets_for(preset, text, offer) == expected


def test_targets_keep_the_engine_grammar(offer) -> None:
    """Whatever the plug-in sends parses to the same targets as the user's text (channel lists included)."""
    from luciddream.objectives import _split
    text = "goldfish=1, layer:block6:3,17=0.5; peacock"
    assert _split(core.targets_for("none", text, offer)) == _split(text)


def test_every_preset_is_a_real_lite0_layer(offer) -> None:
    from luciddream.nets import load_model, resolve_device
    from luciddream.objectives import parse_targets
    net = load_model("lite0", resolve_device("cpu"))
    for preset in offer.presets:
        layer = core.targets_for(preset.name, "", offer)
        assert parse_targets(layer, net)[0].name == layer.split(":")[1], preset.name


@pytest.mark.parametrize("preset,text,words", [
    ("bogus", "", "preset"),
    ("none", "goldfish, =0.5", "weight"),
    ("none", "goldfish=", "weight"),
])
def test_bad_targets(offer, preset: str, text: str, words: str) -> None:
    with pytest.raises(BadInput, match=words):
        core.targets_for(preset, text, offer)


@pytest.mark.parametrize("change,words", [
    ({"octaves": 0}, "Pattern sizes must be between 1 and 12"),
    ({"steps": 2.5}, "Steps per size must be a whole number"),
    ({"strength": 100.0}, "Intensity must be between"),
    ({"detail_size": 1.0}, "Size step must be between"),
    ({"tile": 5000}, "Memory tile must be between 0"),
    ({"seed": -2}, "Variation \\(seed\\) must be between -1"),
    ({"model": "resnet"}, 'Unknown model "resnet"'),
    ({"device": "tpu"}, 'Unknown device "tpu"'),
    ({"output": "file"}, 'Unknown output "file"'),
    ({"octaves": True}, "whole number"),
])
def test_bad_settings_get_one_sentence(offer, change, words: str) -> None:
    opts = options(offer, **change)
    with pytest.raises(BadInput, match=words) as info:
        core.engine_settings(opts, offer)
    assert "\n" not in str(info.value) and str(info.value).endswith(".")


def test_layer_name_is_short() -> None:
    assert core.layer_name("bg", None) == "bg (dream: classic)"
    assert core.layer_name("bg", "goldfish") == "bg (dream: goldfish)"
    assert len(core.layer_name("bg", "x" * 200)) < 60


def test_engine_config() -> None:
    """engine.json is read by the kit, the same way in both plug-ins."""
    def how(data):
        c = kit.config_from(data)
        return (c.how, c.url if c.how == "connect" else c.python, c.token if c.how == "connect" else None)

    assert how({"python": "/v/bin/python", "url": None, "token": None}) == ("spawn", "/v/bin/python", None)
    assert how({"python": "/p", "url": "http://127.0.0.1:8765", "token": "t"}) == (
        "connect", "http://127.0.0.1:8765", "t")
    assert how({"url": "http://h:1", "token": ""})[2] is None
    with pytest.raises(BadInput, match="install.py"):
        kit.config_from({"python": None, "url": None})
    with pytest.raises(BadInput, match="http"):
        kit.config_from({"url": "ftp://x"})
    with pytest.raises(BadInput, match="JSON object"):
        kit.config_from([1, 2])


def test_progress_text() -> None:
    assert core.progress_text("octave 1/2, step 3/10", 1, 2) == "Lucid Dream: octave 1/2, step 3/10"
    assert core.progress_text("", 2, 4) == "Lucid Dream: octave 2/4"
    assert core.progress_text("", None, None) == "Lucid Dream"


# --------------------------------------------------------------------------------------------- region

def test_plan_without_selection_is_the_whole_layer() -> None:
    plan = kit.plan_region(100, 80, 5, 7, None, 64)
    assert plan.region == Rect(0, 0, 100, 80) and plan.selected is None
    assert plan.mask_rect == Rect(5, 7, 100, 80)


def test_plan_grows_by_the_margin_and_clips_to_the_layer() -> None:
    plan = kit.plan_region(1000, 800, 0, 0, Rect(300, 200, 64, 48), 256)
    assert plan.selected == Rect(300, 200, 64, 48)
    assert plan.region == Rect(44, 0, 64 + 512, 200 + 48 + 256)


def test_plan_uses_layer_offsets() -> None:
    """The selection is in image coordinates; the layer starts at (25, 20) in the image."""
    plan = kit.plan_region(90, 70, 25, 20, Rect(40, 30, 64, 48), 10)
    assert plan.selected == Rect(15, 10, 64, 48)
    assert plan.region == Rect(5, 0, 84, 68)
    assert plan.mask_rect == Rect(30, 20, 84, 68)     # the same pixels in image coordinates


def test_plan_with_a_selection_partly_off_the_layer() -> None:
    plan = kit.plan_region(50, 50, -10, -10, Rect(0, 0, 100, 100), 32)   # the layer starts above and left
    assert plan.selected == Rect(10, 10, 40, 40) and plan.region == Rect(0, 0, 50, 50)


def test_plan_refuses_a_selection_that_misses_the_layer() -> None:
    with pytest.raises(BadInput, match='does not touch the layer "bg"'):
        kit.plan_region(50, 50, 0, 0, Rect(200, 200, 10, 10), 32, 'the layer "bg"')
    with pytest.raises(BadInput, match="no pixels"):
        kit.plan_region(0, 10, 0, 0, None, 32)


def test_context_margin_comes_from_the_offer(offer) -> None:
    """No margin constant in the plug-in: the region grows by the offer's context, which is masks.CONTEXT."""
    from luciddream import masks

    assert offer.context == masks.CONTEXT
    assert not hasattr(core, "CONTEXT") and "offer.context" in (PLUGIN_DIR / "luciddream.py").read_text("utf-8")


# --------------------------------------------------------------------------------------------- pixels

@pytest.mark.parametrize("nick,sample", [
    ("u8-non-linear", "u8"), ("u8-linear", "u8"), ("u8-perceptual", "u8"), ("u16-linear", "u16"),
    ("u16-non-linear", "u16"), ("u32-linear", "f32"), ("half-linear", "f32"), ("float-non-linear", "f32"),
    ("double-perceptual", "f32"),
])
def test_sample_for_precision(nick: str, sample: str) -> None:
    assert core.sample_for_precision(nick) == sample


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(BadInput, match="Image › Precision"):
        core.sample_for_precision("u64-strange")


@pytest.mark.parametrize("gray,alpha,sample,babl,channels,bpp", [
    (False, True, "u8", "R'G'B'A u8", 4, 4),
    (False, False, "u16", "R'G'B' u16", 3, 6),
    (True, False, "u8", "Y' u8", 1, 1),
    (True, True, "f32", "Y'A float", 2, 8),
])
def test_pixel_format(gray, alpha, sample, babl, channels, bpp) -> None:
    fmt = core.pixel_format(gray, alpha, sample)
    assert (fmt.babl, fmt.channels, fmt.sample, fmt.bytes_per_pixel) == (babl, channels, sample, bpp)


def test_engine_mask_is_hard_where_anything_is_selected() -> None:
    plan = kit.plan_region(4, 2, 0, 0, Rect(0, 0, 4, 2), 0)
    assert core.engine_mask(bytes([0, 1, 128, 255, 0, 0, 3, 0]), plan) == bytes([0, 255, 255, 255, 0, 0, 255, 0])
    assert core.engine_mask(bytes(8), Plan(Rect(0, 0, 4, 2), None, 0, 0)) is None   # no selection
    with pytest.raises(BadInput, match="Nothing is selected"):
        core.engine_mask(bytes(8), plan)
    with pytest.raises(ValueError):
        core.engine_mask(bytes(7), plan)


def test_check_result_refuses_a_wrong_size() -> None:
    plan = kit.plan_region(3, 2, 0, 0, None, 0)
    fmt = core.pixel_format(False, True, "u16")
    good = bytes(3 * 2 * 8)
    assert core.check_result(good, plan, fmt) is good
    with pytest.raises(BadInput, match="not changed"):
        core.check_result(good[:-1], plan, fmt)


def test_split_rows() -> None:
    assert core.split_rows(bytes(range(12)), 2, 3, 2) == [bytes([0, 1, 2, 3]), bytes([4, 5, 6, 7]),
                                                          bytes([8, 9, 10, 11])]


def test_layer_problems_are_sentences() -> None:
    for kind in core.LAYER_PROBLEMS:
        text = core.layer_problem(kind, "Layer 1")
        assert text.startswith('"Layer 1" ') and text.endswith(".") and "\n" not in text


# --------------------------------------------------------------------------------------------- source rules

def test_plugin_sources_need_only_the_standard_library() -> None:
    """GIMP's Python has no numpy or torch: the plug-in may import only the stdlib, gi, protocol, kit and its own
    dreamcore, dialog and looks."""
    allowed = set(sys.stdlib_module_names) | {"gi", "protocol", "kit", "dreamcore", "dialog", "looks"}
    for path in PLUGIN_DIR.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"


def test_protocol_is_not_copied_into_the_source_tree() -> None:
    """install.py copies engine/luciddream/protocol/ and kit/ beside the plug-in: one source of truth each."""
    assert not (PLUGIN_DIR / "protocol.py").exists()
    assert not (PLUGIN_DIR / "protocol").exists()
    assert not (PLUGIN_DIR / "kit").exists()


def test_plugin_is_executable_python3() -> None:
    main = PLUGIN_DIR / "luciddream.py"
    assert main.read_text(encoding="utf-8").startswith("#!/usr/bin/env python3\n")
    compile(main.read_text(encoding="utf-8"), str(main), "exec")


# --------------------------------------------------------------------------------------------- the artist's loop

def test_records_for_variations_draw_one_seed_and_count_up(offer) -> None:
    opts = options(offer, seed=core.RANDOM_SEED, variations=3, targets="goldfish")
    settings = core.engine_settings(opts, offer)
    records = core.records_for(opts, settings, "goldfish", "0.1.0", "photo", first_seed=41)
    assert [r.seed for r in records] == [41, 42, 43]
    assert all(r.settings == records[0].settings and r.engine == "0.1.0" for r in records)
    assert [core.result_name("photo", r, i, 3) for i, r in enumerate(records)][1] == (
        "photo (dream: goldfish, grow, seed 42, 2/3)")
    fixed = core.records_for(options(offer, seed=9), settings, None, "", "photo")
    assert [r.seed for r in fixed] == [9] and core.result_name("photo", fixed[0]) == "photo (dream: classic, seed 9)"
    drawn = core.records_for(options(offer), settings, None, "", "photo")[0].seed
    assert 0 <= drawn <= core.GIMP_INT_MAX   # a random seed is drawn before sending, so Again can repeat it


def test_variations_are_checked_like_every_number(offer) -> None:
    with pytest.raises(BadInput, match="Variations must be between 1 and 16"):
        core.engine_settings(options(offer, variations=17), offer)


def test_a_guide_of_another_colour_model_is_one_sentence() -> None:
    core.check_guide_mode(True, True, "sky")
    with pytest.raises(BadInput, match='The guide "sky" is grayscale but this image is RGB: convert one'):
        core.check_guide_mode(True, False, "sky")
    with pytest.raises(BadInput, match='"sky" is RGB but this image is grayscale'):
        core.check_guide_mode(False, True, "sky")
