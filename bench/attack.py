"""Latency of pages and files while 1,000 sockets attack and 20 uploads are in flight.

Starts imgz on 127.0.0.1, then for a bounded run (30 s by default) holds:

- 1,000 attack sockets from 20 loopback addresses (127.0.1.1-20, 50 each, under the
  per-address cap): half sent half a request line and wait, half drip one byte every 2 s;
  a socket the server closes is opened again at once, as an attacker would;
- 20 keyed uploads in flight from 127.0.0.1, each a 4000x3000 JPEG made with Pillow;

and measures a fresh ``GET /`` and a fresh file GET, one after another on new connections,
printing p50 and p99 against the targets (p50 <= 50 ms, p99 <= 200 ms) as PASS or MISS.
Loopback only; everything it starts is stopped at the end.

Then, unless ``--latency-only``, the two figures of ``bench/work_costs.py``: the peak memory of
the work for the largest animations the defaults accept, and the most CPU one guest upload can
cost.

    .venv/bin/python bench/attack.py [--seconds 30] [--sockets 1000] [--uploads 20] [--latency-only]
"""
from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import resource
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import multipart, post  # noqa: E402
from procs import HOST, Pool, split_url, start_imgz  # noqa: E402

TARGET_P50 = 0.050
TARGET_P99 = 0.200
ADDRESSES = [f"127.0.1.{i}" for i in range(1, 21)]
DRIP_EVERY = 2.0
HALF = b"GET / HT"
DRIP = b"GET /?drip HTTP/1.1\r\nHost: x\r\n"


