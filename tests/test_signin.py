"""Signing in, one-time links, sessions as rows, and the rule for who a request acts for, through
the app in this process with a cookie-keeping test client (one per browser)."""
from __future__ import annotations

from datetime import timedelta
from http.cookies import SimpleCookie

import pytest

import media
from imgz import db, ids, people, signin
from imgz.ratelimit import Limiter
from people import add_user, csrf_of

PASSWORD = "correct horse battery"


def browser(srv):
    return srv.flask.test_client()


def token_of(client, path="/signin"):
    return csrf_of(client.get(path).get_data(as_text=True))


def sign_in(client, name="ann", password=PASSWORD, **extra):
    token = token_of(client)
    return client.post("/signin", data={"csrf_token": token, "name": name, "password": password, **extra},
                       **({"headers": extra.pop("headers")} if "headers" in extra else {}))


def session_cookie(response):
    cookies = [h for h in response.headers.getlist("Set-Cookie") if h.startswith("imgz_session=")]
    assert cookies, "no session cookie was set"
    return cookies[-1]


def conn(srv):
    return srv.service.connection()


def live_sessions(srv, name):
    user = db.get_user_by_name(conn(srv), name)
    return db.count_sessions(conn(srv), user.id, srv.service.now())


# -- signing in --------------------------------------------------------------------------------

def test_signing_in_sets_a_protected_cookie_and_a_session_row(site):
    client = browser(site)
    answer = sign_in(client)
    assert answer.status_code == 303 and answer.headers["Location"] == "/"
    cookie = session_cookie(answer)
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert live_sessions(site, "ann") == 1
    page = client.get("/account")
    assert page.status_code == 200 and "ann" in page.get_data(as_text=True)
    assert page.headers["Cache-Control"] == "private, no-store"


def test_the_cookie_is_secure_behind_https(make_app):
    srv = make_app(trust_proxy=1)
    add_user(srv.config.database, "ann", PASSWORD)
    client = browser(srv)
    https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "10.0.0.1"}
    token = csrf_of(client.get("/signin", headers=https).get_data(as_text=True))
    answer = client.post("/signin", data={"csrf_token": token, "name": "ann", "password": PASSWORD},
                         headers={**https, "Referer": "https://localhost/signin"})
    assert answer.status_code == 303
    assert "Secure" in session_cookie(answer)


def test_signing_in_starts_a_new_session(site):
    client = browser(site)
    before = client.get("/signin")
    old_cookie = SimpleCookie(session_cookie(before))["imgz_session"].value
    old_token = csrf_of(before.get_data(as_text=True))
    answer = client.post("/signin", data={"csrf_token": old_token, "name": "ann", "password": PASSWORD})
    new_cookie = SimpleCookie(session_cookie(answer))["imgz_session"].value
    assert new_cookie != old_cookie
    # the token of the signed-out page does not carry over into the session
    assert csrf_of(client.get("/account").get_data(as_text=True)) != old_token
    # signing in again makes another session row, not the same one
    token = token_of(client, "/account")
    assert client.post("/signin", data={"csrf_token": token, "name": "ann", "password": PASSWORD}).status_code == 303
    assert live_sessions(site, "ann") == 2


@pytest.mark.parametrize("name,password", [("ann", "wrong password"), ("nobody", PASSWORD),
                                           ("", ""), ("ann", "x" * 10_000)])
def test_a_wrong_name_or_password_is_refused_alike(site, name, password):
    answer = sign_in(browser(site), name, password)
    assert answer.status_code == 401
    assert "Wrong name or password." in answer.get_data(as_text=True)
    assert "Set-Cookie" not in answer.headers or "_user_id" not in answer.headers["Set-Cookie"]


def test_a_user_without_a_password_cannot_sign_in(site):
    add_user(site.config.database, "carl", None)
    assert sign_in(browser(site), "carl", "").status_code == 401
    assert sign_in(browser(site), "carl", "anything at all").status_code == 401


def test_the_sign_in_form_needs_its_csrf_token(site):
    answer = browser(site).post("/signin", data={"name": "ann", "password": PASSWORD})
    assert answer.status_code == 400 and live_sessions(site, "ann") == 0


@pytest.mark.parametrize("target,expected", [("/uploads?x=1", "/uploads?x=1"), ("https://evil.example/", "/"),
                                             ("//evil.example/x", "/"), ("/\\evil.example", "/"), ("", "/")])
def test_after_signing_in_only_local_paths_are_followed(site, target, expected):
    answer = sign_in(browser(site), next=target)
    assert answer.headers["Location"] == expected


def test_a_page_that_needs_a_session_sends_guests_to_sign_in(site):
    answer = browser(site).get("/keys?a=1")
    assert answer.status_code == 303 and answer.headers["Location"] == "/signin?next=/keys?a=1"


# -- throttling --------------------------------------------------------------------------------

