"""Benchmark: the history store behind the service, at two store sizes measured in the same run.

1. ``activity-scorer simulate`` writes two datasets (``--small`` and ``--large`` activities,
   100k and 1M by default; kept in ``--work`` and reused), and ``activity-scorer load`` loads each
   into its own SQLite store: the load command's own rate (store writes) and the end-to-end
   rate (reading the dataset included). Target: >= 50,000 activities/s into SQLite.
2. A small bundle is trained on the small dataset (the training library, few trees), and two
   ``bentoml serve`` processes start on free 127.0.0.1 ports, one per store.
3. ``/score`` by id, one item, ``explain``: ``--requests`` sequential requests to each server,
   interleaved (small, large, baseline, small, ...) so all see the same machine; each request
   names a random stored activity (``{"activity": {"activity_id": ..., "type": ...}}``), whose
   deal, contact, account and history the service reads from the store. Targets on the large
   store: p50 <= 5 ms, p99 <= 20 ms; and p50 large / p50 small within 20%. Baseline, in the same
   loop: the same activities scored with their history in the request (no store read), on a
   third server of the same configuration (each server answers one request in three: none is
   kept warmer than another). Each server's CPU time per request (its processes' user + system
   time over the loop) is printed too: unlike latency, it hardly depends on what else runs on
   the machine.
4. ``POST /events``: ``--connections`` (16) keep-alive connections for ``--events-seconds``,
   each posting ``--batch`` new activity rows per request to the large store's server; rows
   acknowledged per second. Target >= 2,000 rows/s. Bounded: it stops by itself.

    .venv/bin/python benchmarks/bench_store.py [--small 100000] [--large 1000000] [--work DIR]

Prints every figure and exits 1 when a target fails.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import subprocess
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

import numpy as np  # noqa: E402

from features import contract as c  # noqa: E402

CLI = [sys.executable, "-m", "training.cli"]


def pct(ms: np.ndarray, q: float) -> float:
    return float(np.percentile(ms, q))


def simulate(n: int, work: Path) -> Path:
    out = work / f"sim-{n}"
    if (out / "activities.parquet").exists():
        print(f"dataset {out} (reused)")
        return out
    t = time.perf_counter()
    subprocess.run([*CLI, "simulate", "--out", str(out), "--activities", str(n), "--seed", "0"], check=True,
                   capture_output=True, cwd=ROOT)
    print(f"simulated {n:,} activities into {out} in {time.perf_counter() - t:.1f}s")
    return out


def load(data: Path, store: Path, work: Path) -> dict:
    if store.exists():
        for suffix in ("", "-wal", "-shm"):
            Path(str(store) + suffix).unlink(missing_ok=True)
    env = {**os.environ, "ACTIVITY_SCORER_HOME": str(work / "home")}
    t = time.perf_counter()
    done = subprocess.run([*CLI, "load", "--data", str(data), "--store", f"sqlite:///{store}"], env=env,
                          capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"load failed: {done.stderr.strip()}")
    line = done.stdout.strip().splitlines()[-1]
    print(f"  $ activity-scorer load --data {data} --store sqlite:///{store}\n  {line}")
    rate = float(re.search(r"\(([\d,]+) activities/s", line).group(1).replace(",", ""))
    n = int(re.search(r"([\d,]+) activities", line).group(1).replace(",", ""))
    return {"n": n, "write_rate": rate, "wall": wall, "end_to_end_rate": n / wall}


def train(data: Path, out: Path) -> Path:
    from features.dataset import load_dataset
    from tests.serving.helpers import train_bundle

    if (out / "manifest.json").exists():
        return out
    t = time.perf_counter()
    train_bundle(load_dataset(data), out)
    print(f"trained a small bundle on {data.name} in {time.perf_counter() - t:.1f}s")
    return out


def pick_ids(data: Path, n: int, seed: int) -> list[tuple[str, str]]:
    import pandas as pd

    acts = pd.read_parquet(data / "activities.parquet", columns=[c.ACTIVITY_ID, c.TYPE, c.DEAL_ID])
    acts = acts[acts[c.DEAL_ID].notna()]
    pick = acts.sample(n, random_state=seed)
    return list(zip(pick[c.ACTIVITY_ID].astype(str), pick[c.TYPE].astype(str), strict=True))


def id_bodies(ids: list[tuple[str, str]]) -> list[bytes]:
    return [json.dumps({"items": [{"activity": {c.ACTIVITY_ID: a, c.TYPE: t}}], "explain": True}).encode()
            for a, t in ids]


def history_bodies(data: Path, ids: list[tuple[str, str]]) -> list[bytes]:
    """The same activities with their history in the request (``features.build.request_items``, the rows
    before the activity's time): the path without a store, as the baseline of the same run."""
    from features.build import request_items
    from features.dataset import load_dataset

    dataset = load_dataset(data)
    out = []
    for item in request_items(dataset, [a for a, _ in ids]):
        at = item["activity"][c.OCCURRED_AT]
        hist = item["history"]
        hist[c.ACTIVITIES] = [r for r in hist[c.ACTIVITIES] if r[c.OCCURRED_AT] < at]
        kept = {r[c.ACTIVITY_ID] for r in hist[c.ACTIVITIES]}
        hist[c.RESPONSES] = [r for r in hist.get(c.RESPONSES, []) if r[c.ACTIVITY_ID] in kept]
        out.append(json.dumps({"items": [item], "explain": True}).encode())
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (0 for one that is gone)."""
    import psutil

    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def interleaved(ports: dict[str, int], bodies: dict[str, list[bytes]], n: int,
                pids: dict[str, list[int]] | None = None) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Sequential requests, one of each kind in turn (each kind on its own keep-alive connection).

    Returns the latencies (ms) per kind and, for kinds given in ``pids`` (the processes of the
    server that answers only that kind), the server's CPU milliseconds per measured request.
    """
    conns = {k: http.client.HTTPConnection("127.0.0.1", p, timeout=30) for k, p in ports.items()}
    hdrs = {"Content-Type": "application/json"}
    lat: dict[str, list[float]] = {k: [] for k in ports}
    errors = {k: 0 for k in ports}
    cpu0: dict[str, float] = {}
    for i in range(n + 50):
        if i == 50:
            cpu0 = {k: cpu_seconds(p) for k, p in (pids or {}).items()}
        for k, conn in conns.items():
            t = time.perf_counter()
            conn.request("POST", "/score", bodies[k][i % len(bodies[k])], hdrs)
            r = conn.getresponse()
            payload = r.read()
            dt = time.perf_counter() - t
            if r.status != 200 or b'"p_outcome"' not in payload:
                errors[k] += 1
            if i >= 50:
                lat[k].append(dt)
    cpu = {k: (cpu_seconds(p) - cpu0[k]) * 1e3 / n for k, p in (pids or {}).items()}
    for conn in conns.values():
        conn.close()
    for k, e in errors.items():
        if e:
            print(f"!! {k}: {e} failed requests")
    return {k: np.array(v) * 1e3 for k, v in lat.items()}, cpu


def events_load(port: int, connections: int, seconds: float, batch: int, deals: list[str]) -> dict:
    stop = time.monotonic() + seconds
    counts = [0] * connections
    errors = [0] * connections
    lat: list[list[float]] = [[] for _ in range(connections)]

    def worker(w: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        rng = np.random.default_rng(w)
        k = 0
        while time.monotonic() < stop:
            deal = deals[int(rng.integers(len(deals)))]
            rows = [{c.ACTIVITY_ID: f"bench-{w}-{k}-{j}", c.TYPE: "email", c.DEAL_ID: deal,
                     c.OCCURRED_AT: f"2027-01-{1 + (k % 28):02d}T{j % 24:02d}:00:00Z", c.PERSONALIZATION: 0.5}
                    for j in range(batch)]
            k += 1
            t = time.perf_counter()
            try:
                conn.request("POST", "/events", json.dumps({"activities": rows}).encode(),
                             {"Content-Type": "application/json"})
                r = conn.getresponse()
                r.read()
            except OSError:
                errors[w] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                continue
            lat[w].append(time.perf_counter() - t)
            if r.status == 200:
                counts[w] += batch
            else:
                errors[w] += 1
        conn.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 60)
    span = time.perf_counter() - t0
    ms = np.concatenate([np.array(x) for x in lat]) * 1e3 if any(lat) else np.array([np.nan])
    return {"rows": sum(counts), "rows_per_s": sum(counts) / span, "errors": sum(errors), "p50": pct(ms, 50),
            "p99": pct(ms, 99), "seconds": span}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", type=int, default=100_000)
    ap.add_argument("--large", type=int, default=1_000_000)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--events-seconds", type=float, default=20.0)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--work", type=Path, default=None, help="keep datasets here between runs")
    args = ap.parse_args()
    from tests.serving.helpers import Server

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-store-"))
    work.mkdir(parents=True, exist_ok=True)
    failures = []
    print(f"== 1. datasets and load (work dir {work})")
    data = {"small": simulate(args.small, work), "large": simulate(args.large, work)}
    loads = {k: load(d, work / f"store-{k}.db", work) for k, d in data.items()}
    for k, r in loads.items():
        print(f"  {k}: {r['n']:,} activities: store writes {r['write_rate']:,.0f}/s; end to end (reading the "
              f"dataset included) {r['end_to_end_rate']:,.0f}/s in {r['wall']:.1f}s")
    if loads["large"]["write_rate"] < 50_000:
        failures.append(f"load {loads['large']['write_rate']:,.0f} activities/s < 50,000")

    print("== 2. bundle and servers")
    bundle = train(data["small"], work / "bundle")
    stores = {"small": "small", "large": "large", "baseline": "large"}  # the baseline reads no store
    servers = {k: Server(bundle, work / f"home-{k}", env={"ACTIVITY_SCORER_STORE": f"sqlite:///{work / f'store-{v}.db'}"})
               for k, v in stores.items()}
    try:
        for s in servers.values():
            s.wait_ready(180)
        print("== 3. /score by id, 1 item, explain, sequential, interleaved")
        ids = {k: pick_ids(d, args.requests, seed=1) for k, d in data.items()}
        bodies = {k: id_bodies(v) for k, v in ids.items()}
        n_base = min(args.requests, 500)
        bodies["baseline"] = history_bodies(data["large"], ids["large"][:n_base])
        ports = {k: s.port for k, s in servers.items()}
        print(f"  load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (2 cores shared with other work)")
        lat, cpu = interleaved(ports, bodies, args.requests, {k: s.pids() for k, s in servers.items()})
        names = {"small": f"by id, small store ({loads['small']['n']:,} activities)",
                 "large": f"by id, large store ({loads['large']['n']:,} activities)",
                 "baseline": f"same activities of the large dataset, history in the request ({n_base} distinct)"}
        for k, ms in lat.items():
            print(f"  {names[k]}: n={len(ms)} p50 {pct(ms, 50):.2f} ms  p99 {pct(ms, 99):.2f} ms  max {ms.max():.1f} ms; "
                  f"server CPU {cpu[k]:.2f} ms per request")
        print(f"  load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        p50l, p99l, p50s = pct(lat["large"], 50), pct(lat["large"], 99), pct(lat["small"], 50)
        ratio = p50l / p50s
        print(f"  p50 large / small = {ratio:.3f} (target within 0.8-1.2)")
        if p50l > 5:
            failures.append(f"/score by id p50 {p50l:.2f} ms > 5 ms")
        if p99l > 20:
            failures.append(f"/score by id p99 {p99l:.2f} ms > 20 ms")
        if not 0.8 <= ratio <= 1.2:
            failures.append(f"p50 1M/100k ratio {ratio:.3f} outside 0.8-1.2")
        print(f"== 4. POST /events, {args.connections} connections x {args.events_seconds:.0f}s, "
              f"{args.batch} rows per request")
        import pandas as pd

        deals = pd.read_parquet(data["large"] / "deals.parquet", columns=[c.DEAL_ID])[c.DEAL_ID].astype(str).tolist()
        ev = events_load(servers["large"].port, args.connections, args.events_seconds, args.batch, deals[:5000])
        print(f"  {ev['rows']:,} rows acknowledged in {ev['seconds']:.1f}s: {ev['rows_per_s']:,.0f} rows/s; "
              f"request p50 {ev['p50']:.1f} ms, p99 {ev['p99']:.1f} ms; errors {ev['errors']}")
        if ev["rows_per_s"] < 2000 or ev["errors"]:
            failures.append(f"events {ev['rows_per_s']:,.0f} rows/s (errors {ev['errors']})")
    finally:
        for s in servers.values():
            s.stop()
    if failures:
        print("TARGETS MISSED: " + "; ".join(failures))
        return 1
    print("all targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
