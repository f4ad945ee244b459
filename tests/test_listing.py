"""The grids' queries on their own (imgz/db/listing.py), on SQLite and PostgreSQL: keyset pages
that never repeat or skip an upload while others are added, each filter, everyone's uploads."""
from __future__ import annotations

import dataclasses
import itertools
import random

from imgz import db
from imgz.records import Listing
import test_db
from test_db import NOW, new_upload

database, conn = test_db.database, test_db.conn  # the fixtures: an empty database of each kind


def store(conn, upload):
    """Store an upload under a name of its own (its files' paths are unique)."""
    return test_db.store(conn, dataclasses.replace(upload, name=upload.public_id))


def _user(conn, name):
    return db.add_user(conn, name, False, NOW)


def _walk(conn, listing, size, insert=None):
    """Every page from the newest on, following 'Older'; ``insert`` runs between two pages."""
    seen, before = [], None
    while True:
        found, more = db.list_uploads(conn, listing, size, before=before)
        seen.extend(item.upload.public_id for item in found)
        if not more:
            return seen
        before = found[-1].upload.id
        if insert:
            insert()


def test_pages_follow_each_other_without_repeats_or_gaps_while_uploads_arrive(conn):
    ann = _user(conn, "ann")
    made = [store(conn, new_upload(user_id=ann, title=f"n{n}")).public_id for n in range(23)]
    counter = itertools.count()
    added = []

    def arrives():  # a new upload between two page loads, from the same user
        added.append(store(conn, new_upload(user_id=ann, title=f"late{next(counter)}")).public_id)

    seen = _walk(conn, Listing(user_id=ann), 5, insert=arrives)
    assert seen == made[::-1]  # newest first, each once, none skipped
    assert added and set(added).isdisjoint(seen)
    first, _ = db.list_uploads(conn, Listing(user_id=ann), 5)
    assert [i.upload.public_id for i in first] == (added[::-1] + made[::-1])[:5]


def test_deletions_between_pages_neither_repeat_nor_skip_the_rest(conn):
    ann = _user(conn, "ann")
    made = [store(conn, new_upload(user_id=ann)) for _ in range(20)]
    gone = []

    def deleted():  # the newest left goes between two page loads (it was shown already)
        alive = [u for u in made if u.id not in gone]
        with db.transaction(conn):
            db.delete_upload(conn, alive[-1].id)
        gone.append(alive[-1].id)

    seen = _walk(conn, Listing(user_id=ann), 4, insert=deleted)
    assert seen == [u.public_id for u in made[::-1]]


def test_newer_pages_go_back_the_way_they_came(conn):
    ann = _user(conn, "ann")
    made = [store(conn, new_upload(user_id=ann)) for _ in range(12)]
    ids = [u.id for u in made][::-1]
    page1, more = db.list_uploads(conn, Listing(user_id=ann), 5)
    page2, _ = db.list_uploads(conn, Listing(user_id=ann), 5, before=page1[-1].upload.id)
    page3, more3 = db.list_uploads(conn, Listing(user_id=ann), 5, before=page2[-1].upload.id)
    assert more and not more3
    assert [i.upload.id for i in page1 + page2 + page3] == ids
    back, newer = db.list_uploads(conn, Listing(user_id=ann), 5, after=page3[0].upload.id)
    assert [i.upload.id for i in back] == [i.upload.id for i in page2] and newer
    back, newer = db.list_uploads(conn, Listing(user_id=ann), 5, after=page2[0].upload.id)
    assert [i.upload.id for i in back] == [i.upload.id for i in page1] and not newer


