"""Simulated tables → HubSpot API export → adapter → the same tables, but for what HubSpot cannot hold.

The adapter reads calls, emails and meetings (shared/crm/CRM_EXPORTS.md 5.2), and an export
has no place for some facts. What comes back differently (docs/crm.md, "Round trip"), as
the comparisons below check it:

- activities of other types (inmail, social, proposal, none) are not written, and an inbound
  email is an ``INCOMING_EMAIL``, which the adapter reads as a reply, not an activity;
- of the responses only these come back: call outcomes (``connected``, ``negative_reply``,
  ``meeting_booked`` when connected) and ``bounced`` and ``no_show`` dated at the call, the
  send and the meeting's start; replies to sent emails (``replied``, ``positive_reply``,
  ``negative_reply``) exactly, as threaded incoming emails. Opens, clicks, unsubscribes and
  responses to meetings or inbound emails have no HubSpot home;
- ``outcomes.contact_id`` (a deal property records no contact), ``reps.hired_at`` (owners
  have no hire date), and reps who own no written activity or deal.

Everything else (every column of the written activities, stages, outcomes, deals, contacts,
accounts, and the custom fields) comes back equal. The comparisons are functions, so the
last tests can show that each of them fails on an export that lost something.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import contract as c
from features.dataset import coerce_table, load_dataset
from features.validation import validate_dataset
from importers.crm import config_from_dict, convert_crm, import_crm_export
from importers.crm.hubspot import DROP_INBOUND
from importers.crm.hubspot_export import to_hubspot_export
from tests.importers.test_crm_roundtrip import back_to_original_ids, simulated

TZ_DAY = pd.Timedelta(days=1)
MEETINGS = ("meeting", "demo", "workshop")
WRITTEN_TYPES = ("call", "email", *MEETINGS)
REPLIES = ("replied", "positive_reply", "negative_reply")


def exported_activities(acts: pd.DataFrame) -> pd.Series:
    """Activities an export gives back as activities: calls, sent emails, meetings."""
    return acts[c.TYPE].isin(WRITTEN_TYPES) & ~(acts[c.TYPE].eq("email") & acts[c.DIRECTION].eq("inbound")).fillna(False)


def expected_responses(original: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The responses a HubSpot export carries, at the time it gives them (the rules of the module docstring)."""
    acts = original[c.ACTIVITIES].set_index(c.ACTIVITY_ID)
    r = original[c.RESPONSES].sort_values(c.OCCURRED_AT, kind="stable").drop_duplicates([c.ACTIVITY_ID, c.RESPONSE])
    kind = r[c.ACTIVITY_ID].map(acts[c.TYPE])
    sent = kind.eq("email") & ~r[c.ACTIVITY_ID].map(acts[c.DIRECTION]).eq("inbound").fillna(False)
    at_activity = r[c.ACTIVITY_ID].map(acts[c.OCCURRED_AT])
    has = {name: set(r.loc[r[c.RESPONSE] == name, c.ACTIVITY_ID]) for name in ("connected", "meeting_booked")}
    connected = r[c.ACTIVITY_ID].isin(has["connected"])
    booked = r[c.ACTIVITY_ID].isin(has["meeting_booked"]) & connected
    call = kind.eq("call") & (
        r[c.RESPONSE].eq("connected") | (r[c.RESPONSE].eq("negative_reply") & ~booked)
        | (r[c.RESPONSE].eq("meeting_booked") & connected))
    bounce = sent & r[c.RESPONSE].eq("bounced")
    reply = sent & r[c.RESPONSE].isin(REPLIES) & (r[c.OCCURRED_AT] > at_activity)
    no_show = kind.isin(MEETINGS) & r[c.RESPONSE].eq("no_show")
    keep = (call | bounce | reply | no_show).fillna(False).to_numpy(bool)
    out = r[keep].copy()
    dated = (call | bounce | no_show).fillna(False).to_numpy(bool)[keep]
    out.loc[dated, c.OCCURRED_AT] = at_activity[keep][dated]
    return out.reset_index(drop=True)


# --- the comparisons (each raises AssertionError naming what differs) ---------------------------

