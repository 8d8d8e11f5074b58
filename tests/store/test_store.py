"""The store itself: schema versions, idempotent upserts, deletion, and the point-in-time reads."""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features import contract as c
from features.build import ServingContext, build_serving_columns, request_items
from features.dataset import write_dataset
from store import StoreError, StoreVersionError, open_store
from store.schema import SCHEMA_VERSION, VERSION_TABLE
from tests.features.factory import make_history


def _item(ctx) -> dict:
    item = {"activity": ctx.activity, "history": ctx.history}
    for name in ("deal", "contact", "account"):
        if getattr(ctx, name):
            item[name] = getattr(ctx, name)
    return item


def _same_features(a: dict, b: dict) -> list[str]:
    diff = []
    for name in a:
        x, y = a[name], b[name]
        if x.dtype == object:
            same = all(u == v or (u is None and v is None) for u, v in zip(x, y, strict=True))
        else:
            same = np.array_equal(x, y, equal_nan=True)
        if not same:
            diff.append(name)
    return diff


@pytest.mark.slow
def test_store_history_gives_the_features_of_the_full_history(history, sqlite_url):
    """The store's point-in-time history and the whole history (later rows included) give identical features,
    for 1,000 activities anywhere in time, late-logged rows included."""
    dataset = history["dataset"]
    acts = dataset[c.ACTIVITIES]
    assert (acts[c.LOGGED_AT] > acts[c.OCCURRED_AT] + pd.Timedelta(days=1)).sum() > 0  # late logging is exercised
    ids = list(acts[c.ACTIVITY_ID].sample(1000, random_state=3))
    full = request_items(dataset, ids)
    store = open_store(sqlite_url)
    stored = [_item(store.context_for(it["activity"][c.OCCURRED_AT], activity_id=it["activity"][c.ACTIVITY_ID]))
              for it in full]
    store.close()
    n_full = sum(len(it["history"][c.ACTIVITIES]) for it in full)
    n_stored = sum(len(it["history"][c.ACTIVITIES]) for it in stored)
    assert n_stored < n_full  # later rows are left out by the store, and they never mattered:
    context = ServingContext()
    assert _same_features(build_serving_columns(full, context), build_serving_columns(stored, context)) == []


def test_an_activity_logged_after_t_is_not_known_at_t(empty_sqlite):
    store = open_store(empty_sqlite)
    t = pd.Timestamp("2026-03-02T12:00:00Z")
    store.upsert({c.ACTIVITIES: [
        {c.ACTIVITY_ID: "a1", c.TYPE: "call", c.OCCURRED_AT: t - pd.Timedelta(days=2), c.DEAL_ID: "d1"},
        {c.ACTIVITY_ID: "a2", c.TYPE: "call", c.OCCURRED_AT: t - pd.Timedelta(days=1), c.DEAL_ID: "d1",
         c.LOGGED_AT: t + pd.Timedelta(hours=1)},
        {c.ACTIVITY_ID: "a3", c.TYPE: "call", c.OCCURRED_AT: t, c.DEAL_ID: "d1"}],
        c.RESPONSES: [{c.ACTIVITY_ID: "a1", c.RESPONSE: "replied", c.OCCURRED_AT: t - pd.Timedelta(hours=1)},
                      {c.ACTIVITY_ID: "a1", c.RESPONSE: "meeting_booked", c.OCCURRED_AT: t}]})
    ctx = store.context_for(t.to_pydatetime(), deal_id="d1")
    assert [r[c.ACTIVITY_ID] for r in ctx.history[c.ACTIVITIES]] == ["a1"]
    assert [r[c.RESPONSE] for r in ctx.history[c.RESPONSES]] == ["replied"]
    assert ctx.unknown == []
    assert store.context_for(t, deal_id="nope").unknown == [c.DEAL_ID]


