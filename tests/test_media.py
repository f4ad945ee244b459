from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageDraw, JpegImagePlugin

import media as m
from imgz import filetype, jpeg, media
from imgz.probe import MIME, ImageProbe, oriented_size, probe_image
from imgz.errors import ImageTooLarge, InvalidImage

LIMITS = dict(max_pixels=100_000_000, max_animation_pixels=1_000_000_000)


def write(tmp_path: Path, data: bytes, name: str = "upload") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def probe(tmp_path: Path, data: bytes, **limits: int) -> ImageProbe:
    path = write(tmp_path, data)
    fmt = filetype.sniff(path)
    assert fmt is not None
    return probe_image(path, fmt, **{**LIMITS, **limits})


def render(tmp_path: Path, data: bytes, ext: str | None = None, **options) -> media.Rendered:
    src = write(tmp_path, data)
    fmt = filetype.sniff(src)
    info = probe_image(src, fmt, **LIMITS)
    work = tmp_path / "work"
    work.mkdir()
    return media.render_image(src, info, work_dir=work, ext=ext or fmt, **options)


def opened(variant: media.Variant) -> Image.Image:
    im = Image.open(variant.path)
    assert im.size == (variant.width, variant.height)
    assert variant.size == variant.path.stat().st_size
    return im


def ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = major + b"\0\0\0\0" + b"".join(compatible)
    return struct.pack(">I", len(body) + 8) + b"ftyp" + body + b"\0\0\0\x08free"


def ebml(doctype: bytes) -> bytes:
    elements = b"\x42\x86\x81\x01" + b"\x42\x82" + bytes([0x80 | len(doctype)]) + doctype
    return b"\x1a\x45\xdf\xa3" + bytes([0x80 | len(elements)]) + elements + b"\x18\x53\x80\x67"


