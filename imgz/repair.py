"""``check [--repair]``: compare the rows with the stored files, and mend what can be mended.

Runs beside the upload path on the same Service (its store, connection and media workers).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Container

from . import db, filetype, render, scratch
from .errors import ImgzError, InvalidImage
from .records import Upload
from .service import Service
from .store import Store

log = logging.getLogger("imgz")
# Unfinished multipart puts begun longer ago than this are a killed process's: repair aborts them.
# An hour, as for orphans: a put from this server's scratch to its bucket takes minutes at most
# (1 GB at 10 MB/s: 100 s), and one aborted all the same fails cleanly (its upload gets a 503).
STALE_PUT = 3600


@dataclass(frozen=True)
class Checked:
    """What ``check`` found: keys in the store, and uploads."""

    orphans: list[str]                           # files no row knows
    broken: list[Upload]                         # uploads whose original is gone
    lacking: list[tuple[Upload, list[str]]]      # uploads missing variants ('th', 'md', 'fr')
    unrepaired: list[Upload]                     # of those, the ones repair could not mend


def check(service: Service, repair: bool = False, orphan_age: int | None = None) -> Checked:
    """Stored files that no row knows, uploads whose original file is gone, and uploads that
    lack a thumb, medium or frame.

    With ``repair`` the orphan files are removed, uploads without an original go (row and
    files), missing variants are made again from the original, and puts a killed process left
    unfinished (a bucket's multipart uploads) are aborted. A file is an orphan once it is
    ``orphan_age`` seconds old (default: the store's ``orphan_grace``); an unfinished put
    is stale at the same age (default an hour).
    """
    store = service.store
    conn = service.connection()
    known = db.all_file_paths(conn)
    age = store.orphan_grace if orphan_age is None else orphan_age
    orphans = _orphans(store, known, service.now(), age)
    broken: list[Upload] = []
    lacking: list[tuple[Upload, list[str]]] = []
    for upload in db.iter_uploads(conn):
        if store.stat(upload.relpath()) is None:
            broken.append(upload)
            continue
        variants = [v for v in upload.variants() if store.stat(upload.relpath(v)) is None]
        if variants:
            lacking.append((upload, variants))
    unrepaired: list[Upload] = []
    if repair:
        store.delete(orphans)
        stale = STALE_PUT if orphan_age is None else orphan_age
        if store.abort_stale_puts(service.now() - timedelta(seconds=stale)):
            log.info("aborted unfinished puts begun over %d s ago", stale)
        for upload in broken:
            service.delete(upload)
        for upload, variants in lacking:
            try:
                _remake(service, upload, variants)
            except (ImgzError, OSError) as exc:
                log.warning("could not make %s of %s again: %s", ", ".join(variants),
                            upload.public_id, exc)
                unrepaired.append(upload)
    return Checked(orphans, broken, lacking, unrepaired)


def _orphans(store: Store, known: Container[str], now: datetime, age: int) -> list[str]:
    """Stored files no row knows, read from the store's listing page by page. On a store whose
    puts take a while, a file younger than ``age`` seconds may be an upload in flight, whose
    row comes once its last file is stored: it is no orphan yet."""
    if not age:
        return sorted(key for key in store.list() if key not in known)
    cutoff = (now.timestamp() - age) * 1_000_000_000
    return sorted(key for key, mtime_ns in store.entries() if key not in known and mtime_ns <= cutoff)


def _remake(service: Service, upload: Upload, variants: list[str]) -> None:
    """Make missing variants of an upload again from its stored original, and place them."""
    work = scratch.new_work_dir(service.data)
    try:
        with service.store.local_file(upload.relpath(), work) as src:
            fmt = filetype.sniff(src)
            files = service.run_media(render.variants, (src, fmt, upload.kind, upload.extension,
                                                        service.limits(), work),
                                      service.budget(None, upload.kind), upload.kind)
        conn = service.connection()
        for variant in variants:
            item = files.get(variant)
            if item is None:
                raise InvalidImage(f"the original no longer gives a {variant} variant")
            service.store.put(upload.relpath(variant), item.path, upload.expires_at)
            with db.transaction(conn):
                db.set_variant(conn, upload.id, variant, item.size, item.width, item.height)
    finally:
        scratch.remove_work_dir(work)
