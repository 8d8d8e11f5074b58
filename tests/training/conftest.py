"""Training fixtures: a temporary MLflow store and data home per session, synthetic tables, a fake loader.

``fake_loader`` replaces ``training.data.load_table`` (what ``train``, ``promote`` and
``score`` call to build the training table) with one returning a synthetic table, so
CLI tests run in seconds without the feature pipeline. ``tests/training/test_pipeline.py``
runs the real pipeline on simulated data.
"""

from __future__ import annotations

import os
import uuid

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before LightGBM loads OpenMP (shared 2-core machines)

import pytest  # noqa: E402

from training import data as data_mod  # noqa: E402
from training.config import load_config  # noqa: E402
from training.data import LoadedData  # noqa: E402
from training.synthetic import make_training_table  # noqa: E402
from training.train import run_training  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def isolated_stores(tmp_path_factory):
    """Every test session gets its own sqlite MLflow store and data home."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ACTIVITY_SCORER_HOME", str(home))
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
        mp.setenv("BENTOML_HOME", str(home / "bentoml"))
        yield home


@pytest.fixture
def model_name():
    """A registered model name of its own, so registry tests do not see each other's aliases."""
    return f"test-model-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def table():
    return make_training_table(6000, seed=0)


@pytest.fixture(scope="session")
def trained(table):
    return run_training(LoadedData(table, truth=table.truth), load_config())


@pytest.fixture
def fake_loader(monkeypatch, table):
    """Make ``load_table`` return the synthetic table whatever the directory (returns a setter)."""
    current = {"table": table}

    def load_table(data, cfg, until=None, dataset=None):
        t = current["table"]
        return LoadedData(t, set(), data.resolve() if hasattr(data, "resolve") else data, t.truth)

    monkeypatch.setattr(data_mod, "load_table", load_table)

    def use(new_table):
        current["table"] = new_table

    return use