def heavy_jpeg(path: Path) -> Path:
    """A 4000x3000 JPEG with detail enough to be costly to decode and resize."""
    from PIL import Image, ImageFilter

    noise = Image.effect_noise((1000, 750), 60).resize((4000, 3000)).filter(ImageFilter.GaussianBlur(1))
    gradient = Image.linear_gradient("L").resize((4000, 3000))
    picture = Image.merge("RGB", (noise, gradient, noise.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    picture.save(path, "JPEG", quality=90)
    return path


class Attack:
    """The attack sockets, kept at their count by a thread that drips and reopens."""

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.socks: list[tuple[socket.socket | None, bool, int]] = []  # socket, drips, bytes sent
        self.reopened = 0
        self.refused = 0
        self._stop = threading.Event()
        for i in range(count):
            self.socks.append(self._open(ADDRESSES[i % len(ADDRESSES)], drips=i % 2 == 1))
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _open(self, source: str, drips: bool) -> tuple[socket.socket | None, bool, int]:
        try:
            sock = socket.create_connection((HOST, self.port), timeout=5, source_address=(source, 0))
            sock.sendall(DRIP[:1] if drips else HALF)
            sock.setblocking(False)
            return sock, drips, 1
        except OSError:
            self.refused += 1
            return None, drips, 0

    def _alive(self, sock: socket.socket) -> bool:
        try:
            return sock.recv(4096, socket.MSG_PEEK) != b""
        except BlockingIOError:
            return True
        except OSError:
            return False

    def _run(self) -> None:
        while not self._stop.wait(DRIP_EVERY):
            for i, (sock, drips, sent) in enumerate(self.socks):
                if self._stop.is_set():
                    return
                source = ADDRESSES[i % len(ADDRESSES)]
                if sock is not None and self._alive(sock):
                    if drips:
                        with contextlib.suppress(OSError):
                            sock.send(DRIP[sent % len(DRIP):sent % len(DRIP) + 1])
                            self.socks[i] = (sock, drips, sent + 1)
                    continue
                if sock is not None:
                    sock.close()
                self.reopened += 1
                self.socks[i] = self._open(source, drips)

    def held(self) -> int:
        return sum(1 for sock, _, _ in self.socks if sock is not None)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for sock, _, _ in self.socks:
            if sock is not None:
                sock.close()


def uploads(url: str, key: str, jpeg: Path, count: int,
            stop: threading.Event) -> tuple[dict[str, int], list[threading.Thread]]:
    """``count`` threads uploading the JPEG with the key, one after another, until stopped."""
    body = multipart(jpeg)
    payload = body.payload()
    statuses: dict[str, int] = {}
    lock = threading.Lock()

    def worker() -> None:
        while not stop.is_set():
            try:
                status, _ = post(url + "/api/1/upload", payload, len(payload), body.content_type,
                                 {"X-API-Key": key}, timeout=120)
                name = str(status)
            except (OSError, http.client.HTTPException) as exc:
                name = type(exc).__name__
            with lock:
                statuses[name] = statuses.get(name, 0) + 1

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    return statuses, threads


def fresh_get(url: str) -> tuple[float, int | str]:
    host, port, path = split_url(url)
    started = time.perf_counter()
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        result: int | str = response.status
    except (OSError, http.client.HTTPException) as exc:
        result = type(exc).__name__
    finally:
        conn.close()
    return time.perf_counter() - started, result


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def report(name: str, samples: list[tuple[float, int | str]]) -> bool:
    good = [t for t, status in samples if status == 200]
    bad = len(samples) - len(good)
    if not good:
        print(f"{name:10s} no answer at all ({bad} failed)")
        return False
    p50, p99 = statistics.median(good), percentile(good, 0.99)
    ok = p50 <= TARGET_P50 and p99 <= TARGET_P99 and not bad
    print(f"{name:10s} n={len(samples):5d} failed={bad:3d}  p50 {p50 * 1000:7.1f} ms "
          f"({'PASS' if p50 <= TARGET_P50 else 'MISS'} <= {TARGET_P50 * 1000:.0f})  "
          f"p99 {p99 * 1000:7.1f} ms ({'PASS' if p99 <= TARGET_P99 else 'MISS'} <= {TARGET_P99 * 1000:.0f})")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--uploads", type=int, default=20)
    parser.add_argument("--latency-only", action="store_true",
                        help="leave out the animation memory and guest CPU figures")
    args = parser.parse_args()
    latency = _latency(args)
    if args.latency_only:
        return latency
    import work_costs

    with tempfile.TemporaryDirectory(prefix="imgz-work-") as tmp:
        memory = work_costs.animation_memory(Path(tmp))
        cpu = work_costs.guest_cpu(Path(tmp))
    return 0 if latency == 0 and memory and cpu else 1


def _latency(args: argparse.Namespace) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    pool = Pool()
    with tempfile.TemporaryDirectory(prefix="imgz-attack-") as tmp:
        work = Path(tmp)
        try:
            jpeg = heavy_jpeg(work / "heavy.jpg")
            print(f"upload body: {jpeg.stat().st_size / 1e6:.1f} MB JPEG 4000x3000")
            child, url, key = start_imgz(pool, work / "data", work / "imgz.log")
            body = multipart(jpeg)
            status, answer = post(url + "/api/1/upload", body.payload(), body.length, body.content_type,
                                  {"X-API-Key": key, "Accept": "application/json"})
            assert status == 200, answer[:300]
            file_url = json.loads(answer)["image"]["thumb"]["url"]
            file_path = "/" + file_url.split("/", 3)[3]

            attack = Attack(split_url(url)[1], args.sockets)
            print(f"attack: {attack.held()} sockets held from {len(ADDRESSES)} addresses "
                  f"({attack.refused} refused at once)")
            stop = threading.Event()
            statuses, threads = uploads(url, key, jpeg, args.uploads, stop)
            time.sleep(2)  # the uploads are in flight
            samples: dict[str, list[tuple[float, int | str]]] = {"GET /": [], "file GET": []}
            deadline = time.monotonic() + args.seconds
            while time.monotonic() < deadline:
                samples["GET /"].append(fresh_get(url + "/"))
                samples["file GET"].append(fresh_get(url + file_path))
            held = attack.held()
            stop.set()
            attack.stop()
            for thread in threads:
                thread.join(130)
            print(f"run: {args.seconds:.0f} s; attack sockets held at the end {held}, reopened after "
                  f"the server closed them {attack.reopened}; uploads by answer {statuses}")
            results = [report(name, got) for name, got in samples.items()]
            return 0 if all(results) else 1
        finally:
            pool.stop_all()


if __name__ == "__main__":
    sys.exit(main())
