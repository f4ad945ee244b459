"""What one upload's media work can cost at the defaults: memory for animations, CPU for guests.

Two figures, both against the limits of the hardening targets:

- **animation memory**: the largest animations the default limits accept (10 frames of
  10000x10000, the most pixels per frame and over all frames; the 300-frame GIF of 1x1 frames on
  a 1000x1000 screen) are rendered by a media worker with the default settings, and the
  worker's peak memory above an idle worker's is printed against 64 MiB + 2 x canvas x 4 bytes
  (and 256 MiB for the 300-frame GIF);
- **guest CPU**: imgz is started with guest uploads on and every default, and costly inputs
  within the guest size limit are uploaded without a key, one at a time; the CPU the whole
  machine spent on each (from /proc/stat, so the server, its workers and ffmpeg all count) is
  printed against 10 s.

Loopback only; bounded by the inputs' count and the server's own budgets.

    .venv/bin/python bench/work_costs.py [--only memory|cpu]
"""
from __future__ import annotations

import argparse
import io
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from load import multipart, post  # noqa: E402
from procs import Pool as Children, start_imgz  # noqa: E402

MB = 1024 * 1024
GUEST_CPU_TARGET = 10.0


# ---------------------------------------------------------------------------------------------
# Inputs, made here

def sparse_gif(screen: tuple[int, int], frames: int) -> bytes:
    """Tiny frames on a large screen: a few KB that decode to frames x screen pixels."""
    width, height = screen
    out = bytearray(b"GIF89a" + struct.pack("<HHBBB", width, height, 0xF0, 0, 0))
    out += bytes([0, 0, 0, 255, 0, 0]) + b"!\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    for index in range(frames):
        x, y = (index * 7) % (width - 1), (index * 13) % (height - 1)
        out += b"!\xf9\x04\x00\x04\x00\x00\x00"
        # one pixel of colour 1: clear code, 1, end code, 3 bits each (min code size 2)
        out += b"," + struct.pack("<HHHHB", x, y, 1, 1, 0) + b"\x02\x02\x4c\x01\x00"
    return bytes(out + b";")


def solid(fmt: str, size: tuple[int, int], **params: object) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, (30, 110, 190)).save(buffer, fmt, **params)
    return buffer.getvalue()


def scan_bomb(copies: int) -> bytes:
    """An 8192x8192 progressive JPEG whose last (small) scan is repeated: valid, and costly per
    copy to decode, as each scan walks the whole image."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.linear_gradient("L").resize((8192, 8192)).convert("RGB").save(buffer, "JPEG",
                                                                        progressive=True)
    data = buffer.getvalue()
    last = data.rindex(b"\xff\xda")
    return data[:-2] + data[last:-2] * copies + b"\xff\xd9"


def long_gop_video(tmp: Path) -> bytes:
    """A 1080p H.264 video with one keyframe: the frame at a quarter means decoding up to it."""
    import imageio_ffmpeg

    out = tmp / "gop.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi",
                    "-i", "testsrc2=size=1920x1080:rate=30", "-frames:v", "1800",
                    "-c:v", "libx264", "-preset", "ultrafast", "-g", "100000", "-crf", "51",
                    "-pix_fmt", "yuv420p", str(out)], check=True, timeout=600)
    return out.read_bytes()


# ---------------------------------------------------------------------------------------------
# Animation memory, in a media worker

def _render_peak(pool, src: Path, fmt: str, width: int | None, work: Path):
    from imgz import render, workers

    pool.run(os.getpid, (), workers.budget_for(60))
    idle = pool.last_usage.peak_rss
    limits = render.Limits(100_000_000, 1_000_000_000, False, 300)
    started = time.monotonic()
    pool.run(render.image, (src, fmt, fmt, width, None, limits, work), workers.budget_for(60))
    usage = pool.last_usage
    return usage.peak_rss - idle, usage.cpu, time.monotonic() - started


def animation_memory(tmp: Path) -> bool:
    from imgz import workers

    print("== peak memory of the work for the largest animations the defaults accept")
    ok = True
    cases = [("10 frames of 10000x10000", (10000, 10000), 10, None, None),
             ("10 frames of 10000x10000, width=9999", (10000, 10000), 10, 9999, None),
             ("300 frames of 1x1 on 1000x1000, width=999", (1000, 1000), 300, 999, 256 * MB)]
    for name, screen, frames, width, fixed in cases:
        src = tmp / f"anim-{screen[0]}-{frames}.gif"
        src.write_bytes(sparse_gif(screen, frames))
        work = Path(tempfile.mkdtemp(dir=tmp))
        pool = workers.Pool(1, memory=3072 * MB)  # a fresh worker: no heap from the last case
        try:
            peak, cpu, wall = _render_peak(pool, src, "gif", width, work)
        finally:
            pool.close()
        canvas = screen[0] * screen[1] * 4
        target = min(64 * MB + 2 * canvas, fixed or 1 << 62)
        passed = peak <= target
        ok &= passed
        print(f"{name:44s} {src.stat().st_size / 1000:7.1f} KB  peak +{peak / MB:7.1f} MiB "
              f"({'PASS' if passed else 'MISS'} <= {target / MB:.0f})  cpu {cpu:5.1f} s  "
              f"wall {wall:5.1f} s")
    return ok


# ---------------------------------------------------------------------------------------------
# Guest CPU, through a server

def _busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all but idle and iowait)."""
    with open("/proc/stat") as fh:
        fields = [int(v) for v in fh.readline().split()[1:]]
    ticks = os.sysconf("SC_CLK_TCK")
    return (sum(fields) - fields[3] - fields[4]) / ticks


