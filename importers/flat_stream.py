"""``import-flat`` in bounded memory: read, convert and write a flat file a chunk of rows at a time.

:func:`stream_import` writes exactly the dataset that :func:`importers.flat.convert_flat` and
:func:`features.dataset.write_dataset` write for the whole file (same tables, dtypes, rows and
order, same ``dataset.json`` and report), but never holds the file: each chunk of
:data:`STREAM_CHUNK_ROWS` rows is converted with the same functions and its
``activities``, ``outcomes`` and ``responses`` rows are appended to the output files (Parquet
row groups, or CSV lines). What must look across rows is kept in compact form:

- the entity tables: per deal its first activity (time, position, account), per contact and
  account the first row's values and, per field, the first non-empty value and whether it
  varies (for the report's warnings), reps in order of appearance; merged as chunks come;
- two 64-bit hashes per row (the full-row duplicate count and examples) and per id (the
  uniqueness check);
- counts (declared missing values, rows without an outcome, missing values per field),
  the earliest and latest time, the time-order check, daylight-saving notes;
- a time rule's year and counts (:class:`importers.flat._TimeRuleState`); the rows of a
  month are converted together (a row's day and hour depend on its whole month), so a
  chunk ends at a month boundary and the month it was in carries over to the next chunk;
- the type of each custom field: taken from the rows seen so far, and checked against every
  later chunk; a field whose type the rest of the file changes (a number column with text
  further down) is found at the end, and the file is converted a second time with the
  types known.

Errors: the streaming pass words a bad file's error itself, in the same bounded memory, as
:func:`importers.flat.read_flat` and :func:`importers.flat.convert_flat` word it for the whole
file (same message, first row and line, value, count), with their wording helpers. Those raise
the first check that fails in their order (reading, then the mapping's columns, then
``CHECK_POSITIVE`` .. ``CHECK_ACCOUNT_FIELDS`` of :mod:`importers.flat`); a stream sees a late
row's problem before an early check's problem further down, so it never stops at the first
problem. It records, per failed check, the first failing row (its line and value) and counts
the failing rows (:class:`_Problems`); once a check has failed nothing more is written, but
every later chunk is still checked (a check already beaten by an earlier one in the order is
skipped), and at the end the failing check that comes first in the order is raised. Reading
problems are kept the same way (the first row whose fields do not match the header and how
many do; malformed CSV, which ends the reading). Whole-file checks come from the compact
state: every ``positive`` value occurring (value counts of the outcome and output columns for
the message, up to :data:`VALUE_COUNT_LIMIT` distinct values), rows left after dropping,
unique ids (the two 64-bit hashes per kept row's id, and the position of each dropped row, 8
bytes, to find a kept row's line; the first repeated id's two rows are read back from the
file, one more read, to quote the id and lines).
The file is decoded once whole before anything else, so bad text is named first, as the
in-memory path names it.

What the stream does not word, :func:`importers.flat.import_flat` still reads whole with the
in-memory path (:class:`NotStreamable`, only if the file fits the memory budget):

- a header name that starts with a NUL character (the accumulators' own column prefix); such
  a file is converted in memory, good or bad;
- a ``positive`` (or ``output_positive``) value that never occurs in an outcome (output)
  column with more than :data:`VALUE_COUNT_LIMIT` distinct values: the message lists the
  column's values by count, which a stream cannot count in bounded memory;
- an error reading the file after it was opened, and any defect of the streaming pass
  (an exception that is not a worded error).

The dataset is written to a temporary directory beside the output directory and moved in
only when complete; on any error the temporary directory is removed.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features import contract as c
from features.dataset import csv_text_frame, write_dataset
from importers.crm.times import DstNotes
from importers.flat import (
    _MONTHS,
    CHECK_ACCOUNT_FIELDS,
    CHECK_ACTIVITY_COLUMNS,
    CHECK_CONTACT_FIELDS,
    CHECK_ID_UNIQUE,
    CHECK_NO_ROWS,
    CHECK_OUTPUT_POSITIVE,
    CHECK_OUTPUT_VALUE,
    CHECK_POSITIVE,
    CHECK_TIME,
    CHECK_TYPE,
    CheckKey,
    CheckText,
    FieldReport,
    FlatFile,
    FlatImportError,
    FlatImportReport,
    FlatMapping,
    _add_counts,
    _apply_missing,
    _bad_text_line,
    _bad_text_message,
    _binary_column,
    _cannot_read_message,
    _check_columns,
    _check_entity_fields,
    _contract_column,
    _custom_columns,
    _derive_time,
    _dst_note,
    _duplicate_id_message,
    _field_report,
    _first,
    _header_problem,
    _id_column,
    _malformed_message,
    _missing_outcomes,
    _no_rows_left_message,
    _no_rows_message,
    _parse_time_column,
    _positive_missing_message,
    _ragged_message,
    _row_message,
    _Rows,
    _time_rule_notes,
    _TimeRuleState,
    _type_entity_fields,
    _types,
    _value_counts,
    _where,
    detect_delimiter,
    prepare_output,
)

logger = logging.getLogger(__name__)

STREAM_CHUNK_ROWS = 100_000  # file rows converted at a time (a time rule's month may make a chunk longer)
_REDUCE_ROWS = 1_000_000  # merge an entity accumulator once its parts hold this many rows
_HASH_KEYS = ("0123456789123456", "activity-scorer1")  # two independent 64-bit row hashes
_NUMBER, _TRUE_FALSE, _TEXT = "number", "true/false", "text"
_INTERNAL = "\x00"  # prefix of the accumulators' own columns (no file column starts with a NUL)
_POS = f"{_INTERNAL}pos"


VALUE_COUNT_LIMIT = 100_000  # distinct outcome (output) values counted for a 'never occurs' message


class NotStreamable(Exception):  # a signal first, a message only when the file cannot be read whole
    """The streaming pass cannot convert this file or word its error; the in-memory path does.

    The kinds are listed in the module docstring. The message says what the streaming pass saw;
    it is shown only when the file is too large for the in-memory path.
    """


# --------------------------------------------------------------------------- reading


@dataclass
class _Source:
    """A flat file opened for chunked reading (the header read, the delimiter known).

    ``header_problem``: what :func:`read_flat` would say of the header (none, an empty or a
    repeated name, malformed CSV in it), or None.
    """

    path: Path
    encoding: str
    delimiter: str
    header: list[str]
    sha256: str
    header_problem: str | None = None


def _open_source(path: Path, delimiter: str | None, encoding: str) -> _Source:
    """Hash and decode the whole file (a block at a time), find its delimiter and read its header.

    Args:
        path: the flat file.
        delimiter: the mapping's delimiter, or None to detect it as :func:`read_flat` does.
        encoding: the text encoding.

    Returns:
        The source; a header that :func:`read_flat` would refuse is recorded, not raised
        (malformed CSV further down comes first).

    Raises:
        FlatImportError: the file cannot be read, is not ``encoding`` text (the line named) or
            its delimiter cannot be detected, worded as :func:`read_flat` words them.
        NotStreamable: a header name starts with a NUL character (see the module docstring).
    """
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
                decoder.decode(block)
            decoder.decode(b"", final=True)
    except OSError as err:
        raise FlatImportError(_cannot_read_message(path, err)) from err
    except UnicodeDecodeError as err:
        raise FlatImportError(_bad_text_message(path, _bad_text_line(path, encoding) or 1, encoding)) from err
    header: list[str] | None = None
    problem = None
    try:
        with open(path, encoding=encoding, newline="") as f:
            sample = f.read(65536)
            if delimiter is None:
                delimiter = detect_delimiter(sample, path)
            f.seek(0)
            reader = csv.reader(f, delimiter=delimiter, strict=True)
            try:
                for record in reader:
                    if not record or (len(record) == 1 and not record[0].strip()):
                        continue
                    header = [h.strip() for h in record]
                    break
            except csv.Error as err:
                problem = _malformed_message(path, reader.line_num, err)
    except OSError as err:
        raise FlatImportError(_cannot_read_message(path, err)) from err
    problem = problem or _header_problem(path, header)
    if problem is None and any(h.startswith(_INTERNAL) for h in header or []):
        raise NotStreamable(f"{path}: a header name starts with a NUL character")
    return _Source(Path(path), encoding, delimiter, header or [], digest.hexdigest(), problem)


@dataclass
class _ReadState:
    """What reading the file found that :func:`read_flat` refuses: malformed CSV, rows of the wrong width.

    ``ragged``: the first such row as (data row, line, fields), numbered as :func:`read_flat`
    numbers it (every record counts).
    """

    n_rows: int = 0
    ragged: tuple[int, int, int] | None = None
    n_ragged: int = 0
    malformed: str | None = None

    def problem(self, src: _Source) -> str | None:
        """The reading error :func:`read_flat` raises for this file (its order: CSV, header, widths, rows), or None."""
        if self.malformed:
            return self.malformed
        if src.header_problem:
            return src.header_problem
        if self.ragged is not None:
            return _ragged_message(src.path, self.ragged, self.n_ragged, len(src.header), src.delimiter)
        if not self.n_rows:
            return _no_rows_message(src.path)
        return None


def _chunks(src: _Source, chunk_rows: int, state: _ReadState, frames: bool = True):
    """Yield ``(frame, lines)`` per chunk: stripped string cells (``<NA>`` when empty), as :func:`read_flat` reads.

    Reading problems go to ``state``: after a row whose number of fields differs from the
    header's, no more chunks are yielded but the rest of the file is read to count such rows;
    malformed CSV ends the reading. ``frames=False`` only reads (nothing is yielded).

    Raises:
        NotStreamable: the file cannot be read any more, or is not text after all.
    """
    n_cols = len(src.header)
    rows: list[list[str]] = []
    lines: list[int] = []

    def frame() -> pd.DataFrame:
        data = pd.DataFrame(rows, columns=src.header, dtype="string")
        for col in src.header:
            s = data[col].str.strip()
            data[col] = s.mask(s == "")
        return data

    reader = None
    try:
        with open(src.path, encoding=src.encoding, newline="") as f:
            reader = csv.reader(f, delimiter=src.delimiter, strict=True)
            for start, record in _data_records(reader):
                if len(record) != n_cols:
                    state.n_ragged += 1
                    if state.ragged is None:
                        state.ragged = (state.n_rows + state.n_ragged, start, len(record))
                        frames, rows, lines = False, [], []
                    continue
                state.n_rows += 1
                if not frames:
                    continue
                rows.append(record)
                lines.append(start)
                if len(rows) >= chunk_rows:
                    yield frame(), np.asarray(lines, dtype=np.int64)
                    rows, lines = [], []
    except csv.Error as err:
        state.malformed = _malformed_message(src.path, reader.line_num if reader is not None else 0, err)
        return
    except (OSError, UnicodeDecodeError) as err:
        raise NotStreamable(f"{src.path}: after data row {state.n_rows}: {err}") from err
    if rows and frames:
        yield frame(), np.asarray(lines, dtype=np.int64)


def _data_records(reader):
    """The data records of a CSV reader and the line each starts on: blank lines and the header skipped."""
    header_seen = False
    prev_end = 0
    for record in reader:
        start = prev_end + 1
        prev_end = reader.line_num
        if not record or (len(record) == 1 and not record[0].strip()):
            continue
        if not header_seen:
            header_seen = True
            continue
        yield start, record


def _fetch_rows(src: _Source, wanted: set[int]) -> dict[int, tuple[int, list[str]]]:
    """The records of some 0-based data rows and the line each starts on (one more read of the file).

    For a file without rows of the wrong width (data rows are then every record after the header).
    """
    out: dict[int, tuple[int, list[str]]] = {}
    n = 0
    with open(src.path, encoding=src.encoding, newline="") as f:
        for start, record in _data_records(csv.reader(f, delimiter=src.delimiter, strict=True)):
            if n in wanted:
                out[n] = (start, record)
                if len(out) == len(wanted):
                    break
            n += 1
    return out


def _month_chunks(chunks, month_column: str):
    """Re-cut chunks so that each ends where a month ends (the last month of the file ends it).

    A chunk whose month values cannot be read is passed on whole (the conversion names the value).
    """
    carry: tuple[pd.DataFrame, np.ndarray] | None = None
    for data, lines in chunks:
        if carry is not None:
            data = pd.concat([carry[0], data], ignore_index=True)
            lines = np.concatenate([carry[1], lines])
            carry = None
        month = data[month_column].str.lower().map(_MONTHS)
        if month.isna().any():
            yield data, lines
            continue
        changes = np.flatnonzero(np.diff(month.to_numpy(dtype=np.int64)) != 0)
        if not len(changes):
            carry = (data, lines)
            continue
        cut = int(changes[-1]) + 1
        yield data.iloc[:cut].reset_index(drop=True), lines[:cut]
        carry = (data.iloc[cut:].reset_index(drop=True), lines[cut:])
    if carry is not None:
        yield carry


# --------------------------------------------------------------------------- writing


class _TableSink:
    """One contract table written in parts: Parquet row groups, or CSV appended after one header."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.path = path
        self.fmt = fmt
        self.writer: pq.ParquetWriter | None = None
        self.schema: pa.Schema | None = None
        self.started = False

    def write(self, frame: pd.DataFrame) -> None:
        if self.fmt == "csv":
            text = csv_text_frame(frame)
            text.to_csv(self.path, index=False, lineterminator="\n", mode="a" if self.started else "w",
                        header=not self.started)
            self.started = True
            return
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self.writer is None:
            self.schema = table.schema
            self.writer = pq.ParquetWriter(self.path, self.schema, compression="snappy")
        elif not table.schema.equals(self.schema, check_metadata=False):
            table = table.cast(self.schema)
        if len(table):
            self.writer.write_table(table)
        self.started = True

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


