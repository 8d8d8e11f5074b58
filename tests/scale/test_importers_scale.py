"""The importers' column-wise steps give what the per-row rules they replaced gave.

``hubspot._replies`` (two as-of joins, was a loop over incoming x sent emails),
``common.closing_and_outcomes`` (column operations, was a loop over deals) and the bookings of
``hubspot._meetings`` (one frame, was a frame per meeting) are checked against the per-row
rules, kept here as the reference, on random exports with ties, missing values, threads and
windows; ``benchmarks/bench_importers.py`` times them at 1M activities.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from features import contract as c
from importers.crm.common import closing_and_outcomes, reply_kind
from importers.crm.config import CrmConfig
from importers.crm.hubspot import _HubSpot
from importers.crm.report import ConversionReport


def reference_replies(cfg, incoming: pd.DataFrame, activities: pd.DataFrame) -> list[tuple]:
    """The per-row rule: same thread, else the latest outbound email to the contact within the window."""
    sent = activities[activities[c.TYPE].eq("email") & activities[c.DIRECTION].eq("outbound").fillna(False)]
    thread = sent["_thread"]
    window = pd.Timedelta(days=cfg.reply_window_days)
    rows = []
    for m in incoming.itertuples(index=False):
        pool = sent[(sent[c.OCCURRED_AT] < m.at)]
        target = pool[thread.loc[pool.index].eq(m.thread).fillna(False)] if isinstance(m.thread, str) else pool.iloc[0:0]
        if target.empty:
            target = pool[pool[c.CONTACT_ID].eq(m.contact_id).fillna(False) & (pool[c.OCCURRED_AT] >= m.at - window)]
        if target.empty:
            continue
        best = target.sort_values([c.OCCURRED_AT, c.ACTIVITY_ID]).iloc[-1]
        rows.append((best[c.ACTIVITY_ID], reply_kind(m.text, cfg), m.at))
    return rows


def _maybe(rng, values, p_missing):
    return [None if rng.random() < p_missing else v for v in values]


@pytest.mark.parametrize("seed", range(6))
def test_replies_equal_the_per_row_rule(seed):
    rng = np.random.default_rng(seed)
    n_act, n_in = 300, 200
    base = pd.Timestamp("2025-01-01", tz="UTC")
    minutes = lambda n: pd.to_timedelta(rng.integers(0, 60 * 24 * 40, n) // 30 * 30, unit="min")  # noqa: E731 - ties
    activities = pd.DataFrame({
        c.ACTIVITY_ID: pd.array([f"e{i:04d}" for i in rng.permutation(n_act)], dtype="string"),
        c.TYPE: pd.array(rng.choice(["email", "call"], n_act, p=[0.8, 0.2]), dtype="string"),
        c.DIRECTION: pd.array(_maybe(rng, rng.choice(["outbound", "inbound"], n_act, p=[0.85, 0.15]), 0.05),
                              dtype="string"),
        c.OCCURRED_AT: pd.Series(base + minutes(n_act)).where(rng.random(n_act) > 0.02),
        c.CONTACT_ID: pd.array(_maybe(rng, [f"c{k}" for k in rng.integers(0, 25, n_act)], 0.05), dtype="string"),
        "_thread": pd.array(_maybe(rng, [f"t{k}" for k in rng.integers(0, 40, n_act)], 0.4), dtype="string"),
    })
    incoming = pd.DataFrame({
        "at": pd.Series(base + minutes(n_in)).where(rng.random(n_in) > 0.02),
        c.CONTACT_ID: pd.array(_maybe(rng, [f"c{k}" for k in rng.integers(0, 30, n_in)], 0.1), dtype="string"),
        "thread": pd.array(_maybe(rng, [f"t{k}" for k in rng.integers(0, 50, n_in)], 0.5), dtype="string"),
        "text": pd.array(_maybe(rng, rng.choice(["Not interested, stop", "Sounds great, let's talk", "ok"], n_in),
                                0.2), dtype="string"),
    })
    cfg = CrmConfig(reply_window_days=float(rng.choice([0.5, 3, 14])), negative_reply_patterns=["not interested"],
                    positive_reply_patterns=["sounds great"])
    me = SimpleNamespace(cfg=cfg, report=ConversionReport("hubspot", "export"))
    got = _HubSpot._replies(me, incoming, activities)
    expected = reference_replies(cfg, incoming, activities)
    assert len(expected) > 20  # the data really exercises both rules
    assert list(got.itertuples(index=False, name=None)) == expected
    unmatched = len(incoming) - len(expected)
    assert any(f"{unmatched} incoming emails matched no outbound email" in w for w in me.report.warnings)


def reference_closing(stages: pd.DataFrame, cfg) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The per-deal loop the column version replaced."""
    closing_rows, outcome_rows = [], []
    stage_outcomes = {k.lower(): v for k, v in cfg.stage_outcomes.items()}
    for deal_id, path in stages.groupby(c.DEAL_ID, sort=False):
        path = path.sort_values(c.ENTERED_AT, kind="stable")
        last = path.iloc[-1]
        if bool(last["_closed"]):
            closing_rows.append({c.DEAL_ID: deal_id, c.CLOSED_AT: last[c.ENTERED_AT], c.WON: bool(last["_won"])})
        won = path[path["_won"].astype(bool)]
        if len(won):
            outcome_rows.append({c.DEAL_ID: deal_id, c.OUTCOME: "closed_won", c.OCCURRED_AT: won.iloc[0][c.ENTERED_AT]})
        for _, row in path.iterrows():
            outcome = stage_outcomes.get(str(row[c.STAGE]).lower())
            if outcome:
                outcome_rows.append({c.DEAL_ID: deal_id, c.OUTCOME: outcome, c.OCCURRED_AT: row[c.ENTERED_AT]})
    closing = pd.DataFrame(closing_rows, columns=[c.DEAL_ID, c.CLOSED_AT, c.WON])
    outcomes = pd.DataFrame(outcome_rows, columns=[c.DEAL_ID, c.OUTCOME, c.OCCURRED_AT])
    if len(outcomes):
        outcomes = outcomes.sort_values(c.OCCURRED_AT).drop_duplicates([c.DEAL_ID, c.OUTCOME], keep="first")
    return closing, outcomes


