"""A video of about 1 GiB sent through the resumable endpoint (tus 1.0 at /api/1/tus/) to a real
``app.py serve``, on each backend pair: SQLite + the local disk, and PostgreSQL + SeaweedFS.

    .venv/bin/python bench/run.py --only resumable [--big-mib 1000]

The client creates the upload (``Upload-Length``), sends it in PATCHes of 32 MiB read from disk
a MiB at a time (its own memory stays flat), asks HEAD for the offset, then finishes it
(``POST /api/1/tus/<id>/finish``, which answers as ``/api/1/upload``). A small video goes the
same way first, so imports, the media workers and first-use allocations are in the baseline.
The server's memory is read from /proc: the serving process's peak (VmHWM, reset before the
run) and, sampled every 50 ms, the resident total of its process tree (its media workers and
their ffmpeg included), during the PATCHes and during the finishing call.
"""
from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import figures
import inputs
import procs
from engines import scale_env
from report import Row, at_most, say

if TYPE_CHECKING:
    from run import Session

CHUNK = 32 * 1024 * 1024
READ = 1024 * 1024
TARGET_MIB = 32.0
TUS = {"Tus-Resumable": "1.0.0"}


# ---------------------------------------------------------------------------------------------
# Memory of a process tree, from /proc

def _parents() -> dict[int, int]:
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                text = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            found[int(entry)] = int(text.rsplit(")", 1)[1].split()[1])
    return found


def tree_rss_kib(root: int) -> tuple[int, int]:
    """The resident memory of a process and all its live descendants, and of the descendants
    alone, in KiB."""
    parents = _parents()
    total, own, todo = 0, 0, [root]
    while todo:
        pid = todo.pop()
        try:
            rss = procs.kib(pid, "VmRSS")
        except (OSError, LookupError):
            rss = 0  # gone meanwhile, or a zombie
        total += rss
        own = rss if pid == root else own
        todo.extend(child for child, parent in parents.items() if parent == pid)
    return total, total - own


class TreeSampler:
    """The peaks of ``tree_rss_kib(root)`` (the tree's, and its descendants' alone), sampled
    every ``interval`` s while running; ``mark`` starts a new phase and returns the peaks of the
    one before."""

    def __init__(self, root: int, interval: float = 0.05) -> None:
        self.root = root
        self.interval = interval
        self.peak = (0, 0)
        self.samples = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeSampler:
        self.peak = tree_rss_kib(self.root)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _add(self, rss: tuple[int, int]) -> None:
        self.peak = (max(self.peak[0], rss[0]), max(self.peak[1], rss[1]))

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = tree_rss_kib(self.root)
            with self._lock:
                self._add(rss)
                self.samples += 1
            self._stop.wait(self.interval)

    def mark(self) -> tuple[int, int]:
        rss = tree_rss_kib(self.root)
        with self._lock:
            self._add(rss)
            peak, self.peak = self.peak, rss
        return peak


# ---------------------------------------------------------------------------------------------
# The client: tus over one keep-alive connection, the file read from disk as it goes

