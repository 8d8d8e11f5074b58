"""The prediction log: durable JSON lines, rotation and a size limit, safe for threads and processes."""

from __future__ import annotations

import json
import multiprocessing
import threading

import pytest

from serving.prediction_log import (
    PredictionLog,
    input_hash,
    iter_records,
    log_files,
    open_prediction_log,
    read_predictions,
    score_record,
)
from serving.settings import load_settings


def _record(i: int, pad: int = 0) -> dict:
    return {"endpoint": "score", "model": {"name": "m", "version": "3"},
            "items": [{"activity_id": f"a-{i}", "deal_id": "d-1", "type": "call", "p_outcome": 0.1,
                       "occurred_at": "2026-03-02T10:00:00Z", "input_hash": "sha256:" + "0" * pad}]}


def test_append_and_read_back(tmp_path):
    log = PredictionLog(tmp_path)
    for i in range(5):
        log.append(_record(i))
    log.close()
    frame = read_predictions(tmp_path)
    assert frame["activity_id"].tolist() == [f"a-{i}" for i in range(5)]
    assert set(frame["model_version"]) == {"3"} and frame["ts"].notna().all()
    assert [p.name.endswith(".active.jsonl") for p in log_files(tmp_path)] == [False]  # closed on close()


def test_rotation_and_total_size_limit(tmp_path):
    log = PredictionLog(tmp_path, max_file_bytes=2_000, max_total_bytes=6_000)
    for i in range(200):
        log.append(_record(i, pad=100))
    log.close()
    files = log_files(tmp_path)
    assert len(files) >= 2
    assert all(p.stat().st_size <= 2_000 for p in files)
    assert sum(p.stat().st_size for p in files) <= 6_000 + 2_000  # closed files pruned; the last one may be open
    ids = read_predictions(tmp_path)["activity_id"].tolist()
    assert ids[-1] == "a-199" and ids == sorted(ids, key=lambda a: int(a[2:]))  # oldest pruned, newest kept


def test_threads_never_interleave_records(tmp_path):
    log = PredictionLog(tmp_path, max_file_bytes=50_000)

    def work(k: int) -> None:
        for i in range(300):
            log.append(_record(k * 1000 + i, pad=64))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    assert len(list(iter_records(tmp_path))) == 1200


def _worker(directory: str, k: int) -> None:
    log = PredictionLog(directory, max_file_bytes=20_000)
    for i in range(250):
        log.append(_record(k * 1000 + i, pad=64))
    log.close()


def test_processes_write_their_own_files(tmp_path):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_worker, args=(str(tmp_path), k)) for k in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    ids = read_predictions(tmp_path)["activity_id"].tolist()
    assert len(ids) == 750 and len(set(ids)) == 750


def test_a_torn_last_line_is_skipped_not_fatal(tmp_path, caplog):
    log = PredictionLog(tmp_path)
    log.append(_record(1))
    log.append(_record(2))
    path = log.path
    with open(path, "ab") as fh:
        fh.write(b'{"endpoint": "score", "items": [{"activity_id": "a-')  # the writer died here
    assert read_predictions(tmp_path)["activity_id"].tolist() == ["a-1", "a-2"]
    assert "1 unreadable line" in caplog.text


def test_deferred_records_are_written_by_the_log_thread(tmp_path):
    log = PredictionLog(tmp_path)
    for i in range(20):
        log.defer(lambda i=i: _record(i))
    log.defer(lambda: 1 / 0)  # a failing builder is counted, the log goes on
    log.defer(lambda: _record(99))
    log.flush()
    assert len(read_predictions(tmp_path)) == 21 and log.errors == 1
    log.close()


def test_settings_choose_the_directory_or_disable_it(tmp_path, monkeypatch):
    assert open_prediction_log(load_settings({"ACTIVITY_SCORER_PREDICTION_LOG": "off"})) is None
    log = open_prediction_log(load_settings({"ACTIVITY_SCORER_PREDICTION_LOG": str(tmp_path / "p"),
                                             "ACTIVITY_SCORER_PREDICTION_LOG_MAX_MB": "2"}))
    assert log.directory == tmp_path / "p" and log.max_file_bytes == 2 << 20
    monkeypatch.setenv("ACTIVITY_SCORER_HOME", str(tmp_path / "home"))
    assert open_prediction_log(load_settings({})).directory == tmp_path / "home" / "predictions"


