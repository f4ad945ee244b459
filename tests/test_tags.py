"""Tags are one per meaning: NFKC names, NFKC case-folded keys, and a migration that merges the
duplicates an older install stored ('café' in NFC and NFD, 'ＡＢＣ' and 'abc')."""
from __future__ import annotations

import contextlib
import random
import sqlite3
import unicodedata
from pathlib import Path
from urllib.parse import quote

import pytest

import media
from contract import assert_upload_ok
from inprocess import InProcess
from imgz import db, params

SCHEMA_1 = (Path(__file__).resolve().parent / "fixtures" / "schema1.sql").read_text()
CAFE = "caf\u00e9"
CAFE_NFD = unicodedata.normalize("NFD", CAFE)


def old_key(name: str) -> str:
    """The tag key an install made before normalisation stored."""
    return "-".join(name.casefold().split())


def old_tags(value: str) -> list[str]:
    """What that install kept of a tags parameter: trimmed, whitespace collapsed, duplicates by
    case-folding dropped; no Unicode normalisation."""
    kept: list[str] = []
    for raw in value.split(","):
        tag = " ".join(raw.split())
        if tag and tag.casefold() not in {t.casefold() for t in kept}:
            kept.append(tag)
    return kept


def link_as_before(conn: sqlite3.Connection, upload_id: int, tags: list[str]) -> None:
    """Tag an upload the way that install's insert did (one row per old key)."""
    for position, name in enumerate(tags):
        conn.execute("INSERT INTO tags (name, url_key) VALUES (?, ?) ON CONFLICT(url_key) DO NOTHING",
                     (name, old_key(name)))
        tag_id = conn.execute("SELECT id FROM tags WHERE url_key = ?", (old_key(name),)).fetchone()[0]
        conn.execute("INSERT OR IGNORE INTO upload_tags (upload_id, tag_id, position) VALUES (?, ?, ?)",
                     (upload_id, tag_id, position))


def tags_of(conn: sqlite3.Connection) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for upload_id, name in conn.execute(
            "SELECT ut.upload_id, t.name FROM upload_tags ut JOIN tags t ON t.id = ut.tag_id"
            " ORDER BY ut.upload_id, ut.position"):
        out.setdefault(upload_id, []).append(name)
    return out


# -- the rules -----------------------------------------------------------------------------------

@pytest.mark.parametrize("value,expected", [
    (f"{CAFE}, {CAFE_NFD}", [CAFE]),
    (f"{CAFE_NFD}, {CAFE}", [CAFE]),
    ("\uff21\uff22\uff23, abc, ABC", ["ABC"]),
    ("abc, \uff21\uff22\uff23", ["abc"]),
    ("\ufb01sh, FISH, fish", ["fish"]),            # the ligature 'ﬁ' is two letters
    ("Stra\u00dfe, STRASSE", ["Straße"]),
    ("a\uff0cb", ["a", "b"]),                       # a full-width comma separates
    ("\uff0f\uff0fx, \uff03y, \uff0e\uff0e", []),   # full-width '/', '#' and dots-only
    ("\u2460, 1", ["1"]),                           # circled one
])
def test_tags_are_normalised(value, expected):
    assert params.parse_tags(value) == expected


@pytest.mark.parametrize("name,key", [
    ("Blue Sky", "blue-sky"), ("abc", "abc"), ("ABC", "abc"), ("v1.2", "v1.2"),
    ("a_b-c", "a_b-c"), ("Hello  World", "hello-world"),
    (CAFE, CAFE), (CAFE_NFD, CAFE), ("\uff21\uff22\uff23", "abc"), ("Stra\u00dfe", "strasse"),
])
def test_tag_key(name, key):
    assert params.tag_key(name) == key


ASCII = [chr(c) for c in range(0x21, 0x7F) if chr(c) not in "/#,"]


@pytest.mark.parametrize("seed", range(30))
def test_ascii_keys_are_what_they_always_were(seed):
    """Tag URLs of ASCII tags stay as they were before normalisation."""
    rng = random.Random(seed)
    name = "".join(rng.choice(ASCII + [" "]) for _ in range(rng.randrange(1, 20)))
    assert params.tag_key(name) == old_key(name)


