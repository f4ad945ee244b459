"""A minute of steady load on one server: eight clients uploading mixed images and small videos,
some expiring after two seconds, while a reader fetches what was stored.

Afterwards every upload that does not expire downloads with its checksum, every expired one is
gone (404 and no file on disk), and not one request failed. Run with ``-s`` to see the figures.
"""
from __future__ import annotations

import hashlib
import random
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
import requests

import media
from contract import assert_upload_ok

pytestmark = pytest.mark.slow

CLIENTS = 8
UPLOAD_SECONDS = 61
MAX_UPLOADS_PER_CLIENT = 2_000
EXPIRING_EVERY = 4          # one upload in four expires after two seconds


def _pool() -> list[tuple[str, bytes]]:
    return [
        ("small.png", media.png(300, 200)),
        ("wide.png", media.png(640, 480, mode="RGBA")),
        ("photo.jpg", media.jpeg(800, 600)),
        ("big-photo.jpg", media.jpeg(1200, 900, quality=80)),
        ("anim.gif", media.gif(160, 120, frames=6)),
        ("still.gif", media.gif(200, 150)),
        ("photo.webp", media.webp(400, 300, lossless=False)),
        ("anim.webp", media.webp(160, 120, frames=4)),
        ("clip.mp4", media.clip("mp4")),
        ("clip.webm", media.clip("webm")),
        ("clip.mov", media.clip("mov", size="96x64")),
    ]


@dataclass
class Tally:
    """What the load did, shared by the threads; counters change under ``lock``."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    kept: list[dict] = field(default_factory=list)
    expiring: list[dict] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    requests: int = 0
    reads: int = 0

    def count(self, requests_made: int = 1, *, reads: int = 0) -> None:
        with self.lock:
            self.requests += requests_made
            self.reads += reads

    def fail(self, what: str) -> None:
        with self.lock:
            self.failures.append(what)


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _path(url: str) -> str:
    return urlsplit(url).path


def test_soak(make_server):
    srv = make_server(expiration_min="1", expiry_interval="1")
    pool = _pool()
    tally = Tally()
    deadline = time.monotonic() + UPLOAD_SECONDS
    uploading = threading.Event()
    uploading.set()

    def client(index: int) -> None:
        session = requests.Session()
        for n in range(MAX_UPLOADS_PER_CLIENT):
            if time.monotonic() >= deadline:
                return
            filename, data = pool[(index + n * CLIENTS) % len(pool)]
            expiring = (index + n) % EXPIRING_EVERY == 0
            fields = {"expiration": "PT2S"} if expiring else {"tags": f"soak, client {index}"}
            try:
                response = session.post(srv.url + "/api/1/upload", headers={"X-API-Key": srv.key},
                                        files={"source": (filename, data)}, data=fields, timeout=60)
                tally.count()
                image = assert_upload_ok(response)
                assert image["checksum"] == _md5(data) or image["source_checksum"] == _md5(data)
            except Exception as exc:  # every failure is counted and shown, none is fatal here
                tally.fail(f"upload {filename}: {exc!r}"[:300])
                continue
            with tally.lock:
                (tally.expiring if expiring else tally.kept).append(image)

    def reader() -> None:
        session = requests.Session()
        rng = random.Random(7)
        while uploading.is_set():
            with tally.lock:
                image = rng.choice(tally.kept) if tally.kept else None
            if image is None:
                time.sleep(0.05)
                continue
            try:
                response = session.get(srv.url + _path(image["url"]), timeout=30)
                assert response.status_code == 200 and _md5(response.content) == image["checksum"]
                thumb = session.get(srv.url + _path(image["thumb"]["url"]), timeout=30)
                assert thumb.status_code == 200 and len(thumb.content) == image["thumb_size"]
                tally.count(2, reads=2)
            except Exception as exc:
                tally.fail(f"read {image['url']}: {exc!r}"[:300])

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
    read_thread = threading.Thread(target=reader, daemon=True)
    started = time.monotonic()
    read_thread.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=UPLOAD_SECONDS + 60)
    uploading.clear()
    read_thread.join(timeout=30)
    elapsed = time.monotonic() - started
    assert elapsed >= 60, "the load must last at least a minute"

    # Let the last expiring uploads pass their instant and the sweep (every second) remove them.
    session = requests.Session()
    gone_deadline = time.monotonic() + 15
    images = srv.data / "images"
    for image in tally.expiring:
        paths = [image["url"], image["thumb"]["url"]]
        if image["medium"]["url"]:
            paths.append(image["medium"]["url"])
        if image.get("frame"):
            paths.append(image["frame"]["url"])
        on_disk = [images / _path(url)[len("/images/"):] for url in paths]
        while any(p.exists() for p in on_disk) and time.monotonic() < gone_deadline:
            time.sleep(0.2)
        assert not any(p.exists() for p in on_disk), image["url"]
        for url in paths:
            assert session.get(srv.url + _path(url), timeout=30).status_code == 404, url
            tally.count()
        assert session.get(srv.url + _path(image["url_viewer"]), timeout=30,
                           allow_redirects=False).status_code == 404
        tally.count()

    for image in tally.kept:
        response = session.get(srv.url + _path(image["url"]), timeout=30)
        tally.count()
        assert response.status_code == 200, image["url"]
        assert _md5(response.content) == image["checksum"], image["url"]

    assert srv.rows() == len(tally.kept)
    assert srv.tmp_files() == []
    check = srv.command("check")
    assert check.returncode == 0, check.stdout + check.stderr

    uploads = len(tally.kept) + len(tally.expiring)
    print(f"\nsoak: {uploads} uploads in {elapsed:.0f} s ({len(tally.kept)} kept, "
          f"{len(tally.expiring)} expired and removed), {tally.reads} file reads during the load, "
          f"{tally.requests} requests in all, {len(tally.failures)} failures")
    for failure in tally.failures[:20]:
        print("  failure:", failure)
    assert tally.failures == []
    assert uploads >= CLIENTS * 10 and tally.expiring and tally.reads
