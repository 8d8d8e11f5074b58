"""Rung 1: request models and error bodies, without BentoML."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from features import contract as c
from serving import errors
from serving.schemas import (
    ROW_TABLES,
    Deal,
    Limits,
    RankRequest,
    ScoreRequest,
    get_limits,
    set_limits,
)
from tests.serving.cases import BAD_CASES, find_error

API_EXAMPLE = {
    "items": [
        {
            "activity": {"activity_id": "a-17", "type": "email", "occurred_at": "2026-03-02T15:04:00Z",
                         "rep_id": "r-3", "deal_id": "d-9", "contact_id": "c-41",
                         "personalization": 0.8, "is_automated": False},
            "deal": {"deal_id": "d-9", "stage": "discovery", "stage_order": 2,
                     "stage_entered_at": "2026-02-20T09:00:00Z", "created_at": "2026-02-01T09:00:00Z",
                     "amount": 48000, "product": "platform"},
            "contact": {"contact_id": "c-41", "seniority": "vp", "department": "operations"},
            "account": {"account_id": "acc-2", "industry": "logistics", "employees": 1200, "region": "emea"},
            "history": {"activities": [], "responses": [], "deal_stages": [], "outcomes": []},
        }
    ],
    "explain": True,
}


def validate(path: str, body: bytes):
    model = ScoreRequest if path == "/score" else RankRequest
    return model.model_validate_json(body)  # an empty body is refused (field "body"), by the service's guard too


def test_api_md_example_is_valid():
    req = validate("/score", json.dumps(API_EXAMPLE).encode())
    activity = req.items[0].activity
    assert activity.type == "email" and activity.occurred_at.tzinfo is not None
    assert req.items[0].deal.stage_entered_at.isoformat() == "2026-02-20T09:00:00+00:00"


@pytest.mark.parametrize("case", BAD_CASES, ids=[case.name for case in BAD_CASES])
def test_bad_input_names_item_and_field(case):
    item = API_EXAMPLE["items"][0] | {"history": {"activities": [
        {"activity_id": f"h{k}", "type": "call", "occurred_at": "2026-02-2%dT10:00:00Z" % k} for k in range(3)]}}
    with pytest.raises(ValidationError) as info:
        validate(case.path, case.build(item))
    details, status = errors.details_from_pydantic(info.value.errors())
    assert status == case.status
    assert find_error({"errors": details}, case.item, case.field), details


def test_error_messages_never_repeat_the_input():
    secret = "do-not-echo-7f3a"
    body = json.dumps({"items": [{"activity": {"type": "call", "occurred_at": secret, "personalization": secret}}]})
    with pytest.raises(ValidationError) as info:
        validate("/score", body.encode())
    assert secret not in str(info.value)
    details, _ = errors.details_from_pydantic(info.value.errors())
    assert secret not in json.dumps(details)


@pytest.mark.parametrize("value", ["2026-03-02T15:04:00Z", "2026-03-02T15:04:00", "2026-03-02 15:04",
                                   "2026-03-02", "2026-03-02T17:04:00+02:00"])
def test_iso_timestamps_are_utc(value):
    activity = validate("/score", json.dumps({"items": [{"activity": {"type": "x", "occurred_at": value}}]}).encode()
                        ).items[0].activity
    assert activity.occurred_at.utcoffset().total_seconds() == 0
    assert activity.occurred_at.date().isoformat() == "2026-03-02"


def test_numeric_ids_become_text_and_custom_fields_are_kept():
    body = {"items": [{"activity": {"type": "call", "deal_id": 9, "cf_template": "t1", "score": 0.5, "flag": True}}]}
    activity = validate("/score", json.dumps(body).encode()).items[0].activity
    dumped = activity.model_dump(exclude_none=True)
    assert dumped[c.DEAL_ID] == "9"
    assert dumped["cf_template"] == "t1" and dumped["score"] == 0.5 and dumped["flag"] is True


def test_limits_answer_413_and_state_the_limit():
    before = get_limits()
    set_limits(Limits(max_items=2, max_history_rows=3, max_candidates=2))
    try:
        item = {"activity": {"type": "call"}}
        with pytest.raises(ValidationError) as info:
            validate("/score", json.dumps({"items": [item] * 3}).encode())
        details, status = errors.details_from_pydantic(info.value.errors())
        assert status == errors.STATUS_TOO_LARGE
        assert details == [{"item": None, "field": "items", "message": "at most 2 items per request (got 3)"}]

        rows = [{"type": "call", "occurred_at": "2026-01-01T00:00:00Z"}] * 4
        with pytest.raises(ValidationError) as info:
            validate("/score", json.dumps({"items": [item | {"history": {"activities": rows}}]}).encode())
        details, status = errors.details_from_pydantic(info.value.errors())
        assert status == errors.STATUS_TOO_LARGE and details[0]["item"] == 0 and details[0]["field"] == "history"
        assert "at most 3 history rows" in details[0]["message"]

        with pytest.raises(ValidationError) as info:
            validate("/rank", json.dumps({"candidates": [{"type": "call"}] * 3}).encode())
        assert "at most 2 candidates" in errors.details_from_pydantic(info.value.errors())[0][0]["message"]
    finally:
        set_limits(before)


def test_row_models_use_contract_column_names():
    """A typo in a field name would silently turn a contract column into a custom field."""
    request_only = {"stage", "stage_order", "stage_entered_at"}  # where the deal stands, on the deal object
    for model, table in ROW_TABLES.items():
        names = set(model.model_fields)
        extra = names - set(c.TABLES[table].column_names) - (request_only if model is Deal else set())
        assert not extra, f"{model.__name__}: {sorted(extra)} are not columns of {table}"


def test_field_path_formats_indices():
    assert errors.field_path(("history", "activities", 3, "type")) == "history.activities[3].type"
    assert errors.field_path(("candidates", 0)) == "candidates[0]"
