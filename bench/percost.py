"""What one upload costs the server beside the media work it has to do.

    .venv/bin/python bench/run.py --only percost [--quick] [--cases png,jpeg,gif,mp4]

Per upload kind (the 1920x1080 PNG screenshot, the 12 MP JPEG with EXIF and GPS, the 100-frame
GIF, the 30 s MP4):

- the media work done here, in this process, by imgz's own functions on the same file, as the
  server does it: the upload written through the spool's writer (md5, and a JPEG's metadata
  dropped on the way), the type sniffed, ``render.image`` or ``render.clip`` (probe, strip,
  decode, variants, a video's remux and frame), the stored original's md5 when it changed. Its
  CPU is this process's plus that of the programs it ran (ffmpeg), the median of runs made
  before, between and after the server's;
- the server's CPU per upload at concurrency 1 and 8: user + system time of the server, its fork
  server, media workers and their programs (each live process's own and reaped children's
  time, from /proc), over a timed run, divided by the uploads answered 200;
- their ratio (target ≤ 1.3 for the images), the throughput, and at concurrency 1 the median
  latency of one upload against the media work's wall time here (target ≤ 1.5): on a machine
  shared with other work both wait alike for a core, which CPU time alone would not show.

Then a video of ``--big-mib`` MiB with location and title tags in its container: the time until
its last byte was sent (received), until the answer came (answered), their ratio (target ≤ 2),
the server's peak RSS growth (≤ 16 MiB), its checksums, and whether location tags are left.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import resource
import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import inputs
import load
import procs
from report import Row, at_most, say

if TYPE_CHECKING:
    from run import Session

MIB = 1 << 20
CASES = (("png", "PNG 1920x1080"), ("jpeg", "JPEG 12 MP EXIF+GPS"), ("gif", "GIF 100 frames"),
         ("mp4", "MP4 30 s 720p"))
HELD = {"png", "jpeg", "gif"}     # the kinds the CPU and latency targets hold for
CPU_TARGET = 1.3
LATENCY_TARGET = 1.5
ANSWER_TARGET = 2.0
RSS_TARGET_MIB = 16
PART_CHUNK = 64 * 1024            # the size of the pieces the spool is fed, as a form parser does
LOCATION_ATOMS = (b"\xa9xyz", b"com.apple.quicktime.location")


# ---------------------------------------------------------------------------------------------
# CPU of a process tree

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds of the process and its reaped children), or None when gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # after the name: state ppid ... utime(11) stime(12) cutime(13) cstime(14)
    return int(fields[1]), sum(int(f) for f in fields[11:15]) / _TICK


def tree_cpu(root: int) -> float:
    """CPU seconds of root and every live descendant, with the children each has reaped: a
    worker that was replaced counts in its parent's, an ffmpeg that ended in its worker's."""
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) is not None:
            stats[int(entry)] = st
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += stats[pid][1]
            todo += children.get(pid, [])
    return total


def _own_cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


# ---------------------------------------------------------------------------------------------
# The media work, in process

@dataclass(frozen=True)
class Work:
    cpu: float      # seconds, median
    wall: float


def media_work(file: Path, data: Path) -> None:
    """What the server's spool, service and worker do to this file's bytes, minus HTTP, the
    database, fsyncs and the hand-over to a worker."""
    from imgz import config, disk, filetype, render, scratch, spool
    from imgz.service import VIDEO_FORMATS, _stored_ext

    cfg = config.load({"IMGZ_DATA": str(data)})
    limits = render.Limits(cfg.max_pixels, cfg.max_animation_pixels, cfg.keep_exif,
                           cfg.ffmpeg_timeout)
    writer = spool.upload_writer(data, cfg.max_upload_bytes, cfg.max_upload_mb, cfg.keep_exif)
    try:
        with open(file, "rb") as fh:
            while chunk := fh.read(PART_CHUNK):
                writer.write(chunk)
        stripped = writer.finish()
        writer.close()
        fmt = filetype.sniff(writer.path)
        work = scratch.new_work_dir(data)
        try:
            if fmt in VIDEO_FORMATS:
                made = render.clip(writer.path, fmt, limits, work)
            else:
                made = render.image(writer.path, fmt, _stored_ext(fmt, file.name), None,
                                    stripped if fmt == "jpeg" else None, limits, work)
            if made.changed and not made.md5:
                disk.md5_file(made.original.path)
        finally:
            scratch.remove_work_dir(work)
    finally:
        writer.discard()


class MediaTimer:
    """Times the media work of one file in turns (before, between and after the server's runs,
    so that what else the machine does weighs on both alike); ``result`` is the median."""

    def __init__(self, file: Path, data: Path) -> None:
        self.file, self.data = file, data
        self.cpus: list[float] = []
        self.walls: list[float] = []
        media_work(file, data)  # imports and first-use tables are not the file's doing

    def measure(self, repeats: int) -> None:
        for _ in range(repeats):
            cpu, wall = _own_cpu(), time.perf_counter()
            media_work(self.file, self.data)
            self.cpus.append(_own_cpu() - cpu)
            self.walls.append(time.perf_counter() - wall)

    def result(self) -> Work:
        return Work(statistics.median(self.cpus), statistics.median(self.walls))


# ---------------------------------------------------------------------------------------------
# The server's side

@dataclass(frozen=True)
class Served:
    uploads: int
    rate: float             # uploads/s
    cpu: float              # server CPU seconds per upload
    latency: float | None   # median seconds of one upload (concurrency 1)


def sequential(url: str, body: load.Multipart, payload: bytes, headers: dict[str, str],
               seconds: float, pid: int) -> Served:
    """One client, one upload after another on a kept-alive connection, each timed."""
    host, port, _ = procs.split_url(url)
    conn = http.client.HTTPConnection(host, port, timeout=300)
    times: list[float] = []
    try:
        cpu = tree_cpu(pid)
        started = time.perf_counter()
        while time.perf_counter() - started < seconds or len(times) < 3:
            sent = time.perf_counter()
            status, answer = load.post(url, payload, len(payload), body.content_type, headers,
                                       conn=conn)
            if status != 200:
                raise RuntimeError(f"HTTP {status}: {answer[:300]!r}")
            times.append(time.perf_counter() - sent)
        took = time.perf_counter() - started
        spent = tree_cpu(pid) - cpu
    finally:
        conn.close()
    return Served(len(times), len(times) / took, spent / len(times), statistics.median(times))


def concurrent(url: str, body: load.Multipart, payload: bytes, headers: dict[str, str],
               seconds: float, concurrency: int, pid: int) -> Served:
    cpu = tree_cpu(pid)
    result = load.upload_run(url, body, headers, concurrency=concurrency, seconds=seconds,
                             payload=payload)
    spent = tree_cpu(pid) - cpu
    if result.errors or not result.requests:
        raise RuntimeError(f"{result.errors} failed uploads; first: {result.first_error}")
    return Served(result.requests, result.rate, spent / result.requests, None)


# ---------------------------------------------------------------------------------------------
# A big video with its metadata in the container

def tagged_video(big: Path, dest: Path, log=say) -> Path:
    """``big`` with a location, a title and a comment in its container (stream copy)."""
    if dest.exists():
        return dest
    log(f"  tagging {big.name} with a location and a title")
    part = dest.with_name(dest.name + ".part")
    subprocess.run([inputs.ffmpeg(), "-hide_banner", "-nostdin", "-v", "error", "-y", "-i", str(big),
                    "-map", "0", "-c", "copy", "-metadata", "location=+48.8584+002.2945/",
                    "-metadata", "title=Seeded trip", "-metadata", "comment=made by the benchmark",
                    "-movflags", "+faststart", "-f", "mp4", str(part)], check=True, timeout=900)
    part.rename(dest)
    return dest


def container_tags(path: Path) -> list[bytes]:
    """Location tags found in an MP4's boxes other than the media data."""
    found = []
    with open(path, "rb") as fh:
        end = os.fstat(fh.fileno()).st_size
        at = 0
        while at + 8 <= end:
            fh.seek(at)
            head = fh.read(16)
            size, kind = int.from_bytes(head[:4], "big"), head[4:8]
            header = 8
            if size == 1:
                size, header = int.from_bytes(head[8:16], "big"), 16
            elif size == 0:
                size = end - at
            if size < header:
                break
            if kind not in (b"mdat", b"free", b"skip") and size <= 256 * MIB:
                fh.seek(at)
                box = fh.read(size)
                found += [atom for atom in LOCATION_ATOMS if atom in box]
            at += size
    return found


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        while chunk := fh.read(4 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class BigResult:
    size: int
    status: int
    received: float
    answered: float
    growth_mib: float
    checks: str
    ok: bool


def big_video(s: Session, video: Path) -> BigResult:
    size = video.stat().st_size
    sent_md5 = md5_of(video)
    data = s.work / "percost-big"
    settings = {"IMGZ_MAX_UPLOAD_MB": str(size // 1_000_000 + 200), "IMGZ_FFMPEG_TIMEOUT": "1800"}
    child, base, key = procs.start_imgz(s.pool, data, s.work / "imgz-percost-big.log",
                                        settings=settings)
    url = base + "/api/1/upload"
    headers = {"X-API-Key": key}
    try:
        small = load.multipart(s.prepared().small_mp4)
        status, answer = load.post(url, small.payload(), small.length, small.content_type, headers)
        if status != 200:
            raise RuntimeError(f"warm-up upload failed: {status} {answer[:300]!r}")
        time.sleep(1)
        reset = procs.reset_peak(child.pid)
        before = procs.kib(child.pid, "VmRSS" if reset else "VmHWM")
        body = load.multipart(video)
        host, port, path = procs.split_url(url)
        conn = http.client.HTTPConnection(host, port, timeout=3600)
        try:
            started = time.perf_counter()
            conn.request("POST", path, body=body.chunks(), headers={
                **headers, "Content-Type": body.content_type, "Content-Length": str(body.length)})
            received = time.perf_counter() - started   # the last byte is in the server's socket
            response = conn.getresponse()
            answer = response.read()
            answered = time.perf_counter() - started
            status = response.status
        finally:
            conn.close()
        growth = (procs.kib(child.pid, "VmHWM") - before) / 1024
        checks, ok = f"HTTP {status}: {answer[:200]!r}", False
        if status == 200:
            image = json.loads(answer)["image"]
            stored = data / "images" / image["url"].split("/images/", 1)[1]
            stored_md5 = md5_of(stored)
            source = image["source_checksum"] or image["checksum"]
            left = container_tags(stored)
            ok = source == sent_md5 and image["checksum"] == stored_md5 and not left
            checks = (f"md5 sent {'right' if source == sent_md5 else 'WRONG'}, stored "
                      f"{'right' if image['checksum'] == stored_md5 else 'WRONG'}, "
                      f"{'location left ' + str(left) if left else 'no location'}"
                      f" ({'changed' if image['source_checksum'] else 'as sent'})")
    finally:
        s.pool.stop(child)
        shutil.rmtree(data, ignore_errors=True)
    return BigResult(size, status, received, answered, growth, checks, ok)


# ---------------------------------------------------------------------------------------------

def part(s: Session) -> list[Row]:
    ins = s.prepared()
    a = s.args
    repeats = 2 if a.quick else 3
    seconds = a.upload_seconds
    files = {"png": ins.png, "jpeg": ins.jpeg, "gif": ins.gif, "mp4": ins.mp4}
    scratch_data = s.work / "percost-inproc"
    scratch_data.mkdir(parents=True, exist_ok=True)
    child, base, key = procs.start_imgz(s.pool, s.work / "percost-data", s.work / "imgz-percost.log",
                                        settings={"IMGZ_MAX_UPLOAD_MB": "2000",
                                                  "IMGZ_THREADS": str(a.threads)})
    url, headers = base + "/api/1/upload", {"X-API-Key": key}
    rows: list[Row] = []
    say(f"\n== per-upload cost: server CPU (server, workers, ffmpeg) per upload against the same "
        f"file's media work in process; {seconds:g} s at concurrency 1 and {a.concurrency}")
    try:
        for case, label in CASES:
            if case not in a.cases:
                continue
            file = files[case]
            timer = MediaTimer(file, scratch_data)
            timer.measure(repeats)
            body = load.multipart(file)
            payload = body.payload()
            for _ in range(2):   # warm the server and its workers up
                status, answer = load.post(url, payload, len(payload), body.content_type, headers)
                if status != 200:
                    raise RuntimeError(f"{label}: HTTP {status}: {answer[:300]!r}")
            one = sequential(url, body, payload, headers, seconds, child.pid)
            timer.measure(repeats)
            many = concurrent(url, body, payload, headers, seconds, a.concurrency, child.pid)
            timer.measure(repeats)
            work = timer.result()
            say(f"-- {label} ({file.stat().st_size / 1e6:.1f} MB): media work in process "
                f"{work.cpu * 1000:.0f} ms CPU ({work.wall * 1000:.0f} ms wall)")
            for name, served in (("1", one), (str(a.concurrency), many)):
                say(f"   c={name}: {served.rate:.2f} uploads/s ({served.uploads}), server CPU "
                    f"{served.cpu * 1000:.0f} ms an upload = {served.cpu / work.cpu:.2f}× the media work"
                    + (f"; latency median {served.latency * 1000:.0f} ms = "
                       f"{served.latency / work.wall:.2f}× the media work's wall time"
                       if served.latency is not None else ""))
                figure = f"{label} c={name}: server CPU ÷ media work"
                ratio = served.cpu / work.cpu
                rows.append(at_most(figure, ratio, CPU_TARGET, "{:.2f}") if case in HELD
                            else Row(figure, f"{ratio:.2f}"))
                rows.append(Row(f"{label} c={name}: uploads/s; server / media CPU ms",
                                f"{served.rate:.2f}; {served.cpu * 1000:.0f} / {work.cpu * 1000:.0f}"))
            figure = (f"{label} c=1: latency ÷ media work wall time ({one.latency * 1000:.0f} / "
                      f"{work.wall * 1000:.0f} ms)")
            ratio = one.latency / work.wall
            rows.append(at_most(figure, ratio, LATENCY_TARGET, "{:.2f}") if case in HELD
                        else Row(figure, f"{ratio:.2f}"))
    finally:
        s.pool.stop(child)
        shutil.rmtree(scratch_data, ignore_errors=True)
    if "mp4" in a.cases:
        mib = a.big_mib
        say(f"\n== per-upload cost: one video of at least {mib} MiB, its container tagged")
        big = inputs.make_big_video(s.inputs_dir / f"big-{mib}.mp4", mib * MIB, log=say)
        r = big_video(s, tagged_video(big, s.inputs_dir / f"big-{mib}-tagged.mp4"))
        say(f"  {r.size / MIB:.0f} MiB: received in {r.received:.2f} s, answered after "
            f"{r.answered:.2f} s ({r.answered / r.received:.2f}×); peak RSS +{r.growth_mib:.1f} MiB; "
            f"{r.checks}")
        rows.append(at_most(f"{r.size / MIB:.0f} MiB tagged MP4: answer ÷ receive time "
                            f"({r.answered:.1f} / {r.received:.1f} s)", r.answered / r.received,
                            ANSWER_TARGET, "{:.2f}"))
        rows.append(at_most(f"{r.size / MIB:.0f} MiB tagged MP4: peak RSS growth", r.growth_mib,
                            RSS_TARGET_MIB, "{:.1f}", "{:.0f}", " MiB"))
        rows.append(Row(f"{r.size / MIB:.0f} MiB tagged MP4: answer", r.checks,
                        "md5s right, no location", "PASS" if r.ok else "MISS"))
    return rows
