"""SQLite: everything in imgz that only SQLite understands, and nothing else.

The rest of the db package is portable SQLAlchemy Core; it reaches this module through
``dialect(conn)`` in ``connection.py``. A second database is a sibling module with the same names
(``NAME``, ``engine_for``, ``WITHOUT_ROWID``, ``partial``, ``upsert``, ``insert``, ``lock``,
``try_lock``, ``classify``, ``legacy_version``, ``mark_version``), added to
``connection.DIALECTS`` (``postgresql.py``).

What is SQLite's alone:
- every new connection gets WAL, ``synchronous = NORMAL``, a busy timeout and foreign keys
  (PRAGMAs);
- transactions: the driver's own implicit BEGIN is turned off and SQLAlchemy's "begin" event
  opens them instead (the pysqlite recipe of SQLAlchemy's SQLite documentation); a write
  transaction opens with BEGIN IMMEDIATE, so a writer waits for the lock at its start instead of
  failing to turn a read lock into a write lock halfway through. Statements outside a write
  transaction run on their own, each committed by SQLite at once, as before. That one write lock
  is every lock a transaction needs: ``lock`` and ``try_lock`` have nothing left to take, and
  row locks (``FOR UPDATE``) are left out of SQLite's SQL by SQLAlchemy;
- table options: WITHOUT ROWID, the WHERE of a partial index;
- which driver errors mean "busy", "full" or "conflict";
- the schema version as databases made before the version table kept it, ``PRAGMA
  user_version``, still counted along for an older imgz.
"""
from __future__ import annotations

import functools
import sqlite3
from pathlib import Path
from urllib.parse import quote
from typing import Any

from sqlalchemy import Table, create_engine, event
from sqlalchemy.dialects.sqlite import Insert, insert as _insert
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.pool import NullPool

NAME = "sqlite"
BUSY_TIMEOUT_MS = 10_000
PRAGMAS = ("PRAGMA journal_mode = WAL", "PRAGMA synchronous = NORMAL", "PRAGMA foreign_keys = ON")

# Keyword arguments of Table: a table whose primary key is its only lookup needs no rowid.
WITHOUT_ROWID: dict[str, Any] = {"sqlite_with_rowid": False}


def binary(column: Any) -> Any:
    """The column compared by code points: SQLite's own way with text."""
    return column


def partial(where: Any) -> dict[str, Any]:
    """Keyword arguments of Index for a partial index."""
    return {"sqlite_where": where}


def upsert(table: Table) -> Insert:
    """SQLite's INSERT, which takes ON CONFLICT clauses."""
    return _insert(table)


@functools.cache
def insert(table: Table) -> Insert:
    """An INSERT that does nothing when the row's unique key is taken (ON CONFLICT DO NOTHING)."""
    return _insert(table).on_conflict_do_nothing()


def lock(conn: Connection, name: str) -> None:
    """Inside a write transaction the database's write lock is held already."""


def try_lock(conn: Connection, name: str) -> bool:
    """Inside a write transaction the database's write lock is held already."""
    return True


def engine_for(path: str | Path, writing: str) -> Engine:
    """The engine of one database file.

    Connections are not pooled here: each thread keeps its own for as long as it lives
    (``connection.LocalConnections``), so a pool would only cap how many threads may have one.
    ``writing`` names the ``Connection.info`` flag that asks the next BEGIN to be a write's.
    """
    engine = create_engine(URL.create("sqlite+pysqlite", database=str(path)), poolclass=NullPool,
                           connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None  # the driver emits no BEGIN of its own
        cursor = dbapi_connection.cursor()
        try:
            # first: the journal mode may have to wait for another process's lock
            cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            for pragma in PRAGMAS:
                cursor.execute(pragma)
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        if conn.info.get(writing):
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def classify(error: BaseException) -> str | None:
    """What a driver error means to imgz: 'busy', 'full', 'conflict' (a unique key), or None."""
    if not isinstance(error, sqlite3.Error):
        return None
    code = getattr(error, "sqlite_errorcode", None)
    if code is None:
        return "full" if "full" in str(error).lower() else None
    if code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return "busy"
    if code & 0xFF == sqlite3.SQLITE_FULL:
        return "full"
    if code in (sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY):
        return "conflict"
    return None


def legacy_version(conn: Connection) -> int:
    """The schema version a database made before the version table keeps in its header."""
    return int(conn.exec_driver_sql("PRAGMA user_version").scalar_one())


def mark_version(conn: Connection, version: int) -> None:
    """Keep the header's count too: an older imgz, which reads only that, then finds nothing
    to do instead of creating tables that are there."""
    conn.exec_driver_sql(f"PRAGMA user_version = {int(version)}")


def snapshot(source: str | Path, dest: str | Path) -> None:
    """Copy the database file ``source`` into the new file ``dest`` as one consistent moment,
    through SQLite's online backup API, while other processes go on reading and writing.

    First waits for the write lock and lets it go at once: a write transaction begun before
    this call has ended when the copy is taken (the backup's lease relies on it). The copy reads
    one snapshot of the committed pages and holds no lock that stops writers.
    """
    try:
        _snapshot(source, dest)
    except sqlite3.Error as exc:
        from .connection import translated  # that module imports this one

        raise translated(NAME, exc) from exc


def _snapshot(source: str | Path, dest: str | Path) -> None:
    src = sqlite3.connect(str(source), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    try:
        src.execute("BEGIN IMMEDIATE")
        src.execute("COMMIT")
        dst = sqlite3.connect(str(dest), isolation_level=None)
        try:
            src.backup(dst)
            # one file, no -wal beside it, whatever the source's journal
            dst.execute("PRAGMA journal_mode = DELETE")
        finally:
            dst.close()
    finally:
        src.close()


def fresh_version(path: str | Path) -> int:
    """The schema version read through a new connection to the file (read-write, never creating
    it), so that a file removed or replaced under the open ones is noticed."""
    from .connection import translated

    uri = "file:" + quote(str(Path(path).resolve())) + "?mode=rw"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=1.0)
        try:
            row = conn.execute("SELECT version FROM schema_version").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise translated("sqlite", exc) from exc
    return int(row[0]) if row else 0
