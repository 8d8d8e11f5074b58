"""Point-in-time primitives on numpy arrays, shared by training (millions of rows) and serving (one).

Every primitive answers, for query rows ``(code, t)``, a question about the *facts* of the
same entity ``code`` (a contact, a deal, a rep) that were **known strictly before t**.
A fact has a position time ``pos`` (when it happened) and an availability time ``avail``
(when it was known: ``max(occurred_at, logged_at)``; ``avail >= pos``). Times are int64
milliseconds. Entity codes are non-negative ints; a negative code means "no entity" and
yields the empty answer.

Sorted combined keys ``code * span + time`` turn per-entity questions into one
``np.searchsorted`` over all entities at once: O((n + q) log n), no Python loop.
"""

from __future__ import annotations

import numpy as np

MS_PER_DAY = 86_400_000
# Combined keys must fit in int64: code * span + time.
_MAX_KEY = np.iinfo(np.int64).max // 2
# Queries up to this many rows (requests) keep their searches per index (see FactIndex._searched).
_SMALL_QUERY = 4096


class _Keyer:
    """Maps (code, time) to one sortable int64 key for a given set of times."""

    def __init__(self, t_min: int, t_max: int, n_codes: int, margin: int) -> None:
        self.offset = int(t_min) - margin - 1
        self.span = int(t_max) - self.offset + margin + 2
        if self.span * (n_codes + 1) >= _MAX_KEY:
            raise OverflowError("time span x entity count too large for int64 keys")

    def key(self, code: np.ndarray, t: np.ndarray) -> np.ndarray:
        return code.astype(np.int64, copy=False) * self.span + (t.astype(np.int64, copy=False) - self.offset)

    def clip_key(self, code: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Key with t clipped into the keyer's range (for window starts far in the past)."""
        lo = self.offset + 1
        hi = self.offset + self.span - 1
        return self.key(code, np.minimum(np.maximum(t, lo), hi))


class Query:
    """Query rows ``(code, t)``; remembers the order that sorts them by (code, t).

    Binary searches over millions of needles are ~10x faster when the needles come in
    sorted order (cache locality), and every window start ``t - w`` keeps that order, so
    one argsort serves all searches of a query set.
    """

    def __init__(self, code: np.ndarray, t: np.ndarray) -> None:
        self.code = code.astype(np.int64)
        self.t = t.astype(np.int64)
        self.valid = self.code >= 0
        self.qc = np.where(self.valid, self.code, 0)
        self._order: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.code)

    @property
    def order(self) -> np.ndarray:
        if self._order is None:
            self._order = np.lexsort((self.t, self.qc))
        return self._order

    def search(self, sorted_keys: np.ndarray, needles: np.ndarray, side: str) -> np.ndarray:
        """``np.searchsorted(sorted_keys, needles, side)`` for needles in this query's order."""
        if len(needles) < 2048:
            return np.searchsorted(sorted_keys, needles, side)
        o = self.order
        out = np.empty(len(needles), dtype=np.int64)
        out[o] = np.searchsorted(sorted_keys, needles[o], side)
        return out


