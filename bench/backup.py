"""``backup``, ``backup --link``, ``backup --verify`` and ``restore`` on a data dir of about 1 GB.

    .venv/bin/python bench/run.py --only backup [--quick]

The data dir is filled through a real server's API: noise PNGs of about 3 MB (which no
compression shrinks; each stores an original, a medium and a thumb) and a few large videos,
about 1 GB stored in all (a quarter of it with --quick). Each command then runs in its own
process as a user would run it, the server still up and idle, and is timed from spawn to exit;
its speed is the bytes the backup holds over that time. The files were just written, so most
are read from the page cache; the copies are written to the same disk and fsynced.
"""
from __future__ import annotations

import io
import json
import random
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from PIL import Image

import inputs
import procs
from report import Row, say

PNG_SIDE = 1024            # 1024 x 1024 RGB noise: about 3.1 MB as PNG
VARIETY = 12               # distinct pictures; uploads repeat them (each upload is stored anew)
UPLOAD_CLIENTS = 4


def noise_png(seed: int) -> bytes:
    rng = random.Random(seed)
    image = Image.frombytes("RGB", (PNG_SIDE, PNG_SIDE), rng.randbytes(PNG_SIDE * PNG_SIDE * 3))
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=1)
    return out.getvalue()


def fill(url: str, key: str, pictures: int, video: Path, videos: int) -> None:
    """Upload ``pictures`` noise PNGs and ``videos`` copies of ``video`` through the API."""
    made = [noise_png(inputs.SEED + n) for n in range(VARIETY)]
    session = requests.Session()

    def upload(n: int) -> None:
        if n < videos:
            with open(video, "rb") as file:
                files = {"source": (f"v{n}.mp4", file)}
                answer = session.post(f"{url}/api/1/upload", headers={"X-API-Key": key},
                                      files=files, timeout=600)
        else:
            files = {"source": (f"p{n}.png", made[n % VARIETY])}
            answer = session.post(f"{url}/api/1/upload", headers={"X-API-Key": key}, files=files,
                                  timeout=600)
        if answer.status_code != 200:
            raise RuntimeError(f"upload {n}: HTTP {answer.status_code} {answer.text[:200]}")

    with ThreadPoolExecutor(UPLOAD_CLIENTS) as pool:
        list(pool.map(upload, range(videos + pictures)))


def _timed(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(procs.ROOT / "app.py"), *args], env=env,
                          capture_output=True, text=True, timeout=3600)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"app.py {' '.join(args)}: exit {done.returncode}: {done.stderr[-500:]}")
    return took


def part(session) -> list[Row]:
    quick = session.args.quick
    pictures, videos, video_mib = (60, 1, 60) if quick else (180, 2, 150)
    work: Path = session.work / "backup"
    work.mkdir()
    data = work / "data"
    say(f"\n== backup: a data dir of {pictures} noise PNGs and {videos} videos "
        f"of {video_mib} MiB, filled through the API")
    session.inputs_dir.mkdir(parents=True, exist_ok=True)
    video = inputs.make_big_video(session.inputs_dir / f"big-{video_mib}.mp4", video_mib * inputs.MIB,
                                  log=say)
    child, url, key = procs.start_imgz(session.pool, data, work / "imgz.log",
                                       settings={"IMGZ_MAX_UPLOAD_MB": "1000"})
    started = time.perf_counter()
    fill(url, key, pictures, video, videos)
    say(f"  filled in {time.perf_counter() - started:.0f} s")
    env = procs.clean_env(IMGZ_MIN_FREE_MB="0")
    rows: list[Row] = []
    figures: dict[str, float] = {}
    try:
        for name, args in (("copy", ["backup", str(work / "copy")]),
                           ("hard links", ["backup", "--link", str(work / "linked")]),
                           ("verify", ["backup", "--verify", str(work / "copy")]),
                           ("restore", ["restore", str(work / "copy")])):
            target = work / "restored" if name == "restore" else data
            figures[name] = _timed(["--data", str(target), *args], env)
    finally:
        session.pool.stop(child)
    header = json.loads((work / "copy" / "backup.json").read_text())
    size_mb = header["bytes"] / 1e6
    say(f"  the backup holds {header['files']} files, {size_mb:,.0f} MB")
    for name, took in figures.items():
        say(f"  {name}: {took:.1f} s, {size_mb / took:,.0f} MB/s")
        label = {"copy": "backup (copy)", "hard links": "backup --link",
                 "verify": "backup --verify", "restore": "restore"}[name]
        rows.append(Row(f"{label} of a {size_mb:,.0f} MB data dir", f"{size_mb / took:,.0f} MB/s"))
    for folder in ("copy", "linked", "restored"):
        shutil.rmtree(work / folder, ignore_errors=True)
    return rows
