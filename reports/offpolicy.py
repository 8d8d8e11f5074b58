"""Off-policy evaluation of a ranker over the ``/rank`` prediction log (issue 17, item 4).

Every ``/rank`` answer is a record of the prediction log (``serving.prediction_log.rank_record``):
the state (deal, time), every candidate with its scores and its **propensity** (the probability
that the service showed it first: 1 for the ranker's pick and 0 for the rest without
exploration; with exploration rate e, e/|pool| for every candidate with overlap plus 1-e for
the ranker's pick), and the order shown. This module turns that log and the dataset recorded
since into an estimate of how another ranker would have done, without running it live:

1. :func:`read_rank_log` reads the ``/rank`` records. A torn last line of a file (the writer
   died mid-write: the log's own format says this is the only partial line a crash can leave)
   is skipped and counted; any other unreadable line or field is an error naming file and line.
2. :func:`decision_rewards`: the reward of a logged decision is 1 when the deal recorded an
   **advance** (a stage it never reached before, or an outcome row: ``features.advances``, the
   outcome label's own definition) in ``(at, at + horizon]``, else 0. A decision whose horizon
   ends after the dataset's last event is *censored* (left out, counted), as the label is.
3. The new ranker's first choice per state: by a logged score (:func:`top1_by_score`), or by a
   bundle re-ranking the logged candidates in the state rebuilt from the dataset at ``at``
   (:func:`top1_by_scorer`: ``serving.batch_rank.RequestBuilder`` and ``Scorer.rank``, the
   service's own code, point in time).
4. :func:`estimate`: on the states where the new ranker's first choice could have been shown
   (logged propensity > 0), the logging policy's value (mean reward), the new ranker's value by
   inverse propensity scoring (IPS: mean of ``1[new top-1 == shown top-1] / propensity x
   reward``) and self-normalised IPS (SNIPS: the same weighted rewards over the sum of the
   weights), the number of states where both chose the same first entry, and percentile
   bootstrap intervals over states; the difference new - logged comes from a *paired* bootstrap
   (the same resampled states for both), and the verdict reads its interval. Too few matched
   states, or a log without exploration, and no value is claimed.

The estimator takes rewards and first choices as arrays, so ``benchmarks/bench_offpolicy.py``
feeds it rewards drawn from a simulator's truth through the same code.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features import contract as c

logger = logging.getLogger(__name__)

DEFAULT_HORIZON_DAYS = 14  # the outcome label's horizon (features.build.Horizons) when no bundle says otherwise
DEFAULT_BOOTSTRAP = 1000
DEFAULT_MIN_MATCHED = 30
DEFAULT_MIN_EVENTS = 10
LEVEL = 0.90  # bootstrap interval coverage
BOOTSTRAP_CELLS = 4_000_000  # resampled indices held at once (chunk x states; 32 MB)
PROPENSITY_TOLERANCE = 1e-6

VERDICT_BETTER = "better"
VERDICT_SAME = "no reliable difference"
VERDICT_WORSE = "worse"
VERDICT_NONE = "no estimate"


class OffPolicyError(ValueError):
    """The log, the dataset or the ranker cannot be used; the message names file, line and field."""


# --- the log -------------------------------------------------------------------------------


@dataclass
class LoggedDecision:
    """One ``/rank`` answer of the log: the state, its candidates, what was shown first, its propensities."""

    source: str  # "file: line N"
    state_id: str
    deal_id: str | None
    rep_id: str | None
    at: pd.Timestamp
    candidates: list[dict[str, Any]]  # as logged, in request order
    propensity: np.ndarray  # per candidate: probability of being shown first
    shown: int  # index of the candidate shown first (order[0])
    explored: bool
    exploration: float
    model: str


@dataclass
class RankLog:
    """The ``/rank`` decisions of a log directory and what was skipped."""

    directory: Path
    decisions: list[LoggedDecision]
    files: int
    torn_lines: int  # partial last lines of a file (a writer died mid-write), skipped
    other_records: int  # records of other endpoints (/score)


def read_rank_log(directory: Path) -> RankLog:
    """Read every ``/rank`` record of a prediction log directory, oldest file first.

    Raises:
        OffPolicyError: no such directory, no log files, no ``/rank`` record, a line that is not
            a JSON object (other than a torn last line), or a record missing what the
            evaluation needs (names file, line and field).
    """
    from serving.prediction_log import PREFIX, log_files

    directory = Path(directory)
    if not directory.is_dir():
        raise OffPolicyError(f"--log {directory}: no such directory (the prediction log is "
                             f"ACTIVITY_SCORER_PREDICTION_LOG, default $ACTIVITY_SCORER_HOME/predictions)")
    files = log_files(directory)
    if not files:
        raise OffPolicyError(f"--log {directory}: no prediction log files ({PREFIX}*.jsonl) in it")
    decisions: list[LoggedDecision] = []
    torn = other = 0
    for path in files:
        try:
            lines = path.read_bytes().split(b"\n")
        except OSError as err:
            raise OffPolicyError(f"{path}: cannot read it ({err})") from None
        last = len(lines) - 1  # after the final newline: b"" for a complete file, else a torn line
        for n, raw in enumerate(lines, start=1):
            if n - 1 == last:
                if raw.strip():
                    torn += 1
                    logger.warning("%s: line %d is a torn last line (the writer stopped mid-record); skipped", path, n)
                continue
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
            except ValueError as err:
                raise OffPolicyError(f"{path}: line {n}: not a JSON record ({err}); only a torn last line is "
                                     f"expected after a crash, so this file was changed by something else") from None
            if not isinstance(rec, dict):
                raise OffPolicyError(f"{path}: line {n}: a record must be a JSON object, got {type(rec).__name__}")
            if rec.get("endpoint") != "rank":
                other += 1
                continue
            decisions.append(_decision(rec, f"{path}: line {n}"))
    if not decisions:
        raise OffPolicyError(f"--log {directory}: no /rank records in {len(files)} file(s) "
                             f"({other} record(s) of other endpoints)")
    if torn:
        logger.warning("prediction log %s: %d torn last line(s) skipped", directory, torn)
    return RankLog(directory, decisions, len(files), torn, other)


def _decision(rec: dict[str, Any], where: str) -> LoggedDecision:
    """One ``/rank`` record as a :class:`LoggedDecision` (raises naming ``where`` and the field)."""

    def bad(what: str) -> OffPolicyError:
        return OffPolicyError(f"{where}: {what}")

    state = rec.get("state")
    if not isinstance(state, dict):
        raise bad("field 'state' is missing or not an object")
    try:
        at = pd.Timestamp(state.get("at"))
    except (TypeError, ValueError):
        at = pd.NaT
    if at is pd.NaT or pd.isna(at):
        raise bad(f"field 'state.at' is not a time: {state.get('at')!r}")
    at = at.tz_localize("UTC") if at.tzinfo is None else at.tz_convert("UTC")
    cands = rec.get("candidates")
    if not isinstance(cands, list) or not cands or not all(isinstance(x, dict) for x in cands):
        raise bad("field 'candidates' is missing, empty or not a list of objects")
    order = rec.get("order")
    if not isinstance(order, list) or not order or not all(isinstance(i, int) and not isinstance(i, bool)
                                                           for i in order):
        raise bad("field 'order' is missing, empty or not a list of candidate indices")
    if not 0 <= order[0] < len(cands):
        raise bad(f"field 'order': first index {order[0]} is outside the {len(cands)} candidates")
    prop = np.empty(len(cands))
    for k, cand in enumerate(cands):
        value = cand.get("propensity")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not -PROPENSITY_TOLERANCE <= value <= 1 + PROPENSITY_TOLERANCE:
            raise bad(f"field 'candidates[{k}].propensity' must be a probability in [0, 1], got {value!r} "
                      f"(records written before exploration was logged cannot be evaluated)")
        if not isinstance(cand.get(c.TYPE), str):
            raise bad(f"field 'candidates[{k}].type' is missing")
        prop[k] = min(max(float(value), 0.0), 1.0)
    total = float(prop.sum())
    if abs(total - 1.0) > 1e-3:
        raise bad(f"the candidates' propensities sum to {total:.6g}, not 1")
    if prop[order[0]] <= 0:
        raise bad(f"the candidate shown first (candidates[{order[0]}]) has propensity 0")
    model = rec.get("model") or {}
    if isinstance(model, dict):
        name = str(model.get("name") or "?") + (f" v{model['version']}" if model.get("version") is not None else "")
    else:
        name = str(model)
    deal_id = state.get("deal_id")
    return LoggedDecision(where, str(rec.get("state_id") or where), None if deal_id is None else str(deal_id),
                          None if state.get("rep_id") is None else str(state.get("rep_id")), at, cands, prop,
                          int(order[0]), bool(rec.get("explored", False)), float(rec.get("exploration") or 0.0), name)


# --- rewards -------------------------------------------------------------------------------


@dataclass
class RewardStats:
    """What happened to the log's decisions on the way to a reward."""

    horizon_days: float
    data_end: pd.Timestamp | None  # None: rewards were given, not read from a dataset
    rewarded: int = 0  # decisions with a reward (0 or 1)
    censored: int = 0  # horizon ends after the data
    no_deal: int = 0  # the request named no deal
    unknown_deal: int = 0  # the deal is not in the dataset

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"data_end": None if self.data_end is None else self.data_end.isoformat()}


