"""Uploads: store one with its files and tags, read them back as records, delete them."""
from __future__ import annotations

from datetime import datetime
from typing import Iterable, Iterator, Sequence

from sqlalchemy import bindparam, false, func, or_, select
from sqlalchemy.engine import Connection, Row

from ..errors import QuotaExceeded
from ..params import search_text
from ..records import Upload
from .connection import findable, first, insert, rows, value, write
from .prepared import Prepared
from .quotas import STORED, grow, release, reserve
from .tables import UPLOAD_COLUMNS, UPLOAD_INSERT, files, upload_tags, uploads
from .tags import drop_unused, link_tags, names_of, tag_ids_of

CHUNK = 500  # uploads read at once by iter_uploads

_SELECT = select(*UPLOAD_COLUMNS)
_BY_PUBLIC_ID = _SELECT.where(uploads.c.public_id == bindparam("public_id"))
_BY_ID = _SELECT.where(uploads.c.id == bindparam("upload_id"))
_PAGE = (_SELECT.where(uploads.c.id > bindparam("after"))
         .order_by(uploads.c.id).limit(bindparam("limit")))
_PAGE_OF_USER = _PAGE.where(uploads.c.user_id == bindparam("user_id"))
_ID_OF = select(uploads.c.id).where(uploads.c.public_id == bindparam("public_id"))
_DELETE_HASH = select(uploads.c.delete_hash).where(uploads.c.public_id == bindparam("public_id"))
_PATHS_OF = select(files.c.path).where(files.c.upload_id.in_(bindparam("ids", expanding=True)))
_INSERT = uploads.insert()
_INSERT_RETURNING = Prepared(uploads.insert().returning(*UPLOAD_COLUMNS),
                             columns=(*UPLOAD_INSERT, "delete_hash", "search_text"))
_INSERT_FILES = Prepared(files.insert())
_DELETE = uploads.delete().where(uploads.c.id.in_(bindparam("ids", expanding=True)))
# what the deleted uploads took, to uncount it from their users' usage
_DELETE_RETURNING = _DELETE.returning(uploads.c.user_id, STORED)
_TAKEN = select(uploads.c.user_id, STORED).where(uploads.c.id.in_(bindparam("ids", expanding=True)))
_VARIANT_SIZES = select(uploads.c.user_id, STORED).where(uploads.c.id == bindparam("upload_id"))
_ADD_VIEW = (uploads.update().where(uploads.c.id == bindparam("upload_id"))
             .values(views=uploads.c.views + 1))
_COUNT = select(func.count()).select_from(uploads)
_EXPIRED = (select(uploads.c.id)
            .where(uploads.c.expires_at.is_not(None), uploads.c.expires_at <= bindparam("now"))
            .order_by(uploads.c.expires_at).limit(bindparam("limit")))
# claimed by one sweep: rows another transaction holds are left to it (FOR UPDATE SKIP LOCKED)
_CLAIM = _EXPIRED.with_for_update(skip_locked=True)
_PUBLIC = (uploads.c.nsfw == false(),
           or_(uploads.c.expires_at.is_(None), uploads.c.expires_at > bindparam("now")))
_TAGGED = (select(func.count())
           .join_from(uploads, upload_tags, upload_tags.c.upload_id == uploads.c.id)
           .where(upload_tags.c.tag_id == bindparam("tag_id"), *_PUBLIC))
_TAGGED_PAGE = (_SELECT.join_from(uploads, upload_tags, upload_tags.c.upload_id == uploads.c.id)
                .where(upload_tags.c.tag_id == bindparam("tag_id"), *_PUBLIC)
                .order_by(uploads.c.created_at.desc(), uploads.c.id.desc())
                .limit(bindparam("limit")).offset(bindparam("offset")))
_SET_VARIANT = {
    variant: uploads.update().where(uploads.c.id == bindparam("upload_id")).values(
        {uploads.c[f"{prefix}_{part}"]: bindparam(f"new_{part}") for part in ("size", "width", "height")})
    for variant, prefix in (("th", "thumb"), ("md", "medium"), ("fr", "frame"))
}


def _records(conn: Connection, found: Sequence[Row]) -> list[Upload]:
    tags = names_of(conn, [row.id for row in found]) if found else {}
    return [Upload(*row, tags=tags.get(row.id, ())) for row in found]


def insert_upload(conn: Connection, upload: Upload, delete_hash: str,
                  paths: Iterable[tuple[str, str]]) -> Upload:
    """Store a new upload (its ``id`` is not used), its files (path, mime) and its tags, in the
    record's order; return it as stored. ``delete_hash`` is the SHA-256 of its delete secret.

    Run it inside ``transaction``. A ``public_id`` taken already raises ``Conflict``; an upload
    that would take its user past their quota ``QuotaExceeded``, before anything is written.
    """
    if upload.user_id is not None and not reserve(conn, upload.user_id, upload.stored_bytes):
        raise QuotaExceeded()
    values = {name: getattr(upload, name) for name in UPLOAD_INSERT}
    values["delete_hash"] = delete_hash
    values["search_text"] = search_text(upload.title, upload.original_filename, upload.description)
    if conn.dialect.insert_returning:
        row = _INSERT_RETURNING.first(conn, values)
    else:  # SQLite before 3.35
        row = conn.execute(_BY_ID, {"upload_id": insert(conn, _INSERT, values)}).one()
    assert row is not None
    upload_id = row[0]
    _INSERT_FILES.many(conn, [{"path": path, "upload_id": upload_id, "mime": mime}
                              for path, mime in paths])
    return Upload(*row, tags=link_tags(conn, upload_id, upload.tags))


