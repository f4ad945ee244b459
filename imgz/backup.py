"""``backup DEST``, ``backup --verify DEST`` and ``restore SRC``: a copy of an SQLite database
and its stored files, taken while the server runs, and the way back.

A backup is a folder: ``imgz.db`` (the database at one moment, copied with SQLite's online
backup API), ``images/`` (every file a row of that copy names, and no other, laid out as the
local store lays them out), ``manifest.jsonl`` (one line per file: path, size, SHA-256) and
``backup.json`` (format, date, schema version, counts and the manifest's own SHA-256). The files are listed from the copy of the database, not
from the disk, so the two agree: files of uploads stored after the copy are left out, and files
of uploads deleted or expired while the backup runs are kept for it by the lease (lease.py).
The folder is made under a temporary name beside DEST and renamed at the end: a DEST that
exists is a whole backup.

Only SQLite and the local disk: PostgreSQL and buckets have their own tools (README, Backups).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, Callable, Iterable

from . import db, disk, layout, lease, scratch
from .store import for_data
from .config import Config

FORMAT = "imgz backup"
VERSION = 1
HEADER = "backup.json"
MANIFEST = "manifest.jsonl"
DATABASE = "imgz.db"
BLOCK = 1024 * 1024
COPIERS = 4  # files copied at once: reading, hashing and writing overlap


class BackupError(Exception):
    """A backup or restore that cannot be made, with the one line that says why."""


@dataclass(frozen=True)
class Entry:
    path: str      # relative to the backup's folder: imgz.db or images/<key>
    size: int
    sha256: str


@dataclass(frozen=True)
class Taken:
    files: int
    bytes: int
    missing: list[str]   # keys a row of the copy names that were in neither place


def unsupported(cfg: Config) -> str | None:
    """Why this install's data cannot be backed up by imgz (one line), or None."""
    engines = [name for name, used in (("PostgreSQL", bool(cfg.database_url)),
                                       ("S3", cfg.storage == "s3")) if used]
    if not engines:
        return None
    tools = [tool for tool, used in (("pg_dump and pg_restore", bool(cfg.database_url)),
                                     ("the bucket's versioning or replication (or rclone sync)",
                                      cfg.storage == "s3")) if used]
    return (f"backup copies an SQLite file and the local disk; this install keeps its data in "
            f"{' and '.join(engines)}: back it up with {' and '.join(tools)} (README, Backups)")


def _empty_target(dest: Path) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BackupError(f"{dest} exists and is not an empty folder")


def take(cfg: Config, dest: Path, *, link: bool = False,
         listed: Callable[[], None] | None = None) -> Taken:
    """Back up the data directory of ``cfg`` into the new folder ``dest``.

    ``link`` hard-links the stored files instead of copying them (DEST on the data directory's
    filesystem): quick, and safe because stored files are never changed in place, but no help
    against losing that disk. ``listed`` is called once the files to copy are known, before any
    is copied (a test deletes uploads there).
    """
    reason = unsupported(cfg)
    if reason:
        raise BackupError(reason)
    dest = Path(os.path.abspath(dest))
    _empty_target(dest)
    if not dest.parent.is_dir():
        raise BackupError(f"{dest.parent} is not a folder")
    with scratch.exclusive(cfg.data_dir, lease.RUNNING) as alone:
        if not alone:
            raise BackupError(f"another backup of {cfg.data} is running")
        work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
        try:
            taken = _take(cfg, work, link, listed)
            _empty_target(dest)
            os.rename(work, dest)  # over an empty folder too
            disk.fsync_path(dest.parent)
            return taken
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise


def _take(cfg: Config, work: Path, link: bool, listed: Callable[[], None] | None) -> Taken:
    images = Path(for_data(cfg.data_dir).root)  # the local store's, laid out again in the copy
    copies = Path(for_data(work).root)
    with lease.take(cfg.data_dir) as held:
        db.snapshot(cfg.db, work / DATABASE)
        conn = db.connect(work / DATABASE)
        try:
            schema = db.schema_version_of(conn)
            keys = sorted(db.all_file_paths(conn))
            # their bytes are not in the backup: their clients start again
            db.forget_resumables(conn)
        finally:
            conn.close()
        entries = [hashed(work / DATABASE, DATABASE)]
        if listed is not None:
            listed()
        for folder in sorted({layout.folder_of(key) for key in keys}):
            (copies / folder).mkdir(parents=True, exist_ok=True)

        def one(key: str) -> Entry | None:
            places = held.places(key, str(images / key))
            return _place(places, copies / key, layout.in_data_dir(key), link)

        with ThreadPoolExecutor(COPIERS) as pool:
            copied = list(pool.map(one, keys))
    missing = [key for key, entry in zip(keys, copied) if entry is None]
    entries += [entry for entry in copied if entry is not None]
    _write_manifest(work, entries, schema)
    for folder in {layout.folder_of(key) for key in keys}:
        disk.fsync_path(copies / folder)
    disk.fsync_path(work)
    return Taken(len(entries), sum(entry.size for entry in entries), missing)


