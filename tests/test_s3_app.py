"""imgz on a real S3 server (SeaweedFS) with SQLite: uploads, files, deletes, IMGZ_PUBLIC_URL,
check --repair, and a store that cannot be reached."""
from __future__ import annotations

import hashlib
import time
from datetime import timedelta

import pytest

import media
from commands import run_command
from contract import assert_upload_ok
from imgz import repair
from imgz.service import Service


@pytest.fixture
def png() -> bytes:
    return media.png(600, 400)


def _key(url: str) -> str:
    return url.split("/images/", 1)[1]


def test_upload_serve_and_delete_through_the_bucket(make_app, s3, png):
    srv = make_app(**s3.settings())
    image = assert_upload_ok(srv.upload(png, filename="cat.png"))
    assert image["url"].startswith("http://localhost/images/"), "file URLs stay the app's own"
    keys = [_key(image[v]["url"]) for v in ("image", "thumb", "medium")]
    assert s3.keys() == sorted(s3.prefix + key for key in keys)
    assert srv.local_files() == [], "nothing on the local disk"
    assert srv.tmp_files() == []
    got = srv.get(image["url"])
    assert got.status_code == 200 and hashlib.md5(got.content).hexdigest() == image["checksum"]
    assert got.headers["Content-Type"] == "image/png"
    assert srv.get(image["thumb"]["url"]).status_code == 200
    deleted = srv.delete(image["delete_url"], headers={"Accept": "application/json"})
    assert deleted.status_code == 200, deleted.text
    assert s3.keys() == [] and srv.rows() == 0
    assert srv.get(image["url"]).status_code == 404


