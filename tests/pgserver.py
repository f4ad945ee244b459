"""A real PostgreSQL for the tests: Debian's PostgreSQL 15 in a temporary directory, on a free
127.0.0.1 port, started once per test process (``postgres``) and stopped at its end; ``pg_url``
gives each test a fresh empty database, dropped after it.

Run as root, the server runs as the ``postgres`` user (``runuser``), its directory given to that
user. Without the binaries, or without psycopg, the tests that need it are skipped with the reason.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

import pytest

def _binaries() -> Path:
    """IMGZ_TEST_PG_BIN, else the newest of Debian's /usr/lib/postgresql/<version>/bin."""
    if os.environ.get("IMGZ_TEST_PG_BIN"):
        return Path(os.environ["IMGZ_TEST_PG_BIN"])
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


BIN = _binaries()
SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",  # a test database need not survive a crash of the machine
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "shared_buffers": "32MB",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    """One PostgreSQL cluster in its own directory; ``url(name)`` names a database of it."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="imgz-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = _free_port()
        self.user = "postgres"
        self._as: list[str] = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.dir, "postgres", "postgres")
        else:
            import getpass

            self.user = getpass.getuser()
        self._run("initdb", "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8",
                  "--no-locale", "--no-sync")
        # A free port is found by binding and letting go; another process (the other test
        # process's servers) may take it first: then again, on another port.
        for attempt in range(5):
            try:
                self.start()
                return
            except RuntimeError:
                said = self.log.read_text(errors="replace") if self.log.exists() else ""
                if "already in use" not in said or attempt == 4:
                    raise
                self.log.unlink()
                self.port = _free_port()

    def _run(self, program: str, *args: str) -> None:
        done = subprocess.run([*self._as, str(BIN / program), *args], capture_output=True, text=True,
                              timeout=120, cwd=self.dir)
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed: {done.stdout}{done.stderr}")

    def start(self) -> None:
        options = " ".join(f"-c {name}={value}" for name, value in
                           {**SETTINGS, "port": self.port, "unix_socket_directories": self.dir}.items())
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o", options,
                  "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "60", "-m", "fast", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        """Run one statement outside a transaction (CREATE or DROP DATABASE) as the superuser."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql)

    def create_database(self) -> str:
        name = "t_" + uuid.uuid4().hex[:16]
        self.admin(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return name

    def drop_database(self, name: str) -> None:
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def missing() -> str | None:
    """Why no PostgreSQL can be started here, or None."""
    if not (BIN / "initdb").is_file() or not (BIN / "pg_ctl").is_file():
        return f"no PostgreSQL binaries in {BIN} (Debian: apt-get install postgresql)"
    if importlib.util.find_spec("psycopg") is None:
        return "psycopg is not installed (pip install -r requirements-scale.txt)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser to start PostgreSQL as the postgres user"
    return None


_shared: PostgresServer | None = None


def shared() -> PostgresServer:
    """The test process's one server, started on first use and stopped by ``stop()``."""
    global _shared
    if _shared is None:
        _shared = PostgresServer()
    return _shared


def fresh_database_url() -> str:
    """A new empty database of the shared server (for the postgres-s3 pair, tests/backends.py);
    it goes with the server at the end of the run."""
    reason = missing()
    if reason:
        pytest.fail(f"backend postgres-s3: {reason}", pytrace=False)
    server = shared()
    return server.url(server.create_database())


def stop() -> None:
    global _shared
    if _shared is not None:
        server, _shared = _shared, None
        server.close()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """The test process's PostgreSQL server (skips the test when there can be none)."""
    reason = missing()
    if reason:
        pytest.skip(reason)
    yield shared()


@pytest.fixture
def pg_url(postgres: PostgresServer) -> Iterator[str]:
    """The URL of a new empty database of its own, dropped after the test."""
    name = postgres.create_database()
    yield postgres.url(name)
    try:
        postgres.drop_database(name)
    except Exception:  # a test that stopped the server leaves it stopped; the next start drops
        postgres.start()
        postgres.drop_database(name)
