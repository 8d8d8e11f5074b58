"""Rules shared by the Salesforce and HubSpot adapters.

Both adapters turn their export into the same intermediate frames (contract columns,
typed) and hand them to the functions here for the parts that do not depend on the
CRM: stage runs, closing, bookings, reply sentiment, seniority, regions, and the final
typed tables.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features import contract as c
from features.dataset import coerce_table
from importers.crm.config import CrmConfig
from importers.crm.errors import CrmInputError
from importers.crm.report import ConversionReport, StageMapping

logger = logging.getLogger(__name__)

ROW = "_row"  # per-row label used in error messages ("Task.csv row 7")


@dataclass
class Conversion:
    """The tables built from one export, and the report of how."""

    tables: dict[str, pd.DataFrame]
    report: ConversionReport


# --- reading -----------------------------------------------------------------------

def read_csv_export(path: Path) -> pd.DataFrame:
    """One CSV as strings with lower-cased headers (CRM headers vary in case).

    Adds ``_row``: ``"<file> row N"`` (1-based data row) for error messages.
    """
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8-sig")
    except UnicodeDecodeError:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="cp1252")
    except pd.errors.ParserError as err:
        raise CrmInputError(f"{path.name}: not a readable CSV file: {err}") from err
    except pd.errors.EmptyDataError:
        frame = pd.DataFrame()
    original = [str(col).strip() for col in frame.columns]
    lowered = [col.lower() for col in original]
    dupes = sorted({col for col in lowered if lowered.count(col) > 1})
    if dupes:
        raise CrmInputError(f"{path.name}: duplicate columns (headers are case-insensitive): {', '.join(dupes)}")
    frame.columns = lowered
    frame = frame.reset_index(drop=True)
    frame.attrs["headers"] = dict(zip(lowered, original))
    frame[ROW] = [f"{path.name} row {i + 1}" for i in range(len(frame))]
    return frame


def find_by_stem(directory: Path, suffixes: tuple[str, ...] = (".csv",)) -> dict[str, Path]:
    """Files of ``directory`` keyed by lower-cased stem (``Task.csv`` → ``task``)."""
    out: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if path.is_file() and path.suffix.lower() in suffixes:
            out.setdefault(path.stem.lower(), path)
    return out


def col(frame: pd.DataFrame, name: str) -> pd.Series:
    """Column ``name`` (case-insensitive) as strings, or an all-missing column."""
    key = name.lower()
    if key in frame.columns:
        s = frame[key].astype("string").str.strip()
        return s.mask(s == "")
    return pd.Series(pd.NA, index=frame.index, dtype="string")


def has_col(frame: pd.DataFrame, name: str) -> bool:
    return name.lower() in frame.columns


# --- text rules --------------------------------------------------------------------

def slug(value: object) -> str | None:
    """``Food & Beverage`` / ``FOOD_BEVERAGE`` → ``food_beverage`` (labels and values agree)."""
    if value is None or value is pd.NA or (isinstance(value, float) and pd.isna(value)):
        return None
    text = unicodedata.normalize("NFKD", str(value)).encode("ascii", "ignore").decode()
    text = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return text or None


def seniority_of(titles: pd.Series, cfg: CrmConfig) -> pd.Series:
    """Seniority from a job title with the config's ordered patterns."""
    compiled = [(level, [re.compile(p, re.IGNORECASE) for p in pats]) for level, pats in cfg.seniority.items()]

    def one(title: object) -> str:
        if title is None or title is pd.NA or (isinstance(title, float) and pd.isna(title)) or not str(title).strip():
            return "unknown"
        for level, patterns in compiled:
            if any(p.search(str(title)) for p in patterns):
                return level
        return "individual_contributor"

    return pd.Series([one(t) for t in titles.tolist()], index=titles.index, dtype="string")


def region_of(countries: pd.Series, cfg: CrmConfig, report: ConversionReport, where: str) -> pd.Series:
    """Region label for each country name or ISO code (unknown → empty, reported)."""
    lookup = {name.strip().lower(): region for region, names in cfg.regions.items() for name in names}
    keys = countries.astype("string").str.strip().str.lower()
    out = pd.Series([lookup.get(k) if isinstance(k, str) else None for k in keys.tolist()],
                    index=countries.index, dtype="string")
    unknown = sorted(set(countries[keys.notna() & out.isna()].astype(str)))
    if unknown:
        report.warn(f"{where}: no region for countries {', '.join(unknown[:8])}; add them to `regions` in the config")
    return out