# --------------------------------------------------------------------------- compact state


_MIX = (np.uint64(0x100000001B3), np.uint64(0x9E3779B97F4A7C15))  # odd multipliers: each step is a bijection
_NA_HASH = (np.uint64(0x5BD1E9955BD1E995), np.uint64(0xC2B2AE3D27D4EB4F))


def _row_hashes(frame: pd.DataFrame | pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Two independent 64-bit hashes of each row's values (equal rows, equal hashes; 128 bits against collisions).

    Each column is factorized once and only its distinct values are hashed (SipHash, two keys),
    so the second hash costs little more than the first.
    """
    columns = [frame] if isinstance(frame, pd.Series) else [frame[col] for col in frame.columns]
    out = [np.zeros(len(frame), dtype=np.uint64), np.zeros(len(frame), dtype=np.uint64)]
    for values in columns:
        codes, uniques = pd.factorize(values)
        distinct = np.asarray(uniques, dtype=object)
        for k in (0, 1):
            hashed = pd.util.hash_array(distinct, hash_key=_HASH_KEYS[k], categorize=False)
            per_row = np.append(hashed, _NA_HASH[k])[codes]  # code -1 (missing) takes the last entry
            out[k] = (out[k] ^ per_row) * _MIX[k]
    return out[0], out[1]


def _repeats(h1_parts: list[np.ndarray], h2_parts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose hash pair occurred earlier, in file order, and the first row of each pair.

    Sorts a copy of the first hash to find the values that repeat, then looks at the pairs of
    those rows only; empties the part lists as it goes (about 3 x 8 bytes a row at the peak).
    """
    empty = np.zeros(0, np.int64)
    h1 = np.concatenate(h1_parts)
    h1_parts.clear()
    sorted_h1 = np.sort(h1)
    repeated = np.unique(sorted_h1[1:][sorted_h1[1:] == sorted_h1[:-1]])
    del sorted_h1
    if not len(repeated):
        h2_parts.clear()
        return empty, empty
    rows = np.flatnonzero(np.isin(h1, repeated))  # file order
    c1 = h1[rows]
    del h1
    h2 = np.concatenate(h2_parts)
    h2_parts.clear()
    c2 = h2[rows]
    del h2
    order = np.lexsort((rows, c2, c1))  # by pair, then file row
    r, a, b = rows[order], c1[order], c2[order]
    same = np.concatenate([[False], (a[1:] == a[:-1]) & (b[1:] == b[:-1])])
    starts = np.maximum.accumulate(np.where(~same, np.arange(len(r)), 0))
    later, first = r[same], r[starts[same]]
    by_row = np.argsort(later, kind="stable")
    return later[by_row], first[by_row]


class _FirstRows:
    """One row per key, in order of first appearance: the first row's values, and per tracked
    column its first non-empty value and whether it carries more than one value."""

    def __init__(self, key: str, tracked: list[str], order: list[str] | None = None) -> None:
        self.key = key
        self.tracked = tracked
        self.order = order  # sort the parts by these columns before keeping the first row per key
        self.parts: list[pd.DataFrame] = []
        self.n_part_rows = 0
        self.n_reduced = 0  # rows after the last merge: merge again when the parts hold twice that

    def add(self, frame: pd.DataFrame) -> None:
        """``frame``: rows in file order (key not missing), with the key, the values and ``order`` columns."""
        if frame.empty:
            return
        self.parts.append(self._compact(frame, with_flags=False))
        self.n_part_rows += len(self.parts[-1])
        if self.n_part_rows > max(_REDUCE_ROWS, 2 * self.n_reduced) and len(self.parts) > 1:
            self.parts = [self._compact(pd.concat(self.parts, ignore_index=True), with_flags=True)]
            self.n_part_rows = self.n_reduced = len(self.parts[0])

    def _compact(self, frame: pd.DataFrame, with_flags: bool) -> pd.DataFrame:
        sort = frame.sort_values(self.order, kind="stable") if self.order else frame
        first = sort.drop_duplicates(self.key, keep="first")
        if not self.tracked:
            return first.reset_index(drop=True)
        groups = frame.groupby(self.key, sort=False)
        out = first.set_index(self.key, drop=False)
        for col in self.tracked:
            nn = f"{_INTERNAL}nn {col}" if with_flags else col
            first_nn = groups[nn].first()
            varies = groups[nn].nunique(dropna=True) > 1
            if with_flags:
                varies = varies | groups[f"{_INTERNAL}var {col}"].any()
            out[f"{_INTERNAL}nn {col}"] = first_nn.reindex(out.index)
            out[f"{_INTERNAL}var {col}"] = varies.reindex(out.index).to_numpy(bool)
        return out.reset_index(drop=True)

    def result(self) -> tuple[pd.DataFrame, dict[str, int]]:
        """The rows (sorted by ``order`` when given) and, per tracked column, how many keys vary."""
        if not self.parts:
            return pd.DataFrame(), {col: 0 for col in self.tracked}
        whole = self._compact(pd.concat(self.parts, ignore_index=True), with_flags=True) if self.tracked else (
            self._compact(pd.concat(self.parts, ignore_index=True), with_flags=False)
        )
        self.parts = []
        if self.order:
            whole = whole.sort_values(self.order, kind="stable")
        n_vary = {col: int(whole[f"{_INTERNAL}var {col}"].sum()) for col in self.tracked}
        keep = [col for col in whole.columns if not col.startswith(_INTERNAL)]
        return whole[keep].reset_index(drop=True), n_vary


@dataclass
class _Counts:
    rows_read: int = 0
    rows_written: int = 0
    no_outcome: int = 0
    n_positive: int = 0
    n_outputs: int = 0
    declared: dict[str, int] = field(default_factory=dict)
    missing: dict[str, int] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)
    time_min: pd.Timestamp | None = None
    time_max: pd.Timestamp | None = None
    last_time: pd.Timestamp | None = None
    monotonic: bool = True


