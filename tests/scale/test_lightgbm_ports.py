"""The ports of LightGBM's Dask training on the engine's local cluster.

What the engine controls is on loopback: the Dask scheduler, nannies, workers and dashboard
(``test_dask_engine.py``), and the machine list LightGBM's workers link over (here). What it
cannot control is LightGBM's own listener: its C++ ``TcpSocket::Bind`` takes only a port and
binds 0.0.0.0, whatever ``machines`` says; it listens while the workers link up at the start
of each fit. The canary below pins that limit (docs/scale.md) to the installed LightGBM.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("dask-cluster")]


def _recording_submit(client, seen: list[str]):
    """``client.submit`` that records the ``machines`` string ``lightgbm.dask`` sends to each worker."""
    original = client.submit

    def submit(fn, *args, **kwargs):
        if getattr(fn, "__name__", "") == "_train_part":
            seen.append(kwargs["machines"])
        return original(fn, *args, **kwargs)

    return submit


def test_a_dask_fit_links_its_workers_over_loopback_and_succeeds(dask_client, monkeypatch):
    from engine.train import DaskBoosterTrainer

    seen: list[str] = []
    monkeypatch.setattr(dask_client, "submit", _recording_submit(dask_client, seen))
    rng = np.random.default_rng(3)
    X = rng.normal(size=(4_000, 4))
    y = (X[:, 0] - X[:, 1] + rng.normal(scale=0.5, size=len(X)) > 0).astype(float)
    booster, best = DaskBoosterTrainer(dask_client).fit(
        {"objective": "binary", "verbose": -1, "seed": 1, "deterministic": True}, X, y,
        [f"f{i}" for i in range(4)], [], rounds=30)

    assert best == 30 and booster.num_trees() == 30
    p = booster.predict(X)
    assert ((p > 0.5) == (y > 0.5)).mean() > 0.85  # a real model, trained on both workers' rows
    workers = list(dask_client.scheduler_info()["workers"])
    assert len(seen) == len(workers) == 2, seen  # one _train_part per worker holding rows
    machines = seen[0].split(",")
    assert all(m == seen[0] for m in seen)  # every worker was given the same list
    assert len(machines) == 2 and len(set(machines)) == 2
    assert all(m.startswith("127.0.0.1:") and int(m.split(":")[1]) > 0 for m in machines), machines


_RANK_ONE = """
import sys
import lightgbm as lgb
import numpy as np
p0, p1 = int(sys.argv[1]), int(sys.argv[2])
X = np.random.default_rng(0).random((200, 2))
lgb.train({"objective": "binary", "machines": f"127.0.0.1:{p0},127.0.0.1:{p1}", "local_listen_port": p1,
           "num_machines": 2, "tree_learner": "data", "verbose": -1, "num_threads": 1},
          lgb.Dataset(X, (X[:, 0] > 0.5).astype(float)), 1)
"""


def _free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_canary_lightgbm_listens_on_every_interface_even_with_a_loopback_machine_list(tmp_path):
    """The documented limit. If this fails, LightGBM binds loopback now: update docs/scale.md."""
    import psutil

    script = tmp_path / "rank_one.py"
    script.write_text(_RANK_ONE)
    p0, p1 = _free_loopback_port(), _free_loopback_port()
    # rank 1 of 2 alone: it binds its port and waits for rank 0 to connect (which never comes)
    proc = subprocess.Popen([sys.executable, str(script), str(p0), str(p1)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            cwd=Path(__file__).resolve().parents[2])
    try:
        listening: list = []
        deadline = time.monotonic() + 60
        while not listening and proc.poll() is None and time.monotonic() < deadline:
            listening = [cn.laddr for cn in psutil.Process(proc.pid).net_connections(kind="tcp")
                         if cn.status == psutil.CONN_LISTEN]
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert [(a.ip, a.port) for a in listening] == [("0.0.0.0", p1)], listening
