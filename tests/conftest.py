"""Fixtures: imgz in this process (``server``, ``app``, ``client``, ``make_app``) for what needs no
socket, and a real server in its own process on a free 127.0.0.1 port (``live_server``,
``make_server``, ``LiveServer``) for streaming, framing, crashes, memory, nginx and browsers.

Both kinds have the same helpers (tests/helpers.py ``Helpers``) and answer with
``requests.Response`` objects.

Backend pairs (tests/backends.py). ``--backend sqlite-local`` (the default, or IMGZ_TEST_BACKEND)
runs everything on an SQLite file and ``<data>/images``. ``--backend postgres-s3`` gives every
app and server a fresh PostgreSQL database and S3 prefix of its own, and runs only the files of
``PAIRED`` below: the end-to-end API, page, organisation, expiry and deletion tests, whose
helpers read rows and stored files through imgz's db package and the app's store. The rest
(functions tested on their own, and servers tested for what only the process and its local disk
do: crashes, framing, memory, workers, scratch, nginx, upgrades of SQLite files) runs once, in the
default call. Within PAIRED, a test about the local disk or SQLite itself is marked
``local_only`` and deselected under postgres-s3.
"""
from __future__ import annotations

import http.client
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import requests

import backends
import helpers
from helpers import Helpers
from imgz import config as config_mod
from imgz.config import Config
from imgz.store import Store
from inprocess import InProcess, as_response, settings_env

# the fixtures postgres and pg_url (a real PostgreSQL), s3_server and s3 (a real S3 server), and
# site (an app with two users who have passwords)
pytest_plugins = ["pgserver", "s3server", "people"]

ROOT = Path(__file__).resolve().parent.parent

# The test files that run on every backend pair (see the top of this file); a file may also say so
# itself with ``pytestmark = pytest.mark.paired``.
PAIRED = frozenset({
    "test_api_answer.py", "test_api_errors.py", "test_api_upload.py", "test_api_video.py",
    "test_base64_stream.py", "test_browser.py", "test_delete_race.py", "test_expiration.py",
    "test_file_date.py", "test_hostile.py", "test_inprocess.py", "test_metadata_hostile.py",
    "test_organisation.py", "test_pages.py", "test_ratelimit.py", "test_signin.py", "test_access.py",
    "test_browser_access.py",
})


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--backend", choices=backends.NAMES, default=backends.default(),
                     help=f"the database and store the end-to-end tests use (default: "
                          f"${backends.ENV} or {backends.SQLITE_LOCAL})")


def pytest_configure(config: pytest.Config) -> None:
    try:
        backends.choose(config.getoption("--backend"))
    except ValueError as exc:  # a wrong IMGZ_TEST_BACKEND (argparse checks only the option)
        raise pytest.UsageError(str(exc)) from None


def pytest_unconfigure(config: pytest.Config) -> None:
    backends.stop()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under a pair other than sqlite-local, keep the PAIRED files' tests not marked local_only."""
    if backends.chosen() == backends.SQLITE_LOCAL:
        return
    kept, dropped = [], []
    for item in items:
        named = item.path.name in PAIRED or item.get_closest_marker("paired") is not None
        paired = named and item.get_closest_marker("local_only") is None
        (kept if paired else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def pytest_report_header(config: pytest.Config) -> str:
    return f"backend pair: {backends.chosen()}"
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
    """``python app.py serve`` on a free port with its own data dir; stopped by ``stop()``.

    ``env`` holds IMGZ_* settings over those of the run's backend pair for ``data``."""

    def __init__(self, data: Path, env: dict[str, str] | None = None,
                 prefix: list[str] | None = None) -> None:
        self.data = data
        self.backend = backends.settings(data)
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("IMGZ_")}
        full_env.update({"IMGZ_MIN_FREE_MB": "0", "PYTHONUNBUFFERED": "1"})
        full_env.update(self.backend)
        full_env.update(env or {})
        self.env = full_env
        self._config: Config | None = None
        self._store: Store | None = None
        # A data dir without a key yet prints its first key and a curl line on stdout, which is
        # read by its own thread: wait for both lines as well as for the port (on stderr). A
        # start that could not listen leaves a database with no key behind.
        expect_key = not helpers.has_keys(data, full_env)
        hinted = False
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
        self.admin_link = ""  # the one-time link for the admin's password, printed with the key
        deadline = time.monotonic() + 30
        while not self.port or (expect_key and not (self.key and hinted and self.admin_link)):
            try:
                name, line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                raise RuntimeError("server did not start:\n" + "".join(self.stderr)) from None
            if name == "out" and "API key" in line:
                self.key = line.rsplit(" ", 1)[1].strip()
            if name == "out" and "/api/1/upload" in line:
                hinted = True
            if name == "out" and "admin's password" in line:
                self.admin_link = line.rsplit(" ", 1)[1].strip()
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

    @property
    def config(self) -> Config:
        """The server's settings, read as it read them (on first use: a server may refuse them)."""
        if self._config is None:
            self._config = config_mod.load({**self.env, "IMGZ_DATA": str(self.data)})
        return self._config

    @property
    def store(self) -> Store:
        """The server's store, read from this process. The SDK of a bucket finds its credentials
        in this process's environment, as an in-process app's does (backends.in_process)."""
        if self._store is None:
            os.environ.update(backends.split(self.backend)[1])
            self._store = helpers.store_of(self.config)
        return self._store

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def command(self, *args: str) -> subprocess.CompletedProcess:
        """Run ``python app.py --data DIR <args>`` against this server's data dir and backends."""
        return subprocess.run([sys.executable, str(ROOT / "app.py"), "--data", str(self.data), *args],
                              cwd=ROOT, capture_output=True, text=True, timeout=60,
                              env=self.env)

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

# URL sources may reach fixture web hosts on 127.0.0.1.
URL_SOURCES = {"IMGZ_URL_ALLOW_NETS": "127.0.0.1/32", "IMGZ_URL_TIMEOUT": "3"}


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
