"""Speed and memory of dreaming on this machine: prints figures, asserts nothing. Run on a quiet machine:

    .venv/bin/python benchmarks/speed.py [--quick]

Compares, in one run: the naive reference loop (the TensorFlow DeepDream tutorial ported to eager fp32 PyTorch:
whole image every step, random roll, gradient / std, octaves ×1.3) with luciddream's dream at equal steps, octaves
and output size; per-megapixel-step costs for a layer and a class target; achieved GFLOP/s next to the machine's
matmul peak; and peak RSS of big dreams, each in its own subprocess so one does not inflate the next.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

import luciddream
from luciddream.nets import load_model

FIXTURES = Path(os.environ.get("LUCIDDREAM_FIXTURES", Path(__file__).resolve().parents[2] / "shared" / "fixtures"))


def photo(width: int, height: int) -> np.ndarray:
    return np.array(Image.open(FIXTURES / "astronaut.png").convert("RGB").resize((width, height), Image.LANCZOS))


def matmul_peak() -> float:
    a, b = torch.rand(2048, 2048), torch.rand(2048, 2048)
    a @ b
    t = time.perf_counter()
    for _ in range(5):
        a @ b
    return 5 * 2 * 2048 ** 3 / (time.perf_counter() - t) / 1e9


def naive_dream(image: np.ndarray, layer: str, octaves: int, steps: int, step: float = 0.01, seed: int = 0):
    """The tutorial's loop on the plain (unfused) network: no tiles, no mask, whole image every step."""
    net = load_model("lite0", "cpu", fused=False)
    rng = np.random.default_rng(seed)
    base = torch.from_numpy(image.astype(np.float32) / 255).permute(2, 0, 1)[None]
    h, w = base.shape[2:]
    img = base
    for n in range(-octaves + 1, 1):
        size = (round(h * 1.3 ** n), round(w * 1.3 ** n))
        img = F.interpolate(img, size=size, mode="bilinear", align_corners=False)
        for _ in range(steps):
            dy, dx = (int(v) for v in rng.integers(-32, 33, 2))
            x = torch.roll(img, (dy, dx), (2, 3)).requires_grad_(True)
            loss = net(x, [layer])[layer].pow(2).mean()
            (g,) = torch.autograd.grad(loss, x)
            g = torch.roll(g, (-dy, -dx), (2, 3))
            img = (img + step * g / (g.std() + 1e-8)).clamp(0, 1)
    return img


def flops_per_step(size: int, layer: str) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    net = load_model("lite0", "cpu")
    x = torch.rand(1, 3, size, size, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        v = net(x, [layer])[layer].pow(2).mean()
        v.backward()  # the counter cannot follow autograd.grad on a leaf
    return counter.get_total_flops()


def cpu_ticks() -> tuple[int, int]:
    """(all, steal) jiffies of this machine so far. Steal is time the host ran someone else on our virtual cores:
    it inflates every wall-clock figure, so the run reports how much there was."""
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:9]]
    except OSError:
        return 0, 0
    return sum(values), values[7] if len(values) > 7 else 0


def steal_share(since: tuple[int, int]) -> float:
    now = cpu_ticks()
    return 100.0 * (now[1] - since[1]) / max(1, now[0] - since[0])


def step_seconds(net, size: int, layer: str = "block10", reps: int = 3) -> float:
    """Best-of seconds for one forward+backward to `layer` on a size² input (the first call warms up)."""
    x = torch.rand(1, 3, size, size).contiguous(memory_format=torch.channels_last)
    best = float("inf")
    for _ in range(reps + 1):
        xx = x.clone().requires_grad_(True)
        t = time.perf_counter()
        v = net(xx, [layer])[layer].pow(2).mean()
        torch.autograd.grad(v, xx)
        best = min(best, time.perf_counter() - t)
    return best


def per_megapixel(net, size: int, reps: int = 3) -> float:
    return step_seconds(net, size, reps=reps) / (size * size / 1e6)


def timed(fn, *args, **kw) -> float:
    t = time.perf_counter()
    fn(*args, **kw)
    return time.perf_counter() - t


