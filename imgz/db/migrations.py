"""The schema's versions: an empty database is created from the tables at the latest version; an
older one runs, in one transaction, the steps it lacks, and keeps every row.

Versions: 1 the first schema; 2 tags stored as cleaned today (a step on the rows); 3 the
version kept in a ``schema_version`` table, which any database has (SQLite's header, where
versions 1 and 2 kept it, still counts along for an older imgz); 4 sign-in (passwords, sessions,
one-time links, the install's secrets), albums with a page of their own, what pages, filters
and searches a user's uploads (the search text of each upload, and indexes), and resumable
uploads in progress; 5 quotas (each user's limits, and what their uploads take, counted from the
uploads there are).
A new version adds its step here and its change to ``tables.py``.

One mechanism for every database, run at each start. Several processes starting at once on one
database take turns: the check and the steps run in one write transaction that first takes the
lock "schema" (SQLite's write lock; on PostgreSQL an advisory lock), and the version is read
again once it is held.
"""
from __future__ import annotations

from typing import Callable

import secrets as random

from sqlalchemy import Column, Index, Text, bindparam, cast, inspect, literal, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateIndex

from .. import params
from ..params import search_text
from ..errors import DatabaseError
from .connection import dialect, lock, rows, transaction, value, write
from .quotas import recount_usage
from .tables import albums, metadata, schema_version, tags, upload_tags, uploads, user_usage, users

SCHEMA_VERSION = 5

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


def _add_column(conn: Connection, column: Column) -> None:
    kind = column.type.compile(dialect=conn.dialect)
    default = ""
    if column.server_default is not None:
        default = f" DEFAULT {column.server_default.arg.compile(dialect=conn.dialect)}"
    null = "" if column.nullable else " NOT NULL"
    conn.execute(text(f"ALTER TABLE {column.table.name} ADD COLUMN {column.name} {kind}{null}{default}"))


def _index(name: str) -> Index:
    (found,) = [i for table in metadata.tables.values() for i in table.indexes if i.name == name]
    return found


# what version 4 added to the tables of version 3
NEW_TABLES_4 = ("sessions", "links", "secrets", "resumables")
NEW_INDEXES_4 = ("albums_page_key", "albums_user", "uploads_user_id", "uploads_album_id",
                 "uploads_user_kind", "uploads_user_text", "upload_tags_tag_upload")
DROPPED_INDEXES_4 = ("uploads_user", "upload_tags_tag")  # replaced by wider ones
SEARCH_BATCH = 1000


def _fill_search_text(conn: Connection) -> None:
    """Every upload's search text, from its title, original name and description."""
    pending = (select(uploads.c.id, uploads.c.title, uploads.c.original_filename, uploads.c.description)
               .where(uploads.c.search_text == "", uploads.c.id > bindparam("after"))
               .order_by(uploads.c.id).limit(SEARCH_BATCH))
    fill = uploads.update().where(uploads.c.id == bindparam("upload_id")).values(
        search_text=bindparam("text"))
    after = 0
    while batch := rows(conn, pending, {"after": after}):
        write(conn, fill, [{"upload_id": row.id,
                            "text": search_text(row.title, row.original_filename, row.description)}
                           for row in batch])
        after = batch[-1].id


def _sign_in(conn: Connection) -> None:
    """Passwords, sessions, links and secrets; albums' pages; the search text and the indexes of a
    user's uploads.

    What is there already is left (a database marked older than its tables are).
    """
    found = inspect(conn)
    for column in (users.c.password_hash, users.c.disabled_at, albums.c.is_public, albums.c.page_key,
                   uploads.c.search_text):
        if column.name not in {c["name"] for c in found.get_columns(column.table.name)}:
            _add_column(conn, column)
    for name in NEW_TABLES_4:
        metadata.tables[name].create(conn, checkfirst=True)
    page_key = albums.update().where(albums.c.id == bindparam("album_id")).values(page_key=bindparam("key"))
    keyless = [{"album_id": row.id, "key": random.token_urlsafe(16)}
               for row in rows(conn, select(albums.c.id).where(albums.c.page_key.is_(None)))]
    if keyless:
        write(conn, page_key, keyless)
    _fill_search_text(conn)
    indexes = {i["name"] for table in ("uploads", "albums", "upload_tags") for i in found.get_indexes(table)}
    for name in DROPPED_INDEXES_4:
        if name in indexes:
            conn.execute(text(f"DROP INDEX {name}"))
    for name in NEW_INDEXES_4:
        if name not in indexes:
            conn.execute(CreateIndex(_index(name)))


def _quotas(conn: Connection) -> None:
    """Each user's limits (none to begin with), and their usage counted from their uploads."""
    present = {c["name"] for c in inspect(conn).get_columns("users")}
    for column in (users.c.max_bytes, users.c.max_files):
        if column.name not in present:
            _add_column(conn, column)
    user_usage.create(conn, checkfirst=True)
    recount_usage(conn)


# The step that brings a database of the version before to each version.
STEPS: dict[int, Callable[[Connection], None]] = {2: _merge_tags, 3: _version_table, 4: _sign_in,
                                                  5: _quotas}


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
