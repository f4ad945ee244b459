"""The use cases: store an upload, delete one, purge the expired.

Everything here takes plain values (a Config, a connection source, the time) so it runs the same
from a request, a command or a test. Heavy work happens under a semaphore of ``IMGZ_WORKERS``
slots so page and file requests are never stuck behind a queue of thumbnails.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable
from zoneinfo import ZoneInfo

from . import db, disk, filetype, ids, layout, metrics, render, scratch, workers
from .config import Config
from .errors import Conflict, Forbidden, InvalidImage, InvalidType, InvalidVideo, NoStorage, QuotaExceeded
from .params import clean_description, clean_title, title_from_filename
from .records import Actor, Options, Upload
from .jpeg import Stripped
from .mp4strip import Cleaned
from .sources import Incoming
from .store import Store, for_config

log = logging.getLogger("imgz")

IMAGE_FORMATS = {"jpeg", "png", "gif", "webp", "avif", "bmp"}
VIDEO_FORMATS = {"mp4", "webm", "mov"}


def _stored_ext(fmt: str, filename: str) -> str:
    """The stored extension: the detected type's, BMP as PNG, and 'jpg' when the client said so."""
    if fmt == "bmp":
        return "png"
    if fmt == "jpeg" and filename.lower().endswith(".jpg"):
        return "jpg"
    return fmt


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


# The calendar a stored upload can have: Unix time starts in 1970 and file URLs are YYYY/MM/DD.
FIRST_YEAR, LAST_YEAR = 1970, 9999


