"""Each candidate activity's own effect on the deal: credit assignment by EM, within-deal offsets.

``/rank`` must say "do this, it will move the deal", so what it orders by has to be the
candidate's *own* effect, not what happens to go with promising deals or busy reps. Two things
make that hard in CRM history, and this module answers both:

**Credit assignment.** An advance (an outcome row, or a stage the deal never reached) is
recorded hours to weeks after the activity that caused it, while other activities happen in
between. Labelling every activity in a window before an advance teaches "busy deals advance".
Instead, each recorded advance is treated as caused by exactly one of: an earlier activity of
the deal, or the deal's background (advances no logged activity explains). The model is a
superposition: activity ``i`` at time ``t_i`` triggers an advance with probability ``q_i``,
recorded after a delay drawn from ``w`` (a histogram over days, no assumed shape); the
background adds ``beta`` advances per open deal-day. EM alternates

- E-step: each advance's responsibility is split between the activities in the ``max_lag``
  days before it, in proportion to ``q_i * w(lag)``, and the background ``beta``;
- M-step: ``q`` is refitted as a LightGBM model of the activity's plan-time features on the
  soft labels (each activity's summed responsibility, ``cross_entropy`` objective), ``w`` from
  the responsibilities per lag (corrected for lags cut off by the end of the data), ``beta``
  from the background's share.

**Confounding by what is constant within a deal or a rep.** A latent deal quality drives both
how hard reps work a deal and whether it advances; reps differ in skill and in style (how much
they automate). The LightGBM model gets an offset per deal and per rep (``init_score``), fitted
between boosting rounds by Newton steps under a Gaussian prior whose variance is estimated from
the data (the random-effects EM update): the boosters then learn how activities compare *within*
a deal and a rep, which is the comparison a next-best-activity decision makes. The trees are
further constrained like the ranking model's (``models.ranking.interaction_groups``): the
candidate's own columns (type, contact, settings, per-contact cadence) interact with each other
and with the stage, never with the rest of the deal's context, so within one deal state the
ranking is the candidate part of the score. By default (``candidate_interactions: staged``) each
candidate column is first fitted with the stage alone (``models.ranking.main_effect_groups``);
trees combining candidate columns are added on top in the final fit only as far as held-out
deals support them: the attributed advances are few, and interactions learned from the first
tree spent them on noise.

The effect of candidate ``a`` in a state is the change in the probability that the deal records
an advance within the outcome horizon ``H`` if ``a`` is done now rather than nothing
(``type: none``): ``F(H) * (q(a) - q(none))`` with ``F`` the learned delay distribution's CDF.
Its 90% interval comes from a deal-level bootstrap of the last M-step (Poisson weights per deal,
``n_bootstrap`` refits), and ``overlap`` is false when the training history has fewer than
``overlap_min_count`` activities of that kind (stage x type x automated, and stage x seniority):
such an effect is an extrapolation.

Why not EconML or causalml: their meta-learners (DR-, R-, X-learners) take one treatment and one
outcome per unit. Here the outcome of an activity is not observed: it is a share of an advance
that was recorded later and that other activities compete for, so the estimator's core is the
attribution itself, which neither library has. The pieces they would add on top (a propensity
model, a final-stage regression) are the LightGBM fits below; ``docs/effects.md`` has the measured
comparison against fixed-window labels.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.bundle import BundleError, FeatureSpec

logger = logging.getLogger(__name__)

EFFECTS_DIR = "effects"
META_FILE = "effects.json"
EFFECTS_FORMAT = "1.0"
DAY_S = 86_400.0
DESIGNS = ("pooled", "within_deal")
EFFECT_SMALL_ROWS = 50_000  # below this many activities the EM's boosters run on one thread
INTERACTIONS = ("staged", "free")


@dataclass(frozen=True)
class EffectSettings:
    """How the effect model is fitted. One configuration for every dataset: nothing here is tuned to a world.

    ``max_lag_days`` bounds how long after an activity its advance may be recorded; it is twice the
    product's outcome horizon (an advance recorded later than the horizon does not count for the
    effect anyway, and the learned delay distribution says how much of the mass is inside it).
    """

    max_lag_days: int = 28
    em_iterations: int = 8
    em_tolerance: float = 1e-2  # stop when the delay distribution and the mean of q move less than this
    learning_rate: float = 0.08
    num_leaves: int = 15
    min_data_in_leaf: int = 200
    num_boost_round: int = 400
    early_stopping_rounds: int = 25
    # rounds per EM iteration (the last fit uses early stopping on held-out deals). Each M-step must fit
    # its soft labels fully: a shrunk q spreads the next E-step's credit more evenly, and the shrinkage
    # compounds over the iterations (with 120 rounds, strong types ended at 0.6x their effect).
    em_boost_round: int = 400
    feature_fraction: float = 0.9
    lambda_l2: float = 1.0
    max_cat_to_onehot: int = 16
    offset_steps: int = 3  # Newton steps for the deal/rep offsets per EM iteration
    delay_steps: int = 10  # E/M rounds of the delay and background per refit of q
    # "within_deal": the candidate part of q is fitted by the conditional (multinomial) likelihood of
    # each deal's attributed advances over its own activities, so whatever multiplies every activity
    # of a deal (its latent quality, its owner's skill) cancels; the context part is fitted after it.
    # "pooled": one model with deal and rep offsets under a Gaussian prior.
    design: str = "pooled"
    # How the candidate's own columns may interact (pooled design). "staged": first each candidate
    # column with the stage alone (a main-effect profile per column: type x stage, seniority x stage,
    # cadence x stage...), then trees free to combine candidate columns on top of that, as many as
    # held-out deals support (early stopping; none when they support none). "free": one model in
    # which candidate columns interact from the first tree (more variance: every interaction is
    # learned from the same few attributed advances as the main effects).
    candidate_interactions: str = "staged"
    n_bootstrap: int = 16
    # A compute budget, not a tuned constant: a history with more activities (with a deal, before the
    # cut) is fitted on a random sample of whole deals holding at most this many (0: no limit). The
    # fit grows with the rows (EM, final fit and 16 bootstrap refits: ~54 s for 200k on 2 threads);
    # every world figure in docs/effects.md was measured on 200k histories, below it.
    max_activities: int = 300_000
    validation_share: float = 0.15  # of deals, for early stopping of the final fit
    overlap_min_count: int = 30
    seed: int = 7
    # LightGBM threads; 0: the caller's choice (``fit_effect_model(threads=...)``: training passes
    # ``lightgbm.num_threads``, one thread below EFFECT_SMALL_ROWS activities, where threads cost more
    # than they save and spin on a busy machine)
    num_threads: int = 0

    def __post_init__(self) -> None:
        if self.design not in DESIGNS:
            raise ValueError(f"design {self.design!r}: expected one of {', '.join(DESIGNS)}")
        if self.candidate_interactions not in INTERACTIONS:
            raise ValueError(f"candidate_interactions {self.candidate_interactions!r}: expected one of "
                             f"{', '.join(INTERACTIONS)}")
        for name in ("max_lag_days", "em_iterations", "num_boost_round", "em_boost_round", "min_data_in_leaf"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} {getattr(self, name)!r}: must be at least 1")
        if self.num_threads < 0:
            raise ValueError(f"num_threads {self.num_threads!r}: must be 0 (automatic) or more")
        if self.max_activities < 0:
            raise ValueError(f"max_activities {self.max_activities!r}: must be 0 (no limit) or more")
        if self.n_bootstrap < 0 or not 0 < self.validation_share < 1:
            raise ValueError("n_bootstrap must be >= 0 and validation_share between 0 and 1")


@dataclass
class EffectEstimate:
    """Per candidate: effect on P(advance within the horizon) against waiting, its 90% interval, overlap."""

    effect: np.ndarray
    low: np.ndarray
    high: np.ndarray
    overlap: np.ndarray  # bool
    q: np.ndarray  # the candidate's own probability of triggering an advance (any delay)


# -- EM core ---------------------------------------------------------------------------------------


@dataclass
class Attribution:
    """What the EM learned about the history: delay distribution, background rate, soft labels."""

    delay_pmf: np.ndarray  # over day bins 0..max_lag-1
    background_per_day: float
    soft_labels: np.ndarray  # per activity: expected number of advances it caused (0..1)
    q: np.ndarray  # per activity: fitted probability of causing an advance
    fit_mask: np.ndarray  # activities whose whole lag window is observed (the ones q is fitted on)
    iterations: int
    log: list[dict[str, float]] = field(default_factory=list)
    # log-likelihood per recorded advance of the held-out deals (the final trees never saw them):
    # how well q, the delay and the background explain advances; higher is better; None without
    # per-deal exposure or held-out advances
    heldout_loglik: float | None = None


def _pairs(act_deal: np.ndarray, act_t: np.ndarray, ev_deal: np.ndarray, ev_t: np.ndarray,
           max_lag_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(event index, activity index, lag in seconds) for every activity of the event's deal in ``[t - max_lag, t)``."""
    order = np.lexsort((act_t, act_deal))
    # Exact integer keys (deal, rank of the time among the activities' times): a float key like
    # deal * 1e12 + seconds cannot tell one second apart beyond ~9,000 deals.
    times = np.unique(act_t)
    width = np.int64(len(times) + 1)
    key = act_deal[order].astype(np.int64) * width + np.searchsorted(times, act_t[order], side="left")
    ev_base = ev_deal.astype(np.int64) * width
    ev_key_hi = ev_base + np.searchsorted(times, ev_t, side="left")  # ranks of times < ev_t
    ev_key_lo = ev_base + np.searchsorted(times, ev_t - max_lag_s, side="left")
    lo = np.searchsorted(key, ev_key_lo, side="left")
    hi = np.searchsorted(key, ev_key_hi, side="left")  # strictly before the event
    counts = hi - lo
    ev_idx = np.repeat(np.arange(len(ev_t)), counts)
    offsets = np.repeat(lo - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    pos = np.arange(counts.sum()) + offsets
    act_idx = order[pos]
    lag = ev_t[ev_idx] - act_t[act_idx]
    return ev_idx, act_idx, lag


class _Offsets:
    """Per-group additive logit offsets under a Gaussian prior with an estimated variance."""

    def __init__(self, codes: np.ndarray, n: int) -> None:
        self.codes = codes
        self.n = n
        self.values = np.zeros(n)
        self.variance = 0.25

    def __call__(self) -> np.ndarray:
        return self.values[self.codes]

    def step(self, y: np.ndarray, p: np.ndarray, w: np.ndarray) -> None:
        """One Newton step of the penalized log-likelihood, then the variance's EM update."""
        g = np.bincount(self.codes, weights=w * (y - p), minlength=self.n)
        h = np.bincount(self.codes, weights=w * p * (1 - p), minlength=self.n)
        prec = h + 1.0 / self.variance
        self.values = self.values + (g - self.values / self.variance) / prec
        self.variance = float(np.clip(np.mean(self.values ** 2 + 1.0 / prec), 1e-4, 4.0))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -35, 35)))


