"""The service with a history store, in process: scoring by id, unknown ids, events, deletion, the deal page JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

from features import contract as c
from features.build import request_items
from tests.store.conftest import service_client

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _post(client, path, body):
    return client.post(path, content=json.dumps(body, default=str), headers={"Content-Type": "application/json"})


@pytest.fixture(scope="module")
def store_url(history, tmp_path_factory):
    """A writable copy of the loaded store for this module."""
    from store import open_store

    url = f"sqlite:///{tmp_path_factory.mktemp('svc-store') / 'store.db'}"
    store = open_store(url)
    store.load_dataset(history["dataset"])
    store.close()
    return url


@pytest.fixture(scope="module")
def client(history, store_url, tmp_path_factory):
    with service_client(history["bundle"], tmp_path_factory.mktemp("svc-home"), store=store_url) as cl:
        yield cl


def _by_id(aid: str) -> dict:
    return {"activity": {c.ACTIVITY_ID: aid, c.TYPE: "call"}}


def test_score_by_id_equals_score_with_history(client, history):
    ids = history["ids"][:20]
    full = request_items(history["dataset"], ids)
    by_id = [{"activity": {c.ACTIVITY_ID: i[c.ACTIVITY_ID] if False else it["activity"][c.ACTIVITY_ID],
                           c.TYPE: it["activity"][c.TYPE]}} for i, it in zip(ids, full, strict=True)]
    a = _post(client, "/score", {"items": full, "explain": True})
    b = _post(client, "/score", {"items": by_id, "explain": True})
    assert a.status_code == b.status_code == 200, (a.text, b.text)
    ra, rb = a.json()["results"], b.json()["results"]
    for x, y in zip(ra, rb, strict=True):
        assert x["activity_id"] == y["activity_id"]
        for k in ("p_outcome", "p_output", "p_negative"):
            assert abs(x[k] - y[k]) <= 1e-12
        assert x["factors"] == y["factors"] and y["unseen"] == x["unseen"]


def test_ids_only_form_with_deal_and_contact_ids(client, history):
    acts = history["dataset"][c.ACTIVITIES].set_index(c.ACTIVITY_ID)
    row = acts.loc[history["ids"][0]]
    item = {"activity": {c.TYPE: row[c.TYPE], c.DEAL_ID: row[c.DEAL_ID], c.CONTACT_ID: row[c.CONTACT_ID],
                         c.OCCURRED_AT: row[c.OCCURRED_AT].isoformat()}}
    r = _post(client, "/score", {"items": [item]})
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["unseen"] == []


def test_request_fields_replace_stored_ones(client, history):
    aid = history["ids"][1]
    plain = _post(client, "/score", {"items": [_by_id(aid)]}).json()["results"][0]
    emptied = _post(client, "/score", {"items": [_by_id(aid) | {"history": {}}]}).json()["results"][0]
    assert emptied["p_outcome"] != plain["p_outcome"]  # the request's (empty) history replaced the stored one


def test_unknown_ids_are_scored_as_unseen(client):
    item = {"activity": {c.TYPE: "call", c.DEAL_ID: "no-such-deal", c.CONTACT_ID: "no-such-contact",
                         c.OCCURRED_AT: "2026-06-01T10:00:00Z"}}
    r = _post(client, "/score", {"items": [item]})
    assert r.status_code == 200, r.text
    assert set(r.json()["results"][0]["unseen"]) >= {c.DEAL_ID, c.CONTACT_ID}
    r = _post(client, "/rank", {"deal": {c.DEAL_ID: "no-such-deal"}, "at": "2026-06-01T10:00:00Z", "top_k": 2})
    assert r.status_code == 200, r.text
    assert all(c.DEAL_ID in e["unseen"] for e in r.json()["ranked"])


def test_rank_by_deal_id_equals_rank_with_history(client, history):
    """/rank with the deal by id == /rank with the deal's rows (from the dataset) in the request."""
    from features.build import to_records

    ds = history["dataset"]
    aid = history["ids"][2]
    deal_id = ds[c.ACTIVITIES].set_index(c.ACTIVITY_ID).loc[aid, c.DEAL_ID]
    at = history["at"]
    acts = ds[c.ACTIVITIES]
    mine = acts[(acts[c.DEAL_ID] == deal_id).fillna(False).to_numpy(bool)]
    resp = ds[c.RESPONSES]
    deal = to_records(ds[c.DEALS][ds[c.DEALS][c.DEAL_ID] == deal_id])[0]
    body = {"deal": deal, "at": at.isoformat(), "top_k": 4,
            "account": to_records(ds[c.ACCOUNTS][ds[c.ACCOUNTS][c.ACCOUNT_ID] == deal[c.ACCOUNT_ID]])[0],
            "history": {c.ACTIVITIES: to_records(mine), c.RESPONSES: to_records(resp[resp[c.ACTIVITY_ID].isin(
                            set(mine[c.ACTIVITY_ID]))]),
                        c.DEAL_STAGES: to_records(ds[c.DEAL_STAGES][ds[c.DEAL_STAGES][c.DEAL_ID] == deal_id]),
                        c.OUTCOMES: to_records(ds[c.OUTCOMES][ds[c.OUTCOMES][c.DEAL_ID] == deal_id]),
                        c.CONTACTS: to_records(ds[c.CONTACTS][ds[c.CONTACTS][c.CONTACT_ID].isin(
                            set(mine[c.CONTACT_ID].dropna()))])}}
    full = _post(client, "/rank", body)
    by_id = _post(client, "/rank", {"deal": {c.DEAL_ID: deal_id}, "at": at.isoformat(), "top_k": 4})
    assert full.status_code == by_id.status_code == 200, (full.text, by_id.text)
    a, b = full.json()["ranked"], by_id.json()["ranked"]
    assert len(a) == 4 and [x["activity"] for x in a] == [y["activity"] for y in b]
    for x, y in zip(a, b, strict=True):
        assert abs(x["p_outcome"] - y["p_outcome"]) <= 1e-12 and x["factors"] == y["factors"]


