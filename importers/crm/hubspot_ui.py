"""HubSpot UI (CSV) exports → API-shaped records for :mod:`importers.crm.hubspot`.

What the UI export is (and cannot carry), see docs/crm.md:

- headers are property **labels** (renameable, localised): resolved through a built-in
  label table plus ``hubspot.ui_labels`` in the config;
- times are wall-clock times in the **portal's time zone** without an offset
  (``portal_timezone``); around a daylight-saving change one hour repeats (read as the
  first reading, reported) and one is skipped (moved forward, reported);
- owners are **names** (resolved through ``owners.json`` when it is in the directory);
  enumerations are labels (``No show``, ``Outbound``) and are normalised;
- stage history is the ``Date entered "<stage> (<pipeline>)"`` columns: **one date per
  stage**, so a deal that re-enters a stage keeps a single entry and back-and-forth moves
  are lost; no amount history; no archived (deleted) records; no email thread ids;
  call outcomes are labels (no GUIDs).

Files are recognised by an object word in their name (``calls``, ``emails``,
``meetings``, ``deals``, ``companies``, ``contacts``, e.g. ``hubspot-crm-exports-all-deals-2025-05-02.csv``).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pandas as pd

from importers.crm.common import ROW, read_csv_export
from importers.crm.config import CrmConfig
from importers.crm.errors import CrmInputError
from importers.crm.hubspot import OBJECTS, HubSpotExport, _object_of, _record_from_api, _records_frame
from importers.crm.report import ConversionReport
from importers.crm.times import DstNotes, parse_instants

logger = logging.getLogger(__name__)

_COMMON = {
    "record id": "hs_object_id",
    "activity date": "hs_timestamp",
    "activity assigned to": "hubspot_owner_id",
    "create date": "hs_createdate",
    "created at": "hs_createdate",
    "associated contact ids": "__contacts",
    "associated contact": "__contacts",
    "associated company ids (primary)": "__companies_primary",
    "associated company ids": "__companies",
    "associated company": "__companies",
    "associated deal ids": "__deals",
    "associated deal": "__deals",
}
BUILTIN_LABELS: dict[str, dict[str, str]] = {
    "calls": {
        "call direction": "hs_call_direction",
        "call outcome": "hs_call_disposition",
        "call duration": "hs_call_duration",
        "call duration (hh:mm:ss)": "hs_call_duration",
        "call status": "hs_call_status",
        "call title": "hs_call_title",
        "call notes": "hs_call_body",
        "call and meeting type": "hs_activity_type",
        "activity type": "hs_activity_type",
    },
    "emails": {
        "email direction": "hs_email_direction",
        "email send status": "hs_email_status",
        "email status": "hs_email_status",
        "email subject": "hs_email_subject",
        "email body": "hs_email_text",
        "email text": "hs_email_text",
        "sequence id": "hs_sequence_id",
        "sequence": "hs_sequence_id",
        "email thread id": "hs_email_thread_id",
    },
    "meetings": {
        "meeting name": "hs_meeting_title",
        "meeting start time": "hs_meeting_start_time",
        "meeting end time": "hs_meeting_end_time",
        "meeting outcome": "hs_meeting_outcome",
        "call and meeting type": "hs_activity_type",
        "activity type": "hs_activity_type",
        "meeting location": "hs_meeting_location",
    },
    "deals": {
        "deal name": "dealname",
        "pipeline": "pipeline",
        "deal stage": "dealstage",
        "amount": "amount",
        "create date": "createdate",
        "close date": "closedate",
        "deal owner": "hubspot_owner_id",
        "is closed won": "hs_is_closed_won",
    },
    "companies": {
        "company name": "name",
        "company domain name": "domain",
        "industry": "industry",
        "number of employees": "numberofemployees",
        "country/region": "country",
        "country": "country",
        "company owner": "hubspot_owner_id",
    },
    "contacts": {
        "first name": "firstname",
        "last name": "lastname",
        "email": "email",
        "job title": "jobtitle",
        "associated company id": "associatedcompanyid",
        "primary associated company id": "associatedcompanyid",
        "associated company ids (primary)": "associatedcompanyid",
        "contact owner": "hubspot_owner_id",
    },
}
TIME_PROPS = ("hs_timestamp", "hs_createdate", "hs_meeting_start_time", "hs_meeting_end_time", "createdate", "closedate")
ENUM_PROPS = ("hs_call_direction", "hs_call_status", "hs_email_direction", "hs_email_status", "hs_meeting_outcome")
_ENUM_ALIASES = {
    "OUTGOING_EMAIL": "EMAIL", "OUTBOUND": "OUTBOUND", "SENT_EMAIL": "EMAIL", "OUTGOING": "EMAIL",
    "INCOMING": "INCOMING_EMAIL", "REPLY": "INCOMING_EMAIL", "FORWARDED": "FORWARDED_EMAIL",
    "CANCELLED": "CANCELED", "NOSHOW": "NO_SHOW",
}
_DATE_ENTERED = re.compile(r"^date entered\s*[\"“”']?\s*(.+?)\s*\((.+)\)\s*[\"“”']?\s*$", re.IGNORECASE)
_OBJECT_WORDS = {
    "call": "calls", "calls": "calls", "email": "emails", "emails": "emails", "meeting": "meetings",
    "meetings": "meetings", "deal": "deals", "deals": "deals", "company": "companies", "companies": "companies",
    "contact": "contacts", "contacts": "contacts",
}


def _object_from_name(stem: str) -> str | None:
    words = {_OBJECT_WORDS[w] for w in re.split(r"[^a-z]+", stem.lower()) if w in _OBJECT_WORDS}
    return words.pop() if len(words) == 1 else None


def read_ui_export(in_dir: Path, cfg: CrmConfig, report: ConversionReport) -> HubSpotExport:
    """Read UI CSV exports (plus optional owners/pipelines/dispositions JSON) into records."""
    hs = cfg.hubspot
    dst = DstNotes()
    owners, dispositions, pipelines, pipelines_file = [], {}, [], "pipelines"
    owner_files: list[str] = []
    csvs: dict[str, list[Path]] = {name: [] for name in OBJECTS}
    ignored = []
    for path in sorted(in_dir.iterdir()):
        if not path.is_file():
            continue
        if path.suffix.lower() == ".json":
            obj = _object_of(path.stem)
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as err:
                raise CrmInputError(f"{path.name}: not valid JSON: {err}") from err
            items = data.get("results", data) if isinstance(data, dict) else data
            if obj == "owners":
                owners.extend(items)
                owner_files.append(path.name)
            elif obj == "pipelines":
                pipelines.extend(items)
                pipelines_file = path.name
            elif obj == "dispositions":
                dispositions.update({str(d.get("id")): str(d.get("label")) for d in items})
            else:
                ignored.append(path.name)
        elif path.suffix.lower() == ".csv":
            obj = _object_from_name(path.stem)
            if obj is None:
                ignored.append(path.name)
            else:
                csvs[obj].append(path)
        else:
            ignored.append(path.name)
    if ignored:
        report.warn(f"ignored files: {', '.join(ignored)}")
    if not pipelines and hs.pipelines:
        pipelines = _pipelines_from_config(hs.pipelines)
        pipelines_file = f"hubspot.pipelines in {cfg.source}"
    stage_ids = {
        (str(p.get("label")).strip().lower(), str(s.get("label")).strip().lower()): str(s.get("id"))
        for p in pipelines for s in p.get("stages") or []
    }
    records: dict[str, list[dict]] = {name: [] for name in OBJECTS}
    files: dict[str, list[str]] = {name: [] for name in OBJECTS}
    for obj, paths in csvs.items():
        labels = {**_COMMON, **BUILTIN_LABELS[obj]}
        labels.update({str(k).strip().lower(): v for k, v in (hs.ui_labels.get(obj) or {}).items()})
        for path in paths:
            frame = read_csv_export(path)
            records[obj].extend(_records(frame, path.name, obj, labels, cfg, dst, stage_ids))
            files[obj].append(path.name)
    if not any(files.values()):
        raise CrmInputError(f"{in_dir}: no HubSpot export files (API *.json or UI calls/emails/meetings/deals CSVs)")
    if owner_files:
        files["owners"] = owner_files
    if any(rec["_history"].get("dealstage") for rec in records["deals"]):
        report.warn("UI export: one 'Date entered' per stage, so a deal that re-entered a stage keeps a single entry "
                    "and its back-and-forth moves are lost (the API export keeps them; see docs/crm.md)")
    objects = {name: _records_frame(recs) for name, recs in records.items()}
    return HubSpotExport("ui", objects, files, owners, dispositions, pipelines, pipelines_file, dst, owner_names=True)


def _pipelines_from_config(spec: dict) -> list[dict]:
    out = []
    for label, stages in spec.items():
        entries = []
        for i, name in enumerate(stages.get("open", [])):
            entries.append({"id": f"{label}/{name}", "label": name, "displayOrder": i,
                            "metadata": {"isClosed": "false", "probability": "0.5"}})
        n = len(entries)
        for j, name in enumerate(stages.get("won", [])):
            entries.append({"id": f"{label}/{name}", "label": name, "displayOrder": n + j,
                            "metadata": {"isClosed": "true", "probability": "1.0"}})
        for j, name in enumerate(stages.get("lost", [])):
            entries.append({"id": f"{label}/{name}", "label": name, "displayOrder": n + 100 + j,
                            "metadata": {"isClosed": "true", "probability": "0.0"}})
        out.append({"id": label, "label": label, "stages": entries})
    return out


def _records(frame: pd.DataFrame, file: str, obj: str, labels: dict[str, str], cfg: CrmConfig, dst: DstNotes,
             stage_ids: dict[tuple[str, str], str]) -> list[dict]:
    hs = cfg.hubspot
    props = pd.DataFrame(index=frame.index)
    entered: list[tuple[str, str, str]] = []  # (column, stage label, pipeline label)
    headers = frame.attrs.get("headers", {})
    for column in frame.columns:
        if column == ROW:
            continue
        m = _DATE_ENTERED.match(headers.get(column, column))
        if m and obj == "deals":
            entered.append((column, m.group(1).strip(), m.group(2).strip()))
        elif column in labels:
            props[labels[column]] = frame[column]
    if "hs_object_id" not in props:
        raise CrmInputError(f"{file}: no 'Record ID' column (map the id column with hubspot.ui_labels.{obj})")

    def times(values: pd.Series, what: str) -> pd.Series:
        parsed = parse_instants(values, where=f"{file}, {what}", row_labels=frame[ROW], naive_tz=cfg.portal_timezone,
                                lenient=True, day_first=hs.ui_day_first, dst=dst)
        return parsed.dt.strftime("%Y-%m-%dT%H:%M:%SZ").where(parsed.notna(), None)

    for prop in TIME_PROPS:
        if prop in props:
            props[prop] = times(props[prop], prop)
    for prop in ENUM_PROPS:
        if prop in props:
            norm = props[prop].astype("string").str.strip().str.upper().str.replace(r"[\s-]+", "_", regex=True)
            props[prop] = norm.replace(_ENUM_ALIASES)
    if "hs_call_duration" in props:
        props["hs_call_duration"] = [_duration_ms(v, hs.ui_duration_unit) for v in props["hs_call_duration"]]
    entered_times = {column: times(frame[column], column) for column, _, _ in entered}
    sep = hs.ui_list_separator

    def ids(value) -> list[str]:
        if not isinstance(value, str) or not value.strip():
            return []
        return [v.strip() for v in value.split(sep) if v.strip()]

    out = []
    for i in frame.index:
        row = {k: props.at[i, k] for k in props.columns}
        rid = str(row.get("hs_object_id") or "").strip()
        item = {
            "id": rid,
            "properties": {k: v for k, v in row.items() if not k.startswith("__") and isinstance(v, str)},
            "archived": False,
            "createdAt": row.get("hs_createdate") or row.get("createdate"),
            "associations": {
                "contacts": {"results": [{"id": x} for x in ids(row.get("__contacts"))]},
                "companies": {"results": [{"id": x, "type": "primary"} for x in ids(row.get("__companies_primary"))]
                              + [{"id": x} for x in ids(row.get("__companies"))]},
                "deals": {"results": [{"id": x} for x in ids(row.get("__deals"))]},
            },
        }
        history = []
        for column, stage, pipeline in entered:
            when = entered_times[column].at[i]
            if isinstance(when, str):
                sid = stage_ids.get((pipeline.lower(), stage.lower()), f"{stage} ({pipeline})")
                history.append({"timestamp": when, "value": sid})
        if history:
            item["propertiesWithHistory"] = {"dealstage": history}
        rec = _record_from_api(item, file)
        rec[ROW] = frame.at[i, ROW]
        out.append(rec)
    return out


def _duration_ms(value, unit: str) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if re.fullmatch(r"\d+:\d{2}(:\d{2})?", text):
        seconds = 0
        for part in text.split(":"):
            seconds = seconds * 60 + int(part)
        return str(seconds * 1000)
    try:
        number = float(text.replace(",", ""))
    except ValueError:
        return text  # reported as unparseable by the converter
    return str(number * (1000 if unit == "s" else 1))
