"""Walrus' bucket policies, policy status and public access block through boto3, against
the real `koala up`: what a policy lets another account or an anonymous caller do, that an
explicit Deny wins over the ACLs and over the owner, the condition keys clients use, and how a
public access block narrows ACLs and policies."""

import json

import pytest

from conftest import assert_error


def policy(*statements):
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def statement(action, resource, principal=None, effect="Allow", condition=None):
    s = {"Effect": effect, "Principal": principal or {"AWS": "*"}, "Action": action,
         "Resource": resource}
    if condition:
        s["Condition"] = condition
    return s


def arns(bucket):
    return [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]


def status_of(fn, **kw):
    try:
        fn(**kw)
        return 200
    except Exception as e:  # botocore ClientError
        return e.response["ResponseMetadata"]["HTTPStatusCode"]


# ---------------------------------------------------------------------------------------------
# The policy API


def test_a_policy_is_put_read_back_verbatim_and_deleted(s3, s3_other, bucket):
    text = policy(statement("s3:ListBucket", arns(bucket)))
    assert " " in text
    resp = s3.put_bucket_policy(Bucket=bucket, Policy=text)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3.get_bucket_policy(Bucket=bucket)["Policy"] == text
    # Only the owner reads or changes it, whatever the policy grants.
    assert_error(s3_other.get_bucket_policy, "AccessDenied", 403, Bucket=bucket)
    assert_error(s3_other.put_bucket_policy, "AccessDenied", 403, Bucket=bucket, Policy=text)
    assert s3.delete_bucket_policy(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert_error(s3.get_bucket_policy, "NoSuchBucketPolicy", 404, Bucket=bucket)
    assert s3.delete_bucket_policy(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204


@pytest.mark.parametrize("text", [
    "not json",
    "[]",
    json.dumps({"Statement": []}),
    json.dumps({"Statement": [{"Principal": "*", "Action": "s3:*"}]}),
    json.dumps({"Statement": [{"Effect": "Allow", "Action": "s3:*"}]}),
    json.dumps({"Statement": [{"Effect": "Allow", "NotPrincipal": {"AWS": "1"},
                               "Action": "s3:*"}]}),
    json.dumps({"Statement": [{"Effect": "Allow", "Principal": "*",
                               "Action": "ec2:RunInstances"}]}),
    json.dumps({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                               "Condition": {"StringSortOf": {"s3:prefix": "a"}}}]}),
], ids=["not-json", "array", "no-statement", "no-effect", "no-principal",
        "allow-notprincipal", "not-s3", "unknown-operator"])
def test_malformed_policies_are_refused_and_change_nothing(s3, bucket, text):
    assert_error(s3.put_bucket_policy, "MalformedPolicy", 400, Bucket=bucket, Policy=text)
    assert_error(s3.get_bucket_policy, "NoSuchBucketPolicy", 404, Bucket=bucket)


# ---------------------------------------------------------------------------------------------
# Evaluation


def test_a_policy_grants_other_accounts_and_anonymous_callers(s3, s3_other, s3_anon, bucket):
    s3.put_object(Bucket=bucket, Key="public/a", Body=b"open")
    s3.put_object(Bucket=bucket, Key="private/b", Body=b"closed")
    assert_error(s3_other.list_objects, "AccessDenied", 403, Bucket=bucket)
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(
        statement("s3:ListBucket", f"arn:aws:s3:::{bucket}"),
        statement("s3:GetObject", f"arn:aws:s3:::{bucket}/public/*", principal="*")))
    assert [o["Key"] for o in s3_other.list_objects(Bucket=bucket)["Contents"]] == [
        "private/b", "public/a"]
    assert len(s3_other.list_objects_v2(Bucket=bucket)["Contents"]) == 2
    assert s3_anon.get_object(Bucket=bucket, Key="public/a")["Body"].read() == b"open"
    assert_error(s3_anon.get_object, "AccessDenied", 403, Bucket=bucket, Key="private/b")
    assert_error(s3_other.put_object, "AccessDenied", 403, Bucket=bucket, Key="public/c",
                 Body=b"")
    # A missing key is NoSuchKey to whoever may list the bucket.
    assert_error(s3_other.get_object, "NoSuchKey", 404, Bucket=bucket, Key="public/none")


