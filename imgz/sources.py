"""The ``source`` value of an upload (a file part, a URL or base64) turned into a file on disk.

Whatever the form, the result is an ``Incoming``: a hashed temp file in ``<data>/tmp`` with the
name the client gave it. Types are never taken from names; the caller sniffs the bytes.
"""
from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from pathlib import Path

from . import fetch, storage
from .jpeg import Stripped
from .errors import EmptySource, InvalidBase64, InvalidURL, TooBig
from .params import client_basename

_DATA_URI = re.compile(r"^data:[^,;]*(;[^,;]*)*;base64,", re.IGNORECASE)
_SPACE = re.compile(r"\s+")
_B64 = re.compile(r"[A-Za-z0-9+/]*")


@dataclass(frozen=True)
class Incoming:
    """An upload's bytes on disk, as received."""

    path: Path
    md5: str
    size: int
    filename: str      # the client's base name, the URL's last segment, or '' for base64
    origin: str        # 'file', 'url' or 'base64'
    stripped: Stripped | None = None   # a JPEG stripped of its metadata as it arrived


def is_url(value: str) -> bool:
    lowered = value[:8].lower()
    return lowered.startswith("http://") or lowered.startswith("https://")


def from_writer(writer: storage.HashingWriter, filename: str | None) -> Incoming:
    """A multipart file part that Werkzeug already streamed into a HashingWriter."""
    stripped = writer.finish()
    writer.close()
    if writer.size == 0:
        raise EmptySource()
    return Incoming(writer.path, writer.md5, writer.size, client_basename(filename), "file",
                    stripped)


def decode_base64(value: str) -> bytes:
    """Decode base64 leniently: whitespace, a data-URI prefix, URL-safe letters, missing padding."""
    text = _SPACE.sub("", value)
    text, had_prefix = _DATA_URI.subn("", text, count=1)
    text = text.replace("-", "+").replace("_", "/").rstrip("=")
    if not text and had_prefix:
        raise EmptySource()
    if not text or not _B64.fullmatch(text) or len(text) % 4 == 1:
        if "\ufffd" in value or "\x00" in value:
            # bytes that are no text: a file sent as a plain field (a part without a file name)
            raise InvalidBase64(f"{InvalidBase64.message}: this looks like a file sent without a "
                                "file name; send it as a file part (curl -F source=@photo.png)")
        raise InvalidBase64()
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidBase64() from None


def from_base64(value: str, data: Path, limit: int, limit_mb: float,
                arrival: storage.Arrival | None = None) -> Incoming:
    # Four characters carry three bytes: refuse what cannot fit before decoding it.
    if len(value) * 3 // 4 > limit + 3 * 1024:
        raise TooBig(limit_mb)
    payload = decode_base64(value)
    if not payload:
        raise EmptySource()
    if len(payload) > limit:
        raise TooBig(limit_mb)
    writer = storage.write_bytes(data, payload, limit, limit_mb, arrival)
    writer.close()
    return Incoming(writer.path, writer.md5, writer.size, "", "base64", writer.finish())


def from_url(url: str, data: Path, limit: int, limit_mb: float, *, deadline: float,
             allow_nets: tuple[str, ...], arrival: storage.Arrival | None = None) -> Incoming:
    """Download a URL source with the SSRF-safe fetcher into a hashed temp file."""
    writer = storage.HashingWriter(data, limit, limit_mb, arrival)
    try:
        try:
            fetched = fetch.download(url, writer.write, max_bytes=limit, deadline=deadline,
                                     allow_nets=allow_nets)
        except TooBig:
            raise InvalidURL("too large") from None
        stripped = writer.finish()
        writer.close()
        if writer.size == 0:
            raise EmptySource()
    except BaseException:
        writer.discard()
        raise
    return Incoming(writer.path, writer.md5, writer.size, client_basename(fetched.filename), "url",
                    stripped)
