"""Running it for years: /healthz and /readyz (their codes when the database or the disk fails),
/metrics parsed by prometheus_client's parser with counters moving as requests are made (from
several threads at once), the access log with no secret in it after every kind of request, and
the Cache-Control of viewer pages."""
from __future__ import annotations

import re
import shutil
import threading
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

import media
from conftest import LiveServer
from contract import assert_upload_ok
from people import PASSWORD, add_user, csrf_of, sign_in
from tusclient import Tus

pytestmark = pytest.mark.paired

LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (\S+) ([A-Z]+) (\S+) (\d{3}) (\d+) "
                  r"(\d+\.\d{4})$")


def _wait_for(check, what: str, seconds: float = 30):
    deadline = time.monotonic() + seconds
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"still not {what} after {seconds} s")
        time.sleep(0.2)


def _ready(srv: LiveServer) -> requests.Response:
    return srv.get("/readyz")


# -- health ----------------------------------------------------------------------------------


def _break_database(srv: LiveServer):
    """Make the server's database fail, and return how to mend it."""
    url = srv.config.database_url
    if url:
        import pgserver

        name = url.rsplit("/", 1)[1]
        server = pgserver.shared()
        server.admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        server.admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
        return lambda: server.admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    db = Path(srv.config.db)
    away = db.with_name("moved-away.db")
    db.rename(away)
    return lambda: away.rename(db)


def test_health_and_readiness_when_the_database_fails(make_server):
    srv = make_server()
    assert srv.get("/healthz").status_code == 200
    answer = _ready(srv)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("application/json")
    assert answer.json()["checks"].keys() == {"database", "store", "disk"}
    assert all(check["ok"] for check in answer.json()["checks"].values())

    mend = _break_database(srv)
    try:
        # (a Response is false when it is an error: the check gives it in a list)
        failing, = _wait_for(lambda: (r := _ready(srv)).status_code == 503 and [r], "503")
        checks = failing.json()["checks"]
        assert checks["database"] == {"ok": False, "error": "failed",
                                      "seconds": checks["database"]["seconds"]}
        assert checks["store"]["ok"] and checks["disk"]["ok"]
        assert srv.get("/healthz").status_code == 200  # the process still answers
        # nothing of the set-up is told: no path, no address, no driver's words
        assert str(srv.data) not in failing.text and "postgresql" not in failing.text.lower()
    finally:
        mend()
    _wait_for(lambda: _ready(srv).status_code == 200, "ready again")


def test_readiness_when_the_disk_is_below_the_free_space_floor(make_server):
    free_mb = shutil.disk_usage(Path(__file__).parent).free // 1_000_000
    srv = make_server(min_free_mb=str(10 * free_mb + 10**7))
    answer = _ready(srv)
    assert answer.status_code == 503
    checks = answer.json()["checks"]
    assert not checks["disk"]["ok"] and checks["database"]["ok"] and checks["store"]["ok"]
    assert srv.get("/healthz").status_code == 200


# -- metrics ---------------------------------------------------------------------------------


