"""Seconds from click to preview and from click to result in the real GIMP, for a 512×512 selection of a 1 MP photo.

Drives GIMP 3 (the gimp-3.0 root of tests/hosts; `--host gimp-3.2` for the other) through its real window on a
private Xvfb, as tests/test_gimp_host.py does: the Lucid Dream dialog opens on chelsea.png scaled to 1000×1000
with a 512×512 selection, tests/hosts/gimp_gui_loop.sh presses Preview twice (the first may still meet a worker
loading its model; the second is the warm figure the issue's 3 s / 10 s promise is about), then OK, and the
figures come from the plug-in's own log lines (preview: from the click to the picture in the dialog) and the
driver's clock (result: from OK to the written layer). A layer look (the classic preset) and a class look
(goldfish, grow) at the dialog's defaults; the class run's dialog is saved as a PNG (--shot) for docs/.

Usage (as root, roots built): .venv/bin/python benchmarks/gimp_loop.py [--host gimp-3.0] [--shot docs/x.png]
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "hosts")]
from roots import GIMP_HOSTS  # noqa: E402
from test_gimp_host import SHARE, Profile, finish, job, run_gimp  # noqa: E402
from xwd_to_png import read_xwd  # noqa: E402

LOOKS = {   # GIMP's saved dialog values: what the dialog opens with
    "layer look (classic preset)": '(targets "")\n(preset "classic")\n',
    "class look (goldfish, grow)": '(targets "goldfish")\n(preset "none")\n(look "grow")\n',
}
DEFAULTS = '(octaves 4)\n(steps 0)\n(tile 0)\n(seed 7)\n(output "new-layer")\n(variations 1)\n'


def one_run(profile: Profile, folder: Path, values: str, photo: Path, steps: str = "preview,preview,shot,ok") -> dict:
    spec = job("rgb", "u8", alpha=True, image=(1000, 1000), selection=(244, 244, 512, 512),
               run_mode="INTERACTIVE", last_values=values + DEFAULTS, pixels_file=f"{SHARE}/photo.rgba")
    spec["loop_steps"] = steps
    (folder / "photo.rgba").write_bytes(photo.read_bytes())
    report = finish(run_gimp(profile.root, profile.rel, folder, spec, gui=True, driver="gimp_gui_loop.sh",
                             timeout=900), folder, timeout=950)
    log = (folder / "gimp.log").read_text()
    previews = [float(s) for s in re.findall(r"luciddream: preview shown in ([0-9.]+) s", log)]
    times = dict(line.split() for line in (folder / "times").read_text().splitlines() if line.strip())
    result = float(times["done"]) - float(times["ok"]) if "done" in times and "ok" in times else None
    return {"status": report["status"], "previews": previews, "result": result, "layers": report["layer_names"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="gimp-3.0", choices=[h.id for h in GIMP_HOSTS])
    parser.add_argument("--shot", type=Path, help="save the class run's dialog here (PNG)")
    parser.add_argument("--shot-only", action="store_true", help="only the class look's preview and its picture")
    args = parser.parse_args()
    host = next(h for h in GIMP_HOSTS if h.id == args.host)
    if host.missing():
        raise SystemExit(host.missing())
    work = Path(tempfile.mkdtemp(prefix="luciddream-gimp-loop-"))
    source = Path("/work/shared/fixtures/chelsea.png")
    photo = np.asarray(Image.open(source).convert("RGBA").resize((1000, 1000), Image.LANCZOS))
    raw = work / "photo.rgba"
    raw.write_bytes(np.ascontiguousarray(photo).tobytes())
    profile = Profile(host, f"/root/luciddream-bench/{uuid.uuid4().hex[:10]}", work / "install-home")
    profile.plugins.mkdir(parents=True)
    (profile.plugins.parent / "gimprc").write_text("(show-welcome-dialog no)\n")
    profile.install()
    try:
        figures = measure(profile, work, raw, args.shot, args.shot_only)
    finally:
        shutil.rmtree(host.root / profile.rel.lstrip("/"), ignore_errors=True)
    print(json.dumps(figures, indent=1))


def measure(profile: Profile, work: Path, raw: Path, shot: Optional[Path], shot_only: bool = False) -> dict:
    figures = {}
    for name, values in LOOKS.items():
        if shot_only and not name.startswith("class"):
            continue
        folder = work / name.split()[0]
        folder.mkdir()
        figures[name] = one_run(profile, folder, values, raw, "preview,shot,cancel" if shot_only else
                                "preview,preview,shot,ok")
        result = figures[name]["result"]
        print(f"{profile.host.id} {name}: preview {', '.join(f'{s:.1f}' for s in figures[name]['previews'])} s "
              f"(first, warm), result {f'{result:.1f} s' if result else '-'} after OK", flush=True)
        if shot and name.startswith("class") and (folder / "screen.xwd").is_file():
            geometry = dict(line.split("=", 1) for line in (folder / "dialog.geometry").read_text().split())
            x, y, w, h = (int(geometry[k]) for k in ("X", "Y", "WIDTH", "HEIGHT"))
            read_xwd((folder / "screen.xwd").read_bytes()).crop((x, y, x + w, y + h)).save(shot)
            print(f"dialog saved to {shot}")
    return figures


if __name__ == "__main__":
    main()
