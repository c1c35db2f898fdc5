"""Guest addresses in the MANAGED modes, as the CLC decides them (issue 12's first slice):
each security group that runs instances gets its own subnet of the private space, each
instance the lowest free address of it, and a public address lent from the pool for its life;
an elastic IP replaces the lent address and the instance gets one back when it leaves.

Each cloud runs inside a network namespace of its own (tests/python/netns.py): its CC's
rules, DHCP server and bridges stay there, and its port is relayed to the test's loopback."""

import http.client
import os
import shutil
import subprocess
import tempfile
import threading

import pytest

from conftest import Cloud, assert_ec2_error, make_client, make_ec2
from netns import Netns, enter
from test_instances import (euca, guest, register_guest, rows, terminate_all,  # noqa: F401
                            wait_state)

POOL = ["10.98.0.1", "10.98.0.2", "10.98.0.3"]
CONFIG = f"""
[node]
cores = 64

[network]
mode = "managed-novlan"
bridge = "kbr-none"
private_subnet = "10.77.0.0/24"
addresses_per_network = 16

[properties]
"cloud.network.public_ips" = "{POOL[0]}-{POOL[-1]}"
"""


@pytest.fixture
def ns_cloud():
    """Starts private clouds with `koala.toml` text, each inside a new network namespace;
    stops them, ends their instances and deletes the namespaces at the end."""
    made = []

    def make(config):
        ns = Netns("net")
        data_dir = tempfile.mkdtemp(prefix="koala-e2e-net-")
        with open(os.path.join(data_dir, "koala.toml"), "w") as f:
            f.write(config)
        c = Cloud(data_dir, netns=ns.name)
        made.append((c, ns))
        c.start()
        ec2 = make_ec2(c, c.access_key, c.secret_key)
        s3 = make_client(c.s3_url, c.region, c.access_key, c.secret_key)
        return c, ec2, s3

    yield make
    for c, ns in made:
        terminate_all(c)
        c.stop()
        ns.delete()
        if os.environ.get("KOALA_KEEP_DATA") is None:
            shutil.rmtree(c.data_dir, ignore_errors=True)


def instance(ec2, iid):
    found = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"]
    return found[0]


def public_of(ec2, iid):
    return instance(ec2, iid).get("PublicIpAddress")


def addresses(ec2):
    return {a["PublicIp"]: a.get("InstanceId", "")
            for a in ec2.describe_addresses()["Addresses"]}


