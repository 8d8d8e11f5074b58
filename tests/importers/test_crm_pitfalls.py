"""One test per pitfall of the CRM adapters issue, each on its own tiny export.

(The daylight-saving pitfall of UI exports is in test_crm_hubspot_ui.py.)
"""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from features import contract as c
from importers.crm import config_from_dict, convert_crm
from importers.crm.errors import CrmConfigError

AS_OF = "2025-05-01T00:00:00Z"
T = pd.Timestamp


def sf(directory, cfg=None, as_of=AS_OF):
    conversion = convert_crm("salesforce", directory, as_of=as_of, config=cfg)
    assert conversion.report.errors == [], conversion.report.errors
    return conversion


def hs(directory, cfg=None, as_of=AS_OF):
    conversion = convert_crm("hubspot", directory, as_of=as_of, config=cfg)
    assert conversion.report.errors == [], conversion.report.errors
    return conversion


def one(frame: pd.DataFrame, **where) -> pd.Series:
    rows = frame
    for column, value in where.items():
        rows = rows[rows[column] == value]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def responses_of(conversion, activity_id) -> dict[str, pd.Timestamp]:
    r = conversion.tables[c.RESPONSES]
    r = r[r[c.ACTIVITY_ID] == activity_id]
    return dict(zip(r[c.RESPONSE], r[c.OCCURRED_AT]))


# 1. A call logged days after it happened ------------------------------------------------

def test_call_logged_days_later_keeps_when_it_happened_and_when_it_was_logged(crm, tmp_path):
    late = crm.task(1, ActivityDate="2025-03-03", CreatedDate="2025-03-09T15:00:00.000Z",
                    CompletedDateTime="2025-03-09T15:00:00.000Z", CallDisposition="Connected - good talk")
    histories = [crm.history(1, "Prospecting", "2025-03-01T09:00:00.000Z"),
                 crm.history(2, "Qualification", "2025-03-05T10:00:00.000Z")]
    conversion = sf(crm.write_sf_export(tmp_path, tasks=[late], histories=histories))
    row = one(conversion.tables[c.ACTIVITIES], activity_id=late["Id"])
    # the rep's day (Chicago), at noon: day precision is all the export carries
    assert row[c.OCCURRED_AT] == T("2025-03-03T18:00:00Z")
    assert row[c.LOGGED_AT] == T("2025-03-09T15:00:00Z")
    # logged after the stage advance it precedes: both facts are in the data for the leak check
    stage = one(conversion.tables[c.DEAL_STAGES], stage="Qualification")
    assert row[c.OCCURRED_AT] < stage[c.ENTERED_AT] < row[c.LOGGED_AT]
    # the call's result is dated when the call happened, not when it was typed in
    assert responses_of(conversion, late["Id"]) == {"connected": T("2025-03-03T18:00:00Z")}
    assert conversion.report.inputs["Task.csv"].notes[
        "logged on a later day: occurred_at = ActivityDate 12:00 rep-local"] == 1


def test_hubspot_call_logged_days_later(crm, tmp_path):
    call = crm.hs_call("901", "2025-03-18T13:00:00Z", logged="2025-03-21T10:00:00.000Z")
    conversion = hs(crm.write_hs_export(tmp_path, calls=[call]))
    row = one(conversion.tables[c.ACTIVITIES], activity_id="901")
    assert (row[c.OCCURRED_AT], row[c.LOGGED_AT]) == (T("2025-03-18T13:00:00Z"), T("2025-03-21T10:00:00Z"))


# 2. A rep's local date differs from the UTC date ------------------------------------------

