"""The benchmark's input files, made deterministically (seeded) with Pillow and the bundled ffmpeg.

Each maker writes its file only when it is missing, so a kept inputs folder is reused as is.
"""
from __future__ import annotations

import io
import math
import random
import subprocess
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg
from PIL import Image, ImageDraw, ImageFilter

SEED = 1729
MIB = 1 << 20


@dataclass(frozen=True)
class Inputs:
    """Where each generated input lives."""

    png: Path          # 1920x1080 screenshot-like PNG
    jpeg: Path         # 4000x3000 photo-like JPEG with EXIF
    gif: Path          # 640x360, 100 frames
    mp4: Path          # 30 s 720p H.264 + AAC
    small_jpeg: Path   # about 200 KB, served by the GET runs
    small_mp4: Path    # about 3 MB, served by the GET runs


def ffmpeg() -> str:
    return imageio_ffmpeg.get_ffmpeg_exe()


def _ffmpeg(args: list[str], timeout: float = 900) -> None:
    subprocess.run([ffmpeg(), "-hide_banner", "-nostdin", "-v", "error", "-y", *args],
                   check=True, timeout=timeout)


def _write(path: Path, make) -> Path:
    """Make into a side name, then rename: an interrupted run never leaves half a file."""
    if not path.exists():
        part = path.with_name(path.name + ".part")
        make(part)
        part.replace(path)
    return path


def prepare(folder: Path, log=print) -> Inputs:
    """Make (or reuse) every input in folder."""
    folder.mkdir(parents=True, exist_ok=True)
    makers = [
        ("png", "shot.png", lambda p: screenshot(SEED).save(p, "PNG")),
        ("jpeg", "photo.jpg", lambda p: save_photo(p, (4000, 3000), SEED, quality=92, exif=True)),
        ("gif", "anim.gif", lambda p: save_animation(p, SEED)),
        ("mp4", "clip.mp4", lambda p: save_clip(p, seconds=30, bitrate="4M", seed=SEED)),
        ("small_jpeg", "small.jpg", lambda p: save_sized_jpeg(p, 200_000, SEED + 1)),
        ("small_mp4", "small.mp4", lambda p: save_clip(p, seconds=10, bitrate="2300k",
                                                       seed=SEED + 2)),
    ]
    paths = {}
    for field, name, make in makers:
        path = folder / name
        if not path.exists():
            log(f"  making {name}")
        paths[field] = _write(path, make)
    return Inputs(**paths)


# ---------------------------------------------------------------------------------------------
# Images

def screenshot(seed: int, size: tuple[int, int] = (1920, 1080)) -> Image.Image:
    """A desktop: a gradient, windows with title bars, lines of 'text', a picture, some icons."""
    rng = random.Random(seed)
    w, h = size
    im = Image.linear_gradient("L").resize(size).convert("RGB")
    im = Image.merge("RGB", [band.point(lambda v, k=k: 40 + v * k // 400)
                             for k, band in zip((90, 120, 200), im.split())])
    draw = ImageDraw.Draw(im)
    draw.rectangle((0, h - 40, w, h), fill=(32, 34, 40))
    for i in range(12):
        x = 10 + i * 46
        draw.rounded_rectangle((x, h - 34, x + 36, h - 6), 6, fill=_colour(rng))
    for _ in range(4):
        ww, wh = rng.randint(600, 1100), rng.randint(350, 700)
        x, y = rng.randint(0, w - ww), rng.randint(0, h - 40 - wh)
        draw.rectangle((x + 6, y + 6, x + ww + 6, y + wh + 6), fill=(20, 20, 24))
        draw.rectangle((x, y, x + ww, y + wh), fill=(250, 250, 250) if rng.random() < .6
                       else (30, 32, 36))
        draw.rectangle((x, y, x + ww, y + 28), fill=(225, 225, 230))
        for j, colour in enumerate(((255, 95, 86), (255, 189, 46), (39, 201, 63))):
            draw.ellipse((x + 10 + j * 20, y + 8, x + 22 + j * 20, y + 20), fill=colour)
        _text_lines(draw, rng, x + 16, y + 44, x + ww - 16, y + wh - 12)
    photo = photo_like((480, 320), seed + 7)
    im.paste(photo, (w - 540, 60))
    return im


def _colour(rng: random.Random) -> tuple[int, int, int]:
    return rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255)


def _text_lines(draw: ImageDraw.ImageDraw, rng: random.Random, x0: int, y0: int, x1: int,
                y1: int) -> None:
    palette = [(40, 40, 40), (0, 90, 170), (160, 40, 120), (30, 130, 60), (120, 120, 120)]
    y = y0
    while y + 10 < y1:
        x = x0 + rng.choice((0, 0, 0, 24, 48))
        for _ in range(rng.randint(0, 14)):
            word = rng.randint(3, 10) * 7
            if x + word > x1:
                break
            colour = rng.choice(palette)
            for k in range(0, word, 7):
                draw.rectangle((x + k, y + rng.randint(0, 3), x + k + 5, y + 10), fill=colour)
            x += word + 7
        y += 18


