"""``python app.py migrate``: an install's rows and files copied to another database and store,
served the same there, there and back, cut short by SIGKILL and run again, and a final pass."""
from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

import pytest

import media
from commands import run_command
from conftest import ROOT
from contract import assert_upload_ok
from inprocess import InProcess
from snapshot import dump, stored
from imgz import layout
from imgz.commands.filecopy import Copier, Mismatch
from imgz.store.local import LocalStore

def migrate(source: Path, target: Path, *args: str) -> subprocess.CompletedProcess:
    """``app.py --data SOURCE migrate`` to TARGET/imgz.db and TARGET/images, in this process."""
    unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("IMGZ_")}
    return run_command("--data", str(source), "migrate", "--to-database", str(target / "imgz.db"),
                       "--to-storage", "local", "--to-data", str(target), *args, env=unset)


def file_urls(image: dict) -> list[str]:
    return [image[name]["url"] for name in ("image", "thumb", "medium") if (image.get(name) or {}).get("url")]


@pytest.fixture(scope="module")
def install(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A source install: two users with a key each, albums, a category, tags, an animation, an
    expiring upload; each upload's answer kept, with the MD5 of every file it served."""
    srv = InProcess(tmp_path_factory.mktemp("source"))
    srv.command("user", "add", "bob")
    srv.bob_key = srv.command("key", "create", "--user", "bob").stdout.strip()
    album = srv.command("album", "add", "Trips", "--user", "admin").stdout.strip()
    bob_album = srv.command("album", "add", "Bob's", "--user", "bob").stdout.strip()
    category = srv.command("category", "add", "Nature").stdout.strip()
    srv.images = [
        assert_upload_ok(srv.upload(media.png(900, 600), album_id=album, category_id=category,
                                    tags="sea,Café", title="A title")),
        assert_upload_ok(srv.upload(media.jpeg(640, 480), filename="b.jpg", api_key=srv.bob_key,
                                    album_id=bob_album, tags="sea")),
        assert_upload_ok(srv.upload(media.gif(120, 90, 4), filename="c.gif", expiration="P3D")),
        assert_upload_ok(srv.upload(media.png(30, 20, color="red"), nsfw="1")),
    ]
    srv.md5 = {}
    for image in srv.images:
        for url in file_urls(image):
            answer = srv.get(url)
            assert answer.status_code == 200
            srv.md5[url] = hashlib.md5(answer.content).hexdigest()
    yield srv
    srv.stop()


def test_a_migrated_install_serves_the_same_there_and_back(install, tmp_path):
    before = dump(install.db), stored(install.data)
    first = migrate(install.data, tmp_path / "one")
    assert first.returncode == 0, first.stderr
    assert "--final" in first.stderr and "uploads: 4 inserted" in first.stderr
    assert (dump(install.db), stored(install.data)) == before  # the source is only read
    assert dump(tmp_path / "one" / "imgz.db") == before[0]
    assert stored(tmp_path / "one") == before[1]
    # a copied file that went bad (same size, other bytes) is found by --verify and copied again
    spoilt = tmp_path / "one" / layout.DIR / sorted(before[1])[0]
    body = bytearray(spoilt.read_bytes())
    body[-3] ^= 0xFF
    spoilt.write_bytes(bytes(body))
    checked = migrate(install.data, tmp_path / "one", "--verify")
    files = len(before[1])
    assert checked.returncode == 0, checked.stderr
    assert "1 files copied" in checked.stderr and f"({files} compared by checksum)" in checked.stderr
    assert stored(tmp_path / "one") == before[1]
    back = run_command("--data", str(tmp_path / "one"), "migrate", "--to-database", str(tmp_path / "two.db"),
                       "--to-storage", "local", "--to-data", str(tmp_path / "two"), "--final")
    assert back.returncode == 0, back.stderr
    assert "the target equals the source" in back.stderr
    assert dump(tmp_path / "two.db") == before[0] and stored(tmp_path / "two") == before[1]

    # the copy there and the copy back both serve every file, page, key and delete link as before
    one = InProcess(tmp_path / "one")
    two = InProcess(tmp_path / "two", {"IMGZ_DB": str(tmp_path / "two.db")})
    try:
        for there in (one, two):
            for image in install.images:
                for url in file_urls(image):
                    answer = there.get(url)
                    assert answer.status_code == 200, url
                    assert hashlib.md5(answer.content).hexdigest() == install.md5[url]
                assert there.get(image["url_viewer"]).status_code == 200
            for key in (install.key, install.bob_key):
                assert_upload_ok(there.upload(media.png(20, 20), api_key=key))
            gone = install.images[1]
            deleted = there.request("DELETE", urlsplit(gone["delete_url"]).path,
                                    headers={"Accept": "application/json"})
            assert deleted.status_code == 200, deleted.text
            assert there.get(gone["image"]["url"]).status_code == 404
        # new uploads get ids past every copied one
        copied = max(row[0] for row in before[0]["uploads"])
        assert max(row[0] for row in dump(tmp_path / "two.db")["uploads"]) == copied + 2
    finally:
        one.stop()
        two.stop()


def test_a_dry_run_changes_nothing(install, tmp_path):
    before = dump(install.db), stored(install.data)
    dry = migrate(install.data, tmp_path / "dry", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "uploads: 4 would insert" in dry.stderr and "nothing was changed" in dry.stderr
    files = sum(len(file_urls(image)) for image in install.images)
    assert f"would copy {files} files" in dry.stderr
    assert not (tmp_path / "dry").exists()
    assert (dump(install.db), stored(install.data)) == before


def test_the_final_pass_takes_what_changed_meanwhile(install, tmp_path, make_app):
    src = make_app()
    kept = assert_upload_ok(src.upload(media.png(300, 200), tags="kept"))
    going = assert_upload_ok(src.upload(media.png(310, 200), tags="going"))
    expiring = assert_upload_ok(src.upload(media.png(320, 200), expiration="PT1H"))
    assert migrate(src.data, tmp_path / "to").returncode == 0
    # meanwhile: one deleted, one expired (not swept yet), one new, a key used
    assert src.request("DELETE", urlsplit(going["delete_url"]).path,
                       headers={"Accept": "application/json"}).status_code == 200
    with contextlib.closing(sqlite3.connect(src.db)) as conn, conn:
        conn.execute("UPDATE uploads SET expires_at = 1000 WHERE public_id = ?", (expiring["id_encoded"],))
    added = assert_upload_ok(src.upload(media.png(330, 200)))
    final = migrate(src.data, tmp_path / "to", "--final")
    assert final.returncode == 0, final.stderr
    assert "the target equals the source (2 uploads" in final.stderr
    target = dump(tmp_path / "to" / "imgz.db")
    assert sorted(row[1] for row in target["uploads"]) == sorted([kept["id_encoded"], added["id_encoded"]])
    assert [row[1] for row in target["tags"]] == ["kept"]  # the deleted upload's tag went with it
    assert target["api_keys"] == dump(src.db)["api_keys"]  # last use included
    paths = {row[0] for row in target["files"]}
    assert set(stored(tmp_path / "to")) == paths
    assert not any(going["name"] in path or expiring["name"] in path for path in paths)
    again = migrate(src.data, tmp_path / "to", "--final")
    assert again.returncode == 0 and "inserted" not in again.stderr, again.stderr


def test_the_same_database_or_store_is_refused(install, tmp_path):
    same_db = run_command("--data", str(install.data), "migrate", "--to-database", str(install.db),
                          "--to-storage", "local", "--to-data", str(tmp_path))
    same_store = run_command("--data", str(install.data), "migrate", "--to-database", str(tmp_path / "x.db"),
                             "--to-storage", "local", "--to-data", str(install.data))
    no_dir = run_command("--data", str(install.data), "migrate", "--to-database", str(tmp_path / "x.db"),
                         "--to-storage", "local")
    for result, words in ((same_db, "database is the source's"), (same_store, "store is the source's"),
                          (no_dir, "needs --to-data")):
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], result.stderr
    assert not (tmp_path / "x.db").exists()


def test_another_install_as_target_is_refused(install, make_app):
    other = make_app()
    other.command("user", "add", "zed")
    result = migrate(install.data, other.data)
    assert result.returncode == 1 and "another install" in result.stderr, result.stderr


class Corrupting(LocalStore):
    """A store that keeps other bytes than it was given."""

    def put(self, key: str, src: Path) -> None:
        with open(src, "r+b") as fh:
            first = fh.read(1)
            fh.seek(0)
            fh.write(bytes([first[0] ^ 0xFF]))
        super().put(key, src)


def test_a_copy_read_back_different_stops_and_is_taken_away(install, tmp_path):
    key = urlsplit(install.images[0]["image"]["url"]).path.removeprefix(layout.URL_PREFIX)
    target = Corrupting(tmp_path / "images")
    copier = Copier(LocalStore(install.data / layout.DIR), target, tmp_path)
    with pytest.raises(Mismatch) as raised:
        copier.ensure(key, True)
    assert raised.value.key == key and target.stat(key) is None


# -- killed halfway ----------------------------------------------------------------------------

MANY = 200


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    """An install of MANY small uploads, each made through the API."""
    srv = InProcess(tmp_path_factory.mktemp("big"))
    for n in range(MANY):
        assert_upload_ok(srv.upload(media.png(24 + n % 50, 16 + n // 50, color=(n, 255 - n, n % 7)),
                                    tags=f"t{n % 5}"))
    yield srv
    srv.stop()


def _killed_after(source: Path, target: Path, files: int) -> bool:
    """Run migrate in its own process and SIGKILL it once the target has ``files`` files;
    whether it was killed before it was done."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGZ_")}
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--data", str(source), "migrate",
                             "--to-database", str(target / "imgz.db"), "--to-storage", "local",
                             "--to-data", str(target), "--jobs", "1"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if (target / layout.DIR).is_dir() and sum(len(n) for _, _, n in os.walk(target / layout.DIR)) >= files:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.002)
    finally:
        proc.wait(30)
        proc.stderr.close()
    return proc.returncode == -signal.SIGKILL


def test_killed_halfway_and_run_again_it_completes_with_nothing_twice(big, tmp_path):
    target = tmp_path / "to"
    total = len(stored(big.data))
    halfway = 0  # runs killed with part of the files and rows copied
    for step in (total // 4, total // 2, 3 * total // 4):
        if _killed_after(big.data, target, step) and len(stored(target)) < total:
            halfway += 1
            assert len(dump(target / "imgz.db")["uploads"]) < MANY
    assert halfway, "no run could be killed halfway"
    again = migrate(big.data, target, "--final")
    assert again.returncode == 0, again.stderr
    assert f"the target equals the source ({MANY} uploads" in again.stderr
    assert dump(target / "imgz.db") == dump(big.db)
    assert stored(target) == stored(big.data)  # every file, each once, none left over