def assert_activities_round_trip(original: dict[str, pd.DataFrame], back: dict[str, pd.DataFrame]) -> None:
    acts = original[c.ACTIVITIES]
    want = acts[exported_activities(acts).to_numpy(bool)].set_index(c.ACTIVITY_ID)
    got = back[c.ACTIVITIES].set_index(c.ACTIVITY_ID)
    assert list(got.columns) == list(want.columns), "columns"  # custom fields under their own names
    assert sorted(got.index) == sorted(want.index), "activity ids"
    got = got.loc[want.index]
    for column in want.columns:
        expected = want[column]
        if column == c.IS_AUTOMATED:  # only emails carry hs_sequence_id
            expected = expected.where(want[c.TYPE].eq("email"), False)
        pd.testing.assert_series_equal(got[column], expected, check_dtype=False, obj=column)


def assert_responses_round_trip(original: dict[str, pd.DataFrame], back: dict[str, pd.DataFrame]) -> None:
    want = expected_responses(original)
    merged = want.merge(back[c.RESPONSES], on=[c.ACTIVITY_ID, c.RESPONSE], how="outer", indicator=True,
                        suffixes=("", "_back"))
    assert (merged["_merge"] == "both").all(), merged[merged["_merge"] != "both"].head(10)
    assert (merged[f"{c.OCCURRED_AT}_back"] == merged[c.OCCURRED_AT]).all(), merged[
        merged[f"{c.OCCURRED_AT}_back"] != merged[c.OCCURRED_AT]].head(10)


def assert_table_round_trip(original: dict[str, pd.DataFrame], back: dict[str, pd.DataFrame], table: str) -> None:
    want = original[table]
    got = back[table]
    columns = [col for col in want.columns if not (table == c.OUTCOMES and col == c.CONTACT_ID)
               and not (table == c.REPS and col == c.HIRED_AT)]
    assert [col for col in got.columns if col in columns] == columns, f"{table} columns"
    if table == c.REPS:  # the adapter's reps are the owners of kept activities and deals
        acts = original[c.ACTIVITIES]
        in_use = set(acts.loc[exported_activities(acts).to_numpy(bool), c.REP_ID]) | set(
            original[c.DEALS][c.OWNER_REP_ID])
        want = want[want[c.REP_ID].isin(in_use)]
        assert got[c.HIRED_AT].isna().all(), "owners have no hire date"
    key = {c.DEAL_STAGES: [c.DEAL_ID, c.ENTERED_AT], c.OUTCOMES: [c.DEAL_ID, c.OUTCOME, c.OCCURRED_AT]}.get(
        table, [columns[0]])
    o = want[columns].sort_values(key).reset_index(drop=True)
    g = got[columns].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(g, o, check_dtype=False, obj=table)


# --- the round trip ----------------------------------------------------------------------------

def _convert(directory: Path, export) -> dict[str, pd.DataFrame]:
    conversion = convert_crm("hubspot", directory, as_of=export.as_of, config=config_from_dict(export.config))
    assert not conversion.report.errors, conversion.report.errors
    return back_to_original_ids(conversion.tables, export)


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory):
    sim = simulated(4000, seed=5)
    directory = tmp_path_factory.mktemp("hs_export")
    # small files, so that emails span several files as a large export's objects do
    export = to_hubspot_export(sim.tables, directory, records_per_file=1000)
    config_path = export.write_config(tmp_path_factory.mktemp("cfg") / "portal.yaml")
    out = tmp_path_factory.mktemp("imported")
    report = import_crm_export("hubspot", directory, out, as_of=export.as_of, config=config_path, fmt="parquet")
    back = back_to_original_ids(load_dataset(out, now=export.as_of + TZ_DAY).tables, export)
    return sim, export, report, back, out


