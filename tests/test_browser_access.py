"""Signing in, keys and users in a real browser (Debian's Chromium through Playwright), and forged
requests from another origin on the same machine (same site for cookies: only the CSRF token
stands between them and the user)."""
from __future__ import annotations

from typing import Any, Iterator

import pytest
import requests

import media
from conftest import LiveServer
from people import add_user, browser_sign_in
from test_browser import browser, sync_api  # noqa: F401  (the shared Chromium; skips without it)
from webhost import WebHost

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = LiveServer(tmp_path_factory.mktemp("access"))
    add_user(srv.config.database, "root", PASSWORD, admin=True)
    for name in ("ann", "bob", "cid", "dan"):
        add_user(srv.config.database, name, PASSWORD)
    yield srv
    srv.stop()


@pytest.fixture
def person(browser: Any) -> Iterator[Any]:
    """Make pages, each in a browser context of its own (its own cookies)."""
    contexts: list[Any] = []

    def new_page(**options: Any) -> Any:
        context = browser.new_context(**options)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        return page

    yield new_page
    for context in contexts:
        context.close()


def upload_with(site: LiveServer, key: str) -> requests.Response:
    return requests.post(f"{site.url}/api/1/upload", headers={"X-API-Key": key},
                         files={"source": ("p.png", media.png(12, 12))}, timeout=60)


def new_key(page: Any, site: LiveServer, label: str = "") -> str:
    """Make a key on the keys page as the signed-in person; the key it shows once."""
    page.goto(f"{site.url}/keys")
    if label:
        page.get_by_label("Label").fill(label)
    page.get_by_role("button", name="New key").click()
    return page.get_by_label("Your new key").input_value()


