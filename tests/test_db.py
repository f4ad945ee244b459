"""The database layer on its own: each named query, the records it returns, how driver errors
come out, transactions, connections per thread, and the schema's migrations."""
from __future__ import annotations

import ast
import contextlib
import dataclasses
import sqlite3
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from imgz import config, db, ids, records
from imgz.web import init_data
from imgz.db import sqlite as db_sqlite
from imgz.errors import Conflict, DatabaseBusy, DatabaseError, NoStorage
from imgz.records import Upload

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_1 = (Path(__file__).resolve().parent / "fixtures" / "schema1.sql").read_text()
NOW = datetime(2025, 3, 4, 5, 6, 7, tzinfo=timezone.utc)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path) -> str:
    """A new empty database, as the database setting names it: an SQLite file's path, or the URL
    of a PostgreSQL database (tests/pgserver.py; skipped where there is no PostgreSQL)."""
    if request.param == "sqlite":
        return str(tmp_path / "imgz.db")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def conn(database):
    with contextlib.closing(db.connect(database)) as connection:
        db.migrate(connection)
        yield connection


@pytest.fixture
def sqlite_conn(tmp_path):
    with contextlib.closing(db.connect(tmp_path / "imgz.db")) as connection:
        db.migrate(connection)
        yield connection


def raw(conn) -> sqlite3.Connection:
    """A second, plain connection to the same file, to look at what was stored."""
    return contextlib.closing(sqlite3.connect(conn.engine.url.database))


def other_connection(conn):
    """A second, plain connection of the driver to the same database, committing each statement."""
    if conn.dialect.name == "sqlite":
        return contextlib.closing(sqlite3.connect(conn.engine.url.database, isolation_level=None))
    import psycopg

    url = conn.engine.url
    return psycopg.connect(host=url.host, port=url.port, user=url.username, dbname=url.database,
                           autocommit=True)


def new_upload(**fields) -> Upload:
    values = dict(id=0, public_id=ids.public_id(8), user_id=None, album_id=None, category_id=None,
                  kind="image", folder="2025/03/04", name="a", extension="png", mime="image/png",
                  size=100, width=20, height=10, duration=0, is_animated=False, is_360=False,
                  nsfw=False, title="A", description=None, original_filename="a.png",
                  original_exifdata=None, checksum="0" * 32, source_checksum=None, created_at=NOW,
                  expires_at=None, thumb_size=10, thumb_width=20, thumb_height=10)
    values.update(fields)
    return Upload(**values)


def store(conn, upload: Upload, secret_hash: str = "h" * 64) -> Upload:
    with db.transaction(conn):
        return db.insert_upload(conn, upload, secret_hash, [(upload.relpath(), upload.mime),
                                                            (upload.relpath("th"), upload.mime)])


def plain(value) -> bool:
    """Whether a value is made of the project's records and Python's own types only."""
    if dataclasses.is_dataclass(value):
        return type(value).__module__ == "imgz.records" and all(
            plain(getattr(value, f.name)) for f in dataclasses.fields(value))
    if isinstance(value, (list, tuple, set)):
        return all(plain(v) for v in value)
    return value is None or type(value) in (int, str, bool, datetime)


# -- users and keys ------------------------------------------------------------------------------

def test_users(conn):
    admin = db.add_user(conn, "admin", True, NOW)
    bob = db.add_user(conn, "bob", False, NOW + timedelta(seconds=1))
    assert db.get_user_by_name(conn, "bob") == records.User(bob, "bob", False, NOW + timedelta(seconds=1))
    assert db.get_user_by_name(conn, "nobody") is None
    store(conn, new_upload(user_id=bob))
    db.add_key(conn, bob, "k1", "", NOW)
    revoked = db.add_key(conn, bob, "k2", "", NOW)
    db.revoke_key(conn, revoked, NOW)
    summaries = db.list_users(conn)
    assert [(s.user.id, s.user.is_admin, s.uploads, s.keys) for s in summaries] == [
        (admin, True, 0, 0), (bob, False, 1, 1)]
    assert plain(summaries)
    with pytest.raises(Conflict):
        db.add_user(conn, "bob", False, NOW)


