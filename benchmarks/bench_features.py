"""Benchmark: feature and label building at 100k and 1M simulated activities, and one request.

Each size runs in a fresh subprocess so peak memory (ru_maxrss) is that size's alone.
The 100k run is the baseline: the script prints how time and memory grow to 1M
(linear growth would be 10x). Then it times single-request feature building for one
activity with 50 history rows (p50/p99 over 2,000 calls).

    .venv/bin/python benchmarks/bench_features.py [--sizes 100000 1000000] [--keep DIR]

Targets (2 cores): 1M activities in at most 60 s and 4 GB peak; one request p50 <= 2 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")

ROOT = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
from features.dataset import load_dataset
from features.build import build_training_frame
t1 = time.perf_counter()
ds = load_dataset(sys.argv[1])
t2 = time.perf_counter()
table = build_training_frame(ds)
t3 = time.perf_counter()
print(json.dumps({"rows": len(table.frame), "features": len(table.features), "load_s": t2 - t1,
                  "build_s": t3 - t2, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def simulate(directory: Path, n: int) -> None:
    if (directory / "activities.parquet").exists():
        return
    cmd = [sys.executable, "-m", "training.cli", "simulate", "--out", str(directory), "--activities", str(n), "--seed", "7"]
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


def run_size(directory: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(directory)], check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def single_request(directory: Path, n_calls: int = 2000) -> dict:
    import numpy as np

    from features import contract as c
    from features.build import build_serving_columns, build_training_frame, rep_context, request_items
    from features.dataset import load_dataset

    ds = load_dataset(directory)
    table = build_training_frame(ds)
    context = rep_context(ds, table)
    # the busiest deal's last activity, with its 50 most recent history activities
    acts = ds[c.ACTIVITIES]
    deal = acts[c.DEAL_ID].value_counts().index[0]
    aid = acts[acts[c.DEAL_ID] == deal].sort_values(c.OCCURRED_AT)[c.ACTIVITY_ID].iloc[-1]
    item = request_items(ds, [aid])[0]
    hist = item["history"]
    hist[c.ACTIVITIES] = sorted(hist[c.ACTIVITIES], key=lambda r: r[c.OCCURRED_AT])[-50:]
    kept = {r[c.ACTIVITY_ID] for r in hist[c.ACTIVITIES]}
    hist[c.RESPONSES] = [r for r in hist.get(c.RESPONSES, []) if r[c.ACTIVITY_ID] in kept]
    for _ in range(100):
        build_serving_columns([item], context)
    times = []
    for _ in range(n_calls):
        t0 = time.perf_counter()
        build_serving_columns([item], context)
        times.append(time.perf_counter() - t0)
    ms = np.array(times) * 1e3
    return {"history_rows": {k: len(v) for k, v in hist.items()}, "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "calls": n_calls}


def main() -> int | None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--keep", type=Path, default=None, help="Directory to keep simulated datasets in.")
    args = parser.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="bench-features-"))
    results = {}
    for n in args.sizes:
        d = base / f"sim-{n}"
        t0 = time.perf_counter()
        simulate(d, n)
        sim_s = time.perf_counter() - t0
        r = run_size(d)
        results[n] = r
        print(f"{n:>9,} activities: load {r['load_s']:6.1f} s, features+labels {r['build_s']:6.1f} s, "
              f"peak RSS {r['peak_mb']:7.0f} MB ({r['features']} features; simulate {sim_s:.0f} s)", flush=True)
    sizes = sorted(results)
    if len(sizes) > 1:
        lo, hi = results[sizes[0]], results[sizes[-1]]
        print(f"growth {sizes[0]:,} -> {sizes[-1]:,} ({sizes[-1] / sizes[0]:.0f}x rows): time x{hi['build_s'] / lo['build_s']:.1f}, "
              f"peak memory x{hi['peak_mb'] / lo['peak_mb']:.1f}")
    big = results[sizes[-1]]
    ok = True
    if sizes[-1] >= 1_000_000:
        ok = big["build_s"] <= 60 and big["peak_mb"] <= 4096
        print(f"target 1M <= 60 s and <= 4 GB: {'met' if ok else 'MISSED'}")
    r = single_request(base / f"sim-{sizes[0]}")
    print(f"one request, history {r['history_rows']}: p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms over "
          f"{r['calls']:,} calls (target p50 <= 2 ms: {'met' if r['p50_ms'] <= 2 else 'MISSED'})")
    return 0 if ok and r["p50_ms"] <= 2 else 1


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
