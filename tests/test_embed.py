"""Link preview data of an upload: OpenGraph and Twitter tags, oEmbed, share codes."""
from __future__ import annotations

import dataclasses
import html.parser
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from imgz import chevereto, embed
from imgz.chevereto import Site
from imgz.page import upload_page
from imgz.records import Upload

NOW = datetime(2025, 3, 4, 12, 0, tzinfo=timezone.utc)
HTTP = Site("http://img.example", "image", "clip", "UTC")
HTTPS = Site("https://img.example", "image", "clip", "UTC")
FILES = "images/2025/03/04"


def image(**changes) -> Upload:
    base = Upload(
        id=1, public_id="AbCd1234", user_id=1, album_id=None, category_id=None, kind="image",
        folder="2025/03/04", name="garden-x1", extension="png", mime="image/png", size=123_456,
        width=1200, height=800, duration=0, is_animated=False, is_360=False, nsfw=False,
        title="Garden party", description="Tea\nand cake", original_filename="garden.png",
        original_exifdata=None, checksum="0" * 32, source_checksum=None, created_at=NOW,
        expires_at=None, thumb_size=900, thumb_width=320, thumb_height=320, medium_size=5000,
        medium_width=500, medium_height=333, tags=("garden", "tea"))
    return dataclasses.replace(base, **changes)


def video(**changes) -> Upload:
    values = dict(kind="video", name="clip-x1", extension="mp4", mime="video/mp4", width=640,
                  height=360, duration=12, medium_size=0, medium_width=0, medium_height=0,
                  frame_size=4000, frame_width=640, frame_height=360, thumb_height=320,
                  title="A clip")
    values.update(changes)
    return image(**values)


def tags_of(upload: Upload, site: Site = HTTP) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for _, key, value in embed.meta_tags(upload_page(upload, site)):
        found.setdefault(key, []).append(value)
    return found


def one(tags: dict[str, list[str]], key: str) -> str:
    assert len(tags.get(key, [])) == 1, (key, tags.get(key))
    return tags[key][0]


@pytest.mark.parametrize(("key", "expected"), [
    ("og:site_name", "imgz"),
    ("og:type", "website"),
    ("og:title", "Garden party"),
    ("og:url", "http://img.example/image/Garden-party.AbCd1234"),
    ("og:description", "Tea\nand cake"),
    ("og:image", f"http://img.example/{FILES}/garden-x1.md.png"),
    ("og:image:type", "image/png"),
    ("og:image:width", "500"),
    ("og:image:height", "333"),
    ("twitter:card", "summary_large_image"),
    ("twitter:title", "Garden party"),
    ("twitter:image", f"http://img.example/{FILES}/garden-x1.md.png"),
    ("theme-color", embed.THEME_COLOR),
])
def test_image_tags(key, expected):
    assert one(tags_of(image()), key) == expected


@pytest.mark.parametrize(("key", "expected"), [
    ("og:type", "video.other"),
    ("og:url", "http://img.example/clip/A-clip.AbCd1234"),
    ("og:image", f"http://img.example/{FILES}/clip-x1.fr.jpeg"),
    ("og:image:type", "image/jpeg"),
    ("og:image:width", "640"),
    ("og:video", f"http://img.example/{FILES}/clip-x1.mp4"),
    ("og:video:type", "video/mp4"),
    ("og:video:width", "640"),
    ("og:video:height", "360"),
    ("twitter:card", "player"),
    ("twitter:player", f"http://img.example/{FILES}/clip-x1.mp4"),
    ("twitter:player:width", "640"),
    ("twitter:player:height", "360"),
    ("twitter:image", f"http://img.example/{FILES}/clip-x1.fr.jpeg"),
])
def test_video_tags(key, expected):
    assert one(tags_of(video()), key) == expected


def test_image_without_a_medium_shows_the_original():
    tags = tags_of(image(medium_size=0, width=400, height=300))
    assert one(tags, "og:image") == f"http://img.example/{FILES}/garden-x1.png"
    assert (one(tags, "og:image:width"), one(tags, "og:image:height")) == ("400", "300")


def test_images_carry_no_video_tags():
    assert not [key for key in tags_of(image()) if "video" in key or "player" in key]


@pytest.mark.parametrize("make", [image, video], ids=["image", "video"])
def test_nsfw_previews_show_no_media(make):
    tags = tags_of(make(nsfw=True))
    leaked = [key for key in tags if key.startswith(("og:image", "og:video", "twitter:image",
                                                     "twitter:player"))]
    assert leaked == []
    assert one(tags, "twitter:card") == "summary"
    assert one(tags, "og:title") == make().title
    assert not any("/images/" in value for values in tags.values() for value in values)


