"""Resumable uploads (tus 1.0 at /api/1/tus/) through the app: the protocol, who may act, the
finishing call's answer beside /api/1/upload's, and the sweep of abandoned uploads."""
from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest

import media
from contract import assert_upload_ok
from people import add_user, csrf_of
from tusclient import TUS, Tus, metadata
from imgz import db, ids, resumable

pytestmark = pytest.mark.paired

PASSWORD = "correct horse battery"


def _png(seed: int = 1) -> bytes:
    return media.png(640, 480, color=(seed * 40 % 256, 90, 200))


def _session(srv, name: str = "ann") -> dict[str, str]:
    """Headers of a signed-in browser of ``name``: its cookie and its CSRF token."""
    add_user(srv.config.database, name, PASSWORD)
    client = srv.flask.test_client()
    token = csrf_of(client.get("/signin").get_data(as_text=True))
    answer = client.post("/signin", data={"csrf_token": token, "name": name, "password": PASSWORD})
    assert answer.status_code == 303
    token = csrf_of(client.get("/account").get_data(as_text=True))
    return {"Cookie": f"imgz_session={client.get_cookie('imgz_session').value}", "X-CSRFToken": token}


def _key_of(srv, name: str) -> str:
    user_id = add_user(srv.config.database, name, PASSWORD)
    key = ids.new_api_key()
    db.add_key(srv.service.connection(), user_id, ids.digest(key), "test", srv.service.now())
    return key


def _strip(image: dict) -> dict:
    """An answer's image object without what differs from one upload to the next."""
    varying = {"id_encoded", "name", "filename", "url", "url_viewer", "url_short", "delete_url",
               "path_viewer", "display_url", "date", "date_gmt", "date_fixed_peer", "image",
               "thumb", "medium", "frame", "url_frame", "id", "expiration_date_gmt"}
    return {k: v for k, v in image.items() if k not in varying}


# -- the protocol ------------------------------------------------------------------------------

def test_options_say_what_is_spoken(app):
    answer = app.request("OPTIONS", "/api/1/tus/")
    assert answer.status_code == 204
    assert answer.headers["Tus-Version"] == "1.0.0"
    assert answer.headers["Tus-Extension"] == "creation,termination"
    assert int(answer.headers["Tus-Max-Size"]) == app.config.max_upload_bytes


def test_create_patch_head_finish_answers_as_the_upload_endpoint(app):
    data = _png()
    tus = Tus(app)
    created = tus.create(len(data), "holiday.png")
    assert created.status_code == 201 and created.headers["Tus-Resumable"] == "1.0.0"
    location = created.headers["Location"]
    assert location.startswith("/api/1/tus/") and len(location.rsplit("/", 1)[1]) >= 40
    head = tus.head(location)
    assert head.status_code == 200 and head.headers["Cache-Control"] == "no-store"
    assert (head.headers["Upload-Offset"], head.headers["Upload-Length"]) == ("0", str(len(data)))
    assert tus.send(location, data, 7000) == len(data)
    assert tus.offset(location) == len(data)
    finished = tus.finish(location, title="Holiday", tags="sea,sun", nsfw="1")
    image = assert_upload_ok(finished)
    direct = assert_upload_ok(app.upload(data, filename="holiday.png", title="Holiday",
                                         tags="sea,sun", nsfw="1"))
    assert set(finished.json()) == set(app.upload(data).json())
    assert _strip(image) == _strip(direct)
    assert image["checksum"] == hashlib.md5(data).hexdigest()
    assert image["original_filename"] == "holiday.png" and image["title"] == "Holiday"
    assert app.stored_bytes(image["url"]) == data
    # the row and the partial bytes are gone: a second finish is 404, and so is a HEAD
    assert tus.finish(location).status_code == 404
    assert tus.head(location).status_code == 404
    assert app.query("SELECT COUNT(*) FROM resumables")[0][0] == 0
    assert app.store.stale_partials(app.service.now() + timedelta(days=1)) == []


def test_finish_answers_in_the_format_asked_for(app):
    tus = Tus(app)
    location = tus.location(len(_png()))
    tus.send(location, _png(), 1 << 20)
    answer = tus.call("POST", location + "/finish?format=txt")
    assert answer.status_code == 200 and answer.text.startswith(app.url + "/images/")


def test_an_unfinished_upload_cannot_be_finished(app):
    tus = Tus(app)
    location = tus.location(1000)
    tus.patch(location, 0, b"x" * 400)
    answer = tus.finish(location)
    assert answer.status_code == 409 and answer.json()["status_code"] == 409
    assert tus.offset(location) == 400


