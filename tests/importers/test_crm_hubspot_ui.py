"""HubSpot UI (CSV) exports: labels as headers, portal-time wall clocks across DST, Date-entered columns.

There is no UI sample in shared/crm, so this file writes one: the portal is in
America/New_York, whose clocks moved forward on 9 March 2025 (02:00 → 03:00) and back
on 2 November 2025 (02:00 → 01:00).
"""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from features import contract as c
from features.validation import validate_dataset
from importers.crm import config_from_dict, convert_crm, import_crm_export

T = pd.Timestamp
NY = config_from_dict({"portal_timezone": "America/New_York"}, where="portal config")
ENTERED = 'Date entered "{} (Sales Pipeline)"'


def write(path, header, rows):
    import csv

    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


@pytest.fixture
def ui_export(tmp_path, shared_crm):
    d = tmp_path / "ui"
    d.mkdir()
    api = shared_crm / "hubspot" / "api"
    shutil.copy(api / "owners.json", d / "owners.json")
    shutil.copy(api / "pipelines_deals.json", d / "pipelines_deals.json")
    common = ["Record ID", "Activity date", "Activity assigned to", "Create Date", "Associated Contact IDs",
              "Associated Company IDs", "Associated Deal IDs"]
    write(d / "hubspot-crm-exports-all-calls-2025-12-01.csv",
          common + ["Call direction", "Call outcome", "Call duration", "Call status"], [
              ["451", "2025-03-07 10:00", "Kenji Mori", "2025-03-07 10:05", "51005", "20510000003", "30700000003",
               "Outbound", "Connected", "00:06:24", "Completed"],
              ["452", "2025-03-10 10:00", "Kenji Mori", "2025-03-10 10:05", "51005", "20510000003", "30700000003",
               "Outbound", "No answer", "00:00:21", "Completed"],
              # 02:30 on 9 March does not exist in New York
              ["453", "2025-03-09 02:30", "Kenji Mori", "2025-03-09 09:00", "51006", "20510000003", "30700000003",
               "Outbound", "Left voicemail", "00:00:40", "Completed"],
              # 01:30 on 2 November happens twice
              ["454", "2025-11-02 01:30", "Kenji Mori", "2025-11-02 09:00", "51006", "20510000003", "30700000003",
               "Inbound", "Connected", "00:10:00", "Completed"],
              ["455", "2025-03-11 09:00", "Kenji Mori", "2025-03-11 09:01", "51005", "20510000003", "30700000003",
               "Outbound", "Busy", "", "Queued"],
          ])
    write(d / "emails.csv", common + ["Email direction", "Email send status", "Email subject", "Email body"], [
        ["461", "2025-03-12 09:00", "Kenji Mori", "2025-03-12 09:00", "51006", "20510000003", "30700000003",
         "Email", "Bounced", "Proposition", ""],
        ["462", "2025-03-13 09:00", "Kenji Mori", "2025-03-13 09:00", "51005", "20510000003", "30700000003",
         "Email", "Sent", "Pilot scope", ""],
        ["463", "2025-03-13 11:15", "Kenji Mori", "2025-03-13 11:16", "51005", "20510000003", "",
         "Incoming email", "", "RE: Pilot scope", "Sounds good, let's talk Thursday"],
    ])
    write(d / "meetings.csv", common + ["Meeting start time", "Meeting end time", "Meeting outcome",
                                        "Call and meeting type"], [
        ["471", "2025-03-14 14:00", "Kenji Mori", "2025-03-07 10:20", "51005", "20510000003", "30700000003",
         "2025-03-14 14:00", "2025-03-14 14:45", "No show", "Demo"],
        ["472", "2025-03-20 11:00", "Kenji Mori", "2025-03-15 08:00", "51005", "20510000003", "30700000003",
         "2025-03-20 11:00", "2025-03-20 12:00", "Completed", "Discovery"],
    ])
    stages = ["Appointment Scheduled", "Qualified To Buy", "Presentation Scheduled", "Decision Maker Bought-In"]
    write(d / "deals.csv", ["Record ID", "Deal Name", "Pipeline", "Deal Stage", "Amount", "Create Date", "Close Date",
                            "Deal owner", "Associated Company IDs (Primary)", "Is Closed Won",
                            *[ENTERED.format(s) for s in stages]], [
        # re-entered Presentation Scheduled on 8 April: only that date survives in the UI export
        ["30700000003", "Mistral Outdoor - Retail Analytics", "Sales Pipeline", "Presentation Scheduled", "27000",
         "2025-02-11 05:00", "2025-05-30 12:00", "Kenji Mori", "20510000003", "false",
         "2025-02-11 05:00", "2025-02-25 04:40", "2025-04-08 04:50", "2025-03-20 11:30"],
    ])
    write(d / "companies.csv", ["Record ID", "Company name", "Industry", "Number of Employees", "Country/Region"],
          [["20510000003", "Mistral Outdoor", "Sporting Goods", "140", "France"]])
    write(d / "contacts.csv", ["Record ID", "First Name", "Job Title", "Primary Associated Company ID"],
          [["51005", "Camille", "Head of E-commerce", "20510000003"],
           ["51006", "Louis", "Directeur Financier", "20510000003"]])
    return d


