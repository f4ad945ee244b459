"""A process's scratch folder: ``<data>/tmp/<instance>/``, held under a lock while the process lives.

Every file a process writes before it is placed (upload spools, work dirs, waitress's body spool)
goes into its own folder, so that several processes can share one data directory: a process
cleans only the folders whose lock is free, that is whose process is gone. The lock is an
``flock`` on a lock file, which the kernel releases when the process dies however it
dies. The lock file sits beside the folder, ``<instance>.lock``, so that the folder holds only
the process's work. Creating a folder and cleaning take ``<data>/tmp/.lock`` for a moment, so a
cleaner never sees a folder whose lock is not yet taken.

A folder is made on first use: commands that only read never touch ``tmp``. Uploads are spooled
into it (spool.py) and media work is done in work folders inside it; finished files leave it for
the store.
"""
from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Iterator

LOCK = ".lock"
_PREFIX = "p"
_made: dict[Path, "Scratch"] = {}
_made_lock = threading.Lock()


def root(data: Path) -> Path:
    return data / "tmp"


@contextlib.contextmanager
def _tmp_locked(tmp: Path) -> Iterator[None]:
    """Hold ``<data>/tmp/.lock``: folders are made and cleaned one process at a time."""
    fd = os.open(tmp / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


class Scratch:
    """One process's folder under ``<data>/tmp``; ``folder()`` makes and locks it on first use."""

    def __init__(self, data: Path) -> None:
        self.root = root(data)
        self._path: Path | None = None
        self._fd: int | None = None
        self._lock = threading.Lock()

    def folder(self) -> Path:
        with self._lock:
            if self._path is None:
                self.root.mkdir(parents=True, exist_ok=True)
                with _tmp_locked(self.root):
                    path = Path(tempfile.mkdtemp(prefix=_PREFIX, dir=self.root))
                    fd = os.open(_lock_file(path), os.O_RDWR | os.O_CREAT, 0o600)
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._path, self._fd = path, fd
            return self._path

    def close(self) -> None:
        """Remove the folder and drop its lock; the process no longer writes to it."""
        with self._lock:
            if self._path is not None:
                shutil.rmtree(self._path, ignore_errors=True)
                with contextlib.suppress(OSError):
                    os.unlink(_lock_file(self._path))
            if self._fd is not None:
                os.close(self._fd)
            self._path = self._fd = None


def of(data: Path) -> Scratch:
    """This process's scratch area for a data directory (one per directory, made once)."""
    key = Path(os.path.abspath(data))
    with _made_lock:
        scratch = _made.get(key)
        if scratch is None:
            scratch = _made[key] = Scratch(key)
        return scratch


def folder(data: Path) -> Path:
    """This process's scratch folder under ``<data>/tmp``, made and locked on first use."""
    return of(data).folder()


def new_work_dir(data: Path) -> Path:
    """A fresh work folder for one upload's media work, in this process's scratch folder."""
    return Path(tempfile.mkdtemp(prefix="work-", dir=folder(data)))


def remove_work_dir(path: Path) -> None:
    """Remove a work dir; after a stored upload it is already empty, so rmdir is enough."""
    try:
        os.rmdir(path)
    except OSError:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def exclusive(data: Path, name: str) -> Iterator[bool]:
    """Try to take the lock ``name`` that the processes sharing a data directory take in turn
    (``<data>/<name>.lock``, an ``flock``); yields whether it was taken, never waits."""
    with open(data / f"{name}{LOCK}", "a+b") as lock_file:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def close_all() -> None:
    with _made_lock:
        made = list(_made.values())
    for scratch in made:
        scratch.close()


atexit.register(close_all)


def _lock_file(folder: Path) -> Path:
    return folder.with_name(folder.name + LOCK)


def _held(folder: Path) -> bool:
    """Whether a live process holds this folder's lock (a folder without a lock file is nobody's)."""
    try:
        fd = os.open(_lock_file(folder), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def clean(data: Path) -> int:
    """Remove the folders under ``<data>/tmp`` that no live process holds, and loose files left
    there by older versions; returns how many entries went. A live process's folder stays."""
    tmp = root(data)
    if not tmp.is_dir():
        return 0
    removed = 0
    with _tmp_locked(tmp):
        entries = list(os.scandir(tmp))
        folders = {entry.name for entry in entries if entry.is_dir(follow_symlinks=False)}
        for entry in entries:
            if entry.name == LOCK:
                continue
            try:
                if entry.name in folders:
                    if _held(Path(entry.path)):
                        continue
                    shutil.rmtree(entry.path, ignore_errors=True)
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(_lock_file(Path(entry.path)))
                elif entry.name.endswith(LOCK) and entry.name[:-len(LOCK)] in folders:
                    continue  # its folder's turn decides
                else:
                    os.unlink(entry.path)
                removed += 1
            except FileNotFoundError:
                pass
    return removed
