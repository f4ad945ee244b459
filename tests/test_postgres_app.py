"""imgz on PostgreSQL (tests/pgserver.py) through its API and pages: uploads stored, served,
listed and deleted through two apps sharing the database; the database stopped and started
again under a running app; shared rate limits and sweeps; and what a start without PostgreSQL's
library, or without its server, says. A default start loads none of it."""
from __future__ import annotations

import fcntl
import json
import subprocess
import time
import sys
from datetime import timedelta
from pathlib import Path

import pytest

import media
from commands import run_command
from contract import assert_error, assert_upload_ok
from imgz import config, db, jobs
from imgz.errors import ConfigError
from imgz.web import init_data

ROOT = Path(__file__).resolve().parent.parent
PNG = media.png(64, 48)


def _count(app) -> int:
    return db.count_uploads(app.service.connection())


def test_two_apps_on_one_database_are_one_server(make_app, pg_url):
    first = make_app(database_url=pg_url)
    second = make_app(database_url=pg_url)
    second.key = first.key  # one database: one set of keys
    assert first.key
    image = assert_upload_ok(first.upload(PNG, title="Sea", tags="sea,sky"))
    # the files are local to each app here: B reads the row A wrote
    assert first.get(image["url"]).status_code == 200
    page = second.get(image["url_viewer"].replace(first.url, second.url))
    assert page.status_code == 200 and "Sea" in page.text
    assert db.get_upload(second.service.connection(), image["id_encoded"]).tags == ("sea", "sky")
    listed = run_command("--data", str(second.data), "upload", "list",
                         env={"IMGZ_DATABASE_URL": pg_url})
    assert listed.returncode == 0 and image["id_encoded"] in listed.stdout, listed
    done = second.post(image["delete_url"].replace(first.url, second.url), timeout=10)
    assert done.status_code == 200 and "Deleted" in done.text
    assert _count(first) == 0
    assert first.get(image["url_viewer"]).status_code == 404


def test_upload_serve_and_delete_through_the_api(make_app, pg_url):
    srv = make_app(database_url=pg_url)
    image = assert_upload_ok(srv.upload(media.jpeg(800, 600), tags="beach", expiration="P1D"))
    for url in (image["url"], image["thumb"]["url"], image["medium"]["url"]):
        got = srv.get(url)
        assert got.status_code == 200 and got.headers["Content-Type"] == image["mime"]
    assert srv.get(got.url, headers={"If-None-Match": got.headers["ETag"]}).status_code == 304
    assert srv.get(image["url_viewer"]).status_code == 200
    assert _count(srv) == 1 and len(srv.stored_files()) == 3
    assert srv.post(image["delete_url"], timeout=10).status_code == 200
    assert srv.get(image["url"]).status_code == 404 and srv.stored_files() == []
    assert _count(srv) == 0


def test_a_stopped_database_is_503_and_the_app_recovers_by_itself(make_app, pg_url, postgres):
    srv = make_app(database_url=pg_url)
    image = assert_upload_ok(srv.upload(PNG))
    files = srv.stored_files()
    postgres.stop()
    try:
        response = srv.upload(media.png(40, 30))
        body = assert_error(response, 503, 503, "Database unavailable - retry in 5 s")
        assert response.headers["Retry-After"] == "5" and body["status_txt"]
        txt = srv.upload(media.png(40, 30), params={"format": "txt"})
        assert txt.status_code == 503 and txt.text.startswith("Database unavailable")
        page = srv.get(image["url_viewer"])
        assert page.status_code == 503 and "Database unavailable" in page.text
        assert page.headers["Content-Type"].startswith("text/html")
        served = srv.get(image["url"])  # the file's lookup, in front of the application
        assert served.status_code == 503 and served.headers["Retry-After"] == "5"
        assert srv.stored_files() == files and srv.tmp_files() == [], "nothing stored"
    finally:
        postgres.start()
    assert_upload_ok(srv.upload(media.png(40, 30)))
    assert srv.get(image["url"]).status_code == 200
    assert _count(srv) == 2 and len(srv.stored_files()) == len(files) + 2


def test_rate_limits_are_shared_by_apps_on_one_database(make_app, pg_url):
    first = make_app(database_url=pg_url, rate_limit_key="3/60")
    second = make_app(database_url=pg_url, rate_limit_key="3/60")
    second.key = first.key
    assert_upload_ok(first.upload(PNG))
    assert_upload_ok(second.upload(PNG))
    assert_upload_ok(first.upload(PNG))
    response = second.upload(PNG)
    assert_error(response, 429, 429)
    assert 1 <= int(response.headers["Retry-After"]) <= 20
    assert_error(first.upload(PNG), 429, 429)
    assert _count(first) == 3


