"""Crash safety through real servers: SIGKILL in the middle of uploads, a full disk, and a key
revoked by the command line while the server runs.

After a kill the restarted server must have an empty ``tmp``, serve every file of every row
complete (the original with its checksum), and ``check`` may report only orphan files, which
``check --repair`` clears.
"""
from __future__ import annotations

import base64
import gc
import hashlib
import io
import os
import signal
import sqlite3
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from PIL import Image

import media
from conftest import LiveServer
from contract import assert_error, assert_upload_ok

CLIENTS = 8
NO_STORAGE = (507, 400, "Not enough storage")


# ---------------------------------------------------------------------------------------------
# Killing a server with everything it started

def _children() -> dict[int, list[int]]:
    found: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        found.setdefault(ppid, []).append(int(entry))
    return found


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def kill_hard(srv: LiveServer) -> None:
    """SIGKILL the server, then the processes it had started (ffmpeg), each by its own id."""
    tree = _children()
    started, todo = [], [srv.pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            started.append((child, _cmdline(child)))
            todo.append(child)
    os.kill(srv.pid, signal.SIGKILL)
    srv.proc.wait(timeout=10)
    for pid, cmdline in started:
        # Killed only if the id still names the same program: ids are reused.
        if cmdline and _cmdline(pid) == cmdline:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# ---------------------------------------------------------------------------------------------
# What a consistent store looks like

def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def verify_store(srv: LiveServer, answered: list[dict], seen: dict[str, str] | None = None) -> int:
    """Every file of every row serves complete; every answered upload is still there.

    ``seen`` maps paths verified before to their md5, so an unchanged variant is not decoded
    again. Returns how many files were checked.
    """
    seen = {} if seen is None else seen
    with closing(sqlite3.connect(srv.db)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        uploads = {row[0]: row[1:] for row in conn.execute(
            "SELECT id, folder, name, extension, checksum, size, thumb_size, medium_size, frame_size"
            " FROM uploads")}
        files = conn.execute("SELECT path, upload_id FROM files").fetchall()
    session = requests.Session()
    for path, upload_id in files:
        folder, name, extension, checksum, size, thumb, medium, frame = uploads[upload_id]
        response = session.get(f"{srv.url}/images/{path}", timeout=30)
        assert response.status_code == 200, path
        body = response.content
        digest = md5(body)
        if path == f"{folder}/{name}.{extension}":
            assert len(body) == size and digest == checksum, path
        elif seen.get(path) != digest:
            variant = path[len(folder) + len(name) + 2:].split(".")[0]
            assert len(body) == {"th": thumb, "md": medium, "fr": frame}[variant], path
            with Image.open(io.BytesIO(body)) as im:
                im.load()  # a half-written variant would not decode
        seen[path] = digest
    for image in answered:
        # Answered by an earlier server on another port: the path is what stays.
        response = session.get(srv.url + urlsplit(image["url"]).path, timeout=30)
        assert response.status_code == 200, image["url"]
        assert md5(response.content) == image["checksum"]
    return len(files)


def check_report(srv: LiveServer, *args: str) -> tuple[int, list[str], list[str]]:
    """Run ``check``; return its exit status, orphan lines and missing-file lines."""
    result = srv.command("check", *args)
    lines = result.stdout.splitlines()
    return (result.returncode, [line for line in lines if line.startswith("orphan file")],
            [line for line in lines if line.startswith("missing file")])


# ---------------------------------------------------------------------------------------------
# (1) SIGKILL in the middle of uploads, round after round on the same data dir

@pytest.fixture(scope="module")
def heavy_files() -> list[tuple[str, bytes]]:
    """Uploads that take a while to process, so a kill finds several in flight."""
    with ThreadPoolExecutor(2) as makers:  # the clips are made by ffmpeg while Pillow encodes
        clips = [makers.submit(media.clip, "mp4", size="640x480", seconds=2, rate=25),
                 makers.submit(media.clip, "webm", size="320x240", seconds=2),
                 makers.submit(media.clip, "mov", size="320x240", seconds=1)]
        return [
            ("photo.jpg", media.jpeg(2000, 1500, quality=60)),
            ("screen.png", media.screenshot(1920, 1080)),
            ("anim.gif", media.gif_octree(300, 200, frames=8)),
            ("movie.mp4", clips[0].result()),
            ("movie.webm", clips[1].result()),
            ("photo.webp", media.webp(1000, 750, lossless=False)),
            ("movie.mov", clips[2].result()),
        ]


def _burst(srv: LiveServer, files: list[tuple[str, bytes]], answered: list[dict],
           stop: threading.Event) -> list[threading.Thread]:
    def client(index: int) -> None:
        session = requests.Session()
        n = index
        while not stop.is_set():
            filename, data = files[n % len(files)]
            n += CLIENTS
            try:
                response = session.post(srv.url + "/api/1/upload", headers={"X-API-Key": srv.key},
                                        files={"source": (filename, data)}, timeout=60)
            except requests.RequestException:
                return  # the server is gone
            if response.status_code == 200:
                answered.append(response.json()["image"])

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
    for i, thread in enumerate(threads):
        thread.start()
        time.sleep(0.02 * i)  # the clients' uploads out of step with each other
    return threads


# Each round kills the server at another moment after its burst began, from 0.3 to 0.9 s, on
# the store the rounds before left: the default run takes the two ends of that span, the slow
# run (-m slow) five moments.
@pytest.mark.parametrize("rounds", [2, pytest.param(5, marks=pytest.mark.slow)])
def test_sigkill_during_uploads_leaves_a_consistent_store(tmp_path, heavy_files, rounds):
    data = tmp_path / "data"
    srv = LiveServer(data)
    key = srv.key
    answered: list[dict] = []
    seen: dict[str, str] = {}
    figures = []
    try:
        for round_no in range(rounds):
            stop = threading.Event()
            threads = _burst(srv, heavy_files, answered, stop)
            time.sleep(0.3 + 0.6 * round_no / (rounds - 1))
            kill_hard(srv)
            stop.set()
            for thread in threads:
                thread.join(timeout=60)

            srv = LiveServer(data)
            srv.key = key
            assert srv.tmp_files() == [], f"round {round_no}: tmp not cleaned at start-up"
            with ThreadPoolExecutor(1) as beside:  # the command reads while the files are fetched
                checking = beside.submit(check_report, srv)
                files_checked = verify_store(srv, answered, seen)
                status, orphans, missing = checking.result()
            assert missing == [], f"round {round_no}: rows whose file is gone: {missing}"
            assert status == (1 if orphans else 0)
            if orphans:
                repair_status, _, _ = check_report(srv, "--repair")
                assert repair_status == 0
                # The repair removed orphans only: every row still has all its files.
                assert verify_store(srv, answered, seen) == files_checked
                assert check_report(srv) == (0, [], [])
            # (without orphans the check above found nothing at all already)
            figures.append((round_no, len(answered), files_checked, len(orphans)))
        # Still a working server after all that.
        assert_upload_ok(srv.upload(media.png(40, 30)))
    finally:
        srv.stop()
    for round_no, uploads, files, orphans in figures:
        print(f"SIGKILL round {round_no}: {uploads} uploads answered so far, {files} files "
              f"verified, {orphans} orphan file(s) found and repaired")
    print(f"SIGKILL rounds: {len(figures)}, orphans found in total: {sum(f[3] for f in figures)}")
    assert len(figures) == rounds and answered


# ---------------------------------------------------------------------------------------------
# (2) A full disk: a tiny tmpfs as the data dir

@pytest.fixture
def tiny_disk(tmp_path):
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount_point)],
                       check=True, capture_output=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mount_point
    finally:
        # Connections this process opened to count rows map the database's -shm file until
        # they are collected.
        gc.collect()
        for _ in range(50):
            if subprocess.run(["umount", str(mount_point)], capture_output=True,
                              timeout=20).returncode == 0:
                break
            time.sleep(0.1)
        else:
            subprocess.run(["umount", "--lazy", str(mount_point)], capture_output=True, timeout=20)


