"""The ranking model (``models.ranking``) and ``/rank`` ordering by it, without BentoML."""

from __future__ import annotations

import copy
import json
import re
import shutil

import numpy as np
import pytest

from features import contract as c
from features.build import build_serving_columns
from models.bundle import BundleError, ModelBundle
from models.ranking import (
    RANKING_DIR,
    RankingSettings,
    candidate_feature_names,
    fit_ranking_model,
    interaction_groups,
    lightgbm_threads,
    load_ranking,
)
from serving.model_store import ModelLoadError, load_bundle_dir
from serving.schemas import RANKED_BY_P_OUTCOME, RANKED_BY_RANKING, RankRequest
from serving.scorer import Scorer
from tests.serving.helpers import rank_body

FAST = RankingSettings(num_boost_round=60, early_stopping_rounds=10, min_data_in_leaf=20)


@pytest.fixture(scope="module")
def ranked_bundle(bundle_dir, dataset, tmp_path_factory):
    """The session bundle plus a ranking model fitted on the same dataset."""
    out = tmp_path_factory.mktemp("ranked") / "bundle"
    shutil.copytree(bundle_dir, out)
    spec = ModelBundle.load(out).spec
    fit_ranking_model(dataset, spec, settings=FAST).save(out)
    return out


@pytest.fixture(scope="module")
def ranked_model(ranked_bundle):
    return load_bundle_dir(ranked_bundle)


@pytest.fixture(scope="module")
def model_without_ranking(bundle_dir):
    model = load_bundle_dir(bundle_dir)
    assert model.ranking is None
    return model


def rank(scorer: Scorer, body: dict):
    return scorer.rank(RankRequest.model_validate_json(json.dumps(body)))


def test_candidate_features_are_what_differs_between_candidates(ranked_model):
    spec = ranked_model.bundle.spec
    cand = set(candidate_feature_names(spec))
    assert {c.TYPE, c.PERSONALIZATION, c.IS_AUTOMATED, c.SENIORITY, c.DEPARTMENT, "hour_local",
            "touches_contact_7d", "outputs_contact_30d", "days_since_touch_contact"} <= cand
    assert not cand & {c.AMOUNT, "touches_deal_7d", "outputs_deal_30d", "rep_outcome_rate", c.INDUSTRY,
                       c.STAGE_ORDER, "cf_deals_deal_tier"}
    first, second = (set(g) for g in interaction_groups(spec))
    stage = {spec.names.index(c.STAGE_ORDER), spec.names.index("days_in_stage")}
    assert first & second == stage and first | second == set(range(len(spec)))
    assert {spec.names.index(n) for n in cand} <= first


def test_ranking_model_round_trips_and_refuses_another_spec(ranked_bundle, ranked_model, dataset, tmp_path):
    model = ranked_model.ranking
    assert model is not None and model.metrics["train_positives"] > 0
    items = [{"activity": {c.TYPE: t, c.OCCURRED_AT: "2026-03-02T15:00:00Z"}} for t in ("call", "email", "meeting")]
    matrix, _ = ranked_model.bundle.spec.encode_columns(build_serving_columns(items, ranked_model.context))
    again = load_ranking(ranked_bundle, ranked_model.bundle.spec)
    np.testing.assert_array_equal(again.score(matrix), model.score(matrix))
    assert again.settings == FAST
    # a ranking model of other features is refused, naming the directory
    other = tmp_path / "other"
    shutil.copytree(ranked_bundle, other)
    meta = other / RANKING_DIR / "ranking.json"
    values = json.loads(meta.read_text())
    values["feature_names"] = values["feature_names"][:-1]
    meta.write_text(json.dumps(values))
    with pytest.raises(BundleError, match="other features"):
        load_ranking(other, ranked_model.bundle.spec)
    with pytest.raises(ModelLoadError, match=re.escape(str(other / RANKING_DIR))):
        load_bundle_dir(other)
    (other / RANKING_DIR / "booster.txt").write_text("not a model")
    with pytest.raises(ModelLoadError, match="unreadable ranking model"):
        load_bundle_dir(other)
    assert ranked_model.describe()["ranking"]["horizon_days"] == 1


