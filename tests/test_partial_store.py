"""The bytes of resumable uploads in a store (``*_partial``): what every store must do, run on the
local store and on the S3 store (a real SeaweedFS; parts, tails, resumes through another store
object as another process would, the multipart upload aborted at the end)."""
from __future__ import annotations

import hashlib
import io
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from imgz.store.local import LocalStore
from imgz.store.s3 import S3Store
from imgz.store.s3.partial import PART, part_size

NAME = hashlib.sha256(b"upload").hexdigest()
MIB = 1024 * 1024


def _data(size: int) -> bytes:
    block = os.urandom(MIB)
    return (block * (size // MIB + 1))[:size]


class PartialContract:
    @pytest.fixture
    def store(self):
        raise NotImplementedError

    @pytest.fixture
    def other(self, store):
        """The same store as another process opens it."""
        raise NotImplementedError

    @pytest.fixture
    def scratch(self, tmp_path: Path) -> Path:
        folder = tmp_path / "scratch"
        folder.mkdir()
        return folder

    def append(self, store, handle: str, offset: int, data: bytes, scratch: Path,
               seen: list[int] | None = None) -> int:
        return store.append_partial(NAME, handle, offset, io.BytesIO(data), scratch,
                                    (seen if seen is not None else []).append)

    def whole(self, store, handle: str, length: int, scratch: Path) -> bytes:
        with store.open_partial(NAME, handle, length, scratch) as stream:
            return stream.read()

    def test_pieces_in_any_sizes_read_back_whole(self, store, other, scratch):
        data = _data(2 * PART + 3 * MIB + 17)
        handle = store.begin_partial(NAME, len(data))
        offset = 0
        for size in (100, 5 * MIB, PART, 1, PART + MIB):
            offset = self.append(store if size % 2 else other, handle, offset,
                                 data[offset:offset + size], scratch)
        offset = self.append(store, handle, offset, data[offset:], scratch)
        assert offset == len(data)
        assert self.whole(other, handle, len(data), scratch) == data
        store.drop_partial(NAME, handle)
        assert store.stale_partials(datetime.now(timezone.utc) + timedelta(days=1)) == []

    def test_a_length_of_whole_parts_and_one_of_nothing(self, store, scratch):
        data = _data(part_size(1) * 2)
        handle = store.begin_partial(NAME, len(data))
        assert self.append(store, handle, 0, data, scratch) == len(data)
        assert self.whole(store, handle, len(data), scratch) == data
        store.drop_partial(NAME, handle)
        empty = hashlib.sha256(b"empty").hexdigest()
        handle = store.begin_partial(empty, 0)
        with store.open_partial(empty, handle, 0, scratch) as stream:
            assert stream.read() == b""
        store.drop_partial(empty, handle)

    def test_durable_steps_are_told_and_what_did_not_count_is_written_over(self, store, scratch):
        data = _data(3 * PART)
        handle = store.begin_partial(NAME, len(data))
        seen: list[int] = []
        # a call that stored 1.5 parts but whose end never counted: the next starts from 1 part
        self.append(store, handle, 0, data[:PART + PART // 2], scratch, seen)
        assert seen[:1] == [PART] or seen == []
        other_bytes = bytes(len(data))  # a retry with other bytes at the same place wins
        self.append(store, handle, PART, other_bytes[PART:2 * PART], scratch)
        self.append(store, handle, 2 * PART, data[2 * PART:], scratch)
        expected = data[:PART] + other_bytes[PART:2 * PART] + data[2 * PART:]
        assert self.whole(store, handle, len(data), scratch) == expected
        store.drop_partial(NAME, handle)

    def test_opening_twice_gives_the_bytes_twice(self, store, scratch):
        data = _data(PART + 5)
        handle = store.begin_partial(NAME, len(data))
        self.append(store, handle, 0, data, scratch)
        assert self.whole(store, handle, len(data), scratch) == data
        assert self.whole(store, handle, len(data), scratch) == data
        store.drop_partial(NAME, handle)
        store.drop_partial(NAME, handle)

    def test_stale_partials_name_what_is_older(self, store):
        handle = store.begin_partial(NAME, 10)
        now = datetime.now(timezone.utc)
        assert store.stale_partials(now - timedelta(hours=1)) == []
        assert [name for name, _ in store.stale_partials(now + timedelta(hours=1))] == [NAME]
        store.drop_partial(NAME, handle)

    def test_partials_are_not_stored_files(self, store, scratch):
        handle = store.begin_partial(NAME, PART + 10)
        self.append(store, handle, 0, _data(PART + 5), scratch)
        assert list(store.list()) == []
        store.drop_partial(NAME, handle)

    @pytest.mark.parametrize("name", ["", "../x", "ABC", "a/b"])
    def test_unsafe_names_are_refused(self, store, name):
        with pytest.raises(ValueError):
            store.begin_partial(name, 10)


class TestLocalPartials(PartialContract):
    @pytest.fixture
    def store(self, tmp_path):
        store = LocalStore(tmp_path / "images", tmp_path / "partial")
        store.prepare()
        return store

    @pytest.fixture
    def other(self, store):
        return LocalStore(store.root, store.partial_root)


class TestS3Partials(PartialContract):
    @pytest.fixture
    def store(self, s3):
        store = S3Store(s3.client, s3.name, s3.prefix)
        store.prepare()
        yield store
        # every test drops what it made: no part, tail or finished object is left behind
        assert [key for key in s3.unfinished() + s3.keys() if ".partial/" in key] == []

    @pytest.fixture
    def other(self, store, s3):
        return S3Store(s3.client, s3.name, s3.prefix)

    def test_a_long_upload_has_few_enough_parts(self):
        assert part_size(10**9) == PART
        assert part_size(200 * 10**9) >= 200 * 10**9 // 10_000
        assert part_size(200 * 10**9) % MIB == 0

    def test_check_repair_leaves_resumable_uploads_alone(self, store, scratch):
        handle = store.begin_partial(NAME, PART + 10)
        self.append(store, handle, 0, _data(PART + 5), scratch)
        assert store.abort_stale_puts(datetime.now(timezone.utc) + timedelta(days=1)) == 0
        assert self.append(store, handle, PART + 5, b"12345", scratch) == PART + 10
        store.drop_partial(NAME, handle)
