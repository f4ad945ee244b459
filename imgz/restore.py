"""``restore SRC``: a backup (imgz/backup.py) back into an empty data directory, every file
checked against the manifest as it is copied.

The stored files come first; the database is copied under a temporary name and renamed into
place last, so a data directory with a database is a whole restore. A restore that fails
removes what it wrote.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import db, disk, layout
from .backup import COPIERS, DATABASE, BackupError, Entry, copy_file, key_of, read, unsupported
from .config import Config
from .store import for_data


def restore(src: Path, cfg: Config) -> tuple[int, int]:
    """Copy the backup in ``src`` into the data directory of ``cfg``, which must be empty (or
    not yet exist), as must its database file; return (files, bytes)."""
    reason = unsupported(cfg)
    if reason:
        raise BackupError(reason.replace("backup copies", "restore writes", 1))
    header, entries = read(src)
    if int(header.get("schema") or 0) > db.SCHEMA_VERSION:
        raise BackupError(f"the backup's schema (version {header.get('schema')}) is newer than this "
                          f"imgz knows (version {db.SCHEMA_VERSION})")
    data, database = Path(cfg.data_dir), Path(cfg.db)
    if data.exists() and (not data.is_dir() or any(data.iterdir())):
        raise BackupError(f"{data} is not empty: restore only into an empty data directory")
    if database.exists():
        raise BackupError(f"{database} exists: restore only where there is no database yet")
    made_data = not data.exists()
    data.mkdir(parents=True, exist_ok=True)
    database.parent.mkdir(parents=True, exist_ok=True)
    images = Path(for_data(data).root)
    temp: Path | None = None
    try:
        files = [entry for entry in entries if entry.path != DATABASE]
        folders = {layout.folder_of(key_of(entry.path) or "") for entry in files}
        for folder in sorted(folders):
            (images / folder).mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(COPIERS) as pool:
            list(pool.map(lambda entry: _checked(src, entry, images / (key_of(entry.path) or "")),
                          files))
        for folder in folders:
            disk.fsync_path(images / folder)
        fd, name = tempfile.mkstemp(prefix=f".{database.name}.", suffix=".restoring",
                                    dir=database.parent)
        os.close(fd)
        temp = Path(name)
        temp.unlink()
        _checked(src, entries[0], temp)
        os.rename(temp, database)
        disk.fsync_path(database.parent)
        temp = None
    except BaseException:
        if temp is not None:
            temp.unlink(missing_ok=True)
        shutil.rmtree(images, ignore_errors=True)
        if made_data:
            shutil.rmtree(data, ignore_errors=True)
        raise
    return len(entries), sum(entry.size for entry in entries)


def _checked(src: Path, entry: Entry, target: Path) -> None:
    """Copy one file of the backup; BackupError when it is missing or not what the manifest says."""
    try:
        with open(src / entry.path, "rb") as file:
            found = copy_file(file, target, entry.path)
    except FileNotFoundError:
        raise BackupError(f"{entry.path} is missing from the backup") from None
    if found != entry:
        raise BackupError(f"{entry.path} does not match its checksum in the manifest")
