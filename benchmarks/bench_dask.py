"""Benchmark: the Dask engine against the local one, on simulated activities.

For each engine, ``features``, ``train`` and ``score`` run as the command line runs them (one
subprocess per step), while a sampler reads the memory (RSS) of the command's process and of
every process it started (the Dask workers) every 0.25 s. Then:

- the two feature files must be equal, exactly, after sorting by ``activity_id``;
- the outcome models (plan and full) must be within 0.003 AUC of each other on the same test
  window;
- the scores of one model (the local engine's) must be equal, exactly.

    .venv/bin/python benchmarks/bench_dask.py [--activities 200000] [--seed 0] [--engines local dask]
        [--workers 2] [--memory 6GiB] [--data DIR] [--keep DIR]

With one engine only (``--engines dask``, for sizes the local engine cannot hold) it prints
the figures and checks nothing but that every step succeeded. Exit 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "training.cli"]
AUC_TOLERANCE = 0.003
SCORE_SINCE = "2025-10-01"


class PeakSampler:
    """Peak RSS of a process and of its descendants (per process and summed), sampled."""

    def __init__(self, pid: int, every: float = 0.25) -> None:
        import psutil

        self.root = psutil.Process(pid)
        self.every = every
        self.peak_root = 0
        self.peak_children: dict[int, int] = {}
        self.peak_total = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                root = self.root.memory_info().rss
                total = root
                self.peak_root = max(self.peak_root, root)
                for child in self.root.children(recursive=True):
                    try:
                        rss = child.memory_info().rss
                    except psutil.Error:
                        continue
                    total += rss
                    self.peak_children[child.pid] = max(self.peak_children.get(child.pid, 0), rss)
                self.peak_total = max(self.peak_total, total)
            except psutil.Error:
                pass
            self._stop.wait(self.every)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        workers = sorted(self.peak_children.values(), reverse=True)
        return {"peak_command_gb": self.peak_root / 1e9, "peak_worker_gb": (workers[0] / 1e9) if workers else 0.0,
                "peak_workers_gb": [round(w / 1e9, 2) for w in workers if w > 200e6],
                "peak_total_gb": self.peak_total / 1e9}


def run_step(args: list[str], env: dict[str, str], log: Path) -> dict:
    """One CLI command, timed and sampled; stdout returned in ``stdout``."""
    t = time.perf_counter()
    with open(log, "ab") as err:
        proc = subprocess.Popen(CLI + args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err)
        sampler = PeakSampler(proc.pid)
        out, _ = proc.communicate()
        mem = sampler.stop()
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"FAILED: activity-scorer {' '.join(args)} (exit {proc.returncode}); see {log}")
    return {"seconds": seconds, **mem, "stdout": out.decode()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--activities", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--engines", nargs="+", default=["local", "dask"], choices=["local", "dask"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--memory", default="6GiB", help="per Dask worker")
    ap.add_argument("--steps", nargs="+", default=["features", "train", "score"],
                    choices=["features", "train", "score"])
    ap.add_argument("--data", type=Path, help="an existing dataset (skips the simulation)")
    ap.add_argument("--keep", type=Path, help="keep the dataset, files and data home here")
    ap.add_argument("--home", type=Path, help="the data home (and its MLflow store) to use (default: in --keep)")
    ap.add_argument("--model", help="score with this model URI (default: the local engine's model of this run)")
    ap.add_argument("--train-config", type=Path,
                    help="a training YAML for `train --config` (default: training/configs/default.yaml)")
    args = ap.parse_args()

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-dask-"))
    work.mkdir(parents=True, exist_ok=True)
    home = Path(args.home) if args.home else work / "home"
    env = dict(os.environ, ACTIVITY_SCORER_HOME=str(home), MLFLOW_TRACKING_URI=f"sqlite:///{home / 'mlflow.db'}",
               BENTOML_HOME=str(home / "bentoml"), ACTIVITY_SCORER_DASK_WORKERS=str(args.workers),
               ACTIVITY_SCORER_DASK_MEMORY=args.memory)
    log = work / "bench_dask.log"
    data = args.data or work / f"sim-{args.activities}"
    if not (data / "activities.parquet").exists() and not (data / "activities.csv").exists():
        t = time.perf_counter()
        subprocess.run(CLI + ["simulate", "--out", str(data), "--activities", str(args.activities),
                              "--seed", str(args.seed)], check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        print(f"simulated {args.activities:,} activities in {time.perf_counter() - t:.0f}s -> {data}")
    print(f"engines {args.engines}; Dask: {args.workers} workers x {args.memory}; {os.cpu_count()} cores; log {log}")

    results: dict[str, dict[str, dict]] = {}
    for engine in args.engines:
        res = results[engine] = {}
        if "features" in args.steps:
            res["features"] = run_step(["features", "--data", str(data), "--out", str(work / f"features-{engine}.parquet"),
                                        "--engine", engine], env, log)
        if "train" in args.steps:
            config = ["--config", str(args.train_config.resolve())] if args.train_config else []
            res["train"] = run_step(["train", "--data", str(data), "--model-name", f"bench-{engine}", "--json",
                                     "--engine", engine] + config, env, log)
            res["train"]["doc"] = json.loads(res["train"].pop("stdout"))
    if "score" in args.steps:
        model_engine = "local" if "local" in args.engines else args.engines[0]
        doc = results[model_engine].get("train", {}).get("doc")
        model = f"models:/bench-{model_engine}/{doc['version']}" if doc else f"models:/bench-{model_engine}@challenger"
        model = args.model or model
        for engine in args.engines:
            results[engine]["score"] = run_step(["score", "--data", str(data), "--out", str(work / f"scores-{engine}.parquet"),
                                                 "--since", SCORE_SINCE, "--model", model, "--engine", engine], env, log)

    print(f"\n{'engine':<6} {'step':<9} {'seconds':>8} {'peak command GB':>16} {'peak worker GB':>15} "
          f"{'peak total GB':>14}  workers' peaks")
    for engine, steps in results.items():
        for step, r in steps.items():
            print(f"{engine:<6} {step:<9} {r['seconds']:>8.1f} {r['peak_command_gb']:>16.2f} {r['peak_worker_gb']:>15.2f} "
                  f"{r['peak_total_gb']:>14.2f}  {r['peak_workers_gb']}")
    for engine, steps in results.items():
        if "train" in steps:
            m = {(x["label"], x["variant"]): x for x in steps["train"]["doc"]["metrics"]}
            print(f"{engine}: outcome AUC plan {m[('outcome', 'plan')]['auc']:.4f}, full {m[('outcome', 'full')]['auc']:.4f}; "
                  f"train seconds {json.dumps({k: round(v, 1) for k, v in steps['train']['doc']['seconds'].items() if not k.startswith('training.')})}")

    if len(args.engines) < 2:
        print("one engine: nothing compared")
        return 0
    import pandas as pd

    failures = []
    if "features" in args.steps:
        local, dask = (pd.read_parquet(work / f"features-{e}.parquet").sort_values("activity_id", ignore_index=True)
                       for e in ("local", "dask"))
        try:
            pd.testing.assert_frame_equal(dask, local, check_exact=True)
            print(f"features: EQUAL ({len(local):,} rows x {local.shape[1]} columns, exact, sorted by activity_id)")
        except AssertionError as err:
            failures.append(f"features differ: {str(err).splitlines()[0:3]}")
        del local, dask
    if "train" in args.steps:
        docs = {e: results[e]["train"]["doc"] for e in ("local", "dask")}
        if docs["local"]["window"] != docs["dask"]["window"]:
            failures.append("train: the test windows differ")
        for variant in ("plan", "full"):
            auc = {e: next(x["auc"] for x in d["metrics"] if x["label"] == "outcome" and x["variant"] == variant)
                   for e, d in docs.items()}
            diff = abs(auc["dask"] - auc["local"])
            ok = diff <= AUC_TOLERANCE
            print(f"train outcome/{variant}: AUC local {auc['local']:.4f}, dask {auc['dask']:.4f}, |diff| {diff:.4f} "
                  f"(target <= {AUC_TOLERANCE}) {'met' if ok else 'MISSED'}")
            if not ok:
                failures.append(f"outcome/{variant} AUC differs by {diff:.4f}")
    if "score" in args.steps:
        local, dask = (pd.read_parquet(work / f"scores-{e}.parquet").sort_values("activity_id", ignore_index=True)
                       for e in ("local", "dask"))
        try:
            pd.testing.assert_frame_equal(dask, local, check_exact=True)
            print(f"score: EQUAL ({len(local):,} activities since {SCORE_SINCE}, one model, exact)")
        except AssertionError as err:
            failures.append(f"scores differ: {str(err).splitlines()[0:3]}")
    for f in failures:
        print("FAILED:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
