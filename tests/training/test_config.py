"""Config: frozen dataclasses from YAML, unknown keys and wrong types fail loudly, overrides win."""

from __future__ import annotations

import dataclasses

import pytest
from typer.testing import CliRunner

from training.cli import app
from training.config import DEFAULT_CONFIG, ConfigError, TrainConfig, load_config


def test_default_yaml_matches_the_dataclass_defaults():
    assert load_config() == TrainConfig()
    assert load_config(DEFAULT_CONFIG).registered_model == "activity-outcome"


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        load_config().lightgbm.learning_rate = 0.3  # type: ignore[misc]


def test_unknown_key_names_the_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("splits:\n  tset: 0.2\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'splits\.tset'"):
        load_config(p)
    assert issubclass(ConfigError, TypeError)
    p.write_text("lightgbm_params: {}\n")
    with pytest.raises(ConfigError, match="'lightgbm_params'"):
        load_config(p)


def test_wrong_types_and_inconsistent_values(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("horizons:\n  outcome_days: fourteen\n")
    with pytest.raises(ConfigError, match="horizons.outcome_days.*integer"):
        load_config(p)
    p.write_text("splits:\n  train: 0.9\n")
    with pytest.raises(ConfigError, match="sum to 1"):
        load_config(p)
    p.write_text("labels: [outcome, revenue]\n")
    with pytest.raises(ConfigError, match="revenue"):
        load_config(p)
    p.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(p)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_overrides_replace_single_fields(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("lightgbm:\n  num_leaves: 15\nleakage:\n  allow: [cf_activities_x]\n")
    cfg = load_config(p, **{"lightgbm.seed": 11, "registered_model": "other", "experiment": None})
    assert cfg.lightgbm.num_leaves == 15 and cfg.lightgbm.seed == 11
    assert cfg.lightgbm.learning_rate == TrainConfig().lightgbm.learning_rate
    assert cfg.registered_model == "other" and cfg.experiment == "activity-scorer"
    assert cfg.leakage.allow == ("cf_activities_x",)
    assert cfg.flat()["lightgbm.num_leaves"] == 15


def test_cli_reports_a_bad_config_in_one_line(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("promotion:\n  auc_tolerence: 0.01\n")
    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path), "--config", str(p)])
    assert result.exit_code == 1
    assert "unknown config key 'promotion.auc_tolerence'" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("text, message", [
    ("splits:\n  test_days: '30'\n", "splits.test_days expects a positive whole number of days or null, got '30'"),
    ("splits:\n  test_days: 0\n", "splits.test_days expects a positive whole number"),
    ("promotion:\n  window_days: 7.5\n", "promotion.window_days expects a positive whole number of days or null, got 7.5"),
    ("promotion:\n  window_days: -3\n", "promotion.window_days expects a positive whole number"),
])
def test_nullable_day_counts_are_checked_not_passed_on(tmp_path, text, message):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        load_config(p)


def test_a_directory_given_as_config_is_one_red_line(tmp_path):
    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path), "--config", str(tmp_path)])
    assert result.exit_code == 1
    assert "cannot read the config file" in result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)  # an exit, not an uncaught error
