"""install.py against temporary homes laid out like each host's real folders (native, Flatpak, GIMP 3.2)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL = ROOT / "engine" / "luciddream" / "protocol"
VENV = Path(sys.prefix)  # the environment running the tests already holds the engine


def install(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_")}
    env.update(HOME=str(home), PATH=str(home / "no-bin"))  # no host executables: only the folders decide
    return subprocess.run([sys.executable, str(ROOT / "install.py"), "--venv", str(VENV), *args], env=env,
                          capture_output=True, text=True, timeout=600)


def snapshot(home: Path) -> dict[str, bytes]:
    return {str(p.relative_to(home)): (p.read_bytes() if p.is_file() else b"<dir>")
            for p in sorted(home.rglob("*"))}


def same_protocol(copy: Path) -> bool:
    """The folder holds exactly the protocol package's source files, byte for byte."""
    files = sorted(p.name for p in PROTOCOL.glob("*.py"))
    return sorted(p.name for p in copy.iterdir()) == files and all(
        (copy / name).read_bytes() == (PROTOCOL / name).read_bytes() for name in files)


# What each version's first start makes (checked in the real programs: GIMP 3.0.4 and 3.2.6, Krita 5.1.5, 5.2.9 and
# 6.0.4.1 all keep kritarc and pykrita in the same places; tests/test_gimp_host.py checks GIMP's in its roots).
LAYOUTS = {
    "native": (".config/GIMP/3.0", ".local/share/krita", ".config/kritarc"),
    "gimp32": (".config/GIMP/3.2", ".local/share/krita", ".config/kritarc"),
    "flatpak": (".var/app/org.gimp.GIMP/config/GIMP/3.0", ".var/app/org.kde.krita/data/krita",
                ".var/app/org.kde.krita/config/kritarc"),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_install_twice_then_uninstall_exactly(tmp_path, layout):
    gimp, krita, kritarc = LAYOUTS[layout]
    (tmp_path / gimp).mkdir(parents=True)
    (tmp_path / krita).mkdir(parents=True)
    (tmp_path / kritarc).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / kritarc).write_text("[General]\nfoo=1\n\n[python]\nenable_other=true\n")
    before = snapshot(tmp_path)

    r = install(tmp_path, "--only", "gimp", "--only", "krita")
    assert r.returncode == 0, r.stderr
    plugin = tmp_path / gimp / "plug-ins" / "luciddream"
    assert os.access(plugin / "luciddream.py", os.X_OK)
    assert same_protocol(plugin / "protocol") and not (plugin / "protocol.py").exists()
    assert json.loads((plugin / "engine.json").read_text())["python"] == str(VENV / "bin" / "python")
    pykrita = tmp_path / krita / "pykrita"
    assert (pykrita / "luciddream.desktop").is_file()
    assert (pykrita / "luciddream" / "__init__.py").is_file()
    assert same_protocol(pykrita / "luciddream" / "protocol")
    rc = (tmp_path / kritarc).read_text()
    assert "enable_luciddream=true" in rc and "enable_other=true" in rc and "foo=1" in rc

    installed = snapshot(tmp_path)
    again = install(tmp_path, "--only", "gimp", "--only", "krita")
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stdout
    assert snapshot(tmp_path) == installed

    gone = install(tmp_path, "--uninstall")
    assert gone.returncode == 0, gone.stderr
    assert snapshot(tmp_path) == before


def test_dry_run_changes_nothing(tmp_path):
    (tmp_path / ".config/GIMP/3.0").mkdir(parents=True)
    before = snapshot(tmp_path)
    r = install(tmp_path, "--only", "gimp", "--dry-run")
    assert r.returncode == 0 and "would write" in r.stdout
    assert snapshot(tmp_path) == before


