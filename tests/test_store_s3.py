"""The S3 store on a real SeaweedFS: the store contract, then what only a bucket's store does
(multipart puts in flat memory, conditional puts, ranges by request, the failure paths)."""
from __future__ import annotations

import hashlib
import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from imgz.store.s3 import S3Store
from store_contract import KEY, StoreContract


def make_store(s3, prefix: str = "", **kw) -> S3Store:
    store = S3Store(s3.client, s3.name, prefix, **kw)
    store.prepare()
    return store


class TestS3Store(StoreContract):
    @pytest.fixture
    def store(self, s3) -> S3Store:
        return make_store(s3, s3.prefix)


class TestS3StoreWithoutConditionalPuts(StoreContract):
    """A store that does not honour If-None-Match: a HEAD before each put keeps keys unique."""

    @pytest.fixture
    def store(self, s3) -> S3Store:
        return make_store(s3, s3.prefix, conditional=False)


def _file(folder: Path, size: int, name: str = "big") -> tuple[Path, str]:
    """A file of ``size`` random-ish bytes (written in 1 MiB blocks) and its md5."""
    path = folder / name
    digest = hashlib.md5()
    block = os.urandom(1024 * 1024)
    with open(path, "wb") as out:
        left = size
        while left:
            piece = block[:min(left, len(block))]
            out.write(piece)
            digest.update(piece)
            left -= len(piece)
    return path, digest.hexdigest()


def _md5_of(store: S3Store, key: str) -> str:
    digest = hashlib.md5()
    with store.open(key) as stream:
        while chunk := stream.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def test_a_large_file_goes_in_parts_and_reads_back(s3, tmp_path):
    store = make_store(s3, s3.prefix)
    src, md5 = _file(tmp_path, 20 * 1024 * 1024 + 12345)
    with open(src, "rb") as file:
        file.seek(8 * 1024 * 1024 - 10)
        expected = file.read(20)
    store.put(KEY, src)
    assert not src.exists()
    head = s3.client.head_object(Bucket=s3.name, Key=s3.prefix + KEY)
    assert head["ETag"].strip('"').endswith("-3"), "three parts of 8 MiB at most"
    assert head["ContentType"] == "image/png"
    assert _md5_of(store, KEY) == md5
    assert store.stat(KEY).size == 20 * 1024 * 1024 + 12345
    # a range across a part boundary
    with store.open(KEY, 8 * 1024 * 1024 - 10, 8 * 1024 * 1024 + 10) as stream:
        assert stream.read() == expected, "the range ends where it was asked to"
    assert s3.unfinished() == []


def test_a_large_file_is_never_put_over_another(s3, tmp_path):
    store = make_store(s3, s3.prefix)
    store.put(KEY, _file(tmp_path, 100)[0])
    src, _ = _file(tmp_path, 9 * 1024 * 1024, "big2")
    with pytest.raises(FileExistsError):
        store.put(KEY, src)
    assert store.stat(KEY).size == 100
    assert s3.unfinished() == [], "the refused multipart upload was aborted"


class Failing:
    """The real client, but its ``fail`` operation raises a connection error from call ``after`` on
    (a network that drops in the middle of a put)."""

    def __init__(self, client, fail: str, after: int) -> None:
        self._client, self._fail, self._after = client, fail, after

    def __getattr__(self, name):
        real = getattr(self._client, name)
        if name != self._fail:
            return real

        def call(**kwargs):
            self._after -= 1
            if self._after < 0:
                from botocore.exceptions import EndpointConnectionError

                raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
            return real(**kwargs)

        return call


def test_a_multipart_put_that_fails_halfway_leaves_nothing(s3, tmp_path):
    from imgz.errors import StoreUnavailable

    store = S3Store(Failing(s3.client, "upload_part", 2), s3.name, s3.prefix, conditional=True)
    src, _ = _file(tmp_path, 30 * 1024 * 1024)
    with pytest.raises(StoreUnavailable) as caught:
        store.put(KEY, src)
    assert caught.value.status == 503 and "Retry-After" in caught.value.headers
    assert src.exists(), "the scratch file stays for the caller to remove"
    assert s3.keys() == [] and s3.unfinished() == []


def test_a_put_all_that_fails_on_its_last_file_takes_back_the_others(s3, tmp_path):
    from imgz.errors import StoreUnavailable

    store = S3Store(Failing(s3.client, "put_object", 2), s3.name, s3.prefix, conditional=True)
    items = [(f"2025/01/01/a.{v}png", _file(tmp_path, 1000, f"f{v}")[0]) for v in ("", "th.", "md.")]
    with pytest.raises(StoreUnavailable):
        store.put_all(items)
    assert s3.keys() == []


def test_an_unreachable_store_is_unavailable(s3, tmp_path):
    import boto3
    from botocore.config import Config

    from imgz.errors import StoreUnavailable

    client = boto3.session.Session().client("s3", endpoint_url="http://127.0.0.1:1",
                                            config=Config(retries={"max_attempts": 1}))
    store = S3Store(client, s3.name, "", conditional=True)
    for call in (lambda: store.put(KEY, _file(tmp_path, 10)[0]), lambda: store.stat(KEY),
                 lambda: store.open(KEY), lambda: list(store.list())):
        with pytest.raises(StoreUnavailable) as caught:
            call()
        assert caught.value.status == 503
    store.delete([KEY])  # logged, not raised: check --repair finds what stays
    with pytest.raises(OSError):
        store.prepare()


