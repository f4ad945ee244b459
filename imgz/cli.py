"""``python app.py <command>``: serve, and the management commands of SPEC §1.

A command that creates something prints what a script needs, alone, on stdout; every other
message goes to stderr.
"""
from __future__ import annotations

import logging
import signal
import sys
import tempfile
from datetime import datetime, timezone
from typing import Any

import click

from . import clean_scratch, config as config_mod, db, ids, init_data, storage
from .addresses import unspecified
from .errors import ConfigError


def _now() -> datetime:
    return datetime.now(timezone.utc)


def say(message: str) -> None:
    click.echo(message, err=True)


def _fmt_ts(value: int | None) -> str:
    return "-" if value is None else datetime.fromtimestamp(value, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


class Context:
    def __init__(self, flags: dict[str, Any]) -> None:
        self.flags = flags
        self._cfg: config_mod.Config | None = None

    @property
    def cfg(self) -> config_mod.Config:
        if self._cfg is None:
            cfg = config_mod.load(flags=self.flags)
            init_data(cfg)
            self._cfg = cfg
        return self._cfg

    def conn(self):
        return db.connect(self.cfg.db)

    def clean_scratch(self) -> None:
        """For commands that change files: remove what processes that are gone left in ``tmp``."""
        clean_scratch(self.cfg)


def _user_id(conn, name: str | None) -> int:
    row = db.get_user_by_name(conn, name or "admin")
    if row is None:
        raise click.ClickException(f"no user named {name!r}")
    return int(row["id"])


@click.group(invoke_without_command=True)
@click.option("--data", help="Data directory (IMGZ_DATA).")
@click.pass_context
def main(ctx: click.Context, data: str | None) -> None:
    """imgz: a self-hosted image and video host speaking Chevereto's API V1."""
    ctx.obj = Context({"data": data})
    if ctx.invoked_subcommand is None:
        ctx.invoke(serve)


@main.command()
@click.option("--host", help="Address to listen on (IMGZ_HOST).")
@click.option("--port", type=int, help="Port to listen on (IMGZ_PORT); 0 picks a free one.")
@click.option("--data", help="Data directory (IMGZ_DATA).")
@click.pass_obj
def serve(obj: Context, host: str | None = None, port: int | None = None, data: str | None = None) -> None:
    """Start the server (the default command)."""
    from . import create_app, jobs, scratch, workers
    from .api import body_limit

    if data:
        obj.flags["data"] = data
    obj.flags.update({"host": host, "port": port})
    cfg = obj.cfg
    logging.basicConfig(level=logging.INFO, format="imgz: %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    # waitress warns of its task queue depth on every queued request under load
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    workers.start_fork_server()
    app = create_app(cfg=cfg)
    # waitress spools large bodies with tempfile: on the data disk, not a RAM-backed /tmp, and in
    # this process's own scratch folder, which no other process cleans while it runs.
    tempfile.tempdir = str(storage.tmp_dir(cfg.data_dir))
    try:
        try:
            server = _create_server(app, cfg, body_limit(cfg.max_upload_bytes))
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            raise ConfigError(f"IMGZ_HOST={cfg.host!r} IMGZ_PORT={cfg.port}: cannot listen there: "
                              f"{reason}") from None
        # Only once the address is ours: a failed start must not use up the one showing of the key.
        new_key = first_key(cfg)
        port_used = server.effective_port
        shown_host = "127.0.0.1" if not cfg.host or unspecified(cfg.host) else cfg.host
        base = cfg.base_url or f"http://{shown_host}:{port_used}"
        if new_key:
            click.echo(f"imgz: created the first API key for user admin (shown only this once): {new_key}")
            click.echo(f'imgz: upload with: curl --fail-with-body -H "X-API-Key: {new_key}" '
                       f'-F "source=@file.png" {base}/api/1/upload')
            sys.stdout.flush()
        say(f"imgz: serving {cfg.data} on http://{cfg.host}:{port_used} (upload URL {base}/api/1/upload)")

        def stop(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, stop)
        try:
            server.run()
        except KeyboardInterrupt:
            pass
        finally:
            server.close()
    finally:
        jobs.stop()
        app.config["IMGZ_CONNECTIONS"].close_all()
        scratch.of(cfg.data_dir).close()
    say("imgz: stopped")


def _create_server(app: Any, cfg: config_mod.Config, max_body: int) -> Any:
    """waitress, guarded (imgz/server.py), with a gate that refuses keyless uploads early."""
    from . import server as server_mod
    from .gate import KeyGate

    open_files = server_mod.raise_open_files()
    connections = min(cfg.connections, max(10, open_files - server_mod.FD_RESERVE))
    if connections < cfg.connections:
        say(f"imgz: the open-file limit ({open_files}) allows {connections} connections, "
            f"not IMGZ_CONNECTIONS={cfg.connections}")
    limits = server_mod.Limits(
        head_timeout=cfg.header_timeout, body_min_rate=cfg.body_min_rate_kb * 1000,
        body_grace=cfg.header_timeout,
        per_address=cfg.connections_per_address,
        spool_bytes=int(cfg.keyless_spool_mb * 1_000_000))
    return server_mod.create_server(
        app, gate=KeyGate(app), limits=limits, trust_proxy=bool(cfg.trust_proxy),
        host=cfg.host, port=cfg.port, threads=cfg.threads,
        # Uploads admitted to processing each hold a thread while they wait for a worker: they
        # get threads of their own, so pages and files always have IMGZ_THREADS, and two more,
        # so that uploads past the queue hear their 503 at once.
        upload_threads=cfg.workers + cfg.upload_queue + 2,
        max_request_body_size=max_body + 1_000_000, ident="imgz",
        # poll() has no limit on descriptor numbers; select() fails past 1024
        asyncore_use_poll=True, connection_limit=connections, backlog=2048,
        # the idle timer; the read deadlines are checked at every cleanup
        channel_timeout=120, cleanup_interval=1,
        # with trusted proxies ProxyFix reads X-Forwarded-*; without, waitress drops them
        clear_untrusted_proxy_headers=not cfg.trust_proxy)


def first_key(cfg: config_mod.Config) -> str | None:
    """The admin's first API key, made when there is no key yet (else None)."""
    conn = db.connect(cfg.db)
    try:
        with db.transaction(conn):
            if db.count_keys(conn):
                return None
            key = ids.new_api_key()
            db.add_key(conn, _user_id(conn, "admin"), ids.digest(key), "first start", _now())
            return key
    finally:
        conn.close()


@main.command()
@click.pass_obj
def expire(obj: Context) -> None:
    """Run the expiry sweep once; prints how many uploads it removed."""
    from . import jobs

    obj.clean_scratch()
    removed = jobs.sweep(_service(obj))
    if removed is None:
        raise click.ClickException("another process is sweeping this data directory; try again")
    click.echo(str(removed))


@main.group()
def user() -> None:
    """Users: add, list."""


@user.command("add")
@click.argument("name")
@click.option("--admin", is_flag=True, help="Make the user an admin.")
@click.pass_obj
def user_add(obj: Context, name: str, admin: bool) -> None:
    """Add a user; prints its name."""
    conn = obj.conn()
    if db.get_user_by_name(conn, name) is not None:
        raise click.ClickException(f"user {name!r} exists already")
    db.add_user(conn, name, admin, _now())
    click.echo(name)


@user.command("list")
@click.pass_obj
def user_list(obj: Context) -> None:
    """List users."""
    for row in db.list_users(obj.conn()):
        role = "admin" if row["is_admin"] else "user"
        click.echo(f"{row['name']}\t{role}\tuploads={row['uploads']}\tkeys={row['keys']}")


@main.group()
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
    key_id = db.add_key(conn, _user_id(conn, user_name), ids.digest(new_key), label, _now())
    say(f"imgz: key {key_id} created for {user_name or 'admin'}; it is not shown again")
    click.echo(new_key)


@key.command("list")
@click.option("--user", "user_name", help="Only this user's keys.")
@click.pass_obj
def key_list(obj: Context, user_name: str | None) -> None:
    """List keys: id, user, label, created, last used, revoked."""
    conn = obj.conn()
    user_id = _user_id(conn, user_name) if user_name else None
    click.echo("id\tuser\tlabel\tcreated\tlast_used\trevoked")
    for row in db.list_keys(conn, user_id):
        click.echo(f"{row['id']}\t{row['user_name']}\t{row['label'] or '-'}\t{_fmt_ts(row['created_at'])}"
                   f"\t{_fmt_ts(row['last_used_at'])}\t{_fmt_ts(row['revoked_at'])}")


@key.command("revoke")
@click.argument("key_id", type=int)
@click.pass_obj
def key_revoke(obj: Context, key_id: int) -> None:
    """Revoke a key by its id; it fails at once, also against a running server."""
    if not db.revoke_key(obj.conn(), key_id, _now()):
        raise click.ClickException(f"no live key with id {key_id}")
    say(f"imgz: key {key_id} revoked")


@main.group()
def album() -> None:
    """Albums: add."""


@album.command("add")
@click.argument("name")
@click.option("--user", "user_name", required=True, help="The album's owner.")
@click.pass_obj
def album_add(obj: Context, name: str, user_name: str) -> None:
    """Add an album for a user; prints its public id (the API's album_id)."""
    conn = obj.conn()
    user_id = _user_id(conn, user_name)
    for _ in range(16):
        public_id = ids.public_id(obj.cfg.id_length)
        if db.get_album(conn, public_id) is None:
            db.add_album(conn, public_id, user_id, name, _now())
            click.echo(public_id)
            return
    raise click.ClickException("could not find a free album id")


@main.group()
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


def _service(obj: Context):
    from .service import Service

    return Service(obj.cfg, db.LocalConnections(obj.cfg.db).get)


@main.group()
def upload() -> None:
    """Uploads: list, delete."""


@upload.command("list")
@click.option("--user", "user_name", help="Only this user's uploads.")
@click.pass_obj
def upload_list(obj: Context, user_name: str | None) -> None:
    """List uploads: id, user, name, size, date (UTC), expiry (UTC)."""
    from .chevereto import size_formatted

    conn = obj.conn()
    users = {row["id"]: row["name"] for row in db.list_users(conn)}
    user_id = _user_id(conn, user_name) if user_name else None
    click.echo("id\tuser\tname\tsize\tdate\texpires")
    for item in db.iter_uploads(conn, user_id):
        expires = item.expires_at.strftime("%Y-%m-%d %H:%M:%S") if item.expires_at else "-"
        click.echo(f"{item.public_id}\t{users.get(item.user_id, '(guest)')}\t{item.name}.{item.extension}"
                   f"\t{size_formatted(item.size)}\t{item.created_at:%Y-%m-%d %H:%M:%S}\t{expires}")


@upload.command("delete")
@click.argument("ident", metavar="ID_OR_URL")
@click.pass_obj
def upload_delete(obj: Context, ident: str) -> None:
    """Take an upload down: its row and every file (by id, viewer URL or file URL)."""
    obj.clean_scratch()
    service = _service(obj)
    found = service.find_upload(ident)
    if found is None:
        raise click.ClickException(f"no upload matches {ident!r}")
    if not service.delete(found):
        raise click.ClickException(f"no upload matches {ident!r} (deleted meanwhile)")
    say(f"imgz: deleted {found.public_id} ({found.name}.{found.extension})")


@main.command()
@click.option("--user", "user_name", help="Owner of the new key (default: admin).")
@click.option("--key", "given_key", help="Use this existing key instead of making one.")
@click.option("--url", "base_url", help="Public base URL (default IMGZ_BASE_URL).")
@click.pass_obj
def sharex(obj: Context, user_name: str | None, given_key: str | None, base_url: str | None) -> None:
    """Print a ShareX custom uploader (.sxcu) for this server."""
    import json

    from .sharex import unusable_base, uploader

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
        db.add_key(conn, _user_id(conn, user_name), ids.digest(key_value), "sharex", _now())
        say(f"imgz: made a new key labelled 'sharex' for {user_name or 'admin'}")
    click.echo(json.dumps(uploader(base, key_value), indent=2))


@main.command()
@click.option("--repair", is_flag=True, help="Remove orphan files and uploads whose file is gone.")
@click.pass_obj
def check(obj: Context, repair: bool) -> None:
    """Compare rows and files: report files no upload owns and uploads whose file is missing."""
    if repair:
        obj.clean_scratch()
    found = _service(obj).check(repair=repair)
    for path in found.orphans:
        click.echo(f"orphan file\timages/{path}")
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


def run(argv: list[str] | None = None) -> int:
    """Entry point: turn configuration errors into one clear line and exit status 2."""
    try:
        main.main(args=argv, prog_name="app.py", standalone_mode=False)
    except ConfigError as exc:
        click.echo(f"imgz: bad setting: {exc}", err=True)
        return 2
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        return 1
    return 0
