"""Who may do what, through the real `koala up`: administrators are users the cloud made
administrators (never a name), the cloud's components call only what their role calls (a
stolen node key reaches nothing else), and the key service hands out no secret, only what
verifying a component's own callers takes."""

import datetime
import http.client
import os
import shutil
import tempfile
import hashlib
import hmac
import json
import ssl
import subprocess

import pytest
import urllib3

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import (KOALA_BIN, Cloud, empty_and_delete, make_client, raw_request,
                      unique_bucket, xml_code)
from test_ec2_cloud import error_code, query


KIND_NAMES = {0: "clc.koala.internal", 1: "cluster.koala.internal", 2: "node.koala.internal"}


def internal(cloud, offset, method, path, keys, body=None, cert=None, tls=True):
    """A signed internal call to the role on the main port + `offset` (0: the key service,
    1: the CC, 2: the NC), over TLS verifying the server's certificate as the cloud's
    components do (by the name of its kind), presenting `cert` (certificate and key files)
    when given; (status, decoded JSON answer, or the raw body when not JSON)."""
    data = json.dumps(body).encode() if body is not None else b""
    scheme = "https" if tls else "http"
    url = f"{scheme}://127.0.0.1:{cloud.port + offset}{path}"
    headers = {"Content-Type": "application/json"} if data else {}
    headers["X-Amz-Content-Sha256"] = hashlib.sha256(data).hexdigest()
    req = AWSRequest(method=method, url=url, data=data, headers=headers)
    SigV4Auth(Credentials(*keys[:2]), "koala", cloud.region).add_auth(req)
    if tls:
        ctx = ssl.create_default_context(cafile=cloud.ca_file)
        if cert:
            ctx.load_cert_chain(*cert)
        pool = urllib3.HTTPSConnectionPool("127.0.0.1", cloud.port + offset, ssl_context=ctx,
                                           server_hostname=KIND_NAMES[offset],
                                           assert_hostname=KIND_NAMES[offset])
    else:
        pool = urllib3.HTTPConnectionPool("127.0.0.1", cloud.port + offset)
    r = pool.request(method, path, body=data or None, headers=dict(req.headers.items()),
                     retries=False, timeout=30)
    try:
        return r.status, json.loads(r.data or b"null")
    except ValueError:
        return r.status, r.data


def comp(cloud, prefix):
    """A component's (akid, secret, cert) as `internal` takes them."""
    return cloud.component(prefix)


def call_as(cloud, offset, method, path, who, body=None):
    """`internal` as `who`: a component (akid, secret, cert) with its certificate, or a user
    (akid, secret) without one."""
    cert = who[2] if len(who) > 2 else None
    return internal(cloud, offset, method, path, who, body, cert=cert)


def admin_cmd(cloud, *args):
    out = subprocess.run([KOALA_BIN, "admin", *args], env=cloud.admin_env(),
                         capture_output=True, text=True, timeout=60)
    return out.returncode, out.stdout + out.stderr


def user_keys(cloud, user):
    """A new user of the cloud admin account with an access key: (akid, secret)."""
    code, out = admin_cmd(cloud, "create-user", user)
    assert code == 0, out
    code, out = admin_cmd(cloud, "create-access-key", "--user", user)
    assert code == 0, out
    akid, secret = out.split()[:2]
    return akid, secret


def signing_key(secret, date, region, service):
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key.hex()


def admin_keys(cloud):
    return cloud.access_key, cloud.secret_key


def test_components_call_no_public_api(cloud):
    for prefix in ("clc", "cc-", "nc-"):
        keys = cloud.component_key(prefix)
        status, root = query(cloud, "DescribeInstances", keys=keys)
        assert (status, error_code(root)) == (401, "AuthFailure"), prefix
        status, root = query(cloud, "ListUsers", path="/services/Euare", keys=keys)
        assert status == 403, prefix
        status, _, body = raw_request(cloud, "GET", "/", access_key=keys[0], secret_key=keys[1])
        assert (status, xml_code(body)) == (403, "AccessDenied"), prefix