def test_round_trip_writes_api_pages_and_a_valid_dataset(round_trip):
    sim, export, report, back, out = round_trip
    d = export.directory
    for name in ("calls.json", "meetings.json", "deals.json", "pipelines_deals.json", "owners.json",
                 "call_dispositions.json", "companies.json", "contacts.json"):
        assert (d / name).exists(), name
    emails = sorted(p.name for p in d.glob("emails*.json"))
    assert len(emails) > 1 and emails == export.files["emails"]  # split, and read back as one object
    ids, sizes = [], []
    for name in ("calls.json", "meetings.json", *emails):
        pages = json.loads((d / name).read_text(encoding="utf-8"))
        assert all(set(page) <= {"results", "paging"} and len(page["results"]) <= 100 for page in pages)
        records = [r for page in pages for r in page["results"]]
        sizes.append(len(records))
        ids += [r["id"] for r in records]
        assert all(isinstance(v, str) for r in records for v in r["properties"].values())  # API values are strings
    assert all(i.isdigit() and len(i) == 11 for i in ids) and len(set(ids)) == len(ids)  # one engagement id space
    assert report.ok, report.errors + report.validation_errors
    assert validate_dataset(out).ok
    assert set(back) == set(sim.tables)
    acts = sim.tables[c.ACTIVITIES]
    inbound = int((acts[c.TYPE].eq("email") & acts[c.DIRECTION].eq("inbound")).sum())
    replies = sum(1 for name in emails for page in json.loads((d / name).read_text(encoding="utf-8"))
                  for r in page["results"] if r["properties"]["hs_email_direction"] == "INCOMING_EMAIL") - inbound
    assert replies > 0
    assert dict(report.dropped) == {DROP_INBOUND: inbound + replies}  # nothing else: no plans, no deleted records
    assert report.warnings == [(f"{inbound} incoming emails matched no outbound email in the previous 0 days: not "
                                "counted as replies")]


def test_round_trip_activities_equal_but_for_the_types_hubspot_does_not_export(round_trip):
    sim, export, _, back, _ = round_trip
    assert_activities_round_trip(sim.tables, back)
    acts = sim.tables[c.ACTIVITIES]
    left_out = acts.loc[~exported_activities(acts).to_numpy(bool)]
    assert len(left_out) > 0 and len(back[c.ACTIVITIES]) == len(acts) - len(left_out)
    inbound = left_out[c.TYPE].eq("email")
    for kind, n in left_out[~inbound][c.TYPE].value_counts().items():
        assert export.approximated[
            f"activities of a type the adapter does not read (only calls, emails, meetings): {kind}"] == n
    assert export.approximated[
        "inbound emails (INCOMING_EMAIL: the adapter reads it as a reply, not an activity)"] == int(inbound.sum())


def test_round_trip_responses_equal_with_documented_timing_and_losses(round_trip):
    sim, export, _, back, _ = round_trip
    assert_responses_round_trip(sim.tables, back)
    carried = expected_responses(sim.tables)
    original = sim.tables[c.RESPONSES]
    assert set(carried[c.RESPONSE]) == {"connected", "negative_reply", "bounced", "replied", "positive_reply",
                                        "no_show"} | ({"meeting_booked"} & set(carried[c.RESPONSE]))
    lost = {k: v for k, v in export.approximated.items() if k.startswith("responses not carried: ")}
    assert sum(lost.values()) == len(original) - len(carried)
    assert lost["responses not carried: opened (email)"] == int(original.merge(
        sim.tables[c.ACTIVITIES][[c.ACTIVITY_ID, c.TYPE, c.DIRECTION]], on=c.ACTIVITY_ID).query(
        "response == 'opened' and type == 'email' and direction != 'inbound'").shape[0])
    # each timing approximation counts the rows whose time moved
    acts = sim.tables[c.ACTIVITIES].set_index(c.ACTIVITY_ID)
    at = original.set_index([c.ACTIVITY_ID, c.RESPONSE])[c.OCCURRED_AT]
    moved = carried[carried.set_index([c.ACTIVITY_ID, c.RESPONSE]).index.map(at).to_numpy() != carried[
        c.OCCURRED_AT].to_numpy()]
    kind = moved[c.ACTIVITY_ID].map(acts[c.TYPE])
    assert export.approximated["call outcomes at the call's time"] == int(kind.eq("call").sum()) > 0
    assert export.approximated["bounced at the send time"] == int(moved[c.RESPONSE].eq("bounced").sum()) > 0
    assert export.approximated["no_show at the meeting's start"] == int(moved[c.RESPONSE].eq("no_show").sum())


@pytest.mark.parametrize("table", [c.DEAL_STAGES, c.OUTCOMES, c.DEALS, c.CONTACTS, c.ACCOUNTS, c.REPS])
def test_round_trip_other_tables_equal(round_trip, table):
    sim, _, _, back, _ = round_trip
    assert_table_round_trip(sim.tables, back, table)


