"""Real Krita 5.1, 5.2, 5.3 and 6.0 under Xvfb: the plug-in installed by install.py, the docker driven through its
scenarios by the test-only driver plug-in (tests/hosts/krita_driver), and the pixel code against Krita's API through
kritarunner.

One Krita launch per version runs every docker scenario (tests/host_fixtures.py's krita_run: registration and the
presets listed, CMYK refusal, cancel, dream via the menu action, a click in the Layers docker, screenshot, the
artist's loop, the look browser of test_looks_hosts.py, last the settings set through the widgets) because a launch
plus a worker start costs 15-23 s; the tests below each check one part of its report. The settings test reads
them back from a second launch in the same HOME (krita_restart).
Every test runs on each Krita (ids krita-5.1: this Debian 12 system's; krita-5.2, krita-5.3 and krita-6.0, Qt6 and
PyQt6: roots from tests/hosts/setup_root.sh); `pytest -k krita-6.0` runs one version. Needs tests/hosts/setup_krita.sh;
without a Krita its tests skip, except under CI (.ci/run sets CI=1), where they fail.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent / "hosts"))
import krita_launch  # noqa: E402
from host_fixtures import persisted_values  # noqa: E402  (the fixtures themselves: tests/conftest.py)
from roots import KritaHost  # noqa: E402

pytestmark = pytest.mark.krita
ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv"   # what installed_home installs the plug-in with


def test_install_py_puts_the_plugin_in_pykrita_and_enables_it(installed_home):
    pykrita = installed_home / ".local" / "share" / "krita" / "pykrita"
    assert (pykrita / "luciddream.desktop").is_file()
    source = ROOT / "engine" / "luciddream" / "protocol"
    assert sorted(p.name for p in (pykrita / "luciddream" / "protocol").glob("*.py")) == \
        sorted(p.name for p in source.glob("*.py"))
    for path in source.glob("*.py"):
        assert (pykrita / "luciddream" / "protocol" / path.name).read_bytes() == path.read_bytes()
    config = json.loads((pykrita / "luciddream" / "engine.json").read_text())
    assert Path(config["python"]) == VENV / "bin" / "python" and config["url"] is None
    assert "enable_luciddream=true" in (installed_home / ".config" / "kritarc").read_text().splitlines()


def test_krita_quits_cleanly_after_the_scenarios(krita_run):
    out, report, code = krita_run
    assert report.get("error") is None, report.get("error")
    assert report["ok"] and code == 0, f"exit {code}; see {out}"


def test_docker_and_menu_action_are_registered(krita_run):
    _, report, _ = krita_run
    assert report["docker_registered"] and report["docker_title"] == "Lucid Dream"
    assert report["action_registered"]
    assert "/pykrita/luciddream/" in report["product_file"]


def test_the_docker_lists_the_engines_presets(krita_run):
    from luciddream.offer import describe

    _, report, _ = krita_run
    shown = [(p["name"], p["label"], p["targets"]) for p in report["presets"]]
    assert shown == [(p["name"], p["label"], p["targets"]) for p in describe()["presets"]]


def test_settings_persist_across_a_krita_restart(krita_run, krita_restart):
    """Values set through the docker's widgets (krita_run's last step) come back after Krita quits and starts
    again (krita_restart, same HOME)."""
    from luciddream.offer import describe

    offer = describe()
    wanted = persisted_values(offer)
    _, first, code = krita_run
    assert first.get("error") is None and code == 0, first.get("error")
    shown = first["defaults_shown"]                      # a first start shows the engine's defaults
    assert {k: shown[k] for k in offer["defaults"]} == offer["defaults"]
    assert (shown["visible"], shown["preset"]) == (False, offer["presets"][0]["name"])
    assert (shown["variations"], shown["full_after_preview"], shown["advanced"]) == (4, False, False)
    assert first["persist_set"] == wanted
    kritarc, second, code = krita_restart
    assert "[luciddream]" in kritarc.splitlines()
    assert second.get("error") is None and code == 0, second.get("error")
    assert second["persist_read"] == wanted


def test_cmyk_is_refused_with_a_sentence_and_nothing_changes(krita_run):
    _, report, _ = krita_run
    refused = report["refused"]
    assert refused["started"] is False and refused["unchanged"]
    assert "CMYK" in refused["status"] and "Convert Image Color Space" in refused["status"]


def test_cancel_mid_dream_leaves_the_document_exactly_as_it_was(krita_run):
    _, report, _ = krita_run
    cancel = report["cancel"]
    assert cancel["started"] and cancel["pressed"], cancel
    assert cancel["outcome"] == "cancelled" and "not changed" in cancel["message"]
    assert cancel["unchanged"] and cancel["layers_after"] == cancel["layers_before"]
    assert any(fraction > 0 for _, fraction, _ in cancel["events"])   # it really was dreaming when cancelled


def _rgba(path: Path, w: int, h: int) -> np.ndarray:
    return np.frombuffer(path.read_bytes(), np.uint8).reshape(h, w, 4)


def test_dream_changes_only_the_selection_into_a_new_layer(krita_run):
    out, report, _ = krita_run
    dream = report["dream"]
    assert dream["outcome"] == "done", dream["message"]
    w, h = dream["size"]
    x, y, sw, sh = dream["selection"]
    assert dream["message"].endswith(f"({sw}×{sh} px)."), dream["message"]   # the selection's size, no context
    names = [name for name, kind in dream["layers"] if kind == "paintlayer"]
    assert names[0] == "Background" and names[1].startswith("Dream: goldfish, block10 ×0.5 (seed 7)")
    assert dream["new_layers"] == [names[1]] and dream["active"] == names[1]
    assert (out / "before_layer.bin").read_bytes() == (out / "after_layer.bin").read_bytes(), \
        "the original layer was modified"
    selected = np.zeros((h, w), bool)
    selected[y:y + sh, x:x + sw] = True
    before, after = _rgba(out / "before_image.bin", w, h), _rgba(out / "after_image.bin", w, h)
    diff = np.abs(after.astype(int) - before.astype(int)).max(axis=2)
    assert diff[~selected].max() == 0, "pixels outside the selection changed"
    assert (diff[selected] > 0).mean() > 0.5, "the dream barely changed the selection"
    new = _rgba(out / "new_layer.bin", w, h)
    assert new[~selected].max() == 0 and new[selected][:, 3].min() == 255
    # the saved files: the exported PNG shows the dream, the .kra was written
    assert dream["exported"] and dream["saved"] and (out / "after.kra").stat().st_size > 0
    png = np.asarray(Image.open(out / "after.png").convert("RGBA"))
    assert (png == after[:, :, [2, 1, 0, 3]]).all()


def test_the_layer_clicked_in_the_layers_docker_is_the_one_dreamed(krita_run):
    """A real click on a row of Krita's Layers docker makes that layer the source: the dream lands right above it
    (Krita 5.2.9 too, which reports no active layer to a script that makes and activates a document at once)."""
    _, report, _ = krita_run
    click = report["click"]
    assert click["active_before"] == "Top" and click["row_found"], click
    assert click["active_after_click"] == "Background", click
    assert click["outcome"] == "done", click.get("message") or click.get("status")
    layers = click["layers"]
    assert layers[0] == "Background" and layers[1].startswith("Dream: ") and layers[2:] == ["Top"], layers


def test_worker_ends_with_krita(krita_run):
    _, report, _ = krita_run
    pid = report.get("worker_pid")
    assert pid, "the driver saw no worker"
    deadline = time.time() + 10
    while time.time() < deadline and Path(f"/proc/{pid}").exists():
        state = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}/stat").exists() else "X"
        if state == "Z":
            break
        time.sleep(0.2)
    alive = Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    assert not alive, f"the engine worker {pid} outlived Krita"


def test_screenshot_of_the_docker(krita_host, krita_run):
    out, report, _ = krita_run
    assert report["screenshot"] and report["docker_screenshot"]
    shot = Image.open(out / "docker.png")
    assert shot.width > 200 and shot.height > 300
    keep = Path("/tmp/luciddream-krita-last") / krita_host.id   # for people: the latest, outside pytest's tmp
    keep.mkdir(parents=True, exist_ok=True)
    for name in ("screenshot.png", "docker.png"):
        shutil.copy(out / name, keep / name)


@pytest.fixture(scope="session")
def runner_home(krita_host: KritaHost):
    version = krita_launch.krita_version(krita_host.root)
    cache = Path(f"/tmp/luciddream-kritarunner-template-{version}-{os.getuid()}")
    home = krita_launch.new_home(krita_launch.runner_template(cache, krita_host.root))
    yield home
    shutil.rmtree(home, ignore_errors=True)


def test_pixel_formats_against_the_real_krita_api(krita_host, installed_home, runner_home, tmp_path):
    """U8, U16, F16, F32 RGBA and gray through pixels.py and document.py in kritarunner (no engine needed)."""
    out = tmp_path / "formats.json"
    plugin = installed_home / ".local" / "share" / "krita" / "pykrita" / "luciddream"
    result = krita_launch.run_kritarunner(runner_home, ["-s", "krita_runner_formats", "-f", "main", str(plugin),
                                                        str(out)], root=krita_host.root, env_out=tmp_path)
    assert out.exists(), f"kritarunner exited with {result.returncode} and no report:\n{result.stderr[-3000:]}"
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["ok"], report.get("error")
    assert len(report["formats"]) == 7
    for name, checks in report["formats"].items():
        model, depth = name.split()
        assert checks["new_layer_space"] == [model, depth], name
        assert checks["layers"] == ["Background", "Dream: test"], name
        failed = [k for k, v in checks.items() if v is False]
        assert not failed, f"{name}: {failed}"


# ------------------------------------------------------------------------------------ the artist's loop (issue 17)

@pytest.fixture(scope="session")
def loop_run(krita_run):
    """The loop scenarios' part of the one launch (tests/hosts/krita_driver/luciddream_testdriver/loop.py)."""
    out, report, code = krita_run
    assert report.get("error") is None and code == 0, report.get("error")
    return out, report


