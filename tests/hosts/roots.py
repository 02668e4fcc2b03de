"""The editor versions the host tests run, and how a command runs inside a version's Debian root.

GIMP 3.0.4 and 3.2.6 and Krita 5.2.9, 5.3.4.1 and 6.0.4.1 live in roots that tests/hosts/setup_root.sh builds under
/var/cache/luciddream (LUCIDDREAM_ROOTS); Krita 5.1.5 is this Debian 12 system's own. A root runs a program through
`unshare --mount` + `chroot`, with the folders the plug-in and the engine need bind-mounted at the same paths, so
the plug-in inside spawns the engine's Python from this project's environment and files under /tmp are shared.
The test ids (gimp-3.2, krita-6.0, ...) select one version: `pytest -k krita-6.0`.
"""
from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[2]
ROOTS = Path(os.environ.get("LUCIDDREAM_ROOTS", "/var/cache/luciddream"))
STAMPS = (".luciddream-root", ".luciddream-gimp-root")   # the second: roots from before setup_root.sh


def _stamped(root: Path) -> bool:
    return any((root / name).is_file() for name in STAMPS)


@dataclass(frozen=True)
class GimpHost:
    """One GIMP in its root. `version` names its binaries (gimp-console-3.2) and its profile (~/.config/GIMP/3.2);
    the plug-in folder inside the program (lib/gimp/3.0) and the typelib keep 3.0 in every 3.x."""

    id: str
    root_name: str
    version: str

    @property
    def root(self) -> Path:
        return ROOTS / self.root_name

    @property
    def console(self) -> str:
        return f"gimp-console-{self.version}"

    @property
    def gui(self) -> str:
        return f"gimp-{self.version}"

    def missing(self) -> Optional[str]:
        """None when the root is ready, else what to run."""
        if _stamped(self.root) and (self.root / "usr/bin" / self.console).exists():
            return None
        return f"no {self.id} root at {self.root}: run tests/hosts/setup_gimp.sh {self.root_name} (minutes, once)"


@dataclass(frozen=True)
class KritaHost:
    """One Krita: in a root, or this system's own (root_name None)."""

    id: str
    root_name: Optional[str]

    @property
    def root(self) -> Optional[Path]:
        return ROOTS / self.root_name if self.root_name else None

    def missing(self) -> Optional[str]:
        root = self.root
        if root is None:
            import shutil
            for tool in ("krita", "kritarunner", "xvfb-run"):
                if shutil.which(tool) is None:
                    return f"real Krita is not installed here ({tool} not found): run tests/hosts/setup_krita.sh"
            return None
        if _stamped(root) and (root / "usr/bin/krita").exists() and (root / "usr/bin/kritarunner").exists():
            return None
        return f"no {self.id} root at {root}: run tests/hosts/setup_krita.sh {self.root_name} (minutes, once)"


GIMP_HOSTS = [GimpHost("gimp-3.0", "gimp-trixie", "3.0"), GimpHost("gimp-3.2", "gimp-sid", "3.2")]
KRITA_HOSTS = [KritaHost("krita-5.1", None), KritaHost("krita-5.2", "krita-trixie"),
               KritaHost("krita-5.3", "krita-sid"), KritaHost("krita-6.0", "krita-experimental")]


def shared_folders() -> List[str]:
    """Host folders the engine worker needs inside a root, at the same paths: the project (its engine package and
    .venv) and the Python the venv was made from (.venv/bin/python is a symlink into it)."""
    venv = Path(sys.prefix).resolve()
    paths = {REPO, venv, Path(sys.base_prefix).resolve()}
    for path in paths:
        if path == Path("/usr") or Path("/usr") in path.parents:
            raise RuntimeError(f"{path} is under /usr: binding it would hide the root's own /usr; "
                               "make the project's venv from a Python outside /usr (pyenv, uv)")
    keep = sorted(p for p in paths if not any(q != p and q in p.parents for q in paths))
    return [str(p) for p in keep]


def in_root(root: Path, command: Sequence[str], binds: Sequence[tuple] = (), system: bool = True) -> List[str]:
    """`command` run inside `root` with shared_folders() and `binds` ((host, inside) pairs) mounted; with `system`
    also /dev, /proc, /sys and /tmp (a GUI program needs them; /tmp is shared so homes and Xvfb sockets are too).
    The mounts live in a private namespace and vanish with the command, so the root is never left with a mount in
    it (setup_root.sh refuses to delete a root that has one)."""
    pairs = [(p, p) for p in shared_folders()] + list(binds)
    if system:
        pairs += [("/dev", "/dev"), ("/proc", "/proc"), ("/sys", "/sys"), ("/tmp", "/tmp")]
    else:
        pairs += [("/proc", "/proc")]
    script = "set -e\n"
    for src, dst in pairs:
        target = shlex.quote(f"{root}{dst}")
        script += f"mkdir -p {target}; mount --rbind {shlex.quote(str(src))} {target}\n"
    script += 'root=$1; shift; exec chroot "$root" "$@"\n'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(root), *command]


def root_env(env: Dict[str, str]) -> List[str]:
    """`env -i K=V ...`: exactly these variables inside the root (nothing of this process's PATH or PYTHON*)."""
    return ["env", "-i", *(f"{k}={v}" for k, v in env.items())]