def test_groups_get_subnets_instances_addresses_and_the_pool_lends_public_ones(
        ns_cloud, guest, tmp_path):
    c, ec2, s3 = ns_cloud(CONFIG)
    _, _, emi, _ = register_guest(c, s3, ec2, tmp_path, guest)

    # Two instances of the default group: the first addresses of its network (10.77.0.0/28,
    # the gateway .1), and two public addresses lent from the pool.
    ran = ec2.run_instances(ImageId=emi, MinCount=2, MaxCount=2)["Instances"]
    a, b = sorted(ran, key=lambda i: i["AmiLaunchIndex"])
    assert [a["PrivateIpAddress"], b["PrivateIpAddress"]] == ["10.77.0.2", "10.77.0.3"]
    assert a["PrivateDnsName"] == "10.77.0.2"
    lent = {a["PublicIpAddress"], b["PublicIpAddress"]}
    assert lent <= set(POOL) and len(lent) == 2
    assert public_of(ec2, a["InstanceId"]) == a["PublicIpAddress"]
    assert instance(ec2, a["InstanceId"])["PublicDnsName"] == a["PublicIpAddress"]

    # Another group has another network; the pool's last address goes to its instance.
    ec2.create_security_group(GroupName="web", Description="web servers")
    w = ec2.run_instances(ImageId=emi, MinCount=1, MaxCount=1,
                          SecurityGroups=["web"])["Instances"][0]
    assert w["PrivateIpAddress"] == "10.77.0.18"
    assert w["PublicIpAddress"] in set(POOL) - lent

    # Every pool address is lent: none to allocate, and a new instance runs private only.
    assert_ec2_error(ec2.allocate_address, "AddressLimitExceeded", status=400)
    p = ec2.run_instances(ImageId=emi, MinCount=1, MaxCount=1)["Instances"][0]
    assert p["PrivateIpAddress"] == "10.77.0.4"
    assert "PublicIpAddress" not in p

    # The filters see the addresses.
    found = ec2.describe_instances(
        Filters=[{"Name": "private-ip-address", "Values": ["10.77.0.18"]}])["Reservations"]
    assert [i["InstanceId"] for r in found for i in r["Instances"]] == [w["InstanceId"]]

    # a ends: its lent address returns to the pool, and the account may allocate it.
    ec2.terminate_instances(InstanceIds=[a["InstanceId"]])
    elastic = ec2.allocate_address(Domain="standard")["PublicIp"]
    assert elastic == a["PublicIpAddress"]

    # Associated with p (which had none), it is p's public address.
    ec2.associate_address(PublicIp=elastic, InstanceId=p["InstanceId"])
    assert public_of(ec2, p["InstanceId"]) == elastic
    assert addresses(ec2) == {elastic: p["InstanceId"]}

    # Moved to b: p loses it (the pool has none to lend it), b's lent address goes back to
    # the pool.
    b_lent = b["PublicIpAddress"]
    ec2.associate_address(PublicIp=elastic, InstanceId=b["InstanceId"])
    assert public_of(ec2, b["InstanceId"]) == elastic
    assert public_of(ec2, p["InstanceId"]) is None

    # Disassociated: the account keeps the address, and the pool lends b one again.
    ec2.disassociate_address(PublicIp=elastic)
    assert public_of(ec2, b["InstanceId"]) == b_lent
    assert addresses(ec2) == {elastic: ""}

    # Associated again, then b ends: the address is the account's, associated with nothing.
    ec2.associate_address(PublicIp=elastic, InstanceId=b["InstanceId"])
    ec2.terminate_instances(InstanceIds=[b["InstanceId"]])
    assert addresses(ec2) == {elastic: ""}

    # euca-describe-instances shows both addresses, as Eucalyptus' users read them.
    out = euca(c, "euca-describe-instances", w["InstanceId"])
    line = rows(out, "INSTANCE")[0]
    assert w["PublicIpAddress"] in line and "10.77.0.18" in line, line


def test_a_deleted_group_frees_its_network_and_a_full_network_refuses(
        ns_cloud, guest, tmp_path):
    small = CONFIG.replace("10.77.0.0/24", "10.77.0.0/27")
    c, ec2, s3 = ns_cloud(small)
    _, _, emi, _ = register_guest(c, s3, ec2, tmp_path, guest)

    # Two networks in the space: the default group's and one more.
    ec2.create_security_group(GroupName="one", Description="first")
    ec2.create_security_group(GroupName="two", Description="second")
    i1 = ec2.run_instances(ImageId=emi, MinCount=1, MaxCount=1,
                           SecurityGroups=["one"])["Instances"][0]
    assert i1["PrivateIpAddress"] == "10.77.0.2"
    i_default = ec2.run_instances(ImageId=emi, MinCount=1, MaxCount=1)["Instances"][0]
    assert i_default["PrivateIpAddress"] == "10.77.0.18"
    # No network is left for a third group.
    assert_ec2_error(ec2.run_instances, "InsufficientAddressCapacity", status=503,
                     ImageId=emi, MinCount=1, MaxCount=1, SecurityGroups=["two"])
    # More instances than a network has addresses (13): refused, nothing recorded.
    before = len(ec2.describe_instances()["Reservations"])
    assert_ec2_error(ec2.run_instances, "InsufficientAddressCapacity", status=503,
                     ImageId=emi, MinCount=13, MaxCount=13, SecurityGroups=["one"])
    assert len(ec2.describe_instances()["Reservations"]) == before

    # Group one's instance ends and the group goes: its network is free for group two.
    ec2.terminate_instances(InstanceIds=[i1["InstanceId"]])
    ec2.delete_security_group(GroupName="one")
    i2 = ec2.run_instances(ImageId=emi, MinCount=1, MaxCount=1,
                           SecurityGroups=["two"])["Instances"][0]
    assert i2["PrivateIpAddress"] == "10.77.0.2"


# setns(2)'s flag for a network namespace.
CLONE_NEWNET = 0x40000000
# `ssh-keygen -t ed25519 -C meta@koala`.
ED_PUB = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEYIezsJFUhKcoR8HP6WtPFS+i/Z1jc7nJdd5nYASjOw "
          "meta@koala")


