"""Which user a request acts for: one rule, for every route that acts.

1. An API key (the ``X-API-Key`` header, else the ``key`` parameter) authenticates alone: no
   CSRF token is asked for, and a session cookie sent beside it is ignored.
2. Otherwise a signed-in session counts, but only on a POST that carries the session's CSRF
   token (Flask-WTF), never on a GET: another site can make a browser send its cookie, not the
   token. Resumable uploads (tus.py) take the token in the X-CSRFToken header on each of their
   methods (HEAD, PATCH, DELETE too): a page of another site cannot send that header at all
   without this server's leave (a CORS preflight), which it never gives.
3. Anything else is keyless: a guest where guest uploads are on, else refused (401).

Showing a page to its signed-in user (a GET) reads the session too (``signin.signed_in_user``):
that acts for nobody and changes nothing.
"""
from __future__ import annotations

from datetime import datetime

from flask import Request, request

from . import db, ids
from .errors import Busy, DatabaseError, NoStorage, Unauthorized
from .records import Actor, Key

LAST_USED_STEP = 60


def header_key(request: Request) -> str | None:
    """The key from the ``X-API-Key`` header, which wins over any ``key`` parameter."""
    return request.headers.get("X-API-Key", "").strip() or None


def presented_key(request: Request) -> str | None:
    """The header key, else the ``key`` parameter: a body value wins over the query string's.

    Reading the body's value parses the form, so call it after the upload's stream factory is set.
    """
    key = header_key(request)
    if key:
        return key
    # an empty body value counts as not given, so the query string's key still counts
    return (request.form.get("key", "").strip() or request.args.get("key", "").strip()) or None


def live_key(conn: db.Connection, key: str) -> Key | None:
    """The key when it is known and not revoked, looked up by its SHA-256.

    Never cached, so a revoked key fails at once. A read only: the server's gate calls it too.
    """
    return db.find_key(conn, ids.digest(key))


def actor_for_key(conn: db.Connection, key: str | None, now: datetime) -> Actor:
    """The actor for a presented key; a missing or unknown one is refused (401)."""
    if not key:
        raise Unauthorized("No key provided")
    found = live_key(conn, key)
    if found is None:
        raise Unauthorized()
    # One write a minute is enough to tell when a key was last used; one per upload is not.
    last = found.last_used_at
    try:
        if last is None or (now - last).total_seconds() >= LAST_USED_STEP:
            db.touch_key(conn, found.id, now)
    except (Busy, NoStorage, DatabaseError):
        pass  # a full disk or a long lock must not refuse a valid key; the upload will say why
    return Actor(user_id=found.user_id, is_admin=found.is_admin, key_id=found.id)


def session_actor(header_only: bool = False) -> Actor | None:
    """The signed-in user, on a POST that carries a valid CSRF token; else None (rule 2).

    ``header_only``: only the X-CSRFToken header counts, and the body is left unread.
    """
    from .signin import csrf_valid, signed_in_user

    if request.method != "POST":
        return None
    me = signed_in_user()
    if me is None or not csrf_valid(header_only):
        return None
    return Actor(user_id=me.id, is_admin=me.is_admin, session=True)


def header_actor(conn: db.Connection, now: datetime) -> Actor:
    """Who a resumable-upload call acts for: a key (header or ``key`` parameter of the query),
    else the signed-in user when the X-CSRFToken header holds the session's token, whatever the
    method; else 401, guests included: resumable uploads are for users only."""
    from .signin import csrf_valid, signed_in_user

    key = header_key(request) or request.args.get("key", "").strip() or None
    if key:
        return actor_for_key(conn, key, now)
    me = signed_in_user() if request.headers.get("X-CSRFToken") else None
    if me is None or not csrf_valid(header_only=True):
        raise Unauthorized("No key provided")
    return Actor(user_id=me.id, is_admin=me.is_admin, session=True)


def request_actor(conn: db.Connection, key: str | None, now: datetime) -> Actor | None:
    """Who the request acts for: the key's user, else a session with its CSRF token (see the
    module's rule), else None (keyless). A key that is wrong is refused, whatever the cookie."""
    if key:
        return actor_for_key(conn, key, now)
    return session_actor()
