"""Fit, calibrate and evaluate the models of one bundle: the library behind ``activity-scorer train``.

For each label (``outcome``, ``output``, ``negative``) and each variant:

- ``plan``: plan-time features only (known before the activity happens). It answers
  "which activity should we do next?": ``/rank`` scores planned candidates with it.
- ``full``: plan-time plus execution-time features (call duration, fields declared in
  ``dataset.json`` as ``execution_time_fields``). It answers "did this activity, as it
  happened, move the deal?": ``/score`` and ``activity-scorer score`` use it. When the
  data has no execution-time feature, ``full`` is the ``plan`` model.

Both variants read the same encoded matrix; the ``plan`` booster is trained with the
execution-time columns blanked, so it never splits on them.
"""

from __future__ import annotations

import logging
import platform
import subprocess
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features import contract as c
from features.schema import EXECUTION, LABELS, PLAN, Feature, custom_feature_name
from features.memory_budget import release_unused_memory
from models.bundle import VARIANT_FULL, VARIANT_PLAN, FeatureSpec, Manifest, ModelBundle
from models.calibration import fit_calibrator
from models.metrics import binary_metrics, calibration_table, expected_calibration_error, log_loss, truth_metrics
from training.config import TrainConfig
from training.data import EX_ANTE_ORACLE, REALIZED_ORACLE, TRUTH_COLUMNS  # noqa: F401 (re-exported)
from training.data import (
    SLICES,
    LoadedData,
    SplitPlan,
    censor_labels,
    input_fingerprint,
    label_masks,
    plan_splits,
)
from training.leakage import LeakageReport, implausible_models, probe
from training.purge import Settle, fill_settled_labels, settle_days

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]
SMALL_TRAIN_ROWS = 20_000
EVALUATION_DIR = "evaluation"  # inside a deployed bundle: the evaluation's models (training.train.save_bundle)
MIN_TYPE_ROWS = 50  # per-activity-type metrics need at least this many test rows
# The engine seam: boosters are fit here with lightgbm.train unless a trainer is set; the Dask
# engine (engine/train.py) sets one that fits them with lightgbm.dask on a cluster. A trainer has
# fit(params, X, y, names, categorical, rounds, valid=None, patience=None) -> (booster, best iteration).
BOOSTER_TRAINER: ContextVar[Any] = ContextVar("booster_trainer", default=None)


class TrainingRefused(Exception):
    """Training refused to produce a model (too little data for a label, nothing to learn from).

    Attributes:
        problems: one line per failing label or check, with the counts.
    """

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass
class ModelFit:
    """One fitted (label, variant): booster, calibrator and what evaluation produced."""

    label: str
    variant: str
    booster: Any
    calibrator: Any
    best_iteration: int
    metrics: dict[str, Any]
    importance_gain: np.ndarray
    test_index: np.ndarray  # frame positions of the test rows
    test_p: np.ndarray
    test_y: np.ndarray
    test_truth: np.ndarray | None = None
    seconds: float = 0.0


@dataclass
class TrainingResult:
    """Everything one training run produced; ``bundle`` is what gets saved and registered."""

    bundle: ModelBundle
    config: TrainConfig
    split: SplitPlan
    counts: dict[str, dict[str, dict[str, int]]]
    leakage: LeakageReport
    fits: dict[tuple[str, str], ModelFit]
    fingerprint: str
    n_rows: int
    features_used: list[str]
    seconds: dict[str, float] = field(default_factory=dict)
    shap: dict[str, Any] = field(default_factory=dict)  # variant -> {"values", "matrix", "names"}
    test_types: pd.Series | None = None  # activity type of every frame row (for plots)
    # Issue 15: what was deployed, labels skipped, what the purge left out, warnings to print.
    evaluation_bundle: ModelBundle | None = None  # the time-ordered evaluation's models (None: no refit)
    deployed: dict[str, Any] = field(default_factory=dict)  # "label/variant" -> rows, trees, calibration
    skipped_labels: dict[str, str] = field(default_factory=dict)  # label -> why
    purge: dict[str, Settle] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # one line each, printed by the CLI
    # the rows the effect model reads, taken before the table was let go (run_training's release_table)
    effect_rows: Any = None  # training.effects.EffectRows

    @property
    def metrics(self) -> dict[str, Any]:
        return self.bundle.metrics

    def headline(self) -> dict[str, float]:
        """A few numbers for one-line summaries: outcome AUC/ECE of each variant."""
        out = {}
        for (label, variant), fit in self.fits.items():
            if label == "outcome":
                out[f"{variant}_auc"] = fit.metrics["test"]["auc"]
                out[f"{variant}_ece"] = fit.metrics["test"]["ece"]
        return out


def _noop(_: str) -> None:
    return None


