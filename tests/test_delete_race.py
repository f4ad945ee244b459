"""Two deletions of one upload at once, through a real server: exactly one succeeds, the other is
told there is nothing to delete (404), and the upload is gone afterwards."""
from __future__ import annotations

import http.client
import threading
from urllib.parse import urlsplit

import pytest

import media
from conftest import LiveServer
from contract import assert_upload_ok

ROUNDS = 15
JSON = {"Accept": "application/json"}
BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8",
           "Content-Type": "application/x-www-form-urlencoded"}
# method, headers, body, and the status a successful deletion answers with
SCRIPT_DELETE = ("DELETE", JSON, b"", 200)
SCRIPT_POST = ("POST", JSON, b"", 200)
PAGE_POST = ("POST", BROWSER, b"confirm=page", 303)      # the confirmation page's button
PLAIN_POST = ("POST", BROWSER, b"", 200)                  # a form posted without the page


@pytest.fixture(scope="module")
def srv(tmp_path_factory) -> LiveServer:
    server = LiveServer(tmp_path_factory.mktemp("delete-race"), {"IMGZ_THREADS": "8"})
    yield server
    server.stop()


def _race(srv: LiveServer, path: str, requests: list[tuple[str, dict, bytes, int]]) -> list[int]:
    """Send the requests at the same moment on connections opened beforehand; their statuses."""
    connections = [http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30) for _ in requests]
    for conn in connections:
        conn.connect()
    barrier = threading.Barrier(len(requests))
    statuses: list[int] = [0] * len(requests)

    def send(index: int) -> None:
        method, headers, body, _ = requests[index]
        conn = connections[index]
        barrier.wait()
        conn.request(method, path, body=body or None, headers=headers)
        response = conn.getresponse()
        response.read()
        statuses[index] = response.status

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for conn in connections:
        conn.close()
    return statuses


@pytest.mark.parametrize("first,second", [
    pytest.param(SCRIPT_DELETE, SCRIPT_DELETE, id="delete-delete"),
    pytest.param(SCRIPT_POST, SCRIPT_POST, id="post-post"),
    pytest.param(PAGE_POST, PAGE_POST, id="page-page"),
    pytest.param(PLAIN_POST, PLAIN_POST, id="form-form"),
    pytest.param(PAGE_POST, SCRIPT_DELETE, id="page-delete"),
])
def test_two_deletions_at_once_one_succeeds(srv, first, second):
    for _ in range(ROUNDS):
        image = assert_upload_ok(srv.upload(media.png(600, 400, color="olive")))
        path = urlsplit(image["delete_url"]).path
        statuses = _race(srv, path, [first, second])
        wins = [i for i, status in enumerate(statuses) if status != 404]
        assert statuses.count(404) == 1 and len(wins) == 1, statuses
        assert statuses[wins[0]] == (first, second)[wins[0]][3], statuses
        assert srv.get(image["url"]).status_code == 404
        assert not any(image["name"] in p for p in srv.stored_files())
    assert srv.rows() == 0
