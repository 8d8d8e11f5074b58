"""The model bundle: the one directory that crosses from training to serving.

Layout (``BUNDLE_FORMAT`` 1.x)::

    bundle/
      manifest.json         format, model name/version, trained_at, data window, input
                            fingerprint, git sha, library versions, horizons, timezone
      feature_spec.json     ordered features (kind, timing, text, unit) + learned levels
      booster_<label>_<variant>.txt   one LightGBM text model per (label, variant)
      calibration.json      per (label, variant): isotonic knots or Platt a/b, plain numbers
      metrics.json          test-window metrics written by training
      serving_context.json  what the service needs beyond a request (rep track records,
                            custom fields, time zone): ``features.build.context_to_dict``

Every booster takes the same input: the float64 matrix :meth:`FeatureSpec.encode`
builds from a feature frame, columns in spec order, categoricals as the index of the
value in the stored levels (unseen or missing -> NaN). The ``plan`` booster was
trained with execution-time columns blanked, so it never splits on them; both
variants therefore read the same matrix and the service encodes a request once.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.schema import CATEGORICAL, EXECUTION, LABELS, NUMERIC, PLAN, Feature
from models.calibration import calibrator_from_dict

logger = logging.getLogger(__name__)

BUNDLE_FORMAT = "1.0"
MANIFEST_FILE = "manifest.json"
SPEC_FILE = "feature_spec.json"
CALIBRATION_FILE = "calibration.json"
METRICS_FILE = "metrics.json"
CONTEXT_FILE = "serving_context.json"  # features.build.ServingContext as a dict (rep track records, ...)

VARIANT_PLAN = PLAN  # plan-time features only: ranks planned activities (/rank)
VARIANT_FULL = "full"  # plus execution-time features: scores activities that happened (/score, `score`)
VARIANTS = (VARIANT_PLAN, VARIANT_FULL)
LABEL_NAMES = tuple(LABELS)  # outcome, output, negative
SCORE_COLUMNS = {label: f"p_{label}" for label in LABEL_NAMES}  # p_outcome, p_output, p_negative

# Small frames are encoded with dict lookups (no pandas Categorical per column).
_SMALL_FRAME = 256


class BundleError(ValueError):
    """A bundle directory is missing, incomplete or of an unknown format."""


class BundleInputError(ValueError):
    """A feature frame does not match the bundle's feature spec (names the columns)."""


def booster_file(label: str, variant: str) -> str:
    return f"booster_{label}_{variant}.txt"


