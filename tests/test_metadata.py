"""Lossless metadata removal: JPEG segments, PNG and WebP chunks, GIF blocks."""
from __future__ import annotations

import hashlib
import io
import random
import struct
import zlib
from pathlib import Path

import pytest
from PIL import ExifTags, Image, ImageCms, PngImagePlugin

import media
import imgz.chunks
from imgz import gifstrip, jpeg, jpegstrip, metadata, webpstrip
from imgz.chunks import MAX_CHUNKS, Reader
from imgz.errors import InvalidImage, TooComplex

# --- builders -----------------------------------------------------------------------------------

ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
# A C2PA manifest is a JUMBF box; what it holds here (a location assertion) is what must go.
JUMBF_GPS = (struct.pack(">I", 60) + b"jumb" + struct.pack(">I", 52) + b"json"
             + b'{"exif:GPSLatitude": "52,22.1N", "exif:GPS": 1}'[:44])
XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><dc:title>Secret place</dc:title></x:xmpmeta>'


def _noise(size: tuple[int, int] = (64, 48), mode: str = "RGB", seed: int = 1) -> Image.Image:
    """Random pixels, so the compressed data is full of 0xFF bytes and stuffing."""
    bands = len(mode)
    return Image.frombytes(mode, size, random.Random(seed).randbytes(size[0] * size[1] * bands))


def _save(im: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def _gps_exif(orientation: int = 1) -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.Base.Make] = "Phone"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (52.0, 22.0, 1.5)
    return exif


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def _after_soi(jpeg: bytes, *segments: bytes) -> bytes:
    return jpeg[:2] + b"".join(segments) + jpeg[2:]


def _app13_iptc() -> bytes:
    iptc = b"\x1c\x02\x05" + struct.pack(">H", 6) + b"Secret"
    block = b"8BIM" + b"\x04\x04" + b"\x00\x00" + struct.pack(">I", len(iptc)) + iptc
    return _segment(0xED, b"Photoshop 3.0\x00" + block)


def _extended_xmp() -> bytes:
    guid = b"0123456789ABCDEF0123456789ABCDEF"
    return _segment(0xE1, b"http://ns.adobe.com/xmp/extension/\x00" + guid
                    + struct.pack(">II", len(XMP), 0) + XMP)


def _jfxx_thumbnail() -> bytes:
    """An APP0 JFXX segment whose thumbnail is a whole JPEG with GPS in its own EXIF (code 0x10)."""
    thumb = _save(_noise((16, 12)), "JPEG", exif=_gps_exif())
    return _segment(0xE0, b"JFXX\x00\x10" + thumb)


def _photo_jpeg(**params) -> bytes:
    """A JPEG as a phone writes it, before the extra segments are spliced in."""
    return _save(_noise(), "JPEG", exif=_gps_exif(), xmp=XMP, comment="taken at home",
                 icc_profile=ICC, **params)


def _phone_jpeg() -> tuple[bytes, bytes]:
    """Return (upload, pillow_output): the upload adds IPTC, extended XMP and a second image."""
    base = _photo_jpeg()
    second = _save(_noise(seed=2), "JPEG", exif=_gps_exif())
    return _after_soi(base, _app13_iptc(), _extended_xmp()) + second, base


def _segments(jpeg: bytes) -> list[tuple[int, bytes]]:
    """The header segments up to and including the first SOS."""
    found, i = [], 2
    while True:
        marker = jpeg[i + 1]
        length = struct.unpack(">H", jpeg[i + 2:i + 4])[0]
        found.append((marker, jpeg[i + 4:i + 2 + length]))
        if marker == 0xDA:
            return found
        i += 2 + length


def _from_sos(jpeg: bytes) -> bytes:
    i = 2
    while jpeg[i + 1] != 0xDA:
        i += 2 + struct.unpack(">H", jpeg[i + 2:i + 4])[0]
    return jpeg[i:]


def _meta_png() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Title", "Secret place")
    info.add_text("Comment", "compressed " * 20, zip=True)
    info.add_itxt("Description", "in der Küche")
    info.add(b"tIME", struct.pack(">HBBBBB", 2024, 5, 17, 12, 30, 0))
    return _save(_noise(), "PNG", pnginfo=info, exif=_gps_exif(), icc_profile=ICC)


def _riff_chunks(webp: bytes) -> list[tuple[bytes, bytes]]:
    """Parse a WebP strictly, checking the RIFF size and the pad bytes."""
    riff, size, form = struct.unpack("<4sI4s", webp[:12])
    assert (riff, form, size) == (b"RIFF", b"WEBP", len(webp) - 8)
    chunks, i = [], 12
    while i < len(webp):
        fourcc, length = struct.unpack("<4sI", webp[i:i + 8])
        chunks.append((fourcc, webp[i + 8:i + 8 + length]))
        i += 8 + length + (length & 1)
    assert i == len(webp)
    return chunks


def _meta_webp() -> bytes:
    return _save(_noise(), "WEBP", lossless=True, exif=_gps_exif(), xmp=XMP, icc_profile=ICC)


