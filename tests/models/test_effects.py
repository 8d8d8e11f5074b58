"""The effect estimator (``models.effects``): credit assignment, delays, within-deal offsets, persistence.

Histories here are drawn from the estimator's own generative story with planted numbers, so
every assertion compares with a known truth; each also shows what the naive alternative (every
activity in a window before an advance labelled positive) gets wrong.
"""

from __future__ import annotations

import numpy as np
import pytest

from features.schema import CATEGORICAL, NUMERIC, PLAN
from models.bundle import BundleError, FeatureSpec, SpecFeature
from models.effects import DAY_S, EffectModel, EffectSettings, EMFitter, _pairs, load_effects, support_table

FAST = EffectSettings(n_bootstrap=4, em_iterations=6, num_boost_round=150, em_boost_round=60, min_data_in_leaf=50)


def _spec() -> FeatureSpec:
    return FeatureSpec([
        SpecFeature("type", "activity", CATEGORICAL, PLAN, "", "", ("a", "b")),
        SpecFeature("stage_order", "deal", NUMERIC, PLAN, "", "", None),
        SpecFeature("is_automated", "activity", NUMERIC, PLAN, "", "", None),
    ])


def _history(rng: np.random.Generator, *, n_deals: int, q: dict[int, float], delay: np.ndarray,
             busy_type: int | None = None, deal_effect: float = 0.0, quality_choice: bool = False,
             days: int = 200):
    """Deals with Poisson activity streams; each activity triggers an advance with its q, after a delay.

    ``busy_type``: deals that use this type get three times as many activities (a busy-deal
    confounder for window labels). ``quality_choice``: a latent deal quality multiplies every q
    in the deal by exp(deal_effect * quality) and deals of high quality use type 1 far more.
    """
    acts_deal, acts_t, acts_type = [], [], []
    ev_deal, ev_t = [], []
    rep = []
    for d in range(n_deals):
        quality = rng.normal()
        if quality_choice:
            p1 = 1 / (1 + np.exp(-2.5 * quality))
        else:
            p1 = 0.5
        rate = 0.6
        uses_busy = busy_type is not None and rng.random() < 0.5
        if uses_busy:
            rate *= 3
        n = rng.poisson(rate * days)
        t = np.sort(rng.uniform(0, days * DAY_S, n))
        if busy_type is not None:
            types = np.where(rng.random(n) < (0.8 if uses_busy else 0.2), busy_type, 1 - busy_type)
        else:
            types = (rng.random(n) < p1).astype(int)
        mult = np.exp(deal_effect * quality) if quality_choice else 1.0
        for ti, ty in zip(t, types):
            acts_deal.append(d)
            acts_t.append(ti)
            acts_type.append(ty)
            rep.append(d % 7)
            p = min(0.95, q[int(ty)] * mult)
            if rng.random() < p:
                lag = rng.choice(len(delay), p=delay) * DAY_S + rng.uniform(0.2, 0.8) * DAY_S
                ev_deal.append(d)
                ev_t.append(ti + lag)
    acts_deal = np.array(acts_deal)
    acts_t = np.array(acts_t)
    acts_type = np.array(acts_type, dtype=np.float64)
    matrix = np.column_stack([acts_type, np.full(len(acts_t), 2.0), np.zeros(len(acts_t))])
    end = days * DAY_S
    ev_deal, ev_t = np.array(ev_deal), np.array(ev_t)
    keep = ev_t < end
    return matrix, acts_deal, np.array(rep), acts_t, ev_deal[keep], ev_t[keep], float(n_deals * days), end


def _fit(history, settings=FAST):
    matrix, deal, rep, t, ev_d, ev_t, exposure, end = history
    fitter = EMFitter(matrix, _spec(), deal, rep, t, ev_d, ev_t, exposure, end, settings)
    attribution, booster = fitter.fit(log_every=False)
    q_of = {k: float(1 / (1 + np.exp(-(fitter.intercept + booster.predict(np.array([[k, 2.0, 0.0]]),
                                                                               raw_score=True)[0]))))
            for k in (0, 1)}
    return fitter, attribution, booster, q_of


def _window_rate(history, ty: int, days: float = 14) -> float:
    """The naive label: share of activities of a type followed by any advance of the deal within ``days``."""
    matrix, deal, _, t, ev_d, ev_t, _, end = history
    hits = []
    for i in np.flatnonzero((matrix[:, 0] == ty) & (t + days * DAY_S < end)):
        m = (ev_d == deal[i]) & (ev_t > t[i]) & (ev_t <= t[i] + days * DAY_S)
        hits.append(bool(m.any()))
    return float(np.mean(hits))


