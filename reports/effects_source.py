"""Where the report's effect estimates come from: the bundle's effects model, when it has one.

The effects model (``models/effects.py``, stored in the bundle directory under ``effects/``)
estimates, per activity, the change in the probability that the deal advances within the
outcome horizon if the activity is done, against waiting (type ``none``), with a 90%
interval and an ``overlap`` flag (``False`` when similar states never saw such an
activity, so the estimate is an extrapolation). It reads the bundle's encoded *plan*
matrix, the same matrix ``models/ranking.py`` reads (execution-time columns blanked).

When the bundle has no effects model (or the installed code has no ``models.effects``),
:func:`load_effect_source` returns ``None`` and a sentence saying why: the report then
shows every other figure and says which figures wait for effect estimates. Nothing here
invents an effect.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features import contract as c

logger = logging.getLogger(__name__)

WAIT_TYPE = "none"


class EffectSourceError(ValueError):
    """The bundle's effects model exists but cannot be used with this bundle or data."""


@dataclass
class Effects:
    """Effect estimates, one per row of the matrix they were asked for.

    Attributes:
        effect: estimated change in P(deal advances within the horizon) if done, vs waiting.
        low: lower end of the 90% interval.
        high: upper end of the 90% interval.
        overlap: ``False`` where the estimate is an extrapolation (no similar states saw it).
    """

    effect: np.ndarray
    low: np.ndarray
    high: np.ndarray
    overlap: np.ndarray

    def __len__(self) -> int:
        return len(self.effect)

    def take(self, rows: np.ndarray) -> Effects:
        return Effects(self.effect[rows], self.low[rows], self.high[rows], self.overlap[rows])