def _variants(word: str, rng: random.Random) -> str:
    """The same tag written another way: case, full width, NFD."""
    out = "".join(ch.upper() if rng.random() < 0.5 else ch for ch in word)
    if rng.random() < 0.5:
        out = "".join(chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ch for ch in out)
    form = rng.choice(["NFC", "NFD", "NFKD"])
    return unicodedata.normalize(form, out)


WORDS = [CAFE, "na\u00efve", "abc", "\u00c5ngstr\u00f6m", "r\u00e9sum\u00e9 2024", "\u1e9b\u0323"]


@pytest.mark.parametrize("seed", range(30))
def test_written_variants_are_one_tag_with_one_key(seed):
    rng = random.Random(seed)
    word = rng.choice(WORDS)
    variants = [_variants(word, rng) for _ in range(5)]
    tags = params.parse_tags(", ".join(variants))
    assert len(tags) == 1
    assert tags[0] == unicodedata.normalize("NFKC", variants[0])
    assert {params.tag_key(v) for v in variants} == {params.tag_key(tags[0])}
    assert params.tag_key(params.tag_key(tags[0])) == params.tag_key(tags[0])


# -- the migration on a database file --------------------------------------------------------------

def _database_as_before(path: Path, uploads: list[list[str]]) -> None:
    """A database with the schema an install made before normalisation (user_version 1), one
    upload per entry, tagged as that install did."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.executescript(SCHEMA_1 + "\nPRAGMA user_version = 1;")
        conn.execute("INSERT INTO users (id, name, is_admin, created_at) VALUES (1, 'admin', 1, 0)")
        for number, tags in enumerate(uploads, start=1):
            conn.execute(
                "INSERT INTO uploads (id, public_id, user_id, kind, folder, name, extension, mime, size,"
                " width, height, title, original_filename, checksum, created_at, delete_hash)"
                " VALUES (?, ?, 1, 'image', '2025/01/01', ?, 'png', 'image/png', 1, 1, 1, 't', 'a.png',"
                " 'x', 0, 'h')", (number, f"id{number:06d}", f"n{number}"))
            link_as_before(conn, number, tags)
        conn.commit()


@pytest.mark.parametrize("seed", range(20))
def test_migration_merges_generated_duplicates(tmp_path, seed):
    rng = random.Random(seed)
    uploads = [old_tags(", ".join(_variants(rng.choice(WORDS), rng) for _ in range(rng.randrange(0, 5))))
               for _ in range(12)]
    _database_as_before(tmp_path / "imgz.db", uploads)
    with contextlib.closing(db.connect(tmp_path / "imgz.db")) as conn:
        db.migrate(conn)
        assert db.schema_version_of(conn) == db.SCHEMA_VERSION
    with contextlib.closing(sqlite3.connect(tmp_path / "imgz.db")) as conn:
        rows = conn.execute("SELECT name, url_key FROM tags").fetchall()
        linked = tags_of(conn)
        assert conn.execute("SELECT COUNT(*) FROM uploads").fetchone()[0] == 12
    keys = [key for _, key in rows]
    assert len(keys) == len(set(keys))
    for name, key in rows:
        assert name == unicodedata.normalize("NFKC", name) and key == params.tag_key(name)
    for number, tags in enumerate(uploads, start=1):
        expected = {params.tag_key(t) for t in tags}
        got = linked.get(number, [])
        assert len(got) == len(expected) and {params.tag_key(t) for t in got} == expected


def test_migration_keeps_the_oldest_name_and_ascii_keys(tmp_path):
    _database_as_before(tmp_path / "imgz.db", [
        [CAFE, "Blue Sky", "x\u202ey"], [CAFE_NFD, "\uff22\uff4c\uff55\uff45 Sky"],
        [CAFE.upper(), CAFE_NFD.upper()], ["xy", "plain"]])
    with contextlib.closing(db.connect(tmp_path / "imgz.db")) as conn:
        db.migrate(conn)
        db.migrate(conn)  # nothing left to do the second time
    with contextlib.closing(sqlite3.connect(tmp_path / "imgz.db")) as conn:
        rows = dict(conn.execute("SELECT url_key, name FROM tags").fetchall())
        linked = tags_of(conn)
    assert rows == {CAFE: CAFE, "blue-sky": "Blue Sky", "xy": "xy", "plain": "plain"}
    assert linked == {1: [CAFE, "Blue Sky", "xy"], 2: [CAFE, "Blue Sky"], 3: [CAFE], 4: ["xy", "plain"]}


# -- an install upgraded in place, through the app ------------------------------------------------

UPLOAD_TAGS = [
    f"{CAFE}, Blue Sky",
    f"{CAFE_NFD}, \uff22\uff4c\uff55\uff45 \uff33\uff4b\uff59",
    f"{CAFE}, {CAFE_NFD}",
    "\uff23\uff41\uff46\u00e9, plain",
    "\uff50\uff4c\uff41\uff49\uff4e, other",
]


def test_an_install_upgrades_in_place(tmp_path):
    data = tmp_path / "d"
    env = {"IMGZ_PUBLIC_TAGS": "1"}
    first = InProcess(data, env)
    try:
        images = [assert_upload_ok(first.upload(media.png(40, 30), filename=f"p{i}.png"))
                  for i in range(len(UPLOAD_TAGS))]
        key = first.key
    finally:
        first.stop()
    # Tag them as an install before normalisation did, and mark the database as made by it
    # (which kept its schema version in the header, not in a table).
    with contextlib.closing(sqlite3.connect(data / "imgz.db")) as conn:
        conn.execute("DELETE FROM upload_tags")
        conn.execute("DELETE FROM tags")
        for image, tags in zip(images, UPLOAD_TAGS):
            upload_id = conn.execute("SELECT id FROM uploads WHERE public_id = ?",
                                     (image["id_encoded"],)).fetchone()[0]
            link_as_before(conn, upload_id, old_tags(tags))
        conn.execute("DROP TABLE schema_version")
        conn.execute("PRAGMA user_version = 1")
        conn.commit()
        assert conn.execute("SELECT COUNT(*) FROM tags").fetchone()[0] == 8

    second = InProcess(data, env)
    second.key = key
    try:
        with contextlib.closing(sqlite3.connect(data / "imgz.db")) as conn:
            assert conn.execute("SELECT version FROM schema_version").fetchone()[0] == db.SCHEMA_VERSION
            assert dict(conn.execute("SELECT url_key, name FROM tags").fetchall()) == {
                CAFE: CAFE, "blue-sky": "Blue Sky", "plain": "plain", "other": "other"}
            assert conn.execute("SELECT COUNT(*) FROM upload_tags").fetchone()[0] == 9
        assert second.rows() == len(images)
        for image in images:
            assert second.get(image["url"].replace(first.url, second.url)).status_code == 200
        cafe = second.get(f"/tag/{quote(CAFE)}")
        assert cafe.status_code == 200
        assert all(image["path_viewer"] in cafe.text for image in images[:4])
        assert images[4]["path_viewer"] not in cafe.text
        for written in (CAFE_NFD, CAFE.upper(), "\uff23\uff41\uff46\u00e9"):
            response = second.get(f"/tag/{quote(written)}")
            assert response.status_code == 302 and response.headers["Location"].endswith(f"/tag/{quote(CAFE)}")
        assert second.get("/tag/blue-sky").status_code == 200
        plain = second.get("/tag/plain")
        assert images[3]["path_viewer"] in plain.text and images[4]["path_viewer"] in plain.text
        # a new upload written another way joins the same tag
        image = assert_upload_ok(second.upload(media.png(40, 30), tags=f"{CAFE_NFD.upper()}, \uff30\uff4c\uff41\uff49\uff4e"))
        assert [(t["name"], t["url_key"]) for t in image["tags"]] == [(CAFE, CAFE), ("plain", "plain")]
        with contextlib.closing(sqlite3.connect(data / "imgz.db")) as conn:
            assert conn.execute("SELECT COUNT(*) FROM tags").fetchone()[0] == 4
    finally:
        second.stop()
