from __future__ import annotations

import dataclasses
import os
import subprocess
import time
from pathlib import Path

import imageio_ffmpeg
import pytest
from PIL import Image

import media as m
from imgz import filetype, media, video
from imgz.probe import MIME
from imgz.errors import InvalidVideo

TIMEOUT = 20.0
LOCATION = "+48.8577+002.2950/"


def write(tmp_path: Path, data: bytes, name: str = "upload") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def probe(tmp_path: Path, data: bytes, fmt: str | None = None) -> video.VideoProbe:
    path = write(tmp_path, data)
    return video.probe_video(path, fmt or filetype.sniff(path), timeout=TIMEOUT)


def render(tmp_path: Path, data: bytes, *, keep_metadata: bool = False,
           timeout: float = TIMEOUT) -> video.RenderedVideo:
    src = write(tmp_path, data)
    info = video.probe_video(src, filetype.sniff(src), timeout=TIMEOUT)
    work = tmp_path / "work"
    work.mkdir()
    return video.render_video(src, info, work_dir=work, keep_metadata=keep_metadata, max_pixels=10**8,
                              timeout=timeout)


def ffmpeg_header(path: Path) -> str:
    """What the bundled ffmpeg prints about a file, as a person would run it."""
    return subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                          capture_output=True, timeout=20).stderr.decode()


def opened(variant: media.Variant) -> Image.Image:
    im = Image.open(variant.path)
    assert im.format == "JPEG"
    assert im.size == (variant.width, variant.height)
    assert variant.size == variant.path.stat().st_size
    return im


def colour(im: Image.Image, x: float, y: float) -> str:
    r, g, b = im.convert("RGB").getpixel((int(x * (im.width - 1)), int(y * (im.height - 1))))
    return "red" if r > 200 and b < 60 else "blue" if b > 200 and r < 60 else f"{(r, g, b)}"


# ---------------------------------------------------------------------------------------------
# Probing real files

@pytest.mark.parametrize("fmt, codec", [("mp4", "h264"), ("webm", "vp9"), ("mov", "h264")])
def test_probe_reads_each_container(tmp_path, fmt, codec):
    info = probe(tmp_path, m.clip(fmt, size="320x240", seconds=1.2))
    assert (info.fmt, info.width, info.height, info.video_codec) == (fmt, 320, 240, codec)
    assert (info.duration, info.rotation, info.audio_codec) == (1, 0, None)
    assert info.seconds == pytest.approx(1.2, abs=0.05)


@pytest.mark.parametrize("fmt, codec", [("mp4", "aac"), ("webm", "opus"), ("mov", "aac")])
def test_probe_names_the_audio_codec(tmp_path, fmt, codec):
    assert probe(tmp_path, m.clip(fmt, audio=True)).audio_codec == codec


@pytest.mark.parametrize("seconds, duration", [(0.5, 0), (1.0, 1), (2.7, 2)])
def test_duration_is_truncated_to_whole_seconds(tmp_path, seconds, duration):
    info = probe(tmp_path, m.clip("mp4", seconds=seconds))
    assert info.duration == duration
    assert info.seconds == pytest.approx(seconds, abs=0.05)


def test_duration_of_a_piped_webm_comes_from_its_packets(tmp_path):
    data = m.clip("webm", seconds=2.7, piped=True)
    assert "Duration: N/A" in ffmpeg_header(write(tmp_path, data, "as-is.webm"))
    info = probe(tmp_path, data)
    assert info.duration == 2
    assert info.seconds == pytest.approx(2.7, abs=0.15)


@pytest.mark.parametrize("rotation, size", [(0, (320, 240)), (90, (240, 320)),
                                            (180, (320, 240)), (270, (240, 320))])
def test_probe_reports_display_size_and_rotation(tmp_path, rotation, size):
    info = probe(tmp_path, m.clip("mp4", size="320x240", rotation=rotation))
    assert info.rotation == rotation
    assert (info.width, info.height) == size


@pytest.mark.parametrize("fmt, tags, title, description", [
    ("mp4", {"title": "Harbour at dusk", "comment": "Shot from the pier"},
     "Harbour at dusk", "Shot from the pier"),
    ("mp4", {"description": "The description", "comment": "The comment"}, None,
     "The description"),
    ("webm", {"title": "Web title", "description": "Web description"}, "Web title",
     "Web description"),
    ("mov", {"title": "Movie title", "comment": "line one\nline two"}, "Movie title",
     "line one\nline two"),
    ("mp4", {"title": "   ", "comment": "default"}, None, None),
    ("mp4", {}, None, None),
])
def test_probe_reads_title_and_description(tmp_path, fmt, tags, title, description):
    info = probe(tmp_path, m.clip(fmt, tags=tags))
    assert (info.title, info.description) == (title, description)