def test_rep_local_date_differs_from_utc_date(crm, tmp_path):
    # 18:31 on 4 Feb in Chicago is 00:31 UTC on 5 Feb; ActivityDate holds the local day
    evening = crm.task(1, ActivityDate="2025-02-04", CreatedDate="2025-02-05T00:31:40.000Z",
                       CompletedDateTime="2025-02-05T00:31:40.000Z")
    # 00:30 on 4 Mar in Berlin is 23:30 UTC on 3 Mar
    early = crm.task(2, OwnerId=crm.REP_BERLIN, ActivityDate="2025-03-04", CreatedDate="2025-03-03T23:30:00.000Z",
                     CompletedDateTime="2025-03-03T23:30:00.000Z")
    conversion = sf(crm.write_sf_export(tmp_path, tasks=[evening, early]))
    acts = conversion.tables[c.ACTIVITIES].set_index(c.ACTIVITY_ID)
    assert acts.loc[evening["Id"], c.OCCURRED_AT] == T("2025-02-05T00:31:40Z")
    assert acts.loc[early["Id"], c.OCCURRED_AT] == T("2025-03-03T23:30:00Z")
    assert conversion.report.inputs["Task.csv"].notes == {}  # neither was mistaken for back-dating
    # comparing days in UTC would have moved both to noon of ActivityDate: check the opposite config too
    utc = sf(tmp_path, cfg=config_from_dict({"rep_timezones": {crm.REP: "UTC", crm.REP_BERLIN: "UTC"}}))
    assert utc.tables[c.ACTIVITIES].set_index(c.ACTIVITY_ID).loc[evening["Id"], c.OCCURRED_AT] == T(
        "2025-02-04T12:00:00Z")


def test_all_day_event_is_noon_on_its_local_day(crm, tmp_path):
    workshop = crm.event(1, OwnerId=crm.REP_BERLIN, IsAllDayEvent="true", ActivityDate="2025-03-05",
                         StartDateTime="2025-03-05T00:00:00.000Z", EndDateTime="2025-03-05T00:00:00.000Z",
                         DurationInMinutes="1440")
    conversion = sf(crm.write_sf_export(tmp_path, events=[workshop]))
    row = one(conversion.tables[c.ACTIVITIES], activity_id=workshop["Id"])
    assert row[c.OCCURRED_AT] == T("2025-03-05T11:00:00Z")  # 12:00 CET
    assert pd.isna(row[c.DURATION_S])


# 3. A close date edited after the win -----------------------------------------------------

def test_win_time_comes_from_stage_history_not_close_date(crm, tmp_path):
    histories = [
        crm.history(1, "Prospecting", "2025-03-01T09:00:00.000Z"),
        crm.history(2, "Negotiation", "2025-03-20T10:00:00.000Z"),
        crm.history(3, "Closed Won", "2025-04-09T08:45:00.000Z", CloseDate="2025-04-09"),
        crm.history(4, "Closed Won", "2025-04-15T12:00:00.000Z", CloseDate="2025-04-11"),  # the edit
    ]
    opp = crm.opportunity(StageName="Closed Won", IsClosed="true", IsWon="true", CloseDate="2025-04-11")
    conversion = sf(crm.write_sf_export(tmp_path, tasks=[crm.task(1)], opportunities=[opp], histories=histories))
    outcome = one(conversion.tables[c.OUTCOMES], outcome="closed_won")
    assert outcome[c.OCCURRED_AT] == T("2025-04-09T08:45:00Z")
    deal = one(conversion.tables[c.DEALS], deal_id=crm.OPP)
    assert deal[c.CLOSED_AT] == T("2025-04-09T08:45:00Z") and bool(deal[c.WON])
    won = conversion.tables[c.DEAL_STAGES].query("stage == 'Closed Won'")
    assert list(won[c.ENTERED_AT]) == [T("2025-04-09T08:45:00Z")]


def test_hubspot_win_time_ignores_closedate(crm, tmp_path):
    deal = crm.hs_deal(stages=(("appointmentscheduled", "2025-03-01T09:00:00Z"), ("closedwon", "2025-04-09T08:45:00Z")),
                       closedate="2025-04-11T00:00:00Z", hs_is_closed="true", hs_is_closed_won="true")
    conversion = hs(crm.write_hs_export(tmp_path, calls=[crm.hs_call("901", "2025-03-03T15:00:00Z")], deals=[deal]))
    assert one(conversion.tables[c.OUTCOMES], outcome="closed_won")[c.OCCURRED_AT] == T("2025-04-09T08:45:00Z")
    assert one(conversion.tables[c.DEALS], deal_id=crm.HS_DEAL)[c.CLOSED_AT] == T("2025-04-09T08:45:00Z")


# 4. History rows that only change the amount -----------------------------------------------