def test_keys(conn):
    admin = db.add_user(conn, "admin", True, NOW)
    bob = db.add_user(conn, "bob", False, NOW)
    assert db.count_keys(conn) == 0
    first = db.add_key(conn, admin, "hash-a", "first", NOW)
    second = db.add_key(conn, bob, "hash-b", "", NOW)
    found = db.find_key(conn, "hash-a")
    assert found == records.Key(first, admin, "admin", True, "first", NOW, None, None)
    assert plain(found) and db.find_key(conn, "hash-x") is None
    db.touch_key(conn, second, NOW + timedelta(minutes=5))
    assert db.find_key(conn, "hash-b").last_used_at == NOW + timedelta(minutes=5)
    assert db.revoke_key(conn, second, NOW) and not db.revoke_key(conn, second, NOW)
    assert db.find_key(conn, "hash-b") is None, "a revoked key is not found"
    assert [k.id for k in db.list_keys(conn)] == [first, second]
    assert [k.revoked_at for k in db.list_keys(conn, bob)] == [NOW]
    assert db.count_keys(conn) == 2
    with pytest.raises(Conflict):
        db.add_key(conn, bob, "hash-a", "", NOW)


# -- albums, categories, names, files ------------------------------------------------------------

def test_albums_and_categories(conn):
    user = db.add_user(conn, "admin", True, NOW)
    album = db.add_album(conn, "Alb12345", user, "Trips", NOW)
    found = db.get_album(conn, "Alb12345")
    assert found == records.Album(album, "Alb12345", user, "Trips", NOW, False, found.page_key)
    assert len(found.page_key) >= 22 and db.get_album_by_key(conn, found.page_key) == found
    assert db.get_album(conn, "nope") is None
    category = db.add_category(conn, "Nature")
    assert db.get_category(conn, category) == records.Category(category, "Nature")
    assert db.get_category_by_name(conn, "Nature") == records.Category(category, "Nature")
    assert db.get_category(conn, 99) is None and db.get_category_by_name(conn, "x") is None
    with pytest.raises(Conflict):
        db.add_category(conn, "Nature")


def test_names_are_reserved_once(conn):
    assert db.reserve_name(conn, "2025/03/04/a")
    assert not db.reserve_name(conn, "2025/03/04/a")
    db.release_name(conn, "2025/03/04/a")
    assert db.reserve_name(conn, "2025/03/04/a")


def test_files_by_path(conn):
    upload = store(conn, new_upload(expires_at=NOW + timedelta(days=1)))
    expected = records.StoredFile("image/png", NOW + timedelta(days=1))
    assert db.file_lookup(conn, upload.relpath("th")) == expected
    assert db.file_lookup(conn, "2025/03/04/none.png") is None
    assert db.upload_id_for_path(conn, upload.relpath()) == upload.id
    assert db.upload_id_for_path(conn, "x") is None
    assert db.all_file_paths(conn) == {upload.relpath(), upload.relpath("th")}


# -- uploads -------------------------------------------------------------------------------------

def test_an_upload_is_stored_and_read_back_as_a_record(conn):
    user = db.add_user(conn, "admin", True, NOW)
    given = new_upload(user_id=user, nsfw=True, is_animated=True, description="d",
                       created_at=NOW + timedelta(microseconds=600_000),
                       tags=("sea", "Café", "SEA", "sand"))
    stored = store(conn, given)
    assert stored.id > 0 and stored.public_id == given.public_id
    assert stored.created_at == NOW, "dates are kept in whole seconds"
    assert stored.tags == ("sea", "Café", "sand"), "one tag per key, in the order given"
    assert stored == dataclasses.replace(given, id=stored.id, created_at=NOW, tags=stored.tags)
    assert db.get_upload(conn, given.public_id) == stored
    assert db.get_upload_by_id(conn, stored.id) == stored
    assert db.get_upload(conn, "missing") is None and db.get_upload_by_id(conn, 999) is None
    assert plain(stored) and type(stored) is Upload
    assert db.public_id_taken(conn, given.public_id) and not db.public_id_taken(conn, "other")
    assert db.get_delete_hash(conn, given.public_id) == "h" * 64
    assert db.get_delete_hash(conn, "other") is None
    # a tag joins the existing one of its key and keeps that one's name
    again = store(conn, new_upload(name="b", tags=("SEA", "new")))
    assert again.tags == ("sea", "new")


def test_a_taken_public_id_is_a_conflict_and_leaves_nothing(conn):
    first = store(conn, new_upload())
    with pytest.raises(Conflict) as raised:
        store(conn, new_upload(public_id=first.public_id, name="b", tags=("t",)))
    assert isinstance(raised.value.__cause__, conn.dialect.loaded_dbapi.IntegrityError)
    assert db.count_uploads(conn) == 1 and db.get_tag(conn, "t") is None
    assert db.all_file_paths(conn) == {first.relpath(), first.relpath("th")}


