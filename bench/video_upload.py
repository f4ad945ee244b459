"""Upload one large generated video to a real imgz server and print its memory growth and speed.

    .venv/bin/python bench/video_upload.py [--mb 520] [--keep DIR]

Makes a valid H.264 MP4 of at least --mb megabytes with the bundled ffmpeg (a short clip at a
high bit rate, joined to itself with stream copy), starts ``app.py serve`` on a free 127.0.0.1
port with the upload limit raised, uploads the file with curl (which streams it from disk), and
prints the server's peak resident memory growth and the upload throughput. Everything it starts
is stopped; only 127.0.0.1 is contacted.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from inputs import make_big_video  # noqa: E402
from procs import ROOT, kib  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=520, help="size of the video in MB (default 520)")
    parser.add_argument("--keep", help="work in this directory and keep it")
    args = parser.parse_args()
    if shutil.which("curl") is None:
        sys.exit("needs curl")
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="imgz-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    video = work / "big.mp4"
    started = time.perf_counter()
    make_big_video(video, args.mb * 1_000_000)
    size = video.stat().st_size
    print(f"video: {size / 1e6:.0f} MB made in {time.perf_counter() - started:.0f} s")
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGZ_")}
    env.update({"IMGZ_MAX_UPLOAD_MB": str(size // 1_000_000 + 100), "IMGZ_MIN_FREE_MB": "0",
                "PYTHONUNBUFFERED": "1"})
    server = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "serve", "--host", "127.0.0.1",
                               "--port", "0", "--data", str(work / "data")],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        key = port = None
        deadline = time.monotonic() + 30
        while (key is None or port is None) and time.monotonic() < deadline:
            line = server.stdout.readline()
            if match := re.search(r"once\): (imgz_\w+)", line):
                key = match.group(1)
            if match := re.search(r"serving .* on http://[^:]+:(\d+)", line):
                port = int(match.group(1))
        if key is None or port is None:
            sys.exit("the server did not start")
        url = f"http://127.0.0.1:{port}/api/1/upload"
        before = kib(server.pid, "VmRSS")
        started = time.perf_counter()
        result = subprocess.run(["curl", "-sS", "--fail-with-body", "-H", f"X-API-Key: {key}",
                                 "-F", f"source=@{video}", url],
                                capture_output=True, text=True, timeout=1800)
        took = time.perf_counter() - started
        if result.returncode != 0:
            sys.exit(f"upload failed: {result.stdout} {result.stderr}")
        image = json.loads(result.stdout)["image"]
        peak = kib(server.pid, "VmHWM")
        print(f"uploaded {image['size'] / 1e6:.0f} MB video ({image['width']}x{image['height']}, "
              f"{image['duration']} s) in {took:.1f} s = {size / 1e6 / took:.0f} MB/s end to end")
        print(f"server RSS before {before / 1024:.1f} MB, peak {peak / 1024:.1f} MB: "
              f"grew by {(peak - before) / 1024:.1f} MB (goal: under 16 MB)")
    finally:
        server.terminate()
        server.wait(timeout=30)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
