"""Lossless metadata removal for stored images: JPEG segments, PNG and WebP chunks, GIF blocks.

Each format is walked structurally and streamed from file to file, so memory stays bounded by one
JPEG segment or one read chunk. What stays is an allow-list per format (SPEC §3): what renders
the image and its colour profile; everything else goes, unknown and future chunks included (C2PA
manifests, private chunks), and so does anything after the format's end marker. Everything kept
is copied byte-for-byte, except WebP's RIFF and ANMF sizes and VP8X flags, which must follow the
dropped chunks. A broken structure raises ``InvalidImage``; more chunks or blocks than MAX_CHUNKS
raise ``TooComplex``, which bounds the Python work per file.

Stripping a JPEG drops its EXIF orientation with the rest: the caller decides beforehand whether
the image must be rotated and re-encoded instead.
"""
from __future__ import annotations

import hashlib
import struct
from pathlib import Path
from typing import BinaryIO, Callable

from imgz.errors import InvalidImage, TooComplex
from imgz.jpeg import JpegStripper

_CHUNK = 1 << 16

# Each chunk or block is a step of Python work here (and in Pillow's readers). Real files stay far
# below: libpng cuts IDAT into 8 KB chunks, so a 200 MB PNG holds about 25,000; an animation has
# two or three per frame; a GIF's data sub-blocks are walked apart and not counted.
MAX_CHUNKS = 100_000

_PNG_KEEP = {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"iCCP", b"sRGB", b"gAMA", b"cHRM",
             b"cICP", b"sBIT", b"pHYs", b"acTL", b"fcTL", b"fdAT"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_WEBP_KEEP = {b"VP8 ", b"VP8L", b"VP8X", b"ALPH", b"ANIM", b"ANMF", b"ICCP"}
# Inside an animation frame: its alpha and bitstream; the format allows unknown chunks there too.
_WEBP_FRAME_KEEP = {b"ALPH", b"VP8 ", b"VP8L"}
_WEBP_FLAG_EXIF, _WEBP_FLAG_XMP = 0x08, 0x04
# Looping control, plus the ICC profile extension: colour profiles are kept in every format.
_GIF_KEEP_APP = {b"NETSCAPE2.0", b"ANIMEXTS1.0", b"ICCRGBG1012"}


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

    def __init__(self) -> None:
        self._pos = 0

    def write(self, data: bytes | memoryview) -> int:
        self._pos += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def tell(self) -> int:
        return self._pos


class _Counter:
    """Counts chunks or blocks and refuses a file past MAX_CHUNKS."""

    def __init__(self) -> None:
        self.count = 0

    def step(self) -> None:
        self.count += 1
        if self.count > MAX_CHUNKS:
            raise TooComplex()


# --- JPEG ---------------------------------------------------------------------------------------

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
    chunks = _Counter()
    while True:
        chunks.step()
        head = r.read(8)
        length, kind = struct.unpack(">I4s", head)
        if length > 0x7FFFFFFF or not kind.isalpha() or (first and kind != b"IHDR"):
            raise InvalidImage()
        first = False
        if kind not in _PNG_KEEP:
            r.copy(length + 4, None)
            removed = True
            continue
        out.write(head)
        r.copy(length + 4, out)
        if kind == b"IEND":
            return removed or not r.at_end()


# --- WebP ---------------------------------------------------------------------------------------

def _walk_webp_frame(r: _Reader, out: BinaryIO, size: int, pad: int,
                     chunks: _Counter) -> tuple[int, int, bool]:
    """Copy an ANMF chunk's payload keeping only the frame's alpha and bitstream; returns the
    payload size and pad written (the header's size field is patched when it shrank) and whether
    anything was dropped. ``out`` is just past the ANMF chunk header."""
    if size < 16:
        raise InvalidImage()
    size_at = out.tell() - 4
    r.copy(16, out)  # position, size, duration, flags
    left, written, dropped = size - 16, 16, False
    while left:
        chunks.step()
        if left < 8:
            raise InvalidImage()
        fourcc, inner = struct.unpack("<4sI", r.read(8))
        if 8 + inner > left:
            raise InvalidImage()
        inner_pad = inner & 1 if 8 + inner < left else 0
        left -= 8 + inner + inner_pad
        if fourcc in _WEBP_FRAME_KEEP:
            out.write(struct.pack("<4sI", fourcc, inner))
            r.copy(inner + inner_pad, out)
            written += 8 + inner + inner_pad
        else:
            r.copy(inner + inner_pad, None)
            dropped = True
    if not dropped:
        r.copy(pad, out)
        return size, pad, False
    r.copy(pad, None)
    out.write(b"\0" * (written & 1))
    out.seek(size_at)
    out.write(struct.pack("<I", written))
    out.seek(0, 2)
    return written, written & 1, True


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
    chunks = _Counter()
    while remaining:
        chunks.step()
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
        if fourcc not in _WEBP_KEEP:
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
        elif fourcc == b"ANMF":
            size, pad, dropped = _walk_webp_frame(r, out, size, pad, chunks)
            changed |= dropped
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
    blocks = _Counter()
    while True:
        blocks.step()
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
            elif label == b"\xf9":  # graphic control: delay, disposal, transparency
                out.write(introducer + label)
                _copy_subblocks(r, out)
            else:  # plain text and unknown extensions: text no browser draws
                _copy_subblocks(r, None)
                removed = True
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
    """Strip a PNG to its image, animation and colour chunks; stop after IEND."""
    return strip("png", src, dst)


def strip_webp(src: Path, dst: Path) -> bool:
    """Strip a WebP to its image, animation and ICC chunks (and frames to their image data),
    clearing the EXIF and XMP flags; stop at the RIFF size."""
    return strip("webp", src, dst)


def strip_gif(src: Path, dst: Path) -> bool:
    """Strip a GIF to its images, palettes, graphic controls, looping and ICC extensions."""
    return strip("gif", src, dst)