def test_fit_refuses_too_little_data(dataset, ranked_model):
    with pytest.raises(ValueError, match="too little data to fit the ranking model"):
        fit_ranking_model(dataset, ranked_model.bundle.spec, until="2026-01-08T00:00:00Z", settings=FAST)


def test_rank_orders_by_rank_score_and_reports_the_same_p_outcome(ranked_model, model_without_ranking, score_item):
    body = rank_body(score_item, top_k=500)
    with_ranking = rank(Scorer(ranked_model), body)
    without = rank(Scorer(model_without_ranking), body)
    assert with_ranking.ranked_by == RANKED_BY_RANKING and without.ranked_by == RANKED_BY_P_OUTCOME
    scores = [r.rank_score for r in with_ranking.ranked]
    assert scores == sorted(scores, reverse=True) and all(0.0 < s < 1.0 for s in scores)
    assert all(r.rank_score is None for r in without.ranked)
    p = [r.p_outcome for r in without.ranked]
    assert p == sorted(p, reverse=True)

    def key(r):
        a = r.activity
        return a[c.TYPE], a.get(c.CONTACT_ID), bool(a.get(c.IS_AUTOMATED))

    # p_outcome is still the plan model's, whatever the order
    assert {key(r): r.p_outcome for r in with_ranking.ranked} == {key(r): r.p_outcome for r in without.ranked}
    assert [key(r) for r in with_ranking.ranked] != [key(r) for r in without.ranked]


def test_candidate_differences_do_not_depend_on_the_deal_context(ranked_model, score_item):
    """Interaction constraints: the deal's context shifts every candidate alike, so it never reorders them."""
    scorer = Scorer(ranked_model)
    candidates = [{"type": "meeting"}, {"type": "email", "personalization": 0.1, "is_automated": True},
                  {"type": "call", "personalization": 0.9}, {"type": "none"}]
    base = rank_body(score_item, candidates, top_k=4)
    changed = copy.deepcopy(base)
    changed["deal"][c.AMOUNT] = 10 * (changed["deal"].get(c.AMOUNT) or 1000.0)
    changed["account"][c.EMPLOYEES] = 7
    changed["history"][c.ACTIVITIES] = [r for r in changed["history"][c.ACTIVITIES]
                                        if r.get(c.CONTACT_ID) == score_item["contact"][c.CONTACT_ID]]

    def logits(body):
        out = {r.activity[c.TYPE]: r.rank_score for r in rank(scorer, body).ranked}
        p = np.array([out[k["type"]] for k in candidates])
        return np.log(p / (1 - p))

    a, b = logits(base), logits(changed)
    assert not np.allclose(a, b), "the context change should move the scores"
    np.testing.assert_allclose(a - a[0], b - b[0], atol=1e-9)


def test_proposed_wait_and_automated_candidates_look_like_crm_rows(ranked_model, score_item):
    ranked = rank(Scorer(ranked_model), rank_body(score_item, top_k=500)).ranked
    wait = [r.activity for r in ranked if r.activity[c.TYPE] == "none"]
    assert len(wait) == 1 and c.DIRECTION not in wait[0] and c.PERSONALIZATION not in wait[0]
    assert wait[0][c.IS_AUTOMATED] is False
    automated = [r.activity for r in ranked if r.activity.get(c.IS_AUTOMATED)]
    assert automated and all(a[c.SEQUENCE_STEP] == 1 and a[c.PERSONALIZATION] == 0.1 for a in automated)
    assert all(r.activity[c.DIRECTION] == "outbound" for r in ranked if r.activity[c.TYPE] != "none")



def test_threads_follow_the_caller_only_on_large_fits():
    assert lightgbm_threads(0, 2, 60_000, 50_000) == 2
    assert lightgbm_threads(0, 2, 49_999, 50_000) == 1  # small: one thread whatever the caller runs
    assert lightgbm_threads(0, 0, 60_000, 50_000) == 1
    assert lightgbm_threads(3, 2, 10, 50_000) == 3  # an explicit setting wins
    assert RankingSettings().num_threads == 0  # automatic by default