def decision_rewards(decisions: Sequence[LoggedDecision], dataset, horizon_days: float  # noqa: ANN001
                     ) -> tuple[np.ndarray, RewardStats]:
    """Per decision: 1.0 when its deal recorded an advance in ``(at, at + horizon]``, 0.0 if not, NaN if unknown.

    NaN when the horizon ends after the dataset's last event (censored, as the outcome label),
    when the record names no deal, or when the deal is not in the dataset; each is counted.

    Args:
        decisions: the logged decisions.
        dataset: a ``features.dataset.Dataset`` recorded since (the data contract).
        horizon_days: the horizon, in days (> 0).
    """
    from features.advances import advance_events
    from features.build import dataset_end

    if not horizon_days > 0:
        raise OffPolicyError(f"--horizon-days {horizon_days}: must be a number of days > 0")
    end = dataset_end(dataset)
    events = advance_events(dataset)
    times = {str(k): np.sort(g[c.OCCURRED_AT].dt.tz_convert("UTC").to_numpy(dtype="datetime64[ns]"))
             for k, g in events.groupby(c.DEAL_ID, sort=False)}
    deals = set(dataset[c.DEALS][c.DEAL_ID].astype(str)) if c.DEALS in dataset.tables else set()
    deals |= set(times)
    if c.ACTIVITIES in dataset.tables:
        deals |= set(dataset[c.ACTIVITIES][c.DEAL_ID].dropna().astype(str))
    horizon = pd.Timedelta(days=horizon_days)
    stats = RewardStats(float(horizon_days), end)
    out = np.full(len(decisions), np.nan)
    for k, d in enumerate(decisions):
        if d.deal_id is None:
            stats.no_deal += 1
            continue
        if d.deal_id not in deals:
            stats.unknown_deal += 1
            continue
        if d.at + horizon > end:
            stats.censored += 1
            continue
        t = times.get(d.deal_id)
        if t is None:
            out[k] = 0.0
        else:
            lo = np.datetime64(d.at.tz_convert(None).as_unit("ns"))
            hi = np.datetime64((d.at + horizon).tz_convert(None).as_unit("ns"))
            out[k] = float(np.searchsorted(t, hi, side="right") > np.searchsorted(t, lo, side="right"))
        stats.rewarded += 1
    return out, stats


