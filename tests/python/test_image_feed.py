"""The image feed through the real `koala up`: a bundle made by our euca-bundle-image for the
cloud's certificate, uploaded with boto3, then asked of Walrus' internal endpoint
(`/services/Walrus/_koala/images`) with requests signed by botocore's SigV4: the plain image
comes back with its SHA-256, by manifest and by hash, only to the cloud's node controllers."""

import hashlib
import os
import urllib.parse
import uuid

from conftest import empty_and_delete, raw_request, unique_bucket, xml_code
from test_ec2_images import bundle, upload


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
    """The owner registers an image, then replaces its bundle (a new manifest, validly signed,
    and new parts under the same names): a run of the registered image ends with the reason,
    and Walrus never unbundles the replacement for it."""
    from test_instances import wait_state

    bucket = unique_bucket("pinned")
    s3.create_bucket(Bucket=bucket)
    iid = emi = eki = None
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

        replacement, parts = bundle(cloud, tmp_path / "b", "pin.img", 250_000,
                                    ["--kernel", eki])
        assert upload(s3, bucket, "m", replacement, parts) == location
        replaced_plain = hashlib.sha256((tmp_path / "b" / "pin.img").read_bytes()).hexdigest()

        run = ec2.run_instances(ImageId=emi, MinCount=1, MaxCount=1)
        iid = run["Instances"][0]["InstanceId"]
        done = wait_state(ec2, [iid], {"terminated"}, timeout=120)
        reason = done[iid]["StateReason"]
        assert reason["Code"] == "Server.InternalError", reason
        assert emi in reason["Message"], reason
        assert "was replaced after the image was registered" in reason["Message"], reason

        # The replacement's bytes were never unbundled, so never served to anyone.
        status, _, body = raw_request(cloud, "GET", f"/_koala/images/{replaced_plain}")
        assert status == 404 and xml_code(body) == "NoSuchKey"
        plain_dir = os.path.join(cloud.data_dir, "walrus", "images", "sha256")
        assert replaced_plain not in os.listdir(plain_dir)
    finally:
        if iid:
            ec2.terminate_instances(InstanceIds=[iid])
        for image in (emi, eki):
            if image:
                ec2.deregister_image(ImageId=image)
        empty_and_delete(s3, bucket)
