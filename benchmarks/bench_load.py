"""Benchmark: a long bounded load on the scoring service, minute by minute (issue 12).

Trains a small bundle on a synthetic history (as ``bench_serving.py``), starts ``bentoml serve`` on a
free 127.0.0.1 port with an API key, and runs ``--connections`` (16) connections of ``/score`` (one item
with 50 history activities, ``explain``) for ``--duration`` seconds (600), then stops by itself.
Loopback only. For every minute it prints requests/s, p50 / p99 / max latency, errors and the RSS of
the server's processes; the first minute is the baseline the later ones are compared with.

Checks (exit 1 when one fails): zero errors; p99 <= 100 ms over the run; memory of the last minute
within +10% of the first; the last minute's throughput at least 80% of the first's (no slow decay).

    .venv/bin/python benchmarks/bench_load.py [--duration 600] [--connections 16] [--workers 2]

A latency benchmark: run it alone, not under ``nice``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

for _key, _value in {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "BENTOML_DO_NOT_TRACK": "True",
                     "OMP_NUM_THREADS": "1"}.items():
    os.environ.setdefault(_key, _value)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402

P99_TARGET_MS = 100.0
MEMORY_GROWTH_MAX = 0.10
THROUGHPUT_KEEP = 0.80
API_KEY = "bench-load-key-0123456789abcdef"


class Sampler(threading.Thread):
    def __init__(self, pids: list[int]):
        super().__init__(daemon=True)
        import psutil

        self.procs = [psutil.Process(p) for p in pids]
        self.samples: list[tuple[float, float]] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            total = 0
            for p in self.procs:
                try:
                    total += p.memory_info().rss
                except Exception:  # noqa: BLE001  (a process may be gone at shutdown)
                    continue
            self.samples.append((time.perf_counter(), total / 2**20))
            self.stop_event.wait(1.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    from bench_serving import _load, build_requests, pct
    from tests.serving.helpers import Server, make_dataset, train_bundle

    work = Path(tempfile.mkdtemp(prefix="bench-load-"))
    dataset = make_dataset()
    bundle = train_bundle(dataset, work / "bundle")
    body, _, rows = build_requests(dataset, 50, 20)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    server = Server(bundle, work / "home", env={"ACTIVITY_SCORER_WORKERS": str(args.workers),
                                                "ACTIVITY_SCORER_API_KEYS": API_KEY,
                                                "ACTIVITY_SCORER_PREDICTION_LOG": "off",
                                                "PROMETHEUS_MULTIPROC_DIR": str(work / "prometheus")})
    (work / "prometheus").mkdir()
    try:
        server.wait_ready()
        asyncio.run(_load(server.port, "/score", body, args.connections, 5.0, headers))  # warm-up
        sampler = Sampler(server.pids())
        sampler.start()
        t0 = time.perf_counter()
        results = asyncio.run(_load(server.port, "/score", body, args.connections, args.duration, headers))
        sampler.stop_event.set()
        sampler.join()
        log = server.log_path.read_text(errors="replace")
    finally:
        server.stop()

    ends = np.array([r[0] for r in results]) - t0
    ms = np.array([r[1] for r in results]) * 1e3
    ok = np.array([r[2] for r in results])
    mem = np.array(sampler.samples)
    mem_t = mem[:, 0] - t0
    print(f"/score, 1 item + {rows.get('activities', 0)} history activities + explain; {args.connections} connections, "
          f"{args.workers} workers, {args.duration:.0f} s, loopback, API key")
    print("minute  requests/s  p50 ms  p99 ms  max ms  errors  server RSS MB")
    minutes = int(np.ceil(args.duration / 60))
    per_minute = []
    for m in range(minutes):
        sel = (ends >= 60 * m) & (ends < 60 * (m + 1))
        width = min(60.0, args.duration - 60 * m)
        rss = mem[(mem_t >= 60 * m) & (mem_t < 60 * (m + 1)), 1]
        row = (sel.sum() / width, pct(ms[sel], 50), pct(ms[sel], 99), float(ms[sel].max()) if sel.any() else float("nan"),
               int((~ok[sel]).sum()), float(rss.mean()) if len(rss) else float("nan"))
        per_minute.append(row)
        print(f"{m + 1:>6}  {row[0]:>10.0f}  {row[1]:>6.1f}  {row[2]:>6.1f}  {row[3]:>6.0f}  {row[4]:>6}  {row[5]:>13.0f}")
    span = float(ends.max())
    errors = int((~ok).sum())
    growth = per_minute[-1][5] / per_minute[0][5] - 1.0
    keep = per_minute[-1][0] / per_minute[0][0]
    print(f"all: {len(results):,} requests, {len(results) / span:.0f} requests/s, p50 {pct(ms, 50):.1f} ms, "
          f"p99 {pct(ms, 99):.1f} ms, max {ms.max():.0f} ms, errors {errors}")
    print(f"last minute vs the first (baseline): throughput {keep:.0%}, memory {growth:+.1%}; "
          f"tracebacks in the server log: {log.count('Traceback')}")
    checks = {
        "zero errors": errors == 0 and "Traceback" not in log,
        f"p99 <= {P99_TARGET_MS:.0f} ms": pct(ms, 99) <= P99_TARGET_MS,
        f"memory growth <= {MEMORY_GROWTH_MAX:.0%}": growth <= MEMORY_GROWTH_MAX,
        f"last minute's throughput >= {THROUGHPUT_KEEP:.0%} of the first": keep >= THROUGHPUT_KEEP,
    }
    for name, passed in checks.items():
        print(f"{'PASS' if passed else 'FAIL'}  {name}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
