"""The pages people see, through the app: viewer, embeds, oEmbed, delete, tags, errors."""
from __future__ import annotations

import html
import os
import re
import time
from html.parser import HTMLParser
from urllib.parse import quote, urlsplit

import pytest
import requests

import backends
import media
from contract import assert_upload_ok
from inprocess import InProcess
from imgz.web import create_app
from imgz.chevereto import tag_key
from imgz.errors import DatabaseError
from imgz.views import is_person

BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0"
HOSTILE = "<script>alert(1)</script>\"'&"
# Tags may not hold '/', so the hostile tag cannot close its script element.
HOSTILE_TAG = "<script>alert(1)\"'&"


class Page(HTMLParser):
    """A page parsed by the standard library: elements with attributes, text per element."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[dict[str, str | None]] = []
        self.texts: dict[str, list[str]] = {}
        self._open: list[dict] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        element = {"tag": tag, **{name: value for name, value in attrs}, "text": ""}
        self.elements.append(element)
        if tag not in {"meta", "link", "img", "input", "br", "source"}:
            self._open.append(element)

    def handle_endtag(self, tag):
        while self._open:
            element = self._open.pop()
            if element["tag"] == tag:
                break

    def handle_data(self, data):
        for element in self._open:
            element["text"] += data

    def find(self, tag: str, **attrs: str) -> list[dict]:
        return [e for e in self.elements
                if e["tag"] == tag and all(e.get(k.rstrip("_")) == v for k, v in attrs.items())]

    def meta(self) -> dict[str, str]:
        """OpenGraph (property) and other (name) meta tags; a repeated key would fail."""
        found: dict[str, str] = {}
        for element in self.find("meta"):
            key = element.get("property") or element.get("name")
            if key and element.get("content") is not None:
                assert key not in found, f"{key} twice"
                found[key] = element["content"]
        return found

    def text_of(self, tag: str, **attrs: str) -> list[str]:
        return [e["text"].strip() for e in self.find(tag, **attrs)]


def _upload(server, data=None, **fields):
    data = data if data is not None else media.png(640, 400)
    fields.setdefault("filename", "Garden party.png")
    return assert_upload_ok(server.upload(data, **fields))


def _page(server, url, **headers) -> tuple[requests.Response, Page]:
    response = server.get(url, headers={"User-Agent": BROWSER, **headers})
    return response, Page(response.text)


def _views(server, public_id: str) -> int:
    return server.query("SELECT views FROM uploads WHERE public_id = :id", {"id": public_id})[0][0]


@pytest.fixture(scope="module")
def clip(server):
    """A video uploaded once for this module's tests."""
    response = server.upload(media.video("mp4", size="320x240", seconds=2), filename="sea clip.mp4",
                             description="Waves\nand sand")
    return assert_upload_ok(response)


@pytest.fixture(scope="module")
def tagged(tmp_path_factory):
    """A server with public tag pages and a one-second minimum expiry."""
    srv = InProcess(tmp_path_factory.mktemp("tags"), {"IMGZ_PUBLIC_TAGS": "1",
                                                      "IMGZ_EXPIRATION_MIN": "1"})
    yield srv
    srv.stop()


# -- viewer --------------------------------------------------------------------------------------

def test_viewer_page_shows_the_upload(server):
    image = _upload(server, title='Tea & <cake> "party"', description="<script>alert(1)</script>")
    page = server.get(image["url_viewer"])
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert image["display_url"] in page.text and image["url"] in page.text
    assert "Tea &amp; &lt;cake&gt; &#34;party&#34;" in page.text
    assert "<script>alert(1)</script>" not in page.text
    assert 'property="og:image"' in page.text


def test_viewer_shows_details_and_links_the_original(server):
    image = _upload(server, title="Garden", description="first line\nsecond line", tags="red, blue",
                    expiration="P1D")
    response, page = _page(server, image["url_viewer"])
    assert page.text_of("h1") == ["Garden"]
    assert page.text_of("p", class_="description") == ["first line\nsecond line"]
    img = page.find("img", id="media")[0]
    assert img["src"] == image["display_url"] and img["alt"] == "Garden"
    assert (img["width"], img["height"]) == (str(image["display_width"]), str(image["display_height"]))
    assert [a["href"] for a in page.find("a") if a["href"] == image["url"]], "no link to the original"
    details = dict(zip(page.text_of("dt"), page.text_of("dd")))
    assert details["Size"] == image["size_formatted"]
    assert details["Dimensions"] == "640 × 400"
    assert details["Uploaded"].startswith(image["date"])
    assert "Expires" in details and "Duration" not in details
    assert details["Views"].endswith("views")
    assert [t for t in page.text_of("span") if t in {"red", "blue"}] == ["red", "blue"]
    assert not [a for a in page.find("a") if a["href"].startswith("/tag/")], "tag pages are off"


