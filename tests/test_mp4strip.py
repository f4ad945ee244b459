"""MP4 and MOV container metadata blanked while the upload is written (imgz/mp4strip.py): the
walk itself fed in pieces of every size, hostile box structures, and uploads end to end."""
from __future__ import annotations

import hashlib
import random
import re
import struct
import subprocess
from pathlib import Path

import imageio_ffmpeg
import pytest

import media as m
from contract import assert_error, assert_upload_ok
from test_video import SUBTITLE, crowded_clip, ffmpeg_header, streams
from imgz import mp4strip, spool, video
from imgz.mp4strip import Mp4Stripper

LOCATION = "+48.8584+002.2945/"
SECRETS = [b"+48.8584", b"loci", b"\xa9xyz", b"ISO6709", b"Secret title", b"Secret comment",
           b"Phone cam", b"secretstream"]
TIMEOUT = 30.0


def make(tmp_path: Path, fmt: str = "mp4", *, faststart: bool = False, apple: bool = False,
         name: str = "in") -> bytes:
    """A short clip with a location, a title and a comment in its container and tags on its
    streams, as a phone's; the index (moov) after the media data unless ``faststart``."""
    out = tmp_path / f"{name}.{fmt}"
    tags = (["-metadata", "com.apple.quicktime.location.ISO6709=+48.8584+002.2945+035.000/",
             "-metadata", "com.apple.quicktime.title=Secret title", "-movflags", "use_metadata_tags"]
            if apple else
            ["-metadata", f"location={LOCATION}", "-metadata", "title=Secret title",
             "-metadata", "comment=Secret comment"])
    if faststart:
        tags += ["-movflags", "+faststart"] if not apple else ["-movflags", "+faststart+use_metadata_tags"]
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y",
                    "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=10",
                    "-f", "lavfi", "-i", "sine=duration=1", "-frames:v", "10",
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
                    *tags, "-metadata:s:v", "handler_name=Phone cam",
                    "-metadata:s:v", "title=secretstream", "-metadata:s:v", "language=fra",
                    "-f", fmt, str(out)], check=True, capture_output=True, timeout=60)
    return out.read_bytes()


def strip(data: bytes, pieces: int | None = None, seed: int = 1) -> tuple[bytes, mp4strip.Cleaned, int]:
    """Feed data in pieces of random sizes (``pieces`` = one size for all); return what was
    written, the result, and the most the walker ever held."""
    out = bytearray()
    walker = Mp4Stripper(out.extend)
    rnd = random.Random(seed)
    held = 0
    at = 0
    while at < len(data):
        size = pieces or rnd.choice([1, 2, 7, 8, 15, 16, 17, 90, 1000, 65536])
        walker.feed(data[at:at + size])
        at += size
        held = max(held, len(walker._buf))
    cleaned = walker.finish()
    return bytes(out), cleaned, held


def decodes(path: Path) -> bool:
    result = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path),
                             "-f", "null", "-"], capture_output=True, timeout=60)
    return result.returncode == 0 and not result.stderr


CASES = [("mp4", False, False), ("mp4", True, False), ("mov", False, False), ("mov", True, False),
         ("mov", False, True), ("mp4", True, True)]


@pytest.mark.parametrize("fmt, faststart, apple", CASES,
                         ids=[f"{f}{'-faststart' if s else '-moov-last'}{'-apple' if a else ''}"
                              for f, s, a in CASES])
def test_metadata_is_blanked_in_place(tmp_path, fmt, faststart, apple):
    data = make(tmp_path, fmt, faststart=faststart, apple=apple)
    assert (data.index(b"moov") < data.index(b"mdat")) == faststart
    assert any(secret in data for secret in SECRETS)
    out, cleaned, held = strip(data)
    assert len(out) == len(data), "boxes are blanked where they are: every offset stays"
    assert [secret for secret in SECRETS if secret in out] == []
    assert cleaned.changed and not cleaned.needs_remux
    assert cleaned.handlers == ("vide", "soun")
    assert cleaned.md5 == hashlib.md5(out).hexdigest()
    assert held <= 90
    stored = tmp_path / f"stored.{fmt}"
    stored.write_bytes(out)
    header = ffmpeg_header(stored)
    assert "location" not in header.lower() and "ecret" not in header and "Phone" not in header
    assert "creation_time" not in header and "(fra)" not in header
    assert streams(header) == ["Video", "Audio"]
    assert decodes(stored)
    # the title and description are read from the metadata set aside as from the upload
    upload = tmp_path / f"upload.{fmt}"
    upload.write_bytes(data)
    read = video.probe_video(upload, fmt, timeout=TIMEOUT)
    assert video.read_tags(cleaned.tags, tmp_path, timeout=TIMEOUT) == (read.title, read.description)
    if not apple:  # the title of Apple's keys is not read (it never was)
        assert (read.title, read.description) == ("Secret title", "Secret comment")


