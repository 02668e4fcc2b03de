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


# ------------------------------------------------------------------------------- quiet steps and the torch build
def _installer():
    import importlib.util

    spec = importlib.util.spec_from_file_location("luciddream_installer", ROOT / "install.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_a_step_is_one_line_and_pip_output_goes_to_the_log(tmp_path, monkeypatch, capfd):
    inst = _installer()
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    chatty = [sys.executable, "-c", "for i in range(80): print('Collecting package', i)"]
    inst._run(chatty, "installing torch")
    out = capfd.readouterr().out
    assert out == "  installing torch … done (0 s)\n" or (out.count("\n") == 1 and " done (" in out), out
    assert inst.log_path().read_text().count("\nCollecting package") == 80
    failing = [sys.executable, "-c", "print('ERROR: No matching distribution found for torch'); raise SystemExit(1)"]
    with pytest.raises(inst.InstallError) as info:
        inst._run(failing, "installing torch")
    assert str(inst.log_path()) in str(info.value) and "\n" not in str(info.value)
    assert "No matching distribution" in inst.log_path().read_text()
    inst.VERBOSE = True  # --verbose: pip's own output, as it comes
    inst._run(chatty, "installing torch")
    assert capfd.readouterr().out.count("\nCollecting package") >= 79


def _fake_python(tmp_path: Path) -> tuple[Path, Path]:
    """A Python without torch that records the pip commands it is given (and pretends they worked)."""
    calls = tmp_path / "calls.txt"
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/sh\nif [ \"$1\" = \"-c\" ]; then exit 1; fi\necho \"$@\" >> {calls}\n"
                    f"case \"$*\" in *--no-index*) exit 1;; esac\nexit 0\n")
    fake.chmod(0o755)
    return fake, calls


@pytest.mark.parametrize("found,index,line", [
    ("amd", "whl/rocm", "AMD GPU, the ROCm build"),
    ("nvidia", None, "NVIDIA GPU, the CUDA build"),
    ("none", "whl/cpu", "no GPU, the CPU build"),
])
def test_the_torch_build_follows_the_gpu_found(tmp_path, monkeypatch, capfd, found, index, line):
    inst = _installer()
    monkeypatch.setattr(inst, "SYSTEM", "Linux")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("LUCIDDREAM_GPU", raising=False)
    monkeypatch.setattr(inst, "_has_nvidia", lambda: found == "nvidia")
    monkeypatch.setattr(inst, "_has_amd", lambda: "/dev/kfd" if found == "amd" else None)
    python, calls = _fake_python(tmp_path)
    inst.install_torch(python, None)
    said = capfd.readouterr().out
    assert line in said and said.count("  torch: ") == 1, said
    pip = calls.read_text().splitlines()[-1]
    assert (index in pip) if index else ("--index-url" not in pip), pip
    monkeypatch.setenv("LUCIDDREAM_GPU", "none")  # overridable: the CPU build even with a GPU found
    inst.install_torch(python, None)
    assert "whl/cpu" in calls.read_text().splitlines()[-1]


def test_amd_gpu_is_found_from_kfd_or_rocm_tools(tmp_path, monkeypatch):
    inst = _installer()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert inst._has_amd(tmp_path / "kfd") is None
    (tmp_path / "kfd").write_text("")
    assert inst._has_amd(tmp_path / "kfd") == str(tmp_path / "kfd")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "rocminfo").write_text("#!/bin/sh\nexit 0\n")
    (tmp_path / "bin" / "rocminfo").chmod(0o755)
    assert inst._has_amd(tmp_path / "nothing") == "rocminfo"
