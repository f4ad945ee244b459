"""Probing an uploaded image: what its header and metadata say, read without decoding pixels.

The format facts shared with rendering (Pillow's names for the formats, the stored extensions,
which formats animate, what a damaged file makes Pillow raise) are kept here too. Sizes are
checked against the pixel limits before Pillow allocates anything for them.
"""
from __future__ import annotations

import io
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from imgz import exif, filetype, metadata
from imgz.errors import ImageTooLarge, InvalidImage, TooComplex

MIME = filetype.MIME

# Encoders write GIF data in sub-blocks of 255 bytes: a 200 MB GIF has under a million of them.
# Far more means tiny blocks made to cost a walk one Python step each.
MAX_GIF_BLOCKS = 2_000_000

PIL_FORMAT = {"jpeg": "JPEG", "png": "PNG", "gif": "GIF", "webp": "WEBP", "avif": "AVIF",
              "bmp": "BMP"}
EXT_FORMAT = {"jpg": "jpeg", "jpeg": "jpeg", "png": "png", "gif": "gif", "webp": "webp",
              "avif": "avif"}
ANIMATABLE = {"gif", "png", "webp", "avif"}
# What a damaged file makes Pillow raise while opening or decoding it.
# Pillow's AVIF plugin reports damaged files as RuntimeError.
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError,
                 RuntimeError)


@dataclass(frozen=True)
class ImageProbe:
    """What an image's header and metadata say, read without decoding pixels."""

    fmt: str                  # as sniff()
    width: int                # pixel size as encoded (before EXIF orientation)
    height: int
    frames: int
    is_animated: bool         # GIF, APNG, WebP with more than one frame
    orientation: int          # EXIF orientation, 1 when absent/invalid
    title: str | None
    description: str | None
    is_360: bool              # XMP GPano:ProjectionType == equirectangular
    has_metadata: bool        # EXIF or XMP present
    exif_json: str | None     # the EXIF as a JSON object string, None without EXIF
    date_taken: str | None    # raw EXIF DateTimeOriginal, else DateTime
    date_offset: str | None   # raw EXIF OffsetTimeOriginal


def probe_image(path: Path, fmt: str, *, max_pixels: int, max_animation_pixels: int,
                header: bytes | None = None) -> ImageProbe:
    """Read an image's header and metadata without decoding its pixels.

    ``header`` is the upload's JPEG header when the file on disk was stripped as it arrived: the
    metadata is read from there. Raises ImageTooLarge past either limit, InvalidImage when the
    file cannot be read. GIF and WebP sizes are read before Pillow opens them: opening already
    allocates a WebP canvas, and a GIF frame may reach beyond the screen it declares.
    """
    def check(frames: int, width: int, height: int) -> None:
        if width * height > max_pixels or frames * width * height > max_animation_pixels:
            raise ImageTooLarge()

    gif_frames = None
    if fmt == "png":
        # Pillow reads every chunk in Python, before and after the image data: a file of
        # millions of empty chunks is refused by our own capped walk before Pillow sees it.
        metadata.has_metadata("png", path)
    if fmt == "gif":
        gif_frames, width, height = _gif_canvas(path)
        check(gif_frames, width, height)
    elif fmt == "webp" and (canvas := _webp_canvas(path)):
        check(1, *canvas)
    try:
        source = io.BytesIO(header) if header is not None else path
        with Image.open(source, formats=[PIL_FORMAT[fmt]]) as im:
            width, height = im.size
            # A JPEG's further MPO images are appended extras, dropped with the trailing bytes.
            frames = gif_frames or (1 if fmt == "jpeg" else getattr(im, "n_frames", 1))
            animated = frames > 1 and fmt in ANIMATABLE
            # every decoded frame counts, animated or not (an AVIF sequence is decoded whole)
            check(frames, width, height)
            info = dict(im.info)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLarge() from None
    except DECODE_ERRORS:
        raise InvalidImage() from None
    found = exif.read(info, fmt)
    return ImageProbe(
        fmt=fmt, width=width, height=height, frames=frames, is_animated=animated,
        orientation=found.orientation, title=found.title, description=found.description,
        is_360=found.is_360, has_metadata=found.has_metadata, exif_json=found.exif_json,
        date_taken=found.date_taken, date_offset=found.date_offset)


def _webp_canvas(path: Path) -> tuple[int, int] | None:
    """The canvas a WebP declares in its first chunk (extended, lossy or lossless header)."""
    with open(path, "rb") as f:
        head = f.read(30)
    if len(head) < 30:
        return None
    chunk = head[12:16]
    if chunk == b"VP8X":
        return 1 + int.from_bytes(head[24:27], "little"), 1 + int.from_bytes(head[27:30], "little")
    if chunk == b"VP8 ":
        return (int.from_bytes(head[26:28], "little") & 0x3FFF,
                int.from_bytes(head[28:30], "little") & 0x3FFF)
    if chunk == b"VP8L":
        bits = int.from_bytes(head[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    return None


def _gif_canvas(path: Path) -> tuple[int, int, int]:
    """Count a GIF's frames and the canvas they need: the screen grown to every frame's extent.

    Decoders enlarge the canvas for a frame reaching beyond the screen, so a tiny declared screen
    proves nothing; only the image descriptors do.
    """
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size < 13:
            raise InvalidImage()
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            n = len(m)
            width, height, flags = struct.unpack_from("<HHB", m, 6)
            pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
            frames = 0
            blocks = 0
            while pos < n:
                if m[pos] == 0x2C and pos + 11 <= n:
                    x, y, w, h, flags = struct.unpack_from("<HHHHB", m, pos + 1)
                    pos += 11 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
                    frames += 1
                    width, height = max(width, x + w), max(height, y + h)
                elif m[pos] == 0x21:
                    pos += 2
                else:
                    break  # the trailer, or garbage where decoders stop too
                while pos < n:
                    size = m[pos]
                    pos += 1 + size
                    blocks += 1
                    if not size:
                        break
                if blocks > MAX_GIF_BLOCKS:
                    raise TooComplex()
    return max(frames, 1), width, height


def oriented_size(probe: ImageProbe) -> tuple[int, int]:
    """Width and height as displayed, after the EXIF orientation."""
    if probe.orientation >= 5:
        return probe.height, probe.width
    return probe.width, probe.height
