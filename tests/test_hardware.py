"""The hardware a dream meets: tiles chosen from free memory, out-of-memory recovered at a smaller tile, a memory
cap kept, thread defaults, and the GPU path (GPU-marked tests skip with a reason where CUDA is absent).

The memory tests run the real command line in a child process under RLIMIT_AS. The limit is set from the child's
own address-space size after a warm-up dream (threads, kernels and weights already in place), plus an allowance
taken from memory.estimate between what the 640 tile and the 320 tile need: measured on this machine, the 640 tile
needs 550–600 MB above that point for the 640² region below and the 320 tile less than 150 MB, and memory.estimate
says 573 and 261 MB; the midpoint leaves over 100 MB either side.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import fixture_image
from PIL import Image

from luciddream import cli, memory

REGION = 640  # the mask's box (512²) plus the 64 px context on each side

CHILD = textwrap.dedent("""
    import resource, sys
    import numpy as np
    from luciddream import dream, memory
    from luciddream.cli import main

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024

    extra = int(sys.argv[1])
    if extra:
        dream(np.zeros((96, 96, 3), np.uint8), None, octaves=1, steps=1, tile=128, seed=0)  # warm: threads, model
        resource.setrlimit(resource.RLIMIT_AS, (status("VmSize") + extra, resource.RLIM_INFINITY))
    code = main(sys.argv[2:])
    print(f"peak rss {status('VmHWM')}", file=sys.stderr)
    sys.exit(code)
""")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hardware")
    Image.fromarray(fixture_image("astronaut", (768, 768))).save(folder / "in.png")
    mask = np.zeros((768, 768), np.uint8)
    mask[128:640, 128:640] = 255
    Image.fromarray(mask).save(folder / "mask.png")
    return folder


def limited(extra_bytes: int, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-c", CHILD, str(extra_bytes), *args], capture_output=True, text=True,
                          timeout=300, env=env)


def between_320_and_640() -> int:
    return (memory.estimate(640, REGION, REGION) + memory.estimate(320, REGION, REGION)) // 2


def dream_args(folder: Path, out: str, *extra: str) -> list[str]:
    return ["dream", str(folder / "in.png"), "--mask", str(folder / "mask.png"), "-o", str(folder / out),
            "--seed", "5", "--steps", "1", *extra]


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_out_of_memory_retries_the_step_at_half_the_tile(files: Path) -> None:
    """The 640 tile cannot fit under the limit: the step is retried at 320 with the random numbers it drew, and
    the picture is bit for bit the one a run started at tile 320 makes; outside the mask nothing changed."""
    run = limited(between_320_and_640(), *dream_args(files, "retry.png", "--octaves", "1", "--tile", "640"))
    assert run.returncode == 0, run.stderr[-2000:]
    assert "out of memory at tile 640: continuing at tile 320" in run.stderr
    assert cli.main(dream_args(files, "t320.png", "--octaves", "1", "--tile", "320", "-q")) == 0
    retried, direct, source = pixels(files / "retry.png"), pixels(files / "t320.png"), pixels(files / "in.png")
    assert np.array_equal(retried, direct)
    outside = np.ones((768, 768), bool)
    outside[128:640, 128:640] = False
    assert np.array_equal(retried[outside], source[outside])
    assert not np.array_equal(retried[~outside], source[~outside])


def test_out_of_memory_after_tile_dependent_steps_starts_again(files: Path) -> None:
    """Two octaves: the first (457²) fits one 640 window, the second does not fit at all. The first octave's
    steps would be cut differently at 320, so the dream starts again at 320: again the picture of a 320 run."""
    run = limited(between_320_and_640(), *dream_args(files, "again.png", "--octaves", "2", "--tile", "640"))
    assert run.returncode == 0, run.stderr[-2000:]
    assert "out of memory at tile 640: dreaming again from the start at tile 320" in run.stderr
    assert cli.main(dream_args(files, "t320b.png", "--octaves", "2", "--tile", "320", "-q")) == 0
    assert np.array_equal(pixels(files / "again.png"), pixels(files / "t320b.png"))


def test_auto_tile_fits_the_address_space_limit_and_repeats(files: Path) -> None:
    """No --tile: under the limit the engine picks a smaller tile by itself (no out-of-memory on the way), and
    the same seed at that tile, given by hand, is the same picture."""
    run = limited(between_320_and_640(), *dream_args(files, "auto.png", "--octaves", "1"))
    assert run.returncode == 0, run.stderr[-2000:]
    assert "out of memory" not in run.stderr
    tile = int(re.search(r"tile (\d+)", run.stderr).group(1))
    assert memory.MIN_TILE <= tile < 640
    assert cli.main(dream_args(files, "byhand.png", "--octaves", "1", "--tile", str(tile), "-q")) == 0
    assert np.array_equal(pixels(files / "auto.png"), pixels(files / "byhand.png"))


def test_auto_tile_is_640_with_ample_memory() -> None:
    budget = memory.Budget(8 << 30, "8 GB free")
    for side in (300, 1000, 4000):
        assert memory.choose_tile(0, side, side, budget, capped=False) == 640
    assert memory.choose_tile(512, 4000, 4000, memory.Budget(1 << 20, "1 MB"), capped=False) == 512  # by hand


def test_max_memory_is_kept(files: Path) -> None:
    """--max-memory 700M: the tile is lowered to fit and the process's measured peak stays under the cap."""
    run = limited(0, *dream_args(files, "capped.png", "--octaves", "1", "--max-memory", "700M"))
    assert run.returncode == 0, run.stderr[-2000:]
    tile = int(re.search(r"tile (\d+)", run.stderr).group(1))
    peak = int(re.search(r"peak rss (\d+)", run.stderr).group(1))
    assert tile < 640 and peak < 700 * memory.MB, (tile, peak >> 20)


