"""The tables, declared once: a new database is created from them and every query names them.

The uploads table is built from the fields of ``records.Upload``: the record, the schema, the
insert and the reads cannot drift apart. Dates are stored as whole UTC Unix seconds. Sizes,
dates and counters are 64-bit (BIGINT) on every database; ids are INTEGER.

``shared`` holds the tables of passing state that processes sharing one database keep there
(rate limits): they are not part of the versioned schema, and are made where they are used.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (BigInteger, Boolean, Column, Double, ForeignKey, Index, Integer, MetaData, Table,
                        Text, false, text)
from sqlalchemy.types import TypeDecorator

from ..records import Upload
from . import postgresql, sqlite

metadata = MetaData()


class UnixTime(TypeDecorator):
    """An aware datetime stored as whole UTC Unix seconds (64 bits: dates past 2038)."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> int | None:
        return None if value is None else int(value.timestamp())

    def process_result_value(self, value: int | None, dialect: Any) -> datetime | None:
        return None if value is None else datetime.fromtimestamp(value, timezone.utc)


users = Table(
    "users", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", Text, nullable=False, unique=True),
    Column("is_admin", Boolean, nullable=False, server_default=false()),
    Column("created_at", UnixTime, nullable=False),
    Column("password_hash", Text),  # argon2; none until a one-time link sets it
    Column("disabled_at", UnixTime),  # a disabled user has no session and no working key
    # the quota: stored bytes (every variant counted) and uploads; none when null
    Column("max_bytes", BigInteger),
    Column("max_files", BigInteger),
)

api_keys = Table(
    "api_keys", metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("hash", Text, nullable=False, unique=True),
    Column("label", Text, nullable=False, server_default=text("''")),
    Column("created_at", UnixTime, nullable=False),
    Column("last_used_at", UnixTime),
    Column("revoked_at", UnixTime),
)

