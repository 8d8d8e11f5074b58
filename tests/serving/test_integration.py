"""Rung 3: a real ``bentoml serve`` subprocess on a free 127.0.0.1 port, called over HTTP.

One server for the module (API key on, small limits) serving a bundle whose serving context
is taken at the time of a few late activities of the test dataset, so the service and the
``activity-scorer score`` command must give the same probabilities for them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import httpx
import numpy as np
import pandas as pd
import pytest

from features import contract as c
from features.build import build_training_frame, context_to_dict, rep_context, request_items
from features.dataset import load_dataset, write_dataset
from models.bundle import CONTEXT_FILE
from serving.model_store import load_bundle_dir
from tests.serving.cases import BAD_CASES, find_error
from tests.serving.conftest import API_KEY
from tests.serving.helpers import PRIVACY_ENV, ROOT, Server, rank_body, with_late_activities

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.xdist_group("serving-server")]

AUTH = {"Authorization": f"Bearer {API_KEY}"}
LIMITS = {"ACTIVITY_SCORER_MAX_ITEMS": "20", "ACTIVITY_SCORER_MAX_HISTORY_ROWS": "400",
          "ACTIVITY_SCORER_MAX_BODY_BYTES": "400000"}


@pytest.fixture(scope="module")
def late(dataset, bundle_dir, tmp_path_factory):
    """The dataset with late activities on disk, and a bundle whose context is taken at the first of them."""
    root = tmp_path_factory.mktemp("late")
    extended, late_ids = with_late_activities(dataset)
    data_dir = root / "data"
    write_dataset(extended, data_dir)
    on_disk = load_dataset(data_dir)
    table = build_training_frame(on_disk)
    first = on_disk[c.ACTIVITIES].set_index(c.ACTIVITY_ID).loc[late_ids[0], c.OCCURRED_AT]
    bundle = root / "bundle"
    shutil.copytree(bundle_dir, bundle)
    trained = load_bundle_dir(bundle_dir).context
    context = rep_context(on_disk, table, at=first, custom_fields=trained.custom_fields, timezone=trained.timezone)
    (bundle / CONTEXT_FILE).write_text(json.dumps(context_to_dict(context)), encoding="utf-8")
    return {"data": data_dir, "dataset": on_disk, "ids": late_ids, "since": first, "bundle": bundle, "root": root}


@pytest.fixture(scope="module")
def server(late):
    srv = Server(late["bundle"], late["root"] / "home",
                 env={"ACTIVITY_SCORER_API_KEYS": API_KEY, **LIMITS})
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def post(http, path: str, body, headers: dict | None = None) -> httpx.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return http.post(path, content=data, headers={"Content-Type": "application/json", **AUTH, **(headers or {})})


def test_score_and_rank(http, score_item):
    r = post(http, "/score", {"items": [score_item], "explain": True})
    assert r.status_code == 200, r.text
    result = r.json()["results"][0]
    assert 0 <= result["p_outcome"] <= 1 and len(result["factors"]) == 5
    r = post(http, "/rank", rank_body(score_item, top_k=3))
    assert r.status_code == 200, r.text
    ranked = r.json()["ranked"]
    assert len(ranked) == 3 and ranked[0]["p_outcome"] >= ranked[-1]["p_outcome"]


def test_same_probabilities_as_the_score_command(http, late, tmp_path):
    """Train/serve parity end to end: the HTTP service and `activity-scorer score` on the same activities."""
    out = tmp_path / "scores.parquet"
    env = {**os.environ, **PRIVACY_ENV, "ACTIVITY_SCORER_HOME": str(tmp_path / "home")}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "training.cli", "score", "--data", str(late["data"]), "--out", str(out),
           "--model", str(late["bundle"]), "--since", late["since"].isoformat()]
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    batch = pd.read_parquet(out).set_index(c.ACTIVITY_ID).loc[late["ids"]]
    r = post(http, "/score", {"items": request_items(late["dataset"], late["ids"])})
    assert r.status_code == 200, r.text
    served = pd.DataFrame(r.json()["results"]).set_index(c.ACTIVITY_ID)
    cols = ["p_outcome", "p_output", "p_negative"]
    np.testing.assert_allclose(served[cols].to_numpy(), batch[cols].to_numpy(dtype=float), rtol=0, atol=1e-12)


@pytest.mark.parametrize("case", BAD_CASES, ids=[case.name for case in BAD_CASES])
def test_bad_input(http, score_item, case):
    r = post(http, case.path, case.build(score_item))
    assert r.status_code == case.status, r.text
    assert find_error(r.json(), case.item, case.field), r.text


def test_unknown_categories_and_late_history_are_scored(http, score_item):
    item = json.loads(json.dumps(score_item))
    item["activity"][c.TYPE] = "carrier_pigeon"
    item["history"][c.ACTIVITIES].append({c.TYPE: "meeting", c.OCCURRED_AT: "2099-01-01T00:00:00Z"})
    r = post(http, "/score", {"items": [item]})
    assert r.status_code == 200 and r.json()["results"][0]["unseen"] == [c.TYPE]


def test_api_key_is_required_and_health_is_open(http, server):
    body = {"items": [{"activity": {"type": "call"}}]}
    assert http.post("/score", json=body).status_code == 401
    assert http.post("/rank", json={}, headers={"Authorization": "Bearer not-the-key-0123456"}).status_code == 401
    assert http.get("/model").status_code == 401
    assert http.get("/model", headers=AUTH).json()["name"] == "activity-outcome"
    for path in ("/livez", "/readyz", "/metrics"):
        assert http.get(path).status_code == 200


def test_limits(http):
    r = post(http, "/score", {"items": [{"activity": {"type": "call"}}] * 21})
    assert r.status_code == 413 and "at most 20 items per request" in r.json()["errors"][0]["message"]
    rows = [{"type": "call", "occurred_at": "2026-01-01T00:00:00Z"}] * 401
    r = post(http, "/score", {"items": [{"activity": {"type": "call"}, "history": {"activities": rows}}]})
    assert r.status_code == 413 and "at most 400 history rows" in r.json()["errors"][0]["message"]
    r = post(http, "/score", b'{"items": [{"activity": {"type": "call", "x": "' + b"y" * 400_000 + b'"}}]}')
    assert r.status_code == 413 and "400000 bytes" in r.json()["errors"][0]["message"]


def test_bentoml_client(server, score_item):
    import bentoml

    with bentoml.SyncHTTPClient(server.url, token=API_KEY) as client:
        answer = client.score({"items": [score_item]})
    assert 0 <= answer["results"][0]["p_outcome"] <= 1


def test_metrics_logs_and_no_secrets(http, server, score_item):
    secret = "payload-marker-5c1e"
    item = json.loads(json.dumps(score_item))
    item["activity"]["cf_note"] = secret
    post(http, "/score", {"items": [item]})
    post(http, "/score", {"items": [{"activity": {"type": "call", "occurred_at": secret}}]})
    metrics = http.get("/metrics").text
    assert 'activity_scorer_items_total{endpoint="/score"}' in metrics
    assert "activity_scorer_refused_total" in metrics and "activity_scorer_gc_pause_seconds" in metrics
    log = server.log_path.read_text(errors="replace")
    assert "POST /score status=200 items=1" in log and "POST /score status=422" in log
    assert secret not in log and API_KEY not in log
    assert "Traceback" not in log


def test_concurrent_requests_get_their_own_answers(server, dataset):
    """Requests that wait for the worker together are scored in one batch, each answered as if alone."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.serving.helpers import busy_activity_ids, item_with_history

    bodies = [{"items": [item_with_history(dataset, a, 30)], "explain": k % 2 == 0}
              for k, a in enumerate(busy_activity_ids(dataset, 8))]

    def call(body):
        with httpx.Client(base_url=server.url, timeout=30) as client:
            return [post(client, "/score", body).json() for _ in range(5)]

    with httpx.Client(base_url=server.url, timeout=30) as client:
        alone = [post(client, "/score", b).json() for b in bodies]
        before = client.get("/metrics").text
    with ThreadPoolExecutor(len(bodies)) as pool:
        together = list(pool.map(call, bodies))
    for expected, answers in zip(alone, together, strict=True):
        assert all(a == expected for a in answers)

    def batched(text: str) -> float:
        # requests scored in batches of 2 or more (histogram buckets are cumulative)
        total = one = 0.0
        for line in text.splitlines():
            if line.startswith("activity_scorer_batch_requests_count"):
                total += float(line.rsplit(" ", 1)[1])
            elif line.startswith('activity_scorer_batch_requests_bucket{le="1.0"}'):
                one += float(line.rsplit(" ", 1)[1])
        return total - one

    assert batched(http_metrics(server)) > batched(before)


def http_metrics(server) -> str:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        return client.get("/metrics").text
