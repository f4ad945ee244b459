"""The S3 SDK at the store's edge: the process's client, and the SDK's errors in the store's terms.

The client is made from the settings alone; credentials come from the SDK's standard chain
(environment, config files, instance roles) and are never read, logged or shown here.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Iterator
from urllib.parse import urlsplit

import boto3
from botocore.config import Config as ClientConfig
from botocore.exceptions import BotoCoreError, ClientError

from ...errors import StoreUnavailable

if TYPE_CHECKING:
    from ...config import Config

log = logging.getLogger("imgz")
Failure = (ClientError, BotoCoreError)

_MISSING = {"NoSuchKey", "NotFound", "404"}
_TAKEN = {"PreconditionFailed", "412", "ConditionalRequestConflict"}


def code_of(exc: ClientError) -> tuple[str, int]:
    error = exc.response.get("Error", {})
    return str(error.get("Code", "")), int(exc.response.get("ResponseMetadata", {})
                                           .get("HTTPStatusCode") or 0)


def why(exc: Exception) -> str:
    """What the log says of a failure: the error code and message, never a request's details."""
    if isinstance(exc, ClientError):
        code, status = code_of(exc)
        return f"{code or status} {exc.response.get('Error', {}).get('Message', '')}".strip()
    return f"{type(exc).__name__}: {exc}"


@contextlib.contextmanager
def answers(what: str, key: str) -> Iterator[None]:
    """Turn the SDK's errors into the store's: missing -> FileNotFoundError, taken ->
    FileExistsError, anything else (unreachable, 5xx, refused credentials) -> StoreUnavailable."""
    try:
        yield
    except ClientError as exc:
        code, status = code_of(exc)
        if code != "NoSuchBucket" and (code in _MISSING or status == 404):
            raise FileNotFoundError(f"no stored file {key!r}") from None
        if code in _TAKEN or status in (409, 412):
            raise FileExistsError(f"stored file {key!r} exists") from None
        log.warning("object store: %s of %s failed: %s", what, key, why(exc))
        raise StoreUnavailable(why(exc)) from None
    except BotoCoreError as exc:
        log.warning("object store: %s of %s failed: %s", what, key, why(exc))
        raise StoreUnavailable(why(exc)) from None


_clients: dict[tuple, Any] = {}
_clients_lock = threading.Lock()


def client_for(cfg: Config) -> Any:
    """The process's client for the S3 settings of ``cfg`` (made on first use)."""
    ident = (cfg.s3_endpoint, cfg.s3_region, cfg.s3_path_style, cfg.s3_checksum)
    with _clients_lock:
        client = _clients.get(ident)
        if client is not None:
            return client
        settings = ClientConfig(
            max_pool_connections=max(10, cfg.threads + 4), connect_timeout=5, read_timeout=60,
            retries={"max_attempts": 3, "mode": "standard"}, signature_version="s3v4",
            s3={"addressing_style": "path" if cfg.s3_path_style else "auto"},
            request_checksum_calculation=cfg.s3_checksum,
            response_checksum_validation=cfg.s3_checksum)
        client = _clients[ident] = boto3.session.Session().client(
            "s3", endpoint_url=cfg.s3_endpoint or None, region_name=cfg.s3_region or None,
            config=settings)
        return client


class Signer:
    """Paths of objects signed for GET (for nginx), each made again once half its time is gone:
    signing costs more than the rest of a request handed to nginx."""

    def __init__(self, client: Any, bucket: str, seconds: int, most: int = 50_000) -> None:
        self.client, self.bucket, self.seconds, self.most = client, bucket, seconds, most
        self._made: dict[str, tuple[float, str]] = {}

    def path(self, name: str) -> str:
        now = time.monotonic()
        made = self._made.get(name)
        if made is not None and now - made[0] < self.seconds / 2:
            return made[1]
        url = self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": name}, ExpiresIn=self.seconds)
        parts = urlsplit(url)
        signed = f"{parts.path}?{parts.query}"
        if len(self._made) >= self.most:
            self._made.clear()
        self._made[name] = (now, signed)
        return signed

    def forget(self, names: list[str]) -> None:
        for name in names:
            self._made.pop(name, None)
