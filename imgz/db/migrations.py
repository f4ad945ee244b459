"""The schema's versions: an empty database is created from the tables at the latest version; an
older one runs, in one transaction, the steps it lacks, and keeps every row.

Versions: 1 the first schema; 2 tags stored as cleaned today (a step on the rows); 3 the
version kept in a ``schema_version`` table, which any database has (SQLite's header, where
versions 1 and 2 kept it, still counts along for an older imgz).
A new version adds its step here and its change to ``tables.py``.

One mechanism for every database, run at each start. Several processes starting at once on one
database take turns: the check and the steps run in one write transaction that first takes the
lock "schema" (SQLite's write lock; on PostgreSQL an advisory lock), and the version is read
again once it is held.
"""
from __future__ import annotations

from typing import Callable

from sqlalchemy import Text, bindparam, cast, inspect, literal, select
from sqlalchemy.engine import Connection

from .. import params
from ..errors import DatabaseError
from .connection import dialect, lock, rows, transaction, value, write
from .tables import metadata, schema_version, tags, upload_tags

SCHEMA_VERSION = 3

_VERSION = select(schema_version.c.version)


def _merge_tags(conn: Connection) -> None:
    """Tags stored as cleaned today (NFKC names, NFKC case-folded keys), duplicates merged.

    Tags once differed by their Unicode form alone ('café' in NFC and NFD, 'ＡＢＣ' and 'abc'), each
    with its own row and page. The oldest row of each new key stays and takes the others' uploads;
    an upload that carried several keeps one link. ASCII tags keep their key, so their URLs stay.
    A stored name today's rules would refuse keeps its text and gets the new key.
    """
    keep: dict[str, int] = {}
    renamed: list[dict] = []
    moved = dialect(conn).insert(upload_tags).from_select(
        ["upload_id", "tag_id", "position"],
        select(upload_tags.c.upload_id, bindparam("survivor"), upload_tags.c.position)
        .where(upload_tags.c.tag_id == bindparam("tag_id")))
    unlinked = upload_tags.delete().where(upload_tags.c.tag_id == bindparam("tag_id"))
    dropped = tags.delete().where(tags.c.id == bindparam("tag_id"))
    for row in rows(conn, select(tags.c.id, tags.c.name, tags.c.url_key).order_by(tags.c.id)):
        new_name = params.clean_tag(row.name) or row.name
        new_key = params.tag_key(new_name)
        survivor = keep.setdefault(new_key, row.id)
        if survivor != row.id:
            write(conn, moved, {"survivor": survivor, "tag_id": row.id})
            write(conn, unlinked, {"tag_id": row.id})
            write(conn, dropped, {"tag_id": row.id})
        elif (new_name, new_key) != (row.name, row.url_key):
            renamed.append({"tag_id": row.id, "new_name": new_name, "new_key": new_key})
    if not renamed:
        return
    # Keys are unique: park the renamed ones first ('#' is in no tag), so no new key meets an old
    # one that another row still holds.
    by_id = tags.c.id == bindparam("tag_id")
    write(conn, tags.update().where(by_id).values(url_key=literal("#") + cast(tags.c.id, Text)),
          [{"tag_id": r["tag_id"]} for r in renamed])
    write(conn, tags.update().where(by_id).values(name=bindparam("new_name"),
                                                  url_key=bindparam("new_key")), renamed)


def _version_table(conn: Connection) -> None:
    schema_version.create(conn)


# The step that brings a database of the version before to each version.
STEPS: dict[int, Callable[[Connection], None]] = {2: _merge_tags, 3: _version_table}


def schema_version_of(conn: Connection) -> int:
    """The schema version of this database; 0 when it is empty."""
    if inspect(conn).has_table(schema_version.name):
        return int(value(conn, _VERSION) or 0)
    return dialect(conn).legacy_version(conn)


def migrate(conn: Connection) -> None:
    """Bring the schema up to date; a database of a newer imgz is refused (DatabaseError)."""
    if schema_version_of(conn) == SCHEMA_VERSION:
        return
    with transaction(conn):
        lock(conn, "schema")
        # another process starting on the same database may have done it meanwhile
        version = schema_version_of(conn)
        if version > SCHEMA_VERSION:
            raise DatabaseError(f"its schema (version {version}) is newer than this imgz knows "
                                f"(version {SCHEMA_VERSION})")
        if version == 0:
            metadata.create_all(conn)
        else:
            for number in range(version + 1, SCHEMA_VERSION + 1):
                STEPS[number](conn)
        write(conn, schema_version.delete())
        write(conn, schema_version.insert(), {"version": SCHEMA_VERSION})
        dialect(conn).mark_version(conn, SCHEMA_VERSION)
