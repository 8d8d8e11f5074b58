"""Contract tables → a Salesforce Data Export (the adapter's inverse, for tests and demos).

:func:`to_salesforce_export` writes ``Task.csv``, ``Event.csv``, ``EmailMessage.csv``,
``Opportunity.csv``, ``OpportunityHistory.csv``, ``OpportunityFieldHistory.csv``,
``OpportunityStage.csv``, ``Contact.csv``, ``Account.csv`` and ``User.csv`` the way an org
would hold the same history, with real-shaped 18-character ids, and returns the id map
and the adapter config (custom fields, outcome checkboxes, ...) that reads it back.

Standard Salesforce mechanisms are used wherever they exist: CallDisposition for call
results, EmailMessage for opens, bounces and threaded replies, OpportunityHistory for
stages, field history of checkboxes for outcomes. What Salesforce has no standard field
for goes into custom fields of the kind sequencers and admins add (``Personalization__c``,
``Replied_At__c``, ``Meeting_Outcome__c``, ...). What the export cannot carry is listed in
docs/crm.md ("Round trip") and counted in :attr:`SalesforceExport.approximated`.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from features import contract as c
from features.dataset import Dataset, load_dataset
from importers.crm.common import seniority_of
from importers.crm.config import load_config
from importers.crm.ids import make_sf_id

logger = logging.getLogger(__name__)

EVENT_TYPES = {"meeting": "Meeting", "demo": "Demo", "workshop": "Workshop"}
REGION_COUNTRY = {"NA": "United States", "EMEA": "Germany", "APAC": "Japan", "LATAM": "Brazil"}
NO_SHOW_FIELD = "Meeting_Outcome__c"
REPLY_TEXT = {
    "replied": "Thanks for the note, I will read it.",
    "positive_reply": "Sounds good, let's talk next week.",
    "negative_reply": "Not interested. Please remove me from your list.",
}
PREFIX = {"accounts": "001", "contacts": "003", "reps": "005", "deals": "006", "tasks": "00T", "events": "00U",
          "history": "008", "field_history": "017", "stages": "01J", "emails": "02s", "trackers": "4Kt"}


def export_as_of(as_of, acts: pd.DataFrame, responses: pd.DataFrame, stages: pd.DataFrame,  # noqa: ANN001
                 outcomes: pd.DataFrame) -> pd.Timestamp:
    """The export's time in UTC: ``as_of`` if given, else the latest time anywhere in the tables."""
    if as_of is None:
        stamps = [acts[c.OCCURRED_AT].max(), acts[c.LOGGED_AT].max() if c.LOGGED_AT in acts else pd.NaT,
                  responses[c.OCCURRED_AT].max() if len(responses) else pd.NaT,
                  stages[c.ENTERED_AT].max() if len(stages) else pd.NaT,
                  outcomes[c.OCCURRED_AT].max() if len(outcomes) else pd.NaT]
        as_of = max(t for t in stamps if pd.notna(t))
    as_of = pd.Timestamp(as_of)
    return as_of.tz_localize("UTC") if as_of.tzinfo is None else as_of.tz_convert("UTC")


@dataclass
class SalesforceExport:
    """What :func:`to_salesforce_export` wrote.

    Attributes:
        directory: the export directory.
        ids: kind (``activities``, ``deals``, ``contacts``, ``accounts``, ``reps``) → original id → Salesforce id.
        config: adapter config (a mapping, also written as YAML by :meth:`write_config`).
        as_of: the export time to read it back with.
        approximated: what the export could only approximate, with counts (e.g.
            ``occurred_at of tasks logged on a later day: day precision``).
    """

    directory: Path
    ids: dict[str, dict[str, str]]
    config: dict
    as_of: pd.Timestamp
    approximated: Counter = field(default_factory=Counter)

    def original_ids(self, kind: str) -> dict[str, str]:
        return {v: k for k, v in self.ids[kind].items()}

    def write_config(self, path: Path) -> Path:
        Path(path).write_text(yaml.safe_dump(self.config, sort_keys=False, allow_unicode=True), encoding="utf-8")
        return Path(path)