def child(spec: str) -> None:
    """Run one dream in this process and print its time and peak RSS as JSON (called through a subprocess)."""
    cfg = json.loads(spec)
    img = np.tile(photo(512, 512), (cfg["size"] // 512, cfg["size"] // 512, 1))
    mask = None
    if cfg.get("selection"):
        side = int(cfg["size"] * cfg["selection"] ** 0.5)
        mask = np.zeros(img.shape[:2], np.float32)
        o = (cfg["size"] - side) // 2
        mask[o:o + side, o:o + side] = 1
    t = time.perf_counter()
    extra = {"tile": cfg["tile"]} if "tile" in cfg else {}
    luciddream.dream(img, mask, cfg.get("target", "layer:block10"), octaves=cfg.get("octaves", 4),
                     steps=cfg.get("steps", 10), seed=1, **extra)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    print(json.dumps({"seconds": time.perf_counter() - t, "peak_rss_gb": rss}))


def run_child(**cfg) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(cfg)], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def cold_start(runs: int = 3) -> str:
    """Seconds from spawning a worker to its hello and to the first finished 256² default dream, and from starting
    `luciddream dream` on a 256² file to the file written (each a fresh process, as a plug-in's first click)."""
    import tempfile

    from luciddream.protocol import Client

    small = photo(256, 256)
    hellos, firsts, clis = [], [], []
    with tempfile.TemporaryDirectory() as folder:
        Image.fromarray(small).save(Path(folder) / "in.png")
        for _ in range(runs):
            t = time.perf_counter()
            client = Client.spawn(sys.executable)
            hellos.append(time.perf_counter() - t)
            client.dream(small.tobytes(), 256, 256, 3, "u8", None, "", {"seed": 1}).result()
            firsts.append(time.perf_counter() - t)
            client.close()
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "luciddream", "dream", str(Path(folder) / "in.png"), "-o",
                            str(Path(folder) / "out.png"), "--seed", "1", "-q"], check=True)
            clis.append(time.perf_counter() - t)
    spread = lambda v: f"{min(v):.2f}–{max(v):.2f} s"  # noqa: E731
    return (f"cold start ({runs} fresh processes each): worker hello {spread(hellos)}, first 256² default dream "
            f"done {spread(firsts)}; `luciddream dream` 256² process start to file {spread(clis)}")


def memory_cap(cap_mb: int = 1500) -> str:
    """The issue's case: 2048² with a 1400 px selection, 2 octaves × 3 steps, under --max-memory: the tile the
    engine chose and the process's measured peak RSS against the cap."""
    import tempfile

    code = ("import resource, sys; from luciddream.cli import main; code = main(sys.argv[1:]); "
            "print('peak', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, file=sys.stderr); "
            "sys.exit(code)")
    with tempfile.TemporaryDirectory() as folder:
        img = np.tile(photo(512, 512), (4, 4, 1))
        mask = np.zeros(img.shape[:2], np.uint8)
        mask[324:1724, 324:1724] = 255
        Image.fromarray(img).save(Path(folder) / "in.png")
        Image.fromarray(mask).save(Path(folder) / "mask.png")
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code, "dream", str(Path(folder) / "in.png"), "--mask",
                              str(Path(folder) / "mask.png"), "-o", str(Path(folder) / "out.png"), "--seed", "1",
                              "--octaves", "2", "--steps", "3", "--max-memory", f"{cap_mb}M"],
                             capture_output=True, text=True, check=True)
        seconds = time.perf_counter() - t
    peak = int(out.stderr.rsplit("peak", 1)[1].split()[0])
    tile = out.stderr.rsplit("tile ", 1)[1].split(",")[0]
    return (f"memory cap: 2048² with a 1400² selection, 2 octaves × 3 steps, --max-memory {cap_mb}M: tile {tile}, "
            f"peak RSS {peak / 2 ** 20:.0f} MB ({100 * peak / (cap_mb * 2 ** 20):.0f}% of the cap), {seconds:.1f} s")


def thread_counts(counts=(1, 2), size: int = 512) -> str:
    """One forward+backward to block10 at size² with each thread count (best of 5), and the load beside it."""
    net = load_model("lite0", "cpu")
    before = torch.get_num_threads()
    times = {}
    for n in counts:
        torch.set_num_threads(n)
        times[n] = step_seconds(net, size, reps=5)
    torch.set_num_threads(before)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"threads, {size}² forward+backward to block10 (best of 5): "
            + ", ".join(f"{n}: {t:.3f} s" for n, t in times.items())
            + f" (load average {load:.1f} at the end, {os.cpu_count()} logical CPUs)")