def _place(places: Iterable[str], target: Path, name: str, link: bool) -> Entry | None:
    """Copy (or link) the first of ``places`` that exists to ``target``, hashed on the way."""
    for place in places:
        try:
            if link:
                os.link(place, target)
                return hashed(target, name)
            with open(place, "rb") as src:
                return copy_file(src, target, name)
        except FileNotFoundError:
            continue
        except OSError as exc:
            if link and exc.errno == 18:  # EXDEV
                raise BackupError("--link needs the backup on the data directory's filesystem") from None
            raise
    return None


def copy_file(src: BinaryIO, target: Path, name: str) -> Entry:
    """Write what ``src`` holds to the new file ``target``, durably; its entry."""
    with open(target, "xb") as out:
        entry = _read(src, name, out)
        out.flush()
        os.fsync(out.fileno())
    return entry


def hashed(path: Path, name: str) -> Entry:
    with open(path, "rb") as src:
        return _read(src, name)


def _read(src: BinaryIO, name: str, out: BinaryIO | None = None) -> Entry:
    """Read ``src`` to its end (written on to ``out`` when given); its entry as ``name``."""
    digest = hashlib.sha256()
    size = 0
    buffer = bytearray(BLOCK)
    view = memoryview(buffer)
    while count := src.readinto(buffer):
        digest.update(view[:count])
        if out is not None:
            out.write(view[:count])
        size += count
    return Entry(name, size, digest.hexdigest())


def _write_manifest(work: Path, entries: list[Entry], schema: int) -> None:
    lines = "".join(json.dumps({"path": e.path, "size": e.size, "sha256": e.sha256}) + "\n"
                    for e in entries).encode()
    header = {"format": FORMAT, "version": VERSION,
              "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "schema": schema, "files": len(entries), "bytes": sum(e.size for e in entries),
              "manifest_sha256": hashlib.sha256(lines).hexdigest()}
    for name, content in ((MANIFEST, lines), (HEADER, (json.dumps(header, indent=1) + "\n").encode())):
        with open(work / name, "xb") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())


# -- reading a backup -----------------------------------------------------------------------------

def read(root: Path) -> tuple[dict, list[Entry]]:
    """The header and entries of the backup in ``root``; BackupError when it is not a whole
    backup of this format (a manifest that does not match its header's checksum included)."""
    try:
        header = json.loads((root / HEADER).read_text())
        lines = (root / MANIFEST).read_bytes()
    except FileNotFoundError as exc:
        raise BackupError(f"{root} is not an imgz backup: no {Path(exc.filename).name}") from None
    except (OSError, ValueError) as exc:
        raise BackupError(f"{root / HEADER} cannot be read: {exc}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise BackupError(f"{root} is not an imgz backup")
    if header.get("version") != VERSION:
        raise BackupError(f"{root} is a backup of format {header.get('version')}, not {VERSION}")
    if hashlib.sha256(lines).hexdigest() != header.get("manifest_sha256"):
        raise BackupError(f"{root / MANIFEST} does not match its checksum in {HEADER}")
    entries: list[Entry] = []
    for line in lines.decode().splitlines():
        item = json.loads(line)
        entry = Entry(str(item["path"]), int(item["size"]), str(item["sha256"]))
        if entry.path != DATABASE and key_of(entry.path) is None:
            raise BackupError(f"{root / MANIFEST} names an unsafe path {entry.path!r}")
        entries.append(entry)
    if not entries or entries[0].path != DATABASE or len(entries) != header.get("files"):
        raise BackupError(f"{root / MANIFEST} is incomplete")
    return header, entries


def key_of(path: str) -> str | None:
    """The store key of a manifest path ``images/<key>``; None for any other path, or an
    unsafe one."""
    key = path.partition("/")[2]
    return key if layout.is_safe(key) and layout.in_data_dir(key) == path else None


def verify(root: Path) -> list[tuple[str, str]]:
    """Read every file of the backup in ``root`` again: (problem, path) for each file whose
    size or checksum differs ("changed"), that is missing, or that no line names ("unexpected")."""
    _, entries = read(root)
    named = {entry.path for entry in entries} | {HEADER, MANIFEST}

    def one(entry: Entry) -> tuple[str, str] | None:
        try:
            found = hashed(root / entry.path, entry.path)
        except FileNotFoundError:
            return ("missing", entry.path)
        return None if found == entry else ("changed", entry.path)

    with ThreadPoolExecutor(COPIERS) as pool:
        problems = [problem for problem in pool.map(one, entries) if problem]
    for here, _, files in os.walk(root):
        for name in files:
            path = os.path.relpath(os.path.join(here, name), root)
            if path not in named:
                problems.append(("unexpected", path))
    return problems
