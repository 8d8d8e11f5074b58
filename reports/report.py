"""The manager report "activity vs accomplishment": every figure, as one JSON-ready document.

:func:`build_report` reads a dataset and a model bundle and returns a plain dict (the
``--json`` output); :mod:`reports.html` renders the same dict as one self-contained page.

Grain and counting rules (each stated in the document's ``definitions``):

- an *activity* is a row of ``activities`` in the window ``[since, until)`` whose type is
  not ``none`` (a ``none`` row records a deliberate wait; waits are counted apart);
- *outputs* are response rows ``replied``/``positive_reply`` (replies), ``connected``
  (connects) and ``meeting_booked`` of those activities; an activity *with an output* has
  at least one; *negatives* are ``negative_reply`` and ``unsubscribed`` rows;
- an activity *advanced its deal* when its outcome label is 1 (the deal recorded an
  outcome or reached a higher stage within the outcome horizon); the outcome rate counts
  only activities whose horizon had closed;
- *deal advances* and *recorded outcomes* of a rep are events (stage entries above any
  earlier stage of the deal, excluding the deal's first stage; rows of ``outcomes``) in
  the window on the deals the rep owns (``deals.owner_rep_id``, else the rep who did most
  of the deal's activities in the window);
- *estimated outcomes caused* are sums of the effects model's per-activity estimates of the
  change in P(deal advances within the horizon) if done vs waiting; their interval sums the
  per-activity 90% interval ends (as if the errors of one group all went the same way: a
  wide, conservative interval).

Counts are exact (integers from the tables); every model figure is named ``*_estimate`` or
sits under an ``estimates`` key and carries ``low``/``high``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features import contract as c
from features import schema as s
from reports.effects_source import EffectSource, Effects, blank_execution

logger = logging.getLogger(__name__)

REPORT_FORMAT = "1.0"
DEFAULT_WINDOW_DAYS = 91  # 13 weeks before --until when --since is not given
RECENT_DAYS = 30  # "last month" of the window: next-best and top-picks figures
NO_REP = "(no rep)"
WAIT_TYPE = "none"
REPLIES = frozenset({"replied", "positive_reply"})
CONNECTS = frozenset({"connected"})
MEETINGS = frozenset({"meeting_booked"})
# Minutes of a rep's time per activity when duration_s is not recorded (assumptions, printed in the report).
MINUTES_BY_TYPE = {"call": 10.0, "email": 6.0, "meeting": 45.0, "demo": 60.0, "inmail": 5.0, "social": 3.0,
                   "proposal": 60.0, "workshop": 120.0}
MINUTES_OTHER = 10.0
MINUTES_AUTOMATED = 1.0
MIN_CELL = 30  # fewest activities behind an average shown per type/stage/seniority
CALIBRATION_SAMPLE = 50_000  # labelled activities scored for the calibration curve (seeded sample above)
TOUCH_LEVELS = 10  # touches to the contact in the last 7 days: 0..9 and "10 or more"

SUM_COLUMNS = ["activities", "touches", "with_output", "outputs", "replies", "connects", "meetings_booked",
               "negatives", "unsubscribes", "negative_replies", "labelled", "advanced", "automated", "minutes"]
EFFECT_SUMS = ["effect", "effect_low", "effect_high", "indistinguishable", "extrapolated"]


class ReportError(ValueError):
    """The report cannot be built from this input (the message says what and where)."""


@dataclass
class ReportInputs:
    """What :func:`build_report` reads.

    Attributes:
        dataset: the ``features.dataset.Dataset``.
        frame: its training table (one row per activity, features and labels), built with
            the bundle's horizons and time zone.
        bundle: the ``ModelBundle`` (the champion unless ``--model`` chose another).
        model: ``{"name", "version", "uri"}`` of that bundle, for the page.
        effects: the effect source, or None (with ``effects_note`` saying why).
    """

    dataset: Any
    frame: pd.DataFrame
    bundle: Any
    model: dict
    effects: EffectSource | None
    effects_note: str
    data_end: pd.Timestamp


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

def _utc(ts: Any) -> pd.Timestamp | None:
    if ts is None:
        return None
    ts = pd.Timestamp(ts)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _num(v: Any) -> Any:
    """JSON value: None for NaN/NA, int for integral counts, rounded floats otherwise."""
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, (np.integer, int)) and not isinstance(v, bool):
        return int(v)
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return None if not math.isfinite(f) else round(f, 6)
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    return str(v)


def records(frame: pd.DataFrame) -> list[dict]:
    """A frame as JSON-ready rows."""
    cols = list(frame.columns)
    return [{k: _num(v) for k, v in zip(cols, row, strict=True)} for row in frame.itertuples(index=False, name=None)]


def _div(a: pd.Series | np.ndarray, b: pd.Series | np.ndarray, scale: float = 1.0) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, scale * a / np.where(b > 0, b, 1.0), np.nan)


def _strings(series: pd.Series, missing: str) -> pd.Series:
    return series.astype("string").fillna(missing)


# --------------------------------------------------------------------------------------------
# the activity grain
# --------------------------------------------------------------------------------------------

def window_bounds(frame: pd.DataFrame, since: pd.Timestamp | None, until: pd.Timestamp | None,
                  data_end: pd.Timestamp) -> tuple[pd.Timestamp, pd.Timestamp]:
    """``[since, until)``: ``until`` defaults to just after the last activity, ``since`` to 13 weeks before it."""
    until = _utc(until)
    since = _utc(since)
    if until is None:
        last = frame[c.OCCURRED_AT].max() if len(frame) else data_end
        until = (pd.Timestamp(last) + pd.Timedelta(microseconds=1)) if last is not pd.NaT else data_end
    if since is None:
        since = (until - pd.Timedelta(days=DEFAULT_WINDOW_DAYS)).normalize()
    if since >= until:
        raise ReportError(f"--since {since.date()} is not before --until {until.date()}: the window is empty")
    return since, until


def response_counts(dataset, activity_ids: pd.Series) -> pd.DataFrame:  # noqa: ANN001
    """Per activity of ``activity_ids`` (same order): counts of each kind of response row."""
    out = pd.DataFrame(0, index=pd.RangeIndex(len(activity_ids)),
                       columns=["outputs", "replies", "connects", "meetings_booked", "negatives", "unsubscribes",
                                "negative_replies"], dtype=np.int64)
    resp = dataset.get(c.RESPONSES)
    if resp is None or not len(resp) or not len(activity_ids):
        return out
    kinds = resp[c.RESPONSE].astype("string").str.strip().str.lower()
    ids = pd.Index(activity_ids.astype("string"))
    pos = ids.get_indexer(resp[c.ACTIVITY_ID].astype("string"))
    keep = pos >= 0
    for col, names in (("outputs", c.MEANINGFUL_RESPONSES), ("replies", REPLIES), ("connects", CONNECTS),
                       ("meetings_booked", MEETINGS), ("negatives", c.NEGATIVE_RESPONSES),
                       ("unsubscribes", {"unsubscribed"}), ("negative_replies", {"negative_reply"})):
        hit = keep & kinds.isin(list(names)).fillna(False).to_numpy(dtype=bool)
        out[col] = np.bincount(pos[hit], minlength=len(ids)).astype(np.int64)
    return out


def activity_grain(inputs: ReportInputs, since: pd.Timestamp, until: pd.Timestamp) -> tuple[pd.DataFrame, int]:
    """One row per activity in ``[since, until)`` (waits left out) with the columns every figure sums.

    Returns:
        ``(acts, n_waits)``.
    """
    frame = inputs.frame
    t = frame[c.OCCURRED_AT]
    in_window = ((t >= since) & (t < until)).to_numpy(dtype=bool)
    rows = frame[in_window]
    is_wait = (rows[c.TYPE].astype("string") == WAIT_TYPE).fillna(False).to_numpy(dtype=bool)
    n_waits = int(is_wait.sum())
    rows = rows[~is_wait].reset_index(drop=True)
    acts = pd.DataFrame({
        c.ACTIVITY_ID: rows[c.ACTIVITY_ID].astype("string"),
        c.OCCURRED_AT: rows[c.OCCURRED_AT],
        c.REP_ID: _strings(rows[c.REP_ID], NO_REP),
        c.DEAL_ID: rows[c.DEAL_ID].astype("string"),
        c.CONTACT_ID: rows[c.CONTACT_ID].astype("string"),
        c.TYPE: _strings(rows[c.TYPE], "(unknown)"),
    })
    acts["week"] = (rows[c.OCCURRED_AT].dt.tz_convert("UTC").dt.tz_localize(None).dt.to_period("W-SUN")
                    .dt.start_time.dt.strftime("%Y-%m-%d")).astype("string")
    stage = pd.to_numeric(rows[c.STAGE_ORDER], errors="coerce") if c.STAGE_ORDER in rows else pd.Series(np.nan)
    acts["stage_order"] = stage.to_numpy(dtype=np.float64)
    acts["seniority"] = _strings(rows[c.SENIORITY], "unknown") if c.SENIORITY in rows else "unknown"
    acts["touches_contact_7d"] = (pd.to_numeric(rows["touches_contact_7d"], errors="coerce").to_numpy(np.float64)
                                  if "touches_contact_7d" in rows else np.nan)
    auto = (pd.to_numeric(rows[c.IS_AUTOMATED], errors="coerce").fillna(0).to_numpy(np.float64) > 0
            if c.IS_AUTOMATED in rows else np.zeros(len(rows), dtype=bool))
    acts["automated"] = auto.astype(np.int64)
    acts["activities"] = np.int64(1)
    acts["touches"] = np.int64(1)
    resp = response_counts(inputs.dataset, acts[c.ACTIVITY_ID])
    for col in resp.columns:
        acts[col] = resp[col].to_numpy()
    acts["with_output"] = (acts["outputs"] > 0).astype(np.int64)
    label = rows[s.LABEL_OUTCOME].to_numpy(dtype=np.float64, na_value=np.nan)
    acts["labelled"] = (~np.isnan(label)).astype(np.int64)
    acts["advanced"] = (label == 1.0).astype(np.int64)
    acts["minutes"] = activity_minutes(rows, acts[c.TYPE], auto)
    return acts, n_waits


def activity_minutes(rows: pd.DataFrame, types: pd.Series, automated: np.ndarray) -> np.ndarray:
    """A rep's minutes per activity: the recorded duration, else the per-type assumption (1 when automated)."""
    default = types.map(lambda v: MINUTES_BY_TYPE.get(str(v), MINUTES_OTHER)).to_numpy(dtype=np.float64)
    dur = (pd.to_numeric(rows[c.DURATION_S], errors="coerce").to_numpy(np.float64) / 60.0
           if c.DURATION_S in rows else np.full(len(rows), np.nan))
    minutes = np.where(np.isfinite(dur) & (dur > 0), dur, default)
    return np.where(automated, MINUTES_AUTOMATED, minutes)


