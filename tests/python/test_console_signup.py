"""Sign-up on the web console (issue 13): apply, the administrator's mail with approve and
reject links, the applicant's activation mail, activation, sign-in; links that work once and
expire; a restart in the middle loses nothing. Mail is caught by a real SMTP server.
"""

import glob
import os
import tempfile
import time
import urllib.parse

import pytest

from conftest import Cloud
from console import Browser, MailCatcher, Session, artifact_dir, links_in, sign_in_admin

ADMIN_PASSWORD = "koala-console-1"
ADMIN_MAIL = "admin@cloud.test"


def cloud_with(toml):
    data_dir = tempfile.mkdtemp(prefix="koala-e2e-")
    with open(os.path.join(data_dir, "koala.toml"), "w") as f:
        f.write(toml)
    return Cloud(data_dir).start()


@pytest.fixture
def mail():
    catcher = MailCatcher()
    yield catcher
    catcher.stop()


def mailing_cloud(mail, extra=""):
    c = cloud_with(f'[mail]\nsmtp = "127.0.0.1:{mail.port}"\nfrom = "Koala <koala@cloud.test>"\n'
                   + extra)
    sign_in_admin(c, ADMIN_PASSWORD)
    return c


def test_a_sign_up_through_approval_and_activation_in_a_browser(mail):
    c = mailing_cloud(mail)
    try:
        walk_through_sign_up(c, mail)
    finally:
        c.stop()


def walk_through_sign_up(c, mail):
    b = Browser(artifact_dir("sign-up"))
    try:
        b.open(c.console_url + "login")
        b.find("#apply").click()
        assert b.path == "/apply"
        b.shot("apply")
        b.fill(name="ada", full_name="Ada Lovelace", email="ada@example.test",
               password="analytical-engine", password2="analytical-engin",
               notes="Difference Engine lab")
        b.submit()
        assert b.text("#password2-error") == "The two passwords differ."
        assert b.find("#notes").get_attribute("value") == "Difference Engine lab"
        b.shot("apply-mistake")
        b.fill(password="analytical-engine", password2="analytical-engine")
        b.submit()
        assert b.text("h1") == "Application sent"
        b.shot("application-sent")

        subject, text = mail.wait_for(ADMIN_MAIL, "applies for an account")
        assert "ada" in subject
        assert "Ada Lovelace <ada@example.test>" in text
        assert "Difference Engine lab" in text
        links = links_in(text)
        assert {"approve", "reject"} <= links.keys(), text

        # Pending: nobody can sign in as the applicant.
        assert Session(c).sign_in("ada", "analytical-engine").status == 401

        b.open(links["approve"])
        assert b.text("h1") == "Approve this application?"
        assert b.text("#app-email") == "ada@example.test"
        b.shot("approve")
        b.submit()
        assert b.text("h1") == "Application approved"
        b.shot("approved")

        subject, text = mail.wait_for("ada@example.test", "approved")
        activate = links_in(text)["activate"]
        assert Session(c).sign_in("ada", "analytical-engine").status == 401, "not activated"

        b.open(activate)
        assert b.text("h1") == "Activate your account"
        b.submit()
        assert b.text("h1") == "Your account is ready"
        b.shot("activated")

        b.open(c.console_url + "login")
        b.fill(name="ada", password="analytical-engine")
        b.submit()
        assert b.path == "/"
        assert b.text("#account").startswith("ada (")
        assert b.text("#role") == "User"
        assert b.text("#email") == "ada@example.test"
        b.shot("personal-page")
    finally:
        b.close()

    # Each link works once; and the other link of a decided application no longer works.
    s = Session(c)
    again = s.get(urllib.parse.urlsplit(links["approve"]).path)
    assert again.status == 410 and "already used" in again.body
    rejected_late = s.get(urllib.parse.urlsplit(links["reject"]).path)
    assert rejected_late.status == 410 and "account exists already" in rejected_late.body
    page, used = Session(c).follow(activate)
    assert used.status == 410


