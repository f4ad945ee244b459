"""Albums (owned by a user, named by a public id) and categories."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection

from ..records import Album, Category
from .connection import findable, first, insert, rows
from .tables import albums, categories

_ALBUM = (select(albums.c.id, albums.c.public_id, albums.c.user_id, albums.c.name, albums.c.created_at)
          .where(albums.c.public_id == bindparam("public_id")))
_CATEGORY = select(categories.c.id, categories.c.name)
_CATEGORY_BY_ID = _CATEGORY.where(categories.c.id == bindparam("category_id"))
_CATEGORY_BY_NAME = _CATEGORY.where(categories.c.name == bindparam("name"))


def add_album(conn: Connection, public_id: str, user_id: int, name: str, now: datetime) -> int:
    return insert(conn, albums.insert(),
                  {"public_id": public_id, "user_id": user_id, "name": name, "created_at": now})


def get_album(conn: Connection, public_id: str) -> Album | None:
    if not findable(public_id):
        return None
    row = first(conn, _ALBUM, {"public_id": public_id})
    return None if row is None else Album(*row)


def albums_of(conn: Connection, user_id: int, limit: int) -> list[Album]:
    """A user's albums, newest first, at most ``limit`` (the upload page's album choice)."""
    query = (select(albums.c.id, albums.c.public_id, albums.c.user_id, albums.c.name, albums.c.created_at)
             .where(albums.c.user_id == user_id).order_by(albums.c.id.desc()).limit(limit))
    return [Album(*row) for row in rows(conn, query)]


def add_category(conn: Connection, name: str) -> int:
    return insert(conn, categories.insert(), {"name": name})


def get_category(conn: Connection, category_id: int) -> Category | None:
    row = first(conn, _CATEGORY_BY_ID, {"category_id": category_id})
    return None if row is None else Category(*row)


def get_category_by_name(conn: Connection, name: str) -> Category | None:
    row = first(conn, _CATEGORY_BY_NAME, {"name": name})
    return None if row is None else Category(*row)
