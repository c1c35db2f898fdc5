"""The administrators' pages of the web console (issue 13): applications approved from the
users page, a user disabled (their keys refused by the API, their sign-in and their open
session ended) and enabled again; and nobody else reaches these pages.
"""

import os
import subprocess
import tempfile
import time
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
        b.sign_in(c, "admin", ADMIN_PASSWORD)
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

        # A user of Ada's account made with the API, deleted from the page with its key.
        koala = lambda *args: subprocess.run([KOALA_BIN, "admin", *args], env=c.admin_env(),
                                             capture_output=True, text=True, timeout=60)
        made = koala("create-user", "dave", "--account", "ada")
        assert made.returncode == 0, made.stderr
        key = koala("create-access-key", "--user", "dave", "--account", "ada")
        assert key.returncode == 0, key.stderr
        akid, secret = key.stdout.split()[:2]
        dave_env = dict(env, AWS_ACCESS_KEY_ID=akid, AWS_SECRET_ACCESS_KEY=secret)
        b.open(c.console_url + "admin/users")
        assert b.find_all("#user-ada-dave")
        assert not b.find_all("#user-ada-admin button[value=delete]"), "admins go with accounts"
        b.press("#user-ada-dave button[value=delete]")
        assert not b.find_all("#user-ada-dave")
        gone = zones(dave_env)
        assert gone.returncode != 0 and "AuthFailure" in gone.stderr + gone.stdout
        users = koala("list-users", "--account", "ada")
        assert "dave" not in users.stdout.split(), users.stdout

        # An account added by the admin: the person activates it and chooses a password.
        b.fill(name="Carol!", full_name="Carol Shaw", email="carol@example.test")
        b.press("#add-submit")
        assert "lowercase" in b.text("#add-error")
        assert b.find("#add-email").get_attribute("value") == "carol@example.test"
        b.fill(name="carol")
        b.press("#add-submit")
        assert "carol@example.test was sent the activation link" in b.text("#added")
        b.shot("account-added")
        activate = links_in(mail.wait_for("carol@example.test", "made for you")[1])["activate"]
        carol = Session(c)
        path = activate.split("/", 3)[3]
        page = carol.get("/" + path)
        assert 'name="password"' in page.body
        differ = carol.post("/" + path, {"csrf": page.csrf(), "password": "carols-password",
                                         "password2": "carols-passwort"})
        assert differ.status == 400 and "differ" in differ.error()
        done = carol.post("/" + path, {"csrf": page.csrf(), "password": "carols-password",
                                       "password2": "carols-password"})
        assert done.status == 200 and "ready" in done.body, done.body
        assert carol.sign_in("carol", "carols-password").header("location") == "/"
    finally:
        if b:
            b.close()
        c.stop()


def test_images_and_configuration_pages(tmp_path):
    """The images page lists every account's images and deregisters through EC2's own
    DeregisterImage; the configuration page shows the cluster, its node and the room for
    each VM type, and sets a cloud property as euca-modify-property does."""
    from conftest import make_client, make_ec2
    from test_ec2_images import bundle, upload

    c = Cloud(tempfile.mkdtemp(prefix="koala-e2e-")).start()
    b = None
    try:
        s3 = make_client(c.s3_url, c.region, c.access_key, c.secret_key)
        ec2 = make_ec2(c, c.access_key, c.secret_key)
        s3.create_bucket(Bucket="console-images")
        manifest, parts = bundle(c, tmp_path, "vmlinuz-console", 50_000, ["--kernel", "true"])
        eki = ec2.register_image(ImageLocation=upload(s3, "console-images", "k", manifest, parts),
                                 Name="console-kernel")["ImageId"]
        sign_in_admin(c, ADMIN_PASSWORD)

        b = Browser(artifact_dir("admin-config"))
        b.sign_in(c, "admin", ADMIN_PASSWORD)
        b.open(c.console_url + "admin/images")
        row = f"#image-{eki}"
        assert b.text(f"{row} td:nth-child(2)") == "console-kernel"
        assert b.text(f"{row} td:nth-child(3)") == "eucalyptus"
        assert b.text(f"{row} td:nth-child(4)") == "kernel"
        b.shot("images")
        b.press(f"{row} button")
        assert b.path == "/admin/images"
        assert not b.find_all(row)
        assert ec2.describe_images(ImageIds=[])["Images"] == []

        b.open(c.console_url + "admin/config")
        assert b.text("#config-walrus-url") == c.s3_url
        assert "cluster01" in b.text("#clusters")
        nodes = b.find_all("#clusters tbody tr")
        assert len(nodes) == 1, b.text("#clusters")
        # The node of `koala up` answers (under TCG here) with room for small instances.
        deadline = time.monotonic() + 30
        while b.text("#clusters tbody tr .state") != "up" and time.monotonic() < deadline:
            time.sleep(1)
            b.open(c.console_url + "admin/config")
        assert b.text("#clusters tbody tr .state") == "up"
        assert int(b.text("#vmtype-m1\\.small .free")) > 0
        b.shot("configuration")

        name = "cloud.instances.start_timeout"
        css_name = name.replace(".", "\\.")
        box = b.find(f"#value-{css_name}")
        box.clear()
        box.send_keys("900")
        b.press(f"#property-{css_name} button.secondary")
        props = subprocess.run([os.path.join(TOOLS, "euca-describe-properties"), name],
                               env=c.admin_env(), capture_output=True, text=True, timeout=60)
        assert "900" in props.stdout, props.stdout + props.stderr
        # A value the property refuses is refused with the API's reason.
        s = sign_in_admin(c, ADMIN_PASSWORD)
        refused = s.post("/admin/config", {"csrf": s.get("/").csrf(), "name": name,
                                           "value": "forever"})
        assert refused.status == 400 and "number of seconds" in refused.body
    finally:
        if b:
            b.close()
        c.stop()


