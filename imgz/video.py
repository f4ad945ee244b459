"""Read and render videos with the ffmpeg binary that imageio-ffmpeg ships (it has no ffprobe).

ffmpeg only ever opens a file on disk, with the demuxer forced from the sniffed type and only
the file protocol allowed, so a crafted upload cannot make it read other files or the network.
The ``timeout`` of each public function bounds all the ffmpeg runs it makes together.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path

import imageio_ffmpeg

from imgz import exif, media, mp4strip, worker
from imgz.ffheader import Header, display_size, parse_header
from imgz.probe import MIME, probe_image
from imgz.errors import ImageTooLarge, InvalidImage, InvalidVideo, TooComplex

TIMED_OUT = "Invalid video file provided: processing timed out"

_DEMUXER = {"mp4": "mov", "mov": "mov", "webm": "matroska"}
_MUXER = {"mp4": "mp4", "mov": "mov", "webm": "webm"}
_INPUT = ["-protocol_whitelist", "file"]
# JPEG means full-range BT.601; most video is limited-range BT.709, and this mjpeg refuses
# limited range outright.
_JPEG_SCALE = "out_color_matrix=bt601:out_range=full"
_STDERR_TAIL = 2000
_TIME_RE = re.compile(r"^out_time_us=(\d+)\s*$", re.MULTILINE)
# What ffmpeg's decoders say of a picture past -max_pixels
_TOO_LARGE = re.compile(rb"Picture size \d+x\d+ (?:is invalid|exceeds)")


class FFmpegError(Exception):
    """What went wrong inside ffmpeg, for the log: the step, exit status and stderr tail.

    Raised as the ``__cause__`` of InvalidVideo; clients only ever see InvalidVideo's message.
    """

    def __init__(self, step: str, status: int | str, stderr: bytes | str | None = b"") -> None:
        if isinstance(stderr, bytes):
            stderr = stderr.decode("utf-8", "replace")
        self.step = step
        self.status = f"exit {status}" if isinstance(status, int) else status
        self.stderr_tail = (stderr or "")[-_STDERR_TAIL:].strip()
        super().__init__(f"ffmpeg {step}: {self.status}: {self.stderr_tail or '(no output)'}")


@dataclass(frozen=True)
class VideoProbe:
    """What ffmpeg says of a video's header (and of its packets when it states no duration)."""

    fmt: str                  # 'mp4' | 'webm' | 'mov', from filetype.sniff
    width: int                # display size: sample aspect ratio and rotation applied
    height: int
    duration: int             # whole seconds, truncated
    seconds: float
    video_codec: str
    audio_codec: str | None
    rotation: int             # clockwise degrees: 0, 90, 180 or 270
    title: str | None
    description: str | None   # 'description', else 'comment'
    stream: int = 0           # index of the first real video stream (cover art is skipped)


@dataclass(frozen=True)
class RenderedVideo:
    """The files render_video wrote into its work_dir."""

    original: media.Variant   # remuxed without metadata, the upload blanked as it arrived, or a
    changed: bool             # plain copy with keep_metadata
    frame: media.Variant      # frame.jpeg, in display orientation
    thumb: media.Variant
    medium: media.Variant | None
    md5: str | None = None    # of the original, when computed as it was written


# ---------------------------------------------------------------------------------------------
# Running ffmpeg

def _run(step: str, args: list[str], deadline: float) -> subprocess.CompletedProcess[bytes]:
    left = deadline - time.monotonic()
    if left <= 0:
        raise InvalidVideo(TIMED_OUT) from FFmpegError(step, "timed out")
    cpu = worker.cpu_left()
    if cpu is not None and cpu <= 0:
        raise TooComplex() from FFmpegError(step, "no CPU budget left")
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", *args]
    try:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL)
    except OSError as exc:
        raise InvalidVideo() from FFmpegError(step, "could not start", str(exc))
    with proc:
        # In a media worker ffmpeg spends the upload's CPU budget too.
        worker.limit_program(proc.pid)
        try:
            out, err = proc.communicate(timeout=left)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise InvalidVideo(TIMED_OUT) from FFmpegError(step, "timed out", err)
    # ffmpeg ends itself on SIGXCPU, with an exit status of its own: what tells is the budget.
    cpu = worker.cpu_left()
    if proc.returncode == -signal.SIGXCPU or (cpu is not None and cpu <= 0):
        raise TooComplex() from FFmpegError(step, "past its CPU budget", err)
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def _source(path: Path, fmt: str) -> list[str]:
    return [*_INPUT, "-f", _DEMUXER[fmt], "-i", f"file:{path}"]


# ---------------------------------------------------------------------------------------------
# Reading a video

def _read_header(path: Path, fmt: str, deadline: float, step: str) -> Header:
    # Without an output ffmpeg exits 1 ("At least one output file must be specified"): normal.
    result = _run(step, _source(path, fmt), deadline)
    stderr = result.stderr.decode("utf-8", "replace")
    header = parse_header(stderr)
    if header.stream is None or header.width <= 0 or header.height <= 0:
        status = "no video stream" if "Input #0" in stderr else result.returncode
        raise InvalidVideo() from FFmpegError(step, status, stderr)
    return header


