"""Copies of the bucket's files on this host (IMGZ_S3_CACHE_MB) through the app, on a real
SeaweedFS: answered as the bucket's own, never for a deleted upload, whatever process deleted it."""
from __future__ import annotations

import hashlib

import media
from contract import assert_upload_ok

SAME = ("Content-Type", "Content-Length", "ETag", "Last-Modified", "Cache-Control",
        "Content-Security-Policy", "X-Content-Type-Options")


def copies(srv) -> list[str]:
    folder = srv.data / "cache"
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_file() and ".tmp" not in p.parts)


def test_a_file_read_once_is_answered_from_its_copy_as_from_the_bucket(make_app, s3):
    srv = make_app(**s3.settings())
    image = assert_upload_ok(srv.upload(media.png(600, 400)))
    key = image["url"].split("/images/", 1)[1]
    assert copies(srv) == []
    assert srv.head(image["url"]).status_code == 200
    part = srv.get(image["url"], headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and copies(srv) == [], "a HEAD or a range makes no copy"
    first = srv.get(image["url"])
    assert first.status_code == 200 and copies(srv) == [key]
    assert hashlib.md5(first.content).hexdigest() == image["checksum"]

    s3.client.delete_object(Bucket=s3.name, Key=s3.prefix + key)  # the bucket is not asked again
    second = srv.get(image["url"])
    assert second.status_code == 200 and second.content == first.content
    assert {h: second.headers.get(h) for h in SAME} == {h: first.headers.get(h) for h in SAME}
    ranged = srv.get(image["url"], headers={"Range": "bytes=10-19"})
    assert ranged.status_code == 206 and ranged.content == first.content[10:20]
    same = srv.get(image["url"], headers={"If-None-Match": first.headers["ETag"]})
    assert same.status_code == 304

    deleted = srv.delete(image["delete_url"], headers={"Accept": "application/json"})
    assert deleted.status_code == 200
    assert copies(srv) == [] and srv.get(image["url"]).status_code == 404


def test_no_copies_with_a_budget_of_nothing(make_app, s3):
    srv = make_app(**s3.settings(), s3_cache_mb="0")
    image = assert_upload_ok(srv.upload(media.png(600, 400)))
    assert srv.get(image["url"]).status_code == 200
    assert not (srv.data / "cache").exists()


def test_a_copy_of_an_upload_deleted_through_another_process_is_never_served_and_goes(
        make_app, s3, pg_url):
    here = make_app(**s3.settings(), database_url=pg_url)
    there = make_app(**s3.settings(), database_url=pg_url)
    there.key = here.key
    image = assert_upload_ok(here.upload(media.png(600, 400)))
    kept = assert_upload_ok(here.upload(media.png(500, 300)))
    for url in (image["url"], kept["url"]):
        assert here.get(url).status_code == 200
    assert len(copies(here)) == 2
    gone = there.delete(image["delete_url"], headers={"Accept": "application/json"})
    assert gone.status_code == 200
    assert here.get(image["url"]).status_code == 404, "the row decides, not the copy"
    assert here.service.prune_copies() == 1  # as each expiry sweep does
    assert copies(here) == [kept["url"].split("/images/", 1)[1]]
    assert here.get(kept["url"]).status_code == 200
