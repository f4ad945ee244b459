"""Scratch folders: each process writes in its own folder under tmp, and no other process takes it.

An upload is held in flight by a URL source whose host sends half the image and waits: the
server's spool file sits in its scratch folder meanwhile. Commands and a second ``serve`` run
against the same data dir; the upload must still be stored once the host sends the rest.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

import media
from commands import run_command
from conftest import ROOT, LiveServer
from contract import assert_upload_ok
from inprocess import Helpers, InProcess
from webhost import Held, WebHost

URL_ENV = {"IMGZ_URL_ALLOW_NETS": "127.0.0.1/32", "IMGZ_URL_TIMEOUT": "60"}


@pytest.fixture
def held() -> Iterator[Held]:
    """A PNG whose second half is sent only once released; its URL is ``held.url``."""
    with WebHost() as host:
        route = Held(media.png(300, 200))
        host.routes["/held.png"] = route
        route.url = host.url("/held.png")  # type: ignore[attr-defined]
        yield route
        route.release()


def run(data: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGZ_")}
    return subprocess.run([sys.executable, str(ROOT / "app.py"), "--data", str(data), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def run_here(data: Path, *args: str) -> subprocess.CompletedProcess:
    """``run`` in this process."""
    return run_command("--data", str(data), *args,
                       env={k: None for k in os.environ if k.startswith("IMGZ_")})


def start_held_upload(srv: Helpers, host: Held) -> list[Any]:
    """Start a URL upload and return once half of it sits in the server's scratch folder."""
    answers: list[Any] = []

    def send() -> None:
        try:
            answers.append(srv.upload(host.url, format="json"))
        except requests.RequestException as exc:
            answers.append(exc)

    threading.Thread(target=send, daemon=True).start()
    assert host.sending.wait(30), "the server never fetched the source"
    for _ in range(100):
        if srv.tmp_files():
            break
        threading.Event().wait(0.05)
    assert srv.tmp_files(), "the upload's spool file is not in the server's scratch folder"
    return answers


def finish(host: Held, answers: list[Any]) -> Any:
    host.release()
    for _ in range(600):
        if answers:
            break
        threading.Event().wait(0.05)
    assert answers, "the upload was never answered"
    return answers[0]


@pytest.mark.parametrize("args", [
    ["user", "list"], ["key", "list"], ["upload", "list"], ["check"], ["expire"],
    ["check", "--repair"],
], ids=lambda a: " ".join(a))
def test_a_command_run_during_an_upload_leaves_it_alone(tmp_path, held, args):
    srv = InProcess(tmp_path / "d", URL_ENV)
    try:
        answers = start_held_upload(srv, held)
        folders, files = srv.scratch_folders(), srv.tmp_files()
        result = run(srv.data, *args)
        kept = srv.scratch_folders(), srv.tmp_files()
        image = assert_upload_ok(finish(held, answers))
        assert result.returncode == 0, result.stderr
        assert kept == (folders, files)
        assert srv.rows() == 1 and any(image["filename"] in f for f in srv.stored_files())
        assert srv.tmp_files() == []
    finally:
        srv.stop()


def test_a_second_serve_that_cannot_listen_leaves_the_running_upload_alone(tmp_path, held):
    srv = InProcess(tmp_path / "d", URL_ENV)
    try:
        answers = start_held_upload(srv, held)
        folders, files = srv.scratch_folders(), srv.tmp_files()
        with socket.create_server(("127.0.0.1", 0)) as taken:  # its port is taken
            port = taken.getsockname()[1]
            second = run(srv.data, "serve", "--host", "127.0.0.1", "--port", str(port))
        kept = srv.scratch_folders(), srv.tmp_files()
        assert_upload_ok(finish(held, answers))
        assert second.returncode == 2 and "IMGZ_PORT" in second.stderr, second.stderr
        assert kept == (folders, files), "the failed start removed its own folder and nothing else"
        assert srv.rows() == 1 and srv.tmp_files() == []
    finally:
        srv.stop()


def test_a_killed_servers_folder_stays_until_the_next_start_removes_it(tmp_path, held):
    data = tmp_path / "d"
    srv = LiveServer(data, URL_ENV)
    key = srv.key
    try:
        start_held_upload(srv, held)
        dead = srv.scratch_folders()
        assert len(dead) == 1
        os.kill(srv.pid, signal.SIGKILL)
        srv.proc.wait()
    finally:
        srv.stop()
    held.release()
    assert run(data, "user", "list").returncode == 0
    assert srv.scratch_folders() == dead and srv.tmp_files(), "a command that reads cleans nothing"
    after = InProcess(data)  # starts as serve does
    try:
        after.key = key
        assert dead[0] not in after.scratch_folders() and len(after.scratch_folders()) == 1
        assert after.tmp_files() == []
        assert_upload_ok(after.upload(media.png(20, 20)))
    finally:
        after.stop()
    assert after.scratch_folders() == [], "a server that stops removes its own folder"


def _leftovers(data: Path) -> list[str]:
    return sorted(str(p.relative_to(data)) for p in (data / "tmp").rglob("*"))


def _plant_dead_work(data: Path) -> None:
    """What a process that is gone left: a folder without a held lock, and an older version's files."""
    tmp = data / "tmp"
    (tmp / "pdead").mkdir(parents=True)
    (tmp / "pdead" / "up-half").write_bytes(b"half an upload")
    (tmp / "pdead.lock").write_bytes(b"")
    (tmp / "work-old").mkdir()
    (tmp / "up-old").write_bytes(b"an older version's spool file")


@pytest.mark.parametrize("args", [
    ["user", "list"], ["key", "list"], ["upload", "list"], ["check"], ["sharex", "--url",
                                                                       "https://img.example"],
], ids=lambda a: " ".join(a[:2]))
def test_a_command_that_only_reads_touches_nothing_in_tmp(tmp_path, args):
    assert run_here(tmp_path, "user", "list").returncode == 0
    _plant_dead_work(tmp_path)
    before = _leftovers(tmp_path)
    result = run_here(tmp_path, *args)
    assert result.returncode == 0, result.stderr
    assert _leftovers(tmp_path) == before


@pytest.mark.parametrize("args", [["expire"], ["check", "--repair"], ["upload", "delete", "nosuch"]],
                         ids=lambda a: " ".join(a))
def test_a_command_that_writes_removes_what_dead_processes_left(tmp_path, args):
    assert run_here(tmp_path, "user", "list").returncode == 0
    _plant_dead_work(tmp_path)
    run_here(tmp_path, *args)
    assert [p for p in _leftovers(tmp_path) if p != "tmp/.lock"] == []


def test_a_live_process_folder_is_never_cleaned(tmp_path):
    """A process that holds its folder (here one that only made it and waits) keeps it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path; from imgz import scratch; "
         "print(scratch.of(Path(sys.argv[1])).folder(), flush=True); sys.stdin.read()", str(tmp_path)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        folder = Path(holder.stdout.readline().strip())
        (folder / "up-busy").write_bytes(b"in use")
        for args in (["expire"], ["check", "--repair"]):
            assert run_here(tmp_path, *args).returncode == 0
            assert (folder / "up-busy").exists(), args
        InProcess(tmp_path).stop()  # the app cleans as serve starts
        assert (folder / "up-busy").exists(), "serve"
    finally:
        holder.communicate("", timeout=30)
    assert not folder.exists(), "a process that ends removes its own folder"
