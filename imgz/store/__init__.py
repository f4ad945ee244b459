"""The seam for stored media: what any store of finished files offers, and the one in use.

A store keeps files under keys (imgz.layout: ``YYYY/MM/DD/name.variant.ext``). It is given
finished files from the process's scratch area, and gives them back as streams, by range. Nothing
outside a store knows where its files are: the local store (store/local.py) may say, for the file
responder's zero-copy path and X-Sendfile, through ``Stat.path``; another store says None.

Every method refuses a key that would leave the store (``layout.is_safe``) with ValueError. A
store that cannot be reached raises ``errors.StoreUnavailable`` (503) from any method but delete.

A store also keeps the bytes of resumable uploads in progress (``*_partial``), apart from its
stored files (never listed with them), where every process using the store can continue them:
the local store in ``<data>/partial/<name>``, a bucket as a multipart upload (store/s3/partial.py).
Their state besides the bytes (the length, the offset that counts) is the caller's, in the
database; the store is told the offset each call starts from, and says how far it got.
"""
from __future__ import annotations

import abc
import contextlib
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Callable, Iterable, Iterator, NamedTuple, Sequence

from .. import layout

if TYPE_CHECKING:
    from ..config import Config


READY_PROBE = "imgz-ready-probe"  # a key no upload has (keys are dated folders)


class Stat(NamedTuple):
    """What a store knows of one stored file."""

    size: int
    mtime_ns: int
    version: str        # changes whenever the bytes may have: the file responder's ETag
    path: str | None    # the file on this machine's disk, when the store keeps it there


