"""The comparisons run in turn (A B A B ...): uploads against the reference and store-only apps,
file GETs against a bare wsgi.file_wrapper server, Flask's send_file and nginx."""
from __future__ import annotations

import hashlib
import http.client
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import load
import procs
from report import Row, at_least, median, say

if TYPE_CHECKING:
    from run import Session

MAX_UPLOAD_MB = 2000
UPLOAD_CASES = ("png", "jpeg", "mp4", "gif")


def rounds(names: list[str], run: Callable[[str, float], load.RunResult], *, count: int,
           seconds: float, warmup: float, unit: str, alternate: bool = False) -> dict[str, list[float]]:
    """Warm each server up, then run them in turn, round after round; the rates per name. With
    ``alternate``, every other round runs them in the reverse order (A B, B A, ...), so that
    going first or second in a round favours neither."""
    for name in names:
        run(name, warmup)
    rates: dict[str, list[float]] = {name: [] for name in names}
    for i in range(count):
        parts = []
        order = names[::-1] if alternate and i % 2 else names
        for name in order:
            result = run(name, seconds)
            if result.errors:
                raise RuntimeError(f"{name}: {result.errors} failed requests; first: "
                                   f"{result.first_error}")
            rates[name].append(result.rate)
            parts.append(f"{name} {result.rate:,.2f} ({result.requests} in {result.seconds:.1f} s)")
        first, second = rates[names[0]][-1], rates[names[1]][-1]
        ratio = first / second if second else float("nan")
        say(f"  round {i + 1}: " + ", ".join(parts) + f"; {names[0]} ÷ {names[1]} {ratio:.2f}")
    say(f"  median {unit}: " + ", ".join(f"{n} {median(rates[n]):,.2f}" for n in names))
    return rates


def pair_ratio(a: list[float], b: list[float]) -> float:
    """The median of the per-round ratios: each pair ran back to back, under the same weather."""
    return median([x / y for x, y in zip(a, b) if y])


def uploads(s: Session) -> list[Row]:
    ins = s.prepared()
    _, base, key = s.imgz()
    a = s.args
    rows: list[Row] = []
    ref, ref_url = procs.start_reference(s.pool, "reference", s.work / "reference",
                                         s.work / "reference.log", threads=a.threads,
                                         max_mb=MAX_UPLOAD_MB)
    store, store_url = procs.start_reference(s.pool, "store", s.work / "store",
                                             s.work / "store.log", threads=a.threads,
                                             max_mb=MAX_UPLOAD_MB)
    stripping, stripping_url = procs.start_reference(s.pool, "stripping", s.work / "stripping",
                                                     s.work / "stripping.log", threads=a.threads,
                                                     max_mb=MAX_UPLOAD_MB)
    targets = {"imgz": (base + "/api/1/upload", {"X-API-Key": key}),
               "reference": (ref_url + "/upload", {}), "store": (store_url + "/upload", {}),
               "stripping": (stripping_url + "/upload", {})}
    cases = [
        ("png", "PNG 1920x1080", ins.png, [("reference", 0.9)]),
        ("jpeg", "JPEG 12 MP", ins.jpeg, [("reference", 0.9), ("store", 0.4), ("stripping", None)]),
        ("mp4", "MP4 30 s 720p", ins.mp4, [("reference", 0.9)]),
        ("gif", "GIF 100 frames", ins.gif, [("reference", None)]),
    ]
    baseline = s.baseline()
    if baseline is not None:
        # the same uploads to imgz as of --baseline REV: this tree must keep 0.95 of its rate
        targets["baseline"] = (baseline[1] + "/api/1/upload", {"X-API-Key": baseline[2]})
        cases = [(case, label, file, [("baseline", 0.95), *goals])
                 for case, label, file, goals in cases]
    say(f"\n== uploads: concurrency {a.concurrency}, {a.rounds} rounds of {a.upload_seconds:g} s "
        f"per server, Python client (http.client threads, body sent from memory)")
    try:
        for case, label, file, goals in cases:
            if case not in a.cases:
                continue
            names = ["imgz"] + [name for name, _ in goals]
            body = load.multipart(file)
            payload = body.payload()

            def run(name: str, seconds: float) -> load.RunResult:
                url, headers = targets[name]
                return load.upload_run(url, body, headers, concurrency=a.concurrency,
                                       seconds=seconds, payload=payload)

            say(f"-- {label} ({file.stat().st_size / 1e6:.1f} MB)")
            rates = rounds(names, run, count=a.rounds, seconds=a.upload_seconds,
                           warmup=min(2.0, a.upload_seconds), unit="uploads/s")
            for name, goal in goals:
                figure = f"upload {label}: imgz ÷ {name}"
                ratio = pair_ratio(rates["imgz"], rates[name])
                rows.append(at_least(figure, ratio, goal) if goal else Row(figure, f"{ratio:.3f}"))
            for name in names:
                rows.append(Row(f"upload {label}: {name} uploads/s", f"{median(rates[name]):.2f}"))
    finally:
        s.pool.stop(ref)
        s.pool.stop(store)
        s.pool.stop(stripping)
    return rows