def _short_list(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


# --- feature spec --------------------------------------------------------------------


@dataclass(frozen=True)
class SpecFeature:
    """One model input column, with the category levels learned in training (categoricals)."""

    name: str
    family: str
    kind: str
    timing: str
    text: str = ""
    unit: str = ""
    levels: tuple[str, ...] | None = None

    @classmethod
    def from_feature(cls, feature: Feature, levels: tuple[str, ...] | None = None) -> SpecFeature:
        return cls(feature.name, feature.family, feature.kind, feature.timing, feature.text, feature.unit, levels)

    def to_dict(self) -> dict:
        d = asdict(self)
        if self.levels is None:
            d.pop("levels")
        else:
            d["levels"] = list(self.levels)
        return d


class FeatureSpec:
    """Ordered model inputs; encodes a feature frame into the matrix every booster reads.

    Build one with :meth:`fit` (learns the categorical levels from training rows) or
    :meth:`from_dict` (a stored spec). Levels are never set by hand.
    """

    def __init__(self, features: list[SpecFeature]):
        self.features: tuple[SpecFeature, ...] = tuple(features)
        self.names: list[str] = [f.name for f in self.features]
        if len(set(self.names)) != len(self.names):
            raise BundleError("feature spec lists a feature twice")
        self.categorical_indices: list[int] = [i for i, f in enumerate(self.features) if f.kind == CATEGORICAL]
        self.plan_indices: list[int] = [i for i, f in enumerate(self.features) if f.timing == PLAN]
        self.execution_indices: list[int] = [i for i, f in enumerate(self.features) if f.timing != PLAN]
        self._index: dict[str, pd.Index] = {
            f.name: pd.Index(list(f.levels or ()), dtype=object) for f in self.features if f.kind == CATEGORICAL
        }
        self._lookup: dict[str, dict[Any, float]] = {
            f.name: {v: float(i) for i, v in enumerate(f.levels or ())} for f in self.features if f.kind == CATEGORICAL
        }

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, name: str) -> SpecFeature:
        return self.features[self.names.index(name)]

    @classmethod
    def fit(
        cls,
        features: list[Feature],
        frame: pd.DataFrame,
        max_levels: int = 200,
        min_count: int = 10,
    ) -> FeatureSpec:
        """Learn categorical levels from training rows (most frequent first).

        Args:
            features: the model inputs, in the order the matrix will have.
            frame: training rows (one per activity) holding those columns.
            max_levels: keep at most this many levels per categorical.
            min_count: a value seen fewer times is not a level (it encodes as unseen).
        """
        out = []
        for feature in features:
            levels = None
            if feature.kind == CATEGORICAL:
                counts = frame[feature.name].dropna().astype("string").value_counts(sort=False)
                counts = counts[counts >= min_count]
                # frequency desc, then name, so the order is reproducible
                ordered = sorted(counts.items(), key=lambda kv: (-int(kv[1]), str(kv[0])))[:max_levels]
                levels = tuple(str(k) for k, _ in ordered)
            elif feature.kind != NUMERIC:
                raise BundleError(f"feature {feature.name!r}: unknown kind {feature.kind!r}")
            out.append(SpecFeature.from_feature(feature, levels))
        return cls(out)

    def to_dict(self) -> dict:
        return {
            "features": [f.to_dict() for f in self.features],
            "categorical_indices": self.categorical_indices,
        }

    @classmethod
    def from_dict(cls, values: dict) -> FeatureSpec:
        feats = []
        for d in values["features"]:
            levels = d.get("levels")
            feats.append(
                SpecFeature(
                    d["name"], d.get("family", ""), d["kind"], d.get("timing", PLAN), d.get("text", ""),
                    d.get("unit", ""), tuple(levels) if levels is not None else None,
                )
            )
        return cls(feats)

    def with_timing(self, names: set[str], timing: str = EXECUTION) -> FeatureSpec:
        """A copy where the named features have the given timing (levels kept)."""
        return FeatureSpec([replace(f, timing=timing) if f.name in names else f for f in self.features])

    # -- encoding ------------------------------------------------------------------

    def encode(self, frame: pd.DataFrame, rows: np.ndarray | None = None) -> np.ndarray:
        """Feature frame -> float64 matrix in spec order (see :meth:`encode_report`)."""
        return self.encode_report(frame, rows)[0]

    def encode_report(self, frame: pd.DataFrame, rows: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, int]]:
        """Encode a frame and count unseen category values per column (a drift signal).

        Extra columns are ignored; a missing spec column is an error. Categoricals become
        the index of the value in the stored levels; a missing value, or one not among the
        levels, becomes NaN (LightGBM's missing branch).

        Args:
            frame: the feature frame.
            rows: positions of the rows to encode, in the order wanted (None: every row, in
                order). Taken one column at a time, so only the matrix of those rows is made,
                never a copy of the frame.

        Returns:
            The matrix (rows as in ``frame``, or as ``rows`` says) and ``{column: n_unseen}``
            for columns with unseen values.

        Raises:
            BundleInputError: a spec column is absent or a numeric column holds text.
        """
        missing = [n for n in self.names if n not in frame.columns]
        if missing:
            raise BundleInputError(f"feature frame lacks {len(missing)} model column(s): {_short_list(missing)}")
        n = len(frame) if rows is None else len(rows)
        matrix = np.empty((n, len(self.features)), dtype=np.float64)
        unseen: dict[str, int] = {}
        for j, f in enumerate(self.features):
            col = frame[f.name] if rows is None else frame[f.name].iloc[rows]
            if f.kind == CATEGORICAL:
                codes, n_unseen = self._encode_categorical(f, col)
                matrix[:, j] = codes
                if n_unseen:
                    unseen[f.name] = n_unseen
            else:
                matrix[:, j] = _numeric_values(f.name, col)
        return matrix, unseen

    def encode_columns(self, columns: Mapping[str, Any]) -> tuple[np.ndarray, dict[str, int]]:
        """:meth:`encode_report` for a dict of equal-length arrays (the serving fast path, no pandas).

        Takes what ``features.build.build_serving_columns`` returns and gives the same matrix
        and unseen counts as encoding ``build_serving_frame`` of the same items.
        """
        missing = [n for n in self.names if n not in columns]
        if missing:
            raise BundleInputError(f"feature columns lack {len(missing)} model column(s): {_short_list(missing)}")
        n = len(columns[self.names[0]]) if self.names else 0
        matrix = np.empty((n, len(self.features)), dtype=np.float64)
        unseen: dict[str, int] = {}
        for j, f in enumerate(self.features):
            values = columns[f.name]
            if f.kind == CATEGORICAL:
                lookup = self._lookup[f.name]
                n_unseen = 0
                for i, v in enumerate(values):
                    if v is None or v is pd.NA or (isinstance(v, float) and v != v):
                        matrix[i, j] = math.nan
                        continue
                    code = lookup.get(v if isinstance(v, str) else str(v), math.nan)
                    matrix[i, j] = code
                    n_unseen += code != code
                if n_unseen:
                    unseen[f.name] = n_unseen
            else:
                arr = np.asarray(values)
                if arr.dtype == object:
                    matrix[:, j] = _numeric_values(f.name, pd.Series(arr, dtype=object))
                else:
                    matrix[:, j] = arr.astype(np.float64, copy=False)
        return matrix, unseen

    def _encode_categorical(self, f: SpecFeature, col: pd.Series) -> tuple[np.ndarray, int]:
        lookup = self._lookup[f.name]
        if len(col) <= _SMALL_FRAME:
            values = col.to_numpy(dtype=object, na_value=None)
            codes = np.array([lookup.get(v if isinstance(v, str) or v is None else str(v), math.nan)
                              if v is not None else math.nan for v in values], dtype=np.float64)
            n_unseen = int(sum(1 for v, c in zip(values, codes) if v is not None and c != c))
            return codes, n_unseen
        text = col if isinstance(col.dtype, pd.StringDtype) else col.astype("string")
        present = text.notna().to_numpy(dtype=bool, na_value=False)
        raw = self._index[f.name].get_indexer(text.to_numpy(dtype=object, na_value=None))
        codes = raw.astype(np.float64)
        unseen_mask = raw < 0
        codes[unseen_mask] = math.nan
        n_unseen = int((unseen_mask & present).sum())
        return codes, n_unseen

    def decode_value(self, name: str, value: float) -> Any:
        """Matrix value -> the readable value (category level, or the number)."""
        f = self[name]
        if value != value:  # NaN
            return None
        if f.kind == CATEGORICAL:
            return (f.levels or ())[int(value)]
        return float(value)


