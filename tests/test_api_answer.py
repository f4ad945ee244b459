"""The answer's shape (SPEC §4) and the files it points at, through the app."""
from __future__ import annotations

import hashlib
import io
import re
import threading

import pytest
from PIL import Image

import media
from contract import EXAMPLE, assert_image_object, assert_upload_ok

KINDS = {
    "png": lambda: media.png(1920, 1080),
    "jpeg": lambda: media.jpeg(1920, 1080),
    "gif-animated": lambda: media.gif(120, 90, frames=4),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_key_with_its_type(server, kind):
    image = assert_upload_ok(server.upload(KINDS[kind](), filename=f"sample.{kind[:4]}"))
    assert_image_object(image)


@pytest.mark.parametrize("kind", list(KINDS))
def test_keys_of_the_documented_example(server, kind):
    image = assert_upload_ok(server.upload(KINDS[kind]()))
    expected = set(EXAMPLE["image"]) - {"frame"}
    assert expected <= set(image), sorted(expected - set(image))
    for key in ("image", "thumb"):
        assert set(EXAMPLE["image"][key]) == set(image[key])
    assert set(EXAMPLE) == {"status_code", "success", "image", "status_txt"}


def test_values_for_a_png(server):
    data = media.png(1920, 1080)
    image = assert_upload_ok(server.upload(data, filename="Screen Shot.png"))
    assert image["extension"] == "png" and image["mime"] == "image/png"
    assert image["size"] == len(data)
    assert image["checksum"] == hashlib.md5(data).hexdigest() and image["source_checksum"] is None
    assert image["chain"] == 7 and image["type"] == "image" and image["duration"] == 0
    assert image["is_animated"] == 0 and image["is_360"] == 0 and image["is_approved"] == 1
    assert image["ratio"] == pytest.approx(1920 / 1080)
    assert image["storage_mode"] == "datefolder"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", image["date"])
    assert image["date_fixed_peer"] == image["date_gmt"]
    assert image["how_long_ago"] == "moments ago"
    assert image["views_label"] == "views" and image["likes_label"] == "likes"
    assert image["url_frame"] == "" and image["duration_time"] == ""
    assert image["display_url"] == image["medium"]["url"]
    assert (image["display_width"], image["display_height"]) == (500, 281)
    assert re.fullmatch(r"[0-9A-Za-z]{8}", image["id_encoded"])
    assert image["url_short"] == f"{server.url}/image/{image['id_encoded']}"
    assert image["url_viewer"] == f"{server.url}/image/Screen-Shot.{image['id_encoded']}"
    assert image["path_viewer"] == f"/image/Screen-Shot.{image['id_encoded']}"
    assert re.fullmatch(re.escape(image["url_short"]) + r"/delete/[0-9a-f]{32,}", image["delete_url"])
    date_path = image["date"][:10].replace("-", "/")
    assert image["url"] == f"{server.url}/images/{date_path}/{image['filename']}"
    assert re.fullmatch(r"Screen-Shot-[0-9A-Za-z]{8}", image["name"])


def test_animated_gif_has_animated_medium_and_static_thumb(server):
    image = assert_upload_ok(server.upload(media.gif(120, 90, frames=4)))
    assert image["is_animated"] == 1 and image["chain"] == 7
    medium = Image.open(io.BytesIO(server.get(image["medium"]["url"]).content))
    assert medium.n_frames == 4
    thumb = Image.open(io.BytesIO(server.get(image["thumb"]["url"]).content))
    assert getattr(thumb, "n_frames", 1) == 1 and thumb.size == (90, 90)


@pytest.mark.parametrize("size,thumb,medium", [
    ((1920, 1080), (320, 320), (500, 281)),
    ((300, 200), (200, 200), None),
    ((600, 300), (300, 300), (500, 250)),
    ((400, 1200), (320, 320), None),
])
def test_files_download_at_the_promised_sizes(server, size, thumb, medium):
    data = media.png(*size)
    image = assert_upload_ok(server.upload(data))
    original = server.get(image["url"])
    assert original.status_code == 200 and original.content == data
    assert hashlib.md5(original.content).hexdigest() == image["checksum"]
    assert Image.open(io.BytesIO(original.content)).size == size
    got_thumb = server.get(image["thumb"]["url"])
    assert Image.open(io.BytesIO(got_thumb.content)).size == thumb
    assert len(got_thumb.content) == image["thumb_size"] == image["thumb"]["size"]
    if medium is None:
        assert image["medium_size"] == 0 and image["medium"]["url"] is None
        assert image["chain"] == 5
        assert image["display_url"] == image["url"]
    else:
        got = server.get(image["medium"]["url"])
        assert Image.open(io.BytesIO(got.content)).size == medium
        assert len(got.content) == image["medium_size"]
        assert image["chain"] == 7


def test_files_are_served_with_type_and_safety_headers(server):
    image = assert_upload_ok(server.upload(media.jpeg(700, 400)))
    for url, mime in ((image["url"], "image/jpeg"), (image["thumb"]["url"], "image/jpeg"),
                      (image["medium"]["url"], "image/jpeg")):
        response = server.get(url)
        assert response.headers["Content-Type"] == mime
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
        assert "immutable" in response.headers["Cache-Control"]
        etag = response.headers["ETag"]
        assert server.get(url, headers={"If-None-Match": etag}).status_code == 304
        part = server.get(url, headers={"Range": "bytes=0-9"})
        assert part.status_code == 206 and part.content == response.content[:10]


@pytest.mark.parametrize("path", ["/images/2020/01/01/nothing.png", "/images/../imgz.db",
                                  "/images/%2e%2e/imgz.db", "/images/2020/01/01/..%2f..%2fimgz.db"])
def test_unknown_or_escaping_file_paths_are_404(server, path):
    assert server.get(path).status_code == 404


def test_jpeg_metadata_removed_losslessly(server):
    icc = media.icc_profile()
    data = media.jpeg(320, 240, exif=media.exif_bytes(gps=(51.5, -0.12), make="Phone"),
                      xmp=media.xmp_packet(title="secret place"), comment=b"a comment", icc=True)
    data += b"TRAILING second image or video"
    image = assert_upload_ok(server.upload(data, filename="phone.jpg", title="t"))
    stored = server.get(image["url"]).content
    assert image["source_checksum"] == hashlib.md5(data).hexdigest()
    assert image["checksum"] == hashlib.md5(stored).hexdigest()
    sos = data.index(b"\xff\xda")
    eoi = data.rindex(b"\xff\xd9", 0, data.index(b"TRAILING")) + 2
    assert stored.endswith(data[sos:eoi]), "compressed image data must be byte-identical"
    im = Image.open(io.BytesIO(stored))
    assert not im.getexif() and "xmp" not in im.info and "comment" not in im.info
    assert im.info["icc_profile"] == icc
    assert b"TRAILING" not in stored and b"Phone" not in stored


def test_rotated_jpeg_is_stored_upright_without_exif(server):
    data = media.jpeg(80, 40, orientation=6)
    image = assert_upload_ok(server.upload(data, filename="rot.jpg"))
    assert (image["width"], image["height"]) == (40, 80)
    im = Image.open(io.BytesIO(server.get(image["url"]).content))
    assert im.size == (40, 80) and not im.getexif()
    assert image["source_checksum"] == hashlib.md5(data).hexdigest()


def test_png_text_and_exif_removed_pixels_and_icc_kept(server):
    data = media.png(64, 48, text={"Comment": "where I live"}, exif=media.exif_bytes(gps=(1.0, 2.0)),
                     icc=True)
    image = assert_upload_ok(server.upload(data))
    stored = server.get(image["url"]).content
    im = Image.open(io.BytesIO(stored))
    assert b"eXIf" not in stored and b"iTXt" not in stored and b"tEXt" not in stored
    assert im.info["icc_profile"] == media.icc_profile()
    assert im.tobytes() == Image.open(io.BytesIO(data)).tobytes()


def test_webp_exif_removed_pixels_and_icc_kept(server):
    data = media.webp(64, 48, exif=media.exif_bytes(gps=(1.0, 2.0)), icc=True)
    image = assert_upload_ok(server.upload(data))
    stored = server.get(image["url"]).content
    im = Image.open(io.BytesIO(stored))
    assert b"EXIF" not in stored and not im.getexif()
    assert im.info["icc_profile"] == media.icc_profile()
    assert im.convert("RGB").tobytes() == Image.open(io.BytesIO(data)).convert("RGB").tobytes()


def test_eight_concurrent_uploads_with_one_name(server):
    datas = [media.png(50 + i, 40, ) for i in range(8)]
    answers: list = [None] * 8

    def send(i: int) -> None:
        answers[i] = server.upload(datas[i], filename="shot.png")

    threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    images = [assert_upload_ok(a) for a in answers]
    assert len({img["url"] for img in images}) == 8
    for data, img in zip(datas, images):
        assert server.get(img["url"]).content == data


def test_a_name_that_looks_like_a_variant_does_not_collide(server, make_app):
    srv = make_app(filenaming="original")
    first = assert_upload_ok(srv.upload(media.png(600, 400), filename="photo.png"))
    second = assert_upload_ok(srv.upload(media.png(30, 30), filename="photo.th.png"))
    assert first["name"] == "photo"
    assert second["name"] == "phototh"
    assert srv.get(first["thumb"]["url"]).content != srv.get(second["url"]).content
    again = assert_upload_ok(srv.upload(media.png(20, 20), filename="photo.png"))
    assert again["name"].startswith("photo-") and again["url"] != first["url"]


@pytest.mark.parametrize("mode,pattern", [("mixed", r"shot-[0-9A-Za-z]{8}"), ("original", r"shot"),
                                          ("random", r"[0-9A-Za-z]{16}")])
def test_file_naming_modes(make_app, mode, pattern):
    srv = make_app(filenaming=mode)
    image = assert_upload_ok(srv.upload(media.png(20, 20), filename="shot.png"))
    assert re.fullmatch(pattern, image["name"])


def test_equirectangular_photo_is_360(server):
    data = media.jpeg(400, 200, xmp=media.xmp_packet(projection="equirectangular"))
    image = assert_upload_ok(server.upload(data, filename="pano.jpg"))
    assert image["is_360"] == 1
    assert assert_upload_ok(server.upload(media.jpeg(400, 200)))["is_360"] == 0