def lgb_params(cfg: TrainConfig) -> dict[str, Any]:
    p = cfg.lightgbm
    return {
        "objective": "binary",
        "metric": "binary_logloss",
        "learning_rate": p.learning_rate,
        "num_leaves": p.num_leaves,
        "min_data_in_leaf": p.min_data_in_leaf,
        "feature_fraction": p.feature_fraction,
        "bagging_fraction": p.bagging_fraction,
        "bagging_freq": p.bagging_freq,
        "lambda_l2": p.lambda_l2,
        "max_bin": p.max_bin,
        "cat_smooth": p.cat_smooth,
        "max_cat_to_onehot": p.max_cat_to_onehot,
        "num_threads": p.num_threads,
        "seed": p.seed,
        "deterministic": True,
        "force_row_wise": True,
        "verbose": -1,
    }


def model_features(table_features: list[Feature], cfg: TrainConfig, execution_time_fields: set[str],
                   columns: pd.Index) -> tuple[list[Feature], set[str]]:
    """Candidate inputs: the table's features minus config exclusions, with declared timings.

    Custom fields listed in ``dataset.json`` as execution-time become ``execution``
    features whatever the table says.

    Returns:
        The features and the names declared execution-time.
    """
    declared = set()
    for dotted in execution_time_fields:
        table, _, column = dotted.partition(".")
        if column:
            declared.add(custom_feature_name(table, column))
    excluded = set(cfg.exclude_features)
    out = []
    for f in table_features:
        if f.name in excluded:
            continue
        if f.name not in columns:
            raise TrainingRefused([f"training table lacks the column of feature {f.name!r}"])
        out.append(replace(f, timing=EXECUTION) if f.name in declared and f.timing == PLAN else f)
    return out, declared | {f.name for f in out if f.timing == EXECUTION}


def check_gates(counts: dict[str, dict[str, dict[str, int]]], cfg: TrainConfig) -> list[str]:
    """One problem line per label and slice below the configured minimum counts."""
    g = cfg.gates
    problems = []
    for label, by_slice in counts.items():
        bad = []
        for name in SLICES:
            k = by_slice[name]
            need_pos, need_neg = (g.min_positives, g.min_negatives) if name == "train" else (
                g.min_eval_positives, g.min_eval_negatives)
            if k["positives"] < need_pos or k["negatives"] < need_neg:
                bad.append(f"{name} has {k['positives']} positives / {k['negatives']} negatives "
                           f"(needs {need_pos} / {need_neg})")
        if bad:
            problems.append(f"label {label}: too little data: " + "; ".join(bad))
    return problems


