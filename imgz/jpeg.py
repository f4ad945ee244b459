"""A JPEG upload stripped of its metadata while it is written (``JpegArrival``), so its bytes
reach the disk once; the stripper it feeds is jpegstrip.py's.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

from imgz.errors import InvalidImage, TooComplex
from imgz.jpegstrip import MAX_SCANS, JpegStripper

HEADER_LIMIT = 1 << 20


@dataclass(frozen=True)
class Stripped:
    """A JPEG upload that JpegArrival stripped while it was written."""

    header: bytes     # the upload up to its first scan, metadata included, for reading that
    md5: str          # of the file as written
    changed: bool     # something was left out: the file differs from the upload
    broken: bool      # its structure is broken: it is not a valid image


class JpegArrival:
    """Strip a JPEG upload while it is written, so its bytes reach the disk once.

    The upload is held back until its first scan arrives (at most HEADER_LIMIT bytes); then
    ``decide(header)`` says whether the stripped upload may be stored as it is. When it declines,
    or the upload is no JPEG, or its header is broken or too long, everything is written as it
    arrived and ``finish()`` returns None: the file is then handled like any other upload.

    A JPEG's scans and segments are counted whichever way it is written (a declined upload is
    re-encoded, so it is decoded in full): past MAX_SCANS or MAX_SEGMENTS the rest is thrown away
    and ``finish()`` raises ``TooComplex``. Once the walk has found the structure broken, SOS
    markers are counted by their bytes alone, which can only count too many, never too few.
    """

    def __init__(self, write: Callable[[bytes | memoryview], object],
                 decide: Callable[[bytes], bool]) -> None:
        self._write = write
        self._decide = decide
        self._raw = bytearray()            # what arrived while undecided
        self._held: list[bytes] = []       # what the stripper made of it
        self._stripper: JpegStripper | None = None
        self._md5 = hashlib.md5()
        self._holding = True
        self._passing = False
        self._header = b""
        self._broken = False
        self._complex = False
        self._loose: int | None = None     # SOS markers counted by bytes, once the walk broke
        self._last = b""                   # the last byte of the previous piece, for that count

    def _emit(self, data: bytes | memoryview) -> None:
        if self._passing:
            return  # the stripper only counts now: the upload is written as it came
        if self._holding:
            self._held.append(bytes(data))
        else:
            self._md5.update(data)
            self._write(data)

    def _pass(self) -> None:
        """Give up stripping: write what arrived so far as it came."""
        self._passing, self._holding = True, False
        self._held = []
        raw, self._raw = self._raw, bytearray()
        if raw:
            self._write(raw)

    def _count(self, data: bytes | bytearray | memoryview) -> None:
        """Walk on (the stripper writes only while stripping); once a passed upload's walk has
        broken, count SOS markers in the raw bytes instead."""
        if self._stripper is None:
            return  # no JPEG: nothing to count
        if self._loose is None:
            if self._broken:
                return  # a stripped upload found broken is refused as such
            try:
                self._stripper.feed(data)
                return
            except InvalidImage:
                self._broken = True
                if not (self._passing or self._holding):
                    return
                self._loose = self._stripper.scans
                data = self._stripper.unread()
        piece = bytes(data)
        self._loose += (self._last + piece[:1]).count(b"\xff\xda") + piece.count(b"\xff\xda")
        self._last = piece[-1:]
        if self._loose > MAX_SCANS:
            raise TooComplex()

    def feed(self, data: bytes | memoryview) -> None:
        if self._complex:
            return
        try:
            self._feed(data)
        except TooComplex:
            # the rest is thrown away unwritten: the upload is refused at finish()
            self._complex = True
            self._holding, self._held, self._raw = False, [], bytearray()

    def _feed(self, data: bytes | memoryview) -> None:
        if self._passing:
            self._write(data)
            self._count(data)
            return
        if not self._holding:
            self._count(data)
            return
        self._raw += data
        if self._stripper is None:
            if len(self._raw) < 3:
                return
            if self._raw[:3] != b"\xff\xd8\xff":
                self._pass()
                return
            self._stripper = JpegStripper(self._emit)
            data = self._raw
        self._count(data)
        if self._broken:
            self._pass()  # a broken header: handled later like any other upload
        elif self._stripper.scanned:
            self._header = bytes(self._raw)
            try:
                allowed = self._decide(self._header)
            except Exception:
                allowed = False
            if not allowed:
                self._pass()
                return
            self._holding, self._raw = False, bytearray()
            held, self._held = self._held, []
            for piece in held:
                self._emit(piece)
        elif len(self._raw) > HEADER_LIMIT:
            self._pass()

    def finish(self) -> Stripped | None:
        """End of the upload: what was stripped, or None when it was written as it arrived.

        Raises TooComplex when the JPEG has more scans or segments than anyone encodes."""
        if self._complex:
            raise TooComplex()
        if self._holding:
            self._pass()
        if self._passing or self._stripper is None:
            return None
        changed = False
        if not self._broken:
            try:
                changed = self._stripper.finish()
            except InvalidImage:
                self._broken = True
        return Stripped(self._header, self._md5.hexdigest(), changed, self._broken)
