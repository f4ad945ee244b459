"""The management commands of ``python app.py``, by noun, registered on the group in cli.py:
``accounts`` (users, keys, albums, categories, ShareX's uploader) and ``uploads`` (the stored
uploads: list, delete, check, expire).

A command that creates something prints what a script needs, alone, on stdout; every other
message goes to stderr (``say``).
"""
from __future__ import annotations

from datetime import datetime, timezone

import click

from .. import db


def now() -> datetime:
    return datetime.now(timezone.utc)


def say(message: str) -> None:
    click.echo(message, err=True)


def user_id(conn: db.Connection, name: str | None) -> int:
    """The id of the user with this name (admin when None); a command error when there is none."""
    found = db.get_user_by_name(conn, name or "admin")
    if found is None:
        raise click.ClickException(f"no user named {name!r}")
    return found.id
