"""Walrus through boto3: every S3 operation of the Walrus issue and every bad-input case, against
the real `koala up` process. Each test checks what a user sees: status, error code, bytes,
headers."""

import datetime
import hashlib
import os
import time
import urllib.parse
import uuid
import xml.etree.ElementTree as ET

import pytest
from botocore.exceptions import ClientError

from conftest import (
    assert_error, b64, crc32_b64, crc32c_b64, empty_and_delete, error_of, etag_of, http_get,
    make_client, md5_hex, multipart_etag, raw_request, unique_bucket, xml_code,
)

MiB = 1024 * 1024
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTH_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"


def body_of(s3, bucket, key, **kw):
    return s3.get_object(Bucket=bucket, Key=key, **kw)["Body"].read()


def status(resp):
    return resp["ResponseMetadata"]["HTTPStatusCode"]


def all_keys_v2(s3, bucket, **kw):
    keys, token = [], None
    while True:
        args = dict(Bucket=bucket, **kw)
        if token:
            args["ContinuationToken"] = token
        page = s3.list_objects_v2(**args)
        keys += [o["Key"] for o in page.get("Contents", [])]
        if not page["IsTruncated"]:
            return keys
        token = page["NextContinuationToken"]


# ---------------------------------------------------------------------------------------------
# Buckets


def test_list_buckets_shows_new_bucket_with_owner(s3, bucket_name):
    s3.create_bucket(Bucket=bucket_name)
    try:
        resp = s3.list_buckets()
        names = {b["Name"]: b for b in resp["Buckets"]}
        assert bucket_name in names
        assert isinstance(names[bucket_name]["CreationDate"], datetime.datetime)
        assert resp["Owner"]["ID"]
    finally:
        s3.delete_bucket(Bucket=bucket_name)
    assert bucket_name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_create_bucket_with_location_constraint(s3, cloud, bucket_name):
    resp = s3.create_bucket(Bucket=bucket_name,
                            CreateBucketConfiguration={"LocationConstraint": cloud.region})
    try:
        assert status(resp) == 200
        loc = s3.get_bucket_location(Bucket=bucket_name)
        assert loc["LocationConstraint"] == cloud.region
    finally:
        s3.delete_bucket(Bucket=bucket_name)


def test_head_bucket(s3, bucket):
    assert status(s3.head_bucket(Bucket=bucket)) == 200
    assert_error(s3.head_bucket, "404", 404, Bucket=unique_bucket("missing"))


def test_get_bucket_location_of_missing_bucket(s3):
    assert_error(s3.get_bucket_location, "NoSuchBucket", 404, Bucket=unique_bucket("missing"))


def test_bucket_name_taken_by_another_account(s3_other, bucket):
    assert_error(s3_other.create_bucket, "BucketAlreadyExists", 409, Bucket=bucket)


def test_creating_ones_own_bucket_again_changes_nothing(s3, bucket):
    """S3's us-east-1 answer (what tools assume and the conformance suites test): 200, and
    the bucket keeps its objects; asking for another ACL than it has is a conflict (RGW)."""
    s3.put_object(Bucket=bucket, Key="kept", Body=b"still here")
    assert status(s3.create_bucket(Bucket=bucket)) == 200
    assert body_of(s3, bucket, "kept") == b"still here"
    assert_error(s3.create_bucket, "BucketAlreadyExists", 409, Bucket=bucket, ACL="public-read")
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    assert_error(s3.create_bucket, "BucketAlreadyExists", 409, Bucket=bucket)
    assert status(s3.create_bucket(Bucket=bucket, ACL="public-read")) == 200
    grants = s3.get_bucket_acl(Bucket=bucket)["Grants"]
    # Group grants come first (as RGW lists them).
    assert grants[0]["Grantee"].get("URI", "").endswith("AllUsers"), grants
    assert body_of(s3, bucket, "kept") == b"still here"


def test_delete_bucket(s3, bucket_name):
    s3.create_bucket(Bucket=bucket_name)
    s3.put_object(Bucket=bucket_name, Key="k", Body=b"x")
    assert_error(s3.delete_bucket, "BucketNotEmpty", 409, Bucket=bucket_name)
    assert body_of(s3, bucket_name, "k") == b"x"  # the refused delete lost nothing
    s3.delete_object(Bucket=bucket_name, Key="k")
    assert status(s3.delete_bucket(Bucket=bucket_name)) == 204
    assert_error(s3.head_bucket, "404", 404, Bucket=bucket_name)
    assert_error(s3.delete_bucket, "NoSuchBucket", 404, Bucket=bucket_name)


def test_a_pending_multipart_upload_goes_with_its_bucket(s3, bucket_name):
    """As in S3 (and RGW): an upload in progress does not keep a bucket that holds no
    object; deleting the bucket aborts it."""
    s3.create_bucket(Bucket=bucket_name)
    up = s3.create_multipart_upload(Bucket=bucket_name, Key="pending")
    s3.upload_part(Bucket=bucket_name, Key="pending", UploadId=up["UploadId"], PartNumber=1,
                   Body=b"part")
    assert status(s3.delete_bucket(Bucket=bucket_name)) == 204
    assert_error(s3.head_bucket, "404", 404, Bucket=bucket_name)
    s3.create_bucket(Bucket=bucket_name)
    try:
        assert s3.list_multipart_uploads(Bucket=bucket_name).get("Uploads", []) == []
    finally:
        s3.delete_bucket(Bucket=bucket_name)


@pytest.mark.parametrize("name", [
    "ab", "a" * 64, "UpperCase", "under_score", "-leading", "trailing-", "double..dot",
    "192.168.1.1", "dot.-dash",
])
def test_invalid_bucket_names(s3, name):
    assert_error(s3.create_bucket, "InvalidBucketName", 400, Bucket=name)
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


@pytest.mark.parametrize("endpoint", ["s3", "s3_root"])
def test_services_bucket_is_refused(request, endpoint):
    client = request.getfixturevalue(endpoint)
    with pytest.raises(ClientError) as exc:
        client.create_bucket(Bucket="services")
    code, st = error_of(exc)
    assert (code, st) == ("InvalidBucketName", 400), exc.value.response
    assert "services" not in [b["Name"] for b in client.list_buckets()["Buckets"]]


# ---------------------------------------------------------------------------------------------
# Listing


LIST_KEYS = ["a/1", "a/2", "a/b/3", "b/4", "c", "d e", "f+g", "ü/é", "z"]


@pytest.fixture
def listing_bucket(s3, bucket):
    for k in LIST_KEYS:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    return bucket


def test_list_objects_v1_all(s3, listing_bucket):
    resp = s3.list_objects(Bucket=listing_bucket)
    assert [o["Key"] for o in resp["Contents"]] == sorted(LIST_KEYS, key=lambda k: k.encode())
    assert resp["IsTruncated"] is False
    obj = resp["Contents"][0]
    assert obj["Size"] == len(obj["Key"].encode())
    assert obj["ETag"] == etag_of(obj["Key"].encode())
    assert isinstance(obj["LastModified"], datetime.datetime)
    assert obj["Owner"]["ID"]  # v1 always carries the owner


def test_list_objects_v1_prefix_delimiter(s3, listing_bucket):
    resp = s3.list_objects(Bucket=listing_bucket, Delimiter="/")
    assert [p["Prefix"] for p in resp["CommonPrefixes"]] == ["a/", "b/", "ü/"]
    assert [o["Key"] for o in resp["Contents"]] == ["c", "d e", "f+g", "z"]
    resp = s3.list_objects(Bucket=listing_bucket, Prefix="a/", Delimiter="/")
    assert [o["Key"] for o in resp["Contents"]] == ["a/1", "a/2"]
    assert [p["Prefix"] for p in resp["CommonPrefixes"]] == ["a/b/"]
    assert resp["Prefix"] == "a/"
    resp = s3.list_objects(Bucket=listing_bucket, Prefix="nothing")
    assert "Contents" not in resp


def test_list_objects_v1_marker_paging(s3, listing_bucket):
    resp = s3.list_objects(Bucket=listing_bucket, Marker="b/4")
    assert [o["Key"] for o in resp["Contents"]] == ["c", "d e", "f+g", "z", "ü/é"]
    seen, marker = [], ""
    for _ in range(20):
        resp = s3.list_objects(Bucket=listing_bucket, MaxKeys=2, Marker=marker)
        keys = [o["Key"] for o in resp.get("Contents", [])]
        assert len(keys) <= 2
        seen += keys
        if not resp["IsTruncated"]:
            break
        marker = keys[-1]
    assert seen == sorted(LIST_KEYS, key=lambda k: k.encode())


def test_list_objects_v1_next_marker_with_delimiter(s3, listing_bucket):
    resp = s3.list_objects(Bucket=listing_bucket, Delimiter="/", MaxKeys=2)
    assert resp["IsTruncated"] is True
    assert [p["Prefix"] for p in resp["CommonPrefixes"]] == ["a/", "b/"]
    assert resp["NextMarker"] == "b/"
    resp = s3.list_objects(Bucket=listing_bucket, Delimiter="/", Marker=resp["NextMarker"])
    assert [o["Key"] for o in resp["Contents"]] == ["c", "d e", "f+g", "z"]
    assert [p["Prefix"] for p in resp["CommonPrefixes"]] == ["ü/"]


def test_list_objects_v2_continuation_paging(s3, listing_bucket):
    first = s3.list_objects_v2(Bucket=listing_bucket, MaxKeys=2)
    assert first["KeyCount"] == 2
    assert first["IsTruncated"] is True
    assert first["NextContinuationToken"]
    assert all_keys_v2(s3, listing_bucket, MaxKeys=2) == sorted(LIST_KEYS,
                                                                key=lambda k: k.encode())
    assert all_keys_v2(s3, listing_bucket, MaxKeys=1, Prefix="a/") == ["a/1", "a/2", "a/b/3"]


def test_list_objects_v2_start_after_delimiter_prefix(s3, listing_bucket):
    resp = s3.list_objects_v2(Bucket=listing_bucket, StartAfter="d e")
    assert [o["Key"] for o in resp["Contents"]] == ["f+g", "z", "ü/é"]
    assert resp["StartAfter"] == "d e"
    resp = s3.list_objects_v2(Bucket=listing_bucket, Prefix="a/", Delimiter="/")
    assert [o["Key"] for o in resp["Contents"]] == ["a/1", "a/2"]
    assert [p["Prefix"] for p in resp["CommonPrefixes"]] == ["a/b/"]
    assert resp["KeyCount"] == 3
    for resp in (s3.list_objects_v2(Bucket=listing_bucket, MaxKeys=0),
                 s3.list_objects(Bucket=listing_bucket, MaxKeys=0)):
        # As S3: an empty page, not truncated, though the bucket holds keys.
        assert "Contents" not in resp and resp["IsTruncated"] is False, resp
    assert s3.list_objects_v2(Bucket=listing_bucket, MaxKeys=0)["KeyCount"] == 0


def test_list_objects_v2_fetch_owner(s3, listing_bucket, admin_id):
    plain = s3.list_objects_v2(Bucket=listing_bucket)
    assert all("Owner" not in o for o in plain["Contents"])
    owned = s3.list_objects_v2(Bucket=listing_bucket, FetchOwner=True)
    assert all(o["Owner"]["ID"] == admin_id for o in owned["Contents"])


