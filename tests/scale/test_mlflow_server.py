"""MLflow as deployed: train, promote, serve and score against a tracking server on PostgreSQL.

The server is the documented one (``scripts/mlflow-server.sh``): PostgreSQL backend store (a
throwaway server from Debian's binaries, as ``tests/store`` starts it), artifacts in a local
directory the server serves. The commands reach it only through ``MLFLOW_TRACKING_URI``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from tests.serving.helpers import PRIVACY_ENV, free_port
from tests.store.pg import PostgresServer, pg_bin

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.xdist_group("mlflow-server")]
ROOT = Path(__file__).resolve().parents[2]
N_ACTIVITIES = 8_000


def _wait(url: str, proc: subprocess.Popen, log: Path, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready after {timeout_s:.0f}s: {log.read_text(errors='replace')[-2000:]}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    """PostgreSQL, a database for MLflow, and ``scripts/mlflow-server.sh`` on a free loopback port."""
    if pg_bin() is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL binaries are missing under CI: make test runs scripts/system-deps.sh")
        pytest.skip("PostgreSQL binaries not found (/usr/lib/postgresql/*/bin): run scripts/system-deps.sh as root")
    import psycopg

    root = tmp_path_factory.mktemp("mlflow-server")
    pg = PostgresServer().start()
    procs: list[subprocess.Popen] = []
    try:
        with psycopg.connect(pg.url, autocommit=True) as conn:
            conn.execute('CREATE DATABASE "mlflow"')
        port = free_port()
        env = dict(os.environ, **PRIVACY_ENV,
                   MLFLOW_BACKEND_STORE_URI=f"postgresql+psycopg://activity@127.0.0.1:{pg.port}/mlflow")
        log = root / "mlflow-server.log"
        with open(log, "wb") as out:
            procs.append(subprocess.Popen([str(ROOT / "scripts" / "mlflow-server.sh"), str(root / "artifacts"), str(port)],
                                          env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
        _wait(f"http://127.0.0.1:{port}/health", procs[0], log)
        yield {"uri": f"http://127.0.0.1:{port}", "artifacts": root / "artifacts", "root": root, "pg": pg,
               "procs": procs}
    finally:
        for p in procs:
            _stop(p)
        pg.stop()


@pytest.fixture(scope="module")
def small_sim(tmp_path_factory) -> Path:
    from simulator.generate import simulate, write_simulation
    from simulator.params import SimulationConfig

    out = tmp_path_factory.mktemp("mlflow-sim") / "data"
    write_simulation(simulate(SimulationConfig(n_activities=N_ACTIVITIES, seed=2)), out)
    return out


def test_train_promote_serve_score_against_the_server(tracking, small_sim, tmp_path):
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACTIVITY_SCORER_", "MLFLOW_", "BENTOML_"))}
    env |= PRIVACY_ENV | {"MLFLOW_TRACKING_URI": tracking["uri"], "ACTIVITY_SCORER_HOME": str(home),
                          "OMP_WAIT_POLICY": "PASSIVE"}

    def cli(*args: str) -> subprocess.CompletedProcess:
        res = subprocess.run([sys.executable, "-m", "training.cli", *args], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=600)
        assert res.returncode == 0, f"{args[0]}: {res.stderr[-2000:]}"
        return res

    doc = json.loads(cli("train", "--data", str(small_sim), "--json").stdout)
    assert doc["version"] == "1" and doc["alias"] == "challenger"
    # 8k activities are too few for the ECE gate; the gate is not what this test is about
    decision = json.loads(cli("promote", "--json", "--force", "--reason", "tracking-server test").stdout)
    assert decision["promoted"] and str(decision["candidate_version"]) == "1"
    # everything went to the server: runs and registry in PostgreSQL, artifacts in its directory, nothing local
    import psycopg

    with psycopg.connect(tracking["pg"].url.rsplit("/", 1)[0] + "/mlflow") as conn:
        aliases = conn.execute("SELECT alias, version FROM registered_model_aliases").fetchall()
        runs = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
    assert ("champion", 1) in aliases and runs >= 1
    assert any(p.name == "manifest.json" for p in Path(tracking["artifacts"]).rglob("manifest.json"))
    assert not (home / "mlflow.db").exists()

    # serve the champion from the server's registry
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        serve = subprocess.Popen([sys.executable, "-m", "training.cli", "serve", "--port", str(port), "--no-follow"],
                                 cwd=ROOT, env=env | {"OMP_NUM_THREADS": "1"}, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    try:
        _wait(f"http://127.0.0.1:{port}/readyz", serve, log)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/model", timeout=10) as r:
            model = json.loads(r.read())
        assert str(model["version"]) == "1" and model["name"] == "activity-outcome"
        from features.build import request_items
        from features.dataset import load_dataset

        dataset = load_dataset(small_sim)
        aid = dataset["activities"]["activity_id"].iloc[-1]
        body = json.dumps({"items": request_items(dataset, [aid]), "explain": False}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/score", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            result = json.loads(r.read())["results"][0]
        assert result["activity_id"] == aid and 0 < result["p_outcome"] < 1
    finally:
        _stop(serve)

    out = tmp_path / "scores.csv"
    res = cli("score", "--data", str(small_sim), "--out", str(out), "--since", "2025-11-01")
    assert "activity-outcome v1" in res.stdout
    scores = pd.read_csv(out)
    assert len(scores) > 100 and scores["p_outcome"].between(0, 1).all()
