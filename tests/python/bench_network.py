"""The guest-networking benchmark of issue 12: figures, not a test (pytest does not collect
this file; scripts/bench-network runs it and prints what it measured).

For each MANAGED mode (MANAGED with VXLAN-carried VLANs, MANAGED-NOVLAN), a cloud in its
own namespace and a namespace standing for the user (as tests/python/test_networks.py):

- RunInstances → `ssh root@PUBLIC_IP` logs in (cache hit, TCG), and of that the node's NIC
  plugging (the guest waits paused) and the CC's plan apply (off the guest's path: it runs
  while the node prepares the disk), from the node's state.json and the CC's log;
- authorize / revoke → the guest's port 22 opens / closes to the user, over CHANGES changes;
- associate / disassociate an elastic IP → the NAT to it works / stops, over CHANGES changes.

An "enforced" time runs from the API call sent to the first probe (a TCP connect from the
user's namespace, back to back) that sees the new state; a closed port is seen when a connect
times out (100 ms), so closing times carry up to 100 ms of probe."""

import glob
import json
import os
import re
import socket
import statistics
import time

import pytest

from conftest import make_ec2  # noqa: F401
from netns import Netns, run_in
from test_instances import guest, register_guest, terminate_all, wait_state  # noqa: F401
from test_networks import ns_cloud, ssh, user_cloud  # noqa: F401

CHANGES = int(os.environ.get("KOALA_BENCH_CHANGES", "100"))
RUNS = int(os.environ.get("KOALA_BENCH_RUNS", "3"))


def reachable(outside, address, port=22, timeout=0.1):
    """Whether a TCP connection to address:port from the user's namespace is accepted."""
    def connect():
        try:
            socket.create_connection((address, port), timeout=timeout).close()
            return True
        except OSError:
            return False

    return run_in(outside.name, connect)


def until(outside, address, want, limit=10.0):
    """Seconds until `reachable` says `want` (None past `limit`)."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if reachable(outside, address) == want:
            return time.monotonic() - start
    return None


def summary(name, samples_s):
    ms = sorted(s * 1000 for s in samples_s if s is not None)
    missed = sum(1 for s in samples_s if s is None)
    if not ms:
        print(f"  {name}: no sample")
        return
    p99 = ms[min(len(ms) - 1, int(round(0.99 * (len(ms) - 1))))]
    print(f"  {name}: n={len(ms)} p50={statistics.median(ms):.0f} ms p99={p99:.0f} ms "
          f"max={ms[-1]:.0f} ms" + (f", {missed} not within 10 s" if missed else ""))


def applies_us(log_path):
    """The CC's apply times (µs) in its log, in order."""
    with open(log_path, errors="replace") as f:
        return [int(m) for m in re.findall(r"applied the guest networks.*?elapsed_us=(\d+)",
                                           re.sub(r"\x1b\[[0-9;]*m", "", f.read()))]


@pytest.mark.parametrize("mode", ["managed", "managed-novlan"])
def test_bench_network(ns_cloud, guest, tmp_path, mode, monkeypatch):
    monkeypatch.setenv("KOALA_LOG", "network=info")
    outside = Netns("user")
    try:
        _bench(ns_cloud, guest, tmp_path, mode, outside)
    finally:
        outside.delete()