def test_failed_attempts_on_one_account_are_slowed_down(site):
    client = browser(site)
    for _ in range(5):
        assert sign_in(client, "ann", "wrong password").status_code == 401
    refused = sign_in(client, "ann", PASSWORD)  # even the right password waits its turn
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 12
    assert "Too many sign-in attempts" in refused.get_data(as_text=True)
    # another account is not slowed by ann's attempts
    assert sign_in(browser(site), "bob", PASSWORD).status_code == 303


def test_attempts_from_one_address_on_many_accounts_are_slowed_down(site):
    client = browser(site)
    statuses = [sign_in(client, f"name{n}", "wrong password").status_code for n in range(30)]
    # twenty in a burst (a few more as the bucket refills while the hashes are checked)
    assert statuses[:20] == [401] * 20 and 429 in statuses
    assert sign_in(client, "bob", PASSWORD).status_code == 429
    other = site.flask.test_client()
    token = token_of(other)
    answer = other.post("/signin", data={"csrf_token": token, "name": "bob", "password": PASSWORD},
                        environ_base={"REMOTE_ADDR": "10.9.9.9"})
    assert answer.status_code == 303


def test_the_waits_grow_but_never_lock_an_account_out():
    clock = [0.0]
    limiters = [(name, Limiter(limit, clock=lambda: clock[0])) for name, limit in signin.ATTEMPT_LIMITS]
    waits = []
    for _ in range(200):  # an attacker who tries again the moment the wait ends, for hours
        wait = max(limiter.hit("ann" if "user" in name else "10.0.0.1") for name, limiter in limiters)
        waits.append(wait)
        clock[0] += max(wait, 0.5)
    assert waits[:5] == [0] * 5
    assert max(waits[5:30]) <= 12  # a burst, then a try every 12 s
    assert max(waits) > 12  # keeping at it for an hour makes the waits longer
    assert max(waits) <= 120  # but never more than two minutes: never a lock-out
    assert sum(1 for w in waits if w == 0) >= 30


# -- one-time links ----------------------------------------------------------------------------

def new_link(srv, name="ann"):
    user = db.get_user_by_name(conn(srv), name)
    return people.new_link(conn(srv), user.id, srv.service.now())


def test_opening_a_link_uses_nothing_and_posting_its_form_uses_it(site):
    token = new_link(site)
    preview = site.flask.test_client()  # a chat app's link preview opens it
    assert preview.get(f"/password/{token}").status_code == 200
    client = browser(site)
    page = client.get(f"/password/{token}")
    assert page.status_code == 200 and "ann" in page.get_data(as_text=True)
    assert page.headers["Referrer-Policy"] == "same-origin" and page.headers["Cache-Control"] == "no-store"
    form = {"csrf_token": csrf_of(page.get_data(as_text=True)), "password": "a new password", "again": "a new password"}
    answer = client.post(f"/password/{token}", data=form)
    assert answer.status_code == 303
    assert client.get("/account").status_code == 200  # signed in
    assert sign_in(browser(site), "ann", "a new password").status_code == 303
    again = browser(site)
    assert again.get(f"/password/{token}").status_code == 404
    assert client.post(f"/password/{token}", data=form).status_code == 404


def test_a_new_password_from_a_link_signs_out_every_session(site):
    old = browser(site)
    sign_in(old)
    token = new_link(site)
    client = browser(site)
    page = client.get(f"/password/{token}")
    form = {"csrf_token": csrf_of(page.get_data(as_text=True)), "password": "another password", "again": "another password"}
    assert client.post(f"/password/{token}", data=form).status_code == 303
    assert old.get("/account").status_code == 303  # the old browser is signed out


@pytest.mark.parametrize("password,again,message", [("short", "short", "at least 8"),
                                                    ("long enough", "different", "differ"),
                                                    ("        ", "        ", "only spaces")])
def test_a_link_refuses_a_bad_password_and_stays_usable(site, password, again, message):
    token = new_link(site)
    client = browser(site)
    page = client.get(f"/password/{token}")
    form = {"csrf_token": csrf_of(page.get_data(as_text=True)), "password": password, "again": again}
    answer = client.post(f"/password/{token}", data=form)
    assert answer.status_code == 400 and message in answer.get_data(as_text=True)
    assert client.get(f"/password/{token}").status_code == 200


def test_a_link_expires_after_an_hour(site):
    user = db.get_user_by_name(conn(site), "ann")
    token = people.new_link(conn(site), user.id, site.service.now() - timedelta(minutes=61))
    assert browser(site).get(f"/password/{token}").status_code == 404


def test_a_link_needs_the_forms_csrf_token(site):
    token = new_link(site)
    client = browser(site)
    client.get(f"/password/{token}")
    answer = client.post(f"/password/{token}", data={"password": "a new password", "again": "a new password"})
    assert answer.status_code == 400
    assert client.get(f"/password/{token}").status_code == 200  # not used up


def test_the_passwd_command_prints_a_working_link(site):
    done = site.command("user", "passwd", "bob", "--url", "https://img.example")
    assert done.returncode == 0
    link = done.stdout.strip()
    assert link.startswith("https://img.example/password/")
    token = link.rsplit("/", 1)[1]
    assert browser(site).get(f"/password/{token}").status_code == 200


