"""imgz on PostgreSQL + SeaweedFS against imgz on SQLite + the local disk, on the same machine in
the same run: uploads, one very large video to the bucket, file GETs through the app and through
nginx, and what one upload or GET costs the two engines.

Every imgz here is ``app.py serve`` in its own process; two compared servers differ only in the
backend pair their environment names.
"""
from __future__ import annotations

import http.client
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import compare
import engines
import figures
import inputs
import load
import nginxs3
import procs
from engines import scale_env
from report import Row, at_least, at_most, median, say

if TYPE_CHECKING:
    from run import Session


def part(name: str):
    """The function of a scale part, given the session it returns its rows."""
    import costs as costs_part
    import scale_migrate
    import twoprocs

    return {"scale-uploads": uploads, "scale-serving": serving, "scale-memory": memory,
            "two-procs": twoprocs.run, "scale-migrate": scale_migrate.run, "scale-costs": costs_part.run}[name]


def start(pool: procs.Pool, name: str, data: Path, log: Path, settings: dict[str, str],
          key: bool = True) -> tuple[procs.Child, str, str | None]:
    """``app.py serve`` with these settings on a free port; its URL and, when it made one (the
    first start on a database), the first key."""
    env = procs.clean_env(IMGZ_MIN_FREE_MB="0", **settings)
    child = pool.add(procs.Child(name, procs.imgz_command(data, 0), log, env, procs.ROOT))
    served = child.wait_for(r"serving .* on http://[^:]+:(\d+)", 60)
    made = child.wait_for(r"once\): (imgz_\w+)", 10).group(1) if key else None
    return child, f"http://{procs.HOST}:{served.group(1)}", made


def pair(s: Session, tag: str, **settings: str) -> dict[str, tuple[procs.Child, str, str]]:
    """Two servers with the same settings: 'scale' on a new database and bucket, 'embedded' on
    SQLite and its data dir."""
    _, url = s.engines.database()
    bucket = s.engines.bucket()
    common = {"IMGZ_THREADS": str(s.args.threads), **settings}
    found = {}
    for name, env in (("scale", scale_env(url, bucket, **common)), ("embedded", common)):
        found[name] = start(s.pool, f"{tag}-{name}", s.work / f"{tag}-{name}",
                            s.work / f"{tag}-{name}.log", env)
    say(f"imgz on PostgreSQL + SeaweedFS at {found['scale'][1]}, on SQLite + local disk at "
        f"{found['embedded'][1]}")
    return found


def upload_one(base: str, key: str, file: Path) -> dict:
    body = load.multipart(file)
    status, answer = load.post(base + "/api/1/upload", body.payload(), body.length,
                               body.content_type, {"X-API-Key": key})
    if status != 200:
        raise RuntimeError(f"uploading {file.name} to {base}: {status} {answer[:300]!r}")
    return json.loads(answer)["image"]


# ---------------------------------------------------------------------------------------------

def uploads(s: Session) -> list[Row]:
    ins = s.prepared()
    a = s.args
    servers = pair(s, "scale-uploads", IMGZ_MAX_UPLOAD_MB=str(compare.MAX_UPLOAD_MB))
    rows: list[Row] = []
    # CPU of every process an upload keeps busy: the machine is shared by the engines
    trees = {"scale": {"imgz": servers["scale"][0].pid, "SeaweedFS": s.engines.weed.proc.pid,
                       "PostgreSQL": engines.postmaster_pid(s.engines.pg)},
             "embedded": {"imgz": servers["embedded"][0].pid}}
    say(f"\n== scale uploads: PostgreSQL + SeaweedFS vs SQLite + local disk, concurrency "
        f"{a.concurrency}, {a.rounds} rounds of {a.upload_seconds:g} s per server")
    try:
        for label, file in (("JPEG 12 MP", ins.jpeg), ("PNG 1920x1080", ins.png)):
            body = load.multipart(file)
            payload = body.payload()

            cpu = {name: dict.fromkeys(trees[name], 0.0) for name in trees}
            done = dict.fromkeys(trees, 0)

            def run(name: str, seconds: float) -> load.RunResult:
                _, base, key = servers[name]
                before = {part: engines.tree_cpu(pid) for part, pid in trees[name].items()}
                result = load.upload_run(base + "/api/1/upload", body, {"X-API-Key": key},
                                         concurrency=a.concurrency, seconds=seconds,
                                         payload=payload)
                for part, pid in trees[name].items():
                    cpu[name][part] += engines.tree_cpu(pid) - before[part]
                done[name] += result.requests
                return result

            say(f"-- {label} ({file.stat().st_size / 1e6:.1f} MB)")
            rates = compare.rounds(["scale", "embedded"], run, count=a.rounds,
                                   seconds=a.upload_seconds, warmup=min(2.0, a.upload_seconds),
                                   unit="uploads/s")
            rows.append(at_least(f"upload {label}: PostgreSQL+S3 ÷ SQLite+local",
                                 compare.pair_ratio(rates["scale"], rates["embedded"]), 0.8))
            rows.append(Row(f"upload {label}: PostgreSQL+S3 / SQLite+local uploads/s",
                            f"{median(rates['scale']):.2f} / {median(rates['embedded']):.2f}"))
            per = {name: ", ".join(f"{part} {1000 * spent / max(done[name], 1):.0f}"
                                   for part, spent in cpu[name].items()) for name in cpu}
            say(f"  CPU ms per upload: PostgreSQL+S3: {per['scale']}; SQLite+local: "
                f"{per['embedded']}")
            rows.append(Row(f"upload {label}: CPU ms per upload, PostgreSQL+S3", per["scale"]))
            rows.append(Row(f"upload {label}: CPU ms per upload, SQLite+local", per["embedded"]))
    finally:
        for child, _, _ in servers.values():
            s.pool.stop(child)
    return rows