def test_events_are_idempotent_and_change_the_next_score(client, history):
    aid = history["ids"][3]
    acts = history["dataset"][c.ACTIVITIES].set_index(c.ACTIVITY_ID)
    row = acts.loc[aid]
    before = _post(client, "/score", {"items": [_by_id(aid)]}).json()["results"][0]
    at = row[c.OCCURRED_AT]
    new = [{c.ACTIVITY_ID: f"ev-{k}", c.TYPE: "meeting", c.OCCURRED_AT: (at - np.timedelta64(k + 1, "h")).isoformat(),
            c.DEAL_ID: row[c.DEAL_ID], c.CONTACT_ID: row[c.CONTACT_ID], c.REP_ID: row[c.REP_ID]} for k in range(3)]
    responses = [{c.ACTIVITY_ID: "ev-0", c.RESPONSE: "meeting_booked",
                  c.OCCURRED_AT: (at - np.timedelta64(30, "m")).isoformat()}]
    body = {"responses": responses, "activities": new}  # responses first: any order is fine
    r1 = _post(client, "/events", body)
    assert r1.status_code == 200, r1.text
    assert r1.json() == {"stored": {"activities": 3, "responses": 1}}
    after = _post(client, "/score", {"items": [_by_id(aid)]}).json()["results"][0]
    assert after["p_outcome"] != before["p_outcome"] or after["p_output"] != before["p_output"]
    r2 = _post(client, "/events", body)  # the same rows again: replaced, not added
    assert r2.status_code == 200
    again = _post(client, "/score", {"items": [_by_id(aid)]}).json()["results"][0]
    assert again == after


def test_a_bad_row_refuses_the_whole_request(client):
    body = {"activities": [{c.ACTIVITY_ID: "ok-1", c.TYPE: "call", c.OCCURRED_AT: "2026-01-01T00:00:00Z"},
                           {c.ACTIVITY_ID: "bad-1", c.TYPE: "call", c.OCCURRED_AT: "yesterday"}],
            "deals": [{c.DEAL_ID: "new-deal", c.AMOUNT: 10.0}]}
    r = _post(client, "/events", body)
    assert r.status_code == 422, r.text
    err = r.json()["errors"][0]
    assert (err["table"], err["index"], err["field"]) == ("activities", 1, c.OCCURRED_AT)
    r = _post(client, "/score", {"items": [{"activity": {c.ACTIVITY_ID: "ok-1", c.TYPE: "call",
                                                         c.DEAL_ID: "new-deal"}}]})
    assert c.DEAL_ID in r.json()["results"][0]["unseen"]  # nothing of the refused request was stored
    r = _post(client, "/events", {"activities": [{c.TYPE: "call", c.OCCURRED_AT: "2026-01-01T00:00:00Z"}]})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == c.ACTIVITY_ID
    r = _post(client, "/events", {"meetings": []})
    assert r.status_code == 422 and "unknown table" in r.json()["errors"][0]["message"]
    r = _post(client, "/events", {"deals": [{c.DEAL_ID: "x", "stage_order": 2}]})
    assert r.status_code == 422 and "deal_stages" in r.json()["errors"][0]["message"]


def test_deleting_a_contact_removes_it_from_the_next_score(client, history):
    aid = history["ids"][4]
    row = history["dataset"][c.ACTIVITIES].set_index(c.ACTIVITY_ID).loc[aid]
    contact = row[c.CONTACT_ID]
    item = {"activity": {c.TYPE: "email", c.CONTACT_ID: contact, c.OCCURRED_AT: row[c.OCCURRED_AT].isoformat()}}
    before = _post(client, "/score", {"items": [item], "explain": True}).json()["results"][0]
    assert c.CONTACT_ID not in before["unseen"]
    r = client.delete(f"/contacts/{contact}")
    assert r.status_code == 200 and r.json()["deleted"][c.CONTACTS] == 1 and r.json()["deleted"][c.ACTIVITIES] > 0
    after = _post(client, "/score", {"items": [item], "explain": True}).json()["results"][0]
    assert c.CONTACT_ID in after["unseen"]  # nothing of the contact is left
    no_history = _post(client, "/score", {"items": [item | {"history": {}}], "explain": True}).json()["results"][0]
    assert after["p_outcome"] == no_history["p_outcome"]
    assert client.delete(f"/contacts/{contact}").json() == {"deleted": {}}


def test_deleting_a_deal(client, history):
    deal = history["dataset"][c.DEALS][c.DEAL_ID].iloc[-1]
    r = client.delete(f"/deals/{deal}")
    assert r.status_code == 200 and r.json()["deleted"][c.DEALS] == 1
    assert client.get(f"/deals/{deal}/next").status_code == 404


def test_deal_next_json(client, history):
    aid = history["ids"][5]
    deal = history["dataset"][c.ACTIVITIES].set_index(c.ACTIVITY_ID).loc[aid, c.DEAL_ID]
    r = client.get(f"/deals/{deal}/next", params={"top_k": 3, "at": history["at"].isoformat()})
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["deal"][c.DEAL_ID] == deal and len(data["ranked"]) == 3 and data["recent_activities"]
    assert data["stage"] is None or "stage" in data["stage"]
    r = client.get("/deals/nothing-here/next")
    assert r.status_code == 404 and r.json()["errors"][0]["field"] == "deal_id"
    assert client.get(f"/deals/{deal}/next", params={"top_k": 0}).status_code == 422
