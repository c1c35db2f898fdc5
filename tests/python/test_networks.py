"""Guest addresses in the MANAGED modes, as the CLC decides them (issue 12's first slice):
each security group that runs instances gets its own subnet of the private space, each
instance the lowest free address of it, and a public address lent from the pool for its life;
an elastic IP replaces the lent address and the instance gets one back when it leaves.

The host side (bridges, taps, DHCP, NAT and group rules) is not built yet: the instances boot
without a NIC, and these tests check what a user sees through the EC2 API (boto3 and our
euca-* tools)."""

import pytest

from conftest import assert_ec2_error
from test_instances import euca, fault_cloud, guest, register_guest, rows  # noqa: F401

POOL = ["10.98.0.1", "10.98.0.2", "10.98.0.3"]
CONFIG = f"""
[node]
cores = 64

[network]
mode = "managed-novlan"
bridge = "kbr-none"
private_subnet = "10.77.0.0/24"
addresses_per_network = 16
# The metadata service's own port: any free one, so that these clouds never contend for
# the default 0.0.0.0:8780.
metadata_listen = "127.0.0.1:0"

[properties]
"cloud.network.public_ips" = "{POOL[0]}-{POOL[-1]}"
"""


def instance(ec2, iid):
    found = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"]
    return found[0]


def public_of(ec2, iid):
    return instance(ec2, iid).get("PublicIpAddress")


def addresses(ec2):
    return {a["PublicIp"]: a.get("InstanceId", "")
            for a in ec2.describe_addresses()["Addresses"]}


def test_groups_get_subnets_instances_addresses_and_the_pool_lends_public_ones(
        fault_cloud, guest, tmp_path):
    c, ec2, s3 = fault_cloud(CONFIG)
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
    assert_ec2_error(ec2.allocate_address, "AddressLimitExceeded", 400)
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
        fault_cloud, guest, tmp_path):
    small = CONFIG.replace("10.77.0.0/24", "10.77.0.0/27")
    c, ec2, s3 = fault_cloud(small)
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
    assert_ec2_error(ec2.run_instances, "InsufficientAddressCapacity", 503,
                     ImageId=emi, MinCount=1, MaxCount=1, SecurityGroups=["two"])
    # More instances than a network has addresses (13): refused, nothing recorded.
    before = len(ec2.describe_instances()["Reservations"])
    assert_ec2_error(ec2.run_instances, "InsufficientAddressCapacity", 503,
                     ImageId=emi, MinCount=13, MaxCount=13, SecurityGroups=["one"])
    assert len(ec2.describe_instances()["Reservations"]) == before

    # Group one's instance ends and the group goes: its network is free for group two.
    ec2.terminate_instances(InstanceIds=[i1["InstanceId"]])
    ec2.delete_security_group(GroupName="one")
    i2 = ec2.run_instances(ImageId=emi, MinCount=1, MaxCount=1,
                           SecurityGroups=["two"])["Instances"][0]
    assert i2["PrivateIpAddress"] == "10.77.0.2"
