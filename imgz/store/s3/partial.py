"""Resumable uploads in progress in a bucket: an S3 multipart upload, and a small tail object.

S3 takes parts of at least 5 MiB (but the last) and cannot append to an object. So an upload of
``length`` bytes is cut into parts at fixed places: part n holds the bytes from (n - 1) * part
size on (the size is fixed at the start, in the handle). An append fills part after part in a
buffer file in the process's scratch folder and uploads each whole one; what it filled of the
next part (less than a part) is put as an object of its own, ``.partial/<name>.tail-<n>``,
where the next append, from any process, starts from. The offset the database counts is the
whole parts plus what it counted of that tail: an append cut anywhere leaves nothing that
counts wrong, because a part uploaded again holds the same bytes at the same place and replaces
itself, and a tail written again starts with the bytes counted of it before.

When the upload is complete the tail goes up as the last part and the multipart upload is
completed into ``.partial/<name>``, which is read once and removed with the rest. Everything
lives under ``<prefix>.partial/``, which the store's listings leave out (no stored file's key
starts with a dot).
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Callable

from .sdk import Failure, answers, why

log = logging.getLogger("imgz")

PARTIAL = ".partial/"
PART = 8 * 1024 * 1024
MIB = 1024 * 1024
MAX_PARTS = 10_000
COPY_BLOCK = 1024 * 1024


def part_size(length: int) -> int:
    """The part size of an upload of ``length`` bytes: 8 MiB, or more (whole MiB) so that it
    takes at most S3's 10,000 parts."""
    size = max(PART, -(-length // MAX_PARTS))
    return -(-size // MIB) * MIB


def _check(name: str) -> str:
    if not name or not all(ch in "0123456789abcdef" for ch in name):
        raise ValueError(f"unsafe partial name {name!r}")
    return name


class PartialParts:
    """The partial-upload methods of the S3 store (store/s3/__init__.py mixes them in)."""

    client: Any
    bucket: str
    prefix: str

    def _partial_key(self, name: str, tail: int | None = None) -> str:
        return f"{self.prefix}{PARTIAL}{_check(name)}" + ("" if tail is None else f".tail-{tail}")

    def begin_partial(self, name: str, length: int) -> str:
        key = self._partial_key(name)
        with answers("start of a resumable upload", name[:8]):
            upload = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=key, ContentType="application/octet-stream")["UploadId"]
        return json.dumps({"upload": upload, "part": part_size(length)})

    def append_partial(self, name: str, handle: str, offset: int, body: IO[bytes], scratch: Path,
                       durable: Callable[[int], None]) -> int:
        state = json.loads(handle)
        size, upload = int(state["part"]), state["upload"]
        first = number = offset // size + 1
        had = offset % size
        fd, path = tempfile.mkstemp(dir=scratch, prefix="part-")
        try:
            with os.fdopen(fd, "w+b") as buffer:
                if had:
                    self._read_tail(name, number, had, buffer)
                filled = had
                while chunk := body.read(min(COPY_BLOCK, size - filled)):
                    buffer.write(chunk)
                    filled += len(chunk)
                    if filled == size:
                        self._upload_part(name, upload, number, buffer, size)
                        offset = number * size
                        number += 1
                        filled = 0
                        buffer.seek(0)
                        buffer.truncate()
                        durable(offset)
                if filled > (had if number == first else 0):
                    buffer.seek(0)
                    with answers("tail of a resumable upload", name[:8]):
                        self.client.put_object(Bucket=self.bucket, Key=self._partial_key(name, number),
                                               Body=buffer, ContentLength=filled)
                    offset = (number - 1) * size + filled
            if number != first and had:  # that tail is inside a whole part now
                self._remove([self._partial_key(name, first)])
            return offset
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def _read_tail(self, name: str, number: int, count: int, into: IO[bytes]) -> None:
        with answers("tail of a resumable upload", name[:8]):
            body = self.client.get_object(Bucket=self.bucket, Key=self._partial_key(name, number),
                                          Range=f"bytes=0-{count - 1}")["Body"]
            with contextlib.closing(body):
                while chunk := body.read(COPY_BLOCK):
                    into.write(chunk)
        if into.tell() != count:
            raise FileNotFoundError(f"the tail of partial upload {name[:8]}... is short")

    def _upload_part(self, name: str, upload: str, number: int, buffer: IO[bytes], size: int) -> None:
        buffer.flush()
        buffer.seek(0)
        with answers("part of a resumable upload", name[:8]):
            self.client.upload_part(Bucket=self.bucket, Key=self._partial_key(name), UploadId=upload,
                                    PartNumber=number, Body=buffer, ContentLength=size)

    def open_partial(self, name: str, handle: str, length: int, scratch: Path) -> IO[bytes]:
        key = self._partial_key(name)
        if length == 0:
            return io.BytesIO(b"")
        try:
            with answers("end of a resumable upload", name[:8]):
                if int(self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"]) == length:
                    return self._get(name, key)  # completed by an earlier call
        except FileNotFoundError:
            pass
        state = json.loads(handle)
        size, upload = int(state["part"]), state["upload"]
        count = -(-length // size)
        last = length - (count - 1) * size
        if last < size:  # the tail goes up as the last part
            fd, path = tempfile.mkstemp(dir=scratch, prefix="part-")
            try:
                with os.fdopen(fd, "w+b") as buffer:
                    self._read_tail(name, count, last, buffer)
                    self._upload_part(name, upload, count, buffer, last)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        parts = self._parts(name, upload)
        if sorted(parts) != list(range(1, count + 1)):
            raise FileNotFoundError(f"partial upload {name[:8]}... lacks parts")
        with answers("end of a resumable upload", name[:8]):
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload,
                MultipartUpload={"Parts": [parts[n] for n in range(1, count + 1)]})
        return self._get(name, key)

    def _get(self, name: str, key: str) -> IO[bytes]:
        with answers("read of a resumable upload", name[:8]):
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"]

    def _parts(self, name: str, upload: str) -> dict[int, dict[str, Any]]:
        found: dict[int, dict[str, Any]] = {}
        pages = self.client.get_paginator("list_parts").paginate(
            Bucket=self.bucket, Key=self._partial_key(name), UploadId=upload)
        with answers("parts of a resumable upload", name[:8]):
            for page in pages:
                for item in page.get("Parts", ()):
                    part = {"ETag": item["ETag"], "PartNumber": item["PartNumber"]}
                    part.update((k, v) for k, v in item.items() if k.startswith("Checksum")
                                and k != "ChecksumType")
                    found[int(item["PartNumber"])] = part
        return found

    def drop_partial(self, name: str, handle: str) -> None:
        upload = json.loads(handle).get("upload") if handle else None
        if upload:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=self._partial_key(name),
                                                   UploadId=upload)
            except Failure as exc:
                if "NoSuchUpload" not in why(exc) and "404" not in why(exc):
                    log.warning("object store: could not abort resumable upload %s...: %s",
                                name[:8], why(exc))
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._partial_key(name))
            keys = [item["Key"] for page in pages for item in page.get("Contents", ())]
        except Failure as exc:
            log.warning("object store: could not list resumable upload %s...: %s", name[:8], why(exc))
            return
        self._remove(keys)

    def _remove(self, keys: list[str]) -> None:
        if not keys:
            return
        try:
            self.client.delete_objects(Bucket=self.bucket, Delete={
                "Objects": [{"Key": key} for key in keys], "Quiet": True})
        except Failure as exc:
            log.warning("object store: could not remove %d object(s) of a resumable upload: %s",
                        len(keys), why(exc))

    def stale_partials(self, older_than: datetime) -> list[tuple[str, str]]:
        area = f"{self.prefix}{PARTIAL}"
        found: dict[str, str] = {}
        with answers("list of resumable uploads", PARTIAL):
            for page in self.client.get_paginator("list_multipart_uploads").paginate(
                    Bucket=self.bucket, Prefix=area):
                for item in page.get("Uploads", ()):
                    if item["Initiated"] < older_than:
                        found[item["Key"][len(area):]] = json.dumps({"upload": item["UploadId"]})
            for page in self.client.get_paginator("list_objects_v2").paginate(
                    Bucket=self.bucket, Prefix=area):
                for item in page.get("Contents", ()):
                    if item["LastModified"] < older_than:
                        found.setdefault(item["Key"][len(area):].partition(".")[0], "")
        return [(name, handle) for name, handle in found.items() if name]
