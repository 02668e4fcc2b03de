"""The command line as a user meets it: real subprocesses for the dream, one-line errors with exit status 2."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import png
import pytest
from PIL import Image

from luciddream import files
from luciddream.cli import main

from conftest import fixture_image


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "luciddream", *args], capture_output=True, text=True,
                          timeout=600, cwd=cwd, env={**os.environ, "PYTHONWARNINGS": "ignore"})


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cli")
    Image.fromarray(fixture_image("coffee", (150, 100))).save(folder / "coffee.png")
    mask = np.zeros((100, 150), np.uint8)
    mask[25:75, 40:110] = 255
    Image.fromarray(mask).save(folder / "mask.png")
    return folder


def test_dream_with_mask_writes_output_and_keeps_the_rest(small):
    out = small / "out.png"
    r = run("dream", str(small / "coffee.png"), "-o", str(out), "--mask", str(small / "mask.png"),
            "--target", "layer:block5", "--octaves", "2", "--steps", "3", "--seed", "4")
    assert r.returncode == 0, r.stderr
    assert "seed 4" in r.stderr
    a, b = files.read_image(small / "coffee.png"), files.read_image(out)
    m = files.read_mask(small / "mask.png")
    assert np.array_equal(a[m == 0], b[m == 0])
    assert np.abs(a[m == 1].astype(int) - b[m == 1]).mean() > 3


def test_sixteen_bit_png_stays_sixteen_bit(tmp_path):
    a = (fixture_image("coffee", (96, 64)).astype(np.uint16) * 257 + 100).clip(0, 65535).astype(np.uint16)
    png.from_array(a.reshape(64, -1), "RGB;16").save(str(tmp_path / "in16.png"))
    assert main(["dream", str(tmp_path / "in16.png"), "-o", str(tmp_path / "out16.png"), "-t", "layer:block3",
                 "--octaves", "1", "--steps", "2", "-q"]) == 0
    b = files.read_image(tmp_path / "out16.png")
    assert b.dtype == np.uint16 and b.shape == a.shape
    assert len(np.unique(b % 257)) > 10  # real 16-bit values, not 8-bit ones scaled up


def test_classes_layers_models(capsys):
    assert main(["classes", "shark"]) == 0
    assert "   2  great white shark" in capsys.readouterr().out
    assert main(["layers"]) == 0
    text = capsys.readouterr().out
    assert "block15" in text and "(default)" in text
    assert main(["models"]) == 0
    assert "lite0" in capsys.readouterr().out


def _bad_inputs(folder: Path) -> dict[str, tuple[list[str], str]]:
    src = str(folder / "coffee.png")
    (folder / "corrupt.png").write_bytes((folder / "coffee.png").read_bytes()[:300])
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(folder / "wrongsize.png")
    Image.fromarray(np.zeros((100, 150), np.uint8)).save(folder / "black.png")
    o = ["-o", str(folder / "never.png"), "--steps", "1", "--octaves", "1"]
    return {
        "missing file": ([str(folder / "nope.png"), *o], "no such file"),
        "corrupt image": ([str(folder / "corrupt.png"), *o], "damaged or truncated"),
        "mask of another size": ([src, "--mask", str(folder / "wrongsize.png"), *o], "mask must have the image's size"),
        "mask selects nothing": ([src, "--mask", str(folder / "black.png"), *o], "selects nothing"),
        "unknown class": ([src, "-t", "goldfsh", *o], 'did you mean "goldfish"'),
        "unknown layer": ([src, "-t", "layer:mixed4c", *o], "choose one of stem, block0"),
        "unknown model": ([src, "--model", "vgg99", *o], 'Unknown model "vgg99"'),
        "steps out of range": ([src, "-o", str(folder / "never.png"), "--steps", "-1"], "steps must be between"),
        "octave scale out of range": ([src, *o, "--octave-scale", "0.5"], "octave scale must be between"),
        "not a number": ([src, *o, "--tile", "big"], "argument --tile: must be a number of pixels or auto"),
        "unknown format": ([src, "-o", str(folder / "never.xyz")], "unknown output format"),
    }


@pytest.mark.parametrize("case", [
    "missing file", "corrupt image", "mask of another size", "mask selects nothing", "unknown class",
    "unknown layer", "unknown model", "steps out of range", "octave scale out of range", "not a number",
    "unknown format"])
def test_user_errors_exit_2_with_one_line(small, capsys, case):
    args, words = _bad_inputs(small)[case]
    with pytest.raises(SystemExit) if case == "not a number" else contextlib.nullcontext() as raised:
        code = main(["dream", *args])
    if case == "not a number":
        code = raised.value.code
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("luciddream: error: "), err
    assert words in err
    assert "Traceback" not in err
    assert not (small / "never.png").exists()


def test_error_from_a_real_process_is_one_line(small):
    r = run("dream", str(small / "coffee.png"), "-o", str(small / "x.png"), "-t", "goldfsh")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
    assert r.stdout == ""


def test_failed_write_leaves_nothing_behind_and_input_kept(small):
    src = small / "coffee.png"
    before = src.read_bytes()
    (small / "taken.png").mkdir()  # a folder where the output file should go: the final rename fails
    listing = sorted(p.name for p in small.iterdir())
    code = main(["dream", str(src), "-o", str(small / "taken.png"), "--steps", "1", "--octaves", "1", "-q"])
    assert code == 2
    assert sorted(p.name for p in small.iterdir()) == listing  # no temporary or partial file
    assert src.read_bytes() == before
    assert main(["dream", str(src), "-o", str(small / "no" / "x.png"), "--steps", "1", "-q"]) == 2