def test_viewer_of_a_video_has_a_player(server, clip):
    response, page = _page(server, clip["url_viewer"])
    assert response.status_code == 200
    player = page.find("video", id="media")[0]
    assert "controls" in player and player["preload"] == "metadata"
    assert player["poster"] == clip["url_frame"]
    assert page.find("source")[0]["src"] == clip["url"]
    assert page.find("source")[0]["type"] == "video/mp4"
    details = dict(zip(page.text_of("dt"), page.text_of("dd")))
    assert details["Duration"] == clip["duration_time"] == "00:02"
    assert page.text_of("p", class_="description") == ["Waves\nand sand"]


def test_short_and_wrong_slug_urls_redirect_to_the_canonical_one(server):
    image = _upload(server)
    for path in (f"/image/{image['id_encoded']}", f"/image/wrong-slug.{image['id_encoded']}"):
        response = server.get(path)
        assert response.status_code == 302
        assert response.headers["Location"].endswith(image["path_viewer"])


@pytest.mark.parametrize("path", ["/image/{slug}.{id}", "/image/{id}", "/video/{slug}.{id}",
                                  "/video/{id}", "/clip/{id}"])
def test_video_paths_redirect_to_the_clip_route(server, clip, path):
    slug, _, public_id = clip["path_viewer"].rsplit("/", 1)[1].rpartition(".")
    location = server.get(path.format(slug=slug, id=public_id), allow_redirects=True).url
    assert urlsplit(location).path == clip["path_viewer"]


def test_image_under_the_video_route_redirects(server):
    image = _upload(server)
    response = server.get(f"/clip/{image['path_viewer'].rsplit('/', 1)[1]}")
    assert response.status_code == 302 and response.headers["Location"].endswith(image["path_viewer"])


@pytest.mark.parametrize("path", ["/image/nothing.ZZZZZZZZ", "/clip/ZZZZZZZZ", "/image/"])
def test_unknown_viewer_id_is_a_404_page(server, path):
    response = server.get(path)
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("text/html")
    assert "404" in response.text and "Traceback" not in response.text


def test_nsfw_viewer_blurs_behind_a_toggle(server):
    image = _upload(server, nsfw="1")
    _, page = _page(server, image["url_viewer"])
    assert page.find("input", type="checkbox", id="reveal")
    assert page.find("label", for_="reveal")
    assert "nsfw" in page.find("div", class_="stage nsfw")[0]["class"]


# -- embeds --------------------------------------------------------------------------------------

def _loads(server, url: str, kind: str) -> None:
    response = server.request("GET", url, timeout=10)
    assert response.status_code == 200, url
    assert response.headers["Content-Type"].startswith(kind), (url, response.headers["Content-Type"])


def test_image_viewer_carries_opengraph_and_twitter_tags(server):
    image = _upload(server, data=media.jpeg(1200, 800), filename="Harbour.jpg", title="Harbour",
                    description="Boats at dusk")
    _, page = _page(server, image["url_viewer"])
    meta = page.meta()
    assert {key: meta[key] for key in ("og:title", "og:type", "og:url", "og:site_name",
                                       "og:description", "twitter:card")} == {
        "og:title": "Harbour", "og:type": "website", "og:url": image["url_viewer"],
        "og:site_name": "imgz", "og:description": "Boats at dusk",
        "twitter:card": "summary_large_image"}
    assert meta["og:image"] == meta["twitter:image"] == image["display_url"] == image["medium"]["url"]
    assert (meta["og:image:width"], meta["og:image:height"]) == ("500", str(image["display_height"]))
    assert meta["og:image:type"] == "image/jpeg"
    assert "og:image:secure_url" not in meta, "plain http has no secure URL"
    assert meta["theme-color"].startswith("#")
    assert not [key for key in meta if key.startswith(("og:video", "twitter:player"))]
    _loads(server, meta["og:image"], "image/jpeg")
    _loads(server, meta["og:url"], "text/html")


