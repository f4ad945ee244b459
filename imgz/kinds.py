"""The kinds of value a setting takes: each reads a text and says, in words, what it accepts.

A kind is called with the setting's text and returns the value, or raises ``Refused``: with a
reason when there is more to say than that the text is not what the kind accepts (a path
prefix in a base URL, a reserved route), else without one. ``config`` turns that into the one
line a bad setting gets.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .addresses import parse_allow_nets, unspecified
from .layout import DIR as MEDIA_DIR
from .ratelimit import parse_limit

_WHOLE = re.compile(r"[+-]?[0-9]+")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_PASSWORD = re.compile(r"(//[^/@:]*:)[^/@]*@")
_ROUTE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
RESERVED_ROUTES = ("api", MEDIA_DIR, "tag", "static", "oembed", "sharex.sxcu", "_imgz_media")


class Refused(ValueError):
    """A setting's text that its kind does not take; ``reason`` says why when it is not plain."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason


class Kind:
    """What a setting takes (``accepts``, in words) and how its text becomes a value.

    ``blank`` names what an empty text stands for, when the loader works that out itself.
    """

    what = "any text"

    def __init__(self, blank: str | None = None) -> None:
        self.blank = blank

    @property
    def accepts(self) -> str:
        return self.what + (f", or empty for {self.blank}" if self.blank else "")

    def __call__(self, text: str) -> Any:
        return self.read(text.strip())

    def read(self, text: str) -> Any:
        return text


class Whole(Kind):
    def __init__(self, minimum: int, maximum: int, unit: str = "", *, blank: str | None = None,
                 note: str = "") -> None:
        super().__init__(blank)
        self.minimum, self.maximum = minimum, maximum
        self.what = f"a whole number{unit} from {minimum} to {maximum}{note}"

    def read(self, text: str) -> int:
        if not _WHOLE.fullmatch(text):
            raise Refused()
        try:
            value = int(text)
        except ValueError:  # more digits than Python converts: far out of range anyway
            raise Refused() from None
        if not self.minimum <= value <= self.maximum:
            raise Refused()
        return value


class Number(Kind):
    """A decimal number above 0; ``1.5`` and ``2e3`` are numbers, ``nan`` and ``inf`` are not."""

    def __init__(self, maximum: float, unit: str = "") -> None:
        super().__init__()
        self.maximum = maximum
        self.what = f"a number{unit} above 0 and at most {maximum:.0f}"

    def read(self, text: str) -> float:
        if not _NUMBER.fullmatch(text):
            raise Refused()
        value = float(text)
        if not 0 < value <= self.maximum:
            raise Refused()
        return value


class Flag(Kind):
    what = "1/0, on/off, true/false or yes/no (empty is off)"

    def read(self, text: str) -> bool:
        value = text.lower()
        if value in {"1", "true", "yes", "on"}:
            return True
        if value in {"0", "false", "no", "off", ""}:
            return False
        raise Refused()


class Choice(Kind):
    def __init__(self, *options: str) -> None:
        super().__init__()
        self.options = options
        self.what = "one of " + ", ".join(options)

    def read(self, text: str) -> str:
        if text.lower() not in self.options:
            raise Refused()
        return text.lower()


def _http_url(text: str) -> tuple[str, Any]:
    """The text without trailing slashes and its parts, for an http:// or https:// URL with a
    host; Refused for anything else (a port that is no number from 0 to 65535, a broken [IPv6]
    host, another scheme)."""
    value = text.rstrip("/")
    try:
        parts = urlsplit(value)
        parts.port
    except ValueError:
        raise Refused() from None
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise Refused()
    return value, parts


class BaseURL(Kind):
    what = ("empty, or http:// or https:// with a host clients can reach and an optional port from "
            "1 to 65535, nothing after it")

    def read(self, text: str) -> str:
        if not text.rstrip("/"):
            return ""
        value, parts = _http_url(text)
        if parts.port == 0:
            raise Refused()
        if parts.path or parts.query or parts.fragment:
            raise Refused("a path prefix is not supported")
        if unspecified(parts.hostname):
            raise Refused(f"{parts.hostname} is where a server listens, not an address clients can reach")
        return value


class Route(Kind):
    what = ("1 to 32 lowercase letters, digits, - or _, starting with a letter or digit, other than "
            + ", ".join(r for r in RESERVED_ROUTES if _ROUTE.fullmatch(r)))

    def read(self, text: str) -> str:
        if not _ROUTE.fullmatch(text):
            raise Refused()
        if text in RESERVED_ROUTES:
            raise Refused(f"{text!r} is reserved")
        return text