def run_training(
    loaded: LoadedData,
    cfg: TrainConfig,
    until: pd.Timestamp | None = None,
    progress: Progress | None = None,
    release_table: bool = False,
    release_dataset: bool = False,
) -> TrainingResult:
    """Split, gate, probe for leaks, fit, calibrate and evaluate; returns an unsaved bundle.

    Args:
        loaded: the training table (from :func:`training.data.load_table` or a test factory).
        cfg: training settings.
        until: only what was known before this instant is used (rows at or after it are
            dropped, labels whose horizon has not closed before it are blanked).
        progress: called with a short message at each long step.
        release_table: let the table go once it is encoded (``loaded.table`` is set to ``None``,
            and ``loaded.truth`` once aligned to it):
            the fits then hold the encoded matrix and a few columns, not the table beside it.
            What reads the table later takes its part first: the serving context, and (with a
            dataset) the effect model's rows, in ``TrainingResult.effect_rows``.
        release_dataset: with ``release_table``, let the dataset go too (``loaded.dataset`` is
            set to ``None``) once the serving context is taken, before encoding: nothing after
            reads it. The caller reads it again for what comes after (the effect and ranking
            models); at 10M activities it is ~2.9 GB, held through encoding and an hour of fits.

    Raises:
        TrainingRefused: a label has too few positives or negatives, or nothing is left to learn from.
    """
    progress = progress or _noop
    t_start = time.perf_counter()
    seconds: dict[str, float] = {}
    table = loaded.table
    frame: pd.DataFrame = table.frame
    data_end = pd.Timestamp(table.data_end)
    if data_end.tzinfo is None:
        data_end = data_end.tz_localize("UTC")
    if until is not None:
        frame = frame[(frame[c.OCCURRED_AT] < until).to_numpy(dtype=bool)]
        data_end = min(data_end, until)
    label_cols = {lab: LABELS[lab] for lab in cfg.labels}
    missing = [col for col in [c.ACTIVITY_ID, c.OCCURRED_AT, *label_cols.values()] if col not in frame.columns]
    if missing:
        raise TrainingRefused([f"training table lacks column(s) {', '.join(missing)}"])
    # Both engines build the table in time order already; a stable sort of a sorted column is
    # the identity, and skipping it spares a second copy of the whole table for the whole run
    # (the caller still holds the first).
    if not frame[c.OCCURRED_AT].is_monotonic_increasing:
        frame = frame.sort_values(c.OCCURRED_AT, kind="stable")
    frame = frame.reset_index(drop=True)
    horizons = {"outcome_days": cfg.horizons.outcome_days, "output_days": cfg.horizons.output_days}
    frame = censor_labels(frame, data_end, horizons, label_cols)
    # purge (and censor) what can leak, not everything: labels that settle sooner than their horizon
    settles = settle_days(loaded.dataset, horizons, list(label_cols), cfg.splits.purge_settled_labels, until)
    frame, filled = fill_settled_labels(frame, loaded.dataset, settles, data_end, label_cols)

    features, execution_names = model_features(list(table.features), cfg, loaded.execution_time_fields,
                                                frame.columns)
    if not features:
        raise TrainingRefused(["no features left to learn from (all excluded by the config)"])

    progress("splitting on time")
    try:
        split = plan_splits(frame, cfg.splits, data_end, list(label_cols.values()), label_cols["outcome"],
                            settles["outcome"].settle_days if cfg.splits.purge_before_test else 0)
    except ValueError as err:
        raise TrainingRefused([str(err)]) from None
    masks: dict[str, dict[str, np.ndarray]] = {}
    counts: dict[str, dict[str, dict[str, int]]] = {}
    ys: dict[str, np.ndarray] = {}
    for label, col in label_cols.items():
        masks[label] = label_masks(frame, split, label, settles[label].settle_days, cfg.splits.purge_before_test)
        y = frame[col].to_numpy(dtype=np.float64, na_value=np.nan)
        ys[label] = y
        if cfg.splits.purge_before_test:
            kept = label_masks(frame, split, label, 0.0, False)
            n_purged = int(sum(kept[name].sum() - masks[label][name].sum() for name in SLICES[:3]))
            settles[label] = replace(settles[label], rows_purged=n_purged)
        counts[label] = {
            name: {"positives": int(np.nansum(y[m])), "negatives": int(m.sum() - np.nansum(y[m]))}
            for name, m in masks[label].items()
        }
    skipped: dict[str, str] = {}
    problems = []
    for label in list(label_cols):
        bad = check_gates({label: counts[label]}, cfg)
        if not bad:
            continue
        if label == "outcome" or not cfg.gates.skip_labels_without_data:
            problems += bad
        else:
            skipped[label] = bad[0]
    if problems:
        raise TrainingRefused(problems + list(skipped.values()))
    for label, why in skipped.items():
        logger.warning("skipped %s", why)
        del label_cols[label], masks[label], ys[label]
        settles.pop(label, None)

    progress("probing for leakage")
    t = time.perf_counter()
    leakage = probe(frame, features, {lab: m["train"] for lab, m in masks.items()}, cfg.leakage, data_end,
                    execution_names, label_cols, seed=cfg.lightgbm.seed)
    features = [f for f in features if f.name not in set(leakage.dropped)]
    seconds["leakage_probe"] = time.perf_counter() - t
    if not features:
        raise TrainingRefused(["every feature was flagged by the leakage probe; see leakage.allow in the config"])

    context = effect_rows = None
    with_dataset = loaded.dataset is not None  # the effect model's rows are taken only with one
    if release_table:
        # The serving context reads the dataset and the whole table: it is taken before encoding,
        # so that (with release_dataset) the dataset is gone before the table and its matrix meet.
        context = serving_context(loaded, cfg, data_end)
        if release_dataset:
            loaded.dataset = None
            release_unused_memory()

    progress("encoding features")
    t = time.perf_counter()
    train_any = np.zeros(len(frame), dtype=bool)
    for m in masks.values():
        train_any |= m["train"]
    spec = FeatureSpec.fit(features, frame.loc[train_any], cfg.categories.max_levels, cfg.categories.min_count)
    matrix = spec.encode(frame)
    exec_idx = spec.execution_indices
    has_execution = bool(exec_idx) and bool(np.isfinite(matrix[np.ix_(train_any, exec_idx)]).any())
    seconds["encode"] = time.perf_counter() - t
    if release_table:
        # Past this point training reads the matrix and five columns. The effect model reads
        # more of the table: it takes its part now (the serving context took its own before
        # encoding), and the rest goes (at 10M activities the table is ~10 GB beside a 4 GB matrix).
        if with_dataset:
            from training.effects import select_effect_rows

            effect_rows = select_effect_rows(table.frame, spec, split.test_start, cfg.effects.max_activities,
                                             cfg.effects.seed)
        frame = frame[[col for col in (c.ACTIVITY_ID, c.OCCURRED_AT, c.TYPE, *label_cols.values())
                       if col in frame.columns]]
        loaded.table = None
        del table
        release_unused_memory()
    variants = [VARIANT_PLAN, VARIANT_FULL] if has_execution else [VARIANT_PLAN]
    variant_map = {VARIANT_PLAN: VARIANT_PLAN, VARIANT_FULL: VARIANT_FULL if has_execution else VARIANT_PLAN}

    truth = _align_truth(frame, loaded.truth)
    if release_table:
        loaded.truth = None
    types = frame[c.TYPE].astype("string") if c.TYPE in frame.columns else None
    fits: dict[tuple[str, str], ModelFit] = {}
    params = lgb_params(cfg)
    # one matrix serves both variants: the plan one sees the execution columns blank, in place
    # (a copy per variant held a second whole matrix through every fit)
    execution_values = matrix[:, exec_idx].copy() if has_execution else None
    for variant in variants:
        vmatrix = _as_variant(matrix, variant, exec_idx, execution_values)
        for label in label_cols:
            progress(f"training {label}/{variant}")
            fit = fit_one(vmatrix, ys[label], masks[label], spec, params, cfg, label, variant, types,
                          truth.get(label), progress)
            fits[(label, variant)] = fit
            seconds[f"fit_{label}_{variant}"] = fit.seconds
        del vmatrix

    notes: list[str] = [f"label {lab} skipped: {why.split(': ', 1)[-1]}" for lab, why in skipped.items()]
    for label, st in settles.items():
        if cfg.splits.purge_before_test and (st.settle_days < st.horizon_days or st.rows_purged):
            notes.append(f"purge before the test window ({label}): {st.rows_purged:,} rows left out; {st.reason}"
                         + (f"; {filled[label]:,} rows near the end of the data labelled" if filled.get(label) else ""))
    gain_share = {}
    for key, fit in fits.items():
        total = float(fit.importance_gain.sum()) or 1.0
        order = np.argsort(-fit.importance_gain)
        gain_share[key] = [(spec.names[i], float(fit.importance_gain[i]) / total) for i in order[:5]]
    implausible_models({k: f.metrics["test"]["auc"] for k, f in fits.items()}, gain_share, leakage,
                       cfg.leakage.max_plausible_auc)
    notes += [f"leakage warning: {w.feature} {w.detail}" if w.reason == "strong_single_feature"
              else f"leakage warning: {w.detail}" for w in leakage.warnings]

    deployed_fits: dict[tuple[str, str], tuple[Any, Any]] = {}
    deployed: dict[str, Any] = {}
    if cfg.refit.enabled:
        for variant in variants:
            vmatrix = _as_variant(matrix, variant, exec_idx, execution_values)
            for label in label_cols:
                progress(f"refitting {label}/{variant} for deployment")
                t = time.perf_counter()
                booster, calibrator, info = refit_for_deployment(vmatrix, ys[label], masks[label], frame, spec,
                                                                 params, cfg, fits[(label, variant)], label)
                deployed_fits[(label, variant)] = (booster, calibrator)
                deployed[f"{label}/{variant}"] = info
                seconds[f"refit_{label}_{variant}"] = time.perf_counter() - t
            del vmatrix
        d = deployed.get("outcome/plan", {})
        if d:
            notes.append(f"deployed: boosters refit on {'all ' if cfg.refit.all_rows else ''}{d['rows']:,} labelled "
                         f"rows ({d['trees']} trees for "
                         f"outcome/plan), calibrated on the {d['calibration_rows']:,} most recent closed labels "
                         f"(from {d['calibration_start'][:10]}); a booster fit on everything before them scored AUC "
                         f"{d['crossfit_auc']:.3f} there (the evaluation model: {fits[('outcome', 'plan')].metrics['test']['auc']:.3f})")

    matrix = _as_variant(matrix, VARIANT_FULL, exec_idx, execution_values)
    del execution_values
    progress("explaining (contributions on a test sample)")
    t = time.perf_counter()
    shap = _shap_sample(fits, matrix, spec, cfg)
    seconds["shap"] = time.perf_counter() - t

    fingerprint = input_fingerprint(frame, list(label_cols.values()))
    window = split.window() | {
        "until": until.isoformat() if until is not None else None,
        "rows": {name: int((split.slice_of_row == k).sum()) for k, name in enumerate(SLICES)},
    }
    metrics = {
        "window": window,
        "counts": counts,
        "labels": {lab: {v: fits[(lab, v)].metrics for v in variants} for lab in label_cols},
        "variants": variant_map,
        "leakage": leakage.to_dict(),
        "features_used": len(spec),
        "skipped_labels": skipped,
        "purge": {lab: st.to_dict() for lab, st in settles.items()},
        "deployed": {"refit": bool(deployed_fits), **deployed},
    }
    manifest = Manifest(
        model_name=cfg.registered_model,
        trained_at=pd.Timestamp.now(tz="UTC").isoformat(),
        labels=tuple(label_cols),
        variants=variant_map,
        horizons=horizons,
        timezone=cfg.timezone,
        data_window=window,
        input_fingerprint=fingerprint,
        git_sha=git_sha(),
        versions=library_versions(),
        extra={"source": str(loaded.source) if loaded.source else None,
               "dropped_features": leakage.dropped,
               "execution_features": sorted(spec.names[i] for i in exec_idx) if exec_idx else []},
    )
    if not release_table:
        context = serving_context(loaded, cfg, data_end)
    evaluation = ModelBundle(
        replace(manifest, extra=manifest.extra | {"role": "evaluation"}),
        spec,
        {k: f.booster for k, f in fits.items()},
        {k: f.calibrator for k, f in fits.items()},
        metrics,
        context,
    )
    if deployed_fits:
        bundle = ModelBundle(
            replace(manifest, extra=manifest.extra | {"role": "deployed", "evaluation_dir": EVALUATION_DIR}),
            spec,
            {k: b for k, (b, _) in deployed_fits.items()},
            {k: cal for k, (_, cal) in deployed_fits.items()},
            metrics,
            context,
        )
    else:
        bundle, evaluation = evaluation, None
    seconds["total"] = time.perf_counter() - t_start
    logger.info("trained %d models on %d rows in %.1fs", len(fits), len(frame), seconds["total"])
    return TrainingResult(bundle, cfg, split, counts, leakage, fits, fingerprint, len(frame),
                          list(spec.names), seconds, shap, types, evaluation, deployed, skipped, settles, notes,
                          effect_rows)