@pytest.mark.parametrize("version", [1, 2])
def test_list_encoding_type_url(s3, bucket, version):
    keys = ["with space", "ünï/cødé", "plus+sign", "amp&er", "ctl\x01char", "pct%41"]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=b"1")
    # Explicit EncodingType: botocore hands the encoded keys back untouched.
    if version == 1:
        resp = s3.list_objects(Bucket=bucket, EncodingType="url")
    else:
        resp = s3.list_objects_v2(Bucket=bucket, EncodingType="url")
    assert resp["EncodingType"] == "url"
    raw = [o["Key"] for o in resp["Contents"]]
    for r in raw:
        assert all(0x21 <= ord(ch) < 0x7F for ch in r), f"not URL-encoded: {r!r}"
    assert sorted(urllib.parse.unquote_plus(r) for r in raw) == sorted(keys)
    # Without it, botocore asks for url encoding itself and decodes: exact keys come back.
    listed = [o["Key"] for o in (s3.list_objects(Bucket=bucket) if version == 1
                                 else s3.list_objects_v2(Bucket=bucket))["Contents"]]
    assert sorted(listed) == sorted(keys)
    # The prefix comes back as sent: S3 encodes a v2 Prefix, which botocore decodes, and
    # leaves a v1 Prefix raw, which botocore would not decode.
    page = (s3.list_objects(Bucket=bucket, Prefix="with space") if version == 1
            else s3.list_objects_v2(Bucket=bucket, Prefix="with space"))
    assert page["Prefix"] == "with space"
    assert [o["Key"] for o in page["Contents"]] == ["with space"]


def test_list_object_versions_of_an_unversioned_bucket(s3, bucket):
    """Each object is its own only version, `null`: what S3 lists for a bucket never
    versioned, and what cleanup scripts (the conformance suite's among them) page through
    before deleting by key and version."""
    keys = ["a", "b/1", "b/2", "c"]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    resp = s3.list_object_versions(Bucket=bucket)
    assert [(v["Key"], v["VersionId"], v["IsLatest"]) for v in resp["Versions"]] == [
        (k, "null", True) for k in keys]
    assert resp["Versions"][0]["ETag"] == etag_of(b"a") and resp["Versions"][0]["Size"] == 1
    assert "DeleteMarkers" not in resp and resp["IsTruncated"] is False
    rolled = s3.list_object_versions(Bucket=bucket, Delimiter="/")
    assert [v["Key"] for v in rolled["Versions"]] == ["a", "c"]
    assert [p["Prefix"] for p in rolled["CommonPrefixes"]] == ["b/"]
    assert [v["Key"] for v in s3.list_object_versions(Bucket=bucket, Prefix="b/")[
        "Versions"]] == ["b/1", "b/2"]
    seen, marker = [], {}
    while True:
        page = s3.list_object_versions(Bucket=bucket, MaxKeys=3, **marker)
        seen += [(v["Key"], v["VersionId"]) for v in page["Versions"]]
        if not page["IsTruncated"]:
            break
        marker = {"KeyMarker": page["NextKeyMarker"],
                  "VersionIdMarker": page["NextVersionIdMarker"]}
    assert [k for k, _ in seen] == keys
    out = s3.delete_objects(Bucket=bucket, BypassGovernanceRetention=True, Delete={
        "Objects": [{"Key": k, "VersionId": v} for k, v in seen], "Quiet": True})
    assert "Errors" not in out
    assert "Versions" not in s3.list_object_versions(Bucket=bucket)


def test_list_objects_of_missing_bucket(s3):
    assert_error(s3.list_objects_v2, "NoSuchBucket", 404, Bucket=unique_bucket("missing"))
    assert_error(s3.list_objects, "NoSuchBucket", 404, Bucket=unique_bucket("missing"))


# ---------------------------------------------------------------------------------------------
# Put / Get / Head / Delete


def test_put_get_metadata_and_content_headers(s3, bucket):
    data = os.urandom(1000)
    expires = datetime.datetime(2031, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    put = s3.put_object(
        Bucket=bucket, Key="doc.txt", Body=data, Metadata={"color": "blue", "Two-Words": "x y"},
        ContentType="text/plain; charset=utf-8", ContentLanguage="fr",
        ContentDisposition='attachment; filename="a.txt"', CacheControl="max-age=60",
        ContentEncoding="identity", Expires=expires,
    )
    assert put["ETag"] == etag_of(data)
    got = s3.get_object(Bucket=bucket, Key="doc.txt")
    assert got["Body"].read() == data
    assert got["ETag"] == etag_of(data)
    assert got["ContentLength"] == 1000
    assert got["Metadata"] == {"color": "blue", "two-words": "x y"}
    assert got["ContentType"] == "text/plain; charset=utf-8"
    assert got["ContentLanguage"] == "fr"
    assert got["ContentDisposition"] == 'attachment; filename="a.txt"'
    assert got["CacheControl"] == "max-age=60"
    assert got["ContentEncoding"] == "identity"
    assert got["Expires"] == expires
    head = s3.head_object(Bucket=bucket, Key="doc.txt")
    assert head["ContentLength"] == 1000
    assert head["ETag"] == etag_of(data)
    assert head["Metadata"] == {"color": "blue", "two-words": "x y"}
    assert head["ContentType"] == "text/plain; charset=utf-8"
    assert abs((head["LastModified"] - datetime.datetime.now(datetime.timezone.utc))
               .total_seconds()) < 120


def test_put_overwrites(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"first", Metadata={"v": "1"})
    s3.put_object(Bucket=bucket, Key="k", Body=b"second!")
    got = s3.get_object(Bucket=bucket, Key="k")
    assert got["Body"].read() == b"second!"
    assert got["Metadata"] == {}
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["k"]


def test_empty_object(s3, bucket):
    put = s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    assert put["ETag"] == etag_of(b"")
    got = s3.get_object(Bucket=bucket, Key="empty")
    assert got["ContentLength"] == 0 and got["Body"].read() == b""


def test_large_object_round_trip(s3, bucket):
    data = os.urandom(24 * MiB + 3)
    put = s3.put_object(Bucket=bucket, Key="big", Body=data)
    assert put["ETag"] == etag_of(data)
    got = s3.get_object(Bucket=bucket, Key="big")
    assert got["ContentLength"] == len(data)
    assert hashlib.sha256(got["Body"].read()).digest() == hashlib.sha256(data).digest()


def test_put_content_md5(s3, bucket):
    data = b"hello md5"
    ok = s3.put_object(Bucket=bucket, Key="good", Body=data,
                       ContentMD5=b64(hashlib.md5(data).digest()))
    assert ok["ETag"] == etag_of(data)
    assert_error(s3.put_object, "BadDigest", 400, Bucket=bucket, Key="bad", Body=data,
                 ContentMD5=b64(hashlib.md5(b"other").digest()))
    assert_error(s3.head_object, "404", 404, Bucket=bucket, Key="bad")
    assert_error(s3.put_object, "InvalidDigest", 400, Bucket=bucket, Key="bad", Body=data,
                 ContentMD5="not-base64!")
    assert_error(s3.put_object, "InvalidDigest", 400, Bucket=bucket, Key="bad", Body=data,
                 ContentMD5=b64(b"short"))
    assert_error(s3.head_object, "404", 404, Bucket=bucket, Key="bad")


@pytest.mark.parametrize("algo", ["CRC32", "SHA1", "SHA256"])
def test_put_with_checksum_algorithm(s3, bucket, algo):
    data = os.urandom(70000)
    expected = {
        "CRC32": crc32_b64(data),
        "SHA1": b64(hashlib.sha1(data).digest()),
        "SHA256": b64(hashlib.sha256(data).digest()),
    }[algo]
    put = s3.put_object(Bucket=bucket, Key="ck", Body=data, ChecksumAlgorithm=algo)
    assert put["ETag"] == etag_of(data)
    assert put.get("Checksum" + algo) == expected
    assert body_of(s3, bucket, "ck") == data


@pytest.mark.parametrize("algo", ["CRC32", "CRC32C", "SHA1", "SHA256"])
def test_put_with_explicit_checksum_value(s3, bucket, algo):
    data = os.urandom(5000)
    value = {
        "CRC32": crc32_b64(data),
        "CRC32C": crc32c_b64(data),
        "SHA1": b64(hashlib.sha1(data).digest()),
        "SHA256": b64(hashlib.sha256(data).digest()),
    }[algo]
    put = s3.put_object(Bucket=bucket, Key="ck", Body=data, **{"Checksum" + algo: value})
    assert put["ETag"] == etag_of(data)
    assert body_of(s3, bucket, "ck") == data
    wrong = {
        "CRC32": crc32_b64(b"x"),
        "CRC32C": crc32c_b64(b"x"),
        "SHA1": b64(hashlib.sha1(b"x").digest()),
        "SHA256": b64(hashlib.sha256(b"x").digest()),
    }[algo]
    assert_error(s3.put_object, "BadDigest", 400, Bucket=bucket, Key="ck-bad", Body=data,
                 **{"Checksum" + algo: wrong})
    assert_error(s3.head_object, "404", 404, Bucket=bucket, Key="ck-bad")


def test_get_range(s3, bucket):
    data = bytes(range(100))
    s3.put_object(Bucket=bucket, Key="r", Body=data)
    cases = [("bytes=0-9", data[0:10], "bytes 0-9/100"),
             ("bytes=10-", data[10:], "bytes 10-99/100"),
             ("bytes=-5", data[95:], "bytes 95-99/100"),
             ("bytes=90-200", data[90:], "bytes 90-99/100"),
             ("bytes=-500", data, "bytes 0-99/100")]
    for rng, expect, content_range in cases:
        got = s3.get_object(Bucket=bucket, Key="r", Range=rng)
        assert status(got) == 206, rng
        assert got["Body"].read() == expect, rng
        assert got["ContentRange"] == content_range, rng
        assert got["ContentLength"] == len(expect), rng
    assert_error(s3.get_object, "InvalidRange", 416, Bucket=bucket, Key="r",
                 Range="bytes=100-200")
    assert_error(s3.get_object, "InvalidRange", 416, Bucket=bucket, Key="r",
                 Range="bytes=1000-")


def test_get_range_large_object(s3, bucket):
    data = os.urandom(6 * MiB)
    s3.put_object(Bucket=bucket, Key="big", Body=data)
    got = s3.get_object(Bucket=bucket, Key="big", Range=f"bytes={3 * MiB - 7}-{4 * MiB}")
    assert got["Body"].read() == data[3 * MiB - 7:4 * MiB + 1]


def test_get_conditionals(s3, bucket):
    data = b"conditional"
    etag = s3.put_object(Bucket=bucket, Key="c", Body=data)["ETag"]
    modified = s3.head_object(Bucket=bucket, Key="c")["LastModified"]
    past = modified - datetime.timedelta(days=1)
    future = modified + datetime.timedelta(days=1)

    assert body_of(s3, bucket, "c", IfMatch=etag) == data
    assert_error(s3.get_object, "PreconditionFailed", 412, Bucket=bucket, Key="c",
                 IfMatch='"0123456789abcdef0123456789abcdef"')
    assert_error(s3.get_object, "304", 304, Bucket=bucket, Key="c", IfNoneMatch=etag)
    assert body_of(s3, bucket, "c", IfNoneMatch='"0123456789abcdef0123456789abcdef"') == data
    assert body_of(s3, bucket, "c", IfModifiedSince=past) == data
    assert_error(s3.get_object, "304", 304, Bucket=bucket, Key="c", IfModifiedSince=future)
    assert body_of(s3, bucket, "c", IfUnmodifiedSince=future) == data
    assert_error(s3.get_object, "PreconditionFailed", 412, Bucket=bucket, Key="c",
                 IfUnmodifiedSince=past)
    # HEAD honours them too.
    assert_error(s3.head_object, "412", 412, Bucket=bucket, Key="c",
                 IfMatch='"0123456789abcdef0123456789abcdef"')
    assert_error(s3.head_object, "304", 304, Bucket=bucket, Key="c", IfNoneMatch=etag)


def test_get_response_overrides(s3, bucket):
    s3.put_object(Bucket=bucket, Key="o", Body=b"override", ContentType="text/plain")
    got = s3.get_object(
        Bucket=bucket, Key="o", ResponseContentType="application/x-test",
        ResponseContentDisposition='attachment; filename="x.bin"',
        ResponseCacheControl="no-cache", ResponseContentLanguage="de",
        ResponseContentEncoding="identity",
        ResponseExpires=datetime.datetime(2030, 5, 6, 7, 8, 9, tzinfo=datetime.timezone.utc),
    )
    assert got["Body"].read() == b"override"
    assert got["ContentType"] == "application/x-test"
    assert got["ContentDisposition"] == 'attachment; filename="x.bin"'
    assert got["CacheControl"] == "no-cache"
    assert got["ContentLanguage"] == "de"
    assert got["ContentEncoding"] == "identity"
    assert got["Expires"] == datetime.datetime(2030, 5, 6, 7, 8, 9,
                                               tzinfo=datetime.timezone.utc)


def test_missing_key_and_bucket_errors(s3, bucket):
    resp = assert_error(s3.get_object, "NoSuchKey", 404, Bucket=bucket, Key="nope")
    assert resp["Error"].get("Message")
    assert_error(s3.head_object, "404", 404, Bucket=bucket, Key="nope")
    missing = unique_bucket("missing")
    assert_error(s3.get_object, "NoSuchBucket", 404, Bucket=missing, Key="k")
    assert_error(s3.put_object, "NoSuchBucket", 404, Bucket=missing, Key="k", Body=b"x")


def test_error_body_is_s3_xml(cloud, bucket):
    st, headers, body = raw_request(cloud, "GET", f"/{bucket}/no-such-key")
    assert st == 404
    assert headers.get("content-type", "").startswith(("application/xml", "text/xml"))
    root = ET.fromstring(body)
    assert root.tag == "Error"
    assert root.findtext("Code") == "NoSuchKey"
    assert root.findtext("Key") == "no-such-key"
    assert root.findtext("RequestId")


def test_delete_object(s3, bucket):
    s3.put_object(Bucket=bucket, Key="d", Body=b"x")
    assert status(s3.delete_object(Bucket=bucket, Key="d")) == 204
    assert_error(s3.get_object, "NoSuchKey", 404, Bucket=bucket, Key="d")
    # Deleting what is not there is not an error in S3.
    assert status(s3.delete_object(Bucket=bucket, Key="d")) == 204


def test_delete_objects(s3, bucket):
    for k in ("x1", "x2", "x3", "keep"):
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    resp = s3.delete_objects(Bucket=bucket, Delete={"Objects": [
        {"Key": "x1"}, {"Key": "x2"}, {"Key": "never-existed"}]})
    assert sorted(d["Key"] for d in resp["Deleted"]) == ["never-existed", "x1", "x2"]
    assert not resp.get("Errors")
    assert all_keys_v2(s3, bucket) == ["keep", "x3"]
    quiet = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "x3"}], "Quiet": True})
    assert not quiet.get("Deleted") and not quiet.get("Errors")
    assert all_keys_v2(s3, bucket) == ["keep"]