def _frames(count: int = 3) -> list[Image.Image]:
    return [_noise((24, 16), seed=n).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
            for n in range(count)]


def _gif_xmp_extension() -> bytes:
    # XMP's own layout: raw text, then a "magic trailer" that any sub-block walk ends in.
    trailer = b"\x01" + bytes(range(255, -1, -1)) + b"\x00"
    return b"\x21\xff\x0bXMP DataXMP" + XMP + trailer


def _gif_header_end(gif: bytes) -> int:
    flags = gif[10]
    return 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)


def _meta_gif() -> bytes:
    frames = _frames()
    gif = _save(frames[0], "GIF", save_all=True, append_images=frames[1:], loop=0,
                duration=80, comment=b"taken at home")
    at = _gif_header_end(gif)
    return gif[:at] + _gif_xmp_extension() + gif[at:]


def _frames_of(data: bytes) -> list[bytes]:
    with Image.open(io.BytesIO(data)) as im:
        out = []
        for n in range(getattr(im, "n_frames", 1)):
            im.seek(n)
            out.append(im.convert("RGBA").tobytes())
        return out


@pytest.fixture
def run(tmp_path: Path):
    """Strip bytes through real files; return (changed, result bytes)."""
    def run(fmt: str, data: bytes) -> tuple[bool, bytes]:
        src, dst = tmp_path / "src", tmp_path / "dst"
        src.write_bytes(data)
        dst.unlink(missing_ok=True)
        changed = metadata.strip(fmt, src, dst)
        return changed, dst.read_bytes()
    return run


# --- JPEG ---------------------------------------------------------------------------------------

def test_phone_jpeg_keeps_scan_data_and_icc_and_loses_the_rest(run):
    upload, base = _phone_jpeg()
    changed, out = run("jpeg", upload)
    assert changed
    assert _from_sos(out) == _from_sos(base)
    assert _from_sos(upload).startswith(_from_sos(out))
    assert out.endswith(b"\xff\xd9") and out.count(b"\xff\xd8") == 1
    with Image.open(io.BytesIO(out)) as im:
        assert not im.getexif()
        assert not {"xmp", "comment", "photoshop", "exif", "mp"} & im.info.keys()
        assert im.info["icc_profile"] == ICC
        decoded = im.tobytes()
    with Image.open(io.BytesIO(upload)) as im:
        assert decoded == im.tobytes()


def test_phone_jpeg_keeps_only_jfif_icc_and_tables(run):
    upload, _ = _phone_jpeg()
    _, out = run("jpeg", upload)
    markers = [marker for marker, _ in _segments(out)]
    assert [m for m in markers if 0xE0 <= m <= 0xFE] == [0xE0, 0xE2]
    assert b"Secret" not in out and b"taken at home" not in out and b"Phone" not in out


@pytest.mark.parametrize("name, segment, kept", [
    ("jfif", _segment(0xE0, b"JFIF\x00\x01\x02\x00\x00\x01\x00\x01\x00\x00"), True),
    ("jfxx", _segment(0xE0, b"JFXX\x00\x13thumb"), False),
    ("jfxx_jpeg_with_gps", _jfxx_thumbnail(), False),
    ("icc", _segment(0xE2, b"ICC_PROFILE\x00\x01\x01" + ICC[:100]), True),
    ("adobe", _segment(0xEE, b"Adobe\x00\x64\x00\x00\x00\x00\x01"), True),
    ("exif", _segment(0xE1, b"Exif\x00\x00MM\x00*\x00\x00\x00\x08"), False),
    ("xmp", _segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + XMP), False),
    ("extended_xmp", _extended_xmp(), False),
    ("mpf", _segment(0xE2, b"MPF\x00MM\x00*\x00\x00\x00\x08"), False),
    ("iptc", _app13_iptc(), False),
    ("avi1", _segment(0xE0, b"AVI1\x00\x00"), False),
    ("app2_other", _segment(0xE2, b"FPXR\x00\x00"), False),
    ("app14_other", _segment(0xEE, b"Other"), False),
    ("app15", _segment(0xEF, b"vendor notes"), False),
    ("comment", _segment(0xFE, b"a comment"), False),
    ("jpg0_extension", _segment(0xF0, b"GPS 52N 13E"), False),
    ("jpg13_extension", _segment(0xFD, b"GPS 52N 13E"), False),
    ("app0_unknown", _segment(0xE0, b"CIFF\x00GPS"), False),
    ("app2_icc_without_nul", _segment(0xE2, b"ICC_PROFILEGPS"), False),
    ("app1_empty", _segment(0xE1, b""), False),
])
def test_jpeg_segment_rule(run, name, segment, kept):
    plain = _save(_noise(), "JPEG")
    changed, out = run("jpeg", _after_soi(plain, segment))
    assert changed is not kept
    assert (segment in out) is kept
    assert _from_sos(out) == _from_sos(plain)