def test_listing_counting_views_and_variants(conn, monkeypatch):
    from imgz.db import uploads as db_uploads

    monkeypatch.setattr(db_uploads, "CHUNK", 3)  # read in several chunks
    user = db.add_user(conn, "bob", False, NOW)
    made = [store(conn, new_upload(name=f"n{i}", user_id=user if i % 2 else None, tags=(f"t{i}",)))
            for i in range(7)]
    assert [u.id for u in db.iter_uploads(conn)] == [u.id for u in made]
    assert [u.tags for u in db.iter_uploads(conn, user)] == [("t1",), ("t3",), ("t5",)]
    assert db.count_uploads(conn) == 7
    db.add_view(conn, made[0].id)
    db.add_view(conn, made[0].id)
    db.set_variant(conn, made[0].id, "md", 500, 50, 25)
    again = db.get_upload(conn, made[0].public_id)
    assert again.views == 2 and (again.medium_size, again.medium_width, again.medium_height) == (500, 50, 25)
    assert again.variants() == ["th", "md"]


def test_deleting_uploads_takes_their_files_and_unused_tags(conn):
    kept = store(conn, new_upload(name="kept", tags=("shared",)))
    gone = store(conn, new_upload(name="gone", tags=("shared", "alone")))
    with db.transaction(conn):
        assert db.delete_upload(conn, gone.id) == [gone.relpath(), gone.relpath("th")]
        assert db.delete_upload(conn, gone.id) is None, "only one deletion removes the row"
    assert db.get_tag(conn, "alone") is None and db.get_tag(conn, "shared") is not None
    assert db.all_file_paths(conn) == {kept.relpath(), kept.relpath("th")}


def test_expired_uploads(conn):
    soon = store(conn, new_upload(name="soon", expires_at=NOW + timedelta(seconds=10), tags=("x",)))
    later = store(conn, new_upload(name="later", expires_at=NOW + timedelta(seconds=20)))
    store(conn, new_upload(name="never"))
    assert db.expired_ids(conn, NOW, 10) == []
    assert db.expired_ids(conn, NOW + timedelta(seconds=10), 10) == [soon.id]
    assert db.expired_ids(conn, NOW + timedelta(seconds=30), 1) == [soon.id]
    assert db.expired_ids(conn, NOW + timedelta(seconds=30), 10) == [soon.id, later.id]
    with db.transaction(conn):
        paths = db.delete_uploads(conn, [soon.id, later.id])
    assert sorted(paths) == sorted([*soon.relpaths(), *later.relpaths()])
    assert db.count_uploads(conn) == 1 and db.get_tag(conn, "x") is None


def test_tag_pages_and_popular_tags(conn):
    old = store(conn, new_upload(name="old", tags=("sea", "sky"), created_at=NOW))
    new = store(conn, new_upload(name="new", tags=("sea",), created_at=NOW + timedelta(seconds=5)))
    store(conn, new_upload(name="nsfw", tags=("sea",), nsfw=True))
    store(conn, new_upload(name="past", tags=("sea", "sky"), expires_at=NOW + timedelta(seconds=1)))
    store(conn, new_upload(name="dots", tags=("...",)))
    sea = db.get_tag(conn, "sea")
    assert sea == records.Tag(sea.id, "sea", "sea") and db.get_tag(conn, "none") is None
    later = NOW + timedelta(seconds=2)
    uploads, total = db.tag_uploads(conn, sea.id, later, limit=10)
    assert total == 2 and [u.id for u in uploads] == [new.id, old.id], "public ones, newest first"
    uploads, total = db.tag_uploads(conn, sea.id, later, limit=1, offset=1)
    assert total == 2 and [u.id for u in uploads] == [old.id]
    assert db.popular_tags(conn, later, 10) == [records.PopularTag("sea", "sea", 2),
                                                records.PopularTag("sky", "sky", 1)]
    assert db.popular_tags(conn, later, 1) == [records.PopularTag("sea", "sea", 2)]


# -- driver errors -------------------------------------------------------------------------------

