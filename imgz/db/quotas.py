"""Quotas: each user's limits (on ``users``) and what their uploads take (``user_usage``).

An upload's stored bytes are its original's and every variant's (thumb, medium, video frame),
as its row records them. The usage row moves in the transaction that inserts or deletes the
upload, so it never drifts from the rows. The insert's reservation is one conditional UPDATE
(``... WHERE bytes + n <= max``): of two uploads at once that would each fit alone but not
together, the second waits for the first's row lock (PostgreSQL, which then re-reads the row) or
for the write lock (SQLite), and finds no room.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable

from sqlalchemy import BigInteger, bindparam, cast, func, select
from sqlalchemy.engine import Connection

from ..records import Quota
from .connection import first, write
from .prepared import Prepared
from .tables import uploads, user_usage, users

# what an upload takes in the store, in bytes
STORED = uploads.c.size + uploads.c.thumb_size + uploads.c.medium_size + uploads.c.frame_size

_ME = user_usage.c.user_id == bindparam("owner")
_LIMIT_BYTES = select(users.c.max_bytes).where(users.c.id == bindparam("owner")).scalar_subquery()
_LIMIT_FILES = select(users.c.max_files).where(users.c.id == bindparam("owner")).scalar_subquery()
_RESERVE = Prepared(
    user_usage.update()
    .where(_ME,
           user_usage.c.bytes + bindparam("size") <= func.coalesce(_LIMIT_BYTES,
                                                                   user_usage.c.bytes + bindparam("size")),
           user_usage.c.files + bindparam("one") <= func.coalesce(_LIMIT_FILES,
                                                                  user_usage.c.files + bindparam("one")))
    .values(bytes=user_usage.c.bytes + bindparam("size"), files=user_usage.c.files + bindparam("one")))
_MOVE = (user_usage.update().where(_ME)
         .values(bytes=user_usage.c.bytes + bindparam("more_bytes"),
                 files=user_usage.c.files + bindparam("more_files")))
_HAS_ROW = select(user_usage.c.user_id).where(_ME)
_COUNTED = (select(users.c.id, cast(func.coalesce(func.sum(STORED), 0), BigInteger),
                   cast(func.count(uploads.c.id), BigInteger))
            .select_from(users.outerjoin(uploads, uploads.c.user_id == users.c.id))
            .group_by(users.c.id))
_RECOUNT = user_usage.insert().from_select(["user_id", "bytes", "files"], _COUNTED)
_RECOUNT_ONE = user_usage.insert().from_select(["user_id", "bytes", "files"],
                                               _COUNTED.where(users.c.id == bindparam("owner")))
_QUOTA = (select(users.c.max_bytes, users.c.max_files, func.coalesce(user_usage.c.bytes, 0),
                 func.coalesce(user_usage.c.files, 0))
          .select_from(users.outerjoin(user_usage, user_usage.c.user_id == users.c.id))
          .where(users.c.id == bindparam("owner")))
_SET_QUOTA = (users.update().where(users.c.id == bindparam("owner"))
              .values(max_bytes=bindparam("max_bytes"), max_files=bindparam("max_files")))


def add_usage(conn: Connection, user_id: int) -> None:
    """The usage row of a new user (nothing stored yet)."""
    write(conn, user_usage.insert(), {"user_id": user_id, "bytes": 0, "files": 0})


def recount_usage(conn: Connection) -> None:
    """Every user's usage counted again from the uploads. Run it inside ``transaction``."""
    write(conn, user_usage.delete())
    write(conn, _RECOUNT)


def reserve(conn: Connection, user_id: int, size: int) -> bool:
    """Count one more upload of ``size`` stored bytes for the user, if it keeps them within their
    quota; False (nothing counted) if it would not. Run it inside the insert's ``transaction``."""
    params = {"owner": user_id, "size": size, "one": 1}  # (a Prepared statement has no literals)
    if _RESERVE.run(conn, params) == 1:
        return True
    if first(conn, _HAS_ROW, {"owner": user_id}) is not None:
        return False
    # no usage row (a user made by hand in the database): count theirs, then try again
    write(conn, _RECOUNT_ONE, {"owner": user_id})
    return _RESERVE.run(conn, params) == 1


def release(conn: Connection, taken: Iterable[tuple[int | None, int]]) -> None:
    """Uncount uploads gone: (user id, stored bytes) of each; guests' (None) are not counted."""
    by_user: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for user_id, size in taken:
        if user_id is not None:
            by_user[user_id][0] += size
            by_user[user_id][1] += 1
    if by_user:
        write(conn, _MOVE, [{"owner": user_id, "more_bytes": -size, "more_files": -count}
                            for user_id, (size, count) in by_user.items()])


def grow(conn: Connection, user_id: int | None, more_bytes: int) -> None:
    """Count a change in an upload's stored bytes (a variant made again), quota or not."""
    if user_id is not None and more_bytes:
        write(conn, _MOVE, {"owner": user_id, "more_bytes": more_bytes, "more_files": 0})


def get_quota(conn: Connection, user_id: int) -> Quota | None:
    """The user's limits and usage; None when there is no such user."""
    row = first(conn, _QUOTA, {"owner": user_id})
    return None if row is None else Quota(row[0], row[1], int(row[2]), int(row[3]))


def set_quota(conn: Connection, user_id: int, max_bytes: int | None, max_files: int | None) -> bool:
    """Set the user's limits (None: no limit); False when there is no such user."""
    return write(conn, _SET_QUOTA, {"owner": user_id, "max_bytes": max_bytes,
                                    "max_files": max_files}) == 1
