"""Parity, the key proof: 1,000 activities scored by id == scored with the same history in the request ==
``activity-scorer score`` (batch), to 1e-9, with the history in SQLite and in PostgreSQL."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features import contract as c
from features.build import request_items
from tests.store.conftest import N_LATE, fresh_pg_url, service_client

pytestmark = [pytest.mark.slow, pytest.mark.integration]
COLS = ["p_outcome", "p_output", "p_negative"]
TOL = 1e-9


@pytest.fixture(scope="module")
def batch(history, tmp_path_factory, monkeypatch_module) -> pd.DataFrame:
    """``activity-scorer score --since <late instant> --model <bundle>``: the batch path."""
    from training.cli import app

    out = tmp_path_factory.mktemp("batch") / "scores.parquet"
    monkeypatch_module.setenv("ACTIVITY_SCORER_HOME", str(out.parent / "home"))
    monkeypatch_module.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = CliRunner().invoke(app, ["score", "--data", str(history["data"]), "--out", str(out), "--model",
                                      str(history["bundle"]), "--since", history["at"].isoformat()])
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out).set_index(c.ACTIVITY_ID)
    assert len(frame) == N_LATE
    return frame.loc[history["ids"]]


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def _score(client, items: list[dict]) -> pd.DataFrame:
    results = []
    for k in range(0, len(items), 100):
        r = client.post("/score", content=json.dumps({"items": items[k:k + 100]}, default=str),
                        headers={"Content-Type": "application/json"})
        assert r.status_code == 200, r.text
        results += r.json()["results"]
    return pd.DataFrame(results).set_index(c.ACTIVITY_ID)


def _check(history, batch, client) -> None:
    ids = history["ids"]
    by_id = _score(client, [{"activity": {c.ACTIVITY_ID: a, c.TYPE: t}} for a, t in zip(
        ids, history["dataset"][c.ACTIVITIES].set_index(c.ACTIVITY_ID).loc[ids, c.TYPE], strict=True)])
    with_history = _score(client, request_items(history["dataset"], ids))
    assert list(by_id.index) == list(with_history.index) == ids
    expected = batch[COLS].to_numpy(dtype=float)
    gap_id = np.abs(by_id[COLS].to_numpy(dtype=float) - expected).max()
    gap_history = np.abs(with_history[COLS].to_numpy(dtype=float) - expected).max()
    assert gap_id <= TOL and gap_history <= TOL, (gap_id, gap_history)
    assert all(not u for u in by_id["unseen"]) or (by_id["unseen"] == with_history["unseen"]).all()


def test_sqlite_parity(history, batch, sqlite_url, tmp_path):
    with service_client(history["bundle"], tmp_path / "home", store=sqlite_url) as client:
        _check(history, batch, client)


def test_postgres_parity(history, batch, postgres, tmp_path):
    from store import open_store

    url = fresh_pg_url(postgres, "parity")
    store = open_store(url)
    store.load_dataset(history["dataset"])
    store.close()
    with service_client(history["bundle"], tmp_path / "home", store=url) as client:
        _check(history, batch, client)
