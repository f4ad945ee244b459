"""SQLite: connections, migrations and every SQL statement imgz runs, behind named functions.

Each thread keeps its own connection (WAL mode, a busy timeout, foreign keys on). Dates are
stored as whole UTC Unix seconds. Only this module writes SQL.
"""
from __future__ import annotations

import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from . import params
from .records import Upload

BUSY_TIMEOUT_MS = 10_000

_SCHEMA = (
    """
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        is_admin INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE api_keys (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        hash TEXT NOT NULL UNIQUE,
        label TEXT NOT NULL DEFAULT '',
        created_at INTEGER NOT NULL,
        last_used_at INTEGER,
        revoked_at INTEGER
    );
    CREATE TABLE albums (
        id INTEGER PRIMARY KEY,
        public_id TEXT NOT NULL UNIQUE,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE categories (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE
    );
    CREATE TABLE uploads (
        id INTEGER PRIMARY KEY,
        public_id TEXT NOT NULL UNIQUE,
        user_id INTEGER REFERENCES users(id) ON DELETE SET NULL,
        album_id INTEGER REFERENCES albums(id) ON DELETE SET NULL,
        category_id INTEGER REFERENCES categories(id) ON DELETE SET NULL,
        kind TEXT NOT NULL,
        folder TEXT NOT NULL,
        name TEXT NOT NULL,
        extension TEXT NOT NULL,
        mime TEXT NOT NULL,
        size INTEGER NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        duration INTEGER NOT NULL DEFAULT 0,
        is_animated INTEGER NOT NULL DEFAULT 0,
        is_360 INTEGER NOT NULL DEFAULT 0,
        nsfw INTEGER NOT NULL DEFAULT 0,
        title TEXT NOT NULL,
        description TEXT,
        original_filename TEXT NOT NULL,
        original_exifdata TEXT,
        checksum TEXT NOT NULL,
        source_checksum TEXT,
        created_at INTEGER NOT NULL,
        expires_at INTEGER,
        thumb_size INTEGER NOT NULL DEFAULT 0,
        thumb_width INTEGER NOT NULL DEFAULT 0,
        thumb_height INTEGER NOT NULL DEFAULT 0,
        medium_size INTEGER NOT NULL DEFAULT 0,
        medium_width INTEGER NOT NULL DEFAULT 0,
        medium_height INTEGER NOT NULL DEFAULT 0,
        frame_size INTEGER NOT NULL DEFAULT 0,
        frame_width INTEGER NOT NULL DEFAULT 0,
        frame_height INTEGER NOT NULL DEFAULT 0,
        views INTEGER NOT NULL DEFAULT 0,
        likes INTEGER NOT NULL DEFAULT 0,
        delete_hash TEXT NOT NULL
    );
    CREATE INDEX uploads_expires_at ON uploads(expires_at) WHERE expires_at IS NOT NULL;
    CREATE INDEX uploads_user ON uploads(user_id);
    -- every file of every upload, for file GETs (one indexed lookup)
    CREATE TABLE files (
        path TEXT PRIMARY KEY,
        upload_id INTEGER NOT NULL REFERENCES uploads(id) ON DELETE CASCADE,
        mime TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX files_upload ON files(upload_id);
    -- stored names ('YYYY/MM/DD/name'), kept after deletion so a name is never handed out twice
    CREATE TABLE names (
        stem TEXT PRIMARY KEY
    ) WITHOUT ROWID;
    CREATE TABLE tags (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        url_key TEXT NOT NULL UNIQUE
    );
    CREATE TABLE upload_tags (
        upload_id INTEGER NOT NULL REFERENCES uploads(id) ON DELETE CASCADE,
        tag_id INTEGER NOT NULL REFERENCES tags(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        PRIMARY KEY (upload_id, tag_id)
    ) WITHOUT ROWID;
    CREATE INDEX upload_tags_tag ON upload_tags(tag_id);
    """
)


