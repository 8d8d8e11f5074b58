"""The ranking model: which candidate activity, in one deal state, moves the deal.

``/rank`` compares candidates that share everything about the deal (stage, amount, cadence,
rep, account) and differ only in what is done and to whom. The bundle's outcome models
answer another question: the probability that *anything* advances the deal within the
outcome horizon (14 days), which is mostly the deal's doing. Fitted on that label, the
activity's own effect is a small part of the score, and trees spend it on interactions
with deal features that differ by candidate only through selection. Measured on the
simulator (``benchmarks/bench_rank_truth.py``, 60k activities, seed 0, 300 test states) the
plan model's top-1 had a true advance probability of 0.069 against 0.104 for the best
candidate, with a within-state Spearman correlation of 0.67 with the truth, below ranking
by the type's average true rate (0.69); ordered by this model: 0.084 and 0.80 (seed 3:
0.071 and 0.71 against 0.082 and 0.84). ``docs/serving.md`` has the figures.

The ranking model is a LightGBM classifier fitted for ranking:

- **a short label**: the deal advances (outcome row or higher stage) within
  ``horizon_days`` (default 1) after the activity, so the label is mostly the doing of
  that day's activities rather than of the next two weeks';
- **interaction constraints**: the *candidate features* (the activity's own columns, the
  contact and the per-contact cadence and responsiveness, custom fields of activities and
  contacts) may interact with each other and with the deal's stage, never with the rest
  of the deal's context; the context forms its own group. The score is then a candidate
  part plus a context part, and within one state the context part is a constant: the
  ranking is the candidate part, learned from every deal;
- **one-hot categoricals** (``max_cat_to_onehot`` 16): a rare level (a proposal at the
  first stage) is not grouped with frequent ones by LightGBM's category sorting.

It reads the bundle's encoded matrix (the plan variant: execution-time columns blanked), so
the service encodes a request once. It is stored in the bundle directory under
``ranking/`` and is optional: without it ``/rank`` orders by the plan model's ``p_outcome``.
"""

from __future__ import annotations

import json
import logging
import time
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from features import contract as c
from features import schema as s
from features.memory_budget import release_unused_memory
from models.bundle import BundleError, FeatureSpec
from models.metrics import log_loss

logger = logging.getLogger(__name__)

RANKING_DIR = "ranking"
BOOSTER_FILE = "booster.txt"
META_FILE = "ranking.json"
RANKING_FORMAT = "1.0"

STAGE_FEATURES = (c.STAGE_ORDER, "days_in_stage")  # in both interaction groups
CANDIDATE_FAMILIES = ("activity", "contact")
CANDIDATE_CUSTOM_TABLES = (c.ACTIVITIES, c.CONTACTS)  # custom fields that belong to the candidate


@dataclass(frozen=True)
class RankingSettings:
    """How the ranking model is fitted (defaults measured on the simulator; see the module doc)."""

    horizon_days: int = 1
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_data_in_leaf: int = 100
    max_cat_to_onehot: int = 16
    feature_fraction: float = 0.9
    bagging_fraction: float = 0.8
    lambda_l2: float = 1.0
    num_boost_round: int = 1000
    early_stopping_rounds: int = 30
    validation_share: float = 0.15  # the latest rows before ``until``: early stopping
    seed: int = 7
    # 0: the caller's choice (``fit_ranking_model(threads=...)``, training's lightgbm.num_threads) from
    # RANKING_SMALL_ROWS training rows on, one thread below: one thread fits 45k rows in about a second;
    # with two, OpenMP threads spinning on a busy 2-core machine took the same fit from 0.6 s to 90 s once
    num_threads: int = 0


def candidate_feature_names(spec: FeatureSpec) -> list[str]:
    """Features that can differ between the candidates of one ``/rank`` request.

    The activity's own columns, the contact's attributes, the per-contact cadence and
    responsiveness features (``*_contact*``) and custom fields of activities and contacts.
    """
    custom = tuple(s.custom_feature_name(t, "") for t in CANDIDATE_CUSTOM_TABLES)
    out = []
    for f in spec.features:
        if (f.family in CANDIDATE_FAMILIES or f.name.startswith(custom)
                or (f.family in ("cadence", "responsiveness") and "_contact" in f.name)):
            out.append(f.name)
    return out


def interaction_groups(spec: FeatureSpec) -> list[list[int]]:
    """LightGBM ``interaction_constraints``: [candidate + stage, context + stage] as spec indices."""
    cand = set(candidate_feature_names(spec))
    stage = [i for i, n in enumerate(spec.names) if n in STAGE_FEATURES]
    a = [i for i, n in enumerate(spec.names) if n in cand]
    b = [i for i, n in enumerate(spec.names) if n not in cand and n not in STAGE_FEATURES]
    return [sorted(a + stage), sorted(b + stage)]


