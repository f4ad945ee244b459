"""End to end: each source form and answer format through the app and its HTTP answers."""
from __future__ import annotations

import base64
import hashlib
import io

import pytest
from PIL import Image

import media
from contract import assert_image_object, assert_upload_ok

PNG = media.png(64, 48)


def _send(server, webhost, form: str, fmt: str | None, name: str = "pic.png"):
    extra = {"format": fmt} if fmt else {}
    if form == "file":
        return server.upload(PNG, filename=name, **extra)
    if form == "base64":
        return server.upload(base64.b64encode(PNG).decode(), **extra)
    url = webhost.add(f"/src/{form}-{fmt}/{name}", body=PNG, content_type="image/png")
    return server.upload(url, **extra)


@pytest.mark.parametrize("form", ["file", "base64", "url"])
def test_json_answer_for_each_source(server, webhost, form):
    image = assert_upload_ok(_send(server, webhost, form, "json"))
    assert_image_object(image)
    assert (image["width"], image["height"]) == (64, 48)
    assert image["checksum"] == hashlib.md5(PNG).hexdigest()


@pytest.mark.parametrize("form", ["file", "base64", "url"])
def test_txt_answer_is_the_bare_url(server, webhost, form):
    response = _send(server, webhost, form, "txt")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.text.startswith(server.url + "/images/") and not response.text.endswith("\n")
    assert server.get(response.text).content == PNG


@pytest.mark.parametrize("form", ["file", "base64", "url"])
def test_redirect_answer_points_at_the_viewer(server, webhost, form):
    response = _send(server, webhost, form, "redirect")
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith("/image/")
    page = server.get(location)
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]


def test_unknown_format_answers_json(server):
    assert_upload_ok(server.upload(PNG, format="xml"))


def test_url_source_keeps_the_url_file_name(server, webhost):
    image = assert_upload_ok(_send(server, webhost, "url", None, name="Holiday%20Photo.png"))
    assert image["original_filename"] == "Holiday Photo.png"
    assert image["title"] == "Holiday Photo"


def test_base64_source_is_named_by_the_server(server):
    image = assert_upload_ok(server.upload(base64.b64encode(PNG).decode()))
    assert image["original_filename"] == image["filename"]
    assert image["title"] == image["name"]


@pytest.mark.parametrize("encode", [
    pytest.param(lambda b: "data:image/png;base64," + base64.b64encode(b).decode(), id="data-uri"),
    pytest.param(lambda b: base64.urlsafe_b64encode(b).decode().rstrip("="), id="urlsafe-unpadded"),
    pytest.param(lambda b: "\n".join(base64.b64encode(b).decode()[i:i + 76]
                                      for i in range(0, len(base64.b64encode(b)), 76)), id="wrapped"),
])
def test_base64_variants_are_accepted(server, encode):
    image = assert_upload_ok(server.upload(encode(PNG)))
    assert image["checksum"] == hashlib.md5(PNG).hexdigest()


@pytest.mark.parametrize("path", ["/api/1/upload", "/api/1/upload/"])
@pytest.mark.parametrize("method", ["POST", "GET"])
def test_both_paths_and_methods(server, path, method):
    if method == "GET":
        response = server.upload(api_key=None, path=path, method="GET",
                                 params={"key": server.key, "source": base64.b64encode(PNG).decode()})
    else:
        response = server.upload(PNG, path=path)
    assert_upload_ok(response)


def test_key_as_form_field(server):
    assert_upload_ok(server.upload(PNG, api_key=None, key=server.key))


def test_key_in_query_string(server):
    assert_upload_ok(server.upload(PNG, api_key=None, params={"key": server.key}))


