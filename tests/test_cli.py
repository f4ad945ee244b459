"""Settings, first start and the management commands, run as a user runs them."""
from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable

import pytest
import requests

import media
from commands import run_command
from conftest import ROOT, LiveServer
from contract import assert_upload_ok
from inprocess import InProcess
from imgz import config


def run(data: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("IMGZ_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, str(ROOT / "app.py"), "--data", str(data), *args],
                          cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=60)


def run_here(data: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``run`` in this process, with the same environment (IMGZ_* settings only from env)."""
    unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("IMGZ_")}
    return run_command("--data", str(data), *args, env={**unset, **(env or {})})


@pytest.fixture
def settings_only(monkeypatch):
    """For ``serve`` run in this process: it must stop at its settings, before it sets anything
    up (logging is its first step past them)."""
    def past_settings(*args, **kwargs):
        raise AssertionError("serve got past its settings")

    monkeypatch.setattr(logging, "basicConfig", past_settings)


def test_readme_lists_every_setting():
    readme = (ROOT / "README.md").read_text()
    for setting in config.SETTINGS:
        assert f"`{config.env_name(setting.name)}`" in readme, setting.name


def test_readme_opens_with_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    first = ("python3 -m venv .venv && .venv/bin/pip install -r requirements.txt && "
             ".venv/bin/python app.py")
    second = ".venv/bin/pip install -r requirements-dev.txt && .venv/bin/python -m pytest"
    head = readme[:600]
    assert first in head and second in head and head.index(first) < head.index(second)


@pytest.mark.parametrize("name,value", [
    ("IMGZ_PORT", "eighty"), ("IMGZ_MAX_UPLOAD_MB", "-1"), ("IMGZ_BASE_URL", "https://x.org/sub"),
    ("IMGZ_FILENAMING", "fancy"), ("IMGZ_TIMEZONE", "Mars/Olympus"), ("IMGZ_ROUTE_IMAGE", "images"),
    ("IMGZ_URL_ALLOW_NETS", "10.0.0.0/99"), ("IMGZ_KEEP_EXIF", "maybe"),
    ("IMGZ_PORT", "70000"), ("IMGZ_BASE_URL", "http://x.org:notaport"),
    ("IMGZ_BASE_URL", "http://0.0.0.0:8080"), ("IMGZ_EXPIRY_INTERVAL", "1e12"),
    ("IMGZ_BASE_URL", "http://0:8080"), ("IMGZ_BASE_URL", "http://[0::0]:8080"),
    ("IMGZ_EXPIRATION_MAX", "999999999999999"), ("IMGZ_URL_TIMEOUT", "1e300"),
    ("IMGZ_HOST", "bogus.invalid"), ("IMGZ_ROUTE_VIDEO", "api"), ("IMGZ_DB", "/proc/none/imgz.db"),
])
def test_bad_setting_stops_with_one_clear_line(tmp_path, settings_only, name, value):
    # A host is found bad only when serve tries to listen there: that start runs as a process.
    result = (run if name == "IMGZ_HOST" else run_here)(tmp_path, "serve", env={name: value})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and name in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_port_flag_is_checked_like_the_setting(tmp_path, settings_only):
    result = run_here(tmp_path, "serve", "--port", "70000")
    assert result.returncode == 2 and "IMGZ_PORT" in result.stderr and "Traceback" not in result.stderr


def test_a_data_dir_that_is_a_file_stops_with_one_clear_line(tmp_path, settings_only):
    (tmp_path / "file").write_text("not a directory")
    result = run_here(tmp_path / "file", "serve")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "IMGZ_DATA" in lines[0], result.stderr


def test_a_start_that_cannot_listen_keeps_the_first_key_for_the_next(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:  # a port something listens on
        port = taken.getsockname()[1]
        failed = run(tmp_path / "second", "serve", "--host", "127.0.0.1", "--port", str(port))
        assert failed.returncode == 2 and "imgz_" not in failed.stdout + failed.stderr
        lines = failed.stderr.strip().splitlines()
        assert len(lines) == 1 and "IMGZ_PORT" in lines[0], failed.stderr
    second = LiveServer(tmp_path / "second")
    try:
        assert re.fullmatch(r"imgz_[0-9A-Za-z]{32}", second.key)
        assert_upload_ok(second.upload(media.png(10, 10)))
    finally:
        second.stop()


def serve_and_stop(*args: str, on_serving: Callable[[str], None] = lambda said: None,
                   env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run ``python app.py ARGS`` (with the IMGZ_* settings ``env`` alone), send SIGTERM as soon as
    it says it is serving; its exit code and stderr.

    ``on_serving`` is called first with what it said so far, the serving line last. A start that
    never says so is read to its end.
    """
    settings = env or {}
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGZ_")}
    env.update({"IMGZ_MIN_FREE_MB": "0", "PYTHONUNBUFFERED": "1", **settings})
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    said = []
    try:
        for line in proc.stderr:
            said.append(line)
            if "imgz: serving" in line:
                try:
                    on_serving("".join(said))
                finally:
                    proc.send_signal(signal.SIGTERM)
                break
        said.append(proc.stderr.read())
        return proc.wait(), "".join(said)
    finally:
        watchdog.cancel()
        proc.stderr.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_stop_right_after_the_serving_line_exits_cleanly(tmp_path):
    """The serving line is the sign the server may be stopped: SIGTERM is handled from then on."""
    for attempt in range(4):  # before the handler came first, a stop here failed 5 times in 5
        code, said = serve_and_stop("serve", "--host", "127.0.0.1", "--port", "0",
                                    "--data", str(tmp_path / "d"))
        assert code == 0, (attempt, code, said)
        assert said.endswith("imgz: stopped\n") and "Traceback" not in said


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("command", [[], ["serve"]], ids=["bare", "serve"])
def test_the_bare_command_takes_the_flags_of_serve(tmp_path, command):
    port = _free_port()
    answers = []

    def get_home(said: str) -> None:
        assert f"on http://127.0.0.1:{port} " in said.splitlines()[-1]
        answers.append(requests.get(f"http://127.0.0.1:{port}/", timeout=10).status_code)

    code, said = serve_and_stop(*command, "--host", "127.0.0.1", "--port", str(port), "--data", str(tmp_path),
                                on_serving=get_home)
    assert (code, answers) == (0, [200]), said
    assert said.startswith(f"imgz: serving {tmp_path} on http://127.0.0.1:{port} ")


BAD_PORT = "it takes a whole number from 0 to 65535 (0: any free port)"


@pytest.mark.parametrize("args,env,line", [
    ([], {"IMGZ_PORT": "abc"}, f"IMGZ_PORT='abc': {BAD_PORT}"),
    (["serve"], {"IMGZ_PORT": "abc"}, f"IMGZ_PORT='abc': {BAD_PORT}"),
    (["--port", "abc"], {}, f"IMGZ_PORT='abc' (from --port): {BAD_PORT}"),
    (["serve", "--port", "70000"], {"IMGZ_PORT": "8080"}, f"IMGZ_PORT='70000' (from --port): {BAD_PORT}"),
    (["--port", "99999", "serve"], {}, f"IMGZ_PORT='99999' (from --port): {BAD_PORT}"),
    (["user", "list"], {"IMGZ_EXPIRY_INTERVAL": "1e12"},
     "IMGZ_EXPIRY_INTERVAL='1e12': it takes a number of seconds above 0 and at most 2592000"),
    (["serve"], {"IMGZ_KEEP_EXIF": "maybe"},
     "IMGZ_KEEP_EXIF='maybe': it takes 1/0, on/off, true/false or yes/no (empty is off)"),
], ids=["env-bare", "env-serve", "flag-bare", "flag-serve", "flag-before-serve", "command", "flag-setting"])
def test_a_bad_setting_is_one_line_on_stderr(tmp_path, settings_only, args, env, line):
    result = run_here(tmp_path, *args, env=env)
    assert (result.returncode, result.stdout, result.stderr) == (2, "", f"imgz: bad setting: {line}\n")


def test_a_bad_setting_stops_a_real_process_with_one_line(tmp_path):
    result = run(tmp_path, "--port", "abc")
    assert (result.returncode, result.stdout, result.stderr) == (
        2, "", f"imgz: bad setting: IMGZ_PORT='abc' (from --port): {BAD_PORT}\n")


def test_the_video_route_may_be_called_video(make_app):
    srv = make_app(route_video="video")
    clip = assert_upload_ok(srv.upload(media.clip("mp4"), filename="c.mp4"))
    assert clip["url_viewer"].startswith(srv.url + "/video/")
    assert srv.get(clip["path_viewer"]).status_code == 200


def test_settings_defaults():
    cfg = config.load({})
    assert (cfg.host, cfg.port, cfg.threads) == ("0.0.0.0", 8080, 8)
    assert cfg.data == str(ROOT / "data") and cfg.db == str(ROOT / "data" / "imgz.db")
    assert cfg.workers == (os.cpu_count() or 1)
    assert cfg.max_upload_bytes == 200_000_000
    assert cfg.url_allow_nets == () and cfg.route_image == "image" and cfg.route_video == "clip"


def test_first_start_prints_one_key_and_later_starts_none(tmp_path):
    first = LiveServer(tmp_path / "d")
    try:
        assert re.fullmatch(r"imgz_[0-9A-Za-z]{32}", first.key)
        assert any("/api/1/upload" in line for line in first.stdout)
        assert_upload_ok(first.upload(media.png(10, 10)))
    finally:
        first.stop()
    (tmp_path / "d" / "tmp" / "leftover").write_bytes(b"half an upload")
    second = LiveServer(tmp_path / "d")
    try:
        assert second.key == ""
        assert "imgz_" not in "".join(second.stdout + second.stderr)
        assert second.tmp_files() == [], "start-up cleans tmp"
        assert len(second.scratch_folders()) == 1, "only the live server's own folder is left"
        second.key = first.key
        assert_upload_ok(second.upload(media.png(10, 10)))
    finally:
        second.stop()


def test_users_and_keys(tmp_path):
    run = run_here
    assert run(tmp_path, "user", "add", "bob").stdout.strip() == "bob"
    assert run(tmp_path, "user", "add", "carol", "--admin").returncode == 0
    assert run(tmp_path, "user", "add", "bob").returncode != 0
    listing = run(tmp_path, "user", "list").stdout
    assert re.search(r"^admin\tadmin", listing, re.M) and re.search(r"^bob\tuser", listing, re.M)
    assert re.search(r"^carol\tadmin", listing, re.M)
    created = run(tmp_path, "key", "create", "--user", "bob", "--label", "laptop")
    key = created.stdout.strip()
    assert re.fullmatch(r"imgz_[0-9A-Za-z]{32}", key) and key not in created.stderr
    keys = run(tmp_path, "key", "list", "--user", "bob").stdout.splitlines()
    assert keys[0].split("\t") == ["id", "user", "label", "created", "last_used", "revoked"]
    row = keys[1].split("\t")
    assert row[1:3] == ["bob", "laptop"] and row[4] == "-" and row[5] == "-"
    assert key not in "\n".join(keys), "keys are never shown again"
    assert run(tmp_path, "key", "create", "--user", "nobody").returncode != 0
    assert run(tmp_path, "key", "revoke", row[0]).returncode == 0
    assert run(tmp_path, "key", "revoke", row[0]).returncode != 0
    revoked = run(tmp_path, "key", "list", "--user", "bob").stdout.splitlines()[1].split("\t")
    assert revoked[5] != "-"


def test_key_list_shows_last_use(tmp_path):
    srv = InProcess(tmp_path / "d")
    try:
        assert run_here(tmp_path / "d", "key", "list").stdout.splitlines()[1].split("\t")[4] == "-"
        assert_upload_ok(srv.upload(media.png(10, 10)))
        last_used = run_here(tmp_path / "d", "key", "list").stdout.splitlines()[1].split("\t")[4]
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", last_used)
    finally:
        srv.stop()


def test_keys_are_stored_only_as_hashes(tmp_path):
    key = run_here(tmp_path, "key", "create").stdout.strip()
    assert key.encode() not in (tmp_path / "imgz.db").read_bytes()
    for wal in tmp_path.glob("imgz.db*"):
        assert key.encode() not in wal.read_bytes()


def test_low_disk_space_refuses_uploads(make_app):
    srv = make_app(min_free_mb=10 ** 12)
    response = srv.upload(media.png(10, 10))
    assert response.status_code == 507
    assert response.json()["error"] == {"message": "Not enough storage", "code": 400}
    txt = srv.upload(media.png(10, 10), format="txt")
    assert (txt.status_code, txt.text) == (507, "Not enough storage")
    assert srv.rows() == 0 and srv.stored_files() == [] and srv.tmp_files() == []


def test_use_file_date_files_the_upload_under_its_exif_date(make_app):
    srv = make_app(timezone="Europe/Berlin")
    data = media.jpeg(40, 30, exif=media.exif_bytes(date_time_original="2019:05:04 10:00:00"))
    image = assert_upload_ok(srv.upload(data, filename="old.jpg", use_file_date="1"))
    assert "/images/2019/05/04/" in image["url"]
    assert image["date"] == "2019-05-04 10:00:00"
    assert image["date_gmt"] == "2019-05-04 08:00:00"
    with_offset = media.jpeg(40, 30, exif=media.exif_bytes(date_time_original="2019:05:04 23:30:00",
                                                           offset_time_original="-05:00"))
    image = assert_upload_ok(srv.upload(with_offset, filename="ny.jpg", use_file_date="1"))
    assert image["date_gmt"] == "2019-05-05 04:30:00"
    assert "/images/2019/05/05/" in image["url"]
    plain = assert_upload_ok(srv.upload(media.jpeg(40, 30), filename="new.jpg", use_file_date="1"))
    assert "/images/2019/" not in plain["url"]
