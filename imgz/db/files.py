"""Stored names and files: the name an upload reserves, and every file it has, by its path."""
from __future__ import annotations

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection

from ..records import StoredFile
from .connection import findable, rows, value, write
from .prepared import Prepared
from .tables import files, names, uploads

_FILE = Prepared(select(files.c.mime, uploads.c.expires_at)
                 .join_from(files, uploads, uploads.c.id == files.c.upload_id)
                 .where(files.c.path == bindparam("path")))
_UPLOAD_OF = select(files.c.upload_id).where(files.c.path == bindparam("path"))
_ALL_PATHS = select(files.c.path)
_RESERVE = Prepared(lambda dialect: dialect.insert(names))
_RELEASE = names.delete().where(names.c.stem == bindparam("stem"))


def reserve_name(conn: Connection, stem: str) -> bool:
    """Claim 'YYYY/MM/DD/name' for one upload; False when another upload has (or had) it."""
    return _RESERVE.run(conn, {"stem": stem}) == 1


def release_name(conn: Connection, stem: str) -> None:
    write(conn, _RELEASE, {"stem": stem})


def file_lookup(conn: Connection, path: str) -> StoredFile | None:
    """The type and expiry of a stored file by its path under images/ (one indexed lookup)."""
    if not findable(path):
        return None
    row = _FILE.first(conn, {"path": path})
    return None if row is None else StoredFile(*row)


def upload_id_for_path(conn: Connection, path: str) -> int | None:
    if not findable(path):
        return None
    return value(conn, _UPLOAD_OF, {"path": path})


def all_file_paths(conn: Connection) -> set[str]:
    return {row.path for row in rows(conn, _ALL_PATHS)}


def known_paths(conn: Connection, paths: list[str]) -> set[str]:
    """Those of ``paths`` that a stored upload still owns."""
    found: set[str] = set()
    for first in range(0, len(paths), 500):
        batch = [path for path in paths[first:first + 500] if findable(path)]
        if batch:
            found.update(row[0] for row in rows(conn, select(files.c.path)
                                                .where(files.c.path.in_(batch))))
    return found
