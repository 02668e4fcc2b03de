"""The GIMP plug-in inside real GIMP 3.0.4 and 3.2.6 (Debian trixie and sid roots from tests/hosts/setup_gimp.sh).

Each test builds an image in GIMP's batch interpreter (tests/hosts/gimp_dream_batch.py), calls plug-in-luciddream
through the PDB as a script would, and judges the pixels here: outside the selection bit-identical, inside changed,
8/16-bit, RGB/gray, layer offsets, new layer or this layer, clear refusals. Every test runs on each version (ids
gimp-3.0 and gimp-3.2: `pytest -k gimp-3.2` runs one). The plug-in runs under the root's Python (3.13 in trixie,
3.14 in sid) and spawns the engine worker from this project's environment, bind-mounted at the same paths.
"""
from __future__ import annotations

import array
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "hosts"))
from host_fixtures import Profile  # noqa: E402  (the session fixtures gimp_host, profile ...: tests/conftest.py)
from roots import GIMP_HOSTS, GimpHost, in_root, shared_folders  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BATCH = REPO / "tests" / "hosts" / "gimp_dream_batch.py"
LOOP_BATCH = REPO / "tests" / "hosts" / "gimp_loop_batch.py"   # the artist's loop: several calls on one image
VENV = Path(sys.prefix)            # the project's environment: the plug-in's engine.json points at its Python
SHARE = "/work-share"              # where each test's folder appears inside the root
FAST = {"steps": 2, "octaves": 1, "tile": 128, "seed": 3, "strength": 8.0}

pytestmark = pytest.mark.gimp


def _host_of(root: Path) -> GimpHost:
    return next(host for host in GIMP_HOSTS if host.root == root)


@pytest.fixture(scope="session")
def engine_server():
    """`luciddream serve` on 127.0.0.1 outside the root (the root shares the network): (url, token)."""
    token = uuid.uuid4().hex
    server = subprocess.Popen([str(VENV / "bin" / "luciddream"), "serve", "--port", "0", "--token", token],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              env=dict(os.environ, OMP_NUM_THREADS="1"))
    try:
        line = server.stdout.readline()
        assert "listening on http://" in line, line
        yield line.split("listening on ", 1)[1].split()[0].rstrip("/"), token
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture
def served_home(profile: Profile, engine_server):
    """The profile with engine.json naming the server instead of a Python to spawn, for one test; then the
    engine.json it had again (what install.py without --server wrote: byte for byte what running it again writes)."""
    url, token = engine_server
    config = profile.plugins / "luciddream" / "engine.json"
    spawned = config.read_bytes()
    profile.install("--server", url, "--token", token)
    try:
        yield profile.rel
    finally:
        config.write_bytes(spawned)


def run_gimp(root: Path, home: str, folder: Path, job: Dict[str, Any], timeout: int = 240,
             tag: str = "", gui: bool = False, batch: Path = BATCH, driver: str = "gimp_gui_driver.sh"
             ) -> subprocess.Popen:
    """Start gimp-console in the root on one job; the test's folder appears at /work-share inside."""
    job = dict(job, out=SHARE)
    (folder / "job.json").write_text(json.dumps(job))
    host = _host_of(root)
    mounts = [(p, str(root) + p) for p in shared_folders()] + [(str(folder), str(root) + SHARE),
                                                                 ("/proc", f"{root}/proc")]
    script = "set -e\n" + "".join(f'mkdir -p "{dst}"; mount --bind "{src}" "{dst}"\n' for src, dst in mounts)
    no_fonts = "" if job.get("fonts") else "-f "       # fonts cost seconds; only text layers need them
    script += ('exec chroot "$0" env -i HOME="$1" PATH=/usr/bin:/bin LANG=C.UTF-8 OMP_NUM_THREADS=1 '
               f'LUCIDDREAM_GIMP_JOB={SHARE}/job.json LUCIDDREAM_TEST_TAG="$2" GIMP_GUI={host.gui} '
               f'timeout -k 5 {timeout} ')
    if gui:
        steps = job.get("loop_steps", "preview,cancel")   # gimp_gui_loop.sh's user
        display = random.randint(150, 249)   # a private Xvfb each: several GIMPs (and other helpers) at once
        script += f'env BATCH={SHARE}/{batch.name} LOOP_STEPS={steps} DISPLAY_NUMBER={display} sh {SHARE}/{driver}'
        for name in (driver, "gimp_gui_find.sh"):   # the driver and the helper it sources
            shutil.copy(REPO / "tests" / "hosts" / name, folder / name)
    else:
        script += (f'{host.console} -i -n -d {no_fonts}--batch-interpreter python-fu-eval '
                   f'-b "exec(open(\'{SHARE}/{batch.name}\').read())" --quit')
    shutil.copy(batch, folder / batch.name)
    return subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(root), home,
                             tag], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen, folder: Path, timeout: int = 300) -> Dict[str, Any]:
    out, _ = proc.communicate(timeout=timeout)
    report_file = folder / "report.json"
    assert report_file.is_file(), f"GIMP wrote no report (exit {proc.returncode}):\n{out[-4000:]}"
    report = json.loads(report_file.read_text())
    assert report.get("ok"), f"the batch script failed:\n{report.get('error')}\n{out[-3000:]}"
    report["log"] = out
    return report