def test_history_rows_that_only_change_the_amount_are_not_stage_entries(crm, tmp_path):
    histories = [
        crm.history(1, "Prospecting", "2025-03-01T09:00:00.000Z", amount="10000.0"),
        crm.history(2, "Prospecting", "2025-03-05T09:00:00.000Z", amount="12000.0"),
        crm.history(3, "Qualification", "2025-03-10T09:00:00.000Z", amount="12000.0"),
        crm.history(4, "Qualification", "2025-03-12T09:00:00.000Z", amount="15000.0"),
    ]
    conversion = sf(crm.write_sf_export(tmp_path, tasks=[crm.task(1)], histories=histories,
                                        opportunities=[crm.opportunity(Amount="15000.0")]))
    stages = conversion.tables[c.DEAL_STAGES]
    assert list(stages[c.STAGE]) == ["Prospecting", "Qualification"]
    assert list(stages[c.ENTERED_AT]) == [T("2025-03-01T09:00:00Z"), T("2025-03-10T09:00:00Z")]
    assert conversion.report.inputs["OpportunityHistory.csv"].notes[
        "rows repeating the stage (amount/close-date edits) merged"] == 2
    assert one(conversion.tables[c.DEALS], deal_id=crm.OPP)[c.AMOUNT] == 10000.0  # the amount at creation


# 5. Deals moving back a stage ------------------------------------------------------------

def test_deal_moving_back_a_stage_keeps_the_back_move_and_the_reentry(crm, tmp_path):
    histories = [
        crm.history(1, "Prospecting", "2025-03-01T09:00:00.000Z"),
        crm.history(2, "Proposal", "2025-03-10T09:00:00.000Z"),
        crm.history(3, "Qualification", "2025-03-15T09:00:00.000Z"),
        crm.history(4, "Proposal", "2025-03-20T09:00:00.000Z"),
    ]
    conversion = sf(crm.write_sf_export(tmp_path, tasks=[crm.task(1)], histories=histories))
    stages = conversion.tables[c.DEAL_STAGES]
    assert list(zip(stages[c.STAGE], stages[c.STAGE_ORDER])) == [
        ("Prospecting", 1), ("Proposal", 3), ("Qualification", 2), ("Proposal", 3)]


def test_hubspot_deal_moving_back_a_stage(crm, tmp_path):
    deal = crm.hs_deal(stages=(("appointmentscheduled", "2025-03-01T09:00:00Z"),
                               ("presentationscheduled", "2025-03-10T09:00:00Z"),
                               ("qualifiedtobuy", "2025-03-15T09:00:00Z"),
                               ("presentationscheduled", "2025-03-20T09:00:00Z")))
    conversion = hs(crm.write_hs_export(tmp_path, calls=[crm.hs_call("901", "2025-03-03T15:00:00Z")], deals=[deal]))
    stages = conversion.tables[c.DEAL_STAGES]
    assert list(stages[c.STAGE_ORDER]) == [1, 3, 2, 3]


# 6. A lead as the contact ----------------------------------------------------------------

def test_lead_as_the_contact_is_kept_as_is(crm, tmp_path):
    lead15 = crm.LEAD[:15]  # a report export's 15-character id
    call = crm.task(1, WhoId=lead15, WhatId="", AccountId="")
    conversion = sf(crm.write_sf_export(tmp_path, tasks=[call]))
    row = one(conversion.tables[c.ACTIVITIES], activity_id=call["Id"])
    assert row[c.CONTACT_ID] == crm.LEAD  # normalised to 18 characters
    assert pd.isna(row[c.DEAL_ID]) and pd.isna(row[c.ACCOUNT_ID])
    assert crm.LEAD not in set(conversion.tables[c.CONTACTS][c.CONTACT_ID])


# 7. A task on an account instead of a deal -------------------------------------------------

def test_task_on_an_account_has_no_deal_but_keeps_the_account(crm, tmp_path):
    on_account = crm.task(1, WhatId=crm.ACCOUNT, AccountId=crm.ACCOUNT, TaskSubtype="ListEmail", Type="Email",
                          Subject="List Email: newsletter", CallType="", CallDurationInSeconds="")
    derived = crm.task(2, WhatId=crm.ACCOUNT, AccountId="")  # AccountId not exported: taken from WhatId
    conversion = sf(crm.write_sf_export(tmp_path, tasks=[on_account, derived]))
    acts = conversion.tables[c.ACTIVITIES].set_index(c.ACTIVITY_ID)
    for task_id in (on_account["Id"], derived["Id"]):
        assert pd.isna(acts.loc[task_id, c.DEAL_ID])
        assert acts.loc[task_id, c.ACCOUNT_ID] == crm.ACCOUNT
    mass = acts.loc[on_account["Id"]]
    assert (mass[c.TYPE], mass[c.DIRECTION], bool(mass[c.IS_AUTOMATED]), mass[c.PERSONALIZATION]) == (
        "email", "outbound", True, 0.0)


