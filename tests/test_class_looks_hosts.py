"""The class-look controls (look, instance size, class strength) in the real hosts: shown from the engine's offer,
and a class dream in the grow look runs through them. GIMP through tests/hosts/gimp_dream_batch.py (as in
test_gimp_host.py, with the same profile); Krita from the report of the one Krita launch (tests/host_fixtures.py).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from test_gimp_host import compare, finish, job, run_gimp   # the fixtures (gimp_root, krita_run ...): conftest.py

@pytest.mark.gimp
def test_gimp_shows_the_class_look_controls_and_dreams_a_grow_look(gimp_root: Path, gimp_home: str,
                                                                   tmp_path: Path) -> None:
    from luciddream.offer import describe

    offer = describe()
    spec = job("rgb", "u8", alpha=False, image=(160, 120), selection=(20, 16, 120, 90),
               args={"targets": "goldfish", "preset": "none", "look": "grow", "instance": 96,
                     "class-strength": 0.8, "steps": 4, "output": "this-layer"})
    report = finish(run_gimp(gimp_root, gimp_home, tmp_path, spec), tmp_path)
    assert "look_choices" in report, report.get("look_choices_error") or report.get("error")
    assert [nick for nick, _ in report["look_choices"]] == offer["looks"]
    assert report["look_default"] == offer["defaults"]["look"]
    for name, key in (("instance", "instance"), ("class-strength", "class_strength")):
        low, high, default = report[f"{name}_spec"]
        assert (low, high) == tuple(offer["ranges"][key]) and default == offer["defaults"][key], name
    assert report["status"] == "success", report.get("message")
    counts = compare(tmp_path, spec)
    assert counts["outside"] == 0 and counts["inside"] > 0.5 * counts["selected"], counts


@pytest.mark.krita
def test_krita_docker_shows_the_class_look_controls_from_the_offer(krita_run) -> None:
    from luciddream.offer import describe

    offer = describe()
    _, report, _ = krita_run
    assert "class_looks" in report, report.get("error")
    shown = report["class_looks"]
    assert shown["looks"] == offer["looks"] and shown["look"] == offer["defaults"]["look"]
    assert shown["instance"] == [*offer["ranges"]["instance"], offer["defaults"]["instance"]]
    assert shown["class_strength"] == [*offer["ranges"]["class_strength"], offer["defaults"]["class_strength"]]
