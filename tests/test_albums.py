"""Albums through the app in this process: made, renamed, made public or private and deleted (its
uploads stay), each only with the CSRF token and only by its owner; its page at an address nobody
can guess, 404 when private for anyone but its owner and admins."""
from __future__ import annotations

import re

import pytest

from people import add_user
from test_access import PASSWORD, signed_in
import test_manage
from test_manage import page, put, titles

site = test_manage.site  # the fixture: the app with ann, bob and root (an admin), each with a key

pytestmark = pytest.mark.paired


def make_album(client, token, name):
    """An album made by the form; its public id and its page's key, as the albums page links them."""
    answer = client.post("/albums", data={"csrf_token": token, "name": name})
    assert answer.status_code == 303 and answer.headers["Location"] == "/albums"
    html = page(client, "/albums")
    page_key = re.search(rf'<a href="/a/([^"]+)">{re.escape(name)}</a>', html).group(1)
    public_id = re.search(r'action="/albums/([^/"]+)/rename"', html).group(1)  # the newest first
    return public_id, page_key


def album_rows(srv):
    return srv.query("SELECT name, is_public FROM albums ORDER BY id")


def test_make_rename_publish_and_delete_an_album_keeping_its_uploads(site):
    client, token = signed_in(site, "ann")
    public_id, page_key = make_album(client, token, "Summer")  # (its page read the notice)
    upload = put(site, "ann", "sea", album_id=public_id)
    html = page(client, "/albums")
    assert "1 upload " in html and "Private" in html
    assert client.post(f"/albums/{public_id}/rename", data={"csrf_token": token, "name": "Summer 25"}).status_code == 303
    assert "Album renamed to Summer 25." in page(client, "/albums")
    assert client.post(f"/albums/{public_id}/public", data={"csrf_token": token}).status_code == 303
    assert album_rows(site) == [("Summer 25", True)]
    assert titles(page(client, f"/a/{page_key}")) == ["sea"]
    answer = client.post(f"/albums/{public_id}/delete", data={"csrf_token": token})
    assert answer.status_code == 303 and album_rows(site) == []
    assert "Its uploads are still in My uploads." in page(client, "/albums")
    assert titles(page(client, "/uploads")) == ["sea"] and site.get(upload["url"]).status_code == 200
    assert site.flask.test_client().get(f"/a/{page_key}").status_code == 404


@pytest.mark.parametrize("action", ["rename", "public", "private", "delete"])
def test_album_forms_need_the_token(site, action):
    client, token = signed_in(site, "ann")
    public_id, _ = make_album(client, token, "Mine")
    answer = client.post(f"/albums/{public_id}/{action}", data={"name": "Changed"})
    assert answer.status_code == 400 and album_rows(site) == [("Mine", False)]
    assert client.post("/albums", data={"name": "Another"}).status_code == 400
    assert album_rows(site) == [("Mine", False)]


@pytest.mark.parametrize("action", ["rename", "public", "delete"])
def test_someone_elses_album_is_not_found_and_stays(site, action):
    ann, ann_token = signed_in(site, "ann")
    public_id, page_key = make_album(ann, ann_token, "Hers")
    put(site, "ann", "in it", album_id=public_id)
    bob, bob_token = signed_in(site, "bob")
    answer = bob.post(f"/albums/{public_id}/{action}", data={"csrf_token": bob_token, "name": "His"})
    assert answer.status_code == 404
    assert album_rows(site) == [("Hers", False)]
    assert site.query("SELECT count(*) FROM uploads WHERE album_id IS NOT NULL") == [(1,)]
    assert "Hers" not in page(bob, "/albums")


def test_a_private_album_page_is_for_its_owner_and_admins(site):
    ann, token = signed_in(site, "ann")
    public_id, page_key = make_album(ann, token, "Secret")
    put(site, "ann", "kept quiet", album_id=public_id)
    assert titles(page(ann, f"/a/{page_key}")) == ["kept quiet"]
    assert "kept quiet" in page(signed_in(site, "root")[0], f"/a/{page_key}")
    for client in (site.flask.test_client(), signed_in(site, "bob")[0]):
        answer = client.get(f"/a/{page_key}")
        assert answer.status_code == 404 and "kept quiet" not in answer.get_data(as_text=True)
    assert site.flask.test_client().get("/a/guess").status_code == 404


def test_a_public_album_page_shows_to_anyone_and_its_uploads_viewers_work(site):
    ann, token = signed_in(site, "ann")
    public_id, page_key = make_album(ann, token, "Open")
    upload = put(site, "ann", "shown", album_id=public_id)
    ann.post(f"/albums/{public_id}/public", data={"csrf_token": token})
    answer = site.flask.test_client().get(f"/a/{page_key}")
    html = answer.get_data(as_text=True)
    assert answer.status_code == 200 and "shown" in html and upload["thumb"]["url"] in html
    assert 'name="id"' not in html and "csrf_token" not in html  # nothing to pick or change
    assert answer.headers["Referrer-Policy"] == "same-origin" and "noindex" in answer.headers["X-Robots-Tag"]
    viewer = site.get(upload["url_viewer"])
    assert viewer.status_code == 200 and "shown" in viewer.text


def test_names_are_cleaned_and_required(site):
    client, token = signed_in(site, "ann")
    assert client.post("/albums", data={"csrf_token": token, "name": "  \u202e "}).status_code == 400
    answer = client.post("/albums", data={"csrf_token": token, "name": "y" * 300})
    assert answer.status_code == 303 and album_rows(site) == [("y" * 100, False)]


def test_another_user_added_later_sees_none(site):
    add_user(site.config.database, "cid", PASSWORD)
    client, _ = signed_in(site, "cid")
    assert "No albums yet." in page(client, "/albums")
