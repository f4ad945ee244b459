"""``backup DEST``, ``backup --verify DEST`` and ``restore SRC``: a copy taken while uploads,
deletions and expiries go on restores to a data dir whose ``check`` is clean, and every file
matches its checksum."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import media
from commands import run_command
from conftest import ROOT, LiveServer
from contract import assert_upload_ok
from imgz import backup as backup_mod, config as config_mod, db, lease
from helpers import query

CLIENTS = 8


def command(data: Path, *args: str, env: dict | None = None):
    unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("IMGZ_")}
    return run_command("--data", str(data), *args, env={**unset, "IMGZ_MIN_FREE_MB": "0", **(env or {})})


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / backup_mod.MANIFEST).read_text().splitlines()]


def media_files(data: Path) -> dict[str, bytes]:
    images = data / "images"
    return {str(p.relative_to(images)): p.read_bytes() for p in images.rglob("*") if p.is_file()}


def assert_restores_clean(backup: Path, target: Path) -> None:
    """Verify the backup, restore it into ``target`` and check the result: nothing missing, no
    orphan, every restored file as the manifest says."""
    verified = command(target, "backup", "--verify", str(backup))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    restored = command(target, "restore", str(backup))
    assert restored.returncode == 0, restored.stderr
    checked = command(target, "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout == ""
    for entry in manifest(backup):
        assert sha256(target / entry["path"]) == entry["sha256"], entry["path"]
        assert (target / entry["path"]).stat().st_size == entry["size"]


@pytest.fixture
def filled(make_app):
    """An app with two images and a video stored, one of them deleted again."""
    srv = make_app()
    for upload, name in ((media.png(40, 30), "a.png"), (media.jpeg(50, 40), "b.jpg"),
                         (media.clip("mp4"), "c.mp4")):
        assert_upload_ok(srv.upload(upload, filename=name))
    gone = assert_upload_ok(srv.upload(media.png(20, 20, color=(3, 3, 3))))
    assert srv.delete(urlsplit(gone["delete_url"]).path, headers={"Accept": "application/json"}).ok
    return srv


def test_backup_verify_restore_round_trip(filled, tmp_path):
    # a resumable upload in progress: its bytes are not copied, so neither is its row
    db.add_resumable(filled.service.connection(), "ab" * 32, 1, 1000, {}, "", filled.service.now())
    dest = tmp_path / "copy"
    taken = command(filled.data, "backup", str(dest))
    assert taken.returncode == 0, taken.stderr
    assert "backed up" in taken.stderr
    assert taken.stdout == ""
    header = json.loads((dest / backup_mod.HEADER).read_text())
    assert header["schema"] == db.SCHEMA_VERSION and header["files"] == len(manifest(dest))
    # the copy holds exactly the stored files, as they are, and the database
    assert media_files(dest) == media_files(filled.data)
    assert [e["path"] for e in manifest(dest)][0] == "imgz.db"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".copy.")]  # no temp dir left
    target = tmp_path / "restored"
    assert_restores_clean(dest, target)
    assert query(str(target / "imgz.db"), "SELECT public_id FROM uploads ORDER BY id") == \
        filled.query("SELECT public_id FROM uploads ORDER BY id")
    assert query(str(target / "imgz.db"), "SELECT COUNT(*) FROM resumables") == [(0,)]
    assert filled.query("SELECT COUNT(*) FROM resumables") == [(1,)]


def test_hard_linked_backup_restores_the_same(filled, tmp_path):
    dest = filled.data.parent / "linked"  # same filesystem as the data dir
    taken = command(filled.data, "backup", "--link", str(dest))
    assert taken.returncode == 0, taken.stderr
    some = next((dest / "images").rglob("*.png"))
    assert some.stat().st_nlink == 2
    assert_restores_clean(dest, tmp_path / "restored")


def test_backup_into_an_existing_empty_folder(filled, tmp_path):
    (tmp_path / "empty").mkdir()
    assert command(filled.data, "backup", str(tmp_path / "empty")).returncode == 0
    assert (tmp_path / "empty" / backup_mod.HEADER).exists()


def test_backup_refuses_a_folder_that_is_not_empty(filled, tmp_path):
    dest = tmp_path / "full"
    dest.mkdir()
    (dest / "note.txt").write_text("mine")
    refused = command(filled.data, "backup", str(dest))
    assert refused.returncode != 0
    assert "not an empty folder" in refused.stderr
    assert sorted(p.name for p in dest.iterdir()) == ["note.txt"]


@pytest.fixture
def taken(filled, tmp_path) -> Path:
    dest = tmp_path / "copy"
    assert command(filled.data, "backup", str(dest)).returncode == 0
    return dest


def _change(dest: Path) -> str:
    path = next((dest / "images").rglob("*.jpg"))
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    return f"changed\t{path.relative_to(dest)}"


def _remove(dest: Path) -> str:
    path = next((dest / "images").rglob("*.png"))
    path.unlink()
    return f"missing\t{path.relative_to(dest)}"


def _add(dest: Path) -> str:
    (dest / "images" / "stray.png").write_bytes(b"stray")
    return "unexpected\timages/stray.png"


def _change_database(dest: Path) -> str:
    with open(dest / "imgz.db", "ab") as file:
        file.write(b"\0")
    return "changed\timgz.db"


@pytest.mark.parametrize("spoil", [_change, _remove, _add, _change_database],
                         ids=["changed", "missing", "unexpected", "database"])
def test_verify_finds_a_spoilt_file(taken, tmp_path, spoil):
    line = spoil(taken)
    verified = command(tmp_path / "any", "backup", "--verify", str(taken))
    assert verified.returncode == 1
    assert verified.stdout.splitlines() == [line]


def test_verify_refuses_an_edited_manifest(taken, tmp_path):
    path = taken / backup_mod.MANIFEST
    path.write_text(path.read_text().replace('"size": ', '"size": 1', 1))
    verified = command(tmp_path / "any", "backup", "--verify", str(taken))
    assert verified.returncode != 0
    assert "does not match its checksum" in verified.stderr


def test_restore_refuses_a_spoilt_backup_and_leaves_nothing(taken, tmp_path):
    _change(taken)
    target = tmp_path / "restored"
    restored = command(target, "restore", str(taken))
    assert restored.returncode != 0
    assert "does not match its checksum" in restored.stderr
    assert not target.exists()


@pytest.mark.parametrize("present", ["file", "database"])
def test_restore_refuses_a_data_dir_that_is_not_empty(taken, tmp_path, present):
    target = tmp_path / "target"
    target.mkdir()
    (target / ("notes.txt" if present == "file" else "imgz.db")).write_text("mine")
    restored = command(target, "restore", str(taken))
    assert restored.returncode != 0
    assert "restore only into an empty data directory" in restored.stderr
    assert [p.name for p in target.iterdir()] == ["notes.txt" if present == "file" else "imgz.db"]


def test_restore_refuses_a_folder_that_is_no_backup(tmp_path):
    (tmp_path / "nothing").mkdir()
    restored = command(tmp_path / "target", "restore", str(tmp_path / "nothing"))
    assert restored.returncode != 0
    assert "is not an imgz backup" in restored.stderr


@pytest.mark.parametrize("env, names", [
    ({"IMGZ_DATABASE_URL": "postgresql://imgz@db.invalid/imgz", "IMGZ_STORAGE": "s3",
      "IMGZ_S3_BUCKET": "media"}, ("PostgreSQL and S3", "pg_dump", "versioning")),
    ({"IMGZ_DATABASE_URL": "postgresql://imgz@db.invalid/imgz"}, ("PostgreSQL", "pg_dump")),
    ({"IMGZ_STORAGE": "s3", "IMGZ_S3_BUCKET": "media"}, ("S3", "replication")),
], ids=["postgres-s3", "postgres", "s3"])
def test_backup_on_postgresql_or_s3_says_to_use_their_tools(tmp_path, env, names):
    refused = command(tmp_path / "data", "backup", str(tmp_path / "copy"), env=env)
    assert refused.returncode != 0
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and all(name in lines[0] for name in names), refused.stderr
    assert not (tmp_path / "copy").exists() and not (tmp_path / "data").exists()


# -- the lease ------------------------------------------------------------------------------------

def test_a_file_deleted_or_expired_during_the_backup_reaches_the_copy(make_app, tmp_path):
    """Deletions made after the database is copied and before the files are: their rows are in
    the copy, so their files must be too, though they are gone from the data dir afterwards."""
    srv = make_app()
    deleted = assert_upload_ok(srv.upload(media.png(30, 30, color=(1, 1, 1))))
    expiring = assert_upload_ok(srv.upload(media.jpeg(30, 30, color=(2, 2, 2)), expiration="PT1H"))
    kept = assert_upload_ok(srv.upload(media.png(30, 30, color=(4, 4, 4))))
    before = media_files(srv.data)
    cfg = config_mod.load({**srv.env, "IMGZ_DATA": str(srv.data)})

    def meanwhile() -> None:
        assert lease.holder(srv.data) is not None
        answer = srv.delete(urlsplit(deleted["delete_url"]).path, headers={"Accept": "application/json"})
        assert answer.ok
        assert srv.service.purge_expired(srv.service.now() + timedelta(hours=2)) == 1
        assert not any(deleted["name"] in key or expiring["name"] in key for key in media_files(srv.data))
        held = {p.name for p in (srv.data / lease.HOLD).rglob("*") if p.is_file()}
        assert {deleted["image"]["filename"], expiring["image"]["filename"]} <= held

    backup_mod.take(cfg, tmp_path / "copy", listed=meanwhile)
    assert media_files(tmp_path / "copy") == before
    # the lease is over: the hold is gone, deletions delete again
    assert lease.holder(srv.data) is None
    assert not (srv.data / lease.HOLD).exists() or not any((srv.data / lease.HOLD).rglob("*"))
    assert srv.delete(urlsplit(kept["delete_url"]).path, headers={"Accept": "application/json"}).ok
    assert media_files(srv.data) == {}
    assert_restores_clean(tmp_path / "copy", tmp_path / "restored")
    restored = query(str(tmp_path / "restored" / "imgz.db"), "SELECT COUNT(*) FROM uploads")
    assert restored == [(3,)]


def test_a_stale_lease_file_holds_nothing(tmp_path):
    (tmp_path / lease.LEASE).write_text("0" * 32)  # left by a backup that was killed
    assert lease.holder(tmp_path) is None


def test_a_file_retired_after_the_lease_ended_is_removed(tmp_path):
    (tmp_path / "images").mkdir()
    stored = tmp_path / "images" / "a.png"
    with lease.take(tmp_path) as held:
        ended = held.id
    stored.write_bytes(b"x")
    lease.retire(tmp_path, ended, "a.png", str(stored))  # the mover had read the lease before
    assert not stored.exists() and not lease.held_path(tmp_path, ended, "a.png").exists()


def test_two_backups_of_one_data_dir_do_not_run_at_once(filled, tmp_path):
    cfg = config_mod.load({**filled.env, "IMGZ_DATA": str(filled.data)})
    answers: list[str] = []

    def second() -> None:
        answers.append(command(filled.data, "backup", str(tmp_path / "second")).stderr)

    backup_mod.take(cfg, tmp_path / "first", listed=second)
    assert "another backup" in answers[0]
    assert not (tmp_path / "second").exists()


# -- while a real server works ------------------------------------------------------------------

def test_a_backup_taken_while_clients_upload_and_delete_restores_clean(tmp_path):
    """8 clients upload to a real server (some delete what they uploaded, some uploads expire
    within a second, and the server sweeps every second) while ``app.py backup`` runs in its
    own process; the backup restores to a data dir whose check is clean."""
    srv = LiveServer(tmp_path / "data", {"IMGZ_EXPIRATION_MIN": "1", "IMGZ_EXPIRY_INTERVAL": "1",
                                         "IMGZ_MIN_FREE_MB": "0"})
    stop = threading.Event()
    counts = [0] * CLIENTS
    errors: list[str] = []
    started = threading.Barrier(CLIENTS + 1)

    def client(index: int) -> None:
        started.wait()
        n = 0
        while not stop.is_set() or n < 6:
            n += 1
            extra = {"expiration": "PT1S"} if n % 5 == 0 else {}
            answer = srv.upload(media.png(160, 120, color=(index * 30, n % 256, 7)), **extra)
            if answer.status_code != 200:
                errors.append(f"{answer.status_code} {answer.text[:200]}")
                continue
            counts[index] += 1
            if n % 3 == 0 and not extra:  # an expiring one may be gone already
                gone = srv.delete(urlsplit(answer.json()["image"]["delete_url"]).path,
                                  headers={"Accept": "application/json"})
                if not gone.ok:
                    errors.append(f"delete {gone.status_code}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    try:
        for thread in threads:
            thread.start()
        started.wait()
        while sum(counts) < 40:  # the backup starts amid the flow, not before it
            stop.wait(0.05)
        before = sum(counts)
        env = {k: v for k, v in srv.env.items()}
        taken = subprocess.run([sys.executable, str(ROOT / "app.py"), "--data", str(srv.data),
                                "backup", str(tmp_path / "copy")], cwd=ROOT, env=env,
                               capture_output=True, text=True, timeout=300)
        during = sum(counts)
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        stop.set()
        srv.stop()
    assert taken.returncode == 0, taken.stderr
    assert not errors, errors[:5]
    assert during > before  # uploads went on while the backup ran
    rows = query(str(tmp_path / "copy" / "imgz.db"), "SELECT COUNT(*) FROM uploads")[0][0]
    assert rows >= 20
    assert_restores_clean(tmp_path / "copy", tmp_path / "restored")
    # the server removed the held files once the backup was over
    assert not (srv.data / lease.HOLD).exists() or not any(p.is_file() for p in (srv.data / lease.HOLD).rglob("*"))