def gpu_figures(device: str) -> None:
    """The issue's GPU figures: a 1 MP default layer dream warm, a 4096² dream, a 512² class dream, peak VRAM."""
    luciddream.dream(photo(128, 128), None, None, octaves=1, steps=1, device=device)  # load and warm up
    img = photo(1024, 1024)
    luciddream.dream(img, None, None, seed=1, device=device)  # the shapes of a 1 MP dream, once
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    warm = timed(luciddream.dream, img, None, None, seed=2, device=device)
    print(f"{device}: 1 MP default layer dream, warm: {warm:.2f} s (goal ≤ 1 s), peak VRAM "
          f"{torch.cuda.max_memory_allocated() / 2 ** 30:.2f} GB")
    torch.cuda.reset_peak_memory_stats()
    big = np.tile(photo(512, 512), (8, 8, 1))
    t4096 = timed(luciddream.dream, big, None, None, seed=1, device=device)
    print(f"{device}: 4096² default dream: {t4096:.1f} s (goal ≤ 10 s), peak VRAM "
          f"{torch.cuda.max_memory_allocated() / 2 ** 30:.2f} GB")
    t_class = timed(luciddream.dream, photo(512, 512), None, "goldfish", seed=1, device=device)
    print(f"{device}: 512² class dream (goldfish): {t_class:.1f} s (goal ≤ 5 s)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="skip the 4096² and 8192² runs")
    ap.add_argument("--tiles", default="", help="also time a 1 MP default dream at these tile sizes, e.g. 256,1024")
    ap.add_argument("--device", default="cpu", help="cuda: the GPU figures only (benchmarks/gpu_check.sh)")
    ap.add_argument("--only", default="", help="comma-separated sections: cold, memory, threads (nothing else)")
    ap.add_argument("--child")
    args = ap.parse_args()
    if args.child:
        child(args.child)
        return
    start = cpu_ticks()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if args.device != "cpu":
        gpu_figures(args.device)
        return
    sections = {"cold": cold_start, "memory": memory_cap, "threads": thread_counts}
    if args.only:
        for name in args.only.split(","):
            print(sections[name.strip()]())
        print(f"CPU steal during this run: {steal_share(start):.0f}%")
        return
    peak = matmul_peak()
    print(f"fp32 matmul 2048²: {peak:.0f} GFLOP/s")

    img = photo(1024, 1024)
    luciddream.dream(photo(128, 128), None, "layer:block10", octaves=1, steps=1)  # load and warm up
    octs, steps = 4, 10
    t_naive = timed(naive_dream, img, "block10", octs, steps)
    t_ours = timed(luciddream.dream, img, None, "layer:block10", octaves=octs, octave_scale=1.3, steps=steps, seed=1)
    print(f"1 MP layer dream, {octs} octaves × {steps} steps (×1.3): naive {t_naive:.1f} s, luciddream "
          f"{t_ours:.1f} s, speed-up {t_naive / t_ours:.2f}×")
    t_default = timed(luciddream.dream, img, None, None, seed=1)
    t_again = timed(luciddream.dream, img, None, None, seed=2)
    print(f"1 MP default dream (4 octaves ×1.4, 10 steps): {t_default:.1f} s; again in the same process "
          f"(kernels for these shapes already compiled, as in a running worker): {t_again:.1f} s")
    for size in (int(v) for v in args.tiles.split(",") if v.strip()):
        first = timed(luciddream.dream, img, None, None, seed=1, tile=size)
        again = timed(luciddream.dream, img, None, None, seed=2, tile=size)
        print(f"  --tile {size}: {first:.1f} s, again {again:.1f} s")

    mp_steps = sum((1024 / 1.4 ** k) ** 2 for k in range(4)) / 1e6 * steps
    t_class = timed(luciddream.dream, img, None, "goldfish", seed=1)
    print(f"per megapixel-step: layer {t_default / mp_steps:.3f} s, class {t_class / mp_steps:.3f} s")

    for layer in ("block10", "logits"):
        flops = flops_per_step(512, layer)
        t = step_seconds(load_model("lite0", "cpu"), 512, layer, reps=5)
        print(f"512² forward+backward to {layer}: {flops / 1e9:.1f} GFLOP in {t:.3f} s = {flops / t / 1e9:.0f} "
              f"GFLOP/s ({100 * flops / t / 1e9 / peak:.0f}% of matmul peak)")

    plain, fused = load_model("lite0", "cpu", fused=False), load_model("lite0", "cpu")
    naive_net = per_megapixel(plain, 1024, reps=1)
    ours = {size: per_megapixel(fused, size) for size in (352, 416, 544, 800)}
    print(f"network alone, forward+backward to block10, s per megapixel: plain network on the whole 1024² image "
          f"(as the naive loop) {naive_net:.3f}; fused network with the hand-written backward on windows of "
          + ", ".join(f"{k}² {v:.3f}" for k, v in ours.items())
          + f": at best {naive_net / min(ours.values()):.2f}× less (the network's share of any speed-up; tiles "
          "only add area to it)")

    whole = run_child(size=2048, octaves=4, steps=5)
    part = run_child(size=2048, octaves=4, steps=5, selection=0.1)
    print(f"2048²: whole image {whole['seconds']:.1f} s; a 10% selection {part['seconds']:.1f} s "
          f"({100 * part['seconds'] / whole['seconds']:.0f}% of the whole)")
    if not args.quick:
        for size in (4096, 8192):
            r = run_child(size=size, octaves=4, steps=2)
            print(f"{size}² dream (4 octaves × 2 steps): {r['seconds']:.0f} s, peak RSS {r['peak_rss_gb']:.2f} GB")
    for section in sections.values():
        print(section())
    print(f"CPU steal during this run: {steal_share(start):.0f}% (above a few percent, wall-clock figures are "
          "inflated and ratios between them unreliable)")


if __name__ == "__main__":
    main()
