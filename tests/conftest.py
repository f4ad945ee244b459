"""Fixtures: imgz in this process (``server``, ``app``, ``client``, ``make_app``) for what needs no
socket, and a real server in its own process on a free 127.0.0.1 port (``live_server``,
``make_server``, ``LiveServer``) for streaming, framing, crashes, memory, nginx and browsers.

Both kinds have the same helpers (tests/inprocess.py ``Helpers``) and answer with
``requests.Response`` objects."""
from __future__ import annotations

import contextlib
import http.client
import os
import queue
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import requests

from inprocess import Helpers, InProcess, as_response, settings_env
import s3server

ROOT = Path(__file__).resolve().parent.parent
RAM_DISK = Path("/dev/shm")


def _temporary_files_in_memory() -> None:
    """Put pytest's temporary folders (the tests' data dirs) on a RAM file system when the machine
    has a roomy one: every stored file is fsynced, which costs a disk write each time and nothing
    there. PYTEST_DEBUG_TEMPROOT set by hand wins."""
    try:
        roomy = RAM_DISK.is_dir() and os.access(RAM_DISK, os.W_OK) and \
            shutil.disk_usage(RAM_DISK).free > 4 * 1024 ** 3
    except OSError:
        roomy = False
    if roomy:
        os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", str(RAM_DISK))


_temporary_files_in_memory()


class LiveServer(Helpers):
    """``python app.py serve`` on a free port with its own data dir; stopped by ``stop()``."""

    def __init__(self, data: Path, env: dict[str, str] | None = None,
                 prefix: list[str] | None = None) -> None:
        self.data = data
        # A data dir without a key yet prints its first key and a curl line on stdout, which is
        # read by its own thread: wait for both lines as well as for the port (on stderr). A
        # start that could not listen leaves a database with no key behind.
        expect_key = not _has_keys(data / "imgz.db")
        hinted = False
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("IMGZ_")}
        full_env.update({"IMGZ_MIN_FREE_MB": "0", "PYTHONUNBUFFERED": "1"})
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [*(prefix or []), sys.executable, str(ROOT / "app.py"), "serve", "--host", "127.0.0.1", "--port", "0",
             "--data", str(data)],
            cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        lines: queue.Queue[tuple[str, str]] = queue.Queue()
        for name, stream in (("out", self.proc.stdout), ("err", self.proc.stderr)):
            threading.Thread(target=self._pump, args=(name, stream, lines), daemon=True).start()
        self.port = 0
        self.key = ""
        deadline = time.monotonic() + 30
        while not self.port or (expect_key and not (self.key and hinted)):
            try:
                name, line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                raise RuntimeError("server did not start:\n" + "".join(self.stderr)) from None
            if name == "out" and "API key" in line:
                self.key = line.rsplit(" ", 1)[1].strip()
            if name == "out" and "/api/1/upload" in line:
                hinted = True
            match = re.search(r"serving .* on http://[^:]+:(\d+)", line)
            if match:
                self.port = int(match.group(1))
        self.url = f"http://127.0.0.1:{self.port}"

    def _pump(self, name: str, stream: Any, lines: queue.Queue) -> None:
        for line in stream:
            (self.stdout if name == "out" else self.stderr).append(line)
            lines.put((name, line))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def command(self, *args: str) -> subprocess.CompletedProcess:
        """Run ``python app.py --data DIR <args>`` against this server's data dir."""
        return subprocess.run([sys.executable, str(ROOT / "app.py"), "--data", str(self.data), *args],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """``requests.request`` to a path of this server, or to any URL."""
        kwargs.setdefault("timeout", 120)
        return requests.request(method, url if url.startswith("http") else self.url + url, **kwargs)

    def raw(self, method: str, target: str, headers: dict[str, str] | None = None) -> requests.Response:
        """Send the request target exactly as given: no client turns ``/a/../b`` into ``/b``."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.putrequest(method, target, skip_accept_encoding=True)
            for name, value in (headers or {}).items():
                conn.putheader(name, value)
            conn.endheaders()
            answer = conn.getresponse()
            return as_response(f"{answer.status} {answer.reason}", answer.getheaders(), answer.read(),
                               self.url + target)
        finally:
            conn.close()


# A SeaweedFS server for the session, and a fresh place in its bucket for a test.
s3_server = s3server.s3_server
s3 = s3server.s3

# URL sources may reach fixture web hosts on 127.0.0.1.
URL_SOURCES = {"IMGZ_URL_ALLOW_NETS": "127.0.0.1/32", "IMGZ_URL_TIMEOUT": "3"}


def _has_keys(db: Path) -> bool:
    if not db.exists():
        return False
    with contextlib.closing(sqlite3.connect(db)) as conn:
        try:
            return conn.execute("SELECT COUNT(*) FROM api_keys").fetchone()[0] > 0
        except sqlite3.OperationalError:  # no such table: made by nothing that got that far
            return False


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    """One imgz in this process shared by the whole run, with URL_SOURCES."""
    srv = InProcess(tmp_path_factory.mktemp("data"), URL_SOURCES)
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One shared server in its own process, with URL_SOURCES."""
    srv = LiveServer(tmp_path_factory.mktemp("live"), URL_SOURCES)
    yield srv
    srv.stop()


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Any]:
    """Make in-process apps with their own settings (``make_app(max_upload_mb=1)``) and data
    dirs; all are stopped after the test. ``jobs=True`` runs the expiry scheduler (one app)."""
    made: list[InProcess] = []

    def make(*, jobs: bool = False, **settings: Any) -> InProcess:
        srv = InProcess(tmp_path / f"app{len(made)}", settings_env(settings), jobs=jobs)
        made.append(srv)
        return srv

    yield make
    for srv in made:
        srv.stop()


@pytest.fixture
def app(make_app: Any) -> InProcess:
    """An in-process app of its own with the default settings (its Flask app is ``app.flask``)."""
    return make_app()


@pytest.fixture
def client(app: InProcess) -> Any:
    """Flask's test client for ``app``."""
    return app.client


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Any]:
    """Start servers with their own settings; all are stopped after the test."""
    started: list[LiveServer] = []

    def start(**env: str) -> LiveServer:
        srv = LiveServer(tmp_path / f"data{len(started)}", settings_env(env))
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture(scope="session")
def webhost() -> Iterator[Any]:
    """An HTTP server on 127.0.0.1 serving what a test registers, for URL sources."""
    from webhost import WebHost

    host = WebHost()
    yield host
    host.close()
