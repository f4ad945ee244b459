"""The upload page in a real browser (Debian's Chromium through Playwright): files dropped, pasted
and picked, progress, cancel, the copy buttons, the form without JavaScript, forged posts, the page
at 360 px, its screenshots during an upload and its weight."""
from __future__ import annotations

import base64
import re
import time
from typing import Any, Iterator

import pytest
import requests
from playwright.sync_api import expect

import media
from conftest import LiveServer
from people import add_user, browser_sign_in, sign_in
import test_browser  # skips this file without Chromium
import test_browser_access
from webhost import WebHost

# the shared fixtures: one Chromium for the run, a browser context of its own for each page
browser = test_browser.browser
person = test_browser_access.person
ARTIFACTS = test_browser.ARTIFACTS

pytestmark = pytest.mark.paired

PASSWORD = "correct horse battery"
BIG = media.png(1600, 1200)  # about 4.4 MB: seconds at the throttled speed below
THROTTLED = 600_000  # bytes per second up


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = LiveServer(tmp_path_factory.mktemp("uploadpage"))
    for name in ("ann", "bob", "cid", "dan", "eve"):
        add_user(srv.config.database, name, PASSWORD)
    yield srv
    srv.stop()


def signed_in(person: Any, site: LiveServer, name: str, **options: Any) -> Any:
    page = person(**options)
    browser_sign_in(page, site.url, name, PASSWORD)
    page.goto(f"{site.url}/")
    return page


def uploads_of(site: LiveServer, name: str) -> list[tuple]:
    return site.query("SELECT original_filename, name, extension, title FROM uploads WHERE user_id = "
                      f"(SELECT id FROM users WHERE name = '{name}') ORDER BY id")


def throttle(page: Any, up: int = THROTTLED) -> None:
    """Slow this page's uploads down to ``up`` bytes a second (Chromium's network emulation)."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0,
                                                 "downloadThroughput": -1, "uploadThroughput": up})


def watch_progress(page: Any) -> None:
    """Note every value the page's progress bars take, in window.seen."""
    page.evaluate("""() => {
        window.seen = [];
        new MutationObserver(records => {
            for (const r of records) if (r.target.tagName === "PROGRESS") window.seen.push([r.target.value, r.target.max]);
        }).observe(document.body, {subtree: true, attributes: true, attributeFilter: ["value"]});
    }""")


def pngs(*names: str) -> list[list[str]]:
    return [[name, base64.b64encode(media.png(60 + 10 * n, 40)).decode()] for n, name in enumerate(names)]


def done_rows(page: Any, count: int) -> None:
    page.wait_for_function("""(count) => {
        const states = [...document.querySelectorAll("#rows .state")];
        return states.length >= count && states.every(s => !/%|Starting|Processing|Waiting/.test(s.textContent));
    }""", arg=count)


def test_dropping_several_files_anywhere_uploads_each(site: LiveServer, person: Any) -> None:
    page = signed_in(person, site, "ann")
    overlay = page.evaluate("""(items) => {
        const dt = new DataTransfer();
        for (const [name, b64] of items) {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            dt.items.add(new File([bytes], name, {type: "image/png"}));
        }
        const target = document.querySelector("h1");
        target.dispatchEvent(new DragEvent("dragenter", {dataTransfer: dt, bubbles: true, cancelable: true}));
        const shown = !document.getElementById("drop-overlay").hidden;
        target.dispatchEvent(new DragEvent("dragover", {dataTransfer: dt, bubbles: true, cancelable: true}));
        target.dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
        return [shown, document.getElementById("drop-overlay").hidden];
    }""", pngs("red.png", "green.png", "blue.png"))
    assert overlay == [True, True]
    done_rows(page, 3)
    assert all(state.startswith("Uploaded · ") for state in page.locator("#rows .state").all_inner_texts())
    assert sorted(row[0] for row in uploads_of(site, "ann")) == ["blue.png", "green.png", "red.png"]
    # each row shows its thumbnail, loaded from this server
    page.wait_for_function("() => [...document.querySelectorAll('#rows img.thumb')].filter(i => i.complete && i.naturalWidth > 0).length === 3")
    assert "uploaded" in page.locator("#progress-status").inner_text()