def _bench(ns_cloud, guest, tmp_path, mode, outside):
    c, ec2, s3, _ = user_cloud(ns_cloud, mode, outside)
    _, _, emi, _ = register_guest(c, s3, ec2, tmp_path, guest)
    key = tmp_path / "bench.private"
    key.write_text(ec2.create_key_pair(KeyName="bench")["KeyMaterial"])
    os.chmod(key, 0o600)
    ec2.authorize_security_group_ingress(GroupName="default", IpProtocol="tcp", FromPort=22,
                                         ToPort=22, CidrIp="0.0.0.0/0")
    print(f"\n{mode}:")

    # A first run puts the image in the node's cache; the measured runs are hits.
    first = ec2.run_instances(ImageId=emi, MinCount=1, MaxCount=1,
                              KeyName="bench")["Instances"][0]["InstanceId"]
    wait_state(ec2, [first], {"running"})
    ec2.terminate_instances(InstanceIds=[first])
    wait_state(ec2, [first], {"terminated"}, timeout=120)
    time.sleep(3)

    logins, plugs, kept = [], [], None
    for run in range(RUNS):
        applied_before = len(applies_us(c.log_path))
        sent = time.monotonic()
        iid = ec2.run_instances(ImageId=emi, MinCount=1, MaxCount=1,
                                KeyName="bench")["Instances"][0]["InstanceId"]
        public = None
        while public is None:
            public = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0][
                "Instances"][0].get("PublicIpAddress")
            if public is None:
                time.sleep(0.1)
        while ssh(outside, str(key), public, "true").returncode != 0:
            assert time.monotonic() - sent < 300, "no ssh login within 300 s"
        logins.append(time.monotonic() - sent)
        state = glob.glob(os.path.join(c.data_dir, "**", "instances", iid, "state.json"),
                          recursive=True)
        with open(state[0]) as f:
            plugs.append(json.load(f)["timings"].get("nic_plug_us"))
        applied = applies_us(c.log_path)[applied_before:]
        print(f"  run {run + 1}: RunInstances → ssh login {logins[-1]:.1f} s; NIC plugged in "
              f"{plugs[-1] / 1000:.1f} ms (guest paused); CC applied "
              f"{len(applied)} plan(s): {', '.join(f'{a / 1000:.1f} ms' for a in applied)}")
        if run + 1 < RUNS:
            ec2.terminate_instances(InstanceIds=[iid])
            wait_state(ec2, [iid], {"terminated"}, timeout=120)
        else:
            kept = (iid, public)
    print(f"  RunInstances → ssh login: median {statistics.median(logins):.1f} s over {RUNS}; "
          f"Koala's share on the guest's path (NIC plug): median "
          f"{statistics.median(plugs) / 1000:.1f} ms")

    iid, public = kept

    def measure(action, address, want):
        """Seconds from `action` sent to `address`:22 being as `want` says (None: not in
        10 s)."""
        t0 = time.monotonic()
        action()
        waited = until(outside, address, want)
        return None if waited is None else time.monotonic() - t0

    # revoke / authorize tcp 22 alternately (it is authorized now).
    rule = dict(GroupName="default", IpProtocol="tcp", FromPort=22, ToPort=22,
                CidrIp="0.0.0.0/0")
    assert until(outside, public, True) is not None
    closed, opened = [], []
    for n in range(CHANGES):
        if n % 2 == 0:
            closed.append(measure(lambda: ec2.revoke_security_group_ingress(**rule), public,
                                  False))
        else:
            opened.append(measure(lambda: ec2.authorize_security_group_ingress(**rule),
                                  public, True))
    print(f"  revoke → port closed, authorize → port open ({CHANGES} changes):")
    summary("revoke", closed)
    summary("authorize", opened)
    if CHANGES % 2:
        ec2.authorize_security_group_ingress(**rule)
        until(outside, public, True)

    # associate / disassociate an elastic IP alternately.
    elastic = ec2.allocate_address(Domain="standard")["PublicIp"]
    associated, disassociated = [], []
    for n in range(CHANGES):
        if n % 2 == 0:
            associated.append(measure(
                lambda: ec2.associate_address(PublicIp=elastic, InstanceId=iid), elastic, True))
        else:
            disassociated.append(measure(
                lambda: ec2.disassociate_address(PublicIp=elastic), elastic, False))
    print(f"  associate → NAT works, disassociate → NAT gone ({CHANGES} changes):")
    summary("associate", associated)
    summary("disassociate", disassociated)
    terminate_all(c)
