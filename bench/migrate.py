"""Time ``python app.py migrate`` on an install of many uploads, there and back, and once killed.

    .venv/bin/python bench/migrate.py [--count 1000] [--work DIR] [--keep]

Builds a source install (SQLite + local disk) of COUNT uploads, each a real JPEG original with
its thumb and medium (made with Pillow, written in place and recorded with the db layer's own
insert, not uploaded through the API: the figure is the migration's), spread over two users,
an album and tags. Then, each ``migrate`` run as its own process:

1. the bulk pass to a second SQLite file and data dir, timed: rows/s, files/s, MB/s;
2. ``--final`` on it (nothing left to copy: the cost of the pass with the source stopped);
3. back from the copy to a third place with ``--final``, timed;
4. a fresh copy SIGKILLed when about half the files are there, then run again to the end.

Every copy is then compared with the source: every table row for row, every file by MD5.
``run(work, count)`` returns the figures for bench/run.py.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from PIL import Image  # noqa: E402

from imgz import config, db, ids, layout  # noqa: E402
from imgz.records import Upload  # noqa: E402
from imgz.web import init_data  # noqa: E402
from snapshot import dump, stored as checksums  # noqa: E402


def _jpeg(w: int, h: int, rng: random.Random) -> bytes:
    """A photo-like JPEG: a gradient under noise, so that it does not compress to nothing."""
    base = Image.linear_gradient("L").resize((w, h)).convert("RGB")
    noise = Image.effect_noise((w, h), 40 + rng.random() * 30).convert("RGB")
    out = io.BytesIO()
    Image.blend(base, noise, 0.5).save(out, "JPEG", quality=85)
    return out.getvalue()


def build(data: Path, count: int) -> tuple[int, int]:
    """A source install of ``count`` uploads; returns (files, bytes) stored."""
    cfg = config.load({}, overrides={"data": str(data), "min_free_mb": "0"})
    init_data(cfg)
    conn = db.connect(cfg.db)
    rng = random.Random(14)
    variants = [(_jpeg(960 + 32 * i, 720, rng), _jpeg(160, 120, rng), _jpeg(500, 375, rng)) for i in range(40)]
    now = datetime.now(timezone.utc)
    root = data / layout.DIR
    files = size = 0
    with db.transaction(conn):
        bob = db.add_user(conn, "bob", False, now)
        db.add_key(conn, 1, ids.digest(ids.new_api_key()), "admin's", now)
        db.add_key(conn, bob, ids.digest(ids.new_api_key()), "bob's", now)
        album = db.add_album(conn, ids.public_id(8), bob, "Holidays", now)
        for n in range(count):
            created = now - timedelta(days=n % 30, seconds=n)
            folder = layout.date_folder(created)
            name = f"photo-{n:05d}"
            original, thumb, medium = variants[n % len(variants)]
            keys = [(layout.file_key(folder, name, "jpg", "image", v), body)
                    for v, body in (("", original), ("th", thumb), ("md", medium))]
            for key, body in keys:
                (root / key).parent.mkdir(parents=True, exist_ok=True)
                (root / key).write_bytes(body)
                files, size = files + 1, size + len(body)
            db.reserve_name(conn, f"{folder}/{name}")
            upload = Upload(
                id=0, public_id=ids.public_id(8), user_id=bob if n % 3 else 1,
                album_id=album if n % 3 else None, category_id=None, kind="image", folder=folder,
                name=name, extension="jpg", mime="image/jpeg", size=len(original), width=960, height=720,
                duration=0, is_animated=False, is_360=False, nsfw=False, title=name, description=None,
                original_filename=name + ".jpg", original_exifdata=None,
                checksum=hashlib.md5(original).hexdigest(), source_checksum=None, created_at=created,
                expires_at=now + timedelta(days=30) if n % 10 == 0 else None,
                thumb_size=len(thumb), thumb_width=160, thumb_height=120,
                medium_size=len(medium), medium_width=500, medium_height=375,
                tags=(f"tag{n % 7}", "bench"))
            db.insert_upload(conn, upload, ids.digest(ids.new_delete_secret()), [(k, "image/jpeg") for k, _ in keys])
    conn.close()
    return files, size


def migrate(source: Path, target: Path, *extra: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGZ_")}
    return subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--data", str(source), "migrate",
                             "--to-database", str(target / "imgz.db"), "--to-storage", "local",
                             "--to-data", str(target), *extra],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finished(start: Callable[[], subprocess.Popen]) -> float:
    """Seconds from starting a migrate command to its successful end."""
    started = time.perf_counter()
    proc = start()
    out, err = proc.communicate(timeout=3600)
    took = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"migrate failed:\n{(out or '')[-2000:]}\n{err[-2000:]}")
    return took


def timed(source: Path, target: Path, *extra: str) -> float:
    return finished(lambda: migrate(source, target, *extra))


def killed_halfway(source: Path, target: Path, files: int) -> float:
    """Kill a run once half the files are there, run again to the end; seconds of the re-run."""
    proc = migrate(source, target, "--jobs", "1")
    while proc.poll() is None:
        if sum(len(n) for _, _, n in os.walk(target / layout.DIR)) >= files // 2:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.communicate()
    if proc.returncode != -signal.SIGKILL:
        raise SystemExit("the run to kill ended before it could be killed")
    return timed(source, target, "--final")


def run(work: Path, count: int, log=print) -> dict[str, float]:
    source, there, back, again = (work / name for name in ("source", "there", "back", "again"))
    started = time.perf_counter()
    files, size = build(source, count)
    rows = sum(len(table) for table in dump(source / "imgz.db").values())
    log(f"built {count} uploads: {rows} rows, {files} files, {size / 1e6:.1f} MB in "
        f"{time.perf_counter() - started:.1f} s")
    bulk = timed(source, there)
    final = timed(source, there, "--final")
    home = timed(there, back, "--final")
    rerun = killed_halfway(source, again, files)
    expected_rows, expected_files = dump(source / "imgz.db"), checksums(source)
    for copy in (there, back, again):
        if dump(copy / "imgz.db") != expected_rows:
            raise SystemExit(f"the rows of {copy.name} differ from the source's")
        if checksums(copy) != expected_files:
            raise SystemExit(f"the files of {copy.name} differ from the source's")
    figures = {"bulk_s": bulk, "final_s": final, "back_s": home, "resume_s": rerun,
               "rows_per_s": rows / bulk, "files_per_s": files / bulk, "mb_per_s": size / 1e6 / bulk}
    log(f"migrate there: {bulk:.1f} s ({figures['rows_per_s']:.0f} rows/s, {figures['files_per_s']:.0f} "
        f"files/s, {figures['mb_per_s']:.1f} MB/s, each file read back and compared by MD5)")
    log(f"final pass with nothing new: {final:.1f} s; back to a third place: {home:.1f} s "
        f"({files / home:.0f} files/s, {size / 1e6 / home:.1f} MB/s)")
    log(f"killed at half the files and run again: the re-run took {rerun:.1f} s")
    log(f"every copy equals the source: {rows} rows, {files} files identical by MD5")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000, help="uploads in the source install")
    parser.add_argument("--work", help="folder for the installs (default: a new temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the installs afterwards")
    args = parser.parse_args()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="imgz-bench-migrate-"))
    try:
        run(work, args.count)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