def test_jpeg_without_metadata_is_copied_byte_for_byte(run, tmp_path):
    plain = _save(_noise(), "JPEG", icc_profile=ICC)
    changed, out = run("jpeg", plain)
    assert changed is False
    assert out == plain
    assert metadata.has_metadata("jpeg", tmp_path / "src") is False


def test_jpeg_fill_bytes_before_a_marker_are_kept(run):
    plain = _save(_noise(), "JPEG")
    at = plain.index(b"\xff\xdb")
    padded = plain[:at] + b"\xff\xff" + plain[at:]
    assert run("jpeg", padded) == (False, padded)


def test_jpeg_stray_bytes_between_segments_are_dropped(run):
    plain = _save(_noise(), "JPEG")
    at = plain.index(b"\xff\xdb")
    changed, out = run("jpeg", plain[:at] + b"\x00\x17" + plain[at:])
    assert changed and out == plain


def test_progressive_jpeg_keeps_every_scan(run):
    source = _photo_jpeg(progressive=True)
    changed, out = run("jpeg", source)
    assert changed
    assert out.count(b"\xff\xda") == source.count(b"\xff\xda") > 1
    assert _from_sos(out) == _from_sos(source)
    assert _frames_of(out) == _frames_of(source)


def test_progressive_jpeg_loses_a_comment_between_scans(run):
    source = _save(_noise(), "JPEG", progressive=True)
    at = source.rindex(b"\xff\xda")
    comment = _segment(0xFE, b"between scans")
    changed, out = run("jpeg", source[:at] + comment + source[at:])
    assert changed and out == source


def test_jpeg_with_restart_markers_keeps_them(run):
    source = _photo_jpeg(restart_marker_blocks=1)
    scan = _from_sos(source)
    assert any(bytes((0xFF, rst)) in scan for rst in range(0xD0, 0xD8))
    changed, out = run("jpeg", source)
    assert changed and _from_sos(out) == scan
    assert _frames_of(out) == _frames_of(source)


def test_jpeg_with_a_second_image_appended_loses_it(run):
    plain = _save(_noise(), "JPEG")
    second = _save(_noise(seed=3), "JPEG", exif=_gps_exif())
    assert run("jpeg", plain + second) == (True, plain)


def test_jpeg_trailing_video_bytes_are_dropped(run):
    plain = _save(_noise(), "JPEG")
    assert run("jpeg", plain + b"\x00\x00\x00\x18ftypmp42" + bytes(1000)) == (True, plain)


# --- PNG ----------------------------------------------------------------------------------------

def test_png_loses_text_exif_and_time_and_keeps_icc(run):
    source = _meta_png()
    assert {b"eXIf", b"tEXt", b"zTXt", b"iTXt", b"tIME", b"iCCP"} <= set(media.png_chunks(source))
    changed, out = run("png", source)
    assert changed
    dropped = {b"eXIf", b"tEXt", b"zTXt", b"iTXt", b"tIME"}
    assert media.png_chunks(out) == [k for k in media.png_chunks(source) if k not in dropped]
    with Image.open(io.BytesIO(out)) as im:
        assert im.info.get("icc_profile") == ICC
        assert not im.getexif()
        assert not {"Title", "Comment", "Description", "exif"} & im.info.keys()
        assert not im.text
    assert _frames_of(out) == _frames_of(source)


@pytest.mark.parametrize("kind, data, kept", [
    (b"tEXt", b"Author\x00someone", False),
    (b"zTXt", b"Author\x00\x00" + zlib.compress(b"someone"), False),
    (b"iTXt", b"Author\x00\x00\x00\x00\x00someone", False),
    (b"eXIf", b"MM\x00*\x00\x00\x00\x08\x00\x00", False),
    (b"tIME", struct.pack(">HBBBBB", 2024, 1, 2, 3, 4, 5), False),
    (b"gAMA", struct.pack(">I", 45455), True),
    (b"cHRM", bytes(32), True),
    (b"sRGB", b"\x00", True),
    (b"pHYs", struct.pack(">IIB", 2835, 2835, 1), True),
    (b"sBIT", b"\x08\x08\x08", True),
    (b"cICP", b"\x01\x0d\x00\x01", True),
    (b"caBX", JUMBF_GPS, False),
    (b"prVt", b"GPS 52.37N 4.89E", False),
    (b"gpSt", b"GPS 52.37N 4.89E", False),
    (b"bKGD", b"\x00\x00\x00\x00\x00\x00", False),
    (b"sPLT", b"GPS 52N\x00\x08", False),
    (b"hIST", b"GPS 52N\x00", False),
    (b"vpAg", b"GPS 52N 13E", False),
    (b"PRVT", b"GPS 52.37N 4.89E", False),   # no critical chunk of the standard
])
def test_png_chunk_rule(run, kind, data, kept):
    plain = _save(_noise(), "PNG")
    chunk = media.png_chunk(kind, data)
    source = plain[:33] + chunk + plain[33:]  # right after IHDR
    changed, out = run("png", source)
    assert changed is not kept
    assert out == (source if kept else plain)


def test_png_without_metadata_is_copied_byte_for_byte(run):
    plain = _save(_noise(), "PNG", icc_profile=ICC)
    assert run("png", plain) == (False, plain)