def test_video_viewer_carries_player_tags(server, clip):
    _, page = _page(server, clip["url_viewer"])
    meta = page.meta()
    assert meta["og:type"] == "video.other" and meta["twitter:card"] == "player"
    assert meta["og:video"] == meta["twitter:player"] == clip["url"]
    assert (meta["og:video:type"], meta["og:video:width"], meta["og:video:height"]) == (
        "video/mp4", "320", "240")
    assert (meta["twitter:player:width"], meta["twitter:player:height"]) == ("320", "240")
    assert meta["og:image"] == clip["display_url"]
    _loads(server, meta["og:video"], "video/mp4")
    _loads(server, meta["og:image"], "image/jpeg")


@pytest.mark.parametrize("kind", ["image", "video"])
def test_nsfw_viewer_puts_no_media_in_previews(server, kind):
    data, name = (media.video("mp4"), "v.mp4") if kind == "video" else (media.png(64, 64), "p.png")
    upload = _upload(server, data=data, filename=name, nsfw="1")
    _, page = _page(server, upload["url_viewer"])
    meta = page.meta()
    assert "og:title" in meta
    assert not [key for key in meta if key.startswith(("og:image", "og:video", "twitter:image",
                                                       "twitter:player"))]
    assert not [value for value in meta.values() if "/images/" in value]
    oembed = server.get("/oembed", params={"url": upload["url_viewer"]}).json()
    assert oembed["type"] == "link" and "thumbnail_url" not in oembed


def test_oembed_discovery_link_answers_a_photo(server):
    image = _upload(server, title="Fox")
    _, page = _page(server, image["url_viewer"])
    link = page.find("link", rel="alternate", type="application/json+oembed")[0]
    response = server.request("GET", link["href"], timeout=10)
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["version"] == "1.0" and body["type"] == "photo"
    assert body["provider_name"] == "imgz" and body["title"] == "Fox"
    assert (body["url"], body["width"], body["height"]) == (
        image["display_url"], image["display_width"], image["display_height"])
    assert body["thumbnail_url"] == image["thumb"]["url"]
    _loads(server, body["url"], "image/png")
    _loads(server, body["thumbnail_url"], "image/png")


def test_oembed_of_a_video(server, clip):
    body = server.get("/oembed", params={"url": clip["url_short"], "format": "json"}).json()
    assert body["type"] == "video" and (body["width"], body["height"]) == (320, 240)
    video = Page(body["html"]).find("video")[0]
    assert "controls" in video and video["poster"] == clip["url_frame"]
    assert Page(body["html"]).find("source")[0]["src"] == clip["url"]
    _loads(server, body["thumbnail_url"], "image/jpeg")


@pytest.mark.parametrize(("query", "status"), [
    ({"url": "http://127.0.0.1:1/image/x.ZZZZZZZZ"}, 404),
    ({"url": "/image/ZZZZZZZZ"}, 404),
    ({"url": "http://elsewhere.example/image/x"}, 404),
    ({"url": "not a url"}, 404),
    ({}, 400),
    ({"url": "/image/ZZZZZZZZ", "format": "xml"}, 501),
])
def test_oembed_refusals_are_json(server, query, status):
    response = server.get("/oembed", params=query)
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["status_code"] == status


# -- hostile text --------------------------------------------------------------------------------

def _assert_no_injected_script(page: Page) -> None:
    assert not [s for s in page.find("script") if "alert" in s["text"]]
    assert len(page.find("script")) <= 1


