"""Images through the EC2 API: bundles made by our euca-bundle-image, uploaded to Walrus with
boto3, registered, described, shared and deregistered with boto3 and the aws CLI; and every
kind of bad bundle refused with the EC2 error AWS and Eucalyptus give, nothing registered."""

import json
import os
import subprocess
import time
import uuid
import zipfile

import pytest

from conftest import KOALA_BIN, assert_ec2_error, empty_and_delete, unique_bucket

TOOLS = os.path.dirname(KOALA_BIN)


def bundle(cloud, tmp_path, name, size=300_000, extra=(), env=None):
    """Bundles `size` random bytes as image `name` with the admin's keys; returns
    (manifest path, [part paths])."""
    src = tmp_path / name
    src.write_bytes(os.urandom(size))
    dest = tmp_path / f"{name}-bundle"
    dest.mkdir()
    cmd = [os.path.join(TOOLS, "euca-bundle-image"), "-i", str(src), "-r", "x86_64",
           "-d", str(dest), "--no-progress", "--part-size", "100000", *extra]
    result = subprocess.run(cmd, env=env or cloud.admin_env(), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    manifest = dest / f"{name}.manifest.xml"
    parts = sorted(p for p in dest.iterdir() if ".part." in p.name)
    assert manifest.exists() and parts, list(dest.iterdir())
    return manifest, parts


def upload(s3, bucket, prefix, manifest, parts, skip=()):
    for path in [*parts, manifest]:
        if path.name in skip:
            continue
        s3.put_object(Bucket=bucket, Key=f"{prefix}/{path.name}", Body=path.read_bytes(),
                      ACL="aws-exec-read")
    return f"{bucket}/{prefix}/{manifest.name}"


@pytest.fixture
def images_bucket(s3):
    name = unique_bucket("images")
    s3.create_bucket(Bucket=name)
    yield name
    empty_and_delete(s3, name)


@pytest.fixture(scope="module")
def kernel_and_ramdisk(cloud, s3, ec2, tmp_path_factory):
    """A registered kernel and ramdisk of the admin account."""
    tmp = tmp_path_factory.mktemp("kr")
    bucket = unique_bucket("boot")
    s3.create_bucket(Bucket=bucket)
    km, kp = bundle(cloud, tmp, "vmlinuz-test", 50_000, ["--kernel", "true"])
    rm, rp = bundle(cloud, tmp, "initrd-test", 40_000, ["--ramdisk", "true"])
    eki = ec2.register_image(ImageLocation=upload(s3, bucket, "k", km, kp),
                             Name=f"kernel-{uuid.uuid4().hex[:8]}")["ImageId"]
    eri = ec2.register_image(ImageLocation=upload(s3, bucket, "r", rm, rp),
                             Name=f"ramdisk-{uuid.uuid4().hex[:8]}")["ImageId"]
    yield eki, eri
    for image in (eki, eri):
        ec2.deregister_image(ImageId=image)
    empty_and_delete(s3, bucket)


def owned_images(ec2):
    return {i["ImageId"]: i for i in ec2.describe_images(Owners=["self"])["Images"]}


def test_kernel_ramdisk_and_machine_image_register_and_describe(
        cloud, s3, ec2, images_bucket, kernel_and_ramdisk, tmp_path):
    eki, eri = kernel_and_ramdisk
    assert eki.startswith("eki-") and len(eki) == 12
    assert eri.startswith("eri-") and len(eri) == 12
    manifest, parts = bundle(cloud, tmp_path, "disk.img", 250_000)
    location = upload(s3, images_bucket, "machine", manifest, parts)
    emi = ec2.register_image(ImageLocation=location, Name="my machine image",
                             Description="a test image", KernelId=eki,
                             RamdiskId=eri)["ImageId"]
    assert emi.startswith("emi-")

    images = owned_images(ec2)
    assert {eki, eri, emi} <= set(images)
    image = images[emi]
    assert image["ImageLocation"] == location
    assert image["ImageType"] == "machine"
    assert image["State"] == "available"
    assert image["Public"] is False
    assert image["Architecture"] == "x86_64"
    assert image["KernelId"] == eki and image["RamdiskId"] == eri
    assert image["Name"] == "my machine image"
    assert image["Description"] == "a test image"
    assert image["RootDeviceType"] == "instance-store"
    assert image["VirtualizationType"] == "paravirtual"
    assert images[eki]["ImageType"] == "kernel"
    assert images[eri]["ImageType"] == "ramdisk"

    by_id = ec2.describe_images(ImageIds=[emi])["Images"]
    assert [i["ImageId"] for i in by_id] == [emi]
    kernels = ec2.describe_images(Filters=[{"Name": "image-type", "Values": ["kernel"]}])
    assert eki in {i["ImageId"] for i in kernels["Images"]}
    assert emi not in {i["ImageId"] for i in kernels["Images"]}
    located = ec2.describe_images(
        Filters=[{"Name": "manifest-location", "Values": [f"{images_bucket}/machine/*"]}])
    assert [i["ImageId"] for i in located["Images"]] == [emi]

    ec2.deregister_image(ImageId=emi)
    assert emi not in owned_images(ec2)
    assert_ec2_error(ec2.describe_images, "InvalidAMIID.NotFound", ImageIds=[emi])
    assert_ec2_error(ec2.deregister_image, "InvalidAMIID.NotFound", ImageId=emi)


def test_registration_survives_a_restart(cloud_factory, tmp_path):
    from conftest import make_client, make_ec2
    c = cloud_factory()
    s3 = make_client(c.s3_url, c.region, c.access_key, c.secret_key)
    ec2 = make_ec2(c, c.access_key, c.secret_key)
    s3.create_bucket(Bucket="restart")
    manifest, parts = bundle(c, tmp_path, "kernel-r", 20_000, ["--kernel", "true"])
    eki = ec2.register_image(ImageLocation=upload(s3, "restart", "k", manifest, parts),
                             Name="kernel-r")["ImageId"]
    c.stop()
    c.start()
    ec2 = make_ec2(c, c.access_key, c.secret_key)
    assert ec2.describe_images(ImageIds=[eki])["Images"][0]["ImageType"] == "kernel"


def test_aws_cli_register_describe_deregister(cloud, s3, aws, images_bucket, tmp_path):
    manifest, parts = bundle(cloud, tmp_path, "cli-kernel", 30_000, ["--kernel", "true"])
    location = upload(s3, images_bucket, "cli", manifest, parts)
    ec2_url = cloud.env["EC2_URL"]
    out = aws("ec2", "register-image", "--image-location", location, "--name", "cli-kernel",
              "--output", "json", endpoint=ec2_url)
    eki = json.loads(out.stdout)["ImageId"]
    assert eki.startswith("eki-")
    out = aws("ec2", "describe-images", "--owners", "self", "--output", "json", endpoint=ec2_url)
    listed = {i["ImageId"]: i for i in json.loads(out.stdout)["Images"]}
    assert listed[eki]["ImageLocation"] == location
    assert listed[eki]["ImageType"] == "kernel"
    aws("ec2", "deregister-image", "--image-id", eki, endpoint=ec2_url)
    bad = aws("ec2", "describe-images", "--image-ids", eki, check=False, endpoint=ec2_url)
    assert bad.returncode != 0 and "InvalidAMIID.NotFound" in bad.stderr


def test_euca_bundle_image_as_the_15_guides_print_it(cloud, tmp_path):
    """`euca-bundle-image -i IMAGE --kernel true`, no -r and no -d: an x86_64 bundle whose
    files land in the temp folder itself (the guides then upload /tmp/NAME.manifest.xml)."""
    src = tmp_path / "vmlinuz"
    src.write_bytes(os.urandom(50_000))
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = dict(cloud.admin_env(), TMPDIR=str(tmp))
    out = subprocess.run([os.path.join(TOOLS, "euca-bundle-image"), "-i", str(src),
                          "--kernel", "true"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    manifest = tmp / "vmlinuz.manifest.xml"
    assert manifest.exists(), sorted(p.name for p in tmp.iterdir())
    assert "<architecture>x86_64</architecture>" in manifest.read_text()
    assert any(p.name.startswith("vmlinuz.part.") for p in tmp.iterdir())


def test_euca_register_without_a_name_as_the_15_guides_print_it(cloud, s3, ec2, images_bucket,
                                                              tmp_path):
    """`euca-register BUCKET/NAME.manifest.xml`, no -n (euca2ools 1.x had none): the image is
    named after the image in its manifest."""
    name = f"guide-{uuid.uuid4().hex[:6]}"
    manifest, parts = bundle(cloud, tmp_path, name, 30_000, ["--kernel", "true"])
    location = upload(s3, images_bucket, "guide", manifest, parts)
    out = subprocess.run([os.path.join(TOOLS, "euca-register"), location],
                         env=cloud.admin_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    eki = out.stdout.split()[1]
    image = ec2.describe_images(ImageIds=[eki])["Images"][0]
    assert image["Name"] == name and image["ImageLocation"] == location
    ec2.deregister_image(ImageId=eki)


def test_duplicate_name_and_bad_parameters(cloud, s3, ec2, images_bucket, kernel_and_ramdisk,
                                           tmp_path):
    eki, eri = kernel_and_ramdisk
    manifest, parts = bundle(cloud, tmp_path, "dup.img", 10_000)
    location = upload(s3, images_bucket, "dup", manifest, parts)
    name = f"dup-{uuid.uuid4().hex[:8]}"
    emi = ec2.register_image(ImageLocation=location, Name=name)["ImageId"]
    try:
        assert_ec2_error(ec2.register_image, "InvalidAMIName.Duplicate", status=400,
                         ImageLocation=location, Name=name)
        # A kernel given as the ramdisk, and an image that does not exist.
        assert_ec2_error(ec2.register_image, "InvalidParameterValue", ImageLocation=location,
                         Name=name + "x", RamdiskId=eki)
        assert_ec2_error(ec2.register_image, "InvalidAMIID.NotFound", ImageLocation=location,
                         Name=name + "y", KernelId="eki-00000000")
        assert_ec2_error(ec2.register_image, "InvalidAMIID.Malformed", ImageLocation=location,
                         Name=name + "z", KernelId="eki-nothex!")
        assert_ec2_error(ec2.register_image, "InvalidParameterValue", ImageLocation=location,
                         Name=name + "w", Architecture="sparc")
        assert_ec2_error(ec2.register_image, "InvalidParameterValue", ImageLocation="nobucket",
                         Name=name + "v")
        assert_ec2_error(ec2.describe_images, "InvalidAMIID.Malformed", ImageIds=["ami-1"])
        assert_ec2_error(ec2.describe_images, "InvalidParameterValue",
                         Filters=[{"Name": "no-such-filter", "Values": ["x"]}])
    finally:
        ec2.deregister_image(ImageId=emi)


def registered_locations(ec2):
    return {i["ImageLocation"] for i in ec2.describe_images(Owners=["self"])["Images"]}


def test_tampered_manifest_is_refused(cloud, s3, ec2, images_bucket, tmp_path):
    manifest, parts = bundle(cloud, tmp_path, "tamper.img", 20_000)
    text = manifest.read_text()
    assert "<name>tamper.img</name>" in text
    manifest.write_text(text.replace("<name>tamper.img</name>", "<name>tamper.imh</name>"))
    location = upload(s3, images_bucket, "t", manifest, parts)
    resp = assert_ec2_error(ec2.register_image, "InvalidManifest", status=400,
                            ImageLocation=location, Name="tampered")
    assert "signature" in resp["Error"]["Message"]
    assert location not in registered_locations(ec2)


def test_bundle_for_another_cloud_is_refused(cloud, s3, ec2, images_bucket, tmp_path):
    key, cert = tmp_path / "other-pk.pem", tmp_path / "other-cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=another-cloud"],
                   check=True, capture_output=True)
    manifest, parts = bundle(cloud, tmp_path, "foreign.img", 20_000, ["--ec2cert", str(cert)])
    location = upload(s3, images_bucket, "f", manifest, parts)
    resp = assert_ec2_error(ec2.register_image, "InvalidManifest", ImageLocation=location,
                            Name="foreign")
    assert "not encrypted for this cloud" in resp["Error"]["Message"]
    assert location not in registered_locations(ec2)


def test_golden_bundle_of_the_vectors_cloud_is_refused(s3, ec2, images_bucket):
    folder = os.path.join(os.path.dirname(KOALA_BIN), "..", "..", "..", "shared", "vectors",
                          "bundles", "kernel")
    folder = os.path.normpath(folder)
    if not os.path.isdir(folder):
        pytest.skip(f"the golden vectors are not at {folder}")
    files = sorted(os.listdir(folder))
    manifest = next(f for f in files if f.endswith(".manifest.xml"))
    for name in files:
        if name == manifest or ".part." in name:
            with open(os.path.join(folder, name), "rb") as f:
                s3.put_object(Bucket=images_bucket, Key=f"g/{name}", Body=f.read())
    # The vectors' manifest names the vectors' account, not ours: refused before anything else.
    assert_ec2_error(ec2.register_image, "AuthFailure", status=401,
                     ImageLocation=f"{images_bucket}/g/{manifest}", Name="golden")


def test_missing_or_short_part_is_refused(cloud, s3, ec2, images_bucket, tmp_path):
    manifest, parts = bundle(cloud, tmp_path, "parts.img", 350_000)
    assert len(parts) >= 2
    location = upload(s3, images_bucket, "m", manifest, parts, skip={parts[1].name})
    resp = assert_ec2_error(ec2.register_image, "InvalidManifest", ImageLocation=location,
                            Name="missing-part")
    assert parts[1].name in resp["Error"]["Message"]
    s3.put_object(Bucket=images_bucket, Key=f"m/{parts[1].name}",
                  Body=parts[1].read_bytes()[:-1])
    assert_ec2_error(ec2.register_image, "InvalidManifest", ImageLocation=location,
                     Name="short-part")
    assert_ec2_error(ec2.register_image, "InvalidManifest",
                     ImageLocation=f"{images_bucket}/nothing/here.manifest.xml", Name="absent")
    assert location not in registered_locations(ec2)


def test_other_accounts_manifest_is_refused(cloud, s3, ec2, ec2_other, s3_other, images_bucket,
                                            tmp_path):
    manifest, parts = bundle(cloud, tmp_path, "mine.img", 20_000)
    location = upload(s3, images_bucket, "o", manifest, parts)
    # Private to the admin account: the other account cannot even read it.
    assert_ec2_error(ec2_other.register_image, "AuthFailure", ImageLocation=location,
                     Name="not-mine")
    # Readable by everyone, but the manifest names the admin's account.
    for path in [*parts, manifest]:
        s3.put_object_acl(Bucket=images_bucket, Key=f"o/{path.name}", ACL="public-read")
    assert_ec2_error(ec2_other.register_image, "AuthFailure", ImageLocation=location,
                     Name="not-mine")
    # Copied into the other account's own bucket: still the admin's manifest.
    other_bucket = unique_bucket("other")
    s3_other.create_bucket(Bucket=other_bucket)
    try:
        for path in [*parts, manifest]:
            s3_other.put_object(Bucket=other_bucket, Key=f"o/{path.name}",
                                Body=path.read_bytes())
        assert_ec2_error(ec2_other.register_image, "AuthFailure",
                         ImageLocation=f"{other_bucket}/o/{manifest.name}", Name="not-mine")
    finally:
        empty_and_delete(s3_other, other_bucket)
    assert ec2_other.describe_images(Owners=["self"])["Images"] == []


def test_launch_permissions_share_and_isolate(cloud, s3, ec2, ec2_other, other_id,
                                              images_bucket, tmp_path):
    manifest, parts = bundle(cloud, tmp_path, "share.img", 20_000)
    location = upload(s3, images_bucket, "s", manifest, parts)
    emi = ec2.register_image(ImageLocation=location, Name=f"share-{uuid.uuid4().hex[:6]}")[
        "ImageId"]
    try:
        # Private: the other account neither sees nor touches it.
        assert emi not in {i["ImageId"] for i in ec2_other.describe_images()["Images"]}
        assert_ec2_error(ec2_other.describe_images, "InvalidAMIID.NotFound", ImageIds=[emi])
        assert_ec2_error(ec2_other.deregister_image, "InvalidAMIID.NotFound", ImageId=emi)
        attr = ec2.describe_image_attribute(ImageId=emi, Attribute="launchPermission")
        assert attr["LaunchPermissions"] == []

        ec2.modify_image_attribute(ImageId=emi, LaunchPermission={
            "Add": [{"UserId": other_id}]})
        attr = ec2.describe_image_attribute(ImageId=emi, Attribute="launchPermission")
        assert attr["LaunchPermissions"] == [{"UserId": other_id}]
        seen = ec2_other.describe_images(ExecutableUsers=["self"])["Images"]
        assert emi in {i["ImageId"] for i in seen}
        assert ec2_other.describe_images(Owners=["self"])["Images"] == []
        # Shared is not owned: the other account cannot change or remove it.
        assert_ec2_error(ec2_other.deregister_image, "AuthFailure", ImageId=emi)
        assert_ec2_error(ec2_other.modify_image_attribute, "AuthFailure", ImageId=emi,
                         LaunchPermission={"Add": [{"Group": "all"}]})

        ec2.modify_image_attribute(ImageId=emi, LaunchPermission={"Add": [{"Group": "all"}]})
        public = ec2.describe_images(ImageIds=[emi])["Images"][0]
        assert public["Public"] is True
        ec2.reset_image_attribute(ImageId=emi, Attribute="launchPermission")
        assert ec2.describe_images(ImageIds=[emi])["Images"][0]["Public"] is False
        assert_ec2_error(ec2_other.describe_images, "InvalidAMIID.NotFound", ImageIds=[emi])

        assert_ec2_error(ec2.modify_image_attribute, "InvalidParameterValue", ImageId=emi,
                         LaunchPermission={"Add": [{"UserId": "000000000000"}]})
        ec2.modify_image_attribute(ImageId=emi, Description={"Value": "new words"})
        desc = ec2.describe_image_attribute(ImageId=emi, Attribute="description")
        assert desc["Description"]["Value"] == "new words"
    finally:
        ec2.deregister_image(ImageId=emi)


def ec2_get(cloud, query, sign=True):
    """A GET query request to the EC2 endpoint, SigV4-signed for `ec2` unless told not to."""
    import urllib.request
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    from conftest import http_get
    url = cloud.env["EC2_URL"] + "?" + query
    headers = {}
    if sign:
        req = AWSRequest(method="GET", url=url)
        SigV4Auth(Credentials(cloud.access_key, cloud.secret_key), "ec2",
                  cloud.region).add_auth(req)
        headers = dict(req.headers.items())
    return http_get(url, headers=headers)


def test_unknown_action_version_and_unsigned(cloud):
    status, _, body = ec2_get(cloud, "Action=DescribeImages&Version=2042-01-01")
    assert status == 400 and b"<Code>NoSuchVersion</Code>" in body, body
    status, _, body = ec2_get(cloud, "Action=FlyToTheMoon&Version=2016-11-15")
    assert status == 400 and b"<Code>InvalidAction</Code>" in body, body
    status, _, body = ec2_get(cloud, "Action=DescribeImages&Version=2009-11-30")
    assert status == 200 and b'xmlns="http://ec2.amazonaws.com/doc/2009-11-30/"' in body, body
    status, _, body = ec2_get(cloud, "Action=DescribeImages&Version=2016-11-15", sign=False)
    assert status == 401 and b"<Code>AuthFailure</Code>" in body, body


def test_register_signed_with_signature_v2_as_euca_install_image_does(cloud, s3, ec2,
                                                                      images_bucket, tmp_path):
    """euca-install-image registers with SigV2 in the POST body; so must any old client."""
    import base64 as b64mod
    import datetime
    import hashlib
    import hmac
    import urllib.parse
    from conftest import http_get

    manifest, parts = bundle(cloud, tmp_path, "v2-kernel", 20_000, ["--kernel", "true"])
    location = upload(s3, images_bucket, "v2", manifest, parts)
    url = urllib.parse.urlsplit(cloud.env["EC2_URL"])
    params = {
        "Action": "RegisterImage", "Version": "2015-10-01", "ImageLocation": location,
        "Name": "v2-kernel", "AWSAccessKeyId": cloud.access_key, "SignatureVersion": "2",
        "SignatureMethod": "HmacSHA256",
        "Timestamp": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }

    def enc(v):
        return urllib.parse.quote(v, safe="-_.~")

    canonical = "&".join(f"{enc(k)}={enc(v)}" for k, v in sorted(params.items()))
    to_sign = f"POST\n{url.netloc.lower()}\n{url.path}\n{canonical}"
    digest = hmac.new(cloud.secret_key.encode(), to_sign.encode(), hashlib.sha256).digest()
    params["Signature"] = b64mod.b64encode(digest).decode()
    body = urllib.parse.urlencode(params).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    status, _, answer = http_get(cloud.env["EC2_URL"], headers=headers, method="POST", data=body)
    assert status == 200, answer
    image_id = answer.split(b"<imageId>")[1].split(b"</imageId>")[0].decode()
    assert ec2.describe_images(ImageIds=[image_id])["Images"][0]["Name"] == "v2-kernel"
    ec2.deregister_image(ImageId=image_id)
    # The same body with one signed byte changed is refused.
    params["Name"] = "v2-kernex"
    status, _, answer = http_get(cloud.env["EC2_URL"], headers=headers, method="POST",
                                 data=urllib.parse.urlencode(params).encode())
    assert status == 401 and b"<Code>AuthFailure</Code>" in answer, answer


def credentials_of(cloud, account, workdir):
    """A new account (`koala admin create-account`) and its whole credential bundle
    (`euca_conf --get-credentials`, as the cloud admin): the environment after sourcing its
    eucarc, certificate and key included."""
    from conftest import source_env
    cloud.create_account(account)
    workdir.mkdir()
    zipped = workdir / "creds.zip"
    result = subprocess.run([os.path.join(TOOLS, "euca_conf"), "--get-credentials", str(zipped),
                             "--cred-account", account], env=cloud.admin_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    with zipfile.ZipFile(zipped) as z:
        z.extractall(workdir)
    env = dict(cloud.admin_env())
    env.update(source_env(str(workdir / "eucarc")))
    return env


def test_register_image_unwraps_keys_at_a_limited_rate_per_account(cloud_factory, tmp_path):
    """RegisterImage decrypts the bundle key with the cloud's RSA key: an oracle (a failed
    unwrap answers differently), and the rsa crate is not constant time. Failed unwraps come
    10 in a row per account, then one every 5 s; past that EC2's RequestLimitExceeded (HTTP
    503, EC2's XML). Valid bundles are never held back, nor are other accounts."""
    from conftest import make_client, make_ec2
    from test_ec2_cloud import error_code, query
    c = cloud_factory()
    s3 = make_client(c.s3_url, c.region, c.access_key, c.secret_key)
    ec2 = make_ec2(c, c.access_key, c.secret_key)
    s3.create_bucket(Bucket="burst")
    manifest, parts = bundle(c, tmp_path, "burst-kernel", 20_000, ["--kernel", "true"])
    valid = upload(s3, "burst", "k", manifest, parts)
    key, cert = tmp_path / "other-pk.pem", tmp_path / "other-cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=another-cloud"],
                   check=True, capture_output=True)
    (tmp_path / "f").mkdir()
    manifest, parts = bundle(c, tmp_path / "f", "foreign.img", 20_000,
                             ["--kernel", "true", "--ec2cert", str(cert)])
    foreign = upload(s3, "burst", "f", manifest, parts)

    # Valid bundles, many in a row: never held back.
    for i in range(15):
        ec2.register_image(ImageLocation=valid, Name=f"valid-{i}")
    # Failed unwraps: 10, then refused, valid bundles too, until the bucket refills.
    for i in range(10):
        assert_ec2_error(ec2.register_image, "InvalidManifest", status=400,
                         ImageLocation=foreign, Name=f"foreign-{i}")
    refused = assert_ec2_error(ec2.register_image, "RequestLimitExceeded", status=503,
                               ImageLocation=foreign, Name="foreign-10")
    assert "Try again in" in refused["Error"]["Message"]
    status, root = query(c, "RegisterImage", [("ImageLocation", valid), ("Name", "valid-x")])
    assert status == 503 and error_code(root) == "RequestLimitExceeded"
    assert root.tag == "Response" and root.findtext("RequestID")
    assert len(ec2.describe_images(Owners=["self"])["Images"]) == 15

    # Another account has a bucket of its own.
    env = credentials_of(c, "second", tmp_path / "second")
    s3_second = make_client(c.s3_url, c.region, env["AWS_ACCESS_KEY_ID"],
                            env["AWS_SECRET_ACCESS_KEY"])
    ec2_second = make_ec2(c, env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"])
    s3_second.create_bucket(Bucket="second")
    (tmp_path / "b").mkdir()
    manifest, parts = bundle(c, tmp_path / "b", "second-kernel", 20_000, ["--kernel", "true"],
                             env=env)
    ec2_second.register_image(ImageLocation=upload(s3_second, "second", "k", manifest, parts),
                              Name="second-kernel")

    # One more every 5 s: a valid bundle takes it and gives it back, a failed one spends it.
    time.sleep(5.5)
    ec2.register_image(ImageLocation=valid, Name="valid-after-wait")
    assert_ec2_error(ec2.register_image, "InvalidManifest", status=400,
                     ImageLocation=foreign, Name="foreign-after-wait")
    assert_ec2_error(ec2.register_image, "RequestLimitExceeded", status=503,
                     ImageLocation=valid, Name="valid-too-soon")
