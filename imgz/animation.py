"""Write an animation one frame at a time, so its memory does not grow with its frame count.

Pillow's GIF and APNG writers keep every frame until the end, to compare each with the one
before; a 7 KB GIF of 300 frames on a large screen then holds hundreds of megabytes. Here a
frame is encoded as soon as it is made and let go:

- GIF and APNG are written here: each frame is cut to the box of its visible pixels, encoded
  alone by Pillow and put into the file, with "clear to transparent" after each frame (GIF
  disposal 2, APNG dispose op 1), so every frame shows exactly its own picture;
- WebP and AVIF go through Pillow's own animation encoders, which take one frame at a time from
  a ``Feed`` that makes each frame when the encoder asks for it.

Frames arrive as ``(RGBA image, duration in ms)`` at the size to write.
"""
from __future__ import annotations

import io
import math
import struct
import zlib
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

from PIL import GifImagePlugin, Image

from imgz.errors import TooComplex

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PIL_FORMAT = {"webp": "WEBP", "avif": "AVIF"}


def write(path: Path, out_fmt: str, frames: Iterable[tuple[Image.Image, int]], *, count: int,
          loop: int | None, params: dict[str, Any]) -> tuple[int, int]:
    """Write frames as an animated ``out_fmt`` file at path; returns its size in pixels.

    ``count`` is how many frames the source announces (WebP and AVIF need it before the first
    frame; GIF and APNG write what arrives). ``params`` are the encoder settings of media's
    ``_save_params`` plus what ``_kept_metadata`` keeps.
    """
    frames = iter(frames)
    if out_fmt == "gif":
        with open(path, "wb") as fp:
            return _write_gif(fp, frames, loop, params)
    if out_fmt == "png":
        with open(path, "w+b") as fp:
            return _write_apng(fp, frames, loop or 0, params)
    durations: list[int] = []
    feed = Feed(frames, count, durations)
    feed.save(path, _PIL_FORMAT[out_fmt], save_all=True, duration=durations, loop=loop or 0,
              **params)
    return feed.size


def _visible(frame: Image.Image) -> tuple[Image.Image, tuple[int, int]]:
    """The frame cut to the box of its visible pixels, and where that box sits."""
    box = frame.getchannel("A").getbbox()
    if box is None:  # nothing to show: one clear pixel keeps the frame and its time
        return frame.crop((0, 0, 1, 1)), (0, 0)
    return (frame if box == (0, 0, *frame.size) else frame.crop(box)), (box[0], box[1])


# ---------------------------------------------------------------------------------------------
# GIF

# Frames of more pixels than this are put on a palette a band of rows at a time.
PALETTE_SAMPLE = 1_000_000
_BAND_ROWS = 256


def _gif_frame(frame: Image.Image) -> tuple[Image.Image, int | None]:
    """An RGBA frame as a palette image, index 255 standing for transparent when it is used.

    A large frame gets its palette from an evenly spread sample of its pixels and is then
    mapped to it band by band, so no RGB copy of the whole frame is made.
    """
    clear = frame.getextrema()[3][0] < 128
    colours = 255 if clear else 256
    width, height = frame.size
    try:
        if width * height <= PALETTE_SAMPLE:
            indexed = frame.convert("RGB").quantize(colours, method=Image.Quantize.FASTOCTREE)
        else:
            shrink = math.sqrt(width * height / PALETTE_SAMPLE)
            sample = frame.resize((max(1, int(width / shrink)), max(1, int(height / shrink))),
                                  Image.Resampling.NEAREST)
            palette = sample.convert("RGB").quantize(colours, method=Image.Quantize.FASTOCTREE)
            del sample
            indexed = Image.new("P", frame.size)
            indexed.putpalette(palette.getpalette() or [])
            for top in range(0, height, _BAND_ROWS):
                band = frame.crop((0, top, width, min(height, top + _BAND_ROWS))).convert("RGB")
                indexed.paste(band.quantize(palette=palette, dither=Image.Dither.NONE), (0, top))
    except ValueError:
        # Pillow's word when the quantizer cannot get its memory: the worker's limit, reached
        raise TooComplex() from None
    if not clear:
        return indexed, None
    palette_values = indexed.getpalette() or []
    indexed.putpalette(palette_values + [0] * (768 - len(palette_values)))
    for top in range(0, height, _BAND_ROWS):
        bottom = min(height, top + _BAND_ROWS)
        alpha = frame.crop((0, top, width, bottom)).getchannel("A")
        indexed.paste(255, (0, top, width, bottom), mask=alpha.point(lambda a: 255 if a < 128 else 0, "1"))
    return indexed, 255


