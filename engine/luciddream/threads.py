"""How many CPU threads torch may use: the physical cores this process may run on, less what the editor keeps.

Why: torch's default is every logical CPU, so on a machine with SMT two threads share each core's arithmetic
units and wait on each other, and inside GIMP or Krita the engine took every core from the editor's own painting
and redraws. The plug-ins spawn the worker with LUCIDDREAM_LEAVE_CORES=1 (kit.worker_env); the command line and
`serve` leave none. `serve` runs the jobs of one device one after another (server.Runner), so several CPU jobs
never run more threads than this between them.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Optional

LEAVE_ENV = "LUCIDDREAM_LEAVE_CORES"    # cores to leave to the process that spawned the engine (an editor)
THREADS_ENV = "LUCIDDREAM_THREADS"      # an exact thread count, when the user wants one


def allowed_cpus() -> list[int]:
    """The logical CPUs this process may run on (its affinity mask, e.g. taskset or a container's cpuset)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def physical_cores(cpus: Optional[Iterable[int]] = None, sysfs: Path = Path("/sys/devices/system/cpu")) -> int:
    """Distinct (package, core) pairs among `cpus`: SMT siblings count once. Without topology files (not Linux),
    the logical count."""
    cpus = list(allowed_cpus() if cpus is None else cpus)
    cores = set()
    for cpu in cpus:
        topology = sysfs / f"cpu{cpu}" / "topology"
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            return max(1, len(cpus))
        cores.add((package, core))
    return max(1, len(cores))


def default_threads(environ: Optional[dict] = None, cores: Optional[int] = None) -> int:
    """LUCIDDREAM_THREADS if set, else the physical cores less LUCIDDREAM_LEAVE_CORES (at least one thread)."""
    env = os.environ if environ is None else environ
    exact = env.get(THREADS_ENV, "").strip()
    if exact.isdigit() and int(exact) > 0:
        return int(exact)
    leave = env.get(LEAVE_ENV, "").strip()
    cores = physical_cores() if cores is None else cores
    return max(1, cores - (int(leave) if leave.isdigit() else 0))


_configured: Optional[int] = None


def configure() -> int:
    """Set torch's intra-op threads to default_threads() once per process (torch must be importable)."""
    global _configured
    if _configured is None:
        import torch

        _configured = default_threads()
        torch.set_num_threads(_configured)
    return _configured