def test_upserts_replace_by_key_and_keep_custom_fields(empty_sqlite):
    store = open_store(empty_sqlite)
    row = {c.ACTIVITY_ID: "a1", c.TYPE: "call", c.OCCURRED_AT: "2026-01-01T10:00:00+01:00", "cf_template": "t1",
           c.IS_AUTOMATED: True, c.PERSONALIZATION: 0.25}
    assert store.upsert({c.ACTIVITIES: [row]}) == {c.ACTIVITIES: 1}
    store.upsert({c.ACTIVITIES: [row | {c.TYPE: "email"}]})
    assert store.counts()[c.ACTIVITIES] == 1
    got = store.get(c.ACTIVITIES, "a1")
    assert got[c.TYPE] == "email" and got["cf_template"] == "t1" and got[c.IS_AUTOMATED] is True
    assert got[c.OCCURRED_AT].isoformat() == "2026-01-01T09:00:00+00:00" and got[c.PERSONALIZATION] == 0.25
    stage = {c.DEAL_ID: "d1", c.STAGE: "discovery", c.STAGE_ORDER: 2, c.ENTERED_AT: "2026-01-01T00:00:00Z"}
    store.upsert({c.DEAL_STAGES: [stage, stage | {c.STAGE: "Discovery"}]})
    assert store.counts()[c.DEAL_STAGES] == 1


def test_a_failed_transaction_stores_nothing(empty_sqlite):
    store = open_store(empty_sqlite)
    good = (("a1", 1, "call") + (None,) * 11, )
    bad = (("a2", None, "call") + (None,) * 11, )  # occurred_at is NOT NULL
    with pytest.raises(sqlite3.IntegrityError):
        store.upsert_values({c.ACCOUNTS: [("acc1", None, None, None, None)], c.ACTIVITIES: [*good, *bad]})
    assert sum(store.counts().values()) == 0


def test_delete_erases_every_row_naming_the_entity(empty_sqlite):
    store = open_store(empty_sqlite)
    t = "2026-01-01T00:00:00Z"
    store.upsert({
        c.ACCOUNTS: [{c.ACCOUNT_ID: "acc1"}, {c.ACCOUNT_ID: "acc2"}],
        c.DEALS: [{c.DEAL_ID: "d1", c.ACCOUNT_ID: "acc1"}, {c.DEAL_ID: "d2", c.ACCOUNT_ID: "acc2"}],
        c.CONTACTS: [{c.CONTACT_ID: "k1", c.ACCOUNT_ID: "acc1"}, {c.CONTACT_ID: "k2", c.ACCOUNT_ID: "acc2"}],
        c.ACTIVITIES: [{c.ACTIVITY_ID: "a1", c.TYPE: "call", c.OCCURRED_AT: t, c.DEAL_ID: "d1", c.CONTACT_ID: "k1"},
                       {c.ACTIVITY_ID: "a2", c.TYPE: "call", c.OCCURRED_AT: t, c.DEAL_ID: "d2", c.CONTACT_ID: "k1"},
                       {c.ACTIVITY_ID: "a3", c.TYPE: "call", c.OCCURRED_AT: t, c.DEAL_ID: "d2", c.CONTACT_ID: "k2"}],
        c.RESPONSES: [{c.ACTIVITY_ID: "a2", c.RESPONSE: "replied", c.OCCURRED_AT: t}],
        c.OUTCOMES: [{c.DEAL_ID: "d2", c.OUTCOME: "goals_agreed", c.OCCURRED_AT: t, c.CONTACT_ID: "k1"}],
        c.DEAL_STAGES: [{c.DEAL_ID: "d2", c.STAGE: "s", c.STAGE_ORDER: 1, c.ENTERED_AT: t}],
    })
    assert store.delete(c.CONTACTS, "k1") == {c.RESPONSES: 1, c.ACTIVITIES: 2, c.OUTCOMES: 1, c.CONTACTS: 1}
    assert store.get(c.ACTIVITIES, "a3") is not None and store.get(c.DEALS, "d2") is not None
    assert store.delete(c.ACCOUNTS, "acc2") == {c.ACTIVITIES: 1, c.DEAL_STAGES: 1, c.DEALS: 1, c.CONTACTS: 1,
                                                 c.ACCOUNTS: 1}
    left = store.counts()
    assert left == {c.ACCOUNTS: 1, c.REPS: 0, c.DEALS: 1, c.CONTACTS: 0, c.ACTIVITIES: 0, c.RESPONSES: 0,
                    c.DEAL_STAGES: 0, c.OUTCOMES: 0}
    assert store.delete(c.DEALS, "d1") == {c.DEALS: 1}