def test_the_pieces_do_not_change_the_result(tmp_path):
    data = make(tmp_path, "mp4")
    whole = strip(data, pieces=len(data))
    assert strip(data, pieces=1)[:2] == whole[:2]
    for seed in range(5):
        assert strip(data, seed=seed)[:2] == whole[:2]


def test_a_stripped_file_strips_to_itself(tmp_path):
    once, cleaned, _ = strip(m.clip("mp4"))
    assert cleaned.changed  # the encoder's name and the times went
    twice, again, _ = strip(once)
    assert twice == once and not again.changed and again.md5 == hashlib.md5(once).hexdigest()


@pytest.mark.parametrize("faststart", [False, True], ids=["moov-last", "faststart"])
def test_a_large_file_is_hashed_right_beside_the_writing(tmp_path, faststart):
    """Past the first MiBs the bytes are hashed on another thread, in order; the upload's md5
    and the stored file's are one until the first byte that changes (the index, at the end)."""
    data = make(tmp_path, "mp4", faststart=faststart)
    filler = box(b"free", random.Random(3).randbytes(12 << 20))
    big = data[:32] + filler + data[32:]
    out, cleaned, _ = strip(big)
    assert cleaned.md5 == hashlib.md5(out).hexdigest() and not cleaned.needs_remux
    writer = spool.upload_writer(tmp_path, 10**8, 100, False)
    for at in range(0, len(big), 1 << 20):
        writer.write(big[at:at + (1 << 20)])
    written = writer.finish()
    writer.close()
    assert writer.md5 == hashlib.md5(big).hexdigest()
    assert written.md5 == hashlib.md5(writer.path.read_bytes()).hexdigest() == cleaned.md5
    writer.discard()


# ---------------------------------------------------------------------------------------------
# Large offsets: co64 chunk offsets and a 64-bit mdat size

