"""Where files live: datefolder paths, stored names, the hashing writer, atomic placement, deletion.

Layout: ``<data>/images/YYYY/MM/DD/<name>.<ext>`` with variants ``<name>.th.<ext>``,
``<name>.md.<ext>`` and ``<name>.fr.jpeg`` beside it; work files live in the process's own scratch
folder under ``<data>/tmp`` (scratch.py), on the same filesystem, so finished files are linked into
place, never copied. This is the only module, with scratch.py, that builds paths under the data
directory.
"""
from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Callable, NoReturn

from anyascii import anyascii
from werkzeug.security import safe_join

from . import ids, scratch
from .errors import ImgzError, NoStorage, TooBig

CHUNK = 1 << 20
_FULL_DISK = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_NAME_RUNS = re.compile(r"[\s_-]+")
_NAME_DROP = re.compile(r"[^A-Za-z0-9_-]")
MAX_NAME = 80
log = logging.getLogger("imgz")
# A filter factory for HashingWriter: given the writer's own write function, an object with
# feed(chunk) and finish() (jpeg.JpegArrival).
Arrival = Callable[[Callable[[bytes | memoryview], None]], Any]


def images_dir(data: Path) -> Path:
    return data / "images"


def tmp_dir(data: Path) -> Path:
    """This process's scratch folder under ``<data>/tmp``, made and locked on first use."""
    return scratch.of(data).folder()


def prepare(data: Path) -> None:
    """Create the data layout; ``tmp`` is left alone (scratch.clean removes what is dead there)."""
    images_dir(data).mkdir(parents=True, exist_ok=True)


def raise_storage_error(exc: OSError) -> NoReturn:
    """Raise NoStorage for a full disk (ENOSPC, EDQUOT, EFBIG), else the error itself."""
    if exc.errno in _FULL_DISK:
        raise NoStorage() from exc
    raise exc


def free_bytes(data: Path) -> int:
    stat = os.statvfs(data)
    return stat.f_bavail * stat.f_frsize


