"""Benchmark: the scoring service over loopback HTTP, against the same work in-process.

Trains a small bundle with the training library on a synthetic CRM history (or takes
``--bundle``), starts ``bentoml serve serving.service:ActivityScorer`` on a free
127.0.0.1 port and measures, in one run:

1. ``/score``, one item with 50 history activities (and their responses, the deal's
   stages and contacts) and ``explain``: 2,000 sequential requests on one keep-alive
   connection; p50/p99/max, and the max per 2-second window. The same request is timed
   in-process (validation + features + predict + explanations + JSON) and as a bare
   booster predict on the encoded row; the overhead ratios are printed.
2. ``/rank`` with 20 given candidates: 1,000 sequential requests.
3. 16 concurrent connections for 60 s: requests/s, p50/p99, errors, server memory (RSS
   of the arbiter and workers) in the first and the last 10 s, and the max latency in
   every 5-second window, which must stay flat. Garbage-collection pauses of the workers
   (generations 1 and 2, from ``/metrics``) are reported for the phase.

``--compare`` repeats phase 3 on a server started with ``ACTIVITY_SCORER_RUNTIME_FIXES=0``
(BentoML's own timeout middleware, no start-up heap freeze) to show what the fixes do.

    .venv/bin/python benchmarks/bench_serving.py [--workers 2] [--duration 60] [--compare]

Targets (loopback, 2 cores): /score p50 <= 5 ms and p99 <= 20 ms sequential; at 16
connections >= 400 requests/s, p99 <= 100 ms, no errors, memory growth <= 10%; /rank
with 20 candidates p99 <= 30 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
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

import numpy as np  # noqa: E402

from features import contract as c  # noqa: E402


def pct(ms: np.ndarray, q: float) -> float:
    return float(np.percentile(ms, q)) if len(ms) else float("nan")


def windows_max(t_end: np.ndarray, lat_ms: np.ndarray, t0: float, width: float) -> list[float]:
    """Max latency in consecutive windows of ``width`` seconds."""
    if not len(t_end):
        return []
    idx = ((t_end - t0) // width).astype(int)
    return [float(lat_ms[idx == k].max()) if (idx == k).any() else float("nan") for k in range(idx.max() + 1)]


def fmt_list(values: list[float]) -> str:
    return " ".join(f"{v:.0f}" if v >= 10 else f"{v:.1f}" for v in values)


# --- in-process ---------------------------------------------------------------------------------


def in_process(bundle_dir: Path, body: bytes, n: int) -> dict[str, float]:
    """p50 of the whole in-process call and of a bare booster predict on the encoded row."""
    from features.build import build_serving_columns
    from serving.model_store import load_bundle_dir
    from serving.schemas import ScoreRequest
    from serving.scorer import Scorer

    model = load_bundle_dir(bundle_dir)
    scorer = Scorer(model)

    def call() -> bytes:
        return scorer.score(ScoreRequest.model_validate_json(body)).model_dump_json().encode()

    items = [i.model_dump(exclude_none=True) for i in ScoreRequest.model_validate_json(body).items]
    matrix, _ = model.bundle.spec.encode_columns(build_serving_columns(items, model.context))
    booster = model.bundle.boosters[("outcome", model.bundle.trained_variant("full"))]

    def bare() -> None:
        booster.predict(matrix, raw_score=True)

    out = {}
    for name, fn in (("in_process", call), ("bare_predict", bare)):
        for _ in range(50):
            fn()
        times = []
        for _ in range(n):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        ms = np.array(times) * 1e3
        out[name + "_p50"] = pct(ms, 50)
        out[name + "_p99"] = pct(ms, 99)
    return out


# --- sequential HTTP ------------------------------------------------------------------------------


def sequential(port: int, path: str, body: bytes, n: int, headers: dict[str, str]) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    hdrs = {"Content-Type": "application/json", **headers}
    for _ in range(50):
        conn.request("POST", path, body, hdrs)
        r = conn.getresponse()
        r.read()
    lat, ends, errors = [], [], 0
    t0 = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        conn.request("POST", path, body, hdrs)
        r = conn.getresponse()
        r.read()
        done = time.perf_counter()
        if r.status != 200:
            errors += 1
        lat.append(done - t)
        ends.append(done)
    conn.close()
    ms = np.array(lat) * 1e3
    return {"n": n, "errors": errors, "p50": pct(ms, 50), "p99": pct(ms, 99), "max": float(ms.max()),
            "windows_max": windows_max(np.array(ends), ms, t0, 2.0), "seconds": ends[-1] - t0}


# --- concurrent HTTP ----------------------------------------------------------------------------


class MemorySampler(threading.Thread):
    """RSS of the server's processes (arbiter + workers), once a second; CPU time over the run."""

    def __init__(self, pids: list[int]):
        super().__init__(daemon=True)
        import psutil

        self.procs = [psutil.Process(p) for p in pids]
        self.samples: list[tuple[float, float]] = []
        self.stop_event = threading.Event()
        self.cpu_start = self._cpu()

    def _cpu(self) -> dict[str, float]:
        """CPU seconds: the server's processes, this process (the load generator), the whole machine."""
        import psutil

        server = 0.0
        for p in self.procs:
            try:
                t = p.cpu_times()
                server += t.user + t.system
            except psutil.Error:
                continue
        own = psutil.Process().cpu_times()
        machine = psutil.cpu_times()
        return {"server": server, "client": own.user + own.system,
                "busy": machine.user + machine.system + machine.nice + getattr(machine, "irq", 0.0)
                + getattr(machine, "softirq", 0.0), "wall": time.perf_counter()}

    def cpu_used(self) -> dict[str, float]:
        end = self._cpu()
        return {k: end[k] - self.cpu_start[k] for k in end}

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