def test_png_trailing_bytes_are_dropped(run):
    plain = _save(_noise(), "PNG")
    assert run("png", plain + b"appended zip archive") == (True, plain)


def test_apng_keeps_its_frames(run):
    frames = [_noise((24, 16), seed=n) for n in range(3)]
    info = PngImagePlugin.PngInfo()
    info.add_text("Title", "Secret")
    source = _save(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=100,
                   loop=0, pnginfo=info)
    changed, out = run("png", source)
    assert changed
    assert {b"acTL", b"fcTL", b"fdAT"} <= set(media.png_chunks(out))
    assert b"tEXt" not in media.png_chunks(out)
    assert len(_frames_of(out)) == 3 and _frames_of(out) == _frames_of(source)


# --- WebP ---------------------------------------------------------------------------------------

def test_webp_loses_exif_and_xmp_and_keeps_icc(run):
    source = _meta_webp()
    assert {b"EXIF", b"XMP ", b"ICCP"} <= {c for c, _ in _riff_chunks(source)}
    changed, out = run("webp", source)
    assert changed
    chunks = _riff_chunks(out)
    assert [c for c, _ in chunks] == [c for c, _ in _riff_chunks(source)
                                      if c not in (b"EXIF", b"XMP ")]
    flags = chunks[0][1][0]
    assert chunks[0][0] == b"VP8X" and flags & 0x0C == 0 and flags & 0x20
    with Image.open(io.BytesIO(out)) as im:
        assert im.info.get("icc_profile") == ICC
        assert not im.getexif() and "xmp" not in im.info
    assert _frames_of(out) == _frames_of(source)


def test_animated_webp_keeps_its_frames(run):
    frames = [_noise((24, 16), seed=n) for n in range(3)]
    source = _save(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100,
                   lossless=True, exif=_gps_exif(), icc_profile=ICC)
    changed, out = run("webp", source)
    assert changed
    kinds = [c for c, _ in _riff_chunks(out)]
    assert b"EXIF" not in kinds and b"ANIM" in kinds and kinds.count(b"ANMF") == 3
    assert _frames_of(out) == _frames_of(source)


def test_webp_odd_sized_chunks_go_with_their_padding(run):
    plain = _save(_noise(), "WEBP", lossless=True, icc_profile=ICC)
    unknown = media.webp_chunk(b"ABCD", b"odd")
    source = media.with_webp_chunks(plain, media.webp_chunk(b"EXIF", b"MM\x00*\x00"), unknown,
                          media.webp_chunk(b"XMP ", b"<x/>\n"))
    changed, out = run("webp", source)
    assert changed
    assert out == plain
    _riff_chunks(out)


@pytest.mark.parametrize("fourcc, data", [
    (b"C2PA", JUMBF_GPS), (b"EXIF", _gps_exif().tobytes()), (b"XMP ", XMP),
    (b"GPS ", b"52.37N 4.89E"), (b"ABCD", b"odd"), (b"ICCp", b"not the profile chunk"),
])
def test_webp_unknown_and_metadata_chunks_are_dropped(run, fourcc, data):
    plain = _save(_noise(), "WEBP", lossless=True, icc_profile=ICC)
    changed, out = run("webp", media.with_webp_chunks(plain, media.webp_chunk(fourcc, data)))
    assert changed and out == plain
    with Image.open(io.BytesIO(out)) as im:
        assert im.info.get("icc_profile") == ICC


def _anmf_with(webp: bytes, extra: bytes) -> bytes:
    """The animated WebP with ``extra`` appended inside each of its frames (ANMF chunks)."""
    body = b""
    for fourcc, data in _riff_chunks(webp):
        if fourcc == b"ANMF":
            data += extra
        body += media.webp_chunk(fourcc, data)
    return b"RIFF" + struct.pack("<I", len(body) + 4) + b"WEBP" + body


@pytest.mark.parametrize("extra", [media.webp_chunk(b"C2PA", JUMBF_GPS), media.webp_chunk(b"GPS ", b"odd"),
                                   media.webp_chunk(b"EXIF", b"MM\x00*\x00") + media.webp_chunk(b"XYZ ", b"")],
                         ids=["c2pa", "odd", "two"])
def test_animated_webp_frames_lose_unknown_chunks(run, extra):
    frames = [_noise((24, 16), seed=n) for n in range(3)]
    plain = _save(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100,
                  lossless=True)
    changed, out = run("webp", _anmf_with(plain, extra))
    assert changed and out == plain
    assert _frames_of(out) == _frames_of(plain)


def test_webp_without_metadata_is_copied_byte_for_byte(run):
    plain = _save(_noise(), "WEBP", lossless=True, icc_profile=ICC)
    assert run("webp", plain) == (False, plain)


def test_webp_bytes_past_the_riff_size_are_dropped(run):
    plain = _save(_noise(), "WEBP", lossless=True)
    assert run("webp", plain + b"junk") == (True, plain)


# --- GIF ----------------------------------------------------------------------------------------

