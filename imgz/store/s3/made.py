"""The process's one S3 store (and client) for a configuration."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from ..cache import DiskCache
from . import S3Store
from .sdk import client_for

if TYPE_CHECKING:
    from ...config import Config

CACHE_DIR = "cache"
_made: dict[tuple, S3Store] = {}
_made_lock = threading.Lock()


def for_settings(cfg: Config) -> S3Store:
    """The process's store (and client) for the S3 settings of ``cfg``, with this host's copies
    of files read under ``<data>/cache`` when ``IMGZ_S3_CACHE_MB`` allows."""
    ident = (cfg.s3_endpoint, cfg.s3_region, cfg.s3_path_style, cfg.s3_checksum, cfg.s3_bucket,
             cfg.s3_prefix, bool(cfg.public_url), cfg.data, cfg.s3_cache_mb)
    with _made_lock:
        store = _made.get(ident)
        if store is None:
            copies = None
            if cfg.s3_cache_mb:
                copies = DiskCache(Path(cfg.data) / CACHE_DIR, cfg.s3_cache_mb * 1_000_000,
                                   min_free=cfg.min_free_mb * 1_000_000)
            store = _made[ident] = S3Store(client_for(cfg), cfg.s3_bucket, cfg.s3_prefix,
                                           cache_control=bool(cfg.public_url), copies=copies)
        return store