def test_delete_objects_by_other_account_is_denied(s3, s3_other, bucket):
    s3.put_object(Bucket=bucket, Key="mine", Body=b"x")
    try:
        resp = s3_other.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "mine"}]})
    except ClientError as e:
        assert (e.response["Error"]["Code"],
                e.response["ResponseMetadata"]["HTTPStatusCode"]) == ("AccessDenied", 403)
    else:
        # S3 may also answer 200 with a per-key AccessDenied error.
        assert [(e["Key"], e["Code"]) for e in resp.get("Errors", [])] == [
            ("mine", "AccessDenied")], resp
        assert not resp.get("Deleted"), resp
    assert body_of(s3, bucket, "mine") == b"x"


# ---------------------------------------------------------------------------------------------
# Copy


def test_copy_object_copy_directive(s3, bucket):
    data = os.urandom(3000)
    s3.put_object(Bucket=bucket, Key="src", Body=data, Metadata={"a": "1"},
                  ContentType="image/png")
    resp = s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    assert resp["CopyObjectResult"]["ETag"] == etag_of(data)
    got = s3.get_object(Bucket=bucket, Key="dst")
    assert got["Body"].read() == data
    assert got["Metadata"] == {"a": "1"}
    assert got["ContentType"] == "image/png"


def test_copy_object_replace_directive(s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"abc", Metadata={"a": "1"},
                  ContentType="image/png")
    s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"},
                   MetadataDirective="REPLACE", Metadata={"b": "2"}, ContentType="text/csv")
    got = s3.get_object(Bucket=bucket, Key="dst")
    assert got["Body"].read() == b"abc"
    assert got["Metadata"] == {"b": "2"}
    assert got["ContentType"] == "text/csv"
    # The source is untouched.
    assert s3.head_object(Bucket=bucket, Key="src")["Metadata"] == {"a": "1"}


def test_copy_object_across_buckets_and_odd_source_key(s3, bucket):
    other = unique_bucket("copy-dst")
    s3.create_bucket(Bucket=other)
    try:
        key = "dir/sp ace+plus&amp?q#h%25ü"
        s3.put_object(Bucket=bucket, Key=key, Body=b"moved")
        s3.copy_object(Bucket=other, Key=key, CopySource={"Bucket": bucket, "Key": key})
        assert body_of(s3, other, key) == b"moved"
    finally:
        empty_and_delete(s3, other)


def test_copy_object_conditions(s3, bucket):
    etag = s3.put_object(Bucket=bucket, Key="src", Body=b"abc")["ETag"]
    src = {"Bucket": bucket, "Key": "src"}
    assert_error(s3.copy_object, "PreconditionFailed", 412, Bucket=bucket, Key="dst",
                 CopySource=src, CopySourceIfMatch='"0123456789abcdef0123456789abcdef"')
    assert_error(s3.copy_object, "PreconditionFailed", 412, Bucket=bucket, Key="dst",
                 CopySource=src, CopySourceIfNoneMatch=etag)
    future = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
    assert_error(s3.copy_object, "PreconditionFailed", 412, Bucket=bucket, Key="dst",
                 CopySource=src, CopySourceIfUnmodifiedSince=past)
    assert_error(s3.head_object, "404", 404, Bucket=bucket, Key="dst")
    s3.copy_object(Bucket=bucket, Key="dst", CopySource=src, CopySourceIfMatch=etag,
                   CopySourceIfUnmodifiedSince=future)
    assert body_of(s3, bucket, "dst") == b"abc"


def test_copy_object_onto_itself(s3, bucket):
    s3.put_object(Bucket=bucket, Key="self", Body=b"same", Metadata={"a": "1"})
    src = {"Bucket": bucket, "Key": "self"}
    assert_error(s3.copy_object, "InvalidRequest", 400, Bucket=bucket, Key="self",
                 CopySource=src)
    s3.copy_object(Bucket=bucket, Key="self", CopySource=src, MetadataDirective="REPLACE",
                   Metadata={"a": "2"})
    got = s3.get_object(Bucket=bucket, Key="self")
    assert got["Body"].read() == b"same"
    assert got["Metadata"] == {"a": "2"}


def test_copy_object_missing_source(s3, bucket):
    assert_error(s3.copy_object, "NoSuchKey", 404, Bucket=bucket, Key="dst",
                 CopySource={"Bucket": bucket, "Key": "absent"})


def test_copy_object_from_private_bucket_of_another_account(s3, s3_other, bucket):
    s3.put_object(Bucket=bucket, Key="secret", Body=b"s")
    theirs = unique_bucket("theirs")
    s3_other.create_bucket(Bucket=theirs)
    try:
        assert_error(s3_other.copy_object, "AccessDenied", 403, Bucket=theirs, Key="stolen",
                     CopySource={"Bucket": bucket, "Key": "secret"})
    finally:
        empty_and_delete(s3_other, theirs)


def test_multipart_full_object_crc_checksums(s3, bucket):
    """CRC checksums of the whole object (FULL_OBJECT), combined from the parts' CRCs as S3
    does, and the claim an SDK sends with CompleteMultipartUpload checked against them."""
    p1, p2 = os.urandom(5 * MiB), os.urandom(3000)
    # (CRC32C and CRC64NVME need botocore's CRT extra, which these tests do without; the
    # combination of each is checked against the real CRCs in walrus' unit tests.)
    for alg, crc in (("CRC32", crc32_b64),):
        key = f"full-{alg}"
        up = s3.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm=alg,
                                        ChecksumType="FULL_OBJECT")
        assert up["ChecksumType"] == "FULL_OBJECT"
        uid = up["UploadId"]
        parts = []
        for n, p in ((1, p1), (2, p2)):
            r = s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=n, Body=p,
                               ChecksumAlgorithm=alg)
            parts.append({"PartNumber": n, "ETag": r["ETag"], f"Checksum{alg}": crc(p)})
        # A wrong claim for the whole object is BadDigest, and the upload stays.
        assert_error(s3.complete_multipart_upload, "BadDigest", 400, Bucket=bucket, Key=key,
                     UploadId=uid, MultipartUpload={"Parts": parts},
                     ChecksumType="FULL_OBJECT", **{f"Checksum{alg}": crc(b"other")})
        done = s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=uid, MultipartUpload={"Parts": parts},
            ChecksumType="FULL_OBJECT", **{f"Checksum{alg}": crc(p1 + p2)})
        assert done[f"Checksum{alg}"] == crc(p1 + p2) and done["ChecksumType"] == "FULL_OBJECT"
        head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        assert head[f"Checksum{alg}"] == crc(p1 + p2) and head["ChecksumType"] == "FULL_OBJECT"
    # Every part of an upload uses its algorithm.
    uid = s3.create_multipart_upload(Bucket=bucket, Key="mixed", ChecksumAlgorithm="CRC32")[
        "UploadId"]
    assert_error(s3.upload_part, "InvalidRequest", 400, Bucket=bucket, Key="mixed",
                 UploadId=uid, PartNumber=1, Body=b"p", ChecksumAlgorithm="SHA256")
    s3.abort_multipart_upload(Bucket=bucket, Key="mixed", UploadId=uid)
    # SHA-256 has no full-object kind.
    assert_error(s3.create_multipart_upload, "InvalidRequest", 400, Bucket=bucket, Key="x",
                 ChecksumAlgorithm="SHA256", ChecksumType="FULL_OBJECT")


def test_transfer_manager_uploads_with_checksums(s3, bucket):
    """boto3's upload_fileobj in parts with a checksum algorithm (what the SDKs' helpers
    do): it completes, and the object reads back whole."""
    import io
    from boto3.s3.transfer import TransferConfig
    data = os.urandom(11 * MiB)
    config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    for alg in ("CRC32", "SHA1", "SHA256"):
        s3.upload_fileobj(io.BytesIO(data), bucket, f"helper-{alg}", Config=config,
                          ExtraArgs={"ChecksumAlgorithm": alg})
        assert s3.get_object(Bucket=bucket, Key=f"helper-{alg}")["Body"].read() == data


# ---------------------------------------------------------------------------------------------
# GetObjectAttributes


def test_object_attributes_of_a_plain_and_a_multipart_object(s3, bucket):
    s3.put_object(Bucket=bucket, Key="plain", Body=b"attributes", ChecksumAlgorithm="CRC32")
    attrs = s3.get_object_attributes(Bucket=bucket, Key="plain", ObjectAttributes=[
        "ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"])
    assert attrs["ETag"] == md5_hex(b"attributes"), "without quotes, as S3 answers"
    assert attrs["Checksum"]["ChecksumCRC32"] == crc32_b64(b"attributes")
    assert attrs["ObjectSize"] == 10 and attrs["StorageClass"] == "STANDARD"
    assert "ObjectParts" not in attrs, "a plain object has no parts"
    only_size = s3.get_object_attributes(Bucket=bucket, Key="plain", ObjectAttributes=["ObjectSize"])
    assert only_size["ObjectSize"] == 10 and "ETag" not in only_size

    p1, p2 = os.urandom(5 * MiB), os.urandom(1000)
    uid = s3.create_multipart_upload(Bucket=bucket, Key="mp", ChecksumAlgorithm="SHA256")[
        "UploadId"]
    sums = [b64(hashlib.sha256(p).digest()) for p in (p1, p2)]
    etags = [s3.upload_part(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=n, Body=p,
                            ChecksumAlgorithm="SHA256")["ETag"] for n, p in ((1, p1), (2, p2))]
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=uid, MultipartUpload={
        "Parts": [{"PartNumber": n, "ETag": e, "ChecksumSHA256": c}
                  for n, (e, c) in enumerate(zip(etags, sums), start=1)]})
    attrs = s3.get_object_attributes(Bucket=bucket, Key="mp",
                                     ObjectAttributes=["ObjectParts", "ObjectSize"])
    parts = attrs["ObjectParts"]
    assert parts["TotalPartsCount"] == 2 and parts["IsTruncated"] is False
    assert [(p["PartNumber"], p["Size"], p["ChecksumSHA256"]) for p in parts["Parts"]] == [
        (1, len(p1), sums[0]), (2, len(p2), sums[1])]
    assert attrs["ObjectSize"] == len(p1) + len(p2)
    first = s3.get_object_attributes(Bucket=bucket, Key="mp", ObjectAttributes=["ObjectParts"],
                                     MaxParts=1)["ObjectParts"]
    assert [p["PartNumber"] for p in first["Parts"]] == [1]
    assert first["IsTruncated"] is True and first["NextPartNumberMarker"] == 1
    rest = s3.get_object_attributes(Bucket=bucket, Key="mp", ObjectAttributes=["ObjectParts"],
                                    PartNumberMarker=1)["ObjectParts"]
    assert [p["PartNumber"] for p in rest["Parts"]] == [2]

    assert_error(s3.get_object_attributes, "InvalidArgument", 400, Bucket=bucket, Key="plain",
                 ObjectAttributes=["Colour"])
    assert_error(s3.get_object_attributes, "InvalidArgument", 400, Bucket=bucket, Key="mp",
                 ObjectAttributes=["ObjectParts"], PartNumberMarker=2**64 - 1)
    assert_error(s3.get_object_attributes, "NoSuchKey", 404, Bucket=bucket, Key="absent",
                 ObjectAttributes=["ETag"])


