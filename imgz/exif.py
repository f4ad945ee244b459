"""Metadata read from images: EXIF, XMP, IPTC and PNG text, as Pillow finds them in a header.

Camera boilerplate ("OLYMPUS DIGITAL CAMERA", "DCIM") is not a title or a description. XMP is
parsed with the standard library and refused when it declares a DTD or entities. Metadata that
cannot be read (an XML encoding expat lacks, PNG text past Pillow's limits) is ignored: it never
makes an upload fail.
"""
from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from typing import Callable

from PIL import ExifTags, Image, ImageFile, PngImagePlugin, TiffImagePlugin

_XMP_NS = {"dc": "http://purl.org/dc/elements/1.1/",
           "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
           "gpano": "http://ns.google.com/photos/1.0/panorama/"}
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_EXIF_IFD, _GPS_IFD, _INTEROP_IFD = 0x8769, 0x8825, 0xA005
_MAKER_NOTE = 0x927C
_XP_TAGS = {0x9C9B, 0x9C9C, 0x9C9D, 0x9C9E, 0x9C9F}
# What cameras and apps write when nobody wrote anything; a sentence that merely mentions a
# camera is a real description.
_BOILERPLATE = frozenset({
    "olympus digital camera", "sony dsc", "dsc", "dcim", "default", "exif_jpeg_picture",
    "samsung camera pictures", "untitled", "no title", "jpeg", "jpg", "title", "description",
})
_CAMERA_MAKERS = ("agfa|benq|canon|casio|concord|fujifilm|ge|hp|kodak|konica minolta|konica|"
                  "leica|minolta|nikon|olympus|panasonic|pentax|polaroid|ricoh|samsung|sanyo|"
                  "sigma|sony|toshiba|vivitar")
# "KONICA MINOLTA DIGITAL CAMERA", "KODAK Digital Still Camera", "DCIM\100MEDIA"...
_BOILERPLATE_RE = re.compile(rf"(?:(?:{_CAMERA_MAKERS}) )?digital (?:still )?camera"
                             r"|dcim(?:[\\/][\w.-]*)*", re.IGNORECASE)


def meaningful(value: object) -> str | None:
    """A metadata text cleaned of NULs and outer whitespace, or None when blank or boilerplate."""
    if isinstance(value, bytes):
        value = _decode_bytes(value)
    if not isinstance(value, str):
        return None
    text = value.replace("\x00", "").strip()
    plain = " ".join(text.split()).lower()
    if not plain or plain in _BOILERPLATE or _BOILERPLATE_RE.fullmatch(plain):
        return None
    return text


