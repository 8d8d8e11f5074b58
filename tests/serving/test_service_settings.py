"""Rung 2, other settings: API keys and size limits (each test starts the in-process service anew)."""

from __future__ import annotations

import pytest

from tests.serving.conftest import API_KEY, app_client
from tests.serving.test_service import post


def test_api_keys(bundle_dir, serving_home):
    with app_client(bundle_dir, serving_home, api_keys=f"{API_KEY},second-key-0123456789") as client:
        body = {"items": [{"activity": {"type": "call"}}]}
        missing = post(client, "/score", body)
        assert missing.status_code == 401 and "results" not in missing.json()
        assert missing.json()["errors"][0]["field"] == "Authorization"
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert post(client, "/score", body, {"Authorization": "Bearer wrong-key-0123456789"}).status_code == 401
        assert post(client, "/score", body, {"Authorization": f"Basic {API_KEY}"}).status_code == 401
        assert post(client, "/score", body, {"Authorization": f"Bearer {API_KEY}"}).status_code == 200
        assert post(client, "/score", body, {"Authorization": "bearer second-key-0123456789"}).status_code == 200
        assert post(client, "/rank", {}, {"Authorization": f"Bearer {API_KEY}x"}).status_code == 401
        assert client.get("/model").status_code == 401
        for path in ("/livez", "/readyz", "/metrics"):
            assert client.get(path).status_code == 200, path


def test_short_api_keys_are_refused():
    from serving.auth import load_api_keys
    from serving.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match="shorter than 16"):
        load_api_keys(Settings(api_keys="short"))


def test_limits_are_refused_with_the_limit_stated(bundle_dir, serving_home):
    with app_client(bundle_dir, serving_home, max_items=2, max_history_rows=5, max_body_bytes=2000) as client:
        r = post(client, "/score", {"items": [{"activity": {"type": "call"}}] * 3})
        assert r.status_code == 413 and r.json()["errors"][0]["message"] == "at most 2 items per request (got 3)"
        rows = [{"type": "call", "occurred_at": "2026-01-01T00:00:00Z"}] * 6
        r = post(client, "/score", {"items": [{"activity": {"type": "call"}, "history": {"activities": rows}}]})
        assert r.status_code == 413 and "at most 5 history rows per item" in r.json()["errors"][0]["message"]
        r = post(client, "/score", {"items": [{"activity": {"type": "call", "note": "x" * 3000}}]})
        assert r.status_code == 413 and "limit of 2000 bytes" in r.json()["errors"][0]["message"]


def test_large_requests_run_in_a_worker_thread_with_the_same_answer(bundle_dir, serving_home, score_item):
    body = {"items": [score_item], "explain": True}
    with app_client(bundle_dir, serving_home) as client:
        inline = post(client, "/score", body)
    with app_client(bundle_dir, serving_home, inline_rows=1) as client:
        threaded = post(client, "/score", body)
    assert inline.status_code == threaded.status_code == 200
    assert inline.json() == threaded.json()