# ---------------------------------------------------------------------------------------------
# Multipart


def test_multipart_full_flow(s3, bucket, admin_id):
    p1, p2, p3 = os.urandom(5 * MiB), os.urandom(5 * MiB + 17), os.urandom(1234)
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp", ContentType="video/mp4",
                                    Metadata={"m": "v"})
    uid = up["UploadId"]
    assert up["Key"] == "mp" and up["Bucket"] == bucket and uid
    e1 = s3.upload_part(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=1, Body=p1)["ETag"]
    e3 = s3.upload_part(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=3, Body=p3)["ETag"]
    e2 = s3.upload_part(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=2, Body=p2)["ETag"]
    assert (e1, e2, e3) == (etag_of(p1), etag_of(p2), etag_of(p3))

    uploads = s3.list_multipart_uploads(Bucket=bucket)
    assert [(u["Key"], u["UploadId"]) for u in uploads["Uploads"]] == [("mp", uid)]
    assert uploads["Uploads"][0]["Initiator"]["ID"] or uploads["Uploads"][0]["Owner"]["ID"]

    parts = s3.list_parts(Bucket=bucket, Key="mp", UploadId=uid)
    assert [(p["PartNumber"], p["Size"], p["ETag"]) for p in parts["Parts"]] == [
        (1, len(p1), e1), (2, len(p2), e2), (3, len(p3), e3)]
    paged = s3.list_parts(Bucket=bucket, Key="mp", UploadId=uid, MaxParts=2)
    assert [p["PartNumber"] for p in paged["Parts"]] == [1, 2]
    assert paged["IsTruncated"] is True and paged["NextPartNumberMarker"] == 2
    rest = s3.list_parts(Bucket=bucket, Key="mp", UploadId=uid, PartNumberMarker=2)
    assert [p["PartNumber"] for p in rest["Parts"]] == [3]

    # The object does not exist until completion.
    assert_error(s3.head_object, "404", 404, Bucket=bucket, Key="mp")

    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2},
                                   {"PartNumber": 3, "ETag": e3}]})
    assert done["ETag"] == multipart_etag([p1, p2, p3])
    assert done["Key"] == "mp" and done["Bucket"] == bucket
    got = s3.get_object(Bucket=bucket, Key="mp")
    assert got["ETag"] == multipart_etag([p1, p2, p3])
    assert got["ContentLength"] == len(p1) + len(p2) + len(p3)
    assert got["ContentType"] == "video/mp4"
    assert got["Metadata"] == {"m": "v"}
    assert got["Body"].read() == p1 + p2 + p3
    ranged = s3.get_object(Bucket=bucket, Key="mp", Range=f"bytes={5 * MiB - 3}-{5 * MiB + 2}")
    assert ranged["Body"].read() == (p1 + p2)[5 * MiB - 3:5 * MiB + 3]
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)
    assert_error(s3.list_parts, "NoSuchUpload", 404, Bucket=bucket, Key="mp", UploadId=uid)
    # One part by number: its bytes, its own ETag, and how many parts there are.
    for n, (data, etag) in enumerate([(p1, e1), (p2, e2), (p3, e3)], start=1):
        part = s3.get_object(Bucket=bucket, Key="mp", PartNumber=n)
        assert part["ETag"] == etag and part["PartsCount"] == 3
        assert part["Body"].read() == data
    # Past the last part: InvalidPart, as RGW answers (and the conformance suite expects).
    assert_error(s3.get_object, "InvalidPart", 400, Bucket=bucket, Key="mp", PartNumber=4)


def test_multipart_upload_part_copy_with_range(s3, bucket):
    src = os.urandom(7 * MiB)
    s3.put_object(Bucket=bucket, Key="src", Body=src)
    uid = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    own = os.urandom(5 * MiB)
    e1 = s3.upload_part(Bucket=bucket, Key="dst", UploadId=uid, PartNumber=1, Body=own)["ETag"]
    c2 = s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=uid, PartNumber=2,
                             CopySource={"Bucket": bucket, "Key": "src"},
                             CopySourceRange=f"bytes={MiB}-{6 * MiB - 1}")
    assert c2["CopyPartResult"]["ETag"] == etag_of(src[MiB:6 * MiB])
    c3 = s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=uid, PartNumber=3,
                             CopySource={"Bucket": bucket, "Key": "src"},
                             CopySourceRange="bytes=100-199")
    assert c3["CopyPartResult"]["ETag"] == etag_of(src[100:200])
    parts = s3.list_parts(Bucket=bucket, Key="dst", UploadId=uid)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in parts] == [(1, 5 * MiB), (2, 5 * MiB),
                                                             (3, 100)]
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="dst", UploadId=uid, MultipartUpload={"Parts": [
            {"PartNumber": 1, "ETag": e1},
            {"PartNumber": 2, "ETag": c2["CopyPartResult"]["ETag"]},
            {"PartNumber": 3, "ETag": c3["CopyPartResult"]["ETag"]}]})
    assert done["ETag"] == multipart_etag([own, src[MiB:6 * MiB], src[100:200]])
    assert body_of(s3, bucket, "dst") == own + src[MiB:6 * MiB] + src[100:200]
    # Copying a whole (small) object as a part, no range.
    s3.put_object(Bucket=bucket, Key="tiny", Body=b"tiny")
    uid = s3.create_multipart_upload(Bucket=bucket, Key="dst2")["UploadId"]
    c = s3.upload_part_copy(Bucket=bucket, Key="dst2", UploadId=uid, PartNumber=1,
                            CopySource={"Bucket": bucket, "Key": "tiny"})
    s3.complete_multipart_upload(Bucket=bucket, Key="dst2", UploadId=uid, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": c["CopyPartResult"]["ETag"]}]})
    assert body_of(s3, bucket, "dst2") == b"tiny"


def test_multipart_upload_part_copy_range_beyond_source(s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"0123456789")
    uid = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    try:
        # What AWS answers: 400 InvalidArgument "Range specified is not valid for source
        # object of size: 10".
        assert_error(s3.upload_part_copy, "InvalidArgument", 400, Bucket=bucket, Key="dst",
                     UploadId=uid, PartNumber=1, CopySource={"Bucket": bucket, "Key": "src"},
                     CopySourceRange="bytes=5-20")
    finally:
        s3.abort_multipart_upload(Bucket=bucket, Key="dst", UploadId=uid)


def test_multipart_abort(s3, bucket):
    uid = s3.create_multipart_upload(Bucket=bucket, Key="ab")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="ab", UploadId=uid, PartNumber=1, Body=b"x" * 1000)
    assert status(s3.abort_multipart_upload(Bucket=bucket, Key="ab", UploadId=uid)) == 204
    assert_error(s3.list_parts, "NoSuchUpload", 404, Bucket=bucket, Key="ab", UploadId=uid)
    assert_error(s3.upload_part, "NoSuchUpload", 404, Bucket=bucket, Key="ab", UploadId=uid,
                 PartNumber=2, Body=b"y")
    assert_error(s3.complete_multipart_upload, "NoSuchUpload", 404, Bucket=bucket, Key="ab",
                 UploadId=uid, MultipartUpload={"Parts": [{"PartNumber": 1,
                                                           "ETag": etag_of(b"x" * 1000)}]})
    assert_error(s3.head_object, "404", 404, Bucket=bucket, Key="ab")
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)


def test_multipart_unknown_upload_id(s3, bucket):
    assert_error(s3.upload_part, "NoSuchUpload", 404, Bucket=bucket, Key="k",
                 UploadId="no-such-upload-id", PartNumber=1, Body=b"x")


def _two_part_upload(s3, bucket, key):
    p1, p2 = os.urandom(5 * MiB), b"last part"
    uid = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    e1 = s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=1, Body=p1)["ETag"]
    e2 = s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=2, Body=p2)["ETag"]
    return uid, (p1, e1), (p2, e2)


def test_multipart_parts_out_of_order(s3, bucket):
    uid, (p1, e1), (p2, e2) = _two_part_upload(s3, bucket, "ooo")
    assert_error(s3.complete_multipart_upload, "InvalidPartOrder", 400, Bucket=bucket,
                 Key="ooo", UploadId=uid, MultipartUpload={"Parts": [
                     {"PartNumber": 2, "ETag": e2}, {"PartNumber": 1, "ETag": e1}]})
    # The failed completion leaves the upload usable.
    done = s3.complete_multipart_upload(Bucket=bucket, Key="ooo", UploadId=uid,
                                        MultipartUpload={"Parts": [
                                            {"PartNumber": 1, "ETag": e1},
                                            {"PartNumber": 2, "ETag": e2}]})
    assert done["ETag"] == multipart_etag([p1, p2])
    assert body_of(s3, bucket, "ooo") == p1 + p2


def test_multipart_missing_or_wrong_part(s3, bucket):
    uid, (p1, e1), (p2, e2) = _two_part_upload(s3, bucket, "miss")
    try:
        assert_error(s3.complete_multipart_upload, "InvalidPart", 400, Bucket=bucket,
                     Key="miss", UploadId=uid, MultipartUpload={"Parts": [
                         {"PartNumber": 1, "ETag": e1}, {"PartNumber": 3, "ETag": e2}]})
        assert_error(s3.complete_multipart_upload, "InvalidPart", 400, Bucket=bucket,
                     Key="miss", UploadId=uid, MultipartUpload={"Parts": [
                         {"PartNumber": 1, "ETag": e1},
                         {"PartNumber": 2, "ETag": '"0123456789abcdef0123456789abcdef"'}]})
        assert_error(s3.head_object, "404", 404, Bucket=bucket, Key="miss")
    finally:
        s3.abort_multipart_upload(Bucket=bucket, Key="miss", UploadId=uid)


