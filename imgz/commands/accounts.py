"""Who uploads and where to: ``user``, ``key``, ``album``, ``category`` and ``sharex``."""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import click

from .. import db, ids, people
from ..records import Quota
from . import now, say, user_id

if TYPE_CHECKING:
    from ..cli import Context


def _fmt_ts(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


@click.group()
def user() -> None:
    """Users: add, list, passwd, disable, enable, remove, quota."""


@user.command("add")
@click.argument("name")
@click.option("--admin", is_flag=True, help="Make the user an admin.")
@click.pass_obj
def user_add(obj: Context, name: str, admin: bool) -> None:
    """Add a user; prints its name."""
    conn = obj.conn()
    if db.get_user_by_name(conn, name) is not None:
        raise click.ClickException(f"user {name!r} exists already")
    db.add_user(conn, name, admin, now())
    click.echo(name)


def _limit(value: object) -> str:
    return "none" if value is None else str(value)


def _quota_words(quota: Quota) -> str:
    """max_mb=... max_files=... as ``user quota`` takes them."""
    mb = None if quota.max_bytes is None else f"{quota.max_bytes / 1e6:g}"
    return f"max_mb={_limit(mb)}\tmax_files={_limit(quota.max_files)}"


@user.command("list")
@click.pass_obj
def user_list(obj: Context) -> None:
    """List users: name, role, state, uploads, stored bytes (variants included), live keys, quota."""
    for summary in db.list_users(obj.conn()):
        role = "admin" if summary.user.is_admin else "user"
        state = "disabled" if summary.user.is_disabled else "active"
        click.echo(f"{summary.user.name}\t{role}\t{state}\tuploads={summary.uploads}"
                   f"\tbytes={summary.quota.used_bytes}\tkeys={summary.keys}\t{_quota_words(summary.quota)}")


@user.command("passwd")
@click.argument("name")
@click.option("--url", "base", help="The server's address as people open it (default: IMGZ_BASE_URL).")
@click.pass_obj
def user_passwd(obj: Context, name: str, base: str | None) -> None:
    """Print a one-time link (valid one hour) that sets NAME's password."""
    conn = obj.conn()
    token = people.new_link(conn, user_id(conn, name), now())
    base = (base or obj.cfg.base_url or f"http://127.0.0.1:{obj.cfg.port}").rstrip("/")
    say(f"imgz: open this link within an hour to set {name}'s password; it works once")
    click.echo(people.link_url(base, token))


@user.command("disable")
@click.argument("name")
@click.pass_obj
def user_disable(obj: Context, name: str) -> None:
    """Disable a user: their sessions end and their keys are refused, at once."""
    conn = obj.conn()
    if not people.disable(conn, user_id(conn, name), now()):
        raise click.ClickException(f"user {name!r} is disabled already")
    say(f"imgz: {name} is disabled; their uploads stay")


@user.command("enable")
@click.argument("name")
@click.pass_obj
def user_enable(obj: Context, name: str) -> None:
    """Enable a disabled user again (their keys work again; sessions start at the next sign-in)."""
    conn = obj.conn()
    if not people.enable(conn, user_id(conn, name)):
        raise click.ClickException(f"user {name!r} is not disabled")
    say(f"imgz: {name} is enabled")


@user.command("remove")
@click.argument("name")
@click.option("--keep-uploads", "keep", is_flag=True,
              help="Keep their uploads, ownerless like guests' (still served, delete links still work).")
@click.option("--delete-uploads", "delete", is_flag=True, help="Delete their uploads with every file.")
@click.pass_obj
def user_remove(obj: Context, name: str, keep: bool, delete: bool) -> None:
    """Remove a user with their keys, sessions and albums; say what becomes of their uploads."""
    from ..removal import LastAdmin, remove
    from .uploads import service_for

    if keep == delete:
        raise click.ClickException("say what becomes of their uploads: --keep-uploads or --delete-uploads")
    conn = obj.conn()
    found = db.get_user_by_name(conn, name)
    if found is None:
        raise click.ClickException(f"no user named {name!r}")
    if delete:
        obj.clean_scratch()
    try:
        done = remove(service_for(obj), found, delete_uploads=delete)
    except LastAdmin as exc:
        raise click.ClickException(f"not removed: {exc}") from None
    fate = (f"{done.deleted} uploads deleted with their files" if delete
            else f"{done.kept} uploads kept without an owner")
    say(f"imgz: {name} is removed with their keys, sessions and albums; {fate}")


def _limit_value(text: str | None, scale: float, option: str) -> int | None | bool:
    """A limit as given: None (none), a whole number (scaled), or False when not given."""
    if text is None:
        return False
    if text.strip().lower() in ("none", ""):
        return None
    try:
        number = float(text) * scale
    except ValueError:
        number = -1
    if number == 0:
        return None
    if not number > 0 or number > 2 ** 62 or (scale == 1 and not number.is_integer()):  # NaN is not > 0
        raise click.BadParameter(f"{text!r}: give a positive {'whole ' if scale == 1 else ''}number, "
                                 "or 0 or none for no limit",
                                 param_hint=option)
    return max(1, int(number))


@user.command("quota")
@click.argument("name")
@click.option("--max-mb", metavar="MB", help="Most MB (1 MB = 1,000,000 bytes) their uploads may "
              "take, variants counted; 0 or none: no limit.")
@click.option("--max-files", metavar="N", help="Most uploads they may have; 0 or none: no limit.")
@click.pass_obj
def user_quota(obj: Context, name: str, max_mb: str | None, max_files: str | None) -> None:
    """Set (or, without options, show) NAME's quota and what their uploads take."""
    conn = obj.conn()
    uid = user_id(conn, name)
    quota = db.get_quota(conn, uid)
    assert quota is not None
    new_bytes = _limit_value(max_mb, 1e6, "--max-mb")
    new_files = _limit_value(max_files, 1, "--max-files")
    if new_bytes is not False or new_files is not False:
        db.set_quota(conn, uid, quota.max_bytes if new_bytes is False else new_bytes,
                     quota.max_files if new_files is False else new_files)
        quota = db.get_quota(conn, uid)
        assert quota is not None
        say(f"imgz: {name}'s quota is set; uploads that would pass it are refused (413)")
    click.echo(f"{name}\tuploads={quota.used_files}\tbytes={quota.used_bytes}\t{_quota_words(quota)}")


@click.group()
def key() -> None:
    """API keys: create, list, revoke."""


@key.command("create")
@click.option("--user", "user_name", help="Owner (default: admin).")
@click.option("--label", default="", help="A label to tell keys apart.")
@click.pass_obj
def key_create(obj: Context, user_name: str | None, label: str) -> None:
    """Create a key; prints it alone (it is shown only this once)."""
    conn = obj.conn()
    new_key = ids.new_api_key()
    key_id = db.add_key(conn, user_id(conn, user_name), ids.digest(new_key), label, now())
    say(f"imgz: key {key_id} created for {user_name or 'admin'}; it is not shown again")
    click.echo(new_key)


@key.command("list")
@click.option("--user", "user_name", help="Only this user's keys.")
@click.pass_obj
def key_list(obj: Context, user_name: str | None) -> None:
    """List keys: id, user, label, created, last used, revoked."""
    conn = obj.conn()
    owner = user_id(conn, user_name) if user_name else None
    click.echo("id\tuser\tlabel\tcreated\tlast_used\trevoked")
    for item in db.list_keys(conn, owner):
        click.echo(f"{item.id}\t{item.user_name}\t{item.label or '-'}\t{_fmt_ts(item.created_at)}"
                   f"\t{_fmt_ts(item.last_used_at)}\t{_fmt_ts(item.revoked_at)}")


@key.command("revoke")
@click.argument("key_id", type=int)
@click.pass_obj
def key_revoke(obj: Context, key_id: int) -> None:
    """Revoke a key by its id; it fails at once, also against a running server."""
    if not db.revoke_key(obj.conn(), key_id, now()):
        raise click.ClickException(f"no live key with id {key_id}")
    say(f"imgz: key {key_id} revoked")


@click.group()
def album() -> None:
    """Albums: add."""


@album.command("add")
@click.argument("name")
@click.option("--user", "user_name", required=True, help="The album's owner.")
@click.pass_obj
def album_add(obj: Context, name: str, user_name: str) -> None:
    """Add an album for a user; prints its public id (the API's album_id)."""
    conn = obj.conn()
    owner = user_id(conn, user_name)
    for _ in range(16):
        public_id = ids.public_id(obj.cfg.id_length)
        if db.get_album(conn, public_id) is None:
            db.add_album(conn, public_id, owner, name, now())
            click.echo(public_id)
            return
    raise click.ClickException("could not find a free album id")


@click.group()
def category() -> None:
    """Categories: add."""


@category.command("add")
@click.argument("name")
@click.pass_obj
def category_add(obj: Context, name: str) -> None:
    """Add a category; prints its id (the API's category_id)."""
    conn = obj.conn()
    if db.get_category_by_name(conn, name) is not None:
        raise click.ClickException(f"category {name!r} exists already")
    click.echo(str(db.add_category(conn, name)))


@click.command()
@click.option("--user", "user_name", help="Owner of the new key (default: admin).")
@click.option("--key", "given_key", help="Use this existing key instead of making one.")
@click.option("--url", "base_url", help="Public base URL (default IMGZ_BASE_URL).")
@click.pass_obj
def sharex(obj: Context, user_name: str | None, given_key: str | None, base_url: str | None) -> None:
    """Print a ShareX custom uploader (.sxcu) for this server."""
    import json

    from ..sharex import unusable_base, uploader

    base = (base_url or obj.cfg.base_url or "").rstrip("/")
    if not base:
        raise click.ClickException("give --url https://your.host (or set IMGZ_BASE_URL): "
                                   "the file must name an address ShareX can reach")
    problem = unusable_base(base)
    if problem:
        raise click.ClickException(f"cannot use {base!r}: {problem}")
    conn = obj.conn()
    if given_key:
        if db.find_key(conn, ids.digest(given_key)) is None:
            raise click.ClickException("that key is unknown or revoked")
        key_value = given_key
    else:
        key_value = ids.new_api_key()
        db.add_key(conn, user_id(conn, user_name), ids.digest(key_value), "sharex", now())
        say(f"imgz: made a new key labelled 'sharex' for {user_name or 'admin'}")
    click.echo(json.dumps(uploader(base, key_value), indent=2))
