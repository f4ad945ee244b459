"""``backup DEST``, ``backup --verify DEST`` and ``restore SRC`` (imgz/backup.py, restore.py)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .. import config as config_mod
from . import say

if TYPE_CHECKING:
    from ..cli import Context


def _megabytes(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"


@click.command()
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--verify", is_flag=True,
              help="Check an existing backup in DEST instead: read every file again and compare "
                   "it with the manifest's size and SHA-256.")
@click.option("--link", is_flag=True,
              help="Hard-link the stored files instead of copying them (DEST on the data "
                   "directory's filesystem: quick, but no help if that disk is lost).")
@click.pass_obj
def backup(obj: Context, dest: Path, verify: bool, link: bool) -> None:
    """Copy the database and stored files into the new folder DEST while the server runs."""
    from .. import backup as backup_mod

    started = time.monotonic()
    try:
        if verify:
            _, entries = backup_mod.read(dest)
            problems = backup_mod.verify(dest)
            for problem, path in problems:
                click.echo(f"{problem}\t{path}")
            say(f"imgz: checked {len(entries)} file(s) ({_megabytes(sum(e.size for e in entries))}) "
                f"in {time.monotonic() - started:.1f} s: "
                + (f"{len(problems)} problem(s)" if problems else "all match"))
            if problems:
                raise SystemExit(1)
            return
        # before anything opens the database: on PostgreSQL or S3 the answer is one line
        reason = backup_mod.unsupported(config_mod.load(flags=obj.flags))
        if reason:
            raise click.ClickException(reason)
        taken = backup_mod.take(obj.cfg, dest, link=link)
    except backup_mod.BackupError as exc:
        raise click.ClickException(str(exc)) from None
    for key in taken.missing:
        say(f"imgz: missing from the data directory: images/{key} (an upload 'check' reports)")
    say(f"imgz: backed up {taken.files} file(s) ({_megabytes(taken.bytes)}) into {dest} "
        f"in {time.monotonic() - started:.1f} s")
    if taken.missing:
        raise SystemExit(1)


@click.command()
@click.argument("src", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.pass_obj
def restore(obj: Context, src: Path) -> None:
    """Copy the backup in SRC into an empty data directory, checking every file."""
    from ..backup import BackupError
    from ..restore import restore as restore_backup

    started = time.monotonic()
    # Not obj.cfg: that would give the empty data directory a database of its own first.
    cfg = config_mod.load(flags=obj.flags)
    try:
        files, size = restore_backup(src, cfg)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    say(f"imgz: restored {files} file(s) ({_megabytes(size)}) into {cfg.data} "
        f"in {time.monotonic() - started:.1f} s")