def _scan_seconds(path: Path, fmt: str, stream: int, deadline: float) -> float:
    """The duration a header does not state, from the packet times: copying reads, never decodes."""
    result = _run("duration scan", ["-v", "error", "-nostats", *_source(path, fmt),
                                    "-map", f"0:{stream}", "-c", "copy", "-progress", "pipe:1",
                                    "-f", "null", "-"], deadline)
    times = _TIME_RE.findall(result.stdout.decode("ascii", "replace"))
    if result.returncode != 0 or not times:
        raise InvalidVideo() from FFmpegError("duration scan", result.returncode, result.stderr)
    return int(times[-1]) / 1_000_000


def probe_video(path: Path, fmt: str, *, timeout: float) -> VideoProbe:
    """Read a video's size, duration, codecs, rotation, title and description.

    Raises InvalidVideo when ffmpeg cannot read it, it has no video stream, or time runs out.
    """
    if fmt not in _DEMUXER:
        raise InvalidVideo()
    deadline = time.monotonic() + timeout
    header = _read_header(path, fmt, deadline, "probe")
    assert header.stream is not None and header.video_codec is not None
    seconds = header.seconds
    if seconds is None:
        seconds = _scan_seconds(path, fmt, header.stream, deadline)
    seconds = max(0.0, seconds)
    width, height = display_size(header)
    tags = header.tags
    return VideoProbe(
        fmt=fmt, width=width, height=height, duration=int(seconds), seconds=seconds,
        video_codec=header.video_codec, audio_codec=header.audio_codec,
        rotation=header.rotation, title=exif.meaningful(tags.get("title")),
        description=(exif.meaningful(tags.get("description"))
                     or exif.meaningful(tags.get("comment"))),
        stream=header.stream)


# ---------------------------------------------------------------------------------------------
# Rendering: the stored original, the frame, and the frame's thumb and medium

def _remux(src: Path, probe: VideoProbe, dest: Path, deadline: float) -> None:
    """Copy the streams into a fresh container without metadata, keeping the rotation.

    An allow-list (SPEC §3): only video streams that are no attached picture (``0:V``) and audio
    streams stay. Subtitle, data and timed-metadata tracks go (drones and dashcams write GPS
    there), as do cover art, attachments, chapters and every container and stream tag. The
    display matrix is stream side data, not metadata, so it survives ``-map_metadata -1``; the
    result is read back to make sure, and set explicitly if lost.
    """
    output = ["-map", "0:V", "-map", "0:a?", "-c", "copy", "-map_metadata", "-1",
              "-map_metadata:s", "-1", "-map_chapters", "-1", "-fflags", "+bitexact",
              *(["-movflags", "+faststart", "-write_tmcd", "0"]
                if probe.fmt in ("mp4", "mov") else []),
              "-f", _MUXER[probe.fmt], f"file:{dest}"]
    rotate: list[str] = []
    for attempt in range(2):
        result = _run("remux", ["-v", "error", "-y", *rotate, *_source(src, probe.fmt), *output],
                      deadline)
        if result.returncode != 0 or not dest.is_file() or not dest.stat().st_size:
            raise InvalidVideo() from FFmpegError("remux", result.returncode, result.stderr)
        if probe.rotation == 0 or attempt:
            return  # no rotation to lose
        if _read_header(dest, probe.fmt, deadline, "remux check").rotation == probe.rotation:
            return
        rotate = ["-display_rotation:v:0", str(-probe.rotation)]


def _frame_args(src: Path, probe: VideoProbe, dest: Path, at: float | None,
                max_pixels: int) -> list[str]:
    seek = ["-ss", f"{at:.3f}", "-noaccurate_seek"] if at else []
    # A stream may change its size after the header: the decoder refuses any picture past the
    # limit, so none is ever allocated (the header's size was checked already).
    seek += ["-max_pixels", str(max_pixels)]
    # ffmpeg turns the frame upright itself (autorotate) before this filter runs. Players
    # stretch the coded width to square the pixels, then rotate: after a quarter turn that
    # width is the height, and the turned frame's aspect ratio is inverted.
    square = "w=iw:h='round(ih/sar)'" if probe.rotation in (90, 270) else "w='round(iw*sar)':h=ih"
    vf = f"scale={square}:{_JPEG_SCALE},setsar=1,format=yuv420p"
    return ["-v", "error", "-y", *seek, *_source(src, probe.fmt), "-map", f"0:{probe.stream}",
            # passthrough: emit the keyframe the seek landed on instead of decoding on to the
            # exact instant (that frame is fine, and it halves the time on long GOPs)
            "-frames:v", "1", "-fps_mode", "passthrough", "-vf", vf, "-q:v", "2", "-fflags", "+bitexact",
            "-flags:v", "+bitexact", "-f", "image2", "-update", "1", f"file:{dest}"]