def test_internal_calls_are_open_to_their_role_only(cloud):
    clc, cc, nc = (comp(cloud, p) for p in ("clc", "cc-", "nc-"))
    admin = admin_keys(cloud)
    evil = {"host": "evil", "url": "https://127.0.0.1:1"}
    # A stolen node key registers no node with the CC and sees none of its instances.
    for who in (nc, clc):
        status, err = call_as(cloud, 1, "POST", "/cluster/nodes", who, evil)
        assert (status, err["code"]) == (403, "AuthFailure"), err
    status, err = call_as(cloud, 1, "GET", "/cluster/instances", nc)
    assert status == 403, err
    assert call_as(cloud, 1, "GET", "/cluster/instances", clc)[0] == 200
    # Administrators (euca_conf) see the nodes but place no instance themselves.
    status, nodes = call_as(cloud, 1, "GET", "/cluster/nodes", admin)
    assert status == 200 and "evil" not in {n["host"] for n in nodes}
    assert call_as(cloud, 1, "GET", "/cluster/instances", admin)[0] == 403
    # Only cluster controllers call nodes.
    assert call_as(cloud, 2, "GET", "/node/resources", cc)[0] == 200
    for who in (nc, clc, admin):
        status, err = call_as(cloud, 2, "GET", "/node/resources", who)
        assert (status, err["code"]) == (403, "AuthFailure"), err
    # A user of the admin account named like a component is only a user.
    fake = user_keys(cloud, "nc-fake")
    status, err = call_as(cloud, 1, "GET", "/cluster/nodes", fake)
    assert status == 403, err


def test_components_call_over_tls_with_their_own_certificate(cloud):
    clc, cc, nc = (comp(cloud, p) for p in ("clc", "cc-", "nc-"))
    # The CC's key without the CC's certificate (none, or another component's) calls nothing.
    for cert in (None, nc[2], clc[2]):
        status, err = internal(cloud, 2, "GET", "/node/resources", cc, cert=cert)
        assert (status, err["code"]) == (403, "AuthFailure"), err
        assert "certificate" in err["message"]
    # The internal ports speak HTTPS only: a plain request is told so.
    status, body = internal(cloud, 2, "GET", "/node/resources", cc, tls=False)
    assert status == 400 and b"HTTPS only" in body
    # A client checks that it reached a component of the kind it calls: the CC's port does
    # not pass for a node's, whatever its address.
    ctx = ssl.create_default_context(cafile=cloud.ca_file)
    pool = urllib3.HTTPSConnectionPool("127.0.0.1", cloud.port + 1, ssl_context=ctx,
                                       server_hostname="node.koala.internal",
                                       assert_hostname="node.koala.internal")
    with pytest.raises(urllib3.exceptions.SSLError):
        pool.request("GET", "/node/resources", retries=False, timeout=10)
    # A certificate not of the cloud's CA is refused by the server's handshake.
    other = ssl.create_default_context(cafile=cloud.ca_file)
    other.load_cert_chain(*self_signed(cloud))
    pool = urllib3.HTTPSConnectionPool("127.0.0.1", cloud.port + 2, ssl_context=other,
                                       server_hostname="node.koala.internal",
                                       assert_hostname="node.koala.internal")
    with pytest.raises((urllib3.exceptions.SSLError, urllib3.exceptions.ProtocolError)):
        pool.request("GET", "/node/resources", retries=False, timeout=10)


def self_signed(cloud):
    """A certificate and key made by openssl, not by the cloud's CA."""
    folder = os.path.join(cloud.data_dir, "stranger")
    os.makedirs(folder, exist_ok=True)
    cert, key = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
    if not os.path.exists(cert):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=cc-cluster01", "-keyout", key, "-out", cert],
                       check=True, capture_output=True, timeout=60)
    return cert, key


