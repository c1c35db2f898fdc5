"""Walrus' object versioning and conditional writes through boto3, against the real
`koala up`: bucket versioning states, version ids on every kind of write, reads, deletes and
listings by version, delete markers, the "null" version, and preconditions that hold under
concurrent writers."""

import datetime
import threading
import uuid

import pytest
from botocore.exceptions import ClientError

from conftest import assert_error, empty_and_delete, md5_hex, unique_bucket


def enable(s3, bucket, status="Enabled"):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": status})


def versions(s3, bucket, **kw):
    """(key, version id, is-latest) of every version, and of every delete marker, in order."""
    page = s3.list_object_versions(Bucket=bucket, **kw)
    vs = [(v["Key"], v["VersionId"], v["IsLatest"]) for v in page.get("Versions", [])]
    ms = [(m["Key"], m["VersionId"], m["IsLatest"]) for m in page.get("DeleteMarkers", [])]
    return vs, ms


def body(s3, bucket, key, version=None):
    kw = {"VersionId": version} if version else {}
    return s3.get_object(Bucket=bucket, Key=key, **kw)["Body"].read()


def headers_of_error(fn, **kw):
    with pytest.raises(ClientError) as exc:
        fn(**kw)
    r = exc.value.response
    return r["Error"].get("Code"), r["ResponseMetadata"]["HTTPStatusCode"], \
        r["ResponseMetadata"]["HTTPHeaders"]


@pytest.fixture
def versioned(s3, bucket):
    enable(s3, bucket)
    return bucket


# ---------------------------------------------------------------------------------------------
# Configuration