def attach_effects(acts: pd.DataFrame, matrix: np.ndarray, source: EffectSource) -> Effects:
    """Ask the effects model for every activity's effect, done by its rep; adds the effect columns to ``acts``."""
    eff = source.predict(matrix, acts["rep_offset"].to_numpy(), acts["rep_offset_sd"].to_numpy())
    acts["effect"] = eff.effect
    acts["effect_low"] = eff.low
    acts["effect_high"] = eff.high
    acts["indistinguishable"] = ((eff.low <= 0.0) & (eff.high >= 0.0)).astype(np.int64)
    acts["extrapolated"] = (~eff.overlap).astype(np.int64)
    return eff


# --------------------------------------------------------------------------------------------
# grouped figures
# --------------------------------------------------------------------------------------------

def summarize(acts: pd.DataFrame, keys: list[str], with_effects: bool) -> pd.DataFrame:
    """Sums and rates per group of ``keys`` (one row per group present)."""
    cols = SUM_COLUMNS + (EFFECT_SUMS if with_effects else [])
    g = acts.groupby(keys, sort=True, observed=True, dropna=False)[cols].sum().reset_index()
    return add_rates(g, with_effects)


def add_rates(g: pd.DataFrame, with_effects: bool) -> pd.DataFrame:
    n = g["activities"]
    g["output_rate"] = _div(g["with_output"], n)
    g["outcome_rate"] = _div(g["advanced"], g["labelled"])
    g["automated_share"] = _div(g["automated"], n)
    g["negatives_per_1000"] = _div(g["negatives"], g["touches"], 1000.0)
    g["hours"] = g["minutes"] / 60.0
    g = g.drop(columns=["minutes"])
    if with_effects:
        g = g.rename(columns={"effect": "caused_estimate", "effect_low": "caused_low", "effect_high": "caused_high",
                              "indistinguishable": "indistinguishable_from_waiting",
                              "extrapolated": "extrapolated"})
        for col in ("caused_estimate", "caused_low", "caused_high"):
            g[col.replace("caused", "caused_per_100")] = _div(g[col], n, 100.0)
        g["caused_per_hour_estimate"] = _div(g["caused_estimate"], g["hours"])
        g["caused_per_hour_low"] = _div(g["caused_low"], g["hours"])
        g["caused_per_hour_high"] = _div(g["caused_high"], g["hours"])
        g["wasted_share_estimate"] = _div(g["indistinguishable_from_waiting"], n)
    return g


