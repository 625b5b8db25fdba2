"""Run artlab's benchmarks: every ``benchmarks/bench_*.py`` module's ``run(quick)``.

Speed goals are ratios measured side by side in one run (never absolute timings in
unit tests). Usage: ``python benchmarks/run.py [--quick] [name ...]``; results are
printed as a table and written to ``benchmarks/results.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def timeit(fn, *, repeat: int = 5, warmup: int = 1) -> float:
    """Median seconds per call of ``fn`` (after ``warmup`` untimed calls)."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    samples.sort()
    return samples[len(samples) // 2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help="benchmark modules to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="fewer repeats and smaller sizes")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    out = HERE / "results.json"
    # keep the other benchmarks' latest results when only some are run
    previous = json.loads(out.read_text()).get("benchmarks", {}) if out.is_file() else {}
    results = {"machine": platform.platform(), "threads": torch.get_num_threads(), "benchmarks": previous}
    for path in sorted(HERE.glob("bench_*.py")):
        name = path.stem.removeprefix("bench_")
        if args.names and name not in args.names:
            continue
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        print(f"== {name}: {module.__doc__.strip().splitlines()[0]}")
        rows = module.run(quick=args.quick)
        for row in rows:
            print("   " + "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        results["benchmarks"][name] = rows
    out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
