"""Settings, read as the loader reads them: every setting with good and bad values, one line each."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from imgz import config
from imgz.web import init_data
from imgz.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
YES_NO = "1/0, on/off, true/false or yes/no (empty is off)"
RATE = ("N/SECONDS such as 120/60 (N from 1 to 1000000000, SECONDS above 0 and at most 31557600), "
        "or empty, 0 or off for no limit")
ROUTE = ("1 to 32 lowercase letters, digits, - or _, starting with a letter or digit, other than "
         "api, images, tag, static, oembed")

# What each setting takes, in the words of its one-line message.
ACCEPTS = {
    "data": "a path to a directory this user can create and write, or empty for data/ beside app.py",
    "db": "a path to a database file this user can create and write, or empty for <data>/imgz.db",
    "database_url": ("empty for the SQLite file, or a PostgreSQL URL: "
                     "postgresql://USER:PASSWORD@HOST[:PORT]/DATABASE"),
    "storage": "one of local, s3",
    "s3_bucket": "a bucket name: 3 to 63 lowercase letters, digits, dots or hyphens",
    "s3_endpoint": "empty for the SDK's own endpoint, or http:// or https:// with a host and optional port",
    "s3_region": "a region name such as us-east-1, or empty",
    "s3_prefix": ("empty, or folder names of letters, digits, '.', '_' or '-' separated by '/' "
                  "(such as imgz/ or site/media)"),
    "s3_path_style": YES_NO,
    "s3_checksum": "one of when_supported, when_required",
    "s3_cache_mb": "a whole number of MB from 0 to 1000000000000",
    "public_url": "empty, or an http:// or https:// URL under which the stored files are public",
    "host": "an address or host name of this machine (0.0.0.0: every IPv4 address)",
    "port": "a whole number from 0 to 65535 (0: any free port)",
    "threads": "a whole number from 1 to 1000",
    "workers": "a whole number from 1 to 1000, or empty for the CPU count",
    "upload_queue": "a whole number from 0 to 10000, or empty for 4 per worker",
    "work_budget": "a number of CPU seconds above 0 and at most 86400",
    "guest_work_budget": "a number of CPU seconds above 0 and at most 86400",
    "worker_memory_mb": "a whole number of MB from 256 to 16777216",
    "base_url": ("empty, or http:// or https:// with a host clients can reach and an optional port "
                 "from 1 to 65535, nothing after it"),
    "trust_proxy": "a whole number from 0 to 32",
    "max_upload_mb": "a number of MB above 0 and at most 1000000",
    "max_pixels": "a whole number from 1 to 2147483647",
    "max_animation_pixels": "a whole number from 1 to 1000000000000",
    "min_free_mb": "a whole number of MB from 0 to 1000000000000",
    "timezone": "an IANA time zone name such as Europe/Paris or UTC, or empty for the machine's zone",
    "filenaming": "one of mixed, original, random",
    "id_length": "a whole number from 5 to 64",
    "keep_exif": YES_NO,
    "url_sources": YES_NO,
    "url_allow_nets": "CIDRs (10.0.0.0/8), addresses or host names, separated by commas or spaces",
    "url_timeout": "a number of seconds above 0 and at most 86400",
    "ffmpeg_timeout": "a number of seconds above 0 and at most 86400",
    "guest_uploads": YES_NO,
    "resumable_mb": "a number of MB above 0 and at most 1000000",
    "secret_key": "empty (a secret made once and kept in the database), or at least 32 random characters",
    "session_days": "a whole number days from 1 to 3660",
    "guest_max_upload_mb": "a number of MB above 0 and at most 1000000",
    "rate_limit_key": RATE,
    "rate_limit_ip": RATE,
    "expiration_min": "a whole number of seconds from 1 to 3155760000",
    "expiration_max": "a whole number of seconds from 1 to 3155760000",
    "expiry_interval": "a number of seconds above 0 and at most 2592000",
    "route_image": ROUTE,
    "route_video": ROUTE,
    "accel": "one of none, nginx, sendfile",
    "public_tags": YES_NO,
    "connections": "a whole number from 10 to 1000000",
    "connections_per_address": "a whole number from 0 to 1000000 (0: no cap)",
    "header_timeout": "a number of seconds above 0 and at most 86400",
    "body_min_rate_kb": "a number of KB/s above 0 and at most 1000000",
    "keyless_spool_mb": "a number of MB above 0 and at most 1000000",
    "stream_mb": "a whole number of MB from 0 to 1000000 (0: never)",
    "access_log": YES_NO,
    "metrics": YES_NO,
    "metrics_token": "empty (none), or at least 16 characters",
}

# (setting, text, the value it gives)
GOOD = [
    ("data", "relative/dir", str(Path.cwd() / "relative" / "dir")),
    ("db", "/srv/imgz/other.db", "/srv/imgz/other.db"),
    ("database_url", "postgresql://imgz:pw@db.lan:5433/imgz", "postgresql://imgz:pw@db.lan:5433/imgz"),
    ("database_url", "", ""), ("storage", "LOCAL", "local"), ("storage", "local", "local"),
    ("s3_bucket", "media.example-1", "media.example-1"), ("s3_bucket", "", ""),
    ("s3_endpoint", "http://127.0.0.1:8333/", "http://127.0.0.1:8333"),
    ("s3_region", "eu-west-3", "eu-west-3"), ("s3_prefix", "/site/media/", "site/media/"),
    ("s3_prefix", "", ""), ("s3_path_style", "1", True),
    ("s3_checksum", "WHEN_REQUIRED", "when_required"), ("s3_cache_mb", "0", 0),
    ("host", " 127.0.0.1 ", "127.0.0.1"), ("host", "::", "::"),
    ("port", "0", 0), ("port", " 8081 ", 8081), ("port", "65535", 65535), ("port", "+80", 80),
    ("threads", "1", 1), ("threads", "1000", 1000),
    ("workers", "3", 3), ("upload_queue", "0", 0), ("upload_queue", "10000", 10_000),
    ("work_budget", "0.5", 0.5), ("work_budget", "86400", 86_400.0), ("guest_work_budget", "2e1", 20.0),
    ("worker_memory_mb", "256", 256), ("worker_memory_mb", "16777216", 2**24),
    ("base_url", "", ""), ("base_url", "https://img.example.org/", "https://img.example.org"),
    ("base_url", "http://[::1]:8080", "http://[::1]:8080"),
    ("base_url", "HTTP://x.org:65535", "HTTP://x.org:65535"),
    ("trust_proxy", "0", 0), ("trust_proxy", "32", 32),
    ("max_upload_mb", "0.2", 0.2), ("max_upload_mb", "1000000", 1e6), ("max_upload_mb", ".5", 0.5),
    ("max_pixels", "2147483647", 2**31 - 1), ("max_animation_pixels", "1", 1),
    ("min_free_mb", "0", 0), ("min_free_mb", "1000000000000", 10**12),
    ("timezone", "Europe/Paris", "Europe/Paris"), ("timezone", " UTC ", "UTC"),
    ("filenaming", "ORIGINAL", "original"), ("filenaming", "random", "random"),
    ("id_length", "5", 5), ("id_length", "64", 64),
    ("keep_exif", "YES", True), ("keep_exif", "", False), ("url_sources", "off", False),
    ("url_allow_nets", "10.0.0.0/8, example.org  ::1", ("10.0.0.0/8", "example.org", "::1")),
    ("url_allow_nets", "", ()),
    ("url_timeout", "3", 3.0), ("ffmpeg_timeout", "0.001", 0.001), ("guest_uploads", "true", True),
    ("guest_max_upload_mb", "0.5", 0.5),
    ("resumable_mb", "0.5", 0.5), ("secret_key", "", ""), ("secret_key", "x" * 32, "x" * 32), ("session_days", "1", 1),
    ("rate_limit_key", "120/60", "120/60"), ("rate_limit_key", "", ""), ("rate_limit_ip", "off", "off"),
    ("rate_limit_ip", "1000000000/31557600", "1000000000/31557600"),
    ("expiration_min", "1", 1), ("expiration_max", "3155760000", 3_155_760_000),
    ("expiry_interval", "2592000", 2_592_000.0), ("expiry_interval", "0.5", 0.5),
    ("route_image", "pics", "pics"), ("route_video", "video", "video"), ("route_video", "v_1-x", "v_1-x"),
    ("accel", "NGINX", "nginx"), ("accel", "sendfile", "sendfile"), ("public_tags", "on", True),
    ("connections", "10", 10), ("connections", "1000000", 10**6),
    ("connections_per_address", "0", 0), ("header_timeout", "2", 2.0),
    ("body_min_rate_kb", "0.1", 0.1), ("keyless_spool_mb", "2", 2.0),
    ("stream_mb", "0", 0), ("stream_mb", "64", 64),
    ("access_log", "0", False), ("access_log", "", False), ("metrics", "on", True),
    ("metrics_token", "", ""), ("metrics_token", "t" * 16, "t" * 16),
]

# (setting, text, the reason given before what it takes; "" when what it takes says it all)
BAD = [
    ("database_url", "mysql://u@h/db", ""), ("database_url", "postgresql://u@h", ""),
    ("database_url", "postgresql://u@h:99999/db", ""), ("database_url", "sqlite:///x.db", ""),
    ("storage", "ftp", ""), ("s3_bucket", "My_Bucket", ""), ("s3_bucket", "ab", ""),
    ("s3_bucket", "a..b", ""), ("s3_endpoint", "127.0.0.1:8333", ""),
    ("s3_endpoint", "http://h:port", ""), ("s3_prefix", "a/../b", ""), ("s3_prefix", "a b", ""),
    ("s3_path_style", "perhaps", ""), ("s3_checksum", "never", ""), ("s3_cache_mb", "-1", ""),
    ("public_url", "cdn.example.org", ""), ("public_url", "https://cdn.example.org/?x=1", ""),
    ("port", "abc", ""), ("port", "eighty", ""), ("port", "65536", ""), ("port", "70000", ""),
    ("port", "-1", ""), ("port", "80.0", ""), ("port", "", ""), ("port", "0x50", ""), ("port", "1_000", ""),
    ("port", "\uff18\uff10", ""), ("port", "9" * 5000, ""),
    ("threads", "0", ""), ("threads", "1001", ""), ("threads", "many", ""),
    ("workers", "0", ""), ("workers", "99999", ""), ("upload_queue", "10001", ""), ("upload_queue", "-1", ""),
    ("work_budget", "0", ""), ("work_budget", "86401", ""), ("work_budget", "nan", ""),
    ("guest_work_budget", "inf", ""), ("guest_work_budget", "1e400", ""),
    ("worker_memory_mb", "255", ""), ("worker_memory_mb", "16777217", ""), ("worker_memory_mb", "3 GB", ""),
    ("base_url", "img.example.org", ""), ("base_url", "ftp://x.org", ""), ("base_url", "https://", ""),
    ("base_url", "http://x.org:notaport", ""), ("base_url", "http://x.org:70000", ""),
    ("base_url", "http://x.org:0", ""), ("base_url", "http://[::1", ""),
    ("base_url", "https://x.org/sub", "a path prefix is not supported"),
    ("base_url", "https://x.org/?a=1", "a path prefix is not supported"),
    ("base_url", "http://0:8080", "0 is where a server listens, not an address clients can reach"),
    ("base_url", "http://0.0.0.0:8080",
     "0.0.0.0 is where a server listens, not an address clients can reach"),
    ("base_url", "http://[::]:8080", ":: is where a server listens, not an address clients can reach"),
    ("base_url", "http://[0::0]", "0::0 is where a server listens, not an address clients can reach"),
    ("trust_proxy", "33", ""), ("trust_proxy", "yes", ""),
    ("max_upload_mb", "-1", ""), ("max_upload_mb", "0", ""), ("max_upload_mb", "1000001", ""),
    ("max_upload_mb", "200MB", ""),
    ("max_pixels", "0", ""), ("max_pixels", "2147483648", ""), ("max_animation_pixels", "1000000000001", ""),
    ("min_free_mb", "-1", ""), ("min_free_mb", "1000000000001", ""),
    ("timezone", "Mars/Olympus", ""), ("timezone", "../../etc/passwd", ""),
    ("timezone", "/etc/localtime", ""),
    ("filenaming", "fancy", ""), ("id_length", "4", ""), ("id_length", "65", ""),
    ("keep_exif", "maybe", ""), ("url_sources", "2", ""), ("guest_uploads", "enabled", ""),
    ("public_tags", "y", ""), ("secret_key", "short", "it is too short to sign sessions safely"),
    ("session_days", "0", ""), ("resumable_mb", "0", ""),
    ("url_allow_nets", "10.0.0.0/99", "not a CIDR or host name: '10.0.0.0/99'"),
    ("url_allow_nets", "ok.example, bad_name!", "not a CIDR or host name: 'bad_name!'"),
    ("url_timeout", "1e300", ""), ("url_timeout", "-3", ""), ("ffmpeg_timeout", "0", ""),
    ("ffmpeg_timeout", "forever", ""),
    ("guest_max_upload_mb", "1e7", ""),
    ("rate_limit_key", "120", ""), ("rate_limit_key", "0/60", ""), ("rate_limit_key", "10/0", ""),
    ("rate_limit_ip", "1000000001/60", ""), ("rate_limit_ip", "1/31557601", ""),
    ("expiration_min", "0", ""), ("expiration_min", "3155760001", ""),
    ("expiration_max", "999999999999999", ""), ("expiration_max", "1 day", ""),
    ("expiry_interval", "1e12", ""), ("expiry_interval", "2592001", ""), ("expiry_interval", "0", ""),
    ("route_image", "images", "'images' is reserved"), ("route_video", "api", "'api' is reserved"),
    ("route_image", "Pics", ""), ("route_image", "-x", ""), ("route_video", "a" * 33, ""),
    ("route_image", "a/b", ""),
    ("accel", "apache", ""),
    ("connections", "9", ""), ("connections", "1000001", ""),
    ("connections_per_address", "-1", ""), ("connections_per_address", "1000001", ""),
    ("header_timeout", "86401", ""), ("header_timeout", "0", ""),
    ("body_min_rate_kb", "0", ""), ("body_min_rate_kb", "1e9", ""),
    ("keyless_spool_mb", "-5", ""), ("keyless_spool_mb", "lots", ""),
    ("stream_mb", "1.5", ""), ("stream_mb", "1000001", ""),
    ("access_log", "2", ""), ("metrics", "maybe", ""),
    ("metrics_token", "short", "it is too short to be hard to guess"),
]


def message(name: str, text: str, reason: str = "", flag: bool = False) -> str:
    shown = text if len(text) <= 80 else text[:77] + "..."
    if name in ("secret_key", "metrics_token"):
        shown = "***"  # a secret is never shown, not even a bad one
    source = f" (from --{name})" if flag else ""
    return f"IMGZ_{name.upper()}={shown!r}{source}: {reason + '; ' if reason else ''}it takes {ACCEPTS[name]}"


def refusal(environ: dict, **flags: str) -> str:
    with pytest.raises(ConfigError) as caught:
        config.load(environ, flags=flags)
    return str(caught.value)


def test_every_setting_has_good_and_bad_cases_and_says_what_it_takes():
    names = [s.name for s in config.SETTINGS]
    assert sorted(ACCEPTS) == sorted(names)
    assert {name for name, _, _ in GOOD} == set(names) - {"public_url"}
    # the host is only known to be bad when the server cannot listen there (tests/test_cli.py)
    assert {name for name, _, _ in BAD} == set(names) - {"host", "data", "db", "s3_region"}
    for setting in config.SETTINGS:
        assert setting.kind.accepts == ACCEPTS[setting.name]


@pytest.mark.parametrize("name,text,value", GOOD, ids=[f"{n}={t!r}"[:60] for n, t, _ in GOOD])
def test_a_good_value_is_read(name, text, value):
    assert getattr(config.load({config.env_name(name): text}), name) == value


@pytest.mark.parametrize("name,text,reason", BAD, ids=[f"{n}={t!r}"[:60] for n, t, _ in BAD])
def test_a_bad_value_gets_one_line_naming_the_setting_and_what_it_takes(name, text, reason):
    line = refusal({config.env_name(name): text})
    assert line == message(name, text, reason)
    assert "\n" not in line and "invalid literal" not in line


def test_the_defaults_are_good_values():
    cfg = config.load({})
    for setting in config.SETTINGS:
        if setting.default:
            assert setting.kind(setting.default) == getattr(cfg, setting.name), setting.name


def test_empty_means_worked_out_where_the_setting_says_so():
    cfg = config.load({"IMGZ_WORKERS": "", "IMGZ_UPLOAD_QUEUE": " ", "IMGZ_DATA": " ", "IMGZ_DB": "",
                       "IMGZ_TIMEZONE": "  "})
    assert cfg.workers == (os.cpu_count() or 1) and cfg.upload_queue == 4 * cfg.workers
    assert cfg.data == str(ROOT / "data") and cfg.db == str(ROOT / "data" / "imgz.db")
    assert cfg.timezone
    assert config.load({"IMGZ_WORKERS": "2"}).upload_queue == 8


def test_a_flag_wins_over_the_environment_and_is_named_when_bad():
    assert config.load({"IMGZ_PORT": "abc"}, flags={"port": "8081"}).port == 8081
    assert config.load({"IMGZ_PORT": "8081"}, flags={"port": None}).port == 8081
    assert refusal({"IMGZ_PORT": "8081"}, port="70000") == message("port", "70000", flag=True)
    assert refusal({}, port="abc") == message("port", "abc", flag=True)
    assert config.load({}, flags={"port": 8082}).port == 8082  # a number given as a number


def test_a_long_value_is_shortened_in_its_line():
    line = refusal({"IMGZ_EXPIRATION_MAX": "9" * 5000})
    assert line == "IMGZ_EXPIRATION_MAX='" + "9" * 77 + "...': it takes " + ACCEPTS["expiration_max"]


def test_settings_that_must_agree():
    assert refusal({"IMGZ_ROUTE_IMAGE": "pics", "IMGZ_ROUTE_VIDEO": "pics"}) == message(
        "route_video", "pics", "the same as IMGZ_ROUTE_IMAGE")
    assert refusal({"IMGZ_ROUTE_VIDEO": "image"}) == message(
        "route_video", "image", "the same as IMGZ_ROUTE_IMAGE")
    assert refusal({"IMGZ_EXPIRATION_MIN": "400", "IMGZ_EXPIRATION_MAX": "300"}) == message(
        "expiration_min", "400", "more than IMGZ_EXPIRATION_MAX (300)")
    assert config.load({"IMGZ_EXPIRATION_MIN": "300", "IMGZ_EXPIRATION_MAX": "300"}).expiration_min == 300


def test_a_data_dir_or_database_of_the_wrong_sort_is_refused_before_anything_is_made(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    assert refusal({"IMGZ_DATA": str(tmp_path / "file")}) == message(
        "data", str(tmp_path / "file"), "it is a file, not a directory")
    assert refusal({"IMGZ_DATA": str(tmp_path / "d"), "IMGZ_DB": str(tmp_path)}) == message(
        "db", str(tmp_path), "it is a directory")
    assert not (tmp_path / "d").exists()


def test_a_data_dir_or_database_that_cannot_be_made_is_refused_when_it_is_made(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    under_a_file = str(tmp_path / "file" / "data")
    with pytest.raises(ConfigError) as caught:
        init_data(config.load({"IMGZ_DATA": under_a_file}))
    assert str(caught.value) == message("data", under_a_file, "cannot use it: Not a directory")
    with pytest.raises(ConfigError) as caught:
        init_data(config.load({"IMGZ_DATA": str(tmp_path / "d"), "IMGZ_DB": "/proc/none/imgz.db"}))
    assert str(caught.value).startswith("IMGZ_DB='/proc/none/imgz.db': cannot open it: ")
    assert str(caught.value).endswith("; it takes " + ACCEPTS["db"])


def test_an_unknown_setting_is_named():
    with pytest.raises(ConfigError, match="unknown setting 'colour'"):
        config.load({}, overrides={"colour": "blue"})


def test_a_database_url_with_a_password_never_shows_it():
    line = refusal({"IMGZ_DATABASE_URL": "mysql://imgz:hunter2@db/imgz"})
    assert "hunter2" not in line and "imgz:***@db" in line
    line = refusal({"IMGZ_DATABASE_URL": "postgresql://imgz:hunter2@db/imgz", "IMGZ_DB": "/x/imgz.db"})
    assert "hunter2" not in line and "IMGZ_DB is set too" in line


def test_the_backend_settings_go_together():
    cfg = config.load({"IMGZ_DATABASE_URL": "postgresql://imgz@db/imgz"})
    assert cfg.db == "" and cfg.database == "postgresql://imgz@db/imgz"
    assert config.load({}).database.endswith("imgz.db")
    assert "IMGZ_STORAGE=s3 needs a bucket" in refusal({"IMGZ_STORAGE": "s3"})
    assert "only for IMGZ_STORAGE=s3" in refusal({"IMGZ_PUBLIC_URL": "https://cdn.example.org"})
    cfg = config.load({"IMGZ_STORAGE": "s3", "IMGZ_S3_BUCKET": "media",
                       "IMGZ_PUBLIC_URL": "https://cdn.example.org/m/"})
    assert cfg.public_url == "https://cdn.example.org/m"
