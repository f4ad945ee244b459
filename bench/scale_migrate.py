"""``app.py migrate`` of an install of many uploads (SQLite + local disk, built by bench/migrate.py)
to PostgreSQL + a bucket and back, and once killed halfway and run again.

1. the bulk pass to a new database and bucket, then ``--final``: timed;
2. from there back to SQLite + a local data dir with ``--final``: timed;
3. to another new database and bucket, SIGKILLed once about half the objects are in the bucket,
   then run again with ``--final``.

The copy back is compared with the source: every table row for row and every file by MD5; the
objects of both buckets by their ETags (the MD5 of a single PUT) against the source's files, and
the rows of both PostgreSQL databases counted per table against the source's.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import migrate as local_migrate
import procs
from engines import scale_env
from report import Row, say

if TYPE_CHECKING:
    from run import Session


def _command(source_env: dict[str, str], source_data: Path, *args: str) -> subprocess.Popen:
    env = procs.clean_env(**source_env)
    return subprocess.Popen([sys.executable, str(procs.ROOT / "app.py"), "--data", str(source_data),
                             "migrate", *args], cwd=procs.ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _timed(source_env: dict[str, str], source_data: Path, *args: str) -> float:
    return local_migrate.finished(lambda: _command(source_env, source_data, *args))


def _to_bucket_env(bucket) -> dict[str, str]:
    """A local source whose migrate target is this bucket: the IMGZ_S3_* settings, storage local."""
    return {**bucket.env(), "IMGZ_STORAGE": "local"}


def _pg_counts(url: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(url) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in local_migrate.TABLES if t != "schema_version"}


def _etags(bucket) -> dict[str, str]:
    found = {}
    for page in bucket.client.get_paginator("list_objects_v2").paginate(Bucket=bucket.name,
                                                                       Prefix=bucket.prefix):
        for item in page.get("Contents", ()):
            found[item["Key"][len(bucket.prefix):]] = item["ETag"].strip('"')
    return found


def _object_count(bucket) -> int:
    count = 0
    for page in bucket.client.get_paginator("list_objects_v2").paginate(Bucket=bucket.name,
                                                                       Prefix=bucket.prefix):
        count += page.get("KeyCount", 0)
    return count


def run(s: Session) -> list[Row]:
    count = 200 if s.args.quick else 1000
    work = s.work / "scale-migrate"
    source, back = work / "source", work / "back"
    say(f"\n== migrate {count:,} uploads: SQLite + local disk -> PostgreSQL + SeaweedFS -> "
        f"SQLite + local disk, and once SIGKILLed halfway")
    started = time.perf_counter()
    files, size = local_migrate.build(source, count)
    expected = local_migrate.dump(source / "imgz.db")
    rows = sum(len(v) for v in expected.values())
    source_md5 = local_migrate.checksums(source)
    counts = {t: len(v) for t, v in expected.items() if t != "schema_version"}
    say(f"  built {count:,} uploads: {rows:,} rows, {files:,} files, {size / 1e6:.1f} MB in "
        f"{time.perf_counter() - started:.1f} s")

    _, url = s.engines.database()
    bucket = s.engines.bucket()
    there = ("--to-database", url, "--to-storage", "s3")
    bulk = _timed(_to_bucket_env(bucket), source, *there)
    final = _timed(_to_bucket_env(bucket), source, *there, "--final")
    say(f"  there: bulk {bulk:.1f} s ({rows / bulk:.0f} rows/s, {files / bulk:.0f} files/s, "
        f"{size / 1e6 / bulk:.1f} MB/s); --final with nothing new {final:.1f} s")
    back_env = {**scale_env(url, bucket), "IMGZ_DATA": str(work / "pg-side")}
    home = _timed(back_env, work / "pg-side", "--to-database", str(back / "imgz.db"),
                  "--to-storage", "local", "--to-data", str(back), "--final")
    say(f"  back to SQLite + local: {home:.1f} s ({files / home:.0f} files/s, "
        f"{size / 1e6 / home:.1f} MB/s)")

    _, url2 = s.engines.database()
    bucket2 = s.engines.bucket()
    again = ("--to-database", url2, "--to-storage", "s3")
    proc = _command(_to_bucket_env(bucket2), source, *again, "--jobs", "1")
    killed_at = 0
    while proc.poll() is None:
        killed_at = _object_count(bucket2)
        if killed_at >= files // 2:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.2)
    proc.communicate()
    if proc.returncode != -signal.SIGKILL:
        raise RuntimeError("the run to kill ended before it could be killed")
    rerun = _timed(_to_bucket_env(bucket2), source, *again, "--final")
    say(f"  killed with {killed_at:,} of {files:,} objects in the bucket; the re-run with "
        f"--final took {rerun:.1f} s")

    problems = []
    if local_migrate.dump(back / "imgz.db") != expected:
        problems.append("the rows back differ from the source's")
    back_md5 = local_migrate.checksums(back)
    differing = sum(back_md5.get(k) != v for k, v in source_md5.items()) + len(set(back_md5) - set(source_md5))
    for name, (db_url, b) in (("there", (url, bucket)), ("killed and re-run", (url2, bucket2))):
        if _pg_counts(db_url) != counts:
            problems.append(f"{name}: row counts {_pg_counts(db_url)} != the source's {counts}")
        if _etags(b) != source_md5:
            problems.append(f"{name}: the bucket's objects are not the source's files")
    for problem in problems:
        say(f"  {problem}")
    say(f"  {files - differing:,} of {files:,} files identical by MD5 after the round trip")
    ok = not problems and differing == 0
    return [
        Row(f"migrate {count:,} uploads there and back: files identical",
            f"{files - differing:,} of {files:,}", "all", "PASS" if ok else "MISS"),
        Row("migrate killed halfway, re-run: rows and objects equal the source's",
            "yes" if not any("re-run" in p for p in problems) else "no", "yes",
            "PASS" if not any("re-run" in p for p in problems) else "MISS"),
        Row("migrate to PostgreSQL+S3: bulk / --final s", f"{bulk:.1f} / {final:.1f}"),
        Row("migrate to PostgreSQL+S3: rate",
            f"{rows / bulk:.0f} rows/s, {files / bulk:.0f} files/s, {size / 1e6 / bulk:.1f} MB/s"),
        Row("migrate back to SQLite+local (--final)",
            f"{home:.1f} s, {files / home:.0f} files/s, {size / 1e6 / home:.1f} MB/s"),
        Row("migrate killed halfway: re-run s", f"{rerun:.1f}"),
    ]