@pytest.mark.parametrize("case", ["audio only", "truncated", "random bytes", "empty",
                                  "png", "wrong container"])
def test_unreadable_videos_are_invalid(tmp_path, case):
    data, fmt = {
        "audio only": (m.audio_only(), "mp4"),
        "truncated": (m.clip("mp4", size="320x240", seconds=1)[:3000], "mp4"),
        "random bytes": (os.urandom(5000), "mp4"),
        "empty": (b"", "webm"),
        "png": (m.png(32, 32), "mov"),
        # The demuxer follows the sniffed type, never ffmpeg's own guess.
        "wrong container": (m.clip("webm"), "mp4"),
    }[case]
    with pytest.raises(InvalidVideo) as caught:
        probe(tmp_path, data, fmt)
    assert (caught.value.status, caught.value.code) == (400, 100)
    assert caught.value.message == "Invalid video file provided"
    assert isinstance(caught.value.__cause__, video.FFmpegError)


def test_failure_keeps_ffmpegs_reason_for_the_log(tmp_path):
    with pytest.raises(InvalidVideo) as caught:
        probe(tmp_path, m.clip("mp4", size="320x240", seconds=1)[:3000], "mp4")
    assert "moov atom not found" in str(caught.value.__cause__)
    assert "moov" not in caught.value.message


def test_a_playlist_cannot_make_ffmpeg_read_other_files(tmp_path):
    secret = write(tmp_path, m.clip("mp4"), "secret.mp4")
    playlist = f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nfile:{secret}\n#EXT-X-ENDLIST\n"
    with pytest.raises(InvalidVideo):
        probe(tmp_path, playlist.encode(), "mp4")


def test_probe_times_out_quickly(tmp_path):
    path = write(tmp_path, m.clip("mp4"))
    started = time.monotonic()
    with pytest.raises(InvalidVideo) as caught:
        video.probe_video(path, "mp4", timeout=0.001)
    assert time.monotonic() - started < 1
    assert caught.value.message == video.TIMED_OUT
    assert caught.value.code == 100


# ---------------------------------------------------------------------------------------------
# Rendering: frame, thumb, medium

@pytest.mark.parametrize("size, rotation, frame, medium, thumb", [
    ("1280x720", 0, (1280, 720), (500, 281), (320, 320)),
    ("320x240", 0, (320, 240), None, (240, 240)),
    ("320x240", 90, (240, 320), None, (240, 240)),
    ("640x480", 270, (480, 640), None, (320, 320)),
    ("640x480", 0, (640, 480), (500, 375), (320, 320)),
])
def test_frame_and_variant_sizes(tmp_path, size, rotation, frame, medium, thumb):
    out = render(tmp_path, m.clip("mp4", size=size, rotation=rotation))
    assert opened(out.frame).size == frame
    assert out.frame.path == tmp_path / "work" / "frame.jpeg"
    assert (out.frame.ext, out.frame.mime) == ("jpeg", "image/jpeg")
    assert opened(out.thumb).size == thumb
    assert out.thumb.path == tmp_path / "work" / "thumb.jpeg"
    if medium is None:
        assert out.medium is None
    else:
        assert opened(out.medium).size == medium
        assert out.medium.path == tmp_path / "work" / "medium.jpeg"
    assert (out.original.width, out.original.height) == frame
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == sorted(
        ["original.mp4", "frame.jpeg", "thumb.jpeg"] + (["medium.jpeg"] if medium else []))


@pytest.mark.parametrize("sar, rotation, size", [
    ("4/3", 0, (427, 240)), ("4/3", 90, (240, 427)),
    ("8/9", 0, (284, 240)), ("8/9", 270, (240, 284)),
])
def test_non_square_pixels_are_squared_before_turning(tmp_path, sar, rotation, size):
    data = m.clip("mp4", size="320x240", sar=sar, rotation=rotation)
    assert (probe(tmp_path, data).width, probe(tmp_path, data).height) == size
    out = render(tmp_path, data)
    assert opened(out.frame).size == size
    assert (out.original.width, out.original.height) == size


@pytest.mark.parametrize("fmt", ["mp4", "webm", "mov"])
def test_each_container_renders(tmp_path, fmt):
    out = render(tmp_path, m.clip(fmt, size="320x240", audio=True))
    assert out.original.path == tmp_path / "work" / f"original.{fmt}"
    assert (out.original.ext, out.original.mime) == (fmt, MIME[fmt])
    assert out.original.size == out.original.path.stat().st_size
    assert filetype.sniff(out.original.path) == fmt
    assert opened(out.frame).size == (320, 240)


