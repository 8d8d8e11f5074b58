"""The history store: contract rows kept by key, read back as they were known before a time.

:class:`HistoryStore` is the one interface; its two back ends differ only in how they connect
(:mod:`store.sqlite` and :mod:`store.postgres`) and in a few SQL details (:class:`store.schema.Dialect`).

Point in time. :meth:`HistoryStore.context_for` returns what ``features.build.request_items``
puts in a request for the same activity (the deal's and the contact's activities, their
responses, the deal's stages and outcomes, the contacts of those activities, the deal, contact
and account rows), restricted to the rows the feature code may use at time ``t``: the data
contract's point-in-time rule, which ``features.build`` applies as
``max(occurred_at, logged_at) < t`` for activities, ``occurred_at < t`` (and its activity known)
for responses, ``entered_at < t`` for stages and ``occurred_at < t`` for outcomes. The feature
code applies the same rule again to whatever it is given, so a row this store leaves out is a row
the features would have ignored; ``tests/store/test_parity.py`` checks that the store's history
gives the features of the full history, to the last bit.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from features import contract as c
from store import schema as sc
from store.rows import dict_values, frame_values, row_dict, row_plain, to_ms

logger = logging.getLogger(__name__)

CHUNK = 500  # ids per IN (...) list


class StoreError(RuntimeError):
    """The store cannot be opened or used (names the store and what to do)."""


class StoreVersionError(StoreError):
    """The store's schema version is one this code does not know (newer, or not a store at all)."""


@dataclass
class StoredContext:
    """What the store knows of one activity's deal, contact and account before a time.

    Attributes:
        activity: the stored row of the activity itself (None: not stored).
        deal, contact, account: stored entity rows (None: not stored).
        history: request history (``activities``, ``responses``, ``deal_stages``, ``outcomes``,
            ``contacts``), rows known before the time.
        unknown: id fields whose id the store knows nothing of (``deal_id``, ``contact_id``, ``account_id``).
    """

    activity: dict[str, Any] | None = None
    deal: dict[str, Any] | None = None
    contact: dict[str, Any] | None = None
    account: dict[str, Any] | None = None
    history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)


_row_dict = row_dict


def _cols(table: str) -> str:
    return ", ".join(sc.columns(table))


