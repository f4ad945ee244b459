"""``migrate``: copy this install's rows and files to another database and store.

The source (the current settings) is only read. One pass, in this order, each step safe to cut
short at any moment and to run again:

1. uploads the target has and the source no longer has (deleted, or expired by now) are removed
   from the target: their files first, then their rows (a cut in between leaves a row that the
   next pass finds again);
2. the same for the other tables (users, keys, albums, categories, tags, names);
3. users, keys, albums, categories and tags are brought up to the source (inserted or updated
   by primary key, in batches);
4. uploads, in batches by id: each new or changed upload's files are copied (streamed, read back
   and compared by MD5) before its row, files and tag links are written in one transaction, so the
   target never has a row without its files; an upload already there is left alone unless its row
   differs;
5. stored names; on PostgreSQL the id sequences are set past the largest ids.

The bulk runs while the source serves; ``--final``, run once the source is stopped, does the
same pass (it is short: only what changed meanwhile) and then checks that the target holds as
many rows of each table as the source.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .. import config as config_mod, scratch, store as store_mod
from ..db import transfer
from ..errors import ImgzError
from ..kinds import hide_password
from ..store import Store
from . import say
from .filecopy import Copier, Mismatch
from .migration import Migration, mb

if TYPE_CHECKING:
    from ..cli import Context


def store_for(cfg: config_mod.Config) -> Store:
    """The store a configuration names, without this host's copies of a bucket's files: a move
    reads each file once, and must leave nothing in the source's data dir."""
    return store_mod.for_config(dataclasses.replace(cfg, s3_cache_mb=0))


def _place(cfg: config_mod.Config) -> tuple:
    """What tells two stores apart."""
    if cfg.storage == "s3":
        return ("s3", cfg.s3_endpoint, cfg.s3_bucket, cfg.s3_prefix)
    return ("local", os.path.realpath(cfg.data))


def _why(exc: BaseException) -> str:
    """What an error says, as init_data words it: the database's detail, else its cause."""
    return str(getattr(exc, "strerror", None) or getattr(exc, "detail", None) or exc.__cause__ or exc)


@click.command("migrate")
@click.option("--to-database", "to_database", required=True, metavar="URL_OR_PATH",
              help="The target database: postgresql://... or an SQLite file path.")
@click.option("--to-storage", "to_storage", required=True, type=click.Choice(["local", "s3"]),
              help="The target store: s3 (the IMGZ_S3_* settings) or local (with --to-data).")