@pytest.mark.parametrize("seed", range(6))
def test_closing_and_outcomes_equal_the_per_deal_loop(seed):
    rng = np.random.default_rng(seed)
    n = 400
    stage = rng.choice(["Prospect", "Demo", "Proposal", "Closed Won", "Closed Lost"], n)
    stages = pd.DataFrame({
        c.DEAL_ID: pd.array(_maybe(rng, [f"d{k}" for k in rng.integers(0, 60, n)], 0.03), dtype="string"),
        c.STAGE: pd.array(stage, dtype="string"),
        c.ENTERED_AT: pd.Series(pd.Timestamp("2025-01-01", tz="UTC")
                                + pd.to_timedelta(rng.integers(0, 30, n), unit="D")).where(rng.random(n) > 0.03),
        "_closed": np.isin(stage, ["Closed Won", "Closed Lost"]),
        "_won": stage == "Closed Won",
    })
    cfg = CrmConfig(stage_outcomes={"demo": "demo_held", "PROPOSAL": "proposal_sent"})
    got = closing_and_outcomes(stages, cfg, pd.Timestamp("2026-01-01", tz="UTC"))
    expected = reference_closing(stages, cfg)
    for g, e in zip(got, expected, strict=True):
        assert len(e) > 5
        pd.testing.assert_frame_equal(g, e)


def test_closing_and_outcomes_of_no_stages():
    empty = pd.DataFrame({c.DEAL_ID: pd.array([], dtype="string"), c.STAGE: pd.array([], dtype="string"),
                          c.ENTERED_AT: pd.Series([], dtype="datetime64[ns, UTC]"), "_closed": [], "_won": []})
    closing, outcomes = closing_and_outcomes(empty, CrmConfig(), pd.Timestamp("2026-01-01", tz="UTC"))
    assert closing.empty and list(closing.columns) == [c.DEAL_ID, c.CLOSED_AT, c.WON]
    assert outcomes.empty and list(outcomes.columns) == [c.DEAL_ID, c.OUTCOME, c.OCCURRED_AT]


