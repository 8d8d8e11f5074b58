"""Benchmark: ``activity-scorer score`` on 100k and 1M simulated activities.

A model is trained once on the smallest size (``train --bundle-out``); then each size
is scored in a fresh subprocess (``score --data DIR --out FILE --model BUNDLE``), so the
wall time covers reading the dataset, building features with the training code,
predicting the three labels and writing the file, and the peak memory is that run's
alone. The smallest size is the baseline for the growth ratios.

    .venv/bin/python benchmarks/bench_score.py [--sizes 100000 1000000] [--keep DIR]

Target (2 cores): 1M activities in at most 2 minutes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_train import CLI, simulate, timed  # noqa: E402

MAX_SECONDS = 120.0


def main() -> int | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--keep", type=Path, help="Keep (and reuse) simulated datasets in this directory.")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-score-"))
    sizes = sorted(args.sizes)
    for n in sizes:
        print(f"simulating {n:,} activities ...", flush=True)
        simulate(work / f"sim-{n}", n)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-score-home-") as home:
        env = os.environ | {"ACTIVITY_SCORER_HOME": home, "MLFLOW_TRACKING_URI": f"sqlite:///{home}/mlflow.db"}
        bundle = Path(home) / "bundle"
        print(f"training a model on {sizes[0]:,} ...", flush=True)
        timed([*CLI, "train", "--data", str(work / f"sim-{sizes[0]}"), "--bundle-out", str(bundle), "--json"], env)
        for n in sizes:
            out = Path(home) / f"scores-{n}.parquet"
            seconds, peak_mb, _ = timed([*CLI, "score", "--data", str(work / f"sim-{n}"), "--out", str(out),
                                         "--model", str(bundle), "--json"], env)
            results[n] = (seconds, peak_mb)
            print(f"  {n:>9,}: {seconds:6.1f}s, peak {peak_mb:,.0f} MB ({n / seconds:,.0f} activities/s)", flush=True)
    base = sizes[0]
    for n in sizes[1:]:
        print(f"growth {base:,} -> {n:,}: rows x{n / base:.1f}, time x{results[n][0] / results[base][0]:.1f}, "
              f"memory x{results[n][1] / results[base][1]:.1f}")
    failed = 0
    for n in sizes:
        if n >= 1_000_000:
            ok = results[n][0] <= MAX_SECONDS
            failed += not ok
            print(f"target: {'PASS' if ok else 'FAIL'} score {n:,} in <= {MAX_SECONDS:.0f}s ({results[n][0]:.0f}s)")
    if not args.keep:
        print(f"(datasets in {work}; pass --keep DIR to reuse them)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
