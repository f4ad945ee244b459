"""This host's copies of a remote store's files (imgz/store/cache.py), in a temp folder: whole
copies or none, the budget kept by dropping the least recently used, stale partial copies
cleared, the index read back from the folder."""
from __future__ import annotations

import io
import os
import time

import pytest

from imgz.store.cache import TMP, DiskCache, Tee

KEY = "2026/01/02/cat.png"


def fill(cache: DiskCache, key: str, data: bytes) -> bool:
    filling = cache.filling(key, len(data))
    if filling is None:
        return False
    tee = Tee(io.BytesIO(data), filling)
    while tee.read(7):
        pass
    tee.close()
    return True


def test_a_whole_read_leaves_a_copy_and_a_partial_one_leaves_nothing(tmp_path):
    cache = DiskCache(tmp_path / "cache", 10_000)
    assert cache.path(KEY) is None
    assert fill(cache, KEY, b"x" * 100)
    assert open(cache.path(KEY), "rb").read() == b"x" * 100
    partial = cache.filling("2026/01/02/dog.png", 100)
    tee = Tee(io.BytesIO(b"y" * 100), partial)
    tee.read(60)
    tee.close()  # the client went away after 60 bytes
    tee.close()  # closing twice is no error
    assert cache.path("2026/01/02/dog.png") is None
    assert os.listdir(tmp_path / "cache" / TMP) == []
    assert cache.keys() == [KEY]


def test_a_stream_longer_than_its_size_or_failing_at_its_end_is_not_kept(tmp_path):
    cache = DiskCache(tmp_path / "cache", 10_000)

    class Failing(io.BytesIO):
        def read(self, size=-1):
            chunk = super().read(size)
            if not chunk:
                raise OSError("checksum mismatch")
            return chunk

    for stream in (io.BytesIO(b"z" * 101), Failing(b"z" * 100)):
        tee = Tee(stream, cache.filling(KEY, 100))
        tee.read(100)
        tee.close()
        assert cache.path(KEY) is None


def test_the_budget_drops_the_least_recently_used(tmp_path):
    cache = DiskCache(tmp_path / "cache", 3_200)  # copies of at most 400 bytes
    keys = [f"2026/01/02/f{i}.png" for i in range(10)]
    for key in keys[:8]:
        assert fill(cache, key, b"a" * 400)
    assert cache.path(keys[0]) is not None  # used again: now the most recent
    assert fill(cache, keys[8], b"b" * 400)
    assert cache.path(keys[1]) is None, "the least recently used went"
    assert cache.path(keys[0]) is not None
    assert sum(os.path.getsize(cache.path(k)) for k in cache.keys()) <= 3_200
    assert cache.filling(keys[9], 401) is None, "larger than an eighth of the budget"


def test_a_copy_that_would_leave_too_little_free_disk_is_not_made(tmp_path):
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    cache = DiskCache(tmp_path / "cache", 10**15, min_free=free + 10**9)
    assert cache.filling(KEY, 100) is None


def test_removed_copies_and_the_index_read_back_from_the_folder(tmp_path):
    cache = DiskCache(tmp_path / "cache", 10_000)
    for i in range(3):
        fill(cache, f"2026/01/02/f{i}.png", b"c" * 10)
    cache.remove(["2026/01/02/f1.png", "2026/01/02/nothing.png"])
    stale = tmp_path / "cache" / TMP / "123-left"
    stale.write_bytes(b"partial")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    fresh = tmp_path / "cache" / TMP / "456-writing"
    fresh.write_bytes(b"partial")
    again = DiskCache(tmp_path / "cache", 10_000)
    assert sorted(again.keys()) == ["2026/01/02/f0.png", "2026/01/02/f2.png"]
    assert not stale.exists() and fresh.exists(), "only a partial copy of a dead writer goes"


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs.png", "a/../../b.png"])
def test_a_key_that_would_leave_the_folder_is_refused(tmp_path, key):
    cache = DiskCache(tmp_path / "cache", 10_000)
    with pytest.raises(ValueError):
        cache.path(key)
    cache.remove([key])  # silently nothing
