"""Promotion: the champion alias moves only for a candidate at least as good on the same window."""

from __future__ import annotations

import json

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from training.cli import app
from training.synthetic import make_training_table

runner = CliRunner()


def _train(data, model_name, *extra):
    result = runner.invoke(app, ["train", "--data", str(data), "--model-name", model_name, "--json", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _config(tmp_path, name, excluded):
    p = tmp_path / f"{name}.yaml"
    p.write_text(f"exclude_features: [{', '.join(excluded)}]\n")
    return p


def _weak_config(tmp_path):
    return _config(tmp_path, "weak", ["type", "personalization", "seniority"])  # leaves mostly noise


@pytest.mark.slow
def test_first_candidate_becomes_champion_then_worse_is_refused_and_better_accepted(tmp_path, fake_loader,
                                                                                    model_name):
    fake_loader(make_training_table(20_000, seed=0))
    first = _train(tmp_path, model_name, "--config", str(_config(tmp_path, "medium", ["seniority"])))
    assert first["version"] == "1" and first["alias"] == "challenger"
    result = runner.invoke(app, ["promote", "--model-name", model_name])
    assert result.exit_code == 0, result.output
    assert "no champion (absolute gates only)" in result.output and "Promoted v1 to champion" in result.output
    client = MlflowClient()
    assert str(client.get_model_version_by_alias(model_name, "champion").version) == "1"

    weak = _train(tmp_path, model_name, "--config", str(_weak_config(tmp_path)))
    result = runner.invoke(app, ["promote", "--model-name", model_name])
    assert result.exit_code == 1
    assert "promotion refused for v2" in result.output
    assert "below the champion's" in result.output  # the reason, with both numbers
    assert "AUC v2" in result.output and "AUC v1" in result.output  # side by side
    assert str(client.get_model_version_by_alias(model_name, "champion").version) == "1"
    assert weak["version"] == "2"

    better = _train(tmp_path, model_name)  # every feature
    result = runner.invoke(app, ["promote", "--model-name", model_name, "--json"])
    assert result.exit_code == 0, result.output
    decision = json.loads(result.stdout)
    assert decision["promoted"] and not decision["forced"] and decision["champion_version"] == "1"
    assert decision["candidate_version"] == better["version"] == "3"
    assert decision["window"]["start"] == better["window"]["test_start"]
    cand, champ = decision["candidate_metrics"]["outcome"]["full"], decision["champion_metrics"]["outcome"]["full"]
    assert cand["auc"] > champ["auc"]
    # the window reproduces the candidate's own test metrics
    trained = next(m for m in better["metrics"] if (m["label"], m["variant"]) == ("outcome", "full"))
    assert cand["auc"] == trained["auc"]
    assert str(client.get_model_version_by_alias(model_name, "champion").version) == "3"

    again = runner.invoke(app, ["promote", "--model-name", model_name])
    assert again.exit_code == 0 and "already the champion" in again.output


@pytest.mark.slow
def test_force_promotes_a_worse_model_and_records_it(tmp_path, fake_loader, model_name):
    fake_loader(make_training_table(6000, seed=0))
    _train(tmp_path, model_name)
    assert runner.invoke(app, ["promote", "--model-name", model_name]).exit_code == 0
    _train(tmp_path, model_name, "--config", str(_weak_config(tmp_path)))
    result = runner.invoke(app, ["promote", "--model-name", model_name, "--version", "2", "--force",
                                 "--reason", "hotfix for a broken field"])
    assert result.exit_code == 0, result.output
    assert "FORCED" in result.output
    mv = MlflowClient().get_model_version(model_name, "2")
    assert mv.tags["forced_promotion"] == "true"
    assert mv.tags["forced_reason"] == "hotfix for a broken field"
    assert mv.tags["promoted_by"] and mv.tags["previous_champion"] == "1"
    run = MlflowClient().get_run(mv.run_id)
    assert run.data.tags["forced_promotion"] == "true"


def test_promote_errors_are_one_clean_line(tmp_path, fake_loader, model_name):
    result = runner.invoke(app, ["promote", "--model-name", model_name])
    assert result.exit_code == 1 and "has no 'challenger'" in result.output
    fake_loader(make_training_table(6000, seed=0))
    _train(tmp_path, model_name)
    result = runner.invoke(app, ["promote", "--model-name", model_name, "--version", "9"])
    assert result.exit_code == 1 and "has no version 9" in result.output
    result = runner.invoke(app, ["promote", "--model-name", model_name, "--data", str(tmp_path / "gone")])
    assert result.exit_code == 1 and "does not exist" in result.output
    assert "Traceback" not in result.output