class Nets(Kind):
    what = "CIDRs (10.0.0.0/8), addresses or host names, separated by commas or spaces"

    def read(self, text: str) -> tuple[str, ...]:
        items = tuple(part for part in re.split(r"[,\s]+", text) if part)
        try:
            parse_allow_nets(items)
        except ValueError as exc:
            raise Refused(str(exc)) from None
        return items


class Rate(Kind):
    what = ("N/SECONDS such as 120/60 (N from 1 to 1000000000, SECONDS above 0 and at most 31557600), "
            "or empty, 0 or off for no limit")

    def read(self, text: str) -> str:
        try:
            limit = parse_limit(text)
        except ValueError:
            raise Refused() from None
        if limit is not None and (limit.count > 1_000_000_000 or limit.seconds > 31_557_600):
            raise Refused()
        return text


class Zone(Kind):
    what = "an IANA time zone name such as Europe/Paris or UTC"

    def read(self, text: str) -> str:
        from zoneinfo import ZoneInfo

        if text:
            try:
                ZoneInfo(text)
            except (LookupError, ValueError, OSError):
                raise Refused() from None
        return text


class Place(Kind):
    """A path, made absolute; what is already there must be of the right sort (a directory or not)."""

    def __init__(self, what: str, directory: bool, blank: str) -> None:
        super().__init__(blank)
        self.what, self.directory = what, directory

    def read(self, text: str) -> str:
        if not text:
            return ""
        try:
            path = Path(text).expanduser().resolve()
            is_dir, exists = path.is_dir(), path.exists()
        except (OSError, RuntimeError, ValueError):  # a loop of links, a name too long, a NUL
            raise Refused() from None
        if exists and is_dir != self.directory:
            raise Refused("it is a directory" if is_dir else "it is a file, not a directory")
        return str(path)


class Text(Kind):
    def __init__(self, what: str) -> None:
        super().__init__()
        self.what = what


class Secret(Kind):
    what = "empty (a secret made once and kept in the database), or at least 32 random characters"

    def read(self, text: str) -> str:
        if text and len(text) < 32:
            raise Refused("it is too short to sign sessions safely")
        return text


class Token(Secret):
    what = "empty (none), or at least 16 characters"

    def read(self, text: str) -> str:
        if text and len(text) < 16:
            raise Refused("it is too short to be hard to guess")
        return text


def hide_password(url: str) -> str:
    """A URL as it may be shown: any password in it (``//user:password@``) replaced by ***."""
    return _PASSWORD.sub(r"\1***@", url)


class DatabaseURL(Kind):
    what = ("empty for the SQLite file, or a PostgreSQL URL: "
            "postgresql://USER:PASSWORD@HOST[:PORT]/DATABASE")
    SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")

    def read(self, text: str) -> str:
        if not text:
            return ""
        try:
            parts = urlsplit(text)
            parts.port
        except ValueError:
            raise Refused() from None
        if parts.scheme not in self.SCHEMES or not parts.path.strip("/"):
            raise Refused()
        return text


class Endpoint(Kind):
    what = "empty for the SDK's own endpoint, or http:// or https:// with a host and optional port"

    def read(self, text: str) -> str:
        if not text.rstrip("/"):
            return ""
        value, parts = _http_url(text)
        if parts.query or parts.fragment:
            raise Refused()
        return value


class PublicURL(Endpoint):
    what = "empty, or an http:// or https:// URL under which the stored files are public"


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PREFIX_PART = re.compile(r"[A-Za-z0-9._-]+")


class Bucket(Kind):
    what = "a bucket name: 3 to 63 lowercase letters, digits, dots or hyphens"

    def read(self, text: str) -> str:
        if text and (not _BUCKET.fullmatch(text) or ".." in text):
            raise Refused()
        return text


class KeyPrefix(Kind):
    what = ("empty, or folder names of letters, digits, '.', '_' or '-' separated by '/' "
            "(such as imgz/ or site/media)")

    def read(self, text: str) -> str:
        value = text.strip("/")
        if not value:
            return ""
        if any(part in {".", ".."} or not _PREFIX_PART.fullmatch(part) for part in value.split("/")):
            raise Refused()
        return value + "/"