def get_upload(conn: Connection, public_id: str) -> Upload | None:
    if not findable(public_id):
        return None
    found = _records(conn, rows(conn, _BY_PUBLIC_ID, {"public_id": public_id}))
    return found[0] if found else None


def get_upload_by_id(conn: Connection, upload_id: int) -> Upload | None:
    found = _records(conn, rows(conn, _BY_ID, {"upload_id": upload_id}))
    return found[0] if found else None


def public_id_taken(conn: Connection, public_id: str) -> bool:
    if not findable(public_id):
        return False
    return first(conn, _ID_OF, {"public_id": public_id}) is not None


def get_delete_hash(conn: Connection, public_id: str) -> str | None:
    if not findable(public_id):
        return None
    return value(conn, _DELETE_HASH, {"public_id": public_id})


def iter_uploads(conn: Connection, user_id: int | None = None) -> Iterator[Upload]:
    """Every upload (or every upload of one user), oldest first, read a chunk at a time."""
    after = 0
    while True:
        if user_id is None:
            chunk = rows(conn, _PAGE, {"after": after, "limit": CHUNK})
        else:
            chunk = rows(conn, _PAGE_OF_USER, {"after": after, "limit": CHUNK, "user_id": user_id})
        yield from _records(conn, chunk)
        if len(chunk) < CHUNK:
            return
        after = chunk[-1].id


def count_uploads(conn: Connection) -> int:
    return int(value(conn, _COUNT))


def add_view(conn: Connection, upload_id: int) -> None:
    write(conn, _ADD_VIEW, {"upload_id": upload_id})


def set_variant(conn: Connection, upload_id: int, variant: str, size: int, width: int,
                height: int) -> None:
    """Record a variant file (th, md, fr) made again: its size in bytes and pixels (and the
    difference in its user's usage). Run it inside ``transaction``."""
    before = first(conn, _VARIANT_SIZES, {"upload_id": upload_id})
    write(conn, _SET_VARIANT[variant],
          {"upload_id": upload_id, "new_size": size, "new_width": width, "new_height": height})
    after = first(conn, _VARIANT_SIZES, {"upload_id": upload_id})
    if before is not None and after is not None:
        grow(conn, before[0], int(after[1]) - int(before[1]))


def _delete(conn: Connection, upload_ids: list[int]) -> int:
    """Delete these rows and uncount what they took from their users; how many went."""
    params = {"ids": upload_ids}
    if conn.dialect.delete_returning:
        taken = [(row[0], int(row[1])) for row in rows(conn, _DELETE_RETURNING, params)]
    else:  # SQLite before 3.35, whose write lock keeps the rows as read until the DELETE
        taken = [(row[0], int(row[1])) for row in rows(conn, _TAKEN, params)]
        write(conn, _DELETE, params)
    release(conn, taken)
    return len(taken)


def delete_upload(conn: Connection, upload_id: int) -> list[str] | None:
    """Delete the row (its files and tag links cascade); return the file paths it had, or None
    when there was no row to delete. A tag no upload carries any more goes too.

    Run it inside ``transaction``: two deletions of one upload at once both found it before, and
    only the one whose DELETE removed the row may say so and remove the files.
    """
    paths = [row.path for row in rows(conn, _PATHS_OF, {"ids": [upload_id]})]
    tag_ids = tag_ids_of(conn, [upload_id])
    if _delete(conn, [upload_id]) != 1:
        return None
    drop_unused(conn, tag_ids)
    return paths


def delete_uploads(conn: Connection, upload_ids: list[int]) -> list[str]:
    """Delete several uploads (files and tag links cascade, tags left unused go); return their
    file paths. Run it inside ``transaction``."""
    paths: list[str] = []
    for start in range(0, len(upload_ids), CHUNK):
        chunk = upload_ids[start:start + CHUNK]
        paths.extend(row.path for row in rows(conn, _PATHS_OF, {"ids": chunk}))
        tag_ids = tag_ids_of(conn, chunk)
        _delete(conn, chunk)
        drop_unused(conn, tag_ids)
    return paths


def expired_ids(conn: Connection, now: datetime, limit: int) -> list[int]:
    """Ids of uploads whose expiry is at or before now, oldest first (uses the expiry index)."""
    return [row.id for row in rows(conn, _EXPIRED, {"now": now, "limit": limit})]


def claim_expired(conn: Connection, now: datetime, limit: int) -> list[int]:
    """Inside ``transaction``: ids of expired uploads, oldest first, each locked to the end of
    the transaction; uploads another transaction has claimed are skipped, not waited for."""
    return [row.id for row in rows(conn, _CLAIM, {"now": now, "limit": limit})]


def paths_of(conn: Connection, upload_ids: list[int]) -> list[str]:
    """The file paths of these uploads."""
    paths: list[str] = []
    for start in range(0, len(upload_ids), CHUNK):
        paths.extend(row.path for row in rows(conn, _PATHS_OF, {"ids": upload_ids[start:start + CHUNK]}))
    return paths


def tag_uploads(conn: Connection, tag_id: int, now: datetime, limit: int,
                offset: int = 0) -> tuple[list[Upload], int]:
    """Public uploads carrying a tag (not NSFW, not expired), newest first, and their total count."""
    total = int(value(conn, _TAGGED, {"tag_id": tag_id, "now": now}))
    found = rows(conn, _TAGGED_PAGE, {"tag_id": tag_id, "now": now, "limit": limit, "offset": offset})
    return _records(conn, found), total
