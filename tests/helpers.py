"""What a test does with a server of either kind (conftest.LiveServer, inprocess.InProcess):
requests, and reading what it stored without assuming where (tests/backends.py).

Rows are read through imgz's own db package (SQLAlchemy), stored files through the server's own
store, so the same helper reads an SQLite file or a PostgreSQL database, ``<data>/images`` or a
bucket. Stored files are named as they would be in a data dir, ``images/<key>``.
"""
from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import tempfile
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

import requests
from sqlalchemy import text

from imgz import db, layout, store as store_mod
from imgz.config import Config
from imgz.errors import DatabaseError
from imgz.store import Store


def query(database: str, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple]:
    """Run one statement on ``database`` (a URL or an SQLite path) on a connection of its own
    and commit; the rows it returns, as tuples (none for a write)."""
    conn = db.connect(database)
    try:
        result = conn.execute(text(sql), dict(params or {}))
        rows = [tuple(row) for row in result] if result.returns_rows else []
        conn.commit()
        return rows
    finally:
        conn.close()
        conn.engine.dispose()


def stored_key(ref: str) -> str:
    """The store key of a file URL (``http://host/images/<key>``), a path (``/images/<key>``),
    a name from ``stored_files()`` (``images/<key>``) or a key."""
    if "://" in ref:
        ref = urlsplit(ref).path
    ref = ref.lstrip("/")
    return ref[len(layout.DIR) + 1:] if ref.startswith(layout.DIR + "/") else ref


def store_of(cfg: Config) -> Store:
    """The store a server with ``cfg`` keeps its files in, read from the test's process."""
    return store_mod.for_config(cfg)


def has_keys(data: Path, env: dict[str, str]) -> bool:
    """Whether the database a server on ``data`` with ``env`` opens holds an API key already.
    An SQLite file is read by the driver itself: opening it through imgz would set its journal
    mode before the server under test first opens it."""
    url = env.get("IMGZ_DATABASE_URL")
    if url:
        try:
            return query(url, "SELECT COUNT(*) FROM api_keys")[0][0] > 0
        except DatabaseError:  # no such table: made by nothing that got that far
            return False
    path = data / "imgz.db"
    if not path.exists():
        return False
    with contextlib.closing(sqlite3.connect(path)) as conn:
        try:
            return conn.execute("SELECT COUNT(*) FROM api_keys").fetchone()[0] > 0
        except sqlite3.OperationalError:  # no such table: made by nothing that got that far
            return False


class Helpers:
    """What LiveServer and InProcess share: uploads, reading rows and stored files. ``request``,
    ``config`` and ``store`` are theirs."""

    data: Path
    key: str
    url: str
    config: Config

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        raise NotImplementedError

    @property
    def store(self) -> Store:
        raise NotImplementedError

    @property
    def db(self) -> Path:
        """The SQLite file of sqlite-local; tests of the other pair use ``query``."""
        return self.data / "imgz.db"

    def upload(self, source: Any = None, *, filename: str = "file.png", api_key: Any = "default",
               path: str = "/api/1/upload", method: str = "POST", field: str = "source",
               content_type: str | None = None, params: dict | None = None,
               headers: dict | None = None, **fields: Any) -> requests.Response:
        """Upload: bytes go as a multipart file part, str as a form field.

        ``api_key='default'`` sends the first key in X-API-Key; None sends none.
        """
        hdrs = dict(headers or {})
        if api_key == "default":
            hdrs["X-API-Key"] = self.key
        elif api_key is not None:
            hdrs["X-API-Key"] = api_key
        data = {k: v for k, v in fields.items() if v is not None}
        files = None
        if isinstance(source, (bytes, bytearray)):
            files = {field: (filename, bytes(source), content_type) if content_type
                     else (filename, bytes(source))}
        elif source is not None:
            data[field] = source
        return self.request(method, path, data=data or None, files=files, params=params,
                            headers=hdrs, allow_redirects=False, timeout=120)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        """GET a path or URL; redirects are not followed unless asked."""
        kwargs.setdefault("allow_redirects", False)
        kwargs.setdefault("timeout", 30)
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        """POST like ``requests.post`` (redirects followed unless told not to)."""
        return self.request("POST", path, **kwargs)

    def head(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("allow_redirects", False)
        return self.request("HEAD", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    # -- rows ------------------------------------------------------------------------------------

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple]:
        """Raw SQL on this server's database, named parameters (``WHERE id = :id``); committed."""
        return query(self.config.database, sql, params)

    def rows(self) -> int:
        """How many uploads the database holds."""
        return self.query("SELECT COUNT(*) FROM uploads")[0][0]

    # -- stored files ----------------------------------------------------------------------------

    def stored_files(self) -> list[str]:
        """Every stored file, sorted, as ``images/<key>``."""
        return sorted(layout.in_data_dir(key) for key in self.store.list())

    def local_files(self) -> list[str]:
        """Every file under the data dir's media folder on this disk, whatever the store."""
        media = self.data / layout.DIR
        return sorted(str(p.relative_to(self.data)) for p in media.rglob("*") if p.is_file())

    def stored_bytes(self, ref: str) -> bytes:
        """The bytes stored for a file URL, ``images/<key>`` or key."""
        with self.store.open(stored_key(ref)) as stream:
            return stream.read()

    def remove_stored(self, ref: str) -> None:
        """Remove a stored file behind the server's back (its row stays)."""
        key = stored_key(ref)
        if self.store.stat(key) is None:
            raise FileNotFoundError(f"no stored file {key!r}")
        self.store.delete([key])

    def plant_stored(self, ref: str, content: bytes) -> None:
        """Store a file no row knows of (an orphan) under a key."""
        fd, path = tempfile.mkstemp(dir=self.data, prefix=".planted-")
        with os.fdopen(fd, "wb") as file:
            file.write(content)
        self.store.put(stored_key(ref), Path(path))

    def stored_mode(self, ref: str) -> int:
        """The permission bits of a stored file on this machine's disk (a local store only)."""
        found = self.store.stat(stored_key(ref))
        if found is None or found.path is None:
            raise FileNotFoundError(f"no local file for {ref!r} in {self.store!r}")
        return os.stat(found.path).st_mode & 0o7777

    # -- the scratch folder (on this machine whatever the pair) ----------------------------------

    def tmp_files(self) -> list[str]:
        """What is left under tmp: the processes' scratch folders and their lock files not counted."""
        tmp = self.data / "tmp"
        found = []
        for path in tmp.rglob("*"):
            parts = path.relative_to(tmp).parts
            if len(parts) == 1 and (path.is_dir() or path.name.endswith(".lock")):
                continue
            found.append(str(path.relative_to(self.data)))
        return sorted(found)

    def scratch_folders(self) -> list[str]:
        """The scratch folders under tmp, one for each process that wrote there and was not cleaned."""
        return sorted(p.name for p in (self.data / "tmp").glob("*") if p.is_dir())


def sharex_fill(template: str, answer: dict) -> str:
    """ShareX's {json:a.b.c} placeholders of ``template`` read from an upload's answer."""
    def lookup(match: re.Match) -> str:
        value: Any = answer
        for part in match.group(1).split("."):
            value = value[part]
        return str(value)
    return re.sub(r"\{json:([^}]+)\}", lookup, template)
