"""My uploads (/uploads) through the app in this process: the grid, its pages and filters, picking
uploads to delete or move, and the rules: CSRF on every POST, someone else's upload is not found
and stays, admins see and take down anyone's."""
from __future__ import annotations

import re

import pytest

import media
from contract import assert_upload_ok
from people import add_user
from test_access import PASSWORD, signed_in, user_key

pytestmark = pytest.mark.paired


@pytest.fixture
def site(make_app):
    srv = make_app()
    add_user(srv.config.database, "root", PASSWORD, admin=True)
    for name in ("ann", "bob"):
        add_user(srv.config.database, name, PASSWORD)
    srv.keys = {name: user_key(srv, name) for name in ("ann", "bob")}
    return srv


def put(srv, who, title, **fields):
    """An upload of ``who``'s, by their key; its answer's image object."""
    answer = srv.upload(media.png(24, 16), filename=f"{title}.png", api_key=srv.keys[who],
                        title=title, **fields)
    return assert_upload_ok(answer)


def titles(html):
    """The titles of a grid's tiles, in order."""
    return re.findall(r'<label for="pick-[^"]+">([^<]*)</label>', html)


def page(client, path):
    answer = client.get(path)
    assert answer.status_code == 200, answer.get_data(as_text=True)[:500]
    return answer.get_data(as_text=True)


def test_my_uploads_shows_mine_newest_first_with_expiry_and_links(site):
    put(site, "ann", "first")
    put(site, "bob", "his")
    second = put(site, "ann", "second", expiration="P3D")
    client, _ = signed_in(site, "ann")
    html = page(client, "/uploads")
    assert titles(html) == ["second", "first"]
    assert "expires in 2 days" in html or "expires in 3 days" in html
    assert f'data-link="{second["url_viewer"]}"' in html and second["thumb"]["url"] in html
    assert "<h1>My uploads</h1>" in html


def test_a_guest_is_sent_to_sign_in(site):
    answer = site.flask.test_client().get("/uploads?tag=x")
    assert answer.status_code == 303 and answer.headers["Location"].startswith("/signin?next=/uploads")


def test_pages_by_older_and_newer_links(site):
    for n in range(5):
        put(site, "ann", f"n{n}")
    client, _ = signed_in(site, "ann")
    html = page(client, "/uploads?n=2")
    seen = titles(html)
    while (older := re.search(r'href="([^"]+)">Older', html)):
        html = page(client, older.group(1).replace("&amp;", "&"))
        seen += titles(html)
    assert seen == ["n4", "n3", "n2", "n1", "n0"]
    assert "Older" not in html
    newer = re.search(r'href="([^"]+)">← Newer', html).group(1).replace("&amp;", "&")
    assert "n=2" in newer and titles(page(client, newer)) == ["n2", "n1"]


def test_filters(site):
    ann = signed_in(site, "ann")[0]
    album = site.command("album", "add", "Trips", "--user", "ann").stdout.strip()
    put(site, "ann", "beach day", tags="sea,sun", album_id=album)
    put(site, "ann", "Mountain", tags="snow", description="A cold Morning")
    put(site, "ann", "city", tags="sea")
    put(site, "bob", "beach of bob", tags="sea")
    assert titles(page(ann, f"/uploads?album={album}")) == ["beach day"]
    assert titles(page(ann, "/uploads?tag=sea")) == ["city", "beach day"]
    assert titles(page(ann, "/uploads?tag=nothing")) == []
    assert titles(page(ann, "/uploads?kind=image")) == ["city", "Mountain", "beach day"]
    assert titles(page(ann, "/uploads?kind=video")) == []
    assert titles(page(ann, "/uploads?q=BEACH")) == ["beach day"]
    assert titles(page(ann, "/uploads?q=morning")) == ["Mountain"]  # the description counts
    assert titles(page(ann, "/uploads?q=city.png")) == ["city"]  # and the original name
    html = page(ann, "/uploads?q=zebra")
    assert titles(html) == [] and "No upload matches these filters." in html
    assert titles(page(ann, "/uploads?q=c&tag=sea&kind=image&n=1")) == ["city"]


def test_another_users_album_is_no_filter(site):
    album = site.command("album", "add", "His", "--user", "bob").stdout.strip()
    client, _ = signed_in(site, "ann")
    assert client.get(f"/uploads?album={album}").status_code == 404