def two_tone(w: int, h: int) -> Image.Image:
    """Red on the left half, blue on the right: shows where a rotation put things."""
    im = Image.new("RGB", (w, h), (0, 0, 255))
    ImageDraw.Draw(im).rectangle((0, 0, w // 2 - 1, h), fill=(255, 0, 0))
    return im


# ---------------------------------------------------------------------------------------------
# sniff

SNIFFED = [
    pytest.param(lambda: m.jpeg(8, 8), "jpeg", id="jpeg"),
    pytest.param(lambda: m.jpeg(8, 8, progressive=True), "jpeg", id="jpeg-progressive"),
    pytest.param(lambda: m.png(8, 8), "png", id="png"),
    pytest.param(lambda: m.apng(8, 8, 2), "png", id="apng"),
    pytest.param(lambda: m.gif(8, 8), "gif", id="gif"),
    pytest.param(lambda: m.webp(8, 8), "webp", id="webp"),
    pytest.param(lambda: m.webp(8, 8, lossless=False), "webp", id="webp-lossy"),
    pytest.param(lambda: m.avif(8, 8), "avif", id="avif"),
    pytest.param(lambda: m.bmp(8, 8), "bmp", id="bmp"),
    pytest.param(lambda: m.video("mp4"), "mp4", id="mp4"),
    pytest.param(lambda: m.video("mov"), "mov", id="mov"),
    pytest.param(lambda: m.video("webm"), "webm", id="webm"),
    pytest.param(lambda: ftyp(b"avis", b"avis", b"msf1"), "avif", id="avif-sequence"),
    pytest.param(lambda: ftyp(b"mif1", b"mif1", b"miaf", b"avif"), "avif", id="avif-compatible-brand"),
    pytest.param(lambda: ftyp(b"mp42", b"isom"), "mp4", id="mp4-mp42"),
    pytest.param(lambda: ftyp(b"3gp5", b"3gp5"), "mp4", id="3gp"),
    pytest.param(lambda: ftyp(b"M4V ", b"M4V "), "mp4", id="m4v"),
    pytest.param(lambda: ftyp(b"dash", b"iso6"), "mp4", id="dash"),
    pytest.param(lambda: ftyp(b"MSNV", b"MSNV"), "mp4", id="msnv"),
    pytest.param(lambda: ftyp(b"qt  ", b"qt  "), "mov", id="mov-header"),
    pytest.param(lambda: b"\0\0\0\x08wide\0\0\x10\0mdat" + bytes(64), "mov", id="mov-legacy"),
    pytest.param(lambda: ebml(b"webm"), "webm", id="webm-header"),
]

REFUSED = [
    pytest.param(b"", id="empty"),
    pytest.param(b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', id="svg"),
    pytest.param(b'<svg xmlns="http://www.w3.org/2000/svg"></svg>', id="svg-bare"),
    pytest.param(b"<!DOCTYPE html><html><body>hi</body></html>", id="html"),
    pytest.param(b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n", id="pdf"),
    pytest.param(b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(40), id="zip"),
    pytest.param(b"just some text\n", id="text"),
    pytest.param(b"BMW is a car, not a bitmap: text may start with BM", id="text-starting-BM"),
    pytest.param(b"#!/bin/sh\necho hi\n", id="script"),
    pytest.param(ftyp(b"heic", b"mif1", b"heic"), id="heic"),
    pytest.param(ebml(b"matroska"), id="matroska"),
    pytest.param(b"RIFF\x24\0\0\0WAVEfmt ", id="wav"),
    pytest.param(b"\xff\xd8", id="jpeg-two-bytes"),
]


@pytest.mark.parametrize("make, expected", SNIFFED)
def test_sniff_recognises(tmp_path, make, expected):
    assert filetype.sniff(write(tmp_path, make())) == expected


@pytest.mark.parametrize("data", REFUSED)
def test_sniff_refuses(tmp_path, data):
    assert filetype.sniff(write(tmp_path, data)) is None


def test_every_sniffed_format_has_a_mime():
    assert {"jpeg", "png", "gif", "webp", "avif", "bmp", "mp4", "webm", "mov"} <= set(MIME)


# ---------------------------------------------------------------------------------------------
# probe: size, frames, animation, orientation

SHAPES = [
    pytest.param(lambda: m.jpeg(64, 48), "jpeg", 64, 48, 1, False, id="jpeg"),
    pytest.param(lambda: m.png(64, 48), "png", 64, 48, 1, False, id="png"),
    pytest.param(lambda: m.apng(64, 48, 3), "png", 64, 48, 3, True, id="apng"),
    pytest.param(lambda: m.gif(64, 48), "gif", 64, 48, 1, False, id="gif-still"),
    pytest.param(lambda: m.gif(64, 48, 4), "gif", 64, 48, 4, True, id="gif-animated"),
    pytest.param(lambda: m.webp(64, 48), "webp", 64, 48, 1, False, id="webp-still"),
    pytest.param(lambda: m.webp(64, 48, 3), "webp", 64, 48, 3, True, id="webp-animated"),
    pytest.param(lambda: m.avif(64, 48), "avif", 64, 48, 1, False, id="avif"),
    pytest.param(lambda: m.bmp(64, 48), "bmp", 64, 48, 1, False, id="bmp"),
]


@pytest.mark.parametrize("make, fmt, width, height, frames, animated", SHAPES)
def test_probe_shape(tmp_path, make, fmt, width, height, frames, animated):
    info = probe(tmp_path, make())
    assert (info.fmt, info.width, info.height, info.frames, info.is_animated) == (
        fmt, width, height, frames, animated)


@pytest.mark.parametrize("orientation, expected, size", [
    (None, 1, (40, 20)), (1, 1, (40, 20)), (2, 2, (40, 20)), (3, 3, (40, 20)), (4, 4, (40, 20)),
    (5, 5, (20, 40)), (6, 6, (20, 40)), (7, 7, (20, 40)), (8, 8, (20, 40)),
    (0, 1, (40, 20)), (9, 1, (40, 20)),
])
def test_probe_orientation(tmp_path, orientation, expected, size):
    info = probe(tmp_path, m.jpeg(40, 20, orientation=orientation))
    assert (info.width, info.height) == (40, 20)
    assert info.orientation == expected
    assert oriented_size(info) == size


def test_probe_orientation_of_png_exif(tmp_path):
    assert probe(tmp_path, m.png(40, 20, exif=m.exif_bytes(orientation=8))).orientation == 8


# ---------------------------------------------------------------------------------------------
# probe: title, description, 360, EXIF

TITLES = [
    pytest.param(lambda: m.jpeg(8, 8, xmp=m.xmp_packet(title="From XMP")), "From XMP", id="xmp"),
    pytest.param(lambda: m.jpeg(8, 8, exif=m.exif_bytes(xp_title="Été à Paris")), "Été à Paris",
                 id="exif-xptitle-utf16"),
    pytest.param(lambda: m.jpeg(8, 8, iptc=m.iptc_segment(object_name="Über IPTC")), "Über IPTC",
                 id="iptc-object-name"),
    pytest.param(lambda: m.png(8, 8, text={"Title": "PNG title"}), "PNG title", id="png-text"),
    pytest.param(lambda: m.png(8, 8, xmp=m.xmp_packet(title="PNG XMP")), "PNG XMP", id="png-xmp"),
    pytest.param(lambda: m.webp(8, 8, xmp=m.xmp_packet(title="WebP XMP")), "WebP XMP", id="webp-xmp"),
    pytest.param(lambda: m.jpeg(8, 8, xmp=m.xmp_packet(title="XMP wins"),
                                exif=m.exif_bytes(xp_title="EXIF"),
                                iptc=m.iptc_segment(object_name="IPTC")), "XMP wins",
                 id="xmp-before-exif-and-iptc"),
    pytest.param(lambda: m.jpeg(8, 8, exif=m.exif_bytes(xp_title="EXIF wins"),
                                iptc=m.iptc_segment(object_name="IPTC")), "EXIF wins",
                 id="exif-before-iptc"),
    pytest.param(lambda: m.jpeg(8, 8, xmp=m.xmp_packet(title="DCIM"),
                                exif=m.exif_bytes(xp_title="Real title")), "Real title",
                 id="boilerplate-falls-through"),
    pytest.param(lambda: m.jpeg(8, 8, exif=m.exif_bytes(xp_title="  padded \0")), "padded",
                 id="trimmed"),
    pytest.param(lambda: m.jpeg(8, 8, exif=m.exif_bytes(xp_title="   ")), None, id="blank"),
    pytest.param(lambda: m.png(8, 8, text={"Title": "default"}), None, id="default"),
    pytest.param(lambda: m.jpeg(8, 8), None, id="none"),
]


@pytest.mark.parametrize("make, expected", TITLES)
def test_probe_title(tmp_path, make, expected):
    assert probe(tmp_path, make()).title == expected


DESCRIPTIONS = [
    pytest.param(lambda: m.jpeg(8, 8, xmp=m.xmp_packet(description="From XMP")), "From XMP", id="xmp"),
    pytest.param(lambda: m.jpeg(8, 8, exif=m.exif_bytes(description="A lake")), "A lake",
                 id="exif-image-description"),
    pytest.param(lambda: m.jpeg(8, 8, exif=m.exif_bytes(description="Café au lait")),
                 "Café au lait", id="exif-utf8"),
    pytest.param(lambda: m.jpeg(8, 8, iptc=m.iptc_segment(caption="IPTC caption")), "IPTC caption",
                 id="iptc-caption"),
    pytest.param(lambda: m.png(8, 8, text={"Description": "PNG words"}), "PNG words", id="png-text"),
    pytest.param(lambda: m.jpeg(8, 8, xmp=m.xmp_packet(description="XMP wins"),
                                exif=m.exif_bytes(description="EXIF")), "XMP wins",
                 id="xmp-before-exif"),
    pytest.param(lambda: m.jpeg(8, 8, exif=m.exif_bytes(description="EXIF wins"),
                                iptc=m.iptc_segment(caption="IPTC")), "EXIF wins",
                 id="exif-before-iptc"),
    pytest.param(lambda: m.jpeg(8, 8, exif=m.exif_bytes(description="SONY DSC"),
                                iptc=m.iptc_segment(caption="Real caption")), "Real caption",
                 id="boilerplate-falls-through"),
    pytest.param(lambda: m.jpeg(8, 8, exif=m.exif_bytes(description="Line one\nline two  ")),
                 "Line one\nline two", id="inner-newline-kept"),
]
BOILERPLATE = ["OLYMPUS DIGITAL CAMERA", "olympus digital camera", "SONY DSC", "DCIM", "default",
               "KONICA MINOLTA DIGITAL CAMERA", "KODAK Digital Still Camera", "DIGITAL CAMERA",
               "Exif_JPEG_PICTURE", "DCIM\\100MEDIA", "DCIM/100APPLE", "Samsung DIGITAL CAMERA",
               "     ", "\0\0\0"]
REAL_DESCRIPTIONS = ["Review of my Nikon digital camera", "I bought a digital camera",
                     "dcim backup from my trip to Rome", "Photo", "Camera", "Image"]


@pytest.mark.parametrize("make, expected", DESCRIPTIONS)
def test_probe_description(tmp_path, make, expected):
    assert probe(tmp_path, make()).description == expected


@pytest.mark.parametrize("value", BOILERPLATE)
def test_probe_ignores_camera_boilerplate(tmp_path, value):
    info = probe(tmp_path, m.jpeg(8, 8, exif=m.exif_bytes(description=value)))
    assert info.description is None


@pytest.mark.parametrize("value", REAL_DESCRIPTIONS)
def test_probe_keeps_a_description_that_only_mentions_a_camera(tmp_path, value):
    info = probe(tmp_path, m.jpeg(8, 8, exif=m.exif_bytes(description=value)))
    assert info.description == value


@pytest.mark.parametrize("xmp, expected", [
    pytest.param(m.xmp_packet(projection="equirectangular"), True, id="attribute"),
    pytest.param(m.xmp_packet(projection="equirectangular", projection_as_element=True), True,
                 id="element"),
    pytest.param(m.xmp_packet(projection="cylindrical"), False, id="other-projection"),
    pytest.param(m.xmp_packet(title="flat"), False, id="no-projection"),
    pytest.param(None, False, id="no-xmp"),
    pytest.param(b"<x:xmpmeta not closed", False, id="broken-xmp"),
    pytest.param(b'<!DOCTYPE x [<!ENTITY a "equirectangular">]><x GPano:ProjectionType="&a;" '
                 b'xmlns:GPano="http://ns.google.com/photos/1.0/panorama/"/>', False,
                 id="dtd-refused"),
])
def test_probe_is_360(tmp_path, xmp, expected):
    assert probe(tmp_path, m.jpeg(16, 8, xmp=xmp)).is_360 is expected


@pytest.mark.parametrize("make, expected", [
    pytest.param(lambda: m.jpeg(8, 8), False, id="jpeg-plain"),
    pytest.param(lambda: m.jpeg(8, 8, exif=m.exif_bytes(make="Acme")), True, id="jpeg-exif"),
    pytest.param(lambda: m.jpeg(8, 8, xmp=m.xmp_packet(title="t")), True, id="jpeg-xmp"),
    pytest.param(lambda: m.avif(8, 8), False, id="avif-plain"),
    pytest.param(lambda: m.avif(8, 8, exif=m.exif_bytes(make="Acme")), True, id="avif-exif"),
    pytest.param(lambda: m.avif(8, 8, xmp=m.xmp_packet(title="t")), True, id="avif-xmp"),
])
def test_probe_has_metadata(tmp_path, make, expected):
    assert probe(tmp_path, make()).has_metadata is expected


def test_probe_exif_json(tmp_path):
    exif = m.exif_bytes(make="Acme", orientation=6, xp_title="Titre", description="Desc",
                        date_time_original="2021:07:14 10:20:30", gps=(48.5, 2.25))
    info = probe(tmp_path, m.jpeg(8, 8, exif=exif))
    data = json.loads(info.exif_json)
    assert data["Make"] == "Acme"
    assert data["Orientation"] == 6
    assert data["XPTitle"] == "Titre"
    assert data["ImageDescription"] == "Desc"
    assert data["DateTimeOriginal"] == "2021:07:14 10:20:30"
    assert data["GPSLatitudeRef"] == "N"
    assert data["GPSLatitude"] == ["48/1", "30/1", "0/1"]
    assert "ExifOffset" not in data and "GPSInfo" not in data


def test_probe_without_exif_has_no_exif_json(tmp_path):
    assert probe(tmp_path, m.jpeg(8, 8)).exif_json is None


@pytest.mark.parametrize("exif, taken, offset", [
    pytest.param(dict(date_time_original="2020:01:02 03:04:05", offset_time_original="+02:00",
                      date_time="2022:02:02 02:02:02"), "2020:01:02 03:04:05", "+02:00",
                 id="original-first"),
    pytest.param(dict(date_time="2022:02:02 02:02:02"), "2022:02:02 02:02:02", None,
                 id="datetime-fallback"),
    pytest.param(dict(date_time_original="0000:00:00 00:00:00"), None, None, id="zero-date"),
    pytest.param(dict(make="Acme"), None, None, id="no-date"),
])
def test_probe_dates(tmp_path, exif, taken, offset):
    info = probe(tmp_path, m.jpeg(8, 8, exif=m.exif_bytes(**exif)))
    assert (info.date_taken, info.date_offset) == (taken, offset)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_probe_survives_damaged_exif(tmp_path):
    info = probe(tmp_path, m.jpeg(8, 8, exif=b"Exif\0\0II*\0\xff\xff\xff\x7f garbage"))
    assert (info.orientation, info.title, info.exif_json) == (1, None, None)


# ---------------------------------------------------------------------------------------------
# probe: limits and damage

def gif_with_frame(screen: tuple[int, int], frame: tuple[int, int]) -> bytes:
    """A GIF whose one image descriptor claims `frame` on a logical screen of `screen`."""
    return (b"GIF89a" + struct.pack("<HHBBB", *screen, 0, 0, 0)
            + b"\x2c" + struct.pack("<HHHHB", 0, 0, *frame, 0x80) + bytes(6)
            + b"\x02\x02\x4c\x01\x00" + b"\x3b")


@pytest.mark.parametrize("data, limits", [
    pytest.param(m.png_header(60000, 60000), {}, id="png-declaring-60000x60000"),
    pytest.param(m.png_header(60000, 60000), dict(max_pixels=10**10, max_animation_pixels=10**11),
                 id="past-pillow-own-guard"),
    pytest.param(m.webp_header(16383, 16383), {}, id="webp-declaring-16383x16383"),
    pytest.param(m.webp_header(200, 100), dict(max_pixels=19_999), id="webp-canvas"),
    pytest.param(m.png(101, 100, color="red"), dict(max_pixels=10_000), id="one-row-too-many"),
    pytest.param(m.gif(50, 40, 4), dict(max_animation_pixels=4 * 50 * 40 - 1), id="gif-frames"),
    pytest.param(m.apng(50, 40, 3), dict(max_animation_pixels=3 * 50 * 40 - 1), id="apng-frames"),
    pytest.param(m.webp(50, 40, 3), dict(max_animation_pixels=3 * 50 * 40 - 1), id="webp-frames"),
    pytest.param(gif_with_frame((1, 1), (5000, 5000)), dict(max_pixels=1_000_000),
                 id="gif-frame-beyond-tiny-screen"),
])
def test_probe_refuses_too_large(tmp_path, data, limits):
    with pytest.raises(ImageTooLarge):
        probe(tmp_path, data, **limits)


@pytest.mark.parametrize("data, limits", [
    pytest.param(m.png(100, 100, color="red"), dict(max_pixels=10_000), id="exactly-max-pixels"),
    pytest.param(m.gif(50, 40, 4), dict(max_animation_pixels=4 * 50 * 40), id="exactly-max-animation"),
    pytest.param(m.jpeg(50, 40), dict(max_animation_pixels=2000), id="still-counts-one-frame"),
])
def test_probe_accepts_at_the_limit(tmp_path, data, limits):
    probe(tmp_path, data, **limits)


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_probe_pillow_bomb_warning_raised_as_error_is_too_large(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1500)
    with pytest.raises(ImageTooLarge):
        probe(tmp_path, m.png(50, 40, color="red"))


@pytest.mark.parametrize("data", [
    pytest.param(b"\x89PNG\r\n\x1a\n" + b"\0" * 30, id="png-garbage"),
    pytest.param(b"\xff\xd8\xff\xe0\0\x10JFIF", id="jpeg-header-only"),
    pytest.param(b"GIF89a\x01", id="gif-short"),
    pytest.param(b"RIFF\0\0\0\0WEBPVP8 ", id="webp-header-only"),
    pytest.param(b"BM" + bytes(12) + b"\x28\0\0\0" + bytes(8), id="bmp-header-only"),
])
def test_probe_refuses_damaged(tmp_path, data):
    with pytest.raises(InvalidImage):
        probe(tmp_path, data)


# ---------------------------------------------------------------------------------------------
# render: sizes

SIZES = [
    # data, options, original, medium, thumb side
    pytest.param(lambda: m.jpeg(1920, 1080), {}, (1920, 1080), (500, 281), 320, id="1920x1080"),
    pytest.param(lambda: m.jpeg(300, 200), {}, (300, 200), None, 200, id="300x200"),
    pytest.param(lambda: m.jpeg(600, 300), {}, (600, 300), (500, 250), 300, id="600x300"),
    pytest.param(lambda: m.jpeg(500, 400), {}, (500, 400), None, 320, id="exactly-500-wide"),
    pytest.param(lambda: m.jpeg(1080, 1920), {}, (1080, 1920), (500, 889), 320, id="portrait"),
    pytest.param(lambda: m.jpeg(1000, 100), {}, (1000, 100), (500, 50), 100, id="panorama"),
    pytest.param(lambda: m.png(1, 1), {}, (1, 1), None, 1, id="1x1"),
    pytest.param(lambda: m.screenshot(), {}, (1920, 1080), (500, 281), 320, id="screenshot-png"),
    pytest.param(lambda: m.jpeg(1920, 1080), dict(width=800), (800, 450), (500, 281), 320,
                 id="width-800"),
    pytest.param(lambda: m.jpeg(1920, 1080), dict(width=4000), (1920, 1080), (500, 281), 320,
                 id="width-above"),
    pytest.param(lambda: m.jpeg(1920, 1080), dict(width=1920), (1920, 1080), (500, 281), 320,
                 id="width-equal"),
    pytest.param(lambda: m.png(1000, 100), dict(width=3), (3, 1), None, 1, id="width-tiny"),
    pytest.param(lambda: m.png(999, 333), dict(width=500), (500, 167), None, 167, id="width-rounds"),
    pytest.param(lambda: m.jpeg(40, 20, orientation=6), {}, (20, 40), None, 20, id="orientation-6"),
    pytest.param(lambda: m.png(40, 20, exif=m.exif_bytes(orientation=6)), {}, (20, 40), None, 20,
                 id="png-orientation-6"),
    pytest.param(lambda: m.webp(40, 20, exif=m.exif_bytes(orientation=8)), {}, (20, 40), None, 20,
                 id="webp-orientation-8"),
    pytest.param(lambda: m.jpeg(1200, 800, orientation=8), dict(width=600), (600, 900), (500, 750),
                 320, id="orientation-8-and-width"),
]


@pytest.mark.parametrize("make, options, original, medium, side", SIZES)
def test_render_sizes(tmp_path, make, options, original, medium, side):
    out = render(tmp_path, make(), **options)
    assert opened(out.original).size == original
    assert (opened(out.medium).size if out.medium else None) == medium
    assert opened(out.thumb).size == (side, side)


def test_render_width_above_original_keeps_the_upload(tmp_path):
    data = m.jpeg(640, 480)
    out = render(tmp_path, data, width=5000)
    assert out.changed is False
    assert out.original.path.read_bytes() == data


def test_render_writes_only_into_work_dir_with_the_stored_extension(tmp_path):
    out = render(tmp_path, m.jpeg(900, 600), ext="jpg")
    work = tmp_path / "work"
    assert sorted(p.name for p in work.iterdir()) == ["medium.jpg", "original.jpg", "thumb.jpg"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["upload", "work"]
    assert {v.ext for v in (out.original, out.medium, out.thumb)} == {"jpg"}
    assert {v.mime for v in (out.original, out.medium, out.thumb)} == {"image/jpeg"}


def test_render_thumb_cut_from_full_image_when_medium_too_short(tmp_path):
    # 600x300: the medium is 250 tall, so the 300 px thumb must come from the full image.
    out = render(tmp_path, m.png(600, 300))
    full = opened(out.original).convert("RGB")
    assert ImageChops.difference(opened(out.thumb).convert("RGB"),
                                 full.crop((150, 0, 450, 300))).getbbox() is None


def test_render_thumb_cut_from_medium_when_tall_enough(tmp_path):
    out = render(tmp_path, m.png(1080, 1920))
    medium = opened(out.medium)
    assert medium.size == (500, 889)
    expected = medium.resize((320, 320), Image.LANCZOS, box=(0, 194, 500, 694), reducing_gap=3.0)
    assert ImageChops.difference(opened(out.thumb), expected).getbbox() is None


# ---------------------------------------------------------------------------------------------
# render: the stored original

def dominant(im: Image.Image, xy: tuple[int, int]) -> str:
    r, g, b = im.convert("RGB").getpixel(xy)[:3]
    return "red" if r > b else "blue"


@pytest.mark.parametrize("orientation, top_left, bottom_right", [
    (3, "blue", "red"), (6, "red", "blue"), (8, "blue", "red"),
])
def test_render_rotates_pixels_for_orientation(tmp_path, orientation, top_left, bottom_right):
    data = m.encode(two_tone(40, 20), "JPEG", quality=95,
                    exif=m.exif_bytes(orientation=orientation, make="Acme"))
    out = render(tmp_path, data)
    stored = opened(out.original)
    w, h = stored.size
    assert (dominant(stored, (2, 2)), dominant(stored, (w - 3, h - 3))) == (top_left, bottom_right)
    assert out.changed is True
    assert not stored.getexif()
    assert not opened(out.thumb).getexif()


def test_render_orientation_with_kept_metadata_resets_orientation(tmp_path):
    data = m.jpeg(40, 20, exif=m.exif_bytes(orientation=6, make="Acme"))
    out = render(tmp_path, data, keep_metadata=True)
    exif = opened(out.original).getexif()
    assert (exif[0x0112], exif[0x010F]) == (1, "Acme")
    assert opened(out.original).size == (20, 40)
    assert not opened(out.thumb).getexif()


def test_render_with_kept_metadata_carries_png_text_through_a_resize(tmp_path):
    data = m.png(800, 400, text={"Title": "Harbour", "Author": "Ann"}, exif=m.exif_bytes(make="Acme"),
                 xmp=m.xmp_packet(title="Harbour"))
    out = render(tmp_path, data, width=600, keep_metadata=True)
    stored = opened(out.original)
    assert stored.size == (600, 300)
    assert stored.text["Title"] == "Harbour" and stored.text["Author"] == "Ann"
    assert "Harbour" in stored.text["XML:com.adobe.xmp"]
    assert stored.getexif()[0x010F] == "Acme"
    assert not getattr(opened(out.thumb), "text", {})


def test_render_with_kept_metadata_carries_a_jpeg_comment_through_a_rotation(tmp_path):
    data = m.jpeg(40, 20, exif=m.exif_bytes(orientation=6), comment=b"kept note")
    out = render(tmp_path, data, keep_metadata=True)
    stored = opened(out.original)
    assert stored.size == (20, 40) and stored.info["comment"] == b"kept note"
    assert "comment" not in opened(out.thumb).info


def test_render_strips_metadata_losslessly(tmp_path):
    data = m.jpeg(640, 480, exif=m.exif_bytes(make="Acme", gps=(1.5, 2.5)),
                  xmp=m.xmp_packet(title="t"), comment=b"hello", icc=True)
    out = render(tmp_path, data)
    stored = opened(out.original)
    assert out.changed is True
    assert not {"exif", "xmp", "comment"} & set(stored.info)
    assert stored.info["icc_profile"] == m.icc_profile()
    assert stored.tobytes() == Image.open(write(tmp_path, data, "again")).tobytes()


def test_render_keep_metadata_stores_the_upload(tmp_path):
    data = m.jpeg(640, 480, exif=m.exif_bytes(make="Acme"))
    out = render(tmp_path, data, keep_metadata=True)
    assert out.changed is False
    assert out.original.path.read_bytes() == data


def test_render_variants_never_carry_exif(tmp_path):
    out = render(tmp_path, m.jpeg(800, 600, exif=m.exif_bytes(make="Acme", gps=(1.0, 2.0)),
                                  xmp=m.xmp_packet(title="t"), comment=b"c"), keep_metadata=True)
    for variant in (out.medium, out.thumb):
        assert not {"exif", "xmp", "comment"} & set(opened(variant).info)


@pytest.mark.parametrize("make, options", [
    pytest.param(lambda: m.gif(600, 300, 3, comment=b"secret"), {}, id="gif-animated"),
    pytest.param(lambda: m.gif(600, 300, 3, comment=b"secret"), dict(width=550), id="gif-resized"),
    pytest.param(lambda: m.gif(600, 300, comment=b"secret"), dict(width=550), id="gif-still"),
    pytest.param(lambda: m.jpeg(600, 300, comment=b"secret"), dict(width=550), id="jpeg"),
])
def test_render_reencoded_files_carry_no_comment(tmp_path, make, options):
    out = render(tmp_path, make(), **options)
    for variant in (out.original, out.medium, out.thumb):
        assert b"secret" not in variant.path.read_bytes(), variant.path.name


def test_render_bmp_becomes_png(tmp_path):
    data = m.bmp(64, 48)
    out = render(tmp_path, data, ext="png")
    stored = opened(out.original)
    assert stored.format == "PNG"
    assert (out.original.mime, out.original.path.name) == ("image/png", "original.png")
    assert out.changed is True
    assert stored.tobytes() == Image.open(write(tmp_path, data, "bmp")).tobytes()
    assert opened(out.thumb).format == "PNG"


@pytest.mark.parametrize("make, keep, changed", [
    pytest.param(lambda: m.avif(64, 48, exif=m.exif_bytes(make="Acme")), False, True, id="exif"),
    pytest.param(lambda: m.avif(64, 48, xmp=m.xmp_packet(title="t")), False, True, id="xmp"),
    pytest.param(lambda: m.avif(64, 48), False, False, id="plain"),
    pytest.param(lambda: m.avif(64, 48, exif=m.exif_bytes(make="Acme")), True, False, id="kept"),
])
def test_render_avif_reencoded_only_for_metadata(tmp_path, make, keep, changed):
    data = make()
    out = render(tmp_path, data, keep_metadata=keep)
    stored = opened(out.original)
    assert out.changed is changed
    assert (out.original.path.read_bytes() == data) is not changed
    if changed:
        assert not {"exif", "xmp"} & set(stored.info)


# ---------------------------------------------------------------------------------------------
# render: animation

def frames_of(variant: media.Variant) -> list[int]:
    im = opened(variant)
    durations = []
    for index in range(getattr(im, "n_frames", 1)):
        im.seek(index)
        im.load()  # WebP tells a frame's duration once it is decoded
        durations.append(im.info.get("duration"))
    return durations


@pytest.mark.parametrize("make, ext", [
    pytest.param(lambda: m.gif(600, 300, 4), "gif", id="gif"),
    pytest.param(lambda: m.apng(600, 300, 3), "png", id="apng"),
    pytest.param(lambda: m.webp(600, 300, 3), "webp", id="webp"),
])
def test_render_animated_medium_moves_and_thumb_is_still(tmp_path, make, ext):
    data = make()
    out = render(tmp_path, data)
    medium, thumb = opened(out.medium), opened(out.thumb)
    frames = Image.open(write(tmp_path, data, "src")).n_frames
    assert medium.size == (500, 250)
    assert medium.n_frames == frames and medium.is_animated
    assert frames_of(out.medium) == [80] * frames
    assert thumb.size == (300, 300) and getattr(thumb, "n_frames", 1) == 1
    assert medium.info.get("loop") == 0
    assert out.original.path.read_bytes() == data or out.changed


def test_render_small_animation_is_its_own_medium(tmp_path):
    out = render(tmp_path, m.gif(300, 200, 4))
    assert out.medium.path.read_bytes() == out.original.path.read_bytes()
    assert (out.medium.width, out.medium.height, out.medium.size) == (300, 200, out.original.size)
    assert opened(out.medium).n_frames == 4
    assert getattr(opened(out.thumb), "n_frames", 1) == 1


@pytest.mark.parametrize("make, ext", [
    pytest.param(lambda: m.gif(600, 300, 4), "gif", id="gif"),
    pytest.param(lambda: m.apng(600, 300, 3), "png", id="apng"),
    pytest.param(lambda: m.webp(600, 300, 3), "webp", id="webp"),
])
def test_render_width_keeps_animation(tmp_path, make, ext):
    data = make()
    out = render(tmp_path, data, width=400)
    stored = opened(out.original)
    frames = Image.open(write(tmp_path, data, "src")).n_frames
    assert stored.size == (400, 200) and stored.n_frames == frames
    assert frames_of(out.original) == [80] * frames
    assert out.changed is True
    # Now at most 500 wide: the animated medium is the stored original itself.
    assert out.medium.path.read_bytes() == out.original.path.read_bytes()


def test_render_gif_that_plays_once_still_plays_once(tmp_path):
    out = render(tmp_path, m.gif(600, 300, 3, loop=None))
    assert "loop" not in opened(out.medium).info


def test_render_gif_keeps_transparency_and_clears_between_frames(tmp_path):
    frames = []
    for i in range(3):
        im = Image.new("RGBA", (600, 300), (0, 0, 0, 0))
        ImageDraw.Draw(im).ellipse((i * 200, 50, i * 200 + 150, 200), fill=(255, 0, 0, 255))
        frames.append(im)
    data = m.encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100,
                    loop=0, disposal=2)
    medium = opened(render(tmp_path, data).medium)
    medium.seek(2)
    last = medium.convert("RGBA")
    assert last.getpixel((5, 5))[3] == 0
    assert last.getpixel((62, 100))[3] == 0  # where the first frame's disc was
    assert last.getpixel((395, 100)) == (255, 0, 0, 255)


# ---------------------------------------------------------------------------------------------
# render: encoding

def quantization(data_or_path) -> dict:
    return Image.open(data_or_path).quantization


def test_render_jpeg_qualities(tmp_path):
    out = render(tmp_path, m.jpeg(1200, 800), width=1000)
    reference = Image.new("RGB", (64, 64))
    assert quantization(out.original.path) == quantization(
        write(tmp_path, m.encode(reference, "JPEG", quality=90), "q90"))
    assert quantization(out.medium.path) == quantization(
        write(tmp_path, m.encode(reference, "JPEG", quality=85), "q85"))


@pytest.mark.parametrize("subsampling", [0, 1, 2])
def test_render_keeps_chroma_subsampling(tmp_path, subsampling):
    out = render(tmp_path, m.jpeg(800, 600, subsampling=subsampling), width=700)
    for variant in (out.original, out.medium, out.thumb):
        assert JpegImagePlugin.get_sampling(opened(variant)) == subsampling


@pytest.mark.parametrize("make, options", [
    pytest.param(lambda: m.jpeg(800, 600, icc=True), dict(width=700), id="jpeg-width"),
    pytest.param(lambda: m.jpeg(800, 600, icc=True, orientation=6), {}, id="jpeg-rotated"),
    pytest.param(lambda: m.png(800, 600, icc=True, mode="RGBA"), dict(width=700), id="png-width"),
    pytest.param(lambda: m.webp(800, 600, icc=True), dict(width=700), id="webp-width"),
    pytest.param(lambda: m.avif(640, 480, icc=True, exif=m.exif_bytes(make="Acme")), {},
                 id="avif-with-exif"),
])
def test_render_keeps_icc_profile(tmp_path, make, options):
    out = render(tmp_path, make(), **options)
    assert out.changed is True
    for variant in (out.original, out.medium, out.thumb):
        assert opened(variant).info.get("icc_profile") == m.icc_profile(), variant.path.name


def test_render_variants_keep_icc_of_untouched_original(tmp_path):
    out = render(tmp_path, m.jpeg(900, 600, icc=True))
    assert out.changed is False
    for variant in (out.original, out.medium, out.thumb):
        assert opened(variant).info.get("icc_profile") == m.icc_profile(), variant.path.name


@pytest.mark.parametrize("make, mode", [
    pytest.param(lambda: m.png(700, 400, mode="RGBA"), "RGBA", id="rgba"),
    pytest.param(lambda: m.png(700, 400, mode="LA"), "LA", id="la"),
    pytest.param(lambda: m.encode(
        Image.new("P", (700, 400), 0).convert("P"), "PNG", transparency=0), "RGBA", id="palette"),
])
def test_render_png_variants_keep_transparency(tmp_path, make, mode):
    out = render(tmp_path, make())
    for variant in (out.medium, out.thumb):
        im = opened(variant)
        assert im.mode == mode
        assert im.getchannel("A").getextrema()[0] < 255


def test_render_cmyk_jpeg_stays_a_valid_cmyk_jpeg(tmp_path):
    out = render(tmp_path, m.jpeg(800, 600, mode="CMYK", color=(10, 200, 30, 5)), width=700)
    for variant in (out.original, out.medium, out.thumb):
        im = opened(variant)
        im.load()
        assert (im.format, im.mode) == ("JPEG", "CMYK")
        assert max(abs(a - b) for a, b in zip(im.getpixel((10, 10)), (10, 200, 30, 5))) <= 3


@pytest.mark.parametrize("make, ext", [
    pytest.param(lambda: m.webp(800, 600), "webp", id="webp"),
    pytest.param(lambda: m.avif(640, 480), "avif", id="avif"),
    pytest.param(lambda: m.gif(800, 600), "gif", id="gif-still"),
])
def test_render_variants_keep_the_format(tmp_path, make, ext):
    out = render(tmp_path, make())
    for variant in (out.medium, out.thumb):
        assert opened(variant).format == ext.upper()
        assert variant.mime == MIME[ext]


# ---------------------------------------------------------------------------------------------
# render: damage

def corrupt_png() -> bytes:
    data = bytearray(m.png(200, 100))
    start = data.index(b"IDAT") + 20
    data[start:start + 200] = bytes(200)
    return bytes(data)


@pytest.mark.parametrize("data, options", [
    pytest.param(m.jpeg(400, 300)[:3000], {}, id="truncated-jpeg"),
    pytest.param(m.jpeg(400, 300)[:3000], dict(width=100), id="truncated-jpeg-reencoded"),
    pytest.param(corrupt_png(), {}, id="corrupt-png-data"),
    pytest.param(m.gif(300, 200, 3)[:-4000], dict(width=100), id="truncated-gif"),
])
def test_render_damaged_is_invalid_image(tmp_path, data, options):
    with pytest.raises(InvalidImage):
        render(tmp_path, data, **options)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["upload", "work"]


# ---------------------------------------------------------------------------------------------
# render: one decode, reduced when it can be

@pytest.mark.parametrize("size, orientation, width, expected", [
    pytest.param((4000, 3000), None, None, (500, 375), id="medium-width-decides"),
    pytest.param((3000, 4000), None, None, (500, 667), id="portrait"),
    pytest.param((4000, 3000), 6, None, None, id="rotated-full-size-reencoded"),
    pytest.param((4000, 3000), 6, 1000, (1334, 1000), id="rotated-with-width"),
    pytest.param((4000, 3000), None, 1000, (1000, 750), id="target-width"),
    pytest.param((4000, 1000), None, None, (1280, 320), id="thumb-side-decides"),
    pytest.param((640, 480), None, None, (500, 375), id="small"),
    pytest.param((400, 300), None, None, None, id="no-medium-thumb-needs-all"),
])
def test_draft_request(tmp_path, size, orientation, width, expected):
    info = probe(tmp_path, m.jpeg(*size, color="gray", orientation=orientation))
    assert media.draft_request(info, media.plan_for(info, width)) == expected


class Spy:
    """Records calls of a real function and what it returned, and still calls it."""

    def __init__(self, monkeypatch, owner, name):
        self.calls = []
        real = getattr(owner, name)

        def spy(*args, **kwargs):
            result = real(*args, **kwargs)
            self.calls.append((args, result))
            return result
        monkeypatch.setattr(owner, name, spy)


def test_render_large_jpeg_decodes_at_reduced_size_once(tmp_path, monkeypatch):
    data = m.jpeg(4000, 3000)
    src = write(tmp_path, data)
    info = probe_image(src, "jpeg", **LIMITS)
    opens = Spy(monkeypatch, Image, "open")
    drafts = Spy(monkeypatch, JpegImagePlugin.JpegImageFile, "draft")
    (tmp_path / "work").mkdir()
    out = media.render_image(src, info, work_dir=tmp_path / "work", ext="jpeg")
    assert len(opens.calls) == 1
    assert [result for _, result in drafts.calls] == [("RGB", (0, 0, 500, 375))]
    assert opened(out.medium).size == (500, 375)
    assert out.original.path.read_bytes() == data


def test_render_without_draft_when_original_is_rotated(tmp_path, monkeypatch):
    data = m.jpeg(1600, 1200, orientation=3)
    drafts = Spy(monkeypatch, JpegImagePlugin.JpegImageFile, "draft")
    out = render(tmp_path, data)
    assert drafts.calls == []
    assert opened(out.original).size == (1600, 1200)


@pytest.mark.parametrize("make", [
    lambda: m.jpeg(120, 80, exif=m.exif_bytes(make="Phone", gps=(1.0, 2.0), xp_title="Pier",
                                              date_time_original="2020:01:02 03:04:05"),
                   xmp=m.xmp_packet(title="Harbour", description="Boats"), icc=True),
    lambda: m.jpeg(90, 60, progressive=True, comment=b"note", iptc=m.iptc_segment(object_name="Quay")),
    lambda: m.jpeg(50, 40, xmp=m.xmp_packet(projection="equirectangular")),
], ids=["exif-xmp-icc", "progressive-iptc", "360"])
def test_probe_of_a_header_matches_the_probe_of_the_upload(tmp_path, make):
    data = make()
    upload = write(tmp_path, data)
    written = bytearray()
    arrival = jpeg.JpegArrival(written.extend, media.strip_on_arrival)
    arrival.feed(data)
    stripped = arrival.finish()
    assert stripped is not None and stripped.changed
    on_disk = write(tmp_path, bytes(written), "stripped")
    assert probe_image(on_disk, "jpeg", header=stripped.header, **LIMITS) == \
        probe_image(upload, "jpeg", **LIMITS)


@pytest.mark.parametrize("orientation, allowed", [(None, True), (1, True), (3, False), (6, False),
                                                  (8, False), (9, True)])
def test_only_upright_jpegs_are_stripped_on_arrival(orientation, allowed):
    data = m.jpeg(40, 30, orientation=orientation)
    assert media.strip_on_arrival(data) is allowed