albums = Table(
    "albums", metadata,
    Column("id", Integer, primary_key=True),
    Column("public_id", Text, nullable=False, unique=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("name", Text, nullable=False),
    Column("created_at", UnixTime, nullable=False),
    Column("is_public", Boolean, nullable=False, server_default=false()),
    Column("page_key", Text),  # the album page's unguessable address (unique, see the index)
)
Index("albums_page_key", albums.c.page_key, unique=True)
Index("albums_user", albums.c.user_id, albums.c.id)

categories = Table(
    "categories", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", Text, nullable=False, unique=True),
)

# -- uploads: the columns of records.Upload ------------------------------------------------------

UPLOAD_RELATIONS = ("tags",)  # fields of the record kept in other tables
_TYPES: dict[type, Any] = {int: Integer, str: Text, bool: Boolean, datetime: UnixTime}
# file sizes may pass 2 GiB, and counters 2**31
_BIG = ("size", "thumb_size", "medium_size", "frame_size", "views", "likes")
_UPLOAD_KEYS: dict[str, tuple[tuple, dict[str, Any]]] = {
    "id": ((), {"primary_key": True}),
    "public_id": ((), {"unique": True}),
    "user_id": ((ForeignKey("users.id", ondelete="SET NULL"),), {}),
    "album_id": ((ForeignKey("albums.id", ondelete="SET NULL"),), {}),
    "category_id": ((ForeignKey("categories.id", ondelete="SET NULL"),), {}),
}


def _column(field: dataclasses.Field, hint: Any) -> Column:
    kinds = [k for k in typing.get_args(hint) if k is not type(None)] or [hint]
    nullable = isinstance(hint, types.UnionType) and type(None) in typing.get_args(hint)
    kind = kinds[0]
    args, keys = _UPLOAD_KEYS.get(field.name, ((), {}))
    if field.default is not dataclasses.MISSING and field.default is not None:
        keys = {**keys, "server_default": false() if kind is bool else text(repr(field.default))}
    kind_type = BigInteger if field.name in _BIG else _TYPES[kind]
    return Column(field.name, kind_type, *args, nullable=nullable, **keys)


def _upload_columns() -> list[Column]:
    hints = typing.get_type_hints(Upload)
    return [_column(f, hints[f.name]) for f in dataclasses.fields(Upload)
            if f.name not in UPLOAD_RELATIONS]


uploads = Table(
    "uploads", metadata,
    *_upload_columns(),
    Column("delete_hash", Text, nullable=False),  # SHA-256 of the delete secret; never in a record
    # title, description and original name, lower-cased (params.search_text): what "My uploads"
    # matches a search against, kept beside the id in uploads_user_text
    Column("search_text", Text, nullable=False, server_default=text("''")),
)
_EXPIRING = uploads.c.expires_at.is_not(None)
Index("uploads_expires_at", uploads.c.expires_at, **sqlite.partial(_EXPIRING), **postgresql.partial(_EXPIRING))
# "My uploads", newest first, paged by id: one range of this index per page
Index("uploads_user_id", uploads.c.user_id, uploads.c.id)
Index("uploads_album_id", uploads.c.album_id, uploads.c.id)
# ... of one kind (images, videos); and searched: read from the index alone, rows never touched
Index("uploads_user_kind", uploads.c.user_id, uploads.c.kind, uploads.c.id)
Index("uploads_user_text", uploads.c.user_id, uploads.c.id, uploads.c.search_text)

# The record's columns, in its order: what every read of an upload selects.
UPLOAD_COLUMNS = tuple(uploads.c[f.name] for f in dataclasses.fields(Upload)
                       if f.name not in UPLOAD_RELATIONS)
# What an insert gives: every column of the record but the id the database hands out.
# (The delete secret's hash and the search text are added by the insert.)
UPLOAD_INSERT = tuple(c.name for c in UPLOAD_COLUMNS if c.name != "id")

# -- stored files and names ----------------------------------------------------------------------

# every file of every upload, for file GETs (one lookup by its path under images/)
files = Table(
    "files", metadata,
    Column("path", Text, primary_key=True),
    Column("upload_id", Integer, ForeignKey("uploads.id", ondelete="CASCADE"), nullable=False),
    Column("mime", Text, nullable=False),
    **sqlite.WITHOUT_ROWID,
)
Index("files_upload", files.c.upload_id)

# stored names ('YYYY/MM/DD/name'), kept after deletion so a name is never handed out twice
names = Table(
    "names", metadata,
    Column("stem", Text, primary_key=True),
    **sqlite.WITHOUT_ROWID,
)

# -- tags ----------------------------------------------------------------------------------------

tags = Table(
    "tags", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", Text, nullable=False),
    Column("url_key", Text, nullable=False, unique=True),
)

upload_tags = Table(
    "upload_tags", metadata,
    Column("upload_id", Integer, ForeignKey("uploads.id", ondelete="CASCADE"), primary_key=True),
    Column("tag_id", Integer, ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True),
    Column("position", Integer, nullable=False),
    **sqlite.WITHOUT_ROWID,
)
# a tag's uploads, newest first ("My uploads" filtered by a tag)
Index("upload_tags_tag_upload", upload_tags.c.tag_id, upload_tags.c.upload_id)

# -- sign-in -------------------------------------------------------------------------------------

# a signed-in browser: the cookie carries a random token, the database its SHA-256
sessions = Table(
    "sessions", metadata,
    Column("hash", Text, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UnixTime, nullable=False),
    Column("seen_at", UnixTime, nullable=False),
    Column("expires_at", UnixTime, nullable=False),
    **sqlite.WITHOUT_ROWID,
)
Index("sessions_user", sessions.c.user_id)
Index("sessions_expires_at", sessions.c.expires_at)

# one-time links that set a user's password, by the SHA-256 of their token
links = Table(
    "links", metadata,
    Column("hash", Text, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UnixTime, nullable=False),
    Column("expires_at", UnixTime, nullable=False),
    **sqlite.WITHOUT_ROWID,
)
Index("links_user", links.c.user_id)

# values made once for the whole install (the sessions' signing secret)
secrets = Table(
    "secrets", metadata,
    Column("name", Text, primary_key=True),
    Column("value", Text, nullable=False),
    **sqlite.WITHOUT_ROWID,
)

# resumable (tus) uploads in progress, by the SHA-256 of their id; the bytes are in the store's
# partial area. A lease (owner and end) lets one process at a time write an upload.
resumables = Table(
    "resumables", metadata,
    Column("hash", Text, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("length", BigInteger, nullable=False),
    Column("upload_offset", BigInteger, nullable=False),
    Column("metadata", Text, nullable=False),  # JSON: filename, filetype
    Column("handle", Text, nullable=False),
    Column("created_at", UnixTime, nullable=False),
    Column("updated_at", UnixTime, nullable=False),
    Column("lease_owner", Text),
    Column("lease_until", UnixTime),
    **sqlite.WITHOUT_ROWID,
)
Index("resumables_updated_at", resumables.c.updated_at)
Index("resumables_user", resumables.c.user_id)

# -- what each user's uploads take (their quota's count) ------------------------------------------

# Kept with every upload's insert and deletion, in the same transaction: an upload is inserted
# only if its conditional UPDATE here keeps the user within their quota (db/quotas.py). Derived
# from the uploads, so migrate recounts it rather than copying it.
user_usage = Table(
    "user_usage", metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("bytes", BigInteger, nullable=False, server_default=text("0")),
    Column("files", BigInteger, nullable=False, server_default=text("0")),
)

# -- the schema's version (from version 3 on; before, SQLite's PRAGMA user_version kept it) -------

schema_version = Table(
    "schema_version", metadata,
    Column("version", Integer, nullable=False),
)

# -- passing state shared by processes (not versioned) ------------------------------------------

shared = MetaData()

# token buckets of the rate limits, by limit and name (an API key's id, a client's address)
rate_buckets = Table(
    "rate_buckets", shared,
    Column("name", Text, primary_key=True),
    Column("tokens", Double, nullable=False),
    Column("stamp", Double, nullable=False),  # Unix seconds of the last token taken
    Column("full_at", Double, nullable=False),  # when it is full again: from then on it can go
)
Index("rate_buckets_full_at", rate_buckets.c.full_at)
