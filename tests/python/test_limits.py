"""Bounded servers, through the real `koala up`: a client that sends its request head slowly
(slowloris) is cut off, a stalled upload ends with RequestTimeout and leaves no temp file,
one address cannot hold every connection, 300 slow uploads leave the latency of small GETs
beside them as it was, and neither do EC2 actions waiting for a hung cluster controller."""

import glob
import os
import selectors
import shutil
import socket
import statistics
import tempfile
import threading
import time
import urllib.parse

import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import Cloud, FixedPayloadAuth, make_client, unique_bucket, xml_code
from test_ec2_cloud import query


@pytest.fixture
def limited():
    """Starts a private `koala up` with `[limits]` set as given; stops it at the end."""
    made = []

    def start(**limits):
        data_dir = tempfile.mkdtemp(prefix="koala-e2e-limits-")
        with open(os.path.join(data_dir, "koala.toml"), "w") as f:
            f.write("[limits]\n")
            for k, v in limits.items():
                f.write(f"{k} = {v}\n")
        c = Cloud(data_dir)
        made.append(c)
        c.start(command="cloud")
        return c

    yield start
    for c in made:
        c.stop()
        shutil.rmtree(c.data_dir, ignore_errors=True)


def closed_by_server(sock, within):
    """Whether the server closes `sock` within `within` seconds (whatever it sent first)."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if sock.recv(65536) == b"":
                return True
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return True
    return False


def s3_of(cloud):
    return make_client(cloud.s3_url, cloud.region, cloud.access_key, cloud.secret_key,
                       read_timeout=10)


def signed_put_head(cloud, bucket, key, length):
    """The head of a PUT of `length` bytes, signed UNSIGNED-PAYLOAD, as raw bytes."""
    path = urllib.parse.urlsplit(cloud.s3_url).path.rstrip("/") + f"/{bucket}/{key}"
    url = f"{cloud.root_url}{path}"
    req = AWSRequest(method="PUT", url=url, headers={"Content-Length": str(length)})
    FixedPayloadAuth(Credentials(cloud.access_key, cloud.secret_key), cloud.region,
                     "UNSIGNED-PAYLOAD").add_auth(req)
    lines = [f"PUT {path} HTTP/1.1", f"Host: 127.0.0.1:{cloud.port}"]
    lines += [f"{k}: {v}" for k, v in req.headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def temp_files(cloud):
    return glob.glob(os.path.join(cloud.data_dir, "walrus", "tmp", "*"))


def test_slow_request_heads_are_cut_off(limited):
    c = limited(header_timeout_secs=2)
    slow = []
    for _ in range(50):
        s = socket.create_connection(("127.0.0.1", c.port), timeout=5)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        slow.append(s)
    # Each keeps sending a header line now and then, never ending its head.
    for _ in range(3):
        time.sleep(0.5)
        for s in slow:
            try:
                s.sendall(b"X-Slow: 1\r\n")
            except OSError:
                pass
    assert all(closed_by_server(s, 4) for s in slow), "a slow head was kept open"
    for s in slow:
        s.close()
    # Others are served meanwhile and after.
    assert s3_of(c).list_buckets()["Buckets"] == []


def test_a_stalled_upload_ends_with_request_timeout_and_leaves_nothing(limited):
    c = limited(body_idle_timeout_secs=2)
    s3 = s3_of(c)
    bucket = unique_bucket("stall")
    s3.create_bucket(Bucket=bucket)
    sock = socket.create_connection(("127.0.0.1", c.port), timeout=10)
    sock.sendall(signed_put_head(c, bucket, "huge", 4 << 30))
    sock.sendall(os.urandom(1 << 20))
    # The client stalls: the upload's temp file exists while the server waits...
    deadline = time.monotonic() + 5
    while not temp_files(c) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert temp_files(c), "the upload never reached a temp file"
    # ...and the server gives up after the idle time, saying why, with nothing left.
    sock.settimeout(10)
    answer = b""
    while b"</Error>" not in answer:
        chunk = sock.recv(65536)
        if not chunk:
            break
        answer += chunk
    sock.close()
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert xml_code(answer[answer.index(b"<?xml"):]) == "RequestTimeout"
    deadline = time.monotonic() + 5
    while temp_files(c) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert temp_files(c) == []
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_one_address_cannot_hold_every_connection(limited):
    c = limited(max_connections_per_address=10)
    held = [socket.create_connection(("127.0.0.1", c.port), timeout=5) for _ in range(10)]
    time.sleep(0.3)
    extra = socket.create_connection(("127.0.0.1", c.port), timeout=5)
    assert closed_by_server(extra, 3), "an eleventh connection from one address was taken"
    extra.close()
    # The held ones are served; once one goes, a new one is taken again.
    held[0].sendall(b"GET /services/Walrus/ HTTP/1.1\r\nHost: x\r\n\r\n")
    held[0].settimeout(5)
    assert held[0].recv(12).startswith(b"HTTP/1.1 ")
    held.pop().close()
    time.sleep(0.3)
    assert s3_of(c).list_buckets()["Buckets"] == []
    for s in held:
        s.close()


# Past the size kept inside the database record: read from its file on a blocking thread, as
# every larger object is.
SMALL = b"s" * (64 << 10)


def get_latencies(s3, bucket, n):
    out = []
    for _ in range(n):
        t = time.monotonic()
        assert s3.get_object(Bucket=bucket, Key="small")["Body"].read() == SMALL
        out.append(time.monotonic() - t)
    return out


def test_300_slow_uploads_leave_small_gets_their_latency(limited):
    c = limited(body_idle_timeout_secs=120)
    s3 = s3_of(c)
    bucket = unique_bucket("slow")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="small", Body=SMALL)
    before = get_latencies(s3, bucket, 40)

    # 300 uploads of 1 MiB, each past the in-memory size, then a byte now and then.
    sel = selectors.DefaultSelector()
    slow = []
    for i in range(300):
        s = socket.create_connection(("127.0.0.1", c.port), timeout=10)
        s.sendall(signed_put_head(c, bucket, f"slow-{i}", 1 << 20) + os.urandom(32 << 10))
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        slow.append(s)
    stop = threading.Event()

    def trickle():
        while not stop.is_set():
            for s in slow:
                try:
                    s.send(b"x")
                except OSError:
                    pass
            stop.wait(1)

    pump = threading.Thread(target=trickle, daemon=True)
    pump.start()
    try:
        time.sleep(3)  # every upload has reached the server and waits or streams
        during = get_latencies(s3, bucket, 40)
        # No upload was refused or ended meanwhile: they are all still open.
        assert not sel.select(timeout=0), "an upload was answered before it ended"
    finally:
        stop.set()
        pump.join()
        for s in slow:
            s.close()
    slowest = max(during)
    assert slowest < 2.0, f"a GET took {slowest:.2f} s beside the slow uploads"
    assert statistics.median(during) < 5 * statistics.median(before) + 0.05, (before, during)
    # The abandoned uploads leave no temp file.
    deadline = time.monotonic() + 10
    while temp_files(c) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert temp_files(c) == []


def test_ec2_actions_waiting_for_a_hung_cluster_controller_hold_no_thread(limited):
    """700 verbose DescribeAvailabilityZones at once, each waiting for a cluster controller
    that never answers: they wait on the runtime, not on blocking threads (which they would
    have exhausted), so GETs of file-backed objects keep their latency meanwhile."""
    c = limited(max_connections_per_address=2000)
    s3 = s3_of(c)
    bucket = unique_bucket("hung")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="small", Body=SMALL)
    # A cluster controller that takes connections and never says a word.
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(1024)
    status, root = query(c, "RegisterCluster", [("Partition", "zone-hung"),
                                                ("Host", "127.0.0.1"),
                                                ("Port", str(hung.getsockname()[1]))])
    assert status == 200, root
    accepted = []
    stop = threading.Event()

    def take():
        hung.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(hung.accept()[0])
            except OSError:
                pass

    taker = threading.Thread(target=take, daemon=True)
    taker.start()
    answers = []

    def describe():
        answers.append(query(c, "DescribeAvailabilityZones", [("ZoneName.1", "verbose")])[0])

    callers = [threading.Thread(target=describe) for _ in range(700)]
    try:
        for t in callers:
            t.start()
        time.sleep(2)  # the callers wait for the hung CC (5 s per lookup)
        during = get_latencies(s3, bucket, 20)
        for t in callers:
            t.join()
    finally:
        stop.set()
        taker.join()
        for s in accepted:
            s.close()
        hung.close()
    # The listing answers without the hung zone's room; every caller was answered.
    assert answers.count(200) == 700, {s: answers.count(s) for s in set(answers)}
    assert max(during) < 2.0, f"a GET took {max(during):.2f} s beside the waiting actions"
