"""Flood protection: token buckets, 429 with Retry-After, per key and per address."""
from __future__ import annotations

import inspect

import pytest

import media
from contract import assert_error, assert_upload_ok
from imgz import api, auth, ids, lookup, views
from imgz.ratelimit import Limit, Limiter, parse_limit

PNG = media.png(16, 16)


@pytest.mark.parametrize("text,limit", [("60/60", Limit(60, 60)), (" 5 / 1.5 ", Limit(5, 1.5)),
                                        ("", None), ("0", None)])
def test_parse_limit(text, limit):
    assert parse_limit(text) == limit


@pytest.mark.parametrize("text", ["60", "a/b", "0/60", "5/0", "-1/60"])
def test_parse_limit_refuses(text):
    with pytest.raises(ValueError):
        parse_limit(text)


def test_bucket_refills_steadily():
    now = [0.0]
    limiter = Limiter(Limit(2, 10), clock=lambda: now[0])
    assert limiter.hit("a") == 0 and limiter.hit("a") == 0
    assert limiter.hit("a") == 5
    assert limiter.hit("b") == 0, "buckets are per name"
    now[0] = 4.9
    assert limiter.hit("a") == 1
    now[0] = 5.0
    assert limiter.hit("a") == 0
    now[0] = 100.0
    assert limiter.hit("a") == 0 and limiter.hit("a") == 0 and limiter.hit("a") > 0


def test_bucket_memory_is_bounded(monkeypatch):
    import imgz.ratelimit as rl

    monkeypatch.setattr(rl, "MAX_BUCKETS", 100)
    now = [0.0]
    limiter = Limiter(Limit(5, 1), clock=lambda: now[0])
    for i in range(1000):
        now[0] += 1
        limiter.hit(str(i))
    assert len(limiter._buckets) <= 101


def test_per_key_limit(make_app):
    srv = make_app(rate_limit_key="3/60")
    other = srv.command("key", "create").stdout.strip()
    for _ in range(3):
        assert_upload_ok(srv.upload(PNG))
    rows = srv.rows()
    response = srv.upload(PNG)
    body = assert_error(response, 429, 429)
    assert body["status_txt"] == "Too Many Requests"
    assert 1 <= int(response.headers["Retry-After"]) <= 20
    assert srv.rows() == rows
    assert_upload_ok(srv.upload(PNG, api_key=other))
    txt = srv.upload(PNG, format="txt")
    assert txt.status_code == 429 and txt.text.startswith("Too many requests")


def test_per_address_limit_and_trusted_proxy(make_app):
    srv = make_app(rate_limit_ip="2/60", trust_proxy="1")
    first = {"X-Forwarded-For": "203.0.113.7"}
    second = {"X-Forwarded-For": "203.0.113.8"}
    assert_upload_ok(srv.upload(PNG, headers=first))
    assert_upload_ok(srv.upload(PNG, headers=first))
    assert_error(srv.upload(PNG, headers=first), 429, 429)
    assert_error(srv.upload(PNG, headers=first, api_key="imgz_wrong"), 429, 429)
    txt = srv.upload(PNG, headers=first, format="txt")
    assert txt.status_code == 429 and txt.text.startswith("Too many requests")
    assert_upload_ok(srv.upload(PNG, headers=second))


def test_forwarded_for_is_ignored_without_trusted_proxy(make_app):
    srv = make_app(rate_limit_ip="2/60")
    assert_upload_ok(srv.upload(PNG, headers={"X-Forwarded-For": "203.0.113.1"}))
    assert_upload_ok(srv.upload(PNG, headers={"X-Forwarded-For": "203.0.113.2"}))
    assert_error(srv.upload(PNG, headers={"X-Forwarded-For": "203.0.113.3"}), 429, 429)


def test_no_limit_by_default(server):
    for _ in range(12):
        assert server.upload(PNG).status_code == 200


def test_key_checks_are_constant_time_by_construction():
    # Keys are found by their SHA-256 through a unique index: no secret is compared byte by byte.
    assert "db.find_key(conn, ids.digest(key))" in inspect.getsource(auth.live_key)
    for function in (auth.live_key, auth.actor_for_key):
        assert "==" not in inspect.getsource(function)
    assert "live_key(conn, key)" in inspect.getsource(auth.actor_for_key)
    # Delete secrets are compared as digests with hmac.compare_digest.
    assert "hmac.compare_digest(digest(secret), stored_digest)" in inspect.getsource(ids.secret_matches)
    lookup_source = inspect.getsource(lookup)
    assert "ids.secret_matches(secret, stored)" in lookup_source
    assert "secret ==" not in lookup_source and "== secret" not in lookup_source
    assert "lookup.secret_valid" in inspect.getsource(views) and "==" not in inspect.getsource(
        lookup.secret_valid)
    assert "actor_for_key" in inspect.getsource(api.sharex_config)
