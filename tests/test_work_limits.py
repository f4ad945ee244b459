"""What an upload's media work may cost: CPU, memory and the server's threads, whatever the file."""
from __future__ import annotations

import io
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import imageio_ffmpeg
import pytest
import requests
from PIL import Image

import media
from conftest import LiveServer
from contract import assert_error, assert_upload_ok
from imgz import render, workers

MB = 1024 * 1024


def _gif_bomb(frames: int = 300) -> bytes:
    """A few KB that decode to ``frames`` whole 1000×1000 screens."""
    return media.sparse_gif((1000, 1000), frames)


def _nothing_kept(srv, rows_before: int, files_before: list[str]) -> None:
    assert srv.rows() == rows_before
    assert srv.stored_files() == files_before


def _server(tmp_path_factory: pytest.TempPathFactory, **settings: str) -> Iterator[LiveServer]:
    """One live server for the tests of a module that share its settings (each test looks only
    at what changed during it)."""
    srv = LiveServer(tmp_path_factory.mktemp("data"),
                     {f"IMGZ_{name.upper()}": value for name, value in settings.items()})
    try:
        yield srv
    finally:
        srv.stop()


# --- a budget that stops the work --------------------------------------------------------------

@pytest.fixture(scope="module")
def budget_of_one(tmp_path_factory):
    yield from _server(tmp_path_factory, work_budget="1")


def test_work_past_the_cpu_budget_is_refused_as_too_complex_and_nothing_is_kept(budget_of_one):
    srv = budget_of_one
    rows, files = srv.rows(), srv.stored_files()
    answer = srv.upload(_gif_bomb(), filename="bomb.gif", width="999")
    assert_error(answer, 400, 400, "Image too complex")
    _nothing_kept(srv, rows, files)
    # the worker that was stopped has been replaced
    assert_upload_ok(srv.upload(media.png(64, 48)))


def test_too_complex_answers_in_the_format_asked(budget_of_one):
    srv = budget_of_one
    answers: dict[str, requests.Response] = {}

    def send(fmt: str) -> None:
        answers[fmt] = srv.upload(_gif_bomb(), filename="bomb.gif", width="999", format=fmt)

    # both at once, each in a worker of its own: each is stopped at its own budget
    senders = [threading.Thread(target=send, args=(fmt,)) for fmt in ("txt", "json")]
    for t in senders:
        t.start()
    for t in senders:
        t.join(60)
    assert answers["txt"].status_code == answers["json"].status_code == 400
    assert answers["txt"].text == "Image too complex"
    assert answers["json"].json()["error"]["message"] == "Image too complex"


def test_guests_have_the_smaller_budget(make_server):
    srv = make_server(guest_uploads="1", guest_work_budget="1", work_budget="120")
    # 25 frames re-encoded at 999 px cost a worker 1.6 s of CPU: past the guest budget (which
    # a job gets in whole seconds, rounded down), and a small part of the keyed one
    bomb = _gif_bomb(25)
    rows, files = srv.rows(), srv.stored_files()
    answers: dict[str, requests.Response] = {}

    def send(who: str, key: str | None) -> None:
        answers[who] = srv.upload(bomb, filename="bomb.gif", api_key=key, width="999")

    # the same file from a guest and with a key, at once: each has a worker of its own
    senders = [threading.Thread(target=send, args=("guest", None)),
               threading.Thread(target=send, args=("keyed", "default"))]
    for t in senders:
        t.start()
    for t in senders:
        t.join(120)
    assert_error(answers["guest"], 400, 400, "Image too complex")
    image = assert_upload_ok(answers["keyed"])
    assert image["is_animated"] == 1 and image["width"] == 999
    # nothing of the guest's was kept: one row more, and only the keyed upload's files
    assert srv.rows() == rows + 1
    stem = image["url"].rsplit("/", 1)[1].split(".")[0]
    added = sorted(set(srv.stored_files()) - set(files))
    assert added and all(Path(f).name.split(".")[0] == stem for f in added), added


def test_work_past_the_memory_limit_is_refused_as_too_complex(make_server):
    srv = make_server(worker_memory_mb="400")
    rows, files = srv.rows(), srv.stored_files()
    # 80 Mpx of one colour: a small file whose re-encode needs far more than 400 MB
    big = media.solid_png(10000, 8000, (20, 90, 200))
    assert_error(srv.upload(big, filename="big.png", width="9000"), 400, 400, "Image too complex")
    _nothing_kept(srv, rows, files)
    assert_upload_ok(srv.upload(media.png(64, 48)))