class HistoryStore:
    """Contract rows by key; one connection per thread.

    Args:
        url: the store's address, for messages (never with a password).
        dialect: SQL details of the back end.
        connect: opens a new DB-API connection in autocommit mode.
    """

    def __init__(self, url: str, dialect: sc.Dialect, connect: Callable[[], Any]):
        self.url = url
        self.dialect = dialect
        self._connect = connect
        self._local = threading.local()
        self._all: list[Any] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._upsert = {t: sc.upsert(dialect, t) for t in sc.TABLE_ORDER}
        p = dialect.param
        known = f"occurred_at < {p} AND (logged_at IS NULL OR logged_at < {p})"
        self._sql = {
            "acts_by_deal": f"SELECT {_cols(c.ACTIVITIES)} FROM activities WHERE deal_id = {p} AND {known}",
            "acts_by_contact": f"SELECT {_cols(c.ACTIVITIES)} FROM activities WHERE contact_id = {p} AND {known}",
            "stages": f"SELECT {_cols(c.DEAL_STAGES)} FROM deal_stages WHERE deal_id = {p} AND entered_at < {p}",
            "outcomes": f"SELECT {_cols(c.OUTCOMES)} FROM outcomes WHERE deal_id = {p} AND occurred_at < {p}",
        }
        for table, key in sc.KEYS.items():
            if len(key) == 1:
                self._sql[f"get_{table}"] = f"SELECT {_cols(table)} FROM {table} WHERE {key[0]} = {p}"

    # -- connections and transactions ---------------------------------------------------------

    @property
    def is_remote(self) -> bool:
        return self.dialect is sc.POSTGRES

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Any]:
        """One atomic, durable transaction (committed, and on disk, when the block ends)."""
        conn = self._conn()
        if self.dialect is sc.SQLITE:
            # One writer at a time in this process: threads queue on a lock (in order, no waiting
            # round) instead of SQLite's busy handler, which sleeps in growing steps and made the
            # tail of concurrent POST /events long. Other processes still meet the busy timeout.
            with self._write_lock:
                cur = conn.cursor()
                cur.execute("BEGIN IMMEDIATE")
                try:
                    yield cur
                except BaseException:
                    cur.execute("ROLLBACK")
                    raise
                cur.execute("COMMIT")
        else:
            with conn.transaction(), conn.cursor() as cur:
                yield cur

    def _query(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        cur = self._conn().cursor()
        try:
            cur.execute(sql, params)
            return cur.fetchall()
        finally:
            cur.close()

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.close()
        self._local = threading.local()

    # -- schema ---------------------------------------------------------------------------------

    def _table_exists(self, cur: Any, table: str) -> bool:
        if self.dialect is sc.SQLITE:
            cur.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))
            return cur.fetchone() is not None
        cur.execute("SELECT to_regclass(%s)", (table,))
        return cur.fetchone()[0] is not None

    def migrate(self) -> int:
        """Create or upgrade the schema to :data:`store.schema.SCHEMA_VERSION` (logged); returns the version.

        Raises:
            StoreVersionError: the store is newer than this code, or holds contract tables
                without a version table (not created by activity-scorer).
        """
        with self._transaction() as cur:
            if self.dialect is sc.POSTGRES:
                cur.execute("SELECT pg_advisory_xact_lock(727031)")  # one migrating process at a time
            fresh = not self._table_exists(cur, sc.VERSION_TABLE)
            if fresh and self._table_exists(cur, c.ACTIVITIES):
                raise StoreVersionError(f"store {self.url}: has an '{c.ACTIVITIES}' table but no '{sc.VERSION_TABLE}' "
                                        f"table, so it was not created by activity-scorer; use an empty database")
            cur.execute(sc.version_table(self.dialect))
            cur.execute(f"SELECT max(version) FROM {sc.VERSION_TABLE}")
            current = cur.fetchone()[0] or 0
            if current > sc.SCHEMA_VERSION:
                raise StoreVersionError(
                    f"store {self.url}: schema version {current} is newer than this activity-scorer knows "
                    f"({sc.SCHEMA_VERSION}); upgrade activity-scorer (the store was left untouched)")
            for version in range(current + 1, sc.SCHEMA_VERSION + 1):
                description, statements = sc.MIGRATIONS[version]
                level = logging.INFO if current == 0 else logging.WARNING
                logger.log(level, "store %s: applying schema migration %d (%s)", self.url, version, description)
                for statement in statements(self.dialect):
                    cur.execute(statement)
                p = self.dialect.param
                cur.execute(f"INSERT INTO {sc.VERSION_TABLE} (version, description, applied_at) VALUES ({p}, {p}, {p})",
                            (version, description, int(time.time() * 1000)))
        return sc.SCHEMA_VERSION

    def version(self) -> int:
        return int(self._query(f"SELECT max(version) FROM {sc.VERSION_TABLE}")[0][0] or 0)

    # -- writing ----------------------------------------------------------------------------------

    def upsert_values(self, tables: dict[str, list[tuple]]) -> dict[str, int]:
        """Store rows (stored values, :func:`store.rows.dict_values`) in one durable transaction.

        A row whose key is stored replaces it. Returns rows written per table.
        """
        counts: dict[str, int] = {}
        with self._transaction() as cur:
            for table in sc.TABLE_ORDER:
                rows = tables.get(table)
                if rows:
                    cur.executemany(self._upsert[table], rows)
                    counts[table] = len(rows)
        return counts

    def upsert(self, tables: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
        """Store request rows (dicts of contract columns, custom fields as extra keys)."""
        return self.upsert_values({t: [dict_values(t, r) for r in rows] for t, rows in tables.items() if rows})

    def load_dataset(self, dataset: Any, progress: Callable[[str], None] | None = None) -> dict[str, int]:
        """Store every table of a typed dataset (``features.dataset.Dataset``) in one transaction."""
        progress = progress or (lambda _: None)
        counts: dict[str, int] = {}
        # An empty store gets its lookup indexes after the rows: one sorted build instead of
        # an index update per row (the keys' own indexes stay: they make the upserts idempotent).
        empty = not any(self.counts().values())
        with self._bulk_journal(empty), self._transaction() as cur:
            if self.dialect is sc.SQLITE:
                cur.execute("PRAGMA cache_size = -262144")  # 256 MB page cache for this connection
            if empty:
                for name, _, _ in sc.INDEXES:
                    cur.execute(f"DROP INDEX IF EXISTS {name}")
            for table in sc.TABLE_ORDER:
                frame = dataset.get(table)
                if frame is None or not len(frame):
                    continue
                progress(f"storing {len(frame):,} {table}")
                step = 200_000
                for start in range(0, len(frame), step):
                    cur.executemany(self._upsert[table], frame_values(table, frame.iloc[start:start + step]))
                counts[table] = len(frame)
            if empty:
                progress("indexing")
                for name, table, cols in sc.INDEXES:
                    cur.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({', '.join(cols)})")
            progress("committing")
        return counts

    @contextlib.contextmanager
    def _bulk_journal(self, empty: bool) -> Iterator[None]:
        """SQLite: load an empty store through a rollback journal, then go back to WAL.

        One transaction of a million rows in WAL mode writes every page into the WAL and reads
        it back through the WAL index, which slows as the WAL grows; a rollback journal (the
        same atomicity, synced at commit) writes the new pages in place. Only when no other
        connection holds the file (the mode cannot change otherwise): then it stays WAL.
        """
        if self.dialect is not sc.SQLITE or not empty:
            yield
            return
        conn = self._conn()
        try:
            mode = conn.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
        except Exception:  # noqa: BLE001  (locked by another connection: keep WAL)
            mode = "wal"
        try:
            yield
        finally:
            if mode != "wal":
                conn.execute("PRAGMA journal_mode=WAL")

    def delete(self, entity: str, entity_id: str) -> dict[str, int]:
        """Erase a deal, contact or account and every stored row that names it (one transaction).

        A contact: its row, its activities (and their responses), the outcomes naming it. A deal:
        its row, activities, responses, stages, outcomes. An account: its row, its activities,
        and its deals and contacts with all of theirs. Returns rows deleted per table.
        """
        if entity not in (c.DEALS, c.CONTACTS, c.ACCOUNTS):
            raise ValueError(f"cannot delete {entity!r}: deals, contacts or accounts")
        p = self.dialect.param
        counts: dict[str, int] = {}

        def run(cur: Any, table: str, sql: str, params: tuple | list) -> None:
            cur.execute(sql, params)
            counts[table] = counts.get(table, 0) + max(cur.rowcount, 0)

        def activities_where(cur: Any, column: str, value: str) -> None:
            cur.execute(f"SELECT activity_id FROM activities WHERE {column} = {p}", (value,))
            ids = [r[0] for r in cur.fetchall()]
            for k in range(0, len(ids), CHUNK):
                part = ids[k:k + CHUNK]
                run(cur, c.RESPONSES, f"DELETE FROM responses WHERE activity_id IN ({', '.join([p] * len(part))})", part)
            run(cur, c.ACTIVITIES, f"DELETE FROM activities WHERE {column} = {p}", (value,))

        def delete_deal(cur: Any, deal_id: str) -> None:
            activities_where(cur, c.DEAL_ID, deal_id)
            run(cur, c.DEAL_STAGES, f"DELETE FROM deal_stages WHERE deal_id = {p}", (deal_id,))
            run(cur, c.OUTCOMES, f"DELETE FROM outcomes WHERE deal_id = {p}", (deal_id,))
            run(cur, c.DEALS, f"DELETE FROM deals WHERE deal_id = {p}", (deal_id,))

        def delete_contact(cur: Any, contact_id: str) -> None:
            activities_where(cur, c.CONTACT_ID, contact_id)
            run(cur, c.OUTCOMES, f"DELETE FROM outcomes WHERE contact_id = {p}", (contact_id,))
            run(cur, c.CONTACTS, f"DELETE FROM contacts WHERE contact_id = {p}", (contact_id,))

        with self._transaction() as cur:
            if entity == c.DEALS:
                delete_deal(cur, entity_id)
            elif entity == c.CONTACTS:
                delete_contact(cur, entity_id)
            else:
                cur.execute(f"SELECT deal_id FROM deals WHERE account_id = {p}", (entity_id,))
                for (deal_id,) in cur.fetchall():
                    delete_deal(cur, deal_id)
                cur.execute(f"SELECT contact_id FROM contacts WHERE account_id = {p}", (entity_id,))
                for (contact_id,) in cur.fetchall():
                    delete_contact(cur, contact_id)
                activities_where(cur, c.ACCOUNT_ID, entity_id)
                run(cur, c.ACCOUNTS, f"DELETE FROM accounts WHERE account_id = {p}", (entity_id,))
        logger.info("store: deleted %s (%d rows)", entity, sum(counts.values()))
        return {k: v for k, v in counts.items() if v}

    # -- reading ----------------------------------------------------------------------------------

    def get(self, table: str, key: str, plain: bool = False) -> dict[str, Any] | None:
        """The stored row of an entity (or activity) by its id, as a request row (or a plain one)."""
        rows = self._query(self._sql[f"get_{table}"], (key,))
        return (row_plain if plain else row_dict)(table, rows[0]) if rows else None

    def counts(self) -> dict[str, int]:
        return {t: int(self._query(f"SELECT count(*) FROM {t}")[0][0]) for t in sc.TABLE_ORDER}

    def _in(self, table: str, column: str, ids: list[str], extra: str = "", params: tuple = ()) -> list[tuple]:
        out: list[tuple] = []
        p = self.dialect.param
        for k in range(0, len(ids), CHUNK):
            part = ids[k:k + CHUNK]
            out += self._query(f"SELECT {_cols(table)} FROM {table} WHERE {column} IN ({', '.join([p] * len(part))}){extra}",
                               (*part, *params))
        return out

    def context_for(self, before: Any, *, activity_id: str | None = None, deal_id: str | None = None,
                    contact_id: str | None = None, account_id: str | None = None, plain: bool = False
                    ) -> StoredContext:
        """The stored context of an activity at ``before`` (see the module docstring for the rule).

        Ids given here win over those of the stored activity (``activity_id``). With ``plain``,
        rows are :func:`store.rows.row_plain` dicts (timestamps in epoch ms), else request rows.
        """
        row_dict = row_plain if plain else _row_dict
        t = to_ms(before)
        out = StoredContext()
        if activity_id is not None:
            out.activity = self.get(c.ACTIVITIES, activity_id, plain)
            if out.activity is not None:
                deal_id = deal_id or out.activity.get(c.DEAL_ID)
                contact_id = contact_id or out.activity.get(c.CONTACT_ID)
                account_id = account_id or out.activity.get(c.ACCOUNT_ID)
        acts: dict[str, tuple] = {}
        if deal_id is not None:
            for r in self._query(self._sql["acts_by_deal"], (deal_id, t, t)):
                acts[r[0]] = r
        n_deal = len(acts)
        n_contact = 0
        if contact_id is not None:
            for r in self._query(self._sql["acts_by_contact"], (contact_id, t, t)):
                acts[r[0]] = r
                n_contact += 1
        acts.pop(activity_id, None)
        ordered = sorted(acts.values(), key=lambda r: (r[1], r[0]))
        history: dict[str, list[dict[str, Any]]] = {c.ACTIVITIES: [row_dict(c.ACTIVITIES, r) for r in ordered]}
        ids = [r[0] for r in ordered]
        p = self.dialect.param
        responses = self._in(c.RESPONSES, c.ACTIVITY_ID, ids, f" AND occurred_at < {p}", (t,)) if ids else []
        history[c.RESPONSES] = [row_dict(c.RESPONSES, r) for r in sorted(responses, key=lambda r: (r[2], r[0], r[1]))]
        stages = outcomes = []
        if deal_id is not None:
            stages = self._query(self._sql["stages"], (deal_id, t))
            outcomes = self._query(self._sql["outcomes"], (deal_id, t))
            history[c.DEAL_STAGES] = [row_dict(c.DEAL_STAGES, r) for r in sorted(stages, key=lambda r: (r[3], r[2]))]
            history[c.OUTCOMES] = [row_dict(c.OUTCOMES, r) for r in sorted(outcomes, key=lambda r: (r[2], r[1]))]
        touched = sorted({r[5] for r in ordered if r[5] is not None})
        history[c.CONTACTS] = [row_dict(c.CONTACTS, r) for r in self._in(c.CONTACTS, c.CONTACT_ID, touched)]
        out.history = history
        if deal_id is not None:
            out.deal = self.get(c.DEALS, deal_id, plain)
            if out.deal is None and not (n_deal or stages or outcomes):
                out.unknown.append(c.DEAL_ID)
        if contact_id is not None:
            out.contact = next((r for r in history[c.CONTACTS] if r[c.CONTACT_ID] == contact_id), None) \
                or self.get(c.CONTACTS, contact_id, plain)
            if out.contact is None and not n_contact:
                out.unknown.append(c.CONTACT_ID)
        given_account = account_id
        account_id = account_id or (out.deal or {}).get(c.ACCOUNT_ID) or (out.contact or {}).get(c.ACCOUNT_ID)
        if account_id is not None:
            out.account = self.get(c.ACCOUNTS, account_id, plain)
            if out.account is None and given_account is not None:
                out.unknown.append(c.ACCOUNT_ID)
        return out

    def recent_activities(self, deal_id: str, limit: int = 10, before: Any = None) -> list[dict[str, Any]]:
        """The deal's latest activities (occurred before ``before``, default: all), newest first, each with
        the names of its ``responses`` (for the deal page)."""
        p = self.dialect.param
        t = to_ms(before) if before is not None else 2**62
        rows = self._query(f"SELECT {_cols(c.ACTIVITIES)} FROM activities WHERE deal_id = {p} AND occurred_at < {p} "
                           f"ORDER BY occurred_at DESC, activity_id DESC LIMIT {int(limit)}", (deal_id, t))
        acts = [row_dict(c.ACTIVITIES, r) for r in rows]
        ids = [a[c.ACTIVITY_ID] for a in acts]
        by_id: dict[str, list[str]] = {}
        for r in (self._in(c.RESPONSES, c.ACTIVITY_ID, ids) if ids else []):
            by_id.setdefault(r[0], []).append(r[1])
        for a in acts:
            a["responses"] = by_id.get(a[c.ACTIVITY_ID], [])
        return acts