def _boxes(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int, int]]:
    """(type, start, header size, end) of the boxes between start and end."""
    found = []
    while start < end:
        size, kind = struct.unpack(">I4s", data[start:start + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[start + 8:start + 16])[0], 16
        found.append((kind, start, header, start + size))
        start += size
    return found


def _to_co64(data: bytes, start: int, end: int) -> bytes:
    """The boxes between start and end again, each stco turned into a co64."""
    out = bytearray()
    for kind, at, header, stop in _boxes(data, start, end):
        if kind in (b"moov", b"trak", b"mdia", b"minf", b"stbl"):
            inner = _to_co64(data, at + header, stop)
            out += struct.pack(">I4s", 8 + len(inner), kind) + inner
        elif kind == b"stco":
            count = struct.unpack(">I", data[at + 12:at + 16])[0]
            offsets = struct.unpack(f">{count}I", data[at + 16:at + 16 + 4 * count])
            body = data[at + 8:at + 16] + struct.pack(f">{count}Q", *offsets)
            out += struct.pack(">I4s", 8 + len(body), b"co64") + body
        else:
            out += data[at:stop]
    return bytes(out)


def large_offsets(data: bytes) -> bytes:
    """A moov-last file rewritten with co64 offsets and its mdat under a 64-bit size (taking the
    8-byte free box ffmpeg writes before it, so no sample moves)."""
    top = _boxes(data, 0, len(data))
    kinds = [kind for kind, *_ in top]
    assert kinds == [b"ftyp", b"free", b"mdat", b"moov"], kinds
    (_, _, _, ftyp_end), _, (_, mdat_at, _, mdat_end), (_, moov_at, _, moov_end) = top
    mdat = b"\x00\x00\x00\x01mdat" + struct.pack(">Q", mdat_end - mdat_at + 8) + data[mdat_at + 8:mdat_end]
    return data[:ftyp_end] + mdat + _to_co64(data, moov_at, moov_end)


def test_co64_and_64_bit_sizes(tmp_path):
    data = large_offsets(make(tmp_path, "mp4"))
    assert b"co64" in data and b"stco" not in data
    source = tmp_path / "large.mp4"
    source.write_bytes(data)
    assert decodes(source), "the rewritten test file plays"
    out, cleaned, _ = strip(data)
    assert len(out) == len(data) and not cleaned.needs_remux
    assert [secret for secret in SECRETS if secret in out] == []
    stored = tmp_path / "stored.mp4"
    stored.write_bytes(out)
    assert decodes(stored) and "location" not in ffmpeg_header(stored).lower()


# ---------------------------------------------------------------------------------------------
# Tracks that must go: the walk says so, and the upload is remuxed

@pytest.mark.parametrize("fmt, tracks", [("mp4", dict(subtitle=True)), ("mov", dict(subtitle=False, timecode=True)),
                                         ("mp4", dict(subtitle=True, chapters=True))],
                         ids=["mp4-subtitle", "mov-timecode", "mp4-chapters"])
def test_a_track_that_must_go_asks_for_a_remux(tmp_path, fmt, tracks):
    data = crowded_clip(tmp_path, fmt, **tracks)
    out, cleaned, _ = strip(data)
    assert cleaned.needs_remux
    assert set(cleaned.handlers) - {"vide", "soun"}
    assert b"secretstream" not in out  # what could be blanked already was


# ---------------------------------------------------------------------------------------------
# Hostile structures: never a crash, never unbounded memory; the walk stops and asks for ffmpeg

def box(kind: bytes, payload: bytes = b"", size: int | None = None) -> bytes:
    return struct.pack(">I4s", 8 + len(payload) if size is None else size, kind) + payload


FTYP = box(b"ftyp", b"isom\x00\x00\x02\x00isomiso2mp41")
HOSTILE = {
    "huge-top-level-size": FTYP + box(b"mdat", bytes(100), size=0xFFFFFFF0),
    "64-bit-size-too-small": FTYP + b"\x00\x00\x00\x01mdat" + struct.pack(">Q", 4) + bytes(64),
    "64-bit-size-huge": FTYP + b"\x00\x00\x00\x01mdat" + struct.pack(">Q", 1 << 62) + bytes(64),
    "size-below-header": FTYP + box(b"moov", size=4) + bytes(32),
    "child-past-parent": FTYP + box(b"moov", box(b"trak", box(b"tkhd", bytes(84)), size=500)),
    "size-zero-inside": FTYP + box(b"moov", box(b"udta", b"\xa9xyz+48.8584", size=0) + bytes(8)),
    "nested-moov": FTYP + (lambda n: b"".join(struct.pack(">I4s", 8 * (n - i), b"moov")
                                              for i in range(n)))(5000),
    "nested-udta": FTYP + box(b"moov", b"".join(struct.pack(">I4s", 8 * (3000 - i), b"udta")
                                                for i in range(3000))),
    "truncated-header": FTYP + b"\x00\x00\x00",
    "truncated-peek": FTYP + box(b"moov", box(b"mvhd", bytes(100)))[:60],
    "cmov": FTYP + box(b"moov", box(b"cmov", bytes(40))),
    # each box is 8 bytes: the count allowed grows by one every BYTES_PER_BOX, these by 64
    "many-boxes": FTYP + box(b"free") * (mp4strip.MAX_BOXES * 2),
    "traf-past-moof": FTYP + box(b"moof", box(b"mfhd", bytes(8))
                                 + box(b"traf", box(b"tfhd", bytes(8)), size=500)),
    "moof-past-file": FTYP + box(b"moof", box(b"mfhd", bytes(8)), size=1000),
    "many-tiny-moofs": FTYP + box(b"moof", box(b"mfhd", bytes(8))) * mp4strip.MAX_BOXES,
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_structures_are_walked_safely(name):
    data = HOSTILE[name]
    for pieces in (None, 1 if len(data) < 100_000 else 4096):
        out, cleaned, held = strip(data, pieces=pieces)
        assert len(out) == len(data) and held <= 90
        assert b"+48.8584" not in out or cleaned.needs_remux
        assert len(cleaned.tags) <= mp4strip.TAGS_LIMIT
    if name != "size-zero-inside":
        assert cleaned.needs_remux, "no video track, or a walk that stopped early"


def test_a_file_cut_anywhere_is_walked_safely(tmp_path):
    data = make(tmp_path, "mp4", faststart=True)
    for cut in sorted({8, 30, 40, 100, 200, 500, 1000, len(data) // 2, len(data) - 1}):
        out, cleaned, held = strip(data[:cut])
        assert len(out) == cut and held <= 90 and cleaned.needs_remux


def test_kept_metadata_is_written_as_it_came(tmp_path):
    data = make(tmp_path, "mp4")
    writer = spool.upload_writer(tmp_path, 10**8, 100, True)
    for at in range(0, len(data), 1000):
        writer.write(data[at:at + 1000])
    assert writer.finish() is None
    writer.close()
    assert writer.path.read_bytes() == data
    writer.discard()


def test_avif_is_not_walked(tmp_path):
    """AVIF is ISO BMFF too, its picture in a top-level meta box: not this walk's."""
    avif = m.image_bytes("avif") if hasattr(m, "image_bytes") else None
    data = avif or (box(b"ftyp", b"avif\x00\x00\x00\x00avifmif1miaf") + box(b"meta", bytes(64)))
    writer = spool.upload_writer(tmp_path, 10**8, 100, False)
    writer.write(data)
    assert writer.finish() is None
    writer.close()
    assert writer.path.read_bytes() == data
    writer.discard()


# ---------------------------------------------------------------------------------------------
# End to end

@pytest.mark.parametrize("fmt, faststart", [("mp4", False), ("mp4", True), ("mov", False)],
                         ids=["mp4-moov-last", "mp4-faststart", "mov"])
def test_upload_is_stored_blanked_with_both_checksums(server, tmp_path, fmt, faststart):
    data = make(tmp_path, fmt, faststart=faststart)
    image = assert_upload_ok(server.upload(data, filename=f"phone.{fmt}"))
    assert image["title"] == "Secret title" and image["description"] == "Secret comment"
    stored = server.get(image["url"]).content
    assert len(stored) == len(data), "stored in place, not remuxed"
    assert (data.index(b"moov") < data.index(b"mdat")) == (stored.index(b"moov") < stored.index(b"mdat"))
    assert image["checksum"] == hashlib.md5(stored).hexdigest()
    assert image["source_checksum"] == hashlib.md5(data).hexdigest()
    assert [secret for secret in SECRETS if secret in stored] == []
    path = tmp_path / f"stored.{fmt}"
    path.write_bytes(stored)
    header = ffmpeg_header(path)
    assert not re.search(r"^\s*location\S*\s*:", header, re.M) and "ecret" not in header
    assert decodes(path)
    assert image["frame"]["url"] and server.get(image["url_frame"]).status_code == 200


def test_upload_with_a_subtitle_track_is_remuxed(server, tmp_path):
    data = crowded_clip(tmp_path, "mp4", subtitle=True)
    image = assert_upload_ok(server.upload(data, filename="drone.mp4"))
    stored = server.get(image["url"]).content
    path = tmp_path / "stored.mp4"
    path.write_bytes(stored)
    assert streams(ffmpeg_header(path)) == ["Video", "Audio"]
    assert b"GPS" not in stored and b"secret" not in stored
    assert image["checksum"] == hashlib.md5(stored).hexdigest()
    assert image["source_checksum"] == hashlib.md5(data).hexdigest()
    assert (image["width"], image["height"]) == (240, 320)


@pytest.mark.parametrize("name", ["truncated-peek", "child-past-parent", "nested-udta", "cmov",
                                  "traf-past-moof"])
def test_hostile_uploads_are_refused_cleanly(server, name):
    rows, files = server.rows(), server.stored_files()
    response = server.upload(HOSTILE[name], filename="bad.mp4")
    assert_error(response, 400, 100, "Invalid video file provided")
    assert server.rows() == rows and server.stored_files() == files and server.tmp_files() == []


def test_kept_metadata_setting_stores_the_upload_as_is(make_app, tmp_path):
    srv = make_app(keep_exif="1")
    data = make(tmp_path, "mp4")
    image = assert_upload_ok(srv.upload(data, filename="kept.mp4"))
    assert srv.get(image["url"]).content == data
    assert image["checksum"] == hashlib.md5(data).hexdigest() and image["source_checksum"] is None
    assert image["title"] == "Secret title"


# ---------------------------------------------------------------------------------------------
# Fragmented files: an empty index (moov) first, then a moof and its mdat a fragment, as
# `-movflags frag_keyframe+empty_moov` and cameras recording in fragments write them

FRAGMENTED = {
    "empty-moov": "frag_keyframe+empty_moov",   # mfra at the end, prft before each moof
    "base-moof": "frag_keyframe+empty_moov+default_base_moof+skip_trailer",
    "cmaf-sidx": "cmaf+frag_keyframe+global_sidx",
    "dash": "frag_keyframe+empty_moov+separate_moof+dash",
}


def fragmented(tmp_path: Path, movflags: str, *, name: str = "frag", extra: tuple[str, ...] = (),
               gop: int = 10) -> bytes:
    """A clip as make() writes it (location, title, comment, stream tags), in fragments of a
    keyframe interval each, a producer reference time (wall clock) before each."""
    out = tmp_path / f"{name}.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y",
                    "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=10",
                    "-f", "lavfi", "-i", "sine=duration=3", *extra, "-frames:v", "30",
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", str(gop),
                    "-c:a", "aac", "-metadata", f"location={LOCATION}",
                    "-metadata", "title=Secret title", "-metadata", "comment=Secret comment",
                    "-metadata:s:v", "handler_name=Phone cam", "-metadata:s:v", "title=secretstream",
                    "-metadata:s:v", "language=fra", "-write_prft", "wallclock",
                    "-movflags", movflags, "-f", "mp4", str(out)],
                   check=True, capture_output=True, timeout=60)
    return out.read_bytes()


def outside_mdat(data: bytes) -> bytes:
    """Every top-level box but the media data, one after the other."""
    return b"".join(data[at:end] for kind, at, _, end in _boxes(data, 0, len(data))
                    if kind != b"mdat")


def frames(path: Path) -> list[str]:
    """A checksum of each decoded frame of every stream (ffmpeg's framemd5): the same list for
    two files means every frame decodes to the same picture or sound."""
    result = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path),
                             "-map", "0", "-f", "framemd5", "-"], capture_output=True, timeout=60)
    assert result.returncode == 0 and not result.stderr, result.stderr
    return [line for line in result.stdout.decode().splitlines() if not line.startswith("#")]


