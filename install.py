#!/usr/bin/env python3
"""Set up luciddream: the engine in its own virtual environment, the plug-ins in GIMP's and Krita's folders.

    python3 install.py                 # everything that is found
    python3 install.py --only krita    # just one part; --dry-run shows what would happen; --uninstall undoes it

Standard library only, any Python >= 3.9: this runs before anything else is installed. Every file it writes is
recorded in a manifest, so a second run changes nothing (and says so) and --uninstall removes exactly what was
installed.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parent
PROTOCOL = ROOT / "engine" / "luciddream" / "protocol"  # the wire protocol package; copied as a folder beside each
GIMP_SRC = ROOT / "gimp_plugin" / "luciddream"
KIT = ROOT / "kit"  # the adapter kit both plug-ins import; copied as a folder beside each
KRITA_SRC = ROOT / "krita_plugin"
PLUGIN = "luciddream"
PARTS = ("engine", "gimp", "krita")
SYSTEM = platform.system()  # Linux, Darwin, Windows


class InstallError(Exception):
    """Something the user can fix; printed as one sentence, exit status 2."""


# ----------------------------------------------------------------------------------------------- where things go
def home() -> Path:
    return Path(os.environ.get("HOME") or os.environ.get("USERPROFILE") or Path.home())


def data_dir() -> Path:
    """Per-user data folder: the engine's venv and the install manifest live here."""
    if SYSTEM == "Windows":
        return Path(os.environ.get("LOCALAPPDATA") or home() / "AppData" / "Local") / "luciddream"
    if SYSTEM == "Darwin":
        return home() / "Library" / "Application Support" / "luciddream"
    return Path(os.environ.get("XDG_DATA_HOME") or home() / ".local" / "share") / "luciddream"


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if SYSTEM == "Windows" else "bin/python")


def venv_script(venv: Path) -> Path:
    return venv / ("Scripts/luciddream.exe" if SYSTEM == "Windows" else "bin/luciddream")


def _config_home() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or home() / ".config")


def _xdg_data() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or home() / ".local" / "share")


def gimp_profile_roots() -> List[Path]:
    """Where GIMP keeps its per-version profiles ("…/GIMP"), the native one first, then Flatpak and Snap."""
    if SYSTEM == "Windows":
        return [Path(os.environ.get("APPDATA") or home() / "AppData" / "Roaming") / "GIMP"]
    if SYSTEM == "Darwin":
        return [home() / "Library" / "Application Support" / "GIMP"]
    return [_config_home() / "GIMP", home() / ".var" / "app" / "org.gimp.GIMP" / "config" / "GIMP",
            home() / "snap" / "gimp" / "current" / ".config" / "GIMP"]


def _version_key(name: str) -> Tuple[int, ...]:
    return tuple(int(part) for part in name.split("."))


def gimp_candidates() -> List[Path]:
    """GIMP 3.x profile folders: one per version a first start made ("GIMP/3.0", "GIMP/3.2"; each version reads
    only its own), native, Flatpak and Snap, oldest version first."""
    found = []
    for root in gimp_profile_roots():
        names = [p.name for p in root.glob("3.*") if p.is_dir() and re.fullmatch(r"3\.\d+", p.name)]
        found += [root / name for name in sorted(names, key=_version_key)]
    return found


def gimp_executable() -> Optional[Tuple[str, str]]:
    """(path, profile version) of a GIMP 3 on PATH: gimp-3.2 says its version in its name; plain `gimp` or
    `gimp-3` says it in --version ("… version 3.2.6" keeps its profile in GIMP/3.2)."""
    for name in ("gimp-3.2", "gimp-3.0", "gimp-3", "gimp"):
        path = shutil.which(name)
        if not path:
            continue
        named = re.fullmatch(r"gimp-(3\.\d+)", name)
        version = named.group(1) if named else _gimp_version(path)
        if version:
            return path, version
    return None


def _gimp_version(path: str) -> Optional[str]:
    """"3.2" when `path --version` names a GIMP 3.2.x, None for GIMP 2 or anything that does not answer."""
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"\b(3\.\d+)\.\d+", out)
    return found.group(1) if found else None


