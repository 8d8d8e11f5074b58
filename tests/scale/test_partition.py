"""Partitions of whole accounts: every deal's and contact's history in one partition, or a named refusal."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.command import check_engine
from engine.partition import PartitionError, partition_count, split_dataset
from features import contract as c
from features.dataset import Dataset


def _ts(*days: int) -> pd.Series:
    return pd.Series(pd.to_datetime([f"2025-01-{d:02d}" for d in days], utc=True))


def _dataset(contact_of_a5: str = "c3") -> Dataset:
    acts = pd.DataFrame({
        c.ACTIVITY_ID: ["a1", "a2", "a3", "a4", "a5", "a6"],
        c.TYPE: ["call", "email", "call", "meeting", "email", "call"],
        c.OCCURRED_AT: _ts(1, 2, 3, 4, 5, 6),
        c.REP_ID: ["r1", "r1", "r2", "r2", "r1", "r2"],
        c.DEAL_ID: ["d1", "d1", "d2", "d3", None, None],
        c.CONTACT_ID: ["c1", "c1", "c2", "c3", contact_of_a5, "c9"],
        c.ACCOUNT_ID: [None, None, None, None, None, "acc-9"],
    }).astype({col: "string" for col in (c.ACTIVITY_ID, c.TYPE, c.REP_ID, c.DEAL_ID, c.CONTACT_ID, c.ACCOUNT_ID)})
    deals = pd.DataFrame({c.DEAL_ID: ["d1", "d2", "d3"], c.ACCOUNT_ID: ["acc-1", "acc-2", "acc-3"]}, dtype="string")
    contacts = pd.DataFrame({c.CONTACT_ID: ["c1", "c2", "c3"], c.ACCOUNT_ID: ["acc-1", "acc-2", "acc-3"]},
                            dtype="string")
    stages = pd.DataFrame({c.DEAL_ID: pd.array(["d1", "d2", "d3", "d9"], dtype="string"),
                           c.STAGE_ORDER: [1, 1, 2, 1], c.ENTERED_AT: _ts(1, 1, 2, 3)})
    responses = pd.DataFrame({c.ACTIVITY_ID: pd.array(["a2", "a5", "zz"], dtype="string"),
                              c.RESPONSE: pd.array(["reply", "reply", "reply"], dtype="string"),
                              c.OCCURRED_AT: _ts(3, 6, 7)})
    return Dataset({c.ACTIVITIES: acts, c.DEALS: deals, c.CONTACTS: contacts, c.DEAL_STAGES: stages,
                    c.RESPONSES: responses})


def _where(parts, table: str, key: str) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for p in parts:
        frame = p.events.get(table)
        if frame is None:
            continue
        for v in frame[key].dropna():
            out.setdefault(str(v), set()).add(p.index)
    return out


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_every_row_lands_once_and_accounts_stay_whole(n):
    ds = _dataset()
    parts = split_dataset(ds, n)
    rows = np.sort(np.concatenate([p.rows for p in parts]))
    assert rows.tolist() == list(range(6))
    for p in parts:  # rows are positions in the dataset's order, matching the partition's activities
        assert p.events[c.ACTIVITIES][c.ACTIVITY_ID].tolist() == ds[c.ACTIVITIES][c.ACTIVITY_ID].iloc[p.rows].tolist()
    acts = _where(parts, c.ACTIVITIES, c.ACTIVITY_ID)
    # a5 has no deal and no account: it goes with its contact's account (acc-3), as d3's activity a4
    assert acts["a5"] == acts["a4"]
    # stages travel with their deal; a response with its activity
    stages = _where(parts, c.DEAL_STAGES, c.DEAL_ID)
    for deal, first in (("d1", "a1"), ("d2", "a3"), ("d3", "a4")):
        assert stages[deal] == acts[first]
    responses = _where(parts, c.RESPONSES, c.ACTIVITY_ID)
    assert responses["a2"] == acts["a2"] and responses["a5"] == acts["a5"]
    assert sum(len(p.events[c.RESPONSES]) for p in parts) == 3  # the unknown activity's response is kept once


def test_a_contact_on_deals_of_two_accounts_is_refused_by_name():
    ds = _dataset()
    acts = ds[c.ACTIVITIES].copy()
    acts.loc[1, c.DEAL_ID] = "d2"  # c1 now has activities on d1 (acc-1) and d2 (acc-2)
    ds.tables[c.ACTIVITIES] = acts
    for n in range(2, 12):  # some split puts acc-1 and acc-2 apart
        try:
            split_dataset(ds, n)
        except PartitionError as err:
            assert "contact 'c1'" in str(err) and "acc-1" in str(err) and "acc-2" in str(err)
            assert "--engine local" in str(err)
            return
    pytest.fail("no split separated acc-1 from acc-2")


def test_repeated_activity_ids_are_refused_with_the_row():
    ds = _dataset()
    acts = ds[c.ACTIVITIES].copy()
    acts.loc[3, c.ACTIVITY_ID] = "a1"
    ds.tables[c.ACTIVITIES] = acts
    with pytest.raises(PartitionError, match=r"activity_id 'a1' repeats \(row 5\)"):
        split_dataset(ds, 2)


def test_partition_count():
    assert partition_count(10, workers=2) == 2
    assert partition_count(1_000_000, workers=2) == 4
    assert partition_count(10, workers=2, requested=5) == 5
    with pytest.raises(PartitionError):
        partition_count(10, workers=2, requested=0)


def test_engine_options(monkeypatch):
    assert check_engine("local", None) is None
    with pytest.raises(ValueError, match="--engine 'spark'"):
        check_engine("spark", None)
    with pytest.raises(ValueError, match="--scheduler needs --engine dask"):
        check_engine("local", "tcp://127.0.0.1:8786")
    assert check_engine("dask", "tcp://127.0.0.1:8786").scheduler == "tcp://127.0.0.1:8786"
    monkeypatch.setenv("ACTIVITY_SCORER_DASK_WORKERS", "two")
    with pytest.raises(RuntimeError, match="ACTIVITY_SCORER_DASK_WORKERS='two'"):
        check_engine("dask", None)
