"""What one upload or one file GET costs the engines of an imgz on PostgreSQL + a bucket: the
statements the database runs (counted in PostgreSQL's own log, with log_statement=all on this
part's database only) and the requests and bytes between imgz and the bucket (counted by a
forwarder between them), each averaged over many requests of one kind.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engines import CountingProxy, scale_env
from report import Row, say
from scale import get, start, upload_one

if TYPE_CHECKING:
    from run import Session


@dataclass
class Costs:
    statements: int = 0
    up: int = 0
    down: int = 0
    requests: int = 0


def run(s: Session) -> list[Row]:
    """Statements the database runs, and bytes and requests the bucket sees, per upload and GET."""
    ins = s.prepared()
    count = 10 if s.args.quick else 30
    name, url = s.engines.database(logged=True)
    bucket = s.engines.bucket()
    proxy = CountingProxy(s.engines.weed.port)
    # no sweep during the count: it would add its own statements
    env = scale_env(url, bucket, endpoint=proxy.endpoint, IMGZ_EXPIRY_INTERVAL="86400")
    child, base, key = start(s.pool, "scale-costs", s.work / "scale-costs",
                             s.work / "scale-costs.log", env)
    rows: list[Row] = []
    say(f"\n== scale costs: {count} uploads and {count} GETs of each kind, statements counted "
        f"in PostgreSQL's log (log_statement=all on this database only), bytes and requests "
        f"between imgz and the bucket counted by a forwarder")
    try:
        upload_one(base, key, ins.small_jpeg)  # the first request of a process sets up
        for label, file in (("JPEG 200 KB", ins.small_jpeg), ("PNG 1920x1080", ins.png)):
            sent = file.stat().st_size
            images, used = _measured(s, proxy, count, lambda: upload_one(base, key, file))
            stored = sum(_stored_size(bucket, image) for image in images) / count
            rows += [Row(f"per upload {label}: database statements", f"{used.statements:.1f}"),
                     Row(f"per upload {label}: store requests", f"{used.requests:.1f}"),
                     Row(f"per upload {label}: bytes to the store ÷ file",
                         f"{used.up / sent:.2f} (objects {stored / sent:.2f})")]
            rel = images[0]["url"].split("/images/", 1)[1]
            path = "/images/" + rel
            size = bucket.client.head_object(Bucket=bucket.name,
                                             Key=bucket.prefix + rel)["ContentLength"]
            for what, headers in (("GET", {}), ("GET 304", None)):
                if headers is None:
                    headers = {"If-None-Match": get(base + path)[1]["etag"]}
                _, used = _measured(s, proxy, count, lambda h=headers: get(base + path, h))
                rows += [Row(f"per {what} {label}: database statements / store requests",
                             f"{used.statements:.1f} / {used.requests:.1f}"),
                         Row(f"per {what} {label}: bytes from the store ÷ file",
                             f"{used.down / size:.2f}")]
    finally:
        s.pool.stop(child)
        proxy.close()
    return rows


def _measured(s: Session, proxy: CountingProxy, count: int, action) -> tuple[list, Costs]:
    """Run action count times; the results and the costs of one, on average."""
    time.sleep(0.3)  # the log writer catches up
    statements = s.engines.pg.statements_logged()
    up, down, requests = proxy.snapshot()
    results = [action() for _ in range(count)]
    time.sleep(0.5)
    after = proxy.snapshot()
    return results, Costs((s.engines.pg.statements_logged() - statements) / count,
                          (after[0] - up) / count, (after[1] - down) / count,
                          (after[2] - requests) / count)


def _stored_size(bucket, image: dict) -> int:
    total = 0
    for url in (image["url"], image.get("thumb", {}).get("url"), image.get("medium", {}).get("url")):
        if url:
            key = bucket.prefix + url.split("/images/", 1)[1]
            total += bucket.client.head_object(Bucket=bucket.name, Key=key)["ContentLength"]
    return total