@pytest.mark.parametrize("rotation, top, bottom, left, right", [
    (0, "red", "blue", "red", "blue"),
    (90, "red", "blue", None, None),
    (180, "blue", "red", "blue", "red"),
    (270, "blue", "red", None, None),
])
def test_frame_stands_in_display_orientation(tmp_path, rotation, top, bottom, left, right):
    # The clip is red on its left half and blue on its right half.
    im = opened(render(tmp_path, m.clip("mp4", size="320x240", rotation=rotation,
                                        halves=True)).frame)
    if rotation in (90, 270):
        assert (colour(im, 0.5, 0.1), colour(im, 0.5, 0.9)) == (top, bottom)
    else:
        assert (colour(im, 0.1, 0.5), colour(im, 0.9, 0.5)) == (left, right)


def test_frame_is_taken_a_quarter_in(tmp_path):
    # Red for the first half second, then blue; a quarter of 4 s falls in the blue part.
    out = render(tmp_path, m.two_scenes(0.5, 3.5))
    assert colour(opened(out.frame), 0.5, 0.5) == "blue"


def test_a_seek_past_the_end_still_gives_a_frame(tmp_path):
    # A header that overstates the duration: the seek lands on the last keyframe.
    src = write(tmp_path, m.two_scenes(0.5, 3.5))
    info = video.probe_video(src, "mp4", timeout=TIMEOUT)
    lying = dataclasses.replace(info, seconds=400.0, duration=400)
    work = tmp_path / "work"
    work.mkdir()
    out = video.render_video(src, lying, work_dir=work, keep_metadata=False, timeout=TIMEOUT,
                             max_pixels=10**8)
    assert colour(opened(out.frame), 0.5, 0.5) == "blue"


def test_a_clip_under_a_second_renders(tmp_path):
    out = render(tmp_path, m.clip("mp4", size="320x240", seconds=0.2))
    assert opened(out.frame).size == (320, 240)


def test_piped_webm_renders_and_gains_a_duration(tmp_path):
    out = render(tmp_path, m.clip("webm", size="320x240", seconds=2.7, piped=True))
    assert "Duration: 00:00:02.7" in ffmpeg_header(out.original.path)


def test_render_times_out(tmp_path):
    started = time.monotonic()
    with pytest.raises(InvalidVideo) as caught:
        render(tmp_path, m.clip("mp4"), timeout=0.001)
    assert time.monotonic() - started < 2
    assert caught.value.message == video.TIMED_OUT


# ---------------------------------------------------------------------------------------------
# Metadata removal

PRIVATE_BYTES = [b"+48.8577", b"loci", b"\xa9xyz", b"ISO6709", b"My secret title",
                 b"My secret comment"]


@pytest.mark.parametrize("fmt, tags", [
    ("mp4", {"location": LOCATION, "title": "My secret title", "comment": "My secret comment"}),
    ("mov", {"location": LOCATION, "title": "My secret title"}),
    ("mov", {"com.apple.quicktime.location.ISO6709": "+48.8577+002.2950+035.000/",
             "com.apple.quicktime.title": "My secret title"}),
    ("webm", {"title": "My secret title", "comment": "My secret comment"}),
], ids=["mp4", "mov", "mov apple keys", "webm"])
def test_remux_drops_metadata_and_location(tmp_path, fmt, tags):
    data = m.clip(fmt, size="320x240", tags=tags, audio=True)
    assert any(secret in data for secret in PRIVATE_BYTES)  # the test clip does carry them
    out = render(tmp_path, data)
    assert out.changed
    stored = out.original.path.read_bytes()
    assert [secret for secret in PRIVATE_BYTES if secret in stored] == []
    header = ffmpeg_header(out.original.path)
    assert "location" not in header.lower() and "secret" not in header
    again = video.probe_video(out.original.path, fmt, timeout=TIMEOUT)
    assert (again.title, again.description) == (None, None)
    assert (again.video_codec, again.audio_codec) == (
        probe(tmp_path, data).video_codec, probe(tmp_path, data).audio_codec)


@pytest.mark.parametrize("fmt", ["mp4", "mov", "webm"])
def test_remux_keeps_the_rotation(tmp_path, fmt):
    out = render(tmp_path, m.clip(fmt, size="320x240", rotation=90, tags={"title": "x y"}))
    again = video.probe_video(out.original.path, fmt, timeout=TIMEOUT)
    assert (again.rotation, again.width, again.height) == (90, 240, 320)
    assert again.title is None


@pytest.mark.parametrize("fmt", ["mp4", "mov"])
def test_remux_puts_the_index_first(tmp_path, fmt):
    stored = render(tmp_path, m.clip(fmt, size="320x240")).original.path.read_bytes()
    assert stored.index(b"moov") < stored.index(b"mdat")