@dataclass
class KritaHome:
    pykrita: Path
    kritarc: Path
    kind: str


def krita_candidates() -> List[KritaHome]:
    """Krita resource folders: native and AppImage share one; Flatpak has its own."""
    if SYSTEM == "Windows":
        appdata = Path(os.environ.get("APPDATA") or home() / "AppData" / "Roaming")
        local = Path(os.environ.get("LOCALAPPDATA") or home() / "AppData" / "Local")
        homes = [KritaHome(appdata / "krita" / "pykrita", local / "kritarc", "native")]
    elif SYSTEM == "Darwin":
        homes = [KritaHome(home() / "Library" / "Application Support" / "krita" / "pykrita",
                           home() / "Library" / "Preferences" / "kritarc", "native")]
    else:
        flat = home() / ".var" / "app" / "org.kde.krita"
        homes = [KritaHome(_xdg_data() / "krita" / "pykrita", _config_home() / "kritarc", "native or AppImage"),
                 KritaHome(flat / "data" / "krita" / "pykrita", flat / "config" / "kritarc", "Flatpak")]
    return homes


def krita_present(k: KritaHome) -> bool:
    if k.pykrita.parent.is_dir() or k.kritarc.is_file():
        return True
    if k.kind.startswith("native"):
        return shutil.which("krita") is not None or any(home().glob("*/krita*.appimage")) or any(
            home().glob("*/krita*.AppImage"))
    return False


# -------------------------------------------------------------------------------------------------- the manifest
@dataclass
class Manifest:
    """What this installer put on disk, so it can say "nothing to do" and uninstall exactly that."""

    path: Path
    files: Dict[str, str] = field(default_factory=dict)      # path -> sha256 written
    folders: List[str] = field(default_factory=list)         # folders this installer created
    kritarc: Dict[str, str] = field(default_factory=dict)    # kritarc path -> "created" | "added" | "present"
    venvs: List[str] = field(default_factory=list)           # venvs this installer created

    @classmethod
    def load(cls, path: Path) -> "Manifest":
        if not path.is_file():
            return cls(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InstallError(f"{path} is unreadable ({exc}); delete it and run the installer again.") from None
        return cls(path, dict(raw.get("files", {})), list(raw.get("folders", [])), dict(raw.get("kritarc", {})),
                   list(raw.get("venvs", [])))

    def make_folder(self, folder: Path) -> None:
        """mkdir -p, remembering each folder it creates so uninstall can take it away again."""
        missing = []
        probe = folder
        while not probe.exists():
            missing.append(probe)
            probe = probe.parent
        folder.mkdir(parents=True, exist_ok=True)
        for f in missing:
            if str(f) not in self.folders:
                self.folders.append(str(f))

    def save(self) -> None:
        self.make_folder(self.path.parent)
        data = {"files": self.files, "folders": self.folders, "kritarc": self.kritarc, "venvs": self.venvs}
        self.path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Report:
    dry_run: bool
    changed: int = 0

    def did(self, message: str) -> None:
        self.changed += 1
        print(("would " if self.dry_run else "") + message)

    def same(self, message: str) -> None:
        print(message)


def _check_writable(folder: Path, what: str) -> None:
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        raise InstallError(f"{folder} is not writable, so the {what} cannot be installed there; fix its "
                           f"permissions or point --{what.split()[0]}-dir at a folder you own.")


def put_file(dest: Path, data: bytes, executable: bool, manifest: Manifest, report: Report) -> None:
    """Write a file unless it already holds these bytes; record it either way."""
    current = dest.read_bytes() if dest.is_file() else None
    mode_ok = not executable or (dest.exists() and os.access(dest, os.X_OK))
    if current == data and mode_ok:
        manifest.files[str(dest)] = _sha(data)
        return
    report.did(f"{'update' if current is not None else 'write'} {dest}")
    if report.dry_run:
        return
    manifest.make_folder(dest.parent)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, 0o755 if executable else 0o644)
    os.replace(tmp, dest)
    manifest.files[str(dest)] = _sha(data)