@pytest.mark.parametrize(("make", "keys"), [
    (image, ["og:image:secure_url"]),
    (video, ["og:image:secure_url", "og:video:secure_url"]),
], ids=["image", "video"])
def test_https_sites_add_secure_urls(make, keys):
    secure = tags_of(make(), HTTPS)
    plain = tags_of(make(), HTTP)
    for key in keys:
        assert one(secure, key).startswith("https://img.example/images/")
        assert key not in plain
    assert one(secure, "og:url").startswith("https://")


@pytest.mark.parametrize("description", [None, "", "   \n"])
def test_no_description_tag_without_a_description(description):
    tags = tags_of(image(description=description))
    assert "og:description" not in tags and "twitter:description" not in tags


def test_long_descriptions_are_cut():
    text = embed.short_description("word " * 200)
    assert text is not None and len(text) == embed.DESCRIPTION_LIMIT and text.endswith("…")


def test_hostile_text_is_kept_as_data():
    hostile = "<script>alert(1)</script>\"'&"
    tags = tags_of(image(title=hostile, description=hostile))
    assert one(tags, "og:title") == hostile and one(tags, "og:description") == hostile


@pytest.mark.parametrize(("url", "expected"), [
    ("http://img.example/image/Garden-party.AbCd1234", "AbCd1234"),
    ("https://img.example/image/AbCd1234", "AbCd1234"),
    ("http://IMG.example/clip/a.b.AbCd1234", "AbCd1234"),
    ("/image/AbCd1234", "AbCd1234"),
    ("http://other.example/image/AbCd1234", None),
    ("http://img.example/images/AbCd1234", None),
    ("http://img.example/image/AbCd1234/delete/x", None),
    ("http://img.example/image/", None),
    ("http://img.example/image/bad%20id", None),
    ("http://[broken/image/AbCd1234", None),
    ("", None),
])
def test_public_id_from_url(url, expected):
    assert embed.public_id_from_url(url, HTTP) == expected


def test_oembed_url_quotes_the_viewer_url():
    assert embed.oembed_url(HTTP, "http://img.example/image/a.b?c&d") == (
        "http://img.example/oembed?url=http%3A%2F%2Fimg.example%2Fimage%2Fa.b%3Fc%26d&format=json")


def test_oembed_of_an_image_is_a_photo():
    answer = embed.oembed(upload_page(image(), HTTP), HTTP, now=NOW)
    assert answer == {
        "version": "1.0", "type": "photo", "title": "Garden party", "provider_name": "imgz",
        "provider_url": "http://img.example/",
        "url": f"http://img.example/{FILES}/garden-x1.md.png", "width": 500, "height": 333,
        "thumbnail_url": f"http://img.example/{FILES}/garden-x1.th.png",
        "thumbnail_width": 320, "thumbnail_height": 320,
    }


def test_oembed_of_a_video_is_a_video_tag():
    answer = embed.oembed(upload_page(video(), HTTP), HTTP, now=NOW)
    assert answer["type"] == "video"
    assert (answer["width"], answer["height"]) == (640, 360)
    assert answer["thumbnail_url"] == f"http://img.example/{FILES}/clip-x1.th.jpeg"
    assert answer["html"].startswith("<video ") and "iframe" not in answer["html"]
    assert f'src="http://img.example/{FILES}/clip-x1.mp4"' in answer["html"]
    assert f'poster="http://img.example/{FILES}/clip-x1.fr.jpeg"' in answer["html"]


@pytest.mark.parametrize("make", [image, video], ids=["image", "video"])
def test_oembed_of_nsfw_is_a_link_without_media(make):
    answer = embed.oembed(upload_page(make(nsfw=True), HTTP), HTTP, now=NOW)
    assert answer["type"] == "link"
    assert not {"url", "html", "thumbnail_url", "width", "height"} & set(answer)


def test_oembed_cache_age_follows_the_expiry():
    expiring = upload_page(image(expires_at=NOW + timedelta(hours=1)), HTTP)
    answer = embed.oembed(expiring, HTTP, now=NOW)
    assert answer["cache_age"] == 3600
    assert "cache_age" not in embed.oembed(upload_page(image(), HTTP), HTTP, now=NOW)