def _as_variant(matrix: np.ndarray, variant: str, exec_idx: list[int], execution_values: np.ndarray | None
                ) -> np.ndarray:
    """The encoded matrix as ``variant`` sees it, set in place and returned.

    The plan variant sees the execution-time columns blank (NaN: not known when an activity is
    planned); the full variant sees their values, kept in ``execution_values`` (None: the
    table has no execution values, and both variants see the matrix as it is).
    """
    if execution_values is not None:
        matrix[:, exec_idx] = np.nan if variant == VARIANT_PLAN else execution_values
    return matrix


def serving_context(loaded: LoadedData, cfg: TrainConfig, data_end: pd.Timestamp) -> dict | None:
    """The serving context as of the end of the training data (rep track records, custom fields)."""
    if loaded.dataset is None:
        return None
    from features.build import Horizons, context_to_dict, rep_context

    ctx = rep_context(loaded.dataset, loaded.table, at=data_end, timezone=cfg.timezone,
                      horizons=Horizons(outcome_days=cfg.horizons.outcome_days, output_days=cfg.horizons.output_days))
    return context_to_dict(ctx)


def fit_one(
    matrix: np.ndarray,
    y: np.ndarray,
    masks: dict[str, np.ndarray],
    spec: FeatureSpec,
    params: dict[str, Any],
    cfg: TrainConfig,
    label: str,
    variant: str,
    types: pd.Series | None,
    truth: LabelTruth | None,
    progress: Progress,
) -> ModelFit:
    """Fit one booster with early stopping, calibrate it and evaluate it on the test window."""
    import lightgbm as lgb

    t = time.perf_counter()
    tr, va, ca, te = (np.flatnonzero(masks[name]) for name in SLICES)
    names = [f"f{i}" for i in range(len(spec))]  # LightGBM refuses some characters in names
    if len(tr) < SMALL_TRAIN_ROWS:  # threads cost more than they save on tiny data
        params = params | {"num_threads": 1}
    lg = cfg.lightgbm
    patience = lg.early_stopping_rounds
    if len(tr) >= lg.large_data_rows:
        params = params | {"learning_rate": lg.large_data_learning_rate, "num_leaves": lg.large_data_num_leaves,
                           "min_data_in_leaf": lg.large_data_min_data_in_leaf}
        patience = lg.large_data_early_stopping_rounds
    trainer = BOOSTER_TRAINER.get()
    if trainer is not None:
        progress(f"training {label}/{variant} on the cluster")
        booster, best = trainer.fit(params, matrix, y, names, spec.categorical_indices, cfg.lightgbm.num_boost_round,
                                    valid=(matrix[va], y[va]), patience=patience, rows=tr)
    else:
        booster, best = _train_local(params, matrix, y, tr, va, names, spec, cfg.lightgbm.num_boost_round, patience,
                                     label, variant, progress)
    # Keep only the trees up to the best iteration, so the in-memory booster and the saved
    # text model predict exactly the same thing.
    booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))

    # With calibration.with_validation the calibrator also sees the validation rows: the booster
    # never trained on them (they only chose the number of trees), and twice the rows steady
    # the two Platt numbers on small data.
    cal_rows = np.concatenate([va, ca]) if cfg.calibration.with_validation else ca
    raw_cal = booster.predict(matrix[cal_rows], raw_score=True)
    calibrator = fit_calibrator(raw_cal, y[cal_rows], cfg.calibration.isotonic_min_rows,
                                cfg.calibration.isotonic_min_positives)
    raw_test = booster.predict(matrix[te], raw_score=True)
    p_test = calibrator.transform(raw_test)
    p_uncal = 1.0 / (1.0 + np.exp(-raw_test))
    y_test = y[te]
    test = binary_metrics(y_test, p_test)
    test["log_loss_uncalibrated"] = log_loss(y_test, p_uncal)
    test["ece_uncalibrated"] = expected_calibration_error(y_test, p_uncal)
    m: dict[str, Any] = {
        "test": test,
        "calibration_method": calibrator.method,
        "calibration_rows": int(len(cal_rows)),
        "best_iteration": int(best),
        "learning_rate": float(params["learning_rate"]),
        "num_leaves": int(params["num_leaves"]),
        "rows": {name: int(masks[name].sum()) for name in SLICES},
        "calibration_curve": {k: v.tolist() for k, v in calibration_table(y_test, p_test).items()},
    }
    if types is not None:
        m["by_type"] = _by_type(types.to_numpy(dtype=object, na_value=None)[te], y_test, p_test)
    test_truth = None
    if truth is not None:
        test_truth = truth.values[te]
        tm = _truth_metrics(y_test, p_test, truth, te)
        if tm:
            m["truth"] = tm
            m["oracle_column"] = truth.column
    gain = booster.feature_importance(importance_type="gain")
    seconds = time.perf_counter() - t
    logger.info("%s/%s: best_iteration=%d auc=%.4f ece=%.4f calibration=%s (%.1fs)", label, variant, best,
                test["auc"], test["ece"], calibrator.method, seconds)
    return ModelFit(label, variant, booster, calibrator, int(best), m, np.asarray(gain, dtype=np.float64), te,
                    p_test, y_test, test_truth, seconds)


