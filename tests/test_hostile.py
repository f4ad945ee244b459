"""Hostile input: bombs, damaged files, polyglots, hostile parameters and bodies, hostile URL
sources and access attempts, sent to the app in this process; what only a socket can send (lying
lengths, broken framing, stalled bodies) goes to the same server in a process of its own.

Every refusal is the precise error of SPEC §2 and leaves nothing behind (no row, no stored file,
an empty ``tmp``), and the server answers normally afterwards. Where hostile input is accepted,
what is stored is checked instead.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import http.client
import io
import json
import os
import random
import re
import shutil
import socket
import struct
import subprocess
import threading
import time
import unicodedata
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator
from urllib.parse import quote

import pytest
import requests
from PIL import Image
from requests.structures import CaseInsensitiveDict

import media
from conftest import LiveServer
from contract import assert_error, assert_upload_ok
from inprocess import Helpers, InProcess

LIMIT = 200_000                  # IMGZ_MAX_UPLOAD_MB=0.2 is exactly this many bytes
TOO_BIG = "File too big - max 0.2 MB"
ANIMATION_LIMIT = 1_000_000      # IMGZ_MAX_ANIMATION_PIXELS, frames x width x height
URL_TIMEOUT = 1
SAFE_NAME = re.compile(r"[A-Za-z0-9_-]+")
BOUNDARY = b"hostile-b0undary"
PNG = media.png(32, 24)


# ---------------------------------------------------------------------------------------------
# Servers and the "nothing stored" check

HOSTILE_ENV = {"IMGZ_MAX_UPLOAD_MB": "0.2", "IMGZ_MAX_ANIMATION_PIXELS": str(ANIMATION_LIMIT),
               "IMGZ_URL_ALLOW_NETS": "127.0.0.1/32", "IMGZ_URL_TIMEOUT": str(URL_TIMEOUT),
               "IMGZ_PUBLIC_TAGS": "1"}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> Iterator[InProcess]:
    srv = InProcess(tmp_path_factory.mktemp("hostile"), HOSTILE_ENV)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def hostile_live(tmp_path_factory) -> Iterator[LiveServer]:
    """The same server in a process of its own, for requests only a socket can send."""
    srv = LiveServer(tmp_path_factory.mktemp("hostile-live"), HOSTILE_ENV)
    yield srv
    srv.stop()


def assert_still_answers(srv: Helpers) -> None:
    response = srv.request("GET", "/", timeout=5)
    assert response.status_code == 200


def data_entries(srv: Helpers) -> list[str]:
    """What the data dir holds at its top, less what the server makes on its own schedule."""
    own = {"expiry.lock", "imgz.db-wal", "imgz.db-shm", "imgz.db-journal"}
    return sorted(p.name for p in srv.data.iterdir() if p.name not in own)


def _nothing_stored(srv: Helpers) -> Iterator[None]:
    """After the test: no new row, no new stored file, ``tmp`` empty, and the server answers."""
    rows, files = srv.rows(), srv.stored_files()
    top = data_entries(srv)
    yield
    assert srv.rows() == rows
    assert srv.stored_files() == files
    assert srv.tmp_files() == []
    assert data_entries(srv) == top
    assert_still_answers(srv)


@pytest.fixture
def nothing_stored(hostile):
    yield from _nothing_stored(hostile)


@pytest.fixture
def nothing_stored_live(hostile_live):
    yield from _nothing_stored(hostile_live)


# ---------------------------------------------------------------------------------------------
# Raw requests: multipart bodies built by hand (raw bytes anywhere) and plain sockets

@dataclass(frozen=True)
class Part:
    name: bytes
    value: bytes
    filename: bytes | None = None
    content_type: bytes | None = None


def multipart(*parts: Part, boundary: bytes = BOUNDARY) -> bytes:
    out = b""
    for part in parts:
        out += b"--" + boundary + b"\r\nContent-Disposition: form-data; name=\"" + part.name + b"\""
        if part.filename is not None:
            out += b"; filename=\"" + part.filename + b"\""
        out += b"\r\n"
        if part.content_type:
            out += b"Content-Type: " + part.content_type + b"\r\n"
        out += b"\r\n" + part.value + b"\r\n"
    return out + b"--" + boundary + b"--\r\n"


def post_body(srv: Helpers, body: bytes, content_type: str | None = None, *,
              key: str | None = "default", params: dict | None = None) -> requests.Response:
    headers = {}
    if key is not None:
        headers["X-API-Key"] = srv.key if key == "default" else key
    if content_type is not None:
        headers["Content-Type"] = content_type
    return srv.post("/api/1/upload", data=body, headers=headers, params=params,
                    allow_redirects=False, timeout=60)


def post_parts(srv: Helpers, *parts: Part, **kwargs: Any) -> requests.Response:
    return post_body(srv, multipart(*parts), "multipart/form-data; boundary=" + BOUNDARY.decode(),
                     **kwargs)


@dataclass
class RawAnswer:
    """The first HTTP answer read from a raw socket, shaped like a requests.Response."""

    status_code: int
    headers: CaseInsensitiveDict = field(default_factory=CaseInsensitiveDict)
    content: bytes = b""

    def json(self) -> Any:
        return json.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class _Replay:
    def __init__(self, data: bytes) -> None:
        self.file = io.BytesIO(data)

    def makefile(self, *args: Any, **kwargs: Any) -> io.BytesIO:
        return self.file


def first_answer(raw: bytes) -> RawAnswer | None:
    if not raw:
        return None
    response = http.client.HTTPResponse(_Replay(raw))  # type: ignore[arg-type]
    response.begin()
    return RawAnswer(response.status, CaseInsensitiveDict(response.getheaders()), response.read())


def exchange(srv: LiveServer, data: bytes, *, half_close: bool = True, timeout: float = 10) -> bytes:
    """Send bytes as they are on a fresh connection; return everything read until it closes."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=timeout) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except (socket.timeout, ConnectionResetError):
            pass
    return received


def request_head(srv: LiveServer, lines: list[str]) -> bytes:
    head = ["POST /api/1/upload HTTP/1.1", f"Host: 127.0.0.1:{srv.port}", f"X-API-Key: {srv.key}",
            "Content-Type: multipart/form-data; boundary=" + BOUNDARY.decode(), *lines]
    return ("\r\n".join(head) + "\r\n\r\n").encode()


