"""Training data: build the training table from a dataset, censor by time, split on time.

Splits are time-ordered and never shuffled. The labelled rows, oldest first, are cut
into ``train`` (fits the boosters), ``validation`` (early stopping), ``calibration``
(fits the calibrators) and ``test`` (the most recent data, where every reported
metric is measured). Cuts fall on timestamps, so rows at the same instant are never
split across slices; the shares are of the rows labelled for the outcome (see
:func:`plan_splits`).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features import contract as c
from features.schema import LABELS, LEAK_FLAG
from training.config import Splits, TrainConfig

logger = logging.getLogger(__name__)

SLICES = ("train", "validation", "calibration", "test")
TRAIN, VALIDATION, CALIBRATION, TEST = range(4)
GROUND_TRUTH_FILE = "ground_truth.parquet"


@dataclass
class LoadedData:
    """A training table plus what training needs to know about its source."""

    table: Any  # features.build.TrainingTable (frame, features, data_end)
    execution_time_fields: set[str] = field(default_factory=set)
    source: Path | None = None
    truth: pd.DataFrame | None = None  # simulator ground truth, when the dataset has one
    dataset: Any = None  # features.dataset.Dataset, for the serving context stored in the bundle
    # the dataset's files as they were when it was read (dataset_files_state): ``train`` reads the
    # dataset again after the fits, and refuses if the files changed in between
    files_state: tuple | None = None


def dataset_files_state(directory: Path) -> tuple[tuple[str, int, int], ...]:
    """Name, size and modification time (ns) of each table file of a dataset directory."""
    out = []
    for path in sorted(Path(directory).iterdir()):
        if path.is_file() and path.suffix in (".csv", ".parquet", ".json"):
            st = path.stat()
            out.append((path.name, st.st_size, st.st_mtime_ns))
    return tuple(out)


def parse_date(value: str | None, option: str = "--until") -> pd.Timestamp | None:
    """ISO date or timestamp -> UTC Timestamp (a value without zone is UTC)."""
    if value is None or value == "":
        return None
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise ValueError(f"{option}: {value!r} is not an ISO 8601 date or timestamp") from None
    if ts is pd.NaT:
        raise ValueError(f"{option}: {value!r} is not an ISO 8601 date or timestamp")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def load_table(data: Path, cfg: TrainConfig, until: pd.Timestamp | None = None, dataset=None) -> LoadedData:
    """Read a dataset directory and build its training table with the feature pipeline.

    Args:
        data: dataset directory (data contract).
        cfg: horizons and timezone come from here.
        until: use only what was known before this instant.
        dataset: the already loaded ``features.dataset.Dataset`` of ``data``, if any.

    Raises:
        features.dataset.DatasetError: the dataset breaks the contract (the message lists why).
    """
    from features.build import Horizons, build_training_frame
    from features.dataset import load_dataset

    state = dataset_files_state(Path(data))
    if dataset is None:
        dataset = load_dataset(Path(data))
    table = build_training_frame(
        dataset,
        until=until,
        horizons=Horizons(outcome_days=cfg.horizons.outcome_days, output_days=cfg.horizons.output_days),
        timezone=cfg.timezone,
    )
    return LoadedData(table, set(dataset.execution_time_fields), Path(data).resolve(), read_truth(Path(data)),
                      dataset, state)


EX_ANTE_ORACLE = "p_outcome_label_ex_ante"
REALIZED_ORACLE = "p_outcome_label"
TRUTH_COLUMNS = {"outcome": [EX_ANTE_ORACLE, REALIZED_ORACLE, "p_outcome"], "output": ["p_output"],
                 "negative": ["p_negative"]}
# the ground-truth columns training reads (TRUTH_COLUMNS): the file holds 21, ~0.3 GB in
# memory per 1M activities; these ~0.05 GB
TRAINING_TRUTH_COLUMNS = tuple(dict.fromkeys(col for cols in TRUTH_COLUMNS.values() for col in cols))


def read_truth(data: Path, columns: tuple[str, ...] | None = None) -> pd.DataFrame | None:
    """The simulator's ``ground_truth.parquet`` (true probabilities per activity), if present.

    Args:
        data: dataset directory.
        columns: read only these (those the file has) besides ``activity_id``; None: every column.
    """
    path = Path(data) / GROUND_TRUTH_FILE
    if not path.exists():
        return None
    if columns is not None:
        import pyarrow.parquet as pq

        present = set(pq.ParquetFile(path).schema_arrow.names)
        columns = [col for col in (c.ACTIVITY_ID, *columns) if col in present]
    truth = pd.read_parquet(path, columns=columns)
    if c.ACTIVITY_ID not in truth.columns:
        logger.warning("%s has no activity_id column: ignored", path)
        return None
    truth[c.ACTIVITY_ID] = truth[c.ACTIVITY_ID].astype("string")
    return truth


def censor_labels(frame: pd.DataFrame, end: pd.Timestamp, horizons: dict[str, int],
                  labels: dict[str, str] | None = None) -> pd.DataFrame:
    """Blank (NaN) every label whose horizon does not close strictly before ``end``.

    The feature pipeline already censors at the end of the data; this enforces the
    same rule for ``--until`` and keeps training honest whatever the table's origin.
    """
    labels = labels or LABELS
    occurred = frame[c.OCCURRED_AT]
    out = {}
    for label, col in labels.items():
        if col not in frame.columns:
            continue
        days = horizons["outcome_days" if label == "outcome" else "output_days"]
        open_horizon = _ns(occurred) + pd.Timedelta(days=days).value >= pd.Timestamp(end).value
        if open_horizon.any():
            values = frame[col].to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
            values[open_horizon] = np.nan
            out[col] = values
    if out:
        frame = frame.assign(**out)
    return frame


@dataclass(frozen=True)
class SplitPlan:
    """Where the slices start and end (UTC instants), and the slice of every row.

    Attributes:
        boundaries: start of validation, calibration and test.
        data_start: first labelled activity.
        data_end: end of the data (or ``--until``).
        slice_of_row: 0..3 per row of the frame (train .. test); -1 for rows without any label.
    """

    boundaries: tuple[pd.Timestamp, pd.Timestamp, pd.Timestamp]
    data_start: pd.Timestamp
    data_end: pd.Timestamp
    slice_of_row: np.ndarray

    @property
    def test_start(self) -> pd.Timestamp:
        return self.boundaries[2]

    def window(self) -> dict[str, str]:
        b = self.boundaries
        return {
            "data_start": self.data_start.isoformat(),
            "validation_start": b[0].isoformat(),
            "calibration_start": b[1].isoformat(),
            "test_start": b[2].isoformat(),
            "data_end": self.data_end.isoformat(),
        }


def _ns(values: pd.Series) -> np.ndarray:
    """UTC instants as int64 nanoseconds since the epoch."""
    return values.dt.tz_convert("UTC").dt.as_unit("ns").astype("int64").to_numpy()


def _ts(ns: int) -> pd.Timestamp:
    return pd.Timestamp(int(ns), unit="ns", tz="UTC")


def plan_splits(
    frame: pd.DataFrame,
    splits: Splits,
    data_end: pd.Timestamp,
    label_columns: list[str],
    primary_column: str | None = None,
    gap_days: int = 0,
) -> SplitPlan:
    """Cut labelled rows into train/validation/calibration/test by time (see module docstring).

    The test window is the last ``splits.test`` share of the rows labelled for the primary
    label (or the last ``splits.test_days`` days). The other three slices share, by their
    fractions, the primary-labelled rows before ``test start - gap_days``: the rows of the
    gap (whose primary label reaches into the test window, so it is purged) stay in the
    calibration slice for the labels with shorter horizons, and the calibration slice keeps
    its share of primary-labelled rows however short the history.

    Args:
        frame: the training table (any row order).
        splits: fractions or test days.
        data_end: end of the data (or ``--until``).
        label_columns: every label column trained; rows with none of them get slice -1.
        primary_column: the label whose rows set the cuts (default: any label).
        gap_days: the primary label's horizon when rows reaching into the test window are purged.

    Raises:
        ValueError: too few labelled rows or distinct times to cut four slices.
    """
    occ = _ns(frame[c.OCCURRED_AT])
    labelled = np.zeros(len(frame), dtype=bool)
    for col in label_columns:
        labelled |= frame[col].notna().to_numpy()
    primary = frame[primary_column].notna().to_numpy() if primary_column else labelled
    times = np.sort(occ[primary & labelled])
    if len(times) < 8:
        raise ValueError(f"only {len(times)} activities have a label: too few to split on time")
    if splits.test_days is not None:
        test_start = int(pd.Timestamp(data_end).value - pd.Timedelta(days=splits.test_days).value)
    else:
        test_start = int(times[min(int(len(times) * (1.0 - splits.test)), len(times) - 1)])
    before = times[times < test_start - pd.Timedelta(days=gap_days).value]
    if len(before) < 3:
        raise ValueError(
            f"only {len(before)} labelled activities fall before the test window (starting {_ts(test_start)})"
            + (f" less the {gap_days}-day label horizon" if gap_days else "")
            + ": too little history to train, validate and calibrate")
    head = splits.train + splits.validation + splits.calibration
    cuts = [
        int(before[min(int(len(before) * splits.train / head), len(before) - 1)]),
        int(before[min(int(len(before) * (splits.train + splits.validation) / head), len(before) - 1)]),
        test_start,
    ]
    if not (cuts[0] < cuts[1] < cuts[2]):
        raise ValueError(
            "labelled activities span too few distinct times to cut train/validation/calibration/test "
            f"slices (cuts at {', '.join(str(_ts(x)) for x in cuts)})"
        )
    slice_of_row = np.searchsorted(np.array(cuts, dtype=np.int64), occ, side="right").astype(np.int8)
    slice_of_row[~labelled] = -1
    first = int(np.sort(occ[labelled])[0])
    return SplitPlan(tuple(_ts(x) for x in cuts), _ts(first), pd.Timestamp(data_end), slice_of_row)


def label_masks(frame: pd.DataFrame, plan: SplitPlan, label: str, horizon_days: int,
                purge_before_test: bool) -> dict[str, np.ndarray]:
    """Row masks per slice for one label: labelled, not leaking, not purged.

    Rows flagged ``logged_after_outcome`` are left out of the outcome label everywhere.
    With ``purge_before_test``, a row before the test window whose horizon reaches into
    it is left out (its label was not known when a model deployed at test start was trained).
    """
    y = frame[LABELS[label]].to_numpy(dtype=np.float64, na_value=np.nan)
    usable = ~np.isnan(y)
    if label == "outcome" and LEAK_FLAG in frame.columns:
        usable &= ~frame[LEAK_FLAG].to_numpy(dtype=bool, na_value=False)
    if purge_before_test:
        reaches = _ns(frame[c.OCCURRED_AT]) + pd.Timedelta(days=horizon_days).value >= plan.test_start.value
        usable &= ~(reaches & (plan.slice_of_row < TEST))
    return {name: usable & (plan.slice_of_row == k) for k, name in enumerate(SLICES)}


def input_fingerprint(frame: pd.DataFrame, label_columns: list[str]) -> str:
    """sha256 over activity ids, times and labels of the training table (order-independent)."""
    cols = [col for col in [c.ACTIVITY_ID, c.OCCURRED_AT, *label_columns] if col in frame.columns]
    hashed = pd.util.hash_pandas_object(frame[cols], index=False).to_numpy()
    hashed = np.sort(hashed)
    return "sha256:" + hashlib.sha256(hashed.tobytes()).hexdigest()


def files_fingerprint(directory: Path) -> str:
    """sha256 over the dataset's table files (names and bytes)."""
    h = hashlib.sha256()
    for path in sorted(Path(directory).iterdir()):
        if path.is_file() and path.suffix in (".csv", ".parquet", ".json"):
            h.update(path.name.encode())
            with path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return "sha256:" + h.hexdigest()