def _train_local(params: dict[str, Any], matrix: np.ndarray, y: np.ndarray, tr: np.ndarray, va: np.ndarray,
                 names: list[str], spec: FeatureSpec, rounds: int, patience: int, label: str, variant: str,
                 progress: Progress) -> tuple[Any, int]:
    """lightgbm.train with early stopping on the validation rows: (booster, best iteration)."""
    import lightgbm as lgb

    dtrain = lgb.Dataset(matrix[tr], label=y[tr], feature_name=names,
                         categorical_feature=spec.categorical_indices, params={"max_bin": params["max_bin"],
                                                                               "verbose": -1},
                         free_raw_data=True)
    dvalid = lgb.Dataset(matrix[va], label=y[va], reference=dtrain, free_raw_data=True)
    every = 50

    def report(env: lgb.callback.CallbackEnv) -> None:
        if env.iteration % every == 0:
            progress(f"training {label}/{variant}: iteration {env.iteration}")

    booster = lgb.train(
        params,
        dtrain,
        num_boost_round=rounds,
        valid_sets=[dvalid],
        valid_names=["validation"],
        callbacks=[lgb.early_stopping(patience, verbose=False), report],
    )
    return booster, booster.best_iteration or booster.current_iteration()


def refit_for_deployment(matrix: np.ndarray, y: np.ndarray, masks: dict[str, np.ndarray], frame: pd.DataFrame,
                         spec: FeatureSpec, params: dict[str, Any], cfg: TrainConfig, fit: ModelFit, label: str
                         ) -> tuple[Any, Any, dict[str, Any]]:
    """The deployed booster and calibrator of one (label, variant), and what they were fit on.

    The booster is refit on every usable labelled row (all four slices; no early stopping:
    the evaluation's best number of trees scaled by the row ratio, at most
    ``refit.max_round_scale`` times). Its calibrator is cross-fitted: a second booster,
    refit the same way on the rows whose labels were settled before the test window, scores
    the test window (the most recent closed labels, unseen by it), and the calibrator fitted
    on those scores is applied to the all-rows booster (as scikit-learn's
    ``CalibratedClassifierCV(ensemble=False)`` does). The second booster's AUC on the test
    window (``crossfit_auc``) is an honest measure of what refitting on more recent data buys.
    With ``refit.all_rows`` false that second booster is the one deployed (one fit fewer).
    """
    import lightgbm as lgb

    from models.metrics import roc_auc

    names = [f"f{i}" for i in range(len(spec))]
    before = masks["train"] | masks["validation"] | masks["calibration"]
    window = masks["test"]
    usable = before | window
    n_eval_train = max(int(masks["train"].sum()), 1)
    params = dict(params)
    lg = cfg.lightgbm
    if n_eval_train >= lg.large_data_rows:
        params |= {"learning_rate": lg.large_data_learning_rate, "num_leaves": lg.large_data_num_leaves,
                   "min_data_in_leaf": lg.large_data_min_data_in_leaf}
    if n_eval_train < SMALL_TRAIN_ROWS:
        params["num_threads"] = 1

    def fit_rows(rows: np.ndarray) -> tuple[Any, int]:
        scale = min(len(rows) / n_eval_train, cfg.refit.max_round_scale)
        rounds = max(1, int(round(fit.best_iteration * scale)))
        trainer = BOOSTER_TRAINER.get()
        if trainer is not None:
            return trainer.fit(params, matrix, y, names, spec.categorical_indices, rounds, rows=rows)[0], rounds
        data = lgb.Dataset(matrix[rows], label=y[rows], feature_name=names,
                           categorical_feature=spec.categorical_indices,
                           params={"max_bin": params["max_bin"], "verbose": -1}, free_raw_data=True)
        return lgb.train(params, data, num_boost_round=rounds), rounds

    rows_before, rows_window, rows_all = np.flatnonzero(before), np.flatnonzero(window), np.flatnonzero(usable)
    cross, cross_rounds = fit_rows(rows_before)
    raw_window = cross.predict(matrix[rows_window], raw_score=True)
    calibrator = fit_calibrator(raw_window, y[rows_window], cfg.calibration.isotonic_min_rows,
                                cfg.calibration.isotonic_min_positives)
    crossfit_auc = float(roc_auc(y[rows_window], raw_window))
    if cfg.refit.all_rows:
        del cross
        booster, rounds = fit_rows(rows_all)
    else:  # refit.all_rows false: the booster the calibrator was fitted on is the one deployed
        booster, rounds, rows_all = cross, cross_rounds, rows_before
    occurred = frame[c.OCCURRED_AT]
    info = {
        "rows": int(len(rows_all)),
        "trees": int(rounds),
        "evaluation_trees": int(fit.best_iteration),
        "calibration": calibrator.method,
        "calibration_rows": int(len(rows_window)),
        "calibration_start": occurred.iloc[int(rows_window[0])].isoformat() if len(rows_window) else "",
        "crossfit_rows": int(len(rows_before)),
        "crossfit_auc": crossfit_auc,
        "evaluation_auc": float(fit.metrics["test"]["auc"]),
    }
    logger.info("%s: deployed booster refit on %d rows (%d trees); cross-fitted %s calibration on %d rows, "
                "crossfit AUC %.4f", label, len(rows_all), rounds, calibrator.method, len(rows_window), crossfit_auc)
    return booster, calibrator, info


