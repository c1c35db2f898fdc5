"""Walrus through the aws CLI (v1): `aws s3` high-level commands and `aws s3api` multipart by
hand, run with the admin eucarc's environment against the /services/Walrus endpoint."""

import filecmp
import json
import os
import re

import pytest

from conftest import (
    assert_error, empty_and_delete, etag_of, http_get, multipart_etag, unique_bucket, xml_code,
)

MiB = 1024 * 1024


@pytest.fixture
def cli_bucket(aws, s3, request):
    name = unique_bucket("cli-" + request.node.name)
    out = aws("s3", "mb", f"s3://{name}")
    assert f"make_bucket: {name}" in out.stdout
    yield name
    empty_and_delete(s3, name)


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def tree(root):
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            out[os.path.relpath(p, root)] = read(p)
    return out


def test_mb_ls_rb(aws, s3, tmp_path):
    name = unique_bucket("cli-mb")
    aws("s3", "mb", f"s3://{name}")
    try:
        assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]
        listing = aws("s3", "ls").stdout
        assert re.search(rf"^\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d {re.escape(name)}$", listing, re.M), \
            listing
        write(str(tmp_path / "f"), b"x")
        aws("s3", "cp", str(tmp_path / "f"), f"s3://{name}/f")
        refused = aws("s3", "rb", f"s3://{name}", check=False)
        assert refused.returncode != 0
        assert "BucketNotEmpty" in refused.stderr
        aws("s3", "rb", f"s3://{name}", "--force")
        assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
        assert name not in aws("s3", "ls").stdout
    finally:
        empty_and_delete(s3, name)


def test_mb_existing_bucket_of_other_account_fails(aws, s3_other, tmp_path):
    name = unique_bucket("cli-taken")
    s3_other.create_bucket(Bucket=name)
    try:
        out = aws("s3", "mb", f"s3://{name}", check=False)
        assert out.returncode != 0
        assert "BucketAlreadyExists" in out.stderr
    finally:
        s3_other.delete_bucket(Bucket=name)


def test_mb_invalid_name_fails(aws):
    out = aws("s3", "mb", "s3://Bad_Name", check=False)
    assert out.returncode != 0
    assert "InvalidBucketName" in out.stderr


def test_cp_small_file_up_and_down(aws, s3, cli_bucket, tmp_path):
    data = os.urandom(1000)
    src, dst = tmp_path / "small.bin", tmp_path / "back.bin"
    write(str(src), data)
    out = aws("s3", "cp", str(src), f"s3://{cli_bucket}/dir/small.bin")
    assert re.search(rf"^upload: \S*small\.bin to s3://{cli_bucket}/dir/small\.bin$", out.stdout,
                     re.M), out.stdout
    head = s3.head_object(Bucket=cli_bucket, Key="dir/small.bin")
    assert head["ContentLength"] == 1000 and head["ETag"] == etag_of(data)
    aws("s3", "cp", f"s3://{cli_bucket}/dir/small.bin", str(dst))
    assert read(str(dst)) == data


def test_cp_20_mib_file_is_multipart(aws, s3, cli_bucket, tmp_path):
    data = os.urandom(20 * MiB)
    src, dst = tmp_path / "big.bin", tmp_path / "big.back"
    write(str(src), data)
    aws("s3", "cp", str(src), f"s3://{cli_bucket}/big.bin")
    head = s3.head_object(Bucket=cli_bucket, Key="big.bin")
    assert head["ContentLength"] == len(data)
    # The CLI's default chunk is 8 MiB: three parts.
    chunk = 8 * MiB
    assert head["ETag"] == multipart_etag([data[i:i + chunk] for i in range(0, len(data), chunk)])
    aws("s3", "cp", f"s3://{cli_bucket}/big.bin", str(dst))
    assert filecmp.cmp(str(src), str(dst), shallow=False)
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=cli_bucket)


def test_cp_stdin_and_stdout(aws, cli_bucket):
    aws("s3", "cp", "-", f"s3://{cli_bucket}/from-stdin", input="streamed text\n")
    out = aws("s3", "cp", f"s3://{cli_bucket}/from-stdin", "-")
    assert out.stdout == "streamed text\n"