def main_effect_groups(spec: FeatureSpec) -> list[list[int]]:
    """``interaction_constraints`` of main effects: each candidate column with the stage alone, and the context.

    A tree then learns how one candidate column's effect changes with the stage (a type's, a
    seniority's, a cadence's), never how two candidate columns combine.
    """
    cand = set(candidate_feature_names(spec))
    stage = [i for i, n in enumerate(spec.names) if n in STAGE_FEATURES]
    groups = [sorted([i] + stage) for i, n in enumerate(spec.names) if n in cand]
    groups.append(sorted([i for i, n in enumerate(spec.names) if n not in cand and n not in STAGE_FEATURES] + stage))
    return groups


@dataclass
class RankingModel:
    """A fitted ranking booster for one bundle's feature spec."""

    booster: Any  # lightgbm.Booster
    feature_names: list[str]
    settings: RankingSettings
    metrics: dict[str, Any] = field(default_factory=dict)

    def score(self, matrix: np.ndarray) -> np.ndarray:
        """Raw ranking scores (log-odds of an advance within the horizon) of encoded plan rows."""
        matrix = np.asarray(matrix, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[1] != len(self.feature_names):
            raise BundleError(f"ranking model needs {len(self.feature_names)} columns, got shape {matrix.shape}")
        return np.asarray(self.booster.predict(matrix, raw_score=True), dtype=np.float64)

    def probability(self, matrix: np.ndarray) -> np.ndarray:
        """``score`` as a probability (uncalibrated: for ordering and display, not for decisions)."""
        return 1.0 / (1.0 + np.exp(-self.score(matrix)))

    def save(self, bundle_dir: Path) -> Path:
        """Write ``<bundle_dir>/ranking/`` (booster text and metadata)."""
        out = Path(bundle_dir) / RANKING_DIR
        out.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(out / BOOSTER_FILE))
        meta = {"format": RANKING_FORMAT, "feature_names": self.feature_names, "settings": asdict(self.settings),
                "metrics": self.metrics}
        (out / META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True), encoding="utf-8")
        return out


def load_ranking(bundle_dir: Path, spec: FeatureSpec) -> RankingModel | None:
    """The bundle's ranking model, or None when it has none.

    Raises:
        BundleError: the ranking files are unreadable, of an unknown format, or built for
            other features than ``spec``.
    """
    import lightgbm as lgb

    d = Path(bundle_dir) / RANKING_DIR
    if not d.exists():
        return None
    try:
        meta = json.loads((d / META_FILE).read_text(encoding="utf-8"))
        booster = lgb.Booster(model_file=str(d / BOOSTER_FILE))
    except (OSError, ValueError, lgb.basic.LightGBMError) as err:
        raise BundleError(f"{d}: unreadable ranking model ({err})") from None
    if str(meta.get("format", "")).split(".")[0] != RANKING_FORMAT.split(".")[0]:
        raise BundleError(f"{d / META_FILE}: unknown ranking format {meta.get('format')!r}")
    names = list(meta.get("feature_names") or [])
    if names != list(spec.names):
        raise BundleError(f"{d}: ranking model was fitted on other features than the bundle's feature spec")
    settings = RankingSettings(**{k: v for k, v in (meta.get("settings") or {}).items()
                                  if k in RankingSettings.__dataclass_fields__})
    return RankingModel(booster, names, settings, meta.get("metrics") or {})


RANKING_SMALL_ROWS = 50_000


def lightgbm_threads(setting: int, caller: int, rows: int, small_rows: int) -> int:
    """LightGBM threads for a fit: ``setting`` when set (> 0), else the caller's count from ``small_rows`` rows on.

    Below ``small_rows`` one thread: threads cost more than they save there, and OpenMP threads
    spinning on a busy 2-core machine once took a 0.6 s fit to 90 s.
    """
    if setting > 0:
        return int(setting)
    return max(1, int(caller)) if rows >= small_rows else 1


# How fit_ranking_model builds its training table (None: ``features.build.build_training_frame``
# in this process). ``train --engine dask`` sets one that builds the same table on the cluster
# (``engine.train``): built here, it was the whole local feature build again on the client
# (8.8 GB at 3M activities), the largest part of the Dask engine's train there. It is called
# with ``columns=``, the columns the rows are chosen by: it may return a table whose frame holds
# only those, with an ``encode_rows(spec, rows)`` that encodes the chosen rows where the rest of
# the table is (engine.features.ClusterRows: on the workers, so this process never holds the
# table and its matrix at once; 18.1 GB at 10M when it did).
TABLE_BUILDER: ContextVar[Callable[..., Any] | None] = ContextVar("ranking_table_builder", default=None)


