"""Evaluation metrics for calibrated binary scores (numpy only, no per-row Python).

All functions take ``y`` (0/1) and ``p`` (probabilities) of the same length and
return plain floats (NaN when the metric is undefined, e.g. AUC with one class).
"""

from __future__ import annotations

import math

import numpy as np

ECE_BINS = 10


def _arrays(y, p) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if y.shape != p.shape:
        raise ValueError(f"labels and scores differ in length: {len(y)} vs {len(p)}")
    return y, p


def _rankdata(x: np.ndarray) -> np.ndarray:
    """Average ranks (1-based), ties shared, as scipy.stats.rankdata(method='average')."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    boundaries = np.concatenate([[True], xs[1:] != xs[:-1], [True]])
    idx = np.flatnonzero(boundaries)
    avg = (idx[:-1] + idx[1:] + 1) / 2.0  # mean of 1-based ranks idx[i]+1 .. idx[i+1]
    ranks_sorted = np.repeat(avg, np.diff(idx))
    ranks = np.empty_like(ranks_sorted)
    ranks[order] = ranks_sorted
    return ranks


def roc_auc(y, p) -> float:
    """Area under the ROC curve (Mann-Whitney), ties counted half."""
    y, p = _arrays(y, p)
    n_pos = float(y.sum())
    n_neg = float(len(y) - n_pos)
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = _rankdata(p)
    return float((ranks[y > 0.5].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def pr_auc(y, p) -> float:
    """Average precision (area under the precision-recall curve, step interpolation)."""
    y, p = _arrays(y, p)
    n_pos = y.sum()
    if n_pos == 0:
        return math.nan
    order = np.argsort(-p, kind="mergesort")
    ys, ps = y[order], p[order]
    # Only the last index of each run of tied scores is a threshold.
    last = np.concatenate([ps[1:] != ps[:-1], [True]])
    tp = np.cumsum(ys)[last]
    fp = np.cumsum(1.0 - ys)[last]
    precision = tp / (tp + fp)
    recall = tp / n_pos
    recall_prev = np.concatenate([[0.0], recall[:-1]])
    return float(np.sum((recall - recall_prev) * precision))


def log_loss(y, p, eps: float = 1e-15) -> float:
    y, p = _arrays(y, p)
    if len(y) == 0:
        return math.nan
    p = np.clip(p, eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def brier(y, p) -> float:
    y, p = _arrays(y, p)
    if len(y) == 0:
        return math.nan
    return float(np.mean((p - y) ** 2))


def _equal_mass_bins(p: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin index per row: ``n_bins`` groups of (nearly) equal size in score order."""
    order = np.argsort(p, kind="mergesort")
    bins = np.empty(len(p), dtype=np.int64)
    bins[order] = (np.arange(len(p)) * n_bins) // max(len(p), 1)
    return bins


def calibration_table(y, p, n_bins: int = ECE_BINS, truth=None) -> dict[str, np.ndarray]:
    """Per equal-mass bin: count, mean score, observed rate (and mean true probability)."""
    y, p = _arrays(y, p)
    n_bins = max(1, min(n_bins, len(p)))
    bins = _equal_mass_bins(p, n_bins)
    count = np.bincount(bins, minlength=n_bins).astype(np.float64)
    safe = np.maximum(count, 1)
    out = {
        "count": count,
        "mean_p": np.bincount(bins, weights=p, minlength=n_bins) / safe,
        "rate": np.bincount(bins, weights=y, minlength=n_bins) / safe,
    }
    if truth is not None:
        out["mean_truth"] = np.bincount(bins, weights=np.asarray(truth, np.float64), minlength=n_bins) / safe
    return out


def expected_calibration_error(y, p, n_bins: int = ECE_BINS) -> float:
    """ECE over ``n_bins`` equal-mass bins: sum over bins of share * |mean score - observed rate|.

    Equal-mass rather than equal-width bins, because most activities score low and
    equal-width bins would put nearly all of them in one bin and hide miscalibration.
    """
    y, p = _arrays(y, p)
    if len(y) == 0:
        return math.nan
    t = calibration_table(y, p, n_bins)
    return float(np.sum(t["count"] / len(y) * np.abs(t["mean_p"] - t["rate"])))


def ece_against_truth(truth, p, n_bins: int = ECE_BINS) -> float:
    """ECE where each bin's mean score is compared with its mean *true* probability (simulated data)."""
    truth, p = _arrays(truth, p)
    if len(p) == 0:
        return math.nan
    t = calibration_table(np.zeros_like(p), p, n_bins, truth=truth)
    return float(np.sum(t["count"] / len(p) * np.abs(t["mean_p"] - t["mean_truth"])))


def top_decile_lift(y, p, fraction: float = 0.1) -> float:
    """Observed rate in the top ``fraction`` of scores divided by the overall rate."""
    y, p = _arrays(y, p)
    base = y.mean() if len(y) else math.nan
    if not len(y) or base == 0:
        return math.nan
    k = max(1, int(round(len(y) * fraction)))
    top = np.argsort(-p, kind="mergesort")[:k]
    return float(y[top].mean() / base)


def spearman(a, b) -> float:
    """Spearman rank correlation."""
    a, b = _arrays(a, b)
    if len(a) < 2:
        return math.nan
    ra, rb = _rankdata(a), _rankdata(b)
    if ra.std() == 0 or rb.std() == 0:
        return math.nan
    return float(np.corrcoef(ra, rb)[0, 1])


def binary_metrics(y, p) -> dict[str, float]:
    """The standard set: n, positives, base rate, AUC, PR-AUC, log loss, Brier, ECE, top-decile lift."""
    y, p = _arrays(y, p)
    return {
        "n": float(len(y)),
        "positives": float(y.sum()),
        "base_rate": float(y.mean()) if len(y) else math.nan,
        "mean_p": float(p.mean()) if len(p) else math.nan,
        "auc": roc_auc(y, p),
        "pr_auc": pr_auc(y, p),
        "log_loss": log_loss(y, p),
        "brier": brier(y, p),
        "ece": expected_calibration_error(y, p),
        "lift_top_decile": top_decile_lift(y, p),
    }


def truth_metrics(y, p, truth) -> dict[str, float]:
    """Against the simulator's true probabilities: oracle AUC, rank correlation, calibration."""
    y, p = _arrays(y, p)
    truth = np.asarray(truth, dtype=np.float64)
    ok = np.isfinite(truth)
    y, p, truth = y[ok], p[ok], truth[ok]
    return {
        "n_truth": float(len(y)),
        "oracle_auc": roc_auc(y, truth),
        "auc_same_rows": roc_auc(y, p),
        "spearman_truth": spearman(p, truth),
        "ece_truth": ece_against_truth(truth, p),
        "mae_truth": float(np.mean(np.abs(p - truth))) if len(p) else math.nan,
        "oracle_log_loss": log_loss(y, truth),
    }