def test_cp_with_acl_and_metadata(aws, s3, cli_bucket, tmp_path):
    write(str(tmp_path / "p.txt"), b"public text")
    aws("s3", "cp", str(tmp_path / "p.txt"), f"s3://{cli_bucket}/p.txt", "--acl", "public-read",
        "--content-type", "text/x-test", "--metadata", "origin=cli")
    head = s3.head_object(Bucket=cli_bucket, Key="p.txt")
    assert head["ContentType"] == "text/x-test"
    assert head["Metadata"] == {"origin": "cli"}
    st, _, body = http_get(f"{aws.cloud.s3_url}/{cli_bucket}/p.txt")
    assert (st, body) == (200, b"public text")


def test_cp_missing_object_fails(aws, cli_bucket, tmp_path):
    out = aws("s3", "cp", f"s3://{cli_bucket}/absent", str(tmp_path / "x"), check=False)
    assert out.returncode != 0
    assert "404" in out.stderr or "Not Found" in out.stderr
    assert not (tmp_path / "x").exists()


def test_mv_and_server_side_copy(aws, s3, cli_bucket, tmp_path):
    write(str(tmp_path / "m"), b"move me")
    aws("s3", "cp", str(tmp_path / "m"), f"s3://{cli_bucket}/a/m")
    aws("s3", "cp", f"s3://{cli_bucket}/a/m", f"s3://{cli_bucket}/b/copy")
    aws("s3", "mv", f"s3://{cli_bucket}/a/m", f"s3://{cli_bucket}/c/moved")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=cli_bucket)["Contents"]]
    assert keys == ["b/copy", "c/moved"]
    assert s3.get_object(Bucket=cli_bucket, Key="c/moved")["Body"].read() == b"move me"


def _make_tree(root):
    files = {
        "top.txt": b"top",
        "sub/one.txt": b"one" * 100,
        "sub/deeper/two.bin": os.urandom(70000),
        "sub/deeper/three.txt": b"",
        "other dir/with space.txt": b"spaces",
        "ünï/ça.txt": "unicode".encode(),
    }
    for rel, data in files.items():
        write(os.path.join(root, rel), data)
    return files


def test_sync_up_ls_and_down(aws, s3, cli_bucket, tmp_path):
    up, down = tmp_path / "up", tmp_path / "down"
    files = _make_tree(str(up))
    out = aws("s3", "sync", str(up), f"s3://{cli_bucket}/tree")
    assert out.stdout.count("upload:") == len(files)
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=cli_bucket)["Contents"])
    assert keys == sorted(f"tree/{k}" for k in files)

    # A second sync finds nothing to do.
    again = aws("s3", "sync", str(up), f"s3://{cli_bucket}/tree")
    assert "upload:" not in again.stdout, again.stdout

    listing = aws("s3", "ls", "--recursive", f"s3://{cli_bucket}").stdout
    for k, data in files.items():
        assert re.search(rf"\s{len(data)} tree/{re.escape(k)}$", listing, re.M), (k, listing)

    top = aws("s3", "ls", f"s3://{cli_bucket}/tree/").stdout
    assert re.search(r"^\s+PRE sub/$", top, re.M), top
    assert re.search(r"^\s+PRE other dir/$", top, re.M), top
    assert re.search(r"\s3 top\.txt$", top, re.M), top
    sub = aws("s3", "ls", f"s3://{cli_bucket}/tree/sub/").stdout
    assert re.search(r"^\s+PRE deeper/$", sub, re.M) and "one.txt" in sub
    assert "top.txt" not in sub
    prefix = aws("s3", "ls", f"s3://{cli_bucket}/tree/sub/deeper/t").stdout
    assert "two.bin" in prefix and "three.txt" in prefix and "one.txt" not in prefix

    aws("s3", "sync", f"s3://{cli_bucket}/tree", str(down))
    assert tree(str(down)) == files

    # A changed and a new file go up; --delete removes what is gone locally.
    write(str(up / "top.txt"), b"changed top")
    write(str(up / "new.txt"), b"new")
    os.remove(str(up / "sub" / "one.txt"))
    aws("s3", "sync", "--delete", str(up), f"s3://{cli_bucket}/tree")
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=cli_bucket)["Contents"])
    assert "tree/sub/one.txt" not in keys and "tree/new.txt" in keys
    assert s3.get_object(Bucket=cli_bucket, Key="tree/top.txt")["Body"].read() == b"changed top"


