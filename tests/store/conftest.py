"""Store fixtures: a simulated history with 1,000 late activities, a bundle whose serving context is
taken at their time, that history loaded into an SQLite store, and a throwaway PostgreSQL server."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from features import contract as c
from features.build import build_training_frame, context_to_dict, rep_context
from features.dataset import Dataset, coerce_table, load_dataset, write_dataset
from models.bundle import CONTEXT_FILE
from serving.model_store import load_bundle_dir
from tests.serving.helpers import Server, make_dataset, train_bundle
from tests.store.pg import PostgresServer, pg_bin

N_LATE = 1000


def with_late(dataset: Dataset, n: int = N_LATE, gap_days: int = 30, seed: int = 0) -> tuple[Dataset, list[str]]:
    """The dataset plus ``n`` copies of random activities, all at one instant ``gap_days`` after the end.

    At one instant, no late activity sees another, and every earlier outcome horizon has closed:
    a serving context taken at that instant is what the training table knows of every rep at
    every late activity, so the service and the batch scorer must agree to the last bit.
    """
    acts = dataset[c.ACTIVITIES]
    at = acts[c.OCCURRED_AT].max() + pd.Timedelta(days=gap_days)
    rng = np.random.default_rng(seed)
    source = acts[acts[c.DEAL_ID].notna()].iloc[rng.choice(int(acts[c.DEAL_ID].notna().sum()), n, replace=False)]
    new = source.copy()
    new[c.ACTIVITY_ID] = [f"late{k}" for k in range(n)]
    new[c.OCCURRED_AT] = at
    if c.LOGGED_AT in new:
        new[c.LOGGED_AT] = at + pd.Timedelta(minutes=5)
    tables = dict(dataset.tables)
    tables[c.ACTIVITIES] = coerce_table(c.ACTIVITIES, pd.concat([acts, new], ignore_index=True))
    return Dataset(tables, dataset.custom_fields, dataset.execution_time_fields), list(new[c.ACTIVITY_ID])


@pytest.fixture(scope="session")
def history(tmp_path_factory) -> dict:
    """The late dataset on disk (and read back), its late ids and instant, and a bundle with the context at it."""
    root = tmp_path_factory.mktemp("store-history")
    base = make_dataset()
    bundle_dir = train_bundle(base, root / "trained")
    extended, late_ids = with_late(base)
    data = root / "data"
    write_dataset(extended, data)
    on_disk = load_dataset(data)
    table = build_training_frame(on_disk)
    at = on_disk[c.ACTIVITIES].set_index(c.ACTIVITY_ID).loc[late_ids[0], c.OCCURRED_AT]
    bundle = root / "bundle"
    shutil.copytree(bundle_dir, bundle)
    trained = load_bundle_dir(bundle_dir).context
    context = rep_context(on_disk, table, at=at, custom_fields=trained.custom_fields, timezone=trained.timezone)
    (bundle / CONTEXT_FILE).write_text(json.dumps(context_to_dict(context)), encoding="utf-8")
    return {"data": data, "dataset": on_disk, "ids": late_ids, "at": at, "bundle": bundle, "root": root,
            "table": table}


@pytest.fixture(scope="session")
def sqlite_url(history, tmp_path_factory) -> str:
    """An SQLite store holding the late dataset (loaded once; tests that write use their own store)."""
    from store import open_store

    url = f"sqlite:///{tmp_path_factory.mktemp('sqlite-store') / 'store.db'}"
    store = open_store(url)
    store.load_dataset(history["dataset"])
    store.close()
    return url


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL server (skipped, loudly, only where its binaries are absent and cannot be had)."""
    if pg_bin() is None:
        import os

        if os.environ.get("CI"):
            pytest.fail("PostgreSQL binaries are missing under CI: make test runs scripts/system-deps.sh")
        pytest.skip("PostgreSQL binaries not found (/usr/lib/postgresql/*/bin): run scripts/system-deps.sh as root")
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture()
def empty_sqlite(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


def fresh_pg_url(server: PostgresServer, name: str) -> str:
    """A new empty database on the server (one per test that writes)."""
    import psycopg

    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return server.url.rsplit("/", 1)[0] + f"/{name}"


@contextlib.contextmanager
def service_client(bundle: Path, home: Path, **settings: str) -> Iterator[httpx.Client]:
    """A real ``bentoml serve`` (its own process: an in-process app would share BentoML's one app and
    Prometheus directory with tests/serving) with these settings, and an HTTP client on it."""
    env = {f"ACTIVITY_SCORER_{k.upper()}": str(v) for k, v in settings.items()}
    server = Server(bundle, home, env=env)
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=120) as client:
            yield client
    finally:
        server.stop()
