"""Uploads in grids ("My uploads", everyone's for admins, an album's page): newest first, a page at
a time, narrowed by album, tag, kind and words.

Pages are cut by keyset, never OFFSET: the next page is the ids below the last one shown (``before``),
the page before it the ids above the first (``after``). An upload made meanwhile has a higher id, so
it shows on the first page and moves nothing on the others; every page is one range of an index.

Each page is two statements: the ids, read from an index alone (``uploads_user_id``,
``uploads_user_kind``, ``uploads_user_text`` with the search text in it, ``uploads_album_id``,
``upload_tags_tag_upload``), then those rows by primary key. Expired uploads the sweep has not yet
removed are left out of what is shown, not of the ids: the query stays on its index.
"""
from __future__ import annotations

import functools
from typing import Sequence

from sqlalchemy import Select, bindparam, select
from sqlalchemy.engine import Connection

from ..records import Listed, Listing, Upload
from .connection import rows
from .tables import UPLOAD_COLUMNS, upload_tags, uploads, users

MAX_PAGE = 500  # uploads read for one page at most (and picked by one form)
_ESCAPE = "/"

_ROWS = (select(*UPLOAD_COLUMNS, users.c.name)
         .join_from(uploads, users, users.c.id == uploads.c.user_id, isouter=True)
         .where(uploads.c.id.in_(bindparam("ids", expanding=True))))


@functools.cache
def _ids(user: bool, album: bool, tag: bool, kind: bool, text: bool, cursor: bool,
         newer: bool) -> Select:
    """The statement of one page's ids for the filters given (made once per combination)."""
    if tag:
        key = upload_tags.c.upload_id
        query = (select(key).join_from(upload_tags, uploads, uploads.c.id == key)
                 .where(upload_tags.c.tag_id == bindparam("tag_id")))
    else:
        key = uploads.c.id
        query = select(key)
    if user and not album:  # an album holds its owner's uploads alone: its index is enough
        query = query.where(uploads.c.user_id == bindparam("user_id"))
    if album:
        query = query.where(uploads.c.album_id == bindparam("album_id"))
    if kind:
        query = query.where(uploads.c.kind == bindparam("kind"))
    if text:
        query = query.where(uploads.c.search_text.like(bindparam("pattern"), escape=_ESCAPE))
    if cursor:
        query = query.where(key > bindparam("cursor") if newer else key < bindparam("cursor"))
    return query.order_by(key.asc() if newer else key.desc()).limit(bindparam("limit"))


def _pattern(words: str) -> str:
    """A LIKE pattern matching ``words`` anywhere (its % and _ taken as themselves)."""
    escaped = words.replace(_ESCAPE, _ESCAPE * 2).replace("%", _ESCAPE + "%").replace("_", _ESCAPE + "_")
    return f"%{escaped}%"


def page_ids(conn: Connection, listing: Listing, limit: int, before: int | None = None,
             after: int | None = None) -> tuple[list[int], bool]:
    """The ids of one page, newest first, and whether there are more past it in the direction
    read: below ``before`` (or from the newest), else above ``after``."""
    newer = after is not None and before is None
    cursor = after if newer else before
    statement = _ids(listing.user_id is not None, listing.album_id is not None,
                     listing.tag_id is not None, bool(listing.kind), bool(listing.text),
                     cursor is not None, newer)
    params = {"user_id": listing.user_id, "album_id": listing.album_id, "tag_id": listing.tag_id,
              "kind": listing.kind, "pattern": _pattern(listing.text), "cursor": cursor,
              "limit": min(limit, MAX_PAGE) + 1}
    found = [row[0] for row in rows(conn, statement, params)]
    more = len(found) > limit
    found = found[:limit]
    return (found[::-1] if newer else found), more


def listed(conn: Connection, upload_ids: Sequence[int]) -> list[Listed]:
    """These uploads (tags not read), in the order given, with their owners' names; ids of
    uploads gone meanwhile are skipped."""
    if not upload_ids:
        return []
    by_id = {row[0]: Listed(Upload(*row[:-1]), row[-1])
             for row in rows(conn, _ROWS, {"ids": list(upload_ids)[:MAX_PAGE]})}
    return [by_id[i] for i in upload_ids if i in by_id]


def list_uploads(conn: Connection, listing: Listing, limit: int, before: int | None = None,
                 after: int | None = None) -> tuple[list[Listed], bool]:
    """One page of uploads, newest first, and whether there are more past it (see page_ids)."""
    upload_ids, more = page_ids(conn, listing, limit, before, after)
    return listed(conn, upload_ids), more


def ids_of(conn: Connection, public_ids: Sequence[str]) -> list[Listed]:
    """The uploads with these public ids (at most MAX_PAGE), with their owners' names."""
    wanted = [p for p in public_ids if "\x00" not in p][:MAX_PAGE]
    if not wanted:
        return []
    found = rows(conn, select(uploads.c.id).where(uploads.c.public_id.in_(wanted)))
    return listed(conn, [row[0] for row in found])
