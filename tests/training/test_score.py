"""Batch scoring: every activity at or after --since, with the champion or a given model, CSV or Parquet."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from training.cli import app

runner = CliRunner()


@pytest.fixture
def bundle_path(trained, tmp_path):
    return trained.bundle.save(tmp_path / "bundle")


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_score_writes_the_api_columns_for_activities_since(tmp_path, fake_loader, bundle_path, trained, table, suffix):
    out = tmp_path / f"scores{suffix}"
    result = runner.invoke(app, ["score", "--data", str(tmp_path), "--out", str(out), "--since", "2025-10-01",
                                 "--model", str(bundle_path)])
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(out, dtype={"activity_id": str}) if suffix == ".csv" else pd.read_parquet(out)
    assert list(scores.columns) == ["activity_id", "p_outcome", "p_output", "p_negative"]
    since = table.frame[table.frame["occurred_at"] >= pd.Timestamp("2025-10-01", tz="UTC")]
    assert scores["activity_id"].tolist() == since["activity_id"].tolist()
    expected = trained.bundle.predict_frame(since, "full")
    tol = 1e-6 if suffix == ".csv" else 0
    assert np.allclose(scores[["p_outcome", "p_output", "p_negative"]].to_numpy(), expected.to_numpy(), rtol=tol,
                       atol=tol)
    assert f"{len(since):,} of {len(table.frame):,} activities scored" in result.output


def test_score_uses_the_champion_by_default(tmp_path, fake_loader, model_name):
    assert runner.invoke(app, ["train", "--data", str(tmp_path), "--model-name", model_name]).exit_code == 0
    out = tmp_path / "s.csv"
    result = runner.invoke(app, ["score", "--data", str(tmp_path), "--out", str(out), "--model-name", model_name])
    assert result.exit_code == 1 and "has no alias 'champion'" in result.output and "promote" in result.output
    assert runner.invoke(app, ["promote", "--model-name", model_name]).exit_code == 0
    result = runner.invoke(app, ["score", "--data", str(tmp_path), "--out", str(out), "--model-name", model_name,
                                 "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["model_version"] == "1" and doc["n_scored"] == doc["n_activities"] > 0


def test_score_errors_are_one_clean_line(tmp_path, fake_loader, bundle_path):
    bad = runner.invoke(app, ["score", "--data", str(tmp_path), "--out", str(tmp_path / "s.xlsx"),
                              "--model", str(bundle_path)])
    assert bad.exit_code == 1 and "must end in .csv or .parquet" in bad.output
    bad = runner.invoke(app, ["score", "--data", str(tmp_path), "--out", str(tmp_path / "s.csv"),
                              "--since", "yesterday-ish", "--model", str(bundle_path)])
    assert bad.exit_code == 1 and "--since" in bad.output
    bad = runner.invoke(app, ["score", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "s.csv")])
    assert bad.exit_code == 1 and "no such dataset directory" in bad.output
    bad = runner.invoke(app, ["score", "--data", str(tmp_path), "--out", str(tmp_path / "s.csv"),
                              "--model", str(tmp_path / "missing")])
    assert bad.exit_code == 1 and "no such bundle directory" in bad.output
    assert "Traceback" not in bad.output
