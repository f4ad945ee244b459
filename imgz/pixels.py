"""Pixels decoded and resized: modes that resize well, upright frames, fits and centred squares,
and an animation's frames one at a time, a large frame resampled a band of rows at a time.
"""
from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Iterator

from PIL import GifImagePlugin, Image

from imgz.probe import PIL_FORMAT

RESAMPLE = dict(resample=Image.LANCZOS, reducing_gap=3.0)
# GIF frames that share a palette stay palette images while decoding (a quarter of RGBA): the
# decoder keeps the frame and the one before it, and a 10000x10000 screen is 100 MB, not 400.
GifImagePlugin.LOADING_STRATEGY = GifImagePlugin.LoadingStrategy.RGB_AFTER_DIFFERENT_PALETTE_ONLY

_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
              4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
              6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}


def normal_mode(im: Image.Image, out_fmt: str) -> Image.Image:
    """A mode that resizes well and the output format can hold, keeping transparency."""
    if im.mode == "1":
        return im.convert("L")
    if im.mode in ("P", "PA") or (im.mode in ("L", "RGB") and "transparency" in im.info):
        return im.convert("RGBA" if im.has_transparency_data else "RGB")
    if out_fmt in ("webp", "avif") and im.mode not in ("RGB", "RGBA"):
        return im.convert("RGBA" if "A" in im.mode else "RGB")
    return im


def orient(im: Image.Image, orientation: int) -> Image.Image:
    method = _TRANSPOSE.get(orientation)
    return im.transpose(method) if method is not None else im


def fit(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    return im if im.size == size else im.resize(size, **RESAMPLE)


def square(im: Image.Image, side: int) -> Image.Image:
    """The centred square of the shorter side, scaled to side (never up)."""
    w, h = im.size
    c = min(w, h)
    box = ((w - c) // 2, (h - c) // 2, (w - c) // 2 + c, (h - c) // 2 + c)
    if c == side:
        return im.crop(box)
    return im.resize((side, side), box=box, **RESAMPLE)


def frames(src: Path, fmt: str, orientation: int, size: tuple[int, int]
            ) -> Iterator[tuple[Image.Image, int]]:
    """Decode an animation's frames one at a time, upright and at size, with their durations.

    A file with fewer frames than it announces ends where decoding ends, as browsers do. No
    frame is kept here once it is handed on: a frame may be a whole canvas.
    """
    with Image.open(src, formats=[PIL_FORMAT[fmt]]) as im:
        for index in itertools.count():
            try:
                im.seek(index)
            except EOFError:
                if index == 0:
                    raise
                return
            yield frame_at(im, orientation, size), int(im.info.get("duration") or 0)


def frame_at(im: Image.Image, orientation: int, size: tuple[int, int]) -> Image.Image:
    """The decoder's current frame as RGBA, upright and at size: a new image of its own."""
    if orientation == 1 and im.size != size:
        return banded_fit(im, size)
    # a decoder that gives RGBA already is used as it is: no copy of a large canvas
    rgba = im if im.mode == "RGBA" else im.convert("RGBA")
    frame = fit(orient(rgba, orientation), size)
    if frame is im:
        frame = im.copy()  # the decoder's own canvas changes with the next frame
    frame.info = {}  # per-frame comments and extensions must not reach the encoder
    return frame


# Source rows converted and resampled at a time by banded_fit.
BAND_SOURCE_ROWS = 256


def banded_fit(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    """im as RGBA at size, made a band of rows at a time.

    Neither an RGBA copy of the whole canvas nor the resampler's intermediate image is made: a
    frame of a large animation costs its output and a band. Each band is cut from the source
    with a margin as wide as the filter reaches, so the bands meet without seams.
    """
    width, height = im.size
    scale = height / size[1]
    margin = math.ceil(3 * max(scale, 1.0)) + 2  # LANCZOS reaches 3 source pixels per unit of scale
    step = max(1, int(BAND_SOURCE_ROWS / scale))
    out = Image.new("RGBA", size)
    for top in range(0, size[1], step):
        bottom = min(size[1], top + step)
        y0, y1 = top * scale, bottom * scale
        c0, c1 = max(0, math.floor(y0) - margin), min(height, math.ceil(y1) + margin)
        strip = im.crop((0, c0, width, c1))
        if strip.mode != "RGBA":
            strip = strip.convert("RGBA")
        band = strip.resize((size[0], bottom - top), box=(0, y0 - c0, width, y1 - c0), **RESAMPLE)
        out.paste(band, (0, top))
    return out
