"""The upload use case without HTTP: concurrency limit, cleanup on failure."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import media
from imgz import config, db, init_data, media as imgz_media, service as service_mod, storage
from imgz.errors import InvalidImage
from imgz.service import Actor, Options, Service
from imgz.sources import Incoming


def _service(tmp_path: Path, **overrides) -> Service:
    cfg = config.load({}, overrides={"data": str(tmp_path), "min_free_mb": "0", **overrides})
    init_data(cfg)
    connections = db.LocalConnections(cfg.db)
    return Service(cfg, connections.get)


def _incoming(svc: Service, data: bytes, name: str = "a.png") -> Incoming:
    writer = storage.write_bytes(svc.data, data, 10_000_000, 10)
    writer.close()
    return Incoming(writer.path, writer.md5, writer.size, name, "file")


def test_at_most_workers_uploads_are_processed_at_once(tmp_path, monkeypatch):
    svc = _service(tmp_path, workers="2")
    admin = Actor(user_id=1, is_admin=True)
    active = 0
    most = 0
    lock = threading.Lock()
    real_render = imgz_media.render_image

    def counting_render(*args, **kwargs):
        nonlocal active, most
        with lock:
            active += 1
            most = max(most, active)
        try:
            time.sleep(0.2)
            return real_render(*args, **kwargs)
        finally:
            with lock:
                active -= 1

    monkeypatch.setattr(service_mod.media, "render_image", counting_render)
    incomings = [_incoming(svc, media.png(40 + i, 30)) for i in range(6)]
    results: list = []
    threads = [threading.Thread(target=lambda inc=inc: results.append(svc.upload(inc, admin, Options())))
               for inc in incomings]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6
    assert most == 2


def test_a_failed_upload_leaves_no_row_no_file_and_frees_its_name(tmp_path, monkeypatch):
    svc = _service(tmp_path, filenaming="original")
    admin = Actor(user_id=1, is_admin=True)
    real_insert = service_mod.db.insert_upload

    def failing_insert(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(service_mod.db, "insert_upload", failing_insert)
    with pytest.raises(RuntimeError):
        svc.upload(_incoming(svc, media.png(600, 400), "keep.png"), admin, Options())
    assert list(storage.images_dir(svc.data).rglob("*.png")) == []
    assert list(storage.tmp_dir(svc.data).iterdir()) == []
    monkeypatch.setattr(service_mod.db, "insert_upload", real_insert)
    upload, _ = svc.upload(_incoming(svc, media.png(600, 400), "keep.png"), admin, Options())
    assert upload.name == "keep", "the name of a failed upload is free again"


def test_a_damaged_image_leaves_nothing(tmp_path):
    svc = _service(tmp_path)
    with pytest.raises(InvalidImage):
        svc.upload(_incoming(svc, media.jpeg(300, 200)[:2000], "broken.jpg"), Actor(1, True), Options())
    assert list(storage.images_dir(svc.data).rglob("*")) == []
    assert list(storage.tmp_dir(svc.data).iterdir()) == []
    assert db.count_uploads(db.connect(svc.config.db)) == 0
