"""Bad input, one case per rule of SPEC §2: the precise error, and nothing stored."""
from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import zipfile

import pytest

import media
from contract import assert_error, assert_upload_ok
from inprocess import InProcess

RAW_BODY = ('Invalid form body: a urlencoded body must be UTF-8 text. Send a file as a multipart form '
            'field named source: curl -F "source=@file.png"')

LIMIT_MB = 1
PNG = media.png(32, 24)


@pytest.fixture(scope="module")
def strict(tmp_path_factory, webhost) -> InProcess:
    """An app with small limits so over-limit cases stay fast."""
    srv = InProcess(tmp_path_factory.mktemp("strict"), {
        "IMGZ_MAX_UPLOAD_MB": str(LIMIT_MB), "IMGZ_MAX_ANIMATION_PIXELS": "1000000",
        "IMGZ_URL_ALLOW_NETS": "127.0.0.1/32", "IMGZ_URL_TIMEOUT": "1"})
    yield srv
    srv.stop()


@pytest.fixture
def nothing_stored(strict):
    """Checks after the test that no row and no file (stored or temporary) was added."""
    rows, files = strict.rows(), strict.stored_files()
    yield
    assert strict.rows() == rows
    assert strict.stored_files() == files
    assert strict.tmp_files() == []


def _zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("a.txt", "hello")
    return out.getvalue()


def _pdf() -> bytes:
    return b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"