def test_the_servers_own_memory_does_not_hold_the_work(make_server):
    srv = make_server()
    before = _kib(srv.pid, "VmHWM")
    # 80 frames of a 1000x1000 screen: a server that held them, even at a byte a pixel, would
    # grow by 76 MiB, past the bound
    image = assert_upload_ok(srv.upload(_gif_bomb(80), filename="bomb.gif"))
    assert image["is_animated"] == 1
    assert _kib(srv.pid, "VmHWM") - before < 64 * 1024


# --- animations stream ------------------------------------------------------------------------

def _animation(fmt: str, frames: int = 40, size: tuple[int, int] = (1000, 1000)) -> bytes:
    """Frames of a large canvas with a small moving square: cheap to make, large to decode."""
    pictures = []
    for index in range(frames):
        frame = Image.new("RGBA", size, (0, 0, 0, 0))
        frame.paste((255, 40 * (index % 6), 0, 255), (index * 9, index * 9, index * 9 + 40, index * 9 + 40))
        pictures.append(frame)
    buffer = io.BytesIO()
    options = {"webp": {"lossless": True}, "avif": {"speed": 10}}.get(fmt, {})  # speed: made at once
    pictures[0].save(buffer, {"gif": "GIF", "png": "PNG", "webp": "WEBP", "avif": "AVIF"}[fmt],
                     save_all=True, append_images=pictures[1:], duration=40, loop=0, **options)
    return buffer.getvalue()


@pytest.fixture
def pool():
    """A worker of its own for each test: a heap left by another job would hide what the
    measured one takes."""
    made = workers.Pool(1, memory=2048 * MB)
    yield made
    made.close()


def _work_peak(pool, job, args) -> int:
    """The peak memory a job adds to an idle worker's."""
    import workerjobs

    pool.run(workerjobs.pid, (), workers.budget_for(60))
    idle = pool.last_usage.peak_rss
    pool.run(job, args, workers.budget_for(120))
    return pool.last_usage.peak_rss - idle


# Re-encoded at one pixel under its screen the original is made from the frames decoded
# afresh, then (past 500 px) the medium from the frames decoded again: the peak covers both.
# Held frames would pass the bound of 64 MiB and two screens: a GIF writer keeps each frame on
# a palette, a byte a pixel, so 320 frames of 499x499 come to 76 MiB (the bound: 66 MiB); PNG
# and WebP frames are RGBA, 4 bytes a pixel, so 24 frames of 999x999 come to 91 MiB (the
# bound: 72 MiB).
@pytest.mark.parametrize("fmt,side,frames", [("gif", 500, 320), ("png", 1000, 24), ("webp", 1000, 24)])
def test_an_animation_is_made_with_a_frame_or_two_in_memory(pool, tmp_path, fmt, side, frames):
    src = tmp_path / f"anim.{fmt}"
    src.write_bytes(media.sparse_gif((side, side), frames) if fmt == "gif"
                    else _animation(fmt, frames=frames, size=(side, side)))
    work = tmp_path / "work"
    work.mkdir()
    limits = render.Limits(100_000_000, 1_000_000_000, False, 300)
    peak = _work_peak(pool, render.image, (src, fmt, fmt, side - 1, None, limits, work))
    canvas = side * side * 4
    assert peak <= 64 * MB + 2 * canvas, f"{peak / MB:.0f} MiB"
    with Image.open(work / f"original.{fmt}") as im:
        assert im.n_frames == frames and im.size[0] == side - 1
    with Image.open(work / f"medium.{fmt}") as im:
        assert im.n_frames == frames and im.size[0] == min(500, side - 1)


# AVIF's encoder takes its time (40 ms a frame here) and a growth of 48 frames is what shows:
# the slow run. Its frames come from the same Feed as WebP's, measured above.
@pytest.mark.slow
@pytest.mark.parametrize("width", [None, 599])
def test_an_avif_animation_needs_no_more_memory_for_more_frames(tmp_path, width):
    """libaom keeps a lookahead of its own whatever the length: what must not grow is ours.

    Without a width only the medium (500 px) is encoded, as for every AVIF upload; at 599 px
    the original is encoded too.
    """
    limits = render.Limits(100_000_000, 1_000_000_000, False, 300)
    warm_up = tmp_path / "warm.avif"
    warm_up.write_bytes(_animation("avif", frames=2, size=(600, 600)))

    def peak_for(frames: int) -> int:
        # A worker of its own for each count, no heap left by other jobs: its first AVIF job
        # also loads the codecs, and is not measured.
        pool = workers.Pool(1, memory=2048 * MB)
        try:
            src = tmp_path / f"anim{frames}.avif"
            src.write_bytes(_animation("avif", frames=frames, size=(600, 600)))
            peak = 0
            for job, count in ((warm_up, 2), (src, frames)):
                work = tmp_path / f"work{frames}-{count}"
                work.mkdir()
                peak = _work_peak(pool, render.image, (job, "avif", "avif", width, None, limits, work))
                with Image.open(work / "medium.avif") as im:
                    assert im.n_frames == count
            return peak
        finally:
            pool.close()

    # Held frames would cost 48 x (1.0 MB RGBA + 0.4 MB YUV) more for the longer one at the
    # medium's 500 px (the RGBA alone is 46 MiB), more at 599 px; the peak is flat from 16
    # frames on.
    peaks = [peak_for(24), peak_for(72)]
    assert peaks[1] <= peaks[0] + 32 * MB, [p / MB for p in peaks]


