"""The history store: CRM events by key, read back as they were known before a time.

``open_store(url)`` opens (and creates or migrates, with a log line) a store:

- ``sqlite:///path/to/store.db`` or a plain file path: an embedded SQLite database (WAL mode,
  every commit synced to disk), the default in the data home (:func:`default_url`);
- ``postgresql://user@host:port/db``: a PostgreSQL server, through psycopg 3.

The URL comes from ``--store``, else ``ACTIVITY_SCORER_STORE``, else the data home's
``store.db``. Below ``serving`` and the ``load`` command; reads go through the point-in-time
rule of ``features`` (see :mod:`store.base`).
"""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path

from store.base import HistoryStore, StoreError, StoredContext, StoreVersionError
from store.schema import POSTGRES, SCHEMA_VERSION, SQLITE

STORE_ENV = "ACTIVITY_SCORER_STORE"
HOME_ENV = "ACTIVITY_SCORER_HOME"  # the data home (training.env.data_home reads the same variable)
STORE_FILE = "store.db"
SQLITE_BUSY_TIMEOUT_S = 30.0


def default_path() -> Path:
    """The embedded store's file in the data home (``$ACTIVITY_SCORER_HOME`` or ``./.activity-scorer``)."""
    return Path(os.environ.get(HOME_ENV, ".activity-scorer")).resolve() / STORE_FILE


def default_url() -> str:
    """``ACTIVITY_SCORER_STORE`` when set, else the embedded store in the data home."""
    return os.environ.get(STORE_ENV, "").strip() or f"sqlite:///{default_path()}"


def redact(url: str) -> str:
    """The URL without its password (for messages and logs)."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def _sqlite_path(url: str) -> Path:
    """``sqlite:///relative.db``, ``sqlite:////absolute.db`` or a plain path -> the file."""
    return Path(url[len("sqlite:///"):]) if url.startswith("sqlite:///") else Path(url)


def _open_sqlite(url: str, create: bool) -> HistoryStore:
    path = _sqlite_path(url).resolve()
    if not path.exists():
        if not create:
            raise StoreError(f"store {path}: no such file (load a dataset first: activity-scorer load --data DIR)")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StoreError(f"store {path}: cannot create its directory ({err.strerror})") from None

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # a commit is on disk when it returns
        return conn

    try:
        store = HistoryStore(str(path), SQLITE, connect)
        store._conn()
    except sqlite3.DatabaseError as err:
        raise StoreError(f"store {path}: cannot open it as SQLite ({err})") from None
    return store


def _open_postgres(url: str) -> HistoryStore:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - a dependency of the project
        raise StoreError("PostgreSQL store: the psycopg package is not installed (pip install 'psycopg[binary]')") from None

    def connect():  # noqa: ANN202
        return psycopg.connect(url, autocommit=True, connect_timeout=10)

    store = HistoryStore(redact(url), POSTGRES, connect)
    try:
        store._conn()
    except psycopg.Error as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise StoreError(f"store {redact(url)}: cannot connect ({first})") from None
    return store


def open_store(url: str | None = None, *, create: bool = True, migrate: bool = True) -> HistoryStore:
    """Open the store at ``url`` (default :func:`default_url`), creating or migrating its schema.

    Args:
        url: ``sqlite:///FILE``, a file path, or ``postgresql://...``.
        create: create an embedded store's file when it does not exist.
        migrate: apply pending schema migrations (each logged); a newer schema is always refused.

    Raises:
        StoreError: unknown URL scheme, unreachable server, unreadable file, or an unknown schema version.
    """
    url = (url or default_url()).strip()
    if url.startswith(("postgresql://", "postgres://")):
        store = _open_postgres(url)
    elif "://" in url and not url.startswith("sqlite:///"):
        raise StoreError(f"store {redact(url)}: unknown kind of store (use sqlite:///FILE, a file path, "
                         f"or postgresql://user@host:port/database)")
    else:
        store = _open_sqlite(url, create)
    try:
        if migrate:
            store.migrate()
        elif store.version() != SCHEMA_VERSION:
            raise StoreVersionError(f"store {store.url}: schema version {store.version()}, this code needs "
                                    f"{SCHEMA_VERSION}")
    except StoreError:
        store.close()
        raise
    except Exception as err:
        store.close()
        raise StoreError(f"store {store.url}: cannot read or create its schema ({type(err).__name__}: {err})") from None
    return store


__all__ = ["HistoryStore", "STORE_ENV", "STORE_FILE", "StoreError", "StoreVersionError", "StoredContext", "default_path",
           "default_url", "open_store", "redact"]
