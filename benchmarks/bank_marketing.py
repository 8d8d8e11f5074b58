"""Benchmark: the whole pipeline on the UCI bank marketing calls, beside the published references.

Imports ``../shared/data/bank_marketing/bank-additional-full.csv`` with the bundled
mapping (``import-flat``), runs the normal training (``training.train.run_training``,
the library behind ``activity-scorer train``) and then, on the same pipeline
features (the training table encoded by the bundle's feature spec) and the same
LightGBM settings, measures:

- random 5-fold cross-validated AUC (comparable with the literature: 0.797 measured
  with LightGBM, 0.80 published by Moro et al. 2014 on a rolling window);
- AUC on an ordered 80/20 split (first 80% of calls in time order to train, last 20%
  to test; measured reference 0.661);
- both for the plan-time model (``duration`` blanked, as training does) and with
  ``duration`` (the leak);
- calibration on the recent window, where the positive rate has drifted from about
  6% to over 30%: expected calibration error (ECE, 10 equal-mass bins) of the raw
  booster, of the training's one-off calibration and of a rolling recalibration that
  refits a sigmoid each month on the latest 250 / 500 / 1,000 calls whose labels had
  closed by then.

    .venv/bin/python benchmarks/bank_marketing.py [--data FILE] [--keep DIR] [--json FILE]

Targets: plan-time random-CV AUC >= 0.79; ordered 80/20 AUC >= 0.66; recent-window
ECE reported and better than the uncalibrated model's. Takes about two minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ACTIVITY_SCORER_SHARED") or ROOT / ".." / "shared")  # beside the repository
BANK_FILE = (SHARED / "data" / "bank_marketing" / "bank-additional-full.csv").resolve()
CONFIG = ROOT / "benchmarks" / "bank_marketing.yaml"  # what `activity-scorer train --config` gets
# The file's outcomes are final: train with data up to 15 days after the last call, so the
# 14-day outcome horizon of the last calls has closed and none is censored.
UNTIL = "2010-12-11"
RECAL_ROWS = (250, 500, 1000)  # rolling recalibration: the latest calls whose label had closed

REFERENCES = {
    "published_auc": 0.80,  # Moro, Cortez & Rita 2014, rolling window, without duration
    "random_cv_auc": 0.797,  # LightGBM, random 5-fold CV, without duration (shared/data/README.md)
    "ordered_auc": 0.661,  # LightGBM, ordered 80/20 split, without duration
    "with_duration_auc": 0.95,  # LightGBM with duration (random CV)
}
TARGETS = {"plan_random_cv_auc": 0.79, "plan_ordered_auc": 0.66}

logger = logging.getLogger("bank_marketing")


@dataclass
class Prepared:
    """The training run and the matrix every extra measurement reads."""

    result: Any  # training.train.TrainingResult
    frame: pd.DataFrame  # the training table as run_training saw it (sorted by time)
    matrix: np.ndarray  # frame encoded by the bundle's feature spec
    y: np.ndarray
    labelled: np.ndarray
    exec_idx: list[int]
    cat_idx: list[int]
    params: dict[str, Any]
    cfg: Any


def import_bank(source: Path, out: Path) -> Any:
    """``activity-scorer import-flat SOURCE --mapping bank_marketing --out OUT``, as a library call."""
    from importers.flat import import_flat, load_mapping

    return import_flat(source, out, load_mapping("bank_marketing"), overwrite=True)


def bank_config(**overrides: Any) -> Any:
    """``benchmarks/bank_marketing.yaml``: the defaults, outcome label only (the file has no outputs)."""
    from training.config import load_config

    return load_config(CONFIG, **overrides)


def train(data: Path, cfg: Any, until: str = UNTIL) -> Prepared:
    """The normal training (load_table + run_training), plus the encoded matrix for the extra measures."""
    from features import contract as c
    from features.schema import LABELS
    from training.data import censor_labels, load_table, parse_date
    from training.train import lgb_params, run_training

    until_ts = parse_date(until)
    loaded = load_table(data, cfg, until=until_ts)
    result = run_training(loaded, cfg, until=until_ts)
    # the same frame run_training fitted on: rows before until, sorted by time, labels censored
    frame = loaded.table.frame
    frame = frame[(frame[c.OCCURRED_AT] < until_ts).to_numpy(bool)]
    frame = frame.sort_values(c.OCCURRED_AT, kind="stable").reset_index(drop=True)
    horizons = {"outcome_days": cfg.horizons.outcome_days, "output_days": cfg.horizons.output_days}
    frame = censor_labels(frame, min(pd.Timestamp(loaded.table.data_end), until_ts), horizons,
                          {"outcome": LABELS["outcome"]})
    spec = result.bundle.spec
    y = frame[LABELS["outcome"]].to_numpy(dtype=np.float64, na_value=np.nan)
    return Prepared(result, frame, spec.encode(frame), y, ~np.isnan(y), list(spec.execution_indices),
                    list(spec.categorical_indices), lgb_params(cfg), cfg)


def _fit(p: Prepared, train_idx: np.ndarray, valid_idx: np.ndarray, plan: bool, refit: bool = True) -> Any:
    """One booster with the training's LightGBM settings.

    Early stopping on ``valid_idx`` picks the number of rounds; with ``refit`` the booster
    is then refitted on ``train_idx`` and ``valid_idx`` together with that many rounds, so
    the split's most recent training rows are not lost to validation.
    """
    import lightgbm as lgb

    x = _variant(p, plan)
    names = [f"f{i}" for i in range(x.shape[1])]
    ds_params = {"max_bin": p.params["max_bin"], "verbose": -1}
    dtrain = lgb.Dataset(x[train_idx], label=p.y[train_idx], feature_name=names,
                         categorical_feature=p.cat_idx, params=ds_params)
    dvalid = lgb.Dataset(x[valid_idx], label=p.y[valid_idx], reference=dtrain)
    booster = lgb.train(p.params, dtrain, num_boost_round=p.cfg.lightgbm.num_boost_round, valid_sets=[dvalid],
                        callbacks=[lgb.early_stopping(p.cfg.lightgbm.early_stopping_rounds, verbose=False)])
    if not refit:
        return booster
    rounds = booster.best_iteration or booster.current_iteration()
    both = np.concatenate([train_idx, valid_idx])
    dall = lgb.Dataset(x[both], label=p.y[both], feature_name=names, categorical_feature=p.cat_idx,
                       params=ds_params)
    return lgb.train(p.params, dall, num_boost_round=rounds)


def _variant(p: Prepared, plan: bool) -> np.ndarray:
    if not plan or not p.exec_idx:
        return p.matrix
    x = p.matrix.copy()
    x[:, p.exec_idx] = np.nan  # what training does for the plan model: it never sees duration
    return x


def random_cv_auc(p: Prepared, plan: bool, folds: int = 5, seed: int = 7) -> dict[str, Any]:
    """Shuffled k-fold AUC over all labelled calls (10% of each training fold stops early)."""
    from models.metrics import roc_auc

    rng = np.random.default_rng(seed)
    rows = rng.permutation(np.flatnonzero(p.labelled))
    parts = np.array_split(rows, folds)
    x = _variant(p, plan)
    aucs = []
    for k in range(folds):
        test = parts[k]
        rest = np.concatenate([parts[j] for j in range(folds) if j != k])
        n_valid = len(rest) // 10
        booster = _fit(p, rest[n_valid:], rest[:n_valid], plan)
        aucs.append(roc_auc(p.y[test], booster.predict(x[test])))
    return {"auc": float(np.mean(aucs)), "std": float(np.std(aucs)), "folds": [round(a, 4) for a in aucs]}


def ordered_auc(p: Prepared, plan: bool, train_share: float = 0.8) -> dict[str, Any]:
    """First ``train_share`` of calls in time order to train, the rest to test.

    The last eighth of the training calls picks the number of rounds (early stopping);
    the booster is then refitted on all training calls. ``auc_no_refit`` is the booster
    that never saw that last eighth.
    """
    from models.metrics import roc_auc

    rows = np.flatnonzero(p.labelled)  # already in time order
    cut = int(len(rows) * train_share)
    train_rows, test = rows[:cut], rows[cut:]
    n_valid = len(train_rows) // 8
    x = _variant(p, plan)
    booster = _fit(p, train_rows[:-n_valid], train_rows[-n_valid:], plan)
    held_out = _fit(p, train_rows[:-n_valid], train_rows[-n_valid:], plan, refit=False)
    return {
        "auc": float(roc_auc(p.y[test], booster.predict(x[test]))),
        "auc_no_refit": float(roc_auc(p.y[test], held_out.predict(x[test]))),
        "rounds": int(booster.current_iteration()),
        "train_rate": float(np.mean(p.y[train_rows])),
        "test_rate": float(np.mean(p.y[test])),
        "test_from": str(p.frame["occurred_at"].iloc[test[0]].date()),
    }


def platt(raw: np.ndarray, y: np.ndarray) -> Any:
    """Platt scaling ``sigmoid(a * raw + b)`` by maximum likelihood (scikit-learn, no penalty to speak of).

    A negative slope (the recent calls rank the other way round, i.e. noise) becomes
    slope 0: the recent base rate, as :func:`models.calibration.fit_sigmoid` does.
    """
    from sklearn.linear_model import LogisticRegression

    from models.calibration import SigmoidCalibrator

    y = np.asarray(y, dtype=np.float64)
    if y.min() == y.max():
        rate = (y.sum() + 1.0) / (len(y) + 2.0)
        return SigmoidCalibrator(0.0, float(np.log(rate / (1.0 - rate))))
    model = LogisticRegression(C=1e6, max_iter=1000).fit(np.asarray(raw, dtype=np.float64)[:, None], y)
    a, b = float(model.coef_[0][0]), float(model.intercept_[0])
    if a < 0:
        rate = (y.sum() + 1.0) / (len(y) + 2.0)
        a, b = 0.0, float(np.log(rate / (1.0 - rate)))
    return SigmoidCalibrator(a, b)


def recent_window_calibration(p: Prepared, variant: str = "plan") -> dict[str, Any]:
    """ECE on the training's test window: raw booster, one-off calibration, rolling monthly recalibration.

    The rolling recalibration is what a deployed model can do: at the start of each month
    of the test window it refits a sigmoid on the raw scores of the latest ``RECAL_ROWS``
    calls whose outcome horizon had closed by then, and scores that month's calls with it.
    """
    from models.metrics import expected_calibration_error, roc_auc

    fit = p.result.fits[("outcome", variant)]
    booster = fit.booster
    x = _variant(p, variant == "plan")
    raw = booster.predict(x, raw_score=True)
    test = fit.test_index
    y_test = p.y[test]
    p_raw = 1.0 / (1.0 + np.exp(-raw[test]))
    p_once = fit.calibrator.transform(raw[test])

    times = p.frame["occurred_at"]
    t_ns = pd.DatetimeIndex(times).asi8
    closed_at = t_ns + pd.Timedelta(days=p.cfg.horizons.outcome_days).value
    months = times.iloc[test].dt.strftime("%Y-%m").to_numpy()
    rolling = {}
    for n_rows in RECAL_ROWS:
        p_roll = np.empty(len(test))
        for month in pd.unique(months):
            sel = months == month
            start = t_ns[test[sel]].min()
            known = np.flatnonzero(p.labelled & (closed_at <= start))[-n_rows:]
            p_roll[sel] = platt(raw[known], p.y[known]).transform(raw[test[sel]])
        rolling[n_rows] = {"ece": float(expected_calibration_error(y_test, p_roll)),
                           "mean_p": float(np.mean(p_roll)), "auc": float(roc_auc(y_test, p_roll))}
    monthly = []
    for month in pd.unique(months):
        sel = months == month
        if sel.sum() >= 100 and 0 < y_test[sel].mean() < 1:
            monthly.append(float(roc_auc(y_test[sel], raw[test[sel]])))
    train_rows = np.flatnonzero(p.result.split.slice_of_row == 0)
    cal_rows = np.flatnonzero(p.result.split.slice_of_row == 2)
    return {
        "variant": variant,
        "window": f"{times.iloc[test[0]].date()} .. {times.iloc[test[-1]].date()}",
        "rows": int(len(test)),
        "auc": float(roc_auc(y_test, p_once)),
        "auc_raw": float(roc_auc(y_test, raw[test])),
        "monthly_auc": {"months": len(monthly), "min": min(monthly), "median": float(np.median(monthly)),
                        "max": max(monthly)} if monthly else None,
        "rate_train": float(np.nanmean(p.y[train_rows])),
        "rate_calibration": float(np.nanmean(p.y[cal_rows])),
        "rate_test": float(np.mean(y_test)),
        "mean_p_raw": float(np.mean(p_raw)),
        "mean_p_once": float(np.mean(p_once)),
        "ece_uncalibrated": float(expected_calibration_error(y_test, p_raw)),
        "ece_calibrated_once": float(expected_calibration_error(y_test, p_once)),
        "rolling": rolling,
        "calibration_method": fit.calibrator.method,
    }


def run(source: Path, workdir: Path, folds: int = 5) -> dict[str, Any]:
    """Everything the benchmark reports, as one dict."""
    t0 = time.perf_counter()
    report = import_bank(source, workdir)
    t_import = time.perf_counter() - t0
    cfg = bank_config()
    p = train(workdir, cfg)
    t_train = time.perf_counter() - t0 - t_import
    out: dict[str, Any] = {
        "import": {"rows": report.rows_written, "positives": report.n_positive, "duplicates": report.duplicate_rows,
                   "from": report.time_from, "to": report.time_to, "seconds": round(t_import, 1)},
        "training": {
            "seconds": round(t_train, 1),
            "window": p.result.split.window(),
            "features": len(p.result.bundle.spec),
            "leakage_dropped": list(p.result.leakage.dropped),
            "test": {v: {k: p.result.fits[("outcome", v)].metrics["test"][k]
                         for k in ("auc", "ece", "ece_uncalibrated", "base_rate") if k in
                         p.result.fits[("outcome", v)].metrics["test"]}
                     for (lab, v) in p.result.fits if lab == "outcome"},
        },
    }
    for name, plan in (("plan", True), ("with_duration", False)):
        out[name] = {"random_cv": random_cv_auc(p, plan, folds), "ordered_80_20": ordered_auc(p, plan)}
    out["calibration"] = {v: recent_window_calibration(p, v) for v in ("plan", "full")
                          if ("outcome", v) in p.result.fits}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    out["references"] = REFERENCES
    plan_cal = out["calibration"]["plan"]
    out["targets"] = {
        "plan_random_cv_auc >= 0.79": out["plan"]["random_cv"]["auc"] >= TARGETS["plan_random_cv_auc"],
        "plan_ordered_auc >= 0.66": out["plan"]["ordered_80_20"]["auc"] >= TARGETS["plan_ordered_auc"],
        "recent ECE (rolling recalibration) < uncalibrated": all(
            v["ece"] < plan_cal["ece_uncalibrated"] for v in plan_cal["rolling"].values()),
    }
    return out


def print_report(r: dict[str, Any]) -> None:
    ref = r["references"]
    imp = r["import"]
    print(f"import: {imp['rows']} calls, {imp['positives']} subscribed, {imp['duplicates']} exact duplicates, "
          f"{imp['from'][:10]} .. {imp['to'][:10]} ({imp['seconds']} s)")
    tr = r["training"]
    w = tr["window"]
    print(f"training (run_training, benchmarks/bank_marketing.yaml): {tr['features']} features, "
          f"{tr['seconds']} s; test window {str(w['test_start'])[:10]} .. {str(w['data_end'])[:10]}")
    print()
    print(f"{'AUC':<38}{'plan-time':>11}{'with duration':>15}   reference (plan-time)")
    rows = [
        ("random 5-fold CV", r["plan"]["random_cv"]["auc"], r["with_duration"]["random_cv"]["auc"],
         f"{ref['random_cv_auc']:.3f} measured, {ref['published_auc']:.2f} published"),
        ("ordered 80/20 split", r["plan"]["ordered_80_20"]["auc"], r["with_duration"]["ordered_80_20"]["auc"],
         f"{ref['ordered_auc']:.3f} measured"),
        ("training's recent window (last 10%)", tr["test"]["plan"]["auc"],
         tr["test"].get("full", tr["test"]["plan"])["auc"], "-"),
    ]
    for name, a, b, text in rows:
        print(f"{name:<38}{a:>11.3f}{b:>15.3f}   {text}")
    print(f"{'':<38}{'':>11}{'':>15}   with duration: {ref['with_duration_auc']:.2f} measured")
    o = r["plan"]["ordered_80_20"]
    print(f"ordered split: positive rate {o['train_rate']:.1%} in the first 80%, {o['test_rate']:.1%} "
          f"in the last 20% (from {o['test_from']}); {o['rounds']} rounds; without the refit on the "
          f"validation eighth: plan {o['auc_no_refit']:.3f}, "
          f"with duration {r['with_duration']['ordered_80_20']['auc_no_refit']:.3f}")
    print()
    for v, cal in r["calibration"].items():
        print(f"recent window calibration, {v} model ({cal['window']}, {cal['rows']} calls): positive rate "
              f"{cal['rate_train']:.1%} in train, {cal['rate_calibration']:.1%} in the calibration slice, "
              f"{cal['rate_test']:.1%} in the window")
        if cal["monthly_auc"]:
            ma = cal["monthly_auc"]
            print(f"  AUC {cal['auc_raw']:.3f} over the window (raw score); within its {ma['months']} months of "
                  f">= 100 calls {ma['min']:.3f} .. {ma['max']:.3f} (median {ma['median']:.3f})")
        print(f"  ECE uncalibrated {cal['ece_uncalibrated']:.3f} (mean p {cal['mean_p_raw']:.3f}); "
              f"calibrated once ({cal['calibration_method']}, training) {cal['ece_calibrated_once']:.3f} "
              f"(mean p {cal['mean_p_once']:.3f})")
        print("  rolling monthly recalibration: " + "; ".join(
            f"last {n} calls {v['ece']:.3f} (mean p {v['mean_p']:.3f})" for n, v in cal["rolling"].items()))
    print()
    for name, ok in r["targets"].items():
        print(f"target {name}: {'met' if ok else 'NOT MET'}")
    print(f"total {r['seconds']} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=BANK_FILE, help="bank-additional-full.csv")
    parser.add_argument("--keep", type=Path, help="write the imported dataset here (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not args.data.is_file():
        print(f"{args.data}: no such file (the UCI bank marketing data, see ../shared/data/README.md)",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.keep or Path(tmp) / "bank"
        result = run(args.data, workdir, args.folds)
    print_report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    return 0 if all(result["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
