"""Several ``python app.py serve`` processes on one PostgreSQL database and one S3 bucket behave as
one server: what one does, the others see at once.

Real processes on real engines: PostgreSQL (tests/pgserver.py) and SeaweedFS (tests/s3server.py).
Two of the three processes share a data dir, as processes on one host do; the third has its own,
as another host would.
"""
from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

import media
from conftest import LiveServer
from inprocess import settings_env
from people import add_user, sign_in

# Run once, in the default run: it sets up its own engines whatever the run's pair.
pytestmark = pytest.mark.local_only


def start_processes(tmp_path: Path, pg_url: str, bucket, count: int = 3, **settings) -> list[LiveServer]:
    env = {**bucket.env(), "IMGZ_DATABASE_URL": pg_url, **settings_env(settings)}
    first = LiveServer(tmp_path / "host-a", env)
    others = [LiveServer(tmp_path / ("host-a" if i == 1 else f"host-{i}"), env) for i in range(1, count)]
    for other in others:
        other.key = first.key  # the first start made the one first key, in the shared database
    return [first, *others]


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def upload(srv: LiveServer, data: bytes, name: str, key: str | None = None, **fields) -> dict:
    answer = srv.upload(data, filename=name, api_key=key or srv.key, **fields)
    assert answer.status_code == 200, answer.text
    return answer.json()["image"]


@pytest.fixture
def processes(tmp_path, pg_url, s3):
    started = start_processes(tmp_path, pg_url, s3, rate_limit_key="6/600")
    yield started
    for srv in started:
        srv.stop()


def test_processes_on_one_database_and_bucket_are_one_server(processes, s3):
    a, b, c = processes
    assert a.data == b.data != c.data
    data = media.png(800, 600, color=(10, 200, 30))
    image = upload(a, data, "shared.png")
    file_path, viewer = path_of(image["url"]), path_of(image["url_viewer"])

    # made through A: served, shown and listed through B and C at once
    for srv in (b, c):
        got = srv.get(file_path)
        assert got.status_code == 200 and hashlib.md5(got.content).hexdigest() == image["checksum"]
        assert srv.get(viewer).status_code == 200
    listed = c.command("upload", "list")
    assert listed.returncode == 0 and image["name"] in listed.stdout
    assert len(s3.keys()) == 3 and a.local_files() == c.local_files() == []

    # deleted through B: gone from A and C at once, files and row
    assert b.get(path_of(image["delete_url"])).status_code == 200  # the confirmation page
    deleted = b.delete(path_of(image["delete_url"]), headers={"Accept": "application/json"})
    assert deleted.status_code == 200, deleted.text
    for srv in (a, c):
        assert srv.get(file_path).status_code == 404
        assert srv.head(file_path).status_code == 404
        assert srv.get(viewer).status_code == 404
    assert s3.keys() == [] and a.rows() == 0


def test_a_key_revoked_through_one_process_is_refused_by_all_at_once(processes):
    a, b, c = processes
    made = b.command("key", "create", "--label", "phone")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().split()[-1]
    upload(a, media.png(8, 8), "before.png", key=key)
    key_id = [line.split()[0] for line in c.command("key", "list").stdout.splitlines() if "phone" in line][0]
    assert c.command("key", "revoke", key_id).returncode == 0
    for srv in (a, b):
        refused = srv.upload(media.png(8, 8), filename="after.png", api_key=key)
        assert refused.status_code in (401, 403), refused.text
        assert "error" in refused.json()


def test_a_session_made_through_one_process_works_and_ends_in_all(processes):
    a, b, c = processes
    add_user(a.config.database, "ann", "correct horse battery")
    http, token = sign_in(a.url, "ann")  # its cookie goes to every port of 127.0.0.1
    for srv in (b, c):
        assert http.get(f"{srv.url}/keys", allow_redirects=False, timeout=10).status_code == 200
    # the token made through A is good on B: one secret signs every process's cookies
    answer = http.post(f"{b.url}/api/1/upload", headers={"X-CSRFToken": token},
                       files={"source": ("s.png", media.png(9, 9))}, timeout=60)
    assert answer.status_code == 200, answer.text
    assert c.query("SELECT users.name FROM uploads JOIN users ON users.id = uploads.user_id") == [("ann",)]
    cookie = {"imgz_session": http.cookies["imgz_session"]}
    assert http.post(f"{c.url}/signout", data={"csrf_token": token}, allow_redirects=False,
                     timeout=10).status_code == 303
    for srv in (a, b):  # the old cookie, sent again, is signed in nowhere
        assert requests.get(f"{srv.url}/keys", cookies=cookie, allow_redirects=False,
                            timeout=10).status_code == 303


def test_the_rate_limit_of_a_key_is_shared_by_every_process(processes):
    a, b, c = processes
    key = b.command("key", "create").stdout.strip().split()[-1]
    turns = [a, b, c, a, b, c]
    for srv in turns:  # six a key may make in ten minutes, spread over three processes
        upload(srv, media.png(8, 8), "turn.png", key=key)
    for srv in (a, b, c):
        refused = srv.upload(media.png(8, 8), filename="over.png", api_key=key)
        assert refused.status_code == 429, refused.text
        assert int(refused.headers["Retry-After"]) >= 1


def test_the_expiry_sweep_removes_each_expired_upload_once_across_processes(tmp_path, pg_url, s3):
    started = start_processes(tmp_path, pg_url, s3, expiry_interval="0.3", expiration_min="1")
    try:
        a, b, c = started
        going = [upload(srv, media.png(16, 16, color=(i, 0, 0)), f"going{i}.png", expiration="PT2S")
                 for i, srv in enumerate([a, b, c, a, b, c, a, b])]
        staying = [upload(srv, media.png(800, 600), "staying.png") for srv in (a, c)]
        deadline = time.monotonic() + 20
        while a.rows() > len(staying) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert a.rows() == len(staying)
        time.sleep(1)  # a few more sweeps by every process: nothing more to find
        kept = {path_of(image["url"]).split("/images/")[1] for image in staying}
        assert {key.split("/", 1)[1] for key in s3.keys() if key.endswith((".png",)) and
                ".th." not in key and ".md." not in key} == kept
        assert len(s3.keys()) == 3 * len(staying)
        for image in going:
            assert b.get(path_of(image["url"])).status_code == 404
        removed = sum(int(n) for srv in started for line in srv.stderr
                      for n in re.findall(r"expiry sweep removed (\d+)", line))
        assert removed == len(going), "each expired upload removed once, by one of the processes"
        assert [srv for srv in started if any("expiry sweep removed" in line for line in srv.stderr)]
    finally:
        for srv in started:
            srv.stop()
