"""Benchmark: ``activity-scorer simulate`` at 100k and 1M activities (time, peak memory, rate).

Each size runs the real command in a fresh subprocess, so the wall time covers everything a
user waits for (start-up, simulation, ex-ante oracle continuations, writing the tables and the
ground truth) and the peak memory (``ru_maxrss`` of that child, via ``os.wait4``) is that
size's alone. The smallest size is the baseline: the script prints how time and memory grow
from it (linear growth would be the row ratio).

    .venv/bin/python benchmarks/bench_simulate.py [--sizes 100000 1000000] [--oracle-share 0.2]

Target (2 cores): 1M activities in a few minutes with a peak of a few GB.

``--oracle-check N`` instead simulates N activities (ex-ante oracle on every activity), trains
the project's models on them (``training.train.run_training``, default config) and compares
the outcome model's test AUC with the ex-ante and the realized-schedule oracle on the same rows.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "training.cli"]
SEED = 7
MAX_SECONDS = 300.0
MAX_PEAK_MB = 4 * 1024


def timed(cmd: list[str]) -> tuple[float, float, str]:
    """Run a command; returns (seconds, peak RSS of that child in MB, stdout)."""
    env = os.environ | {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    with tempfile.TemporaryFile("w+") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {code}")
    return seconds, usage.ru_maxrss / 1024, text


def oracle_check(n: int, seed: int) -> None:
    """Outcome AUC of the project's model against both label oracles, on the same test rows."""
    import dataclasses

    import numpy as np
    import pandas as pd

    sys.path.insert(0, str(ROOT))
    from models.metrics import roc_auc
    from simulator.generate import simulate, write_simulation
    from simulator.params import OracleSettings, SimulationConfig
    from training.config import load_config
    from training.data import load_table
    from training.train import run_training

    with tempfile.TemporaryDirectory(prefix="bench-oracle-") as tmp:
        t0 = time.perf_counter()
        write_simulation(simulate(SimulationConfig(n_activities=n, seed=seed), oracle=OracleSettings(share=1.0)),
                         Path(tmp))
        print(f"simulated {n:,} activities (seed {seed}) with the ex-ante oracle on all: "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
        cfg = load_config()
        loaded = load_table(Path(tmp), cfg)
    truth = loaded.truth.set_index("activity_id")
    both = truth["p_outcome_label_ex_ante"].notna() & truth["label_outcome"].notna()
    print(f"ex-ante oracle calibration: mean {truth['p_outcome_label_ex_ante'][both].mean():.4f} vs observed "
          f"{truth['label_outcome'][both].mean():.4f} over {both.sum():,} labelled activities", flush=True)
    result = run_training(dataclasses.replace(loaded, truth=None), cfg)
    frame = loaded.table.frame
    for variant in ("plan", "full"):
        fit = result.fits.get(("outcome", variant))
        if fit is None:
            continue
        ids = frame["activity_id"].astype("string").to_numpy()[fit.test_index]
        rows = truth.loc[pd.Index(ids)]
        ok = rows["p_outcome_label_ex_ante"].notna().to_numpy()
        y, p = fit.test_y[ok], fit.test_p[ok]
        ex_ante = roc_auc(y, rows["p_outcome_label_ex_ante"].to_numpy()[ok])
        realized = roc_auc(y, rows["p_outcome_label"].to_numpy()[ok])
        own = roc_auc(y, rows["p_outcome"].to_numpy()[ok])
        model = roc_auc(y, p)
        print(f"outcome/{variant}: {ok.sum():,} test rows, base rate {np.mean(y):.3f}: model AUC {model:.4f}; "
              f"ex-ante oracle {ex_ante:.4f} (gap {ex_ante - model:+.4f}); realized-schedule oracle "
              f"{realized:.4f} (gap {realized - model:+.4f}); the activity's own p_outcome {own:.4f}")


def main() -> int | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--oracle-share", type=float, default=None,
                        help="Passed to simulate (default: the command's own default).")
    parser.add_argument("--keep", type=Path, help="Write the datasets here instead of a temporary directory.")
    parser.add_argument("--oracle-check", type=int, metavar="N",
                        help="Instead: train on N simulated activities and compare with the label oracles.")
    args = parser.parse_args()
    if args.oracle_check:
        oracle_check(args.oracle_check, args.seed)
        return
    extra = [] if args.oracle_share is None else ["--oracle-share", str(args.oracle_share)]
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-simulate-") as tmp:
        work = args.keep or Path(tmp)
        for n in sorted(args.sizes):
            out = work / f"sim-{n}"
            seconds, peak_mb, text = timed([*CLI, "simulate", "--out", str(out), "--activities", str(n),
                                            "--seed", str(args.seed), *extra])
            results[n] = {"seconds": seconds, "peak_mb": peak_mb}
            print(f"{n:>10,} activities: {seconds:6.1f} s wall, peak {peak_mb:,.0f} MB, "
                  f"{n / seconds:,.0f} activities/s", flush=True)
            print(f"            {text.strip()}", flush=True)
    base = min(results)
    print(f"\ngrowth from the {base:,} baseline (linear would be the row ratio):")
    for n, r in results.items():
        if n != base:
            b = results[base]
            print(f"  {n:>10,}: rows x{n / base:.1f}, time x{r['seconds'] / b['seconds']:.1f}, "
                  f"memory x{r['peak_mb'] / b['peak_mb']:.1f}; a linear extrapolation of the baseline "
                  f"would take {b['seconds'] * n / base:.0f} s")
    largest = max(results)
    r = results[largest]
    if largest < 1_000_000:
        print("\ntarget (1M activities): not checked, no size of 1M or more was run")
        return 0
    ok_time, ok_peak = r["seconds"] <= MAX_SECONDS, r["peak_mb"] <= MAX_PEAK_MB
    print("\ntarget:")
    print(f"  {largest:>10,}: {'PASS' if ok_time else 'FAIL'} time <= {MAX_SECONDS:.0f} s "
          f"({r['seconds']:.0f} s); {'PASS' if ok_peak else 'FAIL'} peak <= "
          f"{MAX_PEAK_MB:,} MB ({r['peak_mb']:,.0f} MB)")
    return 0 if ok_time and ok_peak else 1


if __name__ == "__main__":
    sys.exit(main())
