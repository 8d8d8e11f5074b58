"""Salesforce Data Loader / Data Export CSVs → the data contract.

Reads ``Task``, ``Event``, ``Opportunity``, ``OpportunityHistory``,
``OpportunityFieldHistory``, ``OpportunityStage``, ``Contact``, ``Account``, ``User``,
``EmailMessage`` (and ``UserRole`` if present) from one directory, one CSV per object
(file names and headers are matched case-insensitively). The mapping rules are those of
shared/crm/CRM_EXPORTS.md section 5.1; docs/crm.md lists them with the deliberate
differences.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from features import contract as c
from importers.crm import ids
from importers.crm.common import (
    ROW,
    Conversion,
    StageInfo,
    assemble_tables,
    attribute_bookings,
    clear_unknown_refs,
    closing_and_outcomes,
    col,
    dedupe_responses,
    disposition_responses,
    find_by_stem,
    has_col,
    read_csv_export,
    record_stage,
    region_of,
    reply_kind,
    resolve_stage_map,
    seniority_of,
    slug,
    stage_runs,
)
from importers.crm.config import CrmConfig, custom_field_columns, load_config
from importers.crm.errors import CrmInputError
from importers.crm.report import ConversionReport
from importers.crm.times import (
    UTC_DTYPE,
    local_dates,
    local_noon,
    parse_bools,
    parse_dates,
    parse_instants,
    parse_numbers,
    valid_timezone,
)

logger = logging.getLogger(__name__)

OBJECTS = (
    "Task", "Event", "Opportunity", "OpportunityHistory", "OpportunityFieldHistory", "OpportunityStage",
    "Contact", "Account", "User", "EmailMessage", "UserRole",
)
# Reference columns whose values are record ids (15 or 18 characters).
ID_COLUMNS = {
    "id", "whoid", "whatid", "accountid", "ownerid", "opportunityid", "activityid", "relatedtoid", "parentid",
    "replytoemailmessageid", "createdbyid", "userroleid", "contactid", "reportstoid", "managerid",
    "actioncadencesteptrackerid", "campaignid", "lastmodifiedbyid",
}
SYSTEM_TIME_COLUMNS = ("createddate", "lastmodifieddate", "systemmodstamp")
# Columns without which an object cannot be read at all.
REQUIRED = {
    "Task": ("Id", "CreatedDate"),
    "Event": ("Id", "CreatedDate"),
    "Opportunity": ("Id", "CreatedDate"),
    "OpportunityHistory": ("OpportunityId", "StageName", "CreatedDate"),
    "OpportunityFieldHistory": ("OpportunityId", "Field", "NewValue", "CreatedDate"),
    "OpportunityStage": ("MasterLabel", "IsClosed", "IsWon"),
    "EmailMessage": ("Id", "ActivityId", "Incoming"),
    "Contact": ("Id",),
    "Account": ("Id",),
    "User": ("Id",),
}

DROP_DELETED = "deleted (IsDeleted = true)"
DROP_ARCHIVED = "archived (IsArchived = true)"
DROP_OPEN = "open task (a plan, not an activity)"
DROP_FUTURE = "after as-of (a plan, not an activity)"
DROP_INBOUND = "inbound email (kept as a response)"
DROP_CHILD = "group-event copy (IsChild = true)"
DROP_NO_OPP = "opportunity deleted or not in Opportunity.csv"


def convert_salesforce(
    in_dir: Path | str, *, as_of: pd.Timestamp | str | None = None, config: CrmConfig | None = None
) -> Conversion:
    """Convert a directory of Salesforce CSVs into contract tables.

    Args:
        in_dir: directory holding ``Task.csv``, ``Opportunity.csv``, ... .
        as_of: export time; later events are plans. Default: the latest record time
            (``CreatedDate``/``LastModifiedDate``/``SystemModstamp``) in the export.
        config: org-specific choices (default: the packaged defaults).

    Returns:
        The typed tables and the report. When ``report.errors`` is not empty the tables
        are incomplete and must not be written.
    """
    cfg = config or load_config()
    report = ConversionReport("salesforce", Path(in_dir), config_source=cfg.source)
    try:
        tables = _Salesforce(Path(in_dir), cfg, as_of, report).run()
    except CrmInputError as err:
        report.errors.append(str(err))
        tables = {}
    return Conversion(tables, report)


class _Salesforce:
    def __init__(self, in_dir: Path, cfg: CrmConfig, as_of, report: ConversionReport) -> None:
        self.dir = in_dir
        self.cfg = cfg
        self.sf = cfg.salesforce
        self.report = report
        self.as_of_arg = as_of
        self.frames: dict[str, pd.DataFrame] = {}
        self.files: dict[str, str] = {}

    # --- plumbing -------------------------------------------------------------------
    def run(self) -> dict[str, pd.DataFrame]:
        self._load()
        self._set_as_of()
        self._users()
        self._opportunities()
        stages = self._stage_history()
        closing, stage_outcomes = closing_and_outcomes(stages, self.cfg, self.as_of)
        outcomes = pd.concat([stage_outcomes, self._field_outcomes()], ignore_index=True)
        deals = self._deals(closing)
        contacts = self._contacts()
        activities, responses = self._activities()
        known_deals = set(deals[c.DEAL_ID]) if deals is not None else set()
        if deals is not None:
            activities = clear_unknown_refs(activities, c.DEAL_ID, known_deals, self.report, "opportunities")
        accounts = self._accounts()
        reps = self._reps(activities, deals)
        if self.report.errors:
            return {}
        return assemble_tables(
            activities=activities, responses=responses, stages=stages, outcomes=outcomes, deals=deals,
            contacts=contacts, accounts=accounts, reps=reps, report=self.report,
            no_history=f"{self.dir}: no stage history and no outcomes: the dataset needs OpportunityHistory.csv "
                       "(or OpportunityFieldHistory.csv with StageName tracked) and OpportunityStage.csv",
        )

    def _load(self) -> None:
        if not self.dir.is_dir():
            raise CrmInputError(f"{self.dir}: no such directory")
        by_stem = find_by_stem(self.dir)
        for name in OBJECTS:
            path = by_stem.get(name.lower())
            if path is None:
                continue
            frame = read_csv_export(path)
            missing = [col_name for col_name in REQUIRED.get(name, ()) if not has_col(frame, col_name)]
            if name == "OpportunityStage" and "masterlabel" not in frame.columns and "apiname" in frame.columns:
                missing.remove("MasterLabel")
            if missing:
                raise CrmInputError(f"{path.name}: missing column(s) {', '.join(missing)} (found: "
                                    f"{', '.join(c_ for c_ in frame.columns if c_ != ROW) or 'none'})")
            for column in frame.columns:
                if column in ID_COLUMNS:
                    frame[column] = ids.normalize_id_series(frame[column])
            self.frames[name] = frame
            self.files[name] = path.name
            if name not in ("UserRole",):
                self.report.input(path.name).read = len(frame)
        if "Task" not in self.frames and "Event" not in self.frames:
            raise CrmInputError(f"{self.dir}: no Task.csv or Event.csv: nothing to read activities from")
        unknown = sorted(s for s in by_stem if s not in {o.lower() for o in OBJECTS})
        if unknown:
            self.report.warn(f"ignored files: {', '.join(by_stem[s].name for s in unknown)}")

    def f(self, name: str) -> pd.DataFrame | None:
        return self.frames.get(name)

    def ts(self, frame: pd.DataFrame, column: str, obj: str) -> pd.Series:
        return parse_instants(col(frame, column), where=f"{self.files.get(obj, obj)}, {column}", row_labels=frame[ROW])

    def bools(self, frame: pd.DataFrame, column: str, obj: str, default: bool = False) -> pd.Series:
        out = parse_bools(col(frame, column), where=f"{self.files.get(obj, obj)}, {column}", row_labels=frame[ROW])
        return out.fillna(default).astype(bool)

    def _drop_deleted(self, obj: str) -> pd.DataFrame | None:
        frame = self.f(obj)
        if frame is None:
            return None
        deleted = self.bools(frame, "IsDeleted", obj)
        self.report.input(self.files[obj]).drop(DROP_DELETED, int(deleted.sum()))
        return frame[~deleted.to_numpy(bool)].reset_index(drop=True)

    def _set_as_of(self) -> None:
        if self.as_of_arg is not None:
            self.as_of = _as_utc(self.as_of_arg)
            self.report.as_of = self.as_of
            return
        latest = []
        for name, frame in self.frames.items():
            for column in SYSTEM_TIME_COLUMNS:
                if has_col(frame, column):
                    values = self.ts(frame, column, name)
                    if values.notna().any():
                        latest.append(values.max())
        self.as_of = max(latest) if latest else pd.Timestamp.now(tz="UTC").floor("s")
        self.report.as_of_inferred = True
        self.report.as_of = self.as_of

    # --- users and time zones -------------------------------------------------------
    def _users(self) -> None:
        users = self.f("User")
        self.user_tz: dict[str, str] = {}
        if users is not None:
            bad = []
            for uid, tz in zip(col(users, "Id"), col(users, "TimeZoneSidKey")):
                if pd.isna(uid) or pd.isna(tz):
                    continue
                if valid_timezone(tz):
                    self.user_tz[uid] = str(tz)
                else:
                    bad.append(str(tz))
            if bad:
                self.report.warn(
                    f"{self.files['User']}: unknown TimeZoneSidKey {', '.join(sorted(set(bad)))}; "
                    f"using rep_timezone {self.cfg.rep_timezone}"
                )
        self.user_tz.update({ids.normalize_sf_id(k) or k: v for k, v in self.cfg.rep_timezones.items()})

    def tz_of(self, owners: pd.Series) -> pd.Series:
        default = self.cfg.rep_timezone
        missing = owners.notna() & ~owners.isin(list(self.user_tz))
        if missing.any() and "User" in self.frames:
            self.report.warn(
                f"{int(missing.sum())} rows belong to owners without a time zone in User.csv; "
                f"their local day is taken in rep_timezone {default}"
            )
        return pd.Series([self.user_tz.get(o, default) if isinstance(o, str) else default for o in owners.tolist()],
                         index=owners.index, dtype="string")

    # --- opportunities and stages ---------------------------------------------------
    def _opportunities(self) -> None:
        opps = self._drop_deleted("Opportunity")
        all_opps = self.f("Opportunity")
        self.deleted_opp_ids = set()
        if all_opps is not None:
            self.deleted_opp_ids = set(col(all_opps, "Id").dropna()) - set(col(opps, "Id").dropna())
        if opps is None:
            self.opps = None
            return
        created = self.ts(opps, "CreatedDate", "Opportunity")
        future = created > self.as_of
        self.report.input(self.files["Opportunity"]).drop(DROP_FUTURE, int(future.sum()))
        opps = opps[~future.to_numpy(bool)].reset_index(drop=True)
        self.opps = opps.assign(_created=created[~future.to_numpy(bool)].reset_index(drop=True))
        self.report.input(self.files["Opportunity"]).kept = len(self.opps)
        self.opp_ids = set(col(self.opps, "Id").dropna())

    def _stage_table(self) -> dict[str, StageInfo]:
        stages = self.f("OpportunityStage")
        if stages is None:
            return {}
        name = col(stages, "MasterLabel").fillna(col(stages, "ApiName"))
        api = col(stages, "ApiName").fillna(name)
        where = self.files["OpportunityStage"]
        sort = parse_numbers(col(stages, "SortOrder"), where=f"{where}, SortOrder", row_labels=stages[ROW])
        closed = self.bools(stages, "IsClosed", "OpportunityStage")
        won = self.bools(stages, "IsWon", "OpportunityStage")
        table = pd.DataFrame({"name": name, "api": api, "sort": sort, "closed": closed, "won": won})
        table = table.dropna(subset=["name"])
        open_ = table[~table["closed"]].sort_values(["sort", "name"], na_position="last")
        rank = {n: i + 1 for i, n in enumerate(open_["name"])}
        k = len(rank)
        out: dict[str, StageInfo] = {}
        for row in table.itertuples():
            if row.closed:
                order = k + 1 if row.won else c.CLOSED_LOST_ORDER
            else:
                order = rank[row.name]
            info = StageInfo(str(row.name), order, bool(row.closed), bool(row.won and row.closed))
            out[str(row.name).lower()] = info
            out[str(row.api).lower()] = info
        self.report.input(where).kept = len(table)
        return out

    def _history_rows(self) -> tuple[pd.DataFrame, str] | None:
        """Raw stage history: deal_id, raw stage name, entered_at, _seq; and the file it came from."""
        hist = self._drop_deleted("OpportunityHistory")
        if hist is not None:
            obj = "OpportunityHistory"
            rows = pd.DataFrame({
                c.DEAL_ID: col(hist, "OpportunityId"),
                "_raw": col(hist, "StageName"),
                c.ENTERED_AT: self.ts(hist, "CreatedDate", obj),
                "_seq": col(hist, "Id").fillna(""),
                "_amount": parse_numbers(col(hist, "Amount"), where=f"{self.files[obj]}, Amount", row_labels=hist[ROW]),
                ROW: hist[ROW],
            })
            return rows, obj
        fh = self.field_history()
        if fh is None:
            return None
        obj = "OpportunityFieldHistory"
        changes = fh[fh["_field"].str.lower() == "stagename"]
        rows = [pd.DataFrame({
            c.DEAL_ID: changes[c.DEAL_ID], "_raw": changes["_new"], c.ENTERED_AT: changes["_at"],
            "_seq": changes["_id"], ROW: changes[ROW],
        })]
        if self.opps is not None:
            # the stage at creation: OldValue of the first change, else the current stage
            first_old = changes.sort_values(["_at", "_id"]).groupby(c.DEAL_ID)["_old"].first()
            opp_ids = col(self.opps, "Id")
            current = col(self.opps, "StageName")
            initial = [first_old.get(i, cur) for i, cur in zip(opp_ids, current)]
            unchanged = int(sum(i not in first_old.index for i in opp_ids))
            self.report.input(self.files[obj]).note("opportunities without a StageName change: creation stage = StageName", unchanged)
            rows.append(pd.DataFrame({
                c.DEAL_ID: opp_ids, "_raw": pd.Series(initial, dtype="string"), c.ENTERED_AT: self.opps["_created"],
                "_seq": "", ROW: self.opps[ROW],
            }))
        self.report.warn("no OpportunityHistory.csv: stage history taken from OpportunityFieldHistory (StageName)")
        return pd.concat(rows, ignore_index=True), obj

    def field_history(self) -> pd.DataFrame | None:
        if hasattr(self, "_fh"):
            return self._fh
        fh = self._drop_deleted("OpportunityFieldHistory")
        if fh is not None:
            obj = "OpportunityFieldHistory"
            fh = pd.DataFrame({
                c.DEAL_ID: col(fh, "OpportunityId"), "_field": col(fh, "Field").fillna(""),
                "_old": col(fh, "OldValue"), "_new": col(fh, "NewValue"), "_at": self.ts(fh, "CreatedDate", obj),
                "_id": col(fh, "Id").fillna(""), ROW: fh[ROW],
            })
            fh = self._keep_known_opps(fh, obj)
            late = fh["_at"] > self.as_of
            self.report.input(self.files[obj]).drop(DROP_FUTURE, int(late.sum()))
            fh = fh[~late.to_numpy(bool)].reset_index(drop=True)
            self.report.input(self.files[obj]).kept = len(fh)
        self._fh = fh
        return fh

    def _keep_known_opps(self, rows: pd.DataFrame, obj: str) -> pd.DataFrame:
        if self.opps is None:
            return rows
        known = rows[c.DEAL_ID].isin(self.opp_ids)
        self.report.input(self.files[obj]).drop(DROP_NO_OPP, int((~known).sum()))
        return rows[known.to_numpy(bool)].reset_index(drop=True)

    def _stage_history(self) -> pd.DataFrame:
        columns = [c.DEAL_ID, c.STAGE, c.STAGE_ORDER, c.ENTERED_AT, "_closed", "_won"]
        got = self._history_rows()
        self.initial_amounts: dict[str, float] = {}
        if got is None:
            return pd.DataFrame(columns=columns)
        rows, obj = got
        file = self.files[obj]
        if obj == "OpportunityHistory":
            rows = self._keep_known_opps(rows, obj)
            late = rows[c.ENTERED_AT] > self.as_of
            self.report.input(file).drop(DROP_FUTURE, int(late.sum()))
            rows = rows[~late.to_numpy(bool)].reset_index(drop=True)
            first = rows.dropna(subset=["_amount"]).sort_values([c.ENTERED_AT, "_seq"]).groupby(c.DEAL_ID)["_amount"].first()
            self.initial_amounts = first.to_dict()
        rows = rows.dropna(subset=["_raw"])
        table = self._stage_table()
        if not table and "OpportunityStage" not in self.frames:
            self.report.warn("no OpportunityStage.csv: every stage needs a stage_map entry")
        mapped = resolve_stage_map(self.cfg, table)
        infos, via, unmapped = [], [], []
        for raw in rows["_raw"]:
            key = str(raw).lower()
            if key in mapped:
                infos.append(mapped[key])
                via.append("stage_map")
            elif key in table:
                infos.append(table[key])
                via.append("stage table")
            else:
                infos.append(None)
                via.append(None)
                unmapped.append(str(raw))
        if unmapped:
            names = sorted(set(unmapped))
            self.report.unmapped_stages[file] = names
            self.report.errors.append(
                f"{file}: stage names not in {self.files.get('OpportunityStage', 'OpportunityStage.csv')}: "
                f"{', '.join(repr(n) for n in names)} — map each to a stage with `stage_map` in the config"
            )
            return pd.DataFrame(columns=columns)
        rows = rows.assign(
            **{
                c.STAGE: [i.name for i in infos],
                c.STAGE_ORDER: [i.order for i in infos],
                "_closed": [i.closed for i in infos],
                "_won": [i.won for i in infos],
                "_via": via,
            }
        )
        runs = stage_runs(rows)
        repeats = len(rows) - len(runs)
        self.report.input(file).note("rows repeating the stage (amount/close-date edits) merged", repeats)
        self.report.input(file).kept = len(runs) if obj == "OpportunityHistory" else self.report.input(file).kept
        for (name, v), n in runs.groupby([c.STAGE, "_via"]).size().items():
            info = next(i for i in infos if i.name == name)
            record_stage(self.report, info, v, int(n))
        return runs[columns]

    def _field_outcomes(self) -> pd.DataFrame:
        out = []
        fh = self.field_history()
        wanted = {k.lower(): v for k, v in self.sf.outcome_fields.items()}
        if fh is not None and wanted:
            rows = fh[fh["_field"].str.lower().isin(wanted)]
            truthy = rows["_new"].str.strip().str.lower().isin(["true", "1", "yes"]).fillna(False)
            rows = rows[truthy.to_numpy(bool)]
            out.append(pd.DataFrame({
                c.DEAL_ID: rows[c.DEAL_ID], c.OUTCOME: [wanted[f.lower()] for f in rows["_field"]],
                c.OCCURRED_AT: rows["_at"],
            }))
        elif wanted and fh is None:
            self.report.warn("outcome_fields configured but no OpportunityFieldHistory.csv: those outcomes are missing "
                             "(a checkbox without history has no time)")
        if self.sf.outcome_date_fields and self.opps is not None:
            tz = self.tz_of(col(self.opps, "OwnerId"))
            for field_name, outcome in self.sf.outcome_date_fields.items():
                if not has_col(self.opps, field_name):
                    self.report.warn(f"outcome_date_fields: {field_name} is not a column of Opportunity.csv")
                    continue
                raw = col(self.opps, field_name)
                is_date = raw.str.fullmatch(r"\d{4}-\d{2}-\d{2}").fillna(False)
                at = pd.Series(pd.NaT, index=raw.index, dtype=UTC_DTYPE)
                if is_date.any():
                    at[is_date] = local_noon(raw[is_date], tz[is_date], where=f"{self.files['Opportunity']}, {field_name}",
                                             row_labels=self.opps[ROW][is_date])
                if (~is_date).any():
                    at[~is_date] = self.ts(self.opps[~is_date.to_numpy(bool)], field_name, "Opportunity")
                keep = at.notna() & (at <= self.as_of)
                out.append(pd.DataFrame({c.DEAL_ID: col(self.opps, "Id")[keep], c.OUTCOME: outcome, c.OCCURRED_AT: at[keep]}))
        if not out:
            return pd.DataFrame(columns=[c.DEAL_ID, c.OUTCOME, c.OCCURRED_AT])
        frame = pd.concat(out, ignore_index=True)
        return frame.sort_values(c.OCCURRED_AT).drop_duplicates([c.DEAL_ID, c.OUTCOME, c.OCCURRED_AT])

    def _deals(self, closing: pd.DataFrame) -> pd.DataFrame | None:
        if self.opps is None:
            return None
        opps = self.opps
        owner = col(opps, "OwnerId")
        deal_ids = col(opps, "Id")
        deals = pd.DataFrame({
            c.DEAL_ID: deal_ids,
            c.ACCOUNT_ID: col(opps, "AccountId"),
            c.OWNER_REP_ID: owner.where(ids.has_prefix(owner, ids.USER)),
            c.CREATED_AT: opps["_created"],
        })
        current = parse_numbers(col(opps, "Amount"), where=f"{self.files['Opportunity']}, Amount", row_labels=opps[ROW])
        if self.cfg.deal_amount == "current":
            deals[c.AMOUNT] = current
            self.report.warn("deal_amount: current — deals.amount is the final Amount, which reveals the result")
        else:
            initial = deal_ids.map(self.initial_amounts).astype("float64")
            fh = self.field_history()
            if fh is not None and initial.isna().any():
                amount_rows = fh[fh["_field"].str.lower() == "amount"].sort_values(["_at", "_id"])
                if len(amount_rows):
                    first_old = parse_numbers(amount_rows.groupby(c.DEAL_ID)["_old"].first(), where="OpportunityFieldHistory, OldValue")
                    never_changed = current.where(~deal_ids.isin(first_old.index))
                    initial = initial.fillna(deal_ids.map(first_old).astype("float64")).fillna(never_changed)
            missing = int((initial.isna() & current.notna()).sum())
            if missing:
                self.report.warn(
                    f"{missing} opportunities have no amount history: amount left empty (the export's Amount is the "
                    "final amount; set deal_amount: current to use it anyway)"
                )
            deals[c.AMOUNT] = initial
        for column, source in self.sf.fields.get(c.DEALS, {}).items():
            deals[column] = col(opps, source)
        for name, column in custom_field_columns(self.sf.custom_fields.get(c.DEALS, [])):
            deals[column] = col(opps, name)
        closing = closing.set_index(c.DEAL_ID) if len(closing) else closing
        deals[c.CLOSED_AT] = deal_ids.map(closing[c.CLOSED_AT]) if len(closing) else pd.NaT
        deals[c.WON] = deal_ids.map(closing[c.WON]) if len(closing) else pd.NA
        closed_flag = self.bools(opps, "IsClosed", "Opportunity")
        disagree = int((closed_flag.to_numpy(bool) != deals[c.CLOSED_AT].notna().to_numpy(bool)).sum())
        if has_col(opps, "IsClosed") and disagree and "OpportunityHistory" in self.frames:
            self.report.warn(f"{disagree} opportunities: IsClosed disagrees with the stage history; the history is used")
        return deals

    # --- activities -----------------------------------------------------------------
    def _email_messages(self) -> pd.DataFrame | None:
        msgs = self._drop_deleted("EmailMessage")
        if msgs is None:
            return None
        obj = "EmailMessage"
        return pd.DataFrame({
            "msg_id": col(msgs, "Id"),
            "task_id": col(msgs, "ActivityId"),
            "at": self.ts(msgs, "MessageDate", obj).fillna(self.ts(msgs, "CreatedDate", obj)),
            "incoming": self.bools(msgs, "Incoming", obj),
            "bounced": self.bools(msgs, "IsBounced", obj),
            "opened_at": self.ts(msgs, "FirstOpenedDate", obj),
            "reply_to": col(msgs, "ReplyToEmailMessageId"),
            "text": col(msgs, "TextBody").fillna(col(msgs, "HtmlBody")),
        })

    def _activities(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        msgs = self._email_messages()
        tasks, task_responses = self._tasks(msgs)
        events, event_responses, bookings = self._events()
        activities = pd.concat([t for t in (tasks, events) if t is not None], ignore_index=True)
        responses = [task_responses, event_responses]
        if msgs is not None:
            responses.append(self._email_responses(msgs, activities))
        responses.append(attribute_bookings(activities, bookings, self.cfg.booking_window_days))
        responses = pd.concat([r for r in responses if r is not None and len(r)], ignore_index=True) if any(
            r is not None and len(r) for r in responses) else pd.DataFrame(columns=[c.ACTIVITY_ID, c.RESPONSE, c.OCCURRED_AT])
        responses = responses[responses[c.OCCURRED_AT] <= self.as_of]
        responses = dedupe_responses(responses, activities[c.ACTIVITY_ID])
        if msgs is not None:
            used = set(msgs["task_id"].dropna()) & set(activities[c.ACTIVITY_ID])
            self.report.input(self.files["EmailMessage"]).kept = int(
                msgs["task_id"].isin(used).sum() + msgs["incoming"].sum())
        return activities, responses

    def _task_type(self, tasks: pd.DataFrame) -> pd.Series:
        out = pd.Series(pd.NA, index=tasks.index, dtype="string")
        for rule in self.sf.task_types:
            values = col(tasks, rule["field"])
            pattern = re.compile(rule["match"], re.IGNORECASE)
            found = [bool(pattern.search(v)) if isinstance(v, str) else False for v in values.tolist()]
            hit = out.isna() & pd.Series(found, index=tasks.index)
            if hit.any():
                if rule["type"] == "{value}":
                    out[hit] = values[hit].str.lower()
                else:
                    out[hit] = rule["type"]
        return out.fillna("other")

    def _tasks(self, msgs: pd.DataFrame | None) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
        tasks = self._drop_deleted("Task")
        if tasks is None:
            return None, None
        obj, file = "Task", self.files["Task"]
        counts = self.report.input(file)
        archived = self.bools(tasks, "IsArchived", obj)
        if self.sf.keep_archived:
            counts.note("archived (IsArchived) kept: old but real", int(archived.sum()))
        else:
            counts.drop(DROP_ARCHIVED, int(archived.sum()))
            tasks = tasks[~archived.to_numpy(bool)].reset_index(drop=True)
        if has_col(tasks, "IsClosed"):
            closed = self.bools(tasks, "IsClosed", obj)
        else:
            statuses = {s.lower() for s in self.sf.closed_task_statuses}
            closed = col(tasks, "Status").str.lower().isin(statuses).fillna(False)
        counts.drop(DROP_OPEN, int((~closed).sum()))
        tasks = tasks[closed.to_numpy(bool)].reset_index(drop=True)

        task_ids = col(tasks, "Id")
        first_msg = None
        if msgs is not None:
            first_msg = msgs.dropna(subset=["task_id"]).sort_values("at").drop_duplicates("task_id").set_index("task_id")
        incoming = task_ids.map(first_msg["incoming"]).fillna(False).astype(bool) if first_msg is not None else \
            pd.Series(False, index=tasks.index)
        if self.cfg.inbound_email == "response":
            counts.drop(DROP_INBOUND, int(incoming.sum()))
            tasks = tasks[~incoming.to_numpy(bool)].reset_index(drop=True)
            incoming = incoming[~incoming.to_numpy(bool)].reset_index(drop=True)
            task_ids = col(tasks, "Id")

        owner = col(tasks, "OwnerId")
        tz = self.tz_of(owner)
        occurred, backdated = self._task_time(tasks, tz)
        if first_msg is not None:
            # an email's MessageDate is the instant it was sent or received: better than any task date
            sent_at = task_ids.map(first_msg["at"]).astype(UTC_DTYPE)
            has_msg = sent_at.notna()
            occurred = occurred.where(~has_msg, sent_at)
            backdated = backdated & ~has_msg
        future = occurred > self.as_of
        counts.drop(DROP_FUTURE, int(future.sum()))
        keep = (~future).to_numpy(bool)
        tasks, occurred, owner, incoming, task_ids, backdated = (
            tasks[keep].reset_index(drop=True), occurred[keep].reset_index(drop=True),
            owner[keep].reset_index(drop=True), incoming[keep].reset_index(drop=True),
            task_ids[keep].reset_index(drop=True), backdated[keep].reset_index(drop=True))
        counts.note("logged on a later day: occurred_at = ActivityDate 12:00 rep-local", int(backdated.sum()))
        counts.kept = len(tasks)

        kind = self._task_type(tasks)
        subtype = col(tasks, "TaskSubtype").str.lower()
        list_email = subtype.eq("listemail").fillna(False)
        direction = col(tasks, "CallType").str.lower().where(lambda s: s.isin(["inbound", "outbound"]))
        if first_msg is not None:
            msg_dir = task_ids.map(first_msg["incoming"]).map({True: "inbound", False: "outbound"})
            direction = direction.fillna(msg_dir.where(kind.eq("email")).astype("string"))
        direction = direction.mask(list_email & direction.isna(), "outbound")
        tracker = col(tasks, "ActionCadenceStepTrackerId").notna()
        automated = list_email | tracker | owner.isin([ids.normalize_sf_id(o) for o in self.sf.automated_owner_ids])
        personalization = pd.Series(np.where(list_email, 0.0, np.nan), index=tasks.index)
        what = col(tasks, "WhatId")
        who = col(tasks, "WhoId")
        acts = pd.DataFrame({
            c.ACTIVITY_ID: task_ids,
            c.OCCURRED_AT: occurred,
            c.TYPE: kind,
            c.REP_ID: owner.where(ids.has_prefix(owner, ids.USER)),
            c.DEAL_ID: what.where(self._is_opp(what)),
            c.CONTACT_ID: who,
            c.ACCOUNT_ID: self._account_of(tasks, what, who),
            c.DIRECTION: direction,
            c.DURATION_S: parse_numbers(col(tasks, "CallDurationInSeconds"), where=f"{file}, CallDurationInSeconds",
                                        row_labels=tasks[ROW]),
            c.PERSONALIZATION: personalization,
            c.IS_AUTOMATED: automated.astype(bool),
            c.LOGGED_AT: self.ts(tasks, "CreatedDate", obj),
        })
        self._mapped_fields(acts, tasks)
        calls = acts[c.TYPE].eq("call")
        disp = col(tasks, "CallDisposition")
        rows = []
        for aid, at, text in zip(acts[c.ACTIVITY_ID][calls], acts[c.OCCURRED_AT][calls], disp[calls]):
            for response in disposition_responses(text, self.cfg):
                rows.append((aid, response, at))
        responses = pd.DataFrame(rows, columns=[c.ACTIVITY_ID, c.RESPONSE, c.OCCURRED_AT])
        fielded = self._field_responses(acts, tasks, obj)
        if len(fielded):
            responses = pd.concat([responses, fielded], ignore_index=True)
        return acts, responses

    def _task_time(self, tasks: pd.DataFrame, tz: pd.Series) -> tuple[pd.Series, pd.Series]:
        """``occurred_at`` of closed tasks (CRM_EXPORTS.md 5.1, with one refinement).

        ActivityDate is the rep's local calendar day; CompletedDateTime and CreatedDate
        are instants. 1. CompletedDateTime when its local day is ActivityDate (or there is
        no ActivityDate); 2. else CreatedDate when its local day is ActivityDate; 3. else,
        when ActivityDate is *earlier* (the rep back-dated a call logged later), 12:00
        local on ActivityDate; 4. else (a due date in the future, completed early) the
        completion time, or CreatedDate.
        """
        obj, file = "Task", self.files["Task"]
        day = parse_dates(col(tasks, "ActivityDate"), where=f"{file}, ActivityDate", row_labels=tasks[ROW])
        completed = self.ts(tasks, "CompletedDateTime", obj)
        created = self.ts(tasks, "CreatedDate", obj)
        done_day = local_dates(completed, tz)
        made_day = local_dates(created, tz)
        noon = local_noon(day, tz)
        logged_day = done_day.fillna(made_day)
        rule1 = completed.notna() & (day.isna() | done_day.eq(day).fillna(False))
        rule2 = ~rule1 & created.notna() & (day.isna() | made_day.eq(day).fillna(False))
        rule3 = ~rule1 & ~rule2 & day.notna() & (day < logged_day).fillna(True)
        occurred = created.copy()
        occurred[rule2] = created[rule2]
        occurred[rule3] = noon[rule3]
        rule4 = ~rule1 & ~rule2 & ~rule3
        occurred[rule4] = completed[rule4].fillna(created[rule4])
        occurred[rule1] = completed[rule1]
        missing = occurred.isna()
        if missing.any():
            rows = ", ".join(tasks[ROW][missing].head(5))
            raise CrmInputError(f"{file}: no CreatedDate, CompletedDateTime or ActivityDate to time the task ({rows})")
        return occurred, rule3

    def _is_opp(self, what: pd.Series) -> pd.Series:
        known = getattr(self, "opp_ids", set()) | self.deleted_opp_ids
        return ids.has_prefix(what, ids.OPPORTUNITY) | what.isin(known).fillna(False).astype(bool)

    def _account_of(self, frame: pd.DataFrame, what: pd.Series, who: pd.Series) -> pd.Series:
        account = col(frame, "AccountId")
        account = account.fillna(what.where(ids.has_prefix(what, ids.ACCOUNT)))
        if self.opps is not None:
            account = account.fillna(what.map(dict(zip(col(self.opps, "Id"), col(self.opps, "AccountId")))))
        contacts = self.f("Contact")
        if contacts is not None:
            account = account.fillna(who.map(dict(zip(col(contacts, "Id"), col(contacts, "AccountId")))))
        return account.astype("string")

    def _mapped_fields(self, acts: pd.DataFrame, source: pd.DataFrame) -> None:
        for column, field_name in self.sf.fields.get(c.ACTIVITIES, {}).items():
            if has_col(source, field_name):
                values = col(source, field_name)
                acts[column] = values if column not in acts else acts[column].astype("object").where(
                    values.isna(), values)
        for name, column in custom_field_columns(self.sf.custom_fields.get(c.ACTIVITIES, [])):
            acts[column] = col(source, name)

    def _field_responses(self, acts: pd.DataFrame, source: pd.DataFrame, obj: str) -> pd.DataFrame:
        """Responses recorded in Task/Event fields (``salesforce.response_fields``).

        A datetime is the response time; a date is 12:00 rep-local; a true checkbox is
        the activity's own time.
        """
        out = []
        tz = self.tz_of(acts[c.REP_ID])
        for response, field_name in self.sf.response_fields.items():
            if not has_col(source, field_name):
                continue
            raw = col(source, field_name)
            flag = raw.str.lower()
            truthy = flag.isin(["true", "1", "yes"]).fillna(False)
            falsy = flag.isin(["false", "0", "no"]).fillna(False)
            is_date = raw.str.fullmatch(r"\d{4}-\d{2}-\d{2}").fillna(False)
            stamped = raw.notna() & ~truthy & ~falsy & ~is_date
            at = pd.Series(pd.NaT, index=raw.index, dtype=UTC_DTYPE)
            if stamped.any():
                at[stamped] = parse_instants(raw[stamped], where=f"{self.files[obj]}, {field_name}",
                                             row_labels=source[ROW][stamped])
            if is_date.any():
                at[is_date] = local_noon(raw[is_date], tz[is_date], where=f"{self.files[obj]}, {field_name}",
                                         row_labels=source[ROW][is_date])
            at[truthy] = acts[c.OCCURRED_AT][truthy]
            hit = at.notna().to_numpy(bool)
            out.append(pd.DataFrame({c.ACTIVITY_ID: acts[c.ACTIVITY_ID][hit], c.RESPONSE: response,
                                     c.OCCURRED_AT: at[hit]}))
        return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=[c.ACTIVITY_ID, c.RESPONSE, c.OCCURRED_AT])

    def _events(self):
        events = self._drop_deleted("Event")
        empty = pd.DataFrame(columns=["booked_at", c.CONTACT_ID])
        if events is None:
            return None, None, empty
        obj, file = "Event", self.files["Event"]
        counts = self.report.input(file)
        child = self.bools(events, "IsChild", obj)
        counts.drop(DROP_CHILD, int(child.sum()))
        events = events[~child.to_numpy(bool)].reset_index(drop=True)
        # every booked meeting (future ones too) is a booking at its CreatedDate
        created = self.ts(events, "CreatedDate", obj)
        bookings = pd.DataFrame({"booked_at": created, c.CONTACT_ID: col(events, "WhoId")})
        bookings = bookings[bookings["booked_at"] <= self.as_of]
        archived = self.bools(events, "IsArchived", obj)
        if self.sf.keep_archived:
            counts.note("archived (IsArchived) kept: old but real", int(archived.sum()))
        else:
            counts.drop(DROP_ARCHIVED, int(archived.sum()))
        owner = col(events, "OwnerId")
        tz = self.tz_of(owner)
        all_day = self.bools(events, "IsAllDayEvent", obj)
        start = self.ts(events, "StartDateTime", obj).fillna(self.ts(events, "ActivityDateTime", obj))
        day = parse_dates(col(events, "ActivityDate"), where=f"{file}, ActivityDate", row_labels=events[ROW])
        day = day.fillna(col(events, "StartDateTime").str.slice(0, 10))
        occurred = start.copy()
        occurred[all_day] = local_noon(day[all_day], tz[all_day])
        end = self.ts(events, "EndDateTime", obj)
        minutes = parse_numbers(col(events, "DurationInMinutes"), where=f"{file}, DurationInMinutes", row_labels=events[ROW])
        duration = ((end - start).dt.total_seconds()).where(end.notna() & start.notna() & (end >= start))
        duration = duration.fillna(minutes * 60).where(~all_day)
        keep = occurred.notna() & (occurred <= self.as_of)
        if not self.sf.keep_archived:
            keep &= ~archived
        counts.drop(DROP_FUTURE, int((occurred > self.as_of).sum()))
        missing = occurred.isna()
        if missing.any():
            raise CrmInputError(f"{file}: events without StartDateTime or ActivityDate: {', '.join(events[ROW][missing].head(5))}")
        k = keep.to_numpy(bool)
        ev = events[k].reset_index(drop=True)
        what, who = col(ev, "WhatId"), col(ev, "WhoId")
        types = col(ev, "Type")
        type_map = {str(key).lower(): value for key, value in self.sf.event_types.items()}
        kinds = pd.Series([type_map.get(str(t).lower(), self.sf.default_event_type) if isinstance(t, str)
                           else self.sf.default_event_type for t in types.tolist()], dtype="string")
        ev_owner = owner[k].reset_index(drop=True)
        acts = pd.DataFrame({
            c.ACTIVITY_ID: col(ev, "Id"),
            c.OCCURRED_AT: occurred[k].reset_index(drop=True),
            c.TYPE: kinds,
            c.REP_ID: ev_owner.where(ids.has_prefix(ev_owner, ids.USER)),
            c.DEAL_ID: what.where(self._is_opp(what)),
            c.CONTACT_ID: who,
            c.ACCOUNT_ID: self._account_of(ev, what, who),
            c.DIRECTION: pd.Series(pd.NA, index=ev.index, dtype="string"),
            c.DURATION_S: duration[k].reset_index(drop=True),
            c.PERSONALIZATION: np.nan,
            c.IS_AUTOMATED: False,
            c.LOGGED_AT: created[k].reset_index(drop=True),
        })
        self._mapped_fields(acts, ev)
        counts.kept = len(acts)
        counts.note("all-day: occurred_at = ActivityDate 12:00 rep-local", int(all_day[k].sum()))
        responses = pd.DataFrame(columns=[c.ACTIVITY_ID, c.RESPONSE, c.OCCURRED_AT])
        field_name = self.sf.no_show_field
        if field_name:
            if has_col(ev, field_name):
                values = {v.lower() for v in self.sf.no_show_values}
                no_show = col(ev, field_name).str.lower().isin(values).fillna(False).to_numpy(bool)
                responses = pd.DataFrame({c.ACTIVITY_ID: acts[c.ACTIVITY_ID][no_show], c.RESPONSE: "no_show",
                                          c.OCCURRED_AT: acts[c.OCCURRED_AT][no_show]})
            else:
                self.report.warn(f"no_show_field {field_name} is not a column of {file}")
        fielded = self._field_responses(acts, ev, obj)
        if len(fielded):
            responses = pd.concat([responses, fielded], ignore_index=True)
        return acts, responses, bookings

    def _email_responses(self, msgs: pd.DataFrame, activities: pd.DataFrame) -> pd.DataFrame:
        kept = set(activities[c.ACTIVITY_ID])
        outbound = msgs[~msgs["incoming"] & msgs["task_id"].isin(kept)]
        rows = []
        for m in outbound.itertuples():
            if pd.notna(m.opened_at):
                rows.append((m.task_id, "opened", m.opened_at))
            if m.bounced:
                rows.append((m.task_id, "bounced", m.at))  # no bounce time is stored
        msg_task = dict(zip(msgs["msg_id"], msgs["task_id"]))
        unthreaded = 0
        for m in msgs[msgs["incoming"]].itertuples():
            target = msg_task.get(m.reply_to) if isinstance(m.reply_to, str) else None
            if target is None:
                unthreaded += 1
                continue
            rows.append((target, reply_kind(m.text, self.cfg), m.at))
        if unthreaded and self.cfg.inbound_email == "response":
            self.report.warn(f"{unthreaded} incoming emails have no ReplyToEmailMessageId: not counted as replies")
        return pd.DataFrame(rows, columns=[c.ACTIVITY_ID, c.RESPONSE, c.OCCURRED_AT])

    # --- people -----------------------------------------------------------------------
    def _contacts(self) -> pd.DataFrame | None:
        contacts = self._drop_deleted("Contact")
        if contacts is None:
            return None
        self.report.input(self.files["Contact"]).kept = len(contacts)
        title = col(contacts, "Title")
        out = pd.DataFrame({
            c.CONTACT_ID: col(contacts, "Id"),
            c.ACCOUNT_ID: col(contacts, "AccountId"),
            c.TITLE: title,
            c.SENIORITY: seniority_of(title, self.cfg),
            c.DEPARTMENT: col(contacts, "Department"),
        })
        self._extra(out, contacts, c.CONTACTS)
        return out

    def _accounts(self) -> pd.DataFrame | None:
        accounts = self._drop_deleted("Account")
        if accounts is None:
            return None
        file = self.files["Account"]
        self.report.input(file).kept = len(accounts)
        country = col(accounts, "BillingCountryCode").fillna(col(accounts, "BillingCountry"))
        country = country.fillna(col(accounts, "ShippingCountryCode")).fillna(col(accounts, "ShippingCountry"))
        employees = parse_numbers(col(accounts, "NumberOfEmployees"), where=f"{file}, NumberOfEmployees",
                                  row_labels=accounts[ROW])
        out = pd.DataFrame({
            c.ACCOUNT_ID: col(accounts, "Id"),
            c.INDUSTRY: pd.Series([slug(v) for v in col(accounts, "Industry").tolist()], dtype="string"),
            c.EMPLOYEES: employees.round(),
            c.REGION: region_of(country, self.cfg, self.report, file),
        })
        self._extra(out, accounts, c.ACCOUNTS)
        return out

    def _reps(self, activities: pd.DataFrame, deals: pd.DataFrame | None) -> pd.DataFrame:
        owners = set(activities[c.REP_ID].dropna())
        if deals is not None:
            owners |= set(deals[c.OWNER_REP_ID].dropna())
        users = self.f("User")
        roles = self.f("UserRole")
        role_name = dict(zip(col(roles, "Id"), col(roles, "Name"))) if roles is not None else {}
        rows = pd.DataFrame({c.REP_ID: sorted(owners)}, dtype="string")
        if users is not None:
            team = col(users, "Department").fillna(col(users, "UserRoleId").map(role_name).astype("string"))
            by_id = users.assign(_team=team.to_numpy()).set_index(col(users, "Id"))
            found = rows[c.REP_ID].isin(by_id.index)
            self.report.input(self.files["User"]).kept = int(found.sum())
            self.report.input(self.files["User"]).drop("owns no kept activity or deal", len(users) - int(found.sum()))
            if (~found).any():
                self.report.warn(f"{int((~found).sum())} owners are not in User.csv; their team is unknown")
            rows[c.TEAM] = rows[c.REP_ID].map(by_id["_team"]).astype("string")
            rows[c.HIRED_AT] = pd.NaT
            for column, field_name in self.sf.fields.get(c.REPS, {}).items():
                rows[column] = rows[c.REP_ID].map(col(users, field_name).set_axis(col(users, "Id")).to_dict())
            for name, column in custom_field_columns(self.sf.custom_fields.get(c.REPS, [])):
                rows[column] = rows[c.REP_ID].map(col(users, name).set_axis(col(users, "Id")).to_dict())
        return rows

    def _extra(self, out: pd.DataFrame, source: pd.DataFrame, table: str) -> None:
        for column, field_name in self.sf.fields.get(table, {}).items():
            out[column] = col(source, field_name).to_numpy()
        for name, column in custom_field_columns(self.sf.custom_fields.get(table, [])):
            out[column] = col(source, name).to_numpy()


def _as_utc(value) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
