"""Flat exports (one row per call or email, the outcome in a column) into a dataset.

A flat table is converted into the data contract (shared/DATA_CONTRACT.md) under a
:class:`FlatMapping`, read from a small YAML file (:func:`load_mapping`) or built
from options (:func:`mapping_from_dict`). The mapping says which column is the id,
the time (or the rule that derives it), the activity type, the keys, the outcome
and which values count as positive; every other column becomes a custom field.

How a row becomes contract rows:

- one ``activities`` row per kept file row;
- the row's deal is the deal key when the mapping has one, else its contact (one
  deal per contact, ``deal-<contact_id>``), else the row itself (``deal-<activity_id>``);
  a ``deals`` row is written for every deal, created at its first activity;
- a positive outcome value writes an ``outcomes`` row on that deal
  ``outcome_offset_seconds`` (default 1 s) after the activity, so it falls strictly
  after the activity and inside the label horizon;
- a positive output value writes a ``responses`` row likewise;
- custom fields go to ``activities`` unless listed in ``contact_fields`` /
  ``account_fields``; fields listed in ``execution_time`` (known only after the
  activity) are recorded in ``dataset.json`` so plan-time models never use them.

Every problem raises :class:`FlatImportError` with a message that names the
mapping key, the column and the row (1-based data row and file line).
"""

from __future__ import annotations

import calendar
import codecs
import csv
import difflib
import hashlib
import io
import logging
import re
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import yaml

from features import contract as c
from features.dataset import infer_custom, write_dataset
from importers.crm.times import (
    FIRST_YEAR,
    LAST_YEAR,
    OFFSET_PATTERN,
    SUPPORTED_YEARS,
    DstNotes,
    beyond_nanoseconds,
    localize_wall_clock,
)

logger = logging.getLogger(__name__)

ROW_NUMBER = "row_number"
MONTH_SEQUENCE = "month_sequence"
OUTCOME_MISSING_POLICIES = ("error", "negative", "drop")
DEFAULT_OUTCOME_NAME = "converted"
DEFAULT_OUTPUT_RESPONSE = "replied"
DEFAULT_DELIMITERS = (",", ";", "\t", "|")
ALL_COLUMNS = "*"

# Contract columns of activities a file column may be mapped onto with `activity_columns`
# (ids, time, type and keys have their own mapping keys).
MAPPABLE_ACTIVITY_COLUMNS = (
    c.DIRECTION,
    c.DURATION_S,
    c.PERSONALIZATION,
    c.IS_AUTOMATED,
    c.SEQUENCE_STEP,
    c.LOGGED_AT,
)