BAD_FILES = {
    "text": (b"just some text\n", 415, 612, "Invalid file type"),
    "html": (b"<!doctype html><script>alert(1)</script>", 415, 612, "Invalid file type"),
    "svg": (b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', 415, 612,
            "Invalid file type"),
    "pdf": (_pdf(), 415, 612, "Invalid file type"),
    "zip": (_zip(), 415, 612, "Invalid file type"),
    "php-named-jpg": (b"<?php system($_GET['c']); ?>", 415, 612, "Invalid file type"),
    "truncated-jpeg": (media.jpeg(200, 150)[:1500], 400, 400, "Invalid image"),
    "corrupt-png": (PNG[:40] + b"\x00" * 200 + PNG[240:], 400, 400, "Invalid image"),
    "png-60000x60000": (media.png_header(60000, 60000), 400, 400, "Image too large"),
    "gif-over-animation-limit": (media.gif(100, 100, frames=101), 400, 400, "Image too large"),
    "zero-bytes": (b"", 400, 130, "Empty upload source"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_file(strict, nothing_stored, case):
    data, status, code, message = BAD_FILES[case]
    assert_error(strict.upload(data, filename="x.jpg"), status, code, message)


@pytest.mark.parametrize("fields,status,code,message", [
    pytest.param({}, 400, 130, "Empty upload source", id="no-source"),
    pytest.param({"source": ""}, 400, 130, "Empty upload source", id="empty-source"),
    pytest.param({"source": "0"}, 400, 130, "Empty upload source", id="zero-source"),
    pytest.param({"source": "  "}, 400, 130, "Empty upload source", id="blank-source"),
    pytest.param({"source": "not base64!!"}, 400, 120, "Invalid base64 string", id="bad-base64"),
    pytest.param({"source": "ftp://example.com/a.png"}, 400, 120, "Invalid base64 string", id="ftp"),
    pytest.param({"source": "Zm9v="}, 415, 612, "Invalid file type", id="base64-of-text"),
])
def test_bad_source_value(strict, nothing_stored, fields, status, code, message):
    assert_error(strict.upload(**fields), status, code, message)


def test_a_file_sent_as_the_raw_body_hears_how_to_send_it(strict, nothing_stored, make_server, tmp_path):
    """``curl --data-binary @file`` sends the file as the whole body and calls it urlencoded."""
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    for data in (PNG, media.jpeg(40, 30), media.gif(30, 20, frames=2)):
        assert_error(strict.post("/api/1/upload", data=data, headers={**headers, "X-API-Key": strict.key}),
                     400, 400, RAW_BODY)
    if shutil.which("curl") is None:
        return
    live = make_server()  # what curl itself sends, to a real socket
    (tmp_path / "f.png").write_bytes(PNG)
    run = subprocess.run(["curl", "-sS", "--data-binary", "@f.png", "-H", f"X-API-Key: {live.key}",
                          "-w", "\n%{http_code}", live.url + "/api/1/upload"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=30)
    body, status = run.stdout.rsplit("\n", 1)
    assert status == "400" and json.loads(body) == {
        "status_code": 400, "error": {"message": RAW_BODY, "code": 400}, "status_txt": "Bad Request"}


@pytest.mark.parametrize("width", ["-5", "0", "1.5", "abc", "999999", "1e3", " "])
def test_bad_width(strict, nothing_stored, width):
    assert_error(strict.upload(PNG, width=width), 400, 400, "Invalid width")


def test_description_too_long(strict, nothing_stored):
    assert_error(strict.upload(PNG, description="d" * 10_001), 400, 400, "Description too long")


def test_description_of_exactly_the_limit_is_fine(strict):
    response = strict.upload(PNG, description="d" * 10_000)
    assert response.status_code == 200


@pytest.mark.parametrize("name,message", [("album_id", "Album not found"),
                                          ("category_id", "Invalid category")])
def test_unknown_album_or_category(strict, nothing_stored, name, message):
    assert_error(strict.upload(PNG, **{name: "abc"}), 400, 400, message)


def test_over_limit_file(strict, nothing_stored):
    data = b"\x89PNG\r\n\x1a\n" + b"\0" * (LIMIT_MB * 1_000_000)
    assert_error(strict.upload(data), 413, 400, f"File too big - max {LIMIT_MB} MB")


def test_over_limit_base64(strict, nothing_stored):
    data = b"\x89PNG\r\n\x1a\n" + b"\0" * (LIMIT_MB * 1_000_000)
    assert_error(strict.upload(base64.b64encode(data).decode()), 413, 400,
                 f"File too big - max {LIMIT_MB} MB")


def test_far_over_limit_base64_is_json_too(strict, nothing_stored):
    data = b"\0" * (LIMIT_MB * 1_000_000 * 2)
    assert_error(strict.upload(base64.b64encode(data).decode()), 413, 400)


@pytest.mark.parametrize("fmt", ["txt", "redirect"])
@pytest.mark.parametrize("where", ["before", "after"])
def test_over_limit_file_answers_in_the_body_format(strict, nothing_stored, fmt, where):
    """curl -F format=txt -F source=@big: the format field may come before or after the file."""
    data = b"\x89PNG\r\n\x1a\n" + b"\0" * (LIMIT_MB * 1_000_000)
    fields = [("format", (None, fmt)), ("source", ("big.png", data))]
    if where == "after":
        fields.reverse()
    response = strict.post("/api/1/upload", files=fields,
                             headers={"X-API-Key": strict.key}, timeout=30)
    assert response.status_code == 413
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.text == f"File too big - max {LIMIT_MB} MB"


@pytest.mark.parametrize("form", ["urlencoded", "multipart"])
def test_base64_far_over_the_limit_answers_in_the_body_format(strict, nothing_stored, form):
    encoded = base64.b64encode(b"\0" * (LIMIT_MB * 2_000_000)).decode()
    headers = {"X-API-Key": strict.key}
    if form == "urlencoded":
        response = strict.post("/api/1/upload", data={"format": "txt", "source": encoded},
                                 headers=headers, timeout=30)
    else:
        response = strict.post("/api/1/upload", headers=headers, timeout=30,
                                 files=[("format", (None, "txt")), ("source", (None, encoded))])
    assert (response.status_code, response.text) == (413, f"File too big - max {LIMIT_MB} MB")


def test_a_refused_clients_large_body_is_not_read(strict, nothing_stored):
    """Its format stays the query string's: the body was never parsed."""
    fields = [(f"f{i}", (None, "x" * 500_000)) for i in range(4)] + [("format", (None, "txt"))]
    response = strict.post("/api/1/upload", files=fields,
                             headers={"X-API-Key": "imgz_wrong"}, timeout=30)
    assert_error(response, 401, 100, "Invalid API key.")
    small = strict.post("/api/1/upload", files=[("format", (None, "txt"))],
                          headers={"X-API-Key": "imgz_wrong"}, timeout=30)
    assert (small.status_code, small.text) == (401, "Invalid API key.")


def test_body_far_over_the_limit_answers_in_the_body_format(strict, nothing_stored):
    data = b"\0" * (LIMIT_MB * 1_000_000 * 2)
    response = strict.upload(data, format="txt")
    assert (response.status_code, response.text) == (413, f"File too big - max {LIMIT_MB} MB")


def test_a_body_of_exactly_the_largest_size_is_read(strict):
    from imgz.body import body_limit

    def body(padding: int) -> bytes:
        return (b"--b0undary\r\nContent-Disposition: form-data; name=\"pad\"\r\n\r\n" + b"p" * padding
                + b"\r\n--b0undary\r\nContent-Disposition: form-data; name=\"source\"; filename=\"a.png\""
                + b"\r\n\r\n" + PNG + b"\r\n--b0undary--\r\n")
    largest = body_limit(LIMIT_MB * 1_000_000)
    data = body(largest - len(body(0)))
    assert len(data) == largest
    response = strict.post("/api/1/upload", data=data, timeout=30, headers={
        "X-API-Key": strict.key, "Content-Type": "multipart/form-data; boundary=b0undary"})
    assert_upload_ok(response)


def test_just_under_the_limit_is_accepted(strict):
    big = media.png(600, 560)  # noise does not compress: close to 1 MB
    assert len(big) < LIMIT_MB * 1_000_000
    assert strict.upload(big).status_code == 200


def test_missing_key(strict, nothing_stored):
    assert_error(strict.upload(PNG, api_key=None), 401, 100, "No key provided")


def test_wrong_key(strict, nothing_stored):
    assert_error(strict.upload(PNG, api_key="imgz_wrong"), 401, 100, "Invalid API key.")


def test_wrong_key_in_field(strict, nothing_stored):
    assert_error(strict.upload(PNG, api_key=None, key="imgz_wrong"), 401, 100, "Invalid API key.")


def test_revoked_key(strict):
    key = strict.command("key", "create", "--label", "soon revoked").stdout.strip()
    assert strict.upload(PNG, api_key=key).status_code == 200
    listing = strict.command("key", "list").stdout
    key_id = [line.split("\t")[0] for line in listing.splitlines() if "soon revoked" in line][0]
    assert strict.command("key", "revoke", key_id).returncode == 0
    rows = strict.rows()
    assert_error(strict.upload(PNG, api_key=key), 401, 100, "Invalid API key.")
    assert strict.rows() == rows


def test_use_file_date_needs_an_admin_key(strict, nothing_stored):
    strict.command("user", "add", "alice")
    key = strict.command("key", "create", "--user", "alice").stdout.strip()
    assert_error(strict.upload(PNG, api_key=key, use_file_date="1"), 403, 403)


@pytest.mark.parametrize("url", [
    "http://127.0.0.2:{port}/a.png",
    "http://[::1]:{port}/a.png",
    "http://[::ffff:127.0.0.2]:{port}/a.png",
    "http://10.0.0.1/a.png",
    "http://169.254.169.254/latest/meta-data",
    "http://2130706434:{port}/a.png",
    "http://0177.0.0.2:{port}/a.png",
    "http://0.0.0.0:{port}/a.png",
])
def test_url_to_private_address(strict, webhost, nothing_stored, url):
    response = strict.upload(url.format(port=webhost.port))
    assert_error(response, 400, 622, "Invalid image URL: address not allowed")


def test_url_redirecting_to_private_address(strict, webhost, nothing_stored):
    url = webhost.add("/jump.png", status=302, location=f"http://127.0.0.2:{webhost.port}/a.png")
    assert_error(strict.upload(url), 400, 622, "Invalid image URL: address not allowed")


def test_url_trickling_past_the_deadline(strict, webhost, nothing_stored):
    url = webhost.add("/slow.png", body=PNG, trickle=1.0)
    assert_error(strict.upload(url), 400, 622, "Invalid image URL: timed out")


def test_url_larger_than_the_limit(strict, webhost, nothing_stored):
    url = webhost.add("/huge.png", body=b"\0" * (LIMIT_MB * 1_000_000 + 10))
    assert_error(strict.upload(url), 400, 622, "Invalid image URL: too large")


def test_url_lying_about_its_length_never_gets_past_the_limit(strict, webhost, nothing_stored):
    # Announces 100 bytes and sends far more: only what was announced is read, which is no image.
    url = webhost.add("/liar.png", body=PNG + b"\0" * (LIMIT_MB * 1_000_000 + 10), content_length=100)
    response = strict.upload(url)
    assert response.status_code in {400, 415}
    assert response.json()["error"]["code"] in {400, 612}


def test_url_answering_404(strict, webhost, nothing_stored):
    assert_error(strict.upload(webhost.url("/missing.png")), 400, 622, "Invalid image URL: HTTP 404")


def test_url_sources_can_be_turned_off(make_app, webhost):
    srv = make_app(url_sources="0", url_allow_nets="127.0.0.1/32")
    url = webhost.add("/fine.png", body=PNG)
    assert_error(srv.upload(url), 400, 622)
    assert srv.rows() == 0


@pytest.mark.parametrize("method,path,status", [
    ("GET", "/api/1/nothing", 404),
    ("GET", "/api/2/upload", 404),
    ("PUT", "/api/1/upload", 405),
    ("DELETE", "/api/1/upload/", 405),
])
def test_framework_errors_on_api_paths_are_json(strict, method, path, status):
    response = strict.request(method, path, timeout=10)
    assert_error(response, status, status)


@pytest.mark.parametrize("path", ["/api/1/upload//", "/api/1//upload", "/api//1/upload/"])
def test_doubled_slashes_are_an_api_404_not_a_redirect(strict, nothing_stored, path):
    response = strict.upload(PNG, path=path)
    assert "Location" not in response.headers
    assert_error(response, 404, 404)


def test_server_still_answers_after_all_that(strict):
    assert strict.upload(PNG).status_code == 200
