"""Test media made in code: images of chosen sizes, modes, metadata and animation; tiny videos.

Every generator returns the encoded bytes. Content is seeded noise over a gradient, so files are
deterministic yet not trivially compressible; ``color=`` gives a flat image where size does not
matter.
"""
from __future__ import annotations

import functools
import io
import random
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path

from PIL import Image, ImageCms, ImageDraw, PngImagePlugin

_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
# keyword -> (IFD, tag): IFD 0 is the main one.
_EXIF_TAGS = {
    "orientation": (0, 0x0112),
    "description": (0, 0x010E),
    "make": (0, 0x010F),
    "model": (0, 0x0110),
    "date_time": (0, 0x0132),
    "xp_title": (0, 0x9C9B),
    "date_time_original": (_EXIF_IFD, 0x9003),
    "offset_time_original": (_EXIF_IFD, 0x9011),
}


def picture(w: int, h: int, *, mode: str = "RGB", seed: int = 0) -> Image.Image:
    """A photo-like image: smooth random blobs with a fine grain, the same for the same seed."""
    rng = random.Random(f"{seed}:{w}x{h}")
    sw, sh = w // 16 + 2, h // 16 + 2
    blobs = Image.frombytes("RGB", (sw, sh), rng.randbytes(sw * sh * 3)).resize(
        (w, h), Image.BICUBIC)
    grain = Image.frombytes("L", (w, h), rng.randbytes(w * h)).convert("RGB")
    im = Image.blend(blobs, grain, 0.15)
    if mode in ("RGBA", "LA"):
        alpha = Image.linear_gradient("L").resize((w, h))
        im = im.convert("RGBA")
        im.putalpha(alpha)
    if mode == "P":
        return im.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    return im.convert(mode)