def test_oembed_respects_maxwidth_and_maxheight():
    answer = embed.oembed(upload_page(video(), HTTP), HTTP, max_width=320, now=NOW)
    assert (answer["width"], answer["height"]) == (320, 180)
    assert 'width="320" height="180"' in answer["html"]
    answer = embed.oembed(upload_page(image(), HTTP), HTTP, max_height=100, now=NOW)
    assert (answer["width"], answer["height"]) == (150, 100)


@pytest.mark.parametrize(("box", "limits", "expected"), [
    ((640, 360), (None, None), (640, 360)),
    ((640, 360), (1000, 1000), (640, 360)),
    ((640, 360), (320, None), (320, 180)),
    ((640, 360), (None, 90), (160, 90)),
    ((640, 360), (320, 90), (160, 90)),
    ((5000, 1), (100, None), (100, 1)),
])
def test_fit(box, limits, expected):
    assert embed.fit(*box, *limits) == expected


def test_video_html_escapes_urls():
    page = dataclasses.replace(upload_page(video(), HTTP), url='http://x/a"b.mp4',
                               frame_url="http://x/<f>.jpeg", mime="video/mp4")
    text = embed.video_html(page, 10, 10)
    assert '"b.mp4' not in text and "<f>" not in text


def test_share_codes_of_an_image():
    page = upload_page(image(title='Tea "&" <cake> [1]'), HTTP)
    codes = {key: text for key, _, text in embed.share_codes(page)}
    url = f"http://img.example/{FILES}/garden-x1.png"
    assert codes == {
        "direct": url,
        "viewer": "http://img.example/image/Tea-cake-1.AbCd1234",
        "markdown": f"![Tea \"&\" <cake> \\[1\\]]({url})",
        "html": f'<img src="{url}" alt="Tea &quot;&amp;&quot; &lt;cake&gt; [1]">',
        "bbcode": f"[img]{url}[/img]",
    }


def test_share_codes_of_a_video_link_the_player():
    codes = {key: text for key, _, text in embed.share_codes(upload_page(video(), HTTP))}
    assert codes["direct"] == f"http://img.example/{FILES}/clip-x1.mp4"
    assert codes["html"].startswith("<video ")
    assert codes["bbcode"] == (f"[url=http://img.example/clip/A-clip.AbCd1234]"
                               f"[img]http://img.example/{FILES}/clip-x1.fr.jpeg[/img][/url]")


def test_share_html_parses_back_to_the_title():
    hostile = "<script>alert(1)</script>\"'&"
    codes = {key: text for key, _, text in embed.share_codes(upload_page(image(title=hostile), HTTP))}
    seen: list[dict] = []

    class Parser(html.parser.HTMLParser):
        def handle_starttag(self, tag, attrs):
            seen.append({"tag": tag, **dict(attrs)})

    Parser().feed(codes["html"])
    assert seen == [{"tag": "img", "src": codes["direct"], "alt": hostile}]


BERLIN = Site("https://img.example", "image", "clip", "Europe/Berlin")


@pytest.mark.parametrize("upload", [
    image(), image(title="", medium_size=0, medium_width=0, medium_height=0, thumb_size=0),
    image(nsfw=True, views=1, expires_at=NOW + timedelta(days=2)), video(), video(frame_size=0),
], ids=["image", "small-untitled", "nsfw-expiring", "video", "video-without-frame"])
def test_the_page_record_says_what_the_api_answer_says(upload):
    page, answer = upload_page(upload, BERLIN), chevereto.image_object(upload, BERLIN, now=NOW)
    assert (page.display_title, page.filename, page.size_formatted, page.url, page.mime) == (
        answer["display_title"], answer["filename"], answer["size_formatted"], answer["url"],
        answer["mime"])
    assert (page.display_url, page.display_width, page.display_height) == (
        answer["display_url"], answer["display_width"], answer["display_height"])
    assert (page.medium_url, page.thumb_url, page.frame_url) == (
        answer["medium"]["url"], answer["thumb"]["url"], answer["url_frame"])
    assert (page.viewer_url, page.viewer_path, page.duration_time, page.date, page.views_label) == (
        answer["url_viewer"], answer["path_viewer"], answer["duration_time"], answer["date"],
        answer["views_label"])
    assert [(tag.name, tag.url_key) for tag in page.tags] == [
        (tag["name"], tag["url_key"]) for tag in answer["tags"]]
    assert page.expires == (page.expires_at and page.expires_at.astimezone(
        ZoneInfo("Europe/Berlin")).strftime("%Y-%m-%d %H:%M:%S") or "")
