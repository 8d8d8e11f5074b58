"""Salesforce record ids: 15/18-character forms and key prefixes.

A 15-character id is case-sensitive; the 18-character form appends three characters
that encode which letters of the first 15 are upper-case, so it survives tools that
change case. :func:`normalize_sf_id` turns either form (even with mangled case) into
the canonical 18-character id.
"""

from __future__ import annotations

import re

import pandas as pd

_SUFFIX_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_ID_RE = re.compile(r"^[A-Za-z0-9]{15}([A-Za-z0-9]{3})?$")

# Key prefixes (first three characters) of the objects the adapter cares about.
ACCOUNT = "001"
CONTACT = "003"
USER = "005"
OPPORTUNITY = "006"
LEAD = "00Q"
QUEUE = "00G"


def id_suffix(id15: str) -> str:
    """The 3-character case-checksum suffix of a 15-character id."""
    out = []
    for chunk in range(3):
        bits = 0
        for i, ch in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            if "A" <= ch <= "Z":
                bits |= 1 << i
        out.append(_SUFFIX_ALPHABET[bits])
    return "".join(out)


def normalize_sf_id(value: str | None) -> str | None:
    """Canonical 18-character id, or the value unchanged when it is not an id.

    - 15 characters: the suffix is computed (the value's case is taken as given).
    - 18 characters: the case of the first 15 is restored from the suffix, so
      ``0035G00000OCJ2IAAT`` and ``0035g00000OCj2IAAT`` give the same id.
    """
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NA:
        return None
    text = str(value).strip()
    if not text:
        return None
    if not _ID_RE.match(text):
        return text
    if len(text) == 15:
        return text + id_suffix(text)
    suffix = text[15:].upper()
    if any(ch not in _SUFFIX_ALPHABET for ch in suffix):
        return text
    chars = list(text[:15])
    for chunk, code in enumerate(suffix):
        bits = _SUFFIX_ALPHABET.index(code)
        for i in range(5):
            pos = chunk * 5 + i
            ch = chars[pos]
            if ch.isalpha():
                chars[pos] = ch.upper() if bits & (1 << i) else ch.lower()
    return "".join(chars) + suffix


def normalize_id_series(values: pd.Series) -> pd.Series:
    """:func:`normalize_sf_id` over a column (missing stays missing)."""
    out = [normalize_sf_id(v) for v in values.tolist()]
    return pd.Series(out, index=values.index, dtype="string")


def has_prefix(values: pd.Series, prefix: str) -> pd.Series:
    """Boolean mask: ids whose key prefix is ``prefix`` (missing → False)."""
    return values.astype("string").str.startswith(prefix).fillna(False).astype(bool)


def make_sf_id(prefix: str, number: int) -> str:
    """A synthetic 18-character id with a real key prefix (used by the export writer)."""
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    body = []
    n = number
    while n:
        n, r = divmod(n, 62)
        body.append(alphabet[r])
    core = "".join(reversed(body)) or "0"
    id15 = (prefix + "5g" + core.rjust(10, "0"))[:15]
    if len(id15) != 15:
        raise ValueError(f"number {number} too large for a synthetic id")
    return id15 + id_suffix(id15)
