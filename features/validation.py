"""Checking a dataset directory against the data contract, and the ``validate`` command.

One pass reads every table file, parses each contract column into its typed dtype and
collects *all* problems of *all* files, so a user fixes an export in one round trip.
:func:`parse_dataset` returns the typed :class:`~features.dataset.Dataset` (when there is
no error) together with the :class:`~features.dataset.ValidationReport`;
:func:`features.dataset.load_dataset` and :func:`validate_dataset` are thin wrappers.

Every issue names the file, the column and the 1-based data row (and, for CSV, the file
line) or the offending id. A problem that hits many rows is listed with a few examples
and one ``and N more rows`` line, so a million bad rows cannot flood a terminal.

Errors (the dataset is refused):

* the directory, the ``activities`` table, or both outcome sources (``deal_stages`` and
  ``outcomes``) are missing; a required column is missing;
* a file cannot be read (not UTF-8, ragged CSV lines, corrupt Parquet); a column name
  appears twice in a CSV header; ``dataset.json`` is not valid;
* a value cannot be parsed as its contract type: timestamps (ISO 8601, within
  1677..2262), numbers, integers (``stage_order = 2.5``), booleans
  (``true/false/1/0/yes/no/t/f/y/n``); a Parquet column whose type cannot be coerced;
* a timestamp column mixes values with a zone and values without one;
* a required value is empty; a key id (activities, deals, contacts, accounts, reps) is
  duplicated; ``personalization`` is outside 0..1; ``duration_s`` is negative;
* a ``responses`` row references an activity_id that is not in ``activities``, or a
  ``deal_stages`` / ``outcomes`` row a deal_id that is not in ``deals`` (checked only
  when a ``deals`` table exists). These rows feed the labels, so an orphan is an error.

Warnings (the dataset is accepted):

* activities logged long after they occurred (``logged_at - occurred_at`` above
  :data:`DEFAULT_LATE_LOG_DAYS`), or logged before they occurred; timestamps in the future;
* an activity deal_id (or any other reference: rep, contact, account) unknown to the
  table it points to. Decision: a warning, not an error, because the activity still gets
  its labels from ``deal_stages`` / ``outcomes`` (keyed by deal_id); only the attributes of
  the deal are missing, which is common when a CRM export filters the deals table;
* deals without any stage row (when ``deal_stages`` exists); response, seniority or
  direction values outside the contract's lists; tables with no rows; a table present as
  both CSV and Parquet; custom fields whose name looks like a misspelt contract column.

Files that are not tables (``ground_truth.parquet``, ``README.md``) are ignored and
listed; ``dataset.json`` is read as metadata.
"""

from __future__ import annotations

import csv
import difflib
import json
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features import contract as c
from features.dataset import (
    _FALSE,
    _TRUE,
    ERROR,
    WARNING,
    Dataset,
    DatasetError,
    DatasetNotFoundError,
    Issue,
    ValidationReport,
    _as_string,
    _integral_floats_as_ints,
    infer_custom,
    table_path,
)

logger = logging.getLogger(__name__)

DEFAULT_LATE_LOG_DAYS = 7.0
DEFAULT_MAX_EXAMPLES = 5

# References whose orphans are errors: these rows define the labels. Other references warn.
LABEL_REFERENCES = frozenset({
    (c.RESPONSES, c.ACTIVITY_ID),
    (c.DEAL_STAGES, c.DEAL_ID),
    (c.OUTCOMES, c.DEAL_ID),
})

# Range checks run with pandera on the typed frames: (table, column) -> (low, high, wording).
# (table, column) -> (low, high, rule, what the "and N more rows" line says of the others).
RANGE_CHECKS: dict[tuple[str, str], tuple[float | None, float | None, str, str]] = {
    (c.ACTIVITIES, c.PERSONALIZATION): (0.0, 1.0, "must be between 0 and 1", "outside 0..1"),
    (c.ACTIVITIES, c.DURATION_S): (0.0, None, "must not be negative", "that is negative"),
}

# Columns whose values the contract lists; other values are legal but warned about.
KNOWN_VALUES: dict[tuple[str, str], tuple[frozenset[str], str]] = {
    (c.RESPONSES, c.RESPONSE): (c.KNOWN_RESPONSES, "it counts as neither a meaningful nor a negative output"),
    (c.CONTACTS, c.SENIORITY): (frozenset(c.SENIORITIES), "it is treated as an unknown seniority"),
    (c.ACTIVITIES, c.DIRECTION): (frozenset(c.DIRECTIONS), "it is used as a category of its own"),
}

_TS_MIN = pd.Timestamp.min.tz_localize("UTC")
_TS_MAX = pd.Timestamp.max.tz_localize("UTC")
# A value carries a zone when a time part ends in Z or a numeric offset (a date alone has none).
_ZONED = r"[Tt ]\d[\d:.,]*\s*(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$"
_ISO_START = r"^[+-]?\d{4}"
_BOOL_WORDS = "true/false, 1/0, yes/no, t/f or y/n"


# --- issue collection ------------------------------------------------------------------


class _Source:
    """One table file being read: its name, format and the CSV row -> line mapping."""

    def __init__(self, table: str, path: Path) -> None:
        self.table = table
        self.path = path
        self.file = path.name
        self.is_csv = path.suffix == ".csv"
        self.n_rows = 0
        self.arrow_types: dict[str, object] = {}  # Parquet column -> its pyarrow DataType
        self._simple: bool | None = None
        self._record_lines: np.ndarray | None = None

    def lines(self, positions: Sequence[int]) -> list[int | None]:
        """CSV line where each 0-based data row starts (None for Parquet)."""
        if not self.is_csv:
            return [None] * len(positions)
        if self._simple is None:
            # One physical line per row (the usual case): line = row + 1, no parsing needed.
            self._simple = _count_lines(self.path) == self.n_rows + 1
        if self._simple:
            return [int(p) + 2 for p in positions]
        if self._record_lines is None:
            self._record_lines = _csv_record_lines(self.path)
        lines = self._record_lines
        return [int(lines[p]) if p < len(lines) else None for p in positions]


def _count_lines(path: Path) -> int:
    n, last = 0, b"\n"
    with path.open("rb") as f:
        while chunk := f.read(1 << 24):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (0 if last == b"\n" else 1)


