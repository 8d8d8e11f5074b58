"""Benchmark: where `train` holds its memory, phase by phase, against a baseline commit in the same run.

`train` runs in a child process (the workflow of ``activity-scorer train``, registering into a
throwaway MLflow store) whose progress callback prints, at each step it announces, the time,
the process's resident memory (``VmRSS``) and its peak so far (``VmHWM``). On the Dask engine
that is the client (the process that gathers the table); the workers are not counted here
(``bench_dask.py`` samples them). With ``--baseline REF`` the same is run from a checkout of
REF (a temporary ``git worktree``), one after the other, and the two are printed side by side.

    .venv/bin/python benchmarks/bench_train_memory.py --data DIR [--engine local|dask] [--baseline REF]
        [--stop-at "training the ranking"]

Prints one table: per phase, RSS and peak so far for each version, then the whole run's peak
and its ratio to the baseline's. Exit 1 when a child fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")

ROOT = Path(__file__).resolve().parents[1]
MARK = "@@phase "

# The child: run from the checkout being measured (its code first on sys.path).
CHILD = r"""
import json, os, sys, time
from pathlib import Path
sys.path.insert(0, os.getcwd())

def memory():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, value = line.split(":", 1)
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out

def main():
    data, engine, home, stop_at = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), sys.argv[4]
    t0 = time.perf_counter()

    def progress(msg):
        m = memory()
        print("@@phase " + json.dumps({"s": round(time.perf_counter() - t0, 1), "rss": m["VmRSS"],
                                        "peak": m["VmHWM"], "msg": msg}), flush=True)
        if stop_at and msg.startswith(stop_at):
            os._exit(0)

    from training.config import load_config
    cfg = load_config()
    if engine == "dask":
        from engine.cluster import settings_from_env
        from engine.train import train_on_dask
        train_on_dask(data, cfg, settings_from_env(), home, None, progress)
    else:
        from training.workflow import train_and_register
        train_and_register(data, cfg, None, progress)
    progress("done")

if __name__ == "__main__":
    main()
"""


@contextlib.contextmanager
def baseline_checkout(ref: str, where: Path) -> Iterator[Path]:
    """A checkout of ``ref`` at ``where`` (a detached ``git worktree``), removed afterwards."""
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), ref],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield where
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(where)], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_child(checkout: Path, data: Path, engine: str, stop_at: str, work: Path) -> list[dict]:
    """One `train` in a child process from ``checkout``; its phase lines."""
    home = work / "home"
    home.mkdir(parents=True, exist_ok=True)
    script = work / "child.py"
    script.write_text(CHILD)
    env = dict(os.environ, ACTIVITY_SCORER_HOME=str(home), MLFLOW_TRACKING_URI=f"sqlite:///{home / 'mlflow.db'}",
               BENTOML_HOME=str(home / "bentoml"), PYTHONPATH=str(checkout))
    proc = subprocess.run([sys.executable, str(script), str(data), engine, str(home), stop_at], cwd=checkout,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    phases = [json.loads(line[len(MARK):]) for line in proc.stdout.splitlines() if line.startswith(MARK)]
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise SystemExit(f"train from {checkout} failed (exit {proc.returncode}):\n{tail}")
    return phases


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="a dataset directory (e.g. from activity-scorer simulate)")
    ap.add_argument("--engine", choices=("local", "dask"), default="local")
    ap.add_argument("--baseline", help="a git ref to measure the same way, first")
    ap.add_argument("--stop-at", default="", help="end each run at the first step whose message starts so")
    args = ap.parse_args()
    data = args.data.resolve()
    if not (data / "activities.parquet").exists() and not (data / "activities.csv").exists():
        print(f"{data}: no activities table (make one with activity-scorer simulate)", file=sys.stderr)
        return 2
    versions: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-train-memory-") as tmp:
        tmp = Path(tmp)
        if args.baseline:
            with baseline_checkout(args.baseline, tmp / "baseline") as base:
                versions[f"baseline {args.baseline}"] = run_child(base, data, args.engine, args.stop_at, tmp / "b")
        versions["this checkout"] = run_child(ROOT, data, args.engine, args.stop_at, tmp / "c")
    gb = 1e9
    names = list(versions)
    print(f"train --engine {args.engine} on {data}; GB of the {'client' if args.engine == 'dask' else 'process'}")
    header = f"{'step (first message of it)':58}" + "".join(f"{n[:24]:>26}" for n in names)
    print(header)
    print(f"{'':58}" + "".join(f"{'seconds  rss  peak':>26}" for _ in names))
    steps: list[str] = []
    for phases in versions.values():
        for p in phases:
            key = p["msg"].split(":")[0]
            if key not in steps:
                steps.append(key)
    for step in steps:
        row = f"{step[:58]:58}"
        for n in names:
            hit = next((p for p in versions[n] if p["msg"].split(":")[0] == step), None)
            row += (f"{hit['s']:>12.1f} {hit['rss'] / gb:5.2f} {hit['peak'] / gb:5.2f}" if hit else f"{'-':>24}")
            row += "  "
        print(row)
    peaks = {n: max(p["peak"] for p in ph) for n, ph in versions.items()}
    print("peak of the whole run: " + ", ".join(f"{n} {v / gb:.2f} GB" for n, v in peaks.items()))
    if len(names) == 2:
        print(f"peak, this checkout / baseline: x{peaks[names[1]] / peaks[names[0]]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