def test_every_approximation_is_counted(round_trip):
    """The counts say exactly what the comparisons above allowed for, and nothing else is listed."""
    sim, export, _, _, _ = round_trip
    t = sim.tables
    a = export.approximated
    assert a["outcome contact_id (a deal property records no contact)"] == int(t[c.OUTCOMES][c.CONTACT_ID].notna().sum())
    assert a["reps.hired_at (owners have no hire date)"] == int(t[c.REPS][c.HIRED_AT].notna().sum()) > 0
    assert a["seniority not derivable from the title: the seniority property"] > 0  # carried by a custom property
    allowed = ("activities of a type the adapter does not read", "inbound emails", "responses not carried: ",
               "call outcomes at the call's time", "bounced at the send time", "no_show at the meeting's start",
               "outcome contact_id", "reps.hired_at", "seniority not derivable", "reps who own no written")
    assert all(k.startswith(allowed) for k in a), sorted(k for k in a if not k.startswith(allowed))
    assert all(v > 0 for v in a.values())


# --- the comparisons can fail ---------------------------------------------------------------------

def _edit(src: Path, dst: Path, stem: str, change) -> Path:
    shutil.copytree(src, dst)
    for path in dst.glob(f"{stem}*.json"):
        pages = json.loads(path.read_text(encoding="utf-8"))
        for page in pages if isinstance(pages, list) else [pages]:
            page["results"] = [r for r in (change(r) for r in page["results"]) if r is not None]
        path.write_text(json.dumps(pages), encoding="utf-8")
    return dst


def test_comparisons_fail_on_an_export_that_lost_threads_or_history(round_trip, tmp_path):
    sim, export, _, _, _ = round_trip

    def no_thread(record):
        record["properties"].pop("hs_email_thread_id", None)
        return record

    unthreaded = _convert(_edit(export.directory, tmp_path / "a", "emails", no_thread), export)
    assert_activities_round_trip(sim.tables, unthreaded)  # the activities do not depend on threads...
    with pytest.raises(AssertionError):
        assert_responses_round_trip(sim.tables, unthreaded)  # ...the replies do

    def first_stage_only(record):
        history = record.get("propertiesWithHistory", {}).get("dealstage")
        if history:
            record["propertiesWithHistory"]["dealstage"] = history[-1:]
        return record

    flat = _convert(_edit(export.directory, tmp_path / "b", "deals", first_stage_only), export)
    with pytest.raises(AssertionError):
        assert_table_round_trip(sim.tables, flat, c.DEAL_STAGES)

    count = iter(range(len(sim.tables[c.ACTIVITIES])))
    fewer = _convert(_edit(export.directory, tmp_path / "c", "calls", lambda r: None if next(count) == 6 else r),
                     export)
    with pytest.raises(AssertionError, match="activity ids"):
        assert_activities_round_trip(sim.tables, fewer)


# --- hand-made history, and bad input -------------------------------------------------------------

