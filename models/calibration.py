"""Probability calibrators that map a booster's raw score (log-odds) to a probability.

Two calibrators, both monotone non-decreasing in the raw score and stored as plain
numbers (no pickles), so a bundle can be read by anything that reads JSON:

- :class:`IsotonicCalibrator`: centred isotonic regression. The pool-adjacent-violators
  fit is piecewise constant; we keep one knot per block (at the weighted mean raw score
  of the block) and interpolate linearly between knots, so the map is strictly
  increasing between the first and last knot and rankings survive calibration
  (Oron & Flournoy, 2017). Used when the calibration slice is large enough.
- :class:`SigmoidCalibrator`: Platt scaling, ``p = 1 / (1 + exp(-(a * raw + b)))``,
  two numbers; robust on small calibration slices.

Both are fitted by scikit-learn (``IsotonicRegression``, ``LogisticRegression``); only
the fitted numbers are kept.

:func:`fit_calibrator` picks one by the size of the calibration slice. Every output is
clipped into ``[EPS, 1 - EPS]`` so that log loss is always finite.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

logger = logging.getLogger(__name__)

EPS = 1e-5
ISOTONIC = "isotonic"
SIGMOID = "sigmoid"


def _clip(p: np.ndarray) -> np.ndarray:
    return np.clip(p, EPS, 1.0 - EPS)


@dataclass(frozen=True)
class SigmoidCalibrator:
    """Platt scaling on the raw score: ``p = sigmoid(a * raw + b)``."""

    a: float
    b: float
    method: str = field(default=SIGMOID, init=False)

    def transform(self, raw: np.ndarray) -> np.ndarray:
        z = self.a * np.asarray(raw, dtype=np.float64) + self.b
        return _clip(_expit(z))

    def to_dict(self) -> dict:
        return {"method": SIGMOID, "a": float(self.a), "b": float(self.b)}


@dataclass(frozen=True)
class IsotonicCalibrator:
    """Centred isotonic map: linear interpolation between knots ``(x, y)``, flat outside."""

    x: tuple[float, ...]
    y: tuple[float, ...]
    method: str = field(default=ISOTONIC, init=False)

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y) or not self.x:
            raise ValueError("isotonic calibrator needs as many y knots as x knots, at least one")
        if np.any(np.diff(self.x) <= 0) or np.any(np.diff(self.y) < 0):
            raise ValueError("isotonic knots must have increasing x and non-decreasing y")

    def transform(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.float64)
        return _clip(np.interp(raw, self.x, self.y))

    def to_dict(self) -> dict:
        return {"method": ISOTONIC, "x": [float(v) for v in self.x], "y": [float(v) for v in self.y]}


Calibrator = SigmoidCalibrator | IsotonicCalibrator


def calibrator_from_dict(values: dict) -> Calibrator:
    """Rebuild a calibrator from :meth:`to_dict` output (as stored in calibration.json)."""
    method = values.get("method")
    if method == SIGMOID:
        return SigmoidCalibrator(float(values["a"]), float(values["b"]))
    if method == ISOTONIC:
        return IsotonicCalibrator(tuple(float(v) for v in values["x"]), tuple(float(v) for v in values["y"]))
    raise ValueError(f"unknown calibration method {method!r} (expected {ISOTONIC!r} or {SIGMOID!r})")


def _expit(z: np.ndarray) -> np.ndarray:
    """Overflow-free logistic function."""
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _base_rate_sigmoid(y: np.ndarray) -> SigmoidCalibrator:
    """Slope 0: the (smoothed) base rate of ``y`` whatever the raw score."""
    n_pos = float(np.sum(y))
    return SigmoidCalibrator(0.0, float(np.log((n_pos + 1.0) / (len(y) - n_pos + 1.0))))


def fit_sigmoid(raw: np.ndarray, y: np.ndarray, max_iter: int = 1000) -> SigmoidCalibrator:
    """Platt scaling by scikit-learn's ``LogisticRegression`` (lbfgs) on the raw score.

    A mild L2 penalty (``C`` = 1e4 on a one-column problem) keeps the slope finite when a
    recent window separates perfectly or ranks by noise (the hand-written Newton fit that
    preceded this one reached slopes of 1e11 on the bank file's recent windows). A slope that
    comes out negative would invert the booster's ranking: it becomes slope 0, the base rate.
    A single-class slice gets the smoothed base rate too.
    """
    from sklearn.linear_model import LogisticRegression

    raw = np.asarray(raw, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(y) == 0 or y.min() == y.max():
        return _base_rate_sigmoid(y)
    model = LogisticRegression(C=1e4, max_iter=max_iter, solver="lbfgs")
    model.fit(raw[:, None], (y > 0.5).astype(np.int64))
    a, b = float(model.coef_[0][0]), float(model.intercept_[0])
    if not (np.isfinite(a) and np.isfinite(b)) or a < 0:
        logger.warning("Platt slope came out %s: using slope 0, the base rate", f"{a:.3f}")
        return _base_rate_sigmoid(y)
    return SigmoidCalibrator(a, b)


def fit_isotonic(raw: np.ndarray, y: np.ndarray) -> IsotonicCalibrator:
    """Centred isotonic regression of ``y`` on ``raw`` (see module docstring).

    The pool-adjacent-violators fit is scikit-learn's ``IsotonicRegression``; its blocks of
    equal fitted value become one knot each, at the count-weighted mean raw score of the block.
    """
    from sklearn.isotonic import IsotonicRegression

    raw = np.asarray(raw, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    # Collapse equal raw scores first: they must get one value.
    ux, inverse, counts = np.unique(raw, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=y, minlength=len(ux))
    w = counts.astype(np.float64)
    iso = IsotonicRegression(increasing=True, out_of_bounds="clip")
    fitted = iso.fit_transform(ux, sums / counts, sample_weight=w)
    # Blocks of equal fitted value -> one knot at the count-weighted mean x of the block.
    change = np.flatnonzero(np.diff(fitted) > 1e-12) + 1
    block_start = np.concatenate([[0], change]).astype(np.int64)
    knot_x = np.add.reduceat(ux * w, block_start) / np.add.reduceat(w, block_start)
    knot_y = fitted[block_start]
    # Strictly increasing x is guaranteed (blocks are disjoint ranges of sorted unique x).
    return IsotonicCalibrator(tuple(knot_x.tolist()), tuple(knot_y.tolist()))


def choose_method(n_rows: int, n_positives: int, n_negatives: int, min_rows: int, min_positives: int) -> str:
    """Isotonic when the slice has at least ``min_rows`` rows and ``min_positives`` of each class."""
    if n_rows >= min_rows and min(n_positives, n_negatives) >= min_positives:
        return ISOTONIC
    return SIGMOID


def fit_calibrator(
    raw: np.ndarray,
    y: np.ndarray,
    min_rows: int = 20_000,
    min_positives: int = 500,
) -> Calibrator:
    """Fit the calibrator the slice supports: isotonic when large enough, else sigmoid.

    Args:
        raw: booster raw scores (log-odds) on the calibration slice.
        y: 0/1 labels of the same rows.
        min_rows: rows needed for isotonic.
        min_positives: positives (and negatives) needed for isotonic.
    """
    y = np.asarray(y, dtype=np.float64)
    if len(y) == 0:
        raise ValueError("cannot calibrate on an empty slice")
    n_pos = int(y.sum())
    method = choose_method(len(y), n_pos, len(y) - n_pos, min_rows, min_positives)
    cal = fit_isotonic(raw, y) if method == ISOTONIC else fit_sigmoid(raw, y)
    logger.info("calibrator %s on n=%d positives=%d", method, len(y), n_pos)
    return cal
