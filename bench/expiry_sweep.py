"""Time one expiry sweep over many expired uploads (rows and small files on disk).

    .venv/bin/python bench/expiry_sweep.py [--count 10000] [--data DIR]

Builds a fresh data dir (a temporary one, removed afterwards, unless --data), inserts COUNT
expired uploads with a small original and thumb each, plus as many that do not expire, runs one
sweep and prints the time it took and the rate. Nothing is sent over the network.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from imgz import config, db, ids, layout  # noqa: E402
from imgz.web import init_data  # noqa: E402
from imgz.records import Upload  # noqa: E402
from imgz.service import Service  # noqa: E402


def populate(service: Service, count: int, expired: bool, now: datetime) -> None:
    conn = service.connection()
    folder = layout.date_folder(now)
    # Written in place, not put through the store: a put's fsyncs would make filling slow.
    root = Path(service.store.root)
    (root / folder).mkdir(parents=True, exist_ok=True)
    with db.transaction(conn):
        for i in range(count):
            name = f"{'old' if expired else 'keep'}-{i}"
            paths = [f"{folder}/{name}.png", f"{folder}/{name}.th.png"]
            for relpath in paths:
                (root / relpath).write_bytes(b"\x89PNG small file")
            upload = Upload(
                id=0, public_id=ids.public_id(12), user_id=1, album_id=None, category_id=None,
                kind="image", folder=folder, name=name, extension="png", mime="image/png", size=15,
                width=1, height=1, duration=0, is_animated=False, is_360=False, nsfw=False,
                title=name, description=None, original_filename=name + ".png",
                original_exifdata=None, checksum="0" * 32, source_checksum=None,
                created_at=now - timedelta(hours=1),
                expires_at=now - timedelta(seconds=1) if expired else None,
                thumb_size=15, thumb_width=1, thumb_height=1, tags=("bench",))
            db.insert_upload(conn, upload, "0" * 64, [(p, "image/png") for p in paths])


def measure(data: Path, count: int) -> tuple[int, float, int, int]:
    """Fill data with count expired and count live uploads, sweep once: (removed, seconds,
    uploads left, files left)."""
    cfg = config.load({}, overrides={"data": str(data), "min_free_mb": "0"})
    init_data(cfg)
    service = Service(cfg, db.LocalConnections(cfg.db).get)
    now = datetime.now(timezone.utc)
    started = time.perf_counter()
    populate(service, count, True, now)
    populate(service, count, False, now)
    print(f"created {count} expired and {count} live uploads in "
          f"{time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    removed = service.purge_expired(now)
    took = time.perf_counter() - started
    left = db.count_uploads(service.connection())
    files_left = sum(1 for _ in service.store.list())
    return removed, took, left, files_left


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=10_000, help="expired uploads to create")
    parser.add_argument("--data", help="data dir to use (default: a new temporary one)")
    args = parser.parse_args()
    data = Path(args.data) if args.data else Path(tempfile.mkdtemp(prefix="imgz-bench-"))
    try:
        removed, took, left, files_left = measure(data, args.count)
    finally:
        if not args.data:
            shutil.rmtree(data, ignore_errors=True)
    print(f"sweep removed {removed} uploads ({2 * removed} files) in {took:.2f} s "
          f"= {removed / took:,.0f} uploads/s; {left} uploads and {files_left} files remain")
    assert removed == args.count and left == args.count and files_left == 2 * args.count


if __name__ == "__main__":
    main()