def owner_of_deals(dataset, acts: pd.DataFrame) -> pd.Series:  # noqa: ANN001
    """deal_id -> rep who owns it (``deals.owner_rep_id``; else the rep with most window activities on it)."""
    busiest = (acts.dropna(subset=[c.DEAL_ID]).groupby([c.DEAL_ID, c.REP_ID], observed=True).size()
               .reset_index(name="n").sort_values(["n", c.REP_ID], ascending=[False, True], kind="stable")
               .drop_duplicates(c.DEAL_ID).set_index(c.DEAL_ID)[c.REP_ID])
    deals = dataset.get(c.DEALS)
    if deals is None or c.OWNER_REP_ID not in deals.columns:
        return busiest.astype("string")
    owners = deals[[c.DEAL_ID, c.OWNER_REP_ID]].dropna().astype("string").drop_duplicates(c.DEAL_ID)
    owner = owners.set_index(c.DEAL_ID)[c.OWNER_REP_ID]
    return owner.combine_first(busiest).astype("string")


def deal_events(dataset, since: pd.Timestamp, until: pd.Timestamp) -> pd.DataFrame:  # noqa: ANN001
    """Deal advances and recorded outcomes in the window: ``deal_id, kind, occurred_at, stage_order``.

    An advance is a stage entry above every earlier stage of the deal, the deal's first
    stage entry excluded (it is the deal's creation), closed-lost (order 0) never.
    """
    parts = []
    stages = dataset.get(c.DEAL_STAGES)
    if stages is not None and len(stages):
        st = stages[[c.DEAL_ID, c.STAGE_ORDER, c.ENTERED_AT]].dropna().copy()
        st[c.DEAL_ID] = st[c.DEAL_ID].astype("string")
        st = st.sort_values([c.DEAL_ID, c.ENTERED_AT, c.STAGE_ORDER], kind="stable")
        order = st[c.STAGE_ORDER].to_numpy(dtype=np.int64)
        running = st.groupby(c.DEAL_ID, sort=False)[c.STAGE_ORDER].cummax()
        prev_max = running.groupby(st[c.DEAL_ID], sort=False).shift(1).to_numpy(dtype=np.float64, na_value=np.nan)
        adv = ~np.isnan(prev_max) & (order > 0) & (order > np.nan_to_num(prev_max, nan=np.inf))
        ev = st[adv]
        parts.append(pd.DataFrame({c.DEAL_ID: ev[c.DEAL_ID], "kind": "advance", c.OCCURRED_AT: ev[c.ENTERED_AT],
                                   c.STAGE_ORDER: ev[c.STAGE_ORDER].astype(np.float64)}))
    outcomes = dataset.get(c.OUTCOMES)
    if outcomes is not None and len(outcomes):
        oc = outcomes[[c.DEAL_ID, c.OCCURRED_AT]].dropna()
        parts.append(pd.DataFrame({c.DEAL_ID: oc[c.DEAL_ID].astype("string"), "kind": "outcome",
                                   c.OCCURRED_AT: oc[c.OCCURRED_AT], c.STAGE_ORDER: np.nan}))
    if not parts:
        return pd.DataFrame(columns=[c.DEAL_ID, "kind", c.OCCURRED_AT, c.STAGE_ORDER])
    ev = pd.concat(parts, ignore_index=True)
    t = ev[c.OCCURRED_AT]
    return ev[((t >= since) & (t < until)).to_numpy(dtype=bool)].reset_index(drop=True)


