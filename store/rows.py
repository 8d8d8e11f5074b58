"""Conversion between contract rows (frames or request dicts) and stored SQL values.

Timestamps are stored as integer milliseconds since the epoch (UTC), the unit of the feature
code (``features.build``): a time read back is the time the features would have computed
from the original value. Missing values are NULL; custom fields travel as one JSON object.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd

from features import contract as c
from store.schema import CUSTOM, columns

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_NAT = np.iinfo(np.int64).min


def to_ms(value: Any) -> int | None:
    """A timestamp (aware or naive-UTC datetime, pandas Timestamp, ISO text, ms int) -> epoch ms."""
    if value is None:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        value = pd.Timestamp(value)
    if isinstance(value, pd.Timestamp):
        if value is pd.NaT:
            return None
        value = value.tz_localize("UTC") if value.tzinfo is None else value.tz_convert("UTC")
        return int(value.value // 1_000_000)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        delta = value - EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
    raise TypeError(f"not a timestamp: {type(value).__name__}")


def from_ms(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=int(ms))


def _plain(value: Any) -> Any:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def dict_values(table: str, row: dict[str, Any]) -> tuple:
    """One request row (a dict, timestamps as datetimes) -> the stored values of ``table``."""
    spec = c.TABLES[table]
    out: list[Any] = []
    for col in spec.columns:
        v = row.get(col.name)
        if v is None:
            out.append(None)
        elif col.kind == c.TIMESTAMP:
            out.append(to_ms(v))
        elif col.kind == c.BOOL:
            out.append(int(bool(v)))
        elif col.kind == c.FLOAT:
            out.append(float(v))
        elif col.kind == c.INT:
            out.append(int(v))
        else:
            out.append(str(v))
    known = set(spec.column_names)
    custom = {k: _plain(v) for k, v in row.items() if k not in known}
    custom = {k: v for k, v in custom.items() if v is not None}
    out.append(json.dumps(custom, separators=(",", ":"), sort_keys=True) if custom else None)
    return tuple(out)


def frame_values(table: str, frame: pd.DataFrame) -> list[tuple]:
    """A typed contract frame (``features.dataset``) -> stored values, one tuple per row (columnar, fast)."""
    spec = c.TABLES[table]
    n = len(frame)
    cols: list[list[Any]] = []
    for col in spec.columns:
        if col.name not in frame.columns:
            cols.append([None] * n)
            continue
        v = frame[col.name]
        if col.kind == c.TIMESTAMP:
            ns = v.to_numpy(dtype="datetime64[ns]", na_value=np.datetime64("NaT")).astype(np.int64)
            ms = (ns // 1_000_000).astype(object)
            ms[ns == _NAT] = None
            cols.append(ms.tolist())
        elif col.kind in (c.FLOAT,):
            a = v.to_numpy(dtype=np.float64, na_value=np.nan)
            o = a.astype(object)
            o[np.isnan(a)] = None
            cols.append(o.tolist())
        elif col.kind in (c.INT, c.BOOL):
            a = v.to_numpy(dtype=np.float64, na_value=np.nan)
            missing = np.isnan(a)
            o = np.where(missing, 0, a).astype(np.int64).astype(object)
            o[missing] = None
            cols.append(o.tolist())
        else:
            cols.append(v.to_numpy(dtype=object, na_value=None).tolist())
    custom_cols = sorted(c.custom_columns(table, list(frame.columns)))
    if custom_cols:
        # each value's '"name":value' fragment once, then joined per row (what json.dumps of the row's
        # dict with sort_keys would write, without building a dict per row)
        parts = []
        for k in custom_cols:
            name = json.dumps(k) + ":"
            v = frame[k]
            if pd.api.types.is_string_dtype(v.dtype):  # the usual case: text, no conversion per value
                dumps = json.dumps
                parts.append([None if x is None else name + dumps(x) for x in v.to_numpy(dtype=object, na_value=None)])
            else:
                parts.append([None if (x := _plain(u)) is None else name + json.dumps(x, separators=(",", ":"))
                              for u in v.to_numpy(dtype=object)])
        if len(parts) == 1:
            cols.append([None if p is None else "{" + p + "}" for p in parts[0]])
        else:
            cols.append([("{" + ",".join(p for p in row if p is not None) + "}") if any(p is not None for p in row)
                         else None for row in zip(*parts, strict=True)])
    else:
        cols.append([None] * n)
    return list(zip(*cols, strict=True)) if n else []


def row_dict(table: str, values: tuple) -> dict[str, Any]:
    """Stored values -> a request row: contract columns typed, custom fields merged, missing left out."""
    out: dict[str, Any] = {}
    for col, v in zip(c.TABLES[table].columns, values, strict=False):
        if v is None:
            continue
        if col.kind == c.TIMESTAMP:
            out[col.name] = from_ms(v)
        elif col.kind == c.BOOL:
            out[col.name] = bool(v)
        elif col.kind == c.FLOAT:
            out[col.name] = float(v)
        else:
            out[col.name] = v
    custom = values[len(c.TABLES[table].columns)] if len(values) > len(c.TABLES[table].columns) else None
    if custom:
        for k, v in json.loads(custom).items():
            out.setdefault(k, v)
    return out


_PLAIN_BOOLS = {t: {i for i, col in enumerate(spec.columns) if col.kind == c.BOOL} for t, spec in c.TABLES.items()}
_NAMES = {t: spec.column_names for t, spec in c.TABLES.items()}


def row_plain(table: str, values: tuple) -> dict[str, Any]:
    """Stored values -> the plain data the feature code reads (``features.build.serving_tables``):
    timestamps stay epoch milliseconds (which it takes as such), booleans are booleans, custom
    fields merged, missing left out. The fast form of :func:`row_dict` for scoring by id."""
    names = _NAMES[table]
    bools = _PLAIN_BOOLS[table]
    out = {names[i]: (bool(v) if i in bools else v) for i, v in enumerate(values[:len(names)]) if v is not None}
    custom = values[len(names)] if len(values) > len(names) else None
    if custom:
        for k, v in json.loads(custom).items():
            out.setdefault(k, v)
    return out


def rows_frame(table: str, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Request rows -> a typed contract frame (``features.dataset.coerce_table``)."""
    from features.dataset import coerce_table, empty_table

    if not rows:
        return empty_table(table)
    frame = pd.DataFrame(rows)
    for col in frame.columns:
        if c.TABLES[table].kind(col) == c.TIMESTAMP:
            frame[col] = pd.to_datetime(frame[col], utc=True)
    return coerce_table(table, frame)


__all__ = ["CUSTOM", "columns", "dict_values", "frame_values", "from_ms", "row_dict", "row_plain", "rows_frame",
           "to_ms"]
