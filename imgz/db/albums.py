"""Albums (owned by a user, named by a public id, shown at /a/<page_key>), the uploads moved in
and out of them, and categories."""
from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import bindparam, func, select
from sqlalchemy.engine import Connection

from ..records import Album, Category
from .connection import findable, first, insert, rows, transaction, write
from .tables import albums, categories, uploads

CHUNK = 500  # ids in one IN (...)

_COLUMNS = (albums.c.id, albums.c.public_id, albums.c.user_id, albums.c.name, albums.c.created_at,
            albums.c.is_public, albums.c.page_key)
_ALBUM = select(*_COLUMNS).where(albums.c.public_id == bindparam("public_id"))
_BY_ID = select(*_COLUMNS).where(albums.c.id == bindparam("album_id"))
_BY_KEY = select(*_COLUMNS).where(albums.c.page_key == bindparam("page_key"))
# newest first: one range of albums_user
_OF_USER = (select(*_COLUMNS).where(albums.c.user_id == bindparam("user_id"))
            .order_by(albums.c.id.desc()).limit(bindparam("limit")))
# read from uploads_album_id alone: expired uploads the sweep has not removed yet still count
_COUNTS = (select(uploads.c.album_id, func.count())
           .where(uploads.c.album_id.in_(bindparam("ids", expanding=True)))
           .group_by(uploads.c.album_id))
# (in an UPDATE a bind parameter may not be called as a column of its table)
_BY_ID_OF_USER = (albums.c.id == bindparam("the_album"), albums.c.user_id == bindparam("owner_id"))
_RENAME = albums.update().where(*_BY_ID_OF_USER).values(name=bindparam("new_name"))
_PUBLIC = albums.update().where(*_BY_ID_OF_USER).values(is_public=bindparam("public"))
_DELETE = albums.delete().where(*_BY_ID_OF_USER)
_EMPTY = uploads.update().where(uploads.c.album_id == bindparam("the_album")).values(album_id=None)
# only the album owner's own uploads go in; only the album's own come out
_MOVE = (uploads.update().where(uploads.c.id.in_(bindparam("ids", expanding=True)),
                                uploads.c.user_id == bindparam("owner_id"))
         .values(album_id=bindparam("new_album")))
_TAKE_OUT = (uploads.update().where(uploads.c.id.in_(bindparam("ids", expanding=True)),
                                    uploads.c.album_id == bindparam("the_album"))
             .values(album_id=None))
_CATEGORY = select(categories.c.id, categories.c.name)
_CATEGORY_BY_ID = _CATEGORY.where(categories.c.id == bindparam("category_id"))
_CATEGORY_BY_NAME = _CATEGORY.where(categories.c.name == bindparam("name"))


def new_page_key() -> str:
    """An album page's address: 128 random bits."""
    return secrets.token_urlsafe(16)


def add_album(conn: Connection, public_id: str, user_id: int, name: str, now: datetime,
              is_public: bool = False) -> int:
    return insert(conn, albums.insert(),
                  {"public_id": public_id, "user_id": user_id, "name": name, "created_at": now,
                   "is_public": is_public, "page_key": new_page_key()})


def _album(row: object) -> Album | None:
    return None if row is None else Album(*row)  # type: ignore[misc]


def get_album(conn: Connection, public_id: str) -> Album | None:
    if not findable(public_id):
        return None
    return _album(first(conn, _ALBUM, {"public_id": public_id}))


def get_album_by_id(conn: Connection, album_id: int) -> Album | None:
    return _album(first(conn, _BY_ID, {"album_id": album_id}))


def get_album_by_key(conn: Connection, page_key: str) -> Album | None:
    if not findable(page_key):
        return None
    return _album(first(conn, _BY_KEY, {"page_key": page_key}))


def user_albums(conn: Connection, user_id: int, limit: int) -> list[Album]:
    """A user's albums, newest first, at most ``limit``."""
    return [Album(*row) for row in rows(conn, _OF_USER, {"user_id": user_id, "limit": limit})]


def album_counts(conn: Connection, album_ids: list[int]) -> dict[int, int]:
    """How many uploads each of these albums holds (those expired a moment ago too, until the
    sweep takes them: counted from the index alone, the rows are not read)."""
    found: dict[int, int] = {}
    for start in range(0, len(album_ids), CHUNK):
        for album_id, count in rows(conn, _COUNTS, {"ids": album_ids[start:start + CHUNK]}):
            found[album_id] = count
    return found


def rename_album(conn: Connection, album_id: int, user_id: int, name: str) -> bool:
    return write(conn, _RENAME, {"the_album": album_id, "owner_id": user_id, "new_name": name}) == 1


def set_album_public(conn: Connection, album_id: int, user_id: int, public: bool) -> bool:
    return write(conn, _PUBLIC, {"the_album": album_id, "owner_id": user_id, "public": public}) == 1


def delete_album(conn: Connection, album_id: int, user_id: int) -> bool:
    """Delete a user's album; its uploads stay, in no album."""
    with transaction(conn):
        if first(conn, _BY_ID.where(albums.c.user_id == bindparam("user_id")),
                 {"album_id": album_id, "user_id": user_id}) is None:
            return False
        write(conn, _EMPTY, {"the_album": album_id})
        return write(conn, _DELETE, {"the_album": album_id, "owner_id": user_id}) == 1


def move_to_album(conn: Connection, upload_ids: list[int], user_id: int, album_id: int | None) -> int:
    """Put these uploads of a user into one of their albums (None: into none); how many moved."""
    moved = 0
    with transaction(conn):
        for start in range(0, len(upload_ids), CHUNK):
            moved += write(conn, _MOVE, {"ids": upload_ids[start:start + CHUNK], "owner_id": user_id,
                                         "new_album": album_id})
    return moved


def take_out_of_album(conn: Connection, upload_ids: list[int], album_id: int) -> int:
    """Take these uploads out of this album (others are left as they are); how many came out."""
    taken = 0
    with transaction(conn):
        for start in range(0, len(upload_ids), CHUNK):
            taken += write(conn, _TAKE_OUT, {"ids": upload_ids[start:start + CHUNK], "the_album": album_id})
    return taken


def add_category(conn: Connection, name: str) -> int:
    return insert(conn, categories.insert(), {"name": name})


def get_category(conn: Connection, category_id: int) -> Category | None:
    row = first(conn, _CATEGORY_BY_ID, {"category_id": category_id})
    return None if row is None else Category(*row)


def get_category_by_name(conn: Connection, name: str) -> Category | None:
    row = first(conn, _CATEGORY_BY_NAME, {"name": name})
    return None if row is None else Category(*row)