def test_gif_loses_comment_and_xmp_and_keeps_the_loop(run):
    source = _meta_gif()
    changed, out = run("gif", source)
    assert changed
    assert b"XMP DataXMP" not in out and b"taken at home" not in out
    assert b"NETSCAPE2.0" in out
    with Image.open(io.BytesIO(out)) as im:
        assert im.info.get("loop") == 0 and "comment" not in im.info
    frames = _frames_of(out)
    assert len(frames) == 3 and frames == _frames_of(source)


@pytest.mark.parametrize("ident, kept", [
    (b"NETSCAPE2.0", True),
    (b"ANIMEXTS1.0", True),
    (b"ICCRGBG1012", True),
    (b"XMP DataXMP", False),
    (b"MGK8BIM0000", False),
])
def test_gif_application_extension_rule(run, ident, kept):
    plain = _save(_frames(1)[0], "GIF")
    at = _gif_header_end(plain)
    extension = b"\x21\xff\x0b" + ident + b"\x03\x01\x00\x00\x00"
    source = plain[:at] + extension + plain[at:]
    changed, out = run("gif", source)
    assert changed is not kept
    assert out == (source if kept else plain)


def test_gif_keeps_graphic_control_and_loses_plain_text(run):
    plain = _save(_frames(1)[0], "GIF")
    at = _gif_header_end(plain)
    control = b"\x21\xf9\x04\x00\x0a\x00\x00\x00"
    text = b"\x21\x01\x0c" + bytes(12) + b"\x02hi\x00"
    assert run("gif", plain[:at] + control + plain[at:]) == (False, plain[:at] + control + plain[at:])
    assert run("gif", plain[:at] + control + text + plain[at:]) == (True, plain[:at] + control + plain[at:])


@pytest.mark.parametrize("label", [0x01, 0x02, 0x7F, 0xF8])
def test_gif_plain_text_and_unknown_extensions_are_dropped(run, label):
    plain = _save(_frames(1)[0], "GIF")
    at = _gif_header_end(plain)
    extension = bytes((0x21, label, 0x05)) + b"52N13" + b"\x00"
    assert run("gif", plain[:at] + extension + plain[at:]) == (True, plain)


def test_gif_without_metadata_is_copied_byte_for_byte(run):
    plain = _save(_frames(1)[0], "GIF")
    assert run("gif", plain) == (False, plain)


def test_gif_trailing_bytes_are_dropped(run):
    plain = _save(_frames(1)[0], "GIF")
    assert run("gif", plain + b"more") == (True, plain)


# --- every format -------------------------------------------------------------------------------

SAMPLES = {
    "jpeg": lambda: _phone_jpeg()[0],
    "jpeg_progressive": lambda: _photo_jpeg(progressive=True),
    "png": _meta_png,
    "webp": _meta_webp,
    "gif": _meta_gif,
}


@pytest.mark.parametrize("read_size", [1, 2, 3, 255, 4096])
@pytest.mark.parametrize("sample", SAMPLES)
def test_result_does_not_depend_on_the_read_size(run, monkeypatch, sample, read_size):
    source = SAMPLES[sample]()
    fmt = sample.split("_")[0]
    expected = run(fmt, source)
    monkeypatch.setattr(imgz.chunks, "_CHUNK", read_size)
    assert run(fmt, source) == expected


@pytest.mark.parametrize("sample", SAMPLES)
def test_has_metadata_reports_what_strip_would_do(tmp_path, sample):
    fmt = sample.split("_")[0]
    path = tmp_path / "in"
    path.write_bytes(SAMPLES[sample]())
    assert metadata.has_metadata(fmt, path) is True
    metadata.strip(fmt, path, tmp_path / "out")
    assert metadata.has_metadata(fmt, tmp_path / "out") is False


@pytest.mark.parametrize("fmt, function", [
    ("jpeg", metadata.strip_jpeg), ("png", metadata.strip_png),
    ("webp", metadata.strip_webp), ("gif", metadata.strip_gif),
])
def test_format_functions_match_strip(tmp_path, fmt, function):
    src = tmp_path / "in"
    src.write_bytes(SAMPLES[fmt]())
    assert function(src, tmp_path / "a") is metadata.strip(fmt, src, tmp_path / "b") is True
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()


def test_unknown_format_is_a_programming_error(tmp_path):
    with pytest.raises(ValueError):
        metadata.strip("bmp", tmp_path / "in", tmp_path / "out")


def _jpeg_cut(n: int) -> bytes:
    return _save(_noise(), "JPEG")[:n]


def _set(data: bytes, at: int, value: bytes) -> bytes:
    return data[:at] + value + data[at + len(value):]


