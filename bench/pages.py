"""Server time of the pages people use, with 100,000 uploads stored: the start page signed in, My
uploads (first page, each filter, a later page by keyset) and an admin's everyone's uploads; on
SQLite and on PostgreSQL. Also the page weight of My uploads (HTML, CSS and JS, uncompressed).

    .venv/bin/python bench/run.py --only pages        (or: .venv/bin/python bench/pages.py)

The rows are written straight into the tables through imgz's db package (no files: a grid only
links its thumbnails), one user owning all of them, with albums, tags, both kinds and some expiry
dates spread over them. Each page is asked for by Flask's test client in this process, signed in
as that user (an admin too): what is timed is the server's work for the page, without a network.
PostgreSQL gets VACUUM ANALYZE after the load, as autovacuum would do on its own soon after.
"""
from __future__ import annotations

import random
import signal
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent)]

from report import Row, at_most, say  # noqa: E402

COUNT = 100_000
REQUESTS = 60  # timed requests per page (after 5 untimed)
TARGET_MS = 50.0
WEIGHT_KB = 150.0
PASSWORD = "bench horse battery staple"
WORDS = ("sunset beach harbour forest mountain river city night snow desert street market portrait "
         "garden bridge tower lake island station winter summer cat dog bird boat train").split()
RARE = "lighthouse"  # in about one title in a hundred
TAGS = [f"tag{n}" for n in range(50)]


def _rows(user_id: int, albums: list[int], count: int, now: datetime, seed: int = 1) -> tuple[list, list]:
    """Upload rows and their tag links (by tag index)."""
    from imgz import ids, layout, params

    rng = random.Random(seed)
    uploads, links = [], []
    for n in range(count):
        created = now - timedelta(seconds=(count - n) * 60)
        kind = "video" if rng.random() < 0.1 else "image"
        title = " ".join(rng.sample(WORDS, 3)) + (f" {RARE}" if rng.random() < 0.01 else "")
        filename = f"IMG_{n:06d}.{'mp4' if kind == 'video' else 'jpg'}"
        description = "A walk along the " + rng.choice(WORDS) if rng.random() < 0.3 else None
        uploads.append({
            "public_id": ids.public_id(12), "user_id": user_id,
            "album_id": rng.choice(albums) if rng.random() < 0.3 else None, "category_id": None,
            "kind": kind, "folder": layout.date_folder(created), "name": f"u{n}",
            "extension": "mp4" if kind == "video" else "jpg",
            "mime": "video/mp4" if kind == "video" else "image/jpeg", "size": 250_000,
            "width": 1600, "height": 1200, "duration": 12 if kind == "video" else 0,
            "is_animated": False, "is_360": False, "nsfw": False, "title": title,
            "description": description, "original_filename": filename, "original_exifdata": None,
            "checksum": "0" * 32, "source_checksum": None, "created_at": created,
            "expires_at": now + timedelta(days=rng.randint(1, 30)) if rng.random() < 0.2 else None,
            "thumb_size": 9000, "thumb_width": 160, "thumb_height": 120,
            "medium_size": 0, "medium_width": 0, "medium_height": 0,
            "frame_size": 0, "frame_width": 0, "frame_height": 0, "views": 0, "likes": 0,
            "delete_hash": "0" * 64, "search_text": params.search_text(title, filename, description)})
        links.append(rng.sample(range(len(TAGS)), rng.choice((0, 1, 1, 2, 3))))
    return uploads, links