def _extract_frame(src: Path, probe: VideoProbe, dest: Path, deadline: float,
                   max_pixels: int) -> None:
    """One frame at a quarter of the duration; the first frame when a seek finds nothing.

    A stream whose pictures grow past ``max_pixels`` raises ImageTooLarge.
    """
    at = probe.seconds / 4
    result = None
    for position in ((at, None) if at >= 0.001 else (None,)):
        dest.unlink(missing_ok=True)
        result = _run("frame", _frame_args(src, probe, dest, position, max_pixels), deadline)
        if result.returncode == 0 and dest.is_file() and dest.stat().st_size:
            return
        if _TOO_LARGE.search(result.stderr):
            # not a seek that found nothing: the stream grew past the limit after its header
            raise ImageTooLarge() from FFmpegError("frame", result.returncode, result.stderr)
    assert result is not None
    raise InvalidVideo() from FFmpegError("frame", result.returncode, result.stderr)


def _frame_variants(frame: Path, work_dir: Path, max_pixels: int
                    ) -> tuple[media.Variant, media.Variant, media.Variant | None]:
    """The frame as a Variant, and its thumb and medium made by the image code.

    The frame is held to the pixel limit too: its size is what the stream really had, which
    a header may have understated.
    """
    sub = work_dir / "frame-variants"
    sub.mkdir(exist_ok=True)
    try:
        info = probe_image(frame, "jpeg", max_pixels=max_pixels, max_animation_pixels=max_pixels)
        rendered = media.render_image(frame, info, work_dir=sub, ext="jpeg")
        thumb = _move(rendered.thumb, work_dir / "thumb.jpeg")
        medium = _move(rendered.medium, work_dir / "medium.jpeg") if rendered.medium else None
    except InvalidImage as exc:
        raise InvalidVideo() from exc
    finally:
        shutil.rmtree(sub, ignore_errors=True)
    size = (info.width, info.height)
    frame_variant = media.Variant(frame, "jpeg", MIME["jpeg"], *size, frame.stat().st_size)
    return frame_variant, thumb, medium


def _move(variant: media.Variant, dest: Path) -> media.Variant:
    variant.path.replace(dest)
    return replace(variant, path=dest)


def _link_or_copy(src: Path, dest: Path) -> None:
    """The same file under a second name (nothing writes to either), or a copy across devices."""
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


def read_tags(boxes: bytes, work_dir: Path, *, timeout: float) -> tuple[str | None, str | None]:
    """The title and description in container metadata boxes kept as they arrived (mp4strip):
    ffmpeg reads them from a ``moov`` holding only them, so the tags mean what they meant in
    the whole file."""
    if not boxes:
        return None, None
    side = work_dir / "tags.mov"
    side.write_bytes((8 + len(boxes)).to_bytes(4, "big") + b"moov" + boxes)
    try:
        result = _run("tags", _source(side, "mov"), time.monotonic() + timeout)
    finally:
        side.unlink(missing_ok=True)
    tags = parse_header(result.stderr.decode("utf-8", "replace")).tags
    return (exif.meaningful(tags.get("title")),
            exif.meaningful(tags.get("description")) or exif.meaningful(tags.get("comment")))


def render_video(src: Path, probe: VideoProbe, *, work_dir: Path, keep_metadata: bool,
                 timeout: float, max_pixels: int,
                 cleaned: mp4strip.Cleaned | None = None) -> RenderedVideo:
    """Write original.<fmt>, frame.jpeg, thumb.jpeg and, when due, medium.jpeg into work_dir.

    ``cleaned`` says src already lost its container metadata as it arrived: it becomes the
    original as it is (a link), unless a track must go, when it is remuxed. The frame is taken
    from the original. Raises InvalidVideo when ffmpeg fails or time runs out; what it wrote
    stays in work_dir.
    """
    deadline = time.monotonic() + timeout
    original = work_dir / f"original.{probe.fmt}"
    md5 = None
    changed = not keep_metadata
    if keep_metadata:
        _link_or_copy(src, original)
    elif cleaned is not None and not cleaned.needs_remux:
        _link_or_copy(src, original)
        changed, md5 = cleaned.changed, cleaned.md5
    else:
        _remux(src, probe, original, deadline)
        probe = replace(probe, stream=0)  # the remux puts the video first
    frame_path = work_dir / "frame.jpeg"
    _extract_frame(original, probe, frame_path, deadline, max_pixels)
    frame, thumb, medium = _frame_variants(frame_path, work_dir, max_pixels)
    # The frame's size is what players show; it equals the probe's unless the header misled.
    stored = media.Variant(original, probe.fmt, MIME[probe.fmt], frame.width, frame.height,
                           original.stat().st_size)
    return RenderedVideo(stored, changed, frame, thumb, medium, md5)