def test_rm_recursive(aws, s3, cli_bucket, tmp_path):
    files = _make_tree(str(tmp_path / "t"))
    aws("s3", "sync", str(tmp_path / "t"), f"s3://{cli_bucket}/")
    write(str(tmp_path / "keep"), b"k")
    aws("s3", "cp", str(tmp_path / "keep"), f"s3://{cli_bucket}/keep-me")
    out = aws("s3", "rm", "--recursive", f"s3://{cli_bucket}/sub/")
    assert out.stdout.count("delete:") == 3
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=cli_bucket)["Contents"])
    assert keys == sorted([k for k in files if not k.startswith("sub/")] + ["keep-me"])
    aws("s3", "rm", "--recursive", f"s3://{cli_bucket}")
    assert "Contents" not in s3.list_objects_v2(Bucket=cli_bucket)
    assert aws("s3", "ls", "--recursive", f"s3://{cli_bucket}", check=False).stdout == ""
    aws("s3", "rb", f"s3://{cli_bucket}")
    assert_error(s3.head_bucket, "404", 404, Bucket=cli_bucket)


def test_s3api_multipart_by_hand(aws, s3, cli_bucket, tmp_path):
    p1, p2 = os.urandom(5 * MiB), os.urandom(1 * MiB + 3)
    write(str(tmp_path / "p1"), p1)
    write(str(tmp_path / "p2"), p2)
    created = json.loads(aws("s3api", "create-multipart-upload", "--bucket", cli_bucket,
                             "--key", "hand/made", "--content-type", "application/x-made").stdout)
    uid = created["UploadId"]
    assert created["Key"] == "hand/made" and created["Bucket"] == cli_bucket
    etags = []
    for n, f in ((1, "p1"), (2, "p2")):
        res = json.loads(aws("s3api", "upload-part", "--bucket", cli_bucket, "--key",
                             "hand/made", "--upload-id", uid, "--part-number", str(n),
                             "--body", str(tmp_path / f)).stdout)
        etags.append(res["ETag"])
    assert etags == [etag_of(p1), etag_of(p2)]

    uploads = json.loads(aws("s3api", "list-multipart-uploads", "--bucket", cli_bucket).stdout)
    assert [(u["Key"], u["UploadId"]) for u in uploads["Uploads"]] == [("hand/made", uid)]
    parts = json.loads(aws("s3api", "list-parts", "--bucket", cli_bucket, "--key", "hand/made",
                           "--upload-id", uid).stdout)
    assert [(p["PartNumber"], p["Size"], p["ETag"]) for p in parts["Parts"]] == [
        (1, len(p1), etags[0]), (2, len(p2), etags[1])]

    spec = tmp_path / "parts.json"
    spec.write_text(json.dumps({"Parts": [{"PartNumber": n + 1, "ETag": e}
                                          for n, e in enumerate(etags)]}))
    done = json.loads(aws("s3api", "complete-multipart-upload", "--bucket", cli_bucket,
                          "--key", "hand/made", "--upload-id", uid,
                          "--multipart-upload", f"file://{spec}").stdout)
    assert done["ETag"] == multipart_etag([p1, p2])
    head = json.loads(aws("s3api", "head-object", "--bucket", cli_bucket,
                          "--key", "hand/made").stdout)
    assert head["ContentLength"] == len(p1) + len(p2)
    assert head["ContentType"] == "application/x-made"
    assert head["ETag"] == multipart_etag([p1, p2])
    aws("s3api", "get-object", "--bucket", cli_bucket, "--key", "hand/made",
        str(tmp_path / "out"))
    assert read(str(tmp_path / "out")) == p1 + p2


def test_s3api_abort_multipart(aws, s3, cli_bucket, tmp_path):
    uid = json.loads(aws("s3api", "create-multipart-upload", "--bucket", cli_bucket,
                         "--key", "ab").stdout)["UploadId"]
    aws("s3api", "abort-multipart-upload", "--bucket", cli_bucket, "--key", "ab",
        "--upload-id", uid)
    out = aws("s3api", "list-parts", "--bucket", cli_bucket, "--key", "ab", "--upload-id", uid,
              check=False)
    assert out.returncode != 0 and "NoSuchUpload" in out.stderr


