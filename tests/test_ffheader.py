"""ffmpeg's header text, including the forms that older ffmpeg versions print."""
from __future__ import annotations

import pytest

from imgz import ffheader

OLD_PHONE = """\
Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'IMG_0001.MOV':
  Metadata:
    major_brand     : qt  
    minor_version   : 0
    compatible_brands: qt  
    com.apple.quicktime.location.ISO6709: +48.8577+002.2950+035.000/
    com.apple.quicktime.make: Apple
  Duration: 00:01:05.03, start: 0.000000, bitrate: 17000 kb/s
    Stream #0:0(und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(tv, bt709), 1920x1080, 16900 kb/s, 29.99 fps, 29.97 tbr, 600 tbn, 1200 tbc (default)
    Metadata:
      rotate          : 90
      handler_name    : Core Media Video
    Side data:
      displaymatrix: rotation of -90.00 degrees
    Stream #0:1(und): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, stereo, fltp, 96 kb/s (default)
    Metadata:
      handler_name    : Core Media Audio
At least one output file must be specified
"""

ROTATE_TAG_ONLY = """\
Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'clip.mp4':
  Duration: 00:00:03.00, start: 0.000000, bitrate: 900 kb/s
    Stream #0:0(und): Video: hevc (Main) (hvc1 / 0x31637668), yuv420p(tv, bt709), 1280x720, 800 kb/s, 30 fps, 30 tbr, 600 tbn (default)
    Metadata:
      rotate          : 270
"""

NEW_STYLE = """\
Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'clip.mp4':
  Metadata:
    title           : First line
                    : second line
    comment         : a: b
  Duration: 00:00:02.70, start: 0.000000, bitrate: 248 kb/s
  Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(progressive), 320x240 [SAR 1:1 DAR 4:3], 170 kb/s, 10 fps, 10 tbr, 10240 tbn (default)
    Metadata:
      handler_name    : VideoHandler
    Side data:
      Display Matrix: rotation of 180.00 degrees
"""

WEBM_NO_DURATION = """\
Input #0, matroska,webm, from 'pipe.webm':
  Metadata:
    ENCODER         : Lavf63.1.102
    DESCRIPTION     : Upper case keys
  Duration: N/A, start: 0.000000, bitrate: N/A
  Stream #0:0: Video: vp9 (Profile 0), yuv420p(tv, progressive), 640x360, SAR 1:1 DAR 16:9, 30 fps, 30 tbr, 1k tbn
  Stream #0:1: Audio: opus, 48000 Hz, stereo, fltp
"""

ANAMORPHIC = """\
Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'dv.mov':
  Duration: 00:00:10.00, start: 0.000000, bitrate: 25000 kb/s
  Stream #0:0[0x1]: Video: dvvideo (dvcp / 0x70637664), yuv411p, 720x480 [SAR 8:9 DAR 4:3], 25000 kb/s, 29.97 fps (default)
"""

COVER_ART_FIRST = """\
Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'song.mp4':
  Metadata:
    Stream #0:9: Video: h264, 9999x9999 : a key that looks like a stream
  Duration: 00:00:04.00, start: 0.000000, bitrate: 128 kb/s
  Stream #0:0[0x1](und): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, stereo, fltp, 128 kb/s (default)
  Stream #0:1[0x0]: Video: mjpeg (Baseline), yuvj420p(pc, bt470bg/unknown/unknown), 600x600 [SAR 1:1 DAR 1:1], 90k tbr, 90k tbn (attached pic)
  Stream #0:2[0x2](und): Video: h264 (Main) (avc1 / 0x31637661), yuv420p(tv, bt709, progressive), 1920x1080 [SAR 1:1 DAR 16:9], 5000 kb/s, 25 fps (default)
"""

AUDIO_ONLY = """\
Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'sound.mp4':
  Duration: 00:00:00.50, start: 0.000000, bitrate: 70 kb/s
  Stream #0:0[0x1](und): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, mono, fltp, 69 kb/s (default)
"""


@pytest.mark.parametrize("text, expected", [
    (OLD_PHONE, dict(stream=0, video_codec="h264", size=(1080, 1920), rotation=90,
                     seconds=65.03, audio_codec="aac")),
    (ROTATE_TAG_ONLY, dict(stream=0, video_codec="hevc", size=(720, 1280), rotation=270,
                           seconds=3.0, audio_codec=None)),
    (NEW_STYLE, dict(stream=0, video_codec="h264", size=(320, 240), rotation=180,
                     seconds=2.7, audio_codec=None)),
    (WEBM_NO_DURATION, dict(stream=0, video_codec="vp9", size=(640, 360), rotation=0,
                            seconds=None, audio_codec="opus")),
    (ANAMORPHIC, dict(stream=0, video_codec="dvvideo", size=(640, 480), rotation=0,
                      seconds=10.0, audio_codec=None)),
    (COVER_ART_FIRST, dict(stream=2, video_codec="h264", size=(1920, 1080), rotation=0,
                           seconds=4.0, audio_codec="aac")),
    (AUDIO_ONLY, dict(stream=None, video_codec=None, size=(0, 0), rotation=0, seconds=0.5,
                      audio_codec="aac")),
], ids=["old phone", "rotate tag only", "new style", "webm without duration", "anamorphic",
        "cover art first", "audio only"])
def test_parse_header(text, expected):
    header = ffheader.parse_header(text)
    got = dict(stream=header.stream, video_codec=header.video_codec,
               size=ffheader.display_size(header), rotation=header.rotation,
               seconds=header.seconds, audio_codec=header.audio_codec)
    assert got == expected


@pytest.mark.parametrize("text, tags", [
    (OLD_PHONE, {"major_brand": "qt", "minor_version": "0", "compatible_brands": "qt",
                 "com.apple.quicktime.location.iso6709": "+48.8577+002.2950+035.000/",
                 "com.apple.quicktime.make": "Apple"}),
    (NEW_STYLE, {"title": "First line\nsecond line", "comment": "a: b"}),
    (WEBM_NO_DURATION, {"encoder": "Lavf63.1.102", "description": "Upper case keys"}),
    (ROTATE_TAG_ONLY, {}),
], ids=["old phone", "continued value", "upper case keys", "none"])
def test_parse_header_reads_container_tags_only(text, tags):
    got = {key: value.strip() for key, value in ffheader.parse_header(text).tags.items()}
    assert got == tags
