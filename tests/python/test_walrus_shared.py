"""Several Walrus front ends serving one namespace (issue 16): object bytes in one RADOS pool,
records in one PostgreSQL database (`[walrus] database`). `koala up`'s Walrus and a second
`koala walrus` process on its own port and data dir: what is written through one is read
through the other at once, a multipart upload begun on one is finished on the other, and one
killed with -9 in the middle of 200 concurrent PUTs loses no acknowledged object, a GET
streaming through one outlives a delete through the other, and a quota counts what every front
end stored."""

import hashlib
import os
import shutil
import subprocess
import tempfile
import time

import pytest
from botocore.exceptions import ClientError

from conftest import (Cloud, ceph_start, ceph_stop, free_port, make_client, pg_start, pg_stop,
                      put_all_while_killing, walrus_on_rados)
from test_instances import Role
from test_quotas import set_quota

PUTS = 200


@pytest.fixture(scope="module")
def two():
    """(`koala up` with its Walrus, the S3 clients of its Walrus and of a second one, the
    second's Role, the pool's ceph.conf) sharing the pool and the database; a removed
    object's bytes stay 3 s. One for the module: each test uses buckets of its own."""
    ceph_dir, conf = ceph_start()
    pg_dir = None
    d = tempfile.mkdtemp(prefix="koala-e2e-shared-")
    c = second = None
    try:
        pg_dir, url = pg_start()
        shared = walrus_on_rados(conf) + f'database = "{url}"\nremoval_grace_secs = 3\n'
        with open(os.path.join(d, "koala.toml"), "w") as f:
            f.write(shared)
        c = Cloud(d)
        c.start()
        port = free_port()
        key = os.path.join("keys", "cloud-pk.pem")
        second = Role(["walrus", "--cloud-url", c.root_url.replace("http://", "https://")],
                      port, c.admin_env(), shared, files={key: os.path.join(d, key)})
        url = f"http://127.0.0.1:{port}/services/Walrus"
        a = make_client(c.s3_url, c.region, c.access_key, c.secret_key,
                        max_pool_connections=64, retries={"max_attempts": 1})
        b = make_client(url, c.region, c.access_key, c.secret_key,
                        max_pool_connections=64, retries={"max_attempts": 1})
        yield c, a, b, second, conf
    finally:
        if second is not None:
            second.stop()
        if c is not None:
            c.stop()
        if pg_dir:
            pg_stop(pg_dir)
        shutil.rmtree(d, ignore_errors=True)
        ceph_stop(ceph_dir)


def test_what_one_front_end_writes_the_other_reads_at_once(two):
    _, a, b, _, _ = two
    a.create_bucket(Bucket="shared")
    # Inline in the records, one RADOS stripe, several stripes.
    bodies = {"small": os.urandom(1000), "medium": os.urandom(96 << 10),
              "large": os.urandom(9 << 20)}
    for key, body in bodies.items():
        etag = a.put_object(Bucket="shared", Key=key, Body=body)["ETag"]
        got = b.get_object(Bucket="shared", Key=key)
        assert got["ETag"] == etag
        assert got["Body"].read() == body
    assert [o["Key"] for o in b.list_objects_v2(Bucket="shared")["Contents"]] == \
        ["large", "medium", "small"]
    assert "shared" in [x["Name"] for x in b.list_buckets()["Buckets"]]

    # Overwritten and deleted through the second: the first sees it at once.
    b.put_object(Bucket="shared", Key="small", Body=b"replaced")
    assert a.get_object(Bucket="shared", Key="small")["Body"].read() == b"replaced"
    b.delete_object(Bucket="shared", Key="medium")
    with pytest.raises(ClientError) as e:
        a.head_object(Bucket="shared", Key="medium")
    assert e.value.response["Error"]["Code"] == "404"

    # A bucket that holds objects is not deleted through either; emptied, it goes for both.
    with pytest.raises(ClientError) as e:
        b.delete_bucket(Bucket="shared")
    assert e.value.response["Error"]["Code"] == "BucketNotEmpty"
    for key in ("small", "large"):
        a.delete_object(Bucket="shared", Key=key)
    b.delete_bucket(Bucket="shared")
    with pytest.raises(ClientError) as e:
        a.put_object(Bucket="shared", Key="late", Body=b"x")
    assert e.value.response["Error"]["Code"] == "NoSuchBucket"
    assert "shared" not in [x["Name"] for x in a.list_buckets()["Buckets"]]
    # The name is free again, and made through one it is there for the other.
    b.create_bucket(Bucket="shared")
    assert "shared" in [x["Name"] for x in a.list_buckets()["Buckets"]]


