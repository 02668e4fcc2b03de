"""Launch real Krita under Xvfb with luciddream installed through install.py, for tests/test_krita_host.py.

Every function takes the Krita to run as `root`: None for this system's Krita (5.1.5 on Debian 12), or a Debian root
from setup_root.sh (Krita 5.2, 5.3, 6.0), where the same command runs through roots.in_root with /tmp shared, so the
HOMEs, the test's output folders and the Xvfb sockets are the same paths on both sides.

Why a warm template: Krita's first start in an empty HOME builds an ~88 MB profile (~27 s); copying a finished one
takes a fraction of a second. The template is built once (cached under /tmp, keyed by the Krita version) by a
launch whose test driver does nothing but quit; each test launch copies it into a fresh HOME, installs the plug-in
with install.py exactly as a user would, adds the test driver plug-in, and runs under an outer `timeout`.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

import roots

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).resolve().parent / "krita_driver"
DRIVER_NAME = "luciddream_testdriver"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def krita_missing() -> Optional[str]:
    """None when real Krita can run here, else what is missing."""
    for tool in ("krita", "kritarunner", "xvfb-run"):
        if shutil.which(tool) is None:
            return tool
    return None


def krita_version(root: Optional[Path] = None) -> str:
    """The Debian version of the Krita that runs (a root's stamp names it: "Krita 1:5.2.9+dfsg-4, built from …")."""
    if root is not None:
        for name in roots.STAMPS:
            stamp = root / name
            if stamp.is_file():
                return stamp.read_text().split(",", 1)[0].replace("Krita ", "").replace(":", "_").strip()
        return "unknown"
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "krita"], capture_output=True, text=True,
                             timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    return out or "unknown"


def _enable(kritarc: Path, name: str) -> None:
    """Krita loads a Python plug-in only with enable_NAME=true in kritarc's [python] group."""
    text = kritarc.read_text() if kritarc.exists() else ""
    line = f"enable_{name}=true"
    if line in text.splitlines():
        return
    lines = text.splitlines()
    if "[python]" in lines:
        lines.insert(lines.index("[python]") + 1, line)
    else:
        lines += ["", "[python]", line]
    kritarc.write_text("\n".join(lines) + "\n")