@pytest.fixture
def gimp(gimp_root: Path, gimp_home: str, tmp_path: Path):
    """Run one job in GIMP and return its report (with the pixel files beside it in tmp_path)."""
    def go(job: Dict[str, Any]) -> Dict[str, Any]:
        return finish(run_gimp(gimp_root, gimp_home, tmp_path, job), tmp_path)
    return go


def job(base: str = "rgb", sample: str = "u8", alpha: bool = True, precision: Optional[str] = None,
        image=(96, 80), layer=None, selection=(20, 16, 64, 48), **extra: Any) -> Dict[str, Any]:
    precision = precision or {"u8": "U8_NON_LINEAR", "u16": "U16_NON_LINEAR", "float": "FLOAT_LINEAR"}[sample]
    spec = {"base": base, "sample": sample, "alpha": alpha, "precision": precision, "image": list(image),
            "layer": list(layer or (image[0], image[1], 0, 0)), "selection": list(selection) if selection else None,
            "args": dict(FAST, output="this-layer")}
    args = extra.pop("args", {})
    spec["args"].update(args)
    spec.update(extra)
    return spec


def samples(data: bytes, sample: str) -> array.array:
    a = array.array({"u8": "B", "u16": "H", "float": "f"}[sample])
    a.frombytes(data)
    return a


def compare(folder: Path, spec: Dict[str, Any], after_name: str = "after.bin") -> Dict[str, int]:
    """Counts of changed pixels inside and outside the selection (a pixel is selected when the mask is > 0)."""
    lw, lh = spec["layer"][:2]
    ch = (1 if spec["base"] == "gray" else 3) + (1 if spec["alpha"] else 0)
    before = samples((folder / "before.bin").read_bytes(), spec["sample"])
    after = samples((folder / after_name).read_bytes(), spec["sample"])
    assert len(before) == len(after) == lw * lh * ch
    mask = (folder / "selection.bin").read_bytes() if spec["selection"] else bytes([255]) * (lw * lh)
    counts = {"inside": 0, "outside": 0, "alpha": 0, "selected": 0}
    for i in range(lw * lh):
        px_b, px_a = before[i * ch:(i + 1) * ch], after[i * ch:(i + 1) * ch]
        selected = mask[i] > 0
        counts["selected"] += selected
        if px_b != px_a:
            counts["inside" if selected else "outside"] += 1
        if spec["alpha"] and px_b[-1] != px_a[-1]:
            counts["alpha"] += 1
    return counts


# --------------------------------------------------------------------------------------------- tests

@pytest.mark.parametrize("base,sample", [("rgb", "u8"), ("gray", "u16"), ("gray", "u8")])   # RGB 16-bit: below
def test_dreams_inside_the_selection_only(gimp, tmp_path: Path, base: str, sample: str) -> None:
    spec = job(base, sample, alpha=base == "rgb")
    report = gimp(spec)
    assert report["status"] == "success", report.get("message")
    assert report["layers_after"] == report["layers_before"]
    counts = compare(tmp_path, spec)
    assert counts["outside"] == 0
    assert counts["alpha"] == 0
    assert counts["inside"] > 0.5 * counts["selected"], counts


def test_new_layer_with_offsets_and_feathered_ellipse(gimp, tmp_path: Path) -> None:
    """A layer smaller than the image and moved: the selection is read in image coordinates."""
    spec = job("rgb", "u8", alpha=True, image=(120, 100), layer=(90, 70, 25, 20), selection=(40, 30, 64, 48),
               ellipse=True, feather=8.0, args={"output": "new-layer", "targets": "goldfish", "preset": "none"})
    report = gimp(spec)
    assert report["status"] == "success", report.get("message")
    assert report["layers_after"] == report["layers_before"] + 1
    assert report["layer_names"][0].startswith("photo (dream: goldfish")
    assert report["new_offsets"] == [25, 20] and report["new_size"] == [90, 70]
    assert compare(tmp_path, spec) == {**compare(tmp_path, spec), "inside": 0, "outside": 0}   # source untouched
    counts = compare(tmp_path, spec, "new.bin")
    assert counts["outside"] == 0 and counts["alpha"] == 0
    assert counts["inside"] > 0.4 * counts["selected"], counts


