"""The long fuzz run, by hand: tests/test_robustness_fuzz.py and tests/test_protocol_fuzz.py with many more
examples than the test run gives them, in fresh random rounds until the time is up.

    .venv/bin/python benchmarks/fuzz.py                 # 30 minutes, 20× the examples of the test run per round
    .venv/bin/python benchmarks/fuzz.py --minutes 5 --scale 5

Each round is one pytest process with LUCIDDREAM_FUZZ_EXAMPLES=scale (which also turns off derandomisation, so
every round draws new cases). Hypothesis keeps what it finds in .hypothesis/ and replays it first next time; a
failing round prints pytest's report (the smallest failing case) and the run stops with status 1.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = ["tests/test_robustness_fuzz.py", "tests/test_protocol_fuzz.py"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="how long to keep drawing rounds (default 30)")
    parser.add_argument("--scale", type=int, default=20, help="examples per test, as a multiple of the test run's")
    parser.add_argument("-k", default=None, help="only the tests whose names match (pytest -k)")
    args = parser.parse_args()
    env = {**os.environ, "LUCIDDREAM_FUZZ_EXAMPLES": str(max(2, args.scale)), "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "pytest", "-q", "-x", *FILES] + (["-k", args.k] if args.k else [])
    end = time.monotonic() + args.minutes * 60
    rounds = 0
    while True:
        start = time.monotonic()
        r = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        rounds += 1
        took = time.monotonic() - start
        tail = (r.stdout.strip().splitlines() or ["(no output)"])[-1]
        print(f"round {rounds}: {tail} ({took:.0f} s)", flush=True)
        if r.returncode != 0:
            print(r.stdout[-20000:], r.stderr[-5000:], sep="\n")
            return 1
        if time.monotonic() + took > end:
            break
    print(f"{rounds} round(s) of {args.scale}× examples, nothing found.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
