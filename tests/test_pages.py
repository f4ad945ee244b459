"""The first viewer page and the delete flow, through the real server."""
from __future__ import annotations

import sqlite3

import requests

import media
from contract import assert_upload_ok


def _upload(server, **fields):
    return assert_upload_ok(server.upload(media.png(640, 400), filename="Garden party.png", **fields))


def test_viewer_page_shows_the_upload(server):
    image = _upload(server, title='Tea & <cake> "party"', description="<script>alert(1)</script>")
    page = server.get(image["url_viewer"])
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert image["display_url"] in page.text and image["url"] in page.text
    assert "Tea &amp; &lt;cake&gt; &#34;party&#34;" in page.text
    assert "<script>alert(1)</script>" not in page.text
    assert 'property="og:image"' in page.text


def test_short_and_wrong_slug_urls_redirect_to_the_canonical_one(server):
    image = _upload(server)
    for path in (f"/image/{image['id_encoded']}", f"/image/wrong-slug.{image['id_encoded']}"):
        response = server.get(path)
        assert response.status_code == 302
        assert response.headers["Location"].endswith(image["path_viewer"])


def test_unknown_viewer_id_is_a_404_page(server):
    response = server.get("/image/nothing.ZZZZZZZZ")
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("text/html")
    assert "404" in response.text and "Traceback" not in response.text


def test_person_views_count_but_bots_do_not(server):
    image = _upload(server)
    browser = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0"}
    server.get(image["url_viewer"], headers=browser)
    server.get(image["url_viewer"], headers={"User-Agent": "Mozilla/5.0 (compatible; Discordbot/2.0)"})
    server.get(image["url_viewer"], headers={**browser, "Range": "bytes=0-10"})
    requests.head(image["url_viewer"], headers=browser, timeout=10)
    with sqlite3.connect(server.db) as conn:
        views = conn.execute("SELECT views FROM uploads WHERE public_id = ?",
                             (image["id_encoded"],)).fetchone()[0]
    assert views == 1
    page = server.get(image["url_viewer"], headers=browser)
    assert "1 view<" in page.text


def test_delete_confirms_on_get_and_deletes_on_post(server):
    image = _upload(server)
    confirm = server.get(image["delete_url"])
    assert confirm.status_code == 200 and "<form" in confirm.text and 'method="post"' in confirm.text
    assert server.get(image["url"]).status_code == 200, "a GET must not delete"
    done = requests.post(image["delete_url"], timeout=10)
    assert done.status_code == 200 and "Deleted" in done.text
    for url in (image["url"], image["thumb"]["url"], image["medium"]["url"], image["url_viewer"]):
        assert server.get(url).status_code == 404
    assert server.get(image["delete_url"]).status_code == 404


def test_delete_from_a_script_answers_json(server):
    image = _upload(server)
    rows = server.rows()
    response = requests.delete(image["delete_url"], headers={"Accept": "application/json"}, timeout=10)
    assert response.status_code == 200
    assert response.json()["success"]["message"] == "file deleted"
    assert server.rows() == rows - 1
    assert image["filename"] not in " ".join(server.stored_files())


def test_wrong_secret_deletes_nothing(server):
    image = _upload(server)
    other = _upload(server)
    wrong = image["url_short"] + "/delete/" + other["delete_url"].rsplit("/", 1)[1]
    for method in ("GET", "POST", "DELETE"):
        assert requests.request(method, wrong, timeout=10).status_code == 404
    response = requests.delete(wrong, headers={"Accept": "application/json"}, timeout=10)
    assert response.status_code == 404 and response.json()["error"]["code"] == 404
    assert server.get(image["url"]).status_code == 200
    assert server.get(other["url"]).status_code == 200
