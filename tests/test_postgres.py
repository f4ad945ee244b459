"""The database layer on a real PostgreSQL (tests/pgserver.py): what SQLite's one write lock gave
for free, shown with several connections at once; the pool, its recovery and what it leaves open;
migrations from several processes at once; the shared rate buckets."""
from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from imgz import config, db
from imgz.errors import DatabaseBusy, DatabaseUnavailable
from imgz.service import Service
from imgz.store import for_data
from imgz.web import init_data
from test_db import NOW, new_upload, store

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def conn(pg_url):
    with contextlib.closing(db.connect(pg_url)) as connection:
        db.migrate(connection)
        yield connection


def _sql(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as other:
        cursor = other.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def _in_threads(count: int, work) -> list:
    """Run ``work(i)`` in ``count`` threads started together; return results (or raise the first error)."""
    start = threading.Barrier(count)
    results: list = [None] * count
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            start.wait()
            results[i] = work(i)
        except BaseException as exc:  # handed to the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    if errors:
        raise errors[0]
    return results


# -- values past 32 bits ---------------------------------------------------------------------------

def test_sizes_dates_and_counters_past_32_bits(conn, pg_url):
    far = NOW.replace(year=2200)
    stored = store(conn, new_upload(size=6 * 2**31, thumb_size=2**40, created_at=far,
                                    expires_at=far + timedelta(days=1)))
    _sql(pg_url, "UPDATE uploads SET views = %s WHERE id = %s", (2**33, stored.id))
    again = db.get_upload(conn, stored.public_id)
    assert (again.size, again.thumb_size, again.views) == (6 * 2**31, 2**40, 2**33)
    assert again.created_at == far and again.expires_at == far + timedelta(days=1)
    db.add_view(conn, stored.id)
    assert db.get_upload(conn, stored.public_id).views == 2**33 + 1


# -- several connections at once ------------------------------------------------------------------

def test_uploads_and_deletions_at_once_keep_every_tag_link(pg_url):
    """Uploads tagged 'shared' stored while others with that tag are deleted: a deletion that
    finds the tag unused must not take it from an upload linking it at the same moment."""
    setup = db.connect(pg_url)
    db.migrate(setup)
    setup.close()
    rounds = 25

    def work(i: int) -> list[str]:
        made: list[str] = []
        with contextlib.closing(db.connect(pg_url)) as mine:
            for n in range(rounds):
                upload = store(mine, new_upload(name=f"w{i}n{n}", tags=("shared", f"t{n % 3}")))
                if i % 2:  # every other worker deletes what it made at once
                    with db.transaction(mine):
                        assert db.delete_upload(mine, upload.id) is not None
                else:
                    made.append(upload.public_id)
        return made

    kept = [public_id for made in _in_threads(4, work) for public_id in made]
    with contextlib.closing(db.connect(pg_url)) as check:
        assert db.count_uploads(check) == len(kept) == 2 * rounds
        for public_id in kept:
            assert db.get_upload(check, public_id).tags[0] == "shared", public_id
        links = _sql(pg_url, "SELECT count(*) FROM upload_tags")[0][0]
        assert links == 2 * len(kept)


def test_the_expiry_claim_of_two_connections_takes_each_row_once(conn, pg_url):
    ids = [store(conn, new_upload(name=f"e{i}", expires_at=NOW)).id for i in range(15)]
    later = NOW + timedelta(seconds=1)
    with contextlib.closing(db.connect(pg_url)) as other:
        with db.transaction(conn):
            first = db.claim_expired(conn, later, 10)
            with db.transaction(other):
                second = db.claim_expired(other, later, 10)
                assert not db.try_lock(other, "expiry") or db.try_lock(conn, "expiry") is False
    assert sorted(first + second) == sorted(ids) and len(first) == 10 and len(second) == 5


class RecordingStore:
    """The local store, noting every key it is asked to delete."""

    def __init__(self, store, deleted: list[str]) -> None:
        self._store, self.deleted = store, deleted

    def delete(self, keys) -> None:
        keys = list(keys)
        self.deleted.extend(keys)
        self._store.delete(keys)

    def __getattr__(self, name: str):
        return getattr(self._store, name)


def test_sweeps_of_two_services_at_once_delete_each_upload_and_file_once(tmp_path, pg_url):
    cfg = config.load({}, overrides={"data": str(tmp_path), "min_free_mb": "0", "database_url": pg_url})
    init_data(cfg)
    deleted: list[str] = []
    pools = [db.LocalConnections(cfg.database) for _ in range(2)]
    services = [Service(cfg, pool.get, store=RecordingStore(for_data(cfg.data_dir), deleted))
                for pool in pools]
    conn = pools[0].get()
    made = [store(conn, new_upload(name=f"x{i}", expires_at=NOW, tags=(f"t{i % 4}",)))
            for i in range(120)]
    store(conn, new_upload(name="kept"))
    try:
        def sweep(i: int) -> int:
            total = 0
            while True:
                removed = services[i].purge_expired(NOW + timedelta(seconds=1), batch=7)
                total += removed
                if db.count_uploads(pools[i].get()) == 1:
                    return total
        removed = _in_threads(2, sweep)
        assert sum(removed) == len(made)
        assert sorted(deleted) == sorted(key for upload in made for key in upload.relpaths())
        assert db.count_uploads(conn) == 1 and db.popular_tags(conn, NOW, 10) == []
    finally:
        for pool in pools:
            pool.close_all()


# -- the pool ------------------------------------------------------------------------------------

def test_connections_leave_no_transaction_open_between_statements(pg_url):
    pool = db.LocalConnections(pg_url)
    try:
        conn = pool.get()
        db.migrate(conn)
        store(conn, new_upload())
        db.find_key(conn, "x")  # a prepared statement
        db.count_uploads(conn)  # one SQLAlchemy runs
        states = _sql(pg_url, "SELECT state FROM pg_stat_activity WHERE application_name = 'imgz'")
        assert states == [("idle",)], "the thread still holds its connection, with nothing open"
        assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "30s"
        pool.release()
        assert conn.closed and pool.get() is not conn
    finally:
        pool.close_all()


def test_a_connection_the_server_dropped_is_replaced(pg_url):
    pool = db.LocalConnections(pg_url)
    try:
        conn = pool.get()
        db.migrate(conn)
        kill = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'imgz'"
        _sql(pg_url, kill)
        with pytest.raises(DatabaseUnavailable) as raised:
            db.find_key(conn, "x")  # held by the thread: the loss is found on use
        assert raised.value.status == 503 and raised.value.headers["Retry-After"]
        assert db.find_key(pool.get(), "x") is None, "the next use has a new connection"
        _sql(pg_url, kill)
        with pytest.raises(DatabaseUnavailable):
            db.count_uploads(pool.get())
        assert db.count_uploads(pool.get()) == 0
        pool.release()
        _sql(pg_url, kill)  # in the pool: found dead by the ping before it is handed out
        assert db.count_uploads(pool.get()) == 0
        with pytest.raises(DatabaseUnavailable):  # lost in the middle of a write transaction
            with db.transaction(pool.get()):
                store(pool.get(), new_upload(name="lost"))
                _sql(pg_url, kill)
                db.add_user(pool.get(), "after", False, NOW)
        upload = store(pool.get(), new_upload(name="kept"))
        assert [u.name for u in db.iter_uploads(pool.get())] == ["kept"] and upload.id
    finally:
        pool.close_all()


def test_a_pool_with_no_free_connection_is_busy(pg_url, monkeypatch):
    from imgz.db import postgresql

    monkeypatch.setattr(postgresql, "POOL_TIMEOUT", 0.2)
    pool = db.LocalConnections(pg_url, pool_size=1, max_overflow=0)
    try:
        pool.get()
        taken = []
        thread = threading.Thread(target=lambda: taken.append(_raised(pool.get)))
        thread.start()
        thread.join(10)
        assert isinstance(taken[0], DatabaseBusy) and taken[0].status == 503
    finally:
        pool.close_all()


def _raised(call) -> BaseException | None:
    try:
        call()
    except BaseException as exc:
        return exc
    return None


def test_a_row_locked_too_long_is_busy(conn, pg_url, monkeypatch):
    import psycopg
    from imgz.db import postgresql

    monkeypatch.setattr(postgresql, "STATEMENT_TIMEOUT_MS", 200)
    with contextlib.closing(db.connect(pg_url)) as short, psycopg.connect(pg_url) as holder:
        holder.execute("INSERT INTO names VALUES ('2025/03/04/a')")  # uncommitted: the key waits
        with pytest.raises(DatabaseBusy) as raised:
            db.reserve_name(short, "2025/03/04/a")
        assert raised.value.status == 503
        assert isinstance(raised.value.__cause__, psycopg.errors.QueryCanceled)
        assert db.upload_id_for_path(short, "x") is None, "reads go on beside a writer"
        holder.rollback()
        assert db.reserve_name(short, "2025/03/04/a"), "the same connection goes on"


# -- migrations ------------------------------------------------------------------------------------

MIGRATE = """
import sys, time
from imgz import db
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
conn = db.connect(sys.argv[1])
db.migrate(conn)
print(db.schema_version_of(conn))
"""


def test_three_processes_migrate_one_new_database_at_once(pg_url):
    start = time.time() + 1.5  # every process imported and waiting
    procs = [subprocess.Popen([sys.executable, "-c", MIGRATE, pg_url, str(start)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    outputs = [proc.communicate(timeout=60) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], outputs
    assert [out.strip() for out, _ in outputs] == [str(db.SCHEMA_VERSION)] * 3
    assert _sql(pg_url, "SELECT version FROM schema_version") == [(db.SCHEMA_VERSION,)]


def test_threads_migrate_one_new_database_at_once(pg_url):
    def work(i: int) -> int:
        with contextlib.closing(db.connect(pg_url)) as mine:
            db.migrate(mine)
            return db.schema_version_of(mine)

    assert _in_threads(5, work) == [db.SCHEMA_VERSION] * 5
    assert _sql(pg_url, "SELECT version FROM schema_version") == [(db.SCHEMA_VERSION,)]


def test_first_key_is_made_once_by_processes_starting_at_once(tmp_path, pg_url):
    from imgz import cli

    cfg = config.load({}, overrides={"data": str(tmp_path), "min_free_mb": "0", "database_url": pg_url})
    init_data(cfg)
    made = _in_threads(4, lambda i: cli.first_key(cfg))
    assert len([key for key in made if key]) == 1
    assert _sql(pg_url, "SELECT count(*) FROM api_keys") == [(1,)]


# -- shared rate buckets --------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_token_buckets_in_the_database(kind, tmp_path, request):
    target = str(tmp_path / "imgz.db") if kind == "sqlite" else request.getfixturevalue("pg_url")
    with contextlib.closing(db.connect(target)) as conn:
        db.migrate(conn)
        db.prepare_buckets(conn)
        db.prepare_buckets(conn)
        take = lambda name, now: db.take_token(conn, name, 2, 0.2, now)  # noqa: E731  2 per 10 s
        assert take("a", 1000.0) == 0 and take("a", 1000.0) == 0
        assert take("a", 1000.0) == pytest.approx(5.0)
        assert take("b", 1000.0) == 0, "buckets are per name"
        assert take("a", 1004.9) == pytest.approx(0.1)
        assert take("a", 1005.0) == 0
        assert take("a", 1100.0) == 0 and take("a", 1100.0) == 0 and take("a", 1100.0) > 0
        assert take("c", 990.0) == 0, "a clock behind the stored stamp refills nothing"
        assert db.bucket_count(conn) == 3
        assert db.prune_buckets(conn, 1100.0) == 2, "b and c are full again, a is empty"
        assert db.prune_buckets(conn, 1109.0) == 0
        assert db.prune_buckets(conn, 1110.0) == 1 and db.bucket_count(conn) == 0


def test_a_shared_limiter_rounds_waits_up_and_prunes_once_a_minute():
    from imgz.ratelimit import PRUNE_EVERY, Limit, SharedLimiter

    now = [1000.0]
    asked: list[tuple] = []
    pruned: list[float] = []
    waits = iter([0.0, 0.2, 7.5, 0.0])
    limiter = SharedLimiter(Limit(3, 60), lambda *args: asked.append(args) or next(waits),
                            pruned.append, clock=lambda: now[0])
    assert [limiter.hit("k"), limiter.hit("k"), limiter.hit("k")] == [0, 1, 8]
    assert asked[0] == ("k", 3.0, 0.05, 1000.0) and pruned == []
    now[0] += PRUNE_EVERY
    assert limiter.hit("k") == 0 and pruned == [now[0]]
