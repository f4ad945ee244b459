"""What processing makes of an upload's file: the stored original and its variants, as a Made.

These functions are the jobs of the media workers (``workers.Pool``): each takes paths and plain
settings, writes files into a work folder on the local disk, and returns a small record naming
them. Nothing here touches the database or the request.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from PIL import Image

from . import jpeg, media, mp4strip, video
from .errors import ImageTooLarge, InvalidVideo, NoStorage
from .probe import probe_image


@dataclass(frozen=True)
class Limits:
    """The settings media work follows."""

    max_pixels: int
    max_animation_pixels: int
    keep_exif: bool
    ffmpeg_timeout: float


@dataclass(frozen=True)
class Made:
    """What processing made of an upload, ready to be named and placed."""

    kind: str
    ext: str
    original: media.Variant
    changed: bool
    thumb: media.Variant
    medium: media.Variant | None
    frame: media.Variant | None
    width: int
    height: int
    duration: int
    is_animated: bool
    is_360: bool
    title: str | None
    description: str | None
    exif_json: str | None
    date_taken: str | None    # raw EXIF DateTimeOriginal (else DateTime), for use_file_date
    date_offset: str | None   # raw EXIF OffsetTimeOriginal
    md5: str | None           # of the original when it was computed while writing it

    def files(self) -> list[tuple[str, media.Variant]]:
        """(variant, file) pairs, the original first; variant '' th md fr."""
        pairs = [("", self.original), ("th", self.thumb)]
        if self.medium is not None:
            pairs.append(("md", self.medium))
        if self.frame is not None:
            pairs.append(("fr", self.frame))
        return pairs


def _disk_full_in(cause: BaseException | None) -> bool:
    """Whether a failed ffmpeg run said it ran out of disk space."""
    text = str(getattr(cause, "stderr_tail", "") or cause or "")
    return "No space left on device" in text or "Disk quota exceeded" in text


def _follow(limits: Limits) -> None:
    """Pillow's own guard against large images must not undercut the setting: ours, checked from
    the header first, is the one that refuses."""
    Image.MAX_IMAGE_PIXELS = max(limits.max_pixels, Image.MAX_IMAGE_PIXELS or 0)


def image(src: Path, fmt: str, ext: str, width: int | None, stripped: jpeg.Stripped | None,
          limits: Limits, work: Path) -> Made:
    """Probe and render an image upload into work."""
    _follow(limits)
    probe = probe_image(src, fmt, max_pixels=limits.max_pixels,
                        max_animation_pixels=limits.max_animation_pixels,
                        header=stripped.header if stripped is not None else None)
    rendered = media.render_image(src, probe, work_dir=work, ext=ext, width=width,
                                  keep_metadata=limits.keep_exif, stripped=stripped)
    return Made(
        kind="image", ext=ext, original=rendered.original, changed=rendered.changed,
        thumb=rendered.thumb, medium=rendered.medium, frame=None,
        width=rendered.original.width, height=rendered.original.height, duration=0,
        is_animated=probe.is_animated, is_360=probe.is_360, title=probe.title,
        description=probe.description,
        exif_json=probe.exif_json if limits.keep_exif else None,
        date_taken=probe.date_taken, date_offset=probe.date_offset, md5=rendered.md5)


def clip(src: Path, fmt: str, limits: Limits, work: Path,
         cleaned: mp4strip.Cleaned | None = None) -> Made:
    """Probe and render a video upload into work: the stored original and its frame.

    ``cleaned`` says src is an MP4/MOV whose container metadata was blanked as it arrived: its
    title and description are read from the metadata it held, and it is stored as it is unless
    a track must go.
    """
    _follow(limits)
    try:
        probe = video.probe_video(src, fmt, timeout=limits.ffmpeg_timeout)
        if probe.width * probe.height > limits.max_pixels:
            raise ImageTooLarge()
        if cleaned is not None:
            title, description = video.read_tags(cleaned.tags, work, timeout=limits.ffmpeg_timeout)
            probe = replace(probe, title=title, description=description)
        rendered = video.render_video(src, probe, work_dir=work, keep_metadata=limits.keep_exif,
                                      timeout=limits.ffmpeg_timeout, max_pixels=limits.max_pixels,
                                      cleaned=cleaned)
    except InvalidVideo as exc:
        if _disk_full_in(exc.__cause__):
            raise NoStorage() from exc
        raise
    return Made(
        kind="video", ext=fmt, original=rendered.original, changed=rendered.changed,
        thumb=rendered.thumb, medium=rendered.medium, frame=rendered.frame,
        width=rendered.original.width or probe.width,
        height=rendered.original.height or probe.height, duration=probe.duration,
        is_animated=False, is_360=False, title=probe.title, description=probe.description,
        exif_json=None, date_taken=None, date_offset=None, md5=rendered.md5)


def variants(src: Path, fmt: str, kind: str, ext: str, limits: Limits,
             work: Path) -> dict[str, media.Variant | None]:
    """The thumb, medium (and a video's frame) of a stored original, made again into work."""
    _follow(limits)
    if kind == "video":
        probe = video.probe_video(src, fmt, timeout=limits.ffmpeg_timeout)
        made = video.render_video(src, probe, work_dir=work, keep_metadata=True,
                                  timeout=limits.ffmpeg_timeout, max_pixels=limits.max_pixels)
        return {"th": made.thumb, "md": made.medium, "fr": made.frame}
    info = probe_image(src, fmt, max_pixels=limits.max_pixels,
                       max_animation_pixels=limits.max_animation_pixels)
    rendered = media.render_image(src, info, work_dir=work, ext=ext, keep_metadata=True)
    return {"th": rendered.thumb, "md": rendered.medium}
