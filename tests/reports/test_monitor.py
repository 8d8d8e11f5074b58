"""monitor: drift, realized quality on closed labels, and a verdict that flips when drift is injected."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import contract as c
from features.schema import LABELS, LEAK_FLAG
from reports.monitor import KEEP, RECALIBRATE, RETRAIN, MonitorError, monitor_frame, psi
from training.config import load_config
from training.data import LoadedData
from training.train import run_training
from tests.training.drift import drifting_table

pytestmark = pytest.mark.slow
CFG = load_config(**{"labels": ["outcome"], "refit.enabled": False})


def _setup(**drift):
    """A model trained on the first 300 days; the monitor looks at days 300-466."""
    t = drifting_table(n=14_000, days=480, **drift)
    start = t.frame[c.OCCURRED_AT].iloc[0]
    until = start + pd.Timedelta(days=300)
    result = run_training(LoadedData(t), CFG, until=until)
    return result.bundle, t.frame, until, pd.Timestamp(t.data_end)


def test_a_stable_world_is_kept():
    bundle, frame, since, end = _setup(flip_day=10_000)
    doc = monitor_frame(bundle, frame, since, CFG, end)
    assert doc["verdict"] == KEEP, doc["reasons"]
    assert doc["realized"]["n"] > 1000 and doc["realized"]["auc"] > 0.6
    assert all(f["status"] == "stable" for f in doc["features"])
    assert doc["weeks"] and sum(w["activities"] for w in doc["weeks"]) == doc["window"]["recent_rows"]


def test_the_verdict_flips_to_retrain_when_the_relation_flips():
    bundle, frame, since, end = _setup(flip_day=300)
    doc = monitor_frame(bundle, frame, since, CFG, end)
    assert doc["verdict"] == RETRAIN
    assert any("realized AUC" in r for r in doc["reasons"])


def test_the_verdict_asks_for_recalibration_when_only_the_base_rate_moves():
    bundle, frame, since, end = _setup(flip_day=10_000, shift_day=300, shift=1.2)
    doc = monitor_frame(bundle, frame, since, CFG, end)
    assert doc["verdict"] == RECALIBRATE, doc["reasons"]
    assert doc["realized"]["ece"] > 0.03


def test_feature_drift_and_unseen_values_are_named():
    bundle, frame, since, end = _setup(flip_day=10_000)
    late = (frame[c.OCCURRED_AT] >= since).to_numpy()
    drifted = frame.copy()
    drifted.loc[late, "touches_contact_7d"] = drifted.loc[late, "touches_contact_7d"] + 4
    drifted[c.TYPE] = drifted[c.TYPE].astype("object")
    drifted.loc[late & (np.arange(len(frame)) % 3 == 0), c.TYPE] = "video_call"
    drifted[c.TYPE] = drifted[c.TYPE].astype("string")
    doc = monitor_frame(bundle, drifted, since, CFG, end)
    by_name = {f["feature"]: f for f in doc["features"]}
    assert by_name["touches_contact_7d"]["status"] == "shifted" and by_name["touches_contact_7d"]["differs"]
    assert by_name[c.TYPE]["status"] == "shifted"
    assert by_name["noise"]["status"] == "stable"
    assert doc["unseen"].get(c.TYPE, 0) > 1000
    assert doc["verdict"] == RETRAIN and any("features shifted" in r for r in doc["reasons"])


def test_served_predictions_are_read_from_the_log(tmp_path):
    from serving.prediction_log import PredictionLog, read_predictions

    bundle, frame, since, end = _setup(flip_day=10_000)
    recent = frame[(frame[c.OCCURRED_AT] >= since).to_numpy()].head(800)
    p = bundle.predict_proba(bundle.encode(recent), "full")["outcome"]
    log = PredictionLog(tmp_path)
    for aid, pv in zip(recent[c.ACTIVITY_ID], p, strict=True):
        log.append({"endpoint": "score", "model": {"name": "m", "version": "1"},
                    "items": [{"activity_id": str(aid), "p_outcome": float(pv)}]})
    log.close()
    doc = monitor_frame(bundle, frame, since, CFG, end, read_predictions(tmp_path))
    served = doc["served"]
    assert served["records"] == 800 and served["versions"] == ["1"]
    closed = recent[LABELS["outcome"]].notna() & ~recent[LEAK_FLAG].astype(bool)  # logged late: left out
    assert served["closed"] == int(closed.sum())
    assert 0.55 < served["realized_auc"] < 1.0


def test_no_recent_rows_is_a_clear_error():
    bundle, frame, since, end = _setup(flip_day=10_000)
    with pytest.raises(MonitorError, match="no activity at or after --since"):
        monitor_frame(bundle, frame, end + pd.Timedelta(days=1), CFG, end)


def test_psi_is_zero_for_equal_and_large_for_moved_histograms():
    a = np.array([100.0, 100.0, 100.0, 100.0])
    assert psi(a, a) == pytest.approx(0.0)
    assert psi(a, np.array([10.0, 40.0, 150.0, 200.0])) > 0.25
