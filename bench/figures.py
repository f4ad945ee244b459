"""The one-off measurements: a very large upload's memory and disk, the video frame step, the
expiry sweep and the start-up time on a full data dir."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import inputs
import load
import procs

MIB = 1 << 20


# ---------------------------------------------------------------------------------------------
# Memory and disk during one very large upload

class DiskSampler:
    """Every `interval` s: the bytes allocated under the watched folders, plus the files the
    server holds open after unlinking them there (waitress spools bodies to anonymous temp
    files that no directory listing shows). Each inode counts once, as du counts it."""

    def __init__(self, folders: list[Path], pid: int, interval: float = 0.2) -> None:
        self.folders = folders
        self.prefixes = tuple(str(f.resolve()) for f in folders)
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self.peak_hidden = 0
        self.peak_visible = 0     # what du alone shows
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> DiskSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        seen: dict[tuple[int, int], int] = {}
        for folder in self.folders:
            for root, _dirs, files in os.walk(folder):
                for name in files:
                    try:
                        st = os.lstat(os.path.join(root, name))
                    except OSError:
                        continue
                    seen[(st.st_dev, st.st_ino)] = st.st_blocks * 512
        hidden = 0
        for fd, target in _open_files(self.pid):
            if target.endswith(" (deleted)") and target.startswith(self.prefixes):
                try:
                    st = os.stat(f"/proc/{self.pid}/fd/{fd}")
                except OSError:
                    continue
                key = (st.st_dev, st.st_ino)
                if key not in seen:
                    seen[key] = st.st_blocks * 512
                    hidden += st.st_blocks * 512
        total = sum(seen.values())
        self.samples += 1
        self.peak_visible = max(self.peak_visible, total - hidden)
        if total > self.peak:
            self.peak, self.peak_hidden = total, hidden


def _open_files(pid: int) -> list[tuple[str, str]]:
    found = []
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return found
    for fd in fds:
        try:
            found.append((fd, os.readlink(f"/proc/{pid}/fd/{fd}")))
        except OSError:
            pass
    return found


@dataclass(frozen=True)
class MemoryResult:
    size: int
    status: int
    checksum_ok: bool
    checksum_note: str
    rss_before_kib: int
    hwm_kib: int
    peak_reset: bool
    disk_peak: int
    disk_hidden: int
    disk_visible: int
    samples: int
    seconds: float
    sent: float = 0.0     # seconds until the last byte of the body was sent
    cpu: float = 0.0      # user + sys seconds of the server and its descendants for the upload

    @property
    def answer_ratio(self) -> float:
        """The answer's time divided by the time the body took to arrive."""
        return self.seconds / self.sent if self.sent else float("nan")

    @property
    def growth_mib(self) -> float:
        return (self.hwm_kib - self.rss_before_kib) / 1024

    @property
    def copies(self) -> float:
        # two decimals: the thumbnails and the frame beside two full copies are not a third copy
        return round(self.disk_peak / self.size, 2)


