"""Small helpers for files on this machine's disk: fsync, a full disk as a 507, md5 of a file."""
from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path
from typing import NoReturn

from .errors import NoStorage

CHUNK = 1 << 20
_FULL_DISK = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def raise_storage_error(exc: OSError) -> NoReturn:
    """Raise NoStorage for a full disk (ENOSPC, EDQUOT, EFBIG), else the error itself."""
    if exc.errno in _FULL_DISK:
        raise NoStorage() from exc
    raise exc


def fsync_path(path: str | Path) -> None:
    """fsync a file, or a directory so the names made in it survive a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def md5_file(path: str | Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def process_umask() -> int:
    """The process's umask, read without changing it (Linux shows it in /proc since 4.7); the
    fallback sets it back at once."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
