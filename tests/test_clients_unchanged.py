"""The clients that were here before the pages keep working exactly as they did, against a real
server on each backend pair: ShareX's uploader (a key, no cookie), curl with a key, and
`curl -X DELETE <delete_url>`; and a browser's session cookie never makes a GET upload."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest
import requests

import media
from conftest import LiveServer
from helpers import sharex_fill
from people import PASSWORD, add_user, sign_in

pytestmark = [pytest.mark.paired,
              pytest.mark.skipif(shutil.which("curl") is None, reason="needs the curl program")]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = LiveServer(tmp_path_factory.mktemp("clients"))
    add_user(srv.config.database, "ann", PASSWORD)
    yield srv
    srv.stop()


def rows(site: LiveServer) -> int:
    return site.query("SELECT COUNT(*) FROM uploads")[0][0]


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--fail-with-body", *args], capture_output=True, text=True,
                          timeout=60)


def test_sharex_uploads_with_its_key_and_no_cookie(site: LiveServer, tmp_path: Path) -> None:
    uploader = json.loads(site.command("sharex", "--url", site.url).stdout)
    assert uploader["RequestURL"] == f"{site.url}/api/1/upload"
    picture = media.png(64, 48)
    # what ShareX sends: its method, its headers, the file under FileFormName, its arguments
    answer = requests.request(uploader["RequestMethod"], uploader["RequestURL"],
                              headers=uploader["Headers"], data=uploader.get("Arguments", {}),
                              files={uploader["FileFormName"]: ("shot.png", picture, "image/png")},
                              timeout=30)
    assert answer.status_code == 200 and not answer.cookies
    body = answer.json()
    url = sharex_fill(uploader["URL"], body)
    assert requests.get(url, timeout=10).content == picture
    assert requests.get(sharex_fill(uploader["ThumbnailURL"], body), timeout=10).status_code == 200
    before = rows(site)
    assert requests.get(sharex_fill(uploader["DeletionURL"], body), timeout=10).status_code == 200  # the page
    assert rows(site) == before  # opening the delete page deletes nothing


def test_curl_uploads_and_deletes_as_before(site: LiveServer, tmp_path: Path) -> None:
    picture = tmp_path / "f.png"
    picture.write_bytes(media.png(80, 60))
    done = curl("-H", f"X-API-Key: {site.key}", "-F", f"source=@{picture}", f"{site.url}/api/1/upload")
    assert done.returncode == 0, done.stdout + done.stderr
    answer = json.loads(done.stdout)
    assert answer["status_code"] == 200 and answer["status_txt"] == "OK"
    image = answer["image"]
    assert (image["width"], image["height"]) == (80, 60)
    assert requests.get(image["url"], timeout=10).content == picture.read_bytes()

    # the key as a parameter, and the plain-text answer
    text = curl("-F", f"key={site.key}", "-F", f"source=@{picture}", "-F", "format=txt",
                f"{site.url}/api/1/upload")
    assert text.returncode == 0 and re.fullmatch(r"http://127\.0\.0\.1:\d+/\S+\.png", text.stdout.strip())

    before = rows(site)
    gone = curl("-X", "DELETE", image["delete_url"])
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert rows(site) == before - 1
    assert requests.get(image["url"], timeout=10).status_code == 404
    again = curl("-X", "DELETE", image["delete_url"])
    assert again.returncode != 0  # a second time: not found


def test_a_key_beside_a_session_cookie_acts_for_the_key_alone(site: LiveServer) -> None:
    http, _ = sign_in(site.url, "ann")
    answer = http.post(f"{site.url}/api/1/upload", headers={"X-API-Key": site.key},
                       files={"source": ("k.png", media.png(10, 10), "image/png")}, timeout=30)
    assert answer.status_code == 200
    owner = site.query("SELECT users.name FROM uploads JOIN users ON users.id = uploads.user_id "
                       "ORDER BY uploads.id DESC LIMIT 1")
    assert owner == [("admin",)]  # the key's owner, not the signed-in ann


def test_a_get_with_a_valid_session_cookie_uploads_nothing(site: LiveServer) -> None:
    http, token = sign_in(site.url, "ann")
    before = rows(site)
    source = "data:image/png;base64,"  # never reached: the request is refused before any source
    for headers in ({}, {"X-CSRFToken": token}):
        answer = http.get(f"{site.url}/api/1/upload", params={"source": source, "csrf_token": token},
                          headers=headers, timeout=30)
        assert answer.status_code == 401
        assert answer.json()["status_code"] == 401
    assert rows(site) == before
