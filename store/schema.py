"""The history store's schema: the data contract's tables as SQL, keys, and migrations.

One SQL table per contract table (``features.contract.TABLES``), one column per contract
column, plus ``custom``: the row's custom fields as a JSON object (text), or NULL. Types:

- ``str``: TEXT; ``float``: double precision; ``int``: BIGINT; ``bool``: SMALLINT (0/1);
- ``timestamp``: BIGINT milliseconds since the epoch, UTC: the resolution the feature code
  works in (``features.build``), so a stored time and a time in a request are the same number.

Keys are those of shared/API.md ``POST /events`` (a row with a stored key replaces it).
Migrations are numbered; the ``store_schema`` table records every applied version. A store
whose version is newer than :data:`SCHEMA_VERSION` is refused, never used.
"""

from __future__ import annotations

from dataclasses import dataclass

from features import contract as c

SCHEMA_VERSION = 1
VERSION_TABLE = "store_schema"
CUSTOM = "custom"  # JSON text of a row's custom fields

KEYS: dict[str, tuple[str, ...]] = {
    c.ACTIVITIES: (c.ACTIVITY_ID,),
    c.RESPONSES: (c.ACTIVITY_ID, c.RESPONSE, c.OCCURRED_AT),
    c.DEAL_STAGES: (c.DEAL_ID, c.STAGE_ORDER, c.ENTERED_AT),
    c.OUTCOMES: (c.DEAL_ID, c.OUTCOME, c.OCCURRED_AT),
    c.DEALS: (c.DEAL_ID,),
    c.CONTACTS: (c.CONTACT_ID,),
    c.ACCOUNTS: (c.ACCOUNT_ID,),
    c.REPS: (c.REP_ID,),
}
TABLE_ORDER = (c.ACCOUNTS, c.REPS, c.DEALS, c.CONTACTS, c.ACTIVITIES, c.RESPONSES, c.DEAL_STAGES, c.OUTCOMES)

# (name, table, columns): what the reads of history_for and the deletions look up
INDEXES = (
    ("activities_deal_time", c.ACTIVITIES, (c.DEAL_ID, c.OCCURRED_AT)),
    ("activities_contact_time", c.ACTIVITIES, (c.CONTACT_ID, c.OCCURRED_AT)),
    ("activities_account", c.ACTIVITIES, (c.ACCOUNT_ID,)),
    ("outcomes_contact", c.OUTCOMES, (c.CONTACT_ID,)),
    ("deals_account", c.DEALS, (c.ACCOUNT_ID,)),
    ("contacts_account", c.CONTACTS, (c.ACCOUNT_ID,)),
)


@dataclass(frozen=True)
class Dialect:
    """What differs between SQLite and PostgreSQL in the SQL this package writes."""

    name: str
    param: str  # placeholder
    float_type: str
    table_options: str = ""  # after CREATE TABLE (...)

    def sql_type(self, kind: str) -> str:
        return {c.STR: "TEXT", c.TIMESTAMP: "BIGINT", c.FLOAT: self.float_type, c.INT: "BIGINT",
                c.BOOL: "SMALLINT"}[kind]


# SQLite: rows live in their key's b-tree (one tree per table, not a rowid tree plus a key index)
SQLITE = Dialect("sqlite", "?", "REAL", " WITHOUT ROWID")
POSTGRES = Dialect("postgresql", "%s", "DOUBLE PRECISION")


def columns(table: str) -> list[str]:
    """Stored columns of a table, in order: the contract's, then ``custom``."""
    return [*c.TABLES[table].column_names, CUSTOM]


def create_table(dialect: Dialect, table: str) -> str:
    spec = c.TABLES[table]
    key = KEYS[table]
    cols = []
    for col in spec.columns:
        not_null = " NOT NULL" if col.required or col.name in key else ""
        cols.append(f"{col.name} {dialect.sql_type(col.kind)}{not_null}")
    cols.append(f"{CUSTOM} TEXT")
    cols.append(f"PRIMARY KEY ({', '.join(key)})")
    return f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(cols)}){dialect.table_options}"


def _version_1(dialect: Dialect) -> list[str]:
    statements = [create_table(dialect, t) for t in TABLE_ORDER]
    statements += [f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({', '.join(cols)})" for name, table, cols in INDEXES]
    return statements


# version -> (description, statements for a dialect); append new versions, never edit old ones
MIGRATIONS = {
    1: ("contract tables, keys and lookup indexes", _version_1),
}


def version_table(dialect: Dialect) -> str:
    return (f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version INTEGER PRIMARY KEY, description TEXT NOT NULL, "
            f"applied_at BIGINT NOT NULL)")


def upsert(dialect: Dialect, table: str) -> str:
    """``INSERT ... ON CONFLICT (key) DO UPDATE``: the same statement in both dialects."""
    cols = columns(table)
    key = KEYS[table]
    marks = ", ".join([dialect.param] * len(cols))
    updates = ", ".join(f"{col} = excluded.{col}" for col in cols if col not in key)
    return f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks}) ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
