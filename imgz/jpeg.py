"""JPEG metadata removal fed in pieces: the segment stripper and the upload filter built on it.

Kept are JFIF, ICC (APP2) and Adobe (APP14) segments and every segment that is not an APPn or a
comment; the compressed image data passes byte for byte, and nothing after the first EOI does.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Callable

from imgz.errors import InvalidImage

_KEEP_APP = {0xE0: (b"JFIF\0", b"JFXX\0"), 0xE2: (b"ICC_PROFILE\0",), 0xEE: (b"Adobe",)}
_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def _keep_segment(marker: int, head: bytes | bytearray) -> bool:
    """Whether a segment stays, judged by its marker and the first bytes of its payload."""
    if marker == 0xFE:
        return False
    if 0xE0 <= marker <= 0xEF:
        return head.startswith(_KEEP_APP.get(marker, ()))
    return True


_SOI, _MARKER, _ENTROPY, _DONE = range(4)


class JpegStripper:
    """Strip a JPEG fed in pieces of any size; the kept bytes go to ``write`` in order.

    It holds at most one segment (64 KiB) plus the piece being fed. Inside a scan 0xFF is followed
    by 0x00 (stuffing), a restart marker or more 0xFF fill; any other byte after it is the marker
    that ends the scan, found with one regex search per piece. A run of 0xFF before a marker is
    legal fill and is kept; stray bytes between segments (which libjpeg skips) are dropped.
    Everything after the first EOI is dropped. A broken structure raises ``InvalidImage``.
    """

    def __init__(self, write: Callable[[bytes | memoryview], object]) -> None:
        self._write = write
        self._buf = bytearray()
        self._state = _SOI
        self._fill = 0
        self.removed = False       # something was (or will be) left out
        self.scanned = False       # the first scan's header has been written

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._state == _DONE:
            self.removed |= len(data) > 0
            return
        self._buf += data
        self._run()

    def finish(self) -> bool:
        """End of input: True when the output differs from the input. Raises InvalidImage when
        the image ended early (no EOI after a scan)."""
        if self._state != _DONE:
            raise InvalidImage()
        return self.removed

    def _emit(self, start: int, end: int) -> None:
        if end > start:
            with memoryview(self._buf) as view:
                self._write(view[start:end])

    def _run(self) -> None:
        buf = self._buf
        pos = 0
        try:
            while True:
                size = len(buf)
                if self._state == _ENTROPY:
                    found = _SCAN_END.search(buf, pos)
                    # an 0xFF is only judged once the byte after it is here
                    end = found.start() if found is not None else size - 1
                    self._emit(pos, end)
                    pos = max(pos, end)
                    if found is None:
                        return
                    self._state = _MARKER
                elif self._state == _MARKER:
                    if not self._fill:
                        at = buf.find(b"\xff", pos)
                        if at != pos:
                            if pos < size:
                                self.removed = True
                            pos = size if at < 0 else at
                            if at < 0:
                                return
                    while pos < size and buf[pos] == 0xFF:
                        pos += 1
                        self._fill += 1
                    if pos >= size:
                        return
                    marker = buf[pos]
                    if marker == 0xD9:
                        if not self.scanned:
                            raise InvalidImage()
                        self._write(b"\xff" * self._fill + b"\xd9")
                        self._state = _DONE
                        self.removed |= pos + 1 < size
                        pos = size
                        return
                    if marker in (0x00, 0xD8):
                        raise InvalidImage()
                    if marker == 0x01 or 0xD0 <= marker <= 0xD7:
                        self._write(b"\xff" * self._fill + bytes((marker,)))
                        self._fill = 0
                        pos += 1
                        continue
                    if size - pos < 3:
                        return
                    length = int.from_bytes(buf[pos + 1:pos + 3], "big")
                    if length < 2:
                        raise InvalidImage()
                    if size - pos < 1 + length:
                        return
                    end = pos + 1 + length
                    if _keep_segment(marker, buf[pos + 3:min(pos + 15, end)]):
                        self._write(b"\xff" * self._fill)
                        self._emit(pos, end)
                        if marker == 0xDA:
                            self.scanned = True
                            self._state = _ENTROPY
                    else:
                        self.removed = True
                    self._fill = 0
                    pos = end
                else:  # _SOI
                    if size < 2:
                        return
                    if buf[:2] != b"\xff\xd8":
                        raise InvalidImage()
                    self._write(b"\xff\xd8")
                    pos = 2
                    self._state = _MARKER
        finally:
            del buf[:pos]


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

    def _emit(self, data: bytes | memoryview) -> None:
        if self._holding:
            self._held.append(bytes(data))
        else:
            self._md5.update(data)
            self._write(data)

    def _pass(self) -> None:
        """Give up stripping: write what arrived so far as it came."""
        self._passing, self._holding = True, False
        self._stripper, self._held = None, []
        raw, self._raw = self._raw, bytearray()
        if raw:
            self._write(raw)

    def feed(self, data: bytes | memoryview) -> None:
        if self._passing:
            self._write(data)
            return
        if not self._holding:
            if not self._broken:
                try:
                    self._stripper.feed(data)  # type: ignore[union-attr]
                except InvalidImage:
                    self._broken = True
            return
        self._raw += data
        try:
            if self._stripper is None:
                if len(self._raw) < 3:
                    return
                if self._raw[:3] != b"\xff\xd8\xff":
                    self._pass()
                    return
                self._stripper = JpegStripper(self._emit)
                self._stripper.feed(self._raw)
            else:
                self._stripper.feed(data)
        except InvalidImage:
            self._pass()
            return
        if self._stripper.scanned:
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
        """End of the upload: what was stripped, or None when it was written as it arrived."""
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
