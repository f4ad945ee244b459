"""The upload page and its form without JavaScript (POST /upload), through the app in this process
with a cookie-keeping test client; the server's gate in front of the form, on a live server."""
from __future__ import annotations

import io
import re
from datetime import datetime, timezone

import pytest

import media
from imgz import db
from people import add_user, csrf_of

pytestmark = pytest.mark.paired

PASSWORD = "correct horse battery"


@pytest.fixture
def site(make_app):
    srv = make_app()
    add_user(srv.config.database, "ann", PASSWORD)
    return srv


@pytest.fixture
def guests(make_app):
    srv = make_app(guest_uploads=1)
    add_user(srv.config.database, "ann", PASSWORD)
    return srv


def signed_in(srv, name="ann"):
    """A cookie-keeping client signed in as ``name``, and the upload page's CSRF token."""
    client = srv.flask.test_client()
    token = csrf_of(client.get("/signin").get_data(as_text=True))
    answer = client.post("/signin", data={"csrf_token": token, "name": name, "password": PASSWORD})
    assert answer.status_code == 303
    return client, csrf_of(client.get("/").get_data(as_text=True))


def png(name="pic.png", width=40, height=30):
    return (io.BytesIO(media.png(width, height)), name)


def post_form(client, *files, **fields):
    data = {**fields, "source": list(files) or [(io.BytesIO(b""), "")]}
    return client.post("/upload", data=data, content_type="multipart/form-data")


def owners(srv):
    return [row[0] for row in srv.query(
        "SELECT users.name FROM uploads LEFT JOIN users ON users.id = uploads.user_id ORDER BY uploads.id")]


def nothing_stored(srv):
    return srv.rows() == 0 and srv.stored_files() == []


# -- the page at / -------------------------------------------------------------------------------

def test_a_visitor_gets_the_start_page_where_guests_cannot_upload(site):
    page = site.flask.test_client().get("/")
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and "/api/1/upload" in text and 'id="upload-form"' not in text


def test_a_signed_in_person_gets_the_upload_page(site):
    client, token = signed_in(site)
    conn = site.service.connection()
    user = db.get_user_by_name(conn, "ann")
    db.add_album(conn, "alb1", user.id, "Holidays", datetime.now(timezone.utc))
    page = client.get("/")
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "private, no-store"
    assert '<form id="upload-form" method="post" action="/upload" enctype="multipart/form-data"' in text
    assert '<input id="files" class="visually-hidden" type="file" name="source" multiple accept="image/*,video/*">' in text
    assert f'name="csrf_token" value="{token}"' in text and 'name="csrf-token"' in text
    assert '<option value="alb1">Holidays</option>' in text
    assert f'data-resumable="{int(site.config.resumable_mb * 1_000_000)}"' in text
    assert re.search(r'<script src="/static/upload\.js\?v=[0-9a-f]{12}" nonce="[^"]+" defer>', text)
    csp = page.headers["Content-Security-Policy"]
    assert "connect-src 'self'" in csp and "unsafe-inline" not in csp
    assert re.search(r"\son[a-z]+=", text) is None, "no inline handlers"
    for label in ("Title", "Tags", "Description", "Album", "Delete automatically"):
        assert re.search(rf'<label for="[a-z_]+">{label}</label>', text), label
    assert client.get(re.search(r'src="(/static/upload\.js\?v=[^"]+)"', text).group(1)).status_code == 200


def test_the_start_page_is_the_upload_page_for_guests_where_they_may_upload(guests):
    page = guests.flask.test_client().get("/")
    text = page.get_data(as_text=True)
    assert 'id="upload-form"' in text and "as a guest" in text
    assert 'data-resumable="0"' in text, "no resumable uploads for guests"
    assert 'name="album_id"' not in text and 'name="csrf_token"' not in text and 'name="url"' not in text


def test_a_deletion_is_told_on_the_upload_page_too(site):
    client, _ = signed_in(site)
    assert "Deleted." in client.get("/?deleted=1").get_data(as_text=True)


# -- the form ------------------------------------------------------------------------------------