def base_env(home: Path, out: Path) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "PYTHON", "QT_", "KRITA"))}
    env.update(HOME=str(home), XDG_RUNTIME_DIR=str(home / "run"), LUCIDDREAM_KRITA_DRIVER=str(out),
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", LANG="C.UTF-8")
    # Krita embeds the system's libpython, which finds its standard library through the first `python3` on PATH:
    # a pyenv or venv python3 there (pyenv puts its own first) makes Krita's Python lose PyQt5 and the krita module.
    env["PATH"] = SYSTEM_PATH
    env.pop("DISPLAY", None)
    return env


# Inside a root only these reach Krita: this process's other variables (pyenv's, a venv's) mean nothing there.
ROOT_ENV = ("HOME", "PATH", "LANG", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "QT_QPA_PLATFORM", "PYTHONPATH")


def command(root: Optional[Path], cmd: List[str], env: Dict[str, str]) -> List[str]:
    """`cmd` as it runs for this Krita: unchanged on the system, wrapped in the root's chroot otherwise."""
    if root is None:
        return cmd
    inside = {k: v for k, v in env.items() if k in ROOT_ENV or k.startswith(("XDG_", "LUCIDDREAM_"))}
    return roots.in_root(root, roots.root_env(inside) + cmd)


def new_home(template: Optional[Path]) -> Path:
    home = Path(tempfile.mkdtemp(prefix="luciddream-krita-home-"))
    if template is not None:
        subprocess.run(["cp", "-a", f"{template}/.", str(home)], check=True)
    (home / "run").mkdir(exist_ok=True)
    os.chmod(home / "run", 0o700)
    (home / ".config").mkdir(exist_ok=True)
    return home


def add_driver(home: Path) -> None:
    pykrita = home / ".local" / "share" / "krita" / "pykrita"
    pykrita.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(pykrita / DRIVER_NAME, ignore_errors=True)
    shutil.copytree(DRIVER / DRIVER_NAME, pykrita / DRIVER_NAME,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(DRIVER / f"{DRIVER_NAME}.desktop", pykrita / f"{DRIVER_NAME}.desktop")
    _enable(home / ".config" / "kritarc", DRIVER_NAME)


def install_plugin(home: Path, venv: Path) -> subprocess.CompletedProcess:
    """The user's way: `python install.py --only krita --venv VENV`, with HOME deciding where Krita's files are."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_")}
    env["HOME"] = str(home)
    return subprocess.run([sys.executable, str(ROOT / "install.py"), "--only", "krita", "--venv", str(venv)],
                          cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=120)


def launch(home: Path, out: Path, scenario: Optional[dict] = None, timeout: int = 300,
           root: Optional[Path] = None) -> subprocess.CompletedProcess:
    """Run Krita until the driver quits it (or the outer timeout kills it); stdout/stderr land in OUT."""
    out.mkdir(parents=True, exist_ok=True)
    if scenario is not None:
        (out / "scenario.json").write_text(json.dumps(scenario))
    env = base_env(home, out)
    for _attempt in range(3):
        # -a searches for a free display from -n on: a random start keeps launches that run at once (other tests,
        # other roots: /tmp and so the X sockets are shared) from both taking :99 between check and start.
        first = str(random.randrange(100, 2000))
        xvfb = ["xvfb-run", "-a", "-n", first, "-e", str(out / "xvfb.stderr"),
                "-s", "-screen 0 1280x1024x24 -nolisten tcp"]
        cmd = ["timeout", "-k", "10", str(timeout)] + command(root, xvfb + ["krita", "--nosplash"], env)
        with open(out / "krita.stdout", "wb") as so, open(out / "krita.stderr", "wb") as se:
            result = subprocess.run(cmd, env=env, stdout=so, stderr=se, timeout=timeout + 30)
        # On a loaded machine xvfb-run now and then starts Krita before its Xvfb accepts connections; Krita then
        # aborts at once, before any plug-in ran: start again (a plug-in failure never looks like this).
        if b"could not connect to display" not in (out / "krita.stderr").read_bytes():
            break
    return result


def run_kritarunner(home: Path, args: List[str], timeout: int = 180, root: Optional[Path] = None,
                    env_out: Optional[Path] = None) -> subprocess.CompletedProcess:
    """kritarunner (offscreen, no plug-ins loaded) with this folder on PYTHONPATH: `-s MODULE -f FUNC ARGS`."""
    env = base_env(home, env_out or home)
    env.update(QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(Path(__file__).resolve().parent))
    cmd = ["timeout", "-k", "10", str(timeout)] + command(root, ["kritarunner", *args], env)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout + 40)


def template_home(cache: Path, root: Optional[Path] = None) -> Path:
    """The warm profile, built once: Krita started with only the quitting driver, then everything but the
    profile removed again."""
    done = cache / ".luciddream-template-ok"
    if done.exists():
        return cache
    shutil.rmtree(cache, ignore_errors=True)
    home = new_home(None)
    try:
        add_driver(home)
        out = home / "template-out"
        result = launch(home, out, {"steps": []}, timeout=180, root=root)
        if result.returncode != 0 or not (out / "report.json").exists():
            raise RuntimeError(f"building the Krita template profile failed (exit {result.returncode}); see "
                               f"{out}/krita.stderr")
        shutil.rmtree(out)
        shutil.rmtree(home / ".local" / "share" / "krita" / "pykrita" / DRIVER_NAME, ignore_errors=True)
        (home / ".local" / "share" / "krita" / "pykrita" / f"{DRIVER_NAME}.desktop").unlink()
        cache.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(home, cache, symlinks=True)
        done.write_text("ok\n")
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return cache


def runner_template(cache: Path, root: Optional[Path] = None) -> Path:
    """A HOME warmed by kritarunner itself: kritarunner in the GUI's profile rebuilds its resources (~38 s a run),
    in its own warm profile it starts in ~2 s."""
    done = cache / ".luciddream-template-ok"
    if done.exists():
        return cache
    shutil.rmtree(cache, ignore_errors=True)
    home = new_home(None)
    try:
        run_kritarunner(home, ["-s", "krita_runner_formats", "-f", "noop"], root=root)
        shutil.copytree(home, cache, symlinks=True)
        done.write_text("ok\n")
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return cache
