"""Walrus with its object bytes in Ceph RADOS (issue 16), beyond the S3 suites that scripts/test
runs against it: `koala up` killed with -9 in the middle of 200 concurrent PUTs loses no
acknowledged object, and leaves no stripe in the pool that no object references."""

import hashlib
import os
import shutil
import signal
import subprocess
import tempfile

from conftest import ceph  # noqa: F401 - a Ceph cluster of the test's own
from conftest import Cloud, make_client, put_all_while_killing, walrus_on_rados

PUTS = 200
# Above the 16 KiB Walrus keeps inline in RocksDB, under one 4 MiB stripe: each object is one
# RADOS object, so the pool's object count is the bucket's.
SIZE = 96 << 10


def pool_objects(conf):
    out = subprocess.run(["rados", "-c", conf, "-p", "koala", "ls"], capture_output=True,
                         text=True, timeout=60, check=True)
    return out.stdout.split()


def test_kill_during_200_concurrent_puts_loses_no_acknowledged_object(ceph):
    d = tempfile.mkdtemp(prefix="koala-e2e-rados-")
    with open(os.path.join(d, "koala.toml"), "w") as f:
        f.write(walrus_on_rados(ceph))
    c = Cloud(d)
    try:
        c.start()
        s3 = make_client(c.s3_url, c.region, c.access_key, c.secret_key,
                         max_pool_connections=64, retries={"max_attempts": 1})
        s3.create_bucket(Bucket="crash")
        bodies = {f"k{i:03d}": os.urandom(SIZE) for i in range(PUTS)}

        def kill():
            os.kill(c.proc.pid, signal.SIGKILL)
            c.proc.wait()

        acked = put_all_while_killing(
            bodies, lambda k, body: s3.put_object(Bucket="crash", Key=k, Body=body)["ETag"],
            kill)
        assert PUTS // 4 <= len(acked) < PUTS, f"{len(acked)} acknowledged: not cut mid-way"
        c.stop()

        c.start()
        s3 = make_client(c.s3_url, c.region, c.access_key, c.secret_key)
        for key, etag in acked.items():
            got = s3.get_object(Bucket="crash", Key=key)
            assert got["ETag"] == etag
            assert hashlib.md5(got["Body"].read()).hexdigest() == \
                hashlib.md5(bodies[key]).hexdigest(), key
        listed = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket="crash") for o in page.get("Contents", [])]
        assert set(acked) <= set(listed)
        # Whatever was written but never committed was swept at the restart.
        assert len(pool_objects(ceph)) == len(listed), (len(pool_objects(ceph)), len(listed))

        for key in listed:
            s3.delete_object(Bucket="crash", Key=key)
        s3.delete_bucket(Bucket="crash")
        assert pool_objects(ceph) == []
    finally:
        c.stop()
        shutil.rmtree(d, ignore_errors=True)
