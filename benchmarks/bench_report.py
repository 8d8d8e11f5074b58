"""Benchmark and truth check of ``activity-scorer report`` on simulated data.

    .venv/bin/python benchmarks/bench_report.py                      # 1M against a 200k baseline, + truth
    .venv/bin/python benchmarks/bench_report.py --sizes 60000 --baseline 40000 --keep /tmp/bench-report

1. Simulates the baseline dataset and each size (``activity-scorer simulate``, one seed),
   and trains a bundle with its effects model on the baseline (``activity-scorer train
   --bundle-out``, its own MLflow store in the work directory).
2. Runs the report (HTML + JSON, default window: the last 13 weeks) on each dataset in a
   fresh process and prints the wall time and the process's peak RSS. Target: the largest
   size (1M) in <= 120 s and <= 6 GB.
3. On the baseline, compares each rep's estimated advances caused per 100 activities with
   the simulator's truth: per activity, its true probability of triggering an advance minus
   that of waiting (type ``none``) in the same state (``simulator.truth``), averaged per rep.
   Target: Spearman >= 0.8 between the estimate and the truth, while ranking reps by volume
   (activities) does not reach it.

Exits 1 when a target fails. Telemetry off; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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
TARGET_SECONDS = 120.0
TARGET_GB = 6.0
TARGET_SPEARMAN = 0.8


def run(cmd: list[str], env: dict[str, str]) -> None:
    t = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"failed: {' '.join(cmd)}")
    print(f"  {' '.join(cmd[2:5])}... {time.perf_counter() - t:.0f}s", flush=True)


def simulated(work: Path, n: int, seed: int, env: dict[str, str]) -> Path:
    data = work / f"sim-{n}-seed{seed}"
    if not (data / "ground_truth.json").exists():
        run([*CLI, "simulate", "--out", str(data), "--seed", str(seed), "--activities", str(n)], env)
    return data


def trained(work: Path, data: Path, env: dict[str, str]) -> Path:
    bundle = work / f"bundle-{data.name}"
    if not (bundle / "manifest.json").exists():
        run([*CLI, "train", "--data", str(data), "--bundle-out", str(bundle)], env)
    return bundle


def one(data: Path, bundle: Path, out_dir: Path) -> None:
    """Child mode: build one report in this process and print its figures as JSON."""
    from reports.report_command import write_report

    t = time.perf_counter()
    doc = write_report(data, out_dir / "report.html", model=str(bundle), json_out=out_dir / "report.json")
    seconds = time.perf_counter() - t
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "peak_mb": peak_kb / 1024, "activities": doc["totals"]["activities"],
                      "effects": doc["effects"]["available"], "reps": doc["totals"]["reps_active"]}))


def measure(data: Path, bundle: Path, out_dir: Path, env: dict[str, str]) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, __file__, "--one", str(data), str(bundle), str(out_dir)], cwd=ROOT,
                          env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"report failed on {data}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def truth_check(data: Path, report_json: Path) -> dict:
    """Spearman correlations of per-rep figures with the true advances caused per 100 activities."""
    import numpy as np
    import pandas as pd

    from features import contract as c
    from simulator import truth as tr

    doc = json.loads(report_json.read_text(encoding="utf-8"))
    gt = pd.read_parquet(data / "ground_truth.parquet")
    meta = json.loads((data / "ground_truth.json").read_text(encoding="utf-8"))
    acts = pd.read_parquet(data / "activities.parquet", columns=[c.ACTIVITY_ID, c.REP_ID, c.OCCURRED_AT, c.TYPE])
    params = tr.TruthParams.from_dict(meta["truth_params"])
    m = acts.merge(gt, on=c.ACTIVITY_ID)
    since, until = pd.Timestamp(doc["window"]["since"]), pd.Timestamp(doc["window"]["until"])
    m = m[((m[c.OCCURRED_AT] >= since) & (m[c.OCCURRED_AT] < until) & (m[c.TYPE] != "none")).to_numpy(dtype=bool)]
    t = m[c.OCCURRED_AT]
    n = len(m)
    wait = tr.true_probabilities(
        params, type_code=np.full(n, tr.NONE_CODE), stage_order=m["stage_order"].to_numpy(),
        days_in_stage=m["days_in_stage"].to_numpy(), quality=m["quality"].to_numpy(),
        rep_skill=m["rep_skill"].to_numpy(), seniority_code=np.zeros(n, dtype=np.int64),
        department_code=np.zeros(n, dtype=np.int64), personalization=np.full(n, np.nan),
        is_automated=np.zeros(n, dtype=bool), inbound=np.zeros(n, dtype=bool),
        touches_contact_7d=m["touches_contact_7d"].to_numpy(), outputs_contact_30d=m["outputs_contact_30d"].to_numpy(),
        negatives_contact_30d=m["negatives_contact_30d"].to_numpy(),
        hour=(t.dt.hour + t.dt.minute / 60).to_numpy(), weekday=t.dt.day_of_week.to_numpy()).p_outcome
    m = m.assign(true_effect=m["p_outcome"].to_numpy() - wait)
    truth = m.groupby(c.REP_ID).agg(true_per_100=("true_effect", lambda x: 100 * x.mean()))
    est = pd.DataFrame(doc["by_rep"]).set_index(c.REP_ID)
    j = truth.join(est[["activities", "caused_per_100_estimate", "outcome_rate", "deal_advances"]], how="inner")
    j = j[j["activities"] > 0]
    out = {"reps": len(j), "true_mean_per_100": float(j["true_per_100"].mean()),
           "estimated_mean_per_100": float(j["caused_per_100_estimate"].mean())}
    for col in ("caused_per_100_estimate", "activities", "outcome_rate", "deal_advances"):
        out[col] = float(j["true_per_100"].corr(j[col], method="spearman"))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000], help="dataset sizes to time")
    ap.add_argument("--baseline", type=int, default=200_000, help="size of the baseline (trains the bundle; truth)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", type=Path, default=None, help="work directory to keep (and reuse) data and bundle")
    ap.add_argument("--one", nargs=3, metavar=("DATA", "BUNDLE", "OUT_DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        one(Path(args.one[0]), Path(args.one[1]), Path(args.one[2]))
        return 0

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-report-"))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, ACTIVITY_SCORER_HOME=str(work / "home"))
    print(f"work directory {work}", flush=True)
    base = simulated(work, args.baseline, args.seed, env)
    bundle = trained(work, base, env)
    results = {}
    for n in [args.baseline, *[s for s in args.sizes if s != args.baseline]]:
        data = base if n == args.baseline else simulated(work, n, args.seed, env)
        r = measure(data, bundle, work / f"report-{n}", env)
        results[n] = r
        print(f"{n:>9,} simulated activities: report {r['seconds']:6.1f} s, peak RSS {r['peak_mb']:6.0f} MB "
              f"({r['activities']:,} activities of {r['reps']} reps in the window; effects: {r['effects']})", flush=True)
    ok = True
    largest = max(args.sizes)
    if largest in results:
        r, b = results[largest], results[args.baseline]
        if largest != args.baseline:
            print(f"growth {args.baseline:,} -> {largest:,}: time x{r['seconds'] / b['seconds']:.1f}, "
                  f"peak memory x{r['peak_mb'] / b['peak_mb']:.1f}")
        if largest >= 1_000_000:
            met = r["seconds"] <= TARGET_SECONDS and r["peak_mb"] <= TARGET_GB * 1024
            ok &= met
            print(f"target 1M <= {TARGET_SECONDS:.0f} s and <= {TARGET_GB:.0f} GB: {'met' if met else 'MISSED'}")
    tc = truth_check(base, work / f"report-{args.baseline}" / "report.json")
    print(f"truth ({args.baseline:,} activities, seed {args.seed}, {tc['reps']} reps): Spearman with the true advances "
          f"caused per 100 activities: estimate {tc['caused_per_100_estimate']:.3f}, volume {tc['activities']:.3f} "
          f"(observed outcome rate {tc['outcome_rate']:.3f}, deal advances {tc['deal_advances']:.3f}); "
          f"mean per rep: estimated {tc['estimated_mean_per_100']:.2f}, true {tc['true_mean_per_100']:.2f}")
    met = tc["caused_per_100_estimate"] >= TARGET_SPEARMAN and tc["activities"] < TARGET_SPEARMAN
    ok &= met
    print(f"target Spearman(estimate) >= {TARGET_SPEARMAN} while Spearman(volume) < {TARGET_SPEARMAN}: "
          f"{'met' if met else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
