"""Rows of one install copied into another database, table by table, in batches by primary key.

The database side of ``python app.py migrate``: plain row dicts in and out (values as the tables
declare them: aware datetimes, bools), never a driver's row. Every table but ``schema_version``
has a one-column primary key except ``upload_tags``, which is read and written with its upload
(as ``files`` may be). Rows keep their keys: ids, public ids, hashes and dates are copied as they
are, so that every link and key of a client still points at the same thing.

``sync`` brings one table of the target up to the source in batches, each batch its own
transaction: rows missing in the target are inserted, rows that differ are updated; keys are read
in the source's order and looked up in the target by key (never by range), so the two databases
need not sort text alike. ``extras`` finds what the target has and the source no longer has.
On PostgreSQL the id sequences are set past the copied ids at the end (``reset_sequences``).
What each user's uploads take (``user_usage``) is not copied but counted again from the uploads
the target holds (``recount``): uploads the source has expired are not copied.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterator

from sqlalchemy import Table, bindparam, func, or_, select
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError

from .connection import DIALECTS, connect, rows, transaction, value, write
from .migrations import SCHEMA_VERSION, migrate, schema_version_of
from .quotas import recount_usage
from .tables import metadata, upload_tags, uploads, users, files

Row = dict[str, Any]

# Tables whose rows uploads point at, in the order their foreign keys need.
PARENTS = ("users", "api_keys", "sessions", "links", "albums", "categories", "tags")
# Tables that stand alone.
LOOSE = ("names", "secrets")
# Every table that is copied, for counts (schema_version is made by the target's migrate).
TABLES = (*PARENTS, "uploads", "files", "upload_tags", *LOOSE)


@dataclass
class Tally:
    """What a pass did (or, in a dry run, would do) to one table of the target."""

    inserted: int = 0
    updated: int = 0
    removed: int = 0

    def __bool__(self) -> bool:
        return bool(self.inserted or self.updated or self.removed)


def _table(name: str) -> Table:
    return metadata.tables[name]


def _key(name: str) -> Any:
    (column,) = _table(name).primary_key.columns
    return column


# -- the two databases ------------------------------------------------------------------------


def is_url(target: str) -> bool:
    return "://" in target


def missing(target: str) -> bool:
    """Whether a database is known not to exist yet: an SQLite file that is not there."""
    return not is_url(target) and not os.path.exists(target)


def unknown_dialect(target: str) -> str | None:
    """Why this imgz cannot open a database URL (None when it can, or for a file path)."""
    if not is_url(target):
        return None
    try:
        name = make_url(target).get_backend_name()
    except ArgumentError:
        return "it is not a database URL"
    if name not in DIALECTS:
        return f"this imgz has no {name} support"
    return None


def same_database(one: str, other: str) -> bool:
    """Whether two database settings (file paths or URLs) name the same database."""
    if is_url(one) != is_url(other):
        return False
    if not is_url(one):
        if os.path.exists(one) and os.path.exists(other):
            return os.path.samefile(one, other)
        return os.path.realpath(one) == os.path.realpath(other)
    a, b = make_url(one), make_url(other)
    return ((a.get_backend_name(), a.host or "localhost", a.port or 5432, a.database)
            == (b.get_backend_name(), b.host or "localhost", b.port or 5432, b.database))


def open_source(source: str) -> Connection:
    """The source's connection; its schema must be this imgz's (it is only read, never brought
    up to date here). DatabaseError says why not."""
    from ..errors import DatabaseError

    conn = connect(source)
    version = schema_version_of(conn)
    if version != SCHEMA_VERSION:
        conn.close()
        raise DatabaseError(f"its schema is version {version}, this imgz's is {SCHEMA_VERSION}: "
                            "start this imgz on it once first")
    return conn


def open_target(target: str, create: bool) -> Connection:
    """The target's connection with this imgz's schema: made with ``migrate`` when ``create``,
    else (a dry run) an empty stand-in in memory when the target has no schema yet."""
    from ..errors import DatabaseError

    if not create and missing(target):
        conn = connect(":memory:")
        migrate(conn)
        return conn
    conn = connect(target)
    version = schema_version_of(conn)
    if version not in (0, SCHEMA_VERSION):
        conn.close()
        raise DatabaseError(f"it holds a schema of version {version}: give an empty database")
    if version == 0:
        if not create:
            conn.close()
            return open_target(":memory:", True)
        migrate(conn)
    return conn


def foreign_user(src: Connection, dst: Connection) -> str | None:
    """The name of a user the target has and the source does not have alike (same id, name and
    creation date): then the target is another install, not an earlier copy of this one."""
    theirs = {tuple(r) for r in rows(src, select(users.c.id, users.c.name, users.c.created_at))}
    for row in rows(dst, select(users.c.id, users.c.name, users.c.created_at)):
        if tuple(row) not in theirs:
            return row.name
    return None


def counts(conn: Connection, now: datetime) -> dict[str, int]:
    """Rows per table; uploads expired at ``now`` (and their files and tag links) not counted."""
    live = or_(uploads.c.expires_at.is_(None), uploads.c.expires_at > now)
    found = {}
    for name in TABLES:
        table = _table(name)
        query = select(func.count()).select_from(table)
        if name == "uploads":
            query = query.where(live)
        elif name in ("files", "upload_tags"):
            query = query.join(uploads, uploads.c.id == table.c.upload_id).where(live)
        found[name] = int(value(conn, query))
    return found


def max_id(conn: Connection, name: str) -> int:
    return int(value(conn, select(func.max(_key(name)))) or 0)


# -- reading in batches -----------------------------------------------------------------------


def batches(conn: Connection, name: str, size: int) -> Iterator[list[Row]]:
    """Every row of a table in batches of ``size``, by primary key (keyset paging: each batch
    is one query from the last key on, so rows added or removed meanwhile break nothing)."""
    table, key = _table(name), _key(name)
    page = select(table).order_by(key).limit(size)
    last: Any = None
    while True:
        query = page if last is None else page.where(key > last)
        found = [dict(row._mapping) for row in rows(conn, query)]
        if not found:
            return
        yield found
        last = found[-1][key.name]


def by_keys(conn: Connection, name: str, keys: list[Any]) -> dict[Any, Row]:
    """The rows of a table with these primary keys, by key."""
    if not keys:
        return {}
    table, key = _table(name), _key(name)
    query = select(table).where(key.in_(bindparam("keys", expanding=True)))
    return {row._mapping[key.name]: dict(row._mapping) for row in rows(conn, query, {"keys": keys})}


def children(conn: Connection, upload_ids: list[int]) -> tuple[dict[int, list[Row]], dict[int, list[Row]]]:
    """The files and tag links of these uploads, by upload id (files by path, links by tag)."""
    found_files: dict[int, list[Row]] = {}
    found_links: dict[int, list[Row]] = {}
    if not upload_ids:
        return found_files, found_links
    params = {"ids": upload_ids}
    for table, into, order in ((files, found_files, files.c.path),
                               (upload_tags, found_links, upload_tags.c.tag_id)):
        query = (select(table).where(table.c.upload_id.in_(bindparam("ids", expanding=True)))
                 .order_by(table.c.upload_id, order))
        for row in rows(conn, query, params):
            into.setdefault(row.upload_id, []).append(dict(row._mapping))
    return found_files, found_links


# -- writing ----------------------------------------------------------------------------------


def insert(conn: Connection, name: str, new: list[Row]) -> None:
    if new:
        conn.execute(_table(name).insert(), new)


def update(conn: Connection, name: str, changed: list[Row]) -> None:
    """Write these rows over the target's rows of the same keys."""
    if not changed:
        return
    key = _key(name)
    statement = _table(name).update().where(key == bindparam("pk_"))
    conn.execute(statement, [{**row, "pk_": row[key.name]} for row in changed])