def rep_table(inputs: ReportInputs, acts: pd.DataFrame, events: pd.DataFrame, with_effects: bool) -> pd.DataFrame:
    """One row per rep: the reps table's reps (even with no activity in the window) and every rep seen."""
    per = summarize(acts, [c.REP_ID], with_effects)
    reps = inputs.dataset.get(c.REPS)
    known = pd.Index(reps[c.REP_ID].astype("string").dropna().unique()) if reps is not None else pd.Index([])
    all_reps = known.union(pd.Index(per[c.REP_ID])).astype("string")
    per = per.set_index(c.REP_ID).reindex(all_reps)
    counts = [k for k in SUM_COLUMNS if k != "minutes"]
    counts += ["indistinguishable_from_waiting", "extrapolated"] if with_effects else []
    for col in counts:
        if col in per:
            per[col] = per[col].fillna(0).astype(np.int64)
    if "hours" in per:
        per["hours"] = per["hours"].fillna(0.0)
    per.index.name = c.REP_ID
    per = per.reset_index()
    if reps is not None and c.TEAM in reps.columns:
        team = reps.drop_duplicates(c.REP_ID).set_index(reps[c.REP_ID].astype("string").drop_duplicates())[c.TEAM]
        per.insert(1, "team", per[c.REP_ID].map(team.astype("string")).astype("string"))
    owner = owner_of_deals(inputs.dataset, acts)
    ev_owner = events[c.DEAL_ID].map(owner) if len(events) else pd.Series([], dtype="string")
    for kind, col in (("advance", "deal_advances"), ("outcome", "recorded_outcomes")):
        sel = (events["kind"] == kind).to_numpy(dtype=bool) if len(events) else np.zeros(0, dtype=bool)
        counts = ev_owner[sel].value_counts()
        per[col] = per[c.REP_ID].map(counts).fillna(0).astype(np.int64)
    per["no_activity_in_window"] = per["activities"] == 0
    return per


def _stage_names(dataset) -> dict[int, str]:  # noqa: ANN001
    stages = dataset.get(c.DEAL_STAGES)
    if stages is None or not len(stages):
        return {}
    named = stages[[c.STAGE_ORDER, c.STAGE]].dropna()
    if not len(named):
        return {}
    top = named.groupby(c.STAGE_ORDER)[c.STAGE].agg(lambda x: x.value_counts().index[0])
    return {int(k): str(v) for k, v in top.items()}


def _stage_label(order: float, names: dict[int, str]) -> str:
    if not np.isfinite(order):
        return "(no deal stage)"
    o = int(order)
    return f"{o} {names[o]}" if o in names else f"stage {o}"


# --------------------------------------------------------------------------------------------
# wasted effort and what would work better
# --------------------------------------------------------------------------------------------

def contact_pressure(acts: pd.DataFrame, with_effects: bool) -> dict:
    """Returns of the k-th touch to a contact within 7 days, the point where they turn negative, and who goes past it."""
    k = np.minimum(acts["touches_contact_7d"].to_numpy(np.float64), TOUCH_LEVELS)
    a = acts.assign(touches_before_7d=k)[np.isfinite(k)]
    by_k = summarize(a, ["touches_before_7d"], with_effects)
    keep = ["touches_before_7d", "activities", "output_rate", "negatives_per_1000", "outcome_rate"]
    if with_effects:
        by_k["mean_effect_estimate"] = _div(by_k["caused_estimate"], by_k["activities"])
        by_k["mean_effect_low"] = _div(by_k["caused_low"], by_k["activities"])
        by_k["mean_effect_high"] = _div(by_k["caused_high"], by_k["activities"])
        thin = (by_k["activities"] < MIN_CELL).to_numpy()
        for col in ("mean_effect_estimate", "mean_effect_low", "mean_effect_high"):
            by_k.loc[thin, col] = np.nan
        keep += ["mean_effect_estimate", "mean_effect_low", "mean_effect_high"]
    out: dict[str, Any] = {"by_touches_in_7d": records(by_k[keep]),
                           "note": f"earlier touches = touches to the same contact in the 7 days before the "
                                   f"activity ({TOUCH_LEVELS} means {TOUCH_LEVELS} or more); effects averaged over fewer "
                                   f"than {MIN_CELL} activities are not shown"}
    if not with_effects:
        out["threshold_estimate"] = None
        out["waits_for_effects"] = True
        return out
    enough = by_k[by_k["activities"] >= MIN_CELL]
    negative = enough[enough["mean_effect_estimate"] <= 0.0]
    threshold = None if not len(negative) else int(negative["touches_before_7d"].min())
    out["threshold_estimate"] = threshold
    if threshold is None:
        out["over_contacted"] = {"contacts": 0, "activities": 0, "by_rep": []}
        out["threshold_note"] = (f"the estimated return of a further touch stays above zero up to "
                                 f"{int(enough['touches_before_7d'].max()) if len(enough) else 0} earlier touches in 7 days")
        return out
    over = a[a["touches_before_7d"] >= threshold]
    by_rep = (over.groupby(c.REP_ID, observed=True).agg(activities=("activities", "sum"),
                                                         contacts=(c.CONTACT_ID, "nunique"))
              .reset_index().sort_values(["activities", c.REP_ID], ascending=[False, True]))
    out["over_contacted"] = {"contacts": int(over[c.CONTACT_ID].nunique()), "activities": int(len(over)),
                             "by_rep": records(by_rep.head(20))}
    out["threshold_note"] = (f"from {threshold} earlier touches in 7 days the average estimated effect of one more "
                             f"touch is at or below zero")
    return out


def automated_sequences(acts: pd.DataFrame) -> dict:
    """Automated touches of one rep to one contact (a sequence): those with more negatives than outputs."""
    auto = acts[(acts["automated"] == 1).to_numpy(dtype=bool) & acts[c.CONTACT_ID].notna().to_numpy(dtype=bool)]
    seq = (auto.groupby([c.REP_ID, c.CONTACT_ID], observed=True)
           .agg(touches=("activities", "sum"), outputs=("outputs", "sum"), negatives=("negatives", "sum"),
                first_at=(c.OCCURRED_AT, "min"), last_at=(c.OCCURRED_AT, "max"))
           .reset_index())
    bad = seq[seq["negatives"] > seq["outputs"]].sort_values(["negatives", "touches", c.REP_ID, c.CONTACT_ID],
                                                             ascending=[False, False, True, True], kind="stable")
    per_rep = (seq.assign(worse=(seq["negatives"] > seq["outputs"]).astype(np.int64))
               .groupby(c.REP_ID, observed=True).agg(sequences=("touches", "size"), more_negatives_than_outputs=("worse", "sum"),
                                                     touches=("touches", "sum"))
               .reset_index())
    per_rep = per_rep[per_rep["more_negatives_than_outputs"] > 0].sort_values(
        ["more_negatives_than_outputs", c.REP_ID], ascending=[False, True])
    return {"definition": "a sequence = the automated touches of one rep to one contact in the window",
            "sequences": int(len(seq)), "more_negatives_than_outputs": int(len(bad)),
            "touches_in_those": int(bad["touches"].sum()), "by_rep": records(per_rep.head(20)),
            "worst": records(bad.head(20))}


