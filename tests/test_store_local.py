"""The local store: the store contract, then what only a store on this machine's disk promises
(the datefolder layout on disk, modes, fsyncs, real files for zero-copy serving)."""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from imgz import layout
from imgz.store import for_data
from imgz.store.local import LocalStore
from store_contract import DATA, KEY, StoreContract


def _full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


class TestLocalStore(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> LocalStore:
        store = LocalStore(tmp_path / "images")
        store.prepare()
        return store

    def fill(self, store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(os, "link", _full_disk)


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    store = LocalStore(tmp_path / "images")
    store.prepare()
    return store


def _made(tmp_path: Path, data: bytes = DATA, name: str = "work") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_the_store_of_a_data_directory_is_its_images_folder(tmp_path):
    store = for_data(tmp_path)
    assert isinstance(store, LocalStore)
    assert store.root == str(tmp_path / layout.DIR)


def test_files_lie_in_their_date_folders(store, tmp_path):
    store.put(KEY, _made(tmp_path))
    assert (Path(store.root) / "2025" / "01" / "01" / "cat-Ab12Cd34.png").read_bytes() == DATA


def test_a_relative_root_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert LocalStore("images").root == str(tmp_path / "images")


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_stored_files_get_0666_less_the_umask(store, tmp_path, umask, mode):
    src = _made(tmp_path)
    src.chmod(0o600)  # as mkstemp makes a spool file
    old = os.umask(umask)
    try:
        store.put(KEY, src)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(store.stat(KEY).path).st_mode) == mode


def test_stat_gives_the_path_and_open_a_real_file(store, tmp_path):
    store.put(KEY, _made(tmp_path))
    st = store.stat(KEY)
    assert st.path == os.path.join(store.root, KEY) and os.path.isabs(st.path)
    with store.open(KEY, 10) as file:
        assert os.fstat(file.fileno()).st_size == len(DATA)
        assert file.tell() == 10


def test_open_with_stat_gives_the_open_file_and_the_same_stat(store, tmp_path):
    store.put(KEY, _made(tmp_path))
    file, st = store.open_with_stat(KEY)
    with file:
        assert st == store.stat(KEY)
        assert file.read() == DATA
    assert store.open_with_stat("2026/01/01/absent.png") is None


def test_open_with_stat_finds_no_file_where_a_folder_or_a_fifo_is(store):
    folder_key = "2026/01/02/folder.png"
    os.makedirs(os.path.join(store.root, folder_key))
    assert store.open_with_stat(folder_key) is None
    fifo_key = "2026/01/02/fifo.png"
    os.mkfifo(os.path.join(store.root, fifo_key))
    assert store.open_with_stat(fifo_key) is None   # answered at once, not waiting for a writer


def test_the_version_is_inode_size_and_mtime(store, tmp_path):
    store.put(KEY, _made(tmp_path))
    raw = os.stat(store.stat(KEY).path)
    st = store.stat(KEY)
    assert st.version == f"{raw.st_ino:x}-{raw.st_size:x}-{raw.st_mtime_ns:x}"
    assert st.mtime_ns == raw.st_mtime_ns


def test_a_file_made_beside_the_store_is_not_overwritten(store, tmp_path):
    target = Path(store.root) / KEY
    target.parent.mkdir(parents=True)
    target.write_bytes(b"there first")
    with pytest.raises(FileExistsError):
        store.put(KEY, _made(tmp_path))
    assert target.read_bytes() == b"there first"


def _record_fsyncs(monkeypatch) -> list[str]:
    synced: list[str] = []
    real = os.fsync

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return synced


def test_put_all_fsyncs_each_file_and_its_folder_once(store, tmp_path, monkeypatch):
    (Path(store.root) / "2025/01/01").mkdir(parents=True)
    works = [_made(tmp_path, name=f"w{i}") for i in range(3)]
    keys = [KEY, "2025/01/01/cat-Ab12Cd34.th.png", "2025/01/01/cat-Ab12Cd34.md.png"]
    synced = _record_fsyncs(monkeypatch)
    store.put_all(list(zip(keys, works)))
    # each file before its name is made (by its work name), then the folder holding the names
    assert synced == [*map(str, works), os.path.join(store.root, "2025/01/01")]


def test_a_new_date_folder_is_made_durable_up_to_the_root(store, tmp_path, monkeypatch):
    synced = _record_fsyncs(monkeypatch)
    store.put(KEY, _made(tmp_path))
    root = store.root
    assert synced[0] == str(tmp_path / "work")
    assert set(synced[1:]) == {f"{root}/2025/01/01", f"{root}/2025/01", f"{root}/2025", root}


def test_a_full_disk_is_no_storage_and_leaves_nothing(store, tmp_path, monkeypatch):
    from imgz.errors import NoStorage

    real_link = os.link
    calls = []

    def link(src, dest):
        calls.append(dest)
        if len(calls) == 2:
            _full_disk()
        real_link(src, dest)

    monkeypatch.setattr(os, "link", link)
    with pytest.raises(NoStorage):
        store.put_all([(KEY, _made(tmp_path, name="a")), ("2025/01/01/b.png", _made(tmp_path, name="b"))])
    assert list(store.list()) == []


def test_stray_files_are_listed_wherever_they_are(store, tmp_path):
    root = Path(store.root)
    (root / "2025/01/01").mkdir(parents=True)
    (root / "2025/01/01/odd name.txt").write_bytes(b"x")
    (root / "stray").write_bytes(b"x")
    assert sorted(store.list()) == ["2025/01/01/odd name.txt", "stray"]
    store.delete(["2025/01/01/odd name.txt", "stray"])
    assert list(store.list()) == []


def test_a_file_that_cannot_be_removed_is_logged_and_the_others_go(store, tmp_path, caplog):
    (Path(store.root) / "2025/01/01/stuck").mkdir(parents=True)  # unlink() of a folder fails
    store.put("2025/01/01/a.png", _made(tmp_path))
    store.delete(["2025/01/01/stuck", "2025/01/01/a.png"])
    assert store.stat("2025/01/01/a.png") is None
    assert "could not remove 2025/01/01/stuck" in caplog.text


def test_the_local_file_is_the_stored_file_itself(store, tmp_path):
    store.put(KEY, _made(tmp_path))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with store.local_file(KEY, scratch) as path:
        assert str(path) == store.stat(KEY).path
    assert list(scratch.iterdir()) == []


def test_free_bytes_of_the_disk(store):
    st = os.statvfs(store.root)
    assert abs(store.free_bytes() - st.f_bavail * st.f_frsize) < 64 * 1024 * 1024
    assert LocalStore("/nonexistent/imgz-store").free_bytes() is None
