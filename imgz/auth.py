"""Which user a request acts for: the API key from the header or the ``key`` parameter."""
from __future__ import annotations

import sqlite3
from datetime import datetime

from flask import Request

from . import db, ids
from .errors import Unauthorized
from .service import Actor


def presented_key(request: Request, form_ready: bool) -> str | None:
    """The key from ``X-API-Key``, else the ``key`` parameter (a body value wins over the query)."""
    header = request.headers.get("X-API-Key", "").strip()
    if header:
        return header
    if form_ready and request.form.get("key"):
        return request.form["key"].strip()
    value = request.args.get("key", "").strip()
    return value or None


def actor_for_key(conn: sqlite3.Connection, key: str | None, now: datetime) -> Actor:
    """Look the key up by its SHA-256 (never cached, so a revoked key fails at once)."""
    if not key:
        raise Unauthorized("No key provided")
    row = db.find_key(conn, ids.digest(key))
    if row is None:
        raise Unauthorized()
    db.touch_key(conn, row["key_id"], now)
    return Actor(user_id=row["user_id"], is_admin=bool(row["is_admin"]), key_id=row["key_id"])
