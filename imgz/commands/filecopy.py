"""Stored files copied from one store to another, streamed and checked by checksum.

A file goes from the source's stream to a scratch file (an MD5 taken on the way), into the
target with ``put``, and is read back from the target: a different MD5 stops the copy
(``Mismatch``) and takes the bad copy away. A key the target has already is kept when its size
is the source's (and, when asked, its MD5): a copy that was interrupted is never partial, puts
being atomic, but it may not have been read back yet.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from pathlib import Path

from ..store import Store

CHUNK = 1 << 20


class Mismatch(Exception):
    """The target gave back other bytes than the source's for a key."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def md5_of(store: Store, key: str) -> str:
    digest = hashlib.md5()
    with store.open(key) as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class Copier:
    """Copies keys from ``source`` to ``target`` through files made in ``scratch`` (a folder on
    the target's file system when the target is a local store: a put there links the file).
    Safe to use from several threads; counts what it copied, checked and kept."""

    def __init__(self, source: Store, target: Store, scratch: Path) -> None:
        self.source = source
        self.target = target
        self.scratch = scratch
        self.copied = 0
        self.bytes = 0
        self.kept = 0
        self.checked = 0
        self._lock = threading.Lock()

    def ensure(self, key: str, checksum: bool) -> None:
        """Make the target hold the source's file under ``key``. FileNotFoundError when the
        source has no such file, Mismatch when the copy read back differs."""
        have = self.target.stat(key)
        if have is not None:
            if not self._differs(key, have.size, checksum):
                with self._lock:
                    self.kept += 1
                return
            self.target.delete([key])  # other bytes (a variant made again): the source's win
        self._copy(key)

    def _differs(self, key: str, size: int, checksum: bool) -> bool:
        theirs = self.source.stat(key)
        if theirs is None:
            raise FileNotFoundError(key)
        if theirs.size != size:
            return True
        if not checksum:
            return False
        with self._lock:
            self.checked += 1
        return md5_of(self.source, key) != md5_of(self.target, key)

    def _copy(self, key: str) -> None:
        fd, name = tempfile.mkstemp(prefix="copy-", dir=self.scratch)
        digest = hashlib.md5()
        size = 0
        try:
            with os.fdopen(fd, "wb") as out, self.source.open(key) as stream:
                while chunk := stream.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            self.target.put(key, Path(name))
        finally:
            Path(name).unlink(missing_ok=True)  # a put consumes it; after a failure it is left
        if md5_of(self.target, key) != digest.hexdigest():
            self.target.delete([key])
            raise Mismatch(key)
        with self._lock:
            self.copied += 1
            self.bytes += size
