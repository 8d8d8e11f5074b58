"""Reliability fixtures: a trained bundle, a loaded history store and a real keyed server (issue 12)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serving.helpers import Server, make_dataset, train_bundle

API_KEY = "reliability-key-0123456789abcdef"


@pytest.fixture(scope="session")
def rel_dataset():
    return make_dataset(n_activities=3000, seed=3)


@pytest.fixture(scope="session")
def rel_bundle(rel_dataset, tmp_path_factory) -> Path:
    return train_bundle(rel_dataset, tmp_path_factory.mktemp("rel-bundle"))


@pytest.fixture(scope="session")
def rel_store(rel_dataset, tmp_path_factory) -> str:
    """A SQLite history store holding the dataset (what `activity-scorer load` writes)."""
    from store import open_store

    url = f"sqlite:///{tmp_path_factory.mktemp('rel-store') / 'store.db'}"
    store = open_store(url)
    try:
        store.load_dataset(rel_dataset)
    finally:
        store.close()
    return url


@pytest.fixture(scope="module")
def keyed_server(rel_bundle, rel_store, tmp_path_factory) -> Iterator[Server]:
    """``bentoml serve`` on loopback with API keys, the history store and INFO logs."""
    home = tmp_path_factory.mktemp("rel-home")
    server = Server(rel_bundle, home, env={"ACTIVITY_SCORER_API_KEYS": API_KEY, "ACTIVITY_SCORER_STORE": rel_store,
                                           "ACTIVITY_SCORER_HOME": str(home), "ACTIVITY_SCORER_PREDICTION_LOG": "off"})
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
