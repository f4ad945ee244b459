"""contrib/imgz.service, with this checkout's paths: systemd finds it valid, its exposure stays
at most EXPOSURE on ``systemd-analyze security``'s scale (0 shut tight, 10 wide open), it keeps
the rules README promises, and imgz works under the one rule systemd cannot check for it,
MemoryDenyWriteExecute."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import media
from conftest import ROOT, LiveServer
from contract import assert_upload_ok
from imgz import cli
from people import add_user, sign_in

SYSTEMD_ANALYZE = Path("/usr/bin/systemd-analyze")
UNIT = ROOT / "contrib" / "imgz.service"
# What the unit scores is 1.2 ("OK"): it listens on the network (0.9 of it: address families,
# no private network, no address allow list), runs from the host's root directory, and may set
# resource limits (its media workers do) and write files its group can read (nginx's X-Accel).
EXPOSURE = 1.5

needs_systemd = pytest.mark.skipif(not SYSTEMD_ANALYZE.exists(), reason="systemd-analyze is absent")


def render(data: Path) -> str:
    """The unit with this checkout's python, app.py and a data directory in place of /srv/imgz."""
    text = UNIT.read_text()
    text = text.replace("/srv/imgz/.venv/bin/python", sys.executable)
    text = text.replace("/srv/imgz/data", str(data))
    return text.replace("/srv/imgz", str(ROOT))


def settings(text: str) -> dict[str, list[str]]:
    """The [Service] section's settings, each with every value it was given."""
    found: dict[str, list[str]] = {}
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and line and not line.startswith("#"):
            name, _, value = line.partition("=")
            found.setdefault(name, []).append(value)
    return found


@pytest.fixture
def unit_file(tmp_path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    path = tmp_path / "imgz.service"
    path.write_text(render(data))
    return path


@needs_systemd
def test_the_unit_verifies(unit_file):
    result = subprocess.run([str(SYSTEMD_ANALYZE), "verify", "--man=no", str(unit_file)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert str(unit_file) not in result.stderr, result.stderr  # no warning about it


@needs_systemd
def test_the_unit_exposure_is_at_most_the_threshold(unit_file):
    result = subprocess.run([str(SYSTEMD_ANALYZE), "security", "--offline=yes", "--no-pager",
                             str(unit_file)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    score = re.search(r"Overall exposure level for imgz\.service: (\d+\.\d)", result.stdout)
    assert score, result.stdout
    assert float(score.group(1)) <= EXPOSURE, result.stdout


def test_the_unit_keeps_the_rules_readme_gives(tmp_path):
    data = tmp_path / "data"
    unit = settings(render(data))
    single = {name: values[-1] for name, values in unit.items()}
    assert single["User"] == "imgz" and single["ProtectSystem"] == "strict"
    assert single["ReadWritePaths"] == str(data)
    assert single["Environment"] == f"IMGZ_DATA={data}"
    assert single["ExecStart"] == f"{sys.executable} {ROOT / 'app.py'} serve"
    for rule in ("NoNewPrivileges", "PrivateTmp", "ProtectHome", "PrivateDevices",
                 "MemoryDenyWriteExecute"):
        assert single[rule] == "yes", rule
    assert single["CapabilityBoundingSet"] == ""
    # netlink too: at start imgz lists this machine's addresses
    assert set(single["RestrictAddressFamilies"].split()) == {"AF_INET", "AF_INET6", "AF_UNIX",
                                                               "AF_NETLINK"}
    assert single["Restart"] == "on-failure"
    # SIGTERM to imgz alone, which waits for requests in progress; systemd waits longer than it
    assert single["KillMode"] == "mixed"
    assert float(single["TimeoutStopSec"]) >= cli.STOP_GRACE + 10


MDWE = Path(__file__).resolve().parent / "mdwe.py"


@pytest.fixture
def writable_code_refused(tmp_path):
    """imgz started with memory both writable and executable refused to it and its workers."""
    probe = subprocess.run([sys.executable, str(MDWE), "/bin/true"], timeout=30)
    if probe.returncode == 77:
        pytest.skip("this kernel cannot refuse writable executable memory (PR_SET_MDWE)")
    srv = LiveServer(tmp_path / "data", prefix=[sys.executable, str(MDWE)])
    try:
        yield srv
    finally:
        srv.stop()


@pytest.mark.parametrize("kind", ["jpeg", "png", "gif", "webp", "avif", "mp4"])
def test_media_work_needs_no_writable_executable_memory(writable_code_refused, kind):
    srv = writable_code_refused
    source = {"jpeg": lambda: media.jpeg(900, 600), "png": lambda: media.png(900, 600),
              "gif": lambda: media.gif(300, 200, frames=4), "webp": lambda: media.webp(300, 200, frames=3),
              "avif": lambda: media.avif(400, 300), "mp4": lambda: media.clip("mp4")}[kind]()
    image = assert_upload_ok(srv.upload(source, filename=f"x.{kind}", width="200"))
    assert srv.get(image["thumb"]["url"]).status_code == 200


def test_passwords_need_no_writable_executable_memory(writable_code_refused):
    srv = writable_code_refused
    add_user(srv.config.database, "ann")
    session, _ = sign_in(srv.url, "ann")  # argon2 in the server process
    assert session.get(srv.url + "/account", timeout=10).status_code == 200
