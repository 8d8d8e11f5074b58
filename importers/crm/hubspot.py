"""HubSpot exports → the data contract.

Two input shapes, one converter:

- CRM API v3 JSON (``calls*.json``, ``emails*.json``, ``meetings*.json``, ``deals*.json`` with
  ``propertiesWithHistory.dealstage``, ``pipelines*.json``, ``owners*.json``,
  ``call_dispositions*.json``, ``companies*.json``, ``contacts*.json``): read here.
- UI CSV exports (property labels as headers, wall-clock times in the portal's zone,
  ``Date entered "<stage> (<pipeline>)"`` columns): read by :mod:`importers.crm.hubspot_ui`
  into the same record shape.

Mapping rules: shared/crm/CRM_EXPORTS.md section 5.2; docs/crm.md lists them with the
deliberate differences and what a UI export cannot carry.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features import contract as c
from importers.crm.common import (
    ROW,
    Conversion,
    StageInfo,
    assemble_tables,
    attribute_bookings,
    closing_and_outcomes,
    col,
    dedupe_responses,
    disposition_responses,
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
from importers.crm.times import DstNotes, parse_instants, parse_numbers

logger = logging.getLogger(__name__)

OBJECTS = ("calls", "emails", "meetings", "deals", "companies", "contacts")
ASSOC_TYPES = ("contacts", "companies", "deals")
_GUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)

DROP_ARCHIVED = "archived (deleted in HubSpot)"
DROP_FUTURE = "after as-of (a plan, not an activity)"
DROP_INBOUND = "incoming email (kept as a response)"


@dataclass
class HubSpotExport:
    """Records of one portal export, API-shaped whatever the input was.

    Each object frame has ``id``, ``archived``, ``created`` (ISO text), lower-cased
    property columns, ``_contacts``/``_companies``/``_deals`` (lists of ids, primary
    first), ``_history`` (property → list of (timestamp, value)), ``_row`` (label).
    """

    kind: str  # "api" | "ui"
    objects: dict[str, pd.DataFrame]
    files: dict[str, list[str]]
    owners: list[dict] = field(default_factory=list)
    dispositions: dict[str, str] = field(default_factory=dict)
    pipelines: list[dict] = field(default_factory=list)
    pipelines_file: str = "pipelines"
    dst: DstNotes | None = None
    owner_names: bool = False  # UI export: owner columns hold names, resolved via owners if present


def convert_hubspot(
    in_dir: Path | str, *, as_of: pd.Timestamp | str | None = None, config: CrmConfig | None = None,
    shape: str = "auto",
) -> Conversion:
    """Convert a HubSpot export directory (API JSON or UI CSV) into contract tables.

    Args:
        in_dir: the export directory.
        as_of: export time; later events are plans. Default: the latest record time
            (``hs_createdate``/``updatedAt``/``hs_lastmodifieddate``) in the export.
        config: org-specific choices (default: the packaged defaults).
        shape: ``api``, ``ui`` or ``auto`` (API when JSON files are present).
    """
    cfg = config or load_config()
    report = ConversionReport("hubspot", Path(in_dir), config_source=cfg.source)
    try:
        export = read_hubspot_export(Path(in_dir), cfg, report, shape)
        tables = _HubSpot(export, cfg, as_of, report).run()
    except CrmInputError as err:
        report.errors.append(str(err))
        tables = {}
    return Conversion(tables, report)


def read_hubspot_export(in_dir: Path, cfg: CrmConfig, report: ConversionReport, shape: str = "auto") -> HubSpotExport:
    if not in_dir.is_dir():
        raise CrmInputError(f"{in_dir}: no such directory")
    has_json = any(p.suffix.lower() == ".json" and _object_of(p.stem) in OBJECTS for p in in_dir.iterdir())
    if shape == "auto":
        shape = "api" if has_json else "ui"
    if shape == "ui":
        from importers.crm.hubspot_ui import read_ui_export

        return read_ui_export(in_dir, cfg, report)
    if shape != "api":
        raise CrmInputError(f"unknown HubSpot export shape {shape!r} (api, ui or auto)")
    return read_api_export(in_dir, report)


def _object_of(stem: str) -> str | None:
    """``calls_archived`` → calls, ``pipelines_deals`` → pipelines, ``call_dispositions`` → dispositions."""
    s = stem.lower()
    if "disposition" in s or "outcome" in s:
        return "dispositions"
    for name in ("pipelines", "owners", *OBJECTS):
        if s.startswith(name):
            return name
    return None


def _load_json(path: Path) -> list:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CrmInputError(f"{path.name}: not valid JSON: {err}") from err
    if isinstance(data, dict):
        data = [data]
    out = []
    for item in data:
        if isinstance(item, dict) and "results" in item:
            out.extend(item["results"])  # one page, or a list of pages
        else:
            out.append(item)
    return out


def read_api_export(in_dir: Path, report: ConversionReport) -> HubSpotExport:
    """Read CRM API v3 JSON files (single pages, lists of pages, ``*_archived`` files).

    Each file's records become a frame before the next file is read, so the Python dicts
    of one file at a time are held, not those of the whole export (at 100k records per
    file, about a tenth of the memory of the records of a 1M-activity export).
    """
    parts: dict[str, list[pd.DataFrame]] = {name: [] for name in OBJECTS}
    files: dict[str, list[str]] = {name: [] for name in OBJECTS}
    owners, dispositions, pipelines, pipelines_file = [], {}, [], "pipelines"
    ignored = []
    for path in sorted(in_dir.iterdir()):
        if not path.is_file() or path.suffix.lower() != ".json":
            continue
        obj = _object_of(path.stem)
        if obj is None:
            ignored.append(path.name)
            continue
        items = _load_json(path)
        if obj == "owners":
            owners.extend(items)
            files.setdefault("owners", []).append(path.name)
        elif obj == "dispositions":
            dispositions.update({str(d.get("id")): str(d.get("label")) for d in items if isinstance(d, dict)})
        elif obj == "pipelines":
            pipelines.extend(items)
            pipelines_file = path.name
        else:
            records = [_record_from_api(item, path.name) for item in items]
            if records:
                parts[obj].append(pd.DataFrame(records))
            records = None
            files[obj].append(path.name)
        items = None  # let the parsed file go before the next one is parsed
    if ignored:
        report.warn(f"ignored files: {', '.join(ignored)}")
    objects = {name: _object_frame(frames) for name, frames in parts.items()}
    return HubSpotExport("api", objects, files, owners, dispositions, pipelines, pipelines_file)


def _assoc_ids(assoc: dict | None, kind: str) -> list[str]:
    block = (assoc or {}).get(kind) or {}
    results = block.get("results", block) if isinstance(block, dict) else block
    primary, rest = [], []
    for r in results or []:
        rid = r.get("id", r.get("toObjectId"))
        if rid is None:
            continue
        labels = " ".join(
            [str(r.get("type", ""))] + [str(t.get("label") or "") for t in r.get("associationTypes", []) or []]
        ).lower()
        (primary if "primary" in labels else rest).append(str(rid))
    out = []
    for rid in primary + rest:
        if rid not in out:
            out.append(rid)
    return out


def _record_from_api(item: dict, file: str) -> dict:
    props = {str(k).lower(): ("" if v is None else str(v)) for k, v in (item.get("properties") or {}).items()}
    history = {}
    for prop, entries in (item.get("propertiesWithHistory") or {}).items():
        history[str(prop).lower()] = [(e.get("timestamp"), e.get("value")) for e in entries or []]
    rid = str(item.get("id") or props.get("hs_object_id") or "")
    rec = {
        "id": rid,
        "archived": bool(item.get("archived", False)) and str(item.get("archived")).lower() != "false",
        "created": item.get("createdAt"),
        "updated": item.get("updatedAt"),
        "_history": history,
        ROW: f"{file} id {rid}",
    }
    for kind in ASSOC_TYPES:
        rec[f"_{kind}"] = _assoc_ids(item.get("associations"), kind)
    rec.update({k: v for k, v in props.items() if k not in rec})
    return rec


def _records_frame(records: list[dict]) -> pd.DataFrame:
    """One object's frame from its records (see :class:`HubSpotExport`)."""
    return _object_frame([pd.DataFrame(records)] if records else [])


