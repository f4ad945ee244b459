"""PostgreSQL: everything in imgz that only PostgreSQL understands, and nothing else.

A sibling of ``sqlite.py`` with the same names. Importing it costs nothing: the driver (psycopg 3)
and SQLAlchemy's PostgreSQL dialect are imported when an engine is made or a statement compiled,
so a default start on SQLite loads neither. Without psycopg, ``engine_for`` raises
``MissingDriver`` naming the file of requirements to install.

What is PostgreSQL's alone:
- the URL: ``postgresql://`` and ``postgres://`` go to SQLAlchemy's ``postgresql+psycopg``;
- a pool per process (sized by the caller from its threads) that pings a connection before
  handing it out, so the server coming back after a restart is found at once; a connect timeout
  and a statement timeout, so a request never hangs on the database;
- transactions: the driver runs in autocommit, so a statement outside a write transaction is
  committed at once and no connection sits "idle in transaction" between requests; a write
  transaction is an explicit BEGIN (READ COMMITTED: the code relies on unique keys, and takes
  row locks, ``FOR UPDATE``, where SQLite relied on its one write lock);
- advisory locks: ``lock`` (held to the end of the transaction) and ``try_lock``;
- which driver errors mean "busy", "full", "conflict" or "unavailable" (the server unreachable).
"""
from __future__ import annotations

import functools
import importlib
import zlib
from typing import Any

from sqlalchemy import Table, create_engine, event, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.pool import NullPool, QueuePool

NAME = "postgresql"
DRIVER = "postgresql+psycopg"
SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
REQUIREMENTS = "requirements-scale.txt"
CONNECT_TIMEOUT = 5  # seconds to reach the server
POOL_TIMEOUT = 10  # seconds a thread waits for a free connection of the pool
STATEMENT_TIMEOUT_MS = 30_000
IDLE_IN_TRANSACTION_MS = 60_000  # a transaction left open (a bug, a killed thread) is ended

WITHOUT_ROWID: dict[str, Any] = {}  # every PostgreSQL table is a heap with its own index


class MissingDriver(Exception):
    """The driver of a configured database is not installed."""

    def __init__(self, package: str, requirements: str) -> None:
        self.package, self.requirements = package, requirements
        super().__init__(f"{package} is not installed: pip install -r {requirements}")


def handles(target: str) -> bool:
    """Whether a database setting names a PostgreSQL database."""
    return target.split(":", 1)[0].lower() in SCHEMES and "://" in target


def binary(column: Any) -> Any:
    """The column compared by code points (the "C" collation), whatever the database's locale."""
    return column.collate("C")


def partial(where: Any) -> dict[str, Any]:
    """Keyword arguments of Index for a partial index: none, the index takes every row. Naming
    PostgreSQL's own argument would have SQLAlchemy load its PostgreSQL dialect wherever the
    tables are declared, on SQLite too; an index entry per row costs a few bytes an upload."""
    return {}


def upsert(table: Table) -> Any:
    """PostgreSQL's INSERT, which takes ON CONFLICT clauses."""
    from sqlalchemy.dialects.postgresql import insert as _insert

    return _insert(table)


@functools.cache
def insert(table: Table) -> Any:
    """An INSERT that does nothing when the row's unique key is taken (ON CONFLICT DO NOTHING)."""
    return upsert(table).on_conflict_do_nothing()


def engine_for(target: str, writing: str, pool_size: int | None = None,
               max_overflow: int = 0) -> Engine:
    """The engine of one PostgreSQL database.

    ``pool_size`` None: no pool (a command's one connection, closed with it). ``writing`` names
    the ``Connection.info`` flag that asks the next BEGIN to be a write's.
    """
    try:
        importlib.import_module("psycopg")
    except ImportError:
        raise MissingDriver("psycopg", REQUIREMENTS) from None
    url = make_url(target).set(drivername=DRIVER)
    options = (f"-c statement_timeout={STATEMENT_TIMEOUT_MS} "
               f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_MS}")
    connect_args = {"connect_timeout": CONNECT_TIMEOUT, "autocommit": True, "options": options,
                    "application_name": "imgz"}
    if pool_size is None:
        engine = create_engine(url, poolclass=NullPool, connect_args=connect_args)
    else:
        engine = create_engine(url, poolclass=QueuePool, pool_size=pool_size,
                               max_overflow=max_overflow, pool_timeout=POOL_TIMEOUT,
                               pool_pre_ping=True, connect_args=connect_args)

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        if conn.info.get(writing):
            conn.exec_driver_sql("BEGIN")

    return engine


# SQLSTATE classes and codes (PostgreSQL's appendix A)
_BUSY = {"40001", "40P01", "55P03", "57014", "53300", "53400"}  # serialization, deadlock, lock, timeout, too many
_FULL = {"53100"}  # disk full
_CONFLICT = {"23505"}  # unique violation
_GONE = {"57P01", "57P02", "57P03", "08000", "08001", "08003", "08004", "08006", "08007"}


def classify(error: BaseException) -> str | None:
    """What a driver error means to imgz: 'busy', 'full', 'conflict', 'unavailable', or None."""
    try:
        import psycopg
    except ImportError:
        return None
    if not isinstance(error, psycopg.Error):
        return None
    state = error.sqlstate or ""
    if state in _CONFLICT:
        return "conflict"
    if state in _FULL:
        return "full"
    if state in _BUSY:
        return "busy"
    if state in _GONE or (not state and isinstance(error, psycopg.OperationalError)):
        return "unavailable"  # refused, reset, shut down: no answer from the server at all
    return None


def _key(name: str) -> int:
    """The advisory lock's number for a name: the same in every process, a signed 32-bit value."""
    return zlib.crc32(b"imgz:" + name.encode()) - 2**31


def lock(conn: Connection, name: str) -> None:
    """Wait for the lock ``name``, held to the end of the transaction (run inside one)."""
    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _key(name)})


def try_lock(conn: Connection, name: str) -> bool:
    """Take the lock ``name`` to the end of the transaction unless another holds it."""
    return bool(conn.execute(text("SELECT pg_try_advisory_xact_lock(:key)"),
                             {"key": _key(name)}).scalar())


def legacy_version(conn: Connection) -> int:
    """PostgreSQL databases have kept their version in the table from the first."""
    return 0


def mark_version(conn: Connection, version: int) -> None:
    """Nothing besides the version table keeps it."""