def test_a_database_locked_too_long_is_busy_and_the_connection_recovers(tmp_path, monkeypatch):
    monkeypatch.setattr(db_sqlite, "BUSY_TIMEOUT_MS", 50)
    path = tmp_path / "imgz.db"
    with contextlib.closing(db.connect(path)) as conn:
        db.migrate(conn)
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(DatabaseBusy) as raised:
                with db.transaction(conn):
                    db.add_user(conn, "a", False, NOW)
            assert raised.value.status == 503 and "Retry-After" in raised.value.headers
            assert isinstance(raised.value.__cause__, sqlite3.OperationalError)
            with pytest.raises(DatabaseBusy):
                db.add_user(conn, "a", False, NOW)
            with pytest.raises(DatabaseBusy):
                db.reserve_name(conn, "2025/03/04/a")  # a prepared statement says so too
            assert db.get_user_by_name(conn, "a") is None, "reads go on beside a writer"
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        # the same connection writes again, and its transactions are still all or nothing
        with pytest.raises(RuntimeError):
            with db.transaction(conn):
                db.add_user(conn, "gone", False, NOW)
                raise RuntimeError("undo")
        with db.transaction(conn):
            db.add_user(conn, "a", False, NOW)
        db.add_user(conn, "b", False, NOW)
        assert [s.user.name for s in db.list_users(conn)] == ["a", "b"]


def test_a_full_database_is_no_storage_and_keeps_nothing(sqlite_conn):
    conn = sqlite_conn
    store(conn, new_upload())
    pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
    conn.exec_driver_sql(f"PRAGMA max_page_count = {pages + 2}")
    with pytest.raises(NoStorage) as raised:
        store(conn, new_upload(name="big", description="x" * 100_000, tags=("t",)))
    assert raised.value.status == 507 and isinstance(raised.value.__cause__, sqlite3.OperationalError)
    assert db.count_uploads(conn) == 1 and db.get_tag(conn, "t") is None


def test_other_failures_are_database_errors_with_the_drivers_words(conn):
    store(conn, new_upload())
    with other_connection(conn) as other:
        other.execute("DROP TABLE files")
        other.execute("DROP TABLE api_keys")
    words = {"sqlite": "no such table", "postgresql": "does not exist"}[conn.dialect.name]
    for lookup in (lambda: db.file_lookup(conn, "x"), lambda: db.find_key(conn, "x"),
                   lambda: db.all_file_paths(conn)):
        with pytest.raises(DatabaseError) as raised:
            lookup()
        assert words in raised.value.detail and raised.value.status == 500
        assert raised.value.message == "Internal error", "the client hears nothing of it"
        assert isinstance(raised.value.__cause__, conn.dialect.loaded_dbapi.Error)
    assert db.count_uploads(conn) == 1, "the connection goes on"


def test_a_file_that_is_not_a_database_stops_the_start(tmp_path):
    (tmp_path / "imgz.db").write_bytes(b"not a database at all " * 200)
    with pytest.raises(DatabaseError) as raised:
        with contextlib.closing(db.connect(tmp_path / "imgz.db")) as conn:
            db.migrate(conn)
    assert "not a database" in raised.value.detail
    cfg = config.load({}, overrides={"data": str(tmp_path), "min_free_mb": "0"})
    with pytest.raises(config.ConfigError, match="IMGZ_DB=.*not a database"):
        init_data(cfg)


def test_a_public_id_drawn_twice_is_drawn_again(tmp_path, database, monkeypatch):
    import media
    from imgz import service as service_mod, spool
    from imgz.records import Actor, Options
    from imgz.service import Service
    from imgz.sources import Incoming

    chosen = {"database_url": database} if db.is_postgresql(database) else {"db": database}
    cfg = config.load({}, overrides={"data": str(tmp_path), "min_free_mb": "0", **chosen})
    init_data(cfg)
    svc = Service(cfg, db.LocalConnections(cfg.database).get)
    with db.transaction(svc.connection()):
        taken = db.insert_upload(svc.connection(), new_upload(public_id="Taken123"), "h", [])
    drawn = iter(["Taken123", "Taken123", "Fresh123"])
    monkeypatch.setattr(service_mod.ids, "public_id", lambda length: next(drawn))
    writer = spool.write_bytes(svc.data, media.png(30, 20), 10_000_000, 10)
    writer.close()
    upload, _ = svc.upload(Incoming(writer.path, writer.md5, writer.size, "b.png", "file"),
                           Actor(1, True), Options())
    assert upload.public_id == "Fresh123" and taken.public_id == "Taken123"
    assert db.count_uploads(svc.connection()) == 2
    svc.connection().close()