# --- the new ranker's first choice ---------------------------------------------------------


def top1_by_score(decisions: Sequence[LoggedDecision], score: str) -> np.ndarray:
    """Per decision, the candidate with the highest logged ``score`` (ties: the first in request order).

    Raises:
        OffPolicyError: a record has no such score for any candidate (names file and line).
    """
    out = np.empty(len(decisions), dtype=np.int64)
    for k, d in enumerate(decisions):
        values = np.array([np.nan if x.get(score) is None else float(x[score]) for x in d.candidates])
        if np.isnan(values).all():
            logged = sorted({key for x in d.candidates for key, v in x.items() if isinstance(v, (int, float))
                             and not isinstance(v, bool)} - {"index", "rank"})
            raise OffPolicyError(f"{d.source}: no candidate has the score {score!r} (logged scores: "
                                 f"{', '.join(logged) or 'none'})")
        out[k] = int(np.argmax(np.where(np.isnan(values), -np.inf, values)))
    return out


CANDIDATE_KEYS = ("type", "contact_id", "rep_id", "is_automated", "personalization", "sequence_step", "channel")


def candidate_bodies(decision: LoggedDecision) -> list[dict[str, Any]]:
    """The logged candidates as ``/rank`` request candidates (what the service logged of each)."""
    return [{k: x[k] for k in CANDIDATE_KEYS if x.get(k) is not None} for x in decision.candidates]


