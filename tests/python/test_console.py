"""The web console (issue 13): what a person sees in a real browser, and what an attacker's
requests get. Each test cloud serves its console on a free port its banner names.
"""

import os
import socket
import ssl
import subprocess
import tempfile
import urllib.parse
import zipfile

import pytest

from conftest import KOALA_BIN, Cloud
from console import Browser, Session, artifact_dir, cloud_context, sign_in_admin

NEW_PASSWORD = "koala-console-1"
TOOLS = os.path.dirname(KOALA_BIN)


def fresh_cloud():
    return Cloud(tempfile.mkdtemp(prefix="koala-e2e-")).start()


@pytest.fixture(scope="module")
def console_cloud():
    c = fresh_cloud()
    yield c
    c.stop()


def test_the_admins_first_sign_in_in_a_browser():
    """admin / admin, forced to choose a password, give an e-mail and confirm Walrus' URL
    (an error beside the field it concerns), then the personal page; the default password no
    longer works, the new one does; and wrong passwords are soon refused outright, even the
    right one."""
    c = fresh_cloud()
    b = Browser(artifact_dir("first-sign-in"))
    try:
        b.open(c.console_url)
        assert b.path == "/login"
        assert "Sign in" in b.driver.title
        b.shot("sign-in")

        b.fill(name="admin", password="not-the-password")
        b.submit()
        assert b.text("#login-error") == "The user name or password is wrong."
        b.shot("wrong-password")

        b.fill(name="admin", password="admin")
        b.submit()
        assert b.path == "/first-run"
        assert b.text("h1") == "Set up the cloud"
        walrus = b.find("#walrus_url").get_attribute("value")
        assert walrus == c.s3_url, "Walrus' URL defaults to this cloud's"
        b.shot("first-run")

        b.fill(password=NEW_PASSWORD, password2="something-else", email="root@cloud.test")
        b.submit()
        assert b.path == "/first-run"
        assert b.text("#password2-error") == "The two passwords differ."
        assert b.find("#password2").get_attribute("aria-invalid") == "true"
        assert b.find("#email").get_attribute("value") == "root@cloud.test", "kept"
        b.shot("passwords-differ")

        b.fill(password=NEW_PASSWORD, password2=NEW_PASSWORD, email="root@cloud.test")
        b.submit()
        assert b.path == "/"
        assert b.text("#role") == "Cloud administrator"
        assert b.text("#email") == "root@cloud.test"
        assert b.text("#walrus-url") == c.s3_url
        assert b.text("#account").startswith("eucalyptus (")
        b.shot("personal-page")
        b.driver.set_window_size(390, 844)
        b.shot("personal-page-phone")
        b.driver.set_window_size(1280, 900)

        b.open(c.console_url + "first-run")
        assert b.path == "/", "the first run is done"

        b.submit(".bar form")
        assert b.path == "/login"
        b.open(c.console_url)
        assert b.path == "/login"
        b.fill(name="admin", password="admin")
        b.submit()
        assert b.text("#login-error") == "The user name or password is wrong."
        b.fill(name="admin", password=NEW_PASSWORD)
        b.submit()
        assert b.path == "/"
        b.shot("signed-in-again")
    finally:
        b.close()

    # The settings outlive a restart.
    c.stop()
    c.start()
    s = Session(c)
    assert s.sign_in("admin", NEW_PASSWORD).header("location") == "/"
    assert c.s3_url in s.get("/").body

    # Guessing: after a burst of wrong passwords for a user, every attempt is refused for a
    # while, the right password too, with a 429 and when to come back.
    s = Session(c)
    statuses = [s.sign_in("admin", f"guess-{i}").status for i in range(5)]
    assert statuses == [401] * 5
    refused = s.sign_in("admin", NEW_PASSWORD)
    assert refused.status == 429
    assert int(refused.header("retry-after")) > 0
    assert "Too many attempts" in refused.error()
    assert "__Host-koala" not in s.cookies
    c.stop()


def test_plain_http_is_sent_to_https(console_cloud):
    port = urllib.parse.urlsplit(console_cloud.console_url).port
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET /login?next=1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        answer = sock.recv(4096).decode()
    head, _, body = answer.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 301"), answer
    assert f"Location: https://127.0.0.1:{port}/login?next=1" in head.split("\r\n")
    assert "HTTPS only" in body


def test_the_console_shows_the_clouds_certificate(console_cloud):
    url = urllib.parse.urlsplit(console_cloud.console_url)
    for name in ("localhost", "127.0.0.1"):
        with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
            with cloud_context(console_cloud).wrap_socket(sock, server_hostname=name) as tls:
                assert tls.version() in ("TLSv1.2", "TLSv1.3")
    # A client trusting only the public authorities refuses it (nothing self-signed slips by).
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        with pytest.raises(ssl.SSLCertVerificationError):
            ssl.create_default_context().wrap_socket(sock, server_hostname="localhost")