def test_the_sweep_takes_the_databases_lock_not_the_data_dirs(make_app, pg_url):
    srv = make_app(database_url=pg_url, expiration_min=1)
    image = assert_upload_ok(srv.upload(PNG, expiration="PT1S"))
    assert_upload_ok(srv.upload(PNG))
    service = srv.service
    later = service.now() + timedelta(seconds=5)
    service.now = lambda: later
    with open(srv.data / "expiry.lock", "a+b") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another process on this data dir: no matter here
        assert jobs.sweep(service) == 1
    assert jobs.sweep(service) == 0
    assert srv.get(image["url"]).status_code == 404 and len(srv.stored_files()) == 2
    assert _count(srv) == 1


# -- starting without PostgreSQL --------------------------------------------------------------------

DEFAULT_START = """
import json, sys, tempfile
from imgz.web import create_app
create_app({"data": tempfile.mkdtemp(), "min_free_mb": "0"}, jobs=False)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "psycopg"
                        or m.startswith("sqlalchemy.dialects.postgresql"))))
"""


def test_a_default_start_loads_nothing_of_postgresql():
    done = subprocess.run([sys.executable, "-c", DEFAULT_START], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


WITHOUT_PSYCOPG = """
import sys
sys.modules["psycopg"] = None  # as if it were not installed
from imgz import cli
sys.exit(cli.run(["user", "list"]))
"""


def test_postgresql_without_its_library_stops_the_start_with_one_line(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "IMGZ_DATA": str(tmp_path),
           "IMGZ_DATABASE_URL": "postgresql://imgz:hunter2@127.0.0.1:9/imgz"}
    done = subprocess.run([sys.executable, "-c", WITHOUT_PSYCOPG], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env=env)
    assert done.returncode == 2 and done.stdout == ""
    line = done.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert line.startswith("imgz: bad setting: IMGZ_DATABASE_URL='postgresql://imgz:***@127.0.0.1:9/imgz'")
    assert "psycopg" in line and "requirements-scale.txt" in line and "hunter2" not in line


def test_an_unreachable_database_stops_the_start_with_one_line(tmp_path, postgres):
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql://imgz:hunter2@127.0.0.1:{port}/imgz"
    cfg = config.load({}, overrides={"data": str(tmp_path), "database_url": url})
    with pytest.raises(ConfigError) as raised:
        init_data(cfg)
    line = str(raised.value)
    assert line.startswith(f"IMGZ_DATABASE_URL='postgresql://imgz:***@127.0.0.1:{port}/imgz': "
                           "cannot open it: ")
    assert "\n" not in line and "hunter2" not in line and "refused" in line.lower()


def test_a_nul_in_a_looked_up_value_finds_nothing_on_postgresql(pg_url, make_app):
    """PostgreSQL refuses a NUL in text: every lookup by a client's value answers as for an
    unknown one, as on SQLite, never a 500."""
    srv = make_app(database_url=pg_url)
    assert srv.upload(media.png(8, 8), album_id="\x00").json()["error"]["message"] == "Album not found"
    for path in ("/image/abc%00", "/images/2026/01/01/a%00.png", "/tag/a%00", "/delete/abc%00/x"):
        assert srv.get(path).status_code == 404, path


def test_a_stopped_database_under_a_real_server_is_503_without_a_trace_from_the_gate(
        make_server, pg_url, postgres):
    """Through waitress the key gate reads the key first, on the server's loop thread: a database
    that fails that read lets the request go on to the application's 503, and is not asked again
    by the gate for a moment (the loop never waits on it twice in a row)."""
    srv = make_server(database_url=pg_url)
    big = media.png(900, 700)
    assert_upload_ok(srv.upload(big))
    postgres.stop()
    try:
        started = time.monotonic()
        for _ in range(3):
            response = srv.upload(big)
            assert_error(response, 503, 503, "Database unavailable - retry in 5 s")
        assert srv.get("/").status_code == 200, "pages without the database still answer"
        assert time.monotonic() - started < 30
    finally:
        postgres.start()
    assert_upload_ok(srv.upload(big))
    log = "".join(srv.stderr)
    assert "Traceback" not in log and "gate" not in log.lower(), log[-2000:]
