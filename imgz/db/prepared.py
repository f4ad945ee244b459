"""Statements on every request's path, compiled once and run on the driver's connection.

SQLAlchemy's work around each execution (events, an execution context, a result object, the
statement's cache key) costs several times a lookup by a unique index or a one-row insert. A
``Prepared`` statement is still declared in Core against the tables and compiled by SQLAlchemy
for the connection's dialect, once (with the driver's own placeholders: SQLite's ``?``,
psycopg's ``%(name)s``); its columns' types still convert the values both ways
(dates, flags). Per call only the driver works. It runs on the same connection as everything
else, so inside ``transaction`` it is part of the transaction, and outside it commits at once
like any statement run on its own. Driver errors come out as imgz's errors, as elsewhere.

Not for statements with an expanding ``IN``: their SQL changes with the list's length.
"""
from __future__ import annotations

from types import ModuleType
from typing import Any, Callable, Iterable, Sequence

from sqlalchemy.engine import Connection
from sqlalchemy.sql import Executable

from .connection import dialect, translated

Params = dict[str, Any]


class Prepared:
    """One statement, or a function making it from the dialect's module (``sqlite.insert``).

    ``columns`` names the columns an INSERT gives values for (all of the table's by default).
    """

    def __init__(self, statement: Executable | Callable[[ModuleType], Executable],
                 columns: Sequence[str] | None = None) -> None:
        self.statement = statement
        self.columns = list(columns) if columns is not None else None
        self._plans: dict[str, tuple] = {}
        self._converters: dict[str, list] = {}

    def _plan(self, conn: Connection) -> tuple:
        engine_dialect = conn.dialect
        statement = self.statement
        if not isinstance(statement, Executable):
            statement = statement(dialect(conn))
        compiled = statement.compile(dialect=engine_dialect, column_keys=self.columns)
        names = list(compiled.positiontup) if compiled.positional else list(compiled.binds)
        binds = [(name, compiled.binds[name].type.dialect_impl(engine_dialect)
                  .bind_processor(engine_dialect)) for name in names]
        plan = (compiled.string, compiled.positional, binds,
                [column.type.dialect_impl(engine_dialect)
                 for column in getattr(statement, "exported_columns", ())])
        self._plans[engine_dialect.name] = plan
        return plan

    @staticmethod
    def _args(positional: bool, binds: list, params: Params) -> Any:
        values = [(name, params[name] if convert is None else convert(params[name]))
                  for name, convert in binds]
        return [value for _, value in values] if positional else dict(values)

    def _cursor(self, conn: Connection, params: Params | Iterable[Params], many: bool) -> tuple:
        sql, positional, binds, results = self._plans.get(conn.dialect.name) or self._plan(conn)
        cursor = conn.connection.dbapi_connection.cursor()
        try:
            if many:
                cursor.executemany(sql, [self._args(positional, binds, p) for p in params])
            else:
                cursor.execute(sql, self._args(positional, binds, params))  # type: ignore[arg-type]
        except conn.dialect.loaded_dbapi.Error as exc:
            raise _failed(conn, cursor, exc) from exc
        return cursor, results

    def first(self, conn: Connection, params: Params) -> tuple | None:
        """The first row (of a SELECT or an INSERT ... RETURNING), its values converted."""
        cursor, results = self._cursor(conn, params, False)
        try:
            row = cursor.fetchone()
        except conn.dialect.loaded_dbapi.Error as exc:
            raise _failed(conn, cursor, exc) from exc
        description = cursor.description
        cursor.close()
        if row is None:
            return None
        converters = self._converters.get(conn.dialect.name)
        if converters is None:  # once: a driver may tell the columns' types only with a result
            converters = [kind.result_processor(conn.dialect, column[1])
                          for kind, column in zip(results, description)]
            self._converters[conn.dialect.name] = converters
        return tuple(v if convert is None else convert(v) for convert, v in zip(converters, row))

    def run(self, conn: Connection, params: Params) -> int:
        """Run it once; return how many rows it changed."""
        cursor, _ = self._cursor(conn, params, False)
        count = cursor.rowcount
        cursor.close()
        return count

    def many(self, conn: Connection, params: Iterable[Params]) -> int:
        """Run it once for each set of parameters; return how many rows they changed."""
        cursor, _ = self._cursor(conn, params, True)
        count = cursor.rowcount
        cursor.close()
        return count


def _failed(conn: Connection, cursor: Any, error: Exception) -> Exception:
    """imgz's error for a driver error of a prepared statement. A connection the server dropped
    is marked lost, as SQLAlchemy does for its own statements: the next use opens a new one."""
    lost = conn.dialect.is_disconnect(error, conn.connection.dbapi_connection, cursor)
    try:
        cursor.close()
    except conn.dialect.loaded_dbapi.Error:
        pass
    if lost:
        conn.invalidate(error)
    return translated(conn.dialect.name, error)
