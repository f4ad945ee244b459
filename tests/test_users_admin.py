"""Users over the years: ``user list``, ``enable``, ``remove`` (uploads kept ownerless or deleted)
and quotas of stored bytes and files, refused with 413 before anything is stored, exact when
uploads arrive at once, given back on deletion and expiry, at the creation of a resumable upload
too; and the usage of uploads already there counted when a database gains quotas."""
from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from urllib.parse import urlsplit

import pytest

import media
from conftest import LiveServer
from contract import assert_error, assert_upload_ok
from people import add_user
from tusclient import Tus
from imgz import db

pytestmark = pytest.mark.paired


def stored(image: dict) -> int:
    """What an upload takes in the store: the original and every variant."""
    return image["size"] + image["thumb_size"] + image["medium_size"] + image["frame_size"]


def listing(srv) -> dict[str, list[str]]:
    """``user list`` by name: the fields after the name."""
    result = srv.command("user", "list")
    assert result.returncode == 0, result.stderr
    return {line.split("\t")[0]: line.split("\t")[1:] for line in result.stdout.splitlines()}


def command_ok(srv, *args: str) -> str:
    result = srv.command(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def bob(make_app):
    """An app with a user bob and bob's key (``srv.bob``)."""
    srv = make_app()
    command_ok(srv, "user", "add", "bob")
    srv.bob = command_ok(srv, "key", "create", "--user", "bob").strip()
    return srv


def upload(srv, key: str, *, width: int = 640, color=(10, 120, 200), **fields) -> dict:
    return assert_upload_ok(srv.upload(media.png(width, 400, color=color), api_key=key, **fields))


def usage(srv, name: str) -> tuple[int, int]:
    conn = db.connect(srv.config.database)
    try:
        quota = db.get_quota(conn, db.get_user_by_name(conn, name).id)
        return quota.used_bytes, quota.used_files
    finally:
        conn.close()


# -- user list, enable -----------------------------------------------------------------------------

def test_user_list_shows_role_state_uploads_and_stored_bytes(bob):
    images = [upload(bob, bob.bob), upload(bob, bob.bob, width=300)]
    assert images[0]["medium_size"] > 0 and images[1]["medium_size"] == 0
    found = listing(bob)
    assert found["bob"] == ["user", "active", "uploads=2", f"bytes={sum(map(stored, images))}",
                            "keys=1", "max_mb=none", "max_files=none"]
    assert found["admin"][:4] == ["admin", "active", "uploads=0", "bytes=0"]
    command_ok(bob, "user", "disable", "bob")
    assert listing(bob)["bob"][1] == "disabled"


def test_a_disabled_user_enabled_again_uploads_again(bob):
    command_ok(bob, "user", "disable", "bob")
    assert_error(bob.upload(media.png(20, 20), api_key=bob.bob), 401, 100)
    assert bob.command("user", "disable", "bob").returncode != 0
    command_ok(bob, "user", "enable", "bob")
    assert listing(bob)["bob"][1] == "active"
    upload(bob, bob.bob)
    assert bob.command("user", "enable", "bob").returncode != 0, "enabled already"


def test_the_users_page_shows_usage_and_quota_and_enables(bob):
    add_user(bob.config.database, "ann", admin=True)
    image = upload(bob, bob.bob)
    command_ok(bob, "user", "quota", "bob", "--max-mb", "5", "--max-files", "10")
    command_ok(bob, "user", "disable", "bob")
    from test_access import signed_in

    client, token = signed_in(bob, "ann")
    page = client.get("/users").get_data(as_text=True)
    from imgz.chevereto import size_formatted

    assert size_formatted(stored(image)) in page and "5 MB, 10 files" in page
    bob_id = bob.query("SELECT id FROM users WHERE name = 'bob'")[0][0]
    assert f'action="/users/{bob_id}/enable"' in page
    done = client.post(f"/users/{bob_id}/enable", data={"csrf_token": token})
    assert done.status_code == 200 and "bob is enabled again" in done.get_data(as_text=True)
    upload(bob, bob.bob)


# -- user remove ----------------------------------------------------------------------------------

@pytest.mark.parametrize("flags", [(), ("--keep-uploads", "--delete-uploads")])
def test_remove_says_what_becomes_of_the_uploads_or_refuses(bob, flags):
    upload(bob, bob.bob)
    result = bob.command("user", "remove", "bob", *flags)
    assert result.returncode == 1 and "--keep-uploads or --delete-uploads" in result.stderr
    assert "bob" in listing(bob) and bob.rows() == 1


def test_remove_refuses_the_first_user_and_the_last_admin(bob):
    assert "disable it instead" in bob.command("user", "remove", "admin", "--keep-uploads").stderr
    command_ok(bob, "user", "add", "root", "--admin")
    command_ok(bob, "user", "disable", "admin")
    assert "last enabled admin" in bob.command("user", "remove", "root", "--keep-uploads").stderr
    assert bob.command("user", "remove", "nobody", "--keep-uploads").returncode == 1


def _owned_rows(srv, user_id: int) -> dict[str, int]:
    return {table: srv.query(f"SELECT COUNT(*) FROM {table} WHERE user_id = :u", {"u": user_id})[0][0]
            for table in ("api_keys", "sessions", "albums", "uploads", "user_usage", "resumables")}


def test_remove_keeping_uploads_leaves_them_ownerless_served_and_deletable(bob):
    album = command_ok(bob, "album", "add", "Trips", "--user", "bob").strip()
    kept = [upload(bob, bob.bob, album_id=album), upload(bob, bob.bob, width=200)]
    bob_id = bob.query("SELECT id FROM users WHERE name = 'bob'")[0][0]
    Tus(bob, {"X-API-Key": bob.bob}).location(1000)
    files = bob.stored_files()
    result = bob.command("user", "remove", "bob", "--keep-uploads")
    assert result.returncode == 0 and "2 uploads kept without an owner" in result.stderr
    assert "bob" not in listing(bob)
    assert _owned_rows(bob, bob_id) == dict.fromkeys(_owned_rows(bob, bob_id), 0)
    assert bob.query("SELECT user_id, album_id FROM uploads") == [(None, None)] * 2
    assert_error(bob.upload(media.png(20, 20), api_key=bob.bob), 401, 100)
    assert bob.stored_files() == files
    for image in kept:
        assert bob.get(image["url_viewer"]).status_code == 200
        assert bob.get(image["url"]).status_code == 200
    deleted = bob.delete(urlsplit(kept[0]["delete_url"]).path, headers={"Accept": "application/json"})
    assert deleted.status_code == 200 and bob.get(kept[0]["url"]).status_code == 404
    assert bob.rows() == 1


def test_remove_deleting_uploads_leaves_nothing_of_them(bob):
    mine = upload(bob, bob.bob, color=(1, 2, 3))
    theirs = upload(bob, bob.key, color=(3, 2, 1))
    command_ok(bob, "album", "add", "Trips", "--user", "bob")
    clip = assert_upload_ok(bob.upload(media.clip("mp4"), filename="c.mp4", api_key=bob.bob))
    bob_id = bob.query("SELECT id FROM users WHERE name = 'bob'")[0][0]
    result = bob.command("user", "remove", "bob", "--delete-uploads")
    assert result.returncode == 0 and "2 uploads deleted with their files" in result.stderr
    assert _owned_rows(bob, bob_id) == dict.fromkeys(_owned_rows(bob, bob_id), 0)
    assert bob.rows() == 1
    assert bob.query("SELECT COUNT(*) FROM files")[0][0] == len(bob.stored_files())
    kept = {f"images/{urlsplit(theirs[k]['url']).path.split('/images/', 1)[1]}"
            for k in ("image", "thumb", "medium") if theirs[k]["url"]}
    assert set(bob.stored_files()) == kept
    for gone in (mine, clip):
        assert bob.get(gone["url"]).status_code == 404 and bob.get(gone["url_viewer"]).status_code == 404


# -- quotas ---------------------------------------------------------------------------------------

def _refused(srv, key: str, **kwargs) -> None:
    rows, files, names = srv.rows(), srv.stored_files(), srv.query("SELECT COUNT(*) FROM names")
    answer = srv.upload(media.png(640, 400, color=(200, 10, 10)), api_key=key, **kwargs)
    assert_error(answer, 413, 413, "Quota exceeded")
    assert srv.rows() == rows and srv.stored_files() == files, "nothing is stored"
    assert srv.query("SELECT COUNT(*) FROM names") == names and srv.tmp_files() == []


def test_a_quota_of_bytes_refuses_the_upload_that_would_cross_it(bob):
    first = upload(bob, bob.bob)
    assert usage(bob, "bob") == (stored(first), 1)
    # room for the first one and half of another like it
    command_ok(bob, "user", "quota", "bob", "--max-mb", f"{stored(first) * 1.5 / 1e6}")
    _refused(bob, bob.bob)
    upload(bob, bob.key)  # the admin has no quota
    assert usage(bob, "bob") == (stored(first), 1)
    shown = command_ok(bob, "user", "quota", "bob").split("\t")
    assert shown[:3] == ["bob", "uploads=1", f"bytes={stored(first)}"]
    command_ok(bob, "user", "quota", "bob", "--max-mb", "none")
    upload(bob, bob.bob)


@pytest.mark.parametrize("option, value", [("--max-mb", "-1"), ("--max-mb", "nan"), ("--max-mb", "lots"),
                                           ("--max-files", "1.5"), ("--max-files", "-2")])
def test_a_quota_that_is_no_number_is_refused(bob, option, value):
    result = bob.command("user", "quota", "bob", option, value)
    assert result.returncode == 2 and option in result.stderr
    assert listing(bob)["bob"][-2:] == ["max_mb=none", "max_files=none"]


def test_a_quota_of_files_refuses_and_a_deletion_gives_room_again(bob):
    command_ok(bob, "user", "quota", "bob", "--max-files", "2")
    first = upload(bob, bob.bob)
    upload(bob, bob.bob)
    _refused(bob, bob.bob)
    bob.delete(urlsplit(first["delete_url"]).path, headers={"Accept": "application/json"})
    upload(bob, bob.bob)
    _refused(bob, bob.bob)
    command_ok(bob, "user", "quota", "bob", "--max-files", "0")
    upload(bob, bob.bob)
    assert listing(bob)["bob"][2] == "uploads=3"


def test_an_expired_upload_gives_its_room_back(bob):
    command_ok(bob, "user", "quota", "bob", "--max-files", "1")
    upload(bob, bob.bob, expiration="PT1H")
    _refused(bob, bob.bob)
    assert bob.service.purge_expired(bob.service.now() + timedelta(hours=2)) == 1
    assert usage(bob, "bob") == (0, 0)
    upload(bob, bob.bob)


def test_a_quota_full_refuses_a_resumable_upload_at_creation_and_at_finish(bob):
    tus = Tus(bob, {"X-API-Key": bob.bob})
    command_ok(bob, "user", "quota", "bob", "--max-mb", "0.5")
    assert_error(tus.create(600_000), 413, 413, "Quota exceeded")
    assert bob.query("SELECT COUNT(*) FROM resumables") == [(0,)]
    body = media.png(64, 64)
    where = tus.location(len(body))
    assert tus.send(where, body, len(body)) == len(body)
    command_ok(bob, "user", "quota", "bob", "--max-files", "1")
    upload(bob, bob.bob, width=100)  # the last room, taken meanwhile
    rows, files = bob.rows(), bob.stored_files()
    assert_error(tus.finish(where), 413, 413, "Quota exceeded")
    assert bob.rows() == rows and bob.stored_files() == files


def test_two_reservations_at_once_cannot_both_cross_the_quota(bob):
    """The second transaction waits for the first's lock, then finds no room."""
    bob_id = bob.query("SELECT id FROM users WHERE name = 'bob'")[0][0]
    command_ok(bob, "user", "quota", "bob", "--max-mb", "0.0015")  # 1500 bytes
    first, second = db.connect(bob.config.database), db.connect(bob.config.database)
    answers: list[bool] = []
    try:
        with db.transaction(first):
            from imgz.db.quotas import reserve

            assert reserve(first, bob_id, 1000)
            waiting = threading.Thread(target=lambda: answers.append(_reserve_alone(second, bob_id)))
            waiting.start()
            waiting.join(0.5)
            assert waiting.is_alive(), "the second reservation waits for the first transaction"
        waiting.join(30)
        assert answers == [False]
    finally:
        with contextlib.suppress(Exception):
            first.close()
        second.close()
    assert usage(bob, "bob")[0] == 1000


def _reserve_alone(conn, user_id: int) -> bool:
    from imgz.db.quotas import reserve

    with db.transaction(conn):
        return reserve(conn, user_id, 1000)


def test_uploads_at_once_against_a_server_cannot_both_cross_the_quota(tmp_path):
    srv = LiveServer(tmp_path / "live", {"IMGZ_WORKERS": "4"})
    try:
        command_ok(srv, "user", "add", "bob")
        key = command_ok(srv, "key", "create", "--user", "bob").strip()
        body = media.png(640, 400, color=(5, 5, 5))
        probe = assert_upload_ok(srv.upload(body))  # the admin's: what one such upload takes
        command_ok(srv, "user", "quota", "bob", "--max-mb", f"{stored(probe) * 1.5 / 1e6}")
        files = srv.stored_files()
        start = threading.Barrier(6)

        def one(_: int):
            start.wait()
            return srv.upload(body, api_key=key)

        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(one, range(6)))
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [200] + [413] * 5, [a.text[:200] for a in answers]
        for answer in answers:
            if answer.status_code == 413:
                assert_error(answer, 413, 413, "Quota exceeded")
        assert srv.rows() == 2 and len(srv.stored_files()) == 2 * len(files)
        assert listing(srv)["bob"][2:4] == ["uploads=1", f"bytes={stored(probe)}"]
    finally:
        srv.stop()


# -- the schema: quotas added to a database of version 4 ------------------------------------------

def test_a_version_4_database_gains_quotas_and_counts_what_is_there(bob):
    images = [upload(bob, bob.bob), upload(bob, bob.bob, width=300), upload(bob, bob.key, width=200)]
    for statement in ("DROP TABLE user_usage", "ALTER TABLE users DROP COLUMN max_bytes",
                      "ALTER TABLE users DROP COLUMN max_files", "UPDATE schema_version SET version = 4"):
        bob.query(statement)
    conn = db.connect(bob.config.database)
    try:
        assert db.schema_version_of(conn) == 4
        db.migrate(conn)
        assert db.schema_version_of(conn) == db.SCHEMA_VERSION == 5
        by_name = {s.user.name: s for s in db.list_users(conn)}
    finally:
        conn.close()
    assert (by_name["bob"].uploads, by_name["bob"].quota.used_bytes) == (2, stored(images[0]) + stored(images[1]))
    assert (by_name["admin"].uploads, by_name["admin"].quota.used_bytes) == (1, stored(images[2]))
    assert by_name["bob"].quota.max_bytes is None and by_name["bob"].quota.max_files is None