def test_delete_asks_first_then_deletes_rows_and_files(site):
    keep = put(site, "ann", "keep")
    gone = [put(site, "ann", f"gone{n}") for n in range(2)]
    stored = len(site.stored_files())
    client, token = signed_in(site, "ann")
    ids = [g["id_encoded"] for g in gone]
    ask = client.post("/uploads", data={"csrf_token": token, "action": "delete", "id": ids,
                                        "back": "/uploads?q=gone"})
    html = ask.get_data(as_text=True)
    assert ask.status_code == 200 and "Delete 2 uploads?" in html and site.rows() == 3
    done = client.post("/uploads", data={"csrf_token": token, "action": "delete", "id": ids,
                                         "confirm": "1", "back": "/uploads?q=gone"})
    assert done.status_code == 303 and done.headers["Location"] == "/uploads?q=gone"
    assert site.rows() == 1 and len(site.stored_files()) == stored - 2 * (stored // 3)
    assert "2 uploads deleted." in page(client, "/uploads")
    assert titles(page(client, "/uploads")) == ["keep"]
    assert site.get(keep["url"]).status_code == 200 and site.get(gone[0]["url"]).status_code == 404


@pytest.mark.parametrize("action", ["delete", "move", "remove"])
def test_every_post_needs_the_csrf_token(site, action):
    mine = put(site, "ann", "mine")
    client, _ = signed_in(site, "ann")
    answer = client.post("/uploads", data={"action": action, "id": [mine["id_encoded"]], "confirm": "1"})
    assert answer.status_code == 400 and site.rows() == 1


def test_someone_elses_upload_is_not_found_and_stays(site):
    mine, his = put(site, "ann", "mine"), put(site, "bob", "his")
    album = site.command("album", "add", "Hers", "--user", "ann").stdout.strip()
    client, token = signed_in(site, "ann")
    for action in ("delete", "move", "remove"):
        answer = client.post("/uploads", data={
            "csrf_token": token, "action": action, "confirm": "1", "to": album,
            "id": [mine["id_encoded"], his["id_encoded"]]})
        assert answer.status_code == 404, action
    assert site.rows() == 2
    assert site.query("SELECT count(*) FROM uploads WHERE album_id IS NOT NULL") == [(0,)]
    assert "his" not in titles(page(client, "/uploads"))
    assert client.get("/uploads?all=1").status_code == 403


def test_moving_in_and_out_of_an_album(site):
    uploads = [put(site, "ann", f"u{n}") for n in range(3)]
    album = site.command("album", "add", "Trips", "--user", "ann").stdout.strip()
    his_album = site.command("album", "add", "His", "--user", "bob").stdout.strip()
    client, token = signed_in(site, "ann")
    ids = [u["id_encoded"] for u in uploads[:2]]
    answer = client.post("/uploads", data={"csrf_token": token, "action": "move", "to": his_album, "id": ids})
    assert answer.status_code == 404
    answer = client.post("/uploads", data={"csrf_token": token, "action": "move", "to": album, "id": ids})
    assert answer.status_code == 303
    assert "2 uploads moved to Trips." in page(client, "/uploads")
    assert titles(page(client, f"/uploads?album={album}")) == ["u1", "u0"]
    client.post("/uploads", data={"csrf_token": token, "action": "remove", "id": ids[:1]})
    assert titles(page(client, f"/uploads?album={album}")) == ["u1"]


def test_admins_see_everyones_uploads_and_take_any_down(site):
    put(site, "ann", "hers")
    his = put(site, "bob", "his")
    client, token = signed_in(site, "root")
    html = page(client, "/uploads?all=1")
    assert "Everyone&#39;s uploads" in html and titles(html) == ["his", "hers"]
    assert "by bob" in html and "by ann" in html
    assert titles(page(client, "/uploads")) == []  # their own: none
    answer = client.post("/uploads", data={"csrf_token": token, "action": "delete", "confirm": "1",
                                           "id": [his["id_encoded"]], "back": "/uploads?all=1"})
    assert answer.status_code == 303 and answer.headers["Location"] == "/uploads?all=1"
    assert titles(page(client, "/uploads?all=1")) == ["hers"]
    assert site.get(his["url"]).status_code == 404


def test_back_goes_only_to_these_pages(site):
    mine = put(site, "ann", "mine")
    client, token = signed_in(site, "ann")
    answer = client.post("/uploads", data={"csrf_token": token, "action": "remove", "id": [mine["id_encoded"]],
                                           "back": "https://evil.example/uploads"})
    assert answer.headers["Location"] == "/uploads"


def test_nothing_picked_changes_nothing_and_says_so(site):
    put(site, "ann", "mine")
    client, token = signed_in(site, "ann")
    answer = client.post("/uploads", data={"csrf_token": token, "action": "delete", "confirm": "1",
                                           "back": "/uploads?q=mine"})
    assert answer.status_code == 303 and answer.headers["Location"] == "/uploads?q=mine"
    assert "Tick the uploads to act on first" in page(client, "/uploads") and site.rows() == 1