def test_multipart_small_non_last_part(s3, bucket):
    uid = s3.create_multipart_upload(Bucket=bucket, Key="small")["UploadId"]
    try:
        e1 = s3.upload_part(Bucket=bucket, Key="small", UploadId=uid, PartNumber=1,
                            Body=b"a" * 1024)["ETag"]
        e2 = s3.upload_part(Bucket=bucket, Key="small", UploadId=uid, PartNumber=2,
                            Body=b"b" * 1024)["ETag"]
        assert_error(s3.complete_multipart_upload, "EntityTooSmall", 400, Bucket=bucket,
                     Key="small", UploadId=uid, MultipartUpload={"Parts": [
                         {"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
    finally:
        s3.abort_multipart_upload(Bucket=bucket, Key="small", UploadId=uid)


def test_multipart_single_small_part_is_fine(s3, bucket):
    uid = s3.create_multipart_upload(Bucket=bucket, Key="one")["UploadId"]
    e1 = s3.upload_part(Bucket=bucket, Key="one", UploadId=uid, PartNumber=1,
                        Body=b"only")["ETag"]
    done = s3.complete_multipart_upload(Bucket=bucket, Key="one", UploadId=uid,
                                        MultipartUpload={"Parts": [{"PartNumber": 1,
                                                                    "ETag": e1}]})
    assert done["ETag"] == multipart_etag([b"only"])
    assert body_of(s3, bucket, "one") == b"only"


def test_multipart_part_reupload_replaces(s3, bucket):
    uid = s3.create_multipart_upload(Bucket=bucket, Key="re")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="re", UploadId=uid, PartNumber=1, Body=b"old")
    e1 = s3.upload_part(Bucket=bucket, Key="re", UploadId=uid, PartNumber=1,
                        Body=b"new!")["ETag"]
    parts = s3.list_parts(Bucket=bucket, Key="re", UploadId=uid)["Parts"]
    assert [(p["PartNumber"], p["Size"], p["ETag"]) for p in parts] == [(1, 4, e1)]
    s3.complete_multipart_upload(Bucket=bucket, Key="re", UploadId=uid,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}]})
    assert body_of(s3, bucket, "re") == b"new!"


def test_multipart_invalid_part_number(s3, bucket):
    uid = s3.create_multipart_upload(Bucket=bucket, Key="pn")["UploadId"]
    try:
        for bad in (0, 10001):
            with pytest.raises(ClientError) as exc:
                s3.upload_part(Bucket=bucket, Key="pn", UploadId=uid, PartNumber=bad, Body=b"x")
            assert error_of(exc) in {("InvalidArgument", 400), ("InvalidPartNumber", 400)}, \
                exc.value.response
    finally:
        s3.abort_multipart_upload(Bucket=bucket, Key="pn", UploadId=uid)


def test_list_multipart_uploads_prefix_and_many(s3, bucket):
    ids = {}
    for k in ("x/1", "x/2", "y/1"):
        ids[k] = s3.create_multipart_upload(Bucket=bucket, Key=k)["UploadId"]
    try:
        resp = s3.list_multipart_uploads(Bucket=bucket, Prefix="x/")
        assert sorted((u["Key"], u["UploadId"]) for u in resp["Uploads"]) == sorted(
            [("x/1", ids["x/1"]), ("x/2", ids["x/2"])])
        resp = s3.list_multipart_uploads(Bucket=bucket)
        assert [u["Key"] for u in resp["Uploads"]] == ["x/1", "x/2", "y/1"]
    finally:
        for k, uid in ids.items():
            s3.abort_multipart_upload(Bucket=bucket, Key=k, UploadId=uid)


# ---------------------------------------------------------------------------------------------
# ACLs and access across accounts


def grants_of(acl):
    out = set()
    for g in acl["Grants"]:
        grantee = g["Grantee"]
        who = grantee.get("ID") or grantee.get("URI")
        out.add((grantee["Type"], who, g["Permission"]))
    return out


def test_private_bucket_and_object_deny_others(s3, s3_other, s3_anon, bucket):
    s3.put_object(Bucket=bucket, Key="secret", Body=b"s")
    for client in (s3_other, s3_anon):
        assert_error(client.get_object, "AccessDenied", 403, Bucket=bucket, Key="secret")
        assert_error(client.list_objects_v2, "AccessDenied", 403, Bucket=bucket)
        assert_error(client.put_object, "AccessDenied", 403, Bucket=bucket, Key="intruder",
                     Body=b"x")
        assert_error(client.delete_object, "AccessDenied", 403, Bucket=bucket, Key="secret")
        assert_error(client.get_bucket_acl, "AccessDenied", 403, Bucket=bucket)
        assert_error(client.get_object_acl, "AccessDenied", 403, Bucket=bucket, Key="secret")
        assert_error(client.put_bucket_acl, "AccessDenied", 403, Bucket=bucket,
                     ACL="public-read-write")
        assert_error(client.head_object, "403", 403, Bucket=bucket, Key="secret")
        assert_error(client.delete_bucket, "AccessDenied", 403, Bucket=bucket)
    assert body_of(s3, bucket, "secret") == b"s"
    assert all_keys_v2(s3, bucket) == ["secret"]
    assert bucket not in [b["Name"] for b in s3_other.list_buckets()["Buckets"]]


def test_anonymous_list_buckets_is_denied(s3_anon):
    assert_error(s3_anon.list_buckets, "AccessDenied", 403)


def test_default_acls_are_owner_full_control(s3, bucket, admin_id):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    for acl in (s3.get_bucket_acl(Bucket=bucket), s3.get_object_acl(Bucket=bucket, Key="k")):
        assert acl["Owner"]["ID"] == admin_id
        assert grants_of(acl) == {("CanonicalUser", admin_id, "FULL_CONTROL")}


def test_public_read_object(s3, s3_anon, s3_other, cloud, bucket, admin_id):
    s3.put_object(Bucket=bucket, Key="pub", Body=b"public", ACL="public-read")
    s3.put_object(Bucket=bucket, Key="priv", Body=b"private")
    assert body_of(s3_anon, bucket, "pub") == b"public"
    assert body_of(s3_other, bucket, "pub") == b"public"
    st, _, body = http_get(f"{cloud.s3_url}/{bucket}/pub")
    assert (st, body) == (200, b"public")
    st, _, body = http_get(f"{cloud.s3_url}/{bucket}/priv")
    assert st == 403 and xml_code(body) == "AccessDenied"
    assert_error(s3_anon.get_object, "AccessDenied", 403, Bucket=bucket, Key="priv")
    # public-read on an object does not open the bucket listing.
    assert_error(s3_anon.list_objects_v2, "AccessDenied", 403, Bucket=bucket)
    assert grants_of(s3.get_object_acl(Bucket=bucket, Key="pub")) == {
        ("CanonicalUser", admin_id, "FULL_CONTROL"), ("Group", ALL_USERS, "READ")}


def test_public_read_bucket_lists_for_anonymous(s3, s3_anon, bucket_name, admin_id):
    s3.create_bucket(Bucket=bucket_name, ACL="public-read")
    try:
        s3.put_object(Bucket=bucket_name, Key="k", Body=b"x")
        assert [o["Key"] for o in s3_anon.list_objects_v2(Bucket=bucket_name)["Contents"]] == ["k"]
        # The object itself stays private.
        assert_error(s3_anon.get_object, "AccessDenied", 403, Bucket=bucket_name, Key="k")
        assert_error(s3_anon.put_object, "AccessDenied", 403, Bucket=bucket_name, Key="w",
                     Body=b"x")
        assert grants_of(s3.get_bucket_acl(Bucket=bucket_name)) == {
            ("CanonicalUser", admin_id, "FULL_CONTROL"), ("Group", ALL_USERS, "READ")}
    finally:
        empty_and_delete(s3, bucket_name)


def test_authenticated_read_object(s3, s3_other, s3_anon, bucket, admin_id):
    s3.put_object(Bucket=bucket, Key="auth", Body=b"members only", ACL="authenticated-read")
    assert body_of(s3_other, bucket, "auth") == b"members only"
    assert_error(s3_anon.get_object, "AccessDenied", 403, Bucket=bucket, Key="auth")
    assert grants_of(s3.get_object_acl(Bucket=bucket, Key="auth")) == {
        ("CanonicalUser", admin_id, "FULL_CONTROL"), ("Group", AUTH_USERS, "READ")}


def test_public_read_write_bucket_lets_other_account_put(s3, s3_other, bucket_name, admin_id,
                                                         other_id):
    s3.create_bucket(Bucket=bucket_name, ACL="public-read-write")
    try:
        put = s3_other.put_object(Bucket=bucket_name, Key="from-other", Body=b"hi")
        assert put["ETag"] == etag_of(b"hi")
        listed = s3.list_objects_v2(Bucket=bucket_name, FetchOwner=True)["Contents"]
        assert [(o["Key"], o["Owner"]["ID"]) for o in listed] == [("from-other", other_id)]
        # The object belongs to its writer: private to it unless it says otherwise.
        assert body_of(s3_other, bucket_name, "from-other") == b"hi"
        assert_error(s3.get_object, "AccessDenied", 403, Bucket=bucket_name, Key="from-other")
        # bucket-owner-read / bucket-owner-full-control give the bucket owner access.
        s3_other.put_object(Bucket=bucket_name, Key="bor", Body=b"r", ACL="bucket-owner-read")
        assert body_of(s3, bucket_name, "bor") == b"r"
        assert ("CanonicalUser", admin_id, "READ") in grants_of(
            s3_other.get_object_acl(Bucket=bucket_name, Key="bor"))
        s3_other.put_object(Bucket=bucket_name, Key="bofc", Body=b"f",
                            ACL="bucket-owner-full-control")
        assert body_of(s3, bucket_name, "bofc") == b"f"
        assert grants_of(s3.get_object_acl(Bucket=bucket_name, Key="bofc")) == {
            ("CanonicalUser", other_id, "FULL_CONTROL"),
            ("CanonicalUser", admin_id, "FULL_CONTROL")}
        assert grants_of(s3.get_bucket_acl(Bucket=bucket_name)) == {
            ("CanonicalUser", admin_id, "FULL_CONTROL"), ("Group", ALL_USERS, "READ"),
            ("Group", ALL_USERS, "WRITE")}
        # The bucket owner may delete anything in its bucket.
        s3.delete_object(Bucket=bucket_name, Key="from-other")
    finally:
        empty_and_delete(s3, bucket_name)


def test_aws_exec_read_object_is_private_to_other_accounts(s3, s3_other, s3_anon, bucket,
                                                           admin_id):
    s3.put_object(Bucket=bucket, Key="image.part.00", Body=b"bundle", ACL="aws-exec-read")
    assert body_of(s3, bucket, "image.part.00") == b"bundle"
    assert_error(s3_other.get_object, "AccessDenied", 403, Bucket=bucket, Key="image.part.00")
    assert_error(s3_anon.get_object, "AccessDenied", 403, Bucket=bucket, Key="image.part.00")
    assert ("CanonicalUser", admin_id, "FULL_CONTROL") in grants_of(
        s3.get_object_acl(Bucket=bucket, Key="image.part.00"))


def test_put_canned_acl_on_existing_object_and_bucket(s3, s3_anon, bucket):
    s3.put_object(Bucket=bucket, Key="later", Body=b"L")
    assert_error(s3_anon.get_object, "AccessDenied", 403, Bucket=bucket, Key="later")
    s3.put_object_acl(Bucket=bucket, Key="later", ACL="public-read")
    assert body_of(s3_anon, bucket, "later") == b"L"
    s3.put_object_acl(Bucket=bucket, Key="later", ACL="private")
    assert_error(s3_anon.get_object, "AccessDenied", 403, Bucket=bucket, Key="later")
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    assert [o["Key"] for o in s3_anon.list_objects_v2(Bucket=bucket)["Contents"]] == ["later"]
    s3.put_bucket_acl(Bucket=bucket, ACL="private")
    assert_error(s3_anon.list_objects_v2, "AccessDenied", 403, Bucket=bucket)


def test_object_acl_xml_grant_to_other_account(s3, s3_other, s3_anon, bucket, admin_id,
                                               other_id):
    s3.put_object(Bucket=bucket, Key="shared", Body=b"for other")
    assert_error(s3_other.get_object, "AccessDenied", 403, Bucket=bucket, Key="shared")
    policy = {
        "Owner": {"ID": admin_id},
        "Grants": [
            {"Grantee": {"Type": "CanonicalUser", "ID": admin_id}, "Permission": "FULL_CONTROL"},
            {"Grantee": {"Type": "CanonicalUser", "ID": other_id}, "Permission": "READ"},
        ],
    }
    s3.put_object_acl(Bucket=bucket, Key="shared", AccessControlPolicy=policy)
    acl = s3.get_object_acl(Bucket=bucket, Key="shared")
    assert acl["Owner"]["ID"] == admin_id
    assert grants_of(acl) == {("CanonicalUser", admin_id, "FULL_CONTROL"),
                              ("CanonicalUser", other_id, "READ")}
    assert body_of(s3_other, bucket, "shared") == b"for other"
    assert_error(s3_anon.get_object, "AccessDenied", 403, Bucket=bucket, Key="shared")
    # READ on the object is not READ_ACP, nor a right to overwrite it.
    assert_error(s3_other.get_object_acl, "AccessDenied", 403, Bucket=bucket, Key="shared")
    assert_error(s3_other.put_object, "AccessDenied", 403, Bucket=bucket, Key="shared",
                 Body=b"x")