def metadata(netns, source, path):
    """GET `path` of the metadata service (on 8780 of the cloud's namespace) from address
    `source`, as a guest whose requests the CC redirects; (status, body)."""
    result = {}

    def ask():
        try:
            enter(netns)
            conn = http.client.HTTPConnection("127.0.0.1", 8780, timeout=30,
                                              source_address=(source, 0))
            conn.request("GET", path)
            resp = conn.getresponse()
            result["answer"] = (resp.status, resp.read())
            conn.close()
        except OSError as e:
            result["error"] = e

    t = threading.Thread(target=ask)
    t.start()
    t.join()
    if "error" in result:
        raise result["error"]
    return result["answer"]


def test_each_instance_reads_its_own_metadata_by_its_private_address(
        guest, ns_cloud, tmp_path):
    # The cloud runs in a namespace of its own, where the instances' private addresses can be
    # put on lo: requests from them reach the metadata service with the source a guest's have
    # once the CC has redirected them. Its default port, 0.0.0.0:8780, is the namespace's own.
    c, ec2, s3 = ns_cloud(CONFIG)
    netns = c.netns
    _, _, emi, _ = register_guest(c, s3, ec2, tmp_path, guest)
    ec2.import_key_pair(KeyName="meta-key", PublicKeyMaterial=ED_PUB.encode())
    user_data = b"#!/bin/sh\necho from a\n"
    a = ec2.run_instances(ImageId=emi, MinCount=1, MaxCount=1, KeyName="meta-key",
                          UserData=user_data.decode())["Instances"][0]
    b = ec2.run_instances(ImageId=emi, MinCount=1, MaxCount=1)["Instances"][0]
    a_ip, b_ip = a["PrivateIpAddress"], b["PrivateIpAddress"]
    for ip in (a_ip, b_ip):
        subprocess.run(["ip", "-n", netns, "addr", "add", f"{ip}/32", "dev", "lo"], check=True)

    # Each reads its own items, whatever state it is in (pending or running).
    assert metadata(netns, a_ip, "/latest/meta-data/instance-id") == (200, a["InstanceId"].encode())
    assert metadata(netns, b_ip, "/latest/meta-data/instance-id") == (200, b["InstanceId"].encode())
    assert metadata(netns, a_ip, "/latest/meta-data/local-ipv4") == (200, a_ip.encode())
    assert metadata(netns, a_ip, "/latest/meta-data/public-ipv4") == (
        200, a["PublicIpAddress"].encode())
    assert metadata(netns, a_ip, "/latest/meta-data/reservation-id") == (
        200, ec2.describe_instances(InstanceIds=[a["InstanceId"]])
        ["Reservations"][0]["ReservationId"].encode())
    assert metadata(netns, a_ip, "/latest/meta-data/security-groups") == (200, b"default")
    assert metadata(netns, a_ip, "/latest/meta-data/public-keys/") == (200, b"0=meta-key")
    status, key = metadata(netns, a_ip, "/latest/meta-data/public-keys/0/openssh-key")
    assert status == 200 and ED_PUB.split()[1].encode() in key, key
    assert metadata(netns, a_ip, "/latest/user-data") == (200, user_data)
    # b has no key and no user data, and a public address of its own: it never reads a's.
    assert metadata(netns, b_ip, "/latest/meta-data/public-keys/0/openssh-key")[0] == 404
    assert metadata(netns, b_ip, "/latest/meta-data/public-ipv4") == (
        200, b["PublicIpAddress"].encode())
    assert b["PublicIpAddress"] != a["PublicIpAddress"]
    assert metadata(netns, b_ip, "/latest/user-data")[0] == 404
    assert metadata(netns, b_ip, "/latest/")[1] == b"meta-data"
    # An address no instance holds reads nothing.
    assert metadata(netns, "127.0.0.1", "/latest/meta-data/instance-id") == (
        404, b"No instance of this cloud has the address 127.0.0.1.\n")

    # a ends: its address reads nothing any more; b is still answered.
    ec2.terminate_instances(InstanceIds=[a["InstanceId"]])
    wait_state(ec2, [a["InstanceId"]], {"terminated"}, timeout=120)
    assert metadata(netns, a_ip, "/latest/meta-data/instance-id") == (
        404, f"No instance of this cloud has the address {a_ip}.\n".encode())
    assert metadata(netns, b_ip, "/latest/meta-data/instance-id") == (200, b["InstanceId"].encode())