# -- signing out, password change, disabling ---------------------------------------------------

def test_signing_out_ends_this_session_only(site):
    one, two = browser(site), browser(site)
    sign_in(one)
    sign_in(two)
    token = token_of(one, "/account")
    assert one.post("/signout", data={"csrf_token": token}).status_code == 303
    assert one.get("/account").status_code == 303
    assert two.get("/account").status_code == 200
    assert live_sessions(site, "ann") == 1


def test_signing_out_everywhere_ends_every_session(site):
    one, two = browser(site), browser(site)
    sign_in(one)
    sign_in(two)
    one.post("/signout", data={"csrf_token": token_of(one, "/account"), "everywhere": "1"})
    assert two.get("/account").status_code == 303
    assert live_sessions(site, "ann") == 0


def test_signing_out_needs_the_token(site):
    client = browser(site)
    sign_in(client)
    assert client.post("/signout").status_code == 400
    assert client.get("/account").status_code == 200


def test_changing_the_password_signs_out_the_other_sessions(site):
    one, two = browser(site), browser(site)
    sign_in(one)
    sign_in(two)
    form = {"csrf_token": token_of(one, "/account"), "current": PASSWORD,
            "password": "brand new words", "again": "brand new words"}
    answer = one.post("/account", data=form)
    assert answer.status_code == 200 and "1 other session signed out" in answer.get_data(as_text=True)
    assert one.get("/account").status_code == 200
    assert two.get("/account").status_code == 303
    assert sign_in(browser(site), "ann", "brand new words").status_code == 303


def test_changing_the_password_needs_the_current_one(site):
    client = browser(site)
    sign_in(client)
    form = {"csrf_token": token_of(client, "/account"), "current": "not it",
            "password": "brand new words", "again": "brand new words"}
    assert client.post("/account", data=form).status_code == 400
    assert sign_in(browser(site), "ann", PASSWORD).status_code == 303


def test_disabling_a_user_ends_their_sessions_and_keys_at_once(site):
    client = browser(site)
    sign_in(client, "bob")
    key = site.command("key", "create", "--user", "bob").stdout.strip()
    assert site.upload(media.png(8, 8), api_key=key).status_code == 200
    assert site.command("user", "disable", "bob").returncode == 0
    assert client.get("/account").status_code == 303
    refused = site.upload(media.png(8, 8), api_key=key)
    assert refused.status_code == 401 and refused.json()["error"]["message"] == "Invalid API key."
    assert sign_in(browser(site), "bob", PASSWORD).status_code == 401
    assert site.command("user", "enable", "bob").returncode == 0
    assert site.upload(media.png(8, 8), api_key=key).status_code == 200
    assert sign_in(browser(site), "bob", PASSWORD).status_code == 303


def test_the_session_table_keeps_no_token(site):
    client = browser(site)
    sign_in(client)
    hashes = [row[0] for row in site.query("SELECT hash FROM sessions")]
    assert len(hashes) == 1 and len(hashes[0]) == 64
    assert all(len(row[0]) == 64 for row in site.query("SELECT hash FROM links"))
    assert ids.digest("x") != hashes[0]


def test_the_first_start_prints_a_link_that_sets_the_admins_password(make_server):
    import requests

    srv = make_server()
    assert srv.admin_link.startswith(f"{srv.url}/password/")
    http = requests.Session()
    page = http.get(srv.admin_link, timeout=10)
    assert page.status_code == 200 and "admin" in page.text
    form = {"csrf_token": csrf_of(page.text), "password": "the admin's words", "again": "the admin's words"}
    answer = http.post(srv.admin_link, data=form, timeout=30, allow_redirects=False,
                       headers={"Referer": srv.admin_link})
    assert answer.status_code == 303
    assert http.get(f"{srv.url}/keys", timeout=10, allow_redirects=False).status_code == 200
    assert http.get(srv.admin_link, timeout=10).status_code == 404
    token = srv.admin_link.rsplit("/", 1)[1]
    assert token not in "".join(srv.stderr)  # the server's log never shows a link
    srv.stop()
    again = make_server_again(srv)
    assert "password" not in "".join(again.stdout)  # later starts print no secret
    again.stop()


def make_server_again(srv):
    from conftest import LiveServer

    return LiveServer(srv.data, {k: v for k, v in srv.env.items() if k.startswith("IMGZ_") and k != "IMGZ_DATA"})


def test_the_sweep_deletes_ended_sessions_and_links(site):
    from imgz import jobs

    client = browser(site)
    sign_in(client)
    user = db.get_user_by_name(conn(site), "ann")
    now = site.service.now()
    db.add_session(conn(site), ids.digest("old"), user.id, now - timedelta(days=40), now - timedelta(days=10))
    people.new_link(conn(site), user.id, now - timedelta(hours=2))
    people.new_link(conn(site), user.id, now)
    jobs.sweep(site.service)
    assert site.query("SELECT COUNT(*) FROM sessions") == [(1,)]
    assert site.query("SELECT COUNT(*) FROM links") == [(1,)]
    assert client.get("/account").status_code == 200