def test_hand_made_history_round_trips_each_hubspot_mechanism(tmp_path):
    """No simulator: one of each activity kind, and a response through each HubSpot mechanism."""
    t0 = pd.Timestamp("2025-03-03T15:00:00Z")
    h = pd.Timedelta(hours=1)
    acts = pd.DataFrame({
        c.ACTIVITY_ID: ["a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "a9"],
        c.OCCURRED_AT: [t0 + i * h for i in range(9)],
        c.TYPE: ["call", "email", "demo", "inmail", "email", "call", "email", "call", "call"],
        c.REP_ID: ["r1"] * 9, c.DEAL_ID: ["d1"] * 9, c.CONTACT_ID: ["p1"] * 9, c.ACCOUNT_ID: ["x1"] * 9,
        c.DIRECTION: ["outbound", "outbound", pd.NA, "outbound", "inbound", "inbound", "outbound", "outbound",
                      "outbound"],
        c.DURATION_S: [120.0, np.nan, 1800.0, np.nan, np.nan, 30.0, np.nan, 60.0, 60.0],
        c.IS_AUTOMATED: [False, True] + [False] * 7,
        c.LOGGED_AT: [t0 + pd.Timedelta(minutes=5), t0 + h, t0 - TZ_DAY, t0 + 3 * h, t0 + 4 * h, t0 + 5 * h, pd.NaT,
                      t0 + 7 * h, t0 + 8 * h],
    })
    responses = pd.DataFrame([
        ("a1", "connected", t0), ("a1", "meeting_booked", t0 + pd.Timedelta(minutes=3)),
        ("a2", "opened", t0 + 2 * h), ("a2", "positive_reply", t0 + 3 * h), ("a2", "negative_reply", t0 + 30 * h),
        ("a3", "no_show", t0 + 2 * h + pd.Timedelta(minutes=10)), ("a4", "replied", t0 + 8 * h),
        ("a6", "negative_reply", t0 + 5 * h), ("a7", "bounced", t0 + 6 * h + pd.Timedelta(seconds=20)),
        ("a8", "connected", t0 + 7 * h), ("a8", "negative_reply", t0 + 7 * h),  # "Connected - not interested"
        ("a9", "meeting_booked", t0 + 8 * h),  # booked but not connected: no outcome says so
    ], columns=[c.ACTIVITY_ID, c.RESPONSE, c.OCCURRED_AT])
    tables = {
        c.ACTIVITIES: acts, c.RESPONSES: responses,
        c.DEAL_STAGES: pd.DataFrame({c.DEAL_ID: ["d1", "d1"], c.STAGE: ["Discovery", "Proposal"],
                                     c.STAGE_ORDER: [1, 2], c.ENTERED_AT: [t0 - 5 * TZ_DAY, t0 + 4 * TZ_DAY]}),
    }
    tables = {k: coerce_table(k, v) for k, v in tables.items()}
    export = to_hubspot_export(tables, tmp_path / "hs")
    back = _convert(tmp_path / "hs", export)
    got = back[c.ACTIVITIES].set_index(c.ACTIVITY_ID)
    assert sorted(got.index) == ["a1", "a2", "a3", "a6", "a7", "a8", "a9"]  # not the InMail nor the inbound email
    assert list(got.loc[["a1", "a2", "a3", "a6", "a7"], c.TYPE]) == ["call", "email", "demo", "call", "email"]
    assert list(got[c.OCCURRED_AT].loc[["a1", "a3"]]) == [t0, t0 + 2 * h]
    assert got.loc["a2", c.IS_AUTOMATED] and got.loc["a3", c.LOGGED_AT] == t0 - TZ_DAY
    assert got.loc["a7", c.LOGGED_AT] == t0 + 6 * h  # no logged_at: hs_createdate is the activity time
    assert list(got[c.DURATION_S].loc[["a1", "a3", "a6"]]) == [120.0, 1800.0, 30.0]
    assert got.loc["a6", c.DIRECTION] == "inbound"
    r = back[c.RESPONSES].set_index([c.ACTIVITY_ID, c.RESPONSE])[c.OCCURRED_AT].to_dict()
    assert r == {("a1", "connected"): t0, ("a1", "meeting_booked"): t0,  # the outcome "Meeting booked", at the call
                 ("a2", "positive_reply"): t0 + 3 * h, ("a2", "negative_reply"): t0 + 30 * h,  # threaded replies
                 ("a3", "no_show"): t0 + 2 * h, ("a6", "negative_reply"): t0 + 5 * h, ("a7", "bounced"): t0 + 6 * h,
                 ("a8", "connected"): t0 + 7 * h, ("a8", "negative_reply"): t0 + 7 * h}
    assert list(back[c.DEAL_STAGES][c.STAGE]) == ["Discovery", "Proposal"]
    a = export.approximated
    assert a["responses not carried: meeting_booked (call)"] == 1
    assert a["responses not carried: opened (email)"] == 1 and a["responses not carried: replied (inmail, not written)"] == 1
    assert a["call outcomes at the call's time"] == 1 and a["bounced at the send time"] == 1
    assert a["no_show at the meeting's start"] == 1 and a["logged_at missing: hs_createdate = occurred_at"] == 1
    assert export.ids["activities"]["a1"].isdigit() and "a4" not in export.ids["activities"]


def test_writer_refuses_repeated_activity_ids(tmp_path):
    t0 = pd.Timestamp("2025-03-03T15:00:00Z")
    acts = coerce_table(c.ACTIVITIES, pd.DataFrame({c.ACTIVITY_ID: ["a1", "a1"], c.OCCURRED_AT: [t0, t0],
                                                    c.TYPE: ["call", "call"], c.REP_ID: ["r1", "r1"]}))
    with pytest.raises(ValueError, match="activity_id repeats .*'a1'"):
        to_hubspot_export({c.ACTIVITIES: acts}, tmp_path / "hs")
