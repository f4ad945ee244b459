"""The stored uploads: ``upload list``, ``upload delete``, ``check [--repair]`` and ``expire``.

Commands that change files first remove what processes that are gone left in ``tmp``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import click

from .. import db, layout
from . import say, user_id

if TYPE_CHECKING:
    from ..cli import Context
    from ..service import Service


def service_for(obj: Context) -> Service:
    from ..service import Service

    return Service(obj.cfg, db.LocalConnections(obj.cfg.database).get)


@click.group()
def upload() -> None:
    """Uploads: list, delete."""


@upload.command("list")
@click.option("--user", "user_name", help="Only this user's uploads.")
@click.pass_obj
def upload_list(obj: Context, user_name: str | None) -> None:
    """List uploads: id, user, name, size, date (UTC), expiry (UTC)."""
    from ..chevereto import size_formatted

    conn = obj.conn()
    users = {summary.user.id: summary.user.name for summary in db.list_users(conn)}
    owner = user_id(conn, user_name) if user_name else None
    click.echo("id\tuser\tname\tsize\tdate\texpires")
    for item in db.iter_uploads(conn, owner):
        expires = item.expires_at.strftime("%Y-%m-%d %H:%M:%S") if item.expires_at else "-"
        click.echo(f"{item.public_id}\t{users.get(item.user_id, '(guest)')}\t{item.name}.{item.extension}"
                   f"\t{size_formatted(item.size)}\t{item.created_at:%Y-%m-%d %H:%M:%S}\t{expires}")


@upload.command("delete")
@click.argument("ident", metavar="ID_OR_URL")
@click.pass_obj
def upload_delete(obj: Context, ident: str) -> None:
    """Take an upload down: its row and every file (by id, viewer URL or file URL)."""
    from .. import lookup

    obj.clean_scratch()
    service = service_for(obj)
    found = lookup.find_upload(service, ident)
    if found is None:
        raise click.ClickException(f"no upload matches {ident!r}")
    if not service.delete(found):
        raise click.ClickException(f"no upload matches {ident!r} (deleted meanwhile)")
    say(f"imgz: deleted {found.public_id} ({found.name}.{found.extension})")


@click.command()
@click.option("--repair", is_flag=True, help="Remove orphan files and uploads whose file is gone.")
@click.option("--orphan-age", type=click.IntRange(0), default=None, metavar="SECONDS",
              help="Count a file no upload owns as an orphan, and an unfinished multipart upload "
                   "as stale, only once it is this old. Default: 3600 on S3, whose puts of an "
                   "upload in flight come before its row; 0 for the local disk's files.")
@click.pass_obj
def check(obj: Context, repair: bool, orphan_age: int | None) -> None:
    """Compare rows and files: report files no upload owns and uploads whose file is missing."""
    from .. import repair as repair_mod

    if repair:
        obj.clean_scratch()
    found = repair_mod.check(service_for(obj), repair=repair, orphan_age=orphan_age)
    for path in found.orphans:
        click.echo(f"orphan file\t{layout.in_data_dir(path)}")
    for item in found.broken:
        click.echo(f"missing file\t{item.public_id}\t{item.relpath()}")
    for item, variants in found.lacking:
        for variant in variants:
            click.echo(f"missing variant\t{item.public_id}\t{item.relpath(variant)}")
    if repair:
        say(f"imgz: removed {len(found.orphans)} orphan file(s) and {len(found.broken)} upload(s) "
            f"with a missing file; made the variants of {len(found.lacking) - len(found.unrepaired)} "
            f"upload(s) again")
        for item in found.unrepaired:
            say(f"imgz: could not mend {item.public_id}: delete it with 'upload delete'")
    else:
        say(f"imgz: found {len(found.orphans)} orphan file(s), {len(found.broken)} upload(s) with a "
            f"missing file and {len(found.lacking)} with a missing variant")
    if found.unrepaired or (not repair and (found.orphans or found.broken or found.lacking)):
        raise SystemExit(1)


@click.command()
@click.pass_obj
def expire(obj: Context) -> None:
    """Run the expiry sweep once; prints how many uploads it removed."""
    from .. import jobs

    obj.clean_scratch()
    removed = jobs.sweep(service_for(obj))
    if removed is None:
        raise click.ClickException("another process is sweeping this data directory; try again")
    click.echo(str(removed))
