"""The type of an uploaded file, decided from its first bytes and never from its name.

Images (JPEG, PNG, GIF, WebP, AVIF, BMP) and videos (MP4, MOV, WebM); anything else is None.
"""
from __future__ import annotations

from pathlib import Path

MIME = {"jpeg": "image/jpeg", "jpg": "image/jpeg", "png": "image/png", "gif": "image/gif",
        "webp": "image/webp", "avif": "image/avif", "bmp": "image/bmp", "mp4": "video/mp4",
        "webm": "video/webm", "mov": "video/quicktime"}

_MP4_BRANDS = {b"isom", b"iso2", b"iso3", b"iso4", b"iso5", b"iso6", b"iso7", b"iso8", b"iso9",
               b"mp41", b"mp42", b"avc1", b"M4V ", b"dash", b"MSNV"}
# QuickTime files from before 'ftyp' existed open directly with one of these atoms.
_LEGACY_MOV_ATOMS = {b"moov", b"mdat", b"wide"}
_BMP_HEADER_SIZES = {12, 40, 52, 56, 64, 108, 124}
HEAD = 4096   # the bytes that decide


def sniff(path: Path) -> str | None:
    """The format from the first bytes: 'jpeg', 'png', 'gif', 'webp', 'avif', 'bmp', 'mp4',
    'webm', 'mov', or None for anything else (SVG, HTML, PDF, ZIP, text...)."""
    with open(path, "rb") as f:
        head = f.read(HEAD)
    return sniff_head(head)


def sniff_head(head: bytes) -> str | None:
    """The format from a file's first HEAD bytes (fewer when the file is shorter)."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    # "BM" alone starts plenty of text; the DIB header size must be one of the known ones too.
    if head[:2] == b"BM" and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES:
        return "bmp"
    if head[4:8] == b"ftyp":
        return _ftyp_format(head)
    if head[4:8] in _LEGACY_MOV_ATOMS:
        return "mov"
    if head.startswith(b"\x1a\x45\xdf\xa3") and _ebml_doctype(head) == b"webm":
        return "webm"
    return None


def _ftyp_format(head: bytes) -> str | None:
    """The major brand decides; an unknown one (e.g. 'mif1') defers to the compatible brands."""
    end = min(int.from_bytes(head[:4], "big"), len(head))
    brands = [head[8:12]] + [head[i:i + 4] for i in range(16, end - 3, 4)]
    for brand in brands:
        if brand in (b"avif", b"avis"):
            return "avif"
        if brand == b"qt  ":
            return "mov"
        if brand in _MP4_BRANDS or brand[:3] in (b"3gp", b"3g2"):
            return "mp4"
    return None


def _vint(data: bytes, pos: int) -> tuple[int, int, int]:
    """An EBML variable-size integer at pos: (value with marker, value without, next pos)."""
    first = data[pos]
    length = 9 - first.bit_length()
    if length > 8:
        raise ValueError("bad EBML vint")
    raw = int.from_bytes(data[pos:pos + length], "big")
    return raw, raw & ~(1 << (7 * length)), pos + length


def _ebml_doctype(head: bytes) -> bytes | None:
    try:
        _, size, pos = _vint(head, 4)
        end = min(pos + size, len(head))
        while pos < end:
            element, _, pos = _vint(head, pos)
            _, size, pos = _vint(head, pos)
            if element == 0x4282:
                return head[pos:pos + size]
            pos += size
    except (IndexError, ValueError):
        pass
    return None
