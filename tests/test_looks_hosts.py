"""The look browser in the real editors (issue 18): choosing a thumbnail puts that target into the dream settings
and a dream with it runs. One editor start per version does every check. The atlas slice is drawn first in this
process into a cache the editor's worker then reads, as a user's is after the first build (drawing the whole atlas
takes minutes: engine tests cover the drawing, tests/test_looks.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from test_krita_host import (installed_home, krita_host, krita_launch, krita_template,  # noqa: F401
                             launch_with_driver)

ROOT = Path(__file__).resolve().parents[1]
SLICE = ["block1:0,1"]   # the driver's looks_steps.SLICE


@pytest.fixture(scope="session")
def looks_cache(tmp_path_factory):
    """A cache folder holding the slice, made with the engine's real recipe, in the environment editors inherit."""
    from luciddream import atlas

    folder = tmp_path_factory.mktemp("looks-cache")
    patch = pytest.MonkeyPatch()
    patch.setenv("LUCIDDREAM_CACHE", str(folder))
    atlas.build("lite0", SLICE)
    yield folder
    patch.undo()


def test_krita_looks_page_adds_the_clicked_channel_and_a_dream_with_it_runs(krita_host, installed_home,  # noqa: F811
                                                                            looks_cache, tmp_path_factory):
    krita_launch.add_driver(installed_home)
    out = tmp_path_factory.mktemp("krita-looks")
    report, code = launch_with_driver(krita_host, installed_home, out, {"steps": [
        "check_registration", "loop_setup", "looks_browse", "looks_dream", "looks_screenshot"]})
    assert report.get("error") is None and code == 0, report.get("error")
    browse = report["looks_browse"]
    assert browse["visible"] and browse["items"] == ["block1", "block1:0", "block1:1"], browse
    assert browse["tips"][0].startswith("block1 (classic look)")
    assert browse["tips"][2].startswith("block1 channel 1: ") and "%" in browse["tips"][2]
    assert browse["targets"] == ["layer:block1:1=0.7"], browse
    dreamed = report["looks_dream"]
    assert dreamed["outcome"] == "done", dreamed
    assert len(dreamed["new_layers"]) == 1 and "block1 ch 1" in dreamed["new_layers"][0], dreamed
    assert report["looks_screenshot"]
    print(f"{krita_host.id}: cached looks page shown in {browse['cached_s']} s (first ask {browse['first_s']} s); "
          f"screenshot {out / 'docker-looks.png'}")
