"""Resumable uploads (tus): create one, take its bytes piece by piece, finish or end it, and sweep
away those abandoned. The web side is tus.py; the finished file becomes an upload through the
same ``Service.upload`` as any other.

An upload's id is a long random token the client holds; the database row (``db.resumables``) is
kept by its SHA-256 and says how many bytes are in. The bytes are in the store's partial area
(local: ``<data>/partial``; a bucket: a multipart upload), so any process can continue them, and
a process that stops halfway leaves what it made durable counted. One writer at a time: each
append or finish takes the row's lease first; a second one meanwhile, or a question of how much
is in, is told to try again (423).

Only users act on resumable uploads (a key, or a session with its CSRF token); an upload is its
user's alone: anyone else is told, as for an id that does not exist, that there is none.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO

from . import db, ids, scratch, sources, spool
from .errors import Conflict, ImgzError, TooBig
from .records import Actor, Resumable
from .service import Service

log = logging.getLogger("imgz")

LEASE = timedelta(seconds=60)  # a writer renews it at every durable step (a part, 64 MiB)
ABANDONED = timedelta(hours=24)  # untouched for this long: the sweep removes it
ID_LENGTH = 48  # base62: about 285 random bits
COPY_BLOCK = 1024 * 1024
METADATA_KEYS = ("filename", "filetype")


class NotFound(ImgzError):
    status, code, message = 404, 404, "No such upload"


class Busy(ImgzError):
    """Another request is writing this upload (tus clients try again on 423)."""

    status, code, message = 423, 423, "The upload is busy with another request; try again"


class _LeaseLost(Conflict):
    message = "The upload was taken over by another request"


@dataclass(frozen=True)
class Progress:
    offset: int
    length: int


def check_length(service: Service, actor: Actor, length: int) -> None:
    """Refuse, before anything is stored, an upload longer than the size limit, or one whose
    length alone would take ``actor``'s user past their quota (413). The stored upload, its
    variants counted, is checked again when it is finished."""
    cfg = service.config
    if length > cfg.max_upload_bytes:
        raise TooBig(cfg.max_upload_mb)
    service.check_quota(actor, max(length, 1))


def create(service: Service, actor: Actor, length: int, metadata: dict[str, str]) -> str:
    """A new resumable upload of ``length`` bytes for the actor's user; returns its id."""
    if actor.user_id is None:
        raise ImgzError("Resumable uploads need an API key or a signed-in user", 401, 100)
    check_length(service, actor, length)
    service.check_free_space()
    upload_id = ids.random_base62(ID_LENGTH)
    digest = ids.digest(upload_id)
    kept = {k: v for k, v in metadata.items() if k in METADATA_KEYS}
    handle = service.store.begin_partial(digest, length)
    try:
        db.add_resumable(service.connection(), digest, actor.user_id, length, kept, handle,
                         service.now())
    except BaseException:
        service.store.drop_partial(digest, handle)
        raise
    return upload_id


def find(service: Service, actor: Actor, upload_id: str) -> Resumable:
    """The actor's upload of this id; anyone else's, or none, is 404 alike."""
    row = None
    if upload_id and len(upload_id) <= 2 * ID_LENGTH and upload_id.isalnum():
        row = db.get_resumable(service.connection(), ids.digest(upload_id))
    if row is None or actor.user_id is None or row.user_id != actor.user_id:
        raise NotFound()
    return row


def progress(service: Service, actor: Actor, upload_id: str) -> Progress:
    """How much of the actor's upload is in (tus HEAD). While a writer holds the upload the
    answer is 423, not the offset: its bytes are about to count (a PATCH whose connection was cut
    is being stored), and a client told the older offset would send them all again."""
    row = find(service, actor, upload_id)
    if row.lease_until is not None and row.lease_until > service.now():
        raise Busy()
    return Progress(row.offset, row.length)


@contextlib.contextmanager
def _leased(service: Service, row: Resumable):
    """The row's lease, held for the block (423 while another request holds it)."""
    owner = ids.random_base62(24)
    now = service.now()
    conn = service.connection()
    if not db.take_lease(conn, row.digest, owner, now, now + LEASE):
        raise Busy()
    try:
        yield owner
    finally:
        try:
            db.release_lease(service.connection(), row.digest, owner)
        except ImgzError:  # it ends by itself within LEASE
            log.warning("could not release the lease of a resumable upload")


