"""Fixtures for the CRM adapter tests: paths to the shared samples and tiny-export builders.

The builders write the smallest export that exercises one rule: a Salesforce directory of
CSVs (one user, one opportunity with a stage table, whatever tasks/events a test adds) or a
HubSpot API directory of JSON pages. Ids are real-shaped (``make_sf_id``) so the adapter's
15/18-character and key-prefix logic is exercised, not bypassed.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest

from importers.crm.ids import make_sf_id
from tests.shared import SHARED, require_shared

SHARED_CRM = SHARED / "crm"

# --- Salesforce ------------------------------------------------------------------------

REP = make_sf_id("005", 1)          # the rep (America/Chicago)
REP_BERLIN = make_sf_id("005", 2)   # a second rep (Europe/Berlin)
ACCOUNT = make_sf_id("001", 1)
CONTACT = make_sf_id("003", 1)
LEAD = make_sf_id("00Q", 1)
OPP = make_sf_id("006", 1)

STAGES = [  # name, sort, closed, won
    ("Prospecting", 1, False, False),
    ("Qualification", 2, False, False),
    ("Proposal", 3, False, False),
    ("Negotiation", 4, False, False),
    ("Closed Won", 5, True, True),
    ("Closed Lost", 6, True, False),
]


def sf_id(prefix: str, n: int) -> str:
    return make_sf_id(prefix, n)


def task(n: int, **fields) -> dict:
    """A completed outbound call task; ``fields`` override (API names)."""
    row = {
        "Id": sf_id("00T", n), "WhoId": CONTACT, "WhatId": OPP, "AccountId": ACCOUNT, "OwnerId": REP,
        "Subject": "Call", "ActivityDate": "2025-03-03", "Status": "Completed", "IsClosed": "true", "Type": "Call",
        "TaskSubtype": "Call", "CallType": "Outbound", "CallDurationInSeconds": "60", "CallDisposition": "",
        "ActionCadenceStepTrackerId": "", "CreatedDate": "2025-03-03T16:00:00.000Z",
        "CompletedDateTime": "2025-03-03T16:00:00.000Z", "IsDeleted": "false", "IsArchived": "false",
    }
    row.update(fields)
    return row


def event(n: int, **fields) -> dict:
    row = {
        "Id": sf_id("00U", n), "WhoId": CONTACT, "WhatId": OPP, "AccountId": ACCOUNT, "OwnerId": REP,
        "Subject": "Meeting", "Type": "Meeting", "ActivityDate": "2025-03-10",
        "StartDateTime": "2025-03-10T15:00:00.000Z", "EndDateTime": "2025-03-10T15:30:00.000Z",
        "DurationInMinutes": "30", "IsAllDayEvent": "false", "IsChild": "false",
        "CreatedDate": "2025-03-04T10:00:00.000Z", "IsDeleted": "false", "IsArchived": "false",
    }
    row.update(fields)
    return row


def history(n: int, stage: str, at: str, opp: str = OPP, amount: str = "10000.0", **fields) -> dict:
    row = {"Id": sf_id("008", n), "OpportunityId": opp, "CreatedDate": at, "StageName": stage, "Amount": amount,
           "CloseDate": "2025-06-30", "Probability": "10.0", "IsDeleted": "false"}
    row.update(fields)
    return row


def opportunity(opp: str = OPP, **fields) -> dict:
    row = {"Id": opp, "AccountId": ACCOUNT, "OwnerId": REP, "Name": "Deal", "StageName": "Prospecting",
           "Amount": "10000.0", "Probability": "10.0", "CloseDate": "2025-06-30", "IsClosed": "false",
           "IsWon": "false", "CreatedDate": "2025-03-01T09:00:00.000Z", "IsDeleted": "false"}
    row.update(fields)
    return row


def write_csv(path: Path, rows: list[dict], upper: bool = False) -> None:
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, quoting=csv.QUOTE_ALL, lineterminator="\n")
        writer.writerow([c.upper() if upper else c for c in columns])
        for row in rows:
            writer.writerow([row.get(c, "") for c in columns])


def write_sf_export(
    directory: Path,
    *,
    tasks: list[dict] = (),
    events: list[dict] = (),
    opportunities: list[dict] | None = None,
    histories: list[dict] | None = None,
    field_history: list[dict] | None = None,
    stages=STAGES,
    users: list[dict] | None = None,
    contacts: list[dict] | None = None,
    accounts: list[dict] | None = None,
    emails: list[dict] | None = None,
    upper: bool = False,
) -> Path:
    """Write a tiny Salesforce export; unspecified objects get one plain record."""
    directory.mkdir(parents=True, exist_ok=True)
    users = users if users is not None else [
        {"Id": REP, "Department": "Sales", "TimeZoneSidKey": "America/Chicago"},
        {"Id": REP_BERLIN, "Department": "Sales EU", "TimeZoneSidKey": "Europe/Berlin"},
    ]
    opportunities = opportunities if opportunities is not None else [opportunity()]
    histories = histories if histories is not None else [history(1, "Prospecting", "2025-03-01T09:00:00.000Z")]
    contacts = contacts if contacts is not None else [
        {"Id": CONTACT, "AccountId": ACCOUNT, "Title": "VP Sales", "Department": "Sales", "IsDeleted": "false"}]
    accounts = accounts if accounts is not None else [
        {"Id": ACCOUNT, "Industry": "Software", "NumberOfEmployees": "50", "BillingCountry": "Germany",
         "IsDeleted": "false"}]
    files = {
        "Task.csv": list(tasks), "Event.csv": list(events), "Opportunity.csv": opportunities,
        "OpportunityHistory.csv": histories, "User.csv": users, "Contact.csv": contacts, "Account.csv": accounts,
        "OpportunityStage.csv": [
            {"Id": sf_id("01J", i + 1), "MasterLabel": name, "ApiName": name, "SortOrder": str(sort),
             "IsClosed": str(closed).lower(), "IsWon": str(won).lower(), "IsActive": "true"}
            for i, (name, sort, closed, won) in enumerate(stages)],
    }
    if field_history is not None:
        files["OpportunityFieldHistory.csv"] = field_history
    if emails is not None:
        files["EmailMessage.csv"] = emails
    for name, rows in files.items():
        if rows or name in ("Task.csv", "Event.csv"):
            if rows:
                write_csv(directory / name, rows, upper=upper)
    return directory


# --- HubSpot ---------------------------------------------------------------------------

HS_OWNER = "70001"
HS_CONTACT = "51"
HS_COMPANY = "205"
HS_DEAL = "307"


def hs_object(oid: str, props: dict, *, contacts=(HS_CONTACT,), companies=(HS_COMPANY,), deals=(HS_DEAL,),
              archived: bool = False, history: dict | None = None) -> dict:
    item = {
        "id": oid,
        "properties": {"hs_object_id": oid, "hubspot_owner_id": HS_OWNER, **props},
        "createdAt": props.get("hs_createdate") or props.get("createdate"),
        "archived": archived,
        "associations": {
            "contacts": {"results": [{"id": x, "type": "x_to_contact"} for x in contacts]},
            "companies": {"results": [{"id": x, "type": "x_to_company"} for x in companies]},
            "deals": {"results": [{"id": x, "type": "x_to_deal"} for x in deals]},
        },
    }
    if history:
        item["propertiesWithHistory"] = history
    return item


def hs_call(oid: str, at: str, logged: str | None = None, disposition: str = "f240bbac-87c9-4f6e-bf70-924b57d47db7",
            **kw) -> dict:
    props = {"hs_timestamp": at, "hs_createdate": logged or at, "hs_call_direction": "OUTBOUND",
             "hs_call_disposition": disposition, "hs_call_duration": "60000", "hs_call_status": "COMPLETED"}
    props.update(kw.pop("props", {}))
    return hs_object(oid, props, **kw)


def hs_deal(oid: str = HS_DEAL, stages=(("appointmentscheduled", "2025-03-01T09:00:00Z"),), **props) -> dict:
    base = {"pipeline": "default", "dealstage": stages[-1][0], "amount": "5000", "createdate": stages[0][1],
            "hs_is_closed": "false", "hs_is_closed_won": "false"}
    base.update(props)
    history = {"dealstage": [{"value": s, "timestamp": t, "sourceType": "CRM_UI"} for s, t in reversed(stages)]}
    return hs_object(oid, base, contacts=(HS_CONTACT,), companies=(HS_COMPANY,), deals=(), history=history)


def _hs_pipeline(pid: str, label: str, stages: list[tuple[str, str, float]]) -> dict:
    """A pipeline as the API returns it; a closed stage has probability 1.0 (won) or 0.0 (lost)."""
    n_open = sum(1 for _, _, p in stages if 0 < p < 1)
    return {"id": pid, "label": label, "archived": False,
            "stages": [{"id": sid, "label": slabel, "displayOrder": i, "archived": False,
                        "metadata": {"isClosed": str(i >= n_open).lower(), "probability": str(prob)}}
                       for i, (sid, slabel, prob) in enumerate(stages)]}


# HubSpot's default sales pipeline and call outcomes (their ids are HubSpot's own), plus a
# custom pipeline with numeric stage ids, as a portal returns them.
HS_PIPELINES = [
    _hs_pipeline("default", "Sales Pipeline", [
        ("appointmentscheduled", "Appointment Scheduled", 0.2), ("qualifiedtobuy", "Qualified To Buy", 0.4),
        ("presentationscheduled", "Presentation Scheduled", 0.6),
        ("decisionmakerboughtin", "Decision Maker Bought-In", 0.8), ("contractsent", "Contract Sent", 0.9),
        ("closedwon", "Closed Won", 1.0), ("closedlost", "Closed Lost", 0.0)]),
    _hs_pipeline("31415926", "Partner Deals", [
        ("1001001", "Partner Referred", 0.1), ("1001002", "Joint Discovery", 0.3),
        ("1001003", "Co-Sell Proposal", 0.6), ("1001004", "Partner Won", 1.0), ("1001005", "Partner Lost", 0.0)]),
]
HS_DISPOSITIONS = [
    {"id": "9d9162e7-6cf3-4944-bf63-4dff82258764", "label": "Busy"},
    {"id": "f240bbac-87c9-4f6e-bf70-924b57d47db7", "label": "Connected"},
    {"id": "a4c4c377-d246-4b32-a13b-75a56a4cd0ff", "label": "Left live message"},
    {"id": "b2cf5968-551e-4856-9783-52b3da59a7d0", "label": "Left voicemail"},
    {"id": "73a0d17f-1163-4015-bdd5-ec830791da20", "label": "No answer"},
    {"id": "17b47fee-58de-441e-a44c-c6300d46f273", "label": "Wrong number"},
    {"id": "5c0d8f2e-7a41-4e0b-9a77-0c5e2f3b8d11", "label": "Meeting booked"},  # a portal's custom outcome
]


def write_hs_export(
    directory: Path,
    *,
    calls: list[dict] = (),
    emails: list[dict] = (),
    meetings: list[dict] = (),
    deals: list[dict] | None = None,
    archived_calls: list[dict] = (),
) -> Path:
    """Write a tiny HubSpot API export (the portal's default pipelines and call outcomes)."""
    directory.mkdir(parents=True, exist_ok=True)
    pages = {
        "calls.json": list(calls), "calls_archived.json": list(archived_calls), "emails.json": list(emails),
        "meetings.json": list(meetings), "deals.json": deals if deals is not None else [hs_deal()],
        "owners.json": [{"id": HS_OWNER, "firstName": "Ann", "lastName": "Lee", "email": "ann@x.example",
                         "teams": [{"id": "1", "name": "AE", "primary": True}]}],
        "contacts.json": [hs_object(HS_CONTACT, {"jobtitle": "Head of IT", "associatedcompanyid": HS_COMPANY},
                                    contacts=(), companies=(), deals=())],
        "companies.json": [hs_object(HS_COMPANY, {"industry": "COMPUTER_SOFTWARE", "numberofemployees": "40",
                                                  "country": "Canada"}, contacts=(), companies=(), deals=())],
    }
    for name, items in pages.items():
        if items:
            (directory / name).write_text(json.dumps({"results": items}), encoding="utf-8")
    (directory / "pipelines_deals.json").write_text(json.dumps({"results": HS_PIPELINES}), encoding="utf-8")
    (directory / "call_dispositions.json").write_text(json.dumps(HS_DISPOSITIONS), encoding="utf-8")
    return directory


# --- fixtures ------------------------------------------------------------------------

@pytest.fixture(scope="session")
def shared_crm() -> Path:
    require_shared(SHARED_CRM / "CRM_EXPORTS.md", "the shared CRM samples")
    return SHARED_CRM


@pytest.fixture(scope="session")
def fixture_org_config():
    """The sample org's choices: its custom outcome checkboxes and its no-show field."""
    from importers.crm.config import config_from_dict

    return config_from_dict({"salesforce": {
        "outcome_fields": {"Champion_Confirmed__c": "champion_confirmed",
                           "Decision_Plan_Agreed__c": "decision_plan_agreed"},
        "no_show_field": "Meeting_Outcome__c",
    }}, where="sample org config")


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text).tz_convert("UTC") if pd.Timestamp(text).tzinfo else pd.Timestamp(text, tz="UTC")


@pytest.fixture(scope="session")
def crm():
    """The builders and ids above, for tests (importing from conftest is fragile)."""
    import types

    return types.SimpleNamespace(
        REP=REP, REP_BERLIN=REP_BERLIN, ACCOUNT=ACCOUNT, CONTACT=CONTACT, LEAD=LEAD, OPP=OPP, STAGES=STAGES,
        HS_OWNER=HS_OWNER, HS_CONTACT=HS_CONTACT, HS_COMPANY=HS_COMPANY, HS_DEAL=HS_DEAL,
        sf_id=sf_id, task=task, event=event, history=history, opportunity=opportunity, write_csv=write_csv,
        write_sf_export=write_sf_export, hs_object=hs_object, hs_call=hs_call, hs_deal=hs_deal,
        write_hs_export=write_hs_export, ts=ts,
    )
