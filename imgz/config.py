"""The settings table and the loader that turns environment variables and flags into a Config.

Every setting has one row here: its name, default and help. It is read from the environment
variable ``IMGZ_<NAME>``; a few common ones also have command-line flags. A bad value raises
``ConfigError`` naming the setting, and ``app.py`` prints that one line and stops.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

from .addresses import unspecified
from .errors import ConfigError
from .layout import DIR as MEDIA_DIR

APP_DIR = Path(__file__).resolve().parent.parent
RESERVED_ROUTES = {"api", MEDIA_DIR, "tag", "static", "oembed", "sharex.sxcu", "_imgz_media"}


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("expected on/off, 1/0, true/false or yes/no")


def _int(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text.strip())
        if minimum is not None and value < minimum:
            raise ValueError(f"must be at least {minimum}")
        if maximum is not None and value > maximum:
            raise ValueError(f"must be at most {maximum}")
        return value
    return parse


def _decimal(maximum: float | None = None) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = float(text.strip())
        if not value > 0 or value != value or value == float("inf"):
            raise ValueError("must be a positive number")
        if maximum is not None and value > maximum:
            raise ValueError(f"must be at most {maximum:.0f}")
        return value
    return parse


def _choice(*options: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in options:
            raise ValueError("must be one of " + ", ".join(options))
        return value
    return parse


def _base_url(text: str) -> str:
    value = text.strip().rstrip("/")
    if not value:
        return ""
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError("must look like https://host[:port]")
    if parts.path or parts.query or parts.fragment:
        raise ValueError("a path prefix is not supported; give scheme://host[:port] only")
    parts.port  # raises ValueError for a port that is no number from 0 to 65535
    if unspecified(parts.hostname):
        raise ValueError("0.0.0.0 is where the server listens, not an address clients can reach")
    return value


def _route(text: str) -> str:
    value = text.strip()
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,31}", value):
        raise ValueError("must be lowercase letters, digits, - or _")
    if value in RESERVED_ROUTES:
        raise ValueError(f"'{value}' is reserved")
    return value


def _nets(text: str) -> tuple[str, ...]:
    from .addresses import parse_allow_nets

    items = tuple(part.strip() for part in re.split(r"[,\s]+", text) if part.strip())
    parse_allow_nets(items)
    return items


def _limit(text: str) -> str:
    from .ratelimit import parse_limit

    parse_limit(text)
    return text.strip()


def _timezone(text: str) -> str:
    from zoneinfo import ZoneInfo

    value = text.strip()
    if value:
        ZoneInfo(value)
    return value


def _path(text: str) -> str:
    return str(Path(text).expanduser().resolve()) if text.strip() else ""


DAY = 86_400
YEAR = 31_557_600  # a Julian year: 365.25 days


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    help: str
    parse: Callable[[str], Any]


SETTINGS: tuple[Setting, ...] = (
    Setting("data", "", "Data directory (database, images/, tmp/); default data/ beside app.py.", _path),
    Setting("db", "", "SQLite database path; default <data>/imgz.db. WAL needs a local disk, not NFS/SMB.", _path),
    Setting("host", "0.0.0.0", "Address to listen on.", str.strip),
    Setting("port", "8080", "Port to listen on.", _int(0, 65535)),
    Setting("threads", "8", "waitress worker threads.", _int(1)),
    Setting("workers", "", "Uploads processed at once; default the CPU count.", _int(1)),
    Setting("upload_queue", "", "Uploads that may wait for a worker; more are answered 503 with "
            "Retry-After; default 4 per worker.", _int(0, 10_000)),
    Setting("work_budget", "60", "CPU seconds the media work of one keyed upload may use; past it "
            "the upload is refused as too complex.", _decimal(DAY)),
    Setting("guest_work_budget", "9", "CPU seconds the media work of one guest upload may use.",
            _decimal(DAY)),
    Setting("worker_memory_mb", "3072", "Address space of each media worker process, in MB.",
            _int(256)),
    Setting("base_url", "", "Public scheme://host[:port] used in answers; default from the request.", _base_url),
    Setting("trust_proxy", "0", "Trusted reverse-proxy hops for X-Forwarded-For/Proto/Host.", _int(0)),
    Setting("max_upload_mb", "200", "Largest upload in MB (decimal, 1 MB = 1,000,000 bytes).", _decimal()),
    Setting("max_pixels", "100000000", "Most pixels in one image frame.", _int(1)),
    Setting("max_animation_pixels", "1000000000", "Most decoded pixels over all frames of an animation.", _int(1)),
    Setting("min_free_mb", "500", "Refuse uploads when the data disk has less free space (MB).", _int(0)),
    Setting("timezone", "", "IANA time zone for local dates; default the machine's zone, else UTC.", _timezone),
    Setting("filenaming", "mixed", "Stored names: mixed (name + random), original, random.",
            _choice("mixed", "original", "random")),
    Setting("id_length", "8", "Length of public ids (base62).", _int(5)),
    Setting("keep_exif", "0", "Keep metadata in stored files (off removes it).", _bool),
    Setting("url_sources", "1", "Allow URL sources for keyed uploads.", _bool),
    Setting("url_allow_nets", "", "CIDRs or host names that URL sources may reach although private.", _nets),
    Setting("url_timeout", "30", "Deadline in seconds for a whole URL download.", _decimal(DAY)),
    Setting("ffmpeg_timeout", "300", "Seconds one ffmpeg run may take before the upload is refused.",
            _decimal(DAY)),
    Setting("guest_uploads", "0", "Accept uploads without a key.", _bool),
    Setting("guest_max_upload_mb", "20", "Largest guest upload in MB.", _decimal()),
    Setting("rate_limit_key", "", "Uploads allowed per API key, as N/SECONDS (e.g. 120/60); empty: no limit.",
            _limit),
    Setting("rate_limit_ip", "", "API requests allowed per client address, as N/SECONDS; empty: no limit.",
            _limit),
    Setting("expiration_min", "300", "Shortest expiration in seconds.", _int(1)),
    Setting("expiration_max", "31622400", "Longest expiration in seconds (366 days).", _int(1, 100 * YEAR)),
    Setting("expiry_interval", "60", "Seconds between expiry sweeps.", _decimal(30 * DAY)),
    Setting("route_image", "image", "Route of image viewer pages.", _route),
    Setting("route_video", "clip", "Route of video viewer pages.", _route),
    Setting("accel", "none", "Let a front server send files: none, nginx (X-Accel-Redirect), sendfile.",
            _choice("none", "nginx", "sendfile")),
    Setting("public_tags", "0", "Public tag pages at /tag/<key>.", _bool),
    Setting("connections", "4000", "Most open client connections at once (kept below the open-file "
            "limit, which the server raises to its hard limit).", _int(10)),
    Setting("connections_per_address", "64", "Most open connections from one client address (an IPv6 "
            "/64 counts as one); more are answered 503. 0: no cap. Not applied with IMGZ_TRUST_PROXY.",
            _int(0)),
    Setting("header_timeout", "20", "Seconds a connection has to send a request line and headers; also "
            "how long an idle keep-alive connection stays open.", _decimal(DAY)),
    Setting("body_min_rate_kb", "8", "Slowest average rate (KB/s) a request body may arrive at once it "
            "has had IMGZ_HEADER_TIMEOUT seconds; slower clients are disconnected.", _decimal()),
    Setting("keyless_spool_mb", "1000", "MB that bodies of requests without a valid key in X-API-Key or "
            "the query string may hold at once (memory or <data>/tmp); past it they get 503.", _decimal()),
)

_BY_NAME = {s.name: s for s in SETTINGS}
# Settings whose empty value means "work it out at load time".
_COMPUTED = {"data", "db", "workers", "upload_queue", "timezone"}


@dataclass(frozen=True)
class Config:
    data: str
    db: str
    host: str
    port: int
    threads: int
    workers: int
    upload_queue: int
    work_budget: float
    guest_work_budget: float
    worker_memory_mb: int
    base_url: str
    trust_proxy: int
    max_upload_mb: float
    max_pixels: int
    max_animation_pixels: int
    min_free_mb: int
    timezone: str
    filenaming: str
    id_length: int
    keep_exif: bool
    url_sources: bool
    url_allow_nets: tuple[str, ...]
    url_timeout: float
    ffmpeg_timeout: float
    guest_uploads: bool
    rate_limit_key: str
    rate_limit_ip: str
    guest_max_upload_mb: float
    expiration_min: int
    expiration_max: int
    expiry_interval: float
    route_image: str
    route_video: str
    accel: str
    public_tags: bool
    connections: int
    connections_per_address: int
    header_timeout: float
    body_min_rate_kb: float
    keyless_spool_mb: float

    @property
    def data_dir(self) -> Path:
        return Path(self.data)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1_000_000)

    @property
    def guest_max_upload_bytes(self) -> int:
        return int(self.guest_max_upload_mb * 1_000_000)


def env_name(name: str) -> str:
    return "IMGZ_" + name.upper()


def load(environ: Mapping[str, str] | None = None, flags: Mapping[str, Any] | None = None,
         overrides: Mapping[str, Any] | None = None) -> Config:
    """Build the Config: defaults, then environment, then flags, then overrides (tests).

    Overrides may be given already parsed (an int for a port) or as text.
    """
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {s.name: s.default for s in SETTINGS}
    for s in SETTINGS:
        if env_name(s.name) in environ:
            raw[s.name] = environ[env_name(s.name)]
    for source in (flags or {}, overrides or {}):
        for name, value in source.items():
            if name not in _BY_NAME:
                raise ConfigError(f"unknown setting {name!r}")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                value = str(value)  # a number from a flag is checked like the same text
            if value is not None:
                raw[name] = value
    values: dict[str, Any] = {}
    for s in SETTINGS:
        value = raw[s.name]
        if isinstance(value, str) and not (value.strip() == "" and s.name in _COMPUTED):
            try:
                value = s.parse(value)
            except (ValueError, LookupError, OSError) as exc:
                detail = str(exc) or type(exc).__name__
                raise ConfigError(f"{env_name(s.name)}={raw[s.name]!r}: {detail}") from None
        values[s.name] = value
    if not values["data"]:
        values["data"] = str((APP_DIR / "data").resolve())
    values["data"] = str(Path(values["data"]).resolve())
    if not values["db"]:
        values["db"] = str(Path(values["data"]) / "imgz.db")
    if not values["workers"]:
        values["workers"] = os.cpu_count() or 1
    if isinstance(values["upload_queue"], str):  # still empty: not given
        values["upload_queue"] = 4 * values["workers"]
    if not values["timezone"]:
        values["timezone"] = _machine_timezone()
    if values["route_image"] == values["route_video"]:
        raise ConfigError("IMGZ_ROUTE_IMAGE and IMGZ_ROUTE_VIDEO must differ")
    if values["expiration_min"] > values["expiration_max"]:
        raise ConfigError("IMGZ_EXPIRATION_MIN must not exceed IMGZ_EXPIRATION_MAX")
    names = {f.name for f in fields(Config)}
    return Config(**{k: v for k, v in values.items() if k in names})


def _machine_timezone() -> str:
    """The machine's IANA zone name, or UTC when it cannot be told."""
    try:
        from tzlocal import get_localzone_name

        name = get_localzone_name()
    except Exception:  # tzlocal warns or fails on odd set-ups; UTC is a safe answer
        name = None
    if name in {"Etc/UTC", "Etc/Universal", "Etc/Zulu", "Universal", "Zulu", "UCT", "Etc/UCT"}:
        return "UTC"
    if name:
        try:
            from zoneinfo import ZoneInfo

            ZoneInfo(name)
            return name
        except (LookupError, ValueError, OSError):
            pass
    return "UTC"