def top1_by_scorer(decisions: Sequence[LoggedDecision], scorer, dataset,  # noqa: ANN001
                   progress: Callable[[str], None] | None = None) -> np.ndarray:
    """Per decision, the first choice of ``scorer`` among the logged candidates, in the state rebuilt at ``at``.

    The request is the one ``activity-scorer rank`` builds (``serving.batch_rank.RequestBuilder``:
    the deal as known then, its account and contacts, and the history strictly before ``at``)
    with the logged candidates; ``Scorer.rank`` orders them (set the scorer's policy without
    exploration: the ranker's own choice is evaluated). The order is read through the scorer's
    ``rank_log`` hook, whose indices are the candidates' request order.

    Raises:
        OffPolicyError: a decision whose deal is not in the dataset, or whose rebuilt request
            the service refuses (names file, line and the reason).
    """
    from pydantic import ValidationError

    from serving.batch_rank import RequestBuilder
    from serving.errors import InvalidRequest
    from serving.schemas import RankRequest, get_limits, set_limits

    builder = RequestBuilder(dataset)
    captured: dict[str, list[int]] = {}
    before = scorer.rank_log
    scorer.rank_log = lambda request, shown, scores, order, *rest: captured.__setitem__("order", list(order))
    limits = get_limits()
    most = max((len(d.candidates) for d in decisions), default=1)
    # a rebuilt request carries the whole history before at: the service's request limits are for callers
    set_limits(type(limits)(limits.max_items, max(limits.max_history_rows, 1_000_000),
                            max(limits.max_candidates, most)))
    out = np.empty(len(decisions), dtype=np.int64)
    try:
        for k, d in enumerate(decisions):
            if progress is not None and k % 200 == 0:
                progress(f"re-ranking state {k + 1:,} of {len(decisions):,}")
            if d.deal_id is None or d.deal_id not in builder.deals.index:
                raise OffPolicyError(f"{d.source}: deal {d.deal_id!r} is not in the dataset")
            body = builder.body(d.deal_id, d.at)
            body["candidates"] = candidate_bodies(d)
            body["top_k"] = len(d.candidates)
            if d.rep_id is not None:
                body["rep_id"] = d.rep_id
            try:
                request = RankRequest.model_validate_json(json.dumps(body, default=str))
                captured.clear()
                scorer.rank(request)
            except ValidationError as err:
                first = err.errors()[0]
                loc = ".".join(str(x) for x in first.get("loc", ()))
                raise OffPolicyError(f"{d.source}: the rebuilt request for deal {d.deal_id} is refused: "
                                     f"{loc}: {first.get('msg')}") from None
            except InvalidRequest as err:
                raise OffPolicyError(f"{d.source}: the rebuilt request for deal {d.deal_id} is refused: "
                                     f"{err}") from None
            out[k] = captured["order"][0]
    finally:
        scorer.rank_log = before
        set_limits(limits)
    return out


# --- the estimate --------------------------------------------------------------------------


@dataclass
class Interval:
    """A point estimate and its bootstrap interval (None when not claimed)."""

    value: float | None
    low: float | None = None
    high: float | None = None

    def text(self, digits: int = 4, signed: bool = False) -> str:
        if self.value is None:
            return "-"
        f = f"{{:{'+' if signed else ''}.{digits}f}}"
        if self.low is None or self.high is None:
            return f.format(self.value)
        return f"{f.format(self.value)} [{f.format(self.low)}, {f.format(self.high)}]"


