"""What every store must do, written against imgz.store.Store only.

A store's own test module subclasses StoreContract and gives the ``store`` fixture (an empty,
prepared store); the class's tests then run against it:

    class TestMyStore(StoreContract):
        @pytest.fixture
        def store(self, tmp_path):
            ...
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from imgz.errors import NoStorage
from imgz.store import Stat, Store

KEY = "2025/01/01/cat-Ab12Cd34.png"
DATA = bytes(range(256)) * 40  # 10240 bytes, every offset distinguishable modulo 256
UNSAFE_KEYS = ["", "/etc/passwd", "../outside", "2025/../../outside", "2025/01/01/..",
               "2025//01/cat.png", "2025/./01/cat.png", ".", "..", "2025/01/01/", "a\\b.png",
               "a\x00b.png"]


class StoreContract:
    @pytest.fixture
    def store(self) -> Store:
        raise NotImplementedError("a store's test module gives its own store fixture")

    @pytest.fixture
    def scratch(self, tmp_path: Path) -> Path:
        """Where finished files are made before they are put, as the scratch area is."""
        folder = tmp_path / "scratch"
        folder.mkdir()
        return folder

    @pytest.fixture
    def made(self, scratch: Path):
        """A function making a finished local file with the given bytes."""
        count = iter(range(1_000_000))

        def make(data: bytes = DATA) -> Path:
            path = scratch / f"work-{next(count)}"
            path.write_bytes(data)
            return path

        return make

    def read(self, store: Store, key: str, start: int = 0, stop: int | None = None) -> bytes:
        with store.open(key, start, stop) as stream:
            if stop is None:
                return stream.read()
            return stream.read(stop - start)

    # --- put and read back ---

    def test_a_put_file_reads_back_whole(self, store, made):
        store.put(KEY, made())
        assert self.read(store, KEY) == DATA

    def test_put_consumes_the_local_file(self, store, made):
        src = made()
        store.put(KEY, src)
        assert not src.exists()

    @pytest.mark.parametrize("data", [b"", b"x", os.urandom(3 * 1024 * 1024 + 7)],
                             ids=["empty", "one-byte", "three-megabytes"])
    def test_sizes_round_trip(self, store, made, data):
        store.put(KEY, made(data))
        assert self.read(store, KEY) == data
        assert store.stat(KEY).size == len(data)

    def test_put_never_overwrites(self, store, made):
        store.put(KEY, made())
        with pytest.raises(FileExistsError):
            store.put(KEY, made(b"other bytes"))
        assert self.read(store, KEY) == DATA

    def test_put_all_puts_every_file(self, store, made):
        keys = [KEY, "2025/01/01/cat-Ab12Cd34.th.png", "2025/01/02/dog.png"]
        store.put_all([(key, made(key.encode())) for key in keys])
        assert {key: self.read(store, key) for key in keys} == {key: key.encode() for key in keys}

    # --- ranges ---

    @pytest.mark.parametrize("start, stop", [(0, 10), (100, 200), (10239, 10240), (5000, None),
                                             (0, None), (10240, None)])
    def test_open_gives_a_range(self, store, made, start, stop):
        store.put(KEY, made())
        assert self.read(store, KEY, start, stop) == DATA[start:stop]

    def test_a_stream_without_stop_goes_to_the_end(self, store, made):
        store.put(KEY, made())
        with store.open(KEY, 9000) as stream:
            assert stream.read() == DATA[9000:]

    def test_open_of_a_missing_key(self, store):
        with pytest.raises(FileNotFoundError):
            store.open(KEY)

    # --- stat ---

    def test_stat(self, store, made):
        store.put(KEY, made())
        st = store.stat(KEY)
        assert isinstance(st, Stat)
        assert st.size == len(DATA)
        assert isinstance(st.mtime_ns, int) and st.mtime_ns > 0
        assert isinstance(st.version, str) and st.version

    def test_stat_is_stable_and_tells_files_apart(self, store, made):
        store.put(KEY, made())
        store.put("2025/01/01/other.png", made(DATA + b"more"))
        assert store.stat(KEY) == store.stat(KEY)
        assert store.stat(KEY).version != store.stat("2025/01/01/other.png").version

    def test_stat_of_a_missing_key_is_none(self, store, made):
        assert store.stat(KEY) is None
        store.put(KEY, made())
        assert store.stat("2025/01/01") is None, "a folder is no stored file"

    # --- delete ---

    def test_delete(self, store, made):
        store.put(KEY, made())
        store.put("2025/01/01/kept.png", made())
        store.delete([KEY, "2025/01/01/never-stored.png"])
        assert store.stat(KEY) is None
        assert self.read(store, "2025/01/01/kept.png") == DATA
        with pytest.raises(FileNotFoundError):
            store.open(KEY)

    def test_a_deleted_key_can_be_put_again(self, store, made):
        store.put(KEY, made())
        store.delete([KEY])
        store.put(KEY, made(b"again"))
        assert self.read(store, KEY) == b"again"

    def test_delete_of_nothing(self, store):
        store.delete([])
        store.delete([KEY])

    # --- list ---

    KEYS = ["2024/12/31/a.png", "2025/01/01/b.png", "2025/01/01/b.th.png", "2025/01/02/c.mp4",
            "2025/02/01/d.gif"]

    @pytest.mark.parametrize("prefix, expected", [
        ("", KEYS),
        ("2025/", KEYS[1:]),
        ("2025/01/", KEYS[1:4]),
        ("2025/01/01/", KEYS[1:3]),
        ("2025/01/01/b.t", KEYS[2:3]),
        ("2025/0", KEYS[1:]),
        ("2025/01/0", KEYS[1:4]),
        ("2026/", []),
        ("2025/03/", []),
        ("2", KEYS),
    ])
    def test_list_under_a_prefix(self, store, made, prefix, expected):
        for key in self.KEYS:
            store.put(key, made())
        assert sorted(store.list(prefix)) == sorted(expected)

    def test_list_of_an_empty_store(self, store):
        assert list(store.list()) == []

    def test_list_follows_deletes(self, store, made):
        for key in self.KEYS:
            store.put(key, made())
        store.delete(self.KEYS[:2])
        assert sorted(store.list()) == self.KEYS[2:]

    # --- free space ---

    def test_free_bytes_is_a_count_or_unknown(self, store):
        free = store.free_bytes()
        assert free is None or (isinstance(free, int) and free >= 0)

    # --- a local file for re-rendering ---

    def test_local_file(self, store, made, scratch):
        store.put(KEY, made())
        with store.local_file(KEY, scratch) as path:
            assert Path(path).read_bytes() == DATA
        assert self.read(store, KEY) == DATA, "the stored file stays"

    def test_local_file_of_a_missing_key(self, store, scratch):
        with pytest.raises(FileNotFoundError):
            with store.local_file(KEY, scratch):
                pass

    # --- atomicity: a failed put leaves nothing visible ---

    def test_a_put_of_a_missing_file_leaves_nothing(self, store, scratch):
        with pytest.raises(OSError):
            store.put(KEY, scratch / "never-made")
        assert store.stat(KEY) is None
        assert list(store.list()) == []

    def test_a_failed_put_all_takes_back_what_it_put(self, store, made, scratch):
        items = [(KEY, made()), ("2025/01/01/cat-Ab12Cd34.th.png", made()),
                 ("2025/01/01/cat-Ab12Cd34.md.png", scratch / "never-made")]
        with pytest.raises(OSError):
            store.put_all(items)
        assert [store.stat(key) for key, _ in items] == [None, None, None]
        assert list(store.list()) == []

    def test_a_put_all_that_meets_a_taken_key_takes_back_what_it_put(self, store, made):
        store.put("2025/01/01/taken.png", made(b"first"))
        with pytest.raises(FileExistsError):
            store.put_all([(KEY, made()), ("2025/01/01/taken.png", made())])
        assert store.stat(KEY) is None
        assert self.read(store, "2025/01/01/taken.png") == b"first"

    def test_a_full_store_says_so(self, store, made, monkeypatch):
        """A store out of room raises NoStorage (507), and the key stays absent."""
        fill = getattr(self, "fill", None)
        if fill is None:
            pytest.skip("this store's test module cannot make it full")
        fill(store, monkeypatch)
        with pytest.raises(NoStorage):
            store.put(KEY, made())
        assert store.stat(KEY) is None

    # --- keys that would leave the store ---

    @pytest.mark.parametrize("key", UNSAFE_KEYS)
    def test_unsafe_keys_are_refused(self, store, made, scratch, key):
        src = made()
        with pytest.raises(ValueError):
            store.put(key, src)
        assert src.exists(), "a refused put leaves the file where it was"
        with pytest.raises(ValueError):
            store.put_all([(KEY, made()), (key, made())])
        assert store.stat(KEY) is None
        with pytest.raises(ValueError):
            store.open(key)
        with pytest.raises(ValueError):
            store.stat(key)
        with pytest.raises(ValueError):
            store.delete([key])
        with pytest.raises(ValueError):
            with store.local_file(key, scratch):
                pass

    @pytest.mark.parametrize("prefix", ["/", "/etc", "../", "2025/../../", "a\\b", "..//"])
    def test_unsafe_prefixes_are_refused(self, store, prefix):
        with pytest.raises(ValueError):
            list(store.list(prefix))

    def test_an_unsafe_key_in_a_delete_removes_nothing(self, store, made):
        store.put(KEY, made())
        with pytest.raises(ValueError):
            store.delete([KEY, "../outside"])
        assert store.stat(KEY) is not None