def _numeric_values(name: str, col: pd.Series) -> np.ndarray:
    if pd.api.types.is_bool_dtype(col.dtype) or pd.api.types.is_numeric_dtype(col.dtype):
        return col.to_numpy(dtype=np.float64, na_value=np.nan)
    converted = pd.to_numeric(col, errors="coerce")
    bad = converted.isna() & col.notna()
    if bad.any():
        example = col[bad].iloc[0]
        raise BundleInputError(f"feature {name!r} must be numeric, got {str(example)[:40]!r} in row {bad.idxmax()!r}")
    return converted.to_numpy(dtype=np.float64, na_value=np.nan)


# --- manifest --------------------------------------------------------------------------


@dataclass(frozen=True)
class Manifest:
    """Identity and provenance of a bundle (manifest.json)."""

    model_name: str
    trained_at: str
    labels: tuple[str, ...]
    variants: dict[str, str]  # requested variant -> trained variant ("full" -> "plan" when no execution features)
    horizons: dict[str, int]
    timezone: str
    data_window: dict[str, Any] = field(default_factory=dict)
    input_fingerprint: str = ""
    git_sha: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    model_version: str | None = None
    run_id: str | None = None
    bundle_format: str = BUNDLE_FORMAT
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["labels"] = list(self.labels)
        return d

    @classmethod
    def from_dict(cls, values: dict) -> Manifest:
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in values.items() if k in known}
        kwargs["labels"] = tuple(kwargs.get("labels", ()))
        return cls(**kwargs)


