"""Hostile metadata through the app: containers that carry a location past an old
deny-list, metadata that cannot be read, and structure no encoder writes."""
from __future__ import annotations

import base64
import io
import struct
import zlib
from typing import Callable, Iterator

import pytest
from PIL import Image

import media
from contract import assert_error, assert_upload_ok
from inprocess import InProcess

ICC = media.icc_profile()
GPS = media.exif_bytes(gps=(52.3702, 4.8952), make="Drone")
TOO_COMPLEX = (400, 400, "Image too complex")


@pytest.fixture(scope="module")
def srv(tmp_path_factory) -> Iterator[InProcess]:
    server = InProcess(tmp_path_factory.mktemp("metadata-hostile"))
    yield server
    server.stop()


@pytest.fixture
def nothing_stored(srv):
    rows, files = srv.rows(), srv.stored_files()
    yield
    assert srv.rows() == rows
    assert srv.stored_files() == files
    assert srv.tmp_files() == []
    assert srv.request("GET", "/", timeout=5).status_code == 200


def stored(srv: InProcess, image: dict) -> bytes:
    response = srv.get(image["url"])
    assert response.status_code == 200
    return response.content


def decoded(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


# --- builders -------------------------------------------------------------------------------------

def segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def riff_chunks(data: bytes) -> list[bytes]:
    kinds, i = [], 12
    while i < len(data):
        fourcc, length = struct.unpack("<4sI", data[i:i + 8])
        kinds.append(fourcc)
        i += 8 + length + (length & 1)
    return kinds


JUMBF = (struct.pack(">I", 40) + b"jumb" + struct.pack(">I", 32) + b"json"
         + b'{"GPS": "52.3702N 4.8952E"}     ')


def jpeg_with_jfxx() -> bytes:
    """A JPEG whose APP0 JFXX thumbnail is a whole JPEG with GPS in its own EXIF."""
    thumb = media.jpeg(16, 12, exif=GPS)
    base = media.jpeg(64, 48, icc=True)
    return base[:2] + segment(0xE0, b"JFXX\x00\x10" + thumb) + base[2:]


def png_with(*chunks: bytes) -> bytes:
    base = media.png(64, 48, icc=True)
    return base[:33] + b"".join(chunks) + base[33:]


def webp_with_c2pa() -> bytes:
    base = media.encode(media.picture(64, 48), "WEBP", lossless=True, exif=GPS,
                        icc_profile=ICC, xmp=media.xmp_packet(title="Secret place"))
    return media.with_webp_chunks(base, media.webp_chunk(b"C2PA", JUMBF))


# --- location data survives no container ----------------------------------------------------------

def test_jfxx_thumbnail_with_gps_is_dropped(srv):
    data = jpeg_with_jfxx()
    assert b"JFXX" in data and b"Drone" in data
    out = stored(srv, assert_upload_ok(srv.upload(data, filename="jfxx.jpeg")))
    assert b"JFXX" not in out and b"Drone" not in out and out.count(b"\xff\xd8") == 1
    im = decoded(out)
    assert im.info.get("icc_profile") == ICC and not im.getexif()


@pytest.mark.parametrize("chunks", [
    [media.png_chunk(b"caBX", JUMBF)],
    [media.png_chunk(b"prVt", b"GPS 52.3702N 4.8952E")],
    [media.png_chunk(b"gpSt", b"GPS 52.3702N 4.8952E")],
    [media.png_chunk(b"caBX", JUMBF), media.png_chunk(b"gpSt", b"GPS 52.3702N"), media.png_chunk(b"eXIf", GPS[6:])],
], ids=["caBX", "prVt", "gpSt", "all"])
def test_png_private_and_c2pa_chunks_are_dropped(srv, chunks):
    data = png_with(*chunks)
    out = stored(srv, assert_upload_ok(srv.upload(data, filename="chunks.png")))
    assert b"GPS" not in out and b"Drone" not in out and b"jumb" not in out
    assert media.png_chunks(out) == [k for k in media.png_chunks(data)
                               if k not in (b"caBX", b"prVt", b"gpSt", b"eXIf")]
    assert decoded(out).info.get("icc_profile") == ICC


def test_webp_c2pa_exif_and_xmp_chunks_are_dropped(srv):
    data = webp_with_c2pa()
    assert {b"C2PA", b"EXIF", b"XMP "} <= set(riff_chunks(data))
    out = stored(srv, assert_upload_ok(srv.upload(data, filename="c2pa.webp")))
    assert not {b"C2PA", b"EXIF", b"XMP "} & set(riff_chunks(out))
    assert b"jumb" not in out and b"Drone" not in out and b"Secret" not in out
    assert decoded(out).info.get("icc_profile") == ICC


@pytest.mark.parametrize("fmt", ["mp4", "mov", "webm"])
def test_video_subtitle_and_data_tracks_are_dropped(srv, tmp_path, fmt):
    from test_video import crowded_clip, ffmpeg_header, streams

    data = crowded_clip(tmp_path, fmt, subtitle=True, timecode=fmt != "webm", chapters=True)
    image = assert_upload_ok(srv.upload(data, filename=f"drone.{fmt}"))
    out = stored(srv, image)
    assert b"secret" not in out and b"GPS" not in out
    path = tmp_path / f"stored.{fmt}"
    path.write_bytes(out)
    header = ffmpeg_header(path)
    assert streams(header) == ["Video", "Audio"] and "Chapter" not in header
    assert (image["width"], image["height"]) == (240, 320)  # the rotation is kept


# --- unreadable metadata is ignored ---------------------------------------------------------------

def xmp_declaring(encoding: str) -> bytes:
    text = (f'<?xml version="1.0" encoding="{encoding}"?>'
            '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
            'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
            'xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title><rdf:Alt><rdf:li '
            'xml:lang="x-default">東京の写真</rdf:li></rdf:Alt></dc:title></rdf:Description>'
            '</rdf:RDF></x:xmpmeta>')
    try:
        return text.encode(encoding)
    except LookupError:
        return text.encode("utf-8")


XMP_CARRIERS: dict[str, Callable[[bytes], bytes]] = {
    "jpeg": lambda xmp: media.jpeg(40, 30, xmp=xmp),
    "png": lambda xmp: media.png(40, 30)[:33] + media.png_chunk(
        b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + xmp) + media.png(40, 30)[33:],
    "webp": lambda xmp: media.encode(media.picture(40, 30), "WEBP", lossless=True, xmp=xmp),
}


@pytest.mark.parametrize("encoding", ["shift_jis", "utf-32", "euc-jp", "x-no-such-encoding",
                                      "utf-16"])
@pytest.mark.parametrize("fmt", list(XMP_CARRIERS))
def test_xmp_in_an_unreadable_encoding_is_ignored(srv, fmt, encoding):
    data = XMP_CARRIERS[fmt](xmp_declaring(encoding))
    image = assert_upload_ok(srv.upload(data, filename=f"tokyo-photo.{fmt}"))
    assert image["title"] == "tokyo photo"
    decoded(stored(srv, image))


def png_with_text_chunk(kind: bytes, text: bytes, compress: bool) -> bytes:
    payload = b"Comment\x00" + (b"\x00" + zlib.compress(text) if compress else text)
    if kind == b"iTXt":
        payload = b"Comment\x00" + (b"\x01\x00" + b"\x00\x00" + zlib.compress(text) if compress
                                    else b"\x00\x00\x00\x00" + text)
    titled = media.png_chunk(b"tEXt", b"Title\x00Valley at dawn")
    return png_with(titled, media.png_chunk(kind, payload))


@pytest.mark.parametrize("kind, text, compress", [
    (b"zTXt", b"x" * 3_000_000, True),                        # inflates past MAX_TEXT_CHUNK
    (b"zTXt", bytes(range(256)) * 12_000, True),              # a 3 MB chunk, past it too
    (b"iTXt", b"y" * 3_000_000, True),
], ids=["zTXt-inflating", "zTXt-3MB", "iTXt-inflating"])
def test_png_with_text_past_pillows_limits_is_still_an_image(srv, kind, text, compress):
    data = png_with_text_chunk(kind, text, compress)
    image = assert_upload_ok(srv.upload(data, filename="big-text.png"))
    out = stored(srv, image)
    assert kind not in media.png_chunks(out) and b"tEXt" not in media.png_chunks(out)
    assert decoded(out).info.get("icc_profile") == ICC
    assert image["title"] == "Valley at dawn"  # the text that could be read still is


# --- structure no encoder writes ------------------------------------------------------------------

def repeated_scans(total: int, size: tuple[int, int] = (1024, 1024), **params) -> bytes:
    """A valid progressive JPEG whose last scan (an AC refinement) is repeated: the decoder
    accepts it and runs every copy over the whole image."""
    source = media.encode(Image.new("RGB", size, (120, 130, 140)), "JPEG", progressive=True,
                          **params)
    scan = source[source.rindex(b"\xff\xda"):-2]
    return source[:-2] + scan * (total - source.count(b"\xff\xda")) + b"\xff\xd9"


SOURCES = {
    "file": lambda srv, data, **kw: srv.upload(data, filename="scans.jpeg", **kw),
    "base64": lambda srv, data, **kw: srv.upload(base64.b64encode(data).decode(), **kw),
}


@pytest.mark.parametrize("scans", [101, 3000])
@pytest.mark.parametrize("variant", ["plain", "rotated", "width"])
@pytest.mark.parametrize("source", list(SOURCES))
def test_jpeg_with_thousands_of_scans_is_too_complex(srv, nothing_stored, source, variant, scans):
    params = {"exif": media.exif_bytes(orientation=6)} if variant == "rotated" else {}
    data = repeated_scans(scans, **params)
    fields = {"width": "100"} if variant == "width" else {}
    assert_error(SOURCES[source](srv, data, **fields), *TOO_COMPLEX)


def test_jpeg_with_a_hundred_scans_is_stored(srv):
    data = repeated_scans(100)
    out = stored(srv, assert_upload_ok(srv.upload(data, filename="scans.jpeg")))
    assert out == data and decoded(out).size == (1024, 1024)


def test_jpeg_with_millions_of_empty_segments_is_answered(srv, nothing_stored):
    plain = media.jpeg(64, 48)
    data = plain[:-2] + b"\xff\xef\x00\x02" * 2_000_000 + b"\xff\xd9"   # 8 MB
    assert_error(srv.upload(data, filename="segments.jpeg"), *TOO_COMPLEX)


def test_jpeg_with_a_megabyte_of_segments_before_the_scan_is_answered(srv, nothing_stored):
    plain = media.jpeg(64, 48)
    data = plain[:2] + b"\xff\xef\x00\x02" * 300_000 + plain[2:]
    assert_error(srv.upload(data, filename="segments.jpeg"), *TOO_COMPLEX)


@pytest.mark.parametrize("where", ["before_idat", "after_idat"])
def test_png_with_a_million_empty_chunks_is_answered(srv, nothing_stored, where):
    plain = media.png(64, 48)
    chunks = media.png_chunk(b"prVt", b"") * 1_000_000                       # 12 MB
    at = 33 if where == "before_idat" else len(plain) - 12
    data = plain[:at] + chunks + plain[at:]
    response = srv.upload(data, filename="chunks.png")
    assert_error(response, *TOO_COMPLEX)


def test_png_with_many_private_chunks_below_the_cap_is_stored_without_them(srv):
    plain = media.png(64, 48)
    data = plain[:-12] + media.png_chunk(b"prVt", b"GPS") * 20_000 + plain[-12:]
    out = stored(srv, assert_upload_ok(srv.upload(data, filename="chunks.png")))
    assert out == plain
