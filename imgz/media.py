"""Recognise uploaded files by their bytes, read image headers and metadata, and render images.

An image is decoded once per upload: the stored original (when it must change), the medium and
the thumb all come from that one decode. The original is re-encoded only when its pixels must
change; otherwise it is the upload with its metadata removed losslessly by ``metadata.strip``.
"""
from __future__ import annotations

import io
import itertools
import math
import mmap
import os
import re
import shutil
import struct
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

from PIL import GifImagePlugin, Image, JpegImagePlugin, PngImagePlugin

from imgz import animation, exif, filetype, jpeg, metadata
from imgz.errors import ImageTooLarge, InvalidImage, TooComplex

MIME = filetype.MIME

# Encoders write GIF data in sub-blocks of 255 bytes: a 200 MB GIF has under a million of them.
# Far more means tiny blocks made to cost a walk one Python step each.
MAX_GIF_BLOCKS = 2_000_000
THUMB_SIDE = 320
MEDIUM_WIDTH = 500

_PIL_FORMAT = {"jpeg": "JPEG", "png": "PNG", "gif": "GIF", "webp": "WEBP", "avif": "AVIF",
               "bmp": "BMP"}
_EXT_FORMAT = {"jpg": "jpeg", "jpeg": "jpeg", "png": "png", "gif": "gif", "webp": "webp",
               "avif": "avif"}
_ANIMATABLE = {"gif", "png", "webp", "avif"}
_RESAMPLE = dict(resample=Image.LANCZOS, reducing_gap=3.0)
# GIF frames that share a palette stay palette images while decoding (a quarter of RGBA): the
# decoder keeps the frame and the one before it, and a 10000x10000 screen is 100 MB, not 400.
GifImagePlugin.LOADING_STRATEGY = GifImagePlugin.LoadingStrategy.RGB_AFTER_DIFFERENT_PALETTE_ONLY
# What a damaged file makes Pillow raise while opening or decoding it.
# Pillow's AVIF plugin reports damaged files as RuntimeError.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError,
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
        with Image.open(source, formats=[_PIL_FORMAT[fmt]]) as im:
            width, height = im.size
            # A JPEG's further MPO images are appended extras, dropped with the trailing bytes.
            frames = gif_frames or (1 if fmt == "jpeg" else getattr(im, "n_frames", 1))
            animated = frames > 1 and fmt in _ANIMATABLE
            # every decoded frame counts, animated or not (an AVIF sequence is decoded whole)
            check(frames, width, height)
            info = dict(im.info)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLarge() from None
    except _DECODE_ERRORS:
        raise InvalidImage() from None
    found = exif.read(info, fmt)
    return ImageProbe(
        fmt=fmt, width=width, height=height, frames=frames, is_animated=animated,
        orientation=found.orientation, title=found.title, description=found.description,
        is_360=found.is_360, has_metadata=found.has_metadata, exif_json=found.exif_json,
        date_taken=found.date_taken, date_offset=found.date_offset)


def strip_on_arrival(header: bytes) -> bool:
    """Whether a JPEG upload with this header may be stored as it arrives, minus its metadata:
    only when its pixels stand upright (EXIF orientation 1); a turned photo is re-encoded."""
    with Image.open(io.BytesIO(header), formats=["JPEG"]) as im:
        return exif.orientation(im.info) == 1


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


# ---------------------------------------------------------------------------------------------
# Rendering: the stored original, the medium and the thumb

@dataclass(frozen=True)
class Variant:
    """One written file: the stored original, the medium or the thumb."""

    path: Path
    ext: str
    mime: str
    width: int
    height: int
    size: int


@dataclass(frozen=True)
class Rendered:
    """The files render_image wrote."""

    original: Variant         # the file to store, in work_dir (a link to the upload only when
                              # it was stripped as it arrived)
    changed: bool             # the original differs from the uploaded bytes
    thumb: Variant
    medium: Variant | None
    md5: str | None = None    # of the original, when it was computed while writing it


_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
              4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
              6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}


def oriented_size(probe: ImageProbe) -> tuple[int, int]:
    """Width and height as displayed, after the EXIF orientation."""
    if probe.orientation >= 5:
        return probe.height, probe.width
    return probe.width, probe.height