def test_an_explicit_deny_wins_over_acls_and_the_owner(s3, s3_other, bucket, admin_id):
    s3.put_bucket_acl(Bucket=bucket, ACL="authenticated-read")
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert "Contents" in s3_other.list_objects(Bucket=bucket)
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(
        statement("s3:ListBucket", arns(bucket), effect="Deny"),
        statement("s3:PutObject", f"arn:aws:s3:::{bucket}/*", effect="Deny",
                  condition={"StringLike": {"s3:x-amz-acl": "public*"}})))
    assert_error(s3_other.list_objects, "AccessDenied", 403, Bucket=bucket)
    assert_error(s3.list_objects_v2, "AccessDenied", 403, Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="private", Body=b"")
    assert_error(s3.put_object, "AccessDenied", 403, Bucket=bucket, Key="public", Body=b"",
                 ACL="public-read")
    # What the Deny does not name still works, and the owner can always lift it.
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"
    s3.delete_bucket_policy(Bucket=bucket)
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    assert "Contents" in s3.list_objects_v2(Bucket=bucket)
    # A policy that denies the policy calls themselves cannot lock the owner out.
    deny_all = policy(statement(["s3:GetBucketPolicy", "s3:PutBucketPolicy",
                                 "s3:DeleteBucketPolicy"], arns(bucket), effect="Deny"))
    s3.put_bucket_policy(Bucket=bucket, Policy=deny_all)
    assert s3.get_bucket_policy(Bucket=bucket)["Policy"] == deny_all
    s3.delete_bucket_policy(Bucket=bucket)


def test_policy_conditions_on_tags_headers_and_copy_sources(s3, s3_other, bucket, admin_id):
    for key, tags in (("publictag", "security=public&foo=bar"),
                      ("privatetag", "security=private"), ("invalidtag", "security1=public")):
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode(), Tagging=tags)
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(
        statement("s3:GetObject", f"arn:aws:s3:::{bucket}/*",
                  condition={"StringEquals": {"s3:ExistingObjectTag/security": "public"}}),
        statement("s3:PutObjectTagging", f"arn:aws:s3:::{bucket}/*",
                  condition={"StringEquals": {"s3:ExistingObjectTag/security": "public"}}),
        statement("s3:PutObject", f"arn:aws:s3:::{bucket}/copies/*",
                  condition={"StringLike": {"s3:x-amz-copy-source": f"{bucket}/public*"},
                             "StringEquals": {"s3:x-amz-metadata-directive": "COPY"}})))
    assert s3_other.get_object(Bucket=bucket, Key="publictag")["Body"].read() == b"publictag"
    for key in ("privatetag", "invalidtag"):
        assert_error(s3_other.get_object, "AccessDenied", 403, Bucket=bucket, Key=key)
    # The condition reads the tags as they were before the request.
    s3_other.put_object_tagging(Bucket=bucket, Key="publictag",
                                Tagging={"TagSet": [{"Key": "security", "Value": "private"}]})
    assert_error(s3_other.put_object_tagging, "AccessDenied", 403, Bucket=bucket,
                 Key="publictag",
                 Tagging={"TagSet": [{"Key": "security", "Value": "public"}]})
    assert_error(s3_other.get_object, "AccessDenied", 403, Bucket=bucket, Key="publictag")

    s3.put_object(Bucket=bucket, Key="public-src", Body=b"src")
    s3.put_object(Bucket=bucket, Key="secret-src", Body=b"no")
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(
        statement("s3:GetObject", f"arn:aws:s3:::{bucket}/*"),
        statement("s3:PutObject", f"arn:aws:s3:::{bucket}/copies/*",
                  condition={"StringLike": {"s3:x-amz-copy-source": f"{bucket}/public*"},
                             "StringEquals": {"s3:x-amz-metadata-directive": "COPY"}})))
    s3_other.copy_object(Bucket=bucket, Key="copies/1", MetadataDirective="COPY",
                         CopySource={"Bucket": bucket, "Key": "public-src"})
    assert s3_other.get_object(Bucket=bucket, Key="copies/1")["Body"].read() == b"src"
    assert_error(s3_other.copy_object, "AccessDenied", 403, Bucket=bucket, Key="copies/2",
                 MetadataDirective="COPY",
                 CopySource={"Bucket": bucket, "Key": "secret-src"})
    assert_error(s3_other.copy_object, "AccessDenied", 403, Bucket=bucket, Key="copies/3",
                 CopySource={"Bucket": bucket, "Key": "public-src"})