def wasted_effort(acts: pd.DataFrame, names: dict[int, str], with_effects: bool) -> dict:
    out: dict[str, Any] = {}
    if with_effects:
        cols = ["activities", "indistinguishable_from_waiting", "wasted_share_estimate", "extrapolated"]
        by_type = summarize(acts, [c.TYPE], True)[[c.TYPE, *cols]]
        by_rep = summarize(acts, [c.REP_ID], True)[[c.REP_ID, *cols]].sort_values(
            ["wasted_share_estimate", c.REP_ID], ascending=[False, True])
        st = acts.assign(stage=[_stage_label(o, names) for o in acts["stage_order"].to_numpy()])
        by_stage = summarize(st, ["stage"], True)[["stage", *cols]]
        n = len(acts)
        out["indistinguishable_from_waiting"] = {
            "share_estimate": _num(acts["indistinguishable"].sum() / n if n else np.nan),
            "activities": int(acts["indistinguishable"].sum()),
            "definition": "activities whose 90% effect interval contains zero",
            "by_type": records(by_type), "by_rep": records(by_rep), "by_stage": records(by_stage)}
    else:
        out["indistinguishable_from_waiting"] = {"waits_for_effects": True}
    out["contact_pressure"] = contact_pressure(acts, with_effects)
    out["automated_sequences"] = automated_sequences(acts)
    return out


def _candidate_matrix(base: np.ndarray, spec, type_name: str, personalization: float | None) -> np.ndarray | None:  # noqa: ANN001
    """``base`` rows with the activity replaced by a hand-made ``type_name`` to the same contact at the same time."""
    names = list(spec.names)
    if c.TYPE not in names:
        return None
    levels = list(spec[c.TYPE].levels or ())
    if type_name not in levels:
        return None
    m = np.array(base, dtype=np.float64, copy=True)
    m[:, names.index(c.TYPE)] = float(levels.index(type_name))
    if c.IS_AUTOMATED in names:
        m[:, names.index(c.IS_AUTOMATED)] = 0.0
    if c.SEQUENCE_STEP in names:
        m[:, names.index(c.SEQUENCE_STEP)] = np.nan
    if c.DIRECTION in names:
        dl = list(spec[c.DIRECTION].levels or ())
        m[:, names.index(c.DIRECTION)] = float(dl.index("outbound")) if "outbound" in dl else np.nan
    if c.PERSONALIZATION in names and personalization is not None:
        m[:, names.index(c.PERSONALIZATION)] = personalization
    return m


def best_candidates(source: EffectSource, base: np.ndarray, acts: pd.DataFrame, types: list[str],
                    rows: np.ndarray) -> pd.DataFrame:
    """For each row of ``base`` (``rows`` of ``acts``): the hand-made activity type with the largest estimated
    effect for the same rep, deal, contact and time (extrapolations never proposed)."""
    n = len(base)
    best = pd.DataFrame({"best_type": pd.array([None] * n, dtype="string"), "best_effect": np.full(n, -np.inf),
                         "best_low": np.full(n, np.nan), "best_high": np.full(n, np.nan)})
    hand = acts[acts["automated"] == 0]
    off, off_sd = acts["rep_offset"].to_numpy()[rows], acts["rep_offset_sd"].to_numpy()[rows]
    chosen = np.full((n, base.shape[1]), np.nan)
    for t in types:
        pers_vals = hand.loc[hand[c.TYPE] == t, "personalization"] if "personalization" in hand else pd.Series([])
        pers = float(np.nanmedian(pers_vals)) if len(pers_vals) and np.isfinite(pers_vals).any() else None
        m = _candidate_matrix(base, source.bundle.spec, t, pers)
        if m is None:
            continue
        e = source.predict(m, off, off_sd, point_only=True)  # choose on the point estimate
        better = e.overlap & (e.effect > best["best_effect"].to_numpy())
        best.loc[better, "best_type"] = t
        best.loc[better, "best_effect"] = e.effect[better]
        chosen[better] = m[better]
    have = np.isfinite(best["best_effect"].to_numpy())
    best.loc[~have, "best_effect"] = np.nan
    if have.any():  # the interval of the chosen candidate only
        e = source.predict(chosen[have], off[have], off_sd[have])
        best.loc[have, "best_low"] = e.low
        best.loc[have, "best_high"] = e.high
    return best