async def _load(port: int, path: str, body: bytes, connections: int, duration: float, headers: dict[str, str]):
    import aiohttp

    hdrs = {"Content-Type": "application/json", **headers}
    results: list[tuple[float, float, bool]] = []
    deadline = time.perf_counter() + duration
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            while True:
                t = time.perf_counter()
                if t >= deadline:
                    return
                ok = False
                try:
                    async with session.post(path, data=body, headers=hdrs) as r:
                        await r.read()
                        ok = r.status == 200
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    ok = False
                done = time.perf_counter()
                results.append((done, done - t, ok))

        await asyncio.gather(*(worker() for _ in range(connections)))
    return results


def concurrent(port: int, path: str, body: bytes, connections: int, duration: float, pids: list[int],
               headers: dict[str, str]) -> dict:
    asyncio.run(_load(port, path, body, connections, 3.0, headers))  # warm-up
    sampler = MemorySampler(pids)
    sampler.start()
    t0 = time.perf_counter()
    results = asyncio.run(_load(port, path, body, connections, duration, headers))
    cpu = sampler.cpu_used()
    sampler.stop_event.set()
    sampler.join()
    ends = np.array([r[0] for r in results])
    ms = np.array([r[1] for r in results]) * 1e3
    errors = sum(1 for r in results if not r[2])
    span = float(ends.max() - t0) if len(ends) else float("nan")
    mem = np.array(sampler.samples)
    first = mem[mem[:, 0] - t0 <= 10, 1] if len(mem) else np.array([])
    last = mem[mem[:, 0] - t0 >= span - 10, 1] if len(mem) else np.array([])
    return {"n": len(results), "errors": errors, "rps": len(results) / span, "p50": pct(ms, 50), "p99": pct(ms, 99),
            "max": float(ms.max()), "windows_max": windows_max(ends, ms, t0, 5.0),
            "mem_first_mb": float(first.mean()) if len(first) else float("nan"),
            "mem_last_mb": float(last.mean()) if len(last) else float("nan"),
            "server_cpu_ms": cpu["server"] / max(len(results), 1) * 1e3,
            "client_cpu_ms": cpu["client"] / max(len(results), 1) * 1e3,
            "others_cores": max(cpu["busy"] - cpu["server"] - cpu["client"], 0.0) / cpu["wall"]}


