"""Users and their API keys (kept by the SHA-256 of the key, never the key)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, func, select
from sqlalchemy.engine import Connection, Row

from ..records import Key, Quota, User, UserSummary
from .connection import findable, first, insert, rows, transaction, value, write
from .prepared import Prepared
from .quotas import add_usage
from .tables import api_keys, uploads, user_usage, users

# -- users ---------------------------------------------------------------------------------------

USER_COLUMNS = (users.c.id, users.c.name, users.c.is_admin, users.c.created_at,
                users.c.password_hash.is_not(None), users.c.disabled_at)
_USER = select(*USER_COLUMNS)
_USER_BY_NAME = _USER.where(users.c.name == bindparam("name"))
_USER_BY_ID = _USER.where(users.c.id == bindparam("user_id"))
_PASSWORD_HASH = select(users.c.id, users.c.password_hash).where(users.c.name == bindparam("name"),
                                                                 users.c.disabled_at.is_(None))
_SET_PASSWORD = (users.update().where(users.c.id == bindparam("user_id"))
                 .values(password_hash=bindparam("password_hash")))
_SET_DISABLED = (users.update().where(users.c.id == bindparam("user_id"))
                 .values(disabled_at=bindparam("disabled_at")))
_SET_ADMIN = (users.update().where(users.c.id == bindparam("user_id"))
              .values(is_admin=bindparam("is_admin")))
_KEYS_OF = (select(func.count()).select_from(api_keys)
            .where(api_keys.c.user_id == users.c.id, api_keys.c.revoked_at.is_(None))
            .scalar_subquery())
# uploads and their bytes as the usage rows count them: no pass over the uploads
_USERS = (_USER.add_columns(_KEYS_OF, users.c.max_bytes, users.c.max_files,
                            func.coalesce(user_usage.c.bytes, 0), func.coalesce(user_usage.c.files, 0))
          .select_from(users.outerjoin(user_usage, user_usage.c.user_id == users.c.id))
          .order_by(users.c.id))
_HOLD_USAGE = select(user_usage.c.user_id).where(user_usage.c.user_id == bindparam("user_id")).with_for_update()
_HAS_UPLOADS = select(uploads.c.id).where(uploads.c.user_id == bindparam("user_id")).limit(1)
_REMOVE = users.delete().where(users.c.id == bindparam("user_id"))


def user_from_row(row: Row) -> User:
    """A User from a row that starts with USER_COLUMNS."""
    return User(id=row[0], name=row[1], is_admin=bool(row[2]), created_at=row[3],
                has_password=bool(row[4]), disabled_at=row[5])


def add_user(conn: Connection, name: str, is_admin: bool, now: datetime) -> int:
    with transaction(conn):
        user_id = insert(conn, users.insert(), {"name": name, "is_admin": is_admin, "created_at": now})
        add_usage(conn, user_id)
    return user_id


def get_user_by_name(conn: Connection, name: str) -> User | None:
    if not findable(name):
        return None
    row = first(conn, _USER_BY_NAME, {"name": name})
    return None if row is None else user_from_row(row)


def get_user(conn: Connection, user_id: int) -> User | None:
    row = first(conn, _USER_BY_ID, {"user_id": user_id})
    return None if row is None else user_from_row(row)


def list_users(conn: Connection) -> list[UserSummary]:
    """Every user, oldest first, with how many live keys it has, its quota and usage."""
    return [UserSummary(user_from_row(row), uploads=int(row[10]), keys=row[6],
                        quota=Quota(row[7], row[8], int(row[9]), int(row[10])))
            for row in rows(conn, _USERS)]


def remove_user(conn: Connection, user_id: int, keep_uploads: bool) -> bool:
    """Delete the user: keys, sessions, links, albums and resumable uploads go with the row;
    uploads left stay as guests' (no owner). Without ``keep_uploads`` the user must have no
    upload left: False (nothing done) when one is there, or arrived meanwhile.

    The user's usage row is locked first: an upload of theirs being inserted holds it until it
    commits, and one inserted after waits for this transaction, then fails (its user is gone).
    """
    with transaction(conn):
        first(conn, _HOLD_USAGE, {"user_id": user_id})
        if not keep_uploads and first(conn, _HAS_UPLOADS, {"user_id": user_id}) is not None:
            return False
        return write(conn, _REMOVE, {"user_id": user_id}) == 1


def password_hash(conn: Connection, name: str) -> tuple[int, str | None] | None:
    """(id, argon2 hash or None) of the enabled user with this name; None when there is none."""
    if not findable(name):
        return None
    row = first(conn, _PASSWORD_HASH, {"name": name})
    return None if row is None else (row[0], row[1])


def set_password(conn: Connection, user_id: int, hashed: str | None) -> None:
    write(conn, _SET_PASSWORD, {"user_id": user_id, "password_hash": hashed})


def set_disabled(conn: Connection, user_id: int, disabled_at: datetime | None) -> bool:
    return write(conn, _SET_DISABLED, {"user_id": user_id, "disabled_at": disabled_at}) == 1


def set_admin(conn: Connection, user_id: int, is_admin: bool) -> bool:
    return write(conn, _SET_ADMIN, {"user_id": user_id, "is_admin": is_admin}) == 1


# -- API keys ------------------------------------------------------------------------------------

_KEY = (select(api_keys.c.id, api_keys.c.user_id, users.c.name.label("user_name"), users.c.is_admin,
               api_keys.c.label, api_keys.c.created_at, api_keys.c.last_used_at,
               api_keys.c.revoked_at)
        .join_from(api_keys, users, users.c.id == api_keys.c.user_id))
# a disabled user's keys are refused as if revoked
_LIVE_KEY = Prepared(_KEY.where(api_keys.c.hash == bindparam("hash"), api_keys.c.revoked_at.is_(None),
                                users.c.disabled_at.is_(None)))
_ALL_KEYS = _KEY.order_by(api_keys.c.id)
_KEYS_OF_USER = _KEY.where(api_keys.c.user_id == bindparam("user_id")).order_by(api_keys.c.id)
_TOUCH = (api_keys.update().where(api_keys.c.id == bindparam("key_id"))
          .values(last_used_at=bindparam("now")))
_REVOKE = (api_keys.update()
           .where(api_keys.c.id == bindparam("key_id"), api_keys.c.revoked_at.is_(None))
           .values(revoked_at=bindparam("now")))
_REVOKE_OWN = _REVOKE.where(api_keys.c.user_id == bindparam("owner"))
_COUNT_KEYS = select(func.count()).select_from(api_keys)


def _key(row: Row | tuple) -> Key:
    return Key(*row)


def add_key(conn: Connection, user_id: int, key_hash: str, label: str, now: datetime) -> int:
    return insert(conn, api_keys.insert(),
                  {"user_id": user_id, "hash": key_hash, "label": label, "created_at": now})


def find_key(conn: Connection, key_hash: str) -> Key | None:
    """The live key with this hash, or None (unknown or revoked): one lookup by a unique index."""
    row = _LIVE_KEY.first(conn, {"hash": key_hash})
    return None if row is None else _key(row)


def touch_key(conn: Connection, key_id: int, now: datetime) -> None:
    write(conn, _TOUCH, {"key_id": key_id, "now": now})


def list_keys(conn: Connection, user_id: int | None = None) -> list[Key]:
    if user_id is None:
        return [_key(row) for row in rows(conn, _ALL_KEYS)]
    return [_key(row) for row in rows(conn, _KEYS_OF_USER, {"user_id": user_id})]


def revoke_key(conn: Connection, key_id: int, now: datetime, user_id: int | None = None) -> bool:
    """Revoke a live key (only one of ``user_id``'s when given); False when there is no such key."""
    if user_id is None:
        return write(conn, _REVOKE, {"key_id": key_id, "now": now}) == 1
    return write(conn, _REVOKE_OWN, {"key_id": key_id, "now": now, "owner": user_id}) == 1


def count_keys(conn: Connection) -> int:
    return int(value(conn, _COUNT_KEYS))