def photo_like(size: tuple[int, int], seed: int, grain: float = 0.06) -> Image.Image:
    """Soft colour fields with a few sharp shapes and film grain, as a camera would see them."""
    rng = random.Random(seed)
    w, h = size
    cells = (max(2, w // 160), max(2, h // 160))
    im = Image.frombytes("RGB", cells, rng.randbytes(cells[0] * cells[1] * 3))
    im = im.resize(size, Image.BICUBIC)
    shapes = Image.new("RGB", size)
    mask = Image.new("L", size)
    draw, mdraw = ImageDraw.Draw(shapes), ImageDraw.Draw(mask)
    for _ in range(40):
        cx, cy, r = rng.randrange(w), rng.randrange(h), rng.randint(w // 60, w // 8)
        box = (cx - r, cy - r * rng.uniform(.4, 1.6), cx + r, cy + r)
        draw.ellipse(box, fill=_colour(rng))
        mdraw.ellipse(box, fill=rng.randint(90, 220))
    mask = mask.filter(ImageFilter.BoxBlur(max(1, w // 800)))
    im = Image.composite(shapes, im, mask)
    noise = Image.frombytes("L", size, rng.randbytes(w * h)).convert("RGB")
    return Image.blend(im, noise, grain)


def photo_exif() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "Benchmark"
    exif[0x0110] = "Seeded Camera 12"
    exif[0x0112] = 1
    exif[0x0132] = "2024:06:01 12:00:00"
    exif[0x8769] = {0x9003: "2024:06:01 12:00:00", 0x829A: (1, 250), 0x8827: 200}
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)}
    return exif.tobytes()


def save_photo(path: Path, size: tuple[int, int], seed: int, *, quality: int,
               exif: bool) -> None:
    extra = {"exif": photo_exif()} if exif else {}
    photo_like(size, seed).save(path, "JPEG", quality=quality, **extra)


def save_sized_jpeg(path: Path, target: int, seed: int) -> None:
    """A 1280x960 photo at the quality whose size comes nearest to target bytes."""
    im = photo_like((1280, 960), seed, grain=0.03)
    best = None
    for quality in range(50, 97, 2):
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=quality)
        if best is None or abs(buf.tell() - target) < abs(len(best) - target):
            best = buf.getvalue()
    assert best is not None
    path.write_bytes(best)


def save_animation(path: Path, seed: int, size: tuple[int, int] = (640, 360),
                   frames: int = 100) -> None:
    """A screen-recording-like GIF: a still backdrop with moving shapes and a progress bar."""
    rng = random.Random(seed)
    w, h = size
    palette = [c for _ in range(64) for c in _colour(rng)]
    backdrop = Image.new("P", size, 0)
    backdrop.putpalette(palette)
    draw = ImageDraw.Draw(backdrop)
    for _ in range(30):
        x, y = rng.randrange(w), rng.randrange(h)
        draw.rectangle((x, y, x + rng.randint(20, 200), y + rng.randint(10, 80)),
                       fill=rng.randrange(1, 64))
    images = []
    for i in range(frames):
        frame = backdrop.copy()
        draw = ImageDraw.Draw(frame)
        for k in range(6):
            t = i / frames * 2 * math.pi + k
            cx, cy = w / 2 + math.cos(t * (k + 1) / 2) * w / 3, h / 2 + math.sin(t) * h / 3
            draw.ellipse((cx - 24, cy - 24, cx + 24, cy + 24), fill=(k * 9 + 5) % 64)
        draw.rectangle((20, h - 24, 20 + (w - 40) * (i + 1) // frames, h - 12), fill=63)
        images.append(frame)
    images[0].save(path, "GIF", save_all=True, append_images=images[1:], duration=40, loop=0)


# ---------------------------------------------------------------------------------------------
# Videos

def save_clip(path: Path, *, seconds: int, bitrate: str, seed: int,
              size: str = "1280x720") -> None:
    """An H.264 + AAC MP4 of a moving test pattern with seeded grain, 2 s between keyframes.

    x264 runs on one thread: its threaded rate control makes different bytes on every run.
    """
    _ffmpeg(["-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30,noise=alls=10:allf=t:all_seed={seed}",
             "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
             "-t", str(seconds), "-c:v", "libx264", "-threads", "1", "-preset", "veryfast",
             "-g", "60",
             "-b:v", bitrate, "-maxrate", bitrate, "-bufsize", "4M", "-pix_fmt", "yuv420p",
             "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart", "-f", "mp4", str(path)])


def make_big_video(path: Path, min_bytes: int, log=print, *, faststart: bool = True) -> Path:
    """A valid H.264 MP4 of at least min_bytes: a short high-rate clip joined to itself with
    stream copy, so making it costs one short encode whatever its size. Its container carries a
    title and a location, as a phone's video does; without ``faststart`` its index (moov) comes
    after the media data, as a phone or camera writes it (it knows the sizes only at the end)."""
    if path.exists() and path.stat().st_size >= min_bytes:
        return path
    path.unlink(missing_ok=True)
    log(f"  making a video of at least {min_bytes / MIB:.0f} MiB")
    piece = path.with_name(path.stem + ".piece.mp4")
    _ffmpeg(["-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate=30,noise=alls=40:allf=t:all_seed={SEED}",
             "-t", "8", "-c:v", "libx264", "-threads", "1", "-preset", "ultrafast", "-b:v", "60M",
             "-pix_fmt", "yuv420p", "-f", "mp4", str(piece)])
    copies = max(1, -(-min_bytes // piece.stat().st_size))
    listing = path.with_name(path.stem + ".txt")
    try:
        while not path.exists() or path.stat().st_size < min_bytes:
            path.unlink(missing_ok=True)
            listing.write_text("".join(f"file '{piece.name}'\n" for _ in range(copies)))
            _write(path, lambda part: _ffmpeg(["-f", "concat", "-safe", "0", "-i", str(listing),
                                               "-c", "copy", *(["-movflags", "+faststart"] if faststart else []),
                                               # what a phone writes: where and what, in the container
                                               "-metadata", "location=+48.8584+002.2945/",
                                               "-metadata", "title=Big test clip",
                                               "-f", "mp4", str(part)]))
            copies += 1  # the joined file came out a little smaller than the pieces
    finally:
        piece.unlink(missing_ok=True)
        listing.unlink(missing_ok=True)
    return path
