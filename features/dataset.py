"""Reading and writing datasets in the data contract (one file per table).

A :class:`Dataset` holds typed frames: contract columns get the dtypes of
:data:`features.contract.PANDAS_DTYPES`; custom fields become ``float64`` when every
non-empty value is numeric, ``string`` otherwise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from features import contract as c


@dataclass
class Dataset:
    """The tables of one dataset, typed. Absent optional tables are simply missing."""

    tables: dict[str, pd.DataFrame]
    custom_fields: dict[str, list[str]] = field(default_factory=dict)
    execution_time_fields: set[str] = field(default_factory=set)  # "table.column"
    source: Path | None = None

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
        return _as_string(values)
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
    """Custom field: numeric when every non-empty value parses as a number, else string."""
    if pd.api.types.is_bool_dtype(values):
        return values.astype("float64")
    if pd.api.types.is_numeric_dtype(values):
        return values.astype("float64")
    s = _as_string(values)
    numeric = pd.to_numeric(s, errors="coerce")
    if s.notna().sum() > 0 and numeric.notna().sum() == s.notna().sum():
        return numeric.astype("float64")
    return s


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
            out.to_csv(path, index=False, lineterminator="\n")
        written.append(path)
    if meta:
        p = directory / c.DATASET_META_FILE
        p.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(p)
    return written


def load_dataset(directory: Path) -> Dataset:
    """Read a dataset directory into typed frames.

    This strict reader raises ``ValueError`` on the first problem; use
    :func:`features.validation.validate_dataset` for a full report.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such dataset directory")
    tables: dict[str, pd.DataFrame] = {}
    custom: dict[str, list[str]] = {}
    for name in c.TABLES:
        path = table_path(directory, name)
        if path is None:
            continue
        raw = read_raw_table(path)
        tables[name] = coerce_table(name, raw)
        custom[name] = c.custom_columns(name, list(raw.columns))
    meta = read_meta(directory)
    return Dataset(tables, custom, set(meta.get("execution_time_fields", [])), directory)


def empty_table(name: str) -> pd.DataFrame:
    """A zero-row typed frame with the contract columns of ``name``."""
    spec = c.TABLES[name]
    return pd.DataFrame({col.name: pd.Series([], dtype=c.PANDAS_DTYPES[col.kind]) for col in spec.columns})


__all__ = [
    "Dataset",
    "coerce_column",
    "coerce_table",
    "empty_table",
    "infer_custom",
    "load_dataset",
    "read_raw_table",
    "table_path",
    "write_dataset",
]

