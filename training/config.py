"""Training settings: frozen dataclasses loaded from YAML; unknown keys fail loudly.

``load_config(path, **overrides)`` reads ``training/configs/default.yaml`` (or the given
file), applies single-field overrides given with dotted names
(``load_config(p, **{"horizons.outcome_days": 21})``) and returns a :class:`TrainConfig`.
A key the dataclasses do not declare raises :class:`ConfigError` (a ``TypeError``) that
names the key, so a typo never falls back to a default silently.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from models.effects import EffectSettings

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "default.yaml"


class ConfigError(TypeError):
    """A config file is unreadable, has an unknown key or a value of the wrong type."""


@dataclass(frozen=True)
class Horizons:
    outcome_days: int = 14
    output_days: int = 7


@dataclass(frozen=True)
class Splits:
    """Time-ordered slices of the labelled rows, oldest to newest (never shuffled).

    Fractions are of the labelled rows in time order. ``test_days``, when set, makes the
    test window the last N days instead. ``purge_before_test`` drops, per label, rows of
    the earlier slices whose label horizon reaches into the test window, so the test
    window is scored exactly as a model deployed at its start would be.
    """

    train: float = 0.70
    validation: float = 0.10
    calibration: float = 0.10
    test: float = 0.10
    test_days: int | None = None
    purge_before_test: bool = True
    # Purge only what can leak: a label is settled once the data shows nothing later can change
    # it (outputs: the longest response delay the data has; outcome: the longest delay from an
    # activity to its deal's event when every deal has one activity, as in a flat leads export).
    # False: every label is taken to need its whole horizon (training.purge explains).
    purge_settled_labels: bool = True


@dataclass(frozen=True)
class LightGBM:
    # Below large_data_rows training rows: small trees, slow steps, strong shrinkage (on 60k
    # simulated activities, ~40k training rows, these close a third of the gap to the oracle).
    learning_rate: float = 0.03
    num_leaves: int = 7
    min_data_in_leaf: int = 100
    feature_fraction: float = 0.6
    bagging_fraction: float = 0.8
    bagging_freq: int = 1
    lambda_l2: float = 10.0
    max_bin: int = 255
    cat_smooth: float = 10.0
    max_cat_to_onehot: int = 4
    num_threads: int = 2
    seed: int = 7
    num_boost_round: int = 2000
    early_stopping_rounds: int = 100
    # From this many training rows on, larger steps and leaves: same AUC in a fifth of the trees.
    large_data_rows: int = 300_000
    large_data_learning_rate: float = 0.1
    large_data_num_leaves: int = 63
    large_data_min_data_in_leaf: int = 200
    large_data_early_stopping_rounds: int = 30


@dataclass(frozen=True)
class Gates:
    """Minimum data per label: below these counts training refuses (TrainingRefused)."""

    min_positives: int = 50  # in the train slice
    min_negatives: int = 50
    min_eval_positives: int = 10  # in each of the validation, calibration and test slices
    min_eval_negatives: int = 10
    # A label other than outcome below these counts is skipped (named in the summary) instead
    # of refusing the whole run; outcome below them always refuses.
    skip_labels_without_data: bool = True


@dataclass(frozen=True)
class Calibration:
    """Isotonic when the calibration slice has enough rows and positives, Platt sigmoid otherwise."""

    isotonic_min_rows: int = 20_000
    isotonic_min_positives: int = 500
    # Fit the calibrator on the validation and the calibration slices (the booster only
    # early-stopped on validation; it never trained on it): twice the rows for the two
    # Platt numbers, steadier on small data.
    with_validation: bool = True


@dataclass(frozen=True)
class Leakage:
    """Leakage probe settings.

    A feature whose single-feature AUC against a label on the train slice reaches
    ``max_single_feature_auc`` (either direction) is reported and dropped. An activity
    custom field whose fill rate over the last ``late_fill_days`` of data is below
    ``late_fill_ratio`` times its earlier fill rate is "mostly recorded after the
    activity" and dropped too. ``allow`` lists features kept anyway.
    """

    max_single_feature_auc: float = 0.95
    late_fill_days: int = 14
    late_fill_ratio: float = 0.5
    min_rows: int = 200
    allow: tuple[str, ...] = ()
    # Warning band: a feature alone at or above this AUC (below the drop threshold) is named.
    warn_single_feature_auc: float = 0.85
    # A test AUC above this is implausibly good for "will this activity advance the deal":
    # warn and name the features that carry the model.
    max_plausible_auc: float = 0.95
    top_features: int = 5  # strongest single features listed per label


@dataclass(frozen=True)
class Categories:
    max_levels: int = 200
    min_count: int = 10


@dataclass(frozen=True)
class Promotion:
    """Promotion gate: the candidate against the champion on the same recent window."""

    auc_tolerance: float = 0.005
    ece_tolerance: float = 0.01
    min_auc: float = 0.55  # absolute gates, also for the first champion
    max_ece: float = 0.05
    gate_labels: tuple[str, ...] = ("outcome",)
    gate_variants: tuple[str, ...] = ("full", "plan")
    window_days: int | None = None  # None: the candidate's own test window


@dataclass(frozen=True)
class Refit:
    """Refit for deployment (training.train): after the time-ordered evaluation, the
    registered boosters are refit on every labelled row with the evaluation's number of trees
    scaled by the row ratio; the calibrator is fit on the most recent closed labels (the test
    window) with the raw scores of a booster refit on everything before them (cross-fitting),
    then applied to the all-rows booster. The evaluation models stay in the bundle's
    ``evaluation/`` directory; the promotion gate compares those (like with like)."""

    enabled: bool = True
    max_round_scale: float = 2.0  # trees = best_iteration x min(row ratio, this)
    # False: deploy the booster refit on everything before the most recent closed labels,
    # calibrated on them (one extra fit per model instead of two; the newest labels only
    # calibrate). True: also refit on every row and apply that calibrator to it.
    all_rows: bool = True


@dataclass(frozen=True)
class Recalibrate:
    """``activity-scorer recalibrate``: refit the champion's calibrators on the latest closed labels."""

    window_days: int = 28  # closed labels of the last N days (horizon closed before the data end)
    holdout_share: float = 0.5  # the newest share of them judges old vs new calibration (the gate)
    min_rows: int = 200  # closed, labelled activities needed in the fit part


