"""Walrus' object and bucket tagging and CORS through boto3 and a browser's raw requests,
against the real `koala up`: what S3 answers (status, code, headers, documents) for each
operation, its limits, and who may do it."""

import pytest

from conftest import assert_error, http_get

ORIGIN_RULES = [
    {"AllowedMethods": ["GET"], "AllowedOrigins": ["*suffix"]},
    {"AllowedMethods": ["GET"], "AllowedOrigins": ["start*end"]},
    {"AllowedMethods": ["GET"], "AllowedOrigins": ["prefix*"]},
    {"AllowedMethods": ["PUT"], "AllowedOrigins": ["*.put"]},
]


def tag_set(n, key_len=None, value_len=None):
    return [{"Key": (f"k{i}" if key_len is None else str(i % 10) * key_len),
             "Value": (f"v{i}" if value_len is None else str(i % 10) * value_len)}
            for i in range(n)]


# ---------------------------------------------------------------------------------------------
# Object tagging


def test_object_tags_are_set_read_replaced_and_deleted(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"tagged")
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == []
    tags = [{"Key": "project", "Value": "koala"}, {"Key": "ü & <x>", "Value": ""}]
    resp = s3.put_object_tagging(Bucket=bucket, Key="k", Tagging={"TagSet": tags})
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == tags
    head = s3.head_object(Bucket=bucket, Key="k")
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-tagging-count"] == "2"
    got = s3.get_object(Bucket=bucket, Key="k")
    assert got["TagCount"] == 2 and got["Body"].read() == b"tagged"

    s3.put_object_tagging(Bucket=bucket, Key="k", Tagging={"TagSet": tags[:1]})
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == tags[:1]
    resp = s3.delete_object_tagging(Bucket=bucket, Key="k")
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == []
    assert "x-amz-tagging-count" not in s3.head_object(
        Bucket=bucket, Key="k")["ResponseMetadata"]["HTTPHeaders"]
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"tagged"

    assert_error(s3.get_object_tagging, "NoSuchKey", 404, Bucket=bucket, Key="absent")
    assert_error(s3.put_object_tagging, "NoSuchKey", 404, Bucket=bucket, Key="absent",
                 Tagging={"TagSet": tags})


def test_object_tag_limits(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"")
    s3.put_object_tagging(Bucket=bucket, Key="k", Tagging={"TagSet": tag_set(10)})
    assert len(s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"]) == 10
    longest = tag_set(10, key_len=128, value_len=256)
    s3.put_object_tagging(Bucket=bucket, Key="k", Tagging={"TagSet": longest})
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == longest
    for bad in (tag_set(11), tag_set(1, key_len=129), tag_set(1, value_len=257),
                [{"Key": "a", "Value": "1"}, {"Key": "a", "Value": "2"}],
                [{"Key": "aws:reserved", "Value": "1"}]):
        assert_error(s3.put_object_tagging, "InvalidTag", 400, Bucket=bucket, Key="k",
                     Tagging={"TagSet": bad})
    # A refused set changes nothing.
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == longest


def test_tags_given_at_write_time(s3, bucket):
    s3.put_object(Bucket=bucket, Key="put", Body=b"p", Tagging="flag&a=1&b%20c=x%2By")
    assert s3.get_object_tagging(Bucket=bucket, Key="put")["TagSet"] == [
        {"Key": "a", "Value": "1"}, {"Key": "b c", "Value": "x+y"}, {"Key": "flag", "Value": ""}]
    assert_error(s3.put_object, "InvalidTag", 400, Bucket=bucket, Key="bad", Body=b"",
                 Tagging="&".join(f"k{i}=v" for i in range(11)))
    assert_error(s3.head_object, "404", 404, Bucket=bucket, Key="bad")

    # CopyObject keeps the source's tags unless told to replace them.
    s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "put"})
    assert len(s3.get_object_tagging(Bucket=bucket, Key="copy")["TagSet"]) == 3
    s3.copy_object(Bucket=bucket, Key="replaced", CopySource={"Bucket": bucket, "Key": "put"},
                   TaggingDirective="REPLACE", Tagging="only=this")
    assert s3.get_object_tagging(Bucket=bucket, Key="replaced")["TagSet"] == [
        {"Key": "only", "Value": "this"}]

    # A multipart upload's object gets the tags given when it was created.
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp", Tagging="part=whole")
    etag = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload["UploadId"], PartNumber=1,
                          Body=b"m")["ETag"]
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload["UploadId"],
                                 MultipartUpload={"Parts": [{"ETag": etag, "PartNumber": 1}]})
    assert s3.get_object_tagging(Bucket=bucket, Key="mp")["TagSet"] == [
        {"Key": "part", "Value": "whole"}]