def test_links_are_refused_when_used_twice_expired_or_unknown(mail):
    c = mailing_cloud(mail, "[console]\nlink_lifetime_secs = 3\n")
    try:
        s = Session(c)
        assert s.apply("bob", "bob@example.test", "bobs-password").status == 200
        links = links_in(mail.wait_for(ADMIN_MAIL, "bob applies")[1])

        # Rejected: the applicant is told, the link is spent, and bob cannot sign in.
        page, done = s.follow(links["reject"])
        assert page.status == 200 and done.status == 200, done.body
        assert "rejected" in done.body.lower()
        mail.wait_for("bob@example.test", "declined")
        page, twice = s.follow(links["reject"])
        assert twice.status == 410 and "already used" in twice.body
        assert s.get(urllib.parse.urlsplit(links["approve"]).path).status == 410
        assert s.sign_in("bob", "bobs-password").status == 401

        # A link past its lifetime does nothing, shown or posted.
        assert s.apply("carol", "carol@example.test", "carols-password").status == 200
        late = links_in(mail.wait_for(ADMIN_MAIL, "carol applies")[1])["approve"]
        time.sleep(4)
        path = urllib.parse.urlsplit(late).path
        shown = s.get(path)
        assert shown.status == 410 and "expired" in shown.body
        token = s.get("/login").csrf()
        posted = s.post(path, {"csrf": token})
        assert posted.status == 410
        assert mail.count("carol@example.test") == 0

        # A made-up token is nobody's link; a POST without the page's token is refused.
        assert s.get("/approve/" + "A" * 43).status == 404
        assert s.post(path, {}).status == 403
    finally:
        c.stop()


def test_a_restart_in_the_middle_of_a_sign_up_loses_nothing(mail):
    c = mailing_cloud(mail)
    try:
        assert Session(c).apply("dora", "dora@example.test", "doras-password").status == 200
        approve = links_in(mail.wait_for(ADMIN_MAIL, "dora applies")[1])["approve"]
        c.stop()
        c.start()
        # The console's port changed with the restart (port 0): the link's path is the
        # same on the new one.
        s = Session(c)
        page, done = s.follow(c.console_url + urllib.parse.urlsplit(approve).path[1:])
        assert done.status == 200 and "approved" in done.body.lower(), done.body
        activate = links_in(mail.wait_for("dora@example.test", "approved")[1])["activate"]
        c.stop()
        c.start()
        s = Session(c)
        page, done = s.follow(c.console_url + urllib.parse.urlsplit(activate).path[1:])
        assert done.status == 200 and "ready" in done.body, done.body
        signed = s.sign_in("dora", "doras-password")
        assert (signed.status, signed.header("location")) == (303, "/")
    finally:
        c.stop()


def test_a_taken_name_is_told_by_mail_not_on_the_page(mail):
    c = mailing_cloud(mail)
    try:
        s = Session(c)
        first = s.apply("erin", "erin@example.test", "erins-password")
        second = s.apply("erin", "mallory@example.test", "mallorys-password")
        assert first.status == second.status == 200
        assert "Application sent" in second.body
        subject, text = mail.wait_for("mallory@example.test", "name is taken")
        assert "erin" in text and "/apply" in text
        # Reserved names and bad names are the form's own checks, beside the field.
        reserved = s.apply("eucalyptus", "x@example.test", "some-password")
        assert reserved.status == 400 and "reserved" in reserved.error()
        bad = s.apply("Not Valid", "x@example.test", "some-password")
        assert bad.status == 400 and "lowercase" in bad.error()
    finally:
        c.stop()


def test_without_a_relay_mail_is_written_to_files_and_the_console_says_so():
    c = cloud_with("")
    try:
        admin = sign_in_admin(c, ADMIN_PASSWORD)
        home = admin.get("/")
        mail_dir = os.path.join(c.data_dir, "mail")
        assert "No mail relay is set" in home.body and mail_dir in home.body
        assert Session(c).apply("fred", "fred@example.test", "freds-password").status == 200
        deadline = time.monotonic() + 30
        while not glob.glob(os.path.join(mail_dir, "*.eml")) and time.monotonic() < deadline:
            time.sleep(0.1)
        (eml,) = glob.glob(os.path.join(mail_dir, "*.eml"))
        with open(eml) as f:
            text = f.read()
        assert "To: admin@cloud.test" in text
        assert "fred applies for an account" in text
    finally:
        c.stop()
