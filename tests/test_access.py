"""Who a request acts for (the API with keys, cookies and CSRF tokens, both ways), and the keys
and users pages, through the app in this process."""
from __future__ import annotations

import io
import json
import re

import pytest

import media
from contract import assert_upload_ok
from people import add_user, csrf_of

PASSWORD = "correct horse battery"


@pytest.fixture
def guests(make_app):
    srv = make_app(guest_uploads=1)
    add_user(srv.config.database, "ann", PASSWORD)
    return srv


def signed_in(srv, name="ann"):
    """A cookie-keeping client signed in as ``name``, and its CSRF token."""
    client = srv.flask.test_client()
    token = csrf_of(client.get("/signin").get_data(as_text=True))
    answer = client.post("/signin", data={"csrf_token": token, "name": name, "password": PASSWORD})
    assert answer.status_code == 303
    return client, csrf_of(client.get("/account").get_data(as_text=True))


def post_upload(client, headers=None, query="", **fields):
    data = {"source": (io.BytesIO(media.png(16, 12)), "pic.png"), **fields}
    return client.post(f"/api/1/upload{query}", data=data, headers=headers or {},
                       content_type="multipart/form-data")


def owners(srv):
    return [row[0] for row in srv.query(
        "SELECT users.name FROM uploads LEFT JOIN users ON users.id = uploads.user_id ORDER BY uploads.id")]


def user_key(srv, name):
    return srv.command("key", "create", "--user", name).stdout.strip()


# -- the rule ------------------------------------------------------------------------------------

def test_a_key_acts_alone_and_a_cookie_beside_it_is_ignored(site):
    client, token = signed_in(site, "ann")
    answer = post_upload(client, headers={"X-API-Key": user_key(site, "bob")})
    assert answer.status_code == 200
    assert owners(site) == ["bob"]


def test_a_key_needs_no_csrf_token(site):
    answer = post_upload(site.flask.test_client(), headers={"X-API-Key": user_key(site, "bob")})
    assert answer.status_code == 200 and owners(site) == ["bob"]


def test_a_wrong_key_is_refused_whatever_the_session(site):
    client, token = signed_in(site)
    answer = post_upload(client, headers={"X-API-Key": "imgz_wrong", "X-CSRFToken": token})
    assert answer.status_code == 401 and answer.json["error"]["message"] == "Invalid API key."
    assert owners(site) == []


@pytest.mark.parametrize("where", ["header", "form"])
def test_a_session_acts_on_a_post_with_its_token(site, where):
    client, token = signed_in(site)
    if where == "header":
        answer = post_upload(client, headers={"X-CSRFToken": token})
    else:
        answer = post_upload(client, csrf_token=token)
    assert answer.status_code == 200 and answer.json["image"]["url"]
    assert owners(site) == ["ann"]


def test_a_forged_api_call_with_the_cookie_and_no_token_acts_for_nobody(site):
    client, token = signed_in(site)
    answer = post_upload(client, headers={"Origin": "https://evil.example"})
    assert answer.status_code == 401 and answer.json["error"]["message"] == "No key provided"
    assert owners(site) == [] and site.stored_files() == []


def test_a_forged_api_call_is_at_most_a_guest_where_guests_are_on(guests):
    client, token = signed_in(guests)
    assert post_upload(client).status_code == 200
    assert owners(guests) == [None]


def test_another_sessions_token_does_not_count(site):
    ann, ann_token = signed_in(site, "ann")
    bob, bob_token = signed_in(site, "bob")
    answer = post_upload(ann, headers={"X-CSRFToken": bob_token})
    assert answer.status_code == 401 and owners(site) == []


def test_a_get_with_a_valid_session_uploads_nothing(site):
    client, token = signed_in(site)
    url = "https://example.org/pic.png"  # refused before anything is fetched
    for headers in ({}, {"X-CSRFToken": token}):
        answer = client.get(f"/api/1/upload?source={url}&csrf_token={token}", headers=headers)
        assert answer.status_code == 401
    assert owners(site) == [] and site.stored_files() == []


def test_a_delete_url_needs_no_token_and_ignores_the_cookie(site):
    image = assert_upload_ok(site.upload(media.png(10, 10)))
    client, token = signed_in(site, "bob")
    answer = client.delete(image["delete_url"].replace(site.url, ""), headers={"Accept": "application/json"})
    assert answer.status_code == 200 and owners(site) == []


# -- keys ----------------------------------------------------------------------------------------

def test_a_new_key_is_shown_once_and_works(site):
    client, token = signed_in(site, "ann")
    page = client.post("/keys", data={"csrf_token": token, "label": "laptop"})
    assert page.status_code == 201
    key = re.search(r'id="new-key" class="secret" value="(imgz_[^"]+)"', page.get_data(as_text=True)).group(1)
    assert page.headers["Cache-Control"] == "private, no-store"
    assert key not in client.get("/keys").get_data(as_text=True)
    assert "laptop" in client.get("/keys").get_data(as_text=True)
    assert post_upload(site.flask.test_client(), headers={"X-API-Key": key}).status_code == 200
    assert owners(site) == ["ann"]


def test_a_revoked_key_is_refused_at_once(site):
    client, token = signed_in(site, "ann")
    key = user_key(site, "ann")
    (key_id,) = [row[0] for row in site.query("SELECT id FROM api_keys WHERE label = '' AND user_id = 2")]
    assert client.post(f"/keys/{key_id}/revoke", data={"csrf_token": token}).status_code == 200
    answer = post_upload(site.flask.test_client(), headers={"X-API-Key": key})
    assert answer.status_code == 401 and answer.json["error"]["message"] == "Invalid API key."