def what_works_better(inputs: ReportInputs, acts: pd.DataFrame, matrix: np.ndarray | None, names: dict[int, str],
                      until: pd.Timestamp) -> dict:
    src = inputs.effects
    if src is None or matrix is None:
        return {"waits_for_effects": True}
    out: dict[str, Any] = {}
    st = acts.assign(stage=[_stage_label(o, names) for o in acts["stage_order"].to_numpy()])
    per_stage = []
    for stage, grp in st.groupby("stage", sort=True):
        row: dict[str, Any] = {"stage": stage, "activities": int(len(grp))}
        for key in (c.TYPE, "seniority"):
            m = grp.groupby(key, observed=True).agg(n=("effect", "size"), mean=("effect", "mean"),
                                                    low=("effect_low", "mean"), high=("effect_high", "mean"))
            m = m[m["n"] >= MIN_CELL].sort_values("mean", ascending=False).head(3).reset_index()
            row[f"top_{'types' if key == c.TYPE else 'seniorities'}"] = [
                {key: str(r[key]), "mean_effect_estimate": _num(r["mean"]), "low": _num(r["low"]),
                 "high": _num(r["high"]), "activities": int(r["n"])} for _, r in m.iterrows()]
        per_stage.append(row)
    out["by_stage"] = per_stage

    recent = (acts[c.OCCURRED_AT] >= until - pd.Timedelta(days=RECENT_DAYS)).to_numpy(dtype=bool)
    types = [t for t in acts[c.TYPE].value_counts().index if t != WAIT_TYPE]
    rec_idx = np.flatnonzero(recent)
    if not len(rec_idx):
        out["next_best_by_deal"] = []
        out["top_picks_instead"] = {"activities": 0, "note": f"no activities in the last {RECENT_DAYS} days"}
        return out
    rec = acts.iloc[rec_idx]

    # deals where the next-best activity differs most from what the rep has been doing
    on_deal = rec[rec[c.DEAL_ID].notna()]
    latest = on_deal.sort_values(c.OCCURRED_AT, kind="stable").drop_duplicates(c.DEAL_ID, keep="last")
    li = latest.index.to_numpy()
    best = best_candidates(src, matrix[li], acts, types, li)
    practice = on_deal.groupby(c.DEAL_ID, observed=True).agg(
        practice_effect=("effect", "mean"), practice_low=("effect_low", "mean"), practice_high=("effect_high", "mean"),
        activities=("effect", "size"), usual_type=(c.TYPE, lambda x: x.value_counts().index[0]))
    nb = pd.DataFrame({c.DEAL_ID: latest[c.DEAL_ID].to_numpy(), c.REP_ID: latest[c.REP_ID].to_numpy(),
                       "stage": [_stage_label(o, names) for o in latest["stage_order"].to_numpy()]})
    nb = pd.concat([nb, best.reset_index(drop=True)], axis=1).merge(practice, left_on=c.DEAL_ID, right_index=True)
    nb["gap_estimate"] = nb["best_effect"] - nb["practice_effect"]
    nb = nb[nb["best_type"].notna()].sort_values(["gap_estimate", c.DEAL_ID], ascending=[False, True], kind="stable")
    out["next_best_by_deal"] = records(nb.head(15))
    out["next_best_note"] = (f"open deals with activity in the last {RECENT_DAYS} days; the candidates are a hand-made "
                             f"activity of each type to the contact of the deal's latest activity, at its time; "
                             f"extrapolated estimates are never proposed")

    # the lowest-effect quarter of the last month replaced by the model's top picks
    order = np.argsort(rec["effect"].to_numpy(), kind="stable")
    q = order[: max(1, len(order) // 4)]
    low_rows = rec_idx[q]
    best_q = best_candidates(src, matrix[low_rows], acts, types, low_rows)
    have = best_q["best_type"].notna().to_numpy()
    act_eff = acts["effect"].to_numpy()[low_rows][have]
    act_lo = acts["effect_low"].to_numpy()[low_rows][have]
    act_hi = acts["effect_high"].to_numpy()[low_rows][have]
    gain = float(best_q["best_effect"].to_numpy()[have].sum() - act_eff.sum())
    low = float(best_q["best_low"].to_numpy()[have].sum() - act_hi.sum())
    high = float(best_q["best_high"].to_numpy()[have].sum() - act_lo.sum())
    out["top_picks_instead"] = {
        "activities_replaced": int(have.sum()), "activities_in_quarter": int(len(low_rows)),
        "last_month_activities": int(len(rec_idx)), "from": _num(until - pd.Timedelta(days=RECENT_DAYS)),
        "done_estimate": _num(act_eff.sum()),
        "gain_estimate": _num(gain), "gain_low": _num(low), "gain_high": _num(high),
        "picks_by_type": {str(k): int(v) for k, v in best_q["best_type"].value_counts().items()},
        "assumptions": [
            f"the activities are those of the last {RECENT_DAYS} days of the window; the quarter with the lowest "
            f"estimated effects is replaced, one for one",
            "each replacement is the hand-made activity type with the largest estimated effect for the same deal, "
            "contact and time (personalization: the median of hand-made activities of that type)",
            "effects add up: one activity does not change the effect of another (no fatigue between replacements)",
            "the interval combines the 90% intervals end to end (best low minus done high, and the reverse): "
            "wide on purpose",
            f"{int((~have).sum())} of the quarter had no candidate the model could estimate without extrapolating "
            f"and are left as they were",
        ],
    }
    return out


# --------------------------------------------------------------------------------------------
# plots' data
# --------------------------------------------------------------------------------------------

def calibration_bins(inputs: ReportInputs, rows: pd.DataFrame, base: np.ndarray, n_bins: int = 10) -> dict:
    """Champion's calibrated full-model P(outcome) against the observed rate, on the window's closed labels.

    ``base`` is the encoded matrix of ``rows``. Above ``CALIBRATION_SAMPLE`` labelled activities a
    seeded random sample of that size is scored (deciles of 5,000 rows each; the page says so).
    """
    from models.bundle import VARIANT_FULL

    label = rows[s.LABEL_OUTCOME].to_numpy(dtype=np.float64, na_value=np.nan)
    keep = ~np.isnan(label)
    if s.LEAK_FLAG in rows:
        keep &= ~rows[s.LEAK_FLAG].to_numpy(dtype=bool)
    labelled = int(keep.sum())
    if labelled == 0:
        return {"bins": [], "labelled": 0}
    idx = np.flatnonzero(keep)
    if len(idx) > CALIBRATION_SAMPLE:
        idx = np.sort(np.random.default_rng(0).choice(idx, CALIBRATION_SAMPLE, replace=False))
    keep = np.zeros(len(rows), dtype=bool)
    keep[idx] = True
    bundle = inputs.bundle
    matrix = base[keep]
    trained = bundle.trained_variant(VARIANT_FULL)
    raw = bundle.predict_raw(matrix, VARIANT_FULL, "outcome")
    p = np.asarray(bundle.calibrators[("outcome", trained)].transform(raw), dtype=np.float64)
    y = label[keep]
    edges = np.unique(np.quantile(p, np.linspace(0, 1, n_bins + 1)))
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, max(len(edges) - 2, 0))
    bins = []
    for b in range(max(len(edges) - 1, 1)):
        sel = which == b
        if sel.any():
            bins.append({"predicted": _num(p[sel].mean()), "observed": _num(y[sel].mean()), "n": int(sel.sum())})
    ece = sum(abs(b["predicted"] - b["observed"]) * b["n"] for b in bins) / max(int(keep.sum()), 1)
    return {"bins": bins, "labelled": labelled, "scored": int(keep.sum()), "mean_predicted": _num(p.mean()),
            "observed_rate": _num(y.mean()), "ece": _num(ece)}


# --------------------------------------------------------------------------------------------
# the document
# --------------------------------------------------------------------------------------------

def build_report(inputs: ReportInputs, since: pd.Timestamp | None = None, until: pd.Timestamp | None = None,
                 progress=None) -> dict:  # noqa: ANN001
    """Every figure of the report for the window ``[since, until)``, as a JSON-ready dict.

    Raises:
        ReportError: the window is empty or holds no activity; the model does not match the data.
    """
    from models.bundle import BundleInputError

    progress = progress or (lambda _: None)
    t0 = time.perf_counter()
    frame = inputs.frame
    since, until = window_bounds(frame, since, until, inputs.data_end)
    first, last = (frame[c.OCCURRED_AT].min(), frame[c.OCCURRED_AT].max()) if len(frame) else (None, None)
    acts, n_waits = activity_grain(inputs, since, until)
    if not len(acts):
        covers = f"the data covers {first.date()} to {last.date()}" if first is not None else "the data has no activities"
        raise ReportError(f"no activities between {since.date()} and {until.date()} (excluded end; {covers}): "
                          f"choose --since/--until inside the data")
    progress(f"report: {len(acts):,} activities between {since.date()} and {until.date()}")
    rows = frame[((frame[c.OCCURRED_AT] >= since) & (frame[c.OCCURRED_AT] < until)).to_numpy(dtype=bool)]
    rows = rows[(rows[c.TYPE].astype("string") != WAIT_TYPE).fillna(True).to_numpy(dtype=bool)].reset_index(drop=True)
    if c.PERSONALIZATION in rows:
        acts["personalization"] = pd.to_numeric(rows[c.PERSONALIZATION], errors="coerce").to_numpy(np.float64)
    try:
        base = inputs.bundle.encode(rows)
    except BundleInputError as err:
        raise ReportError(f"the model {inputs.model.get('label', '')} does not match this data: {err} "
                          f"(it was trained on data with other fields; pass --model with a model trained on such data)"
                          ) from None
    with_effects = inputs.effects is not None
    matrix = None
    if with_effects:
        progress("report: effect estimates")
        matrix = blank_execution(base, inputs.bundle.spec)
        progress("report: each rep's execution (offsets of the effects model)")
        offsets = inputs.effects.rep_offsets(inputs.dataset, frame, since, until)
        by_id = offsets.set_index(c.REP_ID)
        acts["rep_offset"] = acts[c.REP_ID].map(by_id["offset"]).fillna(0.0).to_numpy(np.float64)
        typical_sd = float(np.sqrt(np.mean(by_id["offset"] ** 2))) if len(by_id) else 0.0
        acts["rep_offset_sd"] = acts[c.REP_ID].map(by_id["offset_sd"]).fillna(typical_sd).to_numpy(np.float64)
        attach_effects(acts, matrix, inputs.effects)
    names = _stage_names(inputs.dataset)
    events = deal_events(inputs.dataset, since, until)
    progress("report: figures")
    per_rep = rep_table(inputs, acts, events, with_effects)
    if with_effects:
        per_rep["execution_offset_estimate"] = per_rep[c.REP_ID].map(by_id["offset"]).astype("float64")
        per_rep["execution_offset_sd"] = per_rep[c.REP_ID].map(by_id["offset_sd"]).astype("float64")
    by_type = summarize(acts, [c.TYPE], with_effects)
    by_week = summarize(acts, ["week"], with_effects)
    rep_type = summarize(acts, [c.REP_ID, c.TYPE], with_effects)
    rep_type_week = summarize(acts, [c.REP_ID, c.TYPE, "week"], with_effects)
    st = acts.assign(stage=[_stage_label(o, names) for o in acts["stage_order"].to_numpy()])
    type_stage = summarize(st, [c.TYPE, "stage"], with_effects)
    if with_effects:
        type_stage["mean_effect_estimate"] = _div(type_stage["caused_estimate"], type_stage["activities"])
    ev_week = events.assign(week=(events[c.OCCURRED_AT].dt.tz_convert("UTC").dt.tz_localize(None)
                                  .dt.to_period("W-SUN").dt.start_time.dt.strftime("%Y-%m-%d")) if len(events) else [])
    week_events = (ev_week.groupby(["week", "kind"]).size().unstack(fill_value=0) if len(events)
                   else pd.DataFrame())
    for kind, col in (("advance", "deal_advances"), ("outcome", "recorded_outcomes")):
        by_week[col] = by_week["week"].map(week_events[kind] if kind in week_events else pd.Series(dtype=int)
                                           ).fillna(0).astype(np.int64)
    horizon = int(inputs.bundle.manifest.horizons.get("outcome_days", c.OUTCOME_HORIZON_DAYS))
    labels_close = inputs.data_end - pd.Timedelta(days=horizon)
    by_week["labels_complete"] = (pd.to_datetime(by_week["week"]).dt.tz_localize("UTC") + pd.Timedelta(days=7)
                                  <= labels_close)
    progress("report: calibration")
    calib = calibration_bins(inputs, rows, base)
    totals = {k: int(acts[k].sum()) for k in SUM_COLUMNS if k != "minutes"}
    totals["hours"] = _num(acts["minutes"].sum() / 60.0)
    totals["reps_active"] = int(acts[c.REP_ID].nunique())
    totals["deals"] = int(acts[c.DEAL_ID].nunique())
    totals["waits"] = n_waits
    totals["deal_advances"] = int((events["kind"] == "advance").sum()) if len(events) else 0
    totals["recorded_outcomes"] = int((events["kind"] == "outcome").sum()) if len(events) else 0
    totals["output_rate"] = _num(totals["with_output"] / totals["activities"])
    totals["outcome_rate"] = _num(totals["advanced"] / totals["labelled"] if totals["labelled"] else np.nan)
    totals["negatives_per_1000"] = _num(1000.0 * totals["negatives"] / totals["touches"])
    totals["automated_share"] = _num(totals["automated"] / totals["activities"])
    if with_effects:
        n = len(acts)
        totals["caused_estimate"] = _num(acts["effect"].sum())
        totals["caused_low"] = _num(acts["effect_low"].sum())
        totals["caused_high"] = _num(acts["effect_high"].sum())
        totals["caused_per_100_estimate"] = _num(100 * acts["effect"].sum() / n)
        totals["caused_per_100_low"] = _num(100 * acts["effect_low"].sum() / n)
        totals["caused_per_100_high"] = _num(100 * acts["effect_high"].sum() / n)
    doc = {
        "format": REPORT_FORMAT,
        "title": "Activity vs accomplishment",
        "generated_at": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
        "window": {"since": since.isoformat(), "until": until.isoformat(), "until_excluded": True,
                   "data_first_activity": _num(first), "data_last_activity": _num(last),
                   "data_end": inputs.data_end.isoformat(), "labels_closed_before": labels_close.isoformat(),
                   "outcome_horizon_days": horizon},
        "model": inputs.model,
        "effects": {"available": with_effects, "source": inputs.effects_note,
                    "waiting_figures": [] if with_effects else WAITING_FIGURES},
        "totals": totals,
        "by_rep": records(per_rep),
        "by_type": records(by_type),
        "by_week": records(by_week),
        "by_rep_type": records(rep_type),
        "by_rep_type_week": records(rep_type_week),
        "by_type_stage": records(type_stage),
        "wasted_effort": wasted_effort(acts, names, with_effects),
        "what_would_work_better": what_works_better(inputs, acts, matrix, names, until),
        "calibration": calib,
        "definitions": DEFINITIONS,
        "assumptions": {"minutes_by_type": MINUTES_BY_TYPE, "minutes_other_types": MINUTES_OTHER,
                        "minutes_automated": MINUTES_AUTOMATED,
                        "note": "hours of work: the recorded duration when there is one, else these minutes per "
                                "activity; automated activities count one minute"},
    }
    doc["seconds"] = round(time.perf_counter() - t0, 2)
    logger.info("report n=%d reps=%d effects=%s in %.1fs", len(acts), totals["reps_active"], with_effects,
                doc["seconds"])
    return doc


WAITING_FIGURES = [
    "estimated outcomes caused per 100 activities and per hour, per rep, type and week",
    "share of activities whose effect is indistinguishable from waiting (by type, rep and stage)",
    "the point where more touches to a contact stop paying, and who goes past it",
    "per stage, the activity types and seniorities with the largest effects (and the effect heat map)",
    "deals where the next-best activity differs most from what the rep has been doing",
    "the estimated gain if last month's lowest-effect quarter had been the model's top picks",
]

DEFINITIONS = {
    "activity": "a row of activities in the window whose type is not 'none' ('none' records a deliberate wait)",
    "outputs": "response rows replied or positive_reply (replies), connected (connects), meeting_booked",
    "with_output": "activities with at least one output",
    "output_rate": "with_output / activities",
    "negatives": "response rows negative_reply or unsubscribed",
    "negatives_per_1000": "negatives per 1,000 touches (activities)",
    "advanced": "activities after which the deal recorded an outcome or reached a higher stage within the outcome "
                "horizon",
    "labelled": "activities whose outcome horizon had closed by the end of the data",
    "outcome_rate": "advanced / labelled",
    "deal_advances": "stage entries above every earlier stage of the deal (the first stage and closed-lost excluded) "
                     "in the window, on the rep's deals",
    "recorded_outcomes": "rows of outcomes in the window on the rep's deals",
    "automated_share": "automated activities / activities",
    "caused_estimate": "sum over activities of the estimated change in P(deal advances within the horizon) if done, "
                       "vs waiting: the advances the activities caused, by the model's estimate",
    "caused_low/high": "sums of the per-activity 90% interval ends (conservative)",
    "execution_offset_estimate": "the rep's own logit offset in the effects model, fitted on the window (0 = a "
                                 "typical rep): effects are the model's for this rep's activities done by this rep, "
                                 "with a typical deal",
    "indistinguishable_from_waiting": "activities whose 90% effect interval contains zero",
    "extrapolated": "activities whose effect estimate is an extrapolation (no similar states saw such an activity)",
}


def load_inputs(data: Path, bundle, bundle_dir: Path | None, model: dict, cfg, progress=None) -> ReportInputs:  # noqa: ANN001
    """Read the dataset, build its features with the bundle's settings, find the effects model."""
    from reports.effects_source import load_effect_source
    from training import data as data_mod
    from training.promote import config_for_bundle

    progress = progress or (lambda _: None)
    progress("report: reading the data and building features")
    loaded = data_mod.load_table(Path(data), config_for_bundle(cfg, bundle))
    source, note = load_effect_source(bundle, bundle_dir)
    return ReportInputs(loaded.dataset, loaded.table.frame, bundle, model, source, note, loaded.table.data_end)
