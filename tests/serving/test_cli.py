"""The `serve` command and the demo's serving step, as a user runs them (real subprocesses)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest

from tests.serving.helpers import PRIVACY_ENV, ROOT, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def cli_env(home) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACTIVITY_SCORER_", "MLFLOW_TRACKING_URI",
                                                                        "BENTOML_HOME"))}
    return env | PRIVACY_ENV | {"ACTIVITY_SCORER_HOME": str(home)}


def wait_ready(url: str, proc: subprocess.Popen | None = None, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} not ready")


def test_serve_command_serves_a_bundle_and_binds_loopback(bundle_dir, tmp_path):
    port = free_port()
    cmd = [sys.executable, "-m", "training.cli", "serve", "--model", str(bundle_dir), "--port", str(port)]
    proc = subprocess.Popen(cmd, env=cli_env(tmp_path), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc)
        conns = [c for p in [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
                 for c in p.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN and c.laddr.port == port]
        assert conns and all(c.laddr.ip == "127.0.0.1" for c in conns)
        body = json.dumps({"items": [{"activity": {"type": "call"}}]}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/score", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            assert 0 <= json.loads(r.read())["results"][0]["p_outcome"] <= 1
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    assert f"on http://127.0.0.1:{port}" in proc.stdout.read().decode()


def test_serve_command_errors_are_one_line(tmp_path):
    cmd = [sys.executable, "-m", "training.cli", "serve", "--port", str(free_port())]
    done = subprocess.run(cmd, env=cli_env(tmp_path), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "serve: registered model 'activity-outcome' has no alias 'champion'" in done.stderr
    assert "Traceback" not in done.stderr
    done = subprocess.run([*cmd, "--model", str(tmp_path / "nope")], env=cli_env(tmp_path), cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "no such bundle directory" in done.stderr


def test_demo_ends_with_a_running_service_and_how_to_stop_it(tmp_path):
    port = free_port()
    cmd = [sys.executable, "-m", "training.cli", "demo", "--activities", "20000", "--port", str(port), "--serve"]
    done = subprocess.run(cmd, env=cli_env(tmp_path), cwd=ROOT, capture_output=True, text=True, timeout=900)
    pid_file = tmp_path / "serve.pid"
    try:
        assert done.returncode == 0, done.stdout + done.stderr
        out = done.stdout
        assert f"curl -s http://127.0.0.1:{port}/score" in out and f"curl -s http://127.0.0.1:{port}/rank" in out
        assert re.search(r"p_outcome 0\.\d{3}, p_output 0\.\d{3}, p_negative 0\.\d{3}", out)
        assert re.search(r"^  1\. \w+ .*p_outcome 0\.\d{3}$", out, re.MULTILINE)
        assert "(best first, ordered by effect)" in out  # the bundle carries the effect model
        assert re.search(r"^  1\. \w+ .*effect [+-]0\.\d{3} \[[+-]0\.\d{3}, [+-]0\.\d{3}\], p_outcome", out, re.MULTILINE)
        pid = int(pid_file.read_text())
        assert f"stop it with: kill {pid}" in out
        wait_ready(f"http://127.0.0.1:{port}")
        req = urllib.request.Request(f"http://127.0.0.1:{port}/score", data=(tmp_path / "demo-score.json").read_bytes(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.status == 200
    finally:
        if pid_file.exists():
            proc = psutil.Process(int(pid_file.read_text()))
            proc.terminate()
            proc.wait(timeout=30)
