"""Who may do what, through the real `koala up`: administrators are users the cloud made
administrators (never a name), the cloud's components call only what their role calls (a
stolen node key reaches nothing else), and the key service hands out no secret, only what
verifying a component's own callers takes."""

import datetime
import hashlib
import hmac
import json
import subprocess
import urllib.error
import urllib.request

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import KOALA_BIN, raw_request, xml_code
from test_ec2_cloud import error_code, query


def internal(cloud, offset, method, path, keys, body=None):
    """A signed internal call to the role on the main port + `offset` (0: the key service,
    1: the CC, 2: the NC); (status, decoded JSON answer)."""
    data = json.dumps(body).encode() if body is not None else b""
    url = f"http://127.0.0.1:{cloud.port + offset}{path}"
    headers = {"Content-Type": "application/json"} if data else {}
    headers["X-Amz-Content-Sha256"] = hashlib.sha256(data).hexdigest()
    req = AWSRequest(method=method, url=url, data=data, headers=headers)
    SigV4Auth(Credentials(*keys), "koala", cloud.region).add_auth(req)
    http_req = urllib.request.Request(url, data=data or None, method=method,
                                      headers=dict(req.headers.items()))
    try:
        with urllib.request.urlopen(http_req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


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
    clc, cc, nc = (cloud.component_key(p) for p in ("clc", "cc-", "nc-"))
    admin = admin_keys(cloud)
    evil = {"host": "evil", "url": "http://127.0.0.1:1"}
    # A stolen node key registers no node with the CC and sees none of its instances.
    for keys in (nc, clc):
        status, err = internal(cloud, 1, "POST", "/cluster/nodes", keys, evil)
        assert (status, err["code"]) == (403, "AuthFailure"), err
    status, err = internal(cloud, 1, "GET", "/cluster/instances", nc)
    assert status == 403, err
    assert internal(cloud, 1, "GET", "/cluster/instances", clc)[0] == 200
    # Administrators (euca_conf) see the nodes but place no instance themselves.
    status, nodes = internal(cloud, 1, "GET", "/cluster/nodes", admin)
    assert status == 200 and "evil" not in {n["host"] for n in nodes}
    assert internal(cloud, 1, "GET", "/cluster/instances", admin)[0] == 403
    # Only cluster controllers call nodes.
    assert internal(cloud, 2, "GET", "/node/resources", cc)[0] == 200
    for keys in (nc, clc, admin):
        status, err = internal(cloud, 2, "GET", "/node/resources", keys)
        assert (status, err["code"]) == (403, "AuthFailure"), err
    # A user of the admin account named like a component is only a user.
    fake = user_keys(cloud, "nc-fake")
    status, err = internal(cloud, 1, "GET", "/cluster/nodes", fake)
    assert status == 403, err
    status, root = query(cloud, "DescribeAvailabilityZones", [("ZoneName.1", "verbose")],
                         keys=fake)
    assert status == 200


def test_administrators_are_granted_not_named(cloud):
    ops = user_keys(cloud, "ops")
    change = [("Name", "cloud.instances.start_timeout"), ("Value", "600")]
    status, root = query(cloud, "ModifyPropertyValue", change, keys=ops)
    assert status == 403 and error_code(root) == "UnauthorizedOperation"
    status, root = query(cloud, "RegisterCluster",
                         [("Partition", "zz"), ("Host", "127.0.0.1"), ("Port", "1")], keys=ops)
    assert status == 403, root
    assert internal(cloud, 1, "GET", "/cluster/nodes", ops)[0] == 403

    code, out = admin_cmd(cloud, "grant-admin", "ops")
    assert code == 0, out
    status, root = query(cloud, "ModifyPropertyValue", change, keys=ops)
    assert status == 200
    assert internal(cloud, 1, "GET", "/cluster/nodes", ops)[0] == 200

    code, out = admin_cmd(cloud, "revoke-admin", "ops")
    assert code == 0, out
    status, root = query(cloud, "ModifyPropertyValue", change, keys=ops)
    assert status == 403
    # The admin user stays one; a component cannot be made one.
    assert admin_cmd(cloud, "revoke-admin", "admin")[0] != 0
    assert admin_cmd(cloud, "grant-admin", "clc")[0] != 0


def test_the_key_service_hands_out_no_secret(cloud):
    nc, cc, clc = (cloud.component_key(p) for p in ("nc-", "cc-", "clc"))
    admin = admin_keys(cloud)
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d")

    def ask(keys, owner, service, date=today):
        question = {"kind": "signing-key", "access_key_id": owner[0],
                    "scope": {"date": date, "region": cloud.region, "service": service}}
        status, answers = internal(cloud, 0, "POST", "/services/Identity/answers", keys,
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
    status, answers = internal(cloud, 0, "POST", "/services/Identity/answers", nc, [v2])
    assert status == 200 and answers == [{"kind": "unknown"}]
    # Users and administrators may not ask at all; the old secret-handing path is gone.
    status, err = internal(cloud, 0, "POST", "/services/Identity/answers", admin, [v2])
    assert (status, err["code"]) == (403, "AuthFailure")
    status, answer = internal(cloud, 0, "GET", f"/services/Identity/keys/{admin[0]}", nc)
    assert status in (403, 404) and admin[1] not in json.dumps(answer)