def test_flat_reader_in_chunks_reads_what_one_pass_read(tmp_path, monkeypatch):
    import importers.flat as flat

    lines = ["id;when;result;note"] + [f"r{i};2025-01-{1 + i % 28:02d};{'yes' if i % 3 else 'no'};"
                                        f"{'' if i % 5 else ' x '}" for i in range(1000)]
    src = tmp_path / "flat.csv"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    whole = flat.read_flat(src)
    monkeypatch.setattr(flat, "READ_CHUNK_ROWS", 64)
    chunked = flat.read_flat(src)
    pd.testing.assert_frame_equal(chunked.data, whole.data, check_exact=True)
    assert chunked.lines.tolist() == whole.lines.tolist() == list(range(2, 1002))
    assert chunked.data["note"].isna().sum() == 800  # empty cells are missing, " x " is stripped
    assert (chunked.data["note"].dropna() == "x").all()
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines[:300] + ["r-bad;2025-01-01"] + lines[300:]) + "\n", encoding="utf-8")
    with pytest.raises(flat.FlatImportError, match=r"data row 300 \(line 301\) has 2 fields"):
        flat.read_flat(bad)


def reference_bookings(booked: pd.Series, attendees: pd.Series, as_of: pd.Timestamp) -> pd.DataFrame:
    """The per-meeting frames the column version replaced (one frame per booked meeting, concatenated)."""
    frames = [pd.DataFrame({"booked_at": [at] * len(contacts), c.CONTACT_ID: list(contacts)})
              for at, contacts in zip(booked, attendees) if pd.notna(at) and at <= as_of]
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("seed", range(3))
def test_meeting_bookings_equal_the_per_meeting_frames(seed, tmp_path):
    """``hubspot._meetings`` builds its (booking, attendee) rows at once: same rows, same order."""
    import json

    from importers.crm.config import load_config
    from importers.crm.hubspot import read_api_export

    rng = np.random.default_rng(seed)
    base = pd.Timestamp("2025-01-01", tz="UTC")
    records = []
    for i in range(300):
        start = base + pd.Timedelta(minutes=int(rng.integers(0, 60 * 24 * 90)))
        created = start - pd.Timedelta(hours=int(rng.integers(-48, 240)))  # some booked after as-of below
        props = {"hs_timestamp": start.isoformat(), "hs_meeting_start_time": start.isoformat(),
                 "hs_meeting_outcome": str(rng.choice(["COMPLETED", "NO_SHOW", "CANCELED"]))}
        if rng.random() > 0.1:
            props["hs_createdate"] = created.isoformat()
        attendees = [{"id": f"5{k}", "type": "meeting_to_contact"} for k in rng.integers(0, 40, rng.integers(0, 4))]
        records.append({"id": str(1000 + i), "properties": props, "archived": False,
                        "createdAt": created.isoformat() if rng.random() > 0.5 else None,
                        "associations": {"contacts": {"results": attendees}}})
    (tmp_path / "meetings.json").write_text(json.dumps({"results": records}), encoding="utf-8")
    report = ConversionReport("hubspot", tmp_path)
    me = _HubSpot(read_api_export(tmp_path, report), load_config(), base + pd.Timedelta(days=80), report)
    me._set_as_of()
    responses, bookings = [], []
    me._meetings(responses, bookings)
    frame = me._live("meetings")
    booked = me.ts(frame, "hs_createdate", "meetings").fillna(me.ts(frame, "created", "meetings"))
    expected = reference_bookings(booked, frame["_contacts"], me.as_of)
    got = pd.concat(bookings, ignore_index=True)
    assert len(expected) > 200 and booked.isna().any() and (booked > me.as_of).any()  # every branch is exercised
    assert list(got["booked_at"]) == list(expected["booked_at"])
    assert list(got[c.CONTACT_ID]) == list(expected[c.CONTACT_ID])


def test_hubspot_export_split_over_files_reads_as_one_file(tmp_path):
    """``read_api_export`` frames each file's records before the next file: the tables do not depend on the split."""
    from importers.crm import config_from_dict, convert_crm
    from importers.crm.hubspot_export import to_hubspot_export
    from simulator.generate import simulate
    from simulator.params import SimulationConfig

    sim = simulate(SimulationConfig(n_activities=3000, seed=4))
    whole = to_hubspot_export(sim.tables, tmp_path / "whole")
    split = to_hubspot_export(sim.tables, tmp_path / "split", records_per_file=250, page_size=33)
    assert len(split.files["emails"]) > 3 and whole.files["emails"] == ["emails.json"]
    a, b = (convert_crm("hubspot", x.directory, as_of=x.as_of, config=config_from_dict(x.config)) for x in (whole, split))
    assert set(a.tables) == set(b.tables) and a.report.warnings == b.report.warnings
    for name in a.tables:
        pd.testing.assert_frame_equal(a.tables[name], b.tables[name], check_exact=True, obj=name)