class HashingWriter:
    """A temp file in the process's scratch folder that computes md5 and size while it is written.

    It stops with TooBig past ``limit`` bytes and with NoStorage when the disk is full. Werkzeug
    uses it as the multipart stream factory, so an upload goes to disk once, hashed on the way.
    An ``arrival`` filter may change the bytes on their way to the file (the md5 and size stay
    those of the upload as received); ``finish()`` ends it. The file is not fsynced here: it is
    fsynced when it, or a file made from it, is placed.
    """

    def __init__(self, data: Path, limit: int, limit_mb: float,
                 arrival: Arrival | None = None, *, drain: bool = False) -> None:
        fd, name = tempfile.mkstemp(prefix="up-", dir=tmp_dir(data))
        self.path = Path(name)
        # Unbuffered: a full disk must fail in write(), where it becomes a 507, not in a later
        # flush hidden inside Werkzeug's seek() or close().
        self._file: IO[bytes] = os.fdopen(fd, "w+b", buffering=0)
        self._md5 = hashlib.md5()
        self.size = 0
        self.limit = limit
        self.limit_mb = limit_mb
        # A filter between the upload and the file (jpeg.JpegArrival): it writes through _put.
        self._filter = arrival(self._put) if arrival is not None else None
        self._finished = False
        self._filtered: Any = None
        # With drain, TooBig and NoStorage are kept in ``error`` and the rest of the part is
        # thrown away, so that the form around it can still be read.
        self._drain = drain
        self.error: ImgzError | None = None

    def write(self, chunk: bytes) -> int:
        if self.error is not None:
            return len(chunk)
        try:
            self.size += len(chunk)
            if self.size > self.limit:
                raise TooBig(self.limit_mb)
            self._md5.update(chunk)
            if self._filter is not None:
                self._filter.feed(chunk)
            else:
                self._put(chunk)
        except (TooBig, NoStorage) as exc:
            if not self._drain:
                raise
            self.error = exc
            try:
                self._file.truncate(0)  # give the space back now; the file goes at the end
            except OSError:
                pass
        return len(chunk)

    def _put(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        try:
            while view:
                written = self._file.write(view)
                view = view[written:]
        except OSError as exc:
            raise_storage_error(exc)

    def finish(self) -> Any:
        """The upload is complete: let the filter write what it held; returns its result
        (None without a filter, or when it wrote the upload as it arrived). Later calls
        return the same result."""
        if not self._finished:
            self._finished = True
            if self._filter is not None:
                self._filtered = self._filter.finish()
        return self._filtered

    @property
    def md5(self) -> str:
        return self._md5.hexdigest()

    def discard(self) -> None:
        """Close and remove the file; never raises, it runs while a request is torn down."""
        try:
            self.close()
        except OSError:
            pass
        try:
            self.path.unlink()
        except OSError:
            pass

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    # Werkzeug's FileStorage reads back and seeks through the stream it was given.
    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


def new_work_dir(data: Path) -> Path:
    return Path(tempfile.mkdtemp(prefix="work-", dir=tmp_dir(data)))


def remove_work_dir(path: Path) -> None:
    """Remove a work dir; after a stored upload it is already empty, so rmdir is enough."""
    try:
        os.rmdir(path)
    except OSError:
        shutil.rmtree(path, ignore_errors=True)


def date_folder(moment: datetime) -> str:
    """'YYYY/MM/DD', always zero-padded (strftime's %Y gives '999' for year 999 on glibc)."""
    return f"{moment.year:04d}/{moment.month:02d}/{moment.day:02d}"


def clean_name(text: str) -> str:
    """A file-name-safe ASCII version of text: runs of space, _ and - become one -, no dots."""
    ascii_text = anyascii(text)
    joined = _NAME_RUNS.sub("-", ascii_text)
    kept = _NAME_DROP.sub("", joined)
    kept = re.sub(r"-{2,}", "-", kept).strip("-")
    return kept[:MAX_NAME].strip("-")


def choose_name(original_stem: str, mode: str, fallback: str, folder: str,
                reserve: Callable[[str], bool]) -> str:
    """Pick and reserve a stored name in folder; ``reserve('YYYY/MM/DD/name')`` claims it atomically."""
    base = clean_name(original_stem) or fallback
    for attempt in range(64):
        if mode == "random":
            name = ids.random_base62(16)
        elif mode == "original" and attempt == 0:
            name = base
        else:
            suffix = ids.random_base62(8)
            name = f"{base[:MAX_NAME - 9].rstrip('-')}-{suffix}"
        if reserve(f"{folder}/{name}"):
            return name
    raise RuntimeError("could not reserve a stored name")


def fsync_path(path: Path) -> None:
    """fsync a file, or a directory so the names made in it survive a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def place(data: Path, src: Path, relpath: str) -> Path:
    """Move a finished work file to ``images/<relpath>`` without ever overwriting a file there.

    The file is fsynced, hard-linked to its final name (which fails if the name exists: the
    reservation should make that impossible) and the work name removed.
    """
    dest = resolve(data, relpath)
    if dest is None:
        raise ValueError(f"unsafe stored path {relpath!r}")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fsync_path(src)
        os.link(src, dest)
        os.unlink(src)
    except OSError as exc:
        raise_storage_error(exc)
    return dest


def resolve(data: Path, relpath: str) -> Path | None:
    """The absolute path of a stored file, or None when relpath would leave images/."""
    if "\\" in relpath or "\x00" in relpath:
        return None
    joined = safe_join(str(images_dir(data)), relpath)
    return None if joined is None else Path(joined)


def delete_files(data: Path, relpaths: list[str]) -> None:
    """Remove files whose rows are gone; one that cannot be removed is logged (``check --repair``
    finds it later) and the others still go."""
    for relpath in relpaths:
        path = resolve(data, relpath)
        if path is not None:
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("could not remove %s: %s", relpath, exc.strerror or exc)


def file_size(path: Path) -> int:
    return path.stat().st_size


def md5_file(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_bytes(data: Path, payload: bytes, limit: int, limit_mb: float,
                arrival: Arrival | None = None) -> HashingWriter:
    """Put bytes held in memory (a decoded base64 source) into a hashed temp file."""
    writer = HashingWriter(data, limit, limit_mb, arrival)
    try:
        writer.write(payload)
        writer.finish()
    except BaseException:
        writer.discard()
        raise
    return writer


def walk(data: Path) -> list[str]:
    """Every file under images/, as paths relative to it ('YYYY/MM/DD/name.ext')."""
    root = images_dir(data)
    found: list[str] = []
    for folder, _dirs, files in os.walk(root):
        for name in files:
            found.append(os.path.relpath(os.path.join(folder, name), root).replace(os.sep, "/"))
    return found


def exists(data: Path, relpath: str) -> bool:
    path = resolve(data, relpath)
    return path is not None and path.is_file()
