"""Schema fuzzing: Schemathesis against a real ``bentoml serve`` and its own OpenAPI document (issue 12).

Every operation of ``/docs.json`` (``/score``, ``/rank``, ``/model``, ``/events``, the ``DELETE`` routes,
``/deals/{id}/next``, the deal page, sign-in, health, metrics), in every phase Schemathesis has:
examples, coverage (boundary values and the negative cases of each keyword), fuzzing (positive and
negative generation) and stateful (sequences following the links it infers, e.g. ``POST /events``
then ``DELETE /deals/{id}``). Every check is on: no 5xx, answers and content types that match the
document, invalid input refused, valid input accepted, ``Allow`` on 405, ... The run must generate at
least 1,000 cases and pass them all; afterwards the server log must hold no traceback, no API key and
none of the request data the test sent.

The failures this found are fixed, and each has a regression test below (a single request each).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.reliability.conftest import API_KEY

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MIN_CASES = 1000
MAX_EXAMPLES = 20  # per operation and phase: about 1,300 cases in about a minute on a 2-core machine
SEED = 12
SENTINEL = "fuzz-sentinel-7d1c"  # sent in every field it can go in; must never reach the log


def _call(server, method: str, path: str, body: bytes | None = None, key: str | None = API_KEY,
          headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(server.url + path, data=body, method=method)
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    if body is not None:
        request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def _run_schemathesis(server, workdir: Path) -> subprocess.CompletedProcess:
    cli = Path(sys.executable).parent / "schemathesis"
    cmd = [str(cli), "run", f"{server.url}/docs.json", "-H", f"Authorization: Bearer {API_KEY}",
           "--checks", "all", "--mode", "all", "--phases", "examples,coverage,fuzzing,stateful",
           "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED), "--workers", "1",
           "--request-timeout", "20", "--generation-database", "none", "--no-color"]
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=600, check=False)


def test_schemathesis_finds_nothing_and_the_log_stays_clean(keyed_server, tmp_path):
    # request data the log must not repeat: a valid request and an invalid one carrying the sentinel
    item = {"activity": {"type": "call", "activity_id": SENTINEL, "occurred_at": "2026-03-02T15:04:00Z",
                         "note_c": SENTINEL}}
    status, _, _ = _call(keyed_server, "POST", "/score", json.dumps({"items": [item]}).encode())
    assert status == 200
    status, _, _ = _call(keyed_server, "POST", "/score", json.dumps(
        {"items": [{"activity": {"type": "call", "occurred_at": SENTINEL}}]}).encode())
    assert status == 422
    status, _, _ = _call(keyed_server, "POST", "/score", b"{}", key=SENTINEL + "-wrong-key-000")
    assert status == 401

    result = _run_schemathesis(keyed_server, tmp_path)
    out = result.stdout + result.stderr
    generated = re.search(r"(\d+) generated", out)
    assert result.returncode == 0, out[-6000:]
    assert generated is not None and int(generated.group(1)) >= MIN_CASES, out[-3000:]
    assert "Selected: 15/15" in out or re.search(r"Selected: (\d+)/\1", out), out[-3000:]

    log = keyed_server.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[log.find("Traceback") - 2000:][:6000]
    assert " 500 " not in log and "status=500" not in log
    assert API_KEY not in log
    assert SENTINEL not in log


# --- regressions: what the fuzzer found, one request each -------------------------------------------------


@pytest.mark.parametrize("body, field", [
    # a whole number beyond SQLite's 64-bit INTEGER was a 500 from the store
    ({"deal_stages": [{"deal_id": "d-x", "stage": "s", "stage_order": 10**30, "entered_at": "2026-01-01T00:00:00Z"}]},
     "stage_order"),
    ({"activities": [{"activity_id": "a-x", "type": "call", "occurred_at": "2026-01-01T00:00:00Z",
                      "sequence_step": 2**64}]}, "sequence_step"),
])
def test_events_refuse_unstorable_whole_numbers(keyed_server, body, field):
    status, _, raw = _call(keyed_server, "POST", "/events", json.dumps(body).encode())
    assert status == 422, raw
    assert any(e["field"] == field for e in json.loads(raw)["errors"]), raw


def test_integral_json_numbers_are_whole_numbers(keyed_server):
    body = {"deal_stages": [{"deal_id": "d-int", "stage": "s", "stage_order": 2.0, "entered_at": "2026-01-01T00:00:00Z"}]}
    status, _, raw = _call(keyed_server, "POST", "/events", json.dumps(body).encode())
    assert status == 200, raw
    status, _, raw = _call(keyed_server, "POST", "/rank", json.dumps({"top_k": 1.0}).encode())
    assert status == 200 and len(json.loads(raw)["ranked"]) == 1, raw


def test_empty_rank_body_is_refused(keyed_server):
    status, _, raw = _call(keyed_server, "POST", "/rank", b"")
    assert status == 422 and json.loads(raw)["errors"][0]["field"] == "body", raw


def test_numeric_ids_are_read_as_text(keyed_server):
    status, _, raw = _call(keyed_server, "POST", "/events", json.dumps({"reps": [{"rep_id": 7}]}).encode())
    assert status == 200 and json.loads(raw)["stored"]["reps"] == 1, raw


def test_edge_day_timestamps_are_refused_whatever_the_zone(keyed_server):
    for at in ("0001-01-01T01:00:00+06:00", "0001-01-01T00:00:00Z", "9999-12-31T23:00:00-05:00"):
        status, _, raw = _call(keyed_server, "POST", "/rank", json.dumps({"at": at}).encode())
        assert status == 422 and json.loads(raw)["errors"][0]["field"] == "at", raw


def test_unknown_query_parameter_is_refused(keyed_server):
    status, _, raw = _call(keyed_server, "GET", "/deals/anything/next?topk=3")
    assert status == 422 and json.loads(raw)["errors"][0]["field"] == "topk", raw


def test_path_with_a_line_break_gets_a_json_404(keyed_server):
    status, headers, raw = _call(keyed_server, "DELETE", "/deals/a%0Ab")
    assert status == 404 and headers["content-type"].startswith("application/json"), raw


def test_405_lists_every_method_of_the_path(keyed_server):
    status, headers, _ = _call(keyed_server, "PUT", "/ui/login", b"{}")
    assert status == 405
    assert {m.strip() for m in headers["allow"].split(",")} >= {"GET", "POST"}


def test_document_is_openapi_31_with_complete_bodies(keyed_server):
    status, _, raw = _call(keyed_server, "GET", "/docs.json", key=None)
    doc = json.loads(raw)
    assert status == 200 and doc["openapi"].startswith("3.1")
    body = doc["paths"]["/rank"]["post"]["requestBody"]
    assert body["required"] is True
    candidates = body["content"]["application/json"]["schema"]["properties"]["candidates"]
    assert "null" in candidates["type"] and candidates["minItems"] == 1
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