@click.option("--to-data", "to_data", metavar="DIR", help="The target data directory (files under DIR/images).")
@click.option("--dry-run", "dry", is_flag=True, help="Say what would be copied or removed; change nothing.")
@click.option("--final", is_flag=True, help="The last pass, with the source stopped: check the result.")
@click.option("--verify", is_flag=True, help="Compare every file already copied by checksum too.")
@click.option("--jobs", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Files copied at once.")
@click.pass_obj
def migrate(obj: Context, to_database: str, to_storage: str, to_data: str | None, dry: bool,
            final: bool, verify: bool, jobs: int) -> None:
    """Copy every row and file of this install to another database and store.

    Run it while the server runs, then stop the server and run it again with --final; then
    start imgz with the target's settings. It can be stopped at any time and run again.
    """
    cfg = config_mod.load(flags=obj.flags)  # no init_data: the source is never written
    if to_storage == "local" and not to_data:
        raise click.ClickException("--to-storage local needs --to-data DIR")
    if to_storage == "s3" and to_data:
        raise click.ClickException("--to-data is for --to-storage local")
    target_cfg = dataclasses.replace(cfg, storage=to_storage,
                                     data=str(Path(to_data).resolve()) if to_data else cfg.data)
    if transfer.missing(cfg.database):
        raise click.ClickException(f"there is no database at {cfg.database}")
    if transfer.same_database(cfg.database, to_database):
        raise click.ClickException("the target database is the source's: give another one")
    if _place(cfg) == _place(target_cfg):
        raise click.ClickException("the target store is the source's: give another one")
    reason = transfer.unknown_dialect(to_database)
    if reason:
        raise click.ClickException(f"cannot open the target database: {reason}")
    source, target = store_for(cfg), store_for(target_cfg)
    try:
        src = transfer.open_source(cfg.database)
    except ImgzError as exc:
        raise click.ClickException(f"cannot read the source database: {_why(exc)}") from None
    if not dry and not transfer.is_url(to_database):
        Path(to_database).resolve().parent.mkdir(parents=True, exist_ok=True)
    try:
        dst = transfer.open_target(to_database, create=not dry)
    except ImgzError as exc:
        raise click.ClickException(f"cannot use the target database: {_why(exc)}") from None
    try:
        other = transfer.foreign_user(src, dst)
        if other is not None:
            raise click.ClickException(f"the target database holds another install (user {other!r}): "
                                       "give an empty one")
        if not dry:
            target.prepare()
        if dry:
            work = Path(tempfile.gettempdir())  # nothing is copied
        elif to_storage == "local":
            work = scratch.folder(target_cfg.data_dir)  # a put links the file: the same disk
        else:
            work = Path(tempfile.mkdtemp(prefix="imgz-migrate-"))
        try:
            _run(src, dst, Copier(source, target, work), dry=dry, final=final, verify=verify, jobs=jobs,
                 to_database=to_database, target_cfg=target_cfg)
        finally:
            if not dry and to_storage != "local":
                shutil.rmtree(work, ignore_errors=True)
    except Mismatch as exc:
        raise click.ClickException(f"checksum mismatch: the target gave back other bytes for "
                                   f"{exc.key}") from None
    except (ImgzError, OSError) as exc:
        raise click.ClickException(f"stopped: {_why(exc)}") from None
    finally:
        src.close()
        dst.close()


def _run(src: Any, dst: Any, copier: Copier, *, dry: bool, final: bool, verify: bool, jobs: int,
         to_database: str, target_cfg: config_mod.Config) -> None:
    now = datetime.now(timezone.utc)
    say(f"imgz: {'what migrate would do' if dry else 'migrating'} to {hide_password(to_database)} "
        f"and {target_cfg.storage} storage" + (f" in {target_cfg.data}" if target_cfg.storage == "local" else ""))
    job = Migration(src, dst, copier, dry=dry, verify=verify, jobs=jobs)
    job.run(now)
    seconds = time.monotonic() - job.started
    verb = ("would insert", "would update", "would remove") if dry else ("inserted", "updated", "removed")
    for name, tally in job.tallies.items():
        if tally:
            say(f"imgz: {name}: {tally.inserted} {verb[0]}, {tally.updated} {verb[1]}, "
                f"{tally.removed} {verb[2]}")
    if dry:
        say(f"imgz: would copy {job.files_planned} files ({mb(job.bytes_planned)}) of new uploads; "
            "nothing was changed")
        return
    rows = sum(t.inserted + t.updated + t.removed for t in job.tallies.values())
    say(f"imgz: done in {seconds:.1f} s: {rows} rows written ({rows / max(seconds, 1e-3):.0f}/s), "
        f"{copier.copied} files copied ({copier.copied / max(seconds, 1e-3):.0f}/s, {mb(copier.bytes)}, "
        f"{copier.bytes / 1e6 / max(seconds, 1e-3):.1f} MB/s), {copier.kept} already there "
        f"({copier.checked} compared by checksum)")
    if not final:
        say("imgz: next: stop the server on the source, run this again with --final, then start "
            "imgz with the target's settings")
        return
    theirs, ours = transfer.counts(src, now), transfer.counts(dst, now)
    for name in transfer.TABLES:
        if theirs[name] != ours[name]:
            raise click.ClickException(f"the target has {ours[name]} rows of {name}, the source "
                                       f"{theirs[name]}: is the source still serving? stop it and run again")
    place = (f"IMGZ_DATA={target_cfg.data} IMGZ_STORAGE=local" if target_cfg.storage == "local"
             else "IMGZ_STORAGE=s3 (and the same IMGZ_S3_* settings)")
    database = (f"IMGZ_DATABASE_URL={hide_password(to_database)}" if transfer.is_url(to_database)
                else f"IMGZ_DB={Path(to_database).resolve()}")
    say(f"imgz: the target equals the source ({theirs['uploads']} uploads, {theirs['files']} files); "
        f"start imgz on it with {database} {place}")