def test_pairs_match_a_brute_force_join():
    rng = np.random.default_rng(0)
    act_deal = rng.integers(0, 5, 200)
    act_t = rng.uniform(0, 50 * DAY_S, 200)
    ev_deal = rng.integers(0, 5, 30)
    ev_t = rng.uniform(0, 50 * DAY_S, 30)
    e, a, lag = _pairs(act_deal, act_t, ev_deal, ev_t, 7 * DAY_S)
    got = sorted(zip(e.tolist(), a.tolist()))
    want = sorted((j, i) for j in range(30) for i in range(200)
                  if act_deal[i] == ev_deal[j] and ev_t[j] - 7 * DAY_S <= act_t[i] < ev_t[j])
    assert got == want
    assert np.allclose(lag, ev_t[e] - act_t[a]) and (lag > 0).all()


def test_pairs_tell_one_second_apart_in_many_deals():
    """50,000 deals, each with one activity and an advance one second later (a flat import)."""
    n = 50_000
    deal = np.arange(n)
    t = 1.7e9 + np.arange(n) * 60.0  # epoch seconds
    e, a, lag = _pairs(deal, t, deal, t + 1.0, 28 * DAY_S)
    assert len(e) == n and (e == a).all() and np.allclose(lag, 1.0)
    e, _, _ = _pairs(deal, t, deal, t.copy(), 28 * DAY_S)  # an advance at the same second: not after it
    assert len(e) == 0


@pytest.mark.slow
def test_credit_goes_to_the_cause_not_to_busy_deals():
    """Type 0 is used mostly on busy deals (3x the activity), type 1 truly works 4x better.

    Window labels credit type 0 with the busy deals' advances; the attribution recovers both
    probabilities and the delay distribution it was drawn from.
    """
    rng = np.random.default_rng(1)
    delay = np.array([0.0, 0.1, 0.2, 0.3, 0.2, 0.1, 0.1])
    history = _history(rng, n_deals=300, q={0: 0.01, 1: 0.04}, delay=delay, busy_type=0)
    assert _window_rate(history, 0) > _window_rate(history, 1)  # the naive label points the wrong way
    fitter, attribution, _, q = _fit(history)
    assert q[1] > 2 * q[0]  # the truth is 4x; the naive window label says type 0 is better
    assert q[1] == pytest.approx(0.04, rel=0.3) and q[0] == pytest.approx(0.01, rel=0.6)
    learned = attribution.delay_pmf[: len(delay)]
    assert np.abs(learned - delay).sum() < 0.35  # total variation of the learned delay histogram
    assert attribution.delay_pmf[len(delay):].sum() < 0.1  # little mass where no advance was ever caused
    assert attribution.background_per_day < 0.002  # every advance was caused by an activity


@pytest.fixture(scope="module")
def selected_history():
    """Good deals use type 1 far more and advance more; type 0 is truly 2x better within every deal."""
    rng = np.random.default_rng(2)
    history = _history(rng, n_deals=400, q={0: 0.03, 1: 0.015}, delay=np.array([0.5, 0.5]),
                       deal_effect=1.2, quality_choice=True, days=120)
    assert _window_rate(history, 1) > _window_rate(history, 0)  # naive: type 1 looks better
    return history


@pytest.mark.slow
def test_heldout_loglik_is_the_point_process_likelihood():
    # one deal, one activity with q 0.5 whose delay is always under a day, one advance half a day
    # later, 10 open days with a background of 0.01 a day: log(0.5 + 0.01) - (0.5 + 0.01 * 10)
    w = np.zeros(FAST.max_lag_days)
    w[0] = 1.0
    fitter = EMFitter(np.array([[0.0, 2.0, 0.0]]), _spec(), np.array([0]), np.array([0]), np.array([0.0]),
                      np.array([0]), np.array([0.5 * DAY_S]), 10.0, 40 * DAY_S, FAST,
                      deal_exposure_days=np.array([10.0]))
    assert fitter.heldout_loglik(np.array([0.5]), w, 0.01) == pytest.approx(np.log(0.51) - 0.6)
    no_exposure = EMFitter(np.array([[0.0, 2.0, 0.0]]), _spec(), np.array([0]), np.array([0]), np.array([0.0]),
                           np.array([0]), np.array([0.5 * DAY_S]), 10.0, 40 * DAY_S, FAST)
    assert no_exposure.heldout_loglik(np.array([0.5]), w, 0.01) is None


