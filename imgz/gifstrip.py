"""Lossless metadata removal for GIF: images, palettes, graphic controls, and the looping and ICC
application extensions stay; comments, plain text and other extensions go, and nothing after the
trailer stays. Used through metadata.strip.
"""
from __future__ import annotations

from typing import BinaryIO

from imgz.chunks import Counter, Reader
from imgz.errors import InvalidImage

# Looping control, plus the ICC profile extension: colour profiles are kept in every format.
_KEEP_APP = {b"NETSCAPE2.0", b"ANIMEXTS1.0", b"ICCRGBG1012"}


def _copy_subblocks(r: Reader, out: BinaryIO | None) -> None:
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


def walk_gif(r: Reader, out: BinaryIO) -> bool:
    head = r.read(13)
    if head[:6] not in (b"GIF87a", b"GIF89a"):
        raise InvalidImage()
    out.write(head)
    r.copy(_color_table_size(head[10]), out)
    removed = False
    blocks = Counter()
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
                if ident in _KEEP_APP:
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