def test_the_main_port_answers_https_with_the_clouds_certificate(cloud, aws):
    """The aws CLI and boto3 over https://, trusting the cloud certificate the eucarc names
    (AWS_CA_BUNDLE); plain HTTP keeps working beside it."""
    https = f"https://127.0.0.1:{cloud.port}"
    env = cloud.admin_env()
    assert env["AWS_CA_BUNDLE"] == env["EUCALYPTUS_CERT"]
    with open(env["AWS_CA_BUNDLE"]) as given, open(cloud.ca_file) as ca:
        assert given.read() == ca.read()
    out = subprocess.run(["aws", "--endpoint-url", https + "/services/compute/", "ec2",
                          "describe-regions", "--output", "json"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["Regions"]
    s3 = make_client(https + "/services/Walrus", cloud.region, cloud.access_key,
                     cloud.secret_key, verify=cloud.ca_file)
    bucket = unique_bucket("tls")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"over tls")
    plain = make_client(cloud.s3_url, cloud.region, cloud.access_key, cloud.secret_key)
    assert plain.get_object(Bucket=bucket, Key="k")["Body"].read() == b"over tls"
    empty_and_delete(s3, bucket)
    # Without the cloud's certificate a client refuses the connection.
    bare = {k: v for k, v in env.items() if k not in ("AWS_CA_BUNDLE",)}
    out = subprocess.run(["aws", "--endpoint-url", https + "/services/compute/", "ec2",
                          "describe-regions"], env=bare, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode != 0 and "certificate" in out.stderr.lower()


def test_plain_http_can_be_turned_off(tmp_path):
    data_dir = tempfile.mkdtemp(prefix="koala-e2e-https-")
    with open(os.path.join(data_dir, "koala.toml"), "w") as f:
        f.write("[tls]\nplain_http = false\n")
    c = Cloud(data_dir)
    try:
        c.start(command="cloud")
        assert c.env["S3_URL"].startswith("https://")
        assert c.env["EC2_URL"].startswith("https://")
        conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=10)
        conn.request("GET", "/")
        resp = conn.getresponse()
        assert resp.status == 400 and b"HTTPS only" in resp.read()
        # The eucarc alone is enough for the aws CLI and boto3.
        out = subprocess.run(["aws", "s3api", "list-buckets", "--output", "json"],
                             env=c.admin_env(), capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        s3 = make_client(c.s3_url, c.region, c.access_key, c.secret_key,
                         verify=c.env["AWS_CA_BUNDLE"])
        s3.create_bucket(Bucket="secure")
        assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["secure"]
    finally:
        c.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def test_administrators_are_granted_not_named(cloud):
    ops = user_keys(cloud, "ops")
    change = [("Name", "cloud.instances.start_timeout"), ("Value", "600")]
    status, root = query(cloud, "ModifyPropertyValue", change, keys=ops)
    assert status == 403 and error_code(root) == "UnauthorizedOperation"
    status, root = query(cloud, "RegisterCluster",
                         [("Partition", "zz"), ("Host", "127.0.0.1"), ("Port", "1")], keys=ops)
    assert status == 403, root
    assert call_as(cloud, 1, "GET", "/cluster/nodes", ops)[0] == 403

    code, out = admin_cmd(cloud, "grant-admin", "ops")
    assert code == 0, out
    status, root = query(cloud, "ModifyPropertyValue", change, keys=ops)
    assert status == 200
    assert call_as(cloud, 1, "GET", "/cluster/nodes", ops)[0] == 200

    code, out = admin_cmd(cloud, "revoke-admin", "ops")
    assert code == 0, out
    status, root = query(cloud, "ModifyPropertyValue", change, keys=ops)
    assert status == 403
    # The admin user stays one; a component cannot be made one.
    assert admin_cmd(cloud, "revoke-admin", "admin")[0] != 0
    assert admin_cmd(cloud, "grant-admin", "clc")[0] != 0


def test_the_key_service_hands_out_no_secret(cloud):
    nc, cc, clc = (comp(cloud, p) for p in ("nc-", "cc-", "clc"))
    admin = admin_keys(cloud)
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d")

    def ask(keys, owner, service, date=today):
        question = {"kind": "signing-key", "access_key_id": owner[0],
                    "scope": {"date": date, "region": cloud.region, "service": service}}
        status, answers = call_as(cloud, 0, "POST", "/services/Identity/answers", keys,
                                  [question])
        assert status == 200, answers
        assert owner[1] not in json.dumps(answers), "a secret crossed the network"
        return answers[0]

    # A node learns its cluster controller's signing key for internal calls of today: the
    # HMAC chain of the secret, not the secret.
    answer = ask(nc, cc, "koala")
    assert answer["kind"] == "signing-key"
    assert answer["signing_key"] == signing_key(cc[1], today, cloud.region, "koala")
    assert answer["principal"]["role"] == {"component": "cluster-controller"}
    # Nothing else: not the CC's key for another service or a past day, not the admin's,
    # not the CLC's.
    for owner, service, date in ((cc, "s3", today), (cc, "koala", "20200101"),
                                 (admin, "koala", today), (clc, "koala", today)):
        assert ask(nc, owner, service, date) == {"kind": "unknown"}
    # A cluster controller learns the CLC's and the administrators' keys, not a node's.
    assert ask(cc, clc, "koala")["kind"] == "signing-key"
    assert ask(cc, admin, "koala")["kind"] == "signing-key"
    assert ask(cc, nc, "koala") == {"kind": "unknown"}
    # SigV2 is checked by the key store for Walrus alone.
    v2 = {"kind": "v2-signature", "access_key_id": admin[0], "algorithm": "hmac-sha1",
          "string_to_sign": "GET\n\n\n\n/", "signature": "AAAA"}
    status, answers = call_as(cloud, 0, "POST", "/services/Identity/answers", nc, [v2])
    assert status == 200 and answers == [{"kind": "unknown"}]
    # Users and administrators may not ask at all; the old secret-handing path is gone.
    status, err = call_as(cloud, 0, "POST", "/services/Identity/answers", admin, [v2])
    assert (status, err["code"]) == (403, "AuthFailure")
    status, answer = call_as(cloud, 0, "GET", f"/services/Identity/keys/{admin[0]}", nc)
    assert status in (403, 404) and admin[1] not in json.dumps(answer)
