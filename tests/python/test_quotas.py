"""Per-account quotas as a user meets them: cloud properties the administrator sets with our
euca-modify-property while the cloud runs, refused with the codes AWS-compatible clients
know: S3 TooManyBuckets (400) and QuotaExceeded (403, as Ceph RGW answers) from Walrus, seen
by boto3 and the aws CLI; EC2 ResourceLimitExceeded and InstanceLimitExceeded, seen by boto3,
the aws CLI and our euca2ools. What each account stores survives restarts and stays exact
under concurrent PUT, DELETE and multipart uploads. Each test runs a cloud of its own, so
that its limits hold back no other suite."""

import os
import subprocess
import threading
import time
import uuid

from conftest import AwsCli, assert_ec2_error, assert_error, make_client, make_ec2
from test_ec2_images import TOOLS, bundle, upload
from test_image_feed import euca
from test_instances import guest  # noqa: F401 (the test guest fixture, built once)

MIB = 1 << 20


def set_quota(cloud, name, value):
    """euca-modify-property -p NAME=VALUE, checked with euca-describe-properties."""
    euca(cloud, "euca-modify-property", "-p", f"{name}={value}")
    _, out, _ = euca(cloud, "euca-describe-properties", name)
    assert f"PROPERTY\t{name}\t{value}" in out, out


def aws_cli(cloud, tmp_path):
    """The aws CLI with the cloud admin's eucarc, isolated from ~/.aws."""
    home = tmp_path / "aws-home"
    home.mkdir(parents=True)
    config = home / "config"
    config.write_text("[default]\ns3 =\n    addressing_style = path\n")
    env = cloud.admin_env()
    env.update({"HOME": str(home), "AWS_CONFIG_FILE": str(config),
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_PAGER": "",
                "AWS_MAX_ATTEMPTS": "1"})
    return AwsCli(cloud, env, str(home))