CORRUPT = {
    "jpeg": {
        "empty": lambda: b"",
        "signature": lambda: b"\x89PNG" + _save(_noise(), "JPEG")[4:],
        "cut_in_header": lambda: _jpeg_cut(30),
        "cut_in_scan": lambda: _jpeg_cut(len(_save(_noise(), "JPEG")) - 40),
        "no_eoi": lambda: _jpeg_cut(len(_save(_noise(), "JPEG")) - 2),
        "half_eoi": lambda: _jpeg_cut(len(_save(_noise(), "JPEG")) - 1),
        "segment_length_below_2": lambda: _after_soi(_save(_noise(), "JPEG"), b"\xff\xfe\x00\x01"),
        "segment_longer_than_file": lambda: b"\xff\xd8" + b"\xff\xe1\x40\x00Exif",
        "eoi_before_scan": lambda: b"\xff\xd8" + _segment(0xE0, b"JFIF\x00") + b"\xff\xd9",
        "second_soi": lambda: _after_soi(_save(_noise(), "JPEG"), b"\xff\xd8"),
        "only_garbage": lambda: b"\xff\xd8" + bytes(100),
    },
    "png": {
        "empty": lambda: b"",
        "signature": lambda: b"\x89PNX" + _save(_noise(), "PNG")[4:],
        "cut_in_chunk": lambda: _save(_noise(), "PNG")[:100],
        "no_iend": lambda: _save(_noise(), "PNG")[:-12],
        "cut_iend_crc": lambda: _save(_noise(), "PNG")[:-2],
        "first_not_ihdr": lambda: _save(_noise(), "PNG")[:8] + media.png_chunk(b"tEXt", b"a\x00b")
        + _save(_noise(), "PNG")[8:],
        "huge_length": lambda: _set(_save(_noise(), "PNG"), 33, b"\xff\xff\xff\xf0"),
        "bad_chunk_type": lambda: _set(_save(_noise(), "PNG"), 37, b"I\x00AT"),
    },
    "webp": {
        "empty": lambda: b"",
        "not_riff": lambda: b"RIFX" + _save(_noise(), "WEBP", lossless=True)[4:],
        "not_webp": lambda: _set(_save(_noise(), "WEBP", lossless=True), 8, b"WAVE"),
        "riff_size_past_end": lambda: _save(_noise(), "WEBP", lossless=True)[:-10],
        "chunk_past_riff": lambda: media.with_webp_chunks(_save(_noise(), "WEBP", lossless=True),
                                                b"EXIF\xff\x00\x00\x00MM"),
        "riff_too_small": lambda: b"RIFF\x04\x00\x00\x00WEBP",
        "partial_chunk_header": lambda: media.with_webp_chunks(_save(_noise(), "WEBP", lossless=True),
                                                     b"EXI"),
        "first_chunk_unknown": lambda: media.with_webp_chunks(b"RIFF\x04\x00\x00\x00WEBP",
                                                    media.webp_chunk(b"EXIF", b"MM"),
                                                    _save(_noise(), "WEBP", lossless=True)[12:]),
    },
    "gif": {
        "empty": lambda: b"",
        "signature": lambda: b"GIF88a" + _save(_frames(1)[0], "GIF")[6:],
        "cut_in_screen": lambda: _save(_frames(1)[0], "GIF")[:10],
        "cut_in_palette": lambda: _save(_frames(1)[0], "GIF")[:20],
        "cut_in_image": lambda: _save(_frames(1)[0], "GIF")[:-10],
        "no_trailer": lambda: _save(_frames(1)[0], "GIF")[:-1],
        "unknown_block": lambda: _save(_frames(1)[0], "GIF")[:-1] + b"\x42;",
        "cut_in_comment": lambda: _meta_gif()[:_gif_header_end(_meta_gif()) + 40],
    },
}


@pytest.mark.parametrize("fmt, case", [(f, c) for f, cases in CORRUPT.items() for c in cases])
def test_broken_file_is_refused_and_leaves_no_output(tmp_path, fmt, case):
    src, dst = tmp_path / "in", tmp_path / "out"
    src.write_bytes(CORRUPT[fmt][case]())
    with pytest.raises(InvalidImage):
        metadata.strip(fmt, src, dst)
    assert not dst.exists()
    with pytest.raises(InvalidImage):
        metadata.has_metadata(fmt, src)


# --- stripping while an upload arrives ----------------------------------------------------------

class _Sink:
    """What JpegArrival wrote, and what its decide callback was shown."""

    def __init__(self, allow: object = True) -> None:
        self.data = bytearray()
        self.headers: list[bytes] = []
        self.allow = allow

    def write(self, piece: bytes | memoryview) -> None:
        self.data += piece

    def decide(self, header: bytes) -> bool:
        self.headers.append(header)
        if isinstance(self.allow, Exception):
            raise self.allow
        return bool(self.allow)


def _arrive(data: bytes, pieces: list[int], sink: _Sink) -> jpeg.Stripped | None:
    arrival = jpeg.JpegArrival(sink.write, sink.decide)
    at, turn = 0, 0
    while at < len(data):
        size = pieces[turn % len(pieces)]
        arrival.feed(data[at:at + size])
        at += size
        turn += 1
    return arrival.finish()


PIECES = [[1], [2, 3, 5], [4096], [1, 65536], [1 << 30]]