@dataclass(frozen=True)
class Monitor:
    """``activity-scorer monitor``: drift thresholds and the verdict rules (reports/monitor.py)."""

    psi_warn: float = 0.1  # a feature with PSI at or above this is "drifting"
    psi_alert: float = 0.25  # ... at or above this, "shifted"
    ks_alpha: float = 0.001  # two-sample test p-value below this: distributions differ
    score_psi_recalibrate: float = 0.1  # score PSI at or above this suggests recalibration
    shifted_share_retrain: float = 0.2  # share of features shifted (PSI >= psi_alert) that asks for a retrain
    auc_drop_retrain: float = 0.05  # realized AUC this far below the model's test AUC: retrain
    ece_recalibrate: float = 0.03  # realized ECE above max(this, test ECE + this / 2): recalibrate
    min_closed_labels: int = 200  # closed labels needed before realized AUC / ECE count
    bins: int = 10


@dataclass(frozen=True)
class TrainConfig:
    experiment: str = "activity-scorer"
    registered_model: str = "activity-outcome"
    timezone: str = "UTC"
    labels: tuple[str, ...] = ("outcome", "output", "negative")
    exclude_features: tuple[str, ...] = ()
    horizons: Horizons = field(default_factory=Horizons)
    splits: Splits = field(default_factory=Splits)
    lightgbm: LightGBM = field(default_factory=LightGBM)
    gates: Gates = field(default_factory=Gates)
    calibration: Calibration = field(default_factory=Calibration)
    leakage: Leakage = field(default_factory=Leakage)
    categories: Categories = field(default_factory=Categories)
    promotion: Promotion = field(default_factory=Promotion)
    refit: Refit = field(default_factory=Refit)
    recalibrate: Recalibrate = field(default_factory=Recalibrate)
    monitor: Monitor = field(default_factory=Monitor)
    effects: EffectSettings = field(default_factory=EffectSettings)  # the effect model /rank orders by
    shap_sample: int = 1000

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def flat(self) -> dict[str, Any]:
        """Dotted-name view, e.g. ``{"lightgbm.learning_rate": 0.05, ...}`` (MLflow params)."""
        out: dict[str, Any] = {}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict):
                for k, v in value.items():
                    walk(f"{prefix}.{k}" if prefix else k, v)
            else:
                out[prefix] = list(value) if isinstance(value, tuple) else value

        walk("", self.to_dict())
        return out


