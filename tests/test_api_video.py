"""Video uploads end to end: each container, the frame and its sizes, rotation, metadata, errors."""
from __future__ import annotations

import hashlib
import io
import re
import subprocess

import imageio_ffmpeg
import pytest
from PIL import Image

import media
from contract import assert_error, assert_image_object, assert_upload_ok

CLIPS = {
    "mp4": dict(fmt="mp4", size="640x360", seconds=2.0),
    "webm": dict(fmt="webm", size="640x360", seconds=2.0),
    "mov": dict(fmt="mov", size="320x240", seconds=1.0),
    "webm-piped": dict(fmt="webm", size="320x240", seconds=2.7, piped=True),
    "half-second": dict(fmt="mp4", size="320x240", seconds=0.5),
    "rotated-90": dict(fmt="mp4", size="320x240", seconds=1.0, rotation=90),
    "location": dict(fmt="mp4", size="320x240", seconds=1.0,
                     tags={"location": "+48.8577+002.2950/", "title": "Eiffel at noon"}),
}
# container, display size, duration, whether a medium exists
EXPECTED = {
    "mp4": ("mp4", (640, 360), 2, True),
    "webm": ("webm", (640, 360), 2, True),
    "mov": ("mov", (320, 240), 1, False),
    "webm-piped": ("webm", (320, 240), 2, False),
    "half-second": ("mp4", (320, 240), 0, False),
    "rotated-90": ("mp4", (240, 320), 1, False),
    "location": ("mp4", (320, 240), 1, False),
}
MIMES = {"mp4": "video/mp4", "webm": "video/webm", "mov": "video/quicktime"}


def _jpeg_size(server, url: str) -> tuple[int, int]:
    response = server.get(url)
    assert response.status_code == 200 and response.headers["Content-Type"] == "image/jpeg"
    im = Image.open(io.BytesIO(response.content))
    assert im.format == "JPEG"
    return im.size


@pytest.mark.parametrize("name", list(CLIPS))
def test_video_upload(server, name):
    data = media.clip(**CLIPS[name])
    ext, (w, h), duration, has_medium = EXPECTED[name]
    image = assert_upload_ok(server.upload(data, filename=f"clip-{name}.{ext}"))
    assert_image_object(image, kind="video")
    assert image["extension"] == ext and image["mime"] == MIMES[ext]
    assert (image["width"], image["height"]) == (w, h)
    assert image["duration"] == duration
    assert image["duration_time"] == f"00:{duration:02d}"
    assert image["chain"] == (23 if has_medium else 21)
    assert image["url_frame"] == image["frame"]["url"] and image["frame"]["extension"] == "jpeg"
    assert image["frame"]["filename"] == image["name"] + ".fr.jpeg"
    assert image["thumb"]["filename"] == image["name"] + ".th.jpeg"
    assert _jpeg_size(server, image["url_frame"]) == (w, h)
    side = min(320, w, h)
    assert _jpeg_size(server, image["thumb"]["url"]) == (side, side)
    if has_medium:
        assert _jpeg_size(server, image["medium"]["url"]) == (500, round(h * 500 / w))
        assert image["display_url"] == image["medium"]["url"]
    else:
        assert image["medium_size"] == 0 and image["display_url"] == image["url_frame"]
        assert (image["display_width"], image["display_height"]) == (w, h)
    stored = server.get(image["url"])
    assert stored.headers["Content-Type"] == MIMES[ext]
    assert hashlib.md5(stored.content).hexdigest() == image["checksum"]
    assert image["url_viewer"].startswith(server.url + "/clip/")
    assert image["frame_size"] == len(server.get(image["url_frame"]).content)


def _ffmpeg_header(data: bytes, tmp_path) -> str:
    path = tmp_path / "stored.mp4"
    path.write_bytes(data)
    result = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                            capture_output=True, text=True, timeout=30)
    return result.stderr


def test_location_tag_is_gone_and_title_kept(server, tmp_path):
    image = assert_upload_ok(server.upload(media.clip(**CLIPS["location"]), filename="paris.mp4"))
    assert image["title"] == "Eiffel at noon"
    stored = server.get(image["url"]).content
    assert b"48.8577" not in stored and b"Eiffel" not in stored
    header = _ffmpeg_header(stored, tmp_path)
    assert not re.search(r"^\s*location\S*\s*:", header, re.M) and "48.8577" not in header
    assert image["source_checksum"] is not None


def test_rotation_is_kept_in_the_stored_file(server, tmp_path):
    image = assert_upload_ok(server.upload(media.clip(**CLIPS["rotated-90"]), filename="phone.mp4"))
    header = _ffmpeg_header(server.get(image["url"]).content, tmp_path)
    assert "rotation of -90" in header or "rotate" in header


def test_title_from_the_file_name(server):
    image = assert_upload_ok(server.upload(media.clip("mp4", size="64x48", seconds=0.4),
                                           filename="Badgers _ animated music video _ MrWeebl.mp4"))
    assert image["title"] == "Badgers animated music video MrWeebl"
    assert image["path_viewer"] == f"/clip/Badgers-animated-music-video-MrWeebl.{image['id_encoded']}"


def test_video_route_redirects_to_clip(server):
    image = assert_upload_ok(server.upload(media.clip("mp4", size="64x48", seconds=0.4)))
    response = server.get(f"/video/{image['id_encoded']}")
    assert response.status_code == 302 and "/clip/" in response.headers["Location"]
    wrong_route = server.get(f"/image/{image['id_encoded']}")
    assert wrong_route.status_code == 302
    assert wrong_route.headers["Location"].endswith(image["path_viewer"])


def test_ranges_on_a_video(server):
    image = assert_upload_ok(server.upload(media.clip("mp4", size="320x240", seconds=2.0)))
    whole = server.get(image["url"]).content
    part = server.get(image["url"], headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == whole[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(whole)}"
    suffix = server.get(image["url"], headers={"Range": "bytes=-50"})
    assert suffix.status_code == 206 and suffix.content == whole[-50:]
    beyond = server.get(image["url"], headers={"Range": f"bytes={len(whole)}-"})
    assert beyond.status_code == 416 and beyond.headers["Content-Range"] == f"bytes */{len(whole)}"


def _truncated_mp4() -> bytes:
    data = media.clip("mp4", size="320x240", seconds=1.0)
    return data[: len(data) // 3]


BAD_VIDEOS = {
    "truncated-mp4": _truncated_mp4,
    "random-bytes-named-mp4": lambda: b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 40,
    "audio-only-mp4": lambda: media.audio_only(),
}


@pytest.mark.parametrize("name", list(BAD_VIDEOS))
def test_bad_video(server, name):
    rows, files = server.rows(), server.stored_files()
    response = server.upload(BAD_VIDEOS[name](), filename="bad.mp4")
    assert_error(response, 400, 100, "Invalid video file provided")
    assert server.rows() == rows and server.stored_files() == files and server.tmp_files() == []


def test_ffmpeg_over_its_timeout_is_a_clean_error(make_app):
    srv = make_app(ffmpeg_timeout="0.001")
    response = srv.upload(media.clip("mp4", size="320x240", seconds=1.0), filename="slow.mp4")
    assert_error(response, 400, 100)
    assert "timed out" in response.json()["error"]["message"]
    assert srv.rows() == 0 and srv.stored_files() == [] and srv.tmp_files() == []
    assert srv.request("GET", "/", timeout=5).status_code == 200