def screenshot(w: int = 1920, h: int = 1080, *, seed: int = 0) -> bytes:
    """A PNG that looks like a desktop screenshot: flat panels, bars and lines of "text"."""
    rng = random.Random(seed)
    im = Image.new("RGB", (w, h), (236, 238, 242))
    draw = ImageDraw.Draw(im)
    draw.rectangle((0, 0, w, 40), fill=(40, 44, 52))
    draw.rectangle((0, 40, w // 6, h), fill=(250, 250, 252))
    for _ in range(60):
        x, y = rng.randrange(w // 6, w - 200), rng.randrange(60, h - 100)
        draw.rectangle((x, y, x + rng.randrange(80, 400), y + rng.randrange(30, 200)),
                       fill=tuple(rng.randrange(256) for _ in range(3)), outline=(0, 0, 0))
    for y in range(56, h - 20, 18):
        x = rng.randrange(w // 6 + 10, w // 3)
        for _ in range(rng.randrange(3, 14)):
            word = rng.randrange(20, 90)
            draw.line((x, y, x + word, y), fill=(30, 30, 30), width=2)
            x += word + 8
    return encode(im, "PNG")


def icc_profile() -> bytes:
    """An sRGB ICC profile, as stored in files."""
    return _srgb_icc()


@functools.lru_cache(maxsize=1)
def _srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def exif_bytes(*, orientation: int | None = None, description: str | None = None,
               make: str | None = None, model: str | None = None, date_time: str | None = None,
               xp_title: str | None = None, date_time_original: str | None = None,
               offset_time_original: str | None = None,
               gps: tuple[float, float] | None = None) -> bytes:
    """An EXIF block (starting with ``Exif\\0\\0``) holding the given tags; XPTitle as UTF-16LE."""
    exif = Image.Exif()
    values = dict(orientation=orientation, description=description, make=make, model=model,
                  date_time=date_time, xp_title=xp_title, date_time_original=date_time_original,
                  offset_time_original=offset_time_original)
    for name, value in values.items():
        if value is None:
            continue
        ifd, tag = _EXIF_TAGS[name]
        if name == "xp_title":
            value = value.encode("utf-16-le") + b"\0\0"
        elif isinstance(value, str) and not ifd:
            value = value.encode("utf-8")  # as phones write ASCII tags; Pillow would put '?'
        (exif.get_ifd(ifd) if ifd else exif)[tag] = value
    if gps is not None:
        lat, lon = gps
        exif.get_ifd(_GPS_IFD).update({
            1: "N" if lat >= 0 else "S", 2: _dms(abs(lat)),
            3: "E" if lon >= 0 else "W", 4: _dms(abs(lon)),
        })
    return b"Exif\x00\x00" + exif.tobytes()


def _dms(value: float) -> tuple[float, float, float]:
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    return float(degrees), float(minutes), round((value - degrees - minutes / 60) * 3600, 2)


def xmp_packet(*, title: str | None = None, description: str | None = None,
               projection: str | None = None, projection_as_element: bool = False) -> bytes:
    """An XMP packet with dc:title, dc:description and GPano:ProjectionType as asked."""
    attrs, elements = "", ""
    if projection is not None:
        if projection_as_element:
            elements += f"<GPano:ProjectionType>{projection}</GPano:ProjectionType>"
        else:
            attrs += f' GPano:ProjectionType="{projection}"'
    for name, value in (("title", title), ("description", description)):
        if value is not None:
            elements += (f"<dc:{name}><rdf:Alt><rdf:li xml:lang=\"x-default\">{value}"
                         f"</rdf:li></rdf:Alt></dc:{name}>")
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" '
        f'xmlns:GPano="http://ns.google.com/photos/1.0/panorama/"{attrs}>{elements}'
        '</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
    ).encode()


def iptc_segment(*, object_name: str | None = None, caption: str | None = None) -> bytes:
    """A JPEG APP13 segment (Photoshop resource 0x0404) carrying IPTC Object Name and Caption."""
    data = b"\x1c\x01\x5a\x00\x03\x1b%G"  # 1:90, coded character set: UTF-8
    for dataset, value in ((5, object_name), (120, caption)):
        if value is not None:
            raw = value.encode()
            data += struct.pack(">BBBH", 0x1C, 2, dataset, len(raw)) + raw
    if len(data) % 2:
        data += b"\0"
    payload = b"Photoshop 3.0\x00" + b"8BIM\x04\x04\x00\x00" + struct.pack(">I", len(data)) + data
    return b"\xff\xed" + struct.pack(">H", len(payload) + 2) + payload


def encode(im: Image.Image, fmt: str, **params: object) -> bytes:
    """Save an image to bytes; parameters that are None are left out."""
    out = io.BytesIO()
    im.save(out, fmt, **{k: v for k, v in params.items() if v is not None})
    return out.getvalue()


def _base(w: int, h: int, color: object, mode: str, seed: int = 0) -> Image.Image:
    if color is not None:
        return Image.new(mode, (w, h), color)
    return picture(w, h, mode=mode, seed=seed)


def png(w: int, h: int, *, color: object = None, mode: str = "RGB",
        text: dict[str, str] | None = None, exif: bytes | None = None, icc: bool = False,
        xmp: bytes | None = None) -> bytes:
    """A PNG; ``text`` becomes iTXt chunks, ``xmp`` the ``XML:com.adobe.xmp`` one."""
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_itxt(key, value)
    if xmp is not None:
        info.add_itxt("XML:com.adobe.xmp", xmp.decode())
    return encode(_base(w, h, color, mode), "PNG", pnginfo=info, exif=exif,
                   icc_profile=_srgb_icc() if icc else None)


def jpeg(w: int, h: int, *, color: object = None, mode: str = "RGB", exif: bytes | None = None,
         orientation: int | None = None, quality: int = 90, progressive: bool = False,
         icc: bool = False, xmp: bytes | None = None, comment: bytes | None = None,
         subsampling: int | None = None, iptc: bytes | None = None) -> bytes:
    """A JPEG; ``orientation`` alone builds the EXIF, ``iptc`` is a segment from iptc_segment."""
    if orientation is not None:
        extra = Image.Exif()
        if exif:
            extra.load(exif)
        extra[0x0112] = orientation
        exif = b"Exif\x00\x00" + extra.tobytes()
    data = encode(_base(w, h, color, mode), "JPEG", quality=quality, progressive=progressive,
                   exif=exif, icc_profile=_srgb_icc() if icc else None, xmp=xmp,
                   comment=comment, subsampling=subsampling)
    if iptc is not None:
        data = data[:2] + iptc + data[2:]
    return data


def _frames(w: int, h: int, frames: int, mode: str = "RGB") -> list[Image.Image]:
    """Frames that all differ, so encoders cannot merge them: a bar moves across a picture."""
    base = picture(w, h)
    out = []
    for i in range(frames):
        im = base.copy()
        x = (i * max(1, w // max(frames, 1))) % w
        ImageDraw.Draw(im).rectangle((x, 0, x + max(1, w // 10), h), fill=(255, 40 * i % 256, 0))
        out.append(im.convert(mode))
    return out


def gif(w: int, h: int, frames: int = 1, *, duration: int = 80, loop: int | None = 0,
        comment: bytes | None = None) -> bytes:
    """A GIF; with frames > 1 an animation looping forever unless ``loop`` is None."""
    first, *rest = [im.convert("P", palette=Image.Palette.ADAPTIVE) for im in _frames(w, h, frames)]
    return encode(first, "GIF", save_all=bool(rest), append_images=rest, duration=duration,
                   loop=loop if rest else None, comment=comment)


def webp(w: int, h: int, frames: int = 1, *, lossless: bool = True, exif: bytes | None = None,
         icc: bool = False, xmp: bytes | None = None, mode: str = "RGB") -> bytes:
    """A WebP, animated when frames > 1."""
    first, *rest = _frames(w, h, frames, mode)
    return encode(first, "WEBP", save_all=bool(rest), append_images=rest, duration=80,
                   lossless=lossless, exif=exif, icc_profile=_srgb_icc() if icc else None,
                   xmp=xmp)


def apng(w: int, h: int, frames: int, *, mode: str = "RGBA") -> bytes:
    """An animated PNG."""
    first, *rest = _frames(w, h, frames, mode)
    return encode(first, "PNG", save_all=True, append_images=rest, duration=80, loop=0)


def avif(w: int, h: int, *, exif: bytes | None = None, xmp: bytes | None = None,
         icc: bool = False) -> bytes:
    """A still AVIF, fast to encode."""
    return encode(picture(w, h), "AVIF", speed=10, exif=exif, xmp=xmp,
                   icc_profile=_srgb_icc() if icc else None)


def bmp(w: int, h: int, *, mode: str = "RGB") -> bytes:
    return encode(picture(w, h, mode=mode), "BMP")


def png_header(w: int, h: int) -> bytes:
    """A PNG signature and IHDR declaring w×h, then one empty IDAT and IEND: no pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b""))
            + chunk(b"IEND", b""))


def webp_header(w: int, h: int) -> bytes:
    """A WebP whose extended header declares a w×h canvas, followed by no image at all."""
    vp8x = b"\0\0\0\0" + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
    body = b"WEBP" + b"VP8X" + struct.pack("<I", len(vp8x)) + vp8x
    return b"RIFF" + struct.pack("<I", len(body)) + body


_VIDEO_ARGS = {
    "mp4": ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-f", "mp4"],
    "mov": ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-f", "mov"],
    "webm": ["-c:v", "libvpx", "-b:v", "200k", "-f", "webm"],
}


@functools.lru_cache(maxsize=None)
def video(fmt: str, *, size: str = "64x48", seconds: float = 0.4) -> bytes:
    """A tiny test-pattern video ('mp4', 'mov' or 'webm') made by the bundled ffmpeg."""
    import imageio_ffmpeg

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"clip.{fmt}"
        subprocess.run(
            [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi",
             "-i", f"testsrc2=size={size}:rate=5", "-t", str(seconds), *_VIDEO_ARGS[fmt],
             str(out)],
            check=True, capture_output=True, timeout=60)
        return out.read_bytes()


_CLIP_CODECS = {
    "mp4": (["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"], ["-c:a", "aac"]),
    "mov": (["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"], ["-c:a", "aac"]),
    "webm": (["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "200k"],
             ["-c:a", "libopus"]),
}


def clip(fmt: str = "mp4", *, size: str = "64x48", seconds: float = 0.4, rate: int = 10,
         rotation: int = 0, tags: dict[str, str] | None = None, audio: bool = False,
         halves: bool = False, piped: bool = False, sar: str | None = None) -> bytes:
    """A short video ('mp4', 'mov' or 'webm') made by the bundled ffmpeg.

    ``rotation`` (clockwise degrees) is stored as a display matrix, as phones do; ``tags`` are
    container metadata (``com.apple.*`` keys as QuickTime metadata keys); ``halves`` paints the
    left half red and the right half blue instead of a test pattern; ``piped`` writes the file
    to a pipe, so a WebM's header carries no duration; ``sar`` ('8/9') makes pixels non-square.
    """
    return _clip(fmt, size, seconds, rate, rotation, tuple((tags or {}).items()), audio, halves,
                 piped, sar)


@functools.lru_cache(maxsize=None)
def _clip(fmt: str, size: str, seconds: float, rate: int, rotation: int,
          tags: tuple[tuple[str, str], ...], audio: bool, halves: bool, piped: bool,
          sar: str | None) -> bytes:
    import imageio_ffmpeg

    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    w, h = (int(v) for v in size.split("x"))
    source = (f"color=c=red:s={w // 2}x{h}:r={rate},pad={w}:{h}:0:0:blue" if halves
              else f"testsrc2=size={size}:rate={rate}")
    video_args, audio_args = _CLIP_CODECS[fmt]
    args = [ffmpeg, "-v", "error", "-f", "lavfi", "-i", source]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", *audio_args]
    # A frame count, not -t: -t would tell the muxer the duration even when writing to a pipe.
    args += ["-frames:v", str(max(1, round(seconds * rate))), *video_args]
    if sar:
        args += ["-vf", f"setsar={sar}"]
    apple = (["-movflags", "use_metadata_tags"] if any(k.startswith("com.apple.") for k, _ in tags)
             else [])
    for key, value in tags:
        args += ["-metadata", f"{key}={value}"]
    args += apple
    if piped:
        return subprocess.run([*args, "-f", fmt, "pipe:1"], check=True, capture_output=True,
                              timeout=60).stdout
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"clip.{fmt}"
        subprocess.run([*args, "-f", fmt, str(out)], check=True, capture_output=True, timeout=60)
        if rotation:
            # -display_rotation counts anticlockwise; the encoder must not see it (it would
            # turn the pixels), so it is added by a stream copy.
            rotated = Path(tmp) / f"rotated.{fmt}"
            subprocess.run([ffmpeg, "-v", "error", "-display_rotation", str(-rotation), "-i",
                            str(out), "-map", "0", "-c", "copy", *apple, "-f", fmt, str(rotated)],
                           check=True, capture_output=True, timeout=60)
            out = rotated
        return out.read_bytes()


@functools.lru_cache(maxsize=None)
def audio_only(seconds: float = 0.5) -> bytes:
    """An MP4 holding one AAC track and no video."""
    import imageio_ffmpeg

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sound.mp4"
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i",
                        f"sine=frequency=440:duration={seconds}", "-c:a", "aac", "-f", "mp4",
                        str(out)], check=True, capture_output=True, timeout=60)
        return out.read_bytes()


@functools.lru_cache(maxsize=None)
def two_scenes(red_seconds: float, blue_seconds: float, *, size: str = "64x48") -> bytes:
    """An MP4 that is red, then blue, with every frame a keyframe: shows where a frame was taken."""
    import imageio_ffmpeg

    source = (f"color=c=red:s={size}:r=5:d={red_seconds}[a];"
              f"color=c=blue:s={size}:r=5:d={blue_seconds}[b];[a][b]concat")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "scenes.mp4"
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i",
                        source, "-c:v", "libx264", "-g", "1", "-pix_fmt", "yuv420p", "-f", "mp4",
                        str(out)], check=True, capture_output=True, timeout=60)
        return out.read_bytes()


def sparse_gif(screen: tuple[int, int], frames: int, *, part: int = 1, duration: int = 4) -> bytes:
    """A GIF of many tiny frames on a large screen: a few KB that decode to frames × screen.

    Each frame is a ``part``×``part`` square of one colour, walking along the diagonal.
    """
    import struct

    width, height = screen
    out = bytearray(b"GIF89a" + struct.pack("<HHBBB", width, height, 0xF0, 0, 0))
    out += bytes([0, 0, 0, 255, 0, 0])  # a two-colour global palette: black, red
    out += b"!\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    # LZW data of part*part pixels of index 1, with a clear code first and an end code last,
    # minimum code size 2: codes are 3 bits wide for the first few codes.
    pixels = part * part
    for index in range(frames):
        x = (index * 7) % max(1, width - part)
        y = (index * 13) % max(1, height - part)
        out += b"!\xf9\x04" + struct.pack("<BHB", 0, duration, 0) + b"\x00"
        out += b"," + struct.pack("<HHHHB", x, y, part, part, 0)
        out += bytes([2]) + _lzw_run(pixels) + b"\x00"
    out += b";"
    return bytes(out)


def _lzw_run(pixels: int) -> bytes:
    """GIF LZW sub-blocks for ``pixels`` pixels of colour 1 (min code size 2), uncompressed:
    a clear code before every code so the code width stays 3 bits."""
    bits = 0
    nbits = 0
    data = bytearray()

    def put(code: int) -> None:
        nonlocal bits, nbits
        bits |= code << nbits
        nbits += 3
        while nbits >= 8:
            data.append(bits & 0xFF)
            bits >>= 8
            nbits -= 8

    for _ in range(pixels):
        put(4)  # clear
        put(1)
    put(5)  # end
    if nbits:
        data.append(bits & 0xFF)
    blocks = bytearray()
    for start in range(0, len(data), 255):
        piece = data[start:start + 255]
        blocks += bytes([len(piece)]) + piece
    return bytes(blocks)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data and CRC."""
    import struct
    import zlib

    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_chunks(png: bytes) -> list[bytes]:
    """The chunk types of a PNG, in order."""
    import struct

    kinds, i = [], 8
    while i < len(png):
        length, kind = struct.unpack(">I4s", png[i:i + 8])
        kinds.append(kind)
        i += 12 + length
    return kinds


def webp_chunk(fourcc: bytes, data: bytes) -> bytes:
    """One RIFF chunk of a WebP, padded to an even length."""
    import struct

    return fourcc + struct.pack("<I", len(data)) + data + b"\0" * (len(data) & 1)


def with_webp_chunks(webp: bytes, *chunks: bytes) -> bytes:
    """A WebP with chunks added at its end and its RIFF size set to match."""
    import struct

    body = webp[12:] + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body) + 4) + b"WEBP" + body


def solid_png(w: int, h: int, rgb: tuple[int, int, int]) -> bytes:
    """An RGB PNG of one colour, written directly: every row after the first is filtered "Up",
    so the data is zeros that deflate at once; a large one is made in a fraction of the time
    Pillow's encoder takes to try its filters on every row."""
    first = b"\x00" + bytes(rgb) * w
    rows = b"\x02" + bytes(3 * w)
    squeeze = zlib.compressobj(1)
    parts = [squeeze.compress(first)]
    step = 64
    for start in range(1, h, step):
        parts.append(squeeze.compress(rows * min(step, h - start)))
    parts.append(squeeze.flush())
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + png_chunk(b"IDAT", b"".join(parts)) + png_chunk(b"IEND", b""))


def gif_octree(w: int, h: int, frames: int, *, duration: int = 80) -> bytes:
    """An animated GIF like ``gif``'s, each frame put on its palette by the fast octree method
    (an adaptive palette of noise takes a tenth of a second a frame)."""
    first, *rest = [im.quantize(256, method=Image.Quantize.FASTOCTREE) for im in _frames(w, h, frames)]
    return encode(first, "GIF", save_all=bool(rest), append_images=rest, duration=duration, loop=0)