def _merge_tags(conn: sqlite3.Connection) -> None:
    """Tags stored as cleaned today (NFKC names, NFKC case-folded keys), duplicates merged.

    Tags once differed by their Unicode form alone ('café' in NFC and NFD, 'ＡＢＣ' and 'abc'), each
    with its own row and page. The oldest row of each new key stays and takes the others' uploads;
    an upload that carried several keeps one link. ASCII tags keep their key, so their URLs stay.
    A stored name today's rules would refuse keeps its text and gets the new key.
    """
    keep: dict[str, int] = {}
    renamed: list[tuple[str, str, int]] = []
    for tag_id, name, url_key in conn.execute("SELECT id, name, url_key FROM tags ORDER BY id").fetchall():
        new_name = params.clean_tag(name) or name
        new_key = params.tag_key(new_name)
        survivor = keep.setdefault(new_key, tag_id)
        if survivor != tag_id:
            conn.execute("INSERT OR IGNORE INTO upload_tags (upload_id, tag_id, position)"
                         " SELECT upload_id, ?, position FROM upload_tags WHERE tag_id = ?",
                         (survivor, tag_id))
            conn.execute("DELETE FROM upload_tags WHERE tag_id = ?", (tag_id,))
            conn.execute("DELETE FROM tags WHERE id = ?", (tag_id,))
        elif (new_name, new_key) != (name, url_key):
            renamed.append((new_name, new_key, tag_id))
    # Keys are unique: park the renamed ones first ('#' is in no tag), so no new key meets an old
    # one that another row still holds.
    conn.executemany("UPDATE tags SET url_key = '#' || id WHERE id = ?", [(t,) for _, _, t in renamed])
    conn.executemany("UPDATE tags SET name = ?, url_key = ? WHERE id = ?", renamed)


# Each step is an SQL script or a function run in one transaction; PRAGMA user_version counts them.
MIGRATIONS: tuple[str | Callable[[sqlite3.Connection], None], ...] = (
    _SCHEMA,
    _merge_tags,
)


def to_ts(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp())


def from_ts(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, timezone.utc)


def connect(path: str | Path) -> sqlite3.Connection:
    """Open a connection in autocommit mode; transactions are opened explicitly with ``transaction``."""
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                           check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


class LocalConnections:
    """One connection per thread for one database file, opened on first use."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def get(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def close_all(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()


class transaction:
    """``with transaction(conn):`` runs the block in BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the schema up to date, tracked by PRAGMA user_version."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
        if isinstance(step, str):
            conn.executescript("BEGIN IMMEDIATE;\n" + step + f"\nPRAGMA user_version = {number};\nCOMMIT;")
            continue
        with transaction(conn):
            # another process starting on the same database may have run it meanwhile
            if conn.execute("PRAGMA user_version").fetchone()[0] < number:
                step(conn)
                conn.execute(f"PRAGMA user_version = {number}")


# -- users ---------------------------------------------------------------------------------------

def add_user(conn: sqlite3.Connection, name: str, is_admin: bool, now: datetime) -> int:
    cur = conn.execute("INSERT INTO users (name, is_admin, created_at) VALUES (?, ?, ?)",
                       (name, int(is_admin), to_ts(now)))
    return int(cur.lastrowid)


def get_user_by_name(conn: sqlite3.Connection, name: str) -> sqlite3.Row | None:
    return conn.execute("SELECT * FROM users WHERE name = ?", (name,)).fetchone()


def get_user(conn: sqlite3.Connection, user_id: int) -> sqlite3.Row | None:
    return conn.execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone()


def list_users(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    return conn.execute(
        "SELECT u.*, (SELECT COUNT(*) FROM uploads WHERE user_id = u.id) AS uploads,"
        " (SELECT COUNT(*) FROM api_keys WHERE user_id = u.id AND revoked_at IS NULL) AS keys"
        " FROM users u ORDER BY u.id").fetchall()


# -- API keys ------------------------------------------------------------------------------------

def add_key(conn: sqlite3.Connection, user_id: int, key_hash: str, label: str, now: datetime) -> int:
    cur = conn.execute("INSERT INTO api_keys (user_id, hash, label, created_at) VALUES (?, ?, ?, ?)",
                       (user_id, key_hash, label, to_ts(now)))
    return int(cur.lastrowid)


def find_key(conn: sqlite3.Connection, key_hash: str) -> sqlite3.Row | None:
    """The live key with this hash and its user, or None (unknown or revoked)."""
    return conn.execute(
        "SELECT k.id AS key_id, k.user_id, k.last_used_at, u.name AS user_name, u.is_admin"
        " FROM api_keys k JOIN users u ON u.id = k.user_id"
        " WHERE k.hash = ? AND k.revoked_at IS NULL", (key_hash,)).fetchone()


def touch_key(conn: sqlite3.Connection, key_id: int, now: datetime) -> None:
    conn.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (to_ts(now), key_id))


