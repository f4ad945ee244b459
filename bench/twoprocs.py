"""Two ``app.py serve`` processes on one PostgreSQL database and one bucket, used as one server.

Clients upload, read and delete for a while, each request going to the other process than the
one before; a quarter of the uploads expire a few seconds after they are made and are left to
the expiry sweep, which each process runs every ``SWEEP`` seconds. Every read checks the bytes
by MD5. At the end: every expired upload is 404 through both processes and the sweeps' log lines
add up to their number (each removed once), every deleted upload is 404, and the database's file
rows and the bucket's objects name the same keys.
"""
from __future__ import annotations

import hashlib
import http.client
import io
import json
import random
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from PIL import Image

import procs
from engines import scale_env
from report import Row, say
from scale import start

if TYPE_CHECKING:
    from run import Session

EXPIRES = 6       # seconds an expiring upload lives
SWEEP = "1"       # IMGZ_EXPIRY_INTERVAL of both processes


def _images(count: int) -> list[bytes]:
    rng = random.Random(14)
    out = []
    for i in range(count):
        im = Image.effect_noise((320, 240), 30 + i).convert("RGB")
        im = Image.blend(im, Image.new("RGB", im.size, (rng.randrange(256), 90, 160)), 0.6)
        buf = io.BytesIO()
        im.save(buf, "PNG")
        out.append(buf.getvalue())
    return out


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: int = 0
    uploads: int = 0
    reads: int = 0
    deletes: int = 0
    errors: list[str] = field(default_factory=list)
    bad_checksums: int = 0
    kept: list[tuple[str, str]] = field(default_factory=list)      # (path, md5)
    expiring: list[tuple[str, float]] = field(default_factory=list)  # (path, expires at)
    deleted: list[str] = field(default_factory=list)

    def error(self, text: str) -> None:
        with self.lock:
            self.errors.append(text)


