"""The use cases: store an upload, delete one, purge the expired.

Everything here takes plain values (a Config, a connection source, the time) so it runs the same
from a request, a command or a test. Heavy work happens under a semaphore of ``IMGZ_WORKERS``
slots so page and file requests are never stuck behind a queue of thumbnails.
"""
from __future__ import annotations

import shutil
import sqlite3
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable
from zoneinfo import ZoneInfo

from . import db, ids, media, storage
from .chevereto import tag_key
from .config import Config
from .errors import Forbidden, InvalidType, NoStorage
from .params import title_from_filename
from .records import Upload
from .sources import Incoming

IMAGE_FORMATS = {"jpeg", "png", "gif", "webp", "avif", "bmp"}


@dataclass(frozen=True)
class Actor:
    """Who an upload is made for: a user (by key) or a guest (user_id None)."""

    user_id: int | None
    is_admin: bool = False


@dataclass(frozen=True)
class Options:
    """The optional upload parameters, already checked and parsed."""

    title: str | None = None
    description: str | None = None
    tags: list[str] = field(default_factory=list)
    width: int | None = None
    nsfw: bool = False
    expires_at: datetime | None = None
    use_file_date: bool = False
    album_id: int | None = None
    category_id: int | None = None


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def exif_moment(date_taken: str | None, offset: str | None, zone: str) -> datetime | None:
    """EXIF 'YYYY:MM:DD HH:MM:SS' as an aware datetime: in its OffsetTime when given, else in zone."""
    if not date_taken:
        return None
    try:
        naive = datetime.strptime(date_taken.strip()[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    if offset:
        try:
            sign = -1 if offset.strip().startswith("-") else 1
            hours, minutes = offset.strip().lstrip("+-").split(":")
            tz = timezone(sign * timedelta(hours=int(hours), minutes=int(minutes)))
            return naive.replace(tzinfo=tz)
        except ValueError:
            pass
    return naive.replace(tzinfo=ZoneInfo(zone))


class Service:
    def __init__(self, config: Config, connection: Callable[[], sqlite3.Connection],
                 now: Callable[[], datetime] = utcnow) -> None:
        self.config = config
        self.connection = connection
        self.now = now
        self.slots = threading.BoundedSemaphore(config.workers)

    @property
    def data(self) -> Path:
        return self.config.data_dir

    def check_free_space(self) -> None:
        if storage.free_bytes(self.data) < self.config.min_free_mb * 1_000_000:
            raise NoStorage()

    def upload(self, incoming: Incoming, actor: Actor, options: Options) -> tuple[Upload, str]:
        """Store an incoming file as a new upload; return it and its delete secret (shown once).

        The incoming temp file is always removed. On any failure nothing is left: no row, no file.
        """
        try:
            if options.use_file_date and not actor.is_admin:
                raise Forbidden("use_file_date is for admin keys only")
            self.check_free_space()
            fmt = media.sniff(incoming.path)
            if fmt not in IMAGE_FORMATS:
                raise InvalidType()
            with self.slots:
                return self._store_image(incoming, fmt, actor, options)
        finally:
            incoming.path.unlink(missing_ok=True)

    def _store_image(self, incoming: Incoming, fmt: str, actor: Actor,
                     options: Options) -> tuple[Upload, str]:
        cfg = self.config
        probe = media.probe_image(incoming.path, fmt, max_pixels=cfg.max_pixels,
                                  max_animation_pixels=cfg.max_animation_pixels)
        if fmt == "bmp":
            ext = "png"
        elif fmt == "jpeg" and incoming.filename.lower().endswith(".jpg"):
            ext = "jpg"
        else:
            ext = fmt
        now = self.now()
        created = now
        if options.use_file_date:
            created = exif_moment(probe.date_taken, probe.date_offset, cfg.timezone) or now
        folder = storage.date_folder(created.astimezone(ZoneInfo(cfg.timezone)))
        work = storage.new_work_dir(self.data)
        conn = self.connection()
        placed: list[str] = []
        reserved: str | None = None
        try:
            rendered = media.render_image(incoming.path, probe, work_dir=work, ext=ext,
                                          width=options.width, keep_metadata=cfg.keep_exif)
            stem = Path(incoming.filename).stem if incoming.filename else ""
            name = storage.choose_name(stem, cfg.filenaming, "image", folder,
                                       lambda s: db.reserve_name(conn, s))
            reserved = f"{folder}/{name}"
            original_filename = incoming.filename or f"{name}.{ext}"
            if options.title:
                title = options.title
            elif probe.title:
                title = probe.title
            elif incoming.filename:
                title = title_from_filename(incoming.filename) or name
            else:
                title = name
            description = options.description if options.description else probe.description
            files = [("", rendered.original), ("th", rendered.thumb)]
            if rendered.medium is not None:
                files.append(("md", rendered.medium))
            paths: list[tuple[str, str]] = []
            for variant, item in files:
                relpath = f"{folder}/{name}.{variant + '.' if variant else ''}{ext}"
                storage.place(self.data, item.path, relpath)
                placed.append(relpath)
                paths.append((relpath, item.mime))
            storage.sync_dir(storage.images_dir(self.data) / folder)
            changed = rendered.changed
            checksum = storage.md5_file(storage.resolve(self.data, placed[0])) if changed else incoming.md5
            secret = ids.new_delete_secret()
            medium = rendered.medium
            values = {
                "user_id": actor.user_id, "album_id": options.album_id,
                "category_id": options.category_id, "kind": "image", "folder": folder,
                "name": name, "extension": ext, "mime": rendered.original.mime,
                "size": rendered.original.size, "width": rendered.original.width,
                "height": rendered.original.height, "duration": 0,
                "is_animated": probe.is_animated, "is_360": probe.is_360, "nsfw": options.nsfw,
                "title": title, "description": description,
                "original_filename": original_filename,
                "original_exifdata": probe.exif_json if cfg.keep_exif else None,
                "checksum": checksum, "source_checksum": incoming.md5 if changed else None,
                "created_at": created, "expires_at": options.expires_at,
                "thumb_size": rendered.thumb.size, "thumb_width": rendered.thumb.width,
                "thumb_height": rendered.thumb.height,
                "medium_size": medium.size if medium else 0,
                "medium_width": medium.width if medium else 0,
                "medium_height": medium.height if medium else 0,
                "delete_hash": ids.digest(secret),
            }
            tags = [(tag, tag_key(tag)) for tag in options.tags]
            upload_id = self._insert(conn, values, paths, tags)
            upload = db.get_upload_by_id(conn, upload_id)
            assert upload is not None
            return upload, secret
        except BaseException:
            storage.delete_files(self.data, placed)
            if reserved is not None:
                db.release_name(conn, reserved)
            raise
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _insert(self, conn: sqlite3.Connection, values: dict, paths: list[tuple[str, str]],
                tags: list[tuple[str, str]]) -> int:
        for _ in range(32):
            values["public_id"] = ids.public_id(self.config.id_length)
            try:
                with db.transaction(conn):
                    return db.insert_upload(conn, values, paths, tags)
            except sqlite3.IntegrityError:
                if not db.public_id_taken(conn, values["public_id"]):
                    raise
        raise RuntimeError("could not find a free public id")

    def delete(self, upload: Upload) -> None:
        """Remove an upload's row, then its files (a crash in between leaves orphan files for
        ``check --repair``, never a row pointing at nothing)."""
        conn = self.connection()
        with db.transaction(conn):
            paths = db.delete_upload(conn, upload.id)
        storage.delete_files(self.data, paths)

    def purge_expired(self, now: datetime | None = None, batch: int = 500) -> int:
        """Delete every upload expired at ``now``: rows in short transactions, then their files."""
        now = now or self.now()
        conn = self.connection()
        removed = 0
        while True:
            with db.transaction(conn):
                upload_ids = db.expired_ids(conn, now, batch)
                paths = db.delete_uploads(conn, upload_ids)
            storage.delete_files(self.data, paths)
            removed += len(upload_ids)
            if len(upload_ids) < batch:
                return removed

    def get_live(self, public_id: str) -> Upload | None:
        """The upload with this id unless it is unknown or expired."""
        upload = db.get_upload(self.connection(), public_id)
        if upload is None or (upload.expires_at is not None and upload.expires_at <= self.now()):
            return None
        return upload

    def delete_with_secret(self, public_id: str, secret: str) -> bool:
        conn = self.connection()
        upload = self.get_live(public_id)
        stored = db.get_delete_hash(conn, public_id)
        if upload is None or stored is None or not ids.secret_matches(secret, stored):
            return False
        self.delete(upload)
        return True

    def secret_valid(self, public_id: str, secret: str) -> bool:
        stored = db.get_delete_hash(self.connection(), public_id)
        return stored is not None and ids.secret_matches(secret, stored)