def guest_cpu(tmp: Path) -> bool:
    print("== CPU the whole machine spends on one guest upload (defaults, guest uploads on)")
    inputs = [
        ("GIF, 300 frames of 1x1 on 1000x1000, width=999", sparse_gif((1000, 1000), 300), "a.gif", "999"),
        ("GIF, 10 frames of 10000x10000, width=9999", sparse_gif((10000, 10000), 10), "b.gif", "9999"),
        ("PNG 10000x10000, width=9999", solid("PNG", (10000, 10000)), "c.png", "9999"),
        ("progressive JPEG 10000x10000", solid("JPEG", (10000, 10000), progressive=True, quality=95),
         "d.jpg", None),
        ("JPEG 10000x10000, width=9999", solid("JPEG", (10000, 10000), quality=95), "e.jpg", "9999"),
        ("progressive JPEG 8192x8192, last scan x 90", scan_bomb(90), "f.jpg", None),
        ("progressive JPEG 8192x8192, last scan x 5000", scan_bomb(5000), "f2.jpg", None),
        ("WebP 16383x6100, width=16000", solid("WEBP", (16383, 6100), lossless=True), "g.webp", "16000"),
        ("AVIF 10000x10000", solid("AVIF", (10000, 10000)), "h.avif", None),
        ("H.264 1080p, 60 s, one keyframe", long_gop_video(tmp), "i.mp4", None),
    ]
    children = Children()
    worst = 0.0
    try:
        _child, url, _key = start_imgz(children, tmp / "data", tmp / "imgz.log",
                                       settings={"IMGZ_GUEST_UPLOADS": "1"})
        for name, data, filename, width in inputs:
            if len(data) > 20_000_000:
                print(f"{name:48s} {len(data) / 1e6:6.1f} MB: over the guest limit, skipped")
                continue
            path = tmp / filename
            path.write_bytes(data)
            body = multipart(path, fields={"width": width} if width else None)
            time.sleep(1)  # let the machine settle
            before, started = _busy_seconds(), time.monotonic()
            status, answer = post(url + "/api/1/upload", body.payload(), body.length,
                                  body.content_type, {}, timeout=300)
            spent = _busy_seconds() - before
            worst = max(worst, spent)
            message = answer[:80].decode("utf-8", "replace") if status != 200 else "stored"
            if status != 200:
                try:
                    import json

                    message = json.loads(answer)["error"]["message"]
                except (ValueError, KeyError):
                    pass
            print(f"{name:48s} {len(data) / 1e6:6.1f} MB  {status} {message:24s} "
                  f"cpu {spent:5.1f} s  wall {time.monotonic() - started:5.1f} s")
    finally:
        children.stop_all()
    passed = worst <= GUEST_CPU_TARGET
    print(f"worst guest upload: {worst:.1f} s of CPU ({'PASS' if passed else 'MISS'} "
          f"<= {GUEST_CPU_TARGET:.0f})")
    return passed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["memory", "cpu"])
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="imgz-work-") as tmp:
        if args.only in (None, "memory"):
            results.append(animation_memory(Path(tmp)))
        if args.only in (None, "cpu"):
            results.append(guest_cpu(Path(tmp)))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