def _decode_bytes(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _exif_text(value: object) -> object:
    """Pillow reads EXIF ASCII as Latin-1; phones write UTF-8 there, so undo that when it fits."""
    if isinstance(value, bytes):
        value = _decode_bytes(value)
    elif isinstance(value, str):
        try:
            value = value.encode("latin-1").decode("utf-8")
        except UnicodeError:
            pass
    return value.replace("\x00", "").strip() if isinstance(value, str) else value


def load_exif(raw: object) -> Image.Exif | None:
    if not raw:
        return None
    exif = Image.Exif()
    try:
        exif.load(bytes(raw))
        exif.get_ifd(_EXIF_IFD)
        exif.get_ifd(_GPS_IFD)
    except Exception:  # damaged EXIF is ignored like absent EXIF, never fatal to the upload
        return None
    return exif if len(exif) else None


def _parse_xmp(raw: object) -> ET.Element | None:
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    if not isinstance(raw, bytes) or not raw:
        return None
    raw = raw.strip(b"\x00 \t\r\n")
    # XMP never needs a DTD; refusing one keeps entity expansion out of the parser.
    if b"<!DOCTYPE" in raw or b"<!ENTITY" in raw:
        return None
    try:
        return ET.fromstring(raw)
    # expat knows few encodings: a declared Shift_JIS or UTF-32 is a ValueError, an unknown
    # name a LookupError
    except (ET.ParseError, ValueError, LookupError):
        return None


def _xmp_alt(root: ET.Element, name: str) -> str | None:
    """dc:title or dc:description: the x-default rdf:li, else the first, else the element's text."""
    element = root.find(f".//dc:{name}", _XMP_NS)
    if element is None:
        return None
    items = element.findall(".//rdf:li", _XMP_NS)
    for item in items:
        if item.get(_XML_LANG, "").lower() == "x-default":
            return item.text
    return items[0].text if items else element.text


def _xmp_projection(root: ET.Element) -> str | None:
    attr = "{%s}ProjectionType" % _XMP_NS["gpano"]
    for element in root.iter():
        if attr in element.attrib:
            return element.attrib[attr]
        if element.tag == attr:
            return element.text
    return None


def _iptc(info: dict) -> dict[tuple[int, int], bytes]:
    """The first value of each IPTC dataset in a JPEG's Photoshop resource 0x0404."""
    photoshop = info.get("photoshop")
    data = photoshop.get(0x0404) if isinstance(photoshop, dict) else None
    found: dict[tuple[int, int], bytes] = {}
    pos = 0
    while data and pos + 5 <= len(data) and data[pos] == 0x1C:
        record, dataset = data[pos + 1], data[pos + 2]
        size = int.from_bytes(data[pos + 3:pos + 5], "big")
        if size & 0x8000:
            break  # extended-length datasets hold binary data, never the texts read here
        found.setdefault((record, dataset), data[pos + 5:pos + 5 + size])
        pos += 5 + size
    return found


def _first(*candidates: object) -> str | None:
    for candidate in candidates:
        text = meaningful(candidate)
        if text:
            return text
    return None


@dataclass(frozen=True)
class Embedded:
    """What an image's metadata says about it (SPEC §2 "Metadata read for title and description")."""

    orientation: int
    title: str | None
    description: str | None
    is_360: bool
    has_metadata: bool
    exif_json: str | None
    date_taken: str | None
    date_offset: str | None


def _orientation(exif: Image.Exif | None) -> int:
    """The EXIF orientation, 1 when absent or out of range."""
    value = exif.get(0x0112, 1) if exif else 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def orientation(info: dict) -> int:
    """Only the EXIF orientation of what Pillow found in a header, as ``read`` would give it."""
    return _orientation(load_exif(info.get("exif")))


def read(info: dict, fmt: str) -> Embedded:
    """Read EXIF, XMP, IPTC and PNG text from what Pillow found in an image's header."""
    exif = load_exif(info.get("exif"))
    exif_ifd = exif.get_ifd(_EXIF_IFD) if exif else {}
    xmp_raw = info.get("xmp") or info.get("XML:com.adobe.xmp")
    xmp = _parse_xmp(xmp_raw)
    iptc = _iptc(info) if fmt == "jpeg" else {}
    orientation = _orientation(exif)
    xp_title = exif.get(0x9C9B) if exif else None
    if isinstance(xp_title, (bytes, tuple)):
        xp_title = bytes(xp_title).decode("utf-16-le", "replace")
    title = _first(
        _xmp_alt(xmp, "title") if xmp is not None else None, xp_title,
        iptc.get((2, 5)), info.get("Title") if fmt == "png" else None)
    description = _first(
        _xmp_alt(xmp, "description") if xmp is not None else None,
        _exif_text(exif.get(0x010E)) if exif else None,
        iptc.get((2, 120)), info.get("Description") if fmt == "png" else None)
    projection = _xmp_projection(xmp) if xmp is not None else None
    date_taken = _exif_text(exif_ifd.get(0x9003)) or _exif_text(exif.get(0x0132) if exif else None)
    date_offset = _exif_text(exif_ifd.get(0x9011))
    return Embedded(
        orientation=orientation, title=title, description=description,
        is_360=(projection or "").strip().lower() == "equirectangular",
        has_metadata=bool(info.get("exif")) or bool(xmp_raw),
        exif_json=_exif_json(exif) if exif is not None else None,
        date_taken=date_taken if isinstance(date_taken, str) and date_taken.strip("0: ") else None,
        date_offset=date_offset if isinstance(date_offset, str) and date_offset else None,
    )


def _json_value(tag: int, value: object) -> object:
    """EXIF values as JSON: rationals as 'num/den' strings (as PHP's exif_read_data gives them)."""
    if isinstance(value, TiffImagePlugin.IFDRational):
        return f"{value.numerator}/{value.denominator}"
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (int, str)):
        return _exif_text(value)
    if isinstance(value, bytes):
        if tag in _XP_TAGS:
            return value.decode("utf-16-le", "replace").replace("\x00", "").strip()
        if value.isascii() and value.rstrip(b"\x00").decode().isprintable():
            return value.rstrip(b"\x00").decode()
        return value.hex() if len(value) <= 64 else None
    if isinstance(value, tuple):
        return [_json_value(tag, item) for item in value]
    return None