def test_max_memory_below_any_tile_is_one_sentence(files: Path, capsys) -> None:
    assert cli.main(dream_args(files, "none.png", "--octaves", "1", "--max-memory", "50M")) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--max-memory" in err and "smallest tile" in err, err
    assert not (files / "none.png").exists()


def test_tile_and_memory_arguments() -> None:
    import luciddream

    with pytest.raises(luciddream.DreamError, match="tile must be 0"):
        luciddream.Settings(tile=32).check()
    with pytest.raises(SystemExit) as exit_:
        cli.main(["dream", "x.png", "-o", "y.png", "--tile", "big"])
    assert exit_.value.code == 2
    assert cli._megabytes("2G") == 2048 and cli._megabytes("1500m") == 1500 and cli._megabytes("800") == 800


def test_threads_default_to_physical_cores(tmp_path: Path) -> None:
    """SMT siblings count once; the editor's share and an exact count come from the environment."""
    from luciddream import threads

    for cpu, core in enumerate([0, 1, 0, 1]):  # two cores, two threads each
        topology = tmp_path / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "physical_package_id").write_text("0\n")
        (topology / "core_id").write_text(f"{core}\n")
    assert threads.physical_cores([0, 1, 2, 3], sysfs=tmp_path) == 2
    assert threads.physical_cores([0, 2], sysfs=tmp_path) == 1  # an affinity mask of one core's two siblings
    assert threads.default_threads({}, cores=8) == 8
    assert threads.default_threads({"LUCIDDREAM_LEAVE_CORES": "1"}, cores=8) == 7
    assert threads.default_threads({"LUCIDDREAM_LEAVE_CORES": "1"}, cores=1) == 1
    assert threads.default_threads({"LUCIDDREAM_THREADS": "3", "LUCIDDREAM_LEAVE_CORES": "1"}, cores=8) == 3


def test_plugins_spawn_leaves_one_core_to_the_editor() -> None:
    """The environment both plug-ins spawn the worker with makes torch use the physical cores less one."""
    from luciddream import threads

    sys.path.append(str(Path(__file__).resolve().parents[1]))
    import kit

    code = "from luciddream import threads; import torch; threads.configure(); print(torch.get_num_threads())"
    env = kit.worker_env()
    env.pop("LUCIDDREAM_THREADS", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert int(out.stdout) == max(1, threads.physical_cores() - 1), out.stderr


@pytest.mark.gpu
def test_cuda_dream_is_the_cpu_dream() -> None:
    """The same seed on the GPU and on the CPU: the same picture within 3 levels at the 99.9th percentile (float
    sums run in another order on the GPU, so bit equality is not expected; a different dream differs by tens)."""
    import luciddream

    image = fixture_image("chelsea")
    cpu = luciddream.dream(image, None, "layer:block10", octaves=2, steps=4, seed=3, device="cpu")
    gpu = luciddream.dream(image, None, "layer:block10", octaves=2, steps=4, seed=3, device="cuda")
    diff = np.abs(cpu.astype(np.int16) - gpu.astype(np.int16))
    assert np.percentile(diff, 99.9) <= 3 and diff.mean() < 0.5, (np.percentile(diff, 99.9), diff.mean())


@pytest.mark.gpu
def test_cuda_out_of_memory_cap_is_one_sentence() -> None:
    import luciddream

    with pytest.raises(luciddream.DreamError, match="--max-memory"):
        luciddream.dream(fixture_image("chelsea"), None, device="cuda", max_memory=1, seed=1)


def test_hello_from_the_cache_needs_no_torch(tmp_path: Path) -> None:
    """After one worker (or `luciddream offer`) answered, the next hello is served without importing torch, and
    says the same."""
    env = dict(os.environ, LUCIDDREAM_CACHE=str(tmp_path))
    code = ("import json, sys; from luciddream import jobs, protocol; info = jobs.engine_info(protocol.Limits(), "
            "cached=True); info.pop('pid'); print(json.dumps([info, 'torch' in sys.modules]))")
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    (info1, torch1), (info2, torch2) = json.loads(first.stdout), json.loads(second.stdout)
    assert torch1 and not torch2 and info1 == info2
    assert list(tmp_path.glob("hello-*.json"))


def test_serve_runs_cpu_jobs_one_at_a_time_with_the_cores() -> None:
    """`serve` sends every CPU job, whatever its device setting says, to one runner that runs them one after
    another, so several jobs share the one set of threads.configure() threads instead of multiplying them."""
    import torch

    from luciddream import protocol, server, threads

    engine = server.Engine(None, protocol.Limits(), 4)
    jobs = [protocol.JobRequest(str(i), 64, 64, 3, "u8", settings=s)
            for i, s in enumerate([{"device": "cpu"}, {}, {"device": "cpu"}])]
    runners = {id(engine.runner_for(job)) for job in jobs}
    if not torch.cuda.is_available():
        runners.add(id(engine.runner_for(protocol.JobRequest("auto", 64, 64, 3, "u8", settings={"device": "auto"}))))
    assert len(runners) == 1
    assert threads.default_threads({}) == threads.physical_cores()