def test_quick_preview_is_shown_in_the_docker_and_never_touches_the_document(loop_run):
    _, report = loop_run
    preview = report["loop_preview"]
    assert preview["first"] and preview["second"] and preview["outcome"] == "preview", preview
    assert preview["superseded"] == 1 and preview["shown"] == 1      # the first was cancelled, one was shown
    assert preview["label_visible"] and preview["size"] == [128, 96]
    assert preview["unchanged"], "a preview changed the layers or their pixels"
    assert preview["undo_after"] == preview["undo_before"], "a preview made an undo step"


def test_variations_go_into_a_group_named_by_seed_and_cancel_keeps_the_finished(loop_run):
    _, report = loop_run
    var = report["loop_variations"]
    assert var["pressed"] and var["outcome"] == "cancelled" and "kept the 2 finished" in var["message"], var
    assert var["groups"] == ["Dream: block3 (3 variations)"]
    assert sorted(var["children"]) == ["Dream: block3 (seed 21, 1/3)", "Dream: block3 (seed 22, 2/3)"]
    assert sorted(r["seed"] for r in var["records"]) == [21, 22] and var["digests_differ"]
    assert all(r["targets"] == [["layer:block3", 1.0]] and r["settings"]["steps"] == 2 for r in var["records"])


def test_again_repeats_the_selected_result_and_new_seed_differs(loop_run):
    _, report = loop_run
    again, new = report["loop_again"], report["loop_again_new"]
    assert report["loop_again_started"] and again["outcome"] == "done", again
    assert again["layers"] == ["Dream: block3 (seed 21)"] and again["same_pixels"], again
    assert again["seed_shown"] == 21 and again["targets_shown"] == ["layer:block3"]   # the record came back
    assert new["outcome"] == "done" and new["seed"] not in (None, 21) and new["differs"], new