def test_file_part_without_content_type(server):
    boundary = "imgzboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"source\"; filename=\"a.png\"\r\n\r\n"
            ).encode() + PNG + f"\r\n--{boundary}--\r\n".encode()
    response = server.post("/api/1/upload", data=body, timeout=30,
                             headers={"X-API-Key": server.key,
                                      "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert_upload_ok(response)


def test_file_part_with_a_lying_content_type(server):
    image = assert_upload_ok(server.upload(PNG, filename="x.gif", content_type="text/html"))
    assert image["mime"] == "image/png" and image["extension"] == "png"


def test_upload_paths_never_redirect(server):
    for path in ("/api/1/upload", "/api/1/upload/"):
        response = server.upload(PNG, path=path)
        assert response.status_code == 200 and "Location" not in response.headers


def test_body_value_wins_over_query_string(server):
    image = assert_upload_ok(server.upload(PNG, params={"title": "from query"}, title="from body"))
    assert image["title"] == "from body"


def test_an_empty_body_value_leaves_the_query_strings(server):
    image = assert_upload_ok(server.upload(PNG, params={"title": "from query", "tags": "q"},
                                           title="", tags="0"))
    assert image["title"] == "from query" and image["tags_string"] == "q"


def test_a_zero_flag_in_the_body_still_says_no(server):
    image = assert_upload_ok(server.upload(PNG, params={"nsfw": "1"}, nsfw="0"))
    assert image["nsfw"] == 0


def test_an_empty_key_field_leaves_the_query_strings_key(server):
    response = server.upload(PNG, api_key=None, params={"key": server.key}, key="")
    assert_upload_ok(response)


def test_tags_zero_is_no_tags(server):
    image = assert_upload_ok(server.upload(PNG, tags="0"))
    assert image["tags"] == [] and image["tags_string"] == ""


@pytest.mark.parametrize("source", ["", "0"])
def test_an_absent_source_lets_the_imgbb_image_count(server, source):
    response = server.post("/api/1/upload", headers={"X-API-Key": server.key},
                             data={"source": source, "image": base64.b64encode(PNG).decode()},
                             timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["success"] is True


def test_imgbb_aliases_answer_in_imgbb_envelope(server):
    response = server.upload(PNG, field="image", name="Via imgBB")
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True and body["status"] == 200
    data = body["data"]
    assert_image_object({k: v for k, v in data.items() if k not in {"id", "time", "expiration"}})
    assert data["title"] == "Via imgBB"
    assert data["id"] == data["id_encoded"]
    assert isinstance(data["time"], int) and data["expiration"] == 0


def test_parameters_title_description_tags_nsfw(server):
    image = assert_upload_ok(server.upload(
        PNG, title="  My\x07 <b>shot</b>  ", description="line one\nline\x00 two",
        tags="cats, Dogs ,cats,, a/b, #x, " + "y" * 33 + ", big  fluffy   cat", nsfw="1"))
    assert image["title"] == "My <b>shot</b>"
    assert image["description"] == "line one\nline two"
    assert [t["name"] for t in image["tags"]] == ["cats", "Dogs", "big fluffy cat"]
    assert image["tags_string"] == "cats, Dogs, big fluffy cat"
    assert image["tags"][2]["url_key"] == "big-fluffy-cat"
    assert image["tags"][2]["url"] == server.url + "/tag/big-fluffy-cat"
    assert image["nsfw"] == 1
    assert image["title_truncated_html"] == "My &lt;b&gt;shot&lt;/b&gt;"


def test_title_is_cut_to_100_characters(server):
    image = assert_upload_ok(server.upload(PNG, title="x" * 300))
    assert image["title"] == "x" * 100
    assert image["title_truncated"] == "x" * 25 + "..."


def test_title_from_file_name(server):
    image = assert_upload_ok(server.upload(PNG, filename="Badgers _ animated music video _ MrWeebl.png"))
    assert image["title"] == "Badgers animated music video MrWeebl"
    assert image["original_filename"] == "Badgers _ animated music video _ MrWeebl.png"
    assert image["name"].startswith("Badgers-animated-music-video-MrWeebl-")
    assert image["path_viewer"] == f"/image/Badgers-animated-music-video-MrWeebl.{image['id_encoded']}"


def test_title_from_metadata(server):
    data = media.jpeg(40, 30, xmp=media.xmp_packet(title="Sunset at sea", description="Warm evening"))
    image = assert_upload_ok(server.upload(data, filename="DSC0001.jpg"))
    assert image["title"] == "Sunset at sea"
    assert image["description"] == "Warm evening"
    assert image["extension"] == "jpg"


def test_width_scales_down(server):
    image = assert_upload_ok(server.upload(media.png(1000, 500), width="400"))
    assert (image["width"], image["height"]) == (400, 200)
    assert image["source_checksum"] is not None and image["source_checksum"] != image["checksum"]
    stored = Image.open(io.BytesIO(server.get(image["url"]).content))
    assert stored.size == (400, 200)


def test_width_at_or_above_original_keeps_it(server):
    image = assert_upload_ok(server.upload(PNG, width="640"))
    assert (image["width"], image["height"]) == (64, 48)
    assert image["source_checksum"] is None


def test_a_bmp_is_stored_as_png(server):
    image = assert_upload_ok(server.upload(media.bmp(30, 20), filename="old.bmp"))
    assert image["extension"] == "png" and image["mime"] == "image/png"
    assert image["source_checksum"] is not None
    assert Image.open(io.BytesIO(server.get(image["url"]).content)).format == "PNG"


def test_wrong_key_is_refused_in_txt_format_with_bare_message(server):
    response = server.upload(PNG, api_key="imgz_nope", format="txt")
    assert response.status_code == 401
    assert response.text == "Invalid API key."


@pytest.mark.local_only  # file modes on this machine's disk
def test_stored_files_follow_the_umask(tmp_path):
    """Every stored file gets 0666 less the process umask: a JPEG original, stripped of its
    metadata as it arrived, used to keep the 0600 of its spool file, which a front server running
    as another user (nginx's www-data) cannot send."""
    from conftest import LiveServer

    srv = LiveServer(tmp_path / "d", prefix=["sh", "-c", 'umask 022 && exec "$@"', "sh"])
    try:
        photo = media.jpeg(64, 48, exif=media.exif_bytes(make="Phone"))
        for data, name in ((photo, "photo.jpg"), (PNG, "pic.png"), (media.video("mp4"), "clip.mp4")):
            assert_upload_ok(srv.upload(data, filename=name))
        modes = {path: srv.stored_mode(path) for path in srv.stored_files()}
    finally:
        srv.stop()
    originals = [path for path in modes if path.count(".") == 1]
    assert sorted(path.rpartition(".")[2] for path in originals) == ["jpg", "mp4", "png"]
    assert modes == dict.fromkeys(modes, 0o644)
