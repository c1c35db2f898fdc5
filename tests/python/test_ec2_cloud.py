"""The cloud-wide EC2 resources through boto3, the aws CLI and raw Query requests: elastic IPs
from the public pool, availability zones and regions, cloud properties (Eucalyptus'
euca-describe-properties / euca-modify-property) and tags. The suite runs its own `koala up`
whose koala.toml gives the pool 10.99.0.1-10.99.0.3, so that exhaustion is reachable and
the starting values of properties are known."""

import json
import os
import re
import shutil
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
import xml.etree.ElementTree as ET

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from conftest import _ISOLATION, AwsCli, Cloud, assert_ec2_error, free_port, make_ec2

POOL = ["10.99.0.1", "10.99.0.2", "10.99.0.3"]
POOL_SETTING = "10.99.0.1-10.99.0.3"
ID = re.compile(r"^eipalloc-[0-9a-f]{8}$")


# ---------------------------------------------------------------------------------------------
# Fixtures: a cloud of our own, accounts, clients


@pytest.fixture(scope="module")
def ecloud():
    """A cloud whose koala.toml sets the public address pool."""
    data_dir = tempfile.mkdtemp(prefix="koala-e2e-ec2cloud-")
    with open(os.path.join(data_dir, "koala.toml"), "w") as f:
        # A node of a known size, so that the zone's capacity is the same on every host.
        f.write("[node]\ncores = 4\nmemory_mib = 4096\ndisk_gib = 100\n\n"
                f'[properties]\n"cloud.network.public_ips" = "{POOL_SETTING}"\n')
    c = Cloud(data_dir).start()
    yield c
    c.stop()
    if os.environ.get("KOALA_KEEP_DATA") is None:
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def admin(ecloud):
    return make_ec2(ecloud, ecloud.access_key, ecloud.secret_key)


@pytest.fixture(scope="module")
def alice_env(ecloud):
    return ecloud.create_account("alice" + uuid.uuid4().hex[:8])


@pytest.fixture(scope="module")
def bob_env(ecloud):
    return ecloud.create_account("bob" + uuid.uuid4().hex[:8])


@pytest.fixture(scope="module")
def alice(ecloud, alice_env):
    return make_ec2(ecloud, alice_env["AWS_ACCESS_KEY_ID"], alice_env["AWS_SECRET_ACCESS_KEY"])


@pytest.fixture(scope="module")
def bob(ecloud, bob_env):
    return make_ec2(ecloud, bob_env["AWS_ACCESS_KEY_ID"], bob_env["AWS_SECRET_ACCESS_KEY"])


