"""Contract tables → a HubSpot CRM API v3 export (the adapter's inverse, for tests and benchmarks).

:func:`to_hubspot_export` writes the JSON files that :mod:`importers.crm.hubspot` reads
(``calls*.json``, ``emails*.json``, ``meetings*.json``, ``deals*.json`` with
``propertiesWithHistory``, ``pipelines_deals.json``, ``owners.json``,
``call_dispositions.json``, ``companies.json``, ``contacts.json``) the way a portal would
hold the same history: numeric record ids (calls, emails and meetings share the
engagement id space), objects as lists of API pages (``{"results": [...], "paging": ...}``),
property values as strings, ISO UTC times with milliseconds, associations in the v3 form.
Large objects are split into several files of at most ``records_per_file`` records
(``calls-0001.json``, ``calls-0002.json``, ...), which the adapter reads as one object.

HubSpot mechanisms are used wherever they exist: call outcomes (dispositions, with the
portal's custom outcomes "Not interested", "Connected - not interested" and "Meeting
booked") for call results, ``INCOMING_EMAIL`` engagements threaded with
``hs_email_thread_id`` for replies, ``hs_email_status = BOUNCED``, ``hs_sequence_id`` for
automated emails, ``hs_meeting_outcome = NO_SHOW``, ``propertiesWithHistory`` of
``dealstage`` and ``amount`` for stages and the initial amount, boolean deal properties with
history for outcomes. What HubSpot keeps in no standard property (personalization, sequence
step, a meeting's direction, product, department, custom fields) goes into custom properties
and is mapped back by the returned config.

The adapter reads calls, emails and meetings only, and a HubSpot export has no place for
some of the contract's facts (opens, clicks, unsubscribes, responses to meetings, a rep's
hire date, ...). Those are left out or approximated, each counted in
:attr:`HubSpotPortalExport.approximated` and listed in docs/crm.md ("Round trip").

The writer works on whole columns and writes one file at a time, without holding the JSON
of a whole object in memory: a 1M-activity history took 103 s at 2.7 GB peak on a loaded
2-core machine (docs/scale.md, "Importers at scale").
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from features import contract as c
from features.dataset import Dataset, load_dataset
from importers.crm.common import seniority_of, slug
from importers.crm.config import load_config
from importers.crm.sf_export import REGION_COUNTRY, REPLY_TEXT, export_as_of

logger = logging.getLogger(__name__)

# Numeric id bases, the shape of a portal's ids. Calls, emails and meetings are
# engagements: one id space, so an activity id never repeats across the three files.
ID_BASE = {
    "reps": 70_110_000, "users": 9_100_000, "teams": 412_000, "accounts": 20_510_000_000,
    "contacts": 51_000_000, "deals": 30_700_000_000, "activities": 45_100_000_000,
    "threads": 9_300_000_000, "sequences": 88_120_000, "stages": 160_000_000,
}
PIPELINE_ID = "default"
PIPELINE_LABEL = "Sales Pipeline"
MEETING_TYPES = {"meeting": "Discovery", "demo": "Demo", "workshop": "Workshop"}  # type -> hs_activity_type
ACTIVITY_OBJECTS = {"call": "calls", "email": "emails", **{t: "meetings" for t in MEETING_TYPES}}
REPLIES = ("replied", "positive_reply", "negative_reply")

# Call outcomes as `GET /calling/v1/dispositions` returns them: HubSpot's defaults (their
# GUIDs are HubSpot's own, shared/crm/CRM_EXPORTS.md 3.2) and three custom outcomes of the portal.
DISPOSITIONS = {
    "Busy": "9d9162e7-6cf3-4944-bf63-4dff82258764",
    "Connected": "f240bbac-87c9-4f6e-bf70-924b57d47db7",
    "Left live message": "a4c4c377-d246-4b32-a13b-75a56a4cd0ff",
    "Left voicemail": "b2cf5968-551e-4856-9783-52b3da59a7d0",
    "No answer": "73a0d17f-1163-4015-bdd5-ec830791da20",
    "Wrong number": "17b47fee-58de-441e-a44c-c6300d46f273",
    "Meeting booked": "5c0d8f2e-7a41-4e0b-9a77-0c5e2f3b8d11",
    "Not interested": "0e6b3c9a-2f71-4c8d-9b25-6a1d7e4f8c30",
    "Connected - not interested": "7a2d9e14-b3c6-4f05-8e71-c2a94d6b0f58",
}
# (connected, negative_reply, meeting_booked) -> the outcome the rep logs; the adapter's
# default `call_dispositions` rules read each label back as exactly these responses.
CALL_OUTCOME = {
    (True, False, False): "Connected",
    (False, True, False): "Not interested",
    (True, True, False): "Connected - not interested",
    (True, False, True): "Meeting booked",
}
NO_ANSWER = ("No answer", "Left voicemail", "Busy")  # calls without a result, in turn

# Custom properties of the portal (HubSpot has no standard property for these).
ACTIVITY_PROPS = {c.PERSONALIZATION: "personalization", c.SEQUENCE_STEP: "sequence_step"}
MEETING_DIRECTION = "activity_direction"  # calls and emails have a standard direction
DEAL_PRODUCT = "product_line"
CONTACT_PROPS = {c.DEPARTMENT: "department", c.SENIORITY: "seniority"}


@dataclass
class HubSpotPortalExport:
    """What :func:`to_hubspot_export` wrote.

    Attributes:
        directory: the export directory.
        ids: kind (``activities``, ``deals``, ``contacts``, ``accounts``, ``reps``) → original id → HubSpot id.
        config: adapter config (a mapping, also written as YAML by :meth:`write_config`).
        as_of: the export time to read it back with.
        approximated: what the export left out or could only approximate, with counts
            (e.g. ``responses not carried: opened``).
        files: object → the JSON files written for it.
    """

    directory: Path
    ids: dict[str, dict[str, str]]
    config: dict
    as_of: pd.Timestamp
    approximated: Counter = field(default_factory=Counter)
    files: dict[str, list[str]] = field(default_factory=dict)

    def original_ids(self, kind: str) -> dict[str, str]:
        """HubSpot id → original id, for one kind of :attr:`ids`."""
        return {v: k for k, v in self.ids[kind].items()}

    def write_config(self, path: Path | str) -> Path:
        """Write :attr:`config` as YAML (for ``import-crm hubspot --config``).

        Returns:
            The path written.
        """
        Path(path).write_text(yaml.safe_dump(self.config, sort_keys=False, allow_unicode=True), encoding="utf-8")
        return Path(path)


# --- values as HubSpot holds them: strings ------------------------------------------------

def _iso(values) -> np.ndarray:
    """UTC instants as ``2025-01-10T15:12:00.000Z`` (object array, None where missing)."""
    arr = pd.Series(values).dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[ms]")
    text = np.char.add(np.datetime_as_string(arr, unit="ms"), "Z").astype(object)
    text[np.isnat(arr)] = None
    return text


def _iso1(ts) -> str | None:
    """One instant as :func:`_iso` writes it."""
    if ts is None or pd.isna(ts):
        return None
    ts = pd.Timestamp(ts).tz_convert("UTC")
    return f"{ts:%Y-%m-%dT%H:%M:%S}.{ts.microsecond // 1000:03d}Z"


def _texts(values: pd.Series) -> np.ndarray:
    """A column as property strings (object array, None where missing).

    Floats keep their exact value (``repr``; whole numbers without ``.0``), booleans are
    ``true``/``false``, times ISO UTC, everything else ``str``.
    """
    if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(values):
        s = values if isinstance(values.dtype, pd.DatetimeTZDtype) else values.dt.tz_localize("UTC")
        return _iso(s)
    missing = values.isna().to_numpy(bool)
    if pd.api.types.is_bool_dtype(values):
        out = np.where(values.fillna(False).to_numpy(bool), "true", "false").astype(object)
    elif pd.api.types.is_float_dtype(values):
        floats = values.to_numpy("float64", na_value=np.nan)
        out = np.array([str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v) for v in floats.tolist()],
                       dtype=object) if len(floats) else np.array([], dtype=object)
    else:
        out = values.astype("string").fillna("").to_numpy(object)
    out[missing] = None
    return out


def _ids(kind: str, originals: pd.Series) -> dict[str, str]:
    """Original id → numeric HubSpot id (``ID_BASE[kind] + rank``), in order of first appearance."""
    unique = pd.unique(originals.dropna().astype(str).to_numpy(object))
    return {orig: str(ID_BASE[kind] + i + 1) for i, orig in enumerate(unique)}


def _lookup(mapping: dict[str, str], values: pd.Series | None, n: int) -> np.ndarray:
    """Map an id column through ``mapping`` (object array, None where missing)."""
    if values is None:
        return np.full(n, None, dtype=object)
    out = values.astype("string").map(mapping).to_numpy(object, na_value=None)
    return np.where(pd.isna(out), None, out).astype(object)


def _prop_name(column: str, taken: set[str]) -> str:
    """A custom property name for a contract custom column (snake case, never a standard property)."""
    name = slug(column) or "field"
    return f"custom_{name}" if name in taken else name


def _column(frame: pd.DataFrame, name: str, dtype: str = "object") -> pd.Series:
    if name in frame.columns:
        return frame[name]
    return pd.Series(pd.NA if dtype != "float64" else np.nan, index=frame.index, dtype=dtype)


# --- files -----------------------------------------------------------------------------

class _Pages:
    """Writes one object as files of API pages (``[{"results": [...], "paging": ...}, ...]``)."""

    def __init__(self, directory: Path, stem: str, *, per_page: int, per_file: int, total: int) -> None:
        self.directory, self.stem, self.per_page, self.per_file = directory, stem, per_page, per_file
        self.split = total > per_file
        self.files: list[str] = []
        self.buffer: list[dict] = []

    def add(self, records) -> None:
        for record in records:
            self.buffer.append(record)
            if len(self.buffer) >= self.per_file:
                self._flush()

    def close(self) -> list[str]:
        if self.buffer or not self.files:
            self._flush()
        return self.files

    def _flush(self) -> None:
        name = f"{self.stem}-{len(self.files) + 1:04d}.json" if self.split else f"{self.stem}.json"
        pages = []
        for start in range(0, len(self.buffer), self.per_page):
            page: dict = {"results": self.buffer[start:start + self.per_page]}
            if start + self.per_page < len(self.buffer) or self.split:
                last = page["results"][-1]["id"]
                page["paging"] = {"next": {"after": str(int(last) + 1)}}
            pages.append(page)
        with open(self.directory / name, "w", encoding="utf-8") as fh:
            json.dump(pages if pages else [{"results": []}], fh, separators=(",", ":"), ensure_ascii=False)
        self.files.append(name)
        self.buffer = []


def _write_json(directory: Path, name: str, data) -> str:
    with open(directory / name, "w", encoding="utf-8") as fh:
        json.dump(data, fh, separators=(",", ":"), ensure_ascii=False)
    return name


SINGULAR = {"calls": "call", "emails": "email", "meetings": "meeting", "contacts": "contact",
            "companies": "company", "deals": "deal"}


def _records(rows: np.ndarray, obj: str, props: dict[str, np.ndarray], hs_ids: np.ndarray,
             created: np.ndarray, assoc: dict[str, np.ndarray]):
    """Yield the API records of ``rows`` (positions into the column arrays).

    Args:
        rows: positions to write, in order.
        obj: the object (``calls``, ``contacts``, ...), for the association type names.
        props: property → values (None: not set, left out as the API leaves out unset properties).
        hs_ids: record ids; created: ``createdAt`` (also ``updatedAt``).
        assoc: associated object (``contacts``, ``companies``, ``deals``) → one id or None per row.
    """
    names = list(props)
    columns = [props[n] for n in names]
    types = {target: f"{SINGULAR[obj]}_to_{SINGULAR[target]}" for target in assoc}
    for i in rows.tolist():
        p = {"hs_object_id": hs_ids[i]}
        for name, values in zip(names, columns):
            v = values[i]
            if v is not None:
                p[name] = v
        record = {"id": hs_ids[i], "properties": p, "createdAt": created[i], "updatedAt": created[i],
                  "archived": False}
        links = {}
        for target, values in assoc.items():
            if values[i] is not None:
                links[target] = {"results": [{"id": values[i], "type": types[target]}]}
        if links:
            record["associations"] = links
        yield record


# --- the writer ----------------------------------------------------------------------------

def to_hubspot_export(
    dataset: Dataset | dict[str, pd.DataFrame] | Path | str,
    directory: Path | str,
    *,
    as_of: pd.Timestamp | str | None = None,
    records_per_file: int = 100_000,
    page_size: int = 100,
) -> HubSpotPortalExport:
    """Write contract tables as a HubSpot CRM API v3 export that the HubSpot adapter reads back.

    Args:
        dataset: a :class:`Dataset`, a dict of typed tables, or a dataset directory.
        directory: where to write the JSON files (created).
        as_of: export time (default: the latest timestamp in the tables).
        records_per_file: the most records of one object in one file; larger objects are
            split into ``<object>-0001.json``, ``<object>-0002.json``, ...
        page_size: records per API page inside a file (the API's maximum is 100; deals
            with history are written 50 to a page, as the API returns them).

    Returns:
        The id map, the adapter config, the export time and the counts of what was left
        out or approximated.

    Raises:
        ValueError: the activities have no rows, or an activity id repeats.
    """
    if isinstance(dataset, (str, Path)):
        dataset = load_dataset(Path(dataset))
    tables = dataset.tables if isinstance(dataset, Dataset) else dict(dataset)
    if records_per_file < 1 or page_size < 1:
        raise ValueError("records_per_file and page_size must be at least 1")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    approx: Counter = Counter()
    acts = tables[c.ACTIVITIES].reset_index(drop=True)
    if acts.empty:
        raise ValueError("activities: no rows to export")
    repeated = acts[c.ACTIVITY_ID].duplicated()
    if repeated.any():
        raise ValueError(f"activities.activity_id repeats ({int(repeated.sum())} rows, e.g. "
                         f"{acts.loc[repeated, c.ACTIVITY_ID].iloc[0]!r}): a HubSpot record has one id")
    empty = {name: pd.DataFrame(columns=c.TABLES[name].column_names) for name in (c.RESPONSES, c.DEAL_STAGES,
                                                                                 c.OUTCOMES)}
    responses = tables.get(c.RESPONSES, empty[c.RESPONSES])
    responses = responses[responses[c.ACTIVITY_ID].isin(set(acts[c.ACTIVITY_ID]))]
    stages = tables.get(c.DEAL_STAGES, empty[c.DEAL_STAGES])
    outcomes = tables.get(c.OUTCOMES, empty[c.OUTCOMES])
    deals = tables.get(c.DEALS)
    contacts = tables.get(c.CONTACTS)
    accounts = tables.get(c.ACCOUNTS)
    reps = tables.get(c.REPS)
    as_of = export_as_of(as_of, acts, responses, stages, outcomes)
    defaults = load_config()
    files: dict[str, list[str]] = {}
    hs_cfg: dict = {"fields": {}, "custom_fields": {}, "outcome_properties": {}}

    # --- ids -------------------------------------------------------------------------------
    deal_ids = pd.concat([s for s in (deals[c.DEAL_ID] if deals is not None else None, stages[c.DEAL_ID],
                                      outcomes[c.DEAL_ID], acts[c.DEAL_ID]) if s is not None], ignore_index=True)
    account_ids = pd.concat([s for s in (accounts[c.ACCOUNT_ID] if accounts is not None else None,
                                         contacts[c.ACCOUNT_ID] if contacts is not None else None,
                                         deals[c.ACCOUNT_ID] if deals is not None else None, acts[c.ACCOUNT_ID])
                             if s is not None], ignore_index=True)
    contact_ids = pd.concat([s for s in (contacts[c.CONTACT_ID] if contacts is not None else None,
                                         acts[c.CONTACT_ID]) if s is not None], ignore_index=True)
    rep_ids = pd.concat([s for s in (reps[c.REP_ID] if reps is not None else None, acts[c.REP_ID],
                                     deals[c.OWNER_REP_ID] if deals is not None else None) if s is not None],
                        ignore_index=True)
    maps = {"deals": _ids("deals", deal_ids), "accounts": _ids("accounts", account_ids),
            "contacts": _ids("contacts", contact_ids), "reps": _ids("reps", rep_ids)}

    # --- activities: what goes where -------------------------------------------------------------
    n = len(acts)
    kind = acts[c.TYPE].astype("string")
    direction = _column(acts, c.DIRECTION, "string").astype("string")
    is_call = kind.eq("call").fillna(False).to_numpy(bool)
    is_email = kind.eq("email").fillna(False).to_numpy(bool)
    email_in = is_email & direction.eq("inbound").fillna(False).to_numpy(bool)
    email_out = is_email & ~email_in
    is_meeting = kind.isin(list(MEETING_TYPES)).fillna(False).to_numpy(bool)
    written = is_call | email_out | is_meeting  # activities the adapter reads back as activities
    for t, k in kind[~written & ~email_in].value_counts().items():
        approx[f"activities of a type the adapter does not read (only calls, emails, meetings): {t}"] += int(k)
    approx["inbound emails (INCOMING_EMAIL: the adapter reads it as a reply, not an activity)"] += int(email_in.sum())
    hs_id = np.array([str(ID_BASE["activities"] + i + 1) for i in range(n)], dtype=object)
    maps["activities"] = {orig: hs_id[i] for i, orig in enumerate(acts[c.ACTIVITY_ID].astype(str).tolist())
                          if written[i]}
    occurred = acts[c.OCCURRED_AT]
    if (occurred.dt.nanosecond + occurred.dt.microsecond % 1000).ne(0).any():
        approx["times below a millisecond (the API holds milliseconds)"] += int(
            (occurred.dt.nanosecond + occurred.dt.microsecond % 1000).ne(0).sum())
    logged = acts[c.LOGGED_AT].fillna(occurred) if c.LOGGED_AT in acts else occurred
    no_logged = acts[c.LOGGED_AT].isna().to_numpy(bool) if c.LOGGED_AT in acts else np.ones(n, bool)
    approx["logged_at missing: hs_createdate = occurred_at"] += int((no_logged & written).sum())
    at_text, created_text = _iso(occurred), _iso(logged)
    occurred_ns = occurred.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[ns]")
    automated = _column(acts, c.IS_AUTOMATED, "boolean").astype("boolean").fillna(False).to_numpy(bool)
    approx["automated calls and meetings (only emails carry hs_sequence_id)"] += int(
        (automated & (is_call | is_meeting)).sum())
    duration = _column(acts, c.DURATION_S, "float64").astype("float64").to_numpy()
    approx["durations of emails (only calls and meetings have one)"] += int((is_email & ~np.isnan(duration)).sum())
    approx["emails without direction: sent emails, read back as outbound"] += int(
        (email_out & direction.isna().to_numpy(bool)).sum())

    # --- responses: the first of each kind per activity -------------------------------------------
    first = responses.sort_values(c.OCCURRED_AT, kind="stable").drop_duplicates([c.ACTIVITY_ID, c.RESPONSE])
    approx["repeated responses of an activity (the adapter keeps the first)"] += len(responses) - len(first)
    position = pd.Series(np.arange(n), index=acts[c.ACTIVITY_ID].astype(str))
    r_pos = first[c.ACTIVITY_ID].astype(str).map(position).to_numpy(np.int64)
    r_kind = first[c.RESPONSE].astype(str).to_numpy(object)
    r_at = pd.to_datetime(first[c.OCCURRED_AT], utc=True).dt.tz_localize(None).to_numpy("datetime64[ns]")

    def at_of(response: str) -> np.ndarray:
        """Per activity, when its ``response`` happened (NaT: never)."""
        out_at = np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")
        hit = r_kind == response
        out_at[r_pos[hit]] = r_at[hit]
        return out_at

    carried = np.zeros(len(first), dtype=bool)
    by_kind = {k: r_kind == k for k in set(r_kind.tolist())}

    def carry(mask: np.ndarray, timing: str | None = None) -> None:
        nonlocal carried
        carried |= mask
        if timing:
            approx[timing] += int((mask & (r_at != occurred_ns[r_pos])).sum())

    none = np.zeros(len(first), dtype=bool)
    on_call, on_out, on_meeting = is_call[r_pos], email_out[r_pos], is_meeting[r_pos]
    # a call has one outcome: connected, not interested, both, or booked (which says connected);
    # booked without connected, or booked and not interested, has none that says so
    connected = ~np.isnat(at_of("connected"))
    booked = ~np.isnat(at_of("meeting_booked")) & connected
    negative = ~np.isnat(at_of("negative_reply")) & ~booked
    carry(on_call & ((by_kind.get("connected", none)) | (by_kind.get("negative_reply", none) & negative[r_pos])
                     | (by_kind.get("meeting_booked", none) & booked[r_pos])), "call outcomes at the call's time")
    carry(on_out & by_kind.get("bounced", none), "bounced at the send time")
    after_send = r_at > occurred_ns[r_pos]
    reply_rows = on_out & np.isin(r_kind, REPLIES) & after_send
    carry(reply_rows)
    carry(on_meeting & by_kind.get("no_show", none), "no_show at the meeting's start")
    lost = ~carried
    if lost.any():
        types = kind.fillna("?").to_numpy(object)[r_pos]
        where = np.where(written[r_pos], types, np.char.add(types.astype(str), ", not written").astype(object))
        frame = pd.DataFrame({"r": r_kind[lost], "w": where[lost]})
        for (resp, w), k in frame.groupby(["r", "w"]).size().items():
            approx[f"responses not carried: {resp} ({w})"] += int(k)

    # --- shared activity columns -----------------------------------------------------------------
    owner = _lookup(maps["reps"], acts[c.REP_ID], n)
    contact = _lookup(maps["contacts"], acts[c.CONTACT_ID], n)
    company = _lookup(maps["accounts"], acts[c.ACCOUNT_ID], n)
    deal = _lookup(maps["deals"], acts[c.DEAL_ID], n)
    assoc = {"contacts": contact, "companies": company, "deals": deal}
    common = {"hs_timestamp": at_text, "hs_createdate": created_text, "hs_lastmodifieddate": created_text,
              "hubspot_owner_id": owner}
    act_fields = {}
    for column, prop in ACTIVITY_PROPS.items():
        if column in acts.columns:
            common[prop] = _texts(acts[column])
            act_fields[column] = prop
    if c.DIRECTION in acts.columns:
        act_fields[c.DIRECTION] = MEETING_DIRECTION
    standard = {"hs_timestamp", "hs_createdate", "hs_lastmodifieddate", "hubspot_owner_id", "hs_object_id",
                *ACTIVITY_PROPS.values(), MEETING_DIRECTION}
    act_custom = {col: _prop_name(col, standard) for col in acts.columns
                  if col not in c.TABLES[c.ACTIVITIES].column_names}
    for col, prop in act_custom.items():
        common[prop] = _texts(acts[col])
    hs_cfg["fields"][c.ACTIVITIES] = act_fields
    if act_custom:
        hs_cfg["custom_fields"][c.ACTIVITIES] = {prop: col for col, prop in act_custom.items()}

    # --- calls ------------------------------------------------------------------------------------
    code = list(zip(connected.tolist(), negative.tolist(), booked.tolist()))
    labels = np.array([CALL_OUTCOME.get(k, NO_ANSWER[i % 3]) for i, k in enumerate(code)], dtype=object)
    with np.errstate(invalid="ignore"):
        ms = np.round(duration * 1000.0)
    approx["durations below a millisecond"] += int(
        ((is_call | is_meeting) & ~np.isnan(duration) & (ms / 1000.0 != duration)).sum())
    call_props = {
        **common,
        "hs_call_title": np.full(n, "Call", dtype=object),
        "hs_call_direction": np.array([{"inbound": "INBOUND", "outbound": "OUTBOUND"}.get(d) for d in
                                       direction.to_numpy(object, na_value=None)], dtype=object),
        "hs_call_duration": np.array([None if np.isnan(v) else str(int(v)) for v in ms.tolist()], dtype=object),
        "hs_call_status": np.full(n, "COMPLETED", dtype=object),
        "hs_call_disposition": np.array([DISPOSITIONS[label] for label in labels.tolist()], dtype=object),
        "hs_call_callee_object_id": contact,
        "hs_call_callee_object_type": np.where(pd.isna(contact), None, "CONTACT").astype(object),
    }
    rows = np.flatnonzero(is_call)
    pages = _Pages(out, "calls", per_page=page_size, per_file=records_per_file, total=len(rows))
    pages.add(_records(rows, "calls", call_props, hs_id, created_text, assoc))
    files["calls"] = pages.close()

    # --- emails: sent ones, inbound ones, and the replies to sent ones ---------------------------
    thread = np.array([str(ID_BASE["threads"] + i + 1) for i in range(n)], dtype=object)
    bounced = ~np.isnat(at_of("bounced")) & email_out
    seq_of_rep = {r: str(ID_BASE["sequences"] + i + 1) for i, r in enumerate(maps["reps"].values())}
    email_props = {
        **common,
        "hs_email_direction": np.where(email_in, "INCOMING_EMAIL", "EMAIL").astype(object),
        "hs_email_status": np.where(email_in, None, np.where(bounced, "BOUNCED", "SENT")).astype(object),
        "hs_email_subject": np.where(email_in, "Question", "Following up").astype(object),
        "hs_email_thread_id": thread,
        "hs_sequence_id": np.array([seq_of_rep.get(o, str(ID_BASE["sequences"])) if a and not i else None
                                    for o, a, i in zip(owner.tolist(), automated.tolist(), email_in.tolist())],
                                   dtype=object),
    }
    rows = np.flatnonzero(is_email)
    reply_pos, reply_kind_ = r_pos[reply_rows], r_kind[reply_rows]
    n_replies = len(reply_pos)
    pages = _Pages(out, "emails", per_page=page_size, per_file=records_per_file, total=len(rows) + n_replies)
    pages.add(_records(rows, "emails", email_props, hs_id, created_text, assoc))
    if n_replies:
        reply_text = _iso(pd.Series(r_at[reply_rows]).dt.tz_localize("UTC"))
        reply_ids = np.array([str(ID_BASE["activities"] + n + k + 1) for k in range(n_replies)], dtype=object)
        reply_props = {
            "hs_timestamp": reply_text, "hs_createdate": reply_text, "hs_lastmodifieddate": reply_text,
            "hubspot_owner_id": owner[reply_pos], "hs_email_direction": np.full(n_replies, "INCOMING_EMAIL", dtype=object),
            "hs_email_subject": np.full(n_replies, "RE: Following up", dtype=object),
            "hs_email_text": np.array([REPLY_TEXT[k] for k in reply_kind_.tolist()], dtype=object),
            "hs_email_thread_id": thread[reply_pos],
        }
        reply_assoc = {k: v[reply_pos] for k, v in assoc.items()}
        pages.add(_records(np.arange(n_replies), "emails", reply_props, reply_ids, reply_text, reply_assoc))
    files["emails"] = pages.close()

    # --- meetings ---------------------------------------------------------------------------------
    no_show = ~np.isnat(at_of("no_show")) & is_meeting
    span = (np.nan_to_num(ms) * 1_000_000).astype(np.int64).astype("timedelta64[ns]")
    end = pd.Series(occurred_ns + span).dt.tz_localize("UTC")
    end_text = _iso(end)
    end_text[np.isnan(duration)] = None
    meeting_props = {
        **common,
        "hs_meeting_title": np.array([f"{MEETING_TYPES.get(k, 'Meeting')}" for k in kind.fillna("").tolist()],
                                     dtype=object),
        "hs_meeting_start_time": at_text,
        "hs_meeting_end_time": end_text,
        "hs_meeting_outcome": np.where(no_show, "NO_SHOW", "COMPLETED").astype(object),
        "hs_activity_type": np.array([MEETING_TYPES.get(k) for k in kind.fillna("").tolist()], dtype=object),
        MEETING_DIRECTION: _texts(direction),
    }
    rows = np.flatnonzero(is_meeting)
    pages = _Pages(out, "meetings", per_page=page_size, per_file=records_per_file, total=len(rows))
    pages.add(_records(rows, "meetings", meeting_props, hs_id, created_text, assoc))
    files["meetings"] = pages.close()
    hs_cfg["meeting_types"] = {label: t for t, label in MEETING_TYPES.items() if t != "meeting"}
    files["call_dispositions"] = [_write_json(out, "call_dispositions.json",
                                              [{"id": guid, "label": label} for label, guid in DISPOSITIONS.items()])]

    # --- pipeline, deals, stage history, outcomes ---------------------------------------------------
    won_stages: set[str] = set()
    if deals is not None and len(stages):
        closers = stages.merge(deals[[c.DEAL_ID, c.CLOSED_AT, c.WON]], on=c.DEAL_ID)
        closers = closers[closers[c.WON].fillna(False).astype(bool) & (closers[c.ENTERED_AT] == closers[c.CLOSED_AT])]
        won_stages = set(closers[c.STAGE])
    won_outcomes = outcomes[outcomes[c.OUTCOME] == "closed_won"]
    if len(won_outcomes) and len(stages):
        hit = stages.merge(won_outcomes[[c.DEAL_ID, c.OCCURRED_AT]], on=c.DEAL_ID)
        won_stages |= set(hit[hit[c.ENTERED_AT] == hit[c.OCCURRED_AT]][c.STAGE])
    order_of = stages.groupby(c.STAGE)[c.STAGE_ORDER].agg(lambda s: s.mode().iloc[0]).to_dict() if len(stages) else {}
    open_names = sorted((s for s, o in order_of.items() if o != c.CLOSED_LOST_ORDER and s not in won_stages),
                        key=lambda s: (order_of[s], s))
    lost_names = sorted(s for s, o in order_of.items() if o == c.CLOSED_LOST_ORDER and s not in won_stages)
    k_open = len(open_names)
    stage_list = ([(s, False, round((i + 1) / (k_open + 1), 2)) for i, s in enumerate(open_names)]
                  + [(s, True, 1.0) for s in sorted(won_stages)] + [(s, True, 0.0) for s in lost_names])
    stage_id = {s: str(ID_BASE["stages"] + i + 1) for i, (s, _, _) in enumerate(stage_list)}
    dense = {s: i + 1 for i, s in enumerate(open_names)} | {s: k_open + 1 for s in won_stages} | {
        s: c.CLOSED_LOST_ORDER for s in lost_names}
    if len(stages):
        approx["stage_order not 1..k of the open stages: read back as their rank"] += int(
            (stages[c.STAGE].map(dense).astype("Int64") != stages[c.STAGE_ORDER].astype("Int64")).fillna(True).sum())
    pipeline = {"id": PIPELINE_ID, "label": PIPELINE_LABEL, "displayOrder": 0, "archived": False,
                "createdAt": _iso1(as_of - pd.Timedelta(days=3650)), "updatedAt": _iso1(as_of),
                "stages": [{"id": stage_id[s], "label": s, "displayOrder": i, "archived": False,
                            "metadata": {"isClosed": "true" if closed else "false", "probability": str(p)}}
                           for i, (s, closed, p) in enumerate(stage_list)]}
    files["pipelines"] = [_write_json(out, "pipelines_deals.json", {"results": [pipeline]})]
    if len(won_outcomes):
        first_won = stages[stages[c.STAGE].isin(won_stages)].groupby(c.DEAL_ID)[c.ENTERED_AT].min()
        derived = won_outcomes[c.DEAL_ID].map(first_won)
        approx["closed_won outcomes not at the first entry into a won stage"] += int(
            (derived != won_outcomes[c.OCCURRED_AT]).fillna(True).sum())

    deal_order = list(maps["deals"])
    info = deals.drop_duplicates(c.DEAL_ID).set_index(c.DEAL_ID) if deals is not None else None
    path_of: dict[str, list[tuple]] = {}
    if len(stages):
        ordered = stages.sort_values([c.DEAL_ID, c.ENTERED_AT], kind="stable")
        for d, s, t in zip(ordered[c.DEAL_ID].astype(str), ordered[c.STAGE].astype(str), ordered[c.ENTERED_AT]):
            path_of.setdefault(d, []).append((s, t))
    first_touch = acts.groupby(c.DEAL_ID)[c.OCCURRED_AT].min() if acts[c.DEAL_ID].notna().any() else pd.Series(dtype=object)
    props_of_outcome: dict[str, str] = {}
    outcome_hist: dict[tuple[str, str], list[pd.Timestamp]] = {}
    others = outcomes[outcomes[c.OUTCOME] != "closed_won"]
    for d, o, t in zip(others[c.DEAL_ID].astype(str), others[c.OUTCOME].astype(str), others[c.OCCURRED_AT]):
        if o not in props_of_outcome:
            taken = {"dealstage", "amount", "pipeline", DEAL_PRODUCT, *props_of_outcome.values()}
            prop = _prop_name(o, taken)
            props_of_outcome[o] = prop if prop not in taken else f"{prop}_{len(props_of_outcome) + 1}"
        outcome_hist.setdefault((d, props_of_outcome[o]), []).append(t)
    hs_cfg["outcome_properties"] = {prop: o for o, prop in props_of_outcome.items()}
    if c.CONTACT_ID in outcomes:
        approx["outcome contact_id (a deal property records no contact)"] += int(outcomes[c.CONTACT_ID].notna().sum())
    deal_custom = {col: _prop_name(col, {"dealstage", "amount", "pipeline", DEAL_PRODUCT, *props_of_outcome.values()})
                   for col in (deals.columns if deals is not None else []) if col not in c.TABLES[c.DEALS].column_names}
    if deal_custom:
        hs_cfg["custom_fields"][c.DEALS] = {prop: col for col, prop in deal_custom.items()}
    hs_cfg["fields"][c.DEALS] = {c.PRODUCT: DEAL_PRODUCT}
    custom_text = {col: dict(zip(info.index.astype(str), _texts(info[col]))) for col in deal_custom} if info is not None else {}
    product_text = dict(zip(info.index.astype(str), _texts(info[c.PRODUCT]))) if info is not None and c.PRODUCT in info else {}
    amount_text = dict(zip(info.index.astype(str), _texts(info[c.AMOUNT]))) if info is not None and c.AMOUNT in info else {}
    deal_pages = _Pages(out, "deals", per_page=min(page_size, 50), per_file=records_per_file, total=len(deal_order))
    no_history = 0
    for d in deal_order:
        hid = maps["deals"][d]
        row = info.loc[d] if info is not None and d in info.index else None
        path = path_of.get(d)
        created = row[c.CREATED_AT] if row is not None and pd.notna(row[c.CREATED_AT]) else (
            path[0][1] if path else first_touch.get(d, as_of))
        if row is None or pd.isna(row[c.CREATED_AT]):
            approx["deals without created_at: createdate = first stage entry or activity"] += 1
        last = path[-1] if path else None
        closed = last is not None and (order_of.get(last[0]) == c.CLOSED_LOST_ORDER or last[0] in won_stages)
        won = closed and last[0] in won_stages
        created_iso = _iso1(created)
        props = {"hs_object_id": hid, "dealname": f"Deal {d}", "pipeline": PIPELINE_ID,
                 "dealstage": stage_id[last[0]] if last else None, "amount": amount_text.get(d),
                 "createdate": created_iso, "closedate": _iso1(last[1] if closed else created + pd.Timedelta(days=90)),
                 "hubspot_owner_id": maps["reps"].get(str(row[c.OWNER_REP_ID])) if row is not None and pd.notna(
                     row[c.OWNER_REP_ID]) else None,
                 "hs_is_closed": "true" if closed else "false", "hs_is_closed_won": "true" if won else "false",
                 DEAL_PRODUCT: product_text.get(d)}
        history: dict[str, list] = {}
        if path:
            history["dealstage"] = [{"value": stage_id[s], "timestamp": _iso1(t), "sourceType": "CRM_UI"}
                                    for s, t in reversed(path)]
        else:
            no_history += 1
        if props["amount"] is not None:
            history["amount"] = [{"value": props["amount"], "timestamp": created_iso, "sourceType": "CRM_UI"}]
        for prop in props_of_outcome.values():
            times = outcome_hist.get((d, prop), [])
            history[prop] = [{"value": "true", "timestamp": _iso1(t), "sourceType": "CRM_UI"}
                             for t in sorted(times, reverse=True)]
            props[prop] = "true" if times else None
        for col, prop in deal_custom.items():
            props[prop] = custom_text[col].get(d)
        updated = max([created, *(t for _, t in path or [])])
        record = {"id": hid, "properties": {k: v for k, v in props.items() if v is not None},
                  "propertiesWithHistory": history, "createdAt": created_iso, "updatedAt": _iso1(updated),
                  "archived": False}
        account = maps["accounts"].get(str(row[c.ACCOUNT_ID])) if row is not None and pd.notna(row[c.ACCOUNT_ID]) else None
        if account:
            record["associations"] = {"companies": {"results": [{"id": account, "type": "deal_to_company"}]}}
        deal_pages.add([record])
    files["deals"] = deal_pages.close() if deal_order else []
    approx["deals without stage history"] += no_history

    # --- contacts, companies, owners ------------------------------------------------------------------
    if contacts is not None:
        m = len(contacts)
        derived = seniority_of(contacts[c.TITLE], defaults)
        disagree = contacts[c.SENIORITY].notna() & (derived != contacts[c.SENIORITY]).fillna(True)
        fields = {c.DEPARTMENT: CONTACT_PROPS[c.DEPARTMENT]}
        if disagree.any():
            fields[c.SENIORITY] = CONTACT_PROPS[c.SENIORITY]
            approx["seniority not derivable from the title: the seniority property"] += int(disagree.sum())
        hs_cfg["fields"][c.CONTACTS] = fields
        standard = {"firstname", "lastname", "email", "jobtitle", "associatedcompanyid", *CONTACT_PROPS.values()}
        custom = {col: _prop_name(col, standard) for col in contacts.columns
                  if col not in c.TABLES[c.CONTACTS].column_names}
        if custom:
            hs_cfg["custom_fields"][c.CONTACTS] = {prop: col for col, prop in custom.items()}
        ids = _lookup(maps["contacts"], contacts[c.CONTACT_ID], m)
        company_of = _lookup(maps["accounts"], contacts[c.ACCOUNT_ID], m)
        props = {"firstname": np.full(m, "Pat", dtype=object), "lastname": _texts(contacts[c.CONTACT_ID]),
                 "email": np.array([f"{slug(x) or 'contact'}@example.invalid" for x in contacts[c.CONTACT_ID].astype(str)],
                                   dtype=object),
                 "jobtitle": _texts(contacts[c.TITLE]), "associatedcompanyid": company_of,
                 CONTACT_PROPS[c.DEPARTMENT]: _texts(_column(contacts, c.DEPARTMENT)),
                 CONTACT_PROPS[c.SENIORITY]: _texts(contacts[c.SENIORITY]),
                 **{prop: _texts(contacts[col]) for col, prop in custom.items()}}
        created = np.full(m, _iso1(acts[c.OCCURRED_AT].min() - pd.Timedelta(days=30)), dtype=object)
        pages = _Pages(out, "contacts", per_page=page_size, per_file=records_per_file, total=m)
        pages.add(_records(np.arange(m), "contacts", props, ids, created, {"companies": company_of}))
        files["contacts"] = pages.close()
    region_cfg = None
    if accounts is not None:
        m = len(accounts)
        regions = sorted(set(accounts[c.REGION].dropna().astype(str)))
        country = {r: REGION_COUNTRY.get(r, r) for r in regions}
        unusual = {r: [country[r]] for r in regions if r not in REGION_COUNTRY}
        if unusual:
            region_cfg = {**{k: list(v) for k, v in defaults.regions.items()}, **unusual}
        standard = {"name", "domain", "industry", "numberofemployees", "country"}
        custom = {col: _prop_name(col, standard) for col in accounts.columns
                  if col not in c.TABLES[c.ACCOUNTS].column_names}
        if custom:
            hs_cfg["custom_fields"][c.ACCOUNTS] = {prop: col for col, prop in custom.items()}
        industry = accounts[c.INDUSTRY].dropna().astype(str)
        approx["industry not a slug (an enumeration value): read back as its slug"] += int(
            sum(slug(x) != x for x in industry.tolist()))
        ids = _lookup(maps["accounts"], accounts[c.ACCOUNT_ID], m)
        props = {"name": np.array([f"Account {x}" for x in accounts[c.ACCOUNT_ID].astype(str)], dtype=object),
                 "industry": np.array([None if x is None else (slug(x) or "").upper() or None
                                       for x in _texts(accounts[c.INDUSTRY])], dtype=object),
                 "numberofemployees": _texts(accounts[c.EMPLOYEES]),
                 "country": np.array([None if r is None else country.get(r) for r in _texts(accounts[c.REGION])],
                                     dtype=object),
                 **{prop: _texts(accounts[col]) for col, prop in custom.items()}}
        created = np.full(m, _iso1(acts[c.OCCURRED_AT].min() - pd.Timedelta(days=60)), dtype=object)
        pages = _Pages(out, "companies", per_page=page_size, per_file=records_per_file, total=m)
        pages.add(_records(np.arange(m), "companies", props, ids, created, {}))
        files["companies"] = pages.close()

    team_of = dict(zip(reps[c.REP_ID].astype(str), reps[c.TEAM])) if reps is not None and c.TEAM in reps else {}
    team_ids = {t: str(ID_BASE["teams"] + i + 1) for i, t in enumerate(sorted({str(t) for t in team_of.values()
                                                                              if pd.notna(t)}))}
    owners = []
    for i, (rep, oid) in enumerate(maps["reps"].items()):
        team = team_of.get(rep)
        owners.append({"id": oid, "email": f"{slug(rep) or 'rep'}@example.invalid", "firstName": "Rep",
                       "lastName": rep, "userId": ID_BASE["users"] + i + 1, "archived": False,
                       "teams": [{"id": team_ids[str(team)], "name": str(team), "primary": True}] if pd.notna(team) else []})
    files["owners"] = [_write_json(out, "owners.json", {"results": owners})]
    if reps is not None:
        if c.HIRED_AT in reps:
            approx["reps.hired_at (owners have no hire date)"] += int(reps[c.HIRED_AT].notna().sum())
        in_use = set(acts.loc[written, c.REP_ID].dropna().astype(str))
        if deals is not None:
            in_use |= set(deals[c.OWNER_REP_ID].dropna().astype(str))
        approx["reps who own no written activity or deal (the adapter's reps are owners in use)"] += int(
            (~reps[c.REP_ID].astype(str).isin(in_use)).sum())
        rep_custom = [col for col in reps.columns if col not in c.TABLES[c.REPS].column_names]
        approx["reps custom fields (owners have no custom properties)"] += len(rep_custom) * len(reps)

    config = {"inbound_email": "response", "booking_window_days": 0, "reply_window_days": 0, "hubspot": hs_cfg}
    if region_cfg:
        config["regions"] = region_cfg
    approx = Counter({k: v for k, v in approx.items() if v})
    logger.info("wrote a HubSpot export of %d calls, %d emails (%d replies), %d meetings to %s", int(is_call.sum()),
                int(is_email.sum()), n_replies, int(is_meeting.sum()), out)
    return HubSpotPortalExport(out, maps, config, as_of, approx, files)


__all__ = ["HubSpotPortalExport", "to_hubspot_export"]
