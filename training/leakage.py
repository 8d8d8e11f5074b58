"""Leakage probe: features that give the answer away, and custom fields recorded too late.

Two checks, both on the train slice only:

1. **Single-feature AUC.** For each feature alone, the ROC-AUC against each label, in
   whichever direction is larger. Numeric features are scored as they are, with
   missing values placed first and then last (the larger counts, since "missing"
   itself can be the leak). Categorical features are scored through their target rate
   per level, computed out of fold (two interleaved folds, smoothed towards the base
   rate), so an id-like field with one row per value does not look predictive. A
   feature at or above ``leakage.max_single_feature_auc`` for any label is flagged.
2. **Late filling.** A custom field of the activities table whose fill rate over the
   last ``leakage.late_fill_days`` days of data is below ``leakage.late_fill_ratio``
   times its fill rate before is flagged as *mostly recorded after the activity*: it
   gets filled in later (after a reply, a stage change, a won deal), so at the time of
   the activity it would have been empty. Fields declared in ``dataset.json`` as
   ``execution_time_fields`` are exempt (they are known once the activity is done and
   are used by the ``full`` model only).

Flagged features are dropped from every model unless listed in ``leakage.allow``.

Two warnings do not drop anything but are printed, logged and stored with the run:

3. **Strong single features.** A feature whose single-feature AUC lies in the warning band
   ``[leakage.warn_single_feature_auc, leakage.max_single_feature_auc)`` is named: a field
   written after the outcome often scores 0.9 alone without reaching the drop threshold.
   The ``leakage.top_features`` strongest features per label are listed with their AUC.
4. **Implausible test AUC.** After training, a model whose test AUC exceeds
   ``leakage.max_plausible_auc`` is reported with the features that carry it (largest
   gain share) and their single-feature AUC: declare after-the-fact fields execution-time in
   ``dataset.json`` or exclude them (:func:`implausible_models`).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from features import contract as c
from features.schema import CATEGORICAL, Feature
from models.metrics import roc_auc
from training.config import Leakage

logger = logging.getLogger(__name__)

MAX_PROBE_ROWS = 100_000
SMOOTHING = 20.0


@dataclass(frozen=True)
class LeakFlag:
    feature: str
    reason: str  # "single_feature_auc" | "late_filled"
    detail: str
    label: str | None = None
    value: float | None = None
    kept: bool = False  # allowed by config


@dataclass
class LeakageReport:
    flags: list[LeakFlag] = field(default_factory=list)
    max_auc: dict[str, dict[str, float]] = field(default_factory=dict)  # feature -> label -> AUC
    warnings: list[LeakFlag] = field(default_factory=list)  # warning band and implausible models: kept
    top: int = 5

    def strongest(self, label: str, k: int | None = None) -> list[tuple[str, float]]:
        """The ``k`` features with the highest single-feature AUC on ``label``, strongest first."""
        pairs = [(f, by[label]) for f, by in self.max_auc.items() if label in by and by[label] == by[label]]
        return sorted(pairs, key=lambda fa: -fa[1])[: (k or self.top)]

    @property
    def dropped(self) -> list[str]:
        return sorted({f.feature for f in self.flags if not f.kept})

    @property
    def kept(self) -> list[str]:
        return sorted({f.feature for f in self.flags if f.kept})

    def to_dict(self) -> dict:
        labels = sorted({lab for by in self.max_auc.values() for lab in by})
        return {"flags": [asdict(f) for f in self.flags], "dropped": self.dropped, "kept_by_config": self.kept,
                "warnings": [asdict(f) for f in self.warnings],
                "strongest": {lab: [{"feature": f, "auc": round(float(a), 4)} for f, a in self.strongest(lab)]
                              for lab in labels}}


def _oriented_auc(y: np.ndarray, x: np.ndarray) -> float:
    a = roc_auc(y, x)
    return max(a, 1.0 - a) if a == a else float("nan")


def single_feature_auc(values: pd.Series, y: np.ndarray, kind: str) -> float:
    """Best single-feature AUC of one column against 0/1 labels (see module docstring)."""
    if kind == CATEGORICAL:
        return _categorical_auc(values, y)
    x = values.to_numpy(dtype=np.float64, na_value=np.nan)
    missing = np.isnan(x)
    if missing.all():
        return 0.5
    if not missing.any():
        return _oriented_auc(y, x)
    lo, hi = np.nanmin(x), np.nanmax(x)
    first = np.where(missing, lo - 1.0, x)
    last = np.where(missing, hi + 1.0, x)
    return max(_oriented_auc(y, first), _oriented_auc(y, last))


def _categorical_auc(values: pd.Series, y: np.ndarray) -> float:
    codes, _ = pd.factorize(values.astype("string"), use_na_sentinel=False)
    if len(codes) == 0:
        return 0.5
    fold = np.arange(len(codes)) % 2
    prior = y.mean()
    encoded = np.empty(len(codes), dtype=np.float64)
    n_levels = codes.max() + 1
    for k in (0, 1):
        other = fold != k
        sums = np.bincount(codes[other], weights=y[other], minlength=n_levels)
        counts = np.bincount(codes[other], minlength=n_levels)
        rate = (sums + SMOOTHING * prior) / (counts + SMOOTHING)
        encoded[fold == k] = rate[codes[fold == k]]
    return _oriented_auc(y, encoded)


def late_fill(frame: pd.DataFrame, column: str, data_end: pd.Timestamp, days: int) -> tuple[float, float, int]:
    """Fill rate of a column before and within the last ``days`` days, and the recent row count."""
    recent = (frame[c.OCCURRED_AT] > pd.Timestamp(data_end) - pd.Timedelta(days=days)).to_numpy(dtype=bool)
    filled = frame[column].notna().to_numpy(dtype=bool)
    n_recent, n_before = int(recent.sum()), int((~recent).sum())
    before = filled[~recent].mean() if n_before else float("nan")
    late = filled[recent].mean() if n_recent else float("nan")
    return float(before), float(late), n_recent


def probe(
    frame: pd.DataFrame,
    features: list[Feature],
    train_masks: dict[str, np.ndarray],
    cfg: Leakage,
    data_end: pd.Timestamp,
    execution_time_names: set[str] | None = None,
    label_columns: dict[str, str] | None = None,
    seed: int = 0,
) -> LeakageReport:
    """Run both checks on the train slice.

    Args:
        frame: the training table (all rows).
        features: candidate model inputs.
        train_masks: per label, the rows of the train slice usable for that label.
        cfg: thresholds and the allowlist.
        data_end: end of the data (for the late-fill check).
        execution_time_names: feature names declared execution-time (exempt from late-fill).
        label_columns: label -> column (defaults to ``features.schema.LABELS``).
        seed: for the row sample on large tables.
    """
    from features.schema import LABELS

    label_columns = label_columns or LABELS
    execution_time_names = execution_time_names or set()
    allow = set(cfg.allow)
    report = LeakageReport(top=cfg.top_features)
    rng = np.random.default_rng(seed)
    for label, mask in train_masks.items():
        idx = np.flatnonzero(mask)
        if len(idx) < cfg.min_rows:
            continue
        if len(idx) > MAX_PROBE_ROWS:
            idx = np.sort(rng.choice(idx, MAX_PROBE_ROWS, replace=False))
        y = frame[label_columns[label]].to_numpy(dtype=np.float64, na_value=np.nan)[idx]
        if y.min() == y.max():
            continue
        rows = frame.iloc[idx]
        for f in features:
            auc = single_feature_auc(rows[f.name], y, f.kind)
            report.max_auc.setdefault(f.name, {})[label] = auc
            if auc >= cfg.max_single_feature_auc:
                report.flags.append(LeakFlag(
                    f.name, "single_feature_auc",
                    f"alone reaches AUC {auc:.3f} on {label} (threshold {cfg.max_single_feature_auc})",
                    label, round(float(auc), 4), f.name in allow,
                ))
            elif auc >= cfg.warn_single_feature_auc:
                report.warnings.append(LeakFlag(
                    f.name, "strong_single_feature",
                    f"alone reaches AUC {auc:.3f} on {label} (warning from {cfg.warn_single_feature_auc}, dropped "
                    f"from {cfg.max_single_feature_auc}): if it is written after the outcome, declare it "
                    "execution-time in dataset.json or exclude it",
                    label, round(float(auc), 4), True,
                ))
    prefix = "cf_" + c.ACTIVITIES + "_"
    for f in features:
        if f.family != "custom" or not f.name.startswith(prefix) or f.name in execution_time_names:
            continue
        before, late, n_recent = late_fill(frame, f.name, data_end, cfg.late_fill_days)
        if n_recent < max(20, cfg.min_rows // 10) or not before >= 0.05:
            continue
        if late < cfg.late_fill_ratio * before:
            report.flags.append(LeakFlag(
                f.name, "late_filled",
                f"filled for {late:.0%} of the last {cfg.late_fill_days} days' activities vs {before:.0%} before: "
                "mostly recorded after the activity",
                None, round(float(late / before), 4), f.name in allow,
            ))
    for flag in report.flags:
        logger.warning("leakage probe: %s %s%s", flag.feature, flag.detail, " (kept by config)" if flag.kept else "")
    for flag in report.warnings:
        logger.warning("leakage probe: %s %s", flag.feature, flag.detail)
    return report


def implausible_models(test_auc: dict[tuple[str, str], float], gain_share: dict[tuple[str, str], list[tuple[str, float]]],
                       report: LeakageReport, max_plausible_auc: float) -> list[LeakFlag]:
    """One warning per (label, variant) whose test AUC exceeds ``max_plausible_auc``.

    Args:
        test_auc: test AUC per (label, variant).
        gain_share: per (label, variant), (feature, share of the booster's total gain), largest first.
        report: the probe's report (for each carrying feature's single-feature AUC); the
            warnings are appended to ``report.warnings``.
        max_plausible_auc: the plausibility threshold (config ``leakage.max_plausible_auc``).
    """
    out = []
    for (label, variant), auc in test_auc.items():
        if not auc > max_plausible_auc:
            continue
        carriers = []
        for name, share in gain_share.get((label, variant), [])[:3]:
            single = report.max_auc.get(name, {}).get(label)
            carriers.append(f"{name} ({share:.0%} of the gain" + (f", alone AUC {single:.3f})" if single else ")"))
        flag = LeakFlag(
            ", ".join(n for n, _ in gain_share.get((label, variant), [])[:3]) or "(unknown)", "implausible_test_auc",
            f"{label}/{variant} reaches test AUC {auc:.3f}, above the plausible {max_plausible_auc}: carried by "
            + "; ".join(carriers) + ". A field written after the outcome? Declare it execution-time in dataset.json "
            "or exclude it (exclude_features)",
            label, round(float(auc), 4), True,
        )
        logger.warning("leakage: %s", flag.detail)
        out.append(flag)
    report.warnings.extend(out)
    return out
