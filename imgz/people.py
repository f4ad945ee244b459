"""What is done to a user's account: one-time links that set a password, passwords, disabling.

Used by the pages and by ``python app.py user``; plain values in, the database through ``db``.
"""
from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from . import db, ids, passwords

LINK_LIFETIME = timedelta(hours=1)
LINK_PATH = "/password/"


def new_link(conn: db.Connection, user_id: int, now: datetime) -> str:
    """A one-time link's token for setting this user's password, valid for an hour."""
    token = secrets.token_urlsafe(32)
    db.add_link(conn, ids.digest(token), user_id, now, now + LINK_LIFETIME)
    return token


def link_url(base: str, token: str) -> str:
    return f"{base.rstrip('/')}{LINK_PATH}{token}"


def set_password_by_link(conn: db.Connection, token: str, password: str, now: datetime) -> int | None:
    """Use up the link and set the password; the user's id, or None when the link is gone.

    Every session the user had ends: whoever knew the old password is signed out.
    """
    hashed = passwords.hash_password(password)  # before the transaction: it takes a while
    user = db.link_user(conn, ids.digest(token), now)
    if user is None:
        return None
    with db.transaction(conn):
        if not db.use_link(conn, ids.digest(token), now):
            return None  # used a moment ago by another request
        db.set_password(conn, user.id, hashed)
        db.end_sessions(conn, user.id)
    return user.id


def disable(conn: db.Connection, user_id: int, now: datetime) -> bool:
    """Disable a user: sessions end and keys are refused from now on; False if already disabled."""
    with db.transaction(conn):
        user = db.get_user(conn, user_id)
        if user is None or user.is_disabled:
            return False
        db.set_disabled(conn, user_id, now)
        db.end_sessions(conn, user_id)
    return True


def enable(conn: db.Connection, user_id: int) -> bool:
    user = db.get_user(conn, user_id)
    if user is None or not user.is_disabled:
        return False
    return db.set_disabled(conn, user_id, None)
