"""Reconciliation both ways: the control plane never loses or doubles an instance when an
answer is lost. The roles run apart (`koala cloud`, `koala cluster`, two `koala node`s) with
small TCP proxies, written here, in front of the CC (between it and the CLC) and of node A
(between it and the CC). A proxy forwards bytes; on cue it drops the answer to the next run
order (the callee took the order and acted on it; its caller never hears so); an order a node
gets with no live record behind it (one held up past its record's end, or replayed) is sent
to the node directly, as its CC would. In each case exactly
the instances the user was told of exist (DescribeInstances), none twice (one node folder
holds each, libvirt runs it once), and none is left running unseen: after terminate no domain
is left, and an instance the user was told had ended is ended on its node too.

Guests boot under QEMU's TCG here; each case starts one at a time."""

import base64
import hashlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import uuid

import pytest
import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import Cloud, free_port, make_client, make_ec2
from test_ec2_cloud import query
from test_ec2_images import TOOLS
from test_instances import Role, domains, register_guest, terminate_all, wait_state
from test_instances import guest  # noqa: F401 - the test guest fixture, used by `split`

# Run orders carry this much user data, so that they, and nothing else the roles send each
# other, are larger than Proxy.BIG: the proxies find them by size alone, without reading
# HTTP, which stays true when the roles' calls move to TLS.
USER_DATA = base64.b64encode(os.urandom(9 * 1024)).decode()


class Proxy:
    """A TCP proxy on a free loopback port in front of `127.0.0.1:target_port`.

    Each connection is pumped both ways by two threads. The caller's bytes are passed on when
    no more come for QUIET seconds, or at once for a request that has reached BIG bytes since
    the last answer began (a run order). Faults, queued with `fault`, each apply to the next
    such order: `("drop",)` passes it on and closes both sides as soon as the answer starts
    coming back."""

    BIG = 8192
    QUIET = 0.05

    def __init__(self, target_port):
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.faults = []
        self.orders = 0
        self.sockets = []
        threading.Thread(target=self._accept, daemon=True).start()

    def fault(self, *faults):
        with self.lock:
            self.faults.extend(faults)

    def faults_left(self):
        with self.lock:
            return len(self.faults)

    def close(self):
        self.listener.close()
        with self.lock:
            for s in self.sockets:
                _close(s)

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            conn = {"client": client, "server": server, "sent": 0, "big": False,
                    "fault": None, "lock": threading.Lock()}
            with self.lock:
                self.sockets += [client, server]
            threading.Thread(target=self._up, args=(conn,), daemon=True).start()
            threading.Thread(target=self._down, args=(conn,), daemon=True).start()

    def _up(self, conn):
        client, server = conn["client"], conn["server"]
        pending = b""
        while True:
            try:
                # The proxy's close() may have closed the socket under this thread.
                client.settimeout(self.QUIET if pending else None)
                data = client.recv(65536)
            except socket.timeout:
                data = None
            except OSError:
                data = b""
            if data:
                pending += data
                with conn["lock"]:
                    conn["sent"] += len(data)
                    if conn["sent"] >= self.BIG and not conn["big"]:
                        conn["big"] = True
                        with self.lock:
                            self.orders += 1
                            conn["fault"] = self.faults.pop(0) if self.faults else None
                    big = conn["big"]
                if not big:
                    continue  # more of the request may come: wait for it, or for quiet
            try:
                if pending:
                    server.sendall(pending)
            except OSError:
                return
            pending = b""
            if data == b"":
                # The caller is gone; the server side stays open so that the callee
                # finishes what it was sent, as it would if its caller had died.
                return

    def _down(self, conn):
        client, server = conn["client"], conn["server"]
        while True:
            try:
                data = server.recv(65536)
            except OSError:
                data = b""
            if not data:
                _close(client)
                _close(server)
                return
            with conn["lock"]:
                conn["sent"] = 0
                fault, conn["fault"] = conn["fault"], None
                conn["big"] = False
            if fault and fault[0] == "drop":
                _close(client)
                _close(server)
                return
            try:
                client.sendall(data)
            except OSError:
                _close(server)
                return


def _close(s):
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.close()