def test_bucket_acl_grant_headers_to_other_account(s3, s3_other, bucket, admin_id, other_id):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert_error(s3_other.list_objects_v2, "AccessDenied", 403, Bucket=bucket)
    s3.put_bucket_acl(Bucket=bucket, GrantRead=f'id="{other_id}"',
                      GrantFullControl=f'id="{admin_id}"')
    assert grants_of(s3.get_bucket_acl(Bucket=bucket)) == {
        ("CanonicalUser", admin_id, "FULL_CONTROL"), ("CanonicalUser", other_id, "READ")}
    assert [o["Key"] for o in s3_other.list_objects_v2(Bucket=bucket)["Contents"]] == ["k"]
    assert_error(s3_other.put_object, "AccessDenied", 403, Bucket=bucket, Key="w", Body=b"x")
    s3.put_bucket_acl(Bucket=bucket, AccessControlPolicy={
        "Owner": {"ID": admin_id},
        "Grants": [
            {"Grantee": {"Type": "CanonicalUser", "ID": admin_id}, "Permission": "FULL_CONTROL"},
            {"Grantee": {"Type": "CanonicalUser", "ID": other_id}, "Permission": "WRITE"},
        ]})
    s3_other.put_object(Bucket=bucket, Key="w", Body=b"written")
    assert_error(s3_other.list_objects_v2, "AccessDenied", 403, Bucket=bucket)


def test_put_acl_with_unknown_grantee_is_refused(s3, bucket, admin_id):
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_acl(Bucket=bucket, AccessControlPolicy={
            "Owner": {"ID": admin_id},
            "Grants": [{"Grantee": {"Type": "CanonicalUser", "ID": "f" * 64},
                        "Permission": "READ"}]})
    assert error_of(exc) == ("InvalidArgument", 400)
    assert grants_of(s3.get_bucket_acl(Bucket=bucket)) == {
        ("CanonicalUser", admin_id, "FULL_CONTROL")}


def test_grants_by_email_address_are_unresolvable(s3, bucket, admin_id):
    """Walrus knows accounts by id: a grant by e-mail names none, in a body or a header."""
    assert_error(s3.put_bucket_acl, "UnresolvableGrantByEmailAddress", 400, Bucket=bucket,
                 AccessControlPolicy={
                     "Owner": {"ID": admin_id},
                     "Grants": [{"Grantee": {"Type": "AmazonCustomerByEmail",
                                             "EmailAddress": "nobody@example.com"},
                                 "Permission": "READ"}]})
    assert_error(s3.put_object, "UnresolvableGrantByEmailAddress", 400, Bucket=bucket, Key="k",
                 Body=b"", GrantRead='emailAddress="nobody@example.com"')
    assert grants_of(s3.get_bucket_acl(Bucket=bucket)) == {
        ("CanonicalUser", admin_id, "FULL_CONTROL")}


def test_malformed_acl_body(s3, bucket):
    def corrupt(request, **_):
        request.data = b"<AccessControlPolicy><Owner>"
        _fix_body_headers(request)

    s3.meta.events.register("before-sign.s3.PutBucketAcl", corrupt)
    try:
        with pytest.raises(ClientError) as exc:
            s3.put_bucket_acl(Bucket=bucket, AccessControlPolicy={
                "Owner": {"ID": "x"}, "Grants": []})
    finally:
        s3.meta.events.unregister("before-sign.s3.PutBucketAcl", corrupt)
    assert error_of(exc) in {("MalformedACLError", 400), ("MalformedXML", 400)}


# ---------------------------------------------------------------------------------------------
# Auth


def test_presigned_get(s3, cloud, bucket):
    s3.put_object(Bucket=bucket, Key="pre signed/ü", Body=b"presigned body")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket,
                                                          "Key": "pre signed/ü"},
                                    ExpiresIn=300)
    assert "X-Amz-Signature=" in url
    st, headers, body = http_get(url)
    assert (st, body) == (200, b"presigned body")
    assert headers["ETag"] == etag_of(b"presigned body")
    tampered = url.replace("X-Amz-Signature=", "X-Amz-Signature=0")
    st, _, body = http_get(tampered)
    assert st == 403 and xml_code(body) == "SignatureDoesNotMatch"


def test_presigned_put(s3, cloud, bucket):
    url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "up"},
                                    ExpiresIn=300)
    st, headers, _ = http_get(url, method="PUT", data=b"uploaded via url")
    assert st == 200
    assert headers["ETag"] == etag_of(b"uploaded via url")
    assert body_of(s3, bucket, "up") == b"uploaded via url"


def test_presigned_url_expired(s3, bucket):
    s3.put_object(Bucket=bucket, Key="soon", Body=b"x")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "soon"},
                                    ExpiresIn=1)
    time.sleep(2.5)
    st, _, body = http_get(url)
    assert st == 403
    assert xml_code(body) == "AccessDenied"


def test_wrong_secret_is_signature_does_not_match(cloud, bucket):
    bad = make_client(cloud.s3_url, cloud.region, cloud.access_key, cloud.secret_key + "x")
    assert_error(bad.list_buckets, "SignatureDoesNotMatch", 403)
    assert_error(bad.put_object, "SignatureDoesNotMatch", 403, Bucket=bucket, Key="k",
                 Body=b"x")
    assert_error(bad.get_object, "SignatureDoesNotMatch", 403, Bucket=bucket, Key="k")


def test_unknown_access_key(cloud, bucket):
    bad = make_client(cloud.s3_url, cloud.region, "AKIDOESNOTEXIST00000", cloud.secret_key)
    assert_error(bad.list_buckets, "InvalidAccessKeyId", 403)
    assert_error(bad.get_object, "InvalidAccessKeyId", 403, Bucket=bucket, Key="k")


def test_any_region_name_is_accepted(cloud, bucket):
    client = make_client(cloud.s3_url, "undefined-12345", cloud.access_key, cloud.secret_key)
    client.put_object(Bucket=bucket, Key="region", Body=b"r")
    assert body_of(client, bucket, "region") == b"r"


def test_tampered_body_is_rejected(cloud, bucket, s3):
    """The signed x-amz-content-sha256 must match the body that arrives."""
    st, _, body = raw_request(cloud, "PUT", f"/{bucket}/tamper", body=b"real body",
                              payload_hash=hashlib.sha256(b"other body").hexdigest())
    assert st == 400 and xml_code(body) == "XAmzContentSHA256Mismatch"
    assert_error(s3.head_object, "404", 404, Bucket=bucket, Key="tamper")


def test_clock_skew(cloud, bucket, monkeypatch):
    import botocore.auth
    real = botocore.auth.get_current_datetime
    client = make_client(cloud.s3_url, cloud.region, cloud.access_key, cloud.secret_key)
    monkeypatch.setattr(botocore.auth, "get_current_datetime",
                        lambda: real() - datetime.timedelta(minutes=20))
    assert_error(client.list_objects_v2, "RequestTimeTooSkewed", 403, Bucket=bucket)
    monkeypatch.setattr(botocore.auth, "get_current_datetime",
                        lambda: real() - datetime.timedelta(minutes=10))
    assert status(client.list_objects_v2(Bucket=bucket)) == 200


@pytest.fixture(scope="module")
def s3_sigv2(cloud):
    """SigV2 (the euca2ools default) at the root of the port, where botocore's V2 resource
    has no mount prefix."""
    return make_client(cloud.root_url, cloud.region, cloud.access_key, cloud.secret_key,
                       signature_version="s3")


def test_sigv2_header_auth(s3_sigv2, s3, bucket):
    put = s3_sigv2.put_object(Bucket=bucket, Key="v2/key ü", Body=b"v2 body",
                              Metadata={"x": "y"}, ACL="aws-exec-read")
    assert put["ETag"] == etag_of(b"v2 body")
    assert body_of(s3_sigv2, bucket, "v2/key ü") == b"v2 body"
    assert body_of(s3, bucket, "v2/key ü") == b"v2 body"
    assert [o["Key"] for o in s3_sigv2.list_objects(Bucket=bucket, Prefix="v2/")["Contents"]] \
        == ["v2/key ü"]
    assert s3_sigv2.get_bucket_acl(Bucket=bucket)["Owner"]["ID"]


def test_sigv2_query_presigned(s3_sigv2, s3, bucket):
    s3.put_object(Bucket=bucket, Key="v2q", Body=b"query signed")
    url = s3_sigv2.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "v2q"},
                                          ExpiresIn=120)
    assert "Signature=" in url and "AWSAccessKeyId=" in url
    st, _, body = http_get(url)
    assert (st, body) == (200, b"query signed")


def test_sigv2_wrong_secret(cloud, bucket):
    bad = make_client(cloud.root_url, cloud.region, cloud.access_key, cloud.secret_key + "x",
                      signature_version="s3")
    assert_error(bad.get_object, "SignatureDoesNotMatch", 403, Bucket=bucket, Key="k")


# ---------------------------------------------------------------------------------------------
# Streaming uploads built by hand (botocore signs the whole payload over plain HTTP)


def _chunked_signed_body(cloud, data, chunk, amz_date, scope, seed_signature):
    import hmac
    key = ("AWS4" + cloud.secret_key).encode()
    for part in scope.split("/")[:4]:
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    out, prev = b"", seed_signature
    empty_hash = hashlib.sha256(b"").hexdigest()
    pieces = [data[i:i + chunk] for i in range(0, len(data), chunk)] + [b""]
    for piece in pieces:
        sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, prev, empty_hash,
                         hashlib.sha256(piece).hexdigest()])
        sig = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
        out += f"{len(piece):x};chunk-signature={sig}\r\n".encode() + piece + b"\r\n"
        prev = sig
    return out


def _signed_streaming_put(cloud, bucket, key, data, tamper=False):
    """PUT with STREAMING-AWS4-HMAC-SHA256-PAYLOAD: a seed signature over the headers, then
    one signature per 64 KiB chunk, chained."""
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    from conftest import FixedPayloadAuth
    path = f"/{bucket}/{urllib.parse.quote(key)}"
    url = cloud.s3_url + path
    chunk = 64 * 1024
    encoded_len = len(_chunked_signed_body(cloud, data, chunk, "d", "a/b/c/d", "0" * 64))
    headers = {
        "Content-Encoding": "aws-chunked",
        "X-Amz-Decoded-Content-Length": str(len(data)),
        "Content-Length": str(encoded_len),
    }
    req = AWSRequest(method="PUT", url=url, headers=headers)
    FixedPayloadAuth(Credentials(cloud.access_key, cloud.secret_key), cloud.region,
                     "STREAMING-AWS4-HMAC-SHA256-PAYLOAD").add_auth(req)
    authz = req.headers["Authorization"]
    seed = authz.split("Signature=")[1]
    scope = authz.split("Credential=")[1].split(",")[0].split("/", 1)[1]
    body = _chunked_signed_body(cloud, data, chunk, req.headers["X-Amz-Date"], scope, seed)
    assert len(body) == encoded_len
    if tamper:
        i = body.index(b"\r\n") + 2 + 10
        body = body[:i] + bytes([body[i] ^ 1]) + body[i + 1:]
    return raw_request(cloud, "PUT", path, headers=dict(req.headers.items()), body=body,
                       sign=False)


def test_streaming_signed_payload_put(cloud, s3, bucket):
    data = os.urandom(200 * 1024 + 5)
    st, headers, body = _signed_streaming_put(cloud, bucket, "streamed", data)
    assert st == 200, body
    assert headers["etag"] == etag_of(data)
    got = s3.get_object(Bucket=bucket, Key="streamed")
    assert got["ContentLength"] == len(data)
    assert got["Body"].read() == data
    assert got.get("ContentEncoding") in (None, "")  # aws-chunked is not stored


