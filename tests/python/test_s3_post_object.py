"""Walrus' POST Object (browser form uploads) against the real `koala up`: forms built as a
browser sends them (multipart/form-data), policies signed with SigV2 by hand and with SigV4
by boto3's own generate_presigned_post, anonymous uploads to a public bucket, and every
refusal with its status and code."""

import base64
import datetime
import hashlib
import hmac
import json
import uuid
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET

import pytest

from conftest import assert_error, b64, etag_of, make_client


def multipart(fields, file_name="file", data=b"bar"):
    """A multipart/form-data body of `fields` (in order) then the file, as a browser sends
    it; returns (content type, body)."""
    boundary = uuid.uuid4().hex
    out = b""
    for name, value in fields:
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
                .encode() + (value if isinstance(value, bytes) else value.encode()) + b"\r\n")
    out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{file_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            .encode() + data + f"\r\n--{boundary}--\r\n".encode())
    return f"multipart/form-data; boundary={boundary}", out


def post(url, fields, **kw):
    """POSTs a form; (status, headers, body, final URL) for successes and errors alike."""
    content_type, body = multipart(fields, **kw)
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.headers, resp.read(), resp.url
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read(), url


def code_of(body):
    return ET.fromstring(body).findtext("Code")


def policy_v2(cloud, conditions, expires_in=600, expiration=None):
    """(policy, signature) fields of a SigV2-signed policy with the admin's key."""
    if expiration is None:
        when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(
            seconds=expires_in)
        expiration = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    doc = {"expiration": expiration, "conditions": conditions}
    policy = base64.b64encode(json.dumps(doc).encode())
    signature = base64.b64encode(hmac.new(cloud.secret_key.encode(), policy,
                                          hashlib.sha1).digest())
    return policy.decode(), signature.decode()


def signed(cloud, conditions, fields, **kw):
    policy, signature = policy_v2(cloud, conditions, **kw)
    return [*fields, ("AWSAccessKeyId", cloud.access_key), ("policy", policy),
            ("signature", signature)]


def standard(bucket, length=(0, 1024)):
    return [{"bucket": bucket}, ["starts-with", "$key", "foo"], {"acl": "private"},
            ["starts-with", "$Content-Type", "text/plain"], ["content-length-range", *length]]


def test_anonymous_form_upload_to_a_public_bucket(cloud, s3, bucket):
    url = f"{cloud.s3_url}/{bucket}"
    fields = [("key", "foo.txt"), ("acl", "public-read"), ("Content-Type", "text/plain")]
    status, _, _, _ = post(url, fields)
    assert status == 403, "a private bucket takes no anonymous upload"
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read-write")
    status, headers, body, _ = post(url, fields)
    assert (status, body) == (204, b"")
    assert headers["ETag"] == etag_of(b"bar")
    got = s3.get_object(Bucket=bucket, Key="foo.txt")
    assert got["Body"].read() == b"bar" and got["ContentType"] == "text/plain"
    anon = make_client(cloud.s3_url, cloud.region, anonymous=True)
    assert anon.get_object(Bucket=bucket, Key="foo.txt")["Body"].read() == b"bar"
    # A key signed with a made-up access key is refused even where anyone may write.
    status, _, body, _ = post(url, [*fields, ("AWSAccessKeyId", "AKIANOBODY"),
                                     ("policy", "e30="), ("signature", "c2ln")])
    assert status == 403 and code_of(body) == "InvalidAccessKeyId"


def test_signed_form_upload_with_metadata_tags_and_statuses(cloud, s3, bucket):
    url = f"{cloud.s3_url}/{bucket}"
    conditions = standard(bucket) + [["starts-with", "$x-amz-meta-foo", "bar"],
                                     ["starts-with", "$tagging", ""],
                                     ["eq", "$success_action_status", "201"]]
    tagging = ("<Tagging><TagSet><Tag><Key>1</Key><Value>one</Value></Tag>"
               "<Tag><Key>0</Key><Value>zero</Value></Tag></TagSet></Tagging>")
    fields = signed(cloud, conditions, [
        ("kEy", "foo.txt"), ("aCl", "private"), ("Content-Type", "text/plain"),
        ("x-amz-meta-foo", "barclamp"), ("tagging", tagging), ("success_action_status", "201"),
        ("x-ignore-me", "anything")])
    status, _, body, _ = post(url, fields, data=b"form body")
    assert status == 201, body
    doc = ET.fromstring(body)
    assert (doc.findtext("Bucket"), doc.findtext("Key")) == (bucket, "foo.txt")
    assert doc.findtext("ETag") == etag_of(b"form body")
    got = s3.get_object(Bucket=bucket, Key="foo.txt")
    assert got["Body"].read() == b"form body" and got["Metadata"] == {"foo": "barclamp"}
    assert s3.get_object_tagging(Bucket=bucket, Key="foo.txt")["TagSet"] == [
        {"Key": "0", "Value": "zero"}, {"Key": "1", "Value": "one"}]

    # `${filename}` is the file's name; 200 and unknown statuses answer without a body.
    for wanted, status_field in [(200, "200"), (204, "404")]:
        fields = signed(cloud, standard(bucket) + [
            ["eq", "$success_action_status", status_field]],
            [("key", "${filename}"), ("acl", "private"), ("Content-Type", "text/plain"),
             ("success_action_status", status_field)])
        status, _, body, _ = post(url, fields, file_name=f"foo-{status_field}.txt")
        assert (status, body) == (wanted, b"")
        assert s3.get_object(Bucket=bucket, Key=f"foo-{status_field}.txt")["Body"].read() == b"bar"


