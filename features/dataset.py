"""Reading and writing datasets in the data contract (one file per table).

A :class:`Dataset` holds typed frames: contract columns get the dtypes of
:data:`features.contract.PANDAS_DTYPES`; custom fields become ``float64`` when every
non-empty value is numeric (or ``true``/``false``, read as 1/0), ``string`` otherwise.

:func:`load_dataset` checks the files while it parses them (the checks live in
:mod:`features.validation`) and raises :class:`DatasetError`, carrying the full
:class:`ValidationReport`, when the dataset breaks the contract.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features import contract as c

logger = logging.getLogger(__name__)

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Issue:
    """One problem found in a dataset, located as precisely as the check allows.

    Attributes:
        severity: ``"error"`` (the dataset breaks the contract) or ``"warning"``
            (legal but suspicious).
        file: the file name (``activities.csv``), or the directory for dataset-level problems.
        message: what is wrong, with the offending value, in words a user can act on.
        column: the column concerned, if any.
        row: 1-based data row (the header is not a row), if the issue is about one row.
        line: the line of a CSV file where that row starts (usually ``row + 1``).
        id: the offending id or value, when the problem is about an id.
        code: machine-readable kind of problem (``unparsable_timestamp``, ``duplicate_id``, ...).
        count: how many rows this issue stands for: 1 for one row, more for a line that
            summarises rows not listed one by one (``and 2,341 more rows ...``).
    """

    severity: str
    file: str
    message: str
    column: str | None = None
    row: int | None = None
    line: int | None = None
    id: str | None = None
    code: str = ""
    count: int = 1

    @property
    def location(self) -> str:
        """Where the issue is within its file: ``row 17 (line 18), column occurred_at``."""
        parts = []
        if self.row is not None:
            parts.append(f"row {self.row}" + (f" (line {self.line})" if self.line is not None else ""))
        if self.column is not None:
            parts.append(f"column {self.column}")
        return ", ".join(parts)

    def __str__(self) -> str:
        where = ", ".join(p for p in (self.file, self.location) if p)
        return f"{where}: {self.message}"


@dataclass
class ValidationReport:
    """Everything a check of a dataset directory found, plus what it read.

    Attributes:
        directory: the dataset directory.
        errors: problems that make the dataset unusable, in file order.
        warnings: suspicious but legal data.
        files: table name -> the file it was read from (``activities.csv``).
        row_counts: table name -> number of data rows.
        custom_fields: table name -> {column: ``"numeric"`` or ``"categorical"``}.
        ignored_files: files in the directory that are not tables of the contract.
    """

    directory: Path
    errors: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    row_counts: dict[str, int] = field(default_factory=dict)
    custom_fields: dict[str, dict[str, str]] = field(default_factory=dict)
    ignored_files: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings allowed)."""
        return not self.errors

    @property
    def n_errors(self) -> int:
        """Number of problems, counting every row of summarised lines."""
        return sum(i.count for i in self.errors)

    @property
    def n_warnings(self) -> int:
        return sum(i.count for i in self.warnings)

    @property
    def error_files(self) -> list[str]:
        """Files with at least one error, in report order."""
        return list(dict.fromkeys(i.file for i in self.errors))

    def by_file(self, issues: list[Issue] | None = None) -> dict[str, list[Issue]]:
        """Issues (the errors by default) grouped by file, in report order."""
        out: dict[str, list[Issue]] = {}
        for issue in self.errors if issues is None else issues:
            out.setdefault(issue.file, []).append(issue)
        return out

    def headline(self) -> str:
        """``3 errors in 2 files`` (or ``no errors``)."""
        if not self.errors:
            return "no errors"
        n, m = self.n_errors, len(self.error_files)
        return f"{n:,} error{'s' if n != 1 else ''} in {m} file{'s' if m != 1 else ''}"


class DatasetError(ValueError):
    """A dataset breaks the data contract; ``report`` holds every problem found."""

    def __init__(self, report: ValidationReport, max_listed: int = 10) -> None:
        self.report = report
        lines = [f"{report.directory}: {report.headline()}"]
        lines += [f"  {issue}" for issue in report.errors[:max_listed]]
        if len(report.errors) > max_listed:
            lines.append(f"  ... {len(report.errors) - max_listed} more lines "
                         f"(activity-scorer validate --data {report.directory} lists them all)")
        super().__init__("\n".join(lines))


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """The dataset directory does not exist (also a ``FileNotFoundError``)."""