class Store(abc.ABC):
    """Stored media under keys. Puts are atomic (a key is either absent or whole) and durable
    once they return; a key is never overwritten."""

    # Whether the files live elsewhere (no Stat.path): the file responder then streams them, or
    # hands a front server the location ``accel_target`` gives.
    remote = False
    # Seconds a stored file no row knows must have been there before ``check --repair`` counts it
    # an orphan: on a store whose puts take a while, a younger one may be an upload in flight.
    orphan_grace = 0

    @abc.abstractmethod
    def prepare(self) -> None:
        """Make what the store needs before it takes files; raises OSError when it cannot."""

    @abc.abstractmethod
    def put(self, key: str, src: Path, expires_at: datetime | None = None) -> None:
        """Store the finished local file ``src`` under ``key``; ``src`` is consumed (gone
        afterwards). FileExistsError when the key is taken, NoStorage when there is no room;
        after any failure the key is as it was. ``expires_at`` (the upload's expiry) lets a store
        whose files are fetched directly tell caches how long they may keep them."""

    def put_all(self, items: Sequence[tuple[str, Path]], expires_at: datetime | None = None) -> None:
        """Put several files, all or none: after a failure the keys put so far are gone again."""
        done: list[str] = []
        try:
            for key, src in items:
                self.put(key, src, expires_at)
                done.append(key)
        except BaseException:
            self.delete(done)
            raise

    @abc.abstractmethod
    def open(self, key: str, start: int = 0, stop: int | None = None) -> IO[bytes]:
        """A binary stream of the stored bytes from ``start`` on; the caller closes it.

        ``stop`` says the reader needs nothing past it: a remote store may end the stream there,
        the local one gives its file as is (to the end), so readers read ``stop - start`` bytes.
        FileNotFoundError for a key that is not stored.
        """

    @abc.abstractmethod
    def stat(self, key: str) -> Stat | None:
        """Size, modification time and version of a stored file, or None when there is none."""

    @abc.abstractmethod
    def delete(self, keys: Iterable[str]) -> None:
        """Remove files; keys not stored are no error. One that cannot be removed is logged
        (``check --repair`` finds it later) and the others still go."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Every stored key that starts with ``prefix``, in no particular order."""

    def entries(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        """Every stored key under ``prefix`` with its modification time (Unix ns), as ``list``."""
        for key in self.list(prefix):
            st = self.stat(key)
            if st is not None:
                yield key, st.mtime_ns

    def copies(self) -> list[str]:
        """The keys this host keeps local copies of (a remote store's cache); none by default."""
        return []

    def drop_copies(self, keys: Iterable[str]) -> None:
        """Remove this host's copies of ``keys``, if any (their uploads are gone)."""

    def abort_stale_puts(self, older_than: datetime) -> int:
        """End puts begun before ``older_than`` that never finished (a process killed during a
        multipart upload leaves its parts); how many. A store whose puts leave nothing: 0."""
        return 0

    # -- resumable uploads in progress ------------------------------------------------------------

    def begin_partial(self, name: str, length: int) -> str:
        """Make room for the bytes of a resumable upload of ``length`` bytes called ``name`` (the
        SHA-256 hex of its id); returns the store's handle on them, kept by the caller."""
        raise NotImplementedError(f"{type(self).__name__} keeps no resumable uploads")

    def append_partial(self, name: str, handle: str, offset: int, body: IO[bytes], scratch: Path,
                       durable: Callable[[int], None]) -> int:
        """Add what ``body`` holds (read to its end) after the first ``offset`` bytes, which are
        stored already; anything stored past them by an earlier call that did not count is
        dropped. Returns the new offset: every byte up to it is durable. ``durable(offset)`` is
        called whenever bytes up to ``offset`` are durable before the end (the caller records
        them; it may raise to stop). ``scratch``: a folder of this process for a part's buffer."""
        raise NotImplementedError(f"{type(self).__name__} keeps no resumable uploads")

    def open_partial(self, name: str, handle: str, length: int, scratch: Path) -> IO[bytes]:
        """The whole ``length`` bytes of a complete resumable upload, as a stream to read once
        (the caller closes it). Asked again after a failure, it gives them again."""
        raise NotImplementedError(f"{type(self).__name__} keeps no resumable uploads")

    def drop_partial(self, name: str, handle: str) -> None:
        """Remove the bytes of a resumable upload (finished, ended or abandoned); what is already
        gone is no error, and a failure is logged (the sweep tries again), never raised."""

    def stale_partials(self, older_than: datetime) -> list[tuple[str, str]]:
        """(name, handle) of partial bytes untouched, or begun, before ``older_than``: the sweep
        drops those no row knows (their row went with a deleted user, or a crash lost it)."""
        return []

    def accel_target(self, key: str) -> str | None:
        """For a remote store: the path and query a front server fetches the file from (signed,
        short-lived); None for a store on this machine."""
        return None

    def ready(self) -> None:
        """Raise when the store cannot be reached now (OSError, or StoreUnavailable); by default
        by asking for a key that is never stored."""
        self.stat(READY_PROBE)

    @abc.abstractmethod
    def free_bytes(self) -> int | None:
        """Room left for new files, in bytes, or None when the store cannot tell."""

    @abc.abstractmethod
    def local_file(self, key: str, scratch: Path) -> contextlib.AbstractContextManager[Path]:
        """A context holding the stored file as a file on this machine, to be read (re-rendered):
        the local store's own file, or a copy made in the folder ``scratch`` and removed at the
        end. FileNotFoundError for a key that is not stored."""


def check_key(key: str) -> str:
    """The key itself, or ValueError when it would leave the store."""
    if not layout.is_safe(key):
        raise ValueError(f"unsafe key {key!r}")
    return key


def check_prefix(prefix: str) -> str:
    """A listing prefix: '' or a key's start whose folders are safe ('2025/', '2025/0')."""
    folder = prefix.rpartition("/")[0]
    if (prefix.startswith("/") or "\\" in prefix or "\x00" in prefix
            or (folder and not layout.is_safe(folder))):
        raise ValueError(f"unsafe prefix {prefix!r}")
    return prefix


def for_data(data: Path) -> Store:
    """The store of a data directory: its files on the local disk, under ``<data>/images``."""
    from .local import LocalStore

    return LocalStore(data / layout.DIR, data / "partial")


def for_config(cfg: Config) -> Store:
    """The store of a configuration: the local disk under ``<data>/images``, or with
    ``IMGZ_STORAGE=s3`` the bucket (one store and one S3 client per process). The S3 library is
    imported only then; without it the start stops with one line saying what to install."""
    if cfg.storage != "s3":
        return for_data(cfg.data_dir)
    try:
        from .s3.made import for_settings
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] not in {"boto3", "botocore"}:
            raise
        from ..errors import ConfigError

        raise ConfigError("IMGZ_STORAGE=s3 needs boto3, which is not installed: "
                          "pip install -r requirements-scale.txt") from None
    return for_settings(cfg)
