"""JPEG metadata removal fed in pieces: the segment stripper and the upload filter built on it.

An allow-list (SPEC §3): kept are the frame, tables and scans (SOFn, DHT, DAC, DQT, DRI, DNL, SOS
and the entropy-coded data, byte for byte), JFIF (APP0 ``JFIF`` only: ``JFXX`` carries a whole
thumbnail JPEG with its own EXIF), the ICC profile (APP2 ``ICC_PROFILE`` only) and Adobe (APP14);
everything else goes, unknown segments included, and nothing after the first EOI stays.

The walk also refuses structure no encoder writes (``TooComplex``): more scans than MAX_SCANS,
which the decoder would each run over the whole image, or more segments than MAX_SEGMENTS.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Callable

from imgz.errors import InvalidImage, TooComplex

_KEEP_APP = {0xE0: (b"JFIF\0",), 0xE2: (b"ICC_PROFILE\0",), 0xEE: (b"Adobe",)}
# SOF0-15 (0xC4 DHT, 0xC8 JPG and 0xCC DAC sit in that range), DHT, DAC, SOS, DQT, DNL, DRI:
# the segments a decoder needs. DNL and DAC are tables of a few bytes, never free text.
_KEEP_MARKERS = frozenset({*range(0xC0, 0xC8), *range(0xC9, 0xD0), 0xDA, 0xDB, 0xDC, 0xDD})
_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_NOT_FILL = re.compile(rb"[^\xff]")
_FILL = b"\xff" * 4096

# A progressive scan is decoded over the whole image, so repeating a scan of a few hundred bytes
# costs a full pass each time: 1.5 MB of repeats keep a decoder busy for minutes. Real encoders
# write few scans: libjpeg(-turbo) and Pillow 10 at most, mozjpeg and jpegli a few dozen with
# their scan optimisation, phones and cameras one to a dozen. libjpeg-turbo's djpeg offers
# -maxscans for the same reason. 100 leaves ample room for any hand-written scan script.
MAX_SCANS = 100
# Each segment costs a step of Python here and in Pillow's header parser. Real files hold a few
# dozen, a few thousand at most (an extended XMP or ICC profile in 64 KB pieces: 200 MB is 3,052).
MAX_SEGMENTS = 10_000


def _keep_segment(marker: int, head: bytes | bytearray) -> bool:
    """Whether a segment stays, judged by its marker and the first bytes of its payload."""
    if marker in _KEEP_MARKERS:
        return True
    return head.startswith(_KEEP_APP.get(marker, ()))


_SOI, _MARKER, _ENTROPY, _DONE = range(4)


class JpegStripper:
    """Strip a JPEG fed in pieces of any size; the kept bytes go to ``write`` in order.

    It holds at most one segment (64 KiB) plus the piece being fed. Inside a scan 0xFF is followed
    by 0x00 (stuffing), a restart marker or more 0xFF fill; any other byte after it is the marker
    that ends the scan, found with one regex search per piece. A run of 0xFF before a marker is
    legal fill and is kept; stray bytes between segments, and 0xFF 0x00 there, are dropped (libjpeg
    skips them too). Everything after the first EOI is dropped. A broken structure raises
    ``InvalidImage``; more than MAX_SCANS scans or MAX_SEGMENTS markers raise ``TooComplex``, so the
    Python work per file is bounded whatever the file holds: every step between segments is counted.
    """

    def __init__(self, write: Callable[[bytes | memoryview], object]) -> None:
        self._write = write
        self._buf = bytearray()
        self._state = _SOI
        self._fill = 0
        self.removed = False       # something was (or will be) left out
        self.scanned = False       # the first scan's header has been written
        self.scans = 0             # SOS markers seen
        self.steps = 0             # markers (and stray runs) walked between segments

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

    def _write_fill(self, then: bytes = b"") -> None:
        """Write the pending 0xFF fill (any length, in bounded pieces), then ``then``."""
        fill, self._fill = self._fill, 0
        while fill > len(_FILL):
            self._write(_FILL)
            fill -= len(_FILL)
        self._write(_FILL[:fill] + then)

    def _step(self) -> None:
        self.steps += 1
        if self.steps > MAX_SEGMENTS:
            raise TooComplex()

    def unread(self) -> bytes:
        """What was fed but not yet walked (after an error: from where the walk stopped)."""
        return bytes(self._buf)

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
                            if at > pos:
                                self._step()  # a stray run, counted where it ends
                            pos = size if at < 0 else at
                            if at < 0:
                                return
                    found = _NOT_FILL.search(buf, pos)
                    end = found.start() if found is not None else size
                    self._fill += end - pos
                    pos = end
                    if pos >= size:
                        return
                    marker = buf[pos]
                    if marker == 0xD9:
                        if not self.scanned:
                            raise InvalidImage()
                        self._write_fill(b"\xd9")
                        self._state = _DONE
                        self.removed |= pos + 1 < size
                        pos = size
                        return
                    if marker == 0xD8:
                        raise InvalidImage()
                    if marker == 0x00:  # a stuffed zero out of a scan: junk, as for libjpeg
                        self._step()
                        self._fill = 0
                        self.removed = True
                        pos += 1
                        continue
                    if marker == 0x01 or 0xD0 <= marker <= 0xD7:
                        self._step()
                        self._write_fill(bytes((marker,)))
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
                    # counted here, once whole: a marker waiting for its bytes comes back
                    self._step()
                    if marker == 0xDA:
                        self.scans += 1
                        if self.scans > MAX_SCANS:
                            raise TooComplex()
                    if _keep_segment(marker, buf[pos + 3:min(pos + 15, end)]):
                        self._write_fill()
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