def _by_ratio(width: int, height: int, new_width: int) -> tuple[int, int]:
    return new_width, max(1, math.floor(height * new_width / width + 0.5))


@dataclass(frozen=True)
class Plan:
    """The sizes of everything to make, in displayed (oriented) pixels."""
    target: tuple[int, int]       # the stored original
    reencode: bool
    medium: tuple[int, int] | None
    thumb_side: int

    @property
    def thumb_from_medium(self) -> bool:
        return self.medium is not None and min(self.medium) >= THUMB_SIDE


def plan_for(probe: ImageProbe, width: int | None = None, keep_metadata: bool = False) -> Plan:
    ow, oh = oriented_size(probe)
    target = _by_ratio(ow, oh, width) if width and width < ow else (ow, oh)
    reencode = (probe.orientation != 1 or target != (ow, oh) or probe.fmt == "bmp"
                or (probe.fmt == "avif" and probe.has_metadata and not keep_metadata))
    medium = _by_ratio(*target, MEDIUM_WIDTH) if target[0] > MEDIUM_WIDTH else None
    return Plan(target, reencode, medium, min(THUMB_SIDE, *target))


def draft_request(probe: ImageProbe, plan: Plan) -> tuple[int, int] | None:
    """The smallest decode size (as encoded, before orientation) that still serves every output.

    None when the full-size image is needed anyway. JPEG's DCT scaling then decodes at the
    largest 1/2, 1/4 or 1/8 reduction that still covers it.
    """
    tw, th = plan.target
    if plan.reencode:
        need = Fraction(1)  # the stored original itself, at the target size
    else:
        need = max(Fraction(MEDIUM_WIDTH, tw) if plan.medium else Fraction(0),
                   Fraction(plan.thumb_side, min(tw, th)))
    ow, oh = oriented_size(probe)
    scale = need * Fraction(tw, ow)  # exact: a float 500.00000001 would ceil to 501
    if scale >= 1:
        return None
    request = (max(1, math.ceil(ow * scale)), max(1, math.ceil(oh * scale)))
    return request[::-1] if probe.orientation >= 5 else request


def _normal_mode(im: Image.Image, out_fmt: str) -> Image.Image:
    """A mode that resizes well and the output format can hold, keeping transparency."""
    if im.mode == "1":
        return im.convert("L")
    if im.mode in ("P", "PA") or (im.mode in ("L", "RGB") and "transparency" in im.info):
        return im.convert("RGBA" if im.has_transparency_data else "RGB")
    if out_fmt in ("webp", "avif") and im.mode not in ("RGB", "RGBA"):
        return im.convert("RGBA" if "A" in im.mode else "RGB")
    return im


def _orient(im: Image.Image, orientation: int) -> Image.Image:
    method = _TRANSPOSE.get(orientation)
    return im.transpose(method) if method is not None else im