def chunked(body: bytes, size: int = 65536) -> bytes:
    pieces = [body[i:i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


# ---------------------------------------------------------------------------------------------
# Media made hostile

def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_zlib_bomb(width: int, height: int) -> bytes:
    """A 1-bit greyscale PNG whose IDAT is a few KB of deflated zeros claiming width x height."""
    row = (width + 7) // 8 + 1
    packer = zlib.compressobj(9)
    zeros = b"\0" * (row * 256)
    pieces, left = [], row * height
    while left > 0:
        pieces.append(packer.compress(zeros[:min(left, len(zeros))]))
        left -= len(zeros)
    pieces.append(packer.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", b"".join(pieces))
            + png_chunk(b"IEND", b""))


def png_of_size(total: int) -> bytes:
    """A valid PNG padded with a private ancillary chunk to exactly ``total`` bytes."""
    base = media.png(64, 48)
    at = base.index(b"IDAT") - 4
    padding = png_chunk(b"paDd", b"\0" * (total - len(base) - 12))
    data = base[:at] + padding + base[at:]
    assert len(data) == total
    return data


def apng_claiming(frames: int) -> bytes:
    data = media.apng(16, 16, 3)
    at = data.index(b"acTL") - 4
    return data[:at] + png_chunk(b"acTL", struct.pack(">II", frames, 0)) + data[at + 20:]


def jpeg_claiming(width: int, height: int) -> bytes:
    data = media.jpeg(16, 16)
    at = data.index(b"\xff\xc0")
    return data[:at + 5] + struct.pack(">HH", height, width) + data[at + 9:]


def _gif_blocks(data: bytes) -> tuple[int, int]:
    """Where a GIF's first image descriptor starts, and its header end (after the global table)."""
    head = 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0)
    pos = head
    while data[pos] == 0x21:
        pos += 2
        while data[pos]:
            pos += 1 + data[pos]
        pos += 1
    assert data[pos] == 0x2C
    return pos, head


def gif_screen(width: int, height: int) -> bytes:
    data = media.gif(8, 8)
    return data[:6] + struct.pack("<HH", width, height) + data[10:]


def gif_frame_beyond_screen() -> bytes:
    """An 8x8 logical screen whose one frame claims 65535x65535 pixels."""
    data = bytearray(media.gif(8, 8))
    pos, _ = _gif_blocks(bytes(data))
    struct.pack_into("<HHHH", data, pos + 1, 0, 0, 65535, 65535)
    return bytes(data)


@functools.cache
def _flat_gif() -> bytes:
    out = io.BytesIO()
    Image.new("P", (20, 20), 0).save(out, "GIF")
    return out.getvalue()


def gif_frames(count: int) -> bytes:
    """A 20x20 GIF of ``count`` frames, written out one by one (no encoder merges them)."""
    one = _flat_gif()
    pos, head = _gif_blocks(one)
    frame = one[pos:one.rindex(b"\x3b")]
    control = b"\x21\xf9\x04\x00\x02\x00\x00\x00"
    return one[:head] + (control + frame) * count + b"\x3b"


def bmp_claiming(width: int, height: int) -> bytes:
    data = media.bmp(8, 8)
    return data[:18] + struct.pack("<ii", width, height) + data[26:]


def webp_lossless_claiming(width: int, height: int) -> bytes:
    data = media.webp(8, 8)
    at = data.index(b"VP8L") + 9
    bits = struct.unpack_from("<I", data, at)[0] & ~0xFFFFFFF
    bits |= ((width - 1) & 0x3FFF) | (((height - 1) & 0x3FFF) << 14)
    return data[:at] + struct.pack("<I", bits) + data[at + 4:]


def webp_lossy_claiming(width: int, height: int) -> bytes:
    data = media.webp(64, 48, lossless=False)
    at = data.index(b"VP8 ") + 14
    return data[:at] + struct.pack("<HH", width, height) + data[at + 4:]


@functools.cache
def samples() -> dict[str, bytes]:
    """One ordinary file of every accepted type, to damage."""
    return {
        "jpeg": media.jpeg(200, 150), "png": media.png(200, 150),
        "gif": media.gif(64, 48, frames=3), "webp": media.webp(120, 90, lossless=False),
        "webp-lossless": media.webp(120, 90), "avif": media.avif(120, 90), "bmp": media.bmp(60, 40),
        "mp4": media.clip("mp4"), "webm": media.clip("webm"), "mov": media.clip("mov"),
    }


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def flipped(data: bytes, at: int, count: int = 8) -> bytes:
    out = bytearray(data)
    for i in range(at, min(at + count, len(out))):
        out[i] ^= 0xFF
    return bytes(out)


def replaced(data: bytes, old: bytes, new: bytes) -> bytes:
    assert old in data, old
    return data.replace(old, new, 1)


def gif_lzw_size(size: int) -> bytes:
    data = samples()["gif"]
    pos, _ = _gif_blocks(data)
    flags = data[pos + 9]
    at = pos + 10 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    return data[:at] + bytes([size]) + data[at + 1:]


def gif_without_image() -> bytes:
    data = samples()["gif"]
    return data[:_gif_blocks(data)[0]] + b"\x3b"


def gif_js_polyglot() -> bytes:
    """A valid GIF that is also JavaScript: its screen width is the bytes ``/*``."""
    one = media.gif(1, 1)
    pos, head = _gif_blocks(one)
    script = b"*/=1;alert(document.domain)//<html><script>alert(1)</script></html>"
    comment = b"\x21\xfe" + bytes([len(script)]) + script + b"\x00"
    return b"GIF89a/*" + struct.pack("<H", 1) + one[10:head] + comment + one[pos:]


IMAGE_ERR = (400, 400, "Invalid image")
VIDEO_ERR = (400, 100, "Invalid video file provided")
TOO_LARGE = (400, 400, "Image too large")
BAD_TYPE = (415, 612, "Invalid file type")


# ---------------------------------------------------------------------------------------------
# Hostile files

BOMBS: dict[str, Callable[[], bytes]] = {
    "png-ihdr-2^31-square": lambda: media.png_header(2**31 - 1, 2**31 - 1),
    "png-ihdr-one-row-over-100M": lambda: media.png_header(100_000, 1_001),
    "png-zlib-bomb-12000x12000": lambda: png_zlib_bomb(12_000, 12_000),
    "png-zlib-bomb-over-animation-limit": lambda: png_zlib_bomb(1_001, 1_000),
    "apng-acTL-claims-2^31-frames": lambda: apng_claiming(2**31 - 1),
    "jpeg-sof-65500x65500": lambda: jpeg_claiming(65_500, 65_500),
    "jpeg-sof-65535x2000": lambda: jpeg_claiming(65_535, 2_000),
    "gif-screen-65535x65535": lambda: gif_screen(65_535, 65_535),
    "gif-frame-beyond-tiny-screen": gif_frame_beyond_screen,
    "gif-3000-frames": lambda: gif_frames(3_000),
    "gif-one-frame-over-animation-limit": lambda: gif_frames(ANIMATION_LIMIT // 400 + 1),
    "webp-vp8x-16777216-square": lambda: media.webp_header(2**24, 2**24),
    "webp-vp8l-16384-square": lambda: webp_lossless_claiming(16_384, 16_384),
    "webp-vp8-16383-square": lambda: webp_lossy_claiming(16_383, 16_383),
    "bmp-100000-square": lambda: bmp_claiming(100_000, 100_000),
    "bmp-top-down-100000-square": lambda: bmp_claiming(100_000, -100_000),
    "bmp-int32-max-wide": lambda: bmp_claiming(2**31 - 1, 1),
}


@pytest.mark.parametrize("case", list(BOMBS))
def test_decompression_bomb_is_refused_from_its_header(hostile, nothing_stored, case):
    data = BOMBS[case]()
    started = time.monotonic()
    assert_error(hostile.upload(data, filename="bomb.png"), *TOO_LARGE)
    assert time.monotonic() - started < 5


def test_animation_exactly_at_the_limit_is_accepted(hostile):
    frames = ANIMATION_LIMIT // 400
    image = assert_upload_ok(hostile.upload(gif_frames(frames), filename="frames.gif"))
    assert image["is_animated"] == 1 and (image["width"], image["height"]) == (20, 20)


TRUNCATION_POINTS = {"header": lambda n: 40, "quarter": lambda n: n // 4, "half": lambda n: n // 2,
                     "three-quarters": lambda n: 3 * n // 4, "last-byte-missing": lambda n: n - 1}
VIDEO_TYPES = ("mp4", "webm", "mov")
# Video containers tolerate a few missing bytes at their very end, so they are cut earlier only.
TRUNCATED = [pytest.param(kind, point, id=f"{kind}-{point}")
             for kind in ("jpeg", "png", "gif", "webp", "webp-lossless", "avif", "bmp", *VIDEO_TYPES)
             for point in TRUNCATION_POINTS
             if not (kind in VIDEO_TYPES and point == "last-byte-missing")]


@pytest.mark.parametrize("kind,point", TRUNCATED)
def test_truncated_file_is_refused(hostile, nothing_stored, kind, point):
    data = samples()[kind]
    cut = data[:TRUNCATION_POINTS[point](len(data))]
    expected = VIDEO_ERR if kind in VIDEO_TYPES else IMAGE_ERR
    assert_error(hostile.upload(cut, filename=f"cut.{kind}"), *expected)


def damaged(kind: str, change: Callable[[bytes], bytes]) -> Callable[[], bytes]:
    return lambda: change(samples()[kind])


def at_sof(data: bytes, offset: int, new: bytes) -> bytes:
    """Overwrite bytes of a JPEG's start-of-frame segment (precision, height, width, components)."""
    at = data.index(b"\xff\xc0") + offset
    return data[:at] + new + data[at + len(new):]


def overwrite(data: bytes, at: int, new: bytes) -> bytes:
    return data[:at] + new + data[at + len(new):]


CORRUPT: dict[str, tuple[Callable[[], bytes], tuple[int, int, str]]] = {
    "jpeg-no-start-of-scan": (damaged("jpeg", lambda d: replaced(d, b"\xff\xda", b"\xff\xfe")), IMAGE_ERR),
    "jpeg-zero-width": (damaged("jpeg", lambda d: at_sof(d, 7, b"\0\0")), IMAGE_ERR),
    "jpeg-precision-7": (damaged("jpeg", lambda d: at_sof(d, 4, b"\x07")), IMAGE_ERR),
    "jpeg-64-components": (damaged("jpeg", lambda d: at_sof(d, 9, b"\x40")), IMAGE_ERR),
    "png-ihdr-crc": (damaged("png", lambda d: flipped(d, 29, 1)), IMAGE_ERR),
    "png-idat-bytes-flipped": (damaged("png", lambda d: flipped(d, d.index(b"IDAT") + 200, 4)), IMAGE_ERR),
    "png-zlib-header": (damaged("png", lambda d: flipped(d, d.index(b"IDAT") + 4, 2)), IMAGE_ERR),
    "png-colour-type-9": (damaged("png", lambda d: overwrite(d, 25, b"\x09")), IMAGE_ERR),
    "png-bit-depth-3": (damaged("png", lambda d: overwrite(d, 24, b"\x03")), IMAGE_ERR),
    "png-no-idat": (damaged("png", lambda d: d.replace(b"IDAT", b"IDXT")), IMAGE_ERR),
    "gif-lzw-code-size-15": (lambda: gif_lzw_size(15), IMAGE_ERR),
    "gif-no-image": (gif_without_image, IMAGE_ERR),
    "webp-lossy-start-code": (damaged("webp", lambda d: replaced(d, b"\x9d\x01\x2a", b"\0\0\0")), IMAGE_ERR),
    "webp-lossless-bitstream-flipped": (damaged("webp-lossless", lambda d: flipped(d, 100)), IMAGE_ERR),
    "webp-riff-size-2GB": (damaged("webp", lambda d: overwrite(d, 4, b"\xff\xff\xff\x7f")), IMAGE_ERR),
    "avif-no-av1C": (damaged("avif", lambda d: replaced(d, b"av1C", b"xxxx")), IMAGE_ERR),
    "avif-bitstream-flipped": (damaged("avif", lambda d: flipped(d, len(d) - 12)), IMAGE_ERR),
    "bmp-3-bits-per-pixel": (damaged("bmp", lambda d: overwrite(d, 28, b"\x03\x00")), IMAGE_ERR),
    "mp4-no-moov": (damaged("mp4", lambda d: replaced(d, b"moov", b"xoov")), VIDEO_ERR),
    "mov-no-moov": (damaged("mov", lambda d: replaced(d, b"moov", b"xoov")), VIDEO_ERR),
    "mov-no-avcC": (damaged("mov", lambda d: replaced(d, b"avcC", b"xxxx")), VIDEO_ERR),
    "webm-no-cluster": (damaged("webm", lambda d: d.replace(b"\x1f\x43\xb6\x75", b"\0\0\0\0")), VIDEO_ERR),
}


@pytest.mark.parametrize("case", list(CORRUPT))
def test_corrupt_file_is_refused(hostile, nothing_stored, case):
    build, expected = CORRUPT[case]
    assert_error(hostile.upload(build(), filename="corrupt.bin"), *expected)


DISGUISED: dict[str, tuple[bytes, str, tuple[int, int, str]]] = {
    # 'GIF89a/*<h' declares a 10799 x 26684 screen: refused from the header before any decoding.
    "gif-magic-then-html": (b"GIF89a/*<html><script>alert(1)</script></html>*/", "x.gif", TOO_LARGE),
    "gif-1x1-then-html": (b"GIF89a\x01\x00\x01\x00<html><script>alert(1)</script></html>", "x.gif",
                          IMAGE_ERR),
    "gif-magic-then-php": (b"GIF89a<?php system($_GET['c']); ?>", "shell.gif", TOO_LARGE),
    "jpeg-magic-then-php": (b"\xff\xd8\xff\xe0<?php system($_GET['c']); ?>", "shell.jpg", IMAGE_ERR),
    "svg-with-xml-prolog": (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" '
                            b'onload="alert(1)"/>', "x.png", BAD_TYPE),
    "svg-after-utf8-bom": (b"\xef\xbb\xbf<svg onload=alert(1)>", "x.png", BAD_TYPE),
    "html-then-png": (b"<html>" + media.png_header(8, 8), "x.png", BAD_TYPE),
    "javascript": (b"alert(document.cookie)//", "x.jpg", BAD_TYPE),
    "shell-script": (b"#!/bin/sh\nrm -rf /\n", "x.png", BAD_TYPE),
    "windows-executable": (b"MZ\x90\x00" + b"\0" * 200, "x.gif", BAD_TYPE),
    "elf-executable": (b"\x7fELF\x02\x01\x01" + b"\0" * 200, "x.webp", BAD_TYPE),
    "postscript": (b"%!PS-Adobe-3.0\n", "x.jpg", BAD_TYPE),
    "tiff": (b"II*\x00\x08\x00\x00\x00" + b"\0" * 200, "x.tif", BAD_TYPE),
    "bm-without-dib-header": (b"BM" + b"\0" * 200, "x.bmp", BAD_TYPE),
}


@pytest.mark.parametrize("case", list(DISGUISED))
def test_disguised_or_foreign_file_is_refused(hostile, nothing_stored, case):
    data, filename, expected = DISGUISED[case]
    assert_error(hostile.upload(data, filename=filename), *expected)


def _served(srv: Helpers, image: dict) -> requests.Response:
    response = srv.get(image["url"])
    assert response.status_code == 200
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    return response


def test_gif_javascript_polyglot_is_only_ever_an_image(hostile):
    image = assert_upload_ok(hostile.upload(gif_js_polyglot(), filename="evil.html"))
    assert image["extension"] == "gif" and image["mime"] == "image/gif"
    for url in (image["url"], image["thumb"]["url"]):
        response = _served(hostile, {"url": url})
        assert response.headers["Content-Type"] == "image/gif"
        assert b"<script" not in response.content  # the comment extension is dropped


def test_php_in_a_jpeg_is_stripped_and_never_executable(hostile):
    data = media.jpeg(40, 30, comment=b"<?php system($_GET['c']); ?>") + b"<?php echo 1; ?>"
    image = assert_upload_ok(hostile.upload(data, filename="shell.php.jpg"))
    assert SAFE_NAME.fullmatch(image["name"]) and image["filename"].endswith(".jpg")
    assert ".php" not in image["filename"]
    response = _served(hostile, image)
    assert response.headers["Content-Type"] == "image/jpeg"
    assert b"<?php" not in response.content


def test_html_in_png_text_is_stripped(hostile):
    data = media.png(40, 30, text={"Comment": "<html><script>alert(1)</script></html>"})
    image = assert_upload_ok(hostile.upload(data, filename="x.svg"))
    assert image["filename"].endswith(".png")
    response = _served(hostile, image)
    assert response.headers["Content-Type"] == "image/png" and b"<script" not in response.content


# ---------------------------------------------------------------------------------------------
# Empty sources and the size limit, to the byte

@pytest.mark.parametrize("send", [
    pytest.param(lambda s: s.upload(b"", field="image"), id="empty-imgbb-image-part"),
    pytest.param(lambda s: s.upload(b"", filename=".png"), id="empty-file-named-dot-png"),
    pytest.param(lambda s: s.upload("   \r\n\t  "), id="whitespace-only-string"),
    pytest.param(lambda s: s.upload("data:image/png;base64,"), id="data-uri-without-data"),
    pytest.param(lambda s: post_parts(s, Part(b"source", b"", b"")), id="empty-part-with-empty-file-name"),
])
def test_empty_source(hostile, nothing_stored, send):
    assert_error(send(hostile), 400, 130, "Empty upload source")


def test_file_exactly_at_the_limit_is_accepted(hostile, webhost):
    data = png_of_size(LIMIT)
    for response in (hostile.upload(data), hostile.upload(b64(data)),
                     hostile.upload(webhost.add("/hostile/at-limit.png", body=data))):
        assert assert_upload_ok(response)["width"] == 64


@pytest.mark.parametrize("form", ["file", "base64"])
def test_one_byte_over_the_limit_is_refused(hostile, nothing_stored, form):
    data = png_of_size(LIMIT + 1)
    response = hostile.upload(data) if form == "file" else hostile.upload(b64(data))
    assert_error(response, 413, 400, TOO_BIG)


def test_one_byte_over_the_limit_in_chunks_is_refused(hostile_live, nothing_stored_live):
    body = multipart(Part(b"source", png_of_size(LIMIT + 1), b"a.png"))
    raw = exchange(hostile_live, request_head(hostile_live, ["Transfer-Encoding: chunked"]) + chunked(body))
    assert_error(first_answer(raw), 413, 400, TOO_BIG)


def test_url_one_byte_over_the_limit_is_refused(hostile, webhost, nothing_stored):
    url = webhost.add("/hostile/over-limit.png", body=png_of_size(LIMIT + 1))
    assert_error(hostile.upload(url), 400, 622, "Invalid image URL: too large")


# ---------------------------------------------------------------------------------------------
# Hostile text parameters

CONTROL = b"\x00\x01\x02\x07\x08\x0b\x0c\x0e\x1b\x7f\xc2\x80\xc2\x9f"   # C0, DEL and C1 (UTF-8)
INVALID_UTF8 = b"\xff\xfe\xc3\x28\xed\xa0\x80\xf8\x88\x80\x80\x80"


def _no_controls(text: str, allowed: str = "") -> bool:
    return not any(unicodedata.category(ch) in {"Cc", "Cs"} and ch not in allowed for ch in text)


def test_title_of_a_megabyte_is_cut_to_100_characters(hostile):
    image = assert_upload_ok(hostile.upload(PNG, title="t" * 1_000_000))
    assert image["title"] == "t" * 100


@pytest.mark.parametrize("junk", [pytest.param(CONTROL, id="control"),
                                  pytest.param(INVALID_UTF8, id="invalid-utf8")])
@pytest.mark.parametrize("name", ["title", "description", "tags"])
def test_raw_bytes_in_text_fields(hostile, name, junk):
    response = post_parts(hostile, Part(name.encode(), b"abc" + junk + b"xyz"),
                          Part(b"source", PNG, b"plain.png"))
    image = assert_upload_ok(response)
    text = {"title": image["title"], "description": image["description"],
            "tags": image["tags_string"]}[name]
    assert text.startswith("abc") and text.endswith("xyz")
    assert _no_controls(text, "\n\t" if name == "description" else "")
    if junk is CONTROL:
        assert text == "abcxyz"


def test_control_characters_in_the_file_name(hostile):
    response = post_parts(hostile, Part(b"source", PNG, b"abc" + CONTROL + b"xyz.png"))
    image = assert_upload_ok(response)
    assert image["original_filename"] == "abcxyz.png"
    assert _no_controls(image["title"]) and SAFE_NAME.fullmatch(image["name"])


def test_invalid_utf8_in_part_headers_is_a_clear_error(hostile, nothing_stored):
    # Werkzeug reads part headers as UTF-8 only; such a body is refused with the reason.
    response = post_parts(hostile, Part(b"source", PNG, b"abc" + INVALID_UTF8 + b"xyz.png"))
    assert_error(response, 400, 400, "Invalid multipart body: part headers must be UTF-8")


def test_binary_urlencoded_body_is_a_clear_error(hostile, nothing_stored):
    body = bytes(range(256)).replace(b"=", b"") * 64
    response = post_body(hostile, body, "application/x-www-form-urlencoded")
    assert_error(response, 400, 400, 'Invalid form body: a urlencoded body must be UTF-8 text. Send a '
                 'file as a multipart form field named source: curl -F "source=@file.png"')


HOSTILE_NAMES = {
    "dot-dot-slash": b"../../etc/passwd.png",
    "dot-dot-backslash": b"..\\..\\windows\\win.ini.png",
    "absolute": b"/etc/passwd",
    "drive-letter": b"C:\\x.png",
    "unc": b"\\\\server\\share\\x.png",
    "nul-byte": b"a\x00.php.png",
    "three-dots": b"...",
    "two-dots": b"..",
    "one-dot": b".",
    "dots-then-ext": b"....png",
    "percent-encoded-traversal": b"%2e%2e%2fx.png",
    "mid-path-traversal": b"a/../../b.png",
    "home-dir": b"~/.ssh/id_rsa.png",
    "file-url": b"file:///etc/passwd.png",
    "right-to-left-override": "\u202egnp.exe".encode(),
    "looks-like-a-thumb": b"photo.th.png",
    "looks-like-a-frame": b"clip.fr.jpeg",
    "dotfile": b".htaccess",
    "5000-chars": b"x" * 5000 + b".png",
    "only-symbols": b"!@#$%^&*().png",
}


@pytest.mark.parametrize("case", list(HOSTILE_NAMES))
def test_hostile_file_name_is_stored_safely(hostile, case):
    top = data_entries(hostile)
    image = assert_upload_ok(post_parts(hostile, Part(b"source", PNG, HOSTILE_NAMES[case])))
    name = image["name"]
    assert SAFE_NAME.fullmatch(name) and len(name) <= 80 + 9, name
    assert image["filename"] == f"{name}.png"
    file_url = rf"{re.escape(hostile.url)}/images/(\d{{4}}/\d{{2}}/\d{{2}})/{re.escape(name)}\.png"
    path = re.fullmatch(file_url, image["url"])
    assert path, image["url"]
    # stored under its own key, inside the store, byte for byte what was sent
    assert f"images/{path.group(1)}/{image['filename']}" in hostile.stored_files()
    assert hostile.stored_bytes(image["url"]) == PNG
    assert not any(ch in image["original_filename"] for ch in "/\\\x00")
    assert data_entries(hostile) == top
    assert hostile.get(image["url"]).status_code == 200


def test_thousands_of_tags_keep_the_first_50(hostile):
    tags = ",".join(f"tag{i}" for i in range(5_000))
    image = assert_upload_ok(hostile.upload(PNG, tags=tags))
    assert [t["name"] for t in image["tags"]] == [f"tag{i}" for i in range(50)]


@pytest.mark.parametrize("tags,expected", [
    pytest.param("," * 100_000, [], id="100000-commas"),
    pytest.param("a" * 1_000_000, [], id="one-megabyte-tag"),
    pytest.param("a/b, c#d, " + "x" * 33 + ", ok", ["ok"], id="slash-hash-too-long"),
    pytest.param("cat, cat,  cat ,cat", ["cat"], id="duplicates"),
    pytest.param("  lots \t of \n space  ", ["lots of space"], id="whitespace-runs"),
])
def test_hostile_tags(hostile, tags, expected):
    image = assert_upload_ok(hostile.upload(PNG, tags=tags))
    assert [t["name"] for t in image["tags"]] == expected


# Invisible format characters (Unicode Cf): bidi overrides and isolates make
# 'invoice\u202egpj.exe' read as 'invoiceexe.jpg'; zero-width ones hide inside names and tags.
# All are dropped from client text but the joiners U+200C and U+200D, which emoji sequences and
# scripts such as Persian need.

JOINERS = "\u200c\u200d"
DROPPED_FORMAT = [chr(c) for c in range(0x110000)
                  if unicodedata.category(chr(c)) == "Cf" and chr(c) not in JOINERS]
SPOOFERS = "\u202e\u202d\u202a\u202b\u202c\u2066\u2067\u2068\u2069\u200b\u200e\u200f\ufeff\u2060\u00ad"
JOINED = "\U0001F468\u200d\U0001F469\u200d\U0001F467 \u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"


def _no_format(text: str) -> bool:
    return not any(unicodedata.category(ch) == "Cf" and ch not in JOINERS for ch in text)


def sprinkled(text: str, seed: int) -> str:
    """``text`` with format characters put between its characters: every spoofer once (in a
    shuffled order) and a few others drawn from all of Unicode's Cf."""
    rng = random.Random(seed)
    extra = list(SPOOFERS) + rng.sample(DROPPED_FORMAT, 6)
    rng.shuffle(extra)
    out = list(text)
    for ch in extra:
        out.insert(rng.randrange(len(out) + 1), ch)
    return "".join(out)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("name,text", [
    ("title", "invoice gpj.exe"), ("description", "line one\n\tline two"),
    ("tags", "invoice, report 2024"), ("title", JOINED), ("tags", JOINED),
    ("description", JOINED + "\n" + JOINED),
])
def test_format_characters_in_text_fields_are_dropped(hostile, name, text, seed):
    sent = sprinkled(text, seed)
    image = assert_upload_ok(hostile.upload(PNG, **{name: sent}))
    if name == "tags":
        assert [t["name"] for t in image["tags"]] == [t.strip() for t in text.split(",")]
        for tag in image["tags"]:
            assert _no_format(tag["url_key"]) and _no_format(tag["url"])
    else:
        assert image[name] == text
    assert _no_format(image["title"]) and _no_format(image["title_truncated"])


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("stem", ["invoice\u202egpj.exe", "report\u2067 draft\u2069", JOINED])
def test_format_characters_in_a_file_name_are_dropped(hostile, stem, seed):
    name = sprinkled(stem, seed) + ".png"
    clean = "".join(ch for ch in stem if _no_format(ch))
    image = assert_upload_ok(post_parts(hostile, Part(b"source", PNG, name.encode())))
    assert image["original_filename"] == clean + ".png"
    assert image["title"] == params_title(clean)
    assert SAFE_NAME.fullmatch(image["name"])
    page = hostile.get(image["url_viewer"])
    assert page.status_code == 200 and _no_format(html_text(page.text))


@pytest.mark.parametrize("seed", range(3))
def test_format_characters_in_a_url_source_name_are_dropped(hostile, webhost, seed):
    name = sprinkled("invoice\u202egpj.exe", seed) + ".png"
    url = webhost.add(f"/format-{seed}/{quote(name)}", body=PNG, content_type="image/png")
    image = assert_upload_ok(hostile.upload(url))
    assert image["original_filename"] == "invoicegpj.exe.png"
    assert image["title"] == "invoicegpj.exe"


def test_format_characters_in_file_metadata_are_dropped(hostile):
    xmp = media.xmp_packet(title=sprinkled("shot\u202egpj.exe", 1), description=sprinkled("a\nb", 2))
    image = assert_upload_ok(hostile.upload(media.jpeg(24, 16, xmp=xmp), filename="x.jpg"))
    assert image["title"] == "shotgpj.exe" and image["description"] == "a\nb"


def params_title(stem: str) -> str:
    """The title SPEC §2 makes of a file name: runs of '-', '_' and spaces as one space."""
    return " ".join(re.sub(r"[-_]+", " ", stem).split())


def html_text(page: str) -> str:
    return re.sub(r"<[^>]*>", " ", page)


@pytest.mark.parametrize("width", [
    pytest.param("9" * 5_000, id="5000-digits"), pytest.param("100001", id="100001"),
    pytest.param("１０", id="fullwidth-digits"), pytest.param("٣", id="arabic-indic-digit"),
    pytest.param("²", id="superscript-two"), pytest.param("10\x00", id="trailing-nul"),
    pytest.param("+5", id="plus-sign"), pytest.param("-0", id="minus-zero"),
    pytest.param("0x10", id="hex"), pytest.param("1_000", id="underscore"),
    pytest.param("NaN", id="nan"), pytest.param("inf", id="inf"),
    pytest.param("10,5", id="decimal-comma"), pytest.param("10px", id="unit"),
])
def test_hostile_width(hostile, nothing_stored, width):
    assert_error(hostile.upload(PNG, width=width), 400, 400, "Invalid width")


def test_width_at_its_maximum_keeps_the_image(hostile):
    image = assert_upload_ok(hostile.upload(PNG, width="100000"))
    assert (image["width"], image["height"]) == (32, 24)


@pytest.mark.parametrize("value", [
    pytest.param("9" * 5_000, id="5000-digits"), pytest.param("²", id="superscript-two"),
    pytest.param("99999999999999999999999", id="over-64-bits"), pytest.param("-1", id="negative"),
    pytest.param("1.0", id="decimal"), pytest.param("0x1", id="hex"),
    pytest.param("1\x00", id="trailing-nul"), pytest.param("x" * 100_000, id="100k-letters"),
])
def test_hostile_category(hostile, nothing_stored, value):
    assert_error(hostile.upload(PNG, category_id=value), 400, 400, "Invalid category")


@pytest.mark.parametrize("value", [
    pytest.param("x" * 100_000, id="100k-letters"), pytest.param("' OR '1'='1", id="sql"),
    pytest.param("../../", id="traversal"), pytest.param("\x00", id="nul"),
])
def test_hostile_album(hostile, nothing_stored, value):
    assert_error(hostile.upload(PNG, album_id=value), 400, 400, "Album not found")


@pytest.mark.parametrize("value", [
    pytest.param("PT1S\x00", id="trailing-nul"), pytest.param("1e9", id="exponent"),
    pytest.param("PT-1S", id="negative-component"), pytest.param("²", id="superscript-two"),
    pytest.param("PT٣S", id="arabic-indic-digit"), pytest.param("P-1D", id="negative-days"),
    pytest.param("0x10", id="hex"), pytest.param("P1Y" * 1_000, id="repeated-designators"),
    pytest.param("5 seconds", id="words"),
])
def test_hostile_expiration(hostile, nothing_stored, value):
    assert_error(hostile.upload(PNG, expiration=value), 400, 400, "Invalid expiration")


# ---------------------------------------------------------------------------------------------
# Repeated parameters: the first counts, a body value wins over the query string

def test_repeated_title_first_counts(hostile):
    response = post_parts(hostile, Part(b"title", b"first"), Part(b"title", b"second"),
                          Part(b"source", PNG, b"a.png"))
    assert assert_upload_ok(response)["title"] == "first"


def test_repeated_width_first_counts(hostile, nothing_stored):
    response = post_parts(hostile, Part(b"width", b"abc"), Part(b"width", b"10"),
                          Part(b"source", PNG, b"a.png"))
    assert_error(response, 400, 400, "Invalid width")


def test_repeated_width_bad_second_is_ignored(hostile):
    response = post_parts(hostile, Part(b"width", b"10"), Part(b"width", b"abc"),
                          Part(b"source", PNG, b"a.png"))
    assert assert_upload_ok(response)["width"] == 10


def test_bad_query_width_loses_to_the_body(hostile):
    response = hostile.upload(PNG, params={"width": "abc"}, width="10")
    assert assert_upload_ok(response)["width"] == 10


def test_query_format_loses_to_the_body(hostile):
    assert_upload_ok(hostile.upload(PNG, params={"format": "txt"}, format="json"))


def test_first_of_two_file_parts_counts(hostile):
    response = post_parts(hostile, Part(b"source", PNG, b"a.png"),
                          Part(b"source", b"<?php echo 1; ?>", b"b.png"))
    assert assert_upload_ok(response)["width"] == 32


def test_hostile_first_file_part_is_what_is_judged(hostile, nothing_stored):
    response = post_parts(hostile, Part(b"source", b"<?php echo 1; ?>", b"a.png"),
                          Part(b"source", PNG, b"b.png"))
    assert_error(response, *BAD_TYPE)


@pytest.mark.parametrize("content_type", [b"image/png", None])
def test_a_file_sent_as_a_plain_field_is_told_how_to_send_it(hostile, nothing_stored, content_type):
    response = post_parts(hostile, Part(b"source", PNG, content_type=content_type))
    body = assert_error(response, 400, 120, startswith="Invalid base64 string: this looks like a file")
    assert "-F source=@" in body["error"]["message"]


def test_three_file_parts_are_refused(hostile, nothing_stored):
    response = post_parts(hostile, *(Part(b"source", PNG, b"a.png") for _ in range(3)))
    assert_error(response, 400, 400, startswith="Too many files")


@pytest.mark.parametrize("key", [None, "imgz_wrong", "default"])
def test_thousands_of_file_parts_open_no_files(hostile, nothing_stored, key):
    """Each file part beyond the second is thrown away as it is read, never given a file."""
    opened = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            opened.append(len(os.listdir(f"/proc/{hostile.pid}/fd")))
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        body = multipart(*(Part(b"f%d" % i, b"x", b"a") for i in range(5_000)))
        response = post_body(hostile, body, "multipart/form-data; boundary=" + BOUNDARY.decode(),
                             key=key)
    finally:
        stop.set()
        watcher.join()
    assert response.status_code in {400, 401}
    assert max(opened) < min(opened) + 50, (min(opened), max(opened))
    assert hostile.request("GET", "/", timeout=10).status_code == 200


def test_file_part_wins_over_a_string_source(hostile):
    response = post_parts(hostile, Part(b"source", b"http://10.0.0.1/a.png"),
                          Part(b"source", PNG, b"a.png"))
    assert assert_upload_ok(response)["width"] == 32


def test_wrong_header_key_is_not_rescued_by_a_good_field(hostile, nothing_stored):
    response = hostile.upload(PNG, api_key="imgz_wrong", key=hostile.key)
    assert_error(response, 401, 100, "Invalid API key.")


def test_good_body_key_wins_over_a_wrong_query_key(hostile):
    assert_upload_ok(hostile.upload(PNG, api_key=None, params={"key": "imgz_wrong"},
                                    key=hostile.key))


def test_wrong_body_key_wins_over_a_good_query_key(hostile, nothing_stored):
    response = hostile.upload(PNG, api_key=None, params={"key": hostile.key}, key="imgz_wrong")
    assert_error(response, 401, 100, "Invalid API key.")


# ---------------------------------------------------------------------------------------------
# Hostile bodies: many fields, broken multipart, other content types, lying lengths

def test_900_multipart_fields(hostile):
    parts = [Part(f"f{i}".encode(), b"v") for i in range(900)]
    assert_upload_ok(post_parts(hostile, *parts, Part(b"source", PNG, b"a.png")))


def test_3000_multipart_fields_within_the_size_limit(hostile):
    # Unknown fields are ignored, whatever their number: the body is far below every limit.
    parts = [Part(f"f{i}".encode(), b"v") for i in range(3_000)]
    assert_upload_ok(post_parts(hostile, *parts, Part(b"source", PNG, b"a.png")))


def test_50000_urlencoded_fields(hostile):
    fields = "&".join(f"f{i}=v" for i in range(50_000))
    body = f"{fields}&source={quote(b64(PNG), safe='')}"
    assert_upload_ok(post_body(hostile, body.encode(), "application/x-www-form-urlencoded"))


MULTIPART = "multipart/form-data; boundary=" + BOUNDARY.decode()
ONE_FILE = multipart(Part(b"source", PNG, b"a.png"))


def _sent(body: bytes, content_type: str | None) -> Callable[[Helpers], requests.Response]:
    return lambda srv: post_body(srv, body, content_type)


BROKEN_BODIES: dict[str, Callable[[Helpers], requests.Response]] = {
    "other-boundary-declared": _sent(ONE_FILE, "multipart/form-data; boundary=something-else"),
    "no-boundary-declared": _sent(ONE_FILE, "multipart/form-data"),
    "empty-boundary-declared": _sent(ONE_FILE, "multipart/form-data; boundary="),
    "closing-boundary-missing": _sent(ONE_FILE[:-24], MULTIPART),
    "cut-inside-the-file": _sent(ONE_FILE[:len(PNG) // 2], MULTIPART),
    "part-without-disposition": _sent(b"--" + BOUNDARY + b"\r\nContent-Type: image/png\r\n\r\n"
                                      + PNG + b"\r\n--" + BOUNDARY + b"--\r\n", MULTIPART),
    "only-dashes": _sent(b"--", MULTIPART),
    "octet-stream-png": _sent(PNG, "application/octet-stream"),
    "png-without-content-type": _sent(PNG, None),
    "text-plain-png": _sent(PNG, "text/plain"),
    "json-body": _sent(json.dumps({"source": b64(PNG)}).encode(), "application/json"),
}


@pytest.mark.parametrize("case", list(BROKEN_BODIES))
def test_body_without_a_usable_source(hostile, nothing_stored, case):
    assert_error(BROKEN_BODIES[case](hostile), 400, 130, "Empty upload source")


def test_content_length_shorter_than_the_body(hostile_live, nothing_stored_live):
    body = multipart(Part(b"source", PNG, b"a.png"))
    raw = exchange(hostile_live, request_head(hostile_live, [f"Content-Length: {len(body) // 2}"]) + body)
    assert_error(first_answer(raw), 400, 130, "Empty upload source")


def test_content_length_longer_than_the_body_then_close(hostile_live, nothing_stored_live):
    body = multipart(Part(b"source", PNG, b"a.png"))
    raw = exchange(hostile_live, request_head(hostile_live, [f"Content-Length: {len(body) + 1000}"]) + body)
    answer = first_answer(raw)
    assert answer is None or answer.status_code >= 400


@pytest.mark.parametrize("lines,status", [
    pytest.param(["Content-Length: -5"], 400, id="negative"),
    pytest.param(["Content-Length: abc"], 400, id="not-a-number"),
    pytest.param(["Content-Length: 7", "Content-Length: 9"], 400, id="two-different"),
    pytest.param(["Content-Length: 1000000000000"], 413, id="a-terabyte"),
    pytest.param(["Transfer-Encoding: chunked"], 400, id="bad-chunk-size"),
])
def test_malformed_framing_is_refused_before_the_app(hostile_live, nothing_stored_live, lines, status):
    # These never reach the application: waitress answers them itself, in plain text.
    body = b"zz\r\n" + multipart(Part(b"source", PNG, b"a.png"))
    answer = first_answer(exchange(hostile_live, request_head(hostile_live, lines) + body))
    assert answer is not None and answer.status_code == status


def test_stalled_bodies_do_not_hold_the_server(hostile_live):
    rows = hostile_live.rows()
    body = multipart(Part(b"source", PNG, b"a.png"))
    stalled = []
    try:
        for _ in range(30):
            sock = socket.create_connection(("127.0.0.1", hostile_live.port), timeout=10)
            sock.sendall(request_head(hostile_live, [f"Content-Length: {len(body) + 1000}"]) + body)
            stalled.append(sock)
        started = time.monotonic()
        assert_upload_ok(hostile_live.upload(PNG))
        assert time.monotonic() - started < 5
    finally:
        for sock in stalled:
            sock.close()
    assert hostile_live.rows() == rows + 1
    assert hostile_live.tmp_files() == []


# ---------------------------------------------------------------------------------------------
# Hostile URL sources

class EvilHost:
    """A raw TCP server on 127.0.0.1 that misbehaves the way a hostile URL source can.

    The first path segment picks the behaviour, the second is its number (bytes to send).
    """

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.closing = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.closing.set()
        self.listener.close()

    def _accept(self) -> None:
        while not self.closing.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(10)
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                request += chunk
            kind, _, number = request.split(b" ", 2)[1].decode().strip("/").partition("/")
            getattr(self, "_" + kind.replace("-", "_"))(conn, int(number or 0))
        except OSError:
            pass
        finally:
            conn.close()

    def _silent(self, conn: socket.socket, _: int) -> None:
        self.closing.wait(8)

    def _drip_headers(self, conn: socket.socket, _: int) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and not self.closing.is_set():
            conn.sendall(b"a")
            time.sleep(0.2)

    def _unsized(self, conn: socket.socket, size: int) -> None:
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: image/png\r\n\r\n")
        conn.sendall(png_of_size(size) if size >= 1000 else b"\0" * size)

    def _chunked(self, conn: socket.socket, size: int) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        conn.sendall(chunked(png_of_size(size)))

    def _garbage(self, conn: socket.socket, _: int) -> None:
        conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")

    def _hang_up(self, conn: socket.socket, _: int) -> None:
        pass


@pytest.fixture(scope="module")
def evil() -> EvilHost:
    host = EvilHost()
    yield host
    host.close()


REFUSED_URLS = [
    "http://[::]:{port}/a.png", "http://100.64.0.1/a.png", "http://172.16.0.1/a.png",
    "http://192.0.0.1/a.png", "http://192.0.2.1/a.png", "http://192.168.1.1/a.png",
    "http://198.18.0.1/a.png", "http://198.51.100.1/a.png", "http://203.0.113.1/a.png",
    "http://224.0.0.1/a.png", "http://240.0.0.1/a.png", "http://255.255.255.255/a.png",
    "http://[fc00::1]/a.png", "http://[fd12:3456::1]/a.png", "http://[fe80::1]/a.png",
    "http://[fe80::1%25lo]:{port}/a.png", "http://[ff02::1]/a.png", "http://[2001:db8::1]/a.png",
    "http://[::ffff:10.0.0.1]/a.png", "http://[::ffff:7f00:2]:{port}/a.png",
    "http://[::ffff:0.0.0.0]:{port}/a.png", "http://[::ffff:169.254.169.254]/latest/meta-data",
    "http://[::127.0.0.2]:{port}/a.png", "http://[64:ff9b::7f00:2]:{port}/a.png",
    "http://[64:ff9b::a00:1]/a.png", "http://[2002:7f00:2::1]:{port}/a.png",
    "http://0x7f000002:{port}/a.png", "http://0x7f.0.0.2:{port}/a.png", "http://127.2:{port}/a.png",
    "http://017700000002:{port}/a.png", "http://127.000.000.002:{port}/a.png",
    "http://0:{port}/a.png", "HTTP://127.0.0.2:{port}/a.png",
    "http://127.0.0.1:{port}@127.0.0.2:{port}/a.png", "https://127.0.0.2:{port}/a.png",
]


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_url_to_a_refused_address(hostile, webhost, nothing_stored, url):
    response = hostile.upload(url.format(port=webhost.port))
    assert_error(response, 400, 622, "Invalid image URL: address not allowed")


@pytest.mark.parametrize("status,target", [
    (301, "http://[::1]:{port}/a.png"), (302, "http://0.0.0.0:{port}/a.png"),
    (303, "http://2130706434:{port}/a.png"), (307, "http://[64:ff9b::7f00:2]:{port}/a.png"),
    (308, "http://169.254.169.254/latest/meta-data"), (302, "//10.0.0.1/a.png"),
    (302, "http://[::ffff:127.0.0.2]:{port}/a.png"),
])
def test_redirect_into_a_refused_address(hostile, webhost, nothing_stored, status, target):
    url = webhost.add(f"/hostile/jump-{zlib.crc32(target.encode())}", status=status,
                      location=target.format(port=webhost.port))
    assert_error(hostile.upload(url), 400, 622, "Invalid image URL: address not allowed")


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://127.0.0.1/a.png",
                                    "gopher://127.0.0.1:70/_GET", "data:image/png;base64,AAAA"])
def test_redirect_to_another_scheme(hostile, webhost, nothing_stored, target):
    url = webhost.add(f"/hostile/scheme-{target.split(':')[0]}", status=302, location=target)
    assert_error(hostile.upload(url), 400, 622, startswith="Invalid image URL: ")


def test_redirect_loop(hostile, webhost, nothing_stored):
    url = webhost.add("/hostile/loop", status=302, location="/hostile/loop")
    assert_error(hostile.upload(url), 400, 622, startswith="Invalid image URL: ")


def _redirect_chain(webhost, hops: int, tag: str) -> str:
    webhost.add(f"/hostile/{tag}-end.png", body=PNG)
    for i in range(hops):
        target = f"/hostile/{tag}-{i + 1}" if i + 1 < hops else f"/hostile/{tag}-end.png"
        webhost.add(f"/hostile/{tag}-{i}", status=302, location=target)
    return webhost.url(f"/hostile/{tag}-0")


def test_five_redirects_are_followed(hostile, webhost):
    assert_upload_ok(hostile.upload(_redirect_chain(webhost, 5, "five")))


def test_six_redirects_are_too_many(hostile, webhost, nothing_stored):
    assert_error(hostile.upload(_redirect_chain(webhost, 6, "six")), 400, 622,
                 startswith="Invalid image URL: ")


@pytest.mark.parametrize("path,message", [
    pytest.param("/silent", "Invalid image URL: timed out", id="never-answers"),
    pytest.param("/drip-headers", "Invalid image URL: timed out", id="drips-headers"),
    pytest.param(f"/unsized/{LIMIT + 1}", "Invalid image URL: too large", id="no-length-over-limit"),
    pytest.param(f"/chunked/{LIMIT + 1}", "Invalid image URL: too large", id="chunked-over-limit"),
])
def test_misbehaving_url_source(hostile, evil, nothing_stored, path, message):
    started = time.monotonic()
    assert_error(hostile.upload(evil.url(path)), 400, 622, message)
    assert time.monotonic() - started < URL_TIMEOUT + 3


@pytest.mark.parametrize("path", ["/garbage", "/hang-up"])
def test_url_source_that_is_no_http_server(hostile, evil, nothing_stored, path):
    assert_error(hostile.upload(evil.url(path)), 400, 622, startswith="Invalid image URL: ")


def test_url_body_shorter_than_its_length(hostile, webhost, nothing_stored):
    url = webhost.add("/hostile/short.png", body=PNG[:100], content_length=len(PNG))
    assert_error(hostile.upload(url), 400, 622, startswith="Invalid image URL: ")


@pytest.mark.parametrize("path", [f"/unsized/{LIMIT}", f"/chunked/{LIMIT}"])
def test_url_body_without_length_at_the_limit_is_accepted(hostile, evil, path):
    assert assert_upload_ok(hostile.upload(evil.url(path)))["size"] <= LIMIT


@pytest.mark.parametrize("url", [
    pytest.param("http://" + "a" * 100_000 + "/x.png", id="100k-host"),
    pytest.param("http://[::1/x.png", id="unclosed-bracket"),
    pytest.param("http://127.0.0.1:99999/x.png", id="port-out-of-range"),
    pytest.param("http:///x.png", id="no-host"),
])
def test_malformed_url(hostile, nothing_stored, url):
    assert_error(hostile.upload(url), 400, 622, startswith="Invalid image URL: ")


# ---------------------------------------------------------------------------------------------
# Access: keys and delete secrets

@pytest.fixture(scope="module")
def revoked_key(hostile) -> str:
    key = hostile.command("key", "create", "--label", "hostile-revoked").stdout.strip()
    assert_upload_ok(hostile.upload(PNG, api_key=key))
    listing = hostile.command("key", "list").stdout
    key_id = next(line.split("\t")[0] for line in listing.splitlines() if "hostile-revoked" in line)
    assert hostile.command("key", "revoke", key_id).returncode == 0
    return key


def _keyed(method: str, path: str, where: str, key: str | None):
    def send(srv: Helpers) -> requests.Response:
        headers, params, data, files = {}, {}, {}, None
        if key is not None and where == "header":
            headers["X-API-Key"] = key
        elif key is not None and where == "query":
            params["key"] = key
        elif key is not None:
            data["key"] = key
        if method == "POST":
            files = {"source": ("a.png", PNG)}
        return srv.request(method, path, headers=headers, params=params,
                           data=data or None, files=files, allow_redirects=False, timeout=30)
    return send


KEYED_ROUTES = [("POST", "/api/1/upload"), ("GET", "/api/1/upload"), ("POST", "/api/1/upload/"),
                ("GET", "/api/1/upload/"), ("GET", "/sharex.sxcu")]


@pytest.mark.parametrize("method,path", KEYED_ROUTES)
def test_route_without_a_key(hostile, nothing_stored, method, path):
    assert_error(_keyed(method, path, "header", None)(hostile), 401, 100, "No key provided")


@pytest.mark.parametrize("method,path,where", [
    (method, path, where) for method, path in KEYED_ROUTES for where in ("header", "query", "form")
    if not (where == "form" and method == "GET")])
def test_route_with_a_revoked_key(hostile, revoked_key, nothing_stored, method, path, where):
    assert_error(_keyed(method, path, where, revoked_key)(hostile), 401, 100, "Invalid API key.")


def _hash_of_the_key(srv: Helpers) -> str:
    return hashlib.sha256(srv.key.encode()).hexdigest()


HOSTILE_KEYS: dict[str, Callable[[Helpers], str]] = {
    "100k-characters": lambda s: "imgz_" + "x" * 100_000,
    "sql-injection": lambda s: "' OR '1'='1",
    "prefix-only": lambda s: "imgz_",
    "key-plus-one-char": lambda s: s.key + "x",
    "key-minus-one-char": lambda s: s.key[:-1],
    "key-upper-cased": lambda s: s.key.upper(),
    "its-stored-hash": _hash_of_the_key,
    "latin-1": lambda s: "imgz_\xe9\xe8",
}


@pytest.mark.parametrize("case", list(HOSTILE_KEYS))
def test_hostile_key(hostile, nothing_stored, case):
    assert_error(hostile.upload(PNG, api_key=HOSTILE_KEYS[case](hostile)), 401, 100,
                 "Invalid API key.")


@pytest.fixture(scope="module")
def victims(hostile) -> tuple[dict, dict]:
    return (assert_upload_ok(hostile.upload(PNG, filename="victim.png")),
            assert_upload_ok(hostile.upload(PNG, filename="other.png")))


def _secret(image: dict) -> str:
    return image["delete_url"].rsplit("/", 1)[1]


WRONG_SECRETS: dict[str, Callable[[dict, dict], str]] = {
    "another-uploads-secret": lambda a, b: _secret(b),
    "empty": lambda a, b: "",
    "10000-chars": lambda a, b: "f" * 10_000,
    "upper-cased": lambda a, b: _secret(a).upper(),
    "one-char-short": lambda a, b: _secret(a)[:-1],
    "one-char-long": lambda a, b: _secret(a) + "0",
    "percent-nul": lambda a, b: "%00",
    "encoded-traversal": lambda a, b: "..%2f..%2f",
    "sql": lambda a, b: quote("' OR '1'='1"),
}


def _raw(srv: InProcess, method: str, path: str, headers: dict | None = None) -> tuple[int, str, bytes]:
    """A request with its path sent exactly as given (no client-side normalisation)."""
    response = srv.raw(method, path, headers)
    return response.status_code, response.headers.get("Content-Type", ""), response.content


@pytest.mark.parametrize("accept", ["application/json", "text/html"])
@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
@pytest.mark.parametrize("case", list(WRONG_SECRETS))
def test_wrong_delete_secret_deletes_nothing(hostile, victims, nothing_stored, case, method, accept):
    victim, other = victims
    path = victim["url_short"][len(hostile.url):] + "/delete/" + WRONG_SECRETS[case](victim, other)
    status, content_type, body = _raw(hostile, method, path, {"Accept": accept})
    assert status == 404
    if content_type.startswith("application/json"):
        assert json.loads(body)["status_code"] == 404
    for image in victims:
        assert hostile.get(image["url"]).status_code == 200


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_other_methods_on_a_delete_url_delete_nothing(hostile, victims, nothing_stored, method):
    victim, _ = victims
    status, _, _ = _raw(hostile, method, victim["delete_url"][len(hostile.url):])
    assert status == 405
    assert hostile.get(victim["url"]).status_code == 200


NOT_IDS = ["..", ".", "%2e%2e", "..%2f..%2fimgz.db", "%00", "'%20OR%201=1--", "%3Cscript%3E",
           "a" * 5_000, "%C3%A9%C3%A9", "%FF%FE", "-", "x.y.z", "a%0d%0aX-Evil:%201"]


@pytest.mark.parametrize("route", ["/image/{}", "/clip/{}", "/image/{}/delete/abc"])
@pytest.mark.parametrize("ident", NOT_IDS)
def test_id_that_is_not_base62(hostile, nothing_stored, route, ident):
    status, _, body = _raw(hostile, "GET", route.format(ident))
    assert status == 404
    assert b"SQLite format" not in body


@pytest.mark.parametrize("path", [
    "/images/../imgz.db", "/images/%2e%2e/imgz.db", "/images/2024/01/01/..%2f..%2f..%2f..%2fimgz.db",
    "/images//etc/passwd", "/images/%00", "/images/2024/01/01/x.png%00.jpg", "/images/..%5cimgz.db",
    "/images/2024/01/01/%2e%2e/%2e%2e/%2e%2e/%2e%2e/imgz.db",
])
def test_file_path_never_leaves_the_media_folder(hostile, nothing_stored, path):
    status, _, body = _raw(hostile, "GET", path)
    assert status == 404
    assert b"SQLite format" not in body


HOSTILE_NUMBERS = {"5000-digits": "9" * 5_000, "over-64-bits": "99999999999999999999999",
                   "superscript-two": "²"}


def test_hostile_page_number_on_a_tag_page(hostile):
    assert_upload_ok(hostile.upload(PNG, tags="pages"))
    for label, page in HOSTILE_NUMBERS.items():
        response = hostile.get("/tag/pages", params={"page": page})
        assert response.status_code == 404, label


def test_hostile_size_limits_on_oembed_are_ignored(hostile, victims):
    for label, value in HOSTILE_NUMBERS.items():
        response = hostile.get("/oembed", params={"url": victims[0]["url_viewer"], "maxwidth": value})
        assert response.status_code == 200, label
        assert response.json()["type"] == "photo"


def test_server_still_answers_after_all_that(hostile):
    assert_upload_ok(hostile.upload(PNG))
    assert hostile.tmp_files() == []


def _private_hosts_server(tmp_path) -> LiveServer:
    """A server in a mount namespace of its own whose /etc/hosts names refused addresses."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare for a private /etc/hosts")
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 fine.test\n127.0.0.2 inside.test\n::1 inside6.test\n"
                     "10.1.2.3 intranet.test\n169.254.169.254 metadata.test\n")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("this machine does not allow a private mount namespace")
    script = f'mount --bind {hosts} /etc/hosts && exec "$@"'
    return LiveServer(tmp_path / "data", {"IMGZ_URL_ALLOW_NETS": "127.0.0.1/32", "IMGZ_URL_TIMEOUT": "3"},
                      prefix=["unshare", "-m", "sh", "-c", script, "sh"])


@pytest.fixture(scope="module")
def private_hosts(tmp_path_factory):
    srv = _private_hosts_server(tmp_path_factory.mktemp("hosts"))
    yield srv
    srv.stop()


@pytest.mark.parametrize("name", ["inside.test", "inside6.test", "intranet.test", "metadata.test"])
def test_host_name_resolving_to_a_refused_address(private_hosts, webhost, name):
    rows = private_hosts.rows()
    response = private_hosts.upload(f"http://{name}:{webhost.port}/a.png")
    assert_error(response, 400, 622, "Invalid image URL: address not allowed")
    assert private_hosts.rows() == rows and private_hosts.tmp_files() == []


def test_host_name_resolving_to_an_allowed_address_is_fetched(private_hosts, webhost):
    url = webhost.add("/hostile/by-name.png", body=PNG, content_type="image/png")
    response = private_hosts.upload(url.replace("127.0.0.1", "fine.test"))
    assert assert_upload_ok(response)["original_filename"] == "by-name.png"


def test_redirect_to_a_name_resolving_to_a_refused_address(private_hosts, webhost):
    url = webhost.add("/hostile/to-name", status=302,
                      location=f"http://inside.test:{webhost.port}/a.png")
    assert_error(private_hosts.upload(url), 400, 622, "Invalid image URL: address not allowed")
