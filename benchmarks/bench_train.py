"""Benchmark: ``activity-scorer train`` end to end on simulated data, with the quality targets.

Each size runs ``activity-scorer train --data DIR --json`` in a fresh subprocess against a
fresh embedded MLflow store, so the wall time covers everything a user waits for
(reading the dataset, features and labels, six boosters, calibration, evaluation, plots,
MLflow logging and registration) and the peak memory (``ru_maxrss`` of that child, via
``os.wait4``) is that size's alone. The smallest size >= 100k is the baseline: the script
prints how time and memory grow from it (linear growth in rows would be the row ratio).

    .venv/bin/python benchmarks/bench_train.py [--sizes 200000 1000000] [--seed 7 [8 ...]]
        [--oracle-share 1.0] [--keep DIR]

Targets (2 cores): on the simulator, at the demo size (200k) and 1M, outcome AUC on the
test window within 0.02 of the ex-ante oracle AUC (``p_outcome_label_ex_ante``, on the test
rows where the simulator computed it: all of them with the default ``--oracle-share 1.0``;
the realized-schedule oracle is printed beside) and ECE at most 0.02; 1M activities in at
most 5 minutes and 8 GB peak. With several seeds, every (size, seed) is a row and the
targets are checked on each.
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
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "training.cli"]
SEED = 7
MAX_SECONDS = 300.0
MAX_PEAK_MB = 8 * 1024
MAX_AUC_GAP = 0.02
MAX_ECE = 0.02

_SIMULATE = r"""
import sys
from pathlib import Path
from simulator.generate import simulate, write_simulation
from simulator.params import OracleSettings, SimulationConfig
write_simulation(simulate(SimulationConfig(n_activities=int(sys.argv[2]), seed=int(sys.argv[3])),
                          oracle=OracleSettings(share=float(sys.argv[4]))), Path(sys.argv[1]))
"""


def simulate(directory: Path, n: int, seed: int = SEED, oracle_share: float = 1.0) -> None:
    """Simulate ``n`` activities into ``directory`` unless it already holds one of the current simulator format."""
    from simulator.generate import FORMAT_VERSION

    meta = directory / "ground_truth.json"
    if (directory / "activities.parquet").exists() and meta.exists():
        written = json.loads(meta.read_text(encoding="utf-8"))
        if written.get("format_version") == FORMAT_VERSION and written.get("seed") == seed:
            return
    subprocess.run([sys.executable, "-c", _SIMULATE, str(directory), str(n), str(seed), str(oracle_share)],
                   check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run a command; returns (seconds, peak RSS of that child in MB, stdout)."""
    with tempfile.TemporaryFile("w+") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {proc.returncode}")
    return seconds, usage.ru_maxrss / 1024, text


def run_size(data: Path, home: Path) -> dict:
    env = os.environ | {"ACTIVITY_SCORER_HOME": str(home), "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}"}
    seconds, peak_mb, text = timed([*CLI, "train", "--data", str(data), "--json"], env)
    doc = json.loads(text)
    rows = {(m["label"], m["variant"]): m for m in doc["metrics"]}
    out = rows[("outcome", "full")]
    return {
        "rows": sum(doc["window"]["rows"].values()),
        "seconds": seconds,
        "peak_mb": peak_mb,
        "features_s": doc["seconds"].get("features"),
        "training_s": doc["seconds"].get("training"),
        "mlflow_s": doc["seconds"].get("mlflow"),
        "ranking_s": doc["seconds"].get("ranking", 0.0),
        "effects_s": doc["seconds"].get("effects", 0.0),
        # inside training: the evaluation's boosters, and their refit for deployment
        "fit_s": sum(v for k, v in doc["seconds"].items() if k.startswith("training.fit_")),
        "refit_s": sum(v for k, v in doc["seconds"].items() if k.startswith("training.refit_")),
        "auc": out["auc"],
        "oracle": out.get("oracle"),
        "n_oracle": out.get("n_oracle"),
        "auc_oracle_rows": out.get("auc_oracle_rows"),
        "oracle_auc": out.get("oracle_auc"),
        "oracle_gap": out.get("oracle_gap"),
        "plan_oracle_gap": rows[("outcome", "plan")].get("oracle_gap"),
        "oracle_auc_realized": out.get("oracle_auc_realized"),
        "ece": out["ece"],
        "ece_truth": out.get("ece_truth"),
        "plan_auc": rows[("outcome", "plan")]["auc"],
        "output_gap": (rows[("output", "plan")].get("oracle_auc") or float("nan")) - rows[("output", "plan")]["auc"],
        "negative_gap": (rows[("negative", "plan")].get("oracle_auc") or float("nan"))
        - rows[("negative", "plan")]["auc"],
    }


