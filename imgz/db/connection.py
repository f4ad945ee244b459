"""Opening the database, connections per thread, transactions, and the driver's errors.

The handle every named query takes is a SQLAlchemy ``Connection`` (``db.Connection``), from
``LocalConnections.get()`` in the server or ``connect()`` in a command. Inside ``transaction`` a
query joins the write transaction. Outside, it runs on its own: the driver sends no BEGIN of its
own (see ``sqlite.py`` and ``postgresql.py``), so the database commits each statement at once.
SQLAlchemy still keeps a record of a transaction it began for such statements; it holds nothing
in the database and ``transaction`` ends it (sending nothing) before it begins a write.

The database setting (``Config.database``) is a ``postgresql://`` URL or an SQLite file's path;
each dialect's module holds what only its database understands. On SQLite a thread keeps its
connection as long as it lives. On PostgreSQL connections come from a pool: a thread holds one
until ``release()`` (the web layer releases after each request), and the pool checks it is alive
before handing it out again, so the server recovers by itself when the database comes back.

The statements of every request's path (a stored file's lookup, an API key's, storing an
upload) are ``prepared.Prepared``: compiled once, run on the driver's connection. Everything
else is executed by SQLAlchemy.

Every driver error leaves the package as one of imgz's errors (``errors.py``): a database locked
for the whole busy timeout is ``DatabaseBusy`` (503), one that cannot be reached
``DatabaseUnavailable`` (503), a full disk ``NoStorage`` (507), a taken unique key ``Conflict``,
anything else ``DatabaseError`` (500), each with the driver's error as its ``__cause__``.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator, Sequence

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, ExceptionContext, Row
from sqlalchemy.exc import DBAPIError, TimeoutError as PoolTimeout
from sqlalchemy.pool import QueuePool

from ..errors import Conflict, DatabaseBusy, DatabaseError, DatabaseUnavailable, ImgzError, NoStorage
from . import postgresql, sqlite

DIALECTS: dict[str, ModuleType] = {sqlite.NAME: sqlite, postgresql.NAME: postgresql}
_WRITING = "imgz.writing"  # Connection.info flag: the BEGIN being made is a write transaction's
_IN_WRITE = "imgz.in_write"  # Connection.info flag: a write transaction is open


def dialect(conn: Connection) -> ModuleType:
    """The module of what only this connection's database understands."""
    return DIALECTS[conn.dialect.name]


def is_postgresql(target: str | Path) -> bool:
    """Whether a database setting names a PostgreSQL database (else it is an SQLite file)."""
    return postgresql.handles(str(target))


def open_engine(target: str | Path, pool_size: int | None = None, max_overflow: int = 0) -> Engine:
    """The engine of a database: a ``postgresql://`` URL, or the path of an SQLite file.

    For PostgreSQL, ``pool_size`` connections are kept open and ``max_overflow`` more may be
    opened at busy times; None: no pool, each connection is closed with its ``Connection``.
    Raises ``MissingDriver`` when the database's driver is not installed.
    """
    if is_postgresql(target):
        engine = postgresql.engine_for(str(target), _WRITING, pool_size, max_overflow)
    else:
        engine = sqlite.engine_for(target, _WRITING)
    event.listen(engine, "handle_error", _translate, retval=True)
    return engine


def _checkout(engine: Engine) -> Connection:
    """A connection of the engine; a pool with none free for its whole timeout is busy."""
    try:
        return engine.connect()
    except PoolTimeout as exc:
        raise DatabaseBusy() from exc


def _translate(context: ExceptionContext) -> ImgzError | None:
    """The imgz error for a driver error; other exceptions (bugs) stay as they are."""
    if context.is_pre_ping or not isinstance(context.sqlalchemy_exception, DBAPIError):
        return None  # a failed ping is the pool's to handle: it opens a new connection
    return translated(context.dialect.name, context.original_exception)