def list_keys(conn: sqlite3.Connection, user_id: int | None = None) -> list[sqlite3.Row]:
    sql = ("SELECT k.id, k.label, k.created_at, k.last_used_at, k.revoked_at, u.name AS user_name"
           " FROM api_keys k JOIN users u ON u.id = k.user_id")
    if user_id is None:
        return conn.execute(sql + " ORDER BY k.id").fetchall()
    return conn.execute(sql + " WHERE k.user_id = ? ORDER BY k.id", (user_id,)).fetchall()


def revoke_key(conn: sqlite3.Connection, key_id: int, now: datetime) -> bool:
    cur = conn.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                       (to_ts(now), key_id))
    return cur.rowcount == 1


def count_keys(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT COUNT(*) FROM api_keys").fetchone()[0]


# -- names and files -----------------------------------------------------------------------------

def reserve_name(conn: sqlite3.Connection, stem: str) -> bool:
    """Claim 'YYYY/MM/DD/name' for one upload; False when another upload has (or had) it."""
    cur = conn.execute("INSERT OR IGNORE INTO names (stem) VALUES (?)", (stem,))
    return cur.rowcount == 1


def release_name(conn: sqlite3.Connection, stem: str) -> None:
    conn.execute("DELETE FROM names WHERE stem = ?", (stem,))


def public_id_taken(conn: sqlite3.Connection, public_id: str) -> bool:
    return conn.execute("SELECT 1 FROM uploads WHERE public_id = ?", (public_id,)).fetchone() is not None


def file_lookup(conn: sqlite3.Connection, path: str) -> sqlite3.Row | None:
    """The mime type and expiry of a stored file by its path under images/ (one indexed lookup)."""
    return conn.execute(
        "SELECT f.mime, u.expires_at FROM files f JOIN uploads u ON u.id = f.upload_id"
        " WHERE f.path = ?", (path,)).fetchone()


# -- uploads -------------------------------------------------------------------------------------

_UPLOAD_COLUMNS = (
    "public_id", "user_id", "album_id", "category_id", "kind", "folder", "name", "extension",
    "mime", "size", "width", "height", "duration", "is_animated", "is_360", "nsfw", "title",
    "description", "original_filename", "original_exifdata", "checksum", "source_checksum",
    "created_at", "expires_at", "thumb_size", "thumb_width", "thumb_height", "medium_size",
    "medium_width", "medium_height", "frame_size", "frame_width", "frame_height", "delete_hash",
)


def insert_upload(conn: sqlite3.Connection, values: dict[str, Any], files: Iterable[tuple[str, str]],
                  tags: Iterable[tuple[str, str]]) -> int:
    """Insert an upload row, its file paths (path, mime) and tags (name, url_key); return its id.

    Run it inside ``transaction``; datetimes in values are converted to Unix seconds.
    """
    row = {k: (to_ts(v) if isinstance(v, datetime) else v) for k, v in values.items()}
    row = {k: (int(v) if isinstance(v, bool) else v) for k, v in row.items()}
    cols = [c for c in _UPLOAD_COLUMNS if c in row]
    cur = conn.execute(
        f"INSERT INTO uploads ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})",
        [row[c] for c in cols])
    upload_id = int(cur.lastrowid)
    conn.executemany("INSERT INTO files (path, upload_id, mime) VALUES (?, ?, ?)",
                     [(path, upload_id, mime) for path, mime in files])
    for position, (name, url_key) in enumerate(tags):
        conn.execute("INSERT INTO tags (name, url_key) VALUES (?, ?) ON CONFLICT(url_key) DO NOTHING",
                     (name, url_key))
        tag_id = conn.execute("SELECT id FROM tags WHERE url_key = ?", (url_key,)).fetchone()[0]
        conn.execute("INSERT OR IGNORE INTO upload_tags (upload_id, tag_id, position) VALUES (?, ?, ?)",
                     (upload_id, tag_id, position))
    return upload_id


def _upload_from_row(conn: sqlite3.Connection, row: sqlite3.Row) -> Upload:
    tags = tuple(r[0] for r in conn.execute(
        "SELECT t.name FROM upload_tags ut JOIN tags t ON t.id = ut.tag_id"
        " WHERE ut.upload_id = ? ORDER BY ut.position", (row["id"],)))
    data = {k: row[k] for k in row.keys() if k != "delete_hash"}
    for flag in ("is_animated", "is_360", "nsfw"):
        data[flag] = bool(data[flag])
    data["created_at"] = from_ts(data["created_at"])
    data["expires_at"] = from_ts(data["expires_at"])
    return Upload(tags=tags, **data)


def get_upload(conn: sqlite3.Connection, public_id: str) -> Upload | None:
    row = conn.execute("SELECT * FROM uploads WHERE public_id = ?", (public_id,)).fetchone()
    return None if row is None else _upload_from_row(conn, row)


def get_upload_by_id(conn: sqlite3.Connection, upload_id: int) -> Upload | None:
    row = conn.execute("SELECT * FROM uploads WHERE id = ?", (upload_id,)).fetchone()
    return None if row is None else _upload_from_row(conn, row)


def get_delete_hash(conn: sqlite3.Connection, public_id: str) -> str | None:
    row = conn.execute("SELECT delete_hash FROM uploads WHERE public_id = ?", (public_id,)).fetchone()
    return None if row is None else row[0]


def delete_upload(conn: sqlite3.Connection, upload_id: int) -> list[str] | None:
    """Delete the row (its files and tag links cascade); return the file paths it had, or None
    when there was no row to delete.

    Run it inside ``transaction``: two deletions of one upload at once both found it before, and
    only the one whose DELETE removed the row may say so and remove the files.
    """
    paths = [r[0] for r in conn.execute("SELECT path FROM files WHERE upload_id = ?", (upload_id,))]
    tag_ids = [r[0] for r in conn.execute("SELECT tag_id FROM upload_tags WHERE upload_id = ?",
                                          (upload_id,))]
    if conn.execute("DELETE FROM uploads WHERE id = ?", (upload_id,)).rowcount != 1:
        return None
    # a tag no upload carries any more goes too
    conn.executemany("DELETE FROM tags WHERE id = ? AND NOT EXISTS"
                     " (SELECT 1 FROM upload_tags WHERE tag_id = tags.id)", [(t,) for t in tag_ids])
    return paths


def add_view(conn: sqlite3.Connection, upload_id: int) -> None:
    conn.execute("UPDATE uploads SET views = views + 1 WHERE id = ?", (upload_id,))


def count_uploads(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT COUNT(*) FROM uploads").fetchone()[0]


def iter_uploads(conn: sqlite3.Connection, user_id: int | None = None) -> Iterator[Upload]:
    if user_id is None:
        rows = conn.execute("SELECT * FROM uploads ORDER BY id").fetchall()
    else:
        rows = conn.execute("SELECT * FROM uploads WHERE user_id = ? ORDER BY id", (user_id,)).fetchall()
    for row in rows:
        yield _upload_from_row(conn, row)


def expired_ids(conn: sqlite3.Connection, now: datetime, limit: int) -> list[int]:
    """Ids of uploads whose expiry is at or before now, oldest first (uses the expiry index)."""
    return [r[0] for r in conn.execute(
        "SELECT id FROM uploads WHERE expires_at IS NOT NULL AND expires_at <= ?"
        " ORDER BY expires_at LIMIT ?", (to_ts(now), limit))]


def delete_uploads(conn: sqlite3.Connection, upload_ids: list[int]) -> list[str]:
    """Delete several uploads (files and tag links cascade); return their file paths."""
    paths: list[str] = []
    for upload_id in upload_ids:
        paths.extend(delete_upload(conn, upload_id) or ())
    return paths


def get_tag(conn: sqlite3.Connection, url_key: str) -> sqlite3.Row | None:
    return conn.execute("SELECT id, name, url_key FROM tags WHERE url_key = ?", (url_key,)).fetchone()


def tag_uploads(conn: sqlite3.Connection, tag_id: int, now: datetime, limit: int,
                offset: int = 0) -> tuple[list[Upload], int]:
    """Public uploads carrying a tag (not NSFW, not expired), newest first, and their total count."""
    where = ("FROM uploads u JOIN upload_tags ut ON ut.upload_id = u.id WHERE ut.tag_id = ?"
             " AND u.nsfw = 0 AND (u.expires_at IS NULL OR u.expires_at > ?)")
    args = (tag_id, to_ts(now))
    total = conn.execute(f"SELECT COUNT(*) {where}", args).fetchone()[0]
    rows = conn.execute(f"SELECT u.* {where} ORDER BY u.created_at DESC, u.id DESC LIMIT ? OFFSET ?",
                        (*args, limit, offset)).fetchall()
    return [_upload_from_row(conn, row) for row in rows], total


def popular_tags(conn: sqlite3.Connection, now: datetime, limit: int) -> list[sqlite3.Row]:
    """Tags with the most public uploads (not NSFW, not expired): name, url_key, uploads."""
    return conn.execute(
        "SELECT t.name, t.url_key, COUNT(*) AS uploads FROM tags t"
        " JOIN upload_tags ut ON ut.tag_id = t.id JOIN uploads u ON u.id = ut.upload_id"
        " WHERE u.nsfw = 0 AND (u.expires_at IS NULL OR u.expires_at > ?)"
        " AND trim(t.url_key, '.') != ''"  # a dots-only key (older uploads) has no page
        " GROUP BY t.id ORDER BY uploads DESC, t.name LIMIT ?", (to_ts(now), limit)).fetchall()


# -- albums and categories -----------------------------------------------------------------------

def add_album(conn: sqlite3.Connection, public_id: str, user_id: int, name: str, now: datetime) -> int:
    cur = conn.execute("INSERT INTO albums (public_id, user_id, name, created_at) VALUES (?, ?, ?, ?)",
                       (public_id, user_id, name, to_ts(now)))
    return int(cur.lastrowid)


def get_album(conn: sqlite3.Connection, public_id: str) -> sqlite3.Row | None:
    return conn.execute("SELECT * FROM albums WHERE public_id = ?", (public_id,)).fetchone()


def add_category(conn: sqlite3.Connection, name: str) -> int:
    cur = conn.execute("INSERT INTO categories (name) VALUES (?)", (name,))
    return int(cur.lastrowid)


def get_category(conn: sqlite3.Connection, category_id: int) -> sqlite3.Row | None:
    return conn.execute("SELECT * FROM categories WHERE id = ?", (category_id,)).fetchone()


def get_category_by_name(conn: sqlite3.Connection, name: str) -> sqlite3.Row | None:
    return conn.execute("SELECT * FROM categories WHERE name = ?", (name,)).fetchone()


# -- reconciliation ------------------------------------------------------------------------------

def all_file_paths(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT path FROM files")}


_VARIANT_COLUMNS = {"th": "thumb", "md": "medium", "fr": "frame"}


def set_variant(conn: sqlite3.Connection, upload_id: int, variant: str, size: int, width: int,
                height: int) -> None:
    """Record a variant file made again: its size in bytes and pixels."""
    column = _VARIANT_COLUMNS[variant]
    conn.execute(f"UPDATE uploads SET {column}_size = ?, {column}_width = ?, {column}_height = ?"
                 " WHERE id = ?", (size, width, height, upload_id))


def upload_id_for_path(conn: sqlite3.Connection, path: str) -> int | None:
    row = conn.execute("SELECT upload_id FROM files WHERE path = ?", (path,)).fetchone()
    return None if row is None else row[0]