def test_nobody_revokes_another_users_key(site):
    client, token = signed_in(site, "ann")
    key = user_key(site, "bob")
    (key_id,) = [row[0] for row in site.query("SELECT id FROM api_keys WHERE user_id = 3")]
    assert client.post(f"/keys/{key_id}/revoke", data={"csrf_token": token}).status_code == 404
    assert post_upload(site.flask.test_client(), headers={"X-API-Key": key}).status_code == 200


@pytest.mark.parametrize("path", ["/keys", "/keys/1/revoke", "/keys/sharex"])
def test_key_forms_need_the_token(site, path):
    client, token = signed_in(site, "ann")
    before = site.query("SELECT COUNT(*), COUNT(revoked_at) FROM api_keys")
    answer = client.post(path, data={"label": "x"})
    assert answer.status_code == 400 and "did not come from this site" in answer.get_data(as_text=True)
    assert site.query("SELECT COUNT(*), COUNT(revoked_at) FROM api_keys") == before


def test_the_sharex_button_downloads_an_uploader_with_a_new_key(site):
    client, token = signed_in(site, "ann")
    answer = client.post("/keys/sharex", data={"csrf_token": token})
    assert answer.status_code == 200
    assert answer.headers["Content-Disposition"].startswith("attachment; filename=")
    assert answer.headers["Cache-Control"] == "no-store"
    uploader = json.loads(answer.get_data())
    assert uploader["RequestURL"] == "http://localhost/api/1/upload"
    key = uploader["Headers"]["X-API-Key"]
    assert post_upload(site.flask.test_client(), headers={"X-API-Key": key}).status_code == 200
    assert owners(site) == ["ann"]


# -- users ---------------------------------------------------------------------------------------

def test_only_admins_see_the_users_page(site):
    client, token = signed_in(site, "ann")
    assert client.get("/users").status_code == 403
    assert client.post("/users", data={"csrf_token": token, "name": "eve"}).status_code == 403
    assert site.query("SELECT COUNT(*) FROM users WHERE name = 'eve'") == [(0,)]


@pytest.fixture
def admin(site):
    add_user(site.config.database, "root", PASSWORD, admin=True)
    return signed_in(site, "root")


def test_an_admin_adds_a_user_who_sets_a_password_by_the_link(site, admin):
    client, token = admin
    page = client.post("/users", data={"csrf_token": token, "name": "dora"})
    assert page.status_code == 200
    link = re.search(r'id="link" class="secret" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    assert link.startswith("http://localhost/password/")
    newcomer = site.flask.test_client()
    form_page = newcomer.get(link.replace("http://localhost", ""))
    form = {"csrf_token": csrf_of(form_page.get_data(as_text=True)), "password": "dora's words", "again": "dora's words"}
    assert newcomer.post(link.replace("http://localhost", ""), data=form).status_code == 303
    assert newcomer.get("/keys").status_code == 200


@pytest.mark.parametrize("name,status", [("ann", 409), ("", 400), ("a b", 400), ("x" * 65, 400), ("-x", 400)])
def test_a_name_that_cannot_be_added_is_refused(site, admin, name, status):
    client, token = admin
    before = site.query("SELECT COUNT(*) FROM users")
    assert client.post("/users", data={"csrf_token": token, "name": name}).status_code == status
    assert site.query("SELECT COUNT(*) FROM users") == before


def test_an_admin_disables_a_user_whose_session_ends_at_once(site, admin):
    client, token = admin
    bob, _ = signed_in(site, "bob")
    key = user_key(site, "bob")
    (bob_id,) = [row[0] for row in site.query("SELECT id FROM users WHERE name = 'bob'")]
    assert client.post(f"/users/{bob_id}/disable", data={"csrf_token": token}).status_code == 200
    assert bob.get("/keys").status_code == 303
    assert post_upload(site.flask.test_client(), headers={"X-API-Key": key}).status_code == 401
    assert client.post(f"/users/{bob_id}/enable", data={"csrf_token": token}).status_code == 200
    assert post_upload(site.flask.test_client(), headers={"X-API-Key": key}).status_code == 200


def test_an_admin_makes_an_admin_but_not_of_their_own_account(site, admin):
    client, token = admin
    (ann_id,) = [row[0] for row in site.query("SELECT id FROM users WHERE name = 'ann'")]
    (root_id,) = [row[0] for row in site.query("SELECT id FROM users WHERE name = 'root'")]
    assert client.post(f"/users/{ann_id}/admin", data={"csrf_token": token}).status_code == 200
    assert site.query("SELECT is_admin FROM users WHERE name = 'ann'") == [(1,)]
    assert client.post(f"/users/{root_id}/disable", data={"csrf_token": token}).status_code == 400
    assert client.post(f"/users/{root_id}/unadmin", data={"csrf_token": token}).status_code == 400
    assert client.get("/users").status_code == 200


def test_an_admin_resets_a_password_with_a_new_link(site, admin):
    client, token = admin
    (ann_id,) = [row[0] for row in site.query("SELECT id FROM users WHERE name = 'ann'")]
    page = client.post(f"/users/{ann_id}/link", data={"csrf_token": token})
    assert page.status_code == 200 and "/password/" in page.get_data(as_text=True)
    assert site.query("SELECT COUNT(*) FROM links") == [(1,)]
