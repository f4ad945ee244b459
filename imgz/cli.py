"""``python app.py <command>``: the command group, its shared Context, and ``serve`` (the bare
command); the management commands of SPEC §1 are in imgz/commands/, by noun.

A command that creates something prints what a script needs, alone, on stdout; every other
message goes to stderr.
"""
from __future__ import annotations

import errno
import logging
import signal
import sys
import tempfile
from typing import Any

import click

from . import config as config_mod, db, ids, people, reach
from .web import clean_scratch, init_data
from .addresses import unspecified
from .commands import accounts, backups, migrate, now, say, uploads, user_id
from .errors import ConfigError


# Seconds a stop waits for requests in progress (contrib/imgz.service gives it 45 in all).
STOP_GRACE = 30.0


class Context:
    def __init__(self, flags: dict[str, Any]) -> None:
        self.flags = flags
        self._cfg: config_mod.Config | None = None
        self._conn: db.Connection | None = None

    @property
    def cfg(self) -> config_mod.Config:
        if self._cfg is None:
            cfg = config_mod.load(flags=self.flags)
            init_data(cfg)
            self._cfg = cfg
        return self._cfg

    def conn(self) -> db.Connection:  # one per command, kept until the process ends
        if self._conn is None:
            self._conn = db.connect(self.cfg.database)
        return self._conn

    def clean_scratch(self) -> None:
        """For commands that change files: remove what processes that are gone left in ``tmp``."""
        clean_scratch(self.cfg)


def _serve_flags(command: Any) -> Any:
    """The flags of ``serve``, which the bare command takes too; their values are checked as settings."""
    command = click.option("--data", metavar="DIR", help="Data directory (IMGZ_DATA).")(command)
    command = click.option("--port", metavar="PORT",
                           help="Port to listen on (IMGZ_PORT); 0 picks a free one.")(command)
    return click.option("--host", metavar="ADDRESS", help="Address to listen on (IMGZ_HOST).")(command)


@click.group(invoke_without_command=True)
@_serve_flags
@click.pass_context
def main(ctx: click.Context, host: str | None, port: str | None, data: str | None) -> None:
    """imgz: a self-hosted image and video host speaking Chevereto's API V1.

    Without a command it serves, like serve.
    """
    ctx.obj = Context({"data": data, "host": host, "port": port})
    if ctx.invoked_subcommand is None:
        ctx.invoke(serve)


for _command in (accounts.user, accounts.key, accounts.album, accounts.category, accounts.sharex,
                 uploads.upload, uploads.check, uploads.expire, migrate.migrate,
                 backups.backup, backups.restore):
    main.add_command(_command)


