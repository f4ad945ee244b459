"""Fixtures: a real imgz server in its own process on a free 127.0.0.1 port, and an API helper."""
from __future__ import annotations

import contextlib
import os
import queue
import re
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

ROOT = Path(__file__).resolve().parent.parent


class LiveServer:
    """``python app.py serve`` on a free port with its own data dir; stopped by ``stop()``."""

    def __init__(self, data: Path, env: dict[str, str] | None = None,
                 prefix: list[str] | None = None) -> None:
        self.data = data
        # A fresh data dir prints its first key and a curl line on stdout, which is read by its
        # own thread: wait for both lines as well as for the port (printed last, on stderr).
        expect_key = not (data / "imgz.db").exists()
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

    @property
    def db(self) -> Path:
        return self.data / "imgz.db"

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

    def upload(self, source: Any = None, *, filename: str = "file.png", api_key: Any = "default",
               path: str = "/api/1/upload", method: str = "POST", field: str = "source",
               content_type: str | None = None, params: dict | None = None,
               headers: dict | None = None, **fields: Any) -> requests.Response:
        """Upload with a real HTTP client. bytes go as a multipart file part, str as a form field.

        ``api_key='default'`` sends this server's first key in X-API-Key; None sends none.
        """
        hdrs = dict(headers or {})
        if api_key == "default":
            hdrs["X-API-Key"] = self.key
        elif api_key is not None:
            hdrs["X-API-Key"] = api_key
        data = {k: v for k, v in fields.items() if v is not None}
        files = None
        if isinstance(source, (bytes, bytearray)):
            files = {field: (filename, bytes(source), content_type) if content_type
                     else (filename, bytes(source))}
        elif source is not None:
            data[field] = source
        return requests.request(method, self.url + path, data=data or None, files=files,
                                params=params, headers=hdrs, allow_redirects=False, timeout=120)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("allow_redirects", False)
        kwargs.setdefault("timeout", 30)
        url = path if path.startswith("http") else self.url + path
        return requests.get(url, **kwargs)

    def rows(self) -> int:
        with contextlib.closing(sqlite3.connect(self.db)) as conn:
            return conn.execute("SELECT COUNT(*) FROM uploads").fetchone()[0]

    def stored_files(self) -> list[str]:
        return sorted(str(p.relative_to(self.data)) for p in (self.data / "images").rglob("*") if p.is_file())

    def tmp_files(self) -> list[str]:
        """What is left under tmp: the processes' scratch folders and their lock files not counted."""
        tmp = self.data / "tmp"
        found = []
        for path in tmp.rglob("*"):
            parts = path.relative_to(tmp).parts
            if len(parts) == 1 and (path.is_dir() or path.name.endswith(".lock")):
                continue
            found.append(str(path.relative_to(self.data)))
        return sorted(found)

    def scratch_folders(self) -> list[str]:
        """The scratch folders under tmp, one for each process that wrote there and was not cleaned."""
        return sorted(p.name for p in (self.data / "tmp").glob("*") if p.is_dir())


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One shared server; URL sources may reach 127.0.0.1 for fixture servers."""
    srv = LiveServer(tmp_path_factory.mktemp("data"), {"IMGZ_URL_ALLOW_NETS": "127.0.0.1/32",
                                                       "IMGZ_URL_TIMEOUT": "3"})
    yield srv
    srv.stop()


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Any]:
    """Start servers with their own settings; all are stopped after the test."""
    started: list[LiveServer] = []

    def start(**env: str) -> LiveServer:
        srv = LiveServer(tmp_path / f"data{len(started)}", {f"IMGZ_{k.upper()}": str(v) for k, v in env.items()})
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
