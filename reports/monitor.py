"""``activity-scorer monitor``: drift and realized quality of a model on recent data, and a verdict.

The reference is the model's own training window (``data_start`` .. ``data_end`` of its
manifest); the recent window is ``[--since, end of the data)``. For both the training table
is rebuilt from the dataset with the model's horizons and time zone (the same features the
model was trained on), and:

- **feature drift**: per model input, the population stability index (PSI, ``bins``
  quantile bins of the reference; categorical: one bin per level the model knows plus
  "other") and a two-sample test (scipy: Kolmogorov-Smirnov for numbers, chi-square for
  categories); a feature is *drifting* from ``monitor.psi_warn``, *shifted* from
  ``monitor.psi_alert``;
- **score drift**: the same for the model's ``p_outcome`` (full variant);
- **realized quality**: AUC, ECE and the calibration table of ``p_outcome`` on the recent
  rows whose label had closed (their horizon ended before the end of the data), per ISO
  week and over the window, next to the model's own test figures;
- **unseen values**: category values the model never saw, per feature;
- **served predictions**: when a prediction log is there (``serving.prediction_log``), its
  records in the window: volume per week, the served ``p_outcome`` distribution against the
  reference, and the realized AUC of what was served where the labels have closed;
- **verdict**: ``retrain`` when realized AUC fell ``auc_drop_retrain`` below the test AUC or
  at least ``shifted_share_retrain`` of the features shifted; else ``recalibrate`` when the
  realized ECE is above ``max(ece_recalibrate, test ECE + ece_recalibrate / 2)`` or the score
  PSI reaches ``score_psi_recalibrate``; else ``keep``. Thresholds: ``monitor`` in the
  training config. Each reason is listed with its figures.

Why scipy and not Evidently or NannyML: PSI is ten lines, the two tests are in scipy (already
a dependency through scikit-learn), and both libraries would bring dozens of pinned packages
(and their own plotting stacks) for the same figures; the page uses the report package's
helpers (``reports.html``, ``reports.plots``) so it is one self-contained file.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from features import contract as c
from features.schema import CATEGORICAL, LABELS, LEAK_FLAG
from models.metrics import expected_calibration_error, roc_auc

logger = logging.getLogger(__name__)

MAX_ROWS = 50_000  # per window, for the drift statistics (a seeded sample beyond)
KEEP, RECALIBRATE, RETRAIN = "keep", "recalibrate", "retrain"
OTHER = "(other)"


class MonitorError(ValueError):
    """The monitor cannot be computed (no recent rows, unreadable model...); the message says why."""


def psi(ref: np.ndarray, cur: np.ndarray) -> float:
    """Population stability index of two histograms (counts), with a 1e-4 floor on shares."""
    r = np.maximum(ref / max(ref.sum(), 1), 1e-4)
    q = np.maximum(cur / max(cur.sum(), 1), 1e-4)
    return float(np.sum((q - r) * np.log(q / r)))


def _numeric_hist(ref: np.ndarray, cur: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Counts of both windows in the reference's quantile bins, plus one bin for missing values."""
    r_ok, c_ok = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
    edges = np.unique(np.quantile(r_ok, np.linspace(0, 1, bins + 1)[1:-1])) if len(r_ok) else np.array([])
    r_bin = np.searchsorted(edges, r_ok, side="right")
    c_bin = np.searchsorted(edges, c_ok, side="right")
    k = len(edges) + 1
    ref_counts = np.append(np.bincount(r_bin, minlength=k), (~np.isfinite(ref)).sum())
    cur_counts = np.append(np.bincount(c_bin, minlength=k), (~np.isfinite(cur)).sum())
    labels = [f"<= {e:.4g}" for e in edges] + [f"> {edges[-1]:.4g}" if len(edges) else "all", "missing"]
    return ref_counts.astype(float), cur_counts.astype(float), labels