@dataclass
class EffectSource:
    """Asks one bundle's effects model for effects of feature rows or encoded plan rows."""

    bundle: Any  # models.bundle.ModelBundle
    model: Any  # models.effects.EffectModel
    description: str

    def plan_matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """The bundle's encoded plan matrix of a feature frame (execution-time columns blanked)."""
        matrix = self.bundle.encode(frame)
        return blank_execution(matrix, self.bundle.spec)

    def waiting(self, matrix: np.ndarray) -> np.ndarray | None:
        """Encoded rows of waiting (type ``none``) in the states of ``matrix`` (see :func:`waiting_rows`)."""
        return waiting_rows(matrix, self.bundle.spec)

    def predict(self, matrix: np.ndarray, offset: np.ndarray | None = None,
                offset_sd: np.ndarray | None = None, point_only: bool = False) -> Effects:
        """Effects of encoded plan rows (see :meth:`plan_matrix`).

        The baseline is waiting in the same state (type ``none``), when the model knows it.

        Raises:
            EffectSourceError: the effects model refuses the matrix or answers with other lengths.
        """
        n = len(matrix)
        if n == 0:
            empty = np.zeros(0)
            return Effects(empty, empty, empty, np.zeros(0, dtype=bool))
        if offset is not None:
            return self._predict_with_offset(matrix, np.asarray(offset, dtype=np.float64),
                                             np.zeros(n) if offset_sd is None else np.asarray(offset_sd, np.float64),
                                             point_only)
        try:
            est = self.model.predict(matrix, self.waiting(matrix))
        except (ValueError, KeyError, IndexError) as err:
            raise EffectSourceError(f"the effects model cannot read this data: {err}") from None
        arrays = [np.asarray(getattr(est, name), dtype=np.float64) for name in ("effect", "low", "high")]
        overlap = np.asarray(getattr(est, "overlap"), dtype=bool)
        if any(len(a) != n for a in (*arrays, overlap)):
            raise EffectSourceError(f"the effects model answered for {len(arrays[0])} rows, asked for {n}")
        effect, low, high = arrays
        return Effects(effect, np.minimum(low, effect), np.maximum(high, effect), overlap)


    def _predict_with_offset(self, matrix: np.ndarray, offset: np.ndarray, sd: np.ndarray,
                             point_only: bool = False) -> Effects:
        """Effects for a given rep: the model's logit shifted by the rep's offset (``rep_offsets``).

        The effects model predicts for a typical rep and deal (offset 0). The interval spans the
        bootstrap refits at the offset's 90% interval ends (``offset -/+ 1.645 sd``); with
        ``point_only`` the interval is not computed (low = high = effect).
        """
        m = self.model
        n = len(matrix)
        wait = self.waiting(matrix)
        both = matrix if wait is None else np.vstack([matrix, wait])
        share = float(m.horizon_share)
        intercept = float(getattr(m, "intercept", 0.0))

        def effect_of(raw: np.ndarray, r: np.ndarray) -> np.ndarray:
            z = raw + intercept
            q_none = _sigmoid(z[n:] + r) if wait is not None else 0.0
            return share * (_sigmoid(z[:n] + r) - q_none)

        try:
            raw = m.booster.predict(both, raw_score=True)
            boots = [] if point_only else [b.predict(both, raw_score=True) for b in (m.bootstraps or [])]
        except (ValueError, KeyError, IndexError) as err:
            raise EffectSourceError(f"the effects model cannot read this data: {err}") from None
        effect = effect_of(raw, offset)
        lo_r, hi_r = offset - 1.645 * sd, offset + 1.645 * sd
        if boots:
            at_lo = np.stack([effect_of(b, lo_r) for b in boots])
            at_hi = np.stack([effect_of(b, hi_r) for b in boots])
            low = np.minimum.reduce([np.quantile(at_lo, 0.05, axis=0), np.quantile(at_hi, 0.05, axis=0), effect])
            high = np.maximum.reduce([np.quantile(at_lo, 0.95, axis=0), np.quantile(at_hi, 0.95, axis=0), effect])
        elif point_only:  # for choosing between candidates: the interval is asked for the chosen one only
            low, high = effect.copy(), effect.copy()
        else:
            a, b = effect_of(raw, lo_r), effect_of(raw, hi_r)
            low, high = np.minimum.reduce([a, b, effect]), np.maximum.reduce([a, b, effect])
        return Effects(effect, low, high, np.asarray(m.overlap(matrix), dtype=bool))

    def rep_offsets(self, dataset, frame: pd.DataFrame, since: pd.Timestamp, until: pd.Timestamp,  # noqa: ANN001
                    iterations: int = 12, history_days: int = 365) -> pd.DataFrame:
        """Each rep's logit offset in the window: how much more (or less) their activities trigger advances.

        The effects model is fitted with an offset per deal and per rep and predicts for a
        typical one, which is what ranking candidates needs; comparing reps needs the rep's own
        offset back. With the model's trees, intercept, delay distribution and background rate
        held fixed, the attribution EM's E-step and the offsets' Newton steps (Gaussian prior,
        ``models.effects``) are run on the activities of the ``history_days`` before ``until``
        (at least from ``since`` minus the longest delay) and the advances recorded before
        ``until``: a quarter holds too few advances per rep, and the prior would shrink every
        rep to the typical one. Deal offsets are fitted alongside (so a rep with promising
        deals is not credited with them) and then left out.

        Returns:
            one row per rep: ``rep_id, offset, offset_sd, activities_fitted``.
        """
        from models.effects import EMFitter
        from training.effects import effect_inputs

        m = self.model
        spec = self.bundle.spec
        lag = int(getattr(m.settings, "max_lag_days", len(m.delay_pmf)))
        t = frame[c.OCCURRED_AT]
        start = min(since - pd.Timedelta(days=lag), until - pd.Timedelta(days=history_days))
        rows = frame[((t >= start) & (t < until)).to_numpy(dtype=bool)]
        x = effect_inputs(dataset, rows, spec, until)
        empty = pd.DataFrame({c.REP_ID: pd.Series([], dtype="string"), "offset": [], "offset_sd": [],
                              "activities_fitted": []})
        if x.n_activities == 0 or x.n_events == 0:
            return empty
        keep = rows[c.DEAL_ID].astype("string").notna().to_numpy() & (rows[c.OCCURRED_AT] < until).to_numpy(bool)
        if "logged_after_outcome" in rows.columns:
            keep &= ~rows["logged_after_outcome"].to_numpy(dtype=bool, na_value=False)
        reps = rows.loc[keep, c.REP_ID].astype("string").fillna("\x00")
        codes, names = pd.factorize(reps)
        if len(codes) != x.n_activities:
            raise EffectSourceError("rep offsets: the activities do not line up with the effects model's inputs")
        fitter = EMFitter(x.matrix, spec, x.act_deal, x.act_rep, x.act_t, x.ev_deal, x.ev_t, x.exposure_days,
                          x.end_t, m.settings)
        base = float(getattr(m, "intercept", 0.0)) + m.booster.predict(x.matrix, raw_score=True)
        w = np.asarray(m.delay_pmf, dtype=np.float64)
        w = np.pad(w, (0, max(0, fitter.L - len(w))))[: fitter.L]
        beta = float((m.metrics or {}).get("background_per_deal_day", 0.0)) or 1e-3
        mask = fitter.fit_mask.astype(np.float64)
        for _ in range(iterations):
            q = _sigmoid(base + fitter.deal_off() + fitter.rep_off())
            soft, _per_lag, background = fitter.e_step(q, w, beta)
            beta = max(background / fitter.exposure_days, 1e-9)
            fitter.deal_off.step(soft, q, mask)
            q = _sigmoid(base + fitter.deal_off() + fitter.rep_off())
            fitter.rep_off.step(soft, q, mask)
        q = _sigmoid(base + fitter.deal_off() + fitter.rep_off())
        h = np.bincount(fitter.rep_off.codes, weights=mask * q * (1 - q), minlength=fitter.rep_off.n)
        sd = 1.0 / np.sqrt(h + 1.0 / fitter.rep_off.variance)
        n_fit = np.bincount(fitter.rep_off.codes, weights=mask, minlength=fitter.rep_off.n)
        out = pd.DataFrame({c.REP_ID: pd.array(list(names), dtype="string"),
                            "offset": fitter.rep_off.values[: len(names)], "offset_sd": sd[: len(names)],
                            "activities_fitted": n_fit[: len(names)].astype(np.int64)})
        logger.info("rep offsets: %d reps, sd %.3f, %d activities with a complete window", len(out),
                    float(np.sqrt(fitter.rep_off.variance)), int(mask.sum()))
        return out[out[c.REP_ID] != "\x00"].reset_index(drop=True)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -35, 35)))