# 8. Deleted and archived rows --------------------------------------------------------------

def test_deleted_rows_are_dropped_and_archived_activities_are_kept(crm, tmp_path):
    gone_opp = crm.sf_id("006", 2)
    tasks = [
        crm.task(1),
        crm.task(2, IsDeleted="true"),
        crm.task(3, IsArchived="true", ActivityDate="2024-01-10", CreatedDate="2024-01-10T16:00:00.000Z",
                 CompletedDateTime="2024-01-10T16:00:00.000Z"),
        crm.task(4, WhatId=gone_opp),  # on a deleted opportunity
    ]
    events = [crm.event(1, IsDeleted="true")]
    opps = [crm.opportunity(), crm.opportunity(gone_opp, IsDeleted="true")]
    histories = [crm.history(1, "Prospecting", "2025-03-01T09:00:00.000Z"),
                 crm.history(2, "Prospecting", "2025-03-02T09:00:00.000Z", opp=gone_opp, IsDeleted="true"),
                 crm.history(3, "Qualification", "2025-03-04T09:00:00.000Z", opp=gone_opp)]
    path = crm.write_sf_export(tmp_path, tasks=tasks, events=events, opportunities=opps, histories=histories)
    conversion = sf(path)
    acts = conversion.tables[c.ACTIVITIES].set_index(c.ACTIVITY_ID)
    assert set(acts.index) == {tasks[0]["Id"], tasks[2]["Id"], tasks[3]["Id"]}
    assert pd.isna(acts.loc[tasks[3]["Id"], c.DEAL_ID])
    assert set(conversion.tables[c.DEALS][c.DEAL_ID]) == {crm.OPP}
    assert gone_opp not in set(conversion.tables[c.DEAL_STAGES][c.DEAL_ID])
    report = conversion.report
    assert report.inputs["Task.csv"].dropped == {"deleted (IsDeleted = true)": 1}
    assert report.inputs["Task.csv"].notes["archived (IsArchived) kept: old but real"] == 1
    assert report.inputs["Event.csv"].dropped == {"deleted (IsDeleted = true)": 1}
    assert report.inputs["OpportunityHistory.csv"].dropped == {
        "deleted (IsDeleted = true)": 1, "opportunity deleted or not in Opportunity.csv": 1}
    assert any("not in the export" in w for w in report.warnings)
    # an org that wants archived activities out can say so
    strict = sf(path, cfg=config_from_dict({"salesforce": {"keep_archived": False}}))
    assert strict.report.inputs["Task.csv"].dropped["archived (IsArchived = true)"] == 1
    assert tasks[2]["Id"] not in set(strict.tables[c.ACTIVITIES][c.ACTIVITY_ID])


def test_hubspot_archived_records_are_dropped(crm, tmp_path):
    deal_gone = crm.hs_deal("399")
    deal_gone["archived"] = True
    calls = [crm.hs_call("901", "2025-03-03T15:00:00Z"),
             crm.hs_call("902", "2025-03-04T15:00:00Z", deals=("399",))]
    conversion = hs(crm.write_hs_export(tmp_path, calls=calls, deals=[crm.hs_deal(), deal_gone],
                                        archived_calls=[crm.hs_call("903", "2025-03-05T15:00:00Z", archived=True)]))
    acts = conversion.tables[c.ACTIVITIES].set_index(c.ACTIVITY_ID)
    assert set(acts.index) == {"901", "902"}
    assert pd.isna(acts.loc["902", c.DEAL_ID])
    assert set(conversion.tables[c.DEALS][c.DEAL_ID]) == {crm.HS_DEAL}
    report = conversion.report
    assert report.inputs["calls.json, calls_archived.json"].dropped == {"archived (deleted in HubSpot)": 1}
    assert report.inputs["deals.json"].dropped == {"archived (deleted in HubSpot)": 1}