def save_bundle(result: TrainingResult, path: Path) -> Path:
    """Save the registered bundle and, when it was refit, the evaluation models in ``path/evaluation``."""
    out = result.bundle.save(Path(path))
    if result.evaluation_bundle is not None:
        result.evaluation_bundle.save(out / EVALUATION_DIR)
    return out


def evaluation_bundle_of(path: Path) -> ModelBundle:
    """The bundle whose metrics a promotion gate compares: ``path/evaluation`` when present, else ``path``."""
    path = Path(path)
    inner = path / EVALUATION_DIR
    return ModelBundle.load(inner if (inner / "manifest.json").is_file() else path)


def _by_type(types: np.ndarray, y: np.ndarray, p: np.ndarray) -> dict[str, dict[str, float]]:
    out = {}
    values = np.array(["(missing)" if v is None else str(v) for v in types], dtype=object)
    for t in sorted(set(values.tolist())):
        sel = values == t
        if sel.sum() >= MIN_TYPE_ROWS:
            out[t] = binary_metrics(y[sel], p[sel])
    return out


@dataclass
class LabelTruth:
    """The simulator's true probability for one label, aligned to the frame's rows (NaN where unknown).

    Attributes:
        column: the ground-truth column used as the oracle (for ``outcome``, the ex-ante
            oracle ``p_outcome_label_ex_ante`` when the dataset has it).
        values: that column per frame row.
        realized: for ``outcome`` with the ex-ante oracle, the realized-schedule oracle
            ``p_outcome_label`` per frame row (an upper bound no point-in-time model reaches),
            reported beside it; else None.
    """

    column: str
    values: np.ndarray
    realized: np.ndarray | None = None


