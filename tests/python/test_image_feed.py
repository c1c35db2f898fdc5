"""The image feed through the real `koala up`: a bundle made by our euca-bundle-image for the
cloud's certificate, uploaded with boto3, then asked of Walrus' internal endpoint
(`/services/Walrus/_koala/images`) with requests signed by botocore's SigV4: the plain image
comes back with its SHA-256, by manifest and by hash, only to the cloud's node controllers."""

import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
import types
import urllib.parse
import uuid

import pytest

from conftest import (KOALA_BIN, Cloud, empty_and_delete, free_port, make_client, make_ec2,
                      raw_request, unique_bucket, xml_code)
from test_ec2_images import TOOLS, bundle, upload


def test_feed_serves_the_plain_image_to_the_cloud_only(cloud, s3, other_env, tmp_path):
    manifest, parts = bundle(cloud, tmp_path, "feed.img", 700_000)
    data = (tmp_path / "feed.img").read_bytes()
    want = hashlib.sha256(data).hexdigest()
    bucket = unique_bucket("feed")
    s3.create_bucket(Bucket=bucket)
    try:
        location = upload(s3, bucket, "p", manifest, parts)
        query = "manifest=" + urllib.parse.quote(location, safe="")
        akid, secret, cert = cloud.component("nc-")
        node = {"access_key": akid, "secret_key": secret, "cert": cert}

        status, headers, body = raw_request(cloud, "GET", "/_koala/images", query=query, **node)
        assert status == 200, body[:400]
        assert body == data
        assert headers["x-koala-image-sha256"] == want
        assert headers["etag"] == f'"{want}"'
        assert headers["content-length"] == str(len(data))

        status, headers, body = raw_request(cloud, "HEAD", "/_koala/images", query=query, **node)
        assert status == 200 and body == b""
        assert headers["content-length"] == str(len(data))

        status, headers, body = raw_request(cloud, "GET", f"/_koala/images/{want}", **node)
        assert status == 200 and body == data
        status, headers, body = raw_request(cloud, "GET", f"/_koala/images/{want}",
                                            headers={"Range": "bytes=10-19"}, **node)
        assert status == 206 and body == data[10:20]

        unknown = hashlib.sha256(b"none").hexdigest()
        status, _, body = raw_request(cloud, "GET", f"/_koala/images/{unknown}", **node)
        assert status == 404 and xml_code(body) == "NoSuchKey"

        # An ordinary account, even the bundle's reader, a cloud administrator, the cloud
        # controller (which reads bundles, not images) and unsigned callers are refused.
        clc_akid, clc_secret, clc_cert = cloud.component("clc")
        # ...and the node's key over plain HTTP or without its own certificate.
        for kw in ({"access_key": other_env["AWS_ACCESS_KEY_ID"],
                    "secret_key": other_env["AWS_SECRET_ACCESS_KEY"]},
                   {}, {"access_key": clc_akid, "secret_key": clc_secret, "cert": clc_cert},
                   {"access_key": akid, "secret_key": secret},
                   {"access_key": akid, "secret_key": secret, "cert": clc_cert},
                   {"sign": False}):
            status, _, body = raw_request(cloud, "GET", "/_koala/images", query=query, **kw)
            assert status == 403 and xml_code(body) == "AccessDenied"
            status, _, body = raw_request(cloud, "GET", f"/_koala/images/{want}", **kw)
            assert status == 403 and xml_code(body) == "AccessDenied"
    finally:
        empty_and_delete(s3, bucket)