def free_bytes(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def _assert_consistent(srv: LiveServer) -> None:
    assert srv.tmp_files() == []
    assert check_report(srv) == (0, [], [])
    verify_store(srv, [])
    assert requests.get(srv.url + "/", timeout=5).status_code == 200


def test_uploads_that_do_not_fit_answer_507(tiny_disk):
    srv = LiveServer(tiny_disk / "data", {"IMGZ_MIN_FREE_MB": "0"})
    try:
        big = media.png(700, 600)  # about 1 MB, stored with a medium and a thumb
        outcomes = []
        for _ in range(10):
            rows, files = srv.rows(), srv.stored_files()
            response = srv.upload(big)
            outcomes.append(response.status_code)
            if response.status_code != 200:
                assert_error(response, *NO_STORAGE)
                assert srv.rows() == rows and srv.stored_files() == files
                assert srv.tmp_files() == []
        assert 200 in outcomes and 507 in outcomes, outcomes
        _assert_consistent(srv)
        assert_upload_ok(srv.upload(media.png(16, 16)))
        _assert_consistent(srv)
    finally:
        srv.stop()


@pytest.mark.parametrize("left", [0, 4096, 16384])
def test_a_disk_full_to_the_last_bytes(tiny_disk, left):
    srv = LiveServer(tiny_disk / "data", {"IMGZ_MIN_FREE_MB": "0"})
    filler = tiny_disk / "filler"
    try:
        assert_upload_ok(srv.upload(media.png(40, 30)))
        with open(filler, "wb") as fh:
            try:
                fh.write(b"\0" * max(free_bytes(tiny_disk) - left, 0))
            except OSError:
                pass  # full already: that is the point
        rows, files = srv.rows(), srv.stored_files()
        response = srv.upload(media.png(40, 30))
        if left == 0 or response.status_code != 200:
            assert_error(response, *NO_STORAGE)
            assert srv.rows() == rows and srv.stored_files() == files
        assert srv.tmp_files() == []
        assert requests.get(srv.url + "/", timeout=5).status_code == 200
        filler.unlink()
        _assert_consistent(srv)
        assert_upload_ok(srv.upload(media.png(40, 30)))
    finally:
        filler.unlink(missing_ok=True)
        srv.stop()


def test_min_free_above_the_free_space_refuses_uploads(make_server, tmp_path):
    needed_mb = free_bytes(tmp_path) // 1_000_000 + 1_000
    srv = make_server(min_free_mb=str(needed_mb))
    png = media.png(40, 30)
    for response in (srv.upload(png), srv.upload(base64.b64encode(png).decode())):
        assert_error(response, *NO_STORAGE)
    assert srv.rows() == 0 and srv.stored_files() == [] and srv.tmp_files() == []
    assert requests.get(srv.url + "/", timeout=5).status_code == 200


# ---------------------------------------------------------------------------------------------
# (3) A key revoked by the command line fails at once on a running server

def _key_id(srv: LiveServer, label: str) -> str:
    listing = srv.command("key", "list").stdout
    return next(line.split("\t")[0] for line in listing.splitlines() if f"\t{label}\t" in line)


def test_key_revoked_by_the_command_line_fails_at_once(make_server):
    srv = make_server()
    key = srv.command("key", "create", "--label", "to-revoke").stdout.strip()
    png = media.png(20, 20)
    session = requests.Session()  # one kept-alive connection, before and after the revocation

    def upload(**kwargs) -> requests.Response:
        return session.post(srv.url + "/api/1/upload", files={"source": ("a.png", png)},
                            timeout=30, **kwargs)

    assert_upload_ok(upload(headers={"X-API-Key": key}))
    assert session.get(srv.url + "/sharex.sxcu", headers={"X-API-Key": key}).status_code == 200

    results: list[tuple[float, int]] = []
    stop = threading.Event()
    answered = threading.Condition()

    def hammer() -> None:
        own = requests.Session()
        while not stop.is_set():
            started = time.monotonic()
            response = own.post(srv.url + "/api/1/upload", headers={"X-API-Key": key},
                                files={"source": ("a.png", png)}, timeout=30)
            with answered:
                results.append((started, response.status_code))
                answered.notify_all()

    def answers_since(moment: float) -> int:
        return sum(started > moment for started, _ in results)

    thread = threading.Thread(target=hammer, daemon=True)
    thread.start()
    key_id = _key_id(srv, "to-revoke")
    with answered:  # the key is in use when it is revoked
        assert answered.wait_for(lambda: answers_since(0) >= 3, timeout=30)
    assert srv.command("key", "revoke", key_id).returncode == 0
    revoked_at = time.monotonic()
    assert_error(upload(headers={"X-API-Key": key}), 401, 100, "Invalid API key.")
    assert_error(upload(params={"key": key}), 401, 100, "Invalid API key.")
    assert_error(upload(data={"key": key}), 401, 100, "Invalid API key.")
    assert_error(session.get(srv.url + "/sharex.sxcu", headers={"X-API-Key": key}), 401, 100,
                 "Invalid API key.")
    with answered:  # the running client sends a few more with the revoked key
        assert answered.wait_for(lambda: answers_since(revoked_at) >= 3, timeout=30)
    stop.set()
    thread.join(timeout=30)
    late = [status for started, status in results if started > revoked_at]
    assert late and set(late) == {401}
    assert any(status == 200 for started, status in results if started < revoked_at)
    assert srv.rows() == 1 + sum(status == 200 for _, status in results)
    assert srv.tmp_files() == []
    # The server's other keys keep working.
    assert_upload_ok(srv.upload(png))