def _call(base: str, method: str, path: str, body: bytes | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    host, port, _ = procs.split_url(base)
    conn = http.client.HTTPConnection(host, port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _multipart(data: bytes, fields: dict[str, str]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="source"; '
                 f'filename="p.png"\r\nContent-Type: image/png\r\n\r\n'.encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _client(n: int, bases: list[str], key: str, images: list[bytes], deadline: float,
            t: Tally) -> None:
    rng = random.Random(n)
    turn = n % 2

    def next_base() -> str:
        nonlocal turn
        turn ^= 1
        return bases[turn]

    def counted(method: str, path: str, **kw) -> tuple[int, bytes]:
        with t.lock:
            t.requests += 1
        return _call(next_base(), method, path, **kw)

    while time.monotonic() < deadline:
        data = rng.choice(images)
        md5 = hashlib.md5(data).hexdigest()
        roll = rng.random()
        fields = {"expiration": f"PT{EXPIRES}S"} if roll < 0.25 else {}
        body, ctype = _multipart(data, fields)
        status, answer = counted("POST", "/api/1/upload", body=body,
                                 headers={"X-API-Key": key, "Content-Type": ctype})
        if status != 200:
            t.error(f"upload: HTTP {status} {answer[:200]!r}")
            continue
        image = json.loads(answer)["image"]
        made = time.time()
        path = "/images/" + image["url"].split("/images/", 1)[1]
        if image["checksum"] != md5:
            with t.lock:
                t.bad_checksums += 1
        status, got = counted("GET", path)
        if status != 200 or hashlib.md5(got).hexdigest() != md5:
            if not (fields and status == 404 and time.time() > made + EXPIRES):
                t.error(f"read of a new upload: HTTP {status}")
            with t.lock:
                t.bad_checksums += status == 200
        with t.lock:
            t.uploads += 1
            t.reads += 1
            pool = list(t.kept)
        if fields:
            with t.lock:
                t.expiring.append((path, made + EXPIRES))
        elif roll < 0.6:
            delete = "/" + image["delete_url"].split("/", 3)[3]
            status, answer = counted("DELETE", delete, headers={"Accept": "application/json"})
            if status != 200:
                t.error(f"delete: HTTP {status} {answer[:200]!r}")
            status, _ = counted("GET", path)
            if status != 404:
                t.error(f"read of a deleted upload: HTTP {status}")
            with t.lock:
                t.deletes += 1
                t.deleted.append(path)
        else:
            with t.lock:
                t.kept.append((path, md5))
        for old, old_md5 in rng.sample(pool, min(2, len(pool))):
            status, got = counted("GET", old)
            with t.lock:
                t.reads += 1
            if status != 200 or hashlib.md5(got).hexdigest() != old_md5:
                t.error(f"read of a kept upload: HTTP {status}")
                with t.lock:
                    t.bad_checksums += status == 200


def run(s: Session) -> list[Row]:
    seconds = s.args.two_procs_seconds
    name, url = s.engines.database()
    bucket = s.engines.bucket()
    env = scale_env(url, bucket, IMGZ_EXPIRATION_MIN="1", IMGZ_EXPIRY_INTERVAL=SWEEP,
                    IMGZ_THREADS=str(s.args.threads))
    a, a_url, key = start(s.pool, "two-procs-a", s.work / "two-a", s.work / "two-a.log", env)
    b, b_url, _ = start(s.pool, "two-procs-b", s.work / "two-b", s.work / "two-b.log", env, key=False)
    clients = 8
    say(f"\n== two processes on one database and bucket: {clients} clients for {seconds:g} s, "
        f"each request to the other process; uploads expiring after {EXPIRES} s, sweeps every "
        f"{SWEEP} s in both")
    t = Tally()
    images = _images(12)
    try:
        deadline = time.monotonic() + seconds
        threads = [threading.Thread(target=_client, args=(n, [a_url, b_url], key, images,
                                                          deadline, t), daemon=True)
                   for n in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        last = max((at for _, at in t.expiring), default=time.time())
        time.sleep(max(0.0, last - time.time()) + 4 * float(SWEEP) + 2)
        gone_wrong = 0
        for path, _ in t.expiring:
            for base in (a_url, b_url):
                gone_wrong += _call(base, "GET", path)[0] != 404
        deleted_wrong = sum(_call(b_url, "GET", path)[0] != 404 for path in t.deleted)
        kept_wrong = 0
        for path, md5 in t.kept:
            status, got = _call(a_url, "GET", path)
            kept_wrong += status != 200 or hashlib.md5(got).hexdigest() != md5
    finally:
        s.pool.stop(a)
        s.pool.stop(b)
    removed = sum(int(n) for child in (a, b) for line in child.lines
                  for n in re.findall(r"expiry sweep removed (\d+)", line))
    rows_only, files_only, uploads_left = _consistency(url, bucket)
    say(f"  {t.requests:,} requests ({t.requests / seconds:.1f}/s): {t.uploads:,} uploads, "
        f"{t.reads:,} reads, {t.deletes:,} deletes; {len(t.errors)} errors"
        + (f", first: {t.errors[0]}" if t.errors else ""))
    say(f"  {len(t.expiring)} expired uploads; the sweeps removed {removed}; "
        f"{gone_wrong} answers other than 404 for them; {deleted_wrong} deleted uploads still "
        f"served; {kept_wrong} kept uploads wrong at the end; {uploads_left} uploads left")
    say(f"  at the end: {rows_only} file rows without an object, {files_only} objects without "
        f"a row")
    errors = len(t.errors) + kept_wrong + deleted_wrong
    checks = [
        Row("two procs: requests (uploads/reads/deletes)",
            f"{t.requests:,} ({t.uploads:,}/{t.reads:,}/{t.deletes:,})"),
        Row("two procs: errors", str(errors), "0", "PASS" if errors == 0 else "MISS"),
        Row("two procs: wrong checksums", str(t.bad_checksums), "0",
            "PASS" if t.bad_checksums == 0 else "MISS"),
        Row("two procs: expired uploads removed by the sweeps", f"{removed} of {len(t.expiring)}",
            "each once", "PASS" if removed == len(t.expiring) and t.expiring else "MISS"),
        Row("two procs: expired uploads not 404 afterwards", str(gone_wrong), "0",
            "PASS" if gone_wrong == 0 else "MISS"),
        Row("two procs: rows without files / files without rows", f"{rows_only} / {files_only}",
            "0 / 0", "PASS" if rows_only == files_only == 0 else "MISS"),
    ]
    return checks


def _consistency(url: str, bucket) -> tuple[int, int, int]:
    """File rows naming no object, objects no file row names, and uploads left."""
    import psycopg

    with psycopg.connect(url) as conn:
        paths = {row[0] for row in conn.execute("SELECT path FROM files")}
        bare = conn.execute("SELECT count(*) FROM uploads u WHERE NOT EXISTS "
                            "(SELECT 1 FROM files f WHERE f.upload_id = u.id)").fetchone()[0]
        uploads_left = conn.execute("SELECT count(*) FROM uploads").fetchone()[0]
    objects = {key[len(bucket.prefix):] for key in bucket.keys()}
    return len(paths - objects) + bare, len(objects - paths), uploads_left
