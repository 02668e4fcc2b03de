from __future__ import annotations

import subprocess
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("LUCIDDREAM_FIXTURES", ROOT.parent / "shared" / "fixtures"))
sys.path.insert(0, str(ROOT / "benchmarks"))  # `import quality`: the judges tests and benchmarks share

# The real editors' session fixtures (one GIMP profile and one Krita launch per version for every host test file).
from host_fixtures import (gimp_home, gimp_host, gimp_root, installed_home, krita_host, krita_restart,  # noqa: E402,F401
                           krita_run, krita_template, looks_cache, profile)


def fixture_image(name: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """A shared test photo as uint8 RGB, optionally resized to (width, height)."""
    path = FIXTURES / f"{name}.png"
    if not path.exists():
        pytest.fail(f"missing test photo {path}: put the shared/ folder beside the project or set LUCIDDREAM_FIXTURES")
    im = Image.open(path).convert("RGB")
    if size is not None:
        im = im.resize(size, Image.LANCZOS)
    return np.array(im)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


def stop_process(proc: subprocess.Popen) -> None:
    """End a server or worker a test started: politely, then for sure; close its pipes."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def pytest_collection_modifyitems(config, items) -> None:
    """Tests marked gpu need a CUDA GPU that torch sees; elsewhere they are skipped, saying why."""
    gpu_tests = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu_tests:
        return
    import torch

    if torch.cuda.is_available():
        return
    reason = (f"no CUDA GPU visible to torch {torch.__version__} here (torch.cuda.is_available() is False); "
              f"benchmarks/gpu_check.sh runs these on a GPU machine")
    for item in gpu_tests:
        item.add_marker(pytest.mark.skip(reason=reason))
