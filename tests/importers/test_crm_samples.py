"""The shared sample exports convert into the expected canonical tables.

One deliberate difference (docs/crm.md, "Differences from the expected tables"):
``deals.amount`` is the amount at creation (from amount history), not the export's final
``Amount``; with ``deal_amount: current`` the expected tables are reproduced exactly.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from features import contract as c
from features.dataset import load_dataset
from features.validation import validate_dataset
from importers.crm import convert_crm, import_crm_export
from importers.crm.common import SORT_KEYS
from importers.crm.config import config_from_dict

AS_OF = "2025-05-02T00:00:00Z"


def _sorted(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    return frame.sort_values(SORT_KEYS[name], kind="stable").reset_index(drop=True)


def assert_tables_match(got: dict[str, pd.DataFrame], expected_dir: Path, skip: dict[str, list[str]] = None) -> None:
    """Every expected table exists with the same columns, rows and dtypes (``skip``: columns compared elsewhere)."""
    expected = load_dataset(expected_dir)
    skip = skip or {}
    assert set(got) == set(expected.tables)
    for name, want in expected.tables.items():
        have = got[name]
        assert list(have.columns) == list(want.columns), name
        cols = [col for col in want.columns if col not in skip.get(name, [])]
        pd.testing.assert_frame_equal(_sorted(have, name)[cols], _sorted(want, name)[cols], obj=name)


def test_salesforce_sample_matches_expected_tables(shared_crm, fixture_org_config):
    conversion = convert_crm("salesforce", shared_crm / "salesforce", as_of=AS_OF, config=fixture_org_config)
    assert conversion.report.errors == []
    assert_tables_match(conversion.tables, shared_crm / "expected" / "salesforce", skip={c.DEALS: [c.AMOUNT]})
    # the deliberate difference: the amount at creation, not the final (edited after the win) Amount
    amount = conversion.tables[c.DEALS].set_index(c.DEAL_ID)[c.AMOUNT]
    assert amount["0065g00000sqEDuAAM"] == 60000.0   # final Amount 84000
    assert amount["0065g00000sTpkrAAC"] == 30000.0   # final Amount 36000
    assert amount["0065g000000cStYAAU"] == 150000.0  # never changed


def test_salesforce_sample_with_current_amount_reproduces_expected_exactly(shared_crm, fixture_org_config):
    cfg = fixture_org_config.with_overrides(deal_amount="current")
    conversion = convert_crm("salesforce", shared_crm / "salesforce", as_of=AS_OF, config=cfg)
    assert_tables_match(conversion.tables, shared_crm / "expected" / "salesforce")
    assert any("final Amount" in w for w in conversion.report.warnings)


def test_hubspot_sample_matches_expected_tables(shared_crm):
    conversion = convert_crm("hubspot", shared_crm / "hubspot" / "api", as_of=AS_OF)
    assert conversion.report.errors == []
    assert_tables_match(conversion.tables, shared_crm / "expected" / "hubspot", skip={c.DEALS: [c.AMOUNT]})
    # no amount history in the sample: the final amount is not used
    assert conversion.tables[c.DEALS][c.AMOUNT].isna().all()
    assert any("no amount history" in w for w in conversion.report.warnings)


def test_hubspot_sample_with_current_amount_reproduces_expected_exactly(shared_crm):
    cfg = config_from_dict({"deal_amount": "current"})
    conversion = convert_crm("hubspot", shared_crm / "hubspot" / "api", as_of=AS_OF, config=cfg)
    assert_tables_match(conversion.tables, shared_crm / "expected" / "hubspot")


def test_salesforce_report_counts_rows_read_kept_and_dropped_by_reason(shared_crm, fixture_org_config):
    report = convert_crm("salesforce", shared_crm / "salesforce", as_of=AS_OF, config=fixture_org_config).report
    tasks = report.inputs["Task.csv"]
    assert (tasks.read, tasks.kept) == (16, 13)
    assert dict(tasks.dropped) == {
        "deleted (IsDeleted = true)": 1,
        "open task (a plan, not an activity)": 1,
        "inbound email (kept as a response)": 1,
    }
    assert tasks.notes["logged on a later day: occurred_at = ActivityDate 12:00 rep-local"] == 1
    events = report.inputs["Event.csv"]
    assert (events.read, events.kept, dict(events.dropped)) == (6, 5, {"after as-of (a plan, not an activity)": 1})
    assert report.inputs["Opportunity.csv"].dropped["deleted (IsDeleted = true)"] == 1
    history = report.inputs["OpportunityHistory.csv"]
    assert history.dropped["deleted (IsDeleted = true)"] == 1
    assert history.notes["rows repeating the stage (amount/close-date edits) merged"] == 2
    assert report.unmapped_stages == {}
    assert {name: m.order for name, m in report.stages.items()} == {
        "Prospecting": 1, "Qualification": 2, "Needs Analysis": 3, "Value Proposition": 4,
        "Id. Decision Makers": 5, "Proposal/Price Quote": 7, "Negotiation/Review": 8, "Closed Won": 9, "Closed Lost": 0,
    }
    assert report.stages["Value Proposition"].rows == 3  # one of them a re-entry
    assert report.tables == {"activities": 18, "responses": 14, "deal_stages": 19, "outcomes": 4, "deals": 5,
                             "contacts": 8, "accounts": 4, "reps": 3}
    assert report.exit_code == 0


def test_hubspot_report_counts_rows_read_kept_and_dropped_by_reason(shared_crm):
    report = convert_crm("hubspot", shared_crm / "hubspot" / "api", as_of=AS_OF).report
    calls = report.inputs["calls.json, calls_archived.json"]
    assert (calls.read, calls.kept, dict(calls.dropped)) == (10, 9, {"archived (deleted in HubSpot)": 1})
    emails = report.inputs["emails.json"]
    assert (emails.read, emails.kept, dict(emails.dropped)) == (9, 6, {"incoming email (kept as a response)": 3})
    meetings = report.inputs["meetings.json"]
    assert dict(meetings.dropped) == {"canceled or rescheduled (hs_meeting_outcome)": 1,
                                      "after as-of (a plan, not an activity)": 1}
    assert report.stages["Presentation Scheduled"].rows == 4  # deal 30700000003 re-enters it
    assert report.stages["Closed Won"].order == 6 and report.stages["Closed Lost"].order == 0
    assert report.stages["Joint Discovery"].order == 2  # second pipeline, its own order


def test_as_of_defaults_to_latest_record_time_and_is_reported(shared_crm, fixture_org_config):
    explicit = convert_crm("salesforce", shared_crm / "salesforce", as_of=AS_OF, config=fixture_org_config)
    inferred = convert_crm("salesforce", shared_crm / "salesforce", config=fixture_org_config)
    assert inferred.report.as_of_inferred and not explicit.report.as_of_inferred
    assert inferred.report.as_of == pd.Timestamp("2025-04-30T15:00:00Z")  # the last Event CreatedDate
    for name, table in explicit.tables.items():
        pd.testing.assert_frame_equal(inferred.tables[name], table)


def test_salesforce_headers_in_capitals_and_15_character_ids_read_the_same(shared_crm, fixture_org_config, tmp_path):
    """Data Loader CLI v60 writes ALL-CAPS headers; reports and URLs carry 15-character ids."""
    shouty = tmp_path / "sf"
    shouty.mkdir()
    for path in (shared_crm / "salesforce").glob("*.csv"):
        with path.open(encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        header = [h.upper() for h in rows[0]]
        body = [[v[:15] if len(v) == 18 and v[:3].isalnum() and v.isalnum() and v[3:5] == "5g" else v for v in row]
                for row in rows[1:]]
        with (shouty / path.name.upper()).open("w", newline="", encoding="utf-8") as fh:
            csv.writer(fh, quoting=csv.QUOTE_ALL).writerows([header, *body])
    assert "0035g00000OCj2I" in (shouty / "TASK.CSV").read_text()
    conversion = convert_crm("salesforce", shouty, as_of=AS_OF, config=fixture_org_config)
    assert conversion.report.errors == []
    assert_tables_match(conversion.tables, shared_crm / "expected" / "salesforce", skip={c.DEALS: [c.AMOUNT]})


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_command_writes_a_dataset_that_validates(shared_crm, tmp_path, fmt):
    from training.cli import app

    config = tmp_path / "org.yaml"
    config.write_text("salesforce:\n  outcome_fields: {Champion_Confirmed__c: champion_confirmed}\n"
                      "  no_show_field: Meeting_Outcome__c\n")
    out = tmp_path / "dataset"
    result = CliRunner().invoke(app, ["import-crm", "salesforce", "--in", str(shared_crm / "salesforce"),
                                      "--out", str(out), "--as-of", "2025-05-02", "--config", str(config),
                                      "--format", fmt])
    assert result.exit_code == 0, result.output
    assert "Rows read" in result.output and "Task.csv" in result.output
    assert "open task (a plan, not an activity)" in result.output
    assert "wrote 18 activities" in result.output
    assert (out / f"activities.{fmt}").exists()
    assert validate_dataset(out).ok
    assert CliRunner().invoke(app, ["validate", "--data", str(out)]).exit_code == 0
    outcomes = load_dataset(out)[c.OUTCOMES]
    assert set(outcomes[c.OUTCOME]) == {"closed_won", "champion_confirmed"}


def test_command_converts_hubspot_api_export(shared_crm, tmp_path):
    from training.cli import app

    out = tmp_path / "hs"
    result = CliRunner().invoke(app, ["import-crm", "hubspot", "--in", str(shared_crm / "hubspot" / "api"),
                                      "--out", str(out), "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert "archived (deleted in HubSpot)" in result.output
    assert validate_dataset(out).ok
    assert len(load_dataset(out)[c.ACTIVITIES]) == 20


def test_library_writes_only_this_runs_tables(shared_crm, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "outcomes.csv").write_text("deal_id,outcome,occurred_at\nstale,closed_won,2020-01-01T00:00:00Z\n")
    (out / "notes.txt").write_text("kept")
    report = import_crm_export("salesforce", shared_crm / "salesforce", out, as_of=AS_OF, fmt="csv")
    assert report.ok, report.errors + report.validation_errors
    assert (out / "notes.txt").exists()
    outcomes = load_dataset(out)[c.OUTCOMES]
    assert "stale" not in set(outcomes[c.DEAL_ID])
    assert report.to_dict()["tables"]["activities"] == 18


def test_command_rejects_unknown_source_and_bad_options(tmp_path, shared_crm):
    from training.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["import-crm", "pipedrive", "--in", str(tmp_path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "salesforce or hubspot" in result.output
    result = runner.invoke(app, ["import-crm", "salesforce", "--in", str(tmp_path / "nope"), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "no such directory" in result.output
    result = runner.invoke(app, ["import-crm", "salesforce", "--in", str(shared_crm / "salesforce"), "--out",
                                 str(tmp_path / "o"), "--as-of", "yesterday-ish"])
    assert result.exit_code == 2 and "--as-of" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("inbound_emails: activity\n")
    result = runner.invoke(app, ["import-crm", "salesforce", "--in", str(shared_crm / "salesforce"), "--out",
                                 str(tmp_path / "o"), "--config", str(bad)])
    assert result.exit_code == 1
    assert "unknown key 'inbound_emails'" in result.output and "bad.yaml" in result.output
    assert not (tmp_path / "o").exists()
    assert "Traceback" not in result.output
    shutil.rmtree(tmp_path / "o", ignore_errors=True)
