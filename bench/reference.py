"""The servers imgz is measured against, each a small WSGI app under waitress on 127.0.0.1.

    .venv/bin/python bench/reference.py MODE --root DIR [--threads 8] [--max-mb 2000]

MODE is one of:
  reference  POST /upload: the upload streamed to disk with its md5, then only the media work of
             the contract: images decoded once (JPEG draft, reducing_gap) into the 500 px medium
             and the 320 px centre-cropped thumb; videos probed (``ffmpeg -i``), one frame taken at
             a quarter of the duration (``ffmpeg -ss T -i FILE -frames:v 1 frame.jpg``), thumb
             and medium made from it.
             Work files go under DIR/tmp and are removed after the answer.
  stripping  as reference, plus the contract's metadata rule for JPEG: the upload is stripped
             losslessly while it is written (imgz's own stripper) and the stored bytes get an
             md5 of their own. Not a target: it shows what imgz costs beyond that rule.
  store      POST /upload: streamed to disk with its md5, nothing else.
  sendfile   GET /images/<path>: Flask's send_from_directory over DIR.
  bare       GET /images/<path>: a plain WSGI function returning wsgi.file_wrapper over DIR.

It prints ``serving MODE on http://127.0.0.1:PORT`` on stderr when it listens.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import mimetypes
import os
import re
import shutil
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import imageio_ffmpeg
import waitress
from flask import Flask, Request, Response, request, send_from_directory
from PIL import Image, JpegImagePlugin
from werkzeug.security import safe_join

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from imgz.jpeg import JpegArrival  # noqa: E402

THUMB, MEDIUM = 320, 500
RESAMPLE = dict(resample=Image.LANCZOS, reducing_gap=3.0)
EXT = {"JPEG": "jpeg", "PNG": "png", "GIF": "gif", "WEBP": "webp"}
DURATION = re.compile(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")


class HashingFile:
    """A temp file that keeps the md5 and size of what is written to it; with ``strip``, a JPEG
    loses its metadata on the way (and the written bytes get their md5 too)."""

    def __init__(self, folder: Path, strip: bool = False) -> None:
        fd, name = tempfile.mkstemp(prefix="up-", dir=folder)
        self.path = Path(name)
        self.file = os.fdopen(fd, "w+b")
        self.md5 = hashlib.md5()
        self.size = 0
        self.arrival = JpegArrival(self.file.write, lambda header: True) if strip else None

    def write(self, chunk: bytes) -> int:
        self.md5.update(chunk)
        self.size += len(chunk)
        if self.arrival is not None:
            self.arrival.feed(chunk)
            return len(chunk)
        return self.file.write(chunk)

    def finish(self) -> dict:
        stripped = self.arrival.finish() if self.arrival is not None else None
        return {"stored_md5": stripped.md5} if stripped is not None else {}

    def __getattr__(self, name: str):
        return getattr(self.file, name)


def uploads_app(root: Path, process: bool, strip: bool = False) -> Flask:
    tmp = root / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)

    class StreamingRequest(Request):
        def _get_file_stream(self, total_content_length, content_type, filename=None,
                             content_length=None):
            stream = HashingFile(tmp, strip)
            self.environ.setdefault("bench.streams", []).append(stream)
            return stream

    app = Flask(__name__)
    app.request_class = StreamingRequest

    @app.post("/upload")
    def upload() -> Response:
        work = Path(tempfile.mkdtemp(prefix="work-", dir=tmp))
        streams = request.environ.get("bench.streams", [])
        try:
            part = request.files["source"]
            stream = part.stream
            extra = stream.finish()
            stream.file.close()
            answer = {"md5": stream.md5.hexdigest(), "size": stream.size, **extra}
            if process:
                answer.update(render(stream.path, work))
            return Response(json.dumps(answer), mimetype="application/json")
        finally:
            shutil.rmtree(work, ignore_errors=True)
            for stream in streams:
                stream.file.close()
                stream.path.unlink(missing_ok=True)

    return app


def render(src: Path, work: Path) -> dict:
    with open(src, "rb") as f:
        head = f.read(12)
    if head[4:8] == b"ftyp":
        return render_video(src, work)
    return render_image(src, work)


def _square(im: Image.Image, side: int) -> Image.Image:
    w, h = im.size
    c = min(w, h)
    box = ((w - c) // 2, (h - c) // 2, (w - c) // 2 + c, (h - c) // 2 + c)
    return im.crop(box) if c == side else im.resize((side, side), box=box, **RESAMPLE)


def render_image(src: Path, work: Path) -> dict:
    """The medium (500 px wide, when wider) and the thumb, from one decode."""
    with Image.open(src) as im:
        ext = EXT[im.format]
        w, h = im.size
        medium = (MEDIUM, max(1, math.floor(h * MEDIUM / w + 0.5))) if w > MEDIUM else None
        side = min(THUMB, w, h)
        from_medium = medium is not None and min(medium) >= THUMB
        params: dict = {}
        if ext == "jpeg":
            params = dict(quality=85, subsampling=JpegImagePlugin.get_sampling(im))
        elif ext == "png":
            params = dict(compress_level=1)
        if im.info.get("icc_profile") and ext != "gif":
            params["icc_profile"] = im.info["icc_profile"]
        animated = getattr(im, "is_animated", False)
        if animated:
            medium_im, thumb = _animation(im, medium, side, from_medium)
        else:
            if ext == "jpeg":
                need = max(Fraction(MEDIUM, w) if medium else Fraction(0), Fraction(side, min(w, h)))
                if need < 1:
                    im.draft(None, (math.ceil(w * need), math.ceil(h * need)))
            frame = im.convert("RGBA" if "transparency" in im.info else "RGB") \
                if im.mode in ("P", "1") else im
            medium_im = None
            if medium:
                medium_im = frame if frame.size == medium else frame.resize(medium, **RESAMPLE)
            thumb = _square(medium_im if from_medium else frame, side)
    sizes = {}
    if medium_im is not None:
        sizes["medium"] = _save(medium_im, work / f"medium.{ext}", ext, params)
    elif animated:
        # A small animation is its own medium.
        os.link(src, work / f"medium.{ext}")
    sizes["thumb"] = _save(thumb, work / f"thumb.{ext}", ext, params)
    return sizes


def _animation(im, medium, side, from_medium):
    """Every frame resized into an animated medium; the first frame as a still thumb."""
    frames, durations, thumb = [], [], None
    for index in range(im.n_frames):
        im.seek(index)
        frame = im.convert("RGBA")
        if medium:
            frames.append(frame.resize(medium, **RESAMPLE))
            durations.append(int(im.info.get("duration") or 0))
        if thumb is None:
            thumb = _square(frames[0] if medium and from_medium else frame, side)
            if thumb.getchannel("A").getextrema()[0] == 255:
                thumb = thumb.convert("RGB")
    animated = (frames, durations) if frames else None
    return animated, thumb


def _save(im, path: Path, ext: str, params: dict) -> int:
    if isinstance(im, tuple):
        frames, durations = im
        frames[0].save(path, ext.upper(), save_all=True, append_images=frames[1:],
                       duration=durations, loop=0, disposal=2, **params)
    else:
        im.save(path, "JPEG" if ext == "jpeg" else ext.upper(), **params)
    return path.stat().st_size


def render_video(src: Path, work: Path) -> dict:
    """Probe the header, take the frame at a quarter of the duration, thumb and medium from it."""
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    probe = subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-i", str(src)],
                           capture_output=True, text=True, errors="replace")
    match = DURATION.search(probe.stderr)
    if match is None:
        raise ValueError("no duration")
    h, m, s = match.groups()
    at = (int(h) * 3600 + int(m) * 60 + float(s)) / 4
    frame = work / "frame.jpeg"
    # The plain command, as the frame benchmark's bare ffmpeg runs it.
    subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-y",
                    "-ss", f"{at:.3f}", "-i", str(src), "-frames:v", "1", str(frame)],
                   check=True, capture_output=True)
    sizes = render_image(frame, work)
    sizes["frame"] = frame.stat().st_size
    return sizes


def files_app(root: Path):
    app = Flask(__name__)

    @app.get("/images/<path:relpath>")
    def image(relpath: str) -> Response:
        return send_from_directory(root, relpath)

    return app


def bare_app(root: Path):
    base = str(root)

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        target = safe_join(base, path[len("/images/"):]) if path.startswith("/images/") else None
        if target is None or not os.path.isfile(target):
            start_response("404 Not Found", [("Content-Length", "0")])
            return []
        f = open(target, "rb")
        size = os.fstat(f.fileno()).st_size
        mime = mimetypes.guess_type(target)[0] or "application/octet-stream"
        start_response("200 OK", [("Content-Type", mime), ("Content-Length", str(size))])
        return environ["wsgi.file_wrapper"](f, 64 * 1024)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["reference", "stripping", "store", "sendfile", "bare"])
    parser.add_argument("--root", required=True, help="work dir (uploads) or media dir (files)")
    parser.add_argument("--threads", type=int, default=8, help="waitress threads (default 8)")
    parser.add_argument("--max-mb", type=int, default=2000, help="largest request body in MB")
    args = parser.parse_args()
    root = Path(args.root).resolve()
    if args.mode in ("reference", "stripping", "store"):
        app = uploads_app(root, process=args.mode != "store", strip=args.mode == "stripping")
        # waitress spools large bodies with tempfile: on the work disk, as imgz does.
        tempfile.tempdir = str(root / "tmp")
    elif args.mode == "sendfile":
        app = files_app(root)
    else:
        app = bare_app(root)
    server = waitress.create_server(app, host="127.0.0.1", port=0, threads=args.threads,
                                    max_request_body_size=args.max_mb * 1_000_000,
                                    channel_timeout=120)
    print(f"reference: serving {args.mode} on http://127.0.0.1:{server.effective_port}",
          file=sys.stderr, flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGTERM, _interrupt)
    main()