def test_form_upload_redirects_where_asked(cloud, s3, bucket):
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read-write")
    url = f"{cloud.s3_url}/{bucket}"
    redirect = f"{cloud.s3_url}/{bucket}"
    fields = signed(cloud, standard(bucket) + [["eq", "$success_action_redirect", redirect]],
                    [("key", "foo.txt"), ("acl", "private"), ("Content-Type", "text/plain"),
                     ("success_action_redirect", redirect)])
    status, _, _, final = post(url, fields)
    etag = s3.head_object(Bucket=bucket, Key="foo.txt")["ETag"].strip('"')
    assert status == 200  # the redirect was followed to the (public) bucket's listing
    assert final == f"{redirect}?bucket={bucket}&key=foo.txt&etag=%22{etag}%22"


def test_boto3_presigned_post_with_sigv4(cloud, s3, bucket):
    presigned = s3.generate_presigned_post(
        Bucket=bucket, Key="uploads/${filename}",
        Fields={"Content-Type": "image/png", "x-amz-meta-camera": "koala"},
        Conditions=[{"Content-Type": "image/png"}, {"x-amz-meta-camera": "koala"},
                    ["content-length-range", 1, 100]],
        ExpiresIn=600)
    assert presigned["fields"]["x-amz-algorithm"] == "AWS4-HMAC-SHA256"
    status, _, body, _ = post(presigned["url"], list(presigned["fields"].items()),
                              file_name="photo.png", data=b"\x89PNG...")
    assert status == 204, body
    got = s3.get_object(Bucket=bucket, Key="uploads/photo.png")
    assert got["Body"].read() == b"\x89PNG..." and got["ContentType"] == "image/png"
    assert got["Metadata"] == {"camera": "koala"}
    # Beyond the policy's content-length-range: EntityTooLarge, nothing stored.
    status, _, body, _ = post(presigned["url"], list(presigned["fields"].items()),
                              file_name="big.png", data=b"x" * 101)
    assert status == 400 and code_of(body) == "EntityTooLarge"
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="uploads/big")
    # A tampered signature is refused.
    tampered = dict(presigned["fields"], **{"x-amz-signature": "0" * 64})
    status, _, body, _ = post(presigned["url"], list(tampered.items()), file_name="t.png")
    assert status == 403 and code_of(body) == "SignatureDoesNotMatch"


