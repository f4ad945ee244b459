"""Load generators: uploads from Python threads, GETs with wrk when installed (else Python threads).

Every run is bounded by a wall-clock deadline and only ever talks to the URL it is given.
"""
from __future__ import annotations

import http.client
import re
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from procs import split_url

CHUNK = 1 << 20


@dataclass(frozen=True)
class Multipart:
    """A multipart/form-data body with one file part, built once and sent as often as needed."""

    content_type: str
    head: bytes
    tail: bytes
    file: Path

    @property
    def length(self) -> int:
        return len(self.head) + self.file.stat().st_size + len(self.tail)

    def chunks(self) -> Iterator[bytes]:
        """The body streamed from disk: for files too large to hold in memory."""
        yield self.head
        with open(self.file, "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk
        yield self.tail

    def payload(self) -> bytes:
        return self.head + self.file.read_bytes() + self.tail


def multipart(file: Path, field: str = "source", fields: dict[str, str] | None = None) -> Multipart:
    boundary = f"bench{uuid.uuid5(uuid.NAMESPACE_URL, str(file)).hex}"
    head = b""
    for name, value in (fields or {}).items():
        head += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
                 f"{value}\r\n").encode()
    head += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; "
             f"filename=\"{file.name}\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return Multipart(f"multipart/form-data; boundary={boundary}", head, tail, file)


@dataclass(frozen=True)
class RunResult:
    """What one timed load run achieved."""

    requests: int
    seconds: float
    errors: int
    first_error: str | None
    bytes_read: int = 0
    tool: str = "python"

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


def post(url: str, body, length: int, content_type: str, headers: dict[str, str],
         timeout: float = 600, conn: http.client.HTTPConnection | None = None
         ) -> tuple[int, bytes]:
    """One POST on conn (or a new connection); body is bytes or an iterable of chunks."""
    host, port, path = split_url(url)
    own = conn is None
    conn = conn or http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers={
            **headers, "Content-Type": content_type, "Content-Length": str(length)})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        if own:
            conn.close()


def upload_run(url: str, body: Multipart, headers: dict[str, str], *, concurrency: int,
               seconds: float, payload: bytes | None = None) -> RunResult:
    """Upload the same body from `concurrency` keep-alive connections until the deadline.

    A request started before the deadline is waited for and counted; the rate divides by the
    time until the last one ended.
    """
    payload = payload if payload is not None else body.payload()
    host, port, path = split_url(url)
    lock = threading.Lock()
    counts = {"ok": 0, "errors": 0}
    first_error: list[str] = []
    started = time.perf_counter()
    deadline = started + seconds

    def worker() -> None:
        conn = http.client.HTTPConnection(host, port, timeout=300)
        try:
            while time.perf_counter() < deadline:
                try:
                    status, answer = post(url, payload, len(payload), body.content_type, headers,
                                          conn=conn)
                    good = status == 200
                    problem = f"HTTP {status}: {answer[:300]!r}"
                except (OSError, http.client.HTTPException) as exc:
                    good, problem = False, f"{type(exc).__name__}: {exc}"
                    conn.close()
                    conn = http.client.HTTPConnection(host, port, timeout=300)
                with lock:
                    counts["ok" if good else "errors"] += 1
                    if not good and not first_error:
                        first_error.append(problem)
                if not good:
                    time.sleep(0.05)
        finally:
            conn.close()

    _run_threads(worker, concurrency)
    took = time.perf_counter() - started
    return RunResult(counts["ok"], took, counts["errors"], first_error[0] if first_error else None)


def _run_threads(worker, concurrency: int) -> None:
    """Run `concurrency` copies of worker in threads and wait for all of them."""
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def wrk_path() -> str | None:
    return shutil.which("wrk")


def get_run(url: str, *, concurrency: int, seconds: float, use_wrk: bool) -> RunResult:
    if use_wrk:
        return _wrk(url, concurrency, seconds)
    return _python_gets(url, concurrency, seconds)


def _wrk(url: str, concurrency: int, seconds: float) -> RunResult:
    # One wrk thread: on a small machine a second one takes a core from the server measured.
    wrk = wrk_path()
    assert wrk is not None
    result = subprocess.run([wrk, "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s",
                             "--timeout", "10s", url], capture_output=True, text=True,
                            timeout=seconds + 60)
    out = result.stdout
    done = re.search(r"(\d+) requests in ([\d.]+)(m?s|m)\b, ([\d.]+)([KMGT]?B) read", out)
    if result.returncode != 0 or done is None:
        return RunResult(0, seconds, 1, f"wrk failed: {out} {result.stderr}", tool="wrk")
    unit = {"s": 1, "ms": 0.001, "m": 60}[done.group(3)]
    scale = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}[done.group(5)]
    errors = 0
    problem = None
    if bad := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(bad.group(1))
        problem = bad.group(0)
    if sock := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(n) for n in sock.groups())
        problem = problem or sock.group(0)
    requests = int(done.group(1))
    return RunResult(requests - errors, float(done.group(2)) * unit, errors, problem,
                     int(float(done.group(4)) * scale), tool="wrk")


def _python_gets(url: str, concurrency: int, seconds: float) -> RunResult:
    host, port, path = split_url(url)
    lock = threading.Lock()
    counts = {"ok": 0, "errors": 0, "bytes": 0}
    first_error: list[str] = []
    started = time.perf_counter()
    deadline = started + seconds

    def worker() -> None:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        ok = errors = read = 0
        try:
            while time.perf_counter() < deadline:
                try:
                    conn.request("GET", path)
                    response = conn.getresponse()
                    size = 0
                    while chunk := response.read(CHUNK):
                        size += len(chunk)
                    if response.status == 200:
                        ok += 1
                        read += size
                    else:
                        errors += 1
                        if not first_error:
                            first_error.append(f"HTTP {response.status}")
                except (OSError, http.client.HTTPException) as exc:
                    errors += 1
                    if not first_error:
                        first_error.append(f"{type(exc).__name__}: {exc}")
                    conn.close()
                    conn = http.client.HTTPConnection(host, port, timeout=30)
        finally:
            conn.close()
            with lock:
                counts["ok"] += ok
                counts["errors"] += errors
                counts["bytes"] += read

    _run_threads(worker, concurrency)
    took = time.perf_counter() - started
    return RunResult(counts["ok"], took, counts["errors"], first_error[0] if first_error else None,
                     counts["bytes"], tool="python")