def _numbers(values: pd.Series) -> pd.Series:
    """``pd.to_numeric(values, errors="coerce").astype("float64")``, parsing each distinct value once.

    The parse is per value, so parsing the distinct values and spreading them back gives the
    same numbers; a column with few distinct values (most are) costs a factorize, not a parse.
    """
    codes, uniques = pd.factorize(values)
    if 2 * len(uniques) > len(values):
        return pd.to_numeric(values, errors="coerce").astype("float64")
    parsed = pd.to_numeric(pd.Series(uniques), errors="coerce").astype("float64").to_numpy()
    return pd.Series(np.append(parsed, np.nan)[codes], index=values.index, dtype="float64")


@dataclass
class _Finding:
    """A failed row-level check: its first failing row (position, column, value) and how many rows fail."""

    where: str
    column: str
    value: Any
    count: int
    text: CheckText


class _Problems:
    """The row-level checks that failed so far, called where :func:`importers.flat._raise_first` raises.

    Chunks come in file order, so the first finding of a check is its first failing row in the
    file; later chunks add to its count. The error is the finding with the smallest key (the
    check :func:`importers.flat.convert_flat` runs first), worded by the check's own text.
    """

    def __init__(self) -> None:
        self.found: dict[CheckKey, _Finding] = {}

    def __call__(self, key: CheckKey, rows: _Rows, column: str, mask: np.ndarray | pd.Series,
                 values: pd.Series | None, text: CheckText) -> None:
        mask = np.asarray(mask, dtype=bool)
        n = int(np.count_nonzero(mask))
        if not n:
            return
        known = self.found.get(key)
        if known is None:
            i = _first(mask)
            self.found[key] = _Finding(rows.where(i), column, None if values is None else values.iloc[i], n, text)
        else:
            known.count += n

    def beaten(self, stage: int) -> bool:
        """True when a check of an earlier stage failed: no check of ``stage`` (or later) can be the error."""
        return any(key[0] < stage for key in self.found)

    def message(self, path: Path, key: CheckKey) -> str:
        f = self.found[key]
        return _row_message(path, f.where, f.column, f.text(f.value, f.count))


