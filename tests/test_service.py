"""The upload use case without HTTP: concurrency limit, cleanup on failure."""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

import media
from imgz import config, db, metadata as imgz_metadata
from imgz.web import init_data
from imgz import scratch, service as service_mod, spool
from imgz.errors import InvalidImage
from imgz.records import Actor, Options
from imgz.service import Service
from imgz.sources import Incoming


def _service(tmp_path: Path, **overrides) -> Service:
    cfg = config.load({}, overrides={"data": str(tmp_path), "min_free_mb": "0", **overrides})
    init_data(cfg)
    connections = db.LocalConnections(cfg.db)
    return Service(cfg, connections.get)


def _media(svc: Service) -> Path:
    """Where the local store keeps the files."""
    return Path(svc.store.root)


def _incoming(svc: Service, data: bytes, name: str = "a.png") -> Incoming:
    writer = spool.write_bytes(svc.data, data, 10_000_000, 10)
    writer.close()
    return Incoming(writer.path, writer.md5, writer.size, name, "file")


def test_a_failed_upload_leaves_no_row_no_file_and_frees_its_name(tmp_path, monkeypatch):
    svc = _service(tmp_path, filenaming="original")
    admin = Actor(user_id=1, is_admin=True)
    real_insert = service_mod.db.insert_upload

    def failing_insert(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(service_mod.db, "insert_upload", failing_insert)
    with pytest.raises(RuntimeError):
        svc.upload(_incoming(svc, media.png(600, 400), "keep.png"), admin, Options())
    assert list(_media(svc).rglob("*.png")) == []
    assert list(scratch.folder(svc.data).iterdir()) == []
    monkeypatch.setattr(service_mod.db, "insert_upload", real_insert)
    upload, _ = svc.upload(_incoming(svc, media.png(600, 400), "keep.png"), admin, Options())
    assert upload.name == "keep", "the name of a failed upload is free again"


def test_a_damaged_image_leaves_nothing(tmp_path):
    svc = _service(tmp_path)
    with pytest.raises(InvalidImage):
        svc.upload(_incoming(svc, media.jpeg(300, 200)[:2000], "broken.jpg"), Actor(1, True), Options())
    assert list(_media(svc).rglob("*")) == []
    assert list(scratch.folder(svc.data).iterdir()) == []
    assert db.count_uploads(db.connect(svc.config.db)) == 0


def test_metadata_title_and_description_follow_the_parameter_rules(tmp_path):
    svc = _service(tmp_path)
    data = media.png(20, 20, text={"Title": "T" * 300 + "\x01\x07 end",
                                   "Description": "line\x1b[31m one\n\ttwo " + "d" * 20_000})
    upload, _ = svc.upload(_incoming(svc, data, "meta.png"), Actor(1, True), Options())
    assert upload.title == "T" * 100
    assert upload.description.startswith("line[31m one\n\ttwo ddd")
    assert len(upload.description) == 10_000


def test_a_metadata_title_of_only_controls_falls_back_to_the_file_name(tmp_path):
    svc = _service(tmp_path)
    data = media.png(20, 20, text={"Title": "\x01\x02\x1b"})
    upload, _ = svc.upload(_incoming(svc, data, "Holiday_at-sea.png"), Actor(1, True), Options())
    assert upload.title == "Holiday at sea"


def _arrived(svc: Service, data: bytes, name: str) -> Incoming:
    """An upload written the way the API writes one: through the arrival filter of its settings."""
    writer = spool.write_bytes(svc.data, data, 10_000_000, 10, spool.arrival_filter(svc.config.keep_exif))
    writer.close()
    return Incoming(writer.path, writer.md5, writer.size, name, "file", writer.finish())


def test_a_jpeg_is_stripped_on_arrival_and_stored_without_another_copy(tmp_path, monkeypatch):
    svc = _service(tmp_path)
    exif = media.exif_bytes(gps=(51.5, -0.12), make="Phone", date_time_original="2021:07:04 09:30:00",
                            offset_time_original="+02:00")
    data = media.jpeg(900, 600, exif=exif, xmp=media.xmp_packet(title="Harbour"), icc=True)
    copies = []
    real_strip = imgz_metadata.strip_hashed
    monkeypatch.setattr(imgz_metadata, "strip_hashed",
                        lambda *args: copies.append(args) or real_strip(*args))
    incoming = _arrived(svc, data, "harbour.jpg")
    assert incoming.stripped is not None and incoming.stripped.changed
    upload, _ = svc.upload(incoming, Actor(user_id=1, is_admin=True), Options(use_file_date=True))
    assert copies == []
    with svc.store.open(upload.relpath()) as file:
        stored = file.read()
    assert b"Phone" not in stored and b"Harbour" not in stored
    assert stored.endswith(data[data.index(b"\xff\xda"):])
    # the metadata was still read, from the header the upload arrived with
    assert upload.title == "Harbour"
    assert upload.created_at.isoformat() == "2021-07-04T07:30:00+00:00"
    assert upload.checksum == hashlib.md5(stored).hexdigest()
    assert upload.source_checksum == hashlib.md5(data).hexdigest()
    assert list(scratch.folder(svc.data).iterdir()) == []


def test_a_turned_jpeg_arrives_as_it_came_and_is_stored_upright(tmp_path):
    svc = _service(tmp_path)
    data = media.jpeg(80, 40, orientation=6)
    incoming = _arrived(svc, data, "turned.jpg")
    assert incoming.stripped is None and incoming.path.read_bytes() == data
    upload, _ = svc.upload(incoming, Actor(user_id=1), Options())
    assert (upload.width, upload.height) == (40, 80)


def test_a_jpeg_broken_after_its_header_is_refused_and_nothing_is_kept(tmp_path):
    svc = _service(tmp_path)
    data = media.jpeg(300, 200, exif=media.exif_bytes(make="Phone"))
    incoming = _arrived(svc, data[:-2], "cut.jpg")
    assert incoming.stripped is not None and incoming.stripped.broken
    with pytest.raises(InvalidImage):
        svc.upload(incoming, Actor(user_id=1), Options(width=100))
    assert list(_media(svc).rglob("*.*")) == []
    assert list(scratch.folder(svc.data).iterdir()) == []


def test_with_metadata_kept_nothing_is_stripped_on_arrival(tmp_path):
    svc = _service(tmp_path, keep_exif="1")
    data = media.jpeg(64, 48, exif=media.exif_bytes(make="Phone"))
    incoming = _arrived(svc, data, "kept.jpg")
    assert incoming.stripped is None and incoming.path.read_bytes() == data


def _app_with_upload(tmp_path: Path):
    from imgz.web import create_app

    app = create_app({"data": str(tmp_path), "min_free_mb": "0"}, jobs=False)
    svc = app.config["IMGZ_SERVICE"]
    upload, _ = svc.upload(_incoming(svc, media.png(40, 30)), Actor(1, True), Options())
    client = app.test_client()
    url = "/images/" + upload.relpath()
    assert client.get(url).status_code == 200  # now remembered by the file responder
    return app, svc, upload, client, url


def test_a_deleted_upload_is_not_served_even_when_its_file_could_not_be_removed(tmp_path, monkeypatch):
    app, svc, upload, client, url = _app_with_upload(tmp_path)
    monkeypatch.setattr(svc.store, "delete", lambda keys: None)  # a disk refusing removal
    svc.delete(upload)
    assert (_media(svc) / upload.relpath()).exists()
    assert client.get(url).status_code == 404


def test_an_upload_deleted_by_another_process_is_soon_not_served(tmp_path, monkeypatch):
    from imgz import web

    app, svc, upload, client, url = _app_with_upload(tmp_path)
    other = db.connect(svc.config.db)  # what `app.py upload delete` does, minus the files
    with db.transaction(other):
        db.delete_upload(other, upload.id)
    other.close()
    assert client.get(url).status_code == 200, "remembered for a while"
    monkeypatch.setattr(web, "FILE_CACHE_SECONDS", 0.001)
    time.sleep(0.01)
    assert client.get(url).status_code == 404


def test_removal_goes_on_past_a_file_that_cannot_be_removed(tmp_path, caplog):
    svc = _service(tmp_path)
    folder = _media(svc) / "2025/01/01"
    folder.mkdir(parents=True)
    (folder / "stuck").mkdir()  # unlink() of a directory fails
    (folder / "a.png").write_bytes(b"x")
    svc.store.delete(["2025/01/01/stuck", "2025/01/01/a.png"])
    assert not (folder / "a.png").exists()
    assert "could not remove 2025/01/01/stuck" in caplog.text
