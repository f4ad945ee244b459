"""Chevereto's answer shapes: a stored upload and a base URL in, the JSON objects out.

Pure functions, no I/O. This is the only module that knows the answer's shape (SPEC §4).
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime, timezone
from http import HTTPStatus
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from .filetype import MIME
from .layout import URL_PREFIX, clean_name
from .params import tag_key  # noqa: F401  (the key is made where tags are cleaned; pages use it here)
from .records import Upload



@dataclass(frozen=True)
class Site:
    """What an answer needs to know about the server: its base URL, routes and time zone, and
    where its files are fetched when not from its own ``/images/`` (``IMGZ_PUBLIC_URL``)."""

    base_url: str
    route_image: str = "image"
    route_video: str = "clip"
    timezone: str = "UTC"
    files_url: str = ""   # '' or a URL ending in '/' that a file's key follows

    def route(self, kind: str) -> str:
        return self.route_video if kind == "video" else self.route_image


def size_formatted(size: int) -> str:
    """Decimal units with one decimal, '.0' dropped: 812 B, 296.4 KB, 3 MB, 1.2 GB."""
    if size < 1000:
        return f"{size} B"
    value = float(size)
    for unit in ("KB", "MB", "GB", "TB", "PB"):
        value /= 1000
        if round(value, 1) < 1000 or unit == "PB":
            text = f"{value:.1f}"
            return f"{text[:-2] if text.endswith('.0') else text} {unit}"
    raise AssertionError("unreachable")


def duration_time(seconds: int) -> str:
    """MM:SS with minutes uncapped (3725 s -> 62:05)."""
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


def truncate_title(title: str) -> str:
    return title[:25] + "..." if len(title) > 28 else title


def slug(title: str) -> str:
    return clean_name(title)


def viewer_path(upload: Upload, site: Site) -> str:
    route = site.route(upload.kind)
    cleaned = slug(upload.title)
    return f"/{route}/{cleaned}.{upload.public_id}" if cleaned else f"/{route}/{upload.public_id}"


def short_path(upload: Upload, site: Site) -> str:
    return f"/{site.route(upload.kind)}/{upload.public_id}"


def file_url(site: Site, relpath: str) -> str:
    if site.files_url:
        return f"{site.files_url}{quote(relpath)}"
    return f"{site.base_url}{URL_PREFIX}{quote(relpath)}"


def display_variant(upload: Upload) -> tuple[str, int, int]:
    """The file a page shows of an upload, with its size: the medium, else a video's frame, else
    the original (variant 'md', 'fr' or '')."""
    if upload.medium_size:
        return "md", upload.medium_width, upload.medium_height
    if upload.frame_size:
        return "fr", upload.frame_width, upload.frame_height
    return "", upload.width, upload.height


def _file_object(site: Site, upload: Upload, variant: str, size: int) -> dict[str, Any]:
    relpath = upload.relpath(variant)
    filename = relpath.rsplit("/", 1)[1]
    name, _, ext = filename.rpartition(".")
    return {"filename": filename, "name": name, "mime": MIME[ext], "extension": ext,
            "url": file_url(site, relpath), "size": size}


def _absent_object() -> dict[str, Any]:
    return {"filename": None, "name": None, "mime": None, "extension": None, "url": None}


def _dates(moment: datetime, site: Site) -> tuple[str, str]:
    local = moment.astimezone(ZoneInfo(site.timezone))
    return local.strftime("%Y-%m-%d %H:%M:%S"), moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def how_long_ago(moment: datetime, now: datetime) -> str:
    seconds = max(0, int((now - moment).total_seconds()))
    for unit, length in (("year", 31_536_000), ("month", 2_592_000), ("week", 604_800),
                         ("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds >= length:
            count = seconds // length
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    return "moments ago"


def image_object(upload: Upload, site: Site, *, delete_secret: str | None = None,
                 now: datetime | None = None) -> dict[str, Any]:
    """The ``image`` object of an upload answer, every key of SPEC §4's table."""
    now = now or datetime.now(timezone.utc)
    date, date_gmt = _dates(upload.created_at, site)
    original = _file_object(site, upload, "", upload.size)
    thumb = _file_object(site, upload, "th", upload.thumb_size) if upload.thumb_size else _absent_object()
    medium = _file_object(site, upload, "md", upload.medium_size) if upload.medium_size else _absent_object()
    frame = _file_object(site, upload, "fr", upload.frame_size) if upload.frame_size else None
    shown, display_w, display_h = display_variant(upload)
    display_url = file_url(site, upload.relpath(shown))
    # 8 would announce a kept copy of the source besides the stored file; imgz keeps none.
    chain = 4 | 1 | (2 if upload.medium_size else 0) | (16 if upload.kind == "video" else 0)
    short = site.base_url + short_path(upload, site)
    path_viewer = viewer_path(upload, site)
    title_short = truncate_title(upload.title)
    tags = [{"name": name, "name_safe_html": html.escape(name), "url_key": tag_key(name),
             "url": f"{site.base_url}/tag/{quote(tag_key(name))}"} for name in upload.tags]
    obj: dict[str, Any] = {
        "name": upload.name,
        "extension": upload.extension,
        "size": upload.size,
        "width": upload.width,
        "height": upload.height,
        "date": date,
        "date_gmt": date_gmt,
        "title": upload.title,
        "tags": tags,
        "description": upload.description,
        "nsfw": int(upload.nsfw),
        "storage_mode": "datefolder",
        "checksum": upload.checksum,
        "source_checksum": upload.source_checksum,
        "original_filename": upload.original_filename,
        "original_exifdata": upload.original_exifdata,
        "views": upload.views,
        "category_id": upload.category_id,
        "chain": chain,
        "thumb_size": upload.thumb_size,
        "medium_size": upload.medium_size,
        "frame_size": upload.frame_size,
        "expiration_date_gmt": (upload.expires_at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
                                if upload.expires_at else None),
        "likes": upload.likes,
        "is_animated": int(upload.is_animated),
        "is_approved": 1,
        "is_360": int(upload.is_360),
        "duration": upload.duration,
        "type": upload.kind,
        "tags_string": ", ".join(upload.tags),
        "file": {"resource": {"type": "url"}},
        "id_encoded": upload.public_id,
        "filename": f"{upload.name}.{upload.extension}",
        "mime": upload.mime,
        "url": original["url"],
        "ratio": upload.width / upload.height if upload.height else 0.0,
        "size_formatted": size_formatted(upload.size),
        "image": original,
        "thumb": thumb,
        "medium": medium,
        "url_frame": frame["url"] if frame else "",
        "duration_time": duration_time(upload.duration) if upload.kind == "video" else "",
        "url_viewer": site.base_url + path_viewer,
        "path_viewer": path_viewer,
        "url_short": short,
        "display_url": display_url,
        "display_width": display_w,
        "display_height": display_h,
        "views_label": "view" if upload.views == 1 else "views",
        "likes_label": "like" if upload.likes == 1 else "likes",
        "how_long_ago": how_long_ago(upload.created_at, now),
        "date_fixed_peer": date_gmt,
        "title_truncated": title_short,
        "title_truncated_html": html.escape(title_short),
        "is_use_loader": upload.size > 5_000_000,
        "display_title": upload.title or f"{upload.name}.{upload.extension}",
        "delete_url": f"{short}/delete/{delete_secret}" if delete_secret else None,
    }
    if frame is not None:
        obj["frame"] = frame
    return obj


def upload_answer(image: dict[str, Any]) -> dict[str, Any]:
    return {"status_code": 200, "success": {"message": "file uploaded", "code": 200},
            "image": image, "status_txt": "OK"}


def imgbb_answer(image: dict[str, Any], upload: Upload, now: datetime) -> dict[str, Any]:
    """imgBB's envelope, used when the client sent ``image`` instead of ``source``."""
    data = dict(image)
    data["id"] = upload.public_id
    data["time"] = int(upload.created_at.timestamp())
    # Stored instants are whole seconds: measure from the same whole second.
    data["expiration"] = (max(0, int((upload.expires_at - now.replace(microsecond=0)).total_seconds()))
                          if upload.expires_at else 0)
    return {"data": data, "success": True, "status": 200}


def deleted_answer() -> dict[str, Any]:
    return {"status_code": 200, "success": {"message": "file deleted", "code": 200},
            "status_txt": "OK"}


def reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def error_body(status: int, message: str, code: int) -> dict[str, Any]:
    return {"status_code": status, "error": {"message": message, "code": code},
            "status_txt": reason(status)}