@pytest.mark.slow  # 20 s of work: the same path at a tighter bound is in the default run above
def test_the_gif_of_300_tiny_frames_stays_under_256_mib(pool, tmp_path):
    src = tmp_path / "bomb.gif"
    src.write_bytes(_gif_bomb(300))
    work = tmp_path / "work"
    work.mkdir()
    limits = render.Limits(100_000_000, 1_000_000_000, False, 300)
    peak = _work_peak(pool, render.image, (src, "gif", "gif", 999, None, limits, work))
    assert peak <= 256 * MB
    with Image.open(work / "original.gif") as im:
        assert im.size == (999, 999) and im.n_frames == 300


@pytest.mark.parametrize("fmt", ["gif", "png"])
def test_a_written_animation_shows_every_frame_as_it_was(tmp_path, fmt):
    """Frames cut to their visible box and cleared after showing still look like the source."""
    src = tmp_path / f"anim.{fmt}"
    src.write_bytes(_animation(fmt, frames=6, size=(200, 120)))
    work = tmp_path / "work"
    work.mkdir()
    limits = render.Limits(100_000_000, 1_000_000_000, False, 300)
    made = render.image(src, fmt, fmt, 199, None, limits, work)
    with Image.open(src) as before, Image.open(made.original.path) as after:
        assert after.n_frames == before.n_frames == 6
        for index in range(6):
            before.seek(index)
            after.seek(index)
            b = before.convert("RGBA").resize((199, 119))
            a = after.convert("RGBA")
            assert a.getchannel("A").getbbox() is not None
            # the square is where it was, within a pixel of resampling
            box_a = a.getchannel("A").point(lambda v: 255 if v > 127 else 0).getbbox()
            box_b = b.getchannel("A").point(lambda v: 255 if v > 127 else 0).getbbox()
            assert all(abs(x - y) <= 1 for x, y in zip(box_a, box_b)), (index, box_a, box_b)
            assert after.info.get("duration") == 40


# --- animated AVIF ------------------------------------------------------------------------------

def test_animated_avif_counts_every_frame_against_the_animation_limit(make_server):
    srv = make_server(max_animation_pixels="10000000")
    rows, files = srv.rows(), srv.stored_files()
    # 12 frames of 1 Mpx: each far under the limit, together past it
    anim = _animation("avif", frames=12)
    assert_error(srv.upload(anim, filename="anim.avif"), 400, 400, "Image too large")
    _nothing_kept(srv, rows, files)
    small = _animation("avif", frames=5, size=(600, 400))
    image = assert_upload_ok(srv.upload(small, filename="small.avif"))
    assert image["is_animated"] == 1 and image["extension"] == "avif"


# --- videos that grow after their header ---------------------------------------------------------

def _joined(tmp: Path, codec: list[str], ext: str, small: int, big: int) -> bytes:
    """A video whose header says small×small, joined (stream copy) with big×big frames."""
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    parts = []
    for index, (side, frames) in enumerate(((small, 4), (big, 24))):
        part = tmp / f"part{index}.{ext}"
        subprocess.run([ffmpeg, "-v", "error", "-f", "lavfi", "-i", f"color=c=blue:s={side}x{side}:r=8",
                        "-frames:v", str(frames), *codec, str(part)], check=True, timeout=120)
        parts.append(part)
    listing = tmp / "parts.txt"
    listing.write_text("".join(f"file '{p}'\n" for p in parts))
    out = tmp / f"joined.{ext}"
    subprocess.run([ffmpeg, "-v", "error", "-f", "concat", "-safe", "0", "-i", str(listing),
                    "-c", "copy", str(out)], check=True, timeout=120)
    return out.read_bytes()