def tree(data: bytes, start: int = 0, end: int | None = None,
         into: tuple[bytes, ...] = (b"moov", b"trak", b"mdia", b"minf", b"mvex", b"moof",
                                     b"traf", b"mfra")) -> list[bytes]:
    """The paths of the boxes, 'moof/traf/tfhd', as far as the walk goes."""
    paths = []
    for kind, at, header, stop in _boxes(data, start, len(data) if end is None else end):
        paths.append(kind)
        if kind in into:
            paths += [kind + b"/" + inner for inner in tree(data, at + header, stop, into)]
    return paths


@pytest.mark.parametrize("name", list(FRAGMENTED))
def test_fragmented_metadata_is_blanked_in_place(tmp_path, name):
    data = fragmented(tmp_path, FRAGMENTED[name])
    assert data.count(b"moof") >= 3 and b"loci" in data and b"Secret title" in data
    out, cleaned, held = strip(data)
    assert len(out) == len(data) and held <= 90
    assert cleaned.changed and not cleaned.needs_remux and cleaned.handlers == ("vide", "soun")
    assert cleaned.md5 == hashlib.md5(out).hexdigest()
    assert [secret for secret in SECRETS if secret in outside_mdat(out)] == []
    paths = tree(out)
    assert b"prft" not in paths, "the wall-clock time each fragment was made goes"
    assert {p for p in paths if p.startswith((b"moof/", b"mfra/"))} <= {
        b"moof/mfhd", b"moof/traf", b"moof/traf/tfhd", b"moof/traf/tfdt", b"moof/traf/trun",
        b"mfra/tfra", b"mfra/mfro"}
    upload, stored = tmp_path / "upload.mp4", tmp_path / "stored.mp4"
    upload.write_bytes(data)
    stored.write_bytes(out)
    assert frames(stored) == frames(upload)
    header = ffmpeg_header(stored)
    assert "location" not in header.lower() and "ecret" not in header and "Phone" not in header
    assert streams(header) == ["Video", "Audio"]
    assert video.read_tags(cleaned.tags, tmp_path, timeout=TIMEOUT) == ("Secret title", "Secret comment")
    # in pieces of any size, and a second time, the same
    assert strip(data, pieces=1)[:2] == (out, cleaned)
    again, cleaned_again, _ = strip(out)
    assert again == out and not cleaned_again.changed


