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
import time
import uuid

import pytest

from conftest import Cloud, assert_ec2_error, make_client, make_ec2
from netns import Netns, run_in
from test_instances import (BOOT_TIMEOUT, console, euca, guest, register_guest,  # noqa: F401
                            rows, terminate_all, wait_state)

POOL = ["10.98.0.1", "10.98.0.2", "10.98.0.3"]
CONFIG = f"""
[node]
cores = 64

[network]
mode = "managed-novlan"
bridge = "guestbr0"
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

    def make(config, before_start=None, port=None):
        ns = Netns("net")
        data_dir = tempfile.mkdtemp(prefix="koala-e2e-net-")
        with open(os.path.join(data_dir, "koala.toml"), "w") as f:
            f.write(config)
        c = Cloud(data_dir, port=port, netns=ns.name)
        made.append((c, ns))
        # The site's bridge the guests join (MANAGED-NOVLAN's `bridge`), as an admin makes it.
        ns.run("ip", "link", "add", "guestbr0", "type", "bridge")
        ns.run("ip", "link", "set", "guestbr0", "up")
        if before_start:
            before_start(ns)
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


def metadata(netns, source, path, method="GET"):
    """`method path` of the metadata service (on 8780 of the cloud's namespace) from address
    `source` there; (status, body)."""
    def ask():
        conn = http.client.HTTPConnection("127.0.0.1", 8780, timeout=30,
                                          source_address=(source, 0))
        try:
            conn.request(method, path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    return run_in(netns, ask)


def test_the_metadata_service_answers_no_address_that_is_no_instance(ns_cloud):
    # What each instance reads, through the CC's redirect, is in the walk below; the
    # isolation rules are unit-tested beside the handler (ec2-api/src/metadata.rs).
    c, _, _ = ns_cloud(CONFIG)
    none = b"No instance of this cloud has the address 127.0.0.1.\n"
    for path in ["/", "/latest/", "/latest/meta-data/", "/latest/meta-data/instance-id",
                 "/2009-04-04/meta-data/public-keys/0/openssh-key", "/latest/user-data"]:
        assert metadata(c.netns, "127.0.0.1", path) == (404, none), path
    # IMDSv2's token request is refused, so that clients fall back to plain GETs.
    assert metadata(c.netns, "127.0.0.1", "/latest/api/token", method="PUT") == (
        405, b"The metadata service answers GET and HEAD only.\n")


# ---------------------------------------------------------------------------------------------
# A user's walk from the issue: a key pair, two instances, a rule, an elastic IP, ssh.

# TEST-NET-1 (RFC 5737): the "public" network lives only between the cloud's namespace and
# an "outside" namespace standing for a user's machine.
PUBLIC_POOL = ("192.0.2.10", "192.0.2.20")
HOST_PUBLIC = "192.0.2.2"
USER_ADDRESS = "192.0.2.1"
SSH_OPTIONS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "BatchMode=yes", "-o", "ConnectTimeout=3", "-o", "LogLevel=ERROR"]


def console_line(ec2, iid, prefix, timeout=BOOT_TIMEOUT):
    """The first console line of `iid` starting with `prefix`, waited for."""
    deadline = time.monotonic() + timeout
    while True:
        for line in console(ec2, iid).splitlines():
            if prefix in line:
                return line[line.index(prefix):].strip()
        if time.monotonic() > deadline:
            pytest.fail(f"{iid}: no {prefix} on the console within {timeout} s:\n"
                        + console(ec2, iid)[-3000:])
        time.sleep(1)


def ssh(outside, key, address, command="echo hello from $(cat /etc/hostname 2>/dev/null)"):
    """Runs `command` in the instance at `address` over ssh from the outside namespace."""
    return outside.run("ssh", "-i", key, *SSH_OPTIONS, f"root@{address}", command,
                       check=False, timeout=30)


def wait_ssh(outside, key, address, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        done = ssh(outside, key, address)
        if done.returncode == 0:
            return done.stdout
        if time.monotonic() > deadline:
            pytest.fail(f"ssh root@{address} kept failing: {done.stderr}")
        time.sleep(1)


def servers(ns, name):
    """How many processes called `name` run in namespace `ns`."""
    pids = subprocess.run(["ip", "netns", "pids", ns.name], capture_output=True, text=True,
                          check=True).stdout.split()
    count = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/comm") as f:
                count += f.read().strip() == name
        except OSError:
            pass
    return count


def pinged(outside, address):
    """Whether one ping from the outside namespace to `address` is answered (busybox's ping:
    1 is no answer; anything else is a broken test, not a refusal)."""
    done = outside.run("busybox", "ping", "-c", "1", "-W", "1", address, check=False)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode == 0


def refused(outside, key, address, within=5.0):
    """Whether ssh to `address` is refused (the group's rules drop it) within `within`
    seconds of a change, and stays so for the next attempt."""
    deadline = time.monotonic() + within
    while ssh(outside, key, address).returncode == 0:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return ssh(outside, key, address).returncode != 0


# The private network between the cloud's hosts (MANAGED carries its VLANs over it as VXLAN
# segments, its default; this kernel has no 802.1Q for tagged ones).
PRIVATE_NET = "192.168.77.{}/24"


def network_keys(mode):
    """Where a host's guests join the cloud's network, in `mode`."""
    if mode == "managed":
        return 'private_interface = "kpriv0"'  # VLANs carried as VXLAN, the default
    return 'bridge = "guestbr0"'


def public_link(c_ns, outside):
    """The cloud's public interface `kpub0`: a veth to the user's namespace."""
    c_ns.run("ip", "link", "add", "kpub0", "type", "veth", "peer", "name", "eth0",
             "netns", outside.name)
    c_ns.run("ip", "addr", "add", f"{HOST_PUBLIC}/24", "dev", "kpub0")
    c_ns.run("ip", "link", "set", "kpub0", "up")
    outside.run("ip", "addr", "add", f"{USER_ADDRESS}/24", "dev", "eth0")
    outside.run("ip", "link", "set", "eth0", "up")


def private_link(host_ns, number, switch=None):
    """Host `number`'s private interface `kpriv0`: a veth into the switch namespace's bridge,
    or (one host alone) to a peer of its own."""
    if switch:
        port = f"sw{number}-{host_ns.name[-6:]}"
        host_ns.run("ip", "link", "add", "kpriv0", "type", "veth", "peer", "name", port,
                    "netns", switch.name)
        switch.run("ip", "link", "set", port, "master", "switch", "up")
    else:
        host_ns.run("ip", "link", "add", "kpriv0", "type", "veth", "peer", "name", "kpriv0-peer")
        host_ns.run("ip", "link", "set", "kpriv0-peer", "up")
    host_ns.run("ip", "addr", "add", PRIVATE_NET.format(number), "dev", "kpriv0")
    host_ns.run("ip", "link", "set", "kpriv0", "up")


@pytest.mark.parametrize("mode", ["managed-novlan", "managed"])
def test_a_user_reaches_an_instance_over_ssh_through_its_elastic_ip(
        ns_cloud, guest, tmp_path, mode):
    outside = Netns("user")
    try:
        _walk(ns_cloud, guest, tmp_path, mode, outside)
    finally:
        outside.delete()


def user_cloud(ns_cloud, mode, outside, port=None):
    """A cloud in MANAGED mode `mode` in its own namespace, whose public interface is a veth
    to the user's namespace `outside` (and, in MANAGED, with a private interface of its own),
    made before the cloud starts, on main port `port` (any free one by default): (cloud, ec2,
    s3, the cloud's namespace)."""
    config = f"""
[node]
cores = 16

[network]
mode = "{mode}"
{network_keys(mode)}
public_interface = "kpub0"
private_subnet = "10.77.0.0/24"
addresses_per_network = 16

[properties]
"cloud.network.public_ips" = "{PUBLIC_POOL[0]}-{PUBLIC_POOL[1]}"
"""
    made = {}

    def plumbed(c_ns):
        public_link(c_ns, outside)
        if mode == "managed":
            private_link(c_ns, 1)
        made["ns"] = c_ns

    c, ec2, s3 = ns_cloud(config, before_start=plumbed, port=port)
    return c, ec2, s3, made["ns"]


def _walk(ns_cloud, guest, tmp_path, mode, outside):
    c, ec2, s3, ns = user_cloud(ns_cloud, mode, outside)
    eki, eri, emi, _ = register_guest(c, s3, ec2, tmp_path, guest)

    # euca-add-keypair mykey > mykey.private && chmod 0600 mykey.private
    key = tmp_path / "mykey.private"
    key.write_text(euca(c, "euca-add-keypair", "mykey"))
    os.chmod(key, 0o600)
    # euca-run-instances -k mykey -n 2 emi-...
    out = euca(c, "euca-run-instances", "-k", "mykey", "-n", "2", "-d", "hello guests", emi)
    ids = [r[1] for r in rows(out, "INSTANCE")]
    assert len(ids) == 2, out
    for iid in ids:
        assert console_line(ec2, iid, "KOALA-GUEST-SSH") == "KOALA-GUEST-SSH key=metadata"
    # euca-describe-instances: private and public addresses.
    described = {r["InstanceId"]: r for r in (instance(ec2, i) for i in ids)}
    for iid, r in described.items():
        net = console_line(ec2, iid, "KOALA-GUEST-NET")
        assert net == f"KOALA-GUEST-NET ip={r['PrivateIpAddress']}", net
        assert r["PublicIpAddress"].startswith("192.0.2.")

    first = described[ids[0]]
    # Default deny: no ssh, no ping, before any rule.
    assert refused(outside, str(key), first["PublicIpAddress"])
    assert not pinged(outside, first["PublicIpAddress"])

    # euca-authorize -P tcp -p 22 -s 0.0.0.0/0 default
    euca(c, "euca-authorize", "-P", "tcp", "-p", "22", "-s", "0.0.0.0/0", "default")
    said = wait_ssh(outside, str(key), first["PublicIpAddress"], timeout=10)
    assert "hello from" in said

    # Each instance reads its own metadata, through the CC's redirect of 169.254.169.254.
    def asked(address, path):
        return ssh(outside, str(key), address,
                   f"wget -qO- http://169.254.169.254/latest/{path}").stdout

    assert asked(first["PublicIpAddress"], "meta-data/instance-id") == ids[0]
    assert asked(first["PublicIpAddress"], "meta-data/local-ipv4") == first["PrivateIpAddress"]
    assert asked(first["PublicIpAddress"], "meta-data/public-ipv4") == first["PublicIpAddress"]
    assert asked(first["PublicIpAddress"], "meta-data/public-keys/0/openssh-key").startswith(
        "ssh-rsa ")
    assert asked(first["PublicIpAddress"], "user-data") == "hello guests"
    second = described[ids[1]]
    assert asked(second["PublicIpAddress"], "meta-data/instance-id") == ids[1]

    # ICMP is still refused until it is authorized.
    assert not pinged(outside, first["PublicIpAddress"])

    # euca-authorize -P icmp -t -1:-1 -s 0.0.0.0/0 default: ping answers.
    euca(c, "euca-authorize", "-P", "icmp", "-t", "-1:-1", "-s", "0.0.0.0/0", "default")
    deadline = time.monotonic() + 5
    while not pinged(outside, first["PublicIpAddress"]):
        assert time.monotonic() < deadline, "ping still refused after the ICMP rule:\n" + (
            ns.run("nft", "list", "table", "ip", "koala", check=False).stdout)

    # euca-allocate-address; euca-associate-address IP -i i-...
    out = euca(c, "euca-allocate-address")
    elastic = rows(out, "ADDRESS")[0][1]
    euca(c, "euca-associate-address", elastic, "-i", ids[1])
    assert instance(ec2, ids[1])["PublicIpAddress"] == elastic
    # ssh -i mykey.private root@ELASTIC: a shell in the instance.
    said = wait_ssh(outside, str(key), elastic, timeout=10)
    assert "hello from" in said
    assert outside.run("ssh", "-i", str(key), *SSH_OPTIONS, f"root@{elastic}",
                       "ip -4 -o addr show eth0", check=False,
                       timeout=30).stdout.count(described[ids[1]]["PrivateIpAddress"]) == 1

    # The whole cloud restarts with the instances running: the CC applies the plan it kept,
    # the NC plugs its guests again, nothing is doubled (rules, DHCP servers).
    table = ns.run("nft", "list", "table", "ip", "koala").stdout
    c.stop()
    c.start()
    wait_ssh(outside, str(key), elastic, timeout=30)
    assert ns.run("nft", "list", "table", "ip", "koala").stdout == table
    # One DHCP server: the restarted CC replaced the one its predecessor left.
    deadline = time.monotonic() + 10
    while servers(ns, "dnsmasq") != 1:
        assert time.monotonic() < deadline, f"{servers(ns, 'dnsmasq')} DHCP servers run"
        time.sleep(0.5)

    # Another account's instance sits in its own group's network, out of reach of ours
    # until its group lets ours in.
    bob = c.create_account("bob")
    ec2_bob = make_ec2(c, bob["AWS_ACCESS_KEY_ID"], bob["AWS_SECRET_ACCESS_KEY"])
    for image in (eki, eri, emi):
        ec2.modify_image_attribute(ImageId=image,
                                   LaunchPermission={"Add": [{"Group": "all"}]})
    theirs = ec2_bob.run_instances(ImageId=emi, MinCount=1, MaxCount=1)["Instances"][0]
    their_ip = theirs["PrivateIpAddress"]
    assert their_ip == "10.77.0.18", their_ip  # the second network, 10.77.0.16/28
    console_line(ec2_bob, theirs["InstanceId"], "KOALA-GUEST-NET ip=")

    def ping_from_ours():
        done = ssh(outside, str(key), elastic, f"ping -c 1 -W 1 {their_ip}")
        assert done.returncode in (0, 1), done.stderr  # 255: ssh itself failed
        return done.returncode == 0

    assert not ping_from_ours()
    ec2_bob.authorize_security_group_ingress(
        GroupName="default", IpPermissions=[{"IpProtocol": "icmp", "FromPort": -1,
                                             "ToPort": -1,
                                             "IpRanges": [{"CidrIp": "10.77.0.0/24"}]}])
    deadline = time.monotonic() + 5
    while not ping_from_ours():
        assert time.monotonic() < deadline, "bob's group let ours in, and ping still fails"
    ec2_bob.terminate_instances(InstanceIds=[theirs["InstanceId"]])

    # Revoked: refused again.
    euca(c, "euca-revoke", "-P", "tcp", "-p", "22", "-s", "0.0.0.0/0", "default")
    assert refused(outside, str(key), elastic)

    # Terminated: nothing of them is left in the cloud's namespace: no tap, no rule naming them.
    euca(c, "euca-terminate-instances", *ids)
    wait_state(ec2, ids, {"terminated"}, timeout=120)
    deadline = time.monotonic() + 10
    while True:
        links = ns.run("ip", "-o", "link").stdout
        table = ns.run("nft", "list", "table", "ip", "koala", check=False).stdout
        # The DHCP server's table names none of them; with no guest network left it stops
        # (and keeps no lease database).
        with open(os.path.join(c.data_dir, "cluster", "network", "dhcp", "hosts")) as f:
            hosts = f.read()
        # (MANAGED: the VLANs' bridges and VXLAN interfaces go with their last guest.)
        if ("ktap" not in links and "kbr-" not in links and "kvx-" not in links
                and "10.77.0.2 " not in table and elastic not in table
                and "d0:0d" not in hosts and servers(ns, "dnsmasq") == 0):
            break
        if time.monotonic() > deadline:
            pytest.fail(f"left behind after terminate:\n{links}\n{table}\n{hosts}\n"
                        f"{servers(ns, 'dnsmasq')} DHCP servers")
        time.sleep(0.5)


def test_the_15_guides_walkthrough_typed_as_printed(ns_cloud, guest, tmp_path):
    """The Eucalyptus 1.5 administrator's and user's guides, command by command as printed,
    against `koala up` on Eucalyptus' ports (8773, its CC on 8774 and NC on 8775) on a host of
    its own: the cluster and node registered with `euca_conf -addcluster` / `-addnode`, bundles
    written to the temp folder (no -d, no -r), registered without -n, a machine image naming no
    kernel or ramdisk booting on the cloud's defaults, `euca-add-keypair`'s output as the ssh
    key file, `euca-authorize -S`, an elastic IP and ssh through it, and euca-delete-bundle with
    euca2ools 1.x's -a/-s/--url."""
    outside = Netns("user")
    try:
        _guides(ns_cloud, guest, tmp_path, outside)
    finally:
        outside.delete()


def _guides(ns_cloud, guest, tmp_path, outside):
    from test_ec2_images import TOOLS
    from conftest import empty_and_delete

    c, ec2, s3, ns = user_cloud(ns_cloud, "managed-novlan", outside, port=8773)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = dict(c.admin_env(), TMPDIR=str(tmp))

    def run(*args, on_cloud_host=False):
        # The admin's euca_conf runs on the cloud's host, where the CC and NC ports are.
        prefix = ["ip", "netns", "exec", c.netns] if on_cloud_host else []
        result = subprocess.run([*prefix, os.path.join(TOOLS, args[0]), *args[1:]], env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{args}: {result.stderr}"
        return result.stdout

    def room():
        # euca-describe-availability-zones verbose: the m1.small line's "free / max".
        lines = rows(run("euca-describe-availability-zones", "verbose"), "AVAILABILITYZONE")
        small = [r[2] for r in lines if r[1] == "|- m1.small"]
        assert len(small) == 1, lines
        return small[0].split()[:3]

    before = room()
    assert before[0] == before[2] and int(before[0]) > 0, before
    # Administrator's guide: euca_conf -addcluster <name> <host>; euca_conf -addnode "<hosts>".
    # `koala up` registered its own already: these confirm them, and add nothing twice.
    out = run("euca_conf", "-addcluster", "cluster01", "127.0.0.1", on_cloud_host=True)
    assert out.startswith("Registered cluster cluster01 at 127.0.0.1:8774"), out
    out = run("euca_conf", "-addnode", "127.0.0.1", on_cloud_host=True)
    assert out.startswith("Registered node 127.0.0.1:8775 ("), out
    zones = rows(run("euca-describe-availability-zones"), "AVAILABILITYZONE")
    assert [r[1] for r in zones] == ["cluster01"], zones
    assert room() == before

    # User's guide: euca-bundle-image -i <image> [--kernel true]; euca-upload-bundle -b
    # <bucket> -m /tmp/<image>.manifest.xml; euca-register <bucket>/<image>.manifest.xml
    tag = uuid.uuid4().hex[:8]
    bucket = f"guide-{tag}"

    def publish(path, *flags):
        name = f"{tag}-{os.path.basename(path)}"
        local = tmp_path / name
        shutil.copyfile(path, local)
        run("euca-bundle-image", "-i", str(local), *flags)
        run("euca-upload-bundle", "-b", bucket, "-m", str(tmp / f"{name}.manifest.xml"))
        return rows(run("euca-register", f"{bucket}/{name}.manifest.xml"), "IMAGE")[0][1]

    eki = publish(guest["kernel"], "--kernel", "true")
    eri = publish(guest["ramdisk"], "--ramdisk", "true")
    emi = publish(guest["disk"])
    images = {r[1]: r for r in rows(run("euca-describe-images"), "IMAGE")}
    assert {eki, eri, emi} <= set(images)
    # The machine image names no kernel: the cloud's defaults boot it.
    run("euca-modify-property", "-p", f"cloud.images.default_kernel={eki}")
    run("euca-modify-property", "-p", f"cloud.images.default_ramdisk={eri}")

    # euca-add-keypair mykey > mykey.private; chmod 0600 mykey.private
    key = tmp_path / "mykey.private"
    key.write_text(run("euca-add-keypair", "mykey"))
    os.chmod(key, 0o600)
    # euca-run-instances -k mykey -n 2 <emi>
    out = run("euca-run-instances", "-k", "mykey", "-n", "2", emi)
    ids = [r[1] for r in rows(out, "INSTANCE")]
    assert len(ids) == 2, out
    wait_state(ec2, ids, {"running"})
    # euca-describe-instances: running, on the default kernel and ramdisk, with addresses.
    described = {r[1]: r for r in rows(run("euca-describe-instances", *ids), "INSTANCE")}
    assert {(i, r[5], r[12], r[13]) for i, r in described.items()} == {
        (i, "running", eki, eri) for i in ids}
    for iid in ids:
        assert console_line(ec2, iid, "KOALA-GUEST-SSH") == "KOALA-GUEST-SSH key=metadata"
    public = described[ids[0]][16]
    assert public.startswith("192.0.2."), described[ids[0]]
    # Until the group lets ssh in, none gets through.
    assert refused(outside, str(key), public)

    # euca-authorize -P tcp -p 22 -S 0.0.0.0/0 default (the 1.x guides' -S for the CIDR)
    run("euca-authorize", "-P", "tcp", "-p", "22", "-S", "0.0.0.0/0", "default")
    assert "hello from" in wait_ssh(outside, str(key), public, timeout=10)
    # euca-allocate-address; euca-associate-address -i <instance> <address>
    elastic = rows(run("euca-allocate-address"), "ADDRESS")[0][1]
    run("euca-associate-address", "-i", ids[1], elastic)
    assert [r[16] for r in rows(run("euca-describe-instances", ids[1]), "INSTANCE")] == [elastic]
    # ssh -i mykey.private root@<address>
    assert "hello from" in wait_ssh(outside, str(key), elastic, timeout=10)

    run("euca-modify-property", "-r", "cloud.images.default_kernel")
    run("euca-modify-property", "-r", "cloud.images.default_ramdisk")
    # euca-deregister <emi>; euca-delete-bundle -a <access> -s <secret> --url <S3 URL>
    # -b <bucket> -p <image>
    run("euca-deregister", emi)
    access, secret = env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
    run("euca-delete-bundle", "-a", access, "-s", secret, "--url", env["S3_URL"], "-b", bucket,
        "-p", f"{tag}-{os.path.basename(guest['disk'])}")
    left = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert left and not any(os.path.basename(guest["disk"]) in k for k in left), left
    # euca-terminate-instances <instances>
    out = run("euca-terminate-instances", *ids)
    assert {r[1] for r in rows(out, "INSTANCE")} == set(ids)
    wait_state(ec2, ids, {"terminated"}, timeout=60)
    # The elastic IP stays the user's until released.
    assert [a["PublicIp"] for a in ec2.describe_addresses()["Addresses"]] == [elastic]
    run("euca-release-address", elastic)
    for image in (eki, eri):
        run("euca-deregister", image)
    empty_and_delete(s3, bucket)


# ---------------------------------------------------------------------------------------------
# MANAGED across hosts: the cloud's namespace and a second node's namespace stand for two
# hosts, their private interfaces veths into a third namespace's bridge (the site's switch).


def test_managed_vlans_carry_a_group_across_two_nodes(ns_cloud, guest, tmp_path):
    switch, host_b, outside = Netns("sw"), Netns("nodeb"), Netns("user")
    switch.run("ip", "link", "add", "switch", "type", "bridge")
    switch.run("ip", "link", "set", "switch", "up")
    started = []
    try:
        _across_nodes(ns_cloud, guest, tmp_path, switch, host_b, outside, started)
    finally:
        for thing in reversed(started):
            thing()
        for ns in (host_b, outside, switch):
            ns.delete()


def _across_nodes(ns_cloud, guest, tmp_path, switch, host_b, outside, started):
    from test_ec2_images import TOOLS
    from test_instances import Role
    from conftest import free_port
    from netns import Forward

    network = f"""
[network]
mode = "managed"
{network_keys("managed")}
public_interface = "kpub0"
private_subnet = "10.77.0.0/24"
addresses_per_network = 16
"""
    # One core on each host: the second instance must go to the other node.
    config = f"""
[node]
cores = 1
{network}
[properties]
"cloud.network.public_ips" = "{PUBLIC_POOL[0]}-{PUBLIC_POOL[1]}"
"""

    def plumbed(c_ns):
        public_link(c_ns, outside)
        private_link(c_ns, 1, switch)

    c, ec2, s3 = ns_cloud(config, before_start=plumbed)
    private_link(host_b, 2, switch)
    # The second host's node reaches the cloud's port on its loopback, and the CC reaches
    # the node's; the bytes are relayed by this process (tests/python/netns.py).
    node_port = free_port()
    for ns, port, listen_in in ((c.netns, c.port, host_b.name),
                                (c.netns, c.port + 1, host_b.name),
                                (host_b.name, node_port, c.netns)):
        relay = Forward(ns, port, listen_in=listen_in)
        started.append(relay.close)
    cloud_url = c.root_url.replace("http://", "https://")
    node_b = Role(["node", "--cloud-url", cloud_url], node_port, c.admin_env(),
                  f'[node]\nhost = "node-b"\ncores = 1\n{network}', netns=host_b.name)
    started.append(node_b.stop)
    # Guests still running when the test ends are ended before node-b stops.
    started.append(lambda: terminate_all(c))
    out = subprocess.run(["ip", "netns", "exec", c.netns, os.path.join(TOOLS, "euca_conf"),
                          "--register-nodes", f"127.0.0.1:{node_port}", "--cluster-url",
                          f"http://127.0.0.1:{c.port + 1}"], env=c.admin_env(),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "(node-b): 1 cores" in out.stdout, out.stdout + out.stderr

    _, _, emi, _ = register_guest(c, s3, ec2, tmp_path, guest)
    key = tmp_path / "mykey.private"
    key.write_text(euca(c, "euca-add-keypair", "mykey"))
    os.chmod(key, 0o600)
    ids = [ec2.run_instances(ImageId=emi, MinCount=1, MaxCount=1,
                             KeyName="mykey")["Instances"][0]["InstanceId"] for _ in range(2)]
    homes = {iid: [d for d in (c.data_dir, node_b.data_dir)
                   if os.path.isdir(os.path.join(d, "node", "instances", iid))] for iid in ids}
    assert sorted(map(len, homes.values())) == [1, 1] and homes[ids[0]] != homes[ids[1]], homes

    # Both guests are in the default group's network (VLAN 10): the one on node-b got its
    # address from the CC's DHCP server and its key from the metadata service, both across
    # the VXLAN segment.
    described = {iid: instance(ec2, iid) for iid in ids}
    for iid, r in described.items():
        assert console_line(ec2, iid, "KOALA-GUEST-NET") == \
            f"KOALA-GUEST-NET ip={r['PrivateIpAddress']}"
        assert console_line(ec2, iid, "KOALA-GUEST-SSH") == "KOALA-GUEST-SSH key=metadata"
    assert host_b.run("ip", "-d", "link", "show", "kvx-10").stdout.count("vxlan id 10") == 1

    # ssh reaches each through its public address once port 22 is open.
    euca(c, "euca-authorize", "-P", "tcp", "-p", "22", "-s", "0.0.0.0/0", "default")
    for r in described.values():
        assert "hello from" in wait_ssh(outside, str(key), r["PublicIpAddress"], timeout=20)

    # The two guests reach each other across the hosts once the group lets itself in (ICMP
    # from the group, a group-to-group grant).
    a, b = (described[i] for i in ids)

    def ping(source, target):
        done = ssh(outside, str(key), source["PublicIpAddress"],
                   f"ping -c 1 -W 1 {target['PrivateIpAddress']}")
        assert done.returncode in (0, 1), done.stderr
        return done.returncode == 0

    assert not ping(a, b)
    ec2.authorize_security_group_ingress(
        GroupName="default", IpPermissions=[{"IpProtocol": "icmp", "FromPort": -1, "ToPort": -1,
                                             "UserIdGroupPairs": [{"GroupName": "default"}]}])
    deadline = time.monotonic() + 5
    while not (ping(a, b) and ping(b, a)):
        assert time.monotonic() < deadline, "the group let itself in, and ping still fails"

    # Both end: neither host keeps a tap, a VLAN bridge or a VXLAN interface.
    ec2.terminate_instances(InstanceIds=ids)
    wait_state(ec2, ids, {"terminated"}, timeout=120)
    deadline = time.monotonic() + 10
    while True:
        left = [subprocess.run(["ip", "-n", name, "-o", "link"], capture_output=True,
                               text=True, check=True).stdout for name in (c.netns, host_b.name)]
        if not any(p in text for text in left for p in ("ktap", "kbr-", "kvx-")):
            break
        if time.monotonic() > deadline:
            pytest.fail("left behind after terminate:\n" + "\n".join(left))
        time.sleep(0.5)


# ---------------------------------------------------------------------------------------------
# STATIC: the admin's MAC→IP table; the CC's DHCP server serves it on the site's bridge.

STATIC_HOSTS = [("02:00:5e:10:00:0a", "10.78.0.50"), ("02:00:5e:10:00:0b", "10.78.0.51")]


def domain_xml(iid):
    return subprocess.run(["virsh", "-c", "qemu:///system", "dumpxml", iid],
                          capture_output=True, text=True, timeout=60, check=True).stdout


def test_static_gives_each_instance_the_address_its_mac_maps_to(ns_cloud, guest, tmp_path):
    hosts = ", ".join(f'{{ mac = "{mac}", ip = "{ip}" }}' for mac, ip in STATIC_HOSTS)
    config = f"""
[node]
cores = 16

[network]
mode = "static"
bridge = "guestbr0"
private_subnet = "10.78.0.0/24"
router = "10.78.0.1"
hosts = [{hosts}]
"""

    def site(c_ns):
        # The site's network: the bridge carries the router's address (the admin's).
        c_ns.run("ip", "addr", "add", "10.78.0.1/24", "dev", "guestbr0")

    c, ec2, s3 = ns_cloud(config, before_start=site)
    _, _, emi, _ = register_guest(c, s3, ec2, tmp_path, guest)
    key = tmp_path / "mykey.private"
    key.write_text(euca(c, "euca-add-keypair", "mykey"))
    os.chmod(key, 0o600)

    ran = ec2.run_instances(ImageId=emi, MinCount=2, MaxCount=2, KeyName="mykey")["Instances"]
    a, b = sorted(ran, key=lambda i: i["AmiLaunchIndex"])
    assert [a["PrivateIpAddress"], b["PrivateIpAddress"]] == [ip for _, ip in STATIC_HOSTS]
    # The table is full: a third is refused, nothing recorded.
    before = len(ec2.describe_instances()["Reservations"])
    assert_ec2_error(ec2.run_instances, "InsufficientAddressCapacity", status=503,
                     ImageId=emi, MinCount=1, MaxCount=1)
    assert len(ec2.describe_instances()["Reservations"]) == before

    wait_state(ec2, [a["InstanceId"], b["InstanceId"]], {"running"}, timeout=120)
    # Each guest's NIC has its table MAC and got the address that MAC maps to from the CC's
    # DHCP server; ssh reaches it on the site's network (no rules in STATIC).
    for r, (mac, ip) in zip((a, b), STATIC_HOSTS):
        assert f"<mac address='{mac}'/>" in domain_xml(r["InstanceId"])
        assert console_line(ec2, r["InstanceId"], "KOALA-GUEST-NET") == f"KOALA-GUEST-NET ip={ip}"
    ns = Netns.existing(c.netns)
    console_line(ec2, a["InstanceId"], "KOALA-GUEST-SSH")
    said = wait_ssh(ns, str(key), STATIC_HOSTS[0][1], timeout=30)
    assert "hello from" in said

    # No public address is routed in STATIC: elastic IPs are refused, saying why.
    assert_ec2_error(ec2.allocate_address, "UnsupportedOperation", status=400)

    # a ends; its entry is free for the next instance.
    ec2.terminate_instances(InstanceIds=[a["InstanceId"]])
    wait_state(ec2, [a["InstanceId"]], {"terminated"}, timeout=120)
    again = ec2.run_instances(ImageId=emi, MinCount=1, MaxCount=1)["Instances"][0]
    assert again["PrivateIpAddress"] == STATIC_HOSTS[0][1]


# ---------------------------------------------------------------------------------------------
# SYSTEM: the guest's NIC on the site's bridge; the site's own DHCP server gives the address,
# and the cloud learns it from what the guest sends.


def test_system_reports_the_address_the_sites_dhcp_server_gave(ns_cloud, guest, tmp_path):
    site = Netns("site")
    try:
        _system(ns_cloud, guest, tmp_path, site)
    finally:
        site.delete()


def _system(ns_cloud, guest, tmp_path, site):
    config = """
[node]
cores = 16

[network]
mode = "system"
bridge = "guestbr0"
"""

    def site_network(c_ns):
        # The site's LAN: its DHCP server (a dnsmasq of the site's, not Koala's) in its own
        # namespace, a veth to the node's bridge.
        c_ns.run("ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "lan0",
                 "netns", site.name)
        c_ns.run("ip", "link", "set", "uplink0", "master", "guestbr0", "up")
        site.run("ip", "addr", "add", "10.79.0.1/24", "dev", "lan0")
        site.run("ip", "link", "set", "lan0", "up")
        site.popen(["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
                    "--interface=lan0", "--bind-interfaces",
                    "--dhcp-range=10.79.0.100,10.79.0.150,255.255.255.0,1h",
                    f"--dhcp-leasefile={tmp_path / 'site.leases'}",
                    f"--pid-file={tmp_path / 'site.pid'}"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    c, ec2, s3 = ns_cloud(config, before_start=site_network)
    _, _, emi, _ = register_guest(c, s3, ec2, tmp_path, guest)
    key = tmp_path / "mykey.private"
    key.write_text(euca(c, "euca-add-keypair", "mykey"))
    os.chmod(key, 0o600)
    iid = ec2.run_instances(ImageId=emi, MinCount=1, MaxCount=1,
                            KeyName="mykey")["Instances"][0]["InstanceId"]
    # Nothing planned: no address until the guest has one.
    assert "PrivateIpAddress" not in instance(ec2, iid)
    got = console_line(ec2, iid, "KOALA-GUEST-NET ip=").split("=", 1)[1]
    assert got.startswith("10.79.0."), got
    assert 100 <= int(got.rsplit(".", 1)[1]) <= 150, got

    # The cloud learns it from what the guest sends, and shows it.
    deadline = time.monotonic() + 30
    while instance(ec2, iid).get("PrivateIpAddress") != got:
        assert time.monotonic() < deadline, instance(ec2, iid)
        time.sleep(0.5)
    out = euca(c, "euca-describe-instances", iid)
    assert got in rows(out, "INSTANCE")[0], out
    found = ec2.describe_instances(
        Filters=[{"Name": "private-ip-address", "Values": [got]}])["Reservations"]
    assert [i["InstanceId"] for r in found for i in r["Instances"]] == [iid]
    # The site's DHCP server handed out that address to the instance's MAC.
    with open(tmp_path / "site.leases") as f:
        leases = f.read()
    mac = "d0:0d:" + ":".join(iid[-8:][i:i + 2] for i in range(0, 8, 2))
    assert f"{mac} {got}" in leases, leases
    # And the user reaches it on the site's network.
    console_line(ec2, iid, "KOALA-GUEST-SSH")
    assert "hello from" in wait_ssh(site, str(key), got, timeout=30)
    assert_ec2_error(ec2.allocate_address, "UnsupportedOperation", status=400)