def _categorical_hist(ref: pd.Series, cur: pd.Series, levels: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    keep = list(levels) + [OTHER, "missing"]

    def counts(s: pd.Series) -> np.ndarray:
        v = s.astype("string")
        mapped = v.where(v.isin(levels) | v.isna(), OTHER).fillna("missing")
        vc = mapped.value_counts()
        return np.array([float(vc.get(k, 0)) for k in keep])

    return counts(ref), counts(cur), keep


def feature_drift(ref: pd.DataFrame, cur: pd.DataFrame, spec, cfg) -> list[dict[str, Any]]:  # noqa: ANN001
    """PSI and a two-sample test per model input, most drifted first."""
    from scipy import stats

    out = []
    for f in spec.features:
        if f.name not in ref.columns or f.name not in cur.columns:
            continue
        if f.kind == CATEGORICAL:
            r, q, _ = _categorical_hist(ref[f.name], cur[f.name], list(f.levels or ()))
            table = np.vstack([r, q])
            table = table[:, table.sum(axis=0) > 0]
            p = float(stats.chi2_contingency(table)[1]) if table.shape[1] > 1 else 1.0
            test = "chi-square"
        else:
            rv = ref[f.name].to_numpy(dtype=np.float64, na_value=np.nan)
            cv = cur[f.name].to_numpy(dtype=np.float64, na_value=np.nan)
            r, q, _ = _numeric_hist(rv, cv, cfg.bins)
            a, b = rv[np.isfinite(rv)], cv[np.isfinite(cv)]
            p = float(stats.ks_2samp(a, b).pvalue) if len(a) and len(b) else 1.0
            test = "Kolmogorov-Smirnov"
        value = psi(r, q)
        status = "shifted" if value >= cfg.psi_alert else "drifting" if value >= cfg.psi_warn else "stable"
        out.append({"feature": f.name, "kind": f.kind, "psi": value, "test": test, "p_value": p,
                    "differs": p < cfg.ks_alpha, "status": status,
                    "missing_ref": float(r[-1] / max(r.sum(), 1)), "missing_recent": float(q[-1] / max(q.sum(), 1))})
    return sorted(out, key=lambda d: -d["psi"])


def calibration_bins(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Equal-count bins of the predicted probability: mean predicted, observed rate, rows."""
    if not len(y):
        return []
    order = np.argsort(p, kind="stable")
    out = []
    for part in np.array_split(order, min(bins, len(y))):
        if len(part):
            out.append({"predicted": float(p[part].mean()), "observed": float(y[part].mean()), "n": int(len(part))})
    return out


def _quality(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    n = int(len(y))
    both = n and 0 < y.sum() < n
    return {"n": n, "positives": int(y.sum()) if n else 0, "base_rate": float(y.mean()) if n else None,
            "mean_p": float(p.mean()) if n else None, "auc": float(roc_auc(y, p)) if both else None,
            "ece": float(expected_calibration_error(y, p)) if n else None}


def _sample(frame: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    if len(frame) <= MAX_ROWS:
        return frame
    return frame.sample(MAX_ROWS, random_state=seed).sort_values(c.OCCURRED_AT, kind="stable")


def monitor_frame(bundle, frame: pd.DataFrame, since: pd.Timestamp, cfg, data_end: pd.Timestamp,  # noqa: ANN001
                  predictions: pd.DataFrame | None = None) -> dict[str, Any]:
    """The monitor document for a training table (reference and recent rows) and a bundle.

    Args:
        bundle: the model (``models.bundle.ModelBundle``).
        frame: the training table of the dataset, rebuilt with the model's horizons (labels
            censored at the end of the data: a label present is a closed label).
        since: start of the recent window.
        cfg: the training config (``cfg.monitor`` thresholds).
        data_end: end of the data.
        predictions: the prediction log as :func:`serving.prediction_log.read_predictions` reads it.

    Raises:
        MonitorError: no reference or no recent rows.
    """
    m = cfg.monitor
    window = bundle.manifest.data_window
    ref_start, ref_end = pd.Timestamp(window["data_start"]), pd.Timestamp(window["data_end"])
    occ = frame[c.OCCURRED_AT]
    ref = frame[((occ >= ref_start) & (occ < ref_end)).to_numpy(dtype=bool)]
    cur = frame[(occ >= since).to_numpy(dtype=bool)]
    if not len(ref):
        raise MonitorError(f"no activity of the data falls in the model's training window ({ref_start} .. {ref_end})")
    if not len(cur):
        raise MonitorError(f"no activity at or after --since {since.isoformat()} (the data ends {data_end.isoformat()})")
    notes = []
    if since < ref_end:
        notes.append(f"the recent window starts before the end of the model's training data ({ref_end.isoformat()[:10]}):"
                     " realized quality there is optimistic")
    ref_s, cur_s = _sample(ref), _sample(cur)
    drift = feature_drift(ref_s, cur_s, bundle.spec, m)

    variant = "full"
    p_ref = bundle.predict_proba(bundle.encode(ref_s), variant)["outcome"]
    cur_matrix, unseen = bundle.encode_report(cur)
    p_cur = bundle.predict_proba(cur_matrix, variant)["outcome"]
    r, q, _ = _numeric_hist(p_ref, p_cur, m.bins)
    from scipy import stats

    score = {"psi": psi(r, q), "p_value": float(stats.ks_2samp(p_ref, p_cur).pvalue),
             "mean_reference": float(p_ref.mean()), "mean_recent": float(p_cur.mean())}

    y = cur[LABELS["outcome"]].to_numpy(dtype=np.float64, na_value=np.nan)
    closed = ~np.isnan(y)
    if LEAK_FLAG in cur.columns:
        closed &= ~cur[LEAK_FLAG].to_numpy(dtype=bool, na_value=False)
    overall = _quality(y[closed], p_cur[closed])
    weeks = []
    week = cur[c.OCCURRED_AT].dt.tz_convert("UTC").dt.tz_localize(None).dt.to_period("W-SUN").dt.start_time
    week = week.to_numpy()
    for w in np.unique(week):
        sel = week == w
        q_w = _quality(y[sel & closed], p_cur[sel & closed])
        weeks.append({"week": pd.Timestamp(w).date().isoformat(), "activities": int(sel.sum()),
                      "closed": q_w["n"], **{k: q_w[k] for k in ("base_rate", "mean_p", "auc", "ece")},
                      "mean_p_all": float(p_cur[sel].mean())})
    test = (bundle.metrics.get("labels", {}).get("outcome", {}).get(bundle.trained_variant(variant), {})
            .get("test", {}))
    served = _served(predictions, cur, y, closed, p_ref, m) if predictions is not None else None

    reasons, verdict = [], KEEP
    enough = overall["n"] >= m.min_closed_labels and overall["auc"] is not None
    shifted = [d["feature"] for d in drift if d["status"] == "shifted"]
    share = len(shifted) / max(len(drift), 1)
    if enough and test.get("auc") is not None and overall["auc"] < test["auc"] - m.auc_drop_retrain:
        verdict = RETRAIN
        reasons.append(f"realized AUC {overall['auc']:.3f} on {overall['n']:,} closed labels is more than "
                       f"{m.auc_drop_retrain} below the test AUC {test['auc']:.3f}")
    if share >= m.shifted_share_retrain and drift:
        verdict = RETRAIN
        reasons.append(f"{len(shifted)} of {len(drift)} features shifted (PSI >= {m.psi_alert}): "
                       + ", ".join(shifted[:6]) + (" ..." if len(shifted) > 6 else ""))
    ece_limit = max(m.ece_recalibrate, (test.get("ece") or 0.0) + m.ece_recalibrate / 2)
    if verdict == KEEP and overall["n"] >= m.min_closed_labels and overall["ece"] is not None \
            and overall["ece"] > ece_limit:
        verdict = RECALIBRATE
        reasons.append(f"realized ECE {overall['ece']:.3f} above {ece_limit:.3f} (mean p {overall['mean_p']:.3f}, "
                       f"observed rate {overall['base_rate']:.3f})")
    if verdict == KEEP and score["psi"] >= m.score_psi_recalibrate:
        verdict = RECALIBRATE
        reasons.append(f"score PSI {score['psi']:.3f} at or above {m.score_psi_recalibrate} (mean p "
                       f"{score['mean_reference']:.3f} -> {score['mean_recent']:.3f})")
    if not enough:
        notes.append(f"only {overall['n']:,} closed labels in the window (needs {m.min_closed_labels:,} for "
                     "realized AUC and ECE to count)")
    if verdict == KEEP:
        reasons.append("no threshold crossed")
    return {
        "model": {"name": bundle.manifest.model_name, "version": bundle.manifest.model_version,
                  "trained_at": bundle.manifest.trained_at, "window": window},
        "window": {"reference_start": ref_start.isoformat(), "reference_end": ref_end.isoformat(),
                   "since": since.isoformat(), "data_end": data_end.isoformat(), "reference_rows": int(len(ref)),
                   "recent_rows": int(len(cur)), "closed_labels": overall["n"]},
        "verdict": verdict,
        "reasons": reasons,
        "notes": notes,
        "thresholds": {k: getattr(m, k) for k in m.__dataclass_fields__},
        "features": drift,
        "score": score,
        "realized": overall | {"test_auc": test.get("auc"), "test_ece": test.get("ece"),
                               "calibration": calibration_bins(y[closed], p_cur[closed], m.bins)},
        "weeks": weeks,
        "unseen": {k: int(v) for k, v in (unseen or {}).items() if v},
        "served": served,
    }


def _served(predictions: pd.DataFrame, cur: pd.DataFrame, y: np.ndarray, closed: np.ndarray, p_ref: np.ndarray,
            m) -> dict[str, Any]:  # noqa: ANN001
    """What the prediction log says about the window: volume, served score drift, realized AUC of what was served."""
    served = predictions[predictions["endpoint"] == "score"] if "endpoint" in predictions.columns else predictions
    p = served["p_outcome"].to_numpy(dtype=np.float64, na_value=np.nan)
    p = p[np.isfinite(p)]
    out: dict[str, Any] = {"records": int(len(served)), "versions": sorted({str(v) for v in
                                                                           served["model_version"].dropna()})}
    if not len(p):
        return out
    r, q, _ = _numeric_hist(p_ref, p, m.bins)
    out["psi_vs_reference"] = psi(r, q)
    out["mean_p"] = float(p.mean())
    week = served["ts"].dt.tz_convert("UTC").dt.tz_localize(None).dt.to_period("W-SUN").dt.start_time
    out["per_week"] = {pd.Timestamp(k).date().isoformat(): int(v) for k, v in week.value_counts().sort_index().items()}
    labels = pd.Series(y[closed], index=cur[c.ACTIVITY_ID].astype("string").to_numpy()[closed])
    labels = labels[~labels.index.duplicated()]
    joined = served.assign(y=served["activity_id"].astype("string").map(labels))
    joined = joined[joined["y"].notna() & joined["p_outcome"].notna()]
    out["closed"] = int(len(joined))
    if len(joined) and 0 < joined["y"].sum() < len(joined):
        out["realized_auc"] = float(roc_auc(joined["y"].to_numpy(float), joined["p_outcome"].to_numpy(float)))
        out["realized_ece"] = float(expected_calibration_error(joined["y"].to_numpy(float),
                                                               joined["p_outcome"].to_numpy(float)))
    return out
