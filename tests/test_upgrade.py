"""A data directory written by an older imgz opens with this one, is upgraded in place and keeps
every row: each upload is still served and listed, keys still work and the revoked one does not.

The fixture (tests/fixtures/schema2) was written by the code of b01bdb6, schema version 2, through
its API and commands (tests/fixtures/make_data_dir.py): a PNG with tags in an album, an NSFW JPEG
in a category, an animated GIF expiring in 50 years, a bob's MP4, bob's key and a revoked key.
"""
from __future__ import annotations

import contextlib
import io
import json
import shutil
import sqlite3
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import media
from imgz import cli, db
from imgz.web import create_app

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "schema2"
TABLES = ("users", "api_keys", "albums", "categories", "uploads", "files", "names", "tags",
          "upload_tags")


def _path(url: str) -> str:
    return urlsplit(url).path


def _rows(path: Path) -> dict[str, list[tuple]]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return {table: sorted(conn.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
                for table in TABLES}


@pytest.fixture
def upgraded(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(FIXTURE / "datadir", data)
    manifest = json.loads((FIXTURE / "manifest.json").read_text())
    before = _rows(data / "imgz.db")
    app = create_app({"data": str(data), "min_free_mb": "0", "public_tags": "1", "timezone": "UTC"},
                     environ={}, jobs=False)
    try:
        yield data, manifest, before, app, app.test_client()
    finally:
        app.config["IMGZ_CONNECTIONS"].close_all()


def test_the_fixture_is_an_older_schema():
    with contextlib.closing(sqlite3.connect(FIXTURE / "datadir" / "imgz.db")) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "schema_version" not in names and set(TABLES) <= names


def test_the_schema_is_upgraded_and_every_row_kept(upgraded):
    data, manifest, before, app, client = upgraded
    after = _rows(data / "imgz.db")
    # every row keeps its values; columns added since come after them
    assert {t: [r[:len(rows[0])] for r in after[t]] if rows else after[t] for t, rows in before.items()} == before
    # no password, not disabled, no quota
    assert [r[4:] for r in after["users"]] == [(None, None, None, None)] * 2
    (album,) = after["albums"]
    assert album[5] == 0 and len(album[6]) >= 22  # private, with an unguessable page address
    assert len(before["uploads"]) == len(manifest["uploads"]) == 4
    with contextlib.closing(db.connect(data / "imgz.db")) as conn:
        assert db.schema_version_of(conn) == db.SCHEMA_VERSION == 5
        assert [u.public_id for u in db.iter_uploads(conn)] == [u["id_encoded"] for u in manifest["uploads"]]
        gif = db.get_upload(conn, manifest["uploads"][2]["id_encoded"])
        assert gif.expires_at is not None and gif.expires_at.year >= 2070 and gif.tags == ("sea", "loop")
        beach = db.get_upload(conn, manifest["uploads"][0]["id_encoded"])
        assert beach.tags == ("sea", "Café", "sand") and beach.album_id is not None
        # what each user's uploads take, counted from them, every variant included
        used = {s.user.name: (s.uploads, s.quota.used_bytes) for s in db.list_users(conn)}
        stored = [sum(u[f"{part}size"] for part in ("", "thumb_", "medium_", "frame_"))
                  for u in manifest["uploads"]]  # the first three are admin's, the last bob's
        assert used == {"admin": (3, sum(stored[:3])), "bob": (1, stored[3])}
        hills = db.get_upload(conn, manifest["uploads"][1]["id_encoded"])
        assert hills.nsfw and hills.category_id == 1 and hills.description == "Green hills"


def test_every_upload_is_still_served(upgraded):
    data, manifest, before, app, client = upgraded
    served = set()
    for image in manifest["uploads"]:
        page = client.get(_path(image["url_viewer"]))
        assert page.status_code == 200, image["url_viewer"]
        assert image["title"] in page.get_data(as_text=True)
        files = [url for url in (image["url"], image["thumb"]["url"], image["medium"]["url"],
                                 image["url_frame"]) if url]
        assert len(files) >= 2
        for url in files:
            response = client.get(_path(url))
            assert response.status_code == 200, url
            assert response.get_data() == (data / _path(url).lstrip("/")).read_bytes()
            response.close()
            served.add(_path(url).lstrip("/"))
    stored = {str(p.relative_to(data)) for p in (data / "images").rglob("*") if p.is_file()}
    assert served == stored and len(stored) == 11
    tag = client.get("/tag/sea").get_data(as_text=True)
    assert _path(manifest["uploads"][0]["path_viewer"]) in tag
    assert _path(manifest["uploads"][2]["path_viewer"]) in tag


def test_every_upload_is_still_listed(upgraded, capsys):
    data, manifest, before, app, client = upgraded
    assert cli.run(["--data", str(data), "upload", "list"]) == 0
    listed = capsys.readouterr().out.splitlines()[1:]
    assert [line.split("\t")[0] for line in listed] == [u["id_encoded"] for u in manifest["uploads"]]
    assert [line.split("\t")[1] for line in listed] == ["admin", "admin", "admin", "bob"]


def test_keys_albums_and_delete_links_still_work(upgraded):
    data, manifest, before, app, client = upgraded
    keys = manifest["keys"]

    def upload(key: str, **fields: str):
        return client.post("/api/1/upload", headers={"X-API-Key": key},
                           data={"source": (io.BytesIO(media.png(20, 20)), "a.png"), **fields})

    assert upload(keys["admin"], album_id=manifest["album"], category_id="1").status_code == 200
    assert upload(keys["bob"]).status_code == 200
    refused = upload(keys["revoked"])
    assert refused.status_code == 401 and refused.get_json()["error"]["code"] == 100
    assert upload(keys["bob"], album_id=manifest["album"]).status_code == 400, "the album is admin's"
    assert cli.run(["--data", str(data), "key", "list"]) == 0
    # the delete secrets handed out by the older code still delete
    gone = manifest["uploads"][3]
    assert client.get(_path(gone["delete_url"])).status_code == 200
    deleted = client.post(_path(gone["delete_url"]), headers={"Accept": "application/json"})
    assert deleted.status_code == 200
    assert client.get(_path(gone["url_viewer"])).status_code == 404
    assert client.get(_path(gone["url"])).status_code == 404
