"""/rank with an effect model in the bundle: the contract, the order, the guardrail, the prediction log."""

from __future__ import annotations

import json
import time

import pytest

from features import contract as c
from serving.prediction_log import iter_records
from tests.serving.helpers import rank_body
from tests.serving.test_service import post

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("tiny_world")]

EFFECT_FIELDS = ("effect", "effect_low", "effect_high", "overlap", "cost", "net_effect", "propensity")


def _candidates(tiny_item: dict) -> list[dict]:
    contact = (tiny_item.get("contact") or {}).get(c.CONTACT_ID)
    out = []
    for t in ("call", "email", "meeting", "demo", "proposal"):
        out.append({c.TYPE: t, c.CONTACT_ID: contact, c.IS_AUTOMATED: False, c.PERSONALIZATION: 0.9})
    out.append({c.TYPE: "email", c.CONTACT_ID: contact, c.IS_AUTOMATED: True, c.PERSONALIZATION: 0.1,
                c.SEQUENCE_STEP: 1})
    out.append({c.TYPE: "none", c.IS_AUTOMATED: False})
    return out


def _records(where, n: int, timeout: float = 10.0) -> list[dict]:
    deadline = time.monotonic() + timeout  # the log's own thread writes the record
    while len(recs := [r for r in iter_records(where) if r.get("endpoint") == "rank"]) < n \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    return recs


def test_rank_reports_effects_orders_by_net_effect_and_logs_what_was_shown(effects_bundle_dir, serving_home,
                                                                            tiny_item, tmp_path):
    from tests.serving.conftest import app_client

    where = tmp_path / "predictions"
    candidates = _candidates(tiny_item)
    with app_client(effects_bundle_dir, serving_home, prediction_log=str(where)) as client:
        r = post(client, "/rank", rank_body(tiny_item, candidates, top_k=4))
        assert r.status_code == 200, r.text
        body = r.json()
        version = client.get("/model").json().get("version")
    assert body["ranked_by"] == "effect" and body["n_candidates"] == len(candidates) and len(body["ranked"]) == 4
    for entry in body["ranked"]:
        assert all(entry.get(f) is not None for f in EFFECT_FIELDS), entry
        assert entry["effect_low"] <= entry["effect"] <= entry["effect_high"]
        assert entry["net_effect"] == pytest.approx(entry["effect"] - entry["cost"])
        assert entry["cost"] >= 0
    with_overlap = [e for e in body["ranked"] if e["overlap"]]
    assert body["ranked"][: len(with_overlap)] == with_overlap  # no extrapolation above a supported candidate
    free = [e["net_effect"] for e in with_overlap if not e.get("guardrail")]
    assert free == sorted(free, reverse=True)
    assert [e["propensity"] for e in body["ranked"]] == [1.0, 0.0, 0.0, 0.0]

    [rec] = _records(where, 1)
    assert rec["model"]["version"] == version and rec["ranked_by"] == "effect" and rec["top_k"] == 4
    assert rec["state"]["deal_id"] == tiny_item["deal"][c.DEAL_ID] and rec["state_id"].startswith(
        f"{tiny_item['deal'][c.DEAL_ID]}@")
    assert len(rec["candidates"]) == len(candidates) and sorted(rec["order"]) == list(range(len(candidates)))
    shown = [cd for cd in sorted(rec["candidates"], key=lambda cd: cd["rank"]) if cd["shown"]]
    assert [(cd["type"], cd.get("is_automated")) for cd in shown] == [
        (e["activity"][c.TYPE], e["activity"].get(c.IS_AUTOMATED)) for e in body["ranked"]]
    assert [cd["effect"] for cd in shown] == pytest.approx([e["effect"] for e in body["ranked"]])
    assert sum(cd["propensity"] for cd in rec["candidates"]) == pytest.approx(1.0)
    assert all(cd["p_outcome"] is not None for cd in rec["candidates"])
    assert "history" not in json.dumps(rec)  # ids and scores, not the CRM history


def test_the_automated_email_never_outranks_the_hand_one_without_evidence(effects_bundle_dir, serving_home,
                                                                         tiny_item):
    from tests.serving.conftest import app_client

    with app_client(effects_bundle_dir, serving_home, prediction_log="off") as client:
        body = post(client, "/rank", rank_body(tiny_item, _candidates(tiny_item), top_k=50)).json()
    pos = {(e["activity"][c.TYPE], bool(e["activity"].get(c.IS_AUTOMATED))): (k, e)
           for k, e in enumerate(body["ranked"])}
    (k_auto, auto), (k_hand, hand) = pos[("email", True)], pos[("email", False)]
    assert k_auto > k_hand or auto["effect_low"] > hand["effect_high"]
    if k_auto > k_hand and auto["net_effect"] > hand["net_effect"]:
        assert "not shown above the same touch by hand" in auto["guardrail"]


def test_exploration_is_logged_with_its_propensities(effects_bundle_dir, serving_home, tiny_item, tmp_path):
    from tests.serving.conftest import app_client

    where = tmp_path / "predictions"
    with app_client(effects_bundle_dir, serving_home, prediction_log=str(where), rank_exploration="0.5") as client:
        answers = [post(client, "/rank", rank_body(tiny_item, _candidates(tiny_item), top_k=1)).json()
                   for _ in range(12)]
    recs = _records(where, 12)
    assert len(recs) == 12 and all(r["exploration"] == 0.5 for r in recs)
    assert [r["explored"] for r in recs] == [a["explored"] for a in answers]
    pool = [cd for cd in recs[0]["candidates"] if cd["overlap"]]
    top = [cd for cd in recs[0]["candidates"] if cd["rank"] == 0][0]
    for cd in pool:  # e/|pool| each, plus 1-e for the ranker's own pick (when not explored)
        want = 0.5 / len(pool) + (0.5 if cd["index"] == top["index"] and not recs[0]["explored"] else 0.0)
        if not recs[0]["explored"]:
            assert cd["propensity"] == pytest.approx(want)
    assert any(r["explored"] for r in recs)  # 12 draws at e = 0.5: all unexplored has chance 1/4096


def test_unknown_types_and_contacts_are_a_4xx_or_unseen_never_a_5xx(effects_bundle_dir, serving_home, tiny_item):
    from tests.serving.conftest import app_client

    odd = [{c.TYPE: "carrier_pigeon", c.IS_AUTOMATED: False},
           {c.TYPE: "call", c.CONTACT_ID: "nobody-we-know", c.IS_AUTOMATED: False},
           {c.TYPE: "call", c.IS_AUTOMATED: False}]
    with app_client(effects_bundle_dir, serving_home, prediction_log="off") as client:
        r = post(client, "/rank", rank_body(tiny_item, odd, top_k=10))
        assert r.status_code < 500, r.text
        if r.status_code == 200:
            by_type = {e["activity"][c.TYPE]: e for e in r.json()["ranked"]}
            assert "type" in by_type["carrier_pigeon"]["unseen"]
            assert by_type["carrier_pigeon"]["overlap"] is False  # an unseen kind is an extrapolation
        else:
            assert "carrier_pigeon" in r.text
        bad = post(client, "/rank", rank_body(tiny_item, [{c.TYPE: 7}], top_k=1))
        assert 400 <= bad.status_code < 500 and "candidates" in bad.text
        settings = post(client, "/rank", rank_body(tiny_item, [{c.TYPE: "call", c.IS_AUTOMATED: "maybe"}]))
        assert 400 <= settings.status_code < 500
