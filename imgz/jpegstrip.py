"""The JPEG segment stripper: metadata removal fed in pieces of any size.

An allow-list (SPEC §3): kept are the frame, tables and scans (SOFn, DHT, DAC, DQT, DRI, DNL, SOS
and the entropy-coded data, byte for byte), JFIF (APP0 ``JFIF`` only: ``JFXX`` carries a whole
thumbnail JPEG with its own EXIF), the ICC profile (APP2 ``ICC_PROFILE`` only) and Adobe (APP14);
everything else goes, unknown segments included, and nothing after the first EOI stays.

The walk also refuses structure no encoder writes (``TooComplex``): more scans than MAX_SCANS,
which the decoder would each run over the whole image, or more segments than MAX_SEGMENTS.
"""
from __future__ import annotations

import re
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
