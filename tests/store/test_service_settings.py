"""The service's own settings around the store: no store at all, a small row limit (one app client at a time)."""

from __future__ import annotations

import pytest

from features import contract as c
from features.build import request_items
from tests.store.conftest import service_client
from tests.store.test_service_store import _post, store_url  # noqa: F401  (module fixture)

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_without_a_store_the_ids_only_form_is_a_clear_422(history, tmp_path):
    with service_client(history["bundle"], tmp_path / "home") as cl:
        r = _post(cl, "/score", {"items": [{"activity": {c.TYPE: "call", c.DEAL_ID: "d1"}}]})
        assert r.status_code == 422
        err = r.json()["errors"][0]
        assert err["item"] == 0 and "no history store" in err["message"] and "ACTIVITY_SCORER_STORE" in err["message"]
        r = _post(cl, "/rank", {"deal": {c.DEAL_ID: "d1"}})
        assert r.status_code == 422 and "no history store" in r.text
        r = _post(cl, "/events", {"activities": []})
        assert r.status_code == 409 and "no history store" in r.text
        # a request with its context is scored as before
        r = _post(cl, "/score", {"items": request_items(history["dataset"], history["ids"][:1])})
        assert r.status_code == 200


def test_row_limit_is_stated(history, store_url, tmp_path):
    with service_client(history["bundle"], tmp_path / "home", store=store_url, max_event_rows="3") as cl:
        rows = [{c.ACTIVITY_ID: f"lim-{k}", c.TYPE: "call", c.OCCURRED_AT: "2026-01-01T00:00:00Z"} for k in range(4)]
        r = _post(cl, "/events", {"activities": rows})
        assert r.status_code == 413 and "at most 3 rows per request" in r.json()["errors"][0]["message"]


