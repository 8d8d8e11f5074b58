"""Training on a planted signal: useful, calibrated, evaluated on the test window, plotted."""

from __future__ import annotations

import numpy as np
import pytest

from models.metrics import log_loss
from training.plots import write_plots
from training.train import summary_rows


def test_models_learn_the_planted_signal_and_report_every_metric(trained):
    rows = {(r["label"], r["variant"]): r for r in summary_rows(trained)}
    assert set(rows) == {(lab, v) for lab in ("outcome", "output", "negative") for v in ("plan", "full")}
    for r in rows.values():
        for key in ("auc", "pr_auc", "log_loss", "brier", "ece", "lift_top_decile"):
            assert np.isfinite(r[key]), key
        assert r["auc"] > 0.6 and r["lift_top_decile"] > 1.3
    m = trained.fits[("outcome", "full")].metrics
    assert {"call", "email", "meeting"} <= set(m["by_type"])  # types with >= 50 test rows
    assert all(np.isfinite(t["auc"]) for t in m["by_type"].values())


def test_ground_truth_metrics_when_the_truth_is_known(trained):
    truth = trained.fits[("outcome", "plan")].metrics["truth"]
    assert truth["oracle_auc"] > truth["auc_same_rows"] - 0.05  # the truth scores at least about as well
    assert truth["spearman_truth"] > 0.8
    assert truth["ece_truth"] < 0.08


def test_calibration_keeps_or_improves_test_log_loss(trained):
    for fit in trained.fits.values():
        test = fit.metrics["test"]
        assert test["log_loss"] <= test["log_loss_uncalibrated"] + 0.01, (fit.label, fit.variant)
        assert test["log_loss"] == pytest.approx(log_loss(fit.test_y, fit.test_p))


def test_test_window_is_the_most_recent_data(trained, table):
    occurred = table.frame["occurred_at"]
    for fit in trained.fits.values():
        assert occurred.iloc[fit.test_index].min() >= trained.split.test_start


def test_plots_are_written(trained, tmp_path):
    paths = write_plots(trained, tmp_path)
    assert {p.name for p in paths} == {"calibration_curve.png", "feature_importance.png", "shap_summary.png",
                                       "lift_by_activity_type.png"}
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000



def test_a_skipped_labels_calibration_panel_says_why(tmp_path, monkeypatch):
    """An outcome-only history skips output and negative: their panels give the reason, not an empty plot."""
    import warnings
    from types import SimpleNamespace

    import matplotlib.axes

    from training.plots import calibration_plot

    fit = SimpleNamespace(metrics={"calibration_curve": {"mean_p": [0.05, 0.2], "rate": [0.04, 0.22]},
                                   "test": {"ece": 0.012}})
    result = SimpleNamespace(config=SimpleNamespace(labels=["outcome", "output"]), fits={("outcome", "full"): fit},
                             skipped_labels={"output": "output: too little data: 3 positives in the training window"})
    texts = []
    original = matplotlib.axes.Axes.text
    monkeypatch.setattr(matplotlib.axes.Axes, "text",
                        lambda ax, x, y, s, *a, **k: texts.append((ax.get_title(), s)) or original(ax, x, y, s, *a, **k))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warned of an empty legend for the skipped label
        path = calibration_plot(result, tmp_path / "calibration_curve.png")

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [(title, " ".join(s.split())) for title, s in texts] == [
        ("output: not trained", "too little data: 3 positives in the training window")]

def test_the_truth_columns_training_reads_are_all_it_aligns(tmp_path):
    """``train --engine dask`` reads only these ground-truth columns; training must need no other."""
    import pandas as pd

    from training.data import GROUND_TRUTH_FILE, TRAINING_TRUTH_COLUMNS, read_truth
    from training.train import TRUTH_COLUMNS

    assert {col for cols in TRUTH_COLUMNS.values() for col in cols} == set(TRAINING_TRUTH_COLUMNS)
    pd.DataFrame({"activity_id": ["a", "b"], "p_outcome": [0.1, 0.2], "deal_id": ["d", "e"],
                  "quality": [1.0, 2.0]}).to_parquet(tmp_path / GROUND_TRUTH_FILE)
    narrow = read_truth(tmp_path, TRAINING_TRUTH_COLUMNS)
    assert list(narrow.columns) == ["activity_id", "p_outcome"] and narrow["p_outcome"].tolist() == [0.1, 0.2]
    assert list(read_truth(tmp_path).columns) == ["activity_id", "p_outcome", "deal_id", "quality"]