def main() -> int:
    from simulator.params import DEFAULT_ACTIVITIES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[DEFAULT_ACTIVITIES, 1_000_000])
    parser.add_argument("--keep", type=Path, help="Keep (and reuse) simulated datasets in this directory.")
    parser.add_argument("--seed", type=int, nargs="+", default=[SEED], help="Simulator seed(s).")
    parser.add_argument("--oracle-share", type=float, default=1.0,
                        help="Share of activities that get the ex-ante oracle (1.0: the gap is measured on every "
                             "test row; the simulation takes longer).")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-train-"))
    results: dict[tuple[int, int], dict] = {}
    for n in args.sizes:
        for seed in args.seed:
            data = work / f"sim-{n}-seed{seed}-oracle{args.oracle_share:g}"
            print(f"simulating {n:,} activities (seed {seed}, oracle share {args.oracle_share:g}) ...", flush=True)
            simulate(data, n, seed, args.oracle_share)
            with tempfile.TemporaryDirectory(prefix="bench-train-home-") as home:
                print(f"training on {n:,} ...", flush=True)
                results[n, seed] = run_size(data, Path(home))
            r = results[n, seed]
            print(f"  {n:>9,} seed {seed}: {r['seconds']:6.1f}s (features {r['features_s']:.1f}s, training "
                  f"{r['training_s']:.1f}s [evaluation fits {r['fit_s']:.1f}s, refit {r['refit_s']:.1f}s], ranking model "
                  f"{r['ranking_s']:.1f}s, effect model {r['effects_s']:.1f}s, MLflow {r['mlflow_s']:.1f}s), peak {r['peak_mb']:,.0f} MB; outcome/full "
                  f"AUC {r['auc']:.4f} (plan {r['plan_auc']:.4f}); {r['oracle']} oracle {r['oracle_auc']:.4f} on "
                  f"{r['n_oracle']:,} test rows (model {r['auc_oracle_rows']:.4f} there: gap {r['oracle_gap']:+.4f}, "
                  f"plan {r['plan_oracle_gap']:+.4f}); realized-schedule oracle "
                  f"{r['oracle_auc_realized'] if r['oracle_auc_realized'] is not None else float('nan'):.4f}; "
                  f"ECE {r['ece']:.4f} (vs truth {r['ece_truth']:.4f}); oracle gap output {r['output_gap']:+.4f}, "
                  f"negative {r['negative_gap']:+.4f}", flush=True)
    first_seed = args.seed[0]
    sizes = [n for n in args.sizes if (n, first_seed) in results]
    base = min((n for n in sizes if n >= 100_000), default=min(sizes))
    if len(sizes) > 1:
        print(f"\ngrowth from the {base:,} baseline (seed {first_seed}):")
        for n in sizes:
            if n != base:
                r, b = results[n, first_seed], results[base, first_seed]
                print(f"  {n:>9,}: rows x{n / base:.1f}, time x{r['seconds'] / b['seconds']:.1f}, "
                      f"memory x{r['peak_mb'] / b['peak_mb']:.1f}")
    print("\ntargets:")
    failed = 0
    for (n, seed), r in results.items():
        gap = r["oracle_gap"]  # against the ex-ante oracle, on the test rows where it is known
        checks = [(f"outcome AUC within {MAX_AUC_GAP} of the {r['oracle']} oracle (gap {gap:.4f} full, "
                   f"{r['plan_oracle_gap']:.4f} plan)", max(gap, r["plan_oracle_gap"]) <= MAX_AUC_GAP),
                  (f"ECE <= {MAX_ECE} ({r['ece']:.4f})", r["ece"] <= MAX_ECE)]
        if n >= 1_000_000:
            checks += [(f"time <= {MAX_SECONDS:.0f}s ({r['seconds']:.0f}s)", r["seconds"] <= MAX_SECONDS),
                       (f"peak <= {MAX_PEAK_MB:,} MB ({r['peak_mb']:,.0f} MB)", r["peak_mb"] <= MAX_PEAK_MB)]
        for what, ok in checks:
            failed += not ok
            print(f"  {n:>9,} seed {seed}: {'PASS' if ok else 'FAIL'} {what}")
    if len(args.seed) > 1:
        for n in sizes:
            gaps = [results[n, sd]["oracle_gap"] for sd in args.seed]
            eces = [results[n, sd]["ece"] for sd in args.seed]
            print(f"  {n:>9,} over seeds {args.seed}: gap mean {sum(gaps) / len(gaps):.4f} max {max(gaps):.4f}; "
                  f"ECE mean {sum(eces) / len(eces):.4f} max {max(eces):.4f}")
    print(f"{failed} check(s) failed")
    if not args.keep:
        print(f"(datasets in {work}; pass --keep DIR to reuse them)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