def test_a_manifest_replaced_after_registration_is_never_fed(cloud, s3, ec2, tmp_path):
    """The owner registers an image (Walrus unbundles it then), then replaces its bundle (a new
    manifest, validly signed, and new parts under the same names): nodes asking for the
    registered image get the bytes registered, and Walrus never unbundles the replacement."""
    bucket = unique_bucket("pinned")
    s3.create_bucket(Bucket=bucket)
    emi = eki = None
    try:
        km, kp = bundle(cloud, tmp_path, "pin-kernel", 30_000, ["--kernel", "true"])
        eki = ec2.register_image(ImageLocation=upload(s3, bucket, "k", km, kp),
                                 Name=f"pin-kernel-{uuid.uuid4().hex[:8]}")["ImageId"]
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        registered, parts = bundle(cloud, tmp_path / "a", "pin.img", 250_000,
                                   ["--kernel", eki])
        location = upload(s3, bucket, "m", registered, parts)
        emi = ec2.register_image(ImageLocation=location,
                                 Name=f"pinned-{uuid.uuid4().hex[:8]}")["ImageId"]
        registered_plain = hashlib.sha256((tmp_path / "a" / "pin.img").read_bytes()).hexdigest()
        deadline = time.monotonic() + 60
        while raw_request(cloud, "HEAD", f"/_koala/images/{registered_plain}",
                          **cloud.as_node())[0] != 200:
            assert time.monotonic() < deadline, "the registered image was never unbundled"
            time.sleep(0.2)

        replacement, parts = bundle(cloud, tmp_path / "b", "pin.img", 250_000,
                                    ["--kernel", eki])
        assert upload(s3, bucket, "m", replacement, parts) == location
        replaced_plain = hashlib.sha256((tmp_path / "b" / "pin.img").read_bytes()).hexdigest()

        # A node asks as for the registered image (the manifest pinned): the bytes registered.
        pin = hashlib.sha256(registered.read_bytes()).hexdigest()
        query = f"manifest={urllib.parse.quote(location, safe='')}&manifest-sha256={pin}"
        status, headers, _ = raw_request(cloud, "HEAD", "/_koala/images", query=query,
                                         **cloud.as_node())
        assert status == 200 and headers["x-koala-image-sha256"] == registered_plain

        # The replacement's bytes were never unbundled, so never served to anyone.
        status, _, body = raw_request(cloud, "GET", f"/_koala/images/{replaced_plain}",
                                      **cloud.as_node())
        assert status == 404 and xml_code(body) == "NoSuchKey"
        plain_dir = os.path.join(cloud.data_dir, "walrus", "images", "sha256")
        assert replaced_plain not in os.listdir(plain_dir)
    finally:
        for image in (emi, eki):
            if image:
                ec2.deregister_image(ImageId=image)
        empty_and_delete(s3, bucket)


@pytest.fixture
def short_grace_cloud():
    """A private cloud whose Walrus collects unused plain images 2 s after their last use."""
    data_dir = tempfile.mkdtemp(prefix="koala-e2e-grace-")
    with open(os.path.join(data_dir, "koala.toml"), "w") as f:
        f.write("[walrus]\nimage_grace_secs = 2\n")
    c = Cloud(data_dir).start()
    yield c
    c.stop()
    if os.environ.get("KOALA_KEEP_DATA") is None:
        shutil.rmtree(data_dir, ignore_errors=True)


