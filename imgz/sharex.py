"""The ShareX custom uploader (.sxcu) for an imgz server and one API key (SPEC §7)."""
from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from .addresses import unspecified


def unusable_base(base_url: str) -> str | None:
    """Why a base URL cannot go into an uploader file, or None when it can."""
    parts = urlsplit(base_url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return "it must look like https://host[:port]"
    if unspecified(parts.hostname):
        return "0.0.0.0 is where the server listens, not an address clients can reach"
    if parts.path.strip("/"):
        return "it must not have a path"
    return None


def uploader(base_url: str, key: str) -> dict[str, Any]:
    """The .sxcu document: the key goes in a header, answers are read with ShareX's {json:…}."""
    base = base_url.rstrip("/")
    host = urlsplit(base).netloc
    return {
        "Version": "17.0.0",
        "Name": f"imgz ({host})",
        "DestinationType": "ImageUploader, FileUploader",
        "RequestMethod": "POST",
        "RequestURL": f"{base}/api/1/upload",
        "Headers": {"X-API-Key": key},
        "Body": "MultipartFormData",
        "FileFormName": "source",
        "URL": "{json:image.url}",
        "ThumbnailURL": "{json:image.thumb.url}",
        "DeletionURL": "{json:image.delete_url}",
        "ErrorMessage": "{json:error.message}",
    }


def filename(base_url: str) -> str:
    host = urlsplit(base_url).hostname or "imgz"
    return f"imgz-{host}.sxcu"