@main.command()
@_serve_flags
@click.pass_obj
def serve(obj: Context, host: str | None = None, port: str | None = None, data: str | None = None) -> None:
    """Start the server (the default command)."""
    from . import accesslog, jobs, scratch, stopping, workers
    from .web import create_app
    from .api import body_limit

    obj.flags.update({k: v for k, v in {"data": data, "host": host, "port": port}.items() if v is not None})
    cfg = obj.cfg
    logging.basicConfig(level=logging.INFO, format="imgz: %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    # waitress warns of its task queue depth on every queued request under load
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    workers.start_fork_server()
    app = create_app(cfg=cfg)
    # waitress spools large bodies with tempfile: on the data disk, not a RAM-backed /tmp, and in
    # this process's own scratch folder, which no other process cleans while it runs.
    tempfile.tempdir = str(scratch.folder(cfg.data_dir))
    try:
        try:
            server = _create_server(app, cfg, body_limit(cfg.max_upload_bytes))
        except (OSError, ValueError) as exc:
            # a port taken or kept for root is the port's fault; an unknown address the host's
            name = "port" if getattr(exc, "errno", None) in {errno.EADDRINUSE, errno.EACCES} else "host"
            raise config_mod.refused(name, getattr(cfg, name), f"cannot listen on {cfg.host}:{cfg.port}: "
                                     f"{str(getattr(exc, 'strerror', None) or exc).rstrip('.')}",
                                     flag=obj.flags.get(name) is not None) from None
        # Only once the address is ours: a failed start must not use up the one showing of the key.
        new_key = first_key(cfg)
        link = first_link(cfg) if new_key else None
        port_used = server.effective_port
        shown_host = "127.0.0.1" if not cfg.host or unspecified(cfg.host) else cfg.host
        base = cfg.base_url or f"http://{shown_host}:{port_used}"

        def stop(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt

        # SIGTERM stops the server cleanly from before the first line that says it is up; once
        # it serves, requests in progress are answered first (stopping.serve).
        signal.signal(signal.SIGTERM, stop)
        try:
            if new_key:
                click.echo("imgz: created the first API key for user admin (shown only this once): "
                           + new_key)
                click.echo(f'imgz: upload with: curl --fail-with-body -H "X-API-Key: {new_key}" '
                           f'-F "source=@file.png" {base}/api/1/upload')
            if link:
                click.echo("imgz: set the admin's password within an hour (this link works once): "
                           + people.link_url(base, link))
                sys.stdout.flush()
            for warning in reach.exposure_warnings(cfg.host, cfg.base_url):
                say(warning)
            urls = reach.reach_urls(cfg.host, port_used)
            if urls:
                say("imgz: reachable at " + ", ".join(urls))
            say(f"imgz: serving {cfg.data} on http://{cfg.host}:{port_used} (upload URL {base}/api/1/upload)")
            stopping.serve(server, STOP_GRACE)
        except KeyboardInterrupt:
            pass
        finally:
            server.close()
            accesslog.flush_all()
    finally:
        jobs.stop()
        app.config["IMGZ_CONNECTIONS"].close_all()
        scratch.of(cfg.data_dir).close()
    say("imgz: stopped")


RECV_BYTES = 256 * 1024


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
        spool_bytes=int(cfg.keyless_spool_mb * 1_000_000),
        stream_from=cfg.stream_mb * 1_000_000,
        streams=server_mod.Limits.streams if cfg.stream_mb else 0)
    observer = None
    if cfg.access_log or cfg.metrics:
        from .accesslog import RequestLog

        observer = RequestLog(lines=cfg.access_log, count=cfg.metrics, trust_proxy=cfg.trust_proxy,
                              viewer_routes=(cfg.route_image, cfg.route_video))
    return server_mod.create_server(
        app, gate=KeyGate(app), limits=limits, trust_proxy=bool(cfg.trust_proxy), observer=observer,
        host=cfg.host, port=cfg.port, threads=cfg.threads,
        # Uploads admitted to processing each hold a thread while they wait for a worker: they
        # get threads of their own, so pages and files always have IMGZ_THREADS, and two more,
        # so that uploads past the queue hear their 503 at once.
        upload_threads=cfg.workers + cfg.upload_queue + 2,
        max_request_body_size=max_body + 1_000_000, ident="imgz",
        # A body is read 256 KiB at a time, not waitress's 8 KiB: a 3 MB upload takes 13 turns
        # of the socket loop (each a recv and an append to the body's buffer), not 400.
        recv_bytes=RECV_BYTES,
        # poll() has no limit on descriptor numbers; select() fails past 1024
        asyncore_use_poll=True, connection_limit=connections, backlog=2048,
        # the idle timer; the read deadlines are checked at every cleanup
        channel_timeout=120, cleanup_interval=1,
        # with trusted proxies ProxyFix reads X-Forwarded-*; without, waitress drops them
        clear_untrusted_proxy_headers=not cfg.trust_proxy)


def first_key(cfg: config_mod.Config) -> str | None:
    """The admin's first API key, made when there is no key yet (else None)."""
    conn = db.connect(cfg.database)
    try:
        with db.transaction(conn):
            db.lock(conn, "first key")  # of processes starting at once, one makes it
            if db.count_keys(conn):
                return None
            key = ids.new_api_key()
            db.add_key(conn, user_id(conn, "admin"), ids.digest(key), "first start", now())
            return key
    finally:
        conn.close()


def first_link(cfg: config_mod.Config) -> str | None:
    """A one-time link for the admin's password, when the admin has none yet."""
    conn = db.connect(cfg.database)
    try:
        admin = db.get_user_by_name(conn, "admin")
        if admin is None or admin.has_password:
            return None
        return people.new_link(conn, admin.id, now())
    finally:
        conn.close()


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
