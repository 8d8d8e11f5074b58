"""Serving fixtures: one trained bundle per session, in-process apps, one real server per session."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serving.helpers import busy_activity_ids, item_with_history, make_dataset, train_bundle

API_KEY = "test-key-0123456789abcdef"


@pytest.fixture(scope="session")
def dataset():
    return make_dataset()


@pytest.fixture(scope="session")
def bundle_dir(dataset, tmp_path_factory) -> Path:
    return train_bundle(dataset, tmp_path_factory.mktemp("bundle"))


@pytest.fixture(scope="session")
def score_item(dataset) -> dict:
    """One activity with 50 history activities (and their responses, stages, contacts)."""
    return item_with_history(dataset, busy_activity_ids(dataset, 1)[0], 50)


@pytest.fixture(scope="session")
def serving_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("serving-home")
    (home / "prometheus").mkdir()
    return home


_PROMETHEUS_DIR: list[Path] = []


@contextlib.contextmanager
def service_env(bundle: Path, home: Path, **settings: str) -> Iterator[None]:
    """Environment of an in-process service: the bundle, stores in ``home``, extra settings.

    Prometheus' multiprocess directory is fixed for the whole test process: the metrics are
    registered once (with the first app) and write there, so later apps must read the same one.
    """
    if not _PROMETHEUS_DIR:
        (home / "prometheus").mkdir(exist_ok=True)
        _PROMETHEUS_DIR.append(home / "prometheus")
    env = {
        "ACTIVITY_SCORER_BUNDLE": str(bundle),
        "ACTIVITY_SCORER_HOME": str(home),  # the prediction log and stores: never the user's data home
        "BENTOML_HOME": str(home / "bentoml"),
        "PROMETHEUS_MULTIPROC_DIR": str(_PROMETHEUS_DIR[0]),
        **{f"ACTIVITY_SCORER_{k.upper()}": str(v) for k, v in settings.items()},
    }
    import prometheus_client.values as prometheus_values

    try:
        with pytest.MonkeyPatch.context() as mp:
            for key in [k for k in os.environ if k.startswith("ACTIVITY_SCORER_")]:
                mp.delenv(key)
            for key, value in env.items():
                mp.setenv(key, value)
            # prometheus_client picks in-memory or multiprocess values when it is first imported;
            # another test (a Dask cluster) may have imported it without the directory set.
            prometheus_values.ValueClass = prometheus_values.get_value_class()
            yield
    finally:
        prometheus_values.ValueClass = prometheus_values.get_value_class()


_APP: list = []


@contextlib.contextmanager
def app_client(bundle: Path, home: Path, **settings: str):
    """A Starlette TestClient on ``ActivityScorer.to_asgi()``, started with these settings.

    BentoML registers its Prometheus metrics when it builds an app, so a process builds one
    app; each client starts it afresh (ASGI lifespan), and the service and the request guard
    read the settings at start-up.
    """
    import gc

    from starlette.testclient import TestClient

    with service_env(bundle, home, **settings):
        if not _APP:
            from serving.service import ActivityScorer

            _APP.append(ActivityScorer.to_asgi())
        with TestClient(_APP[0], raise_server_exceptions=False) as client:
            client.frozen_at_startup = gc.get_freeze_count()
            gc.unfreeze()  # the service froze the start-up heap: give the test session's objects back
            yield client


@pytest.fixture(scope="module")
def client(bundle_dir, serving_home):
    """In-process service with default settings (no API keys)."""
    with app_client(bundle_dir, serving_home) as c:
        yield c


TINY_ACTIVITIES = 160_000  # the tiny world's size for the effect tests: its late stages resolve exactly (docs/effects.md)


@pytest.fixture(scope="session")
def tiny_world_run(tmp_path_factory) -> tuple[Path, Path]:
    """The tiny closed-form world (simulator.worlds.tiny_world), simulated and trained with its effect model.

    Returns (dataset directory, bundle directory). The effect model uses the default settings
    (training config ``effects``), as ``train`` fits it: what the closed-form test judges.
    """
    from features.build import build_training_frame
    from features.dataset import load_dataset
    from models.bundle import ModelBundle
    from simulator.generate import write_simulation
    from simulator.worlds import simulate_world, tiny_world
    from training.effects import fit_effect_model

    root = tmp_path_factory.mktemp("tiny-world")
    write_simulation(simulate_world(tiny_world(), TINY_ACTIVITIES, seed=3, oracle=None), root / "data")
    dataset = load_dataset(root / "data")
    bundle = train_bundle(dataset, root / "bundle")
    spec = ModelBundle.load(bundle).spec
    fit_effect_model(dataset, build_training_frame(dataset).frame, spec).save(bundle)
    return root / "data", bundle


@pytest.fixture(scope="session")
def effects_bundle_dir(tiny_world_run) -> Path:
    """A bundle with an effect model: /rank orders by effect."""
    return tiny_world_run[1]


@pytest.fixture(scope="session")
def tiny_item(tiny_world_run) -> dict:
    """A /score item of the tiny world with 50 history activities (for /rank bodies)."""
    from features.dataset import load_dataset

    dataset = load_dataset(tiny_world_run[0])
    return item_with_history(dataset, busy_activity_ids(dataset, 1)[0], 50)