_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_abbr) if name}
_MONTHS |= {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
_MONTHS |= {str(i): i for i in range(1, 13)} | {f"{i:02d}": i for i in range(1, 10)}
_WEEKDAYS = {name.lower(): i for i, name in enumerate(calendar.day_abbr)}
_WEEKDAYS |= {name.lower(): i for i, name in enumerate(calendar.day_name)}


class FlatImportError(ValueError):
    """A mapping that is malformed or does not fit the file; the message names key, column and row."""


# --------------------------------------------------------------------------- checks and their order

# The order in which :func:`convert_flat` checks a file, after reading it: the error it raises is
# the first check in this order that fails (its first row, its count over the whole file). Each
# row-level check is reported with a key that starts with its stage, e.g. ``(CHECK_TIME, 1, 0)``;
# keys compare as tuples. The streaming import (:mod:`importers.flat_stream`) runs every check on
# every chunk and raises the failing check with the smallest key, so it names what this path names.
(CHECK_POSITIVE, CHECK_OUTCOME_VALUE, CHECK_OUTCOME_MISSING, CHECK_OUTPUT_POSITIVE, CHECK_OUTPUT_VALUE,
 CHECK_NO_ROWS, CHECK_ID_EMPTY, CHECK_ID_UNIQUE, CHECK_TIME, CHECK_TYPE, CHECK_ACTIVITY_COLUMNS,
 CHECK_CONTACT_FIELDS, CHECK_ACCOUNT_FIELDS) = range(13)

CheckKey = tuple[int, ...]
# the text of a failed row-level check, from the value at its first failing row and how many rows fail
CheckText = Callable[[Any, int], str]


def _raise_first(key: CheckKey, rows: "_Rows", column: str, mask: np.ndarray | pd.Series,
                 values: pd.Series | None, text: CheckText) -> None:
    """How the in-memory conversion reports a row-level check: raise its error at the first failing row.

    Args:
        key: the check's place in the order of checks (unused here: the first failure raises).
        rows: the rows checked (to name the file row and line).
        column: the file column the check is about.
        mask: the failing rows (positions in ``rows``).
        values: per row, what the text quotes (the cell, or a computed value); None if nothing.
        text: words the error from the first failing row's value and the number of failing rows.

    Raises:
        FlatImportError: when any row fails.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.any():
        i = _first(mask)
        raise rows.error(i, column, text(None if values is None else values.iloc[i], int(mask.sum())))


Report = Callable[[CheckKey, "_Rows", str, Any, "pd.Series | None", CheckText], None]


def _where(row: int, line: int) -> str:
    """Human position of 0-based data row ``row`` starting on file ``line``: ``data row 5 (line 6)``."""
    return f"data row {row + 1} (line {line})"


def _row_message(path: Path | str, where: str, column: str, message: str) -> str:
    """An error at a row: ``FILE: data row 5 (line 6), column 'x': MESSAGE``."""
    return f"{path}: {where}, column {column!r}: {message}"


# --------------------------------------------------------------------------- reading errors (shared wording)


def _cannot_read_message(path: Path | str, err: OSError) -> str:
    return f"{path}: cannot read ({err.strerror or err})"


def _bad_text_line(path: Path | str, encoding: str, block_bytes: int = 1 << 20) -> int | None:
    """The line of the first bytes of ``path`` that are not valid ``encoding`` text, or None when all are.

    Decodes the file a block at a time (never the whole file); the failing block is decoded
    again byte by byte to find the line, which is one more than the newlines decoded before it.
    """
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    newlines = 0
    with open(path, "rb") as f:
        while True:
            block = f.read(block_bytes)
            state = decoder.getstate()
            try:
                newlines += decoder.decode(block, final=not block).count("\n")
            except UnicodeDecodeError:
                decoder.setstate(state)
                for k in range(len(block)):
                    try:
                        newlines += decoder.decode(block[k:k + 1]).count("\n")
                    except UnicodeDecodeError:
                        break
                return newlines + 1
            if not block:
                return None


def _bad_text_message(path: Path | str, line: int, encoding: str) -> str:
    return f"{path}: line {line} is not valid {encoding} text; set the mapping key encoding"


def _malformed_message(path: Path | str, line: int, err: csv.Error) -> str:
    return f"{path}: line {line}: malformed CSV ({err})"


def _header_problem(path: Path | str, header: list[str] | None) -> str | None:
    """What is wrong with a header (none at all, an empty name, a name twice), or None."""
    if header is None:
        return f"{path}: the file is empty (no header line)"
    for i, name in enumerate(header):
        if not name:
            return f"{path}: header field {i + 1} is empty; every column needs a name"
    dups = sorted({h for h in header if header.count(h) > 1})
    if dups:
        return f"{path}: column {dups[0]!r} appears more than once in the header"
    return None


def _ragged_message(path: Path | str, first: tuple[int, int, int], n_bad: int, n_header: int,
                    delimiter: str) -> str:
    """Rows whose number of fields differs from the header's: ``first`` is (data row, line, fields)."""
    row, line, n = first
    more = f" ({n_bad - 1} more such rows)" if n_bad > 1 else ""
    return (f"{path}: data row {row} (line {line}) has {n} fields, the header has {n_header}{more}; "
            f"is the delimiter {delimiter!r} right?")


def _no_rows_message(path: Path | str) -> str:
    return f"{path}: the file has a header but no data rows"


# --------------------------------------------------------------------------- whole-file errors (shared wording)


def _value_counts(values: pd.Series) -> dict[Any, int]:
    """How often each value occurs (a missing value counts under None), in order of first appearance."""
    codes, uniques = pd.factorize(values)
    n_unique = len(uniques)
    codes = np.where(codes < 0, n_unique, codes)
    present, first_at = np.unique(codes, return_index=True)
    counts = np.bincount(codes, minlength=n_unique + 1)
    keys = [*uniques, None]
    return {keys[k]: int(counts[k]) for k in present[np.argsort(first_at, kind="stable")]}


def _add_counts(total: dict[Any, int], more: dict[Any, int]) -> None:
    for value, n in more.items():
        total[value] = total.get(value, 0) + n


def _counts_text(counts: dict[Any, int], limit: int = 8) -> str:
    """The most frequent values with their counts (ties in order of first appearance)."""
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    parts = [f"{'<empty>' if v is None else repr(v)} ({n})" for v, n in ranked[:limit]]
    more = f", ... {len(ranked) - limit} more" if len(ranked) > limit else ""
    return ", ".join(parts) + more


def _positive_missing_message(path: Path | str, key: str, value: str, column: str, counts: dict[Any, int]) -> str:
    return f"{path}: {key} value {value!r} never occurs in column {column!r}; its values are: {_counts_text(counts)}"


def _no_rows_left_message(path: Path | str) -> str:
    return f"{path}: no rows left after dropping the rows without an outcome"


def _duplicate_id_message(path: Path | str, column: str, value: str, first: str, second: str) -> str:
    return (f"{path}: column {column!r}: id {value!r} appears in {first} and {second}; "
            f"ids must be unique (leave id_column out to use row numbers)")


# --------------------------------------------------------------------------- mapping


@dataclass(frozen=True)
class TimeRule:
    """Derive ``occurred_at`` from a month column in a file sorted by date (no year column).

    The year starts at ``start`` and goes up by one each time the month number goes
    down from one row to the next. Within a month, each run of consecutive rows
    with the same ``day_of_week`` is one calendar day: the earliest day of that
    weekday after the previous run's day. Without ``day_of_week`` the rows of a
    month are spread evenly over its days in file order. The rows of one day are
    spread evenly over ``hours`` (written as UTC) in file order; with equal hours
    (``[12, 12]``) they all get that hour, so no time of day is invented.
    """

    month: str
    start: str
    day_of_week: str | None = None
    hours: tuple[int, int] = (9, 18)
    kind: str = MONTH_SEQUENCE


@dataclass(frozen=True)
class FlatMapping:
    """How the columns of a flat export become contract tables (see module docstring).

    ``missing`` maps a column name (or ``"*"`` for every column) to the values that
    mean "missing" in it; an empty cell is always missing.
    """

    outcome_column: str
    positive: tuple[str, ...]
    time_column: str | None = None
    time_rule: TimeRule | None = None
    time_format: str | None = None
    timezone: str = "UTC"
    id_column: str | None = None
    type: str | None = None
    type_column: str | None = None
    type_values: dict[str, str] = field(default_factory=dict)
    deal_column: str | None = None
    contact_column: str | None = None
    account_column: str | None = None
    rep_column: str | None = None
    negative: tuple[str, ...] = ()
    outcome_name: str = DEFAULT_OUTCOME_NAME
    outcome_missing: str = "error"
    outcome_offset_seconds: float = 1.0
    output_column: str | None = None
    output_positive: tuple[str, ...] = ()
    output_negative: tuple[str, ...] = ()
    output_response: str = DEFAULT_OUTPUT_RESPONSE
    missing: dict[str, tuple[str, ...]] = field(default_factory=dict)
    execution_time: tuple[str, ...] = ()
    contact_fields: tuple[str, ...] = ()
    account_fields: tuple[str, ...] = ()
    activity_columns: dict[str, str] = field(default_factory=dict)
    drop: tuple[str, ...] = ()
    delimiter: str | None = None
    encoding: str = "utf-8-sig"
    description: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The mapping as plain YAML-ready data; ``mapping_from_dict(m.to_dict()) == m``."""
        out: dict[str, Any] = {}
        defaults = FlatMapping(outcome_column="", positive=())
        for key, value in asdict(self).items():
            if key not in ("outcome_column", "positive") and value == asdict(defaults)[key]:
                continue
            if isinstance(value, tuple):
                value = list(value)
            if key == "time_rule" and value is not None:
                value = {k: (list(v) if isinstance(v, tuple) else v) for k, v in value.items() if v is not None}
            if key == "missing":
                value = {col: list(vals) for col, vals in value.items()}
            out[key] = value
        return out

    def referenced_columns(self) -> dict[str, str]:
        """Every file column the mapping names, as ``{column: mapping key}`` (first role wins)."""
        refs: dict[str, str] = {}

        def add(col: str | None, key: str) -> None:
            if col is not None:
                refs.setdefault(col, key)

        add(self.id_column, "id_column")
        add(self.time_column, "time_column")
        if self.time_rule is not None:
            add(self.time_rule.month, "time_rule.month")
            add(self.time_rule.day_of_week, "time_rule.day_of_week")
        add(self.type_column, "type_column")
        for key in ("deal_column", "contact_column", "account_column", "rep_column", "outcome_column", "output_column"):
            add(getattr(self, key), key)
        for col in self.activity_columns:
            add(col, "activity_columns")
        for key in ("execution_time", "contact_fields", "account_fields", "drop"):
            for col in getattr(self, key):
                add(col, key)
        for col in self.missing:
            if col != ALL_COLUMNS:
                add(col, "missing")
        return refs


_MAPPING_KEYS = {f for f in FlatMapping.__dataclass_fields__}
_TIME_RULE_KEYS = {f for f in TimeRule.__dataclass_fields__}


class _MappingLoader(yaml.SafeLoader):
    """YAML loader that keeps yes/no/on/off/true/false as text (they are outcome values)."""


_MappingLoader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def bundled_mapping_path(name: str) -> Path | None:
    """Path of a mapping shipped with the package (``importers/mappings/NAME.yaml``), or None."""
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", name):
        return None
    p = resources.files("importers") / "mappings" / f"{name}.yaml"
    return Path(str(p)) if p.is_file() else None


def bundled_mappings() -> list[str]:
    """Names of the mappings shipped with the package."""
    root = resources.files("importers") / "mappings"
    if not root.is_dir():
        return []
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def resolve_mapping_path(ref: str | Path) -> Path:
    """A mapping file path, or the name of a bundled mapping such as ``bank_marketing``."""
    path = Path(ref)
    if path.exists():
        return path
    bundled = bundled_mapping_path(str(ref))
    if bundled is not None:
        return bundled
    names = ", ".join(bundled_mappings()) or "none"
    raise FlatImportError(f"mapping {ref}: no such file, and no bundled mapping of that name (bundled: {names})")


def read_mapping_dict(path: Path) -> dict[str, Any]:
    """Read a mapping file into a dict (no validation beyond YAML syntax and top-level shape)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise FlatImportError(f"mapping {path}: cannot read ({err.strerror or err})") from err
    try:
        data = yaml.load(text, Loader=_MappingLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise FlatImportError(f"mapping {path}{where}: not valid YAML ({problem})") from err
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise FlatImportError(f"mapping {path}: expected a mapping of keys to values, got {type(data).__name__}")
    return data


def load_mapping(ref: str | Path, **overrides: Any) -> FlatMapping:
    """Load and validate a mapping file (or bundled mapping name); ``overrides`` replace its keys.

    Raises:
        FlatImportError: unreadable file, unknown key (named), or a value of the wrong shape.
    """
    path = resolve_mapping_path(ref)
    data = read_mapping_dict(path)
    data |= {k: v for k, v in overrides.items() if v is not None}
    return mapping_from_dict(data, origin=f"mapping {path}")


def _unknown_key_error(origin: str, key: Any, allowed: set[str], where: str = "") -> FlatImportError:
    close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return FlatImportError(
        f"{origin}: unknown key {where}{key!r}{hint}; known keys: {', '.join(sorted(allowed))}"
    )


def _scalar_text(value: Any, origin: str, key: str) -> str:
    if isinstance(value, bool):  # only reachable through overrides built in Python
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise FlatImportError(f"{origin}: {key} must be a single value, got {type(value).__name__}")


def _opt_text(data: dict, key: str, origin: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    text = _scalar_text(value, origin, key).strip()
    if not text:
        raise FlatImportError(f"{origin}: {key} is empty")
    return text


def _text_list(data: dict, key: str, origin: str) -> tuple[str, ...]:
    value = data.get(key)
    if value is None:
        return ()
    if isinstance(value, (str, int, float)):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise FlatImportError(f"{origin}: {key} must be a list of values, got {type(value).__name__}")
    out = []
    for item in value:
        if item is None or isinstance(item, (list, dict)):
            raise FlatImportError(f"{origin}: {key} must hold plain values, got {item!r}")
        out.append(_scalar_text(item, origin, key).strip())
    return tuple(out)


def _text_dict(data: dict, key: str, origin: str) -> dict[str, str]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise FlatImportError(f"{origin}: {key} must be a mapping of value to value, got {type(value).__name__}")
    return {
        _scalar_text(k, origin, key).strip(): _scalar_text(v, origin, f"{key}.{k}").strip()
        for k, v in value.items()
    }


def _parse_missing(value: Any, origin: str) -> dict[str, tuple[str, ...]]:
    if value is None:
        return {}
    if isinstance(value, (str, int, float, list, tuple)):
        return {ALL_COLUMNS: _text_list({"missing": value}, "missing", origin)}
    if not isinstance(value, dict):
        raise FlatImportError(f"{origin}: missing must be a list of values or a mapping column -> values")
    return {
        _scalar_text(col, origin, "missing").strip(): _text_list({f"missing.{col}": vals}, f"missing.{col}", origin)
        for col, vals in value.items()
    }


def _parse_time_rule(value: Any, origin: str) -> TimeRule | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise FlatImportError(f"{origin}: time_rule must be a mapping with keys {', '.join(sorted(_TIME_RULE_KEYS))}")
    for key in value:
        if key not in _TIME_RULE_KEYS:
            raise _unknown_key_error(origin, key, _TIME_RULE_KEYS, where="time_rule.")
    kind = _opt_text(value, "kind", origin) or MONTH_SEQUENCE
    if kind != MONTH_SEQUENCE:
        raise FlatImportError(f"{origin}: time_rule.kind {kind!r} is not supported (only {MONTH_SEQUENCE!r})")
    month = _opt_text(value, "month", origin)
    start = _opt_text(value, "start", origin)
    if month is None or start is None:
        raise FlatImportError(f"{origin}: time_rule needs 'month' (a column) and 'start' (YYYY or YYYY-MM)")
    if not re.fullmatch(r"\d{4}(-\d{1,2})?", start) or (
        "-" in start and not 1 <= int(start.split("-")[1]) <= 12
    ):
        raise FlatImportError(f"{origin}: time_rule.start must be YYYY or YYYY-MM, got {start!r}")
    hours = value.get("hours", (9, 18))
    if (
        not isinstance(hours, (list, tuple))
        or len(hours) != 2
        or not all(isinstance(h, int) and not isinstance(h, bool) for h in hours)
        or not 0 <= hours[0] <= hours[1] <= 24
        or hours[0] == 24
    ):
        raise FlatImportError(
            f"{origin}: time_rule.hours must be [first, last] with 0 <= first <= last <= 24 "
            f"(equal: every row of a date at that hour), got {hours!r}"
        )
    return TimeRule(
        month=month, start=start, day_of_week=_opt_text(value, "day_of_week", origin), hours=(hours[0], hours[1]), kind=kind
    )


def mapping_from_dict(data: dict[str, Any], origin: str = "mapping") -> FlatMapping:
    """Validate a mapping given as a dict (from YAML or options) and build a :class:`FlatMapping`.

    Raises:
        FlatImportError: unknown or misspelt key (named, with the closest known key),
            a value of the wrong shape, or keys that contradict each other.
    """
    if not isinstance(data, dict):
        raise FlatImportError(f"{origin}: expected a mapping of keys to values")
    for key in data:
        if key not in _MAPPING_KEYS:
            raise _unknown_key_error(origin, key, _MAPPING_KEYS)

    outcome_column = _opt_text(data, "outcome_column", origin)
    if outcome_column is None:
        raise FlatImportError(f"{origin}: outcome_column is required (the column holding the outcome)")
    positive = _text_list(data, "positive", origin)
    if not positive:
        raise FlatImportError(f"{origin}: positive is required (the values of {outcome_column!r} that count as an outcome)")
    negative = _text_list(data, "negative", origin)
    both = set(positive) & set(negative)
    if both:
        raise FlatImportError(f"{origin}: value {sorted(both)[0]!r} is listed in both positive and negative")

    time_column = _opt_text(data, "time_column", origin)
    time_rule = _parse_time_rule(data.get("time_rule"), origin)
    if (time_column is None) == (time_rule is None):
        raise FlatImportError(f"{origin}: give exactly one of time_column (a timestamp column) or time_rule (a derivation)")
    time_format = _opt_text(data, "time_format", origin)
    timezone = _opt_text(data, "timezone", origin) or "UTC"
    if time_rule is not None and (time_format or data.get("timezone")):
        raise FlatImportError(f"{origin}: time_format and timezone apply to time_column, not to time_rule")
    try:
        pd.Timestamp("2020-01-01").tz_localize(timezone)
    except Exception as err:  # noqa: BLE001 - pytz/zoneinfo raise several types
        raise FlatImportError(f"{origin}: timezone {timezone!r} is not a known time zone") from err

    type_const = _opt_text(data, "type", origin)
    type_column = _opt_text(data, "type_column", origin)
    if (type_const is None) == (type_column is None):
        raise FlatImportError(f"{origin}: give exactly one of type (a constant such as 'call') or type_column")
    type_values = _text_dict(data, "type_values", origin)
    if type_values and type_column is None:
        raise FlatImportError(f"{origin}: type_values needs type_column")

    outcome_missing = _opt_text(data, "outcome_missing", origin) or "error"
    if outcome_missing not in OUTCOME_MISSING_POLICIES:
        raise FlatImportError(
            f"{origin}: outcome_missing must be one of {', '.join(OUTCOME_MISSING_POLICIES)}, got {outcome_missing!r}"
        )
    offset = data.get("outcome_offset_seconds", 1.0)
    if isinstance(offset, bool) or not isinstance(offset, (int, float)) or not 0 < offset < c.OUTCOME_HORIZON_DAYS * 86400:
        raise FlatImportError(
            f"{origin}: outcome_offset_seconds must be a number of seconds > 0 and inside the "
            f"{c.OUTCOME_HORIZON_DAYS}-day horizon, got {offset!r}"
        )

    output_column = _opt_text(data, "output_column", origin)
    output_positive = _text_list(data, "output_positive", origin)
    output_negative = _text_list(data, "output_negative", origin)
    output_response = _opt_text(data, "output_response", origin) or DEFAULT_OUTPUT_RESPONSE
    if output_column is None and (output_positive or output_negative or "output_response" in data):
        raise FlatImportError(f"{origin}: output_positive / output_negative / output_response need output_column")
    if output_column is not None and not output_positive:
        raise FlatImportError(f"{origin}: output_column needs output_positive (the values that count as an output)")
    if output_response not in c.KNOWN_RESPONSES:
        raise FlatImportError(
            f"{origin}: output_response {output_response!r} is not a response the contract knows; "
            f"use one of {', '.join(sorted(c.KNOWN_RESPONSES))}"
        )

    activity_columns = _text_dict(data, "activity_columns", origin)
    for col, target in activity_columns.items():
        if target not in MAPPABLE_ACTIVITY_COLUMNS:
            raise FlatImportError(
                f"{origin}: activity_columns.{col} -> {target!r}: not a mappable activities column; "
                f"use one of {', '.join(MAPPABLE_ACTIVITY_COLUMNS)} (ids, time and type have their own keys)"
            )
    targets = list(activity_columns.values())
    dup_targets = {t for t in targets if targets.count(t) > 1}
    if dup_targets:
        raise FlatImportError(f"{origin}: activity_columns maps two columns onto {sorted(dup_targets)[0]!r}")

    delimiter = data.get("delimiter")
    if delimiter is not None:
        delimiter = _scalar_text(delimiter, origin, "delimiter")
        delimiter = {"\\t": "\t", "tab": "\t"}.get(delimiter, delimiter)
        if len(delimiter) != 1:
            raise FlatImportError(f"{origin}: delimiter must be one character (or 'tab'), got {delimiter!r}")

    encoding = _opt_text(data, "encoding", origin) or "utf-8-sig"
    try:
        "".encode(encoding)
    except LookupError as err:
        raise FlatImportError(f"{origin}: unknown encoding {encoding!r}") from err

    description = data.get("description")
    if description is not None and not isinstance(description, str):
        raise FlatImportError(f"{origin}: description must be text")

    mapping = FlatMapping(
        outcome_column=outcome_column,
        positive=positive,
        time_column=time_column,
        time_rule=time_rule,
        time_format=time_format,
        timezone=timezone,
        id_column=_opt_text(data, "id_column", origin),
        type=type_const,
        type_column=type_column,
        type_values=type_values,
        deal_column=_opt_text(data, "deal_column", origin),
        contact_column=_opt_text(data, "contact_column", origin),
        account_column=_opt_text(data, "account_column", origin),
        rep_column=_opt_text(data, "rep_column", origin),
        negative=negative,
        outcome_name=_opt_text(data, "outcome_name", origin) or DEFAULT_OUTCOME_NAME,
        outcome_missing=outcome_missing,
        outcome_offset_seconds=float(offset),
        output_column=output_column,
        output_positive=output_positive,
        output_negative=output_negative,
        output_response=output_response,
        missing=_parse_missing(data.get("missing"), origin),
        execution_time=_text_list(data, "execution_time", origin),
        contact_fields=_text_list(data, "contact_fields", origin),
        account_fields=_text_list(data, "account_fields", origin),
        activity_columns=activity_columns,
        drop=_text_list(data, "drop", origin),
        delimiter=delimiter,
        encoding=encoding,
        description=description,
    )
    _check_roles(mapping, origin)
    return mapping


def _check_roles(m: FlatMapping, origin: str) -> None:
    """Refuse a column given two roles that exclude each other, and fields without their key."""
    roles: dict[str, str] = {}
    exclusive = [
        ("id_column", [m.id_column]),
        ("time_column", [m.time_column]),
        ("type_column", [m.type_column]),
        ("deal_column", [m.deal_column]),
        ("contact_column", [m.contact_column]),
        ("account_column", [m.account_column]),
        ("rep_column", [m.rep_column]),
        ("outcome_column", [m.outcome_column]),
        ("output_column", [m.output_column]),
        ("activity_columns", list(m.activity_columns)),
        ("contact_fields", list(m.contact_fields)),
        ("account_fields", list(m.account_fields)),
        ("drop", list(m.drop)),
    ]
    for key, cols in exclusive:
        for col in cols:
            if col is None:
                continue
            if col in roles and roles[col] != key:
                raise FlatImportError(f"{origin}: column {col!r} is used both as {roles[col]} and as {key}")
            if col in roles:
                raise FlatImportError(f"{origin}: column {col!r} is listed twice in {key}")
            roles[col] = key
    if m.contact_fields and m.contact_column is None:
        raise FlatImportError(f"{origin}: contact_fields need contact_column (the contacts table is keyed by it)")
    if m.account_fields and m.account_column is None:
        raise FlatImportError(f"{origin}: account_fields need account_column (the accounts table is keyed by it)")
    custom_ok = {None, "activity_columns"}
    for col in m.execution_time:
        role = roles.get(col)
        if role not in custom_ok:
            raise FlatImportError(
                f"{origin}: execution_time lists {col!r}, which is the {role}; only activity fields can be execution-time"
            )


# --------------------------------------------------------------------------- file


@dataclass
class FlatFile:
    """A flat table as read: every cell a stripped string (``<NA>`` for an empty cell).

    ``lines[i]`` is the file line where data row ``i + 1`` starts (the header is line 1).
    ``row_offset``: the rows of the file before ``data`` (a chunk of a streamed file).
    """

    path: Path
    header: list[str]
    data: pd.DataFrame
    lines: np.ndarray
    delimiter: str
    sha256: str
    row_offset: int = 0

    def where(self, i: int) -> str:
        """Human position of 0-based data row ``i``: ``data row 5 (line 6)``."""
        return _where(self.row_offset + i, int(self.lines[i]))

    def missing_column_error(self, column: str, key: str) -> FlatImportError:
        close = difflib.get_close_matches(column, self.header, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return FlatImportError(
            f"{self.path}: column {column!r} named by {key} is not in the file{hint}; "
            f"the header has: {', '.join(self.header)}"
        )


def detect_delimiter(sample: str, path: Path | str = "file") -> str:
    """The delimiter among , ; tab | that splits the sample's lines into a constant number (> 1) of fields."""
    lines = [ln for ln in sample.splitlines()[:50] if ln.strip()]
    if not lines:
        raise FlatImportError(f"{path}: the file is empty")
    best: tuple[int, str] | None = None
    for delim in DEFAULT_DELIMITERS:
        rows = list(csv.reader(io.StringIO("\n".join(lines)), delimiter=delim))
        counts = {len(r) for r in rows if r}
        if len(counts) == 1 and (n := counts.pop()) > 1 and (best is None or n > best[0]):
            best = (n, delim)
    if best is None:
        # quoted fields spanning lines break the per-line check: fall back to the header line
        header_counts = {d: len(next(csv.reader([lines[0]], delimiter=d))) for d in DEFAULT_DELIMITERS}
        delim, n = max(header_counts.items(), key=lambda kv: kv[1])
        if n < 2:
            raise FlatImportError(
                f"{path}: cannot detect the delimiter (tried , ; tab |); give it with --delimiter or the mapping key delimiter"
            )
        return delim
    return best[1]


READ_CHUNK_ROWS = 100_000  # rows held as Python strings at a time while reading (then Arrow-backed columns)


def read_flat(path: Path | str, delimiter: str | None = None, encoding: str = "utf-8-sig") -> FlatFile:
    """Read a delimited text file; the first line is the header.

    Raises:
        FlatImportError: unreadable or empty file, undetectable delimiter, duplicate or
            empty header names, or a row whose number of fields differs from the header's.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise FlatImportError(_cannot_read_message(path, err)) from err
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as err:
        del raw
        line = _bad_text_line(path, encoding)
        raise FlatImportError(_bad_text_message(path, line or 1, encoding)) from err
    if delimiter is None:
        delimiter = detect_delimiter(text[:65536], path)
    sha256 = hashlib.sha256(raw).hexdigest()
    del raw
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    del text  # the reader's buffer holds it
    rows: list[list[str]] = []
    chunks: list[pd.DataFrame] = []  # every READ_CHUNK_ROWS rows become compact string columns
    n_rows = 0
    lines: list[int] = []
    header: list[str] | None = None
    prev_end = 0
    bad: list[tuple[int, int, int]] = []
    try:
        for record in reader:
            start = prev_end + 1
            prev_end = reader.line_num
            if not record or (len(record) == 1 and not record[0].strip()):
                continue  # blank line
            if header is None:
                header = [h.strip() for h in record]
                continue
            if len(record) != len(header):
                bad.append((n_rows + len(bad) + 1, start, len(record)))
                continue
            rows.append(record)
            n_rows += 1
            lines.append(start)
            if len(rows) >= READ_CHUNK_ROWS and not bad:
                chunks.append(pd.DataFrame(rows, columns=header, dtype="string"))
                rows = []
    except csv.Error as err:
        raise FlatImportError(_malformed_message(path, reader.line_num, err)) from err
    problem = _header_problem(path, header)
    if problem:
        raise FlatImportError(problem)
    assert header is not None
    if bad:
        raise FlatImportError(_ragged_message(path, bad[0], len(bad), len(header), delimiter))
    if not n_rows:
        raise FlatImportError(_no_rows_message(path))
    if rows:
        chunks.append(pd.DataFrame(rows, columns=header, dtype="string"))
    del rows
    data = chunks[0] if len(chunks) == 1 else pd.concat(chunks, ignore_index=True)
    del chunks
    for col in header:
        s = data[col].str.strip()
        data[col] = s.mask(s == "")
    logger.info("read %s: %d rows, %d columns, delimiter %r", path.name, len(data), len(header), delimiter)
    return FlatFile(path, header, data, np.asarray(lines, dtype=np.int64), delimiter, sha256)


# --------------------------------------------------------------------------- report


@dataclass
class FieldReport:
    """One imported column: where it went, its type and how many values are missing."""

    column: str
    table: str
    name: str
    type: str
    timing: str
    n_missing: int
    n_declared_missing: int


@dataclass
class FlatImportReport:
    """What a conversion did; returned by :func:`convert_flat` and printed by the command."""

    source: str
    sha256: str
    delimiter: str
    rows_read: int
    rows_written: int
    rows_dropped: int
    fields: list[FieldReport]
    duplicate_rows: int
    duplicate_examples: list[tuple[int, int]]
    n_positive: int
    outcome_rate: float
    n_outputs: int | None
    n_deals: int
    n_contacts: int | None
    n_accounts: int | None
    time_from: str
    time_to: str
    time_notes: list[str]
    execution_time_fields: list[str]
    warnings: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        """The report as short human-readable lines (what the command prints)."""
        out = [
            f"source {self.source} (sha256 {self.sha256[:12]}, delimiter {self.delimiter!r})",
            f"rows: {self.rows_read} read, {self.rows_written} written, {self.rows_dropped} dropped",
            f"time: {self.time_from} .. {self.time_to}",
            *[f"  {note}" for note in self.time_notes],
            f"outcome: {self.n_positive} positive of {self.rows_written} ({self.outcome_rate:.2%}), {self.n_deals} deals",
        ]
        if self.n_outputs is not None:
            out.append(f"outputs: {self.n_outputs} responses written")
        if self.n_contacts is not None:
            out.append(f"contacts: {self.n_contacts}")
        if self.n_accounts is not None:
            out.append(f"accounts: {self.n_accounts}")
        if self.duplicate_rows:
            ex = ", ".join(f"row {a} = row {b}" for a, b in self.duplicate_examples)
            out.append(f"duplicates: {self.duplicate_rows} rows repeat an earlier row exactly (kept, distinct ids; {ex})")
        else:
            out.append("duplicates: none")
        out.append(f"fields ({len(self.fields)}):")
        for f in self.fields:
            miss = f"{f.n_missing} missing" + (f" ({f.n_declared_missing} declared)" if f.n_declared_missing else "")
            timing = " EXECUTION-TIME" if f.timing == "execution" else ""
            target = f"{f.table}.{f.name}"
            out.append(f"  {f.column:<20} -> {target:<32} {f.type:<9} {miss}{timing}")
        out.extend(f"warning: {w}" for w in self.warnings)
        if self.files:
            out.append(f"wrote {len(self.files)} files: {', '.join(Path(p).name for p in self.files)}")
        return out


@dataclass
class FlatConversion:
    """The contract tables, the ``dataset.json`` metadata and the report of one conversion."""

    tables: dict[str, pd.DataFrame]
    meta: dict[str, Any]
    report: FlatImportReport


# --------------------------------------------------------------------------- conversion


class _Rows:
    """Positions of the kept rows in the file, to name a row in an error."""

    def __init__(self, flat: FlatFile, positions: np.ndarray) -> None:
        self.flat = flat
        self.positions = positions

    def where(self, i: int) -> str:
        return self.flat.where(int(self.positions[i]))

    def error(self, i: int, column: str, message: str) -> FlatImportError:
        return FlatImportError(_row_message(self.flat.path, self.where(i), column, message))


def _first(mask: np.ndarray | pd.Series) -> int:
    return int(np.flatnonzero(np.asarray(mask, dtype=bool))[0])


def _role_columns(m: FlatMapping) -> set[str]:
    """File columns consumed by a role (they do not become custom fields)."""
    cols = {
        m.id_column, m.time_column, m.type_column, m.deal_column, m.contact_column,
        m.account_column, m.rep_column, m.outcome_column, m.output_column,
    }
    return {col for col in cols if col is not None}


def _custom_columns(flat: FlatFile, m: FlatMapping) -> list[str]:
    """File columns that become custom fields of activities, in file order.

    The inputs of a time rule (month, day of week) stay: they are facts of the row.
    """
    taken = _role_columns(m) | set(m.activity_columns) | set(m.contact_fields) | set(m.account_fields) | set(m.drop)
    return [col for col in flat.header if col not in taken]


def _clashing_columns(flat: FlatFile, m: FlatMapping) -> list[tuple[str, str]]:
    """Custom fields whose name is a contract column of the table they would land in."""
    out = []
    for col in _custom_columns(flat, m):
        if c.TABLES[c.ACTIVITIES].kind(col) is not None:
            out.append((col, c.ACTIVITIES))
    for table, cols in ((c.CONTACTS, m.contact_fields), (c.ACCOUNTS, m.account_fields)):
        key = c.TABLES[table].key
        out.extend((col, table) for col in cols if col == key or col == c.ACCOUNT_ID)
    return out


def _check_columns(flat: FlatFile, m: FlatMapping) -> None:
    for col, key in m.referenced_columns().items():
        if col not in flat.data.columns:
            raise flat.missing_column_error(col, key)
    clashes = _clashing_columns(flat, m)
    if clashes:
        col, table = clashes[0]
        raise FlatImportError(
            f"{flat.path}: column {col!r} would become a field of {table}, but the contract defines "
            f"{table}.{col}; map it with its own key (or activity_columns), or list it under drop"
        )
    for col in m.execution_time:
        if col in m.activity_columns:
            continue
        if col not in _custom_columns(flat, m):
            raise FlatImportError(f"{flat.path}: execution_time lists {col!r}, which is not an activity field")


def _apply_missing(flat: FlatFile, m: FlatMapping) -> tuple[pd.DataFrame, dict[str, int]]:
    """Cells declared missing become <NA>; returns the frame and the count per column."""
    data = flat.data.copy()
    declared: dict[str, int] = {}
    everywhere = set(m.missing.get(ALL_COLUMNS, ()))
    for col in flat.header:
        values = (everywhere | set(m.missing.get(col, ()))) - {""}
        hit = data[col].isin(values).fillna(False).to_numpy(bool) if values else np.zeros(len(data), bool)
        declared[col] = int(hit.sum())
        if hit.any():
            data[col] = data[col].mask(hit)
    return data, declared


def _binary_column(
    rows: _Rows,
    values: pd.Series,
    column: str,
    positive: tuple[str, ...],
    negative: tuple[str, ...],
    key: str,
    check_positive: bool = True,
    report: Report = _raise_first,
    stage: int = CHECK_OUTCOME_VALUE,
) -> np.ndarray:
    """1.0 / 0.0 / NaN (missing) per row; every positive value must occur in the column.

    Args:
        rows, values, column: the rows, the column's values (declared-missing ones <NA>) and its name.
        positive, negative: the values that count as 1.0 and 0.0; with ``negative``, any other
            value is an error.
        key: the mapping key of ``positive`` (named in the error).
        check_positive: False leaves the whole-column check that every positive value occurs
            to the caller (the streaming import sees the column a chunk at a time).
        report, stage: how a failing row-level check is reported, and its stage.

    Returns:
        Per row 1.0, 0.0 or NaN (missing).
    """
    if check_positive:
        seen = set(values.dropna().unique())
        for v in positive:
            if v not in seen:
                raise FlatImportError(_positive_missing_message(rows.flat.path, key, v, column, _value_counts(values)))
    if negative:
        allowed = set(positive) | set(negative)
        other = (values.notna() & ~values.isin(allowed)).fillna(False).to_numpy(bool)
        report((stage,), rows, column, other, values,
               lambda v, n: f"value {v!r} is neither positive ({', '.join(positive)}) nor negative "
                            f"({', '.join(negative)}) ({n} such rows)")
    out = np.where(values.isin(set(positive)).fillna(False).to_numpy(bool), 1.0, 0.0)
    out[values.isna().to_numpy(bool)] = np.nan
    return out


def _missing_outcomes(rows: _Rows, outcome: np.ndarray, m: FlatMapping, report: Report = _raise_first) -> np.ndarray:
    """The rows without an outcome; an error when ``outcome_missing`` is 'error'."""
    no_outcome = np.isnan(outcome)
    if m.outcome_missing == "error":
        report((CHECK_OUTCOME_MISSING,), rows, m.outcome_column, no_outcome, None,
               lambda v, n: f"the outcome is missing ({n} such rows); set outcome_missing to 'negative' or 'drop'")
    return no_outcome


def _id_column(rows: _Rows, data: pd.DataFrame, m: FlatMapping, report: Report = _raise_first) -> pd.Series:
    """The ids of the (kept) rows from ``m.id_column``; an empty id is an error."""
    assert m.id_column is not None
    activity_id = data[m.id_column].astype("string").reset_index(drop=True)
    report((CHECK_ID_EMPTY,), rows, m.id_column, activity_id.isna(), None, lambda v, n: "the id is empty")
    return activity_id


def _parse_time_column(rows: _Rows, data: pd.DataFrame, m: FlatMapping, dst: DstNotes,
                       report: Report = _raise_first) -> pd.Series:
    """Parse ``m.time_column``: ISO 8601 unless ``time_format``; a naive value is in ``m.timezone``.

    Checks, in order: empty times, times outside the years a timestamp holds, unparseable ones.
    """
    col = m.time_column
    assert col is not None
    values = data[col].reset_index(drop=True)
    report((CHECK_TIME, 0), rows, col, values.isna(), None, lambda v, n: f"the time is empty ({n} such rows)")
    hint = "" if m.time_format else "; give time_format (e.g. '%d/%m/%Y %H:%M') if the times are not ISO 8601"
    return _instants(rows, values, col, m.time_format, m.timezone, dst, hint, report=report, stage=(CHECK_TIME, 1))


def _instants(rows: _Rows, values: pd.Series, column: str, fmt: str | None, timezone: str, dst: DstNotes | None,
              hint: str = "", target: str | None = None, report: Report = _raise_first,
              stage: CheckKey = ()) -> pd.Series:
    """Instants in UTC: values with an offset keep it, naive ones are wall-clock times in ``timezone``.

    The daylight-saving rule is the CRM adapters' (``localize_wall_clock``): a repeated hour
    reads as the first (daylight-time) reading, a skipped one moves forward by the gap; ``dst``
    counts both. Checks (keys ``stage + (0,)`` and ``stage + (1,)``): values outside the years a
    timestamp holds, then values that do not parse (<NaT> in the result when reported, not raised).
    """
    fmt = fmt or "ISO8601"
    has_zone = values.str.contains(OFFSET_PATTERN, regex=True).fillna(False).to_numpy(bool)
    parsed = pd.Series(pd.NaT, index=values.index, dtype=c.TIMESTAMP_DTYPE)
    # pandas parses years past 2261 (at microseconds) that a nanosecond timestamp cannot hold
    outside = np.zeros(len(values), dtype=bool)
    if has_zone.any():
        zoned = pd.to_datetime(values[has_zone], format=fmt, errors="coerce", utc=True)
        outside[has_zone] = far = beyond_nanoseconds(zoned)
        parsed[has_zone] = zoned.mask(far).astype(c.TIMESTAMP_DTYPE)
    naive_rows = ~has_zone & values.notna().to_numpy(bool)
    if naive_rows.any():
        naive = pd.to_datetime(values[naive_rows], format=fmt, errors="coerce")
        if isinstance(naive.dtype, pd.DatetimeTZDtype):  # the format itself carried a zone (%z)
            local = naive.dt.tz_convert("UTC")
        else:
            ok = naive.notna()
            local = pd.Series(pd.NaT, index=naive.index, dtype=naive.dtype).dt.tz_localize("UTC")
            if ok.any():
                local[ok] = localize_wall_clock(naive[ok], timezone, dst)
        outside[naive_rows] = far = beyond_nanoseconds(local)
        parsed[naive_rows] = local.mask(far).astype(c.TIMESTAMP_DTYPE)
    report((*stage, 0), rows, column, outside, values,
           lambda v, n: f"{v!r} is outside {SUPPORTED_YEARS} that a timestamp can hold "
                        f"(nanoseconds since 1970) ({n} such rows)")
    bad = (parsed.isna() & values.notna()).to_numpy(bool) & ~outside
    what = "ISO 8601" if fmt == "ISO8601" else f"time_format {fmt!r}"
    extra = f" ({target})" if target else ""
    report((*stage, 1), rows, column, bad, values,
           lambda v, n: f"cannot parse {v!r} as {what}{extra}{hint} ({n} such rows)")
    return parsed


def _dst_note(dst: DstNotes, timezone: str) -> list[str]:
    if not (dst.ambiguous or dst.nonexistent):
        return []
    return [f"daylight-saving change in {timezone}: {dst.ambiguous} time(s) in the repeated hour (read as the "
            f"first, daylight-time reading), {dst.nonexistent} in the skipped hour (moved forward by the gap); "
            f"e.g. {', '.join(dst.examples[:3])}"]


@dataclass
class _TimeRuleState:
    """What a :class:`TimeRule` carries from one part of the file to the next (the streaming import).

    A part must start at the first row of a month (the day and time of a row depend on the
    whole month it is in); the year and the counts for the report run on.
    """

    rows_done: int = 0
    year: int = 0
    prev_month: int | None = None
    first: tuple[int, int] | None = None
    last: tuple[int, int] | None = None
    n_wraps: int = 0
    n_months: int = 0
    n_dates: int = 0
    n_runs: int = 0
    n_honoured: int = 0
    rows_not_honoured: int = 0


def _derive_time(
    rows: _Rows, data: pd.DataFrame, rule: TimeRule, state: _TimeRuleState | None = None,
    report: Report = _raise_first,
) -> tuple[pd.Series | None, list[str]]:
    """Apply a :class:`TimeRule` (see its docstring) to every row; returns timestamps and report notes.

    With ``state`` the rows are one part of the file, whole months, following the parts the
    state has seen; the notes then describe every part so far. Checks, in order: months,
    days of the week, the first month against ``start``, the years reached. When ``report``
    records a failed check instead of raising, the result is ``(None, [])`` and ``state`` is
    left as it was.
    """
    if state is None:
        state = _TimeRuleState()
    n = len(data)
    month_raw = data[rule.month].reset_index(drop=True)
    month = month_raw.str.lower().map(_MONTHS)
    no_month = month.isna().to_numpy(bool)
    report((CHECK_TIME, 0), rows, rule.month, no_month, month_raw,
           lambda v, n: f"{v!r} is not a month (jan..dec, january..december or 1..12)")
    weekdays = no_weekday = None
    if rule.day_of_week is not None:
        wd_raw = data[rule.day_of_week].reset_index(drop=True)
        wd = wd_raw.str.lower().map(_WEEKDAYS)
        no_weekday = wd.isna().to_numpy(bool)
        report((CHECK_TIME, 1), rows, rule.day_of_week, no_weekday, wd_raw,
               lambda v, n: f"{v!r} is not a day of the week (mon..sun or monday..sunday)")
        if not no_weekday.any():
            weekdays = wd.to_numpy(dtype=np.int64)
    if no_month.any() or (no_weekday is not None and no_weekday.any()):
        return None, []
    months = month.to_numpy(dtype=np.int64)
    year = int(rule.start[:4]) if state.rows_done == 0 else state.year
    if state.rows_done == 0 and "-" in rule.start and int(rule.start.split("-")[1]) != months[0]:
        report((CHECK_TIME, 2), rows, rule.month, np.arange(n) == 0, None,
               lambda v, k, m0=int(months[0]): f"the first row is in month {m0}, but time_rule.start is {rule.start}")
        return None, []
    first_wrap = int(state.prev_month is not None and months[0] < state.prev_month)
    wraps = np.concatenate([[first_wrap], (np.diff(months) < 0).astype(np.int64)])
    years = year + np.cumsum(wraps)
    outside = (years < FIRST_YEAR) | (years > LAST_YEAR)
    if outside.any():
        reached = pd.Series(list(zip(years.tolist(), (state.n_wraps + np.cumsum(wraps)).tolist(), strict=True)))
        report((CHECK_TIME, 3), rows, rule.month, outside, reached,
               lambda v, n: f"time_rule (start {rule.start}) reaches the year {v[0]} at this row, "
                            f"after {v[1]} year wraps (a month lower than the row before), outside "
                            f"{SUPPORTED_YEARS}; the rows must be in time order and start in time_rule.start")
        return None, []

    # the day of each row
    days = np.zeros(n, dtype=np.int64)
    month_starts = np.flatnonzero(np.concatenate([[True], np.diff(years * 100 + months) != 0]))
    month_ends = np.append(month_starts[1:], n)
    n_runs = n_honoured = rows_not_honoured = 0
    for a, b in zip(month_starts, month_ends, strict=True):
        y, mo = int(years[a]), int(months[a])
        n_days = calendar.monthrange(y, mo)[1]
        if weekdays is None:
            days[a:b] = 1 + (np.arange(b - a) * n_days) // (b - a)
            continue
        wd = weekdays[a:b]
        run_starts = np.flatnonzero(np.concatenate([[True], np.diff(wd) != 0]))
        run_ends = np.append(run_starts[1:], b - a)
        last = 0
        for ra, rb in zip(run_starts, run_ends, strict=True):
            n_runs += 1
            target = int(wd[ra])
            day = next((d for d in range(last + 1, n_days + 1) if calendar.weekday(y, mo, d) == target), None)
            if day is None:  # more runs than such weekdays left in the month: the next day, capped
                day = min(last + 1, n_days)
                rows_not_honoured += int(rb - ra)
            else:
                n_honoured += 1
            days[a + ra : a + rb] = day
            last = day

    # the time of day: the rows of one date spread evenly over the hours, in file order
    ordinal = years * 10000 + months * 100 + days
    date_change = np.concatenate([[True], np.diff(ordinal) != 0])
    date_starts = np.flatnonzero(date_change)
    date_sizes = np.diff(np.append(date_starts, n))
    group = np.cumsum(date_change) - 1
    pos = np.arange(n) - date_starts[group]
    h0, h1 = rule.hours
    span = (h1 - h0) * 3600
    seconds = h0 * 3600 + ((2 * pos + 1) * span) // (2 * date_sizes[group])
    dates = _dates_fast(years, months, days)
    occurred = pd.Series(pd.DatetimeIndex(dates + seconds.astype("timedelta64[s]")).tz_localize("UTC"))
    occurred = occurred.astype(c.TIMESTAMP_DTYPE)

    if state.first is None:
        state.first = (int(years[0]), int(months[0]))
    state.last = (int(years[-1]), int(months[-1]))
    state.rows_done += n
    state.year = int(years[-1])
    state.prev_month = int(months[-1])
    state.n_wraps += int(wraps.sum())
    state.n_months += len(month_starts)
    state.n_dates += len(date_starts)
    state.n_runs += n_runs
    state.n_honoured += n_honoured
    state.rows_not_honoured += rows_not_honoured
    return occurred, _time_rule_notes(rule, state)


def _time_rule_notes(rule: TimeRule, state: _TimeRuleState) -> list[str]:
    """The report's notes on a time rule, from the state after the last row."""
    assert state.first is not None and state.last is not None
    (y0, m0), (y1, m1) = state.first, state.last
    notes = [
        f"derived from {rule.month!r}" + (f" and {rule.day_of_week!r}" if rule.day_of_week else "")
        + f", starting {rule.start}: {y0}-{m0:02d} .. {y1}-{m1:02d}, "
        f"{state.n_wraps} year wraps, {state.n_months} months, {state.n_dates} dates",
    ]
    if rule.day_of_week is not None:
        notes.append(
            f"{state.n_runs} runs of one day_of_week, each a date: {state.n_honoured} on their weekday, "
            f"{state.n_runs - state.n_honoured} could not be ({state.rows_not_honoured} rows)"
        )
    else:
        notes.append("no day_of_week: the rows of each month are spread evenly over its days")
    h0, h1 = rule.hours
    if h0 == h1:
        notes.append(f"every row of a date is at {h0:02d}:00 UTC (no time of day is invented)")
    else:
        notes.append(f"the rows of a date are spread evenly over {h0:02d}:00-{h1:02d}:00 UTC in file order")
    return notes


def _dates_fast(years: np.ndarray, months: np.ndarray, days: np.ndarray) -> np.ndarray:
    month_index = (years - 1970) * 12 + (months - 1)
    first = month_index.astype("datetime64[M]").astype("datetime64[D]")
    return (first + (days - 1).astype("timedelta64[D]")).astype("datetime64[s]")


def _types(rows: _Rows, data: pd.DataFrame, m: FlatMapping, report: Report = _raise_first) -> pd.Series:
    """The activity type of each row: the constant, the column, or the column through ``type_values``."""
    if m.type is not None:
        return pd.Series([m.type] * len(data), dtype="string")
    col = m.type_column
    assert col is not None
    values = data[col].reset_index(drop=True)
    empty = values.isna().to_numpy(bool)
    report((CHECK_TYPE, 0), rows, col, empty, None, lambda v, n: f"the activity type is empty ({n} such rows)")
    if not m.type_values:
        return values.astype("string")
    mapped = values.map(m.type_values)
    report((CHECK_TYPE, 1), rows, col, mapped.isna().to_numpy(bool) & ~empty, values,
           lambda v, n: f"value {v!r} has no entry in type_values")
    return mapped.astype("string")


_TRUE = {"true", "1", "yes", "t", "y"}
_FALSE = {"false", "0", "no", "f", "n"}


def _contract_column(rows: _Rows, values: pd.Series, column: str, target: str, table: str = c.ACTIVITIES,
                     timezone: str = "UTC", dst: DstNotes | None = None, report: Report = _raise_first,
                     stage: CheckKey = ()) -> pd.Series:
    """A file column filling a contract column of ``table``, checked against its kind.

    Args:
        rows, values: the rows and the column's values.
        column, target: the file column and the contract column it fills.
        table, timezone, dst: the contract table, the zone of naive times, daylight-saving counts.
        report, stage: how a failing value is reported, and the key its checks start with
            (``stage + (0,)``; a timestamp's two checks also ``stage + (1,)``).

    Returns:
        The values in the contract column's type (missing where a reported value failed).
    """
    values = values.reset_index(drop=True)
    kind = c.TABLES[table].kind(target)
    if kind in (c.FLOAT, c.INT):
        num = pd.to_numeric(values, errors="coerce")
        bad = (num.isna() & values.notna()).to_numpy(bool)
        want = "a number"
        if kind == c.INT:
            bad = bad | (num.notna() & (num % 1 != 0)).fillna(False).to_numpy(bool)
            want = "a whole number"
        if target == c.PERSONALIZATION:
            bad = bad | (num.notna() & ((num < 0) | (num > 1))).fillna(False).to_numpy(bool)
            want = "a number in 0..1"
        report((*stage, 0), rows, column, bad, values, lambda v, n: f"{v!r} is not {want} ({target})")
        if bad.any():
            num = num.mask(bad)
        return num.astype("float64" if kind == c.FLOAT else "Int64")
    if kind == c.BOOL:
        low = values.str.lower()
        bad = (values.notna() & ~low.isin(_TRUE | _FALSE)).fillna(False).to_numpy(bool)
        report((*stage, 0), rows, column, bad, values, lambda v, n: f"{v!r} is not true/false ({target})")
        out = pd.Series(pd.NA, index=values.index, dtype="boolean")
        out[low.isin(_TRUE).fillna(False).to_numpy(bool)] = True
        out[low.isin(_FALSE).fillna(False).to_numpy(bool)] = False
        return out
    if kind == c.TIMESTAMP:
        return _instants(rows, values.astype("string"), column, None, timezone, dst, target=target, report=report,
                         stage=stage)
    return values.astype("string")


def _entity_table(
    data: pd.DataFrame,
    key_column: str,
    key_name: str,
    fields: tuple[str, ...],
    extra: dict[str, pd.Series],
    warnings: list[str],
) -> pd.DataFrame:
    """One row per key value (file order); attributes from the key's first row."""
    frame = pd.DataFrame({key_name: data[key_column], **extra, **{f: data[f] for f in fields}})
    frame = frame[frame[key_name].notna().to_numpy(bool)]
    for f in [*extra, *fields]:
        n_vary = int((frame.groupby(key_name, sort=False)[f].nunique(dropna=True) > 1).sum())
        if n_vary:
            warnings.append(f"{f!r}: {n_vary} {key_name} values carry more than one value; the first row's is kept")
    return frame.drop_duplicates(key_name, keep="first").reset_index(drop=True)


def _entity_fields(
    rows: _Rows,
    data: pd.DataFrame,
    key_column: str,
    table: str,
    fields: tuple[str, ...],
    extra: dict[str, pd.Series],
    declared: dict[str, int],
    m: FlatMapping,
    reports: list[FieldReport],
    warnings: list[str],
) -> pd.DataFrame:
    """The contacts or accounts table: a field named like a contract column fills it, others are custom."""
    key_name = c.TABLES[table].key
    assert key_name is not None
    _check_entity_fields(rows, data, table, fields, m)
    frame = _entity_table(data, key_column, key_name, fields, extra, warnings)
    return _type_entity_fields(rows.flat, frame, table, fields, declared, m, reports)


def _check_entity_fields(rows: _Rows, data: pd.DataFrame, table: str, fields: tuple[str, ...], m: FlatMapping,
                         report: Report = _raise_first) -> None:
    """Check every row of the contacts or accounts fields that fill a contract column (naming the bad one)."""
    stage = CHECK_CONTACT_FIELDS if table == c.CONTACTS else CHECK_ACCOUNT_FIELDS
    for j, col in enumerate(fields):
        if c.TABLES[table].kind(col) is not None:
            _contract_column(rows, data[col], col, col, table, m.timezone, report=report, stage=(stage, j))


def _type_entity_fields(
    flat: FlatFile,
    frame: pd.DataFrame,
    table: str,
    fields: tuple[str, ...],
    declared: dict[str, int],
    m: FlatMapping,
    reports: list[FieldReport],
) -> pd.DataFrame:
    """Type the fields of a de-duplicated contacts or accounts frame (one row per key) and report them."""
    for col in fields:
        kind = c.TABLES[table].kind(col)
        if kind is None:
            frame[col] = infer_custom(frame[col])
        else:
            frame[col] = _contract_column(_Rows(flat, np.arange(len(frame))), frame[col], col, col, table,
                                          m.timezone)
        reports.append(_field_report(col, table, col, frame[col], declared, m))
    return frame


def _field_report(
    column: str, table: str, name: str, values: pd.Series, declared: dict[str, int], m: FlatMapping
) -> FieldReport:
    if pd.api.types.is_bool_dtype(values):
        typ = "bool"
    elif pd.api.types.is_numeric_dtype(values):
        typ = "number"
    elif isinstance(values.dtype, pd.DatetimeTZDtype):
        typ = "timestamp"
    else:
        typ = "text"
    return FieldReport(
        column=column,
        table=table,
        name=name,
        type=typ,
        timing="execution" if column in m.execution_time else "plan",
        n_missing=int(values.isna().sum()),
        n_declared_missing=declared.get(column, 0),
    )


def _duplicates(flat: FlatFile) -> tuple[int, list[tuple[int, int]]]:
    """Rows that repeat an earlier row exactly: count, and up to 3 (first, repeat) data-row pairs."""
    later = flat.data.duplicated(keep="first").to_numpy(bool)
    if not later.any():
        return 0, []
    hashes = pd.util.hash_pandas_object(flat.data, index=False).to_numpy()
    first_pos: dict[int, int] = {}
    for i, h in enumerate(hashes):
        first_pos.setdefault(int(h), i)
    examples = [(first_pos[int(hashes[i])] + 1, int(i) + 1) for i in np.flatnonzero(later)[:3]]
    return int(later.sum()), examples


def convert_flat(flat: FlatFile, mapping: FlatMapping) -> FlatConversion:
    """Convert a read flat file under a mapping into contract tables, metadata and a report.

    One ``activities`` row per kept file row, in file order; uses nothing but the file.

    Raises:
        FlatImportError: the mapping does not fit the file (column, row and value named).
    """
    m = mapping
    _check_columns(flat, m)
    full, declared = _apply_missing(flat, m)
    all_rows = _Rows(flat, np.arange(len(full)))
    warnings: list[str] = []
    rows_read = len(full)

    # outcome (and output); rows without an outcome follow m.outcome_missing
    outcome = _binary_column(all_rows, full[m.outcome_column], m.outcome_column, m.positive, m.negative, "positive")
    no_outcome = _missing_outcomes(all_rows, outcome, m)
    if no_outcome.any():
        if m.outcome_missing == "negative":
            warnings.append(f"{int(no_outcome.sum())} rows without an outcome were counted as not positive")
            outcome = np.nan_to_num(outcome, nan=0.0)
        else:
            warnings.append(f"{int(no_outcome.sum())} rows without an outcome were dropped")
    keep = ~np.isnan(outcome)
    output = None
    if m.output_column is not None:
        output = _binary_column(
            all_rows, full[m.output_column], m.output_column, m.output_positive, m.output_negative, "output_positive",
            stage=CHECK_OUTPUT_VALUE,
        )
        output = np.nan_to_num(output, nan=0.0)[keep]
    if not keep.any():
        raise FlatImportError(_no_rows_left_message(flat.path))
    data = full[keep].reset_index(drop=True)
    outcome = outcome[keep]
    rows = _Rows(flat, np.flatnonzero(keep))
    n = len(data)

    # ids
    if m.id_column is None:
        activity_id = pd.Series([f"row-{p + 1}" for p in rows.positions], dtype="string")
    else:
        activity_id = _id_column(rows, data, m)
        dup = activity_id.duplicated(keep=False).to_numpy(bool)
        if dup.any():
            value = activity_id.iloc[_first(dup)]
            a, b = np.flatnonzero((activity_id == value).to_numpy(bool))[:2]
            raise FlatImportError(_duplicate_id_message(flat.path, m.id_column, value, rows.where(a), rows.where(b)))

    # time: a rule reads the month sequence of the whole file, then keeps the kept rows
    dst = DstNotes()
    if m.time_rule is not None:
        occurred, time_notes = _derive_time(all_rows, full, m.time_rule)
        occurred = occurred[keep].reset_index(drop=True)
    else:
        occurred = _parse_time_column(rows, data, m, dst)
        time_notes = [f"from column {m.time_column!r}" + (f"; naive times are {m.timezone}" if m.timezone != "UTC" else "")]
    if not occurred.is_monotonic_increasing:
        time_notes.append("rows are not in time order (kept in file order)")

    # keys: the deal is the deal key, else the contact's deal, else the row's own deal
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
    fields: list[FieldReport] = []
    for col, target in m.activity_columns.items():
        activities[target] = _contract_column(rows, data[col], col, target, timezone=m.timezone, dst=dst)
        fields.append(_field_report(col, c.ACTIVITIES, target, activities[target], declared, m))
    for col in _custom_columns(flat, m):
        activities[col] = infer_custom(data[col])
        fields.append(_field_report(col, c.ACTIVITIES, col, activities[col], declared, m))
    tables: dict[str, pd.DataFrame] = {c.ACTIVITIES: pd.DataFrame(activities)}

    # outcomes and responses, a moment after the activity
    offset = pd.Timedelta(seconds=m.outcome_offset_seconds)
    pos = outcome == 1.0
    outcomes = pd.DataFrame(
        {
            c.DEAL_ID: deal_id[pos].reset_index(drop=True),
            c.OUTCOME: pd.Series([m.outcome_name] * int(pos.sum()), dtype="string"),
            c.OCCURRED_AT: (occurred[pos] + offset).reset_index(drop=True),
        }
    )
    if contact_id is not None:
        outcomes[c.CONTACT_ID] = contact_id[pos].reset_index(drop=True)
    tables[c.OUTCOMES] = outcomes
    n_outputs = None
    if output is not None:
        hit = output == 1.0
        tables[c.RESPONSES] = pd.DataFrame(
            {
                c.ACTIVITY_ID: activity_id[hit].reset_index(drop=True),
                c.RESPONSE: pd.Series([m.output_response] * int(hit.sum()), dtype="string"),
                c.OCCURRED_AT: (occurred[hit] + offset).reset_index(drop=True),
            }
        )
        n_outputs = int(hit.sum())

    # deals: one per deal id, created at its first activity
    deals = pd.DataFrame({c.DEAL_ID: deal_id, c.CREATED_AT: occurred})
    if account_id is not None:
        deals[c.ACCOUNT_ID] = account_id
        n_vary = int((deals.groupby(c.DEAL_ID)[c.ACCOUNT_ID].nunique() > 1).sum())
        if n_vary:
            warnings.append(f"{n_vary} deals have activities on more than one account; the earliest is kept")
    deals = deals.sort_values(c.CREATED_AT, kind="stable").drop_duplicates(c.DEAL_ID, keep="first")
    tables[c.DEALS] = deals.reset_index(drop=True)

    # contacts, accounts, reps
    n_contacts = n_accounts = None
    if m.contact_column is not None:
        extra = {c.ACCOUNT_ID: data[m.account_column]} if m.account_column else {}
        tables[c.CONTACTS] = _entity_fields(
            rows, data, m.contact_column, c.CONTACTS, m.contact_fields, extra, declared, m, fields, warnings
        )
        n_contacts = len(tables[c.CONTACTS])
    if m.account_column is not None:
        tables[c.ACCOUNTS] = _entity_fields(
            rows, data, m.account_column, c.ACCOUNTS, m.account_fields, {}, declared, m, fields, warnings
        )
        n_accounts = len(tables[c.ACCOUNTS])
    if rep_id is not None:
        tables[c.REPS] = pd.DataFrame({c.REP_ID: pd.Series(rep_id.dropna().unique(), dtype="string")})

    n_dup, dup_examples = _duplicates(flat)
    exec_fields = sorted(f"{c.ACTIVITIES}.{m.activity_columns.get(col, col)}" for col in m.execution_time)
    deal_unit = "deal key" if m.deal_column else "contact" if m.contact_column else "row"
    meta: dict[str, Any] = {
        "execution_time_fields": exec_fields,
        "source": flat.path.name,
        "notes": (
            f"imported by activity-scorer import-flat from {flat.path.name} (sha256 {flat.sha256}); "
            f"one deal per {deal_unit}; a positive {m.outcome_column!r} is outcome {m.outcome_name!r} "
            f"{m.outcome_offset_seconds:g} s after the activity"
        ),
    }
    report = FlatImportReport(
        source=str(flat.path),
        sha256=flat.sha256,
        delimiter=flat.delimiter,
        rows_read=rows_read,
        rows_written=n,
        rows_dropped=rows_read - n,
        fields=fields,
        duplicate_rows=n_dup,
        duplicate_examples=dup_examples,
        n_positive=int(pos.sum()),
        outcome_rate=float(pos.mean()),
        n_outputs=n_outputs,
        n_deals=len(tables[c.DEALS]),
        n_contacts=n_contacts,
        n_accounts=n_accounts,
        time_from=occurred.min().isoformat(),
        time_to=occurred.max().isoformat(),
        time_notes=time_notes + _dst_note(dst, m.timezone),
        execution_time_fields=exec_fields,
        warnings=warnings,
    )
    logger.info(
        "converted %s: %d rows, %d fields, %d positive (%.2f%%), %d duplicate rows",
        flat.path.name, n, len(fields), report.n_positive, 100 * report.outcome_rate, n_dup,
    )
    return FlatConversion(tables, meta, report)


def prepare_output(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty output directory unless ``overwrite``; then remove only dataset files."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FlatImportError(f"{out}: exists and is not a directory")
    if not out.exists():
        return
    present = [p for p in out.iterdir()]
    if not present:
        return
    ours = {f"{name}.{ext}" for name in c.TABLES for ext in ("parquet", "csv")} | {c.DATASET_META_FILE}
    if not overwrite:
        raise FlatImportError(f"{out}: the directory is not empty; give --overwrite to replace the dataset in it")
    for p in present:
        if p.name in ours and p.is_file():
            p.unlink()


def _fits_in_memory(source: Path, why: Exception | str) -> None:
    """Before reading a file whole (what the stream cannot do): refuse one too large for memory, with what streaming saw.

    Raises:
        FlatImportError: the in-memory path's estimated need exceeds the memory budget.
    """
    from features.memory_budget import InputTooLarge, check_fits

    try:
        check_fits([source], "import-flat")
    except InputTooLarge as err:
        raise FlatImportError(
            f"{why} (found reading the file in parts, which cannot go further with this file; the in-memory "
            f"import, which reads it whole, cannot run: {err})"
        ) from None


def import_flat(
    source: Path | str,
    out: Path | str,
    mapping: FlatMapping,
    fmt: str = "parquet",
    overwrite: bool = False,
    *,
    stream: bool = True,
    chunk_rows: int | None = None,
) -> FlatImportReport:
    """Read ``source``, convert it under ``mapping`` and write the dataset to ``out``.

    The file is converted a chunk of rows at a time (:mod:`importers.flat_stream`), in memory
    that does not grow with it, into a temporary directory beside ``out`` that is moved in
    when complete. When the file or the mapping has a problem, the streaming pass names it
    with the message :func:`read_flat` and :func:`convert_flat` give (same first row, line,
    value and count), in the same bounded memory. Only what the stream cannot word or convert
    (listed in :mod:`importers.flat_stream`'s docstring) is read whole by those functions,
    after checking that the file fits the memory budget. ``stream=False`` is that in-memory
    path for every file (the reference).

    Returns:
        The report; its ``files`` lists what was written.

    Raises:
        FlatImportError: unreadable file, a mapping that does not fit it, or an output
            directory that is not empty (without ``overwrite``).
    """
    if fmt not in ("parquet", "csv"):
        raise FlatImportError(f"format must be 'parquet' or 'csv', not {fmt!r}")
    out = Path(out)
    if not stream:
        flat = read_flat(source, delimiter=mapping.delimiter, encoding=mapping.encoding)
        conversion = convert_flat(flat, mapping)
        prepare_output(out, overwrite)
        files = write_dataset(conversion.tables, out, fmt=fmt, meta=conversion.meta)
        conversion.report.files = [str(p) for p in files]
        logger.info("wrote dataset %s (%d files)", out, len(files))
        return conversion.report

    from importers.flat_stream import (
        NotStreamable,
        finish_output,
        remove_staging,
        staging_directory,
        stream_convert,
    )

    if not overwrite:  # refuse a non-empty --out before converting, not after (nothing is removed here)
        prepare_output(out, overwrite)
    staging = staging_directory(out)
    try:
        try:
            staged, report = stream_convert(source, mapping, staging, fmt=fmt, chunk_rows=chunk_rows)
        except FlatImportError:  # worded by the streaming pass as the in-memory path words it
            raise
        except (NotStreamable, Exception) as why:
            if isinstance(why, MemoryError):
                raise
            if isinstance(why, NotStreamable):
                logger.info("import-flat %s: %s; reading the file whole", source, why)
            else:  # a defect of the streaming pass must not cost the user the import
                logger.warning("import-flat %s: the streaming pass failed (%s: %s); converting the file in memory",
                               source, type(why).__name__, why)
            for p in staging.iterdir():
                p.unlink()
            _fits_in_memory(Path(source), why if isinstance(why, NotStreamable) else
                            f"{source}: the streaming import failed ({type(why).__name__}: {why})")
            flat = read_flat(source, delimiter=mapping.delimiter, encoding=mapping.encoding)
            conversion = convert_flat(flat, mapping)
            del flat
            staged = write_dataset(conversion.tables, staging, fmt=fmt, meta=conversion.meta)
            report = conversion.report
        files = finish_output(staged, out, overwrite)
    finally:
        remove_staging(staging)
    report.files = [str(p) for p in files]
    logger.info("wrote dataset %s (%d files)", out, len(files))
    return report


__all__ = [
    "FieldReport",
    "FlatConversion",
    "FlatFile",
    "FlatImportError",
    "FlatImportReport",
    "FlatMapping",
    "TimeRule",
    "bundled_mapping_path",
    "bundled_mappings",
    "convert_flat",
    "detect_delimiter",
    "import_flat",
    "load_mapping",
    "mapping_from_dict",
    "read_flat",
    "read_mapping_dict",
    "resolve_mapping_path",
]