def exif_moment(date_taken: str | None, offset: str | None, zone: str) -> datetime | None:
    """EXIF 'YYYY:MM:DD HH:MM:SS' as an aware datetime: in its OffsetTime when given, else in zone.

    None (the upload date stays) when there is no readable date, or when the instant, in UTC or in
    the site's zone where its folder is named, falls outside 1970-9999: year 0999 would name a
    folder no file URL matches, and 0001-01-01 at +14:00 is before the calendar's start in UTC.
    """
    if not date_taken:
        return None
    try:
        naive = datetime.strptime(date_taken.strip()[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    tz: timezone | ZoneInfo = ZoneInfo(zone)
    if offset:
        try:
            sign = -1 if offset.strip().startswith("-") else 1
            hours, minutes = offset.strip().lstrip("+-").split(":")
            tz = timezone(sign * timedelta(hours=int(hours), minutes=int(minutes)))
        except ValueError:
            pass
    moment = naive.replace(tzinfo=tz)
    try:
        years = {moment.astimezone(timezone.utc).year, moment.astimezone(ZoneInfo(zone)).year}
    except (OverflowError, ValueError):
        return None
    if min(years) < FIRST_YEAR or max(years) > LAST_YEAR:
        return None
    return moment


class Service:
    def __init__(self, config: Config, connection: Callable[[], db.Connection],
                 now: Callable[[], datetime] = utcnow, *, store: Store | None = None) -> None:
        self.config = config
        self.store = store if store is not None else for_config(config)
        self.connection = connection
        self.now = now
        self._pool: workers.Pool | None = None
        self._pool_lock = threading.Lock()
        self.admission = workers.Admission(config.workers + config.upload_queue, config.workers)
        # Counts deletions made here, so that whoever remembers files can forget them at once.
        self.deletions = 0

    @property
    def data(self) -> Path:
        return self.config.data_dir

    def check_free_space(self) -> None:
        free = self.store.free_bytes()
        if free is not None and free < self.config.min_free_mb * 1_000_000:
            raise NoStorage()

    def check_quota(self, actor: Actor, size: int = 1) -> None:
        """Refuse (413) an upload of ``size`` bytes or more that the user's quota has no room
        for, before any work; the insert checks again, exactly and atomically."""
        if actor.user_id is None:
            return
        quota = db.get_quota(self.connection(), actor.user_id)
        if quota is not None and quota.refuses(size):
            raise QuotaExceeded()

    def limits(self) -> render.Limits:
        cfg = self.config
        return render.Limits(cfg.max_pixels, cfg.max_animation_pixels, cfg.keep_exif,
                             cfg.ffmpeg_timeout)

    @property
    def pool(self) -> workers.Pool:
        """The media workers, started on first use (commands that never render start none)."""
        with self._pool_lock:
            if self._pool is None:
                self._pool = workers.Pool(self.config.workers,
                                          memory=self.config.worker_memory_mb * 1024 * 1024)
            return self._pool

    def budget(self, actor: Actor | None, kind: str) -> workers.Budget:
        cfg = self.config
        cpu = cfg.guest_work_budget if actor is not None and actor.user_id is None else cfg.work_budget
        return workers.budget_for(cpu, video_timeout=cfg.ffmpeg_timeout if kind == "video" else None)

    def run_media(self, job: Callable[..., render.Made], args: tuple, budget: workers.Budget,
               kind: str) -> render.Made:
        """Run a media job in a worker; a worker that crashed on the file means a bad file."""
        try:
            return self.pool.run(job, args, budget)
        except workers.WorkerDied as exc:
            log.warning("%s", exc)
            raise (InvalidVideo() if kind == "video" else InvalidImage()) from None

    def upload(self, incoming: Incoming, actor: Actor, options: Options) -> tuple[Upload, str]:
        """Store an incoming file as a new upload; return it and its delete secret (shown once).

        The incoming temp file is always removed. On any failure nothing is left: no row, no file.
        """
        started = time.perf_counter()
        try:
            if options.use_file_date and not actor.is_admin:
                raise Forbidden("use_file_date is for admin keys only")
            self.check_quota(actor)
            self.check_free_space()
            fmt = filetype.sniff(incoming.path)
            if fmt not in IMAGE_FORMATS and fmt not in VIDEO_FORMATS:
                raise InvalidType()
            work = scratch.new_work_dir(self.data)
            try:
                # The heavy part runs in a worker process under a budget; placing files (fsync)
                # and the database commit wait on the disk here, while a worker renders the next.
                if fmt in VIDEO_FORMATS:
                    cleaned = incoming.stripped if isinstance(incoming.stripped, Cleaned) else None
                    made = self.run_media(render.clip, (incoming.path, fmt, self.limits(), work,
                                                        cleaned),
                                       self.budget(actor, "video"), "video")
                else:
                    stripped = incoming.stripped if fmt == "jpeg" else None
                    assert stripped is None or isinstance(stripped, Stripped)
                    ext = _stored_ext(fmt, incoming.filename)
                    made = self.run_media(render.image, (incoming.path, fmt, ext, options.width,
                                                      stripped, self.limits(), work),
                                       self.budget(actor, "image"), "image")
                taken = None
                if options.use_file_date:
                    taken = exif_moment(made.date_taken, made.date_offset, self.config.timezone)
                upload, secret = self._store(incoming, actor, options, made, taken)
                metrics.stored(upload.kind, "jpeg" if upload.extension == "jpg" else upload.extension,
                               upload.size, time.perf_counter() - started)
                return upload, secret
            finally:
                scratch.remove_work_dir(work)
        except OSError as exc:
            # Pillow and shutil write work files too: a full disk there is the same 507.
            disk.raise_storage_error(exc)
        finally:
            incoming.path.unlink(missing_ok=True)

    def _store(self, incoming: Incoming, actor: Actor, options: Options, made: render.Made,
               taken: datetime | None) -> tuple[Upload, str]:
        """Name, store and record what was made: files first (durable), then the row."""
        cfg = self.config
        created = taken or self.now()
        folder = layout.date_folder(created.astimezone(ZoneInfo(cfg.timezone)))
        conn = self.connection()
        placed: list[str] = []
        reserved: str | None = None
        try:
            stem = Path(incoming.filename).stem if incoming.filename else ""
            name = layout.choose_name(stem, cfg.filenaming, made.kind, folder,
                                      lambda s: db.reserve_name(conn, s))
            reserved = f"{folder}/{name}"
            # what the file's metadata says follows the same rules as the parameters
            meta_title = clean_title(made.title) if made.title else ""
            meta_description = clean_description(made.description, cut=True) if made.description else None
            if options.title:
                title = options.title
            elif meta_title:
                title = meta_title
            elif incoming.filename:
                title = title_from_filename(incoming.filename) or name
            else:
                title = name
            files = [(layout.file_key(folder, name, made.ext, made.kind, variant), item)
                     for variant, item in made.files()]
            if not made.changed:
                checksum = incoming.md5
            else:
                checksum = made.md5 or disk.md5_file(made.original.path)
            self.store.put_all([(key, item.path) for key, item in files], options.expires_at)
            placed = [key for key, _ in files]
            paths = [(key, item.mime) for key, item in files]
            secret = ids.new_delete_secret()
            sizes = {f"{prefix}_{part}": getattr(item, part) if item else 0
                     for prefix, item in (("thumb", made.thumb), ("medium", made.medium),
                                          ("frame", made.frame))
                     for part in ("size", "width", "height")}
            upload = Upload(
                id=0, public_id="", user_id=actor.user_id, album_id=options.album_id,
                category_id=options.category_id, kind=made.kind, folder=folder, name=name,
                extension=made.ext, mime=made.original.mime, size=made.original.size,
                width=made.width, height=made.height, duration=made.duration,
                is_animated=made.is_animated, is_360=made.is_360, nsfw=options.nsfw, title=title,
                description=options.description or meta_description,
                original_filename=incoming.filename or f"{name}.{made.ext}",
                original_exifdata=made.exif_json, checksum=checksum,
                source_checksum=incoming.md5 if made.changed else None, created_at=created,
                expires_at=options.expires_at, tags=tuple(options.tags), **sizes)
            return self._insert(conn, upload, ids.digest(secret), paths), secret
        except BaseException:
            self.store.delete(placed)
            if reserved is not None:
                db.release_name(conn, reserved)
            raise

    def _insert(self, conn: db.Connection, upload: Upload, delete_hash: str,
                paths: list[tuple[str, str]]) -> Upload:
        """Store the upload under a new public id; one drawn twice (or by another process at
        the same moment) is drawn again."""
        for _ in range(32):
            upload = replace(upload, public_id=ids.public_id(self.config.id_length))
            try:
                with db.transaction(conn):
                    return db.insert_upload(conn, upload, delete_hash, paths)
            except Conflict:
                if not db.public_id_taken(conn, upload.public_id):
                    raise
        raise RuntimeError("could not find a free public id")

    def delete(self, upload: Upload) -> bool:
        """Remove an upload's row, then its files (a crash in between leaves orphan files for
        ``check --repair``, never a row pointing at nothing).

        False when the row was already gone: of two deletions at once, both of which found the
        upload, only the one that removed the row succeeds (and removes the files).
        """
        conn = self.connection()
        with db.transaction(conn):
            paths = db.delete_upload(conn, upload.id)
        if paths is None:
            return False
        self.deletions += 1
        self.store.delete(paths)
        return True

    def prune_copies(self) -> int:
        """Drop this host's copies of files (a remote store's cache) whose upload is gone, deleted
        or expired through another process; return how many."""
        copies = self.store.copies()
        if not copies:
            return 0
        known = db.known_paths(self.connection(), copies)
        gone = [key for key in copies if key not in known]
        self.store.drop_copies(gone)
        return len(gone)

    def prune_sign_ins(self) -> int:
        """Delete sessions and one-time links past their end; return how many."""
        return db.prune_sessions(self.connection(), self.now())

    def purge_expired(self, now: datetime | None = None, batch: int = 500) -> int:
        """Delete every upload expired at ``now``, a batch at a time, each in one transaction:
        its rows are claimed (locked), their files deleted, then the rows. A crash before the
        commit leaves the rows to the next sweep (a file deleted twice is no error), never files
        gone under rows that stay.

        Processes sharing a database take turns by the lock "expiry", batch by batch: one that
        finds another holding it leaves the rest to that one. Return how many were deleted here.
        """
        now = now or self.now()
        conn = self.connection()
        removed = 0
        while True:
            with db.transaction(conn):
                if not db.try_lock(conn, "expiry"):
                    return removed
                upload_ids = db.claim_expired(conn, now, batch)
                self.store.delete(db.paths_of(conn, upload_ids))
                db.delete_uploads(conn, upload_ids)
            if upload_ids:
                self.deletions += 1
            removed += len(upload_ids)
            if len(upload_ids) < batch:
                return removed