def test_through_luciddream_serve(gimp_root: Path, profile: Profile, served_home: str, tmp_path: Path) -> None:
    engine = json.loads((profile.plugins / "luciddream" / "engine.json").read_text())
    assert engine["url"].startswith("http://127.0.0.1:") and engine["token"]
    spec = job("rgb", "u8", alpha=False)
    report = finish(run_gimp(gimp_root, served_home, tmp_path, spec), tmp_path)
    assert report["status"] == "success", report.get("message")
    counts = compare(tmp_path, spec)
    assert counts["outside"] == 0 and counts["inside"] > 0.5 * counts["selected"], counts


def test_whole_layer_without_selection_and_float(gimp, tmp_path: Path) -> None:
    spec = job("rgb", "float", alpha=False, image=(64, 48), selection=None)
    report = gimp(spec)
    assert report["status"] == "success", report.get("message")
    counts = compare(tmp_path, spec)
    assert counts["inside"] > 0.5 * counts["selected"], counts


def test_repeat_uses_the_last_values(gimp, tmp_path: Path) -> None:
    """Filters › Repeat (WITH_LAST_VALS) dreams with the values GIMP saved after the last interactive run (the
    dialog cannot open headless, so the test writes GIMP's settings file as that run would have)."""
    last = ('(targets "jellyfish")\n(preset "none")\n(octaves 1)\n(steps 2)\n(tile 128)\n(seed 5)\n'
            '(strength 8.0)\n(output "new-layer")\n')
    spec = job("rgb", "u8", run_mode="WITH_LAST_VALS", last_values=last)
    report = gimp(spec)
    assert report["status"] == "success", report.get("message")
    assert report["layer_names"][0].startswith("photo (dream: jellyfish"), report["layer_names"]
    counts = compare(tmp_path, spec, "new.bin")
    assert counts["outside"] == 0 and counts["inside"] > 0


REFUSALS = [   # (name, what differs from the default job, words the one-sentence message must contain)
    ("text-layer", {"kind": "text"}, '"Hello" is a text layer'),
    ("group", {"kind": "group"}, '"group" is a layer group'),
    ("layer-mask", {"kind": "mask"}, "layer mask"),
    ("locked", {"kind": "locked"}, '"photo" has its pixels locked'),
    ("indexed", {"indexed": True}, "Image › Mode › RGB"),
    ("unknown-class", {"args": {"targets": "notaclassatall"}}, "notaclassatall"),
    ("bad-weight", {"args": {"preset": "eyes", "targets": "goldfish=", "output": "new-layer"}}, "weight"),
    ("off-layer", {"selection": (200, 200, 10, 10), "image": (300, 300), "layer": (50, 50, 0, 0)},
     "does not touch"),
    ("nothing-on-layer", {"image": (300, 300), "layer": (50, 50, 100, 100), "selection": (0, 0, 10, 10),
                          "add_selection": [(290, 290, 10, 10)]}, "Nothing is selected on this layer"),
]


@pytest.fixture(scope="session")
def refusals(gimp_root: Path, profile: "Profile", tmp_path_factory: pytest.TempPathFactory):
    """All refusal cases in one GIMP run (fonts on, for the text layer): reports and folders, in REFUSALS order."""
    folder = tmp_path_factory.mktemp("refusals")
    cases = []
    for i, (_, extra, _) in enumerate(REFUSALS):
        (folder / f"case{i}").mkdir()
        cases.append(dict(job("rgb", "u8", **json.loads(json.dumps(extra))), out=f"{SHARE}/case{i}"))
    proc = run_gimp(gimp_root, profile.rel, folder, {"cases": cases, "fonts": True})
    out, _ = proc.communicate(timeout=600)
    results = []
    for i, case in enumerate(cases):
        report_file = folder / f"case{i}" / "report.json"
        assert report_file.is_file(), f"no report for case {i} (exit {proc.returncode}):\n{out[-4000:]}"
        results.append((json.loads(report_file.read_text()), folder / f"case{i}", case))
    return results


