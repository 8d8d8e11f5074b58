"""Fit the effect model (``models.effects``) on a dataset, into a bundle.

The history's activities (plan-time rows of the bundle's feature spec) and its recorded
advances (a stage the deal never reached, or an outcome row) go into the attribution EM; the
result is stored in the bundle under ``effects/`` and ``/rank`` orders candidates by it.

Only what was known before ``until`` is used (the bundle's test window stays unseen), and an
activity's own label is complete only when its whole lag window lies before ``until``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features import contract as c
from features import schema as s
from features.build import _advance_events
from models.bundle import FeatureSpec
from models.effects import DAY_S, EffectModel, EffectSettings, EMFitter, support_table

logger = logging.getLogger(__name__)

SAME_EVENT_S = 3_600.0  # rows of one deal recorded within an hour are one advance (a stage move and its outcome)


@dataclass
class EffectInputs:
    """Arrays the EM reads, built from a training frame and the dataset's advance tables."""

    matrix: np.ndarray
    act_deal: np.ndarray
    act_rep: np.ndarray
    act_t: np.ndarray  # seconds since the epoch
    ev_deal: np.ndarray
    ev_t: np.ndarray
    exposure_days: float
    end_t: float
    n_activities: int
    n_events: int
    activity_ids: np.ndarray | None = None  # the rows' activity_id, in matrix order
    deal_exposure_days: np.ndarray | None = None  # open days per deal code (sums to exposure_days)
    n_eligible: int = 0  # activities before the cut with a deal, before the sample of deals (max_activities)
    support: dict[str, int] | None = None  # support counts of the whole history when the rows are a sample


def _seconds(values: pd.Series) -> np.ndarray:
    """Timestamps as float seconds since the epoch (NaN where missing)."""
    ts = pd.to_datetime(pd.Series(values), utc=True).dt.tz_localize(None)
    arr = ts.to_numpy(dtype="datetime64[ns]")
    out = arr.astype("int64").astype(np.float64) / 1e9
    out[np.isnat(arr)] = np.nan
    return out