def convert(path, cfg=NY, as_of="2025-12-01"):
    conversion = convert_crm("hubspot", path, as_of=as_of, config=cfg)
    assert conversion.report.errors == [], conversion.report.errors
    return conversion


def test_daylight_saving_change_in_ui_export(ui_export):
    conversion = convert(ui_export)
    acts = conversion.tables[c.ACTIVITIES].set_index(c.ACTIVITY_ID)
    # the same 10:00 wall-clock time is 15:00 UTC before the change and 14:00 UTC after it
    assert acts.loc["451", c.OCCURRED_AT] == T("2025-03-07T15:00:00Z")
    assert acts.loc["452", c.OCCURRED_AT] == T("2025-03-10T14:00:00Z")
    # the skipped hour is moved forward by the gap; the repeated hour takes the first (EDT) reading
    assert acts.loc["453", c.OCCURRED_AT] == T("2025-03-09T07:30:00Z")
    assert acts.loc["454", c.OCCURRED_AT] == T("2025-11-02T05:30:00Z")
    assert acts.loc["451", c.LOGGED_AT] == T("2025-03-07T15:05:00Z")
    warning = next(w for w in conversion.report.warnings if "daylight-saving" in w)
    assert "1 time(s) fell in the repeated hour" in warning and "1 in the skipped hour" in warning
    stages = conversion.tables[c.DEAL_STAGES].set_index(c.STAGE)
    assert stages.loc["Appointment Scheduled", c.ENTERED_AT] == T("2025-02-11T10:00:00Z")  # EST
    assert stages.loc["Presentation Scheduled", c.ENTERED_AT] == T("2025-04-08T08:50:00Z")  # EDT
    # read as UTC, every time would be 4-5 hours off
    naive = convert(ui_export, cfg=config_from_dict({}))
    assert naive.tables[c.ACTIVITIES].set_index(c.ACTIVITY_ID).loc["451", c.OCCURRED_AT] == T("2025-03-07T10:00:00Z")


def test_ui_export_labels_owner_names_and_enumerations(ui_export):
    conversion = convert(ui_export)
    acts = conversion.tables[c.ACTIVITIES].set_index(c.ACTIVITY_ID)
    assert set(acts.index) == {"451", "452", "453", "454", "461", "462", "471", "472"}  # 455 queued, 463 a reply
    assert set(acts[c.REP_ID]) == {"70110003"}  # "Kenji Mori" through owners.json
    assert acts.loc["451", c.DURATION_S] == 384.0
    assert (acts.loc["454", c.DIRECTION], acts.loc["471", c.TYPE], acts.loc["472", c.TYPE]) == ("inbound", "demo",
                                                                                                "meeting")
    assert acts.loc["471", c.DURATION_S] == 2700.0
    r = conversion.tables[c.RESPONSES]
    got = set(zip(r[c.ACTIVITY_ID], r[c.RESPONSE]))
    assert got == {("451", "connected"), ("454", "connected"), ("461", "bounced"), ("462", "positive_reply"),
                   ("471", "no_show"), ("451", "meeting_booked"), ("462", "meeting_booked")}
    accounts = conversion.tables[c.ACCOUNTS].iloc[0]
    assert (accounts[c.INDUSTRY], accounts[c.EMPLOYEES], accounts[c.REGION]) == ("sporting_goods", 140, "EMEA")
    contacts = conversion.tables[c.CONTACTS].set_index(c.CONTACT_ID)
    assert list(contacts[c.SENIORITY]) == ["director", "c_level"]
    assert set(contacts[c.ACCOUNT_ID]) == {"20510000003"}
    assert conversion.report.inputs["hubspot-crm-exports-all-calls-2025-12-01.csv"].dropped == {
        "not a completed call (hs_call_status)": 1}