def test_the_form_uploads_several_files_with_the_options(site):
    client, token = signed_in(site)
    conn = site.service.connection()
    db.add_album(conn, "alb2", db.get_user_by_name(conn, "ann").id, "Trips", datetime.now(timezone.utc))
    answer = post_form(client, png("one.png"), png("two.png", 50, 20), csrf_token=token, title="Sea",
                       tags="blue, waves", nsfw="1", album_id="alb2", expiration="P1D")
    text = answer.get_data(as_text=True)
    assert answer.status_code == 200, text[:500]
    assert "Uploaded 2 files" in text
    assert owners(site) == ["ann", "ann"]
    rows = site.query("SELECT title, nsfw, album_id IS NOT NULL, expires_at IS NOT NULL FROM uploads")
    assert [tuple(bool(v) if i else v for i, v in enumerate(r)) for r in rows] == [("Sea", True, True, True)] * 2
    for label in ("Direct link", "Viewer link", "Markdown", "HTML", "BBCode", "Delete link"):
        assert text.count(f">{label}</label>") == 2, label
    thumbs = re.findall(r'<img class="thumb"\s+src="([^"]+)"', text)
    assert len(thumbs) == 2 and all(client.get(t.replace("http://localhost", "")).status_code == 200 for t in thumbs)


def test_a_form_without_its_token_is_refused_and_stores_nothing(site):
    client, _ = signed_in(site)
    for fields in ({}, {"csrf_token": "forged"}):
        answer = post_form(client, png(), **fields)
        assert answer.status_code == 400
        assert answer.mimetype == "text/html" and "did not come from this site" in answer.get_data(as_text=True)
    assert nothing_stored(site)


def test_a_visitor_is_refused_where_guests_cannot_upload(site):
    answer = post_form(site.flask.test_client(), png())
    assert answer.status_code == 401 and answer.mimetype == "text/html"
    assert "Sign in to upload" in answer.get_data(as_text=True)
    assert nothing_stored(site)


def test_a_guest_uploads_through_the_form_where_guests_may(guests):
    answer = post_form(guests.flask.test_client(), png())
    text = answer.get_data(as_text=True)
    assert answer.status_code == 200 and "Uploaded 1 file" in text and "/delete/" in text
    assert answer.headers["Cache-Control"] == "no-store"
    assert owners(guests) == [None]


def test_a_guest_gets_no_url_sources_from_the_form(make_app):
    srv = make_app(guest_uploads=1, url_sources=1)
    answer = post_form(srv.flask.test_client(), url="http://example.com/a.png")
    assert answer.status_code == 400 and "URL sources need an API key" in answer.get_data(as_text=True)
    assert nothing_stored(srv)


def test_a_bad_file_gets_an_error_page_and_takes_the_good_ones_with_it(site):
    client, token = signed_in(site)
    answer = post_form(client, png("good.png"), (io.BytesIO(b"just some text"), "notes.png"), csrf_token=token)
    assert answer.status_code == 415 and answer.mimetype == "text/html"
    assert "Invalid file type" in answer.get_data(as_text=True)
    assert nothing_stored(site) and site.tmp_files() == []


def test_an_empty_form_says_what_to_do(site):
    client, token = signed_in(site)
    answer = post_form(client, csrf_token=token)
    assert answer.status_code == 400 and "Choose a file to upload" in answer.get_data(as_text=True)


def test_too_many_files_in_one_form_are_refused(site):
    from imgz.uploadpage import FORM_FILES

    client, token = signed_in(site)
    answer = post_form(client, *[png(f"{n}.png", 4, 4) for n in range(FORM_FILES + 1)], csrf_token=token)
    assert answer.status_code == 413 and f"at most {FORM_FILES}" in answer.get_data(as_text=True)
    assert nothing_stored(site)


def test_the_form_is_only_posted(site):
    assert site.flask.test_client().get("/upload").status_code == 405


def test_a_get_of_the_api_with_a_session_cookie_uploads_nothing(make_app):
    srv = make_app(url_sources=1)
    add_user(srv.config.database, "ann", PASSWORD)
    client, token = signed_in(srv)
    import base64

    source = base64.b64encode(media.png(8, 8)).decode()
    answer = client.get("/api/1/upload", query_string={"source": source, "csrf_token": token},
                        headers={"X-CSRFToken": token})
    assert answer.status_code == 401 and nothing_stored(srv)


# -- the gate ------------------------------------------------------------------------------------

def test_the_gate_refuses_a_large_form_without_a_session_before_its_body(make_server):
    from test_server import answer_to_head

    srv = make_server()
    head = ("POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b0\r\n"
            "Content-Length: 50000000\r\n\r\n").encode()
    answer = answer_to_head(srv, head)  # the body is never sent: the answer comes all the same
    assert answer.status_code == 401 and "Sign in to upload" in answer.text
    assert answer.headers["Content-Type"].startswith("text/html")
    assert "script-src 'nonce-" in answer.headers["Content-Security-Policy"]
    assert srv.tmp_files() == []