def test_pasting_a_screenshot_uploads_it(site: LiveServer, person: Any) -> None:
    page = signed_in(person, site, "bob")
    page.evaluate("""(b64) => {
        const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], "image.png", {type: "image/png"}));
        document.dispatchEvent(new ClipboardEvent("paste", {clipboardData: dt, bubbles: true, cancelable: true}));
    }""", base64.b64encode(media.screenshot(320, 200)).decode())
    done_rows(page, 1)
    names = [row[0] for row in uploads_of(site, "bob")]
    assert len(names) == 1 and re.fullmatch(r"screenshot-\d{8}-\d{6}\.png", names[0]), names


def test_progress_goes_up_to_its_maximum(site: LiveServer, person: Any) -> None:
    page = signed_in(person, site, "cid")
    throttle(page)
    watch_progress(page)
    page.set_input_files("#files", files=[{"name": "big.png", "mimeType": "image/png", "buffer": BIG}])
    done_rows(page, 1)
    seen = page.evaluate("window.seen")
    assert seen[-1] == [100, 100]
    assert [v for v, _ in seen if 0 < v < 100], f"no progress between the ends: {seen}"
    assert page.locator("#rows .state").inner_text().startswith("Uploaded")
    assert [row[0] for row in uploads_of(site, "cid")] == ["big.png"]


def test_a_cancelled_file_is_not_stored(site: LiveServer, person: Any) -> None:
    page = signed_in(person, site, "dan")
    throttle(page, 200_000)
    page.set_input_files("#files", files=[{"name": "cancelled.png", "mimeType": "image/png", "buffer": BIG}])
    page.wait_for_function("() => document.querySelector('#rows progress').value >= 5")
    page.get_by_role("button", name="Cancel cancelled.png").click()
    assert page.locator("#rows .state").inner_text() == "Cancelled"
    time.sleep(1.5)  # what the server had of it is thrown away, not stored
    assert uploads_of(site, "dan") == []
    assert site.tmp_files() == []


def test_the_copy_buttons_copy_and_say_so(site: LiveServer, person: Any) -> None:
    page = signed_in(person, site, "eve")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site.url)
    page.locator("summary").click()
    page.get_by_label("Title").fill("Sunset [big]")
    page.set_input_files("#files", files=[{"name": "sun.png", "mimeType": "image/png", "buffer": media.png(50, 40)}])
    done_rows(page, 1)
    _, name, ext, _ = uploads_of(site, "eve")[-1]
    direct = page.get_by_role("link", name="Sunset [big]").get_attribute("href")
    texts = {}
    for label in ("Direct link", "Viewer", "Markdown", "HTML", "BBCode", "Delete link"):
        page.evaluate("document.getElementById('copy-status').textContent = ''")
        page.get_by_role("button", name=f"Copy {label} of Sunset [big]").click()
        expect(page.locator("#copy-status")).to_have_text("Copied")  # the clipboard answers later
        texts[label] = page.evaluate("navigator.clipboard.readText()")
    url = texts["Direct link"]
    assert url.endswith(f"/{name}.{ext}") and requests.get(url, timeout=10).status_code == 200
    assert texts["Viewer"] == direct
    assert texts["Markdown"] == f"![Sunset \\[big\\]]({url})"
    assert texts["HTML"] == f'<img src="{url}" alt="Sunset [big]">'
    assert texts["BBCode"] == f"[img]{url}[/img]"
    assert "/delete/" in texts["Delete link"]


