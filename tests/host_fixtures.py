"""The real editors' session fixtures, shared by every host test file (tests/conftest.py loads them).

Why here and not in test_gimp_host.py / test_krita_host.py: pytest gives a fixture imported into another test
module a definition of its own there, so each file that imported them started its own GIMP profile and its own
Krita (15-23 s a launch, per version). Defined once here, a version's GIMP profile and its one Krita launch serve
all the files. Helpers that are no fixtures (run_gimp, job, compare, ...) stay in the test files.

Krita: one launch per version (`krita_run`) runs every docker scenario the files check, in this order: the docker's
first start (registration, presets, the class-look controls, the defaults it shows), the refusals, cancel, a dream
through the menu action, a click in the Layers docker, the look browser (issue 18, on a document of its own), the
artist's loop (issue 17, on another), and last the settings set through the widgets; `krita_restart` starts Krita
once more in the same HOME and reads them back.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "hosts"))
import krita_launch  # noqa: E402
from roots import GIMP_HOSTS, KRITA_HOSTS, GimpHost, KritaHost  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)            # the project's environment: GIMP's engine.json points at its Python
KRITA_VENV = REPO / ".venv"        # and Krita's (as test_krita_host.py checks)


def _unusable(message: str) -> None:
    """Skip, or under CI (.ci/run sets CI=1) fail: CI must not skip host tests."""
    if os.environ.get("CI"):
        pytest.fail(message + " (CI must not skip host tests)")
    pytest.skip(message)


# ------------------------------------------------------------------------------------------------------- GIMP

@pytest.fixture(scope="session", params=GIMP_HOSTS, ids=[host.id for host in GIMP_HOSTS])
def gimp_host(request) -> GimpHost:
    """Each GIMP version in turn; every GIMP test depends on it, so each runs once per version."""
    host = request.param
    message = host.missing()
    if message:
        _unusable(message)
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        _unusable("the GIMP host tests need root and unshare (chroot with bind mounts)")
    return host


@pytest.fixture(scope="session")
def gimp_root(gimp_host: GimpHost) -> Path:
    return gimp_host.root


@dataclass
class Profile:
    """A GIMP profile inside the root: `rel` is its path as seen inside, `install_home` the HOME install.py used."""

    host: GimpHost
    rel: str
    install_home: Path

    @property
    def root(self) -> Path:
        return self.host.root

    @property
    def plugins(self) -> Path:
        """Where the version's first start puts its profile: ~/.config/GIMP/3.0 or ~/.config/GIMP/3.2."""
        return self.root / self.rel.lstrip("/") / f".config/GIMP/{self.host.version}/plug-ins"

    def install(self, *extra: str) -> None:
        """The plug-in as a user gets it: install.py (a second run with other options rewrites engine.json)."""
        subprocess.run([sys.executable, str(REPO / "install.py"), "--only", "gimp", "--venv", str(VENV),
                        "--gimp-dir", str(self.plugins), *extra], check=True,
                       env=dict(os.environ, HOME=str(self.install_home)), capture_output=True, text=True)


@pytest.fixture(scope="session")
def profile(gimp_host: GimpHost, tmp_path_factory: pytest.TempPathFactory):
    """One profile for the whole session, headless and windowed runs alike: a fresh one costs GIMP ~10 s of
    plug-in queries. No welcome dialog in the window; install.py keeps its manifest in a throwaway HOME."""
    rel = f"/root/luciddream-tests/{uuid.uuid4().hex[:10]}"
    prof = Profile(gimp_host, rel, tmp_path_factory.mktemp("install-home"))
    prof.plugins.mkdir(parents=True)
    (prof.plugins.parent / "gimprc").write_text("(show-welcome-dialog no)\n")
    prof.install()
    yield prof
    shutil.rmtree(gimp_host.root / rel.lstrip("/"), ignore_errors=True)   # mounts never reach inside a profile


@pytest.fixture
def gimp_home(profile: Profile) -> str:
    return profile.rel


# ------------------------------------------------------------------------------------------------------ Krita

@pytest.fixture(scope="session", params=KRITA_HOSTS, ids=[host.id for host in KRITA_HOSTS])
def krita_host(request) -> KritaHost:
    """Each Krita in turn; every Krita test depends on it, so each runs once per version."""
    host = request.param
    message = host.missing()
    if message:
        _unusable(message)
    if host.root is not None and (os.geteuid() != 0 or shutil.which("unshare") is None):
        _unusable("the Krita root tests need root and unshare (chroot with bind mounts)")
    return host


@pytest.fixture(scope="session")
def krita_template(krita_host: KritaHost) -> Path:
    version = krita_launch.krita_version(krita_host.root)
    cache = Path(f"/tmp/luciddream-krita-template-{version}-{os.getuid()}")
    return krita_launch.template_home(cache, krita_host.root)