def engine_config(python: Path, url: Optional[str], token: Optional[str], offer: Optional[dict] = None,
                  fingerprint: Optional[str] = None) -> bytes:
    """What the plug-ins read to reach the engine: a Python to spawn `luciddream worker` with, or a server (and
    the SHA-256 fingerprint of its self-signed certificate); and the engine's offer (presets, ranges), which a
    plug-in needs before any worker runs (GIMP registers its arguments at start-up)."""
    config = {"python": str(python), "url": url, "token": token, "offer": offer, "fingerprint": fingerprint}
    return (json.dumps(config, indent=1) + "\n").encode()


def engine_offer(python: Path) -> Optional[dict]:
    """The installed engine's `luciddream offer`, or None (with a note) when it cannot be run."""
    if not python.exists():
        return None
    try:
        out = subprocess.run([str(python), "-m", "luciddream", "offer"], capture_output=True, text=True,
                             timeout=300)
        if out.returncode == 0:
            offer = json.loads(out.stdout)
            if isinstance(offer, dict):
                return offer
        problem = (out.stderr.strip().splitlines() or [f"exit status {out.returncode}"])[-1]
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        problem = str(exc)
    print(f"note: the engine's offer could not be read ({problem}); the plug-ins will ask to run install.py "
          f"again")
    return None


def _tree(src: Path) -> List[Path]:
    """The files of a source folder to copy; copies of the kit or the protocol made there (tests, by hand) are not
    sources."""
    return sorted(p for p in src.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                  and not {"kit", "protocol"} & set(p.relative_to(src).parts[:2])
                  and p.suffix not in (".pyc", ".pyo") and p.name != "protocol.py")


# ----------------------------------------------------------------------------------------------------- adapters
def put_kit(dest: Path, manifest: Manifest, report: Report) -> None:
    """The adapter kit as a folder beside a plug-in (one source: kit/ in the checkout)."""
    for src in _tree(KIT):
        put_file(dest / src.relative_to(KIT), src.read_bytes(), False, manifest, report)


def put_protocol(plugin: Path, manifest: Manifest, report: Report) -> None:
    """The protocol package as a folder beside a plug-in (one source: engine/luciddream/protocol/). The single
    protocol.py an older install put there goes, so that nothing stale is left to import."""
    for src in _tree(PROTOCOL):
        put_file(plugin / "protocol" / src.relative_to(PROTOCOL), src.read_bytes(), False, manifest, report)
    stale = plugin / "protocol.py"
    if stale.is_file() and (str(stale) in manifest.files or
                            stale.read_bytes().startswith(b'"""luciddream\'s wire protocol')):
        report.did(f"remove {stale} (the protocol is a folder now)")
        if not report.dry_run:
            stale.unlink()
            manifest.files.pop(str(stale), None)


def install_gimp(plugins: Path, config: bytes, manifest: Manifest, report: Report) -> None:
    if not (GIMP_SRC / f"{PLUGIN}.py").is_file():
        raise InstallError(f"{GIMP_SRC / (PLUGIN + '.py')} is missing: run the installer from a complete checkout.")
    _check_writable(plugins, "gimp plug-in")
    dest = plugins / PLUGIN
    before = report.changed
    for src in _tree(GIMP_SRC):
        rel = src.relative_to(GIMP_SRC)
        put_file(dest / rel, src.read_bytes(), rel.name == f"{PLUGIN}.py", manifest, report)
    put_protocol(dest, manifest, report)
    put_kit(dest / "kit", manifest, report)
    changed = report.changed
    put_file(dest / "engine.json", config, False, manifest, report)
    main = dest / f"{PLUGIN}.py"
    if report.changed != changed and not report.dry_run and main.is_file():
        # GIMP registers the arguments (the offer's presets and ranges) again only for a plug-in file it sees change
        os.utime(main)
    if report.changed == before:
        report.same(f"gimp: up to date in {dest}")
    else:
        print(f"gimp: plug-in in {dest} (Filters › Artistic › Lucid Dream…; restart GIMP)")


