"""Same seed, same bytes; another seed, another history; the oracle never changes the data."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features import contract as c
from simulator.generate import simulate, write_simulation
from simulator.params import OracleSettings, SimulationConfig


def _write(path: Path, seed: int, n: int = 4000, oracle: OracleSettings | None = OracleSettings()) -> Path:
    write_simulation(simulate(SimulationConfig(n_activities=n, seed=seed), oracle=oracle), path)
    return path


def _files(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def test_same_seed_writes_byte_identical_files(tmp_path):
    a = _files(_write(tmp_path / "a", seed=5))
    b = _files(_write(tmp_path / "b", seed=5))
    assert len(a) == 12 and a.keys() == b.keys()
    for name in a:
        assert a[name] == b[name], name


def test_another_seed_gives_another_history(tmp_path):
    a = pd.read_parquet(_write(tmp_path / "a", seed=5) / "activities.parquet")
    b = pd.read_parquet(_write(tmp_path / "b", seed=6) / "activities.parquet")
    assert not a[c.OCCURRED_AT].equals(b[c.OCCURRED_AT])


def test_the_oracle_does_not_change_the_dataset(tmp_path):
    with_oracle = _files(_write(tmp_path / "a", seed=5, oracle=OracleSettings(share=0.5, rollouts=4)))
    without = _files(_write(tmp_path / "b", seed=5, oracle=None))
    for name in c.TABLES:
        assert with_oracle[f"{name}.parquet"] == without[f"{name}.parquet"], name
    truth = pd.read_parquet(tmp_path / "b" / "ground_truth.parquet")
    assert truth["p_outcome_label_ex_ante"].isna().all()


def test_size_is_at_most_the_request_and_close_to_it():
    for n in (500, 3000, 25_000):  # whole accounts are kept: short by less than an account (about 50)
        got = len(simulate(SimulationConfig(n_activities=n, seed=1), oracle=None).tables[c.ACTIVITIES])
        assert n - 150 <= got <= n