# -- transactions and connections ----------------------------------------------------------------

def test_a_transaction_takes_the_write_lock_at_its_start_and_nests(sqlite_conn):
    conn = sqlite_conn
    with db.transaction(conn):
        with raw(conn) as other:
            other.execute("PRAGMA busy_timeout = 0")
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        with db.transaction(conn):
            db.add_user(conn, "inner", False, NOW)
            upload = db.insert_upload(conn, new_upload(), "h", [("2025/03/04/a.png", "image/png")])
        assert db.get_user_by_name(conn, "inner") is not None, "a transaction sees its own rows"
        assert db.file_lookup(conn, upload.relpath()).mime == "image/png"
        with raw(conn) as other:
            assert other.execute("SELECT COUNT(*) FROM uploads").fetchone()[0] == 0, "not yet committed"
    assert db.get_user_by_name(conn, "inner") is not None
    with raw(conn) as other:
        other.execute("BEGIN IMMEDIATE")  # free again
        other.execute("ROLLBACK")


def test_one_connection_per_thread_with_its_settings(tmp_path):
    local = db.LocalConnections(tmp_path / "imgz.db")
    mine = local.get()
    assert local.get() is mine
    theirs: list = []
    thread = threading.Thread(target=lambda: theirs.append(local.get()))
    thread.start()
    thread.join()
    assert theirs[0] is not mine
    pragma = lambda name: mine.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
    assert (pragma("journal_mode"), pragma("foreign_keys"), pragma("busy_timeout")) == (
        "wal", 1, db_sqlite.BUSY_TIMEOUT_MS)
    local.close_all()
    assert mine.closed and theirs[0].closed


# -- migrations ----------------------------------------------------------------------------------