CASES = [
    ({}, "whole"),
    ({"Range": "bytes=10-19"}, "range"),
    ({"Range": "bytes=-5"}, "suffix"),
    ({"Range": "bytes=999999-"}, "unsatisfiable"),
    ({"If-None-Match": "ETAG"}, "same etag"),
    ({"If-None-Match": '"other"'}, "other etag"),
    ({"If-Modified-Since": "LASTMOD"}, "not modified since"),
    ({"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}, "modified since"),
    ({"Range": "bytes=0-9", "If-Range": "ETAG"}, "if-range holds"),
    ({"Range": "bytes=0-9", "If-Range": '"old"'}, "if-range fails"),
    ({"Sec-Fetch-Dest": "document"}, "document"),
]


def test_files_from_the_bucket_answer_as_local_files_do(make_app, s3, png):
    """The same requests get the same statuses, headers and bytes from both stores."""
    local, remote = make_app(), make_app(**s3.settings())
    answers = {}
    for name, srv in (("local", local), ("s3", remote)):
        image = assert_upload_ok(srv.upload(png))
        first = srv.get(image["url"])
        seen = []
        for headers, case in CASES:
            sent = {k: v.replace("ETAG", first.headers["ETag"])
                    .replace("LASTMOD", first.headers["Last-Modified"]) for k, v in headers.items()}
            got = srv.get(image["url"], headers=sent)
            head = srv.head(image["url"], headers=sent)
            seen.append((case, got.status_code, sorted(h.lower() for h in got.headers), got.content,
                         {k: v for k, v in got.headers.items() if k.lower() not in {"etag", "last-modified", "date"}},
                         head.status_code, head.headers.get("Content-Length")))
        answers[name] = seen
    for local_case, s3_case in zip(answers["local"], answers["s3"]):
        assert local_case == s3_case, local_case[0]
    statuses = {case: status for case, status, *_ in answers["s3"]}
    assert statuses == {"whole": 200, "range": 206, "suffix": 206, "unsatisfiable": 416,
                        "same etag": 304, "other etag": 200, "not modified since": 304,
                        "modified since": 200, "if-range holds": 206, "if-range fails": 200,
                        "document": 200}


def test_a_public_url_takes_answers_and_pages_to_the_objects(make_app, s3, png):
    srv = make_app(**s3.settings(public_url="https://cdn.example.org/media/"))
    base = f"https://cdn.example.org/media/{s3.prefix}"
    image = assert_upload_ok(srv.upload(png, expiration="PT1H"))
    for url in (image["url"], image["image"]["url"], image["thumb"]["url"], image["medium"]["url"],
                image["display_url"]):
        assert url.startswith(base + "20"), url
        key = url[len("https://cdn.example.org/media/"):]
        head = s3.client.head_object(Bucket=s3.name, Key=key)
        max_age = int(head["CacheControl"].split("max-age=")[1])
        assert 3500 <= max_age <= 3600, "no longer than the upload's lifetime"
    page = srv.get(image["url_viewer"].replace("http://localhost", ""))
    assert page.status_code == 200 and image["display_url"] in page.text
    assert "http://localhost/images/" not in page.text
    # the app still serves its own /images/ URL of the file
    assert srv.get(f"/images/{image['url'][len(base):]}").status_code == 200
    kept = assert_upload_ok(srv.upload(media.png(50, 40)))
    head = s3.client.head_object(Bucket=s3.name, Key=kept["url"][len("https://cdn.example.org/media/"):])
    assert head["CacheControl"] == "public, max-age=31536000, immutable"
    # the command line takes an upload by its public file URL too
    taken = srv.command("upload", "delete", kept["url"])
    assert taken.returncode == 0, taken.stderr
    assert srv.get(kept["url_viewer"].replace("http://localhost", "")).status_code == 404


def test_check_pages_through_the_bucket_and_spares_uploads_in_flight(make_app, s3, png):
    srv = make_app(**s3.settings())
    image = assert_upload_ok(srv.upload(png))
    folder = _key(image["url"]).rsplit("/", 1)[0]
    s3.client.put_object(Bucket=s3.name, Key=f"{s3.prefix}{folder}/planted.png", Body=b"nobody's")
    s3.client.create_multipart_upload(Bucket=s3.name, Key=f"{s3.prefix}{folder}/killed.mp4")
    env = {f"IMGZ_{k.upper()}": str(v) for k, v in s3.settings().items()}
    young = run_command("--data", str(srv.data), "check", "--repair", env=env)
    assert young.returncode == 0, young.stdout + young.stderr
    assert "planted" not in young.stdout, "a file younger than an hour may be an upload in flight"
    assert f"{s3.prefix}{folder}/planted.png" in s3.keys()
    assert s3.unfinished() == [f"{s3.prefix}{folder}/killed.mp4"]
    later = srv.service.now() + timedelta(hours=1, minutes=1)
    service = Service(srv.config, srv.flask.config["IMGZ_CONNECTIONS"].get, lambda: later)
    found = repair.check(service, repair=True)
    assert found.orphans == [f"{folder}/planted.png"] and found.broken == []
    assert f"{s3.prefix}{folder}/planted.png" not in s3.keys()
    assert s3.unfinished() == []
    assert len(s3.keys()) == 3 and srv.get(image["url"]).status_code == 200


def test_check_finds_a_missing_object(make_app, s3, png):
    srv = make_app(**s3.settings())
    image = assert_upload_ok(srv.upload(png))
    s3.client.delete_object(Bucket=s3.name, Key=s3.prefix + _key(image["thumb"]["url"]))
    env = {f"IMGZ_{k.upper()}": str(v) for k, v in s3.settings().items()}
    result = run_command("--data", str(srv.data), "check", env=env)
    assert result.returncode == 1 and "missing variant" in result.stdout
    assert run_command("--data", str(srv.data), "check", "--repair", env=env).returncode == 0
    assert srv.get(image["thumb"]["url"]).status_code == 200


def test_an_unreachable_store_gives_503_and_stores_nothing(make_app, s3, tmp_path, png, caplog):
    """Its own SeaweedFS, killed mid-test: uploads and file requests get 503 (Chevereto's error
    shape for the API), nothing is half-stored, and all is well again once it is back."""
    from s3server import ACCESS_KEY, SECRET_KEY, WeedServer, new_bucket, weed_binary

    own = WeedServer(weed_binary(), tmp_path / "weed")
    try:
        bucket = new_bucket(own).fresh()
        srv = make_app(**bucket.settings())
        image = assert_upload_ok(srv.upload(png))
        own.stop()
        refused = srv.upload(media.png(300, 200))
        assert refused.status_code == 503, refused.text
        body = refused.json()
        assert body["status_code"] == 503 and body["status_txt"] == "Service Unavailable"
        assert body["error"]["code"] == 503 and "retry" in body["error"]["message"]
        assert int(refused.headers["Retry-After"]) > 0
        assert srv.rows() == 1 and srv.tmp_files() == []
        for url in (image["url"], image["thumb"]["url"]):
            got = srv.get(url)
            assert got.status_code == 503 and int(got.headers["Retry-After"]) > 0
            assert ACCESS_KEY not in got.text and SECRET_KEY not in got.text
        assert "object store" in caplog.text, "the store's own words go to the log"
        assert ACCESS_KEY not in caplog.text and SECRET_KEY not in caplog.text
        assert ACCESS_KEY not in refused.text and SECRET_KEY not in refused.text
        own = WeedServer(weed_binary(), tmp_path / "weed", ports=own.ports)
        # its S3 port answers before its volumes are back: the same app answers 200 once they are
        deadline = time.monotonic() + 30
        while srv.get(image["url"]).status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert srv.get(image["url"]).status_code == 200, "back by itself"
        assert bucket.keys() == sorted(bucket.prefix + _key(image[v]["url"])
                                       for v in ("image", "thumb", "medium"))
        assert_upload_ok(srv.upload(media.png(300, 200)))
    finally:
        own.stop()


def test_a_move_off_the_bucket_leaves_nothing_in_the_source_data_dir(make_app, s3, png, tmp_path):
    srv = make_app(**s3.settings())
    image = assert_upload_ok(srv.upload(png))
    before = sorted(p.relative_to(srv.data) for p in srv.data.rglob("*") if p.is_file())
    target = tmp_path / "moved"
    moved = srv.command("migrate", "--to-database", str(target / "imgz.db"), "--to-storage", "local",
                        "--to-data", str(target))
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert (target / "images" / _key(image["url"])).read_bytes() == srv.stored_bytes(image["url"])
    after = sorted(p.relative_to(srv.data) for p in srv.data.rglob("*") if p.is_file())
    assert [p for p in after if p.parts[0] != "tmp"] == [p for p in before if p.parts[0] != "tmp"]
    assert not (srv.data / "cache").exists(), "no copies of the bucket's files made by the move"