def _exif_json(exif: Image.Exif) -> str:
    """IFD0, the Exif IFD and the GPS IFD flattened into one object named by tag names."""
    out: dict[str, object] = {}
    sections = ((dict(exif), ExifTags.TAGS), (exif.get_ifd(_EXIF_IFD), ExifTags.TAGS),
                (exif.get_ifd(_GPS_IFD), ExifTags.GPSTAGS))
    for tags, names in sections:
        for tag, value in tags.items():
            if tag in (_EXIF_IFD, _GPS_IFD, _INTEROP_IFD, _MAKER_NOTE) or isinstance(value, dict):
                continue
            converted = _json_value(tag, value)
            if converted is not None:
                out[names.get(tag, f"0x{tag:04X}")] = converted
    return json.dumps(out, ensure_ascii=False, allow_nan=False)


# --- PNG text past Pillow's limits ----------------------------------------------------------------

_PngHandler = Callable[[PngImagePlugin.PngStream, int, int], bytes]


def _text_within_limits(handler: _PngHandler) -> _PngHandler:
    """A PNG text chunk handler that drops the chunk's text instead of failing the image.

    Pillow refuses a whole PNG whose text chunk inflates past MAX_TEXT_CHUNK, or whose text adds
    up past MAX_TEXT_MEMORY, with a ValueError. Those limits stay (text never costs more memory
    than they allow); only the text is given up, and the chunk's bytes are handed back so the
    CRC check goes on as usual.
    """
    def chunk(self: PngImagePlugin.PngStream, pos: int, length: int) -> bytes:
        assert self.fp is not None
        start = self.fp.tell()
        try:
            return handler(self, pos, length)
        except ValueError:
            self.fp.seek(start)
            data = ImageFile._safe_read(self.fp, length)
            key = data.split(b"\0", 1)[0].decode("latin-1")
            for found in (self.im_info, self.im_text):
                found.pop(key, None)
            if key == "XML:com.adobe.xmp":
                self.im_info.pop("xmp", None)
            return data
    chunk.__name__ = handler.__name__
    chunk.__wrapped__ = handler  # type: ignore[attr-defined]
    return chunk


def _tolerate_png_text() -> None:
    """Install the handlers above in Pillow's PNG reader, once per process."""
    stream = PngImagePlugin.PngStream
    for name in ("chunk_tEXt", "chunk_zTXt", "chunk_iTXt"):
        handler = getattr(stream, name)
        if not hasattr(handler, "__wrapped__"):
            setattr(stream, name, _text_within_limits(handler))


# Pillow's PNG reader is module state: every image this process opens goes through it, so the
# rule "metadata never makes a valid image invalid" is set where the metadata is read.
_tolerate_png_text()