def install_krita(k: KritaHome, config: bytes, manifest: Manifest, report: Report) -> None:
    if not (KRITA_SRC / f"{PLUGIN}.desktop").is_file():
        raise InstallError(f"{KRITA_SRC / (PLUGIN + '.desktop')} is missing: run the installer from a complete "
                           f"checkout.")
    _check_writable(k.pykrita, "krita plug-in")
    before = report.changed
    for src in _tree(KRITA_SRC):
        rel = src.relative_to(KRITA_SRC)
        put_file(k.pykrita / rel, src.read_bytes(), False, manifest, report)
    put_protocol(k.pykrita / PLUGIN, manifest, report)
    put_kit(k.pykrita / PLUGIN / "kit", manifest, report)
    put_file(k.pykrita / PLUGIN / "engine.json", config, False, manifest, report)
    enable_in_kritarc(k.kritarc, manifest, report)
    if report.changed == before:
        report.same(f"krita: up to date in {k.pykrita}")
    else:
        print(f"krita: plug-in in {k.pykrita} (Settings › Dockers › Lucid Dream; restart Krita)")


def enable_in_kritarc(path: Path, manifest: Manifest, report: Report) -> None:
    """Krita silently ignores a Python plug-in unless kritarc's [python] group says enable_NAME=true."""
    key = f"enable_{PLUGIN}"
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    out, in_python, seen, done = [], False, False, False
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            if in_python and not done:
                out.append(f"{key}=true")
                done = True
            in_python = stripped == "[python]"
            seen = seen or in_python
        elif in_python and stripped.split("=", 1)[0].strip() == key:
            if stripped.split("=", 1)[-1].strip().lower() == "true":
                manifest.kritarc.setdefault(str(path), "present")
                return
            line, done = f"{key}=true", True
        out.append(line)
    if in_python and not done:
        out.append(f"{key}=true")
    if not seen:
        out += ["", "[python]", f"{key}=true"] if out else ["[python]", f"{key}=true"]
    report.did(f"enable the plug-in in {path}")
    manifest.kritarc[str(path)] = "added" if path.is_file() else "created"
    if not report.dry_run:
        manifest.make_folder(path.parent)
        path.write_text("\n".join(out) + "\n", encoding="utf-8")


def disable_in_kritarc(path: Path, remove_if_empty: bool = False) -> None:
    """Take our line out again; a kritarc we created and Krita never filled goes entirely."""
    if not path.is_file():
        return
    key = f"enable_{PLUGIN}="
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if not line.strip().replace(" ", "").startswith(key)]
    if remove_if_empty and all(line.strip() in ("", "[python]") for line in kept):
        path.unlink()
    elif kept != lines:
        path.write_text("\n".join(kept) + "\n", encoding="utf-8")


# ------------------------------------------------------------------------------------------------------- engine
VERBOSE = False  # --verbose: show pip's whole output instead of one line per step
TICK_S = 10.0    # without a terminal, a dot this often shows pip is still working


def log_path() -> Path:
    """Where pip's full output goes (each step appends its command and output); printed when a step fails."""
    return data_dir() / "install.log"