def _write_gif(fp: IO[bytes], frames: Iterator[tuple[Image.Image, int]], loop: int | None,
               params: dict[str, Any]) -> tuple[int, int]:
    size: tuple[int, int] | None = None
    for frame, duration in frames:
        if size is None:
            size = frame.size
            _gif_header(fp, size, loop, params.get("comment"))
        visible, offset = _visible(frame)
        del frame  # each frame may be a whole canvas: none is held while the next is made
        indexed, clear = _gif_frame(visible)
        del visible
        options: dict[str, Any] = {"include_color_table": True, "disposal": 2,
                                   "duration": max(0, duration)}
        if clear is not None:
            options["transparency"] = clear
        for piece in GifImagePlugin.getdata(indexed, offset, **options):
            fp.write(piece)
        del indexed
    if size is None:
        raise EOFError("no frames")
    fp.write(b";")
    return size


def _gif_header(fp: IO[bytes], size: tuple[int, int], loop: int | None,
                comment: str | bytes | None) -> None:
    # a header without a global palette: every frame brings its own
    fp.write(b"GIF89a" + struct.pack("<HHBBB", size[0], size[1], 0, 0, 0))
    if loop is not None:
        fp.write(b"!\xff\x0bNETSCAPE2.0\x03\x01" + struct.pack("<H", min(loop, 0xFFFF)) + b"\x00")
    if comment:
        text = comment.encode("utf-8") if isinstance(comment, str) else bytes(comment)
        fp.write(b"!\xfe")
        for start in range(0, len(text), 255):
            piece = text[start:start + 255]
            fp.write(bytes([len(piece)]) + piece)
        fp.write(b"\x00")


# ---------------------------------------------------------------------------------------------
# APNG

def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(type, data) of each chunk of a PNG that Pillow just wrote."""
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        yield kind, data[pos + 8:pos + 8 + length]
        pos += 12 + length


def _write_apng(fp: IO[bytes], frames: Iterator[tuple[Image.Image, int]], loop: int,
                params: dict[str, Any]) -> tuple[int, int]:
    sequence = 0
    count = 0
    actl_at = 0
    size = (0, 0)
    for frame, duration in frames:
        if count == 0:
            # The first frame is the default image: the whole canvas, as IHDR says.
            size = frame.size
            piece, offset = frame, (0, 0)
        else:
            piece, offset = _visible(frame)
        buffer = io.BytesIO()
        piece.save(buffer, "PNG", **(params if count == 0 else
                                     {k: v for k, v in params.items() if k == "compress_level"}))
        width, height = piece.size
        del frame, piece  # each frame may be a whole canvas: none is held while the next is made
        chunks = list(_png_chunks(buffer.getvalue()))
        del buffer
        if count == 0:
            fp.write(PNG_SIGNATURE)
            for kind, data in chunks:
                if kind == b"IHDR":
                    fp.write(_chunk(kind, data))
                    actl_at = fp.tell()
                    fp.write(_chunk(b"acTL", struct.pack(">II", 0, loop)))
                elif kind not in (b"IDAT", b"IEND"):
                    fp.write(_chunk(kind, data))  # the colour profile, kept text
        delay = max(0, min(duration, 0xFFFF))
        fp.write(_chunk(b"fcTL", struct.pack(">IIIIIHHBB", sequence, width, height,
                                             offset[0], offset[1], delay, 1000, 1, 0)))
        sequence += 1
        for kind, data in chunks:
            if kind != b"IDAT":
                continue
            if count == 0:
                fp.write(_chunk(b"IDAT", data))
            else:
                fp.write(_chunk(b"fdAT", struct.pack(">I", sequence) + data))
                sequence += 1
        count += 1
    if count == 0:
        raise EOFError("no frames")
    fp.write(_chunk(b"IEND", b""))
    fp.seek(actl_at)
    fp.write(_chunk(b"acTL", struct.pack(">II", count, loop)))
    return size


# ---------------------------------------------------------------------------------------------
# WebP and AVIF

class Feed(Image.Image):
    """An animation whose frames are made one at a time, as an encoder seeks to each.

    Pillow's WebP and AVIF writers read ``n_frames``, seek to 0, 1, 2... and encode the image
    as it then stands; only the current frame is held. Each frame's duration is appended to
    ``durations`` (the list the encoder was given) before the encoder asks for it.
    """

    def __init__(self, frames: Iterator[tuple[Image.Image, int]], count: int,
                 durations: list[int]) -> None:
        super().__init__()
        self._frames = frames
        self.n_frames = count
        self.is_animated = count > 1
        self._durations = durations
        self._index = -1
        self.seek(0)

    def seek(self, frame: int) -> None:
        if frame <= self._index:
            return  # the encoders seek back to where they began once done: nothing to do
        if frame != self._index + 1:
            raise EOFError("frames are made in order")
        try:
            image, duration = next(self._frames)
        except StopIteration:
            raise EOFError("fewer frames than announced") from None
        image.load()
        self.im = image.im
        self._mode = image.mode
        self._size = image.size
        self._durations.append(duration)
        self._index = frame

    def tell(self) -> int:
        return self._index