def test_versioning_states_and_who_may_set_them(s3, s3_other, bucket):
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)
    enable(s3, bucket, "Suspended")
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Suspended"
    s3.put_bucket_versioning(Bucket=bucket,
                             VersioningConfiguration={"MFADelete": "Disabled",
                                                      "Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    for bad in ("enabled", "Disabled", ""):
        assert_error(s3.put_bucket_versioning, "MalformedXML", 400, Bucket=bucket,
                     VersioningConfiguration={"Status": bad})
    assert_error(s3.put_bucket_versioning, "InvalidArgument", 400, Bucket=bucket,
                 VersioningConfiguration={"MFADelete": "Enabled", "Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    assert_error(s3_other.get_bucket_versioning, "AccessDenied", 403, Bucket=bucket)
    assert_error(s3_other.put_bucket_versioning, "AccessDenied", 403, Bucket=bucket,
                 VersioningConfiguration={"Status": "Suspended"})
    assert_error(s3.get_bucket_versioning, "NoSuchBucket", 404, Bucket=unique_bucket("none"))


# ---------------------------------------------------------------------------------------------
# Versions


def test_every_write_is_a_version_read_back_by_its_id(s3, versioned):
    b = versioned
    ids = [s3.put_object(Bucket=b, Key="k", Body=f"content-{i}".encode())["VersionId"]
           for i in range(4)]
    assert len(set(ids)) == 4
    vs, ms = versions(s3, b)
    assert vs == [("k", v, i == 0) for i, v in enumerate(reversed(ids))] and ms == []
    for i, v in enumerate(ids):
        assert body(s3, b, "k", v) == f"content-{i}".encode()
        head = s3.head_object(Bucket=b, Key="k", VersionId=v)
        assert head["VersionId"] == v and head["ContentLength"] == 9
    current = s3.get_object(Bucket=b, Key="k")
    assert current["VersionId"] == ids[-1] and current["Body"].read() == b"content-3"
    # A range of an older version.
    got = s3.get_object(Bucket=b, Key="k", VersionId=ids[1], Range="bytes=8-8")
    assert got["Body"].read() == b"1"

    # Listed fields agree with HEAD.
    listed = s3.list_object_versions(Bucket=b)["Versions"][0]
    head = s3.head_object(Bucket=b, Key="k")
    assert listed["ETag"] == head["ETag"] and listed["Size"] == head["ContentLength"]
    assert listed["LastModified"].replace(microsecond=0) == head["LastModified"]
    assert listed["Owner"]["ID"] == s3.get_object_acl(Bucket=b, Key="k")["Owner"]["ID"]

    unknown = "0" * 32
    assert_error(s3.get_object, "NoSuchVersion", 404, Bucket=b, Key="k", VersionId=unknown)
    assert_error(s3.get_object, "InvalidArgument", 400, Bucket=b, Key="k",
                 VersionId="not-a-version")
    # An id is of its key only.
    assert_error(s3.get_object, "NoSuchVersion", 404, Bucket=b, Key="other",
                 VersionId=ids[0])


def test_delete_markers_hide_a_key_until_removed(s3, versioned):
    b = versioned
    v1 = s3.put_object(Bucket=b, Key="k", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket=b, Key="k", Body=b"two")["VersionId"]
    deleted = s3.delete_object(Bucket=b, Key="k")
    assert deleted["DeleteMarker"] is True
    marker = deleted["VersionId"]
    assert marker not in (v1, v2)

    code, status, headers = headers_of_error(s3.get_object, Bucket=b, Key="k")
    assert (code, status) == ("NoSuchKey", 404)
    assert headers["x-amz-delete-marker"] == "true" and headers["x-amz-version-id"] == marker
    code, status, headers = headers_of_error(s3.head_object, Bucket=b, Key="k")
    assert status == 404 and headers["x-amz-delete-marker"] == "true"
    code, status, headers = headers_of_error(s3.get_object, Bucket=b, Key="k",
                                             VersionId=marker)
    assert (code, status) == ("MethodNotAllowed", 405)
    assert headers["x-amz-delete-marker"] == "true"
    assert "Contents" not in s3.list_objects_v2(Bucket=b)
    vs, ms = versions(s3, b)
    assert vs == [("k", v2, False), ("k", v1, False)] and ms == [("k", marker, True)]
    assert_error(s3.delete_bucket, "BucketNotEmpty", 409, Bucket=b)
    # Tags and ACLs of a marker: none to read or change.
    assert_error(s3.get_object_tagging, "MethodNotAllowed", 405, Bucket=b, Key="k",
                 VersionId=marker)
    assert_error(s3.get_object_tagging, "NoSuchKey", 404, Bucket=b, Key="k")

    # Every delete stacks another marker, even on a marker, even on a key never written.
    again = s3.delete_object(Bucket=b, Key="k")
    never = s3.delete_object(Bucket=b, Key="never-written")
    assert never["DeleteMarker"] is True
    vs, ms = versions(s3, b)
    assert ms == [("k", again["VersionId"], True), ("k", marker, False),
                  ("never-written", never["VersionId"], True)]

    # Removing the markers brings the newest version back.
    for m in (again["VersionId"], marker):
        resp = s3.delete_object(Bucket=b, Key="k", VersionId=m)
        assert resp["DeleteMarker"] is True and resp["VersionId"] == m
    assert body(s3, b, "k") == b"two"
    # Removing the current version promotes the one below it; the id is gone for good.
    resp = s3.delete_object(Bucket=b, Key="k", VersionId=v2)
    assert resp["VersionId"] == v2 and "DeleteMarker" not in resp
    assert body(s3, b, "k") == b"one"
    assert_error(s3.get_object, "NoSuchVersion", 404, Bucket=b, Key="k", VersionId=v2)
    # Deleting a version that is not there succeeds and echoes its id.
    assert s3.delete_object(Bucket=b, Key="k", VersionId=v2)["VersionId"] == v2


def test_null_versions_before_and_while_suspended(s3, bucket):
    b = bucket
    # Never versioned: writes name no version, GETs neither.
    put = s3.put_object(Bucket=b, Key="k", Body=b"plain")
    assert "VersionId" not in put
    assert "VersionId" not in s3.get_object(Bucket=b, Key="k")
    assert "VersionId" not in s3.delete_object(Bucket=b, Key="absent")
    vs, _ = versions(s3, b)
    assert vs == [("k", "null", True)]

    enable(s3, b)
    # The plain object is the key's null version, kept below the new one.
    v1 = s3.put_object(Bucket=b, Key="k", Body=b"v1")["VersionId"]
    assert s3.head_object(Bucket=b, Key="k")["VersionId"] == v1
    vs, _ = versions(s3, b)
    assert vs == [("k", v1, True), ("k", "null", False)]
    assert body(s3, b, "k", "null") == b"plain"
    s3.delete_object(Bucket=b, Key="k", VersionId=v1)
    got = s3.get_object(Bucket=b, Key="k")
    assert got["Body"].read() == b"plain" and got["VersionId"] == "null"

    v2 = s3.put_object(Bucket=b, Key="k", Body=b"v2")["VersionId"]
    # Suspended: writes replace the null version, keep the others, and name no version.
    enable(s3, b, "Suspended")
    put = s3.put_object(Bucket=b, Key="k", Body=b"null-1")
    assert "VersionId" not in put
    put = s3.put_object(Bucket=b, Key="k", Body=b"null-2")
    vs, ms = versions(s3, b)
    assert vs == [("k", "null", True), ("k", v2, False)] and ms == []
    assert body(s3, b, "k", "null") == b"null-2"
    # A delete puts a null marker in the null version's place.
    deleted = s3.delete_object(Bucket=b, Key="k")
    assert deleted["DeleteMarker"] is True and deleted["VersionId"] == "null"
    vs, ms = versions(s3, b)
    assert vs == [("k", v2, False)] and ms == [("k", "null", True)]
    code, status, headers = headers_of_error(s3.head_object, Bucket=b, Key="k")
    assert status == 404 and headers["x-amz-delete-marker"] == "true"
    s3.delete_object(Bucket=b, Key="k", VersionId="null")
    assert body(s3, b, "k") == b"v2"


def test_copies_and_multipart_uploads_make_versions(s3, versioned):
    b = versioned
    v1 = s3.put_object(Bucket=b, Key="src", Body=b"first",
                       Metadata={"n": "1"}, ContentType="text/one")["VersionId"]
    s3.put_object(Bucket=b, Key="src", Body=b"second")
    copy = s3.copy_object(Bucket=b, Key="dst",
                          CopySource={"Bucket": b, "Key": "src", "VersionId": v1})
    assert copy["CopySourceVersionId"] == v1 and copy["VersionId"]
    got = s3.get_object(Bucket=b, Key="dst")
    assert got["Body"].read() == b"first" and got["Metadata"] == {"n": "1"}
    assert got["ContentType"] == "text/one" and got["VersionId"] == copy["VersionId"]
    # A key with '?' in it, copied by version.
    q = s3.put_object(Bucket=b, Key="foo?bar", Body=b"q")["VersionId"]
    s3.copy_object(Bucket=b, Key="bar&foo",
                   CopySource={"Bucket": b, "Key": "foo?bar", "VersionId": q})
    assert body(s3, b, "bar&foo") == b"q"
    marker = s3.delete_object(Bucket=b, Key="src")["VersionId"]
    assert_error(s3.copy_object, "InvalidRequest", 400, Bucket=b, Key="x",
                 CopySource={"Bucket": b, "Key": "src", "VersionId": marker})
    assert_error(s3.copy_object, "NoSuchKey", 404, Bucket=b, Key="x",
                 CopySource={"Bucket": b, "Key": "src"})

    part = b"p" * (5 << 20)
    up = s3.create_multipart_upload(Bucket=b, Key="mp")["UploadId"]
    e1 = s3.upload_part(Bucket=b, Key="mp", UploadId=up, PartNumber=1, Body=part)["ETag"]
    e2 = s3.upload_part_copy(Bucket=b, Key="mp", UploadId=up, PartNumber=2,
                             CopySource={"Bucket": b, "Key": "src", "VersionId": v1}
                             )["CopyPartResult"]["ETag"]
    done = s3.complete_multipart_upload(
        Bucket=b, Key="mp", UploadId=up,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1},
                                   {"PartNumber": 2, "ETag": e2}]})
    assert done["VersionId"] == s3.head_object(Bucket=b, Key="mp")["VersionId"]
    assert body(s3, b, "mp", done["VersionId"])[-5:] == b"first"


def test_writes_name_a_version_only_when_versioning_is_enabled(s3, bucket):
    part = b"m" * (5 << 20)

    def writes():
        put = s3.put_object(Bucket=bucket, Key="k", Body=b"x")
        copy = s3.copy_object(Bucket=bucket, Key="c", CopySource={"Bucket": bucket, "Key": "k"})
        up = s3.create_multipart_upload(Bucket=bucket, Key="m")["UploadId"]
        etag = s3.upload_part(Bucket=bucket, Key="m", UploadId=up, PartNumber=1,
                              Body=part)["ETag"]
        done = s3.complete_multipart_upload(
            Bucket=bucket, Key="m", UploadId=up,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
        return ["VersionId" in r for r in (put, copy, done)]

    assert writes() == [False] * 3
    enable(s3, bucket)
    assert writes() == [True] * 3
    enable(s3, bucket, "Suspended")
    assert writes() == [False] * 3


def test_acls_and_tags_belong_to_each_version(s3, versioned, admin_id):
    b = versioned
    ids = [s3.put_object(Bucket=b, Key="k", Body=bytes([i]))["VersionId"] for i in range(3)]
    s3.put_object_acl(Bucket=b, Key="k", VersionId=ids[1], ACL="public-read")
    grants = s3.get_object_acl(Bucket=b, Key="k", VersionId=ids[1])["Grants"]
    assert {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"} in [
        g["Grantee"] for g in grants]
    assert len(s3.get_object_acl(Bucket=b, Key="k")["Grants"]) == 1
    tagged = s3.put_object_tagging(Bucket=b, Key="k", VersionId=ids[0],
                                   Tagging={"TagSet": [{"Key": "old", "Value": "yes"}]})
    assert tagged["VersionId"] == ids[0]
    assert s3.get_object_tagging(Bucket=b, Key="k", VersionId=ids[0])["TagSet"] == [
        {"Key": "old", "Value": "yes"}]
    assert s3.get_object_tagging(Bucket=b, Key="k")["TagSet"] == []
    # Changing an ACL or tags makes no version and keeps the time.
    before = s3.head_object(Bucket=b, Key="k")["LastModified"]
    s3.put_object_acl(Bucket=b, Key="k", ACL="public-read")
    assert s3.head_object(Bucket=b, Key="k")["LastModified"] == before
    assert len(versions(s3, b)[0]) == 3
    attrs = s3.get_object_attributes(Bucket=b, Key="k", VersionId=ids[0],
                                     ObjectAttributes=["ObjectSize", "ETag"])
    assert attrs["VersionId"] == ids[0] and attrs["ObjectSize"] == 1
    assert "DeleteMarker" not in attrs


def test_listing_pages_by_key_and_version_markers(s3, versioned):
    b = versioned
    expected = []
    for key in ("a", "b/1", "b/2", "c"):
        ids = [s3.put_object(Bucket=b, Key=key, Body=b"x")["VersionId"] for _ in range(3)]
        expected += [(key, v) for v in reversed(ids)]
    marker = s3.delete_object(Bucket=b, Key="c")["VersionId"]
    expected.insert(9, ("c", marker))
    for size in (1, 2, 5):
        seen, kw = [], {}
        while True:
            page = s3.list_object_versions(Bucket=b, MaxKeys=size, **kw)
            entries = page.get("Versions", []) + page.get("DeleteMarkers", [])
            assert len(entries) <= size
            seen += sorted(((e["Key"], e["VersionId"]) for e in entries),
                           key=expected.index)
            if not page["IsTruncated"]:
                break
            kw = {"KeyMarker": page["NextKeyMarker"],
                  "VersionIdMarker": page["NextVersionIdMarker"]}
        assert seen == expected, size
    page = s3.list_object_versions(Bucket=b, Delimiter="/")
    assert [p["Prefix"] for p in page["CommonPrefixes"]] == ["b/"]
    assert len(page["Versions"]) == 6
    page = s3.list_object_versions(Bucket=b, KeyMarker="b/1")
    assert page["Versions"][0]["Key"] == "b/2"
    assert_error(s3.list_object_versions, "InvalidArgument", 400, Bucket=b,
                 VersionIdMarker="null")


def test_the_conformance_harness_cleanup_empties_a_versioned_bucket(s3, versioned):
    """Pages of 128 listed and deleted one after the other (the next page is asked for after
    its marker was deleted), as the S3 conformance suites clean up: nothing may be left."""
    b = versioned
    keys = [f"k{i:03d}" for i in range(60)]
    for k in keys:
        for _ in range(3):
            s3.put_object(Bucket=b, Key=k, Body=b"")
        s3.delete_object(Bucket=b, Key=k)
    enable(s3, b, "Suspended")
    for k in keys[:20]:
        s3.put_object(Bucket=b, Key=k, Body=b"null")
    kw = {}
    while True:
        page = s3.list_object_versions(Bucket=b, MaxKeys=128, **kw)
        objects = [{"Key": e["Key"], "VersionId": e["VersionId"]}
                   for e in page.get("Versions", []) + page.get("DeleteMarkers", [])]
        if objects:
            s3.delete_objects(Bucket=b, Delete={"Objects": objects, "Quiet": True},
                              BypassGovernanceRetention=True)
        if not page["IsTruncated"]:
            break
        kw = {"KeyMarker": page["NextKeyMarker"],
              "VersionIdMarker": page["NextVersionIdMarker"]}
    assert versions(s3, b) == ([], [])
    s3.delete_bucket(Bucket=b)


def test_delete_objects_by_version_with_markers_and_racing_callers(s3, versioned):
    b = versioned
    made = [(k, s3.put_object(Bucket=b, Key=k, Body=b"x")["VersionId"])
            for k in ("a", "b", "c", "d", "e") for _ in range(3)]
    resp = s3.delete_objects(Bucket=b, Delete={"Objects": [{"Key": "new"}]})
    assert resp["Deleted"][0]["DeleteMarker"] is True
    assert resp["Deleted"][0]["DeleteMarkerVersionId"] == versions(s3, b)[1][0][1]
    # Five callers delete the same fifteen versions at once: every one sees all deleted.
    request = {"Objects": [{"Key": k, "VersionId": v} for k, v in made]}
    results = []

    def delete():
        results.append(s3.delete_objects(Bucket=b, Delete=request))

    threads = [threading.Thread(target=delete) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 5
    for r in results:
        assert len(r["Deleted"]) == 15 and "Errors" not in r
        assert all("DeleteMarker" not in d for d in r["Deleted"])
    assert versions(s3, b)[0] == []
    marker = versions(s3, b)[1][0][1]
    resp = s3.delete_objects(Bucket=b, Delete={"Objects": [{"Key": "new", "VersionId": marker}]})
    assert resp["Deleted"][0]["DeleteMarker"] is True
    assert resp["Deleted"][0]["DeleteMarkerVersionId"] == marker
    resp = s3.delete_objects(Bucket=b, Delete={"Objects": [{"Key": "x", "VersionId": "bad"}]})
    assert resp["Errors"][0]["Code"] == "NoSuchVersion"
    s3.delete_bucket(Bucket=b)


def test_concurrent_writers_of_one_key_each_make_a_version(s3, versioned):
    b = versioned
    for _ in range(3):
        made = []

        def put(i):
            made.append(s3.put_object(Bucket=b, Key="k", Body=f"{i}".encode())["VersionId"])

        threads = [threading.Thread(target=put, args=(i,)) for i in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        listed = versions(s3, b)[0]
        assert sorted(v for _, v, _ in listed) == sorted(made) and len(set(made)) == 5
        assert [latest for _, _, latest in listed] == [True] + [False] * 4
        threads = [threading.Thread(target=s3.delete_object,
                                    kwargs={"Bucket": b, "Key": "k", "VersionId": v})
                   for v in made]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert versions(s3, b) == ([], [])


# ---------------------------------------------------------------------------------------------
# Conditional writes and deletes


@pytest.mark.parametrize("versioning", [None, "Enabled"])
def test_conditional_puts(s3, bucket, versioning):
    b = bucket
    if versioning:
        enable(s3, b, versioning)
    etag = s3.put_object(Bucket=b, Key="k", Body=b"one", IfNoneMatch="*")["ETag"]
    assert_error(s3.put_object, "PreconditionFailed", 412, Bucket=b, Key="k", Body=b"x",
                 IfNoneMatch="*")
    assert_error(s3.put_object, "PreconditionFailed", 412, Bucket=b, Key="k", Body=b"x",
                 IfNoneMatch=etag)
    assert_error(s3.put_object, "PreconditionFailed", 412, Bucket=b, Key="k", Body=b"x",
                 IfMatch='"0123"')
    assert body(s3, b, "k") == b"one"
    etag2 = s3.put_object(Bucket=b, Key="k", Body=b"two", IfMatch=etag.strip('"'))["ETag"]
    # An older version's ETag is no match: only the current version counts.
    assert_error(s3.put_object, "PreconditionFailed", 412, Bucket=b, Key="k", Body=b"x",
                 IfMatch=etag)
    s3.put_object(Bucket=b, Key="k", Body=b"three", IfNoneMatch=etag)
    s3.put_object(Bucket=b, Key="k", Body=b"four", IfMatch="*")
    s3.delete_object(Bucket=b, Key="k")
    # Nothing there (or a delete marker on top): If-Match fails with NoSuchKey.
    for match in ("*", etag2):
        assert_error(s3.put_object, "NoSuchKey", 404, Bucket=b, Key="k", Body=b"x",
                     IfMatch=match)
    s3.put_object(Bucket=b, Key="k", Body=b"five", IfNoneMatch="*")

    part = b"p" * (5 << 20)
    up = s3.create_multipart_upload(Bucket=b, Key="k")["UploadId"]
    e1 = s3.upload_part(Bucket=b, Key="k", UploadId=up, PartNumber=1, Body=part)["ETag"]
    parts = {"Parts": [{"PartNumber": 1, "ETag": e1}]}
    assert_error(s3.complete_multipart_upload, "PreconditionFailed", 412, Bucket=b, Key="k",
                 UploadId=up, MultipartUpload=parts, IfNoneMatch="*")
    s3.complete_multipart_upload(Bucket=b, Key="k", UploadId=up, MultipartUpload=parts,
                                 IfMatch=md5_hex(b"five"))
    assert body(s3, b, "k") == part


def test_only_one_of_racing_create_if_absent_writers_wins(s3, bucket):
    outcomes = []

    def put(i):
        try:
            s3.put_object(Bucket=bucket, Key="lock", Body=f"{i}".encode(), IfNoneMatch="*")
            outcomes.append(("won", i))
        except ClientError as e:
            outcomes.append((e.response["Error"]["Code"], i))

    threads = [threading.Thread(target=put, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for what, i in outcomes if what == "won"]
    assert len(winners) == 1
    assert sorted(what for what, _ in outcomes) == ["PreconditionFailed"] * 5 + ["won"]
    assert body(s3, bucket, "lock") == f"{winners[0]}".encode()


@pytest.mark.parametrize("versioning", [None, "Enabled"])
def test_conditional_deletes(s3, bucket, versioning):
    b = bucket
    if versioning:
        enable(s3, b, versioning)
    put = s3.put_object(Bucket=b, Key="k", Body=b"data")
    head = s3.head_object(Bucket=b, Key="k")
    old = datetime.datetime(2015, 1, 1, tzinfo=datetime.timezone.utc)
    for kw in ({"IfMatch": "badetag"}, {"IfMatchSize": 9999},
               {"IfMatchLastModifiedTime": old}):
        assert_error(s3.delete_object, "PreconditionFailed", 412, Bucket=b, Key="k", **kw)
    assert body(s3, b, "k") == b"data"
    resp = s3.delete_object(Bucket=b, Key="k", IfMatch=put["ETag"], IfMatchSize=4,
                            IfMatchLastModifiedTime=head["LastModified"])
    assert resp.get("DeleteMarker", False) == (versioning is not None)
    # Nothing left to match: a no-op, not an error.
    s3.delete_object(Bucket=b, Key="absent", IfMatch="badetag")
    if versioning:
        # A delete marker on top has no ETag, size or time to match.
        assert_error(s3.delete_object, "PreconditionFailed", 412, Bucket=b, Key="k",
                     IfMatch="badetag")
        s3.delete_object(Bucket=b, Key="k", IfMatch="*")
        vid = put["VersionId"]
        assert_error(s3.delete_object, "PreconditionFailed", 412, Bucket=b, Key="k",
                     VersionId=vid, IfMatchSize=1)
        resp = s3.delete_object(Bucket=b, Key="k", VersionId=vid, IfMatch=put["ETag"])
        assert "DeleteMarker" not in resp

    s3.put_object(Bucket=b, Key="m", Body=b"multi")
    resp = s3.delete_objects(Bucket=b, Delete={"Objects": [
        {"Key": "m", "ETag": '"bad"'},
        {"Key": "m", "Size": 5, "ETag": f'"{md5_hex(b"multi")}"'},
    ]})
    assert [e["Code"] for e in resp["Errors"]] == ["PreconditionFailed"]
    assert [d["Key"] for d in resp["Deleted"]] == ["m"]


def test_a_versioned_bucket_empties_and_deletes_with_the_fixture_cleanup(s3):
    """The suites' fixture empties versioned buckets too (conftest.empty_and_delete)."""
    b = unique_bucket("cleanup")
    s3.create_bucket(Bucket=b)
    enable(s3, b)
    for i in range(3):
        s3.put_object(Bucket=b, Key=f"k{i % 2}", Body=uuid.uuid4().bytes)
    s3.delete_object(Bucket=b, Key="k0")
    empty_and_delete(s3, b)
    assert_error(s3.head_bucket, "404", 404, Bucket=b)


def test_only_the_bucket_owner_deletes_versions_for_good(s3, s3_other, s3_anon, versioned,
                                                        other_id):
    b = versioned
    s3.put_bucket_acl(Bucket=b, ACL="public-read-write")
    vid = s3_anon.put_object(Bucket=b, Key="k", Body=b"history")["VersionId"]
    # Anyone who may write may hide the key behind a marker...
    assert s3_anon.delete_object(Bucket=b, Key="k")["DeleteMarker"] is True
    # ...but not take a version away.
    for client in (s3_anon, s3_other):
        assert_error(client.delete_object, "AccessDenied", 403, Bucket=b, Key="k",
                     VersionId=vid)
        resp = client.delete_objects(Bucket=b, Delete={"Objects": [{"Key": "k",
                                                                    "VersionId": vid}]})
        assert resp["Errors"][0]["Code"] == "AccessDenied"
    assert body(s3, b, "k", vid) == b"history"
    s3.delete_object(Bucket=b, Key="k", VersionId=vid)