def test_an_account_is_deleted_once_it_owns_nothing():
    """Deleting an account (the Users page's "Delete account", Euare's DeleteAccount): refused
    with what it still owns (a bucket here) and nothing lost; once that is gone, the account
    goes with its users, keys, key pairs and groups, and its name can be taken again."""
    from botocore.exceptions import ClientError
    from conftest import make_client, make_ec2

    c = Cloud(tempfile.mkdtemp(prefix="koala-e2e-")).start()
    b = None
    try:
        erin = c.create_account("erin")
        keys = (erin["AWS_ACCESS_KEY_ID"], erin["AWS_SECRET_ACCESS_KEY"])
        s3 = make_client(c.s3_url, c.region, *keys)
        ec2 = make_ec2(c, *keys)
        s3.create_bucket(Bucket="erins-photos")
        s3.put_object(Bucket="erins-photos", Key="cat.jpg", Body=b"meow")
        ec2.create_key_pair(KeyName="erin-key")
        ec2.create_security_group(GroupName="web", Description="web servers")
        koala = lambda *args, env=c.admin_env(): subprocess.run(
            [KOALA_BIN, "admin", *args], env=env, capture_output=True, text=True, timeout=60)
        made = koala("create-user", "frank", "--account", "erin")
        assert made.returncode == 0, made.stderr

        # The API: users besides admin go only when asked (Recursive); only a cloud
        # administrator deletes accounts; the cloud's own account is never deleted.
        kept = koala("delete-account", "erin")
        assert kept.returncode != 0 and "DeleteConflict" in kept.stderr, kept.stderr
        assert "frank" in kept.stderr, kept.stderr
        own = koala("delete-account", "erin", "--recursive", env=dict(c.admin_env(), **erin))
        assert own.returncode != 0 and "AccessDenied" in own.stderr, own.stderr
        cloud_own = koala("delete-account", "eucalyptus", "--recursive")
        assert cloud_own.returncode != 0 and "cannot be deleted" in cloud_own.stderr

        sign_in_admin(c, ADMIN_PASSWORD)
        b = Browser(artifact_dir("admin-delete-account"))
        b.sign_in(c, "admin", ADMIN_PASSWORD)
        b.open(c.console_url + "admin/users")
        assert not b.find_all("#user-eucalyptus-admin button[value=delete-account]")
        assert not b.find_all("#user-erin-frank button[value=delete-account]")
        b.press("#user-erin-admin button[value=delete-account]")
        assert b.text("h1") == "Delete account erin?"
        assert "frank" in b.text("#delete-account")
        b.shot("confirm")
        b.press("#delete-confirm")
        assert "erins-photos" in b.text("#delete-error"), b.text("#delete-account")
        b.shot("still-owns-a-bucket")
        # Nothing went: her keys, her bucket and her user are all there.
        assert s3.get_object(Bucket="erins-photos", Key="cat.jpg")["Body"].read() == b"meow"
        b.find("#back-to-users").click()
        assert b.find_all("#user-erin-frank")

        s3.delete_object(Bucket="erins-photos", Key="cat.jpg")
        s3.delete_bucket(Bucket="erins-photos")
        b.press("#user-erin-admin button[value=delete-account]")
        b.press("#delete-confirm")
        assert b.path == "/admin/users"
        assert not b.find_all("#user-erin-admin") and not b.find_all("#user-erin-frank")
        b.shot("deleted")

        # Her keys are refused by both APIs; her console sign-in is gone with her user.
        with pytest.raises(ClientError) as refused:
            s3.list_buckets()
        assert refused.value.response["Error"]["Code"] == "InvalidAccessKeyId"
        with pytest.raises(ClientError) as refused:
            ec2.describe_key_pairs()
        assert refused.value.response["Error"]["Code"] == "AuthFailure"
        users = koala("list-users", "--account", "erin")
        assert users.returncode != 0 and "NoSuchEntity" in users.stderr, users.stderr

        # The name is free again, for an account that starts with nothing of hers.
        again = c.create_account("erin")
        assert again["AWS_ACCESS_KEY_ID"] != keys[0]
        ec2_again = make_ec2(c, again["AWS_ACCESS_KEY_ID"], again["AWS_SECRET_ACCESS_KEY"])
        assert ec2_again.describe_key_pairs()["KeyPairs"] == []
        groups = ec2_again.describe_security_groups()["SecurityGroups"]
        assert [g["GroupName"] for g in groups] == ["default"], groups
    finally:
        if b:
            b.close()
        c.stop()
