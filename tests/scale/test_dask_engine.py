"""The Dask engine equals the local one: the same table (exactly), models within 0.003 AUC, the same scores.

20k simulated activities here (CI); ``benchmarks/bench_dask.py`` checks the same at 200k.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.build import build_training_frame
from training.cli import app

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("dask-cluster")]
runner = CliRunner()
AUC_TOLERANCE = 0.003


def _by_id(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("activity_id", ignore_index=True)


@pytest.mark.parametrize("until, partitions", [(None, 3), ("2025-08-01", 5)])
def test_dask_table_equals_the_local_table(dataset, dask_client, until, partitions):
    from engine.features import build_distributed_table, gather_table

    local = build_training_frame(dataset, until=until)
    dist = build_distributed_table(dask_client, dataset, until=until, n_partitions=partitions)
    assert len(dist.parts) == partitions  # the split really crossed accounts and reps
    table = gather_table(dask_client, dist)
    pd.testing.assert_frame_equal(_by_id(table.frame), _by_id(local.frame), check_exact=True)
    # gathered rows come back in the local engine's order too
    pd.testing.assert_frame_equal(table.frame, local.frame, check_exact=True)
    assert table.data_end == local.data_end and dist.stats == local.stats
    # the rep features really depend on other partitions: a rep's activities are spread over them
    assert local.frame["rep_labelled_activities"].max() > 0


def test_features_command_writes_the_same_file(simulated, tmp_path):
    for engine in ("local", "dask"):
        result = runner.invoke(app, ["features", "--data", str(simulated), "--out", str(tmp_path / f"{engine}.parquet"),
                                     "--engine", engine])
        assert result.exit_code == 0, result.output
    local, dask = (pd.read_parquet(tmp_path / f"{e}.parquet") for e in ("local", "dask"))
    pd.testing.assert_frame_equal(_by_id(dask), _by_id(local), check_exact=True)


def test_train_on_dask_is_as_good_and_scores_equal(simulated, tmp_path):
    docs = {}
    for engine in ("local", "dask"):
        result = runner.invoke(app, ["train", "--data", str(simulated), "--model-name", f"scale-{engine}", "--json",
                                     "--engine", engine])
        assert result.exit_code == 0, result.output
        docs[engine] = json.loads(result.stdout)
    assert docs["dask"]["window"] == docs["local"]["window"]  # the same test window
    auc = {e: {(m["label"], m["variant"]): m["auc"] for m in d["metrics"]} for e, d in docs.items()}
    for key in (("outcome", "plan"), ("outcome", "full")):
        assert abs(auc["dask"][key] - auc["local"][key]) <= AUC_TOLERANCE, (key, auc)
    # scoring on Dask with one model gives the local scores
    model = f"models:/scale-local/{docs['local']['version']}"
    for engine in ("local", "dask"):
        result = runner.invoke(app, ["score", "--data", str(simulated), "--out", str(tmp_path / f"s-{engine}.parquet"),
                                     "--since", "2025-10-01", "--model", model, "--engine", engine])
        assert result.exit_code == 0, result.output
    local, dask = (_by_id(pd.read_parquet(tmp_path / f"s-{e}.parquet")) for e in ("local", "dask"))
    assert len(local) > 1000
    pd.testing.assert_frame_equal(dask, local, check_exact=True)


def test_an_unreachable_scheduler_is_one_line(simulated, tmp_path):
    result = runner.invoke(app, ["features", "--data", str(simulated), "--out", str(tmp_path / "x.parquet"),
                                 "--engine", "dask", "--scheduler", "tcp://127.0.0.1:9"])
    assert result.exit_code == 1
    assert "--scheduler tcp://127.0.0.1:9: cannot reach the Dask scheduler" in result.output
    assert "Traceback" not in result.output


def test_the_local_cluster_listens_on_loopback_only(dask_client):
    import os

    import psutil

    me = psutil.Process(os.getpid())
    listening = [cn.laddr for p in [me, *me.children(recursive=True)] for cn in p.net_connections(kind="inet")
                 if cn.status == psutil.CONN_LISTEN]
    workers = dask_client.scheduler_info()["workers"]
    assert len(workers) == 2 and all(addr.startswith("tcp://127.0.0.1:") for addr in workers)
    assert listening and all(addr.ip == "127.0.0.1" for addr in listening), listening


def test_a_worker_killed_by_a_task_is_one_clear_error(scale_home):
    from engine.cluster import ClusterError, ClusterSettings, open_client

    def die():
        import os

        os._exit(1)

    with pytest.raises(ClusterError, match="killed a local worker .*ACTIVITY_SCORER_DASK_MEMORY"):
        with open_client(ClusterSettings(workers=1, memory_limit="1GiB"), scale_home) as client:
            client.submit(die, pure=False).result()


def test_a_worker_lost_with_data_sent_to_it_is_one_clear_error(scale_home):
    """Seen at 10M: a worker over its memory limit took scattered partition events with it (a cancelled future)."""
    from engine.cluster import ClusterError, ClusterSettings, open_client

    def die(rows):
        import os

        os._exit(1)

    with pytest.raises(ClusterError, match="worker was lost .*memory limit.*cannot be recomputed"):
        with open_client(ClusterSettings(workers=1, memory_limit="1GiB"), scale_home) as client:
            [rows] = client.scatter([list(range(1000))])
            client.submit(die, rows, pure=False).result()


def test_local_workers_use_the_system_allocator_for_arrow(dask_client):
    """Arrow's mimalloc pool keeps freed pages that Dask cannot spill (unmanaged memory); workers get the system pool."""
    import pyarrow as pa

    pools = dask_client.run(lambda: pa.default_memory_pool().backend_name)
    assert set(pools.values()) == {"system"}, pools


def test_a_failed_close_is_retried_and_never_hides_the_real_error(caplog):
    """distributed's close can fail while a nanny restarts a killed worker (seen in CI); a second close works."""
    from engine.cluster import _close_local

    class Cluster:
        calls = 0

        def close(self, timeout=None):
            Cluster.calls += 1
            if Cluster.calls == 1:
                raise AssertionError("can only join a started process")

    _close_local(Cluster())
    assert Cluster.calls == 2 and "can only join a started process" in caplog.text


def test_a_close_that_hangs_twice_kills_the_workers_instead_of_hanging(caplog, monkeypatch):
    """Seen in a test run: after a task killed its worker, close() waited forever on the nanny."""
    import subprocess
    import sys

    import engine.cluster as ec

    monkeypatch.setattr(ec, "CLOSE_TIMEOUT_S", 0.01)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        class Nanny:
            pid = child.pid

        class Cluster:
            workers = {"w0": Nanny()}
            timeouts = []

            def close(self, timeout=None):
                Cluster.timeouts.append(timeout)
                raise TimeoutError

        ec._close_local(Cluster())
        assert Cluster.timeouts == [0.01, 0.01]
        assert child.wait(timeout=10) != 0
        assert f"killed its worker processes [{child.pid}]" in caplog.text
    finally:
        child.kill()
