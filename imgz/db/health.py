"""Whether the database answers, for the server's readiness check (``/readyz``).

The threads' own connections would not show an SQLite file removed or replaced (an open file
stays readable), so on SQLite each check opens the file afresh, read-write and without creating
it, and reads the schema version; on PostgreSQL a connection from the pool (checked alive before
it is handed out) reads it. Either raises one of imgz's errors when the database cannot answer.
"""
from __future__ import annotations

from ..errors import DatabaseError
from . import sqlite
from .connection import LocalConnections
from .migrations import SCHEMA_VERSION, schema_version_of


def ready(connections: LocalConnections) -> int:
    """The database's schema version, read now; an ImgzError when it cannot be read or is not
    this imgz's."""
    if connections.pooled:
        with connections.engine.connect() as conn:
            version = schema_version_of(conn)
    else:
        version = sqlite.fresh_version(connections.path)
    if version != SCHEMA_VERSION:
        raise DatabaseError(f"schema version {version}, not {SCHEMA_VERSION}")
    return version