# the oracle columns per label live with the reader of the truth file (training.data)



def _align_truth(frame: pd.DataFrame, truth: pd.DataFrame | None) -> dict[str, LabelTruth]:
    """Ground-truth probability per label aligned to the frame's rows (NaN where unknown).

    For ``outcome`` the oracle is ``p_outcome_label_ex_ante`` (the best prediction from what
    was known before the activity, plus the latent deal quality and rep skill; the simulator
    computes it for a sample of activities, NaN elsewhere) when that column has any value;
    ``p_outcome_label`` (given the deal's realized future schedule) is then kept as
    ``realized``. Older simulations without the ex-ante column fall back to
    ``p_outcome_label``, then ``p_outcome``.
    """
    if truth is None:
        return {}
    ids = frame[[c.ACTIVITY_ID]].astype({c.ACTIVITY_ID: "string"})
    merged = ids.merge(truth.drop_duplicates(c.ACTIVITY_ID), on=c.ACTIVITY_ID, how="left")
    out = {}
    for label, candidates in TRUTH_COLUMNS.items():
        for col in candidates:
            if col not in merged.columns:
                continue
            values = merged[col].to_numpy(dtype=np.float64, na_value=np.nan)
            if col == EX_ANTE_ORACLE and not np.isfinite(values).any():
                continue
            realized = None
            if col == EX_ANTE_ORACLE and REALIZED_ORACLE in merged.columns:
                realized = merged[REALIZED_ORACLE].to_numpy(dtype=np.float64, na_value=np.nan)
            out[label] = LabelTruth(col, values, realized)
            break
    return out


