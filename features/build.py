"""Point-in-time features and labels: one code path for training and serving.

``build_training_frame`` turns a whole dataset into one row per activity (features +
labels); ``build_serving_frame`` turns API request items (shared/API.md) into the same
feature columns. Both convert their input into the same column arrays and call
:func:`_compute`, so a feature can only be defined once.

Point-in-time rule: the features of an activity at ``t`` use only facts that happened
strictly before ``t`` and, where ``logged_at`` exists, were logged before ``t``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any

import numpy as np
import pandas as pd

from features import contract as c
from features import schema as s
from features.advances import advance_events, stage_advance_mask  # noqa: F401 - advance_events re-exported
from features.dataset import Dataset
from features.transforms import MS_PER_DAY, FactIndex, Query, days_between, make_keyer

logger = logging.getLogger(__name__)

NO_TIME = np.iinfo(np.int64).min
REP_PRIOR_STRENGTH = 20.0  # pseudo-activities behind the rep track-record prior
ATTENTION_WINDOW_DAYS = 90  # the rep's usual attention per deal: their activities of the last 90 days
ATTENTION_MIN_ACTIVITIES = 10  # fewer of them: the rep's usual is unknown (NaN)
AMOUNT_MIN_DEALS = 5  # earlier deals of the same product and team needed for a "typical" amount
GROUP_SEP = "\x1f"  # joins product and team into one amount-group key
NO_TEAM = "\x00"  # the team part of the key when the team is unknown


@dataclass(frozen=True)
class Horizons:
    """Label horizons in days (shared/DATA_CONTRACT.md defaults)."""

    outcome_days: int = c.OUTCOME_HORIZON_DAYS
    output_days: int = c.OUTPUT_HORIZON_DAYS


@dataclass
class TrainingTable:
    """One row per activity: ids, ``occurred_at``, features, labels, leak flag.

    Features use only facts known before ``occurred_at``; labels look at
    ``(occurred_at, occurred_at + horizon]`` and are NaN when censored at ``data_end``.
    """

    frame: pd.DataFrame
    features: list[s.Feature]
    data_end: pd.Timestamp
    stats: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class CustomField:
    """A custom column of a contract table that becomes a feature."""

    table: str
    column: str
    kind: str  # numeric | categorical
    timing: str = s.PLAN

    @property
    def name(self) -> str:
        return s.custom_feature_name(self.table, self.column)

    def feature(self) -> s.Feature:
        unit = "" if self.kind == s.CATEGORICAL else "value"
        return s.Feature(self.name, "custom", self.kind, self.timing, f"{self.table}.{self.column} = {{v}}", unit)


@dataclass
class RepRecord:
    """What serving knows of a rep: attributes and the labelled track record at snapshot time."""

    team: str | None = None
    hired_at_ms: int = NO_TIME
    outcome_sum: float = 0.0
    labelled: float = 0.0
    # hand-made touches per deal-day (feature hand_touches_deal_per_day) summed over the rep's
    # activities of the last ATTENTION_WINDOW_DAYS, and how many there were
    attention_sum: float = 0.0
    attention_n: float = 0.0


@dataclass
class ServingContext:
    """Facts the service needs beyond the request: reps and the global prior (from the bundle)."""

    reps: dict[str, RepRecord] = field(default_factory=dict)
    prior_sum: float = 0.0
    prior_n: float = 0.0
    custom_fields: list[CustomField] = field(default_factory=list)
    timezone: str = "UTC"
    # amount group "<product>\x1f<team>" -> (sum of log amount, deals) over deals created before the snapshot
    amount_groups: dict[str, tuple[float, float]] = field(default_factory=dict)


def context_to_dict(context: ServingContext) -> dict[str, Any]:
    """JSON-ready form of a serving context (stored in the model bundle)."""
    return {
        "reps": {rid: {"team": r.team, "hired_at_ms": None if r.hired_at_ms == NO_TIME else int(r.hired_at_ms),
                       "outcome_sum": r.outcome_sum, "labelled": r.labelled,
                       "attention_sum": r.attention_sum, "attention_n": r.attention_n}
                 for rid, r in context.reps.items()},
        "prior_sum": context.prior_sum,
        "prior_n": context.prior_n,
        "custom_fields": [{"table": f.table, "column": f.column, "kind": f.kind, "timing": f.timing}
                          for f in context.custom_fields],
        "timezone": context.timezone,
        "amount_groups": {k: [v[0], v[1]] for k, v in context.amount_groups.items()},
    }


def context_from_dict(values: dict[str, Any]) -> ServingContext:
    """Inverse of :func:`context_to_dict`."""
    reps = {
        rid: RepRecord(team=r.get("team"), hired_at_ms=NO_TIME if r.get("hired_at_ms") is None else int(r["hired_at_ms"]),
                       outcome_sum=float(r.get("outcome_sum", 0.0)), labelled=float(r.get("labelled", 0.0)),
                       attention_sum=float(r.get("attention_sum", 0.0)), attention_n=float(r.get("attention_n", 0.0)))
        for rid, r in values.get("reps", {}).items()
    }
    return ServingContext(
        reps=reps,
        prior_sum=float(values.get("prior_sum", 0.0)),
        prior_n=float(values.get("prior_n", 0.0)),
        custom_fields=[CustomField(**f) for f in values.get("custom_fields", [])],
        timezone=values.get("timezone", "UTC"),
        amount_groups={k: (float(v[0]), float(v[1])) for k, v in values.get("amount_groups", {}).items()},
    )


# ----------------------------------------------------------------------------------------
# Column arrays: the common input of both paths
# ----------------------------------------------------------------------------------------
Cols = dict[str, np.ndarray]


def _ts_ms(values: pd.Series) -> np.ndarray:
    ns = values.to_numpy(dtype="datetime64[ns]", na_value=np.datetime64("NaT")).astype(np.int64)
    out = ns // 1_000_000
    out[ns == np.iinfo(np.int64).min] = NO_TIME
    return out


def _frame_cols(frame: pd.DataFrame | None, table: str) -> Cols:
    """Typed frame -> column arrays (timestamps ms, strings object/None, numbers float)."""
    spec = c.TABLES[table]
    out: Cols = {}
    if frame is None:
        n = 0
        frame = pd.DataFrame()
    else:
        n = len(frame)
    for col in frame.columns:
        kind = spec.kind(col)
        v = frame[col]
        if kind == c.TIMESTAMP:
            out[col] = _ts_ms(v)
        elif kind in (c.FLOAT, c.INT, c.BOOL) or pd.api.types.is_numeric_dtype(v) or pd.api.types.is_bool_dtype(v):
            out[col] = v.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            out[col] = v.to_numpy(dtype=object, na_value=None)
    out["__n__"] = np.array([n])
    return out


def _n(cols: Cols) -> int:
    return int(cols["__n__"][0])


def _get_str(cols: Cols, name: str) -> np.ndarray:
    v = cols.get(name)
    return v if v is not None else np.full(_n(cols), None, dtype=object)


def _get_num(cols: Cols, name: str) -> np.ndarray:
    v = cols.get(name)
    return v if v is not None else np.full(_n(cols), np.nan)


def _get_ts(cols: Cols, name: str) -> np.ndarray:
    v = cols.get(name)
    return v if v is not None else np.full(_n(cols), NO_TIME, dtype=np.int64)


_SMALL_ARRAY = 4096  # up to this many values plain Python beats pandas' per-call cost (serving requests)


def _factorize_small(values: np.ndarray) -> tuple[np.ndarray, int] | None:
    """``pd.factorize`` of a short array of str/None ids, with a dict (same codes: order of first
    appearance, None -> -1); None when a value is neither (then pandas decides what is missing)."""
    seen: dict[str, int] = {}
    codes = []
    for v in values.tolist():
        if v is None:
            codes.append(-1)
        elif type(v) is str:
            codes.append(seen.setdefault(v, len(seen)))
        else:
            return None
    return np.array(codes, dtype=np.int64), len(seen)


def _codes(*arrays: np.ndarray) -> tuple[list[np.ndarray], int]:
    """Factorize several id arrays jointly; None -> -1."""
    lengths = [len(a) for a in arrays]
    joined = np.concatenate(arrays) if arrays else np.array([], dtype=object)
    if len(joined) == 0:
        return [np.full(n, -1, dtype=np.int64) for n in lengths], 0
    small = _factorize_small(joined) if len(joined) <= _SMALL_ARRAY and joined.dtype == object else None
    if small is not None:
        codes, n_uniques = small
    else:
        codes, uniques = pd.factorize(joined, use_na_sentinel=True)
        codes, n_uniques = codes.astype(np.int64), len(uniques)
    out, i = [], 0
    for n in lengths:
        out.append(codes[i : i + n])
        i += n
    return out, n_uniques


def _lookup(codes: np.ndarray, key_codes: np.ndarray, values: np.ndarray, n_codes: int, fill: Any) -> np.ndarray:
    """values of the row whose key code equals ``codes`` (last row wins), else ``fill``."""
    dtype = values.dtype if values.dtype != object else object
    table = np.full(max(n_codes, 1), fill, dtype=dtype)
    ok = key_codes >= 0
    table[key_codes[ok]] = values[ok]
    out = table[np.where(codes >= 0, codes, 0)]
    if len(out):
        out = out.copy()
        out[codes < 0] = fill
    return out


# ----------------------------------------------------------------------------------------
# The one computation
# ----------------------------------------------------------------------------------------
def _compute(
    tables: dict[str, Cols],
    targets: np.ndarray,
    custom_fields: list[CustomField],
    timezone: str,
    horizons: Horizons,
    data_end_ms: int | None,
    serving: ServingContext | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Features (and, when ``data_end_ms`` is given, labels) for activities ``targets``.

    Returns (feature columns, label columns); arrays aligned with ``targets``.
    """
    A = tables[c.ACTIVITIES]
    R = tables.get(c.RESPONSES)
    S = tables.get(c.DEAL_STAGES)
    O = tables.get(c.OUTCOMES)
    D = tables.get(c.DEALS)
    C = tables.get(c.CONTACTS)
    AC = tables.get(c.ACCOUNTS)
    RP = tables.get(c.REPS)
    empty = {"__n__": np.array([0])}
    R, S, O, D, C, AC, RP = (x if x is not None else empty for x in (R, S, O, D, C, AC, RP))

    n = _n(A)
    t = A[c.OCCURRED_AT]
    logged = _get_ts(A, c.LOGGED_AT)
    avail = np.where(logged == NO_TIME, t, np.maximum(t, logged))
    a_type = _get_str(A, c.TYPE)

    # entity codes, joint over every table that names the entity
    (a_deal, s_deal, o_deal, d_deal), n_deals = _codes(
        _get_str(A, c.DEAL_ID), _get_str(S, c.DEAL_ID), _get_str(O, c.DEAL_ID), _get_str(D, c.DEAL_ID)
    )
    (a_contact, c_contact), n_contacts = _codes(_get_str(A, c.CONTACT_ID), _get_str(C, c.CONTACT_ID))
    a_account_raw = _get_str(A, c.ACCOUNT_ID)
    (a_acc, d_acc, c_acc, ac_acc), n_accounts = _codes(
        a_account_raw, _get_str(D, c.ACCOUNT_ID), _get_str(C, c.ACCOUNT_ID), _get_str(AC, c.ACCOUNT_ID)
    )
    # account filled from the deal, then from the contact, when absent
    missing = a_acc < 0
    if missing.any():
        from_deal = _lookup(a_deal, d_deal, d_acc, n_deals, -1)
        from_contact = _lookup(a_contact, c_contact, c_acc, n_contacts, -1)
        a_acc = np.where(missing, np.where(from_deal >= 0, from_deal, from_contact), a_acc)
    (a_rep, rp_rep, d_owner), n_reps = _codes(_get_str(A, c.REP_ID), _get_str(RP, c.REP_ID), _get_str(D, c.OWNER_REP_ID))

    # --- time keys --------------------------------------------------------------------
    r_act = np.full(_n(R), -1, dtype=np.int64)
    if _n(R):
        # the activity each response belongs to (the last row wins on a repeated id, as in every
        # join here; ids may be missing or repeated in a request's history)
        (a_ids, r_ids), n_ids = _codes(_get_str(A, c.ACTIVITY_ID), _get_str(R, c.ACTIVITY_ID))
        r_act = _lookup(r_ids, a_ids, np.arange(n, dtype=np.int64), n_ids, -1)
    r_t = _get_ts(R, c.OCCURRED_AT)
    s_t = _get_ts(S, c.ENTERED_AT)
    o_t = _get_ts(O, c.OCCURRED_AT)
    horizon_ms = horizons.outcome_days * MS_PER_DAY
    margin = max(90 * MS_PER_DAY, horizon_ms, horizons.output_days * MS_PER_DAY) + 1
    times = [t, avail, r_t[r_t != NO_TIME], s_t[s_t != NO_TIME], o_t[o_t != NO_TIME]]
    keyer = make_keyer(times, max(n_deals, n_contacts, n_accounts, n_reps, 1), margin)

    qt = t[targets]
    feats: dict[str, np.ndarray] = {}

    # --- the activity itself --------------------------------------------------------------
    feats[c.TYPE] = a_type[targets]
    feats[c.DIRECTION] = _get_str(A, c.DIRECTION)[targets]
    feats[c.IS_AUTOMATED] = _get_num(A, c.IS_AUTOMATED)[targets]
    feats[c.PERSONALIZATION] = _get_num(A, c.PERSONALIZATION)[targets]
    feats[c.SEQUENCE_STEP] = _get_num(A, c.SEQUENCE_STEP)[targets]
    hour, weekday = _local_hour_weekday(qt, timezone)
    feats["hour_local"] = hour
    feats["weekday_local"] = weekday
    feats[c.DURATION_S] = _get_num(A, c.DURATION_S)[targets]

    # --- cadence and fatigue (touches: every activity except a deliberate `none`) --------
    is_touch = a_type != "none"
    automated = np.nan_to_num(_get_num(A, c.IS_AUTOMATED), nan=0.0)
    t_idx = np.flatnonzero(is_touch)
    queries = {"contact": Query(a_contact[targets], qt), "deal": Query(a_deal[targets], qt)}
    touch_idx: dict[str, FactIndex] = {}
    for who, codes in (("contact", a_contact), ("deal", a_deal)):
        idx = touch_idx[who] = FactIndex(codes[t_idx], t[t_idx], avail[t_idx], {"auto": automated[t_idx]},
                                         keyer=keyer)
        qc = queries[who]
        for w, sums in zip(s.WINDOWS_DAYS, idx.window_sums(qc, [w * MS_PER_DAY for w in s.WINDOWS_DAYS]), strict=True):
            feats[f"touches_{who}_{w}d"] = sums
        n30 = feats[f"touches_{who}_30d"]
        auto30 = idx.window_sum(qc, 30 * MS_PER_DAY, "auto")
        with np.errstate(invalid="ignore", divide="ignore"):
            feats[f"automated_share_{who}_30d"] = np.where(n30 > 0, auto30 / np.maximum(n30, 1), np.nan)
        feats[f"days_since_touch_{who}"] = days_between(qt, idx.last_pos(qc))

    # --- responsiveness ---------------------------------------------------------------------
    resp = _get_str(R, c.RESPONSE)
    r_ok = (r_act >= 0) & (r_t != NO_TIME)
    r_known = np.where(r_ok, np.maximum(r_t, avail[np.maximum(r_act, 0)]), NO_TIME)
    meaningful = r_ok & _is_in(resp, c.MEANINGFUL_RESPONSES)
    negative = r_ok & _is_in(resp, c.NEGATIVE_RESPONSES)
    for who, codes in (("contact", a_contact), ("deal", a_deal)):
        qc = queries[who]
        m = np.flatnonzero(meaningful)
        out_idx = FactIndex(codes[r_act[m]], r_t[m], r_known[m], keyer=keyer)
        for w, sums in zip((7, 30, 90), out_idx.window_sums(qc, [w * MS_PER_DAY for w in (7, 30, 90)]), strict=True):
            feats[f"outputs_{who}_{w}d"] = sums
        g = np.flatnonzero(negative)
        neg_idx = FactIndex(codes[r_act[g]], r_t[g], r_known[g], keyer=keyer)
        feats[f"negatives_{who}_30d"] = neg_idx.window_sum(qc, 30 * MS_PER_DAY)
        feats[f"days_since_output_{who}"] = days_between(qt, out_idx.last_pos(qc))

    # --- deal state at t -------------------------------------------------------------------
    s_order = _get_num(S, c.STAGE_ORDER)
    s_ok = (s_deal >= 0) & (s_t != NO_TIME) & ~np.isnan(s_order)
    stage_idx = FactIndex(s_deal[s_ok], s_t[s_ok], weights={"order": s_order[s_ok]}, keyer=keyer)
    qd = a_deal[targets]
    qdeal = queries["deal"]
    order_now, entered = stage_idx.last_value(qdeal, "order")
    days_in_stage = days_between(qt, entered)
    if serving is not None and "__stage_override__" in A:
        # The request states the stage without an entry time: use it, days unknown.
        ov = A["__stage_override__"][targets]
        use = ~np.isnan(ov)
        order_now = np.where(use & np.isnan(order_now), ov, order_now)
    feats[c.STAGE_ORDER] = order_now
    feats["days_in_stage"] = days_in_stage
    created_all = _lookup(a_deal, d_deal, _get_ts(D, c.CREATED_AT), n_deals, NO_TIME)
    created = created_all[targets]
    feats["deal_age_days"] = days_between(qt, np.where(created == NO_TIME, -1, created))
    feats[c.AMOUNT] = _lookup(qd, d_deal, _get_num(D, c.AMOUNT), n_deals, np.nan)
    feats[c.PRODUCT] = _lookup(qd, d_deal, _get_str(D, c.PRODUCT), n_deals, None)

    adv_deal, adv_t = _advance_events(s_deal[s_ok], s_t[s_ok], s_order[s_ok])
    o_ok = (o_deal >= 0) & (o_t != NO_TIME)
    outcome_idx = FactIndex(o_deal[o_ok], o_t[o_ok], keyer=keyer)
    feats["outcomes_deal"] = outcome_idx.window_sum(qdeal, None)
    event_deal = np.concatenate([adv_deal, o_deal[o_ok]])
    event_t = np.concatenate([adv_t, o_t[o_ok]])
    event_idx = FactIndex(event_deal, event_t, keyer=keyer)
    feats["days_since_outcome_deal"] = days_between(qt, event_idx.last_pos(qdeal))

    # people engaged on the deal: first known touch of each (deal, contact) pair
    senior_rank = _seniority_rank(_get_str(C, c.SENIORITY))
    a_senior = _lookup(a_contact, c_contact, senior_rank, n_contacts, 0)
    pair_ok = is_touch & (a_deal >= 0) & (a_contact >= 0)
    p = np.flatnonzero(pair_ok)
    if len(p):
        order = np.argsort(avail[p], kind="stable")
        p = p[order]
        pair_key = a_deal[p] * max(n_contacts, 1) + a_contact[p]
        _, first = np.unique(pair_key, return_index=True)
        p = p[first]
    engaged_idx = FactIndex(a_deal[p], avail[p], weights={"senior": a_senior[p].astype(np.float64)}, keyer=keyer)
    feats["contacts_engaged_deal"] = engaged_idx.window_sum(qdeal, None)
    feats["max_seniority_engaged_deal"] = engaged_idx.running_max(qdeal, "senior", 8)

    # --- contact, account, rep -------------------------------------------------------
    qcon = a_contact[targets]
    feats[c.SENIORITY] = _lookup(qcon, c_contact, _get_str(C, c.SENIORITY), n_contacts, None)
    feats[c.DEPARTMENT] = _lookup(qcon, c_contact, _get_str(C, c.DEPARTMENT), n_contacts, None)
    qacc = a_acc[targets]
    feats[c.INDUSTRY] = _lookup(qacc, ac_acc, _get_str(AC, c.INDUSTRY), n_accounts, None)
    feats[c.EMPLOYEES] = _lookup(qacc, ac_acc, _get_num(AC, c.EMPLOYEES), n_accounts, np.nan)
    feats[c.REGION] = _lookup(qacc, ac_acc, _get_str(AC, c.REGION), n_accounts, None)
    qrep = a_rep[targets]

    labels: dict[str, np.ndarray] = {}
    if serving is None:
        feats[c.TEAM] = _lookup(qrep, rp_rep, _get_str(RP, c.TEAM), n_reps, None)
        hired = _lookup(qrep, rp_rep, _get_ts(RP, c.HIRED_AT), n_reps, NO_TIME)
        feats["rep_tenure_days"] = days_between(qt, np.where(hired == NO_TIME, -1, hired))
        assert data_end_ms is not None
        full_labels = _labels(
            n, t, avail, a_deal, a_acc, r_act, r_t, meaningful, negative, event_deal, event_t,
            d_deal, d_acc, D, n_deals, keyer, horizons, data_end_ms,
        )
        # rep track record: only activities whose outcome horizon had closed before t
        q_rep = Query(qrep, qt)
        rep_sum, rep_n, prior_sum, prior_n = rep_track_record(a_rep, t, avail, full_labels[s.LABEL_OUTCOME],
                                                              horizon_ms, keyer, q_rep)
        labels = {k2: v[targets] for k2, v in full_labels.items()}
    else:
        recs = [serving.reps.get(r) if r is not None else None for r in _get_str(A, c.REP_ID)[targets]]
        feats[c.TEAM] = np.array([r.team if r else None for r in recs], dtype=object)
        hired = np.array([r.hired_at_ms if r else NO_TIME for r in recs], dtype=np.int64)
        feats["rep_tenure_days"] = days_between(qt, np.where(hired == NO_TIME, -1, hired))
        rep_sum = np.array([r.outcome_sum if r else 0.0 for r in recs])
        rep_n = np.array([r.labelled if r else 0.0 for r in recs])
        prior_sum = np.full(len(qt), serving.prior_sum)
        prior_n = np.full(len(qt), serving.prior_n)
    feats["rep_outcome_rate"], feats["rep_labelled_activities"] = rep_rate_features(
        qrep >= 0, rep_sum, rep_n, prior_sum, prior_n)

    # --- how hard the deal is worked, and how big it is, against the usual -----------------
    # Reps work promising deals harder: hand-made touches per day of the deal's life, against
    # the rep's usual over their last 90 days, show what the rep knows of the deal.
    deal_touches = touch_idx.pop("deal")

    def per_day(q: Query, q_t: np.ndarray, q_created: np.ndarray) -> np.ndarray:
        hand = deal_touches.window_sum(q, None) - deal_touches.window_sum(q, None, "auto")
        age = days_between(q_t, np.where(q_created == NO_TIME, -1, q_created))
        return np.where(np.isfinite(age) & q.valid, hand / np.maximum(age, 1.0), np.nan)

    attention = per_day(qdeal, qt, created)
    feats["hand_touches_deal_per_day"] = attention
    if serving is None:
        whole = len(targets) == n and bool(np.array_equal(targets, np.arange(n)))
        every = attention if whole else per_day(Query(a_deal, t), t, created_all)
        usual_sum, usual_n = rep_usual_attention(a_rep, t, avail, every, keyer, q_rep)
        del every
    else:
        usual_sum = np.array([r.attention_sum if r else 0.0 for r in recs])
        usual_n = np.array([r.attention_n if r else 0.0 for r in recs])
    del deal_touches, touch_idx
    feats["deal_attention_vs_rep"] = attention_vs_rep(attention, usual_sum, usual_n)

    # Deal size against earlier deals of the same product owned by the same team (the team
    # of the activity's rep): the amount alone mostly says which segment the deal is in.
    if serving is None:
        d_team = _lookup(d_owner, rp_rep, _get_str(RP, c.TEAM), n_reps, None)
        (d_prod, q_prod), _ = _codes(_get_str(D, c.PRODUCT), feats[c.PRODUCT])
        (d_tm, q_tm), n_teams = _codes(d_team, feats[c.TEAM])
        # group = (product, team or "no team"), as one integer; -1 without a product
        d_key = np.where(d_prod >= 0, d_prod * (n_teams + 1) + np.where(d_tm >= 0, d_tm, n_teams), -1)
        q_key = np.where(q_prod >= 0, q_prod * (n_teams + 1) + np.where(q_tm >= 0, q_tm, n_teams), -1)
        d_log, d_created = _log_amount(_get_num(D, c.AMOUNT)), _get_ts(D, c.CREATED_AT)
        d_ok = (d_key >= 0) & np.isfinite(d_log) & (d_created != NO_TIME) & (d_deal >= 0)
        groups, g_codes = np.unique(d_key[d_ok], return_inverse=True)
        q_codes = np.full(len(q_key), -1, dtype=np.int64)
        if len(groups):
            at = np.minimum(np.searchsorted(groups, q_key), len(groups) - 1)
            q_codes = np.where((q_key >= 0) & (groups[at] == q_key), at, -1)
        g_keyer = make_keyer([d_created[d_ok], qt], max(len(groups), 1), 1)
        g_idx = FactIndex(g_codes.astype(np.int64), d_created[d_ok], weights={"la": d_log[d_ok]}, keyer=g_keyer)
        q_g = Query(q_codes.astype(np.int64), qt)
        g_sum, g_n = g_idx.window_sum(q_g, None, "la"), g_idx.window_sum(q_g, None)
        del g_idx, q_g
    else:
        empty_group = (0.0, 0.0)
        stats = [serving.amount_groups.get(g, empty_group) if g is not None else empty_group
                 for g in _amount_group(feats[c.PRODUCT], feats[c.TEAM])]
        g_sum = np.array([v[0] for v in stats], dtype=np.float64)
        g_n = np.array([v[1] for v in stats], dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        typical = np.where(g_n >= AMOUNT_MIN_DEALS, g_sum / np.maximum(g_n, 1), np.nan)
        feats["amount_vs_typical"] = np.exp(_log_amount(feats[c.AMOUNT]) - typical)

    # --- custom fields -------------------------------------------------------------------
    for cf in custom_fields:
        feats[cf.name] = _custom_values(cf, tables, targets, a_deal, d_deal, n_deals, a_contact, c_contact,
                                        n_contacts, a_acc, ac_acc, n_accounts, a_rep, rp_rep, n_reps)
    return feats, labels


# ----------------------------------------------------------------------------------------
# What crosses deals and accounts: a rep's track record and usual attention. Named steps so
# that an engine that partitions the history by account (engine/) computes them once over
# every account, exactly as here.
# ----------------------------------------------------------------------------------------
def rep_track_record(a_rep: np.ndarray, t: np.ndarray, avail: np.ndarray, y: np.ndarray, horizon_ms: int,
                     keyer: Any, q_rep: Query) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per query (rep, t): the rep's labelled outcomes known before t, and the same over every rep.

    A labelled activity counts once its outcome horizon has closed and it was logged
    (``max(t + horizon, avail) < query t``).

    Args:
        a_rep: rep code per activity (negative: no rep).
        t: occurred_at per activity (ms).
        avail: when each activity was known (ms).
        y: outcome label per activity (NaN: censored or undefined).
        horizon_ms: the outcome horizon.
        keyer: ``features.transforms.make_keyer`` over every time involved.
        q_rep: the queries (rep code, t).

    Returns:
        (rep outcome sum, rep labelled count, prior outcome sum, prior labelled count) per query.
    """
    known = ~np.isnan(y) & (a_rep >= 0)
    k = np.flatnonzero(known)
    closes = t[k] + horizon_ms
    rep_idx = FactIndex(a_rep[k], closes, np.maximum(closes, avail[k]), {"y": y[k]}, keyer=keyer)
    glob_idx = FactIndex(np.zeros(len(k), dtype=np.int64), closes, np.maximum(closes, avail[k]), {"y": y[k]}, keyer=keyer)
    rep_sum = rep_idx.window_sum(q_rep, None, "y")
    rep_n = rep_idx.window_sum(q_rep, None)
    q_all = Query(np.zeros(len(q_rep), dtype=np.int64), q_rep.t)
    prior_sum = glob_idx.window_sum(q_all, None, "y")
    prior_n = glob_idx.window_sum(q_all, None)
    return rep_sum, rep_n, prior_sum, prior_n


def rep_usual_attention(a_rep: np.ndarray, t: np.ndarray, avail: np.ndarray, every: np.ndarray, keyer: Any,
                        q_rep: Query) -> tuple[np.ndarray, np.ndarray]:
    """Per query (rep, t): sum and count of the rep's deal attention over the last 90 days known before t."""
    ok = np.flatnonzero(np.isfinite(every) & (a_rep >= 0))
    usual_idx = FactIndex(a_rep[ok], t[ok], avail[ok], {"r": every[ok]}, keyer=keyer)
    usual_sum = usual_idx.window_sum(q_rep, ATTENTION_WINDOW_DAYS * MS_PER_DAY, "r")
    usual_n = usual_idx.window_sum(q_rep, ATTENTION_WINDOW_DAYS * MS_PER_DAY)
    return usual_sum, usual_n


def rep_rate_features(has_rep: np.ndarray, rep_sum: np.ndarray, rep_n: np.ndarray, prior_sum: np.ndarray,
                      prior_n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``rep_outcome_rate`` (shrunk to the prior) and ``rep_labelled_activities``; NaN without a rep."""
    with np.errstate(invalid="ignore", divide="ignore"):
        prior = np.where(prior_n > 0, prior_sum / np.maximum(prior_n, 1), np.nan)
        rate = (rep_sum + REP_PRIOR_STRENGTH * prior) / (rep_n + REP_PRIOR_STRENGTH)
    return np.where(has_rep, rate, np.nan), np.where(has_rep, rep_n, np.nan)


def attention_vs_rep(attention: np.ndarray, usual_sum: np.ndarray, usual_n: np.ndarray) -> np.ndarray:
    """``deal_attention_vs_rep``: the deal's attention over the rep's usual (NaN when the usual is unknown)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        usual = np.where(usual_n >= ATTENTION_MIN_ACTIVITIES, usual_sum / np.maximum(usual_n, 1), np.nan)
        return np.where(usual > 0, attention / usual, np.nan)


def rep_margin_ms(horizons: Horizons) -> int:
    """The key margin of ``_compute``'s keyer: every window and horizon fits inside it."""
    return max(90 * MS_PER_DAY, horizons.outcome_days * MS_PER_DAY, horizons.output_days * MS_PER_DAY) + 1


def _amount_group(product: np.ndarray, team: np.ndarray) -> np.ndarray:
    """Amount-group key per row: product and team joined; None where the product is unknown."""
    return np.array([None if _missing(p) else f"{p}{GROUP_SEP}{NO_TEAM if _missing(tm) else tm}"
                     for p, tm in zip(product, team, strict=True)], dtype=object)


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and value != value)


def _log_amount(amount: np.ndarray) -> np.ndarray:
    """log of positive amounts; NaN for missing, zero or negative ones."""
    a = np.asarray(amount, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(a > 0, np.log(np.where(a > 0, a, 1.0)), np.nan)


def _custom_values(cf, tables, targets, a_deal, d_deal, n_deals, a_contact, c_contact, n_contacts,
                   a_acc, ac_acc, n_accounts, a_rep, rp_rep, n_reps) -> np.ndarray:
    fill: Any = np.nan if cf.kind == s.NUMERIC else None
    cols = tables.get(cf.table)
    raw = None if cols is None else cols.get(cf.column)
    if raw is None:
        return np.full(len(targets), fill, dtype=np.float64 if cf.kind == s.NUMERIC else object)
    if cf.kind == s.NUMERIC:
        raw = _to_float(raw) if raw.dtype == object else raw.astype(np.float64)
    else:
        raw = np.array([None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in raw], dtype=object) if raw.dtype != object else raw
    if cf.table == c.ACTIVITIES:
        return raw[targets]
    key, codes, n = {
        c.DEALS: (d_deal, a_deal, n_deals),
        c.CONTACTS: (c_contact, a_contact, n_contacts),
        c.ACCOUNTS: (ac_acc, a_acc, n_accounts),
        c.REPS: (rp_rep, a_rep, n_reps),
    }[cf.table]
    return _lookup(codes[targets], key, raw, n, fill)


def _is_in(values: np.ndarray, names: Any) -> np.ndarray:
    """``np.isin(values, list(names))`` for response names (str or None); a set lookup for small arrays."""
    if len(values) <= _SMALL_ARRAY and values.dtype == object:
        return np.fromiter((v in names for v in values.tolist()), dtype=bool, count=len(values))
    return np.isin(values, list(names))


_EXACT_INT = 2**53  # ints below this convert to float64 exactly


def _to_float(raw: np.ndarray) -> np.ndarray:
    """An object array of custom values as float64, unparseable text -> NaN (``pd.to_numeric(errors="coerce")``).

    Plain numbers and None (what a request's JSON holds) are converted without pandas; anything
    else (text, bools, huge ints) goes through ``pd.to_numeric`` as a whole, so results are the same.
    """
    values = raw.tolist() if len(raw) <= _SMALL_ARRAY else None
    if values is not None and all(v is None or type(v) is float or (type(v) is int and -_EXACT_INT < v < _EXACT_INT)
                                  for v in values):
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return pd.to_numeric(pd.Series(raw, dtype=object), errors="coerce").to_numpy(np.float64)


def _seniority_rank(values: np.ndarray) -> np.ndarray:
    return np.array([s.SENIORITY_RANK.get(v, 0) if v is not None else 0 for v in values], dtype=np.int64)


def _local_hour_weekday(t_ms: np.ndarray, timezone: str) -> tuple[np.ndarray, np.ndarray]:
    if len(t_ms) == 0:
        return np.array([], dtype=np.float64), np.array([], dtype=np.float64)
    if timezone.upper() == "UTC":
        hour = (t_ms // 3_600_000) % 24
        weekday = (t_ms // MS_PER_DAY + 3) % 7  # 1970-01-01 was a Thursday
        return hour.astype(np.float64), weekday.astype(np.float64)
    idx = pd.DatetimeIndex(t_ms.astype("datetime64[ms]")).tz_localize("UTC").tz_convert(timezone)
    return idx.hour.to_numpy(np.float64), idx.day_of_week.to_numpy(np.float64)


def _advance_events(deal: np.ndarray, entered: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The stage rows that are advances (``features.advances``: never a deal's first row, never closed-lost)."""
    if len(deal) == 0:
        return deal.astype(np.int64), entered.astype(np.int64)
    adv = stage_advance_mask(deal, entered, order)
    return deal[adv].astype(np.int64), entered[adv].astype(np.int64)


def _labels(n, t, avail, a_deal, a_acc, r_act, r_t, meaningful, negative, event_deal, event_t,
            d_deal, d_acc, D, n_deals, keyer, horizons: Horizons, data_end_ms: int) -> dict[str, np.ndarray]:
    """outcome / output / negative per activity (NaN = censored or undefined) and the leak flag."""
    h_out = horizons.outcome_days * MS_PER_DAY
    h_resp = horizons.output_days * MS_PER_DAY
    event_idx = FactIndex(event_deal, event_t, keyer=keyer)
    hit, first = event_idx.any_in_range(Query(a_deal, t), t, t + h_out)
    outcome = np.where(a_deal >= 0, hit.astype(np.float64), np.nan)
    first_event = np.where(a_deal >= 0, first, -1)

    # activities without a deal: through the account's deals open at t
    no_deal = np.flatnonzero((a_deal < 0) & (a_acc >= 0))
    if len(no_deal) and _n(D):
        created = _get_ts(D, c.CREATED_AT)
        closed = _get_ts(D, c.CLOSED_AT)
        deals = pd.DataFrame({"acc": d_acc, "deal": d_deal, "created": created, "closed": closed})
        deals = deals[(deals["acc"] >= 0) & (deals["deal"] >= 0)]
        q = pd.DataFrame({"row": no_deal, "acc": a_acc[no_deal], "t": t[no_deal]})
        pairs = q.merge(deals, on="acc", how="inner")
        is_open = ((pairs["created"] == NO_TIME) | (pairs["created"] <= pairs["t"])) & (
            (pairs["closed"] == NO_TIME) | (pairs["closed"] > pairs["t"])
        )
        pairs = pairs[is_open]
        if len(pairs):
            pt = pairs["t"].to_numpy(np.int64)
            ph, pf = event_idx.any_in_range(Query(pairs["deal"].to_numpy(np.int64), pt), pt, pt + h_out)
            agg = pd.DataFrame({"row": pairs["row"].to_numpy(), "hit": ph, "first": np.where(ph, pf, np.iinfo(np.int64).max)})
            agg = agg.groupby("row").agg(hit=("hit", "max"), first=("first", "min"))
            rows = agg.index.to_numpy(np.int64)
            outcome[rows] = agg["hit"].to_numpy(np.float64)
            first_event[rows] = np.where(agg["hit"].to_numpy(bool), agg["first"].to_numpy(np.int64), -1)
    outcome[t + h_out > data_end_ms] = np.nan
    leak = (first_event >= 0) & (avail > first_event)

    # outputs: responses to the activity itself within the horizon
    ok = (r_act >= 0) & (r_t >= t[np.maximum(r_act, 0)]) & (r_t <= t[np.maximum(r_act, 0)] + h_resp)
    output = np.zeros(n)
    neg = np.zeros(n)
    np.maximum.at(output, r_act[ok & meaningful], 1.0)
    np.maximum.at(neg, r_act[ok & negative], 1.0)
    censored = t + h_resp > data_end_ms
    output[censored] = np.nan
    neg[censored] = np.nan
    return {s.LABEL_OUTCOME: outcome, s.LABEL_OUTPUT: output, s.LABEL_NEGATIVE: neg, s.LEAK_FLAG: leak}


# ----------------------------------------------------------------------------------------
# Training path
# ----------------------------------------------------------------------------------------
def custom_fields_of(dataset: Dataset) -> list[CustomField]:
    """Custom fields of the dataset that become features, in table then file order."""
    out = []
    for table in (c.ACTIVITIES, c.DEALS, c.CONTACTS, c.ACCOUNTS, c.REPS):
        frame = dataset.get(table)
        if frame is None:
            continue
        for col in dataset.custom_fields.get(table, c.custom_columns(table, list(frame.columns))):
            kind = s.NUMERIC if pd.api.types.is_numeric_dtype(frame[col]) else s.CATEGORICAL
            timing = s.EXECUTION if f"{table}.{col}" in dataset.execution_time_fields else s.PLAN
            out.append(CustomField(table, col, kind, timing))
    return out


def _cut_until(dataset: Dataset, until_ms: int) -> dict[str, Cols]:
    """Column arrays of the facts known before ``until`` (point-in-time view of the dataset)."""
    tables: dict[str, Cols] = {}
    for name, frame in dataset.tables.items():
        cols = _frame_cols(frame, name)
        keep = None
        if name == c.ACTIVITIES:
            t = cols[c.OCCURRED_AT]
            lg = cols.get(c.LOGGED_AT)
            known = t if lg is None else np.where(lg == NO_TIME, t, np.maximum(t, lg))
            keep = known < until_ms
        elif name in (c.RESPONSES, c.OUTCOMES):
            keep = cols[c.OCCURRED_AT] < until_ms
        elif name == c.DEAL_STAGES:
            keep = cols[c.ENTERED_AT] < until_ms
        if keep is not None:
            cols = {k: (v[keep] if k != "__n__" else np.array([int(keep.sum())])) for k, v in cols.items()}
        tables[name] = cols
    return tables


def dataset_end(dataset: Dataset) -> pd.Timestamp:
    """The last event of a dataset (what ``build_training_frame`` censors labels at without ``until``)."""
    tables = {name: _frame_cols(dataset.tables[name][[col]], name)
              for name, col in ((c.ACTIVITIES, c.OCCURRED_AT), (c.RESPONSES, c.OCCURRED_AT),
                                (c.DEAL_STAGES, c.ENTERED_AT), (c.OUTCOMES, c.OCCURRED_AT))
              if name in dataset.tables and col in dataset.tables[name].columns}
    return pd.Timestamp(_data_end_ms(tables) * 1_000_000, tz="UTC")


def _data_end_ms(tables: dict[str, Cols]) -> int:
    ends = []
    for name, col in ((c.ACTIVITIES, c.OCCURRED_AT), (c.RESPONSES, c.OCCURRED_AT),
                      (c.DEAL_STAGES, c.ENTERED_AT), (c.OUTCOMES, c.OCCURRED_AT)):
        cols = tables.get(name)
        if cols is not None and _n(cols):
            v = cols[col]
            v = v[v != NO_TIME]
            if len(v):
                ends.append(int(v.max()))
    if not ends:
        raise ValueError("the dataset has no timestamps")
    return max(ends)


def build_training_frame(
    dataset: Dataset,
    *,
    until: pd.Timestamp | str | None = None,
    horizons: Horizons = Horizons(),
    timezone: str = "UTC",
    data_end: pd.Timestamp | None = None,
) -> TrainingTable:
    """One row per activity known before ``until``: ids, features, labels.

    Features of an activity at ``t`` use only facts known strictly before ``t``. Labels
    are NaN where their horizon passes ``data_end`` (``until``, or the last event of the
    data), so they count only outcomes that had happened by then.

    ``data_end`` (without ``until``) states the end of the data from outside: an engine
    that builds a larger dataset part by part passes the end of the whole (engine/).
    """
    if until is not None:
        until_ts = pd.Timestamp(until)
        until_ts = until_ts.tz_localize("UTC") if until_ts.tzinfo is None else until_ts.tz_convert("UTC")
        tables = _cut_until(dataset, int(until_ts.value // 1_000_000))
        data_end_ms = int(until_ts.value // 1_000_000)
    else:
        tables = {name: _frame_cols(frame, name) for name, frame in dataset.tables.items()}
        data_end_ms = _data_end_ms(tables) if data_end is None else int(pd.Timestamp(data_end).value // 1_000_000)
    if c.ACTIVITIES not in tables:
        raise ValueError("the dataset has no activities table")
    A = tables[c.ACTIVITIES]
    custom = custom_fields_of(dataset)
    n = _n(A)
    feats, labels = _compute(tables, np.arange(n), custom, timezone, horizons, data_end_ms)
    cols: dict[str, Any] = {}
    cols[c.ACTIVITY_ID] = pd.array(A[c.ACTIVITY_ID], dtype="string")
    cols[c.OCCURRED_AT] = pd.to_datetime(A[c.OCCURRED_AT], unit="ms", utc=True).astype(c.TIMESTAMP_DTYPE)
    for idc in (c.DEAL_ID, c.CONTACT_ID, c.REP_ID):
        cols[idc] = pd.array(_get_str(A, idc), dtype="string")
    cols[c.ACCOUNT_ID] = _filled_account_ids(A, tables)
    features = feature_list(custom)
    frame = pd.DataFrame(cols)
    frame = pd.concat([frame, _feature_frame(feats, features)], axis=1)
    for name in (s.LABEL_OUTCOME, s.LABEL_OUTPUT, s.LABEL_NEGATIVE):
        frame[name] = labels[name]
    frame[s.LEAK_FLAG] = labels[s.LEAK_FLAG]
    frame = frame.sort_values([c.OCCURRED_AT, c.ACTIVITY_ID], kind="stable", ignore_index=True)
    stats = {
        "activities": n,
        "outcome_labelled": int(frame[s.LABEL_OUTCOME].notna().sum()),
        "output_labelled": int(frame[s.LABEL_OUTPUT].notna().sum()),
        "logged_after_outcome": int(frame[s.LEAK_FLAG].sum()),
    }
    end = pd.Timestamp(data_end_ms * 1_000_000, tz="UTC")
    return TrainingTable(frame, features, end, stats)


def _filled_account_ids(A: Cols, tables: dict[str, Cols]) -> pd.array:
    """activities.account_id, filled from the deal, then the contact, when absent."""
    acc = pd.Series(_get_str(A, c.ACCOUNT_ID), dtype="string")
    for table, key in ((c.DEALS, c.DEAL_ID), (c.CONTACTS, c.CONTACT_ID)):
        cols = tables.get(table)
        if cols is None or c.ACCOUNT_ID not in cols or not acc.isna().any():
            continue
        mapping = pd.Series(cols[c.ACCOUNT_ID], index=cols[key], dtype="string")
        mapping = mapping[~mapping.index.duplicated(keep="last")]
        acc = acc.fillna(pd.Series(_get_str(A, key), dtype="string").map(mapping))
    return acc.array


def feature_list(custom: list[CustomField]) -> list[s.Feature]:
    return [*s.BASE_FEATURES, *(cf.feature() for cf in custom)]


def _feature_frame(feats: dict[str, np.ndarray], features: list[s.Feature]) -> pd.DataFrame:
    data = {}
    for f in features:
        v = feats[f.name]
        if f.kind == s.CATEGORICAL:
            data[f.name] = pd.array(v, dtype="string")
        else:
            data[f.name] = np.asarray(v, dtype=np.float64)
    return pd.DataFrame(data)


# ----------------------------------------------------------------------------------------
# Serving path
# ----------------------------------------------------------------------------------------
_HISTORY_TABLES = (c.ACTIVITIES, c.RESPONSES, c.DEAL_STAGES, c.OUTCOMES, c.CONTACTS)


_EPOCH = datetime(1970, 1, 1, tzinfo=dt_timezone.utc)


def _parse_ts(value: Any) -> int:
    """A request timestamp (ISO 8601 string or datetime; no zone = UTC) -> epoch ms."""
    if value is None:
        return NO_TIME
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            pass
    if isinstance(value, datetime) and not isinstance(value, pd.Timestamp):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt_timezone.utc)
        delta = value - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
    ts = pd.Timestamp(value)
    if ts is pd.NaT:
        return NO_TIME
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.value // 1_000_000)


def _num(value: Any) -> float:
    if value is None:
        return np.nan
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    return float(value)


def _rows_to_cols(table: str, rows: list[dict[str, Any]], prefix: str, extra_cols: set[str]) -> Cols:
    """Request rows (dicts of one contract table) -> column arrays, ids namespaced by item."""
    spec = c.TABLES[table]
    cols: Cols = {"__n__": np.array([len(rows)])}
    names = [col.name for col in spec.columns] + sorted(extra_cols)
    for name in names:
        kind = spec.kind(name)
        vals = [r.get(name) for r in rows]
        if kind == c.TIMESTAMP:
            cols[name] = np.array([_parse_ts(v) for v in vals], dtype=np.int64)
        elif kind in (c.FLOAT, c.INT, c.BOOL):
            cols[name] = np.array([_num(v) for v in vals], dtype=np.float64)
        elif kind == c.STR and name.endswith("_id"):
            cols[name] = np.array([None if v is None else f"{prefix}{v}" for v in vals], dtype=object)
        elif kind == c.STR:
            cols[name] = np.array([None if v is None else str(v) for v in vals], dtype=object)
        else:  # custom field: keep raw values; typed by the CustomField later
            cols[name] = np.array(vals, dtype=object)
    return cols


def _concat_cols(parts: list[Cols]) -> Cols:
    if len(parts) == 1:  # one item's rows (a request of one item): already fresh arrays of their own
        return parts[0]
    names: list[str] = []
    for p in parts:
        for k in p:
            if k != "__n__" and k not in names:
                names.append(k)
    out: Cols = {"__n__": np.array([sum(_n(p) for p in parts)])}
    for k in names:
        arrays = []
        for p in parts:
            v = p.get(k)
            if v is None:
                proto = next(q[k] for q in parts if k in q)
                fill = NO_TIME if proto.dtype == np.int64 else (np.nan if proto.dtype == np.float64 else None)
                v = np.full(_n(p), fill, dtype=proto.dtype)
            arrays.append(v)
        out[k] = np.concatenate(arrays)
    return out


def serving_tables(items: list[dict[str, Any]], context: ServingContext) -> tuple[dict[str, Cols], np.ndarray]:
    """Request items -> column arrays of every table, and the row of each item's activity.

    Ids are namespaced per item (``"<i>|id"``) so items never see each other's history.
    The item's own activity is appended after its history; history rows at or after its
    ``occurred_at`` are kept but, like any later fact, never reach its features.
    """
    custom_by_table: dict[str, set[str]] = {}
    for cf in context.custom_fields:
        custom_by_table.setdefault(cf.table, set()).add(cf.column)
    parts: dict[str, list[Cols]] = {name: [] for name in c.TABLES}
    targets = []
    offset = 0
    for i, item in enumerate(items):
        prefix = f"{i}|"
        activity = dict(item.get("activity") or {})
        deal = item.get("deal") or None
        contact = item.get("contact") or None
        account = item.get("account") or None
        history = item.get("history") or {}
        if deal:
            activity.setdefault(c.DEAL_ID, deal.get(c.DEAL_ID) or "__deal__")
            deal = {**deal, c.DEAL_ID: activity[c.DEAL_ID]}
        if contact:
            activity.setdefault(c.CONTACT_ID, contact.get(c.CONTACT_ID) or "__contact__")
            contact = {**contact, c.CONTACT_ID: activity[c.CONTACT_ID]}
        if account:
            activity.setdefault(c.ACCOUNT_ID, account.get(c.ACCOUNT_ID) or "__account__")
            account = {**account, c.ACCOUNT_ID: activity[c.ACCOUNT_ID]}
        activity.setdefault(c.ACTIVITY_ID, "__item__")
        hist_acts = [r for r in (history.get(c.ACTIVITIES) or []) if r.get(c.ACTIVITY_ID) != activity[c.ACTIVITY_ID]]
        acts = [*hist_acts, activity]
        override = np.full(len(acts), np.nan)
        stages = list(history.get(c.DEAL_STAGES) or [])
        if deal and deal.get(c.STAGE_ORDER) is not None:
            entered = deal.get("stage_entered_at")
            if entered is not None:
                stages.append({c.DEAL_ID: deal[c.DEAL_ID], c.STAGE: deal.get(c.STAGE) or "", c.STAGE_ORDER: deal[c.STAGE_ORDER],
                               c.ENTERED_AT: entered})
            else:
                override[-1] = _num(deal[c.STAGE_ORDER])
        a_cols = _rows_to_cols(c.ACTIVITIES, acts, prefix, custom_by_table.get(c.ACTIVITIES, set()))
        a_cols["__stage_override__"] = override
        parts[c.ACTIVITIES].append(a_cols)
        for name, rows in ((c.RESPONSES, history.get(c.RESPONSES)), (c.DEAL_STAGES, stages), (c.OUTCOMES, history.get(c.OUTCOMES))):
            if rows:
                parts[name].append(_rows_to_cols(name, list(rows), prefix, set()))
        contacts = [r for r in (history.get(c.CONTACTS) or [])]
        if contact:
            contacts.append(contact)
        if contacts:
            parts[c.CONTACTS].append(_rows_to_cols(c.CONTACTS, contacts, prefix, custom_by_table.get(c.CONTACTS, set())))
        if deal:
            parts[c.DEALS].append(_rows_to_cols(c.DEALS, [deal], prefix, custom_by_table.get(c.DEALS, set())))
        if account:
            parts[c.ACCOUNTS].append(_rows_to_cols(c.ACCOUNTS, [account], prefix, custom_by_table.get(c.ACCOUNTS, set())))
        offset += len(acts)
        targets.append(offset - 1)
    tables = {name: _concat_cols(p) for name, p in parts.items() if p}
    # rep attributes come from the context, keyed by the un-prefixed rep id
    a = tables[c.ACTIVITIES]
    a[c.REP_ID] = np.array([None if v is None else v.split("|", 1)[1] for v in a[c.REP_ID]], dtype=object)
    return tables, np.asarray(targets, dtype=np.int64)


def build_serving_columns(items: list[dict[str, Any]], context: ServingContext) -> dict[str, np.ndarray]:
    """Feature columns (numpy arrays, one entry per item) for API request items: the fast path."""
    tables, targets = serving_tables(items, context)
    feats, _ = _compute(tables, targets, context.custom_fields, context.timezone, Horizons(), None, serving=context)
    return feats


def build_serving_frame(items: list[dict[str, Any]], context: ServingContext | None = None) -> pd.DataFrame:
    """The same feature columns as :func:`build_training_frame`, for API request items."""
    context = context or ServingContext()
    feats = build_serving_columns(items, context)
    return _feature_frame(feats, feature_list(context.custom_fields))


def rep_context(dataset: Dataset, table: TrainingTable, at: pd.Timestamp | None = None, *,
                custom_fields: list[CustomField] | None = None, timezone: str = "UTC",
                horizons: Horizons = Horizons()) -> ServingContext:
    """What the service needs beyond a request, as of ``at`` (default: the data end).

    Rep attributes, and each rep's track record over activities whose outcome horizon
    had closed (and that were logged) before ``at``: the same facts training uses.
    """
    at = table.data_end if at is None else pd.Timestamp(at)
    at_ms = int(at.value // 1_000_000)
    frame = table.frame
    y = frame[s.LABEL_OUTCOME].to_numpy(np.float64)
    t_ms = _ts_ms(frame[c.OCCURRED_AT])
    closes = t_ms + horizons.outcome_days * MS_PER_DAY
    acts = dataset[c.ACTIVITIES]
    if c.LOGGED_AT in acts:
        logged = pd.Series(_ts_ms(acts[c.LOGGED_AT]), index=acts[c.ACTIVITY_ID].to_numpy(object))
        lg = logged.reindex(frame[c.ACTIVITY_ID].to_numpy(object)).to_numpy(np.int64)
        closes = np.maximum(closes, np.where(lg == NO_TIME, t_ms, lg))
    known = ~np.isnan(y) & (closes < at_ms)
    reps: dict[str, RepRecord] = {}
    reps_frame = dataset.get(c.REPS)
    if reps_frame is not None:
        hired = _ts_ms(reps_frame[c.HIRED_AT]) if c.HIRED_AT in reps_frame else np.full(len(reps_frame), NO_TIME)
        teams = reps_frame[c.TEAM].to_numpy(object, na_value=None) if c.TEAM in reps_frame else [None] * len(reps_frame)
        for rid, team, h in zip(reps_frame[c.REP_ID].to_numpy(object), teams, hired, strict=True):
            reps[str(rid)] = RepRecord(team=team, hired_at_ms=int(h))
    rep_ids = frame[c.REP_ID].to_numpy(object, na_value=None)
    sub = pd.DataFrame({"rep": rep_ids[known], "y": y[known]}).dropna(subset=["rep"])
    for rid, g in sub.groupby("rep"):
        rec = reps.setdefault(str(rid), RepRecord())
        rec.outcome_sum = float(g["y"].sum())
        rec.labelled = float(len(g))
    # the rep's usual attention per deal: their activities of the last 90 days known before `at`
    # (the training path's window: occurred at or after at - 90 days, known before at)
    avail = t_ms
    if c.LOGGED_AT in acts:
        avail = np.maximum(t_ms, np.where(lg == NO_TIME, t_ms, lg))
    if "hand_touches_deal_per_day" in frame.columns:
        rate = frame["hand_touches_deal_per_day"].to_numpy(np.float64, na_value=np.nan)
        recent = (np.isfinite(rate) & (t_ms >= at_ms - ATTENTION_WINDOW_DAYS * MS_PER_DAY) & (avail < at_ms))
        sub = pd.DataFrame({"rep": rep_ids[recent], "r": rate[recent]}).dropna(subset=["rep"])
        for rid, g in sub.groupby("rep"):
            rec = reps.setdefault(str(rid), RepRecord())
            rec.attention_sum = float(g["r"].sum())
            rec.attention_n = float(len(g))
    return ServingContext(
        reps=reps,
        prior_sum=float(y[known].sum()),
        prior_n=float(known.sum()),
        custom_fields=custom_fields if custom_fields is not None else custom_fields_of(dataset),
        timezone=timezone,
        amount_groups=_amount_groups(dataset, reps, at_ms),
    )


def _amount_groups(dataset: Dataset, reps: dict[str, RepRecord], at_ms: int) -> dict[str, tuple[float, float]]:
    """Per amount group, (sum of log amount, deals) over deals created before ``at_ms``."""
    deals = dataset.get(c.DEALS)
    if deals is None or c.PRODUCT not in deals or c.AMOUNT not in deals or c.CREATED_AT not in deals:
        return {}
    owners = deals[c.OWNER_REP_ID].to_numpy(object, na_value=None) if c.OWNER_REP_ID in deals else [None] * len(deals)
    team = np.array([reps[str(o)].team if o is not None and str(o) in reps else None for o in owners], dtype=object)
    group = _amount_group(deals[c.PRODUCT].to_numpy(object, na_value=None), team)
    log_amount = _log_amount(deals[c.AMOUNT].to_numpy(np.float64, na_value=np.nan))
    created = _ts_ms(deals[c.CREATED_AT])
    ok = (group != None) & np.isfinite(log_amount) & (created != NO_TIME) & (created < at_ms)  # noqa: E711
    ok &= deals[c.DEAL_ID].notna().to_numpy()
    sums = pd.DataFrame({"g": group[ok], "la": log_amount[ok]}).groupby("g")["la"].agg(["sum", "count"])
    return {str(k): (float(v["sum"]), float(v["count"])) for k, v in sums.iterrows()}


def request_items(dataset: Dataset, activity_ids: list[str]) -> list[dict[str, Any]]:
    """API request items (shared/API.md) for activities of a dataset, with their full history.

    History holds every row of the activity's deal and contact (earlier and later: the
    service must ignore the later ones), the deal's stages and outcomes, and the contacts
    touched on the deal. Used by parity tests, benchmarks and the demo.
    """
    acts = dataset[c.ACTIVITIES]
    by_id = acts.set_index(c.ACTIVITY_ID, drop=False)
    items = []
    for aid in activity_ids:
        row = _record(by_id.loc[aid])
        deal_id, contact_id = row.get(c.DEAL_ID), row.get(c.CONTACT_ID)
        mask = np.zeros(len(acts), dtype=bool)
        if deal_id is not None:
            mask |= (acts[c.DEAL_ID] == deal_id).fillna(False).to_numpy(bool)
        if contact_id is not None:
            mask |= (acts[c.CONTACT_ID] == contact_id).fillna(False).to_numpy(bool)
        mask &= (acts[c.ACTIVITY_ID] != aid).to_numpy(bool)
        hist_acts = acts[mask]
        history: dict[str, list[dict[str, Any]]] = {c.ACTIVITIES: to_records(hist_acts)}
        resp = dataset.get(c.RESPONSES)
        if resp is not None:
            ids = set(hist_acts[c.ACTIVITY_ID].tolist())
            history[c.RESPONSES] = to_records(resp[resp[c.ACTIVITY_ID].isin(ids)])
        for name in (c.DEAL_STAGES, c.OUTCOMES):
            tbl = dataset.get(name)
            if tbl is not None and deal_id is not None:
                history[name] = to_records(tbl[tbl[c.DEAL_ID] == deal_id])
        contacts = dataset.get(c.CONTACTS)
        item: dict[str, Any] = {"activity": row, "history": history}
        if contacts is not None:
            touched = set(hist_acts[c.CONTACT_ID].dropna().tolist())
            history[c.CONTACTS] = to_records(contacts[contacts[c.CONTACT_ID].isin(touched)])
            own = contacts[contacts[c.CONTACT_ID] == contact_id]
            if len(own):
                item["contact"] = _record(own.iloc[-1])
        deals = dataset.get(c.DEALS)
        if deals is not None and deal_id is not None:
            own = deals[deals[c.DEAL_ID] == deal_id]
            if len(own):
                item["deal"] = _record(own.iloc[-1])
        accounts = dataset.get(c.ACCOUNTS)
        account_id = row.get(c.ACCOUNT_ID) or item.get("deal", {}).get(c.ACCOUNT_ID) or item.get("contact", {}).get(c.ACCOUNT_ID)
        if accounts is not None and account_id is not None:
            own = accounts[accounts[c.ACCOUNT_ID] == account_id]
            if len(own):
                item["account"] = _record(own.iloc[-1])
        items.append(item)
    return items


def plain_value(v: Any) -> Any:
    """A frame value as JSON-ready Python (timestamps ISO 8601, missing -> None)."""
    if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and np.isnan(v)):
        return None
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return v


def _record(row: pd.Series) -> dict[str, Any]:
    return {k: x for k, v in row.items() if (x := plain_value(v)) is not None}


def to_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of a contract table as request rows (dicts without missing values)."""
    cols = list(frame.columns)
    return [{k: x for k, v in zip(cols, row, strict=True) if (x := plain_value(v)) is not None}
            for row in frame.itertuples(index=False, name=None)]