def _shape(path: Path) -> dict:
    """Tables with their columns (name, not null, primary key), and the named indexes. A primary
    key counts as not null (an INTEGER PRIMARY KEY is the rowid, declared NOT NULL or not)."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        shape = {t: [(c[1], bool(c[3] or c[5]), c[5]) for c in conn.execute(f"PRAGMA table_info({t})")]
                 for t in tables}
        shape["indexes"] = sorted(r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"))
    return shape


def _old_database(path: Path, version: int) -> None:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.executescript(SCHEMA_1 + f"\nPRAGMA user_version = {version};")
        conn.execute("INSERT INTO users VALUES (1, 'admin', 1, 1700000000)")
        conn.execute("INSERT INTO api_keys VALUES (1, 1, 'hash', 'first', 1700000000, NULL, NULL)")
        conn.execute(
            "INSERT INTO uploads (id, public_id, user_id, kind, folder, name, extension, mime, size,"
            " width, height, is_animated, nsfw, title, original_filename, checksum, created_at,"
            " expires_at, thumb_size, delete_hash) VALUES (7, 'Old12345', 1, 'image', '2023/11/14',"
            " 'a', 'gif', 'image/gif', 10, 2, 1, 1, 0, 'T', 'a.gif', 'x', 1700000000, 4000000000, 3,"
            " 'h')")
        conn.execute("INSERT INTO files VALUES ('2023/11/14/a.gif', 7, 'image/gif')")
        conn.execute("INSERT INTO names VALUES ('2023/11/14/a')")
        conn.execute("INSERT INTO tags VALUES (1, 'sea', 'sea')")
        conn.execute("INSERT INTO upload_tags VALUES (7, 1, 0)")
        conn.commit()


def test_an_empty_database_gets_the_whole_schema(database):
    from sqlalchemy import inspect

    with contextlib.closing(db.connect(database)) as conn:
        assert db.schema_version_of(conn) == 0
        db.migrate(conn)
        db.migrate(conn)
        assert db.schema_version_of(conn) == db.SCHEMA_VERSION
        found = inspect(conn)
        assert set(found.get_table_names()) == {
            "users", "api_keys", "albums", "categories", "uploads", "files", "names", "tags",
            "upload_tags", "schema_version", "sessions", "links", "secrets", "resumables", "user_usage"}
        assert [c["name"] for c in found.get_columns("uploads")] == [
            *(f.name for f in dataclasses.fields(Upload) if f.name != "tags"), "delete_hash", "search_text"]
        assert {i["name"] for i in found.get_indexes("uploads")} >= {
            "uploads_expires_at", "uploads_user_id", "uploads_user_kind", "uploads_user_text"}
        types = {c["name"]: str(c["type"]) for c in found.get_columns("uploads")}
        assert {types[name] for name in ("size", "created_at", "expires_at", "views")} == {"BIGINT"}


@pytest.mark.parametrize("version", [1, 2])
def test_an_older_schema_is_upgraded_keeping_its_rows(tmp_path, version):
    _old_database(tmp_path / "old.db", version)
    with contextlib.closing(db.connect(tmp_path / "old.db")) as conn:
        assert db.schema_version_of(conn) == version
        db.migrate(conn)
        assert db.schema_version_of(conn) == db.SCHEMA_VERSION
        upload = db.get_upload(conn, "Old12345")
        assert upload.is_animated is True and upload.nsfw is False and upload.tags == ("sea",)
        assert upload.created_at == datetime.fromtimestamp(1700000000, timezone.utc)
        assert upload.expires_at == datetime.fromtimestamp(4000000000, timezone.utc)
        assert db.find_key(conn, "hash").user_name == "admin"
        (admin,) = db.list_users(conn)  # its upload counted: 10 bytes and a thumb of 3
        assert (admin.uploads, admin.quota.used_bytes, admin.quota.max_bytes) == (1, 13, None)
        assert not db.reserve_name(conn, "2023/11/14/a")
        assert db.file_lookup(conn, "2023/11/14/a.gif").mime == "image/gif"
    with contextlib.closing(db.connect(tmp_path / "new.db")) as conn:
        db.migrate(conn)
    assert _shape(tmp_path / "old.db") == _shape(tmp_path / "new.db")
    with contextlib.closing(sqlite3.connect(tmp_path / "old.db")) as conn:  # searchable as a new one
        assert conn.execute("SELECT search_text FROM uploads WHERE id = 7").fetchone() == ("t a.gif",)
    for name in ("old.db", "new.db"):  # what an older imgz reads: it finds nothing left to do
        with contextlib.closing(sqlite3.connect(tmp_path / name)) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == db.SCHEMA_VERSION


def test_a_database_of_a_newer_imgz_is_refused(database):
    with contextlib.closing(db.connect(database)) as conn:
        db.migrate(conn)
        with other_connection(conn) as other:
            other.execute("UPDATE schema_version SET version = version + 1")
    with contextlib.closing(db.connect(database)) as conn:
        with pytest.raises(DatabaseError) as raised:
            db.migrate(conn)
    assert "newer" in raised.value.detail


# -- the seam ------------------------------------------------------------------------------------

SQLITE_ONLY = ("pragma", "begin immediate", "without rowid", "or ignore", "sqlite_", "lastrowid")


def _imports(tree: ast.AST) -> set[str]:
    found = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names}
    return found | {node.module or "" for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and node.level == 0}


def _code_words(tree: ast.AST) -> list[str]:
    """String constants (not docstrings), keyword and attribute names, lower-cased."""
    docs = {id(node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)}
    words = [node.value for node in ast.walk(tree)
             if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs]
    words += [node.arg or "" for node in ast.walk(tree) if isinstance(node, ast.keyword)]
    words += [node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)]
    return [word.lower() for word in words]


def test_only_the_db_package_imports_a_database_library_and_only_its_sqlite_module_speaks_sqlite():
    package = ROOT / "imgz" / "db"
    for path in (ROOT / "imgz").rglob("*.py"):
        tree = ast.parse(path.read_text())
        libraries = {name.split(".")[0] for name in _imports(tree)} & {"sqlite3", "sqlalchemy"}
        if path.parent != package:
            assert not libraries, path
        elif path.name != "sqlite.py":
            assert not {n for n in _imports(tree) if "sqlite" in n}, path
            assert not [w for w in _code_words(tree) if any(s in w for s in SQLITE_ONLY)], path


def test_no_named_query_is_declared_to_return_a_driver_row():
    """What the db package hands out is records, plain values or collections of them."""
    import inspect

    checked = 0
    for name in db.__all__:
        func = getattr(db, name)
        if not inspect.isfunction(func) or name in {"connect"}:
            continue
        returns = inspect.signature(func).return_annotation
        assert returns is not inspect.Signature.empty, f"db.{name} declares no return type"
        assert not any(word in str(returns) for word in ("Row", "Result", "sqlite3", "sqlalchemy")), \
            f"db.{name} -> {returns}"
        checked += 1
    assert checked >= 25
