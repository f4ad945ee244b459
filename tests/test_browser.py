"""The pages in a real browser (Chromium through Playwright): media loads, video seeks, buttons work.

Skipped when Chromium or Playwright is missing. Screenshots land in tests/artifacts/.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

import pytest
import requests

import media
from conftest import LiveServer
from contract import assert_upload_ok

CHROMIUM = "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip("Chromium is not installed", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
LONG_TITLE = "Supercalifragilistic" * 5
LONG_DESCRIPTION = ("A description with a very long unbroken link: https://example.com/"
                    + "path-segment" * 60 + "\nand a second line")
LONG_TAGS = ", ".join(f"{'longtag' * 4}{n}" for n in range(12))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = LiveServer(tmp_path_factory.mktemp("browser"), {"IMGZ_PUBLIC_TAGS": "1"})
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield chromium
        chromium.close()


class Tab:
    """A page in its own context that records every URL it requests."""

    def __init__(self, browser: Any, origin: str, **options: Any) -> None:
        options.setdefault("viewport", {"width": 1280, "height": 800})
        self.context = browser.new_context(**options)
        self.page = self.context.new_page()
        self.origin = origin
        self.requested: list[str] = []
        self.page.on("request", lambda request: self.requested.append(request.url))

    def open(self, url: str) -> Any:
        return self.page.goto(url, wait_until="load")

    def foreign(self) -> list[str]:
        """Requests that left this server's origin (data: and blob: URLs stay in the page)."""
        own = urlsplit(self.origin).netloc
        return [url for url in self.requested
                if not url.startswith(("data:", "blob:")) and urlsplit(url).netloc != own]

    def shot(self, name: str, full_page: bool = True) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tab(browser: Any, site: LiveServer) -> Iterator[Tab]:
    opened = Tab(browser, site.url)
    yield opened
    opened.close()


def _upload(site: LiveServer, data: bytes | None = None, **fields: Any) -> dict:
    fields.setdefault("filename", "photo.png")
    return assert_upload_ok(site.upload(data if data is not None else media.png(900, 600), **fields))


@pytest.fixture(scope="module")
def clip(site: LiveServer) -> dict:
    return _upload(site, media.video("mp4", size="320x240", seconds=4), filename="Test pattern.mp4",
                   tags="patterns")


def test_image_viewer_shows_the_image(browser, site):
    image = _upload(site, title="Blobs of colour", description="Line one\nLine two", tags="blobs, colour")
    for scheme in ("light", "dark"):
        tab = Tab(browser, site.url, color_scheme=scheme)
        try:
            assert tab.open(image["url_viewer"]).status == 200
            # a stage wider than the medium gets the original
            loaded = tab.page.eval_on_selector("#media", "img => [img.complete, img.currentSrc]")
            assert loaded == [True, image["url"]]
            assert tab.page.eval_on_selector("#media", "img => img.closest('a').href") == image["url"]
            tab.shot(f"viewer-image-{scheme}")
            assert tab.foreign() == []
        finally:
            tab.close()


def test_a_phone_gets_the_medium(browser, site):
    image = _upload(site, media.png(1600, 1000), title="Wide")
    tab = Tab(browser, site.url, viewport={"width": 390, "height": 844}, device_scale_factor=1)
    try:
        tab.open(image["url_viewer"])
        loaded = tab.page.eval_on_selector("#media", "img => [img.complete, img.currentSrc]")
        assert loaded == [True, image["medium"]["url"]]
    finally:
        tab.close()


def test_video_plays_and_seeks(tab, clip):
    ranged: list[str] = []
    tab.page.on("response", lambda r: ranged.append(r.status) if r.url == clip["url"] else None)
    tab.open(clip["url_viewer"])
    state = tab.page.evaluate("""async () => {
        const video = document.querySelector('video');
        video.muted = true;
        await video.play();
        await new Promise(done => setTimeout(done, 300));
        const played = video.currentTime;
        video.pause();
        const seeked = new Promise(done => video.addEventListener('seeked', done, {once: true}));
        video.currentTime = video.duration / 2;
        await seeked;
        return {played, now: video.currentTime, duration: video.duration,
                seekable: video.seekable.length ? video.seekable.end(0) : 0,
                poster: video.poster, width: video.videoWidth};
    }""")
    assert state["duration"] == pytest.approx(4, abs=0.3)
    assert state["played"] > 0, "playback did not advance"
    assert state["now"] == pytest.approx(state["duration"] / 2, abs=0.3)
    assert state["seekable"] == pytest.approx(state["duration"], abs=0.3)
    assert state["poster"] == clip["url_frame"] and state["width"] == 320
    assert 206 in ranged, "the player reads the file by ranges"
    tab.shot("viewer-video")
    assert tab.foreign() == []


def test_a_file_opened_by_itself_shows_and_plays(tab, site, clip):
    """The browser's own viewer for a bare file URL may load and style the file it shows."""
    problems: list[str] = []
    tab.page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
    tab.open(clip["url"])
    # the page runs no script of its own (its timers never fire): every wait is done from here
    video = "document.querySelector('video')"
    for _ in range(50):
        if tab.page.evaluate(f"() => {video}.readyState") >= 2:
            break
        tab.page.wait_for_timeout(100)
    assert tab.page.evaluate(f"() => {video}.readyState") >= 2, "the video never loaded"
    tab.page.evaluate(f"() => {{ {video}.muted = true; {video}.play(); }}")
    tab.page.wait_for_timeout(400)
    assert tab.page.evaluate(f"() => [{video}.currentTime > 0, {video}.videoWidth]") == [True, 320]
    image = _upload(site, media.png(900, 600))
    tab.open(image["url"])
    assert tab.page.eval_on_selector("img", "img => img.complete && img.naturalWidth") == 900
    assert problems == []


