"""What link previews see of an upload: OpenGraph and Twitter card tags, oEmbed, share codes.

Pure functions of an upload's page record (page.py) and the ``Site``; every URL is absolute.
NSFW uploads never put their picture or video into a preview: a chat app would show it unblurred.
"""
from __future__ import annotations

import html
import re
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, urlsplit

from .chevereto import MIME, Site
from .page import UploadPage

SITE_NAME = "imgz"
THEME_COLOR = "#2859c5"
DESCRIPTION_LIMIT = 300

# (attribute, key, value): attribute is "property" for OpenGraph and "name" for the rest.
MetaTag = tuple[str, str, str]


def _mime_of(url: str) -> str:
    return MIME.get(url.rsplit(".", 1)[-1].lower(), "application/octet-stream")


def _secure(url: str) -> bool:
    return url.startswith("https://")


def short_description(text: str | None) -> str | None:
    """The description for a preview: cut at ``DESCRIPTION_LIMIT`` characters, None when blank."""
    if not text or not text.strip():
        return None
    text = text.strip()
    if len(text) <= DESCRIPTION_LIMIT:
        return text
    return text[:DESCRIPTION_LIMIT - 1].rstrip() + "…"


def meta_tags(page: UploadPage) -> list[MetaTag]:
    """The OpenGraph and Twitter card tags of an upload's viewer page, in document order."""
    video = page.is_video
    title = page.display_title
    description = short_description(page.description)
    tags: list[MetaTag] = [
        ("property", "og:site_name", SITE_NAME),
        ("property", "og:type", "video.other" if video else "website"),
        ("property", "og:title", title),
        ("property", "og:url", page.viewer_url),
    ]
    if description:
        tags.append(("property", "og:description", description))
    show_media = not page.nsfw
    if show_media:
        display = page.display_url
        tags.append(("property", "og:image", display))
        if _secure(display):
            tags.append(("property", "og:image:secure_url", display))
        tags += [("property", "og:image:type", _mime_of(display)),
                 ("property", "og:image:width", str(page.display_width)),
                 ("property", "og:image:height", str(page.display_height)),
                 ("property", "og:image:alt", title)]
        if video:
            tags.append(("property", "og:video", page.url))
            if _secure(page.url):
                tags.append(("property", "og:video:secure_url", page.url))
            tags += [("property", "og:video:type", page.mime),
                     ("property", "og:video:width", str(page.width)),
                     ("property", "og:video:height", str(page.height))]
    if not show_media:
        card = "summary"
    else:
        card = "player" if video else "summary_large_image"
    tags += [("name", "twitter:card", card), ("name", "twitter:title", title)]
    if description:
        tags.append(("name", "twitter:description", description))
    if show_media:
        tags += [("name", "twitter:image", page.display_url),
                 ("name", "twitter:image:alt", title)]
        if video:
            tags += [("name", "twitter:player", page.url),
                     ("name", "twitter:player:width", str(page.width)),
                     ("name", "twitter:player:height", str(page.height)),
                     ("name", "twitter:player:stream", page.url),
                     ("name", "twitter:player:stream:content_type", page.mime)]
    tags.append(("name", "theme-color", THEME_COLOR))
    return tags


def oembed_url(site: Site, viewer_url: str) -> str:
    """The discovery URL of the oEmbed answer for a viewer page."""
    return f"{site.base_url}/oembed?url={quote(viewer_url, safe='')}&format=json"


def public_id_from_url(url: str, site: Site) -> str | None:
    """The public id a viewer URL (canonical or short, either route) points at, else None.

    The host must be this site's (the scheme may differ: a proxy can end TLS); a bare path works.
    """
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.netloc and parts.netloc.lower() != urlsplit(site.base_url).netloc.lower():
        return None
    segments = parts.path.split("/")
    if len(segments) != 3 or segments[0] or segments[1] not in {site.route_image, site.route_video}:
        return None
    public_id = segments[2].rpartition(".")[2]
    return public_id if re.fullmatch(r"[A-Za-z0-9]{1,64}", public_id) else None


def fit(width: int, height: int, max_width: int | None, max_height: int | None) -> tuple[int, int]:
    """Scale a box down (never up) to fit the limits, keeping its ratio; at least 1×1."""
    scale = 1.0
    if max_width and width > max_width:
        scale = min(scale, max_width / width)
    if max_height and height > max_height:
        scale = min(scale, max_height / height)
    if scale == 1.0:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))


def oembed(page: UploadPage, site: Site, *, max_width: int | None = None,
           max_height: int | None = None, now: datetime | None = None) -> dict[str, Any]:
    """The oEmbed 1.0 answer: ``photo`` for images, ``video`` for videos, ``link`` when NSFW."""
    answer: dict[str, Any] = {
        "version": "1.0",
        "type": "link",
        "title": page.display_title,
        "provider_name": SITE_NAME,
        "provider_url": site.base_url + "/",
    }
    if page.expires_at is not None:
        left = (page.expires_at - (now or datetime.now(timezone.utc))).total_seconds()
        answer["cache_age"] = max(0, int(left))
    if page.nsfw:
        return answer
    if page.is_video:
        width, height = fit(page.width, page.height, max_width, max_height)
        answer.update(type="video", width=width, height=height, html=video_html(page, width, height))
    else:
        width, height = fit(page.display_width, page.display_height, max_width, max_height)
        answer.update(type="photo", url=page.display_url, width=width, height=height)
    if page.thumb_url:
        tw, th = fit(page.thumb_width, page.thumb_height, max_width, max_height)
        answer.update(thumbnail_url=page.thumb_url, thumbnail_width=tw, thumbnail_height=th)
    return answer


def video_html(page: UploadPage, width: int, height: int) -> str:
    """A self-contained ``<video>`` tag for the file (no iframe, no script)."""
    poster = f' poster="{html.escape(page.frame_url)}"' if page.frame_url else ""
    return (f'<video controls preload="metadata" width="{width}" height="{height}"{poster}>'
            f'<source src="{html.escape(page.url)}" type="{html.escape(page.mime)}">'
            f'</video>')


def _markdown_text(text: str) -> str:
    # Brackets and backslashes would end the alt text early.
    return re.sub(r"([\\\[\]])", r"\\\1", text)


def share_codes(page: UploadPage) -> list[tuple[str, str, str]]:
    """(key, label, text) of each ready-to-paste link: direct, viewer, Markdown, HTML, BBCode."""
    title = page.display_title
    url, viewer = page.url, page.viewer_url
    codes = [("direct", "Direct link", url), ("viewer", "Viewer link", viewer)]
    if page.is_video:
        poster = page.frame_url or page.display_url
        codes += [
            ("markdown", "Markdown", f"[![{_markdown_text(title)}]({poster})]({viewer})"),
            ("html", "HTML", video_html(page, page.width, page.height)),
            ("bbcode", "BBCode", f"[url={viewer}][img]{poster}[/img][/url]"),
        ]
    else:
        codes += [
            ("markdown", "Markdown", f"![{_markdown_text(title)}]({url})"),
            ("html", "HTML", f'<img src="{html.escape(url)}" alt="{html.escape(title)}">'),
            ("bbcode", "BBCode", f"[img]{url}[/img]"),
        ]
    return codes
