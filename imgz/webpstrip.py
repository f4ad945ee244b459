"""Lossless metadata removal for WebP: image, animation and ICC chunks stay (and each animation
frame keeps only its alpha and bitstream); the VP8X flags for EXIF and XMP are cleared, and the
RIFF and ANMF sizes follow the dropped chunks. Used through metadata.strip.
"""
from __future__ import annotations

import struct
from typing import BinaryIO

from imgz.chunks import Counter, Reader
from imgz.errors import InvalidImage

_KEEP = {b"VP8 ", b"VP8L", b"VP8X", b"ALPH", b"ANIM", b"ANMF", b"ICCP"}
# Inside an animation frame: its alpha and bitstream; the format allows unknown chunks there too.
_FRAME_KEEP = {b"ALPH", b"VP8 ", b"VP8L"}
_FLAG_EXIF, _FLAG_XMP = 0x08, 0x04


def _walk_frame(r: Reader, out: BinaryIO, size: int, pad: int,
                chunks: Counter) -> tuple[int, int, bool]:
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
        if fourcc in _FRAME_KEEP:
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


def walk_webp(r: Reader, out: BinaryIO) -> bool:
    head = r.read(12)
    riff, riff_size, form = struct.unpack("<4sI4s", head)
    if riff != b"RIFF" or form != b"WEBP" or riff_size < 12:
        raise InvalidImage()
    out.write(head)
    changed = False
    remaining = riff_size - 4
    written = 4
    first = True
    chunks = Counter()
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
        if fourcc not in _KEEP:
            r.copy(size + pad, None)
            changed = True
            continue
        out.write(chunk_head)
        if first and fourcc == b"VP8X":
            if size < 1:
                raise InvalidImage()
            payload = r.read(size + pad)
            flags = payload[0] & ~(_FLAG_EXIF | _FLAG_XMP)
            changed |= flags != payload[0]
            out.write(bytes((flags,)) + payload[1:])
        elif fourcc == b"ANMF":
            size, pad, dropped = _walk_frame(r, out, size, pad, chunks)
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