def test_open_tasks_and_future_events_are_plans(crm, tmp_path):
    plan = crm.task(1, IsClosed="false", Status="Not Started", ActivityDate="2025-05-06",
                    CreatedDate="2025-04-28T10:00:00.000Z", CompletedDateTime="")
    done = crm.task(2, ActivityDate="2025-04-25", CreatedDate="2025-04-25T16:00:00.000Z",
                    CompletedDateTime="2025-04-25T16:00:00.000Z")
    kickoff = crm.event(1, ActivityDate="2025-05-08", StartDateTime="2025-05-08T09:00:00.000Z",
                        EndDateTime="2025-05-08T10:00:00.000Z", CreatedDate="2025-04-28T15:00:00.000Z")
    conversion = sf(crm.write_sf_export(tmp_path, tasks=[plan, done], events=[kickoff]))
    assert list(conversion.tables[c.ACTIVITIES][c.ACTIVITY_ID]) == [done["Id"]]
    assert conversion.report.inputs["Task.csv"].dropped == {"open task (a plan, not an activity)": 1}
    assert conversion.report.inputs["Event.csv"].dropped == {"after as-of (a plan, not an activity)": 1}
    # but booking the future meeting is a fact of 28 Apr: it credits the call before it
    assert responses_of(conversion, done["Id"]) == {"meeting_booked": T("2025-04-28T15:00:00Z")}


# 9. A custom disposition -------------------------------------------------------------------

def test_custom_salesforce_disposition_through_the_config(crm, tmp_path):
    call = crm.task(1, CallDisposition="DM reached - pilot agreed")
    busy = crm.task(2, CallDisposition="Not connected - busy")
    path = crm.write_sf_export(tmp_path, tasks=[call, busy])
    default = sf(path)
    assert responses_of(default, call["Id"]) == {"connected": T("2025-03-03T16:00:00Z")}  # "reached"
    assert responses_of(default, busy["Id"]) == {}  # the stop rule wins over "connect"
    rules = [{"match": "pilot agreed", "responses": ["connected", "meeting_booked"]}]
    custom = sf(path, cfg=config_from_dict({"call_dispositions": rules}))
    assert set(responses_of(custom, call["Id"])) == {"connected", "meeting_booked"}


def test_custom_hubspot_call_outcome_guid(crm, tmp_path):
    booked = crm.hs_call("901", "2025-03-03T15:00:00Z", disposition="5c0d8f2e-7a41-4e0b-9a77-0c5e2f3b8d11")
    unknown = crm.hs_call("902", "2025-03-04T15:00:00Z", disposition="00000000-1111-2222-3333-444444444444")
    conversion = hs(crm.write_hs_export(tmp_path, calls=[booked, unknown]))
    assert responses_of(conversion, "901") == {"connected": T("2025-03-03T15:00:00Z"),
                                               "meeting_booked": T("2025-03-03T15:00:00Z")}
    assert responses_of(conversion, "902") == {}
    assert any("00000000-1111-2222-3333-444444444444" in w for w in conversion.report.warnings)


# 10. A bounce and a negative reply -----------------------------------------------------------

def test_salesforce_bounce_and_negative_reply(crm, tmp_path):
    email = dict(TaskSubtype="Email", Type="Email", CallType="", CallDurationInSeconds="", Subject="Email: hello")
    sent = crm.task(1, **email)
    typo = crm.task(2, **email, WhoId=crm.sf_id("003", 2))
    reply_task = crm.task(3, **email, CreatedDate="2025-03-03T18:00:00.000Z", CompletedDateTime="2025-03-03T18:00:00.000Z")
    msgs = [
        {"Id": crm.sf_id("02s", 1), "ActivityId": sent["Id"], "MessageDate": "2025-03-03T16:00:00.000Z",
         "Incoming": "false", "IsBounced": "false", "FirstOpenedDate": "2025-03-03T16:30:00.000Z"},
        {"Id": crm.sf_id("02s", 2), "ActivityId": typo["Id"], "MessageDate": "2025-03-03T16:00:00.000Z",
         "Incoming": "false", "IsBounced": "true"},
        {"Id": crm.sf_id("02s", 3), "ActivityId": reply_task["Id"], "MessageDate": "2025-03-03T18:00:00.000Z",
         "Incoming": "true", "ReplyToEmailMessageId": crm.sf_id("02s", 1),
         "TextBody": "Please remove me from this list."},
    ]
    conversion = sf(crm.write_sf_export(tmp_path, tasks=[sent, typo, reply_task], emails=msgs))
    assert responses_of(conversion, sent["Id"]) == {"opened": T("2025-03-03T16:30:00Z"),
                                                    "negative_reply": T("2025-03-03T18:00:00Z")}
    assert responses_of(conversion, typo["Id"]) == {"bounced": T("2025-03-03T16:00:00Z")}
    assert reply_task["Id"] not in set(conversion.tables[c.ACTIVITIES][c.ACTIVITY_ID])
    as_activity = sf(tmp_path, cfg=config_from_dict({"inbound_email": "activity"}))
    reply = one(as_activity.tables[c.ACTIVITIES], activity_id=reply_task["Id"])
    assert reply[c.DIRECTION] == "inbound"
    assert "negative_reply" in responses_of(as_activity, sent["Id"])