def test_settings_records_survive_saving_and_reopening_the_kra(loop_run):
    _, report = loop_run
    saved = report["loop_save_reopen"]
    assert saved["saved"] and saved["records"] >= 4 and saved["same"], saved


def test_guide_from_a_layer_and_a_cmyk_guide_is_refused(loop_run):
    _, report = loop_run
    guide, cmyk = report["loop_guide"], report["loop_guide_cmyk"]
    assert "Guide stripes" in guide["listed"] and "Picture file…" in guide["listed"]
    assert guide["outcome"] == "done" and guide["added"] == 1, guide
    assert guide["record_guide"] == "Guide stripes" and "guided by Guide stripes" in guide["layer"]
    assert not cmyk["started"] and cmyk["unchanged"] and "CMYK" in cmyk["status"], cmyk
    picture = report["loop_guide_file"]           # a picture file: read through Qt, shrunk to the engine's 448
    assert picture["loaded"] and picture["kind"] == "file", picture
    assert picture["size"] == [448, 224, 448 * 224 * 4] and picture["first_pixel"] == [20, 160, 90, 255]
    assert picture["bad"] is False and "cannot be read" in picture["status"]


def test_refusals_empty_selection_killed_worker_closed_document(loop_run):
    _, report = loop_run
    empty = report["loop_empty_selection"]
    assert not empty["started"] and empty["unchanged"] and "selection is empty" in empty["status"], empty
    killed = report["loop_killed_preview"]
    assert killed["killed"] and killed["outcome"] == "error" and killed["unchanged"], killed
    assert "start the engine again" in killed["message"]
    assert report["loop_after_kill"]["outcome"] == "preview"            # a new worker serves the next click
    closed = report["loop_closed_document"]
    assert closed["closed"] and closed["outcome"] == "error" and "closed while dreaming" in closed["message"]


def test_test_engine_reports_version_device_models_and_seconds(loop_run):
    _, report = loop_run
    tested = report["loop_test_engine"]
    assert tested["outcome"] == "tested", tested
    lines = tested["message"].splitlines()
    assert lines[0].startswith("Lucid Dream engine ") and lines[1].startswith("Device: ")
    assert "lite0" in lines[2] and lines[3].startswith("A tiny 64×64 dream took")


def test_every_button_is_a_krita_action_with_a_menu_entry(loop_run):
    _, report = loop_run
    actions = report["loop_setup"]["actions"]
    assert len(actions) == 7 and all(actions.values()), actions   # so each can be given a shortcut
    assert report["loop_setup"]["buttons_with_tips"] == 7


def test_screenshot_of_the_loop_docker(krita_host, loop_run):
    out, report = loop_run
    assert report["loop_screenshot"]
    shot = Image.open(out / "docker-loop.png")
    assert shot.width > 200 and shot.height > 400
    keep = Path("/tmp/luciddream-krita-last") / krita_host.id
    keep.mkdir(parents=True, exist_ok=True)
    shutil.copy(out / "docker-loop.png", keep / "docker-loop.png")
