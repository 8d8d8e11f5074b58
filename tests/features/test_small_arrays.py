"""The serving path's shortcuts for small arrays give exactly what the general (pandas) code gives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import build
from features.transforms import FactIndex, Query, make_keyer


@pytest.mark.parametrize("seed", range(20))
def test_small_id_factorization_equals_pandas(seed):
    rng = np.random.default_rng(seed)
    pool = [None, "", "a", "b", "0|d-1", "0|d-2", "1|d-1", "é"]
    arrays = [np.array([pool[k] for k in rng.integers(len(pool), size=int(rng.integers(0, 12)))], dtype=object)
              for _ in range(int(rng.integers(1, 5)))]
    codes, n = build._codes(*arrays)
    joined = np.concatenate(arrays)
    want, uniques = pd.factorize(joined, use_na_sentinel=True)
    assert n == len(uniques)
    assert [len(x) for x in codes] == [len(a) for a in arrays]
    got = np.concatenate(codes) if codes else np.array([], dtype=np.int64)
    assert got.dtype == np.int64
    assert np.array_equal(got, want.astype(np.int64))


def test_small_factorization_leaves_other_values_to_pandas():
    values = np.array(["a", np.nan, None, "a"], dtype=object)  # NaN is missing for pandas, not an id
    assert build._factorize_small(values) is None
    (codes,), n = build._codes(values)
    assert codes.tolist() == [0, -1, -1, 0] and n == 1


@pytest.mark.parametrize("values", [
    [], [None], [None, None], [None, 1], [1.5, None], [3, 2.25], [float("nan"), 2], [float("inf"), -float("inf")],
    [2**60, 1], [-(2**53) - 1], ["3", None], ["x", 1], [True, 1], [" 4.5 ", None], ["1e3"],
])
def test_numeric_custom_values_equal_pandas_to_numeric(values):
    raw = np.array(values, dtype=object)
    want = pd.to_numeric(pd.Series(raw, dtype=object), errors="coerce").to_numpy(np.float64)
    got = build._to_float(raw)
    assert got.dtype == np.float64
    assert np.array_equal(got, want, equal_nan=True)


def _facts(rng: np.random.Generator, n: int, codes: int, span: int, max_lag: int, late_share: float):
    """Random facts: code (-1 = none), position, availability (a share logged late), a weight."""
    code = rng.integers(-1, codes, size=n)
    pos = rng.integers(0, span, size=n)
    avail = pos + rng.integers(0, max_lag, size=n) * (rng.random(n) < late_share)
    return code, pos, avail, rng.random(n)


def test_fact_index_answers_the_same_query_repeatedly_and_a_new_one_afresh():
    rng = np.random.default_rng(3)
    code, pos, avail, w = _facts(rng, 60, 4, 100_000, 30_000, 0.3)
    keyer = make_keyer([pos, avail], 5, 50_000)

    def fresh(q_code, q_t, window, weight):
        idx = FactIndex(code, pos, avail, {"w": w}, keyer=keyer)
        return idx.window_sum(Query(q_code, q_t), window, weight)

    idx = FactIndex(code, pos, avail, {"w": w}, keyer=keyer)
    for k in range(3):
        q_code, q_t = rng.integers(-1, 4, size=7), rng.integers(0, 130_000, size=7)
        q = Query(q_code, q_t)
        for window in (None, 1_000, 20_000, 1_000, None):
            for weight in (None, "w"):
                assert np.array_equal(idx.window_sum(q, window, weight), fresh(q_code, q_t, window, weight))
        last = FactIndex(code, pos, avail, {"w": w}, keyer=keyer).last_pos(Query(q_code, q_t))
        assert np.array_equal(idx.last_pos(q), last)


@pytest.mark.parametrize("lagged", [False, True])
def test_window_sums_equal_a_naive_count_with_and_without_late_facts(lagged):
    rng = np.random.default_rng(11)
    n = 80
    code = rng.integers(-1, 3, size=n)
    pos = rng.integers(0, 100_000, size=n)
    avail = pos + (rng.integers(0, 40_000, size=n) * (rng.random(n) < 0.4) if lagged else 0)
    w = rng.random(n)
    keyer = make_keyer([pos, avail], 4, 50_000)
    idx = FactIndex(code, pos, avail if lagged else None, {"w": w}, keyer=keyer)
    q_code, q_t = rng.integers(-1, 3, size=25), rng.integers(0, 150_000, size=25)
    q = Query(q_code, q_t)
    for window in (None, 5_000, 30_000):
        got = idx.window_sum(q, window, "w")
        for i in range(len(q_code)):
            hit = (code == q_code[i]) & (avail < q_t[i]) & (q_code[i] >= 0)
            if window is not None:
                hit &= pos >= q_t[i] - window
            assert got[i] == pytest.approx(w[hit].sum(), abs=1e-12)


@pytest.mark.parametrize("n_queries", [1, 9, 2000])  # 2000 x 3 windows: answered window by window
def test_several_windows_at_once_equal_one_window_at_a_time(n_queries):
    rng = np.random.default_rng(n_queries)
    code, pos, avail, w = _facts(rng, 300, 6, 1_000_000, 400_000, 0.3)
    keyer = make_keyer([pos, avail], 7, 500_000)
    idx = FactIndex(code, pos, avail, {"w": w}, keyer=keyer)
    q = Query(rng.integers(-1, 6, size=n_queries), rng.integers(0, 1_500_000, size=n_queries))
    windows = [10_000, 100_000, 300_000]
    for weight in (None, "w"):
        together = idx.window_sums(q, windows, weight)
        for window, got in zip(windows, together, strict=True):
            alone = FactIndex(code, pos, avail, {"w": w}, keyer=keyer).window_sum(q, window, weight)
            assert got.dtype == alone.dtype and np.array_equal(got, alone)


def test_response_name_lookup_equals_numpy_isin():
    from features import contract as c

    values = np.array(["replied", None, "negative_reply", "", "connected", "bounced", float("nan"), "unsubscribed"],
                      dtype=object)
    for names in (c.MEANINGFUL_RESPONSES, c.NEGATIVE_RESPONSES):
        assert np.array_equal(build._is_in(values, names), np.isin(values, list(names)))
    assert build._is_in(np.array([], dtype=object), c.MEANINGFUL_RESPONSES).dtype == bool
