"""One simulated history per test session, shared by the simulator tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.generate import Simulation, simulate, write_simulation
from simulator.params import OracleSettings, SimulationConfig

N_ACTIVITIES = 40_000
SEED = 11


@pytest.fixture(scope="session")
def sim() -> Simulation:
    """40k activities (about 1,100 deals, 16 reps); half of them get the ex-ante oracle."""
    return simulate(SimulationConfig(n_activities=N_ACTIVITIES, seed=SEED), oracle=OracleSettings(share=0.5))


@pytest.fixture(scope="session")
def sim_dir(sim, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("simulated") / "data"
    write_simulation(sim, out)
    return out
