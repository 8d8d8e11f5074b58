"""Benchmark: hot model swaps under load, through the real commands (issue 12).

Sets up a data home with a simulated history and four registered versions of ``activity-outcome``
(``simulate``, then ``train`` with four seeds; or reuses ``--home`` when it already has them), makes
version 1 the champion, then:

1. starts ``activity-scorer serve`` on a free 127.0.0.1 port: it serves the champion and follows the
   alias (``training.follow`` polls the registry, the service swaps: ``serving.reload``);
2. runs 16 connections of ``/score`` (one item with its history, ``explain``) for ``--duration``
   seconds (300 by default), recording for every answer its latency, status, ``model.version`` and
   ``p_outcome``;
3. at 1/4, 2/4 and 3/4 of the run promotes versions 2, 3 and 4 with ``activity-scorer promote
   --version V --force``.

Checks (exit 1 when one fails):

- zero failed requests (anything but a 200 with a version);
- every answer names a version, and each version gives exactly one ``p_outcome`` for the one request
  sent: an answer that named one version but was computed (even partly) by another would add a value;
- the versions follow the promotions: no answer from an older version once a newer one has answered
  (1 s of grace for requests already in flight);
- all four versions served, each promotion live within 30 s of its command;
- memory of the service's processes: the mean of the last 10 s within +10% of the first 10 s;
- p99 <= 100 ms over the whole run. The baseline in the same run is the quarter before the first
  promotion: each later quarter's p99 and the 10 s after each swap are printed beside it.

    .venv/bin/python benchmarks/bench_swap.py [--duration 300] [--home DIR] [--connections 16]

Run it alone on the machine (latency): not under ``nice``. The setup (four trainings) runs under
``nice`` and takes a few minutes; ``--home`` reuses a prepared home.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PRIVACY_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "BENTOML_DO_NOT_TRACK": "True"}
CLI = str(Path(sys.executable).parent / "activity-scorer")
MODEL = "activity-outcome"
N_VERSIONS = 4
P99_TARGET_MS = 100.0
MEMORY_GROWTH_MAX = 0.10
SWAP_WITHIN_S = 30.0


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACTIVITY_SCORER_") and k != "MLFLOW_TRACKING_URI"}
    return env | PRIVACY_ENV | {"ACTIVITY_SCORER_HOME": str(home), "ACTIVITY_SCORER_PREDICTION_LOG": "off"}


def _cli(args: list[str], home: Path, nice: bool = True) -> str:
    cmd = (["nice", "-n", "19"] if nice else []) + [CLI, *args]
    done = subprocess.run(cmd, env=_env(home), capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args[:2])} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def registered_versions(home: Path) -> list[str]:
    code = ("from training.env import configure_stores; configure_stores(); from training import tracking; "
            f"print(' '.join(sorted((str(v.version) for v in tracking._client().search_model_versions(\"name='{MODEL}'\")),"
            " key=int)))")
    done = subprocess.run([sys.executable, "-c", code], env=_env(home), capture_output=True, text=True, timeout=300,
                          check=False, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"cannot list the registered versions:\n{done.stderr[-2000:]}")
    return done.stdout.split()


def prepare(home: Path, activities: int) -> list[str]:
    """A simulated history and four registered versions (four seeds); returns their numbers."""
    versions = registered_versions(home)
    data = home / "bench-data"
    if not (data / "activities.parquet").exists() and not (data / "activities.csv").exists():
        print(f"simulating {activities:,} activities into {data}", flush=True)
        _cli(["simulate", "--out", str(data), "--activities", str(activities), "--seed", "0"], home)
    seed = 1
    while len(versions) < N_VERSIONS:
        print(f"training version {len(versions) + 1} (seed {seed})", flush=True)
        _cli(["train", "--data", str(data), "--seed", str(seed)], home)
        versions = registered_versions(home)
        seed += 1
    return versions[-N_VERSIONS:]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit("the service did not become ready")


def service_pids(parent_pid: int) -> list[int]:
    """The ``bentoml serve`` processes (arbiter and workers) under the ``serve`` command's process."""
    import psutil

    try:
        children = psutil.Process(parent_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [p.pid for p in children]


class MemorySampler(threading.Thread):
    """RSS of the service's processes, once a second (processes that appear later are picked up)."""

    def __init__(self, parent_pid: int):
        super().__init__(daemon=True)
        self.parent_pid = parent_pid
        self.samples: list[tuple[float, float, float]] = []  # (t, service MB, follower MB)
        self.stop_event = threading.Event()

    def run(self) -> None:
        import psutil

        while not self.stop_event.is_set():
            total = 0
            for pid in service_pids(self.parent_pid):
                try:
                    total += psutil.Process(pid).memory_info().rss
                except psutil.Error:
                    continue
            try:
                own = psutil.Process(self.parent_pid).memory_info().rss
            except psutil.Error:
                own = 0
            self.samples.append((time.perf_counter(), total / 2**20, own / 2**20))
            self.stop_event.wait(1.0)


async def load(port: int, body: bytes, connections: int, duration: float, t0: float) -> list[tuple]:
    """``(start, end, latency s, ok, version, p_outcome)`` for every request of the run."""
    import aiohttp

    results: list[tuple] = []
    deadline = t0 + duration
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=30)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            while (start := time.perf_counter()) < deadline:
                version = p = None
                ok = False
                try:
                    async with session.post("/score", data=body, headers=headers) as r:
                        raw = await r.read()
                        if r.status == 200:
                            data = json.loads(raw)
                            version, p = data["model"]["version"], data["results"][0]["p_outcome"]
                            ok = version is not None
                except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, KeyError):
                    ok = False
                end = time.perf_counter()
                results.append((start, end, end - start, ok, version, p))

        await asyncio.gather(*(worker() for _ in range(connections)))
    return results


