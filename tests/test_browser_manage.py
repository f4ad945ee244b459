"""My uploads and albums in a real browser (Debian's Chromium through Playwright): the grid's
filters and pages, picking uploads with their checkboxes to delete or move them, albums made,
renamed, made public and private and deleted, and the pages at 360 px. Screenshots of both pages,
light and dark, land in tests/artifacts/."""
from __future__ import annotations

import io
import random
import time
from typing import Any, Iterator

import pytest
from PIL import Image, ImageDraw

import media
import test_browser
import test_browser_access
from conftest import LiveServer
from contract import assert_upload_ok
from people import add_user, browser_sign_in

pytestmark = pytest.mark.paired

PASSWORD = "correct horse battery"
browser, person = test_browser.browser, test_browser_access.person  # the shared Chromium; a page each
sync_api = test_browser.sync_api
expect = sync_api.expect


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = LiveServer(tmp_path_factory.mktemp("manage"))
    add_user(srv.config.database, "root", PASSWORD, admin=True)
    for name in ("ann", "bob", "cid", "dan"):
        add_user(srv.config.database, name, PASSWORD)
    srv.keys = {}
    yield srv
    srv.stop()


def picture(seed: int) -> bytes:
    """A landscape of its own (sky, sun, hills) as a JPEG: thumbnails worth looking at."""
    rng = random.Random(seed)
    width, height = 960, 640
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    top, bottom = [rng.randint(40, 255) for _ in range(3)], [rng.randint(0, 200) for _ in range(3)]
    for y in range(height):
        t = y / height
        draw.line([(0, y), (width, y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom)))
    x, y, r = rng.randint(100, 860), rng.randint(60, 260), rng.randint(40, 90)
    draw.ellipse([x - r, y - r, x + r, y + r], fill=(255, rng.randint(180, 240), rng.randint(60, 140)))
    for layer in range(3):
        base = 360 + layer * 90
        points = [(0, height)] + [(px, base + rng.randint(-80, 60)) for px in range(0, width + 80, 80)] + [(width, height)]
        shade = 30 + layer * 35
        draw.polygon(points, fill=(shade // 2, shade + rng.randint(0, 60), shade // 2 + rng.randint(0, 40)))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def put(site: LiveServer, who: str, title: str, data: bytes | None = None, filename: str = "",
        **fields: Any) -> dict:
    if who not in site.keys:
        site.keys[who] = site.command("key", "create", "--user", who).stdout.strip()
    answer = site.upload(data if data is not None else picture(hash(title) % 1000),
                         filename=filename or f"{title}.jpg", api_key=site.keys[who], title=title, **fields)
    return assert_upload_ok(answer)


def grid_titles(page: Any) -> list[str]:
    return page.locator(".grid .pick").all_inner_texts()


def thumbs_shown(page: Any) -> None:
    """Wait for every image of the page (polled from here: the CSP forbids the eval with which
    wait_for_function polls in the page)."""
    deadline = time.monotonic() + 15
    while not page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"):
        assert time.monotonic() < deadline, "images not loaded"
        time.sleep(0.1)


def signed_in(person: Any, site: LiveServer, name: str, **options: Any) -> Any:
    page = person(**options)
    browser_sign_in(page, site.url, name, PASSWORD)
    return page


def test_filters_and_pages(site: LiveServer, person: Any) -> None:
    album = site.command("album", "add", "Coast", "--user", "ann").stdout.strip()
    put(site, "ann", "Beach at dawn", tags="sea", album_id=album)
    put(site, "ann", "Harbour lights", tags="sea,night")
    put(site, "ann", "Forest path", description="moss and beech trees")
    put(site, "ann", "Test pattern", data=media.video("mp4", size="320x240", seconds=1), filename="pattern.mp4")
    put(site, "ann", "Snowy ridge", expiration="P3D")
    page = signed_in(person, site, "ann")
    page.goto(f"{site.url}/uploads?n=3")
    assert grid_titles(page) == ["Snowy ridge", "Test pattern", "Forest path"]
    assert "expires in 2 days" in page.locator(".grid").inner_text()
    page.get_by_role("link", name="Older →").click()
    assert grid_titles(page) == ["Harbour lights", "Beach at dawn"]
    expect(page.get_by_role("link", name="Older →")).to_have_count(0)
    page.get_by_role("link", name="← Newer").click()
    assert grid_titles(page) == ["Snowy ridge", "Test pattern", "Forest path"]
    page.goto(f"{site.url}/uploads")
    page.get_by_label("Search").fill("BEECH")
    page.get_by_role("button", name="Filter").click()
    assert grid_titles(page) == ["Forest path"] and "q=BEECH" in page.url
    page.get_by_role("link", name="Clear filters").click()
    page.get_by_label("Kind").select_option(label="Videos")
    page.get_by_role("button", name="Filter").click()
    assert grid_titles(page) == ["Test pattern"]
    page.get_by_label("Kind").select_option(label="Images and videos")
    page.get_by_label("Tag").fill("sea")
    page.get_by_role("button", name="Filter").click()
    assert grid_titles(page) == ["Harbour lights", "Beach at dawn"]
    page.get_by_label("Tag").fill("")
    page.get_by_label("Album", exact=True).select_option(label="Coast")
    page.get_by_role("button", name="Filter").click()
    assert grid_titles(page) == ["Beach at dawn"]
    page.get_by_label("Search").fill("no such thing")
    page.get_by_role("button", name="Filter").click()
    assert page.get_by_text("No upload matches these filters.").is_visible()


def test_pick_several_and_delete(site: LiveServer, person: Any) -> None:
    made = {title: put(site, "bob", title) for title in ("one", "two", "three")}
    page = signed_in(person, site, "bob")
    page.goto(f"{site.url}/uploads")
    page.get_by_role("checkbox", name="one", exact=True).check()
    page.get_by_role("checkbox", name="three", exact=True).check()
    page.get_by_role("button", name="Delete", exact=True).click()
    expect(page.get_by_role("heading", name="Delete 2 uploads?")).to_be_visible()
    page.get_by_role("button", name="Delete 2 uploads").click()
    expect(page.get_by_role("status").first).to_contain_text("2 uploads deleted.")
    assert grid_titles(page) == ["two"]
    assert site.get(made["one"]["url"]).status_code == 404
    assert site.get(made["two"]["url"]).status_code == 200


def test_without_javascript_picking_and_deleting_still_work(site: LiveServer, person: Any) -> None:
    put(site, "bob", "plain one")
    put(site, "bob", "plain two")
    page = signed_in(person, site, "bob", java_script_enabled=False)
    page.goto(f"{site.url}/uploads?q=plain")
    expect(page.get_by_role("button", name="Select all")).to_be_hidden()
    expect(page.get_by_role("button", name="Copy link to plain one")).to_be_hidden()
    page.get_by_role("checkbox", name="plain one").check()
    page.get_by_role("button", name="Delete", exact=True).click()
    page.get_by_role("button", name="Delete 1 upload").click()
    expect(page.get_by_role("status").first).to_contain_text("1 upload deleted.")
    assert grid_titles(page) == ["plain two"] and "q=plain" in page.url


def test_select_all_and_copy_link(site: LiveServer, person: Any) -> None:
    made = [put(site, "cid", f"c{n}") for n in range(3)]
    page = signed_in(person, site, "cid")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site.url)
    page.goto(f"{site.url}/uploads")
    page.get_by_role("button", name="Select all").click()
    assert all(box.is_checked() for box in page.get_by_role("checkbox").all())
    page.get_by_role("button", name="Select none").click()
    assert not any(box.is_checked() for box in page.get_by_role("checkbox").all())
    page.get_by_role("button", name="Copy link to c0").click()
    expect(page.locator("#copy-status")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == made[0]["url_viewer"]


def test_albums_made_filled_published_and_deleted(site: LiveServer, person: Any) -> None:
    for title in ("Dunes", "Lagoon", "Cliffs"):
        put(site, "dan", title)
    page = signed_in(person, site, "dan")
    page.goto(f"{site.url}/albums")
    page.get_by_label("Name", exact=True).fill("Holidays")
    page.get_by_role("button", name="New album").click()
    expect(page.get_by_role("status").first).to_contain_text("Album Holidays made.")
    page.get_by_label("New name for Holidays").fill("Summer trip")
    page.get_by_role("button", name="Rename").click()
    expect(page.get_by_role("heading", name="Summer trip")).to_be_visible()
    test_browser.ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(test_browser.ARTIFACTS / "ui-albums-light.png"), full_page=True)
    page.goto(f"{site.url}/uploads")
    page.get_by_role("checkbox", name="Dunes").check()
    page.get_by_role("checkbox", name="Cliffs").check()
    page.get_by_label("Into album").select_option(label="Summer trip")
    page.get_by_role("button", name="Move to album").click()
    expect(page.get_by_role("status").first).to_contain_text("2 uploads moved to Summer trip.")
    page.goto(f"{site.url}/albums")
    assert "2 uploads" in page.locator(".album").inner_text()
    page.get_by_role("link", name="Summer trip").click()
    address = page.url
    assert grid_titles(page) == ["Cliffs", "Dunes"]
    visitor = person()
    assert visitor.goto(address).status == 404  # private
    page.get_by_role("button", name="Make public").click()
    expect(page.get_by_text("Anyone with this page's address can see it.")).to_be_visible()
    assert visitor.goto(address).status == 200
    assert grid_titles(visitor) == ["Cliffs", "Dunes"]
    expect(visitor.get_by_role("checkbox")).to_have_count(0)
    page.get_by_role("checkbox", name="Dunes").check()
    page.get_by_role("button", name="Remove from album").click()
    assert grid_titles(page) == ["Cliffs"]
    page.get_by_role("button", name="Make private").click()
    assert visitor.goto(address).status == 404
    page.goto(f"{site.url}/albums")
    page.get_by_role("button", name="Delete album Summer trip").click()
    expect(page.get_by_role("status").first).to_contain_text("Its uploads are still in My uploads.")
    page.goto(f"{site.url}/uploads")
    assert sorted(grid_titles(page)) == ["Cliffs", "Dunes", "Lagoon"]