def _samples(srv: LiveServer, **headers: str) -> dict[tuple, float]:
    answer = srv.get("/metrics", headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/plain; version=")
    found = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _value(samples: dict[tuple, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_requests_uploads_errors_and_sweeps(make_server):
    srv = make_server(metrics="1", expiration_min="1", expiry_interval="0.5",
                      threads="8")
    before = _samples(srv)
    assert _value(before, "imgz_upload_queue_depth") == 0
    assert _value(before, "imgz_upload_queue_limit") > 0
    images = [assert_upload_ok(srv.upload(media.png(40 + i, 30))) for i in range(2)]
    assert srv.upload(media.png(40, 30), api_key="imgz_wrong").status_code == 401
    file_path = "/images/" + images[0]["url"].split("/images/", 1)[1]

    def fetch() -> None:
        with requests.Session() as http:
            for _ in range(25):
                assert http.get(srv.url + file_path, timeout=30).status_code == 200

    threads = [threading.Thread(target=fetch) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert srv.get(images[0]["path_viewer"]).status_code == 200
    assert srv.get("/image/nothing0").status_code == 404

    after = _samples(srv)

    def moved(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert moved("imgz_http_requests_total", route="file", status="200") == 200
    assert moved("imgz_http_request_duration_seconds_count", route="file") == 200
    assert moved("imgz_http_response_bytes_total", route="file") == 200 * images[0]["size"]
    assert moved("imgz_http_requests_total", route="upload", status="200") == 2
    assert moved("imgz_http_requests_total", route="upload", status="401") == 1
    assert moved("imgz_http_requests_total", route="viewer", status="200") == 1
    assert moved("imgz_http_requests_total", route="viewer", status="404") == 1
    assert moved("imgz_uploads_total", kind="image", format="png") == 2
    assert moved("imgz_upload_stored_bytes_sum", kind="image") == sum(i["size"] for i in images)
    assert moved("imgz_upload_processing_seconds_count", kind="image") == 2
    assert moved("imgz_errors_total", status="401", code="100") == 1
    assert moved("imgz_errors_total", status="404", code="404") == 1
    assert _value(after, "imgz_http_requests_total", route="metrics", status="200") >= 1
    assert _value(after, "process_cpu_seconds_total") > 0

    # an upload that expires in a second is swept, and the sweep counted
    assert_upload_ok(srv.upload(media.png(20, 20), expiration="1"))
    swept = _wait_for(lambda: (s := _samples(srv)) and
                      _value(s, "imgz_expiry_removed_uploads_total")
                      - _value(before, "imgz_expiry_removed_uploads_total") >= 1 and s, "swept")
    assert _value(swept, "imgz_expiry_sweeps_total") > _value(before, "imgz_expiry_sweeps_total")


def test_metrics_answer_only_loopback_without_proxy_headers_or_the_token(make_server):
    token = "t0ken-" + "x" * 20
    srv = make_server(metrics="1", metrics_token=token)
    assert srv.get("/metrics").status_code == 200
    for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP", "X-Forwarded-Proto"):
        value = "for=192.0.2.1" if header == "Forwarded" else "192.0.2.1"
        assert srv.get("/metrics", headers={header: value}).status_code == 403, header
    assert srv.get("/metrics", headers={"X-Forwarded-For": "192.0.2.1",
                                        "Authorization": f"Bearer {token}"}).status_code == 200
    assert srv.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 403
    off = make_server()
    assert off.get("/metrics").status_code == 404
    assert token not in "".join(srv.stderr + srv.stdout)


# -- the access log --------------------------------------------------------------------------


def test_the_access_log_has_a_line_per_request_and_no_secret(make_server):
    srv = make_server()
    secrets = [srv.key, srv.admin_link.rsplit("/", 1)[1]]
    # uploads: the key in the header, in ?key=, as a form field
    first = assert_upload_ok(srv.upload(media.png(30, 30)))
    second = assert_upload_ok(srv.upload(media.png(31, 30), api_key=None, params={"key": srv.key}))
    third = assert_upload_ok(srv.upload(media.png(32, 30), api_key=None, key=srv.key))
    assert srv.get("/sharex.sxcu", params={"key": srv.key}).status_code == 200
    file_path = "/images/" + first["url"].split("/images/", 1)[1]
    assert srv.get(file_path).status_code == 200
    assert srv.get(first["path_viewer"]).status_code == 200
    # deletes: the page, a script's DELETE, the page's POST
    for image in (second, third):
        secrets.append(image["delete_url"].rsplit("/", 1)[1])
    assert srv.get(second["delete_url"]).status_code == 200
    assert srv.delete(second["delete_url"], headers={"Accept": "application/json"}).status_code == 200
    assert srv.get(third["delete_url"]).status_code == 200
    assert srv.post(third["delete_url"], data={"confirm": "page"},
                    allow_redirects=False).status_code in (200, 303)
    # the one-time link, opened then used; a sign-in; a page signed in
    http = requests.Session()
    link_page = http.get(srv.admin_link, timeout=10)
    assert link_page.status_code == 200
    new_password = "another horse battery staple"
    used = http.post(srv.admin_link, data={"csrf_token": csrf_of(link_page.text),
                                           "password": new_password, "again": new_password},
                     allow_redirects=False, timeout=30)
    assert used.status_code == 303, used.text[:300]
    add_user(srv.config.database, "ann")
    session, csrf = sign_in(srv.url, "ann")
    assert session.get(srv.url + "/uploads", timeout=10).status_code == 200
    cookies = [c.value for c in [*http.cookies, *session.cookies]]
    secrets += cookies + [csrf, new_password, "correct horse battery"]
    # a resumable upload
    tus = Tus(srv)
    location = tus.location(len(media.png(50, 50)))
    secrets.append(location.rsplit("/", 1)[1])
    tus.send(location, media.png(50, 50), 1024)
    assert_upload_ok(tus.finish(location))
    # a key in the query on a page that wants none
    assert srv.get("/", params={"key": srv.key, "token": "abcdefabcdef0123"}).status_code == 200
    secrets.append("abcdefabcdef0123")

    def lines() -> list[str]:
        return [line.rstrip("\n") for line in srv.stderr if LINE.match(line.rstrip("\n"))]

    _wait_for(lambda: any(" /?key=" in line for line in lines()), "logged")  # the last request
    log = "\n".join(srv.stderr)
    for secret in secrets:
        assert secret and secret not in log, secret
    logged = [LINE.match(line).groups() for line in lines()]
    assert ("127.0.0.1", "GET", file_path, "200", str(first["size"])) in [g[:5] for g in logged]
    paths = [g[2] for g in logged]
    assert "/api/1/upload?key=***" in paths
    assert any(p.endswith("/delete/***") for p in paths)
    assert "/password/***" in paths
    assert "/api/1/tus/***" in paths and "/api/1/tus/***/finish" in paths
    assert "/?key=***&token=***" in paths
    assert "/signin" in paths and "/sharex.sxcu?key=***" in paths


def test_the_access_log_names_the_forwarded_client_when_the_proxy_is_trusted(make_server):
    srv = make_server(trust_proxy="1")
    hop = {"X-Forwarded-For": "198.51.100.7"}
    assert srv.get("/healthz", headers=hop).status_code == 200
    # refused by the gate before the application runs: the same address
    refused = srv.upload(b"x" * 2_000_000, api_key="imgz_wrong",
                         headers={"X-Forwarded-For": "198.51.100.9"})
    assert refused.status_code == 401

    def found() -> list[tuple]:
        return [LINE.match(line.rstrip("\n")).groups()[:4] for line in srv.stderr
                if LINE.match(line.rstrip("\n"))]

    _wait_for(lambda: ("198.51.100.9", "POST", "/api/1/upload", "401") in found(), "logged")
    assert ("198.51.100.7", "GET", "/healthz", "200") in found()


def test_no_access_log_when_it_is_off(make_server):
    srv = make_server(access_log="0")
    assert srv.get("/healthz").status_code == 200
    assert_upload_ok(srv.upload(media.png(30, 30)))
    assert not [line for line in srv.stderr if LINE.match(line.rstrip("\n"))]


# -- viewer pages ----------------------------------------------------------------------------


def test_viewer_pages_are_kept_a_minute_signed_out_and_never_signed_in(make_app):
    srv = make_app(expiration_min=1)
    image = assert_upload_ok(srv.upload(media.png(30, 30)))
    page = srv.get(image["path_viewer"])
    assert page.status_code == 200
    assert page.headers["Cache-Control"] in ("public, max-age=60", "max-age=60, public")
    assert "Cookie" in page.headers["Vary"]
    assert "Set-Cookie" not in page.headers
    soon = assert_upload_ok(srv.upload(media.png(31, 30), expiration="20"))
    age = int(re.search(r"max-age=(\d+)", srv.get(soon["path_viewer"]).headers["Cache-Control"])[1])
    assert 0 < age <= 20
    add_user(srv.config.database, "ann")
    browser = srv.flask.test_client()
    token = csrf_of(browser.get("/signin").get_data(as_text=True))
    assert browser.post("/signin", data={"csrf_token": token, "name": "ann",
                                         "password": PASSWORD}).status_code == 303
    mine = browser.get(image["path_viewer"])
    assert mine.status_code == 200
    assert mine.headers["Cache-Control"] == "private, no-store"
