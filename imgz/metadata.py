"""Lossless metadata removal for stored images: JPEG segments, PNG and WebP chunks, GIF blocks.

Each format is walked structurally and streamed from file to file, so memory stays bounded by one
JPEG segment or one read chunk. Only whole metadata units are dropped (plus anything after the
format's end marker); everything kept is copied byte-for-byte, except WebP's RIFF size and VP8X
flags, which must follow the dropped chunks. A broken structure raises ``InvalidImage``.

Stripping a JPEG drops its EXIF orientation with the rest: the caller decides beforehand whether
the image must be rotated and re-encoded instead.
"""
from __future__ import annotations

import hashlib
import re

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

from imgz.errors import InvalidImage

_CHUNK = 1 << 16

_JPEG_KEEP_APP = {0xE0: (b"JFIF\0", b"JFXX\0"), 0xE2: (b"ICC_PROFILE\0",), 0xEE: (b"Adobe",)}
_PNG_DROP = {b"eXIf", b"tEXt", b"zTXt", b"iTXt", b"tIME"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_WEBP_DROP = {b"EXIF", b"XMP "}
_WEBP_FLAG_EXIF, _WEBP_FLAG_XMP = 0x08, 0x04
# Looping control, plus the ICC profile extension: colour profiles are kept in every format.
_GIF_KEEP_APP = {b"NETSCAPE2.0", b"ANIMEXTS1.0", b"ICCRGBG1012"}


_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


class _Reader:
    """A forward-only buffered reader whose every shortfall is a truncated image."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self._buf = b""
        self._pos = 0

    def window(self, n: int = 1) -> bytes:
        """Return the unread bytes, topped up to at least ``n`` unless the file ends first."""
        if self._pos:
            self._buf = self._buf[self._pos:]
            self._pos = 0
        while len(self._buf) < n:
            more = self._f.read(max(_CHUNK, n - len(self._buf)))
            if not more:
                break
            self._buf += more
        return self._buf

    def advance(self, n: int) -> None:
        self._pos += n

    def read(self, n: int) -> bytes:
        if len(self._buf) - self._pos < n and len(self.window(n)) < n:
            raise InvalidImage()
        data = self._buf[self._pos:self._pos + n]
        self._pos += n
        return data

    def copy(self, n: int, out: BinaryIO | None) -> None:
        """Move ``n`` bytes to ``out``, or past them when ``out`` is None."""
        while n:
            if self._pos == len(self._buf):
                self._buf, self._pos = self._f.read(_CHUNK), 0
                if not self._buf:
                    raise InvalidImage()
            step = min(n, len(self._buf) - self._pos)
            if out is not None:
                out.write(memoryview(self._buf)[self._pos:self._pos + step])
            self._pos += step
            n -= step

    def at_end(self) -> bool:
        return not self.window()


class _Discard:
    """A sink that only pretends to write, for checking a file without copying it."""

    def write(self, data: bytes | memoryview) -> int:
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0


# --- JPEG ---------------------------------------------------------------------------------------

def _keep_jpeg_segment(marker: int, head: bytes | bytearray) -> bool:
    """Whether a segment stays, judged by its marker and the first bytes of its payload."""
    if marker == 0xFE:
        return False
    if 0xE0 <= marker <= 0xEF:
        return head.startswith(_JPEG_KEEP_APP.get(marker, ()))
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
                    if _keep_jpeg_segment(marker, buf[pos + 3:min(pos + 15, end)]):
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


def _walk_jpeg(r: _Reader, out: BinaryIO) -> bool:
    stripper = JpegStripper(out.write)
    while True:
        piece = r.window()
        if not piece:
            return stripper.finish()
        stripper.feed(piece)
        r.advance(len(piece))


# --- PNG ----------------------------------------------------------------------------------------

def _walk_png(r: _Reader, out: BinaryIO) -> bool:
    signature = r.read(8)
    if signature != _PNG_SIGNATURE:
        raise InvalidImage()
    out.write(signature)
    removed = False
    first = True
    while True:
        head = r.read(8)
        length, kind = struct.unpack(">I4s", head)
        if length > 0x7FFFFFFF or not kind.isalpha() or (first and kind != b"IHDR"):
            raise InvalidImage()
        first = False
        if kind in _PNG_DROP:
            r.copy(length + 4, None)
            removed = True
            continue
        out.write(head)
        r.copy(length + 4, out)
        if kind == b"IEND":
            return removed or not r.at_end()


# --- WebP ---------------------------------------------------------------------------------------

def _walk_webp(r: _Reader, out: BinaryIO) -> bool:
    head = r.read(12)
    riff, riff_size, form = struct.unpack("<4sI4s", head)
    if riff != b"RIFF" or form != b"WEBP" or riff_size < 12:
        raise InvalidImage()
    out.write(head)
    changed = False
    remaining = riff_size - 4
    written = 4
    first = True
    while remaining:
        if remaining < 8:
            raise InvalidImage()
        chunk_head = r.read(8)
        fourcc, size = struct.unpack("<4sI", chunk_head)
        if first and fourcc not in (b"VP8 ", b"VP8L", b"VP8X"):
            raise InvalidImage()
        if 8 + size > remaining:
            raise InvalidImage()
        # Tolerate a last chunk whose pad byte the writer left out.
        pad = size & 1 if 8 + size < remaining else 0
        remaining -= 8 + size + pad
        if fourcc in _WEBP_DROP:
            r.copy(size + pad, None)
            changed = True
            continue
        out.write(chunk_head)
        if first and fourcc == b"VP8X":
            if size < 1:
                raise InvalidImage()
            payload = r.read(size + pad)
            flags = payload[0] & ~(_WEBP_FLAG_EXIF | _WEBP_FLAG_XMP)
            changed |= flags != payload[0]
            out.write(bytes((flags,)) + payload[1:])
        else:
            r.copy(size + pad, out)
        written += 8 + size + pad
        first = False
    if written != riff_size:
        out.seek(4)
        out.write(struct.pack("<I", written))
        out.seek(0, 2)
        changed = True
    return changed or not r.at_end()


# --- GIF ----------------------------------------------------------------------------------------

def _copy_subblocks(r: _Reader, out: BinaryIO | None) -> None:
    """Copy (or skip) a chain of data sub-blocks through its zero-length terminator."""
    need = 1
    while True:
        buf = r.window(need)
        if len(buf) < need:
            raise InvalidImage()
        i, end = 0, len(buf)
        while i < end:
            size = buf[i]
            if size == 0:
                if out is not None:
                    out.write(memoryview(buf)[:i + 1])
                r.advance(i + 1)
                return
            if i + 1 + size > end:
                break
            i += 1 + size
        if out is not None:
            out.write(memoryview(buf)[:i])
        r.advance(i)
        need = 1 if i == end else buf[i] + 1


def _color_table_size(flags: int) -> int:
    return 3 << ((flags & 0x07) + 1) if flags & 0x80 else 0


def _walk_gif(r: _Reader, out: BinaryIO) -> bool:
    head = r.read(13)
    if head[:6] not in (b"GIF87a", b"GIF89a"):
        raise InvalidImage()
    out.write(head)
    r.copy(_color_table_size(head[10]), out)
    removed = False
    while True:
        introducer = r.read(1)
        if introducer == b"\x3b":
            out.write(introducer)
            return removed or not r.at_end()
        if introducer == b"\x2c":
            descriptor = r.read(9)
            out.write(introducer + descriptor)
            r.copy(_color_table_size(descriptor[8]), out)
            out.write(r.read(1))  # LZW minimum code size
            _copy_subblocks(r, out)
        elif introducer == b"\x21":
            label = r.read(1)
            if label == b"\xfe":
                _copy_subblocks(r, None)
                removed = True
            elif label == b"\xff":
                size = r.read(1)
                if size == b"\0":  # an application extension with no data at all
                    removed = True
                    continue
                ident = r.read(size[0])
                if ident in _GIF_KEEP_APP:
                    out.write(introducer + label + size + ident)
                    _copy_subblocks(r, out)
                else:
                    _copy_subblocks(r, None)
                    removed = True
            else:
                out.write(introducer + label)
                _copy_subblocks(r, out)
        else:
            raise InvalidImage()


# --- files --------------------------------------------------------------------------------------

_WALKERS: dict[str, Callable[[_Reader, BinaryIO], bool]] = {
    "jpeg": _walk_jpeg, "png": _walk_png, "webp": _walk_webp, "gif": _walk_gif,
}


def _walker(fmt: str) -> Callable[[_Reader, BinaryIO], bool]:
    try:
        return _WALKERS[fmt]
    except KeyError:
        raise ValueError(f"no lossless metadata removal for {fmt!r}") from None


def strip(fmt: str, src: Path, dst: Path) -> bool:
    """Write src to dst without its metadata; fmt is 'jpeg', 'png', 'webp' or 'gif'.

    Returns True when anything was removed (dst then differs from src), False when dst is a
    byte-identical copy. Raises InvalidImage when the structure is broken (truncated segment or
    chunk, bad signature, missing end marker); dst is then deleted.
    """
    return strip_hashed(fmt, src, dst)[0]


def strip_hashed(fmt: str, src: Path, dst: Path) -> tuple[bool, str | None]:
    """strip, also giving the md5 of what was written (None when the walker went back to
    patch a header, as WebP's does), so the stored file need not be read again."""
    walk = _walker(fmt)
    with open(src, "rb") as f:
        raw = open(dst, "wb")
        try:
            with raw:
                out = _HashingOut(raw)
                changed = walk(_Reader(f), out)  # type: ignore[arg-type]
            return changed, out.hexdigest()
        except BaseException:
            Path(dst).unlink(missing_ok=True)
            raise


class _HashingOut:
    """An output file that hashes what is written, until someone seeks in it."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self._md5: "hashlib._Hash | None" = hashlib.md5()

    def write(self, data: bytes | memoryview) -> int:
        if self._md5 is not None:
            self._md5.update(data)
        return self._f.write(data)

    def seek(self, *args: int) -> int:
        self._md5 = None
        return self._f.seek(*args)

    def tell(self) -> int:
        return self._f.tell()

    def hexdigest(self) -> str | None:
        return None if self._md5 is None else self._md5.hexdigest()


def has_metadata(fmt: str, path: Path) -> bool:
    """Tell whether strip would change the file; reads it all, writes nothing.

    Raises InvalidImage for a broken structure, like strip.
    """
    walk = _walker(fmt)
    with open(path, "rb") as f:
        return walk(_Reader(f), _Discard())  # type: ignore[arg-type]


def strip_jpeg(src: Path, dst: Path) -> bool:
    """Strip a JPEG: keep JFIF, ICC and Adobe segments and the scans; stop at the first EOI."""
    return strip("jpeg", src, dst)


def strip_png(src: Path, dst: Path) -> bool:
    """Strip a PNG of eXIf, text and tIME chunks; stop after IEND."""
    return strip("png", src, dst)


def strip_webp(src: Path, dst: Path) -> bool:
    """Strip a WebP of its EXIF and XMP chunks and flags; stop at the RIFF size."""
    return strip("webp", src, dst)


def strip_gif(src: Path, dst: Path) -> bool:
    """Strip a GIF of comments and of application extensions but looping and ICC ones."""
    return strip("gif", src, dst)
