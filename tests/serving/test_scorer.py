"""Rung 1: the scorer (features, encoding, probabilities, explanations, ranking) without BentoML."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from features import contract as c
from features.build import build_serving_columns, build_serving_frame, build_training_frame, rep_context, request_items
from serving.candidates import AUTOMATABLE_TYPES, NONE_TYPE, learned_types
from serving.errors import InvalidRequest
from serving.explain import format_value, sentence, value_text
from serving.model_store import LoadedModel, load_bundle_dir
from serving.schemas import RankRequest, ScoreRequest
from serving.scorer import Scorer
from tests.serving.helpers import busy_activity_ids, rank_body, with_late_activities


@pytest.fixture(scope="module")
def model(bundle_dir) -> LoadedModel:
    return load_bundle_dir(bundle_dir)


@pytest.fixture(scope="module")
def scorer(model) -> Scorer:
    return Scorer(model)


def score(scorer: Scorer, items: list[dict], explain: bool = False):
    return scorer.score(ScoreRequest.model_validate_json(json.dumps({"items": items, "explain": explain})))


def test_bundle_has_serving_context(model):
    assert model.has_context and model.context.reps, "training should store rep track records in the bundle"


def test_dict_encoding_equals_frame_encoding(model, dataset):
    items = request_items(dataset, busy_activity_ids(dataset, 6))
    items[0]["activity"][c.TYPE] = "carrier_pigeon"
    items[1]["activity"].pop(c.TYPE)
    fast, unseen_fast = model.bundle.spec.encode_columns(build_serving_columns(items, model.context))
    slow, unseen_slow = model.bundle.spec.encode_report(build_serving_frame(items, model.context))
    np.testing.assert_array_equal(fast, slow)
    assert unseen_fast == unseen_slow == {c.TYPE: 1}


def test_scores_equal_the_batch_path_on_the_same_activities(model, dataset):
    """Service path (request items) == training path (the whole dataset), to the last bit."""
    extended, late_ids = with_late_activities(dataset)
    table = build_training_frame(extended)
    first = extended[c.ACTIVITIES].set_index(c.ACTIVITY_ID).loc[late_ids[0], c.OCCURRED_AT]
    context = rep_context(extended, table, at=first, custom_fields=model.context.custom_fields)
    scorer = Scorer(LoadedModel(model.bundle, context, model.path, "test", True))
    expected = model.bundle.predict_frame(table.frame.set_index(c.ACTIVITY_ID).loc[late_ids], "full")
    results = score(scorer, request_items(extended, late_ids)).results
    got = np.array([[r.p_outcome, r.p_output, r.p_negative] for r in results])
    np.testing.assert_array_equal(got, expected[["p_outcome", "p_output", "p_negative"]].to_numpy())
    assert [r.activity_id for r in results] == late_ids


def test_factors_are_the_largest_contributions_with_value_unit_and_text(scorer, model, score_item):
    result = score(scorer, [score_item], explain=True).results[0]
    request = ScoreRequest.model_validate_json(json.dumps({"items": [score_item]}))
    columns = build_serving_columns([request.items[0].model_dump(exclude_none=True)], model.context)
    matrix, _ = model.bundle.spec.encode_columns(columns)
    contrib = model.bundle.contributions(matrix, "full")[0]
    raw = model.bundle.predict_raw(matrix, "full")[0]
    assert contrib.sum() == pytest.approx(raw)
    top = np.argsort(-np.abs(contrib[:-1]))[: len(result.factors)]
    assert [f.feature for f in result.factors] == [model.bundle.spec.names[j] for j in top]
    effects = [abs(f.effect) for f in result.factors]
    assert effects == sorted(effects, reverse=True) and len(result.factors) == 5
    for f in result.factors:
        spec_feature = model.bundle.spec[f.feature]
        assert f.unit, f"{f.feature} has no unit"
        if f.value is not None and spec_feature.text and f.feature not in ("rep_outcome_rate", "rep_labelled_activities"):
            assert value_text(f.feature, "" if spec_feature.kind == "categorical" else f.unit, f.value) in f.text
        assert "log-odds" not in f.text and ("raises" in f.text or "lowers" in f.text)
        if spec_feature.kind == "categorical":
            assert f.value == columns[f.feature][0]


def test_explain_false_has_no_factors(scorer, score_item):
    assert score(scorer, [score_item]).results[0].factors is None


def test_factor_text_reads_naturally():
    assert sentence("{v} touches to this contact in the last 7 days", "touches_contact_7d", 6.0) == \
        "6 touches to this contact in the last 7 days"
    assert format_value(2.456) == "2.46" and format_value(48000.0) == "48000" and format_value(12.25) == "12.2"
    assert sentence("{v} days since the last touch", "days_since_touch_contact", None) == \
        "days since touch contact: not known"


def test_unseen_categories_are_scored_and_reported(scorer, score_item):
    item = copy.deepcopy(score_item)
    item["activity"][c.TYPE] = "carrier_pigeon"
    result = score(scorer, [item]).results[0]
    assert 0 <= result.p_outcome <= 1 and result.unseen == [c.TYPE]
    assert score(scorer, [score_item]).results[0].unseen == []


def test_history_after_the_activity_is_ignored(scorer, score_item):
    item = copy.deepcopy(score_item)
    later = item["activity"][c.OCCURRED_AT].replace("2026", "2027", 1)
    item["history"][c.ACTIVITIES].append({c.ACTIVITY_ID: "future", c.TYPE: "meeting", c.OCCURRED_AT: later,
                                          c.CONTACT_ID: item["activity"].get(c.CONTACT_ID)})
    item["history"][c.OUTCOMES] = [{c.DEAL_ID: item["activity"][c.DEAL_ID], "outcome": "closed_won",
                                    c.OCCURRED_AT: later}]
    assert score(scorer, [item]).results[0] == score(scorer, [score_item]).results[0]


def test_items_do_not_see_each_other(scorer, score_item):
    bare = {"activity": {c.TYPE: "call", c.OCCURRED_AT: score_item["activity"][c.OCCURRED_AT]}}
    alone = score(scorer, [bare]).results[0]
    together = score(scorer, [score_item, bare]).results[1]
    assert together == alone


def test_numeric_custom_field_with_text_is_refused(model, score_item):
    from features.build import CustomField

    context = copy.deepcopy(model.context)
    context.custom_fields.append(CustomField(c.DEALS, "forecast", "numeric"))
    scorer = Scorer(LoadedModel(model.bundle, context, model.path, "test", True))
    item = copy.deepcopy(score_item)
    item["deal"]["forecast"] = "twelve"
    with pytest.raises(InvalidRequest) as info:
        score(scorer, [item])
    assert info.value.errors == [{"item": 0, "field": "deal.forecast",
                                  "message": "expected a number: this custom field is numeric in the model"}]
    item["deal"]["forecast"] = "12.5"
    assert score(scorer, [item]).results[0].p_outcome is not None


def rank(scorer: Scorer, body: dict):
    return scorer.rank(RankRequest.model_validate_json(json.dumps(body)))


def test_rank_proposes_types_settings_and_contacts(scorer, model, score_item):
    response = rank(scorer, rank_body(score_item, top_k=500))
    ranked = response.ranked
    assert response.proposed and response.n_candidates == len(ranked)
    p = [r.p_outcome for r in ranked]
    assert p == sorted(p, reverse=True)
    types = learned_types(model.bundle.spec)
    assert {r.activity[c.TYPE] for r in ranked} == set(types)
    automated = {r.activity[c.TYPE] for r in ranked if r.activity.get(c.IS_AUTOMATED)}
    assert automated == set(AUTOMATABLE_TYPES) & set(types)
    contacts = {r.activity.get(c.CONTACT_ID) for r in ranked if r.activity[c.TYPE] != NONE_TYPE}
    assert score_item["contact"][c.CONTACT_ID] in contacts and 1 < len(contacts) <= 5
    first = ranked[0]
    assert first.activity[c.OCCURRED_AT] == response.at and first.activity[c.DEAL_ID] == score_item["deal"][c.DEAL_ID]
    assert first.factors and first.activity[c.REP_ID] == score_item["deal"][c.OWNER_REP_ID]


def test_rank_given_candidates_top_k_and_plan_model(scorer, model, score_item):
    candidates = [{"type": "call"}, {"type": "email", "personalization": 0.9}, {"type": "meeting"},
                  {"type": "call", "duration_s": 900.0}]
    assert len(rank(scorer, rank_body(score_item, candidates, top_k=3)).ranked) == 3
    ranked = rank(scorer, rank_body(score_item, candidates, top_k=4)).ranked
    calls = [r for r in ranked if r.activity[c.TYPE] == "call"]
    # the plan model ignores execution-time settings: a call with a duration scores like one without
    assert len(calls) == 2 and calls[0].p_outcome == calls[1].p_outcome
    assert {r.activity.get("duration_s") for r in calls} == {None, 900.0}
    # and the scores are what /score's plan variant would say for the same activity
    at = score_item["activity"][c.OCCURRED_AT]
    item = copy.deepcopy(score_item)
    item["activity"] = {c.TYPE: "meeting", c.OCCURRED_AT: at, c.ACTIVITY_ID: "x", c.DEAL_ID: item["deal"][c.DEAL_ID],
                        c.CONTACT_ID: item["contact"][c.CONTACT_ID], c.REP_ID: item["deal"][c.OWNER_REP_ID],
                        c.DIRECTION: "outbound"}
    req = ScoreRequest.model_validate_json(json.dumps({"items": [item]}))
    columns = build_serving_columns([req.items[0].model_dump(exclude_none=True)], model.context)
    matrix, _ = model.bundle.spec.encode_columns(columns)
    expected = model.bundle.predict_proba(matrix, "plan")["outcome"][0]
    meeting = [r for r in rank(scorer, rank_body(score_item, candidates, top_k=4)).ranked
               if r.activity[c.TYPE] == "meeting"][0]
    assert meeting.p_outcome == expected


def test_rank_without_history_or_contacts(scorer):
    response = rank(scorer, {"at": "2026-03-02T15:00:00Z", "top_k": 3})
    assert len(response.ranked) == 3 and all(c.CONTACT_ID not in r.activity for r in response.ranked)