@pytest.fixture(scope="module")
def gallery(site: LiveServer) -> str:
    """Eight landscapes of root's, six in a public album; the album page's path."""
    album = site.command("album", "add", "Landscapes", "--user", "root").stdout.strip()
    names = ["Morning fjord", "Red canyon", "Quiet lake", "Alpine meadow", "Dune sea", "Pine ridge",
             "Evening bay", "Lava field"]
    for n, name in enumerate(names):
        put(site, "root", name, data=picture(n + 11), tags="travel",
            album_id=album if n < 6 else None, expiration="P7D" if n == 1 else None)
    key = site.query("SELECT page_key FROM albums WHERE public_id = :p", {"p": album})[0][0]
    site.query("UPDATE albums SET is_public = :t WHERE public_id = :p", {"t": True, "p": album})
    return f"/a/{key}"


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_pages_in_light_and_dark_and_at_360_px(site: LiveServer, person: Any, gallery: str,
                                                   scheme: str) -> None:
    page = signed_in(person, site, "root", color_scheme=scheme, viewport={"width": 1100, "height": 760})
    for name, path in (("uploads", "/uploads"), ("album", gallery)):
        page.goto(f"{site.url}{path}")
        thumbs_shown(page)
        assert len(page.locator(".grid img").all()) >= 6
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert (background == "rgb(19, 21, 25)") == (scheme == "dark")
        test_browser.ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(test_browser.ARTIFACTS / f"ui-{name}-{scheme}.png"))
    narrow = signed_in(person, site, "root", color_scheme=scheme, viewport={"width": 360, "height": 740})
    for path in ("/uploads", "/uploads?all=1", "/albums", gallery):
        narrow.goto(f"{site.url}{path}")
        assert narrow.evaluate("document.documentElement.scrollWidth") <= 360, path
        if path == "/uploads":
            narrow.screenshot(path=str(test_browser.ARTIFACTS / f"ui-uploads-360-{scheme}.png"))
