"""Parsing CRM timestamps and dates, and moving between UTC and a rep's local day.

CRM exports mix forms: ``2025-01-13T09:05:00.000Z``, offsets, a space instead of
``T``, no milliseconds, epoch milliseconds (HubSpot), bare dates (Salesforce
``ActivityDate``), and UI exports with wall-clock times in a portal time zone.
Everything here returns ``datetime64[ns, UTC]``; dates stay ``YYYY-MM-DD`` strings
because a date is a local calendar day, not an instant.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from importers.crm.errors import CrmInputError

UTC_DTYPE = "datetime64[ns, UTC]"
# A UTC offset ends a value only after a time of day: the "-10" of "2025-03-10" and the
# "-2025" of "10-03-2025" are parts of a date, not offsets.
OFFSET_PATTERN = r"\d:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$"
_OFFSET_RE = re.compile(OFFSET_PATTERN)
_EPOCH_RE = re.compile(r"^-?\d{9,14}(?:\.\d+)?$")
_DATE_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:[T ].*)?$")

# The contract's timestamps are nanoseconds (``datetime64[ns, UTC]``): pandas parses later
# and earlier instants (at microseconds) but cannot hold them, so they are refused by name.
TS_MIN = pd.Timestamp.min.tz_localize("UTC")
TS_MAX = pd.Timestamp.max.tz_localize("UTC")
SUPPORTED_YEARS = "the supported years 1678..2261"
FIRST_YEAR, LAST_YEAR = 1678, 2261


def beyond_nanoseconds(parsed: pd.Series) -> np.ndarray:
    """Rows of ``parsed`` (any datetime resolution, naive read as UTC) outside ``TS_MIN..TS_MAX``."""
    if isinstance(parsed.dtype, pd.DatetimeTZDtype):
        lo, hi = TS_MIN, TS_MAX
    else:
        lo, hi = TS_MIN.tz_localize(None), TS_MAX.tz_localize(None)
    return (parsed.notna() & ((parsed < lo) | (parsed > hi))).to_numpy(bool)


@dataclass
class DstNotes:
    """Counts of wall-clock times that a DST change made ambiguous or impossible."""

    ambiguous: int = 0
    nonexistent: int = 0
    examples: list[str] = field(default_factory=list)


def valid_timezone(name: str) -> bool:
    try:
        ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        return False
    return True


def _blank(values: pd.Series) -> pd.Series:
    s = values.astype("string").str.strip()
    return s.mask(s == "")


def parse_instants(
    values: pd.Series,
    *,
    where: str,
    row_labels: pd.Series | None = None,
    naive_tz: str = "UTC",
    lenient: bool = False,
    day_first: bool = False,
    dst: DstNotes | None = None,
) -> pd.Series:
    """Parse a column of instants to UTC.

    Args:
        values: raw cells (strings; missing/empty → NaT).
        where: "file, column" for error messages.
        row_labels: how to name each row in an error (defaults to "row N", 1-based).
        naive_tz: zone of values without an offset (UTC for API/Data Loader exports,
            the portal zone for HubSpot UI exports).
        lenient: also accept non-ISO forms such as ``03/10/2025 10:30 AM`` (UI exports).
        day_first: with ``lenient``, read ``03/10/2025`` as 3 October.
        dst: collects DST-ambiguous / skipped wall-clock times (naive values only).

    Raises:
        CrmInputError: naming the file, column, rows and values that do not parse, or that
            fall outside the years 1678..2261 a nanosecond timestamp holds.
    """
    s = _blank(values)
    # parsed at microseconds first, so that a year past 2261 is named rather than a crash
    out = pd.Series(pd.NaT, index=values.index, dtype=_WIDE_DTYPE)
    present = s.notna()
    if not present.any():
        return out.astype(UTC_DTYPE)
    text = s[present].astype(str)
    epoch = text.str.match(_EPOCH_RE)
    if epoch.any():
        nums = pd.to_numeric(text[epoch], errors="coerce")
        # 13 digits → milliseconds, 10 → seconds
        ms = nums.where(nums.abs() >= 1e11, nums * 1000)
        out.loc[ms.index] = pd.to_datetime(ms, unit="ms", utc=True)
    rest = text[~epoch]
    aware = rest.str.contains(_OFFSET_RE)
    if aware.any():
        parsed = _to_datetime(rest[aware], utc=True, lenient=lenient, day_first=day_first)
        out.loc[parsed.index] = parsed
    naive = rest[~aware]
    if len(naive):
        parsed = _to_datetime(naive, utc=False, lenient=lenient, day_first=day_first)
        ok = parsed.notna()
        if ok.any():
            local = parsed[ok]
            if naive_tz == "UTC":
                utc = local.dt.tz_localize("UTC")
            else:
                utc = localize_wall_clock(local, naive_tz, dst)
            out.loc[utc.index] = utc
    bad = present & out.isna()
    if bad.any():
        _raise_bad(values, bad, where, row_labels, "a date-time")
    outside = beyond_nanoseconds(out)
    if outside.any():
        _raise_bad(values, pd.Series(outside, index=values.index), where, row_labels,
                   f"a date-time in {SUPPORTED_YEARS}")
    return out.astype(UTC_DTYPE)


# Microseconds hold years 1..9999, so a year past 2261 parses and is then refused by name.
# CRM exports carry milliseconds at most: nothing is lost at this resolution.
_WIDE_DTYPE = "datetime64[us, UTC]"


def _to_datetime(text: pd.Series, *, utc: bool, lenient: bool, day_first: bool) -> pd.Series:
    parsed = _wide(pd.to_datetime(text, format="ISO8601", utc=utc, errors="coerce"), utc)
    if lenient and parsed.isna().any():
        missing = parsed.isna()
        again = pd.to_datetime(text[missing], format="mixed", dayfirst=day_first, utc=utc, errors="coerce")
        parsed.loc[missing] = _wide(again, utc)
    return parsed


def _wide(parsed: pd.Series, utc: bool) -> pd.Series:
    if not utc and isinstance(parsed.dtype, pd.DatetimeTZDtype):  # pragma: no cover - defensive
        parsed = parsed.dt.tz_localize(None)
    return parsed.astype(_WIDE_DTYPE if utc else "datetime64[us]")


def localize_wall_clock(local: pd.Series, tz: str, dst: DstNotes | None) -> pd.Series:
    """Wall-clock times in ``tz`` → UTC; repeated hour → first (DST) reading, skipped hour → one hour later."""
    probe = local.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
    # a skipped wall-clock time comes from a clock that was not moved yet: shift it by the (one-hour) gap
    first = local.dt.tz_localize(tz, ambiguous=np.ones(len(local), dtype=bool), nonexistent=pd.Timedelta(hours=1))
    if dst is not None:
        flagged = probe.isna()
        if flagged.any():
            # nonexistent: the shift moved it; ambiguous: both readings exist
            shifted = first[flagged].dt.tz_localize(None) != local[flagged]
            dst.nonexistent += int(shifted.sum())
            dst.ambiguous += int((~shifted).sum())
            for v in local[flagged].head(3):
                dst.examples.append(str(v))
    return first.dt.tz_convert("UTC")


def parse_dates(
    values: pd.Series, *, where: str, row_labels: pd.Series | None = None
) -> pd.Series:
    """Parse a date column to ``YYYY-MM-DD`` strings (a local calendar day, not an instant).

    ``2025-01-22`` and Salesforce's ``2025-01-22T00:00:00.000Z`` both give ``2025-01-22``:
    the time part of a date field is a storage artefact and is never shifted.
    """
    s = _blank(values)
    extracted = s.str.extract(_DATE_RE, expand=False)
    out = pd.Series(extracted, index=values.index, dtype="string")
    check = pd.to_datetime(out, format="%Y-%m-%d", errors="coerce")
    bad = s.notna() & check.isna()
    if bad.any():
        _raise_bad(values, bad, where, row_labels, "a date (YYYY-MM-DD)")
    _check_date_years(values, out, where, row_labels)
    return out


def _check_date_years(values: pd.Series, dates: pd.Series, where: str, row_labels: pd.Series | None) -> None:
    """Refuse ``YYYY-MM-DD`` days whose year a nanosecond timestamp (their local noon) cannot hold."""
    year = pd.to_numeric(dates.str.slice(0, 4), errors="coerce")
    outside = dates.notna() & ((year < FIRST_YEAR) | (year > LAST_YEAR)).fillna(False)
    if outside.any():
        _raise_bad(values, outside, where, row_labels, f"a date in {SUPPORTED_YEARS}")


def parse_bools(values: pd.Series, *, where: str, row_labels: pd.Series | None = None) -> pd.Series:
    """``true``/``false``/``1``/``0``/``yes``/``no`` → nullable boolean."""
    s = _blank(values).str.lower()
    out = pd.Series(pd.NA, index=values.index, dtype="boolean")
    out[s.isin(["true", "1", "yes", "y", "t"]).fillna(False).to_numpy(bool)] = True
    out[s.isin(["false", "0", "no", "n", "f"]).fillna(False).to_numpy(bool)] = False
    bad = s.notna() & out.isna()
    if bad.any():
        _raise_bad(values, bad, where, row_labels, "true/false")
    return out


def parse_numbers(values: pd.Series, *, where: str, row_labels: pd.Series | None = None) -> pd.Series:
    s = _blank(values).str.replace(",", "", regex=False)
    out = pd.to_numeric(s, errors="coerce").astype("float64")
    bad = s.notna() & out.isna()
    if bad.any():
        _raise_bad(values, bad, where, row_labels, "a number")
    return out


def _raise_bad(values, bad, where, row_labels, what) -> None:
    idx = list(values.index[bad.to_numpy(bool)])
    labels = (
        [str(row_labels.loc[i]) for i in idx[:5]]
        if row_labels is not None
        else [f"row {values.index.get_loc(i) + 1}" for i in idx[:5]]
    )
    shown = ", ".join(f"{lab}: {values.loc[i]!r}" for lab, i in zip(labels, idx[:5]))
    more = f" (and {len(idx) - 5} more)" if len(idx) > 5 else ""
    raise CrmInputError(f"{where}: {len(idx)} value(s) are not {what}: {shown}{more}")


# --- local days ------------------------------------------------------------------

def local_dates(instants: pd.Series, zones: pd.Series) -> pd.Series:
    """The calendar day (``YYYY-MM-DD``) of each UTC instant in its row's time zone."""
    out = pd.Series(pd.NA, index=instants.index, dtype="string")
    present = instants.notna()
    for tz, idx in zones[present].groupby(zones[present], sort=False).groups.items():
        out.loc[idx] = instants.loc[idx].dt.tz_convert(tz).dt.strftime("%Y-%m-%d").astype("string")
    return out


def local_noon(
    dates: pd.Series, zones: pd.Series, *, where: str = "dates", row_labels: pd.Series | None = None
) -> pd.Series:
    """12:00 local time on each day (``YYYY-MM-DD``) in its row's zone, as UTC.

    Noon is never inside a DST change, so the result is always well defined.

    Raises:
        CrmInputError: a day outside the years 1678..2261, named by ``where`` and ``row_labels``.
    """
    _check_date_years(dates, dates.astype("string"), where, row_labels)
    out = pd.Series(pd.NaT, index=dates.index, dtype=UTC_DTYPE)
    present = dates.notna()
    for tz, idx in zones[present].groupby(zones[present], sort=False).groups.items():
        naive = pd.to_datetime(dates.loc[idx].astype(str) + " 12:00:00", format="%Y-%m-%d %H:%M:%S")
        out.loc[idx] = naive.dt.tz_localize(tz).dt.tz_convert("UTC")
    return out
