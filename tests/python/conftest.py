"""Fixtures for the end-to-end suites: a real `koala up` process on a free port, boto3 clients
for the admin, a second account and an anonymous caller, the aws CLI with the eucarc's
environment, and unique bucket names per test.

The binary is $KOALA_BIN, else target/release/koala of this repository.
"""

import base64
import concurrent.futures
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import xml.etree.ElementTree as ET
import zlib

import boto3
import pytest
from botocore import UNSIGNED
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KOALA_BIN = os.environ.get("KOALA_BIN") or os.path.join(REPO, "target", "release", "koala")
START_TIMEOUT = 30.0

# Keep any config or credentials of the machine out of every client the suites build.
_ISOLATION = {
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}
os.environ.update(_ISOLATION)
for _name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
              "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID",
              "AWS_SECRET_ACCESS_KEY"):
    os.environ.pop(_name, None)


# ---------------------------------------------------------------------------------------------
# The cloud process


def _port_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port():
    """A port P such that P, P+1 and P+2 are free (roles added later listen on P+1, P+2)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 2 < 65536 and all(_port_free(p) for p in (port, port + 1, port + 2)):
            return port
    raise RuntimeError("no three consecutive free ports found")


def source_env(path):
    """The environment after `. path` in bash, as a dict of the variables it sets."""
    out = subprocess.run(
        ["bash", "-c", '. "$1" >/dev/null && env -0', "bash", path],
        check=True, capture_output=True, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                                              "HOME": os.environ.get("HOME", "/root")},
    ).stdout
    env = {}
    for item in out.split(b"\0"):
        if b"=" in item:
            k, v = item.split(b"=", 1)
            env[k.decode()] = v.decode()
    return env


class Cloud:
    """One `koala up` process with its data dir and port."""

    def __init__(self, data_dir, port=None, relative=False, netns=None):
        # mkdtemp makes 0700 folders; QEMU's user must reach the node's disks inside.
        os.chmod(data_dir, 0o755)
        self.data_dir = data_dir
        # Started from the data dir's parent with `--data-dir NAME`, as a new user runs the
        # README's `koala up` (a relative `./koala-data`).
        self.relative = relative
        self.port = port or free_port()
        self.proc = None
        self.log_path = os.path.join(data_dir, "koala.log")
        self.env = None
        self._log = None
        # A cloud inside a network namespace (networking tests): started there, its port
        # relayed to this process's loopback (tests/python/netns.py).
        self.netns = netns
        self._forward = None

    @property
    def root_url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def s3_url(self):
        return self.env["S3_URL"]

    @property
    def region(self):
        return self.env.get("AWS_DEFAULT_REGION") or "eucalyptus"

    @property
    def access_key(self):
        return self.env["AWS_ACCESS_KEY_ID"]

    @property
    def secret_key(self):
        return self.env["AWS_SECRET_ACCESS_KEY"]

    def start(self, command="up", args=()):
        """Starts `koala COMMAND ARGS` (`up`, or `cloud` for the CLC without CC and NC)."""
        if not os.access(KOALA_BIN, os.X_OK):
            pytest.fail(f"the koala binary {KOALA_BIN} does not exist: build it with "
                        "`cargo build --release -p koala --bin koala` or set KOALA_BIN")
        self._log = open(self.log_path, "ab")
        data_dir, cwd = self.data_dir, None
        if self.relative:
            cwd, data_dir = os.path.split(self.data_dir)
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        # Each test cloud's web console on a free port of its own (its banner names it), not
        # all on 8443.
        consoles_before = len(self._console_lines())
        self.proc = subprocess.Popen(
            [*prefix, KOALA_BIN, command, *args, "--data-dir", data_dir, "--listen",
             f"127.0.0.1:{self.port}", "--console-listen", "127.0.0.1:0"],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"koala up exited with {self.proc.returncode} before listening:\n"
                            + self.log_tail())
            try:
                if self.netns:
                    from netns import connect_in
                    connect_in(self.netns, ("127.0.0.1", self.port), timeout=0.5).close()
                    break
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"koala up did not listen on {self.port} within "
                                f"{START_TIMEOUT} s:\n" + self.log_tail())
                time.sleep(0.1)
        eucarc = os.path.join(self.data_dir, "credentials", "admin", "eucarc")
        while not os.path.exists(eucarc):
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"{eucarc} was not written:\n" + self.log_tail())
            time.sleep(0.1)
        self.env = source_env(eucarc)
        while len(self._console_lines()) <= consoles_before:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail("koala did not say where its web console is:\n" + self.log_tail())
            time.sleep(0.1)
        if self.netns and self._forward is None:
            from netns import Forward
            self._forward = Forward(self.netns, self.port)
        return self

    def _console_lines(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return re.findall(r"The web console is at (https://\S+/)", f.read())
        except FileNotFoundError:
            return []

    @property
    def console_url(self):
        """The web console's URL as the last start printed it (`https://127.0.0.1:PORT/`)."""
        lines = self._console_lines()
        assert lines, "koala printed no web console URL:\n" + self.log_tail()
        return lines[-1]

    def stop(self, timeout=20):
        """SIGTERM, then wait; returns the exit code (None if it had to be killed)."""
        if self.proc is None:
            return None
        code = self.proc.poll()
        if code is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                code = None
        self.proc = None
        if self._forward:
            self._forward.close()
            self._forward = None
        if self._log:
            self._log.close()
            self._log = None
        return code

    def log_tail(self, n=4000):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def admin_env(self):
        """The environment a shell has after sourcing the admin eucarc (plus isolation)."""
        env = dict(os.environ)
        env.update(self.env)
        env.update(_ISOLATION)
        return env

    def component_key(self, prefix):
        """(access key id, secret) of the component whose principal starts with `prefix`
        (`nc-`, `cc-`, `clc`), from the key file `koala up` keeps in the data dir."""
        return self.component(prefix)[:2]

    def component(self, prefix):
        """(access key id, secret, (certificate file, TLS key file)) of the component whose
        principal starts with `prefix`, from the files `koala up` keeps in the data dir."""
        folder = os.path.join(self.data_dir, "credentials", "components")
        for name in sorted(os.listdir(folder)):
            if name.startswith(prefix) and name.endswith(".json"):
                with open(os.path.join(folder, name)) as f:
                    key = json.load(f)
                tls = os.path.join(self.data_dir, "keys", "tls", name[:-len(".json")])
                return (key["access_key_id"], key["secret_access_key"],
                        (tls + "-cert.pem", tls + "-key.pem"))
        raise AssertionError(f"no component key {prefix}* in {folder}")

    def as_node(self):
        """raw_request's keyword arguments to call as this cloud's node controller: its key
        over TLS with its certificate, as nodes call Walrus' image feed."""
        akid, secret, cert = self.component("nc-")
        return {"access_key": akid, "secret_key": secret, "cert": cert, "service": "koala"}

    def register_component(self, kind, name, folder):
        """Registers a component (`RegisterComponent`, with the admin's key) with a TLS key
        made here by openssl; raw_request's keyword arguments to call as it."""
        key, pub = os.path.join(folder, f"{name}-key.pem"), os.path.join(folder, f"{name}.pub")
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                        "rsa_keygen_bits:2048", "-out", key], check=True, capture_output=True)
        subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-out", pub], check=True,
                       capture_output=True)
        with open(pub) as f:
            public_key = f.read()
        form = urllib.parse.urlencode([("Action", "RegisterComponent"),
                                       ("Version", "2010-05-08"), ("Kind", kind),
                                       ("ComponentName", name), ("PublicKey", public_key)])
        status, _, body = raw_request(self, "POST", "", body=form.encode(),
                                      base=self.root_url + "/services/Euare",
                                      headers={"Content-Type":
                                               "application/x-www-form-urlencoded"})
        assert status == 200, body
        root = ET.fromstring(body)
        text = {el.tag.split("}")[-1]: el.text for el in root.iter()}
        cert = os.path.join(folder, f"{name}-cert.pem")
        with open(cert, "w") as f:
            f.write(text["Certificate"])
        return {"access_key": text["AccessKeyId"], "secret_key": text["SecretAccessKey"],
                "cert": (cert, key), "service": "koala"}

    @property
    def ca_file(self):
        """The cloud CA's certificate, which every certificate of the cloud chains to."""
        return os.path.join(self.data_dir, "keys", "cloud-cert.pem")

    def create_account(self, name):
        """Runs `koala admin create-account NAME`; returns the new account's environment."""
        result = subprocess.run([KOALA_BIN, "admin", "create-account", name],
                                env=self.admin_env(), capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, (
            f"koala admin create-account {name} failed ({result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}")
        assert "AWS_ACCESS_KEY_ID" in result.stdout, result.stdout
        path = os.path.join(self.data_dir, f"eucarc-{name}")
        with open(path, "w") as f:
            f.write(result.stdout)
        env = source_env(path)
        for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            assert env.get(var), f"{var} missing from create-account output:\n{result.stdout}"
        return env


def start_cloud(data_dir=None):
    data_dir = data_dir or tempfile.mkdtemp(prefix="koala-e2e-")
    return Cloud(data_dir).start()


PG_TEMP = os.path.join(REPO, "scripts", "pg-temp")
CEPH_TEMP = os.path.join(REPO, "scripts", "ceph-temp")


def temp_server(script, prefix, timeout):
    """Starts a throwaway server with one of our scripts (`SCRIPT start DIR` prints how to
    reach it) in a folder of its own: (the folder, what the script printed)."""
    folder = tempfile.mkdtemp(prefix=prefix)
    out = subprocess.run(["bash", script, "start", folder], capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, out.stderr
    return folder, out.stdout.strip()


def temp_server_stop(script, folder, timeout):
    subprocess.run(["bash", script, "stop", folder], capture_output=True, timeout=timeout)
    shutil.rmtree(folder, ignore_errors=True)


def ceph_start():
    """Starts a one-host Ceph cluster (scripts/ceph-temp) with pool `koala`: (its folder,
    its ceph.conf)."""
    return temp_server(CEPH_TEMP, "koala-e2e-ceph-", 300)


def ceph_stop(folder):
    temp_server_stop(CEPH_TEMP, folder, 120)


def pg_start():
    """Starts a throwaway PostgreSQL server (scripts/pg-temp): (its folder, its libpq
    connection string)."""
    return temp_server(PG_TEMP, "koala-e2e-pg-", 120)


def pg_stop(folder):
    temp_server_stop(PG_TEMP, folder, 60)


def put_all_while_killing(bodies, put, kill):
    """PUTs every body of `bodies` (key → bytes) at once, 32 at a time, with `put(key, body)`
    answering the ETag, and calls `kill` once a quarter of them are acknowledged: the ETags
    of the acknowledged ones, by key (a PUT cut short by the kill is not acknowledged)."""
    acknowledged, lock = {}, threading.Lock()
    quarter = threading.Event()

    def one(key):
        try:
            etag = put(key, bodies[key])
        except Exception:  # noqa: BLE001 - the server was killed under it
            return
        with lock:
            acknowledged[key] = etag
            if len(acknowledged) >= len(bodies) // 4:
                quarter.set()

    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        futures = [pool.submit(one, k) for k in bodies]
        assert quarter.wait(120), "no quarter of the PUTs was acknowledged"
        kill()
        concurrent.futures.wait(futures)
    with lock:
        return dict(acknowledged)


def walrus_on_rados(conf):
    """koala.toml's table that puts Walrus' object bytes in the cluster of `conf`."""
    return f'[walrus]\nbackend = "rados"\nrados_conf = "{conf}"\nrados_pool = "koala"\n'


@pytest.fixture
def ceph():
    """A one-host Ceph cluster of the test's own: its ceph.conf."""
    folder, conf = ceph_start()
    try:
        yield conf
    finally:
        ceph_stop(folder)


@pytest.fixture(scope="session")
def cloud():
    data_dir = tempfile.mkdtemp(prefix="koala-e2e-")
    # KOALA_TEST_WALRUS=rados: the session cloud's Walrus keeps object bytes in a one-host
    # Ceph cluster the fixture starts (scripts/ceph-temp), so that the S3 suites run against
    # the RADOS backend too; =shared: and its records in a PostgreSQL server the fixture
    # starts (scripts/pg-temp), as front ends sharing one namespace keep them (scripts/test
    # runs the S3 suites a second and a third time so).
    ceph_dir = pg_dir = None
    walrus = os.environ.get("KOALA_TEST_WALRUS")
    if walrus in ("rados", "shared"):
        ceph_dir, conf = ceph_start()
        table = walrus_on_rados(conf)
        if walrus == "shared":
            pg_dir, url = pg_start()
            table += f'database = "{url}"\n'
        with open(os.path.join(data_dir, "koala.toml"), "w") as f:
            f.write(table)
    # A relative data dir, as the README's first command uses: every instance test of the
    # session cloud then shows that the paths handed to libvirt work from its folder.
    c = Cloud(data_dir, relative=True)
    try:
        c.start()
        yield c
    finally:
        c.stop()
        if pg_dir:
            pg_stop(pg_dir)
        if ceph_dir:
            ceph_stop(ceph_dir)
        if os.environ.get("KOALA_KEEP_DATA") is None:
            shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def cloud_factory():
    """Starts private clouds (for restart tests); stops and removes them at the end."""
    made = []

    def make():
        data_dir = tempfile.mkdtemp(prefix="koala-e2e-restart-")
        c = Cloud(data_dir).start()
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()
        shutil.rmtree(c.data_dir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# boto3 clients


def client_config(**kw):
    s3 = {"addressing_style": "path"}
    s3.update(kw.pop("s3", {}))
    base = dict(s3=s3, retries={"total_max_attempts": 1, "mode": "standard"},
                connect_timeout=10, read_timeout=120)
    base.update(kw)
    return Config(**base)


def make_client(endpoint, region, access_key=None, secret_key=None, anonymous=False,
                verify=None, **cfg):
    """A boto3 S3 client; `verify` names the CA bundle for https endpoints."""
    if anonymous:
        cfg["signature_version"] = UNSIGNED
    elif "signature_version" not in cfg:
        cfg["signature_version"] = "s3v4"
    session = boto3.session.Session()
    return session.client(
        "s3", endpoint_url=endpoint, region_name=region,
        aws_access_key_id=None if anonymous else access_key,
        aws_secret_access_key=None if anonymous else secret_key,
        config=client_config(**cfg), verify=verify,
    )


@pytest.fixture(scope="session")
def s3(cloud):
    """The admin's client on the eucarc's S3_URL (/services/Walrus)."""
    return make_client(cloud.s3_url, cloud.region, cloud.access_key, cloud.secret_key)


@pytest.fixture(scope="session")
def s3_root(cloud):
    """The admin's client at the root of the port."""
    return make_client(cloud.root_url, cloud.region, cloud.access_key, cloud.secret_key)


@pytest.fixture(scope="session")
def other_env(cloud):
    return cloud.create_account("other" + uuid.uuid4().hex[:8])


@pytest.fixture(scope="session")
def s3_other(cloud, other_env):
    """A client of a second account."""
    return make_client(cloud.s3_url, cloud.region, other_env["AWS_ACCESS_KEY_ID"],
                       other_env["AWS_SECRET_ACCESS_KEY"])


@pytest.fixture(scope="session")
def s3_anon(cloud):
    """An anonymous (unsigned) client."""
    return make_client(cloud.s3_url, cloud.region, anonymous=True)


@pytest.fixture(scope="session")
def admin_id(s3):
    return s3.list_buckets()["Owner"]["ID"]


@pytest.fixture(scope="session")
def other_id(s3_other):
    return s3_other.list_buckets()["Owner"]["ID"]


# ---------------------------------------------------------------------------------------------
# Buckets


def unique_bucket(hint="t"):
    hint = re.sub(r"[^a-z0-9-]", "-", hint.lower()).strip("-")[:30].strip("-") or "t"
    return f"{hint}-{uuid.uuid4().hex[:12]}"


def empty_and_delete(client, bucket):
    """Best-effort cleanup (the owner's client)."""
    try:
        for up in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            client.abort_multipart_upload(Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"])
    except ClientError:
        pass
    try:
        # Every version and delete marker (a never-versioned bucket's objects are their
        # keys' null versions), a page at a time.
        kw = {}
        while True:
            page = client.list_object_versions(Bucket=bucket, **kw)
            objects = [{"Key": e["Key"], "VersionId": e["VersionId"]}
                       for e in page.get("Versions", []) + page.get("DeleteMarkers", [])]
            if objects:
                client.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
            if not page.get("IsTruncated"):
                break
            kw = {"KeyMarker": page["NextKeyMarker"],
                  "VersionIdMarker": page["NextVersionIdMarker"]}
        client.delete_bucket(Bucket=bucket)
    except ClientError:
        pass


@pytest.fixture
def bucket_name(request):
    return unique_bucket(request.node.name)


@pytest.fixture
def bucket(s3, request):
    """A fresh bucket of the admin account, emptied and deleted after the test."""
    name = unique_bucket(request.node.name)
    s3.create_bucket(Bucket=name)
    yield name
    empty_and_delete(s3, name)


# ---------------------------------------------------------------------------------------------
# Assertion helpers


def error_of(exc_info):
    err = exc_info.value.response
    return err.get("Error", {}).get("Code"), err["ResponseMetadata"]["HTTPStatusCode"]


def assert_error(fn, code, status, *args, **kwargs):
    """Calls fn and checks that it fails with the S3 error `code` and HTTP `status`."""
    with pytest.raises(ClientError) as exc:
        fn(*args, **kwargs)
    got = error_of(exc)
    assert got == (code, status), f"expected {code} {status}, got {got}: {exc.value.response}"
    return exc.value.response


def md5_hex(data):
    return hashlib.md5(data).hexdigest()


def b64(data):
    return base64.b64encode(data).decode()


def etag_of(data):
    return '"' + md5_hex(data) + '"'


def multipart_etag(parts):
    digest = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
    return f'"{digest}-{len(parts)}"'


def crc32_b64(data):
    return b64((zlib.crc32(data) & 0xFFFFFFFF).to_bytes(4, "big"))


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C = _crc32c_table()


def crc32c_b64(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC32C[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return b64((crc ^ 0xFFFFFFFF).to_bytes(4, "big"))


def http_get(url, headers=None, method="GET", data=None):
    """Plain urllib request; returns (status, headers, body) for success and errors alike."""
    req = urllib.request.Request(url, headers=headers or {}, method=method, data=data)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def xml_code(body):
    """The <Code> of an S3 error document."""
    root = ET.fromstring(body)
    code = root.find("Code")
    assert code is not None, body
    return code.text


# ---------------------------------------------------------------------------------------------
# Raw signed requests (for bodies and encodings boto3 will not produce)


class FixedPayloadAuth(S3SigV4Auth):
    """SigV4 for S3 with a chosen x-amz-content-sha256 (STREAMING-..., UNSIGNED-PAYLOAD, or a
    deliberately wrong hash); botocore's own S3 signer always computes it."""

    def __init__(self, credentials, region, payload_hash=None, service="s3"):
        super().__init__(credentials, service, region)
        self._payload_hash = payload_hash

    def payload(self, request):
        if self._payload_hash is not None:
            return self._payload_hash
        return super().payload(request)


def raw_request(cloud, method, path, query="", headers=None, body=b"", sign=True,
                payload_hash=None, access_key=None, secret_key=None, base=None, cert=None,
                service="s3"):
    """Sends one request with http.client, SigV4-signed (for `service`) with the admin's keys
    by default; over TLS with a client certificate when `cert` (certificate and key files) is
    given, as the cloud's components call.

    `path` is already percent-encoded and is appended to `base` (default: the S3_URL path).
    Returns (status, headers dict lower-cased, body).
    """
    base_path = urllib.parse.urlsplit(base or cloud.s3_url).path.rstrip("/")
    full_path = base_path + path
    url = f"{cloud.root_url}{full_path}" + (f"?{query}" if query else "")
    headers = dict(headers or {})
    if sign:
        req = AWSRequest(method=method, url=url, data=body, headers=headers)
        creds = Credentials(access_key or cloud.access_key, secret_key or cloud.secret_key)
        FixedPayloadAuth(creds, cloud.region, payload_hash, service).add_auth(req)
        headers = dict(req.headers.items())
    if cert:
        ctx = ssl.create_default_context(cafile=cloud.ca_file)
        ctx.load_cert_chain(*cert)
        conn = http.client.HTTPSConnection("127.0.0.1", cloud.port, timeout=60, context=ctx)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", cloud.port, timeout=60)
    try:
        conn.putrequest(method, full_path + (f"?{query}" if query else ""),
                        skip_accept_encoding=True)
        sent = {k.lower() for k in headers}
        for k, v in headers.items():
            conn.putheader(k, v)
        if "content-length" not in sent and "transfer-encoding" not in sent:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        if body:
            conn.send(body)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# The aws CLI


class AwsCli:
    def __init__(self, cloud, env, workdir):
        self.cloud = cloud
        self.env = env
        self.workdir = workdir

    def __call__(self, *args, check=True, input=None, endpoint=None):
        """endpoint: None for the eucarc's S3_URL, False for none (then the CLI must find
        AWS_ENDPOINT_URL_S3 in the eucarc's environment), else a URL."""
        if endpoint is False:
            cmd = ["aws", *args]
        else:
            cmd = ["aws", "--endpoint-url", endpoint or self.cloud.s3_url, *args]
        result = subprocess.run(cmd, env=self.env, capture_output=True, text=True,
                                timeout=300, input=input, cwd=self.workdir)
        if check:
            assert result.returncode == 0, (
                f"{' '.join(cmd)} exited {result.returncode}\nstdout:\n{result.stdout}\n"
                f"stderr:\n{result.stderr}")
        return result


@pytest.fixture(scope="session")
def aws(cloud, tmp_path_factory):
    """Runs the aws CLI with the admin eucarc's environment, isolated from ~/.aws."""
    if shutil.which("aws") is None:
        pytest.fail("the aws CLI is not on PATH (put the venv's bin first)")
    home = tmp_path_factory.mktemp("aws-home")
    config = home / "config"
    # Path-style addressing like every Eucalyptus client; nothing else from any user config.
    config.write_text("[default]\ns3 =\n    addressing_style = path\n")
    env = cloud.admin_env()
    env.update({
        "HOME": str(home),
        "AWS_CONFIG_FILE": str(config),
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_PAGER": "",
        "AWS_RETRY_MODE": "standard",
        "AWS_MAX_ATTEMPTS": "1",
    })
    env.pop("AWS_PROFILE", None)
    return AwsCli(cloud, env, str(home))


# ---------------------------------------------------------------------------------------------
# EC2


def make_ec2(cloud, access_key, secret_key, **cfg):
    """A boto3 EC2 client on the eucarc's EC2_URL (/services/compute/)."""
    session = boto3.session.Session()
    return session.client(
        "ec2", endpoint_url=cloud.env["EC2_URL"], region_name=cloud.region,
        aws_access_key_id=access_key, aws_secret_access_key=secret_key,
        config=client_config(**cfg),
    )


@pytest.fixture(scope="session")
def ec2(cloud):
    """The cloud admin's EC2 client."""
    return make_ec2(cloud, cloud.access_key, cloud.secret_key)


@pytest.fixture(scope="session")
def ec2_other(cloud, other_env):
    """The EC2 client of a second account."""
    return make_ec2(cloud, other_env["AWS_ACCESS_KEY_ID"], other_env["AWS_SECRET_ACCESS_KEY"])


def assert_ec2_error(fn, code, *args, status=None, **kwargs):
    """Calls fn and checks that it fails with the EC2 error `code` (and HTTP `status`)."""
    with pytest.raises(ClientError) as exc:
        fn(*args, **kwargs)
    got = exc.value.response.get("Error", {}).get("Code")
    assert got == code, f"expected {code}, got {got}: {exc.value.response}"
    if status is not None:
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == status, (
            exc.value.response)
    return exc.value.response