def test_schema_version_is_recorded_and_a_newer_store_is_refused(empty_sqlite):
    store = open_store(empty_sqlite)
    assert store.version() == SCHEMA_VERSION
    store.close()
    path = empty_sqlite[len("sqlite:///"):]
    with sqlite3.connect(path) as db:
        db.execute(f"INSERT INTO {VERSION_TABLE} VALUES (?, 'from the future', 0)", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreVersionError, match=f"schema version {SCHEMA_VERSION + 1} is newer"):
        open_store(empty_sqlite)


def test_a_database_that_is_not_a_store_is_refused(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE activities (x TEXT)")
    with pytest.raises(StoreVersionError, match="not created by activity-scorer"):
        open_store(f"sqlite:///{path}")
    (tmp_path / "junk.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="junk.db"):
        open_store(str(tmp_path / "junk.db"))
    with pytest.raises(StoreError, match="unknown kind of store"):
        open_store("mysql://x@y/z")


@pytest.mark.slow
def test_postgres_store_round_trip_and_refusals(postgres):
    from tests.store.conftest import fresh_pg_url

    url = fresh_pg_url(postgres, "roundtrip")
    store = open_store(url)
    t = "2026-01-01T00:00:00Z"
    store.upsert({c.ACTIVITIES: [{c.ACTIVITY_ID: "a1", c.TYPE: "call", c.OCCURRED_AT: t, c.DEAL_ID: "d1",
                                  c.IS_AUTOMATED: False, "cf": 1.5}]})
    assert store.get(c.ACTIVITIES, "a1") == {c.ACTIVITY_ID: "a1", c.TYPE: "call", c.DEAL_ID: "d1",
                                             c.OCCURRED_AT: pd.Timestamp(t).to_pydatetime(), c.IS_AUTOMATED: False,
                                             "cf": 1.5}
    store.close()
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"INSERT INTO {VERSION_TABLE} VALUES (%s, 'from the future', 0)", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreVersionError, match="newer than this activity-scorer knows"):
        open_store(url)
    with pytest.raises(StoreError, match="cannot connect"):
        open_store(f"postgresql://activity@127.0.0.1:{postgres.port}/no_such_database")


def test_load_command(tmp_path, monkeypatch):
    from training.cli import app

    data = tmp_path / "data"
    write_dataset(make_history(n_activities=400, n_deals=20, n_contacts=30, seed=2), data)
    monkeypatch.setenv("ACTIVITY_SCORER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ACTIVITY_SCORER_STORE", raising=False)
    result = CliRunner().invoke(app, ["load", "--data", str(data)])
    assert result.exit_code == 0, result.output
    assert "loaded" in result.output and "400 activities" in result.output and "activities/s" in result.output
    store = open_store(str(tmp_path / "home" / "store.db"), create=False)
    assert store.counts()[c.ACTIVITIES] == 400
    store.close()
    again = CliRunner().invoke(app, ["load", "--data", str(data), "--store", f"sqlite:///{tmp_path / 'home' / 'store.db'}"])
    assert again.exit_code == 0
    assert open_store(str(tmp_path / "home" / "store.db")).counts()[c.ACTIVITIES] == 400  # replaced, not doubled
    bad = CliRunner().invoke(app, ["load", "--data", str(tmp_path / "nowhere")])
    assert bad.exit_code == 1 and "no such dataset directory" in bad.output and "Traceback" not in bad.output
    bad = CliRunner().invoke(app, ["load", "--data", str(data), "--store", "mysql://x@y/z"])
    assert bad.exit_code == 1 and "unknown kind of store" in bad.output
