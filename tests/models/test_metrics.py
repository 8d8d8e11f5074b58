"""Metrics agree with scikit-learn's reference implementations and behave at the edges."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from models.metrics import (
    binary_metrics,
    brier,
    ece_against_truth,
    expected_calibration_error,
    log_loss,
    pr_auc,
    roc_auc,
    spearman,
    top_decile_lift,
    truth_metrics,
)


@pytest.fixture(scope="module")
def scored():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=5000).round(2)  # ties on purpose
    y = (rng.uniform(size=5000) < p).astype(float)
    return y, p


def test_against_sklearn(scored):
    y, p = scored
    assert roc_auc(y, p) == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
    assert pr_auc(y, p) == pytest.approx(skm.average_precision_score(y, p), abs=1e-12)
    assert log_loss(y, np.clip(p, 0.01, 0.99)) == pytest.approx(skm.log_loss(y, np.clip(p, 0.01, 0.99)), abs=1e-12)
    assert brier(y, p) == pytest.approx(skm.brier_score_loss(y, p), abs=1e-12)


def test_ece_is_small_for_calibrated_and_large_for_shifted_scores(scored):
    y, p = scored
    assert expected_calibration_error(y, p) < 0.02
    assert expected_calibration_error(y, np.clip(p + 0.2, 0, 1)) > 0.15
    assert ece_against_truth(p, p) == 0.0


def test_lift_and_undefined_cases():
    y = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 1.0])
    p = np.array([0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.2])
    assert top_decile_lift(y, p) == pytest.approx(1 / 0.2)
    assert math.isnan(roc_auc(np.ones(5), np.arange(5.0)))
    assert math.isnan(top_decile_lift(np.zeros(5), np.arange(5.0)))
    assert spearman(np.arange(10.0), np.arange(10.0) ** 3) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="differ in length"):
        roc_auc(np.ones(3), np.ones(4))


def test_binary_and_truth_metrics(scored):
    y, p = scored
    m = binary_metrics(y, p)
    assert m["n"] == 5000 and 0 < m["base_rate"] < 1 and m["lift_top_decile"] > 1.5
    t = truth_metrics(y, p, p)
    assert t["oracle_auc"] == pytest.approx(t["auc_same_rows"])
    assert t["spearman_truth"] == pytest.approx(1.0)