def remove(conn: Connection, name: str, keys: list[Any]) -> None:
    """Delete rows by key (what hangs on them by a foreign key goes with them)."""
    if keys:
        write(conn, _table(name).delete().where(_key(name).in_(bindparam("keys", expanding=True))),
              {"keys": keys})


def replace_children(conn: Connection, upload_ids: list[int], new_files: list[Row],
                     new_links: list[Row]) -> None:
    """Give these uploads exactly these files and tag links."""
    if not upload_ids:
        return
    for table in (files, upload_tags):
        write(conn, table.delete().where(table.c.upload_id.in_(bindparam("ids", expanding=True))),
              {"ids": upload_ids})
    insert(conn, "files", new_files)
    insert(conn, "upload_tags", new_links)


# -- a table at a time ------------------------------------------------------------------------


def sync(src: Connection, dst: Connection, name: str, size: int, dry: bool) -> Tally:
    """Insert what the target lacks of a table and update what differs, batch by batch."""
    tally = Tally()
    for batch in batches(src, name, size):
        key = _key(name).name
        have = by_keys(dst, name, [row[key] for row in batch])
        new = [row for row in batch if row[key] not in have]
        changed = [row for row in batch if row[key] in have and have[row[key]] != row]
        tally.inserted += len(new)
        tally.updated += len(changed)
        if not dry and (new or changed):
            with transaction(dst):
                insert(dst, name, new)
                update(dst, name, changed)
    return tally


def extras(src: Connection, dst: Connection, name: str, size: int,
           now: datetime | None = None) -> Iterator[list[Any]]:
    """Batches of the keys of rows the target has and the source has not; with ``now`` (uploads),
    uploads the source has expired by then count as gone too. The caller removes them
    (``remove``) as it goes."""
    key = _key(name)
    kept = select(key).where(key.in_(bindparam("keys", expanding=True)))
    if now is not None:
        kept = kept.where(or_(uploads.c.expires_at.is_(None), uploads.c.expires_at > now))
    for batch in batches(dst, name, size):
        keys = [row[key.name] for row in batch]
        found = {row[0] for row in rows(src, kept, {"keys": keys})}
        gone = [k for k in keys if k not in found]
        if gone:
            yield gone


def reset_sequences(conn: Connection) -> None:
    """Set every id sequence past the largest id (PostgreSQL; SQLite takes the largest + 1 itself)."""
    if conn.dialect.name != "postgresql":
        return
    with transaction(conn):
        for table in metadata.sorted_tables:
            column = table.autoincrement_column
            if column is None:
                continue
            following = func.coalesce(select(func.max(column)).scalar_subquery(), 0) + 1
            conn.execute(select(func.setval(func.pg_get_serial_sequence(table.name, column.name),
                                            following, False)))


def recount(conn: Connection) -> None:
    """Count every user's usage again from the uploads the target holds."""
    with transaction(conn):
        recount_usage(conn)