def _run(cmd: List[str], what: str) -> None:
    """One step: a line saying what, a progress indication while it runs, its whole output in the log file."""
    if VERBOSE:
        print(f"  $ {' '.join(cmd)}")
        result = subprocess.run(cmd)
        if result.returncode != 0:
            raise InstallError(f"{what} failed (exit {result.returncode}); the output above says why — check the "
                               f"network or proxy (pip honours HTTPS_PROXY), then run the installer again.")
        return
    log = log_path()
    log.parent.mkdir(parents=True, exist_ok=True)
    tty = sys.stdout.isatty()
    start = time.monotonic()
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        print(f"  {what} …", end="" if not tty else "\r", flush=True)
        spinner, ticks = "|/-\\", 0
        while True:
            try:
                code = proc.wait(timeout=0.25 if tty else TICK_S)
                break
            except subprocess.TimeoutExpired:
                ticks += 1
                if tty:
                    print(f"\r  {what} {spinner[ticks % 4]} {time.monotonic() - start:.0f} s", end="", flush=True)
                else:
                    print(".", end="", flush=True)
            except KeyboardInterrupt:
                proc.terminate()
                raise
    took = time.monotonic() - start
    outcome = f"{'done' if code == 0 else 'failed'} ({took:.0f} s)"
    print(f"\r  {what}: {outcome}" + " " * 8 if tty else f" {outcome}")
    if code != 0:
        raise InstallError(f"{what} failed (exit {code}); pip's full output is in {log} — check the network or "
                           f"proxy (pip honours HTTPS_PROXY), then run the installer again (--verbose shows it all).")