def _trun_shifted(trun: bytes, by: int) -> bytes:
    """A trun box whose data offset (from the start of its moof) is moved by ``by``."""
    flags = int.from_bytes(trun[9:12], "big")
    assert flags & 1, "a data offset"
    offset = struct.unpack(">i", trun[16:20])[0]
    return trun[:16] + struct.pack(">i", offset + by) + trun[20:]


SECRET_META = box(b"meta", bytes(4) + box(b"hdlr", bytes(8) + b"mdir" + bytes(13))
                  + box(b"ilst", box(b"\xa9xyz", box(b"data", bytes(8) + b"+48.8584+002.2945/"))))
SECRET_UDTA = box(b"udta", box(b"\xa9xyz", b"\x00\x12\x15\xc7+48.8584+002.2945/")
                  + box(b"\xa9nam", b"\x00\x0c\x15\xc7Secret title"))
SECRET_UUID = box(b"uuid", bytes.fromhex("be7acfcb97a942e89c71999491e3afac")
                  + b"<x:xmpmeta>Secret comment +48.8584</x:xmpmeta>")


def with_boxes_in_fragments(data: bytes) -> bytes:
    """A fragmented file (moof-relative data offsets, no mfra) with a udta after each mfhd and
    a meta and a uuid box after each tfhd; the data offsets moved to match."""
    out = bytearray()
    for kind, at, header, end in _boxes(data, 0, len(data)):
        if kind != b"moof":
            out += data[at:end]
            continue
        inside = _boxes(data, at + header, end)
        trafs = [k for k, *_ in inside].count(b"traf")
        grown = len(SECRET_UDTA) + trafs * (len(SECRET_META) + len(SECRET_UUID))
        body = bytearray()
        for inner, i_at, i_header, i_end in inside:
            if inner == b"mfhd":
                body += data[i_at:i_end] + SECRET_UDTA
            elif inner == b"traf":
                parts = [data[t_at:t_end] for _, t_at, _, t_end in _boxes(data, i_at + i_header, i_end)]
                assert parts[0][4:8] == b"tfhd"
                parts = [_trun_shifted(part, grown) if part[4:8] == b"trun" else part for part in parts]
                body += box(b"traf", parts[0] + SECRET_META + SECRET_UUID + b"".join(parts[1:]))
            else:
                body += data[i_at:i_end]
        out += box(b"moof", bytes(body))
    return bytes(out)


