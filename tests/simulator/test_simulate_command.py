"""`activity-scorer simulate` through the CLI app."""

from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner

from features import contract as c
from features.dataset import load_dataset
from training.cli import app

runner = CliRunner()


def test_simulate_writes_csv_tables_and_ground_truth(tmp_path):
    out = tmp_path / "sim"
    result = runner.invoke(app, ["simulate", "--out", str(out), "--activities", "3000", "--seed", "2",
                                 "--format", "csv", "--start", "2024-03-01", "--days", "200"])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output
    for name in c.TABLES:
        assert (out / f"{name}.csv").exists(), name
    for name in ("ground_truth.parquet", "ground_truth_deals.parquet", "ground_truth_reps.parquet",
                 "ground_truth.json"):
        assert (out / name).exists(), name
    ds = load_dataset(out)
    acts = ds[c.ACTIVITIES]
    assert 2800 <= len(acts) <= 3000
    assert str(acts[c.OCCURRED_AT].dtype) == c.TIMESTAMP_DTYPE
    assert acts[c.OCCURRED_AT].min() >= pd.Timestamp("2024-03-01", tz="UTC")
    assert acts[c.OCCURRED_AT].max() < pd.Timestamp("2024-03-01", tz="UTC") + pd.Timedelta(days=200)


def test_simulate_rejects_bad_options(tmp_path):
    result = runner.invoke(app, ["simulate", "--out", str(tmp_path / "x"), "--format", "xlsx"])
    assert result.exit_code == 2 and "parquet" in result.output
    result = runner.invoke(app, ["simulate", "--out", str(tmp_path / "x"), "--start", "yesterday"])
    assert result.exit_code == 2
    assert not (tmp_path / "x").exists()