def test_object_tagging_follows_the_acl(s3, s3_other, bucket):
    s3.put_object(Bucket=bucket, Key="private", Body=b"", Tagging="a=1")
    s3.put_object(Bucket=bucket, Key="readable", Body=b"", Tagging="a=1", ACL="public-read")
    assert_error(s3_other.get_object_tagging, "AccessDenied", 403, Bucket=bucket, Key="private")
    assert s3_other.get_object_tagging(Bucket=bucket, Key="readable")["TagSet"] == [
        {"Key": "a", "Value": "1"}]
    # Retagging is the object's or the bucket's owner's, whatever the ACLs grant.
    assert_error(s3_other.put_object_tagging, "AccessDenied", 403, Bucket=bucket,
                 Key="readable", Tagging={"TagSet": []})
    assert_error(s3_other.delete_object_tagging, "AccessDenied", 403, Bucket=bucket,
                 Key="readable")
    assert len(s3.get_object_tagging(Bucket=bucket, Key="readable")["TagSet"]) == 1


# ---------------------------------------------------------------------------------------------
# Bucket tagging


def test_bucket_tags(s3, s3_other, bucket):
    assert_error(s3.get_bucket_tagging, "NoSuchTagSet", 404, Bucket=bucket)
    tags = tag_set(50)
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": tags})
    # Kept and answered by key, as RGW does.
    tags.sort(key=lambda t: t["Key"])
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == tags
    assert_error(s3.put_bucket_tagging, "InvalidTag", 400, Bucket=bucket,
                 Tagging={"TagSet": tag_set(51)})
    assert_error(s3_other.get_bucket_tagging, "AccessDenied", 403, Bucket=bucket)
    assert_error(s3_other.put_bucket_tagging, "AccessDenied", 403, Bucket=bucket,
                 Tagging={"TagSet": []})
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == tags
    resp = s3.delete_bucket_tagging(Bucket=bucket)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert_error(s3.get_bucket_tagging, "NoSuchTagSet", 404, Bucket=bucket)
    assert_error(s3.get_bucket_tagging, "NoSuchBucket", 404, Bucket=bucket + "-absent")


# ---------------------------------------------------------------------------------------------
# CORS


def test_cors_configuration_is_set_read_and_deleted(s3, s3_other, bucket):
    assert_error(s3.get_bucket_cors, "NoSuchCORSConfiguration", 404, Bucket=bucket)
    rules = [{"ID": "web", "AllowedHeaders": ["*"], "AllowedMethods": ["GET", "PUT"],
              "AllowedOrigins": ["https://*.example.com"], "ExposeHeaders": ["ETag"],
              "MaxAgeSeconds": 3000},
             {"AllowedMethods": ["HEAD"], "AllowedOrigins": ["*"]}]
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": rules})
    assert s3.get_bucket_cors(Bucket=bucket)["CORSRules"] == rules
    assert_error(s3_other.get_bucket_cors, "AccessDenied", 403, Bucket=bucket)
    assert_error(s3.put_bucket_cors, "InvalidRequest", 400, Bucket=bucket,
                 CORSConfiguration={"CORSRules": [
                     {"AllowedMethods": ["PATCH"], "AllowedOrigins": ["*"]}]})
    assert_error(s3.put_bucket_cors, "InvalidRequest", 400, Bucket=bucket,
                 CORSConfiguration={"CORSRules": [
                     {"AllowedMethods": ["GET"], "AllowedOrigins": ["*.*"]}]})
    assert s3.get_bucket_cors(Bucket=bucket)["CORSRules"] == rules
    resp = s3.delete_bucket_cors(Bucket=bucket)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert_error(s3.get_bucket_cors, "NoSuchCORSConfiguration", 404, Bucket=bucket)


