"""Calibrators: monotone, clipped into (0, 1), stored as plain numbers, and they help on held-out data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.calibration import (
    EPS,
    ISOTONIC,
    SIGMOID,
    IsotonicCalibrator,
    SigmoidCalibrator,
    calibrator_from_dict,
    choose_method,
    fit_calibrator,
    fit_isotonic,
    fit_sigmoid,
)
from models.metrics import log_loss


def draw(n: int, seed: int, scale: float = 3.0, shift: float = 0.0):
    """Labels from true logits z; the raw score is an overconfident, shifted version of z."""
    rng = np.random.default_rng(seed)
    z = rng.normal(-1.0, 1.0, size=n)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-z))).astype(float)
    return scale * z + shift, y, z


@pytest.mark.parametrize("method", [ISOTONIC, SIGMOID])
def test_calibration_improves_held_out_log_loss_of_a_miscalibrated_score(method):
    raw_cal, y_cal, _ = draw(20_000, seed=1)
    raw_test, y_test, _ = draw(20_000, seed=2)
    cal = fit_isotonic(raw_cal, y_cal) if method == ISOTONIC else fit_sigmoid(raw_cal, y_cal)
    before = log_loss(y_test, 1 / (1 + np.exp(-raw_test)))
    after = log_loss(y_test, cal.transform(raw_test))
    assert after < before - 0.02


@pytest.mark.parametrize("method", [ISOTONIC, SIGMOID])
def test_calibration_keeps_log_loss_of_an_already_calibrated_score(method):
    raw_cal, y_cal, _ = draw(20_000, seed=3, scale=1.0)
    raw_test, y_test, _ = draw(20_000, seed=4, scale=1.0)
    cal = fit_isotonic(raw_cal, y_cal) if method == ISOTONIC else fit_sigmoid(raw_cal, y_cal)
    before = log_loss(y_test, 1 / (1 + np.exp(-raw_test)))
    assert log_loss(y_test, cal.transform(raw_test)) <= before + 0.003


def test_sigmoid_recovers_the_true_map():
    raw, y, _ = draw(50_000, seed=5, scale=2.0, shift=1.0)  # true map: z = (raw - 1) / 2
    cal = fit_sigmoid(raw, y)
    assert cal.a == pytest.approx(0.5, abs=0.03)
    assert cal.b == pytest.approx(-0.5, abs=0.06)


def test_isotonic_is_monotone_clipped_and_strictly_increasing_inside():
    raw, y, _ = draw(5000, seed=6)
    cal = fit_isotonic(raw, y)
    grid = np.linspace(raw.min() - 5, raw.max() + 5, 2000)
    p = cal.transform(grid)
    assert np.all(np.diff(p) >= 0)
    assert p.min() >= EPS and p.max() <= 1 - EPS
    inside = (grid > cal.x[0]) & (grid < cal.x[-1])
    assert np.all(np.diff(p[inside]) > 0)  # centred isotonic: no ties between the end knots


def test_isotonic_clips_a_fit_that_reaches_zero_and_one():
    raw = np.arange(200, dtype=float)
    y = (raw >= 100).astype(float)  # perfectly separable: fitted values 0 and 1
    p = fit_isotonic(raw, y).transform(raw)
    assert p.min() == EPS and p.max() == 1 - EPS
    assert np.isfinite(log_loss(y, p))


def test_round_trip_through_json_gives_identical_outputs():
    raw, y, _ = draw(3000, seed=7)
    for cal in (fit_isotonic(raw, y), fit_sigmoid(raw, y)):
        again = calibrator_from_dict(json.loads(json.dumps(cal.to_dict())))
        assert np.array_equal(cal.transform(raw), again.transform(raw))


def test_choose_method_by_slice_size():
    assert choose_method(5000, 60, 4940, min_rows=1000, min_positives=50) == ISOTONIC
    assert choose_method(999, 400, 599, min_rows=1000, min_positives=50) == SIGMOID
    assert choose_method(5000, 49, 4951, min_rows=1000, min_positives=50) == SIGMOID
    raw, y, _ = draw(3000, seed=8)
    assert fit_calibrator(raw, y).method == SIGMOID
    assert fit_calibrator(raw, y, min_rows=1000, min_positives=50).method == ISOTONIC


def test_bad_stored_calibrators_are_refused():
    with pytest.raises(ValueError, match="unknown calibration method"):
        calibrator_from_dict({"method": "beta"})
    with pytest.raises(ValueError, match="increasing"):
        IsotonicCalibrator((1.0, 0.0), (0.1, 0.2))
    assert SigmoidCalibrator(1.0, 0.0).transform(np.array([0.0]))[0] == pytest.approx(0.5)