def test_the_form_uploads_without_javascript(site: LiveServer, person: Any) -> None:
    page = person(java_script_enabled=False)
    browser_sign_in(page, site.url, "ann", PASSWORD)
    page.goto(f"{site.url}/")
    before = len(uploads_of(site, "ann"))
    page.set_input_files("#files", files=[
        {"name": "plain-one.png", "mimeType": "image/png", "buffer": media.png(30, 20)},
        {"name": "plain-two.png", "mimeType": "image/png", "buffer": media.png(20, 30)}])
    page.get_by_text("Options", exact=True).click()
    page.get_by_label("Title", exact=True).fill("No script")
    page.get_by_role("button", name="Upload", exact=True).click()
    page.wait_for_url(f"{site.url}/upload")
    assert page.get_by_role("heading", level=1).inner_text() == "Uploaded 2 files"
    assert len(page.locator("img.thumb").all()) == 2
    assert page.get_by_label("Markdown").first.input_value().startswith("![No script](")
    assert [row[3] for row in uploads_of(site, "ann")[before:]] == ["No script", "No script"]


def test_forged_posts_with_the_session_cookie_are_refused(site: LiveServer, person: Any) -> None:
    page = signed_in(person, site, "bob")
    before = len(uploads_of(site, "bob"))
    tiny = base64.b64encode(media.png(8, 8)).decode()
    # from this origin, without the token or with a wrong one: no session counts, so no one
    statuses = page.evaluate("""async ([tiny, tokens]) => {
        const out = [];
        for (const token of tokens) {
            const body = new FormData();
            body.append("source", new Blob([Uint8Array.from(atob(tiny), c => c.charCodeAt(0))], {type: "image/png"}), "f.png");
            const headers = token ? {"X-CSRFToken": token} : {};
            out.push((await fetch("/api/1/upload", {method: "POST", body, headers})).status);
        }
        return out;
    }""", [tiny, ["", "forged-token"]])
    assert statuses == [401, 401]
    forged = (f'<!doctype html><form id="f" method="post" action="{site.url}/upload" enctype="multipart/form-data">'
              '<input type="file" name="source"></form><script>'
              f'const bytes = Uint8Array.from(atob("{tiny}"), c => c.charCodeAt(0));'
              'const dt = new DataTransfer(); dt.items.add(new File([bytes], "x.png", {type: "image/png"}));'
              'document.querySelector("input").files = dt.files; document.getElementById("f").submit();'
              '</script>').encode()
    with WebHost() as other:  # another port of 127.0.0.1: another origin, the same site
        with page.expect_navigation(url=f"{site.url}/upload"):
            page.goto(other.add("/evil.html", forged, content_type="text/html"))
        assert "did not come from this site" in page.content()
    # a GET with the cookie is no upload either, whatever it carries
    answer = page.goto(f"{site.url}/api/1/upload?source={requests.utils.quote(tiny)}")
    assert answer.status == 401
    assert len(uploads_of(site, "bob")) == before


def test_the_page_fits_a_phone_and_labels_every_field(site: LiveServer, person: Any) -> None:
    page = signed_in(person, site, "cid", viewport={"width": 360, "height": 740})
    page.locator("summary").click()
    long_name = "a-very-long-file-name-without-any-break-" * 4 + ".png"
    page.set_input_files("#files", files=[{"name": long_name, "mimeType": "image/png", "buffer": media.png(40, 40)}])
    done_rows(page, 1)
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    unlabelled = page.evaluate("[...document.querySelectorAll('input:not([type=hidden]), select, textarea')]"
                               ".filter(e => !e.labels.length && !e.getAttribute('aria-label')).map(e => e.name)")
    assert unlabelled == []
    page.focus("#files")  # the picker is reached by keyboard
    assert page.evaluate("document.activeElement.id") == "files"


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_upload_page_during_an_upload_in_light_and_dark(site: LiveServer, person: Any, scheme: str) -> None:
    page = signed_in(person, site, "dan", color_scheme=scheme, viewport={"width": 1100, "height": 760})
    page.set_input_files("#files", files=[{"name": "harbour.png", "mimeType": "image/png", "buffer": media.png(640, 400)}])
    done_rows(page, 1)
    throttle(page, 300_000)
    page.set_input_files("#files", files=[{"name": "holiday-video-frames.png", "mimeType": "image/png", "buffer": BIG}])
    page.wait_for_function("() => { const p = document.querySelector('#rows progress'); return p && p.value >= 45 && p.value <= 70; }")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert (background == "rgb(19, 21, 25)") == (scheme == "dark")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"ui-upload-{scheme}.png"))
    page.get_by_role("button", name="Cancel holiday-video-frames.png").click()


