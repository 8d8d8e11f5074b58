"""Micro-batching: concurrent requests are scored together and answered as if alone."""

from __future__ import annotations

import asyncio
import copy
import json

import pytest

from serving.batching import ScoreBatcher
from serving.errors import InvalidRequest
from serving.model_store import load_bundle_dir
from serving.schemas import ScoreRequest
from serving.scorer import RequestStats, Scorer
from tests.serving.helpers import busy_activity_ids, item_with_history


def test_score_batch_answers_equal_single_requests(bundle_dir, dataset):
    from features.build import CustomField

    model = load_bundle_dir(bundle_dir)
    model.context.custom_fields.append(CustomField("deals", "forecast", "numeric"))
    scorer = Scorer(model)
    items = [item_with_history(dataset, a, 30) for a in busy_activity_ids(dataset, 3)]
    bad = copy.deepcopy(items[0])
    bad["deal"]["forecast"] = "many"
    bodies = [{"items": items[:2], "explain": True}, {"items": [bad]}, {"items": [items[2]], "explain": False},
              {"items": [{"activity": {"type": "carrier_pigeon"}}]}]
    requests = [ScoreRequest.model_validate_json(json.dumps(b)) for b in bodies]
    stats = [RequestStats() for _ in requests]
    together = scorer.score_batch(requests, stats)
    assert isinstance(together[1], InvalidRequest) and together[1].errors[0]["field"] == "deal.forecast"
    for k in (0, 2):
        alone = scorer.score(requests[k], RequestStats())
        assert together[k].model_dump() == alone.model_dump()
    assert together[3].results[0].activity_id is None and together[3].results[0].unseen == ["type"]
    assert together[3].results[0].factors is None
    assert [s.items for s in stats] == [2, 1, 1, 1] and stats[3].unseen == {"type": 1}


def run(coro):
    return asyncio.run(coro)


def test_requests_waiting_together_form_one_batch():
    calls = []

    def run_batch(requests, stats):
        calls.append(list(requests))
        return [f"answer-{r}" for r in requests]

    async def main():
        batcher = ScoreBatcher(run_batch, max_items=3, count=lambda r: 1)
        answers = await asyncio.gather(*(batcher.submit(k, None) for k in range(5)))
        alone = await batcher.submit(9, None)
        return answers, alone

    answers, alone = run(main())
    assert answers == [f"answer-{k}" for k in range(5)] and alone == "answer-9"
    assert calls == [[0, 1, 2], [3, 4], [9]]


def test_a_failing_batch_fails_its_requests_only():
    def run_batch(requests, stats):
        if 0 in requests:
            raise RuntimeError("bug")
        return requests

    async def main():
        batcher = ScoreBatcher(run_batch, max_items=2, count=lambda r: 1)
        results = await asyncio.gather(*(batcher.submit(k, None) for k in range(4)), return_exceptions=True)
        return results

    first, second, third, fourth = run(main())
    assert isinstance(first, RuntimeError) and isinstance(second, RuntimeError)
    assert (third, fourth) == (2, 3)


def test_a_cancelled_request_is_left_out():
    seen = []

    def run_batch(requests, stats):
        seen.extend(requests)
        return requests

    async def main():
        batcher = ScoreBatcher(run_batch, max_items=10, count=lambda r: 1)
        doomed = asyncio.ensure_future(batcher.submit("late", None))
        kept = asyncio.ensure_future(batcher.submit("kept", None))
        await asyncio.sleep(0)
        doomed.cancel()
        return await kept

    assert run(main()) == "kept" and seen == ["kept"]


@pytest.mark.parametrize("max_items", [1, 4])
def test_service_answers_concurrent_requests_like_single_ones(bundle_dir, serving_home, dataset, max_items):
    import threading

    from tests.serving.conftest import app_client
    from tests.serving.test_service import post

    items = [item_with_history(dataset, a, 20) for a in busy_activity_ids(dataset, 6)]
    with app_client(bundle_dir, serving_home, batch_max_items=max_items) as client:
        alone = [post(client, "/score", {"items": [it], "explain": True}).json() for it in items]
        together: list = [None] * len(items)

        def call(k):
            together[k] = post(client, "/score", {"items": [items[k]], "explain": True}).json()

        threads = [threading.Thread(target=call, args=(k,)) for k in range(len(items))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        metrics = client.get("/metrics").text
    assert together == alone
    assert "activity_scorer_batch_requests" in metrics or max_items == 1