def test_bucket_and_byte_quotas_as_boto3_and_the_aws_cli_see_them(cloud_factory, tmp_path):
    c = cloud_factory()
    s3 = make_client(c.s3_url, c.region, c.access_key, c.secret_key)
    _, out, _ = euca(c, "euca-describe-properties", "walrus.quota")
    assert "PROPERTY\twalrus.quota.buckets_per_account\tunlimited" in out, out
    assert "PROPERTY\twalrus.quota.bytes_per_account\tunlimited" in out, out

    # Buckets: two per account.
    set_quota(c, "walrus.quota.buckets_per_account", "2")
    s3.create_bucket(Bucket="first")
    s3.create_bucket(Bucket="second")
    assert_error(s3.create_bucket, "TooManyBuckets", 400, Bucket="third")
    other = c.create_account("quota-other")
    theirs = make_client(c.s3_url, c.region, other["AWS_ACCESS_KEY_ID"],
                         other["AWS_SECRET_ACCESS_KEY"])
    theirs.create_bucket(Bucket="theirs-1")
    theirs.create_bucket(Bucket="theirs-2")
    assert_error(theirs.create_bucket, "TooManyBuckets", 400, Bucket="theirs-3")
    s3.delete_bucket(Bucket="second")
    s3.create_bucket(Bucket="third")

    # Bytes: 12 MiB per account, objects and parts of uploads in progress.
    set_quota(c, "walrus.quota.bytes_per_account", str(12 * MIB))
    s3.put_object(Bucket="first", Key="four", Body=os.urandom(4 * MIB))
    up = s3.create_multipart_upload(Bucket="first", Key="mp")["UploadId"]
    p1 = s3.upload_part(Bucket="first", Key="mp", UploadId=up, PartNumber=1,
                        Body=os.urandom(5 * MIB))
    p2 = s3.upload_part(Bucket="first", Key="mp", UploadId=up, PartNumber=2,
                        Body=os.urandom(2 * MIB))
    refused = assert_error(s3.upload_part, "QuotaExceeded", 403, Bucket="first", Key="mp",
                           UploadId=up, PartNumber=3, Body=os.urandom(2 * MIB))
    assert "quota" in refused["Error"]["Message"]
    s3.complete_multipart_upload(Bucket="first", Key="mp", UploadId=up, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": p1["ETag"]}, {"PartNumber": 2, "ETag": p2["ETag"]}]})
    assert_error(s3.put_object, "QuotaExceeded", 403, Bucket="first", Key="two",
                 Body=os.urandom(2 * MIB))
    assert_error(s3.copy_object, "QuotaExceeded", 403, Bucket="third", Key="copy",
                 CopySource={"Bucket": "first", "Key": "four"})
    aws = aws_cli(c, tmp_path)
    (tmp_path / "two.bin").write_bytes(os.urandom(2 * MIB))
    out = aws("s3", "cp", str(tmp_path / "two.bin"), "s3://first/two.bin", check=False)
    assert out.returncode != 0 and "QuotaExceeded" in out.stderr, out.stderr
    # Replacing an object counts the bytes it frees: 4 MiB become 5, 12 MiB in all.
    s3.put_object(Bucket="first", Key="four", Body=os.urandom(5 * MIB))
    assert_error(s3.put_object, "QuotaExceeded", 403, Bucket="third", Key="one",
                 Body=b"x")
    # Another account's usage is its own.
    theirs.put_object(Bucket="theirs-1", Key="k", Body=os.urandom(MIB))

    # What the account stores survives a restart.
    c.stop()
    c.start()
    s3 = make_client(c.s3_url, c.region, c.access_key, c.secret_key)
    assert_error(s3.put_object, "QuotaExceeded", 403, Bucket="third", Key="one",
                 Body=b"x")
    aws = aws_cli(c, tmp_path / "after")
    aws("s3", "rm", "s3://first/four")
    aws("s3", "cp", str(tmp_path / "two.bin"), "s3://first/two.bin")
    # Unlimited again: nothing is refused.
    euca(c, "euca-modify-property", "-r", "walrus.quota.bytes_per_account")
    s3.put_object(Bucket="first", Key="big", Body=os.urandom(8 * MIB))


def test_usage_stays_exact_under_concurrent_puts_deletes_and_multipart(cloud_factory):
    c = cloud_factory()
    s3 = make_client(c.s3_url, c.region, c.access_key, c.secret_key)
    s3.create_bucket(Bucket="busy")
    errors = []

    def worker(n):
        client = make_client(c.s3_url, c.region, c.access_key, c.secret_key)
        try:
            for i in range(6):
                key = f"k{(n + i) % 5}"
                client.put_object(Bucket="busy", Key=key, Body=os.urandom(1000 * (n + i + 1)))
                if i % 2:
                    client.delete_object(Bucket="busy", Key=f"k{(n + 2 * i) % 5}")
                if i == 3:
                    up = client.create_multipart_upload(Bucket="busy", Key=key)["UploadId"]
                    part = client.upload_part(Bucket="busy", Key=key, UploadId=up,
                                              PartNumber=1, Body=os.urandom(MIB + n))
                    if n % 2:
                        client.complete_multipart_upload(
                            Bucket="busy", Key=key, UploadId=up,
                            MultipartUpload={"Parts": [{"PartNumber": 1,
                                                        "ETag": part["ETag"]}]})
                    else:
                        client.abort_multipart_upload(Bucket="busy", Key=key, UploadId=up)
        except Exception as e:  # reported below, with the thread's number
            errors.append((n, e))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    held = sum(o["Size"] for o in s3.list_objects_v2(Bucket="busy").get("Contents", []))
    assert held > 0

    # The quota is exactly what the objects left hold: not one byte more fits, and after a
    # restart neither.
    set_quota(c, "walrus.quota.bytes_per_account", str(held))
    assert_error(s3.put_object, "QuotaExceeded", 403, Bucket="busy", Key="one", Body=b"x")
    c.stop()
    c.start()
    s3 = make_client(c.s3_url, c.region, c.access_key, c.secret_key)
    assert_error(s3.put_object, "QuotaExceeded", 403, Bucket="busy", Key="one", Body=b"x")
    set_quota(c, "walrus.quota.bytes_per_account", str(held + 5 * MIB))

    # Ten PUTs of 1 MiB at once against room for five: exactly five are stored.
    outcomes = []

    def put(i):
        client = make_client(c.s3_url, c.region, c.access_key, c.secret_key)
        try:
            client.put_object(Bucket="busy", Key=f"racer{i}", Body=os.urandom(MIB))
            outcomes.append("stored")
        except client.exceptions.ClientError as e:
            outcomes.append(e.response["Error"]["Code"])

    threads = [threading.Thread(target=put, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["QuotaExceeded"] * 5 + ["stored"] * 5, outcomes
    for obj in s3.list_objects_v2(Bucket="busy").get("Contents", []):
        s3.delete_object(Bucket="busy", Key=obj["Key"])
    s3.put_object(Bucket="busy", Key="all", Body=os.urandom(held + 5 * MIB))


def test_a_walrus_apart_enforces_the_clouds_quotas():
    """A Walrus on its own host learns the CLC's quota properties over the internal
    protocol, with its component key; a change with euca-modify-property reaches it within
    seconds."""
    from test_image_feed import walrus_apart_processes
    with walrus_apart_processes() as (c, walrus, _):
        s3 = make_client(walrus.s3_url, c.region, c.access_key, c.secret_key)
        s3.create_bucket(Bucket="apart-1")
        set_quota(c, "walrus.quota.buckets_per_account", "1")
        deadline = time.monotonic() + 20
        while True:
            try:
                s3.create_bucket(Bucket=f"apart-{uuid.uuid4().hex[:8]}")
            except s3.exceptions.ClientError as e:
                assert e.response["Error"]["Code"] == "TooManyBuckets", e.response
                break
            assert time.monotonic() < deadline, "the Walrus apart never learnt the quota"
            time.sleep(0.5)


def test_image_and_instance_quotas(cloud_factory, guest, tmp_path):
    from test_instances import register_guest, terminate_all, wait_state
    c = cloud_factory()
    ec2 = make_ec2(c, c.access_key, c.secret_key)
    s3 = make_client(c.s3_url, c.region, c.access_key, c.secret_key)
    set_quota(c, "cloud.quota.images_per_account", "3")
    _, _, emi, bucket = register_guest(c, s3, ec2, tmp_path, guest)
    manifest, parts = bundle(c, tmp_path, "fourth", 20_000, ["--kernel", "true"])
    location = upload(s3, bucket, "fourth", manifest, parts)
    refused = assert_ec2_error(ec2.register_image, "ResourceLimitExceeded", status=400,
                               ImageLocation=location, Name="fourth")
    assert "cloud.quota.images_per_account" in refused["Error"]["Message"]
    code, _, err = euca(c, "euca-register", location, "-n", "fourth", check=False)
    assert code != 0 and "ResourceLimitExceeded" in err, err

    try:
        set_quota(c, "cloud.quota.instances_per_account", "1")
        # MaxCount past the quota launches what fits; MinCount past it is refused.
        first = ec2.run_instances(ImageId=emi, MinCount=1, MaxCount=3)["Instances"]
        assert len(first) == 1
        refused = assert_ec2_error(ec2.run_instances, "InstanceLimitExceeded", status=400,
                                   ImageId=emi, MinCount=1, MaxCount=1)
        assert "cloud.quota.instances_per_account" in refused["Error"]["Message"]
        aws = aws_cli(c, tmp_path)
        out = aws("ec2", "run-instances", "--image-id", emi, "--count", "1",
                  endpoint=c.env["EC2_URL"], check=False)
        assert out.returncode != 0 and "InstanceLimitExceeded" in out.stderr, out.stderr
        code, _, err = euca(c, "euca-run-instances", emi, check=False)
        assert code != 0 and "InstanceLimitExceeded" in err, err
        # A terminated instance no longer counts.
        ec2.terminate_instances(InstanceIds=[first[0]["InstanceId"]])
        wait_state(ec2, [first[0]["InstanceId"]], {"terminated"}, timeout=120)
        again = ec2.run_instances(ImageId=emi, MinCount=1, MaxCount=1)["Instances"]
        assert len(again) == 1
    finally:
        terminate_all(c)
    # Deregistering makes room for another image.
    ec2.deregister_image(ImageId=emi)
    assert ec2.register_image(ImageLocation=location, Name="fourth")["ImageId"].startswith("eki-")