def test_keep_metadata_stores_the_upload_as_is(tmp_path):
    data = m.clip("mp4", tags={"title": "Kept title", "location": LOCATION})
    out = render(tmp_path, data, keep_metadata=True)
    assert not out.changed
    assert out.original.path.read_bytes() == data
    assert opened(out.frame).size == (64, 48)


# Tracks beside the picture and the sound: what drones, dashcams and editors add.
SUBTITLE = "1\n00:00:00,000 --> 00:00:01,000\nGPS 52.3702N 4.8952E secretsub\n"
CHAPTERS = ";FFMETADATA1\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=200\ntitle=secretchapter\n"
_SUBTITLE_CODEC = {"mp4": "mov_text", "mov": "mov_text", "webm": "webvtt"}
_CODECS = {"mp4": (["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"], ["-c:a", "aac"]),
           "mov": (["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"], ["-c:a", "aac"]),
           "webm": (["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8"], ["-c:a", "libopus"])}


def crowded_clip(tmp_path: Path, fmt: str, *, subtitle: bool = True, timecode: bool = False,
                 chapters: bool = False, rotation: int = 90) -> bytes:
    """A clip with a subtitle track (a GPS line), a timecode data track, chapters and stream
    tags, as asked, made by the bundled ffmpeg from files written here."""
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    (tmp_path / "s.srt").write_text(SUBTITLE)
    (tmp_path / "chapters.txt").write_text(CHAPTERS)
    video_args, audio_args = _CODECS[fmt]
    # -display_rotation counts anticlockwise; -noautorotate keeps the encoder from turning the
    # pixels, so the rotation reaches the file as a display matrix, as phones write it
    args = [ffmpeg, "-v", "error", "-y", "-noautorotate", "-display_rotation", str(-rotation),
            "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=10", "-f", "lavfi", "-i", "sine=duration=0.5"]
    maps = ["-map", "0", "-map", "1"]
    extra: list[str] = []
    inputs = 2
    if subtitle:
        args += ["-i", str(tmp_path / "s.srt")]
        maps += ["-map", str(inputs)]
        extra += ["-c:s", _SUBTITLE_CODEC[fmt]]
        inputs += 1
    if chapters:
        args += ["-i", str(tmp_path / "chapters.txt")]
        extra += ["-map_chapters", str(inputs)]
        inputs += 1
    if timecode:
        extra += ["-timecode", "01:02:03:04"]
    out = tmp_path / f"crowded.{fmt}"
    subprocess.run([*args, *maps, "-frames:v", "5", *video_args, *audio_args, *extra,
                    "-metadata:s:v:0", "title=secretstream", "-metadata:s:a:0", "title=secretaudio",
                    "-f", fmt, str(out)], check=True, capture_output=True, timeout=60)
    return out.read_bytes()


def streams(header: str) -> list[str]:
    """The kinds of the streams ffmpeg lists: 'Video', 'Audio', 'Subtitle', 'Data'..."""
    return [line.split(": ")[1] for line in header.splitlines()
            if line.strip().startswith("Stream #") and ": " in line]


CROWDED = [
    ("mp4", dict(subtitle=True)), ("mov", dict(subtitle=True)), ("webm", dict(subtitle=True)),
    ("mp4", dict(subtitle=False, timecode=True)), ("mov", dict(subtitle=False, timecode=True)),
    ("mp4", dict(subtitle=True, timecode=True, chapters=True)),
    ("mov", dict(subtitle=True, chapters=True)), ("webm", dict(subtitle=True, chapters=True)),
]


@pytest.mark.parametrize("fmt, tracks", CROWDED,
                         ids=[f"{f}-{'+'.join(k for k, v in t.items() if v)}" for f, t in CROWDED])
def test_remux_keeps_only_video_and_audio(tmp_path, fmt, tracks):
    data = crowded_clip(tmp_path, fmt, **tracks)
    before = ffmpeg_header(write(tmp_path, data, "before"))
    kinds = streams(before)
    assert "Subtitle" in kinds or "Data" in kinds or "Chapter" in before  # it carries an extra
    out = render(tmp_path, data)
    stored = out.original.path.read_bytes()
    assert b"secret" not in stored and b"GPS" not in stored and b"01:02:03" not in stored
    header = ffmpeg_header(out.original.path)
    assert streams(header) == ["Video", "Audio"]
    assert "Chapter" not in header
    again = video.probe_video(out.original.path, fmt, timeout=TIMEOUT)
    assert (again.rotation, again.width, again.height) == (90, 240, 320)
    decoded = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i",
                              str(out.original.path), "-f", "null", "-"], capture_output=True,
                             timeout=60)
    assert decoded.returncode == 0 and not decoded.stderr