def advance_events(dataset, deal_codes: dict[str, int], until_s: float) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """(deal code, seconds) of every recorded advance before ``until_s``, one per deal and hour."""
    deals, times = [], []
    stages = dataset.get(c.DEAL_STAGES)
    if stages is not None and len(stages):
        d = stages[c.DEAL_ID].astype("string").map(deal_codes).to_numpy(dtype=np.float64, na_value=np.nan)
        t = _seconds(stages[c.ENTERED_AT])
        o = pd.to_numeric(stages[c.STAGE_ORDER], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        ok = np.isfinite(d) & np.isfinite(t) & np.isfinite(o)
        ad, at = _advance_events(d[ok].astype(np.int64), (t[ok] * 1000).astype(np.int64), o[ok].astype(np.int64))
        deals.append(ad.astype(np.int64))
        times.append(at.astype(np.float64) / 1000.0)
    outcomes = dataset.get(c.OUTCOMES)
    if outcomes is not None and len(outcomes):
        d = outcomes[c.DEAL_ID].astype("string").map(deal_codes).to_numpy(dtype=np.float64, na_value=np.nan)
        t = _seconds(outcomes[c.OCCURRED_AT])
        ok = np.isfinite(d) & np.isfinite(t)
        deals.append(d[ok].astype(np.int64))
        times.append(t[ok])
    if not deals:
        return np.zeros(0, np.int64), np.zeros(0)
    ev_d, ev_t = np.concatenate(deals), np.concatenate(times)
    keep = ev_t < until_s
    ev_d, ev_t = ev_d[keep], ev_t[keep]
    o = np.lexsort((ev_t, ev_d))
    ev_d, ev_t = ev_d[o], ev_t[o]
    if len(ev_d):
        new = np.ones(len(ev_d), dtype=bool)
        new[1:] = (ev_d[1:] != ev_d[:-1]) | (ev_t[1:] - ev_t[:-1] > SAME_EVENT_S)
        ev_d, ev_t = ev_d[new], ev_t[new]
    return ev_d, ev_t


def _exposure_days(dataset, deal_codes: dict[str, int], act_deal: np.ndarray, act_t: np.ndarray,  # noqa: ANN001
                   until_s: float) -> np.ndarray:
    """Open days per deal code before ``until``: created (or first activity) to closed (or ``until``)."""
    n = len(deal_codes)
    first = np.full(n, np.inf)
    np.minimum.at(first, act_deal, act_t)
    last = np.full(n, until_s)
    deals = dataset.get(c.DEALS)
    if deals is not None and len(deals):
        codes = deals[c.DEAL_ID].astype("string").map(deal_codes).to_numpy(dtype=np.float64, na_value=np.nan)
        ok = np.isfinite(codes)
        idx = codes[ok].astype(np.int64)
        if c.CREATED_AT in deals.columns:
            created = _seconds(deals[c.CREATED_AT])[ok]
            good = np.isfinite(created)
            first[idx[good]] = np.minimum(first[idx[good]], created[good])
        if c.CLOSED_AT in deals.columns:
            closed = _seconds(deals[c.CLOSED_AT])[ok]
            good = np.isfinite(closed)
            last[idx[good]] = np.minimum(until_s, closed[good])
    span = np.clip(last - first, 0, None)
    return np.where(np.isfinite(span), span, 0.0) / DAY_S


def sample_deals(deal_ids: pd.Series, keep: np.ndarray, max_activities: int, seed: int) -> np.ndarray:
    """``keep`` narrowed to a random sample of whole deals holding at most ``max_activities`` rows.

    Deals are drawn in a seeded random order and taken while they fit the budget, so every deal
    keeps all its activities (the attribution needs each deal's whole history) and time, reps and
    stages are sampled evenly. ``max_activities`` 0, or a history within it: ``keep`` unchanged.
    """
    if max_activities <= 0 or int(keep.sum()) <= max_activities:
        return keep
    codes, uniq = pd.factorize(deal_ids.where(pd.Series(keep, index=deal_ids.index)))
    sizes = np.bincount(codes[codes >= 0], minlength=len(uniq))
    order = np.random.default_rng(seed).permutation(len(uniq))
    taken = order[np.cumsum(sizes[order]) <= max_activities]
    chosen = np.zeros(len(uniq), dtype=bool)
    chosen[taken] = True
    return keep & (codes >= 0) & chosen[np.maximum(codes, 0)]


@dataclass
class EffectRows:
    """The rows of a training table the effect model reads, chosen while the table was whole.

    ``train`` takes them out before it lets its table's feature columns go, so the effect
    model needs only these (a sample of whole deals, ``effects.max_activities`` rows) and the
    support counts of every eligible row; :func:`effect_inputs` gives the same arrays from
    them as from the whole table.
    """

    frame: pd.DataFrame  # the chosen rows, every column, in table order
    until_s: float  # the cut, in seconds since the epoch
    eligible: int  # activities before the cut with a deal, before the sample of deals
    support: dict[str, int] | None  # support counts of the eligible rows when ``frame`` is a sample


def select_effect_rows(frame: pd.DataFrame, spec: FeatureSpec, until: pd.Timestamp | None,
                       max_activities: int = 0, seed: int = 0) -> EffectRows:
    """The activities with a deal, before ``until`` and not flagged as leaks, sampled by whole deals.

    ``max_activities`` > 0 bounds the rows by a random sample of whole deals (``sample_deals``).
    """
    t_all = _seconds(frame[c.OCCURRED_AT])
    until_s = float(pd.Timestamp(until).timestamp()) if until is not None else float(np.nanmax(t_all)) + 1.0
    deal_ids = frame[c.DEAL_ID].astype("string")
    keep = deal_ids.notna().to_numpy() & (t_all < until_s)
    if s.LEAK_FLAG in frame.columns:
        keep &= ~frame[s.LEAK_FLAG].to_numpy(dtype=bool, na_value=False)
    eligible = int(keep.sum())
    support = None
    sampled = sample_deals(deal_ids, keep, max_activities, seed)
    if int(sampled.sum()) < eligible:  # overlap is about what the whole history saw, not the sample
        support = _whole_history_support(spec, frame, keep)
    return EffectRows(frame.loc[sampled], until_s, eligible, support)


def effect_inputs(dataset, frame: pd.DataFrame | EffectRows, spec: FeatureSpec,  # noqa: ANN001
                  until: pd.Timestamp | None, max_activities: int = 0, seed: int = 0) -> EffectInputs:
    """The EM's arrays: activities with a deal, before ``until``, as plan rows; advances; exposure.

    ``max_activities`` > 0 bounds the rows by a random sample of whole deals (``sample_deals``);
    the advances and exposure are those of the sampled deals. ``frame`` is the training table,
    or the rows :func:`select_effect_rows` took from it with the same ``until``,
    ``max_activities`` and ``seed`` (then those three are not used again).
    """
    rows = frame if isinstance(frame, EffectRows) else select_effect_rows(frame, spec, until, max_activities, seed)
    if until is not None and float(pd.Timestamp(until).timestamp()) != rows.until_s:
        raise ValueError(f"effect rows were chosen before {pd.Timestamp(rows.until_s, unit='s', tz='UTC')}, "
                         f"not before {pd.Timestamp(until)}")
    until_s = rows.until_s
    sub = rows.frame
    uniq = pd.unique(sub[c.DEAL_ID].astype("string"))
    deal_codes = {str(d): i for i, d in enumerate(uniq)}
    act_deal = sub[c.DEAL_ID].astype("string").map(deal_codes).to_numpy(dtype=np.int64)
    reps = sub[c.REP_ID].astype("string").fillna("\x00") if c.REP_ID in sub.columns else pd.Series(["\x00"] * len(sub))
    act_rep = pd.factorize(reps)[0].astype(np.int64)
    act_t = _seconds(sub[c.OCCURRED_AT])
    matrix = spec.encode(sub)
    if spec.execution_indices:
        matrix[:, spec.execution_indices] = np.nan
    ev_d, ev_t = advance_events(dataset, deal_codes, until_s)
    per_deal = _exposure_days(dataset, deal_codes, act_deal, act_t, until_s)
    ids = sub[c.ACTIVITY_ID].astype("string").to_numpy() if c.ACTIVITY_ID in sub.columns else None
    return EffectInputs(matrix, act_deal, act_rep, act_t, ev_d, ev_t, float(per_deal.sum()), until_s, len(act_t),
                        len(ev_t), ids, per_deal, rows.eligible, rows.support)


def _whole_history_support(spec: FeatureSpec, frame: pd.DataFrame, keep: np.ndarray | None = None) -> dict[str, int]:
    """``support_table`` of the ``keep`` rows of ``frame``, copying and encoding only the four key columns.

    Gives exactly ``support_table(spec.encode(frame[keep]), _support_keys(spec))``.
    """
    keys = _support_keys(spec)
    present = [k for k in keys if k >= 0]
    narrow = FeatureSpec([spec.features[k] for k in present])
    position = {k: i for i, k in enumerate(present)}
    columns = [spec.names[k] for k in present]
    rows = frame.loc[keep, columns] if keep is not None else frame[columns]
    return support_table(narrow.encode(rows), tuple(position.get(k, -1) for k in keys))


def _support_keys(spec: FeatureSpec) -> tuple[int, int, int, int]:
    def idx(name: str) -> int:
        return spec.names.index(name) if name in spec.names else -1

    return idx(c.STAGE_ORDER), idx(c.TYPE), idx(c.IS_AUTOMATED), idx(c.SENIORITY)


def fit_effect_model(dataset, frame: pd.DataFrame | EffectRows, spec: FeatureSpec, *, until: pd.Timestamp | None = None,  # noqa: ANN001
                     horizon_days: int = c.OUTCOME_HORIZON_DAYS,
                     settings: EffectSettings | None = None,
                     known_labels: pd.Series | None = None, threads: int = 1) -> EffectModel:
    """Attribution EM and bootstrap on the history before ``until``.

    Args:
        dataset: the ``features.dataset.Dataset`` (its stage and outcome tables give the advances).
        frame: the training table of the same dataset (``features.build.build_training_frame``),
            or the rows :func:`select_effect_rows` took from it (with this ``until`` and ``settings``).
        spec: the bundle's feature spec (the effect model reads the same plan matrix as ``/rank``).
        until: only activities and advances before this instant (the bundle's test window start).
        horizon_days: the outcome horizon the effect is about.
        settings: fitting settings (one configuration for every dataset).
        known_labels: per ``activity_id``, the number of advances each activity caused, when it is
            known (a simulator's record): q is fitted on them instead of on the EM's attribution.
            Benchmarks use it to measure what perfect credit assignment would give.
        threads: LightGBM threads when ``settings.num_threads`` is 0 (automatic); one thread on
            small histories (``models.effects.EFFECT_SMALL_ROWS``).

    Raises:
        ValueError: too few activities or advances to attribute, or ``known_labels`` misses
            activities of the history.
    """
    settings = settings or EffectSettings()
    t0 = time.perf_counter()
    x = effect_inputs(dataset, frame, spec, until, settings.max_activities, settings.seed)
    eligible = x.n_eligible
    if x.n_activities < eligible:
        logger.info("effects: fitted on a random sample of whole deals, %d of %d activities (effects.max_activities "
                    "%d)", x.n_activities, eligible, settings.max_activities)
    fitter = EMFitter(x.matrix, spec, x.act_deal, x.act_rep, x.act_t, x.ev_deal, x.ev_t, x.exposure_days,
                      x.end_t, settings, deal_exposure_days=x.deal_exposure_days, threads=threads)
    if known_labels is None:
        attribution, booster = fitter.fit()
    else:
        labels = pd.Series(known_labels, dtype="float64")
        labels.index = labels.index.astype("string")
        values = labels.reindex(pd.Index(x.activity_ids, dtype="string")).to_numpy(dtype=np.float64, na_value=np.nan)
        missing = np.flatnonzero(~np.isfinite(values))
        if len(missing):
            raise ValueError(f"known_labels has no value for {len(missing)} activities of the history "
                             f"(first: {x.activity_ids[missing[0]]!r})")
        attribution, booster = fitter.fit_known(values)
    t_em = time.perf_counter() - t0
    boots = fitter.bootstrap(booster, booster.current_iteration())
    keys = _support_keys(spec)
    support = x.support if x.support is not None else support_table(x.matrix, keys)
    pmf = attribution.delay_pmf
    metrics = {
        "activities": x.n_activities, "advances": x.n_events, "activities_eligible": eligible,
        "max_activities": settings.max_activities,
        "activities_with_complete_window": int(fitter.fit_mask.sum()),
        "em_iterations": attribution.iterations, "em_log": attribution.log,
        "background_per_deal_day": attribution.background_per_day,
        "advances_attributed_to_activities": float(attribution.soft_labels.sum() / max(x.n_events, 1)),
        "delay_median_days": float(np.searchsorted(np.cumsum(pmf), 0.5)),
        "horizon_share": float(pmf[:horizon_days].sum()),
        "deal_offset_sd": float(np.sqrt(fitter.deal_off.variance)),
        "rep_offset_sd": float(np.sqrt(fitter.rep_off.variance)),
        "best_iteration": int(booster.current_iteration()),
        "heldout_loglik_per_advance": attribution.heldout_loglik,
        "main_effect_rounds": getattr(fitter, "main_rounds", None),
        "interaction_rounds": getattr(fitter, "interaction_rounds", None),
        "until": None if until is None else pd.Timestamp(until).isoformat(),
        "labels": "attributed (EM)" if known_labels is None else "known",
        "seconds_em": round(t_em, 2), "seconds": round(time.perf_counter() - t0, 2),
    }
    logger.info("effect model: %d activities, %d advances, %d EM iterations, %.0f%% of advances attributed to "
                "activities, delay median %.0f day(s), %.1fs", x.n_activities, x.n_events, attribution.iterations,
                100 * metrics["advances_attributed_to_activities"], metrics["delay_median_days"], metrics["seconds"])
    return EffectModel(booster, boots, list(spec.names), pmf, int(horizon_days), support, settings, metrics, keys,
                       fitter.intercept)