# ---------------------------------------------------------------------------------------------

def memory(s: Session) -> list[Row]:
    ins = s.prepared()
    mib = s.args.big_mib
    say(f"\n== scale memory: one upload of a video of at least {mib} MiB to the bucket")
    video = inputs.make_big_video(s.inputs_dir / f"big-{mib}.mp4", mib * inputs.MIB, log=say)
    size = video.stat().st_size
    sent = figures.md5_of(video)
    _, url = s.engines.database()
    bucket = s.engines.bucket()
    env = scale_env(url, bucket, IMGZ_MAX_UPLOAD_MB=str(size // 1_000_000 + 200),
                    IMGZ_FFMPEG_TIMEOUT="1800")
    child, base, key = start(s.pool, "scale-memory", s.work / "scale-memory",
                             s.work / "scale-memory.log", env)
    try:
        upload_one(base, key, ins.small_mp4)  # imports and first-use allocations come first
        time.sleep(1)
        reset = procs.reset_peak(child.pid)
        before = procs.kib(child.pid, "VmRSS" if reset else "VmHWM")
        body = load.multipart(video)
        started = time.perf_counter()
        status, answer = load.post(base + "/api/1/upload", body.chunks(), body.length,
                                   body.content_type, {"X-API-Key": key}, timeout=3600)
        took = time.perf_counter() - started
        hwm = procs.kib(child.pid, "VmHWM")
    finally:
        s.pool.stop(child)
    growth = (hwm - before) / 1024
    answered = stored = kept = "-"
    if status == 200:
        image = json.loads(answer)["image"]
        answered = image["source_checksum"] or image["checksum"]
        key_name = bucket.prefix + image["url"].split("/images/", 1)[1]
        stored = _object_md5(bucket, key_name)
        kept = image["checksum"]  # the stored file's (a video may be remuxed): the object's
    say(f"  {size / inputs.MIB:.0f} MiB in {took:.1f} s ({size / 1e6 / took:.0f} MB/s); HTTP "
        f"{status}; md5 sent {sent}, answered {answered}; stored file's checksum {kept}, md5 "
        f"of the object read back {stored}")
    say(f"  RSS before {before / 1024:.1f} MiB, peak {hwm / 1024:.1f} MiB"
        + ("" if reset else " (peak not resettable: since start)"))
    ok = status == 200 and answered == sent and kept == stored
    return [Row(f"S3 memory run {size / inputs.MIB:.0f} MiB video: answer",
                f"HTTP {status}, md5 {'ok' if ok else 'wrong'}", "200, md5 ok",
                "PASS" if ok else "MISS"),
            at_most("S3 memory run: peak RSS growth", growth, 32, "{:.1f}", "{:.0f}", " MiB"),
            Row("S3 memory run: upload speed", f"{size / 1e6 / took:.0f} MB/s")]


def _object_md5(bucket, key: str) -> str:
    import hashlib

    digest = hashlib.md5()
    body = bucket.client.get_object(Bucket=bucket.name, Key=key)["Body"]
    for chunk in body.iter_chunks(1 << 20):
        digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------

def serving(s: Session) -> list[Row]:
    ins = s.prepared()
    a = s.args
    servers = pair(s, "scale-serving")
    rows: list[Row] = []
    started: list[procs.Child] = []
    try:
        rels = {name: upload_one(base, key, ins.small_mp4)["url"].split("/images/", 1)[1]
                for name, (_, base, key) in servers.items()}
        scale_url = f"{servers['scale'][1]}/images/{rels['scale']}"
        whole = check_file(scale_url, "imgz on S3")
        size = len(whole)
        say(f"\n== scale serving: MP4 3 MB ({size / 1e6:.2f} MB) through S3 vs local disk, "
            f"concurrency {a.concurrency}, {a.rounds} rounds of {a.get_seconds:g} s, "
            f"{'wrk' if s.use_wrk else 'Python client'}")
        say("  imgz on S3: whole GET, a range (206, Content-Range), If-None-Match and "
            "If-Modified-Since (304) answered right")
        if check_file(f"{servers['embedded'][1]}/images/{rels['embedded']}", "imgz local") != whole:
            raise RuntimeError("the two servers stored different bytes for one upload")
        urls = {name: f"{servers[name][1]}/images/{rels[name]}" for name in servers}

        def run(name: str, seconds: float) -> load.RunResult:
            return load.get_run(urls[name], concurrency=a.concurrency, seconds=seconds,
                                use_wrk=s.use_wrk)

        rates = compare.rounds(["scale", "embedded"], run, count=a.rounds, seconds=a.get_seconds,
                               warmup=1.0, unit="req/s")
        rows.append(at_least("serve MP4 3 MB: through S3 ÷ local disk",
                             compare.pair_ratio(rates["scale"], rates["embedded"]), 0.5))
        rows.append(Row("serve MP4 3 MB: through S3 / local disk req/s",
                        f"{median(rates['scale']):,.0f} / {median(rates['embedded']):,.0f}"))
        for child, _, _ in servers.values():
            s.pool.stop(child)
        if a.no_nginx:
            return rows
        rows += _nginx(s, ins.small_mp4, started)
    finally:
        for child, _, _ in servers.values():
            s.pool.stop(child)
        for child in started:
            s.pool.stop(child)
    return rows


def _nginx(s: Session, clip: Path, started: list[procs.Child]) -> list[Row]:
    a = s.args
    _, url = s.engines.database()
    bucket = s.engines.bucket()
    env = scale_env(url, bucket, IMGZ_ACCEL="nginx", IMGZ_TRUST_PROXY="1",
                    IMGZ_THREADS=str(a.threads))
    child, base, key = start(s.pool, "scale-accel", s.work / "scale-accel",
                             s.work / "scale-accel.log", env)
    started.append(child)
    found = nginxs3.start(s.pool, s.work / "nginx-s3", base, bucket)
    if found is None:
        say("nginx is not installed: left out")
        return [Row("serve MP4 3 MB: nginx + S3", "nginx absent", "", "skip")]
    started.append(found[0])
    front = found[1]
    rel = upload_one(front, key, clip)["url"].split("/images/", 1)[1]
    through = f"{front}/images/{rel}"
    whole = check_file(through, "nginx + imgz on S3")
    direct = front + nginxs3.direct_path(bucket, bucket.prefix + rel)
    if check_file(direct, "nginx proxying the bucket", conditional=False) != whole:
        raise RuntimeError("nginx proxying the bucket answered other bytes than imgz")
    say(f"\n== scale serving through nginx (README's S3 location) vs the same nginx proxying "
        f"the bucket with one presigned URL, {a.rounds} rounds of {a.get_seconds:g} s")
    urls = {"accel": through, "direct": direct}

    def run(name: str, seconds: float) -> load.RunResult:
        return load.get_run(urls[name], concurrency=a.concurrency, seconds=seconds,
                            use_wrk=s.use_wrk)

    rates = compare.rounds(["accel", "direct"], run, count=a.rounds, seconds=a.get_seconds,
                           warmup=1.0, unit="req/s")
    return [at_least("serve MP4 3 MB: nginx+imgz on S3 ÷ nginx proxying the bucket",
                     compare.pair_ratio(rates["accel"], rates["direct"]), 0.9),
            Row("serve MP4 3 MB: nginx+imgz / nginx→bucket req/s",
                f"{median(rates['accel']):,.0f} / {median(rates['direct']):,.0f}")]


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    host, port, path = procs.split_url(url)
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def check_file(url: str, name: str, conditional: bool = True) -> bytes:
    """A whole GET, a range and (unless told not to) the two conditional GETs, checked; the
    file's bytes."""
    status, headers, whole = get(url)
    if status != 200 or len(whole) != int(headers.get("content-length", -1)):
        raise RuntimeError(f"{name}: GET {url}: HTTP {status}, {len(whole)} bytes")
    size = len(whole)
    first, last = size // 3, size // 3 + 99_999
    status, got, part = get(url, {"Range": f"bytes={first}-{last}"})
    if (status != 206 or part != whole[first:last + 1]
            or got.get("content-range") != f"bytes {first}-{last}/{size}"):
        raise RuntimeError(f"{name}: range: HTTP {status}, {got.get('content-range')!r}, "
                           f"{len(part)} bytes")
    if conditional:
        for condition in ({"If-None-Match": headers.get("etag", "")},
                          {"If-Modified-Since": headers.get("last-modified", "")}):
            status, _, body = get(url, condition)
            if status != 304 or body:
                raise RuntimeError(f"{name}: {condition}: HTTP {status}, {len(body)} bytes")
    return whole
