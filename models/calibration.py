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


def _platt_loss(a: float, b: float, raw: np.ndarray, t: np.ndarray) -> float:
    z = a * raw + b
    # log(1 + exp(z)) - t * z, computed stably
    return float(np.sum(np.logaddexp(0.0, z) - t * z))


def fit_sigmoid(raw: np.ndarray, y: np.ndarray, max_iter: int = 100) -> SigmoidCalibrator:
    """Platt scaling by damped Newton steps, with Platt's smoothed targets against overconfidence."""
    raw = np.asarray(raw, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n_pos = float(y.sum())
    n_neg = float(len(y) - n_pos)
    t = np.where(y > 0.5, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
    a, b = 1.0, float(np.log((n_pos + 1.0) / (n_neg + 1.0)) - np.mean(raw))
    loss = _platt_loss(a, b, raw, t)
    X = np.column_stack([raw, np.ones_like(raw)])
    for _ in range(max_iter):
        p = _expit(a * raw + b)
        grad = X.T @ (p - t)
        w = np.maximum(p * (1.0 - p), 1e-12)
        hess = (X * w[:, None]).T @ X + 1e-9 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        scale = 1.0
        while scale > 1e-8:  # backtrack until the loss does not increase
            na, nb = a - scale * step[0], b - scale * step[1]
            new_loss = _platt_loss(na, nb, raw, t)
            if new_loss <= loss + 1e-12:
                break
            scale *= 0.5
        else:
            break
        converged = abs(loss - new_loss) < 1e-10 * max(1.0, abs(loss))
        a, b, loss = na, nb, new_loss
        if converged:
            break
    if a < 0:  # a decreasing map would invert the booster's ranking
        logger.warning("Platt slope came out negative (%.3f): using slope 0, the base rate", a)
        a, b = 0.0, float(np.log((n_pos + 1.0) / (n_neg + 1.0)))
    return SigmoidCalibrator(float(a), float(b))


def fit_isotonic(raw: np.ndarray, y: np.ndarray) -> IsotonicCalibrator:
    """Centred isotonic regression of ``y`` on ``raw`` (see module docstring)."""
    from sklearn.isotonic import isotonic_regression

    raw = np.asarray(raw, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    order = np.argsort(raw, kind="stable")
    xs, ys = raw[order], y[order]
    # Collapse equal raw scores first: they must get one value.
    ux, start, counts = np.unique(xs, return_index=True, return_counts=True)
    sums = np.add.reduceat(ys, start)
    fitted = isotonic_regression(sums / counts, sample_weight=counts.astype(np.float64), increasing=True)
    # Blocks of equal fitted value -> one knot at the count-weighted mean x of the block.
    change = np.flatnonzero(np.diff(fitted) > 1e-12) + 1
    block_start = np.concatenate([[0], change])
    w = counts.astype(np.float64)
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
