"""The backup's lease: while a backup runs, stored files that are deleted are moved aside, not
removed, so that the backup still finds every file a row of its snapshot names.

The lease is an ``flock`` on ``<data>/backup.lease``, whose content is the running backup's id.
The kernel drops the lock when the backup's process ends however it ends, so a lease never
outlives its backup: a stale lease file is simply not held. A deleting process (any process on
this host sharing the data directory) asks ``holder`` before it removes files; while a backup
holds the lease, ``retire`` moves each file into ``<data>/backup-hold/<id>/<key>`` (a rename, on
the same filesystem), where the backup reads what it no longer finds in its place. The backup
removes its hold folder when it ends; a file moved in after that is removed by its mover, which
checks the lease again after the move; what a killed backup left is removed by the next one.

Why no file the snapshot names can be missed: a deletion removes the row first and the files
after (``Service.delete``), so a file unlinked before the lease was taken belongs to a row
already gone from any later snapshot. The expiry sweep removes files inside its write
transaction, before its commit: the backup waits for every write transaction begun before the
lease to end (``db.snapshot``) before it copies the database.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
from pathlib import Path
from typing import Iterator

LEASE = "backup.lease"
HOLD = "backup-hold"
RUNNING = "backup"  # the name of the lock that lets one backup run at a time (scratch.exclusive)
_ID_LENGTH = 32


def holder(data: str | Path) -> str | None:
    """The id of the backup holding the lease on this data directory, or None."""
    try:
        fd = os.open(os.path.join(data, LEASE), os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            lease_id = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
            # A backup that has just taken the lock and not yet written its id has not yet
            # copied the database: files deleted now belong to rows its copy will not have.
            return lease_id if len(lease_id) == _ID_LENGTH else None
        return None  # no backup: closing drops the shared lock taken to find out
    finally:
        os.close(fd)


def held_path(data: str | Path, lease_id: str, key: str) -> Path:
    """Where a file deleted during the backup ``lease_id`` waits for it."""
    return Path(data) / HOLD / lease_id / key


def retire(data: str | Path, lease_id: str, key: str, path: str) -> None:
    """Move the stored file ``path`` (key ``key``) into the hold of the backup ``lease_id``.

    FileNotFoundError when there is no such file. When the lease has ended meanwhile, the file
    is removed after all: its backup is over, and no other one waits in that folder.
    """
    target = held_path(data, lease_id, key)
    try:
        os.rename(path, target)
    except FileNotFoundError:
        if not os.path.exists(path):
            raise
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(path, target)
    if holder(data) != lease_id:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(target)


class Lease:
    """A backup's hold on a data directory (``take``): its id and its hold folder."""

    def __init__(self, data: Path, lease_id: str) -> None:
        self.data = data
        self.id = lease_id

    def places(self, key: str, path: str) -> tuple[str, str]:
        """Where to look for a stored file, in turn: its place ``path``, then the hold. Files
        only ever move from the first to the second, so one that is in neither is gone."""
        return path, str(held_path(self.data, self.id, key))


@contextlib.contextmanager
def take(data: Path) -> Iterator[Lease]:
    """Hold the lease for the block. Waits for a deleting process that is looking at the lease
    at this moment; the caller makes sure no other backup of the directory runs."""
    hold = data / HOLD
    if hold.is_dir():  # what a backup that was killed left behind
        shutil.rmtree(hold, ignore_errors=True)
    lease_id = secrets.token_hex(_ID_LENGTH // 2)
    fd = os.open(data / LEASE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, lease_id.encode("ascii"), 0)
        (hold / lease_id).mkdir(parents=True, exist_ok=True)
        try:
            yield Lease(data, lease_id)
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
            # after the lock is dropped: a file moved in later is removed by its mover
            shutil.rmtree(hold / lease_id, ignore_errors=True)
    finally:
        os.close(fd)