def cors_headers(headers):
    return (headers.get("Access-Control-Allow-Origin"),
            headers.get("Access-Control-Allow-Methods"))


def test_cors_answers_requests_and_preflights_by_the_first_matching_rule(cloud, s3, bucket):
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    s3.put_object(Bucket=bucket, Key="page", Body=b"hello", ACL="public-read")
    url = f"{cloud.s3_url}/{bucket}/page"
    status, headers, _ = http_get(url, {"Origin": "foo.suffix"})
    assert (status, cors_headers(headers)) == (200, (None, None)), "no CORS configured yet"
    status, _, body = http_get(url, {"Origin": "foo.suffix", "Access-Control-Request-Method":
                                     "GET"}, method="OPTIONS")
    assert status == 403 and b"<Code>AccessForbidden</Code>" in body

    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": ORIGIN_RULES})
    for origin, allowed in [("foo.suffix", True), ("foo.bar", False),
                            ("foo.suffix.get", False), ("startend", True),
                            ("start1end", True), ("start12end", True),
                            ("0start12end", False), ("prefix", True),
                            ("prefix.suffix", True), ("bla.prefix", False),
                            ("foo.put", False)]:
        status, headers, body = http_get(url, {"Origin": origin})
        assert status == 200 and body == b"hello"
        want = (origin, "GET") if allowed else (None, None)
        assert cors_headers(headers) == want, origin
    # As RGW, a request naming Access-Control-Request-Method is matched for that method.
    status, headers, _ = http_get(url, {"Origin": "foo.put",
                                        "Access-Control-Request-Method": "PUT"})
    assert status == 200 and cors_headers(headers) == ("foo.put", "PUT")
    # The headers come with failures too: an anonymous PUT is refused, readably.
    status, headers, _ = http_get(url, {"Origin": "foo.put"}, method="PUT", data=b"x")
    assert status == 403 and cors_headers(headers) == ("foo.put", "PUT")

    preflight = lambda headers: http_get(url, headers, method="OPTIONS")
    status, _, body = preflight({"Origin": "foo.suffix"})
    assert status == 400 and b"<Code>BadRequest</Code>" in body
    status, _, body = preflight({"Access-Control-Request-Method": "GET"})
    assert status == 400
    for origin, method, want in [("foo.suffix", "GET", 200), ("foo.bar", "GET", 403),
                                 ("foo.suffix.get", "GET", 403), ("startend", "GET", 200),
                                 ("foo.put", "PUT", 200), ("foo.put", "GET", 403)]:
        status, headers, _ = preflight({"Origin": origin,
                                        "Access-Control-Request-Method": method})
        assert status == want, (origin, method)
        if want == 200:
            assert cors_headers(headers) == (origin, method)
            assert "Origin" in headers.get("Vary", "")