def test_host_not_found_says_how_to_point_at_it(tmp_path):
    r = install(tmp_path, "--only", "gimp")
    assert r.returncode == 2
    assert "GIMP 3 not found" in r.stderr and "--gimp-dir" in r.stderr
    assert r.stderr.count("\n") == 1
    r = install(tmp_path, "--only", "krita", "--krita-dir", str(tmp_path / "custom/pykrita"),
                "--kritarc", str(tmp_path / "custom/kritarc"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "custom/pykrita/luciddream/engine.json").is_file()
    assert "enable_luciddream=true" in (tmp_path / "custom/kritarc").read_text()


def test_engine_already_installed_is_left_alone(tmp_path):
    r = install(tmp_path, "--only", "engine")
    assert r.returncode == 0, r.stderr
    assert "engine: up to date" in r.stdout and "nothing to do" in r.stdout


def test_protocol_py_of_an_older_install_is_replaced_by_the_folder(tmp_path):
    """An older install put a single protocol.py beside each plug-in and listed it in its manifest: installing
    now removes it (the package folder replaces it), and uninstalling still leaves the home as it was."""
    (tmp_path / ".config/GIMP/3.0").mkdir(parents=True)
    before = snapshot(tmp_path)
    assert install(tmp_path, "--only", "gimp").returncode == 0
    plugin = tmp_path / ".config/GIMP/3.0/plug-ins/luciddream"
    stale = plugin / "protocol.py"
    stale.write_text('"""luciddream\'s wire protocol and its client, in one file."""\n')
    manifest_path = tmp_path / ".local/share/luciddream/install.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"][str(stale)] = "sha256 of the old file"
    manifest_path.write_text(json.dumps(manifest))

    r = install(tmp_path, "--only", "gimp")
    assert r.returncode == 0, r.stderr
    assert f"remove {stale}" in r.stdout and not stale.exists()
    assert same_protocol(plugin / "protocol")
    assert str(stale) not in json.loads(manifest_path.read_text())["files"]
    assert install(tmp_path, "--uninstall").returncode == 0
    assert snapshot(tmp_path) == before


def fake_gimp(home: Path, name: str, version_line: str) -> None:
    """An executable on the install's PATH that answers --version like GIMP (the real ones live in roots)."""
    bin_dir = home / "no-bin"
    bin_dir.mkdir(exist_ok=True)
    exe = bin_dir / name
    exe.write_text(f"#!/bin/sh\necho '{version_line}'\n")
    exe.chmod(0o755)


@pytest.mark.parametrize("name,version_line,folder", [
    ("gimp-3.2", "GNU Image Manipulation Program version 3.2.6", ".config/GIMP/3.2"),
    ("gimp-3.0", "GNU Image Manipulation Program version 3.0.4", ".config/GIMP/3.0"),
    ("gimp", "GNU Image Manipulation Program version 3.2.6", ".config/GIMP/3.2"),
    ("gimp-3", "GNU Image Manipulation Program version 3.0.4", ".config/GIMP/3.0"),
])
def test_gimp_never_started_gets_the_folder_of_its_version(tmp_path, name, version_line, folder):
    """No profile yet, only a GIMP on PATH: the plug-in goes where that version's first start looks (GIMP 3.2 reads
    GIMP/3.2/plug-ins; a 3.0 folder would work only by the accident of 3.2 copying an older profile)."""
    fake_gimp(tmp_path, name, version_line)
    r = install(tmp_path, "--only", "gimp")
    assert r.returncode == 0, r.stderr
    assert os.access(tmp_path / folder / "plug-ins" / "luciddream" / "luciddream.py", os.X_OK)
    assert [p.name for p in (tmp_path / ".config/GIMP").iterdir()] == [Path(folder).name]


def test_gimp_2_on_path_is_not_taken_for_gimp_3(tmp_path):
    fake_gimp(tmp_path, "gimp", "GNU Image Manipulation Program version 2.10.34")
    r = install(tmp_path, "--only", "gimp")
    assert r.returncode == 2 and "GIMP 3 not found" in r.stderr
    assert not (tmp_path / ".config/GIMP").exists()


def test_every_gimp_profile_gets_the_plugin(tmp_path):
    """GIMP 3.0 and 3.2 side by side each read only their own profile: both get the plug-in, uninstall takes both."""
    for version in ("3.0", "3.2"):
        (tmp_path / ".config/GIMP" / version).mkdir(parents=True)
    before = snapshot(tmp_path)
    r = install(tmp_path, "--only", "gimp")
    assert r.returncode == 0, r.stderr
    for version in ("3.0", "3.2"):
        assert (tmp_path / ".config/GIMP" / version / "plug-ins/luciddream/engine.json").is_file(), version
    assert install(tmp_path, "--uninstall").returncode == 0
    assert snapshot(tmp_path) == before
