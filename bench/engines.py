"""The distributed engines of the scale parts: one PostgreSQL and one SeaweedFS per benchmark run,
on 127.0.0.1 in temporary folders, started on first use and stopped by ``Engines.stop`` (run.py
calls it in its ``finally``, so an interrupted run stops them too).

The servers are the tests' own (tests/pgserver.py, tests/s3server.py); only the PostgreSQL
settings differ: the benchmark keeps PostgreSQL's durable defaults (fsync, synchronous commit,
full-page writes), as a deployment would, where the tests turn them off.

``CountingProxy`` sits between an imgz and the bucket when the bytes and requests a store sees
per upload or GET are wanted.
"""
from __future__ import annotations

import os
import re
import socket
import sys
import threading
from pathlib import Path

import procs

sys.path.insert(0, str(procs.ROOT / "tests"))

import pgserver  # noqa: E402
import s3server  # noqa: E402

BENCH_PG_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "max_connections": "200",
    "shared_buffers": "128MB",
    "log_min_messages": "warning",
}


class BenchPostgres(pgserver.PostgresServer):
    """The tests' PostgreSQL with durable settings; ``log_statements(db)`` turns statement logging
    on for one database only, so that the others run at full speed."""

    def start(self) -> None:
        options = " ".join(f"-c {name}={value}" for name, value in
                           {**BENCH_PG_SETTINGS, "port": self.port,
                            "unix_socket_directories": self.dir}.items())
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o",
                  options, "start")

    def log_statements(self, name: str) -> None:
        self.admin(f'ALTER DATABASE "{name}" SET log_statement = \'all\'')

    def statements_logged(self) -> int:
        """Statements the server has logged so far (log_statement=all: one line per statement
        run, simple or extended protocol)."""
        text = self.log.read_text(errors="replace")
        return len(re.findall(r"LOG:  (?:statement|execute [^:]*):", text))


class Engines:
    """The run's PostgreSQL and SeaweedFS; a fresh database or bucket per use."""

    def __init__(self, work: Path, log=print) -> None:
        self.work = work
        self.log = log
        self._pg: BenchPostgres | None = None
        self._weed: s3server.WeedServer | None = None

    @staticmethod
    def missing() -> str | None:
        return pgserver.missing() or s3server.missing()

    @property
    def pg(self) -> BenchPostgres:
        if self._pg is None:
            reason = self.missing()
            if reason:
                raise RuntimeError(reason)
            self._pg = BenchPostgres()
            self.log(f"PostgreSQL {pgserver.BIN.parent.name} on 127.0.0.1:{self._pg.port} "
                     f"({self._pg.dir})")
        return self._pg

    @property
    def weed(self) -> s3server.WeedServer:
        if self._weed is None:
            reason = self.missing()
            if reason:
                raise RuntimeError(reason)
            folder = self.work / "seaweedfs"
            self._weed = s3server.WeedServer(s3server.weed_binary() or "weed", folder)
            self._weed.folder = folder
            self.log(f"SeaweedFS (weed mini) S3 on {self._weed.endpoint} ({folder})")
        return self._weed

    def database(self, logged: bool = False) -> tuple[str, str]:
        """A new empty database: its name and URL."""
        name = self.pg.create_database()
        if logged:
            self.pg.log_statements(name)
        return name, self.pg.url(name)

    def bucket(self) -> s3server.Bucket:
        return s3server.new_bucket(self.weed)

    def stop(self) -> None:
        for stop in (self._stop_pg, self._stop_weed):
            try:
                stop()
            except Exception as exc:  # the other one is still stopped
                self.log(f"stopping an engine: {type(exc).__name__}: {exc}")

    def _stop_pg(self) -> None:
        if self._pg is not None:
            pg, self._pg = self._pg, None
            pg.close()

    def _stop_weed(self) -> None:
        if self._weed is not None:
            weed, self._weed = self._weed, None
            weed.stop()


def scale_env(url: str, bucket: s3server.Bucket, endpoint: str | None = None,
              **more: str) -> dict[str, str]:
    """The environment of an imgz on the database at ``url`` and ``bucket`` (reached through
    ``endpoint`` when given: a CountingProxy)."""
    env = bucket.env()
    if endpoint:
        env["IMGZ_S3_ENDPOINT"] = endpoint
    return {**env, "IMGZ_DATABASE_URL": url, **more}


REQUEST_LINE = re.compile(rb"(?:GET|PUT|POST|HEAD|DELETE) /\S* HTTP/1\.1\r\n")


class CountingProxy:
    """A TCP forwarder on 127.0.0.1 counting the bytes each way and the HTTP requests sent
    (request lines seen in the client's stream); ``snapshot()`` reads the counters."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.lock = threading.Lock()
        self.up = self.down = self.requests = 0
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def snapshot(self) -> tuple[int, int, int]:
        """(bytes sent to the store, bytes received from it, requests)."""
        with self.lock:
            return self.up, self.down, self.requests

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=30)
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        tail = b""
        try:
            while chunk := src.recv(1 << 16):
                dst.sendall(chunk)
                found = 0
                if upstream:
                    window = tail + chunk
                    found = len(REQUEST_LINE.findall(window)) - len(REQUEST_LINE.findall(tail))
                    tail = window[-300:]
                with self.lock:
                    if upstream:
                        self.up += len(chunk)
                        self.requests += found
                    else:
                        self.down += len(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def close(self) -> None:
        self.closed = True
        self.sock.close()


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of a process, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu(root: int) -> float:
    """CPU seconds used so far by a process and every live descendant (media workers,
    PostgreSQL's backends)."""
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (found := _stat(int(entry))) is not None:
            stats[int(entry)] = found
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += stats[pid][1]
            todo.extend(p for p, (parent, _) in stats.items() if parent == pid)
    return total


def postmaster_pid(pg: BenchPostgres) -> int:
    return int((pg.data / "postmaster.pid").read_text().split()[0])