def gc_stats(port: int, headers: dict[str, str]) -> dict[str, tuple[float, float]]:
    """``{generation: (count, sum_seconds)}`` of the workers' GC pauses, from /metrics."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/metrics", headers=headers)
    text = conn.getresponse().read().decode()
    conn.close()
    out: dict[str, list[float]] = {}
    for line in text.splitlines():
        if line.startswith("activity_scorer_gc_pause_seconds_count") or line.startswith(
                "activity_scorer_gc_pause_seconds_sum"):
            name, value = line.rsplit(" ", 1)
            gen = name.split('generation="')[1].split('"')[0]
            slot = 0 if "_count" in name else 1
            out.setdefault(gen, [0.0, 0.0])[slot] += float(value)
    return {g: (v[0], v[1]) for g, v in out.items()}


def gc_delta(before: dict, after: dict) -> str:
    parts = []
    for gen in sorted(after):
        n = after[gen][0] - before.get(gen, (0, 0))[0]
        s = after[gen][1] - before.get(gen, (0, 0))[1]
        parts.append(f"gen{gen}: {n:.0f} collections, {s * 1e3:.0f} ms total"
                     + (f", {s / n * 1e3:.1f} ms mean" if n else ""))
    return "; ".join(parts) or "none"


# --- main ---------------------------------------------------------------------------------------


def build_requests(dataset, n_history: int, n_candidates: int) -> tuple[bytes, bytes, dict]:
    from tests.serving.helpers import busy_activity_ids, item_with_history, rank_body

    aid = busy_activity_ids(dataset, 1, min_history=n_history)[0]
    item = item_with_history(dataset, aid, n_history)
    score = json.dumps({"items": [item], "explain": True}).encode()
    contacts = [item.get("contact", {}).get(c.CONTACT_ID)]
    contacts += sorted({r[c.CONTACT_ID] for r in item["history"][c.ACTIVITIES] if r.get(c.CONTACT_ID)} - set(contacts))
    types = ["call", "email", "meeting", "inmail", "demo"]
    candidates = []
    for k in range(n_candidates):
        cand = {"type": types[k % len(types)], "personalization": round(0.1 + 0.8 * (k % 3) / 2, 2)}
        if contacts[k % len(contacts)]:
            cand["contact_id"] = contacts[(k // len(types)) % len(contacts)]
        candidates.append(cand)
    rank = json.dumps(rank_body(item, candidates, top_k=5)).encode()
    rows = {k: len(v) for k, v in item["history"].items()}
    return score, rank, rows


def run_server_phase(bundle: Path, home: Path, args, env: dict[str, str], body: bytes, headers: dict[str, str],
                     label: str) -> dict:
    from tests.serving.helpers import Server

    server = Server(bundle, home, env=env)
    try:
        server.wait_ready()
        before = gc_stats(server.port, headers)
        load = concurrent(server.port, "/score", body, args.connections, args.duration, server.pids(), headers)
        load["gc"] = gc_delta(before, gc_stats(server.port, headers))
    finally:
        server.stop()
    growth = (load["mem_last_mb"] / load["mem_first_mb"] - 1) * 100
    print(f"[{label}] {args.connections} connections x {args.duration:.0f} s: {load['rps']:.0f} requests/s, "
          f"p50 {load['p50']:.1f} ms, p99 {load['p99']:.1f} ms, max {load['max']:.0f} ms, errors {load['errors']} "
          f"of {load['n']:,}")
    print(f"[{label}]   max latency per 5 s (ms): {fmt_list(load['windows_max'])}")
    cores = os.cpu_count() or 1
    print(f"[{label}]   CPU per request: server {load['server_cpu_ms']:.2f} ms, load generator "
          f"{load['client_cpu_ms']:.2f} ms (capacity of {cores} idle cores for both: "
          f"{cores * 1e3 / (load['server_cpu_ms'] + load['client_cpu_ms']):.0f} requests/s); other processes "
          f"kept {load['others_cores']:.2f} of the {cores} cores busy")
    print(f"[{label}]   server RSS first 10 s {load['mem_first_mb']:.0f} MB, last 10 s {load['mem_last_mb']:.0f} MB "
          f"({growth:+.1f}%); GC pauses: {load['gc']}")
    load["growth_pct"] = growth
    return load


def main() -> int | None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, help="Serve this bundle (default: train one on synthetic data).")
    parser.add_argument("--workers", type=int, default=2, help="Server worker processes.")
    parser.add_argument("--requests", type=int, default=2000, help="Sequential /score requests.")
    parser.add_argument("--rank-requests", type=int, default=1000, help="Sequential /rank requests.")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=60.0, help="Seconds of concurrent load.")
    parser.add_argument("--compare", action="store_true", help="Repeat the load phase without the runtime fixes.")
    parser.add_argument("--api-key", default="bench-key-0123456789abcdef", help="Run with this API key configured.")
    args = parser.parse_args()

    from tests.serving.helpers import Server, make_dataset, train_bundle

    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    dataset = make_dataset()
    bundle = args.bundle or train_bundle(dataset, work / "bundle")
    score_body, rank_body_bytes, rows = build_requests(dataset, 50, 20)
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    env = {"ACTIVITY_SCORER_WORKERS": str(args.workers), "ACTIVITY_SCORER_LOG_LEVEL": "WARNING"}
    if args.api_key:
        env["ACTIVITY_SCORER_API_KEYS"] = args.api_key
    print(f"request: 1 item, history {rows}, explain; {len(score_body):,} bytes. /rank: 20 candidates, "
          f"{len(rank_body_bytes):,} bytes. Server: {args.workers} worker(s), API key {'on' if args.api_key else 'off'}; "
          f"{os.cpu_count()} CPUs.")

    inproc = in_process(bundle, score_body, args.requests)
    server = Server(bundle, work / "home", env=env)
    try:
        server.wait_ready()
        seq = sequential(server.port, "/score", score_body, args.requests, headers)
        rank = sequential(server.port, "/rank", rank_body_bytes, args.rank_requests, headers)
    finally:
        server.stop()
    print(f"/score sequential x{seq['n']:,}: p50 {seq['p50']:.2f} ms, p99 {seq['p99']:.2f} ms, max {seq['max']:.1f} ms, "
          f"errors {seq['errors']}")
    print(f"  max latency per 2 s (ms): {fmt_list(seq['windows_max'])}")
    print(f"  in-process call (validate + features + predict + factors + JSON): p50 {inproc['in_process_p50']:.2f} ms; "
          f"bare booster predict: p50 {inproc['bare_predict_p50'] * 1e3:.0f} us")
    print(f"  overhead: HTTP/in-process x{seq['p50'] / inproc['in_process_p50']:.2f} "
          f"(+{seq['p50'] - inproc['in_process_p50']:.2f} ms); in-process/bare predict "
          f"x{inproc['in_process_p50'] / inproc['bare_predict_p50']:.0f}; HTTP/bare predict "
          f"x{seq['p50'] / inproc['bare_predict_p50']:.0f}")
    print(f"/rank sequential x{rank['n']:,} (20 candidates): p50 {rank['p50']:.2f} ms, p99 {rank['p99']:.2f} ms, "
          f"max {rank['max']:.1f} ms, errors {rank['errors']}")

    load = run_server_phase(bundle, work / "home", args, env, score_body, headers, "fixes on")
    if args.compare:
        run_server_phase(bundle, work / "home", args, env | {"ACTIVITY_SCORER_RUNTIME_FIXES": "0"}, score_body,
                         headers, "fixes off")

    checks = {
        "/score p50 <= 5 ms": seq["p50"] <= 5,
        "/score p99 <= 20 ms": seq["p99"] <= 20,
        "/rank p99 <= 30 ms": rank["p99"] <= 30,
        ">= 400 requests/s at 16 connections": load["rps"] >= 400,
        "p99 <= 100 ms at 16 connections": load["p99"] <= 100,
        "no errors": seq["errors"] == rank["errors"] == load["errors"] == 0,
        "memory growth <= 10%": load["growth_pct"] <= 10,
    }
    print("targets: " + "; ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in checks.items()))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