class SumBooster:
    """q's raw score as the sum of a candidate booster and a context booster (``predict`` like LightGBM's)."""

    def __init__(self, candidate, context=None) -> None:  # noqa: ANN001
        self.candidate = candidate
        self.context = context

    def predict(self, matrix: np.ndarray, raw_score: bool = True) -> np.ndarray:
        out = self.candidate.predict(matrix, raw_score=True)
        if self.context is not None:
            out = out + self.context.predict(matrix, raw_score=True)
        return out

    def current_iteration(self) -> int:
        return int(self.candidate.current_iteration())


def _grouped_softmax(groups: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None):  # noqa: ANN202
    """LightGBM objective and metric: within each group, the soft labels' multinomial likelihood.

    The conditional likelihood of a Poisson model with a free rate per group: a factor common to
    a group's rows (a deal's quality, its rep's skill) cancels, so the trees learn only how rows
    of the same group compare.
    """
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    w = np.ones(len(y)) if weight is None else weight
    yw = y * w
    totals = np.bincount(groups, weights=yw, minlength=n_groups)

    def probs(raw: np.ndarray) -> np.ndarray:
        top = np.full(n_groups, -np.inf)
        np.maximum.at(top, groups, raw)
        e = np.exp(raw - top[groups]) * w
        z = np.bincount(groups, weights=e, minlength=n_groups)
        return e / z[groups]

    def objective(raw: np.ndarray, _data) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
        p = probs(raw)
        grad = p * totals[groups] - yw
        hess = np.maximum(totals[groups] * p * (1 - p), 1e-9)
        return grad, hess

    def metric(raw: np.ndarray, _data) -> tuple[str, float, bool]:  # noqa: ANN001
        p = probs(raw)
        ll = -np.sum(yw * np.log(np.maximum(p, 1e-300))) / max(totals.sum(), 1e-12)
        return "within_group_nll", float(ll), False

    return objective, metric