@pytest.mark.parametrize("index", range(len(REFUSALS)), ids=[name for name, _, _ in REFUSALS])
def test_refusals_are_one_sentence_and_change_nothing(refusals, index: int) -> None:
    report, folder, spec = refusals[index]
    words = REFUSALS[index][2]
    assert report.get("ok"), report.get("error")
    assert report["status"] == "execution-error", report
    message = report.get("message", "")
    assert words in message and "Traceback" not in message and "\n" not in message.strip(), message
    assert report["layers_after"] == report["layers_before"]
    if (folder / "before.bin").exists():
        assert (folder / "after.bin").read_bytes() == (folder / "before.bin").read_bytes()


def test_install_py_picks_the_folder_this_gimps_first_start_makes(gimp_host: GimpHost, tmp_path: Path) -> None:
    """A user who never started GIMP: install.py, run inside the root by its own Python (3.13 in trixie, 3.14 in
    sid) with only this GIMP on PATH, puts the plug-in in GIMP/3.0 or GIMP/3.2; GIMP's first start then makes exactly
    that profile folder and the filter dreams."""
    rel = f"/root/luciddream-first/{uuid.uuid4().hex[:10]}"
    home = gimp_host.root / rel.lstrip("/")
    home.mkdir(parents=True)
    try:
        env = ["env", "-i", f"HOME={rel}", "PATH=/usr/bin:/bin", "LANG=C.UTF-8"]
        result = subprocess.run(in_root(gimp_host.root, env + ["python3", str(REPO / "install.py"), "--only", "gimp",
                                                               "--venv", str(VENV)], system=False),
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        plugin = home / f".config/GIMP/{gimp_host.version}/plug-ins/luciddream/luciddream.py"
        assert plugin.is_file(), result.stdout
        spec = job("rgb", "u8", alpha=False, args={"output": "new-layer"})
        report = finish(run_gimp(gimp_host.root, rel, tmp_path, spec), tmp_path)
        assert report["status"] == "success", report.get("message")
        assert sorted(p.name for p in (home / ".config/GIMP").iterdir()) == [gimp_host.version]
        assert (home / f".config/GIMP/{gimp_host.version}/pluginrc").is_file()   # GIMP's own profile, same folder
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_protocol_and_kit_under_this_gimps_python(gimp_host: GimpHost) -> None:
    """The packages the plug-in imports parse and import under the root's Python (3.14 in GIMP 3.2's sid), with
    nothing of the engine; the dream tests above then use them for real."""
    files = sorted(str(p) for p in [*(REPO / "engine/luciddream/protocol").glob("*.py"), *(REPO / "kit").glob("*.py")])
    check = ("import ast, sys; [ast.parse(open(f, encoding='utf-8').read()) for f in sys.argv[3:]]; "
             "sys.path[:0] = [sys.argv[1], sys.argv[2]]; import protocol, kit; "
             "assert not [m for m in sys.modules if m.startswith(('luciddream', 'numpy'))]; "
             "print(sys.version_info[0], sys.version_info[1])")
    result = subprocess.run(in_root(gimp_host.root, ["python3", "-I", "-c", check, str(REPO / "engine/luciddream"),
                                                     str(REPO), *files], system=False),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert tuple(map(int, result.stdout.split())) >= (3, 13), result.stdout


def test_presets_gimp_shows_are_the_engines(gimp_root: Path, profile: "Profile", tmp_path: Path) -> None:
    """The preset menu of the real procedure lists the engine's offer (names and labels, in its order), and
    dreaming each preset sends the offer's targets (the new layer's name says what was sent). Krita's host test
    checks its docker against the same describe(), so both hosts show the same presets."""
    from luciddream.offer import describe

    presets = describe()["presets"]
    cases = []
    for i, preset in enumerate(presets):
        (tmp_path / f"case{i}").mkdir()
        args = {"preset": preset["name"], "targets": "", "output": "new-layer", "steps": 1}
        cases.append(dict(job("rgb", "u8", alpha=False, image=(64, 48), selection=None, args=args),
                          out=f"{SHARE}/case{i}"))
    proc = run_gimp(gimp_root, profile.rel, tmp_path, {"cases": cases})
    out, _ = proc.communicate(timeout=600)
    reports = []
    for i in range(len(cases)):
        report_file = tmp_path / f"case{i}" / "report.json"
        assert report_file.is_file(), f"no report for case {i} (exit {proc.returncode}):\n{out[-4000:]}"
        reports.append(json.loads(report_file.read_text()))
    assert "preset_choices" in reports[0], reports[0].get("preset_choices_error") or reports[0].get("error")
    shown = reports[0]["preset_choices"]
    assert shown[0][0] == "none"
    assert [{"name": nick, "label": label} for nick, label in shown[1:]] == [
        {"name": p["name"], "label": p["label"]} for p in presets]
    for preset, report in zip(presets, reports):
        assert report.get("ok") and report["status"] == "success", report.get("message") or report.get("error")
        assert report["layer_names"][0] == f"photo (dream: {preset['name']}, seed 3)", report["layer_names"]
        record = json.loads(report["new_record"])
        assert record["preset"] == preset["name"] and record["targets"] == [[preset["targets"], 1.0]], record


def test_missing_engine_is_one_sentence(gimp_root: Path, profile: Profile, gimp_home: str, tmp_path: Path) -> None:
    """engine.json naming a Python that is not there (a moved venv): a sentence that says what to do."""
    config = profile.plugins / "luciddream" / "engine.json"
    good = config.read_text()
    config.write_text(json.dumps({**json.loads(good), "python": "/nowhere/venv/bin/python"}))
    try:
        report = finish(run_gimp(gimp_root, gimp_home, tmp_path, job("rgb", "u8")), tmp_path)
    finally:
        config.write_text(good)
    assert report["status"] == "execution-error"
    message = report.get("message", "")
    print(message)
    assert "/nowhere/venv/bin/python" in message and "Traceback" not in message, message
    assert (tmp_path / "after.bin").read_bytes() == (tmp_path / "before.bin").read_bytes()


def _worker_pids(tag: str) -> List[int]:
    """Engine workers started by this test's GIMP (the tag travels in their environment)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes()
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if f"LUCIDDREAM_TEST_TAG={tag}".encode() in env.split(b"\0") and b"luciddream.worker" in cmd:
            found.append(int(entry.name))
    return found


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def test_killed_plugin_stops_the_worker_and_leaves_the_image(gimp_root: Path, gimp_home: str,
                                                             tmp_path: Path) -> None:
    """GIMP's Cancel kills the plug-in process: the worker must follow within moments, the image stay as it was."""
    spec = job("rgb", "u8", args={"steps": 1000, "octaves": 1})
    tag = uuid.uuid4().hex
    proc = run_gimp(gimp_root, gimp_home, tmp_path, spec, tag=tag)
    deadline = time.time() + 120
    workers: List[int] = []
    while time.time() < deadline and not workers:
        workers = _worker_pids(tag)
        time.sleep(0.2)
    assert workers, "no engine worker appeared"
    time.sleep(4)                                     # let it load the model and start dreaming
    plugin = _parent(workers[0])
    assert b"luciddream.py" in Path(f"/proc/{plugin}/cmdline").read_bytes()
    os.kill(plugin, signal.SIGKILL)                   # what GIMP does on Cancel
    killed = time.time()
    while time.time() - killed < 5 and _worker_pids(tag):
        time.sleep(0.05)
    gone_after = time.time() - killed
    report = finish(proc, tmp_path)
    assert not _worker_pids(tag), "the worker outlived its plug-in"
    assert gone_after < 2.0, f"the worker took {gone_after:.2f} s to follow its plug-in"
    assert report["status"] != "success"
    assert (tmp_path / "after.bin").read_bytes() == (tmp_path / "before.bin").read_bytes()


def test_dialog_ok_then_ctrl_z_restores_the_exact_pixels(gimp_root: Path, gimp_home: str,
                                                         tmp_path: Path) -> None:
    """The real window: the dialog opens (INTERACTIVE), Return presses OK, the layer dreams in one undo step, and
    Ctrl+Z in the image window gives back every pixel exactly. GIMP then saves the dialog's values for Repeat."""
    last = ('(targets "goldfish")\n(preset "none")\n(octaves 1)\n(steps 2)\n(tile 128)\n(seed 5)\n'
            '(strength 8.0)\n(output "this-layer")\n')   # what the dialog opens with
    spec = job("rgb", "u16", alpha=True, run_mode="INTERACTIVE", gui=True, last_values=last)
    report = finish(run_gimp(gimp_root, gimp_home, tmp_path, spec, gui=True), tmp_path)
    assert report["status"] == "success", report.get("message") or report["log"][-3000:]
    counts = compare(tmp_path, spec)
    assert counts["outside"] == 0 and counts["inside"] > 0.5 * counts["selected"], counts
    assert (tmp_path / "undone.bin").read_bytes() == (tmp_path / "before.bin").read_bytes(), report["log"][-2000:]
    saved = report["last_values"] or ""
    assert "# end of settings" in saved and '"goldfish"' in saved and "(device " in saved, saved
    assert "(variations 1)" in saved and "(look " in saved, saved   # the new controls persist too
    if (tmp_path / "dialog.xwd").is_file():   # for people: the dialog as this GIMP drew it, outside pytest's tmp
        from xwd_to_png import read_xwd
        keep = Path("/tmp/luciddream-gimp-last") / _host_of(gimp_root).id
        keep.mkdir(parents=True, exist_ok=True)
        read_xwd((tmp_path / "dialog.xwd").read_bytes()).save(keep / "dialog.png")


# --------------------------------------------------------------------------------------------- the artist's loop

LOOP_ARGS = dict(FAST, output="new-layer", preset="none", targets="layer:block6", seed=5)


def loop(gimp_root: Path, home: str, folder: Path, actions: List[Dict[str, Any]], image=(96, 80),
         selection=(20, 16, 64, 48), **run: Any) -> Dict[str, Any]:
    spec = {"image": list(image), "selection": list(selection) if selection else None, "actions": actions}
    return finish(run_gimp(gimp_root, home, folder, spec, batch=LOOP_BATCH, **run), folder)


def layer_pixels(folder: Path, tag: str, snapshot: Dict[str, Any], name: str) -> bytes:
    """The pixels of the snapshot's one layer called `name`."""
    hits = [i for i, each in enumerate(snapshot["names"]) if each == name]
    assert len(hits) == 1, (name, snapshot["names"])
    return (folder / f"{tag}-{hits[0]}.bin").read_bytes()


def test_the_artists_loop_in_one_gimp(gimp_root: Path, gimp_home: str, tmp_path: Path) -> None:
    """One GIMP start: 2 variations (named by seed, each with its record), the record surviving .xcf save and
    reopen, Again (the same pixels) and Again, New Seed from the reopened file, a guide layer that changes the dream,
    guides of another colour model refused, Again on a layer without a record refused, and Test Engine."""
    gray_png = f"{SHARE}/gray-guide.png"
    call = {"do": "call", "proc": "plug-in-luciddream", "drawable": "photo"}
    actions = [
        {"do": "add_layer", "name": "stripes"},
        {"do": "snapshot", "tag": "before"},
        dict(call, args=dict(LOOP_ARGS, variations=2)),
        {"do": "snapshot", "tag": "vars"},
        {"do": "save_reopen"},
        {"do": "snapshot", "tag": "reopened"},
        {"do": "call", "proc": "plug-in-luciddream-again", "drawable": "top"},
        {"do": "call", "proc": "plug-in-luciddream-again-new-seed", "drawable": "top"},
        dict(call, args=dict(LOOP_ARGS, seed=5), guide_layer="stripes"),
        {"do": "snapshot", "tag": "again"},
        {"do": "other_image_layer"},
        dict(call, args=LOOP_ARGS, guide_layer="gray guide"),
        {"do": "gray_file", "path": gray_png},
        dict(call, args=LOOP_ARGS, guide_file=gray_png),
        {"do": "call", "proc": "plug-in-luciddream-again", "drawable": "photo"},
        {"do": "snapshot", "tag": "end"},
        {"do": "call", "proc": "plug-in-luciddream-test-engine", "drawable": "photo"},
        {"do": "rgb_file", "path": f"{SHARE}/stripes.png"},
        dict(call, args=dict(LOOP_ARGS, seed=5), guide_file=f"{SHARE}/stripes.png"),
        {"do": "snapshot", "tag": "file"},
    ]
    report = loop(gimp_root, gimp_home, tmp_path, actions)
    steps = report["actions"]
    before, variations, reopened, again, end = (steps[i] for i in (1, 3, 5, 9, 15))
    assert steps[2]["status"] == "success", steps[2]
    # Variations: two new layers above the photo, named by what differs, each with its full record.
    assert variations["names"] == ["photo (dream: layer:block6, seed 5, 1/2)",
                                   "photo (dream: layer:block6, seed 6, 2/2)", "photo", "stripes"]
    records = [json.loads(r) for r in variations["records"][:2]]
    assert [r["seed"] for r in records] == [5, 6] and all(r["version"] == 1 for r in records)
    assert records[0]["targets"] == [["layer:block6", 1.0]] and records[0]["engine"]
    assert records[0]["settings"]["octaves"] == 1 and records[0]["settings"]["step_size"] == 8.0
    assert variations["records"][2] is None
    photo = (tmp_path / "before-0.bin").read_bytes()
    first, second = (tmp_path / "vars-0.bin").read_bytes(), (tmp_path / "vars-1.bin").read_bytes()
    assert first != photo and second != photo and first != second
    assert (tmp_path / "vars-2.bin").read_bytes() == photo                      # the photo itself untouched
    # The record survives saving and reopening the .xcf.
    assert reopened["records"] == variations["records"] and reopened["names"] == variations["names"]
    # Again from the reopened file: the same seed gives the same pixels; a new seed gives others.
    assert steps[6]["status"] == "success" and steps[7]["status"] == "success", (steps[6], steps[7])
    assert layer_pixels(tmp_path, "again", again, "photo (dream: layer:block6, seed 5)") == first
    new_seed = [n for n in again["names"] if "seed" in n and "guided" not in n and not n.endswith(
        ("seed 5)", "1/2)", "2/2)"))]
    assert len(new_seed) == 1, again["names"]
    assert layer_pixels(tmp_path, "again", again, new_seed[0]) not in (first, second)
    # A guide layer pulls the same seed elsewhere, and the record says which guide.
    assert steps[8]["status"] == "success", steps[8]
    guided = [i for i, n in enumerate(again["names"]) if "guided" in n]
    assert len(guided) == 1, again["names"]
    assert (tmp_path / f"again-{guided[0]}.bin").read_bytes() != first
    assert json.loads(again["records"][guided[0]])["guide"] == 'layer "stripes"'
    # Refusals: one sentence each, and nothing changed.
    for index, words in ((11, 'The guide "gray guide" is grayscale but this image is RGB'),
                         (13, 'The guide "gray-guide.png" is grayscale but this image is RGB'),
                         (14, 'the layer "photo" holds no Lucid Dream settings')):
        step = steps[index]
        assert step["status"] == "execution-error" and words in step.get("value", ""), (index, step)
        assert "\n" not in step["value"].strip() and "Traceback" not in step["value"]
    assert end["names"] == again["names"]
    for i in range(len(end["names"])):
        assert (tmp_path / f"end-{i}.bin").read_bytes() == (tmp_path / f"again-{i}.bin").read_bytes()
    # Test Engine: version, device, models and the seconds of a tiny dream.
    test = steps[16]
    assert test["status"] == "success", test
    lines = test["value"].splitlines()
    assert lines[0].startswith("Lucid Dream engine ") and lines[1] == "Device: cpu", lines
    assert "lite0" in lines[2] and "dream took" in lines[3], lines
    # A picture file as the guide: the same stripes as the guide layer, so the same pixels as that dream.
    assert steps[18]["status"] == "success", steps[18]
    files = steps[19]
    newest = files["names"].index("photo") - 1          # a new layer goes just above its source
    assert files["names"][newest].startswith('photo (dream: layer:block6 guided, seed 5)'), files["names"]  # "#1"
    assert json.loads(files["records"][newest])["guide"] == 'file "stripes.png"'
    assert (tmp_path / f"file-{newest}.bin").read_bytes() == (tmp_path / f"again-{guided[0]}.bin").read_bytes()


def test_preview_in_the_dialog_changes_nothing(gimp_root: Path, gimp_home: str, tmp_path: Path) -> None:
    """The real dialog: Preview (Alt+P) shows a quick grow-look dream in the dialog; two quick presses cancel the
    first in the worker; a worker killed mid-preview is one sentence and the next Preview starts a new one; Cancel
    then leaves every pixel as it was and the image clean (nothing entered the undo history)."""
    last = ('(targets "goldfish")\n(preset "none")\n(look "grow")\n(octaves 2)\n(steps 0)\n(tile 0)\n(seed 5)\n'
            '(strength 1.5)\n(output "new-layer")\n')
    spec = job("rgb", "u8", alpha=True, image=(512, 512), selection=(64, 64, 384, 384), run_mode="INTERACTIVE",
               last_values=last)
    spec["loop_steps"] = "preview,supersede,kill,preview,shot,cancel"
    report = finish(run_gimp(gimp_root, gimp_home, tmp_path, spec, gui=True, driver="gimp_gui_loop.sh",
                             timeout=400), tmp_path, timeout=450)
    log = (tmp_path / "gimp.log").read_text()
    shown = [line for line in log.splitlines() if "luciddream: preview shown" in line]
    failed = [line for line in log.splitlines() if "luciddream: preview failed" in line]
    assert report["status"] == "cancel", report.get("message") or log[-3000:]
    assert len(shown) == 3 and "grow look, 192x192" in shown[0], log[-3000:]
    assert "luciddream: preview superseded: cancelled in the worker" in log
    assert len(failed) == 1 and "Traceback" not in failed[0], failed
    assert report["layers_after"] == report["layers_before"] and report["dirty"] is False
    assert (tmp_path / "after.bin").read_bytes() == (tmp_path / "before.bin").read_bytes()
    if (tmp_path / "screen.xwd").is_file():   # for people: the dialog with its preview, outside pytest's tmp
        from xwd_to_png import read_xwd
        geometry = dict(line.split("=", 1) for line in (tmp_path / "dialog.geometry").read_text().split())
        x, y, w, h = (int(geometry[k]) for k in ("X", "Y", "WIDTH", "HEIGHT"))
        keep = Path("/tmp/luciddream-gimp-last") / _host_of(gimp_root).id
        keep.mkdir(parents=True, exist_ok=True)
        read_xwd((tmp_path / "screen.xwd").read_bytes()).crop((x, y, x + w, y + h)).save(keep / "preview.png")


def test_cancelled_variations_keep_the_finished_ones(gimp_root: Path, gimp_home: str, tmp_path: Path) -> None:
    """Three variations, and GIMP's Cancel (it kills the plug-in) once the first is written: that one stays, named
    and recorded, nothing half-written appears, the worker follows its plug-in and the photo is untouched."""
    actions = [{"do": "snapshot", "tag": "before"},
               {"do": "call", "proc": "plug-in-luciddream", "drawable": "photo",
                "args": dict(LOOP_ARGS, variations=3, steps=40, octaves=2)},
               {"do": "snapshot", "tag": "after"}]
    spec = {"image": [96, 80], "selection": [20, 16, 64, 48], "actions": actions}
    tag = uuid.uuid4().hex
    proc = run_gimp(gimp_root, gimp_home, tmp_path, spec, batch=LOOP_BATCH, tag=tag)
    seen: List[str] = []
    deadline = time.time() + 240
    killed = False
    for line in proc.stdout:   # GIMP's terminal, where the plug-in says what it wrote
        seen.append(line)
        if "luciddream: variation 1 of 3 written" in line:
            workers = _worker_pids(tag)
            assert workers, "no engine worker while dreaming"
            os.kill(_parent(workers[0]), signal.SIGKILL)    # what GIMP does on Cancel
            killed = True
            break
        if time.time() > deadline:
            break
    assert killed, "".join(seen)[-3000:]
    rest, _ = proc.communicate(timeout=120)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report.get("ok"), (report.get("error"), rest[-3000:])
    before, call, after = report["actions"]
    assert call["status"] != "success"
    assert after["names"] == ["photo (dream: layer:block6, seed 5, 1/3)", "photo"], after["names"]
    assert json.loads(after["records"][0])["seed"] == 5
    assert (tmp_path / "after-1.bin").read_bytes() == (tmp_path / "before-0.bin").read_bytes()
    assert (tmp_path / "after-0.bin").read_bytes() != (tmp_path / "before-0.bin").read_bytes()
    time.sleep(1)
    assert not _worker_pids(tag), "the worker outlived its plug-in"


def test_dream_after_preview_uses_the_previews_seed(gimp_root: Path, gimp_home: str, tmp_path: Path) -> None:
    """The dialog's "Dream at full size after the preview": Preview alone brings the full result, with the seed
    the preview drew (seed -1), recorded on the layer; GIMP keeps the setting with the last values."""
    last = ('(targets "")\n(preset "patterns")\n(octaves 1)\n(steps 2)\n(tile 0)\n(seed -1)\n(strength 8.0)\n'
            '(output "new-layer")\n(dream-after-preview yes)\n')
    spec = job("rgb", "u8", alpha=True, run_mode="INTERACTIVE", last_values=last)
    spec["loop_steps"] = "preview,await"
    report = finish(run_gimp(gimp_root, gimp_home, tmp_path, spec, gui=True, driver="gimp_gui_loop.sh"), tmp_path)
    log = (tmp_path / "gimp.log").read_text()
    assert report["status"] == "success", report.get("message") or log[-3000:]
    assert "luciddream: preview shown" in log and "luciddream: result written" in log
    record = json.loads(report["new_record"])
    assert record["preset"] == "patterns" and 0 <= record["seed"] <= 2 ** 31 - 1
    assert report["layer_names"][0] == f"photo (dream: patterns, seed {record['seed']})", report["layer_names"]
    assert f"seed {record['seed']})" in log.split("luciddream: preview shown", 1)[1].splitlines()[0], log[-2000:]
    counts = compare(tmp_path, spec, "new.bin")
    assert counts["outside"] == 0 and counts["inside"] > 0, counts
