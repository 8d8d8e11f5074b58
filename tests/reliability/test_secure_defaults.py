"""Secure defaults (issue 12): exposure without keys, keys never logged, limits on every endpoint, rate limits.

The server tests use a real ``bentoml serve`` with API keys and a low rate limit; the exposure
check is the ``serve`` command's and runs without a server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from serving.auth import ApiKeys, exposure_problem, is_loopback
from serving.settings import load_settings
from tests.reliability.conftest import API_KEY
from tests.serving.helpers import Server

ROOT = Path(__file__).resolve().parents[2]
OTHER_KEY = "second-key-0123456789abcdef"
PRIVACY_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "BENTOML_DO_NOT_TRACK": "True"}


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.9.9.9", True), ("::1", True),
                                            ("localhost", True), ("0.0.0.0", False), ("::", False),
                                            ("10.1.2.3", False), ("api.example.com", False)])
def test_loopback_hosts(host, loopback):
    assert is_loopback(host) is loopback


def test_exposure_needs_keys_or_the_loud_flag():
    no_keys = load_settings({})
    keyed = load_settings({"ACTIVITY_SCORER_API_KEYS": API_KEY})
    assert "without API keys" in exposure_problem("0.0.0.0", settings=no_keys)
    assert exposure_problem("0.0.0.0", insecure_no_keys=True, settings=no_keys) is None
    assert exposure_problem("0.0.0.0", settings=keyed) is None
    assert exposure_problem("127.0.0.1", settings=no_keys) is None


def test_serve_refuses_a_public_host_without_keys(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACTIVITY_SCORER_")} | PRIVACY_ENV | {
        "ACTIVITY_SCORER_HOME": str(tmp_path)}
    cli = Path(sys.executable).parent / "activity-scorer"
    done = subprocess.run([str(cli), "serve", "--host", "0.0.0.0", "--port", "39999"], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 1
    assert "refusing to serve on 0.0.0.0 without API keys" in done.stderr and "--insecure-no-keys" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_key_index_identifies_the_key_without_keeping_it():
    keys = ApiKeys([API_KEY, OTHER_KEY])
    assert keys.key_index(f"Bearer {OTHER_KEY}".encode()) == 1
    assert keys.key_index(b"Bearer nope-nope-nope-nope") is None and keys.key_index(None) is None
    assert API_KEY not in repr(vars(keys))


def _call(url: str, method: str = "GET", body: bytes | None = None, key: str | None = API_KEY,
          content_type: str = "application/json") -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, method=method)
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    if body is not None:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


@pytest.fixture(scope="module")
def limited_server(rel_bundle, rel_store, tmp_path_factory):
    home = tmp_path_factory.mktemp("secure-home")
    server = Server(rel_bundle, home, env={
        "ACTIVITY_SCORER_API_KEYS": f"{API_KEY},{OTHER_KEY}", "ACTIVITY_SCORER_STORE": rel_store,
        "ACTIVITY_SCORER_RATE_LIMIT_PER_S": "5", "ACTIVITY_SCORER_RATE_LIMIT_BURST": "10",
        "ACTIVITY_SCORER_MAX_BODY_BYTES": "200000", "ACTIVITY_SCORER_MAX_ITEMS": "3",
        "ACTIVITY_SCORER_MAX_HISTORY_ROWS": "5", "ACTIVITY_SCORER_MAX_CANDIDATES": "4",
        "ACTIVITY_SCORER_MAX_EVENT_ROWS": "6", "ACTIVITY_SCORER_PREDICTION_LOG": "off"})
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()




@pytest.mark.integration
@pytest.mark.slow
def test_rate_limit_per_key_with_retry_after(limited_server):
    url = limited_server.url + "/model"
    statuses = [_call(url)[0] for _ in range(30)]
    assert statuses[:10] == [200] * 10 and 429 in statuses  # the burst, then the rate
    status, headers, raw = _call(url)
    assert status == 429 and int(headers["retry-after"]) >= 1
    assert "rate limit" in json.loads(raw)["errors"][0]["message"]
    assert _call(url, key=OTHER_KEY)[0] == 200  # per key: the other key is not limited by the first
    assert _call(limited_server.url + "/readyz", key=None)[0] == 200  # health never counted
    time.sleep(int(headers["retry-after"]) + 0.2)
    assert _call(url)[0] == 200


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("path, body, status, field", [
    ("/score", {"items": [{"activity": {"type": "call"}}] * 4}, 413, "items"),
    ("/score", {"items": [{"activity": {"type": "call", "occurred_at": "2026-03-02T00:00:00Z"},
                           "history": {"activities": [{"type": "call", "occurred_at": "2026-03-01T00:00:00Z"}] * 6}}]},
     413, "history"),
    ("/rank", {"candidates": [{"type": "call"}] * 5}, 413, "candidates"),
    ("/rank", {"history": {"activities": [{"type": "call", "occurred_at": "2026-03-01T00:00:00Z"}] * 6}}, 413, "history"),
    ("/events", {"activities": [{"activity_id": f"a{k}", "type": "call", "occurred_at": "2026-03-01T00:00:00Z"}
                                for k in range(7)]}, 413, "body"),
    ("/score", {"items": [{"activity": {"type": "call", "note_c": "x" * 300000}}]}, 413, "body"),
    ("/events", {"activities": [{"activity_id": "a", "type": "call", "occurred_at": "2026-03-01T00:00:00Z",
                                 "note_c": "x" * 300000}]}, 413, "body"),
])
def test_every_endpoint_has_size_limits(limited_server, path, body, status, field):
    time.sleep(0.25)  # stay under the rate limit of this server
    got, _, raw = _call(limited_server.url + path, "POST", json.dumps(body).encode(), key=OTHER_KEY)
    assert got == status, raw[:500]
    errors = json.loads(raw)["errors"]
    assert any(e["field"].startswith(field) for e in errors), errors
    assert any(ch.isdigit() for ch in errors[0]["message"]), errors  # the message states the limit


@pytest.mark.integration
@pytest.mark.slow
def test_keys_never_reach_the_log(limited_server):
    time.sleep(2.5)
    _call(limited_server.url + "/model", key=OTHER_KEY)
    _call(limited_server.url + "/model", key="wrong-key-that-must-not-be-logged-0000")
    _call(limited_server.url + "/ui/login", "POST", f"key={OTHER_KEY}&next=/ui/".encode(), key=None,
          content_type="application/x-www-form-urlencoded")
    # a 429 of this test's own (tests of this module may run on other xdist workers, each with its own server)
    statuses = [_call(limited_server.url + "/model", key=OTHER_KEY)[0] for _ in range(30)]
    assert 429 in statuses, statuses
    deadline = time.monotonic() + 10
    while True:  # the access log is written after the answer: wait for the lines, not a fixed time
        log = limited_server.log_path.read_text(errors="replace")
        if ("status=401" in log and "status=429" in log) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for secret in (API_KEY, OTHER_KEY, "wrong-key-that-must-not-be-logged-0000"):
        assert secret not in log
    assert "status=401" in log and "status=429" in log, log[-3000:]
    time.sleep(2.5)  # let OTHER_KEY's bucket refill (burst 10 at 5/s) for the module's other tests


def test_the_document_declares_the_security_scheme_and_429():
    from serving.openapi import service_openapi
    from serving.service import ActivityScorer

    doc = service_openapi(ActivityScorer)
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        **doc["components"]["securitySchemes"]["bearerAuth"], "type": "http", "scheme": "bearer"}
    score = doc["paths"]["/score"]["post"]
    assert {"bearerAuth": []} in score["security"]
    assert "Retry-After" in score["responses"]["429"]["headers"]
    assert "429" not in doc["paths"]["/readyz"]["get"]["responses"]