def disposition_responses(text: object, cfg: CrmConfig) -> tuple[str, ...]:
    """Responses a call result (free text or an outcome label) stands for."""
    if text is None or text is pd.NA or (isinstance(text, float) and pd.isna(text)):
        return ()
    out: list[str] = []
    for rule in cfg.call_dispositions:
        if re.search(rule.match, str(text), re.IGNORECASE):
            out.extend(r for r in rule.responses if r not in out)
            if rule.stop:
                break
    return tuple(out)


def reply_kind(text: object, cfg: CrmConfig) -> str:
    """``negative_reply``, ``positive_reply`` or ``replied`` from a reply's text."""
    if text is None or text is pd.NA or (isinstance(text, float) and pd.isna(text)):
        return "replied"
    body = re.sub(r"<[^>]+>", " ", str(text))
    if any(re.search(p, body, re.IGNORECASE) for p in cfg.negative_reply_patterns):
        return "negative_reply"
    if any(re.search(p, body, re.IGNORECASE) for p in cfg.positive_reply_patterns):
        return "positive_reply"
    return "replied"


# --- stages --------------------------------------------------------------------------

@dataclass(frozen=True)
class StageInfo:
    name: str
    order: int
    closed: bool
    won: bool


def resolve_stage_map(cfg: CrmConfig, known: dict[str, StageInfo]) -> dict[str, StageInfo]:
    """``stage_map`` entries as StageInfo, keyed by lower-cased name/id."""
    out: dict[str, StageInfo] = {}
    for name, target in cfg.stage_map.items():
        if isinstance(target, str):
            info = known.get(target.lower())
            if info is None:
                raise CrmInputError(
                    f"config {cfg.source}: stage_map[{name!r}] points at {target!r}, which is not a stage of the export"
                )
            out[str(name).lower()] = info
        else:
            spec = target if isinstance(target, dict) else {"order": int(target)}
            order = int(spec["order"])
            won = bool(spec.get("won", False))
            closed = bool(spec.get("closed", won or order == c.CLOSED_LOST_ORDER))
            out[str(name).lower()] = StageInfo(str(name), order, closed, won)
    return out


def stage_runs(history: pd.DataFrame) -> pd.DataFrame:
    """Keep a history row only when the stage differs from the deal's previous row.

    ``history`` has deal_id, stage, entered_at and a tie-breaker ``_seq``; repeats come
    from amount or close-date edits (Salesforce writes a row for each). Genuine
    re-entries (A → B → A) are kept.
    """
    if history.empty:
        return history
    ordered = history.sort_values([c.DEAL_ID, c.ENTERED_AT, "_seq"], kind="stable").reset_index(drop=True)
    same_deal = ordered[c.DEAL_ID].eq(ordered[c.DEAL_ID].shift())
    same_stage = ordered[c.STAGE].eq(ordered[c.STAGE].shift())
    keep = ~(same_deal & same_stage)
    return ordered[keep.to_numpy(bool)].reset_index(drop=True)


