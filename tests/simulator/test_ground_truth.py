"""Ground-truth files: the truth function replays every activity, and the label oracles mean what they say."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from features import contract as c
from simulator import generate
from simulator import truth as tr
from simulator.ground_truth import GroundTruth


@pytest.fixture(scope="module")
def gt(sim_dir) -> GroundTruth:
    return GroundTruth.load(sim_dir)


def test_ground_truth_files_are_written_beside_the_tables(sim_dir):
    truth = pd.read_parquet(sim_dir / generate.GROUND_TRUTH_FILE)
    assert {"activity_id", "p_outcome", "p_output", "p_negative", "p_outcome_label", "p_outcome_label_ex_ante",
            "label_outcome", "quality", "rep_skill"} <= set(truth.columns)
    assert (sim_dir / generate.GROUND_TRUTH_DEALS_FILE).exists() and (sim_dir / generate.GROUND_TRUTH_REPS_FILE).exists()
    meta = json.loads((sim_dir / generate.GROUND_TRUTH_META_FILE).read_text())
    assert meta["seed"] == 11 and meta["n_activities"] == len(truth)
    assert tr.TruthParams.from_dict(meta["truth_params"]) == tr.TruthParams()


def test_the_truth_function_replays_every_activity_from_the_saved_files(gt):
    acts = gt.dataset[c.ACTIVITIES]
    rng = np.random.default_rng(0)
    # The extract starts after the simulation's warm-up: from 30 days in, every window the
    # truth reads lies inside the data. A random sample, plus contacts touched or replying.
    inside = (acts[c.OCCURRED_AT] >= pd.Timestamp(gt.meta["start"], tz="UTC") + pd.Timedelta(days=30)).to_numpy()
    busy = np.flatnonzero(inside & ((gt.activities["touches_contact_7d"] >= 3).to_numpy()
                                    | (gt.activities["outputs_contact_30d"] >= 1).to_numpy()))
    rows = np.concatenate([rng.choice(np.flatnonzero(inside), 150, replace=False), rng.choice(busy, 100, replace=False)])
    for i in rows:
        act = acts.iloc[i]
        state = gt.state(act[c.DEAL_ID], act[c.OCCURRED_AT])
        truth = gt.activities.iloc[i]
        assert state.stage_order == truth[c.STAGE_ORDER]
        assert min(state.touches_7d[act[c.CONTACT_ID]], tr.TOUCH_CAP) == truth["touches_contact_7d"]
        assert min(state.outputs_30d[act[c.CONTACT_ID]], tr.OUTPUT_CAP) == truth["outputs_contact_30d"]
        p = tr.true_outcome_probability(state, gt.candidate_for(act[c.ACTIVITY_ID]), gt.params)
        assert p == pytest.approx(truth["p_outcome"], rel=1e-12), act[c.ACTIVITY_ID]


def test_ranking_candidates_in_a_saved_state(gt):
    acts = gt.dataset[c.ACTIVITIES]
    act = acts[(gt.activities[c.STAGE_ORDER] == 3).to_numpy()].iloc[0]
    state = gt.state(act[c.DEAL_ID], act[c.OCCURRED_AT])
    contacts = list(state.touches_7d)
    cands = [gt.candidate(kind, who, personalization=0.8) for kind in ("call", "email", "workshop", "none")
             for who in contacts]
    scores = tr.true_outcome_probabilities(state, cands, gt.params)
    assert scores.shape == (len(cands),) and np.all((scores > 0) & (scores < 1))
    best = cands[int(np.argmax(scores))]
    assert best.type != "none"
    assert gt.outcome_probability(act[c.DEAL_ID], act[c.OCCURRED_AT], best) == pytest.approx(scores.max())
    with pytest.raises(ValueError, match="does not exist yet"):
        gt.state(act[c.DEAL_ID], "2000-01-01")


def test_label_probabilities_order_and_calibration(sim):
    truth = sim.ground_truth
    labelled = truth["label_outcome"].notna()
    y = truth["label_outcome"][labelled].to_numpy()
    own = truth["p_outcome"][labelled].to_numpy()
    realized = truth["p_outcome_label"][labelled].to_numpy()
    assert np.all(realized >= own - 1e-12)  # the activity's own chance is part of the label's
    assert realized.mean() == pytest.approx(y.mean(), rel=0.15)
    sampled = truth["p_outcome_label_ex_ante"].notna().to_numpy()
    assert 0.4 < sampled.mean() < 0.5  # half of the activities whose label is known
    ex = truth["p_outcome_label_ex_ante"][labelled & sampled].to_numpy()
    ys = truth["label_outcome"][labelled & sampled].to_numpy()
    assert ex.mean() == pytest.approx(ys.mean(), rel=0.1)
    top, bottom = ex >= np.quantile(ex, 0.9), ex <= np.quantile(ex, 0.1)
    assert ys[top].mean() > 10 * ys[bottom].mean()
    # the ex-ante oracle knows less than the realized one and more than the activity alone
    from sklearn.metrics import roc_auc_score

    auc = {name: roc_auc_score(ys, truth[name][labelled & sampled])
           for name in ("p_outcome", "p_outcome_label_ex_ante", "p_outcome_label")}
    assert auc["p_outcome"] < auc["p_outcome_label_ex_ante"] < auc["p_outcome_label"]
    assert truth["p_outcome_label_ex_ante"][~labelled].isna().all()  # censored: no oracle either