def test_s3api_errors_are_reported(aws, cli_bucket):
    out = aws("s3api", "get-object", "--bucket", cli_bucket, "--key", "absent", "/dev/null",
              check=False)
    assert out.returncode != 0 and "NoSuchKey" in out.stderr
    out = aws("s3api", "get-bucket-lifecycle-configuration", "--bucket", cli_bucket,
              check=False)
    assert out.returncode != 0 and "NotImplemented" in out.stderr
    out = aws("s3api", "get-bucket-policy", "--bucket", cli_bucket, check=False)
    assert out.returncode != 0 and "NoSuchBucketPolicy" in out.stderr


def test_s3api_versioning(aws, cli_bucket, tmp_path):
    aws("s3api", "put-bucket-versioning", "--bucket", cli_bucket,
        "--versioning-configuration", "Status=Enabled")
    assert json.loads(aws("s3api", "get-bucket-versioning", "--bucket", cli_bucket).stdout) == {
        "Status": "Enabled"}
    write(str(tmp_path / "v"), b"one")
    first = json.loads(aws("s3api", "put-object", "--bucket", cli_bucket, "--key", "v",
                           "--body", str(tmp_path / "v")).stdout)["VersionId"]
    write(str(tmp_path / "v"), b"two")
    aws("s3api", "put-object", "--bucket", cli_bucket, "--key", "v", "--body",
        str(tmp_path / "v"))
    aws("s3api", "get-object", "--bucket", cli_bucket, "--key", "v", "--version-id", first,
        str(tmp_path / "out"))
    assert open(tmp_path / "out", "rb").read() == b"one"
    listed = json.loads(aws("s3api", "list-object-versions", "--bucket", cli_bucket).stdout)
    assert [v["IsLatest"] for v in listed["Versions"]] == [True, False]
    # `aws s3 rm` leaves a delete marker; the versions stay until removed by id.
    aws("s3", "rm", f"s3://{cli_bucket}/v")
    listed = json.loads(aws("s3api", "list-object-versions", "--bucket", cli_bucket).stdout)
    assert len(listed["Versions"]) == 2 and len(listed["DeleteMarkers"]) == 1


def test_presign_and_fetch(aws, s3, cli_bucket, tmp_path):
    write(str(tmp_path / "s"), b"presigned by the cli")
    aws("s3", "cp", str(tmp_path / "s"), f"s3://{cli_bucket}/shared/s")
    url = aws("s3", "presign", f"s3://{cli_bucket}/shared/s", "--expires-in", "300").stdout.strip()
    assert url.startswith(aws.cloud.s3_url + "/"), url
    st, _, body = http_get(url)
    assert (st, body) == (200, b"presigned by the cli")


def test_presign_expired(aws, cli_bucket, tmp_path):
    import time
    write(str(tmp_path / "s"), b"short-lived")
    aws("s3", "cp", str(tmp_path / "s"), f"s3://{cli_bucket}/s")
    url = aws("s3", "presign", f"s3://{cli_bucket}/s", "--expires-in", "1").stdout.strip()
    time.sleep(2.5)
    st, _, body = http_get(url)
    assert st == 403 and xml_code(body) == "AccessDenied"


def test_eucarc_environment_alone_is_enough(aws, s3, cli_bucket, tmp_path):
    """After `. eucarc`, `aws s3 ...` reaches Walrus with no --endpoint-url."""
    write(str(tmp_path / "e"), b"env only")
    aws("s3", "cp", str(tmp_path / "e"), f"s3://{cli_bucket}/e", endpoint=False)
    assert s3.get_object(Bucket=cli_bucket, Key="e")["Body"].read() == b"env only"
    assert "e" in aws("s3", "ls", f"s3://{cli_bucket}", endpoint=False).stdout


@pytest.mark.parametrize("mount", ["", "/services/objectstorage"])
def test_cli_on_other_mount_points(aws, s3, cli_bucket, tmp_path, mount):
    write(str(tmp_path / "m"), b"mounted")
    endpoint = aws.cloud.root_url + mount
    aws("s3", "cp", str(tmp_path / "m"), f"s3://{cli_bucket}/m", endpoint=endpoint)
    aws("s3", "cp", f"s3://{cli_bucket}/m", str(tmp_path / "back"), endpoint=endpoint)
    assert read(str(tmp_path / "back")) == b"mounted"
    assert s3.get_object(Bucket=cli_bucket, Key="m")["Body"].read() == b"mounted"
