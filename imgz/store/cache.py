"""This host's copies of files read from a remote store, ``<data>/cache/<key>``, within a budget.

A remote store's file is streamed through Python on every request, which costs the bucket a
request and both machines the copies of its bytes. A stored file never changes (a key is never
overwritten), so the first whole read of one is kept here as it passes (``filling``), and the
next requests are answered from the local file, zero-copy, like the local store's files.

What keeps a copy from outliving its upload: the file responder serves a stored file only after
its row is found, so a copy of a deleted or expired upload is never served; it is removed here
when this process deletes the upload, and ``prune`` (run with each expiry sweep) removes the
copies whose row another process deleted. The oldest copies go once the budget is passed. Copies
are written under ``.tmp`` and renamed into place after an fsync: a copy is whole or absent.
The budget is counted per process; processes sharing a data dir share the copies.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import IO, Iterable

from .. import layout

log = logging.getLogger("imgz")

TMP = ".tmp"
STALE_TMP = 3600  # seconds: a partial copy older than this was left by a process that died


class DiskCache:
    def __init__(self, root: str | Path, budget: int, min_free: int = 0) -> None:
        self.root = os.path.abspath(root)
        self.budget = budget
        self.item_limit = max(budget // 8, 1)  # one file never crowds out the rest
        self.min_free = min_free
        self._index: OrderedDict[str, int] | None = None  # key -> size, least recently used first
        self._total = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"DiskCache({self.root!r}, {self.budget})"

    def _path(self, key: str) -> str:
        if not layout.is_safe(key):
            raise ValueError(f"unsafe key {key!r}")
        return f"{self.root}/{key}"

    def _loaded(self) -> OrderedDict[str, int]:
        """The index, read from the folder on first use, oldest first."""
        if self._index is None:
            found: list[tuple[float, str, int]] = []
            tmp = os.path.join(self.root, TMP)
            for folder, dirs, names in os.walk(self.root):
                if folder == tmp:
                    self._clear_stale(folder, names)
                    dirs.clear()
                    continue
                for name in names:
                    path = os.path.join(folder, name)
                    try:
                        st = os.stat(path)
                    except OSError:
                        continue
                    found.append((st.st_mtime, os.path.relpath(path, self.root), st.st_size))
            found.sort()
            self._index = OrderedDict((key, size) for _, key, size in found)
            self._total = sum(self._index.values())
        return self._index

    @staticmethod
    def _clear_stale(folder: str, names: list[str]) -> None:
        cutoff = time.time() - STALE_TMP
        for name in names:
            path = os.path.join(folder, name)
            try:
                if os.stat(path).st_mtime < cutoff:
                    os.unlink(path)
            except OSError:
                pass

    def path(self, key: str) -> str | None:
        """The local copy of ``key``, or None."""
        path = self._path(key)
        if not os.path.isfile(path):
            return None
        with self._lock:
            index = self._loaded()
            if key in index:
                index.move_to_end(key)
        return path

    def filling(self, key: str, size: int) -> _Filling | None:
        """Somewhere to write ``key``'s ``size`` bytes as they are read, or None when it is not
        to be kept (too large for the budget, or the disk near full)."""
        if size > self.item_limit:
            return None
        tmp = os.path.join(self.root, TMP)
        try:
            os.makedirs(tmp, exist_ok=True)
            if shutil.disk_usage(tmp).free - size < self.min_free:
                return None
            fd, name = tempfile.mkstemp(dir=tmp, prefix=f"{os.getpid()}-")
        except OSError as exc:
            log.warning("cache %s: cannot write a copy: %s", self.root, exc)
            return None
        return _Filling(self, key, size, os.fdopen(fd, "wb"), name)

    def _keep(self, key: str, size: int, name: str) -> None:
        dest = self._path(key)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        os.replace(name, dest)
        with self._lock:
            index = self._loaded()
            self._total += size - index.pop(key, 0)
            index[key] = size
            over = []
            while self._total > self.budget and len(index) > 1:
                old, old_size = index.popitem(last=False)
                self._total -= old_size
                over.append(old)
        self._unlink(over)

    def remove(self, keys: Iterable[str]) -> None:
        """Drop the copies of ``keys`` (those not here are no error)."""
        keys = [key for key in keys if layout.is_safe(key)]
        with self._lock:
            if self._index is not None:
                for key in keys:
                    self._total -= self._index.pop(key, 0)
        self._unlink(keys)

    def _unlink(self, keys: Iterable[str]) -> None:
        for key in keys:
            try:
                os.unlink(self._path(key))
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("cache %s: could not remove %s: %s", self.root, key, exc)

    def keys(self) -> list[str]:
        """Every key with a copy here (as this process knows them)."""
        with self._lock:
            return list(self._loaded())


class _Filling:
    """A copy being written; ``close`` keeps it when exactly ``size`` bytes came, else drops it."""

    def __init__(self, cache: DiskCache, key: str, size: int, file: IO[bytes], name: str) -> None:
        self.cache, self.key, self.size = cache, key, size
        self.file, self.name = file, name
        self.written = 0
        self.failed = False
        self.closed = False

    def write(self, chunk: bytes) -> None:
        if self.failed:
            return
        try:
            self.file.write(chunk)
            self.written += len(chunk)
        except OSError:  # a full disk: the reader goes on, the copy is dropped
            self.failed = True

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            if not self.failed and self.written == self.size:
                self.file.flush()
                os.fsync(self.file.fileno())
                self.file.close()
                self.cache._keep(self.key, self.size, self.name)
                return
        except OSError as exc:
            log.warning("cache %s: could not keep %s: %s", self.cache.root, self.key, exc)
        self.file.close()
        try:
            os.unlink(self.name)
        except OSError:
            pass


class Tee:
    """A stream of a remote file that also writes what is read into the cache's copy; closing it
    keeps the copy only when the whole file went through."""

    def __init__(self, stream: IO[bytes], filling: _Filling) -> None:
        self.stream = stream
        self.filling = filling

    def read(self, size: int = -1) -> bytes:
        chunk = self.stream.read(size)
        if chunk:
            self.filling.write(chunk)
        return chunk

    def close(self) -> None:
        filling = self.filling
        if filling.closed:
            return
        try:
            if filling.written == filling.size and not filling.failed:
                # past the end: the stream checks its length and checksum there
                if self.stream.read(1):
                    filling.failed = True
        except Exception:  # a stream that fails its own checks: no copy of it is kept
            filling.failed = True
        try:
            self.stream.close()
        finally:
            filling.close()

    def __enter__(self) -> Tee:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