def request_body(home: Path) -> bytes:
    """One activity of the simulated history with its 50 latest history activities, explained."""
    from features.dataset import load_dataset
    from tests.serving.helpers import busy_activity_ids, item_with_history

    dataset = load_dataset(home / "bench-data")
    item = item_with_history(dataset, busy_activity_ids(dataset, 1, min_history=50)[0], 50)
    return json.dumps({"items": [item], "explain": True}, default=str).encode()


def pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of load (default 300)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--home", type=Path, default=None, help="data home to prepare or reuse (default: a temp dir)")
    parser.add_argument("--activities", type=int, default=20000, help="simulated activities for the trainings")
    args = parser.parse_args()
    for key, value in PRIVACY_ENV.items():
        os.environ.setdefault(key, value)
    home = (args.home or Path(tempfile.mkdtemp(prefix="bench-swap-"))).resolve()
    home.mkdir(parents=True, exist_ok=True)
    versions = prepare(home, args.activities)
    print(f"versions {', '.join(versions)} in {home}", flush=True)
    _cli(["promote", "--version", versions[0], "--force", "--reason", "bench_swap: start"], home)
    body = request_body(home)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve = subprocess.Popen([CLI, "serve", "--port", str(port), "--follow-interval", "2"], env=_env(home),
                             stdout=open(home / "serve.log", "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
                             start_new_session=True)
    promotions: list[tuple[str, float, float]] = []  # (version, command start, command end)
    try:
        wait_ready(url, serve)
        asyncio.run(load(port, body, args.connections, 3.0, time.perf_counter()))  # warm-up
        sampler = MemorySampler(serve.pid)
        sampler.start()
        t0 = time.perf_counter()

        def promote_later() -> None:
            for k, version in enumerate(versions[1:], start=1):
                at = t0 + args.duration * k / N_VERSIONS
                time.sleep(max(0.0, at - time.perf_counter()))
                started = time.perf_counter()
                # the operator's command, niced like every other process of this run that is not the service
                _cli(["promote", "--version", version, "--force", "--reason", f"bench_swap: swap {k}"], home)
                promotions.append((version, started, time.perf_counter()))

        promoter = threading.Thread(target=promote_later, daemon=True)
        promoter.start()
        results = asyncio.run(load(port, body, args.connections, args.duration, t0))
        promoter.join(timeout=120)
        sampler.stop_event.set()
        sampler.join()
    finally:
        try:
            os.killpg(serve.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        serve.wait(timeout=60)

    starts = np.array([r[0] for r in results])
    ends = np.array([r[1] for r in results])
    ms = np.array([r[2] for r in results]) * 1e3
    failed = sum(1 for r in results if not r[3])
    served = [r for r in results if r[3]]
    by_version: dict[str, set[float]] = {}
    for r in served:
        by_version.setdefault(r[4], set()).add(r[5])
    first_seen = {v: min(r[1] for r in served if r[4] == v) for v in by_version}
    order = {v: k for k, v in enumerate(versions)}
    backwards = 0
    for v, seen in first_seen.items():
        backwards += sum(1 for r in served if order.get(r[4], 99) < order.get(v, -1) and r[0] > seen + 1.0)
    swap_delays = []
    for version, started, ended in promotions:
        seen = first_seen.get(version)
        swap_delays.append((version, ended - started, None if seen is None else seen - ended))
    mem = np.array(sampler.samples)
    span = float(ends.max() - t0)
    first_mem = mem[mem[:, 0] - t0 <= 10, 1].mean()
    last_mem = mem[mem[:, 0] - t0 >= span - 10, 1].mean()
    growth = last_mem / first_mem - 1.0

    print(f"\n{len(results):,} requests in {span:.0f} s ({len(results) / span:.0f} req/s), {args.connections} connections;"
          f" failed {failed}")
    print(f"latency ms: p50 {pct(ms, 50):.1f}, p99 {pct(ms, 99):.1f}, max {ms.max():.1f}")
    quarter = args.duration / N_VERSIONS
    for k in range(N_VERSIONS):
        sel = (starts - t0 >= k * quarter) & (starts - t0 < (k + 1) * quarter)
        label = "baseline (before any promotion)" if k == 0 else f"after promotion {k}"
        print(f"  quarter {k + 1}, {label}: n {sel.sum():,}, p50 {pct(ms[sel], 50):.1f}, p99 {pct(ms[sel], 99):.1f},"
              f" max {ms[sel].max() if sel.any() else float('nan'):.1f}")
    for version, cmd_s, delay in swap_delays:
        seen = first_seen.get(version)
        window = (ends >= seen) & (ends < seen + 10) if seen is not None else np.zeros(len(ends), bool)
        print(f"  promote v{version}: command {cmd_s:.1f} s, first answer by v{version} "
              f"{'never' if delay is None else f'{delay:.1f} s after it'}; the 10 s after: p99 "
              f"{pct(ms[window], 99):.1f} ms, max {ms[window].max() if window.any() else float('nan'):.1f} ms")
    print("answers per version: " + ", ".join(f"v{v} {sum(1 for r in served if r[4] == v):,} "
                                              f"({len(ps)} distinct p_outcome)" for v, ps in sorted(by_version.items())))
    print(f"answers from an older version after a newer one answered (1 s grace): {backwards}")
    print(f"service memory (arbiter + workers): first 10 s {first_mem:.0f} MB, last 10 s {last_mem:.0f} MB "
          f"({growth:+.1%}); the follower (serve command) {mem[:, 2].mean():.0f} MB")

    checks = {
        "zero failed requests": failed == 0,
        "every answer names its version": all(r[4] is not None for r in served) and len(served) == len(results),
        "one p_outcome per version (no mixed answer)": all(len(ps) == 1 for ps in by_version.values())
        and len({next(iter(ps)) for ps in by_version.values()}) == len(by_version),
        "all versions served, in promotion order": set(by_version) == set(versions) and backwards == 0,
        f"each swap live within {SWAP_WITHIN_S:.0f} s": len(swap_delays) == N_VERSIONS - 1
        and all(d is not None and d <= SWAP_WITHIN_S for _, _, d in swap_delays),
        f"memory growth <= {MEMORY_GROWTH_MAX:.0%}": growth <= MEMORY_GROWTH_MAX,
        f"p99 <= {P99_TARGET_MS:.0f} ms": pct(ms, 99) <= P99_TARGET_MS,
    }
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
