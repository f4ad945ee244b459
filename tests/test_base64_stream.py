"""A long base64 source (past what is held as a string) keeps every rule of a short one.

Each case is sent as a multipart field without a file name and as a urlencoded body; the source
is longer than intake.HELD, so it is decoded as it arrives.
"""
from __future__ import annotations

import base64
import urllib.parse
import uuid

import pytest
import requests

import media
from contract import assert_error, assert_upload_ok

FORMS = ["multipart", "urlencoded"]
LONG = 100_000  # characters: well past the 64 KiB held as a string


def _picture(w: int, h: int) -> bytes:
    data = media.png(w, h)
    assert len(base64.b64encode(data)) > LONG, "the source must be long enough to be streamed"
    return data


def post(server, form: str, fields: list[tuple[str, str | bytes]], params: dict | None = None,
         key: bool = True) -> requests.Response:
    """Send fields in order (a name may repeat) as multipart string parts or urlencoded."""
    headers = {"X-API-Key": server.key} if key else {}
    if form == "multipart":
        boundary = uuid.uuid4().hex
        body = b"".join(
            b"--" + boundary.encode() + b"\r\nContent-Disposition: form-data; name=\"" + name.encode()
            + b"\"\r\n\r\n" + (value if isinstance(value, bytes) else value.encode()) + b"\r\n"
            for name, value in fields) + b"--" + boundary.encode() + b"--\r\n"
        headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
    else:
        body = urllib.parse.urlencode(fields).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    return server.post("/api/1/upload", data=body, params=params, headers=headers, timeout=120)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


VARIANTS = {
    "plain": b64,
    "wrapped at 76 with CRLF": lambda d: "\r\n".join(b64(d)[i:i + 76] for i in range(0, len(b64(d)), 76)),
    "data URI": lambda d: "data:image/png;base64," + b64(d),
    "URL-safe without padding": lambda d: base64.urlsafe_b64encode(d).decode().rstrip("="),
    "blanks around": lambda d: "  \n" + b64(d) + " \n\t",
}


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_long_source_is_stored(server, form, variant):
    data = _picture(300, 211)
    image = assert_upload_ok(post(server, form, [("source", VARIANTS[variant](data))]))
    assert (image["width"], image["height"]) == (300, 211)
    assert image["size"] == len(data)
    assert server.get(image["url"]).content == data


@pytest.mark.parametrize("form", FORMS)
def test_the_body_value_beats_the_query_and_the_first_value_counts(server, form):
    first, second, query = _picture(300, 212), _picture(300, 213), media.png(5, 5)
    response = post(server, form, [("source", b64(first)), ("source", b64(second))],
                    params={"source": b64(query)})
    image = assert_upload_ok(response)
    assert (image["width"], image["height"]) == (300, 212)


@pytest.mark.parametrize("form", FORMS)
def test_an_imgbb_image_field_gets_the_imgbb_envelope(server, form):
    response = post(server, form, [("image", b64(_picture(300, 214))), ("name", "big")])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True and (body["data"]["width"], body["data"]["height"]) == (300, 214)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("text", [
    "QUJD" * 60_000 + "!", "QUJD" * 60_000 + "Q", "QUJD" * 30_000 + "=" + "QUJD" * 30_000,
    "data:image/png;base64" + "QUJD" * 60_000, "ftp://" + "QUJD" * 60_000,
], ids=["bad letter", "one letter too many", "padding inside", "prefix without comma", "ftp"])
def test_a_long_value_that_is_no_base64_is_refused(server, form, text):
    before = server.rows()
    assert_error(post(server, form, [("source", text)]), 400, 120, "Invalid base64 string")
    assert server.rows() == before


def test_a_long_file_sent_without_a_file_name_gets_the_hint(server):
    data = bytes(range(256)) * 1000  # bytes that are no text
    response = post(server, "multipart", [("source", data)])
    assert_error(response, 400, 120, startswith="Invalid base64 string: this looks like a file sent "
                                                "without a file name")


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("text", [" " * LONG, " " * LONG + "0" + " " * LONG,
                                  "data:image/png;base64," + " " * LONG],
                         ids=["blanks", "a zero in blanks", "prefix and blanks"])
def test_a_long_value_with_nothing_in_it_is_an_empty_source(server, form, text):
    assert_error(post(server, form, [("source", text)]), 400, 130, "Empty upload source")


@pytest.mark.parametrize("form", FORMS)
def test_a_long_source_past_the_limit_is_413_json(make_app, form):
    srv = make_app(max_upload_mb=1)
    data = media.jpeg(100, 100) + bytes(range(256)) * 4200  # just over 1 MB decoded
    response = post(srv, form, [("source", b64(data))])
    assert_error(response, 413, 400, "File too big - max 1 MB")
    assert srv.rows() == 0 and srv.tmp_files() == []