def _object_frame(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """One object's frame from the frames of its files' records, in file order."""
    base = ["id", "archived", "created", "updated", "_history", ROW, "_contacts", "_companies", "_deals"]
    if not parts:
        return pd.DataFrame(columns=base)
    frame = parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
    # the same id in two files (active page and archived page): archived wins
    frame = frame.sort_values("archived", kind="stable").drop_duplicates("id", keep="last").reset_index(drop=True)
    for column in frame.columns:
        if column not in ("archived", "_history", "_contacts", "_companies", "_deals"):
            frame[column] = frame[column].astype("string")
    return frame


# --- the converter ------------------------------------------------------------------

class _HubSpot:
    def __init__(self, export: HubSpotExport, cfg: CrmConfig, as_of, report: ConversionReport) -> None:
        self.x = export
        self.cfg = cfg
        self.hs = cfg.hubspot
        self.report = report
        self.as_of_arg = as_of

    def name(self, obj: str) -> str:
        files = self.x.files.get(obj) or [obj]
        return ", ".join(files)

    def counts(self, obj: str):
        return self.report.input(self.name(obj))

    def ts(self, frame: pd.DataFrame, prop: str, obj: str) -> pd.Series:
        return parse_instants(col(frame, prop), where=f"{self.name(obj)}, {prop}", row_labels=frame[ROW])

    def run(self) -> dict[str, pd.DataFrame]:
        for obj in OBJECTS:
            if self.x.files.get(obj):
                self.counts(obj).read = len(self.x.objects[obj])
        if not any(len(self.x.objects[o]) for o in ("calls", "emails", "meetings")):
            raise CrmInputError(f"{self.report.input_dir}: no calls, emails or meetings in the export")
        self._set_as_of()
        self._owner_lookup()
        stages = self._stage_history()
        closing, outcomes = closing_and_outcomes(stages, self.cfg, self.as_of)
        outcomes = pd.concat([outcomes, self._property_outcomes()], ignore_index=True)
        deals = self._deals(closing)
        activities, responses = self._activities(deals)
        contacts = self._contacts()
        accounts = self._accounts()
        reps = self._reps(activities, deals)
        if self.report.errors:
            return {}
        if self.x.dst is not None and (self.x.dst.ambiguous or self.x.dst.nonexistent):
            self.report.warn(
                f"daylight-saving change in {self.cfg.portal_timezone}: {self.x.dst.ambiguous} time(s) fell in the "
                f"repeated hour (read as the first, daylight-time reading), {self.x.dst.nonexistent} in the skipped "
                f"hour (moved forward by the gap); e.g. {', '.join(self.x.dst.examples[:3])}"
            )
        return assemble_tables(
            activities=activities, responses=responses, stages=stages, outcomes=outcomes, deals=deals,
            contacts=contacts, accounts=accounts, reps=reps, report=self.report,
            no_history=f"{self.report.input_dir}: no deal stage history and no outcomes: export deals with "
                       "propertiesWithHistory=dealstage (or the UI's \"Date entered\" columns) and the pipelines",
        )

    def _set_as_of(self) -> None:
        if self.as_of_arg is not None:
            ts = pd.Timestamp(self.as_of_arg)
            self.as_of = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        else:
            latest = []
            for obj, frame in self.x.objects.items():
                for prop in ("hs_createdate", "created", "updated", "hs_lastmodifieddate", "createdate"):
                    if prop in frame.columns and len(frame):
                        values = self.ts(frame, prop, obj)
                        if values.notna().any():
                            latest.append(values.max())
            self.as_of = max(latest) if latest else pd.Timestamp.now(tz="UTC").floor("s")
            self.report.as_of_inferred = True
        self.report.as_of = self.as_of

    # --- owners -------------------------------------------------------------------
    def _owner_lookup(self) -> None:
        self.owner_team: dict[str, str | None] = {}
        self.owner_by_name: dict[str, str] = {}
        for o in self.x.owners:
            oid = str(o.get("id"))
            teams = o.get("teams") or []
            primary = [t for t in teams if t.get("primary")] or teams
            self.owner_team[oid] = primary[0].get("name") if primary else None
            full = f"{o.get('firstName') or ''} {o.get('lastName') or ''}".strip().lower()
            for key in (full, str(o.get("email") or "").lower(), oid.lower()):
                if key:
                    self.owner_by_name[key] = oid

    def owner(self, values: pd.Series) -> pd.Series:
        """Owner ids; a UI export's owner names are resolved through owners.json when present."""
        if not self.x.owner_names:
            return values
        if not self.owner_by_name:
            if values.notna().any():
                self.report.warn("UI export without owners.json: owner names are used as rep ids")
            return values.map(lambda v: slug(v) if isinstance(v, str) else v).astype("string")
        resolved = values.map(lambda v: self.owner_by_name.get(str(v).strip().lower()) if isinstance(v, str) else None)
        unknown = sorted(set(values[values.notna() & resolved.isna()].astype(str)))
        if unknown:
            self.report.warn(f"owners not in owners.json (kept as names): {', '.join(unknown[:5])}")
        return resolved.fillna(values.map(lambda v: slug(v) if isinstance(v, str) else v)).astype("string")

    # --- stages -------------------------------------------------------------------
    def _stage_table(self) -> tuple[dict[str, StageInfo], dict[str, str], dict[tuple[str, str], str]]:
        """Stage id → StageInfo; stage id → pipeline id; (pipeline label, stage label) → stage id."""
        table: dict[str, StageInfo] = {}
        pipeline_of: dict[str, str] = {}
        by_label: dict[tuple[str, str], str] = {}
        label_count: dict[str, int] = {}
        for p in self.x.pipelines:
            for s in p.get("stages") or []:
                label_count[str(s.get("label")).lower()] = label_count.get(str(s.get("label")).lower(), 0) + 1
        for p in self.x.pipelines:
            stages = sorted(p.get("stages") or [], key=lambda s: (float(s.get("displayOrder") or 0), str(s.get("label"))))
            meta = [(s, s.get("metadata") or {}) for s in stages]
            open_ = [s for s, m in meta if not _truthy(m.get("isClosed"))]
            k = len(open_)
            for s, m in meta:
                label = str(s.get("label"))
                name = label if label_count.get(label.lower(), 0) <= 1 else f"{p.get('label')}: {label}"
                if _truthy(m.get("isClosed")):
                    prob = _float(m.get("probability"))
                    won = prob is not None and prob >= 1.0
                    if prob not in (0.0, 1.0):
                        self.report.warn(f"pipeline {p.get('label')}: closed stage {label!r} has probability {prob}; "
                                         f"treated as {'won' if won else 'lost'}")
                    info = StageInfo(name, k + 1 if won else c.CLOSED_LOST_ORDER, True, won)
                else:
                    info = StageInfo(name, open_.index(s) + 1, False, False)
                sid = str(s.get("id"))
                table[sid.lower()] = info
                pipeline_of[sid.lower()] = str(p.get("id"))
                by_label[(str(p.get("label")).lower(), label.lower())] = sid
        return table, pipeline_of, by_label

    def _stage_history(self) -> pd.DataFrame:
        columns = [c.DEAL_ID, c.STAGE, c.STAGE_ORDER, c.ENTERED_AT, "_closed", "_won"]
        deals = self.x.objects["deals"]
        if not len(deals):
            return pd.DataFrame(columns=columns)
        if not self.x.pipelines:
            raise CrmInputError(
                f"{self.report.input_dir}: no pipelines_deals.json (GET /crm/v3/pipelines/deals) and no "
                "`hubspot.pipelines` in the config: stage order cannot be known"
            )
        table, self.pipeline_of, self.stage_by_label = self._stage_table()
        mapped = resolve_stage_map(self.cfg, table)
        deals = deals[~deals["archived"].astype(bool)]
        rows, no_history = [], 0
        for rec in deals.to_dict("records"):
            entries = list(rec["_history"].get("dealstage") or [])
            if not entries:
                # older/newer stage calculated properties: one entry date per stage
                for prop, value in rec.items():
                    m = re.match(r"^hs_(?:v2_)?date_entered_(.+)$", str(prop))
                    if m and isinstance(value, str) and value.strip():
                        entries.append((value, m.group(1)))
            if not entries:
                no_history += 1
                continue
            for seq, (when, stage_id) in enumerate(entries):
                rows.append({c.DEAL_ID: rec["id"], "_raw": str(stage_id), "_when": when, "_seq": seq, ROW: rec[ROW]})
        if no_history:
            self.report.warn(f"{no_history} deals have no stage history (propertiesWithHistory=dealstage or "
                             "Date entered columns): left out of deal_stages")
        if not rows:
            return pd.DataFrame(columns=columns)
        hist = pd.DataFrame(rows)
        hist[c.ENTERED_AT] = parse_instants(hist["_when"].astype("string"), where=f"{self.name('deals')}, dealstage history",
                                            row_labels=hist[ROW])
        late = hist[c.ENTERED_AT] > self.as_of
        hist = hist[~late.to_numpy(bool)].reset_index(drop=True)
        infos, via, unmapped = [], [], []
        for raw in hist["_raw"]:
            key = raw.lower()
            if key in mapped:
                infos.append(mapped[key])
                via.append("stage_map")
            elif key in table:
                infos.append(table[key])
                via.append("stage table")
            else:
                infos.append(None)
                via.append(None)
                unmapped.append(raw)
        if unmapped:
            names = sorted(set(unmapped))
            where = self.name("deals")
            self.report.unmapped_stages[where] = names
            self.report.errors.append(
                f"{where}: deal stages not in {self.x.pipelines_file}: {', '.join(repr(n) for n in names)} — map each "
                "to a stage with `stage_map` in the config"
            )
            return pd.DataFrame(columns=columns)
        hist = hist.assign(**{
            c.STAGE: [i.name for i in infos], c.STAGE_ORDER: [i.order for i in infos],
            "_closed": [i.closed for i in infos], "_won": [i.won for i in infos], "_via": via,
            "_pipeline": [self.pipeline_of.get(r.lower()) for r in hist["_raw"]],
        })
        runs = stage_runs(hist)
        self.counts("deals").note("consecutive repeats of a stage merged", len(hist) - len(runs))
        moved = runs.groupby(c.DEAL_ID)["_pipeline"].nunique()
        for deal_id in moved[moved > 1].index:
            self.report.warn(f"deal {deal_id} moved between pipelines: stage orders before and after the move are "
                             "not comparable")
        for (name, v), n in runs.groupby([c.STAGE, "_via"]).size().items():
            info = next(i for i in infos if i.name == name)
            record_stage(self.report, info, v, int(n))
        return runs[columns]

    def _property_outcomes(self) -> pd.DataFrame:
        rows = []
        deals = self.x.objects["deals"]
        deals = deals[~deals["archived"].astype(bool)] if len(deals) else deals
        wanted = {k.lower(): v for k, v in self.hs.outcome_properties.items()}
        missing_history = set()
        for rec in deals.to_dict("records"):
            for prop, outcome in wanted.items():
                entries = rec["_history"].get(prop)
                if entries is None:
                    missing_history.add(prop)
                    continue
                for when, value in sorted(entries, key=lambda e: str(e[0])):
                    if _truthy(value):
                        rows.append({c.DEAL_ID: rec["id"], c.OUTCOME: outcome, "_when": when, ROW: rec[ROW]})
            for prop, outcome in self.hs.outcome_date_properties.items():
                value = rec.get(prop.lower())
                if isinstance(value, str) and value.strip():
                    rows.append({c.DEAL_ID: rec["id"], c.OUTCOME: outcome, "_when": value, ROW: rec[ROW]})
        if missing_history:
            self.report.warn(f"outcome_properties without propertiesWithHistory on some deals: "
                             f"{', '.join(sorted(missing_history))} (a current value has no time and is not used)")
        if not rows:
            return pd.DataFrame(columns=[c.DEAL_ID, c.OUTCOME, c.OCCURRED_AT])
        frame = pd.DataFrame(rows)
        frame[c.OCCURRED_AT] = parse_instants(frame["_when"].astype("string"), where=f"{self.name('deals')}, outcome property",
                                              row_labels=frame[ROW])
        frame = frame[frame[c.OCCURRED_AT] <= self.as_of]
        return frame[[c.DEAL_ID, c.OUTCOME, c.OCCURRED_AT]].drop_duplicates()

    # --- deals --------------------------------------------------------------------
    def _deals(self, closing: pd.DataFrame) -> pd.DataFrame | None:
        deals = self.x.objects["deals"]
        if not self.x.files.get("deals"):
            return None
        counts = self.counts("deals")
        archived = deals["archived"].astype(bool)
        counts.drop(DROP_ARCHIVED, int(archived.sum()))
        deals = deals[~archived.to_numpy(bool)].reset_index(drop=True)
        created = self.ts(deals, "createdate", "deals").fillna(self.ts(deals, "created", "deals"))
        future = created > self.as_of
        counts.drop(DROP_FUTURE, int(future.sum()))
        deals, created = deals[~future.to_numpy(bool)].reset_index(drop=True), created[~future.to_numpy(bool)].reset_index(drop=True)
        counts.kept = len(deals)
        current = parse_numbers(col(deals, "amount"), where=f"{self.name('deals')}, amount", row_labels=deals[ROW])
        if self.cfg.deal_amount == "current":
            amount = current
            self.report.warn("deal_amount: current — deals.amount is the final amount, which reveals the result")
        else:
            initial = []
            for hist in deals["_history"]:
                entries = [e for e in (hist.get("amount") or []) if e[1] not in (None, "")]
                initial.append(sorted(entries, key=lambda e: str(e[0]))[0][1] if entries else None)
            amount = parse_numbers(pd.Series(initial, dtype="string"), where=f"{self.name('deals')}, amount history")
            missing = int((amount.isna() & current.notna()).sum())
            if missing:
                self.report.warn(
                    f"{missing} deals have no amount history (export with propertiesWithHistory=amount): amount left "
                    "empty, because the current amount is the final one (set deal_amount: current to use it anyway)"
                )
        out = pd.DataFrame({
            c.DEAL_ID: col(deals, "id"),
            c.ACCOUNT_ID: pd.Series([lst[0] if len(lst) else None for lst in deals["_companies"]], dtype="string"),
            c.OWNER_REP_ID: self.owner(col(deals, "hubspot_owner_id")),
            c.CREATED_AT: created,
            c.AMOUNT: amount,
        })
        if len(closing):
            idx = closing.set_index(c.DEAL_ID)
            out[c.CLOSED_AT] = out[c.DEAL_ID].map(idx[c.CLOSED_AT])
            out[c.WON] = out[c.DEAL_ID].map(idx[c.WON])
        self._extra(out, deals, c.DEALS)
        self.deal_spans = {
            d: (cr, cl) for d, cr, cl in zip(out[c.DEAL_ID], out[c.CREATED_AT],
                                             out.get(c.CLOSED_AT, pd.Series(pd.NaT, index=out.index)))
        }
        return out

    def _pick_deal(self, candidates: list[str], at: pd.Timestamp) -> tuple[str | None, bool]:
        """The associated deal: the only one, else the one open at ``at``; flags ambiguity."""
        known = [d for d in candidates if d in self.deal_spans]
        if not known:
            return None, False
        if len(known) == 1:
            return known[0], False
        open_at = [d for d in known if (pd.isna(self.deal_spans[d][0]) or self.deal_spans[d][0] <= at)
                   and (pd.isna(self.deal_spans[d][1]) or at < self.deal_spans[d][1])]
        pool = open_at or [d for d in known if pd.isna(self.deal_spans[d][0]) or self.deal_spans[d][0] <= at] or known
        best = max(pool, key=lambda d: (self.deal_spans[d][0] if pd.notna(self.deal_spans[d][0]) else pd.Timestamp.min.tz_localize("UTC"), d))
        return best, len(open_at) != 1

    # --- activities ---------------------------------------------------------------
    def _activities(self, deals: pd.DataFrame | None) -> tuple[pd.DataFrame, pd.DataFrame]:
        if deals is None:
            self.deal_spans = {}
        parts, responses, bookings = [], [], []
        calls = self._calls(responses)
        emails, incoming = self._emails(responses)
        meetings = self._meetings(responses, bookings)
        parts = [p for p in (calls, emails, meetings) if p is not None and len(p)]
        activities = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=c.TABLES[c.ACTIVITIES].column_names)
        # one deal per activity
        deal_ids, ambiguous, dropped_refs = [], 0, 0
        for cands, at in zip(activities["_deals"], activities[c.OCCURRED_AT]):
            d, amb = self._pick_deal(list(cands), at)
            if cands and d is None:
                dropped_refs += 1
            ambiguous += int(amb and d is not None)
            deal_ids.append(d)
        activities[c.DEAL_ID] = pd.Series(deal_ids, index=activities.index, dtype="string")
        if ambiguous:
            self.report.warn(f"{ambiguous} activities are associated with several open deals: the most recently "
                             "created one was chosen")
        if dropped_refs:
            self.report.warn(f"{dropped_refs} activities referenced deals not in the export (deleted?); deal_id left empty")
        resp = [r for r in responses if len(r)]
        resp.append(self._replies(incoming, activities))
        if bookings:
            resp.append(attribute_bookings(activities, pd.concat(bookings, ignore_index=True), self.cfg.booking_window_days))
        resp = [r for r in resp if len(r)]
        responses_frame = pd.concat(resp, ignore_index=True) if resp else pd.DataFrame(
            columns=[c.ACTIVITY_ID, c.RESPONSE, c.OCCURRED_AT])
        responses_frame = responses_frame[responses_frame[c.OCCURRED_AT] <= self.as_of]
        return activities, dedupe_responses(responses_frame, activities[c.ACTIVITY_ID])

    def _timed(self, frame: pd.DataFrame, occurred: pd.Series, obj: str, prop: str) -> tuple[pd.DataFrame, pd.Series]:
        """Drop records without an activity time (counted), and those after as-of."""
        missing = occurred.isna()
        self.counts(obj).drop(f"no activity time ({prop})", int(missing.sum()))
        future = occurred > self.as_of
        self.counts(obj).drop(DROP_FUTURE, int(future.sum()))
        keep = (~missing & ~future).to_numpy(bool)
        return frame[keep].reset_index(drop=True), occurred[keep].reset_index(drop=True)

    def _base(self, frame: pd.DataFrame, occurred: pd.Series, kind: pd.Series | str, obj: str) -> pd.DataFrame:
        created = self.ts(frame, "hs_createdate", obj).fillna(self.ts(frame, "created", obj))
        out = pd.DataFrame({
            c.ACTIVITY_ID: col(frame, "id"),
            c.OCCURRED_AT: occurred,
            c.TYPE: kind,
            c.REP_ID: self.owner(col(frame, "hubspot_owner_id")),
            c.CONTACT_ID: pd.Series([lst[0] if len(lst) else None for lst in frame["_contacts"]], index=frame.index,
                                    dtype="string"),
            c.ACCOUNT_ID: pd.Series([lst[0] if len(lst) else None for lst in frame["_companies"]], index=frame.index,
                                    dtype="string"),
            c.DIRECTION: pd.Series(pd.NA, index=frame.index, dtype="string"),
            c.DURATION_S: np.nan,
            c.PERSONALIZATION: np.nan,
            c.IS_AUTOMATED: False,
            c.LOGGED_AT: created,
            "_deals": frame["_deals"],
        })
        for column, prop in self.hs.fields.get(c.ACTIVITIES, {}).items():
            if prop.lower() in frame.columns:
                out[column] = col(frame, prop)
        for name, column in custom_field_columns(self.hs.custom_fields.get(c.ACTIVITIES, [])):
            out[column] = col(frame, name)
        return out

    def _live(self, obj: str) -> pd.DataFrame:
        frame = self.x.objects[obj]
        archived = frame["archived"].astype(bool) if len(frame) else pd.Series([], dtype=bool)
        self.counts(obj).drop(DROP_ARCHIVED, int(archived.sum()))
        return frame[~archived.to_numpy(bool)].reset_index(drop=True)

    def _keep(self, frame: pd.DataFrame, mask: pd.Series, obj: str, reason: str) -> pd.DataFrame:
        self.counts(obj).drop(reason, int((~mask).sum()))
        return frame[mask.to_numpy(bool)].reset_index(drop=True)

    def _calls(self, responses: list) -> pd.DataFrame | None:
        if not self.x.files.get("calls"):
            return None
        calls = self._live("calls")
        status = col(calls, "hs_call_status").str.upper()
        excluded = {s.upper() for s in self.hs.excluded_call_statuses}
        calls = self._keep(calls, ~status.isin(excluded).fillna(False), "calls", "not a completed call (hs_call_status)")
        occurred = self.ts(calls, "hs_timestamp", "calls").fillna(self.ts(calls, "created", "calls"))
        calls, occurred = self._timed(calls, occurred, "calls", "hs_timestamp")
        out = self._base(calls, occurred, "call", "calls")
        callee_type = col(calls, "hs_call_callee_object_type").str.upper()
        callee = col(calls, "hs_call_callee_object_id").where(callee_type.eq("CONTACT").fillna(False))
        out[c.CONTACT_ID] = callee.fillna(out[c.CONTACT_ID])
        out[c.DIRECTION] = col(calls, "hs_call_direction").str.lower().where(lambda s: s.isin(["inbound", "outbound"]))
        duration = col(calls, "hs_call_duration")
        clock = duration.str.fullmatch(r"\d+:\d{2}(:\d{2})?").fillna(False)
        seconds = parse_numbers(duration.mask(clock), where=f"{self.name('calls')}, hs_call_duration",
                                row_labels=calls[ROW]) / 1000.0
        if clock.any():
            seconds[clock] = [_clock_seconds(v) for v in duration[clock]]
        out[c.DURATION_S] = seconds
        self.counts("calls").kept = len(out)
        unknown = set()
        rows = []
        for aid, at, value in zip(out[c.ACTIVITY_ID], out[c.OCCURRED_AT], col(calls, "hs_call_disposition")):
            if not isinstance(value, str):
                continue
            label = self.x.dispositions.get(value)
            if label is None and _GUID_RE.match(value):
                unknown.add(value)
                continue
            for response in disposition_responses(label or value, self.cfg):
                rows.append((aid, response, at))
        if unknown:
            self.report.warn(f"call outcomes not in call_dispositions.json (no response recorded): {', '.join(sorted(unknown))}")
        responses.append(pd.DataFrame(rows, columns=[c.ACTIVITY_ID, c.RESPONSE, c.OCCURRED_AT]))
        return out

    def _emails(self, responses: list) -> tuple[pd.DataFrame | None, pd.DataFrame]:
        empty = pd.DataFrame(columns=["at", c.CONTACT_ID, "thread", "text"])
        if not self.x.files.get("emails"):
            return None, empty
        emails = self._live("emails")
        direction = col(emails, "hs_email_direction").str.upper().fillna("EMAIL")
        occurred_all = self.ts(emails, "hs_timestamp", "emails").fillna(self.ts(emails, "created", "emails"))
        is_in = direction.eq("INCOMING_EMAIL")
        incoming = pd.DataFrame({
            "at": occurred_all[is_in],
            c.CONTACT_ID: [lst[0] if len(lst) else None for lst in emails["_contacts"][is_in]],
            "thread": col(emails, "hs_email_thread_id")[is_in],
            "text": col(emails, "hs_email_text")[is_in].fillna(col(emails, "hs_email_html")[is_in]),
        }).reset_index(drop=True)
        incoming = incoming[incoming["at"] <= self.as_of]
        keep_dir = direction.eq("EMAIL") | (is_in & (self.cfg.inbound_email == "activity"))
        counts = self.counts("emails")
        counts.drop(DROP_INBOUND, int((is_in & ~keep_dir).sum()))
        counts.drop("forwarded email", int(direction.eq("FORWARDED_EMAIL").sum()))
        other = ~keep_dir & ~is_in & ~direction.eq("FORWARDED_EMAIL")
        counts.drop("unknown hs_email_direction", int(other.sum()))
        status = col(emails, "hs_email_status").str.upper()
        allowed = {s.upper() for s in self.hs.email_statuses}
        sent = status.isna() | status.isin(allowed).fillna(False) | is_in
        counts.drop("not sent (hs_email_status)", int((keep_dir & ~sent).sum()))
        future = occurred_all > self.as_of
        counts.drop(DROP_FUTURE, int((keep_dir & sent & future).sum()))
        untimed = occurred_all.isna()
        counts.drop("no activity time (hs_timestamp)", int((keep_dir & sent & untimed).sum()))
        mask = (keep_dir & sent & ~future & ~untimed).to_numpy(bool)
        emails, occurred, status, is_in = (emails[mask].reset_index(drop=True), occurred_all[mask].reset_index(drop=True),
                                           status[mask].reset_index(drop=True), is_in[mask].reset_index(drop=True))
        out = self._base(emails, occurred, "email", "emails")
        out[c.DIRECTION] = pd.Series(np.where(is_in, "inbound", "outbound"), dtype="string")
        out[c.IS_AUTOMATED] = col(emails, "hs_sequence_id").notna().to_numpy()
        out["_thread"] = col(emails, "hs_email_thread_id")
        counts.kept = len(out)
        bounced = status.eq("BOUNCED").fillna(False).to_numpy(bool)
        responses.append(pd.DataFrame({c.ACTIVITY_ID: out[c.ACTIVITY_ID][bounced], c.RESPONSE: "bounced",
                                       c.OCCURRED_AT: out[c.OCCURRED_AT][bounced]}))
        return out, incoming

    def _meetings(self, responses: list, bookings: list) -> pd.DataFrame | None:
        if not self.x.files.get("meetings"):
            return None
        meetings = self._live("meetings")
        booked = self.ts(meetings, "hs_createdate", "meetings").fillna(self.ts(meetings, "created", "meetings"))
        # one row per (booking, attendee), in meeting order: built at once (a frame per meeting
        # took half of a 100k-activity conversion)
        valid = (booked.notna() & (booked <= self.as_of)).to_numpy(bool)
        if valid.any():
            attendees = meetings["_contacts"][valid]
            per_meeting = np.fromiter((len(lst) for lst in attendees), dtype=np.int64, count=len(attendees))
            bookings.append(pd.DataFrame({"booked_at": booked[valid].repeat(per_meeting).reset_index(drop=True),
                                          c.CONTACT_ID: [x for lst in attendees for x in lst]}))
        outcome = col(meetings, "hs_meeting_outcome").str.upper().str.replace(r"[\s-]+", "_", regex=True)
        outcome = outcome.replace({"CANCELLED": "CANCELED", "NOSHOW": "NO_SHOW"})
        excluded = {s.upper() for s in self.hs.excluded_meeting_outcomes}
        meetings = self._keep(meetings, ~outcome.isin(excluded).fillna(False), "meetings",
                              "canceled or rescheduled (hs_meeting_outcome)")
        outcome = outcome[~outcome.isin(excluded).fillna(False)].reset_index(drop=True)
        start = self.ts(meetings, "hs_meeting_start_time", "meetings").fillna(self.ts(meetings, "hs_timestamp", "meetings"))
        keep = (start.notna() & (start <= self.as_of)).to_numpy(bool)
        outcome = outcome[keep].reset_index(drop=True)
        meetings, start = self._timed(meetings, start, "meetings", "hs_meeting_start_time")
        types = {k.lower(): v for k, v in self.hs.meeting_types.items()}
        kind = pd.Series([types.get(str(t).lower(), self.hs.default_meeting_type) if isinstance(t, str)
                          else self.hs.default_meeting_type for t in col(meetings, "hs_activity_type")], dtype="string")
        out = self._base(meetings, start, kind, "meetings")
        end = self.ts(meetings, "hs_meeting_end_time", "meetings")
        out[c.DURATION_S] = (end - start).dt.total_seconds().where(end >= start)
        self.counts("meetings").kept = len(out)
        no_show = outcome.eq("NO_SHOW").fillna(False).to_numpy(bool)
        responses.append(pd.DataFrame({c.ACTIVITY_ID: out[c.ACTIVITY_ID][no_show], c.RESPONSE: "no_show",
                                       c.OCCURRED_AT: out[c.OCCURRED_AT][no_show]}))
        return out

    def _replies(self, incoming: pd.DataFrame, activities: pd.DataFrame) -> pd.DataFrame:
        """An incoming email answers the same thread, else the latest outbound email to that contact.

        "Latest" is the last outbound email strictly before the reply (ties: the largest
        activity id); by contact only within ``reply_window_days``. Two as-of joins
        (O((incoming + sent) log)), rows in the order of ``incoming``.
        """
        cols = [c.ACTIVITY_ID, c.RESPONSE, c.OCCURRED_AT]
        if incoming.empty or activities.empty:
            return pd.DataFrame(columns=cols)
        sent = activities[activities[c.TYPE].eq("email") & activities[c.DIRECTION].eq("outbound").fillna(False)]
        thread = sent["_thread"] if "_thread" in sent else pd.Series(pd.NA, index=sent.index, dtype="string")
        window = pd.Timedelta(days=self.cfg.reply_window_days)
        utc = "datetime64[ns, UTC]"
        right = pd.DataFrame({"_at": sent[c.OCCURRED_AT].astype(utc), "_id": sent[c.ACTIVITY_ID].astype("string"),
                              "_thread": thread.astype("string"), "_contact": sent[c.CONTACT_ID].astype("string")})
        right = right[right["_at"].notna()].sort_values(["_at", "_id"], kind="stable")
        left = pd.DataFrame({"_at": incoming["at"].astype(utc).to_numpy(), "_i": np.arange(len(incoming)),
                             "_thread": [v if isinstance(v, str) else None for v in incoming["thread"]],
                             "_contact": incoming[c.CONTACT_ID].astype("string").to_numpy()})
        left = left.astype({"_thread": "string", "_contact": "string"})
        left = left[left["_at"].notna()].sort_values("_at", kind="stable")
        match = pd.Series(pd.NA, index=np.arange(len(incoming)), dtype="string")

        def latest(rows: pd.DataFrame, key: str, tolerance: pd.Timedelta | None) -> None:
            rows = rows[rows[key].notna()]
            pool = right[right[key].notna()][["_at", key, "_id"]]
            if rows.empty or pool.empty:
                return
            hit = pd.merge_asof(rows[["_at", key, "_i"]], pool, on="_at", by=key, direction="backward",
                                allow_exact_matches=False, tolerance=tolerance)
            hit = hit[hit["_id"].notna()]
            match.iloc[hit["_i"].to_numpy()] = hit["_id"].to_numpy()

        latest(left, "_thread", None)  # the same thread, however old
        latest(left[match.iloc[left["_i"].to_numpy()].isna().to_numpy()], "_contact", window)
        found = match.notna().to_numpy()
        unmatched = int((~found).sum())
        texts = incoming["text"].to_numpy(object)[found]
        out = pd.DataFrame({c.ACTIVITY_ID: match[found].to_numpy(object),
                            c.RESPONSE: [reply_kind(x, self.cfg) for x in texts],
                            c.OCCURRED_AT: incoming["at"].to_numpy()[found]}, columns=cols)
        if unmatched:
            self.report.warn(f"{unmatched} incoming emails matched no outbound email in the previous "
                             f"{self.cfg.reply_window_days:g} days: not counted as replies")
        return out

    # --- people -------------------------------------------------------------------
    def _contacts(self) -> pd.DataFrame | None:
        if not self.x.files.get("contacts"):
            return None
        contacts = self._live("contacts")
        self.counts("contacts").kept = len(contacts)
        title = col(contacts, "jobtitle")
        company = col(contacts, "associatedcompanyid")
        assoc = pd.Series([lst[0] if len(lst) else None for lst in contacts["_companies"]], dtype="string")
        out = pd.DataFrame({
            c.CONTACT_ID: col(contacts, "id"),
            c.ACCOUNT_ID: company.fillna(assoc),
            c.TITLE: title,
            c.SENIORITY: seniority_of(title, self.cfg),
            c.DEPARTMENT: pd.Series(pd.NA, index=contacts.index, dtype="string"),
        })
        self._extra(out, contacts, c.CONTACTS)
        return out

    def _accounts(self) -> pd.DataFrame | None:
        if not self.x.files.get("companies"):
            return None
        companies = self._live("companies")
        self.counts("companies").kept = len(companies)
        employees = parse_numbers(col(companies, "numberofemployees"), where=f"{self.name('companies')}, numberofemployees",
                                  row_labels=companies[ROW])
        out = pd.DataFrame({
            c.ACCOUNT_ID: col(companies, "id"),
            c.INDUSTRY: pd.Series([slug(v) for v in col(companies, "industry")], dtype="string"),
            c.EMPLOYEES: employees.round(),
            c.REGION: region_of(col(companies, "country"), self.cfg, self.report, self.name("companies")),
        })
        self._extra(out, companies, c.ACCOUNTS)
        return out

    def _reps(self, activities: pd.DataFrame, deals: pd.DataFrame | None) -> pd.DataFrame:
        owners = set(activities[c.REP_ID].dropna())
        if deals is not None:
            owners |= set(deals[c.OWNER_REP_ID].dropna())
        rows = pd.DataFrame({c.REP_ID: sorted(owners)}, dtype="string")
        rows[c.TEAM] = rows[c.REP_ID].map(self.owner_team).astype("string")
        rows[c.HIRED_AT] = pd.NaT
        if self.x.owners:
            name = self.name("owners")
            self.report.input(name).read = len(self.x.owners)
            self.report.input(name).kept = int(rows[c.REP_ID].isin(self.owner_team).sum())
            self.report.input(name).drop("owns no kept activity or deal",
                                         len(self.owner_team) - self.report.input(name).kept)
        return rows

    def _extra(self, out: pd.DataFrame, source: pd.DataFrame, table: str) -> None:
        for column, prop in self.hs.fields.get(table, {}).items():
            out[column] = col(source, prop).to_numpy()
        for name, column in custom_field_columns(self.hs.custom_fields.get(table, [])):
            out[column] = col(source, name).to_numpy()


def _truthy(value) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes", "1.0")


def _float(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _clock_seconds(text: str) -> float:
    parts = [float(p) for p in str(text).split(":")]
    seconds = 0.0
    for p in parts:
        seconds = seconds * 60 + p
    return seconds


__all__ = ["HubSpotExport", "convert_hubspot", "read_hubspot_export"]
