"""The minimum-data gate refuses tiny data with counts; the leakage probe catches planted leaks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features import contract as c
from features.schema import CATEGORICAL, LABELS, Feature
from training.cli import app
from training.config import Leakage, load_config
from training.data import LoadedData
from training.leakage import late_fill, probe, single_feature_auc
from training.synthetic import LATE_COLUMN, LEAK_COLUMN, make_training_table
from training.train import TrainingRefused, run_training


def test_gate_refuses_tiny_data_with_the_counts():
    t = make_training_table(300, seed=0)
    with pytest.raises(TrainingRefused) as info:
        run_training(LoadedData(t), load_config())
    problems = info.value.problems
    assert len(problems) == 3  # one line per failing label
    outcome = next(p for p in problems if p.startswith("label outcome"))
    n_pos = int(np.nansum(t.frame[LABELS["outcome"]]))
    assert "train has" in outcome and "positives" in outcome and "(needs 50 / 50)" in outcome
    assert n_pos > 0


def test_a_label_without_data_is_skipped_and_named_outcome_still_refuses():
    t = make_training_table(6000, seed=0)
    frame = t.frame.copy()
    frame[LABELS["negative"]] = np.where(frame[LABELS["negative"]].notna(), 0.0, np.nan)  # no positives at all
    result = run_training(LoadedData(dataclasses.replace(t, frame=frame)), load_config())
    assert result.bundle.labels == ("outcome", "output")
    assert list(result.skipped_labels) == ["negative"]
    assert result.skipped_labels["negative"].startswith("label negative: too little data: train has 0 positives")
    assert any(n.startswith("label negative skipped: too little data") for n in result.notes)
    assert result.metrics["skipped_labels"] == result.skipped_labels
    # with skipping off, the gate names only the failing label
    with pytest.raises(TrainingRefused) as info:
        run_training(LoadedData(dataclasses.replace(t, frame=frame)),
                     load_config(**{"gates.skip_labels_without_data": False}))
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith("label negative: too little data: train has 0 positives")
    # the outcome label below the gate refuses the run whatever the setting
    frame[LABELS["outcome"]] = np.where(frame[LABELS["outcome"]].notna(), 0.0, np.nan)
    with pytest.raises(TrainingRefused) as info:
        run_training(LoadedData(dataclasses.replace(t, frame=frame)), load_config())
    assert info.value.problems[0].startswith("label outcome: too little data")


def test_cli_refusal_is_one_line_per_label(tmp_path, fake_loader):
    fake_loader(make_training_table(300, seed=0))
    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path)])
    assert result.exit_code == 1
    assert "Training refused" in result.output
    assert sum(line.strip().startswith("label ") for line in result.output.splitlines()) == 3
    assert "Traceback" not in result.output


def test_probe_catches_a_planted_leak_and_a_late_filled_field():
    t = make_training_table(6000, seed=1, leak=True, late_field=True)
    result = run_training(LoadedData(t), load_config())
    reasons = {f.feature: f.reason for f in result.leakage.flags}
    assert reasons == {LEAK_COLUMN: "single_feature_auc", LATE_COLUMN: "late_filled"}
    assert LEAK_COLUMN not in result.bundle.spec.names and LATE_COLUMN not in result.bundle.spec.names
    assert set(result.bundle.manifest.extra["dropped_features"]) == {LEAK_COLUMN, LATE_COLUMN}
    leak = next(f for f in result.leakage.flags if f.feature == LEAK_COLUMN)
    assert leak.label == "outcome" and leak.value > 0.95
    # honest features are not flagged
    assert all(max(v.values()) < 0.95 for k, v in result.leakage.max_auc.items() if k != LEAK_COLUMN)


def test_allowlist_keeps_a_flagged_feature():
    t = make_training_table(6000, seed=1, leak=True)
    cfg = load_config(**{"leakage.allow": [LEAK_COLUMN]})
    result = run_training(LoadedData(t), cfg)
    assert result.leakage.kept == [LEAK_COLUMN] and result.leakage.dropped == []
    assert LEAK_COLUMN in result.bundle.spec.names


def test_declared_execution_fields_are_exempt_from_late_fill_and_left_out_of_plan():
    t = make_training_table(6000, seed=1, late_field=True)
    loaded = LoadedData(t, execution_time_fields={"activities.next_step"})
    result = run_training(loaded, load_config())
    assert result.leakage.flags == []
    assert result.bundle.spec[LATE_COLUMN].timing == "execution"
    assert LATE_COLUMN in result.bundle.manifest.extra["execution_features"]


def test_single_feature_auc_rules():
    rng = np.random.default_rng(0)
    y = (rng.uniform(size=4000) < 0.3).astype(float)
    ids = pd.Series([f"id-{i}" for i in range(4000)], dtype="string")  # one row per value
    assert single_feature_auc(ids, y, CATEGORICAL) < 0.6  # out-of-fold: an id is not a leak
    copy = pd.Series(np.where(y > 0, "won", "open"), dtype="string")
    assert single_feature_auc(copy, y, CATEGORICAL) > 0.99
    only_when_positive = pd.Series(np.where(y > 0, 1.0, np.nan))  # the leak is in the missingness
    assert single_feature_auc(only_when_positive, y, "numeric") > 0.99
    assert single_feature_auc(pd.Series(-np.arange(4000.0) * y), y, "numeric") > 0.95  # either direction


def test_late_fill_measures_recent_vs_earlier_fill_rates():
    t = make_training_table(3000, seed=1, late_field=True)
    before, late, n_recent = late_fill(t.frame, LATE_COLUMN, t.data_end, 14)
    assert before > 0.9 and late == 0.0 and n_recent > 50
    report = probe(t.frame, [Feature(LATE_COLUMN, "custom", CATEGORICAL, "plan", "")], {}, Leakage(), t.data_end)
    assert [f.reason for f in report.flags] == ["late_filled"]
    not_activity = Feature("cf_deals_next_step", "custom", CATEGORICAL, "plan", "")
    frame = t.frame.rename(columns={LATE_COLUMN: "cf_deals_next_step"})
    assert probe(frame, [not_activity], {}, Leakage(), t.data_end).flags == []
    assert c.ACTIVITIES == "activities"