@dataclass
class PolicyEstimate:
    """The off-policy estimate of one new ranker against the logging policy (see module docstring)."""

    name: str
    states: int  # decisions with a reward
    supported: int  # ... whose new first choice had logged propensity > 0 (where the values are)
    unsupported: int  # ... whose new first choice could never have been shown (propensity 0)
    matched: int  # ... where the new first choice is the one shown
    differs: int  # supported states where the new first choice is not the logging ranker's own pick
    explored_matches: int  # ... where it was shown all the same (exploration): all the log says about those choices
    rewarded_explored: int  # ... and the deal advanced
    logged: Interval  # the logging policy's mean reward on the supported states
    ips: Interval
    snips: Interval
    diff_ips: Interval  # IPS - logged, paired bootstrap
    diff_snips: Interval
    verdict: str
    reason: str
    min_weight: float | None = None
    max_weight: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _chunk(n: int) -> int:
    """Bootstrap resamples drawn at once for ``n`` states (bounded memory)."""
    return max(1, min(200, BOOTSTRAP_CELLS // max(n, 1)))


def _percentiles(values: np.ndarray, level: float) -> tuple[float | None, float | None]:
    values = values[np.isfinite(values)]
    if not len(values):
        return None, None
    a = (1 - level) / 2 * 100
    lo, hi = np.percentile(values, [a, 100 - a])
    return float(lo), float(hi)


def estimate(name: str, shown: np.ndarray, propensity: Sequence[np.ndarray], new_top1: np.ndarray,
             rewards: np.ndarray, bootstrap: int = DEFAULT_BOOTSTRAP, seed: int = 0,
             min_matched: int = DEFAULT_MIN_MATCHED, level: float = LEVEL,
             min_events: int = DEFAULT_MIN_EVENTS) -> PolicyEstimate:
    """IPS and SNIPS value of a deterministic new ranker from logged decisions, against the logging policy.

    Decisions whose reward is NaN (censored, unknown deal) are left out. Of the rest, those
    whose new first choice had logged propensity 0 cannot inform (the logging policy never
    showed it there) and are left out too: the values are over the *supported* states, for
    both policies. No value is claimed (``verdict`` ``"no estimate"``, ``reason`` says why)
    when no state of the log was explored (every first choice had propensity 1), when fewer
    than ``min_matched`` supported states showed the new ranker's first choice, or when the new
    ranker differs from the logging ranker's own pick (the candidate logged with the highest
    propensity) somewhere but the explored states that showed its choice there are too few to
    expect ``min_events`` rewards at the logging policy's mean reward. The difference between
    the two rankers rests on those few heavily weighted states alone; with a handful of rewards
    among them a bootstrap interval is far too narrow (``benchmarks/bench_offpolicy.py`` measured
    it). The rule counts *expected* rewards, not the observed ones: claiming a value only after
    lucky draws would bias the claims upward (the same benchmark: 3 of 10 such intervals held
    the truth).

    Args:
        name: the new ranker's name (for the report).
        shown: per decision, the index of the candidate shown first.
        propensity: per decision, every candidate's logged propensity of being shown first.
        new_top1: per decision, the index of the new ranker's first choice.
        rewards: per decision, 0/1 (or any bounded reward), NaN when unknown.
        bootstrap: resamples of the states for the intervals (0: no intervals).
        seed: the bootstrap's seed.
        min_matched: fewest matched states for a claimed value.
        min_events: fewest rewards expected, at the logging policy's mean reward, among the explored
            matches where the new ranker differs from the logging ranker's own pick.
        level: interval coverage (0.9: the 5th and 95th percentiles).
    """
    shown = np.asarray(shown, dtype=np.int64)
    new_top1 = np.asarray(new_top1, dtype=np.int64)
    rewards = np.asarray(rewards, dtype=np.float64)
    if not (len(shown) == len(new_top1) == len(rewards) == len(propensity)):
        raise ValueError("shown, propensity, new_top1 and rewards must have one entry per decision")
    known = np.isfinite(rewards)
    p_shown = np.array([float(p[s]) for p, s in zip(propensity, shown, strict=True)])
    p_new = np.array([float(p[t]) for p, t in zip(propensity, new_top1, strict=True)])
    sup = known & (p_new > 0)
    own = np.array([int(np.argmax(p)) for p in propensity], dtype=np.int64)  # the logging ranker's own pick
    r, ps, match = rewards[sup], p_shown[sup], (new_top1 == shown)[sup]
    differs = (new_top1 != own)[sup]
    n = int(sup.sum())
    matched = int(match.sum())
    explored = match & differs
    w = np.where(match, 1.0 / ps, 0.0)
    base = dict(name=name, states=int(known.sum()), supported=n, unsupported=int((known & ~(p_new > 0)).sum()),
                matched=matched, differs=int(differs.sum()), explored_matches=int(explored.sum()),
                rewarded_explored=int((r[explored] > 0).sum()))
    none = Interval(None)
    logged = Interval(float(r.mean()) if n else None)
    if n == 0:
        return PolicyEstimate(**base, logged=logged, ips=none, snips=none, diff_ips=none, diff_snips=none,
                              verdict=VERDICT_NONE, reason="no state with a reward where the new ranker's first "
                                                           "choice could have been shown")
    if not (ps < 1 - PROPENSITY_TOLERANCE).any():
        return PolicyEstimate(**base, logged=logged, ips=none, snips=none, diff_ips=none, diff_snips=none,
                              verdict=VERDICT_NONE,
                              reason="the log has no exploration (every first choice was shown with propensity 1), "
                                     "so it cannot tell what another first choice would have done: set "
                                     "ACTIVITY_SCORER_RANK_EXPLORATION (e.g. 0.1) and collect again")
    if matched < min_matched:
        return PolicyEstimate(**base, logged=logged, ips=none, snips=none, diff_ips=none, diff_snips=none,
                              verdict=VERDICT_NONE,
                              reason=f"too few matched states to estimate: {matched} of {n} showed the new ranker's "
                                     f"first choice, at least {min_matched} are needed (collect more, or raise "
                                     f"ACTIVITY_SCORER_RANK_EXPLORATION)")
    events = explored.sum() * float(r.mean())
    if differs.any() and events < min_events:
        return PolicyEstimate(**base, logged=logged, ips=none, snips=none, diff_ips=none, diff_snips=none,
                              verdict=VERDICT_NONE,
                              reason=f"too few rewards where the rankers differ to estimate: the new ranker's first "
                                     f"choice is not the logging ranker's in {int(differs.sum())} states, exploration "
                                     f"showed it in {int(explored.sum())} of them, where {events:.1f} advance(s) are "
                                     f"expected at the logged mean reward: at least {min_events} are needed (collect "
                                     f"more, or raise ACTIVITY_SCORER_RANK_EXPLORATION)")
    wr = w * r
    ips = float(wr.mean())
    snips = float(wr.sum() / w.sum())
    mean_r = float(r.mean())
    cols = {"logged": [], "ips": [], "snips": [], "diff_ips": [], "diff_snips": []}
    if bootstrap > 0:
        rng = np.random.default_rng(seed)
        done = 0
        while done < bootstrap:
            b = min(_chunk(n), bootstrap - done)
            idx = rng.integers(0, n, size=(b, n))
            sw, swr, sr = w[idx].sum(axis=1), wr[idx].sum(axis=1), r[idx].sum(axis=1)
            lg, ip = sr / n, swr / n
            with np.errstate(invalid="ignore", divide="ignore"):
                sn = np.where(sw > 0, swr / sw, np.nan)
            for key, v in (("logged", lg), ("ips", ip), ("snips", sn), ("diff_ips", ip - lg), ("diff_snips", sn - lg)):
                cols[key].append(v)
            done += b
    ci = {k: _percentiles(np.concatenate(v), level) if v else (None, None) for k, v in cols.items()}
    diff = Interval(ips - mean_r, *ci["diff_ips"])
    if diff.low is None or diff.high is None:
        verdict, reason = VERDICT_NONE, "no bootstrap interval (--bootstrap 0), so no verdict"
    elif diff.low > 0:
        verdict, reason = VERDICT_BETTER, f"the {level:.0%} interval of IPS - logged lies above 0"
    elif diff.high < 0:
        verdict, reason = VERDICT_WORSE, f"the {level:.0%} interval of IPS - logged lies below 0"
    else:
        verdict, reason = VERDICT_SAME, f"the {level:.0%} interval of IPS - logged includes 0"
    return PolicyEstimate(**base, logged=Interval(mean_r, *ci["logged"]), ips=Interval(ips, *ci["ips"]),
                          snips=Interval(snips, *ci["snips"]), diff_ips=diff,
                          diff_snips=Interval(snips - mean_r, *ci["diff_snips"]), verdict=verdict, reason=reason,
                          min_weight=float(w[match].min()), max_weight=float(w[match].max()))


# --- the whole evaluation (what the command runs) ------------------------------------------


@dataclass
class Evaluation:
    """What ``activity-scorer evaluate-policy`` prints and writes."""

    log: str
    data: str
    ranker: str
    files: int
    records: int
    torn_lines: int
    other_records: int
    explored: int  # records whose first entry was drawn by exploration
    exploration_rates: list[float]
    logged_models: list[str]
    rewards: RewardStats
    logged_value: Interval  # mean reward over every decision with a reward
    estimate: PolicyEstimate | None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rewards"] = self.rewards.to_dict()
        return d

    def lines(self) -> list[str]:
        """The printed table (plain text)."""
        r = self.rewards
        end = r.data_end.isoformat() if r.data_end is not None else "rewards given"
        out = [f"prediction log {self.log}: {self.records:,} /rank records in {self.files} file(s), "
               f"{self.explored:,} explored (rates {', '.join(f'{e:g}' for e in self.exploration_rates)}); "
               f"models {', '.join(self.logged_models)}",
               f"rewards from {self.data}: an advance within {r.horizon_days:g} days after the logged time "
               f"(data end {end}): {r.rewarded:,} with a reward, {r.censored:,} censored "
               f"(horizon not complete)"
               + (f", {r.unknown_deal:,} deal not in the dataset" if r.unknown_deal else "")
               + (f", {r.no_deal:,} without a deal" if r.no_deal else "")
               + (f"; {self.torn_lines} torn last line(s) skipped" if self.torn_lines else "")]
        out.append(f"logging policy, every state with a reward: mean reward {self.logged_value.text()}")
        e = self.estimate
        if e is not None:
            out.append(f"new ranker {self.ranker}: {e.states:,} states, {e.supported:,} where its first choice could "
                       f"have been shown, {e.matched:,} where it was shown (matched); {e.unsupported:,} with "
                       f"propensity 0 for its first choice cannot inform and are left out")
            out.append(f"  it differs from the logging ranker's own pick in {e.differs:,} supported states; "
                       f"exploration showed its choice in {e.explored_matches:,} of them, {e.rewarded_explored:,} "
                       f"advanced")
            rows = [("logging policy", e.logged), ("new ranker, IPS", e.ips), ("new ranker, SNIPS", e.snips),
                    ("difference, IPS - logged", e.diff_ips), ("difference, SNIPS - logged", e.diff_snips)]
            if e.ips.value is not None:
                out.append(f"  {'on the supported states':<28} {'value [90% interval]':>30}")
                for label, iv in rows:
                    out.append(f"  {label:<28} {iv.text(signed=label.startswith('difference')):>30}")
            if e.verdict == VERDICT_NONE:
                out.append(f"no estimate: {e.reason}")
            else:
                words = {VERDICT_BETTER: "new ranker better", VERDICT_SAME: "no reliable difference",
                         VERDICT_WORSE: "new ranker worse"}[e.verdict]
                out.append(f"verdict: {words} ({e.reason}; {e.matched} matched states, weights "
                           f"{e.min_weight:.3g}-{e.max_weight:.3g})")
        out += self.notes
        return out


def evaluate_log(log: RankLog, dataset, data_label: str, ranker: str | None,  # noqa: ANN001
                 top1: Callable[[list[LoggedDecision]], np.ndarray] | None, horizon_days: float,
                 bootstrap: int = DEFAULT_BOOTSTRAP, seed: int = 0, min_matched: int = DEFAULT_MIN_MATCHED,
                 rewards: np.ndarray | None = None, min_events: int = DEFAULT_MIN_EVENTS) -> Evaluation:
    """Rewards, the logging policy's value and (with ``top1``) the new ranker's estimate.

    Args:
        log: from :func:`read_rank_log`.
        dataset: the dataset rewards come from (and, for a bundle, the rebuilt states).
        ranker: the new ranker's name; ``top1`` gives its first choice for the decisions with a reward.
        rewards: per decision, instead of rewards from the dataset (a simulator's draws); NaN = unknown.
    """
    if rewards is None:
        rewards, stats = decision_rewards(log.decisions, dataset, horizon_days)
    else:
        rewards = np.asarray(rewards, dtype=np.float64)
        stats = RewardStats(float(horizon_days), None, rewarded=int(np.isfinite(rewards).sum()))
    have = np.flatnonzero(np.isfinite(rewards))
    if not len(have):
        raise OffPolicyError(f"no logged decision has a reward yet: {stats.censored:,} censored (the horizon of "
                             f"{horizon_days:g} days after them ends after the data, {stats.data_end}), "
                             f"{stats.unknown_deal:,} with a deal not in the dataset, {stats.no_deal:,} without a deal")
    decisions = [log.decisions[i] for i in have]
    r = rewards[have]
    notes = []
    est = None
    if top1 is not None:
        new = np.asarray(top1(decisions), dtype=np.int64)
        est = estimate(ranker or "new ranker", np.array([d.shown for d in decisions]),
                       [d.propensity for d in decisions], new, r, bootstrap, seed, min_matched,
                       min_events=min_events)
        if est.unsupported and est.verdict != VERDICT_NONE:
            notes.append(f"note: the values are over the {est.supported:,} supported states only; the "
                         f"{est.unsupported:,} others say nothing about the new ranker")
    else:
        notes.append("no new ranker given (--bundle, --model or --by): only the logging policy's value")
    if bootstrap > 0:
        rng = np.random.default_rng(seed)
        step = _chunk(len(r))
        means = np.concatenate([r[rng.integers(0, len(r), size=(min(step, bootstrap - k), len(r)))]
                                .mean(axis=1) for k in range(0, bootstrap, step)])
        logged_value = Interval(float(r.mean()), *_percentiles(means, LEVEL))
    else:
        logged_value = Interval(float(r.mean()))
    return Evaluation(str(log.directory), data_label, ranker or "-", log.files, len(log.decisions), log.torn_lines,
                      log.other_records, sum(d.explored for d in log.decisions),
                      sorted({d.exploration for d in log.decisions}), sorted({d.model for d in log.decisions}),
                      stats, logged_value, est, notes)


def write_evaluation(evaluation: Evaluation, out: Path) -> None:
    """JSON (the whole document) or CSV (one row per value) by ``out``'s extension.

    Raises:
        OffPolicyError: another extension.
    """
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".json", ".csv"):
        raise OffPolicyError(f"--out {out}: the file name must end in .json or .csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".json":
        out.write_text(json.dumps(evaluation.to_dict(), indent=1, default=str) + "\n", encoding="utf-8")
        return
    rows = [{"policy": "logging", "estimator": "mean reward", "states": evaluation.rewards.rewarded,
             "matched": None, **_iv(evaluation.logged_value), "verdict": None}]
    e = evaluation.estimate
    if e is not None:
        for policy, estimator, iv in (("logging, supported states", "mean reward", e.logged),
                                      (f"new: {e.name}", "IPS", e.ips), (f"new: {e.name}", "SNIPS", e.snips),
                                      ("new - logging", "IPS", e.diff_ips), ("new - logging", "SNIPS", e.diff_snips)):
            rows.append({"policy": policy, "estimator": estimator, "states": e.supported, "matched": e.matched,
                         **_iv(iv), "verdict": e.verdict if iv is e.diff_ips else None})
    pd.DataFrame(rows).to_csv(out, index=False, lineterminator="\n", float_format="%.6g")


def _iv(iv: Interval) -> dict[str, float | None]:
    return {"value": iv.value, "low": iv.low, "high": iv.high}