def test_streaming_signed_payload_bad_chunk_signature(cloud, s3, bucket):
    data = os.urandom(100 * 1024)
    st, _, body = _signed_streaming_put(cloud, bucket, "streamed-bad", data, tamper=True)
    assert st == 403 and xml_code(body) == "SignatureDoesNotMatch"
    assert_error(s3.head_object, "404", 404, Bucket=bucket, Key="streamed-bad")


def _unsigned_trailer_put(cloud, bucket, key, data, checksum):
    chunks = [data[i:i + 8192] for i in range(0, len(data), 8192)]
    body = b"".join(f"{len(c):x}\r\n".encode() + c + b"\r\n" for c in chunks)
    body += f"0\r\nx-amz-checksum-crc32:{checksum}\r\n\r\n".encode()
    headers = {
        "Content-Encoding": "aws-chunked",
        "X-Amz-Decoded-Content-Length": str(len(data)),
        "X-Amz-Trailer": "x-amz-checksum-crc32",
        "X-Amz-Sdk-Checksum-Algorithm": "CRC32",
    }
    return raw_request(cloud, "PUT", f"/{bucket}/{urllib.parse.quote(key)}", headers=headers,
                       body=body, payload_hash="STREAMING-UNSIGNED-PAYLOAD-TRAILER")


def test_streaming_unsigned_payload_with_crc32_trailer(cloud, s3, bucket):
    data = os.urandom(50000)
    st, headers, body = _unsigned_trailer_put(cloud, bucket, "trailer", data, crc32_b64(data))
    assert st == 200, body
    assert headers["etag"] == etag_of(data)
    assert body_of(s3, bucket, "trailer") == data
    st, _, body = _unsigned_trailer_put(cloud, bucket, "trailer-bad", data, crc32_b64(b"no"))
    assert st == 400 and xml_code(body) == "BadDigest"
    assert_error(s3.head_object, "404", 404, Bucket=bucket, Key="trailer-bad")


# ---------------------------------------------------------------------------------------------
# Keys


ODD_KEYS = [
    "../x", "a//b", "./dot", "trailing/", "ünïcødé/日本語", "plus+sign", "amp&ersand",
    "with space", "percent%20literal", "question?mark", "hash#tag", "ctrl\x01char",
    "tab\there", "new\nline", "emoji 🐨", "semi;colon=eq", "quote'\"", "back\\slash",
    "tilde~star*", "<angle>", "/leading-slash",
]


def test_odd_keys_round_trip(s3, bucket):
    for i, key in enumerate(ODD_KEYS):
        put = s3.put_object(Bucket=bucket, Key=key, Body=f"body {i}".encode())
        assert put["ETag"] == etag_of(f"body {i}".encode()), key
    for i, key in enumerate(ODD_KEYS):
        assert body_of(s3, bucket, key) == f"body {i}".encode(), key
        assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == len(f"body {i}"), key
    listed = all_keys_v2(s3, bucket)
    assert listed == sorted(ODD_KEYS, key=lambda k: k.encode())
    v1 = [o["Key"] for o in s3.list_objects(Bucket=bucket)["Contents"]]
    assert v1 == listed
    # Prefix listing with odd characters.
    assert all_keys_v2(s3, bucket, Prefix="a/b") == []
    assert all_keys_v2(s3, bucket, Prefix="a/") == ["a//b"]
    assert all_keys_v2(s3, bucket, Prefix="a//") == ["a//b"]
    assert all_keys_v2(s3, bucket, Prefix="ctrl\x01") == ["ctrl\x01char"]
    # `../x` is a key, not a path: `x` does not exist and nothing escaped the bucket.
    assert_error(s3.head_object, "404", 404, Bucket=bucket, Key="x")
    for key in ODD_KEYS:
        s3.delete_object(Bucket=bucket, Key=key)
    assert all_keys_v2(s3, bucket) == []


def test_key_length_limit(s3, bucket):
    longest = "k" * 1024
    s3.put_object(Bucket=bucket, Key=longest, Body=b"ok")
    assert body_of(s3, bucket, longest) == b"ok"
    multibyte = "é" * 512  # 1024 bytes
    s3.put_object(Bucket=bucket, Key=multibyte, Body=b"mb")
    assert body_of(s3, bucket, multibyte) == b"mb"
    assert_error(s3.put_object, "KeyTooLongError", 400, Bucket=bucket, Key="k" * 1025,
                 Body=b"x")
    assert_error(s3.put_object, "KeyTooLongError", 400, Bucket=bucket, Key="é" * 513,
                 Body=b"x")
    assert_error(s3.create_multipart_upload, "KeyTooLongError", 400, Bucket=bucket,
                 Key="k" * 1025)
    assert sorted(all_keys_v2(s3, bucket)) == sorted([longest, multibyte])


def test_key_not_valid_utf8(cloud, s3, bucket):
    st, _, body = raw_request(cloud, "PUT", f"/{bucket}/bad%FF%FEkey", body=b"x")
    assert st == 400, body
    assert xml_code(body) in ("InvalidURI", "InvalidArgument", "InvalidObjectName")
    assert all_keys_v2(s3, bucket) == []


# ---------------------------------------------------------------------------------------------
# Oversized input


def test_user_metadata_too_large(s3, bucket):
    assert_error(s3.put_object, "MetadataTooLarge", 400, Bucket=bucket, Key="m", Body=b"x",
                 Metadata={"big": "v" * 2100})
    assert_error(s3.head_object, "404", 404, Bucket=bucket, Key="m")


def test_request_header_section_over_8_kib(s3, bucket):
    """AWS refuses headers over 8 KiB before it looks at the 2 KB metadata limit."""
    assert_error(s3.put_object, "RequestHeaderSectionTooLarge", 400, Bucket=bucket, Key="h",
                 Body=b"x", Metadata={"big": "v" * (9 * 1024)})
    assert_error(s3.head_object, "404", 404, Bucket=bucket, Key="h")


def test_object_larger_than_5_gib_is_refused_before_upload(cloud, s3, bucket):
    """A PUT announcing more than 5 GiB is refused at once (the client sends no body)."""
    size = 5 * 1024 ** 3 + 1
    st, _, body = raw_request(cloud, "PUT", f"/{bucket}/huge",
                              headers={"Content-Length": str(size)},
                              payload_hash="UNSIGNED-PAYLOAD")
    assert st == 400, body
    assert xml_code(body) == "EntityTooLarge"
    assert_error(s3.head_object, "404", 404, Bucket=bucket, Key="huge")


def test_oversized_request_headers(cloud, bucket, s3):
    st, _, _ = raw_request(cloud, "GET", f"/{bucket}", sign=False,
                           headers={"X-Filler": "y" * (1024 * 1024)})
    assert st in (400, 431)
    # The server is still serving.
    assert status(s3.head_bucket(Bucket=bucket)) == 200


# ---------------------------------------------------------------------------------------------
# Malformed XML bodies


def _fix_body_headers(request):
    """After replacing a request body: drop stale checksums, recompute Content-MD5/length."""
    body = request.data
    for h in list(request.headers.keys()):
        if h.lower().startswith("x-amz-checksum-") or h.lower() in (
                "x-amz-sdk-checksum-algorithm", "content-length", "content-md5"):
            del request.headers[h]
    request.headers["Content-MD5"] = b64(hashlib.md5(body).digest())


def _corrupting(client, event, body):
    def corrupt(request, **_):
        request.data = body
        _fix_body_headers(request)
    client.meta.events.register(event, corrupt)
    return lambda: client.meta.events.unregister(event, corrupt)


