"""The administrators' pages of the web console (issue 13): applications approved from the
users page, a user disabled (their keys refused by the API, their sign-in and their open
session ended) and enabled again; and nobody else reaches these pages.
"""

import os
import subprocess
import tempfile
import zipfile

import pytest

from conftest import KOALA_BIN, Cloud, source_env
from console import (Browser, MailCatcher, Session, artifact_dir, links_in, sign_in_admin,
                     sign_up)

TOOLS = os.path.dirname(KOALA_BIN)
ADMIN_PASSWORD = "koala-console-1"


@pytest.fixture
def mail():
    catcher = MailCatcher()
    yield catcher
    catcher.stop()


def zones(env):
    return subprocess.run([os.path.join(TOOLS, "euca-describe-availability-zones")], env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_admin_approves_disables_and_enables_users_in_a_browser(mail):
    data_dir = tempfile.mkdtemp(prefix="koala-e2e-")
    with open(os.path.join(data_dir, "koala.toml"), "w") as f:
        f.write(f'[mail]\nsmtp = "127.0.0.1:{mail.port}"\n')
    c = Cloud(data_dir).start()
    b = None
    try:
        sign_in_admin(c, ADMIN_PASSWORD)
        sign_up(c, mail, "ada", "analytical-engine")
        assert Session(c).apply("bob", "bob@example.test", "bobs-password").status == 200

        # Ada's credentials, downloaded from her page, work.
        ada = Session(c)
        assert ada.sign_in("ada", "analytical-engine").header("location") == "/"
        zipped = ada.post("/credentials", {"csrf": ada.get("/").csrf()})
        assert zipped.status == 200
        work = tempfile.mkdtemp(prefix="koala-creds-")
        with open(os.path.join(work, "creds.zip"), "wb") as f:
            f.write(zipped.raw)
        with zipfile.ZipFile(os.path.join(work, "creds.zip")) as z:
            z.extractall(work)
        env = dict(os.environ)
        env.update(source_env(os.path.join(work, "eucarc")))
        assert zones(env).returncode == 0

        # Not an administrator: the admin pages are refused.
        assert ada.get("/admin/users").status == 403
        token = ada.get("/").csrf()
        assert ada.post("/admin/users", {"csrf": token, "account": "bob", "user": "admin",
                                         "action": "disable"}).status == 403

        b = Browser(artifact_dir("admin"))
        b.open(c.console_url + "login")
        b.fill(name="admin", password=ADMIN_PASSWORD)
        b.submit()
        b.find("#admin-users").click()
        assert b.path == "/admin/users"
        assert b.text("#application-bob td:nth-child(3)") == "bob@example.test"
        b.shot("users-and-applications")
        b.press("#application-bob button[value=approve]")
        assert b.text("h1") == "Application approved"
        links_in(mail.wait_for("bob@example.test", "approved")[1])["activate"]

        b.open(c.console_url + "admin/users")
        assert not b.find_all("#application-bob")
        row = "#user-ada-admin"
        assert b.text(f"{row} .status") == "Enabled"
        assert not b.find_all("#user-eucalyptus-admin button"), "no one disables themselves"
        b.press(f"{row} button[value=disable]")
        assert b.text(f"{row} .status") == "Disabled"
        b.shot("ada-disabled")

        refused = zones(env)
        assert refused.returncode != 0 and "AuthFailure" in refused.stderr + refused.stdout
        assert ada.get("/").header("location") == "/login", "her open session ended"
        assert Session(c).sign_in("ada", "analytical-engine").status == 401

        b.press(f"{row} button[value=enable]")
        assert b.text(f"{row} .status") == "Enabled"
        assert zones(env).returncode == 0
        assert Session(c).sign_in("ada", "analytical-engine").header("location") == "/"
    finally:
        if b:
            b.close()
        c.stop()