def test_heldout_loglik_prefers_the_true_effects_without_knowing_them():
    # what lets a team compare settings on its own data: the held-out deals' advances are more
    # likely under the true q than under a flattened or a swapped one, and the EM's fit is near it
    rng = np.random.default_rng(5)
    delay = np.array([0.0, 0.2, 0.5, 0.3])
    matrix, deal, rep, t, ev_d, ev_t, exposure, end = _history(rng, n_deals=400, q={0: 0.02, 1: 0.12}, delay=delay)
    days = np.full(400, end / DAY_S)
    fitter = EMFitter(matrix, _spec(), deal, rep, t, ev_d, ev_t, exposure, end, FAST, deal_exposure_days=days)
    attribution, _ = fitter.fit(log_every=False)
    w = np.zeros(FAST.max_lag_days)
    w[:len(delay)] = delay
    q_true = np.where(matrix[:, 0] == 1, 0.12, 0.02)
    true = fitter.heldout_loglik(q_true, w, 1e-6)
    flat = fitter.heldout_loglik(np.full(len(t), q_true.mean()), w, 1e-6)
    swapped = fitter.heldout_loglik(np.where(matrix[:, 0] == 1, 0.02, 0.12), w, 1e-6)
    assert true > flat > swapped
    assert attribution.heldout_loglik is not None
    assert attribution.heldout_loglik > flat
    assert abs(attribution.heldout_loglik - true) < 0.05


def test_pooled_offsets_only_partly_undo_selection_on_deal_quality(selected_history):
    """The pooled design's deal offsets move the comparison toward the truth but not past even.

    About 1.5 advances per deal cannot pin a deal's offset down, so the Gaussian prior shrinks
    it and part of the deal quality stays in the type's estimate (docs/effects.md).
    """
    no_offsets = EffectSettings(**{**FAST.__dict__, "offset_steps": 1})
    *_, q_plain = _fit(selected_history, no_offsets)
    fitter, _, _, q = _fit(selected_history)
    assert q[0] / q[1] > 1.1 * (q_plain[0] / q_plain[1]), f"with offsets {q}, without {q_plain}"
    assert fitter.deal_off.variance > 0.1  # the deal heterogeneity was found


@pytest.mark.slow
def test_within_deal_design_undoes_selection_on_deal_quality(selected_history):
    """Comparing activities only within their own deal cancels the deal's quality: type 0 wins."""
    within = EffectSettings(**{**FAST.__dict__, "design": "within_deal"})
    *_, q_pooled = _fit(selected_history)
    _, _, booster, q = _fit(selected_history, within)
    assert q[0] > 1.2 * q[1], f"within-deal {q}, pooled {q_pooled}"
    assert q_pooled[0] < q_pooled[1]  # what the pooled design still gets wrong here


@pytest.mark.slow
def test_effect_model_round_trips_with_intervals_and_overlap(tmp_path):
    rng = np.random.default_rng(3)
    history = _history(rng, n_deals=200, q={0: 0.01, 1: 0.04}, delay=np.array([0.3, 0.4, 0.3]))
    fitter, attribution, booster, _ = _fit(history)
    boots = fitter.bootstrap(booster, booster.current_iteration())
    keys = (1, 0, 2, -1)
    support = support_table(history[0], keys)
    model = EffectModel(booster, boots, _spec().names, attribution.delay_pmf, 14, support, FAST, {"x": 1}, keys,
                        fitter.intercept)
    rows = np.array([[1.0, 2.0, 0.0], [0.0, 2.0, 0.0], [1.0, 4.0, 0.0]])
    est = model.predict(rows)
    assert est.effect[0] > est.effect[1] > 0
    assert (est.low <= est.effect).all() and (est.effect <= est.high).all() and (est.high > est.low).any()
    assert est.overlap.tolist() == [True, True, False]  # stage 4 was never seen
    model.save(tmp_path)
    again = load_effects(tmp_path, _spec())
    assert np.allclose(again.predict(rows).effect, est.effect)
    assert np.allclose(again.predict(rows).high, est.high)
    other = FeatureSpec(list(_spec().features)[:2])
    with pytest.raises(BundleError, match="other features"):
        load_effects(tmp_path, other)
    (tmp_path / "effects" / "q.txt").write_text("not a booster")
    with pytest.raises(BundleError, match="unreadable effect model"):
        load_effects(tmp_path, _spec())


def test_too_little_history_is_refused_with_the_numbers():
    rng = np.random.default_rng(4)
    history = _history(rng, n_deals=3, q={0: 0.01, 1: 0.02}, delay=np.array([1.0]), days=30)
    with pytest.raises(ValueError, match="too little data to estimate effects"):
        _fit(history)