@pytest.mark.parametrize("pieces", PIECES)
@pytest.mark.parametrize("sample", ["jpeg", "jpeg_progressive"])
def test_arrival_writes_what_strip_makes(run, sample, pieces):
    upload = SAMPLES[sample]()
    sink = _Sink()
    result = _arrive(upload, pieces, sink)
    assert result is not None and not result.broken
    assert (result.changed, bytes(sink.data)) == run("jpeg", upload)
    assert result.md5 == hashlib.md5(sink.data).hexdigest()
    # decide saw the upload's own header, metadata and all, once
    assert len(sink.headers) == 1 and sink.headers[0] == result.header
    assert upload.startswith(result.header[:len(upload)]) and b"\xff\xda" in result.header
    assert Image.open(io.BytesIO(result.header)).getexif().get_ifd(ExifTags.IFD.GPSInfo)


@pytest.mark.parametrize("pieces", PIECES)
def test_arrival_of_a_clean_jpeg_changes_nothing(pieces):
    upload = _save(_noise(), "JPEG")
    sink = _Sink()
    result = _arrive(upload, pieces, sink)
    assert result is not None and result.changed is False and not result.broken
    assert bytes(sink.data) == upload and result.md5 == hashlib.md5(upload).hexdigest()


@pytest.mark.parametrize("allow", [False, ValueError("cannot read that header")])
@pytest.mark.parametrize("pieces", [[1], [4096]])
def test_arrival_declined_writes_the_upload_as_it_came(allow, pieces):
    upload = SAMPLES["jpeg"]()
    sink = _Sink(allow)
    assert _arrive(upload, pieces, sink) is None
    assert bytes(sink.data) == upload and len(sink.headers) == 1


@pytest.mark.parametrize("upload", [SAMPLES["png"], SAMPLES["gif"], lambda: b"\xff\xd8",
                                    lambda: b"\xff", lambda: b"\xff\xd8\xfe"],
                         ids=["png", "gif", "two-bytes", "one-byte", "not-a-marker-yet"])
def test_arrival_of_something_else_writes_it_as_it_came(upload):
    data = upload()
    sink = _Sink()
    assert _arrive(data, [1], sink) is None
    assert bytes(sink.data) == data and not sink.headers


@pytest.mark.parametrize("case", ["cut_in_header", "segment_length_below_2",
                                  "segment_longer_than_file", "eoi_before_scan", "second_soi"])
def test_arrival_with_a_broken_header_writes_it_as_it_came(case):
    # strip() refuses these later, exactly as it would any other upload
    data = CORRUPT["jpeg"][case]()
    sink = _Sink()
    assert _arrive(data, [3], sink) is None
    assert bytes(sink.data) == data and not sink.headers


@pytest.mark.parametrize("case", ["cut_in_scan", "no_eoi", "half_eoi"])
def test_arrival_broken_after_the_first_scan_is_reported(case):
    sink = _Sink()
    result = _arrive(CORRUPT["jpeg"][case](), [100], sink)
    assert result is not None and result.broken


def test_arrival_gives_up_on_a_header_past_the_limit(monkeypatch):
    upload = SAMPLES["jpeg"]()
    monkeypatch.setattr(jpeg, "HEADER_LIMIT", 1000)
    sink = _Sink()
    assert _arrive(upload, [256], sink) is None
    assert bytes(sink.data) == upload and not sink.headers


# --- structure no encoder writes ----------------------------------------------------------------

def _progressive(size: tuple[int, int] = (64, 64)) -> bytes:
    return _save(Image.new("RGB", size, (120, 130, 140)), "JPEG", progressive=True)


def _repeated_scans(total: int, size: tuple[int, int] = (64, 64)) -> bytes:
    """A progressive JPEG whose last scan (an AC refinement) is repeated to ``total`` scans: the
    decoder accepts it and runs every copy over the whole image."""
    source = _progressive(size)
    last = source.rindex(b"\xff\xda")
    scan = source[last:-2]
    extra = total - source.count(b"\xff\xda")
    assert extra >= 0
    return source[:-2] + scan * extra + b"\xff\xd9"


def test_repeated_scans_are_a_valid_jpeg():
    data = _repeated_scans(jpegstrip.MAX_SCANS + 50)
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        assert im.size == (64, 64)


def test_jpeg_with_scans_up_to_the_cap_is_kept(run):
    data = _repeated_scans(jpegstrip.MAX_SCANS)
    assert run("jpeg", data) == (False, data)


@pytest.mark.parametrize("scans", [jpegstrip.MAX_SCANS + 1, 5000])
def test_jpeg_with_more_scans_is_too_complex(tmp_path, scans):
    src, dst = tmp_path / "in", tmp_path / "out"
    src.write_bytes(_repeated_scans(scans))
    with pytest.raises(TooComplex):
        metadata.strip("jpeg", src, dst)
    assert not dst.exists()


def _arrival_outcome(data: bytes, pieces: list[int], allow: object) -> object:
    try:
        return _arrive(data, pieces, _Sink(allow))
    except TooComplex as exc:
        return exc


