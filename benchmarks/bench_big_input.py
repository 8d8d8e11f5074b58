"""Benchmark: a 2 GB input to ``import-flat`` and ``validate``: peak memory, time, outcome (issue 12).

Generates, in a temporary directory deleted afterwards, a flat CSV export of ``--gb`` gigabytes (one
row per call: id, start time, result, rep, contact, duration, a free-text note) and a dataset whose
``activities.csv`` is as large, plus the same at a tenth of the size as the baseline of the same run.
Runs each command as the CLI does (under ``nice``) while sampling the resident memory of its
processes every 0.2 s. The commands get ``ACTIVITY_SCORER_MEMORY_GB=--limit-gb`` as their memory budget
(``features.memory_budget``: an input estimated not to fit is refused before it is read); a run whose
memory passes the limit anyway is stopped there (the machine is shared) and counted as unbounded.

Pass (exit 0): every command either succeeds within the memory limit or stops with a clear one-line
error and no traceback; never killed at the limit, never a crash (a signal, a traceback).

    .venv/bin/python benchmarks/bench_big_input.py [--gb 2] [--limit-gb 10] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).parent / "activity-scorer")
PRIVACY_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "BENTOML_DO_NOT_TRACK": "True"}
CHUNK = 200_000
TYPES = ("call", "email", "meeting")


def write_flat(path: Path, size_bytes: int, dataset: bool) -> int:
    """Rows until ``size_bytes``; a flat export (``dataset=False``) or a contract ``activities.csv``; returns rows."""
    header = ("activity_id,occurred_at,type,deal_id,contact_id,rep_id,duration_s,note\n" if dataset
              else "call_id,started_at,result,rep,contact,talk_seconds,note\n")
    n = 0
    written = 0
    base = 1_700_000_000
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(header)
        while written < size_bytes:
            lines = []
            for k in range(n, n + CHUNK):
                t = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(base + k * 7))
                note = f"follow-up {k % 977} about pricing and rollout plan; next step agreed {k % 31}"
                if dataset:
                    lines.append(f"a{k},{t},{TYPES[k % 3]},d{k % 250_000},c{k % 400_000},r{k % 300},{k % 1800},{note}\n")
                else:
                    lines.append(f"c{k},{t},{'yes' if k % 11 == 0 else 'no'},r{k % 300},p{k % 400_000},{k % 1800},{note}\n")
            text = "".join(lines)
            f.write(text)
            written += len(text)
            n += CHUNK
    return n


def run_measured(cmd: list[str], env: dict[str, str], limit_bytes: int) -> dict:
    """Run ``cmd`` (niced); peak RSS of its process tree, seconds, exit code, output tail; stopped at the limit."""
    import psutil

    started = time.perf_counter()
    proc = subprocess.Popen(["nice", "-n", "19", *cmd], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    out_chunks: list[bytes] = []
    import threading

    reader = threading.Thread(target=lambda: out_chunks.append(proc.stdout.read()), daemon=True)
    reader.start()
    peak = 0
    killed = False
    parent = psutil.Process(proc.pid)
    while proc.poll() is None:
        rss = 0
        try:
            for p in [parent, *parent.children(recursive=True)]:
                try:
                    rss += p.memory_info().rss
                except psutil.Error:
                    continue
        except psutil.Error:
            pass
        peak = max(peak, rss)
        if rss > limit_bytes:
            os.killpg(proc.pid, 9)
            killed = True
            proc.wait()
            break
        time.sleep(0.2)
    reader.join(timeout=30)
    output = b"".join(out_chunks).decode("utf-8", "replace")
    return {"code": proc.returncode, "seconds": time.perf_counter() - started, "peak_gb": peak / 2**30,
            "killed": killed, "output": output}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gb", type=float, default=2.0, help="size of the large files (GB, 2^30 bytes)")
    parser.add_argument("--limit-gb", type=float, default=10.0, help="stop a command whose memory passes this")
    parser.add_argument("--keep", type=Path, default=None, help="work in this directory and keep it")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-big-input-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACTIVITY_SCORER_")} | PRIVACY_ENV | {
        "ACTIVITY_SCORER_HOME": str(work / "home"), "ACTIVITY_SCORER_MEMORY_GB": f"{args.limit_gb:g}"}
    limit = int(args.limit_gb * 2**30)
    results = []
    try:
        for label, size in (("baseline (a tenth)", args.gb / 10), ("large", args.gb)):
            nbytes = int(size * 2**30)
            flat = work / f"flat-{size:g}.csv"
            data = work / f"data-{size:g}"
            data.mkdir(exist_ok=True)
            t = time.perf_counter()
            rows_flat = write_flat(flat, nbytes, dataset=False)
            rows_data = write_flat(data / "activities.csv", nbytes, dataset=True)
            (data / "deal_stages.csv").write_text("deal_id,stage,stage_order,entered_at\nd1,s,1,2023-11-14T22:13:20Z\n")
            print(f"{label}: generated {flat.stat().st_size / 2**30:.2f} GB flat ({rows_flat:,} rows) and "
                  f"{(data / 'activities.csv').stat().st_size / 2**30:.2f} GB activities.csv ({rows_data:,} rows) "
                  f"in {time.perf_counter() - t:.0f} s", flush=True)
            commands = {
                "import-flat": [CLI, "import-flat", str(flat), "--out", str(work / f"out-{size:g}"), "--id-column",
                                "call_id", "--time-column", "started_at", "--type", "call", "--rep-column", "rep",
                                "--contact-column", "contact", "--outcome-column", "result", "--positive", "yes"],
                "validate": [CLI, "validate", "--data", str(data)],
            }
            for name, cmd in commands.items():
                r = run_measured(cmd, env, limit)
                tail = [line for line in r["output"].strip().splitlines() if line.strip()][-2:]
                r |= {"label": label, "name": name, "size_gb": size, "traceback": "Traceback" in r["output"],
                      "tail": tail}
                results.append(r)
                outcome = "stopped at the memory limit" if r["killed"] else f"exit {r['code']}"
                print(f"  {name}: {outcome} in {r['seconds']:.0f} s, peak memory {r['peak_gb']:.2f} GB "
                      f"({r['peak_gb'] / size:.1f}x the file); last line: {tail[-1][:200] if tail else '(none)'}",
                      flush=True)
            for p in (flat, data, work / f"out-{size:g}"):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    ok = True
    for r in results:
        clear_error = r["code"] not in (0, None) and not r["traceback"] and r["code"] > 0
        passed = not r["killed"] and not r["traceback"] and (r["code"] == 0 or clear_error)
        ok &= passed
        print(f"{'PASS' if passed else 'FAIL'}  {r['name']} {r['size_gb']:g} GB: "
              f"{'bounded-memory pass' if r['code'] == 0 and not r['killed'] else 'clear error' if clear_error else 'unbounded or crash'}"
              f" (peak {r['peak_gb']:.2f} GB, limit {args.limit_gb:g} GB)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