@pytest.mark.slow
def test_within_deal_model_round_trips(tmp_path):
    """The within-deal model is a sum of boosters (and bootstrap shifts): saved and loaded whole."""
    rng = np.random.default_rng(5)
    history = _history(rng, n_deals=200, q={0: 0.01, 1: 0.04}, delay=np.array([0.3, 0.4, 0.3]))
    settings = EffectSettings(**{**FAST.__dict__, "design": "within_deal"})
    fitter, attribution, booster, _ = _fit(history, settings)
    boots = fitter.bootstrap(booster, booster.current_iteration())
    keys = (1, 0, 2, -1)
    model = EffectModel(booster, boots, _spec().names, attribution.delay_pmf, 14, support_table(history[0], keys),
                        settings, {}, keys, fitter.intercept)
    rows = np.array([[1.0, 2.0, 0.0], [0.0, 2.0, 0.0]])
    est = model.predict(rows)
    assert est.effect[0] > est.effect[1] and (est.high > est.low).any()
    model.save(tmp_path)
    again = load_effects(tmp_path, _spec())
    assert np.allclose(again.predict(rows).effect, est.effect)
    assert np.allclose(again.predict(rows).low, est.low) and np.allclose(again.predict(rows).high, est.high)
    assert again.settings.design == "within_deal"


def test_known_labels_fit_q_without_attribution():
    """``fit_known`` (the benchmarks' perfect credit assignment) fits q on the given causes and learns the delay."""
    rng = np.random.default_rng(5)
    n, days = 20_000, 150
    deal = rng.integers(0, 400, n)
    t = rng.uniform(0, days * DAY_S, n)
    types = rng.integers(0, 2, n).astype(np.float64)
    caused = rng.random(n) < np.where(types == 1, 0.08, 0.02)
    ev_t, ev_d = t[caused] + 1.5 * DAY_S, deal[caused]  # every advance recorded a day and a half later
    keep = ev_t < days * DAY_S
    matrix = np.column_stack([types, np.full(n, 2.0), np.zeros(n)])
    fitter = EMFitter(matrix, _spec(), deal, deal % 7, t, ev_d[keep], ev_t[keep], 400.0 * days, days * DAY_S, FAST)
    attribution, booster = fitter.fit_known(caused.astype(np.float64))
    q = {k: float(1 / (1 + np.exp(-(fitter.intercept + booster.predict(np.array([[k, 2.0, 0.0]]), raw_score=True)[0]))))
         for k in (0, 1)}
    assert q[1] == pytest.approx(0.08, rel=0.25) and q[0] == pytest.approx(0.02, rel=0.4)
    assert attribution.iterations == 0 and attribution.delay_pmf[1] > 0.8  # lag 1.5 days: the second day's bin
    with pytest.raises(ValueError, match="expected 20000 finite values"):
        fitter.fit_known(np.ones(3))


class _FreshDatasets(EMFitter):
    """The fitter with every dataset binned anew (what ``_dataset`` did before it reused them)."""

    def _dataset(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        self._datasets.clear()
        return super()._dataset(*args, **kwargs)


def test_reused_datasets_fit_the_same_model_as_fresh_ones():
    rng = np.random.default_rng(5)
    matrix, deal, rep, t, ev_d, ev_t, exposure, end = _history(rng, n_deals=150, q={0: 0.01, 1: 0.04},
                                                               delay=np.array([0.3, 0.4, 0.3]), days=120)
    fits = []
    for cls in (EMFitter, _FreshDatasets):
        fitter = cls(matrix, _spec(), deal, rep, t, ev_d, ev_t, exposure, end, FAST)
        attribution, booster = fitter.fit(log_every=False)
        fits.append((attribution, booster.predict(matrix, raw_score=True), fitter))
    (a_reused, raw_reused, reused), (a_fresh, raw_fresh, _) = fits
    assert len(reused._datasets) >= 1  # the EM's row set was binned once and kept
    np.testing.assert_array_equal(raw_reused, raw_fresh)
    np.testing.assert_array_equal(a_reused.soft_labels, a_fresh.soft_labels)
    assert a_reused.iterations == a_fresh.iterations


def test_threads_follow_the_caller_above_the_small_history_size():
    small = EMFitter(np.zeros((10, 3)), _spec(), np.zeros(10, np.int64), np.zeros(10, np.int64),
                     np.arange(10.0), np.zeros(0, np.int64), np.zeros(0), 10.0, 10.0, FAST, threads=2)
    assert small._params(0)["num_threads"] == 1  # a tiny history: one thread, whatever was asked
    n = 60_000
    big = EMFitter(np.zeros((n, 3)), _spec(), np.zeros(n, np.int64), np.zeros(n, np.int64), np.arange(float(n)),
                   np.zeros(0, np.int64), np.zeros(0), 10.0, float(n), FAST, threads=2)
    assert big._params(0)["num_threads"] == 2
    pinned = EMFitter(np.zeros((n, 3)), _spec(), np.zeros(n, np.int64), np.zeros(n, np.int64), np.arange(float(n)),
                      np.zeros(0, np.int64), np.zeros(0), 10.0, float(n), EffectSettings(num_threads=1), threads=2)
    assert pinned._params(0)["num_threads"] == 1  # an explicit setting wins
    with pytest.raises(ValueError, match="num_threads"):
        EffectSettings(num_threads=-1)