class EMFitter:
    """Fits the attribution EM and the effect boosters on one history (arrays, no pandas)."""

    def __init__(self, matrix: np.ndarray, spec: FeatureSpec, act_deal: np.ndarray, act_rep: np.ndarray,
                 act_t: np.ndarray, ev_deal: np.ndarray, ev_t: np.ndarray, exposure_days: float, end_t: float,
                 settings: EffectSettings, deal_exposure_days: np.ndarray | None = None, threads: int = 1) -> None:
        self.m = matrix
        from models.ranking import lightgbm_threads

        self.threads = lightgbm_threads(settings.num_threads, threads, len(act_t), EFFECT_SMALL_ROWS)
        self._datasets: dict[tuple[int, int, int], Any] = {}  # binned datasets by row set (_dataset)
        self.deal_exposure = None if deal_exposure_days is None else np.asarray(deal_exposure_days, dtype=np.float64)
        self.spec = spec
        self.s = settings
        self.act_deal, self.act_rep, self.act_t = act_deal, act_rep, act_t
        self.ev_deal, self.ev_t = ev_deal, ev_t
        self.exposure_days = max(float(exposure_days), 1.0)
        self.end_t = end_t
        self.L = int(settings.max_lag_days)
        self.ev_idx, self.act_idx, lag = _pairs(act_deal, act_t, ev_deal, ev_t, self.L * DAY_S)
        self.lag_bin = np.minimum((lag // DAY_S).astype(np.int64), self.L - 1)
        # activities whose whole lag window lies inside the data: only they have complete labels
        self.fit_mask = act_t + self.L * DAY_S <= end_t
        self.n_deals = int(act_deal.max()) + 1 if len(act_deal) else 0
        self.n_reps = int(act_rep.max()) + 1 if len(act_rep) else 0
        self.deal_off = _Offsets(act_deal, self.n_deals)
        self.rep_off = _Offsets(act_rep, max(self.n_reps, 1))
        self.intercept = 0.0  # logit of the mean soft label: offsets and trees are deviations from it
        from models.ranking import STAGE_FEATURES, candidate_feature_names

        cand = set(candidate_feature_names(spec)) | set(STAGE_FEATURES)
        ctx_cols = [i for i, n in enumerate(spec.names) if n not in cand]
        cand_cols = [i for i, n in enumerate(spec.names) if n in cand and n not in STAGE_FEATURES]
        self.m_cand = matrix.copy()
        self.m_cand[:, ctx_cols] = np.nan  # the candidate part sees only the candidate's columns and the stage
        self.m_ctx = matrix.copy()
        self.m_ctx[:, cand_cols] = np.nan
        self.has_context = bool(ctx_cols)

    def _init(self) -> np.ndarray:
        return self.intercept + self.deal_off() + self.rep_off()

    def _params(self, seed: int, main_effects: bool = False) -> dict[str, Any]:
        from models.ranking import interaction_groups, main_effect_groups

        s = self.s
        groups = main_effect_groups(self.spec) if main_effects else interaction_groups(self.spec)
        return {
            "objective": "cross_entropy", "learning_rate": s.learning_rate, "num_leaves": s.num_leaves,
            "min_data_in_leaf": s.min_data_in_leaf, "feature_fraction": s.feature_fraction,
            "lambda_l2": s.lambda_l2, "max_cat_to_onehot": s.max_cat_to_onehot,
            "interaction_constraints": groups, "num_threads": self.threads,
            "seed": seed, "deterministic": True, "force_row_wise": True, "verbose": -1,
        }

    def _dataset(self, rows: np.ndarray, y: np.ndarray, init: np.ndarray, weight: np.ndarray | None = None,
                 reference=None):  # noqa: ANN001, ANN202
        """A LightGBM dataset of ``rows`` with labels ``y`` and initial scores ``init``.

        Unweighted datasets are binned once per row set and reused: every M-step block and EM
        iteration fits the same rows with new labels and offsets, and binning them again cost
        about a sixth of the fit. Same rows, same bins, so the trees are the same as with a
        fresh dataset.
        """
        import lightgbm as lgb

        key = None
        if weight is None:
            key = (hash(rows.tobytes()), len(rows), id(reference))
            hit = self._datasets.get(key)
            if hit is not None:
                hit.set_label(y[rows])
                hit.set_init_score(init[rows])
                return hit
        names = [f"f{i}" for i in range(self.m.shape[1])]
        ds = lgb.Dataset(self.m[rows], label=y[rows], init_score=init[rows], weight=None if weight is None
                         else weight[rows], feature_name=names, categorical_feature=self.spec.categorical_indices,
                         reference=reference, params={"verbose": -1}, free_raw_data=False)
        if key is not None:
            self._datasets[key] = ds
        return ds

    def e_step(self, q: np.ndarray, w: np.ndarray, beta: float) -> tuple[np.ndarray, np.ndarray, float]:
        """Soft labels per activity, responsibility mass per lag bin, background share."""
        n_ev = len(self.ev_t)
        contrib = q[self.act_idx] * w[self.lag_bin]
        total = np.bincount(self.ev_idx, weights=contrib, minlength=n_ev) + beta
        r = contrib / total[self.ev_idx]
        soft = np.bincount(self.act_idx, weights=r, minlength=len(q))
        per_lag = np.bincount(self.lag_bin, weights=r, minlength=self.L)
        background = float(np.sum(beta / total))
        return np.clip(soft, 0.0, 1.0), per_lag, background

    def m_delay(self, per_lag: np.ndarray, q: np.ndarray) -> np.ndarray:
        """Delay histogram: responsibility per lag over the q-mass that could be seen at that lag."""
        exposure = np.array([q[self.act_t + (k + 1) * DAY_S <= self.end_t].sum() for k in range(self.L)])
        rate = np.where(exposure > 0, per_lag / np.maximum(exposure, 1e-12), 0.0)
        if rate.sum() <= 0:
            return np.full(self.L, 1.0 / self.L)
        return rate / rate.sum()

    def fit(self, log_every: bool = True) -> tuple[Attribution, Any]:
        """Run EM; returns the attribution and the last booster (fitted on the final soft labels)."""
        import lightgbm as lgb

        s = self.s
        n = len(self.act_t)
        rows = np.flatnonzero(self.fit_mask)
        if len(rows) < 1000 or len(self.ev_t) < 50:
            raise ValueError(f"too little data to estimate effects: {len(rows)} activities with a complete "
                             f"{self.L}-day window and {len(self.ev_t)} recorded advances (need 1000 and 50)")
        # start: every advance shared by the activities before it with a flat delay, no background
        w = np.full(self.L, 1.0 / self.L)
        prior = len(self.ev_t) / max(n, 1)
        q = np.full(n, min(prior, 0.5))
        beta = 0.1 * len(self.ev_t) / self.exposure_days
        booster = None
        it_log: list[dict[str, float]] = []
        it = 0
        for it in range(1, s.em_iterations + 1):
            w_start = w
            # the delay and the background converge slowly and cost nothing to update: several
            # E/M rounds of theirs per refit of q
            for _ in range(s.delay_steps):
                soft, per_lag, bg = self.e_step(q, w, beta)
                w = self.m_delay(per_lag, q)
                beta = bg / self.exposure_days
            soft, per_lag, bg = self.e_step(q, w, beta)
            w_new = w
            booster, q_new = self._m(soft, rows, s.em_boost_round, early=False)
            dw = float(np.abs(w_new - w_start).sum())
            dq = float(abs(q_new[rows].mean() - q[rows].mean()) / max(q[rows].mean(), 1e-9))
            w, q = w_new, q_new
            it_log.append({"iteration": it, "delay_change": dw, "q_change": dq, "background_per_day": beta,
                           "mean_soft_label": float(soft[rows].mean()), "mean_q": float(q[rows].mean())})
            if log_every:
                logger.info("effects EM %d: delay change %.4f, mean q %.4f, background %.5f/day", it, dw,
                            float(q[rows].mean()), beta)
            if dw < s.em_tolerance and dq < s.em_tolerance:
                break
        soft, per_lag, bg = self.e_step(q, w, beta)
        booster, q = self._m(soft, rows, s.num_boost_round, early=True)
        self.final_soft = soft
        self.final_rows = rows
        return Attribution(w, beta, soft, q, self.fit_mask, it, it_log, self.heldout_loglik(q, w, beta)), booster

    def heldout_loglik(self, q: np.ndarray, w: np.ndarray, beta: float) -> float | None:
        """Log-likelihood per advance of the validation deals' recorded advances (a point process).

        The advances of a deal are a Poisson process of intensity ``beta + sum_i q_i w(t - t_i)``;
        its log-likelihood is the sum of the log intensity at each advance minus the expected count
        (each activity's ``q`` times the share of its delay window inside the data, plus ``beta`` per
        open deal-day). Computed on the deals held out of the final fit, it compares settings on the
        data alone: what the attribution gets right shows as a higher value, with no truth needed.
        """
        if self.deal_exposure is None or len(self.deal_exposure) != self.n_deals:
            return None
        rows = np.flatnonzero(self.fit_mask)
        _, valid = self._split(rows, True)
        if valid is None or not len(valid):
            return None
        held = np.zeros(self.n_deals, dtype=bool)
        held[self.act_deal[valid]] = True
        ev_held = held[self.ev_deal]
        if not ev_held.any():
            return None
        seen = np.clip((self.end_t - self.act_t) / DAY_S, 0.0, self.L)
        inside = np.zeros(len(q))
        for k in range(self.L):
            inside += w[k] * np.clip(seen - k, 0.0, 1.0)
        contrib = q[self.act_idx] * w[self.lag_bin]
        intensity = np.bincount(self.ev_idx, weights=contrib, minlength=len(self.ev_t)) + beta
        act_held = held[self.act_deal]
        expected = float(np.sum(q[act_held] * inside[act_held]) + beta * self.deal_exposure[held].sum())
        loglik = float(np.sum(np.log(np.maximum(intensity[ev_held], 1e-300)))) - expected
        return loglik / int(ev_held.sum())

    def fit_known(self, labels: np.ndarray) -> tuple[Attribution, Any]:
        """Fit q on known per-activity labels instead of attributed ones; no EM.

        What a benchmark uses to measure the ceiling of credit assignment: with the simulator's
        record of which activity triggered each advance as labels, every shortfall left is the
        model's and the data's, not the attribution's. The delay distribution and the background
        are then estimated for the fitted q as in EM.
        """
        labels = np.asarray(labels, dtype=np.float64)
        if labels.shape != (len(self.act_t),) or not np.all(np.isfinite(labels)):
            raise ValueError(f"known labels: expected {len(self.act_t)} finite values, got shape {labels.shape}")
        rows = np.flatnonzero(self.fit_mask)
        booster, q = self._m(labels, rows, self.s.num_boost_round, early=True)
        w = np.full(self.L, 1.0 / self.L)
        beta = 0.1 * len(self.ev_t) / self.exposure_days
        for _ in range(self.s.delay_steps):
            _, per_lag, bg = self.e_step(q, w, beta)
            w, beta = self.m_delay(per_lag, q), bg / self.exposure_days
        self.final_soft, self.final_rows = labels, rows
        return Attribution(w, beta, labels, q, self.fit_mask, 0, [], self.heldout_loglik(q, w, beta)), booster

    def _m(self, soft: np.ndarray, rows: np.ndarray, rounds: int, early: bool):  # noqa: ANN202
        if self.s.design == "within_deal":
            return self._m_within(soft, rows, rounds, early)
        if self.s.design != "pooled":
            raise ValueError(f"effects design {self.s.design!r}: expected 'within_deal' or 'pooled'")
        return self._m_q(soft, rows, rounds, early)

    def _split(self, rows: np.ndarray, early: bool) -> tuple[np.ndarray, np.ndarray | None]:
        if not early:
            return rows, None
        rng = np.random.default_rng(self.s.seed)
        deals = np.unique(self.act_deal[rows])
        held = rng.choice(deals, size=max(1, int(len(deals) * self.s.validation_share)), replace=False)
        is_valid = np.isin(self.act_deal[rows], held)
        return rows[~is_valid], rows[is_valid]

    def _fit_candidate(self, soft: np.ndarray, rows: np.ndarray, valid: np.ndarray | None, rounds: int,
                       weight: np.ndarray | None = None, seed: int | None = None):  # noqa: ANN202
        """The candidate part: trees on the candidate's columns, within-deal multinomial likelihood."""
        import lightgbm as lgb

        s = self.s

        def grouped(r: np.ndarray):  # noqa: ANN202
            w = None if weight is None else weight[r]
            totals = np.bincount(self.act_deal[r], weights=soft[r] * (1 if w is None else w),
                                 minlength=self.n_deals)
            r = r[totals[self.act_deal[r]] > 0]  # a deal with nothing attributed says nothing within it
            codes = np.unique(self.act_deal[r], return_inverse=True)[1]
            return r, codes

        r_fit, g_fit = grouped(rows)
        obj, metric = _grouped_softmax(g_fit, soft[r_fit], None if weight is None else weight[r_fit])
        params = self._params(s.seed if seed is None else seed) | {"objective": obj, "metric": "None"}
        names = [f"f{i}" for i in range(self.m.shape[1])]
        dtrain = lgb.Dataset(self.m_cand[r_fit], label=soft[r_fit], feature_name=names,
                             categorical_feature=self.spec.categorical_indices, params={"verbose": -1},
                             free_raw_data=False)
        if valid is None:
            return lgb.train(params, dtrain, num_boost_round=rounds)
        r_val, g_val = grouped(valid)
        _, vmetric = _grouped_softmax(g_val, soft[r_val])
        dvalid = lgb.Dataset(self.m_cand[r_val], label=soft[r_val], reference=dtrain, free_raw_data=False)

        def feval(raw, data):  # noqa: ANN001, ANN202
            return vmetric(raw, data) if data is dvalid else metric(raw, data)

        booster = lgb.train(params, dtrain, num_boost_round=rounds, valid_sets=[dvalid], feval=feval,
                            callbacks=[lgb.early_stopping(s.early_stopping_rounds, verbose=False)])
        best = booster.best_iteration or booster.current_iteration()
        return lgb.Booster(model_str=booster.model_to_string(num_iteration=best))

    def _m_within(self, soft: np.ndarray, rows: np.ndarray, rounds: int, early: bool):  # noqa: ANN202
        """Refit q = sigmoid(intercept + candidate part + context part), the candidate part within deals."""
        import lightgbm as lgb

        s = self.s
        mean = float(np.clip(soft[rows].mean(), 1e-6, 0.5))
        self.intercept = float(np.log(mean / (1 - mean)))
        rows_fit, valid = self._split(rows, early)
        cand = self._fit_candidate(soft, rows_fit, valid, rounds)
        g = cand.predict(self.m, raw_score=True)
        g = g - float(np.mean(g[rows]))  # the level belongs to the intercept and the context part
        context = None
        if self.has_context:
            params = self._params(s.seed) | {"interaction_constraints": []}
            params.pop("interaction_constraints")
            names = [f"f{i}" for i in range(self.m.shape[1])]
            init = self.intercept + g

            def ds(r: np.ndarray, ref=None):  # noqa: ANN001, ANN202
                return lgb.Dataset(self.m_ctx[r], label=soft[r], init_score=init[r], feature_name=names,
                                   categorical_feature=self.spec.categorical_indices, reference=ref,
                                   params={"verbose": -1}, free_raw_data=False)

            dtrain = ds(rows_fit)
            if valid is None:
                context = lgb.train(params, dtrain, num_boost_round=max(10, rounds // 2))
            else:
                context = lgb.train(params | {"metric": "cross_entropy"}, dtrain, num_boost_round=rounds,
                                    valid_sets=[ds(valid, dtrain)],
                                    callbacks=[lgb.early_stopping(s.early_stopping_rounds, verbose=False)])
                best = context.best_iteration or context.current_iteration()
                context = lgb.Booster(model_str=context.model_to_string(num_iteration=best))
        self.g_shift = float(np.mean(cand.predict(self.m[rows], raw_score=True)))
        self.intercept -= self.g_shift
        booster = SumBooster(cand, context)
        q = _sigmoid(self.intercept + booster.predict(self.m))
        self.rows_fit_final = rows_fit
        return booster, q

    def _m_q(self, soft: np.ndarray, rows: np.ndarray, rounds: int, early: bool):  # noqa: ANN202
        """Refit q: boosters on soft labels with deal and rep offsets updated between blocks of rounds."""
        import lightgbm as lgb

        s = self.s
        staged = s.candidate_interactions == "staged"
        params = self._params(s.seed, main_effects=staged)
        mean = float(np.clip(soft[rows].mean(), 1e-6, 0.5))
        self.intercept = float(np.log(mean / (1 - mean)))
        base = np.zeros(len(soft))
        booster = None
        rows_fit, valid_rows = self._split(rows, early)  # the held-out deals heldout_loglik reads too
        blocks = max(1, s.offset_steps)
        per_block = max(10, rounds // blocks)
        for b in range(blocks):
            init = self._init()
            dtrain = self._dataset(rows_fit, soft, init)
            if early and b == blocks - 1:
                dvalid = self._dataset(valid_rows, soft, init, reference=dtrain)
                booster = lgb.train(params | {"metric": "cross_entropy"}, dtrain, num_boost_round=rounds,
                                    valid_sets=[dvalid],
                                    callbacks=[lgb.early_stopping(s.early_stopping_rounds, verbose=False)])
                best = booster.best_iteration or booster.current_iteration()
                booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
            else:
                booster = lgb.train(params, dtrain, num_boost_round=per_block)
            base = booster.predict(self.m, raw_score=True)
            if b == blocks - 1:
                break  # the last block's offsets are the ones its trees were fitted with
            wmask = np.zeros(len(soft))
            wmask[rows_fit] = 1.0
            self.deal_off.step(soft, _sigmoid(base + self._init()), wmask)
            self.rep_off.step(soft, _sigmoid(base + self._init()), wmask)
        self.main_rounds = booster.current_iteration()
        if staged and early:
            # interactions between candidate columns, on top of the main effects: only as many
            # trees as the held-out deals support
            init = self._init() + base
            dtrain = self._dataset(rows_fit, soft, init)
            dvalid = self._dataset(valid_rows, soft, init, reference=dtrain)
            extra = lgb.train(self._params(s.seed) | {"metric": "cross_entropy"}, dtrain, num_boost_round=rounds,
                              valid_sets=[dvalid],
                              callbacks=[lgb.early_stopping(s.early_stopping_rounds, verbose=False)])
            best = extra.best_iteration or 0
            self.interaction_rounds = int(best)
            if best > 0:
                extra = lgb.Booster(model_str=extra.model_to_string(num_iteration=best))
                booster = _Parts([booster, extra])
                base = booster.predict(self.m, raw_score=True)
        q = _sigmoid(base + self._init())
        return booster, q

    def bootstrap(self, booster, n_rounds: int) -> list[Any]:  # noqa: ANN001
        """Refits of the final M-step on deal-level Poisson(1) resamples: the interval's spread."""
        import lightgbm as lgb

        s = self.s
        out = []
        rows = self.final_rows
        init = self._init()
        rng = np.random.default_rng(s.seed + 1)
        if isinstance(booster, SumBooster):
            for b in range(s.n_bootstrap):
                wdeal = rng.poisson(1.0, self.n_deals).astype(np.float64)
                weight = wdeal[self.act_deal]
                keep = rows[weight[rows] > 0]
                cand = self._fit_candidate(self.final_soft, keep, None, max(10, n_rounds), weight=weight,
                                           seed=s.seed + 100 + b)
                # same level as the point estimate: the bootstrap varies how candidates compare
                shift = float(np.mean(cand.predict(self.m[rows], raw_score=True))) - self.g_shift
                out.append(_Shifted(SumBooster(cand, booster.context), -shift))
            return out
        staged = s.candidate_interactions == "staged"
        parts = booster.boosters if isinstance(booster, _Parts) else [booster]
        for b in range(s.n_bootstrap):
            wdeal = rng.poisson(1.0, self.n_deals).astype(np.float64)
            weight = wdeal[self.act_deal]
            keep = rows[weight[rows] > 0]
            dtrain = self._dataset(keep, self.final_soft, init, weight=weight)
            params = self._params(s.seed + 100 + b, main_effects=staged)
            params["bagging_seed"] = s.seed + 100 + b
            main = lgb.train(params, dtrain, num_boost_round=max(10, parts[0].current_iteration()))
            if len(parts) == 1:
                out.append(main)
                continue
            # the interaction trees are refitted too, on top of this resample's main effects
            start = init.copy()  # only the resample's rows are read: predict those alone
            start[keep] += main.predict(self.m[keep], raw_score=True)
            dtrain = self._dataset(keep, self.final_soft, start, weight=weight)
            extra = lgb.train(self._params(s.seed + 200 + b), dtrain, num_boost_round=parts[1].current_iteration())
            out.append(_Parts([main, extra]))
        return out


class _Shifted:
    """A booster whose raw score is moved by a constant."""

    def __init__(self, booster, shift: float) -> None:  # noqa: ANN001
        self.booster = booster
        self.shift = shift

    def predict(self, matrix: np.ndarray, raw_score: bool = True) -> np.ndarray:
        return self.booster.predict(matrix, raw_score=True) + self.shift


class _Parts:
    """A raw score as a sum of LightGBM boosters plus a constant: what every q model reduces to on disk."""

    def __init__(self, boosters: list[Any], shift: float = 0.0) -> None:
        self.boosters = boosters
        self.shift = float(shift)

    def predict(self, matrix: np.ndarray, raw_score: bool = True) -> np.ndarray:
        out = self.boosters[0].predict(matrix, raw_score=True)
        for b in self.boosters[1:]:
            out = out + b.predict(matrix, raw_score=True)
        return out + self.shift

    def current_iteration(self) -> int:
        return int(self.boosters[0].current_iteration())


def _flatten(model) -> tuple[list[Any], float]:  # noqa: ANN001
    """(boosters, shift) whose sum of raw scores is ``model``'s raw score."""
    if isinstance(model, _Shifted):
        boosters, shift = _flatten(model.booster)
        return boosters, shift + float(model.shift)
    if isinstance(model, _Parts):
        return list(model.boosters), model.shift
    if isinstance(model, SumBooster):
        first, s1 = _flatten(model.candidate)
        if model.context is None:
            return first, s1
        second, s2 = _flatten(model.context)
        return first + second, s1 + s2
    return [model], 0.0


def _save_parts(model, out: Path, stem: str) -> dict[str, Any]:  # noqa: ANN001
    boosters, shift = _flatten(model)
    files = []
    for k, b in enumerate(boosters):
        name = f"{stem}.txt" if k == 0 else f"{stem}_part{k}.txt"
        b.save_model(str(out / name))
        files.append(name)
    return {"files": files, "shift": shift}


def _load_parts(d: Path, entry: dict[str, Any]):  # noqa: ANN202
    import lightgbm as lgb

    boosters = [lgb.Booster(model_file=str(d / name)) for name in entry["files"]]
    if len(boosters) == 1 and not entry.get("shift"):
        return boosters[0]
    return _Parts(boosters, float(entry.get("shift", 0.0)))


# -- the fitted model --------------------------------------------------------------------------------


@dataclass
class EffectModel:
    """Boosters for q (point and bootstrap), the delay distribution, and the support table for overlap."""

    booster: Any
    bootstraps: list[Any]
    feature_names: list[str]
    delay_pmf: np.ndarray
    horizon_days: int
    support: dict[str, int]  # "stage|type|automated" and "stage|seniority:<s>" -> count
    settings: EffectSettings
    metrics: dict[str, Any] = field(default_factory=dict)
    support_keys: tuple[int, int, int, int] = (-1, -1, -1, -1)  # spec indices: stage_order, type, is_automated, seniority
    intercept: float = 0.0  # added to the boosters' raw scores (they were fitted as deviations from it)

    @property
    def horizon_share(self) -> float:
        """F(H): the share of an activity's advances recorded within the outcome horizon."""
        return float(self.delay_pmf[: self.horizon_days].sum())

    def _check(self, matrix: np.ndarray) -> np.ndarray:
        matrix = np.asarray(matrix, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[1] != len(self.feature_names):
            raise BundleError(f"effect model needs {len(self.feature_names)} columns, got shape {matrix.shape}")
        return matrix

    def q(self, matrix: np.ndarray) -> np.ndarray:
        """P(the activity triggers an advance, at any delay) in a typical deal of its context."""
        return _sigmoid(self.intercept + self.booster.predict(self._check(matrix), raw_score=True))

    def predict(self, matrix: np.ndarray, baseline: np.ndarray | None = None) -> EffectEstimate:
        """Effects of candidate rows against waiting.

        Args:
            matrix: encoded plan rows of the candidates.
            baseline: encoded plan rows of ``none`` in the same states (one per candidate row, or
                one row broadcast to all); None when the history has no ``none`` activities, so
                waiting triggers no advance of its own (q = 0).
        """
        matrix = self._check(matrix)
        n = len(matrix)
        if baseline is not None:
            baseline = self._check(baseline)
            if len(baseline) == 1 and n > 1:
                baseline = np.repeat(baseline, n, axis=0)
            both = np.vstack([matrix, baseline])
        else:
            both = matrix
        share = self.horizon_share

        def effects_of(raw: np.ndarray) -> np.ndarray:
            raw = raw + self.intercept
            q_none = _sigmoid(raw[n:]) if baseline is not None else 0.0
            return share * (_sigmoid(raw[:n]) - q_none)

        raw = self.booster.predict(both, raw_score=True)
        effect = effects_of(raw)
        if self.bootstraps:
            draws = np.stack([effects_of(b.predict(both, raw_score=True)) for b in self.bootstraps])
            low = np.minimum(np.quantile(draws, 0.05, axis=0), effect)
            high = np.maximum(np.quantile(draws, 0.95, axis=0), effect)
        else:
            low, high = effect.copy(), effect.copy()
        return EffectEstimate(effect, low, high, self.overlap(matrix), _sigmoid(self.intercept + raw[:n]))

    def overlap(self, matrix: np.ndarray) -> np.ndarray:
        """False where training saw fewer than ``overlap_min_count`` activities of this kind in this stage."""
        st, ty, au, se = self.support_keys
        out = np.ones(len(matrix), dtype=bool)
        if st < 0 or ty < 0:
            return out
        k = self.settings.overlap_min_count
        for i, row in enumerate(matrix):
            key = _support_key(row[st], row[ty], row[au] if au >= 0 else np.nan)
            ok = self.support.get(key, 0) >= k
            if ok and se >= 0 and np.isfinite(row[se]):
                ok = self.support.get(_seniority_key(row[st], row[se]), 0) >= k
            out[i] = ok
        return out

    # -- persistence -------------------------------------------------------------------------------

    def save(self, bundle_dir: Path) -> Path:
        """Write ``<bundle_dir>/effects/``: boosters as text, metadata as JSON."""
        out = Path(bundle_dir) / EFFECTS_DIR
        out.mkdir(parents=True, exist_ok=True)
        for old in out.glob("*.txt"):  # a previous model's files (their number may differ)
            old.unlink()
        parts = {"q": _save_parts(self.booster, out, "q")}
        for b, bst in enumerate(self.bootstraps):
            parts[f"bootstrap_{b:02d}"] = _save_parts(bst, out, f"bootstrap_{b:02d}")
        meta = {
            "parts": parts,
            "format": EFFECTS_FORMAT, "feature_names": self.feature_names, "delay_pmf": self.delay_pmf.tolist(),
            "horizon_days": self.horizon_days, "support": self.support, "settings": asdict(self.settings),
            "metrics": self.metrics, "n_bootstrap": len(self.bootstraps), "support_keys": list(self.support_keys),
            "intercept": self.intercept,
        }
        (out / META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True), encoding="utf-8")
        return out

    def describe(self) -> dict[str, Any]:
        """What GET /model shows about the effect model."""
        return {"horizon_days": self.horizon_days, "horizon_share": round(self.horizon_share, 4),
                "delay_pmf_days": [round(float(x), 4) for x in self.delay_pmf],
                "n_bootstrap": len(self.bootstraps), "overlap_min_count": self.settings.overlap_min_count,
                "metrics": self.metrics}


def _support_key(stage: float, typ: float, auto: float) -> str:
    s = "na" if not np.isfinite(stage) else str(int(stage))
    t = "na" if not np.isfinite(typ) else str(int(typ))
    a = "na" if not np.isfinite(auto) else str(int(auto > 0.5))
    return f"{s}|{t}|{a}"


def _seniority_key(stage: float, seniority: float) -> str:
    s = "na" if not np.isfinite(stage) else str(int(stage))
    return f"{s}|seniority:{int(seniority)}"


def support_table(matrix: np.ndarray, keys: tuple[int, int, int, int]) -> dict[str, int]:
    """Counts of training activities per (stage, type, automated) and per (stage, seniority)."""
    st, ty, au, se = keys
    out: dict[str, int] = {}
    if st < 0 or ty < 0:
        return out
    auto = matrix[:, au] if au >= 0 else np.full(len(matrix), np.nan)
    for s_, t_, a_ in zip(matrix[:, st], matrix[:, ty], auto):
        k = _support_key(s_, t_, a_)
        out[k] = out.get(k, 0) + 1
    if se >= 0:
        for s_, v in zip(matrix[:, st], matrix[:, se]):
            if np.isfinite(v):
                k = _seniority_key(s_, v)
                out[k] = out.get(k, 0) + 1
    return out


def load_effects(bundle_dir: Path, spec: FeatureSpec) -> EffectModel | None:
    """The bundle's effect model, or None when it has none.

    Raises:
        BundleError: the files are unreadable, of an unknown format, or built for other features.
    """
    import lightgbm as lgb

    d = Path(bundle_dir) / EFFECTS_DIR
    if not d.exists():
        return None
    try:
        meta = json.loads((d / META_FILE).read_text(encoding="utf-8"))
        parts = meta.get("parts") or {"q": {"files": ["q.txt"]}} | {
            f"bootstrap_{b:02d}": {"files": [f"bootstrap_{b:02d}.txt"]} for b in range(int(meta["n_bootstrap"]))}
        booster = _load_parts(d, parts["q"])
        boots = [_load_parts(d, parts[f"bootstrap_{b:02d}"]) for b in range(int(meta["n_bootstrap"]))]
    except (OSError, ValueError, KeyError, lgb.basic.LightGBMError) as err:
        raise BundleError(f"{d}: unreadable effect model ({err})") from None
    if str(meta.get("format", "")).split(".")[0] != EFFECTS_FORMAT.split(".")[0]:
        raise BundleError(f"{d / META_FILE}: unknown effect model format {meta.get('format')!r}")
    if list(meta.get("feature_names") or []) != list(spec.names):
        raise BundleError(f"{d}: effect model was fitted on other features than the bundle's feature spec")
    settings = EffectSettings(**{k: v for k, v in (meta.get("settings") or {}).items()
                                 if k in EffectSettings.__dataclass_fields__})
    return EffectModel(booster, boots, list(spec.names), np.asarray(meta["delay_pmf"], dtype=np.float64),
                       int(meta["horizon_days"]), {k: int(v) for k, v in (meta.get("support") or {}).items()},
                       settings, meta.get("metrics") or {},
                       tuple(int(x) for x in meta.get("support_keys", (-1, -1, -1, -1))),
                       float(meta.get("intercept", 0.0)))