def test_malformed_xml_complete_multipart(s3, bucket):
    uid, (p1, e1), (p2, e2) = _two_part_upload(s3, bucket, "mx")
    undo = _corrupting(s3, "before-sign.s3.CompleteMultipartUpload",
                       b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>")
    try:
        assert_error(s3.complete_multipart_upload, "MalformedXML", 400, Bucket=bucket,
                     Key="mx", UploadId=uid, MultipartUpload={"Parts": [
                         {"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
    finally:
        undo()
    assert_error(s3.head_object, "404", 404, Bucket=bucket, Key="mx")
    # The upload survives the bad request.
    assert len(s3.list_parts(Bucket=bucket, Key="mx", UploadId=uid)["Parts"]) == 2
    s3.abort_multipart_upload(Bucket=bucket, Key="mx", UploadId=uid)


def test_complete_multipart_with_no_parts_is_malformed(s3, bucket):
    uid = s3.create_multipart_upload(Bucket=bucket, Key="np")["UploadId"]
    try:
        undo = _corrupting(s3, "before-sign.s3.CompleteMultipartUpload",
                           b"<CompleteMultipartUpload></CompleteMultipartUpload>")
        try:
            assert_error(s3.complete_multipart_upload, "MalformedXML", 400, Bucket=bucket,
                         Key="np", UploadId=uid,
                         MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"x"'}]})
        finally:
            undo()
    finally:
        s3.abort_multipart_upload(Bucket=bucket, Key="np", UploadId=uid)


def test_malformed_xml_delete_objects(s3, bucket):
    s3.put_object(Bucket=bucket, Key="stay", Body=b"x")
    for bad in (b"<Delete><Object><Key>stay</Key></Object>", b"not xml at all",
                b"<Delete><Object><Key>stay</Key></Object></Wrong>"):
        undo = _corrupting(s3, "before-sign.s3.DeleteObjects", bad)
        try:
            assert_error(s3.delete_objects, "MalformedXML", 400, Bucket=bucket,
                         Delete={"Objects": [{"Key": "stay"}]})
        finally:
            undo()
    assert body_of(s3, bucket, "stay") == b"x"


def test_delete_objects_without_content_md5(cloud, s3, bucket):
    s3.put_object(Bucket=bucket, Key="stay", Body=b"x")
    body = b"<Delete><Object><Key>stay</Key></Object></Delete>"
    st, _, resp = raw_request(cloud, "POST", f"/{bucket}", query="delete=", body=body)
    assert st == 400 and xml_code(resp) in ("InvalidRequest", "MissingContentMD5")
    assert body_of(s3, bucket, "stay") == b"x"


def test_malformed_create_bucket_configuration(s3, bucket_name):
    undo = _corrupting(s3, "before-sign.s3.CreateBucket",
                       b"<CreateBucketConfiguration><LocationConstraint>")
    try:
        assert_error(s3.create_bucket, "MalformedXML", 400, Bucket=bucket_name,
                     CreateBucketConfiguration={"LocationConstraint": "x"})
    finally:
        undo()
    assert_error(s3.head_bucket, "404", 404, Bucket=bucket_name)


# ---------------------------------------------------------------------------------------------
# Unimplemented sub-resources


@pytest.mark.parametrize("call", [
    lambda s3, b: s3.put_bucket_lifecycle_configuration(
        Bucket=b, LifecycleConfiguration={"Rules": [
            {"ID": "r", "Status": "Enabled", "Filter": {"Prefix": ""},
             "Expiration": {"Days": 1}}]}),
    lambda s3, b: s3.get_bucket_website(Bucket=b),
    lambda s3, b: s3.get_bucket_encryption(Bucket=b),
    lambda s3, b: s3.get_bucket_replication(Bucket=b),
], ids=["put_lifecycle", "get_website", "get_encryption",
        "get_replication"])
def test_unimplemented_subresources_are_501(s3, bucket, call):
    with pytest.raises(ClientError) as exc:
        call(s3, bucket)
    assert error_of(exc) == ("NotImplemented", 501), exc.value.response


def test_unimplemented_object_subresource_is_501(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert_error(s3.restore_object, "NotImplemented", 501, Bucket=bucket, Key="k",
                 RestoreRequest={"Days": 1})
    assert body_of(s3, bucket, "k") == b"x"


# ---------------------------------------------------------------------------------------------
# Endpoints


@pytest.mark.parametrize("mount", ["", "/services/Walrus", "/services/objectstorage",
                                   "/services/Walrus/"])
def test_every_mount_point_serves_the_same_store(cloud, s3, bucket, mount):
    client = make_client(cloud.root_url + mount, cloud.region, cloud.access_key,
                         cloud.secret_key)
    key = f"via-{mount.strip('/').replace('/', '-') or 'root'}"
    client.put_object(Bucket=bucket, Key=key, Body=mount.encode() or b"root")
    assert body_of(s3, bucket, key) == (mount.encode() or b"root")
    assert body_of(client, bucket, key) == (mount.encode() or b"root")
    assert bucket in [b["Name"] for b in client.list_buckets()["Buckets"]]
    assert key in all_keys_v2(client, bucket)
    uid = client.create_multipart_upload(Bucket=bucket, Key=key + ".mp")["UploadId"]
    e = client.upload_part(Bucket=bucket, Key=key + ".mp", UploadId=uid, PartNumber=1,
                           Body=b"part")["ETag"]
    client.complete_multipart_upload(Bucket=bucket, Key=key + ".mp", UploadId=uid,
                                     MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e}]})
    assert body_of(s3, bucket, key + ".mp") == b"part"
    client.delete_object(Bucket=bucket, Key=key)
    assert_error(s3.head_object, "404", 404, Bucket=bucket, Key=key)


def test_query_api_action_is_not_s3(cloud):
    """`GET /?Action=...` belongs to the EC2/account APIs, never to S3's ListBuckets."""
    st, _, body = raw_request(cloud, "GET", "/", query="Action=DescribeRegions&Version=2013-06-15",
                              base=cloud.root_url)
    assert b"ListAllMyBucketsResult" not in body, (st, body)


# ---------------------------------------------------------------------------------------------
# Durability across a restart


def test_restart_keeps_everything(cloud_factory):
    c = cloud_factory()
    s3 = make_client(c.s3_url, c.region, c.access_key, c.secret_key)
    b = unique_bucket("restart")
    s3.create_bucket(Bucket=b)
    small = b"small object"
    big = os.urandom(3 * MiB + 11)
    s3.put_object(Bucket=b, Key="small", Body=small, Metadata={"k": "v"},
                  ContentType="text/plain")
    s3.put_object(Bucket=b, Key="big", Body=big, ACL="public-read")
    s3.put_object(Bucket=b, Key="gone", Body=b"deleted before restart")
    s3.delete_object(Bucket=b, Key="gone")
    p1, p2 = os.urandom(5 * MiB), os.urandom(100)
    uid = s3.create_multipart_upload(Bucket=b, Key="mp")["UploadId"]
    e1 = s3.upload_part(Bucket=b, Key="mp", UploadId=uid, PartNumber=1, Body=p1)["ETag"]
    e2 = s3.upload_part(Bucket=b, Key="mp", UploadId=uid, PartNumber=2, Body=p2)["ETag"]
    s3.complete_multipart_upload(Bucket=b, Key="mp", UploadId=uid, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
    # An upload in progress across the restart.
    q1 = os.urandom(5 * MiB)
    pending = s3.create_multipart_upload(Bucket=b, Key="pending")["UploadId"]
    f1 = s3.upload_part(Bucket=b, Key="pending", UploadId=pending, PartNumber=1,
                        Body=q1)["ETag"]
    keys_before = c.access_key

    c.stop()
    c.start()
    assert c.access_key == keys_before  # the admin keeps its credentials
    s3 = make_client(c.s3_url, c.region, c.access_key, c.secret_key)
    anon = make_client(c.s3_url, c.region, anonymous=True)

    assert b in [x["Name"] for x in s3.list_buckets()["Buckets"]]
    assert all_keys_v2(s3, b) == ["big", "mp", "small"]
    got = s3.get_object(Bucket=b, Key="small")
    assert got["Body"].read() == small
    assert got["Metadata"] == {"k": "v"} and got["ContentType"] == "text/plain"
    assert body_of(anon, b, "big") == big
    mp = s3.get_object(Bucket=b, Key="mp")
    assert mp["ETag"] == multipart_etag([p1, p2])
    assert mp["Body"].read() == p1 + p2
    assert_error(s3.get_object, "NoSuchKey", 404, Bucket=b, Key="gone")

    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=b)["Uploads"]] == [pending]
    q2 = b"end"
    f2 = s3.upload_part(Bucket=b, Key="pending", UploadId=pending, PartNumber=2,
                        Body=q2)["ETag"]
    s3.complete_multipart_upload(Bucket=b, Key="pending", UploadId=pending, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": f1}, {"PartNumber": 2, "ETag": f2}]})
    assert body_of(s3, b, "pending") == q1 + q2

    # And once more, now with writes made after the first restart.
    c.stop()
    c.start()
    s3 = make_client(c.s3_url, c.region, c.access_key, c.secret_key)
    assert body_of(s3, b, "pending") == q1 + q2
    assert all_keys_v2(s3, b) == ["big", "mp", "pending", "small"]


def test_sigterm_stops_the_server_promptly(cloud_factory):
    c = cloud_factory()
    s3 = make_client(c.s3_url, c.region, c.access_key, c.secret_key)
    b = unique_bucket("term")
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="k", Body=b"v")
    start = time.monotonic()
    code = c.stop(timeout=15)
    assert code is not None, "koala up ignored SIGTERM for 15 s"
    assert time.monotonic() - start < 15
    c.start()
    s3 = make_client(c.s3_url, c.region, c.access_key, c.secret_key)
    assert body_of(s3, b, "k") == b"v"


def _start_partial_put(cloud, bucket, key, announced, sent):
    """Opens a PUT announcing `announced` bytes and sends only `sent`; returns the socket's
    connection (still open)."""
    import http.client
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    from conftest import FixedPayloadAuth
    path = urllib.parse.urlsplit(cloud.s3_url).path + f"/{bucket}/{key}"
    req = AWSRequest(method="PUT", url=cloud.root_url + path,
                     headers={"Content-Length": str(announced)})
    FixedPayloadAuth(Credentials(cloud.access_key, cloud.secret_key), cloud.region,
                     "UNSIGNED-PAYLOAD").add_auth(req)
    conn = http.client.HTTPConnection("127.0.0.1", cloud.port, timeout=30)
    conn.putrequest("PUT", path, skip_accept_encoding=True)
    for k, v in req.headers.items():
        conn.putheader(k, v)
    conn.endheaders()
    conn.send(os.urandom(sent))
    return conn


def test_interrupted_upload_leaves_old_version_intact(cloud, s3, bucket):
    s3.put_object(Bucket=bucket, Key="obj", Body=b"old version")
    conn = _start_partial_put(cloud, bucket, "obj", 4 * MiB, MiB)
    time.sleep(0.5)
    conn.sock.close()
    conn.close()
    time.sleep(0.5)
    assert body_of(s3, bucket, "obj") == b"old version"
    conn = _start_partial_put(cloud, bucket, "new", 4 * MiB, MiB)
    time.sleep(0.5)
    conn.close()
    time.sleep(0.5)
    assert_error(s3.head_object, "404", 404, Bucket=bucket, Key="new")
    assert all_keys_v2(s3, bucket) == ["obj"]


def test_kill_mid_upload_then_restart(cloud_factory):
    import signal
    c = cloud_factory()
    s3 = make_client(c.s3_url, c.region, c.access_key, c.secret_key)
    b = unique_bucket("crash")
    s3.create_bucket(Bucket=b)
    acked = os.urandom(2 * MiB)
    s3.put_object(Bucket=b, Key="acked", Body=acked)
    s3.put_object(Bucket=b, Key="tiny", Body=b"inline")
    conn = _start_partial_put(c, b, "acked", 16 * MiB, 3 * MiB)  # overwrite in flight
    conn2 = _start_partial_put(c, b, "half", 16 * MiB, 3 * MiB)
    time.sleep(1)
    c.proc.send_signal(signal.SIGKILL)
    c.proc.wait()
    conn.close()
    conn2.close()
    c.stop()
    c.start()
    s3 = make_client(c.s3_url, c.region, c.access_key, c.secret_key)
    assert all_keys_v2(s3, b) == ["acked", "tiny"]
    assert body_of(s3, b, "acked") == acked
    assert body_of(s3, b, "tiny") == b"inline"
    assert_error(s3.head_object, "404", 404, Bucket=b, Key="half")


# ---------------------------------------------------------------------------------------------
# euca2ools 3.4 on the wire (client-wire-contract §3.2): SigV2 header, `Date` with `-0000`,
# the mount prefix left out of the string to sign.


def _v2_request(cloud, method, resource, mount="/services/objectstorage", body=b"",
                amz=None, query="", secret=None):
    import hmac
    from email.utils import formatdate
    date = formatdate(usegmt=True).replace("GMT", "-0000")
    amz = amz or {}
    amz_lines = "".join(f"{k.lower()}:{v}\n" for k, v in sorted(amz.items()))
    sub = f"?{query}" if query in ("acl", "location", "uploads") else ""
    sts = f"{method}\n\n\n{date}\n{amz_lines}{resource}{sub}"
    sig = b64(hmac.new((secret or cloud.secret_key).encode(), sts.encode(), "sha1").digest())
    headers = {"Date": date, "Authorization": f"AWS {cloud.access_key}:{sig}", **amz}
    return raw_request(cloud, method, resource, query=query, headers=headers, body=body,
                       sign=False, base=cloud.root_url + mount)


@pytest.mark.parametrize("mount", ["/services/objectstorage", "/services/Walrus", ""])
def test_euca2ools_style_sigv2_upload_flow(cloud, s3, bucket_name, mount):
    # 1) existence check, 2) create, 3) parts with x-amz-acl: aws-exec-read, 4) manifest.
    st, _, _ = _v2_request(cloud, "GET", f"/{bucket_name}", mount, query="max-keys=0")
    assert st == 404
    st, _, body = _v2_request(cloud, "PUT", f"/{bucket_name}", mount)
    assert st == 200, body
    try:
        st, _, _ = _v2_request(cloud, "GET", f"/{bucket_name}", mount, query="max-keys=0")
        assert st == 200
        part = os.urandom(100000)
        st, headers, body = _v2_request(cloud, "PUT", f"/{bucket_name}/img/image.part.00", mount,
                                        body=part, amz={"x-amz-acl": "aws-exec-read"})
        assert st == 200, body
        assert headers["etag"].strip('"').lower() == md5_hex(part)
        st, headers, got = _v2_request(cloud, "GET", f"/{bucket_name}/img/image.part.00", mount)
        assert st == 200 and got == part
        assert int(headers["content-length"]) == len(part)
        assert headers["etag"].strip('"').lower() == md5_hex(part)
        assert body_of(s3, bucket_name, "img/image.part.00") == part
        st, _, body = _v2_request(cloud, "GET", f"/{bucket_name}/img/image.part.00", mount,
                                  query="acl")
        assert st == 200 and b"FULL_CONTROL" in body
        st, _, _ = _v2_request(cloud, "DELETE", f"/{bucket_name}/img/image.part.00", mount)
        assert st == 204
        st, _, body = _v2_request(cloud, "GET", f"/{bucket_name}/img/image.part.00", mount,
                                  secret=cloud.secret_key + "x")
        assert st == 403 and xml_code(body) == "SignatureDoesNotMatch"
    finally:
        empty_and_delete(s3, bucket_name)


def test_concurrent_puts_and_gets(s3, bucket):
    from concurrent.futures import ThreadPoolExecutor
    blobs = {f"c/{i:03d}": os.urandom(1000 + i * 5000) for i in range(48)}

    def put(k):
        return s3.put_object(Bucket=bucket, Key=k, Body=blobs[k])["ETag"]

    with ThreadPoolExecutor(16) as pool:
        etags = dict(zip(blobs, pool.map(put, blobs)))
        assert all(etags[k] == etag_of(v) for k, v in blobs.items())
        bodies = dict(zip(blobs, pool.map(lambda k: body_of(s3, bucket, k), blobs)))
    assert bodies == blobs
    assert all_keys_v2(s3, bucket, Prefix="c/") == sorted(blobs)