@pytest.fixture(scope="module")
def growing_videos():
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(2) as makers:  # ffmpeg twice at once
        (Path(tmp) / "mov").mkdir()
        (Path(tmp) / "webm").mkdir()
        mov = makers.submit(_joined, Path(tmp) / "mov", ["-c:v", "mjpeg", "-q:v", "31"], "mov", 64, 1200)
        # no frame may be dropped (libvpx drops frames to keep a bitrate when it is slow)
        webm = makers.submit(_joined, Path(tmp) / "webm", ["-c:v", "libvpx", "-b:v", "0", "-crf", "60",
                                                           "-drop-threshold", "0", "-deadline", "good",
                                                           "-cpu-used", "8"], "webm", 64, 1200)
        yield {"mjpeg-mov": (mov.result(), "mov"), "vp8-webm": (webm.result(), "webm")}


@pytest.fixture(scope="module")
def one_megapixel(tmp_path_factory):
    yield from _server(tmp_path_factory, max_pixels="1000000")


@pytest.fixture(scope="module")
def five_megapixels(tmp_path_factory):
    yield from _server(tmp_path_factory, max_pixels="5000000")


@pytest.mark.parametrize("kind", ["mjpeg-mov", "vp8-webm"])
def test_a_video_cannot_grow_past_the_pixel_limit_after_its_header(one_megapixel, growing_videos, kind):
    srv = one_megapixel
    data, ext = growing_videos[kind]
    rows, files = srv.rows(), srv.stored_files()
    answer = srv.upload(data, filename=f"grows.{ext}")
    assert_error(answer, 400, 400, "Image too large")
    _nothing_kept(srv, rows, files)


@pytest.mark.parametrize("kind", ["mjpeg-mov", "vp8-webm"])
def test_the_same_video_is_taken_under_a_limit_it_fits(five_megapixels, growing_videos, kind):
    srv = five_megapixels
    data, ext = growing_videos[kind]
    image = assert_upload_ok(srv.upload(data, filename=f"grows.{ext}"))
    assert image["type"] == "video"


# --- a queue of uploads never holds the threads pages need ----------------------------------------

def test_queued_uploads_do_not_starve_pages_and_files(make_server):
    srv = make_server(workers="1", upload_queue="2", threads="4")
    page_file = assert_upload_ok(srv.upload(media.png(64, 48)))["url"]
    # 6 frames re-encoded at 999 px: 0.4 s of work each, so the three taken are processed one
    # after the other for over a second, while the rest are turned away (in a few hundredths
    # of a second) and pages and files are asked for
    bomb = _gif_bomb(6)
    answers: list[requests.Response] = []
    refused_after: list[float] = []
    arrived = threading.Condition()
    started = time.monotonic()

    def send() -> None:
        answer = srv.upload(bomb, filename="slow.gif", width="999")
        with arrived:
            answers.append(answer)
            if answer.status_code == 503:
                refused_after.append(time.monotonic() - started)
            arrived.notify_all()

    senders = [threading.Thread(target=send) for _ in range(12)]
    for t in senders:
        t.start()
    with arrived:  # three are taken, the rest are turned away
        assert arrived.wait_for(lambda: len(refused_after) == 9, timeout=30), len(refused_after)
    assert min(refused_after) <= 1.0, "uploads past the queue are answered at once"
    page = srv.get("/", timeout=20)
    file = srv.get(page_file, timeout=20)
    with arrived:
        still_working = len(answers) < 12
    assert page.status_code == 200 and file.status_code == 200
    assert still_working, "pages and files were answered while uploads were still processed"
    for t in senders:
        t.join(120)
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(200) == 3 and statuses.count(503) == 9, statuses
    for answer in answers:
        if answer.status_code == 503:
            assert_error(answer, 503, 503)
            assert 1 <= int(answer.headers["Retry-After"]) <= 120
    assert srv.rows() == 1 + 3


def _kib(pid: int, field: str) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


# --- structures made to cost a walk -------------------------------------------------------------

def _gif_of_tiny_blocks(blocks: int) -> bytes:
    """One frame whose image data comes in sub-blocks of a single byte each."""
    import struct

    head = b"GIF89a" + struct.pack("<HHBBB", 64, 64, 0x80, 0, 0) + bytes(6)
    frame = b"," + struct.pack("<HHHHB", 0, 0, 64, 64, 0) + bytes([2])
    return head + frame + b"\x01\x00" * blocks + b"\x00;"


def _png_of_empty_chunks(count: int, *, before: bool) -> bytes:
    import struct
    import zlib

    plain = media.png(32, 24)
    empty = struct.pack(">I4s", 0, b"zzZz") + struct.pack(">I", zlib.crc32(b"zzZz"))
    cut = plain.index(b"IDAT") - 4 if before else plain.index(b"IEND") - 4
    return plain[:cut] + empty * count + plain[cut:]


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """The default settings (uploads up to 200 MB): the files below are refused for their
    structure, not their size."""
    yield from _server(tmp_path_factory)


