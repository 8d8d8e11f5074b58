"""Rung 2: the BentoML service in-process (``ActivityScorer.to_asgi()`` + Starlette's TestClient)."""

from __future__ import annotations

import asyncio
import contextvars
import copy
import json
import logging

import pytest

from features import contract as c
from serving import runtime
from tests.serving.cases import BAD_CASES, find_error
from tests.serving.helpers import rank_body


def post(client, path: str, body, headers: dict | None = None):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(path, content=data, headers={"Content-Type": "application/json", **(headers or {})})


def test_score_answers_every_item_with_model_and_factors(client, score_item):
    bare = {"activity": {"type": "call"}}
    r = post(client, "/score", {"items": [score_item, bare], "explain": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"]["name"] == "activity-outcome" and body["model"]["trained_at"]
    assert body["effect_unit"] == "log-odds"
    first, second = body["results"]
    assert first["activity_id"] == score_item["activity"][c.ACTIVITY_ID] and second["activity_id"] is None
    for result in body["results"]:
        for key in ("p_outcome", "p_output", "p_negative"):
            assert 0.0 <= result[key] <= 1.0
        assert result["factors"] and {"feature", "value", "unit", "effect", "text"} <= set(result["factors"][0])


def test_rank_answers_best_first(client, score_item):
    r = post(client, "/rank", rank_body(score_item, [{"type": "call"}, {"type": "email", "personalization": 0.9},
                                                     {"type": "meeting", "contact_id": "c-7"}], top_k=2))
    assert r.status_code == 200, r.text
    ranked = r.json()["ranked"]
    assert len(ranked) == 2 and ranked[0]["p_outcome"] >= ranked[1]["p_outcome"] and ranked[0]["factors"]


def test_model_endpoint_describes_the_bundle(client):
    r = client.get("/model")
    assert r.status_code == 200
    info = r.json()
    assert info["name"] == "activity-outcome" and info["trained_at"] and info["serving_context"] is True
    assert info["data_window"]["test_start"] and info["test_metrics"]["outcome"]["full"]["auc"] > 0.5
    assert any(f["name"] == "touches_contact_7d" and f["unit"] == "activities" for f in info["features"])


def test_metrics_and_health_are_served(client, score_item):
    post(client, "/score", {"items": [score_item]})
    assert client.get("/livez").status_code == 200 and client.get("/readyz").status_code == 200
    text = client.get("/metrics").text
    assert 'activity_scorer_items_total{endpoint="/score"}' in text
    assert "bentoml_service_request_duration_seconds" in text


def test_openapi_describes_units(client):
    spec = client.get("/docs.json").json()
    text = json.dumps(spec)
    assert "/score" in spec["paths"] and "/rank" in spec["paths"]
    assert "log-odds" in text and "0 = mass template" in text


@pytest.mark.parametrize("case", BAD_CASES, ids=[case.name for case in BAD_CASES])
def test_bad_input_gets_a_located_error(client, score_item, case):
    r = post(client, case.path, case.build(score_item))
    assert r.status_code == case.status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert find_error(r.json(), case.item, case.field), r.text


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                          "application/vnd.bentoml+pickle", None])
def test_body_is_json_whatever_the_content_type(client, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    data = json.dumps({"items": [{"activity": {"type": "call"}}]}).encode()
    r = client.post("/score", content=data, headers=headers)
    assert r.status_code == 200, r.text
    r = client.post("/score", content=b"type=call", headers=headers)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body"


def test_unknown_values_are_scored_not_refused(client, score_item):
    item = copy.deepcopy(score_item)
    item["activity"][c.TYPE] = "carrier_pigeon"
    item["account"][c.INDUSTRY] = "space"
    item["activity"]["new_custom_field"] = "anything"
    r = post(client, "/score", {"items": [item]})
    assert r.status_code == 200
    assert r.json()["results"][0]["unseen"] == [c.TYPE, c.INDUSTRY]


def test_request_log_has_counts_and_no_payload(client, score_item, caplog):
    secret = "payload-marker-93ab"
    item = copy.deepcopy(score_item)
    item["activity"]["cf_note"] = secret
    with caplog.at_level(logging.INFO, logger="serving"):
        post(client, "/score", {"items": [item]})
        post(client, "/score", {"items": [{"activity": {"type": "call", "occurred_at": secret}}]})
    lines = [r.getMessage() for r in caplog.records if r.name == "serving.middleware"]
    assert any("POST /score status=200 items=1 history_rows=" in line for line in lines), lines
    assert any("POST /score status=422" in line for line in lines), lines
    assert all(secret not in r.getMessage() and secret not in str(r.exc_info) for r in caplog.records)


def test_start_up_heap_was_frozen(client):
    assert client.frozen_at_startup > 10_000


# --- the timeout middleware -----------------------------------------------------------------


def test_bentoml_builds_the_cancelling_timeout_middleware():
    from bentoml._internal.server.http import traffic

    assert traffic.TimeoutMiddleware is runtime.install()


async def _call(middleware, scope) -> list[dict]:
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    await middleware(scope, receive, send)
    return sent


def test_timer_is_cancelled_and_holds_no_request_context():
    cls = runtime.install()
    marker = contextvars.ContextVar("request_marker")

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def main():
        loop = asyncio.get_running_loop()
        marker.set(object())  # stands for the request's tracing span
        sent = await _call(cls(app, timeout=60), {"type": "http", "path": "/score", "method": "POST"})
        live = [h for h in loop._scheduled if not h.cancelled()]  # noqa: SLF001
        held = [h for h in loop._scheduled if h._context is not None and marker in h._context]  # noqa: SLF001
        return sent, live, held

    sent, live, held = asyncio.run(main())
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert live == [] and held == []


def test_requests_leave_no_timer_behind(client):
    """BentoML's own middleware leaves one live 60 s timer (holding the request context) per request."""
    import gc

    def live_timers() -> int:
        return sum(1 for o in gc.get_objects() if isinstance(o, asyncio.TimerHandle) and not o.cancelled())

    before = live_timers()
    for _ in range(100):
        assert post(client, "/score", {"items": [{"activity": {"type": "call"}}]}).status_code == 200
    assert live_timers() - before < 5


def test_timeout_still_answers_504():
    cls = runtime.install()

    async def slow(scope, receive, send):
        await asyncio.sleep(5)

    sent = asyncio.run(_call(cls(slow, timeout=0.05), {"type": "http", "path": "/score", "method": "POST"}))
    assert sent[0]["status"] == 504 and b"Not able to process" in sent[1]["body"]
