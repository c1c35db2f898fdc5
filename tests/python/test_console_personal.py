"""A person's own page on the web console (issue 13): the credentials zip, downloaded by the
browser, unzipped and used with euca2ools at once; access keys made, deactivated (and then
refused by the API) and deleted; the password changed; and one person's session cannot
touch another's keys.
"""

import glob
import os
import subprocess
import tempfile
import time
import zipfile

import pytest

from conftest import KOALA_BIN, Cloud, source_env
from console import Browser, MailCatcher, Session, artifact_dir, sign_in_admin, sign_up

TOOLS = os.path.dirname(KOALA_BIN)


@pytest.fixture(scope="module")
def mail():
    catcher = MailCatcher()
    yield catcher
    catcher.stop()


@pytest.fixture(scope="module")
def people(mail):
    """A cloud whose mail the module catches, with two accounts made by sign-up."""
    data_dir = tempfile.mkdtemp(prefix="koala-e2e-")
    with open(os.path.join(data_dir, "koala.toml"), "w") as f:
        f.write(f'[mail]\nsmtp = "127.0.0.1:{mail.port}"\n')
    c = Cloud(data_dir).start()
    sign_in_admin(c, "koala-console-1")
    sign_up(c, mail, "ada", "analytical-engine")
    sign_up(c, mail, "bob", "bobs-password")
    yield c
    c.stop()


def euca(tool, env, *args):
    return subprocess.run([os.path.join(TOOLS, tool), *args], env=env, capture_output=True,
                          text=True, timeout=120)


def test_credentials_keys_and_password_in_a_browser(people):
    c = people
    downloads = tempfile.mkdtemp(prefix="koala-downloads-")
    b = Browser(artifact_dir("personal"), downloads=downloads)
    try:
        b.sign_in(c, "ada", "analytical-engine")
        assert b.path == "/"
        rows = b.find_all("#keys tbody tr")
        assert len(rows) == 1, "the key made with the account"
        first_key = rows[0].get_attribute("id").removeprefix("key-")
        b.shot("personal-page")

        # The zip `euca_conf --get-credentials` writes, downloaded and used as is.
        b.find("#download-credentials").click()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = [p for p in glob.glob(os.path.join(downloads, "*.zip"))]
            if done and not glob.glob(os.path.join(downloads, "*.crdownload")):
                break
            time.sleep(0.2)
        (zipped,) = glob.glob(os.path.join(downloads, "*.zip"))
        assert os.path.basename(zipped) == "koala-ada-admin-credentials.zip"
        work = tempfile.mkdtemp(prefix="koala-creds-")
        with zipfile.ZipFile(zipped) as z:
            names = set(z.namelist())
            z.extractall(work)
        assert {"eucarc", "euca2ools.ini", "cloud-cert.pem"} <= names, names
        assert any(n.endswith("-cert.pem") and n.startswith("euca2-admin-") for n in names)
        env = dict(os.environ, PATH=os.environ["PATH"])
        env.update(source_env(os.path.join(work, "eucarc")))
        assert env["AWS_ACCESS_KEY_ID"] == first_key
        zones = euca("euca-describe-availability-zones", env)
        assert zones.returncode == 0, zones.stderr
        assert "AVAILABILITYZONE" in zones.stdout
        images = euca("euca-describe-images", env)
        assert images.returncode == 0, images.stderr

        # A second key: its secret once; a third is over the quota of two.
        b.press("#create-key")
        new_key = b.text("#new-key-id")
        secret = b.text("#new-key-secret")
        assert new_key.startswith("AKIA") and len(secret) == 40
        b.shot("new-key")
        key_env = dict(env, AWS_ACCESS_KEY_ID=new_key, AWS_SECRET_ACCESS_KEY=secret)
        assert euca("euca-describe-availability-zones", key_env).returncode == 0
        b.open(c.console_url)
        assert len(b.find_all("#keys tbody tr")) == 2
        b.press("#create-key")
        assert "AccessKeysPerUser" in b.text("main")

        # Deactivated, the API refuses it; activated, accepted; deleted, gone.
        b.open(c.console_url)
        b.press(f"#key-{new_key} button[value=deactivate]")
        assert b.text(f"#key-{new_key} .status") == "Inactive"
        b.shot("key-inactive")
        refused = euca("euca-describe-availability-zones", key_env)
        assert refused.returncode != 0
        assert "AuthFailure" in refused.stderr + refused.stdout
        b.submit(f"#key-{new_key} form")  # its first button: activate
        assert b.text(f"#key-{new_key} .status") == "Active"
        assert euca("euca-describe-availability-zones", key_env).returncode == 0
        b.press(f"#key-{new_key} button[value=delete]")
        assert not b.find_all(f"#key-{new_key}")
        assert euca("euca-describe-availability-zones", key_env).returncode != 0

        # The password: the current one first, then the new twice.
        b.open(c.console_url + "password")
        b.fill(current="not-it", password="babbage-engine", password2="babbage-engine")
        b.submit()
        assert b.text("#current-error") == "This is not your current password."
        b.shot("password-wrong")
        b.fill(current="analytical-engine", password="babbage-engine",
               password2="babbage-engine")
        b.submit()
        assert b.text("h1") == "Password changed"
        b.open(c.console_url)
        b.submit(".bar form")
        b.fill(name="ada", password="analytical-engine")
        b.submit()
        assert b.text("#login-error") == "The user name or password is wrong."
        b.fill(name="ada", password="babbage-engine")
        b.submit()
        assert b.path == "/"
    finally:
        b.close()


def test_one_persons_session_cannot_touch_anothers_keys(people):
    bob = Session(people)
    assert bob.sign_in("bob", "bobs-password").header("location") == "/"
    home = bob.get("/")
    bob_key = home.body.split('id="key-', 1)[1].split('"', 1)[0]
    ada = Session(people)
    signed = ada.sign_in("ada", "babbage-engine")
    if signed.status == 401:  # the browser test did not run first
        signed = ada.sign_in("ada", "analytical-engine")
    assert signed.header("location") == "/"
    token = ada.get("/").csrf()
    for action in ("deactivate", "delete"):
        refused = ada.post(f"/keys/{bob_key}", {"csrf": token, "action": action})
        assert refused.status == 404, refused.body
        assert "You have no access key" in refused.body
    # Bob's own token does not work in Ada's session either.
    bob_token = bob.get("/").csrf()
    assert ada.post("/keys", {"csrf": bob_token}).status == 403
    assert f'id="key-{bob_key}"' in bob.get("/").body
    assert ">Active<" in bob.get("/").body
    # Her own credentials are hers to download: the zip names her key, not Bob's.
    own = ada.post("/credentials", {"csrf": token})
    assert own.status == 200 and own.header("content-type") == "application/zip"