def populate(cfg: Any, count: int) -> dict[str, Any]:
    """The user, albums, tags and ``count`` uploads; what the filters will ask for."""
    from imgz import db, passwords
    from imgz.db import tables

    now = datetime.now(timezone.utc)
    conn = db.connect(cfg.database)
    try:
        user_id = db.add_user(conn, "bench", True, now)
        db.set_password(conn, user_id, passwords.hash_password(PASSWORD))
        album_ids = [db.add_album(conn, f"alb{n:05d}", user_id, f"Album {n}", now) for n in range(20)]
        uploads, links = _rows(user_id, album_ids, count, now)
        started = time.perf_counter()
        with db.transaction(conn):
            conn.execute(tables.tags.insert(), [{"name": t, "url_key": t} for t in TAGS])
            tag_ids = [row.id for row in conn.execute(tables.tags.select().order_by(tables.tags.c.id))]
            for start in range(0, count, 5000):
                conn.execute(tables.uploads.insert(), uploads[start:start + 5000])
            upload_ids = [row.id for row in conn.execute(
                tables.uploads.select().with_only_columns(tables.uploads.c.id).order_by(tables.uploads.c.id))]
            conn.execute(tables.upload_tags.insert(), [
                {"upload_id": upload_id, "tag_id": tag_ids[t], "position": p}
                for upload_id, chosen in zip(upload_ids, links) for p, t in enumerate(chosen)])
        took = time.perf_counter() - started
        if db.is_postgresql(cfg.database):
            conn.exec_driver_sql("VACUUM ANALYZE")
        album = db.get_album_by_id(conn, album_ids[0])
        return {"took": took, "album": album.public_id, "tag": TAGS[7],
                "middle": upload_ids[count // 2]}
    finally:
        conn.close()


def _signed_in(app: Any) -> Any:
    import re

    client = app.test_client()
    form = client.get("/signin").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    answer = client.post("/signin", data={"csrf_token": token, "name": "bench", "password": PASSWORD})
    assert answer.status_code == 303, answer.status_code
    return client


def _time(client: Any, path: str) -> tuple[float, float, int]:
    """p50 and p95 in ms, and the body's size, of GET path."""
    size = 0
    for _ in range(5):
        answer = client.get(path)
        assert answer.status_code == 200, (path, answer.status_code)
        size = len(answer.get_data())
    times = []
    for _ in range(REQUESTS):
        started = time.perf_counter()
        answer = client.get(path)
        answer.get_data()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1], size


def measure(label: str, data: Path, database_url: str = "", count: int = COUNT) -> list[Row]:
    from imgz import config
    from imgz.views import STATIC
    from imgz.web import create_app, init_data

    overrides = {"data": str(data), "min_free_mb": "0"}
    if database_url:
        overrides["database_url"] = database_url
    cfg = config.load({}, overrides=overrides)
    init_data(cfg)
    facts = populate(cfg, count)
    say(f"  {label}: {count:,} uploads written in {facts['took']:.1f} s")
    app = create_app(cfg=cfg, jobs=False)
    client = _signed_in(app)
    pages = {
        "start page /": "/",
        "My uploads, first page": "/uploads",
        "album filter": f"/uploads?album={facts['album']}",
        "tag filter": f"/uploads?tag={facts['tag']}",
        "kind filter (videos)": "/uploads?kind=video",
        f"text match ({RARE})": f"/uploads?q={RARE}",
        "text, no match": "/uploads?q=zzqxj",
        "later page (keyset)": f"/uploads?before={facts['middle']}",
        "everyone's (?all=1)": "/uploads?all=1",
    }
    rows = []
    weight = 0
    for name, path in pages.items():
        p50, p95, size = _time(client, path)
        say(f"    {name:<28} p50 {p50:6.1f} ms   p95 {p95:6.1f} ms   {size / 1000:6.1f} kB  {path}")
        rows.append(at_most(f"pages {label}: {name} p50", p50, TARGET_MS, "{:.1f}", "{:.0f}", " ms"))
        rows.append(Row(f"pages {label}: {name} p95", f"{p95:.1f} ms"))
        if path == "/uploads":
            weight = size + (STATIC / "manage.js").stat().st_size  # its CSS is in the page
    app.config["IMGZ_CONNECTIONS"].close_all()
    rows.append(at_most(f"pages {label}: My uploads weight (HTML+CSS+JS)", weight / 1000, WEIGHT_KB,
                        "{:.1f}", "{:.0f}", " kB"))
    return rows


def part(session: Any) -> list[Row]:
    """The run.py part: SQLite, then PostgreSQL (the run's server, a database of its own)."""
    count = 20_000 if session.args.quick else COUNT
    say(f"\n== pages: server time with {count:,} uploads stored (in-process test client, "
        f"{REQUESTS} requests each)")
    rows = measure("SQLite", session.work / "pages-sqlite", count=count)
    _, url = session.engines.database()
    rows += measure("PostgreSQL", session.work / "pages-pg", url, count=count)
    return rows


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    import argparse
    import shutil
    import tempfile

    import engines

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=COUNT)
    p.add_argument("--no-postgres", action="store_true")
    args = p.parse_args()
    signal.signal(signal.SIGTERM, _interrupt)  # stopped: its PostgreSQL is stopped too
    work = Path(tempfile.mkdtemp(prefix="imgz-pages-"))
    found = engines.Engines(work, log=say)
    try:
        say(f"== pages with {args.count:,} uploads")
        rows = measure("SQLite", work / "sqlite", count=args.count)
        if not args.no_postgres:
            rows += measure("PostgreSQL", work / "pg", found.database()[1], count=args.count)
    finally:
        found.stop()
        shutil.rmtree(work, ignore_errors=True)
    from report import table

    say(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
