"""Walrus' object lock through boto3, against the real `koala up`: buckets made with lock
(versioned from the start), lock configurations with default retention, retention and legal
hold of each version, what they refuse (deleting a locked version, loosening a retention)
and what bypasses a governance retention."""

import datetime
import json
import time

import pytest

from conftest import assert_error, unique_bucket

UTC = datetime.timezone.utc
LATER = datetime.datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def locked(s3):
    """A bucket made with object lock; its versions are deleted with bypass at the end."""
    name = unique_bucket("locked")
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    yield name
    page = s3.list_object_versions(Bucket=name)
    for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
        try:
            s3.put_object_legal_hold(Bucket=name, Key=v["Key"], VersionId=v["VersionId"],
                                     LegalHold={"Status": "OFF"})
        except Exception:
            pass
        s3.delete_object(Bucket=name, Key=v["Key"], VersionId=v["VersionId"],
                         BypassGovernanceRetention=True)
    s3.delete_bucket(Bucket=name)


def test_a_bucket_made_with_lock_versions_and_takes_configurations(s3, locked):
    assert s3.get_bucket_versioning(Bucket=locked)["Status"] == "Enabled"
    assert s3.get_object_lock_configuration(Bucket=locked)["ObjectLockConfiguration"] == {
        "ObjectLockEnabled": "Enabled"}
    conf = {"ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}}
    resp = s3.put_object_lock_configuration(Bucket=locked, ObjectLockConfiguration=conf)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert s3.get_object_lock_configuration(
        Bucket=locked)["ObjectLockConfiguration"] == conf
    s3.put_object_lock_configuration(Bucket=locked, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Years": 1}}})
    assert_error(s3.put_bucket_versioning, "InvalidBucketState", 409, Bucket=locked,
                 VersioningConfiguration={"Status": "Suspended"})
    for rule, code in (({"Mode": "GOVERNANCE", "Days": 1, "Years": 1}, "MalformedXML"),
                       ({"Mode": "GOVERNANCE", "Days": 0}, "InvalidRetentionPeriod"),
                       ({"Mode": "GOVERNANCE", "Years": -1}, "InvalidRetentionPeriod"),
                       ({"Mode": "governance", "Days": 1}, "MalformedXML"),
                       ({"Mode": "abc", "Days": 1}, "MalformedXML")):
        assert_error(s3.put_object_lock_configuration, code, 400, Bucket=locked,
                     ObjectLockConfiguration={"ObjectLockEnabled": "Enabled",
                                              "Rule": {"DefaultRetention": rule}})
    assert_error(s3.put_object_lock_configuration, "MalformedXML", 400, Bucket=locked,
                 ObjectLockConfiguration={"ObjectLockEnabled": "Disabled"})


def test_lock_needs_versioning_enabled(s3, bucket):
    conf = {"ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}}
    assert_error(s3.get_object_lock_configuration, "ObjectLockConfigurationNotFoundError", 404,
                 Bucket=bucket)
    assert_error(s3.put_object_lock_configuration, "InvalidBucketState", 409, Bucket=bucket,
                 ObjectLockConfiguration=conf)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    assert_error(s3.put_object_lock_configuration, "InvalidBucketState", 409, Bucket=bucket,
                 ObjectLockConfiguration=conf)
    s3.put_object(Bucket=bucket, Key="k", Body=b"")
    for call, kw in ((s3.put_object_retention,
                      {"Retention": {"Mode": "GOVERNANCE", "RetainUntilDate": LATER}}),
                     (s3.get_object_retention, {}),
                     (s3.put_object_legal_hold, {"LegalHold": {"Status": "ON"}}),
                     (s3.get_object_legal_hold, {})):
        assert_error(call, "InvalidRequest", 400, Bucket=bucket, Key="k", **kw)
    assert_error(s3.put_object, "InvalidRequest", 400, Bucket=bucket, Key="k2", Body=b"",
                 ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=LATER)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration=conf)
    assert s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"] == conf


def test_retention_is_kept_per_version_and_only_lengthened(s3, locked):
    v1 = s3.put_object(Bucket=locked, Key="k", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket=locked, Key="k", Body=b"two")["VersionId"]
    assert_error(s3.get_object_retention, "NoSuchObjectLockConfiguration", 404, Bucket=locked,
                 Key="k")
    jan3 = datetime.datetime(2030, 1, 3, tzinfo=UTC)
    s3.put_object_retention(Bucket=locked, Key="k", VersionId=v1,
                            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": LATER})
    assert s3.get_object_retention(Bucket=locked, Key="k", VersionId=v1)["Retention"] == {
        "Mode": "GOVERNANCE", "RetainUntilDate": LATER}
    assert_error(s3.get_object_retention, "NoSuchObjectLockConfiguration", 404, Bucket=locked,
                 Key="k", VersionId=v2)
    s3.put_object_retention(Bucket=locked, Key="k", VersionId=v1,
                            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": jan3})
    assert_error(s3.put_object_retention, "AccessDenied", 403, Bucket=locked, Key="k",
                 VersionId=v1, Retention={"Mode": "GOVERNANCE", "RetainUntilDate": LATER})
    s3.put_object_retention(Bucket=locked, Key="k", VersionId=v1,
                            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": LATER},
                            BypassGovernanceRetention=True)
    assert s3.get_object_retention(Bucket=locked, Key="k", VersionId=v1)["Retention"][
        "RetainUntilDate"] == LATER
    # A far date, and one with microseconds, read back equal; HEAD says the same.
    far = datetime.datetime(2140, 1, 1, tzinfo=UTC)
    s3.put_object_retention(Bucket=locked, Key="k", VersionId=v2,
                            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": far})
    assert s3.get_object_retention(Bucket=locked, Key="k", VersionId=v2)["Retention"][
        "RetainUntilDate"] == far
    soon = datetime.datetime.now(UTC).replace(microsecond=123456) + datetime.timedelta(days=365)
    v3 = s3.put_object(Bucket=locked, Key="k", Body=b"three")["VersionId"]
    s3.put_object_retention(Bucket=locked, Key="k", VersionId=v3,
                            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": soon})
    head = s3.head_object(Bucket=locked, Key="k", VersionId=v3)
    assert head["ObjectLockMode"] == "GOVERNANCE" and head["ObjectLockRetainUntilDate"] == soon
    for mode in ("governance", "abc"):
        assert_error(s3.put_object_retention, "MalformedXML", 400, Bucket=locked, Key="k",
                     Retention={"Mode": mode, "RetainUntilDate": LATER})
    past = datetime.datetime(2020, 1, 1, tzinfo=UTC)
    assert_error(s3.put_object_retention, "InvalidArgument", 400, Bucket=locked, Key="k",
                 Retention={"Mode": "GOVERNANCE", "RetainUntilDate": past})


def test_compliance_holds_whoever_asks_and_governance_yields_to_bypass(s3, locked):
    until = datetime.datetime.now(UTC) + datetime.timedelta(seconds=8)
    g = s3.put_object(Bucket=locked, Key="g", Body=b"", ObjectLockMode="GOVERNANCE",
                      ObjectLockRetainUntilDate=until)["VersionId"]
    c = s3.put_object(Bucket=locked, Key="c", Body=b"", ObjectLockMode="COMPLIANCE",
                      ObjectLockRetainUntilDate=until)["VersionId"]
    same = {"RetainUntilDate": until}
    assert_error(s3.put_object_retention, "AccessDenied", 403, Bucket=locked, Key="g",
                 VersionId=g, Retention={"Mode": "COMPLIANCE", **same})
    assert_error(s3.put_object_retention, "AccessDenied", 403, Bucket=locked, Key="c",
                 VersionId=c, Retention={"Mode": "GOVERNANCE", **same},
                 BypassGovernanceRetention=True)
    for key, vid in (("g", g), ("c", c)):
        assert_error(s3.delete_object, "AccessDenied", 403, Bucket=locked, Key=key,
                     VersionId=vid)
    assert_error(s3.delete_object, "AccessDenied", 403, Bucket=locked, Key="c", VersionId=c,
                 BypassGovernanceRetention=True)
    s3.delete_object(Bucket=locked, Key="g", VersionId=g, BypassGovernanceRetention=True)
    # Once the date passes, the lock is gone.
    time.sleep(max(0.0, (until - datetime.datetime.now(UTC)).total_seconds()) + 1)
    s3.delete_object(Bucket=locked, Key="c", VersionId=c)


def test_locked_versions_survive_deletes_until_released(s3, s3_other, locked):
    v = s3.put_object(Bucket=locked, Key="k", Body=b"kept", ObjectLockMode="GOVERNANCE",
                      ObjectLockRetainUntilDate=LATER, ObjectLockLegalHoldStatus="ON")["VersionId"]
    head = s3.head_object(Bucket=locked, Key="k")
    assert (head["ObjectLockMode"], head["ObjectLockRetainUntilDate"],
            head["ObjectLockLegalHoldStatus"], head["VersionId"]) == ("GOVERNANCE", LATER,
                                                                       "ON", v)
    # A delete without a version puts a marker; the marker is never locked.
    marker = s3.delete_object(Bucket=locked, Key="k")["VersionId"]
    assert_error(s3.delete_object, "AccessDenied", 403, Bucket=locked, Key="k", VersionId=v,
                 BypassGovernanceRetention=True)
    s3.delete_object(Bucket=locked, Key="k", VersionId=marker)
    s3.put_object_legal_hold(Bucket=locked, Key="k", VersionId=v, LegalHold={"Status": "OFF"})
    assert s3.get_object_legal_hold(Bucket=locked, Key="k",
                                    VersionId=v)["LegalHold"] == {"Status": "OFF"}
    assert_error(s3.put_object_legal_hold, "MalformedXML", 400, Bucket=locked, Key="k",
                 LegalHold={"Status": "abc"})
    assert_error(s3.delete_object, "AccessDenied", 403, Bucket=locked, Key="k", VersionId=v)
    # Only the owner may bypass.
    assert_error(s3_other.delete_object, "AccessDenied", 403, Bucket=locked, Key="k",
                 VersionId=v, BypassGovernanceRetention=True)
    assert s3.get_object(Bucket=locked, Key="k")["Body"].read() == b"kept"

    # DeleteObjects says which keys are locked, with their versions.
    free = s3.put_object(Bucket=locked, Key="free", Body=b"")["VersionId"]
    resp = s3.delete_objects(Bucket=locked, Delete={"Objects": [
        {"Key": "k", "VersionId": v}, {"Key": "free", "VersionId": free}]})
    assert [(d["Key"], d["VersionId"]) for d in resp["Deleted"]] == [("free", free)]
    assert [(e["Key"], e["VersionId"], e["Code"]) for e in resp["Errors"]] == [
        ("k", v, "AccessDenied")]
    resp = s3.delete_objects(Bucket=locked, BypassGovernanceRetention=True,
                             Delete={"Objects": [{"Key": "k", "VersionId": v}]})
    assert "Errors" not in resp and resp["Deleted"][0]["VersionId"] == v


def test_default_retention_and_multipart_uploads_lock_new_versions(s3, locked):
    s3.put_object_lock_configuration(Bucket=locked, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
    v = s3.put_object(Bucket=locked, Key="d", Body=b"")["VersionId"]
    r = s3.get_object_retention(Bucket=locked, Key="d", VersionId=v)["Retention"]
    in_a_day = datetime.datetime.now(UTC) + datetime.timedelta(days=1)
    assert r["Mode"] == "GOVERNANCE"
    assert abs((r["RetainUntilDate"] - in_a_day).total_seconds()) < 120
    # Lengthening it needs no bypass.
    s3.put_object_retention(Bucket=locked, Key="d", VersionId=v,
                            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": LATER})

    up = s3.create_multipart_upload(Bucket=locked, Key="mp", ObjectLockLegalHoldStatus="ON",
                                    ObjectLockMode="GOVERNANCE",
                                    ObjectLockRetainUntilDate=LATER)["UploadId"]
    etag = s3.upload_part(Bucket=locked, Key="mp", UploadId=up, PartNumber=1,
                          Body=b"part")["ETag"]
    done = s3.complete_multipart_upload(
        Bucket=locked, Key="mp", UploadId=up,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    head = s3.head_object(Bucket=locked, Key="mp", VersionId=done["VersionId"])
    assert head["ObjectLockMode"] == "GOVERNANCE"
    assert head["ObjectLockRetainUntilDate"] == LATER
    assert head["ObjectLockLegalHoldStatus"] == "ON"
    # A legal hold holds even against a bypass.
    assert_error(s3.delete_object, "AccessDenied", 403, Bucket=locked, Key="mp",
                 VersionId=done["VersionId"], BypassGovernanceRetention=True)


def test_locks_are_the_bucket_owners_to_set_and_to_bypass(s3, s3_other, locked, other_id):
    s3.put_bucket_acl(Bucket=locked, GrantWrite=f"id={other_id}")
    # Another account may write, not lock what it writes.
    assert_error(s3_other.put_object, "AccessDenied", 403, Bucket=locked, Key="x", Body=b"",
                 ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=LATER)
    assert_error(s3_other.put_object, "AccessDenied", 403, Bucket=locked, Key="x", Body=b"",
                 ObjectLockLegalHoldStatus="ON")
    s3_other.put_object(Bucket=locked, Key="x", Body=b"")
    # The owner's bypass yields to a Deny of its own policy on the objects.
    v = s3.put_object(Bucket=locked, Key="g", Body=b"", ObjectLockMode="GOVERNANCE",
                      ObjectLockRetainUntilDate=LATER)["VersionId"]
    s3.put_bucket_policy(Bucket=locked, Policy=json.dumps({"Statement": [{
        "Effect": "Deny", "Principal": "*", "Action": "s3:BypassGovernanceRetention",
        "Resource": f"arn:aws:s3:::{locked}/*"}]}))
    assert_error(s3.delete_object, "AccessDenied", 403, Bucket=locked, Key="g", VersionId=v,
                 BypassGovernanceRetention=True)
    s3.delete_bucket_policy(Bucket=locked)
    s3.delete_object(Bucket=locked, Key="g", VersionId=v, BypassGovernanceRetention=True)
