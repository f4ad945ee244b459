"""Start and stop the servers a benchmark compares, each in its own process group on 127.0.0.1.

Every child is started in a new session, so stopping it signals its whole group (waitress and
any ffmpeg it runs, nginx and its workers). Children write their output to log files through
drain threads, never into a pipe that nobody reads.
"""
from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Child:
    """A child process in its own session whose stdout and stderr lines are kept and logged."""

    def __init__(self, name: str, args: list[str], log: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.name = name
        self.log = log
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._logfile = open(log, "a", encoding="utf-8", errors="replace")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(args, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, errors="replace", start_new_session=True)
        self._threads = [threading.Thread(target=self._drain, args=(stream,), daemon=True)
                         for stream in (self.proc.stdout, self.proc.stderr)]
        for thread in self._threads:
            thread.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _drain(self, stream) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line)
                self._logfile.write(line)
                self._logfile.flush()
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        """The first match of pattern in the output so far or to come; raises when it never comes."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._changed:
            while True:
                for line in self.lines[seen:]:
                    if match := regex.search(line):
                        return match
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    tail = "".join(self.lines[-20:])
                    raise RuntimeError(f"{self.name}: no line matching {pattern!r} "
                                       f"(exit {self.proc.poll()}); log {self.log}:\n{tail}")
                self._changed.wait(min(left, 0.2))

    def stop(self, grace: float = 15) -> None:
        """Signal the whole group, wait, then kill what is left."""
        if self.proc.poll() is None:
            _signal_group(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        _signal_group(self.proc.pid, signal.SIGKILL)  # stray children of an exited leader too
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        for thread in self._threads:
            thread.join(2)
        self._logfile.close()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class Pool:
    """Everything started for one benchmark run; ``stop_all`` in a finally stops it all."""

    def __init__(self) -> None:
        self.children: list[Child] = []

    def add(self, child: Child) -> Child:
        self.children.append(child)
        return child

    def stop(self, child: Child) -> None:
        child.stop()
        if child in self.children:
            self.children.remove(child)

    def stop_all(self) -> None:
        while self.children:
            self.children.pop().stop()


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any IMGZ_ setting of the caller's, plus extra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGZ_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def imgz_command(data: Path, port: int, root: Path = ROOT) -> list[str]:
    return [sys.executable, str(root / "app.py"), "serve", "--host", HOST, "--port", str(port),
            "--data", str(data)]


def checkout(rev: str, dest: Path) -> Path:
    """The tree of ``rev`` (any git revision of this repository) exported to ``dest``."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def start_imgz(pool: Pool, data: Path, log: Path, *, settings: dict[str, str] | None = None,
               root: Path = ROOT, name: str = "imgz") -> tuple[Child, str, str]:
    """``app.py serve`` on a new data dir; returns the child, its base URL and the first key.

    ``root`` may be another checkout (the same Python and packages run it)."""
    env = clean_env(IMGZ_MIN_FREE_MB="0", **(settings or {}))
    child = pool.add(Child(name, imgz_command(data, 0, root), log, env, root))
    served = child.wait_for(r"serving .* on http://[^:]+:(\d+)", 60)
    # The key goes to stdout and the address to stderr: either may be read first.
    key = child.wait_for(r"once\): (imgz_\w+)", 10).group(1)
    return child, f"http://{HOST}:{served.group(1)}", key


def start_reference(pool: Pool, mode: str, root: Path, log: Path, *, threads: int,
                    max_mb: int) -> tuple[Child, str]:
    """One of bench/reference.py's servers: 'reference', 'stripping', 'store', 'sendfile' or 'bare'."""
    child = pool.add(Child(mode, [sys.executable, str(BENCH / "reference.py"), mode,
                                  "--root", str(root), "--threads", str(threads),
                                  "--max-mb", str(max_mb)], log, clean_env(), ROOT))
    served = child.wait_for(r"serving \w+ on (http://\S+)", 60)
    return child, served.group(1)


def nginx_conf(prefix: Path, http: str, connections: int = 256) -> str:
    """An nginx.conf of one foreground process (as the caller), its files under ``prefix``,
    with ``http`` in its http block."""
    return f"""\
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections {connections}; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    default_type application/octet-stream;
    keepalive_requests 1000000;
{http}
}}
"""


STATIC_SITE = """\
    types {{ image/jpeg jpeg jpg; image/png png; image/gif gif; video/mp4 mp4; }}
    sendfile on;
    tcp_nopush on;
    server {{
        listen {host}:{port};
        location /images/ {{ alias {media}/; }}
    }}"""


def start_nginx(pool: Pool, media: Path, prefix: Path) -> tuple[Child, str] | None:
    """nginx serving media at /images/ as a single foreground process, or None when absent.

    ``master_process off`` keeps it one process running as the caller, so it reads the caller's
    private temp files whoever runs the benchmark (a root master would switch its workers to
    ``nobody``).
    """
    exe = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
                                         if os.access(p, os.X_OK)), None)
    if exe is None:
        return None
    prefix.mkdir(parents=True, exist_ok=True)
    for attempt in range(3):
        port = free_port()
        conf = prefix / "nginx.conf"
        conf.write_text(nginx_conf(prefix, STATIC_SITE.format(host=HOST, port=port, media=media)))
        child = pool.add(Child("nginx", [exe, "-p", str(prefix), "-e", str(prefix / "error.log"),
                                         "-c", str(conf)], prefix / "stdout.log"))
        if wait_http(f"http://{HOST}:{port}/", 10, child, accept=range(200, 500)):
            return child, f"http://{HOST}:{port}"
        pool.stop(child)
    raise RuntimeError(f"nginx did not start; see {prefix / 'error.log'}")


def http_status(url: str, timeout: float = 5) -> int | None:
    """The status of a GET, or None when nothing answers."""
    host, port, path = split_url(url)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    except OSError:
        return None
    finally:
        conn.close()


def wait_http(url: str, timeout: float, child: Child | None = None,
              accept=range(200, 300), interval: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child is not None and child.proc.poll() is not None:
            return False
        if http_status(url, timeout=2) in accept:
            return True
        time.sleep(interval)
    return False


def split_url(url: str) -> tuple[str, int, str]:
    match = re.fullmatch(r"http://([^/:]+):(\d+)(/.*)?", url)
    if match is None:
        raise ValueError(f"not an http://host:port URL: {url}")
    return match.group(1), int(match.group(2)), match.group(3) or "/"


# ---------------------------------------------------------------------------------------------
# /proc

def kib(pid: int, field: str) -> int:
    """A /proc/PID/status figure such as VmRSS or VmHWM, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(field)


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux 4.0+), so a peak measures only what follows."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def cpu_count() -> int:
    return os.cpu_count() or 1