@dataclass
class Dataset:
    """The tables of one dataset, typed. Absent optional tables are simply missing."""

    tables: dict[str, pd.DataFrame]
    custom_fields: dict[str, list[str]] = field(default_factory=dict)
    execution_time_fields: set[str] = field(default_factory=set)  # "table.column"
    source: Path | None = None
    warnings: list[Issue] = field(default_factory=list)  # set by load_dataset

    def get(self, name: str) -> pd.DataFrame | None:
        return self.tables.get(name)

    def __getitem__(self, name: str) -> pd.DataFrame:
        return self.tables[name]

    def __contains__(self, name: str) -> bool:
        return name in self.tables


def table_path(directory: Path, name: str) -> Path | None:
    """The file holding table ``name`` in ``directory`` (Parquet preferred), or None."""
    for suffix in (".parquet", ".csv"):
        p = directory / f"{name}{suffix}"
        if p.exists():
            return p
    return None


def coerce_column(values: pd.Series, kind: str) -> pd.Series:
    """Convert a column to the dtype of a contract kind (values must already be valid)."""
    if kind == c.STR:
        return _as_string(_integral_floats_as_ints(values))
    if kind == c.TIMESTAMP:
        return pd.to_datetime(values, utc=True, format="ISO8601").astype(c.TIMESTAMP_DTYPE)
    if kind == c.FLOAT:
        return pd.to_numeric(values).astype("float64")
    if kind == c.INT:
        return pd.to_numeric(values).astype("Int64")
    if kind == c.BOOL:
        return _as_bool(values)
    raise ValueError(f"unknown column kind {kind!r}")