# the scans are counted whether the upload is stripped, declined (re-encoded later), or its
# header broken by the walk's standard (libjpeg reads past an APPn of length 0)
ARRIVALS = {
    "stripped": (lambda d: d, True),
    "declined": (lambda d: d, False),
    "header_broken": (lambda d: _after_soi(d, b"\xff\xe1\x00\x00"), True),
    "header_too_long": (lambda d: _after_soi(d, *[_segment(0xE1, bytes(60000))] * 20), True),
}


@pytest.mark.parametrize("pieces", [[1000], [65536], [1 << 30]])
@pytest.mark.parametrize("case", list(ARRIVALS))
def test_arrival_of_too_many_scans_is_refused_at_finish(case, pieces):
    change, allow = ARRIVALS[case]
    sink = _Sink(allow)
    with pytest.raises(TooComplex):
        _arrive(change(_repeated_scans(jpegstrip.MAX_SCANS * 3)), pieces, sink)
    if pieces == [1000]:  # nothing past the refusal was written
        assert len(sink.data) < len(change(_repeated_scans(jpegstrip.MAX_SCANS * 3)))


@pytest.mark.parametrize("pieces", [[1000], [1 << 30]])
@pytest.mark.parametrize("case", list(ARRIVALS))
def test_arrival_of_scans_up_to_the_cap_is_answered_as_before(case, pieces):
    change, allow = ARRIVALS[case]
    outcome = _arrival_outcome(change(_repeated_scans(jpegstrip.MAX_SCANS)), pieces, allow)
    assert not isinstance(outcome, TooComplex)


def _empty_segments_after_scan(count: int) -> bytes:
    plain = _save(_noise(), "JPEG")
    return plain[:-2] + b"\xff\xef\x00\x02" * count + b"\xff\xd9"


def test_many_empty_segments_after_the_scan_stop_the_walk_at_the_cap():
    data = _empty_segments_after_scan(1_000_000)
    stripper = jpegstrip.JpegStripper(lambda piece: None)
    with pytest.raises(TooComplex):
        for at in range(0, len(data), 1 << 16):
            stripper.feed(data[at:at + (1 << 16)])
    assert stripper.steps == jpegstrip.MAX_SEGMENTS + 1


def test_segments_up_to_the_cap_are_walked(run):
    plain = _save(_noise(), "JPEG")
    data = _empty_segments_after_scan(jpegstrip.MAX_SEGMENTS - 20)
    assert run("jpeg", data) == (True, plain)


@pytest.mark.parametrize("junk", [b"\x00", b"\xff\x00", b"\x00\xff\x00"])
def test_many_stray_runs_between_segments_count_too(junk):
    plain = _save(_noise(), "JPEG")
    data = plain[:-2] + (junk + b"\xff\xef\x00\x02") * (jpegstrip.MAX_SEGMENTS // 2) + b"\xff\xd9"
    stripper = jpegstrip.JpegStripper(lambda piece: None)
    with pytest.raises(TooComplex):
        stripper.feed(data)
    assert stripper.steps == jpegstrip.MAX_SEGMENTS + 1


def test_a_megabyte_of_fill_is_walked_and_kept(run):
    plain = _save(_noise(), "JPEG")
    padded = plain[:-2] + b"\xff" * (1 << 20) + b"\xff\xd9"
    assert run("jpeg", padded) == (False, padded)


class _CountingFile(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.handed = 0

    def read(self, n: int = -1) -> bytes:
        piece = super().read(n)
        self.handed += len(piece)
        return piece


def _png_with_empty_chunks(count: int) -> bytes:
    plain = _save(_noise(), "PNG")
    return plain[:-12] + media.png_chunk(b"prVt", b"") * count + plain[-12:]


def _webp_with_empty_chunks(count: int) -> bytes:
    return media.with_webp_chunks(_save(_noise(), "WEBP", lossless=True), media.webp_chunk(b"prVt", b"") * count)


def _gif_with_empty_extensions(count: int) -> bytes:
    plain = _save(_frames(1)[0], "GIF")
    return plain[:-1] + b"\x21\xfe\x00" * count + b";"


STRUCTURES = {"png": _png_with_empty_chunks, "webp": _webp_with_empty_chunks,
              "gif": _gif_with_empty_extensions}


@pytest.mark.parametrize("fmt", list(STRUCTURES))
def test_too_many_chunks_stop_the_walk_early(fmt):
    data = STRUCTURES[fmt](4 * MAX_CHUNKS)
    source = _CountingFile(data)
    walk = {"png": metadata._walk_png, "webp": webpstrip.walk_webp, "gif": gifstrip.walk_gif}[fmt]
    with pytest.raises(TooComplex):
        walk(Reader(source), metadata._Discard())
    # it stopped near the cap: a quarter of the file, and a read chunk more
    assert source.handed < len(data) // 4 + (1 << 17)


@pytest.mark.parametrize("fmt", list(STRUCTURES))
def test_chunks_below_the_cap_are_walked(run, fmt):
    changed, out = run(fmt, STRUCTURES[fmt](MAX_CHUNKS // 2))
    assert changed and len(out) < 10_000