def test_a_file_that_is_no_image_is_refused_at_the_end_as_by_the_upload_endpoint(app):
    tus = Tus(app)
    data = b"not an image at all" * 100
    answer = tus.upload(data, 500)
    direct = app.upload(data)
    assert answer.status_code == direct.status_code == 415
    assert answer.json() == direct.json()
    assert app.rows() == 0


def test_an_offset_that_does_not_match_is_409(app):
    tus = Tus(app)
    location = tus.location(1000)
    assert tus.patch(location, 0, b"a" * 100).status_code == 204
    answer = tus.patch(location, 50, b"b" * 100)
    assert answer.status_code == 409 and answer.json()["error"]["code"] == 409
    assert tus.offset(location) == 100


def test_a_held_upload_tells_writes_and_questions_to_try_again_until_its_lease_ends(app):
    """While a writer holds an upload (a PATCH being stored, maybe one whose connection was cut,
    in any process), another PATCH and a HEAD are 423: tus clients try again later instead of
    sending bytes the server is about to count. A writer that died holds it until its lease ends."""
    tus = Tus(app)
    location = tus.location(100)
    assert tus.patch(location, 0, b"a" * 40).status_code == 204
    digest = ids.digest(location.rsplit("/", 1)[1])
    now = app.service.now()
    assert db.take_lease(app.service.connection(), digest, "elsewhere", now, now + resumable.LEASE)
    assert tus.head(location).status_code == 423
    answer = tus.patch(location, 40, b"b" * 60)
    assert answer.status_code == 423 and answer.json()["error"]["code"] == 423
    app.query("UPDATE resumables SET lease_until = :t WHERE hash = :h",
              {"t": int(now.timestamp()) - 1, "h": digest})
    assert tus.offset(location) == 40
    assert tus.patch(location, 40, b"b" * 60).status_code == 204
    assert tus.offset(location) == 100


def test_bytes_past_the_length_are_refused_and_none_is_stored(app):
    tus = Tus(app)
    location = tus.location(100)
    answer = tus.patch(location, 0, b"z" * 101)
    assert answer.status_code == 413
    assert tus.offset(location) == 0


def test_a_length_past_the_size_limit_is_413_at_creation(make_app):
    app = make_app(max_upload_mb=1)
    answer = Tus(app).create(1_000_001)
    assert answer.status_code == 413 and answer.json()["status_code"] == 413
    assert app.query("SELECT COUNT(*) FROM resumables")[0][0] == 0
    assert Tus(app).create(1_000_000).status_code == 201


@pytest.mark.parametrize("headers, status", [
    ({}, 400), ({"Upload-Length": "-1"}, 400), ({"Upload-Length": "ten"}, 400),
    ({"Upload-Defer-Length": "1"}, 400),
    ({"Upload-Length": "10", "Upload-Metadata": "filename ***"}, 400),
    ({"Upload-Length": "10", "Tus-Resumable": "0.2.2"}, 412),
])
def test_bad_creations(app, headers, status):
    answer = Tus(app).call("POST", "/api/1/tus/", headers)
    assert answer.status_code == status, answer.text
    assert answer.json()["status_code"] == status
    if status == 412:
        assert answer.headers["Tus-Version"] == "1.0.0"


def test_a_patch_needs_its_content_type(app):
    tus = Tus(app)
    location = tus.location(10)
    answer = tus.patch(location, 0, b"0123456789", **{"Content-Type": "application/octet-stream"})
    assert answer.status_code == 415 and tus.offset(location) == 0


def test_termination_removes_row_and_bytes(app):
    tus = Tus(app)
    location = tus.location(100)
    tus.patch(location, 0, b"q" * 60)
    assert tus.call("DELETE", location).status_code == 204
    assert tus.head(location).status_code == 404
    assert app.store.stale_partials(app.service.now() + timedelta(days=1)) == []


def test_method_override(app):
    tus = Tus(app)
    location = tus.location(10)
    patched = tus.call("POST", location, {"X-HTTP-Method-Override": "PATCH", "Upload-Offset": "0",
                                          "Content-Type": "application/offset+octet-stream"},
                       data=b"0123456789")
    assert patched.status_code == 204 and patched.headers["Upload-Offset"] == "10"
    head = tus.call("POST", location, {"X-HTTP-Method-Override": "HEAD"})
    assert head.status_code == 200 and head.headers["Upload-Offset"] == "10"
    assert tus.call("POST", location, {"X-HTTP-Method-Override": "DELETE"}).status_code == 204
    assert tus.call("POST", location, {"X-HTTP-Method-Override": "PUT"}).status_code == 405