def append(service: Service, actor: Actor, upload_id: str, offset: int, size: int,
           body: IO[bytes]) -> Progress:
    """Store ``size`` bytes read from ``body`` at ``offset``, which must be the upload's offset
    (else 409: the client asks for it again). Bytes past the upload's length are refused (413)
    before any is stored. Returns the new offset; each durable step counts as it is made."""
    row = find(service, actor, upload_id)
    if offset != row.offset:
        raise Conflict(f"Upload-Offset {offset} does not match the upload's offset {row.offset}")
    if offset + size > row.length:
        raise ImgzError(f"{offset + size} bytes would pass the upload's length of {row.length}",
                        413, 400)
    service.check_free_space()
    with _leased(service, row) as owner:
        row = find(service, actor, upload_id)  # as it is now the lease is ours
        if offset != row.offset:
            raise Conflict(f"Upload-Offset {offset} does not match the upload's offset {row.offset}")
        counted = row.offset

        def durable(new: int) -> None:
            nonlocal counted
            if new == counted:
                return
            now = service.now()
            if not db.move_offset(service.connection(), row.digest, owner, counted, new, now,
                                  now + LEASE):
                raise _LeaseLost()
            counted = new

        try:
            new = service.store.append_partial(row.digest, row.handle, row.offset, body,
                                               scratch.folder(service.data), durable)
        except FileNotFoundError:
            _forget(service, row)
            raise NotFound("The upload's stored bytes are gone; start again") from None
        durable(new)
        return Progress(counted, row.length)


def finish(service: Service, actor: Actor, upload_id: str) -> sources.Incoming:
    """The complete upload as an incoming file (hashed, JPEG metadata dropped as set), after
    which its row and bytes are gone: the caller makes it an upload (``Service.upload``)."""
    row = find(service, actor, upload_id)
    if row.offset != row.length:
        raise Conflict(f"The upload is not complete: {row.offset} of {row.length} bytes are in")
    cfg = service.config
    with _leased(service, row):
        writer = spool.upload_writer(cfg.data_dir, cfg.max_upload_bytes, cfg.max_upload_mb,
                                     cfg.keep_exif)
        try:
            try:
                stream = service.store.open_partial(row.digest, row.handle, row.length,
                                                    scratch.folder(service.data))
            except FileNotFoundError:
                _forget(service, row)
                raise NotFound("The upload's stored bytes are gone; start again") from None
            with contextlib.closing(stream):
                while chunk := stream.read(COPY_BLOCK):
                    writer.write(chunk)
            incoming = sources.from_writer(writer, row.metadata.get("filename"))
        except BaseException:
            writer.discard()
            raise
    _forget(service, row)
    return incoming


def terminate(service: Service, actor: Actor, upload_id: str) -> None:
    """End an upload (tus termination): its row and bytes go."""
    row = find(service, actor, upload_id)
    with _leased(service, row):
        pass
    _forget(service, row)


def _forget(service: Service, row: Resumable) -> None:
    """Remove the row, then the bytes (bytes no row knows are swept later, never the reverse)."""
    db.delete_resumable(service.connection(), row.digest)
    service.store.drop_partial(row.digest, row.handle)


def sweep(service: Service, now: datetime | None = None) -> int:
    """Remove uploads untouched for ``ABANDONED`` (rows and bytes, a bucket's multipart upload
    aborted), and partial bytes that no row knows; return how many uploads went."""
    now = now or service.now()
    before = now - ABANDONED
    conn = service.connection()
    removed = 0
    while True:
        rows = db.abandoned_resumables(conn, before, now)
        for row in rows:
            owner = ids.random_base62(24)
            if db.take_lease(conn, row.digest, owner, now, now + LEASE):
                _forget(service, row)
                removed += 1
        if len(rows) < 500:
            break
    for name, handle in service.store.stale_partials(before):
        if db.get_resumable(conn, name) is None:
            service.store.drop_partial(name, handle)
    if removed:
        log.info("removed %d abandoned resumable upload%s", removed, "" if removed == 1 else "s")
    return removed