def test_hubspot_bounce_and_negative_reply(crm, tmp_path):
    def email(oid, at, **props):
        base = {"hs_timestamp": at, "hs_createdate": at, "hs_email_direction": "EMAIL", "hs_email_status": "SENT"}
        base.update(props)
        return crm.hs_object(oid, base, deals=())

    emails = [
        email("801", "2025-03-03T13:00:00Z", hs_email_status="BOUNCED"),
        email("802", "2025-03-04T13:00:00Z", hs_sequence_id="77"),
        email("803", "2025-03-04T15:30:00Z", hs_email_direction="INCOMING_EMAIL",
              hs_email_text="Not interested. Please take me off this list."),
    ]
    conversion = hs(crm.write_hs_export(tmp_path, emails=emails))
    assert responses_of(conversion, "801") == {"bounced": T("2025-03-03T13:00:00Z")}
    assert responses_of(conversion, "802") == {"negative_reply": T("2025-03-04T15:30:00Z")}
    acts = conversion.tables[c.ACTIVITIES].set_index(c.ACTIVITY_ID)
    assert set(acts.index) == {"801", "802"} and bool(acts.loc["802", c.IS_AUTOMATED])


# 12. Current-state columns are never passed through ------------------------------------------

FORBIDDEN = {"stagename", "probability", "iswon", "isclosed", "forecastcategory", "hs_is_closed_won", "dealstage",
             "hs_deal_stage_probability", "closedate", "lastactivitydate", "champion_confirmed__c"}


def test_current_state_columns_never_become_features(shared_crm):
    for source, path in (("salesforce", shared_crm / "salesforce"), ("hubspot", shared_crm / "hubspot" / "api")):
        conversion = convert_crm(source, path, as_of="2025-05-02")
        for name, table in conversion.tables.items():
            assert list(table.columns) == c.TABLES[name].column_names, (source, name)
            assert not FORBIDDEN & {col.lower() for col in table.columns}
    # won / closed_at come from the stage path: a stale IsWon flag cannot leak into them
    sf_deals = convert_crm("salesforce", shared_crm / "salesforce", as_of="2025-03-01").tables[c.DEALS]
    assert sf_deals[c.WON].isna().all() and sf_deals[c.CLOSED_AT].isna().all()  # all still open on 1 March


@pytest.mark.parametrize("section, key, value, message", [
    ("salesforce", "custom_fields", {"deals": ["StageName"]}, "StageName"),
    ("salesforce", "custom_fields", {"deals": ["Probability"]}, "Probability"),
    ("salesforce", "custom_fields", {"deals": ["IsWon"]}, "IsWon"),
    ("salesforce", "fields", {"deals": {"amount": "Amount"}}, "Amount"),
    ("salesforce", "custom_fields", {"accounts": ["LastActivityDate"]}, "LastActivityDate"),
    ("hubspot", "custom_fields", {"deals": ["hs_is_closed_won"]}, "hs_is_closed_won"),
    ("hubspot", "custom_fields", {"deals": ["hs_date_entered_closedwon"]}, "hs_date_entered_closedwon"),
])
def test_configuring_a_current_state_column_is_refused(section, key, value, message):
    with pytest.raises(CrmConfigError, match=f"refusing '{message}'"):
        config_from_dict({section: {key: value}})


