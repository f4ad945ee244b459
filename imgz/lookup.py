"""Look-ups by what a client or an admin names: an upload by id or URL, a live upload, a delete
secret, an album or a category given as an upload parameter.

Each takes the Service for its connection and its clock, so it reads the same database and time
as the upload path, from a request, a command or a test.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from . import db, ids, layout
from .errors import InvalidParameter
from .records import Actor, Upload

if TYPE_CHECKING:
    from .service import Service


def album_for(service: Service, actor: Actor, public_id: str) -> int:
    """The album's row id when it belongs to the actor's user, else 400 Album not found."""
    album = db.get_album(service.connection(), public_id.strip())
    if album is None or actor.user_id is None or album.user_id != actor.user_id:
        raise InvalidParameter("Album not found")
    return album.id


def category_for(service: Service, value: str) -> int:
    """The category id a client gave, when it is one, else 400 Invalid category."""
    text = value.strip()
    if not re.fullmatch(r"[0-9]{1,9}", text) or db.get_category(service.connection(), int(text)) is None:
        raise InvalidParameter("Invalid category")
    return int(text)


def find_upload(service: Service, ident: str) -> Upload | None:
    """An upload by public id, viewer or short URL, file URL (the app's, or under
    IMGZ_PUBLIC_URL), or path under images/."""
    conn = service.connection()
    text = ident.strip()
    public = service.config.public_url
    if public and text.startswith(public + "/"):  # <public_url>/<s3_prefix><key>
        key = unquote(text[len(public) + 1:].partition("?")[0])
        key = key[len(service.config.s3_prefix):] if key.startswith(service.config.s3_prefix) else key
        upload_id = db.upload_id_for_path(conn, key)
        return None if upload_id is None else db.get_upload_by_id(conn, upload_id)
    path = urlsplit(text).path if "://" in text else text
    path = unquote(path).strip("/")
    prefix = layout.URL_PREFIX.lstrip("/")
    if path.startswith(prefix):
        upload_id = db.upload_id_for_path(conn, path[len(prefix):])
        return None if upload_id is None else db.get_upload_by_id(conn, upload_id)
    parts = path.split("/")
    if len(parts) >= 4 and parts[-2] == "delete":
        parts = parts[:-2]
    last = parts[-1].rpartition(".")[2]
    return db.get_upload(conn, last)


def get_live(service: Service, public_id: str) -> Upload | None:
    """The upload with this id unless it is unknown or expired."""
    upload = db.get_upload(service.connection(), public_id)
    if upload is None or (upload.expires_at is not None and upload.expires_at <= service.now()):
        return None
    return upload


def secret_valid(service: Service, public_id: str, secret: str) -> bool:
    """Whether secret is the delete secret of this upload (compared as digests, in constant time)."""
    stored = db.get_delete_hash(service.connection(), public_id)
    return stored is not None and ids.secret_matches(secret, stored)
