"""The local store: stored files on this machine's disk, ``<root>/YYYY/MM/DD/<name>.<ext>``.

Files come from the process's scratch folder, on the same filesystem, so a put links the finished
file into place (never a copy, never over an existing name) after an fsync, and fsyncs the folder
once the names are made. Stored files get mode 0666 less the process umask, as any file the
process makes: a work file may have been made private (mkstemp's 0600), a front server running as
another user must still be able to send it.

The bytes of resumable uploads in progress are files of their own, ``<data>/partial/<name>``,
outside the stored files' folder: appended to at the offset the database counts (anything past
it, written by a call that never counted, is cut off first) and fsynced before they count.

While a backup holds the data directory's lease (imgz/lease.py), deleted files are moved into
its hold folder instead of removed, so that the backup still copies them.
"""
from __future__ import annotations

import contextlib
import logging
import os
import stat
from datetime import datetime
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator, Sequence

from .. import disk, lease
from . import Stat, Store, check_key, check_prefix

log = logging.getLogger("imgz")
COPY_BLOCK = 1024 * 1024
DURABLE_STEP = 64 * 1024 * 1024  # bytes of a long append made durable (and counted) at a time


class LocalStore(Store):
    def __init__(self, root: str | Path, partial: str | Path | None = None) -> None:
        self.root = os.path.abspath(root)
        self.data = os.path.dirname(self.root)  # where a backup's lease and hold are
        # resumable uploads in progress: beside the stored files' folder unless told
        self.partial_root = os.path.abspath(partial or os.path.join(os.path.dirname(self.root),
                                                                    "partial"))

    def __repr__(self) -> str:
        return f"LocalStore({self.root!r})"

    def _path(self, key: str) -> str:
        return f"{self.root}/{check_key(key)}"

    def prepare(self) -> None:
        os.makedirs(self.root, exist_ok=True)

    def put(self, key: str, src: Path, expires_at: datetime | None = None) -> None:
        self.put_all([(key, src)])

    def put_all(self, items: Sequence[tuple[str, Path]], expires_at: datetime | None = None) -> None:
        """Link each file to its key, then fsync each folder once: an upload's files share one."""
        targets = [(self._path(key), key, src) for key, src in items]
        mode = 0o666 & ~disk.process_umask()
        placed: list[str] = []
        folders: dict[str, None] = {}
        try:
            for dest, key, src in targets:
                _make_ready(src, mode)
                folder = os.path.dirname(dest)
                try:
                    os.link(src, dest)  # fails if the name exists: a put never overwrites
                except FileNotFoundError:
                    self._make_folders(folder)
                    os.link(src, dest)
                placed.append(key)
                folders[folder] = None
                os.unlink(src)
            for folder in folders:
                disk.fsync_path(folder)
        except BaseException as exc:
            self.delete(placed)
            if isinstance(exc, OSError):
                disk.raise_storage_error(exc)
            raise

    def _make_folders(self, folder: str) -> None:
        """Make a missing date folder, and fsync the folders above it so that its name lasts."""
        os.makedirs(folder, exist_ok=True)
        parent = os.path.dirname(folder)
        while len(parent) >= len(self.root):
            disk.fsync_path(parent)
            parent = os.path.dirname(parent)

    def open(self, key: str, start: int = 0, stop: int | None = None) -> IO[bytes]:
        # The file itself: with its fileno a server may send it without copying it through Python.
        file = open(self._path(key), "rb")
        if start:
            try:
                file.seek(start)
            except BaseException:
                file.close()
                raise
        return file

    def stat(self, key: str) -> Stat | None:
        path = self._path(key)
        try:
            st = os.stat(path)
        except OSError:
            return None
        return _stat_of(st, path)

    def open_with_stat(self, key: str) -> tuple[IO[bytes], Stat] | None:
        """The file opened for reading and its Stat, read from the open file: one lookup of the
        path where ``stat`` and ``open`` take two. None when there is no such regular file."""
        path = self._path(key)
        try:
            # non-blocking: something other than a file at the path must not hold the thread
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            found = _stat_of(os.fstat(fd), path)
        except BaseException:
            os.close(fd)
            raise
        if found is None:
            os.close(fd)
            return None
        return open(fd, "rb"), found

    def delete(self, keys: Iterable[str]) -> None:
        paths = [(key, self._path(key)) for key in keys]
        if not paths:
            return
        backup = lease.holder(self.data)
        for key, path in paths:
            try:
                if backup is None:
                    os.unlink(path)
                else:
                    lease.retire(self.data, backup, key, path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("could not remove %s: %s", key, exc.strerror or exc)

    def list(self, prefix: str = "") -> Iterator[str]:
        folder, _, start = check_prefix(prefix).rpartition("/")
        top = f"{self.root}/{folder}" if folder else self.root
        cut = len(self.root) + 1
        for here, dirs, files in os.walk(top):
            if here == top:
                dirs[:] = [name for name in dirs if name.startswith(start)]
                files = [name for name in files if name.startswith(start)]
            base = here[cut:]
            for name in files:
                yield f"{base}/{name}" if base else name

    def ready(self) -> None:
        if not os.path.isdir(self.root) or not os.access(self.root, os.W_OK | os.X_OK):
            raise OSError(f"{self.root} is not a folder this process can write")

    def free_bytes(self) -> int | None:
        try:
            st = os.statvfs(self.root)
        except OSError:
            return None
        return st.f_bavail * st.f_frsize

    # -- resumable uploads in progress ------------------------------------------------------------

    def _partial(self, name: str) -> str:
        if not name or not all(ch in "0123456789abcdef" for ch in name):
            raise ValueError(f"unsafe partial name {name!r}")
        return f"{self.partial_root}/{name}"

    def begin_partial(self, name: str, length: int) -> str:
        path = self._partial(name)
        try:
            os.makedirs(self.partial_root, exist_ok=True)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            disk.fsync_path(self.partial_root)
        except OSError as exc:
            disk.raise_storage_error(exc)
        return ""

    def append_partial(self, name: str, handle: str, offset: int, body: IO[bytes], scratch: Path,
                       durable: Callable[[int], None]) -> int:
        try:
            fd = os.open(self._partial(name), os.O_WRONLY)
        except FileNotFoundError:
            raise FileNotFoundError(f"no partial upload {name[:8]}...") from None
        try:
            os.ftruncate(fd, offset)  # what a write that never counted left past the offset
            os.lseek(fd, offset, os.SEEK_SET)
            since = 0
            while chunk := body.read(COPY_BLOCK):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
                offset += len(chunk)
                since += len(chunk)
                if since >= DURABLE_STEP:
                    os.fsync(fd)
                    since = 0
                    durable(offset)
            os.fsync(fd)
            return offset
        except OSError as exc:
            disk.raise_storage_error(exc)
        finally:
            os.close(fd)

    def open_partial(self, name: str, handle: str, length: int, scratch: Path) -> IO[bytes]:
        file = open(self._partial(name), "rb")
        if os.fstat(file.fileno()).st_size < length:
            file.close()
            raise FileNotFoundError(f"partial upload {name[:8]}... is short of its length")
        return file

    def drop_partial(self, name: str, handle: str) -> None:
        try:
            os.unlink(self._partial(name))
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not remove partial upload %s...: %s", name[:8], exc.strerror or exc)

    def stale_partials(self, older_than: datetime) -> list[tuple[str, str]]:
        limit = older_than.timestamp()
        try:
            with os.scandir(self.partial_root) as found:
                return [(entry.name, "") for entry in found
                        if entry.is_file() and entry.stat().st_mtime < limit]
        except FileNotFoundError:
            return []

    @contextlib.contextmanager
    def local_file(self, key: str, scratch: Path) -> Iterator[Path]:
        path = self._path(key)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no stored file {key!r}")
        yield Path(path)


def _make_ready(src: Path, mode: int) -> None:
    """Give a finished file its mode and flush it to the disk before its name is made."""
    fd = os.open(src, os.O_RDONLY)
    try:
        os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)


def _stat_of(st: os.stat_result, path: str) -> Stat | None:
    if not stat.S_ISREG(st.st_mode):
        return None
    return Stat(st.st_size, st.st_mtime_ns, f"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}", path)