def test_boxes_hidden_in_fragments_are_blanked(tmp_path):
    data = with_boxes_in_fragments(fragmented(tmp_path, FRAGMENTED["base-moof"]))
    crafted = tmp_path / "crafted.mp4"
    crafted.write_bytes(data)
    paths = tree(data)
    assert {b"moof/udta", b"moof/traf/meta", b"moof/traf/uuid"} <= set(paths)
    before = frames(crafted)
    assert len([f for f in before if f.startswith("0,")]) == 30, "the crafted file plays whole"
    out, cleaned, held = strip(data)
    assert len(out) == len(data) and held <= 90 and not cleaned.needs_remux
    assert [secret for secret in SECRETS if secret in outside_mdat(out)] == []
    assert b"xmpmeta" not in out and b"mdir" not in out
    kept = tree(out)
    assert not {b"moof/udta", b"moof/traf/meta", b"moof/traf/uuid"} & set(kept)
    assert kept.count(b"moof/free") == paths.count(b"moof/udta")
    assert kept.count(b"moof/traf/free") == paths.count(b"moof/traf/meta") * 2
    stored = tmp_path / "stored.mp4"
    stored.write_bytes(out)
    assert frames(stored) == before
    # the title is read from the index's metadata only, never from a fragment's
    assert video.read_tags(cleaned.tags, tmp_path, timeout=TIMEOUT) == ("Secret title", "Secret comment")


def test_a_box_hidden_in_the_fragment_index_is_blanked(tmp_path):
    """mfra (tfra a track, then mfro giving the size of mfra) ends the file: a udta put in it
    moves nothing but mfro's size."""
    data = fragmented(tmp_path, FRAGMENTED["empty-moov"])
    *rest, (kind, at, header, end) = _boxes(data, 0, len(data))
    assert kind == b"mfra" and end == len(data)
    inner = data[at + header:end - 16] + SECRET_UDTA
    mfro = data[end - 16:end - 4] + struct.pack(">I", 8 + len(inner) + 16)
    crafted = data[:at] + box(b"mfra", inner + mfro)
    out, cleaned, _ = strip(crafted)
    assert b"mfra/free" in tree(out) and b"mfra/udta" not in tree(out)
    assert b"+48.8584" not in outside_mdat(out) and b"loci" not in out and not cleaned.needs_remux
    path = tmp_path / "stored.mp4"
    path.write_bytes(out)
    upload = tmp_path / "upload.mp4"
    upload.write_bytes(data)
    assert frames(path) == frames(upload)