def test_ui_export_cannot_carry_a_deal_reentering_a_stage(ui_export, shared_crm):
    """The documented limit: one "Date entered" per stage, so back-and-forth moves are lost."""
    ui = convert(ui_export).tables[c.DEAL_STAGES]
    api = convert_crm("hubspot", shared_crm / "hubspot" / "api", as_of="2025-05-02").tables[c.DEAL_STAGES]
    api = api[api[c.DEAL_ID] == "30700000003"]
    assert list(api[c.STAGE_ORDER]) == [1, 2, 3, 4, 3]  # the API history keeps the re-entry
    assert list(ui[c.STAGE_ORDER]) == [1, 2, 4, 3]      # the first Presentation Scheduled entry (4 Mar) is gone
    assert ui[c.ENTERED_AT].is_monotonic_increasing
    assert any("re-entered a stage" in w for w in convert(ui_export).report.warnings)


def test_ui_export_writes_a_valid_dataset(ui_export, tmp_path):
    report = import_crm_export("hubspot", ui_export, tmp_path / "out", as_of="2025-12-01", config=NY, fmt="csv")
    assert report.ok, report.errors + report.validation_errors
    assert validate_dataset(tmp_path / "out").ok


def test_ui_export_without_pipelines_uses_the_config_or_says_what_is_missing(ui_export):
    (ui_export / "pipelines_deals.json").unlink()
    missing = convert_crm("hubspot", ui_export, as_of="2025-12-01", config=NY)
    assert "pipelines" in missing.report.errors[0] and missing.report.exit_code == 1
    cfg = config_from_dict({"portal_timezone": "America/New_York", "hubspot": {"pipelines": {"Sales Pipeline": {
        "open": ["Appointment Scheduled", "Qualified To Buy", "Presentation Scheduled", "Decision Maker Bought-In",
                 "Contract Sent"],
        "won": ["Closed Won"], "lost": ["Closed Lost"]}}}})
    stages = convert(ui_export, cfg=cfg).tables[c.DEAL_STAGES]
    assert list(stages[c.STAGE_ORDER]) == [1, 2, 4, 3]


def test_ui_export_unknown_stage_column_is_an_error_naming_it(ui_export):
    deals = ui_export / "deals.csv"
    frame = pd.read_csv(deals, dtype=str)
    frame[ENTERED.format("Security Review")] = "2025-04-01 10:00"
    frame.to_csv(deals, index=False)
    conversion = convert_crm("hubspot", ui_export, as_of="2025-12-01", config=NY)
    assert conversion.report.unmapped_stages == {"deals.csv": ["Security Review (Sales Pipeline)"]}
    fixed = config_from_dict({"portal_timezone": "America/New_York",
                              "stage_map": {"Security Review (Sales Pipeline)": "qualifiedtobuy"}})
    mapped = convert(ui_export, cfg=fixed).report.stages["Qualified To Buy"]
    assert "stage_map" in mapped.via and mapped.rows == 2


def test_ui_export_owner_names_without_owners_json(ui_export):
    (ui_export / "owners.json").unlink()
    conversion = convert(ui_export)
    assert set(conversion.tables[c.ACTIVITIES][c.REP_ID]) == {"kenji_mori"}
    assert any("owner names are used as rep ids" in w for w in conversion.report.warnings)


def test_ui_export_renamed_label_through_the_config(ui_export):
    calls = next(ui_export.glob("*calls*.csv"))
    text = calls.read_text().replace("Activity date", "Datum der Aktivität", 1)
    calls.write_text(text)
    unmapped = convert_crm("hubspot", ui_export, as_of="2025-12-01", config=NY)
    # without hs_timestamp the creation time is used; with the label mapped the activity time is back
    assert unmapped.tables[c.ACTIVITIES].set_index(c.ACTIVITY_ID).loc["451", c.OCCURRED_AT] == T("2025-03-07T15:05:00Z")
    cfg = config_from_dict({"portal_timezone": "America/New_York",
                            "hubspot": {"ui_labels": {"calls": {"Datum der Aktivität": "hs_timestamp"}}}})
    assert convert(ui_export, cfg=cfg).tables[c.ACTIVITIES].set_index(c.ACTIVITY_ID).loc[
        "451", c.OCCURRED_AT] == T("2025-03-07T15:00:00Z")