def coerce_table(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Typed copy of a contract table: contract columns converted, custom fields inferred."""
    spec = c.TABLES[name]
    out = {}
    for col in frame.columns:
        kind = spec.kind(col)
        out[col] = coerce_column(frame[col], kind) if kind else infer_custom(frame[col])
    return pd.DataFrame(out, index=pd.RangeIndex(len(frame)))


def infer_custom(values: pd.Series) -> pd.Series:
    """Custom field: numeric when every non-empty value is a number (or true/false), else string."""
    if pd.api.types.is_bool_dtype(values):
        return values.astype("float64")
    if pd.api.types.is_numeric_dtype(values):
        return values.astype("float64")
    s = _as_string(values)
    n_values = s.notna().sum()
    numeric = pd.to_numeric(s, errors="coerce")
    if n_values > 0 and numeric.notna().sum() == n_values:
        return numeric.astype("float64")
    # true/false text (how write_dataset stores booleans in CSV) is a 0/1 number, as a Parquet bool is.
    low = s.str.lower()
    if n_values > 0 and low.isin(["true", "false"]).sum() == n_values:
        return (low == "true").astype("float64").where(s.notna())
    return s


def _integral_floats_as_ints(values: pd.Series) -> pd.Series:
    """Whole floats as integers, so a numeric id read as float (``17.0``) becomes ``"17"``."""
    if pd.api.types.is_float_dtype(values):
        finite = values.dropna()
        arr = finite.to_numpy(dtype="float64")
        if np.isfinite(arr).all() and (arr == np.round(arr)).all() and (np.abs(arr) < 2**53).all():
            return values.astype("Int64")
    return values


def _as_string(values: pd.Series) -> pd.Series:
    s = values.astype("string")
    s = s.str.strip()
    return s.mask(s == "")


_TRUE = {"true", "1", "yes", "t", "y"}
_FALSE = {"false", "0", "no", "f", "n"}


def _as_bool(values: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(values):
        return values.astype("boolean")
    s = _as_string(values).str.lower()
    out = pd.Series(pd.NA, index=values.index, dtype="boolean")
    out[s.isin(_TRUE).fillna(False).to_numpy(bool)] = True
    out[s.isin(_FALSE).fillna(False).to_numpy(bool)] = False
    return out


def read_raw_table(path: Path) -> pd.DataFrame:
    """Read one table file as written, every CSV value as a string (ids stay ids)."""
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8")


def read_meta(directory: Path) -> dict:
    p = directory / c.DATASET_META_FILE
    if not p.exists():
        return {}
    return json.loads(p.read_text(encoding="utf-8"))


def write_dataset(
    tables: dict[str, pd.DataFrame] | Dataset,
    directory: Path,
    fmt: str = "parquet",
    meta: dict | None = None,
) -> list[Path]:
    """Write each table as ``NAME.parquet`` or ``NAME.csv``; returns the files written.

    Timestamps are written as ISO 8601 UTC (``2026-03-02T15:04:00Z``) in CSV.
    """
    if isinstance(tables, Dataset):
        if meta is None and tables.execution_time_fields:
            meta = {"execution_time_fields": sorted(tables.execution_time_fields)}
        tables = tables.tables
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"format must be 'parquet' or 'csv', not {fmt!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame in tables.items():
        if name not in c.TABLES:
            raise ValueError(f"{name!r} is not a table of the data contract")
        path = directory / f"{name}.{fmt}"
        other = directory / f"{name}.{'csv' if fmt == 'parquet' else 'parquet'}"
        if other.exists():
            other.unlink()
        if fmt == "parquet":
            frame.to_parquet(path, index=False)
        else:
            csv_text_frame(frame).to_csv(path, index=False, lineterminator="\n")
        written.append(path)
    if meta:
        p = directory / c.DATASET_META_FILE
        p.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(p)
    return written


def csv_text_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` as :func:`write_dataset` puts it in CSV: timestamps ISO 8601 UTC, booleans true/false.

    Row by row (no value depends on another row), so a table written in parts, each part
    through this and appended, is the file written at once.
    """
    out = frame.copy()
    for col in out.columns:
        if isinstance(out[col].dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(out[col]):
            ts = out[col]
            text = ts.dt.strftime("%Y-%m-%dT%H:%M:%S")
            frac = ts.dt.microsecond.to_numpy()
            text = text.where(~(frac > 0), ts.dt.strftime("%Y-%m-%dT%H:%M:%S.%f"))
            out[col] = (text + "Z").where(ts.notna(), None)
        elif pd.api.types.is_bool_dtype(out[col]):
            out[col] = out[col].map({True: "true", False: "false"}, na_action="ignore")
    return out


def load_dataset(directory: Path, *, late_log_days: float | None = None, now: pd.Timestamp | None = None) -> Dataset:
    """Read a dataset directory into typed frames, checking it against the contract on the way.

    The files are parsed once; every problem of every file is collected before failing.

    Args:
        directory: the dataset directory (one ``NAME.csv`` or ``NAME.parquet`` per table).
        late_log_days: warn about activities logged more than this many days after they
            occurred (default :data:`features.validation.DEFAULT_LATE_LOG_DAYS`).
        now: reference time for the future-timestamp warning (default: the current time).

    Returns:
        The typed dataset; ``dataset.warnings`` lists suspicious but legal data.

    Raises:
        DatasetNotFoundError: ``directory`` does not exist (a ``FileNotFoundError`` too).
        DatasetError: the dataset breaks the contract; ``err.report`` lists every problem.
    """
    from features.validation import DEFAULT_LATE_LOG_DAYS, parse_dataset

    directory = Path(directory)
    days = DEFAULT_LATE_LOG_DAYS if late_log_days is None else late_log_days
    dataset, report = parse_dataset(directory, late_log_days=days, now=now)
    if dataset is None:
        if not directory.is_dir():
            raise DatasetNotFoundError(report)
        raise DatasetError(report)
    if dataset.warnings:
        logger.warning("dataset %s: %d warning line(s) (activity-scorer validate --data %s lists them)",
                       directory, len(dataset.warnings), directory)
    return dataset


def empty_table(name: str) -> pd.DataFrame:
    """A zero-row typed frame with the contract columns of ``name``."""
    spec = c.TABLES[name]
    return pd.DataFrame({col.name: pd.Series([], dtype=c.PANDAS_DTYPES[col.kind]) for col in spec.columns})


__all__ = [
    "Dataset",
    "DatasetError",
    "DatasetNotFoundError",
    "Issue",
    "ValidationReport",
    "coerce_column",
    "coerce_table",
    "csv_text_frame",
    "empty_table",
    "infer_custom",
    "load_dataset",
    "read_raw_table",
    "table_path",
    "write_dataset",
]