def _truth_metrics(y_test: np.ndarray, p_test: np.ndarray, truth: LabelTruth, te: np.ndarray) -> dict[str, float]:
    """Oracle metrics on the test rows where the oracle is known, plus the realized-schedule oracle."""
    out: dict[str, float] = {}
    test_truth = truth.values[te]
    if np.isfinite(test_truth).any():
        out = truth_metrics(y_test, p_test, test_truth)
        out["oracle_gap"] = out["oracle_auc"] - out["auc_same_rows"]
    if truth.realized is not None:
        realized = truth.realized[te]
        if np.isfinite(realized).any():
            r = truth_metrics(y_test, p_test, realized)
            out["n_truth_realized"] = r["n_truth"]
            out["oracle_auc_realized"] = r["oracle_auc"]
            out["auc_same_rows_realized"] = r["auc_same_rows"]
            out["oracle_gap_realized"] = r["oracle_auc"] - r["auc_same_rows"]
    return out


def _shap_sample(fits: dict[tuple[str, str], ModelFit], matrix: np.ndarray, spec: FeatureSpec,
                 cfg: TrainConfig) -> dict[str, Any]:
    """Raw-score contributions of the outcome model on a sample of test rows, per variant."""
    out = {}
    rng = np.random.default_rng(cfg.lightgbm.seed)
    for (label, variant), fit in fits.items():
        if label != "outcome":
            continue
        idx = fit.test_index
        if len(idx) > cfg.shap_sample:
            idx = np.sort(rng.choice(idx, cfg.shap_sample, replace=False))
        sample = matrix[idx]
        if variant == VARIANT_PLAN and spec.execution_indices:
            sample = sample.copy()
            sample[:, spec.execution_indices] = np.nan
        contrib = fit.booster.predict(sample, pred_contrib=True)
        out[variant] = {"values": np.asarray(contrib)[:, :-1], "matrix": sample, "names": list(spec.names)}
    return out


def git_sha() -> str:
    """The commit of the code that trained (empty when not in a git checkout)."""
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parents[1],
                             capture_output=True, text=True, timeout=5, check=False)
        return res.stdout.strip() if res.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("activity-scorer", "lightgbm", "numpy", "pandas", "scikit-learn"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = ""
    return out


def summary_rows(result: TrainingResult) -> list[dict[str, Any]]:
    """One row per (label, variant) for the end-of-run table and ``--json``."""
    rows = []
    for (label, variant), fit in result.fits.items():
        t = fit.metrics["test"]
        row = {"label": label, "variant": variant, "n_test": int(t["n"]), "base_rate": t["base_rate"],
               "auc": t["auc"], "pr_auc": t["pr_auc"], "log_loss": t["log_loss"], "brier": t["brier"],
               "ece": t["ece"], "lift_top_decile": t["lift_top_decile"],
               "calibration": fit.metrics["calibration_method"], "trees": fit.best_iteration}
        truth = fit.metrics.get("truth")
        if truth:
            # "oracle_*": the fair oracle (ex-ante for outcome), on the test rows where it is
            # known (n_oracle); the model's AUC on those same rows is auc_oracle_rows.
            row["oracle"] = fit.metrics.get("oracle_column")
            for key, name in (("n_truth", "n_oracle"), ("oracle_auc", "oracle_auc"),
                              ("auc_same_rows", "auc_oracle_rows"), ("oracle_gap", "oracle_gap"),
                              ("spearman_truth", "spearman_truth"), ("ece_truth", "ece_truth"),
                              ("oracle_auc_realized", "oracle_auc_realized"),
                              ("oracle_gap_realized", "oracle_gap_realized")):
                if key in truth:
                    row[name] = int(truth[key]) if key == "n_truth" else truth[key]
        rows.append(row)
    return rows
