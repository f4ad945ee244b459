"""Resumable (tus) uploads in progress: one row each, kept by the SHA-256 of the upload's id.

The row is the upload's state for every process: its length, how much of it is durably stored
(``upload_offset``), what the client said of the file, and the store's handle on the bytes. A
writer first takes the row's lease (an owner token and an end): of two processes asked to write
the same upload at once, one gets it and the other is told the upload is busy. The offset only
moves under the lease, and only from the value the writer started from.
"""
from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import bindparam, or_, select
from sqlalchemy.engine import Connection, Row

from ..records import Resumable
from . import connection as c
from .tables import resumables as t

_COLUMNS = (t.c.hash, t.c.user_id, t.c.length, t.c.upload_offset, t.c.metadata, t.c.handle,
            t.c.created_at, t.c.updated_at, t.c.lease_owner, t.c.lease_until)
_GET = select(*_COLUMNS).where(t.c.hash == bindparam("digest"))
_FREE = or_(t.c.lease_until.is_(None), t.c.lease_until <= bindparam("now"),
            t.c.lease_owner == bindparam("owner"))
_TAKE = (t.update().where(t.c.hash == bindparam("digest"), _FREE)
         .values(lease_owner=bindparam("owner"), lease_until=bindparam("until")))
_MOVE = (t.update().where(t.c.hash == bindparam("digest"), t.c.lease_owner == bindparam("owner"),
                          t.c.upload_offset == bindparam("old"))
         .values(upload_offset=bindparam("new"), updated_at=bindparam("now"),
                 lease_until=bindparam("until")))
_RELEASE = (t.update().where(t.c.hash == bindparam("digest"), t.c.lease_owner == bindparam("owner"))
            .values(lease_owner=None, lease_until=None))
_DELETE = t.delete().where(t.c.hash == bindparam("digest"))
_ABANDONED = (select(*_COLUMNS)
              .where(t.c.updated_at < bindparam("before"),
                     or_(t.c.lease_until.is_(None), t.c.lease_until <= bindparam("now")))
              .order_by(t.c.updated_at).limit(bindparam("most")))

_OF_USER = select(*_COLUMNS).where(t.c.user_id == bindparam("user_id"))


def _record(row: Row) -> Resumable:
    try:
        metadata = json.loads(row[4])
    except ValueError:
        metadata = {}
    return Resumable(digest=row[0], user_id=row[1], length=row[2], offset=row[3],
                     metadata=metadata if isinstance(metadata, dict) else {}, handle=row[5],
                     created_at=row[6], updated_at=row[7], lease_owner=row[8], lease_until=row[9])


def add_resumable(conn: Connection, digest: str, user_id: int, length: int,
                  metadata: dict[str, str], handle: str, now: datetime) -> None:
    c.write(conn, t.insert(), {"hash": digest, "user_id": user_id, "length": length,
                               "upload_offset": 0, "metadata": json.dumps(metadata),
                               "handle": handle, "created_at": now, "updated_at": now})


def get_resumable(conn: Connection, digest: str) -> Resumable | None:
    row = c.first(conn, _GET, {"digest": digest})
    return None if row is None else _record(row)


def take_lease(conn: Connection, digest: str, owner: str, now: datetime, until: datetime) -> bool:
    """Take (or extend) the row's lease for ``owner``: False while another owner holds it."""
    return c.write(conn, _TAKE, {"digest": digest, "owner": owner, "now": now, "until": until}) == 1


def move_offset(conn: Connection, digest: str, owner: str, old: int, new: int, now: datetime,
                until: datetime) -> bool:
    """Record that ``new`` bytes are stored, extending the lease; False when the lease was lost
    or the offset is no longer ``old`` (another writer took over)."""
    return c.write(conn, _MOVE, {"digest": digest, "owner": owner, "old": old, "new": new,
                                 "now": now, "until": until}) == 1


def release_lease(conn: Connection, digest: str, owner: str) -> None:
    c.write(conn, _RELEASE, {"digest": digest, "owner": owner})


def delete_resumable(conn: Connection, digest: str) -> bool:
    return c.write(conn, _DELETE, {"digest": digest}) == 1


def forget_resumables(conn: Connection) -> int:
    """Delete every resumable upload's row (in a backup's copy, which has none of their bytes)."""
    return c.write(conn, t.delete())


def abandoned_resumables(conn: Connection, before: datetime, now: datetime,
                         most: int = 500) -> list[Resumable]:
    """Uploads untouched since ``before`` whose lease (if any) has ended, oldest first."""
    return [_record(row) for row in c.rows(conn, _ABANDONED, {"before": before, "now": now,
                                                              "most": most})]


def user_resumables(conn: Connection, user_id: int) -> list[Resumable]:
    """A user's uploads in progress."""
    return [_record(row) for row in c.rows(conn, _OF_USER, {"user_id": user_id})]