class FactIndex:
    """Facts of one kind (touches, outputs, stage entries ...) indexed for point-in-time queries."""

    def __init__(
        self,
        code: np.ndarray,
        pos: np.ndarray,
        avail: np.ndarray | None = None,
        weights: dict[str, np.ndarray] | None = None,
        *,
        keyer: _Keyer,
    ) -> None:
        keep = code >= 0
        self.keyer = keyer
        self.code = code[keep].astype(np.int64)
        self.pos = pos[keep].astype(np.int64)
        self.avail = self.pos if avail is None else np.maximum(avail[keep].astype(np.int64), self.pos)
        self.weights = {k: np.asarray(v, dtype=np.float64)[keep] for k, v in (weights or {}).items()}
        self.n = len(self.code)
        # Order by (code, avail): "known before t" prefix sums and running maxima.
        self._ka = keyer.key(self.code, self.avail)
        order_a = np.argsort(self._ka, kind="stable")
        self._ka = self._ka[order_a]
        self._order_a = order_a
        self._code_a = self.code[order_a]
        self._cum_a = {k: _cumsum0(w[order_a]) for k, w in self.weights.items()}
        self.lag = self.avail - self.pos
        self._max_lag = int(self.lag.max()) if self.n else 0
        # Order by (code, pos): "happened before t - window". Every fact known when it happened
        # (no lag): the same keys, so the same (stable) order as by avail.
        if self._max_lag == 0:
            self._kp, self._order_p, self._cum_p = self._ka, self._order_a, self._cum_a
        else:
            self._kp = keyer.key(self.code, self.pos)
            order_p = np.argsort(self._kp, kind="stable")
            self._kp = self._kp[order_p]
            self._order_p = order_p
            self._cum_p = {k: _cumsum0(w[order_p]) for k, w in self.weights.items()}
        self._late_cache: dict[int, tuple[np.ndarray, ...]] = {}
        self._query_cache: tuple[Query, dict[str, np.ndarray]] | None = None

    # -- searches that depend only on the query ----------------------------------------
    def _searched(self, q: Query, what: str) -> np.ndarray:
        """Per query row: ``start_a`` / ``start_p`` (first fact of its entity in avail / pos order) or
        ``end_a`` (first fact known at or after t). The same for every window and weight, so for a
        small query (a request) they are kept for the last query asked; a large one is searched
        again rather than held in memory."""
        small = len(q) <= _SMALL_QUERY
        if small and self._query_cache is not None and self._query_cache[0] is q:
            cached = self._query_cache[1].get(what)
            if cached is not None:
                return cached
        if what == "end_a":
            out = q.search(self._ka, self.keyer.clip_key(q.qc, q.t), "left")
        else:
            keys = self._ka if what == "start_a" else self._kp
            out = q.search(keys, self.keyer.key(q.qc, np.full(len(q), self.keyer.offset + 1, dtype=np.int64)), "left")
        if small:
            if self._query_cache is None or self._query_cache[0] is not q:
                self._query_cache = (q, {})
            self._query_cache[1][what] = out
        return out

    # -- counts and sums ---------------------------------------------------------------
    def window_sum(self, q: Query, window_ms: int | None, weight: str | None = None) -> np.ndarray:
        """Sum of ``weight`` (or count) over facts with ``avail < t`` and ``pos >= t - window``."""
        return self._sums(q, [window_ms], weight)[0]

    def window_sums(self, q: Query, windows_ms: list[int | None], weight: str | None = None) -> list[np.ndarray]:
        """:meth:`window_sum` for several windows, the same numbers. A small query (a request) is
        answered for all windows with one search; a large one window by window (memory)."""
        if len(q) * len(windows_ms) > _SMALL_QUERY:
            return [self._sums(q, [w], weight)[0] for w in windows_ms]
        return self._sums(q, windows_ms, weight)

    def _sums(self, q: Query, windows_ms: list[int | None], weight: str | None) -> list[np.ndarray]:
        """One array per window (None: no window); the windows' searches are done together."""
        if self.n == 0 or not q.valid.any():
            return [np.zeros(len(q), dtype=np.float64) for _ in windows_ms]
        start = self._searched(q, "start_a")
        end = self._searched(q, "end_a")
        total = self._prefix(self._cum_a, weight, end) - self._prefix(self._cum_a, weight, start)
        timed = [w for w in windows_ms if w is not None]
        if timed:
            t0 = q.t[None, :] - np.asarray(timed, dtype=np.int64)[:, None]  # one row per window
            pstart = self._searched(q, "start_p")
            needles = self.keyer.clip_key(q.qc[None, :], t0)
            if len(timed) == 1:  # any size: the query's own order makes a large search fast
                pend = q.search(self._kp, needles[0], "left")[None, :]
            else:
                pend = np.searchsorted(self._kp, needles, "left")
            old = self._prefix(self._cum_p, weight, pend) - self._prefix(self._cum_p, weight, pstart)[None, :]
        out, row = [], 0
        for window_ms in windows_ms:
            sums = total
            if window_ms is not None:
                # Facts that happened before t - window but became known only at or after t are in
                # `old` but not in `total`: take them back out (they need lag > window).
                late = self._late_correction(q.qc, q.t, t0[row], window_ms, weight)
                sums = total - (old[row] if late is None else old[row] - late)
                row += 1
            res = np.zeros(len(q), dtype=np.float64)
            res[q.valid] = sums[q.valid]
            out.append(res)
        return out

    def _prefix(self, cums: dict[str, np.ndarray], weight: str | None, idx: np.ndarray) -> np.ndarray:
        if weight is None:
            return idx.astype(np.float64)
        return cums[weight][idx]

    def _late_correction(self, qc, q_t, t0, window_ms: int, weight: str | None) -> np.ndarray | None:
        """Per query: weight of facts with pos < t0 and avail >= t (only facts with lag > window);
        None when no fact has such a lag."""
        if self._max_lag <= window_ms:
            return None
        late = self._late_cache.get(window_ms)
        if late is None:
            idx = np.flatnonzero(self.lag > window_ms)
            order = np.argsort(self.code[idx], kind="stable")
            idx = idx[order]
            late = (idx, self.code[idx])
            self._late_cache[window_ms] = late
        idx, codes = late
        corr = np.zeros(len(qc), dtype=np.float64)
        if len(idx) == 0:
            return corr
        lo = np.searchsorted(codes, qc, "left")
        hi = np.searchsorted(codes, qc, "right")
        counts = hi - lo
        n_pairs = int(counts.sum())
        if n_pairs == 0:
            return corr
        q_rep = np.repeat(np.arange(len(qc)), counts)
        # position of each pair inside its query's [lo, hi) range
        starts = np.repeat(lo - np.cumsum(np.concatenate([[0], counts[:-1]])), counts)
        f = idx[starts + np.arange(n_pairs)]
        hit = (self.pos[f] < t0[q_rep]) & (self.avail[f] >= q_t[q_rep])
        w = np.ones(n_pairs) if weight is None else self.weights[weight][f]
        np.add.at(corr, q_rep[hit], w[hit])
        return corr

    # -- last and running values -------------------------------------------------------
    def _last_known(self, q: Query) -> tuple[np.ndarray, np.ndarray]:
        """Index (in avail order) of the last fact known before t, and whether it exists."""
        end = self._searched(q, "end_a")
        i = np.maximum(end - 1, 0)
        ok = (end > 0) & q.valid & (self._code_a[i] == q.qc)
        return i, ok

    def last_pos(self, q: Query) -> np.ndarray:
        """Latest ``pos`` among facts known before t (int64 ms), or -1 where there is none."""
        out = np.full(len(q), -1, dtype=np.int64)
        if self.n == 0:
            return out
        running = self._running_max_pos()
        i, ok = self._last_known(q)
        out[ok] = running[i][ok] - q.qc[ok] * self.keyer.span + self.keyer.offset
        return out

    def _running_max_pos(self) -> np.ndarray:
        cached = getattr(self, "_rmax", None)
        if cached is None:
            comb = self.keyer.key(self._code_a, self.pos[self._order_a])
            cached = np.maximum.accumulate(comb) if len(comb) else comb
            self._rmax = cached
        return cached

    def running_max(self, q: Query, weight: str, levels: int) -> np.ndarray:
        """Max of an integer weight in ``[0, levels)`` over facts known before t; NaN where none."""
        out = np.full(len(q), np.nan)
        if self.n == 0:
            return out
        w = self.weights[weight][self._order_a].astype(np.int64)
        comb = np.maximum.accumulate(self._code_a * levels + w)
        i, ok = self._last_known(q)
        out[ok] = (comb[i] - q.qc * levels)[ok]
        return out

    def last_value(self, q: Query, weight: str) -> tuple[np.ndarray, np.ndarray]:
        """Weight and pos of the fact with the latest ``pos`` among those known before t.

        Meant for facts whose ``avail == pos`` (stage entries): then "latest known" is a
        prefix of the avail order. Returns (value or NaN, pos or -1).
        """
        vals = np.full(len(q), np.nan)
        pos = np.full(len(q), -1, dtype=np.int64)
        if self.n == 0:
            return vals, pos
        i, ok = self._last_known(q)
        fi = self._order_a[i]
        vals[ok] = self.weights[weight][fi][ok]
        pos[ok] = self.pos[fi][ok]
        return vals, pos

    def any_in_range(self, q: Query, lo_excl: np.ndarray, hi_incl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per query: whether a fact has ``lo < pos <= hi``, and the earliest such pos (-1 if none)."""
        first = np.full(len(q), -1, dtype=np.int64)
        if self.n == 0:
            return np.zeros(len(q), dtype=bool), first
        a = q.search(self._kp, self.keyer.clip_key(q.qc, lo_excl), "right")
        b = q.search(self._kp, self.keyer.clip_key(q.qc, hi_incl), "right")
        hit = (b > a) & q.valid
        if hit.any():
            first[hit] = self.pos[self._order_p[a[hit]]]
        return hit, first


def make_keyer(times: list[np.ndarray], n_codes: int, margin_ms: int) -> _Keyer:
    non_empty = [t for t in times if len(t)]
    if not non_empty:
        return _Keyer(0, 1, max(n_codes, 1), margin_ms)
    t_min = min(int(t.min()) for t in non_empty)
    t_max = max(int(t.max()) for t in non_empty)
    return _Keyer(t_min, t_max, max(n_codes, 1), margin_ms)


def _cumsum0(w: np.ndarray) -> np.ndarray:
    out = np.empty(len(w) + 1, dtype=np.float64)
    out[0] = 0.0
    np.cumsum(w, out=out[1:])
    return out


def days_between(later_ms: np.ndarray, earlier_ms: np.ndarray) -> np.ndarray:
    """(later - earlier) in days; NaN where ``earlier`` is missing (-1)."""
    out = (later_ms - earlier_ms) / MS_PER_DAY
    return np.where(earlier_ms < 0, np.nan, out)