class Client:
    def __init__(self, base: str, key: str) -> None:
        host, port, _ = procs.split_url(base)
        self.conn = http.client.HTTPConnection(host, port, timeout=3600)
        self.auth = {"X-API-Key": key, **TUS}

    def call(self, method: str, path: str, body=None, headers: dict[str, str] | None = None
             ) -> http.client.HTTPResponse:
        self.conn.request(method, path, body=body, headers={**self.auth, **(headers or {})})
        answer = self.conn.getresponse()
        answer.body = answer.read()
        return answer

    def create(self, length: int, filename: str) -> str:
        name = base64.b64encode(filename.encode()).decode()
        answer = self.call("POST", "/api/1/tus/", headers={
            "Upload-Length": str(length), "Upload-Metadata": f"filename {name}",
            "Content-Length": "0"})
        if answer.status != 201:
            raise RuntimeError(f"create: HTTP {answer.status} {answer.body[:300]!r}")
        return answer.getheader("Location")

    def patch_all(self, location: str, file: Path, chunk: int = CHUNK) -> int:
        size = file.stat().st_size
        offset = 0
        with open(file, "rb") as f:
            while offset < size:
                count = min(chunk, size - offset)
                f.seek(offset)
                answer = self.call("PATCH", location, body=_read(f, count), headers={
                    "Upload-Offset": str(offset), "Content-Length": str(count),
                    "Content-Type": "application/offset+octet-stream"})
                if answer.status != 204:
                    raise RuntimeError(f"PATCH at {offset}: HTTP {answer.status} "
                                       f"{answer.body[:300]!r}")
                offset = int(answer.getheader("Upload-Offset"))
        return offset

    def offset(self, location: str) -> int:
        answer = self.call("HEAD", location)
        if answer.status != 200:
            raise RuntimeError(f"HEAD: HTTP {answer.status}")
        return int(answer.getheader("Upload-Offset"))

    def finish(self, location: str) -> dict:
        answer = self.call("POST", location + "/finish", body=b"",
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
        if answer.status != 200:
            raise RuntimeError(f"finish: HTTP {answer.status} {answer.body[:300]!r}")
        return json.loads(answer.body)["image"]

    def close(self) -> None:
        self.conn.close()


def _read(f, count: int) -> Iterator[bytes]:
    while count > 0:
        block = f.read(min(READ, count))
        if not block:
            raise RuntimeError("the file got shorter")
        count -= len(block)
        yield block


# ---------------------------------------------------------------------------------------------

def run_one(s: Session, label: str, tag: str, settings: dict[str, str], video: Path,
            warmup: Path, sent_md5: str) -> list[Row]:
    import scale

    size = video.stat().st_size
    child, base, key = scale.start(s.pool, tag, s.work / tag, s.work / f"{tag}.log", settings)
    client = Client(base, key)
    try:
        small = Client(base, key)
        small.finish(_sent(small, warmup, 1024 * 1024))
        small.close()
        time.sleep(1)
        reset = procs.reset_peak(child.pid)
        before = procs.kib(child.pid, "VmRSS" if reset else "VmHWM")
        with TreeSampler(child.pid) as sampler:
            tree_before = sampler.peak
            started = time.perf_counter()
            location = client.create(size, video.name)
            client.patch_all(location, video)
            sent = time.perf_counter() - started
            patch_hwm = procs.kib(child.pid, "VmHWM")
            tree_patch = sampler.mark()
            if client.offset(location) != size:
                raise RuntimeError("HEAD says the upload is short")
            started = time.perf_counter()
            image = client.finish(location)
            finished = time.perf_counter() - started
            tree_finish = sampler.mark()
        hwm = procs.kib(child.pid, "VmHWM")
        samples = sampler.samples
    finally:
        client.close()
        s.pool.stop(child)
        shutil.rmtree(s.work / tag, ignore_errors=True)
    received = image["source_checksum"] or image["checksum"]
    ok = received == sent_md5
    growth = (hwm - before) / 1024
    patch_growth = (patch_hwm - before) / 1024
    tree_patch_growth = (tree_patch[0] - tree_before[0]) / 1024
    tree_finish_growth = (tree_finish[0] - tree_before[0]) / 1024
    media_growth = (tree_finish[1] - tree_before[1]) / 1024
    speed = size / 1e6 / sent
    say(f"  {label}: {size / inputs.MIB:.0f} MiB in {-(-size // CHUNK)} PATCHes of 32 MiB: "
        f"{sent:.1f} s = {speed:.0f} MB/s; finish {finished:.1f} s; md5 sent {sent_md5}, "
        f"answered {received} ({'same' if ok else 'DIFFERENT'})")
    say(f"    server process: RSS before {before / 1024:.1f} MiB, peak growth while PATCHing "
        f"{patch_growth:.1f} MiB, over the whole run {growth:.1f} MiB"
        + ("" if reset else " (peak not resettable: since start)"))
    say(f"    process tree (with media workers and ffmpeg), {samples} samples: before "
        f"{tree_before[0] / 1024:.1f} MiB, peak growth while PATCHing {tree_patch_growth:.1f} MiB, "
        f"while finishing {tree_finish_growth:.1f} MiB (the media workers and ffmpeg alone: "
        f"{media_growth:.1f} MiB)")
    name = f"resumable {size / inputs.MIB:.0f} MiB, {label}"
    return [Row(f"{name}: answer", f"md5 {'ok' if ok else 'wrong'}", "md5 ok",
                "PASS" if ok else "MISS"),
            at_most(f"{name}: server peak RSS growth", growth, TARGET_MIB, "{:.1f}", "{:.0f}",
                    " MiB"),
            at_most(f"{name}: tree peak RSS growth, PATCHes", tree_patch_growth, TARGET_MIB,
                    "{:.1f}", "{:.0f}", " MiB"),
            Row(f"{name}: tree peak RSS growth, finish", f"{tree_finish_growth:.1f} MiB"),
            Row(f"{name}: media workers' peak RSS growth, finish", f"{media_growth:.1f} MiB"),
            Row(f"{name}: PATCH speed", f"{speed:.0f} MB/s"),
            Row(f"{name}: finish", f"{finished:.1f} s")]


def _sent(client: Client, file: Path, chunk: int) -> str:
    location = client.create(file.stat().st_size, file.name)
    client.patch_all(location, file, chunk)
    return location


def part(s: Session) -> list[Row]:
    """The run.py part: the same file to each pair, one server at a time."""
    ins = s.prepared()
    mib = s.args.big_mib
    video = inputs.make_big_video(s.inputs_dir / f"big-{mib}.mp4", mib * inputs.MIB, log=say)
    size = video.stat().st_size
    say(f"\n== resumable: a {size / inputs.MIB:.0f} MiB video through tus in 32 MiB PATCHes, "
        "then finished")
    sent_md5 = figures.md5_of(video)
    common = {"IMGZ_MAX_UPLOAD_MB": str(size // 1_000_000 + 200), "IMGZ_FFMPEG_TIMEOUT": "1800"}
    rows = run_one(s, "SQLite + local disk", "resumable-local", common, video, ins.small_mp4,
                   sent_md5)
    _, url = s.engines.database()
    settings = scale_env(url, s.engines.bucket(), **common)
    rows += run_one(s, "PostgreSQL + SeaweedFS", "resumable-s3", settings, video, ins.small_mp4,
                    sent_md5)
    return rows
