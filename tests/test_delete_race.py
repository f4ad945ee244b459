"""Two deletions of one upload at once, each on its own thread: exactly one succeeds, the other is
told there is nothing to delete (404), and the upload is gone afterwards."""
from __future__ import annotations

import threading
from typing import Iterator
from urllib.parse import urlsplit

import pytest

import media
from contract import assert_upload_ok
from inprocess import InProcess

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
def srv(tmp_path_factory) -> Iterator[InProcess]:
    server = InProcess(tmp_path_factory.mktemp("delete-race"))
    yield server
    server.stop()


def _race(srv: InProcess, path: str, requests: list[tuple[str, dict, bytes, int]]) -> list[int]:
    """Send the requests at the same moment, each from its own thread; their statuses."""
    barrier = threading.Barrier(len(requests))
    statuses: list[int] = [0] * len(requests)

    def send(index: int) -> None:
        method, headers, body, _ = requests[index]
        barrier.wait()
        statuses[index] = srv.request(method, path, data=body or None, headers=headers,
                                      allow_redirects=False).status_code

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
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
