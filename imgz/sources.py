"""The ``source`` value of an upload (a file part, a URL or base64) turned into a file on disk.

Whatever the form, the result is an ``Incoming``: a hashed temp file in the process's scratch folder with the
name the client gave it. Types are never taken from names; the caller sniffs the bytes.
"""
from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import fetch, spool
from .jpeg import Stripped
from .mp4strip import Cleaned
from .errors import EmptySource, ImgzError, InvalidBase64, InvalidURL, NoStorage, TooBig
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
    # a JPEG stripped of its metadata as it arrived, or an MP4/MOV whose metadata was blanked
    stripped: Stripped | Cleaned | None = None


def is_url(value: str) -> bool:
    lowered = value[:8].lower()
    return lowered.startswith("http://") or lowered.startswith("https://")


def from_writer(writer: spool.HashingWriter, filename: str | None) -> Incoming:
    """A multipart file part that Werkzeug already streamed into a HashingWriter."""
    stripped = writer.finish()
    writer.close()
    if writer.size == 0:
        raise EmptySource()
    return Incoming(writer.path, writer.md5, writer.size, client_basename(filename), "file",
                    stripped)


class Base64Decoder:
    """Decode base64 text fed in pieces, leniently: whitespace, a data-URI prefix, URL-safe letters
    and missing padding; decoded bytes go to ``write`` as they come.

    ``finish()`` raises InvalidBase64 or EmptySource; a value that is no base64 is read to its end
    all the same, for its length and for the hint that it was a file sent without a file name.
    """

    def __init__(self, write: Callable[[bytes], object]) -> None:
        self._write = write
        self._head: str | None = ""   # the start, until the data-URI prefix is decided
        self._pending = ""            # letters of a group of four not yet complete
        self._padded = False
        self.had_prefix = False
        self.letters = 0
        self.length = 0
        self.invalid = False
        self.binary = False           # bytes that are no text: a file sent as a plain field

    def feed(self, text: str) -> None:
        self.length += len(text)
        if not self.binary and ("\ufffd" in text or "\x00" in text):
            self.binary = True
        if self.invalid:
            return
        text = _SPACE.sub("", text)
        if self._head is not None:
            self._head += text
            if not self._decide_prefix(final=False):
                return
            text, self._head = self._head, None
        self._letters(text)

    def _decide_prefix(self, final: bool) -> bool:
        """Whether the prefix is decided; a value starting "data:" waits for its first comma."""
        head = self._head or ""
        if len(head) < 5 and not final:
            return False
        if head[:5].lower() == "data:":
            if "," not in head and not final:
                return False
            stripped, found = _DATA_URI.subn("", head, count=1)
            if found:
                self._head, self.had_prefix = stripped, True
        return True

    def _letters(self, text: str) -> None:
        text = text.replace("-", "+").replace("_", "/")
        if self._padded:
            if text.strip("="):
                self.invalid = True
            return
        cut = text.find("=")
        if cut >= 0:
            if text[cut:].strip("="):
                self.invalid = True
                return
            self._padded = True
            text = text[:cut]
        if not _B64.fullmatch(text):
            self.invalid = True
            return
        self.letters += len(text)
        self._pending += text
        whole = len(self._pending) // 4 * 4
        if whole:
            self._write(base64.b64decode(self._pending[:whole]))
            self._pending = self._pending[whole:]

    def finish(self) -> None:
        if self._head is not None and not self.invalid:
            self._decide_prefix(final=True)
            text, self._head = self._head or "", None
            self._letters(text)
        if not self.invalid and not self.letters and self.had_prefix:
            raise EmptySource()
        if self.invalid or not self.letters or len(self._pending) % 4 == 1:
            if self.binary:
                raise InvalidBase64(f"{InvalidBase64.message}: this looks like a file sent without "
                                    "a file name; send it as a file part (curl -F source=@photo.png)")
            raise InvalidBase64()
        if self._pending:
            self._write(base64.b64decode(self._pending + "=" * (-len(self._pending) % 4)))
            self._pending = ""


def decode_base64(value: str) -> bytes:
    """Decode base64 held in memory, by the same rules as a streamed source (Base64Decoder)."""
    parts: list[bytes] = []
    decoder = Base64Decoder(parts.append)
    decoder.feed(value)
    decoder.finish()
    return b"".join(parts)


class Base64Spool:
    """A base64 source decoded piece by piece into a HashingWriter, as a file part is written.

    Errors are kept until ``incoming()`` is asked for, in the order a source held in memory
    meets them: too long to fit, not base64, empty, then too big once decoded or a full disk.
    """

    def __init__(self, data: Path, limit: int, limit_mb: float, keep_metadata: bool) -> None:
        self.writer = spool.upload_writer(data, limit, limit_mb, keep_metadata)
        self.limit_mb = limit_mb
        self._error: ImgzError | None = None
        self._decoder = Base64Decoder(self._write)
        self._result: Incoming | ImgzError | None = None

    def _write(self, chunk: bytes) -> None:
        if self._error is None:
            try:
                self.writer.write(chunk)
            except (TooBig, NoStorage) as exc:
                self._error = exc
                self.writer.discard()  # give the space back now

    def feed(self, text: str) -> None:
        self._decoder.feed(text)

    def incoming(self, limit: int, limit_mb: float) -> Incoming:
        """The decoded source on disk, or the error it met; ``limit`` may be lower than the
        writer's (a guest's), and is checked again here."""
        if self._result is None:
            self._result = self._finish(limit, limit_mb)
        if isinstance(self._result, ImgzError):
            raise self._result
        return self._result

    def _finish(self, limit: int, limit_mb: float) -> Incoming | ImgzError:
        decoder = self._decoder
        # Four characters carry three bytes: what cannot fit is too big before anything else.
        if decoder.length * 3 // 4 > limit + 3 * 1024:
            return TooBig(limit_mb)
        try:
            decoder.finish()
            if self._error is None:
                stripped = self.writer.finish()
        except (InvalidBase64, EmptySource) as exc:
            return exc
        except (TooBig, NoStorage) as exc:
            self._error = exc
        if self._error is not None:
            return TooBig(limit_mb) if isinstance(self._error, TooBig) else self._error
        self.writer.close()
        if self.writer.size > limit:
            return TooBig(limit_mb)
        return Incoming(self.writer.path, self.writer.md5, self.writer.size, "", "base64", stripped)

    def discard(self) -> None:
        self.writer.discard()


def from_base64(value: str, data: Path, limit: int, limit_mb: float,
                keep_metadata: bool) -> Incoming:
    """A base64 source held in memory (a short form field) into a hashed temp file."""
    decoded = Base64Spool(data, limit, limit_mb, keep_metadata)
    try:
        decoded.feed(value)
        return decoded.incoming(limit, limit_mb)
    except BaseException:
        decoded.discard()
        raise


def from_url(url: str, data: Path, limit: int, limit_mb: float, *, deadline: float,
             allow_nets: tuple[str, ...], keep_metadata: bool) -> Incoming:
    """Download a URL source with the SSRF-safe fetcher into a hashed temp file."""
    writer = spool.upload_writer(data, limit, limit_mb, keep_metadata)
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
