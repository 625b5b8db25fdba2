"""Run a set of tests N times in a row and count the outcomes.

Proof that tests wait for states instead of racing a fast run (issue: browser tests
that were green or red by timing): a flaky test shows up as a failed run among N.

    python tools/repeat_tests.py --runs 10 tests/browser            # in this checkout
    python tools/repeat_tests.py --runs 1 --stress 2 tests/browser  # under stress-ng CPU load

Each run is a fresh ``python -m pytest -q -p no:cacheprovider`` process (from the
current directory, so a copy of the repository without ``../shared`` beside it
tests that case); its full output goes to ``LOG_DIR/run-NN.log`` and its temporary files
(failure screenshots, server logs) stay in ``LOG_DIR/run-NN-tmp``; one summary
line per run, then the totals, to stdout. Exit status 0 when every run passed.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

SUMMARY = re.compile(r"^(?:=+ )?(\d+ \w+.*?) in [\d.]+s", re.MULTILINE)  # with -q: no "=" rule


def _counts(output: str) -> dict[str, int]:
    """{'passed': 10, 'skipped': 1, ...} from pytest's last summary line."""
    lines = [m.group(1) for m in SUMMARY.finditer(output)]
    if not lines:
        return {}
    return {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", lines[-1])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", help="test files or folders, as for pytest")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--log-dir", type=Path, default=Path("repeat-logs"))
    parser.add_argument("--stress", type=int, default=0, metavar="WORKERS",
                        help="run stress-ng --cpu WORKERS (all of them busy) for the whole time")
    parser.add_argument("--python", default=sys.executable, help="the interpreter that runs pytest")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    args.log_dir.mkdir(parents=True, exist_ok=True)

    stress = None
    if args.stress:
        if shutil.which("stress-ng") is None:
            parser.error("--stress needs stress-ng (apt-get install stress-ng)")
        stress = subprocess.Popen(["stress-ng", "--cpu", str(args.stress), "--cpu-load", "100", "--quiet"])
    totals: dict[str, int] = {}
    green = 0
    try:
        for i in range(1, args.runs + 1):
            t0 = time.monotonic()
            # each run's temporary files (failure screenshots, server logs) kept beside its log
            basetemp = (args.log_dir / f"run-{i:02d}-tmp").resolve()
            proc = subprocess.run([args.python, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                   f"--basetemp={basetemp}", *args.paths],
                                  capture_output=True, text=True)
            output = proc.stdout + proc.stderr
            (args.log_dir / f"run-{i:02d}.log").write_text(output)
            counts = _counts(output)
            for word, n in counts.items():
                totals[word] = totals.get(word, 0) + n
            ok = proc.returncode == 0
            green += ok
            shown = ", ".join(f"{n} {w}" for w, n in counts.items()) or "no summary"
            print(f"run {i:2d}/{args.runs}: {'green' if ok else 'RED  '} · {shown} · "
                  f"{time.monotonic() - t0:.0f} s", flush=True)
    finally:
        if stress is not None:
            stress.terminate()
            stress.wait()
    print(f"{green}/{args.runs} runs green; totals: " + ", ".join(f"{n} {w}" for w, n in totals.items()))
    return 0 if green == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