def fit_ranking_model(dataset, spec: FeatureSpec, *, until: pd.Timestamp | str | None = None,
                      settings: RankingSettings | None = None, timezone: str = "UTC",
                      threads: int = 1) -> RankingModel:
    """Fit the ranking model on a dataset, with the bundle's feature spec.

    Args:
        dataset: the ``features.dataset.Dataset`` the bundle was trained on.
        spec: the bundle's feature spec (the ranking model reads the same matrix).
        until: only activities whose short label had closed before this instant are used
            (pass the bundle's ``test_start`` to keep its test window unseen); default: all.
        settings: fitting settings.
        timezone: for the hour and weekday features (the bundle's).
        threads: LightGBM threads when ``settings.num_threads`` is 0, from ``RANKING_SMALL_ROWS``
            training rows on (one thread below).

    Raises:
        ValueError: too few labelled rows or positives to fit.
    """
    import lightgbm as lgb

    from features.build import Horizons, build_training_frame

    settings = settings or RankingSettings()
    t0 = time.perf_counter()
    horizon_days = int(settings.horizon_days)
    if horizon_days < 1:
        raise ValueError(f"ranking horizon_days must be at least 1 (got {settings.horizon_days})")
    builder = TABLE_BUILDER.get()
    horizons = Horizons(outcome_days=horizon_days)
    if builder is None:
        table = build_training_frame(dataset, horizons=horizons, timezone=timezone)
    else:
        table = builder(dataset, horizons=horizons, timezone=timezone,
                        columns=[s.LABEL_OUTCOME, s.LEAK_FLAG, c.OCCURRED_AT])
    frame = table.frame
    y = frame[s.LABEL_OUTCOME].to_numpy(np.float64, na_value=np.nan)
    keep = ~np.isnan(y) & ~frame[s.LEAK_FLAG].to_numpy(bool)
    if until is not None:
        until_ts = pd.Timestamp(until)
        until_ts = until_ts.tz_localize("UTC") if until_ts.tzinfo is None else until_ts.tz_convert("UTC")
        closes = frame[c.OCCURRED_AT] + pd.Timedelta(days=horizon_days)
        keep &= (closes < until_ts).to_numpy(bool)
    rows = np.flatnonzero(keep)
    rows = rows[np.argsort(frame[c.OCCURRED_AT].to_numpy()[rows], kind="stable")]
    n_valid = int(len(rows) * settings.validation_share)
    train, valid = rows[: len(rows) - n_valid], rows[len(rows) - n_valid:]
    pos = float(y[train].sum()) if len(train) else 0.0
    if len(train) < 1000 or pos < 50 or len(valid) < 100 or y[valid].sum() < 5:
        raise ValueError(f"too little data to fit the ranking model: {len(train)} training rows with {pos:.0f} "
                         f"positives, {len(valid)} validation rows (within {horizon_days} day(s) labels)")
    # only the rows it learns from, training rows first: the two sets are then slices of one
    # matrix, and the table can go before LightGBM bins them (encoding every row and copying the
    # two sets out held the table and three matrices at once)
    chosen = np.concatenate([train, valid])
    encode_rows = getattr(table, "encode_rows", None)
    matrix = encode_rows(spec, chosen) if encode_rows is not None else spec.encode(frame, rows=chosen)
    del chosen, encode_rows  # the bound method holds the table (on Dask: its partitions on the workers)
    y_train, y_valid = y[train], y[valid]
    n_train = len(train)
    del table, frame
    release_unused_memory()
    if spec.execution_indices:
        matrix[:, spec.execution_indices] = np.nan
    params = {
        "objective": "binary", "metric": "binary_logloss", "learning_rate": settings.learning_rate,
        "num_leaves": settings.num_leaves, "min_data_in_leaf": settings.min_data_in_leaf,
        "feature_fraction": settings.feature_fraction, "bagging_fraction": settings.bagging_fraction,
        "bagging_freq": 1, "lambda_l2": settings.lambda_l2, "max_cat_to_onehot": settings.max_cat_to_onehot,
        "interaction_constraints": interaction_groups(spec),
        "num_threads": lightgbm_threads(settings.num_threads, threads, len(train), RANKING_SMALL_ROWS),
        "seed": settings.seed, "deterministic": True, "force_row_wise": True, "verbose": -1,
    }
    names = [f"f{i}" for i in range(len(spec))]
    dtrain = lgb.Dataset(matrix[:n_train], label=y_train, feature_name=names,
                         categorical_feature=spec.categorical_indices, params={"verbose": -1})
    dvalid = lgb.Dataset(matrix[n_train:], label=y_valid, reference=dtrain)
    booster = lgb.train(params, dtrain, num_boost_round=settings.num_boost_round, valid_sets=[dvalid],
                        callbacks=[lgb.early_stopping(settings.early_stopping_rounds, verbose=False)])
    best = booster.best_iteration or booster.current_iteration()
    booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
    metrics = {
        "horizon_days": horizon_days,
        "train_rows": int(len(train)), "train_positives": int(pos),
        "validation_rows": int(len(valid)), "validation_positives": int(y_valid.sum()),
        "best_iteration": int(best),
        "validation_logloss": log_loss(y_valid, booster.predict(matrix[n_train:])),
        "until": None if until is None else pd.Timestamp(until).isoformat(),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    logger.info("ranking model: %d rows, %d positives, best_iteration=%d (%.1fs)", len(train), int(pos), best,
                metrics["seconds"])
    return RankingModel(booster, list(spec.names), settings, metrics)