def test_signing_in_and_out(site: LiveServer, person: Any) -> None:
    page = person()
    page.goto(f"{site.url}/keys")
    assert "/signin" in page.url
    page.get_by_label("Name").fill("ann")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("alert").inner_text() == "Wrong name or password."
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{site.url}/keys")
    cookie = next(c for c in page.context.cookies() if c["name"] == "imgz_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert page.get_by_role("navigation", name="Main").get_by_role("link", name="My uploads").is_visible()
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{site.url}/")
    assert page.get_by_role("link", name="Sign in").is_visible()
    page.goto(f"{site.url}/keys")
    assert "/signin" in page.url


def test_sign_in_throttling_shows_how_long_to_wait(site: LiveServer, person: Any) -> None:
    page = person()
    page.goto(f"{site.url}/signin")
    for _ in range(5):
        page.get_by_label("Name").fill("dan")
        page.get_by_label("Password").fill("guess")
        page.get_by_role("button", name="Sign in").click()
        assert "Wrong name or password." in page.get_by_role("alert").inner_text()
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    message = page.get_by_role("alert").inner_text()
    assert message.startswith("Too many sign-in attempts. Wait ") and "/signin" in page.url


def test_a_forged_form_and_a_forged_api_call_from_another_origin_are_refused(site: LiveServer, person: Any) -> None:
    page = person()
    browser_sign_in(page, site.url, "cid", PASSWORD)
    keys_before = site.query("SELECT COUNT(*) FROM api_keys")
    forged = (f'<!doctype html><form id="f" method="post" action="{site.url}/keys">'
              '<input name="label" value="forged"></form>'
              '<script>document.getElementById("f").submit()</script>').encode()
    with WebHost() as other:  # another port of 127.0.0.1: another origin, the same site
        url = other.add("/evil.html", forged, content_type="text/html")
        with page.expect_navigation():
            page.goto(url)
        assert "did not come from this site" in page.content()
        assert site.query("SELECT COUNT(*) FROM api_keys") == keys_before
        page.goto(other.add("/blank.html", b"<!doctype html><title>x</title>", content_type="text/html"))
        status = page.evaluate("""async (target) => {
            const body = new FormData();
            body.append("source", new Blob([new Uint8Array([137, 80, 78, 71])], {type: "image/png"}), "x.png");
            try {
                const answer = await fetch(target, {method: "POST", body, credentials: "include", mode: "no-cors"});
                return answer.type;
            } catch (err) { return "failed"; }
        }""", f"{site.url}/api/1/upload")
        assert status in {"opaque", "failed"}
    assert site.query("SELECT COUNT(*) FROM uploads WHERE user_id = (SELECT id FROM users WHERE name = 'cid')") == [(0,)]


def test_a_key_made_on_the_keys_page_works_until_it_is_revoked(site: LiveServer, person: Any) -> None:
    page = person()
    browser_sign_in(page, site.url, "ann", PASSWORD)
    key = new_key(page, site, "phone")
    assert key.startswith("imgz_")
    assert upload_with(site, key).status_code == 200
    page.goto(f"{site.url}/keys")
    assert key not in page.content()  # shown once
    page.get_by_role("button", name="Revoke phone").click()
    assert "refused from now on" in page.get_by_role("status").inner_text()
    refused = upload_with(site, key)
    assert refused.status_code == 401 and refused.json()["error"]["message"] == "Invalid API key."


def test_the_sharex_button_downloads_a_working_uploader(site: LiveServer, person: Any) -> None:
    page = person(accept_downloads=True)
    browser_sign_in(page, site.url, "ann", PASSWORD)
    page.goto(f"{site.url}/keys")
    with page.expect_download() as caught:
        page.get_by_role("button", name="ShareX uploader").click()
    download = caught.value
    assert download.suggested_filename.endswith(".sxcu")
    import json

    uploader = json.loads(open(download.path(), encoding="utf-8").read())
    assert uploader["RequestURL"] == f"{site.url}/api/1/upload"
    assert upload_with(site, uploader["Headers"]["X-API-Key"]).status_code == 200


def test_a_disabled_users_session_ends_at_once(site: LiveServer, person: Any) -> None:
    bob = person()
    browser_sign_in(bob, site.url, "bob", PASSWORD)
    key = new_key(bob, site)
    admin = person()
    browser_sign_in(admin, site.url, "root", PASSWORD)
    admin.goto(f"{site.url}/users")
    admin.get_by_role("button", name="Disable: bob").click()
    assert "bob is disabled" in admin.get_by_role("status").inner_text()
    bob.goto(f"{site.url}/keys")
    assert "/signin" in bob.url
    assert upload_with(site, key).status_code == 401
    admin.get_by_role("button", name="Enable: bob").click()
    assert upload_with(site, key).status_code == 200


def test_an_admin_adds_a_user_who_signs_in_through_the_link(site: LiveServer, person: Any) -> None:
    admin = person()
    browser_sign_in(admin, site.url, "root", PASSWORD)
    admin.goto(f"{site.url}/users")
    admin.get_by_label("Name").fill("eve")
    admin.get_by_role("button", name="Add user").click()
    link = admin.get_by_label("One-time link").input_value()
    eve = person()
    eve.goto(link)
    eve.get_by_label("New password").fill("eve's own words")
    eve.get_by_label("The same again").fill("eve's own words")
    eve.get_by_role("button", name="Set password and sign in").click()
    eve.wait_for_url(f"{site.url}/")
    eve.goto(f"{site.url}/keys")
    assert eve.url == f"{site.url}/keys"
    eve.goto(link)
    assert "used already or has expired" in eve.content()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_keys_page_in_light_and_dark(site: LiveServer, person: Any, scheme: str) -> None:
    from test_browser import ARTIFACTS

    page = person(color_scheme=scheme, viewport={"width": 1100, "height": 760})
    browser_sign_in(page, site.url, "cid", PASSWORD)
    new_key(page, site, f"laptop ({scheme})")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert (background == "rgb(19, 21, 25)") == (scheme == "dark")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"ui-keys-{scheme}.png"), full_page=True)
    narrow = person(color_scheme=scheme, viewport={"width": 360, "height": 740})
    browser_sign_in(narrow, site.url, "cid", PASSWORD)
    narrow.goto(f"{site.url}/keys")
    assert narrow.evaluate("document.documentElement.scrollWidth") <= 360
