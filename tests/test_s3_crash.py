"""SIGKILL in the middle of uploads to a bucket, on PostgreSQL: at most orphan objects and
unfinished multipart uploads are left, every row keeps all its files, and ``check --repair``
clears what is left.

Real engines (tests/pgserver.py, tests/s3server.py) and a real server process, killed with
everything it started; the originals are over the single-put limit, so they go up in parts.
"""
from __future__ import annotations

import hashlib
import io
import threading
import time
from urllib.parse import urlsplit

import pytest
import requests
from PIL import Image

from conftest import LiveServer
from contract import assert_upload_ok
from test_crash import kill_hard

pytestmark = pytest.mark.local_only  # it sets up its own engines, whatever the run's pair
ROUNDS = 3


def big_png(seed: int) -> bytes:
    """About 10 MB that no compressor shrinks: past the 8 MiB single put."""
    pixels = hashlib.shake_256(str(seed).encode()).digest(1800 * 1900 * 3)
    out = io.BytesIO()
    Image.frombytes("RGB", (1800, 1900), pixels).save(out, "PNG", compress_level=0)
    return out.getvalue()


def keep_uploading(srv: LiveServer, files: list[bytes], answered: list[dict],
                   stop: threading.Event) -> list[threading.Thread]:
    def client(index: int) -> None:
        turn = index
        while not stop.is_set():
            data = files[turn % len(files)]
            turn += 1
            try:
                response = requests.post(srv.url + "/api/1/upload", headers={"X-API-Key": srv.key},
                                         files={"source": (f"big{turn}.png", data)}, timeout=60)
            except requests.RequestException:
                return  # the server was killed under this request
            if response.status_code == 200:
                answered.append(response.json()["image"])

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(3)]
    for thread in threads:
        thread.start()
    return threads


def test_sigkill_during_uploads_to_a_bucket_leaves_only_what_repair_clears(tmp_path, pg_url, s3):
    env = {**s3.env(), "IMGZ_DATABASE_URL": pg_url}
    data = tmp_path / "data"
    srv = LiveServer(data, env)
    key = srv.key
    files = [big_png(i) for i in range(3)]
    answered: list[dict] = []
    left = []
    try:
        for round_no in range(ROUNDS):
            stop = threading.Event()
            threads = keep_uploading(srv, files, answered, stop)
            # killed while uploads are under way, once one of this round has been answered (a
            # loaded machine may take seconds for the first)
            before = len(answered)
            deadline = time.monotonic() + 60
            while len(answered) == before and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.2 + 0.5 * round_no)
            kill_hard(srv)
            stop.set()
            for thread in threads:
                thread.join(timeout=60)

            srv = LiveServer(data, env)
            srv.key = key
            rows = {row[0] for row in srv.query("SELECT path FROM files")}
            objects = {name[len(s3.prefix):] for name in s3.keys()}
            assert rows <= objects, f"round {round_no}: rows whose files are gone: {rows - objects}"
            left.append((len(objects - rows), len(s3.unfinished())))
            repaired = srv.command("check", "--repair", "--orphan-age", "0")
            assert repaired.returncode == 0, repaired.stdout + repaired.stderr
            assert {name[len(s3.prefix):] for name in s3.keys()} == rows
            assert s3.unfinished() == []
            clean = srv.command("check", "--orphan-age", "0")
            assert clean.returncode == 0 and clean.stdout == "", clean.stdout
            for image in answered:  # every answered upload whole, through the restarted server
                got = srv.get(urlsplit(image["url"]).path)
                assert got.status_code == 200
                assert hashlib.md5(got.content).hexdigest() == image["checksum"]
        assert_upload_ok(srv.upload(files[0], filename="after.png"))
    finally:
        srv.stop()
    print(f"SIGKILL on S3: {len(answered)} uploads answered; orphans and unfinished multipart "
          f"uploads left per round: {left}")
    assert answered and len(left) == ROUNDS