def closing_and_outcomes(
    stages: pd.DataFrame, cfg: CrmConfig, as_of: pd.Timestamp
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per deal: closing time and result from the stage path; plus stage outcomes.

    ``stages`` (deduplicated runs) has deal_id, stage, entered_at, _closed, _won.
    - ``closed_at``/``won``: the entry into the closed stage the deal ends in (empty if
      it ends open) — never the CRM's typed close date.
    - ``closed_won`` outcome at the *first* entry into a won stage; configured stage
      outcomes at the first entry into their stage.

    Column operations over every deal at once (deals in order of first appearance, each
    path by ``entered_at``, ties in file order), the rows in the order a loop over deals gives.
    """
    closing_cols, outcome_cols = [c.DEAL_ID, c.CLOSED_AT, c.WON], [c.DEAL_ID, c.OUTCOME, c.OCCURRED_AT]
    stage_outcomes = {k.lower(): v for k, v in cfg.stage_outcomes.items()}
    s = stages[stages[c.DEAL_ID].notna()]
    if s.empty:
        return pd.DataFrame([], columns=closing_cols), pd.DataFrame([], columns=outcome_cols)
    deal_rank = pd.factorize(s[c.DEAL_ID])[0]
    entered = s[c.ENTERED_AT]
    at = entered.to_numpy(dtype="datetime64[ns]", na_value=np.datetime64("NaT")).astype(np.int64)
    at = np.where(entered.isna().to_numpy(), np.iinfo(np.int64).max, at)  # NaT last, as sort_values puts it
    order = np.lexsort((np.arange(len(s)), at, deal_rank))
    path = s.iloc[order]
    rank = deal_rank[order]
    deals = path[c.DEAL_ID].tolist()
    times = path[c.ENTERED_AT].tolist()
    closed = path["_closed"].astype(bool).to_numpy()
    won = path["_won"].astype(bool).to_numpy()
    last = np.flatnonzero(np.r_[rank[1:] != rank[:-1], True])
    closing = pd.DataFrame({c.DEAL_ID: [deals[i] for i in last if closed[i]],
                            c.CLOSED_AT: [times[i] for i in last if closed[i]],
                            c.WON: [bool(won[i]) for i in last if closed[i]]}, columns=closing_cols)
    if closing.empty:
        closing = pd.DataFrame([], columns=closing_cols)
    # per deal: closed_won at the first won entry, then configured stage outcomes in path order
    w = np.flatnonzero(won)
    first_won = w[np.r_[True, rank[w][1:] != rank[w][:-1]]] if len(w) else w
    named = path[c.STAGE].map(lambda v: stage_outcomes.get(str(v).lower())).to_numpy(object)
    staged = np.flatnonzero(pd.notna(named) & (named != None))  # noqa: E711
    keys = np.concatenate([rank[first_won], rank[staged]])
    kind = np.r_[np.zeros(len(first_won), dtype=np.int64), np.ones(len(staged), dtype=np.int64)]
    pos = np.concatenate([first_won, staged])
    rows = np.lexsort((pos, kind, keys))
    idx, is_stage = pos[rows], kind[rows] == 1
    outcomes = pd.DataFrame({c.DEAL_ID: [deals[i] for i in idx],
                             c.OUTCOME: [named[i] if st else "closed_won" for i, st in zip(idx, is_stage, strict=True)],
                             c.OCCURRED_AT: [times[i] for i in idx]}, columns=outcome_cols)
    if len(outcomes):
        outcomes = outcomes.sort_values(c.OCCURRED_AT).drop_duplicates([c.DEAL_ID, c.OUTCOME], keep="first")
    else:
        outcomes = pd.DataFrame([], columns=outcome_cols)
    return closing, outcomes


def record_stage(report: ConversionReport, info: StageInfo, via: str, n: int) -> None:
    m = report.stages.get(info.name)
    if m is None:
        report.stages[info.name] = StageMapping(info.name, info.order, info.closed, info.won, n, via)
    else:
        m.rows += n
        if via not in m.via.split(", "):
            m.via = f"{m.via}, {via}"


# --- responses -----------------------------------------------------------------------

def attribute_bookings(
    activities: pd.DataFrame, bookings: pd.DataFrame, window_days: float
) -> pd.DataFrame:
    """``meeting_booked`` for the latest outbound call/email to an attendee before a booking.

    Args:
        activities: kept activities (activity_id, occurred_at, type, direction, contact_id).
        bookings: one row per (booking, attendee): ``booked_at``, ``contact_id``.
        window_days: how far back a touch can earn the booking.

    Returns:
        responses rows (activity_id, response, occurred_at = booking time).
    """
    empty = pd.DataFrame(columns=[c.ACTIVITY_ID, c.RESPONSE, c.OCCURRED_AT])
    if bookings.empty or activities.empty or window_days <= 0:
        return empty
    touches = activities[
        activities[c.TYPE].isin(["call", "email"])
        & activities[c.DIRECTION].eq("outbound").fillna(False)
        & activities[c.CONTACT_ID].notna()
    ][[c.ACTIVITY_ID, c.OCCURRED_AT, c.CONTACT_ID]]
    b = bookings.dropna(subset=["booked_at", c.CONTACT_ID]).reset_index(drop=True)
    b["_booking"] = range(len(b))
    pairs = b.merge(touches, on=c.CONTACT_ID, how="inner")
    window = pd.Timedelta(days=window_days)
    pairs = pairs[(pairs[c.OCCURRED_AT] <= pairs["booked_at"]) & (pairs[c.OCCURRED_AT] >= pairs["booked_at"] - window)]
    if pairs.empty:
        return empty
    # latest touch over all attendees of the same booking
    pairs = pairs.sort_values([c.OCCURRED_AT, c.ACTIVITY_ID]).groupby("_booking").tail(1)
    out = pd.DataFrame({
        c.ACTIVITY_ID: pairs[c.ACTIVITY_ID].to_numpy(),
        c.RESPONSE: "meeting_booked",
        c.OCCURRED_AT: pairs["booked_at"].to_numpy(),
    })
    return out


def dedupe_responses(responses: pd.DataFrame, activity_ids: pd.Series) -> pd.DataFrame:
    """Earliest row per (activity_id, response), only for kept activities."""
    if responses.empty:
        return responses
    r = responses[responses[c.ACTIVITY_ID].isin(set(activity_ids.dropna()))]
    r = r.dropna(subset=[c.OCCURRED_AT])
    r = r.sort_values([c.OCCURRED_AT, c.ACTIVITY_ID, c.RESPONSE], kind="stable")
    return r.drop_duplicates([c.ACTIVITY_ID, c.RESPONSE], keep="first").reset_index(drop=True)


# --- finishing ----------------------------------------------------------------------

SORT_KEYS = {
    c.ACTIVITIES: [c.OCCURRED_AT, c.ACTIVITY_ID],
    c.RESPONSES: [c.OCCURRED_AT, c.ACTIVITY_ID, c.RESPONSE],
    c.DEAL_STAGES: [c.DEAL_ID, c.ENTERED_AT],
    c.OUTCOMES: [c.DEAL_ID, c.OCCURRED_AT, c.OUTCOME],
    c.DEALS: [c.DEAL_ID],
    c.CONTACTS: [c.CONTACT_ID],
    c.ACCOUNTS: [c.ACCOUNT_ID],
    c.REPS: [c.REP_ID],
}


def finish_tables(raw: dict[str, pd.DataFrame], report: ConversionReport) -> dict[str, pd.DataFrame]:
    """Contract column order (custom fields after), typed with ``coerce_table``, sorted."""
    out: dict[str, pd.DataFrame] = {}
    for name in c.TABLES:
        frame = raw.get(name)
        if frame is None:
            continue
        spec = c.TABLES[name]
        frame = frame[[col for col in frame.columns if not str(col).startswith("_")]]
        for column in spec.column_names:
            if column not in frame.columns:
                frame = frame.assign(**{column: pd.Series(pd.NA, index=frame.index, dtype="object")})
        ordered = spec.column_names + [col for col in frame.columns if col not in spec.column_names]
        frame = frame[ordered].reset_index(drop=True)
        typed = coerce_table(name, frame)
        typed = typed.sort_values(SORT_KEYS[name], kind="stable", na_position="last").reset_index(drop=True)
        out[name] = typed
        report.tables[name] = len(typed)
    return out


def assemble_tables(
    *,
    activities: pd.DataFrame,
    responses: pd.DataFrame,
    stages: pd.DataFrame,
    outcomes: pd.DataFrame,
    deals: pd.DataFrame | None,
    contacts: pd.DataFrame | None,
    accounts: pd.DataFrame | None,
    reps: pd.DataFrame | None,
    report: ConversionReport,
    no_history: str,
) -> dict[str, pd.DataFrame]:
    """The contract tables of one export, finished; ``CrmInputError(no_history)`` without stage history or outcomes.

    Stage history keeps the contract's columns; outcomes from a CRM name no contact.
    """
    raw = {
        c.ACTIVITIES: activities,
        c.RESPONSES: responses,
        c.DEAL_STAGES: stages[[c.DEAL_ID, c.STAGE, c.STAGE_ORDER, c.ENTERED_AT]] if len(stages) else None,
        c.OUTCOMES: outcomes.assign(**{c.CONTACT_ID: pd.NA}) if len(outcomes) else None,
        c.DEALS: deals,
        c.CONTACTS: contacts,
        c.ACCOUNTS: accounts,
        c.REPS: reps,
    }
    if raw[c.DEAL_STAGES] is None and raw[c.OUTCOMES] is None:
        raise CrmInputError(no_history)
    return finish_tables({k: v for k, v in raw.items() if v is not None}, report)


def clear_unknown_refs(
    activities: pd.DataFrame, column: str, known: set[str], report: ConversionReport, what: str
) -> pd.DataFrame:
    """Empty references to records missing from the export (deleted deals, ...)."""
    if activities.empty or column not in activities:
        return activities
    unknown = activities[column].notna() & ~activities[column].isin(known)
    n = int(unknown.sum())
    if n:
        report.warn(f"{n} activities referenced {what} not in the export (deleted?); {column} left empty")
        activities = activities.assign(**{column: activities[column].mask(unknown)})
    return activities
