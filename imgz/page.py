"""What pages and link previews show of an upload: small records made from an ``Upload`` and
the ``Site``, so that templates and embeds never read the API's answer (chevereto.py).

Every URL here is absolute but the viewer path and a tile's link; dates are in the site's time
zone. The values are those the API's answer gives for the same upload.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from .chevereto import (Site, display_variant, duration_time, file_url, size_formatted, tag_key,
                        viewer_path)
from .records import Upload


@dataclass(frozen=True)
class PageTag:
    """A tag as a page links it: its name, and the key of its tag page."""

    name: str
    url_key: str


@dataclass(frozen=True)
class UploadPage:
    """One upload as its viewer page, its delete page and its link previews show it."""

    kind: str                     # 'image' or 'video'
    title: str                    # as given, may be empty
    display_title: str            # the title, else the file name
    description: str | None
    nsfw: bool
    tags: tuple[PageTag, ...]
    mime: str
    width: int                    # the stored original's size
    height: int
    filename: str
    size_formatted: str
    url: str                      # the stored original
    display_url: str              # what a page shows: the medium, a video's frame or the original
    display_width: int
    display_height: int
    medium_url: str | None
    frame_url: str                # '' without a frame
    thumb_url: str | None
    thumb_width: int
    thumb_height: int
    viewer_url: str
    viewer_path: str
    duration_time: str            # MM:SS for a video, else ''
    created_at: datetime
    date: str                     # created_at in the site's time zone
    expires_at: datetime | None
    expires: str                  # expires_at in the site's time zone, '' without one
    timezone: str
    views: int

    @property
    def is_video(self) -> bool:
        return self.kind == "video"

    @property
    def views_label(self) -> str:
        return "view" if self.views == 1 else "views"


@dataclass(frozen=True)
class Tile:
    """One upload in a grid of thumbs (a tag page)."""

    title: str
    kind: str
    path: str                     # its viewer page
    thumb: str | None
    width: int                    # the thumb's size
    height: int
    duration: str                 # MM:SS for a video, else ''


def local_time(moment: datetime | None, zone: str) -> str:
    """A moment as the site shows it (``YYYY-MM-DD HH:MM:SS`` in its zone); '' for none."""
    return moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def _file(site: Site, upload: Upload, variant: str, size: int) -> str | None:
    return file_url(site, upload.relpath(variant)) if size else None


def upload_page(upload: Upload, site: Site) -> UploadPage:
    """The page record of an upload."""
    filename = f"{upload.name}.{upload.extension}"
    path = viewer_path(upload, site)
    shown, display_width, display_height = display_variant(upload)
    return UploadPage(
        kind=upload.kind, title=upload.title, display_title=upload.title or filename,
        description=upload.description, nsfw=upload.nsfw,
        tags=tuple(PageTag(name, tag_key(name)) for name in upload.tags),
        mime=upload.mime, width=upload.width, height=upload.height, filename=filename,
        size_formatted=size_formatted(upload.size), url=file_url(site, upload.relpath()),
        display_url=file_url(site, upload.relpath(shown)), display_width=display_width,
        display_height=display_height, medium_url=_file(site, upload, "md", upload.medium_size),
        frame_url=_file(site, upload, "fr", upload.frame_size) or "",
        thumb_url=_file(site, upload, "th", upload.thumb_size),
        thumb_width=upload.thumb_width, thumb_height=upload.thumb_height,
        viewer_url=site.base_url + path, viewer_path=path,
        duration_time=duration_time(upload.duration) if upload.kind == "video" else "",
        created_at=upload.created_at, date=local_time(upload.created_at, site.timezone),
        expires_at=upload.expires_at, expires=local_time(upload.expires_at, site.timezone),
        timezone=site.timezone, views=upload.views)


def tile(upload: Upload, site: Site) -> Tile:
    """The grid tile of an upload."""
    return Tile(title=upload.title, kind=upload.kind, path=viewer_path(upload, site),
                thumb=_file(site, upload, "th", upload.thumb_size),
                width=upload.thumb_width, height=upload.thumb_height,
                duration=duration_time(upload.duration) if upload.kind == "video" else "")