def _fit(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    return im if im.size == size else im.resize(size, **_RESAMPLE)


def _square(im: Image.Image, side: int) -> Image.Image:
    """The centred square of the shorter side, scaled to side (never up)."""
    w, h = im.size
    c = min(w, h)
    box = ((w - c) // 2, (h - c) // 2, (w - c) // 2 + c, (h - c) // 2 + c)
    if c == side:
        return im.crop(box)
    return im.resize((side, side), box=box, **_RESAMPLE)


def _decode_still(im: Image.ImageFile.ImageFile, probe: ImageProbe, plan: Plan,
                  out_fmt: str) -> tuple[Image.Image | None, Image.Image | None, Image.Image]:
    """Decode once and return (original if re-encoded, medium, thumb)."""
    if probe.fmt == "jpeg" and (request := draft_request(probe, plan)) is not None:
        im.draft(None, request)
    frame = _orient(_normal_mode(im, out_fmt), probe.orientation)
    original = _fit(frame, plan.target) if plan.reencode else None
    base = original if original is not None else frame
    medium = _fit(base, plan.medium) if plan.medium else None
    thumb = _square(medium if plan.thumb_from_medium else base, plan.thumb_side)
    return original, medium, thumb


def _frames(src: Path, fmt: str, orientation: int, size: tuple[int, int]
            ) -> Iterator[tuple[Image.Image, int]]:
    """Decode an animation's frames one at a time, upright and at size, with their durations.

    A file with fewer frames than it announces ends where decoding ends, as browsers do. No
    frame is kept here once it is handed on: a frame may be a whole canvas.
    """
    with Image.open(src, formats=[_PIL_FORMAT[fmt]]) as im:
        for index in itertools.count():
            try:
                im.seek(index)
            except EOFError:
                if index == 0:
                    raise
                return
            yield _frame_at(im, orientation, size), int(im.info.get("duration") or 0)


def _frame_at(im: Image.Image, orientation: int, size: tuple[int, int]) -> Image.Image:
    """The decoder's current frame as RGBA, upright and at size: a new image of its own."""
    if orientation == 1 and im.size != size:
        return _banded_fit(im, size)
    # a decoder that gives RGBA already is used as it is: no copy of a large canvas
    rgba = im if im.mode == "RGBA" else im.convert("RGBA")
    frame = _fit(_orient(rgba, orientation), size)
    if frame is im:
        frame = im.copy()  # the decoder's own canvas changes with the next frame
    frame.info = {}  # per-frame comments and extensions must not reach the encoder
    return frame


# Source rows converted and resampled at a time by _banded_fit.
BAND_SOURCE_ROWS = 256


def _banded_fit(im: Image.Image, size: tuple[int, int]) -> Image.Image:
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
        band = strip.resize((size[0], bottom - top), box=(0, y0 - c0, width, y1 - c0), **_RESAMPLE)
        out.paste(band, (0, top))
    return out


def _first_frame_thumb(im: Image.ImageFile.ImageFile, probe: ImageProbe, plan: Plan) -> Image.Image:
    """The static thumb of an animation, from its first frame.

    Only what the thumb needs is made RGBA: the medium-sized frame, or the frame's centre
    square (a square is the same cut before or after turning the frame upright).
    """
    if plan.medium and plan.thumb_from_medium:
        source = _frame_at(im, probe.orientation, plan.medium)
    else:
        w, h = im.size
        c = min(w, h)
        box = ((w - c) // 2, (h - c) // 2, (w - c) // 2 + c, (h - c) // 2 + c)
        source = _orient(im.crop(box).convert("RGBA"), probe.orientation)
    thumb = _square(source, plan.thumb_side)
    if thumb.getchannel("A").getextrema()[0] == 255:
        thumb = thumb.convert("RGB")  # an opaque still needs no alpha channel
    return thumb


def _save_params(out_fmt: str, *, icc: bytes | None, stored: bool, sampling: int) -> dict:
    """Encoder settings: stored originals get the higher quality, variants the faster ones."""
    params: dict = {}
    if icc and out_fmt != "gif":
        params["icc_profile"] = icc
    if out_fmt == "jpeg":
        params["quality"] = 90 if stored else 85
        if sampling >= 0:
            params["subsampling"] = sampling
    elif out_fmt == "png" and not stored:
        params["compress_level"] = 1
    return params


def _save(im: Image.Image, path: Path, out_fmt: str, params: dict) -> tuple[int, int]:
    """Write a still; returns its size in pixels."""
    # Nothing read from the upload (comments, XMP, EXIF) may ride along through im.info.
    im.info = {}
    im.save(path, _PIL_FORMAT[out_fmt], **params)
    return im.size


_XMP_PNG_KEY = "XML:com.adobe.xmp"


def _kept_metadata(im: Image.Image, out_fmt: str) -> dict:
    """What a re-encode carries over when metadata is kept: EXIF (orientation reset to 1, as the
    pixels now stand upright), XMP, PNG text chunks and comments. Pillow cannot write IPTC."""
    info = im.info
    params: dict = {}
    loaded = exif.load_exif(info.get("exif"))
    if loaded is not None:
        loaded[0x0112] = 1
        params["exif"] = loaded.tobytes()
    xmp = info.get("xmp") or info.get(_XMP_PNG_KEY)
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    if xmp:
        xmp = re.sub(rb'(tiff:Orientation(?:="|>))[0-9]', rb"\g<1>1", xmp)
    if out_fmt in ("jpeg", "webp", "avif") and xmp:
        params["xmp"] = xmp
    if out_fmt == "png":
        text = {k: v for k, v in getattr(im, "text", {}).items() if k != _XMP_PNG_KEY}
        if text or xmp:
            chunks = PngImagePlugin.PngInfo()
            for key, value in text.items():
                chunks.add_itxt(key, value)
            if xmp:
                chunks.add_itxt(_XMP_PNG_KEY, xmp.decode("utf-8", "replace"))
            params["pnginfo"] = chunks
    comment = info.get("comment")
    if comment and out_fmt in ("jpeg", "gif"):
        params["comment"] = comment
    return params


def _variant(path: Path, ext: str, size: tuple[int, int]) -> Variant:
    return Variant(path, ext, MIME[_EXT_FORMAT[ext]], size[0], size[1], path.stat().st_size)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def render_image(src: Path, probe: ImageProbe, *, work_dir: Path, ext: str,
                 width: int | None = None, keep_metadata: bool = False,
                 stripped: jpeg.Stripped | None = None) -> Rendered:
    """Write original.<ext>, thumb.<ext> and, when due, medium.<ext> into work_dir.

    ext is the stored extension ('jpg' or 'jpeg', 'png', 'gif', 'webp', 'avif'; 'png' for BMP).
    ``stripped`` says src is a JPEG upload already stripped as it arrived: when it needs no
    re-encode it becomes the original as it is. A damaged image raises InvalidImage after
    writing nothing outside work_dir.
    """
    out_fmt = _EXT_FORMAT[ext]
    plan = plan_for(probe, width, keep_metadata)
    paths = {role: work_dir / f"{role}.{ext}" for role in ("original", "medium", "thumb")}
    changed = True
    digest = None
    if stripped is not None and stripped.broken:
        raise InvalidImage()
    if not plan.reencode:
        if stripped is not None:
            _link_or_copy(src, paths["original"])
            changed, digest = stripped.changed, stripped.md5
        elif keep_metadata or probe.fmt == "avif":
            shutil.copyfile(src, paths["original"])
            changed = False
        else:
            changed, digest = metadata.strip_hashed(probe.fmt, src, paths["original"])
    try:
        with Image.open(src, formats=[_PIL_FORMAT[probe.fmt]]) as im:
            icc = im.info.get("icc_profile")
            loop = im.info.get("loop")
            sampling = JpegImagePlugin.get_sampling(im) if probe.fmt == "jpeg" else -1
            extra = _kept_metadata(im, out_fmt) if keep_metadata and plan.reencode else {}
            if probe.is_animated:
                original = medium = None
                thumb = _first_frame_thumb(im, probe, plan)
            else:
                original, medium, thumb = _decode_still(im, probe, plan, out_fmt)
        stored = _save_params(out_fmt, icc=icc, stored=True, sampling=sampling)
        variant = _save_params(out_fmt, icc=icc, stored=False, sampling=sampling)
        if probe.is_animated:
            # Each animated output decodes the frames afresh, one at a time: memory stays that
            # of a frame or two whatever the frame count.
            def animate(role: str, size: tuple[int, int], params: dict) -> Variant:
                written = animation.write(paths[role], out_fmt,
                                          _frames(src, probe.fmt, probe.orientation, size),
                                          count=probe.frames, loop=loop, params=params)
                return _variant(paths[role], ext, written)

            rendered_original = (animate("original", plan.target, {**stored, **extra})
                                 if plan.reencode else _variant(paths["original"], ext, plan.target))
            if plan.medium:
                rendered_medium = animate("medium", plan.medium, variant)
            else:
                # A small animation is its own medium: the viewer always shows it moving.
                _link_or_copy(paths["original"], paths["medium"])
                rendered_medium = _variant(paths["medium"], ext, (rendered_original.width,
                                                                         rendered_original.height))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLarge() from None
    except _DECODE_ERRORS as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise  # the disk, not the image: a full disk is answered as such
        raise InvalidImage() from None

    if not probe.is_animated:
        if original is not None:
            size = _save(original, paths["original"], out_fmt, {**stored, **extra})
        else:
            size = plan.target
        rendered_original = _variant(paths["original"], ext, size)
        rendered_medium = None
        if medium is not None:
            medium_size = _save(medium, paths["medium"], out_fmt, variant)
            rendered_medium = _variant(paths["medium"], ext, medium_size)
    thumb_size = _save(thumb, paths["thumb"], out_fmt, variant)
    return Rendered(rendered_original, changed, _variant(paths["thumb"], ext, thumb_size),
                    rendered_medium, None if plan.reencode else digest)