def _is_blank(record: list[str]) -> bool:
    return not record or (len(record) == 1 and not record[0].strip())


def _csv_records(path: Path):
    """(first line, fields) of every non-blank CSV record, header included, like pandas reads them."""
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as f:
        reader = csv.reader(f)
        prev = 0
        for record in reader:
            start, prev = prev + 1, reader.line_num
            if not _is_blank(record):
                yield start, record


def _csv_record_lines(path: Path) -> np.ndarray:
    """Start line of every data row (rows spanning several lines, blank lines skipped)."""
    try:
        starts = [start for start, _ in _csv_records(path)]
    except csv.Error:
        return np.array([], dtype=np.int64)
    return np.array(starts[1:], dtype=np.int64)


class _Collector:
    """Accumulates issues, listing at most ``max_examples`` per (file, column, problem)."""

    def __init__(self, max_examples: int) -> None:
        self.max = max(1, max_examples)
        self.errors: list[Issue] = []
        self.warnings: list[Issue] = []

    def add(self, issue: Issue) -> None:
        (self.errors if issue.severity == ERROR else self.warnings).append(issue)

    def issue(self, severity: str, file: str, message: str, **where) -> None:
        self.add(Issue(severity, file, message, **where))

    def rows(
        self,
        src: _Source,
        severity: str,
        code: str,
        column: str | None,
        mask,
        describe: Callable[[int], str],
        more: str,
        id_of: Callable[[int], str | None] | None = None,
    ) -> int:
        """One issue per offending row (first few), then an ``and N more rows`` line."""
        positions = np.flatnonzero(np.asarray(mask, dtype=bool))
        if not len(positions):
            return 0
        shown = positions[: self.max]
        for pos, line in zip(shown, src.lines(shown)):
            p = int(pos)
            self.add(Issue(severity, src.file, describe(p), column=column, row=p + 1, line=line,
                           id=id_of(p) if id_of else None, code=code))
        rest = len(positions) - len(shown)
        if rest:
            self.add(Issue(severity, src.file, f"and {rest:,} more row{'s' if rest > 1 else ''} {more}",
                           column=column, code=code, count=rest))
        return len(positions)

    def values(
        self,
        src: _Source,
        severity: str,
        code: str,
        column: str,
        values: pd.Series,
        mask,
        describe: Callable[[object, int, str], str],
        more: str,
        count: Callable[[int], int] = lambda n: n,
    ) -> int:
        """One issue per distinct offending value (first few), located at its first row.

        ``describe(value, n_rows, where)`` words the issue; ``where`` lists example rows.
        """
        positions = np.flatnonzero(np.asarray(mask, dtype=bool))
        if not len(positions):
            return 0
        codes, uniques = pd.factorize(values.iloc[positions], sort=False)  # order of first appearance
        counts = np.bincount(codes, minlength=len(uniques))
        for k in range(min(len(uniques), self.max)):
            rows_k = positions[codes == k]
            examples = rows_k[:3]
            lines = src.lines(examples)
            where = _rows_text(examples, lines, len(rows_k))
            self.add(Issue(severity, src.file, describe(uniques[k], len(rows_k), where), column=column,
                           row=int(examples[0]) + 1, line=lines[0], id=str(uniques[k]), code=code,
                           count=count(int(len(rows_k)))))
        if len(uniques) > self.max:
            rest_values = len(uniques) - self.max
            rest_rows = int(counts[self.max:].sum())
            self.add(Issue(severity, src.file, f"and {rest_values:,} more {more} in {rest_rows:,} rows",
                           column=column, code=code,
                           count=sum(count(int(n)) for n in counts[self.max:])))
        return len(positions)


def _rows_text(positions: Sequence[int], lines: Sequence[int | None], total: int) -> str:
    rows = ", ".join(str(int(p) + 1) for p in positions)
    text = f"row{'s' if total > 1 else ''} {rows}"
    if lines and lines[0] is not None:
        text += f" (line{'s' if len(lines) > 1 else ''} {', '.join(str(x) for x in lines)})"
    if total > len(positions):
        text += f" and {total - len(positions):,} more"
    return text


