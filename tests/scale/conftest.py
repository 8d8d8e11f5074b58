"""Scale-out fixtures: an isolated data home and MLflow store, a simulated history, a local Dask cluster."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before LightGBM loads OpenMP (shared 2-core machines)

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

N_ACTIVITIES = 20_000  # the equality checks in CI; benchmarks/bench_dask.py runs 200k


@pytest.fixture(scope="session", autouse=True)
def scale_home(tmp_path_factory):
    """This package's own data home and sqlite MLflow store."""
    home = tmp_path_factory.mktemp("scale-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ACTIVITY_SCORER_HOME", str(home))
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
        mp.setenv("BENTOML_HOME", str(home / "bentoml"))
        mp.setenv("ACTIVITY_SCORER_DASK_MEMORY", "2GiB")
        yield home


@pytest.fixture(scope="session")
def simulated(tmp_path_factory) -> Path:
    """A simulated history of 20k activities (seed 5)."""
    from simulator.generate import simulate, write_simulation
    from simulator.params import SimulationConfig

    out = tmp_path_factory.mktemp("scale-sim") / "data"
    write_simulation(simulate(SimulationConfig(n_activities=N_ACTIVITIES, seed=5)), out)
    return out


@pytest.fixture(scope="session")
def dataset(simulated):
    from features.dataset import load_dataset

    return load_dataset(simulated)


@pytest.fixture(scope="session")
def dask_client(scale_home):
    """Two worker processes on 127.0.0.1, 2 GiB each, spilling into the data home."""
    from engine.cluster import ClusterSettings, open_client

    with open_client(ClusterSettings(workers=2, memory_limit="2GiB"), scale_home) as client:
        yield client