def test_hostile_text_is_shown_literally_on_the_viewer(tagged):
    image = _upload(tagged, title=HOSTILE, description=HOSTILE, tags=HOSTILE_TAG)
    assert image["title"] == HOSTILE and image["tags"][0]["name"] == HOSTILE_TAG
    _, page = _page(tagged, image["url_viewer"])
    _assert_no_injected_script(page)
    assert page.text_of("title") == [f"{HOSTILE} - imgz"]
    assert page.text_of("h1") == [HOSTILE]
    assert page.text_of("p", class_="description") == [HOSTILE]
    tag_link = page.find("a", href=f"/tag/{quote(tag_key(HOSTILE_TAG))}")[0]
    assert tag_link["text"] == HOSTILE_TAG
    assert page.find("img", id="media")[0]["alt"] == HOSTILE
    meta = page.meta()
    for key in ("og:title", "og:description", "twitter:title", "twitter:description", "og:image:alt"):
        assert meta[key] == HOSTILE, key
    codes = {e["id"]: e["value"] for e in page.find("input") if e.get("id", "").startswith("code-")}
    assert codes["code-html"] == f'<img src="{image["url"]}" alt="{html.escape(HOSTILE)}">'
    assert codes["code-markdown"] == f"![{HOSTILE}]({image['url']})"


def test_hostile_text_is_shown_literally_on_the_delete_and_tag_pages(tagged):
    image = _upload(tagged, title=HOSTILE, description=HOSTILE, tags=HOSTILE_TAG)
    _, page = _page(tagged, image["delete_url"])
    _assert_no_injected_script(page)
    assert page.text_of("strong") == [HOSTILE]
    assert page.find("img")[0]["alt"] == HOSTILE
    response, page = _page(tagged, image["tags"][0]["url"])
    assert response.status_code == 200
    _assert_no_injected_script(page)
    assert page.text_of("h1") == [HOSTILE_TAG]
    assert HOSTILE in page.text_of("span", class_="caption")
    assert HOSTILE in [img["alt"] for img in page.find("img")]


def test_hostile_text_is_literal_in_oembed(tagged):
    image = _upload(tagged, title=HOSTILE)
    assert tagged.get("/oembed", params={"url": image["url_viewer"]}).json()["title"] == HOSTILE


# -- view counting -------------------------------------------------------------------------------

BOT_AGENTS = {
    "discord": "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
    "slack": "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "facebook": "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "twitter": "Twitterbot/1.0",
    "telegram": "TelegramBot (like TwitterBot)",
    "whatsapp": "WhatsApp/2.23.20.0 A",
    "google": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "crawler": "SomeCrawler/3.1",
    "spider": "Baiduspider-image",
    "curl": "curl/8.5.0",
    "empty": "",
}


@pytest.mark.parametrize("agent", list(BOT_AGENTS.values()), ids=list(BOT_AGENTS))
def test_bots_do_not_count_views(server, agent):
    image = _upload(server)
    assert server.get(image["url_viewer"], headers={"User-Agent": agent}).status_code == 200
    assert _views(server, image["id_encoded"]) == 0


@pytest.mark.parametrize(("case", "request_it"), [
    ("head", lambda srv, url, img: srv.head(url, headers={"User-Agent": BROWSER}, timeout=10)),
    ("range", lambda srv, url, img: srv.request("GET", url, headers={"User-Agent": BROWSER,
                                                                     "Range": "bytes=0-9"}, timeout=10)),
    ("file", lambda srv, url, img: srv.request("GET", img["url"], headers={"User-Agent": BROWSER},
                                               timeout=10)),
    ("prefetch", lambda srv, url, img: srv.request("GET", url, headers={"User-Agent": BROWSER,
                                                                        "Sec-Purpose": "prefetch"},
                                                   timeout=10)),
    ("short url", lambda srv, url, img: srv.request("GET", img["url_short"], headers={"User-Agent": BROWSER},
                                                    allow_redirects=False, timeout=10)),
])
def test_requests_that_are_not_page_views(server, case, request_it):
    image = _upload(server)
    assert request_it(server, image["url_viewer"], image).status_code in {200, 206, 302}
    assert _views(server, image["id_encoded"]) == 0


PEOPLE = {
    "firefox": BROWSER,
    "chrome": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
              " Chrome/128.0.0.0 Safari/537.36",
    "iphone": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15"
              " (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "twitter app": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15"
                   " (KHTML, like Gecko) Mobile/15E148 Twitter for iPhone/10.50",
}


@pytest.mark.parametrize(("agent", "person"), [(a, True) for a in PEOPLE.values()]
                         + [(a, False) for a in BOT_AGENTS.values()],
                         ids=[f"person {k}" for k in PEOPLE] + [f"bot {k}" for k in BOT_AGENTS])