@pytest.fixture(scope="session")
def installed_home(krita_template):
    """A fresh HOME with the warm profile and the plug-in installed the user's way (install.py)."""
    home = krita_launch.new_home(krita_template)
    result = krita_launch.install_plugin(home, KRITA_VENV)
    assert result.returncode == 0, f"install.py failed:\n{result.stdout}\n{result.stderr}"
    yield home
    shutil.rmtree(home, ignore_errors=True)


def launch_with_driver(host: KritaHost, home: Path, out: Path, scenario: Optional[dict] = None,
                       timeout: int = 300) -> Tuple[dict, int]:
    """One Krita launch driven by the test driver; returns (report, exit status)."""
    started = time.time()
    result = krita_launch.launch(home, out, scenario, timeout=timeout, root=host.root)
    report_file = out / "report.json"
    if not report_file.exists():
        logs = {name: (out / name).read_text(errors="replace")[-1500:] for name in
                ("krita.stderr", "xvfb.stderr", "driver.log") if (out / name).exists()}
        pytest.fail(f"Krita ({host.id}) exited with {result.returncode} and no report; the ends of its logs "
                    f"(pytest removes {out} after a few runs):\n" + "\n".join(f"--- {k}\n{v}" for k, v in logs.items()))
    report = json.loads(report_file.read_text(encoding="utf-8"))
    report["launch_s"] = round(time.time() - started, 1)
    return report, result.returncode


LOOKS_SLICE = ["block1:0,1"]   # the driver's looks_steps.SLICE

# Every scenario of the one launch (tests/hosts/krita_driver/luciddream_testdriver: driver.py, click_steps.py,
# looks_steps.py, loop.py). loop_setup makes a fresh document for the look browser and again for the loop, and the
# loop starts with a new worker, so each part starts as it did in a launch of its own.
KRITA_STEPS = ["check_registration", "first_start_values", "scenario_refused", "scenario_cancel", "scenario_dream",
               "scenario_click_layer", "screenshot",
               "loop_setup", "looks_browse", "looks_dream", "looks_wait", "looks_screenshot", "looks_close",
               "fresh_worker", "loop_setup", "loop_preview", "loop_variations", "loop_again", "loop_guide",
               "loop_empty_selection", "loop_killed_preview", "loop_closed_document", "loop_test_engine",
               "loop_save_reopen", "loop_screenshot", "persist_set"]


def persisted_values(offer: dict) -> dict:
    """What the last step sets through the docker's widgets (each differs from the engine's default)."""
    return {"steps": 37, "step_size": 2.25, "octaves": 5, "octave_scale": 1.75, "tile": 320, "feather": 9,
            "seed": 4242, "visible": True, "model": offer["models"][-1], "preset": offer["presets"][-1]["name"],
            "look": offer["looks"][-1], "instance": 300, "class_strength": 0.45, "variations": 6,
            "full_after_preview": True, "advanced": True}


@pytest.fixture(scope="session")
def looks_cache(tmp_path_factory):
    """A cache folder holding the look browser's slice, made with the engine's real recipe, in the environment
    the editors inherit (the Krita launch's worker reads it, as a user's does after the first build)."""
    from luciddream import atlas

    folder = tmp_path_factory.mktemp("looks-cache")
    patch = pytest.MonkeyPatch()
    patch.setenv("LUCIDDREAM_CACHE", str(folder))
    atlas.build("lite0", LOOKS_SLICE)
    yield folder
    patch.undo()


@pytest.fixture(scope="session")
def krita_run(krita_host, installed_home, looks_cache, tmp_path_factory):
    """Launch Krita once with the driver through KRITA_STEPS; returns (output folder, report, exit status)."""
    from luciddream.offer import describe

    krita_launch.add_driver(installed_home)
    out = tmp_path_factory.mktemp("krita-run")
    scenario = {"steps": KRITA_STEPS, "persist": persisted_values(describe()), "timeout_s": 540}
    report, code = launch_with_driver(krita_host, installed_home, out, scenario, timeout=600)
    return out, report, code


@pytest.fixture(scope="session")
def krita_restart(krita_host, installed_home, krita_run, tmp_path_factory):
    """Krita started again in krita_run's HOME, showing the docker: (kritarc as the first launch left it, report,
    exit status)."""
    kritarc = (installed_home / ".config" / "kritarc").read_text()
    out = tmp_path_factory.mktemp("krita-restart")
    report, code = launch_with_driver(krita_host, installed_home, out, {"steps": ["check_registration",
                                                                                  "persist_read"]})
    return kritarc, report, code