def euca(cloud, command, *args, check=True):
    """Runs one of our euca2ools commands with the admin's eucarc; (exit code, out, err)."""
    result = subprocess.run([os.path.join(TOOLS, command), *args], env=cloud.admin_env(),
                            capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, f"{command} {args}: {result.stderr}"
    return result.returncode, result.stdout, result.stderr


def test_a_deregistered_images_bytes_leave_walrus_and_a_registered_one_stays(
        short_grace_cloud, tmp_path):
    """Images registered with euca-register, unbundled by Walrus as for a node (the feed asked
    with the manifest's pin), then one deregistered with euca-deregister: its plain image
    leaves Walrus' disk after the grace; the other, still registered, stays. A registration
    refused after Walrus recorded it (a duplicate name) holds nothing."""
    c = short_grace_cloud
    s3 = make_client(c.s3_url, c.region, c.access_key, c.secret_key)
    s3.create_bucket(Bucket="grace")
    plain_dir = os.path.join(c.data_dir, "walrus", "images", "sha256")
    images = {}
    for name in ("gone", "kept"):
        (tmp_path / name).mkdir()
        manifest, parts = bundle(c, tmp_path / name, f"{name}.img", 200_000,
                                 ["--kernel", "true"])
        location = upload(s3, "grace", name, manifest, parts)
        _, out, _ = euca(c, "euca-register", location, "-n", f"{name}-kernel")
        image_id = out.split()[1]
        assert image_id.startswith("eki-"), out
        pin = hashlib.sha256(manifest.read_bytes()).hexdigest()
        query = (f"manifest={urllib.parse.quote(location, safe='')}&manifest-sha256={pin}")
        status, headers, _ = raw_request(c, "HEAD", "/_koala/images", query=query,
                                         **c.as_node())
        assert status == 200
        plain = headers["x-koala-image-sha256"]
        assert plain == hashlib.sha256((tmp_path / name / f"{name}.img").read_bytes()).hexdigest()
        images[name] = (image_id, location, plain)
    assert {images["gone"][2], images["kept"][2]} <= set(os.listdir(plain_dir))

    # The same bundle registered again under a name taken: refused, and released in Walrus.
    code, _, err = euca(c, "euca-register", images["gone"][1], "-n", "gone-kernel", check=False)
    assert code != 0 and "InvalidAMIName.Duplicate" in err, err

    euca(c, "euca-deregister", images["gone"][0])
    deadline = time.monotonic() + 30
    while images["gone"][2] in os.listdir(plain_dir):
        assert time.monotonic() < deadline, "the deregistered image's bytes stayed"
        time.sleep(0.2)
    status, _, body = raw_request(c, "GET", f"/_koala/images/{images['gone'][2]}",
                                  **c.as_node())
    assert status == 404 and xml_code(body) == "NoSuchKey"

    time.sleep(4)
    assert images["kept"][2] in os.listdir(plain_dir)
    status, _, body = raw_request(c, "GET", f"/_koala/images/{images['kept'][2]}",
                                  **c.as_node())
    assert status == 200 and len(body) == 200_000


def test_an_image_is_unbundled_when_it_is_registered(cloud, tmp_path):
    """RegisterImage starts the unbundling: the plain image is served by its hash without any
    node ever asking for the manifest (a cold start then waits for no unbundling)."""
    s3 = make_client(cloud.s3_url, cloud.region, cloud.access_key, cloud.secret_key)
    bucket = unique_bucket("prefetch")
    s3.create_bucket(Bucket=bucket)
    try:
        manifest, parts = bundle(cloud, tmp_path, "early.img", 300_000, ["--kernel", "true"])
        plain = hashlib.sha256((tmp_path / "early.img").read_bytes()).hexdigest()
        status, _, _ = raw_request(cloud, "HEAD", f"/_koala/images/{plain}", **cloud.as_node())
        assert status == 404
        location = upload(s3, bucket, "early", manifest, parts)
        _, out, _ = euca(cloud, "euca-register", location, "-n", f"early-{uuid.uuid4().hex[:6]}")
        image_id = out.split()[1]
        deadline = time.monotonic() + 60
        while True:
            status, headers, _ = raw_request(cloud, "HEAD", f"/_koala/images/{plain}",
                                             **cloud.as_node())
            if status == 200:
                break
            assert status == 404 and time.monotonic() < deadline, status
            time.sleep(0.2)
        assert headers["content-length"] == "300000"
        euca(cloud, "euca-deregister", image_id)
    finally:
        empty_and_delete(s3, bucket)


@contextlib.contextmanager
def walrus_apart_processes():
    """`koala cloud --walrus-url` and `koala walrus --cloud-url` in processes of their own,
    Walrus collecting unused plain images 2 s after their last use: (cloud, Walrus as an
    endpoint raw_request can address, Walrus' data dir)."""
    from test_instances import Role
    port, walrus_port = free_port(), free_port()
    walrus_url = f"http://127.0.0.1:{walrus_port}/services/Walrus"
    cloud_dir = tempfile.mkdtemp(prefix="koala-e2e-cloud-")
    c = Cloud(cloud_dir, port=port)
    walrus = None
    try:
        c.start(command="cloud", args=["--walrus-url", walrus_url])
        key = os.path.join("keys", "cloud-pk.pem")
        # Components register and call over TLS.
        cloud_url = c.root_url.replace("http://", "https://")
        walrus = Role(["walrus", "--cloud-url", cloud_url], walrus_port, c.admin_env(),
                      "[walrus]\nimage_grace_secs = 2\n",
                      files={key: os.path.join(cloud_dir, key)})
        # The test calls Walrus' feed as a node would: a node principal of this cloud.
        node = c.register_component("node", "nc-feed-test", cloud_dir)
        endpoint = types.SimpleNamespace(
            port=walrus_port, root_url=f"http://127.0.0.1:{walrus_port}", s3_url=walrus_url,
            region=c.region, access_key=c.access_key, secret_key=c.secret_key,
            ca_file=c.ca_file, as_node=lambda: node)
        yield c, endpoint, walrus.data_dir
    finally:
        if walrus:
            walrus.stop()
        c.stop()
        shutil.rmtree(cloud_dir, ignore_errors=True)


@pytest.fixture
def walrus_apart():
    """The processes of walrus_apart_processes, for one test."""
    with walrus_apart_processes() as roles:
        yield roles


def test_deregistering_releases_the_image_in_a_walrus_apart(walrus_apart, tmp_path):
    """With Walrus in a process of its own, the CLC records and releases registrations over
    Walrus' internal endpoint with its component key: a deregistered image's bytes leave that
    Walrus' disk, a registered one's stay."""
    c, walrus, walrus_dir = walrus_apart
    s3 = make_client(walrus.s3_url, c.region, c.access_key, c.secret_key)
    ec2 = make_ec2(c, c.access_key, c.secret_key)
    s3.create_bucket(Bucket="apart")
    plain_dir = os.path.join(walrus_dir, "walrus", "images", "sha256")
    images = {}
    for name in ("gone", "kept"):
        (tmp_path / name).mkdir()
        manifest, parts = bundle(c, tmp_path / name, f"{name}.img", 150_000,
                                 ["--kernel", "true"])
        location = upload(s3, "apart", name, manifest, parts)
        image_id = ec2.register_image(ImageLocation=location, Name=f"{name}-kernel")["ImageId"]
        pin = hashlib.sha256(manifest.read_bytes()).hexdigest()
        query = (f"manifest={urllib.parse.quote(location, safe='')}&manifest-sha256={pin}")
        status, headers, _ = raw_request(walrus, "HEAD", "/_koala/images", query=query,
                                         **walrus.as_node())
        assert status == 200
        images[name] = (image_id, headers["x-koala-image-sha256"])
    ec2.deregister_image(ImageId=images["gone"][0])
    deadline = time.monotonic() + 30
    while images["gone"][1] in os.listdir(plain_dir):
        assert time.monotonic() < deadline, "the deregistered image's bytes stayed"
        time.sleep(0.2)
    time.sleep(4)
    assert images["kept"][1] in os.listdir(plain_dir)


def test_an_account_is_deleted_only_once_its_buckets_in_a_walrus_apart_are_gone(walrus_apart):
    """DeleteAccount asks the Walrus apart, over its internal endpoint with the CLC's
    component key, which buckets the account owns: refused while it owns one, done after."""
    c, walrus, _ = walrus_apart
    gail = c.create_account("gail")
    s3 = make_client(walrus.s3_url, c.region, gail["AWS_ACCESS_KEY_ID"],
                     gail["AWS_SECRET_ACCESS_KEY"])
    s3.create_bucket(Bucket="gails-bucket")
    delete = lambda: subprocess.run([KOALA_BIN, "admin", "delete-account", "gail"],
                                    env=c.admin_env(), capture_output=True, text=True,
                                    timeout=60)
    refused = delete()
    assert refused.returncode != 0, refused.stdout
    assert "DeleteConflict" in refused.stderr and "gails-bucket" in refused.stderr, refused.stderr
    s3.delete_bucket(Bucket="gails-bucket")
    done = delete()
    assert done.returncode == 0, done.stderr
    users = subprocess.run([KOALA_BIN, "admin", "list-users", "--account", "gail"],
                           env=c.admin_env(), capture_output=True, text=True, timeout=60)
    assert users.returncode != 0 and "NoSuchEntity" in users.stderr, users.stderr
