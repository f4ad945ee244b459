"""The settings table and the loader that turns environment variables and flags into a Config.

Every setting has one row here: its name, default, help and kind (``kinds.py``: how its text is
read and what it takes, in words). It is read from the environment variable ``IMGZ_<NAME>``; a
few common ones also have command-line flags. A bad value raises ``ConfigError`` with one line
naming the setting, its value and what it takes (``refused``); ``app.py`` prints it and stops.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from .errors import ConfigError
from .kinds import (BaseURL, Bucket, Choice, DatabaseURL, Endpoint, Flag, KeyPrefix, Kind, Nets, Number,
                    Place, PublicURL, Rate, Refused, Route, Secret, Text, Token, Whole, Zone,
                    hide_password)

APP_DIR = Path(__file__).resolve().parent.parent
DAY = 86_400
YEAR = 31_557_600  # a Julian year: 365.25 days
MANY = 1_000_000  # a bound for sizes (MB), rates and counts that no machine comes near
SECONDS = " of seconds"


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    help: str
    kind: Kind


SETTINGS: tuple[Setting, ...] = (
    Setting("data", "", "Data directory (database, images/, tmp/); default data/ beside app.py.",
            Place("a path to a directory this user can create and write", True, "data/ beside app.py")),
    Setting("db", "", "SQLite database path; default <data>/imgz.db. WAL needs a local disk, not NFS/SMB.",
            Place("a path to a database file this user can create and write", False, "<data>/imgz.db")),
    Setting("database_url", "", "PostgreSQL instead of the SQLite file: postgresql://USER:PASSWORD@HOST"
            "[:PORT]/DATABASE (needs requirements-scale.txt). Not together with IMGZ_DB.", DatabaseURL()),
    Setting("storage", "local", "Where uploaded files are kept: local (<data>/images) or s3 (an "
            "S3-compatible bucket; needs requirements-scale.txt).", Choice("local", "s3")),
    Setting("s3_bucket", "", "The bucket of IMGZ_STORAGE=s3.", Bucket()),
    Setting("s3_endpoint", "", "The S3 endpoint (for stores other than AWS: R2, B2, SeaweedFS, MinIO...); "
            "empty: the SDK's own.", Endpoint()),
    Setting("s3_region", "", "The bucket's region; empty: the SDK's configuration.",
            Text("a region name such as us-east-1, or empty")),
    Setting("s3_prefix", "", "A folder in the bucket for imgz's files (imgz/); empty: the bucket's top.",
            KeyPrefix()),
    Setting("s3_path_style", "0", "Address the bucket in the path (http://host/bucket/key), as "
            "self-hosted stores often need.", Flag()),
    Setting("s3_checksum", "when_supported", "When the SDK adds request checksums: when_supported, or "
            "when_required for stores that refuse the newer ones.",
            Choice("when_supported", "when_required")),
    Setting("s3_cache_mb", "1000", "With IMGZ_STORAGE=s3: MB of this host's disk (<data>/cache) for "
            "copies of files read from the bucket, answered from there afterwards; 0: none.",
            Whole(0, MANY * MANY, " of MB")),
    Setting("public_url", "", "With IMGZ_STORAGE=s3: a public bucket or CDN URL that answers point "
            "file URLs at instead of this server's /images/.", PublicURL()),
    Setting("host", "0.0.0.0", "Address to listen on.",
            Text("an address or host name of this machine (0.0.0.0: every IPv4 address)")),
    Setting("port", "8080", "Port to listen on.", Whole(0, 65535, note=" (0: any free port)")),
    Setting("threads", "8", "waitress worker threads.", Whole(1, 1000)),
    Setting("workers", "", "Uploads processed at once; default the CPU count.",
            Whole(1, 1000, blank="the CPU count")),
    Setting("upload_queue", "", "Uploads that may wait for a worker; more are answered 503 with "
            "Retry-After; default 4 per worker.", Whole(0, 10_000, blank="4 per worker")),
    Setting("work_budget", "60", "CPU seconds the media work of one keyed upload may use; past it "
            "the upload is refused as too complex.", Number(DAY, " of CPU seconds")),
    Setting("guest_work_budget", "9", "CPU seconds the media work of one guest upload may use.",
            Number(DAY, " of CPU seconds")),
    Setting("worker_memory_mb", "3072", "Address space of each media worker process, in MB.",
            Whole(256, 2**24, " of MB")),
    Setting("base_url", "", "Public scheme://host[:port] used in answers; default from the request.",
            BaseURL()),
    Setting("trust_proxy", "0", "Trusted reverse-proxy hops for X-Forwarded-For/Proto/Host.", Whole(0, 32)),
    Setting("max_upload_mb", "200", "Largest upload in MB (decimal, 1 MB = 1,000,000 bytes).",
            Number(MANY, " of MB")),
    # ffmpeg takes at most 2**31 - 1 for its -max_pixels
    Setting("max_pixels", "100000000", "Most pixels in one image frame.", Whole(1, 2**31 - 1)),
    Setting("max_animation_pixels", "1000000000", "Most decoded pixels over all frames of an animation.",
            Whole(1, MANY * MANY)),
    Setting("min_free_mb", "500", "Refuse uploads when the data disk has less free space (MB).",
            Whole(0, MANY * MANY, " of MB")),
    Setting("timezone", "", "IANA time zone for local dates; default the machine's zone, else UTC.",
            Zone("the machine's zone")),
    Setting("filenaming", "mixed", "Stored names: mixed (name + random), original, random.",
            Choice("mixed", "original", "random")),
    Setting("id_length", "8", "Length of public ids (base62).", Whole(5, 64)),
    Setting("keep_exif", "0", "Keep metadata in stored files (off removes it).", Flag()),
    Setting("url_sources", "1", "Allow URL sources for keyed uploads.", Flag()),
    Setting("url_allow_nets", "", "CIDRs or host names that URL sources may reach although private.", Nets()),
    Setting("url_timeout", "30", "Deadline in seconds for a whole URL download.", Number(DAY, SECONDS)),
    Setting("ffmpeg_timeout", "300", "Seconds one ffmpeg run may take before the upload is refused.",
            Number(DAY, SECONDS)),
    Setting("guest_uploads", "0", "Accept uploads without a key.", Flag()),
    Setting("resumable_mb", "50", "Files above this many MB go up from the upload page in chunks that "
            "resume after a broken connection (tus); signed-in users and keys only.",
            Number(MANY, " of MB")),
    Setting("secret_key", "", "Signs sign-in cookies; empty: a secret made once and kept in the "
            "database (every process sharing it uses the same).", Secret()),
    Setting("session_days", "30", "Days a browser stays signed in.", Whole(1, 3660, " days")),
    Setting("guest_max_upload_mb", "20", "Largest guest upload in MB.", Number(MANY, " of MB")),
    Setting("rate_limit_key", "", "Uploads allowed per API key, as N/SECONDS (e.g. 120/60); empty: no limit.",
            Rate()),
    Setting("rate_limit_ip", "", "API requests allowed per client address, as N/SECONDS; empty: no limit.",
            Rate()),
    Setting("expiration_min", "300", "Shortest expiration in seconds.", Whole(1, 100 * YEAR, SECONDS)),
    Setting("expiration_max", "31622400", "Longest expiration in seconds (366 days).",
            Whole(1, 100 * YEAR, SECONDS)),
    Setting("expiry_interval", "60", "Seconds between expiry sweeps.", Number(30 * DAY, SECONDS)),
    Setting("route_image", "image", "Route of image viewer pages.", Route()),
    Setting("route_video", "clip", "Route of video viewer pages.", Route()),
    Setting("accel", "none", "Let a front server send files: none, nginx (X-Accel-Redirect), sendfile.",
            Choice("none", "nginx", "sendfile")),
    Setting("public_tags", "0", "Public tag pages at /tag/<key>.", Flag()),
    Setting("connections", "4000", "Most open client connections at once (kept below the open-file "
            "limit, which the server raises to its hard limit).", Whole(10, MANY)),
    Setting("connections_per_address", "64", "Most open connections from one client address (an IPv6 "
            "/64 counts as one); more are answered 503. 0: no cap. Not applied with IMGZ_TRUST_PROXY.",
            Whole(0, MANY, note=" (0: no cap)")),
    Setting("header_timeout", "20", "Seconds a connection has to send a request line and headers; also "
            "how long an idle keep-alive connection stays open.", Number(DAY, SECONDS)),
    Setting("body_min_rate_kb", "8", "Slowest average rate (KB/s) a request body may arrive at once it "
            "has had IMGZ_HEADER_TIMEOUT seconds; slower clients are disconnected.",
            Number(MANY, " of KB/s")),
    Setting("keyless_spool_mb", "1000", "MB that bodies of requests without a valid key in X-API-Key or "
            "the query string may hold at once (memory or <data>/tmp); past it they get 503.",
            Number(MANY, " of MB")),
    Setting("stream_mb", "16", "Uploads with a valid key in X-API-Key or the query string whose body "
            "is this many MB or more are parsed, hashed and written while they arrive (two at a "
            "time), not after their last byte. 0: every body is received whole first.",
            Whole(0, MANY, " of MB", note=" (0: never)")),
    Setting("access_log", "1", "One line per request on stderr: time, client, method, path (secrets "
            "masked), status, bytes, seconds.", Flag()),
    Setting("metrics", "0", "Prometheus metrics at /metrics, for a direct loopback client without "
            "proxy headers or a request bearing IMGZ_METRICS_TOKEN.", Flag()),
    Setting("metrics_token", "", "A bearer token that lets a scraper read /metrics from anywhere "
            "(Authorization: Bearer TOKEN); empty: loopback only.", Token()),
)

_BY_NAME = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class Config:
    data: str
    db: str
    database_url: str
    storage: str
    s3_bucket: str
    s3_endpoint: str
    s3_region: str
    s3_prefix: str
    s3_path_style: bool
    s3_checksum: str
    s3_cache_mb: int
    public_url: str
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
    resumable_mb: float
    secret_key: str
    session_days: int
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
    stream_mb: int
    access_log: bool
    metrics: bool
    metrics_token: str

    @property
    def data_dir(self) -> Path:
        return Path(self.data)

    @property
    def database(self) -> str:
        """What the db layer opens: the PostgreSQL URL when one is given, else the SQLite file."""
        return self.database_url or self.db

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1_000_000)

    @property
    def guest_max_upload_bytes(self) -> int:
        return int(self.guest_max_upload_mb * 1_000_000)


def env_name(name: str) -> str:
    return "IMGZ_" + name.upper()


def refused(name: str, value: Any, reason: str = "", *, flag: bool = False) -> ConfigError:
    """The one line a bad setting gets: the setting, its value, why if need be, what it takes.

    ``IMGZ_PORT='abc': it takes a whole number from 0 to 65535 (0: any free port)``
    """
    shown = "***" if isinstance(_BY_NAME[name].kind, Secret) else hide_password(str(value))
    if len(shown) > 80:
        shown = shown[:77] + "..."
    source = f" (from --{name})" if flag else ""
    why = f"{reason}; " if reason else ""
    return ConfigError(f"{env_name(name)}={shown!r}{source}: {why}it takes {_BY_NAME[name].kind.accepts}")


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
    flagged: set[str] = set()
    for source in (flags or {}, overrides or {}):
        for name, value in source.items():
            if name not in _BY_NAME:
                raise ConfigError(f"unknown setting {name!r}")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                value = str(value)  # a number from a flag is checked like the same text
            if value is not None:
                raw[name] = value
                if source is flags:
                    flagged.add(name)
                else:
                    flagged.discard(name)
    values: dict[str, Any] = {}
    for s in SETTINGS:
        value = raw[s.name]
        if isinstance(value, str) and value.strip() == "" and s.kind.blank:
            value = ""  # worked out below
        elif isinstance(value, str):
            try:
                value = s.kind(value)
            except Refused as exc:
                raise refused(s.name, raw[s.name], exc.reason, flag=s.name in flagged) from None
        values[s.name] = value
    if not values["data"]:
        values["data"] = str((APP_DIR / "data").resolve())
    values["data"] = str(Path(values["data"]).resolve())
    if values["database_url"] and values["db"]:
        raise refused("database_url", raw["database_url"], "IMGZ_DB is set too; give one of them")
    if not values["db"] and not values["database_url"]:
        values["db"] = str(Path(values["data"]) / "imgz.db")
    if values["storage"] == "s3" and not values["s3_bucket"]:
        raise refused("s3_bucket", raw["s3_bucket"], "IMGZ_STORAGE=s3 needs a bucket")
    if values["public_url"] and values["storage"] != "s3":
        raise refused("public_url", raw["public_url"], "it is only for IMGZ_STORAGE=s3")
    if not values["workers"]:
        values["workers"] = os.cpu_count() or 1
    if isinstance(values["upload_queue"], str):  # still empty: not given
        values["upload_queue"] = 4 * values["workers"]
    if not values["timezone"]:
        values["timezone"] = _machine_timezone()
    if values["route_image"] == values["route_video"]:
        raise refused("route_video", raw["route_video"], "the same as IMGZ_ROUTE_IMAGE")
    if values["expiration_min"] > values["expiration_max"]:
        raise refused("expiration_min", raw["expiration_min"],
                      f"more than IMGZ_EXPIRATION_MAX ({values['expiration_max']})")
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