def test_cors_wildcards_headers_and_max_age(cloud, s3, bucket):
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [
        {"AllowedMethods": ["GET"], "AllowedOrigins": ["*"],
         "ExposeHeaders": ["x-amz-meta-header1"]},
        {"AllowedMethods": ["PUT"], "AllowedOrigins": ["https://app.example"],
         "AllowedHeaders": ["content-*", "x-amz-meta-*"], "MaxAgeSeconds": 600}]})
    url = f"{cloud.s3_url}/{bucket}/any"
    # A rule for any origin answers `*` (and the object need not exist for a preflight).
    status, headers, _ = http_get(url, {"Origin": "example.origin",
                                        "Access-Control-Request-Method": "GET"},
                                  method="OPTIONS")
    assert status == 200 and cors_headers(headers) == ("*", "GET")
    assert headers["Access-Control-Expose-Headers"] == "x-amz-meta-header1"
    # A header the rule does not allow fails the preflight.
    status, _, _ = http_get(url, {"Origin": "example.origin",
                                  "Access-Control-Request-Method": "GET",
                                  "Access-Control-Request-Headers": "x-amz-meta-header2"},
                            method="OPTIONS")
    assert status == 403
    status, headers, _ = http_get(url, {"Origin": "https://app.example",
                                        "Access-Control-Request-Method": "PUT",
                                        "Access-Control-Request-Headers":
                                            "Content-Type, X-Amz-Meta-Color"},
                                  method="OPTIONS")
    assert status == 200
    assert cors_headers(headers) == ("https://app.example", "PUT")
    assert headers["Access-Control-Allow-Headers"] == "Content-Type, X-Amz-Meta-Color"
    assert headers["Access-Control-Max-Age"] == "600"
    assert headers["Access-Control-Allow-Credentials"] == "true"
    # A preflight for a bucket that does not exist says so.
    status, _, body = http_get(f"{cloud.s3_url}/{bucket}-absent/any",
                               {"Origin": "o", "Access-Control-Request-Method": "GET"},
                               method="OPTIONS")
    assert status == 404 and b"NoSuchBucket" in body


def test_cors_applies_to_presigned_requests(cloud, s3, bucket):
    s3.put_object(Bucket=bucket, Key="shared", Body=b"presigned")
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [
        {"AllowedMethods": ["GET", "PUT"], "AllowedOrigins": ["https://app.example"]}]})
    get_url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "shared"})
    status, headers, body = http_get(get_url, {"Origin": "https://app.example"})
    assert status == 200 and body == b"presigned"
    assert cors_headers(headers) == ("https://app.example", "GET")
    # A preflight to the presigned URL is not checked as the request it prepares.
    status, headers, _ = http_get(get_url, {"Origin": "https://app.example",
                                            "Access-Control-Request-Method": "PUT"},
                                  method="OPTIONS")
    assert status == 200 and cors_headers(headers) == ("https://app.example", "PUT")
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "up"})
    status, headers, _ = http_get(put_url, {"Origin": "https://app.example"}, method="PUT",
                                  data=b"from a page")
    assert status == 200 and cors_headers(headers)[0] == "https://app.example"
    assert s3.get_object(Bucket=bucket, Key="up")["Body"].read() == b"from a page"


def test_tagging_and_cors_survive_a_restart(cloud_factory):
    from conftest import make_client
    c = cloud_factory()
    s3 = make_client(c.s3_url, c.region, c.access_key, c.secret_key)
    s3.create_bucket(Bucket="kept")
    s3.put_object(Bucket="kept", Key="k", Body=b"", Tagging="a=1")
    s3.put_bucket_tagging(Bucket="kept", Tagging={"TagSet": [{"Key": "b", "Value": "2"}]})
    s3.put_bucket_cors(Bucket="kept", CORSConfiguration={"CORSRules": [
        {"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]}]})
    c.stop()
    c.start()
    s3 = make_client(c.s3_url, c.region, c.access_key, c.secret_key)
    assert s3.get_object_tagging(Bucket="kept", Key="k")["TagSet"] == [{"Key": "a", "Value": "1"}]
    assert s3.get_bucket_tagging(Bucket="kept")["TagSet"] == [{"Key": "b", "Value": "2"}]
    assert s3.get_bucket_cors(Bucket="kept")["CORSRules"] == [
        {"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]}]
