"""Seconds from click to quick preview and to full result in real Krita (issue 17), for docs/performance.md.

Drives the real docker through the test driver (tests/hosts/krita_driver, steps bench_* in loop.py): a 1 MP photo
(a fixture scaled to 1000×1000) with a 512×512 selection, "Test engine" first so the worker and the default model
are warm, then for a layer look and a class look: Preview twice (the first also loads what that look needs, e.g.
Lite1 for class looks) and Dream, each timed from the click to the docker's finished signal. The docker's
screenshot after the run is saved too (docs/krita-docker.png comes from it).

    .venv/bin/python benchmarks/krita_loop.py [--krita krita-5.1] [--out /tmp/krita-loop-bench]

Timings depend on the load of the machine: the script prints the load average before and after.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "hosts"))

import krita_launch  # noqa: E402
from roots import KRITA_HOSTS  # noqa: E402

PHOTO = Path("/work/shared/fixtures/chelsea.png")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--krita", default="krita-5.1", choices=[h.id for h in KRITA_HOSTS])
    parser.add_argument("--photo", type=Path, default=PHOTO)
    parser.add_argument("--side", type=int, default=1000, help="the picture's side (1000: 1 MP)")
    parser.add_argument("--selection", type=int, default=512)
    parser.add_argument("--out", type=Path, default=Path("/tmp/krita-loop-bench"))
    args = parser.parse_args()
    from PIL import Image

    host = {h.id: h for h in KRITA_HOSTS}[args.krita]
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    image = args.out / "photo.png"
    Image.open(args.photo).convert("RGB").resize((args.side, args.side), Image.LANCZOS).save(image)
    corner = (args.side - args.selection) // 2
    version = krita_launch.krita_version(host.root)
    template = krita_launch.template_home(Path(f"/tmp/luciddream-krita-template-{version}-{os.getuid()}"),
                                          host.root)
    home = krita_launch.new_home(template)
    try:
        installed = krita_launch.install_plugin(home, ROOT / ".venv")
        if installed.returncode != 0:
            print(installed.stdout, installed.stderr, file=sys.stderr)
            return 1
        krita_launch.add_driver(home)
        load_before = os.getloadavg()
        scenario = {"steps": ["check_registration", "bench_setup", "bench_layer", "bench_class",
                              "bench_screenshot"], "timeout_s": 1500,
                    "bench": {"image": str(image), "selection": [corner, corner, args.selection, args.selection]}}
        result = krita_launch.launch(home, args.out / "run", scenario, timeout=1600, root=host.root)
        load_after = os.getloadavg()
    finally:
        shutil.rmtree(home, ignore_errors=True)
    report_file = args.out / "run" / "report.json"
    if not report_file.exists():
        print(f"Krita exited with {result.returncode} and no report: see {args.out / 'run'}", file=sys.stderr)
        return 1
    report = json.loads(report_file.read_text())
    if report.get("error"):
        print(report["error"], file=sys.stderr)
    print(f"{args.krita}, {args.side}×{args.side} picture, {args.selection}×{args.selection} selection; load average "
          f"{load_before[0]:.2f} before, {load_after[0]:.2f} after (2 cores)")
    print(f"engine test: {(report.get('bench_engine') or ['?', '?'])[1]!s}".replace("\n", " | "))
    for look, figures in (report.get("bench") or {}).items():
        for label, run in figures.items():
            size = f" at {run['size'][0]}×{run['size'][1]}" if "size" in run else ""
            print(f"{look:28} {label:14} {run['seconds']:7.2f} s  {run['outcome']}{size}")
    shot = args.out / "run" / "docker-bench.png"
    if shot.exists():
        print(f"docker screenshot: {shot}")
    return 0 if report.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