def check_format(found: str | None, where: Path | str) -> None:
    """Refuse a bundle whose major format version this code does not know."""
    if not found:
        raise BundleError(f"{where}: manifest has no bundle_format")
    major = str(found).split(".")[0]
    if major != BUNDLE_FORMAT.split(".")[0]:
        raise BundleError(
            f"{where}: bundle_format {found} is not supported by this version "
            f"(it reads {BUNDLE_FORMAT.split('.')[0]}.x); retrain or upgrade activity-scorer"
        )


# --- bundle ------------------------------------------------------------------------------


class ModelBundle:
    """Boosters, calibrators, feature spec, metrics and manifest of one trained model.

    Attributes:
        manifest: identity and provenance.
        spec: ordered inputs with learned levels.
        boosters: ``(label, trained_variant) -> lightgbm.Booster``.
        calibrators: ``(label, trained_variant) -> calibrator``.
        metrics: test-window metrics (as written by training).
        serving_context: plain-dict serving context (see :meth:`context`), or None.
    """

    def __init__(self, manifest: Manifest, spec: FeatureSpec, boosters: dict, calibrators: dict,
                 metrics: dict | None = None, serving_context: dict | None = None):
        self.manifest = manifest
        self.spec = spec
        self.boosters = boosters
        self.calibrators = calibrators
        self.metrics = metrics or {}
        self.serving_context = serving_context
        for label in manifest.labels:
            for variant in set(manifest.variants.values()):
                if (label, variant) not in boosters or (label, variant) not in calibrators:
                    raise BundleError(f"bundle lacks the {variant} model or calibrator for label {label!r}")

    @property
    def labels(self) -> tuple[str, ...]:
        return self.manifest.labels

    def trained_variant(self, variant: str) -> str:
        try:
            return self.manifest.variants[variant]
        except KeyError:
            raise ValueError(f"unknown variant {variant!r}; expected one of {sorted(self.manifest.variants)}") from None

    # -- prediction ------------------------------------------------------------------

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """Feature frame (columns by name, extra columns ignored) -> model matrix."""
        return self.spec.encode(frame)

    def encode_report(self, frame: pd.DataFrame) -> tuple[np.ndarray, dict[str, int]]:
        """Model matrix plus ``{column: unseen category values}`` (drift signal)."""
        return self.spec.encode_report(frame)

    def _check_matrix(self, matrix: np.ndarray) -> np.ndarray:
        matrix = np.asarray(matrix, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[1] != len(self.spec):
            raise BundleInputError(
                f"model matrix must have {len(self.spec)} columns in spec order, got shape {matrix.shape}"
            )
        return matrix

    def predict_raw(self, matrix: np.ndarray, variant: str = VARIANT_FULL, label: str = "outcome") -> np.ndarray:
        """Uncalibrated booster scores (log-odds)."""
        matrix = self._check_matrix(matrix)
        booster = self.boosters[(label, self.trained_variant(variant))]
        return np.asarray(booster.predict(matrix, raw_score=True), dtype=np.float64)

    def predict_proba(self, matrix: np.ndarray, variant: str = VARIANT_FULL) -> dict[str, np.ndarray]:
        """Calibrated probabilities per label for an encoded matrix.

        Args:
            matrix: from :meth:`encode`, one row per activity.
            variant: ``full`` for activities that happened, ``plan`` for planned ones.
        """
        matrix = self._check_matrix(matrix)
        trained = self.trained_variant(variant)
        out = {}
        for label in self.labels:
            raw = np.asarray(self.boosters[(label, trained)].predict(matrix, raw_score=True), dtype=np.float64)
            out[label] = self.calibrators[(label, trained)].transform(raw)
        return out

    def predict_frame(self, frame: pd.DataFrame, variant: str = VARIANT_FULL) -> pd.DataFrame:
        """Feature frame -> ``p_outcome, p_output, p_negative`` (NaN for a label not trained)."""
        proba = self.predict_proba(self.encode(frame), variant)
        return pd.DataFrame(
            {SCORE_COLUMNS[label]: proba.get(label, np.full(len(frame), np.nan)) for label in LABEL_NAMES},
            index=frame.index,
        )

    def contributions(self, matrix: np.ndarray, variant: str = VARIANT_FULL, label: str = "outcome") -> np.ndarray:
        """Per-feature raw-score (log-odds) contributions, LightGBM ``pred_contrib``.

        Returns:
            ``(n_rows, n_features + 1)``: one column per spec feature, then the bias; each
            row sums to the raw score.
        """
        matrix = self._check_matrix(matrix)
        booster = self.boosters[(label, self.trained_variant(variant))]
        return np.asarray(booster.predict(matrix, pred_contrib=True), dtype=np.float64)

    # -- persistence ------------------------------------------------------------------

    def save(self, path: Path) -> Path:
        """Write the bundle directory (created if needed).

        An earlier bundle in ``path`` is replaced whole, so none of its files (a ranking
        model, a booster of a variant this bundle lacks) can outlive it.

        Raises:
            BundleError: ``path`` is a non-empty directory that holds no bundle.
        """
        path = Path(path)
        if path.is_dir() and any(path.iterdir()):
            if not (path / MANIFEST_FILE).exists():
                raise BundleError(f"{path}: not empty and not a model bundle: refusing to write a bundle into it")
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
        _write_json(path / MANIFEST_FILE, self.manifest.to_dict())
        _write_json(path / SPEC_FILE, self.spec.to_dict())
        calibration: dict[str, dict] = {}
        for (label, variant), booster in self.boosters.items():
            booster.save_model(str(path / booster_file(label, variant)))
            calibration.setdefault(label, {})[variant] = self.calibrators[(label, variant)].to_dict()
        _write_json(path / CALIBRATION_FILE, calibration)
        _write_json(path / METRICS_FILE, self.metrics)
        if self.serving_context is not None:
            _write_json(path / CONTEXT_FILE, self.serving_context)
        logger.info("saved bundle to %s (%d boosters)", path, len(self.boosters))
        return path

    @classmethod
    def load(cls, path: Path) -> ModelBundle:
        """Read a bundle directory; refuses an unknown major ``bundle_format``."""
        import lightgbm as lgb

        path = Path(path)
        manifest_path = path / MANIFEST_FILE
        if not manifest_path.exists():
            raise BundleError(f"{path}: not a model bundle (no {MANIFEST_FILE})")
        raw_manifest = _read_json(manifest_path)
        check_format(raw_manifest.get("bundle_format"), manifest_path)
        manifest = Manifest.from_dict(raw_manifest)
        spec = FeatureSpec.from_dict(_read_json(path / SPEC_FILE))
        calibration = _read_json(path / CALIBRATION_FILE)
        boosters, calibrators = {}, {}
        for label in manifest.labels:
            for variant in sorted(set(manifest.variants.values())):
                f = path / booster_file(label, variant)
                if not f.exists():
                    raise BundleError(f"{path}: missing {f.name}")
                boosters[(label, variant)] = lgb.Booster(model_file=str(f))
                try:
                    calibrators[(label, variant)] = calibrator_from_dict(calibration[label][variant])
                except KeyError:
                    raise BundleError(f"{path}: {CALIBRATION_FILE} has no entry for {label}/{variant}") from None
        metrics = _read_json(path / METRICS_FILE) if (path / METRICS_FILE).exists() else {}
        context = _read_json(path / CONTEXT_FILE) if (path / CONTEXT_FILE).exists() else None
        for booster in boosters.values():
            if booster.num_feature() != len(spec):
                raise BundleError(f"{path}: booster expects {booster.num_feature()} features, spec has {len(spec)}")
        return cls(manifest, spec, boosters, calibrators, metrics, context)

    def with_manifest(self, **changes: Any) -> ModelBundle:
        """Same models with manifest fields replaced (e.g. the registry version once known)."""
        return ModelBundle(replace(self.manifest, **changes), self.spec, self.boosters, self.calibrators, self.metrics,
                           self.serving_context)


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(_jsonable(value), indent=2, sort_keys=False, allow_nan=True) + "\n", encoding="utf-8")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{path.parent}: missing {path.name}") from None
    except json.JSONDecodeError as err:
        raise BundleError(f"{path}: not valid JSON ({err})") from None


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (pd.Timestamp,)):
        return value.isoformat()
    return value
