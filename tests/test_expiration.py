"""Expiring uploads end to end: the answer, 404 from the expiry instant, the sweep, restarts."""
from __future__ import annotations

import fcntl
import logging
import os
import time
from datetime import datetime, timedelta, timezone

import pytest

import backends
import helpers
import media
from conftest import LiveServer
from contract import assert_error, assert_upload_ok
from inprocess import InProcess
from imgz import config, db, jobs
from imgz.web import init_data
from imgz.service import Service


def _urls(image: dict) -> list[str]:
    urls = [image["url"], image["thumb"]["url"], image["url_viewer"], image["url_short"]]
    if image["medium"]["url"]:
        urls.append(image["medium"]["url"])
    return urls


def _wait_until(check, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def test_answer_carries_the_expiry(server):
    before = datetime.now(timezone.utc).replace(microsecond=0)
    image = assert_upload_ok(server.upload(media.png(20, 20), expiration="P3D"))
    expiry = datetime.strptime(image["expiration_date_gmt"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
    assert before + timedelta(days=3) <= expiry <= before + timedelta(days=3, seconds=5)
    cache = server.get(image["url"]).headers["Cache-Control"]
    max_age = int(cache.split("max-age=")[1].split(",")[0])
    assert "immutable" not in cache and 3 * 86400 - 10 <= max_age <= 3 * 86400


def test_imgbb_envelope_gives_seconds_left(server):
    response = server.upload(media.png(20, 20), field="image", expiration="PT1H")
    assert response.json()["data"]["expiration"] == 3600


@pytest.mark.parametrize("value", ["abc", "P", "PT", "PT0S", "0", "-PT5M", "-600"])
def test_invalid_expiration_is_refused_and_nothing_stored(server, value):
    rows = server.rows()
    assert_error(server.upload(media.png(20, 20), expiration=value), 400, 400, "Invalid expiration")
    assert server.rows() == rows


def test_expired_uploads_disappear(make_app, caplog):
    caplog.set_level(logging.INFO, logger="imgz")
    srv = make_app(jobs=True, expiration_min="1", expiry_interval="1")
    keep = assert_upload_ok(srv.upload(media.png(700, 400)))
    going = assert_upload_ok(srv.upload(media.png(700, 400), expiration="PT2S"))
    for url in _urls(going):
        assert srv.get(url).status_code in {200, 302}, url
    on_disk = [p for p in srv.stored_files() if going["name"] in p]
    assert len(on_disk) == 3
    time.sleep(2.1)
    for url in _urls(going):
        assert srv.get(url).status_code == 404, url
    assert _wait_until(lambda: srv.rows() == 1
                       and not any(going["name"] in p for p in srv.stored_files()), 1 + 2)
    for url in _urls(keep):
        assert srv.get(url).status_code in {200, 302}
    # the sweep logs after removing, on the scheduler's thread
    assert _wait_until(lambda: "expiry sweep removed 1 expired upload" in caplog.text, 5)


def test_expiry_survives_a_restart(tmp_path):
    data = tmp_path / "d"
    first = InProcess(data, {"IMGZ_EXPIRATION_MIN": "1", "IMGZ_EXPIRY_INTERVAL": "3600"}, jobs=True)
    try:
        image = assert_upload_ok(first.upload(media.png(30, 30), expiration="PT1S"))
        key = first.key
    finally:
        first.stop()
    assert any(image["name"] in p for p in first.stored_files())
    time.sleep(1.2)
    second = InProcess(data, {"IMGZ_EXPIRATION_MIN": "1", "IMGZ_EXPIRY_INTERVAL": "3600"}, jobs=True)
    try:
        second.key = key
        # the interval is an hour: only the sweep at start can remove it (its files, then its
        # row, in one transaction)
        assert _wait_until(lambda: second.rows() == 0
                           and not any(image["name"] in p for p in second.stored_files()), 5)
        assert second.get(image["url"].replace(first.url, second.url)).status_code == 404
    finally:
        second.stop()


def test_expire_command_prints_the_count(tmp_path):
    data = tmp_path / "d"
    srv = InProcess(data, {"IMGZ_EXPIRATION_MIN": "1", "IMGZ_EXPIRY_INTERVAL": "3600"})
    try:
        assert_upload_ok(srv.upload(media.png(30, 30), expiration="PT1S"))
        assert_upload_ok(srv.upload(media.png(30, 30), expiration="PT1S"))
        assert_upload_ok(srv.upload(media.png(30, 30)))
    finally:
        srv.stop()
    time.sleep(1.2)
    result = srv.command("expire")
    assert result.returncode == 0 and result.stdout.strip() == "2"
    assert srv.command("expire").stdout.strip() == "0"


def _service(tmp_path) -> Service:
    cfg = config.load(backends.in_process(tmp_path), overrides={"data": str(tmp_path), "min_free_mb": "0"})
    init_data(cfg)
    return Service(cfg, db.LocalConnections(cfg.database).get)


@pytest.mark.local_only  # the lock of one data dir's processes; PostgreSQL has its own
def test_sweep_waits_for_another_process_holding_the_lock(tmp_path):
    service = _service(tmp_path)
    with open(tmp_path / "expiry.lock", "a+b") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert jobs.sweep(service) is None
    assert jobs.sweep(service) == 0


def test_scheduler_starts_once_per_process(tmp_path):
    from imgz.web import create_app

    try:
        first = jobs.start(_service(tmp_path / "a"))
        second = jobs.start(_service(tmp_path / "b"))
        assert first is second and first.running
        assert len(first.get_jobs()) == 2
        create_app({"data": str(tmp_path / "c"), "min_free_mb": "0"},
                   environ={**os.environ, **backends.in_process(tmp_path / "c")})
        assert jobs._scheduler is first and len(first.get_jobs()) == 3
    finally:
        jobs.stop()
    assert not first.running


def test_server_stops_cleanly_on_sigterm(tmp_path):
    srv = LiveServer(tmp_path / "d")
    srv.proc.terminate()
    assert srv.proc.wait(timeout=10) == 0
    assert _wait_until(lambda: any("stopped" in line for line in srv.stderr), 5)
    assert not any("Traceback" in line for line in srv.stderr)


def test_sweep_removes_rows_tags_and_every_file(tmp_path):
    from imgz.records import Actor, Options
    from imgz.sources import Incoming
    from imgz import spool

    service = _service(tmp_path)
    now = datetime.now(timezone.utc)

    def upload(tags, expires_at):
        writer = spool.write_bytes(service.data, media.png(700, 400), 10_000_000, 10)
        writer.close()
        incoming = Incoming(writer.path, writer.md5, writer.size, "a.png", "file")
        return service.upload(incoming, Actor(1, True), Options(tags=tags, expires_at=expires_at))[0]

    gone = upload(["only-here", "shared"], now + timedelta(seconds=60))
    kept = upload(["shared"], None)
    assert service.purge_expired(now + timedelta(seconds=30)) == 0
    assert service.purge_expired(now + timedelta(seconds=61)) == 1
    conn = service.connection()
    assert db.get_upload(conn, gone.public_id) is None
    assert [r[0] for r in helpers.query(service.config.database, "SELECT name FROM tags")] == ["shared"]
    assert db.get_upload(conn, kept.public_id).tags == ("shared",)
    names = [key.rpartition("/")[2] for key in service.store.list()]
    assert len(names) == 3 and not any(n.startswith(gone.name) for n in names)


@pytest.mark.parametrize("value", ["P1000000000D", "PT99999999999999999999S", "P1M1000000000D",
                                   "99999999999999999999", "P9999999999Y", "PT" + "9" * 5_000 + "S"])
def test_long_valid_expiration_is_clamped_to_the_maximum(server, value):
    before = datetime.now(timezone.utc).replace(microsecond=0)
    image = assert_upload_ok(server.upload(media.png(20, 20), expiration=value))
    expiry = datetime.strptime(image["expiration_date_gmt"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
    assert before + timedelta(days=366) <= expiry <= before + timedelta(days=366, seconds=5)
    assert server.get(image["url"]).status_code == 200
