"""Refit for deployment (issue 15): the deployed boosters learn from every labelled row, the gate stays fair."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import contract as c
from features.schema import LABELS
from models.bundle import ModelBundle
from models.metrics import log_loss, roc_auc
from training.config import load_config
from training.data import LoadedData
from training.train import EVALUATION_DIR, evaluation_bundle_of, run_training, save_bundle
from tests.training.drift import drifting_table

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def drift_run():
    t = drifting_table()
    start = t.frame[c.OCCURRED_AT].iloc[0]
    until = start + pd.Timedelta(days=365)
    result = run_training(LoadedData(t), load_config(**{"labels": ["outcome"]}), until=until)
    future = t.frame[(t.frame[c.OCCURRED_AT] >= until).to_numpy(dtype=bool)]
    future = future[future[LABELS["outcome"]].notna()]
    return result, future


def _scores(bundle: ModelBundle, frame: pd.DataFrame) -> np.ndarray:
    return bundle.predict_proba(bundle.encode(frame), "plan")["outcome"]


def test_the_refit_learns_the_recent_relation_and_scores_the_future_better(drift_run):
    result, future = drift_run
    y = future[LABELS["outcome"]].to_numpy(dtype=np.float64)
    deployed, evaluation = result.bundle, result.evaluation_bundle
    assert evaluation is not None and deployed.manifest.extra["role"] == "deployed"
    p_dep, p_eval = _scores(deployed, future), _scores(evaluation, future)
    auc_dep, auc_eval = roc_auc(y, p_dep), roc_auc(y, p_eval)
    # the slope flipped on day 200: the evaluation booster (first 70%) mostly saw the old world
    assert auc_dep > auc_eval + 0.05, (auc_dep, auc_eval)
    assert log_loss(y, p_dep) < log_loss(y, p_eval)
    d = result.metrics["deployed"]["outcome/plan"]
    n_labelled = sum(result.counts["outcome"][s]["positives"] + result.counts["outcome"][s]["negatives"]
                     for s in ("train", "validation", "calibration", "test"))
    assert d["rows"] >= n_labelled and d["trees"] > d["evaluation_trees"]
    assert d["calibration_rows"] == result.counts["outcome"]["test"]["positives"] + \
        result.counts["outcome"]["test"]["negatives"]
    # the cross-fitted booster (everything before the test window) beats the evaluation booster there
    assert d["crossfit_auc"] > d["evaluation_auc"]
    assert any(n.startswith("deployed: boosters refit on all") for n in result.notes)


def test_saved_bundle_keeps_the_evaluation_models_and_the_gate_reads_them(drift_run, tmp_path):
    result, future = drift_run
    path = save_bundle(result, tmp_path / "bundle")
    assert (path / EVALUATION_DIR / "manifest.json").is_file()
    loaded = ModelBundle.load(path)
    gate_bundle = evaluation_bundle_of(path)
    assert gate_bundle.manifest.extra["role"] == "evaluation"
    assert np.allclose(_scores(loaded, future), _scores(result.bundle, future))
    assert np.allclose(_scores(gate_bundle, future), _scores(result.evaluation_bundle, future))
    # a bundle without an evaluation directory (refit off, or older) is its own evaluation
    plain = tmp_path / "plain"
    result.evaluation_bundle.save(plain)
    assert evaluation_bundle_of(plain).manifest.extra["role"] == "evaluation"


def test_refit_off_registers_the_evaluation_models():
    t = drifting_table(n=6000, days=300, flip_day=400)
    result = run_training(LoadedData(t), load_config(**{"labels": ["outcome"], "refit.enabled": False}))
    assert result.evaluation_bundle is None and result.metrics["deployed"] == {"refit": False}
    assert result.bundle.boosters[("outcome", "plan")] is result.fits[("outcome", "plan")].booster


def test_refit_before_the_newest_labels_only_deploys_the_cross_fitted_booster():
    t = drifting_table(n=6000, days=300, flip_day=400)
    result = run_training(LoadedData(t), load_config(**{"labels": ["outcome"], "refit.all_rows": False}))
    d = result.metrics["deployed"]["outcome/plan"]
    assert d["rows"] == d["crossfit_rows"] < d["crossfit_rows"] + d["calibration_rows"]
    assert result.bundle.boosters[("outcome", "plan")] is not result.fits[("outcome", "plan")].booster