def test_is_person(agent, person):
    assert is_person(agent) is person


def test_person_views_count_but_bots_do_not(server):
    image = _upload(server)
    browser = {"User-Agent": BROWSER}
    server.get(image["url_viewer"], headers=browser)
    server.get(image["url_viewer"], headers={"User-Agent": "Mozilla/5.0 (compatible; Discordbot/2.0)"})
    server.get(image["url_viewer"], headers={**browser, "Range": "bytes=0-10"})
    server.head(image["url_viewer"], headers=browser, timeout=10)
    assert _views(server, image["id_encoded"]) == 1
    page = server.get(image["url_viewer"], headers=browser)
    assert "1 view<" in page.text
    assert _views(server, image["id_encoded"]) == 2


# -- delete --------------------------------------------------------------------------------------

def test_delete_confirms_on_get_and_deletes_on_post(server):
    image = _upload(server)
    confirm = server.get(image["delete_url"])
    assert confirm.status_code == 200 and "<form" in confirm.text and 'method="post"' in confirm.text
    assert server.get(image["url"]).status_code == 200, "a GET must not delete"
    done = server.post(image["delete_url"], timeout=10)
    assert done.status_code == 200 and "Deleted" in done.text
    for url in (image["url"], image["thumb"]["url"], image["medium"]["url"], image["url_viewer"]):
        assert server.get(url).status_code == 404
    assert server.get(image["delete_url"]).status_code == 404


def test_delete_page_keeps_its_secret_out_of_referrers_and_indexes(server):
    image = _upload(server)
    response, page = _page(server, image["delete_url"])
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "noindex" in page.find("meta", name="robots")[0]["content"]
    assert page.find("img")[0]["src"] == image["thumb"]["url"]
    assert page.find("form", method="post") and page.find("button", type="submit")
    wrong = server.get(image["url_short"] + "/delete/" + "0" * 48)
    assert wrong.status_code == 404 and wrong.headers["Referrer-Policy"] == "no-referrer"


def test_repeated_get_of_the_delete_url_deletes_nothing(server):
    image = _upload(server)
    for _ in range(3):
        assert server.get(image["delete_url"]).status_code == 200
        assert server.head(image["delete_url"], timeout=10).status_code == 200
    assert server.get(image["url"]).status_code == 200
    assert server.get(image["url_viewer"]).status_code == 200


def test_delete_from_a_script_answers_json(server):
    image = _upload(server)
    rows = server.rows()
    response = server.delete(image["delete_url"], headers={"Accept": "application/json"}, timeout=10)
    assert response.status_code == 200
    assert response.json()["success"]["message"] == "file deleted"
    assert server.rows() == rows - 1
    assert image["filename"] not in " ".join(server.stored_files())