class Split:
    """The roles apart, with a proxy before the CC and one before node A."""

    def __init__(self):
        self.roles, self.proxies, self.nodes = [], [], {}
        self.cloud_dir = tempfile.mkdtemp(prefix="koala-e2e-recon-")
        self.c = None

    def start(self, guest, tmp_path):
        port, cc_port = free_port(), free_port()
        self.cc_proxy = self._proxy(cc_port)
        self.c = Cloud(self.cloud_dir, port=port)
        self.c.start(command="cloud",
                     args=["--cluster-url", f"http://127.0.0.1:{self.cc_proxy.port}"])
        env = self.c.admin_env()
        # Components register and call over TLS (the proxies forward its bytes as they are).
        cloud_url = self.c.root_url.replace("http://", "https://")
        self.cc = Role(["cluster", "--cloud-url", cloud_url], cc_port, env)
        self.roles.append(self.cc)
        # node-a has the most room, even with two instances on it: least-loaded placement
        # sends each order there first.
        a_port, b_port = free_port(), free_port()
        self.a_proxy = self._proxy(a_port)
        for name, node_port, cores in [("node-a", a_port, 4), ("node-b", b_port, 1)]:
            role = Role(["node", "--cloud-url", cloud_url], node_port, env,
                        f'[node]\nhost = "{name}"\ncores = {cores}\n')
            self.roles.append(role)
            self.nodes[name] = role
        out = subprocess.run(
            [os.path.join(TOOLS, "euca_conf"), "--register-nodes",
             f"127.0.0.1:{self.a_proxy.port} 127.0.0.1:{b_port}",
             "--cluster-url", f"http://127.0.0.1:{cc_port}"],
            env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "(node-a): 4 cores" in out.stdout and "(node-b): 1 cores" in out.stdout, out.stdout
        self.ec2 = make_ec2(self.c, self.c.access_key, self.c.secret_key)
        s3 = make_client(self.c.s3_url, self.c.region, self.c.access_key, self.c.secret_key)
        _, _, self.emi, _ = register_guest(self.c, s3, self.ec2, tmp_path, guest)

    def _proxy(self, target):
        proxy = Proxy(target)
        self.proxies.append(proxy)
        return proxy

    def homes(self, iid):
        """The nodes whose folder holds instance `iid`."""
        return [name for name, role in self.nodes.items()
                if os.path.isdir(os.path.join(role.data_dir, "node", "instances", iid))]

    def instance_ids(self):
        """Every instance any node was ever ordered to run."""
        found = set()
        for role in self.nodes.values():
            d = os.path.join(role.data_dir, "node", "instances")
            if os.path.isdir(d):
                found |= set(os.listdir(d))
        return found

    def run(self, **kw):
        """RunInstances of one instance with run-order-sized user data; the instance."""
        ran = self.ec2.run_instances(ImageId=self.emi, MinCount=1, MaxCount=1,
                                     UserData=USER_DATA, **kw)
        assert len(ran["Instances"]) == 1, ran
        return ran["Instances"][0]

    def assert_runs_once(self, iid, node="node-a"):
        """Once it has left pending, the instance runs once: on `node`, in one folder, as one
        domain."""
        settled = wait_state(self.ec2, [iid], {"running", "terminated"})
        assert self.homes(iid) == [node], f"{iid} was ordered to {self.homes(iid)}"
        assert settled[iid]["State"]["Name"] == "running", settled[iid]
        assert iid in domains()

    def clc_logged(self, *words):
        """Whether a line of the CLC's log holds all of `words`."""
        with open(self.c.log_path, errors="replace") as f:
            return any(all(w in line for w in words) for line in f)

    def terminate(self, ids):
        self.ec2.terminate_instances(InstanceIds=ids)
        wait_state(self.ec2, ids, {"terminated"}, timeout=60)
        assert not domains() & set(ids)

    def stop(self):
        ordered = self.instance_ids()
        try:
            if self.c is not None:
                terminate_all(self.c)
        finally:
            ordered |= self.instance_ids()
            for r in self.roles:
                r.stop()
            if self.c is not None:
                self.c.stop()
            for p in self.proxies:
                p.close()
            # Stopping Koala leaves guests running (on purpose): a failed case must not leave
            # any of its own behind on the host.
            for iid in ordered & domains():
                for verb in ("destroy", "undefine"):
                    subprocess.run(["virsh", "-c", "qemu:///system", verb, iid],
                                   capture_output=True, timeout=60)
            shutil.rmtree(self.cloud_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def split(guest, tmp_path_factory):
    s = Split()
    try:
        s.start(guest, tmp_path_factory.mktemp("recon"))
        yield s
    finally:
        s.stop()


def test_a_lost_answer_of_the_cc_keeps_the_launch(split):
    before = split.instance_ids()
    # The CC places the instance, and its answer never reaches the CLC.
    split.cc_proxy.fault(("drop",))
    instance = split.run()
    assert split.cc_proxy.faults_left() == 0, "the run order did not go through the proxy"
    iid = instance["InstanceId"]
    # The user is told of it, pending; it is not deleted while the CC starts it.
    assert instance["State"]["Name"] == "pending"
    split.assert_runs_once(iid)
    # Nothing was ordered that the user was not told of.
    assert split.instance_ids() - before == {iid}
    split.terminate([iid])


def test_a_node_that_does_not_answer_keeps_its_instance(split):
    before = split.instance_ids()
    # node-a takes the order and its answer is lost: the CC asks it again (the same order)
    # and learns it has the instance, instead of starting it on node-b too.
    split.a_proxy.fault(("drop",))
    asked = split.run()["InstanceId"]
    assert split.a_proxy.faults_left() == 0, "the run order did not go through the proxy"
    split.assert_runs_once(asked)

    # node-a answers neither the order nor the question: the instance stays where it may
    # be starting, pending, until node-a's reports show it.
    split.a_proxy.fault(("drop",), ("drop",))
    unconfirmed = split.run()["InstanceId"]
    assert split.a_proxy.faults_left() == 0
    # (The CC names nodes by the address they were registered with: here node-a's proxy.)
    assert split.clc_logged(unconfirmed, f"127.0.0.1:{split.a_proxy.port}",
                            "did not confirm the start")
    split.assert_runs_once(unconfirmed)
    assert split.instance_ids() - before == {asked, unconfirmed}
    split.terminate([asked, unconfirmed])


def order_as_cc(split, node, order):
    """Sends a run order to `node` directly, as its cluster controller does (the CC's key,
    over TLS with the CC's certificate); the node's HTTP status."""
    cc = split.cc.data_dir
    with open(os.path.join(cc, "credentials", "components", "cc-cluster01.json")) as f:
        key = json.load(f)
    tls = os.path.join(cc, "keys", "tls", "cc-cluster01")
    ctx = ssl.create_default_context(cafile=os.path.join(cc, "keys", "cloud-cert.pem"))
    ctx.load_cert_chain(tls + "-cert.pem", tls + "-key.pem")
    body = json.dumps(order).encode()
    url = f"https://127.0.0.1:{node.port}/node/instances"
    req = AWSRequest(method="POST", url=url, data=body, headers={
        "Content-Type": "application/json",
        "X-Amz-Content-Sha256": hashlib.sha256(body).hexdigest()})
    SigV4Auth(Credentials(key["access_key_id"], key["secret_access_key"]), "koala",
              split.c.region).add_auth(req)
    pool = urllib3.HTTPSConnectionPool("127.0.0.1", node.port, ssl_context=ctx,
                                       server_hostname="node.koala.internal",
                                       assert_hostname="node.koala.internal")
    return pool.request("POST", "/node/instances", body=body, headers=dict(req.headers.items()),
                        retries=False, timeout=30).status


def test_an_instance_a_node_runs_without_a_live_record_is_ended(split):
    # An order reaches node-a that the cloud has no live record of (as one held up on the
    # network past its record's end, or replayed, would): the node starts it, and the CLC,
    # seeing a node run an instance it does not know, ends it after the grace.
    known = split.run()["InstanceId"]
    split.assert_runs_once(known)
    with open(os.path.join(split.nodes["node-a"].data_dir, "node", "instances", known,
                           "state.json")) as f:
        order = json.load(f)["order"]
    split.terminate([known])
    stray = "i-" + uuid.uuid4().hex[:8]
    order.update(instance_id=stray, reservation_id="r-" + uuid.uuid4().hex[:8])
    assert order_as_cc(split, split.nodes["node-a"], order) == 200
    # It starts on node-a, unseen by the user, then goes (60 s after it was first seen).
    deadline = time.monotonic() + 240
    seen = False
    while time.monotonic() < deadline:
        running = stray in domains()
        seen = seen or running
        if seen and not running:
            break
        time.sleep(1)
    assert seen, f"{stray} never started on node-a"
    assert stray not in domains(), f"{stray} still runs on node-a, unseen"
    assert split.clc_logged(stray, "node-a", "ending an instance the cloud has no live record")
    # The user never saw it.
    assert stray not in {i["InstanceId"] for r in split.ec2.describe_instances()["Reservations"]
                         for i in r["Instances"]}


def test_concurrent_retries_with_one_client_token_launch_once(split):
    before = split.instance_ids()
    token = uuid.uuid4().hex
    clients = [make_ec2(split.c, split.c.access_key, split.c.secret_key) for _ in range(4)]
    start = threading.Barrier(len(clients))
    answers, errors = [], []

    def launch(ec2):
        start.wait()
        try:
            answers.append(ec2.run_instances(ImageId=split.emi, MinCount=1, MaxCount=1,
                                             ClientToken=token))
        except Exception as e:  # noqa: BLE001 - every failure is reported below
            errors.append(e)

    threads = [threading.Thread(target=launch, args=(ec2,)) for ec2 in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    reservations = {a["ReservationId"] for a in answers}
    told = {tuple(i["InstanceId"] for i in a["Instances"]) for a in answers}
    assert len(reservations) == 1 and len(told) == 1, (reservations, told)
    (ids,) = told
    assert len(ids) == 1
    found = split.ec2.describe_instances(
        Filters=[{"Name": "client-token", "Values": [token]}])["Reservations"]
    assert [i["InstanceId"] for r in found for i in r["Instances"]] == list(ids)
    wait_state(split.ec2, list(ids), {"running"})
    assert len(split.homes(ids[0])) == 1, split.homes(ids[0])
    assert ids[0] in domains()
    assert split.instance_ids() - before == set(ids)
    split.terminate(list(ids))
