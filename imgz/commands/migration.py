"""One pass of ``migrate`` (see migrate.py): the target brought up to the source, table by
table, uploads with their files. Every step is safe to cut short and to run again."""
from __future__ import annotations

import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import click

from ..db import transfer
from . import say
from .filecopy import Copier

BATCH = 200
PROGRESS_SECONDS = 5.0


def mb(count: int) -> str:
    return f"{count / 1e6:.1f} MB"


@dataclasses.dataclass
class Upload:
    """One upload of a batch: its row, files and tag links in the source, and what to do."""

    row: dict[str, Any]
    files: list[dict[str, Any]]
    links: list[dict[str, Any]]
    state: str  # new, changed (row or children differ), check (--verify)


class Migration:
    def __init__(self, src: Any, dst: Any, copier: Copier, *, dry: bool, verify: bool, jobs: int) -> None:
        self.src, self.dst, self.copier = src, dst, copier
        self.dry, self.verify, self.jobs = dry, verify, jobs
        self.tallies: dict[str, transfer.Tally] = {}
        self.files_planned = 0
        self.bytes_planned = 0
        self.started = time.monotonic()
        self._shown = self.started

    def tally(self, name: str) -> transfer.Tally:
        return self.tallies.setdefault(name, transfer.Tally())

    def run(self, now: datetime) -> None:
        self.remove_uploads(now)
        for name in (*reversed(transfer.PARENTS), *transfer.LOOSE):
            for gone in transfer.extras(self.src, self.dst, name, BATCH):
                self.tally(name).removed += len(gone)
                if not self.dry:
                    with transfer.transaction(self.dst):
                        transfer.remove(self.dst, name, gone)
        # Uploads made from here on may point at parents not copied yet: they wait for the next pass.
        bound = transfer.max_id(self.src, "uploads")
        for name in transfer.PARENTS:
            self._add(name, transfer.sync(self.src, self.dst, name, BATCH, self.dry))
        with ThreadPoolExecutor(self.jobs) as pool:
            for batch in transfer.batches(self.src, "uploads", BATCH):
                if batch[0]["id"] > bound:
                    break
                self.copy_uploads([r for r in batch if r["id"] <= bound and not _expired(r, now)], pool)
                self.progress()
        for name in transfer.LOOSE:
            self._add(name, transfer.sync(self.src, self.dst, name, BATCH, self.dry))
        if not self.dry:
            transfer.reset_sequences(self.dst)
            transfer.recount(self.dst)

    def _add(self, name: str, done: transfer.Tally) -> None:
        mine = self.tally(name)
        mine.inserted += done.inserted
        mine.updated += done.updated

    def remove_uploads(self, now: datetime) -> None:
        """Uploads gone from the source (or expired): files first, then rows."""
        for gone in transfer.extras(self.src, self.dst, "uploads", BATCH, now):
            found, _ = transfer.children(self.dst, gone)
            self.tally("uploads").removed += len(gone)
            if self.dry:
                continue
            self.copier.target.delete([f["path"] for items in found.values() for f in items])
            with transfer.transaction(self.dst):
                transfer.remove(self.dst, "uploads", gone)

    def copy_uploads(self, batch: list[dict[str, Any]], pool: ThreadPoolExecutor) -> None:
        ids = [row["id"] for row in batch]
        src_files, src_links = transfer.children(self.src, ids)
        have = transfer.by_keys(self.dst, "uploads", ids)
        dst_files, dst_links = transfer.children(self.dst, ids)
        work: list[Upload] = []
        for row in batch:
            key = row["id"]
            files = src_files.get(key)
            if not files:
                continue  # deleted between the two reads: every upload has its files
            links = src_links.get(key, [])
            if key not in have:
                state = "new"
            elif have[key] != row or dst_files.get(key, []) != files or dst_links.get(key, []) != links:
                state = "changed"
            elif self.verify:
                state = "check"
            else:
                continue
            work.append(Upload(row, files, links, state))
        if self.dry:
            for item in work:
                if item.state == "new":
                    self.files_planned += len(item.files)
                    self.bytes_planned += sum(item.row[c] for c in ("size", "thumb_size", "medium_size",
                                                                     "frame_size"))
            self._count_rows(work)
            return
        missing = list(pool.map(self._files_of, work))
        work = self._settle(work, missing)
        changed = [item for item in work if item.state != "check"]
        if changed:
            with transfer.transaction(self.dst):
                transfer.insert(self.dst, "uploads", [i.row for i in changed if i.state == "new"])
                transfer.update(self.dst, "uploads", [i.row for i in changed if i.state == "changed"])
                transfer.replace_children(self.dst, [i.row["id"] for i in changed],
                                          [f for i in changed for f in i.files],
                                          [link for i in changed for link in i.links])
        # files the target kept of an upload whose files changed, and the source has no more
        stale = [f["path"] for i in changed if i.state == "changed"
                 for f in dst_files.get(i.row["id"], [])
                 if f["path"] not in {g["path"] for g in i.files}]
        self.copier.target.delete(stale)
        self._count_rows(work)

    def _count_rows(self, work: list[Upload]) -> None:
        tally = self.tally("uploads")
        tally.inserted += sum(1 for i in work if i.state == "new")
        tally.updated += sum(1 for i in work if i.state == "changed")

    def _files_of(self, item: Upload) -> str | None:
        """Copy (or keep) every file of an upload; the key the source lacks, or None."""
        checksum = item.state == "new" or self.verify  # a file without its row may be unchecked
        for found in item.files:
            try:
                self.copier.ensure(found["path"], checksum)
            except FileNotFoundError:
                return found["path"]
        return None

    def _settle(self, work: list[Upload], missing: list[str | None]) -> list[Upload]:
        """The uploads whose files are all in the target; one whose file went missing in the
        source because it was deleted meanwhile is dropped, with what was copied of it."""
        lacking = [(item, key) for item, key in zip(work, missing) if key is not None]
        still = transfer.by_keys(self.src, "uploads", [item.row["id"] for item, _ in lacking])
        for item, key in lacking:
            if item.row["id"] in still:
                raise click.ClickException(f"the source has no file {key} of upload "
                                           f"{item.row['public_id']}: see 'python app.py check'")
            if item.state == "new":
                self.copier.target.delete([f["path"] for f in item.files])
        return [item for item, key in zip(work, missing) if key is None]

    def progress(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._shown < PROGRESS_SECONDS:
            return
        self._shown = now
        ups, copier = self.tally("uploads"), self.copier
        say(f"imgz: {ups.inserted} uploads copied, {ups.updated} updated; {copier.copied} files "
            f"({mb(copier.bytes)}) copied, {copier.kept} already there; {now - self.started:.1f} s")


def _expired(row: dict[str, Any], now: datetime) -> bool:
    return row["expires_at"] is not None and row["expires_at"] <= now
