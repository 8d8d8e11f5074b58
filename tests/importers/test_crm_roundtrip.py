"""Simulated tables → Salesforce export → adapter → the same tables (and the same model quality).

What a Salesforce export cannot carry, and is therefore compared differently (docs/crm.md,
"Round trip"):

- a task logged on a later local day than it happened keeps only its day
  (``occurred_at`` = 12:00 rep-local on ``ActivityDate``);
- call results (``CallDisposition``) and bounces (``IsBounced``) have no time of their own:
  they are dated at the call / the send; a no-show at the meeting's start;
- ``outcomes.contact_id`` (field history records the checkbox, not who agreed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import contract as c
from features.dataset import write_dataset
from features.validation import validate_dataset
from importers.crm import config_from_dict, convert_crm, import_crm_export
from importers.crm.sf_export import to_salesforce_export

ID_KINDS = {c.ACTIVITY_ID: "activities", c.DEAL_ID: "deals", c.CONTACT_ID: "contacts", c.ACCOUNT_ID: "accounts",
            c.REP_ID: "reps", c.OWNER_REP_ID: "reps"}


def simulated(n_activities: int, seed: int):
    """A simulated history (the hand-made test below needs none)."""
    from simulator.generate import simulate
    from simulator.params import SimulationConfig

    return simulate(SimulationConfig(n_activities=n_activities, seed=seed))


def back_to_original_ids(tables: dict[str, pd.DataFrame], export) -> dict[str, pd.DataFrame]:
    inverse = {kind: export.original_ids(kind) for kind in export.ids}
    out = {}
    for name, frame in tables.items():
        frame = frame.copy()
        for column, kind in ID_KINDS.items():
            if column in frame.columns:
                frame[column] = frame[column].map(
                    lambda v, k=kind: inverse[k].get(v, v) if isinstance(v, str) else v).astype("string")
        out[name] = frame
    return out


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory):
    sim = simulated(2500, seed=3)
    directory = tmp_path_factory.mktemp("sf_export")
    export = to_salesforce_export(sim.tables, directory, rep_timezone="America/Chicago")
    config_path = export.write_config(tmp_path_factory.mktemp("cfg") / "org.yaml")
    out = tmp_path_factory.mktemp("imported")
    report = import_crm_export("salesforce", directory, out, as_of=export.as_of, config=config_path, fmt="parquet")
    conversion = convert_crm("salesforce", directory, as_of=export.as_of, config=config_from_dict(export.config))
    return sim, export, report, back_to_original_ids(conversion.tables, export), out


def test_round_trip_writes_every_object_and_a_valid_dataset(round_trip):
    sim, export, report, back, out = round_trip
    for name in ("Task", "Event", "EmailMessage", "Opportunity", "OpportunityHistory", "OpportunityFieldHistory",
                 "OpportunityStage", "Contact", "Account", "User"):
        assert (export.directory / f"{name}.csv").exists(), name
    assert report.ok, report.errors + report.validation_errors
    assert validate_dataset(out).ok
    assert set(back) == set(sim.tables)
    assert sum(report.dropped.values()) == 0  # nothing in a simulated history is a plan or deleted


def test_round_trip_activities_equal_except_the_day_precision_of_late_logged_tasks(round_trip):
    sim, export, report, back, _ = round_trip
    original = sim.tables[c.ACTIVITIES].set_index(c.ACTIVITY_ID)
    got = back[c.ACTIVITIES].set_index(c.ACTIVITY_ID)
    assert list(got.columns) == list(original.columns)  # custom fields come back under their own names
    got = got.loc[original.index]
    for column in original.columns:
        if column == c.OCCURRED_AT:
            continue
        pd.testing.assert_series_equal(got[column], original[column], check_dtype=False, obj=column)
    local = original[c.OCCURRED_AT].dt.tz_convert("America/Chicago")
    # events have their own start; emails their EmailMessage.MessageDate: only other tasks lose the time
    late = (local.dt.date != original[c.LOGGED_AT].dt.tz_convert("America/Chicago").dt.date) & ~original[c.TYPE].isin(
        ["meeting", "demo", "workshop", "email"])
    assert late.sum() > 0
    assert (got[c.OCCURRED_AT][~late] == original[c.OCCURRED_AT][~late]).all()
    noon = pd.to_datetime(local[late].dt.strftime("%Y-%m-%d 12:00")).dt.tz_localize("America/Chicago").dt.tz_convert("UTC")
    assert (got[c.OCCURRED_AT][late] == noon).all()
    assert report.inputs["Task.csv"].notes[
        "logged on a later day: occurred_at = ActivityDate 12:00 rep-local"] == int(late.sum())
    assert export.approximated["occurred_at of tasks logged on a later day: day precision"] == int(late.sum())


def test_round_trip_responses_equal_with_documented_timing(round_trip):
    sim, _, _, back, _ = round_trip
    acts = back[c.ACTIVITIES].set_index(c.ACTIVITY_ID)
    original = sim.tables[c.RESPONSES]
    merged = original.merge(back[c.RESPONSES], on=[c.ACTIVITY_ID, c.RESPONSE], how="outer", indicator=True,
                            suffixes=("", "_back"))
    assert (merged["_merge"] == "both").all(), merged[merged["_merge"] != "both"].head()
    kind = merged[c.ACTIVITY_ID].map(acts[c.TYPE])
    sent = merged[c.ACTIVITY_ID].map(acts[c.DIRECTION]).eq("outbound").fillna(False)
    at_activity = (
        ((kind == "call") & merged[c.RESPONSE].isin(["connected", "negative_reply"]))
        | ((kind == "email") & sent & (merged[c.RESPONSE] == "bounced"))   # IsBounced: at the send time
        | (kind.isin(["meeting", "demo", "workshop"]) & (merged[c.RESPONSE] == "no_show"))
    )
    exact = merged[~at_activity]
    assert (exact[f"{c.OCCURRED_AT}_back"] == exact[c.OCCURRED_AT]).all()
    dated = merged[at_activity]
    assert (dated[f"{c.OCCURRED_AT}_back"] == dated[c.ACTIVITY_ID].map(acts[c.OCCURRED_AT])).all()
    assert set(merged[c.RESPONSE]) >= {"opened", "replied", "positive_reply", "negative_reply", "connected",
                                       "meeting_booked", "bounced", "unsubscribed", "clicked"}


@pytest.mark.parametrize("table", [c.DEAL_STAGES, c.OUTCOMES, c.DEALS, c.CONTACTS, c.ACCOUNTS, c.REPS])
def test_round_trip_other_tables_equal(round_trip, table):
    sim, _, _, back, _ = round_trip
    original = sim.tables[table]
    got = back[table]
    columns = [col for col in original.columns if not (table == c.OUTCOMES and col == c.CONTACT_ID)]
    assert [col for col in got.columns if col in columns] == columns
    key = {c.DEAL_STAGES: [c.DEAL_ID, c.ENTERED_AT], c.OUTCOMES: [c.DEAL_ID, c.OUTCOME, c.OCCURRED_AT]}.get(
        table, [columns[0]])
    o = original[columns].sort_values(key).reset_index(drop=True)
    g = got[columns].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(g, o, check_dtype=False)


def test_contract_dataset_without_custom_fields_round_trips(tmp_path):
    """A hand-made dataset (no simulator): contract columns only, one of each activity kind."""
    t0 = pd.Timestamp("2025-03-03T15:00:00Z")
    acts = pd.DataFrame({
        c.ACTIVITY_ID: ["a1", "a2", "a3", "a4"],
        c.OCCURRED_AT: [t0, t0 + pd.Timedelta(hours=1), t0 + pd.Timedelta(days=1), t0 + pd.Timedelta(days=2)],
        c.TYPE: ["call", "email", "demo", "proposal"],
        c.REP_ID: ["r1"] * 4, c.DEAL_ID: ["d1"] * 4, c.CONTACT_ID: ["p1"] * 4, c.ACCOUNT_ID: ["x1"] * 4,
        c.DIRECTION: ["outbound", "outbound", pd.NA, "outbound"],
        c.DURATION_S: [120.0, np.nan, 1800.0, np.nan],
        c.LOGGED_AT: [t0 + pd.Timedelta(minutes=5), t0 + pd.Timedelta(hours=1), t0, t0 + pd.Timedelta(days=2)],
    })
    tables = {
        c.ACTIVITIES: acts,
        c.RESPONSES: pd.DataFrame({c.ACTIVITY_ID: ["a1", "a2", "a4"], c.RESPONSE: ["connected", "replied",
                                                                                 "positive_reply"],
                                   c.OCCURRED_AT: [t0, t0 + pd.Timedelta(hours=3), t0 + pd.Timedelta(days=3)]}),
        c.DEAL_STAGES: pd.DataFrame({c.DEAL_ID: ["d1", "d1"], c.STAGE: ["Discovery", "Proposal"],
                                     c.STAGE_ORDER: [1, 2], c.ENTERED_AT: [t0 - pd.Timedelta(days=5),
                                                                           t0 + pd.Timedelta(days=4)]}),
    }
    from features.dataset import coerce_table

    tables = {k: coerce_table(k, v) for k, v in tables.items()}
    export = to_salesforce_export(tables, tmp_path / "sf")
    back = back_to_original_ids(
        convert_crm("salesforce", tmp_path / "sf", as_of=export.as_of, config=config_from_dict(export.config)).tables,
        export)
    got = back[c.ACTIVITIES].set_index(c.ACTIVITY_ID).loc[["a1", "a2", "a3", "a4"]]
    assert list(got[c.TYPE]) == ["call", "email", "demo", "proposal"]
    assert list(got[c.OCCURRED_AT]) == list(acts[c.OCCURRED_AT])
    assert list(got[c.DURATION_S].fillna(-1)) == [120.0, -1, 1800.0, -1]
    r = back[c.RESPONSES].set_index(c.ACTIVITY_ID)
    assert r.loc["a2", c.RESPONSE] == "replied" and r.loc["a4", c.RESPONSE] == "positive_reply"
    stages = back[c.DEAL_STAGES]
    assert list(stages[c.STAGE_ORDER]) == [1, 2]


def _quality(data_dir: Path) -> dict[str, float]:
    from training.config import load_config
    from training.data import load_table
    from training.train import run_training

    cfg = load_config(**{"lightgbm.num_boost_round": 150, "lightgbm.num_threads": 1, "labels": ["outcome", "output"]})
    loaded = load_table(data_dir, cfg)
    result = run_training(loaded, cfg)
    return {label: result.fits[(label, "plan")].metrics["test"]["auc"] for label in ("outcome", "output")}


@pytest.mark.slow
def test_training_on_the_salesforce_round_trip_matches_training_on_the_simulation(tmp_path):
    sim = simulated(12000, seed=11)
    direct = tmp_path / "direct"
    write_dataset(sim.tables, direct, "parquet")
    export = to_salesforce_export(sim.tables, tmp_path / "sf")
    imported = tmp_path / "imported"
    report = import_crm_export("salesforce", tmp_path / "sf", imported, as_of=export.as_of,
                               config=config_from_dict(export.config))
    assert report.ok, report.errors + report.validation_errors
    on_tables, on_export = _quality(direct), _quality(imported)
    for label in ("outcome", "output"):
        assert on_tables[label] > 0.6, (label, on_tables)
        assert on_export[label] == pytest.approx(on_tables[label], abs=0.03), (label, on_tables, on_export)