def _build(cls: type, values: Any, where: str) -> Any:
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in values if k not in fields]
    if unknown:
        key = f"{where}.{unknown[0]}" if where else str(unknown[0])
        raise ConfigError(f"unknown config key {key!r} (known: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, value in values.items():
        f = fields[name]
        key = f"{where}.{name}" if where else name
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value, key)
        else:
            kwargs[name] = _coerce(key, value, default)
    try:
        return cls(**kwargs)
    except ValueError as err:  # a section's own check (e.g. effects.design): name the section
        raise ConfigError(f"{where or 'config'}: {err}") from None


def _coerce(key: str, value: Any, default: Any) -> Any:
    """Check a leaf value against the type of its default (ints accept ints, floats accept numbers)."""
    if isinstance(default, tuple):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key!r} expects a list, got {value!r}")
        return tuple(str(v) for v in value)
    if value is None:
        return None
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"config key {key!r} expects true/false, got {value!r}")
        return value
    if isinstance(default, int) or (default is None and isinstance(value, int)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key {key!r} expects an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key {key!r} expects a number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"config key {key!r} expects text, got {value!r}")
        return value
    return value


def _nest(overrides: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for dotted, value in overrides.items():
        if value is None:
            continue
        parts = dotted.split(".")
        node = nested
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return nested


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(path: Path | None = None, **overrides: Any) -> TrainConfig:
    """Read a YAML config and apply dotted single-field overrides (``None`` values are skipped).

    Raises:
        ConfigError: unreadable file, unknown key or wrong value type (the message names it).
    """
    path = Path(path) if path is not None else DEFAULT_CONFIG
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    except OSError as err:  # a directory, no permission, ...
        raise ConfigError(f"{path}: cannot read the config file ({err.strerror or err})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    values = _merge(values, _nest(overrides))
    try:
        cfg = _build(TrainConfig, values, "")
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    validate_config(cfg)
    return cfg


def validate_config(cfg: TrainConfig) -> None:
    """Cross-field checks (fractions, labels, horizons)."""
    from models.bundle import LABEL_NAMES

    s = cfg.splits
    fracs = (s.train, s.validation, s.calibration, s.test)
    if any(f <= 0 for f in fracs) or abs(sum(fracs) - 1.0) > 1e-6:
        raise ConfigError(f"splits: train, validation, calibration and test must be positive and sum to 1, got {fracs}")
    bad = [lab for lab in cfg.labels if lab not in LABEL_NAMES]
    if bad or not cfg.labels:
        raise ConfigError(f"labels: expected a non-empty subset of {list(LABEL_NAMES)}, got {list(cfg.labels)}")
    if "outcome" not in cfg.labels:
        raise ConfigError("labels: 'outcome' is required (it is the model's main question)")
    if cfg.horizons.outcome_days <= 0 or cfg.horizons.output_days <= 0:
        raise ConfigError("horizons: outcome_days and output_days must be positive")
    # fields whose default is null: _coerce cannot infer their type from the default
    for key, value in (("splits.test_days", s.test_days), ("promotion.window_days", cfg.promotion.window_days)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise ConfigError(f"{key} expects a positive whole number of days or null, got {value!r}")
    bad_gate = [lab for lab in cfg.promotion.gate_labels if lab not in cfg.labels]
    if bad_gate:
        raise ConfigError(f"promotion.gate_labels: {bad_gate} not among the trained labels {list(cfg.labels)}")
    if not 0.0 < cfg.recalibrate.holdout_share < 1.0:
        raise ConfigError(f"recalibrate.holdout_share expects a share strictly between 0 and 1, "
                          f"got {cfg.recalibrate.holdout_share!r}")
    if cfg.refit.max_round_scale < 1.0:
        raise ConfigError(f"refit.max_round_scale expects a number >= 1, got {cfg.refit.max_round_scale!r}")
    if not cfg.leakage.warn_single_feature_auc <= cfg.leakage.max_single_feature_auc:
        raise ConfigError("leakage.warn_single_feature_auc must not exceed leakage.max_single_feature_auc "
                          f"({cfg.leakage.warn_single_feature_auc} > {cfg.leakage.max_single_feature_auc})")
    bad_var = [v for v in cfg.promotion.gate_variants if v not in ("full", "plan")]
    if bad_var:
        raise ConfigError(f"promotion.gate_variants: expected 'full' and/or 'plan', got {bad_var}")