def test_policy_conditions_on_the_source_address(s3, s3_anon, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"local")
    for network, status in (("127.0.0.0/8", 200), ("10.0.0.0/8", 403)):
        s3.put_bucket_policy(Bucket=bucket, Policy=policy(
            statement("s3:GetObject", f"arn:aws:s3:::{bucket}/*", principal="*",
                      condition={"IpAddress": {"aws:SourceIp": network}})))
        assert status_of(s3_anon.get_object, Bucket=bucket, Key="k") == status, network
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(
        statement("s3:GetObject", f"arn:aws:s3:::{bucket}/*", principal="*",
                  condition={"NotIpAddress": {"aws:SourceIp": "127.0.0.1/32"}})))
    assert status_of(s3_anon.get_object, Bucket=bucket, Key="k") == 403


def test_a_policy_on_one_key_lets_another_account_upload_it_in_parts(s3, s3_other, bucket):
    assert_error(s3_other.create_multipart_upload, "AccessDenied", 403, Bucket=bucket,
                 Key="mpobj")
    # The bucket's ARN alone does not cover its objects.
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(
        statement("s3:PutObject", f"arn:aws:s3:::{bucket}")))
    assert_error(s3_other.create_multipart_upload, "AccessDenied", 403, Bucket=bucket,
                 Key="mpobj")
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(
        statement("s3:PutObject", f"arn:aws:s3:::{bucket}/mpobj")))
    up = s3_other.create_multipart_upload(Bucket=bucket, Key="mpobj")["UploadId"]
    etag = s3_other.upload_part(Bucket=bucket, Key="mpobj", UploadId=up, PartNumber=1,
                                Body=b"part")["ETag"]
    s3_other.complete_multipart_upload(
        Bucket=bucket, Key="mpobj", UploadId=up,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert_error(s3_other.create_multipart_upload, "AccessDenied", 403, Bucket=bucket,
                 Key="other")
    # The uploader owns what it wrote; the bucket owner reads it only if granted.
    assert s3_other.get_object(Bucket=bucket, Key="mpobj")["Body"].read() == b"part"


# ---------------------------------------------------------------------------------------------
# Policy status and public access block


def test_policy_status_says_whether_acl_or_policy_make_a_bucket_public(s3, bucket):
    def public():
        return s3.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"]

    assert public() is False
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(
        statement("s3:ListBucket", arns(bucket),
                  condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/32"}})))
    assert public() is False
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(
        statement("s3:ListBucket", arns(bucket),
                  principal={"AWS": "arn:aws:iam::s3tenant1:root"})))
    assert public() is False
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(statement("s3:ListBucket", arns(bucket))))
    assert public() is True
    s3.delete_bucket_policy(Bucket=bucket)
    for acl in ("public-read", "authenticated-read"):
        s3.put_bucket_acl(Bucket=bucket, ACL=acl)
        assert public() is True
    s3.put_bucket_acl(Bucket=bucket, ACL="private")
    assert public() is False


def test_public_access_block_configuration(s3, s3_other, bucket):
    assert s3.delete_public_access_block(
        Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert_error(s3.get_public_access_block, "NoSuchPublicAccessBlockConfiguration", 404,
                 Bucket=bucket)
    conf = {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
            "RestrictPublicBuckets": False}
    resp = s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=conf)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"] == conf
    assert_error(s3_other.get_public_access_block, "AccessDenied", 403, Bucket=bucket)
    # A Deny is no public policy: it may be put, and it binds the owner too.
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(
        statement("s3:GetBucketPublicAccessBlock", f"arn:aws:s3:::{bucket}", effect="Deny")))
    assert_error(s3.get_public_access_block, "AccessDenied", 403, Bucket=bucket)
    s3.delete_bucket_policy(Bucket=bucket)
    s3.delete_public_access_block(Bucket=bucket)
    assert_error(s3.get_public_access_block, "NoSuchPublicAccessBlockConfiguration", 404,
                 Bucket=bucket)