def cli_for(ecloud, workdir, account_env=None):
    """The aws CLI with the admin eucarc's environment, or another account's keys."""
    config = os.path.join(workdir, "config")
    with open(config, "w") as f:
        f.write("[default]\n")
    env = ecloud.admin_env()
    if account_env is not None:
        env.update({k: account_env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")})
    env.update(_ISOLATION)
    env.update({"HOME": workdir, "AWS_CONFIG_FILE": config, "AWS_PAGER": "",
                "AWS_RETRY_MODE": "standard", "AWS_MAX_ATTEMPTS": "1",
                "AWS_DEFAULT_REGION": ecloud.region})
    env.pop("AWS_PROFILE", None)
    return AwsCli(ecloud, env, workdir)


@pytest.fixture(scope="module")
def cli(ecloud, tmp_path_factory):
    if shutil.which("aws") is None:
        pytest.fail("the aws CLI is not on PATH (put the venv's bin first)")
    return cli_for(ecloud, str(tmp_path_factory.mktemp("aws-admin")))


@pytest.fixture(scope="module")
def alice_cli(ecloud, alice_env, tmp_path_factory):
    return cli_for(ecloud, str(tmp_path_factory.mktemp("aws-alice")), alice_env)


def ec2_cli(cli, ecloud, *args, check=True):
    """`aws ec2 ARGS --output json` on the cloud's EC2 endpoint: (result, parsed JSON)."""
    result = cli("ec2", *args, "--output", "json", endpoint=ecloud.env["EC2_URL"], check=check)
    if result.returncode != 0:
        return result, None
    return result, json.loads(result.stdout) if result.stdout.strip() else {}


@pytest.fixture(autouse=True)
def no_addresses_left(request):
    """Every test gives back what it allocated, so each starts with the whole pool free."""
    yield
    if "ecloud" not in request.fixturenames:
        return
    for name in ("alice", "bob", "admin"):
        if name in request.fixturenames:
            client = request.getfixturevalue(name)
            for a in client.describe_addresses()["Addresses"]:
                client.release_address(AllocationId=a["AllocationId"])


# ---------------------------------------------------------------------------------------------
# Raw Query requests (Eucalyptus' property actions have no boto3 model)


NS = re.compile(r"\{[^}]*\}")


def strip_ns(root):
    for el in root.iter():
        el.tag = NS.sub("", el.tag)
    return root


def query(ecloud, action, params=(), path="/services/Eucalyptus/", keys=None):
    """POSTs Action=ACTION with SigV4 (service ec2); returns (status, root element)."""
    access, secret = keys or (ecloud.access_key, ecloud.secret_key)
    form = [("Action", action), ("Version", "2015-10-01"), *params]
    body = urllib.parse.urlencode(form).encode()
    url = ecloud.root_url + path
    req = AWSRequest(method="POST", url=url, data=body,
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    SigV4Auth(Credentials(access, secret), "ec2", ecloud.region).add_auth(req)
    http_req = urllib.request.Request(url, data=body, method="POST",
                                      headers=dict(req.headers.items()))
    try:
        with urllib.request.urlopen(http_req, timeout=30) as resp:
            status, data = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, data = e.code, e.read()
    return status, strip_ns(ET.fromstring(data))


def error_code(root):
    code = root.find("Errors/Error/Code")
    assert code is not None, ET.tostring(root)
    return code.text


def describe_properties(ecloud, *names, **kw):
    params = [(f"Property.{i}", n) for i, n in enumerate(names, 1)]
    status, root = query(ecloud, "DescribeProperties", params, **kw)
    assert status == 200, ET.tostring(root)
    return {item.findtext("name"): (item.findtext("value"), item.findtext("description"))
            for item in root.findall("properties/item")}


def modify_property(ecloud, name, value=None, reset=False, **kw):
    params = [("Name", name)]
    if value is not None:
        params.append(("Value", value))
    if reset:
        params.append(("Reset", "true"))
    return query(ecloud, "ModifyPropertyValue", params, **kw)


# ---------------------------------------------------------------------------------------------
# Elastic IPs


def test_allocate_until_the_pool_is_exhausted_then_release_and_reuse(alice):
    got = [alice.allocate_address() for _ in POOL]
    assert sorted(a["PublicIp"] for a in got) == POOL
    for a in got:
        assert a["Domain"] == "standard"
        assert ID.match(a["AllocationId"]), a
    assert len({a["AllocationId"] for a in got}) == 3
    assert_ec2_error(alice.allocate_address, "AddressLimitExceeded", status=400)

    alice.release_address(PublicIp="10.99.0.2")
    listed = alice.describe_addresses()["Addresses"]
    assert [a["PublicIp"] for a in listed] == ["10.99.0.1", "10.99.0.3"]
    again = alice.allocate_address()
    assert again["PublicIp"] == "10.99.0.2"
    assert again["AllocationId"] not in {a["AllocationId"] for a in got}
    alice.release_address(AllocationId=again["AllocationId"])
    assert_ec2_error(alice.release_address, "InvalidAddress.NotFound",
                     AllocationId=again["AllocationId"])


def test_concurrent_allocations_never_share_an_address(ecloud, alice_env):
    results, lock = [], threading.Lock()

    def grab():
        client = make_ec2(ecloud, alice_env["AWS_ACCESS_KEY_ID"],
                          alice_env["AWS_SECRET_ACCESS_KEY"])
        try:
            ip = client.allocate_address()["PublicIp"]
        except ClientError as e:
            ip = e.response["Error"]["Code"]
        with lock:
            results.append(ip)

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = sorted(r for r in results if r.startswith("10."))
    assert won == POOL, results
    assert results.count("AddressLimitExceeded") == 5, results
    client = make_ec2(ecloud, alice_env["AWS_ACCESS_KEY_ID"], alice_env["AWS_SECRET_ACCESS_KEY"])
    for ip in POOL:
        client.release_address(PublicIp=ip)


def test_describe_addresses_by_ip_allocation_id_and_filters(alice):
    a1 = alice.allocate_address()
    a2 = alice.allocate_address()
    every = alice.describe_addresses()["Addresses"]
    assert [a["PublicIp"] for a in every] == [a1["PublicIp"], a2["PublicIp"]]
    for a in every:
        assert a["Domain"] == "standard"
        assert a["InstanceId"] == ""  # empty element, as Eucalyptus
        assert "AssociationId" not in a
    one = alice.describe_addresses(PublicIps=[a2["PublicIp"]])["Addresses"]
    assert [(a["PublicIp"], a["AllocationId"]) for a in one] == [
        (a2["PublicIp"], a2["AllocationId"])]
    one = alice.describe_addresses(AllocationIds=[a1["AllocationId"]])["Addresses"]
    assert [a["PublicIp"] for a in one] == [a1["PublicIp"]]

    def filtered(name, *values):
        return [a["PublicIp"] for a in alice.describe_addresses(
            Filters=[{"Name": name, "Values": list(values)}])["Addresses"]]

    assert filtered("public-ip", a1["PublicIp"]) == [a1["PublicIp"]]
    assert filtered("public-ip", "10.99.0.*") == [a1["PublicIp"], a2["PublicIp"]]
    assert filtered("allocation-id", a2["AllocationId"]) == [a2["PublicIp"]]
    assert filtered("domain", "standard") == [a1["PublicIp"], a2["PublicIp"]]
    assert filtered("domain", "vpc") == []
    assert filtered("instance-id", "i-12345678") == []
    assert_ec2_error(alice.describe_addresses, "InvalidParameterValue",
                     Filters=[{"Name": "no-such-filter", "Values": ["x"]}])
    assert_ec2_error(alice.describe_addresses, "InvalidAddress.NotFound",
                     PublicIps=["10.99.0.3"])
    assert_ec2_error(alice.describe_addresses, "InvalidParameterValue",
                     PublicIps=["not-an-ip"])


def test_one_account_never_sees_nor_touches_anothers_address(alice, bob):
    mine = alice.allocate_address()
    assert bob.describe_addresses()["Addresses"] == []
    assert_ec2_error(bob.describe_addresses, "InvalidAddress.NotFound",
                     PublicIps=[mine["PublicIp"]])
    assert_ec2_error(bob.describe_addresses, "InvalidAddress.NotFound",
                     AllocationIds=[mine["AllocationId"]])
    assert_ec2_error(bob.release_address, "InvalidAddress.NotFound", PublicIp=mine["PublicIp"])
    assert_ec2_error(bob.release_address, "InvalidAddress.NotFound",
                     AllocationId=mine["AllocationId"])
    assert_ec2_error(bob.disassociate_address, "InvalidAddress.NotFound",
                     PublicIp=mine["PublicIp"])
    assert_ec2_error(bob.associate_address, "InvalidAddress.NotFound",
                     PublicIp=mine["PublicIp"], InstanceId="i-12345678")
    theirs = bob.allocate_address()
    assert theirs["PublicIp"] != mine["PublicIp"]
    assert [a["PublicIp"] for a in alice.describe_addresses()["Addresses"]] == [mine["PublicIp"]]
    assert [a["PublicIp"] for a in bob.describe_addresses()["Addresses"]] == [theirs["PublicIp"]]


def test_associate_and_disassociate(alice):
    a = alice.allocate_address()
    # No instance exists until the instances issue: every instance id is unknown.
    assert_ec2_error(alice.associate_address, "InvalidInstanceID.NotFound",
                     PublicIp=a["PublicIp"], InstanceId="i-12345678")
    assert_ec2_error(alice.associate_address, "InvalidInstanceID.NotFound",
                     AllocationId=a["AllocationId"], InstanceId="i-0123456789abcdef0")
    assert_ec2_error(alice.associate_address, "InvalidInstanceID.Malformed",
                     PublicIp=a["PublicIp"], InstanceId="instance-1")
    assert_ec2_error(alice.associate_address, "MissingParameter", InstanceId="i-12345678")
    assert_ec2_error(alice.associate_address, "InvalidParameterCombination",
                     PublicIp=a["PublicIp"], AllocationId=a["AllocationId"],
                     InstanceId="i-12345678")
    assert_ec2_error(alice.associate_address, "InvalidAddress.NotFound",
                     PublicIp="10.99.0.200", InstanceId="i-12345678")
    # Disassociating an address that is not associated leaves it as it is.
    alice.disassociate_address(PublicIp=a["PublicIp"])
    assert_ec2_error(alice.disassociate_address, "InvalidAddress.NotFound",
                     AssociationId="eipassoc-12345678")
    assert_ec2_error(alice.disassociate_address, "InvalidAddress.Malformed",
                     AssociationId="assoc-1")
    listed = alice.describe_addresses()["Addresses"]
    assert [(x["PublicIp"], x["InstanceId"]) for x in listed] == [(a["PublicIp"], "")]


def test_release_needs_one_valid_handle(alice):
    assert_ec2_error(alice.release_address, "MissingParameter")
    assert_ec2_error(alice.release_address, "InvalidParameterValue", PublicIp="10.99.0")
    assert_ec2_error(alice.release_address, "InvalidAddress.Malformed", AllocationId="eip-1")
    assert_ec2_error(alice.release_address, "InvalidAddress.NotFound", PublicIp="10.99.0.1")


def test_allocate_in_the_vpc_domain_and_refuse_unknown_domains(alice):
    a = alice.allocate_address(Domain="vpc")
    assert a["Domain"] == "vpc" and ID.match(a["AllocationId"])
    listed = alice.describe_addresses(Filters=[{"Name": "domain", "Values": ["vpc"]}])
    assert [x["PublicIp"] for x in listed["Addresses"]] == [a["PublicIp"]]
    assert_ec2_error(alice.allocate_address, "InvalidParameterValue", Domain="classic")


def test_admin_verbose_lists_the_whole_pool_with_owners(admin, alice):
    a = alice.allocate_address()
    rows = admin.describe_addresses(PublicIps=["verbose"])["Addresses"]
    by_ip = {r["PublicIp"]: r for r in rows}
    assert sorted(by_ip) == POOL
    owner = by_ip[a["PublicIp"]]
    assert owner["AllocationId"] == a["AllocationId"]
    assert re.match(r"^available \(\d{12}\)$", owner["InstanceId"]), owner
    for ip in set(POOL) - {a["PublicIp"]}:
        assert by_ip[ip]["InstanceId"] == "nobody"
        assert "AllocationId" not in by_ip[ip]
    # Without verbose the administrator sees only the admin account's addresses, and
    # `verbose` from a user is no request to see more.
    assert admin.describe_addresses()["Addresses"] == []
    assert [r["PublicIp"] for r in alice.describe_addresses(PublicIps=["verbose"])[
        "Addresses"]] == [a["PublicIp"]]


def test_addresses_with_the_aws_cli(ecloud, alice_cli):
    _, allocated = ec2_cli(alice_cli, ecloud, "allocate-address")
    assert allocated["PublicIp"] in POOL and allocated["Domain"] == "standard"
    assert ID.match(allocated["AllocationId"])
    _, described = ec2_cli(alice_cli, ecloud, "describe-addresses")
    assert [a["PublicIp"] for a in described["Addresses"]] == [allocated["PublicIp"]]
    failed, _ = ec2_cli(alice_cli, ecloud, "associate-address", "--public-ip",
                        allocated["PublicIp"], "--instance-id", "i-12345678", check=False)
    assert failed.returncode != 0 and "InvalidInstanceID.NotFound" in failed.stderr
    ec2_cli(alice_cli, ecloud, "release-address", "--public-ip", allocated["PublicIp"])
    _, described = ec2_cli(alice_cli, ecloud, "describe-addresses")
    assert described["Addresses"] == []


# ---------------------------------------------------------------------------------------------
# Zones and regions


def test_availability_zones(ecloud, alice):
    zones = alice.describe_availability_zones()["AvailabilityZones"]
    assert len(zones) == 1
    zone = zones[0]
    assert zone["ZoneName"] == "cluster01"
    assert zone["State"] == "available"
    assert zone["RegionName"] == ecloud.region
    assert zone["Messages"] == []
    assert alice.describe_availability_zones(ZoneNames=["cluster01"])[
        "AvailabilityZones"] == zones
    assert_ec2_error(alice.describe_availability_zones, "InvalidParameterValue",
                     ZoneNames=["cluster02"])

    def filtered(name, *values):
        return [z["ZoneName"] for z in alice.describe_availability_zones(
            Filters=[{"Name": name, "Values": list(values)}])["AvailabilityZones"]]

    assert filtered("state", "available") == ["cluster01"]
    assert filtered("zone-name", "cluster*") == ["cluster01"]
    assert filtered("region-name", ecloud.region) == ["cluster01"]
    assert filtered("zone-name", "other") == []
    assert_ec2_error(alice.describe_availability_zones, "InvalidParameterValue",
                     Filters=[{"Name": "zone-type", "Values": ["x"]}])


def test_verbose_zones_list_vm_types_for_the_administrator(admin, alice):
    items = admin.describe_availability_zones(ZoneNames=["verbose"])["AvailabilityZones"]
    names = [z["ZoneName"] for z in items]
    assert names[:2] == ["cluster01", "|- vm types"]
    assert items[1]["State"] == "free / max   cpu   ram  disk"
    states = {z["ZoneName"]: z["State"] for z in items[2:]}
    # The node's 4 cores, 4096 MiB, 100 GiB: cores bound m1.small, memory c1.xlarge.
    assert states["|- m1.small"] == "0004 / 0004   1    256     5"
    assert states["|- c1.xlarge"] == "0002 / 0002   2   2048    10"
    assert states["|- hs1.8xlarge"] == "0000 / 0000  48 119808 24000"
    assert names[2:5] == ["|- t1.micro", "|- m1.small", "|- m1.medium"]
    assert len(items) == 2 + 18
    # Users get the plain list, as from Eucalyptus.
    plain = alice.describe_availability_zones(ZoneNames=["verbose"])["AvailabilityZones"]
    assert [z["ZoneName"] for z in plain] == ["cluster01"]


def test_regions(ecloud, alice):
    regions = alice.describe_regions()["Regions"]
    assert regions == [{"RegionName": ecloud.region, "Endpoint": ecloud.env["EC2_URL"],
                        "OptInStatus": "opt-in-not-required"}]
    assert alice.describe_regions(RegionNames=[ecloud.region])["Regions"] == regions
    assert_ec2_error(alice.describe_regions, "InvalidParameterValue",
                     RegionNames=["us-east-1"])
    assert alice.describe_regions(Filters=[{"Name": "region-name", "Values": ["nope"]}])[
        "Regions"] == []
    assert alice.describe_regions(Filters=[{"Name": "endpoint", "Values": ["*compute*"]}])[
        "Regions"] == regions


def test_zones_and_regions_with_the_aws_cli(ecloud, cli):
    _, zones = ec2_cli(cli, ecloud, "describe-availability-zones")
    assert [z["ZoneName"] for z in zones["AvailabilityZones"]] == ["cluster01"]
    _, regions = ec2_cli(cli, ecloud, "describe-regions")
    assert regions["Regions"][0]["RegionName"] == ecloud.region
    assert regions["Regions"][0]["Endpoint"] == ecloud.env["EC2_URL"]
    out = cli("ec2", "describe-regions", "--output", "text",
              endpoint=ecloud.env["EC2_URL"]).stdout
    assert ecloud.env["EC2_URL"] in out


# ---------------------------------------------------------------------------------------------
# Cloud properties


def test_describe_properties(ecloud):
    every = describe_properties(ecloud)
    assert every["cloud.network.public_ips"][0] == POOL_SETTING  # from koala.toml
    assert every["cloud.images.default_kernel"][0] == ""
    assert every["cloud.images.default_ramdisk"][0] == ""
    assert every["cloud.vmtypes.m1.small"][0] == "1 256 5"
    assert every["cloud.vmtypes.m1.xlarge"][0] == "2 1024 10"
    assert all(desc for _, desc in every.values())
    assert list(every) == sorted(every)
    vm = describe_properties(ecloud, "cloud.vmtypes.")
    assert len(vm) == 18 and all(n.startswith("cloud.vmtypes.") for n in vm)
    two = describe_properties(ecloud, "cloud.images.default_kernel", "cloud.network.public_ips")
    assert sorted(two) == ["cloud.images.default_kernel", "cloud.network.public_ips"]
    assert describe_properties(ecloud, "no.such.") == {}
    # The same actions answer on every path Eucalyptus served them at.
    for path in ("/services/Properties/", "/services/compute/", "/services/Eucalyptus"):
        assert "cloud.vmtypes.m1.small" in describe_properties(ecloud, "cloud.", path=path)


def test_modify_and_reset_a_property(ecloud, admin):
    status, root = modify_property(ecloud, "cloud.vmtypes.m1.small", " 2  512 10 ")
    assert status == 200, ET.tostring(root)
    assert root.tag == "ModifyPropertyValueResponse"
    assert root.findtext("name") == "cloud.vmtypes.m1.small"
    assert root.findtext("value") == "2 512 10"
    assert root.findtext("oldValue") == "1 256 5"
    assert describe_properties(ecloud, "cloud.vmtypes.m1.small")[
        "cloud.vmtypes.m1.small"][0] == "2 512 10"
    zones = admin.describe_availability_zones(ZoneNames=["verbose"])["AvailabilityZones"]
    assert {z["ZoneName"]: z["State"] for z in zones}["|- m1.small"] == \
        "0002 / 0002   2    512    10"
    status, root = modify_property(ecloud, "cloud.vmtypes.m1.small", reset=True)
    assert status == 200, ET.tostring(root)
    assert (root.findtext("value"), root.findtext("oldValue")) == ("1 256 5", "2 512 10")

    status, root = modify_property(ecloud, "cloud.images.default_kernel", "eki-0123abcd")
    assert status == 200 and root.findtext("oldValue") == ""
    assert describe_properties(ecloud, "cloud.images.default_kernel")[
        "cloud.images.default_kernel"][0] == "eki-0123abcd"
    status, root = modify_property(ecloud, "cloud.images.default_kernel", "")
    assert status == 200 and root.findtext("value") == ""


def test_the_pool_follows_its_property_and_resets_to_koala_toml(ecloud, alice):
    status, root = modify_property(ecloud, "cloud.network.public_ips",
                                   "10.99.0.1 - 10.99.0.3, 10.99.0.9")
    assert status == 200, ET.tostring(root)
    assert root.findtext("value") == "10.99.0.1-10.99.0.3,10.99.0.9"
    assert root.findtext("oldValue") == POOL_SETTING
    try:
        got = sorted(alice.allocate_address()["PublicIp"] for _ in range(4))
        assert got == ["10.99.0.1", "10.99.0.2", "10.99.0.3", "10.99.0.9"]
        assert_ec2_error(alice.allocate_address, "AddressLimitExceeded")
    finally:
        status, root = modify_property(ecloud, "cloud.network.public_ips", reset=True)
    assert status == 200 and root.findtext("value") == POOL_SETTING
    # An address outside the shrunken pool stays its owner's until released.
    assert "10.99.0.9" in [a["PublicIp"] for a in alice.describe_addresses()["Addresses"]]
    alice.release_address(PublicIp="10.99.0.9")
    status, root = modify_property(ecloud, "cloud.network.public_ips", "")
    assert status == 200
    try:
        for a in alice.describe_addresses()["Addresses"]:
            alice.release_address(PublicIp=a["PublicIp"])
        assert_ec2_error(alice.allocate_address, "AddressLimitExceeded")
    finally:
        modify_property(ecloud, "cloud.network.public_ips", reset=True)


@pytest.mark.parametrize("name,value,why", [
    ("cloud.vmtypes.m1.small", "one 256 5", "positive whole number"),
    ("cloud.vmtypes.m1.small", "1 256", "three numbers"),
    ("cloud.vmtypes.m1.small", "0 256 5", "positive whole number"),
    ("cloud.network.public_ips", "10.99.0.5-10.99.0.1", "ends before it starts"),
    ("cloud.network.public_ips", "10.99.0.0/24", "not an IPv4 address"),
    ("cloud.network.public_ips", "10.0.0.0-10.2.0.0", "more than 65536"),
    ("cloud.network.public_ips", "127.0.0.1", "cannot be a public address"),
    ("cloud.images.default_kernel", "emi-0123abcd", "eki-XXXXXXXX"),
    ("cloud.images.default_ramdisk", "eki-0123abcd", "eri-XXXXXXXX"),
])
def test_invalid_property_values_are_refused_with_a_reason(ecloud, name, value, why):
    before = describe_properties(ecloud, name)[name][0]
    status, root = modify_property(ecloud, name, value)
    assert status == 400, ET.tostring(root)
    assert error_code(root) == "InvalidParameterValue"
    assert why in root.findtext("Errors/Error/Message"), ET.tostring(root)
    assert describe_properties(ecloud, name)[name][0] == before


def test_property_requests_that_make_no_sense(ecloud):
    status, root = modify_property(ecloud, "cloud.no_such_thing", "1")
    assert (status, error_code(root)) == (400, "InvalidParameterValue")
    status, root = modify_property(ecloud, "cloud.vmtypes.m1.small")
    assert (status, error_code(root)) == (400, "MissingParameter")
    status, root = modify_property(ecloud, "cloud.vmtypes.m1.small", "1 256 5", reset=True)
    assert (status, error_code(root)) == (400, "InvalidParameterCombination")
    status, root = query(ecloud, "ModifyPropertyValue", [("Value", "x")])
    assert (status, error_code(root)) == (400, "MissingParameter")
    status, root = query(ecloud, "ModifyPropertyValue",
                         [("Name", "cloud.vmtypes.m1.small"), ("Reset", "maybe")])
    assert (status, error_code(root)) == (400, "InvalidParameterValue")


def test_only_the_cloud_administrator_sees_or_changes_properties(ecloud, alice_env):
    keys = (alice_env["AWS_ACCESS_KEY_ID"], alice_env["AWS_SECRET_ACCESS_KEY"])
    status, root = query(ecloud, "DescribeProperties", keys=keys)
    assert (status, error_code(root)) == (403, "UnauthorizedOperation")
    status, root = modify_property(ecloud, "cloud.network.public_ips", "10.99.0.1-10.99.0.200",
                                   keys=keys)
    assert (status, error_code(root)) == (403, "UnauthorizedOperation")
    assert describe_properties(ecloud, "cloud.network.public_ips")[
        "cloud.network.public_ips"][0] == POOL_SETTING


# ---------------------------------------------------------------------------------------------
# Tags


def tags_of(client, resource):
    return {t["Key"]: t["Value"] for t in client.describe_tags(
        Filters=[{"Name": "resource-id", "Values": [resource]}])["Tags"]}


def test_tags_on_an_elastic_ip(alice, bob):
    a = alice.allocate_address()
    eip = a["AllocationId"]
    alice.create_tags(Resources=[eip], Tags=[{"Key": "Name", "Value": "web"},
                                             {"Key": "env", "Value": ""}])
    tags = alice.describe_tags()["Tags"]
    assert tags == [
        {"ResourceId": eip, "ResourceType": "elastic-ip", "Key": "Name", "Value": "web"},
        {"ResourceId": eip, "ResourceType": "elastic-ip", "Key": "env", "Value": ""},
    ]
    listed = alice.describe_addresses()["Addresses"][0]
    assert sorted((t["Key"], t["Value"]) for t in listed["Tags"]) == [("Name", "web"),
                                                                      ("env", "")]
    assert [x["PublicIp"] for x in alice.describe_addresses(
        Filters=[{"Name": "tag:Name", "Values": ["web"]}])["Addresses"]] == [a["PublicIp"]]
    assert alice.describe_addresses(
        Filters=[{"Name": "tag:Name", "Values": ["db"]}])["Addresses"] == []
    # Overwrite a value; other accounts see nothing and cannot tag it.
    alice.create_tags(Resources=[eip], Tags=[{"Key": "Name", "Value": "api"}])
    assert tags_of(alice, eip) == {"Name": "api", "env": ""}
    assert bob.describe_tags()["Tags"] == []
    assert_ec2_error(bob.create_tags, "InvalidAddress.NotFound", Resources=[eip],
                     Tags=[{"Key": "x", "Value": "y"}])
    assert_ec2_error(bob.delete_tags, "InvalidAddress.NotFound", Resources=[eip])
    # Releasing the address drops its tags.
    alice.release_address(AllocationId=eip)
    assert alice.describe_tags()["Tags"] == []


def test_delete_tags_by_key_by_value_and_all(alice):
    eip = alice.allocate_address()["AllocationId"]
    alice.create_tags(Resources=[eip], Tags=[{"Key": k, "Value": v} for k, v in
                                             [("a", "1"), ("b", "2"), ("c", ""), ("d", "4")]])
    alice.delete_tags(Resources=[eip], Tags=[{"Key": "a", "Value": "not-1"}])
    assert tags_of(alice, eip) == {"a": "1", "b": "2", "c": "", "d": "4"}
    alice.delete_tags(Resources=[eip], Tags=[{"Key": "a", "Value": "1"}, {"Key": "b"}])
    assert tags_of(alice, eip) == {"c": "", "d": "4"}
    # An empty value deletes only a tag whose value is empty.
    alice.delete_tags(Resources=[eip], Tags=[{"Key": "d", "Value": ""},
                                             {"Key": "c", "Value": ""}])
    assert tags_of(alice, eip) == {"d": "4"}
    alice.delete_tags(Resources=[eip], Tags=[{"Key": "never-set"}])
    alice.create_tags(Resources=[eip], Tags=[{"Key": "e", "Value": "5"}])
    alice.delete_tags(Resources=[eip])
    assert tags_of(alice, eip) == {}


def test_tag_limits(alice):
    eip = alice.allocate_address()["AllocationId"]
    for tags in ([{"Key": "k" * 128, "Value": "v"}],
                 [{"Key": "k", "Value": "v" * 256}],
                 [{"Key": "aws:owner", "Value": "me"}],
                 [{"Key": "", "Value": "v"}],
                 [{"Key": "k", "Value": "bell\x07"}],
                 [{"Key": "k", "Value": "1"}, {"Key": "k", "Value": "2"}]):
        assert_ec2_error(alice.create_tags, "InvalidParameterValue", Resources=[eip], Tags=tags,
                         status=400)
    alice.create_tags(Resources=[eip], Tags=[{"Key": "k" * 127, "Value": "v" * 255}])
    alice.create_tags(Resources=[eip],
                      Tags=[{"Key": f"t{i:02}", "Value": str(i)} for i in range(49)])
    assert len(tags_of(alice, eip)) == 50
    # Overwriting keeps the count; one more is refused and nothing of the request is kept.
    alice.create_tags(Resources=[eip], Tags=[{"Key": "t00", "Value": "new"}])
    assert_ec2_error(alice.create_tags, "TagLimitExceeded", Resources=[eip],
                     Tags=[{"Key": "t01", "Value": "changed"}, {"Key": "extra", "Value": "x"}])
    tags = tags_of(alice, eip)
    assert len(tags) == 50 and tags["t00"] == "new" and tags["t01"] == "1"


def test_describe_tags_filters(alice):
    e1 = alice.allocate_address()["AllocationId"]
    e2 = alice.allocate_address()["AllocationId"]
    alice.create_tags(Resources=[e1, e2], Tags=[{"Key": "role", "Value": "web"}])
    alice.create_tags(Resources=[e2], Tags=[{"Key": "Name", "Value": "second"}])

    def keys(*filters):
        return [(t["ResourceId"], t["Key"]) for t in alice.describe_tags(
            Filters=[{"Name": n, "Values": v} for n, v in filters])["Tags"]]

    assert sorted(keys()) == sorted([(e1, "role"), (e2, "role"), (e2, "Name")])
    assert sorted(keys(("key", ["role"]))) == sorted([(e1, "role"), (e2, "role")])
    assert keys(("value", ["sec*"])) == [(e2, "Name")]
    assert sorted(keys(("resource-id", [e2]))) == sorted([(e2, "Name"), (e2, "role")])
    assert len(keys(("resource-type", ["elastic-ip"]))) == 3
    assert keys(("resource-type", ["image"])) == []
    assert keys(("key", ["role"]), ("resource-id", [e1])) == [(e1, "role")]
    assert_ec2_error(alice.describe_tags, "InvalidParameterValue",
                     Filters=[{"Name": "colour", "Values": ["red"]}])


def test_tags_on_resources_that_do_not_exist(alice):
    tag = [{"Key": "k", "Value": "v"}]
    for resource, code in [("emi-12345678", "InvalidAMIID.NotFound"),
                           ("eki-12345678", "InvalidAMIID.NotFound"),
                           ("sg-12345678", "InvalidGroup.NotFound"),
                           ("i-12345678", "InvalidInstanceID.NotFound"),
                           ("eipalloc-12345678", "InvalidAddress.NotFound"),
                           ("vol-12345678", "InvalidID"),
                           ("nonsense", "InvalidID")]:
        assert_ec2_error(alice.create_tags, code, Resources=[resource], Tags=tag, status=400)
    # One bad resource spoils the request: nothing is tagged.
    eip = alice.allocate_address()["AllocationId"]
    assert_ec2_error(alice.create_tags, "InvalidGroup.NotFound",
                     Resources=[eip, "sg-12345678"], Tags=tag)
    assert tags_of(alice, eip) == {}
    assert_ec2_error(alice.create_tags, "MissingParameter", Resources=[eip], Tags=[])


def test_tags_on_a_security_group(alice, bob):
    name = "tagged-" + uuid.uuid4().hex[:8]
    group = alice.create_security_group(GroupName=name, Description="tag test")["GroupId"]
    try:
        alice.create_tags(Resources=[group], Tags=[{"Key": "Name", "Value": "front"}])
        assert alice.describe_tags(Filters=[{"Name": "resource-id", "Values": [group]}])[
            "Tags"] == [{"ResourceId": group, "ResourceType": "security-group", "Key": "Name",
                         "Value": "front"}]
        described = alice.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]
        assert described.get("Tags") == [{"Key": "Name", "Value": "front"}]
        assert_ec2_error(bob.create_tags, "InvalidGroup.NotFound", Resources=[group],
                         Tags=[{"Key": "x", "Value": "y"}])
        assert bob.describe_tags()["Tags"] == []
    finally:
        alice.delete_security_group(GroupId=group)
    assert alice.describe_tags(Filters=[{"Name": "resource-id", "Values": [group]}])[
        "Tags"] == []


def test_tags_with_the_aws_cli(ecloud, alice, alice_cli):
    eip = alice.allocate_address()["AllocationId"]
    ec2_cli(alice_cli, ecloud, "create-tags", "--resources", eip, "--tags",
            "Key=Name,Value=cli", "Key=team,Value=ops")
    _, out = ec2_cli(alice_cli, ecloud, "describe-tags", "--filters",
                     f"Name=resource-id,Values={eip}")
    assert [(t["Key"], t["Value"], t["ResourceType"]) for t in out["Tags"]] == [
        ("Name", "cli", "elastic-ip"), ("team", "ops", "elastic-ip")]
    ec2_cli(alice_cli, ecloud, "delete-tags", "--resources", eip, "--tags", "Key=team")
    assert tags_of(alice, eip) == {"Name": "cli"}
    failed, _ = ec2_cli(alice_cli, ecloud, "create-tags", "--resources", eip, "--tags",
                        "Key=aws:x,Value=1", check=False)
    assert failed.returncode != 0 and "InvalidParameterValue" in failed.stderr


def test_bad_requests_are_never_server_errors(ecloud, alice_env):
    keys = (alice_env["AWS_ACCESS_KEY_ID"], alice_env["AWS_SECRET_ACCESS_KEY"])
    cases = [
        ("AllocateAddress", [("Domain", "\u00e9t\u00e9")]),
        ("ReleaseAddress", [("PublicIp", "999.1.1.1")]),
        ("ReleaseAddress", [("PublicIp", "")]),
        ("AssociateAddress", [("PublicIp", "10.99.0.1"), ("NetworkInterfaceId", "eni-1")]),
        ("DescribeAddresses", [("Filter.1.Value.1", "x")]),
        ("DescribeAddresses", [("AllocationId.1", "eipalloc-zzzz")]),
        ("DescribeAvailabilityZones", [("ZoneName.1", "")]),
        ("DescribeRegions", [("RegionName.1", "x" * 5000)]),
        ("CreateTags", [("ResourceId.1", "sg-1/2"), ("Tag.1.Key", "k")]),
        ("CreateTags", [("Tag.1.Key", "k")]),
        ("CreateTags", [("ResourceId.1", "eipalloc-12345678"), ("Tag.1.Value", "v")]),
        ("DeleteTags", [("ResourceId.1", "../../x")]),
        ("DescribeTags", [("Filter.1.Name", "key")]),
    ]
    for action, params in cases:
        status, root = query(ecloud, action, params, path="/services/compute/", keys=keys)
        assert status < 500, (action, params, ET.tostring(root))


def test_cluster_registration_is_checked_and_for_the_cloud_administrator(ecloud, alice_env):
    keys = (alice_env["AWS_ACCESS_KEY_ID"], alice_env["AWS_SECRET_ACCESS_KEY"])
    for action in ("RegisterCluster", "DeregisterCluster", "DescribeClusters"):
        status, root = query(ecloud, action, [("Partition", "zz"), ("Host", "h")], keys=keys)
        assert (status, error_code(root)) == (403, "UnauthorizedOperation"), action
    for params, code in [
        ([("Host", "127.0.0.1")], "MissingParameter"),
        ([("Partition", "zz")], "MissingParameter"),
        ([("Partition", "a/b"), ("Host", "127.0.0.1")], "InvalidParameterValue"),
        ([("Partition", "zz"), ("Host", "bad host")], "InvalidParameterValue"),
        ([("Partition", "zz"), ("Host", "127.0.0.1:8774")], "InvalidParameterValue"),
        ([("Partition", "zz"), ("Host", "127.0.0.1"), ("Port", "0")], "InvalidParameterValue"),
        ([("Partition", "zz"), ("Host", "127.0.0.1"), ("Port", "70000")],
         "InvalidParameterValue"),
    ]:
        status, root = query(ecloud, "RegisterCluster", params)
        assert (status, error_code(root)) == (400, code), (params, ET.tostring(root))
    status, root = query(ecloud, "DeregisterCluster", [("Partition", "nowhere")])
    assert (status, error_code(root)) == (400, "InvalidZone.NotFound"), ET.tostring(root)

    # A cluster whose CC does not answer is listed as NOTREADY with its zone shown, and goes
    # away with its zone when deregistered.
    dead = free_port()
    status, root = query(ecloud, "RegisterCluster",
                         [("Partition", "zone-dead"), ("Host", "127.0.0.1"), ("Port", str(dead))])
    assert status == 200, ET.tostring(root)
    status, root = query(ecloud, "DescribeClusters")
    items = {i.findtext("partition"): i for i in root.findall("clusterInfo/item")}
    assert items["zone-dead"].findtext("state") == "NOTREADY"
    assert items["zone-dead"].findtext("url") == f"https://127.0.0.1:{dead}"
    # Registered again for its zone: nothing changes. For another zone: refused, one CC
    # cannot be two zones.
    status, root = query(ecloud, "RegisterCluster",
                         [("Partition", "zone-dead"), ("Host", "127.0.0.1"), ("Port", str(dead))])
    assert status == 200, ET.tostring(root)
    status, root = query(ecloud, "RegisterCluster",
                         [("Partition", "zone-twin"), ("Host", "127.0.0.1"), ("Port", str(dead))])
    assert (status, error_code(root)) == (400, "InvalidParameterValue"), ET.tostring(root)
    assert "already registered as the cluster of zone-dead" in root.findtext(".//Message")
    status, root = query(ecloud, "DescribeAvailabilityZones")
    assert "zone-dead" in [i.findtext("zoneName")
                           for i in root.findall("availabilityZoneInfo/item")]
    status, root = query(ecloud, "DeregisterCluster", [("Partition", "zone-dead")])
    assert status == 200, ET.tostring(root)
    status, root = query(ecloud, "DescribeAvailabilityZones")
    assert "zone-dead" not in [i.findtext("zoneName")
                               for i in root.findall("availabilityZoneInfo/item")]