def translated(dialect_name: str, cause: BaseException) -> ImgzError:
    """imgz's error for an error of a dialect's driver."""
    kind = DIALECTS[dialect_name].classify(cause)
    if kind == "busy":
        return DatabaseBusy()
    if kind == "unavailable":
        return DatabaseUnavailable()
    if kind == "full":
        return NoStorage()
    if kind == "conflict":
        return Conflict()
    return DatabaseError(str(cause))


def connect(target: str | Path) -> Connection:
    """A connection of its own (for a command or a test); close it when done."""
    return _checkout(open_engine(target))


class LocalConnections:
    """The connection of each thread for one database, opened (or taken from the pool) on first
    use. ``pool_size`` and ``max_overflow`` size PostgreSQL's pool: the threads that may hold a
    connection at once, and how many more may at busy times."""

    def __init__(self, target: str | Path, pool_size: int = 8, max_overflow: int = 8) -> None:
        self.path = str(target)
        self.engine = open_engine(target, pool_size, max_overflow)
        self.pooled = isinstance(self.engine.pool, QueuePool)
        self._local = threading.local()
        self._all: set[Connection] = set()
        self._lock = threading.Lock()

    def get(self) -> Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and conn.invalidated:  # its server connection was lost: a new one
            self._forget(conn)
            conn = None
        if conn is None:
            conn = _checkout(self.engine)
            self._local.conn = conn
            with self._lock:
                self._all.add(conn)
        return conn

    def release(self) -> None:
        """Give this thread's connection back to the pool (nothing to do on SQLite)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self.pooled:
            self._forget(conn)

    def _forget(self, conn: Connection) -> None:
        self._local.conn = None
        with self._lock:
            self._all.discard(conn)
        try:
            conn.close()
        except ImgzError:  # a connection already lost has nothing left to close
            pass

    def close_all(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()
        self.engine.dispose()


@contextmanager
def transaction(conn: Connection) -> Iterator[Connection]:
    """``with transaction(conn):`` runs the block as one write transaction (ROLLBACK on error).

    The write lock is taken at the start (on SQLite, BEGIN IMMEDIATE). Inside another
    ``transaction`` the block joins it.
    """
    if conn.info.get(_IN_WRITE):
        yield conn
        return
    if conn.in_transaction():
        conn.commit()  # only SQLAlchemy's record of statements run on their own: nothing is sent
    conn.info[_WRITING] = True
    try:
        trans = conn.begin()
    finally:
        conn.info.pop(_WRITING, None)
    conn.info[_IN_WRITE] = True
    try:
        with trans:
            yield conn
    finally:
        conn.info.pop(_IN_WRITE, None)


def lock(conn: Connection, name: str) -> None:
    """Inside ``transaction``: wait for the lock ``name`` that every process sharing the database
    takes in turn; it is held to the end of the transaction."""
    dialect(conn).lock(conn, name)


def try_lock(conn: Connection, name: str) -> bool:
    """Inside ``transaction``: take the lock ``name`` unless another process holds it."""
    return dialect(conn).try_lock(conn, name)


def findable(text: str) -> bool:
    """Whether a value a client gave could be stored text at all: PostgreSQL refuses a NUL in
    text, so a lookup by such a value finds nothing, on every database alike, without asking."""
    return "\x00" not in text


def rows(conn: Connection, statement: Any, params: Any = None) -> Sequence[Row]:
    return conn.execute(statement, params).all()


def first(conn: Connection, statement: Any, params: Any = None) -> Row | None:
    return conn.execute(statement, params).first()


def value(conn: Connection, statement: Any, params: Any = None) -> Any:
    """The first column of the first row, or None."""
    return conn.execute(statement, params).scalar()


def write(conn: Connection, statement: Any, params: Any = None) -> int:
    """Run an INSERT, UPDATE or DELETE; return how many rows it changed."""
    return conn.execute(statement, params).rowcount


def insert(conn: Connection, statement: Any, params: Any = None) -> int:
    """Run an INSERT of one row; return its new primary key."""
    return int(conn.execute(statement, params).inserted_primary_key[0])

