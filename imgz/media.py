"""Render an uploaded image: the stored original, the medium and the thumb.

An image is decoded once per upload: the stored original (when it must change), the medium and
the thumb all come from that one decode. The original is re-encoded only when its pixels must
change; otherwise it is the upload with its metadata removed losslessly by ``metadata.strip``.
What an image is comes from ``probe``; decoding and resizing pixels is ``pixels``'s.
"""
from __future__ import annotations

import io
import math
import os
import re
import shutil
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from PIL import Image, JpegImagePlugin, PngImagePlugin

from imgz import animation, exif, jpeg, metadata, pixels
from imgz.errors import ImageTooLarge, InvalidImage
from imgz.probe import DECODE_ERRORS, EXT_FORMAT, MIME, PIL_FORMAT, ImageProbe, oriented_size

THUMB_SIDE = 320
MEDIUM_WIDTH = 500


def strip_on_arrival(header: bytes) -> bool:
    """Whether a JPEG upload with this header may be stored as it arrives, minus its metadata:
    only when its pixels stand upright (EXIF orientation 1); a turned photo is re-encoded."""
    with Image.open(io.BytesIO(header), formats=["JPEG"]) as im:
        return exif.orientation(im.info) == 1


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


def _decode_still(im: Image.ImageFile.ImageFile, probe: ImageProbe, plan: Plan,
                  out_fmt: str) -> tuple[Image.Image | None, Image.Image | None, Image.Image]:
    """Decode once and return (original if re-encoded, medium, thumb)."""
    if probe.fmt == "jpeg" and (request := draft_request(probe, plan)) is not None:
        im.draft(None, request)
    frame = pixels.orient(pixels.normal_mode(im, out_fmt), probe.orientation)
    original = pixels.fit(frame, plan.target) if plan.reencode else None
    base = original if original is not None else frame
    medium = pixels.fit(base, plan.medium) if plan.medium else None
    thumb = pixels.square(medium if plan.thumb_from_medium else base, plan.thumb_side)
    return original, medium, thumb


def _first_frame_thumb(im: Image.ImageFile.ImageFile, probe: ImageProbe, plan: Plan) -> Image.Image:
    """The static thumb of an animation, from its first frame.

    Only what the thumb needs is made RGBA: the medium-sized frame, or the frame's centre
    square (a square is the same cut before or after turning the frame upright).
    """
    if plan.medium and plan.thumb_from_medium:
        source = pixels.frame_at(im, probe.orientation, plan.medium)
    else:
        w, h = im.size
        c = min(w, h)
        box = ((w - c) // 2, (h - c) // 2, (w - c) // 2 + c, (h - c) // 2 + c)
        source = pixels.orient(im.crop(box).convert("RGBA"), probe.orientation)
    thumb = pixels.square(source, plan.thumb_side)
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
    im.save(path, PIL_FORMAT[out_fmt], **params)
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
    return Variant(path, ext, MIME[EXT_FORMAT[ext]], size[0], size[1], path.stat().st_size)


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
    out_fmt = EXT_FORMAT[ext]
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
        with Image.open(src, formats=[PIL_FORMAT[probe.fmt]]) as im:
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
                                          pixels.frames(src, probe.fmt, probe.orientation, size),
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
    except DECODE_ERRORS as exc:
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
