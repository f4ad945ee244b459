"""Albums, categories, take-downs, reconciliation, guests and the ShareX uploader, end to end."""
from __future__ import annotations

import json
import re

import pytest
import requests

import media
from contract import assert_error, assert_upload_ok
from helpers import sharex_fill
from inprocess import InProcess

PNG = media.png(40, 30)


@pytest.fixture(scope="module")
def org(tmp_path_factory):
    """An app with a second user, an album each and a category."""
    srv = InProcess(tmp_path_factory.mktemp("org"), {"IMGZ_BASE_URL": ""})
    srv.command("user", "add", "bob")
    srv.bob_key = srv.command("key", "create", "--user", "bob").stdout.strip()
    srv.admin_album = srv.command("album", "add", "Trips", "--user", "admin").stdout.strip()
    srv.bob_album = srv.command("album", "add", "Bob's", "--user", "bob").stdout.strip()
    srv.category = srv.command("category", "add", "Nature").stdout.strip()
    yield srv
    srv.stop()


def _album_of(srv, public_id: str):
    return srv.query("SELECT a.public_id FROM uploads u LEFT JOIN albums a ON a.id = u.album_id"
                     " WHERE u.public_id = :id", {"id": public_id})[0][0]


def test_commands_print_ids(org):
    assert re.fullmatch(r"[0-9A-Za-z]{8}", org.admin_album)
    assert org.category == "1"
    assert org.command("category", "add", "Nature").returncode != 0


def test_upload_into_own_album_with_category(org):
    image = assert_upload_ok(org.upload(PNG, album_id=org.admin_album, category_id=org.category))
    assert image["category_id"] == 1
    assert _album_of(org, image["id_encoded"]) == org.admin_album
    image = assert_upload_ok(org.upload(PNG, api_key=org.bob_key, album_id=org.bob_album))
    assert _album_of(org, image["id_encoded"]) == org.bob_album


@pytest.mark.parametrize("who,fields,message", [
    ("admin", {"album_id": "bob"}, "Album not found"),
    ("bob", {"album_id": "admin"}, "Album not found"),
    ("admin", {"album_id": "ZZZZZZZZ"}, "Album not found"),
    ("admin", {"category_id": "99"}, "Invalid category"),
    ("admin", {"category_id": "abc"}, "Invalid category"),
])
def test_wrong_album_or_category_stores_nothing(org, who, fields, message):
    albums = {"bob": org.bob_album, "admin": org.admin_album}
    fields = {k: albums.get(v, v) for k, v in fields.items()}
    key = org.bob_key if who == "bob" else org.key
    rows, files = org.rows(), org.stored_files()
    assert_error(org.upload(PNG, api_key=key, **fields), 400, 400, message)
    assert org.rows() == rows and org.stored_files() == files and org.tmp_files() == []


@pytest.mark.parametrize("how", ["id", "viewer", "short", "file", "thumb"])
def test_upload_delete_command(org, how):
    image = assert_upload_ok(org.upload(media.png(600, 400), filename="takedown.png"))
    ident = {"id": image["id_encoded"], "viewer": image["url_viewer"], "short": image["url_short"],
             "file": image["url"], "thumb": image["thumb"]["url"]}[how]
    listing = org.command("upload", "list").stdout
    assert image["id_encoded"] in listing
    result = org.command("upload", "delete", ident)
    assert result.returncode == 0, result.stderr
    assert not any(image["name"] in p for p in org.stored_files())
    assert org.get(image["url"]).status_code == 404
    assert image["id_encoded"] not in org.command("upload", "list").stdout
    assert org.command("upload", "delete", image["id_encoded"]).returncode != 0


def test_upload_list_by_user(org):
    image = assert_upload_ok(org.upload(PNG, api_key=org.bob_key))
    lines = org.command("upload", "list", "--user", "bob").stdout.splitlines()
    assert lines[0].split("\t") == ["id", "user", "name", "size", "date", "expires"]
    assert all(line.split("\t")[1] == "bob" for line in lines[1:])
    assert any(line.startswith(image["id_encoded"] + "\t") for line in lines)