def test_a_current_outcome_checkbox_cannot_be_a_feature():
    with pytest.raises(CrmConfigError, match="Champion_Confirmed__c"):
        config_from_dict({"salesforce": {"outcome_fields": {"Champion_Confirmed__c": "champion_confirmed"},
                                         "custom_fields": {"deals": ["Champion_Confirmed__c"]}}})


def test_safe_custom_fields_pass_through(crm, tmp_path):
    opp = crm.opportunity(Segment__c="Mid-Market", Region__c="EU")
    cfg = config_from_dict({"salesforce": {"custom_fields": {"deals": ["Segment__c"]},
                                           "fields": {"deals": {"product": "Region__c"}}}})
    conversion = sf(crm.write_sf_export(tmp_path, tasks=[crm.task(1)], opportunities=[opp]), cfg=cfg)
    deal = one(conversion.tables[c.DEALS], deal_id=crm.OPP)
    assert (deal["Segment__c"], deal[c.PRODUCT]) == ("Mid-Market", "EU")


# Unmapped stage names: an error naming them and the file ----------------------------------------

def test_unmapped_stage_names_are_an_error_naming_them(crm, tmp_path):
    histories = [crm.history(1, "Prospecting", "2025-03-01T09:00:00.000Z"),
                 crm.history(2, "Technical Win", "2025-03-05T09:00:00.000Z"),
                 crm.history(3, "Legacy Demo", "2025-03-07T09:00:00.000Z")]
    path = crm.write_sf_export(tmp_path / "in", tasks=[crm.task(1)], histories=histories)
    conversion = convert_crm("salesforce", path, as_of=AS_OF)
    report = conversion.report
    assert report.unmapped_stages == {"OpportunityHistory.csv": ["Legacy Demo", "Technical Win"]}
    assert report.exit_code == 1 and conversion.tables == {}
    assert "'Legacy Demo', 'Technical Win'" in report.errors[0] and "OpportunityHistory.csv" in report.errors[0]

    from training.cli import app

    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["import-crm", "salesforce", "--in", str(path), "--out", str(out),
                                      "--as-of", AS_OF])
    assert result.exit_code == 1
    assert "Technical Win" in result.output and "nothing written" in result.output
    assert not out.exists()

    fixed = config_from_dict({"stage_map": {"Technical Win": "Proposal", "Legacy Demo": {"order": 2}}})
    ok = sf(path, cfg=fixed)
    assert list(ok.tables[c.DEAL_STAGES][c.STAGE_ORDER]) == [1, 3, 2]
    assert ok.report.stages["Proposal"].via == "stage_map"


def test_hubspot_unknown_stage_id_is_an_error(crm, tmp_path):
    deal = crm.hs_deal(stages=(("appointmentscheduled", "2025-03-01T09:00:00Z"), ("9999", "2025-03-05T09:00:00Z")))
    conversion = convert_crm("hubspot", crm.write_hs_export(tmp_path, calls=[crm.hs_call("901", "2025-03-03T15:00:00Z")],
                                                             deals=[deal]), as_of=AS_OF)
    assert conversion.report.unmapped_stages == {"deals.json": ["9999"]}
    assert "pipelines_deals.json" in conversion.report.errors[0]


# Fallbacks ---------------------------------------------------------------------------------

def test_stage_history_from_field_history_when_opportunity_history_is_missing(crm, tmp_path):
    fh = [
        {"Id": crm.sf_id("017", 1), "OpportunityId": crm.OPP, "CreatedDate": "2025-03-05T09:00:00.000Z",
         "Field": "StageName", "OldValue": "Prospecting", "NewValue": "Qualification", "IsDeleted": "false"},
        {"Id": crm.sf_id("017", 2), "OpportunityId": crm.OPP, "CreatedDate": "2025-03-06T09:00:00.000Z",
         "Field": "Amount", "OldValue": "8000", "NewValue": "10000", "IsDeleted": "false"},
        {"Id": crm.sf_id("017", 3), "OpportunityId": crm.OPP, "CreatedDate": "2025-03-09T09:00:00.000Z",
         "Field": "StageName", "OldValue": "Qualification", "NewValue": "Closed Won", "IsDeleted": "false"},
    ]
    path = crm.write_sf_export(tmp_path, tasks=[crm.task(1)], histories=[], field_history=fh,
                               opportunities=[crm.opportunity(StageName="Closed Won", Amount="10000.0")])
    conversion = sf(path)
    stages = conversion.tables[c.DEAL_STAGES]
    assert list(zip(stages[c.STAGE], stages[c.ENTERED_AT])) == [
        ("Prospecting", T("2025-03-01T09:00:00Z")), ("Qualification", T("2025-03-05T09:00:00Z")),
        ("Closed Won", T("2025-03-09T09:00:00Z"))]
    deal = one(conversion.tables[c.DEALS], deal_id=crm.OPP)
    assert deal[c.AMOUNT] == 8000.0 and bool(deal[c.WON])  # the amount before its first change
    assert any("OpportunityFieldHistory" in w for w in conversion.report.warnings)