def test_each_filter(conn):
    ann, bob = _user(conn, "ann"), _user(conn, "bob")
    album = db.add_album(conn, "Trip1234", ann, "Trips", NOW)
    rng = random.Random(7)
    uploads = []
    for n in range(40):
        uploads.append(store(conn, new_upload(
            user_id=ann if n % 4 else bob, album_id=album if n % 3 == 0 and n % 4 else None,
            kind=rng.choice(["image", "video"]), title=rng.choice(["Sunset", "Cat", "Ünïcode Straße"]),
            description=rng.choice([None, "100% sure_thing", "on the beach"]),
            original_filename=rng.choice(["IMG_0001.JPG", "clip.mp4"]),
            tags=tuple(rng.sample(["sea", "sky", "dog"], rng.randint(0, 2))))))
    sea = db.get_tag(conn, "sea").id
    mine = [u for u in uploads if u.user_id == ann][::-1]
    cases = {
        Listing(ann): mine,
        Listing(ann, album_id=album): [u for u in mine if u.album_id == album],
        Listing(ann, tag_id=sea): [u for u in mine if "sea" in u.tags],
        Listing(ann, kind="video"): [u for u in mine if u.kind == "video"],
        Listing(ann, text="straße"): [u for u in mine if "Straße" in u.title],
        Listing(ann, text="img_0001"): [u for u in mine if u.original_filename == "IMG_0001.JPG"],
        Listing(ann, text="100% sure_"): [u for u in mine if u.description == "100% sure_thing"],
        Listing(ann, text="%"): [u for u in mine if "%" in (u.description or "")],  # % is itself
        Listing(ann, text="no such words"): [],
        Listing(ann, tag_id=sea, kind="image", text="cat"): [
            u for u in mine if "sea" in u.tags and u.kind == "image" and u.title == "Cat"],
        Listing(None): uploads[::-1],  # everyone's
        Listing(None, kind="image"): [u for u in uploads[::-1] if u.kind == "image"],
    }
    for listing, expected in cases.items():
        for size in (3, 100):
            assert _walk(conn, listing, size) == [u.public_id for u in expected], (listing, size)


def test_everyones_uploads_carry_their_owners_names(conn):
    ann = _user(conn, "ann")
    store(conn, new_upload(user_id=ann))
    store(conn, new_upload(user_id=None))  # a guest's
    found, more = db.list_uploads(conn, Listing(None), 10)
    assert [item.owner for item in found] == [None, "ann"] and not more
    mine, _ = db.list_uploads(conn, Listing(ann), 10)
    assert [item.owner for item in mine] == ["ann"]


def test_moving_in_and_out_of_albums_touches_only_the_owners_uploads(conn):
    ann, bob = _user(conn, "ann"), _user(conn, "bob")
    album = db.add_album(conn, "Alb00001", ann, "A", NOW)
    hers = store(conn, new_upload(user_id=ann))
    his = store(conn, new_upload(user_id=bob))
    assert db.move_to_album(conn, [hers.id, his.id], ann, album) == 1
    assert [i.upload.id for i in db.list_uploads(conn, Listing(ann, album_id=album), 10)[0]] == [hers.id]
    assert db.get_upload_by_id(conn, his.id).album_id is None
    assert db.album_counts(conn, [album]) == {album: 1}
    assert db.take_out_of_album(conn, [hers.id, his.id], album) == 1
    assert db.album_counts(conn, [album]) == {}


def test_a_deleted_album_leaves_its_uploads(conn):
    ann, bob = _user(conn, "ann"), _user(conn, "bob")
    album = db.add_album(conn, "Alb00002", ann, "A", NOW)
    upload = store(conn, new_upload(user_id=ann, album_id=album))
    assert not db.delete_album(conn, album, bob)  # not his
    assert not db.rename_album(conn, album, bob, "Mine now") and not db.set_album_public(conn, album, bob, True)
    assert db.get_album_by_id(conn, album).name == "A"
    assert db.delete_album(conn, album, ann)
    assert db.get_album_by_id(conn, album) is None
    assert db.get_upload_by_id(conn, upload.id).album_id is None


def test_uploads_by_public_id(conn):
    ann = _user(conn, "ann")
    made = [store(conn, new_upload(user_id=ann)) for _ in range(3)]
    found = db.ids_of(conn, [made[2].public_id, "nope", "bad\x00", made[0].public_id])
    assert sorted(i.upload.id for i in found) == sorted([made[0].id, made[2].id])