def _more_counts(counts: dict[Any, int] | None, values: pd.Series) -> dict[Any, int] | None:
    """Add a chunk's value counts; None (given up) past :data:`VALUE_COUNT_LIMIT` distinct values."""
    if counts is None:
        return None
    _add_counts(counts, _value_counts(values))
    return counts if len(counts) <= VALUE_COUNT_LIMIT else None


def _custom_kind(n_values: int, numeric: bool, tf: bool) -> str:
    if n_values and numeric:
        return _NUMBER
    if n_values and tf:
        return _TRUE_FALSE
    return _TEXT


# --------------------------------------------------------------------------- the pass


class _Pass:
    """One streaming pass over the file, writing into ``directory``."""

    def __init__(self, src: _Source, m: FlatMapping, directory: Path, fmt: str,
                 custom_types: dict[str, str] | None) -> None:
        self.src, self.m, self.dir, self.fmt = src, m, directory, fmt
        self.flat0 = FlatFile(src.path, src.header, pd.DataFrame(columns=src.header), np.zeros(0, np.int64),
                              src.delimiter, src.sha256)
        _check_columns(self.flat0, m)
        self.custom = _custom_columns(self.flat0, m)
        self.forced = custom_types
        self.evidence = {col: [0, True, True] for col in self.custom}
        self.used: dict[str, str] = dict(custom_types or {})
        self.retype = False  # a custom field's type changed after it was written: convert again
        self.counts = _Counts(declared={col: 0 for col in src.header})
        self.positive_seen: set[str] = set()
        self.output_seen: set[str] = set()
        # for the errors: the failed row-level checks, value counts of the outcome and output
        # columns (their 'never occurs' message), the rows kept and the rows dropped (to find a
        # kept row's file row); once a check fails, nothing more is written (``failed``)
        self.problems = _Problems()
        self.failed = False
        self.outcome_counts: dict[Any, int] | None = {}
        self.output_counts: dict[Any, int] | None = {}
        self.n_kept = 0
        self.dropped: list[np.ndarray] = []
        self.time_state = _TimeRuleState() if m.time_rule is not None else None
        self.dst_time = DstNotes()
        self.dst_columns = {col: DstNotes() for col in m.activity_columns}
        self.row_hashes: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])  # per chunk, the two hashes
        self.id_hashes: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
        self.sinks: dict[str, _TableSink] = {}
        self.own_deals = m.deal_column is None and m.contact_column is None  # one deal per row: no merging
        deal_cols = [c.ACCOUNT_ID] if m.account_column is not None and not self.own_deals else []
        self.deals = _FirstRows(c.DEAL_ID, deal_cols, order=[c.CREATED_AT, _POS])
        self.deal_account_tracked = bool(deal_cols)
        self.contacts = self.accounts = self.reps = None
        if m.contact_column is not None:
            extra = [c.ACCOUNT_ID] if m.account_column else []
            self.contacts = _FirstRows(c.TABLES[c.CONTACTS].key, [*extra, *m.contact_fields])
        if m.account_column is not None:
            self.accounts = _FirstRows(c.TABLES[c.ACCOUNTS].key, list(m.account_fields))
        if m.rep_column is not None:
            self.reps = _FirstRows(c.REP_ID, [])
        self.field_order: list[tuple[str, str]] = []  # (file column, activities column)

    def sink(self, name: str) -> _TableSink:
        if name not in self.sinks:
            self.sinks[name] = _TableSink(self.dir / f"{name}.{self.fmt}", self.fmt)
        return self.sinks[name]

    def deal_sink(self) -> _TableSink:
        """Deals of one row each, in file order: Parquet (staged beside a CSV output, see :meth:`finish_deals`)."""
        if c.DEALS not in self.sinks:
            name = f"{c.DEALS}.parquet" if self.fmt == "parquet" else ".deals-staged.parquet"
            self.sinks[c.DEALS] = _TableSink(self.dir / name, "parquet")
        return self.sinks[c.DEALS]

    def finish_deals(self) -> int:
        """One deal per row: the staged deals in order of creation (stable), in the output format."""
        staged = self.sinks[c.DEALS].path
        if not self.counts.monotonic:  # rows out of time order: sort by creation time, file order on ties
            deals = pd.read_parquet(staged)
            deals = deals.iloc[np.argsort(deals[c.CREATED_AT].array.asi8, kind="stable")].reset_index(drop=True)
            staged.unlink()
            write_dataset({c.DEALS: deals}, self.dir, fmt=self.fmt)
        elif self.fmt == "csv":
            sink = _TableSink(self.dir / f"{c.DEALS}.csv", "csv")
            pf = pq.ParquetFile(staged)
            if pf.num_row_groups == 0:
                sink.write(pf.read().to_pandas())
            for i in range(pf.num_row_groups):
                sink.write(pf.read_row_group(i).to_pandas())
            del pf
            staged.unlink()
        return self.counts.rows_written

    def close(self) -> None:
        for s in self.sinks.values():
            s.close()

    def fail(self) -> None:
        """A check failed: write nothing more and let go of what only the dataset needed."""
        if self.failed:
            return
        self.failed = True
        self.close()
        self.row_hashes = ([], [])
        for acc in (self.deals, self.contacts, self.accounts, self.reps):
            if acc is not None:
                acc.parts = []

    # ---- the error

    def problem(self) -> FlatImportError | None:
        """The error :func:`convert_flat` raises for the whole file, or None when every check passed.

        Row-level checks come from :attr:`problems`, whole-file ones from the compact state
        (positive values seen, value counts, rows kept, id hashes); the failing check that comes
        first in :func:`convert_flat`'s order is the error.

        Raises:
            NotStreamable: the error is one the stream cannot word (see the module docstring).
        """
        m, path = self.m, self.src.path
        found = {key: (lambda key=key: self.problems.message(path, key)) for key in self.problems.found}
        for key, column, values, seen, counts, name in (
            ((CHECK_POSITIVE,), m.outcome_column, m.positive, self.positive_seen, self.outcome_counts, "positive"),
            ((CHECK_OUTPUT_POSITIVE,), m.output_column, m.output_positive, self.output_seen, self.output_counts,
             "output_positive"),
        ):
            missing = next((v for v in values if v not in seen), None)
            if column is not None and missing is not None:
                found[key] = (lambda name=name, v=missing, col=column, counts=counts:
                              self._never_occurs(name, v, col, counts))
        if not self.n_kept:
            found[(CHECK_NO_ROWS,)] = lambda: _no_rows_left_message(path)
        if m.id_column is not None and self.id_hashes[0] and not any(k < (CHECK_ID_UNIQUE,) for k in found):
            later, first = _repeats(*self.id_hashes)
            if len(later):
                found[(CHECK_ID_UNIQUE,)] = lambda: self._repeated_id(later, first)
        if not found:
            return None
        return FlatImportError(found[min(found)]())

    def _never_occurs(self, key: str, value: str, column: str, counts: dict[Any, int] | None) -> str:
        if counts is None:
            raise NotStreamable(f"{self.src.path}: {key} value {value!r} never occurs in column {column!r} "
                                f"(more than {VALUE_COUNT_LIMIT:,} distinct values: not counted in a stream)")
        return _positive_missing_message(self.src.path, key, value, column, counts)

    def _file_rows(self, kept: list[int]) -> list[int]:
        """The 0-based file data rows of kept rows (the rows without an outcome were dropped)."""
        dropped = np.sort(np.concatenate(self.dropped)) if self.dropped else np.zeros(0, np.int64)
        before = dropped - np.arange(len(dropped))  # kept rows before each dropped row
        return [k + int(np.searchsorted(before, k, side="right")) for k in kept]

    def _repeated_id(self, later: np.ndarray, first: np.ndarray) -> str:
        """The message of the first id that repeats (in kept-row order), its first two rows read back."""
        a = int(first.min())
        b = int(later[first == a].min())
        row_a, row_b = self._file_rows([a, b])
        records = _fetch_rows(self.src, {row_a, row_b})
        col = self.src.header.index(self.m.id_column)
        value_a, value_b = (records[r][1][col].strip() for r in (row_a, row_b))
        if value_a != value_b:  # two different ids with equal 128-bit hashes
            raise NotStreamable(f"{self.src.path}: column {self.m.id_column!r}: ids {value_a!r} and {value_b!r} "
                                f"hash alike")
        return _duplicate_id_message(self.src.path, self.m.id_column, value_a, _where(row_a, records[row_a][0]),
                                     _where(row_b, records[row_b][0]))

    # ---- one chunk

    def chunk(self, raw: pd.DataFrame, lines: np.ndarray) -> None:
        """Check one chunk (every check of :func:`convert_flat`, in its order) and, while none failed, convert it."""
        m, cnt, report = self.m, self.counts, self.problems
        offset = cnt.rows_read
        flat = FlatFile(self.src.path, self.src.header, raw, lines, self.src.delimiter, self.src.sha256,
                        row_offset=offset)
        if not self.failed:
            for parts, h in zip(self.row_hashes, _row_hashes(raw), strict=True):
                parts.append(h)
        full, declared = _apply_missing(flat, m)
        for col, n in declared.items():
            cnt.declared[col] += n
        all_rows = _Rows(flat, np.arange(len(full)))
        cnt.rows_read += len(full)

        # the checks: a failed one is recorded in self.problems, and the chunk goes on being checked
        outcome_values = full[m.outcome_column]
        self.positive_seen |= set(m.positive) & set(outcome_values.dropna().unique())
        self.outcome_counts = _more_counts(self.outcome_counts, outcome_values)
        outcome = _binary_column(all_rows, outcome_values, m.outcome_column, m.positive, m.negative, "positive",
                                 check_positive=False, report=report)
        no_outcome = _missing_outcomes(all_rows, outcome, m, report)
        if no_outcome.any():
            cnt.no_outcome += int(no_outcome.sum())
            if m.outcome_missing == "negative":
                outcome = np.nan_to_num(outcome, nan=0.0)
            elif m.outcome_missing == "drop":
                self.dropped.append(offset + np.flatnonzero(no_outcome))
        keep = ~np.isnan(outcome)
        self.n_kept += int(keep.sum())
        output = None
        if m.output_column is not None:
            out_values = full[m.output_column]
            self.output_seen |= set(m.output_positive) & set(out_values.dropna().unique())
            self.output_counts = _more_counts(self.output_counts, out_values)
            output = _binary_column(all_rows, out_values, m.output_column, m.output_positive, m.output_negative,
                                    "output_positive", check_positive=False, report=report, stage=CHECK_OUTPUT_VALUE)
            output = np.nan_to_num(output, nan=0.0)[keep]
        occurred_all = None
        if self.time_state is not None and not report.beaten(CHECK_TIME):
            occurred_all, _ = _derive_time(all_rows, full, m.time_rule, self.time_state, report)
        if not keep.any():
            if report.found:
                self.fail()
            return
        data = full[keep].reset_index(drop=True)
        outcome = outcome[keep]
        kept = np.flatnonzero(keep)
        rows = _Rows(flat, kept)
        positions = offset + kept  # 0-based data rows of the file

        if m.id_column is None:
            activity_id = None
        else:
            activity_id = _id_column(rows, data, m, report)
            if report.beaten(CHECK_ID_UNIQUE):
                self.id_hashes[0].clear()
                self.id_hashes[1].clear()
            else:
                for parts, h in zip(self.id_hashes, _row_hashes(activity_id), strict=True):
                    parts.append(h)
        occurred = types = None
        if occurred_all is not None:
            occurred = occurred_all[keep].reset_index(drop=True)
        elif self.time_state is None and not report.beaten(CHECK_TIME):
            occurred = _parse_time_column(rows, data, m, self.dst_time, report)
        if not report.beaten(CHECK_TYPE):
            types = _types(rows, data, m, report)
        mapped: dict[str, pd.Series] = {}
        if not report.beaten(CHECK_ACTIVITY_COLUMNS):
            for i, (col, target) in enumerate(m.activity_columns.items()):
                mapped[target] = _contract_column(rows, data[col], col, target, timezone=m.timezone,
                                                  dst=self.dst_columns[col], report=report,
                                                  stage=(CHECK_ACTIVITY_COLUMNS, i))
        if self.contacts is not None and not report.beaten(CHECK_CONTACT_FIELDS):
            _check_entity_fields(rows, data, c.CONTACTS, m.contact_fields, m, report)
        if self.accounts is not None and not report.beaten(CHECK_ACCOUNT_FIELDS):
            _check_entity_fields(rows, data, c.ACCOUNTS, m.account_fields, m, report)
        if report.found:
            self.fail()
            return
        assert occurred is not None and types is not None

        # the conversion
        first_written = cnt.rows_written
        n = len(data)
        cnt.rows_written += n
        if activity_id is None:
            activity_id = pd.Series([f"row-{p + 1}" for p in positions], dtype="string")
        if cnt.monotonic and (not occurred.is_monotonic_increasing
                              or (cnt.last_time is not None and occurred.iloc[0] < cnt.last_time)):
            cnt.monotonic = False
        cnt.last_time = occurred.iloc[-1]
        lo, hi = occurred.min(), occurred.max()
        cnt.time_min = lo if cnt.time_min is None else min(cnt.time_min, lo)
        cnt.time_max = hi if cnt.time_max is None else max(cnt.time_max, hi)

        def key(col: str | None) -> pd.Series | None:
            return None if col is None else data[col].astype("string")

        contact_id, account_id, rep_id, deal_key = (
            key(m.contact_column), key(m.account_column), key(m.rep_column), key(m.deal_column)
        )
        deal_id = "deal-" + activity_id
        if contact_id is not None:
            deal_id = ("deal-" + contact_id).fillna(deal_id)
        if deal_key is not None:
            deal_id = deal_key.fillna(deal_id)
        deal_id = deal_id.astype("string")

        activities: dict[str, pd.Series] = {
            c.ACTIVITY_ID: activity_id,
            c.OCCURRED_AT: occurred,
            c.TYPE: types,
            c.DEAL_ID: deal_id,
        }
        for name, values in ((c.REP_ID, rep_id), (c.CONTACT_ID, contact_id), (c.ACCOUNT_ID, account_id)):
            if values is not None:
                activities[name] = values
        activities.update(mapped)
        for col in self.custom:
            activities[col] = self.custom_field(col, data[col])
        for name, values in activities.items():
            if name in (c.ACTIVITY_ID, c.OCCURRED_AT, c.TYPE, c.DEAL_ID, c.REP_ID, c.CONTACT_ID, c.ACCOUNT_ID):
                continue
            cnt.missing[name] = cnt.missing.get(name, 0) + int(values.isna().sum())
            cnt.types.setdefault(name, _field_report(name, c.ACTIVITIES, name, values, {}, m).type)

        offset_td = pd.Timedelta(seconds=m.outcome_offset_seconds)
        pos = outcome == 1.0
        cnt.n_positive += int(pos.sum())
        outcomes = pd.DataFrame(
            {
                c.DEAL_ID: deal_id[pos].reset_index(drop=True),
                c.OUTCOME: pd.Series([m.outcome_name] * int(pos.sum()), dtype="string"),
                c.OCCURRED_AT: (occurred[pos] + offset_td).reset_index(drop=True),
            }
        )
        if contact_id is not None:
            outcomes[c.CONTACT_ID] = contact_id[pos].reset_index(drop=True)
        responses = None
        if output is not None:
            hit = output == 1.0
            cnt.n_outputs += int(hit.sum())
            responses = pd.DataFrame(
                {
                    c.ACTIVITY_ID: activity_id[hit].reset_index(drop=True),
                    c.RESPONSE: pd.Series([m.output_response] * int(hit.sum()), dtype="string"),
                    c.OCCURRED_AT: (occurred[hit] + offset_td).reset_index(drop=True),
                }
            )

        # deals: the first activity of each deal (earliest time, then file order)
        deals = pd.DataFrame({c.DEAL_ID: deal_id, c.CREATED_AT: occurred})
        if account_id is not None:
            deals[c.ACCOUNT_ID] = account_id
        if self.own_deals:
            if not self.retype:
                self.deal_sink().write(deals)
        else:
            deals[_POS] = np.arange(first_written, first_written + n, dtype=np.int64)
            self.deals.add(deals)

        # contacts, accounts, reps
        if self.contacts is not None:
            frame = pd.DataFrame({c.TABLES[c.CONTACTS].key: data[m.contact_column],
                                  **({c.ACCOUNT_ID: data[m.account_column]} if m.account_column else {}),
                                  **{f: data[f] for f in m.contact_fields}})
            self.contacts.add(frame[frame.iloc[:, 0].notna().to_numpy(bool)])
        if self.accounts is not None:
            frame = pd.DataFrame({c.TABLES[c.ACCOUNTS].key: data[m.account_column],
                                  **{f: data[f] for f in m.account_fields}})
            self.accounts.add(frame[frame.iloc[:, 0].notna().to_numpy(bool)])
        if self.reps is not None and rep_id is not None:
            self.reps.add(pd.DataFrame({c.REP_ID: rep_id.dropna()}))

        if not self.retype:
            self.sink(c.ACTIVITIES).write(pd.DataFrame(activities))
            self.sink(c.OUTCOMES).write(outcomes)
            if responses is not None:
                self.sink(c.RESPONSES).write(responses)

    def custom_field(self, col: str, values: pd.Series) -> pd.Series:
        """A custom field of one chunk, typed as :func:`features.dataset.infer_custom` types the whole column.

        The chunk's values add to what the file so far says (non-empty values, all numbers,
        all true/false); a question already answered no is not asked again (``to_numeric`` is
        the cost). The type the column was first written with is kept; when the file so far
        says otherwise, :attr:`retype` asks for a second pass.
        """
        ev = self.evidence[col]
        s = values  # stripped, empty and declared-missing cells <NA>: what infer_custom's _as_string gives
        n_values = int(s.notna().sum())
        numeric = low = None
        if n_values and ev[1]:
            numeric = _numbers(s)
            ev[1] = int(numeric.notna().sum()) == n_values
        if n_values and ev[2]:
            low = s.str.lower()
            ev[2] = int(low.isin(["true", "false"]).sum()) == n_values
        ev[0] += n_values
        if col not in self.used:
            self.used[col] = _custom_kind(*ev)
        if self.forced is None and _custom_kind(*ev) != self.used[col]:
            self.retype = True
        kind = self.used[col]
        if kind == _NUMBER:
            return _numbers(s) if numeric is None else numeric
        if kind == _TRUE_FALSE:
            low = s.str.lower() if low is None else low
            return (low == "true").astype("float64").where(s.notna())
        return s.astype("string")

    # ---- the end

    def finish(self) -> tuple[list[str], dict, FlatImportReport]:
        """Write the entity tables of a file that passed every check (:meth:`problem`); returns written table names, meta, report."""
        m, cnt = self.m, self.counts
        later, first = _repeats(*self.row_hashes)
        n_dup = len(later)
        dup_examples = [(int(a) + 1, int(b) + 1) for a, b in zip(first[:3], later[:3], strict=True)]

        warnings: list[str] = []
        if cnt.no_outcome:
            verb = "counted as not positive" if m.outcome_missing == "negative" else "dropped"
            warnings.append(f"{cnt.no_outcome} rows without an outcome were {verb}")

        fields: list[FieldReport] = []
        names = [*(m.activity_columns.items()), *((col, col) for col in self.custom)]
        for col, target in names:
            fields.append(FieldReport(
                column=col, table=c.ACTIVITIES, name=target, type=cnt.types[target],
                timing="execution" if col in m.execution_time else "plan",
                n_missing=cnt.missing[target], n_declared_missing=cnt.declared.get(col, 0),
            ))

        written = [c.ACTIVITIES, c.OUTCOMES] + ([c.RESPONSES] if m.output_column is not None else [])
        self.close()
        tables: dict[str, pd.DataFrame] = {}
        if self.own_deals:
            n_deals = self.finish_deals()
        else:
            deals, n_vary = self.deals.result()
            if self.deal_account_tracked and n_vary[c.ACCOUNT_ID]:
                warnings.append(f"{n_vary[c.ACCOUNT_ID]} deals have activities on more than one account; "
                                f"the earliest is kept")
            tables[c.DEALS] = deals.drop(columns=_POS, errors="ignore")
            n_deals = len(deals)
        written.append(c.DEALS)

        n_contacts = n_accounts = None
        for table, acc, fields_of in ((c.CONTACTS, self.contacts, m.contact_fields),
                                      (c.ACCOUNTS, self.accounts, m.account_fields)):
            if acc is None:
                continue
            frame, n_vary = acc.result()
            for col, k in n_vary.items():
                if k:
                    warnings.append(f"{col!r}: {k} {acc.key} values carry more than one value; the first row's is kept")
            if frame.empty:
                frame = pd.DataFrame({col: pd.Series([], dtype="string") for col in [acc.key, *acc.tracked]})
            tables[table] = _type_entity_fields(self.flat0, frame, table, fields_of, cnt.declared, m, fields)
            written.append(table)
            if table == c.CONTACTS:
                n_contacts = len(frame)
            else:
                n_accounts = len(frame)
        if self.reps is not None:
            reps, _ = self.reps.result()
            values = reps[c.REP_ID] if len(reps) else []
            tables[c.REPS] = pd.DataFrame({c.REP_ID: pd.Series(values, dtype="string")})
            written.append(c.REPS)

        if self.time_state is not None:
            time_notes = _time_rule_notes(m.time_rule, self.time_state)
        else:
            time_notes = [f"from column {m.time_column!r}" + (f"; naive times are {m.timezone}"
                                                              if m.timezone != "UTC" else "")]
        if not cnt.monotonic:
            time_notes.append("rows are not in time order (kept in file order)")
        dst = DstNotes()
        for notes in (self.dst_time, *self.dst_columns.values()):
            dst.ambiguous += notes.ambiguous
            dst.nonexistent += notes.nonexistent
            dst.examples.extend(notes.examples[:3])

        exec_fields = sorted(f"{c.ACTIVITIES}.{m.activity_columns.get(col, col)}" for col in m.execution_time)
        deal_unit = "deal key" if m.deal_column else "contact" if m.contact_column else "row"
        meta = {
            "execution_time_fields": exec_fields,
            "source": self.src.path.name,
            "notes": (
                f"imported by activity-scorer import-flat from {self.src.path.name} (sha256 {self.src.sha256}); "
                f"one deal per {deal_unit}; a positive {m.outcome_column!r} is outcome {m.outcome_name!r} "
                f"{m.outcome_offset_seconds:g} s after the activity"
            ),
        }
        write_dataset(tables, self.dir, fmt=self.fmt)
        n = cnt.rows_written
        report = FlatImportReport(
            source=str(self.src.path),
            sha256=self.src.sha256,
            delimiter=self.src.delimiter,
            rows_read=cnt.rows_read,
            rows_written=n,
            rows_dropped=cnt.rows_read - n,
            fields=fields,
            duplicate_rows=n_dup,
            duplicate_examples=dup_examples,
            n_positive=cnt.n_positive,
            outcome_rate=cnt.n_positive / n,
            n_outputs=cnt.n_outputs if m.output_column is not None else None,
            n_deals=n_deals,
            n_contacts=n_contacts,
            n_accounts=n_accounts,
            time_from=cnt.time_min.isoformat(),
            time_to=cnt.time_max.isoformat(),
            time_notes=time_notes + _dst_note(dst, m.timezone),
            execution_time_fields=exec_fields,
            warnings=warnings,
        )
        return written, meta, report