def _show(value: object, limit: int = 60) -> str:
    """A value for a message: text quoted (so blanks and quotes show), numbers as they are."""
    text = str(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return repr(text) if isinstance(value, str) else text


def _isin(values: pd.Series, known) -> np.ndarray:
    """``values.isin(known)`` as a numpy mask; text columns go through Arrow (pandas' path is slow)."""
    if isinstance(values.dtype, pd.StringDtype) and values.dtype.storage == "pyarrow":
        import pyarrow as pa
        import pyarrow.compute as pc

        try:
            column = pa.array(values)
            value_set = pa.array(pd.Series(known, dtype="string").dropna().unique()).cast(column.type)
            return np.asarray(pc.is_in(column, value_set=value_set).to_numpy(zero_copy_only=False), dtype=bool)
        except (pa.ArrowException, TypeError, ValueError):  # pragma: no cover - fall back to pandas
            pass
    return values.isin(pd.Series(known).dropna().unique()).fillna(False).to_numpy(bool)


def _fmt_ts(ts: pd.Timestamp) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- reading files -----------------------------------------------------------------------


def _read_csv(path: Path, **kwargs) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8", **kwargs)


def _read_table(src: _Source, out: _Collector) -> pd.DataFrame | None:
    """The file as written (CSV values as text); read problems become issues."""
    if not src.is_csv:
        return _read_parquet(src, out)
    kwargs: dict = {}
    for _attempt in range(3):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", pd.errors.ParserWarning)
                raw = _read_csv(src.path, **kwargs)
            if not isinstance(raw.index, pd.RangeIndex):
                # pandas turns the first column into an index when the first data row has an extra field
                raise pd.errors.ParserError("a data row has more fields than the header")
            break
        except pd.errors.EmptyDataError:
            out.issue(ERROR, src.file, "the file is empty; it needs at least a header row", code="unreadable")
            return None
        except UnicodeDecodeError:
            if "encoding_errors" in kwargs:
                out.issue(ERROR, src.file, "the file is not valid UTF-8; save it as UTF-8", code="encoding")
                return None
            _report_bad_utf8(src, out)
            kwargs["encoding_errors"] = "replace"
        except pd.errors.ParserError as err:
            width = None if "on_bad_lines" in kwargs else _report_ragged_lines(src, out)
            if width is None:
                out.issue(ERROR, src.file, f"cannot read this CSV file: {err}", code="unreadable")
                return None
            kwargs.update(engine="python", index_col=False, on_bad_lines=lambda fields, n=width: fields[:n])
        except OSError as err:
            out.issue(ERROR, src.file, f"cannot read this file: {err.strerror or err}", code="unreadable")
            return None
    else:  # pragma: no cover - each branch above either breaks, returns or changes kwargs once
        return None
    _check_header(src, out)
    return raw


def _report_bad_utf8(src: _Source, out: _Collector) -> None:
    bad: list[tuple[int, int, int]] = []
    n_bad = 0
    with src.path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as err:
                n_bad += 1
                if len(bad) < out.max:
                    bad.append((number, err.start + 1, line[err.start]))
    for number, col, byte in bad:
        out.issue(ERROR, src.file, f"line {number}, character {col}: byte 0x{byte:02X} is not UTF-8; "
                  "save the file as UTF-8", line=number, code="encoding")
    if n_bad > len(bad):
        out.issue(ERROR, src.file, f"and {n_bad - len(bad):,} more lines that are not UTF-8",
                  code="encoding", count=n_bad - len(bad))


def _report_ragged_lines(src: _Source, out: _Collector) -> int | None:
    """Report rows with more fields than the header; returns the header width (None if none found)."""
    width, bad, n_bad, row = None, [], 0, 0
    try:
        for start, record in _csv_records(src.path):
            if width is None:
                width = len(record)
                continue
            row += 1
            if len(record) > width:
                n_bad += 1
                if len(bad) < out.max:
                    bad.append((row, start, len(record)))
    except csv.Error:
        return None
    if not n_bad:
        return None
    for row, line, n in bad:
        out.issue(ERROR, src.file, f"has {n} fields but the header has {width}; quote values that contain commas",
                  row=row, line=line, code="ragged_line")
    if n_bad > len(bad):
        out.issue(ERROR, src.file, f"and {n_bad - len(bad):,} more rows with too many fields",
                  code="ragged_line", count=n_bad - len(bad))
    return width


def _check_header(src: _Source, out: _Collector) -> None:
    try:
        header = next(iter(_csv_records(src.path)), (0, []))[1]
    except csv.Error:
        return
    seen: dict[str, int] = {}
    for i, name in enumerate(header, start=1):
        if name in seen:
            out.issue(ERROR, src.file, f"column name {name!r} appears twice in the header (columns {seen[name]} "
                      f"and {i}); the second is read as {name}.1", column=name, line=1, code="duplicate_column")
        else:
            seen[name] = i


def _read_parquet(src: _Source, out: _Collector) -> pd.DataFrame | None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        raw = pd.read_parquet(src.path)
        src.arrow_types = {f.name: f.type for f in pq.read_schema(src.path)}
    except (OSError, ValueError, pa.ArrowException) as err:
        out.issue(ERROR, src.file, f"cannot read this Parquet file: {err}", code="unreadable")
        return None
    if any(n is not None for n in raw.index.names):
        raw = raw.reset_index()  # a named index was written as data: keep it as columns
    return raw.reset_index(drop=True)


# --- parsing columns --------------------------------------------------------------------


def _family(values: pd.Series) -> str:
    """What a column holds: text, integer, float, bool, datetime, date, empty or other."""
    dtype = values.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        values, dtype = values.astype(object), np.dtype(object)
    if dtype == object:
        inferred = pd.api.types.infer_dtype(values, skipna=True)
        return {
            "string": "text", "empty": "empty", "integer": "integer", "floating": "float",
            "mixed-integer-float": "float", "decimal": "float", "boolean": "bool", "date": "date",
            "datetime": "datetime", "datetime64": "datetime", "mixed-integer": "text", "mixed": "text",
        }.get(inferred, "other")
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "integer"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if isinstance(dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(dtype):
        return "datetime"
    if pd.api.types.is_string_dtype(dtype):
        return "text"
    return "other"


@dataclass
class _Column:
    """A parsed contract column: typed values and which raw values were empty."""

    values: pd.Series
    missing: np.ndarray


def _na_column(n: int, kind: str, missing: bool) -> _Column:
    """An all-missing typed column (``missing``: whether its raw values were empty)."""
    values = pd.Series(index=pd.RangeIndex(n), dtype=c.PANDAS_DTYPES[kind])
    return _Column(values, np.full(n, missing, dtype=bool))


_ACCEPTS = {
    c.STR: {"text", "integer", "float", "bool", "empty"},
    c.TIMESTAMP: {"text", "datetime", "date", "empty"},
    c.FLOAT: {"text", "integer", "float", "bool", "empty"},
    c.INT: {"text", "integer", "float", "empty"},
    c.BOOL: {"text", "bool", "integer", "float", "empty"},
}
_KIND_WORDS = {c.STR: "text", c.TIMESTAMP: "a timestamp", c.FLOAT: "a number", c.INT: "an integer",
               c.BOOL: "a boolean"}


def _is_nested_or_binary(arrow_type) -> bool:
    import pyarrow as pa

    return arrow_type is not None and (pa.types.is_nested(arrow_type) or pa.types.is_binary(arrow_type)
                                       or pa.types.is_large_binary(arrow_type))


def _parse_column(src: _Source, col: str, kind: str, raw: pd.Series, out: _Collector) -> _Column:
    arrow_type = src.arrow_types.get(col)
    family = "other" if _is_nested_or_binary(arrow_type) else _family(raw)
    n = len(raw)
    if family not in _ACCEPTS[kind]:
        stored = str(arrow_type) if arrow_type is not None else str(raw.dtype)
        hint = {c.TIMESTAMP: "store ISO 8601 text or a Parquet timestamp"}.get(kind, f"store it as {_KIND_WORDS[kind]}")
        out.issue(ERROR, src.file, f"has type {stored}, which cannot be read as {_KIND_WORDS[kind]}; {hint}",
                  column=col, code="wrong_type")
        return _na_column(n, kind, missing=False)
    if family == "empty":
        return _na_column(n, kind, missing=True)
    if kind == c.STR:
        values = _as_string(_integral_floats_as_ints(raw))
        return _Column(values, values.isna().to_numpy(bool))
    if family in ("text", "date"):
        text = _as_string(raw)
        return _PARSE_TEXT[kind](src, col, text, out)
    if kind == c.TIMESTAMP:
        return _timestamps_from_datetimes(src, col, raw, out)
    if kind == c.BOOL:
        return _bools_from_numbers(src, col, raw, out)
    missing = raw.isna().to_numpy(bool)
    source = raw.astype("boolean").astype("Int64") if family == "bool" else raw
    numbers = pd.to_numeric(source, errors="coerce")
    numbers = pd.Series(np.asarray(numbers.to_numpy(dtype="float64", na_value=np.nan)), index=raw.index)
    return _numbers(src, col, kind, numbers, missing, raw, out)


def _timestamps_from_text(src: _Source, col: str, text: pd.Series, out: _Collector) -> _Column:
    missing = text.isna().to_numpy(bool)
    looks_iso = text.str.contains(_ISO_START, regex=True).fillna(False).to_numpy(bool)
    parsed = pd.to_datetime(text.where(looks_iso), utc=True, format="ISO8601", errors="coerce")
    unparsed = ~missing & parsed.isna().to_numpy(bool)
    out.rows(src, ERROR, "unparsable_timestamp", col, unparsed,
             lambda p: f"cannot parse {_show(text.iloc[p])} as a timestamp; use ISO 8601 "
                       f"like 2026-03-01T14:30:00Z",
             "with a value that is not a timestamp")
    parsed = _check_timestamp_range(src, col, parsed, text, out)
    ok = ~missing & ~unparsed
    zoned = text.str.contains(_ZONED, regex=True).fillna(False).to_numpy(bool) & ok
    naive = ok & ~zoned
    n_zoned, n_naive = int(zoned.sum()), int(naive.sum())
    if n_zoned and n_naive:
        minority, majority = (naive, n_zoned) if n_naive <= n_zoned else (zoned, n_naive)
        has, other = ("has no zone", "carry one (Z or an offset)") if minority is naive else \
            ("carries a zone", "have none")
        out.rows(src, ERROR, "mixed_zones", col, minority,
                 lambda p: f"{_show(text.iloc[p])} {has} while {majority:,} other values of this column "
                           f"{other}; write every timestamp with a zone, or none (then UTC is assumed)",
                 f"whose timestamp {has} in a column of timestamps that {other}")
    return _Column(parsed, missing)


def _check_timestamp_range(src, col, parsed: pd.Series, shown: pd.Series, out: _Collector) -> pd.Series:
    outside = (parsed.notna() & ((parsed < _TS_MIN) | (parsed > _TS_MAX))).to_numpy(bool)
    if outside.any():
        out.rows(src, ERROR, "timestamp_out_of_range", col, outside,
                 lambda p: f"{_show(shown.iloc[p])} is outside the supported years 1678..2261",
                 "with a timestamp outside the supported years 1678..2261")
        parsed = parsed.where(~outside)
    return parsed.astype(c.TIMESTAMP_DTYPE)


def _timestamps_from_datetimes(src: _Source, col: str, raw: pd.Series, out: _Collector) -> _Column:
    try:
        values = pd.Series(pd.to_datetime(raw, utc=True), index=raw.index)  # naive values are UTC
    except (ValueError, TypeError, OverflowError):
        return _timestamps_from_text(src, col, _as_string(raw), out)
    return _Column(_check_timestamp_range(src, col, values, raw, out), raw.isna().to_numpy(bool))


def _numbers_from_text(kind: str) -> Callable[[_Source, str, pd.Series, _Collector], _Column]:
    def parse(src: _Source, col: str, text: pd.Series, out: _Collector) -> _Column:
        numbers = pd.to_numeric(text, errors="coerce")
        numbers = pd.Series(np.asarray(numbers.to_numpy(dtype="float64", na_value=np.nan)), index=text.index)
        return _numbers(src, col, kind, numbers, text.isna().to_numpy(bool), text, out)
    return parse


def _numbers(src: _Source, col: str, kind: str, numbers: pd.Series, missing: np.ndarray,
             shown: pd.Series, out: _Collector) -> _Column:
    arr = numbers.to_numpy(dtype="float64")
    finite = np.isfinite(arr)
    bad = ~missing & ~finite
    out.rows(src, ERROR, "not_a_number", col, bad,
             lambda p: f"{_show(shown.iloc[p])} is not {_KIND_WORDS[kind]}"
                       + ("; leave the cell empty for a missing value" if src.is_csv else ""),
             f"whose value is not {_KIND_WORDS[kind]}")
    if kind == c.FLOAT:
        return _Column(pd.Series(np.where(finite, arr, np.nan), index=numbers.index, dtype="float64"), missing)
    with np.errstate(invalid="ignore"):
        fractional = finite & (arr != np.round(arr))
        too_big = finite & ~fractional & (np.abs(arr) >= 2.0**53)
    out.rows(src, ERROR, "not_an_integer", col, fractional,
             lambda p: f"{col} must be a whole number, not {_show(shown.iloc[p])}",
             "whose value is not a whole number")
    out.rows(src, ERROR, "integer_out_of_range", col, too_big,
             lambda p: f"{_show(shown.iloc[p])} is too large for an integer",
             "whose value is too large for an integer")
    good = finite & ~fractional & ~too_big
    ints = pd.array(np.where(good, arr, 0).astype(np.int64), dtype="Int64")
    ints[~good] = pd.NA
    return _Column(pd.Series(ints, index=numbers.index), missing)


def _bools_from_text(src: _Source, col: str, text: pd.Series, out: _Collector) -> _Column:
    missing = text.isna().to_numpy(bool)
    low = text.str.lower()
    is_true = low.isin(_TRUE).fillna(False).to_numpy(bool)
    is_false = low.isin(_FALSE).fillna(False).to_numpy(bool)
    bad = ~missing & ~is_true & ~is_false
    out.rows(src, ERROR, "not_a_boolean", col, bad,
             lambda p: f"{_show(text.iloc[p])} is not a boolean; use {_BOOL_WORDS}",
             "whose value is not a boolean")
    return _Column(_bool_series(is_true, is_false, text.index), missing)


def _bools_from_numbers(src: _Source, col: str, raw: pd.Series, out: _Collector) -> _Column:
    missing = raw.isna().to_numpy(bool)
    if pd.api.types.is_bool_dtype(raw.dtype) or _family(raw) == "bool":
        values = raw.astype("boolean")
        return _Column(values.reset_index(drop=True), missing)
    arr = pd.to_numeric(raw).to_numpy(dtype="float64", na_value=np.nan)
    is_true, is_false = arr == 1, arr == 0
    out.rows(src, ERROR, "not_a_boolean", col, ~missing & ~is_true & ~is_false,
             lambda p: f"{_show(raw.iloc[p])} is not a boolean; use {_BOOL_WORDS}",
             "whose value is not a boolean")
    return _Column(_bool_series(is_true, is_false, raw.index), missing)


def _bool_series(is_true: np.ndarray, is_false: np.ndarray, index: pd.Index) -> pd.Series:
    values = pd.array(is_true, dtype="boolean")
    values[~is_true & ~is_false] = pd.NA
    return pd.Series(values, index=index)


_PARSE_TEXT: dict[str, Callable[[_Source, str, pd.Series, _Collector], _Column]] = {
    c.TIMESTAMP: _timestamps_from_text,
    c.FLOAT: _numbers_from_text(c.FLOAT),
    c.INT: _numbers_from_text(c.INT),
    c.BOOL: _bools_from_text,
}


# --- one table ---------------------------------------------------------------------------


@dataclass
class _Table:
    src: _Source
    frame: pd.DataFrame
    missing: dict[str, np.ndarray] = field(default_factory=dict)
    custom: list[str] = field(default_factory=list)


def _normal(name: str) -> str:
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def _near(name: str, candidates: list[str]) -> str | None:
    """The candidate that is probably ``name`` misspelt (case, spaces, a typo), if any."""
    by_normal = {_normal(x): x for x in candidates}
    if _normal(name) in by_normal:
        return by_normal[_normal(name)]
    close = difflib.get_close_matches(_normal(name), list(by_normal), n=1, cutoff=0.8)
    return by_normal[close[0]] if close else None


def _parse_table(src: _Source, out: _Collector) -> _Table | None:
    raw = _read_table(src, out)
    if raw is None:
        return None
    src.n_rows = len(raw)
    spec = c.TABLES[src.table]
    columns = [str(col) for col in raw.columns]
    raw.columns = columns
    for col in spec.required_columns:
        if col not in columns:
            close = _near(col, columns)
            hint = f"; did you mean {close!r}?" if close else ""
            out.issue(ERROR, src.file, f"missing required column {col}; the file has columns: "
                      f"{', '.join(columns) or '(none)'}{hint}", column=col, code="missing_column")
    if not len(raw):
        out.issue(WARNING, src.file, "the table has a header but no rows", code="empty_table")
    typed: dict[str, pd.Series] = {}
    table = _Table(src, pd.DataFrame())
    for col in columns:
        kind = spec.kind(col)
        if kind is None:
            typed[col] = infer_custom(raw[col]).reset_index(drop=True)
            table.custom.append(col)
            twin = next((x for x in spec.column_names if x not in columns and _normal(x) == _normal(col)), None)
            if twin:
                out.issue(WARNING, src.file, f"{col!r} is read as a custom field; rename it to {twin!r} if it "
                          "is that contract column", column=col, code="custom_looks_like_contract")
            continue
        parsed = _parse_column(src, col, kind, raw[col], out)
        typed[col] = parsed.values.reset_index(drop=True)
        table.missing[col] = parsed.missing
    table.frame = pd.DataFrame(typed, index=pd.RangeIndex(len(raw)))
    for col in spec.required_columns:
        if col in table.missing:
            out.rows(src, ERROR, "empty_required", col, table.missing[col],
                     lambda p, col=col: f"{col} is empty; every {src.table} row needs one",
                     f"with an empty {col}")
    _check_with_pandera(table, out)
    return table


def _check_with_pandera(table: _Table, out: _Collector) -> None:
    """Key uniqueness and value ranges on the typed frame, every failure collected (lazy)."""
    import pandera.pandas as pandera

    src, frame = table.src, table.frame
    spec = c.TABLES[src.table]
    columns: dict[str, pandera.Column] = {}
    ranges: dict[str, tuple[str, str]] = {}
    if spec.key and spec.key in frame:
        columns[spec.key] = pandera.Column(unique=True, nullable=True)
    for (name, col), (low, high, rule, other) in RANGE_CHECKS.items():
        if name == src.table and col in frame:
            check = (pandera.Check.in_range(low, high) if low is not None and high is not None
                     else pandera.Check.ge(low) if low is not None else pandera.Check.le(high))
            columns[col] = pandera.Column(checks=check, nullable=True)
            ranges[col] = (rule, other)
    if not columns or not len(frame):
        return
    try:
        pandera.DataFrameSchema(columns, strict=False).validate(frame[list(columns)], lazy=True)
        return
    except pandera.errors.SchemaErrors as err:
        failures = err.failure_cases
    failures = failures[failures["index"].notna()]
    for (col, check), group in failures.groupby(["column", "check"], sort=False):
        mask = np.zeros(len(frame), dtype=bool)
        mask[group["index"].astype("int64").to_numpy()] = True
        if check == "field_uniqueness":
            out.values(src, ERROR, "duplicate_id", col, frame[col], mask,
                       lambda v, n, where, col=col: f"duplicate {col} {_show(v)} in {n:,} rows: {where}",
                       f"duplicated {col} values", count=lambda n: n - 1)
        else:
            rule, other = ranges[col]
            values = frame[col]
            out.rows(src, ERROR, "out_of_range", col, mask,
                     lambda p, col=col, rule=rule, values=values: f"{col} {rule}: {values.iloc[p]:g}",
                     f"with a {col} {other}")


# --- dataset level -----------------------------------------------------------------------


def parse_dataset(
    directory: Path,
    *,
    late_log_days: float = DEFAULT_LATE_LOG_DAYS,
    now: pd.Timestamp | None = None,
    max_examples: int = DEFAULT_MAX_EXAMPLES,
) -> tuple[Dataset | None, ValidationReport]:
    """Read and check a dataset directory in one pass.

    Args:
        directory: the dataset directory.
        late_log_days: warn about activities logged more than this many days after they occurred.
        now: reference time for the future-timestamp warning (default: the current time).
        max_examples: issues listed one by one per (file, column, problem) before an
            ``and N more`` line.

    Returns:
        ``(dataset, report)``; ``dataset`` is None when the report has errors. Its
        ``warnings`` are the report's.
    """
    started = time.perf_counter()
    directory = Path(directory)
    report = ValidationReport(directory)
    out = _Collector(max_examples)
    place = str(directory)
    if not directory.is_dir():
        why = "is not a directory" if directory.exists() else "does not exist"
        out.issue(ERROR, place, f"the dataset directory {why}", code="no_directory")
        report.errors = out.errors
        return None, report

    tables: dict[str, _Table] = {}
    used: set[str] = set()
    for name in c.TABLES:
        path = table_path(directory, name)
        if path is None:
            continue
        used.add(path.name)
        csv_twin = directory / f"{name}.csv"
        if path.suffix == ".parquet" and csv_twin.exists():
            out.issue(WARNING, csv_twin.name, f"both {csv_twin.name} and {path.name} exist; reading {path.name} "
                      f"and ignoring {csv_twin.name}", code="duplicate_table")
        src = _Source(name, path)
        table = _parse_table(src, out)
        report.files[name] = path.name
        if table is not None:
            tables[name] = table
            report.row_counts[name] = len(table.frame)
            report.custom_fields[name] = {
                col: "numeric" if pd.api.types.is_float_dtype(table.frame[col]) else "categorical"
                for col in table.custom}

    entries = sorted(p for p in directory.iterdir() if not p.name.startswith("."))
    report.ignored_files = [p.name + ("/" if p.is_dir() else "") for p in entries
                            if p.name not in used and p.name != c.DATASET_META_FILE]
    _check_presence(directory, report, entries, out)
    meta = _read_meta(directory, tables, out)
    _check_references(tables, out)
    _warn_suspicious(tables, out, late_log_days, now)

    report.errors, report.warnings = out.errors, out.warnings
    logger.info("checked dataset %s: %d tables, %d rows, %d error lines, %d warning lines in %.1fs",
                directory, len(tables), sum(report.row_counts.values()), len(report.errors),
                len(report.warnings), time.perf_counter() - started)
    if report.errors:
        return None, report
    dataset = Dataset(
        {name: t.frame for name, t in tables.items()},
        {name: list(t.custom) for name, t in tables.items()},
        set(meta.get("execution_time_fields", [])),
        directory,
        warnings=list(report.warnings),
    )
    return dataset, report


def validate_dataset(
    directory: Path,
    *,
    late_log_days: float = DEFAULT_LATE_LOG_DAYS,
    now: pd.Timestamp | None = None,
    max_examples: int = DEFAULT_MAX_EXAMPLES,
) -> ValidationReport:
    """Check a dataset directory against the contract; every problem of every file is reported.

    See the module docstring for the errors and warnings. Never raises for bad data.
    """
    return parse_dataset(directory, late_log_days=late_log_days, now=now, max_examples=max_examples)[1]


def _check_presence(directory: Path, report: ValidationReport, entries: list[Path], out: _Collector) -> None:
    found = ", ".join(p.name for p in entries) or "nothing"
    place = str(directory)
    if c.ACTIVITIES not in report.files:
        near = [p.name for p in entries if p.stem.lower().strip() == c.ACTIVITIES and p.name not in report.files]
        hint = f"; rename {near[0]} to activities{Path(near[0]).suffix.lower()}" if near else ""
        out.issue(ERROR, place, f"no activities table: expected activities.csv or activities.parquet "
                  f"(found: {found}){hint}", code="missing_table")
    if not any(name in report.files for name in c.OUTCOME_SOURCES):
        out.issue(ERROR, place, "no outcome source: the dataset needs deal_stages.csv/.parquet or "
                  "outcomes.csv/.parquet (the outcome labels come from them)", code="missing_table")


def _read_meta(directory: Path, tables: dict[str, _Table], out: _Collector) -> dict:
    path = directory / c.DATASET_META_FILE
    if not path.exists():
        return {}
    file = path.name
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        out.issue(ERROR, file, f"not valid JSON: {err.msg} (line {err.lineno}, column {err.colno})",
                  line=err.lineno, code="bad_meta")
        return {}
    except (OSError, UnicodeDecodeError) as err:
        out.issue(ERROR, file, f"cannot read this file: {err}", code="bad_meta")
        return {}
    if not isinstance(meta, dict):
        out.issue(ERROR, file, "must hold a JSON object like {\"execution_time_fields\": [...]}", code="bad_meta")
        return {}
    fields = meta.get("execution_time_fields", [])
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        out.issue(ERROR, file, "execution_time_fields must be a list of \"table.column\" strings",
                  column="execution_time_fields", code="bad_meta")
        return {k: v for k, v in meta.items() if k != "execution_time_fields"}
    for entry in fields:
        name, _, col = entry.partition(".")
        if name in tables and col in tables[name].frame:
            continue
        where = f"table {name!r} is not in the dataset" if name not in tables else f"{name} has no column {col!r}"
        out.issue(WARNING, file, f"execution_time_fields entry {entry!r} matches nothing: {where}",
                  column="execution_time_fields", id=entry, code="bad_meta")
    return meta


def _check_references(tables: dict[str, _Table], out: _Collector) -> None:
    for name, table in tables.items():
        for col, ref in c.TABLES[name].references.items():
            ref_table = tables.get(ref)
            key = c.TABLES[ref].key
            if col not in table.frame or ref_table is None or key not in ref_table.frame:
                continue
            if len(ref_table.frame) and ref_table.frame[key].isna().all():
                continue  # the key column itself is unreadable (already an error): no flood of orphans
            values = table.frame[col]
            mask = values.notna().to_numpy(bool) & ~_isin(values, ref_table.frame[key])
            if not mask.any():
                continue
            error = (name, col) in LABEL_REFERENCES
            ref_file = ref_table.src.file
            advice = (f"add it to {ref_file} or remove the rows" if error
                      else f"the rows are kept, without {ref} attributes")
            out.values(table.src, ERROR if error else WARNING, "unknown_reference", col, values, mask,
                       lambda v, n, where, col=col, ref_file=ref_file, advice=advice:
                       f"{col} {_show(v)} is not in {ref_file}"
                       + (f"; {n:,} rows have it: {where}" if n > 1 else "") + f"; {advice}",
                       f"{col} values unknown to {ref_file}")


def _warn_suspicious(tables: dict[str, _Table], out: _Collector, late_log_days: float,
                     now: pd.Timestamp | None) -> None:
    now = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    now = now.tz_localize("UTC") if now.tz is None else now.tz_convert("UTC")
    acts = tables.get(c.ACTIVITIES)
    if acts is not None and c.LOGGED_AT in acts.frame and c.OCCURRED_AT in acts.frame:
        occurred, logged = acts.frame[c.OCCURRED_AT], acts.frame[c.LOGGED_AT]
        delay = logged - occurred
        late = (delay > pd.Timedelta(days=late_log_days)).fillna(False).to_numpy(bool)
        out.rows(acts.src, WARNING, "logged_late", c.LOGGED_AT, late,
                 lambda p: f"logged {delay.iloc[p] / pd.Timedelta(days=1):.1f} days after it occurred "
                           f"({_fmt_ts(occurred.iloc[p])} -> {_fmt_ts(logged.iloc[p])}); features treat it as "
                           f"unknown until it was logged",
                 f"logged more than {late_log_days:g} days after they occurred")
        early = (delay < pd.Timedelta(0)).fillna(False).to_numpy(bool)
        out.rows(acts.src, WARNING, "logged_before_occurred", c.LOGGED_AT, early,
                 lambda p: f"logged_at {_fmt_ts(logged.iloc[p])} is before occurred_at {_fmt_ts(occurred.iloc[p])} "
                           "(expected for meetings scheduled ahead; otherwise check the columns are not swapped)",
                 "logged before they occurred")
    if acts is not None and not {c.DEAL_ID, c.ACCOUNT_ID} & set(acts.frame.columns):
        out.issue(WARNING, acts.src.file, "has neither deal_id nor account_id, so no activity can be linked to "
                  "an outcome", code="no_link")

    deals, stages = tables.get(c.DEALS), tables.get(c.DEAL_STAGES)
    if deals is not None and stages is not None and c.DEAL_ID in deals.frame and c.DEAL_ID in stages.frame:
        ids = deals.frame[c.DEAL_ID]
        lonely = ids.notna().to_numpy(bool) & ~_isin(ids, stages.frame[c.DEAL_ID])
        out.rows(deals.src, WARNING, "deal_without_stages", c.DEAL_ID, lonely,
                 lambda p: f"deal {_show(ids.iloc[p])} has no rows in {stages.src.file}",
                 f"whose deal has no rows in {stages.src.file}", id_of=lambda p: str(ids.iloc[p]))

    for name, table in tables.items():
        for col in table.frame.columns:
            if c.TABLES[name].kind(col) != c.TIMESTAMP:
                continue
            values = table.frame[col]
            future = (values > now).fillna(False).to_numpy(bool)
            out.rows(table.src, WARNING, "future_timestamp", col, future,
                     lambda p, values=values: f"{_fmt_ts(values.iloc[p])} is in the future (now is {_fmt_ts(now)})",
                     "with a timestamp in the future")
        for (tname, col), (allowed, consequence) in KNOWN_VALUES.items():
            if tname != name or col not in table.frame:
                continue
            values = table.frame[col]
            mask = values.notna().to_numpy(bool) & ~_isin(values, sorted(allowed))
            listed = ", ".join(sorted(allowed))
            out.values(table.src, WARNING, "unknown_value", col, values, mask,
                       lambda v, n, where, col=col, allowed=allowed, listed=listed, consequence=consequence:
                       f"{_show(v)} is not a known {col}" + (f" ({n:,} rows: {where})" if n > 1 else "") + "; "
                       + (f"did you mean {str(v).strip().lower()!r}? " if str(v).strip().lower() in allowed else
                          f"known values: {listed}; ") + consequence,
                       f"unknown {col} values")


# --- summary -----------------------------------------------------------------------------


@dataclass
class DatasetSummary:
    """Headline figures of a valid dataset (what ``activity-scorer validate`` prints).

    Rates are shares in 0..1, None when the table they need is absent.
    """

    n_activities: int
    first_activity_at: pd.Timestamp | None
    last_activity_at: pd.Timestamp | None
    activity_types: dict[str, int]
    output_rate: float | None
    negative_rate: float | None
    n_outcome_events: int | None
    n_stage_advances: int | None
    n_deals: int
    deals_with_progress_rate: float | None


def stage_advances(stages: pd.DataFrame) -> pd.Series:
    """Which ``deal_stages`` rows are advances: a higher order than the deal had reached before.

    A deal's first stage row is where it starts, not an advance; a move to closed-lost
    (order 0) never is. Returns a boolean Series aligned with ``stages``. The definition
    is ``features.advances``, the same the outcome label uses.
    """
    from features.advances import stage_advances_frame

    return stage_advances_frame(stages)


def summarize_dataset(dataset: Dataset) -> DatasetSummary:
    """Row counts, date range, output and outcome rates of a typed dataset."""
    acts = dataset[c.ACTIVITIES]
    occurred = acts[c.OCCURRED_AT].dropna() if c.OCCURRED_AT in acts else pd.Series(dtype=c.TIMESTAMP_DTYPE)
    types = acts[c.TYPE].value_counts(dropna=True) if c.TYPE in acts else pd.Series(dtype="int64")
    output_rate = negative_rate = None
    responses = dataset.get(c.RESPONSES)
    if responses is not None and len(acts):
        def share(kinds: frozenset[str]) -> float:
            hit = responses.loc[_isin(responses[c.RESPONSE], sorted(kinds)), c.ACTIVITY_ID]
            return float(_isin(acts[c.ACTIVITY_ID], hit).mean())
        output_rate, negative_rate = share(c.MEANINGFUL_RESPONSES), share(c.NEGATIVE_RESPONSES)
    outcomes, stages = dataset.get(c.OUTCOMES), dataset.get(c.DEAL_STAGES)
    progressed: list[pd.Series] = []
    n_events = n_advances = None
    if outcomes is not None:
        n_events = len(outcomes)
        progressed.append(outcomes[c.DEAL_ID])
    if stages is not None:
        advances = stage_advances(stages)
        n_advances = int(advances.sum())
        progressed.append(stages.loc[advances, c.DEAL_ID])
    deals = dataset.get(c.DEALS)
    if deals is not None:
        universe = deals[c.DEAL_ID].dropna().unique()
    else:
        parts = [t[c.DEAL_ID] for t in (acts, stages, outcomes) if t is not None and c.DEAL_ID in t]
        universe = pd.concat(parts).dropna().unique() if parts else np.array([], dtype=object)
    rate = None
    if len(universe):
        done = pd.concat(progressed).dropna().unique() if progressed else []
        rate = float(_isin(pd.Series(universe, dtype="string"), done).mean())
    return DatasetSummary(
        n_activities=len(acts),
        first_activity_at=occurred.min() if len(occurred) else None,
        last_activity_at=occurred.max() if len(occurred) else None,
        activity_types={str(k): int(v) for k, v in types.items()},
        output_rate=output_rate,
        negative_rate=negative_rate,
        n_outcome_events=n_events,
        n_stage_advances=n_advances,
        n_deals=len(universe),
        deals_with_progress_rate=rate,
    )


# --- the command -------------------------------------------------------------------------


def run_validate(data: Path) -> int:
    """``activity-scorer validate --data DIR``: print a summary or the errors; return the exit code.

    Returns:
        0 when the dataset is valid (warnings allowed), 1 when it has errors,
        2 when the directory does not exist.
    """
    from rich.console import Console

    console = Console(soft_wrap=True, highlight=False)
    data = Path(data)
    if not data.is_dir():
        why = "is not a directory" if data.exists() else "does not exist"
        Console(stderr=True, soft_wrap=True, highlight=False).print(
            f"dataset directory {data} {why}", style="bold red", markup=False)
        return 2
    dataset, report = parse_dataset(data)
    if dataset is None:
        _print_errors(console, report)
        return 1
    _print_summary(console, report, summarize_dataset(dataset))
    return 0


def _print_issues(console, report: ValidationReport, issues: list[Issue], style: str) -> None:
    from rich.text import Text

    for file, listed in report.by_file(issues).items():
        console.print(Text(file, style="bold"))
        for issue in listed:
            console.print(Text("  " + (f"{issue.location}: " if issue.location else "") + issue.message, style=style))


def _print_errors(console, report: ValidationReport) -> None:
    from rich.text import Text

    console.print(Text(f"Dataset {report.directory} does not satisfy the data contract:", style="bold"))
    _print_issues(console, report, report.errors, "red")
    if report.warnings:
        console.print(Text(f"({report.n_warnings:,} warning{'s' if report.n_warnings != 1 else ''} "
                           "not shown; they are listed once the errors are fixed)", style="dim"))
    console.print(Text(report.headline(), style="bold red"))


def _plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _pct(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate:.1%}"


def _print_summary(console, report: ValidationReport, summary: DatasetSummary) -> None:
    from rich.table import Table
    from rich.text import Text

    tables = Table(title=f"Dataset {report.directory}", title_justify="left")
    for name, justify in (("table", "left"), ("file", "left"), ("rows", "right"), ("custom fields", "left")):
        tables.add_column(name, justify=justify)
    for name in c.TABLES:
        if name in report.files:
            custom = report.custom_fields.get(name, {})
            tables.add_row(name, report.files[name], f"{report.row_counts.get(name, 0):,}",
                           ", ".join(f"{col} ({kind})" for col, kind in custom.items()) or "-")
    console.print(tables)

    lines = []
    if summary.first_activity_at is not None:
        days = (summary.last_activity_at - summary.first_activity_at) / pd.Timedelta(days=1)
        lines.append(f"Activities: {summary.n_activities:,} from {_fmt_ts(summary.first_activity_at)} "
                     f"to {_fmt_ts(summary.last_activity_at)} ({days:,.0f} days)")
    if summary.activity_types:
        top = sorted(summary.activity_types.items(), key=lambda kv: -kv[1])
        lines.append("Types: " + ", ".join(f"{k} {v / max(summary.n_activities, 1):.0%}" for k, v in top[:8])
                     + (f", {len(top) - 8} more" if len(top) > 8 else ""))
    if summary.output_rate is None:
        lines.append("Outputs: n/a (" + ("no activities" if c.RESPONSES in report.files else "no responses table")
                     + ")")
    else:
        lines.append(f"Outputs: {_pct(summary.output_rate)} of activities got a meaningful output "
                     f"({', '.join(sorted(c.MEANINGFUL_RESPONSES))}), "
                     f"{_pct(summary.negative_rate)} a negative one")
    outcome_parts = []
    if summary.n_outcome_events is not None:
        outcome_parts.append(_plural(summary.n_outcome_events, "outcome event"))
    if summary.n_stage_advances is not None:
        outcome_parts.append(_plural(summary.n_stage_advances, "stage advance"))
    progress = (f"; {_pct(summary.deals_with_progress_rate)} of {summary.n_deals:,} deals have at least one"
                if summary.deals_with_progress_rate is not None else "")
    lines.append("Outcomes: " + " and ".join(outcome_parts) + progress)
    custom = [f"{t}.{col} ({kind})" for t, cols in report.custom_fields.items() for col, kind in cols.items()]
    lines.append("Custom fields: " + (", ".join(custom) if custom else "none"))
    if report.ignored_files:
        lines.append("Ignored (not tables): " + ", ".join(report.ignored_files))
    for line in lines:
        console.print(Text(line))
    if report.warnings:
        console.print(Text(f"Warnings ({report.n_warnings:,}):", style="bold yellow"))
        _print_issues(console, report, report.warnings, "yellow")
    console.print(Text("OK: the dataset satisfies the data contract"
                       + (f" ({report.n_warnings:,} warnings)" if report.warnings else ""), style="bold green"))


__all__ = [
    "DEFAULT_LATE_LOG_DAYS",
    "DatasetError",
    "DatasetNotFoundError",
    "DatasetSummary",
    "Issue",
    "ValidationReport",
    "parse_dataset",
    "run_validate",
    "stage_advances",
    "summarize_dataset",
    "validate_dataset",
]
