"""What an SQLite + local-disk install holds, for comparing two of them: every row of every table,
and the MD5 of every stored file (tests/test_migrate.py and bench/migrate.py)."""
from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
from pathlib import Path

from imgz import layout

TABLES = ("users", "api_keys", "albums", "categories", "tags", "upload_tags", "uploads", "files",
          "names", "schema_version", "user_usage")


def dump(db: Path) -> dict[str, list[tuple]]:
    """Every row of every table, sorted."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return {name: sorted(conn.execute(f"SELECT * FROM {name}").fetchall(), key=repr) for name in TABLES}


def stored(data: Path) -> dict[str, str]:
    """The MD5 of every stored file, by key."""
    root = data / layout.DIR
    found = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            found[str(path.relative_to(root))] = hashlib.md5(path.read_bytes()).hexdigest()
    return found