def tree_cpu(pid: int) -> float:
    """User + sys seconds of a process and its descendants, those still running and those
    waited for (an ffmpeg run), from /proc."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = sum(int(v) for v in fields[11:15]) / tick
    total = 0.0
    for proc, spent in times.items():
        at = proc
        while at not in (pid, 0, 1) and at in parents:
            at = parents[at]
        if at == pid:
            total += spent
    return total


def _holds(path: Path, needle: bytes) -> bool:
    """Whether a file holds these bytes, read a MiB at a time."""
    tail = b""
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            if needle in tail + chunk[:len(needle)] or needle in chunk:
                return True
            tail = chunk[-len(needle):]
    return False


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def memory_run(pool: procs.Pool, work: Path, video: Path, warmup: Path,
               log=print) -> MemoryResult:
    """Upload `video` to a fresh imgz; peak RSS growth of the server and peak disk use."""
    size = video.stat().st_size
    sent_md5 = md5_of(video)
    data = work / "memory-data"
    settings = {"IMGZ_MAX_UPLOAD_MB": str(size // 1_000_000 + 200), "IMGZ_FFMPEG_TIMEOUT": "1800"}
    child, base, key = procs.start_imgz(pool, data, work / "imgz-memory.log", settings=settings)
    url = base + "/api/1/upload"
    headers = {"X-API-Key": key}
    try:
        # One small video first: imports and first-use allocations are not the big file's doing.
        small = load.multipart(warmup)
        status, answer = load.post(url, small.payload(), small.length, small.content_type, headers)
        if status != 200:
            raise RuntimeError(f"warm-up upload failed: {status} {answer[:300]!r}")
        time.sleep(1)
        peak_reset = procs.reset_peak(child.pid)
        before = procs.kib(child.pid, "VmRSS" if peak_reset else "VmHWM")
        body = load.multipart(video)
        sent_at: list[float] = []

        def sending():
            yield from body.chunks()
            sent_at.append(time.perf_counter())

        cpu_before = tree_cpu(child.pid)
        started = time.perf_counter()
        with DiskSampler([data / "tmp", data / "images"], child.pid) as sampler:
            status, answer = load.post(url, sending(), body.length, body.content_type,
                                       headers, timeout=3600)
        took = time.perf_counter() - started
        sent = (sent_at[0] - started) if sent_at else 0.0
        cpu = tree_cpu(child.pid) - cpu_before
        hwm = procs.kib(child.pid, "VmHWM")
        # the stored file itself: its md5, and whether the location in the sent one is gone
        stored = max((p for p in (data / "images").rglob("*") if p.is_file()),
                     key=lambda p: p.stat().st_size, default=None)
        stored_md5 = md5_of(stored) if stored is not None else ""
        location_left = stored is not None and _holds(stored, b"+48.8584")
    finally:
        pool.stop(child)
        shutil.rmtree(data, ignore_errors=True)
    checksum_ok, note = False, f"HTTP {status}: {answer[:200]!r}"
    if status == 200:
        image = json.loads(answer)["image"]
        received = image["source_checksum"] or image["checksum"]
        checksum_ok = received == sent_md5
        which = "source_checksum" if image["source_checksum"] else "checksum"
        note = f"{which} {received} {'=' if checksum_ok else '!='} md5 sent {sent_md5}"
        checksum_ok = checksum_ok and image["checksum"] == stored_md5
        note += (f"; checksum {'=' if image['checksum'] == stored_md5 else '!='} md5 of the "
                 f"stored file; location {'LEFT in' if location_left else 'gone from'} it")
    return MemoryResult(size, status, checksum_ok, note, before, hwm, peak_reset, sampler.peak,
                        sampler.peak_hidden, sampler.peak_visible, sampler.samples, took, sent, cpu)


# ---------------------------------------------------------------------------------------------
# The video frame step, in process, against a bare ffmpeg

@dataclass(frozen=True)
class FrameResult:
    probe: float           # medians, seconds
    frame: float
    variants: float | None
    remux: float | None
    bare: float
    ratio: float           # median of per-pair frame / bare
    at: float


def frame_timing(clip: Path, work: Path, repeats: int) -> FrameResult:
    from imgz import video

    folder = work / "frame"
    folder.mkdir(parents=True, exist_ok=True)
    probes, frames, bares, ratios, variants, remuxes = [], [], [], [], [], []
    probe = None
    for _ in range(repeats):
        started = time.perf_counter()
        probe = video.probe_video(clip, "mp4", timeout=120)
        probes.append(time.perf_counter() - started)
    assert probe is not None
    at = probe.seconds / 4
    ffmpeg = inputs.ffmpeg()
    for i in range(repeats):
        dest = folder / f"frame-{i}.jpeg"
        started = time.perf_counter()
        video._extract_frame(clip, probe, dest, time.monotonic() + 120, 100_000_000)
        frames.append(time.perf_counter() - started)
        out = folder / f"bare-{i}.jpg"
        started = time.perf_counter()
        subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-y", "-ss", f"{at:.3f}",
                        "-i", str(clip), "-frames:v", "1", str(out)], check=True)
        bares.append(time.perf_counter() - started)
        ratios.append(frames[-1] / bares[-1])
        # For context, the other steps of a video upload (private helpers: skipped if renamed).
        sub = folder / f"steps-{i}"
        sub.mkdir()
        if (make_variants := getattr(video, "_frame_variants", None)) is not None:
            started = time.perf_counter()
            make_variants(dest, sub, 100_000_000)
            variants.append(time.perf_counter() - started)
        if (remux := getattr(video, "_remux", None)) is not None:
            started = time.perf_counter()
            remux(clip, probe, sub / "original.mp4", time.monotonic() + 120)
            remuxes.append(time.perf_counter() - started)
    return FrameResult(statistics.median(probes), statistics.median(frames),
                       statistics.median(variants) if variants else None,
                       statistics.median(remuxes) if remuxes else None,
                       statistics.median(bares), statistics.median(ratios), at)


# ---------------------------------------------------------------------------------------------
# Expiry sweep and start-up

def expiry_run(work: Path, count: int) -> tuple[int, float]:
    import expiry_sweep

    data = work / "expiry-data"
    try:
        removed, took, left, files_left = expiry_sweep.measure(data, count)
    finally:
        shutil.rmtree(data, ignore_errors=True)
    if removed != count or left != count or files_left != 2 * count:
        raise RuntimeError(f"sweep removed {removed} of {count}; {left} uploads, "
                           f"{files_left} files left")
    return removed, took


def populate_live(data: Path, count: int) -> float:
    """A data dir holding count live uploads (rows and two tiny files each); returns seconds."""
    import expiry_sweep
    from imgz import config, db
    from imgz.web import init_data
    from imgz.service import Service

    cfg = config.load({}, overrides={"data": str(data), "min_free_mb": "0"})
    init_data(cfg)
    service = Service(cfg, db.LocalConnections(cfg.db).get)
    started = time.perf_counter()
    expiry_sweep.populate(service, count, False, datetime.now(timezone.utc))
    return time.perf_counter() - started


def startup_run(pool: procs.Pool, work: Path, count: int, repeats: int,
                log=print) -> list[float]:
    """Seconds from spawning ``app.py serve`` to its first 200 on ``/``, once per repeat."""
    data = work / "startup-data"
    try:
        took = populate_live(data, count)
        log(f"  {count:,} uploads written in {took:.0f} s")
        times = []
        for i in range(repeats):
            port = procs.free_port()
            env = procs.clean_env(IMGZ_MIN_FREE_MB="0")
            started = time.perf_counter()
            child = pool.add(procs.Child("imgz-startup", procs.imgz_command(data, port),
                                         work / "imgz-startup.log", env, procs.ROOT))
            ok = procs.wait_http(f"http://{procs.HOST}:{port}/", 30, child, interval=0.005)
            times.append(time.perf_counter() - started if ok else float("inf"))
            pool.stop(child)
            log(f"  start {i + 1}: first 200 after {times[-1]:.2f} s")
        return times
    finally:
        shutil.rmtree(data, ignore_errors=True)