def test_a_gif_of_millions_of_tiny_blocks_is_refused_before_it_is_decoded(plain):
    srv = plain
    rows, files = srv.rows(), srv.stored_files()
    answer = srv.upload(_gif_of_tiny_blocks(2_100_000), filename="blocks.gif")
    assert_error(answer, 400, 400, "Image too complex")
    _nothing_kept(srv, rows, files)


@pytest.mark.parametrize("before", [True, False], ids=["before-idat", "after-idat"])
@pytest.mark.parametrize("width", [None, "16"])
def test_a_png_of_a_million_empty_chunks_is_refused_before_pillow_walks_it(plain, before, width):
    srv = plain
    rows, files = srv.rows(), srv.stored_files()
    answer = srv.upload(_png_of_empty_chunks(1_000_000, before=before), filename="chunks.png", width=width)
    assert_error(answer, 400, 400, "Image too complex")
    _nothing_kept(srv, rows, files)


def test_a_gif_or_png_below_the_caps_is_stored(plain):
    srv = plain
    image = assert_upload_ok(srv.upload(_png_of_empty_chunks(5_000, before=True), filename="ok.png"))
    assert image["width"] == 32


def _blocks(size: tuple[int, int], clear: bool) -> Image.Image:
    """Big blocks of a few colours, with a clear square when asked."""
    from PIL import ImageDraw

    picture = Image.new("RGBA", size, (20, 30, 40, 255))
    draw = ImageDraw.Draw(picture)
    colours = [(250, 10, 10, 255), (10, 250, 10, 255), (10, 10, 250, 255), (240, 240, 20, 255)]
    for index, colour in enumerate(colours):
        draw.rectangle((index * size[0] // 5, 0, (index + 1) * size[0] // 5 - 1, size[1] // 2), fill=colour)
    if clear:
        draw.rectangle((0, size[1] * 3 // 4, size[0] // 3, size[1] - 1), fill=(0, 0, 0, 0))
    return picture


@pytest.mark.parametrize("clear", [False, True], ids=["opaque", "with-clear-area"])
def test_a_large_gif_frame_keeps_its_colours_when_put_on_a_palette_by_bands(tmp_path, clear):
    from imgz import animation

    picture = _blocks((1500, 1000), clear)  # past PALETTE_SAMPLE: sampled palette, mapped by bands
    assert picture.width * picture.height > animation.PALETTE_SAMPLE
    out = tmp_path / "big.gif"
    animation.write(out, "gif", iter([(picture, 50), (picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT), 50)]),
                    count=2, loop=0, params={})
    with Image.open(out) as written:
        assert written.n_frames == 2
        back = written.convert("RGBA")
        assert back.size == picture.size
        for xy in [(10, 10), (400, 100), (700, 400), (1000, 300), (1400, 900), (100, 900)]:
            assert back.getpixel(xy) == picture.getpixel(xy) or (
                back.getpixel(xy)[3] == 0 and picture.getpixel(xy)[3] == 0), xy


@pytest.mark.parametrize("mode", ["RGBA", "P", "RGB"])
@pytest.mark.parametrize("size", [(700, 500), (1999, 1000), (500, 2)])
def test_a_frame_resized_in_bands_matches_one_resized_whole(mode, size):
    from PIL import ImageChops, ImageStat

    from imgz import pixels

    source = _blocks((2000, 1000), clear=True)
    if mode != "RGBA":
        source = source.convert(mode) if mode == "RGB" else source.quantize(16)
    whole = source.convert("RGBA").resize(size, **pixels.RESAMPLE)
    banded = pixels.banded_fit(source, size)
    assert banded.size == whole.size and banded.mode == "RGBA"
    diff = ImageChops.difference(whole.getchannel("A"), banded.getchannel("A"))
    assert diff.getextrema()[1] <= 8
    visible = ImageChops.difference(Image.alpha_composite(Image.new("RGBA", size, "white"), whole),
                                    Image.alpha_composite(Image.new("RGBA", size, "white"), banded))
    assert max(ImageStat.Stat(visible).mean) < 1.0


def test_a_pixel_limit_raised_past_pillows_own_is_followed_by_the_workers(make_server):
    srv = make_server(max_pixels="200000000")
    # 190 Mpx: past twice Pillow's default guard, within the setting (one pixel of a large screen)
    image = assert_upload_ok(srv.upload(media.sparse_gif((19000, 10000), 1), filename="wide.gif"))
    assert (image["width"], image["height"]) == (19000, 10000)