def test_a_multipart_upload_begun_on_one_is_completed_on_the_other(two):
    _, a, b, _, _ = two
    a.create_bucket(Bucket="parts")
    up = a.create_multipart_upload(Bucket="parts", Key="big")["UploadId"]
    one, two_, three = os.urandom(5 << 20), os.urandom(5 << 20), os.urandom(1 << 20)
    e1 = a.upload_part(Bucket="parts", Key="big", UploadId=up, PartNumber=1, Body=one)["ETag"]
    e2 = b.upload_part(Bucket="parts", Key="big", UploadId=up, PartNumber=2, Body=two_)["ETag"]
    e3 = a.upload_part(Bucket="parts", Key="big", UploadId=up, PartNumber=3, Body=three)["ETag"]
    listed = b.list_parts(Bucket="parts", Key="big", UploadId=up)["Parts"]
    assert [p["PartNumber"] for p in listed] == [1, 2, 3]
    b.complete_multipart_upload(
        Bucket="parts", Key="big", UploadId=up,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2},
                                   {"PartNumber": 3, "ETag": e3}]})
    body = a.get_object(Bucket="parts", Key="big")["Body"].read()
    assert hashlib.sha256(body).digest() == hashlib.sha256(one + two_ + three).digest()
    # The upload is gone for both.
    with pytest.raises(ClientError) as e:
        a.list_parts(Bucket="parts", Key="big", UploadId=up)
    assert e.value.response["Error"]["Code"] == "NoSuchUpload"


def test_one_killed_during_200_concurrent_puts_loses_no_acknowledged_object(two):
    _, a, b, second, _ = two
    a.create_bucket(Bucket="crash")
    # Half inline in the records, half in RADOS; written through both front ends at once.
    bodies = {f"k{i:03d}": os.urandom(1000 if i % 2 else 40 << 10) for i in range(PUTS)}

    def put(key, body):
        client = b if int(key[1:]) % 4 else a
        return client.put_object(Bucket="crash", Key=key, Body=body)["ETag"]

    # The second front end killed under the PUTs it is answering.
    acked = put_all_while_killing(bodies, put, second.kill)
    assert len(acked) >= PUTS // 4
    # Every acknowledged object reads whole through the front end that lives on.
    for key, etag in acked.items():
        got = a.get_object(Bucket="crash", Key=key)
        assert got["ETag"] == etag, key
        assert got["Body"].read() == bodies[key], key
    listed = set()
    for page in a.get_paginator("list_objects_v2").paginate(Bucket="crash"):
        listed |= {o["Key"] for o in page.get("Contents", [])}
    assert set(acked) <= listed
    # The killed one starts again on its data dir and serves the same namespace.
    second.spawn()
    for key in list(acked)[:10]:
        assert b.get_object(Bucket="crash", Key=key)["Body"].read() == bodies[key]


def pool_objects(conf):
    out = subprocess.run(["rados", "-c", conf, "-p", "koala", "ls"], capture_output=True,
                         text=True, timeout=60, check=True)
    return set(out.stdout.split())


def test_a_get_streaming_through_one_outlives_a_delete_through_the_other(two):
    _, a, b, _, conf = two
    a.create_bucket(Bucket="stream")
    before = pool_objects(conf)
    body = os.urandom(13 << 20)  # four 4 MiB stripes
    a.put_object(Bucket="stream", Key="big", Body=body)
    stripes = pool_objects(conf) - before
    assert len(stripes) == 4, stripes
    reading = b.get_object(Bucket="stream", Key="big")["Body"]
    head = reading.read(1 << 20)
    # Deleted and overwritten through the first while the second streams the old bytes.
    a.delete_object(Bucket="stream", Key="big")
    a.put_object(Bucket="stream", Key="big", Body=b"new")
    assert head + reading.read() == body
    assert b.get_object(Bucket="stream", Key="big")["Body"].read() == b"new"
    # Once the grace is over, a front end's sweeper removes the old stripes.
    deadline = time.monotonic() + 30
    while pool_objects(conf) & stripes:
        assert time.monotonic() < deadline, "the removed object's stripes stay in the pool"
        time.sleep(0.5)


def test_a_quota_counts_what_every_front_end_stored(two):
    c, a, b, _, _ = two
    a.create_bucket(Bucket="quota")
    # What the other tests of the module left counts too: the limit is above it.
    held = sum(o["Size"] for bucket in a.list_buckets()["Buckets"]
               for page in a.get_paginator("list_objects_v2").paginate(Bucket=bucket["Name"])
               for o in page.get("Contents", []))
    set_quota(c, "walrus.quota.bytes_per_account", str(held + (1 << 20)))
    try:
        a.put_object(Bucket="quota", Key="one", Body=os.urandom(700 << 10))
        # The second front end counts what the first stored.
        with pytest.raises(ClientError) as e:
            b.put_object(Bucket="quota", Key="two", Body=os.urandom(700 << 10))
        assert e.value.response["Error"]["Code"] == "QuotaExceeded"
        # Freed through the second, there is room through the first.
        b.delete_object(Bucket="quota", Key="one")
        a.put_object(Bucket="quota", Key="two", Body=os.urandom(700 << 10))
    finally:
        set_quota(c, "walrus.quota.bytes_per_account", "unlimited")