def _run_pass(src: _Source, m: FlatMapping, directory: Path, fmt: str, custom_types: dict[str, str] | None,
              chunk_rows: int, state: _ReadState) -> _Pass:
    p = _Pass(src, m, directory, fmt, custom_types)
    try:
        chunks = _chunks(src, chunk_rows, state)
        if m.time_rule is not None:
            chunks = _month_chunks(chunks, m.time_rule.month)
        for raw, lines in chunks:
            p.chunk(raw, lines)
    finally:
        p.close()
    return p


def stream_convert(source: Path | str, mapping: FlatMapping, directory: Path, fmt: str = "parquet",
                   chunk_rows: int | None = None) -> tuple[list[Path], FlatImportReport]:
    """Convert ``source`` chunk by chunk, writing the dataset files into ``directory`` (which must be empty).

    Returns:
        The files written (tables in the order :func:`convert_flat` returns them, then
        ``dataset.json``) and the report.

    Raises:
        FlatImportError: the file or the mapping has a problem; the message is the one
            :func:`read_flat` and :func:`convert_flat` give for the whole file.
        NotStreamable: a problem the stream does not word, or a file it cannot convert
            (the kinds are listed in the module docstring): the in-memory path's turn.
    """
    m = mapping
    chunk_rows = chunk_rows or STREAM_CHUNK_ROWS
    src = _open_source(Path(source), m.delimiter, m.encoding)
    refused = src.header_problem
    if refused is None:
        try:
            _check_columns(FlatFile(src.path, src.header, pd.DataFrame(columns=src.header), np.zeros(0, np.int64),
                                    src.delimiter, src.sha256), m)
        except FlatImportError as err:
            refused = str(err)
    if refused is not None:  # nothing can be converted; but a problem reading the file comes first
        state = _ReadState()
        for _ in _chunks(src, chunk_rows, state, frames=False):
            pass
        raise FlatImportError(state.problem(src) or refused)
    state = _ReadState()
    p = _run_pass(src, m, directory, fmt, None, chunk_rows, state)
    problem = state.problem(src)
    if problem is not None:
        raise FlatImportError(problem)
    error = p.problem()
    if error is not None:
        raise error
    if p.retype:
        # a custom field's type changed after its first chunk was written: again, types known
        types = {col: _custom_kind(*ev) for col, ev in p.evidence.items()}
        logger.info("import-flat: custom field types changed down the file; converting again with %s", types)
        for f in directory.iterdir():
            f.unlink()
        p = _run_pass(src, m, directory, fmt, types, chunk_rows, _ReadState())
        assert not p.retype
    tables, meta, report = p.finish()
    files = [directory / f"{name}.{fmt}" for name in tables]
    meta_path = directory / c.DATASET_META_FILE
    write_dataset({}, directory, fmt=fmt, meta=meta)
    return [*files, meta_path], report


def finish_output(staged: list[Path], out: Path, overwrite: bool) -> list[Path]:
    """Move the complete dataset from its temporary directory into ``out`` (refusing a non-empty ``out``)."""
    prepare_output(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    moved = []
    for path in staged:
        target = out / path.name
        shutil.move(path, target)  # a rename: the staging directory is beside out
        moved.append(target)
    return moved


def staging_directory(out: Path) -> Path:
    """A new empty directory beside ``out`` for the dataset being written."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.importing-", dir=out.parent))


def remove_staging(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)


__all__ = ["STREAM_CHUNK_ROWS", "NotStreamable", "finish_output", "remove_staging", "staging_directory",
           "stream_convert"]