def test_check_finds_and_repairs_orphans(make_app):
    srv = make_app()
    kept = assert_upload_ok(srv.upload(media.png(600, 400)))
    broken = assert_upload_ok(srv.upload(media.png(600, 400)))
    planted = "images/" + kept["url"].split("/images/")[1].rsplit("/", 1)[0] + "/planted.png"
    srv.plant_stored(planted, b"nobody owns me")
    srv.remove_stored(broken["url"])
    # files planted a moment ago: an S3 store would count them in flight for an hour by default
    result = srv.command("check", "--orphan-age", "0")
    assert result.returncode == 1
    assert "planted.png" in result.stdout and broken["id_encoded"] in result.stdout
    assert kept["id_encoded"] not in result.stdout
    assert srv.command("check", "--repair", "--orphan-age", "0").returncode == 0
    assert planted not in srv.stored_files()
    assert not any(broken["name"] in p for p in srv.stored_files())
    assert srv.rows() == 1
    clean = srv.command("check")
    assert clean.returncode == 0 and clean.stdout == ""
    assert srv.get(kept["url"]).status_code == 200


def test_check_finds_missing_variants_and_repair_makes_them_again(make_app):
    srv = make_app()
    photo = assert_upload_ok(srv.upload(media.png(600, 400), filename="photo.png"))
    clip = assert_upload_ok(srv.upload(media.clip("mp4", size="640x360", seconds=1), filename="c.mp4"))
    lost = {photo["thumb"]["url"]: photo["thumb"]["size"], photo["medium"]["url"]: photo["medium"]["size"],
            clip["frame"]["url"]: clip["frame"]["size"], clip["thumb"]["url"]: clip["thumb"]["size"]}
    for url in lost:
        srv.remove_stored(url)
        assert srv.get(url).status_code == 404
    result = srv.command("check")
    assert result.returncode == 1
    assert result.stdout.count("missing variant") == 4
    assert photo["id_encoded"] in result.stdout and clip["id_encoded"] in result.stdout
    repaired = srv.command("check", "--repair")
    assert repaired.returncode == 0, repaired.stderr
    for url in lost:
        response = srv.get(url)
        assert response.status_code == 200 and response.headers["Content-Type"] == "image/" + (
            "png" if url.endswith(".png") else "jpeg")
        assert int(response.headers["Content-Length"]) > 0
    assert srv.rows() == 2
    assert srv.command("check").returncode == 0
    sizes = srv.query("SELECT thumb_size, medium_size, frame_size FROM uploads ORDER BY id")
    files = {url: len(srv.get(url).content) for url in lost}
    assert sizes[0][:2] == (files[photo["thumb"]["url"]], files[photo["medium"]["url"]])
    assert (sizes[1][0], sizes[1][2]) == (files[clip["thumb"]["url"]], files[clip["frame"]["url"]])


SXCU_FIELDS = {"Version", "Name", "DestinationType", "RequestMethod", "RequestURL", "Headers", "Body",
               "FileFormName", "URL", "ThumbnailURL", "DeletionURL", "ErrorMessage"}


def _use_sxcu(srv, sxcu: dict, data: bytes) -> requests.Response:
    """Send exactly the request the uploader describes."""
    assert sxcu["RequestMethod"] == "POST" and sxcu["Body"] == "MultipartFormData"
    return srv.post(sxcu["RequestURL"], headers=sxcu["Headers"],
                         files={sxcu["FileFormName"]: ("capture.png", data)}, timeout=30)


def _check_sxcu(sxcu: dict, srv) -> None:
    assert set(sxcu) == SXCU_FIELDS
    assert sxcu["Version"] == "17.0.0" and sxcu["DestinationType"] == "ImageUploader, FileUploader"
    answer = _use_sxcu(srv, sxcu, media.png(640, 400)).json()
    url, thumb, deletion = (sharex_fill(sxcu[k], answer) for k in ("URL", "ThumbnailURL", "DeletionURL"))
    assert srv.get(url).status_code == 200 and srv.get(thumb).status_code == 200
    assert srv.get(deletion).status_code == 200  # the confirmation page
    bad = dict(sxcu, Headers={"X-API-Key": "imgz_wrong"})
    assert sharex_fill(bad["ErrorMessage"], _use_sxcu(srv, bad, PNG).json()) == "Invalid API key."