# -- who may act -------------------------------------------------------------------------------

def test_guests_are_refused_even_with_guest_uploads_on(make_app):
    app = make_app(guest_uploads=1)
    answer = Tus(app, auth={}).create(10)
    assert answer.status_code == 401 and answer.json()["error"]["code"] == 100
    location = Tus(app).location(10)
    assert Tus(app, auth={}).head(location).status_code == 401


def test_a_key_in_the_query_string_counts(app):
    tus = Tus(app, auth={})
    answer = tus.call("POST", f"/api/1/tus/?key={app.key}", {"Upload-Length": "10"})
    assert answer.status_code == 201
    location = answer.headers["Location"]
    assert tus.call("HEAD", f"{location}?key={app.key}").status_code == 200
    assert tus.call("HEAD", f"{location}?key=imgz_wrong").status_code == 401


def test_another_users_upload_is_404_as_an_unknown_one(app):
    mine = Tus(app)
    location = mine.location(100)
    theirs = Tus(app, auth={"X-API-Key": _key_of(app, "eve")})
    for answer in (theirs.head(location), theirs.patch(location, 0, b"x" * 10),
                   theirs.finish(location), theirs.call("DELETE", location),
                   theirs.head("/api/1/tus/" + "A" * 48)):
        assert answer.status_code == 404
    assert mine.offset(location) == 0


def test_a_session_acts_only_with_its_csrf_header(app):
    signed_in = _session(app)
    tus = Tus(app, auth=signed_in)
    data = _png(3)
    answer = tus.upload(data, 9000, title="From the page")
    image = assert_upload_ok(answer)
    assert image["title"] == "From the page"
    owner = app.query("SELECT user_id FROM uploads")[0][0]
    assert owner == db.get_user_by_name(app.service.connection(), "ann").id
    cookie_only = Tus(app, auth={"Cookie": signed_in["Cookie"]})
    wrong_token = Tus(app, auth={**signed_in, "X-CSRFToken": "forged"})
    location = tus.location(100)
    for other in (cookie_only, wrong_token):
        assert other.create(10).status_code == 401
        for answer in (other.head(location), other.patch(location, 0, b"x"),
                       other.call("DELETE", location), other.finish(location)):
            assert answer.status_code == 401
    assert tus.offset(location) == 0
    # the key of another user beside the cookie: the key's user acts, who does not own it
    keyed = Tus(app, auth={**signed_in, "X-API-Key": _key_of(app, "eve")})
    assert keyed.head(location).status_code == 404


# -- the sweep ---------------------------------------------------------------------------------

def test_the_sweep_removes_abandoned_uploads_rows_and_bytes(app):
    tus = Tus(app)
    old, fresh = tus.location(1000), tus.location(50)
    tus.patch(old, 0, b"o" * 300)
    later = app.service.now() + resumable.ABANDONED + timedelta(minutes=1)
    # the fresh one was touched a minute before the sweep: it stays
    app.query("UPDATE resumables SET updated_at = :t WHERE hash = :h",
              {"t": int(later.timestamp()) - 60, "h": ids.digest(fresh.rsplit("/", 1)[1])})
    assert resumable.sweep(app.service, later) == 1
    assert tus.head(old).status_code == 404 and tus.head(fresh).status_code == 200
    names = [name for name, _ in app.store.stale_partials(later + timedelta(days=2))]
    assert names == [ids.digest(fresh.rsplit("/", 1)[1])]


def test_the_sweep_removes_bytes_no_row_knows(app):
    service = app.service
    name = hashlib.sha256(b"lost").hexdigest()
    handle = service.store.begin_partial(name, 10)
    later = service.now() + resumable.ABANDONED + timedelta(hours=1)
    assert [n for n, _ in service.store.stale_partials(later)] == [name]
    resumable.sweep(service, later)
    assert service.store.stale_partials(later) == []
    service.store.drop_partial(name, handle)  # twice: no error


def test_metadata_is_bounded(app):
    tus = Tus(app)
    answer = tus.call("POST", "/api/1/tus/", {"Upload-Length": "10",
                                               "Upload-Metadata": metadata(filename="x" * 5000)})
    assert answer.status_code == 400
    assert TUS["Tus-Resumable"] == "1.0.0"
