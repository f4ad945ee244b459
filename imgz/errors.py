"""Errors that carry their HTTP status and Chevereto error code.

Lower layers raise these; one handler in ``imgz/web.py`` renders them, as Chevereto's JSON
error body on API paths and as an error page elsewhere. This module imports nothing of imgz.
"""
from __future__ import annotations


class ImgzError(Exception):
    """A failure the client should hear about, with its HTTP status and Chevereto code."""

    status = 400
    code = 400
    message = "Bad request"
    headers: dict[str, str] = {}

    def __init__(self, message: str | None = None, status: int | None = None,
                 code: int | None = None) -> None:
        if message is not None:
            self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        super().__init__(self.message)

    def __reduce__(self) -> tuple:
        # Media work runs in child processes: an error crosses the pipe as it is (status, code,
        # message, headers), whatever arguments its class takes.
        return (_rebuild, (type(self), self.message, self.status, self.code, self.headers))


def _rebuild(cls: type, message: str, status: int, code: int, headers: dict) -> ImgzError:
    exc = cls.__new__(cls)
    ImgzError.__init__(exc, message, status, code)
    if headers:
        exc.headers = headers
    return exc


class ConfigError(Exception):
    """A setting has a bad value; the start stops with one line naming it."""


class Unauthorized(ImgzError):
    status, code, message = 401, 100, "Invalid API key."


class Forbidden(ImgzError):
    status, code, message = 403, 403, "Forbidden"


class EmptySource(ImgzError):
    status, code, message = 400, 130, "Empty upload source"


class InvalidBase64(ImgzError):
    status, code, message = 400, 120, "Invalid base64 string"


class InvalidURL(ImgzError):
    """A URL source that was refused or could not be fetched; the reason follows a colon."""

    status, code = 400, 622

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"Invalid image URL: {reason}")


class TooBig(ImgzError):
    status, code = 413, 400

    def __init__(self, limit_mb: float) -> None:
        shown = f"{limit_mb:g}"
        super().__init__(f"File too big - max {shown} MB")


class QuotaExceeded(ImgzError):
    """The upload would take its user past their quota of stored bytes or files."""

    status, code, message = 413, 413, "Quota exceeded"


class NoStorage(ImgzError):
    status, code, message = 507, 400, "Not enough storage"


class InvalidType(ImgzError):
    status, code, message = 415, 612, "Invalid file type"


class InvalidImage(ImgzError):
    status, code, message = 400, 400, "Invalid image"


class ImageTooLarge(ImgzError):
    status, code, message = 400, 400, "Image too large"


class InvalidVideo(ImgzError):
    status, code, message = 400, 100, "Invalid video file provided"


class InvalidParameter(ImgzError):
    """A parameter with a value outside its rule (width, description, expiration, album...)."""

    status, code = 400, 400


class RateLimited(ImgzError):
    """Too many requests; ``Retry-After`` says when to come back."""

    status, code = 429, 429

    def __init__(self, retry_after: int) -> None:
        self.headers = {"Retry-After": str(retry_after)}
        super().__init__(f"Too many requests - retry in {retry_after} s")


class TooComplex(ImgzError):
    """An image whose decoding would cost more than its budget (or is absurd by its structure)."""

    status, code, message = 400, 400, "Image too complex"


class Busy(ImgzError):
    """Every processing slot is taken and the queue for them is full; ``Retry-After`` says when."""

    status, code = 503, 503

    def __init__(self, retry_after: int) -> None:
        self.headers = {"Retry-After": str(retry_after)}
        super().__init__(f"Server busy - retry in {retry_after} s")


class DatabaseBusy(Busy):
    """The database stayed locked by other writers for its whole busy timeout."""

    def __init__(self, retry_after: int = 5) -> None:
        super().__init__(retry_after)


class DatabaseUnavailable(DatabaseBusy):
    """The database server cannot be reached: down, restarting, or refusing connections."""

    def __init__(self, retry_after: int = 5) -> None:
        self.headers = {"Retry-After": str(retry_after)}
        ImgzError.__init__(self, f"Database unavailable - retry in {retry_after} s")


class StoreUnavailable(ImgzError):
    """The object store cannot be reached or failed on its side; nothing was stored. The
    store's own words go to the log (``detail``), never to the client."""

    status, code = 503, 503

    def __init__(self, detail: str = "", retry_after: int = 10) -> None:
        self.detail = detail
        self.headers = {"Retry-After": str(retry_after)}
        super().__init__(f"Storage unavailable - retry in {retry_after} s")


class Conflict(ImgzError):
    """A value that must be unique is taken already (a public id drawn twice, a name in use)."""

    status, code, message = 409, 409, "Conflict"


class DatabaseError(ImgzError):
    """The database failed in a way no client can mend; ``detail`` is the driver's word on it."""

    status, code, message = 500, 500, "Internal error"
    detail = ""

    def __init__(self, detail: str = "") -> None:
        self.detail = detail
        super().__init__()