def test_the_page_weighs_little(site: LiveServer) -> None:
    """HTML, CSS and JavaScript of the upload page, uncompressed (the tus client, loaded only for
    a large file, aside): at most 150 KB."""
    http, _ = sign_in(site.url, "eve", PASSWORD)
    html = http.get(f"{site.url}/", timeout=10)
    scripts = re.findall(r'<script src="([^"]+)"', html.text)
    weight = len(html.content) + sum(len(http.get(f"{site.url}{src}", timeout=10).content) for src in scripts)
    print(f"\nupload page weight: {weight} bytes (HTML with its CSS {len(html.content)}, scripts {weight - len(html.content)})")
    assert weight <= 150_000


TUS_STUB = b"""window.tus = {Upload: function (file, opts) {
    window.tusSeen = {name: file.name, size: file.size, endpoint: opts.endpoint, headers: opts.headers,
                      metadata: opts.metadata, chunkSize: opts.chunkSize, retryDelays: opts.retryDelays};
    this.url = location.origin + "/api/1/tus/0123abcd";
    this.findPreviousUploads = () => Promise.resolve([]);
    this.resumeFromPreviousUpload = () => {};
    this.abort = () => {};
    this.start = () => {
        opts.onProgress(file.size / 2, file.size);
        setTimeout(() => { opts.onProgress(file.size, file.size); opts.onSuccess(); }, 50);
    };
}};"""


def test_a_large_file_goes_to_the_resumable_client_loaded_only_then(make_server: Any, person: Any) -> None:
    """The page's side of resumable uploads, against a stand-in for the tus client and for the
    finishing call (the server's side is tested with it)."""
    srv = make_server(resumable_mb="0.01")
    add_user(srv.config.database, "ann", PASSWORD)
    page = signed_in(person, srv, "ann")
    page.locator("summary").click()
    page.get_by_label("Title").fill("Long clip")
    loaded: list[str] = []
    finished: list[Any] = []
    page.route("**/static/vendor/tus-js-client/tus.min.js*", lambda route: (
        loaded.append(route.request.url), route.fulfill(body=TUS_STUB, content_type="text/javascript")))
    image = {"url": f"{srv.url}/images/x.png", "url_viewer": f"{srv.url}/image/x", "mime": "image/png",
             "title": "Long clip", "size": 20000, "thumb": {"url": None}, "delete_url": f"{srv.url}/x/delete/s"}
    page.route("**/api/1/tus/0123abcd/finish", lambda route: (
        finished.append(route.request), route.fulfill(json={"status_code": 200, "image": image})))
    page.set_input_files("#files", files=[{"name": "small.png", "mimeType": "image/png", "buffer": media.png(8, 8)}])
    done_rows(page, 1)
    assert loaded == [], "the resumable client is loaded only for a file that needs it"
    page.set_input_files("#files", files=[{"name": "large.png", "mimeType": "image/png", "buffer": b"\x89PNG" + b"x" * 20_000}])
    done_rows(page, 2)
    assert len(loaded) == 1
    seen = page.evaluate("window.tusSeen")
    token = page.evaluate("document.querySelector('meta[name=csrf-token]').content")
    assert seen == {"name": "large.png", "size": 20_004, "endpoint": "/api/1/tus/", "headers": {"X-CSRFToken": token},
                    "metadata": {"filename": "large.png", "filetype": "image/png"}, "chunkSize": 8 * 1024 * 1024,
                    "retryDelays": [0, 1000, 3000, 5000, 10000]}
    request = finished[0]
    assert request.method == "POST" and request.headers["x-csrftoken"] == token
    assert request.headers["content-type"].startswith("application/x-www-form-urlencoded")
    assert "title=Long+clip" in request.post_data
    assert page.locator("#rows .state").first.inner_text().startswith("Uploaded")