def test_sharex_command(make_app):
    srv = make_app()
    result = srv.command("sharex", "--url", srv.url)
    assert result.returncode == 0, result.stderr
    sxcu = json.loads(result.stdout)
    assert sxcu["RequestURL"] == srv.url + "/api/1/upload"
    assert sxcu["Headers"]["X-API-Key"] != srv.key
    assert "sharex" in srv.command("key", "list").stdout
    _check_sxcu(sxcu, srv)
    again = json.loads(srv.command("sharex", "--url", srv.url, "--key", srv.key).stdout)
    assert again["Headers"] == {"X-API-Key": srv.key}


@pytest.mark.parametrize("args,env", [([], {}), (["--url", "http://0.0.0.0:8080"], {})])
def test_sharex_refuses_an_unknown_url(tmp_path, args, env):
    from test_cli import run_here

    result = run_here(tmp_path, "sharex", *args, env=env)
    assert result.returncode != 0 and result.stdout == ""
    assert "url" in result.stderr.lower() or "0.0.0.0" in result.stderr


def test_sharex_download(make_app):
    srv = make_app()
    response = srv.get("/sharex.sxcu", headers={"X-API-Key": srv.key})
    assert response.status_code == 200
    assert response.headers["Content-Disposition"].startswith("attachment;")
    sxcu = response.json()
    assert sxcu["Headers"] == {"X-API-Key": srv.key}
    assert sxcu["RequestURL"] == srv.url + "/api/1/upload"
    _check_sxcu(sxcu, srv)
    assert srv.get(f"/sharex.sxcu?key={srv.key}").status_code == 200
    assert_error(srv.get("/sharex.sxcu"), 401, 100, "No key provided")
    assert_error(srv.get("/sharex.sxcu", headers={"X-API-Key": "imgz_bad"}), 401, 100)


@pytest.mark.parametrize("host", ["0.0.0.0", "0.0.0.0:8080", "[::]:8080", "0:8080", "[0::0]:8080"])
def test_sharex_download_never_names_0_0_0_0(server, host):
    response = server.get("/sharex.sxcu", headers={"X-API-Key": server.key, "Host": host})
    body = assert_error(response, 400, 400)
    assert "IMGZ_BASE_URL" in body["error"]["message"]
    assert "RequestURL" not in response.text


def test_sharex_download_uses_the_base_url(make_app):
    srv = make_app(base_url="https://img.example.org")
    assert srv.get("/sharex.sxcu", headers={"X-API-Key": srv.key}).json()["RequestURL"] == \
        "https://img.example.org/api/1/upload"


def test_guest_uploads_off_by_default(server):
    assert_error(server.upload(PNG, api_key=None), 401, 100, "No key provided")


def test_guest_uploads_on(make_app, webhost):
    srv = make_app(guest_uploads="1", guest_max_upload_mb="0.5", url_allow_nets="127.0.0.1/32")
    image = assert_upload_ok(srv.upload(PNG, api_key=None))
    assert srv.query("SELECT user_id FROM uploads") == [(None,)]
    assert "(guest)" in srv.command("upload", "list").stdout
    assert srv.get(image["url"]).status_code == 200
    rows = srv.rows()
    big = media.png(560, 400)
    assert len(big) > 500_000
    assert_error(srv.upload(big, api_key=None), 413, 400, "File too big - max 0.5 MB")
    url = webhost.add("/guest.png", body=PNG)
    assert_error(srv.upload(url, api_key=None), 400, 622, "Invalid image URL: URL sources need an API key")
    assert_error(srv.upload(PNG, api_key="imgz_wrong"), 401, 100, "Invalid API key.")
    assert srv.rows() == rows
    assert assert_upload_ok(srv.upload(big))["size"] == len(big), "keyed users keep the full limit"
    assert_error(srv.upload(PNG, api_key=None, album_id="abc"), 400, 400, "Album not found")