def _has_nvidia() -> bool:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return False
    try:
        return subprocess.run([smi, "-L"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _has_amd(kfd: Path = Path("/dev/kfd")) -> Optional[str]:
    """What shows an AMD GPU that ROCm can drive (the kernel's compute device, or ROCm's tools), or None."""
    if kfd.exists():
        return str(kfd)
    for tool in ("rocminfo", "rocm-smi"):
        path = shutil.which(tool)
        if path:
            try:
                if subprocess.run([path], capture_output=True, timeout=20).returncode == 0:
                    return tool
            except (OSError, subprocess.SubprocessError):
                pass
    return None


GPU_ENV = "LUCIDDREAM_GPU"  # nvidia | amd | none: overrides what is found (as --gpu does)
CUDA_INDEX = "https://download.pytorch.org/whl/cu126"
ROCM_INDEX = "https://download.pytorch.org/whl/rocm6.4"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def find_gpu(choice: str = "auto") -> Tuple[str, str]:
    """(kind, why): "nvidia", "amd" or "none", from --gpu / LUCIDDREAM_GPU, else from what this machine shows."""
    choice = (choice if choice != "auto" else os.environ.get(GPU_ENV, "auto")).strip().lower()
    if choice in ("nvidia", "amd", "none"):
        return choice, "as asked"
    if SYSTEM in ("Linux", "Windows") and _has_nvidia():
        return "nvidia", "nvidia-smi lists a GPU"
    amd = _has_amd() if SYSTEM == "Linux" else None
    if amd:
        return "amd", f"{amd} is present"
    return "none", "no NVIDIA or AMD GPU found"


def torch_plan(kind: str) -> Tuple[str, List[str]]:
    """The one line said about the torch build, and pip's arguments for it (none: a CPU wheel tried offline first)."""
    if SYSTEM == "Darwin":
        return "torch: the macOS build (Metal/MPS)", ["torch"]
    if kind == "nvidia":
        index = [] if SYSTEM == "Linux" else ["--index-url", CUDA_INDEX]  # PyPI's Linux wheel is the CUDA one
        return "torch: NVIDIA GPU, the CUDA build", ["torch", *index]
    if kind == "amd" and SYSTEM == "Linux":
        return "torch: AMD GPU, the ROCm build", ["torch", "--index-url", ROCM_INDEX]
    return "torch: no GPU, the CPU build", ["torch", "--index-url", CPU_INDEX, "--extra-index-url",
                                             "https://pypi.org/simple"]


def _quiet_ok(cmd: List[str]) -> bool:
    return subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def install_torch(python: Path, spec: Optional[str], gpu: str = "auto") -> None:
    """The torch build that fits the machine (CUDA for NVIDIA, ROCm for AMD, else CPU without gigabytes of CUDA
    libraries), said in one line; --torch SPEC or --gpu / LUCIDDREAM_GPU override it."""
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check"]
    if spec:
        print(f"  torch: {spec} (as given)")
        _run(pip + spec.split(), "installing torch")
        return
    if _quiet_ok([str(python), "-c", "import torch"]):
        print("  torch is already installed")
        return
    kind, why = find_gpu(gpu)
    line, args = torch_plan(kind)
    print(f"  {line} ({why}; --gpu or --torch SPEC to choose another)")
    # A CPU wheel already on this machine (pip's find-links) comes first, offline.
    if kind == "none" and SYSTEM != "Darwin" and _quiet_ok(pip + ["--no-index", "--no-deps", "torch"]):
        return
    _run(pip + args, "installing torch")


def project_version() -> str:
    for line in (ROOT / "pyproject.toml").read_text(encoding="utf-8").splitlines():
        if line.startswith("version"):
            return line.split("=", 1)[1].strip().strip('"')
    return "?"


def engine_version(python: Path) -> Optional[str]:
    try:
        out = subprocess.run([str(python), "-c", "import luciddream, sys; sys.stdout.write(luciddream.__version__)"],
                             capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def check_server(url: Optional[str], token: Optional[str], fingerprint: Optional[str]) -> Optional[str]:
    """The --server/--token/--fingerprint combination refused in one sentence, before anything is installed;
    returns the fingerprint as the plug-ins' client reads it (64 hex digits) or None."""
    if url is None:
        if fingerprint or token:
            raise InstallError(f"--{'fingerprint' if fingerprint else 'token'} belongs to --server: give the "
                               f"server's address too (--server https://HOST:PORT).")
        return None
    scheme, _, rest = url.partition("://")
    host = rest.split("/")[0].rsplit("@", 1)[-1]
    host = host[1:].split("]")[0] if host.startswith("[") else host.split(":")[0]
    if scheme not in ("http", "https") or not host:
        raise InstallError(f"--server {url} is not a server address: use https://HOST:PORT (or http://127.0.0.1:PORT "
                           f"on this computer).")
    loopback = host.lower() == "localhost" or host.startswith("127.") or host == "::1"
    if scheme == "http" and token and not loopback:
        raise InstallError(f"--server {url} is plain HTTP: the plug-ins never send a token there, where anyone on the "
                           f"network could read it; start serve with --certfile/--keyfile and use https://, or an "
                           f"SSH tunnel to 127.0.0.1.")
    if fingerprint is None:
        return None
    if scheme != "https":
        raise InstallError(f"--fingerprint pins a TLS certificate, but --server {url} is plain HTTP: use https://.")
    digits = fingerprint.replace(":", "").replace(" ", "").upper()
    if len(digits) != 64 or any(ch not in "0123456789ABCDEF" for ch in digits):
        raise InstallError(f"--fingerprint {fingerprint!r} is not a SHA-256 fingerprint: copy the 32 pairs of hex "
                           f"digits (AB:CD:...) that `luciddream serve` prints at start.")
    return ":".join(digits[i:i + 2] for i in range(0, 64, 2))


def engine_requirements(extras: Optional[str]) -> List[str]:
    """The distribution names pyproject.toml's dependencies (and the named extras) list, without versions."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    block = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M)
    specs = re.findall(r'"([^"]+)"', block.group(1)) if block else []
    for extra in (extras or "").split(","):
        line = re.search(rf"^{re.escape(extra.strip())} = \[(.*)\]", text, re.M) if extra.strip() else None
        specs += re.findall(r'"([^"]+)"', line.group(1)) if line else []
    return [re.match(r"[A-Za-z0-9._-]+", spec).group(0) for spec in specs if re.match(r"[A-Za-z0-9._-]+", spec)]


def requirements_missing(python: Path, names: List[str]) -> bool:
    """Does the venv lack one of `names`? (a new dependency since it was installed: the version alone would not say)"""
    code = ("import importlib.metadata as m, sys\nfor n in sys.argv[1:]:\n    try:\n        m.version(n)\n"
            "    except m.PackageNotFoundError:\n        sys.exit(1)")
    try:
        return subprocess.run([str(python), "-c", code, *names], capture_output=True, timeout=120).returncode != 0
    except (OSError, subprocess.SubprocessError):
        return True


def install_engine(venv: Path, args: argparse.Namespace, manifest: Manifest, report: Report) -> None:
    python = venv_python(venv)
    extras = f"[{args.extras}]" if args.extras else ""
    if (python.exists() and engine_version(python) == project_version() and not args.torch
            and not requirements_missing(python, engine_requirements(args.extras))):
        report.same(f"engine: up to date in {venv}")
        return
    report.did(f"install the engine into {venv}")
    if report.dry_run:
        return
    if not python.exists():
        _check_writable(venv, "engine venv")
        _run([sys.executable, "-m", "venv", str(venv)], "creating the virtual environment")
        if str(venv) not in manifest.venvs:
            manifest.venvs.append(str(venv))
        manifest.save()
    install_torch(python, args.torch, args.gpu)
    target = [str(ROOT) + extras] if not args.editable else ["-e", str(ROOT) + extras]
    _run([str(python), "-m", "pip", "install", "--disable-pip-version-check", *target], "installing the engine")
    if engine_version(python) is None:
        raise InstallError(f"the engine does not import in {venv}; run `{python} -c 'import luciddream'` to see why.")
    print(f"engine: installed in {venv}")


def link_command(venv: Path, manifest: Manifest, report: Report) -> None:
    """~/.local/bin/luciddream → the venv's script, so `luciddream` works like any installed command."""
    if SYSTEM == "Windows":
        return
    link = home() / ".local" / "bin" / "luciddream"
    target = venv_script(venv)
    if link.is_symlink() and os.readlink(link) == str(target):
        manifest.files[str(link)] = "symlink"
        return
    if link.exists() and not link.is_symlink():
        print(f"note: {link} exists and is not ours; run the engine as {target}")
        return
    report.did(f"link {link} → {target}")
    if report.dry_run:
        return
    manifest.make_folder(link.parent)
    if link.is_symlink():
        link.unlink()
    link.symlink_to(target)
    manifest.files[str(link)] = "symlink"
    if str(link.parent) not in os.environ.get("PATH", "").split(os.pathsep):
        print(f"note: {link.parent} is not on your PATH; add it, or run {link}")


# ---------------------------------------------------------------------------------------------------- uninstall
def uninstall(manifest: Manifest, report: Report) -> None:
    if not manifest.files and not manifest.kritarc and not manifest.venvs:
        print(f"nothing to uninstall: {manifest.path} lists no installed files")
        return
    for name in sorted(manifest.files):
        path = Path(name)
        if path.is_symlink() or path.exists():
            report.did(f"remove {path}")
            if not report.dry_run:
                path.unlink()
                for cache in path.parent.glob("__pycache__"):  # Python leaves these beside plug-in modules
                    shutil.rmtree(cache, ignore_errors=True)
    for rc, how in manifest.kritarc.items():
        if how in ("added", "created"):
            report.did(f"disable the plug-in in {rc}")
            if not report.dry_run:
                disable_in_kritarc(Path(rc), remove_if_empty=how == "created")
    for venv in manifest.venvs:
        if Path(venv).is_dir():
            report.did(f"remove the engine's environment {venv}")
            if not report.dry_run:
                shutil.rmtree(venv)
    if not report.dry_run:
        manifest.path.unlink(missing_ok=True)
        for folder in sorted(manifest.folders, key=lambda f: len(Path(f).parts), reverse=True):
            try:
                Path(folder).rmdir()  # only if empty: never anything the user put there
            except OSError:
                pass
    print("uninstalled" if not report.dry_run else "(dry run: nothing was removed)")


# --------------------------------------------------------------------------------------------------------- main
def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="install.py", description="Set up luciddream's engine and plug-ins.")
    ap.add_argument("--only", action="append", choices=PARTS, help="install just this part (repeatable)")
    ap.add_argument("--venv", type=Path, help=f"engine environment (default {data_dir() / 'venv'})")
    ap.add_argument("--gimp-dir", type=Path, help="GIMP 3 plug-ins folder (default: found automatically)")
    ap.add_argument("--krita-dir", type=Path, help="Krita pykrita folder (default: found automatically)")
    ap.add_argument("--kritarc", type=Path, help="Krita's kritarc (default: beside the found pykrita folder)")
    ap.add_argument("--torch", metavar="SPEC", help="pip requirement(s) for torch, e.g. 'torch==2.5.1 --index-url URL'")
    ap.add_argument("--server", metavar="URL", help="plug-ins use a running `luciddream serve` instead of a worker")
    ap.add_argument("--token", help="token for --server")
    ap.add_argument("--fingerprint", metavar="SHA256", help="for --server https://…: the SHA-256 fingerprint of its "
                    "self-signed certificate (`luciddream serve` prints it), checked instead of an authority")
    ap.add_argument("--editable", action="store_true", help="install the engine in development mode (pip -e)")
    ap.add_argument("--extras", help="engine extras, e.g. test")
    ap.add_argument("--dry-run", action="store_true", help="say what would change, change nothing")
    ap.add_argument("--verbose", action="store_true", help="show pip's whole output (else it goes to a log file)")
    ap.add_argument("--gpu", default="auto", choices=["auto", "nvidia", "amd", "none"],
                    help="which torch build to install (default: what this machine has; also $LUCIDDREAM_GPU)")
    ap.add_argument("--uninstall", action="store_true", help="remove what this installer installed")
    return ap.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    global VERBOSE
    args = parse_args(argv)
    VERBOSE = args.verbose
    parts = set(args.only or PARTS)
    explicit = args.only is not None
    report = Report(args.dry_run)
    manifest = Manifest.load(data_dir() / "install.json")
    try:
        if sys.version_info < (3, 9):
            raise InstallError("install.py needs Python 3.9 or newer.")
        if args.uninstall:
            uninstall(manifest, report)
            return 0
        pin = check_server(args.server, args.token, args.fingerprint)
        venv = (args.venv or data_dir() / "venv").expanduser().absolute()
        if "engine" in parts:
            install_engine(venv, args, manifest, report)
            if not args.venv:
                link_command(venv, manifest, report)
        offer = engine_offer(venv_python(venv)) if parts & {"gimp", "krita"} else None
        config = engine_config(venv_python(venv), args.server, args.token, offer, pin)
        if "gimp" in parts:
            dirs = [args.gimp_dir] if args.gimp_dir else [d / "plug-ins" for d in gimp_candidates()]
            found = gimp_executable() if not dirs else None
            if found:   # GIMP never started yet: the folder its first start will make for this version
                dirs = [gimp_profile_roots()[0] / found[1] / "plug-ins"]
            if not dirs:
                message = ("gimp: GIMP 3 not found (no GIMP/3.x profile folder, no gimp-3.x on PATH); start GIMP 3 "
                           "once, or pass --gimp-dir PLUG-INS-FOLDER")
                if explicit:
                    raise InstallError(message)
                print(message)
            for d in dirs:
                install_gimp(d.expanduser().absolute(), config, manifest, report)
        if "krita" in parts:
            if args.krita_dir:
                rc = args.kritarc or (_config_home() / "kritarc")
                homes = [KritaHome(args.krita_dir.expanduser().absolute(), rc, "given")]
            else:
                homes = [k for k in krita_candidates() if krita_present(k)]
                if args.kritarc:
                    homes = [KritaHome(k.pykrita, args.kritarc, k.kind) for k in homes]
            if not homes:
                message = ("krita: Krita not found (no krita folder in your data folder, no krita on PATH); start "
                           "Krita once, or pass --krita-dir PYKRITA-FOLDER")
                if explicit:
                    raise InstallError(message)
                print(message)
            for k in homes:
                install_krita(k, config, manifest, report)
        if not report.dry_run:
            manifest.save()
        if report.changed == 0:
            print("nothing to do: everything is already installed")
        elif report.dry_run:
            print("(dry run: nothing was changed)")
        return 0
    except InstallError as exc:
        if not report.dry_run and (manifest.files or manifest.venvs):
            manifest.save()
        print(f"install.py: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if not report.dry_run:
            manifest.save()
        print("install.py: interrupted; run it again to finish.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
