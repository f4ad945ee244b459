"""Read the description of a media file that ``ffmpeg -i FILE`` prints on stderr.

The bundled ffmpeg has no ffprobe, so its human-readable header is the only source: container
tags, duration, and the codec, coded size, sample aspect ratio and rotation of the first real
video stream. Only parsing lives here; running ffmpeg is ``video.py``'s job.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

_DURATION_RE = re.compile(r"Duration: (?:N/A|(\d+):(\d\d):(\d\d(?:\.\d+)?))")
_STREAM_RE = re.compile(r"Stream #0:(\d+)[^:]*: (\w+): (\S.*)")
_SIZE_RE = re.compile(r"(\d+)x(\d+)\b")
_SAR_RE = re.compile(r"\bSAR (\d+):(\d+)")
_MATRIX_RE = re.compile(r"display ?matrix: rotation of (-?\d+(?:\.\d+)?) degrees", re.IGNORECASE)
_ROTATE_TAG_RE = re.compile(r"^\s+rotate\s*: (-?\d+(?:\.\d+)?)\s*$", re.MULTILINE)
_TAG_RE = re.compile(r"(\S.*?)\s*:(?: (.*))?")
_CONTINUED_RE = re.compile(r"\s+:(?: (.*))?")


@dataclass(frozen=True)
class Header:
    """The parts of ffmpeg's description of input #0 that matter here."""

    tags: dict[str, str]          # container metadata, keys lower-cased
    seconds: float | None         # None for "Duration: N/A"
    stream: int | None            # first video stream that is not cover art
    video_codec: str | None
    width: int
    height: int                   # as coded, before the aspect ratio and rotation
    sar: tuple[int, int]
    rotation: int
    audio_codec: str | None


def _sections(text: str) -> list[tuple[str, list[str]]]:
    """Input #0's description cut into its parts: (kind, lines), kind being 'tags' (lines: the
    container's metadata), 'duration', 'stream' or 'other' (lines: the head, then those under it).

    Indentation changed between ffmpeg versions (streams sat under Duration before 6.0), so a
    part is recognised by its head's text. ffmpeg always prints Duration before the streams;
    only stream lines after it count, so an odd metadata key cannot pose as a stream.
    """
    sections: list[tuple[str, list[str]]] = []
    state = None
    for line in text.splitlines():
        body = line.strip()
        if state is None:
            state = "input" if line.startswith("Input #0") else None
        elif line.startswith(("Output #", "Stream mapping", "Input #")):
            break
        elif not line.startswith(" "):
            continue  # a log line from a demuxer or decoder
        elif state == "input" and body == "Metadata:" and not sections:
            sections.append(("tags", []))
        elif state == "input" and line.startswith("  Duration: "):
            sections.append(("duration", [body]))
            state = "streams"
        elif state == "streams" and _STREAM_RE.match(body):
            sections.append(("stream", [body]))
        elif state == "streams" and body.startswith(("Chapters:", "Program ")):
            sections.append(("other", [body]))
        elif sections:
            sections[-1][1].append(line)
    return sections


def _tags(lines: list[str]) -> dict[str, str]:
    tags: dict[str, str] = {}
    key = None
    for line in lines:
        if (more := _CONTINUED_RE.fullmatch(line)) and key is not None:
            tags[key] += "\n" + (more.group(1) or "")
        elif match := _TAG_RE.fullmatch(line.strip()):
            key = match.group(1).lower()
            tags.setdefault(key, match.group(2) or "")
    return tags


def _top_level(text: str) -> list[str]:
    """Split at commas outside brackets: 'yuv420p(tv, bt709)' stays one part."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


def _rotation(lines: list[str]) -> int:
    """Clockwise degrees; the display matrix counts anticlockwise, the old 'rotate' tag not."""
    text = "\n".join(lines)
    if match := _MATRIX_RE.search(text):
        degrees = -float(match.group(1))
    elif match := _ROTATE_TAG_RE.search(text):
        degrees = float(match.group(1))
    else:
        return 0
    return round(degrees / 90) % 4 * 90


def parse_header(text: str) -> Header:
    """Read ffmpeg's stderr for ``-i FILE``: container tags, duration and the first streams."""
    tags: dict[str, str] = {}
    seconds: float | None = None
    video: tuple[int, str, int, int, tuple[int, int], int] | None = None
    audio_codec = None
    for kind, lines in _sections(text):
        if kind == "tags":
            tags = _tags(lines)
        elif kind == "duration" and (match := _DURATION_RE.match(lines[0])):
            if match.group(1) is not None:
                h, m, sec = match.groups()
                seconds = int(h) * 3600 + int(m) * 60 + float(sec)
        elif kind == "stream" and (match := _STREAM_RE.match(lines[0])):
            index, codec_type, rest = int(match.group(1)), match.group(2), match.group(3)
            if codec_type == "Audio" and audio_codec is None:
                audio_codec = rest.split(maxsplit=1)[0].rstrip(",")
            if codec_type != "Video" or video is not None or "(attached pic)" in rest:
                continue
            parts = _top_level(rest)
            size = next((m for part in parts[1:] if (m := _SIZE_RE.match(part))), None)
            if size is None or not parts[0]:
                continue
            sar_match = _SAR_RE.search(rest)
            sar = (int(sar_match.group(1)), int(sar_match.group(2))) if sar_match else (1, 1)
            video = (index, parts[0].split(maxsplit=1)[0], int(size.group(1)),
                     int(size.group(2)), sar, _rotation(lines[1:]))
    if video is None:
        return Header(tags, seconds, None, None, 0, 0, (1, 1), 0, audio_codec)
    index, codec, width, height, sar, rotation = video
    return Header(tags, seconds, index, codec, width, height, sar, rotation, audio_codec)


def display_size(header: Header) -> tuple[int, int]:
    """Width and height as a player shows them: sample aspect ratio, then rotation, applied."""
    width, height = header.width, header.height
    num, den = header.sar
    if num > 0 and den > 0 and num != den:
        width = max(1, math.floor(width * num / den + 0.5))
    return (height, width) if header.rotation in (90, 270) else (width, height)
