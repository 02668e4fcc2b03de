"""The look browser in the real editors (issue 18): choosing a thumbnail puts that target into the dream settings
and a dream with it runs. One editor start per version does every check (Krita's is the one launch all Krita files
share, tests/host_fixtures.py). The atlas slice is drawn first in this process into a cache the editor's worker then
reads, as a user's is after the first build (drawing the whole atlas takes minutes: engine tests cover the drawing,
tests/test_looks.py)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from test_gimp_host import finish, job, run_gimp   # the fixtures (gimp_root, krita_run ...): conftest.py

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.krita
def test_krita_looks_page_adds_the_clicked_channel_and_a_dream_with_it_runs(krita_host, krita_run):
    """The look browser's steps in the one Krita launch (tests/host_fixtures.py: looks_browse, looks_dream and
    looks_screenshot on a document of their own, the slice drawn into looks_cache first)."""
    out, report, code = krita_run
    assert report.get("error") is None and code == 0, report.get("error")
    browse = report["looks_browse"]
    assert browse["visible"] and browse["items"] == ["block1", "block1:0", "block1:1"], browse
    assert browse["tips"][0].startswith("block1 (classic look)")
    assert browse["tips"][2].startswith("block1 channel 1: ") and "%" in browse["tips"][2]
    assert browse["targets"] == ["layer:block1:1=0.7"], browse
    dreamed = report["looks_dream"]
    assert dreamed["outcome"] == "done", dreamed
    assert len(dreamed["new_layers"]) == 1 and "block1 ch 1" in dreamed["new_layers"][0], dreamed
    waited = report["looks_wait"]   # asked while a dream ran: the page waits, then shows the slice
    assert waited["dream"] == "done" and waited["asked_while"], waited
    assert waited["paused"] >= 1 and any("paused while the engine dreams" in line for line in waited["said"]), waited
    assert waited["items"] == ["block1", "block1:0", "block1:1"], waited
    assert report["looks_screenshot"]
    print(f"{krita_host.id}: cached looks page shown in {browse['cached_s']} s (first ask {browse['first_s']} s); "
          f"screenshot {out / 'docker-looks.png'}")


@pytest.fixture(scope="session")
def venv_looks_cache():
    """The slice in the engine venv's own cache folder: GIMP starts its plug-ins with an empty environment, so
    its worker finds the atlas where a user's would be (cache.cache_folder without $LUCIDDREAM_CACHE)."""
    env = {k: v for k, v in os.environ.items() if k != "LUCIDDREAM_CACHE"}
    code = "from luciddream import atlas; print(atlas.build('lite0', ['block3']).folder)"   # the textures preset
    done = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-c", code], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return Path(done.stdout.strip())


@pytest.mark.gimp
def test_gimp_explore_looks_fills_targets_and_a_dream_with_it_runs(gimp_root, gimp_home, venv_looks_cache,
                                                                   tmp_path):
    """The real dialog: Alt+X opens the browser on the Layer look's page (textures: block3, its classic look
    first, then its 8 channels), Space chooses the focused first look (the layer); Alt+X again and a mouse click
    on the second thumbnail chooses the layer's first channel. The Targets field holds both, and OK dreams with
    them (the new layer's settings record names them)."""
    import json

    channel = json.loads((venv_looks_cache / "block3.json").read_text())["ranking"][0]
    last = ('(targets "")\n(preset "textures")\n(octaves 1)\n(steps 2)\n(tile 0)\n(seed 5)\n(strength 1.5)\n'
            '(output "new-layer")\n')
    spec = job("rgb", "u8", alpha=True, image=(160, 120), selection=(20, 20, 100, 80), run_mode="INTERACTIVE",
               last_values=last)
    spec["loop_steps"] = "looks,shot,pick,looks,pickchannel,ok"   # shot: the browser open, for docs/hosts
    report = finish(run_gimp(gimp_root, gimp_home, tmp_path, spec, gui=True, driver="gimp_gui_loop.sh",
                             timeout=400), tmp_path, timeout=450)
    log = (tmp_path / "gimp.log").read_text()
    shown = [line for line in log.splitlines() if "luciddream: looks shown" in line]
    assert len(shown) == 2 and all("looks shown: 9 in" in line for line in shown), log[-3000:]
    assert "luciddream: looks chose layer:block3 (weight 1): targets now 'layer:block3'" in log, log[-3000:]
    assert (f"luciddream: looks chose layer:block3:{channel} (weight 1): targets now "
            f"'layer:block3, layer:block3:{channel}'") in log, log[-3000:]
    assert report["status"] == "success", report.get("message") or log[-3000:]
    assert report["layers_after"] == report["layers_before"] + 1
    assert f"layer:block3:{channel}" in (report.get("new_record") or ""), report.get("new_record")
    print(f"GIMP: {shown[0].split('luciddream: ')[1]}, cached {shown[1].split('luciddream: ')[1]}; "
          f"screen {tmp_path / 'screen.xwd'}")