@pytest.mark.parametrize("accept, json_answer", [
    ("application/json, text/plain, */*", True),   # axios, Angular
    ("application/json, */*;q=0.8", True),
    ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", False),  # a browser
    ("text/html, application/json;q=0.9", False),
    ("*/*", False),
    ("Application/JSON", True),
    ("application/*", True),
    ("text/*, application/json;q=0.5", False),
])
def test_delete_answers_json_to_clients_that_name_it(server, accept, json_answer):
    image = _upload(server)
    response = server.delete(image["delete_url"], headers={"Accept": accept}, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith(
        "application/json" if json_answer else "text/html")
    assert server.get(image["url"]).status_code == 404


def test_wrong_secret_deletes_nothing(server):
    image = _upload(server)
    other = _upload(server)
    wrong = image["url_short"] + "/delete/" + other["delete_url"].rsplit("/", 1)[1]
    rows = server.rows()
    for method in ("GET", "POST", "DELETE"):
        response = server.request(method, wrong, timeout=10)
        assert response.status_code == 404 and response.headers["Content-Type"].startswith("text/html")
    response = server.delete(wrong, headers={"Accept": "application/json"}, timeout=10)
    assert response.status_code == 404 and response.json()["error"]["code"] == 404
    assert server.rows() == rows
    assert server.get(image["url"]).status_code == 200
    assert server.get(other["url"]).status_code == 200


# -- tag pages -----------------------------------------------------------------------------------

def test_tag_pages_are_off_by_default(server):
    image = _upload(server, tags="sunny")
    assert server.get("/tag/sunny").status_code == 404
    assert server.get(image["tags"][0]["url"]).headers["Content-Type"].startswith("text/html")


def test_tag_pages_list_public_uploads_page_by_page(tagged):
    expired = _upload(tagged, tags="many", title="gone", expiration="1")
    expired_by = time.monotonic() + 1.05
    hidden = _upload(tagged, tags="many", title="hidden", nsfw="1")
    shown = [_upload(tagged, data=media.png(40, 30, color=(n * 9, 90, 160)), tags="many, other", title=f"pic {n}")
             for n in range(25)]
    time.sleep(max(0.0, expired_by - time.monotonic()))
    _, first = _page(tagged, "/tag/many")
    _, second = _page(tagged, "/tag/many?page=2")
    links = [[a["href"] for a in page.find("a") if a.get("title")] for page in (first, second)]
    assert [len(found) for found in links] == [24, 1]
    expected = [image["path_viewer"] for image in reversed(shown)]
    assert links[0] + links[1] == expected, "newest first, every public upload once"
    for path in (expired["path_viewer"], hidden["path_viewer"]):
        assert path not in links[0] + links[1]
    assert first.find("a", rel="next")[0]["href"] == "?page=2"
    assert second.find("a", rel="prev")[0]["href"] == "?page=1"
    assert first.find("img")[0]["src"] == shown[-1]["thumb"]["url"]
    assert tagged.get(links[1][0]).status_code == 200


@pytest.mark.parametrize("path", ["/tag/few?page=2", "/tag/few?page=0", "/tag/few?page=-1",
                                  "/tag/few?page=abc", "/tag/nosuchtag", "/tag/onlynsfw"])
def test_tag_page_404s(tagged, path):
    _upload(tagged, tags="few")
    assert tagged.get("/tag/few?page=1").status_code == 200
    _upload(tagged, tags="onlynsfw", nsfw="1")
    response = tagged.get(path)
    assert response.status_code == 404 and response.headers["Content-Type"].startswith("text/html")
    assert "No public upload carries this tag" in html.unescape(response.text)


def test_tag_keys_redirect_to_their_canonical_form(tagged):
    image = _upload(tagged, tags="Blue Sky")
    response = tagged.get("/tag/Blue%20Sky")
    assert response.status_code == 302 and response.headers["Location"].endswith("/tag/blue-sky")
    assert image["tags"][0]["url"].endswith("/tag/blue-sky")


def test_viewer_links_tags_when_tag_pages_are_on(tagged):
    image = _upload(tagged, tags="linked")
    _, page = _page(tagged, image["url_viewer"])
    link = page.find("a", href="/tag/linked")[0]
    assert link["text"] == "linked" and tagged.get(link["href"]).status_code == 200


def test_an_nsfw_upload_does_not_link_its_tags(tagged):
    image = _upload(tagged, tags="hidden-away", nsfw="1")
    _, page = _page(tagged, image["url_viewer"])
    assert page.find("a", href="/tag/hidden-away") == []
    assert "hidden-away" in page.text_of("span")


def test_start_page_says_how_to_upload_here(server):
    response, page = _page(server, "/")
    assert response.status_code == 200
    text = html.unescape(response.text)
    assert f'-F "source=@photo.png" {server.url}/api/1/upload' in text
    assert f"{server.url}/sharex.sxcu?key=YOUR_KEY" in text
    assert page.find("ul", class_="tags") == [], "no tag list without public tag pages"


def test_a_dots_only_tag_from_before_is_never_linked(tagged):
    image = _upload(tagged, tags="will-be-dots")
    # as stored before such tags were dropped
    tagged.query("UPDATE tags SET name = '..', url_key = '..' WHERE url_key = 'will-be-dots'")
    _, viewer = _page(tagged, image["url_viewer"])
    _, home = _page(tagged, "/")
    for page in (viewer, home):
        assert [a for a in page.find("a") if (a.get("href") or "").startswith("/tag/..")] == []


def test_start_page_lists_public_tags(tagged):
    _upload(tagged, tags="home-listed")
    _upload(tagged, tags="home-secret", nsfw="1")
    _, page = _page(tagged, "/")
    links = [a["href"] for a in page.find("a")]
    assert "/tag/home-listed" in links and "/tag/home-secret" not in links


def test_deleting_from_the_page_lands_on_the_start_page(server):
    image = _upload(server)
    response = server.post(image["delete_url"], data={"confirm": "page"}, allow_redirects=False,
                             timeout=10)
    assert response.status_code == 303 and response.headers["Location"] == "/?deleted=1"
    _, page = _page(server, response.headers["Location"])
    assert page.text_of("h1") == ["Deleted"]
    assert server.get(image["url"]).status_code == 404


def test_delete_pages_are_never_cached(server):
    image = _upload(server)
    assert server.get(image["delete_url"]).headers["Cache-Control"] == "no-store"


def test_copy_buttons_say_what_they_copy(server):
    image = _upload(server)
    _, page = _page(server, image["url_viewer"])
    labels = [b["aria-label"] for b in page.find("button")]
    assert labels == ["Copy Direct link", "Copy Viewer link", "Copy Markdown", "Copy HTML", "Copy BBCode"]
    assert page.find("p", role="status")


# -- errors and headers --------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/no/such/page", 404),
    ("POST", "/image/abc", 405),
    ("PUT", "/", 405),
])
def test_error_pages_are_html_in_the_site_style(server, method, path, status):
    response = server.request(method, path, timeout=10)
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("text/html")
    page = Page(response.text)
    assert page.text_of("p", class_="status") == [str(status)]
    assert page.find("style") and "Traceback" not in response.text


