"""Benchmark: what one ``lightgbm.dask`` fit costs the Dask workers, against a baseline commit.

``train --engine dask`` sends each fit's rows from the client to the workers
(``engine.train.DaskBoosterTrainer``). This runs one such fit on a random matrix (the shape of
the training matrix: 53 float64 features) in a child process from this checkout and, with
``--baseline REF``, from a checkout of REF (a temporary ``git worktree``), one after the other
on the same matrix. A thread in the child samples the workers' resident memory every 0.1 s.

    .venv/bin/python benchmarks/bench_dask_fit_memory.py [--rows 3000000] [--rounds 20]
        [--baseline 4704da4~1]

Prints, per version: the rows sent, the workers' memory before the fit and their peak during
it, and the seconds; then the ratio of the peaks. The two boosters' trees must be the same
(the same rows in the same order): exit 1 when they differ or a child fails.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

# its sibling sets the telemetry switches off and checks out the baseline
from bench_train_memory import ROOT, baseline_checkout

MARK = "@@fit "

# The child: run from the checkout being measured (its code first on sys.path).
CHILD = r"""
import hashlib, json, os, sys, threading, time
from pathlib import Path
sys.path.insert(0, os.getcwd())

def main():
    n_rows, rounds, home = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    import numpy as np
    import psutil
    from engine.cluster import open_client, settings_from_env
    from engine.train import DaskBoosterTrainer

    rng = np.random.default_rng(0)
    X = rng.normal(size=(n_rows, 53))
    y = (X[:, 0] + rng.normal(size=n_rows) > 0).astype(float)
    rows = np.arange(0, n_rows - n_rows // 10)  # a fit's rows: all but the newest tenth
    with open_client(settings_from_env(), home) as client:
        procs = [psutil.Process(p) for p in client.run(os.getpid).values()]
        before = [p.memory_info().rss for p in procs]
        peaks = list(before)
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                for i, p in enumerate(procs):
                    try:
                        peaks[i] = max(peaks[i], p.memory_info().rss)
                    except psutil.Error:
                        pass
                time.sleep(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t = time.perf_counter()
        booster = DaskBoosterTrainer(client).fit(
            {"objective": "binary", "verbose": -1, "seed": 1, "deterministic": True},
            X, y, [f"f{i}" for i in range(X.shape[1])], [], rounds=rounds, rows=rows)[0]
        seconds = time.perf_counter() - t
        stop.set()
        sampler.join()
    text = booster.model_to_string()
    print("@@fit " + json.dumps({"sent": len(rows) * X.shape[1] * 8, "before": before, "peaks": peaks,
                                 "seconds": round(seconds, 1),
                                 # the trees only: the parameters after them name the ports of this run
                                 "model": hashlib.sha256(text[text.index("Tree=0"):text.index("end of trees")]
                                                         .encode()).hexdigest()}),
          flush=True)

if __name__ == "__main__":
    main()
"""


def run_child(checkout: Path, rows: int, rounds: int, work: Path) -> dict:
    """One fit in a child process from ``checkout``; what it printed."""
    home = work / "home"
    home.mkdir(parents=True, exist_ok=True)
    script = work / "child.py"
    script.write_text(CHILD)
    env = dict(os.environ, ACTIVITY_SCORER_HOME=str(home), PYTHONPATH=str(checkout))
    proc = subprocess.run([sys.executable, str(script), str(rows), str(rounds), str(home)], cwd=checkout, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = [json.loads(line[len(MARK):]) for line in proc.stdout.splitlines() if line.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise SystemExit(f"the fit from {checkout} failed (exit {proc.returncode}):\n{tail}")
    return lines[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=3_000_000)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--baseline", help="a git ref to measure the same way, first (e.g. 4704da4~1)")
    args = ap.parse_args()
    if args.rows < 1000 or args.rounds < 1:
        print("--rows expects at least 1000 and --rounds at least 1", file=sys.stderr)
        return 2
    versions: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-dask-fit-memory-") as tmp:
        tmp = Path(tmp)
        if args.baseline:
            with baseline_checkout(args.baseline, tmp / "baseline") as base:
                versions[f"baseline {args.baseline}"] = run_child(base, args.rows, args.rounds, tmp / "b")
        versions["this checkout"] = run_child(ROOT, args.rows, args.rounds, tmp / "c")
    gb = 1e9
    print(f"one Dask fit of {args.rows - args.rows // 10:,} x 53 rows ({next(iter(versions.values()))['sent'] / gb:.2f} GB "
          f"sent), {args.rounds} rounds; GB resident per worker")
    for name, v in versions.items():
        print(f"{name:28} before {[round(b / gb, 2) for b in v['before']]}  peak {[round(p / gb, 2) for p in v['peaks']]}"
              f"  {v['seconds']:.0f} s")
    if len(versions) == 2:
        (b, bv), (n, nv) = versions.items()
        print(f"worker peak, this checkout / baseline: x{max(nv['peaks']) / max(bv['peaks']):.2f}")
        if bv["model"] != nv["model"]:
            print("the two boosters differ: the same rows should give the same model", file=sys.stderr)
            return 1
        print("the two boosters are the same")
    return 0


if __name__ == "__main__":
    sys.exit(main())