def waiting_rows(matrix: np.ndarray, spec) -> np.ndarray | None:  # noqa: ANN001
    """The same states with the activity replaced by a deliberate wait (type ``none``), as ``/rank`` builds it.

    None when the model never saw a ``none`` activity: waiting then triggers no advance of its own.
    """
    names = list(spec.names)
    if c.TYPE not in names or WAIT_TYPE not in (spec[c.TYPE].levels or ()):
        return None
    wait = np.array(matrix, dtype=np.float64, copy=True)
    wait[:, names.index(c.TYPE)] = float(list(spec[c.TYPE].levels).index(WAIT_TYPE))
    for name, value in ((c.IS_AUTOMATED, 0.0), (c.PERSONALIZATION, np.nan), (c.DIRECTION, np.nan),
                        (c.SEQUENCE_STEP, np.nan)):
        if name in names:
            wait[:, names.index(name)] = value
    return wait


def blank_execution(matrix: np.ndarray, spec) -> np.ndarray:  # noqa: ANN001
    """``matrix`` with the execution-time columns set to NaN, as the plan models read it."""
    if spec.execution_indices:
        matrix = np.array(matrix, dtype=np.float64, copy=True)
        matrix[:, spec.execution_indices] = np.nan
    return matrix


def load_effect_source(bundle, bundle_dir: Path | None) -> tuple[EffectSource | None, str]:  # noqa: ANN001
    """The bundle's effects model, or ``None`` with the reason there is none.

    Args:
        bundle: the loaded ``ModelBundle``.
        bundle_dir: its directory (the effects model lives in ``<bundle_dir>/effects/``).

    Returns:
        ``(source, description)``: ``source`` is None when the bundle carries no effects
        model; ``description`` says which model answers, or why none does.

    Raises:
        EffectSourceError: the bundle has an effects model that cannot be loaded.
    """
    try:
        from models import effects as effects_mod
    except ImportError:
        return None, ("this installation has no effects model yet (models/effects.py, the next-best-activity "
                      "issue): figures that need effect estimates are left out")
    if bundle_dir is None:
        return None, "no bundle directory to read an effects model from"
    try:
        model = effects_mod.load_effects(Path(bundle_dir), bundle.spec)
    except (OSError, ValueError) as err:  # models.bundle.BundleError is a ValueError
        raise EffectSourceError(f"{bundle_dir}: the effects model cannot be loaded ({err})") from None
    if model is None:
        return None, (f"the model bundle has no effects model ({Path(bundle_dir).name}/effects/ is absent; it was "
                      f"trained before effect estimation existed): figures that need effect estimates are left out")
    logger.info("effects model loaded from %s", bundle_dir)
    n_boot = len(getattr(model, "bootstraps", []) or [])
    horizon = getattr(model, "horizon_days", None)
    note = ("the bundle's effects model (effects/): the change in P(the deal advances within "
            f"{horizon if horizon is not None else 'the'} days) if an activity is done rather than waiting; "
            f"90% intervals from {n_boot} bootstrap refits")
    return EffectSource(bundle, model, note), note