def _sf_time(ts) -> str:
    if ts is None or pd.isna(ts):
        return ""
    ts = pd.Timestamp(ts).tz_convert("UTC")
    return f"{ts:%Y-%m-%dT%H:%M:%S}.{ts.microsecond // 1000:03d}Z"


def _field_name(name: str) -> str:
    """``template_id`` → ``Template_Id__c``."""
    return "_".join(p[:1].upper() + p[1:] for p in re.split(r"[^A-Za-z0-9]+", str(name)) if p) + "__c"


def _text(value) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, pd.Timestamp):
        return _sf_time(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return repr(value)
    return str(value)


def _write(directory: Path, name: str, rows: list[dict], columns: list[str]) -> None:
    frame = pd.DataFrame(rows, columns=columns)
    frame = frame.map(_text) if len(frame) else frame
    frame.to_csv(directory / name, index=False, quoting=1, lineterminator="\n")


class _Ids:
    def __init__(self) -> None:
        self.maps: dict[str, dict[str, str]] = {}
        self.counters: Counter = Counter()

    def get(self, kind: str, original, prefix: str | None = None) -> str:
        if original is None or original is pd.NA or (isinstance(original, float) and np.isnan(original)):
            return ""
        table = self.maps.setdefault(kind, {})
        key = str(original)
        if key not in table:
            self.counters[kind] += 1
            table[key] = make_sf_id(prefix or PREFIX[kind], self.counters[kind])
        return table[key]

    def new(self, kind: str) -> str:
        self.counters[kind] += 1
        return make_sf_id(PREFIX[kind], self.counters[kind])


def to_salesforce_export(
    dataset: Dataset | dict[str, pd.DataFrame] | Path | str,
    directory: Path | str,
    *,
    rep_timezone: str = "UTC",
    as_of: pd.Timestamp | str | None = None,
) -> SalesforceExport:
    """Write contract tables as a Salesforce export that the adapter reads back.

    Args:
        dataset: a :class:`Dataset`, a dict of typed tables, or a dataset directory.
        directory: where to write the CSVs (created).
        rep_timezone: ``User.TimeZoneSidKey`` of every rep (decides ``ActivityDate``).
        as_of: export time (default: the latest timestamp in the tables).
    """
    if isinstance(dataset, (str, Path)):
        dataset = load_dataset(Path(dataset))
    tables = dataset.tables if isinstance(dataset, Dataset) else dict(dataset)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    ids = _Ids()
    approx: Counter = Counter()
    acts = tables[c.ACTIVITIES]
    responses = tables.get(c.RESPONSES, pd.DataFrame(columns=c.TABLES[c.RESPONSES].column_names))
    responses = responses[responses[c.ACTIVITY_ID].isin(set(acts[c.ACTIVITY_ID]))]
    stages = tables.get(c.DEAL_STAGES, pd.DataFrame(columns=c.TABLES[c.DEAL_STAGES].column_names))
    outcomes = tables.get(c.OUTCOMES, pd.DataFrame(columns=c.TABLES[c.OUTCOMES].column_names))
    deals = tables.get(c.DEALS)
    as_of = export_as_of(as_of, acts, responses, stages, outcomes)

    defaults = load_config()
    sf_cfg: dict = {"fields": {}, "custom_fields": {}, "response_fields": {}}
    act_custom = [col for col in acts.columns if col not in c.TABLES[c.ACTIVITIES].column_names]
    custom_map = {col: _field_name(col) for col in act_custom}
    if act_custom:
        sf_cfg["custom_fields"][c.ACTIVITIES] = {v: k for k, v in custom_map.items()}
    sf_cfg["fields"][c.ACTIVITIES] = {"personalization": "Personalization__c", "sequence_step": "Sequence_Step__c",
                                      "direction": "Direction__c"}

    # --- responses, indexed by activity ----------------------------------------------
    first = (responses.sort_values(c.OCCURRED_AT).drop_duplicates([c.ACTIVITY_ID, c.RESPONSE])
             .set_index([c.ACTIVITY_ID, c.RESPONSE])[c.OCCURRED_AT].to_dict()) if len(responses) else {}
    by_activity: dict[str, dict[str, pd.Timestamp]] = {}
    for (aid, response), at in first.items():
        by_activity.setdefault(aid, {})[response] = at
    response_fields: dict[str, str] = {}

    def response_field(response: str) -> str:
        name = response_fields.setdefault(response, _field_name(f"{response}_at"))
        return name

    # --- activities ---------------------------------------------------------------------
    tz = rep_timezone
    occurred = acts[c.OCCURRED_AT]
    logged = acts[c.LOGGED_AT].fillna(occurred) if c.LOGGED_AT in acts else occurred
    approx["logged_at missing: CreatedDate = occurred_at"] += int(acts[c.LOGGED_AT].isna().sum()) if c.LOGGED_AT in acts else len(acts)
    local_day = occurred.dt.tz_convert(tz).dt.strftime("%Y-%m-%d")
    logged_day = logged.dt.tz_convert(tz).dt.strftime("%Y-%m-%d")
    task_rows, event_rows, email_rows = [], [], []
    extra_types = sorted(set(acts[c.TYPE].dropna()) - set(c.ACTIVITY_TYPES))
    for i, row in enumerate(acts.to_dict("records")):
        aid = str(row[c.ACTIVITY_ID])
        kind = row[c.TYPE]
        got = dict(by_activity.get(aid, {}))
        deal = ids.get("deals", row.get(c.DEAL_ID))
        account = ids.get("accounts", row.get(c.ACCOUNT_ID))
        base = {
            "WhoId": ids.get("contacts", row.get(c.CONTACT_ID)),
            "WhatId": deal or account,
            "AccountId": account,
            "OwnerId": ids.get("reps", row.get(c.REP_ID)),
            "CreatedDate": _sf_time(logged.iloc[i]),
            "IsDeleted": "false", "IsArchived": "false",
            "Personalization__c": row.get(c.PERSONALIZATION),
            "Sequence_Step__c": row.get(c.SEQUENCE_STEP),
            "Direction__c": row.get(c.DIRECTION),
            **{custom_map[col]: row.get(col) for col in act_custom},
        }
        if kind in EVENT_TYPES:
            sid = ids.get("activities", aid, prefix=PREFIX["events"])
            start = occurred.iloc[i]
            duration = row.get(c.DURATION_S)
            end = start + pd.Timedelta(seconds=float(duration)) if pd.notna(duration) else pd.NaT
            ev = {**base, "Id": sid, "Subject": EVENT_TYPES[kind], "Type": EVENT_TYPES[kind], "EventSubtype": "Event",
                  "ActivityDate": local_day.iloc[i], "ActivityDateTime": _sf_time(start),
                  "StartDateTime": _sf_time(start), "EndDateTime": _sf_time(end),
                  "DurationInMinutes": "" if pd.isna(duration) else str(int(round(float(duration) / 60))),
                  "IsAllDayEvent": "false", "IsChild": "false"}
            if "no_show" in got:
                ev[NO_SHOW_FIELD] = "No Show"
                approx["no_show at the meeting's start"] += int(got.pop("no_show") != start)
            else:
                ev[NO_SHOW_FIELD] = "Held"
            if row.get(c.IS_AUTOMATED) is True:
                approx["automated meetings (Event has no automation flag)"] += 1
            for response, at in got.items():
                ev[response_field(response)] = _sf_time(at)
            event_rows.append(ev)
            continue
        sid = ids.get("activities", aid, prefix=PREFIX["tasks"])
        completed = occurred.iloc[i] if local_day.iloc[i] == logged_day.iloc[i] else logged.iloc[i]
        if local_day.iloc[i] != logged_day.iloc[i] and kind != "email":  # emails keep MessageDate
            approx["occurred_at of tasks logged on a later day: day precision"] += 1
        automated = bool(row.get(c.IS_AUTOMATED)) if pd.notna(row.get(c.IS_AUTOMATED)) else False
        t = {**base, "Id": sid, "ActivityDate": local_day.iloc[i], "Status": "Completed", "IsClosed": "true",
             "CompletedDateTime": _sf_time(completed),
             "ActionCadenceStepTrackerId": ids.new("trackers") if automated else "",
             "CallType": "", "CallDurationInSeconds": "", "CallDisposition": ""}
        direction = row.get(c.DIRECTION)
        if kind == "call":
            t.update(Subject="Call", Type="Call", TaskSubtype="Call",
                     CallType={"inbound": "Inbound", "outbound": "Outbound"}.get(direction, ""),
                     CallDurationInSeconds="" if pd.isna(row.get(c.DURATION_S)) else str(int(round(row[c.DURATION_S]))))
            parts = []
            if "connected" in got:
                approx["call responses at the call's time"] += int(got["connected"] != occurred.iloc[i])
                got.pop("connected")
                parts.append("Connected")
            if "negative_reply" in got:
                approx["call responses at the call's time"] += int(got["negative_reply"] != occurred.iloc[i])
                got.pop("negative_reply")
                parts.append("not interested")
            t["CallDisposition"] = " - ".join(parts) if parts else "No answer"
        elif kind == "email":
            t.update(Subject="Email: update", Type="Email", TaskSubtype="Email")
            msg_id = ids.new("emails")
            incoming = direction == "inbound"
            # an inbound email's own responses have no EmailMessage home: they go to response fields
            bounced = "bounced" in got and not incoming
            if bounced:
                approx["bounced at the send time"] += int(got["bounced"] != occurred.iloc[i])
                got.pop("bounced")
            opened = None if incoming else got.pop("opened", None)
            email_rows.append({"Id": msg_id, "ActivityId": sid, "RelatedToId": deal, "Subject": "update",
                               "MessageDate": _sf_time(occurred.iloc[i]), "Incoming": "true" if incoming else "false",
                               "Status": "3", "IsTracked": "true", "FirstOpenedDate": _sf_time(opened),
                               "IsBounced": "true" if bounced else "false", "ReplyToEmailMessageId": "",
                               "TextBody": "", "CreatedDate": _sf_time(occurred.iloc[i])})
            for kind_of_reply in ("replied", "positive_reply", "negative_reply"):
                if kind_of_reply in got and not incoming:
                    at = got.pop(kind_of_reply)
                    email_rows.append({"Id": ids.new("emails"), "ActivityId": "", "RelatedToId": deal,
                                       "Subject": "RE: update", "MessageDate": _sf_time(at), "Incoming": "true",
                                       "Status": "0", "IsTracked": "false", "FirstOpenedDate": "",
                                       "IsBounced": "false", "ReplyToEmailMessageId": msg_id,
                                       "TextBody": REPLY_TEXT[kind_of_reply], "CreatedDate": _sf_time(at)})
        elif kind == "inmail":
            t.update(Subject="LinkedIn InMail: intro", Type="Other", TaskSubtype="Task")
        elif kind == "social":
            t.update(Subject="LinkedIn message", Type="Other", TaskSubtype="LinkedIn")
        elif kind == "none":
            t.update(Subject="Hold - no touch", Type="Hold", TaskSubtype="Task")
        else:
            t.update(Subject=str(kind).title(), Type=str(kind).title(), TaskSubtype="Task")
        if kind != "call" and pd.notna(row.get(c.DURATION_S)):
            approx["durations of non-call tasks"] += 1
        for response, at in got.items():
            t[response_field(response)] = _sf_time(at)
        task_rows.append(t)

    task_columns = ["Id", "WhoId", "WhatId", "AccountId", "OwnerId", "Subject", "ActivityDate", "Status", "IsClosed",
                    "Type", "TaskSubtype", "CallType", "CallDurationInSeconds", "CallDisposition",
                    "ActionCadenceStepTrackerId", "CreatedDate", "CompletedDateTime", "IsDeleted", "IsArchived",
                    "Personalization__c", "Sequence_Step__c", "Direction__c", *custom_map.values(),
                    *sorted(set(response_fields.values()))]
    event_columns = ["Id", "WhoId", "WhatId", "AccountId", "OwnerId", "Subject", "Type", "EventSubtype", "ActivityDate",
                     "ActivityDateTime", "StartDateTime", "EndDateTime", "DurationInMinutes", "IsAllDayEvent", "IsChild",
                     "CreatedDate", "IsDeleted", "IsArchived", NO_SHOW_FIELD, "Personalization__c", "Sequence_Step__c",
                     "Direction__c", *custom_map.values(), *sorted(set(response_fields.values()))]
    _write(out, "Task.csv", task_rows, task_columns)
    _write(out, "Event.csv", event_rows, event_columns)
    _write(out, "EmailMessage.csv", email_rows,
           ["Id", "ActivityId", "RelatedToId", "Subject", "MessageDate", "Incoming", "Status", "IsTracked",
            "FirstOpenedDate", "IsBounced", "ReplyToEmailMessageId", "TextBody", "CreatedDate"])
    sf_cfg["response_fields"] = {r: f for r, f in response_fields.items()}
    sf_cfg["no_show_field"] = NO_SHOW_FIELD
    sf_cfg["task_types"] = [{"field": "Type", "match": "^hold$", "type": "none"},
                            *defaults.salesforce.task_types,
                            *[{"field": "Type", "match": f"^{re.escape(str(t).title())}$", "type": t} for t in extra_types]]

    # --- deals, stages, outcomes ------------------------------------------------------------
    deal_ids = list(dict.fromkeys([*(deals[c.DEAL_ID] if deals is not None else []), *stages[c.DEAL_ID],
                                   *outcomes[c.DEAL_ID], *acts[c.DEAL_ID].dropna()]))
    deal_info = deals.set_index(c.DEAL_ID) if deals is not None else pd.DataFrame(index=pd.Index([], dtype="string"))
    deal_custom = [col for col in (deals.columns if deals is not None else [])
                   if col not in c.TABLES[c.DEALS].column_names]
    if deal_custom:
        sf_cfg["custom_fields"][c.DEALS] = {_field_name(col): col for col in deal_custom}
    sf_cfg["fields"][c.DEALS] = {"product": "Product__c"}
    path_of = {d: g.sort_values(c.ENTERED_AT) for d, g in stages.groupby(c.DEAL_ID)} if len(stages) else {}
    won_stages: set[str] = set()
    if deals is not None and len(stages):
        closers = stages.merge(deals[[c.DEAL_ID, c.CLOSED_AT, c.WON]], on=c.DEAL_ID)
        closers = closers[closers[c.WON].fillna(False).astype(bool) & (closers[c.ENTERED_AT] == closers[c.CLOSED_AT])]
        won_stages = set(closers[c.STAGE])
    won_outcomes = outcomes[outcomes[c.OUTCOME] == "closed_won"]
    if len(won_outcomes) and len(stages):
        hit = stages.merge(won_outcomes[[c.DEAL_ID, c.OCCURRED_AT]], on=c.DEAL_ID)
        won_stages |= set(hit[hit[c.ENTERED_AT] == hit[c.OCCURRED_AT]][c.STAGE])
    opp_rows, hist_rows = [], []
    for d in deal_ids:
        info = deal_info.loc[d] if d in deal_info.index else None
        path = path_of.get(d)
        created = info[c.CREATED_AT] if info is not None and pd.notna(info[c.CREATED_AT]) else (
            path[c.ENTERED_AT].iloc[0] if path is not None else acts.loc[acts[c.DEAL_ID] == d, c.OCCURRED_AT].min())
        amount = info[c.AMOUNT] if info is not None else np.nan
        last = path.iloc[-1] if path is not None else None
        closed = last is not None and (last[c.STAGE_ORDER] == c.CLOSED_LOST_ORDER or last[c.STAGE] in won_stages)
        won = closed and last[c.STAGE] in won_stages
        close_date = (last[c.ENTERED_AT] if closed else created + pd.Timedelta(days=90)).strftime("%Y-%m-%d")
        opp = {"Id": ids.get("deals", d), "AccountId": ids.get("accounts", info[c.ACCOUNT_ID]) if info is not None else "",
               "OwnerId": ids.get("reps", info[c.OWNER_REP_ID]) if info is not None else "", "Name": f"Deal {d}",
               "StageName": last[c.STAGE] if last is not None else "", "Amount": amount,
               "Probability": "100.0" if won else ("0.0" if closed else "50.0"), "CloseDate": close_date,
               "IsClosed": closed, "IsWon": won, "CreatedDate": _sf_time(created), "IsDeleted": "false",
               "Product__c": info[c.PRODUCT] if info is not None else ""}
        for col in deal_custom:
            opp[_field_name(col)] = info[col] if info is not None else ""
        opp_rows.append(opp)
        if path is not None:
            for entry in path.to_dict("records"):
                hist_rows.append({"Id": ids.new("history"), "OpportunityId": opp["Id"],
                                  "CreatedDate": _sf_time(entry[c.ENTERED_AT]), "StageName": entry[c.STAGE],
                                  "Amount": amount, "CloseDate": close_date, "IsDeleted": "false"})
        elif pd.notna(created):
            approx["deals without stage history"] += 1
    _write(out, "Opportunity.csv", opp_rows,
           ["Id", "AccountId", "OwnerId", "Name", "StageName", "Amount", "Probability", "CloseDate", "IsClosed",
            "IsWon", "CreatedDate", "IsDeleted", "Product__c", *[_field_name(col) for col in deal_custom]])
    _write(out, "OpportunityHistory.csv", hist_rows,
           ["Id", "OpportunityId", "CreatedDate", "StageName", "Amount", "CloseDate", "IsDeleted"])

    stage_rows = []
    if len(stages):
        order_of = stages.groupby(c.STAGE)[c.STAGE_ORDER].agg(lambda s: s.mode().iloc[0]).to_dict()
        open_names = sorted((n for n, o in order_of.items() if o != c.CLOSED_LOST_ORDER and n not in won_stages),
                            key=lambda n: (order_of[n], n))
        top = max([order_of[n] for n in open_names], default=0)
        for n in open_names:
            stage_rows.append((n, order_of[n], False, False))
        for j, n in enumerate(sorted(won_stages)):
            stage_rows.append((n, top + 1 + j, True, True))
        for j, n in enumerate(sorted(n for n, o in order_of.items() if o == c.CLOSED_LOST_ORDER and n not in won_stages)):
            stage_rows.append((n, 1000 + j, True, False))
    _write(out, "OpportunityStage.csv", [
        {"Id": ids.new("stages"), "MasterLabel": n, "ApiName": n, "IsActive": "true", "SortOrder": str(o),
         "IsClosed": cl, "IsWon": w} for n, o, cl, w in stage_rows],
        ["Id", "MasterLabel", "ApiName", "IsActive", "SortOrder", "IsClosed", "IsWon"])

    outcome_fields: dict[str, str] = {}
    fh_rows = []
    for o in outcomes.to_dict("records"):
        if o[c.OUTCOME] == "closed_won":
            continue  # derived from the stage history
        name = _field_name(o[c.OUTCOME])
        outcome_fields.setdefault(name, o[c.OUTCOME])
        fh_rows.append({"Id": ids.new("field_history"), "OpportunityId": ids.get("deals", o[c.DEAL_ID]),
                        "CreatedDate": _sf_time(o[c.OCCURRED_AT]), "Field": name, "DataType": "Boolean",
                        "OldValue": "false", "NewValue": "true", "IsDeleted": "false"})
    if c.CONTACT_ID in outcomes:
        approx["outcome contact_id (not in field history)"] += int(outcomes[c.CONTACT_ID].notna().sum())
    _write(out, "OpportunityFieldHistory.csv", fh_rows,
           ["Id", "OpportunityId", "CreatedDate", "Field", "DataType", "OldValue", "NewValue", "IsDeleted"])
    sf_cfg["outcome_fields"] = outcome_fields

    # --- people ----------------------------------------------------------------------------
    contacts = tables.get(c.CONTACTS)
    if contacts is not None:
        custom = [col for col in contacts.columns if col not in c.TABLES[c.CONTACTS].column_names]
        if custom:
            sf_cfg["custom_fields"][c.CONTACTS] = {_field_name(col): col for col in custom}
        derived = seniority_of(contacts[c.TITLE], defaults)
        disagree = contacts[c.SENIORITY].notna() & (derived != contacts[c.SENIORITY]).fillna(True)
        if disagree.any():
            sf_cfg["fields"][c.CONTACTS] = {"seniority": "Seniority__c"}
            approx["seniority not derivable from the title: Seniority__c"] += int(disagree.sum())
        rows = []
        for row in contacts.to_dict("records"):
            r = {"Id": ids.get("contacts", row[c.CONTACT_ID]), "AccountId": ids.get("accounts", row.get(c.ACCOUNT_ID)),
                 "FirstName": "Pat", "LastName": str(row[c.CONTACT_ID]), "Title": row.get(c.TITLE),
                 "Department": row.get(c.DEPARTMENT), "Seniority__c": row.get(c.SENIORITY), "IsDeleted": "false"}
            r.update({_field_name(col): row.get(col) for col in custom})
            rows.append(r)
        _write(out, "Contact.csv", rows, ["Id", "AccountId", "FirstName", "LastName", "Title", "Department",
                                          "Seniority__c", "IsDeleted", *[_field_name(col) for col in custom]])
    accounts = tables.get(c.ACCOUNTS)
    if accounts is not None:
        custom = [col for col in accounts.columns if col not in c.TABLES[c.ACCOUNTS].column_names]
        if custom:
            sf_cfg["custom_fields"][c.ACCOUNTS] = {_field_name(col): col for col in custom}
        regions = sorted(set(accounts[c.REGION].dropna()))
        country = {r: REGION_COUNTRY.get(r, r) for r in regions}
        unusual = {r: [country[r]] for r in regions if r not in REGION_COUNTRY}
        region_cfg = None
        if unusual:
            region_cfg = {**{k: list(v) for k, v in defaults.regions.items()}, **unusual}
        rows = []
        for row in accounts.to_dict("records"):
            r = {"Id": ids.get("accounts", row[c.ACCOUNT_ID]), "Name": f"Account {row[c.ACCOUNT_ID]}",
                 "Industry": row.get(c.INDUSTRY), "NumberOfEmployees": row.get(c.EMPLOYEES),
                 "BillingCountry": country.get(row.get(c.REGION), "") if pd.notna(row.get(c.REGION)) else "",
                 "IsDeleted": "false"}
            r.update({_field_name(col): row.get(col) for col in custom})
            rows.append(r)
        _write(out, "Account.csv", rows, ["Id", "Name", "Industry", "NumberOfEmployees", "BillingCountry", "IsDeleted",
                                          *[_field_name(col) for col in custom]])
    else:
        region_cfg = None
    reps = tables.get(c.REPS)
    users = []
    rep_rows = reps.to_dict("records") if reps is not None else []
    known = {str(r[c.REP_ID]) for r in rep_rows}
    rep_rows += [{c.REP_ID: r} for r in sorted(set(ids.maps.get("reps", {})) - known)]
    rep_custom = [col for col in (reps.columns if reps is not None else []) if col not in c.TABLES[c.REPS].column_names]
    for row in rep_rows:
        u = {"Id": ids.get("reps", row[c.REP_ID]), "Username": f"{row[c.REP_ID]}@example.invalid",
             "FirstName": "Rep", "LastName": str(row[c.REP_ID]), "Department": row.get(c.TEAM),
             "IsActive": "true", "TimeZoneSidKey": tz, "Hire_Date__c": row.get(c.HIRED_AT)}
        u.update({_field_name(col): row.get(col) for col in rep_custom})
        users.append(u)
    _write(out, "User.csv", users, ["Id", "Username", "FirstName", "LastName", "Department", "IsActive",
                                    "TimeZoneSidKey", "Hire_Date__c", *[_field_name(col) for col in rep_custom]])
    sf_cfg["fields"][c.REPS] = {"hired_at": "Hire_Date__c"}
    if rep_custom:
        sf_cfg["custom_fields"][c.REPS] = {_field_name(col): col for col in rep_custom}

    config = {"rep_timezone": tz, "inbound_email": "activity", "booking_window_days": 0, "salesforce": sf_cfg}
    if region_cfg:
        config["regions"] = region_cfg
    id_maps = {"activities": ids.maps.get("activities", {}), "deals": ids.maps.get("deals", {}),
               "contacts": ids.maps.get("contacts", {}), "accounts": ids.maps.get("accounts", {}),
               "reps": ids.maps.get("reps", {})}
    logger.info("wrote a Salesforce export of %d tasks, %d events to %s", len(task_rows), len(event_rows), out)
    return SalesforceExport(out, id_maps, config, as_of, approx)


__all__ = ["SalesforceExport", "to_salesforce_export"]