def test_a_fragmented_file_with_a_subtitle_track_asks_for_a_remux(tmp_path):
    (tmp_path / "s.srt").write_text(SUBTITLE)
    data = fragmented(tmp_path, FRAGMENTED["empty-moov"],
                      extra=("-i", str(tmp_path / "s.srt"), "-map", "0", "-map", "1", "-map", "2",
                             "-c:s", "mov_text"))
    assert b"secretsub" in data
    out, cleaned, _ = strip(data)
    assert cleaned.needs_remux and set(cleaned.handlers) - {"vide", "soun"}
    assert b"loci" not in outside_mdat(out)


def test_the_box_count_allowed_grows_with_the_file(tmp_path, monkeypatch):
    """A real fragmented file may have more boxes than MAX_BOXES as long as they hold data; a
    run of tiny fragments stops the walk (ffmpeg remuxes the file) within the count allowed."""
    data = fragmented(tmp_path, FRAGMENTED["empty-moov"], gop=3)
    total = len(tree(data))
    monkeypatch.setattr(mp4strip, "MAX_BOXES", 64)
    assert total > 64 + 1000 // mp4strip.BYTES_PER_BOX, "more than the index alone may have"
    walker = Mp4Stripper(bytearray().extend)
    walker.feed(data)
    cleaned = walker.finish()
    assert not walker.broken and walker.boxes >= total and not cleaned.needs_remux
    moov_end = [end for kind, _, _, end in _boxes(data, 0, len(data)) if kind == b"moov"][0]
    tiny = box(b"moof", box(b"mfhd", bytes(8)))
    hostile = data[:moov_end] + tiny * 5000
    out, cleaned, _ = strip(hostile)
    assert cleaned.needs_remux and len(out) == len(hostile)
    assert b"loci" not in out, "what came before the stop was blanked"
    walker = Mp4Stripper(bytearray().extend)
    walker.feed(hostile)
    walker.finish()
    assert walker.broken and walker.boxes <= 64 + len(hostile) // mp4strip.BYTES_PER_BOX + 1


def test_fragmented_upload_is_stored_blanked_with_both_checksums(server, tmp_path):
    data = fragmented(tmp_path, FRAGMENTED["empty-moov"])
    image = assert_upload_ok(server.upload(data, filename="camera.mp4"))
    assert image["title"] == "Secret title" and image["description"] == "Secret comment"
    stored = server.get(image["url"]).content
    assert len(stored) == len(data) and tree(stored)[-4:] == tree(data)[-4:], "not remuxed"
    assert image["checksum"] == hashlib.md5(stored).hexdigest()
    assert image["source_checksum"] == hashlib.md5(data).hexdigest()
    assert [secret for secret in SECRETS if secret in outside_mdat(stored)] == []
    assert b"loci" not in stored
    upload, path = tmp_path / "upload.mp4", tmp_path / "stored.mp4"
    upload.write_bytes(data)
    path.write_bytes(stored)
    assert frames(path) == frames(upload)
    assert not re.search(r"^\s*location\S*\s*:", ffmpeg_header(path), re.M)
    assert image["frame"]["url"] and server.get(image["url_frame"]).status_code == 200


def test_fragmented_upload_with_a_subtitle_track_is_remuxed(server, tmp_path):
    (tmp_path / "s.srt").write_text(SUBTITLE)
    data = fragmented(tmp_path, FRAGMENTED["empty-moov"],
                      extra=("-i", str(tmp_path / "s.srt"), "-map", "0", "-map", "1", "-map", "2",
                             "-c:s", "mov_text"))
    image = assert_upload_ok(server.upload(data, filename="drone.mp4"))
    stored = server.get(image["url"]).content
    path = tmp_path / "stored.mp4"
    path.write_bytes(stored)
    assert streams(ffmpeg_header(path)) == ["Video", "Audio"]
    assert b"GPS" not in stored and b"secret" not in stored and b"loci" not in stored
    assert image["checksum"] == hashlib.md5(stored).hexdigest()
    assert image["source_checksum"] == hashlib.md5(data).hexdigest()
