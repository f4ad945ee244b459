"""People in tests: users with passwords made straight in the database, and signing in through
the pages (a requests session, or a browser page)."""
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

import pytest
import requests

from imgz import db, passwords

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


PASSWORD = "correct horse battery"


def add_user(database: str, name: str, password: str | None = PASSWORD,
             admin: bool = False) -> int:
    """A user (made, or found by name) with this password; its id."""
    conn = db.connect(database)
    try:
        db.migrate(conn)
        found = db.get_user_by_name(conn, name)
        user_id = found.id if found else db.add_user(conn, name, admin, datetime.now(timezone.utc))
        db.set_password(conn, user_id, passwords.hash_password(password) if password else None)
        return user_id
    finally:
        conn.close()


def csrf_of(html: str) -> str:
    """The CSRF token a page carries (in a form, or in its csrf-token meta tag)."""
    found = _CSRF.search(html) or _META.search(html)
    assert found, "the page carries no CSRF token"
    return found.group(1)


def sign_in(base: str, name: str, password: str = "correct horse battery",
            session: requests.Session | None = None) -> tuple[requests.Session, str]:
    """A requests session signed in through the sign-in form, and its CSRF token."""
    http = session or requests.Session()
    token = csrf_of(http.get(f"{base}/signin", timeout=10).text)
    answer = http.post(f"{base}/signin", data={"csrf_token": token, "name": name, "password": password},
                       timeout=30, allow_redirects=False)
    assert answer.status_code == 303, answer.text[:400]
    return http, csrf_of(http.get(f"{base}/account", timeout=10).text)


def browser_sign_in(page: Any, base: str, name: str, password: str = "correct horse battery") -> None:
    """Sign a Playwright page in through the form, as a person would."""
    page.goto(f"{base}/signin", wait_until="load")
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/signin" not in url)


@pytest.fixture
def site(make_app: Any) -> Any:
    """An app in this process with two users who have passwords: ann and bob."""
    srv = make_app()
    add_user(srv.config.database, "ann", PASSWORD)
    add_user(srv.config.database, "bob", PASSWORD)
    return srv