def serving(s: Session) -> list[Row]:
    ins = s.prepared()
    _, base, key = s.imgz()
    a = s.args
    rows: list[Row] = []
    relpaths = {}
    for label, file in (("JPEG 200 KB", ins.small_jpeg), ("MP4 3 MB", ins.small_mp4)):
        body = load.multipart(file)
        status, answer = load.post(base + "/api/1/upload", body.payload(), body.length,
                                   body.content_type, {"X-API-Key": key})
        if status != 200:
            raise RuntimeError(f"uploading {file.name} to imgz: {status} {answer[:300]!r}")
        relpaths[label] = json.loads(answer)["image"]["url"].split("/images/", 1)[1]
    media = s.work / "data" / "images"
    servers = {"imgz": base}
    started = []
    try:
        for mode in ("bare", "sendfile"):
            child, url = procs.start_reference(s.pool, mode, media, s.work / f"{mode}.log",
                                               threads=a.threads, max_mb=1)
            started.append(child)
            servers[mode] = url
        if not a.no_nginx:
            found = procs.start_nginx(s.pool, media, s.work / "nginx")
            if found is None:
                say("nginx is not installed: left out")
            else:
                started.append(found[0])
                servers["nginx"] = found[1]
        tool = "wrk (1 thread)" if s.use_wrk else "Python client (http.client threads; no wrk)"
        say(f"\n== serving: concurrency {a.concurrency}, {a.rounds} rounds of {a.get_seconds:g} s "
            f"per server, {tool}")
        names = [n for n in ("imgz", "bare", "nginx", "sendfile") if n in servers]
        for label, goal in (("JPEG 200 KB", 0.8), ("MP4 3 MB", 0.9)):
            rel = relpaths[label]
            size = (media / rel).stat().st_size
            for name in names:
                check_same_bytes(servers[name] + "/images/" + rel, media / rel, name)

            def run(name: str, seconds: float) -> load.RunResult:
                return load.get_run(servers[name] + "/images/" + rel, concurrency=a.concurrency,
                                    seconds=seconds, use_wrk=s.use_wrk)

            say(f"-- {label} ({size / 1e6:.2f} MB, /images/{rel})")
            rates = rounds(names, run, count=a.rounds, seconds=a.get_seconds, warmup=1.0,
                           unit="req/s")
            rows.append(at_least(f"serve {label}: imgz ÷ bare file_wrapper",
                                 pair_ratio(rates["imgz"], rates["bare"]), goal))
            if "nginx" in rates:
                rows.append(Row(f"serve {label}: imgz ÷ nginx",
                                f"{pair_ratio(rates['imgz'], rates['nginx']):.3f}"))
            rows.append(Row(f"serve {label}: send_file ÷ bare file_wrapper",
                            f"{pair_ratio(rates['sendfile'], rates['bare']):.3f}"))
            for name in names:
                r = median(rates[name])
                rows.append(Row(f"serve {label}: {name} req/s",
                                f"{r:,.0f} ({r * size / 1e6:,.0f} MB/s)"))
        rows.append(Row("serving client", "wrk, 1 thread" if s.use_wrk else "Python (no wrk)"))
    finally:
        for child in started:
            s.pool.stop(child)
    return rows


def check_same_bytes(url: str, path: Path, name: str) -> None:
    """One GET first: a server answering anything but the stored file would make its rate moot."""
    host, port, rel = procs.split_url(url)
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request("GET", rel)
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    if response.status != 200 or hashlib.md5(body).digest() != hashlib.md5(path.read_bytes()).digest():
        raise RuntimeError(f"{name} did not serve {path.name} as stored (HTTP {response.status}, "
                           f"{len(body)} bytes)")
