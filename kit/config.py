"""engine.json, which install.py writes beside each plug-in, and the environment the worker is started with.

engine.json says where the engine is (a Python to spawn the worker with, or a `luciddream serve` url, token and, for
a self-signed certificate, its SHA-256 fingerprint) and
holds the engine's offer as it was at install time, so a host can build its controls before any worker runs.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional

from .errors import UserError

REINSTALL = "run `python install.py` from the luciddream folder again"

# Hosts point these at their own Python (Krita's bundled one, GIMP's); passed on, they would make the engine's
# Python load the host's libraries instead of its own.
DROP_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONEXECUTABLE")


@dataclass(frozen=True)
class EngineConfig:
    """What install.py wrote: a Python to spawn the worker with, or a server's url and token; and the offer."""

    python: Optional[str] = None
    url: Optional[str] = None
    token: Optional[str] = None
    offer: Optional[Dict[str, Any]] = None
    fingerprint: Optional[str] = None   # SHA-256 of the server's self-signed certificate (https:// urls)

    @property
    def how(self) -> str:
        """"connect" to a server when a url is set, else "spawn" a worker with `python`."""
        return "connect" if self.url else "spawn"


def read_config(path: str) -> EngineConfig:
    """engine.json at `path`, checked field by field so a broken install gets one clear sentence."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise UserError(f"The plug-in does not know where the engine is ({path} is missing): "
                        f"{REINSTALL}.") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} cannot be read ({exc}): {REINSTALL}.") from None
    return config_from(data, path)


def config_from(data: Any, path: str = "engine.json") -> EngineConfig:
    """The checks of read_config on an already parsed object."""
    if not isinstance(data, Mapping):
        raise UserError(f"{path} must hold a JSON object: {REINSTALL}.")
    values: Dict[str, Optional[str]] = {}
    for key in ("python", "url", "token", "fingerprint"):
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise UserError(f'"{key}" in {path} must be a string or null.')
        values[key] = value or None
    url = values["url"]
    if url is not None and not (url.startswith("http://") or url.startswith("https://")):
        raise UserError(f'"url" in {path} must be an http:// or https:// address, not {url!r}.')
    if url is None and values["python"] is None:
        raise UserError(f"{path} names neither an engine Python nor a server url: {REINSTALL} "
                        f"(with --venv VENV), or set \"url\" to a luciddream serve address.")
    offer = data.get("offer")
    if offer is not None and not isinstance(offer, Mapping):
        raise UserError(f'"offer" in {path} must be a JSON object: {REINSTALL}.')
    return EngineConfig(values["python"], url, values["token"], dict(offer) if offer is not None else None,
                        values["fingerprint"])


LEAVE_CORES_ENV = "LUCIDDREAM_LEAVE_CORES"  # read by the engine's threads.py
LEAVE_CORES = 1  # the editor keeps one core for painting and redraws while the engine dreams


def worker_env(base: Optional[Mapping[str, str]] = None, leave_cores: int = LEAVE_CORES) -> Dict[str, str]:
    """The environment for the worker: the host's (or `base`), minus the variables that point Python at the
    host's own libraries, plus how many cores to leave to the editor (unless the user's environment says).
    Both hosts spawn with it, so the engine starts the same under either."""
    env = dict(os.environ if base is None else base)
    for key in DROP_ENV:
        env.pop(key, None)
    env.setdefault(LEAVE_CORES_ENV, str(max(0, int(leave_cores))))
    return env
