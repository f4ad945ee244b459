"""Sign-in state: sessions and one-time links (both kept by the SHA-256 of their token, never the
token), and the install's secrets (made once, read by every process)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, func, select
from sqlalchemy.engine import Connection

from ..records import User
from . import connection as c
from .tables import links, secrets, sessions, users
from .users import USER_COLUMNS as _USER_COLUMNS, user_from_row as user_record

# -- the install's secrets -----------------------------------------------------------------------

_SECRET = select(secrets.c.value).where(secrets.c.name == bindparam("name"))


def secret(conn: Connection, name: str, make: str) -> str:
    """The secret called ``name``: the one stored, else ``make``, stored now.

    Processes starting at once on one database agree: the first insert wins and everyone reads it.
    """
    found = c.value(conn, _SECRET, {"name": name})
    if found is not None:
        return found
    with c.transaction(conn):
        c.write(conn, c.dialect(conn).upsert(secrets).values(name=name, value=make)
                .on_conflict_do_nothing(index_elements=[secrets.c.name]))
        return c.value(conn, _SECRET, {"name": name})


# -- sessions ------------------------------------------------------------------------------------

_SESSION_USER = (select(*_USER_COLUMNS, sessions.c.seen_at)
                 .join_from(sessions, users, users.c.id == sessions.c.user_id)
                 .where(sessions.c.hash == bindparam("hash"), sessions.c.expires_at > bindparam("now"),
                        users.c.disabled_at.is_(None)))
_SEEN = (sessions.update().where(sessions.c.hash == bindparam("token_hash"))
         .values(seen_at=bindparam("now")))
_END = sessions.delete().where(sessions.c.hash == bindparam("hash"))
_END_ALL = sessions.delete().where(sessions.c.user_id == bindparam("user_id"))
_END_OTHERS = sessions.delete().where(sessions.c.user_id == bindparam("user_id"),
                                      sessions.c.hash != bindparam("hash"))
_EXPIRED_SESSIONS = sessions.delete().where(sessions.c.expires_at <= bindparam("now"))
_COUNT_SESSIONS = (select(func.count()).select_from(sessions)
                   .where(sessions.c.user_id == bindparam("user_id"),
                          sessions.c.expires_at > bindparam("now")))


def add_session(conn: Connection, token_hash: str, user_id: int, now: datetime,
                expires_at: datetime) -> None:
    c.write(conn, sessions.insert(), {"hash": token_hash, "user_id": user_id, "created_at": now,
                                      "seen_at": now, "expires_at": expires_at})


def session_user(conn: Connection, token_hash: str, now: datetime) -> tuple[User, datetime] | None:
    """The user of a live session (not expired, its user not disabled) and when it was last seen."""
    row = c.first(conn, _SESSION_USER, {"hash": token_hash, "now": now})
    return None if row is None else (user_record(row), row[6])


def touch_session(conn: Connection, token_hash: str, now: datetime) -> None:
    c.write(conn, _SEEN, {"token_hash": token_hash, "now": now})


def end_session(conn: Connection, token_hash: str) -> None:
    c.write(conn, _END, {"hash": token_hash})


def end_sessions(conn: Connection, user_id: int, keep: str | None = None) -> int:
    """End every session of a user, but the one whose hash is ``keep``; how many ended."""
    if keep is None:
        return c.write(conn, _END_ALL, {"user_id": user_id})
    return c.write(conn, _END_OTHERS, {"user_id": user_id, "hash": keep})


def count_sessions(conn: Connection, user_id: int, now: datetime) -> int:
    return int(c.value(conn, _COUNT_SESSIONS, {"user_id": user_id, "now": now}))


def prune_sessions(conn: Connection, now: datetime) -> int:
    """Delete expired sessions and links; how many rows went."""
    return (c.write(conn, _EXPIRED_SESSIONS, {"now": now})
            + c.write(conn, links.delete().where(links.c.expires_at <= bindparam("now")), {"now": now}))


# -- one-time links ------------------------------------------------------------------------------

_LINK_USER = (select(*_USER_COLUMNS)
              .join_from(links, users, users.c.id == links.c.user_id)
              .where(links.c.hash == bindparam("hash"), links.c.expires_at > bindparam("now")))
_USE_LINK = links.delete().where(links.c.hash == bindparam("hash"), links.c.expires_at > bindparam("now"))


def add_link(conn: Connection, token_hash: str, user_id: int, now: datetime, expires_at: datetime) -> None:
    c.write(conn, links.insert(), {"hash": token_hash, "user_id": user_id, "created_at": now,
                                   "expires_at": expires_at})


def link_user(conn: Connection, token_hash: str, now: datetime) -> User | None:
    """The user a live link is for (a read: opening a link does not use it)."""
    if not c.findable(token_hash):
        return None
    row = c.first(conn, _LINK_USER, {"hash": token_hash, "now": now})
    return None if row is None else user_record(row)


def use_link(conn: Connection, token_hash: str, now: datetime) -> bool:
    """Use up a live link (inside the caller's transaction): False when it is gone or expired."""
    return c.write(conn, _USE_LINK, {"hash": token_hash, "now": now}) == 1
