"""Whether the database answers, for the server's readiness check (``/readyz``).

The threads' own connections would not show an SQLite file removed or replaced (an open file
stays readable), so on SQLite each check opens the file afresh, read-write and without creating
it, and reads the schema version; on PostgreSQL a connection from the pool (checked alive before
it is handed out) reads it. Either raises one of imgz's errors when the database cannot answer.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import quote

from ..errors import DatabaseError
from .connection import LocalConnections, translated
from .migrations import SCHEMA_VERSION, schema_version_of


def ready(connections: LocalConnections) -> int:
    """The database's schema version, read now; an ImgzError when it cannot be read or is not
    this imgz's."""
    if connections.pooled:
        with connections.engine.connect() as conn:
            version = schema_version_of(conn)
    else:
        version = _sqlite_version(connections.path)
    if version != SCHEMA_VERSION:
        raise DatabaseError(f"schema version {version}, not {SCHEMA_VERSION}")
    return version


def _sqlite_version(path: str) -> int:
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
