"""Removing a user: their keys, sessions, links, albums and uploads in progress go; their uploads
either go too, each through ``Service.delete`` (row, then every file), or stay as guests'
uploads, with no owner, still served and still deleted by their delete links.

The user is disabled first, so no new upload of theirs starts while their uploads are deleted;
one that was already under way and lands meanwhile is found by the removal, which then runs
again (``db.remove_user`` removes a user only once none is left, when asked to delete them).
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import islice

from . import db, people
from .records import User
from .service import Service

CHUNK = 500
ROUNDS = 10  # uploads landing while the user is removed: give up after this many rounds


class LastAdmin(Exception):
    """The user is the install's first user, or the last enabled admin: refused."""


@dataclass(frozen=True)
class Removed:
    deleted: int  # uploads deleted with every file
    kept: int  # uploads left without an owner


def refusal(conn: db.Connection, user: User) -> str | None:
    """Why this user may not be removed, or None."""
    if user.name == "admin":
        return "admin is the install's first user (every start makes it again): disable it instead"
    others = [s.user for s in db.list_users(conn)
              if s.user.is_admin and not s.user.is_disabled and s.user.id != user.id]
    if user.is_admin and not user.is_disabled and not others:
        return f"{user.name} is the last enabled admin"
    return None


def remove(service: Service, user: User, *, delete_uploads: bool) -> Removed:
    """Remove the user (see the module); how many uploads were deleted or kept."""
    conn = service.connection()
    reason = refusal(conn, user)
    if reason is not None:
        raise LastAdmin(reason)
    people.disable(conn, user.id, service.now())
    in_progress = db.user_resumables(conn, user.id)
    deleted = 0
    for _ in range(ROUNDS):
        if delete_uploads:
            deleted += _delete_all(service, user.id)
        quota = db.get_quota(conn, user.id)
        kept = 0 if quota is None else quota.used_files
        if db.remove_user(conn, user.id, keep_uploads=not delete_uploads) or db.get_user(conn, user.id) is None:
            break  # (or removed meanwhile by another command)
    else:
        raise RuntimeError(f"uploads of {user.name} kept arriving while they were removed")
    for row in in_progress:  # their rows went with the user
        service.store.drop_partial(row.digest, row.handle)
    return Removed(deleted=deleted, kept=0 if delete_uploads else kept)


def _delete_all(service: Service, user_id: int) -> int:
    """Delete every upload of the user, a chunk at a time; how many this call deleted."""
    conn = service.connection()
    deleted = 0
    while chunk := list(islice(db.iter_uploads(conn, user_id), CHUNK)):
        deleted += sum(1 for upload in chunk if service.delete(upload))
    return deleted
