"""The real thing on simulated data: simulate -> train -> promote -> score, and the demo command."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from training.cli import app

runner = CliRunner()
N_ACTIVITIES = 20_000


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> Path:
    from simulator.generate import simulate, write_simulation
    from simulator.params import SimulationConfig

    out = tmp_path_factory.mktemp("sim") / "data"
    write_simulation(simulate(SimulationConfig(n_activities=N_ACTIVITIES, seed=3)), out)
    return out


@pytest.mark.slow
def test_train_promote_score_on_simulated_data(simulated, tmp_path, model_name):
    result = runner.invoke(app, ["train", "--data", str(simulated), "--model-name", model_name, "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    rows = {(m["label"], m["variant"]): m for m in doc["metrics"]}
    outcome = rows[("outcome", "full")]
    assert outcome["auc"] > 0.7 and outcome["ece"] < 0.06
    # The fair yardstick is the ex-ante oracle, scored on the test rows where the simulator computed
    # it (a 20% sample); a broken or unlearned model (AUC near 0.5) would be far more than 0.1 below.
    assert outcome["oracle"] == "p_outcome_label_ex_ante"
    assert 0 < outcome["n_oracle"] < outcome["n_test"]
    assert outcome["oracle_gap"] < 0.1
    assert outcome["oracle_gap"] == pytest.approx(outcome["oracle_auc"] - outcome["auc_oracle_rows"])
    # The realized-schedule oracle knows the deal's future activities: reported beside, and far above.
    assert outcome["oracle_auc_realized"] > outcome["oracle_auc"] + 0.02
    assert doc["variants"] == {"plan": "plan", "full": "full"}  # duration_s is an execution-time feature
    assert "duration_s" in doc["features_used"]

    result = runner.invoke(app, ["promote", "--model-name", model_name])
    assert result.exit_code == 0, result.output

    # the registered bundle carries the ranking model /rank orders candidates by
    from models.bundle import ModelBundle
    from models.ranking import load_ranking
    from training.tracking import fetch_bundle

    fetched = fetch_bundle(f"models:/{model_name}@champion", tmp_path / "champion")
    bundle_dir = fetched.path
    ranking = load_ranking(bundle_dir, ModelBundle.load(bundle_dir).spec)
    assert ranking is not None and ranking.metrics

    out = tmp_path / "scores.parquet"
    result = runner.invoke(app, ["score", "--data", str(simulated), "--out", str(out), "--since", "2025-12-01",
                                 "--model-name", model_name])
    assert result.exit_code == 0, result.output
    scores = pd.read_parquet(out)
    acts = pd.read_parquet(simulated / "activities.parquet")
    expected = acts.loc[acts["occurred_at"] >= pd.Timestamp("2025-12-01", tz="UTC"), "activity_id"]
    assert sorted(scores["activity_id"]) == sorted(expected)
    assert scores[["p_outcome", "p_output", "p_negative"]].notna().all().all()


@pytest.mark.slow
def test_train_with_until_uses_only_earlier_history(simulated, model_name):
    result = runner.invoke(app, ["train", "--data", str(simulated), "--until", "2025-09-01", "--model-name",
                                 model_name, "--json"])
    assert result.exit_code == 0, result.output
    window = json.loads(result.stdout)["window"]
    assert window["data_end"].startswith("2025-09-01") and window["until"].startswith("2025-09-01")
    assert window["test_start"] < "2025-09-01"


@pytest.mark.slow
def test_demo_simulates_once_trains_and_promotes(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("ACTIVITY_SCORER_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
    first = runner.invoke(app, ["demo", "--activities", str(N_ACTIVITIES), "--seed", "5"])
    assert first.exit_code == 0, first.output
    for step in ("simulate", "validate", "train", "promote"):
        assert step in first.output
    assert "wrote" in first.output and "is the champion" in first.output
    assert (home / "demo" / "activities.parquet").exists() and (home / "mlflow.db").exists()
    again = runner.invoke(app, ["demo", "--activities", str(N_ACTIVITIES), "--seed", "5"])
    assert again.exit_code == 0, again.output
    assert "reused" in again.output
    assert "v2 is the champion (was v1)" in again.output  # same data, same seed: as good, so promoted