def test_pages_carry_safe_headers_and_cookies(console_cloud):
    s = Session(console_cloud)
    page = s.get("/login")
    assert page.status == 200
    assert "default-src 'self'" in page.header("content-security-policy")
    assert page.header("x-frame-options") == "DENY"
    assert page.header("cache-control") == "no-store"
    signed = sign_in_admin(console_cloud, NEW_PASSWORD)
    session_cookie = [c for c in signed.set_cookie_headers if c.startswith("__Host-koala=")]
    assert session_cookie, signed.set_cookie_headers
    flags = {f.strip() for f in session_cookie[-1].split(";")[1:]}
    assert {"Path=/", "Secure", "HttpOnly", "SameSite=Lax"} <= flags
    assert signed.get("/").status == 200
    assert signed.get("/no/such/page").status == 404


def test_forms_without_their_token_are_refused(console_cloud):
    a = sign_in_admin(console_cloud, NEW_PASSWORD)
    b = sign_in_admin(console_cloud, NEW_PASSWORD)
    token_a = a.get("/").csrf()
    token_b = b.get("/").csrf()
    assert token_a != token_b

    # Sign-out is a form: without a token, with another session's, or posted from another
    # site, it is refused and the session lives on.
    for form, headers in (({}, None), ({"csrf": token_b}, None), ({"csrf": "x" * 43}, None),
                          ({"csrf": token_a}, {"Origin": "https://evil.example"}),
                          ({"csrf": token_a}, {"Sec-Fetch-Site": "cross-site"})):
        refused = a.post("/logout", form, headers=headers)
        assert refused.status == 403, (form, headers, refused.status)
        assert "did not come from this console" in refused.body
        assert a.get("/").status == 200

    # The sign-in form too: without the token its page gave, nobody is signed in.
    fresh = Session(console_cloud)
    fresh.get("/login")
    refused = fresh.post("/login", {"name": "admin", "password": NEW_PASSWORD})
    assert refused.status == 403
    assert "__Host-koala" not in fresh.cookies

    # With its own token, sign-out ends the session: the old cookie is worth nothing.
    cookie = dict(a.cookies)
    assert a.post("/logout", {"csrf": token_a}).header("location") == "/login"
    replay = Session(console_cloud)
    replay.cookies = cookie
    assert replay.get("/").header("location") == "/login"
    assert b.get("/").status == 200, "another session is untouched"


def test_sign_in_errors_tell_nothing_of_who_exists(console_cloud):
    sign_in_admin(console_cloud, NEW_PASSWORD)
    s = Session(console_cloud)
    wrong_password = s.sign_in("admin", "wrong-password")
    unknown_user = s.sign_in("nobody@nowhere", "wrong-password")
    unknown_account = s.sign_in("no-such-account", "wrong-password")
    assert wrong_password.status == unknown_user.status == unknown_account.status == 401
    assert (wrong_password.error() == unknown_user.error() == unknown_account.error()
            == "The user name or password is wrong.")
    # A user name that exists nowhere is limited like any other.
    statuses = [s.sign_in("mallory", "guess").status for _ in range(6)]
    assert statuses == [401] * 5 + [429]


def test_the_first_run_checks_each_field():
    c = fresh_cloud()
    try:
        s = Session(c)
        assert s.sign_in("admin", "admin").header("location") == "/first-run"
        # Until the first run is done, every page leads back to it.
        assert s.get("/").header("location") == "/first-run"
        token = s.get("/first-run").csrf()
        bad = s.post("/first-run", {"csrf": token, "password": "short", "password2": "short",
                                    "email": "not-an-address", "walrus_url": "ftp://x"})
        assert bad.status == 400
        assert "at least 8 characters" in bad.error()
        assert "e-mail address" in bad.error()
        assert "is not an http:// or https:// URL" in bad.error()
        same = s.post("/first-run", {"csrf": token, "password": "admin", "password2": "admin",
                                     "email": "a@b.test", "walrus_url": c.s3_url})
        assert same.status == 400
        assert s.get("/").header("location") == "/first-run", "nothing was changed"

        # A Walrus elsewhere: the URL confirmed here is the cloud property
        # cloud.walrus_url, which the credentials euca_conf downloads name too.
        elsewhere = "http://walrus.cloud.test:8773/services/Walrus"
        done = s.post("/first-run", {"csrf": token, "password": NEW_PASSWORD,
                                     "password2": NEW_PASSWORD, "email": "a@b.test",
                                     "walrus_url": elsewhere})
        assert done.header("location") == "/", done.body
        assert elsewhere in s.get("/").body
        props = subprocess.run([os.path.join(TOOLS, "euca-describe-properties"),
                                "cloud.walrus_url"], env=c.admin_env(), capture_output=True,
                               text=True, timeout=60)
        assert props.returncode == 0, props.stderr
        assert elsewhere in props.stdout
        with tempfile.TemporaryDirectory() as work:
            zipped = os.path.join(work, "creds.zip")
            got = subprocess.run([os.path.join(TOOLS, "euca_conf"), "--get-credentials",
                                  zipped], env=c.admin_env(), capture_output=True, text=True,
                                 timeout=60)
            assert got.returncode == 0, got.stderr
            with zipfile.ZipFile(zipped) as z:
                eucarc = z.read("eucarc").decode()
        assert f"S3_URL='{elsewhere}'" in eucarc or f"S3_URL={elsewhere}" in eucarc, eucarc
    finally:
        c.stop()