def test_score_record_holds_ids_outputs_and_a_hash_not_the_inputs():
    item = {"activity": {"activity_id": "a-1", "type": "email", "deal_id": "d-9", "contact_id": "c-4",
                         "occurred_at": "2026-03-02T15:04:00Z", "personalization": 0.8},
            "contact": {"contact_id": "c-4", "title": "Head of Operations", "seniority": "vp"},
            "account": {"account_id": "acc-2", "industry": "logistics"}}
    answer = {"model": {"name": "activity-outcome", "version": "4"},
              "results": [{"activity_id": "a-1", "p_outcome": 0.2, "p_output": 0.4, "p_negative": 0.01,
                           "factors": [{"feature": "x"}]}]}
    rec = score_record({"items": [item]}, answer)
    row = rec["items"][0]
    assert rec["model"] == {"name": "activity-outcome", "version": "4"} and rec["endpoint"] == "score"
    assert row == {"activity_id": "a-1", "deal_id": "d-9", "contact_id": "c-4", "account_id": "acc-2",
                   "type": "email", "occurred_at": "2026-03-02T15:04:00Z", "input_hash": input_hash(item),
                   "p_outcome": 0.2, "p_output": 0.4, "p_negative": 0.01}
    assert "Head of Operations" not in json.dumps(rec)
    assert input_hash(item) != input_hash(item | {"explain": True})


def test_an_item_read_from_the_store_is_hashed_with_what_the_store_gave():
    """By id, the scored inputs are the stored deal, account and history: the hash must see them."""
    from serving.schemas import ScoreRequest
    from serving.store_access import _StoredItem

    def plain(history_rows):
        return {"activity": {"type": "email", "deal_id": "d-9", "contact_id": "c-4",
                             "occurred_at": 1772463840000},
                "account": {"account_id": "acc-2", "industry": "logistics"},
                "history": {"activities": history_rows}}

    answer = {"model": {"name": "activity-outcome", "version": "4"},
              "results": [{"p_outcome": 0.2, "p_output": 0.4, "p_negative": 0.01}]}
    earlier = [{"activity_id": "a-0", "deal_id": "d-9", "type": "call", "occurred_at": 1772377440000}]
    rows = []
    for history in ([], earlier):
        item = _StoredItem.of(plain(history), None)
        rows.append(score_record(ScoreRequest.model_construct(items=[item], explain=False), answer)["items"][0])
    assert rows[0]["input_hash"] == input_hash(plain([])) and rows[1]["input_hash"] == input_hash(plain(earlier))
    assert rows[0]["input_hash"] != rows[1]["input_hash"]  # the same request, another stored history
    assert rows[0]["account_id"] == "acc-2" and rows[0]["deal_id"] == "d-9"  # the account came from the store


@pytest.mark.slow
def test_the_service_logs_every_score_answer(bundle_dir, serving_home, score_item, tmp_path):
    from tests.serving.conftest import app_client

    where = tmp_path / "predictions"
    with app_client(bundle_dir, serving_home, prediction_log=str(where)) as client:
        body = json.dumps({"items": [score_item, {"activity": {"type": "call"}}]}).encode()
        r = client.post("/score", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 200, r.text
        bad = client.post("/score", content=b'{"items": [{}]}', headers={"Content-Type": "application/json"})
        assert bad.status_code in (400, 422)
    import time

    deadline = time.monotonic() + 10  # the record is written by the log's own thread
    while len(frame := read_predictions(where)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(frame) == 2  # one record, two items; the refused request is not logged
    assert frame["activity_id"].iloc[0] == score_item["activity"]["activity_id"]
    assert frame["p_outcome"].tolist() == pytest.approx([x["p_outcome"] for x in r.json()["results"]])