def test_delete_button_deletes_and_the_files_go(tab, site):
    image = _upload(site, title="Delete me")
    tab.open(image["delete_url"])
    assert tab.page.eval_on_selector("img", "img => img.naturalWidth") > 0
    tab.shot("delete-confirm")
    tab.page.click("button[type=submit]")
    tab.page.wait_for_load_state("load")
    assert tab.page.text_content("h1") == "Deleted"
    assert tab.page.url == site.url + "/?deleted=1", "a reload cannot send the deletion again"
    tab.shot("deleted")
    for url in (image["url"], image["thumb"]["url"], image["medium"]["url"], image["url_viewer"]):
        assert requests.get(url, timeout=10).status_code == 404, url
    assert tab.foreign() == []


def test_copy_buttons_put_the_codes_on_the_clipboard(browser, site):
    image = _upload(site, title="Copy & paste")
    expected = {
        "direct": image["url"],
        "viewer": image["url_viewer"],
        "markdown": f"![Copy & paste]({image['url']})",
        "html": f'<img src="{image["url"]}" alt="Copy &amp; paste">',
        "bbcode": f"[img]{image['url']}[/img]",
    }
    tab = Tab(browser, site.url)
    try:
        tab.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site.url)
        tab.open(image["url_viewer"])
        for key, text in expected.items():
            assert tab.page.input_value(f"#code-{key}") == text
            button = tab.page.locator(f"button[data-copy=code-{key}]")
            button.click()
            sync_api.expect(button).to_have_text("Copied", timeout=2000)
            assert tab.page.evaluate("navigator.clipboard.readText()") == text, key
    finally:
        tab.close()


def test_nsfw_blur_lifts_on_click(tab, site):
    image = _upload(site, title="Sensitive", nsfw="1")
    tab.open(image["url_viewer"])
    blur = "getComputedStyle(document.querySelector('#media')).filter"
    assert "blur" in tab.page.evaluate(f"() => {blur}")
    tab.shot("viewer-nsfw-hidden", full_page=False)
    box = tab.page.locator("#media").bounding_box()
    tab.page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    tab.page.wait_for_function(f"() => {blur} === 'none'", timeout=2000)
    assert tab.page.url == image["url_viewer"], "the first click reveals, it does not navigate"
    tab.shot("viewer-nsfw-shown", full_page=False)


@pytest.fixture(scope="module")
def long_pages(site: LiveServer, clip: dict) -> dict[str, str]:
    image = _upload(site, media.png(3000, 400), title=LONG_TITLE, description=LONG_DESCRIPTION,
                    tags=LONG_TAGS + ", patterns")
    return {"viewer": image["url_viewer"], "video": clip["url_viewer"], "delete": image["delete_url"],
            "tag": image["tags"][-1]["url"], "missing": site.url + "/image/nothing.ZZZZZZZZ",
            "home": site.url + "/"}


@pytest.mark.parametrize("width", [375, 1280])
def test_no_page_scrolls_sideways(browser, site, long_pages, width):
    tab = Tab(browser, site.url, viewport={"width": width, "height": 800},
              color_scheme="dark" if width == 375 else "light")
    try:
        for name, url in long_pages.items():
            tab.open(url)
            sizes = tab.page.evaluate(
                "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
            assert sizes[0] <= sizes[1], (name, sizes)
            if name in {"viewer", "tag", "missing"}:
                tab.shot(f"{name}-{width}")
        assert tab.foreign() == []
    finally:
        tab.close()


def _drawn(tab: Tab, url: str) -> dict:
    tab.open(url)
    return tab.page.eval_on_selector("#media", """img => {
        const stage = img.closest('.stage'), style = getComputedStyle(stage);
        return {complete: img.complete, width: img.getBoundingClientRect().width,
                height: img.getBoundingClientRect().height,
                stage: stage.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight)};
    }""")


@pytest.mark.parametrize("data,width,height", [
    (media.png(800, 500), 800, 500),
    (media.gif(300, 200, frames=3), 300, 200),
], ids=["png-800", "gif-300"])
def test_an_image_narrower_than_the_stage_is_drawn_at_its_own_width(browser, site, data, width, height):
    image = _upload(site, data, filename=f"small.{'gif' if data[:3] == b'GIF' else 'png'}")
    for scale in (1, 2):
        tab = Tab(browser, site.url, device_scale_factor=scale)
        try:
            drawn = _drawn(tab, image["url_viewer"])
            assert drawn["complete"] and drawn["stage"] > width
            assert (drawn["width"], drawn["height"]) == (width, height), scale
        finally:
            tab.close()


def test_a_wide_image_fits_the_stage(browser, site):
    image = _upload(site, media.png(2400, 600), filename="wide.png")
    for viewport in ({"width": 1280, "height": 800}, {"width": 390, "height": 844}):
        tab = Tab(browser, site.url, viewport=viewport)
        try:
            drawn = _drawn(tab, image["url_viewer"])
            assert drawn["complete"] and drawn["width"] == pytest.approx(drawn["stage"], abs=1)
            assert drawn["height"] == pytest.approx(drawn["width"] / 4, abs=1)
        finally:
            tab.close()
