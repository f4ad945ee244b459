"""Opening the database, one connection per thread, transactions, and the driver's errors.

The handle every named query takes is a SQLAlchemy ``Connection`` (``db.Connection``), from
``LocalConnections.get()`` in the server or ``connect()`` in a command. Inside ``transaction`` a
query joins the write transaction. Outside, it runs on its own: the driver sends no BEGIN of its
own (see ``sqlite.py``), so the database commits each statement at once. SQLAlchemy still keeps
a record of a transaction it began for such statements; it holds nothing in the database and
``transaction`` ends it (sending nothing) before it begins a write.

The statements of every request's path (a stored file's lookup, an API key's, storing an
upload) are ``prepared.Prepared``: compiled once, run on the driver's connection. Everything
else is executed by SQLAlchemy.

Every driver error leaves the package as one of imgz's errors (``errors.py``): a database locked
for the whole busy timeout is ``DatabaseBusy`` (503), a full disk ``NoStorage`` (507), a taken
unique key ``Conflict``, anything else ``DatabaseError`` (500), each with the driver's error as
its ``__cause__``.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator, Sequence

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, ExceptionContext, Row
from sqlalchemy.exc import DBAPIError

from ..errors import Conflict, DatabaseBusy, DatabaseError, ImgzError, NoStorage
from . import sqlite

DIALECTS: dict[str, ModuleType] = {sqlite.NAME: sqlite}
_WRITING = "imgz.writing"  # Connection.info flag: the BEGIN being made is a write transaction's
_IN_WRITE = "imgz.in_write"  # Connection.info flag: a write transaction is open


def dialect(conn: Connection) -> ModuleType:
    """The module of what only this connection's database understands."""
    return DIALECTS[conn.dialect.name]


def open_engine(path: str | Path) -> Engine:
    """The engine of the database at ``path``: an SQLite file (the one dialect so far)."""
    engine = sqlite.engine_for(path, _WRITING)
    event.listen(engine, "handle_error", _translate, retval=True)
    return engine


def _translate(context: ExceptionContext) -> ImgzError | None:
    """The imgz error for a driver error; other exceptions (bugs) stay as they are."""
    if not isinstance(context.sqlalchemy_exception, DBAPIError):
        return None
    return translated(context.dialect.name, context.original_exception)


def translated(dialect_name: str, cause: BaseException) -> ImgzError:
    """imgz's error for an error of a dialect's driver."""
    kind = DIALECTS[dialect_name].classify(cause)
    if kind == "busy":
        return DatabaseBusy()
    if kind == "full":
        return NoStorage()
    if kind == "conflict":
        return Conflict()
    return DatabaseError(str(cause))


def connect(path: str | Path) -> Connection:
    """A connection of its own (for a command or a test); close it when done."""
    return open_engine(path).connect()


class LocalConnections:
    """One connection per thread for one database, opened on first use."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.engine = open_engine(path)
        self._local = threading.local()
        self._all: list[Connection] = []
        self._lock = threading.Lock()

    def get(self) -> Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self.engine.connect()
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

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