def test_a_crash_is_a_500_page_without_details(tmp_path):
    app = create_app({"data": str(tmp_path), "min_free_mb": "0"}, jobs=False,
                     environ={**os.environ, **backends.in_process(tmp_path)})

    def boom():
        raise RuntimeError("secret detail /etc/passwd")

    app.add_url_rule("/boom", "boom", boom)
    response = app.test_client().get("/boom")
    assert response.status_code == 500 and response.mimetype == "text/html"
    text = response.get_data(as_text=True)
    assert "secret detail" not in text and "Traceback" not in text and "500" in text
    assert "Content-Security-Policy" in response.headers


@pytest.mark.parametrize("accept, json_answer", [("application/json", True), ("text/html", False)])
def test_a_failing_delete_keeps_its_secret_out_of_the_log(tmp_path, caplog, monkeypatch, accept,
                                                          json_answer):
    from imgz.records import Actor, Options
    from imgz.sources import Incoming
    from imgz import spool

    app = create_app({"data": str(tmp_path), "min_free_mb": "0"}, jobs=False,
                     environ={**os.environ, **backends.in_process(tmp_path)})
    svc = app.config["IMGZ_SERVICE"]
    writer = spool.write_bytes(svc.data, media.png(20, 20), 10_000_000, 10)
    writer.close()
    upload, secret = svc.upload(Incoming(writer.path, writer.md5, writer.size, "a.png", "file"),
                                Actor(1, True), Options())

    def broken(upload):
        raise DatabaseError("disk I/O error")

    monkeypatch.setattr(svc, "delete", broken)
    response = app.test_client().post(f"/image/{upload.public_id}/delete/{secret}",
                                      headers={"Accept": accept})
    assert response.status_code == 500
    assert response.mimetype == ("application/json" if json_answer else "text/html")
    assert "database error on POST" in caplog.text
    assert secret not in caplog.text and "/delete/***" in caplog.text


def test_html_pages_carry_a_strict_policy(server):
    image = _upload(server)
    for url in (image["url_viewer"], image["delete_url"], server.url + "/", server.url + "/nothing"):
        response, page = _page(server, url)
        policy = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
        assert "http" not in policy and "*" not in policy, "no other origins"
        nonce = re.search(r"'nonce-([^']+)'", policy).group(1)
        for element in page.find("style") + page.find("script"):
            assert element["nonce"] == nonce
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "Referrer-Policy" in response.headers


def test_pages_load_nothing_from_other_origins(server):
    image = _upload(server)
    _, page = _page(server, image["url_viewer"])
    urls = [e.get(attr) for e in page.elements for attr in ("src", "href", "poster")
            if e.get(attr) and e["tag"] != "a"]
    assert urls
    for url in urls:
        assert url.startswith(("/", "?", "data:", server.url)), url
