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

Errors: the streaming pass runs every check the in-memory conversion runs (the row-level ones
on each chunk, the whole-file ones on the compact state). When one fails, it does not word
the error itself: :func:`importers.flat.import_flat` reads the file again with the in-memory
path, which raises the error it always raised (same message, same first row and line). A bad
file therefore costs the in-memory path's memory on its way to the error; a good file never
does.

The dataset is written to a temporary directory beside the output directory and moved in
only when complete; on any error the temporary directory is removed.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features import contract as c
from features.dataset import csv_text_frame, write_dataset
from importers.crm.times import DstNotes
from importers.flat import (
    _MONTHS,
    FieldReport,
    FlatFile,
    FlatImportError,
    FlatImportReport,
    FlatMapping,
    _apply_missing,
    _binary_column,
    _check_columns,
    _contract_column,
    _custom_columns,
    _derive_time,
    _dst_note,
    _field_report,
    _parse_time_column,
    _Rows,
    _time_rule_notes,
    _TimeRuleState,
    _type_entity_fields,
    _types,
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


class NotStreamable(Exception):  # a signal first, a message only when the file cannot be read whole
    """The streaming pass found a problem; the in-memory path words the error (or converts).

    The message says what the streaming pass saw (its first problem, counted in the rows read
    so far); it is shown only when the file is too large for the in-memory path.
    """


# --------------------------------------------------------------------------- reading


@dataclass
class _Source:
    """A flat file opened for chunked reading (the header read, the delimiter known)."""

    path: Path
    encoding: str
    delimiter: str
    header: list[str]
    sha256: str


def _open_source(path: Path, delimiter: str | None, encoding: str) -> _Source:
    """Hash the file and find its header and delimiter; anything unusual is :class:`NotStreamable`."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        with open(path, encoding=encoding, newline="") as f:
            sample = f.read(65536)
            if delimiter is None:
                delimiter = detect_delimiter(sample, path)
            f.seek(0)
            reader = csv.reader(f, delimiter=delimiter, strict=True)
            header = None
            for record in reader:
                if not record or (len(record) == 1 and not record[0].strip()):
                    continue
                header = [h.strip() for h in record]
                break
    except (OSError, UnicodeDecodeError, csv.Error, FlatImportError) as err:
        raise NotStreamable(f"{path}: {err}") from err
    if (header is None or any(not h or h.startswith(_INTERNAL) for h in header)
            or len(set(header)) != len(header)):
        raise NotStreamable(f"{path}: the header is missing, has an empty name or repeats a name")
    return _Source(Path(path), encoding, delimiter, header, digest.hexdigest())


def _chunks(src: _Source, chunk_rows: int):
    """Yield ``(frame, lines)`` per chunk: stripped string cells (``<NA>`` when empty), as :func:`read_flat` reads.

    Raises :class:`NotStreamable` on a ragged row, malformed CSV, bad text or no data rows.
    """
    n_cols = len(src.header)
    rows: list[list[str]] = []
    lines: list[int] = []
    n_rows = 0
    header_seen = False
    prev_end = 0

    def frame() -> pd.DataFrame:
        data = pd.DataFrame(rows, columns=src.header, dtype="string")
        for col in src.header:
            s = data[col].str.strip()
            data[col] = s.mask(s == "")
        return data

    try:
        with open(src.path, encoding=src.encoding, newline="") as f:
            reader = csv.reader(f, delimiter=src.delimiter, strict=True)
            for record in reader:
                start = prev_end + 1
                prev_end = reader.line_num
                if not record or (len(record) == 1 and not record[0].strip()):
                    continue
                if not header_seen:
                    header_seen = True
                    continue
                if len(record) != n_cols:
                    raise NotStreamable(f"{src.path}: data row {n_rows + 1} (line {start}) has {len(record)} fields, "
                                        f"the header has {n_cols}; is the delimiter {src.delimiter!r} right?")
                rows.append(record)
                lines.append(start)
                n_rows += 1
                if len(rows) >= chunk_rows:
                    yield frame(), np.asarray(lines, dtype=np.int64)
                    rows, lines = [], []
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise NotStreamable(f"{src.path}: after data row {n_rows}: {err}") from err
    if not n_rows:
        raise NotStreamable(f"{src.path}: the file has a header but no data rows")
    if rows:
        yield frame(), np.asarray(lines, dtype=np.int64)


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

    # ---- one chunk

    def chunk(self, raw: pd.DataFrame, lines: np.ndarray) -> None:
        m, cnt = self.m, self.counts
        offset = cnt.rows_read
        flat = FlatFile(self.src.path, self.src.header, raw, lines, self.src.delimiter, self.src.sha256,
                        row_offset=offset)
        for parts, h in zip(self.row_hashes, _row_hashes(raw), strict=True):
            parts.append(h)
        full, declared = _apply_missing(flat, m)
        for col, n in declared.items():
            cnt.declared[col] += n
        all_rows = _Rows(flat, np.arange(len(full)))
        cnt.rows_read += len(full)

        outcome_values = full[m.outcome_column]
        self.positive_seen |= set(m.positive) & set(outcome_values.dropna().unique())
        outcome = _binary_column(all_rows, outcome_values, m.outcome_column, m.positive, m.negative, "positive",
                                 check_positive=False)
        no_outcome = np.isnan(outcome)
        if no_outcome.any():
            if m.outcome_missing == "error":
                raise all_rows.error(
                    int(np.flatnonzero(no_outcome)[0]), m.outcome_column,
                    "the outcome is missing; set outcome_missing to 'negative' or 'drop'",
                )
            cnt.no_outcome += int(no_outcome.sum())
            if m.outcome_missing == "negative":
                outcome = np.nan_to_num(outcome, nan=0.0)
        keep = ~np.isnan(outcome)
        output = None
        if m.output_column is not None:
            out_values = full[m.output_column]
            self.output_seen |= set(m.output_positive) & set(out_values.dropna().unique())
            output = _binary_column(all_rows, out_values, m.output_column, m.output_positive, m.output_negative,
                                    "output_positive", check_positive=False)
            output = np.nan_to_num(output, nan=0.0)[keep]
        occurred_all = None
        if self.time_state is not None:
            occurred_all, _ = _derive_time(all_rows, full, m.time_rule, self.time_state)
        if not keep.any():
            return
        data = full[keep].reset_index(drop=True)
        outcome = outcome[keep]
        kept = np.flatnonzero(keep)
        rows = _Rows(flat, kept)
        positions = offset + kept  # 0-based data rows of the file
        first_written = cnt.rows_written
        n = len(data)
        cnt.rows_written += n

        if m.id_column is None:
            activity_id = pd.Series([f"row-{p + 1}" for p in positions], dtype="string")
        else:
            activity_id = data[m.id_column].astype("string")
            if activity_id.isna().any():
                raise rows.error(int(np.flatnonzero(activity_id.isna().to_numpy(bool))[0]), m.id_column,
                                 "the id is empty")
            for parts, h in zip(self.id_hashes, _row_hashes(activity_id), strict=True):
                parts.append(h)

        if occurred_all is not None:
            occurred = occurred_all[keep].reset_index(drop=True)
        else:
            occurred = _parse_time_column(rows, data, m, self.dst_time)
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
            c.TYPE: _types(rows, data, m),
            c.DEAL_ID: deal_id,
        }
        for name, values in ((c.REP_ID, rep_id), (c.CONTACT_ID, contact_id), (c.ACCOUNT_ID, account_id)):
            if values is not None:
                activities[name] = values
        for col, target in m.activity_columns.items():
            activities[target] = _contract_column(rows, data[col], col, target, timezone=m.timezone,
                                                  dst=self.dst_columns[col])
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
            for col in m.contact_fields:
                if c.TABLES[c.CONTACTS].kind(col) is not None:
                    _contract_column(rows, data[col], col, col, c.CONTACTS, m.timezone)
            frame = pd.DataFrame({c.TABLES[c.CONTACTS].key: data[m.contact_column],
                                  **({c.ACCOUNT_ID: data[m.account_column]} if m.account_column else {}),
                                  **{f: data[f] for f in m.contact_fields}})
            self.contacts.add(frame[frame.iloc[:, 0].notna().to_numpy(bool)])
        if self.accounts is not None:
            for col in m.account_fields:
                if c.TABLES[c.ACCOUNTS].kind(col) is not None:
                    _contract_column(rows, data[col], col, col, c.ACCOUNTS, m.timezone)
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
        """Check what needs the whole file, write the entity tables; returns written table names, meta, report."""
        m, cnt = self.m, self.counts
        missing = next((v for v in m.positive if v not in self.positive_seen), None)
        if missing is not None:
            raise NotStreamable(f"{self.src.path}: positive value {missing!r} never occurs in column "
                                f"{m.outcome_column!r}")
        missing = next((v for v in m.output_positive if v not in self.output_seen), None)
        if m.output_column is not None and missing is not None:
            raise NotStreamable(f"{self.src.path}: output_positive value {missing!r} never occurs in column "
                                f"{m.output_column!r}")
        if not cnt.rows_written:
            raise NotStreamable(f"{self.src.path}: no rows left after dropping the rows without an outcome")
        if self.id_hashes[0] and len(_repeats(*self.id_hashes)[0]):
            raise NotStreamable(f"{self.src.path}: column {m.id_column!r}: an id appears more than once; "
                                f"ids must be unique (leave id_column out to use row numbers)")
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
              chunk_rows: int) -> _Pass:
    p = _Pass(src, m, directory, fmt, custom_types)
    try:
        chunks = _chunks(src, chunk_rows)
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
        NotStreamable: the file or the mapping has a problem (the in-memory path words it).
    """
    m = mapping
    chunk_rows = chunk_rows or STREAM_CHUNK_ROWS
    src = _open_source(Path(source), m.delimiter, m.encoding)
    try:
        p = _run_pass(src, m, directory, fmt, None, chunk_rows)
        if p.retype:
            # a custom field's type changed after its first chunk was written: again, types known
            types = {col: _custom_kind(*ev) for col, ev in p.evidence.items()}
            logger.info("import-flat: custom field types changed down the file; converting again with %s", types)
            for f in directory.iterdir():
                f.unlink()
            p = _run_pass(src, m, directory, fmt, types, chunk_rows)
            assert not p.retype
        tables, meta, report = p.finish()
    except FlatImportError as err:  # a row-level check of a chunk failed
        raise NotStreamable(str(err)) from err
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