def test_blocked_public_acls_and_policies_are_refused(s3, bucket):
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "BlockPublicPolicy": True})
    for acl in ("public-read", "public-read-write", "authenticated-read"):
        assert_error(s3.put_bucket_acl, "AccessDenied", 403, Bucket=bucket, ACL=acl)
        assert_error(s3.put_object, "AccessDenied", 403, Bucket=bucket, Key="k", Body=b"",
                     ACL=acl)
        assert_error(s3.create_multipart_upload, "AccessDenied", 403, Bucket=bucket, Key="m",
                     ACL=acl)
    assert_error(s3.put_object, "AccessDenied", 403, Bucket=bucket, Key="g", Body=b"",
                 GrantRead='uri="http://acs.amazonaws.com/groups/global/AllUsers"')
    s3.put_object(Bucket=bucket, Key="k", Body=b"", ACL="private")
    assert_error(s3.put_object_acl, "AccessDenied", 403, Bucket=bucket, Key="k",
                 ACL="public-read")
    public = policy(statement("s3:GetObject", f"arn:aws:s3:::{bucket}/*"))
    assert_error(s3.put_bucket_policy, "AccessDenied", 403, Bucket=bucket, Policy=public)
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(
        statement("s3:GetObject", f"arn:aws:s3:::{bucket}/*",
                  principal={"AWS": "arn:aws:iam::s3tenant1:root"})))


def test_ignored_public_acls_and_restricted_public_policies(s3, s3_other, s3_anon, bucket):
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    s3.put_object(Bucket=bucket, Key="key1", Body=b"abcde", ACL="public-read")
    assert "Contents" in s3_other.list_objects(Bucket=bucket)
    assert s3_anon.get_object(Bucket=bucket, Key="key1")["Body"].read() == b"abcde"
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
        "IgnorePublicAcls": True})
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    assert_error(s3_other.list_objects, "AccessDenied", 403, Bucket=bucket)
    assert_error(s3_other.get_object, "AccessDenied", 403, Bucket=bucket, Key="key1")
    assert_error(s3_anon.get_object, "AccessDenied", 403, Bucket=bucket, Key="key1")
    s3.delete_public_access_block(Bucket=bucket)

    s3.put_bucket_acl(Bucket=bucket, ACL="private")
    s3.put_object(Bucket=bucket, Key="foo", Body=b"bar")
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(
        statement("s3:GetObject", f"arn:aws:s3:::{bucket}/*")))
    assert s3_anon.get_object(Bucket=bucket, Key="foo")["Body"].read() == b"bar"
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
        "RestrictPublicBuckets": True})
    assert_error(s3_anon.get_object, "AccessDenied", 403, Bucket=bucket, Key="foo")
    assert_error(s3_other.get_object, "AccessDenied", 403, Bucket=bucket, Key="foo")
    assert s3.get_object(Bucket=bucket, Key="foo")["Body"].read() == b"bar"


# ---------------------------------------------------------------------------------------------
# Ownership controls