def test_hubspot_incoming_email_as_an_activity(crm, tmp_path):
    sent = crm.hs_object("801", {"hs_timestamp": "2025-03-03T13:00:00Z", "hs_email_direction": "EMAIL",
                                 "hs_email_status": "SENT"}, deals=())
    answer = crm.hs_object("802", {"hs_timestamp": "2025-03-03T15:00:00Z", "hs_email_direction": "INCOMING_EMAIL",
                                   "hs_email_text": "Thanks, received."}, deals=())
    conversion = hs(crm.write_hs_export(tmp_path, emails=[sent, answer]),
                    cfg=config_from_dict({"inbound_email": "activity"}))
    acts = conversion.tables[c.ACTIVITIES].set_index(c.ACTIVITY_ID)
    assert acts.loc["802", c.DIRECTION] == "inbound"
    assert responses_of(conversion, "801") == {"replied": T("2025-03-03T15:00:00Z")}


def test_unreadable_exports_are_one_clear_error(crm, tmp_path):
    path = crm.write_sf_export(tmp_path / "sf", tasks=[crm.task(1)])
    text = (path / "Task.csv").read_text().replace('"CreatedDate"', '"Created"', 1)
    (path / "Task.csv").write_text(text)
    report = convert_crm("salesforce", path, as_of=AS_OF).report
    assert report.exit_code == 1 and report.errors[0].startswith("Task.csv: missing column(s) CreatedDate")
    path = crm.write_sf_export(tmp_path / "sf2", tasks=[crm.task(1, CompletedDateTime="yesterday")])
    report = convert_crm("salesforce", path, as_of=AS_OF).report
    assert "Task.csv, CompletedDateTime" in report.errors[0] and "Task.csv row 1: 'yesterday'" in report.errors[0]
    hs_dir = crm.write_hs_export(tmp_path / "hs", calls=[crm.hs_call("901", "2025-03-03T15:00:00Z")])
    (hs_dir / "deals.json").write_text("{not json")
    report = convert_crm("hubspot", hs_dir, as_of=AS_OF).report
    assert report.errors[0].startswith("deals.json: not valid JSON")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no Task.csv or Event.csv" in convert_crm("salesforce", empty).report.errors[0]


# An export without any stage history or outcome cannot label anything ----------------------

def test_salesforce_export_without_stage_history_or_outcomes_is_refused_with_what_to_export(crm, tmp_path):
    call = crm.task(1, ActivityDate="2025-03-03", CreatedDate="2025-03-03T15:00:00.000Z",
                    CallDisposition="Connected - good talk")
    directory = crm.write_sf_export(tmp_path, tasks=[call], histories=[])
    conversion = convert_crm("salesforce", directory, as_of=AS_OF)
    assert conversion.tables == {}
    assert len(conversion.report.errors) == 1
    assert str(directory) in conversion.report.errors[0]
    assert "no stage history and no outcomes" in conversion.report.errors[0]
    assert "OpportunityHistory.csv" in conversion.report.errors[0]


def test_hubspot_export_without_stage_history_or_outcomes_is_refused_with_what_to_export(crm, tmp_path):
    call = crm.hs_call("901", "2025-03-18T13:00:00Z")
    deal = crm.hs_deal()
    del deal["propertiesWithHistory"]  # exported without the stage history
    directory = crm.write_hs_export(tmp_path, calls=[call], deals=[deal])
    conversion = convert_crm("hubspot", directory, as_of=AS_OF)
    assert conversion.tables == {}
    assert len(conversion.report.errors) == 1
    assert "no deal stage history and no outcomes" in conversion.report.errors[0]
    assert "propertiesWithHistory=dealstage" in conversion.report.errors[0]