@pytest.mark.parametrize("case", [
    "bad signature", "bad access key", "expired", "wrong bucket", "missing bucket condition",
    "unlisted field", "field fails eq", "missing policy field", "too large", "too small",
    "no key", "no signature", "bad date", "no expiration", "EXPIRATION", "no conditions",
    "CONDITIONS", "empty condition", "range without max", "negative range", "not a form",
    "repeated field", "oversized fields",
])
def test_form_upload_refusals(cloud, s3, bucket, case):
    url = f"{cloud.s3_url}/{bucket}"
    base = [("key", "foo.txt"), ("acl", "private"), ("Content-Type", "text/plain")]
    conditions = standard(bucket)
    fields, data, kw = None, b"bar", {}
    want = {"bad signature": (403, "SignatureDoesNotMatch"),
            "bad access key": (403, "InvalidAccessKeyId"),
            "expired": (403, "AccessDenied"), "wrong bucket": (403, "AccessDenied"),
            "missing bucket condition": (403, "AccessDenied"),
            "unlisted field": (403, "AccessDenied"), "field fails eq": (403, "AccessDenied"),
            "missing policy field": (403, "AccessDenied"),
            "too large": (400, "EntityTooLarge"), "too small": (400, "EntityTooSmall"),
            "no key": (400, "InvalidArgument"), "no signature": (400, "InvalidArgument"),
            "repeated field": (400, "InvalidArgument"),
            "oversized fields": (400, "InvalidArgument"),
            "not a form": (400, "MalformedPOSTRequest")}.get(case, (400, "InvalidPolicyDocument"))
    if case == "bad signature":
        fields = signed(cloud, conditions, base)
        fields[-1] = ("signature", base64.b64encode(b"x" * 20).decode())
    elif case == "bad access key":
        fields = signed(cloud, conditions, base)
        fields[-3] = ("AWSAccessKeyId", cloud.access_key[::-1])
    elif case == "expired":
        fields = signed(cloud, conditions, base, expires_in=-600)
    elif case == "wrong bucket":
        fields = signed(cloud, [{"bucket": bucket + "-other"}] + conditions[1:], base)
    elif case == "missing bucket condition":
        fields = signed(cloud, conditions[1:], base)
    elif case == "unlisted field":
        fields = signed(cloud, conditions, [*base, ("x-amz-meta-foo", "bar")])
    elif case == "field fails eq":
        fields = signed(cloud, conditions + [["eq", "$x-amz-meta-foo", ""]],
                        [*base, ("x-amz-meta-foo", "barclamp")])
    elif case == "missing policy field":
        fields = signed(cloud, conditions + [["starts-with", "$x-amz-meta-foo", "bar"]], base)
    elif case == "too large":
        fields = signed(cloud, standard(bucket, (0, 0)), base)
    elif case == "too small":
        fields = signed(cloud, standard(bucket, (512, 1000)), base)
    elif case == "no key":
        fields = signed(cloud, [c for c in conditions if "$key" not in c], base[1:])
    elif case == "no signature":
        fields = signed(cloud, conditions, base)[:-1]
    elif case == "repeated field":
        # One value to meet the policy, another to be stored: refused.
        fields = signed(cloud, conditions + [{"x-amz-meta-owner": "alice"}],
                        [*base, ("x-amz-meta-owner", "alice"), ("x-amz-meta-owner", "mallory")])
    elif case == "oversized fields":
        # The fields before the file are limited in all (64 KiB), names included.
        fields = [*base, ("x" * 200, "v" * 40_000), ("y" * 200, "v" * 40_000)]
    elif case == "bad date":
        fields = signed(cloud, conditions, base, expiration="2099-01-01 00:00:00+00:00")
    else:
        doc = {"expiration": "2099-01-01T00:00:00Z", "conditions": conditions}
        if case == "no expiration":
            del doc["expiration"]
        elif case == "EXPIRATION":
            doc["EXPIRATION"] = doc.pop("expiration")
        elif case == "no conditions":
            del doc["conditions"]
        elif case == "CONDITIONS":
            doc["CONDITIONS"] = doc.pop("conditions")
        elif case == "empty condition":
            doc["conditions"] = [{}]
        elif case == "range without max":
            doc["conditions"] = conditions[:-1] + [["content-length-range", 0]]
        elif case == "negative range":
            doc["conditions"] = conditions[:-1] + [["content-length-range", -1, 0]]
        policy = base64.b64encode(json.dumps(doc).encode())
        signature = base64.b64encode(hmac.new(cloud.secret_key.encode(), policy,
                                              hashlib.sha1).digest()).decode()
        fields = [*base, ("AWSAccessKeyId", cloud.access_key), ("policy", policy.decode()),
                  ("signature", signature)]
    if case == "not a form":
        req = urllib.request.Request(url, data=b"key=foo", method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        try:
            urllib.request.urlopen(req, timeout=30)
            raise AssertionError("accepted")
        except urllib.error.HTTPError as e:
            status, body = e.code, e.read()
    else:
        status, _, body, _ = post(url, fields, data=data, **kw)
    assert (status, code_of(body)) == want, body
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket), "nothing was stored"


def test_a_form_checksum_is_verified_without_a_policy_condition(cloud, s3, bucket):
    url = f"{cloud.s3_url}/{bucket}"
    data = b"checked by the store"
    good = b64(hashlib.sha256(data).digest())
    conditions = [{"bucket": bucket}, ["starts-with", "$key", "sum"]]
    fields = [("key", "sum/ok")]
    status, _, body, _ = post(url, signed(cloud, conditions, fields)
                              + [("x-amz-checksum-sha256", good)], data=data)
    assert status == 204, body
    got = s3.head_object(Bucket=bucket, Key="sum/ok", ChecksumMode="ENABLED")
    assert got["ChecksumSHA256"] == good
    bad = b64(hashlib.sha256(b"something else").digest())
    status, _, body, _ = post(url, signed(cloud, conditions, [("key", "sum/bad")])
                              + [("x-amz-checksum-sha256", bad)], data=data)
    assert status == 400 and code_of(body) == "BadDigest"
    assert_error(s3.head_object, "404", 404, Bucket=bucket, Key="sum/bad")