def test_ownership_controls_configuration(s3, s3_other, bucket):
    assert_error(s3.get_bucket_ownership_controls, "OwnershipControlsNotFoundError", 404,
                 Bucket=bucket)
    for ownership in ("BucketOwnerPreferred", "ObjectWriter", "BucketOwnerEnforced"):
        s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls={
            "Rules": [{"ObjectOwnership": ownership}]})
        assert s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"] == {
            "Rules": [{"ObjectOwnership": ownership}]}
    assert_error(s3_other.get_bucket_ownership_controls, "AccessDenied", 403, Bucket=bucket)
    assert_error(s3.put_bucket_ownership_controls, "MalformedXML", 400, Bucket=bucket,
                 OwnershipControls={"Rules": [{"ObjectOwnership": "Nobody"}]})
    resp = s3.delete_bucket_ownership_controls(Bucket=bucket)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert_error(s3.get_bucket_ownership_controls, "OwnershipControlsNotFoundError", 404,
                 Bucket=bucket)
    # ACLs cannot be turned off while the bucket's ACL grants to others.
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    assert_error(s3.put_bucket_ownership_controls, "InvalidBucketAclWithObjectOwnership", 400,
                 Bucket=bucket,
                 OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]})


def test_bucket_owner_enforced_turns_acls_off(s3, s3_other, bucket, admin_id, other_id):
    s3.put_bucket_acl(Bucket=bucket, GrantWrite=f"id={other_id}", GrantRead=f"id={other_id}")
    s3_other.put_object(Bucket=bucket, Key="theirs", Body=b"x")
    assert s3_other.get_object_acl(Bucket=bucket, Key="theirs")["Owner"]["ID"] == other_id
    s3.put_bucket_acl(Bucket=bucket, ACL="private")
    s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls={
        "Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]})
    # No ACL but the owner's full control is taken; ACLs already there grant nothing.
    for acl in ("public-read", "authenticated-read", "private"):
        assert_error(s3.put_object, "AccessControlListNotSupported", 400, Bucket=bucket,
                     Key="k", Body=b"", ACL=acl)
    assert_error(s3.put_bucket_acl, "AccessControlListNotSupported", 400, Bucket=bucket,
                 ACL="public-read")
    s3.put_object(Bucket=bucket, Key="k", Body=b"", ACL="bucket-owner-full-control")
    s3.put_object(Bucket=bucket, Key="k2", Body=b"")
    assert s3.get_object_acl(Bucket=bucket, Key="k2")["Owner"]["ID"] == admin_id
    # The bucket owner reads what another account wrote; its writer no longer does.
    assert s3.get_object(Bucket=bucket, Key="theirs")["Body"].read() == b"x"
    assert_error(s3_other.get_object, "AccessDenied", 403, Bucket=bucket, Key="theirs")
    # A policy still grants.
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(
        statement("s3:PutObject", f"arn:aws:s3:::{bucket}/*",
                  principal={"AWS": f"arn:aws:iam::{other_id}:root"})))
    s3_other.put_object(Bucket=bucket, Key="new", Body=b"y")
    assert s3.get_object_acl(Bucket=bucket, Key="new")["Owner"]["ID"] == admin_id


def test_bucket_owner_preferred_takes_objects_written_for_it(s3, s3_other, bucket, admin_id,
                                                             other_id):
    s3.put_bucket_acl(Bucket=bucket, GrantWrite=f"id={other_id}")
    s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls={
        "Rules": [{"ObjectOwnership": "BucketOwnerPreferred"}]})
    s3_other.put_object(Bucket=bucket, Key="given", Body=b"", ACL="bucket-owner-full-control")
    s3_other.put_object(Bucket=bucket, Key="kept", Body=b"")
    assert s3.get_object_acl(Bucket=bucket, Key="given")["Owner"]["ID"] == admin_id
    assert s3_other.get_object_acl(Bucket=bucket, Key="kept")["Owner"]["ID"] == other_id
    made = f"{bucket[:40]}-enf"
    s3.create_bucket(Bucket=made, ObjectOwnership="BucketOwnerEnforced")
    try:
        assert s3.get_bucket_ownership_controls(Bucket=made)["OwnershipControls"][
            "Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    finally:
        s3.delete_bucket(Bucket=made)
