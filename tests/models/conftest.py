"""Model-level fixtures: one small trained bundle per session (synthetic data, ~1 s)."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before LightGBM loads OpenMP (shared 2-core machines)

import pytest  # noqa: E402

from training.config import load_config  # noqa: E402
from training.data import LoadedData  # noqa: E402
from training.synthetic import make_training_table  # noqa: E402
from training.train import run_training  # noqa: E402


@pytest.fixture(scope="session")
def table():
    return make_training_table(6000, seed=0)


@pytest.fixture(scope="session")
def trained(table):
    """A TrainingResult on the synthetic table (plan + full variants)."""
    return run_training(LoadedData(table, truth=table.truth), load_config())


@pytest.fixture(scope="session")
def bundle(trained):
    return trained.bundle


@pytest.fixture(scope="session")
def bundle_dir(trained, tmp_path_factory):
    return trained.bundle.save(tmp_path_factory.mktemp("bundle") / "bundle")