def test_peak_memory_stays_flat_for_a_large_put(s3, tmp_path):
    """A ~200 MB file put in parts raises the process's peak RSS by far less than its size."""
    src, md5 = _file(tmp_path, 200 * 1024 * 1024)
    script = f"""
import sys
sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})
from pathlib import Path
import boto3
from botocore.config import Config
from imgz.store.s3 import S3Store

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

client = boto3.session.Session().client("s3", endpoint_url={s3.endpoint!r},
                                        config=Config(s3={{"addressing_style": "path"}}))
store = S3Store(client, {s3.name!r}, {s3.prefix!r})
store.prepare()
small = Path({str(tmp_path / "small")!r})
small.write_bytes(b"x" * 100000)
store.put("2025/01/01/warm.png", small)
before = hwm()
store.put("2025/01/01/big.mp4", Path({str(src)!r}))
print(hwm() - before)
"""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, env=os.environ.copy())
    assert done.returncode == 0, done.stderr
    growth = int(done.stdout.strip())
    print(f"peak RSS growth for a 200 MiB put: {growth / 2**20:.1f} MiB")
    assert growth <= 32 * 1024 * 1024
    store = make_store(s3, s3.prefix)
    assert _md5_of(store, "2025/01/01/big.mp4") == md5


def test_objects_carry_their_type_and_with_a_public_url_a_bounded_lifetime(s3, tmp_path):
    plain = make_store(s3, s3.prefix)
    plain.put(KEY, _file(tmp_path, 10, "a")[0])
    head = s3.client.head_object(Bucket=s3.name, Key=s3.prefix + KEY)
    assert head["ContentType"] == "image/png" and "CacheControl" not in head
    public = make_store(s3, s3.prefix, cache_control=True)
    soon = datetime.now(timezone.utc) + timedelta(hours=1)
    public.put("2025/01/01/x.mp4", _file(tmp_path, 10, "b")[0], soon)
    public.put("2025/01/01/y.jpg", _file(tmp_path, 10, "c")[0])
    expiring = s3.client.head_object(Bucket=s3.name, Key=s3.prefix + "2025/01/01/x.mp4")
    assert expiring["ContentType"] == "video/mp4"
    max_age = int(expiring["CacheControl"].split("max-age=")[1])
    assert 3590 <= max_age <= 3600
    kept = s3.client.head_object(Bucket=s3.name, Key=s3.prefix + "2025/01/01/y.jpg")
    assert kept["CacheControl"] == "public, max-age=31536000, immutable"


def test_entries_give_the_objects_times(s3, tmp_path):
    store = make_store(s3, s3.prefix)
    store.put(KEY, _file(tmp_path, 10)[0])
    [(key, mtime_ns)] = list(store.entries())
    assert key == KEY
    assert abs(mtime_ns / 1e9 - datetime.now(timezone.utc).timestamp()) < 120


def test_stale_multipart_uploads_are_aborted(s3):
    store = make_store(s3, s3.prefix)
    name = s3.prefix + "2025/01/01/killed.mp4"
    s3.client.create_multipart_upload(Bucket=s3.name, Key=name)
    other = s3.server.bucket.fresh()
    s3.client.create_multipart_upload(Bucket=s3.name, Key=other.prefix + "x.mp4")
    assert store.abort_stale_puts(datetime.now(timezone.utc) - timedelta(hours=1)) == 0
    assert s3.unfinished() == [name]
    assert store.abort_stale_puts(datetime.now(timezone.utc) + timedelta(minutes=1)) == 1
    assert s3.unfinished() == []
    assert other.unfinished() == [other.prefix + "x.mp4"], "only under the store's prefix"


def test_the_accel_target_is_a_signed_path_of_the_object(s3, tmp_path):
    import requests

    store = make_store(s3, s3.prefix)
    store.put(KEY, _file(tmp_path, 1000)[0])
    target = store.accel_target(KEY)
    assert target.startswith(f"/{s3.name}/{s3.prefix}{KEY}?") and "X-Amz-Signature=" in target
    got = requests.get(s3.endpoint + target, headers={"Range": "bytes=0-9"}, timeout=10)
    assert got.status_code == 206 and len(got.content) == 10


def test_a_read_of_an_object_replaced_elsewhere_is_refused(s3, tmp_path):
    """What ``stat`` remembered is checked by each read: another process that deleted the key
    and put new bytes under it makes this one's read fail (then forget), never mix the two."""
    store = make_store(s3, s3.prefix)
    elsewhere = make_store(s3, s3.prefix)
    store.put(KEY, _file(tmp_path, 1000, "a")[0])
    assert store.stat(KEY).size == 1000
    elsewhere.delete([KEY])
    elsewhere.put(KEY, _file(tmp_path, 2000, "b")[0])
    with pytest.raises(FileNotFoundError):
        store.open(KEY)
    assert store.stat(KEY).size == 2000


def test_a_signed_path_is_made_again_once_half_its_time_is_gone(s3, tmp_path):
    from imgz.store.s3.sdk import Signer

    signer = Signer(s3.client, s3.name, seconds=2)
    first = signer.path(s3.prefix + "a.png")
    assert signer.path(s3.prefix + "a.png") == first, "within the first half: the same"
    time.sleep(1.1)
    again = signer.path(s3.prefix + "a.png")
    assert again != first and "X-Amz-Expires=2" in again
