"""Tags: the rows, the links of uploads to them (in the order given), and the popular ones."""
from __future__ import annotations

import functools
from datetime import datetime
from types import ModuleType
from typing import Iterable

from sqlalchemy import Select, bindparam, false, func, select
from sqlalchemy.engine import Connection

from .. import params
from ..errors import DatabaseBusy
from ..records import PopularTag, Tag
from .connection import findable, dialect, first, rows, write
from .prepared import Prepared
from .tables import tags, upload_tags, uploads

_TAG = select(tags.c.id, tags.c.name, tags.c.url_key).where(tags.c.url_key == bindparam("url_key"))
_NEW_TAG = Prepared(lambda dialect: dialect.insert(tags), columns=("name", "url_key"))
# A tag found for a new link is locked against its deletion (drop_unused) until the link is
# committed; SQLite leaves the lock out (its one write lock is held already).
_TAG_BY_KEY = Prepared(select(tags.c.id, tags.c.name).where(tags.c.url_key == bindparam("url_key"))
                       .with_for_update(read=True, key_share=True))
_NEW_LINK = Prepared(lambda dialect: dialect.insert(upload_tags))
_NAMES_OF = (select(upload_tags.c.upload_id, tags.c.name)
             .join_from(upload_tags, tags, tags.c.id == upload_tags.c.tag_id)
             .where(upload_tags.c.upload_id.in_(bindparam("ids", expanding=True)))
             .order_by(upload_tags.c.upload_id, upload_tags.c.position))
_TAGS_OF = (select(upload_tags.c.tag_id).distinct()
            .where(upload_tags.c.upload_id.in_(bindparam("ids", expanding=True))))
_UNUSED = tags.delete().where(
    tags.c.id.in_(bindparam("ids", expanding=True)),
    ~select(upload_tags.c.tag_id).where(upload_tags.c.tag_id == tags.c.id).exists())
_USES = func.count().label("uploads")
_POPULAR = (select(tags.c.name, tags.c.url_key, _USES)
            .join_from(tags, upload_tags, upload_tags.c.tag_id == tags.c.id)
            .join(uploads, uploads.c.id == upload_tags.c.upload_id)
            .where(uploads.c.nsfw == false(),
                   (uploads.c.expires_at.is_(None)) | (uploads.c.expires_at > bindparam("now")),
                   # a key of dots alone (older uploads) has no page
                   func.replace(tags.c.url_key, ".", "") != "")
            .group_by(tags.c.id, tags.c.name, tags.c.url_key)
            .order_by(_USES.desc(), tags.c.name)
            .limit(bindparam("limit")))
CHUNK = 500  # ids in one IN (...)
TRIES = 5  # rounds of making tags that a deletion at the same moment took away again


@functools.cache
def _lock_tags(dialect: ModuleType) -> Select:
    """Lock tags before they may be deleted: in the order of their keys' code points, the order
    link_tags locks them in, so that the two never wait for each other in a circle."""
    return (select(tags.c.id).where(tags.c.id.in_(bindparam("ids", expanding=True)))
            .order_by(dialect.binary(tags.c.url_key)).with_for_update())


def link_tags(conn: Connection, upload_id: int, names: Iterable[str]) -> tuple[str, ...]:
    """Give an upload its tags, in order; a tag new to the site gets its row. Return the names
    the upload now carries: a name whose key (``params.tag_key``) a tag has already joins that
    tag, which keeps its own name. Run it inside ``transaction``.
    """
    keyed: dict[str, str] = {}
    for name in names:
        keyed.setdefault(params.tag_key(name), name)
    if not keyed:
        return ()
    ordered = sorted(keyed)
    found: dict[str, tuple[int, str]] = {}
    for _ in range(TRIES):
        # Each try makes and locks every tag in key order, under a savepoint: a try that finds a
        # tag taken away meanwhile gives back all it made and locked, so the next try takes them
        # in key order again (keeping some from an earlier try could close a circle of waits).
        savepoint = conn.begin_nested()
        try:
            _NEW_TAG.many(conn, [{"name": keyed[key], "url_key": key} for key in ordered])
            found = {}
            for key in ordered:
                row = _TAG_BY_KEY.first(conn, {"url_key": key})
                if row is not None:  # else deleted since by a transaction that then committed
                    found[key] = row
        except BaseException:
            savepoint.rollback()
            raise
        if len(found) == len(keyed):
            savepoint.commit()
            break
        savepoint.rollback()
    if len(found) < len(keyed):
        raise DatabaseBusy()
    _NEW_LINK.many(conn, [{"upload_id": upload_id, "tag_id": found[key][0], "position": position}
                          for position, key in enumerate(keyed)])
    return tuple(found[key][1] for key in keyed)


def names_of(conn: Connection, upload_ids: list[int]) -> dict[int, tuple[str, ...]]:
    """The tag names of each of these uploads, in their order."""
    found: dict[int, list[str]] = {}
    for start in range(0, len(upload_ids), CHUNK):
        for row in rows(conn, _NAMES_OF, {"ids": upload_ids[start:start + CHUNK]}):
            found.setdefault(row.upload_id, []).append(row.name)
    return {upload_id: tuple(names) for upload_id, names in found.items()}


def tag_ids_of(conn: Connection, upload_ids: list[int]) -> list[int]:
    """The tags these uploads carry (at most ``CHUNK`` uploads)."""
    return [row.tag_id for row in rows(conn, _TAGS_OF, {"ids": upload_ids})]


def drop_unused(conn: Connection, tag_ids: list[int]) -> None:
    """Delete those of these tags that no upload carries any more (inside ``transaction``)."""
    locking = _lock_tags(dialect(conn))
    for start in range(0, len(tag_ids), CHUNK):
        chunk = tag_ids[start:start + CHUNK]
        # first locked, then checked in a statement of its own: a link committed meanwhile is seen
        rows(conn, locking, {"ids": chunk})
        write(conn, _UNUSED, {"ids": chunk})


def get_tag(conn: Connection, url_key: str) -> Tag | None:
    if not findable(url_key):
        return None
    row = first(conn, _TAG, {"url_key": url_key})
    return None if row is None else Tag(id=row.id, name=row.name, url_key=row.url_key)


def popular_tags(conn: Connection, now: datetime, limit: int) -> list[PopularTag]:
    """Tags with the most public uploads (not NSFW, not expired), most used first."""
    return [PopularTag(name=row.name, url_key=row.url_key, uploads=row.uploads)
            for row in rows(conn, _POPULAR, {"now": now, "limit": limit})]
