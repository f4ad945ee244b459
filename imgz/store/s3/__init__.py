"""The S3 store: stored files as objects of an S3-compatible bucket, keyed ``<IMGZ_S3_PREFIX><key>``.

One client per process (boto3's clients are thread-safe), credentials only through the SDK's own
chain (environment, config files, instance roles): nothing here reads, logs or shows them.

Puts stream from the scratch file: one PutObject below ``SINGLE_PUT_LIMIT``, a multipart upload in
parts read one at a time above it (memory stays flat whatever the size; a failed one is aborted).
A key is never overwritten: puts carry ``If-None-Match: *``, which AWS S3 and most compatible
stores honour, so two writers can never both win; a store found to ignore or refuse it (a probe
at the first put) gets a HEAD before each put instead, which is enough for imgz, whose names are
reserved in the database before any put.

A stored object's size and ETag never change (no overwrite), so ``stat`` remembers them; reads
still ask the bucket (``If-Match`` the remembered ETag), so a deleted object is never served.
Resumable uploads in progress live under ``<prefix>.partial/`` (store/s3/partial.py), which
listings and the abort of stale puts leave alone.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import secrets
import shutil
import tempfile
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

from ...errors import StoreUnavailable
from ...filetype import MIME
from .. import Stat, Store, check_key, check_prefix
from ..cache import DiskCache, Tee
from .partial import PARTIAL, PartialParts
from .sdk import ClientError, Failure, Signer, answers, code_of, why

log = logging.getLogger("imgz")

SINGLE_PUT_LIMIT = 8 * 1024 * 1024
PART_SIZE = 8 * 1024 * 1024
MAX_PARTS = 10_000
DELETE_BATCH = 1000
PRESIGN_SECONDS = 60
STAT_CACHE = 50_000
ONE_YEAR = 31_536_000
ORPHAN_GRACE = 3600

def object_cache_control(expires_at: datetime | None, now: datetime) -> str:
    """The Cache-Control an object fetched directly carries: at most its lifetime at the put."""
    if expires_at is None:
        return f"public, max-age={ONE_YEAR}, immutable"
    return f"public, max-age={max(int((expires_at - now).total_seconds()), 0)}"


class S3Store(PartialParts, Store):
    remote = True
    orphan_grace = ORPHAN_GRACE

    def __init__(self, client: Any, bucket: str, prefix: str = "", *, cache_control: bool = False,
                 conditional: bool | None = None, copies: DiskCache | None = None) -> None:
        self.client = client
        self.cache = copies  # this host's copies of files read (store/cache.py), or None
        self.bucket = bucket
        self.prefix = prefix
        self.cache_control = cache_control  # objects are fetched directly (IMGZ_PUBLIC_URL)
        self.conditional = conditional      # If-None-Match honoured; None: not probed yet
        self._stats: dict[str, Stat] = {}
        self._signer = Signer(client, bucket, PRESIGN_SECONDS)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"S3Store({self.bucket!r}, {self.prefix!r})"

    def _name(self, key: str) -> str:
        return self.prefix + check_key(key)

    def prepare(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Failure as exc:
            raise OSError(f"bucket {self.bucket!r}: {why(exc)}") from None
        self._conditional_puts()

    def _conditional_puts(self) -> bool:
        """Whether the bucket refuses a put over an existing key when asked: tried once."""
        if self.conditional is None:
            probe = f"{self.prefix}.imgz-probe-{secrets.token_hex(8)}"
            try:
                with answers("probe", probe):
                    self.client.put_object(Bucket=self.bucket, Key=probe, Body=b"", IfNoneMatch="*")
                    try:
                        self.client.put_object(Bucket=self.bucket, Key=probe, Body=b"",
                                               IfNoneMatch="*")
                        honoured = False
                    except ClientError as exc:
                        if code_of(exc)[1] != 412:
                            raise
                        honoured = True
            except StoreUnavailable:
                honoured = False  # refused (501, 400): the store does not take the header
            finally:
                self._delete_names([probe])
            if not honoured:
                log.info("object store: conditional puts not honoured; a HEAD goes before each put")
            self.conditional = honoured
        return self.conditional

    def put(self, key: str, src: Path, expires_at: datetime | None = None) -> None:
        name = self._name(key)
        size = os.stat(src).st_size
        extra: dict[str, str] = {"ContentType": MIME.get(key.rpartition(".")[2],
                                                         "application/octet-stream")}
        if self.cache_control:
            extra["CacheControl"] = object_cache_control(expires_at, datetime.now(timezone.utc))
        if self._conditional_puts():
            extra["IfNoneMatch"] = "*"
        else:
            self._forget([key])  # asked afresh: another process may have deleted it
            if self.stat(key) is not None:
                raise FileExistsError(f"stored file {key!r} exists")
        try:
            if size < SINGLE_PUT_LIMIT:
                with open(src, "rb") as body, answers("put", key):
                    self.client.put_object(Bucket=self.bucket, Key=name, Body=body, **extra)
            else:
                self._put_parts(key, name, src, size, extra)
        except StoreUnavailable:
            self._delete_names([name])  # an answer lost after the object was made
            raise
        self._forget([key])
        os.unlink(src)

    def _put_parts(self, key: str, name: str, src: Path, size: int, extra: dict[str, str]) -> None:
        """A multipart upload read from ``src`` one part at a time; aborted if anything fails."""
        part_size = max(PART_SIZE, -(-size // MAX_PARTS))
        done = {k: v for k, v in extra.items() if k == "IfNoneMatch"}
        made = {k: v for k, v in extra.items() if k != "IfNoneMatch"}
        with answers("put", key):
            upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=name,
                                                            **made)["UploadId"]
        try:
            parts = []
            with open(src, "rb") as file:
                number = 1
                while chunk := file.read(part_size):
                    with answers("put", key):
                        answer = self.client.upload_part(Bucket=self.bucket, Key=name,
                                                         UploadId=upload_id, PartNumber=number,
                                                         Body=chunk)
                    del chunk
                    part = {"ETag": answer["ETag"], "PartNumber": number}
                    part.update((k, v) for k, v in answer.items() if k.startswith("Checksum")
                                and k != "ChecksumType")
                    parts.append(part)
                    number += 1
            with answers("put", key):
                self.client.complete_multipart_upload(Bucket=self.bucket, Key=name,
                                                      UploadId=upload_id,
                                                      MultipartUpload={"Parts": parts}, **done)
        except BaseException:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload_id)
            except Failure as exc:
                log.warning("object store: could not abort the parts of %s (check --repair "
                            "will): %s", key, why(exc))
            raise

    def open(self, key: str, start: int = 0, stop: int | None = None) -> IO[bytes]:
        name = self._name(key)
        if stop is not None and stop <= start:
            if self.stat(key) is None:
                raise FileNotFoundError(f"no stored file {key!r}")
            return io.BytesIO(b"")
        args: dict[str, str] = {}
        known = self._stats.get(key)
        copy = self.cache.path(key) if self.cache is not None else None
        if copy is not None:
            try:
                file = open(copy, "rb")
                file.seek(start)
                return file
            except OSError:  # dropped since: read from the bucket
                pass
        if known is not None:
            args["IfMatch"] = f'"{known.version}"'
        if start or stop is not None:
            args["Range"] = f"bytes={start}-{'' if stop is None else stop - 1}"
        try:
            with answers("read", key):
                try:
                    body = self.client.get_object(Bucket=self.bucket, Key=name, **args)["Body"]
                    return self._copied(key, body, start, stop, known)
                except ClientError as exc:
                    if code_of(exc)[1] == 416 and stop is None:
                        return io.BytesIO(b"")  # from the end on: nothing
                    raise
        except FileExistsError:  # If-Match failed: the key was deleted and put anew elsewhere
            self._forget([key])
            raise FileNotFoundError(f"stored file {key!r} changed") from None

    def _copied(self, key: str, body: IO[bytes], start: int, stop: int | None,
                known: Stat | None) -> IO[bytes]:
        """The stream of a whole file, also written to this host's copy when there is room."""
        if self.cache is None or known is None or start or stop not in (None, known.size):
            return body
        filling = self.cache.filling(key, known.size)
        return body if filling is None else Tee(body, filling)  # type: ignore[return-value]

    def stat(self, key: str) -> Stat | None:
        st = self._stat(key)
        if st is not None and self.cache is not None:
            copy = self.cache.path(key)
            if copy is not None:  # answered from this host's copy, with the object's own dates
                return st._replace(path=copy)
        return st

    def _stat(self, key: str) -> Stat | None:
        name = self._name(key)
        known = self._stats.get(key)
        if known is not None:
            return known
        try:
            with answers("stat", key):
                head = self.client.head_object(Bucket=self.bucket, Key=name)
        except FileNotFoundError:
            return None
        if head.get("ContentType") == "application/x-directory":
            return None  # some stores answer for a folder
        st = Stat(int(head["ContentLength"]), int(head["LastModified"].timestamp()) * 1_000_000_000,
                  str(head.get("ETag", "")).strip('"'), None)
        with self._lock:
            if len(self._stats) >= STAT_CACHE:
                self._stats.clear()
            self._stats[key] = st
        return st

    def _forget(self, keys: Iterable[str]) -> None:
        with self._lock:
            for key in keys:
                self._stats.pop(key, None)

    def delete(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        names = [self._name(key) for key in keys]
        self._forget(keys)
        self._signer.forget(names)
        self._delete_names(names)
        self.drop_copies(keys)

    def copies(self) -> list[str]:
        return [] if self.cache is None else self.cache.keys()

    def drop_copies(self, keys: Iterable[str]) -> None:
        if self.cache is not None:
            self.cache.remove(keys)

    def _delete_names(self, names: list[str]) -> None:
        cut = len(self.prefix)
        for first in range(0, len(names), DELETE_BATCH):
            batch = names[first:first + DELETE_BATCH]
            try:
                answer = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": n} for n in batch], "Quiet": True})
            except Failure as exc:
                log.warning("object store: could not remove %d file(s) (%s...): %s", len(batch),
                            batch[0][cut:], why(exc))
                continue
            for error in answer.get("Errors", ()):
                log.warning("could not remove %s: %s", str(error.get("Key", ""))[cut:],
                            error.get("Code", "error"))

    def entries(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        start = self.prefix + check_prefix(prefix)
        cut = len(self.prefix)
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                      Prefix=start)
        with answers("list", start):
            for page in pages:
                for item in page.get("Contents", ()):
                    key = item["Key"][cut:]
                    if key and not key.endswith("/") and not key.startswith(PARTIAL):
                        yield key, int(item["LastModified"].timestamp()) * 1_000_000_000

    def list(self, prefix: str = "") -> Iterator[str]:
        for key, _ in self.entries(prefix):
            yield key

    def abort_stale_puts(self, older_than: datetime) -> int:
        aborted = 0
        pages = self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket,
                                                                             Prefix=self.prefix)
        with answers("list of unfinished puts", self.prefix):
            for page in pages:
                for item in page.get("Uploads", ()):
                    if item["Key"].startswith(self.prefix + PARTIAL):
                        continue  # resumable uploads: the sweep ends those abandoned
                    if item["Initiated"] < older_than:
                        self.client.abort_multipart_upload(Bucket=self.bucket, Key=item["Key"],
                                                           UploadId=item["UploadId"])
                        aborted += 1
        return aborted

    def accel_target(self, key: str) -> str | None:
        return self._signer.path(self._name(key))

    def free_bytes(self) -> int | None:
        return None

    @contextlib.contextmanager
    def local_file(self, key: str, scratch: Path) -> Iterator[Path]:
        body = self.open(key)
        fd, path = tempfile.mkstemp(dir=scratch, prefix="stored-", suffix="." + key.rpartition(".")[2])
        try:
            with os.fdopen(fd, "wb") as out, body:
                with answers("read", key):
                    shutil.copyfileobj(body, out, 1024 * 1024)
            yield Path(path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
