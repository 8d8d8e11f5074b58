"""Time-ordered splits: never shuffled, the test window is the most recent data, --until is respected."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import contract as c
from features.schema import LABELS, LEAK_FLAG
from training.config import Splits, load_config
from training.data import (
    SLICES,
    LoadedData,
    censor_labels,
    input_fingerprint,
    label_masks,
    parse_date,
    plan_splits,
)
from training.synthetic import make_training_table
from training.train import run_training

HORIZONS = {"outcome_days": 14, "output_days": 7}


@pytest.fixture(scope="module")
def frame():
    return make_training_table(5000, seed=2).frame


def _times(frame, mask):
    return frame.loc[mask, c.OCCURRED_AT]


def test_slices_are_ordered_in_time_and_test_is_most_recent(frame):
    end = frame[c.OCCURRED_AT].max() + pd.Timedelta(seconds=1)
    plan = plan_splits(frame, Splits(), end, list(LABELS.values()))
    slices = [plan.slice_of_row == k for k in range(4)]
    for earlier, later in zip(slices, slices[1:]):
        assert _times(frame, earlier).max() < _times(frame, later).min()
    assert plan.boundaries[0] < plan.boundaries[1] < plan.boundaries[2]
    labelled = frame[list(LABELS.values())].notna().any(axis=1).to_numpy()
    shares = [s[labelled].mean() for s in slices]
    assert shares == pytest.approx([0.7, 0.1, 0.1, 0.1], abs=0.01)
    assert (plan.slice_of_row[~labelled] == -1).all()


def test_test_days_makes_the_test_window_the_last_days(frame):
    end = pd.Timestamp("2026-01-01", tz="UTC")
    plan = plan_splits(frame, Splits(test_days=45), end, list(LABELS.values()))
    assert plan.test_start == end - pd.Timedelta(days=45)
    assert _times(frame, plan.slice_of_row == 3).min() >= plan.test_start


def test_purge_keeps_labels_that_reach_into_the_test_window_out_of_earlier_slices(frame):
    end = pd.Timestamp("2026-01-01", tz="UTC")
    plan = plan_splits(frame, Splits(), end, list(LABELS.values()))
    masks = label_masks(frame, plan, "outcome", 14, purge_before_test=True)
    for name in ("train", "validation", "calibration"):
        reach = _times(frame, masks[name]) + pd.Timedelta(days=14)
        assert (reach < plan.test_start).all()
    unpurged = label_masks(frame, plan, "outcome", 14, purge_before_test=False)
    assert unpurged["calibration"].sum() > masks["calibration"].sum()
    assert not (masks["train"] & frame[LEAK_FLAG].to_numpy()).any()  # logged-late rows stay out of outcome
    assert not any((masks[a] & masks[b]).any() for a in SLICES for b in SLICES if a < b)


def test_censoring_blanks_labels_whose_horizon_has_not_closed(frame):
    until = pd.Timestamp("2025-07-01", tz="UTC")
    censored = censor_labels(frame, until, HORIZONS)
    for label, col in LABELS.items():
        days = 14 if label == "outcome" else 7
        still = censored[col].notna() & (censored[c.OCCURRED_AT] + pd.Timedelta(days=days) >= until)
        assert not still.any()
    assert censored[LABELS["outcome"]].notna().sum() < frame[LABELS["outcome"]].notna().sum()


def test_until_trains_only_on_what_was_known_before_it():
    t = make_training_table(8000, seed=4)
    until = pd.Timestamp("2025-09-01", tz="UTC")
    result = run_training(LoadedData(t), load_config(), until=until)
    w = result.bundle.manifest.data_window
    assert pd.Timestamp(w["data_end"]) == until and w["until"] == until.isoformat()
    assert pd.Timestamp(w["test_start"]) < until
    n_before = int((t.frame[c.OCCURRED_AT] < until).sum())
    assert result.n_rows == n_before
    # every row used for outcome (any slice) had its horizon closed before --until
    fit = result.fits[("outcome", "full")]
    assert fit.metrics["rows"]["test"] == len(fit.test_index)
    everything = run_training(LoadedData(t), load_config())
    assert everything.fingerprint != result.fingerprint


def test_parse_date_and_fingerprint(frame):
    assert parse_date("2025-03-01") == pd.Timestamp("2025-03-01", tz="UTC")
    assert parse_date("2025-03-01T10:00:00+02:00") == pd.Timestamp("2025-03-01T08:00:00", tz="UTC")
    assert parse_date(None) is None
    with pytest.raises(ValueError, match="--until: 'soon'"):
        parse_date("soon")
    cols = list(LABELS.values())
    fp = input_fingerprint(frame, cols)
    assert fp == input_fingerprint(frame.iloc[::-1], cols)  # order-independent
    changed = frame.copy()
    changed.loc[changed.index[10], LABELS["outcome"]] = 1 - np.nan_to_num(frame[LABELS["outcome"]].iloc[10])
    assert input_fingerprint(changed, cols) != fp


def test_too_few_distinct_times_is_a_clear_error():
    t = make_training_table(50, seed=1)
    frame = t.frame.assign(**{c.OCCURRED_AT: pd.Timestamp("2025-01-01", tz="UTC")})
    with pytest.raises(ValueError, match="too little history"):
        plan_splits(frame, Splits(), pd.Timestamp("2026-01-01", tz="UTC"), list(LABELS.values()))
    spread = t.frame.assign(**{c.OCCURRED_AT: pd.Timestamp("2025-01-01", tz="UTC")
                               + pd.to_timedelta(np.arange(50) // 25, unit="D")})
    with pytest.raises(ValueError, match="too few distinct times"):
        plan_splits(spread, Splits(test_days=1), pd.Timestamp("2025-01-02T12:00", tz="UTC"),
                    list(LABELS.values()))


def test_a_short_history_keeps_outcome_rows_in_every_slice_despite_the_purge():
    t = make_training_table(20_000, seed=5, days=180)
    until = pd.Timestamp("2025-03-01", tz="UTC")  # 59 days of history, 14-day outcome horizon
    result = run_training(LoadedData(t), load_config(), until=until)
    rows = result.fits[("outcome", "full")].metrics["rows"]
    assert min(rows.values()) > 0, rows
    total = sum(rows.values())
    assert rows["calibration"] / total == pytest.approx(0.1, abs=0.03)
    # the purged gap stays in calibration for the 7-day labels
    assert result.fits[("output", "full")].metrics["rows"]["calibration"] > rows["calibration"]
