"""The in-process app answers as a server in its own process does: the same requests, the same
statuses, headers and bodies (less what the WSGI server adds, and what differs by nature: the
address, a page's nonce, an upload's id)."""
from __future__ import annotations

import re

import pytest

import media

PNG = media.png(40, 30)
SERVER_HEADERS = {"server", "date", "connection", "via", "keep-alive"}
UNIQUE_HEADERS = {"etag", "last-modified"}  # of each stored file


def _request(srv, case: str):
    if case == "upload":
        return srv.upload(PNG, filename="same.png", title="Same")
    if case == "upload-txt-wrong-key":
        return srv.upload(PNG, api_key="imgz_wrong", format="txt")
    if case == "upload-no-key":
        return srv.upload(PNG, api_key=None)
    if case == "form-without-file":
        return srv.post("/api/1/upload", data=b"\x89PNG...", headers={"X-API-Key": srv.key})
    method, _, target = case.partition(" ")
    if target.startswith("raw:"):
        return srv.raw(method, target[4:])
    return srv.request(method, target, allow_redirects=False)


def _comparable(srv, response) -> tuple:
    def plain(text: str) -> str:
        return re.sub(r"nonce-[^']+'|nonce=\"[^\"]+\"", "NONCE", text.replace(srv.url, "BASE"))
    headers = {}
    for name, value in response.headers.items():
        name = name.lower()
        if name in SERVER_HEADERS or name == "content-length":
            continue
        if name == "allow":  # listed from a set: its order differs from process to process
            value = ", ".join(sorted(value.split(", ")))
        headers[name] = "(a value of its own)" if name in UNIQUE_HEADERS else plain(value)
    return response.status_code, headers, plain(response.content.decode("utf-8", "replace"))


@pytest.mark.parametrize("case", [
    "GET /", "HEAD /", "PUT /", "GET /no/such/page", "GET /image/ZZZZZZZZ", "POST /image/abc",
    "GET /api/1/upload", "DELETE /api/1/upload/", "GET /api//1/upload/",
    "GET /oembed?url=/image/ZZZZZZZZ", "GET /oembed", "GET /sharex.sxcu",
    "GET /images/2020/01/01/none.png", "GET raw:/images/../imgz.db", "GET raw:/images/%2e%2e/imgz.db",
    "GET raw:/image/%FF%FE", "GET /tag/nothing", "upload-no-key", "upload-txt-wrong-key",
    "form-without-file",
])
def test_the_same_request_gets_the_same_answer(server, live_server, case):
    assert _comparable(server, _request(server, case)) == _comparable(live_server, _request(live_server, case))


def test_an_upload_and_its_files_answer_alike(server, live_server):
    answers = {}
    for srv in (server, live_server):
        image = _request(srv, "upload").json()["image"]
        files = [srv.get(image["url"]), srv.get(image["url"], headers={"Range": "bytes=5-9"}),
                 srv.head(image["url"]), srv.get(image["url"], headers={"Sec-Fetch-Dest": "document"})]
        answers[srv] = [_comparable(srv, r) for r in files]
        page = srv.get(image["url_viewer"])
        answers[srv].append((page.status_code, sorted({k.lower() for k in page.headers} - SERVER_HEADERS)))
    assert answers[server] == answers[live_server]
