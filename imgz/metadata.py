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

The JPEG and PNG walks are here; WebP's is webpstrip.py's, GIF's gifstrip.py's, and the reader
and chunk counter they share are chunks.py's.
"""
from __future__ import annotations

import hashlib
import struct
from pathlib import Path
from typing import BinaryIO, Callable

from imgz.chunks import Counter, Reader
from imgz.errors import InvalidImage
from imgz.gifstrip import walk_gif
from imgz.jpegstrip import JpegStripper
from imgz.webpstrip import walk_webp

_PNG_KEEP = {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"iCCP", b"sRGB", b"gAMA", b"cHRM",
             b"cICP", b"sBIT", b"pHYs", b"acTL", b"fcTL", b"fdAT"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


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


# --- JPEG ---------------------------------------------------------------------------------------

def _walk_jpeg(r: Reader, out: BinaryIO) -> bool:
    stripper = JpegStripper(out.write)
    while True:
        piece = r.window()
        if not piece:
            return stripper.finish()
        stripper.feed(piece)
        r.advance(len(piece))


# --- PNG ----------------------------------------------------------------------------------------

def _walk_png(r: Reader, out: BinaryIO) -> bool:
    signature = r.read(8)
    if signature != _PNG_SIGNATURE:
        raise InvalidImage()
    out.write(signature)
    removed = False
    first = True
    chunks = Counter()
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


# --- files --------------------------------------------------------------------------------------

_WALKERS: dict[str, Callable[[Reader, BinaryIO], bool]] = {
    "jpeg": _walk_jpeg, "png": _walk_png, "webp": walk_webp, "gif": walk_gif,
}


def _walker(fmt: str) -> Callable[[Reader, BinaryIO], bool]:
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
                changed = walk(Reader(f), out)  # type: ignore[arg-type]
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
        return walk(Reader(f), _Discard())  # type: ignore[arg-type]


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
